//! Disabled KickApps users: the status change is a command the user's single writer applies,
//! and a disabled user's actions — from the commands topic or a mapped Kafka topic — become
//! dead letters (reject kind `user_disabled`) instead of counting. The record step through the
//! engine, and the real worker loop on the in-process log and the embedded store.

use crate::support::inprocess::committed_of;
use crate::support::{root, wait};
use chrono::{DateTime, Utc};
use questline::core::engine::Engine;
use questline::core::events::EventBody;
use questline::core::mapping::Mapping;
use questline::core::model::SourceRef;
use questline::core::state::UserStatusChange;
use questline::core::step::Input;
use questline::pipeline::commands::Command;
use questline::pipeline::input::Inputs;
use questline::pipeline::log::{InRecord, Log, LogError, OutRecord, Published, Rebalance};
use questline::pipeline::memory::MemoryLog;
use questline::pipeline::worker::Worker;
use questline::settings::{PipelineSettings, Topics};
use questline::store::embedded::EmbeddedStore;
use questline::store::{StateStore, UserKey};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const KICKAPPS_TOPIC: &str = "kickapps.user-actions";

fn catalog() -> Arc<questline::core::catalog::Catalog> {
    Arc::new(questline::files::load_catalog(&root().join("examples/catalog")).unwrap())
}

fn kickapps_mapping() -> Mapping {
    questline::files::load_mapping(&root().join("mappings/kickapps.toml")).unwrap()
}

fn status(user: &str, disabled: bool) -> UserStatusChange {
    UserStatusChange {
        tenant: "default".into(),
        user_id: user.into(),
        disabled,
    }
}

/// A KickApps-shaped record: a comment in the forum (trigger 20 of the example catalog).
fn comment(user: &str, id: &str) -> Vec<u8> {
    format!(
        r#"{{"user_id": "{user}", "actionId": "post_comment", "location": "forum", "quantity": 1, "userActionId": "{id}"}}"#
    )
    .into_bytes()
}

fn at() -> DateTime<Utc> {
    "2026-11-25T10:00:00Z".parse().unwrap()
}

