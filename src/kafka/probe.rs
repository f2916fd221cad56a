//! Reaching the brokers once before the first admin request, so that a refused connection is
//! reported with librdkafka's reason.
//!
//! Why: rdkafka's admin client never serves its client's main queue, where librdkafka puts its
//! log lines and broker errors. A TLS handshake that fails (an untrusted certificate, a
//! hostname mismatch) or a refused SASL login was therefore silent at start: the topic
//! creation waited a minute and failed with a bare "OperationTimedOut". A producer has a
//! thread that serves that queue; this one asks for metadata, keeps the last broker error it
//! hears, and names it when the brokers cannot be reached.

use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{Producer, ProducerContext};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::polled::Polled;
use crate::pipeline::log::LogError;

/// How long the brokers have to answer a metadata request.
const TIMEOUT: Duration = Duration::from_secs(15);

/// librdkafka's last broker error, shared between a [`Probe`] and its caller.
pub(super) type LastError = Arc<Mutex<Option<String>>>;

/// Keeps librdkafka's last broker error, shared with the caller, which reads it once the
/// metadata request failed (the polling thread serves an error as soon as librdkafka reports
/// it, so it is in by then).
pub(super) struct Probe {
    last_error: LastError,
    /// librdkafka's own log lines at debug level only: the broker watch's client reports an
    /// outage itself, once, instead of one more client logging every failed connection.
    quiet: bool,
}

impl ClientContext for Probe {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if self.quiet {
            tracing::debug!(target: "librdkafka", "librdkafka: {fac} {log_message}");
        } else {
            DefaultClientContext.log(level, fac, log_message);
        }
    }

    /// librdkafka's log already shows each failure (as an error of target `librdkafka`);
    /// "all brokers are down", which follows each one, would hide its reason.
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "kafka client error");
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown) {
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
        }
    }
}

impl ProducerContext for Probe {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// Asks the brokers of `config` (connection and security settings only) for metadata; fails
/// with the last broker error librdkafka reported when they do not answer.
pub async fn reach(config: ClientConfig) -> Result<(), LogError> {
    let (producer, last_error) = client(&config, "admin client", false)?;
    let answer =
        tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, TIMEOUT))
            .await
            .unwrap_or(Err(KafkaError::Canceled));
    match answer {
        Ok(_) => Ok(()),
        Err(source) => Err(LogError::Unreachable {
            source,
            last_error: last_error.lock().unwrap_or_else(|p| p.into_inner()).take(),
        }),
    }
}

/// A client of `config` that only asks for metadata, and where its last broker error goes;
/// `quiet`: librdkafka's log lines at debug level. `name` says which client failed to start.
pub(super) fn client(
    config: &ClientConfig,
    name: &'static str,
    quiet: bool,
) -> Result<(Polled<Probe>, LastError), LogError> {
    let last_error = Arc::new(Mutex::new(None));
    let context = Probe {
        last_error: Arc::clone(&last_error),
        quiet,
    };
    let producer =
        Polled::create(config, context, "probe-poll").map_err(|source| LogError::Client {
            client: name,
            source,
        })?;
    Ok((producer, last_error))
}
