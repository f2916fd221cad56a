//! The binary layouts of the state rows: a user's record and an inventory resource's.
//!
//! These rows are rewritten with every batch that touches their owner and read on every cache
//! miss, so they are written in the compact binary form of `store::wire` (postcard's
//! encoding) rather than JSON: about half the bytes, no field names, numbers as varints,
//! decimals as mantissa and scale (exact). Each field is written in the order listed here and
//! read back in the same order; a record's encoder destructures it completely, so a field
//! added to a core type does not compile until this layout says how it is stored.
//!
//! Changing a layout means a new version byte and keeping the decoder of the old one: stored
//! rows outlive the code that wrote them. Resource rows are `codec::BINARY_V1`; user rows are
//! `codec::BINARY_V2`, the first version with the history chain at the end, and read in both.

use litemap::LiteMap;
use smol_str::SmolStr;
use std::collections::{BTreeMap, VecDeque};

use super::wire::{err, Problem, Reader, WireError, Writer};
use crate::core::events::{ClaimItem, OperationRef, PrizeInfo, RejectReason};
use crate::core::inventory::{Answered, Outcome, ResourceState};
use crate::core::model::SourceRef;
use crate::core::records::{HistoryChain, HistoryPos, ResourceRecord, UserRecord, Watermark};
use crate::core::rules::programmatic::{AmountOutcome, FallbackReason};
use crate::core::rules::{EventRuleState, RuleStates};
use crate::core::state::{
    ChallengeState, ChallengeStates, ChallengeStatus, Milestone, Pending, PendingKind,
    RecentActionIds, RowCached, TriggerProgress, TriggerProgresses, UserState,
};

// ---- user record -------------------------------------------------------------------------

pub fn write_user(w: &mut Writer, record: &UserRecord) {
    let UserRecord {
        state,
        applied,
        history_len,
        history_chain,
    } = record;
    // The history length first: the history query needs only it.
    w.u64(*history_len);
    write_watermark(w, applied);
    let UserState {
        challenges,
        balances,
        milestones,
        claimed_challenges,
        recent_action_ids,
        pending,
        rules,
        disabled,
    } = state;
    w.len(challenges.len());
    for (id, challenge) in challenges {
        w.u32(*id);
        write_challenge(w, challenge);
    }
    // Balances, milestones and pending requests are kept encoded between writes (see
    // `RowCached`): each is copied as one block unless it changed.
    kept(w, balances, |w, balances| {
        w.len(balances.len());
        for (reward_type, balance) in balances {
            w.str(reward_type);
            w.decimal(*balance);
        }
    });
    kept(w, milestones, |w, milestones| {
        w.len(milestones.len());
        for m in milestones {
            write_milestone(w, m);
        }
    });
    w.len(claimed_challenges.len());
    for id in claimed_challenges {
        w.u32(*id);
    }
    // Digests are uniformly random: 8 fixed bytes each, never a longer varint.
    w.len(recent_action_ids.len());
    for d in recent_action_ids.digests() {
        w.buf.extend_from_slice(&d.to_le_bytes());
    }
    kept(w, pending, |w, pending| {
        w.len(pending.len());
        for (id, p) in pending {
            w.str(id);
            write_pending(w, p);
        }
    });
    write_rules(w, rules);
    w.bool(*disabled);
    // Added in the second version of the layout (`codec::BINARY_V2`), so last.
    write_chain(w, history_chain);
}

fn write_chain(w: &mut Writer, chain: &HistoryChain) {
    let HistoryChain { head, block } = chain;
    write_opt_pos(w, head.as_ref());
    write_opt_pos(w, block.as_ref());
}

fn read_chain(r: &mut Reader<'_>) -> Result<HistoryChain, WireError> {
    Ok(HistoryChain {
        head: read_opt_pos(r, "history_chain.head")?,
        block: read_opt_pos(r, "history_chain.block")?,
    })
}

/// A history position, or none: a tag byte, then the input's name, the offset and the index.
pub fn write_opt_pos(w: &mut Writer, pos: Option<&HistoryPos>) {
    match pos {
        None => w.u8(0),
        Some(HistoryPos {
            input,
            offset,
            index,
        }) => {
            w.u8(1);
            w.str(input);
            w.i64(*offset);
            w.u32(*index);
        }
    }
}

