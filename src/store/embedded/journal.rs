//! The embedded store's journal: a batch is durable once it is appended here and synced.
//!
//! # Why a journal in front of redb
//!
//! A redb commit copies every B-tree page it touches and syncs the file. The worker's batches
//! touch thousands of scattered rows, so a commit rewrote a page per row and took 60–70 ms per
//! batch of 2,000 users: the pipeline's critical path. Appending the same rows to a file and
//! syncing it takes 1–2 ms. So a write is appended here and synced, then kept in memory (the
//! [overlay](super::overlay)); a background checkpoint writes many batches into redb in one
//! commit, each touched page once, and then deletes the journal segments it covered.
//!
//! # Format
//!
//! `<store>/journal/<segment:020>.log`, numbered upwards; every freeze of the overlay starts a
//! new segment. A segment is a sequence of records:
//!
//! `[payload length: u32 LE][CRC-32 of the payload: u32 LE][payload]`
//!
//! and a payload is a count, then that many rows: a [`RowKey`] and the sealed row, in the
//! order the batch wrote them (the store's `wire` encoding).
//!
//! Where the file system allows it, a segment is written around the kernel's page cache
//! (`O_DIRECT`): each record starts on a [`BLOCK`] boundary and is followed by zeros up to the
//! next one. Why: a buffered append copied every batch into the page cache, then wrote it back
//! from there, and that copy was a quarter of the store threads' time end to end
//! (docs/benchmarks.md); a direct write hands the device the batch's own buffer. The zeros
//! are never a record (a payload is at least its count), so the reader skips them; a segment
//! on a file system without direct writes (tmpfs) is buffered and unpadded, as before.
//!
//! # Recovery
//!
//! Opening the store replays every segment into redb in order, with the same fenced upserts
//! as a live write, then deletes them. Replaying rows that a checkpoint already wrote is
//! harmless: the store only upserts, and a fenced upsert sequence replayed over its own result
//! gives that result again. A segment's replay stops at its first record that is cut short or
//! fails its checksum: a crash during an append (the write was never acknowledged), or an
//! append that failed and could not be cut back (the next append then opened a new segment).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::wire::{Reader, WireError, Writer};
use super::overlay::RowKey;
use crate::store::StoreError;

/// The journal's directory inside the store's.
pub(super) const DIR: &str = "journal";
const FRAME: usize = 8;
/// What a direct append is aligned to, in memory and in the file, and padded to: the largest
/// logical block size of common devices (most are 512 bytes), so one size suits them all.
const BLOCK: usize = 4096;

/// A fault injector for tests: called with the operation's name before each file operation,
/// it may fail it as the kernel would (a full disk).
pub(super) type Faults = Arc<dyn Fn(&'static str) -> io::Result<()> + Send + Sync>;

/// One batch's rows, as journaled and replayed.
pub(super) type Rows = Vec<(RowKey, Vec<u8>)>;

/// The open segment, appended to by one writer at a time.
pub(super) struct Journal {
    dir: PathBuf,
    segment: u64,
    file: File,
    /// Bytes of whole records in the open segment: where a failed append is cut back to.
    len: u64,
    /// An append failed and its tail could not be cut: the next append opens a new segment.
    torn: bool,
    faults: Option<Faults>,
    /// The last append's frame buffer, reused: a batch's frame is megabytes, and a fresh one
    /// per append faulted its pages in anew (~7 % of the store threads' samples).
    frame: Vec<u8>,
    /// How the open segment is written.
    io: Io,
    /// Whether segments are written directly where the file system allows it.
    direct: bool,
}

/// How a segment's appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Io {
    /// Around the page cache, each record aligned and padded to [`BLOCK`].
    Direct,
    /// Through the page cache, records back to back.
    Buffered,
}

/// The most frame capacity kept between appends; a larger batch's buffer is given back.
const KEPT_FRAME_BYTES: usize = 16 << 20;

