//! The ScyllaDB store: the production [`StateStore`], through the `scylla` driver.
//!
//! # Choices, and why
//!
//! - **Key/value shaped schema** (`schemas/cql/`): users by `(tenant, user_id)`, resources by
//!   key, history as one partition per user with one row per `seq`, claims by id, finished
//!   counts as one row per (challenge, input partition). Every hot-path read and write is by
//!   the full primary key; nothing needs ALLOW FILTERING, counters, TTL or ORDER BY.
//! - **History pages are point reads.** The user record holds `history_len`, so a page is a
//!   known set of seqs, read concurrently by exact key. This is as cheap as a clustering
//!   range on ScyllaDB, and it is the only form the CQL test server answers correctly.
//! - **Prepared statements only, every value bound**; statements are prepared once, lazily, so
//!   [`ScyllaStore::connect`] works before [`ScyllaStore::migrate`] has created the tables.
//! - **Unlogged batches of a few partitions with the same replicas**: a user's record, history
//!   entries and claims share one partition; up to `partitions_per_batch` such partitions
//!   whose replicas are the same nodes go in one batch (see `cql_batches`), routed to one of
//!   those replicas; batches run concurrently (bounded). Logged (multi-partition atomic)
//!   batches would double the write cost, and are not needed: every write is an idempotent
//!   upsert that the worker replays after a failure.
//! - **Fencing by cell timestamps.** A fenced batch carries its owner's write timestamp as the
//!   batch's protocol-level default timestamp — the same cell timestamp `USING TIMESTAMP ?`
//!   would set. ScyllaDB keeps the cell with the larger timestamp, so a zombie owner's late
//!   writes lose to its successor's without any read-before-write or lightweight transaction
//!   on the hot path. (The protocol-level form is used rather than a `USING TIMESTAMP ?` bind
//!   marker because the CQL test server ignores the `USING` clause and then rejects the extra
//!   bound value; on ScyllaDB the two are equivalent.)
//! - **Claiming a partition is the one lightweight transaction**: `INSERT ... IF NOT EXISTS` of
//!   the new epoch, so two consumers claiming at once never get the same epoch. It runs once
//!   per partition assignment, never per record.
//! - **Idempotent, retried, timed out on purpose.** Every statement is an upsert or a read, so
//!   all are marked idempotent and the driver's default retry policy may retry them on
//!   timeouts and on another node; each request has a client-side timeout, after which the
//!   caller sees a transient [`StoreError::Cql`] and pauses its partitions instead of piling
//!   up. A statement the cluster rejects (no such table, no permission) is fatal instead:
//!   retrying cannot help ([`StoreError::class`]).
//! - **Consistency** is configurable, LOCAL_QUORUM by default: with replication factor 3 a
//!   write survives one replica down and a LOCAL_QUORUM read always sees it.

use futures::{StreamExt, TryStreamExt};
use rustc_hash::FxHashMap;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::cluster::ClusterState;
use scylla::errors::{DbError, ExecutionError, IntoRowsResultError, RequestAttemptError};
use scylla::policies::retry::DefaultRetryPolicy;
use scylla::response::query_result::QueryResult;
use scylla::response::PagingState;
use scylla::serialize::row::{RowSerializationContext, SerializeRow};
use scylla::serialize::writers::RowWriter;
use scylla::serialize::SerializationError;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency, Statement};
use scylla::value::{CqlTimestamp, CqlValue, Row};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;

use async_trait::async_trait;

use super::codec::{self, decode, encode, page_seqs};
use super::cql_batches::{self, PackLimits, PackedBatch, PartitionWrites};
use super::cql_schema::{validate_keyspace, DEFAULT_REPLICATION, MIGRATIONS};
use super::{
    BatchWrite, ClaimRecord, ConfigError, Corruption, HistoryEntry, OutboxWrite, ResourceRecord,
    ResultShape, StateStore, StoreError, UserKey, UserRecord,
};
use crate::metrics::metrics;

/// At most this many statements per batch: ScyllaDB warns above 128 KiB per batch and fails
/// above 1 MiB by default; a user's batch is normally one record and a few history entries.
const MAX_BATCH_STATEMENTS: usize = 32;
/// At most this many bytes of values in a batch of several partitions: a quarter of
/// ScyllaDB's default batch-size warning (128 KiB), which it measures on the mutations in
/// memory, larger than the values sent (a partition alone may pass it, as it always could).
const MAX_PACKED_BATCH_BYTES: usize = 32 * 1024;
/// Partitions per batch unless configured (`store.scylla.partitions_per_batch`): Apache
/// Cassandra's default threshold for warning about unlogged batches across partitions (10).
/// (ScyllaDB warns about a batch by its size only, above 128 KiB by default.)
pub const DEFAULT_PARTITIONS_PER_BATCH: usize = 10;
/// The largest outbox chunk: well under ScyllaDB's default 128 KiB batch-size warning
/// once the row's other columns are added.
const OUTBOX_CHUNK: usize = 120 * 1024;
/// Page size for the one multi-row read (finished counts of a tenant).
const SCAN_PAGE_SIZE: i32 = 500;
/// How many times a partition claim retries after losing a race for an epoch.
const CLAIM_ATTEMPTS: usize = 64;

/// Connection settings. [`ScyllaOptions::new`] gives the defaults for everything but the
/// contact points and keyspace.
#[derive(Debug, Clone)]
pub struct ScyllaOptions {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    /// Keyspace of every table; lower-case letters, digits and `_`.
    pub keyspace: String,
    /// Consistency of every read and write; LOCAL_QUORUM by default.
    pub consistency: Consistency,
    /// Replication map used only when `migrate` creates the keyspace.
    pub replication: String,
    /// Client-side timeout of one request, retries included.
    pub request_timeout: Duration,
    /// Timeout of establishing the session.
    pub connect_timeout: Duration,
    /// Requests in flight per store call (a batch's partitions, a page's history reads).
    pub concurrency: usize,
    /// Partitions with the same replicas written in one CQL batch; 1: each in a batch of its own.
    pub partitions_per_batch: usize,
}

