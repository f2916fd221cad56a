//! `questline replay`: output snapshots, byte-for-byte determinism, and the CLI contract;
//! `replay --records` on a topic dump: the records' own coordinates, routing by topic, and
//! bad dump lines as dead letters.

use crate::support::{questline_bin, root};
use questline::cli::replay::DumpedRecord;
use questline::pipeline::log::InRecord;
use serde_json::{json, Value};
use std::process::Command;

fn questline() -> Command {
    Command::new(questline_bin())
}

fn replay(extra: &[&str]) -> std::process::Output {
    questline()
        .current_dir(root())
        .args([
            "replay",
            "--catalog",
            "examples/catalog",
            "--input",
            "examples/actions.jsonl",
        ])
        .args(extra)
        .output()
        .unwrap()
}

/// `questline replay ARGS` with `stdin`; its status, events and standard error.
fn replay_stdin(args: &[&str], stdin: &str) -> (std::process::ExitStatus, Vec<Value>, String) {
    use std::io::Write;
    let mut child = questline()
        .current_dir(root())
        .arg("replay")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let events = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out.status, events, String::from_utf8(out.stderr).unwrap())
}

#[test]
fn replay_of_the_example_actions_matches_the_snapshot() {
    let out = replay(&["--now", "2026-11-25T10:00:00Z"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    insta::assert_snapshot!("example_actions", text);
}

#[test]
fn replay_is_deterministic_byte_for_byte() {
    let a = replay(&["--now", "2026-11-25T10:00:00Z"]);
    let b = replay(&["--now", "2026-11-25T10:00:00Z"]);
    assert!(!a.stdout.is_empty());
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn replay_reads_stdin_and_applies_a_mapping() {
    let (status, lines, stderr) = replay_stdin(
        &[
            "--catalog",
            "examples/catalog",
            "--mapping",
            "mappings/kickapps.toml",
            "--now",
            "2026-11-25T10:00:00Z",
        ],
        "{\"user_id\": \"k\", \"actionId\": \"post_comment\", \"location\": \"forum\", \"quantity\": 2}\n{\"user_id\": \"k\", \"actionId\": \"post_comment\"}\n",
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["type"], "progress.updated");
    assert_eq!(lines[0]["accumulated"], 2);
    assert_eq!(lines[1]["type"], "dead_letter");
    assert_eq!(
        lines[1]["errorCode"], 8,
        "KickApps: location cannot be null or blank"
    );
    assert_eq!(lines[1]["source"]["offset"], 2, "offset is the line number");
}

/// `questline check --catalog DIR`, which must exit 2; its error output.
fn check_refuses(catalog: &std::path::Path) -> String {
    let out = questline()
        .args(["check", "--catalog"])
        .arg(catalog)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn a_bad_catalog_exits_2_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[triggers]]\nid = 1\nname = \"x\"\n\n[[challenges]]\nid = 1\nname = \"c\"\n[[challenges.groups]]\nid = 1\ntriggers = [{ trigger = 2, frequency = 5 }]\n",
    )
    .unwrap();
    let err = check_refuses(dir.path());
    assert!(
        err.contains("bad.toml:5: challenge 1: group 1: unknown trigger 2"),
        "{err}"
    );
}

/// `check` reports every bad offer with its file and line: a bad id, a price of 0, a second
/// offer with the same id, and a fractional price (a type error, at its value's line).
#[test]
fn check_reports_bad_offers_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let offers = "[[offers]]\nid = \"a b\"\ntitle = \"x\"\npoints = 5\n\n\
                  [[offers]]\nid = \"coffee\"\ntitle = \"x\"\npoints = 0\n\n\
                  [[offers]]\nid = \"coffee\"\ntitle = \"x\"\npoints = 3\n";
    std::fs::write(dir.path().join("offers.toml"), offers).unwrap();
    std::fs::write(
        dir.path().join("price.toml"),
        "tenant = \"other\"\n\n[[offers]]\nid = \"tea\"\ntitle = \"x\"\npoints = 2.5\n",
    )
    .unwrap();
    let err = check_refuses(dir.path());
    for expected in [
        "offers.toml:1: offer 'a b': id must be 1–36 characters of A-Z a-z 0-9 . _ -",
        "offers.toml:6: offer 'coffee': points must be from 1 to 1000000000000000, got 0",
        "offers.toml:11: duplicate offer id 'coffee'",
        "price.toml:6: points must be a whole number of coins, at least 1, got 2.5",
    ] {
        assert!(err.contains(expected), "{expected}\nnot in\n{err}");
    }
}

