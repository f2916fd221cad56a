//! An event's JSON: the envelope and the bodies of the hot path (`progress.updated`,
//! `milestone.achieved`, `reward.granted` and `reward.rejected`) written here, other bodies
//! by serde.
//!
//! Why: every action yields a `progress.updated`, and serializing events was a tenth of the
//! record step (`cargo bench --bench record_step`): serde_json escapes each of the ~20 member
//! names as it writes them, writes the flattened body through a map serializer, and turns
//! each of the four decimals into a `serde_json::Value` first. Here the names are constants
//! written as they are, integer decimals are printed directly, and only the strings a user or
//! catalog supplies go through serde_json's escaping. The bytes are serde's exactly (a
//! property test compares them on arbitrary events): they are the contract downstream
//! consumers read, the outbox re-publishes and the history serves.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::decimal;
use super::events::{Event, EventBody, GrantReason, PrizeInfo};
use super::timestamp;

/// Appends `event`'s JSON to `out`: byte for byte what `serde_json::to_writer` writes.
pub fn write(event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"eventId\":");
    string(out, &event.event_id);
    out.push(b',');
    match &event.body {
        EventBody::ProgressUpdated {
            challenge_id,
            group_id,
            trigger_id,
            trigger_frequency,
            accumulated,
            action_left,
            progress,
        } => {
            out.extend_from_slice(b"\"type\":\"progress.updated\"");
            for (name, id) in [
                (&b",\"challengeId\":"[..], challenge_id),
                (b",\"groupId\":", group_id),
                (b",\"triggerId\":", trigger_id),
            ] {
                out.extend_from_slice(name);
                integer(out, *id);
            }
            for (name, value) in [
                (&b",\"triggerFrequency\":"[..], trigger_frequency),
                (b",\"accumulated\":", accumulated),
                (b",\"actionLeft\":", action_left),
                (b",\"progress\":", progress),
            ] {
                out.extend_from_slice(name);
                number(out, *value);
            }
        }
        EventBody::MilestoneAchieved {
            challenge_id,
            milestone_id,
            prizes,
        } => {
            out.extend_from_slice(b"\"type\":\"milestone.achieved\",");
            milestone_members(out, *challenge_id, milestone_id);
            out.extend_from_slice(b",\"prizes\":[");
            for (i, prize) in prizes.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                prize_object(out, prize);
            }
            out.push(b']');
        }
        EventBody::RewardGranted {
            reward_type,
            amount,
            code,
            reason,
            balance,
        } => {
            out.extend_from_slice(b"\"type\":\"reward.granted\",\"rewardType\":");
            string(out, reward_type);
            optional(out, b",\"amount\":", *amount, number);
            optional(out, b",\"code\":", code.as_deref(), string);
            out.extend_from_slice(b",\"reason\":");
            match reason {
                GrantReason::Milestone {
                    challenge_id,
                    milestone_id,
                } => {
                    out.extend_from_slice(b"{\"kind\":\"milestone\",");
                    milestone_members(out, *challenge_id, milestone_id);
                    out.push(b'}');
                }
                other => serialized(out, other),
            }
            out.extend_from_slice(b",\"balance\":");
            number(out, *balance);
        }
        EventBody::RewardRejected {
            reward_type,
            reason,
            challenge_id,
            milestone_id,
            operation,
        } => {
            out.extend_from_slice(b"\"type\":\"reward.rejected\",\"rewardType\":");
            string(out, reward_type);
            out.extend_from_slice(b",\"reason\":");
            string(out, reason.as_str());
            optional(out, b",\"challengeId\":", *challenge_id, integer);
            optional(out, b",\"milestoneId\":", milestone_id.as_deref(), string);
            optional(out, b",\"operation\":", operation.as_deref(), serialized);
        }
        body => members(body, out),
    }
    out.extend_from_slice(b",\"tenant\":");
    string(out, &event.tenant);
    out.extend_from_slice(b",\"userId\":");
    string(out, &event.user_id);
    out.extend_from_slice(b",\"occurredAt\":");
    time(out, &event.occurred_at);
    out.extend_from_slice(b",\"source\":{\"topic\":");
    string(out, &event.source.topic);
    out.extend_from_slice(b",\"partition\":");
    integer(out, event.source.partition);
    out.extend_from_slice(b",\"offset\":");
    integer(out, event.source.offset);
    out.extend_from_slice(b"},\"catalogVersion\":");
    integer(out, event.catalog_version);
    out.push(b'}');
}

/// A member skipped when absent (`skip_serializing_if = "Option::is_none"`): `name` is the
/// comma and the member's name.
fn optional<T>(out: &mut Vec<u8>, name: &[u8], value: Option<T>, write: fn(&mut Vec<u8>, T)) {
    if let Some(value) = value {
        out.extend_from_slice(name);
        write(out, value);
    }
}

