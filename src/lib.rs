//! questline: a gamification and rewards engine that runs as a Kafka stream-processing worker.
//!
//! # Layout
//!
//! - [`core`]: the pure engine — model, catalog, field mappings, the per-user evaluator and
//!   the inventory evaluator, events and deterministic ids. No IO, no clock.
//! - `main.rs`: parses the command line and hands over to the commands in [`cli`].
pub mod cli;
pub mod core;
pub mod files;
pub mod pipeline;
pub mod settings;
pub mod store;
pub mod telemetry;
