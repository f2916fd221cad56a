//! Record bytes → a resolved action, or the reason it goes to the dead-letter topic.
//!
//! This is step 1 of the commit protocol (docs/design.md, "Commit protocol"): everything that can be wrong with a
//! record is found here, before any state is touched, so a bad record never stops its
//! partition.

use super::catalog::{Catalog, EventRules, ResolveError};
use super::events::{encode_original, Event, EventBody};
use super::ids;
use super::limits;
use super::mapping::{CompiledMapping, UnknownTrigger};
use super::model::{Action, SourceRef};
use super::reject::RejectKind;
use super::rules::{self, ParamError};
use chrono::{DateTime, Utc};

/// A mapped action that counts for something in its tenant's catalog.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Action {
        action: Action,
        /// The trigger it counts toward, if its name or id is one; see [`resolve_action`].
        trigger_id: Option<u32>,
    },
    /// Unknown trigger under a lenient mapping: counted and skipped.
    Ignored { reason: String },
}

/// Why a record is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub field: Option<String>,
    pub error_code: Option<i32>,
    /// The user, when the record got that far: the dead letter is keyed by it.
    pub user_id: Option<String>,
    pub tenant: String,
    /// For metric labels and the dead letter's `questline-reject-kind` header.
    pub kind: RejectKind,
}

impl Rejection {
    /// A rejection without a producer error code.
    pub fn new(
        kind: RejectKind,
        reason: impl Into<String>,
        field: Option<&str>,
        user_id: Option<&str>,
        tenant: &str,
    ) -> Self {
        Rejection {
            reason: reason.into(),
            field: field.map(str::to_string),
            error_code: None,
            user_id: user_id.map(str::to_string),
            tenant: tenant.to_string(),
            kind,
        }
    }
}

/// Maps `bytes` with `mapping` and resolves the action in `catalog`. It takes the compiled
/// form only, so that no caller compiles a mapping per record by accident
/// ([`Mapping::compile`](super::mapping::Mapping::compile) once, then map).
pub fn decode(
    mapping: &CompiledMapping,
    catalog: &Catalog,
    bytes: &[u8],
) -> Result<Decoded, Rejection> {
    let action = mapping.apply(bytes).map_err(|e| Rejection {
        reason: e.to_string(),
        field: (e.field != "record").then(|| e.field.clone()),
        error_code: e.error_code,
        user_id: e.user_id.clone(),
        tenant: mapping.tenant().to_string(),
        kind: e.kind,
    })?;
    match resolve_action(catalog, &action) {
        Ok(trigger_id) => Ok(Decoded::Action { action, trigger_id }),
        Err(ActionError::Unknown(ResolveError::UnknownTrigger(_)))
            if mapping.unknown_trigger() == UnknownTrigger::Ignore =>
        {
            Ok(Decoded::Ignored {
                reason: format!("unknown trigger '{}'", action.trigger_id),
            })
        }
        Err(e) => {
            let field = e.field();
            Err(Rejection {
                reason: e.to_string(),
                error_code: mapping.invalid_code(&field),
                field: Some(field),
                user_id: Some(action.user_id.into()),
                tenant: action.tenant.into(),
                kind: e.kind(),
            })
        }
    }
}

/// Why an action counts for nothing in its tenant's catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// Its tenant is unknown, or its name is neither a trigger nor an event.
    #[error("{}: {}", field_of(.0), .0)]
    Unknown(ResolveError),
    /// It names an earning-rule event but its parameters do not fit the event's definition.
    #[error("params.{}: {error}", error.param())]
    Param { event: String, error: ParamError },
}

fn field_of(e: &ResolveError) -> &'static str {
    match e {
        ResolveError::UnknownTenant(_) => "tenant",
        ResolveError::UnknownTrigger(_) => "triggerId",
    }
}

impl ActionError {
    pub fn kind(&self) -> RejectKind {
        match self {
            ActionError::Unknown(ResolveError::UnknownTenant(_)) => RejectKind::UnknownTenant,
            ActionError::Unknown(ResolveError::UnknownTrigger(_)) => RejectKind::UnknownTrigger,
            ActionError::Param { .. } => RejectKind::Params,
        }
    }

    /// The field at fault (`tenant`, `triggerId` or `params.<name>`), for dead letters and
    /// HTTP errors.
    pub fn field(&self) -> String {
        match self {
            ActionError::Unknown(e) => field_of(e).to_string(),
            ActionError::Param { error, .. } => format!("params.{}", error.param()),
        }
    }
}

/// What an action counts toward: a trigger (by id, or by name and location), an earning-rule
/// event of the same name, or both. Returns the trigger, if any; an action that is an event
/// must carry parameters that fit the event's definition, checked here, before any state is
/// touched, so an occurrence that cannot be rewarded is a dead letter naming the parameter
/// instead of an action silently paying nothing.
pub fn resolve_action(catalog: &Catalog, action: &Action) -> Result<Option<u32>, ActionError> {
    let trigger = catalog.resolve_trigger(
        &action.tenant,
        &action.trigger_id,
        action.location.as_deref(),
    );
    let event = rule_event(catalog, action);
    if let Some(event) = event {
        rules::params::read(&event.params, &action.params).map_err(|error| ActionError::Param {
            event: event.name.clone(),
            error,
        })?;
    }
    match trigger {
        Ok(t) => Ok(Some(t.id)),
        Err(ResolveError::UnknownTrigger(_)) if event.is_some() => Ok(None),
        Err(e) => Err(ActionError::Unknown(e)),
    }
}

/// The earning-rule event an action names, if its tenant defines one of that name.
pub fn rule_event<'c>(catalog: &'c Catalog, action: &Action) -> Option<&'c EventRules> {
    catalog
        .tenant(&action.tenant)?
        .event_for(&action.trigger_id)
}

/// The dead-letter event of a rejected record, carrying its original bytes.
pub fn dead_letter(
    rejection: &Rejection,
    bytes: &[u8],
    source: &SourceRef,
    at: DateTime<Utc>,
) -> Event {
    let (original, encoding, truncated_from) = encode_original(bytes);
    Event {
        event_id: ids::event_id(&ids::cause_of(source), 0),
        body: EventBody::DeadLetter {
            reason: limits::cut(&rejection.reason, limits::MAX_REASON_BYTES).into_owned(),
            error_code: rejection.error_code,
            field: rejection.field.clone(),
            original,
            encoding,
            truncated_from,
            output: None,
        },
        tenant: rejection.tenant.as_str().into(),
        user_id: rejection.user_id.as_deref().unwrap_or_default().into(),
        occurred_at: at,
        source: source.clone(),
        catalog_version: 0,
    }
}
