//! Why a record is dead-lettered, as a closed set: metric labels and dead-letter headers use
//! these names, so dashboards and consumers of the dead-letter topic never match reason text.

use serde::{Deserialize, Serialize};

/// The kind of a rejection. The human reason (naming the field and the value's problem) is
/// beside it in [`super::decode::Rejection::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RejectKind {
    /// Not JSON, or not a JSON object.
    NotJson,
    /// The record, or one of its fields, is over its documented size bound.
    TooLarge,
    /// A field is missing or has a value the mapping cannot take.
    #[default]
    Field,
    /// The tenant is not in the catalog.
    UnknownTenant,
    /// The trigger (or event) name or id is not in the tenant's catalog.
    UnknownTrigger,
    /// An earning-rule event's parameters do not fit its definition.
    Params,
    /// A record of an internal topic (inventory, amounts) or of the commands topic that is not
    /// what questline writes there.
    Internal,
    /// An action of a user an administrator disabled (KickApps' error 48): refused by the
    /// user's single writer, which keeps the status in the user's state.
    UserDisabled,
}

impl RejectKind {
    /// The metric label and header value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::NotJson => "not_json",
            RejectKind::TooLarge => "too_large",
            RejectKind::Field => "mapping",
            RejectKind::UnknownTenant => "unknown_tenant",
            RejectKind::UnknownTrigger => "unknown_trigger",
            RejectKind::Params => "params",
            RejectKind::Internal => "internal",
            RejectKind::UserDisabled => "user_disabled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RejectKind;
    use crate::core::catalog::Catalog;
    use crate::core::decode::decode;
    use crate::core::mapping::Mapping;

    /// Each way a record can be wrong gets its own kind, decided where it is found, not read
    /// back from the reason's text.
    #[test]
    fn each_problem_has_its_kind() {
        let catalog = Catalog::from_sources(&[(
            "c.toml",
            "[[reward_types]]\nreward_type = \"points\"\n[[triggers]]\nid = 1\nname = \"t\"\n\
             [[events]]\nname = \"E\"\nparams = [{ name = \"n\", type = \"integer\", mandatory = true }]\n\
             [[events.rules]]\npoints = 1\n",
        )])
        .unwrap();
        let native = Mapping::native().compile();
        let kind = |record: &str| {
            decode(&native, &catalog, record.as_bytes())
                .unwrap_err()
                .kind
        };
        assert_eq!(kind("not json"), RejectKind::NotJson);
        assert_eq!(kind("[1]"), RejectKind::NotJson);
        assert_eq!(kind(r#"{"triggerId": 1}"#), RejectKind::Field);
        assert_eq!(
            kind(&format!(
                r#"{{"userId": "{}", "triggerId": 1}}"#,
                "u".repeat(300)
            )),
            RejectKind::TooLarge
        );
        assert_eq!(
            kind(r#"{"userId": "u", "triggerId": 7}"#),
            RejectKind::UnknownTrigger
        );
        assert_eq!(
            kind(r#"{"userId": "u", "triggerId": 1, "tenant": "nope"}"#),
            RejectKind::UnknownTenant
        );
        assert_eq!(
            kind(r#"{"userId": "u", "triggerId": "E"}"#),
            RejectKind::Params
        );
        // An unknown trigger whose text says "unknown tenant" is still an unknown trigger.
        assert_eq!(
            kind(r#"{"userId": "u", "triggerId": "unknown tenant"}"#),
            RejectKind::UnknownTrigger
        );
    }
}
