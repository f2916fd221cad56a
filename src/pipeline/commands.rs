//! Commands: what the sidecar produces to the commands topic (docs/design.md: "the sidecar never
//! writes state: a direct action or a claim is produced to a topic, keyed by user, and
//! evaluated like any other action").

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::core::evaluator::{ClaimCommand, GrantCommand};
use crate::core::model::Action;
use crate::core::state::UserStatusChange;
use crate::pipeline::log::{Headers, LogError};
use crate::trace_context::TraceContext;

/// One record of the commands topic, keyed by user id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "camelCase")]
pub enum Command {
    /// `POST /api/v1/Integration/AddAction`.
    AddAction(Action),
    /// `POST /api/v1/users/{userId}/claims`.
    Claim(ClaimCommand),
    /// KickApps' `POST /rest/user/disable/{as}` and `/rest/user/enable/{as}`.
    UserStatus(UserStatusChange),
    /// `POST /int/reward`: a service grants an operation.
    Grant(GrantCommand),
}

impl Command {
    pub fn user_id(&self) -> &str {
        match self {
            Command::AddAction(a) => &a.user_id,
            Command::Claim(c) => &c.user_id,
            Command::UserStatus(c) => &c.user_id,
            Command::Grant(g) => &g.user_id,
        }
    }

    pub fn tenant(&self) -> &str {
        match self {
            Command::AddAction(a) => &a.tenant,
            Command::Claim(c) => &c.tenant,
            Command::UserStatus(c) => &c.tenant,
            Command::Grant(g) => &g.tenant,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The log did not acknowledge the command in time; the client may retry.
    #[error("the command log is unavailable: {0}")]
    Unavailable(#[from] LogError),
    /// The command cannot be serialized.
    #[error("cannot encode the command: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Where commands go: the Kafka commands topic in production, the in-process log in `demo`.
/// `submit` returns once the command is durably in the log (acks=all), not once evaluated.
/// `trace` is the context of the request that made the command; a sink with record headers
/// puts it on the record ([`command_headers`]).
#[async_trait]
pub trait CommandSink: Send + Sync + 'static {
    async fn submit(
        &self,
        command: &Command,
        trace: Option<&TraceContext>,
    ) -> Result<(), SubmitError>;
}

/// The headers of a command's record: its trace context, if it has one.
pub fn command_headers(trace: Option<&TraceContext>) -> Headers {
    let mut headers = Headers::new();
    if let Some(trace) = trace {
        trace.set_on(&mut headers);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::TriggerKey;

    #[test]
    fn commands_round_trip_with_their_tag() {
        let c = Command::AddAction(Action::new("151631", TriggerKey::Id(1), 1000.into()));
        let text = serde_json::to_string(&c).unwrap();
        assert!(
            text.starts_with(r#"{"command":"addAction","tenant":"default","userId":"151631""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), c);
    }
}
