//! KickApps' AddUserAction against the running `questline demo`, with curl as the client: the
//! real binary, the real worker and sidecar, and an HTTP client that shares no code with them.
//!
//! The commands are the ones docs/http-api.md shows ("KickApps AddUserAction", "Try it on the
//! demo"), run as written, each compared with the status and answer the page gives: every
//! documented error code, the success shape, and disable → 48 → enable → added. So the page and
//! the sidecar cannot drift apart. Then, in process against the real router, what the calls
//! submit to the log, and the answers when the log or the store is down.

use crate::support::demo::Demo;
use crate::support::free_port;
use crate::support::http::{example_catalog, DownStore, RecordingSink};
use questline::core::model::TriggerKey;
use questline::core::state::UserStatusChange;
use questline::http::{self, kickapps, AppState};
use questline::pipeline::commands::{Command as LogCommand, CommandSink};
use questline::settings::HttpSettings;
use questline::store::embedded::EmbeddedStore;
use questline::store::StateStore;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DOC_ADDRESS: &str = "127.0.0.1:8080";

/// The demo, serving on `port`, once it has shown a KickApps call to try.
fn start_demo(port: u16) -> Demo {
    let demo = Demo::start_on(port);
    let mut kickapps_hint = demo
        .announced
        .iter()
        .any(|line| line.contains("/rest/user/action/add/8001?t=demo-admin-token"));
    // The try-it lines follow the announcement.
    for _ in 0..8 {
        match demo.next_line(Duration::from_secs(2)) {
            Some(line) => kickapps_hint |= line.contains("/rest/user/action/add/8001"),
            None => break,
        }
    }
    assert!(kickapps_hint, "the demo shows a KickApps call to try");
    demo
}

/// One documented command and the answer the page gives for it.
#[derive(Debug)]
struct Documented {
    command: String,
    status: u16,
    answer: Value,
}

/// The first `bash` block of the page's KickApps section: its first line (the variables) and
/// every command preceded by a `# <status> <answer>` line.
fn documented() -> (String, Vec<Documented>) {
    let page = std::fs::read_to_string(crate::support::root().join("docs/http-api.md")).unwrap();
    let section = page
        .split("\n## KickApps AddUserAction")
        .nth(1)
        .expect("the KickApps section");
    let block = section
        .split("```bash\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a bash block in the KickApps section");
    let mut lines = block.lines();
    let prelude = lines.next().unwrap().to_string();
    let mut out = Vec::new();
    let mut expected: Option<(u16, Value)> = None;
    let mut command = String::new();
    for line in lines {
        if let Some(comment) = line.strip_prefix("# ") {
            let (status, answer) = comment.split_once(' ').unwrap_or((comment, ""));
            if let (Ok(status), Ok(answer)) = (status.parse::<u16>(), serde_json::from_str(answer))
            {
                expected = Some((status, answer));
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        command.push_str(line);
        if line.ends_with('\\') {
            command.push('\n');
            continue;
        }
        let (status, answer) = expected
            .take()
            .unwrap_or_else(|| panic!("no documented answer for: {command}"));
        out.push(Documented {
            command: std::mem::take(&mut command),
            status,
            answer,
        });
    }
    (prelude, out)
}

/// Runs `command` (a curl call) after `prelude` in bash; its status and body.
fn run(prelude: &str, command: &str, port: u16) -> (u16, String) {
    let address = format!("127.0.0.1:{port}");
    let script = format!(
        "{}\n{} -w '\\n%{{http_code}}'",
        prelude.replace(DOC_ADDRESS, &address),
        command.replace(DOC_ADDRESS, &address)
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{script}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_string())
}

#[test]
fn the_documented_calls_answer_as_documented_with_curl() {
    let (prelude, calls) = documented();
    // Every code the seed documents for AddUserAction, the success, and disable/enable.
    let ids: BTreeSet<String> = calls
        .iter()
        .filter_map(|c| c.answer["errorId"].as_str().map(str::to_string))
        .collect();
    for code in ["1", "8", "10", "11", "13", "18", "20", "44", "48"] {
        assert!(ids.contains(code), "error {code} is not shown: {ids:?}");
    }
    assert!(calls.iter().any(|c| c.answer["added"] == true));
    assert!(calls.iter().any(|c| c.answer["disabled"] == true));
    assert!(calls.iter().any(|c| c.answer["disabled"] == false));

    let port = free_port();
    let _demo = start_demo(port);
    for call in &calls {
        // A status change reaches the stored state once the worker evaluated it: the call
        // after one may need a moment (the window docs/http-api.md describes).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = run(&prelude, &call.command, port);
            let answer: Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {body}", call.command));
            if (status, &answer) == (call.status, &call.answer) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}\n  documented: {} {}\n  answered:   {status} {answer}",
                call.command,
                call.status,
                call.answer
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // The CORS preflight the page shows.
    let (status, head) = run(
        &prelude,
        "curl -s -i -X OPTIONS \"$B/action/add/$S\" -H 'Origin: https://community.example' \
         -H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: content-type'",
        port,
    );
    assert_eq!(status, 200, "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert!(
        head.contains("access-control-allow-methods: get,post"),
        "{head}"
    );
    // An answer carries it too, errors included.
    let (_, head) = run(
        &prelude,
        "curl -s -i \"$B/action/add/$S?t=$T\" -H 'Origin: https://community.example'",
        port,
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("access-control-allow-origin: *"),
        "{head}"
    );

    // The routes are in the OpenAPI document.
    let (status, doc) = run(
        "",
        &format!("curl -s http://{DOC_ADDRESS}/openapi.json"),
        port,
    );
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    for path in [
        "/rest/user/action/add/{as}",
        "/rest/user/disable/{as}",
        "/rest/user/enable/{as}",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} not in /openapi.json"
        );
    }
    assert!(doc["paths"]["/rest/user/action/add/{as}"]["get"].is_object());
    assert!(doc["paths"]["/rest/user/action/add/{as}"]["post"].is_object());
}

