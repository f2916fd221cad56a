//! What both stores share: record encoding, history paging, write clocks.
//!
//! Kept in one place so the two implementations cannot drift apart on the details the
//! conformance suite checks (page arithmetic, which timestamp an unfenced write gets, how bad
//! bytes are reported).

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Display;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::state_format;
use super::wire::{Reader, Writer};
use super::{
    ClaimRecord, Corruption, HistoryEntry, ResourceRecord, StoreError, UserLabel, UserRecord,
};

/// The first byte of a binary row ([`state_format`]'s layouts, version 1). JSON text never
/// starts with it, so a row says by its first byte which form it is in.
pub(crate) const BINARY_V1: u8 = 0x01;
/// The first byte of a user row since the history chain: version 1's layout, then the chain.
pub(crate) const BINARY_V2: u8 = 0x02;

/// How one kind of record is stored: [`encode`] and [`decode`] work on these types.
///
/// - User and resource records, the state every batch rewrites, are binary: [`BINARY_V1`]
///   then their [`state_format`] layout. Rows in JSON, as versions before it wrote them, are
///   still read (their first byte is `{`), and written back binary the next time their owner
///   changes, so a store migrates as it is used and never needs a migration step.
/// - History entries, claim outcomes and finished counters stay JSON: they are written once
///   and read by the sidecar, and a history entry is the event as published.
pub(crate) trait Stored: Sized {
    fn encode_row(&self, key: &dyn Display) -> Result<Vec<u8>, StoreError>;
    fn decode_row(bytes: &[u8]) -> Result<Self, Corruption>;
}

/// Serializes a record in its stored form ([`Stored`]).
pub(crate) fn encode<T: Stored>(key: impl Display, value: &T) -> Result<Vec<u8>, StoreError> {
    value.encode_row(&key)
}

/// Deserializes a stored record; bad bytes are a [`StoreError::Corrupt`], never a panic.
pub(crate) fn decode<T: Stored>(key: impl Display, bytes: &[u8]) -> Result<T, StoreError> {
    T::decode_row(bytes).map_err(|e| StoreError::corrupt(key, e))
}

/// A user record as both stores write it. Public for the benchmarks (its length is the "hot
/// state" figure of docs/benchmarks.md) and tools; the stores go through [`encode`].
pub fn user_row(record: &UserRecord) -> Vec<u8> {
    binary_row(Vec::new(), BINARY_V2, record, state_format::write_user)
}

/// Bytes left free in front of a row serialized ahead of the write ([`AheadRow`]): the
/// embedded store's row header (a format byte and the write timestamp) goes there.
pub(crate) const ROW_HEADROOM: usize = 9;

/// A row serialized ahead of the write, behind [`ROW_HEADROOM`] free bytes. The embedded
/// store writes its header into them and keeps the buffer as the stored row: each row was
/// copied into a new buffer behind its header before, ~10 % of the store threads' samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AheadRow(Vec<u8>);

impl AheadRow {
    /// A user's row, as [`user_row`] serializes it: serialized into `scratch`, then copied
    /// into a buffer of exactly its size. The row stays in the store's journal until the next
    /// checkpoint: a buffer sized for the largest rows (a kilobyte, in mimalloc's 1,280-byte
    /// class) held a typical 600–700-byte row in twice its size there, and serializing into
    /// fresh memory touched new pages the caller (the worker's record step) then faulted in.
    /// `scratch` is the caller's, reused from one row to the next.
    pub(crate) fn user(record: &UserRecord, scratch: &mut Vec<u8>) -> Self {
        scratch.clear();
        *scratch = binary_row(
            std::mem::take(scratch),
            BINARY_V2,
            record,
            state_format::write_user,
        );
        AheadRow::copied(scratch)
    }

    /// A resource's row, as [`encode`] serializes it, behind the headroom: serialized from
    /// the partition's record, so the batch carries bytes instead of a clone of the record
    /// (whose window of answered requests is thousands of strings).
    pub(crate) fn resource(record: &ResourceRecord) -> Self {
        AheadRow(resource_row(headroom(0), record))
    }

