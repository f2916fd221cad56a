//! `questline demo`, as a user runs it: the real binary, the real sidecar, a real HTTP client.

use crate::support::demo::Demo;
use crate::support::{questline_bin, root};
use std::process::Command;
use std::time::Duration;

fn questline() -> Command {
    let mut c = Command::new(questline_bin());
    c.current_dir(root());
    c
}

#[test]
fn demo_without_serving_prints_the_example_events_and_exits_0() {
    let out = questline().args(["demo", "--no-serve"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "milestone.achieved user 151631     \"Earn 1000 Points\" milestone 1-1",
        "reward.granted     user 151631     voucher_burger code BURGER-0001 (balance 1)",
        "reward.rejected    user 12365984   points: capped",
        "dead_letter        user 151631     triggerId: unknown trigger '99'",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn demo_json_prints_one_event_per_line() {
    let out = questline()
        .args(["demo", "--no-serve", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON event per line"))
        .collect();
    assert!(lines.iter().any(|e| e["type"] == "milestone.achieved"));
    assert!(lines.iter().all(|e| e["eventId"].is_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_action_through_the_demo_is_evaluated_and_visible_in_progress() {
    let mut demo = Demo::start();
    let base = demo.base.clone();
    let http = reqwest::Client::new();
    let progress_of = |body: &serde_json::Value| -> serde_json::Value {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == 2)
            .map(|c| c["groupProgress"][0]["triggersProgress"][0].clone())
            .unwrap()
    };
    let url = format!(
        "{base}/api/v1/Challenges/GetProgressChallengesInfoForUser?UserId=new-user&CategoryId=1"
    );
    let before: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(progress_of(&before)["progress"], 0);
    let ok: serde_json::Value = http
        .post(format!("{base}/api/v1/Integration/AddAction"))
        .json(&serde_json::json!({"userId": "new-user", "triggerId": 3, "value": 40}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["statusCode"], 1);
    // Evaluation is asynchronous (through the log): poll until it shows.
    let mut seen = serde_json::Value::Null;
    for _ in 0..100 {
        let body: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        seen = progress_of(&body);
        if seen["progress"] == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen["progress"], 40, "{seen}");
    assert_eq!(seen["actionLeft"], 60);
    let status = demo
        .interrupt(Duration::from_secs(15))
        .expect("demo did not exit on Ctrl-C");
    assert!(status.success(), "Ctrl-C exits cleanly: {status:?}");
}