impl ScyllaOptions {
    pub fn new(nodes: Vec<String>, keyspace: impl Into<String>) -> Self {
        ScyllaOptions {
            nodes,
            keyspace: keyspace.into(),
            consistency: Consistency::LocalQuorum,
            replication: DEFAULT_REPLICATION.to_string(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            concurrency: 128,
            partitions_per_batch: DEFAULT_PARTITIONS_PER_BATCH,
        }
    }
}

/// Parses a consistency level as written in configuration (`local_quorum`, `QUORUM`, `one` …).
pub fn parse_consistency(text: &str) -> Result<Consistency, StoreError> {
    let c = match text.trim().to_ascii_uppercase().replace('-', "_").as_str() {
        "ANY" => Consistency::Any,
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        _ => {
            return Err(ConfigError::Consistency {
                value: text.to_string(),
            }
            .into())
        }
    };
    Ok(c)
}

/// The ScyllaDB [`StateStore`].
pub struct ScyllaStore {
    session: Session,
    keyspace: String,
    replication: String,
    concurrency: usize,
    /// How a batch's partitions are packed into CQL batches.
    pack: PackLimits,
    statements: OnceCell<Statements>,
    /// Set once the server was seen ignoring `IF NOT EXISTS` (logged once).
    warned_no_lwt: AtomicBool,
}

impl std::fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaStore")
            .field("keyspace", &self.keyspace)
            .finish()
    }
}

/// Every statement the store runs, prepared once.
struct Statements {
    put_user: PreparedStatement,
    get_user: PreparedStatement,
    put_resource: PreparedStatement,
    get_resource: PreparedStatement,
    put_history: PreparedStatement,
    get_history: PreparedStatement,
    put_claim: PreparedStatement,
    get_claim: PreparedStatement,
    put_finished: PreparedStatement,
    scan_finished: PreparedStatement,
    get_epoch: PreparedStatement,
    put_epoch: PreparedStatement,
    claim_epoch: PreparedStatement,
    put_outbox: PreparedStatement,
    get_outbox: PreparedStatement,
}

impl ScyllaStore {
    /// Connects with default options (see [`ScyllaOptions::new`]) and the given consistency.
    pub async fn connect(
        nodes: &[String],
        keyspace: &str,
        consistency: Consistency,
    ) -> Result<Self, StoreError> {
        let mut options = ScyllaOptions::new(nodes.to_vec(), keyspace);
        options.consistency = consistency;
        Self::connect_with(options).await
    }

    /// Connects to the cluster. Does not need the schema to exist yet: statements are prepared
    /// on first use, so `questline migrate` can connect and then create it.
    pub async fn connect_with(options: ScyllaOptions) -> Result<Self, StoreError> {
        validate_keyspace(&options.keyspace)?;
        let replication = options.replication.trim();
        if !(replication.starts_with('{') && replication.ends_with('}'))
            || replication.contains(';')
        {
            return Err(ConfigError::Replication {
                value: replication.to_string(),
                example: DEFAULT_REPLICATION,
            }
            .into());
        }
        if options.nodes.is_empty() {
            return Err(ConfigError::NoContactPoints.into());
        }
        let profile = ExecutionProfile::builder()
            .consistency(options.consistency)
            // Only the partition claim is a lightweight transaction; keep it in the local DC.
            .serial_consistency(Some(SerialConsistency::LocalSerial))
            .request_timeout(Some(options.request_timeout))
            // The driver's default policy: an idempotent statement is retried on the next node
            // after an overloaded or failing node or a broken connection, and once after an
            // unavailable or a read timeout. Every statement here is marked idempotent (upserts
            // and reads); a retried partition claim at worst skips an epoch.
            .retry_policy(Arc::new(DefaultRetryPolicy::new()))
            .build();
        let builder = SessionBuilder::new()
            .known_nodes(&options.nodes)
            .default_execution_profile_handle(profile.into_handle())
            .connection_timeout(options.connect_timeout)
            // Only the light metadata that token- and tablet-aware routing needs (partitioners,
            // replication), and only for our keyspace: the store never inspects columns.
            .keyspaces_to_fetch([options.keyspace.clone()])
            .fetch_full_schema_metadata(false)
            // The CQL test server has an empty system.peers, on which the driver's automatic
            // schema-agreement wait fails: DDL waits explicitly in `migrate` instead.
            .auto_await_schema_agreement(false);
        let after = options.connect_timeout * 2;
        let session = tokio::time::timeout(after, builder.build())
            .await
            .map_err(|_| StoreError::ConnectTimeout {
                nodes: options.nodes.join(","),
                after,
            })?
            .map_err(|source| StoreError::Connect {
                nodes: options.nodes.join(","),
                source: Box::new(source),
            })?;
        Ok(ScyllaStore {
            session,
            keyspace: options.keyspace,
            replication: replication.to_string(),
            concurrency: options.concurrency.max(1),
            pack: PackLimits {
                partitions: options.partitions_per_batch.max(1),
                statements: MAX_BATCH_STATEMENTS,
                bytes: MAX_PACKED_BATCH_BYTES,
            },
            statements: OnceCell::new(),
            warned_no_lwt: AtomicBool::new(false),
        })
    }

