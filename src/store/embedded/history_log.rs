//! History entries filed by position ([`HISTORY_LOG`](super::tables::HISTORY_LOG)): their
//! rows, and how a page of a user's history is found through the links.
//!
//! Why a log: filed by (user, sequence number), each checkpoint inserted a row into a page of
//! every active user's history, scattered over a table larger than the page cache, and redb
//! rewrites every page it inserts into. Filed by the position of the input that made them
//! ([`HistoryPos`]), a checkpoint's entries go to the end of each input partition's run of
//! keys. And since redb's cost is per inserted row as much as per page, the entries made by a
//! range of [`CHUNK_OFFSETS`] offsets of an input partition share one row, a *chunk*: 32 ×
//! the history entries an input makes, ~11 at the benchmark's ~0.35 an action (arithmetic
//! from its event counts, not a count of stored chunks). The user's row holds the newest
//! entry's position ([`HistoryChain`]); each entry holds the positions of the entry before it
//! and of the last entry of the block before its own.
//!
//! A chunk's payload is its entries in key order (offset, index, tenant, user id), each: the
//! offset, the index, the tenant, the user id, the two links (`state_format::write_opt_pos`),
//! then the entry's JSON as the sidecar serves it (`{"seq":N,"event":{...}}`), length first.
//! A batch's write brings a chunk's new entries; the store merges them into the chunk's
//! newest row before the journal append ([`merge`]), so every row, in the journal as in redb,
//! is the whole chunk (an entry written again, by a replay, replaces its earlier self).
//!
//! Entries filed by user (written without a place: by tools, tests and earlier versions)
//! stay in the `history` table, and a chain that ends before the history's first entry (no
//! link where one was due) continues there: a store upgraded from an earlier format serves its
//! whole history, old entries and new.

use std::cmp::Ordering;

use super::super::codec::{decode, page_seqs};
use super::super::state_format::{read_opt_pos, write_opt_pos};
use super::super::wire::{Reader, WireError, Writer};
use super::layered::View;
use super::overlay::RowKey;
use super::tables::{decode_row, row_header, unseal};
use crate::core::records::{HistoryChain, HistoryEntry, HistoryPlace, HistoryPos, UserRecord};
use crate::store::{Corruption, StoreError, UserKey};

/// Offsets of an input partition whose entries share a chunk row.
pub(super) const CHUNK_OFFSETS: i64 = 32;

/// The key of the chunk that holds the entry at `pos`.
pub(super) fn chunk_key(pos: &HistoryPos) -> RowKey {
    RowKey::HistoryChunk(pos.input.to_string(), pos.offset.div_euclid(CHUNK_OFFSETS))
}

/// Appends an entry of `user`, filed at `place`, to a chunk's payload (`out`): its key, its
/// links, then `entry_json` (the payload a row filed by user would hold).
pub(super) fn write_entry(
    out: &mut Vec<u8>,
    user: &UserKey,
    place: &HistoryPlace,
    entry_json: &[u8],
) {
    let mut w = Writer {
        buf: std::mem::take(out),
    };
    w.i64(place.at.offset);
    w.u32(place.at.index);
    w.str(&user.tenant);
    w.str(&user.user_id);
    write_opt_pos(&mut w, place.prev.as_ref());
    write_opt_pos(&mut w, place.block.as_ref());
    w.len(entry_json.len());
    w.buf.extend_from_slice(entry_json);
    *out = w.buf;
}

/// One entry of a chunk, borrowed from its row.
struct ChunkEntry<'a> {
    offset: i64,
    index: u32,
    tenant: &'a str,
    user: &'a str,
    /// The two links, encoded: read only for the entry a lookup is after.
    links: &'a [u8],
    json: &'a [u8],
    /// The entry's whole encoding, for copying it into a merged chunk.
    bytes: &'a [u8],
}

impl ChunkEntry<'_> {
    fn order(&self, other: &ChunkEntry<'_>) -> Ordering {
        (self.offset, self.index, self.tenant, self.user).cmp(&(
            other.offset,
            other.index,
            other.tenant,
            other.user,
        ))
    }
}

