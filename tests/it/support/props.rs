//! proptest's configuration for the property tests.

use proptest::test_runner::{Config, FileFailurePersistence};

/// `cases` cases a property, with failures kept beside the test's source file
/// (`tests/it/<module>.proptest-regressions`) and replayed first on every run. proptest's
/// default looks for a `main.rs` above the source to put them in a parallel
/// `proptest-regressions/` tree, which in this binary would be `tests/proptest-regressions/`,
/// away from the files already recorded.
pub fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

/// The number in the environment variable `var` (long runs: docs/testing.md), else `default`.
pub fn cases_from(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}
