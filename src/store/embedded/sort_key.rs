//! The overlays' form of a row's key: one byte string whose byte order is the key's order.
//!
//! Why: an overlay is an ordered map of tens of thousands of rows, and every write descends
//! it. Comparing [`RowKey`]s there followed two or three heap pointers per comparison (each
//! field is a string of its own), and a profile put those comparisons at most of the
//! overlay's write time. A key encoded into one allocation compares with one `memcmp`, and
//! an overlay entry holds one allocation instead of two or three.
//!
//! The encoding: the table's tag (the journal's), then each field in order; a string as its
//! bytes with each `0x00` written `0x00 0xFF`, ended by `0x00 0x01`; an integer big-endian.
//! So the bytes of two keys compare as the keys do (the table first, then field by field, a
//! string before every longer string it begins), and no field's end is ambiguous. A signed
//! integer has its sign bit flipped first, so negative numbers sort before the others.

use std::borrow::Borrow;

use smallvec::SmallVec;
use smol_str::SmolStr;

use super::overlay::{RowKey, CLAIM, FINISHED, HISTORY, HISTORY_LOG, OUTBOX, RESOURCE, USER};

/// Ends a string: lower than any byte that can follow within a string, `0x00 0xFF` included.
const END: [u8; 2] = [0x00, 0x01];
/// A `0x00` byte within a string.
const ZERO: [u8; 2] = [0x00, 0xFF];

/// A key's encoding, on the stack for the keys a worker writes (a lookup allocates nothing).
pub(super) type KeyBytes = SmallVec<[u8; 64]>;

/// A [`RowKey`] encoded so that its bytes order as the key does.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct SortKey(Box<[u8]>);