    /// The driver session, for operational tooling and tests.
    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    /// Creates or upgrades the schema: applies the numbered files of `schemas/cql/` that the
    /// keyspace's `schema_migrations` table does not list yet, in order, waiting for schema
    /// agreement after each. Idempotent. Returns the names of the files applied now.
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let ks = &self.keyspace;
        let Some((first, later)) = MIGRATIONS.split_first() else {
            return Ok(Vec::new());
        };
        self.create_keyspace_without_tablets().await?;
        // The first file creates the keyspace (unless it exists now) and the ledger itself;
        // all IF NOT EXISTS.
        self.run_ddl(first.statements(ks, &self.replication))
            .await?;
        self.refuse_tablets().await?;
        let mut applied = Vec::new();
        let get = self
            .prepare(format!(
                "SELECT version FROM {ks}.schema_migrations WHERE version = ?"
            ))
            .await?;
        let put = self
            .prepare(format!(
                "INSERT INTO {ks}.schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"
            ))
            .await?;
        for migration in std::iter::once(first).chain(later) {
            let done = self
                .session
                .execute_unpaged(&get, (migration.version,))
                .await
                .map_err(|e| execution_error("reading schema_migrations", e))?
                .into_rows_result()
                .map_err(|e| rows_error("schema_migrations", e))?
                .maybe_first_row::<(i32,)>()
                .map_err(|e| first_row_error("schema_migrations", e))?
                .is_some();
            if done {
                continue;
            }
            if migration.version != first.version {
                self.run_ddl(migration.statements(ks, &self.replication))
                    .await?;
            }
            self.session
                .execute_unpaged(
                    &put,
                    (
                        migration.version,
                        migration.name,
                        CqlTimestamp(now_millis()),
                    ),
                )
                .await
                .map_err(|e| execution_error("recording a migration", e))?;
            tracing::info!(keyspace = %ks, migration = migration.name, "schema migration applied");
            applied.push(migration.name.to_string());
        }
        Ok(applied)
    }

    /// Creates the keyspace with tablets disabled, where the server knows the option.
    ///
    /// ScyllaDB 6 gives new NetworkTopologyStrategy keyspaces tablets by default and rejects
    /// lightweight transactions in them ("LWT is not yet supported with tablets"); the
    /// partition claim is one. Servers without the option (Cassandra, the CQL test server)
    /// reject the statement as invalid, and 001_keyspace.cql then creates the keyspace.
    async fn create_keyspace_without_tablets(&self) -> Result<(), StoreError> {
        let cql = format!(
            "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {} AND tablets = {{'enabled': false}}",
            self.keyspace, self.replication
        );
        match self.session.query_unpaged(cql.as_str(), ()).await {
            Ok(_) => Ok(()),
            Err(ExecutionError::LastAttemptError(RequestAttemptError::DbError(
                DbError::SyntaxError | DbError::Invalid | DbError::ConfigError,
                message,
            ))) => {
                tracing::debug!(%message, "the CQL server has no tablets option; keyspace created without it");
                Ok(())
            }
            Err(source) => Err(StoreError::Schema {
                statement: cql,
                source: Box::new(source),
            }),
        }
    }

    /// Fails `migrate` on a keyspace that uses tablets (one created beforehand, or on a
    /// cluster that enforces tablets), where every partition claim would fail.
    async fn refuse_tablets(&self) -> Result<(), StoreError> {
        let rows = match self
            .session
            .query_unpaged(
                "SELECT initial_tablets FROM system_schema.scylla_keyspaces WHERE keyspace_name = ?",
                (self.keyspace.as_str(),),
            )
            .await
        {
            Ok(result) => result,
            // Not ScyllaDB (no such table): no tablets either.
            Err(_) => return Ok(()),
        };
        let tablets = rows
            .into_rows_result()
            .ok()
            .and_then(|r| r.maybe_first_row::<(Option<i32>,)>().ok().flatten())
            .is_some_and(|(initial,)| initial.is_some());
        if tablets {
            return Err(ConfigError::Tablets {
                keyspace: self.keyspace.clone(),
            }
            .into());
        }
        Ok(())
    }

    async fn run_ddl(&self, statements: Vec<String>) -> Result<(), StoreError> {
        for cql in statements {
            self.session
                .query_unpaged(cql.as_str(), ())
                .await
                .map_err(|source| StoreError::Schema {
                    statement: cql.clone(),
                    source: Box::new(source),
                })?;
        }
        self.session
            .await_schema_agreement()
            .await
            .map_err(|source| StoreError::SchemaAgreement {
                source: Box::new(source),
            })?;
        Ok(())
    }

    async fn prepare(&self, cql: String) -> Result<PreparedStatement, StoreError> {
        let mut statement = Statement::new(cql);
        statement.set_is_idempotent(true);
        let mut prepared =
            self.session
                .prepare(statement)
                .await
                .map_err(|source| StoreError::Prepare {
                    source: Box::new(source),
                })?;
        prepared.set_is_idempotent(true);
        Ok(prepared)
    }

    async fn statements(&self) -> Result<&Statements, StoreError> {
        self.statements
            .get_or_try_init(|| async {
                let ks = &self.keyspace;
                let mut get_history = self
                    .prepare(format!(
                        "SELECT seq, entry FROM {ks}.history WHERE tenant = ? AND user_id = ? AND seq = ?"
                    ))
                    .await?;
                // See `read_exact_row`: small pages keep a misbehaving server's extra rows cheap.
                get_history.set_page_size(EXACT_READ_PAGE);
                let mut get_claim = self
                    .prepare(format!(
                        "SELECT claim_id, record FROM {ks}.claims WHERE tenant = ? AND user_id = ? AND claim_id = ?"
                    ))
                    .await?;
                get_claim.set_page_size(EXACT_READ_PAGE);
                let mut scan_finished = self
                    .prepare(format!(
                        "SELECT challenge_id, users_finished FROM {ks}.finished WHERE tenant = ?"
                    ))
                    .await?;
                scan_finished.set_page_size(SCAN_PAGE_SIZE);
                let mut get_outbox = self
                    .prepare(format!(
                        "SELECT chunk, write_id, chunks, bytes FROM {ks}.outbox WHERE owner = ? AND chunk = ?"
                    ))
                    .await?;
                get_outbox.set_page_size(EXACT_READ_PAGE);
                Ok(Statements {
                    put_outbox: self
                        .prepare(format!(
                            "INSERT INTO {ks}.outbox (owner, chunk, write_id, chunks, bytes) VALUES (?, ?, ?, ?, ?)"
                        ))
                        .await?,
                    get_outbox,
                    put_user: self
                        .prepare(format!(
                            "INSERT INTO {ks}.users (tenant, user_id, record) VALUES (?, ?, ?)"
                        ))
                        .await?,
                    get_user: self
                        .prepare(format!(
                            "SELECT record FROM {ks}.users WHERE tenant = ? AND user_id = ?"
                        ))
                        .await?,
                    put_resource: self
                        .prepare(format!(
                            "INSERT INTO {ks}.resources (resource_key, record) VALUES (?, ?)"
                        ))
                        .await?,
                    get_resource: self
                        .prepare(format!(
                            "SELECT record FROM {ks}.resources WHERE resource_key = ?"
                        ))
                        .await?,
                    put_history: self
                        .prepare(format!(
                            "INSERT INTO {ks}.history (tenant, user_id, seq, entry) VALUES (?, ?, ?, ?)"
                        ))
                        .await?,
                    get_history,
                    put_claim: self
                        .prepare(format!(
                            "INSERT INTO {ks}.claims (tenant, user_id, claim_id, record) VALUES (?, ?, ?, ?)"
                        ))
                        .await?,
                    get_claim,
                    put_finished: self
                        .prepare(format!(
                            "INSERT INTO {ks}.finished (tenant, challenge_id, input_partition, users_finished) VALUES (?, ?, ?, ?)"
                        ))
                        .await?,
                    scan_finished,
                    get_epoch: self
                        .prepare(format!(
                            "SELECT epoch FROM {ks}.partition_epochs WHERE consumer_group = ? AND input_partition = ?"
                        ))
                        .await?,
                    put_epoch: self
                        .prepare(format!(
                            "INSERT INTO {ks}.partition_epochs (consumer_group, input_partition, epoch) VALUES (?, ?, ?)"
                        ))
                        .await?,
                    claim_epoch: self
                        .prepare(format!(
                            "INSERT INTO {ks}.partition_claims (consumer_group, input_partition, epoch) VALUES (?, ?, ?) IF NOT EXISTS"
                        ))
                        .await?,
                })
            })
            .await
    }

    /// Reads one row by its full key and returns its blob column.
    async fn read_blob<V: SerializeRow>(
        &self,
        statement: &PreparedStatement,
        values: V,
        what: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(statement, values)
            .await
            .map_err(|e| execution_error(what, e))?
            .into_rows_result()
            .map_err(|e| rows_error(what, e))?;
        Ok(rows
            .maybe_first_row::<(Vec<u8>,)>()
            .map_err(|e| first_row_error(what, e))?
            .map(|(blob,)| blob))
    }

    /// Reads the row whose last clustering column equals `wanted`, returning its blob.
    ///
    /// On ScyllaDB the full key selects at most one row. The CQL test server (kassandra)
    /// answers `c = ?` on a single clustering column with the rows from `c` onwards, so the
    /// rows are checked and the first page is enough: rows come in clustering order there.
    async fn read_exact_row<K, V>(
        &self,
        statement: &PreparedStatement,
        values: V,
        wanted: &K,
        what: &str,
    ) -> Result<Option<Vec<u8>>, StoreError>
    where
        K: PartialEq + for<'f, 'm> scylla::deserialize::value::DeserializeValue<'f, 'm>,
        V: SerializeRow,
    {
        let row = self
            .read_matching_row::<(K, Vec<u8>), V>(statement, values, |(key, _)| key == wanted, what)
            .await?;
        Ok(row.map(|(_, blob)| blob))
    }

    /// The first row of the first page that `matches` (see [`Self::read_exact_row`]).
    async fn read_matching_row<R, V>(
        &self,
        statement: &PreparedStatement,
        values: V,
        matches: impl Fn(&R) -> bool,
        what: &str,
    ) -> Result<Option<R>, StoreError>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
        V: SerializeRow,
    {
        let (result, _) = self
            .session
            .execute_single_page(statement, values, PagingState::start())
            .await
            .map_err(|e| execution_error(what, e))?;
        let rows = result.into_rows_result().map_err(|e| rows_error(what, e))?;
        for row in rows.rows::<R>().map_err(|e| typed_rows_error(what, e))? {
            let row = row.map_err(|e| StoreError::corrupt(what, e))?;
            if matches(&row) {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }

    async fn load_user(
        &self,
        st: &Statements,
        key: &UserKey,
    ) -> Result<Option<UserRecord>, StoreError> {
        let what = format!("user {}/{}", key.tenant, key.user_id);
        match self
            .read_blob(
                &st.get_user,
                (key.tenant.as_str(), key.user_id.as_str()),
                &what,
            )
            .await?
        {
            Some(blob) => decode(&what, &blob).map(Some),
            None => Ok(None),
        }
    }

    /// Writes each partition's statements in unlogged batches, packed by [`cql_batches::pack`]
    /// (partitions of the same replicas together, within [`ScyllaStore::pack`]'s limits),
    /// batches concurrently, every cell stamped with `timestamp`.
    async fn write_groups(
        &self,
        partitions: Vec<PartitionWrites<Replicas, BoundStatement<'_>>>,
        timestamp: i64,
    ) -> Result<(), StoreError> {
        let packed = cql_batches::pack(partitions, self.pack, |(_, row)| row.bytes());
        let partitions_per_batch = &metrics().cql_batch_partitions;
        let writes: Vec<_> = packed
            .into_iter()
            .map(
                |PackedBatch {
                     partitions,
                     statements,
                 }| {
                    partitions_per_batch.observe(partitions as f64);
                    let mut cql = Batch::new(BatchType::Unlogged);
                    cql.set_is_idempotent(true);
                    // Protocol-level default timestamp of every cell the batch writes: fencing.
                    cql.set_timestamp(Some(timestamp));
                    let mut values = Vec::with_capacity(statements.len());
                    for (statement, row) in statements {
                        cql.append_statement(statement.clone());
                        values.push(row);
                    }
                    async move {
                        self.session
                            .batch(&cql, values)
                            .await
                            .map(drop)
                            .map_err(|e| execution_error("writing a batch", e))
                    }
                },
            )
            .collect();
        futures::stream::iter(writes)
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// What the driver knows of where partitions live, read once per written batch.
    fn placement(&self) -> Placement {
        let ring = self.session.get_cluster_state();
        let only_node = match ring.get_nodes_info() {
            [only] => Some(Replicas::from_elem((only.host_id, 0), 1)),
            _ => None,
        };
        Placement {
            has_tokens: !ring.replica_locator().ring().is_empty(),
            ring,
            only_node,
        }
    }

    /// Where a user's partition lives (its record, history and claims share it): each replica
    /// as its host id and the shard that owns the partition there, as the driver's view of
    /// the ring names them; a one-node cluster's node when the ring names none (the CQL test
    /// server publishes no tokens). `None` when unknown: the partition is then written in a
    /// batch of its own. Partitions with the same answer share batches, so the replica the
    /// driver sends a batch to owns all of them, on the shard that receives it.
    fn user_replicas(
        &self,
        placement: &Placement,
        st: &Statements,
        key: &UserKey,
    ) -> Option<Replicas> {
        // Without a token ring no token names replicas: not worth computing one per user.
        let token = placement
            .has_tokens
            .then(|| {
                st.get_user
                    .calculate_token(&(key.tenant.as_str(), key.user_id.as_str()))
                    .ok()
                    .flatten()
            })
            .flatten();
        let mut replicas: Replicas = token
            .map(|token| {
                placement
                    .ring
                    .get_token_endpoints(&self.keyspace, "users", token)
            })
            .unwrap_or_default()
            .iter()
            .map(|(node, shard)| (node.host_id, *shard))
            .collect();
        if replicas.is_empty() {
            return placement.only_node.clone();
        }
        replicas.sort_unstable();
        replicas.dedup();
        Some(replicas)
    }

    /// Replaces an outbox: chunks 1..n, then chunk 0 with the count and this write's id
    /// (its timestamp), so chunk 0 is only ever seen complete with its chunks.
    async fn write_outbox(
        &self,
        st: &Statements,
        outbox: &OutboxWrite,
        timestamp: i64,
    ) -> Result<(), StoreError> {
        let pieces: Vec<&[u8]> = if outbox.bytes().is_empty() {
            vec![&[]]
        } else {
            outbox.bytes().chunks(OUTBOX_CHUNK).collect()
        };
        let count = i32::try_from(pieces.len()).map_err(|_| StoreError::OutOfRange {
            key: format!("outbox {}", outbox.owner),
            value: pieces.len() as u64,
            column: "chunk count (CQL int)",
        })?;
        // Each chunk alone: a chunk is nearly as large as a batch may be.
        let row = |i: usize| {
            let chunk = i32::try_from(i).expect("fewer chunks than count");
            PartitionWrites {
                replicas: None,
                statements: vec![(
                    &st.put_outbox,
                    BatchRow::Outbox(&outbox.owner, chunk, timestamp, count, pieces[i]),
                )],
            }
        };
        self.write_groups((1..pieces.len()).map(row).collect(), timestamp)
            .await?;
        self.write_groups(vec![row(0)], timestamp).await
    }

    /// One outbox chunk: `(write id, chunk count, bytes)`. Checked like `read_exact_row`.
    async fn read_outbox_chunk(
        &self,
        st: &Statements,
        owner: &str,
        chunk: i32,
    ) -> Result<Option<(i64, i32, Vec<u8>)>, StoreError> {
        let what = format!("outbox {owner}#{chunk}");
        let row = self
            .read_matching_row::<(i32, i64, i32, Vec<u8>), _>(
                &st.get_outbox,
                (owner, chunk),
                |(at, ..)| *at == chunk,
                &what,
            )
            .await?;
        Ok(row.map(|(_, id, count, bytes)| (id, count, bytes)))
    }

    /// Records the LWT outcome of a claim: `Some(applied)`, or `None` when the server answered
    /// without an `[applied]` column, i.e. it does not implement lightweight transactions.
    fn lwt_applied(result: QueryResult) -> Result<Option<bool>, StoreError> {
        let what = "partition claim";
        let rows = match result.into_rows_result() {
            Ok(rows) => rows,
            Err(IntoRowsResultError::ResultNotRows(_)) => return Ok(None),
            Err(e) => return Err(rows_error(what, e)),
        };
        let Some((index, _)) = rows.column_specs().get_by_name("[applied]") else {
            return Ok(None);
        };
        let row: Row = rows.first_row().map_err(|e| shape_error(what, e))?;
        match row.columns.get(index) {
            Some(Some(CqlValue::Boolean(applied))) => Ok(Some(*applied)),
            other => Err(shape_error(what, ResultShape::Applied(other.cloned()))),
        }
    }
}

/// Page size of exact-key reads (see [`ScyllaStore::read_exact_row`]).
const EXACT_READ_PAGE: i32 = 4;

/// The replicas of a partition, sorted: each node's host id and the shard that owns the
/// partition on it.
type Replicas = smallvec::SmallVec<[(uuid::Uuid, u32); 3]>;

/// The driver's view of where partitions live, for one written batch.
struct Placement {
    ring: Arc<ClusterState>,
    /// Whether the ring has tokens (the CQL test server publishes none).
    has_tokens: bool,
    /// The cluster's node when it has exactly one.
    only_node: Option<Replicas>,
}

/// A statement of a batch with its values.
type BoundStatement<'a> = (&'a PreparedStatement, BatchRow<'a>);

/// One statement's values in a batch mixing tables (a user's record, history and claims).
enum BatchRow<'a> {
    User(&'a str, &'a str, &'a [u8]),
    Resource(&'a str, &'a [u8]),
    History(&'a str, &'a str, i64, &'a [u8]),
    Claim(&'a str, &'a str, &'a str, Vec<u8>),
    Finished(&'a str, i64, &'a str, i64),
    /// owner, chunk, write id, chunk count, bytes.
    Outbox(&'a str, i32, i64, i32, &'a [u8]),
}

impl BatchRow<'_> {
    /// The size of the values, near enough to keep a batch within its byte limit.
    fn bytes(&self) -> usize {
        match self {
            BatchRow::User(t, u, r) => t.len() + u.len() + r.len(),
            BatchRow::Resource(k, r) => k.len() + r.len(),
            BatchRow::History(t, u, _, e) => t.len() + u.len() + 8 + e.len(),
            BatchRow::Claim(t, u, c, r) => t.len() + u.len() + c.len() + r.len(),
            BatchRow::Finished(t, _, p, _) => t.len() + 8 + p.len() + 8,
            BatchRow::Outbox(o, _, _, _, b) => o.len() + 16 + b.len(),
        }
    }
}

impl SerializeRow for BatchRow<'_> {
    fn serialize(
        &self,
        ctx: &RowSerializationContext<'_>,
        writer: &mut RowWriter,
    ) -> Result<(), SerializationError> {
        match self {
            BatchRow::User(t, u, r) => (t, u, r).serialize(ctx, writer),
            BatchRow::Resource(k, r) => (k, r).serialize(ctx, writer),
            BatchRow::History(t, u, s, e) => (t, u, s, e).serialize(ctx, writer),
            BatchRow::Claim(t, u, c, r) => (t, u, c, r.as_slice()).serialize(ctx, writer),
            BatchRow::Finished(t, c, p, n) => (t, c, p, n).serialize(ctx, writer),
            BatchRow::Outbox(o, c, id, n, b) => (o, c, id, n, b).serialize(ctx, writer),
        }
    }

    fn is_empty(&self) -> bool {
        false
    }
}

/// The items of a batch with, for a key named more than once, only its last item.
///
/// The embedded store applies a batch in order, so the last write of a key wins there. In
/// CQL all of a batch's cells share one timestamp, and ScyllaDB breaks timestamp ties by
/// comparing values, so "last" would not be guaranteed; dropping the earlier items keeps the
/// two stores alike.
fn last_wins<'a, T, K: std::hash::Hash + Eq>(
    items: &'a [T],
    key: impl Fn(&'a T) -> K,
) -> Vec<&'a T> {
    let mut last: FxHashMap<K, usize> =
        FxHashMap::with_capacity_and_hasher(items.len(), Default::default());
    for (i, item) in items.iter().enumerate() {
        last.insert(key(item), i);
    }
    if last.len() == items.len() {
        return items.iter().collect();
    }
    items
        .iter()
        .enumerate()
        .filter(|(i, item)| last.get(&key(item)) == Some(i))
        .map(|(_, item)| item)
        .collect()
}

/// The index of `key`'s partition, appending it, with the replicas `replicas` names, the first
/// time `key` is seen.
fn group_index<K: std::hash::Hash + Eq, T>(
    groups: &mut Vec<PartitionWrites<Replicas, T>>,
    index: &mut FxHashMap<K, usize>,
    key: K,
    replicas: impl FnOnce() -> Option<Replicas>,
) -> usize {
    *index.entry(key).or_insert_with(|| {
        groups.push(PartitionWrites {
            replicas: replicas(),
            statements: Vec::new(),
        });
        groups.len() - 1
    })
}

fn to_bigint(what: &dyn std::fmt::Display, n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::OutOfRange {
        key: what.to_string(),
        value: n,
        column: "CQL bigint",
    })
}

