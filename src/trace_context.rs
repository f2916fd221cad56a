//! W3C Trace Context (`traceparent`, `tracestate`) as questline carries it: from an HTTP
//! request into the command record, and from a consumed record onto every record it causes
//! (docs/operations.md, "Tracing").
//!
//! Parsing is strict where the recommendation is (lowercase hex, no all-zero id, version `ff`
//! refused) and never fails loudly: a value that does not parse is ignored, as the
//! recommendation asks of a receiver, and the record is processed as an untraced one.
//! Pure: no exporter, no global state; [`crate::otlp`] turns a context into a span's parent.

use std::borrow::Cow;

/// The header naming the trace and the parent span.
pub const TRACEPARENT: &str = "traceparent";
/// The vendors' trace state, carried along with `traceparent`.
pub const TRACESTATE: &str = "tracestate";

/// The longest `tracestate` carried on (the recommendation's limit for what a vendor must
/// propagate); a longer one is dropped rather than cut, since cutting could split a member.
const TRACESTATE_MAX: usize = 512;

/// A parsed `traceparent`: the trace, the span that is the parent, and the trace flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` when it is not a valid one.
    ///
    /// Version `00` is exactly 55 characters. A later version (not `ff`, which is invalid)
    /// may be longer, with a `-` after the fields version `00` knows, which are the ones read:
    /// the recommendation asks a receiver to parse a newer version as far as it understands.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() < 55 {
            return None;
        }
        let version = hex_byte(&bytes[0..2])?;
        match version {
            0xff => return None,
            0x00 if bytes.len() != 55 => return None,
            _ if bytes.len() > 55 && bytes[55] != b'-' => return None,
            _ => {}
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id: [u8; 16] = hex_array(&bytes[3..35])?;
        let parent_id: [u8; 8] = hex_array(&bytes[36..52])?;
        let flags = hex_byte(&bytes[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The value as version `00` writes it.
    pub fn to_header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }

    /// The trace id as 32 lowercase hex digits (how OTLP and most tools show it).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// Whether the caller recorded (sampled) its span: flag bit 0.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// The trace context a request or a record carries on: its `traceparent` and, if it had a
/// valid one, its `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub parent: TraceParent,
    pub state: Option<String>,
}

impl TraceContext {
    /// From a header lookup: exactly one valid `traceparent`, or nothing (two are ambiguous,
    /// and the recommendation has a receiver ignore them). `values(name)` lists the values of
    /// header `name`, which may not be text.
    fn from_values<'a, I>(values: impl Fn(&'static str) -> I) -> Option<Self>
    where
        I: Iterator<Item = &'a [u8]>,
    {
        let mut parents = values(TRACEPARENT);
        let first = parents.next()?;
        if parents.next().is_some() {
            return None;
        }
        let parent = TraceParent::parse(std::str::from_utf8(first).ok()?.trim())?;
        let mut states = values(TRACESTATE);
        let state = match (states.next(), states.next()) {
            (Some(one), None) => std::str::from_utf8(one)
                .ok()
                .map(str::trim)
                .filter(|s| valid_state(s))
                .map(str::to_string),
            _ => None,
        };
        Some(TraceContext { parent, state })
    }

    /// The context of a Kafka record's headers.
    pub fn from_headers<K: AsRef<str>>(headers: &[(K, Vec<u8>)]) -> Option<Self> {
        Self::from_values(|name| {
            headers
                .iter()
                .filter(move |(k, _)| k.as_ref().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_slice())
        })
    }

    /// The context of an HTTP request's headers.
    pub fn from_http(headers: &axum::http::HeaderMap) -> Option<Self> {
        Self::from_values(|name| headers.get_all(name).iter().map(|v| v.as_bytes()))
    }

    /// Puts this context on a record's headers, replacing any `traceparent` and `tracestate`
    /// the record had (a dead letter carries its input's headers on).
    /// Generic over the value's type so that this module needs nothing of the pipeline's.
    pub fn set_on<V: From<Vec<u8>>>(&self, headers: &mut Vec<(Cow<'static, str>, V)>) {
        headers.retain(|(k, _)| {
            !k.eq_ignore_ascii_case(TRACEPARENT) && !k.eq_ignore_ascii_case(TRACESTATE)
        });
        headers.push((
            Cow::Borrowed(TRACEPARENT),
            self.parent.to_header().into_bytes().into(),
        ));
        if let Some(state) = &self.state {
            headers.push((Cow::Borrowed(TRACESTATE), state.clone().into_bytes().into()));
        }
    }
}

/// Whether a `tracestate` is carried on: printable ASCII, at most [`TRACESTATE_MAX`] bytes.
/// Its members are not checked one by one: questline passes it through, never reads it.
fn valid_state(state: &str) -> bool {
    !state.is_empty()
        && state.len() <= TRACESTATE_MAX
        && state.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        // Uppercase is invalid in a traceparent.
        _ => None,
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?)
}

