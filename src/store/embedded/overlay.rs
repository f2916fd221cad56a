//! Rows that are durable in the journal but not yet checkpointed into the B-tree.
//!
//! The embedded store answers every read from three layers, newest first: the *active*
//! overlay (batches written since the last freeze), the *frozen* overlay (batches being
//! checkpointed into redb right now) and redb itself. An overlay is an ordered map from a
//! row's key to its sealed row (write timestamp header included), so fencing, decoding and the
//! checkpoint's sorted inserts work on the same bytes redb holds.
//!
//! A row is fenced against the overlays' row of its key when it is written, not against
//! redb's: that would cost a B-tree descent per row, for every new user and every history row,
//! and redb is read anyway where it matters. A read of a row an overlay holds also reads
//! redb's and returns whichever outranks (a zombie owner's late row in an overlay does not hide
//! its successor's checkpointed one), and the checkpoint's fenced insert keeps redb's row when
//! it outranks. So every read sees what fencing at write would have left.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;

use smol_str::SmolStr;

use super::super::wire::{self, Problem, Reader, WireError, Writer};
use super::sort_key::{self, KeyBytes, SortKey};
use super::tables::outranks;

/// The key of a row in any of the store's tables: the table is the variant.
///
/// Ordered by table, then by the same fields in the same order as the redb table's key, so a
/// checkpoint inserts each table's rows in the B-tree's own order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum RowKey {
    /// (tenant, user id)
    User(SmolStr, SmolStr),
    /// resource key
    Resource(String),
    /// (tenant, user id, seq)
    History(SmolStr, SmolStr, u64),
    /// (tenant, user id, claim id)
    Claim(String, String, String),
    /// (tenant, challenge id, input partition)
    Finished(String, u32, String),
    /// owner (`group/pN`)
    Outbox(String),
    /// (input `topic:partition`, chunk): the history entries made by a range of that input's
    /// offsets, filed by position (`history_log`).
    HistoryChunk(String, i64),
}

pub(super) const USER: u8 = 1;
pub(super) const RESOURCE: u8 = 2;
pub(super) const HISTORY: u8 = 3;
pub(super) const CLAIM: u8 = 4;
pub(super) const FINISHED: u8 = 5;
pub(super) const OUTBOX: u8 = 6;
pub(super) const HISTORY_LOG: u8 = 7;

impl RowKey {
    /// Appends the key in the journal's form: a table tag, then the fields.
    pub(super) fn write(&self, w: &mut Writer) {
        match self {
            RowKey::User(tenant, user) => {
                w.u8(USER);
                w.str(tenant);
                w.str(user);
            }
            RowKey::Resource(key) => {
                w.u8(RESOURCE);
                w.str(key);
            }
            RowKey::History(tenant, user, seq) => {
                w.u8(HISTORY);
                w.str(tenant);
                w.str(user);
                w.u64(*seq);
            }
            RowKey::Claim(tenant, user, claim) => {
                w.u8(CLAIM);
                w.str(tenant);
                w.str(user);
                w.str(claim);
            }
            RowKey::Finished(tenant, challenge, partition) => {
                w.u8(FINISHED);
                w.str(tenant);
                w.u32(*challenge);
                w.str(partition);
            }
            RowKey::Outbox(owner) => {
                w.u8(OUTBOX);
                w.str(owner);
            }
            RowKey::HistoryChunk(input, chunk) => {
                w.u8(HISTORY_LOG);
                w.str(input);
                w.i64(*chunk);
            }
        }
    }

    /// Reads a key written by [`RowKey::write`].
    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let key = match r.u8("table")? {
            USER => RowKey::User(r.str_ref("tenant")?.into(), r.str_ref("user id")?.into()),
            RESOURCE => RowKey::Resource(r.str("resource")?),
            HISTORY => RowKey::History(
                r.str_ref("tenant")?.into(),
                r.str_ref("user id")?.into(),
                r.u64("seq")?,
            ),
            CLAIM => RowKey::Claim(r.str("tenant")?, r.str("user id")?, r.str("claim id")?),
            FINISHED => {
                RowKey::Finished(r.str("tenant")?, r.u32("challenge")?, r.str("partition")?)
            }
            OUTBOX => RowKey::Outbox(r.str("owner")?),
            HISTORY_LOG => RowKey::HistoryChunk(r.str("input")?, r.i64("chunk")?),
            other => return Err(wire::err("table", Problem::Tag(other))),
        };
        Ok(key)
    }
}

