//! The log port: what the pipeline needs from Kafka, so the same worker loop runs on the
//! real broker (src/kafka) and on the in-process log (`demo`, tests).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use smol_str::SmolStr;
use std::borrow::Cow;

use crate::core::interned::InternedName;
use crate::error::ErrorClass;

/// A consumed record.
#[derive(Debug, Clone, PartialEq)]
pub struct InRecord {
    /// Interned ([`InternedName`]): copied per record, never allocated or counted.
    pub topic: InternedName,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<RecordKey>,
    pub payload: Vec<u8>,
    /// The record's timestamp (create or log-append time); now when the broker has none.
    pub timestamp: DateTime<Utc>,
    /// The record's headers as they came (a header without a value has an empty one); a
    /// dead letter of the record carries them on.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A consumed record's key, inline up to [`RECORD_KEY_INLINE`] bytes: keys are user ids, and
/// the record step only reads one for a dead letter, yet a heap copy of every key was an
/// allocation per record, freed on another thread with the batch.
pub type RecordKey = smallvec::SmallVec<[u8; RECORD_KEY_INLINE]>;

/// Bytes of a record's key held inline: a UUID's text (36) spills, the numeric and short ids
/// of the seeds' examples do not.
pub const RECORD_KEY_INLINE: usize = 24;

/// `name` as one of `names`, interned and added when new: the names a caller already holds
/// are found by a scan (callers hold a handful of topics), without taking the interner's lock
/// or hashing the name per record.
pub fn shared_name(names: &mut Vec<InternedName>, name: &str) -> InternedName {
    if let Some(&known) = names.iter().find(|known| known.as_str() == name) {
        return known;
    }
    let made = InternedName::new(name);
    names.push(made);
    made
}

/// A record to produce. The key decides the partition (librdkafka's murmur2, the Java
/// client's default, so producers in any language agree on where a user lives).
/// Serializable because the partition outbox stores records as they will be produced.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OutRecord {
    /// Interned ([`InternedName`]): an event's record neither copies its topic to the heap
    /// nor counts references to it (atomic increments on a line another thread's drops
    /// decrement).
    pub topic: InternedName,
    /// An event's record takes the event's user id.
    pub key: SmolStr,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Header values are bytes: a dead letter carries its input's headers on as they came.
    /// (Encoded in the outbox exactly as the text values of the first format were.)
    #[serde(with = "byte_string_values")]
    pub headers: Headers,
}

/// Header values as byte strings. postcard writes a byte string as its length and then its
/// bytes at once; a `Vec<u8>` is a sequence, the same bytes written one element at a time,
/// each through the serializer: a third of the instructions that encode the outbox (an event
/// id and an event type per record; callgrind, the record step bench).
mod byte_string_values {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    use super::{HeaderName, Headers};

