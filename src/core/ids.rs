//! Deterministic identifiers.
//!
//! Every id the engine mints is a name-based UUID (v5) of where it came from, never a random
//! one: the same source record yields the same event ids in the worker, after a crash and in
//! `replay`, so downstream consumers can deduplicate on `eventId`.

use super::model::SourceRef;
use arrayvec::ArrayString;
use sha1::digest::generic_array::GenericArray;
use smallvec::SmallVec;
use uuid::Uuid;

/// The namespace of questline's v5 UUIDs (itself a v5 UUID of the project's name in the URL
/// namespace, fixed forever: changing it would change every event id).
const NAMESPACE: Uuid = Uuid::from_u128(0x1f7b_6c1e_4a8e_5c3d_9e2f_0b4d_7a61_c3e5);

/// The cause of an input: its Kafka coordinates, `{topic}:{partition}:{offset}`, owned
/// ([`CauseText`] is the record step's, on the stack).
pub fn cause_of(source: &SourceRef) -> String {
    CauseText::of(source).as_str().to_owned()
}

/// [`cause_of`]'s text, held on the stack when it fits: the record step needs an input's
/// cause only while it evaluates the input (to mint the ids of its events), and a `String`
/// for it was an allocation per record, freed at once (`benches/record_step.rs`).
pub struct CauseText(SmallVec<[u8; CAUSE_INLINE]>);

/// Bytes of a cause held inline: a topic name of up to 30-odd bytes with its coordinates.
const CAUSE_INLINE: usize = 64;

impl CauseText {
    /// Written piece by piece rather than with `format!`: this runs for every input, and
    /// `fmt`'s machinery was 1.8 % of the worker's main thread in a profile of `scripts/bench`.
    pub fn of(source: &SourceRef) -> Self {
        let mut partition = itoa::Buffer::new();
        let mut offset = itoa::Buffer::new();
        let mut text = SmallVec::new();
        for piece in [
            source.topic.as_bytes(),
            b":",
            partition.format(source.partition).as_bytes(),
            b":",
            offset.format(source.offset).as_bytes(),
        ] {
            text.extend_from_slice(piece);
        }
        CauseText(text)
    }

    pub fn as_str(&self) -> &str {
        // Made of a `str` and ASCII only: the check cannot fail, and costs a few nanoseconds
        // where the alternative is `unsafe`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The id of the `index`-th event caused by `cause`.
pub fn event_id(cause: &str, index: usize) -> EventId {
    EventIds::new(cause).id(index)
}

/// The id of the `index`-th inventory request caused by `cause`: readable, since it also
/// becomes the cause of the events its response produces.
pub fn request_id(cause: &str, index: usize) -> String {
    format!("{cause}#r{index}")
}

/// The id of the amount request an input sends for a programmatic event: one at most per
/// input, in a namespace of its own so it never meets an inventory request's id.
pub fn amount_request_id(cause: &str) -> String {
    format!("{cause}#a0")
}

/// The id of an operation the catalog gives none: the v5 UUID of its tenant and code, joined
/// by NUL bytes so that no other pair of names spells the same.
pub fn operation_id(tenant: &str, code: &str) -> String {
    entity_id("operation", tenant, code)
}

/// The id of a catalog entity written without one (`kind`: `operation`, `reward_type`): a
/// name-based UUID of its kind, tenant and name, the same in every process and version.
pub fn entity_id(kind: &str, tenant: &str, name: &str) -> String {
    Uuid::new_v5(&NAMESPACE, format!("{kind}\0{tenant}\0{name}").as_bytes()).to_string()
}

/// An event's id, as text: a minted one is a v5 UUID's 36 characters ([`EventIds`]).
///
/// Held inline up to [`EventId::INLINE`] bytes, as every minted id is: making one, copying it
/// into the user's history and into its record's `questline-event-id` header allocate
/// nothing. As a `String` it was an allocation per event minted and per copy, each freed on
/// the thread that wrote or published the batch; the evaluator mints about four per action
/// (`benches/evaluator.rs`). Longer ids (only ever written by hand, in tests and tools) are
/// boxed. It reads, compares, hashes, prints and serializes as its text.
#[derive(Clone)]
pub struct EventId(Repr);

#[derive(Clone)]
enum Repr {
    /// `arrayvec`'s inline string: its text is read without being checked again. (Held as
    /// bytes, checked for UTF-8 at every read, the checks were 1.8 % of the record step's
    /// instructions; callgrind.)
    Inline(ArrayString<{ EventId::INLINE }>),
    Boxed(Box<str>),
}

impl EventId {
    /// A hyphenated UUID's length.
    pub const INLINE: usize = 36;

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline(text) => text,
            Repr::Boxed(text) => text,
        }
    }
}

