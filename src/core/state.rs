//! Per-user state: the only thing the user-stage evaluator reads and writes.
//!
//! Kept compact on purpose (target: a user's hot state in ≤ 1 KiB for 10 active
//! challenges): only challenges the user has touched are present, triggers are small
//! vectors, and history lives in the store, not here. The small maps (balances, pending
//! requests, rule states, and the watermark beside the state) are flat sorted vectors
//! ([`LiteMap`]): a user has a handful of entries in each, and a B-tree allocated a whole
//! node, room for 11, for its first. They iterate, serialize and compare in key order as the
//! B-trees did, so stored rows and events are unchanged.

use chrono::{DateTime, Utc};
use litemap::LiteMap;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use smol_str::SmolStr;
use std::collections::VecDeque;

pub use super::challenge_states::ChallengeStates;
use super::events::{ClaimItem, PrizeInfo};
use super::model::SourceRef;
pub use super::row_cached::RowCached;
use super::rules::programmatic::AmountOutcome;
use super::rules::RuleStates;

/// How many recent action ids a user remembers for deduplication. Redelivery of the same
/// Kafka record is caught by the offset watermark whatever this is; this window catches a
/// producer that sends the same `actionId` twice as two records.
pub const RECENT_ACTION_IDS: usize = 64;

/// A user's unclaimed milestones, with the earliest expiry of their prizes kept beside them
/// ([`UserState::next_prize_expiry`]).
pub type Milestones = RowCached<Vec<Milestone>, Option<DateTime<Utc>>>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    #[serde(default, skip_serializing_if = "ChallengeStates::is_empty")]
    pub challenges: ChallengeStates,
    /// Balances, unclaimed milestones and pending requests keep their row encoding between
    /// writes ([`RowCached`]): they change far less often than the user is written.
    #[serde(default, skip_serializing_if = "RowCached::is_empty")]
    pub balances: RowCached<LiteMap<String, Decimal>>,
    /// Milestones awarded and not yet claimed (claimed ones move to history).
    #[serde(default, skip_serializing_if = "RowCached::is_empty")]
    pub milestones: Milestones,
    /// Challenges with a claimed milestone; limited ones then leave the progress list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claimed_challenges: Vec<u32>,
    #[serde(default, skip_serializing_if = "RecentActionIds::is_empty")]
    pub recent_action_ids: RecentActionIds,
    /// Inventory and amount requests sent and not yet settled, by request id.
    #[serde(default, skip_serializing_if = "RowCached::is_empty")]
    pub pending: RowCached<LiteMap<String, Pending>>,
    /// What the caps and streaks of earning-rule events remember, by event name.
    #[serde(default, skip_serializing_if = "LiteMap::is_empty")]
    pub rules: RuleStates,
    /// Disabled (or blocked) by an administrator ([`UserStatusChange`]): the user's actions
    /// are refused as dead letters until the user is enabled again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

/// An administrator disables or enables a user (KickApps' `/rest/user/disable|enable/{as}`).
/// A command through the log, so the user's single writer applies it in order with the
/// user's actions; it changes nothing but [`UserState::disabled`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserStatusChange {
    #[serde(default = "super::model::default_tenant")]
    pub tenant: String,
    pub user_id: String,
    pub disabled: bool,
}

/// How many triggers' progress a challenge's state holds without allocating.
pub const INLINE_TRIGGERS: usize = 2;

/// A challenge's trigger progress: inline up to [`INLINE_TRIGGERS`].
pub type TriggerProgresses = SmallVec<[TriggerProgress; INLINE_TRIGGERS]>;

/// A user's progress on one challenge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChallengeState {
    /// One entry per trigger the user has progressed on, in the challenge's order. Inline up
    /// to [`INLINE_TRIGGERS`]: starting a challenge was an allocation (and its progress a
    /// pointer away from the map's entry) for every challenge a user touches. Serialized as
    /// the sequence a `Vec` was.
    #[serde(default, skip_serializing_if = "SmallVec::is_empty")]
    pub triggers: TriggerProgresses,
    /// Milestones achieved on this challenge, all time.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wins: u32,
    /// Wins in the current cap period (`period` names it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub period_wins: u32,
    /// Inline (`SmolStr`: every period name fits its 23 bytes): serializing a user's row
    /// reads each challenge's period, and a boxed `str` was a cold line away from the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<SmolStr>,
    #[serde(default, skip_serializing_if = "ChallengeStatus::is_active")]
    pub status: ChallengeStatus,
}

