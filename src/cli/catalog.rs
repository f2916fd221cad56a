//! `questline catalog push|pull|log`: the catalog log from the command line. Files stay the
//! way to write and review a catalog; `push` publishes a directory as the next version of each
//! tenant it names, `pull` writes the versions in force back as files, `log` lists them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::core::catalog::{CatalogHistory, SourceFile};
use crate::failure::Failure;
use crate::files;
use crate::kafka::{self, KafkaCatalogLog};
use crate::pipeline::catalog_feed::{CatalogFeed, CatalogLog, PublishError, Published};
use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct CatalogArgs {
    #[command(subcommand)]
    pub action: CatalogAction,
    #[command(flatten)]
    pub config: super::ConfigArgs,
}

#[derive(Debug, Subcommand)]
pub enum CatalogAction {
    /// Publish the catalog files of DIR (and its subdirectories) as the next version of every
    /// tenant they declare; tenants not in DIR are left as they are. Checked first: an invalid
    /// tenant is refused with its errors and nothing of it is published.
    Push {
        dir: PathBuf,
        /// Publish this tenant's files only.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Write each tenant's latest version as files under DIR/<tenant>/.
    Pull {
        dir: PathBuf,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List every tenant's versions: number, in force from, published at and by whom.
    Log {
        #[arg(long)]
        tenant: Option<String>,
    },
}

pub fn run(args: CatalogArgs) -> Result<(), Failure> {
    let settings = crate::app::settings_from(&args.config.config)?;
    super::runtime()?.block_on(async move {
        // `push` compares with the log alone: the files a worker started with may differ
        // from the local ones (which are, often, the very files being pushed).
        let with_files = !matches!(args.action, CatalogAction::Push { .. });
        let feed = connect(&settings, with_files).await?;
        match args.action {
            CatalogAction::Push { dir, tenant } => push(&feed, &dir, tenant.as_deref()).await,
            CatalogAction::Pull { dir, tenant } => {
                let history = synced(&feed).await?;
                pull(&history, &dir, tenant.as_deref())
            }
            CatalogAction::Log { tenant } => {
                let history = synced(&feed).await?;
                print_log(&history, tenant.as_deref());
                Ok(())
            }
        }
    })
}

/// The catalog log of the configured cluster; `with_files`, on top of the configured catalog
/// files when they load (so `pull` and `log` include tenants never pushed, as version 0).
async fn connect(settings: &Settings, with_files: bool) -> Result<CatalogFeed, Failure> {
    let files = with_files
        .then(|| files::load_catalog_history(&settings.catalog.path).ok())
        .flatten();
    let base = files.unwrap_or_else(|| CatalogHistory::fixed(Default::default()));
    if settings.kafka.create_topics {
        kafka::ensure_catalog_topic(&settings.kafka, &settings.topics.catalog)
            .await
            .map_err(|e| Failure::Runtime(e.into()))?;
    }
    let producer = kafka::producer(&settings.kafka).map_err(|e| Failure::Runtime(e.into()))?;
    let log = KafkaCatalogLog::connect(&settings.kafka, &settings.topics.catalog, producer)
        .map_err(|e| Failure::Runtime(e.into()))?;
    Ok(CatalogFeed::new(
        base,
        Arc::new(log) as Arc<dyn CatalogLog>,
        Duration::from_secs(settings.catalog.activation_delay_seconds),
    ))
}

async fn synced(feed: &CatalogFeed) -> Result<Arc<CatalogHistory>, Failure> {
    feed.sync()
        .await
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("reading the catalog log: {e}")))
}

