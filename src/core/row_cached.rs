//! A part of a user's state with its stored row's bytes kept beside it.
//!
//! Why: a user's row is rewritten whole with every batch that touches the user. Most of it
//! is a handful of heap strings the evaluation rarely touches — the unclaimed milestones
//! with their prizes' texts, the balances' reward types, the pending requests' ids — and
//! encoding them was a cache miss per string at every write: the milestones alone were 7 %
//! of the record step's samples in the end-to-end profile. Those parts change only when a
//! milestone is won or claimed, a balance moves, or a request is sent or answered, so each
//! keeps its encoding after the first write and the writes after it copy it as one block.
//!
//! The kept bytes are opaque here: the binary row codec (`store::state_format`) makes and
//! reads them, always with the same encoder for a field, and they are dropped whenever the
//! value may change, which is any mutable access ([`DerefMut`]). The wrapper reads,
//! compares, prints and serializes as the value it wraps, so stored rows and every output
//! are unchanged.
//!
//! A part may also keep a *summary* of type `S`: a small fact derived from the value that the
//! evaluation asks at every action (the unclaimed milestones' earliest prize expiry), kept
//! inline so that asking it does not touch the value's heap memory, and dropped with the
//! kept bytes.

use serde::{Deserialize, Serialize};
use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RowCached<T, S = ()> {
    value: T,
    /// The value as the binary row encodes it, made by the first write after a change.
    #[serde(skip)]
    row_bytes: OnceLock<Kept>,
    /// What [`RowCached::summary`] derived from the value since it last changed.
    #[serde(skip)]
    summary: OnceLock<S>,
}

impl<T, S> RowCached<T, S> {
    /// A fact derived from the value by `derive`, which runs at the first call after each
    /// change; the calls in between answer from the wrapper itself. Every call for a part
    /// must pass the same `derive`.
    pub fn summary(&self, derive: impl FnOnce(&T) -> S) -> &S {
        self.summary.get_or_init(|| derive(&self.value))
    }

    /// The value's kept row encoding, if it was kept since the value last changed.
    pub fn kept_bytes(&self) -> Option<&[u8]> {
        self.row_bytes.get().map(Kept::bytes)
    }

    /// Asks the CPU to start loading the kept encoding, when it is kept on the heap: the
    /// worker calls it as it takes a user whose row it will write after the evaluation, so
    /// that copying the encoding into the row does not wait for memory.
    pub fn prefetch_kept(&self) {
        if let Some(Kept::Boxed(bytes)) = self.row_bytes.get() {
            super::prefetch::slice(bytes, PREFETCHED_LINES);
        }
    }

    /// Keeps `bytes` as the value's row encoding, until the value may change. The codec
    /// calls it right after encoding the value, with what it wrote.
    pub fn keep(&self, bytes: &[u8]) {
        // Only unkept values are encoded, and `&self` cannot have changed in between: the
        // cell is empty.
        let _ = self.row_bytes.set(Kept::new(bytes));
    }
}

/// The most kept bytes held inline.
const INLINE: usize = 22;

/// How many cache lines of a boxed encoding [`RowCached::prefetch_kept`] asks for: 512
/// bytes, a few unclaimed milestones; the copy of a longer encoding goes on from there as a
/// sequential read, which the processor's own prefetcher follows.
const PREFETCHED_LINES: usize = 8;

/// Kept row bytes: inside the wrapper when they fit, else on the heap.
///
/// Why inline: the state's own memory is warm from the evaluation when its row is written,
/// and a boxed encoding was a cache miss of its own. The common small ones fit (no pending
/// request is one byte, a balance or two a dozen or so); with them inline the balances' copy
/// left the record step's profile and the step ran 1–7 % faster (`benches/record_step.rs`,
/// docs/benchmarks.md). Not the `SmallVec<[u8; 22]>` the project uses elsewhere: tried, it
/// measured 2–12 % slower on the same bench (5 alternated pairs); it is 32 bytes against
/// these 24, which may be why (not profiled).
#[derive(Clone)]
enum Kept {
    Inline { len: u8, bytes: [u8; INLINE] },
    Boxed(Box<[u8]>),
}

impl Kept {
    fn new(kept: &[u8]) -> Self {
        match u8::try_from(kept.len()) {
            Ok(len) if kept.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..kept.len()].copy_from_slice(kept);
                Kept::Inline { len, bytes }
            }
            _ => Kept::Boxed(kept.into()),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Kept::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Kept::Boxed(bytes) => bytes,
        }
    }
}

impl<T, S> RowCached<T, S>
where
    for<'a> &'a T: IntoIterator,
{
    /// Whether the wrapped collection is empty (what serde asks to leave it out).
    pub fn is_empty(&self) -> bool {
        self.value.into_iter().next().is_none()
    }
}