/// Reads what [`write_opt_pos`] wrote.
pub fn read_opt_pos(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<Option<HistoryPos>, WireError> {
    match r.u8(field)? {
        0 => Ok(None),
        1 => Ok(Some(HistoryPos {
            input: r.str_ref(field)?.into(),
            offset: r.i64(field)?,
            index: r.u32(field)?,
        })),
        other => Err(err(field, Problem::Tag(other))),
    }
}

/// Writes `part`'s kept row bytes; or encodes it with `encode`, straight into the row, and
/// keeps a copy of what it wrote.
fn kept<T, S>(w: &mut Writer, part: &RowCached<T, S>, encode: impl FnOnce(&mut Writer, &T)) {
    if let Some(bytes) = part.kept_bytes() {
        w.buf.extend_from_slice(bytes);
        return;
    }
    let start = w.buf.len();
    encode(w, part);
    part.keep(&w.buf[start..]);
}

/// Reads a user row of the layout's first version (no history chain) or its second.
pub fn read_user(r: &mut Reader<'_>, with_chain: bool) -> Result<UserRecord, WireError> {
    let history_len = r.u64("history_len")?;
    let applied = read_watermark(r)?;
    // The length is checked against the bytes left (3 at least per state), so a corrupt row
    // reserves at most ~35 times its own size (a state and its index entry take ~104 bytes).
    let n = r.len("challenges", 3)?;
    let mut challenges = ChallengeStates::with_capacity(n);
    for _ in 0..n {
        let id = r.u32("challenges.id")?;
        challenges.insert(id, read_challenge(r)?);
    }
    let mut balances = LiteMap::new();
    for _ in 0..r.len("balances", 3)? {
        let reward_type = r.str("balances.reward_type")?;
        balances.insert(reward_type, r.decimal("balances.balance")?);
    }
    let mut milestones = Vec::new();
    for _ in 0..r.len("milestones", 4)? {
        milestones.push(read_milestone(r)?);
    }
    let n = r.len("claimed_challenges", 1)?;
    let mut claimed_challenges = Vec::with_capacity(n);
    for _ in 0..n {
        claimed_challenges.push(r.u32("claimed_challenges")?);
    }
    let n = r.len("recent_action_ids", 8)?;
    let mut digests = VecDeque::with_capacity(n);
    for _ in 0..n {
        let bytes = r.take("recent_action_ids", 8)?;
        digests.push_back(u64::from_le_bytes(bytes.try_into().expect("took 8 bytes")));
    }
    let mut pending = LiteMap::new();
    for _ in 0..r.len("pending", 4)? {
        let id = r.str("pending.id")?;
        pending.insert(id, read_pending(r)?);
    }
    let rules = read_rules(r)?;
    let disabled = r.bool("disabled")?;
    let history_chain = if with_chain {
        read_chain(r)?
    } else {
        HistoryChain::default()
    };
    Ok(UserRecord {
        state: UserState {
            challenges,
            balances: balances.into(),
            milestones: milestones.into(),
            claimed_challenges,
            recent_action_ids: RecentActionIds::from_digests(digests),
            pending: pending.into(),
            rules,
            disabled,
        },
        applied,
        history_len,
        history_chain,
    })
}

fn write_watermark(w: &mut Writer, applied: &Watermark) {
    w.len(applied.len());
    for (partition, offset) in applied {
        w.str(partition);
        w.i64(*offset);
    }
}

fn read_watermark(r: &mut Reader<'_>) -> Result<Watermark, WireError> {
    let mut applied = Watermark::new();
    for _ in 0..r.len("applied", 2)? {
        // Straight into the watermark's inline string: no heap string made and dropped.
        let partition = r.str_ref("applied.partition")?;
        applied.insert(partition.into(), r.i64("applied.offset")?);
    }
    Ok(applied)
}

fn write_challenge(w: &mut Writer, c: &ChallengeState) {
    let ChallengeState {
        triggers,
        wins,
        period_wins,
        period,
        status,
    } = c;
    w.len(triggers.len());
    for t in triggers {
        let TriggerProgress {
            group,
            trigger,
            accumulated,
            met,
        } = t;
        w.u32(*group);
        w.u32(*trigger);
        w.decimal(*accumulated);
        w.bool(*met);
    }
    w.u32(*wins);
    w.u32(*period_wins);
    w.opt_str(period.as_deref());
    w.u8(match status {
        ChallengeStatus::Active => 0,
        ChallengeStatus::AwaitingSlot => 1,
        ChallengeStatus::Finished => 2,
        ChallengeStatus::Closed => 3,
    });
}

fn read_challenge(r: &mut Reader<'_>) -> Result<ChallengeState, WireError> {
    let n = r.len("challenges.triggers", 5)?;
    let mut triggers = TriggerProgresses::with_capacity(n);
    for _ in 0..n {
        triggers.push(TriggerProgress {
            group: r.u32("triggers.group")?,
            trigger: r.u32("triggers.trigger")?,
            accumulated: r.decimal("triggers.accumulated")?,
            met: r.bool("triggers.met")?,
        });
    }
    Ok(ChallengeState {
        triggers,
        wins: r.u32("challenges.wins")?,
        period_wins: r.u32("challenges.period_wins")?,
        period: r.opt_str("challenges.period")?.map(SmolStr::from),
        status: match r.u8("challenges.status")? {
            0 => ChallengeStatus::Active,
            1 => ChallengeStatus::AwaitingSlot,
            2 => ChallengeStatus::Finished,
            3 => ChallengeStatus::Closed,
            other => return Err(err("challenges.status", Problem::Tag(other))),
        },
    })
}

fn write_milestone(w: &mut Writer, m: &Milestone) {
    let Milestone {
        milestone_id,
        challenge_id,
        achieved_at,
        prizes,
    } = m;
    w.str(milestone_id);
    w.u32(*challenge_id);
    w.time(*achieved_at);
    w.len(prizes.len());
    for p in prizes {
        let PrizeInfo {
            value,
            expiration_date,
            description,
            reward_type,
        } = p;
        w.opt_str(value.as_deref());
        w.opt_time(*expiration_date);
        w.str(description);
        w.str(reward_type);
    }
}

fn read_milestone(r: &mut Reader<'_>) -> Result<Milestone, WireError> {
    let milestone_id = r.str("milestones.milestone_id")?;
    let challenge_id = r.u32("milestones.challenge_id")?;
    let achieved_at = r.time("milestones.achieved_at")?;
    let n = r.len("milestones.prizes", 4)?;
    let mut prizes = Vec::with_capacity(n);
    for _ in 0..n {
        prizes.push(PrizeInfo {
            value: r.opt_str("prizes.value")?,
            expiration_date: r.opt_time("prizes.expiration_date")?,
            description: r.str("prizes.description")?,
            reward_type: r.str("prizes.reward_type")?,
        });
    }
    Ok(Milestone {
        milestone_id,
        challenge_id,
        achieved_at,
        prizes,
    })
}

fn write_source(w: &mut Writer, s: &SourceRef) {
    let SourceRef {
        topic,
        partition,
        offset,
    } = s;
    w.str(topic);
    w.i32(*partition);
    w.i64(*offset);
}

fn read_source(r: &mut Reader<'_>) -> Result<SourceRef, WireError> {
    Ok(SourceRef {
        topic: r.str("source.topic")?.into(),
        partition: r.i32("source.partition")?,
        offset: r.i64("source.offset")?,
    })
}

fn write_pending(w: &mut Writer, p: &Pending) {
    let Pending {
        source,
        occurred_at,
        what,
    } = p;
    write_source(w, source);
    w.time(*occurred_at);
    match what {
        PendingKind::WinnerSlot { challenge_id } => {
            w.u8(0);
            w.u32(*challenge_id);
        }
        PendingKind::Prize {
            challenge_id,
            milestone_id,
            reward_type,
            amount,
        } => {
            w.u8(1);
            w.u32(*challenge_id);
            w.str(milestone_id);
            w.str(reward_type);
            w.decimal(*amount);
        }
        PendingKind::Claim {
            claim_id,
            items,
            milestones,
        } => {
            w.u8(2);
            w.str(claim_id);
            w.len(items.len());
            for item in items {
                write_claim_item(w, item);
            }
            w.len(milestones.len());
            for m in milestones {
                write_milestone(w, m);
            }
        }
        PendingKind::Operation { grant, reward_type } => {
            w.u8(4);
            let OperationRef {
                code,
                building_block,
                amount,
                description,
                grant_id,
            } = grant;
            w.str(code);
            w.str(building_block);
            w.decimal(*amount);
            w.str(description);
            w.str(grant_id);
            w.str(reward_type);
        }
        PendingKind::Amount { event, answer } => {
            w.u8(3);
            w.str(event);
            match answer {
                None => w.u8(0),
                Some(outcome) => {
                    w.u8(1);
                    write_amount_outcome(w, outcome);
                }
            }
        }
    }
}

fn read_pending(r: &mut Reader<'_>) -> Result<Pending, WireError> {
    let source = read_source(r)?;
    let occurred_at = r.time("pending.occurred_at")?;
    let what = match r.u8("pending.what")? {
        0 => PendingKind::WinnerSlot {
            challenge_id: r.u32("pending.challenge_id")?,
        },
        1 => PendingKind::Prize {
            challenge_id: r.u32("pending.challenge_id")?,
            milestone_id: r.str("pending.milestone_id")?,
            reward_type: r.str("pending.reward_type")?,
            amount: r.decimal("pending.amount")?,
        },
        2 => {
            let claim_id = r.str("pending.claim_id")?;
            let n = r.len("pending.items", 4)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_claim_item(r)?);
            }
            let n = r.len("pending.milestones", 4)?;
            let mut milestones = Vec::with_capacity(n);
            for _ in 0..n {
                milestones.push(read_milestone(r)?);
            }
            PendingKind::Claim {
                claim_id,
                items,
                milestones,
            }
        }
        3 => PendingKind::Amount {
            event: r.str("pending.event")?,
            answer: match r.u8("pending.answer")? {
                0 => None,
                1 => Some(read_amount_outcome(r)?),
                other => return Err(err("pending.answer", Problem::Tag(other))),
            },
        },
        4 => PendingKind::Operation {
            grant: OperationRef {
                code: r.str("pending.grant.code")?,
                building_block: r.str("pending.grant.building_block")?,
                amount: r.decimal("pending.grant.amount")?,
                description: r.str("pending.grant.description")?,
                grant_id: r.str("pending.grant.grant_id")?,
            },
            reward_type: r.str("pending.reward_type")?,
        },
        other => return Err(err("pending.what", Problem::Tag(other))),
    };
    Ok(Pending {
        source,
        occurred_at,
        what,
    })
}