/// Memory an entry of this key costs in an overlay, besides its row: the encoded key and the
/// map's node share (an estimate for the checkpoint threshold, from the layout rather than
/// measured: a 40-byte key-and-row slot in B-tree nodes about two-thirds full, and the
/// allocator's rounding of the key).
fn footprint(key: &SortKey) -> usize {
    const ENTRY: usize = 64;
    ENTRY + key.as_bytes().len()
}

/// Sealed rows by key, and roughly how much memory they hold. Keys are held as their
/// [`SortKey`] encoding: one `memcmp` per comparison in the map's descents.
#[derive(Debug, Default)]
pub(super) struct Overlay {
    rows: BTreeMap<SortKey, Vec<u8>>,
    bytes: usize,
}

impl Overlay {
    pub(super) fn get(&self, key: &RowKey) -> Option<&[u8]> {
        self.get_encoded(&sort_key::encode(key))
    }

    fn get_encoded(&self, key: &[u8]) -> Option<&[u8]> {
        self.rows.get(key).map(Vec::as_slice)
    }

    /// Sets `key` to `row`, replacing what the overlay had, unfenced (for tests that lay out
    /// overlays as they wish).
    #[cfg(test)]
    pub(super) fn insert(&mut self, key: RowKey, row: Vec<u8>) {
        put(&mut self.bytes, self.rows.entry(SortKey::of(&key)), row);
    }

    /// Sets `key` to `row` unless the row held for it outranks it: this overlay's, or when it
    /// has none, `below`'s (the frozen overlay under the active one). One descent of this
    /// overlay's map finds the held row and makes the write.
    pub(super) fn insert_fenced(&mut self, key: &RowKey, row: Vec<u8>, below: Option<&Overlay>) {
        let entry = self.rows.entry(SortKey::of(key));
        let held = match &entry {
            Entry::Occupied(held) => Some(held.get().as_slice()),
            Entry::Vacant(vacant) => {
                below.and_then(|below| below.get_encoded(vacant.key().as_bytes()))
            }
        };
        if held.is_none_or(|held| outranks(key, &row, Some(held))) {
            put(&mut self.bytes, entry, row);
        }
    }

    /// Estimated memory held, in bytes.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Every row, in key order (the key as encoded: [`SortKey::decode_into`] reads it).
    pub(super) fn iter(&self) -> impl Iterator<Item = (&SortKey, &[u8])> {
        self.rows.iter().map(|(k, v)| (k, v.as_slice()))
    }

    /// The finished counters of `tenant` (challenge, partition, row), in key order.
    pub(super) fn finished_of<'a>(
        &'a self,
        tenant: &str,
    ) -> impl Iterator<Item = (u32, String, &'a [u8])> + 'a {
        let mut prefix = KeyBytes::new();
        sort_key::finished_prefix(&mut prefix, tenant);
        let from: &[u8] = &prefix;
        let range = self
            .rows
            .range::<[u8], _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded));
        range.map_while(move |(key, row)| {
            let rest = key.as_bytes().strip_prefix(&prefix[..])?;
            let (challenge, partition) = sort_key::finished_fields(rest);
            Some((challenge, partition, row.as_slice()))
        })
    }
}

/// Writes `row` at `entry`, keeping `bytes` (an overlay's estimate) up to date.
fn put(bytes: &mut usize, entry: Entry<'_, SortKey, Vec<u8>>, row: Vec<u8>) {
    let len = row.len();
    match entry {
        Entry::Occupied(mut entry) => {
            // The key is the same one: only the row's size changes.
            let old = std::mem::replace(entry.get_mut(), row);
            *bytes = *bytes + len - old.len();
        }
        Entry::Vacant(entry) => {
            *bytes += footprint(entry.key()) + len;
            entry.insert(row);
        }
    }
}

/// A frozen overlay and the last journal segment whose batches it holds: once it is in redb,
/// those segments can go.
#[derive(Debug)]
pub(super) struct Frozen {
    pub overlay: Overlay,
    pub through_segment: u64,
}

/// The layers above redb, read newest first.
#[derive(Debug, Default)]
pub(super) struct Layers {
    pub active: Overlay,
    pub frozen: Option<Arc<Frozen>>,
}

impl Layers {
    /// The newest row of `key` held above redb.
    pub(super) fn get(&self, key: &RowKey) -> Option<&[u8]> {
        self.active
            .get(key)
            .or_else(|| self.frozen.as_ref().and_then(|f| f.overlay.get(key)))
    }

