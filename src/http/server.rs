//! The sidecar's HTTP/1.1 server: hyper, set up for clients that misbehave.
//!
//! `axum::serve` exposes none of hyper's connection settings, so the sidecar runs its own
//! accept loop around the same router. What it adds, and why:
//!
//! - **At most `http.max_connections` connections** ([`super::connections`]): when full, a new
//!   connection takes the place of the longest-idle one, so idle or slow clients cannot use up
//!   the process's descriptors and lock everyone else out. When `accept` itself fails (no
//!   descriptor left because the limit is set above `ulimit -n`), the longest-idle connection
//!   is closed too.
//! - **Header timeout** (`http.header_timeout_seconds`, hyper's `header_read_timeout`): a
//!   connection must deliver a whole request head within it, counted from when it opened or
//!   from its previous response, or it is closed. A slow-loris sender cannot hold a connection.
//! - **Keep-alive timeout** (`http.keep_alive_seconds`): a connection that has been answered is
//!   closed when no new request arrives within it. hyper has no such setting: the connection's
//!   task closes it (gracefully: hyper closes an idle connection at once, and finishes a
//!   request in progress first).
//! - **Body timeout** (`http.body_timeout_seconds`): enforced where bodies are read
//!   ([`super::request::read_body`]), as a 408.
//! - **Half-closed clients get their answer** (hyper's `half_close`): a client that shuts down
//!   its sending side after the request (`shutdown(SHUT_WR)`, `curl` with some proxies, load
//!   testers) still receives the response; hyper would otherwise take the EOF as an aborted
//!   request and drop the answer.
//! - **Every error answer in the envelope**: the request head limits ([`super::head`]) are
//!   checked before routing, and any error response the HTTP stack built itself is given the
//!   envelope ([`super::error::ensure_envelope`]).
//!
//! Graceful shutdown: the listener is closed at once (new clients are refused, not queued),
//! idle connections are closed, requests in flight finish.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::connections::{Connection, Connections, RequestGuard, Slot};
use super::{error, head, observe};
use crate::settings::HttpSettings;

/// The connection limits of `[http]`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub keep_alive: Duration,
    pub max_connections: usize,
}

impl Limits {
    /// The limits of `settings`; a zero (which would refuse every request or connection) is
    /// an error naming the key.
    pub fn new(settings: &HttpSettings) -> Result<Limits, String> {
        let seconds = |key: &str, value: u64| {
            if value == 0 {
                Err(format!("http.{key} must be at least 1"))
            } else {
                Ok(Duration::from_secs(value))
            }
        };
        if settings.max_connections == 0 {
            return Err("http.max_connections must be at least 1".into());
        }
        Ok(Limits {
            header_timeout: seconds("header_timeout_seconds", settings.header_timeout_seconds)?,
            body_timeout: seconds("body_timeout_seconds", settings.body_timeout_seconds)?,
            keep_alive: seconds("keep_alive_seconds", settings.keep_alive_seconds)?,
            max_connections: settings.max_connections,
        })
    }
}

/// How long a connection asked to close (to make room, or at shutdown) may take to finish
/// its last answer before it is dropped, when no request is in flight on it any more.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long the accept loop pauses after `accept` failed for want of resources.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then closes the
/// listener and waits for the connections to finish their requests.
pub async fn serve<F>(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, max_connections = limits.max_connections, "sidecar listening");
    }
    let connections = Connections::new(limits.max_connections);
    let builder = Arc::new(http1_builder(&limits));
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                accept_failed(&connections, error).await;
                continue;
            }
        };
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = connections.admit() => slot,
        };
        tokio::spawn(serve_connection(
            stream,
            slot,
            Arc::clone(&builder),
            app.clone(),
            limits.keep_alive,
        ));
    }
    drop(listener);
    connections.close_all();
    connections.closed().await;
    Ok(())
}

/// hyper's HTTP/1.1 settings for the sidecar.
fn http1_builder(limits: &Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .half_close(true)
        .max_header_size(head::HYPER_MAX_HEAD_BYTES)
        .max_buf_size(2 * head::HYPER_MAX_HEAD_BYTES)
        .max_headers(head::HYPER_MAX_HEADERS);
    builder
}

