//! `questline demo`: the whole engine in one process, on the embedded defaults.
//!
//! This module holds what is the demo's own — the examples it feeds and how it prints — and
//! `app::run_demo` wires it. The same worker loop as production runs on the in-process log
//! and the embedded store;
//! the example actions go in through the seed mapping, every output event is printed as it is
//! published, and then the real sidecar serves the state until Ctrl-C. Nothing needs to be
//! installed or running: the example catalog, mappings and actions are compiled in and used
//! when the files are not found next to the working directory.

use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::core::catalog::{Catalog, CatalogHistory};
use crate::core::events::{Event, EventBody};
use crate::core::mapping::Mapping;
use crate::failure::Failure;
use crate::files;
use crate::pipeline::memory::MemoryLog;
use crate::settings::Settings;

const EMBEDDED_CATALOG: [(&str, &str); 4] = [
    (
        "examples/catalog/challenges.toml",
        include_str!("../examples/catalog/challenges.toml"),
    ),
    (
        "examples/catalog/rewards.toml",
        include_str!("../examples/catalog/rewards.toml"),
    ),
    (
        "examples/catalog/triggers.toml",
        include_str!("../examples/catalog/triggers.toml"),
    ),
    (
        "examples/catalog/kwegg.toml",
        include_str!("../examples/catalog/kwegg.toml"),
    ),
];
const EMBEDDED_MAPPINGS: [(&str, &str); 3] = [
    (
        "mappings/kickapps.toml",
        include_str!("../mappings/kickapps.toml"),
    ),
    (
        "mappings/kwegg.toml",
        include_str!("../mappings/kwegg.toml"),
    ),
    ("mappings/seed.toml", include_str!("../mappings/seed.toml")),
];
const EMBEDDED_ACTIONS: &str = include_str!("../examples/actions.jsonl");

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the sidecar listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Print the events as JSON lines instead of a summary per event.
    #[arg(long)]
    pub json: bool,
    /// Keep the embedded store here (default: a temporary directory removed on exit).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// JSON lines of native actions to feed (default: examples/actions.jsonl).
    #[arg(long)]
    pub actions: Option<PathBuf>,
    /// Exit once the example actions are processed, without serving.
    #[arg(long)]
    pub no_serve: bool,
}

fn load_catalog() -> Result<CatalogHistory, Failure> {
    let dir = PathBuf::from("examples/catalog");
    if dir.is_dir() {
        files::load_catalog_history(&dir)
    } else {
        CatalogHistory::from_sources(&EMBEDDED_CATALOG)
    }
    .map_err(|e| Failure::Config(e.to_string()))
}

fn load_mappings() -> Result<Vec<Mapping>, Failure> {
    let dir = PathBuf::from("mappings");
    if dir.is_dir() {
        return files::load_mappings(&dir).map_err(|e| Failure::Config(e.to_string()));
    }
    EMBEDDED_MAPPINGS
        .iter()
        .map(|(name, text)| {
            files::parse_mapping(name, text).map_err(|e| Failure::Config(e.to_string()))
        })
        .collect()
}

fn load_actions(path: Option<&PathBuf>) -> Result<String, Failure> {
    match path {
        Some(p) => {
            std::fs::read_to_string(p).map_err(|e| Failure::Config(format!("{}: {e}", p.display())))
        }
        None => {
            let default = PathBuf::from("examples/actions.jsonl");
            Ok(std::fs::read_to_string(default).unwrap_or_else(|_| EMBEDDED_ACTIONS.to_string()))
        }
    }
}

/// What the demo runs on: the example catalog, mappings and actions (files next to the
/// working directory, else the copies compiled in).
pub struct Examples {
    /// Every tenant's version 0; the demo's admin API publishes later ones.
    pub history: CatalogHistory,
    pub catalog: Arc<Catalog>,
    pub mappings: Vec<Mapping>,
    pub actions: String,
}

impl Examples {
    pub fn load(args: &DemoArgs) -> Result<Self, Failure> {
        let history = load_catalog()?;
        Ok(Examples {
            catalog: Arc::clone(history.latest()),
            history,
            mappings: load_mappings()?,
            actions: load_actions(args.actions.as_ref())?,
        })
    }

    /// Appends the example actions to the seed mapping's topic, as a producer would (keyed
    /// by user); returns how many and the topic.
    pub fn feed(&self, log: &MemoryLog) -> (usize, String) {
        let seed_topic = self
            .mappings
            .iter()
            .find(|m| m.name == "seed")
            .and_then(|m| m.topics.first().cloned())
            .unwrap_or_else(|| "questline.actions".into());
        let mut fed = 0;
        for line in self.actions.lines().filter(|l| !l.trim().is_empty()) {
            let key = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("userId").and_then(|u| u.as_str().map(str::to_string)))
                .unwrap_or_default();
            log.append(&seed_topic, &key, line.as_bytes().to_vec());
            fed += 1;
        }
        (fed, seed_topic)
    }
}