fn hex_array<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        *out.get_mut(i)? = hex_byte(pair)?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_parses_and_formats_back_the_same() {
        let p = TraceParent::parse(VALID).unwrap();
        assert_eq!(p.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            p.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(p.sampled());
        assert_eq!(p.to_header(), VALID);
        let unsampled = TraceParent::parse(&VALID.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
    }

    #[test]
    fn invalid_values_are_refused() {
        let cases = [
            ("", "empty"),
            ("garbage", "not one"),
            (&VALID[..54], "one character short"),
            (&format!("{VALID}-extra"), "version 00 with more fields"),
            (&VALID.replace("00-4b", "ff-4b"), "version ff"),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "all-zero trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "all-zero parent id",
            ),
            (&VALID.to_uppercase(), "uppercase hex"),
            (&VALID.replace('-', "_"), "wrong separators"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
                "not hex",
            ),
            (
                "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "bad version",
            ),
        ];
        for (text, why) in cases {
            assert_eq!(TraceParent::parse(text), None, "{why}: {text}");
        }
    }

    #[test]
    fn a_later_version_is_read_as_far_as_version_00_goes() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        let p = TraceParent::parse(later).unwrap();
        assert_eq!(p.to_header(), VALID);
        assert_eq!(TraceParent::parse(&later[..55]), Some(p), "exactly 55");
        let glued = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert_eq!(TraceParent::parse(glued), None, "no dash after the flags");
    }

    fn headers(pairs: &[(&str, &[u8])]) -> Vec<(Cow<'static, str>, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (Cow::Owned(k.to_string()), v.to_vec()))
            .collect()
    }

    #[test]
    fn a_records_context_is_its_one_valid_traceparent_with_its_tracestate() {
        let h = headers(&[
            ("traceparent", VALID.as_bytes()),
            ("tracestate", b"a=1,b=2"),
        ]);
        let cx = TraceContext::from_headers(&h).unwrap();
        assert_eq!(cx.state.as_deref(), Some("a=1,b=2"));
        let two = headers(&[
            ("traceparent", VALID.as_bytes()),
            ("traceparent", VALID.as_bytes()),
        ]);
        assert_eq!(TraceContext::from_headers(&two), None, "two are ambiguous");
        assert_eq!(
            TraceContext::from_headers(&headers(&[("traceparent", &[0xff, 0])])),
            None
        );
        assert_eq!(TraceContext::from_headers::<String>(&[]), None);
        let bad_state = headers(&[("traceparent", VALID.as_bytes()), ("tracestate", b"a=\x01")]);
        assert_eq!(TraceContext::from_headers(&bad_state).unwrap().state, None);
    }

    #[test]
    fn an_http_requests_context_reads_the_same_headers() {
        let mut h = axum::http::HeaderMap::new();
        h.insert("traceparent", VALID.parse().unwrap());
        h.insert("tracestate", "vendor=x".parse().unwrap());
        let cx = TraceContext::from_http(&h).unwrap();
        assert_eq!(cx.parent.to_header(), VALID);
        assert_eq!(cx.state.as_deref(), Some("vendor=x"));
        h.insert("traceparent", "00-nope".parse().unwrap());
        assert_eq!(TraceContext::from_http(&h), None);
    }

    #[test]
    fn set_on_replaces_the_records_own_trace_headers() {
        let cx =
            TraceContext::from_headers(&headers(&[("traceparent", VALID.as_bytes())])).unwrap();
        let mut h = headers(&[
            ("traceparent", b"00-old"),
            ("tracestate", b"old=1"),
            ("keep", b"me"),
        ]);
        cx.set_on(&mut h);
        assert_eq!(
            h,
            headers(&[("keep", b"me"), ("traceparent", VALID.as_bytes())])
        );
    }

    proptest! {
        /// Whatever the text, parsing answers without panicking, and what parses formats to a
        /// value that parses to the same context.
        #[test]
        fn any_text_parses_or_is_refused(text in ".{0,80}") {
            if let Some(p) = TraceParent::parse(&text) {
                prop_assert_eq!(TraceParent::parse(&p.to_header()), Some(p));
            }
        }

        #[test]
        fn any_ids_round_trip(trace in any::<[u8; 16]>(), parent in any::<[u8; 8]>(), flags in any::<u8>()) {
            let p = TraceParent { trace_id: trace, parent_id: parent, flags };
            let back = TraceParent::parse(&p.to_header());
            if trace == [0; 16] || parent == [0; 8] {
                prop_assert_eq!(back, None);
            } else {
                prop_assert_eq!(back, Some(p));
            }
        }
    }
}