    /// A history row from its sequence number and its event's JSON: exactly the bytes
    /// `serde_json::to_vec(&HistoryEntry { seq, event })` gives when `event` is that event's
    /// `serde_json::to_vec` (fields in declaration order, compact).
    pub(crate) fn history(seq: u64, event_json: &[u8]) -> Self {
        let mut digits = itoa::Buffer::new();
        let seq = digits.format(seq);
        let mut row = headroom(event_json.len() + seq.len() + 18);
        row.extend_from_slice(b"{\"seq\":");
        row.extend_from_slice(seq.as_bytes());
        row.extend_from_slice(b",\"event\":");
        row.extend_from_slice(event_json);
        row.push(b'}');
        AheadRow(row)
    }

    /// Any serialized row, copied behind the headroom.
    pub(crate) fn copied(payload: &[u8]) -> Self {
        let mut row = headroom(payload.len());
        row.extend_from_slice(payload);
        AheadRow(row)
    }

    /// The row `append` writes into a buffer that holds the headroom and room for
    /// `capacity` more bytes. `append` must only append: the headroom is the row's header.
    pub(crate) fn appended(capacity: usize, append: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Self {
        let row = append(headroom(capacity));
        assert!(
            row.len() >= ROW_HEADROOM,
            "an appended row keeps its headroom"
        );
        AheadRow(row)
    }

    /// The row's bytes, without the headroom.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.0[ROW_HEADROOM..]
    }

    /// The buffer, `header` written into its headroom: `header` then the payload.
    pub(crate) fn behind(mut self, header: [u8; ROW_HEADROOM]) -> Vec<u8> {
        self.0[..ROW_HEADROOM].copy_from_slice(&header);
        self.0
    }
}

/// Reads a stored user row: binary, or the JSON earlier versions wrote.
pub fn read_user_row(bytes: &[u8]) -> Result<UserRecord, StoreError> {
    decode(UserLabel("?", "?"), bytes)
}

/// [`ROW_HEADROOM`] zero bytes, with room for `capacity` more behind them.
fn headroom(capacity: usize) -> Vec<u8> {
    let mut row = Vec::with_capacity(ROW_HEADROOM + capacity);
    row.resize(ROW_HEADROOM, 0);
    row
}

/// `value`'s binary row of layout `version`, written into `buf` behind what it holds: a new
/// vector, a scratch buffer callers reuse ([`AheadRow::user`]), or a row's headroom
/// ([`AheadRow::resource`]).
fn binary_row<T>(buf: Vec<u8>, version: u8, value: &T, write: fn(&mut Writer, &T)) -> Vec<u8> {
    // A user with a full window of remembered action ids is several hundred bytes (the ids
    // alone are 512): one allocation for nearly every row, not a second one and a copy.
    let mut w = Writer { buf };
    w.buf.reserve(1024);
    w.u8(version);
    write(&mut w, value);
    w.buf
}

/// A resource's binary row, written into `buf` behind what it holds: one encoder for the row
/// however the batch carries the resource ([`AheadRow::resource`], [`Stored::encode_row`]).
fn resource_row(buf: Vec<u8>, record: &ResourceRecord) -> Vec<u8> {
    binary_row(buf, BINARY_V1, record, state_format::write_resource)
}

