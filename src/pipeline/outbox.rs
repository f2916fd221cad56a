//! The partition outbox: the records a partition's batch produced, stored in the same write
//! as the batch's state and published after it (docs/design.md, commit protocol steps 3–4).
//!
//! # Why two outboxes per partition
//!
//! A batch's records are all acknowledged by the broker before its offsets are committed.
//! The worker may write batch N+1 while N's records are still being acknowledged (see the
//! worker's pipelining), but never N+2 before N is committed. So at any moment at most the
//! last *two* written batches' records can be unpublished. A batch written after the one
//! before it was committed replaces that one's outbox; a batch written ahead goes to the
//! other outbox, so N's stays until it is committed. One row written per batch, never cleared
//! record by record, no batch's records copied into the next one's, and a worker that writes
//! nothing ahead (a backlog) rewrites one outbox per partition, as before there were two.
//! (An outbox inside each user's row, which a single outbox replaced, made every write carry
//! and re-encode the events; one outbox carrying the previous batch's records as well doubled
//! what every batch wrote.)
//!
//! Each outbox holds its batch's number in the partition's sequence, so the two are read
//! back in the order they were written. After a crash the new owner reads both when it takes
//! the partition ([`merge`]). An entry whose cause is below its input partition's committed
//! offset was published (offsets are committed only after publishing) and is dropped; the
//! rest are published again with the batch that redelivers their causes, with the same event
//! ids, and carried into that batch's outbox.
//!
//! # Encoding
//!
//! The records are already the bytes that go to the broker, so the outbox is binary: a format
//! byte, the entries in [postcard](https://docs.rs/postcard), then the sequence number (8
//! bytes, little-endian). The number trails the entries so that an outbox written before it
//! existed (number 0) and a release that reads no number both read the same entries.
//! Nothing but the pipeline reads it; the store keeps it as an opaque blob.

use serde::{Deserialize, Serialize};

use super::log::OutRecord;
use crate::core::model::SourceRef;
use crate::store::OutboxWrite;

/// The first byte of an encoded outbox; a different one is refused, never misread.
const FORMAT: u8 = 1;

/// One record to produce, and the consumed record whose processing produced it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub cause: SourceRef,
    pub record: OutRecord,
}

/// The outbox `owner` stores for `entries`, the partition's batch number `seq`
/// ([`crate::store::BatchWrite::outbox`]): encoded straight into the store's row buffer,
/// behind room for its header.
pub fn write(owner: &str, seq: u64, entries: &[OutboxEntry]) -> OutboxWrite {
    OutboxWrite::appended(owner, encoded_len(entries) + SEQ_BYTES, |bytes| {
        let mut bytes = append(entries, bytes);
        bytes.extend_from_slice(&seq.to_le_bytes());
        bytes
    })
}

/// The sequence number's width, behind the entries.
const SEQ_BYTES: usize = 8;

/// A stored outbox read back: its batch's number and its entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The batch's number in its partition's sequence; 0 for an outbox written before
    /// outboxes were numbered.
    pub seq: u64,
    pub entries: Vec<OutboxEntry>,
}

/// The entries of a partition's stored outboxes in the order their batches were written,
/// each once. The newer of two outboxes can hold entries of the older one: the first batch
/// after a take carries what its predecessors left unpublished. Such a copy is kept where
/// the newer outbox has it, after everything the older one held before it, which keeps the
/// order in which they were first produced.
pub fn merge(mut stored: Vec<Stored>) -> Vec<OutboxEntry> {
    stored.sort_by_key(|s| s.seq);
    let all: Vec<OutboxEntry> = stored.into_iter().flat_map(|s| s.entries).collect();
    let mut seen = std::collections::HashSet::with_capacity(all.len());
    let mut kept: Vec<&OutboxEntry> = all.iter().rev().filter(|e| seen.insert(*e)).collect();
    kept.reverse();
    kept.into_iter().cloned().collect()
}

/// About the bytes `entries` encode to, so that the buffer is sized once: the payloads are
/// nearly all of it, and each entry adds its topic, key, headers, cause and a few length
/// prefixes.
fn encoded_len(entries: &[OutboxEntry]) -> usize {
    let size: usize = entries
        .iter()
        .map(|e| {
            let r = &e.record;
            let headers: usize = r.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
            r.payload.len() + r.key.len() + r.topic.len() + e.cause.topic.len() + headers + 32
        })
        .sum();
    1 + 10 + size
}

