//! Routing consumed records to what they are: mapped actions, commands, inventory requests
//! and responses, amount requests and responses, or dead letters. Pure; one [`Inputs`] is shared by every partition, and
//! `replay --records` routes a topic dump with it too.

use rustc_hash::FxHashMap;
use std::sync::Arc;

use super::catalog_feed::CatalogSource;
use super::commands::Command;
use super::log::InRecord;
use crate::core::catalog::{Catalog, CatalogHistory};
use crate::core::decode::{self, Decoded, Rejection};
use crate::core::limits::{MAX_TENANT_BYTES, MAX_USER_ID_BYTES};
use crate::core::mapping::{self, CompiledMapping, Mapping, DEFAULT_MAX_RECORD_BYTES};
use crate::core::reject::RejectKind;
/// The decoded record is the record step's input.
pub use crate::core::step::Input;

/// The topics the worker reads and how each is decoded.
#[derive(Debug, Clone)]
pub struct Inputs {
    catalog: CatalogSource,
    /// Compiled once here, applied to every record of their topics.
    mappings: FxHashMap<String, Arc<CompiledMapping>>,
    commands: String,
    requests: String,
    responses: String,
    amount_requests: String,
    amount_responses: String,
    /// Read by the catalog feed, not the consumer group; `replay --records` applies its
    /// records as they come.
    catalog_topic: String,
}

impl Inputs {
    /// Inputs evaluated with one catalog that never changes.
    pub fn new(
        catalog: Arc<Catalog>,
        mappings: &[Mapping],
        topics: &crate::settings::Topics,
    ) -> Self {
        Inputs::with_catalog(CatalogSource::fixed((*catalog).clone()), mappings, topics)
    }

    /// Inputs evaluated with the catalog versions `catalog` knows.
    pub fn with_catalog(
        catalog: CatalogSource,
        mappings: &[Mapping],
        topics: &crate::settings::Topics,
    ) -> Self {
        let mut by_topic = FxHashMap::default();
        for m in mappings {
            let m = Arc::new(m.compile());
            for t in m.topics() {
                by_topic.insert(t.clone(), Arc::clone(&m));
            }
        }
        Inputs {
            catalog,
            mappings: by_topic,
            commands: topics.commands.clone(),
            requests: topics.inventory_requests.clone(),
            responses: topics.inventory_responses.clone(),
            amount_requests: topics.amount_requests.clone(),
            amount_responses: topics.amount_responses.clone(),
            catalog_topic: topics.catalog.clone(),
        }
    }

    pub fn catalog(&self) -> &CatalogSource {
        &self.catalog
    }

    /// The catalog log's topic.
    pub fn catalog_topic(&self) -> &str {
        &self.catalog_topic
    }

    /// The catalog history known now.
    pub fn history(&self) -> Arc<CatalogHistory> {
        self.catalog.history()
    }

    /// Every topic the worker subscribes to, sorted: the input topics and the owned ones.
    pub fn topics(&self) -> Vec<String> {
        let mut t = self.input_topics();
        t.extend(self.owned_topics());
        t.sort();
        t.dedup();
        t
    }

    /// The topics the mappings name, sorted: their producers' topics, which the worker never
    /// creates. A mapping naming one of the deployment's own topics does not make it an input.
    pub fn input_topics(&self) -> Vec<String> {
        let owned = self.owned_topics();
        let mut t: Vec<String> = self
            .mappings
            .keys()
            .filter(|t| !owned.contains(t))
            .cloned()
            .collect();
        t.sort();
        t
    }

    /// The deployment's own topics the worker reads beside the inputs (commands, inventory and
    /// amount requests and responses), sorted: co-partitioned with the inputs, since a
    /// user's records of every topic meet by partition number.
    pub fn owned_topics(&self) -> Vec<String> {
        let mut t = vec![
            self.commands.clone(),
            self.requests.clone(),
            self.responses.clone(),
            self.amount_requests.clone(),
            self.amount_responses.clone(),
        ];
        t.sort();
        t.dedup();
        t
    }

    /// What a consumed record is, under `catalog` (the one in force at its timestamp). An
    /// input naming a tenant the catalog does not know is a dead letter, whatever its topic.
    pub fn decode(&self, record: &InRecord, catalog: &Catalog) -> Input {
        let input = self.decode_topic(record, catalog);
        match input.user_ids() {
            Some((tenant, user_id)) if catalog.tenant(tenant).is_none() => {
                Input::DeadLetter(Rejection::new(
                    RejectKind::UnknownTenant,
                    format!("tenant: unknown tenant '{tenant}'"),
                    Some("tenant"),
                    Some(user_id),
                    tenant,
                ))
            }
            _ => input,
        }
    }

