//! The catalog over time: version 0 of every tenant is the files a process starts with; later
//! versions are records of the catalog log, each a tenant's complete set of files and the
//! instant from which it is in force.
//!
//! Which version evaluates a record is a function of the record's own timestamp and the log
//! (the latest version of the record's tenant whose `effective_from` is not after it), never of
//! when a worker happened to read the change. That is what makes every worker, a restarted
//! one and `replay --records` decide alike — the same reasoning as a temporal (versioned)
//! table join in a stream processor. The log is one partition, so every reader applies the
//! same versions in the same order and refuses the same ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Catalog, CatalogError, CatalogErrors, TenantCatalog};
use crate::core::limits;
use crate::core::model::DEFAULT_TENANT;

/// One file of a catalog version, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// A record of the catalog log: the complete catalog of one tenant from `effective_from` on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogVersion {
    pub tenant: String,
    /// The tenant's previous version plus one; 0 is the files a process starts with.
    pub version: u64,
    /// Records whose timestamp is at or after this instant are evaluated with this version.
    pub effective_from: DateTime<Utc>,
    pub published_at: DateTime<Utc>,
    /// Who published it: `catalog push` (with the host's user when known) or an admin client.
    pub published_by: String,
    pub files: Vec<SourceFile>,
}

/// What is known about a version, without its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub tenant: String,
    pub version: u64,
    pub effective_from: DateTime<Utc>,
    pub published_at: DateTime<Utc>,
    pub published_by: String,
}

/// Why a version is not applied. Every reader refuses the same records for the same reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("tenant '{tenant}': version {got} is not the next one, {expected} is")]
    NotNext {
        tenant: String,
        got: u64,
        expected: u64,
    },
    #[error(
        "tenant '{tenant}': version {version} would take effect at {got}, before version \
         {previous} ({previous_from}); versions take effect in the order they are published"
    )]
    Backdated {
        tenant: String,
        version: u64,
        got: DateTime<Utc>,
        previous: u64,
        previous_from: DateTime<Utc>,
    },
    #[error(
        "tenant must not be blank and at most {} bytes",
        limits::MAX_TENANT_BYTES
    )]
    BadTenant,
    #[error("{file}: belongs to tenant '{found}', but the version is of tenant '{tenant}'")]
    OtherTenant {
        file: String,
        found: String,
        tenant: String,
    },
    #[error("{0}")]
    Invalid(CatalogErrors),
}