impl<T, S> Deref for RowCached<T, S> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T, S> DerefMut for RowCached<T, S> {
    /// Whoever may change the value drops its kept encoding and summary.
    fn deref_mut(&mut self) -> &mut T {
        self.row_bytes.take();
        self.summary.take();
        &mut self.value
    }
}

impl<T, S> From<T> for RowCached<T, S> {
    fn from(value: T) -> Self {
        RowCached {
            value,
            row_bytes: OnceLock::new(),
            summary: OnceLock::new(),
        }
    }
}

impl<A, T: FromIterator<A>, S> FromIterator<A> for RowCached<T, S> {
    fn from_iter<I: IntoIterator<Item = A>>(items: I) -> Self {
        T::from_iter(items).into()
    }
}

impl<T: PartialEq, S> PartialEq for RowCached<T, S> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: std::fmt::Debug, S> std::fmt::Debug for RowCached<T, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the codec does with a part: its kept bytes, or its encoding, then kept.
    fn written(list: &RowCached<Vec<String>>, encodings: &mut usize) -> Vec<u8> {
        if let Some(kept) = list.kept_bytes() {
            return kept.to_vec();
        }
        *encodings += 1;
        let bytes: Vec<u8> = list.iter().flat_map(|s| s.bytes().chain([b';'])).collect();
        list.keep(&bytes);
        bytes
    }

    /// Kept bytes are reused until a mutable access, and made again from the value after it.
    #[test]
    fn kept_bytes_last_until_the_value_may_change() {
        let mut n = 0;
        let mut list = RowCached::from(vec!["a".to_string()]);
        assert_eq!(list.kept_bytes(), None);
        assert_eq!(written(&list, &mut n), b"a;");
        assert_eq!((written(&list, &mut n), n), (b"a;".to_vec(), 1));
        assert_eq!(list.clone().kept_bytes(), Some(&b"a;"[..]));
        list.push("b".into());
        assert_eq!((written(&list, &mut n), n), (b"a;b;".to_vec(), 2));
        list.iter_mut().for_each(|s| s.push('2'));
        assert_eq!((written(&list, &mut n), n), (b"a2;b2;".to_vec(), 3));
        list.retain(|s| s != "a2");
        assert_eq!((written(&list, &mut n), n), (b"b2;".to_vec(), 4));
        // Reading leaves them.
        assert_eq!(list.len(), 1);
        assert!(!list.is_empty());
        assert_eq!(list.iter().count(), 1);
        assert_eq!((written(&list, &mut n), n), (b"b2;".to_vec(), 4));
        list.clear();
        assert!(list.is_empty());
        assert_eq!(list.kept_bytes(), None);
    }

    /// Kept bytes read back as kept, short (inline) or long (boxed), and through a clone.
    #[test]
    fn kept_bytes_of_any_length_read_back() {
        for len in [0, 1, INLINE - 1, INLINE, INLINE + 1, 300] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
            let part = RowCached::<Vec<u8>>::from(vec![]);
            part.keep(&bytes);
            assert_eq!(part.kept_bytes(), Some(&bytes[..]), "{len} bytes");
            assert_eq!(part.clone().kept_bytes(), Some(&bytes[..]), "{len} bytes");
        }
    }

    /// A summary is derived once, then answered until a mutable access drops it.
    #[test]
    fn a_summary_lasts_until_the_value_may_change() {
        let mut derived = 0;
        let mut list: RowCached<Vec<u32>, Option<u32>> = RowCached::from(vec![3, 1, 2]);
        let mut lowest = |list: &RowCached<Vec<u32>, Option<u32>>| {
            *list.summary(|v| {
                derived += 1;
                v.iter().copied().min()
            })
        };
        assert_eq!(lowest(&list), Some(1));
        assert_eq!(lowest(&list), Some(1));
        assert_eq!(lowest(&list.clone()), Some(1), "a clone keeps it");
        assert_eq!(list.len(), 3, "reading keeps it");
        assert_eq!(lowest(&list), Some(1));
        list.retain(|n| *n != 1);
        assert_eq!(lowest(&list), Some(2));
        list.clear();
        assert_eq!(lowest(&list), None);
        assert_eq!(derived, 3, "derived once per change");
    }

    /// The wrapper serializes, compares and prints as the value it wraps, kept bytes or not.
    #[test]
    fn it_is_its_value_to_serde_equality_and_debug() {
        let list = RowCached::from(vec!["a".to_string()]);
        let vec = vec!["a".to_string()];
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            serde_json::to_string(&vec).unwrap()
        );
        let back: RowCached<Vec<String>> =
            serde_json::from_str(&serde_json::to_string(&vec).unwrap()).unwrap();
        list.keep(b"a;");
        assert_eq!(back, list);
        assert_eq!(format!("{list:?}"), format!("{vec:?}"));
    }
}
