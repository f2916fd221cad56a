//! The commit protocol's decisions, as pure functions of what happened.
//!
//! The worker loop (`worker.rs`) does the IO — poll, evaluate, persist, publish, commit — and
//! after each step asks this module what to do next, instead of deciding with flags spread
//! over its methods. Every decision here is a plain value computed from plain values (the
//! failure's [`ErrorClass`], whether shutdown was asked for, whether the batch still has
//! records this member owns), so each transition is covered by a unit test without a broker
//! or a store.
//!
//! The rules:
//! - a transient failure of any stage voids the batch: consumption pauses (once), the worker
//!   waits a backoff that doubles up to a ceiling, and the batch is redone from what the store
//!   durably holds (the watermark skips what was applied, the outbox re-publishes what was
//!   not acknowledged, with the same event ids);
//! - a permanent or fatal failure stops the worker with the error: retrying cannot help, and a
//!   stopped worker is visible where a silently wedged one is not;
//! - a redo is abandoned on shutdown (nothing of it was committed; a restart replays it) or
//!   when every partition it needs was revoked (the new owner replays them);
//! - consumption resumes when the redo is done or abandoned;
//! - an output refused for its size is tried once more on its own, then replaced by a dead
//!   letter of its own, and the batch goes on ([`after_too_large`]).

use std::time::Duration;

use crate::error::ErrorClass;

/// What to do after a stage of a batch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// Wait `wait`, then redo the batch; `pause` says whether consumption must be paused now
    /// (it stays paused until the batch is done or abandoned).
    Redo { wait: Duration, pause: bool },
    /// Stop the worker: the failure is not one a retry can mend.
    Stop,
}

/// What to do once the backoff of a redo has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterWait {
    /// Evaluate and finish the batch again.
    Attempt,
    /// Give the batch up (see the module doc); `resume` says whether consumption was paused.
    Abandon { resume: bool },
}

/// The retry state of one batch being redone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redo {
    backoff: Duration,
    max: Duration,
    paused: bool,
    attempts: u32,
}

impl Redo {
    /// A batch that has not failed yet, with the configured backoff bounds.
    pub fn new(min: Duration, max: Duration) -> Self {
        Redo {
            backoff: min.max(Duration::from_millis(1)),
            max: max.max(min),
            paused: false,
            attempts: 0,
        }
    }

    /// A stage failed with an error of `class`.
    pub fn failed(&mut self, class: ErrorClass) -> AfterFailure {
        if class != ErrorClass::Transient {
            return AfterFailure::Stop;
        }
        self.attempts += 1;
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(self.max);
        let pause = !self.paused;
        self.paused = true;
        AfterFailure::Redo { wait, pause }
    }

    /// The backoff passed (or shutdown cut it short).
    pub fn waited(&self, stopping: bool, owns_records: bool) -> AfterWait {
        if stopping || !owns_records {
            AfterWait::Abandon {
                resume: self.paused && !stopping,
            }
        } else {
            AfterWait::Attempt
        }
    }

    /// The batch was finished: whether consumption must resume.
    pub fn done(&self) -> bool {
        self.paused
    }

    /// How many times the batch failed so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// What to do after a poll failed with an error of `class`: drain the next event after a
/// short pause (librdkafka reports broker trouble as one event per failed connection
/// attempt, so a growing backoff would make a backlog of them outlast the outage itself), or
/// stop on a fatal one.
pub fn after_poll_failure(class: ErrorClass, pause: Duration) -> Option<Duration> {
    (class != ErrorClass::Fatal).then_some(pause)
}

/// Whether a failed offset commit is retried (transient), or fails the batch.
pub fn retry_commit(class: ErrorClass) -> bool {
    class == ErrorClass::Transient
}

/// How an output refused for its size was being published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// With the rest of its batch: a broker limit below the client's refuses a whole
    /// request, small records with the large one, so the refusal may not be this record's.
    InBatch,
    /// On its own: the record itself is too large.
    Alone,
    /// As the dead letter standing for a refused output.
    AsDeadLetter,
}

