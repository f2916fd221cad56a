//! The worker's topics at startup, before it subscribes: wait for the ones others create,
//! create the ones it owns (with `kafka.create_topics`), check that all it reads are
//! co-partitioned.
//!
//! Who creates what:
//! - **input topics** (named by the mappings) belong to their producers and are never created:
//!   the worker waits until they exist ([`crate::pipeline::topic_wait`]);
//! - **its own topics that it reads** (commands, inventory and amount requests and responses)
//!   are created with the input topics' partition count — a user's records of every topic
//!   meet by partition number — or `kafka.partitions` when there is no input topic;
//! - **outputs** (progress, rewards, dead letters) with `kafka.partitions`;
//! - the catalog log by [`super::catalog_source`] (one partition, compacted).
//!
//! With `kafka.create_topics = false` nothing is created and the worker waits for its own
//! topics too: subscribing to a missing one would leave it out of the co-partitioning check.

use crate::failure::Failure;
use crate::kafka::{self, TopicMetadata};
use crate::pipeline::input::Inputs;
use crate::pipeline::log::LogError;
use crate::pipeline::topic_wait::{self, Waited};
use crate::readiness::Readiness;
use crate::settings::Settings;

/// How the topics' preparation ended.
pub(super) enum Prepared {
    /// Ready to subscribe: the partition count of the topics it reads (`None`: none exists,
    /// with `kafka.create_topics = false` and no topic to wait for).
    Ready(Option<i32>),
    /// Shutdown came while it waited: nothing was read, nothing is to be done.
    Stopped,
}

/// Waits for, creates and checks the topics the worker reads and writes; see the module's
/// documentation. `readiness` says what it waits for; `stop` ends the wait.
pub(super) async fn prepare(
    settings: &Settings,
    inputs: &Inputs,
    readiness: &Readiness,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Prepared, Failure> {
    let kafka = &settings.kafka;
    let metadata = TopicMetadata::new(kafka).map_err(runtime)?;
    let input_topics = inputs.input_topics();
    let mut awaited = input_topics.clone();
    if !kafka.create_topics {
        awaited.extend(inputs.owned_topics());
    }
    let counts = match topic_wait::wait_for_topics(
        &metadata,
        &awaited,
        readiness,
        topic_wait::CHECK_EVERY,
        stop,
    )
    .await
    {
        Waited::Exist(counts) => counts,
        Waited::Stopped => return Ok(Prepared::Stopped),
    };
    if kafka.create_topics {
        let inputs_counts: Vec<(String, i32)> = counts
            .into_iter()
            .filter(|(t, _)| input_topics.contains(t))
            .collect();
        let partitions = kafka::copartitioned(&inputs_counts)
            .map_err(startup_error)?
            .unwrap_or(kafka.partitions);
        let t = &settings.topics;
        let owned = inputs.owned_topics();
        let outputs: Vec<(String, i32)> = [&t.progress, &t.rewards, &t.dead_letter]
            .into_iter()
            .filter(|o| !owned.contains(o))
            .map(|o| (o.clone(), kafka.partitions))
            .collect();
        let mut wanted: Vec<(String, i32)> = owned.into_iter().map(|o| (o, partitions)).collect();
        wanted.extend(outputs);
        kafka::ensure_topics(kafka, &wanted)
            .await
            .map_err(runtime)?;
    }
    // Every topic it reads, its own included: one created earlier with another count, or by
    // someone else, is refused here.
    kafka::check_copartitioned(kafka, &inputs.topics())
        .await
        .map(Prepared::Ready)
        .map_err(startup_error)
}

/// Topics that are not co-partitioned are a configuration to fix (exit 2); anything else
/// failed at run time (exit 1).
fn startup_error(e: LogError) -> Failure {
    match e {
        LogError::NotCopartitioned { .. } => Failure::Config(e.to_string()),
        e => runtime(e),
    }
}

fn runtime(e: LogError) -> Failure {
    Failure::Runtime(e.into())
}
