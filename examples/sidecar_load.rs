//! The sidecar alone, over an embedded store filled with real engine state: a target for
//! load tools.
//!
//! ```text
//! cargo run --release --example sidecar_load -- --listen 127.0.0.1:8088 --users 10000
//! wrk -t1 -c32 -d20s --latency \
//!   'http://127.0.0.1:8088/api/v1/Challenges/GetProgressChallengesInfoForUser?UserId=151631'
//! ```
//!
//! The store is a fresh embedded store in a temporary directory. It is filled by running
//! `examples/actions.jsonl` and then `--users` synthetic users (points, redemptions, tier
//! hits, forum comments, so that every challenge has state) through the real engine, and
//! writing the resulting records, history and counters with `write_batch`, as the worker
//! would. Actions and claims posted to it are accepted and dropped: the command sink here is
//! a no-op, since what is measured is the query path. Runs until Ctrl-C.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use questline::core::engine::Engine;
use questline::core::events::EventBody;
use questline::core::mapping::Mapping;
use questline::core::model::SourceRef;
use questline::http::{self, AppState};
use questline::pipeline::commands::{Command, CommandSink, SubmitError};
use questline::settings::HttpSettings;
use questline::store::embedded::EmbeddedStore;
use questline::store::{
    BatchWrite, FinishedCount, HistoryChain, HistoryEntry, HistoryPos, StateStore, UserKey,
    UserRecord,
};
use questline::trace_context::TraceContext;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Accepts every command and drops it (load tests measure the query path only).
struct DiscardingSink;

#[async_trait]
impl CommandSink for DiscardingSink {
    async fn submit(
        &self,
        _command: &Command,
        _: Option<&TraceContext>,
    ) -> Result<(), SubmitError> {
        Ok(())
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:8088".into());
    let users: usize = arg("--users").map_or(Ok(10_000), |u| u.parse())?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let catalog = Arc::new(
        questline::files::load_catalog(&root.join("examples/catalog"))
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let dir = tempfile::tempdir()?;
    let store = EmbeddedStore::open(dir.path())?;

    let mut engine = Engine::new(Arc::clone(&catalog));
    let native = Mapping::native().compile();
    let at: DateTime<Utc> = "2026-11-25T10:00:00Z".parse()?;
    let mut lines: Vec<String> = std::fs::read_to_string(root.join("examples/actions.jsonl"))?
        .lines()
        .map(str::to_string)
        .collect();
    for i in 0..users {
        let u = format!("user-{i}");
        lines.push(format!(
            r#"{{"userId": "{u}", "triggerId": 1, "value": {}}}"#,
            (i * 37) % 1200
        ));
        lines.push(format!(
            r#"{{"userId": "{u}", "triggerId": 3, "value": {}}}"#,
            (i * 13) % 150
        ));
        lines.push(format!(
            r#"{{"userId": "{u}", "triggerId": 6, "value": {}}}"#,
            i % 4
        ));
        lines.push(format!(
            r#"{{"userId": "{u}", "triggerId": "post_comment", "location": "forum", "value": {}}}"#,
            i % 6
        ));
    }
    let mut batch = BatchWrite::default();
    // Each user's history length and chain: entries filed by position, as the worker files
    // them, so the sidecar's history pages walk the links.
    let mut history_len: BTreeMap<UserKey, (u64, HistoryChain)> = BTreeMap::new();
    let mut finished: BTreeMap<u32, u64> = BTreeMap::new();
    for (offset, line) in lines.iter().enumerate() {
        let source = SourceRef::new("load", 0, offset as i64);
        for (index, event) in engine
            .process_record(&native, line.as_bytes(), &source, at)
            .events
            .into_iter()
            .enumerate()
        {
            match &event.body {
                EventBody::ProgressUpdated { .. } | EventBody::DeadLetter { .. } => continue,
                EventBody::MilestoneAchieved {
                    challenge_id,
                    milestone_id,
                    ..
                } if milestone_id.ends_with("-1") => {
                    *finished.entry(*challenge_id).or_default() += 1
                }
                _ => {}
            }
            let key = UserKey::new(event.tenant.clone(), event.user_id.clone());
            let (seq, chain) = history_len.entry(key.clone()).or_default();
            let at = HistoryPos {
                input: "load:0".into(),
                offset: offset as i64,
                index: index as u32,
            };
            let mut entry = HistoryEntry::new(*seq, event);
            entry.place = Some(chain.push(*seq, at));
            batch.history.push((key, entry));
            *seq += 1;
        }
    }
    for (key, state) in engine.users() {
        let (history_len, history_chain) = history_len.get(key).cloned().unwrap_or_default();
        let record = UserRecord {
            state: state.clone(),
            history_len,
            history_chain,
            ..Default::default()
        };
        batch.users.push((key.clone(), record));
    }
    batch.finished = finished
        .into_iter()
        .map(|(challenge_id, count)| FinishedCount {
            tenant: "default".into(),
            challenge_id,
            partition: "p0".into(),
            count,
        })
        .collect();
    store.write_batch(&batch).await?;
    eprintln!(
        "store: {} users, {} history entries in {}",
        batch.users.len(),
        batch.history.len(),
        dir.path().display()
    );

    let settings = HttpSettings {
        listen: listen.clone(),
        ..HttpSettings::default()
    };
    let state = AppState::new(catalog, Arc::new(store), Arc::new(DiscardingSink), settings);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!(
        "sidecar on http://{}/api/v1/Challenges/GetProgressChallengesInfoForUser?UserId=151631 (Ctrl-C stops)",
        listener.local_addr()?
    );
    http::serve(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
