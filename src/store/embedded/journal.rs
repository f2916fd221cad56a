//! The embedded store's journal: a batch is durable once it is appended here and synced.
//!
//! # Why a journal in front of redb
//!
//! A redb commit copies every B-tree page it touches and syncs the file. The worker's batches
//! touch thousands of scattered rows, so a commit rewrote a page per row and took 60–70 ms per
//! batch of 2,000 users: the pipeline's critical path. Appending the same rows to a file and
//! syncing it takes 1–2 ms. So a write is appended here and synced, then kept in memory (the
//! [overlay](super::overlay)); a background checkpoint writes many batches into redb in one
//! commit, each touched page once, and then retires the journal segments it covered.
//!
//! # Format
//!
//! `<store>/journal/<segment:020>.log`, numbered upwards; every freeze of the overlay starts a
//! new segment. A segment is a sequence of records:
//!
//! `[payload length | 1 << 31: u32 LE][CRC-32: u32 LE][segment number: u64 LE][payload]`
//!
//! where the CRC covers the segment number and the payload, and a payload is a count, then
//! that many rows: a [`RowKey`] and the sealed row, in the order the batch wrote them (the
//! store's `wire` encoding). Records written before segments were reused have no segment
//! number (`[length][CRC-32 of the payload][payload]`, the length's top bit clear); they are
//! still read, so a journal left by an older release replays.
//!
//! # Reused segments
//!
//! A checkpointed segment is not deleted but kept (`<segment:020>.free`, at most
//! [`SPARES`]) and renamed to the next new segment, whose appends then overwrite it
//! in place. Why: deleting a segment of tens of megabytes frees its blocks, and on a file
//! system that discards freed blocks (ext4 mounted with `discard`) the unlink took 20–50 ms
//! during which every journal sync waited (docs/benchmarks.md); and an append past a file's
//! end allocates blocks and grows its size, so each sync must also commit the file system's
//! own journal, queued behind whatever else is committing it (the checkpoint's database
//! file). An append inside blocks already written needs neither. This is what PostgreSQL does
//! with its WAL segments and RocksDB with `recycle_log_file_num`. A reused file still holds
//! its earlier segment's records after the new ones: the segment number in each record is
//! what tells them apart, and reading stops, without a warning, at the first record of
//! another segment.
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
//! as a live write, then deletes them (a segment of an older release may have records without
//! a number, which must not be read as a reused file's leftovers, so none is kept). Replaying rows that a checkpoint already wrote is
//! harmless: the store only upserts, and a fenced upsert sequence replayed over its own result
//! gives that result again. A segment's replay stops at its first record that is cut short or
//! fails its checksum: a crash during an append (the write was never acknowledged), or an
//! append that failed and could not be cut back (the next append then opened a new segment).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::super::wire::{Reader, WireError, Writer};
use super::overlay::RowKey;
use crate::store::StoreError;

/// The journal's directory inside the store's.
pub(super) const DIR: &str = "journal";
/// A record's header: its payload's length (with [`NUMBERED`]), its CRC and its segment.
const FRAME: usize = 16;
/// The header of a record written before segments were reused: length and CRC only.
const LEGACY_FRAME: usize = 8;
/// The length's top bit: the record carries its segment's number (a batch is far below 2 GiB).
const NUMBERED: u32 = 1 << 31;
/// How many checkpointed segments are kept to be reused: one is enough, as a freeze waits
/// for the checkpoint of the segment before (at most one is frozen at a time), which leaves
/// that segment's file for the new one. A file kept is as large as its segment was.
pub(super) const SPARES: usize = 1;
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
    /// Written at the end of the segment's records, not of the file: a reused file goes on.
    fn try_append(&mut self, rows: &[(RowKey, Vec<u8>)]) -> io::Result<()> {
        let record = frame(rows, std::mem::take(&mut self.frame), self.io, self.segment);
        let result = fault(self.faults.as_ref(), "append to")
            .and_then(|()| self.file.write_all_at(record.bytes(), self.len))
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

pub(super) fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.log"))
}

/// The number of a segment file's name ([`segment_path`]); `None` for any other file.
pub(super) fn segment_number(name: &std::ffi::OsStr) -> Option<u64> {
    numbered_file(name, ".log")
}

/// The number of a file named `<number><extension>` (`.log`: a segment; `.free`: a kept one).
pub(super) fn numbered_file(name: &std::ffi::OsStr, extension: &str) -> Option<u64> {
    name.to_str()?.strip_suffix(extension)?.parse().ok()
}

/// A kept segment's file ([`retire_through`]): `<segment:020>.free`.
fn spare_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.free"))
}