#[async_trait]
impl StateStore for ScyllaStore {
    async fn load_users(&self, keys: &[UserKey]) -> Result<Vec<Option<UserRecord>>, StoreError> {
        let st = self.statements().await?;
        // Futures collected first: a closure inside the stream trips rustc's higher-ranked
        // `Send` check of the boxed trait future.
        let reads: Vec<_> = keys.iter().map(|key| self.load_user(st, key)).collect();
        futures::stream::iter(reads)
            .buffered(self.concurrency)
            .try_collect()
            .await
    }

    async fn load_resources(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<ResourceRecord>>, StoreError> {
        let st = self.statements().await?;
        let reads: Vec<_> = keys
            .iter()
            .map(|key| async move {
                let what = format!("resource {key}");
                match self.read_blob(&st.get_resource, (key,), &what).await? {
                    Some(blob) => decode(&what, &blob).map(Some),
                    None => Ok(None),
                }
            })
            .collect();
        futures::stream::iter(reads)
            .buffered(self.concurrency)
            .try_collect()
            .await
    }

    async fn load_outbox(&self, owner: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let st = self.statements().await?;
        let Some((id, count, mut bytes)) = self.read_outbox_chunk(st, owner, 0).await? else {
            return Ok(None);
        };
        let reads: Vec<_> = (1..count.max(1))
            .map(|chunk| self.read_outbox_chunk(st, owner, chunk))
            .collect();
        let chunks: Vec<_> = futures::stream::iter(reads)
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        for chunk in chunks {
            match chunk {
                Some((chunk_id, _, piece)) if chunk_id == id => bytes.extend_from_slice(&piece),
                // A later write was interrupted after overwriting some of this outbox's chunks.
                // Chunk 0 is written last, so that write had not stored state yet, and this
                // outbox belongs to a batch that was published and committed before it began:
                // there is nothing to re-publish.
                _ => {
                    tracing::info!(
                        owner,
                        "outbox superseded by an interrupted write; nothing to re-publish"
                    );
                    return Ok(Some(Vec::new()));
                }
            }
        }
        Ok(Some(bytes))
    }

    async fn write_batch(&self, batch: &BatchWrite) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let st = self.statements().await?;
        let timestamp = batch
            .write_timestamp
            .unwrap_or_else(codec::unfenced_timestamp);

        // Group the statements by partition, keeping the batch's order within each.
        let mut groups: Vec<PartitionWrites<Replicas, BoundStatement<'_>>> = Vec::new();
        let placement = self.placement();
        let mut user_group: FxHashMap<(&str, &str), usize> = FxHashMap::default();
        let user_rows = batch.user_rows()?;
        for (key, record) in last_wins(&user_rows, |(k, _)| *k) {
            let row = BatchRow::User(key.tenant.as_str(), key.user_id.as_str(), record);
            let g = group_index(
                &mut groups,
                &mut user_group,
                (key.tenant.as_str(), key.user_id.as_str()),
                || self.user_replicas(&placement, st, key),
            );
            groups[g].statements.push((&st.put_user, row));
        }
        let history_rows = batch.history_rows()?;
        for (key, seq, entry) in last_wins(&history_rows, |(k, seq, _)| (*k, *seq)) {
            let what = super::HistoryLabel(key, *seq);
            let row = BatchRow::History(
                key.tenant.as_str(),
                key.user_id.as_str(),
                to_bigint(&what, *seq)?,
                entry,
            );
            let g = group_index(
                &mut groups,
                &mut user_group,
                (key.tenant.as_str(), key.user_id.as_str()),
                || self.user_replicas(&placement, st, key),
            );
            groups[g].statements.push((&st.put_history, row));
        }
        for (key, claim) in last_wins(&batch.claims, |(k, c)| (k, &c.claim_id)) {
            let what = format!("claim {}/{}/{}", key.tenant, key.user_id, claim.claim_id);
            let row = BatchRow::Claim(
                &key.tenant,
                &key.user_id,
                &claim.claim_id,
                encode(&what, claim)?,
            );
            let g = group_index(
                &mut groups,
                &mut user_group,
                (key.tenant.as_str(), key.user_id.as_str()),
                || self.user_replicas(&placement, st, key),
            );
            groups[g].statements.push((&st.put_claim, row));
        }
        let resource_rows = batch.resource_rows()?;
        for (key, row) in last_wins(&resource_rows, |(k, _)| *k) {
            groups.push(PartitionWrites {
                replicas: None,
                statements: vec![(&st.put_resource, BatchRow::Resource(key, row))],
            });
        }
        let mut tenant_group: FxHashMap<&str, usize> = FxHashMap::default();
        for count in last_wins(&batch.finished, |c| {
            (&c.tenant, c.challenge_id, &c.partition)
        }) {
            let what = format!("finished {}/{}", count.tenant, count.challenge_id);
            let row = BatchRow::Finished(
                &count.tenant,
                i64::from(count.challenge_id),
                &count.partition,
                to_bigint(&what, count.count)?,
            );
            let g = group_index(
                &mut groups,
                &mut tenant_group,
                count.tenant.as_str(),
                || None,
            );
            groups[g].statements.push((&st.put_finished, row));
        }

        // The outbox first: a batch interrupted after it wrote state must find that state's
        // records in the outbox (see `BatchWrite::outbox`).
        if let Some(outbox) = &batch.outbox {
            self.write_outbox(st, outbox, timestamp).await?;
        }
        self.write_groups(groups, timestamp).await
    }

