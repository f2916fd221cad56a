//! The worker's publish (`KafkaProducer::publish`, what `KafkaLog::publish` runs) on
//! librdkafka's in-process mock cluster, whose Produce answers can be made to fail: records
//! refused for their size — by the client before sending or by the broker at delivery — are
//! named and left out, any other failed delivery fails the publish, and the producer goes on
//! publishing afterwards.

use questline::kafka::{producer, KafkaProducer};
use questline::pipeline::log::{LogError, OutRecord, Published};
use questline::settings::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;

const TOPIC: &str = "published";

/// A producer of the worker's settings, its client limit lowered to `max_bytes`.
fn rig(
    cluster: &MockCluster<'_, impl rdkafka::ClientContext>,
    max_bytes: &str,
) -> Arc<KafkaProducer> {
    // One partition: a Produce request carries every record of a publish.
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let settings = KafkaSettings {
        brokers: cluster.bootstrap_servers(),
        properties: [("message.max.bytes".to_string(), max_bytes.to_string())].into(),
        create_topics: false,
        ..KafkaSettings::default()
    };
    producer(&settings).unwrap()
}

fn record(key: &str, size: usize) -> OutRecord {
    OutRecord {
        topic: TOPIC.into(),
        key: key.into(),
        payload: vec![b'x'; size],
        headers: vec![("questline-event-id".into(), key.as_bytes().to_vec().into())],
    }
}

/// The records of the topic: key and header of each.
fn topic_records(cluster: &MockCluster<'_, impl rdkafka::ClientContext>) -> Vec<(String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        // librdkafka wants one to assign; nothing is committed.
        .set("group.id", "publish-reader")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let (_, high) = consumer
        .fetch_watermarks(TOPIC, 0, Duration::from_secs(5))
        .unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while (out.len() as i64) < high {
        assert!(
            std::time::Instant::now() < deadline,
            "read {out:?} of {high}"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            let headers = questline::kafka::header_map(rdkafka::Message::headers(&m));
            out.push((
                String::from_utf8_lossy(rdkafka::Message::key(&m).unwrap()).into_owned(),
                headers["questline-event-id"].clone(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_too_large_for_the_client_or_the_broker_are_named_in_order_and_the_rest_published()
{
    let cluster = MockCluster::new(1).unwrap();
    let producer = rig(&cluster, "10000");
    // Index 0 is refused by the client before sending; the broker refuses the request that
    // carries index 1 (alone: the first request of the producer).
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let published = producer
        .publish(&[record("big", 20_000), record("refused", 10)])
        .await
        .unwrap();
    assert_eq!(
        published,
        Published {
            too_large: vec![0, 1]
        }
    );
    // The producer goes on: the next batch is delivered whole.
    let batch: Vec<OutRecord> = (0..50).map(|i| record(&format!("k{i}"), 100)).collect();
    assert_eq!(
        producer.publish(&batch).await.unwrap(),
        Published::default()
    );
    let want: Vec<(String, String)> = (0..50)
        .map(|i| (format!("k{i}"), format!("k{i}")))
        .collect();
    assert_eq!(topic_records(&cluster), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_refused_for_another_reason_fails_the_publish() {
    let cluster = MockCluster::new(1).unwrap();
    let producer = rig(&cluster, "1000000");
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let batch: Vec<OutRecord> = (0..3).map(|i| record(&format!("k{i}"), 100)).collect();
    match producer.publish(&batch).await {
        Err(LogError::Kafka { op, source }) => {
            assert_eq!(op, "delivery");
            assert_eq!(
                source,
                KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed)
            );
        }
        other => panic!("expected a failed delivery, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_batch_publishes_nothing_at_once() {
    let cluster = MockCluster::new(1).unwrap();
    let producer = rig(&cluster, "1000000");
    let published = tokio::time::timeout(Duration::from_secs(1), producer.publish(&[]))
        .await
        .expect("an empty batch waits for nothing");
    assert_eq!(published.unwrap(), Published::default());
}
