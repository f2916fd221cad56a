//! The one harness of the integration tests. Helpers every kind of test needs are here (the
//! checkout's files, the `questline` binary, free ports, waiting, the CQL server); the
//! submodules each serve one kind of test:
//!
//! - [`engine`]: the pure engine driven record by record;
//! - [`http`]: the real sidecar router over a fixture-filled store and a recording sink;
//! - [`inprocess`]: the sidecar and the worker loop in one process, on the in-process log;
//! - [`demo`]: `questline demo` as a child process;
//! - [`kafka`]: the real worker binary against the test broker (tansu), with an independent
//!   client.

pub mod cql;
pub mod demo;
pub mod engine;
pub mod http;
pub mod inprocess;
pub mod kafka;
pub mod props;
pub mod wait;

use questline::core::catalog::Catalog;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use wait::{free_port, wait_until};

/// The checkout: the tests read its examples, mappings, schemas and docs.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `questline` binary the tests run: cargo's build of this checkout, unless
/// `QL_TEST_QUESTLINE_BIN` names another (a copy of it, when several checkouts share one target
/// directory and another checkout's build would replace the binary mid-run).
pub fn questline_bin() -> PathBuf {
    std::env::var_os("QL_TEST_QUESTLINE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_questline")))
}

/// The example catalog's directory (`examples/catalog`).
pub fn example_catalog_dir() -> PathBuf {
    root().join("examples/catalog")
}

/// The example catalog, loaded.
pub fn example_catalog() -> Arc<Catalog> {
    Arc::new(
        questline::files::load_catalog(&example_catalog_dir())
            .expect("the example catalog is valid"),
    )
}