fn write_claim_item(w: &mut Writer, item: &ClaimItem) {
    let ClaimItem {
        reward_type,
        amount,
        milestone_id,
        inventory_id,
        code,
    } = item;
    w.str(reward_type);
    w.decimal(*amount);
    w.opt_str(milestone_id.as_deref());
    w.opt_str(inventory_id.as_deref());
    w.opt_str(code.as_deref());
}

fn read_claim_item(r: &mut Reader<'_>) -> Result<ClaimItem, WireError> {
    Ok(ClaimItem {
        reward_type: r.str("items.reward_type")?,
        amount: r.decimal("items.amount")?,
        milestone_id: r.opt_str("items.milestone_id")?,
        inventory_id: r.opt_str("items.inventory_id")?,
        code: r.opt_str("items.code")?,
    })
}

fn write_amount_outcome(w: &mut Writer, outcome: &AmountOutcome) {
    match outcome {
        AmountOutcome::Answered { points } => {
            w.u8(0);
            w.decimal(*points);
        }
        AmountOutcome::Fallback { points, reason } => {
            w.u8(1);
            w.decimal(*points);
            match reason {
                FallbackReason::Timeout => w.u8(0),
                FallbackReason::Unreachable { detail } => {
                    w.u8(1);
                    w.str(detail);
                }
                FallbackReason::Status { status } => {
                    w.u8(2);
                    w.u32(u32::from(*status));
                }
                FallbackReason::BadAnswer { detail } => {
                    w.u8(3);
                    w.str(detail);
                }
                FallbackReason::CircuitOpen => w.u8(4),
                FallbackReason::NotProgrammatic => w.u8(5),
                FallbackReason::NotCalled => w.u8(6),
            }
        }
    }
}