impl From<&str> for EventId {
    fn from(text: &str) -> Self {
        match ArrayString::from(text) {
            Ok(inline) => EventId(Repr::Inline(inline)),
            Err(_) => EventId(Repr::Boxed(text.into())),
        }
    }
}

impl From<String> for EventId {
    fn from(text: String) -> Self {
        match ArrayString::from(&text) {
            Ok(inline) => EventId(Repr::Inline(inline)),
            Err(_) => EventId(Repr::Boxed(text.into_boxed_str())),
        }
    }
}

impl std::ops::Deref for EventId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for EventId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for EventId {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for EventId {}

impl PartialEq<&str> for EventId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for EventId {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl std::hash::Hash for EventId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialOrd for EventId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EventId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::fmt::Debug for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for EventId {
    /// From borrowed or transient text without an owned copy first.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = EventId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an event id")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<EventId, E> {
                Ok(EventId::from(text))
            }
            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<EventId, E> {
                Ok(EventId::from(text))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// Mints the event ids of one input, as [`event_id`] does: `Uuid::new_v5(NAMESPACE,
/// "{cause}#e{index}")`.
///
/// Why: the evaluator mints several ids per action, and minting was a quarter of its time.
/// Here SHA-1 runs over the name's common part (the namespace, `cause` and `#e`) once per
/// input, up to its last whole 64-byte block; each id then only hashes the last block or two:
/// the common part's remaining bytes, its index's digits and SHA-1's padding, laid out here
/// and handed to the `sha1` crate's compression function (which uses the CPU's SHA extensions
/// where present). Through the crate's buffered `Digest` API, copying the hasher, feeding it
/// the digits and finishing it cost as much as the compression itself (perf on
/// `benches/evaluator.rs`).
#[derive(Debug, Clone)]
pub struct EventIds {
    /// SHA-1's chaining state after the common part's whole blocks.
    state: [u32; 5],
    /// The common part's bytes after its whole blocks (fewer than a block), then zeros.
    tail: [u8; SHA1_BLOCK],
    tail_len: usize,
    /// Bytes the whole blocks hold (a multiple of [`SHA1_BLOCK`]).
    hashed: u64,
}

const SHA1_BLOCK: usize = 64;

/// SHA-1's initial chaining state (FIPS 180-4, 5.3.1).
const SHA1_INIT: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

impl EventIds {
    pub fn new(cause: &str) -> Self {
        let mut ids = EventIds {
            state: SHA1_INIT,
            tail: [0; SHA1_BLOCK],
            tail_len: 0,
            hashed: 0,
        };
        for part in [NAMESPACE.as_bytes().as_slice(), cause.as_bytes(), b"#e"] {
            ids.absorb(part);
        }
        ids
    }

    /// Adds `bytes` to the common part: each block it fills is compressed into the state.
    fn absorb(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = SHA1_BLOCK - self.tail_len;
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.tail[self.tail_len..self.tail_len + now.len()].copy_from_slice(now);
            self.tail_len += now.len();
            bytes = rest;
            if self.tail_len == SHA1_BLOCK {
                compress(&mut self.state, &self.tail);
                self.hashed += SHA1_BLOCK as u64;
                self.tail = [0; SHA1_BLOCK];
                self.tail_len = 0;
            }
        }
    }

    /// The id of the `index`-th event of this cause.
    pub fn id(&self, index: usize) -> EventId {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(index).as_bytes();
        // The last one or two blocks: the tail, the digits, the 0x80 that ends the message and,
        // at the end of the last block, the message's length in bits (FIPS 180-4, 5.1.1).
        let mut last = [0u8; 2 * SHA1_BLOCK];
        last[..SHA1_BLOCK].copy_from_slice(&self.tail);
        let end = self.tail_len + digits.len();
        last[self.tail_len..end].copy_from_slice(digits);
        last[end] = 0x80;
        let len = if end + 1 + 8 <= SHA1_BLOCK {
            SHA1_BLOCK
        } else {
            2 * SHA1_BLOCK
        };
        let bits = (self.hashed + end as u64) * 8;
        last[len - 8..len].copy_from_slice(&bits.to_be_bytes());
        let mut state = self.state;
        for block in last[..len].chunks_exact(SHA1_BLOCK) {
            compress(&mut state, block);
        }
        // A v5 UUID is the digest's first 16 bytes with its version and variant set.
        let mut bytes = [0u8; 16];
        for (word, out) in state.iter().zip(bytes.chunks_mut(4)) {
            out.copy_from_slice(&word.to_be_bytes());
        }
        let uuid = uuid::Builder::from_sha1_bytes(bytes).into_uuid();
        EventId::from(&*uuid.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
    }
}

/// SHA-1's compression of one 64-byte `block` into `state`.
fn compress(state: &mut [u32; 5], block: &[u8]) {
    sha1::compress(state, &[*GenericArray::from_slice(block)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let cause = cause_of(&SourceRef::new("actions", 3, 42));
        assert_eq!(cause, "actions:3:42");
        assert_eq!(event_id(&cause, 0), event_id(&cause, 0));
        assert_ne!(event_id(&cause, 0), event_id(&cause, 1));
        assert_ne!(event_id("actions:3:42", 0), event_id("actions:3:43", 0));
        // Pinned: a change here changes every event id downstream consumers have stored.
        assert_eq!(
            event_id("replay:0:1", 0),
            "ccb7f46e-98a6-57b4-8616-1c4006bb305a"
        );
    }

    #[test]
    fn a_cause_is_the_coordinates_joined_by_colons() {
        // The last one longer than the text held on the stack.
        let long = "t".repeat(CAUSE_INLINE + 5);
        for (topic, partition, offset) in [
            ("actions", 3, 42),
            ("", 0, 0),
            ("a.b-c_d", i32::MAX, i64::MAX),
            ("négatif", -1, i64::MIN),
            (long.as_str(), 7, 9),
        ] {
            let source = SourceRef::new(topic, partition, offset);
            let expected = format!("{topic}:{partition}:{offset}");
            assert_eq!(cause_of(&source), expected);
            assert_eq!(CauseText::of(&source).as_str(), expected);
        }
    }

    #[test]
    fn minted_ids_are_the_v5_uuids_of_the_formatted_names() {
        // Causes whose names end before, at and after SHA-1's 64-byte block boundaries.
        let long = format!("{}:7:123456789", "t".repeat(90));
        for cause in [
            "actions:3:42",
            "a-topic-of-thirty-six-characters:0:1",
            long.as_str(),
        ] {
            let ids = EventIds::new(cause);
            for index in [0, 1, 9, 10, 11, 99, 100, 12_345, usize::MAX] {
                let name = format!("{cause}#e{index}");
                let expected = Uuid::new_v5(&NAMESPACE, name.as_bytes()).to_string();
                assert_eq!(ids.id(index), expected, "{cause} {index}");
                assert_eq!(event_id(cause, index), expected, "{cause} {index}");
            }
        }
    }

    #[test]
    fn an_event_id_is_its_text_inline_or_boxed() {
        let long = "x".repeat(EventId::INLINE + 1);
        for text in [
            "",
            "e-1",
            "ccb7f46e-98a6-57b4-8616-1c4006bb305a",
            long.as_str(),
        ] {
            let id = EventId::from(text);
            assert_eq!(id.as_str(), text);
            assert_eq!(EventId::from(text.to_owned()), id);
            assert_eq!(format!("{id}"), text);
            assert_eq!(format!("{id:?}"), format!("{text:?}"));
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(json, serde_json::to_string(text).unwrap());
            assert_eq!(serde_json::from_str::<EventId>(&json).unwrap(), id);
            let bytes = postcard::to_allocvec(&id).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(text).unwrap());
            assert_eq!(postcard::from_bytes::<EventId>(&bytes).unwrap(), id);
        }
        let inline = |id: &EventId| matches!(id.0, Repr::Inline(_));
        assert!(inline(&EventId::from(
            "ccb7f46e-98a6-57b4-8616-1c4006bb305a"
        )));
        assert!(!inline(&EventId::from(long)));
        let (a, b) = (EventId::from("a"), EventId::from("b"));
        assert!(a < b);
        assert_eq!(
            std::mem::size_of::<EventId>(),
            48,
            "an event's size is budgeted"
        );
    }

    proptest::proptest! {
        /// The hand-laid last blocks against the `uuid` crate's own v5 (SHA-1 through its
        /// `Digest` API), for names of every length around one, two and three blocks.
        #[test]
        fn any_cause_and_index_give_the_v5_uuid_of_the_name(
            cause in "\\PC{0,150}",
            index in proptest::prelude::any::<usize>(),
        ) {
            let expected = Uuid::new_v5(&NAMESPACE, format!("{cause}#e{index}").as_bytes());
            proptest::prop_assert_eq!(EventIds::new(&cause).id(index), expected.to_string());
        }
    }
}
