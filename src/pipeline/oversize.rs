//! An output the broker refuses for its size becomes a small dead letter of its own.
//!
//! Why: such a record can never be published as it is, and a batch's offsets are committed
//! only once every one of its records is acknowledged, so one too-large output would stop its
//! partition for good — across restarts too, since the partition's outbox publishes it again.
//! It is replaced by a `dead_letter` event whose reason is `output too large: N bytes` and
//! which says what the output was (topic, key, type, event id, size, the first
//! [`PREFIX_BYTES`] of its value) and, in the envelope's `source`, which consumed record
//! caused it. The same refused record always gives the same dead letter, with the same event
//! id, so a redo after a crash publishes a duplicate consumers recognise.
//!
//! When an output is refused, and what happens then, is decided in
//! [`super::protocol::after_too_large`]; this module only builds the replacement.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::log::{text_header, Headers, OutRecord};
use crate::core::events::{encode_prefix, Event, EventBody, RefusedOutput};
use crate::core::ids;
use crate::core::model::SourceRef;
use crate::trace_context::{TRACEPARENT, TRACESTATE};

/// How much of the refused output's value the dead letter keeps: enough to recognise it,
/// small enough that the dead letter fits under any sensible limit.
pub const PREFIX_BYTES: usize = 1024;

/// The most of the refused output's key the dead letter repeats (as its own key and in
/// `output.key`): a key is a user id or a resource name, far shorter than this.
const KEY_BYTES: usize = 1024;

/// The dead-letter metric's reason label for these dead letters.
pub const REASON_CLASS: &str = "output_too_large";

/// The reason a dead letter of a refused output gives.
pub fn reason(bytes: usize) -> String {
    format!("output too large: {bytes} bytes")
}

/// The envelope fields of a refused output, read back from its value (questline's own JSON);
/// internal inventory records carry a tenant and a user but no time.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    user_id: String,
    occurred_at: Option<DateTime<Utc>>,
    #[serde(default)]
    catalog_version: u64,
}

