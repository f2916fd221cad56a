//! Shared helpers for the engine tests: the example catalog and a small driver.

use chrono::{DateTime, TimeZone, Utc};
use questline::core::catalog::Catalog;
use questline::core::engine::{Engine, Processed};
use questline::core::evaluator::{ClaimAmount, ClaimCommand};
use questline::core::events::{Event, EventBody};
use questline::core::mapping::Mapping;
use questline::core::model::SourceRef;
use serde_json::Value;
use std::sync::Arc;

pub use super::example_catalog;

/// A shipped mapping (`mappings/<name>.toml`).
pub fn mapping(name: &str) -> Mapping {
    let path = super::root().join("mappings").join(format!("{name}.toml"));
    questline::files::load_mapping(&path).expect("the shipped mapping is valid")
}

pub fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

/// Feeds records in order through one engine, numbering offsets like a partition.
pub struct Driver {
    pub engine: Engine,
    pub native: Mapping,
    offset: i64,
    pub now: DateTime<Utc>,
}

impl Driver {
    pub fn new() -> Self {
        Self::with(example_catalog())
    }

    pub fn with(catalog: Arc<Catalog>) -> Self {
        Driver {
            engine: Engine::new(catalog),
            native: Mapping::native(),
            offset: 0,
            now: at(25, 10),
        }
    }

    pub fn next_source(&mut self) -> SourceRef {
        self.offset += 1;
        SourceRef::new("test.actions", 0, self.offset)
    }

    pub fn send(&mut self, record: Value) -> Processed {
        let mapping = self.native.clone();
        self.send_with(&mapping, record)
    }

    pub fn send_with(&mut self, mapping: &Mapping, record: Value) -> Processed {
        let source = self.next_source();
        self.engine.process_record(
            &mapping.compile(),
            record.to_string().as_bytes(),
            &source,
            self.now,
        )
    }

    /// Sends a native action and returns its events.
    pub fn act(&mut self, user: &str, trigger: Value, value: Value) -> Vec<Event> {
        self.send(serde_json::json!({"userId": user, "triggerId": trigger, "value": value}))
            .events
    }

    pub fn claim(
        &mut self,
        user: &str,
        claim_id: &str,
        milestones: &[&str],
        items: &[(&str, i64)],
    ) -> Vec<Event> {
        let claim = ClaimCommand {
            claim_id: claim_id.into(),
            tenant: "default".into(),
            user_id: user.into(),
            milestone_ids: milestones.iter().map(|s| s.to_string()).collect(),
            items: items
                .iter()
                .map(|(t, a)| ClaimAmount {
                    reward_type: t.to_string(),
                    amount: (*a).into(),
                })
                .collect(),
        };
        let source = self.next_source();
        self.engine.process_claim(&claim, &source, self.now).events
    }
}

pub fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::kind).collect()
}

/// The events as JSON values, for field-level assertions in the contract's own names.
pub fn json(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

pub fn of_kind<'a>(events: &'a [Event], kind: &str) -> Vec<&'a EventBody> {
    events
        .iter()
        .filter(|e| e.kind() == kind)
        .map(|e| &e.body)
        .collect()
}