    async fn history(
        &self,
        key: &UserKey,
        page: u32,
        per_page: u32,
    ) -> Result<(Vec<HistoryEntry>, u64), StoreError> {
        let st = self.statements().await?;
        let total = self
            .load_user(st, key)
            .await?
            .map_or(0, |record| record.history_len);
        let reads: Vec<_> = page_seqs(total, page, per_page)
            .into_iter()
            .map(|seq| async move {
                let what = format!("history {}/{}#{seq}", key.tenant, key.user_id);
                let seq_i = to_bigint(&what, seq)?;
                match self
                    .read_exact_row(
                        &st.get_history,
                        (key.tenant.as_str(), key.user_id.as_str(), seq_i),
                        &seq_i,
                        &what,
                    )
                    .await?
                {
                    Some(blob) => decode(&what, &blob).map(Some),
                    // Written in the same round as the record but not atomically with it: an
                    // entry may trail its count for a moment. Leave it out rather than fail.
                    None => Ok(None),
                }
            })
            .collect();
        let entries: Vec<Option<HistoryEntry>> = futures::stream::iter(reads)
            .buffered(self.concurrency)
            .try_collect()
            .await?;
        Ok((entries.into_iter().flatten().collect(), total))
    }

    async fn claim(
        &self,
        key: &UserKey,
        claim_id: &str,
    ) -> Result<Option<ClaimRecord>, StoreError> {
        let st = self.statements().await?;
        let what = format!("claim {}/{}/{claim_id}", key.tenant, key.user_id);
        let wanted = claim_id.to_string();
        match self
            .read_exact_row(
                &st.get_claim,
                (key.tenant.as_str(), key.user_id.as_str(), claim_id),
                &wanted,
                &what,
            )
            .await?
        {
            Some(blob) => decode(&what, &blob).map(Some),
            None => Ok(None),
        }
    }

