//! The journal's guarantees through the store's own API: a crash (the directory as the disk
//! holds it, copied while the store is open) loses no acknowledged batch, replays them with
//! the same fencing, and survives a torn last append; reads see a batch before its checkpoint
//! exactly as after it.

use std::io::Write;

use super::*;
use crate::store::{FinishedCount, OutboxWrite};

use super::fault_tests::user;

fn key() -> UserKey {
    UserKey::new("t", "u1")
}

/// A batch of one user at version `n`, written at timestamp `ts`, with a finished counter
/// and the partition's outbox.
fn batch(n: u64, ts: i64) -> BatchWrite {
    BatchWrite {
        users: vec![(key(), user(n))],
        finished: vec![FinishedCount {
            tenant: "t".into(),
            challenge_id: 7,
            partition: "g/p0".into(),
            count: n,
        }],
        outbox: Some(OutboxWrite::new("g/p0", &[n as u8; 3])),
        write_timestamp: Some(ts),
        ..BatchWrite::default()
    }
}

pub(super) fn event() -> crate::core::events::Event {
    use crate::core::events::{Event, EventBody, GrantReason};
    use chrono::TimeZone;
    Event {
        event_id: "e-1".into(),
        body: EventBody::RewardGranted {
            reward_type: "points".into(),
            amount: Some(5.into()),
            code: None,
            reason: GrantReason::Milestone {
                challenge_id: 7,
                milestone_id: "m-7-1".into(),
            },
            balance: 5.into(),
        },
        tenant: "t".into(),
        user_id: "u1".into(),
        occurred_at: chrono::Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        source: crate::core::model::SourceRef::new("actions", 0, 9),
        catalog_version: 1,
    }
}

/// What a reader sees: the user, the finished sum, the outbox.
async fn seen(store: &EmbeddedStore) -> (Option<UserRecord>, Option<u64>, Option<Vec<u8>>) {
    let user = store.load_users(&[key()]).await.unwrap().remove(0);
    let finished = store.people_finished("t").await.unwrap().get(&7).copied();
    let outbox = store.load_outbox("g/p0").await.unwrap();
    (user, finished, outbox)
}

/// Copies the store's files as they are on disk now: what a `kill -9` would leave.
///
/// The journal first, then the database: the checkpoint thread retires a segment only once
/// its batches are in the database, so a segment it retires between the listing and the
/// copy (a flaky `NotFound` when the database was copied first) is skipped, and the
/// database copied after it holds its batches, as after a crash at that moment.
pub(super) fn crash_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join(journal::DIR)).unwrap();
    for entry in std::fs::read_dir(from.join(journal::DIR)).unwrap() {
        let entry = entry.unwrap();
        match std::fs::copy(entry.path(), to.join(journal::DIR).join(entry.file_name())) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            copied => {
                copied.unwrap();
            }
        }
    }
    std::fs::copy(from.join(DB_FILE), to.join(DB_FILE)).unwrap();
}

/// The journal's segments in `dir`, with their lengths (not the segments kept for reuse).
/// The store's checkpoint thread may retire one between the listing and its length: such a
/// segment is left out.
fn segments(dir: &Path) -> Vec<(String, u64)> {
    let mut found: Vec<(String, u64)> = std::fs::read_dir(dir.join(journal::DIR))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            journal::segment_number(&e.file_name())?;
            let len = e.metadata().ok()?.len();
            Some((e.file_name().to_string_lossy().into_owned(), len))
        })
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_no_acknowledged_batch_and_the_replay_keeps_fencing() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.write_batch(&batch(1, 100)).await.unwrap();
    store.checkpoint().await.unwrap();
    store.write_batch(&batch(2, 200)).await.unwrap();
    // A zombie's late write (an older timestamp) is fenced out, before and after a replay.
    store.write_batch(&batch(9, 150)).await.unwrap();
    let history = HistoryEntry::new(0, event());
    let mut with_history = BatchWrite {
        history: vec![(key(), history.clone())],
        write_timestamp: Some(200),
        ..BatchWrite::default()
    };
    with_history.encode().unwrap();
    store.write_batch(&with_history).await.unwrap();
    let before = seen(&store).await;
    assert_eq!(before, (Some(user(2)), Some(2), Some(vec![2; 3])));

    let crashed = tempfile::tempdir().unwrap();
    crash_copy(dir.path(), crashed.path());
    // The last append was torn by the crash: half a record at the end of the segment.
    let (last, _) = segments(crashed.path()).pop().unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(crashed.path().join(journal::DIR).join(last))
        .unwrap();
    file.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(file);

    let reopened = EmbeddedStore::open(crashed.path()).unwrap();
    assert_eq!(
        seen(&reopened).await,
        before,
        "everything acknowledged, nothing else"
    );
    let (entries, total) = reopened
        .history(&UserKey::new("t", "u1"), 1, 10)
        .await
        .unwrap();
    assert_eq!(total, 2, "user(2) says two entries");
    assert_eq!(
        entries,
        vec![history],
        "the entry written, the other never was"
    );
    // The replayed segments are gone; the new one holds no record (it may be a reused
    // file, holding its earlier segment's).
    let left = segments(crashed.path());
    assert_eq!(left.len(), 1, "{left:?}");
    let read = journal::read_all(&crashed.path().join(journal::DIR)).unwrap();
    assert_eq!(
        read.iter()
            .map(|s| (s.batches.len(), s.dropped_bytes))
            .collect::<Vec<_>>(),
        vec![(0, 0)],
        "{left:?}"
    );
    // And the original, still open, agrees.
    assert_eq!(seen(&store).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_the_same_before_and_after_a_checkpoint_and_after_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(seen(&store).await, (None, None, None));
    store.write_batch(&batch(1, 100)).await.unwrap();
    store.checkpoint().await.unwrap();
    // A newer batch in the overlay over an older one in the database, and another
    // partition's counter only in the database.
    let mut other = batch(5, 100);
    other.users.clear();
    other.outbox = None;
    other.finished[0].partition = "g/p1".into();
    store.write_batch(&other).await.unwrap();
    store.checkpoint().await.unwrap();
    store.write_batch(&batch(3, 300)).await.unwrap();
    let overlay = seen(&store).await;
    assert_eq!(overlay, (Some(user(3)), Some(3 + 5), Some(vec![3; 3])));
    store.checkpoint().await.unwrap();
    assert_eq!(seen(&store).await, overlay);
    store.write_batch(&batch(4, 400)).await.unwrap();
    drop(store);
    let reopened = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(
        seen(&reopened).await,
        (Some(user(4)), Some(4 + 5), Some(vec![4; 3]))
    );
}

