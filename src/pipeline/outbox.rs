//! The partition outbox: the records a partition's last batch produced, stored in the same
//! write as the batch's state and published after it (docs/design.md, commit protocol steps 3–4).
//!
//! # Why one outbox per partition, replaced by every batch
//!
//! A batch's records are all acknowledged by the broker before its offsets are committed, and
//! the next batch is written only after that (it may be evaluated meanwhile: see the worker's
//! pipelining). So at any moment only the *last written* batch's records can be unpublished, and each batch's write simply replaces the stored outbox: one
//! row per partition, written once per batch, never cleared record by record. (An outbox
//! inside each user's row, which is what this replaced, made every write carry and re-encode
//! the events, and forced a second write to clear them.)
//!
//! After a crash the new owner reads the outbox when it takes the partition. An entry whose
//! cause is below its input partition's committed offset was published (offsets are committed
//! only after publishing) and is dropped; the rest are published again with the batch that
//! redelivers their causes, with the same event ids, and carried into that batch's outbox.
//!
//! # Encoding
//!
//! The records are already the bytes that go to the broker, so the outbox is binary: a format
//! byte, then the entries in [postcard](https://docs.rs/postcard). Nothing but the pipeline
//! reads it; the store keeps it as an opaque blob.

use serde::{Deserialize, Serialize};

use super::log::OutRecord;
use crate::core::model::SourceRef;
use crate::store::OutboxWrite;

/// The first byte of an encoded outbox; a different one is refused, never misread.
const FORMAT: u8 = 1;

/// One record to produce, and the consumed record whose processing produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub cause: SourceRef,
    pub record: OutRecord,
}

/// The outbox `owner` stores for `entries` ([`crate::store::BatchWrite::outbox`]): encoded
/// straight into the store's row buffer, behind room for its header.
pub fn write(owner: &str, entries: &[OutboxEntry]) -> OutboxWrite {
    OutboxWrite::appended(owner, encoded_len(entries), |bytes| append(entries, bytes))
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
}

/// The store keeps outboxes opaque: an unreadable one is a corrupt row of the store.
impl From<OutboxError> for crate::store::Corruption {
    fn from(e: OutboxError) -> Self {
        crate::store::Corruption::Payload(Box::new(e))
    }
}

/// Decodes a stored outbox; bad bytes are an error naming the problem, never a panic.
pub fn decode(bytes: &[u8]) -> Result<Vec<OutboxEntry>, OutboxError> {
    match bytes.split_first() {
        None => Ok(Vec::new()),
        Some((&FORMAT, rest)) => Ok(postcard::from_bytes(rest)?),
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

    /// The bytes the store is given for `entries`.
    fn encoded(entries: &[OutboxEntry]) -> Vec<u8> {
        write("g/p3", entries).bytes().to_vec()
    }

    #[test]
    fn entries_round_trip() {
        let entries = vec![entry(1, b"{\"a\":1}"), entry(2, &[0, 255, 7])];
        let stored = write("g/p3", &entries);
        assert_eq!(stored.owner, "g/p3");
        let bytes = stored.bytes();
        assert_eq!(bytes[0], FORMAT);
        assert_eq!(decode(bytes).unwrap(), entries);
        assert_eq!(decode(&encoded(&[])).unwrap(), vec![]);
        assert_eq!(decode(&[]).unwrap(), vec![]);
        assert_eq!(event_id(&entries[1].record), Some("id-2"));
    }

    #[test]
    fn other_formats_and_truncated_bytes_are_errors() {
        let bytes = encoded(&[entry(1, b"x")]);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(decode(&other).unwrap_err().to_string().contains("format 9"));
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
        assert_eq!(decoded.len(), 1);
        assert_eq!(event_id(&decoded[0].record), Some("id-1é"));
        assert_eq!(encoded(&decoded), bytes, "and encode the same way");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }
    }
}