/// The members that name a milestone: `"challengeId":…,"milestoneId":…`.
fn milestone_members(out: &mut Vec<u8>, challenge_id: u32, milestone_id: &str) {
    out.extend_from_slice(b"\"challengeId\":");
    integer(out, challenge_id);
    out.extend_from_slice(b",\"milestoneId\":");
    string(out, milestone_id);
}

/// A prize of `milestone.achieved`, as serde writes [`PrizeInfo`].
fn prize_object(out: &mut Vec<u8>, prize: &PrizeInfo) {
    out.extend_from_slice(b"{\"value\":");
    match &prize.value {
        Some(value) => string(out, value),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"expirationDate\":");
    match &prize.expiration_date {
        Some(at) => time(out, at),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"description\":");
    string(out, &prize.description);
    out.extend_from_slice(b",\"rewardType\":");
    string(out, &prize.reward_type);
    out.push(b'}');
}

/// An instant as [`timestamp::rfc3339`] writes it. The common form is digits and ASCII
/// punctuation: nothing to escape, so it is copied between its quotes as it is.
fn time(out: &mut Vec<u8>, at: &DateTime<Utc>) {
    match timestamp::write(at, &mut [0; 30]) {
        Some(text) => {
            out.push(b'"');
            out.extend_from_slice(text);
            out.push(b'"');
        }
        None => timestamp::rfc3339(at, &mut serde_json::Serializer::new(&mut *out))
            .expect("a timestamp serializes"),
    }
}

/// `value` as serde_json writes it: for the rarer parts of a body (a reason of a rule or an
/// operation, an operation's reference).
fn serialized(out: &mut Vec<u8>, value: &impl serde::Serialize) {
    serde_json::to_writer(out, value).expect("event parts serialize");
}

/// `body`'s members, as the event's flattened body: serde's object for it without its braces
/// (it always has one member at least, its `type`).
fn members(body: &EventBody, out: &mut Vec<u8>) {
    let start = out.len();
    serde_json::to_writer(&mut *out, body).expect("event bodies serialize");
    out.pop();
    out.remove(start);
}