    /// Writes `row` into the active overlay unless the newest row the layers hold for `key`
    /// outranks it: fenced against the overlays only (see the module's doc).
    pub(super) fn write_fenced(&mut self, key: &RowKey, row: Vec<u8>) {
        let frozen = self.frozen.as_deref().map(|frozen| &frozen.overlay);
        self.active.insert_fenced(key, row, frozen);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tables::seal;
    use super::*;

    /// A write is fenced against the newest row the layers hold: the active overlay's, else
    /// the frozen one's (a zombie's late row must not shadow its successor's there either).
    #[test]
    fn writes_are_fenced_against_the_active_then_the_frozen_overlay() {
        let user = RowKey::User("t".into(), "u".into());
        let other = RowKey::User("t".into(), "v".into());
        let mut frozen = Overlay::default();
        frozen.insert(user.clone(), seal(20, b"successor"));
        frozen.insert(other.clone(), seal(5, b"old"));
        let mut layers = Layers {
            active: Overlay::default(),
            frozen: Some(Arc::new(Frozen {
                overlay: frozen,
                through_segment: 1,
            })),
        };
        // Older than the frozen row: refused, the successor's row stays the newest.
        layers.write_fenced(&user, seal(10, b"zombie"));
        assert_eq!(layers.get(&user), Some(seal(20, b"successor").as_slice()));
        assert!(layers.active.is_empty());
        // Newer than the frozen row: written above it.
        layers.write_fenced(&other, seal(6, b"newer"));
        assert_eq!(layers.get(&other), Some(seal(6, b"newer").as_slice()));
        // Against the active overlay's own row: older refused, newer (or equal) replaces.
        layers.write_fenced(&other, seal(5, b"late"));
        assert_eq!(layers.get(&other), Some(seal(6, b"newer").as_slice()));
        layers.write_fenced(&other, seal(6, b"again"));
        assert_eq!(layers.get(&other), Some(seal(6, b"again").as_slice()));
        assert_eq!(
            layers.active.bytes(),
            footprint(&SortKey::of(&other)) + seal(6, b"again").len(),
            "one entry, its row replaced"
        );
    }

    fn keys() -> Vec<RowKey> {
        vec![
            RowKey::User("t".into(), "u".into()),
            RowKey::Resource("r".into()),
            RowKey::History("t".into(), "u".into(), u64::MAX),
            RowKey::Claim("t".into(), "u".into(), "c".into()),
            RowKey::Finished("t".into(), 7, "g/p0".into()),
            RowKey::Outbox("g/p0".into()),
        ]
    }

    #[test]
    fn keys_round_trip_through_the_journal_form() {
        for key in keys() {
            let mut w = Writer::default();
            key.write(&mut w);
            let mut r = Reader::new(&w.buf);
            assert_eq!(RowKey::read(&mut r).unwrap(), key);
            r.finish("key").unwrap();
        }
        let mut r = Reader::new(&[9, 0]);
        assert!(
            RowKey::read(&mut r).is_err(),
            "an unknown table is an error"
        );
    }

    #[test]
    fn the_active_layer_shadows_the_frozen_one_and_bytes_follow_replacements() {
        let key = RowKey::User("t".into(), "u".into());
        let mut frozen = Overlay::default();
        frozen.insert(key.clone(), b"old".to_vec());
        let mut layers = Layers {
            frozen: Some(Arc::new(Frozen {
                overlay: frozen,
                through_segment: 1,
            })),
            ..Layers::default()
        };
        assert_eq!(layers.get(&key), Some(&b"old"[..]));
        layers.active.insert(key.clone(), b"newer".to_vec());
        assert_eq!(layers.get(&key), Some(&b"newer"[..]));
        let one = layers.active.bytes();
        layers.active.insert(key.clone(), b"newest!".to_vec());
        assert_eq!(
            layers.active.bytes(),
            one + 2,
            "replacing counts the row difference"
        );
        assert_eq!(layers.active.len(), 1);
    }

    #[test]
    fn finished_counters_of_a_tenant_only() {
        let mut o = Overlay::default();
        o.insert(RowKey::Finished("a".into(), 1, "p".into()), vec![1]);
        o.insert(RowKey::Finished("b".into(), 2, "p".into()), vec![2]);
        o.insert(RowKey::Finished("b".into(), 3, "q".into()), vec![3]);
        o.insert(RowKey::Outbox("b".into()), vec![4]);
        let b: Vec<_> = o.finished_of("b").map(|(c, p, r)| (c, p, r[0])).collect();
        assert_eq!(b, vec![(2, "p".to_string(), 2), (3, "q".to_string(), 3)]);
    }
}