/// The kept segments' files in `dir`, with their numbers.
fn spares(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(number) = numbered_file(&entry.file_name(), ".free") {
            found.push((number, entry.path()));
        }
    }
    Ok(found)
}

/// The number the next segment must be above: the newest segment's (`last`), or a kept
/// file's if higher. A kept file holds records numbered up to its own number, which must
/// never be read as the new segment's (were the segments deleted by hand, `last` is 0).
pub(super) fn newest_number(dir: &Path, last: u64) -> io::Result<u64> {
    Ok(spares(dir)?
        .into_iter()
        .map(|(n, _)| n)
        .fold(last, u64::max))
}

/// Creates a segment file, reusing a kept one if there is one, and makes its directory entry
/// durable: a synced append to a file whose entry was lost in a crash would be lost with it.
/// `direct`: written around the page cache if the file system allows it.
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
    // Not appending: a reused file is overwritten from its start, and after a failed append
    // is cut back, the next one starts at the cut (the journal writes at its own offset).
    let reused = spares(dir)
        .unwrap_or_default()
        .into_iter()
        .any(|(_, spare)| std::fs::rename(spare, &path).is_ok());
    let file = if reused {
        OpenOptions::new().write(true).open(&path)
    } else {
        OpenOptions::new().write(true).create_new(true).open(&path)
    }
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

