//! The integration tests, as one test binary: a change to `src/` relinks this one executable
//! instead of one per test file. Each former `tests/<name>.rs` is the module `<name>` here, so
//! nextest names a test `it <name>::<test>` and `-E 'test(/^<name>::/)'` selects a file's
//! tests. The shared harness is [`support`]. nextest runs every test in its own process, so
//! process-wide state (a global tracing subscriber, environment variables) stays per test.

mod support;

mod admin_api;
mod architecture;
mod config;
mod demo;
mod earning;
mod evaluator;
mod evaluator_props;
mod http;
mod http_transport;
mod interning;
mod kafka_amounts;
mod kafka_catalog;
mod kafka_faults;
mod kafka_group;
mod kafka_mock;
mod kafka_publish;
mod kafka_readiness;
mod kafka_replay;
mod kafka_tls;
mod kafka_topics;
mod kafka_worker;
mod kickapps_api;
mod kickapps_users;
mod kwegg_api;
mod ledger;
mod ledger_model;
mod mapping_props;
mod otlp_export;
mod pipeline;
mod replay;
mod rokwire_api;
mod schemas;
mod store_conformance;
mod trace_propagation;