/// The journal's segment numbers in `dir`.
fn segment_numbers(dir: &Path) -> Vec<u64> {
    segments(dir)
        .into_iter()
        .filter_map(|(name, _)| journal::segment_number(name.as_ref()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_journal_checkpoints_as_it_fills_and_keeps_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions {
        checkpoint_bytes: 1,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open_with_options(dir.path(), options).unwrap();
    for n in 1..=4 {
        store.write_batch(&batch(n, 100 + n as i64)).await.unwrap();
    }
    // Each write after the first found the overlay full: it froze it (a new segment) and,
    // from the third on, waited for the checkpoint of the one before.
    let numbers = segment_numbers(dir.path());
    assert!(
        numbers.last().is_some_and(|&n| n >= 4),
        "the journal moved on at every write: {numbers:?}"
    );
    assert!(
        numbers.len() <= 3,
        "checkpointed segments are deleted: {numbers:?}"
    );
    assert_eq!(
        seen(&store).await,
        (Some(user(4)), Some(4), Some(vec![4; 3]))
    );
}

/// A batch makes as many rows as [`BatchWrite::row_count`] says (the write sizes its vector
/// by it): one per user and resource, whether serialized ahead or not, history entry and
/// counter, and its outbox.
#[test]
fn a_batch_makes_as_many_rows_as_it_counts() {
    let mut b = batch(1, 5);
    b.history
        .push((key(), crate::store::HistoryEntry::new(0, event())));
    b.push_user_row(UserKey::new("t", "u2"), &user(2), &mut Vec::new());
    b.resources
        .push(("t/reward/x".into(), crate::store::ResourceRecord::default()));
    b.push_resource_row(
        "t/reward/y".into(),
        &crate::store::ResourceRecord::default(),
    );
    assert_eq!(b.row_count(), 7);
    let rows = rows_of_all(vec![b.clone(), b]).unwrap();
    assert_eq!(rows.len(), 14);
}

/// Generations of one reused segment file, each shorter than the one before, so that every
/// new segment is followed by older segments' records: a crash at the end of each generation
/// still replays exactly what was acknowledged, and nothing is reported as cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_through_generations_of_a_reused_segment_lose_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let mut n = 0;
    for generation in (1..=5u64).rev() {
        for _ in 0..generation * 3 {
            n += 1;
            store.write_batch(&batch(n, n as i64 * 10)).await.unwrap();
        }
        let crashed = tempfile::tempdir().unwrap();
        crash_copy(dir.path(), crashed.path());
        let journal = journal::read_all(&crashed.path().join(journal::DIR)).unwrap();
        assert!(
            journal.iter().all(|s| s.dropped_bytes == 0),
            "generation {generation}: nothing cut short"
        );
        let reopened = EmbeddedStore::open(crashed.path()).unwrap();
        assert_eq!(
            seen(&reopened).await,
            (Some(user(n)), Some(n), Some(vec![n as u8; 3])),
            "generation {generation}"
        );
        drop(reopened);
        // Retires the segment (kept) and starts the next generation in its file.
        store.checkpoint().await.unwrap();
    }
    let kept = journal_numbers(dir.path(), ".free").len();
    assert_eq!(kept, 1, "one file kept for reuse");
}

/// The numbers of `dir`'s journal files named `<n>.<extension>`.
fn journal_numbers(dir: &Path, extension: &str) -> Vec<u64> {
    std::fs::read_dir(dir.join(journal::DIR))
        .unwrap()
        .filter_map(|e| journal::numbered_file(&e.unwrap().file_name(), extension))
        .collect()
}

/// Opening numbers the new segment above every kept file, even with the segments deleted
/// by hand (a kept file's old records are numbered up to its own number).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_opened_without_segments_numbers_its_new_one_above_the_kept_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.write_batch(&batch(1, 100)).await.unwrap();
        store.checkpoint().await.unwrap();
    }
    let kept = journal_numbers(dir.path(), ".free");
    assert_eq!(kept.len(), 1, "closed with one kept file");
    for n in journal_numbers(dir.path(), ".log") {
        std::fs::remove_file(journal::segment_path(&dir.path().join(journal::DIR), n)).unwrap();
    }
    let reopened = EmbeddedStore::open(dir.path()).unwrap();
    let new = journal_numbers(dir.path(), ".log");
    assert_eq!(new.len(), 1);
    assert!(new[0] > kept[0], "new segment {new:?}, kept {kept:?}");
    assert_eq!(seen(&reopened).await.0, Some(user(1)));
}