impl Refusal {
    /// The problems one per line, as `questline check` prints them.
    pub fn reasons(&self) -> Vec<String> {
        match self {
            Refusal::Invalid(errors) => errors.0.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

#[derive(Debug, Clone)]
struct TenantVersion {
    info: VersionInfo,
    files: Vec<SourceFile>,
    catalog: Arc<TenantCatalog>,
}

/// Every tenant's versions, and the catalog in force at any instant.
#[derive(Debug, Clone)]
pub struct CatalogHistory {
    tenants: BTreeMap<String, Vec<TenantVersion>>,
    /// From each start instant (ascending, the first `MIN_UTC`) to the next: the catalog then.
    segments: Vec<(DateTime<Utc>, Arc<Catalog>)>,
}

/// The start of time, when version 0 takes effect.
fn beginning() -> DateTime<Utc> {
    DateTime::<Utc>::MIN_UTC
}

impl CatalogHistory {
    /// Version 0 from catalog files `(name, text)`, validated as `questline check` does.
    pub fn from_sources<N: AsRef<str>, T: AsRef<str>>(
        sources: &[(N, T)],
    ) -> Result<CatalogHistory, CatalogErrors> {
        let catalog = Catalog::from_sources(sources)?;
        let mut files: BTreeMap<String, Vec<SourceFile>> = BTreeMap::new();
        for (name, text) in sources {
            let tenant = tenant_of(text.as_ref()).unwrap_or_else(|| DEFAULT_TENANT.to_string());
            files.entry(tenant).or_default().push(SourceFile {
                name: file_name(name.as_ref()),
                text: text.as_ref().to_string(),
            });
        }
        Ok(CatalogHistory::starting(catalog, files))
    }

    /// A history of one catalog that never changes (tests, and catalogs built in code).
    pub fn fixed(catalog: Catalog) -> CatalogHistory {
        CatalogHistory::starting(catalog, BTreeMap::new())
    }

    fn starting(catalog: Catalog, mut files: BTreeMap<String, Vec<SourceFile>>) -> Self {
        let tenants = catalog
            .tenants
            .iter()
            .map(|(name, tenant)| {
                let version = TenantVersion {
                    info: VersionInfo {
                        tenant: name.clone(),
                        version: 0,
                        effective_from: beginning(),
                        published_at: beginning(),
                        published_by: "files".into(),
                    },
                    files: files.remove(name).unwrap_or_default(),
                    catalog: Arc::clone(tenant),
                };
                (name.clone(), vec![version])
            })
            .collect();
        CatalogHistory {
            tenants,
            segments: vec![(beginning(), Arc::new(catalog))],
        }
    }

    /// The catalog that evaluates a record with timestamp `at`.
    pub fn at(&self, at: DateTime<Utc>) -> &Arc<Catalog> {
        let after = self.segments.partition_point(|(start, _)| *start <= at);
        &self.segments[after.saturating_sub(1)].1
    }

    /// The catalog with every version applied, those not yet in force included: what the
    /// next change builds on.
    pub fn latest(&self) -> &Arc<Catalog> {
        &self.segments[self.segments.len() - 1].1
    }

    /// The number the tenant's next version must carry.
    pub fn next_version(&self, tenant: &str) -> u64 {
        self.tenants
            .get(tenant)
            .and_then(|v| v.last())
            .map_or(1, |v| v.info.version + 1)
    }

    /// The files of the tenant's latest version (empty for an unknown tenant).
    pub fn files(&self, tenant: &str) -> Vec<SourceFile> {
        self.tenants
            .get(tenant)
            .and_then(|v| v.last())
            .map(|v| v.files.clone())
            .unwrap_or_default()
    }

    /// The files of one version of the tenant, if it has that version.
    pub fn files_of(&self, tenant: &str, version: u64) -> Option<&[SourceFile]> {
        self.tenants
            .get(tenant)?
            .iter()
            .find(|v| v.info.version == version)
            .map(|v| v.files.as_slice())
    }

    /// Every tenant with at least one version.
    pub fn tenant_names(&self) -> impl Iterator<Item = &str> {
        self.tenants.keys().map(String::as_str)
    }

    /// The tenant's versions, oldest first.
    pub fn versions(&self, tenant: &str) -> impl Iterator<Item = &VersionInfo> {
        self.tenants
            .get(tenant)
            .into_iter()
            .flatten()
            .map(|v| &v.info)
    }

    /// The version that makes a tenant's files (version 0) the first version of the log, in
    /// force from 1970 (before every Kafka timestamp); `None` once the log has a version of it.
    pub fn bootstrap_version(
        &self,
        tenant: &str,
        published_at: DateTime<Utc>,
        published_by: &str,
    ) -> Option<CatalogVersion> {
        let latest = self.tenants.get(tenant)?.last()?;
        (latest.info.version == 0).then(|| CatalogVersion {
            tenant: tenant.to_string(),
            version: 1,
            effective_from: DateTime::<Utc>::UNIX_EPOCH,
            published_at,
            published_by: published_by.to_string(),
            files: latest.files.clone(),
        })
    }

    /// Validates a version against this history without applying it: what `catalog push` and
    /// the admin API check before publishing, and what every reader checks again.
    pub fn check(&self, version: &CatalogVersion) -> Result<TenantCatalog, Refusal> {
        let tenant = version.tenant.as_str();
        if tenant.trim().is_empty() || tenant.len() > limits::MAX_TENANT_BYTES {
            return Err(Refusal::BadTenant);
        }
        let expected = self.next_version(tenant);
        if version.version != expected {
            return Err(Refusal::NotNext {
                tenant: tenant.into(),
                got: version.version,
                expected,
            });
        }
        if let Some(previous) = self.tenants.get(tenant).and_then(|v| v.last()) {
            if version.effective_from < previous.info.effective_from {
                return Err(Refusal::Backdated {
                    tenant: tenant.into(),
                    version: version.version,
                    got: version.effective_from,
                    previous: previous.info.version,
                    previous_from: previous.info.effective_from,
                });
            }
        }
        for file in &version.files {
            let found = tenant_of(&file.text).unwrap_or_else(|| DEFAULT_TENANT.to_string());
            if found != tenant {
                return Err(Refusal::OtherTenant {
                    file: file.name.clone(),
                    found,
                    tenant: tenant.into(),
                });
            }
        }
        let sources: Vec<(&str, &str)> = version
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.text.as_str()))
            .collect();
        let parsed = Catalog::from_sources(&sources).map_err(Refusal::Invalid)?;
        let mut catalog = match parsed.tenant(tenant) {
            Some(t) => t.clone(),
            None => {
                // No files: the tenant is emptied (nothing earns, balances stay readable).
                let mut empty = TenantCatalog::new(tenant.to_string());
                empty.build_indexes();
                empty
            }
        };
        catalog.version = version.version;
        Ok(catalog)
    }

    /// Applies the next version of a tenant, or refuses it and changes nothing.
    pub fn apply(&mut self, version: CatalogVersion) -> Result<&VersionInfo, Refusal> {
        let catalog = self.check(&version)?;
        let entry = TenantVersion {
            info: VersionInfo {
                tenant: version.tenant.clone(),
                version: version.version,
                effective_from: version.effective_from,
                published_at: version.published_at,
                published_by: version.published_by,
            },
            files: version.files,
            catalog: Arc::new(catalog),
        };
        let versions = self.tenants.entry(version.tenant).or_default();
        versions.push(entry);
        let info_index = versions.len() - 1;
        let tenant = versions[info_index].info.tenant.clone();
        self.rebuild_segments();
        Ok(&self.tenants[&tenant][info_index].info)
    }

    /// Recomputes the catalog in force between consecutive instants at which any version
    /// takes effect. Changes are rare and the segments share every tenant catalog.
    fn rebuild_segments(&mut self) {
        let mut starts: Vec<DateTime<Utc>> = self
            .tenants
            .values()
            .flatten()
            .map(|v| v.info.effective_from)
            .collect();
        starts.push(beginning());
        starts.sort();
        starts.dedup();
        self.segments = starts
            .into_iter()
            .map(|start| {
                let mut catalog = Catalog::default();
                for (name, versions) in &self.tenants {
                    let in_force = versions
                        .iter()
                        .rev()
                        .find(|v| v.info.effective_from <= start);
                    if let Some(v) = in_force {
                        catalog.tenants.insert(name.clone(), Arc::clone(&v.catalog));
                    }
                }
                (start, Arc::new(catalog))
            })
            .collect();
    }
}

/// The `tenant` a catalog file declares, if it parses that far.
fn tenant_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Head {
        tenant: Option<String>,
    }
    toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|table| toml::Value::Table(table).try_into::<Head>().ok())
        .and_then(|head| head.tenant)
}