/// A JSON string, escaped as serde_json escapes it. serde_json escapes only control
/// characters, `"` and `\`; ids, names and topics hardly ever hold one, so a text without
/// any is copied whole between its quotes. Through serde_json each string cost a
/// serializer's set-up and a scan and copy byte by byte: 5 % of the record step's
/// instructions (callgrind, the record step bench), with the four strings of every event.
fn string(out: &mut Vec<u8>, text: &str) {
    // Without an early exit, so that the scan is vectorized (16 bytes at a time).
    let escapes = text.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if escapes {
        serde_json::to_writer(out, text).expect("a string serializes");
        return;
    }
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

fn integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// A decimal as [`decimal::to_json`] writes it: integers (the common case: frequencies,
/// sums of whole values) printed here, everything else through that function.
fn number(out: &mut Vec<u8>, value: Decimal) {
    // At scale 0 a decimal is normalized already, but for the sign of a zero, which
    // `json_integer` does not see (its mantissa is 0 either way).
    let normalized = if value.scale() == 0 {
        value
    } else {
        value.normalize()
    };
    if let Some(i) = decimal::json_integer(normalized) {
        integer(out, i);
        return;
    }
    serde_json::to_writer(out, &decimal::to_json(value)).expect("JSON values serialize");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::catalog::Priority;
    use crate::core::events::{OperationRef, RejectReason};
    use crate::core::model::SourceRef;
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;

    fn decimal_strategy() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            (0i64..1_000_000).prop_map(Decimal::from),
            (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s)),
            (any::<i128>(), 0u32..=28).prop_map(|(m, s)| {
                Decimal::try_from_i128_with_scale(m % (1i128 << 95), s).unwrap_or(Decimal::MAX)
            }),
            Just(Decimal::MAX),
            Just(Decimal::MIN),
            Just(Decimal::from_parts(0, 0, 0, true, 3)),
        ]
    }

    fn event(
        body: EventBody,
        names: (String, String, String, String),
        at: i64,
        nanos: u32,
    ) -> Event {
        let (event_id, tenant, user_id, topic) = names;
        Event {
            event_id: event_id.into(),
            body,
            tenant: tenant.into(),
            user_id: user_id.into(),
            occurred_at: DateTime::<Utc>::from_timestamp(at, nanos).unwrap_or_default(),
            source: SourceRef::new(topic, 3, at),
            catalog_version: nanos.into(),
        }
    }

    /// Any text: quotes, backslashes, control characters and non-ASCII included.
    fn text() -> &'static str {
        "(?s).{0,12}"
    }

    fn names() -> impl Strategy<Value = (String, String, String, String)> {
        (text(), text(), text(), text())
    }

    proptest! {
        #[test]
        fn progress_is_written_as_serde_writes_it(
            ids in (any::<u32>(), any::<u32>(), any::<u32>()),
            numbers in (decimal_strategy(), decimal_strategy(), decimal_strategy(), decimal_strategy()),
            names in names(),
            at in prop_oneof![-62_135_596_800i64..253_402_300_799, -(1i64 << 40)..(1i64 << 40)],
            nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000, Just(1_500_000_000)],
        ) {
            let body = EventBody::ProgressUpdated {
                challenge_id: ids.0,
                group_id: ids.1,
                trigger_id: ids.2,
                trigger_frequency: numbers.0,
                accumulated: numbers.1,
                action_left: numbers.2,
                progress: numbers.3,
            };
            let event = event(body, names, at, nanos);
            let mut ours = Vec::new();
            write(&event, &mut ours);
            prop_assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&event).unwrap()
            );
        }
    }

    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        (
            prop_oneof![
                -62_135_596_800i64..253_402_300_799,
                -(1i64 << 40)..(1i64 << 40)
            ],
            prop_oneof![Just(0u32), 0u32..1_000_000_000, Just(1_500_000_000)],
        )
            .prop_map(|(at, nanos)| DateTime::from_timestamp(at, nanos).unwrap_or_default())
    }

    fn grant_reason() -> impl Strategy<Value = GrantReason> {
        let text = self::text();
        prop_oneof![
            (any::<u32>(), text).prop_map(|(challenge_id, milestone_id)| {
                GrantReason::Milestone {
                    challenge_id,
                    milestone_id,
                }
            }),
            (text, text, proptest::option::of(any::<u32>())).prop_map(|(event, rule, at)| {
                GrantReason::Rule {
                    event,
                    rule,
                    priority: at.map_or(Priority::Last, Priority::At),
                }
            }),
            operation().prop_map(|operation| operation.reason()),
        ]
    }

    fn operation() -> impl Strategy<Value = OperationRef> {
        let text = self::text();
        (text, text, decimal_strategy(), text, text).prop_map(
            |(code, building_block, amount, description, grant_id)| OperationRef {
                code,
                building_block,
                amount,
                description,
                grant_id,
            },
        )
    }

    fn reject_reason() -> impl Strategy<Value = RejectReason> {
        prop_oneof![
            Just(RejectReason::Depleted),
            Just(RejectReason::Capped),
            Just(RejectReason::Inactive),
            Just(RejectReason::Limit),
            Just(RejectReason::BalanceLimit),
            Just(RejectReason::UnclaimedLimit),
        ]
    }

    fn other_bodies() -> impl Strategy<Value = EventBody> {
        let text = self::text();
        let opt_text = || proptest::option::of(text);
        prop_oneof![
            (
                text,
                proptest::option::of(decimal_strategy()),
                opt_text(),
                grant_reason(),
                decimal_strategy()
            )
                .prop_map(|(reward_type, amount, code, reason, balance)| {
                    EventBody::RewardGranted {
                        reward_type,
                        amount,
                        code,
                        reason,
                        balance,
                    }
                }),
            (
                text,
                reject_reason(),
                proptest::option::of(any::<u32>()),
                opt_text(),
                proptest::option::of(operation())
            )
                .prop_map(
                    |(reward_type, reason, challenge_id, milestone_id, operation)| {
                        EventBody::RewardRejected {
                            reward_type,
                            reason,
                            challenge_id,
                            milestone_id,
                            operation: operation.map(Box::new),
                        }
                    }
                ),
            (
                any::<u32>(),
                text,
                proptest::collection::vec(
                    (opt_text(), proptest::option::of(instant()), text, text),
                    0..3
                )
            )
                .prop_map(|(challenge_id, milestone_id, prizes)| {
                    EventBody::MilestoneAchieved {
                        challenge_id,
                        milestone_id,
                        prizes: prizes
                            .into_iter()
                            .map(
                                |(value, expiration_date, description, reward_type)| PrizeInfo {
                                    value,
                                    expiration_date,
                                    description,
                                    reward_type,
                                },
                            )
                            .collect(),
                    }
                }),
            (text, proptest::collection::vec(text, 0..3)).prop_map(|(claim_id, reasons)| {
                EventBody::ClaimFailed {
                    claim_id,
                    items: Vec::new(),
                    reason: reasons.concat(),
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn other_events_are_written_as_serde_writes_them(
            body in other_bodies(),
            names in names(),
            at in -62_135_596_800i64..253_402_300_799,
            nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000],
        ) {
            let event = event(body, names, at, nanos);
            let mut ours = Vec::new();
            write(&event, &mut ours);
            prop_assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&event).unwrap()
            );
        }
    }
}