/// The entries of a chunk's payload, in their order, read one by one (a lookup stops at the
/// entry it is after).
fn entries(payload: &[u8]) -> impl Iterator<Item = Result<ChunkEntry<'_>, WireError>> {
    let mut rest = payload;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let entry = next_entry(rest);
        // After a bad entry, nothing more is read.
        rest = match &entry {
            Ok(entry) => &rest[entry.bytes.len()..],
            Err(_) => &[],
        };
        Some(entry)
    })
}

/// The entry at the start of `rest`.
fn next_entry(rest: &[u8]) -> Result<ChunkEntry<'_>, WireError> {
    let mut r = Reader::new(rest);
    let offset = r.i64("offset")?;
    let index = r.u32("index")?;
    let tenant = r.str_ref("tenant")?;
    let user = r.str_ref("user id")?;
    let links = {
        let before = r.rest();
        skip_opt_pos(&mut r, "prev")?;
        skip_opt_pos(&mut r, "block")?;
        &before[..before.len() - r.rest().len()]
    };
    let n = r.len("entry", 1)?;
    let json = r.take("entry", n)?;
    Ok(ChunkEntry {
        offset,
        index,
        tenant,
        user,
        links,
        json,
        bytes: &rest[..rest.len() - r.rest().len()],
    })
}

/// A chunk whose bytes do not decode.
fn corrupt(key: &RowKey, e: WireError) -> StoreError {
    StoreError::corrupt(key, Corruption::from(e))
}

/// Reads past what `write_opt_pos` wrote, building nothing.
fn skip_opt_pos(r: &mut Reader<'_>, field: &'static str) -> Result<(), WireError> {
    if r.u8(field)? != 0 {
        r.str_ref(field)?;
        r.i64(field)?;
        r.u32(field)?;
    }
    Ok(())
}

/// The chunk row `key` holds after `new` (a sealed row of new entries, as a batch brings
/// them) is written over `stored` (its newest row so far, if any): the entries of both in key
/// order, `new`'s where both have one, sealed with `new`'s header. `None`: `new` itself, as
/// it is (no row stored, and its entries already in order, each key once, as a batch
/// writes them): the common case, a chunk no batch wrote before, costs no copy.
pub(super) fn merge(
    key: &RowKey,
    stored: Option<&[u8]>,
    new: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    let (timestamp, new_payload) = unseal(key, new)?;
    let fresh: Vec<ChunkEntry<'_>> = entries(new_payload)
        .collect::<Result<_, _>>()
        .map_err(|e| corrupt(key, e))?;
    let Some(stored) = stored else {
        let ordered = fresh
            .windows(2)
            .all(|pair| pair[0].order(&pair[1]) == Ordering::Less);
        return Ok((!ordered).then(|| seal_entries(timestamp, &in_order(fresh))));
    };
    let fresh = in_order(fresh);
    // An unreadable stored chunk is replaced by the new entries alone (and logged): the same
    // rule as for any unreadable row (`tables::outranks`).
    let old = unseal(key, stored).and_then(|(_, payload)| {
        entries(payload)
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt(key, e))
    });
    let old = match old {
        Ok(old) => in_order(old),
        Err(e) => {
            tracing::warn!(%key, error = %e, "replaced an unreadable history chunk");
            Vec::new()
        }
    };
    let mut merged = Vec::with_capacity(old.len() + fresh.len());
    let (mut a, mut b) = (old.into_iter().peekable(), fresh.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.order(y) {
                Ordering::Less => a.next(),
                Ordering::Greater => b.next(),
                Ordering::Equal => {
                    a.next();
                    b.next()
                }
            },
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        };
        match next {
            Some(entry) => merged.push(entry),
            None => break,
        }
    }
    Ok(Some(seal_entries(timestamp, &merged)))
}