/// The file name without its directories: versions are directory-independent.
fn file_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string())
}

impl CatalogError {
    fn whole(file: &str, message: String) -> CatalogError {
        CatalogError {
            file: file.to_string(),
            line: 0,
            message,
        }
    }
}

impl CatalogVersion {
    /// A version's files must have distinct names: `catalog pull` writes them side by side.
    pub fn duplicate_names(&self) -> Option<CatalogErrors> {
        let mut seen = std::collections::BTreeSet::new();
        let errors: Vec<CatalogError> = self
            .files
            .iter()
            .filter(|f| !seen.insert(f.name.as_str()))
            .map(|f| CatalogError::whole(&f.name, "two files of the version have this name".into()))
            .collect();
        (!errors.is_empty()).then_some(CatalogErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const BASE: &str = r#"
[[reward_types]]
reward_type = "points"

[[triggers]]
id = 1
name = "Order"
"#;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    fn version(tenant: &str, version: u64, from: i64, text: &str) -> CatalogVersion {
        CatalogVersion {
            tenant: tenant.into(),
            version,
            effective_from: t(from),
            published_at: t(from - 5),
            published_by: "test".into(),
            files: vec![SourceFile {
                name: "c.toml".into(),
                text: text.into(),
            }],
        }
    }

    fn with_trigger(tenant: &str, id: u32) -> String {
        format!(
            "tenant = \"{tenant}\"\n[[reward_types]]\nreward_type = \"points\"\n\
             [[triggers]]\nid = {id}\nname = \"T{id}\"\n"
        )
    }

    #[test]
    fn a_record_is_evaluated_by_the_version_in_force_at_its_timestamp() {
        let mut history = CatalogHistory::from_sources(&[("base.toml", BASE)]).unwrap();
        history
            .apply(version("default", 1, 100, &with_trigger("default", 2)))
            .unwrap();
        history
            .apply(version("default", 2, 200, &with_trigger("default", 3)))
            .unwrap();
        let version_at = |s| history.at(t(s)).tenant("default").unwrap().version;
        assert_eq!(version_at(99), 0);
        assert_eq!(version_at(100), 1);
        assert_eq!(version_at(199), 1);
        assert_eq!(version_at(200), 2);
        assert!(history
            .at(t(150))
            .tenant("default")
            .unwrap()
            .trigger(2)
            .is_some());
        assert!(history
            .at(t(150))
            .tenant("default")
            .unwrap()
            .trigger(1)
            .is_none());
        assert_eq!(history.latest().tenant("default").unwrap().version, 2);
    }

    #[test]
    fn tenants_change_independently() {
        let mut history = CatalogHistory::from_sources(&[
            ("a.toml", with_trigger("a", 1)),
            ("b.toml", with_trigger("b", 1)),
        ])
        .unwrap();
        history
            .apply(version("a", 1, 100, &with_trigger("a", 7)))
            .unwrap();
        let later = history.at(t(500));
        assert_eq!(later.tenant("a").unwrap().version, 1);
        assert_eq!(later.tenant("b").unwrap().version, 0);
        assert!(Arc::ptr_eq(
            history.at(t(0)).tenants.get("b").unwrap(),
            later.tenants.get("b").unwrap()
        ));
        assert_eq!(history.files("b")[0].name, "b.toml");
        assert_eq!(history.next_version("a"), 2);
        assert_eq!(history.next_version("new"), 1);
    }

    #[test]
    fn refused_versions_change_nothing() {
        let mut history = CatalogHistory::from_sources(&[("base.toml", BASE)]).unwrap();
        let before = Arc::clone(history.latest());
        let skip = history.apply(version("default", 2, 100, BASE)).unwrap_err();
        assert!(
            matches!(skip, Refusal::NotNext { expected: 1, .. }),
            "{skip}"
        );
        let invalid = history
            .apply(version("default", 1, 100, "[[triggers]]\nid = 1\n"))
            .unwrap_err();
        assert!(
            invalid.reasons().iter().any(|r| r.contains("c.toml")),
            "{invalid:?}"
        );
        let other = history
            .apply(version("default", 1, 100, &with_trigger("b", 1)))
            .unwrap_err();
        assert!(matches!(other, Refusal::OtherTenant { .. }), "{other}");
        history.apply(version("default", 1, 100, BASE)).unwrap();
        let backdated = history.apply(version("default", 2, 50, BASE)).unwrap_err();
        assert!(
            matches!(backdated, Refusal::Backdated { .. }),
            "{backdated}"
        );
        assert_eq!(history.next_version("default"), 2);
        assert!(Arc::ptr_eq(history.at(t(0)), history.at(t(99))));
        assert_eq!(before.tenant("default").unwrap().version, 0);
    }

    #[test]
    fn a_version_without_files_empties_its_tenant() {
        let mut history = CatalogHistory::from_sources(&[("base.toml", BASE)]).unwrap();
        let mut empty = version("default", 1, 100, "");
        empty.files.clear();
        history.apply(empty).unwrap();
        let tenant = history.at(t(100)).tenant("default").unwrap();
        assert!(tenant.triggers.is_empty());
        assert_eq!(tenant.version, 1);
    }
}
