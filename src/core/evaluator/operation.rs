//! Operation grants in the user stage: a service (a Rokwire building block) grants a user an
//! operation's amount of its reward type (`POST /int/reward`).
//!
//! The grant is a command in the log like a claim, evaluated here by the user's single writer,
//! and it goes through the same ledger as challenge prizes: an unlimited reward type is
//! credited at once, a limited one asks the inventory stage (stock, `grant_depleted`; refused
//! with `depleted` when the stock is gone), an inactive one is refused. A grant id already
//! applied changes nothing: it is remembered in the window of recent action ids, namespaced so
//! it never meets an action's id.

use serde::{Deserialize, Serialize};

use super::Emitter;
use crate::core::catalog::{Operation, TenantCatalog};
use crate::core::events::{EventBody, OperationRef, RejectReason};
use crate::core::inventory::RequestKind;
use crate::core::limits;
use crate::core::state::{PendingKind, UserState};

/// Longest grant (idempotency) id: the same alphabet and bound as a claim id.
pub const MAX_GRANT_ID_LEN: usize = 64;
/// Longest description a request may give a grant, in bytes.
pub const MAX_GRANT_DESCRIPTION_BYTES: usize = 512;

/// A grant command, as the sidecar produces it to the commands topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantCommand {
    /// The idempotency id: a retry with the same id grants nothing more.
    pub grant_id: String,
    #[serde(default = "super::default_tenant")]
    pub tenant: String,
    pub user_id: String,
    /// The operation's code.
    pub code: String,
    /// The authenticated client that asked: it must be the operation's building block.
    pub building_block: String,
    /// Shown in the history instead of the operation's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Why a grant command cannot be applied, with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct GrantError {
    pub field: &'static str,
    pub message: String,
    /// The client is not the operation's building block (HTTP 403, not 400).
    pub forbidden: bool,
}

impl GrantError {
    fn field(field: &'static str, message: impl Into<String>) -> Self {
        GrantError {
            field,
            message: message.into(),
            forbidden: false,
        }
    }
}

/// Whether `id` may be a grant id: 1–64 of `A-Z a-z 0-9 . _ : -`.
pub fn valid_grant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_GRANT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

impl GrantCommand {
    /// Checks the command against the tenant's catalog and returns its operation. The sidecar
    /// calls it before submitting, the worker again when it reads the command (anyone may
    /// produce to the commands topic): same checks, same messages.
    pub fn check<'c>(&self, catalog: &'c TenantCatalog) -> Result<&'c Operation, GrantError> {
        if !valid_grant_id(&self.grant_id) {
            return Err(GrantError::field(
                "id",
                format!("must be 1–{MAX_GRANT_ID_LEN} characters of A-Z a-z 0-9 . _ : -"),
            ));
        }
        if self.user_id.trim().is_empty() || self.user_id.len() > limits::MAX_USER_ID_BYTES {
            return Err(GrantError::field(
                "user_id",
                format!(
                    "must not be blank and at most {} bytes",
                    limits::MAX_USER_ID_BYTES
                ),
            ));
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.len() > MAX_GRANT_DESCRIPTION_BYTES)
        {
            return Err(GrantError::field(
                "description",
                format!("must be at most {MAX_GRANT_DESCRIPTION_BYTES} bytes"),
            ));
        }
        let Some(operation) = catalog.operation(&self.code) else {
            return Err(GrantError::field(
                "code",
                format!(
                    "unknown operation '{}' in tenant '{}'",
                    limits::cut(&self.code, 64),
                    catalog.tenant
                ),
            ));
        };
        if operation.building_block != self.building_block {
            return Err(GrantError {
                field: "building_block",
                message: format!(
                    "operation '{}' belongs to building block '{}'; client '{}' may not use it",
                    operation.code,
                    operation.building_block,
                    limits::cut(&self.building_block, 64)
                ),
                forbidden: true,
            });
        }
        Ok(operation)
    }

    /// What the grant's events say about it.
    pub fn reference(&self, operation: &Operation) -> OperationRef {
        OperationRef {
            code: operation.code.clone(),
            building_block: operation.building_block.clone(),
            amount: operation.units(),
            description: self
                .description
                .clone()
                .unwrap_or_else(|| operation.description.clone()),
            grant_id: self.grant_id.clone(),
        }
    }
}