/// `accept` failed. A client that gave up before being accepted is no problem; anything else
/// is usually a resource running out (no descriptor left: EMFILE, ENFILE), which closing the
/// longest-idle connection relieves.
async fn accept_failed(connections: &Connections, error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    ) {
        return;
    }
    let freed = connections.close_longest_idle();
    tracing::warn!(%error, closed_an_idle_connection = freed, "accept failed");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

/// One connection's task: hyper serving it, plus the keep-alive timeout and close requests.
async fn serve_connection(
    stream: TcpStream,
    slot: Slot,
    builder: Arc<http1::Builder>,
    app: Router,
    keep_alive: Duration,
) {
    let connection = Arc::clone(slot.connection());
    let handler = Handler {
        app,
        connection: Arc::clone(&connection),
    };
    let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), handler));
    let mut closing = false;
    let mut drop_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        // When to look at the keep-alive timeout next: when it runs out for an answered,
        // idle connection; else in a full period (a new connection has the header timeout).
        let idle_check = match connection.idle_for(now) {
            Some(idle) if connection.served() > 0 => now + keep_alive.saturating_sub(idle),
            _ => now + keep_alive,
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                break;
            }
            () = connection.close_requested(), if !closing => {
                if connection.served() == 0 {
                    // Nothing was asked on it yet, so nothing can be lost: even a half-sent
                    // request head goes now rather than at the header timeout.
                    break;
                }
                conn.as_mut().graceful_shutdown();
                closing = true;
                drop_at = Some(now + CLOSE_GRACE);
            }
            () = tokio::time::sleep_until(idle_check), if !closing => {
                let now = Instant::now();
                let expired = connection.idle_for(now).is_some_and(|idle| idle >= keep_alive);
                if expired && connection.served() > 0 {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    drop_at = Some(now + CLOSE_GRACE);
                }
            }
            () = tokio::time::sleep_until(drop_at.unwrap_or(now)), if drop_at.is_some() => {
                // Still open after the grace: a client not reading its last answer. Drop it,
                // unless a request is in flight (hyper closes after answering it).
                if connection.in_flight() == 0 {
                    break;
                }
                drop_at = None;
            }
        }
    }
    drop(slot);
}

/// The router as hyper's service: head limits first, the envelope on error answers last,
/// and each request marked in flight on its connection until its answer is handed over.
#[derive(Clone)]
struct Handler {
    app: Router,
    connection: Arc<Connection>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Handler {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let guard = self.connection.begin_request();
        let app = self.app.clone();
        Box::pin(async move {
            let response = respond(app, req.map(Body::new)).await;
            Ok(response.map(|body| TrackedBody {
                body,
                _guard: guard,
            }))
        })
    }
}

async fn respond(app: Router, req: Request) -> Response {
    let started = std::time::Instant::now();
    if let Err(e) = head::check(&req) {
        let response = e.into_response();
        observe::record(observe::UNMATCHED, &response, started);
        return response;
    }
    let response = app
        .oneshot(req)
        .await
        .unwrap_or_else(|never| match never {});
    error::ensure_envelope(response)
}

/// A response body that keeps its request marked in flight until hyper is done with it.
struct TrackedBody {
    body: Body,
    _guard: RequestGuard,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_from_the_settings_and_zero_is_refused() {
        let settings = HttpSettings::default();
        let limits = Limits::new(&settings).unwrap();
        assert_eq!(limits.header_timeout, Duration::from_secs(10));
        assert_eq!(limits.body_timeout, Duration::from_secs(10));
        assert_eq!(limits.keep_alive, Duration::from_secs(5));
        assert_eq!(limits.max_connections, 512);
        for key in [
            "header_timeout_seconds",
            "body_timeout_seconds",
            "keep_alive_seconds",
            "max_connections",
        ] {
            let mut bad = settings.clone();
            match key {
                "header_timeout_seconds" => bad.header_timeout_seconds = 0,
                "body_timeout_seconds" => bad.body_timeout_seconds = 0,
                "keep_alive_seconds" => bad.keep_alive_seconds = 0,
                _ => bad.max_connections = 0,
            }
            let err = Limits::new(&bad).unwrap_err();
            assert_eq!(err, format!("http.{key} must be at least 1"));
        }
    }
}
