//! Waiting at startup for topics the worker reads but does not create.
//!
//! Input topics belong to their producers: the worker never creates them (as Kafka Streams
//! never creates its source topics), so one may not exist yet when the worker starts — a new
//! mapping deployed before its producer, a cluster being set up. Exiting would crash-loop;
//! subscribing anyway would let the group assign partitions of the topics that do exist,
//! create the commands and internal topics without knowing the inputs' partition count, and
//! skip the co-partitioning check for the missing input. So the worker waits *before it
//! subscribes*: it asks every [`CHECK_EVERY`] which topics exist, says on `/readyz` which it
//! waits for ([`Condition::Topics`]), logs the wait once and then once a minute
//! ([`Repeats`]), and goes on when all exist — or stops at shutdown, having read nothing.

use async_trait::async_trait;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::readiness::{Condition, Readiness};
use crate::repeats::Repeats;

/// How often the brokers are asked again while a topic is missing.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Topics with their partition counts, `None` for a topic that does not exist yet.
pub type Counts = Vec<(String, Option<i32>)>;

/// Which topics exist: the brokers' metadata (Kafka), or a fake in tests.
#[async_trait]
pub trait TopicCheck: Send + Sync {
    /// Each of `topics` with its partition count, `None` for one that does not exist yet;
    /// `Err` with the reason when the brokers did not answer.
    async fn partitions(&self, topics: &[String]) -> Result<Counts, String>;
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited {
    /// Every topic exists: each with its partition count.
    Exist(Vec<(String, i32)>),
    /// Shutdown came first.
    Stopped,
}

/// Waits until every one of `topics` exists, checking every `every`; see the module's
/// documentation. `readiness` says which are missing meanwhile and is cleared of
/// [`Condition::Topics`] when all exist.
pub async fn wait_for_topics(
    check: &dyn TopicCheck,
    topics: &[String],
    readiness: &Readiness,
    every: Duration,
    stop: impl Future<Output = ()>,
) -> Waited {
    tokio::pin!(stop);
    let repeats = Repeats::default();
    // Whether `/readyz` says why yet, and whether a wait was logged (to log its end).
    let (mut said, mut waited) = (false, false);
    loop {
        let started = Instant::now();
        match check.partitions(topics).await {
            Ok(counts) => {
                let missing: Vec<&str> = counts
                    .iter()
                    .filter(|(_, n)| n.is_none())
                    .map(|(t, _)| t.as_str())
                    .collect();
                if missing.is_empty() {
                    readiness.clear(Condition::Topics);
                    if waited {
                        tracing::info!(?topics, "the topics it waited for exist: going on");
                    }
                    return Waited::Exist(
                        counts
                            .into_iter()
                            .filter_map(|(t, n)| Some((t, n?)))
                            .collect(),
                    );
                }
                let reason = format!(
                    "waiting for the topics it reads to be created: {}",
                    quoted(&missing)
                );
                readiness.set(Condition::Topics, reason.clone());
                (said, waited) = (true, true);
                // The first time, and once a minute; the same again whenever the set changes.
                if let Some(left_out) = repeats.admit(&reason, started) {
                    tracing::warn!(
                        missing = ?missing,
                        checks_since_last_line = left_out,
                        "{reason} (input topics belong to their producers: the worker does not \
                         create them; it subscribes once they all exist)"
                    );
                }
            }
            Err(error) => {
                if !said {
                    said = true;
                    readiness.set(
                        Condition::Topics,
                        format!("cannot tell yet whether the topics it reads exist: {error}"),
                    );
                }
                if let Some(left_out) = repeats.admit(&error, started) {
                    tracing::warn!(%error, checks_since_last_line = left_out, "asking which topics exist failed; asking again");
                }
            }
        }
        let next = tokio::time::Instant::from_std(started + every);
        tokio::select! {
            () = &mut stop => return Waited::Stopped,
            () = tokio::time::sleep_until(next) => {}
        }
    }
}

/// `'a', 'b'`: topic names as the log and `/readyz` quote them.
fn quoted(topics: &[&str]) -> String {
    topics
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// One scripted answer: the topics' counts, or the reason the brokers did not answer.
    type Answer<'a> = Result<Vec<(&'a str, Option<i32>)>, &'a str>;