/// A binary row's record (`read` is given the row's layout version), or the JSON a previous
/// version wrote. `newest`: the highest layout version of this kind of row.
fn binary_or_json<T: DeserializeOwned>(
    bytes: &[u8],
    newest: u8,
    read: impl FnOnce(&mut Reader<'_>, u8) -> Result<T, super::wire::WireError>,
) -> Result<T, Corruption> {
    match bytes.split_first() {
        Some((&version, rest)) if (BINARY_V1..=newest).contains(&version) => {
            let mut r = Reader::new(rest);
            let value = read(&mut r, version)?;
            r.finish("record")?;
            Ok(value)
        }
        Some((b'{' | b' ' | b'\t' | b'\n' | b'\r', _)) => json(bytes),
        Some((&other, _)) => Err(Corruption::Format(other)),
        None => Err(Corruption::Empty),
    }
}

impl Stored for UserRecord {
    fn encode_row(&self, _: &dyn Display) -> Result<Vec<u8>, StoreError> {
        Ok(user_row(self))
    }
    fn decode_row(bytes: &[u8]) -> Result<Self, Corruption> {
        binary_or_json(bytes, BINARY_V2, |r, version| {
            state_format::read_user(r, version >= BINARY_V2)
        })
    }
}

impl Stored for ResourceRecord {
    fn encode_row(&self, _: &dyn Display) -> Result<Vec<u8>, StoreError> {
        Ok(resource_row(Vec::new(), self))
    }
    fn decode_row(bytes: &[u8]) -> Result<Self, Corruption> {
        binary_or_json(bytes, BINARY_V1, |r, _| state_format::read_resource(r))
    }
}

/// Records kept as JSON (see [`Stored`]).
macro_rules! stored_as_json {
    ($($t:ty),*) => {$(
        impl Stored for $t {
            fn encode_row(&self, key: &dyn Display) -> Result<Vec<u8>, StoreError> {
                to_json(key, self)
            }
            fn decode_row(bytes: &[u8]) -> Result<Self, Corruption> {
                json(bytes)
            }
        }
    )*};
}

stored_as_json!(HistoryEntry, ClaimRecord, u64);

fn to_json<T: Serialize>(key: &dyn Display, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode {
        key: key.to_string(),
        source,
    })
}

fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Corruption> {
    Ok(serde_json::from_slice(bytes)?)
}

/// The sequence numbers on one page of a history of `total` entries, newest (highest) first.
///
/// `page` is 1-based (0 is read as 1); a page past the end is empty. Computed from the count
/// alone, so pages are stable while no entry is added, and both stores read the page by exact
/// keys: no range scan, no ORDER BY (which the CQL test server would ignore anyway).
pub(crate) fn page_seqs(total: u64, page: u32, per_page: u32) -> Vec<u64> {
    let page = u64::from(page.max(1));
    let per_page = u64::from(per_page);
    let skip = (page - 1).saturating_mul(per_page);
    if skip >= total {
        return Vec::new();
    }
    let newest = total - 1 - skip;
    let count = per_page.min(newest + 1);
    (0..count).map(|i| newest - i).collect()
}

/// Microseconds since the Unix epoch, strictly increasing within this process.
///
/// The timestamp of an unfenced write (`write_timestamp: None`). CQL's default is the same
/// clock (the driver or the server stamps writes with the current time in microseconds), and
/// the embedded store follows it so both stores order unfenced and fenced writes alike. Strictly
/// increasing so two unfenced writes in the same microsecond still have an order (ScyllaDB would
/// otherwise break the tie by comparing values).
pub(crate) fn unfenced_timestamp() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = wall_clock_micros();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

fn wall_clock_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The smallest epoch [`super::StateStore::claim_partition`] may hand out now.
///
/// A fenced write's timestamp is `epoch << 40 | offset` ([`super::write_timestamp`]); an
/// unfenced one is the wall clock in microseconds (≈ 2^50.6 today). If epochs started at 1,
/// every fenced write would be *older* than any unfenced write made before it — a worker
/// started on a store that `demo` (unfenced) had written would have all its writes silently
/// dropped. Starting each claim at an epoch whose timestamps lie above the current clock makes
/// fenced writes after a claim outrank every unfenced write before it. 2^23 epochs fit in an
/// i64 timestamp, so this leaves millions of claims of headroom.
pub(crate) fn clock_epoch() -> i64 {
    (wall_clock_micros() >> 40) + 1
}

