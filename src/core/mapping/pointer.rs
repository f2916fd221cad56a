//! RFC 6901 JSON Pointers split into their tokens once, when a mapping is compiled.
//!
//! Parsing a pointer (checking its escapes, splitting it at each `/`, unescaping `~0` and
//! `~1`, reading array indexes) was a fifth of the time of mapping a record when it was done
//! for every field of every record (`cargo bench --bench mapping`). Here jsonptr parses each
//! pointer once, and a record is walked with plain map lookups.

use super::doc::Doc;

/// A parsed pointer: the tokens to follow from the document's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pointer {
    tokens: Vec<Token>,
}

/// One reference token, unescaped, and the array index it stands for, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    /// The member name, for objects.
    key: String,
    /// The element, for arrays: `None` when the token is no index RFC 6901 allows (leading
    /// zeros, a sign, `-`, which names the element after the last one and so never resolves).
    index: Option<usize>,
}

impl Pointer {
    /// `None` when `text` is not a JSON Pointer (a mapping's pointers are checked at load, so
    /// only a mapping built in code without validation can have one: it never resolves).
    pub(super) fn parse(text: &str) -> Option<Pointer> {
        let parsed = jsonptr::Pointer::parse(text).ok()?;
        let tokens = parsed
            .tokens()
            .map(|token| Token {
                key: token.decoded().into_owned(),
                // jsonptr's own rules for an index, so this resolves as jsonptr does.
                index: match token.to_index() {
                    Ok(jsonptr::index::Index::Num(i)) => Some(i),
                    Ok(jsonptr::index::Index::Next) | Err(_) => None,
                },
            })
            .collect();
        Some(Pointer { tokens })
    }

    /// The value this pointer points to in `doc`, if any. Never allocates.
    pub(super) fn resolve<'d, 'a>(&self, doc: &'d Doc<'a>) -> Option<&'d Doc<'a>> {
        self.tokens
            .iter()
            .try_fold(doc, |value, token| match value {
                Doc::Object(_) => value.get(&token.key),
                Doc::Array(_) => token.index.and_then(|i| value.element(i)),
                _ => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Resolves on a [`Doc`] of `doc`, answering with the `Value` found.
    fn resolve(doc: &Value, pointer: &str) -> Option<Value> {
        Pointer::parse(pointer)?
            .resolve(&Doc::borrowing(doc))
            .map(Doc::to_value)
    }

    /// Escaped tokens, array indexes, the root and the empty key, as RFC 6901 reads them.
    #[test]
    fn pointers_follow_rfc_6901() {
        let doc = json!({"a/b": {"m~n": [10, 20]}, "": 1, "n": {"0": "key"}});
        assert_eq!(resolve(&doc, "/a~1b/m~0n/1"), Some(json!(20)));
        assert_eq!(resolve(&doc, "/a~1b/m~0n/01"), None);
        assert_eq!(resolve(&doc, "/a~1b/m~0n/+1"), None);
        assert_eq!(resolve(&doc, "/a~1b/m~0n/-"), None);
        assert_eq!(resolve(&doc, "/a~1b/m~0n/2"), None);
        assert_eq!(resolve(&doc, "/"), Some(json!(1)));
        assert_eq!(resolve(&doc, ""), Some(doc.clone()));
        assert_eq!(resolve(&doc, "/missing/deeper"), None);
        assert_eq!(resolve(&doc, "/n/0"), Some(json!("key")));
        assert_eq!(resolve(&doc, "/a~1b/m~0n/0/deeper"), None);
        assert_eq!(Pointer::parse("/user~2id"), None);
        assert_eq!(Pointer::parse("value"), None);
    }

    /// The same answer as jsonptr's own resolution, for pointers with every kind of token.
    #[test]
    fn resolves_as_jsonptr_does() {
        let doc = json!({"a": [{"b": [1, {"c~d": "x"}]}, 2], "e/f": null, "0": {"1": true}});
        for text in [
            "",
            "/",
            "/a",
            "/a/0",
            "/a/1",
            "/a/2",
            "/a/00",
            "/a/-",
            "/a/0/b/1/c~0d",
            "/a/0/b/1/c~1d",
            "/e~1f",
            "/0/1",
            "/0/1/2",
            "/a/0/b/x",
        ] {
            let expected = jsonptr::Pointer::parse(text)
                .ok()
                .and_then(|p| p.resolve(&doc).ok())
                .cloned();
            assert_eq!(resolve(&doc, text), expected, "{text}");
        }
    }
}