/// `entries` in key order, each key once: of an entry written twice, the later. A chunk's
/// rows are written in order by [`merge`]; this keeps a row that is not from making a merged
/// row that is not either.
fn in_order(mut entries: Vec<ChunkEntry<'_>>) -> Vec<ChunkEntry<'_>> {
    entries.sort_by(ChunkEntry::order); // stable: equal keys stay in the order written
    entries.dedup_by(|later, kept| {
        let same = later.order(kept) == Ordering::Equal;
        if same {
            std::mem::swap(later, kept);
        }
        same
    });
    entries
}

fn seal_entries(timestamp: i64, entries: &[ChunkEntry<'_>]) -> Vec<u8> {
    let header = row_header(timestamp);
    let len = entries.iter().map(|e| e.bytes.len()).sum::<usize>();
    let mut row = Vec::with_capacity(header.len() + len);
    row.extend_from_slice(&header);
    for entry in entries {
        row.extend_from_slice(entry.bytes);
    }
    row
}

/// A stored entry's links, and the entry when it was asked for.
struct Linked {
    entry: Option<HistoryEntry>,
    prev: Option<HistoryPos>,
    block: Option<HistoryPos>,
}

/// One step of a walk through a user's history, newest first: where entry `seq` is.
enum Cursor {
    /// Filed by position at `pos`; `block` is its block link, when known without reading it.
    Logged {
        seq: u64,
        pos: HistoryPos,
        block: Option<Option<HistoryPos>>,
    },
    /// Filed by user (this entry and every older one).
    ByUser,
}

/// The page of `user`'s history that [`page_seqs`] names, newest first, and the history's
/// length. Reads the user's row, then an entry's chunk per entry on the page, per block
/// skipped, and per entry between the block's end and the page: at most
/// [`HistoryChain::BLOCK`].
pub(super) fn page(
    view: &View<'_>,
    user: &UserKey,
    page: u32,
    per_page: u32,
) -> Result<(Vec<HistoryEntry>, u64), StoreError> {
    let user_key = RowKey::User(user.tenant.clone(), user.user_id.clone());
    let record: Option<UserRecord> = view
        .get(&user_key)?
        .map(|row| decode_row(&user_key, &row))
        .transpose()?;
    let Some(record) = record else {
        return Ok((Vec::new(), 0));
    };
    let total = record.history_len;
    let mut cursor = match (record.history_chain, total.checked_sub(1)) {
        (
            HistoryChain {
                head: Some(pos),
                block,
            },
            Some(seq),
        ) => Cursor::Logged {
            seq,
            pos,
            block: Some(block),
        },
        _ => Cursor::ByUser,
    };
    let mut entries = Vec::new();
    for want in page_seqs(total, page, per_page) {
        // Walk back to `want`: a block at a time while it is in an older block, then entry by
        // entry; every step reads the row it lands on, which the next step needs anyway.
        let found = loop {
            let Cursor::Logged { seq, pos, block } = std::mem::replace(&mut cursor, Cursor::ByUser)
            else {
                break by_user(view, user, want)?;
            };
            let block_start = seq - seq % HistoryChain::BLOCK;
            if want < block_start {
                let link = match block {
                    Some(known) => known,
                    None => read(view, user, &pos, false)?.and_then(|l| l.block),
                };
                cursor = match link {
                    Some(pos) => Cursor::Logged {
                        seq: block_start - 1,
                        pos,
                        block: None,
                    },
                    None => Cursor::ByUser,
                };
                continue;
            }
            let Some(linked) = read(view, user, &pos, seq == want)? else {
                // A link to an entry that is not there: nothing to follow (the rows of a batch
                // are written together, so only a damaged store has one).
                tracing::warn!(user = %user_key, seq, "a history link leads to no row");
                break None;
            };
            // Within a block every entry has the same block link.
            let older = |prev: Option<HistoryPos>| match prev {
                Some(pos) if seq > 0 => Cursor::Logged {
                    seq: seq - 1,
                    pos,
                    block: (seq % HistoryChain::BLOCK != 0).then(|| linked.block.clone()),
                },
                _ => Cursor::ByUser,
            };
            if seq == want {
                cursor = older(linked.prev.clone());
                break linked.entry;
            }
            cursor = older(linked.prev);
        };
        entries.extend(found);
    }
    Ok((entries, total))
}

/// The links of `user`'s entry at `pos`, and the entry if `with_entry` (a walk passing by an
/// entry needs only its links: decoding its JSON too made page 200 of a 5,000-entry history
/// 1.7 times as slow, 219 against 127 µs in `benches/store.rs`).
fn read(
    view: &View<'_>,
    user: &UserKey,
    pos: &HistoryPos,
    with_entry: bool,
) -> Result<Option<Linked>, StoreError> {
    let key = chunk_key(pos);
    let Some(row) = view.get(&key)? else {
        return Ok(None);
    };
    let (_, payload) = unseal(&key, &row)?;
    let wanted = (
        pos.offset,
        pos.index,
        user.tenant.as_str(),
        user.user_id.as_str(),
    );
    let found = entries(payload)
        .find(|e| {
            e.as_ref()
                .map_or(true, |e| (e.offset, e.index, e.tenant, e.user) == wanted)
        })
        .transpose()
        .map_err(|e| corrupt(&key, e))?;
    let Some(found) = found else {
        return Ok(None);
    };
    let mut links = Reader::new(found.links);
    let prev = read_opt_pos(&mut links, "prev").map_err(|e| corrupt(&key, e))?;
    let block = read_opt_pos(&mut links, "block").map_err(|e| corrupt(&key, e))?;
    let entry = match with_entry {
        true => Some(decode(&key, found.json)?),
        false => None,
    };
    Ok(Some(Linked { entry, prev, block }))
}

fn by_user(view: &View<'_>, user: &UserKey, seq: u64) -> Result<Option<HistoryEntry>, StoreError> {
    let key = RowKey::History(user.tenant.clone(), user.user_id.clone(), seq);
    view.get(&key)?
        .map(|row| decode_row(&key, &row))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::super::EmbeddedStore;
    use super::{entries, merge, row_header, unseal, write_entry, RowKey};
    use crate::core::events::Event;
    use crate::core::model::SourceRef;
    use crate::store::codec::page_seqs;
    use crate::store::{BatchWrite, HistoryChain, HistoryEntry, HistoryPos, StateStore};
    use crate::store::{UserKey, UserRecord};

    /// A reward event of `user`, its id naming its sequence number.
    fn event(user: &str, seq: u64) -> Event {
        let mut event = super::super::recovery_tests::event();
        event.event_id = format!("{user}-e-{seq}").into();
        event.user_id = user.into();
        event.source = SourceRef::new("actions", 0, seq as i64);
        event
    }

    /// Writes `total` history entries for `user`, the first `by_user` of them without a place
    /// (as earlier versions filed them), in batches of up to `per_batch`, checkpointing every
    /// third batch; entries share inputs two by two, as an input's several events do.
    async fn fill(store: &EmbeddedStore, user: &str, by_user: u64, total: u64, per_batch: u64) {
        let key = UserKey::new("t", user);
        let mut record = UserRecord::default();
        let mut batch_no = 0;
        while record.history_len < total {
            let mut batch = BatchWrite::default();
            let end = (record.history_len + per_batch).min(total);
            for seq in record.history_len..end {
                let mut entry = HistoryEntry::new(seq, event(user, seq));
                if seq >= by_user {
                    // Two input partitions, interleaved; inputs with two entries each, every
                    // fifth offset (other users' inputs between): 14 of a user's entries
                    // share a chunk.
                    let input = format!("actions:{}", seq % 2);
                    let at = HistoryPos::new(&input, (seq / 4 * 5) as i64, (seq / 2 % 2) as u32);
                    entry.place = Some(record.history_chain.push(seq, at));
                }
                batch.history.push((key.clone(), entry));
                record.history_len += 1;
            }
            batch.users.push((key.clone(), record.clone()));
            store.write_batch(&batch).await.unwrap();
            batch_no += 1;
            if batch_no % 3 == 0 {
                store.checkpoint().await.unwrap();
            }
        }
    }

    /// Every page of every size holds exactly the entries the page arithmetic names, newest
    /// first, whether the history was filed by user, by position, or first one then the other
    /// (a store upgraded from an earlier format), and whether its rows were checkpointed yet.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_through_links_hold_the_entries_the_page_arithmetic_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let block = HistoryChain::BLOCK;
        let mut users = Vec::new();
        for by_user in [0, 1, block, block + 6] {
            for extra in [0, 1, block - 1, block, block + 1, 3 * block + 5] {
                let user = format!("u-{by_user}-{extra}");
                fill(&store, &user, by_user, by_user + extra, 7).await;
                users.push((user, by_user + extra));
            }
        }
        let check = |store: EmbeddedStore, users: Vec<(String, u64)>| async move {
            for (user, total) in &users {
                let key = UserKey::new("t", user);
                for per_page in [1, 3, 10, 64, 1000] {
                    for page in 0..=(*total as u32 / per_page + 2) {
                        let (entries, len) = store.history(&key, page, per_page).await.unwrap();
                        assert_eq!(len, *total);
                        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
                        let expected = page_seqs(*total, page, per_page);
                        assert_eq!(seqs, expected, "{user} page {page} of {per_page}");
                        for e in &entries {
                            assert_eq!(e.event.event_id, format!("{user}-e-{}", e.seq));
                        }
                    }
                }
            }
        };
        check(store.clone(), users.clone()).await;
        drop(store);
        check(EmbeddedStore::open(dir.path()).unwrap(), users).await;
    }

    /// A batch of `user`'s entries made by the inputs at `offsets` of `in:0` (one each), its
    /// record advanced as the record step would.
    fn placed(user: &str, record: &mut UserRecord, offsets: &[i64]) -> BatchWrite {
        let key = UserKey::new("t", user);
        let mut batch = BatchWrite::default();
        for &offset in offsets {
            let seq = record.history_len;
            let mut entry = HistoryEntry::new(seq, event(user, seq));
            let place = record
                .history_chain
                .push(seq, HistoryPos::new("in:0", offset, 0));
            entry.place = Some(place);
            batch.history.push((key.clone(), entry));
            record.history_len += 1;
        }
        batch.users.push((key, record.clone()));
        batch
    }

    /// One chunk's entries, written by two batches of one write, by a later write, over a
    /// checkpointed row and written again by a replay, are all there, each once, after a
    /// crash too (the journal's rows replayed over redb's).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chunk_merges_every_write_s_entries_and_survives_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let (mut a, mut b) = (UserRecord::default(), UserRecord::default());
        let first = vec![placed("a", &mut a, &[0, 1]), placed("b", &mut b, &[2, 3])];
        store.write_batches(first).await.unwrap();
        store.write_batch(&placed("a", &mut a, &[4])).await.unwrap();
        store.checkpoint().await.unwrap();
        let last = placed("b", &mut b, &[31]);
        store.write_batch(&last).await.unwrap();
        store.write_batch(&last).await.unwrap();
        let crashed = tempfile::tempdir().unwrap();
        super::super::recovery_tests::crash_copy(dir.path(), crashed.path());
        let reopened = EmbeddedStore::open(crashed.path()).unwrap();
        for store in [&store, &reopened] {
            for user in ["a", "b"] {
                let (entries, total) = store
                    .history(&UserKey::new("t", user), 1, 10)
                    .await
                    .unwrap();
                let ids: Vec<String> = entries
                    .iter()
                    .map(|e| e.event.event_id.to_string())
                    .collect();
                let expected: Vec<String> = (0..3).rev().map(|s| format!("{user}-e-{s}")).collect();
                assert_eq!((ids, total), (expected, 3), "{user}");
            }
        }
    }

    /// The chunks a store holds when it opens (checkpointed, or only in the journal when it
    /// crashed) are continued, not replaced: by the first write after the open (the input's
    /// highest chunk is looked up then), by a write below the highest chunk written (a
    /// replay), and a chunk past it starts empty, two new ones in one batch included.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_held_before_the_open_are_continued_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let mut a = UserRecord::default();
        store
            .write_batch(&placed("a", &mut a, &[0, 1]))
            .await
            .unwrap();
        store.checkpoint().await.unwrap();
        store
            .write_batch(&placed("a", &mut a, &[40]))
            .await
            .unwrap();
        let crashed = tempfile::tempdir().unwrap();
        super::super::recovery_tests::crash_copy(dir.path(), crashed.path());
        drop(store);
        let store = EmbeddedStore::open(crashed.path()).unwrap();
        for offsets in [&[41][..], &[2], &[100, 101], &[3, 42, 102], &[200, 160]] {
            store
                .write_batch(&placed("a", &mut a, offsets))
                .await
                .unwrap();
        }
        let key = UserKey::new("t", "a");
        let (entries, total) = store.history(&key, 0, 100).await.unwrap();
        let ids: Vec<String> = entries
            .iter()
            .map(|e| e.event.event_id.to_string())
            .collect();
        let expected: Vec<String> = (0..12).rev().map(|s| format!("a-e-{s}")).collect();
        assert_eq!((ids, total), (expected, 12));
    }

    /// An entry of user `u{user}` at (`offset`, `index`) of `in:0`, its JSON naming `tag`.
    fn chunk_entry(out: &mut Vec<u8>, (offset, index, user): (i64, u32, u8), tag: &str) {
        let place = HistoryChain::default().push(0, HistoryPos::new("in:0", offset, index));
        let json = format!("{{\"tag\":\"{tag}\"}}");
        write_entry(
            out,
            &UserKey::new("t", format!("u{user}")),
            &place,
            json.as_bytes(),
        );
    }

    proptest::proptest! {
        /// A merged chunk holds every entry of both rows once, in key order, the new row's
        /// where both have one, under the new row's timestamp; and merging the same new entries
        /// again changes nothing (a replay).
        #[test]
        fn a_merged_chunk_holds_both_rows_entries_once_the_new_ones_winning(
            old in proptest::collection::vec((0i64..32, 0u32..3, 0u8..3), 0..20),
            new in proptest::collection::vec((0i64..32, 0u32..3, 0u8..3), 1..20),
        ) {
            let key = RowKey::HistoryChunk("in:0".into(), 0);
            let row = |entries: &[(i64, u32, u8)], tag: &str, ts: i64| {
                let mut row = row_header(ts).to_vec();
                for &e in entries {
                    chunk_entry(&mut row, e, tag);
                }
                row
            };
            let (old_row, new_row) = (row(&old, "old", 1), row(&new, "new", 2));
            let merged = merge(&key, Some(&old_row), &new_row).unwrap().unwrap();
            let (ts, payload) = unseal(&key, &merged).unwrap();
            proptest::prop_assert_eq!(ts, 2);
            let got: Vec<((i64, u32, String), String)> = entries(payload)
                .map(Result::unwrap)
                .map(|e| {
                    let json = String::from_utf8(e.json.to_vec()).unwrap();
                    ((e.offset, e.index, e.user.to_string()), json)
                })
                .collect();
            let mut expected = std::collections::BTreeMap::new();
            for (entries, tag) in [(&old, "old"), (&new, "new")] {
                for &(offset, index, user) in entries.iter() {
                    let json = format!("{{\"tag\":\"{tag}\"}}");
                    expected.insert((offset, index, format!("u{user}")), json);
                }
            }
            let expected: Vec<_> = expected.into_iter().collect();
            proptest::prop_assert_eq!(&got, &expected);
            let again = merge(&key, Some(&merged), &new_row).unwrap();
            proptest::prop_assert_eq!(again, Some(merged));
        }

        /// A chunk with no stored row is the new row itself when its entries are in key order,
        /// each key once (`None`: kept as it is), and otherwise those entries sorted, the last
        /// written of a key kept: the row a merge over an empty chunk makes.
        #[test]
        fn a_new_chunk_is_kept_as_written_only_when_already_in_order(
            new in proptest::collection::vec((0i64..32, 0u32..3, 0u8..3), 1..20),
        ) {
            let key = RowKey::HistoryChunk("in:0".into(), 0);
            let mut row = row_header(2).to_vec();
            for (i, &e) in new.iter().enumerate() {
                chunk_entry(&mut row, e, &format!("n{i}"));
            }
            let empty = row_header(1).to_vec();
            let over_empty = merge(&key, Some(&empty), &row).unwrap().unwrap();
            let keys: Vec<_> = new.iter().map(|&(o, i, u)| (o, i, format!("u{u}"))).collect();
            let ordered = keys.windows(2).all(|pair| pair[0] < pair[1]);
            match merge(&key, None, &row).unwrap() {
                None => {
                    proptest::prop_assert!(ordered);
                    proptest::prop_assert_eq!(&row, &over_empty);
                }
                Some(sorted) => {
                    proptest::prop_assert!(!ordered);
                    proptest::prop_assert_eq!(sorted, over_empty);
                }
            }
        }
    }

    /// The links the chain hands out: each entry's previous one, and the last entry of the
    /// block before its own.
    #[test]
    fn each_entry_links_to_its_predecessor_and_the_previous_block_s_last() {
        let pos = |n: u64| HistoryPos::new("a:0", n as i64, 0);
        let mut chain = HistoryChain::default();
        let block = HistoryChain::BLOCK;
        for seq in 0..4 * block {
            let place = chain.push(seq, pos(seq));
            assert_eq!(place.at, pos(seq));
            assert_eq!(place.prev, seq.checked_sub(1).map(pos));
            let block_end = (seq - seq % block).checked_sub(1);
            assert_eq!(place.block, block_end.map(pos), "entry {seq}");
            assert_eq!(chain.head, Some(pos(seq)));
            assert_eq!(chain.block, place.block);
        }
    }
}
