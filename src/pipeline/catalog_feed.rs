//! The catalog log's reader and writer: every process follows the catalog topic into a
//! [`CatalogHistory`], and `catalog push` and the admin API publish versions to it.
//!
//! The log is one partition. A version takes effect `activation_delay` after it is published
//! (`effective_from`), and a record is evaluated with the versions in force at its own
//! timestamp. A worker therefore needs to have read the log only up to what was published
//! `activation_delay` before its newest record: [`CatalogFeed::covering`] reads on until it has.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::log::LogError;
use crate::core::catalog::{
    Catalog, CatalogHistory, CatalogVersion, Refusal, SourceFile, VersionInfo,
};

/// Where catalog versions are kept: the catalog topic, or an in-process log (`demo`, tests).
#[async_trait]
pub trait CatalogLog: Send + Sync + 'static {
    /// Appends a record; returns once the log acknowledged it.
    async fn append(&self, key: &str, payload: Vec<u8>) -> Result<(), LogError>;
    /// The records from offset `from` to the end of the log as it is now, with their offsets.
    async fn read_from(&self, from: i64) -> Result<Vec<(i64, Vec<u8>)>, LogError>;
}

/// The catalog a process evaluates with: one that never changes, or one that follows the log.
#[derive(Clone)]
pub enum CatalogSource {
    Fixed(Arc<CatalogHistory>),
    Live(Arc<CatalogFeed>),
}

impl std::fmt::Debug for CatalogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogSource::Fixed(_) => f.write_str("CatalogSource::Fixed"),
            CatalogSource::Live(_) => f.write_str("CatalogSource::Live"),
        }
    }
}

impl CatalogSource {
    pub fn fixed(catalog: Catalog) -> CatalogSource {
        CatalogSource::Fixed(Arc::new(CatalogHistory::fixed(catalog)))
    }

    /// What is known now.
    pub fn history(&self) -> Arc<CatalogHistory> {
        match self {
            CatalogSource::Fixed(h) => Arc::clone(h),
            CatalogSource::Live(feed) => feed.current(),
        }
    }

    /// The catalog in force now (the sidecar's queries).
    pub fn now(&self) -> Arc<Catalog> {
        Arc::clone(self.history().at(Utc::now()))
    }

    /// A history that knows every version in force at `newest` (a batch's newest record).
    pub async fn covering(&self, newest: DateTime<Utc>) -> Arc<CatalogHistory> {
        match self {
            CatalogSource::Fixed(h) => Arc::clone(h),
            CatalogSource::Live(feed) => feed.covering(newest).await,
        }
    }
}

/// Why a change was not published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The change is invalid; nothing was published.
    #[error("the change is refused:\n{}", .0.reasons().join("\n"))]
    Refused(Refusal),
    /// Another publisher's version took the number, again and again.
    #[error("tenant '{0}': other changes were published at the same time; try again")]
    Contended(String),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    Version(VersionInfo),
    /// The files are those of the tenant's latest version: nothing was published.
    Unchanged(u64),
}

struct Followed {
    history: CatalogHistory,
    next_offset: i64,
}

/// Follows the catalog log.
pub struct CatalogFeed {
    log: Arc<dyn CatalogLog>,
    followed: tokio::sync::Mutex<Followed>,
    current: RwLock<(Arc<CatalogHistory>, DateTime<Utc>)>,
    activation_delay: chrono::Duration,
}

impl CatalogFeed {
    /// A feed that starts from `base` (version 0, the files) and has read nothing yet.
    pub fn new(base: CatalogHistory, log: Arc<dyn CatalogLog>, activation_delay: Duration) -> Self {
        let current = Arc::new(base.clone());
        CatalogFeed {
            log,
            followed: tokio::sync::Mutex::new(Followed {
                history: base,
                next_offset: 0,
            }),
            current: RwLock::new((current, DateTime::<Utc>::MIN_UTC)),
            activation_delay: chrono::Duration::from_std(activation_delay)
                .unwrap_or(chrono::Duration::MAX),
        }
    }

    pub fn activation_delay(&self) -> chrono::Duration {
        self.activation_delay
    }

    pub fn current(&self) -> Arc<CatalogHistory> {
        Arc::clone(&self.read_current().0)
    }