/// Default values are left out of the stored JSON (and read back as defaults): a user row is
/// rewritten with every batch that touches the user, and most challenges in it are active,
/// unwon and have unmet triggers, so the defaults were half of each challenge's bytes.
fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeStatus {
    /// Accepting progress.
    #[default]
    Active,
    /// Completed; waiting for the inventory stage to grant a winner slot (limited challenge).
    AwaitingSlot,
    /// Achieved and not repeatable.
    Finished,
    /// The global winners cap was reached before this user won.
    Closed,
}

impl ChallengeStatus {
    fn is_active(&self) -> bool {
        *self == ChallengeStatus::Active
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerProgress {
    pub group: u32,
    pub trigger: u32,
    /// Sum triggers: the accumulated value. Match triggers: the last matching value.
    pub accumulated: Decimal,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub met: bool,
}

/// A milestone the user was awarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Milestone {
    pub milestone_id: String,
    pub challenge_id: u32,
    pub achieved_at: DateTime<Utc>,
    pub prizes: Vec<PrizeInfo>,
}

/// An inventory request in flight, and what to do with its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// The action or claim that caused the request; events from the answer cite it.
    pub source: SourceRef,
    /// Its event time: a milestone awarded on the answer is dated by the action, not the answer.
    pub occurred_at: DateTime<Utc>,
    pub what: PendingKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "snake_case")]
pub enum PendingKind {
    /// A winner slot for a limited challenge.
    WinnerSlot { challenge_id: u32 },
    /// A prize from an inventory.
    Prize {
        challenge_id: u32,
        milestone_id: String,
        reward_type: String,
        amount: Decimal,
    },
    /// A claim of an inventory-backed reward type; the balance is already debited and the
    /// claimed milestones taken out, both restored if the inventory refuses.
    Claim {
        claim_id: String,
        items: Vec<ClaimItem>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        milestones: Vec<Milestone>,
    },
    /// A service's grant of a limited reward type (`POST /int/reward`), waiting for the
    /// inventory stage's answer.
    Operation {
        grant: super::events::OperationRef,
        reward_type: String,
    },
    /// An occurrence of a programmatic event waiting for its amount. `answer`: the outcome
    /// the amount stage decided and sent (the endpoint's answer or the fallback), kept until
    /// the response settles, so a redelivered or repeated request is answered the same way
    /// instead of calling the endpoint again.
    Amount {
        event: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer: Option<AmountOutcome>,
    },
}

impl UserState {
    /// Hints the parts of the state an action reads first: its challenges and its remembered
    /// action ids. The worker calls it for a record's user a few records ahead.
    pub fn prefetch_hot(&self) {
        self.challenges.prefetch();
        self.recent_action_ids.prefetch();
    }

    /// Starts loading the kept row encodings of the parts an action rarely changes (balances,
    /// unclaimed milestones, pending requests) when they are on the heap: the row written
    /// after the user's last action of a batch copies them, and each is a cold allocation
    /// the evaluation does not touch.
    pub fn prefetch_kept_parts(&self) {
        self.balances.prefetch_kept();
        self.milestones.prefetch_kept();
        self.pending.prefetch_kept();
    }

    /// When the first of the unclaimed milestones' prizes expires (`None`: none of them
    /// expires). Every action asks (expired prizes are taken back first), and between changes
    /// of the milestones the answer comes from the state itself, without touching the
    /// milestones' memory: scanning them was 5.7 % of the record step's profile samples.
    pub fn next_prize_expiry(&self) -> Option<DateTime<Utc>> {
        *self.milestones.summary(|milestones| {
            milestones
                .iter()
                .flat_map(|m| &m.prizes)
                .filter_map(|p| p.expiration_date)
                .min()
        })
    }

    /// Remembers an action id; returns false when it was already applied.
    pub fn remember_action(&mut self, action_id: &str) -> bool {
        self.recent_action_ids.remember(action_id)
    }

    pub fn balance(&self, reward_type: &str) -> Decimal {
        self.balances.get(reward_type).copied().unwrap_or_default()
    }

