//! The pure core: model, catalog, mapping, evaluators, events and ids.
//!
//! Nothing in here does IO, reads the clock, spawns tasks or draws random numbers: time and
//! identity arrive as values. That is what lets the worker, `replay`, `demo` and the tests
//! run the very same code and get the very same output. `clippy.toml` lists the clock, IO and
//! environment calls that would break this, and the lint is denied here (not elsewhere).
#![deny(clippy::disallowed_methods)]

pub mod catalog;
pub mod challenge_states;
pub mod decimal;
pub mod decode;
pub mod engine;
pub mod evaluator;
pub mod event_json;
pub mod events;
pub mod ids;
pub mod interned;
pub mod inventory;
pub mod limits;
pub mod mapping;
pub mod model;
pub mod prefetch;
pub mod records;
pub mod reject;
pub mod row_cached;
pub mod rules;
pub mod state;
pub mod step;
pub mod timestamp;
pub mod view;