async fn push(feed: &CatalogFeed, dir: &Path, only: Option<&str>) -> Result<(), Failure> {
    let by_tenant = read_tree(dir)?;
    if by_tenant.is_empty() {
        return Err(Failure::Config(format!(
            "{}: no .toml catalog files",
            dir.display()
        )));
    }
    let by = format!("catalog push ({})", whoami());
    let mut refused = Vec::new();
    for (tenant, files) in by_tenant {
        if only.is_some_and(|t| t != tenant) {
            continue;
        }
        match feed.publish(&tenant, files, &by).await {
            Ok(Published::Version(info)) => println!(
                "tenant '{}': published version {}, in force from {}",
                info.tenant,
                info.version,
                info.effective_from.to_rfc3339()
            ),
            Ok(Published::Unchanged(version)) => {
                println!("tenant '{tenant}': unchanged (version {version})")
            }
            Err(PublishError::Refused(refusal)) => {
                eprintln!("tenant '{tenant}': refused, nothing published:");
                for reason in refusal.reasons() {
                    eprintln!("  {reason}");
                }
                refused.push(tenant);
            }
            Err(e) => return Err(Failure::Runtime(e.into())),
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Failure::Config(format!("refused: {}", refused.join(", "))))
    }
}

/// The `.toml` files under `dir`, grouped by the tenant each declares.
fn read_tree(dir: &Path) -> Result<BTreeMap<String, Vec<SourceFile>>, Failure> {
    let sources = if dir.is_dir() {
        let mut sources = Vec::new();
        collect(dir, &mut sources)?;
        sources.sort();
        sources
    } else {
        files::load_catalog_sources(dir).map_err(|e| Failure::Config(e.to_string()))?
    };
    // Parsing the whole tree at once reports every error with its path; tenants are then
    // checked one by one again when published.
    let history =
        CatalogHistory::from_sources(&sources).map_err(|e| Failure::Config(e.to_string()))?;
    Ok(history
        .tenant_names()
        .map(|t| (t.to_string(), history.files(t)))
        .collect())
}

fn collect(dir: &Path, out: &mut Vec<(String, String)>) -> Result<(), Failure> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Failure::Config(format!("{}: cannot read directory: {e}", dir.display())))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Failure::Config(format!("{}: {e}", path.display())))?;
            out.push((path.display().to_string(), text));
        }
    }
    Ok(())
}

fn pull(history: &CatalogHistory, dir: &Path, only: Option<&str>) -> Result<(), Failure> {
    for tenant in history.tenant_names() {
        if only.is_some_and(|t| t != tenant) {
            continue;
        }
        let target = dir.join(tenant);
        std::fs::create_dir_all(&target)
            .map_err(|e| Failure::Runtime(anyhow::anyhow!("{}: {e}", target.display())))?;
        let files = history.files(tenant);
        for file in &files {
            let path = target.join(&file.name);
            std::fs::write(&path, &file.text)
                .map_err(|e| Failure::Runtime(anyhow::anyhow!("{}: {e}", path.display())))?;
        }
        let version = history.versions(tenant).last().map_or(0, |v| v.version);
        println!(
            "tenant '{tenant}': version {version}, {} file(s) in {}",
            files.len(),
            target.display()
        );
    }
    Ok(())
}

fn print_log(history: &CatalogHistory, only: Option<&str>) {
    println!("tenant\tversion\tin force from\tpublished at\tby");
    for tenant in history.tenant_names() {
        if only.is_some_and(|t| t != tenant) {
            continue;
        }
        let versions: Vec<_> = history.versions(tenant).collect();
        // Version 0 (the local files) counts only while the log has none of the tenant.
        let shown = versions
            .iter()
            .filter(|v| v.version > 0 || versions.len() == 1);
        for v in shown {
            let time = |t: chrono::DateTime<chrono::Utc>| {
                if v.version == 0 {
                    "-".to_string()
                } else {
                    t.to_rfc3339()
                }
            };
            println!(
                "{}\t{}\t{}\t{}\t{}",
                v.tenant,
                v.version,
                time(v.effective_from),
                time(v.published_at),
                v.published_by
            );
        }
    }
}

fn whoami() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown user".into())
}
