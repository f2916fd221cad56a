//! librdkafka's producer with a polling thread that waits inside librdkafka between events.
//!
//! Why not rdkafka's `ThreadedProducer`: its thread calls `poll` with a 100 ms deadline, and
//! rdkafka's poll loop hands librdkafka the time left in whole milliseconds, rounded down. So
//! in the last millisecond before each deadline it polls with a timeout of 0, over and over: a
//! busy loop for up to 1 ms in every 100. An idle worker measured it (its two producers, the
//! publisher and the broker watch): 36 of the process's 38 CPU ticks in 20 s, ~0.9 % of a core
//! per producer, doing nothing. Here the deadline is [`POLL_PERIOD`], so that loop runs at
//! most one millisecond a second.
//!
//! The thread holds the producer only while it polls (a [`Weak`] in between), so dropping the
//! [`Polled`] never waits for the thread: the producer is destroyed when the poll in progress
//! returns, on the polling thread, at most [`POLL_PERIOD`] later. Anything that must be
//! delivered is flushed before (the worker flushes on shutdown; `BaseProducer`'s own drop
//! purges what is left, as it did under `ThreadedProducer`).

use std::ops::Deref;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{BaseProducer, ProducerContext};

/// The polling thread's deadline: the longer, the rarer rdkafka's last-millisecond busy loop,
/// and the later a dropped producer is destroyed. Delivery reports do not wait for it: a
/// report wakes the poll as soon as it is queued.
pub const POLL_PERIOD: Duration = Duration::from_secs(1);

/// A producer whose delivery reports and callbacks are served by a thread of its own.
pub struct Polled<C: ProducerContext + 'static> {
    producer: Arc<BaseProducer<C>>,
}

impl<C: ProducerContext + 'static> Polled<C> {
    /// Creates the producer of `config` with `context`, and its polling thread (named
    /// `thread_name`).
    pub fn create(config: &ClientConfig, context: C, thread_name: &str) -> KafkaResult<Self> {
        let producer: Arc<BaseProducer<C>> = Arc::new(config.create_with_context(context)?);
        let polled: Weak<BaseProducer<C>> = Arc::downgrade(&producer);
        std::thread::Builder::new()
            .name(thread_name.to_string())
            .spawn(move || {
                while let Some(producer) = polled.upgrade() {
                    producer.poll(POLL_PERIOD);
                }
            })
            .map_err(|e| KafkaError::ClientCreation(format!("polling thread: {e}")))?;
        Ok(Polled { producer })
    }
}

impl<C: ProducerContext + 'static> Deref for Polled<C> {
    type Target = BaseProducer<C>;

    fn deref(&self) -> &BaseProducer<C> {
        &self.producer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::client::ClientContext;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Records whether the producer it belongs to was destroyed.
    struct Dropped(Arc<AtomicBool>);

    impl ClientContext for Dropped {}

    impl ProducerContext for Dropped {
        type DeliveryOpaque = ();
        fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
    }

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_dropped_producer_is_destroyed_by_its_thread_without_waiting_for_it() {
        let destroyed = Arc::new(AtomicBool::new(false));
        let mut config = ClientConfig::new();
        // Nothing listens there, and nothing is sent: the client only starts.
        config.set("bootstrap.servers", "127.0.0.1:9");
        let producer = Polled::create(&config, Dropped(Arc::clone(&destroyed)), "test-poll")
            .expect("a producer starts without a broker");
        // Let the thread get into its poll, holding the producer.
        std::thread::sleep(Duration::from_millis(100));
        let started = std::time::Instant::now();
        drop(producer);
        assert!(
            started.elapsed() < POLL_PERIOD / 2,
            "dropping waited for the polling thread"
        );
        let deadline = std::time::Instant::now() + POLL_PERIOD * 5;
        while !destroyed.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the producer was not destroyed after its poll returned"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