    /// Adds `amount` to a balance and returns the new balance, or changes nothing and returns
    /// None when the sum would pass [`super::limits::MAX_BALANCE`] (the caller rejects the
    /// grant with `balance_limit`).
    pub fn credit(&mut self, reward_type: &str, amount: Decimal) -> Option<Decimal> {
        let balance = self
            .balance(reward_type)
            .checked_add(amount)
            .filter(|b| *b <= super::limits::MAX_BALANCE)?;
        // The reward type's name is copied only for a balance the user does not have yet.
        match self.balances.get_mut(reward_type) {
            Some(held) => *held = balance,
            None => {
                self.balances.insert(reward_type.to_string(), balance);
            }
        }
        Some(balance)
    }

    pub fn has_achieved(&self, challenge: u32) -> bool {
        self.challenges.get(&challenge).is_some_and(|c| c.wins > 0)
    }
}

impl ChallengeState {
    pub fn trigger(&self, group: u32, trigger: u32) -> Option<&TriggerProgress> {
        self.triggers
            .iter()
            .find(|t| t.group == group && t.trigger == trigger)
    }

    pub fn trigger_mut(&mut self, group: u32, trigger: u32) -> &mut TriggerProgress {
        let i = match self
            .triggers
            .iter()
            .position(|t| t.group == group && t.trigger == trigger)
        {
            Some(i) => i,
            None => {
                self.triggers.push(TriggerProgress {
                    group,
                    trigger,
                    accumulated: Decimal::ZERO,
                    met: false,
                });
                self.triggers.len() - 1
            }
        };
        &mut self.triggers[i]
    }
}

/// The last [`RECENT_ACTION_IDS`] action ids of a user, kept as 64-bit digests.
///
/// Why digests: the ring is in every user record, written with every batch that touches the
/// user. 64 UUID action ids as JSON strings are ~2.5 KB, more than the rest of a typical
/// user's state; as 8-byte digests packed into one base64 string they are 684 bytes, and
/// comparing them needs no string allocation. The digest is the first 8 bytes of SHA-256,
/// stable across builds and platforms. Two different ids of one user share a digest with
/// probability about 2^-64 per pair, i.e. a false "duplicate" is expected once in ~10^17
/// actions of a single user: far below any other failure rate of the system.
///
/// Stored as `"<base64 of the big-endian digests>"`; rows written as a JSON array of id
/// strings (development builds before this format) are read and digested.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentActionIds(VecDeque<u64>);

impl RecentActionIds {
    /// Hints the remembered digests, which every action with an id scans.
    pub fn prefetch(&self) {
        let (front, back) = self.0.as_slices();
        crate::core::prefetch::slice(front, 8);
        crate::core::prefetch::slice(back, 8);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `action_id` is among the remembered ones.
    pub fn contains(&self, action_id: &str) -> bool {
        self.0.contains(&digest(action_id))
    }

    /// The remembered digests, oldest first: what a binary store row keeps.
    pub fn digests(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.0.iter().copied()
    }

    /// The ring holding `digests` (oldest first), as read back from a stored row; only the
    /// newest [`RECENT_ACTION_IDS`] are kept.
    pub fn from_digests(digests: impl IntoIterator<Item = u64>) -> Self {
        let mut ring: VecDeque<u64> = digests.into_iter().collect();
        let excess = ring.len().saturating_sub(RECENT_ACTION_IDS);
        ring.drain(..excess);
        RecentActionIds(ring)
    }

    /// Remembers `action_id`, forgetting the oldest beyond [`RECENT_ACTION_IDS`]; returns
    /// false when it was remembered already.
    pub fn remember(&mut self, action_id: &str) -> bool {
        let d = digest(action_id);
        if self.0.contains(&d) {
            return false;
        }
        if self.0.len() >= RECENT_ACTION_IDS {
            self.0.pop_front();
        }
        self.0.push_back(d);
        true
    }
}

impl<S: AsRef<str>> FromIterator<S> for RecentActionIds {
    fn from_iter<I: IntoIterator<Item = S>>(ids: I) -> Self {
        let mut recent = RecentActionIds::default();
        for id in ids {
            recent.remember(id.as_ref());
        }
        recent
    }
}

fn digest(action_id: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(action_id.as_bytes());
    u64::from_be_bytes(hash[..8].try_into().expect("SHA-256 has 32 bytes"))
}

impl Serialize for RecentActionIds {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        let bytes: Vec<u8> = self.0.iter().flat_map(|d| d.to_be_bytes()).collect();
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

impl<'de> Deserialize<'de> for RecentActionIds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use base64::Engine;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Packed(String),
            Ids(Vec<String>),
        }
        match Stored::deserialize(deserializer)? {
            Stored::Ids(ids) => Ok(ids.into_iter().collect()),
            Stored::Packed(text) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .map_err(|e| serde::de::Error::custom(format!("recent action ids: {e}")))?;
                if bytes.len() % 8 != 0 {
                    return Err(serde::de::Error::custom(format!(
                        "recent action ids: {} bytes is not a whole number of 8-byte digests",
                        bytes.len()
                    )));
                }
                let digests = bytes
                    .chunks_exact(8)
                    .map(|c| u64::from_be_bytes(c.try_into().expect("chunks of 8")))
                    .collect();
                Ok(RecentActionIds(digests))
            }
        }
    }
}

