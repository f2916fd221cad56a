//! Programmatic amounts: the pure half of asking a tenant's endpoint what an occurrence pays.
//!
//! Like the inventory stage, the call is a stage of its own so the record step stays pure: the
//! step emits an [`AmountRequest`] (a record on an internal topic, its id deterministic:
//! `ids::request_id(cause, index)`); an HTTP caller performs the [`HttpCall`] this module
//! builds for it and records the answer, or the event's fallback, as an [`AmountResponse`];
//! the step then [`settle`]s the response into a payment. Because the amount is recorded,
//! crash recovery and replays reproduce it without calling the endpoint again.
//!
//! The endpoint's answer has one fixed shape: a 2xx status and a JSON object with `points`, a
//! number or a string holding one, from 0 to 10^15 with at most 8 decimal places
//! (`{"points": 120}`); other fields are ignored. Anything else (another status, another shape, a timeout, an unreachable host)
//! pays the event's `fallback_points`, and the response says why.

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;

use super::{NotPaid, Payment, RuleOutcome};
use crate::core::catalog::{EventRules, HttpMethod, Priority, ProgrammaticDef};
use crate::core::{decimal, limits};

/// The rule name a payment of an endpoint's answer cites.
pub const ANSWERED_RULE: &str = "programmatic";
/// The rule name a payment of an event's fallback cites.
pub const FALLBACK_RULE: &str = "programmatic-fallback";

/// Asks for the amount of one rewarded occurrence of a programmatic event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmountRequest {
    /// Deterministic (from the occurrence's source), so a redelivered request is recognised.
    pub request_id: String,
    pub tenant: String,
    pub user_id: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
    pub occurred_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub streak_completed: bool,
}

/// The recorded answer to an [`AmountRequest`]; it echoes what settling needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AmountResponse {
    pub request_id: String,
    pub tenant: String,
    pub user_id: String,
    pub event: String,
    pub occurred_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub streak_completed: bool,
    pub outcome: AmountOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AmountOutcome {
    /// The endpoint answered in shape.
    Answered {
        #[serde(with = "crate::core::decimal::lenient")]
        points: Decimal,
    },
    /// The event's fallback, and why the endpoint's answer was not used.
    Fallback {
        #[serde(with = "crate::core::decimal::lenient")]
        points: Decimal,
        reason: FallbackReason,
    },
}

/// Why a call's answer was not used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FallbackReason {
    /// No answer within the event's `timeout` (after the caller's retries).
    Timeout,
    /// The endpoint could not be reached.
    Unreachable { detail: String },
    /// A status other than 2xx.
    Status { status: u16 },
    /// A 2xx answer not of the documented shape.
    BadAnswer { detail: String },
    /// The caller's circuit breaker is open: the endpoint failed too often recently.
    CircuitOpen,
    /// The catalog no longer has the event as programmatic.
    NotProgrammatic,
    /// The driver does not call endpoints (`replay` without recorded amounts, in-process
    /// tests): the fallback stands in for the answer.
    NotCalled,
}

impl AmountRequest {
    /// The response carrying `outcome` for this request.
    pub fn respond(&self, outcome: AmountOutcome) -> AmountResponse {
        AmountResponse {
            request_id: self.request_id.clone(),
            tenant: self.tenant.clone(),
            user_id: self.user_id.clone(),
            event: self.event.clone(),
            occurred_at: self.occurred_at,
            streak_completed: self.streak_completed,
            outcome,
        }
    }
}

/// One HTTP call, fully described: the caller sends it as it is.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCall {
    pub method: HttpMethod,
    pub url: String,
    /// The catalog's headers, then `Content-Type` and `Idempotency-Key` (the request id, so
    /// the endpoint can recognise a retry) unless the catalog sets them.
    pub headers: Vec<(String, String)>,
    /// JSON: the catalog's `body` fields and `requestId`, `userId`, `event`, `params`,
    /// `occurredAt`.
    pub body: Vec<u8>,
    pub timeout: Duration,
}

