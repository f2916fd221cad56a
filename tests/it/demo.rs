//! `questline demo`, as a user runs it: the real binary, the real sidecar, a real HTTP client.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn questline() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_questline"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_action_through_the_demo_is_evaluated_and_visible_in_progress() {
    let port = free_port();
    let mut child = questline()
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("demo output");
        if line.contains("The sidecar is serving") {
            break;
        }
        assert!(Instant::now() < deadline, "the demo never served");
    }
    let base = format!("http://127.0.0.1:{port}");
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
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "demo did not exit on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "Ctrl-C exits cleanly: {status:?}");
}
