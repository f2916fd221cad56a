//! The store port's errors: typed, with the engine's own error as the source, and a class.
//!
//! One enum for both stores, so the worker and the sidecar handle a failure the same way
//! whichever store is configured. Each variant says what was being done (and to which row);
//! its source is the redb, ScyllaDB driver, serde or I/O error that caused it, so nothing is
//! flattened to text before it is reported. [`StoreError::class`] is what callers decide on.

use scylla::errors::{
    DbError, ExecutionError, FirstRowError, IntoRowsResultError, MaybeFirstRowError,
    NewSessionError, PrepareError, RequestAttemptError, RowsError, SchemaAgreementError,
    UseKeyspaceError,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ErrorClass;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A stored row cannot be read back. Not retried: the row stays unreadable until a batch
    /// overwrites it.
    #[error("corrupt record {key}: {source}")]
    Corrupt {
        /// The row, as `user tenant/id`, `history tenant/id#seq`, `outbox group/p3` …
        key: String,
        #[source]
        source: Corruption,
    },
    /// A row cannot be serialized for writing.
    #[error("cannot encode {key}: {source}")]
    Encode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// A number does not fit the column it is stored in.
    #[error("{key}: {value} does not fit a {column}")]
    OutOfRange {
        key: String,
        value: u64,
        column: &'static str,
    },

    /// The embedded store's directory cannot be created.
    #[error("cannot create the store directory {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The embedded store's lock file cannot be opened, locked or written.
    #[error("cannot {action} {}: {source}", path.display())]
    LockFile {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another process owns the embedded store's directory.
    #[error(
        "{} is locked by another questline process (pid {})",
        dir.display(),
        pid.map_or_else(|| "unknown".to_string(), |p| p.to_string())
    )]
    Locked { dir: PathBuf, pid: Option<u32> },
    /// redb refused to open the database file.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: Box<redb::DatabaseError>,
    },
    /// The directory was written by a newer questline.
    #[error(
        "the store was written by a newer questline (format {found}, this build reads up to \
         {supported})"
    )]
    NewerFormat { found: u64, supported: u64 },
    /// The directory was written by a development build whose format is not carried over.
    #[error(
        "the store was written by a development build of questline (format {found}; this \
         build reads format {supported}): its unpublished events cannot be carried over. Stop \
         that build cleanly (SIGTERM publishes everything) and start this one on a new store \
         directory"
    )]
    OlderFormat { found: u64, supported: u64 },
    /// An embedded store operation failed in redb.
    #[error("embedded store, {op}: {source}")]
    Embedded {
        op: &'static str,
        #[source]
        source: Box<redb::Error>,
    },
    /// The embedded store closed its database after an I/O failure (a full disk, typically)
    /// and could not open it again yet; it tries again on the next call.
    #[error(
        "embedded store: closed after an I/O failure (is the disk full?) and not reopened yet{}",
        source.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
    )]
    Wedged {
        /// Why the last attempt to reopen failed.
        #[source]
        source: Option<Arc<redb::DatabaseError>>,
    },
    /// The embedded store's journal could not be written, synced or read (a full disk,
    /// typically). The batch was not acknowledged; the caller writes it again.
    #[error("embedded store journal: cannot {action} {}: {source}", path.display())]
    Journal {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The embedded store's checkpoint has not caught up with the journal for `waited`: its
    /// memory is bounded, so writes wait for it, and after this long fail (and are retried).
    #[error(
        "embedded store: the checkpoint into the database is {waited:?} behind{}",
        reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
    )]
    CheckpointBehind {
        waited: std::time::Duration,
        /// Why the last checkpoint attempt failed, if one did.
        reason: Option<String>,
    },
    /// The blocking task running an embedded store call panicked or was cancelled.
    #[error("embedded store task failed: {source}")]
    Task {
        #[source]
        source: tokio::task::JoinError,
    },

    /// The ScyllaDB settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No session could be established within the connect timeout.
    #[error("connecting to ScyllaDB at {nodes} timed out after {after:?}")]
    ConnectTimeout { nodes: String, after: Duration },
    /// The driver could not establish a session.
    #[error("cannot connect to ScyllaDB at {nodes}: {source}")]
    Connect {
        nodes: String,
        #[source]
        source: Box<NewSessionError>,
    },
    /// A CQL statement failed; `what` names the operation or row.
    #[error("{what}: {source}{}", missing_schema_hint(source))]
    Cql {
        what: String,
        #[source]
        source: Box<ExecutionError>,
    },
    /// Preparing a statement failed.
    #[error("preparing a statement: {source}{}", prepare_hint(source))]
    Prepare {
        #[source]
        source: Box<PrepareError>,
    },
    /// A schema statement of a migration failed.
    #[error("schema statement failed: {source}: {statement}")]
    Schema {
        statement: String,
        #[source]
        source: Box<ExecutionError>,
    },
    /// The cluster's nodes did not agree on the schema in time.
    #[error("schema agreement not reached: {source}")]
    SchemaAgreement {
        #[source]
        source: Box<SchemaAgreementError>,
    },
    /// The CQL server answered with a result of another shape than the statement's: the
    /// table is not the one this build expects.
    #[error("{what}: unexpected result from the CQL server: {source}")]
    UnexpectedResult {
        what: String,
        #[source]
        source: Box<ResultShape>,
    },
    /// Claiming a partition lost every race for a new epoch.
    #[error("epoch of {group}/{partition}: lost {attempts} claim races in a row")]
    ClaimRaces {
        group: String,
        partition: String,
        attempts: usize,
    },
}