/// The call that asks `def`'s endpoint about `request`.
pub fn call(def: &ProgrammaticDef, request: &AmountRequest) -> HttpCall {
    let mut body = def.body.clone();
    body.insert("requestId".into(), Value::from(request.request_id.as_str()));
    body.insert("userId".into(), Value::from(request.user_id.as_str()));
    body.insert("event".into(), Value::from(request.event.as_str()));
    body.insert("params".into(), Value::Object(request.params.clone()));
    body.insert(
        "occurredAt".into(),
        Value::from(
            request
                .occurred_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        ),
    );
    let mut headers: Vec<(String, String)> = def
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (name, value) in [
        ("Content-Type", "application/json"),
        ("Idempotency-Key", request.request_id.as_str()),
    ] {
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    HttpCall {
        method: def.method,
        url: def.url.clone(),
        headers,
        // A map of JSON values always serializes.
        body: serde_json::to_vec(&Value::Object(body)).unwrap_or_default(),
        timeout: def.timeout.0,
    }
}

/// Reads an endpoint's answer: the amount, or why it is not usable.
pub fn read_answer(status: u16, body: &[u8]) -> Result<Decimal, FallbackReason> {
    if !(200..300).contains(&status) {
        return Err(FallbackReason::Status { status });
    }
    let bad = |detail: &str| FallbackReason::BadAnswer {
        detail: detail.to_string(),
    };
    let answer: Value = serde_json::from_slice(body).map_err(|_| bad("the body is not JSON"))?;
    let points = answer
        .get("points")
        .ok_or_else(|| bad("no \"points\" in the answer"))?;
    let points = decimal::from_json(points)
        .map_err(|_| bad("\"points\" is not a number or a string holding one"))?;
    if !(points.is_zero() || limits::is_valid_amount(points)) {
        return Err(bad(
            "\"points\" is out of range (0 to 10^15, at most 8 decimal places)",
        ));
    }
    Ok(points.normalize())
}

/// The outcome to record for a call's result: the answer, or `def`'s fallback.
pub fn outcome(def: &ProgrammaticDef, result: Result<Decimal, FallbackReason>) -> AmountOutcome {
    match result {
        Ok(points) => AmountOutcome::Answered { points },
        Err(reason) => AmountOutcome::Fallback {
            points: def.fallback_points,
            reason,
        },
    }
}

/// What a recorded response pays. The amount is the recorded one even if the catalog changed
/// since, so a replay pays what the worker paid.
pub fn settle<'c>(event: &'c EventRules, response: &AmountResponse) -> RuleOutcome<'c> {
    let (rule, points) = match &response.outcome {
        AmountOutcome::Answered { points } => (ANSWERED_RULE, *points),
        AmountOutcome::Fallback { points, .. } => (FALLBACK_RULE, *points),
    };
    if !limits::is_valid_amount(points) {
        return RuleOutcome::NotPaid(NotPaid::ZeroPoints {
            rule,
            priority: Priority::Last,
        });
    }
    RuleOutcome::Pay(Payment {
        event: &event.name,
        reward_type: &event.reward_type,
        rule,
        priority: Priority::Last,
        amount: points,
        streak_completed: response.streak_completed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def() -> ProgrammaticDef {
        ProgrammaticDef {
            url: "https://tenant.example/points".into(),
            method: HttpMethod::Post,
            headers: [("X-Api-Key".to_string(), "k".to_string())].into(),
            body: json!({"campaign": "spring"}).as_object().unwrap().clone(),
            timeout: crate::core::catalog::Timeout(Duration::from_millis(1500)),
            fallback_points: Decimal::from(5),
        }
    }

    fn request() -> AmountRequest {
        AmountRequest {
            request_id: "kwegg.events:0:7#r0".into(),
            tenant: "kwegg".into(),
            user_id: "12".into(),
            event: "ORDER_PLACED".into(),
            params: json!({"total": 250}).as_object().unwrap().clone(),
            occurred_at: "2026-03-01T10:00:00.5Z".parse().unwrap(),
            streak_completed: false,
        }
    }

    #[test]
    fn the_call_carries_the_occurrence_and_the_catalogs_fixed_parts() {
        let call = call(&def(), &request());
        assert_eq!(call.method, HttpMethod::Post);
        assert_eq!(call.timeout, Duration::from_millis(1500));
        assert_eq!(
            call.headers,
            vec![
                ("X-Api-Key".to_string(), "k".to_string()),
                ("Content-Type".to_string(), "application/json".to_string()),
                (
                    "Idempotency-Key".to_string(),
                    "kwegg.events:0:7#r0".to_string()
                ),
            ]
        );
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(
            body,
            json!({
                "campaign": "spring",
                "requestId": "kwegg.events:0:7#r0",
                "userId": "12",
                "event": "ORDER_PLACED",
                "params": {"total": 250},
                "occurredAt": "2026-03-01T10:00:00.500Z",
            })
        );
    }

    #[test]
    fn answers_of_the_documented_shape_are_read_and_others_fall_back() {
        assert_eq!(
            read_answer(200, br#"{"points": 120}"#),
            Ok(Decimal::from(120))
        );
        assert_eq!(
            read_answer(201, br#"{"points": "2.50", "x": 1}"#),
            Ok("2.5".parse().unwrap())
        );
        assert_eq!(
            read_answer(503, b"{}"),
            Err(FallbackReason::Status { status: 503 })
        );
        for bad in [
            &b"not json"[..],
            br#"{"amount": 3}"#,
            br#"{"points": "lots"}"#,
            br#"{"points": -1}"#,
            br#"{"points": 1e300}"#,
            br#"{"points": 1000000000000001}"#,
            br#"{"points": 0.000000001}"#,
            br#"[1]"#,
        ] {
            assert!(
                matches!(read_answer(200, bad), Err(FallbackReason::BadAnswer { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            outcome(&def(), Err(FallbackReason::Timeout)),
            AmountOutcome::Fallback {
                points: Decimal::from(5),
                reason: FallbackReason::Timeout
            }
        );
    }

    #[test]
    fn records_round_trip_as_json() {
        let request = request();
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(
            serde_json::from_str::<AmountRequest>(&text).unwrap(),
            request
        );
        let response = request.respond(AmountOutcome::Fallback {
            points: Decimal::from(5),
            reason: FallbackReason::Status { status: 500 },
        });
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(
            json["outcome"],
            json!({"outcome": "fallback", "points": 5, "reason": {"kind": "status", "status": 500}})
        );
        assert_eq!(
            serde_json::from_value::<AmountResponse>(json).unwrap(),
            response
        );
    }
}