/// The epoch a claim returns, given the largest one handed out before (if any).
pub(crate) fn next_epoch(previous: Option<i64>) -> i64 {
    let floor = clock_epoch();
    match previous {
        Some(prev) => (prev + 1).max(floor),
        None => floor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::events::{ClaimItem, PrizeInfo, RejectReason};
    use crate::core::inventory::{Answered, Outcome, ResourceState};
    use crate::core::model::SourceRef;
    use crate::core::rules::programmatic::{AmountOutcome, FallbackReason};
    use crate::core::rules::EventRuleState;
    use crate::core::state::{
        ChallengeState, ChallengeStatus, Milestone, Pending, PendingKind, UserState,
        RECENT_ACTION_IDS,
    };
    use chrono::{DateTime, Utc};
    use rust_decimal::Decimal;
    use std::collections::BTreeMap;
    use std::str::FromStr;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    /// `-0.00`: a zero with a sign and a scale, which the parser does not produce.
    fn negative_zero() -> Decimal {
        let mut zero = Decimal::new(0, 2);
        zero.set_sign_negative(true);
        zero
    }

    fn at(nanos: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(1_764_000_000_000_000_000 + nanos)
    }

    fn milestone(id: &str) -> Milestone {
        Milestone {
            milestone_id: id.into(),
            challenge_id: 7,
            achieved_at: at(123_456_789),
            prizes: vec![
                PrizeInfo {
                    value: Some("BURGER-0001".into()),
                    expiration_date: Some(at(1)),
                    description: "40% off".into(),
                    reward_type: "voucher_burger".into(),
                },
                PrizeInfo {
                    value: None,
                    expiration_date: None,
                    description: "ÉTÉ t-shirt".into(),
                    reward_type: "tshirt".into(),
                },
            ],
        }
    }

    /// A user with a value in every field and every kind of pending request.
    fn full_user() -> UserRecord {
        let mut challenges = BTreeMap::new();
        for (i, status) in [
            ChallengeStatus::Active,
            ChallengeStatus::AwaitingSlot,
            ChallengeStatus::Finished,
            ChallengeStatus::Closed,
        ]
        .into_iter()
        .enumerate()
        {
            let mut c = ChallengeState {
                wins: i as u32,
                period_wins: 1,
                period: (i % 2 == 0).then(|| "2026-11-25".into()),
                status,
                ..ChallengeState::default()
            };
            c.trigger_mut(1, 3).accumulated = dec("1000.50");
            c.trigger_mut(2, u32::MAX).met = true;
            challenges.insert(u32::MAX - i as u32, c);
        }
        let source = SourceRef::new("actions", 3, i64::MAX);
        let claim_item = ClaimItem {
            reward_type: "tshirt".into(),
            amount: dec("1.000"),
            milestone_id: Some("m-7-1".into()),
            inventory_id: None,
            code: Some("CODE".into()),
        };
        let kinds = [
            PendingKind::WinnerSlot { challenge_id: 9 },
            PendingKind::Prize {
                challenge_id: 7,
                milestone_id: "m-7-1".into(),
                reward_type: "tshirt".into(),
                amount: negative_zero(),
            },
            PendingKind::Claim {
                claim_id: "c-1".into(),
                items: vec![claim_item],
                milestones: vec![milestone("m-7-2")],
            },
            PendingKind::Amount {
                event: "WATCHED".into(),
                answer: None,
            },
            PendingKind::Amount {
                event: "WATCHED".into(),
                answer: Some(AmountOutcome::Answered {
                    points: dec("12.5"),
                }),
            },
            PendingKind::Amount {
                event: "WATCHED".into(),
                answer: Some(AmountOutcome::Fallback {
                    points: dec("79228162514264337593543950335"),
                    reason: FallbackReason::Status { status: 503 },
                }),
            },
            PendingKind::Amount {
                event: "WATCHED".into(),
                answer: Some(AmountOutcome::Fallback {
                    points: dec("0"),
                    reason: FallbackReason::BadAnswer {
                        detail: "no points".into(),
                    },
                }),
            },
            PendingKind::Operation {
                grant: crate::core::events::OperationRef {
                    code: "10_posts".into(),
                    building_block: "groups".into(),
                    amount: dec("1000000000000000"),
                    description: "Make 10 posts".into(),
                    grant_id: "g-1".into(),
                },
                reward_type: "tshirt".into(),
            },
        ];
        let pending = kinds
            .into_iter()
            .enumerate()
            .map(|(i, what)| {
                let p = Pending {
                    source: source.clone(),
                    occurred_at: at(i as i64),
                    what,
                };
                (format!("req-{i}"), p)
            })
            .collect();
        let state = UserState {
            challenges: challenges.into(),
            balances: crate::core::state::RowCached::from_iter([
                ("points".to_string(), dec("-0.0000000000000000000000000001")),
                ("voucher".to_string(), dec("2")),
            ]),
            milestones: vec![milestone("m-7-1")].into(),
            claimed_challenges: vec![4, 0, u32::MAX],
            recent_action_ids: (0..RECENT_ACTION_IDS + 3)
                .map(|i| format!("a-{i}"))
                .collect(),
            pending,
            rules: litemap::LiteMap::from_iter([
                (
                    "WATCHED".to_string(),
                    EventRuleState {
                        last: Some(at(-5)),
                        day: -739_000,
                        today: 2,
                        run: 3,
                        count: 4,
                        done: true,
                    },
                ),
                ("OTHER".to_string(), EventRuleState::default()),
            ]),
            disabled: true,
        };
        UserRecord {
            state,
            applied: litemap::LiteMap::from_iter([
                ("actions:3".into(), -1),
                ("actions:0".into(), 17),
            ]),
            history_len: u64::MAX,
            history_chain: crate::core::records::HistoryChain {
                head: Some(crate::core::records::HistoryPos::new(
                    "actions:3",
                    i64::MAX,
                    u32::MAX,
                )),
                block: Some(crate::core::records::HistoryPos::new("", -1, 0)),
            },
        }
    }

    fn resource() -> ResourceRecord {
        let reasons = [
            RejectReason::Depleted,
            RejectReason::Capped,
            RejectReason::Inactive,
            RejectReason::Limit,
            RejectReason::BalanceLimit,
            RejectReason::UnclaimedLimit,
        ];
        let mut answered: Answered = reasons
            .into_iter()
            .enumerate()
            .map(|(i, reason)| (format!("r-{i}"), Outcome::Rejected { reason }))
            .collect();
        answered.push(
            "r-g".into(),
            Outcome::Granted {
                inventory_id: Some("inv".into()),
                code: None,
            },
        );
        ResourceRecord {
            state: ResourceState {
                granted: BTreeMap::from([("inv".to_string(), 3), ("old".to_string(), u64::MAX)]),
                claimed: BTreeMap::from([("inv".to_string(), 1)]),
                winners: 12,
                answered,
            },
            applied: litemap::LiteMap::from_iter([("questline.inventory:1".into(), 44)]),
        }
    }

    fn round_trip<T: Stored + PartialEq + std::fmt::Debug>(value: &T) -> Vec<u8> {
        let bytes = encode("row", value).unwrap();
        assert!([BINARY_V1, BINARY_V2].contains(&bytes[0]), "{}", bytes[0]);
        assert_eq!(&decode::<T>("row", &bytes).unwrap(), value);
        bytes
    }

    #[test]
    fn state_rows_round_trip_exactly() {
        let user = full_user();
        round_trip(&user);
        round_trip(&UserRecord::default());
        round_trip(&resource());
        round_trip(&ResourceRecord::default());
        // Decimals keep their scale and sign, times their nanoseconds: equal is not enough.
        let back: UserRecord = decode("row", &encode("row", &user).unwrap()).unwrap();
        let balance = back.state.balances.get("points").copied().unwrap();
        assert_eq!(balance.to_string(), "-0.0000000000000000000000000001");
        let c = &back.state.challenges[&u32::MAX];
        assert_eq!(c.triggers[0].accumulated.to_string(), "1000.50");
        let zero = negative_zero();
        assert!(zero.is_sign_negative() && zero.scale() == 2);
        assert!(matches!(
            &back.state.pending.get("req-1").unwrap().what,
            PendingKind::Prize { amount, .. } if amount.serialize() == zero.serialize()
        ));
        assert_eq!(
            back.state.milestones[0]
                .achieved_at
                .timestamp_subsec_nanos(),
            123_456_789
        );
        assert_eq!(back.state.recent_action_ids.len(), RECENT_ACTION_IDS);
        assert!(back.state.recent_action_ids.contains("a-66"));
        assert!(!back.state.recent_action_ids.contains("a-2"));
    }

    /// The binary row is pinned: the same record is written byte for byte as before the
    /// in-memory user state changed shape (challenge states behind a sorted index, trigger
    /// progress inline, shared event names), so rows written by earlier builds and by this one
    /// are interchangeable.
    ///
    /// Since the history chain (version 2) a row is version 1's with its own first byte and the
    /// chain at the end: the version-1 part is pinned as before, and a version-1 row (as
    /// earlier builds wrote it) still reads, with no chain.
    #[test]
    fn user_rows_are_written_byte_for_byte_as_before() {
        use sha2::{Digest, Sha256};
        let mut unchained = full_user();
        unchained.history_chain = Default::default();
        let bytes = encode("row", &unchained).unwrap();
        assert_eq!(bytes[0], BINARY_V2);
        let body = bytes[1..].strip_suffix(&[0, 0]).expect("two empty links");
        let v1 = [&[BINARY_V1][..], body].concat();
        let digest: String = Sha256::digest(&v1)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            (v1.len(), digest.as_str()),
            (
                1335,
                "bd1633f2da9ebd858c30c03dca0c4508de27920ababfde035979b4581f5bb5a2"
            )
        );
        assert_eq!(decode::<UserRecord>("row", &v1).unwrap(), unchained);
        let chained = encode("row", &full_user()).unwrap();
        assert_eq!(&chained[1..1 + body.len()], body);
        assert_eq!(decode::<UserRecord>("row", &chained).unwrap(), full_user());
        // A version-1 row with anything after the record is refused, not read as a chain.
        let v1_with_tail = [&v1[..], &chained[1 + body.len()..]].concat();
        assert!(decode::<UserRecord>("row", &v1_with_tail).is_err());
    }

    /// A user's balances, milestones and pending requests are kept encoded between writes:
    /// every row written after one of them changed, whichever way, is the row of a fresh
    /// copy that never kept them.
    #[test]
    fn rows_written_after_a_kept_part_changes_are_those_of_a_fresh_copy() {
        let fresh = |user: &UserRecord| -> UserRecord {
            let mut copy = user.clone();
            let state = &mut copy.state;
            state.balances = (*state.balances).clone().into();
            state.milestones = state.milestones.to_vec().into();
            state.pending = (*state.pending).clone().into();
            copy
        };
        let mut user = full_user();
        let changes: [fn(&mut UserRecord); 9] = [
            |_| {},
            |u| u.state.milestones.push(milestone("m-9-1")),
            |u| u.state.milestones[0].prizes[0].value = Some("BURGER-0002".into()),
            |u| u.state.milestones.retain(|m| m.milestone_id != "m-7-1"),
            |u| {
                let _ = u.state.balances.insert("points".into(), Decimal::ONE);
            },
            |u| {
                let _ = u.state.balances.insert("gems".into(), Decimal::TEN);
            },
            |u| {
                let _ = u.state.balances.remove("voucher");
            },
            |u| {
                let _ = u.state.pending.remove("req-1");
            },
            |u| {
                let (_, p) = u.state.pending.iter().next().unwrap();
                let p = p.clone();
                u.state.pending.insert("req-9".into(), p);
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            change(&mut user);
            let written = encode("row", &user).unwrap();
            assert_eq!(written, encode("row", &fresh(&user)).unwrap(), "change {i}");
            // Written again unchanged: the kept bytes.
            assert_eq!(encode("row", &user).unwrap(), written, "change {i}, again");
        }
    }

    /// Rows the previous version wrote as JSON read as the same record.
    #[test]
    fn json_rows_of_the_previous_version_still_decode() {
        let mut user = full_user();
        // JSON kept rule times at microseconds (see EventRuleState::last).
        user.state.rules.get_mut("WATCHED").unwrap().last = Some(at(-5_000));
        let json = serde_json::to_vec(&user).unwrap();
        assert_eq!(json[0], b'{');
        assert_eq!(decode::<UserRecord>("row", &json).unwrap(), user);
        let pretty = serde_json::to_vec_pretty(&resource()).unwrap();
        assert_eq!(
            decode::<ResourceRecord>("row", &pretty).unwrap(),
            resource()
        );
        // And they are written back binary, smaller.
        let binary = encode("row", &user).unwrap();
        assert!(
            binary.len() < json.len() / 2,
            "{} vs {}",
            binary.len(),
            json.len()
        );
    }

    #[test]
    fn bad_rows_are_errors_naming_the_row_and_field() {
        let bytes = encode("row", &full_user()).unwrap();
        for cut in [1, 2, bytes.len() / 2, bytes.len() - 1] {
            let err = decode::<UserRecord>("user t/u", &bytes[..cut]).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("user t/u") && text.contains("field `"),
                "{text}"
            );
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        let err = decode::<UserRecord>("user t/u", &trailing).unwrap_err();
        assert!(err.to_string().contains("left over"), "{err}");
        let err = decode::<UserRecord>("user t/u", &[7, 0]).unwrap_err();
        assert!(
            matches!(
                &err,
                StoreError::Corrupt {
                    source: Corruption::Format(7),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(matches!(
            decode::<ResourceRecord>("r", &[]),
            Err(StoreError::Corrupt {
                source: Corruption::Empty,
                ..
            })
        ));
        // History entries stay JSON, and JSON errors are still JSON errors.
        assert!(decode::<HistoryEntry>("h", &[BINARY_V1]).is_err());
    }

    /// A history row spliced from the event's published JSON is the entry serialized.
    #[test]
    fn history_rows_from_published_events_are_the_entries_json() {
        use crate::core::events::{Event, EventBody, GrantReason};
        let event = Event {
            event_id: "e-\"1\"".into(),
            body: EventBody::RewardGranted {
                reward_type: "points".into(),
                amount: Some(dec("12.50")),
                code: None,
                reason: GrantReason::Milestone {
                    challenge_id: 1,
                    milestone_id: "m-1-1".into(),
                },
                balance: dec("1000000000000000000000000000.5"),
            },
            tenant: "acme".into(),
            user_id: "ü/1".into(),
            occurred_at: at(5),
            source: SourceRef::new("actions", 0, 9),
            catalog_version: 3,
        };
        for seq in [0, 7, u64::MAX] {
            let entry = HistoryEntry::new(seq, event.clone());
            let ahead = AheadRow::history(seq, &serde_json::to_vec(&event).unwrap());
            let row = ahead.payload();
            assert_eq!(row, serde_json::to_vec(&entry).unwrap());
            assert_eq!(decode::<HistoryEntry>("h", row).unwrap(), entry);
            let header = [0xA5; ROW_HEADROOM];
            assert_eq!(ahead.clone().behind(header), [&header, row].concat());
            let appended = AheadRow::appended(row.len(), |mut buf| {
                buf.extend_from_slice(row);
                buf
            });
            assert_eq!(appended, ahead);
        }
    }

    /// A user row serialized ahead is the stored row, behind the headroom.
    #[test]
    fn user_rows_ahead_are_the_stored_rows_behind_the_headroom() {
        let record = UserRecord {
            applied: litemap::LiteMap::from_iter([("actions:3".into(), 7)]),
            history_len: 2,
            ..UserRecord::default()
        };
        let mut scratch = b"left from an earlier row".to_vec();
        let ahead = AheadRow::user(&record, &mut scratch);
        assert_eq!(ahead.0.capacity(), ROW_HEADROOM + user_row(&record).len());
        assert_eq!(ahead.payload(), user_row(&record));
        assert_eq!(AheadRow::copied(&user_row(&record)), ahead);
        let header = [7; ROW_HEADROOM];
        assert_eq!(
            ahead.behind(header),
            [&header[..], &user_row(&record)].concat()
        );
    }

    /// The issue's "hot state" figure: a user with 10 active challenges and a full window of
    /// action ids fits in 1 KiB (docs/benchmarks.md has the measured size).
    #[test]
    fn hot_state_of_ten_challenges_fits_a_kib() {
        let mut state = UserState::default();
        for id in 1..=10 {
            let c = state.challenges.entry(id).or_default();
            c.trigger_mut(1, id).accumulated = dec("250");
        }
        state.balances.insert("points".into(), dec("1200"));
        state.recent_action_ids = (0..RECENT_ACTION_IDS)
            .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
            .collect();
        let record = UserRecord {
            state,
            applied: litemap::LiteMap::from_iter([("actions:3".into(), 1_234_567)]),
            history_len: 40,
            history_chain: crate::core::records::HistoryChain {
                head: Some(crate::core::records::HistoryPos::new(
                    "actions:3",
                    1_234_567,
                    1,
                )),
                block: Some(crate::core::records::HistoryPos::new(
                    "actions:3",
                    1_234_001,
                    0,
                )),
            },
        };
        let row = user_row(&record);
        assert!(row.len() <= 1024, "{} bytes", row.len());
        assert_eq!(row, round_trip(&record));
        assert_eq!(read_user_row(&row).unwrap(), record);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode::<UserRecord>("u", &bytes);
            let _ = decode::<ResourceRecord>("r", &bytes);
            if !bytes.is_empty() {
                bytes[0] = BINARY_V1;
                let _ = decode::<UserRecord>("u", &bytes);
                let _ = decode::<ResourceRecord>("r", &bytes);
            }
        }

        /// Every prefix of a real row is an error, never a panic or a wrong record.
        #[test]
        fn truncated_rows_are_refused(cut in 0usize..2000) {
            let bytes = encode("row", &full_user()).unwrap();
            let cut = cut % bytes.len();
            proptest::prop_assert!(decode::<UserRecord>("u", &bytes[..cut]).is_err());
        }
    }

    #[test]
    fn pages_are_newest_first_and_end_cleanly() {
        assert_eq!(page_seqs(5, 1, 2), vec![4, 3]);
        assert_eq!(page_seqs(5, 2, 2), vec![2, 1]);
        assert_eq!(page_seqs(5, 3, 2), vec![0]);
        assert!(page_seqs(5, 4, 2).is_empty());
        assert_eq!(page_seqs(5, 0, 2), vec![4, 3]);
        assert!(page_seqs(0, 1, 10).is_empty());
        assert!(page_seqs(5, 1, 0).is_empty());
        assert!(page_seqs(10, u32::MAX, u32::MAX).is_empty());
    }

    #[test]
    fn unfenced_timestamps_increase() {
        let a = unfenced_timestamp();
        let b = unfenced_timestamp();
        assert!(b > a);
    }

    #[test]
    fn claimed_epochs_outrank_the_clock() {
        let epoch = next_epoch(None);
        assert!(super::super::write_timestamp(epoch, 0) > unfenced_timestamp());
        assert_eq!(next_epoch(Some(epoch + 10)), epoch + 11);
    }
}