/// `[len][crc][segment][count, then (key, row) …]`, in `buf` (cleared first); for a direct
/// append, starting on a block boundary and padded to whole blocks.
fn frame(rows: &[(RowKey, Vec<u8>)], mut buf: Vec<u8>, io: Io, segment: u64) -> Framed {
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
    w.buf[start + 8..payload].copy_from_slice(&segment.to_le_bytes());
    let crc = crc32fast::hash(&w.buf[start + 8..]);
    // A batch is far below 2 GiB: the store's batches are bounded by the pipeline's.
    let len = u32::try_from(w.buf.len() - payload).map_or(u32::MAX, |len| len.min(!NUMBERED));
    w.buf[start..start + 4].copy_from_slice(&(len | NUMBERED).to_le_bytes());
    w.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
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

/// Reads a segment's records up to its end: the file's end, a reused file's earlier
/// contents, or a record cut short or damaged (whose bytes on are `dropped_bytes`).
fn parse_segment(number: u64, bytes: &[u8]) -> Segment {
    let mut batches = Vec::new();
    let mut at = 0;
    // Whether a record of this segment carried its number: then whatever follows that is
    // not such a record is what a reused file held before, not a torn append.
    let mut numbered = false;
    while at < bytes.len() {
        let end_of_records = match next_record(&bytes[at..], number) {
            Next::Record(rows, used, is_numbered) => {
                batches.push(rows);
                at += used;
                numbered |= is_numbered;
                continue;
            }
            Next::Foreign => true,
            Next::Torn => false,
            Next::Other => numbered,
        };
        // A direct append's padding: zeros from the end of its record to the next block
        // (or to the end of the file, if a crash cut the padding short).
        let padding = &bytes[at..at.next_multiple_of(BLOCK).min(bytes.len())];
        if at % BLOCK != 0 && padding.iter().all(|&b| b == 0) {
            at += padding.len();
            continue;
        }
        if end_of_records {
            at = bytes.len();
        }
        break;
    }
    Segment {
        number,
        batches,
        dropped_bytes: bytes.len() - at,
    }
}

/// What a segment holds at an offset.
#[derive(Debug)]
enum Next {
    /// A whole, sound record of this segment, its length, and whether it carried the
    /// segment's number (an older release's records do not).
    Record(Rows, usize, bool),
    /// A numbered record of another segment: what a reused file held before.
    Foreign,
    /// A header with this segment's number whose record is not whole or sound: an append
    /// cut short by a crash, or damage.
    Torn,
    /// Anything else: padding, an unnumbered record that is not whole or sound, nothing.
    Other,
}

/// The record at the start of `bytes`, in segment `segment`.
fn next_record(bytes: &[u8], segment: u64) -> Next {
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (Some(len), Some(crc)) = (word(0), word(4)) else {
        return Next::Other;
    };
    let numbered = len & NUMBERED != 0;
    let (frame, unsound) = if numbered {
        let Some(number) = bytes.get(LEGACY_FRAME..FRAME) else {
            return Next::Other;
        };
        if number != segment.to_le_bytes() {
            return Next::Foreign;
        }
        (FRAME, Next::Torn)
    } else {
        (LEGACY_FRAME, Next::Other)
    };
    // What the CRC covers: the segment's number, if the record has it, and the payload.
    let len = (len & !NUMBERED) as usize;
    let Some(covered) = bytes.get(LEGACY_FRAME..frame + len) else {
        return unsound;
    };
    if crc32fast::hash(covered) != crc {
        return unsound;
    }
    match unframe(&covered[frame - LEGACY_FRAME..]) {
        Ok(rows) => Next::Record(rows, frame + len, numbered),
        Err(_) => unsound,
    }
}

/// Retires the segments numbered up to `through`, whose batches are in redb: the largest are
/// kept to be reused, up to `keep` files kept in all ([`SPARES`] after a checkpoint; none at
/// open, where a segment of an older release may hold unnumbered records), the rest deleted.
/// Renaming one is not synced: if a crash undoes it, the segment is replayed (harmlessly)
/// and deleted at the next open.
pub(super) fn retire_through(dir: &Path, through: u64, keep: usize) -> io::Result<()> {
    let mut covered = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(n) = segment_number(&entry.file_name()).filter(|&n| n <= through) {
            covered.push((entry.metadata()?.len(), n));
        }
    }
    covered.sort_unstable_by(|a, b| b.cmp(a));
    let mut room = keep.saturating_sub(spares(dir)?.len());
    for (_, n) in covered {
        if room > 0 {
            std::fs::rename(segment_path(dir, n), spare_path(dir, n))?;
            room -= 1;
        } else {
            std::fs::remove_file(segment_path(dir, n))?;
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
        retire_through(dir.path(), 1, 0).unwrap();
        let left: Vec<u64> = read_all(dir.path())
            .unwrap()
            .iter()
            .map(|s| s.number)
            .collect();
        assert_eq!(left, vec![2]);
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_retired_segment_is_reused_and_its_earlier_records_never_read_back() {
        for direct in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut journal = Journal::create(dir.path(), 1, None, direct).unwrap();
            journal.append(&rows(30)).unwrap();
            journal.append(&long_keyed_rows()).unwrap();
            let first_len = std::fs::metadata(segment_path(dir.path(), 1))
                .unwrap()
                .len();
            assert_eq!(journal.rotate().unwrap(), 1);
            retire_through(dir.path(), 1, SPARES).unwrap();
            assert_eq!(
                files(dir.path()),
                vec![format!("{:020}.free", 1), format!("{:020}.log", 2)]
            );
            assert_eq!(journal.rotate().unwrap(), 2);
            // Segment 3 is segment 1's file, its records still there until overwritten.
            assert_eq!(
                files(dir.path()),
                vec![format!("{:020}.log", 2), format!("{:020}.log", 3)]
            );
            let reused = segment_path(dir.path(), 3);
            assert_eq!(std::fs::metadata(&reused).unwrap().len(), first_len);
            let read = read_all(dir.path()).unwrap();
            assert!(read[1].batches.is_empty(), "direct: {direct}");
            assert_eq!(read[1].dropped_bytes, 0, "not a torn append: {direct}");

            journal.append(&rows(2)).unwrap();
            assert_eq!(
                std::fs::metadata(&reused).unwrap().len(),
                first_len,
                "overwritten in place"
            );
            let read = read_all(dir.path()).unwrap();
            assert_eq!(read[1].batches, vec![rows(2)], "direct: {direct}");
            assert_eq!(read[1].dropped_bytes, 0, "direct: {direct}");

            // An append of segment 3 cut short is still told from the earlier records.
            let torn = frame(&rows(500), Vec::new(), journal.io, 3);
            let half = &torn.bytes()[..torn.bytes().len() / 2];
            journal.file.write_all_at(half, journal.len).unwrap();
            let read = read_all(dir.path()).unwrap();
            assert_eq!(read[1].batches, vec![rows(2)], "direct: {direct}");
            assert!(read[1].dropped_bytes > 0, "a torn append: {direct}");
        }
    }

    #[test]
    fn a_new_segment_is_numbered_above_every_kept_file() {
        for direct in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut journal = Journal::create(dir.path(), 1, None, direct).unwrap();
            journal.append(&rows(1)).unwrap();
            journal.append(&rows(2)).unwrap();
            journal.rotate().unwrap();
            retire_through(dir.path(), 1, SPARES).unwrap();
            drop(journal);
            // The segments deleted by hand: only the kept file is left, with segment 1's
            // records. A store opening now finds no segment (`last` 0).
            std::fs::remove_file(segment_path(dir.path(), 2)).unwrap();
            assert_eq!(newest_number(dir.path(), 7).unwrap(), 7);
            let next = newest_number(dir.path(), 0).unwrap() + 1;
            let mut journal = Journal::create(dir.path(), next, None, direct).unwrap();
            journal.append(&rows(1)).unwrap();
            let read = read_all(dir.path()).unwrap();
            assert_eq!(read.len(), 1);
            // Numbered 1 like the file's old records, rows(2) would read back after it.
            assert_eq!(read[0].batches, vec![rows(1)], "direct: {direct}");
        }
    }

    #[test]
    fn retiring_keeps_the_largest_segments_up_to_the_spares_and_deletes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), 1, None, true).unwrap();
        // Segments of 2, 1, 5 and 1 blocks where appends are direct.
        for n in [300, 5, 900, 1] {
            journal.append(&rows(n)).unwrap();
            journal.rotate().unwrap();
        }
        retire_through(dir.path(), 3, SPARES).unwrap();
        assert_eq!(
            files(dir.path()),
            vec![
                format!("{:020}.free", 3),
                format!("{:020}.log", 4),
                format!("{:020}.log", 5),
            ]
        );
        // No room left: the next retired segment is deleted.
        retire_through(dir.path(), 4, SPARES).unwrap();
        assert_eq!(
            files(dir.path()),
            vec![format!("{:020}.free", 3), format!("{:020}.log", 5)]
        );
    }

    #[test]
    fn a_record_of_an_older_release_without_its_segment_number_reads_back() {
        let legacy = |batch: &Rows| {
            let numbered = frame(batch, Vec::new(), Io::Buffered, 9);
            let payload = &numbered.bytes()[FRAME..];
            let mut record = (payload.len() as u32).to_le_bytes().to_vec();
            record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
            record.extend_from_slice(payload);
            record
        };
        let mut bytes = [legacy(&rows(3)), legacy(&rows(1))].concat();
        let read = parse_segment(4, &bytes);
        assert_eq!(read.batches, vec![rows(3), rows(1)]);
        assert_eq!(read.dropped_bytes, 0);
        // Damaged, it is dropped and said so, as before.
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let read = parse_segment(4, &bytes);
        assert_eq!(read.batches, vec![rows(3)]);
        assert!(read.dropped_bytes > 0);
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
            let framed = frame(&batch, Vec::new(), Io::Direct, 1);
            let bytes = framed.bytes();
            assert_eq!(
                bytes.as_ptr().align_offset(BLOCK),
                0,
                "{} rows",
                batch.len()
            );
            assert_eq!(bytes.len() % BLOCK, 0, "{} rows", batch.len());
            let Next::Record(read, used, true) = next_record(bytes, 1) else {
                panic!("the record reads back, numbered");
            };
            assert_eq!(read, batch);
            assert!(bytes[used..].iter().all(|&b| b == 0), "padded with zeros");
            // The same record buffered: unpadded, the same bytes up to its end.
            let buffered = frame(&batch, Vec::new(), Io::Buffered, 1);
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
                .map(|b| frame(b, Vec::new(), Io::Buffered, 1).bytes().len())
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
        let unpadded = |b: &Rows| frame(b, Vec::new(), Io::Buffered, 1).bytes().len();
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
        /// A reused file reads back exactly the records its new segment wrote over the
        /// earlier segment's, however many of each, buffered or direct; and nothing is said
        /// to be cut short.
        #[test]
        fn a_reused_file_reads_back_only_its_new_segment(
            direct in any::<bool>(),
            old in proptest::collection::vec(0u64..120, 0..6),
            new in proptest::collection::vec(0u64..120, 0..6),
        ) {
            let io = if direct { Io::Direct } else { Io::Buffered };
            let write = |sizes: &[u64], segment| -> Vec<u8> {
                sizes.iter().flat_map(|&n| frame(&rows(n), Vec::new(), io, segment).bytes().to_vec()).collect()
            };
            let mut bytes = write(&old, 1);
            let fresh = write(&new, 2);
            if bytes.len() < fresh.len() {
                bytes.resize(fresh.len(), 0);
            }
            bytes[..fresh.len()].copy_from_slice(&fresh);
            let read = parse_segment(2, &bytes);
            prop_assert_eq!(read.batches, new.iter().map(|&n| rows(n)).collect::<Vec<_>>());
            prop_assert_eq!(read.dropped_bytes, 0);
        }

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
                batches.iter().map(|b| frame(b, Vec::new(), io, 1).bytes().to_vec()).collect();
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
            let last_end = last_start + frame(&batches[last], Vec::new(), Io::Buffered, 1).bytes().len();
            prop_assert!(read.batches.len() < batches.len() || at >= last_end, "flip at {}", at);
        }
    }
}
