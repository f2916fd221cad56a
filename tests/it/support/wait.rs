//! Waiting for something outside the test (a process, a broker, a port) with a deadline.

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A loopback port free when asked.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 100 ms until it holds; panics with `context()` after `timeout`.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `check` every 5 ms on the tokio clock until it holds; panics naming `what()` after
/// `timeout`. Under paused time (`start_paused`) the polls cost no real time.
pub async fn until(timeout: Duration, what: impl Fn() -> String, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {}",
            what()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `committed()` counts exactly `total` records; panics if it ever counts more (a
/// record committed twice, or records the test did not expect) or after `timeout`.
pub async fn committed(total: i64, timeout: Duration, mut committed: impl FnMut() -> i64) {
    let last = std::cell::Cell::new(0);
    until(
        timeout,
        || format!("{total} committed records (last count {})", last.get()),
        || {
            let now = committed();
            last.set(now);
            assert!(now <= total, "committed {now} records, more than {total}");
            now == total
        },
    )
    .await
}