    fn decode_topic(&self, record: &InRecord, catalog: &Catalog) -> Input {
        let topic = record.topic.as_str();
        if let Some(mapping) = self.mappings.get(topic) {
            return match decode::decode(mapping.as_ref(), catalog, &record.payload) {
                Ok(Decoded::Action { action, trigger_id }) => Input::Action { action, trigger_id },
                Ok(Decoded::Ignored { reason }) => Input::Ignored(reason),
                Err(r) => Input::DeadLetter(r),
            };
        }
        if topic == self.commands {
            return self.decode_command(&record.payload, catalog);
        }
        let internal = |what: &str, e: serde_json::Error| {
            Input::DeadLetter(Rejection::new(
                RejectKind::Internal,
                format!("record: not a valid {what}: {e}"),
                None,
                None,
                crate::core::model::DEFAULT_TENANT,
            ))
        };
        if topic == self.requests {
            return serde_json::from_slice(&record.payload)
                .map(Input::Request)
                .unwrap_or_else(|e| internal("inventory request", e));
        }
        if topic == self.responses {
            return serde_json::from_slice(&record.payload)
                .map(Input::Response)
                .unwrap_or_else(|e| internal("inventory response", e));
        }
        if topic == self.amount_requests {
            return serde_json::from_slice(&record.payload)
                .map(Input::AmountCall)
                .unwrap_or_else(|e| internal("amount request", e));
        }
        if topic == self.amount_responses {
            return serde_json::from_slice(&record.payload)
                .map(Input::Amount)
                .unwrap_or_else(|e| internal("amount response", e));
        }
        Input::Ignored(format!("no mapping for topic '{topic}'"))
    }

    /// A grant is checked like the sidecar checks it (anyone may produce to the topic): a
    /// field at fault, or a client that is not the operation's building block, is a dead
    /// letter naming the field.
    fn decode_grant(
        &self,
        grant: crate::core::evaluator::GrantCommand,
        catalog: &Catalog,
    ) -> Input {
        let Some(tenant) = catalog.tenant(&grant.tenant) else {
            return Input::Grant(grant); // `decode` dead-letters an unknown tenant
        };
        match grant.check(tenant) {
            Ok(_) => Input::Grant(grant),
            Err(e) => Input::DeadLetter(Rejection::new(
                RejectKind::Field,
                e.to_string(),
                Some(e.field),
                (grant.user_id.len() <= crate::core::limits::MAX_USER_ID_BYTES)
                    .then_some(grant.user_id.as_str()),
                &grant.tenant,
            )),
        }
    }

    fn decode_command(&self, payload: &[u8], catalog: &Catalog) -> Input {
        let reject = |kind: RejectKind,
                      reason: String,
                      field: Option<&str>,
                      user: Option<&str>,
                      tenant: &str| {
            Input::DeadLetter(Rejection::new(kind, reason, field, user, tenant))
        };
        let default_tenant = crate::core::model::DEFAULT_TENANT;
        if payload.len() > DEFAULT_MAX_RECORD_BYTES {
            return reject(
                RejectKind::TooLarge,
                format!(
                    "record of {} bytes exceeds the limit of {DEFAULT_MAX_RECORD_BYTES} bytes",
                    payload.len()
                ),
                None,
                None,
                default_tenant,
            );
        }
        match serde_json::from_slice::<Command>(payload) {
            Err(e) => reject(
                RejectKind::Internal,
                format!("record: not a valid command: {e}"),
                None,
                None,
                default_tenant,
            ),
            Ok(Command::Claim(c)) => Input::Claim(c),
            Ok(Command::UserStatus(c)) => {
                if c.user_id.is_empty()
                    || c.user_id.len() > MAX_USER_ID_BYTES
                    || c.tenant.len() > MAX_TENANT_BYTES
                {
                    return reject(
                        RejectKind::Internal,
                        "userId: a user status change needs a user id of 1 to 256 bytes and a tenant of at most 64".into(),
                        Some("userId"),
                        None,
                        default_tenant,
                    );
                }
                Input::UserStatus(c)
            }
            Ok(Command::Grant(g)) => self.decode_grant(g, catalog),
            Ok(Command::AddAction(action)) => {
                // The sidecar checked it, but anyone may produce to the topic.
                if let Err(e) = mapping::check_bounds(&action) {
                    return Input::DeadLetter(Rejection {
                        reason: e.to_string(),
                        field: Some(e.field),
                        error_code: None,
                        user_id: e.user_id,
                        tenant: if action.tenant.len() <= MAX_TENANT_BYTES {
                            action.tenant.into()
                        } else {
                            default_tenant.to_string()
                        },
                        kind: e.kind,
                    });
                }
                match decode::resolve_action(catalog, &action) {
                    Ok(trigger_id) => Input::Action { action, trigger_id },
                    Err(e) => reject(
                        e.kind(),
                        e.to_string(),
                        Some(&e.field()),
                        Some(&action.user_id),
                        &action.tenant,
                    ),
                }
            }
        }
    }
}
