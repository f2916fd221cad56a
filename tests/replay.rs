//! `questline replay`: output snapshots, byte-for-byte determinism, and the CLI contract.

use std::path::Path;
use std::process::Command;

fn questline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_questline"))
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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
    use std::io::Write;
    let mut child = questline()
        .current_dir(root())
        .args([
            "replay",
            "--catalog",
            "examples/catalog",
            "--mapping",
            "mappings/kickapps.toml",
            "--now",
            "2026-11-25T10:00:00Z",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"user_id\": \"k\", \"actionId\": \"post_comment\", \"location\": \"forum\", \"quantity\": 2}\n{\"user_id\": \"k\", \"actionId\": \"post_comment\"}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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

#[test]
fn a_bad_catalog_exits_2_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[triggers]]\nid = 1\nname = \"x\"\n\n[[challenges]]\nid = 1\nname = \"c\"\n[[challenges.groups]]\nid = 1\ntriggers = [{ trigger = 2, frequency = 5 }]\n",
    )
    .unwrap();
    let out = questline()
        .args(["check", "--catalog"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("bad.toml:5: challenge 1: group 1: unknown trigger 2"),
        "{err}"
    );
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