/// `entries` encoded behind what `bytes` holds.
fn append(entries: &[OutboxEntry], mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.push(FORMAT);
    // Encoding plain structs of strings, integers and byte strings into a growing vector
    // cannot fail.
    postcard::serialize_with_flavor(entries, Appending(bytes)).expect("outbox entries encode")
}

/// A postcard output that appends to a vector a slice at a time. (postcard's `to_extend`
/// goes through `Extend<u8>`, a byte at a time: 2.8 % of the worker's profile samples with
/// the payloads the outbox carries.)
struct Appending(Vec<u8>);

impl postcard::ser_flavors::Flavor for Appending {
    type Output = Vec<u8>;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// Why a stored outbox cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox does not decode: {0}")]
    Decode(#[from] postcard::Error),
    #[error("outbox format {found} is not {FORMAT} (written by another version)")]
    Format { found: u8 },
    #[error("outbox has {found} bytes after its entries, not a {SEQ_BYTES}-byte batch number")]
    Trailing { found: usize },
}

/// The store keeps outboxes opaque: an unreadable one is a corrupt row of the store.
impl From<OutboxError> for crate::store::Corruption {
    fn from(e: OutboxError) -> Self {
        crate::store::Corruption::Payload(Box::new(e))
    }
}

/// Decodes a stored outbox; bad bytes are an error naming the problem, never a panic.
pub fn decode(bytes: &[u8]) -> Result<Stored, OutboxError> {
    match bytes.split_first() {
        None => Ok(Stored {
            seq: 0,
            entries: Vec::new(),
        }),
        Some((&FORMAT, rest)) => {
            let (entries, rest) = postcard::take_from_bytes(rest)?;
            let seq = match <[u8; SEQ_BYTES]>::try_from(rest) {
                Ok(seq) => u64::from_le_bytes(seq),
                Err(_) if rest.is_empty() => 0,
                Err(_) => return Err(OutboxError::Trailing { found: rest.len() }),
            };
            Ok(Stored { seq, entries })
        }
        Some((&found, _)) => Err(OutboxError::Format { found }),
    }
}

/// The event id of an entry (its `questline-event-id` header), if it carries one.
pub fn event_id(record: &OutRecord) -> Option<&str> {
    record.header("questline-event-id")
}

#[cfg(test)]
mod tests {
    use super::super::log::text_header;
    use super::*;
    use proptest::prelude::*;

    fn entry(offset: i64, payload: &[u8]) -> OutboxEntry {
        OutboxEntry {
            cause: SourceRef::new("actions", 3, offset),
            record: OutRecord {
                topic: "questline.progress".into(),
                key: "user-1".into(),
                payload: payload.to_vec(),
                headers: vec![text_header("questline-event-id", format!("id-{offset}"))],
            },
        }
    }

    /// The bytes the store is given for `entries`, as batch 7.
    fn encoded(entries: &[OutboxEntry]) -> Vec<u8> {
        write("g/p3", 7, entries).bytes().to_vec()
    }

    fn stored(seq: u64, entries: Vec<OutboxEntry>) -> Stored {
        Stored { seq, entries }
    }

    #[test]
    fn entries_and_their_batch_number_round_trip() {
        let entries = vec![entry(1, b"{\"a\":1}"), entry(2, &[0, 255, 7])];
        let written = write("g/p3", 41, &entries);
        assert_eq!(written.owner, "g/p3");
        let bytes = written.bytes();
        assert_eq!(bytes[0], FORMAT);
        assert_eq!(decode(bytes).unwrap(), stored(41, entries.clone()));
        assert_eq!(decode(&encoded(&[])).unwrap(), stored(7, vec![]));
        assert_eq!(decode(&[]).unwrap(), stored(0, vec![]));
        assert_eq!(event_id(&entries[1].record), Some("id-2"));
    }

