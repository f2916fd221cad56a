//! The catalog log on Kafka: a topic of one partition, compacted, whose every record has a
//! key of its own (`tenant/version/uuid`), so compaction keeps every version and nothing ever
//! expires. Read by assignment, not by a consumer group: every process reads all of it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{
    apply_properties, base_config, failed, producer_only, KafkaProducer, LimitedErrors, Outgoing,
};
use crate::pipeline::catalog_feed::CatalogLog;
use crate::pipeline::log::{LogError, RefusedTopics};
use crate::settings::KafkaSettings;

const PARTITION: i32 = 0;
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct KafkaCatalogLog {
    consumer: Arc<BaseConsumer<LimitedErrors>>,
    producer: Arc<KafkaProducer>,
    topic: String,
}

impl KafkaCatalogLog {
    /// `producer`: the process's, for publishing versions.
    pub fn connect(
        settings: &KafkaSettings,
        topic: &str,
        producer: Arc<KafkaProducer>,
    ) -> Result<Self, LogError> {
        let mut config = base_config(settings);
        // A group id only because librdkafka wants one; nothing is ever committed.
        config
            .set("group.id", format!("{}.catalog-reader", settings.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        apply_properties(&mut config, settings, |k| {
            !producer_only(k) && !k.starts_with("group.") && !k.starts_with("partition.assignment")
        });
        let consumer: BaseConsumer<LimitedErrors> = config
            .create_with_context(LimitedErrors::default())
            .map_err(|source| LogError::Client {
                client: "consumer",
                source,
            })?;
        Ok(KafkaCatalogLog {
            consumer: Arc::new(consumer),
            producer,
            topic: topic.to_string(),
        })
    }
}

#[async_trait]
impl CatalogLog for KafkaCatalogLog {
    async fn append(&self, key: &str, payload: Vec<u8>) -> Result<(), LogError> {
        let record = Outgoing {
            topic: &self.topic,
            key,
            payload: &payload,
            headers: &[],
            partition: Some(PARTITION),
        };
        self.producer.send(record, TIMEOUT, "catalog publish").await
    }

    async fn read_from(&self, from: i64) -> Result<Vec<(i64, Vec<u8>)>, LogError> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || read_blocking(&consumer, &topic, from))
            .await
            .map_err(|_| LogError::Kafka {
                op: "catalog read",
                source: rdkafka::error::KafkaError::Canceled,
            })?
    }
}

/// Reads from `from` to the high watermark as it was when the read started.
///
/// The partition is assigned for the read only, and unassigned before it returns: an assigned
/// consumer keeps fetching in librdkafka's background threads between reads, and such a fetch
/// is what crashed the worker after a broker restart. A restarted broker that lost the topic
/// (tansu in memory) answers it with UNKNOWN_TOPIC_OR_PARTITION carrying a KIP-951
/// `CurrentLeader` tag but no topic id; librdkafka 2.12.1 turns that into a metadata update
/// for a topic with no name and dereferences the name (SIGSEGV in
/// `rd_kafka_metadata_cache_find`, main thread), killing the process without a log line.
/// Between reads the catalog consumer now only asks for watermarks, which report a lost topic
/// as an error (read as "no versions yet").
fn read_blocking(
    consumer: &BaseConsumer<LimitedErrors>,
    topic: &str,
    from: i64,
) -> Result<Vec<(i64, Vec<u8>)>, LogError> {
    let (low, high) = match consumer.fetch_watermarks(topic, PARTITION, TIMEOUT) {
        Ok(marks) => marks,
        // No catalog topic yet: no version was ever published.
        Err(e) if missing_topic(&e) => return Ok(Vec::new()),
        Err(e) => return Err(failed("catalog watermarks")(e)),
    };
    let start = from.max(low);
    if start >= high {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, PARTITION, Offset::Offset(start))
        .map_err(failed("catalog assign"))?;
    consumer.assign(&tpl).map_err(failed("catalog assign"))?;
    let read = read_assigned(consumer, start, high);
    let unassigned = consumer.unassign().map_err(failed("catalog unassign"));
    let records = read?;
    unassigned?;
    Ok(records)
}

/// Polls the assigned catalog partition from `start` until `high`, within [`TIMEOUT`].
fn read_assigned(
    consumer: &BaseConsumer<LimitedErrors>,
    start: i64,
    high: i64,
) -> Result<Vec<(i64, Vec<u8>)>, LogError> {
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut next = start;
    while next < high {
        if std::time::Instant::now() > deadline {
            return Err(LogError::Kafka {
                op: "catalog read",
                source: rdkafka::error::KafkaError::MessageConsumption(
                    RDKafkaErrorCode::OperationTimedOut,
                ),
            });
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(e)) => return Err(failed("catalog read")(e)),
            Some(Ok(message)) => {
                next = message.offset() + 1;
                if let Some(payload) = message.payload() {
                    records.push((message.offset(), payload.to_vec()));
                }
            }
        }
    }
    Ok(records)
}

fn missing_topic(e: &rdkafka::error::KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownPartition
        )
    )
}

/// Creates the catalog topic if it is missing: one partition (every reader applies versions
/// in one order), compacted (unique keys: nothing is ever deleted).
pub async fn ensure_catalog_topic(settings: &KafkaSettings, topic: &str) -> Result<(), LogError> {
    let admin: AdminClient<DefaultClientContext> = super::topics::admin_config(settings)
        .create()
        .map_err(|source| LogError::Client {
        client: "admin client",
        source,
    })?;
    let new = NewTopic::new(
        topic,
        1,
        TopicReplication::Fixed(settings.replication_factor),
    )
    .set("cleanup.policy", "compact");
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let results = admin
        .create_topics([&new], &options)
        .await
        .map_err(|source| LogError::CreateTopics {
            topics: vec![topic.to_string()],
            source,
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(LogError::TopicsRefused {
                    refused: vec![RefusedTopics {
                        code,
                        topics: vec![topic],
                    }],
                })
            }
        }
    }
    Ok(())
}