#[cfg(test)]
mod recent_action_ids {
    use super::*;

    #[test]
    fn remembers_the_last_64_and_refuses_repeats() {
        let mut recent = RecentActionIds::default();
        assert!(recent.remember("a-0"));
        assert!(!recent.remember("a-0"));
        for i in 1..RECENT_ACTION_IDS + 10 {
            assert!(recent.remember(&format!("a-{i}")));
        }
        assert_eq!(recent.len(), RECENT_ACTION_IDS);
        // The oldest were forgotten, the newest are remembered.
        assert!(!recent.contains("a-0") && !recent.contains("a-9"));
        assert!(
            recent.contains("a-10") && recent.contains(&format!("a-{}", RECENT_ACTION_IDS + 9))
        );
    }

    #[test]
    fn packs_into_one_string_and_reads_back() {
        let recent: RecentActionIds = (0..64).map(|i| format!("{i:036}")).collect();
        let json = serde_json::to_string(&recent).unwrap();
        assert_eq!(json.len(), 684 + 2, "{json}");
        let back: RecentActionIds = serde_json::from_str(&json).unwrap();
        assert_eq!(back, recent);
        // The digest is pinned: a change would make every stored ring forget its ids.
        assert_eq!(digest("a"), 0xca97_8112_ca1b_bdca);
    }

    #[test]
    fn reads_rows_written_as_id_strings() {
        let old: RecentActionIds = serde_json::from_str(r#"["x", "y"]"#).unwrap();
        assert!(old.contains("x") && old.contains("y") && !old.contains("z"));
    }

    #[test]
    fn bad_stored_values_are_errors_not_panics() {
        for bad in [r#""@@@""#, r#""AAAA""#, "17", r#"{"a":1}"#] {
            assert!(
                serde_json::from_str::<RecentActionIds>(bad).is_err(),
                "{bad}"
            );
        }
    }
}

#[cfg(test)]
mod stored_form {
    use super::*;

    /// Defaults are left out when written, and rows that spell them out still read the same.
    #[test]
    fn defaults_are_left_out_and_old_rows_read_the_same() {
        let mut challenge = ChallengeState::default();
        challenge.trigger_mut(1, 3).accumulated = Decimal::from(7);
        let state = UserState {
            challenges: [(12, challenge)].into_iter().collect(),
            ..Default::default()
        };
        let written = serde_json::to_string(&state).unwrap();
        assert_eq!(
            written,
            r#"{"challenges":{"12":{"triggers":[{"group":1,"trigger":3,"accumulated":"7"}]}}}"#
        );
        let old = r#"{"challenges":{"12":{"triggers":[{"group":1,"trigger":3,"accumulated":"7","met":false}],"wins":0,"period_wins":0,"status":"active"}}}"#;
        assert_eq!(serde_json::from_str::<UserState>(old).unwrap(), state);

        // Values other than the defaults are written.
        let mut won = state.clone();
        let c = won.challenges.get_mut(&12).unwrap();
        c.wins = 2;
        c.status = ChallengeStatus::Finished;
        c.triggers[0].met = true;
        let written = serde_json::to_string(&won).unwrap();
        assert!(
            written.contains(r#""met":true"#)
                && written.contains(r#""wins":2"#)
                && written.contains(r#""status":"finished""#),
            "{written}"
        );
        assert_eq!(serde_json::from_str::<UserState>(&written).unwrap(), won);
    }
}
