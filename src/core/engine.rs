//! An in-memory, single-threaded run of both stages, in input order.
//!
//! `replay`, `demo`'s offline mode and the tests use it to run the exact evaluator code the
//! worker runs, without a log or a store: the user stage's inventory requests are answered by
//! the inventory stage at once, and the answers fed back, first in first out. Because both
//! stages are deterministic, the set of events equals the worker's for the same input.

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;

use super::catalog::Catalog;
use super::decode::{self, Decoded};
use super::evaluator::{self, ClaimCommand, Context, UserInput};
use super::events::Event;
use super::ids;
use super::inventory::{self, Request, ResourceState};
use super::mapping::Mapping;
use super::model::{Action, SourceRef};
use super::state::UserState;

/// Both stages' state, in memory.
#[derive(Debug, Clone)]
pub struct Engine {
    catalog: Arc<Catalog>,
    users: FxHashMap<(String, String), UserState>,
    resources: FxHashMap<String, ResourceState>,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Processed {
    pub events: Vec<Event>,
    pub duplicate: bool,
    pub ignored: Option<String>,
}

impl Engine {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Engine {
            catalog,
            users: FxHashMap::default(),
            resources: FxHashMap::default(),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn user(&self, tenant: &str, user_id: &str) -> Option<&UserState> {
        self.users.get(&(tenant.to_string(), user_id.to_string()))
    }

    pub fn users(&self) -> impl Iterator<Item = (&(String, String), &UserState)> {
        self.users.iter()
    }

    pub fn resource(&self, key: &str) -> Option<&ResourceState> {
        self.resources.get(key)
    }

    /// Maps, resolves and evaluates one record; a bad one becomes a dead-letter event.
    pub fn process_record(
        &mut self,
        mapping: &Mapping,
        bytes: &[u8],
        source: &SourceRef,
        record_time: DateTime<Utc>,
    ) -> Processed {
        match decode::decode(mapping, &self.catalog, bytes) {
            Ok(Decoded::Action { action, trigger_id }) => {
                self.process_action(&action, trigger_id, source, record_time)
            }
            Ok(Decoded::Ignored { reason }) => Processed {
                events: Vec::new(),
                duplicate: false,
                ignored: Some(reason),
            },
            Err(rejection) => Processed {
                events: vec![decode::dead_letter(&rejection, bytes, source, record_time)],
                duplicate: false,
                ignored: None,
            },
        }
    }

    /// Evaluates an action whose trigger is already resolved.
    pub fn process_action(
        &mut self,
        action: &Action,
        trigger_id: u32,
        source: &SourceRef,
        record_time: DateTime<Utc>,
    ) -> Processed {
        let catalog = Arc::clone(&self.catalog);
        let Some(tenant) = catalog.tenant(&action.tenant) else {
            return Processed {
                events: Vec::new(),
                duplicate: false,
                ignored: Some(format!("unknown tenant '{}'", action.tenant)),
            };
        };
        let Some(trigger) = tenant.trigger(trigger_id) else {
            return Processed {
                events: Vec::new(),
                duplicate: false,
                ignored: Some(format!("unknown trigger {trigger_id}")),
            };
        };
        let cause = ids::cause_of(source);
        self.run(
            &action.tenant,
            &action.user_id,
            UserInput::Action(action, trigger),
            source,
            &cause,
            record_time,
        )
    }

    /// Evaluates a claim command.
    pub fn process_claim(
        &mut self,
        claim: &ClaimCommand,
        source: &SourceRef,
        record_time: DateTime<Utc>,
    ) -> Processed {
        let cause = ids::cause_of(source);
        self.run(
            &claim.tenant,
            &claim.user_id,
            UserInput::Claim(claim),
            source,
            &cause,
            record_time,
        )
    }

    fn run(
        &mut self,
        tenant_id: &str,
        user_id: &str,
        input: UserInput<'_>,
        source: &SourceRef,
        cause: &str,
        record_time: DateTime<Utc>,
    ) -> Processed {
        let catalog = Arc::clone(&self.catalog);
        let Some(tenant) = catalog.tenant(tenant_id) else {
            return Processed {
                events: Vec::new(),
                duplicate: false,
                ignored: Some(format!("unknown tenant '{tenant_id}'")),
            };
        };
        let key = (tenant_id.to_string(), user_id.to_string());
        let state = self.users.entry(key.clone()).or_default();
        let ctx = Context {
            source,
            cause,
            record_time,
        };
        let first = evaluator::evaluate(state, input, tenant, user_id, &ctx);
        let duplicate = first.duplicate;
        let mut events = first.events;
        let mut queue: VecDeque<Request> = first.requests.into();
        while let Some(request) = queue.pop_front() {
            let resource = self.resources.entry(request.resource()).or_default();
            let response = inventory::evaluate(resource, &request, tenant);
            let owner = (response.tenant.clone(), response.user_id.clone());
            let state = self.users.entry(owner).or_default();
            let ctx = Context {
                source,
                cause: &response.request_id,
                record_time,
            };
            let effects = evaluator::evaluate(
                state,
                UserInput::Response(&response),
                tenant,
                &response.user_id,
                &ctx,
            );
            events.extend(effects.events);
            queue.extend(effects.requests);
        }
        Processed {
            events,
            duplicate,
            ignored: None,
        }
    }
}