    /// Answers from a script, one answer a check, the last one again once it runs out.
    struct Scripted {
        answers: Mutex<Vec<Result<Counts, String>>>,
        asked: Mutex<usize>,
        /// The readiness handle's answer at each check, before it is answered.
        seen: Mutex<Vec<Result<(), String>>>,
        readiness: Readiness,
    }

    impl Scripted {
        fn new(readiness: &Readiness, answers: Vec<Answer<'_>>) -> Self {
            let answers = answers
                .into_iter()
                .rev()
                .map(|a| {
                    a.map(|v| v.into_iter().map(|(t, n)| (t.to_string(), n)).collect())
                        .map_err(str::to_string)
                })
                .collect();
            Scripted {
                answers: Mutex::new(answers),
                asked: Mutex::new(0),
                seen: Mutex::new(Vec::new()),
                readiness: readiness.clone(),
            }
        }
    }

    #[async_trait]
    impl TopicCheck for Scripted {
        async fn partitions(&self, _topics: &[String]) -> Result<Counts, String> {
            *self.asked.lock().unwrap() += 1;
            self.seen.lock().unwrap().push(self.readiness.check());
            let mut answers = self.answers.lock().unwrap();
            if answers.len() > 1 {
                answers.pop().unwrap()
            } else {
                answers.last().cloned().unwrap()
            }
        }
    }

    fn topics() -> Vec<String> {
        vec!["actions".to_string(), "events".to_string()]
    }

    #[tokio::test]
    async fn it_says_which_topics_are_missing_until_all_exist_then_returns_their_counts() {
        let readiness = Readiness::default();
        let check = Scripted::new(
            &readiness,
            vec![
                Ok(vec![("actions", None), ("events", None)]),
                Err("all brokers down"),
                Ok(vec![("actions", Some(3)), ("events", None)]),
                Ok(vec![("actions", Some(3)), ("events", Some(3))]),
            ],
        );
        let waited = wait_for_topics(
            &check,
            &topics(),
            &readiness,
            Duration::from_millis(1),
            std::future::pending(),
        )
        .await;
        assert_eq!(
            waited,
            Waited::Exist(vec![("actions".into(), 3), ("events".into(), 3)])
        );
        assert!(readiness.check().is_ok(), "ready once all exist");
        let waiting_for_both =
            "waiting for the topics it reads to be created: 'actions', 'events'".to_string();
        assert_eq!(
            *check.seen.lock().unwrap(),
            vec![
                Ok(()),
                Err(waiting_for_both.clone()),
                // A failed check leaves the last answer's reason.
                Err(waiting_for_both),
                Err("waiting for the topics it reads to be created: 'events'".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_first_check_is_not_ready_with_the_reason() {
        let readiness = Readiness::default();
        let check = Scripted::new(&readiness, vec![Err("all brokers down")]);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let topics = topics();
        let wait = wait_for_topics(
            &check,
            &topics,
            &readiness,
            Duration::from_millis(1),
            async {
                let _ = stopped.await;
            },
        );
        let waiting = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = stop.send(());
        });
        assert_eq!(wait.await, Waited::Stopped);
        waiting.await.unwrap();
        assert_eq!(
            readiness.check().unwrap_err(),
            "cannot tell yet whether the topics it reads exist: all brokers down"
        );
        assert!(
            *check.asked.lock().unwrap() > 1,
            "asked again after a failure"
        );
    }

    #[tokio::test]
    async fn shutdown_ends_the_wait_without_waiting_for_the_next_check() {
        let readiness = Readiness::default();
        let check = Scripted::new(&readiness, vec![Ok(vec![("actions", None)])]);
        let started = Instant::now();
        let waited = wait_for_topics(
            &check,
            &topics(),
            &readiness,
            Duration::from_secs(3600),
            tokio::time::sleep(Duration::from_millis(10)),
        )
        .await;
        assert_eq!(waited, Waited::Stopped);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(*check.asked.lock().unwrap(), 1);
        assert!(readiness.check().is_err(), "still not ready: it stops");
    }
}