    pub fn serialize<S: Serializer>(headers: &Headers, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            headers
                .iter()
                .map(|(name, value)| (name, Bytes::new(value))),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Headers, D::Error> {
        let headers = Vec::<(HeaderName, ByteBuf)>::deserialize(deserializer)?;
        Ok(headers
            .into_iter()
            .map(|(name, value)| (name, value.into_vec().into()))
            .collect())
    }
}

/// A produced header's name: questline's own are static text, so no copy per record; those
/// a dead letter carries on from its input are owned.
pub type HeaderName = Cow<'static, str>;

/// A produced header's value, held inline up to [`HEADER_VALUE_INLINE`] bytes: an event's id
/// and type, as every event record carries them, cost no allocation (one per event on the
/// record step, freed on the thread that drops the published records). Longer values (a
/// dead letter's reason, a `traceparent`) are on the heap.
pub type HeaderValue = SmallVec<[u8; HEADER_VALUE_INLINE]>;

/// Bytes of a header value held inline: an event id (a UUID's 36 characters) fits.
pub const HEADER_VALUE_INLINE: usize = 40;

/// A produced record's headers. Held inline up to two, as an event's are, they saved the
/// list's allocation (1.6 of 16.3 allocations per record on the record step bench, which
/// ran 3-4 % faster), but made a record 168 bytes instead of 88, and end to end they
/// measured no gain in 8 alternated rounds (docs/benchmarks.md, fourteenth session).
pub type Headers = Vec<(HeaderName, HeaderValue)>;

/// A header with a text value, as questline's own headers are.
pub fn text_header(name: &'static str, value: impl AsRef<str>) -> (HeaderName, HeaderValue) {
    (
        Cow::Borrowed(name),
        HeaderValue::from_slice(value.as_ref().as_bytes()),
    )
}

impl OutRecord {
    /// The value of header `name` as text, if the record has it and it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The bytes of key, value and headers: what a broker's record size limit measures, less
    /// the few dozen bytes of framing around them.
    pub fn size(&self) -> usize {
        self.key.len()
            + self.payload.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// What a publish did besides acknowledging records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Published {
    /// Indexes (into the records given) of the records refused for their size — by the
    /// client's `message.max.bytes` or the broker's and topic's limits — and not published.
    /// Publishing them again as they are cannot succeed.
    pub too_large: Vec<usize>,
}

/// A change of partition ownership, seen between batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalance {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

/// What a Kafka call failed at, with librdkafka's error as the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// librdkafka refused to create a client: the configuration is invalid.
    #[error("cannot create the kafka {client}: {source}")]
    Client {
        /// `consumer`, `producer` or `admin client`.
        client: &'static str,
        #[source]
        source: KafkaError,
    },
    /// Subscribing to the input topics failed.
    #[error("cannot subscribe to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: KafkaError,
    },
    /// A call to the broker failed (`op`: poll, publish, delivery, commit …).
    #[error("kafka {op}: {source}")]
    Kafka {
        op: &'static str,
        #[source]
        source: KafkaError,
    },
    /// The brokers did not answer a metadata request; `last_error` is librdkafka's last
    /// report about them (a refused TLS handshake or login, a refused connection).
    #[error(
        "cannot reach the kafka brokers: {source}{}",
        last_error.as_ref().map(|e| format!(" (last broker error: {e})")).unwrap_or_default()
    )]
    Unreachable {
        #[source]
        source: KafkaError,
        last_error: Option<String>,
    },
    /// The request to create the topics failed as a whole (no answer, no broker).
    #[error("cannot create topics {}: {source}. {TOPICS_REMEDY}", quoted(topics))]
    CreateTopics {
        topics: Vec<String>,
        #[source]
        source: KafkaError,
    },
    /// The broker refused to create some topics; grouped by its reason.
    #[error("{}. {TOPICS_REMEDY}", refusals(refused))]
    TopicsRefused { refused: Vec<RefusedTopics> },
    /// The topics the worker reads differ in partition count: a user's records would reach
    /// different partition numbers, and their state would split.
    #[error(
        "the topics the worker reads are not co-partitioned: {}; every topic it reads must have \
         the same number of partitions (a user's actions, commands and internal records meet \
         by partition number). Repartition the odd ones, or read them through a topic of the \
         right size",
        .counts.iter().map(|(t, n)| format!("'{t}' has {n}")).collect::<Vec<_>>().join(", ")
    )]
    NotCopartitioned { counts: Vec<(String, i32)> },
}

/// Topics the broker refused to create, and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedTopics {
    pub code: RDKafkaErrorCode,
    pub topics: Vec<String>,
}

/// What an operator can do when topics cannot be created.
const TOPICS_REMEDY: &str = "Create the topics yourself or allow this client to create them, \
     or set kafka.create_topics = false to skip creating them.";

fn quoted(topics: &[String]) -> String {
    let quoted: Vec<String> = topics.iter().map(|t| format!("'{t}'")).collect();
    quoted.join(", ")
}

