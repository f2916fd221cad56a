//! Topic names interned for the life of the process.
//!
//! Every event, outbox entry and history entry cites the input topic of the record that made
//! it, and every consumed record and commit names its topic. As a `SmolStr`, a name longer
//! than 23 bytes (most production topic names: `prod.gamification.user-actions` is 30) is
//! shared behind a reference count, so each of those copies was an atomic increment of one
//! cache line on the thread that evaluates, and each drop an atomic decrement of the same line
//! on the threads that publish and write: the line crossed between the cores several times a
//! record. The record step bench measured it (docs/benchmarks.md): the same batches 10–25 %
//! slower with a 29-byte topic name than with a 13-byte one, for 1.2 % more instructions.
//!
//! An [`InternedName`] is a `&'static str`: copied as two words, compared by address first,
//! never counted. Interned names are never freed. What gets interned is bounded by the
//! deployment, not by traffic: the topics its workers consume, and the topics named by the
//! stored rows and replay files it reads. Never a client's text: `tests/it/interning.rs`
//! submits new text in every field of an action and finds none of it interned.
//!
//! Why not a crate: `ustr`, the common one, is licensed BSD-2-Clause-Patent, outside the
//! licences `deny.toml` allows; `internment` hashes an interned value by its address, so a
//! map keyed by names would order them differently in every process, where hashing the text
//! keeps every map's order the same from run to run. What is left is a set behind a lock.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{OnceLock, RwLock};

use rustc_hash::FxHashSet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A name interned for the life of the process (see the module's docs).
#[derive(Clone, Copy)]
pub struct InternedName(&'static str);

/// The interned names. Read far more than written: a name is interned once per process.
fn interned() -> &'static RwLock<FxHashSet<&'static str>> {
    static NAMES: OnceLock<RwLock<FxHashSet<&'static str>>> = OnceLock::new();
    NAMES.get_or_init(Default::default)
}

impl InternedName {
    /// `name`, interned: the same `&'static str` for every equal name.
    pub fn new(name: &str) -> Self {
        let names = interned();
        // A poisoned lock only means another thread panicked while holding it; the set
        // itself is always whole (an insert either happened or did not).
        if let Some(&found) = names.read().unwrap_or_else(|e| e.into_inner()).get(name) {
            return InternedName(found);
        }
        let mut names = names.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&found) = names.get(name) {
            return InternedName(found);
        }
        let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
        names.insert(leaked);
        InternedName(leaked)
    }

    /// Whether `name` was interned by this process (interning nothing). For checking that
    /// what gets interned stays bounded by the deployment: a client's text never should be.
    pub fn is_interned(name: &str) -> bool {
        interned()
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl std::ops::Deref for InternedName {
    type Target = str;
    fn deref(&self) -> &str {
        self.0
    }
}

impl AsRef<str> for InternedName {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl From<&str> for InternedName {
    fn from(name: &str) -> Self {
        InternedName::new(name)
    }
}

impl From<&InternedName> for InternedName {
    fn from(name: &InternedName) -> Self {
        *name
    }
}

impl From<String> for InternedName {
    fn from(name: String) -> Self {
        InternedName::new(&name)
    }
}

impl From<&String> for InternedName {
    fn from(name: &String) -> Self {
        InternedName::new(name)
    }
}

/// Equal names share an address; comparing the bytes too keeps equality right whatever made
/// the two values.
impl PartialEq for InternedName {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0) || self.0 == other.0
    }
}

impl Eq for InternedName {}

impl PartialEq<str> for InternedName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for InternedName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Hashed as the text: equality falls back to the text, so equal names must hash alike
/// whatever their addresses.
impl Hash for InternedName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl PartialOrd for InternedName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InternedName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(other.0)
    }
}

impl fmt::Debug for InternedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for InternedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Serialized as the text it holds.
impl Serialize for InternedName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for InternedName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = InternedName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<InternedName, E> {
                Ok(InternedName::new(name))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_names_share_one_address_and_compare_as_text() {
        let a = InternedName::new("prod.gamification.user-actions");
        let b = InternedName::new(&String::from("prod.gamification.user-actions"));
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
        assert_eq!(a, b);
        let c = InternedName::new("prod.gamification.user-actions.v2");
        assert_ne!(a, c);
        assert!(a < c);
        assert_eq!(a, "prod.gamification.user-actions");
        assert_eq!(&*a, "prod.gamification.user-actions");
        let hash = |h: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            h(&mut hasher);
            hasher.finish()
        };
        assert_eq!(
            hash(&|s| a.hash(s)),
            hash(&|s| "prod.gamification.user-actions".hash(s)),
            "hashed as its text"
        );
    }

    #[test]
    fn serialized_as_text_and_interned_when_read() {
        let a = InternedName::new("actions");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#""actions""#);
        let back: InternedName = serde_json::from_str(&json).unwrap();
        assert!(std::ptr::eq(a.as_str(), back.as_str()));
        let bytes = postcard::to_allocvec(&a).unwrap();
        assert_eq!(bytes, postcard::to_allocvec("actions").unwrap());
        let back: InternedName = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, a);
        assert!(serde_json::from_str::<InternedName>("7").is_err());
    }
}