/// Why a stored row cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    #[error("cannot decode: {0}")]
    Json(#[from] serde_json::Error),
    /// A binary row (user or resource state) that does not decode. Boxed: errors stay small.
    #[error("cannot decode: {0}")]
    Binary(Box<super::wire::WireError>),
    #[error("empty row")]
    Empty,
    #[error("row of {len} bytes is shorter than its header")]
    Short { len: usize },
    #[error("unknown row format {0}")]
    Format(u8),
    /// A CQL value of the row does not deserialize.
    #[error("cannot deserialize: {0}")]
    Cql(#[from] scylla::deserialize::DeserializationError),
    /// A finished counter holds a value out of range.
    #[error("out of range: challenge {challenge}, count {count}")]
    Counter { challenge: i64, count: i64 },
    /// Bytes the store keeps opaque (a partition's outbox) that their owner cannot read.
    #[error(transparent)]
    Payload(Box<dyn std::error::Error + Send + Sync>),
}

impl From<super::wire::WireError> for Corruption {
    fn from(e: super::wire::WireError) -> Self {
        Corruption::Binary(Box::new(e))
    }
}

/// A CQL result of an unexpected shape.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultShape {
    #[error(transparent)]
    NotRows(#[from] IntoRowsResultError),
    #[error(transparent)]
    FirstRow(#[from] MaybeFirstRowError),
    #[error(transparent)]
    Row(#[from] FirstRowError),
    #[error(transparent)]
    Columns(#[from] RowsError),
    /// A lightweight transaction's `[applied]` column held something else than a boolean.
    #[error("unexpected [applied] value {0:?}")]
    Applied(Option<Option<scylla::value::CqlValue>>),
}

// The engines' errors are boxed: they are large (redb's, the driver's: 150-280 bytes) and
// every store call returns this type.

/// Invalid ScyllaDB settings, refused before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error(
        "invalid keyspace name {name:?}: use 1 to 48 characters, a lower-case letter first, \
         then lower-case letters, digits or '_'"
    )]
    Keyspace { name: String },
    #[error("invalid replication {value:?}: expected a CQL map such as {example}")]
    Replication {
        value: String,
        example: &'static str,
    },
    #[error("no ScyllaDB contact points configured")]
    NoContactPoints,
    #[error("unknown consistency level {value:?} (expected e.g. LOCAL_QUORUM, QUORUM, ONE)")]
    Consistency { value: String },
    #[error(
        "keyspace '{keyspace}' uses tablets, where ScyllaDB rejects the lightweight transaction \
         that claims a partition; recreate it with tablets = {{'enabled': false}} \
         (docs/operations.md, \"ScyllaDB keyspace: tablets off\")"
    )]
    Tablets { keyspace: String },
}