/// What to do with an output refused for its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterTooLarge {
    /// Publish it again on its own.
    PublishAlone,
    /// Publish a small dead letter in its place (`oversize`) and go on: as it is, it can never
    /// be published, and a batch is committed only once all of its records are.
    DeadLetter,
    /// Stop: even the small dead letter is refused (a `message.max.bytes` of a few KB).
    Stop,
}

/// The decision for an output refused for its size while published as `how`.
pub fn after_too_large(how: Refused) -> AfterTooLarge {
    match how {
        Refused::InBatch => AfterTooLarge::PublishAlone,
        Refused::Alone => AfterTooLarge::DeadLetter,
        Refused::AsDeadLetter => AfterTooLarge::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn transient_failures_back_off_doubling_to_the_ceiling_and_pause_once() {
        let mut redo = Redo::new(100 * MS, 500 * MS);
        let waits: Vec<_> = (0..5).map(|_| redo.failed(Transient)).collect();
        assert_eq!(
            waits,
            [
                AfterFailure::Redo {
                    wait: 100 * MS,
                    pause: true
                },
                AfterFailure::Redo {
                    wait: 200 * MS,
                    pause: false
                },
                AfterFailure::Redo {
                    wait: 400 * MS,
                    pause: false
                },
                AfterFailure::Redo {
                    wait: 500 * MS,
                    pause: false
                },
                AfterFailure::Redo {
                    wait: 500 * MS,
                    pause: false
                },
            ]
        );
        assert_eq!(redo.attempts(), 5);
        assert!(redo.done(), "paused, so it resumes when done");
    }

    #[test]
    fn permanent_and_fatal_failures_stop_the_worker() {
        for class in [Permanent, Fatal] {
            let mut redo = Redo::new(MS, MS);
            assert_eq!(redo.failed(class), AfterFailure::Stop);
            assert!(!redo.done(), "nothing was paused");
        }
    }

    #[test]
    fn a_redo_is_abandoned_on_shutdown_or_when_its_partitions_are_gone() {
        let mut redo = Redo::new(MS, MS);
        redo.failed(Transient);
        assert_eq!(redo.waited(false, true), AfterWait::Attempt);
        // Revoked: resume consumption for the partitions this member keeps.
        assert_eq!(
            redo.waited(false, false),
            AfterWait::Abandon { resume: true }
        );
        // Shutdown: nothing to resume, the process is stopping.
        assert_eq!(
            redo.waited(true, true),
            AfterWait::Abandon { resume: false }
        );
    }

    #[test]
    fn zero_or_inverted_bounds_still_wait_and_never_spin() {
        let mut redo = Redo::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(
            redo.failed(Transient),
            AfterFailure::Redo {
                wait: MS,
                pause: true
            }
        );
        let mut redo = Redo::new(10 * MS, MS);
        redo.failed(Transient);
        assert_eq!(
            redo.failed(Transient),
            AfterFailure::Redo {
                wait: 10 * MS,
                pause: false
            }
        );
    }

    #[test]
    fn a_too_large_output_is_tried_alone_then_dead_lettered_and_a_refused_dead_letter_stops() {
        assert_eq!(
            after_too_large(Refused::InBatch),
            AfterTooLarge::PublishAlone
        );
        assert_eq!(after_too_large(Refused::Alone), AfterTooLarge::DeadLetter);
        assert_eq!(after_too_large(Refused::AsDeadLetter), AfterTooLarge::Stop);
    }

    #[test]
    fn polls_and_commits_retry_unless_the_error_says_otherwise() {
        assert_eq!(after_poll_failure(Transient, MS), Some(MS));
        assert_eq!(after_poll_failure(Permanent, MS), Some(MS));
        assert_eq!(after_poll_failure(Fatal, MS), None);
        assert!(retry_commit(Transient));
        assert!(!retry_commit(Permanent) && !retry_commit(Fatal));
    }
}