/// The real router with the demo's KickApps site, over `store`, submitting to `sink`.
async fn sidecar(store: Arc<dyn StateStore>, sink: Arc<RecordingSink>) -> String {
    let catalog = example_catalog();
    let mut state = AppState::new(
        Arc::clone(&catalog),
        store,
        sink as Arc<dyn CommandSink>,
        HttpSettings {
            max_body_bytes: 1024,
            ..HttpSettings::default()
        },
    );
    state.kickapps = kickapps::Sites::new(&kickapps::demo_settings(), &catalog).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/rest/user", listener.local_addr().unwrap());
    tokio::spawn(http::serve(listener, state, std::future::pending()));
    base
}

async fn answer(response: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_submit_the_action_and_the_status_change_and_refusals_submit_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let sink = Arc::new(RecordingSink::default());
    let base = sidecar(store, Arc::clone(&sink)).await;
    let client = reqwest::Client::new();
    let t = kickapps::DEMO_ADMIN_TOKEN;

    // A form POST with the token in the query string: the action the worker will evaluate.
    let (status, _, body) = answer(
        client
            .post(format!("{base}/action/add/8001?t={t}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                "user_id=kick-1&actionId=post_comment&location=forum&quantity=-2&userActionId=c-9",
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": 1, "added": true, "userActionId": "c-9"})
        )
    );
    let commands = sink.commands();
    assert_eq!(commands.len(), 1);
    let LogCommand::AddAction(action) = &commands[0] else {
        panic!("{commands:?}")
    };
    assert_eq!(action.tenant, "default");
    assert_eq!(action.user_id, "kick-1");
    assert_eq!(action.trigger_id, TriggerKey::Name("post_comment".into()));
    assert_eq!(action.location.as_deref(), Some("forum"));
    assert_eq!(action.value, (-2).into());
    assert_eq!(
        action.action_id.as_deref(),
        Some("c-9"),
        "the answer's userActionId is the id the worker deduplicates on"
    );

    // Without userActionId: a fresh id, answered and submitted alike.
    let (_, _, body) = answer(
        client
            .get(format!(
                "{base}/action/add/8001?t={t}&user_id=kick-1&actionId=post_comment&location=blog"
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let LogCommand::AddAction(action) = &sink.commands()[1] else {
        panic!()
    };
    assert_eq!(body["userActionId"].as_str(), action.action_id.as_deref());
    assert_eq!(body["userActionId"].as_str().unwrap().len(), 36);

    // Refused calls submit nothing, whatever the reason.
    for query in [
        "user_id=kick-1&actionId=post_comment&location=forum".to_string(),
        format!("t={t}&user_id=kick-1&actionId=post_comment&location=forum&callback=f"),
        format!("t={t}&user_id=kick-1&user_id=kick-2&actionId=post_comment&location=forum"),
    ] {
        let (status, _, _) = answer(
            client
                .get(format!("{base}/action/add/8001?{query}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(status >= 400, "{query}");
    }
    // A parameter in the query and in the body is given twice.
    let (status, _, body) = answer(
        client
            .post(format!("{base}/action/add/8001?location=forum"))
            .json(&json!({"t": t, "user_id": "kick-1", "actionId": "post_comment", "location": "blog"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &body["errorId"]), (400, &json!("8")), "{body}");
    assert_eq!(body["error"], "location: given more than once");
    // ... but the token is checked first.
    let (status, _, body) = answer(
        client
            .get(format!(
                "{base}/action/add/8001?t=guess&location=a&location=b"
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &body["errorId"]), (401, &json!("1")), "{body}");
    // A body over http.max_body_bytes: 413, in KickApps' shape.
    let (status, _, body) = answer(
        client
            .post(format!("{base}/action/add/8001"))
            .body(format!("t={t}&location={}", "x".repeat(2000)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &body["errorId"]), (413, &json!("900")), "{body}");
    assert_eq!(sink.commands().len(), 2, "nothing more submitted");

    // Disable and enable: UserStatus commands, only by POST.
    for (path, disabled) in [("disable", true), ("enable", false)] {
        let (status, _, body) = answer(
            client
                .post(format!("{base}/{path}/8001"))
                .json(&json!({"t": t, "user_id": "kick-9"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, body),
            (
                200,
                json!({"status": 1, "userId": "kick-9", "disabled": disabled})
            )
        );
        assert_eq!(
            sink.commands().last(),
            Some(&LogCommand::UserStatus(UserStatusChange {
                tenant: "default".into(),
                user_id: "kick-9".into(),
                disabled,
            }))
        );
    }
    let status = client
        .get(format!("{base}/disable/8001?t={t}&user_id=kick-9"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 405);
    let (status, _, body) = answer(
        client
            .post(format!("{base}/disable/8001"))
            .form(&[("t", "guess"), ("user_id", "kick-9")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &body["errorId"]), (401, &json!("1")));
    assert_eq!(sink.commands().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_or_store_that_is_down_is_903_with_retry_after() {
    let add = "/action/add/8001?t=demo-admin-token&user_id=kick-1&actionId=post_comment&location=forum&userActionId=c-1";
    let client = reqwest::Client::new();
    // The log refuses: nothing was added, retry with the same userActionId.
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(RecordingSink::default());
    sink.fail(true);
    let base = sidecar(
        Arc::new(EmbeddedStore::open(dir.path()).unwrap()),
        Arc::clone(&sink),
    )
    .await;
    let (status, retry, body) =
        answer(client.get(format!("{base}{add}")).send().await.unwrap()).await;
    assert_eq!((status, retry.as_deref()), (503, Some("1")), "{body}");
    assert_eq!(body["errorId"], "903");
    assert_eq!(body["status"], -1);
    // The store cannot say whether the user is disabled: refused, not guessed.
    let sink = Arc::new(RecordingSink::default());
    let base = sidecar(Arc::new(DownStore), Arc::clone(&sink)).await;
    let (status, retry, body) =
        answer(client.get(format!("{base}{add}")).send().await.unwrap()).await;
    assert_eq!((status, retry.as_deref()), (503, Some("1")), "{body}");
    assert_eq!(body["errorId"], "903");
    assert!(sink.commands().is_empty());
}