fn refusals(refused: &[RefusedTopics]) -> String {
    let reasons: Vec<String> = refused
        .iter()
        .map(|r| {
            let noun = if r.topics.len() == 1 {
                "topic"
            } else {
                "topics"
            };
            format!("cannot create {noun} {}: {}", quoted(&r.topics), r.code)
        })
        .collect();
    reasons.join("; ")
}

impl LogError {
    /// How the caller should handle this failure (see [`ErrorClass`]).
    pub fn class(&self) -> ErrorClass {
        match self {
            LogError::Client { .. }
            | LogError::Subscribe { .. }
            | LogError::NotCopartitioned { .. } => ErrorClass::Fatal,
            LogError::Kafka { source, .. }
            | LogError::CreateTopics { source, .. }
            | LogError::Unreachable { source, .. } => kafka_class(source),
            // Refused for a reason that can pass (a controller moving) is worth another start;
            // refused for permissions, policy or replication is not.
            LogError::TopicsRefused { refused } => refused
                .iter()
                .map(|r| code_class(r.code))
                .find(|c| *c == ErrorClass::Fatal)
                .unwrap_or(ErrorClass::Transient),
        }
    }
}

fn kafka_class(e: &KafkaError) -> ErrorClass {
    match e {
        KafkaError::ClientConfig(..)
        | KafkaError::ClientCreation(_)
        | KafkaError::Subscription(_)
        | KafkaError::AdminOpCreation(_)
        | KafkaError::Nul(_)
        | KafkaError::MessageConsumptionFatal(_)
        // The client was dropped: nothing is left to retry with.
        | KafkaError::Canceled => ErrorClass::Fatal,
        KafkaError::Transaction(e) if e.is_fatal() => ErrorClass::Fatal,
        KafkaError::AdminOp(code) => code_class(*code),
        other => other
            .rdkafka_error_code()
            .map_or(ErrorClass::Transient, code_class),
    }
}

/// librdkafka's and the broker's error codes. Unknown and connection-level codes are
/// transient: librdkafka itself retries those and reports them while it does.
fn code_class(code: RDKafkaErrorCode) -> ErrorClass {
    if too_large(code) {
        return ErrorClass::Permanent;
    }
    use RDKafkaErrorCode as C;
    match code {
        // This record (or batch) is refused as it is: malformed.
        C::InvalidMessageSize
        | C::InvalidMessage
        | C::InvalidRecord
        | C::InvalidTimestamp
        | C::BadMessage
        | C::KeySerialization
        | C::ValueSerialization => ErrorClass::Permanent,
        // Credentials, permissions, a fenced producer, a configuration the broker rejects.
        C::Fatal
        | C::Fenced
        | C::ProducerFenced
        | C::InvalidProducerEpoch
        | C::TransactionCoordinatorFenced
        | C::FencedInstanceId
        | C::Authentication
        | C::SaslAuthenticationFailed
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::UnacceptableCredential
        | C::SecurityDisabled
        | C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::DelegationTokenAuthorizationFailed
        | C::UnsupportedVersion
        | C::UnsupportedFeature
        | C::UnsupportedCompressionType
        | C::UnsupportedForMessageFormat
        | C::NotImplemented
        | C::UnknownProtocol
        | C::InvalidConfig
        | C::InvalidArgument
        | C::InvalidGroupId
        | C::InvalidTopic
        | C::InvalidRequiredAcks
        | C::InvalidSessionTimeout
        | C::InconsistentGroupProtocol
        | C::InvalidPartitions
        | C::InvalidReplicationFactor
        | C::InvalidReplicaAssignment
        | C::PolicyViolation => ErrorClass::Fatal,
        _ => ErrorClass::Transient,
    }
}

/// Whether librdkafka or the broker refuses a record for its size: larger than the client's
/// `message.max.bytes` (checked before sending) or the broker's or topic's limit
/// (`MESSAGE_TOO_LARGE`), or a batch larger than the topic's segment (`RECORD_LIST_TOO_LARGE`).
pub fn too_large(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge
    )
}

