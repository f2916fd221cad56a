//! The producers' client: librdkafka's producer with a polling thread of its own
//! ([`super::polled`]), whose delivery reports are counted per batch ([`super::batches`]), so
//! publishing a batch wakes its task once, when the last record is acknowledged.
//!
//! librdkafka's errors are logged as [`LimitedErrors`] does for the other clients.

use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext};
use tokio::time::Instant;

use super::batches::{Batches, Outcome, Ticket};
use super::errors::LimitedErrors;
use super::failed;
use super::polled::Polled;
use crate::pipeline::log::{too_large, HeaderName, HeaderValue, LogError, OutRecord, Published};

/// How long a publisher waits before handing a record again to a full producer queue
/// (`queue.buffering.max.kbytes`): the worker waits, in order, and never drops.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);

/// The producer's context: librdkafka's errors, and the batches in flight.
#[derive(Default)]
pub struct Deliveries {
    errors: LimitedErrors,
    batches: Batches,
}

impl ClientContext for Deliveries {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.report(&error, reason);
    }
}

impl ProducerContext for Deliveries {
    /// A [`Ticket`]'s opaque.
    type DeliveryOpaque = usize;

    /// Runs on the producer's polling thread, once per record.
    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        self.batches.report(
            Ticket::from_opaque(opaque),
            result.as_ref().err().map(|(e, _)| e),
        );
    }
}

/// A record to send, borrowed from its owner: librdkafka copies what it keeps.
#[derive(Clone, Copy)]
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub key: &'a str,
    pub payload: &'a [u8],
    pub headers: &'a [(HeaderName, HeaderValue)],
    /// `None`: librdkafka's partitioner (`murmur2_random` of the key) chooses.
    pub partition: Option<i32>,
}

/// What can be sent as an [`Outgoing`] record. (A trait rather than an iterator of
/// `Outgoing`: a mapping closure held across the publish's awaits does not satisfy
/// `async_trait`'s `Send` bound for every lifetime.)
trait AsOutgoing: Sync {
    fn outgoing(&self) -> Outgoing<'_>;
}

impl AsOutgoing for OutRecord {
    fn outgoing(&self) -> Outgoing<'_> {
        Outgoing {
            topic: &self.topic,
            key: &self.key,
            payload: &self.payload,
            headers: &self.headers,
            partition: None,
        }
    }
}

impl AsOutgoing for Outgoing<'_> {
    fn outgoing(&self) -> Outgoing<'_> {
        *self
    }
}

/// Why a batch was not published: librdkafka refused a record, or a delivery report never
/// came because the producer went away.
enum Failure {
    Send(KafkaError),
    Canceled,
}

/// An idempotent producer (see `kafka::producer` for its settings).
pub struct KafkaProducer {
    inner: Polled<Deliveries>,
}

impl KafkaProducer {
    pub(super) fn create(config: &ClientConfig) -> KafkaResult<Self> {
        Ok(KafkaProducer {
            inner: Polled::create(config, Deliveries::default(), "producer-poll")?,
        })
    }

    /// Publishes `records` and waits until all are acknowledged (or refused).
    ///
    /// A full producer queue makes it wait and try the same record again; a record refused
    /// for its size (by the client before sending, or by the broker) is left out and named in
    /// [`Published::too_large`]; any other refusal or failed delivery fails the publish (the
    /// lowest index's error when several records failed).
    pub async fn publish(&self, records: &[OutRecord]) -> Result<Published, LogError> {
        let outcome = match self.deliver(records, None).await {
            Ok(outcome) => outcome,
            Err(Failure::Send(e)) => return Err(failed("publish")(e)),
            Err(Failure::Canceled) => return Err(failed("delivery")(KafkaError::Canceled)),
        };
        if let Some((_, e)) = outcome.failed {
            return Err(failed("delivery")(e));
        }
        let mut too_large: Vec<usize> = outcome.too_large.into_iter().map(|(i, _)| i).collect();
        too_large.sort_unstable();
        Ok(Published { too_large })
    }

    /// Sends one record and waits for its acknowledgement; waits at most `queue_timeout` for
    /// room in a full queue. Any refusal, its size included, is an error of operation `op`.
    pub async fn send(
        &self,
        record: Outgoing<'_>,
        queue_timeout: Duration,
        op: &'static str,
    ) -> Result<(), LogError> {
        let deadline = Instant::now() + queue_timeout;
        let outcome = match self.deliver(&[record], Some(deadline)).await {
            Ok(outcome) => outcome,
            Err(Failure::Send(e)) => return Err(failed(op)(e)),
            Err(Failure::Canceled) => return Err(failed(op)(KafkaError::Canceled)),
        };
        match (outcome.failed, outcome.too_large.first()) {
            (Some((_, e)), _) => Err(failed(op)(e)),
            (None, Some(&(_, code))) => Err(failed(op)(KafkaError::MessageProduction(code))),
            (None, None) => Ok(()),
        }
    }

    /// Waits until every record handed over is acknowledged or failed (shutdown).
    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.inner.flush(timeout)
    }

    /// Hands `records` to librdkafka as one batch and waits for the batch's outcome, with the
    /// records refused for their size before sending added to it. A full queue is waited on
    /// until `queue_deadline` (`None`: for as long as it takes).
    async fn deliver(
        &self,
        records: &[impl AsOutgoing],
        queue_deadline: Option<Instant>,
    ) -> Result<Outcome, Failure> {
        let (mut sending, done) = self.inner.context().batches.open();
        let mut refused = Vec::new();
        for (index, r) in records.iter().enumerate() {
            let r = r.outgoing();
            let ticket =
                sending
                    .ticket(index)
                    .ok_or(Failure::Send(KafkaError::MessageProduction(
                        RDKafkaErrorCode::InvalidArgument,
                    )))?;
            let mut record = BaseRecord::with_opaque_to(r.topic, ticket.opaque())
                .key(r.key)
                .payload(r.payload);
            if !r.headers.is_empty() {
                record = record.headers(owned_headers(r.headers));
            }
            if let Some(partition) = r.partition {
                record = record.partition(partition);
            }
            loop {
                match self.inner.send(record) {
                    Ok(()) => {
                        sending.sent += 1;
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if queue_deadline.is_none_or(|d| Instant::now() < d) =>
                    {
                        record = back;
                        tokio::time::sleep(QUEUE_FULL_WAIT).await;
                    }
                    // Larger than `message.max.bytes`: librdkafka refuses it before sending.
                    Err((KafkaError::MessageProduction(code), _)) if too_large(code) => {
                        refused.push((index, code));
                        break;
                    }
                    Err((e, _)) => return Err(Failure::Send(e)),
                }
            }
        }
        // Sealed here: the outcome comes once the reports of the records sent are all in.
        drop(sending);
        let mut outcome = done.await.map_err(|_| Failure::Canceled)?;
        outcome.too_large.extend(refused);
        Ok(outcome)
    }
}

/// A record's headers as librdkafka takes them. librdkafka copies each header (name and value
/// in one allocation) into a list it owns, whichever of its calls adds them (its own
/// `RD_KAFKA_VTYPE_HEADER` does the same), and takes the list with the record; names and values
/// are passed as borrowed slices, so this is the only copy.
fn owned_headers(headers: &[(HeaderName, HeaderValue)]) -> OwnedHeaders {
    let mut owned = OwnedHeaders::new_with_capacity(headers.len());
    for (k, v) in headers {
        owned = owned.insert(Header {
            key: k,
            value: Some(v.as_ref()),
        });
    }
    owned
}