/// The window key of a grant id: never equal to an action id's.
fn remembered(grant_id: &str) -> String {
    format!("grant\u{0}{grant_id}")
}

/// Applies a grant of `operation` (checked by the caller) to the user's state.
pub(super) fn apply_grant(
    state: &mut UserState,
    grant: &GrantCommand,
    operation: &Operation,
    catalog: &TenantCatalog,
    out: &mut Emitter<'_>,
) {
    if !state.remember_action(&remembered(&grant.grant_id)) {
        out.effects.duplicate = true;
        return;
    }
    let reference = grant.reference(operation);
    let reward_type = operation.reward_type.clone();
    if !catalog.reward_type(&reward_type).is_some_and(|r| r.active) {
        return reject(&reward_type, RejectReason::Inactive, reference, out);
    }
    if catalog.is_limited(&reward_type) {
        out.request(
            state,
            RequestKind::Grant {
                reward_type: reward_type.clone(),
                amount: operation.units(),
            },
            PendingKind::Operation {
                grant: reference,
                reward_type,
            },
        );
        return;
    }
    credit(state, &reward_type, None, reference, out);
}

/// The inventory stage's answer to a grant: credited (a voucher as one code), or refused.
pub(super) fn apply_answer(
    state: &mut UserState,
    grant: OperationRef,
    reward_type: String,
    answer: Result<Option<String>, RejectReason>,
    out: &mut Emitter<'_>,
) {
    match answer {
        Ok(code) => credit(state, &reward_type, code, grant, out),
        Err(reason) => reject(&reward_type, reason, grant, out),
    }
}

fn credit(
    state: &mut UserState,
    reward_type: &str,
    code: Option<String>,
    grant: OperationRef,
    out: &mut Emitter<'_>,
) {
    let counted = if code.is_some() {
        rust_decimal::Decimal::ONE
    } else {
        grant.amount
    };
    let Some(balance) = state.credit(reward_type, counted) else {
        return reject(reward_type, RejectReason::BalanceLimit, grant, out);
    };
    out.emit(EventBody::RewardGranted {
        reward_type: reward_type.to_string(),
        amount: code.is_none().then_some(counted),
        code,
        reason: grant.reason(),
        balance,
    });
}