/// Waits until every record of every input topic is committed (and the inventory round trips
/// they caused), or 10 s.
pub async fn wait_until_drained(log: &MemoryLog, topics: &[String]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let committed = log.committed();
        let done = topics.iter().all(|t| {
            let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
            for r in log.records(t) {
                ends.insert(r.partition, r.offset + 1);
            }
            ends.iter()
                .all(|(p, end)| committed.get(&(t.clone(), *p)).copied().unwrap_or(0) >= *end)
        });
        if done {
            return;
        }
        log.wait_for_change(Duration::from_millis(50)).await;
    }
}

pub fn print_try_it(addr: std::net::SocketAddr) {
    println!();
    println!("The sidecar is serving on http://{addr} (Ctrl-C to stop). Try:");
    println!("  curl -s 'http://{addr}/api/v1/Challenges/GetProgressChallengesInfoForUser?UserId=151631'");
    println!(
        "  curl -s -X POST http://{addr}/api/v1/Integration/AddAction -H 'Content-Type: application/json' \\\n       -d '{{\"userId\": \"151631\", \"triggerId\": 3, \"value\": 100}}'"
    );
    println!("  curl -s http://{addr}/api/v1/users/151631/balances");
    println!(
        "  curl -s -X POST http://{addr}/userauth/user/tenant/login -H 'License-Key: {}' -H 'Platform: RAW' \\\n       -H 'Content-Type: application/json' -d '{{\"userId\": \"12\"}}'   # the Kwegg API",
        crate::http::kwegg::DEMO_LICENSE_KEY
    );
    println!(
        "  curl -s 'http://{addr}/rest/user/action/add/{}?t={}&user_id=kick-1&actionId=post_comment&location=forum'   # KickApps",
        crate::http::kickapps::DEMO_SITE,
        crate::http::kickapps::DEMO_ADMIN_TOKEN
    );
    println!(
        "  curl -s 'http://{addr}/user/balance?user_id=151631'   # the Rokwire API; POST /int/reward is signed as\n  \
         # a building block ({}): docs/http-api.md, \"Rokwire API\"",
        crate::http::rokwire::DEMO_CLIENTS
            .iter()
            .map(|(id, secret)| format!("{id} / {secret}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
}

pub async fn print_events(
    log: Arc<MemoryLog>,
    settings: Settings,
    catalog: Arc<Catalog>,
    json: bool,
) {
    let topics = [
        settings.topics.progress.clone(),
        settings.topics.rewards.clone(),
        settings.topics.dead_letter.clone(),
    ];
    let mut positions: BTreeMap<String, BTreeMap<i32, usize>> = BTreeMap::new();
    loop {
        let mut records = Vec::new();
        for t in &topics {
            records.extend(log.read_new(t, positions.entry(t.clone()).or_default()));
        }
        for r in records {
            let Ok(event) = serde_json::from_slice::<Event>(&r.payload) else {
                continue;
            };
            if json {
                println!("{}", String::from_utf8_lossy(&r.payload));
            } else {
                println!("{}", summary(&event, &catalog));
            }
        }
        log.wait_for_change(Duration::from_millis(200)).await;
    }
}

/// One readable line per event.
pub fn summary(event: &Event, catalog: &Catalog) -> String {
    let name = |id: u32| {
        catalog
            .tenant(&event.tenant)
            .and_then(|t| t.challenge(id))
            .map(|c| c.name.pick(&[]).to_string())
            .unwrap_or_default()
    };
    let what = match &event.body {
        EventBody::ProgressUpdated {
            challenge_id,
            trigger_id,
            accumulated,
            trigger_frequency,
            progress,
            ..
        } => format!(
            "\"{}\" trigger {trigger_id}: {} of {} ({}%)",
            name(*challenge_id),
            accumulated.normalize(),
            trigger_frequency.normalize(),
            progress.normalize()
        ),
        EventBody::MilestoneAchieved {
            challenge_id,
            milestone_id,
            prizes,
        } => format!(
            "\"{}\" milestone {milestone_id}, prizes: {}",
            name(*challenge_id),
            prizes
                .iter()
                .map(|p| p.description.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
        EventBody::RewardGranted {
            reward_type,
            amount,
            code,
            balance,
            ..
        } => match code {
            Some(code) => format!(
                "{reward_type} code {code} (balance {})",
                balance.normalize()
            ),
            None => format!(
                "{} {reward_type} (balance {})",
                amount.unwrap_or_default().normalize(),
                balance.normalize()
            ),
        },
        EventBody::RewardRejected {
            reward_type,
            reason,
            ..
        } => format!("{reward_type}: {reason:?}").to_lowercase(),
        EventBody::RewardExpired {
            reward_type,
            amount,
            code,
            ..
        } => match code {
            Some(code) => format!("{reward_type} code {code} expired"),
            None => format!(
                "{} {reward_type} expired",
                amount.unwrap_or_default().normalize()
            ),
        },
        EventBody::ClaimCompleted {
            claim_id, items, ..
        } => format!("claim {claim_id}: {} items", items.len()),
        EventBody::ClaimFailed {
            claim_id, reason, ..
        } => format!("claim {claim_id}: {reason}"),
        EventBody::DeadLetter { reason, .. } => reason.clone(),
    };
    format!("{:<18} user {:<10} {what}", event.kind(), event.user_id)
}