impl Journal {
    /// Creates segment `segment` in `dir` (which must exist) and opens it for appending.
    /// `direct`: write segments around the page cache where the file system allows it.
    pub(super) fn create(
        dir: &Path,
        segment: u64,
        faults: Option<Faults>,
        direct: bool,
    ) -> Result<Self, StoreError> {
        let (file, io) = create_segment(dir, segment, faults.as_ref(), direct)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            segment,
            file,
            len: 0,
            torn: false,
            faults,
            frame: Vec::new(),
            io,
            direct,
        })
    }

    /// Whether the open segment is written around the page cache.
    pub(super) fn is_direct(&self) -> bool {
        self.io == Io::Direct
    }

    /// The segment being appended to.
    #[cfg(test)]
    pub(super) fn segment(&self) -> u64 {
        self.segment
    }

    /// Appends one batch's rows and syncs them: when this returns `Ok` they survive a crash.
    /// On failure the segment is cut back to its last whole record, so a retried append never
    /// follows garbage.
    pub(super) fn append(&mut self, rows: &[(RowKey, Vec<u8>)]) -> Result<(), StoreError> {
        if self.torn {
            self.rotate()?;
        }
        match self.try_append(rows) {
            Err(source) if self.io == Io::Direct && source.raw_os_error() == Some(libc::EINVAL) => {
                // The device wants another alignment than `BLOCK`: this store's segments are
                // buffered from now on, starting with a new one for this batch.
                tracing::warn!(
                    segment = self.segment,
                    error = %source,
                    "embedded store: the disk refused a direct journal append; appending \
                     through the page cache from now on"
                );
                self.direct = false;
                self.rotate()?;
                self.try_append(rows)
            }
            result => result,
        }
        .map_err(|source| self.error("append to", source))
    }

    /// One append of `rows` and its sync; on failure the segment is cut back, or marked torn.
    fn try_append(&mut self, rows: &[(RowKey, Vec<u8>)]) -> io::Result<()> {
        let record = frame(rows, std::mem::take(&mut self.frame), self.io);
        let result = fault(self.faults.as_ref(), "append to")
            .and_then(|()| self.file.write_all(record.bytes()))
            .and_then(|()| fault(self.faults.as_ref(), "sync"))
            .and_then(|()| self.file.sync_data());
        let record_len = record.bytes().len() as u64;
        if record.buf.capacity() <= KEPT_FRAME_BYTES {
            self.frame = record.buf;
        }
        match result {
            Ok(()) => {
                self.len += record_len;
                Ok(())
            }
            Err(source) => {
                let cut = fault(self.faults.as_ref(), "truncate")
                    .and_then(|()| self.file.set_len(self.len));
                if cut.is_err() {
                    self.torn = true;
                }
                Err(source)
            }
        }
    }

    /// Closes the open segment and starts the next one; returns the closed segment's number.
    /// Its records were synced by their appends.
    pub(super) fn rotate(&mut self) -> Result<u64, StoreError> {
        let next = self.segment + 1;
        (self.file, self.io) = create_segment(&self.dir, next, self.faults.as_ref(), self.direct)?;
        let closed = self.segment;
        self.segment = next;
        self.len = 0;
        self.torn = false;
        Ok(closed)
    }

    fn error(&self, action: &'static str, source: io::Error) -> StoreError {
        StoreError::Journal {
            action,
            path: segment_path(&self.dir, self.segment),
            source,
        }
    }
}

fn fault(faults: Option<&Faults>, action: &'static str) -> io::Result<()> {
    faults.map_or(Ok(()), |f| f(action))
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.log"))
}

/// The number of a segment file's name ([`segment_path`]); `None` for any other file.
pub(super) fn segment_number(name: &std::ffi::OsStr) -> Option<u64> {
    name.to_str()?.strip_suffix(".log")?.parse().ok()
}

/// Creates a segment file and makes its directory entry durable: a synced append to a file
/// whose entry was lost in a crash would be lost with it. `direct`: written around the page
/// cache if the file system allows it.
fn create_segment(
    dir: &Path,
    segment: u64,
    faults: Option<&Faults>,
    direct: bool,
) -> Result<(File, Io), StoreError> {
    let path = segment_path(dir, segment);
    let error = |source| StoreError::Journal {
        action: "create",
        path: path.clone(),
        source,
    };
    fault(faults, "create").map_err(error)?;
    // Appending: after a failed append is cut back, the next one starts at the cut.
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(error)?;
    sync_dir(dir).map_err(error)?;
    let io = if direct && set_direct(&file) {
        Io::Direct
    } else {
        Io::Buffered
    };
    Ok((file, io))
}