    async fn people_finished(&self, tenant: &str) -> Result<BTreeMap<u32, u64>, StoreError> {
        let st = self.statements().await?;
        let what = format!("finished counts of {tenant}");
        let mut sums = BTreeMap::new();
        let mut paging = PagingState::start();
        loop {
            let (result, next) = self
                .session
                .execute_single_page(&st.scan_finished, (tenant,), paging)
                .await
                .map_err(|e| execution_error(&what, e))?;
            let rows = result
                .into_rows_result()
                .map_err(|e| rows_error(&what, e))?;
            for row in rows
                .rows::<(i64, i64)>()
                .map_err(|e| typed_rows_error(&what, e))?
            {
                let (challenge, count) = row.map_err(|e| StoreError::corrupt(&what, e))?;
                let (Ok(challenge), Ok(count)) = (u32::try_from(challenge), u64::try_from(count))
                else {
                    return Err(StoreError::corrupt(
                        what,
                        Corruption::Counter { challenge, count },
                    ));
                };
                let sum: &mut u64 = sums.entry(challenge).or_default();
                *sum = sum.saturating_add(count);
            }
            match next.into_paging_control_flow() {
                ControlFlow::Break(()) => break,
                ControlFlow::Continue(state) => paging = state,
            }
        }
        Ok(sums)
    }

