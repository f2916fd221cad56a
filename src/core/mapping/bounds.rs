//! The documented bounds ([`limits`]) of an action's fields, checked where an action enters:
//! a mapped record, or an `AddAction` command read from the commands topic. They keep a
//! record's effects small whatever a producer sends: ids and names end up in state, events and
//! dead-letter reasons.

use rust_decimal::Decimal;
use serde::Serialize;

use super::error::{invalid, too_long};
use super::{ErrorCodes, MapError, TRIGGER_ID, USER_ID};
use crate::core::limits;
use crate::core::model::{Action, TriggerKey};

/// The producer's error codes of each bounded field but the user id (none for an action that
/// was not mapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct BoundCodes {
    pub value: ErrorCodes,
    pub trigger_id: ErrorCodes,
    pub action_id: ErrorCodes,
    pub location: ErrorCodes,
    pub tenant: ErrorCodes,
    pub params: ErrorCodes,
}

/// Checks an action that did not come through a mapping (an `AddAction` command read from the
/// commands topic) against the same bounds as a mapped one. An error in a field other than the
/// user id carries the user id.
pub fn check_bounds(action: &Action) -> Result<(), MapError> {
    within(
        &action.user_id,
        limits::MAX_USER_ID_BYTES,
        &ErrorCodes::default(),
        USER_ID,
    )?;
    after_user(action, &BoundCodes::default()).map_err(|e| MapError {
        user_id: Some(action.user_id.to_string()),
        ..e
    })
}

/// Every field's bounds but the user id's (checked first, as it is read): text lengths in
/// bytes, the number and size of `params`.
pub(super) fn after_user(action: &Action, codes: &BoundCodes) -> Result<(), MapError> {
    value_within(action.value, &codes.value)?;
    if let TriggerKey::Name(name) = &action.trigger_id {
        within(
            name,
            limits::MAX_TRIGGER_NAME_BYTES,
            &codes.trigger_id,
            TRIGGER_ID,
        )?;
    }
    if let Some(id) = &action.action_id {
        within(
            id,
            limits::MAX_ACTION_ID_BYTES,
            &codes.action_id,
            "actionId",
        )?;
    }
    if let Some(location) = &action.location {
        within(
            location,
            limits::MAX_LOCATION_BYTES,
            &codes.location,
            "location",
        )?;
    }
    within(
        &action.tenant,
        limits::MAX_TENANT_BYTES,
        &codes.tenant,
        "tenant",
    )?;
    if action.params.len() > limits::MAX_PARAMS {
        return Err(too_long(
            &codes.params,
            "params",
            format!(
                "cannot have more than {} entries, found {}",
                limits::MAX_PARAMS,
                action.params.len()
            ),
        ));
    }
    if json_size_over(&action.params, limits::MAX_PARAMS_BYTES) {
        return Err(too_long(
            &codes.params,
            "params",
            format!("cannot exceed {} bytes as JSON", limits::MAX_PARAMS_BYTES),
        ));
    }
    Ok(())
}

/// An action's value within the documented bounds of every amount ([`limits::MAX_AMOUNT`] in
/// magnitude, [`limits::MAX_SCALE`] decimal places), checked where it enters (a mapped record,
/// `AddAction`, a command read from the commands topic): past it, sums in the evaluator would
/// approach `Decimal`'s range, so it is a dead letter naming `value`, not something to clamp.
fn value_within(value: Decimal, codes: &ErrorCodes) -> Result<(), MapError> {
    if value.abs() > limits::MAX_AMOUNT {
        return Err(invalid(
            codes,
            "value",
            format!("must be at most 10^15 in magnitude, found {value}"),
        ));
    }
    let scale = value.normalize().scale();
    if scale > limits::MAX_SCALE {
        return Err(invalid(
            codes,
            "value",
            format!(
                "must have at most {} decimal places, found {scale}",
                limits::MAX_SCALE
            ),
        ));
    }
    Ok(())
}

/// A text field of at most `max` bytes. The reason gives sizes, never the text.
pub(super) fn within(
    text: &str,
    max: usize,
    codes: &ErrorCodes,
    field: &str,
) -> Result<(), MapError> {
    if text.len() <= max {
        return Ok(());
    }
    Err(too_long(
        codes,
        field,
        format!("cannot exceed {max} bytes, found {}", text.len()),
    ))
}

/// Whether `value` written as compact JSON is longer than `max` bytes; stops writing as soon
/// as it is, without building the text.
fn json_size_over(value: &impl Serialize, max: usize) -> bool {
    struct Counter {
        left: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.left = self
                .left
                .checked_sub(buf.len())
                .ok_or_else(|| std::io::Error::other("over the limit"))?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(&mut Counter { left: max }, value).is_err()
}