/// Turns on `O_DIRECT` for `file`; false where its file system refuses it (tmpfs does).
fn set_direct(file: &File) -> bool {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    fcntl_getfl(file)
        .and_then(|flags| fcntl_setfl(file, flags | OFlags::DIRECT))
        .is_ok()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// One record, framed in a buffer that may hold leading bytes that are not written.
struct Framed {
    buf: Vec<u8>,
    /// Where the record starts in `buf`.
    start: usize,
}

impl Framed {
    /// What the append writes.
    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Pads the record with zeros to whole blocks and makes sure it starts on a block
    /// boundary in memory, as a direct write needs.
    fn align(mut self) -> Self {
        let padded = (self.buf.len() - self.start).next_multiple_of(BLOCK);
        let aligned = self.bytes().as_ptr().align_offset(BLOCK) == 0;
        if !aligned || self.buf.capacity() < self.start + padded {
            // The buffer outgrew its estimate and moved: one copy into one that fits.
            let mut moved: Vec<u8> = Vec::with_capacity(padded + BLOCK);
            let start = moved.as_ptr().align_offset(BLOCK);
            moved.resize(start, 0);
            moved.extend_from_slice(self.bytes());
            self = Framed { buf: moved, start };
        }
        self.buf.resize(self.start + padded, 0);
        self
    }
}

/// `[len][crc][count, then (key, row) …]`, in `buf` (cleared first); for a direct append,
/// starting on a block boundary and padded to whole blocks.
fn frame(rows: &[(RowKey, Vec<u8>)], mut buf: Vec<u8>, io: Io) -> Framed {
    let direct = io == Io::Direct;
    let size: usize = rows.iter().map(|(_, row)| row.len() + 64).sum();
    buf.clear();
    // Room to start on a block and to pad to one (`Framed::align`).
    buf.reserve(FRAME + size + if direct { 2 * BLOCK } else { 0 });
    let start = if direct {
        buf.as_ptr().align_offset(BLOCK)
    } else {
        0
    };
    buf.resize(start + FRAME, 0);
    let mut w = Writer { buf };
    w.len(rows.len());
    for (key, row) in rows {
        key.write(&mut w);
        w.len(row.len());
        w.buf.extend_from_slice(row);
    }
    let payload = start + FRAME;
    let crc = crc32fast::hash(&w.buf[payload..]);
    // A batch is far below 4 GiB: the store's batches are bounded by the pipeline's.
    let len = u32::try_from(w.buf.len() - payload).unwrap_or(u32::MAX);
    w.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    w.buf[start + 4..payload].copy_from_slice(&crc.to_le_bytes());
    let framed = Framed { buf: w.buf, start };
    if direct {
        framed.align()
    } else {
        framed
    }
}

fn unframe(payload: &[u8]) -> Result<Rows, WireError> {
    let mut r = Reader::new(payload);
    let count = r.len("rows", 2)?;
    let mut rows = Vec::with_capacity(count);
    for _ in 0..count {
        let key = RowKey::read(&mut r)?;
        let len = r.len("row", 1)?;
        rows.push((key, r.take("row", len)?.to_vec()));
    }
    r.finish("record")?;
    Ok(rows)
}

/// A segment found at open: its batches in order, and how many bytes at its end were cut off
/// (a torn or failed append).
pub(super) struct Segment {
    pub number: u64,
    pub batches: Vec<Rows>,
    pub dropped_bytes: usize,
}

/// Every segment in `dir`, oldest first, read back. Creates `dir` if it is missing.
pub(super) fn read_all(dir: &Path) -> Result<Vec<Segment>, StoreError> {
    let error = |action, source| StoreError::Journal {
        action,
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| error("create", e))?;
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| error("list", e))? {
        let entry = entry.map_err(|e| error("list", e))?;
        if let Some(number) = segment_number(&entry.file_name()) {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    numbers
        .into_iter()
        .map(|number| {
            let path = segment_path(dir, number);
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(|source| StoreError::Journal {
                    action: "read",
                    path,
                    source,
                })?;
            Ok(parse_segment(number, &bytes))
        })
        .collect()
}

fn parse_segment(number: u64, bytes: &[u8]) -> Segment {
    let mut batches = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if let Some((rows, used)) = next_record(&bytes[at..]) {
            batches.push(rows);
            at += used;
            continue;
        }
        // A direct append's padding: zeros from the end of its record to the next block
        // (or to the end of the file, if a crash cut the padding short).
        let padding = &bytes[at..at.next_multiple_of(BLOCK).min(bytes.len())];
        if at % BLOCK != 0 && padding.iter().all(|&b| b == 0) {
            at += padding.len();
            continue;
        }
        break;
    }
    Segment {
        number,
        batches,
        dropped_bytes: bytes.len() - at,
    }
}

/// The record at the start of `bytes` and its length, or `None` if it is not whole and sound.
fn next_record(bytes: &[u8]) -> Option<(Rows, usize)> {
    let header = bytes.get(..FRAME)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    let payload = bytes.get(FRAME..FRAME.checked_add(len)?)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    unframe(payload).ok().map(|rows| (rows, FRAME + len))
}

/// Deletes the segments numbered up to `through`: their batches are in redb.
pub(super) fn delete_through(dir: &Path, through: u64) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if segment_number(&entry.file_name()).is_some_and(|n| n <= through) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicU8, Ordering::SeqCst};

    fn rows(n: u64) -> Rows {
        (0..n)
            .map(|i| {
                (
                    RowKey::History("t".into(), format!("u{i}").into(), i),
                    vec![1, 2, 3, i as u8],
                )
            })
            .collect()
    }

    #[test]
    fn appended_batches_read_back_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), 1, None, true).unwrap();
        journal.append(&rows(2)).unwrap();
        journal.append(&rows(3)).unwrap();
        assert_eq!(journal.rotate().unwrap(), 1);
        journal.append(&rows(1)).unwrap();
        let segments = read_all(dir.path()).unwrap();
        let shape: Vec<(u64, Vec<usize>, usize)> = segments
            .iter()
            .map(|s| {
                (
                    s.number,
                    s.batches.iter().map(Vec::len).collect(),
                    s.dropped_bytes,
                )
            })
            .collect();
        assert_eq!(shape, vec![(1, vec![2, 3], 0), (2, vec![1], 0)]);
        assert_eq!(segments[0].batches[1], rows(3));
        delete_through(dir.path(), 1).unwrap();
        let left: Vec<u64> = read_all(dir.path())
            .unwrap()
            .iter()
            .map(|s| s.number)
            .collect();
        assert_eq!(left, vec![2]);
    }

    /// A fault injector that fails each operation with the OS error `fails` names for it.
    fn injector(fails: impl Fn(&'static str) -> Option<i32> + Send + Sync + 'static) -> Faults {
        Arc::new(move |action| match fails(action) {
            Some(code) => Err(io::Error::from_raw_os_error(code)),
            None => Ok(()),
        })
    }

    #[test]
    fn a_failed_append_is_cut_back_and_a_torn_one_opens_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let full = Arc::new(AtomicU8::new(0));
        let seen = Arc::clone(&full);
        // 1: the sync fails (the write went through, then is cut back); 2: the cut fails too.
        let faults = injector(move |action| {
            let fails = match seen.load(SeqCst) {
                1 => action == "sync",
                2 => action == "sync" || action == "truncate",
                _ => false,
            };
            fails.then_some(libc::ENOSPC)
        });
        let mut journal = Journal::create(dir.path(), 1, Some(faults), true).unwrap();
        journal.append(&rows(1)).unwrap();
        full.store(1, SeqCst);
        let err = journal.append(&rows(2)).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Journal {
                    action: "append to",
                    ..
                }
            ),
            "{err}"
        );
        full.store(2, SeqCst);
        journal.append(&rows(3)).unwrap_err();
        full.store(0, SeqCst);
        journal.append(&rows(4)).unwrap();
        assert_eq!(
            journal.segment(),
            2,
            "the segment that could not be cut was left behind"
        );
        let segments = read_all(dir.path()).unwrap();
        // rows(2) was cut back. rows(3) was written whole before its sync failed, so it reads
        // back although its append reported failure: harmless, its writer retries the same
        // upserts.
        assert_eq!(segments[0].batches, vec![rows(1), rows(3)]);
        assert_eq!(segments[1].batches, vec![rows(4)]);
    }

    /// Rows whose keys outgrow the frame's size estimate (64 bytes a row) by far more than
    /// its slack, so the buffer moves while the record is framed.
    fn long_keyed_rows() -> Rows {
        (0..100)
            .map(|i| {
                let user = format!("{}{i}", "u".repeat(300));
                (
                    RowKey::History("t".repeat(300).into(), user.into(), i),
                    vec![7; 5],
                )
            })
            .collect()
    }

    #[test]
    fn a_direct_frame_starts_on_a_block_and_fills_whole_blocks() {
        for batch in [rows(0), rows(1), rows(300), long_keyed_rows()] {
            let framed = frame(&batch, Vec::new(), Io::Direct);
            let bytes = framed.bytes();
            assert_eq!(
                bytes.as_ptr().align_offset(BLOCK),
                0,
                "{} rows",
                batch.len()
            );
            assert_eq!(bytes.len() % BLOCK, 0, "{} rows", batch.len());
            let (read, used) = next_record(bytes).expect("the record reads back");
            assert_eq!(read, batch);
            assert!(bytes[used..].iter().all(|&b| b == 0), "padded with zeros");
            // The same record buffered: unpadded, the same bytes up to its end.
            let buffered = frame(&batch, Vec::new(), Io::Buffered);
            assert_eq!(buffered.bytes(), &bytes[..used]);
        }
    }

    #[test]
    fn direct_appends_land_on_block_boundaries_and_read_back() {
        let batches = vec![rows(1), long_keyed_rows(), rows(200), rows(3)];
        for direct in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut journal = Journal::create(dir.path(), 1, None, direct).unwrap();
            for batch in &batches {
                journal.append(batch).unwrap();
            }
            let bytes = std::fs::read(segment_path(dir.path(), 1)).unwrap();
            let unpadded: usize = batches
                .iter()
                .map(|b| frame(b, Vec::new(), Io::Buffered).bytes().len())
                .sum();
            if journal.is_direct() {
                assert_eq!(bytes.len() % BLOCK, 0);
                assert!(bytes.len() > unpadded);
            } else {
                // Asked for buffered appends, or on a file system without direct writes.
                assert!(!direct || !supports_direct(dir.path()));
                assert_eq!(bytes.len(), unpadded);
            }
            let segments = read_all(dir.path()).unwrap();
            assert_eq!(segments[0].batches, batches, "direct: {direct}");
            assert_eq!(segments[0].dropped_bytes, 0, "direct: {direct}");
        }
    }

    #[test]
    fn a_refused_direct_append_is_written_buffered_in_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let appends = AtomicU8::new(0);
        // The second append's write is refused as a device with a larger block refuses it.
        let faults = injector(move |action| {
            let n = appends.fetch_add(u8::from(action == "append to"), SeqCst);
            (action == "append to" && n == 1).then_some(libc::EINVAL)
        });
        let mut journal = Journal::create(dir.path(), 1, Some(faults), true).unwrap();
        if !journal.is_direct() {
            // No direct writes here (tmpfs): nothing to fall back from.
            assert!(!supports_direct(dir.path()));
            return;
        }
        journal.append(&rows(1)).unwrap();
        journal.append(&rows(2)).expect("written buffered instead");
        assert!(!journal.is_direct());
        assert_eq!(journal.segment(), 2);
        journal.append(&rows(3)).unwrap();
        assert_eq!(journal.rotate().unwrap(), 2);
        assert!(!journal.is_direct(), "new segments stay buffered");
        let segments = read_all(dir.path()).unwrap();
        assert_eq!(segments[0].batches, vec![rows(1)]);
        assert_eq!(segments[1].batches, vec![rows(2), rows(3)]);
        let unpadded = |b: &Rows| frame(b, Vec::new(), Io::Buffered).bytes().len();
        let bytes = std::fs::read(segment_path(dir.path(), 2)).unwrap();
        assert_eq!(
            bytes.len(),
            unpadded(&rows(2)) + unpadded(&rows(3)),
            "unpadded"
        );
    }

    /// Whether `dir`'s file system takes direct writes (tmpfs does not).
    fn supports_direct(dir: &Path) -> bool {
        let file = File::create(dir.join("probe")).unwrap();
        set_direct(&file)
    }

    proptest! {
        /// A segment cut anywhere (a crash mid-append) reads back as a prefix of its batches,
        /// and flipping any byte never yields a batch that was not written; buffered
        /// (records back to back) and direct (each padded to whole blocks).
        #[test]
        fn a_damaged_segment_reads_back_a_prefix(
            direct in any::<bool>(),
            cut in any::<usize>(),
            flip in any::<usize>(),
        ) {
            let io = if direct { Io::Direct } else { Io::Buffered };
            let batches: Vec<Rows> = (1..5).map(rows).collect();
            let records: Vec<Vec<u8>> =
                batches.iter().map(|b| frame(b, Vec::new(), io).bytes().to_vec()).collect();
            let bytes = records.concat();
            let cut = cut % (bytes.len() + 1);
            let read = parse_segment(1, &bytes[..cut]);
            prop_assert!(read.batches.len() <= batches.len());
            prop_assert_eq!(&read.batches[..], &batches[..read.batches.len()]);
            let mut flipped = bytes.clone();
            let at = flip % flipped.len();
            flipped[at] ^= 0x5a;
            let read = parse_segment(1, &flipped);
            prop_assert_eq!(&read.batches[..], &batches[..read.batches.len()]);
            // Every batch reads back only when the flip hit the last record's padding.
            let last = records.len() - 1;
            let last_start = bytes.len() - records[last].len();
            let last_end = last_start + frame(&batches[last], Vec::new(), Io::Buffered).bytes().len();
            prop_assert!(read.batches.len() < batches.len() || at >= last_end, "flip at {}", at);
        }
    }
}