impl StoreError {
    /// How the caller should handle this failure (see [`ErrorClass`]).
    pub fn class(&self) -> ErrorClass {
        use ErrorClass::{Fatal, Permanent, Transient};
        match self {
            StoreError::Corrupt { .. }
            | StoreError::Encode { .. }
            | StoreError::OutOfRange { .. } => Permanent,
            StoreError::CreateDir { .. }
            | StoreError::LockFile { .. }
            | StoreError::Locked { .. }
            | StoreError::NewerFormat { .. }
            | StoreError::OlderFormat { .. }
            | StoreError::Config(_)
            | StoreError::UnexpectedResult { .. } => Fatal,
            StoreError::Open { source, .. } => database_class(source),
            StoreError::Embedded { source, .. } => redb_class(source),
            // Reopening is retried on the next call; only a reopen that can never succeed
            // (a newer file format, a repair that was refused) stops the worker.
            StoreError::Wedged { source } => source.as_deref().map_or(Transient, database_class),
            StoreError::Journal { .. } | StoreError::CheckpointBehind { .. } => Transient,
            StoreError::Task { source } if source.is_panic() => Fatal,
            StoreError::Task { .. } => Transient,
            StoreError::ConnectTimeout { .. }
            | StoreError::SchemaAgreement { .. }
            | StoreError::ClaimRaces { .. } => Transient,
            StoreError::Connect { source, .. } => session_class(source),
            StoreError::Cql { source, .. } | StoreError::Schema { source, .. } => {
                execution_class(source)
            }
            StoreError::Prepare { source } => prepare_class(source),
        }
    }

    /// A row that does not decode.
    pub fn corrupt(key: impl std::fmt::Display, source: impl Into<Corruption>) -> Self {
        StoreError::Corrupt {
            key: key.to_string(),
            source: source.into(),
        }
    }
}

/// redb's errors: I/O trouble may pass (a full disk can be freed), a value over redb's size
/// limit is that row's problem, and everything else (a damaged file, a table of another
/// type, a poisoned lock after a panic) needs an operator.
fn redb_class(e: &redb::Error) -> ErrorClass {
    match e {
        redb::Error::Io(_) | redb::Error::PreviousIo => ErrorClass::Transient,
        redb::Error::ValueTooLarge(_) => ErrorClass::Permanent,
        _ => ErrorClass::Fatal,
    }
}

fn database_class(e: &redb::DatabaseError) -> ErrorClass {
    match e {
        redb::DatabaseError::Storage(
            redb::StorageError::Io(_) | redb::StorageError::PreviousIo,
        ) => ErrorClass::Transient,
        _ => ErrorClass::Fatal,
    }
}

/// Reaching the cluster (connections, timeouts, overloaded or missing replicas) is transient;
/// a statement the cluster rejects (missing table, bad syntax, no permission) is fatal.
fn execution_class(e: &ExecutionError) -> ErrorClass {
    match e {
        ExecutionError::LastAttemptError(attempt) => attempt_class(attempt),
        ExecutionError::PrepareError(p) => prepare_class(p),
        ExecutionError::BadQuery(_) => ErrorClass::Fatal,
        ExecutionError::UseKeyspaceError(UseKeyspaceError::BadKeyspaceName(_)) => ErrorClass::Fatal,
        _ => ErrorClass::Transient,
    }
}

fn attempt_class(e: &RequestAttemptError) -> ErrorClass {
    match e {
        RequestAttemptError::DbError(
            DbError::SyntaxError
            | DbError::Invalid
            | DbError::AlreadyExists { .. }
            | DbError::Unauthorized
            | DbError::AuthenticationError
            | DbError::ConfigError,
            _,
        )
        | RequestAttemptError::SerializationError(_)
        | RequestAttemptError::CqlRequestSerialization(_) => ErrorClass::Fatal,
        _ => ErrorClass::Transient,
    }
}

fn prepare_class(e: &PrepareError) -> ErrorClass {
    match e {
        PrepareError::AllAttemptsFailed { first_attempt } => attempt_class(first_attempt),
        _ => ErrorClass::Transient,
    }
}

/// A session that cannot be configured as asked is fatal; an unreachable cluster transient.
fn session_class(e: &NewSessionError) -> ErrorClass {
    match e {
        NewSessionError::EmptyKnownNodesList
        | NewSessionError::IllegalConfig(_)
        | NewSessionError::UseKeyspaceError(UseKeyspaceError::BadKeyspaceName(_)) => {
            ErrorClass::Fatal
        }
        _ => ErrorClass::Transient,
    }
}

/// The server's message when a statement names a table or keyspace it does not have:
/// ScyllaDB says "unconfigured table", Cassandra "does not exist", the CQL test server
/// "does nor exist".
fn missing_schema_message(e: &RequestAttemptError) -> bool {
    match e {
        RequestAttemptError::DbError(DbError::Invalid | DbError::ConfigError, message) => {
            let lower = message.to_lowercase();
            lower.contains("unconfigured") || lower.contains("exist")
        }
        _ => false,
    }
}