impl Borrow<[u8]> for SortKey {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl SortKey {
    pub(super) fn of(key: &RowKey) -> Self {
        SortKey(Box::from(&encode(key)[..]))
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key this encodes.
    #[cfg(test)]
    pub(super) fn decode(&self) -> RowKey {
        let mut key = RowKey::Outbox(String::new());
        self.decode_into(&mut key);
        key
    }

    /// Makes `key` the key this encodes, reusing its strings' buffers where the table is
    /// the same: a checkpoint decodes every key of an overlay, and allocates almost nothing.
    pub(super) fn decode_into(&self, key: &mut RowKey) {
        decode_into(&self.0, key)
    }
}

/// The encoding of `key`.
pub(super) fn encode(key: &RowKey) -> KeyBytes {
    let mut out = KeyBytes::new();
    match key {
        RowKey::User(tenant, user) => {
            out.push(USER);
            string(&mut out, tenant);
            string(&mut out, user);
        }
        RowKey::Resource(key) => {
            out.push(RESOURCE);
            string(&mut out, key);
        }
        RowKey::History(tenant, user, seq) => {
            out.push(HISTORY);
            string(&mut out, tenant);
            string(&mut out, user);
            out.extend_from_slice(&seq.to_be_bytes());
        }
        RowKey::Claim(tenant, user, claim) => {
            out.push(CLAIM);
            string(&mut out, tenant);
            string(&mut out, user);
            string(&mut out, claim);
        }
        RowKey::Finished(tenant, challenge, partition) => {
            finished_prefix(&mut out, tenant);
            out.extend_from_slice(&challenge.to_be_bytes());
            string(&mut out, partition);
        }
        RowKey::Outbox(owner) => {
            out.push(OUTBOX);
            string(&mut out, owner);
        }
        RowKey::HistoryChunk(input, chunk) => {
            out.push(HISTORY_LOG);
            string(&mut out, input);
            out.extend_from_slice(&signed(*chunk).to_be_bytes());
        }
    }
    out
}

/// `v` as an unsigned number of the same order.
fn signed(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

/// The bytes every encoded finished counter of `tenant` begins with, and no other key.
pub(super) fn finished_prefix(out: &mut KeyBytes, tenant: &str) {
    out.push(FINISHED);
    string(out, tenant);
}

/// A finished counter's challenge and partition, from the rest of its encoding after
/// [`finished_prefix`].
pub(super) fn finished_fields(rest: &[u8]) -> (u32, String) {
    let mut r = Fields(rest);
    (r.u32(), r.string())
}

fn string(out: &mut KeyBytes, s: &str) {
    let mut rest = s.as_bytes();
    while let Some(at) = rest.iter().position(|b| *b == 0) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(&ZERO);
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.extend_from_slice(&END);
}

/// Decodes what [`encode`] wrote into `key`. The overlays only hold encodings of valid keys,
/// so there is no error to return: bytes that end early read as empty fields, which no valid
/// key yields.
fn decode_into(bytes: &[u8], key: &mut RowKey) {
    let (tag, rest) = bytes.split_first().map_or((0, &[][..]), |(t, r)| (*t, r));
    let mut r = Fields(rest);
    let same_table = matches!(
        (tag, &*key),
        (USER, RowKey::User(..))
            | (RESOURCE, RowKey::Resource(..))
            | (HISTORY, RowKey::History(..))
            | (CLAIM, RowKey::Claim(..))
            | (FINISHED, RowKey::Finished(..))
            | (OUTBOX, RowKey::Outbox(..))
            | (HISTORY_LOG, RowKey::HistoryChunk(..))
    );
    if !same_table {
        *key = match tag {
            USER => RowKey::User(SmolStr::default(), SmolStr::default()),
            RESOURCE => RowKey::Resource(String::new()),
            HISTORY => RowKey::History(SmolStr::default(), SmolStr::default(), 0),
            CLAIM => RowKey::Claim(String::new(), String::new(), String::new()),
            FINISHED => RowKey::Finished(String::new(), 0, String::new()),
            HISTORY_LOG => RowKey::HistoryChunk(String::new(), 0),
            _ => RowKey::Outbox(String::new()),
        };
    }
    match key {
        RowKey::User(tenant, user) => {
            *tenant = r.smol();
            *user = r.smol();
        }
        RowKey::Resource(k) | RowKey::Outbox(k) => r.string_into(k),
        RowKey::History(tenant, user, seq) => {
            *tenant = r.smol();
            *user = r.smol();
            *seq = r.u64();
        }
        RowKey::Claim(tenant, user, claim) => {
            r.string_into(tenant);
            r.string_into(user);
            r.string_into(claim);
        }
        RowKey::Finished(tenant, challenge, partition) => {
            r.string_into(tenant);
            *challenge = r.u32();
            r.string_into(partition);
        }
        RowKey::HistoryChunk(input, chunk) => {
            r.string_into(input);
            *chunk = (r.u64() ^ (1 << 63)) as i64;
        }
    }
}

/// Reads an encoding's fields in order.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn string(&mut self) -> String {
        let mut out = String::new();
        self.string_into(&mut out);
        out
    }

    /// Reads a string as a `SmolStr`: held inline up to 23 bytes, so a user's names decode
    /// without allocating. A string without escaped zero bytes is read in place.
    fn smol(&mut self) -> SmolStr {
        let end = self.0.iter().position(|b| *b == 0);
        let escaped = end.is_some_and(|at| self.0.get(at + 1) == Some(&ZERO[1]));
        if escaped {
            return SmolStr::from(self.string());
        }
        let at = end.unwrap_or(self.0.len());
        let text = SmolStr::new(String::from_utf8_lossy(&self.0[..at]));
        self.0 = self.0.get(at + 2..).unwrap_or_default();
        text
    }