    fn read_current(&self) -> (Arc<CatalogHistory>, DateTime<Utc>) {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the log to its end and applies what is new; returns the history.
    pub async fn sync(&self) -> Result<Arc<CatalogHistory>, LogError> {
        let mut followed = self.followed.lock().await;
        let started = Utc::now();
        let records = self.log.read_from(followed.next_offset).await?;
        let changed = !records.is_empty();
        for (offset, payload) in records {
            followed.next_offset = offset + 1;
            apply(&mut followed.history, offset, &payload);
        }
        let mut current = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if changed {
            current.0 = Arc::new(followed.history.clone());
        }
        current.1 = started;
        Ok(Arc::clone(&current.0))
    }

    /// A history that knows every version in force at `newest`. A version not read yet was
    /// published after the last read started, so it takes effect `activation_delay` after
    /// that at the earliest: reads again until that is later than `newest`. A record stamped
    /// further in the future than the delay cannot be covered; it is evaluated with what is
    /// known, with a warning (a version published in the meantime would apply to it on replay).
    pub async fn covering(&self, newest: DateTime<Utc>) -> Arc<CatalogHistory> {
        let (history, synced) = self.read_current();
        if newest < synced + self.activation_delay {
            return history;
        }
        let mut pause = Duration::from_millis(50);
        for _ in 0..10 {
            match self.sync().await {
                Ok(history) => {
                    let (_, synced) = self.read_current();
                    if newest >= synced + self.activation_delay {
                        crate::metrics::metrics().catalog_uncovered.inc();
                        tracing::warn!(
                            record_time = %newest,
                            "a record is stamped further in the future than catalog.activation_delay: evaluated with the catalog known now"
                        );
                    }
                    return history;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the catalog log; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
        crate::metrics::metrics().catalog_uncovered.inc();
        tracing::error!("the catalog log stays unreadable: evaluating with the catalog known now");
        self.current()
    }

    /// Reads the log every `every` until `stop` resolves, so queries see new versions and
    /// [`CatalogFeed::covering`] rarely has to wait.
    pub async fn follow(
        self: Arc<Self>,
        every: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.sync().await {
                tracing::warn!(error = %e, "cannot read the catalog log");
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Makes the log the one source of every tenant's catalog: a tenant of the files this
    /// process started with that has no version in the log yet gets its files published as
    /// version 1, in force from the start of time (1970), so every reader (a worker started later
    /// with other files, `replay --records`) evaluates with the log's versions only. A tenant
    /// the log knows keeps the log's versions; files that differ from them are reported.
    pub async fn bootstrap(&self, published_by: &str) -> Result<(), PublishError> {
        let history = self.sync().await?;
        for tenant in history.tenant_names() {
            let Some(version) = history.bootstrap_version(tenant, Utc::now(), published_by) else {
                let latest = history.versions(tenant).last().map_or(0, |v| v.version);
                let local = history.files_of(tenant, 0).unwrap_or_default();
                if !local.is_empty() && !same_files(local, &history.files(tenant)) {
                    tracing::warn!(
                        %tenant,
                        version = latest,
                        "the catalog files differ from the catalog log's latest version, which is in force; publish them with `questline catalog push` to change the catalog"
                    );
                }
                continue;
            };
            history.check(&version).map_err(PublishError::Refused)?;
            let key = format!("{tenant}/1/{}", uuid::Uuid::new_v4());
            let payload = serde_json::to_vec(&version)
                .map_err(|e| PublishError::Refused(Refusal::Invalid(encoding(tenant, &e))))?;
            self.log.append(&key, payload).await?;
            tracing::info!(%tenant, "catalog files published as version 1 of the catalog log");
        }
        self.sync().await?;
        Ok(())
    }

    /// Publishes `files` as the tenant's next version, in force `activation_delay` from now.
    pub async fn publish(
        &self,
        tenant: &str,
        files: Vec<SourceFile>,
        published_by: &str,
    ) -> Result<Published, PublishError> {
        self.update(tenant, published_by, |_| Ok(files.clone()))
            .await
    }

    /// Publishes the tenant's next version as `edit` makes it from the history known now,
    /// in force `activation_delay` from now. Checked first as every reader will check it;
    /// confirmed by reading it back. When another publisher took the number in between,
    /// `edit` runs again on the newer history (optimistic concurrency: no change is lost).
    pub async fn update<E: From<PublishError>>(
        &self,
        tenant: &str,
        published_by: &str,
        mut edit: impl FnMut(&CatalogHistory) -> Result<Vec<SourceFile>, E>,
    ) -> Result<Published, E> {
        for _ in 0..5 {
            let history = self.sync().await.map_err(PublishError::from)?;
            let files = edit(&history)?;
            let latest = history.versions(tenant).last().cloned();
            if let Some(latest) = &latest {
                if same_files(&history.files(tenant), &files) {
                    return Ok(Published::Unchanged(latest.version));
                }
            }
            let now = Utc::now();
            let mut effective_from = now + self.activation_delay;
            if let Some(latest) = &latest {
                effective_from = effective_from.max(latest.effective_from);
            }
            let version = CatalogVersion {
                tenant: tenant.to_string(),
                version: history.next_version(tenant),
                effective_from,
                published_at: now,
                published_by: published_by.to_string(),
                files,
            };
            if let Some(errors) = version.duplicate_names() {
                return Err(PublishError::Refused(Refusal::Invalid(errors)).into());
            }
            history.check(&version).map_err(PublishError::Refused)?;
            let key = format!("{tenant}/{}/{}", version.version, uuid::Uuid::new_v4());
            let payload = serde_json::to_vec(&version)
                .map_err(|e| PublishError::Refused(Refusal::Invalid(encoding(tenant, &e))))?;
            self.log
                .append(&key, payload)
                .await
                .map_err(PublishError::from)?;
            let history = self.sync().await.map_err(PublishError::from)?;
            let won = history
                .versions(tenant)
                .find(|v| v.version == version.version);
            if let Some(info) = won {
                if info.published_at == version.published_at && info.published_by == published_by {
                    return Ok(Published::Version(info.clone()));
                }
            }
        }
        Err(PublishError::Contended(tenant.to_string()).into())
    }
}

/// Applies one record of the log; a refused or unreadable one is logged and skipped by every
/// reader alike.
fn apply(history: &mut CatalogHistory, offset: i64, payload: &[u8]) {
    let version: CatalogVersion = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => {
            crate::metrics::metrics().catalog_refused.inc();
            tracing::warn!(offset, error = %e, "catalog log: not a catalog version; skipped");
            return;
        }
    };
    let (tenant, number) = (version.tenant.clone(), version.version);
    match history.apply(version) {
        Ok(info) => {
            crate::metrics::metrics().catalog_versions.inc();
            tracing::info!(
                offset,
                tenant = %info.tenant,
                version = info.version,
                effective_from = %info.effective_from,
                published_by = %info.published_by,
                "catalog version applied"
            );
        }
        Err(refusal) => {
            crate::metrics::metrics().catalog_refused.inc();
            tracing::warn!(offset, %tenant, version = number, reason = %refusal, "catalog version refused");
        }
    }
}

fn encoding(tenant: &str, e: &serde_json::Error) -> crate::core::catalog::CatalogErrors {
    crate::core::catalog::CatalogErrors(vec![crate::core::catalog::CatalogError {
        file: tenant.to_string(),
        line: 0,
        message: format!("cannot encode the version: {e}"),
    }])
}

fn same_files(a: &[SourceFile], b: &[SourceFile]) -> bool {
    let sorted = |files: &[SourceFile]| {
        let mut v: Vec<(String, String)> = files
            .iter()
            .map(|f| (f.name.clone(), f.text.clone()))
            .collect();
        v.sort();
        v
    };
    sorted(a) == sorted(b)
}

/// The in-process catalog log (`demo`, tests).
#[derive(Default)]
pub struct MemoryCatalogLog {
    records: std::sync::Mutex<Vec<Vec<u8>>>,
}

#[async_trait]
impl CatalogLog for MemoryCatalogLog {
    async fn append(&self, _key: &str, payload: Vec<u8>) -> Result<(), LogError> {
        self.lock().push(payload);
        Ok(())
    }

    async fn read_from(&self, from: i64) -> Result<Vec<(i64, Vec<u8>)>, LogError> {
        let records = self.lock();
        let from = usize::try_from(from).unwrap_or(0);
        Ok(records
            .iter()
            .enumerate()
            .skip(from)
            .map(|(i, r)| (i as i64, r.clone()))
            .collect())
    }
}

impl MemoryCatalogLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        match self.records.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        "[[reward_types]]\nreward_type = \"points\"\n[[triggers]]\nid = 1\nname = \"A\"\n";

    fn file(text: &str) -> Vec<SourceFile> {
        vec![SourceFile {
            name: "catalog.toml".into(),
            text: text.into(),
        }]
    }

    fn feed(log: &Arc<MemoryCatalogLog>, delay: Duration) -> CatalogFeed {
        let base = CatalogHistory::from_sources(&[("c.toml", BASE)]).unwrap();
        CatalogFeed::new(base, Arc::clone(log) as Arc<dyn CatalogLog>, delay)
    }

    #[tokio::test]
    async fn a_published_version_reaches_every_follower_and_takes_effect_after_the_delay() {
        let log = Arc::new(MemoryCatalogLog::default());
        let publisher = feed(&log, Duration::from_secs(5));
        let follower = feed(&log, Duration::from_secs(5));
        let changed = format!("{BASE}[[triggers]]\nid = 2\nname = \"B\"\n");
        let before = Utc::now();
        let Published::Version(info) = publisher
            .publish("default", file(&changed), "me")
            .await
            .unwrap()
        else {
            panic!("not published");
        };
        assert_eq!(info.version, 1);
        assert!(info.effective_from >= before + chrono::Duration::seconds(5));
        let history = follower.covering(info.effective_from).await;
        assert_eq!(
            history
                .at(info.effective_from)
                .tenant("default")
                .unwrap()
                .version,
            1
        );
        assert_eq!(history.at(before).tenant("default").unwrap().version, 0);
        // The same files again: nothing published.
        let again = publisher
            .publish("default", file(&changed), "me")
            .await
            .unwrap();
        assert_eq!(again, Published::Unchanged(1));
        assert_eq!(log.read_from(0).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_invalid_change_is_refused_and_never_published() {
        let log = Arc::new(MemoryCatalogLog::default());
        let publisher = feed(&log, Duration::ZERO);
        let err = publisher
            .publish("default", file("[[triggers]]\nid = \"x\"\n"), "me")
            .await
            .unwrap_err();
        assert!(matches!(err, PublishError::Refused(_)), "{err}");
        assert!(err.to_string().contains("catalog.toml"), "{err}");
        assert!(log.read_from(0).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn records_appended_by_anyone_are_checked_by_every_reader() {
        let log = Arc::new(MemoryCatalogLog::default());
        log.append("x", b"not json".to_vec()).await.unwrap();
        let skipped = CatalogVersion {
            tenant: "default".into(),
            version: 3,
            effective_from: Utc::now(),
            published_at: Utc::now(),
            published_by: "rogue".into(),
            files: file(BASE),
        };
        log.append("y", serde_json::to_vec(&skipped).unwrap())
            .await
            .unwrap();
        let follower = feed(&log, Duration::ZERO);
        let history = follower.sync().await.unwrap();
        assert_eq!(history.next_version("default"), 1);
        assert_eq!(history.latest().tenant("default").unwrap().version, 0);
    }
}

#[cfg(test)]
mod bootstrap_tests {
    use super::*;

    #[tokio::test]
    async fn files_bootstrapped_as_version_1_are_in_force_for_every_record() {
        let log = Arc::new(MemoryCatalogLog::default());
        let base = CatalogHistory::from_sources(&[(
            "c.toml",
            "[[reward_types]]\nreward_type = \"points\"\n",
        )])
        .unwrap();
        let feed = CatalogFeed::new(
            base,
            Arc::clone(&log) as Arc<dyn CatalogLog>,
            Duration::from_secs(1),
        );
        feed.bootstrap("test").await.unwrap();
        let history = feed.covering(Utc::now()).await;
        assert_eq!(history.at(Utc::now()).tenant("default").unwrap().version, 1);
        assert_eq!(history.latest().tenant("default").unwrap().version, 1);
    }
}