const MIGRATE_HINT: &str = " (has `questline migrate` been run?)";

fn missing_schema_hint(e: &ExecutionError) -> &'static str {
    match e {
        ExecutionError::LastAttemptError(attempt) if missing_schema_message(attempt) => {
            MIGRATE_HINT
        }
        ExecutionError::PrepareError(p) => prepare_hint(p),
        _ => "",
    }
}

fn prepare_hint(e: &PrepareError) -> &'static str {
    match e {
        PrepareError::AllAttemptsFailed { first_attempt }
            if missing_schema_message(first_attempt) =>
        {
            MIGRATE_HINT
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::from(kind)
    }

    #[test]
    fn rows_are_permanent_setup_is_fatal_reachability_transient() {
        let corrupt = StoreError::corrupt("user t/u", Corruption::Empty);
        assert_eq!(corrupt.class(), ErrorClass::Permanent);
        assert!(corrupt.to_string().contains("user t/u"), "{corrupt}");
        let locked = StoreError::Locked {
            dir: "/data".into(),
            pid: Some(42),
        };
        assert_eq!(locked.class(), ErrorClass::Fatal);
        assert_eq!(
            locked.to_string(),
            "/data is locked by another questline process (pid 42)"
        );
        let timeout = StoreError::Cql {
            what: "user t/u".into(),
            source: Box::new(ExecutionError::RequestTimeout(Duration::from_secs(5))),
        };
        assert_eq!(timeout.class(), ErrorClass::Transient);
        let config = StoreError::from(ConfigError::NoContactPoints);
        assert_eq!(config.class(), ErrorClass::Fatal);
    }

    #[test]
    fn redb_io_is_transient_a_damaged_file_fatal_a_huge_value_permanent() {
        let embedded = |source| StoreError::Embedded {
            op: "writing a batch",
            source: Box::new(source),
        };
        let full = embedded(redb::Error::Io(io(std::io::ErrorKind::StorageFull)));
        assert_eq!(full.class(), ErrorClass::Transient);
        assert_eq!(
            embedded(redb::Error::PreviousIo).class(),
            ErrorClass::Transient
        );
        assert_eq!(
            embedded(redb::Error::Corrupted("bad page".into())).class(),
            ErrorClass::Fatal
        );
        assert_eq!(
            embedded(redb::Error::ValueTooLarge(1 << 33)).class(),
            ErrorClass::Permanent
        );
        let wedged = StoreError::Wedged {
            source: Some(Arc::new(redb::DatabaseError::Storage(
                redb::StorageError::Io(io(std::io::ErrorKind::StorageFull)),
            ))),
        };
        assert_eq!(wedged.class(), ErrorClass::Transient);
        assert!(wedged.to_string().contains("disk full"), "{wedged}");
        let upgrade = StoreError::Wedged {
            source: Some(Arc::new(redb::DatabaseError::UpgradeRequired(1))),
        };
        assert_eq!(upgrade.class(), ErrorClass::Fatal);
    }

    #[test]
    fn rejected_statements_are_fatal_and_hint_at_migrate() {
        let missing = StoreError::Cql {
            what: "loading users".into(),
            source: Box::new(ExecutionError::LastAttemptError(
                RequestAttemptError::DbError(DbError::Invalid, "unconfigured table users".into()),
            )),
        };
        assert_eq!(missing.class(), ErrorClass::Fatal);
        assert!(missing.to_string().ends_with(MIGRATE_HINT), "{missing}");
        let unauthorized = StoreError::Cql {
            what: "loading users".into(),
            source: Box::new(ExecutionError::LastAttemptError(
                RequestAttemptError::DbError(DbError::Unauthorized, "no SELECT permission".into()),
            )),
        };
        assert_eq!(unauthorized.class(), ErrorClass::Fatal);
        assert!(!unauthorized.to_string().contains("migrate"));
        let overloaded = StoreError::Cql {
            what: "writing a batch".into(),
            source: Box::new(ExecutionError::LastAttemptError(
                RequestAttemptError::DbError(DbError::Overloaded, "too many requests".into()),
            )),
        };
        assert_eq!(overloaded.class(), ErrorClass::Transient);
    }
}