#[test]
fn check_accepts_the_shipped_configuration() {
    let out = questline()
        .current_dir(root())
        .args([
            "check",
            "--catalog",
            "examples/catalog",
            "--mappings",
            "mappings",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8(out.stdout).unwrap().ends_with("ok\n"));
}

#[test]
fn bad_usage_exits_2() {
    let out = questline()
        .args(["replay", "--now", "yesterday", "--catalog", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

// --- `replay --records`: a topic dump, with the worker's coordinates and event ids -----------

const ACTIONS_TOPIC: &str = "questline.actions";

fn record(partition: i32, offset: i64, payload: &[u8], at_ms: i64) -> InRecord {
    use chrono::TimeZone;
    InRecord {
        topic: ACTIONS_TOPIC.into(),
        partition,
        offset,
        key: Some(b"user".to_vec().into()),
        payload: payload.to_vec(),
        timestamp: chrono::Utc.timestamp_millis_opt(at_ms).unwrap(),
        headers: Vec::new(),
    }
}

fn dump_line(record: &InRecord) -> String {
    serde_json::to_string(&DumpedRecord::of(record)).unwrap()
}

#[test]
fn a_dump_line_round_trips_to_the_consumed_record() {
    let now = "2026-11-25T10:00:00Z".parse().unwrap();
    for r in [
        record(
            3,
            42,
            br#"{"userId": "151631", "triggerId": 1}"#,
            1_764_064_800_123,
        ),
        record(0, 0, "caf\u{e9} \u{1f600}\n\"quoted\"".as_bytes(), 0),
        record(1, 7, &[0xff, 0xfe, 0x00, b'{'], 1),
        InRecord {
            key: None,
            ..record(2, 9, b"", 5)
        },
    ] {
        let line = dump_line(&r);
        assert!(!line.contains('\n'), "one line: {line}");
        assert_eq!(DumpedRecord::parse(line.as_bytes(), now), Ok(r.clone()));
    }
    let binary = dump_line(&record(1, 7, &[0xff, 0xfe], 1));
    assert!(binary.contains(r#""valueBase64":"//4=""#), "{binary}");
    // No timestamp: the record time is `now`, as the worker takes the current time.
    let parsed = DumpedRecord::parse(
        br#"{"topic": "t", "partition": 0, "offset": 1, "timestamp": null, "value": "x"}"#,
        now,
    )
    .unwrap();
    assert_eq!(parsed.timestamp, now);
    assert_eq!(parsed.key, None);
}

#[test]
fn replay_records_emits_the_events_of_the_records_real_coordinates() {
    // Two partitions of the seed mapping's topic, users keyed to one partition each.
    let mut records = Vec::new();
    let mut offsets = [10i64, 500];
    for i in 0..60 {
        let user = i % 5;
        let partition = (user % 2) as usize;
        let action = if i % 3 == 0 {
            json!({"userId": format!("u{user}"), "triggerId": 2})
        } else {
            json!({"userId": format!("u{user}"), "triggerId": 1, "value": 40 + i})
        };
        records.push(record(
            partition as i32,
            offsets[partition],
            action.to_string().as_bytes(),
            1_764_064_800_000 + i * 60_000,
        ));
        offsets[partition] += 1;
    }
    let dump: String = records.iter().map(|r| dump_line(r) + "\n").collect();
    let args = [
        "--records",
        "--catalog",
        "tests/kafka/catalog.toml",
        "--mappings",
        "mappings",
    ];
    let (status, got, stderr) = replay_stdin(&args, &dump);
    assert!(status.success(), "{stderr}");

    // The engine fed the same records at the same coordinates, as the worker is.
    let catalog = std::sync::Arc::new(
        questline::files::load_catalog(&root().join("tests/kafka/catalog.toml")).unwrap(),
    );
    let mapping = questline::files::load_mapping(&root().join("mappings/seed.toml"))
        .unwrap()
        .compile();
    let mut engine = questline::core::engine::Engine::new(catalog);
    let mut want = Vec::new();
    for r in &records {
        let source = questline::core::model::SourceRef::new(r.topic, r.partition, r.offset);
        for event in engine
            .process_record(&mapping, &r.payload, &source, r.timestamp)
            .events
        {
            want.push(serde_json::to_value(&event).unwrap());
        }
    }
    assert_eq!(got, want);
    for kind in ["progress.updated", "milestone.achieved", "reward.granted"] {
        assert!(got.iter().any(|e| e["type"] == kind), "no {kind}");
    }
    assert!(got.iter().all(|e| e["source"]["topic"] == ACTIONS_TOPIC));
    // And the same run twice is the same output, byte for byte.
    let (_, again, _) = replay_stdin(&args, &dump);
    assert_eq!(again, got);
}

#[test]
fn bad_dump_lines_become_dead_letters_and_the_run_goes_on() {
    let good = |offset: i64| {
        json!({"topic": ACTIONS_TOPIC, "partition": 0, "offset": offset, "timestamp": null,
               "key": "u1", "value": json!({"userId": "u1", "triggerId": 1, "value": 5}).to_string()})
        .to_string()
    };
    let lines = [
        /* 1 */ "not json".to_string(),
        /* 2 */ json!({"topic": ACTIONS_TOPIC, "partition": 0}).to_string(),
        /* 3 */ json!({"topic": ACTIONS_TOPIC, "partition": 0, "offset": 1, "value": "{}", "valueBase64": "e30="}).to_string(),
        /* 4 */ json!({"topic": ACTIONS_TOPIC, "partition": 0, "offset": 2, "valueBase64": "***"}).to_string(),
        /* 5 */ json!({"topic": ACTIONS_TOPIC, "partition": -1, "offset": 3, "value": "{}"}).to_string(),
        /* 6 */ json!({"topic": ACTIONS_TOPIC, "partition": 0, "offset": 4, "value": "{}", "partiton": 1}).to_string(),
        /* 7 */ json!({"topic": ACTIONS_TOPIC, "partition": 0, "offset": 5, "timestamp": -5, "value": "{}"}).to_string(),
        /* 8 */ String::new(),
        /* 9 */ json!({"topic": "elsewhere", "partition": 0, "offset": 5, "value": "{}"}).to_string(),
        /* 10 */ json!({"topic": ACTIONS_TOPIC, "partition": 0, "offset": 6, "value": "not json"}).to_string(),
        /* 11 */ json!({"topic": ACTIONS_TOPIC, "partition": 0, "offset": 8, "valueBase64": "//4="}).to_string(),
        /* 12 */ good(9),
        /* 13 */ good(9),
        /* 14 */ good(3),
        /* 15 */ json!({"topic": ACTIONS_TOPIC, "partition": 0, "offset": 10, "value": json!({"userId": "u1", "triggerId": 1, "value": 5, "tenant": "nobody"}).to_string()}).to_string(),
        /* 16 */ good(11),
    ];
    let (status, events, stderr) = replay_stdin(
        &[
            "--records",
            "--catalog",
            "tests/kafka/catalog.toml",
            "--mappings",
            "mappings",
            "--now",
            "2026-11-25T10:00:00Z",
        ],
        &(lines.join("\n") + "\n"),
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped 2 records"),
        "the repeated offset 9 and the older offset 3: {stderr}"
    );
    let source = |e: &Value| {
        format!(
            "{}:{}:{}",
            e["source"]["topic"].as_str().unwrap(),
            e["source"]["partition"],
            e["source"]["offset"]
        )
    };
    let dead: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["type"] == "dead_letter")
        .map(|e| (source(e), e["reason"].as_str().unwrap().to_string()))
        .collect();
    let expected_dead = [
        ("replay:0:1", "not a valid record dump line"),
        ("replay:0:2", "missing field `offset`"),
        ("replay:0:3", "both value and valueBase64"),
        ("replay:0:4", "valueBase64"),
        ("replay:0:5", "negative partition or offset"),
        ("replay:0:6", "unknown field `partiton`"),
        ("replay:0:7", "timestamp -5 out of range"),
        ("elsewhere:0:5", "no mapping for topic 'elsewhere'"),
        ("questline.actions:0:6", "not JSON"),
        ("questline.actions:0:8", "not JSON"),
        ("questline.actions:0:10", "unknown tenant 'nobody'"),
    ];
    assert_eq!(dead.len(), expected_dead.len(), "{dead:#?}");
    for ((got_source, reason), (want_source, want_reason)) in dead.iter().zip(expected_dead) {
        assert_eq!(got_source, want_source, "{reason}");
        assert!(reason.contains(want_reason), "{got_source}: {reason}");
    }
    // A malformed line is kept whole; a record's original is its value (binary as base64).
    let letter = |at: &str| events.iter().find(|e| source(e) == at).unwrap();
    assert_eq!(letter("replay:0:1")["original"], "not json");
    assert_eq!(letter("questline.actions:0:8")["encoding"], "base64");
    assert_eq!(letter("questline.actions:0:8")["original"], "//4=");
    // The good records around them: evaluated once each, at --now (they have no timestamp).
    let progress: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "progress.updated")
        .collect();
    let sources: Vec<String> = progress.iter().map(|e| source(e)).collect();
    assert!(
        sources
            .iter()
            .all(|s| s == "questline.actions:0:9" || s == "questline.actions:0:11"),
        "{sources:?}"
    );
    assert!(sources.contains(&"questline.actions:0:11".to_string()));
    assert!(progress
        .iter()
        .all(|e| e["occurredAt"] == "2026-11-25T10:00:00Z"));
}

#[test]
fn replay_records_takes_topics_catalog_and_mappings_from_the_workers_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("questline.toml");
    std::fs::write(
        &config,
        format!(
            "[topics]\ncommands = \"my.commands\"\ninventory_responses = \"my.responses\"\n\
             [catalog]\npath = \"{}\"\n[mappings]\ndir = \"{}\"\n",
            root().join("tests/kafka/catalog.toml").display(),
            root().join("mappings").display()
        ),
    )
    .unwrap();
    let command = json!({"command": "addAction", "userId": "u7", "triggerId": 1, "value": 3});
    let response = serde_json::to_string(&questline::core::inventory::Response {
        request_id: "my.commands:1:3#r0".into(),
        tenant: "default".into(),
        user_id: "u7".into(),
        outcome: questline::core::inventory::Outcome::Granted {
            inventory_id: None,
            code: None,
        },
    })
    .unwrap();
    let lines = [
        json!({"topic": "my.commands", "partition": 1, "offset": 4, "timestamp": 1_764_064_800_000i64, "value": command.to_string()}),
        // The inventory stage runs in-process: its records are skipped (a malformed one is
        // dead-lettered, as the worker does).
        json!({"topic": "my.responses", "partition": 1, "offset": 0, "value": response}),
        json!({"topic": "my.responses", "partition": 1, "offset": 1, "value": "{}"}),
        // Not a topic of this configuration.
        json!({"topic": "questline.commands", "partition": 1, "offset": 0, "value": command.to_string()}),
        json!({"topic": ACTIONS_TOPIC, "partition": 1, "offset": 0, "value": json!({"userId": "u7", "triggerId": 2}).to_string()}),
    ];
    let dump: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    let (status, events, stderr) =
        replay_stdin(&["--records", "--config", config.to_str().unwrap()], &dump);
    assert!(status.success(), "{stderr}");
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["source"]["topic"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        summary.contains(&("progress.updated".into(), "my.commands".into())),
        "{summary:?}"
    );
    assert!(
        summary.contains(&("dead_letter".into(), "questline.commands".into())),
        "{summary:?}"
    );
    assert!(
        summary.contains(&("progress.updated".into(), ACTIONS_TOPIC.into())),
        "{summary:?}"
    );
    let responses: Vec<&Value> = events
        .iter()
        .filter(|e| e["source"]["topic"] == "my.responses")
        .collect();
    assert_eq!(responses.len(), 1, "{summary:?}");
    assert_eq!(responses[0]["source"]["offset"], 1);
    assert!(responses[0]["reason"]
        .as_str()
        .unwrap()
        .contains("not a valid inventory response"));
    let from_command = events
        .iter()
        .find(|e| e["source"]["topic"] == "my.commands")
        .unwrap();
    assert_eq!(from_command["occurredAt"], "2025-11-25T10:00:00Z");
}

#[test]
fn replay_records_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let no_topics = dir.path().join("no-topics.toml");
    std::fs::write(&no_topics, "name = \"no-topics\"\n").unwrap();
    let cases: [&[&str]; 5] = [
        // --mappings and --config belong to --records.
        &["--catalog", "examples/catalog", "--mappings", "mappings"],
        &[
            "--catalog",
            "examples/catalog",
            "--config",
            "questline.toml",
        ],
        &[
            "--records",
            "--catalog",
            "examples/catalog",
            "--mapping",
            "mappings/seed.toml",
            "--mappings",
            "mappings",
        ],
        &[
            "--records",
            "--catalog",
            "examples/catalog",
            "--mappings",
            "no-such-dir",
        ],
        // With --records a mapping applies to the topics it names.
        &[
            "--records",
            "--catalog",
            "examples/catalog",
            "--mapping",
            no_topics.to_str().unwrap(),
        ],
    ];
    for args in cases {
        let (status, events, stderr) = replay_stdin(args, "");
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(events.is_empty());
    }
    let help = questline().args(["replay", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for word in [
        "--records",
        "--mappings",
        "--config",
        "valueBase64",
        "kafka-record.v1.json",
    ] {
        assert!(help.contains(word), "replay --help does not mention {word}");
    }
}
