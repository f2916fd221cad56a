//! The record of a dead letter of an input: what it carries besides the event, and why.
//!
//! A dead letter is keyed by the original record's key and carries the original's headers on,
//! so a tool that repairs and re-produces it (or routes it by a tracing or tenant header)
//! needs nothing but the dead letter. Beside them it carries questline's own headers
//! (`questline-*`: the event's id and type, the reason and its kind, the source coordinates)
//! and the same facts under the names Kafka Connect's dead-letter queues use
//! (`__connect.errors.topic`, `.partition`, `.offset`, `.exception.message`), so tooling
//! written for Connect's DLQs reads questline's too. An original header under one of those names is dropped: a dead letter
//! re-fed as input must not carry two reasons.

use super::log::{text_header, HeaderName, HeaderValue, Headers, InRecord, OutRecord};
use crate::core::decode::Rejection;
use crate::core::events::Event;

/// Kafka Connect's dead-letter header names (`errors.deadletterqueue.context.headers.enable`).
const CONNECT_PREFIX: &str = "__connect.errors.";

/// The dead-letter record of `record`, rejected for `rejection`, whose event is `event`, for
/// the dead-letter topic `topic`.
pub fn record(event: &Event, rejection: &Rejection, record: &InRecord, topic: &str) -> OutRecord {
    // The original key when it is text (a key is a user id in practice); otherwise the user,
    // if the record named one.
    let key = match record.key.as_deref().map(std::str::from_utf8) {
        Some(Ok(key)) => key.to_string(),
        _ => rejection.user_id.clone().unwrap_or_default(),
    };
    let source = &event.source;
    // Each written twice: questline's own header and Kafka Connect's.
    let (partition, offset) = (source.partition.to_string(), source.offset.to_string());
    let mut headers: Headers = record
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with("questline-") && !k.starts_with(CONNECT_PREFIX))
        .map(|(k, v)| (HeaderName::Owned(k.clone()), HeaderValue::from_slice(v)))
        .collect();
    headers.extend([
        text_header("questline-event-id", &event.event_id),
        text_header("questline-event-type", event.body.kind()),
        text_header("questline-reason", &rejection.reason),
        text_header("questline-reject-kind", rejection.kind.as_str()),
        text_header("questline-source-topic", source.topic),
        text_header("questline-source-partition", &partition),
        text_header("questline-source-offset", &offset),
        text_header("__connect.errors.topic", source.topic),
        text_header("__connect.errors.partition", &partition),
        text_header("__connect.errors.offset", &offset),
        text_header("__connect.errors.exception.message", &rejection.reason),
    ]);
    OutRecord {
        topic: topic.into(),
        key: key.into(),
        // An event of strings and numbers always serializes.
        payload: serde_json::to_vec(event).expect("events serialize"),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::decode::dead_letter;
    use crate::core::model::SourceRef;
    use crate::pipeline::log::RecordKey;

    fn input(key: Option<&[u8]>, headers: &[(&str, &[u8])]) -> InRecord {
        InRecord {
            topic: "actions".into(),
            partition: 2,
            offset: 17,
            key: key.map(RecordKey::from_slice),
            payload: b"not json".to_vec(),
            timestamp: "2026-01-01T00:00:00Z".parse().unwrap(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
        }
    }

    fn rejection(user: Option<&str>) -> Rejection {
        Rejection {
            reason: "record: not JSON".into(),
            field: None,
            error_code: None,
            user_id: user.map(str::to_string),
            tenant: "default".into(),
            kind: crate::core::reject::RejectKind::NotJson,
        }
    }

    fn letter(r: &InRecord, rejection: &Rejection) -> OutRecord {
        let source = SourceRef::new(r.topic, r.partition, r.offset);
        let event = dead_letter(rejection, &r.payload, &source, r.timestamp);
        record(&event, rejection, r, "dlq")
    }

    #[test]
    fn keeps_the_original_key_and_headers_and_adds_ours_and_connects() {
        let r = input(
            Some(b"user-7"),
            &[("traceparent", b"00-abc-01"), ("binary", &[0xff, 0x00])],
        );
        let out = letter(&r, &rejection(Some("someone-else")));
        assert_eq!(&*out.topic, "dlq");
        assert_eq!(&*out.key, "user-7");
        let names: Vec<&str> = out.headers.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(
            names,
            [
                "traceparent",
                "binary",
                "questline-event-id",
                "questline-event-type",
                "questline-reason",
                "questline-reject-kind",
                "questline-source-topic",
                "questline-source-partition",
                "questline-source-offset",
                "__connect.errors.topic",
                "__connect.errors.partition",
                "__connect.errors.offset",
                "__connect.errors.exception.message",
            ]
        );
        assert_eq!(*out.headers[1].1, [0xff, 0x00], "bytes kept as they are");
        assert_eq!(out.header("__connect.errors.topic"), Some("actions"));
        assert_eq!(out.header("__connect.errors.partition"), Some("2"));
        assert_eq!(out.header("__connect.errors.offset"), Some("17"));
        assert_eq!(
            out.header("__connect.errors.exception.message"),
            Some("record: not JSON")
        );
        assert_eq!(out.header("questline-event-type"), Some("dead_letter"));
        assert_eq!(out.header("questline-reject-kind"), Some("not_json"));
    }

    #[test]
    fn a_refed_dead_letter_does_not_carry_two_reasons() {
        let r = input(
            None,
            &[
                ("questline-reason", b"old"),
                ("__connect.errors.offset", b"3"),
                ("keep", b"me"),
            ],
        );
        let out = letter(&r, &rejection(None));
        let reasons = out
            .headers
            .iter()
            .filter(|(k, _)| k == "questline-reason" || k == "__connect.errors.offset")
            .count();
        assert_eq!(reasons, 2, "one of each, ours");
        assert_eq!(out.header("questline-reason"), Some("record: not JSON"));
        assert_eq!(out.header("keep"), Some("me"));
    }

    #[test]
    fn without_a_text_key_the_user_if_any_keys_the_dead_letter() {
        let binary = input(Some(&[0xc3, 0x28]), &[]);
        assert_eq!(&*letter(&binary, &rejection(Some("u1"))).key, "u1");
        let keyless = input(None, &[]);
        assert_eq!(&*letter(&keyless, &rejection(None)).key, "");
    }
}
