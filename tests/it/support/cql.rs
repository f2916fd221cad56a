//! The CQL server the store tests and the shared-store Kafka tests use: the dev server
//! (kassandra) that `scripts/test` starts, or real ScyllaDB under `scripts/test-scylla`.

/// The CQL server's `host:port` from `QUESTLINE_TEST_CQL`. Unset, the test is skipped with a
/// notice, except where a missing server must fail the run: under CI (so it can never pass
/// vacuously) and with `QUESTLINE_TEST_REQUIRE_CQL=1` (which `scripts/test` sets).
pub fn cql_node() -> Option<String> {
    match std::env::var("QUESTLINE_TEST_CQL") {
        Ok(node) => Some(node),
        _ if std::env::var_os("CI").is_some()
            || std::env::var("QUESTLINE_TEST_REQUIRE_CQL").as_deref() == Ok("1") =>
        {
            panic!("QUESTLINE_TEST_CQL unset under CI or QUESTLINE_TEST_REQUIRE_CQL=1: run scripts/test")
        }
        _ => {
            eprintln!(
                "skipped: no CQL server in QUESTLINE_TEST_CQL (scripts/test starts the dev CQL \
                 server; scripts/test-scylla runs against real ScyllaDB)"
            );
            None
        }
    }
}

/// A keyspace name no other test or run uses: `prefix`, the process, the time and a counter
/// (CQL names: letters, digits and `_`, at most 48).
pub fn fresh_keyspace(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{nanos}_{n}", std::process::id())
}