fn read_amount_outcome(r: &mut Reader<'_>) -> Result<AmountOutcome, WireError> {
    match r.u8("answer")? {
        0 => Ok(AmountOutcome::Answered {
            points: r.decimal("answer.points")?,
        }),
        1 => {
            let points = r.decimal("answer.points")?;
            let reason = match r.u8("answer.reason")? {
                0 => FallbackReason::Timeout,
                1 => FallbackReason::Unreachable {
                    detail: r.str("answer.reason.detail")?,
                },
                2 => FallbackReason::Status {
                    status: r.u16("answer.reason.status")?,
                },
                3 => FallbackReason::BadAnswer {
                    detail: r.str("answer.reason.detail")?,
                },
                4 => FallbackReason::CircuitOpen,
                5 => FallbackReason::NotProgrammatic,
                6 => FallbackReason::NotCalled,
                other => return Err(err("answer.reason", Problem::Tag(other))),
            };
            Ok(AmountOutcome::Fallback { points, reason })
        }
        other => Err(err("answer", Problem::Tag(other))),
    }
}

fn write_rules(w: &mut Writer, rules: &RuleStates) {
    w.len(rules.len());
    for (event, state) in rules {
        let EventRuleState {
            last,
            day,
            today,
            run,
            count,
            done,
        } = state;
        w.str(event);
        w.opt_time(*last);
        w.i32(*day);
        w.u32(*today);
        w.u32(*run);
        w.u32(*count);
        w.bool(*done);
    }
}