#[test]
fn the_record_step_refuses_a_disabled_users_actions_as_dead_letters() {
    let mut engine = Engine::new(catalog());
    let mapping = kickapps_mapping().compile();
    let mut offset = 0;
    let mut next = |topic: &str| {
        offset += 1;
        SourceRef::new(topic, 0, offset)
    };
    let commands = "questline.commands";
    let out = engine.process(
        &Input::UserStatus(status("kick-1", true)),
        &[],
        &next(commands),
        at(),
    );
    assert!(out.events.is_empty(), "a status change emits nothing");
    assert!(engine.user("default", "kick-1").unwrap().disabled);

    let record = comment("kick-1", "c-1");
    let refused_at = next(KICKAPPS_TOPIC);
    let out = engine.process_record(&mapping, &record, &refused_at, at());
    assert_eq!(out.events.len(), 1, "{:?}", out.events);
    let letter = &out.events[0];
    assert_eq!(&*letter.user_id, "kick-1");
    let EventBody::DeadLetter {
        reason,
        field,
        original,
        ..
    } = &letter.body
    else {
        panic!("not a dead letter: {letter:?}")
    };
    assert!(reason.contains("user 'kick-1' is disabled"), "{reason}");
    assert_eq!(field.as_deref(), Some("userId"));
    assert_eq!(original.as_bytes(), record.as_slice(), "the record as sent");
    let state = engine.user("default", "kick-1").unwrap();
    assert!(state.challenges.is_empty(), "nothing counted: {state:?}");
    assert!(
        !state.recent_action_ids.contains("c-1"),
        "a refused action's id is not remembered: sent again once enabled, it counts"
    );

    // The same record delivered again (a crash before the commit): skipped by the watermark.
    let again = engine.process_record(&mapping, &record, &refused_at, at());
    assert!(again.events.is_empty());

    // Enabled: the same action, produced again, counts.
    engine.process(
        &Input::UserStatus(status("kick-1", false)),
        &[],
        &next(commands),
        at(),
    );
    let out = engine.process_record(&mapping, &record, &next(KICKAPPS_TOPIC), at());
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e.body, EventBody::ProgressUpdated { .. })),
        "{:?}",
        out.events
    );
    assert!(out
        .events
        .iter()
        .all(|e| !matches!(e.body, EventBody::DeadLetter { .. })));
    // Another user was never disabled.
    let other = engine.process_record(
        &mapping,
        &comment("kick-2", "c-1"),
        &next(KICKAPPS_TOPIC),
        at(),
    );
    assert!(other
        .events
        .iter()
        .all(|e| !matches!(e.body, EventBody::DeadLetter { .. })));
}

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_dead_letters_a_disabled_users_kafka_action_and_counts_it_once_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = catalog();
    let topics = Topics::default();
    let inputs = Inputs::new(Arc::clone(&catalog), &[kickapps_mapping()], &topics);
    let log = MemoryLog::new(4);
    log.subscribe(&inputs.topics());
    let store = Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
    let (stop, shutdown) = watch::channel(false);
    let worker = Worker::new(
        Arc::clone(&log),
        Arc::clone(&store),
        inputs,
        topics.clone(),
        PipelineSettings {
            batch_size: 10,
            linger_ms: 0,
            ..PipelineSettings::default()
        },
        "g".into(),
        shutdown,
    );
    let worker = tokio::spawn(async move { worker.run().await.expect("the worker loop") });
    let wait = |topic: &'static str, n: i64| {
        wait::committed(n, Duration::from_secs(20), || committed_of(&log, topic))
    };
    let command = |c: Command| serde_json::to_vec(&c).unwrap();
    let user = "kick-7";
    // Disabled first (applied before the action is produced: the topics are not ordered
    // with each other, a user's commands and a topic's records each are).
    log.append(
        &topics.commands,
        user,
        command(Command::UserStatus(status(user, true))),
    );
    wait("questline.commands", 1).await;
    let record = comment(user, "c-1");
    log.append_with_headers(
        KICKAPPS_TOPIC,
        user,
        record.clone(),
        vec![("traceparent".into(), b"00-abc-01".to_vec().into())],
    );
    wait(KICKAPPS_TOPIC, 1).await;

    let letters = log.records(&topics.dead_letter);
    assert_eq!(letters.len(), 1, "one dead letter");
    let letter = &letters[0];
    assert_eq!(letter.key.as_deref(), Some(user.as_bytes()));
    assert_eq!(
        header(&letter.headers, "questline-reject-kind"),
        Some("user_disabled")
    );
    assert_eq!(header(&letter.headers, "traceparent"), Some("00-abc-01"));
    assert_eq!(
        header(&letter.headers, "__connect.errors.topic"),
        Some(KICKAPPS_TOPIC)
    );
    let event: Value = serde_json::from_slice(&letter.payload).unwrap();
    assert_eq!(event["type"], "dead_letter");
    assert_eq!(event["field"], "userId");
    assert_eq!(
        event["original"],
        String::from_utf8(record.clone()).unwrap()
    );
    assert!(log.records(&topics.progress).is_empty(), "nothing counted");
    let stored = store
        .load_users(&[UserKey::new("default", user)])
        .await
        .unwrap()
        .remove(0)
        .expect("the user's record is stored");
    assert!(stored.state.disabled);
    assert!(stored.state.challenges.is_empty());

    // Enabled, and the action produced again: it counts, and no second dead letter.
    log.append(
        &topics.commands,
        user,
        command(Command::UserStatus(status(user, false))),
    );
    wait("questline.commands", 2).await;
    log.append(KICKAPPS_TOPIC, user, record);
    wait(KICKAPPS_TOPIC, 2).await;
    assert_eq!(log.records(&topics.dead_letter).len(), 1);
    let progress: Vec<Value> = log
        .records(&topics.progress)
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .collect();
    assert!(
        progress
            .iter()
            .any(|e| e["userId"] == user && e["triggerId"] == 20),
        "{progress:?}"
    );
    let metric = questline::metrics::metrics()
        .dead_letters
        .with_label_values(&["user_disabled"])
        .get();
    assert!(metric >= 1, "the dead letter is counted by its kind");
    stop.send(true).unwrap();
    worker.await.unwrap();
}

/// The in-process log whose publishing fails (a mock: the process "dies" after writing its
/// state and before the broker acknowledged anything).
struct PublishFails(Arc<MemoryLog>);

