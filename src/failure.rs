//! How a command ends: the one error type every command returns, and its exit code.
//!
//! Kept apart from `cli` and `app` so both can use it without importing each other.

/// How a command ended, mapped to the process exit code by `main`.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad usage or configuration: exit 2.
    #[error("{0}")]
    Config(String),
    /// Failed while running: exit 1.
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Config(_) => 2,
            Failure::Runtime(_) => 1,
        }
    }
}
