//! Whether the Kafka brokers can be reached: `/readyz` ([`Condition::Broker`]) and the
//! `questline_broker_up` gauge.
//!
//! **Detection.** A client of its own (the worker's and the sidecar's clients are left alone)
//! asks the brokers for the metadata of one topic every [`CHECK_EVERY`], waiting at most
//! [`CHECK_TIMEOUT`]. An answer means reachable; no answer means unreachable, with the last
//! error librdkafka reported for the connection (refused, a TLS or SASL failure, a name that
//! does not resolve), which names the broker. Why a request rather than the other clients'
//! callbacks:
//! - librdkafka reports `AllBrokersDown` once per outage and its transport errors only while
//!   it tries to connect, and the consumer's callbacks arrive only when the worker polls — not
//!   while it waits on a publish that cannot be acknowledged (`message.timeout.ms`, 30 s).
//! - there is no callback for "reachable again": the statistics' broker states say `UP`, but
//!   an idle producer (sparse connections) does not reconnect until it has something to send,
//!   so its brokers would stay down after the outage ended.
//!
//! A request answered is the same proof for the worker (`questline run`) and the sidecar alone
//! (`questline serve`, whose only Kafka client is the commands producer), with the process's
//! own connection and security settings. The topic asked about is the commands topic, which
//! both use; the client never creates topics (`allow.auto.create.topics=false`).
//!
//! **Grace.** A failed check makes `questline_broker_up` 0 at once; the process turns not
//! ready only when the checks kept failing for `kafka.unreachable_grace_ms`, so a broker
//! restart or a leader election does not take every pod out of service. It is ready again
//! at the first answered check.
//!
//! **Logs.** The outage is logged once when the grace has passed, then once every
//! [`REPORT_EVERY`] while it lasts, and once when it ends; this client's own librdkafka lines
//! are at debug level.

use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::producer::Producer;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::polled::Polled;
use super::probe::{self, Probe};
use super::{apply_properties, base_config, consumer_only, producer_only};
use crate::metrics::metrics;
use crate::pipeline::log::LogError;
use crate::readiness::{Condition, Readiness};
use crate::settings::KafkaSettings;

/// How often the brokers are asked.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long one check waits for an answer.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a lasting outage is logged again.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Watches the brokers until stopped; see the module's documentation.
pub struct BrokerWatch {
    client: Arc<Polled<Probe>>,
    last_error: probe::LastError,
    topic: String,
    outage: Outage,
}

impl BrokerWatch {
    /// A watch of `settings.brokers`, asking for the metadata of `topic`.
    pub fn new(settings: &KafkaSettings, topic: &str) -> Result<Self, LogError> {
        let mut config = base_config(settings);
        apply_properties(&mut config, settings, |k| {
            !consumer_only(k) && !producer_only(k)
        });
        config
            .set("allow.auto.create.topics", "false")
            // Reconnect at least every second, so the end of an outage is seen within one.
            .set("reconnect.backoff.max.ms", "1000")
            .set("log.connection.close", "false");
        let (client, last_error) = probe::client(&config, "broker watch", true)?;
        Ok(BrokerWatch {
            client: Arc::new(client),
            last_error,
            topic: topic.to_string(),
            outage: Outage::new(
                &settings.brokers,
                Duration::from_millis(settings.unreachable_grace_ms),
            ),
        })
    }

    /// Checks the brokers every [`CHECK_EVERY`] and reports through `readiness` and
    /// `questline_broker_up` until `stop` completes.
    pub async fn run(mut self, readiness: Readiness, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let started = Instant::now();
            let started_utc = Utc::now();
            let failure = self.check().await.err();
            let verdict = match failure {
                None => self.outage.answered(Instant::now()),
                Some(error) => self
                    .outage
                    .failed(started, started_utc, Instant::now(), &error),
            };
            apply(&verdict, &readiness);
            let next = tokio::time::Instant::from_std(started + CHECK_EVERY);
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep_until(next) => {}
            }
        }
        readiness.clear(Condition::Broker);
    }

    /// One metadata request: `Err` with librdkafka's last connection error when unanswered.
    async fn check(&self) -> Result<(), String> {
        let client = Arc::clone(&self.client);
        let topic = self.topic.clone();
        let answer = tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(Some(&topic), CHECK_TIMEOUT)
                .map(|_| ())
        })
        .await
        .unwrap_or(Err(rdkafka::error::KafkaError::Canceled));
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        match answer {
            // An error heard before this answer belongs to an outage that is over.
            Ok(()) => {
                *last = None;
                Ok(())
            }
            Err(e) => Err(last.clone().unwrap_or_else(|| e.to_string())),
        }
    }
}

/// Reports a verdict: the gauge, the readiness condition and the (rate-limited) logs.
fn apply(verdict: &Verdict, readiness: &Readiness) {
    metrics()
        .broker_up
        .set(i64::from(matches!(verdict, Verdict::Reachable { .. })));
    match verdict {
        Verdict::Reachable { after } => {
            readiness.clear(Condition::Broker);
            if let Some(after) = after {
                tracing::info!(
                    outage_seconds = after.as_secs(),
                    "Kafka brokers reachable again; ready"
                );
            }
        }
        Verdict::Failing => {}
        Verdict::NotReady { reason, report } => {
            readiness.set(Condition::Broker, reason.clone());
            if *report {
                tracing::warn!(%reason, "not ready: Kafka brokers unreachable");
            }
        }
    }
}