#[async_trait]
pub trait Log: Send + Sync + 'static {
    /// Up to `max` records from the assigned partitions, waiting at most `linger` for more
    /// once the first arrived (and at most `idle` for the first).
    async fn poll_batch(
        &self,
        max: usize,
        linger: std::time::Duration,
        idle: std::time::Duration,
    ) -> Result<Vec<InRecord>, LogError>;

    /// Produces records and returns once every one is acknowledged (acks=all), except those
    /// refused for their size ([`Published::too_large`]): any other failure is an error.
    async fn publish(&self, records: &[OutRecord]) -> Result<Published, LogError>;

    /// Commits `offset + 1` for each `(topic, partition, offset)` processed.
    async fn commit(&self, processed: &[(String, i32, i64)]) -> Result<(), LogError>;

    /// Ownership changes since the last call.
    fn take_rebalances(&self) -> Vec<Rebalance>;

    /// Stops (`true`) or restarts fetching from every assigned partition: a slow store pauses
    /// consumption instead of growing memory.
    fn set_paused(&self, paused: bool) -> Result<(), LogError>;

    /// Per assigned partition: high watermark − position, where the broker reports it.
    fn lag(&self) -> Vec<(String, i32, i64)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(source: KafkaError) -> LogError {
        LogError::Kafka {
            op: "publish",
            source,
        }
    }

    #[test]
    fn a_record_too_large_is_permanent_refused_credentials_fatal_the_rest_transient() {
        use RDKafkaErrorCode as C;
        let produce = |code| kafka(KafkaError::MessageProduction(code)).class();
        assert_eq!(produce(C::MessageSizeTooLarge), ErrorClass::Permanent);
        assert_eq!(produce(C::TopicAuthorizationFailed), ErrorClass::Fatal);
        assert_eq!(produce(C::Fatal), ErrorClass::Fatal);
        assert_eq!(produce(C::MessageTimedOut), ErrorClass::Transient);
        assert_eq!(produce(C::AllBrokersDown), ErrorClass::Transient);
        assert_eq!(
            kafka(KafkaError::ConsumerCommit(C::CoordinatorNotAvailable)).class(),
            ErrorClass::Transient
        );
        assert_eq!(kafka(KafkaError::Canceled).class(), ErrorClass::Fatal);
        let client = LogError::Client {
            client: "producer",
            source: KafkaError::ClientCreation("bad property".into()),
        };
        assert_eq!(client.class(), ErrorClass::Fatal);
        assert_eq!(
            client.to_string(),
            "cannot create the kafka producer: Client creation error: bad property"
        );
    }

    #[test]
    fn refused_topics_name_the_reason_and_the_remedy() {
        let refused = LogError::TopicsRefused {
            refused: vec![
                RefusedTopics {
                    code: RDKafkaErrorCode::ClusterAuthorizationFailed,
                    topics: vec!["a".into()],
                },
                RefusedTopics {
                    code: RDKafkaErrorCode::RequestTimedOut,
                    topics: vec!["b".into(), "c".into()],
                },
            ],
        };
        assert_eq!(refused.class(), ErrorClass::Fatal);
        let text = refused.to_string();
        assert!(
            text.starts_with(
                "cannot create topic 'a': ClusterAuthorizationFailed (Broker: Cluster \
                 authorization failed); cannot create topics 'b', 'c': "
            ),
            "{text}"
        );
        assert!(text.ends_with(TOPICS_REMEDY), "{text}");
        let timed_out = LogError::TopicsRefused {
            refused: vec![RefusedTopics {
                code: RDKafkaErrorCode::RequestTimedOut,
                topics: vec!["b".into()],
            }],
        };
        assert_eq!(timed_out.class(), ErrorClass::Transient);
    }
}
