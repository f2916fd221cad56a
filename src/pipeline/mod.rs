//! The processing pipeline, generic over its ports: the log ([`log::Log`]: Kafka or the
//! in-process [`memory::MemoryLog`]) and the store ([`crate::store::StateStore`]).
//!
//! - [`catalog_feed`]: following the catalog log; publishing catalog versions.
//! - [`dead_letters`]: the record of an input's dead letter: its key and headers.
//! - [`exclusive`]: the embedded store's guard: one worker owns every partition of its group.
//! - [`input`]: what each consumed record is (mapped action, command, inventory message).
//! - [`outbox`]: the records of a partition's last batch, stored until acknowledged.
//! - [`oversize`]: the dead letter that replaces an output the broker refuses for its size.
//! - [`partition`]: one partition's state cache and the evaluation of a batch.
//! - [`user_cache`]: a partition's cached users, bounded by count and estimated memory.
//! - [`protocol`]: the commit protocol's decisions (retry, pause, stop, abandon), pure.
//! - [`topic_wait`]: waiting at startup for the topics the worker reads but does not create.
//! - [`worker`]: the loop that does the protocol's IO (docs/design.md, "Commit protocol").

pub mod catalog_feed;
pub mod commands;
pub mod dead_letters;
pub mod exclusive;
pub mod input;
pub mod log;
pub mod memory;
pub mod outbox;
pub mod oversize;
pub mod partition;
pub mod protocol;
pub mod topic_wait;
pub mod user_cache;
pub mod worker;
pub mod write_ahead;
