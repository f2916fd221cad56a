//! questline: a gamification and rewards engine that runs as a Kafka stream-processing worker.
//!
//! # Layout
//!
//! - [`core`]: the pure engine — model, catalog, field mappings, the per-user evaluator and
//!   the inventory evaluator, events and deterministic ids. No IO, no clock.
//! - [`http`]: the sidecar — progress, AddAction, balances, history, claims, health — which
//!   reads the store and submits commands to the log, never writing state itself.
//! - [`amounts`]: the amount stage's caller — programmatic events' endpoints over HTTP, with
//!   timeouts, retries, a concurrency limit and circuit breakers.
//! - `main.rs`: parses the command line and hands over to the commands in [`cli`].
pub mod amounts;
pub mod app;
pub mod cli;
pub mod core;
pub mod demo;
pub mod error;
pub mod failure;
pub mod files;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod otlp;
pub mod pipeline;
pub mod readiness;
pub mod repeats;
pub mod settings;
pub mod store;
pub mod telemetry;
pub mod trace_context;