    async fn claim_partition(&self, group: &str, partition: &str) -> Result<i64, StoreError> {
        let st = self.statements().await?;
        let what = format!("epoch of {group}/{partition}");
        let previous = self
            .session
            .execute_unpaged(&st.get_epoch, (group, partition))
            .await
            .map_err(|e| execution_error(&what, e))?
            .into_rows_result()
            .map_err(|e| rows_error(&what, e))?
            .maybe_first_row::<(i64,)>()
            .map_err(|e| first_row_error(&what, e))?
            .map(|(epoch,)| epoch);
        let mut epoch = codec::next_epoch(previous);
        let mut won = false;
        for _ in 0..CLAIM_ATTEMPTS {
            let result = self
                .session
                .execute_unpaged(&st.claim_epoch, (group, partition, epoch))
                .await
                .map_err(|e| execution_error(&what, e))?;
            match Self::lwt_applied(result)? {
                Some(true) => {
                    won = true;
                    break;
                }
                Some(false) => epoch = codec::next_epoch(Some(epoch)),
                None => {
                    if !self.warned_no_lwt.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "the CQL server ignores IF NOT EXISTS (no lightweight transactions): \
                             two consumers claiming one partition at the same moment could get \
                             the same epoch; use ScyllaDB in production"
                        );
                    }
                    won = true;
                    break;
                }
            }
        }
        if !won {
            return Err(StoreError::ClaimRaces {
                group: group.to_string(),
                partition: partition.to_string(),
                attempts: CLAIM_ATTEMPTS,
            });
        }
        // The hint only moves forward: its cell timestamp is the epoch itself.
        let mut put = st.put_epoch.clone();
        put.set_timestamp(Some(epoch));
        self.session
            .execute_unpaged(&put, (group, partition, epoch))
            .await
            .map_err(|e| execution_error(&what, e))?;
        Ok(epoch)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let st = self.statements().await?;
        self.session
            .execute_unpaged(&st.get_epoch, ("questline.ping", "0"))
            .await
            .map(drop)
            .map_err(|e| execution_error("ping", e))
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A failed statement; [`StoreError::class`] tells reaching the cluster (transient) from a
/// statement the cluster rejects (fatal).
fn execution_error(what: &str, source: ExecutionError) -> StoreError {
    StoreError::Cql {
        what: what.to_string(),
        source: Box::new(source),
    }
}

