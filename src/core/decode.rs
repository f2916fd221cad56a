//! Record bytes → a resolved action, or the reason it goes to the dead-letter topic.
//!
//! This is step 1 of the commit protocol (docs/design.md, "Commit protocol"): everything that can be wrong with a
//! record is found here, before any state is touched, so a bad record never stops its
//! partition.

use super::catalog::{Catalog, ResolveError};
use super::events::{encode_original, Event, EventBody};
use super::ids;
use super::mapping::{Mapping, UnknownTrigger};
use super::model::{Action, SourceRef};
use chrono::{DateTime, Utc};

/// A mapped action whose trigger exists in its tenant's catalog.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Action {
        action: Action,
        trigger_id: u32,
    },
    /// Unknown trigger under a lenient mapping: counted and skipped.
    Ignored {
        reason: String,
    },
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
}

impl Rejection {
    /// A rejection without a producer error code.
    pub fn new(
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
        }
    }
}

pub fn decode(mapping: &Mapping, catalog: &Catalog, bytes: &[u8]) -> Result<Decoded, Rejection> {
    let action = mapping.apply(bytes).map_err(|e| Rejection {
        reason: e.to_string(),
        field: (e.field != "record").then(|| e.field.clone()),
        error_code: e.error_code,
        user_id: None,
        tenant: mapping.tenant.clone(),
    })?;
    let resolved = catalog.resolve_trigger(
        &action.tenant,
        &action.trigger_id,
        action.location.as_deref(),
    );
    match resolved {
        Ok(trigger) => {
            let trigger_id = trigger.id;
            Ok(Decoded::Action { action, trigger_id })
        }
        Err(ResolveError::UnknownTrigger(_))
            if mapping.unknown_trigger == UnknownTrigger::Ignore =>
        {
            Ok(Decoded::Ignored {
                reason: format!("unknown trigger '{}'", action.trigger_id),
            })
        }
        Err(e) => {
            let field = match e {
                ResolveError::UnknownTenant(_) => "tenant",
                ResolveError::UnknownTrigger(_) => "triggerId",
            };
            Err(Rejection {
                reason: format!("{field}: {e}"),
                field: Some(field.into()),
                error_code: mapping_error_code(mapping, field),
                user_id: Some(action.user_id),
                tenant: action.tenant,
            })
        }
    }
}

fn mapping_error_code(mapping: &Mapping, field: &str) -> Option<i32> {
    let spec = match field {
        "triggerId" => mapping.fields.trigger_id.as_ref(),
        "tenant" => mapping.fields.tenant.as_ref(),
        _ => None,
    };
    spec.and_then(|s| s.error_codes.invalid)
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
            reason: rejection.reason.clone(),
            error_code: rejection.error_code,
            field: rejection.field.clone(),
            original,
            encoding,
            truncated_from,
            output: None,
        },
        tenant: rejection.tenant.clone(),
        user_id: rejection.user_id.clone().unwrap_or_default(),
        occurred_at: at,
        source: source.clone(),
    }
}