fn read_rules(r: &mut Reader<'_>) -> Result<RuleStates, WireError> {
    let mut rules = RuleStates::new();
    for _ in 0..r.len("rules", 7)? {
        let event = r.str("rules.event")?;
        let state = EventRuleState {
            last: r.opt_time("rules.last")?,
            day: r.i32("rules.day")?,
            today: r.u32("rules.today")?,
            run: r.u32("rules.run")?,
            count: r.u32("rules.count")?,
            done: r.bool("rules.done")?,
        };
        rules.insert(event, state);
    }
    Ok(rules)
}

// ---- resource record ---------------------------------------------------------------------

pub fn write_resource(w: &mut Writer, record: &ResourceRecord) {
    let ResourceRecord { state, applied } = record;
    write_watermark(w, applied);
    let ResourceState {
        granted,
        claimed,
        winners,
        answered,
    } = state;
    for counts in [granted, claimed] {
        w.len(counts.len());
        for (inventory, n) in counts {
            w.str(inventory);
            w.u64(*n);
        }
    }
    w.u64(*winners);
    w.len(answered.len());
    for (request_id, outcome) in answered.iter() {
        w.str(request_id);
        match outcome {
            Outcome::Granted { inventory_id, code } => {
                w.u8(0);
                w.opt_str(inventory_id.as_deref());
                w.opt_str(code.as_deref());
            }
            Outcome::Rejected { reason } => {
                w.u8(1);
                w.u8(match reason {
                    RejectReason::Depleted => 0,
                    RejectReason::Capped => 1,
                    RejectReason::Inactive => 2,
                    RejectReason::Limit => 3,
                    RejectReason::BalanceLimit => 4,
                    RejectReason::UnclaimedLimit => 5,
                });
            }
        }
    }
}

pub fn read_resource(r: &mut Reader<'_>) -> Result<ResourceRecord, WireError> {
    let applied = read_watermark(r)?;
    let mut counts = [BTreeMap::new(), BTreeMap::new()];
    for (counts, field) in counts.iter_mut().zip(["granted", "claimed"]) {
        for _ in 0..r.len(field, 2)? {
            let inventory = r.str(field)?;
            counts.insert(inventory, r.u64(field)?);
        }
    }
    let [granted, claimed] = counts;
    let winners = r.u64("winners")?;
    let n = r.len("answered", 3)?;
    let mut answered = Answered::default();
    for _ in 0..n {
        let request_id = r.str("answered.request_id")?;
        let outcome = match r.u8("answered.outcome")? {
            0 => Outcome::Granted {
                inventory_id: r.opt_str("answered.inventory_id")?,
                code: r.opt_str("answered.code")?,
            },
            1 => Outcome::Rejected {
                reason: match r.u8("answered.reason")? {
                    0 => RejectReason::Depleted,
                    1 => RejectReason::Capped,
                    2 => RejectReason::Inactive,
                    3 => RejectReason::Limit,
                    4 => RejectReason::BalanceLimit,
                    5 => RejectReason::UnclaimedLimit,
                    other => return Err(err("answered.reason", Problem::Tag(other))),
                },
            },
            other => return Err(err("answered.outcome", Problem::Tag(other))),
        };
        answered.push(request_id, outcome);
    }
    Ok(ResourceRecord {
        state: ResourceState {
            granted,
            claimed,
            winners,
            answered,
        },
        applied,
    })
}
