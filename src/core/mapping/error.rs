//! Why a record could not be mapped, and the error of each kind a field can have.

use super::doc::Doc;
use super::{ErrorCodes, RejectKind};

/// Why a record could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct MapError {
    /// The action field at fault (`userId`), or `record` for the record as a whole.
    pub field: String,
    pub reason: String,
    pub error_code: Option<i32>,
    /// The record's user id when the mapping could read it (an error in another field): the
    /// dead letter is keyed by it, so a user's bad records can be found.
    pub user_id: Option<String>,
    /// What kind of problem it is, for metric labels and dead-letter headers.
    pub kind: RejectKind,
}

impl MapError {
    fn describe(&self) -> String {
        format!("{}: {}", self.field, self.reason)
    }

    pub(super) fn record(kind: RejectKind, reason: impl Into<String>) -> Self {
        MapError {
            field: "record".into(),
            reason: reason.into(),
            error_code: None,
            user_id: None,
            kind,
        }
    }
}

/// A value as a dead-letter reason shows it: short strings quoted, long ones by their length.
pub(super) fn describe(v: &Doc<'_>) -> String {
    match v {
        Doc::String(s) if s.len() > 40 => format!("a string of {} characters", s.chars().count()),
        Doc::String(s) => format!("'{s}'"),
        Doc::Number(n) => n.to_string(),
        other => other.type_name().to_string(),
    }
}

/// Missing, null or blank.
pub(super) fn missing(codes: &ErrorCodes, field: &str) -> MapError {
    MapError {
        field: field.into(),
        reason: "is required".into(),
        error_code: codes.missing,
        user_id: None,
        kind: RejectKind::Field,
    }
}

/// Present but of the wrong type, unparsable, or out of bounds.
pub(super) fn invalid(codes: &ErrorCodes, field: &str, reason: String) -> MapError {
    MapError {
        field: field.into(),
        reason,
        error_code: codes.invalid,
        user_id: None,
        kind: RejectKind::Field,
    }
}

/// Longer than allowed: the producer's `too_long` code, else its `invalid` one.
pub(super) fn too_long(codes: &ErrorCodes, field: &str, reason: String) -> MapError {
    MapError {
        field: field.into(),
        reason,
        error_code: codes.too_long.or(codes.invalid),
        user_id: None,
        kind: RejectKind::TooLarge,
    }
}