fn reject(reward_type: &str, reason: RejectReason, grant: OperationRef, out: &mut Emitter<'_>) {
    out.emit(EventBody::RewardRejected {
        reward_type: reward_type.to_string(),
        reason,
        challenge_id: None,
        milestone_id: None,
        operation: Some(Box::new(grant)),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::catalog::Catalog;
    use crate::core::engine::Engine;
    use crate::core::events::{Event, GrantReason};
    use crate::core::model::SourceRef;
    use crate::core::step::Input;
    use rust_decimal::Decimal;
    use std::sync::Arc;

    const CATALOG: &str = r#"
[[reward_types]]
reward_type = "points"
[[reward_types]]
reward_type = "tshirt"
kind = "item"
[[reward_types]]
reward_type = "old"
active = false
[[inventories]]
id = "tshirts"
reward_type = "tshirt"
amount_total = 1
[[operations]]
code = "10_posts"
building_block = "groups"
reward_type = "points"
amount = 10
description = "Make 10 posts in a group"
[[operations]]
code = "survey"
building_block = "surveys"
reward_type = "tshirt"
amount = 1
[[operations]]
code = "legacy"
building_block = "groups"
reward_type = "old"
amount = 1
"#;

    fn engine() -> Engine {
        Engine::new(Arc::new(
            Catalog::from_sources(&[("c.toml", CATALOG)]).unwrap(),
        ))
    }

    fn grant(id: &str, user: &str, code: &str, client: &str) -> GrantCommand {
        GrantCommand {
            grant_id: id.into(),
            tenant: "default".into(),
            user_id: user.into(),
            code: code.into(),
            building_block: client.into(),
            description: None,
        }
    }

    fn run(engine: &mut Engine, offset: i64, g: &GrantCommand) -> (Vec<Event>, bool) {
        let source = SourceRef::new("questline.commands", 0, offset);
        let at = "2026-06-01T12:00:00Z".parse().unwrap();
        let out = engine.process(&Input::Grant(g.clone()), &[], &source, at);
        (out.events, out.duplicate)
    }

    #[test]
    fn a_grant_credits_once_per_id_with_the_operation_in_its_reason() {
        let mut e = engine();
        let g = grant("g-1", "u1", "10_posts", "groups");
        let (events, _) = run(&mut e, 1, &g);
        let [event] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(
            event.body,
            EventBody::RewardGranted {
                reward_type: "points".into(),
                amount: Some(Decimal::from(10)),
                code: None,
                reason: GrantReason::Operation {
                    code: "10_posts".into(),
                    building_block: "groups".into(),
                    amount: Decimal::from(10),
                    description: "Make 10 posts in a group".into(),
                    grant_id: "g-1".into(),
                },
                balance: Decimal::from(10),
            }
        );
        // The same id again, as another record: nothing more.
        let (events, duplicate) = run(&mut e, 2, &g);
        assert!(duplicate && events.is_empty(), "{events:?}");
        // Another id grants again; a request's description replaces the operation's.
        let mut other = grant("g-2", "u1", "10_posts", "groups");
        other.description = Some("posted in Chess club".into());
        let (events, _) = run(&mut e, 3, &other);
        assert!(matches!(
            &events[0].body,
            EventBody::RewardGranted { balance, reason: GrantReason::Operation { description, .. }, .. }
                if *balance == Decimal::from(20) && description == "posted in Chess club"
        ));
    }

    #[test]
    fn limited_grants_draw_stock_and_fail_depleted_when_it_is_gone() {
        let mut e = engine();
        let (events, _) = run(&mut e, 1, &grant("a", "u1", "survey", "surveys"));
        assert!(
            matches!(&events[..], [Event { body: EventBody::RewardGranted { reward_type, balance, .. }, .. }]
                if reward_type == "tshirt" && *balance == Decimal::ONE),
            "{events:?}"
        );
        let (events, _) = run(&mut e, 2, &grant("b", "u2", "survey", "surveys"));
        match &events[..] {
            [Event {
                body:
                    EventBody::RewardRejected {
                        reason: RejectReason::Depleted,
                        operation: Some(op),
                        ..
                    },
                ..
            }] => assert_eq!((op.code.as_str(), op.grant_id.as_str()), ("survey", "b")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inactive_reward_types_are_refused() {
        let mut e = engine();
        let (events, _) = run(&mut e, 1, &grant("a", "u1", "legacy", "groups"));
        assert!(matches!(
            &events[..],
            [Event {
                body: EventBody::RewardRejected {
                    reason: RejectReason::Inactive,
                    ..
                },
                ..
            }]
        ));
    }

    #[test]
    fn the_check_names_the_field_and_forbids_other_services() {
        let catalog = Catalog::from_sources(&[("c.toml", CATALOG)]).unwrap();
        let t = catalog.default_tenant().unwrap();
        assert!(grant("a", "u", "10_posts", "groups").check(t).is_ok());
        let e = grant("a", "u", "10_posts", "surveys").check(t).unwrap_err();
        assert!(e.forbidden);
        assert_eq!(
            e.to_string(),
            "building_block: operation '10_posts' belongs to building block 'groups'; \
             client 'surveys' may not use it"
        );
        let field = |g: GrantCommand| g.check(t).unwrap_err().field;
        assert_eq!(field(grant("a", "u", "nope", "groups")), "code");
        assert_eq!(field(grant("a b", "u", "10_posts", "groups")), "id");
        assert_eq!(field(grant("a", " ", "10_posts", "groups")), "user_id");
        let mut long = grant("a", "u", "10_posts", "groups");
        long.description = Some("d".repeat(MAX_GRANT_DESCRIPTION_BYTES + 1));
        assert_eq!(field(long), "description");
        // A client that is not the building block changes nothing in the worker either.
        let mut e = engine();
        let (events, _) = run(&mut e, 1, &grant("a", "u", "10_posts", "surveys"));
        assert!(events.is_empty());
    }
}
