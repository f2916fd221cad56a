//! The topics a worker needs, at startup: which exist and with how many partitions, creating
//! the missing ones it owns, and whether the ones it reads are co-partitioned.
//!
//! The metadata client never creates a topic by asking about it
//! (`allow.auto.create.topics=false`): on a broker with `auto.create.topics.enable` a question
//! about a missing input topic would otherwise create it with the broker's defaults, and the
//! worker would go on reading a topic its producers never made.

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{apply_properties, base_config, consumer_only, failed, probe, producer_only};
use crate::pipeline::log::{LogError, RefusedTopics};
use crate::pipeline::topic_wait::{Counts, TopicCheck};
use crate::settings::KafkaSettings;

/// How long the startup checks wait for one topic's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin side's configuration: connection and security settings, neither side's own.
pub(super) fn admin_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = base_config(settings);
    apply_properties(&mut config, settings, |k| {
        !consumer_only(k) && !producer_only(k)
    });
    config
}

/// Asks the brokers for metadata once, failing within 15 s with librdkafka's last report (an
/// untrusted certificate, a refused login) when they do not answer: the worker's first Kafka
/// request, so that a connection that can never work stops it at once with the reason.
pub async fn reach(settings: &KafkaSettings) -> Result<(), LogError> {
    probe::reach(admin_config(settings)).await
}

/// A client that asks the brokers which topics exist and how many partitions each has.
#[derive(Clone)]
pub struct TopicMetadata {
    consumer: Arc<BaseConsumer>,
}

impl TopicMetadata {
    pub fn new(settings: &KafkaSettings) -> Result<Self, LogError> {
        let mut config = base_config(settings);
        apply_properties(&mut config, settings, |k| {
            !producer_only(k) && !k.starts_with("group.")
        });
        config.set("allow.auto.create.topics", "false");
        let consumer: BaseConsumer = config.create().map_err(|source| LogError::Client {
            client: "consumer",
            source,
        })?;
        Ok(TopicMetadata {
            consumer: Arc::new(consumer),
        })
    }

    /// Each of `topics` with its partition count, `None` for one that does not exist (or has
    /// no partition yet); each topic's request waits at most `timeout`. `Err` when the
    /// brokers do not answer.
    pub async fn partition_counts(
        &self,
        topics: &[String],
        timeout: Duration,
    ) -> Result<Counts, LogError> {
        let consumer = Arc::clone(&self.consumer);
        let topics = topics.to_vec();
        tokio::task::spawn_blocking(move || {
            topics
                .into_iter()
                .map(|topic| {
                    let count = partition_count(&consumer, &topic, timeout)?;
                    Ok((topic, count))
                })
                .collect()
        })
        .await
        .map_err(|_| LogError::Kafka {
            op: "metadata",
            source: KafkaError::Canceled,
        })?
    }
}

/// While the worker waits for its input topics: the same question every second, each topic's
/// answer awaited at most as long as the broker watch waits for its own.
#[async_trait]
impl TopicCheck for TopicMetadata {
    async fn partitions(&self, topics: &[String]) -> Result<Counts, String> {
        self.partition_counts(topics, super::health::CHECK_TIMEOUT)
            .await
            .map_err(|e| e.to_string())
    }
}

/// One topic's partition count, `None` when the broker does not know it.
fn partition_count(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i32>, LogError> {
    let metadata = match consumer.fetch_metadata(Some(topic), timeout) {
        Ok(metadata) => metadata,
        Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
            return Ok(None)
        }
        Err(e) => return Err(failed("metadata")(e)),
    };
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| i32::try_from(t.partitions().len()).unwrap_or(i32::MAX)))
}

/// The common partition count of topics that exist (`None` for none), or the error naming
/// every topic's count when they differ: a user's actions, commands and internal records meet
/// by partition number, so a worker whose topics differ would split users' state.
pub fn copartitioned(counts: &[(String, i32)]) -> Result<Option<i32>, LogError> {
    let first = counts.first().map(|(_, n)| *n);
    if counts.iter().all(|(_, n)| Some(*n) == first) {
        return Ok(first);
    }
    Err(LogError::NotCopartitioned {
        counts: counts.to_vec(),
    })
}

/// Refuses to start when the topics the worker reads (that exist) differ in partition count;
/// else their partition count (`None` when none exists yet).
pub async fn check_copartitioned(
    settings: &KafkaSettings,
    topics: &[String],
) -> Result<Option<i32>, LogError> {
    let counts: Vec<(String, i32)> = TopicMetadata::new(settings)?
        .partition_counts(topics, METADATA_TIMEOUT)
        .await?
        .into_iter()
        .filter_map(|(t, n)| Some((t, n?)))
        .collect();
    copartitioned(&counts)
}

/// Creates the missing ones of `topics`, each with its partition count and the configured
/// replication; existing ones are left as they are. Fails with a clear message when the
/// broker refuses: every refused topic with the broker's reason, and the remedy. The admin
/// client reports no connection error of its own: [`reach`] the brokers first.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    topics: &[(String, i32)],
) -> Result<(), LogError> {
    let config = admin_config(settings);
    let admin: AdminClient<DefaultClientContext> =
        config.create().map_err(|source| LogError::Client {
            client: "admin client",
            source,
        })?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(t, partitions)| {
            NewTopic::new(
                t,
                *partitions,
                TopicReplication::Fixed(settings.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    let results = admin
        .create_topics(new.iter(), &options)
        .await
        .map_err(|source| LogError::CreateTopics {
            topics: topics.iter().map(|(t, _)| t.clone()).collect(),
            source,
        })?;
    // The refused topics, grouped by the broker's reason (in the order of its text).
    let mut refused: BTreeMap<String, RefusedTopics> = BTreeMap::new();
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => refused
                .entry(code.to_string())
                .or_insert_with(|| RefusedTopics {
                    code,
                    topics: Vec::new(),
                })
                .topics
                .push(topic),
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(LogError::TopicsRefused {
        refused: refused.into_values().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, i32)]) -> Vec<(String, i32)> {
        pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn topics_are_copartitioned_when_every_existing_one_has_the_same_count() {
        assert_eq!(copartitioned(&[]).unwrap(), None);
        assert_eq!(
            copartitioned(&counts(&[("a", 3), ("b", 3)])).unwrap(),
            Some(3)
        );
        let error = copartitioned(&counts(&[("a", 3), ("b", 2)])).unwrap_err();
        assert!(matches!(error, LogError::NotCopartitioned { .. }));
        assert!(
            error.to_string().contains("'a' has 3, 'b' has 2"),
            "{error}"
        );
    }
}