    /// Outboxes written before they were numbered read as batch 0; a release that reads no
    /// number reads the entries of a numbered one (postcard leaves trailing bytes alone).
    #[test]
    fn numbered_and_unnumbered_outboxes_read_both_ways() {
        let entries = vec![entry(1, b"x"), entry(2, b"y")];
        let unnumbered = postcard::to_extend(&entries, vec![FORMAT]).unwrap();
        assert_eq!(decode(&unnumbered).unwrap(), stored(0, entries.clone()));
        let numbered = encoded(&entries);
        let read_by_unnumbered_release: Vec<OutboxEntry> =
            postcard::from_bytes(&numbered[1..]).unwrap();
        assert_eq!(read_by_unnumbered_release, entries);
    }

    #[test]
    fn other_formats_and_truncated_bytes_are_errors() {
        let bytes = encoded(&[entry(1, b"x")]);
        let short = decode(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(
            short.to_string().contains("7 bytes after its entries"),
            "{short}"
        );
        assert!(decode(&bytes[..bytes.len() - SEQ_BYTES - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(decode(&other).unwrap_err().to_string().contains("format 9"));
    }

    #[test]
    fn merged_outboxes_come_in_batch_order() {
        let older = stored(4, vec![entry(10, b"a"), entry(11, b"b")]);
        let newer = stored(5, vec![entry(20, b"c")]);
        let expected = vec![entry(10, b"a"), entry(11, b"b"), entry(20, b"c")];
        assert_eq!(merge(vec![newer.clone(), older.clone()]), expected);
        assert_eq!(merge(vec![older, newer]), expected);
        assert_eq!(merge(vec![]), vec![]);
    }

    /// The first batch after a take carries what both outboxes left unpublished into the
    /// older one's slot, which becomes the newer: its copies are the ones kept, in its order.
    #[test]
    fn carried_copies_are_kept_once_in_the_order_first_produced() {
        let (a, b, c, d) = (
            entry(10, b"a"),
            entry(20, b"b"),
            entry(30, b"c"),
            entry(40, b"d"),
        );
        let left = stored(8, vec![b.clone(), c.clone()]);
        let carrying = stored(9, vec![a.clone(), b.clone(), c.clone(), d.clone()]);
        assert_eq!(merge(vec![left, carrying]), vec![a, b, c, d]);
    }

    /// Outboxes written while header values were text decode with byte values: postcard
    /// writes a string and a sequence of bytes alike (a length, then the bytes).
    #[test]
    fn outboxes_with_text_header_values_still_decode() {
        #[derive(Serialize)]
        struct TextRecord {
            topic: String,
            key: String,
            #[serde(with = "serde_bytes")]
            payload: Vec<u8>,
            headers: Vec<(String, String)>,
        }
        #[derive(Serialize)]
        struct TextEntry {
            cause: SourceRef,
            record: TextRecord,
        }
        let old = vec![TextEntry {
            cause: SourceRef::new("actions", 3, 1),
            record: TextRecord {
                topic: "questline.progress".into(),
                key: "user-1".into(),
                payload: b"{}".to_vec(),
                headers: vec![("questline-event-id".into(), "id-1é".into())],
            },
        }];
        let bytes = postcard::to_extend(&old, vec![FORMAT]).unwrap();
        let decoded = decode(&bytes).unwrap();
        assert_eq!((decoded.seq, decoded.entries.len()), (0, 1));
        assert_eq!(event_id(&decoded.entries[0].record), Some("id-1é"));
        let again = encoded(&decoded.entries);
        assert_eq!(
            again[..again.len() - SEQ_BYTES],
            bytes,
            "and encode the same way"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        /// However the two outboxes of a partition were written (disjoint batches, or the
        /// newer carrying a suffix of the older's entries), merging them yields every entry
        /// once, in the order of first production.
        #[test]
        fn merge_keeps_every_entry_once_in_order(
            older in 0usize..6,
            carried in 0usize..6,
            newer in 0usize..6,
            newer_first in any::<bool>(),
        ) {
            let carried = carried.min(older);
            let first: Vec<OutboxEntry> = (0..older).map(|i| entry(i as i64, b"o")).collect();
            let fresh: Vec<OutboxEntry> = (0..newer).map(|i| entry(100 + i as i64, b"n")).collect();
            let mut second: Vec<OutboxEntry> = first[older - carried..].to_vec();
            second.extend(fresh.iter().cloned());
            let mut slots = vec![stored(1, first.clone()), stored(2, second)];
            if newer_first {
                slots.reverse();
            }
            let mut expected = first;
            expected.extend(fresh);
            prop_assert_eq!(merge(slots), expected);
        }
    }
}
