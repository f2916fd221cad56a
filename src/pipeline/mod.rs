//! The processing pipeline, generic over its ports (the log and the store).

pub mod commands;