#[async_trait::async_trait]
impl Log for PublishFails {
    async fn poll_batch(
        &self,
        max: usize,
        linger: Duration,
        idle: Duration,
    ) -> Result<Vec<InRecord>, LogError> {
        self.0.poll_batch(max, linger, idle).await
    }
    async fn publish(&self, _: &[OutRecord]) -> Result<Published, LogError> {
        Err(LogError::Kafka {
            op: "publish (injected fault: broker gone)",
            source: rdkafka::error::KafkaError::MessageProduction(
                rdkafka::types::RDKafkaErrorCode::AllBrokersDown,
            ),
        })
    }
    async fn commit(&self, processed: &[(String, i32, i64)]) -> Result<(), LogError> {
        self.0.commit(processed).await
    }
    fn take_rebalances(&self) -> Vec<Rebalance> {
        self.0.take_rebalances()
    }
    fn set_paused(&self, paused: bool) -> Result<(), LogError> {
        self.0.set_paused(paused)
    }
}

/// The refusal moved the user's watermark, so a redelivery is skipped: its dead letter must be
/// in the outbox written with the state, or a crash before publishing would lose it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_users_dead_letter_survives_a_crash_between_write_and_publish() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = catalog();
    let topics = Topics::default();
    let inputs = Inputs::new(Arc::clone(&catalog), &[kickapps_mapping()], &topics);
    let log = MemoryLog::new(4);
    log.subscribe(&inputs.topics());
    let store = Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
    let settings = PipelineSettings {
        batch_size: 100,
        linger_ms: 0,
        ..PipelineSettings::default()
    };
    let user = "kick-8";
    log.append(
        &topics.commands,
        user,
        serde_json::to_vec(&Command::UserStatus(status(user, true))).unwrap(),
    );
    // The status change alone first, so that it is applied before the action.
    let (stop, shutdown) = watch::channel(false);
    let worker = Worker::new(
        Arc::clone(&log),
        Arc::clone(&store),
        inputs.clone(),
        topics.clone(),
        settings.clone(),
        "g".into(),
        shutdown,
    );
    let running = tokio::spawn(async move { worker.run().await.expect("the worker loop") });
    wait::committed(1, Duration::from_secs(20), || {
        log.committed().values().sum::<i64>()
    })
    .await;
    stop.send(true).unwrap();
    running.await.unwrap();

    // First life: the action evaluated and the state written; publishing fails, and the
    // process stops there (shutdown requested, so no retry).
    log.append(KICKAPPS_TOPIC, user, comment(user, "c-1"));
    log.subscribe(&inputs.topics());
    let (_stop, shutdown) = watch::channel(true);
    let mut first = Worker::new(
        Arc::new(PublishFails(Arc::clone(&log))),
        Arc::clone(&store),
        inputs.clone(),
        topics.clone(),
        settings.clone(),
        "g".into(),
        shutdown,
    );
    first.step().await.unwrap();
    assert_eq!(first.totals().retries, 1, "{:?}", first.totals());
    drop(first);
    assert!(
        log.records(&topics.dead_letter).is_empty(),
        "nothing published yet"
    );

    // Second life: the record is below the stored watermark; the dead letter comes from the
    // stored outbox, once.
    log.set_paused(false).unwrap();
    log.subscribe(&inputs.topics());
    let (stop, shutdown) = watch::channel(false);
    let second = Worker::new(
        Arc::clone(&log),
        Arc::clone(&store),
        inputs,
        topics.clone(),
        settings,
        "g".into(),
        shutdown,
    );
    let running = tokio::spawn(async move { second.run().await.expect("the worker loop") });
    wait::committed(1, Duration::from_secs(20), || {
        committed_of(&log, KICKAPPS_TOPIC)
    })
    .await;
    stop.send(true).unwrap();
    let totals = running.await.unwrap();
    assert_eq!(totals.redelivered, 1, "{totals:?}");
    let letters = log.records(&topics.dead_letter);
    assert_eq!(letters.len(), 1, "the dead letter, exactly once");
    assert_eq!(
        header(&letters[0].headers, "questline-reject-kind"),
        Some("user_disabled")
    );
}