/// A result of another shape than the statement's.
fn shape_error(what: &str, source: impl Into<ResultShape>) -> StoreError {
    StoreError::UnexpectedResult {
        what: what.to_string(),
        source: Box::new(source.into()),
    }
}

fn rows_error(what: &str, e: IntoRowsResultError) -> StoreError {
    shape_error(what, e)
}

fn first_row_error(what: &str, e: scylla::errors::MaybeFirstRowError) -> StoreError {
    shape_error(what, e)
}

fn typed_rows_error(what: &str, e: scylla::errors::RowsError) -> StoreError {
    shape_error(what, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_duplicates_replace_earlier_ones_in_place() {
        let items = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)];
        let kept: Vec<_> = last_wins(&items, |(k, _)| *k)
            .into_iter()
            .copied()
            .collect();
        assert_eq!(kept, vec![("a", 3), ("c", 4), ("b", 5)]);
        let unique = [("x", 1), ("y", 2)];
        assert_eq!(last_wins(&unique, |(k, _)| *k).len(), 2);
    }

    #[test]
    fn consistency_levels_parse_as_configured() {
        assert_eq!(
            parse_consistency("local_quorum").unwrap(),
            Consistency::LocalQuorum
        );
        assert_eq!(
            parse_consistency(" LOCAL-ONE ").unwrap(),
            Consistency::LocalOne
        );
        assert_eq!(parse_consistency("Quorum").unwrap(), Consistency::Quorum);
        assert!(matches!(
            parse_consistency("serial"),
            Err(StoreError::Config(ConfigError::Consistency { .. }))
        ));
    }
}