/// What one check means for the process.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Answered; `after` is how long the outage lasted when it had made the process not ready
    /// (its end is worth a log line).
    Reachable { after: Option<Duration> },
    /// Unanswered, within the grace period.
    Failing,
    /// Unanswered for longer than the grace period: `/readyz` says `reason`; `report` when
    /// this is worth a log line (the first time, then every [`REPORT_EVERY`]).
    NotReady { reason: String, report: bool },
}

/// The current outage, if any: when it started and when it was last logged.
struct Outage {
    brokers: String,
    grace: Duration,
    down: Option<Down>,
}

struct Down {
    since: Instant,
    since_utc: DateTime<Utc>,
    /// When it was last logged; `None` while within the grace period.
    reported: Option<Instant>,
}

impl Outage {
    fn new(brokers: &str, grace: Duration) -> Self {
        Outage {
            brokers: brokers.to_string(),
            grace,
            down: None,
        }
    }

    /// The verdict of a check answered at `now`.
    fn answered(&mut self, now: Instant) -> Verdict {
        let after = self
            .down
            .take()
            .filter(|d| d.reported.is_some())
            .map(|d| now.saturating_duration_since(d.since));
        Verdict::Reachable { after }
    }

    /// The verdict of a check started at `started` (`started_utc`) that failed at `now` with
    /// `error`: the outage starts with the first failed check.
    fn failed(
        &mut self,
        started: Instant,
        started_utc: DateTime<Utc>,
        now: Instant,
        error: &str,
    ) -> Verdict {
        let down = self.down.get_or_insert(Down {
            since: started,
            since_utc: started_utc,
            reported: None,
        });
        let lasted = now.saturating_duration_since(down.since);
        if lasted < self.grace {
            return Verdict::Failing;
        }
        let report = down
            .reported
            .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
        if report {
            down.reported = Some(now);
        }
        Verdict::NotReady {
            reason: format!(
                "the Kafka brokers ({}) are unreachable since {} ({} s): {error}",
                self.brokers,
                down.since_utc.to_rfc3339_opts(SecondsFormat::Secs, true),
                lasted.as_secs()
            ),
            report,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: &str =
        "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused";

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    fn utc() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-04T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A check started at `ms` that failed after two seconds without an answer.
    fn timed_out(outage: &mut Outage, t0: Instant, ms: u64) -> Verdict {
        outage.failed(at(t0, ms), utc(), at(t0, ms + 2000), REFUSED)
    }

    #[test]
    fn not_ready_once_the_checks_failed_for_the_grace_period_and_ready_at_the_first_answer() {
        let t0 = Instant::now();
        let mut outage = Outage::new("127.0.0.1:9092", Duration::from_millis(3000));
        assert_eq!(outage.answered(t0), Verdict::Reachable { after: None });
        // The outage starts with the first failed check (at 1 s), which lasted 2 s.
        assert_eq!(timed_out(&mut outage, t0, 1000), Verdict::Failing);
        let Verdict::NotReady { reason, report } = timed_out(&mut outage, t0, 3000) else {
            panic!("not ready once the checks failed for the grace period");
        };
        assert!(report, "the first time is logged");
        assert_eq!(
            reason,
            format!(
                "the Kafka brokers (127.0.0.1:9092) are unreachable since 2026-12-04T10:00:00Z (4 s): {REFUSED}"
            )
        );
        assert!(matches!(
            timed_out(&mut outage, t0, 5000),
            Verdict::NotReady { report: false, .. }
        ));
        assert_eq!(
            outage.answered(at(t0, 7500)),
            Verdict::Reachable {
                after: Some(Duration::from_millis(6500))
            }
        );
    }

    #[test]
    fn an_outage_shorter_than_the_grace_period_is_not_reported() {
        let t0 = Instant::now();
        let mut outage = Outage::new("b:9092", Duration::from_secs(10));
        assert_eq!(timed_out(&mut outage, t0, 0), Verdict::Failing);
        assert_eq!(
            outage.answered(at(t0, 9000)),
            Verdict::Reachable { after: None }
        );
        // A new outage counts its grace from its own start.
        assert_eq!(timed_out(&mut outage, t0, 10_000), Verdict::Failing);
    }

    #[test]
    fn a_lasting_outage_is_logged_once_a_minute() {
        let t0 = Instant::now();
        let mut outage = Outage::new("b:9092", Duration::from_millis(1));
        let logged: Vec<u64> = (0..90)
            .filter(|i| {
                matches!(
                    timed_out(&mut outage, t0, i * 2000),
                    Verdict::NotReady { report: true, .. }
                )
            })
            .map(|i| i * 2000 + 2000)
            .collect();
        // At the end of the first check, then a minute later, and again.
        assert_eq!(logged, vec![2000, 62_000, 122_000]);
    }
}
