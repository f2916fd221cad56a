//! The sidecar's transport over real TCP: connection limits, timeouts, half-closed clients
//! and the error envelope on answers the HTTP stack makes itself. Raw sockets where the
//! client must misbehave, reqwest for the well-behaved request that must still get through.
//! No timing is asserted beyond generous deadlines.

use crate::support::http::*;
use questline::settings::HttpSettings;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far more than any answer here takes on a loaded CI machine.
const DEADLINE: Duration = Duration::from_secs(30);

fn addr(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_string()
}

/// Reads one response (status, head, body) from a connection that may stay open: the body
/// is `Content-Length` bytes.
async fn read_response(stream: &mut TcpStream) -> (u16, String, Value) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
            .await
            .expect("an answer within the deadline")
            .expect("readable");
        assert!(
            n > 0,
            "closed before an answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
            .await
            .expect("the body within the deadline")
            .expect("readable");
        assert!(n > 0, "closed in the middle of the body");
        body.extend_from_slice(&chunk[..n]);
    }
    (
        status,
        head,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// Whether the server closes `stream` within the deadline (reads end with EOF or a reset).
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn idle_and_slow_connections_do_not_lock_out_a_normal_request() {
    // Timeouts far beyond the test: only making room can let the normal request in.
    let settings = HttpSettings {
        max_connections: 64,
        header_timeout_seconds: 600,
        keep_alive_seconds: 600,
        ..HttpSettings::default()
    };
    let server = Server::start_with(settings, Default::default()).await;
    let addr = addr(&server);
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        match i % 3 {
            // Connects and says nothing.
            0 => {}
            // A slow loris: half a request head, never finished.
            1 => stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap(),
            // A kept-alive connection, answered once, then idle. Not waited for: the server
            // may be full, and then this client waits in the queue like the others.
            _ => stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap(),
        }
        idle.push(stream);
    }
    let client = reqwest::Client::new();
    let response = tokio::time::timeout(
        DEADLINE,
        client
            .get(server.url("/api/v1/users/151631/balances"))
            .send(),
    )
    .await
    .expect("the normal request is answered while 300 idle connections are open")
    .unwrap();
    let (status, body) = status_json(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userId"], "151631");
    // The oldest idle connections made room: at most 64 are open at once, so at least
    // 300 - 63 of the idle ones were closed by the server.
    let checks = idle
        .iter_mut()
        .map(|stream| closed_by_server(stream, Duration::from_secs(3)));
    let closed = futures::future::join_all(checks)
        .await
        .into_iter()
        .filter(|c| *c)
        .count();
    assert!(
        closed >= 300 - 63,
        "only {closed} of 300 idle connections closed"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_half_closes_after_its_request_gets_the_answer() {
    let server = Server::start().await;
    let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
    stream
        .write_all(b"GET /api/v1/users/151631/balances HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let (status, _, body) = read_response(&mut stream).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userId"], "151631");
    // With a body too: the action is submitted and acknowledged.
    let action = r#"{"userId": "u200", "triggerId": 1, "value": 5}"#;
    let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
    let request = format!(
        "POST {ADD_ACTION} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{action}",
        action.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let (status, _, body) = read_response(&mut stream).await;
    assert_eq!(
        (status, body["statusCode"].clone()),
        (200, json!(1)),
        "{body}"
    );
    assert_eq!(server.sink.commands().len(), 1);
    server.stop().await;
}

/// Sends `request` on a new connection and reads the answer.
async fn answer(server: &Server, request: &[u8]) -> (u16, String, Value) {
    let mut stream = TcpStream::connect(addr(server)).await.unwrap();
    // The server may answer before reading all of an oversized request: what counts is the answer.
    let _ = stream.write_all(request).await;
    read_response(&mut stream).await
}

#[tokio::test]
async fn every_client_error_of_the_http_stack_has_the_envelope() {
    let settings = HttpSettings {
        body_timeout_seconds: 1,
        ..HttpSettings::default()
    };
    let server = Server::start_with(settings, Default::default()).await;
    let get = |target: &str, headers: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").into_bytes()
    };
    // 400: a body that is not JSON.
    let (status, _, body) = answer(
        &server,
        format!("POST {ADD_ACTION} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n{{x}}")
            .as_bytes(),
    )
    .await;
    assert_error(status, &body, 400, Some("body"));
    // 413: a declared body over the limit.
    let (status, _, body) = answer(
        &server,
        format!("POST {ADD_ACTION} HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_error(status, &body, 413, None);
    assert_eq!(body["statusName"], "PayloadTooLarge");
    // 414: a request target over 8 KiB (hyper alone would answer an empty 414 past 64 KiB).
    let long = format!("/healthz?pad={}", "a".repeat(9 * 1024));
    let (status, _, body) = answer(&server, &get(&long, "")).await;
    assert_error(status, &body, 414, None);
    assert_eq!(body["statusName"], "UriTooLong");
    assert!(body["message"].as_str().unwrap().contains("8192"), "{body}");
    // 431: one header too large (named), then too many headers.
    let big = format!("X-Big: {}\r\n", "b".repeat(20 * 1024));
    let (status, _, body) = answer(&server, &get("/healthz", &big)).await;
    assert_error(status, &body, 431, Some("x-big"));
    assert_eq!(body["statusName"], "HeadersTooLarge");
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let (status, _, body) = answer(&server, &get("/healthz", &many)).await;
    assert_error(status, &body, 431, None);
    // 150 and Host.
    assert!(body["message"].as_str().unwrap().contains("151"), "{body}");
    // 404 and 405.
    let (status, _, body) = answer(&server, &get("/no/such/thing", "")).await;
    assert_error(status, &body, 404, None);
    let (status, head, body) = answer(
        &server,
        b"PUT /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_error(status, &body, 405, None);
    assert!(head.to_ascii_lowercase().contains("allow: get"), "{head}");
    // 408: a body that stops arriving; the connection is closed after the answer.
    let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
    stream
        .write_all(
            format!(
                "POST {ADD_ACTION} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{\"userId\""
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (status, head, body) = read_response(&mut stream).await;
    assert_error(status, &body, 408, Some("body"));
    assert_eq!(body["statusName"], "RequestTimeout");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert!(closed_by_server(&mut stream, DEADLINE).await);
    assert!(server.sink.commands().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed_after_their_timeouts() {
    let settings = HttpSettings {
        header_timeout_seconds: 1,
        keep_alive_seconds: 1,
        ..HttpSettings::default()
    };
    let server = Server::start_with(settings, Default::default()).await;
    // Never sends a head: closed by the header timeout.
    let mut silent = TcpStream::connect(addr(&server)).await.unwrap();
    assert!(closed_by_server(&mut silent, DEADLINE).await);
    // Answered once, then idle: closed by the keep-alive timeout.
    let mut kept = TcpStream::connect(addr(&server)).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, _, _) = read_response(&mut kept).await;
    assert_eq!(status, 200);
    assert!(closed_by_server(&mut kept, DEADLINE).await);
    // Meanwhile the server answers as usual.
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_zero_limit_refuses_to_start() {
    let settings = HttpSettings {
        max_connections: 0,
        ..HttpSettings::default()
    };
    let state = questline::http::AppState::new(
        example_catalog(),
        std::sync::Arc::new(DownStore),
        std::sync::Arc::new(RecordingSink::default()),
        settings,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = questline::http::serve(listener, state, async {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("http.max_connections"), "{err}");
}

#[tokio::test]
async fn any_router_served_gets_the_envelope_on_its_bare_errors() {
    // The worker's own endpoints (`questline run` without `--serve`) are a plain router with
    // axum's default 404: served by the same server, it is answered in the envelope.
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let limits = questline::http::server::Limits::new(&HttpSettings::default()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(questline::http::server::serve(
        listener,
        app,
        limits,
        async move {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::new();
    let (status, body) =
        status_json(client.get(format!("{base}/nope")).send().await.unwrap()).await;
    assert_error(status, &body, 404, None);
    assert_eq!(body["statusName"], "NotFound");
    let response = client.post(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET,HEAD");
    let (status, body) = status_json(response).await;
    assert_error(status, &body, 405, None);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