/// The dead-letter record that stands for `refused`, which `cause` (a consumed record)
/// produced, for the dead-letter topic `topic`. `now` is its `occurredAt` only when the
/// refused record carries no time of its own (an internal inventory record).
pub fn dead_letter(
    refused: &OutRecord,
    cause: &SourceRef,
    topic: &str,
    now: DateTime<Utc>,
) -> OutRecord {
    let bytes = refused.size();
    let kind = refused.header("questline-event-type").map(str::to_string);
    let refused_id = refused.header("questline-event-id").map(str::to_string);
    // Named after the refused event's id, or else after everything that makes the record.
    let name = match &refused_id {
        Some(id) => format!("{id}#too-large"),
        None => {
            let digest = Sha256::new()
                .chain_update(refused.topic.as_bytes())
                .chain_update([0])
                .chain_update(refused.key.as_bytes())
                .chain_update([0])
                .chain_update(&refused.payload)
                .finalize();
            let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
            format!("{}#too-large#{hex}", ids::cause_of(cause))
        }
    };
    let envelope: Envelope = serde_json::from_slice(&refused.payload).unwrap_or_default();
    let key = prefix(&refused.key, KEY_BYTES);
    let (original, encoding, truncated_from) = encode_prefix(&refused.payload, PREFIX_BYTES);
    let reason = reason(bytes);
    let event = Event {
        event_id: ids::event_id(&name, 0),
        body: EventBody::DeadLetter {
            reason: reason.clone(),
            error_code: None,
            field: None,
            original,
            encoding,
            truncated_from,
            output: Some(Box::new(RefusedOutput {
                topic: refused.topic.to_string(),
                key: key.clone(),
                kind,
                event_id: refused_id,
                bytes,
            })),
        },
        tenant: envelope.tenant.into(),
        user_id: envelope.user_id.into(),
        occurred_at: envelope.occurred_at.unwrap_or(now),
        source: cause.clone(),
        catalog_version: envelope.catalog_version,
    };
    let mut headers: Headers = vec![
        text_header("questline-event-id", &event.event_id),
        text_header("questline-event-type", "dead_letter"),
        text_header("questline-reason", reason),
        text_header("questline-source-topic", cause.topic),
        text_header("questline-source-partition", cause.partition.to_string()),
        text_header("questline-source-offset", cause.offset.to_string()),
    ];
    // It stands for the refused record in its trace too.
    headers.extend(
        refused
            .headers
            .iter()
            .filter(|(k, _)| k == TRACEPARENT || k == TRACESTATE)
            .cloned(),
    );
    OutRecord {
        topic: topic.into(),
        key: key.into(),
        // An event of strings and numbers always serializes.
        payload: serde_json::to_vec(&event).expect("events serialize"),
        headers,
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn prefix(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn refused(payload: Vec<u8>) -> OutRecord {
        OutRecord {
            topic: "questline.rewards".into(),
            key: "u1".into(),
            payload,
            headers: vec![
                text_header("questline-event-id", "e-1"),
                text_header("questline-event-type", "milestone.achieved"),
            ],
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-01-02T03:04:05Z".parse().unwrap()
    }

    #[test]
    fn names_the_refused_event_and_its_cause_and_keeps_only_a_prefix() {
        let big = format!(
            r#"{{"eventId":"e-1","type":"milestone.achieved","tenant":"acme","userId":"u1","occurredAt":"2026-11-25T10:00:00Z","pad":"{}"}}"#,
            "é".repeat(600_000)
        );
        let record = refused(big.into_bytes());
        let cause = SourceRef::new("actions", 3, 42);
        let letter = dead_letter(&record, &cause, "questline.dead-letter", now());
        assert_eq!(&*letter.topic, "questline.dead-letter");
        assert_eq!(&*letter.key, "u1");
        assert!(letter.size() < 4 * PREFIX_BYTES, "{} bytes", letter.size());
        let v: Value = serde_json::from_slice(&letter.payload).unwrap();
        let bytes = record.size();
        assert_eq!(v["type"], "dead_letter");
        assert_eq!(v["reason"], format!("output too large: {bytes} bytes"));
        assert_eq!(v["tenant"], "acme");
        assert_eq!(v["userId"], "u1");
        assert_eq!(v["occurredAt"], "2026-11-25T10:00:00Z");
        assert_eq!(
            v["source"],
            serde_json::json!({"topic": "actions", "partition": 3, "offset": 42})
        );
        assert_eq!(
            v["output"],
            serde_json::json!({"topic": "questline.rewards", "key": "u1",
                "type": "milestone.achieved", "eventId": "e-1", "bytes": bytes})
        );
        assert_eq!(v["encoding"], "utf8");
        assert_eq!(v["truncatedFrom"], record.payload.len());
        let original = v["original"].as_str().unwrap();
        assert!(original.len() <= PREFIX_BYTES && original.len() > PREFIX_BYTES - 4);
        assert!(record.payload.starts_with(original.as_bytes()));
        assert_eq!(letter.header("questline-event-id"), v["eventId"].as_str());
        assert_eq!(letter.header("questline-reason"), v["reason"].as_str());
        assert_eq!(letter.header("questline-source-offset"), Some("42"));
    }

    #[test]
    fn the_same_refused_record_gives_the_same_dead_letter() {
        let cause = SourceRef::new("actions", 0, 7);
        let a = dead_letter(&refused(b"{}".to_vec()), &cause, "dl", now());
        let b = dead_letter(&refused(b"{}".to_vec()), &cause, "dl", now());
        assert_eq!(a, b);
        // Another event of the same cause: another id.
        let mut other = refused(b"{}".to_vec());
        other.headers[0].1 = b"e-2".to_vec().into();
        assert_ne!(
            dead_letter(&other, &cause, "dl", now()).headers[0],
            a.headers[0]
        );
    }

    #[test]
    fn an_internal_record_without_event_headers_or_time_still_gets_a_stable_id() {
        let request = OutRecord {
            topic: "questline.inventory-requests".into(),
            key: "acme/reward/tshirt".into(),
            payload: br#"{"requestId":"r","tenant":"acme","userId":"u9","kind":"winner_slot"}"#
                .to_vec(),
            headers: Default::default(),
        };
        let cause = SourceRef::new("actions", 1, 9);
        let a = dead_letter(&request, &cause, "dl", now());
        let later = now() + chrono::Duration::hours(1);
        let b = dead_letter(&request, &cause, "dl", later);
        let (va, vb): (Value, Value) = (
            serde_json::from_slice(&a.payload).unwrap(),
            serde_json::from_slice(&b.payload).unwrap(),
        );
        assert_eq!(va["eventId"], vb["eventId"]);
        assert_eq!(va["userId"], "u9");
        assert_eq!(va["occurredAt"], "2026-01-02T03:04:05Z");
        assert!(va["output"].get("type").is_none() && va["output"].get("eventId").is_none());
        // Not JSON at all: empty tenant and user, still a dead letter.
        let garbage = OutRecord {
            payload: vec![0xff; 5000],
            ..request
        };
        let g: Value =
            serde_json::from_slice(&dead_letter(&garbage, &cause, "dl", now()).payload).unwrap();
        assert_eq!(g["userId"], "");
        assert_eq!(g["encoding"], "base64");
        assert_eq!(g["truncatedFrom"], 5000);
    }

    #[test]
    fn the_dead_letter_carries_the_refused_records_trace_context() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut record = refused(b"{}".to_vec());
        record.headers.push(text_header(TRACEPARENT, tp));
        record.headers.push(text_header(TRACESTATE, "a=1"));
        let letter = dead_letter(&record, &SourceRef::new("t", 0, 0), "dl", now());
        assert_eq!(letter.header(TRACEPARENT), Some(tp));
        assert_eq!(letter.header(TRACESTATE), Some("a=1"));
        let untraced = dead_letter(
            &refused(b"{}".to_vec()),
            &SourceRef::new("t", 0, 0),
            "dl",
            now(),
        );
        assert_eq!(untraced.header(TRACEPARENT), None);
    }

    #[test]
    fn a_huge_key_is_cut_on_a_character_boundary() {
        let mut record = refused(b"{}".to_vec());
        record.key = "ü".repeat(KEY_BYTES).into();
        let letter = dead_letter(&record, &SourceRef::new("t", 0, 0), "dl", now());
        assert!(letter.key.len() <= KEY_BYTES && letter.key.len() >= KEY_BYTES - 1);
        assert!(record.key.starts_with(&*letter.key));
    }
}