    /// Reads a string into `out`, replacing what it held.
    fn string_into(&mut self, out: &mut String) {
        out.clear();
        let mut bytes = std::mem::take(out).into_bytes();
        loop {
            let Some(at) = self.0.iter().position(|b| *b == 0) else {
                bytes.extend_from_slice(self.0);
                self.0 = &[];
                break;
            };
            bytes.extend_from_slice(&self.0[..at]);
            let escaped = self.0.get(at + 1) == Some(&ZERO[1]);
            self.0 = self.0.get(at + 2..).unwrap_or_default();
            if !escaped {
                break;
            }
            bytes.push(0);
        }
        // The bytes are a string's own: escaping only rewrote its 0x00 bytes.
        *out = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    }

    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.big_endian())
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.big_endian())
    }

    /// The next `N` bytes, zeros in front of however many are left if fewer.
    fn big_endian<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(self.0.len().min(N));
        self.0 = rest;
        let mut be = [0; N];
        be[N - head.len()..].copy_from_slice(head);
        be
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Strings from a small alphabet that holds the bytes the encoding treats specially, so
    /// that equal prefixes, escapes and ends meet often.
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('\0'),
                Just('\u{1}'),
                Just('a'),
                Just('b'),
                Just('\u{ff}'),
                Just('é')
            ],
            0..5,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    fn row_key() -> impl Strategy<Value = RowKey> {
        let seq = prop_oneof![Just(0u64), Just(1), Just(256), Just(u64::MAX), any::<u64>()];
        let challenge = prop_oneof![Just(0u32), Just(1), Just(256), Just(u32::MAX)];
        let offset = prop_oneof![
            Just(0i64),
            Just(-1),
            Just(i64::MIN),
            Just(i64::MAX),
            any::<i64>()
        ];
        prop_oneof![
            (text(), text()).prop_map(|(t, u)| RowKey::User(t.into(), u.into())),
            text().prop_map(RowKey::Resource),
            (text(), text(), seq).prop_map(|(t, u, s)| RowKey::History(t.into(), u.into(), s)),
            (text(), text(), text()).prop_map(|(t, u, c)| RowKey::Claim(t, u, c)),
            (text(), challenge, text()).prop_map(|(t, c, p)| RowKey::Finished(t, c, p)),
            text().prop_map(RowKey::Outbox),
            (text(), offset).prop_map(|(i, c)| RowKey::HistoryChunk(i, c)),
        ]
    }

    proptest! {
        #[test]
        fn encodings_order_as_their_keys_and_decode_to_them_in_any_key(a in row_key(), b in row_key()) {
            let (ea, eb) = (SortKey::of(&a), SortKey::of(&b));
            prop_assert_eq!(ea.cmp(&eb), a.cmp(&b), "{:?} {:?}", ea, eb);
            prop_assert_eq!(ea.decode(), a.clone());
            prop_assert_eq!(eb.decode(), b.clone());
            // Decoding into a key that held another one (of any table) leaves nothing of it.
            let mut reused = a;
            eb.decode_into(&mut reused);
            prop_assert_eq!(reused, b);
        }

        #[test]
        fn a_tenant_s_finished_counters_and_only_they_begin_with_its_prefix(
            key in row_key(),
            tenant in text(),
        ) {
            let mut prefix = KeyBytes::new();
            finished_prefix(&mut prefix, &tenant);
            let encoded = SortKey::of(&key);
            let mine = matches!(&key, RowKey::Finished(t, ..) if *t == tenant);
            prop_assert_eq!(encoded.as_bytes().starts_with(&prefix), mine);
            if let RowKey::Finished(_, challenge, partition) = &key {
                if mine {
                    let rest = &encoded.as_bytes()[prefix.len()..];
                    prop_assert_eq!(finished_fields(rest), (*challenge, partition.clone()));
                }
            }
        }
    }

    #[test]
    fn keys_the_worker_writes_fit_on_the_stack() {
        let user = RowKey::History("default".into(), "user-0012345678".into(), 42);
        assert!(!encode(&user).spilled(), "{} bytes", encode(&user).len());
        let logged = RowKey::HistoryChunk("questline.actions:11".into(), 123_456_789);
        assert!(
            !encode(&logged).spilled(),
            "{} bytes",
            encode(&logged).len()
        );
    }

    #[test]
    fn cut_short_encodings_decode_without_panicking() {
        let full = SortKey::of(&RowKey::History("t\0".into(), "u".into(), 7));
        for end in 0..full.as_bytes().len() {
            let mut key = RowKey::User("x".into(), "y".into());
            decode_into(&full.as_bytes()[..end], &mut key);
        }
    }
}
