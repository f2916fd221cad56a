//! When the worker writes a batch ahead: right after evaluating it, while the batch before it
//! is still being published and acknowledged, instead of at the next poll.
//!
//! A batch's finish is its write (the store's durable append), then its publish until every
//! record is acknowledged, then its offsets' commit. The worker evaluates the next batch
//! meanwhile. Written at the next poll, a batch's cycle is the longer of its evaluation and
//! the whole finish before it (write + acknowledgement), and its records wait for their
//! write after that. Written ahead, its write overlaps the previous acknowledgement, and the
//! next cycle has only its own acknowledgement left beside the next evaluation: when the
//! broker's round trip is the longer part, a cycle loses the write's time, and a record its
//! batch's write. When evaluation is the longer part (a burst of full batches), writing ahead
//! puts the write on the main path after the evaluation instead of beside the next one, and
//! gains nothing: then the batch waits for the next poll, as before.
//!
//! Only a worker that keeps up writes ahead: a poll that filled its batch means a backlog,
//! where the rate matters more than a record's wait, and writing beside the publishing on the
//! same cores cost end-to-end runs CPU per action and rate ([`keeping_up`]). Then
//! [`Estimates`] keeps recent durations of the two parts of a finish, and [`worth_it`] weighs
//! the wait a write ahead adds now against what it takes off the next cycle.
//!
//! Writing ahead is safe because each partition has two outboxes (`pipeline::outbox`): a
//! batch written ahead goes to the other one than the batch before it, whose records may
//! still be in flight; the batch after it is polled only once that one is committed.

use std::time::Duration;

/// Exponentially weighted recent durations of a finish's parts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Estimates {
    /// The store's write of a batch.
    pub write: Option<Duration>,
    /// Publishing a written batch until acknowledged, and committing its offsets.
    pub deliver: Option<Duration>,
}

/// The weight of the newest duration: a few batches' history, so that a change of rate
/// shows within a fraction of a second.
const WEIGHT: f64 = 0.25;

fn smoothed(old: Option<Duration>, new: Duration) -> Duration {
    match old {
        None => new,
        Some(old) => old.mul_f64(1.0 - WEIGHT) + new.mul_f64(WEIGHT),
    }
}

impl Estimates {
    pub fn observe_write(&mut self, took: Duration) {
        self.write = Some(smoothed(self.write, took));
    }

    pub fn observe_deliver(&mut self, took: Duration) {
        self.deliver = Some(smoothed(self.deliver, took));
    }

    /// How long a finish started `elapsed` ago still runs: its write (unless the batch was
    /// written ahead) and its delivery, less what has passed.
    pub fn remaining(&self, written: bool, elapsed: Duration) -> Duration {
        let write = if written {
            Duration::ZERO
        } else {
            self.write.unwrap_or_default()
        };
        (write + self.deliver.unwrap_or_default()).saturating_sub(elapsed)
    }
}

/// Whether a poll that returned `polled` records, of the `batch_size` it asked for, finds the
/// worker keeping up with its input: a full batch means more was waiting.
pub fn keeping_up(polled: usize, batch_size: usize) -> bool {
    polled < batch_size
}

/// Whether to write the batch just evaluated (in `evaluated`) ahead, while the previous
/// batch's finish still has `remaining` to run.
///
/// Written ahead, the batch's cycle ends when both its write and the previous finish are
/// done, `max(remaining, write)`, and the next cycle runs its delivery beside the next
/// evaluation: `max(deliver, evaluated)`. Left for the next poll, this cycle ends after
/// `remaining`, and the next runs its whole finish beside the next evaluation:
/// `max(write + deliver, evaluated)`, taking the batch's evaluation time as the next one's.
/// Writing ahead is worth it when it takes off the next cycle at least half a write more
/// than it adds to this one: a write ahead runs beside the previous batch's publishing on the
/// same cores, which slows both, so a gain too close to even is none. With no estimates yet
/// (the first batches) nothing is written ahead.
pub fn worth_it(estimates: &Estimates, remaining: Duration, evaluated: Duration) -> bool {
    let (Some(write), Some(deliver)) = (estimates.write, estimates.deliver) else {
        return false;
    };
    let added_now = write.saturating_sub(remaining);
    let saved_next = (write + deliver).max(evaluated) - deliver.max(evaluated);
    saved_next.saturating_sub(added_now) >= write / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn estimates(write: u64, deliver: u64) -> Estimates {
        Estimates {
            write: Some(ms(write)),
            deliver: Some(ms(deliver)),
        }
    }

    /// At half the peak (the benchmark's latency phase: evaluation ~4 ms, write ~2.5,
    /// acknowledgement ~6), the write is hidden behind the acknowledgement.
    #[test]
    fn a_short_evaluation_beside_a_long_acknowledgement_writes_ahead() {
        let e = estimates(3, 6);
        // The previous batch was written at its poll: 9 ms of finish, 4 of them gone.
        assert!(worth_it(&e, e.remaining(false, ms(4)), ms(4)));
        // The previous batch was itself written ahead: 6 ms of delivery, 4 gone.
        assert!(worth_it(&e, e.remaining(true, ms(4)), ms(4)));
    }

    /// In a burst of full batches the evaluation is the longer part: the batch's write
    /// would follow it on the main path, so it waits for the next poll.
    #[test]
    fn a_long_evaluation_leaves_the_write_to_the_next_poll() {
        let e = estimates(5, 7);
        assert!(!worth_it(&e, e.remaining(false, ms(10)), ms(10)));
        assert!(!worth_it(&e, e.remaining(true, ms(10)), ms(12)));
        // Nearly even (3 ms taken off the next cycle for 2 added now): not worth
        // running the write beside the publishing for.
        assert!(!worth_it(&e, e.remaining(false, ms(9)), ms(9)));
        // A shorter evaluation leaves a clear gain (4 ms for 1).
        assert!(worth_it(&e, e.remaining(false, ms(8)), ms(8)));
    }

    #[test]
    fn only_a_poll_short_of_its_batch_size_keeps_up() {
        assert!(keeping_up(0, 2_000));
        assert!(keeping_up(1_999, 2_000));
        assert!(!keeping_up(2_000, 2_000));
    }

    #[test]
    fn nothing_is_written_ahead_before_both_parts_were_timed() {
        let mut e = Estimates::default();
        assert!(!worth_it(&e, ms(50), ms(1)));
        e.observe_write(ms(3));
        assert!(!worth_it(&e, ms(50), ms(1)));
        e.observe_deliver(ms(6));
        assert!(worth_it(&e, ms(50), ms(1)));
    }

    #[test]
    fn estimates_follow_recent_durations() {
        let mut e = Estimates::default();
        e.observe_deliver(ms(8));
        assert_eq!(e.deliver, Some(ms(8)));
        e.observe_deliver(ms(4));
        assert_eq!(e.deliver, Some(ms(7)));
        assert_eq!(e.remaining(true, ms(2)), ms(5));
        assert_eq!(e.remaining(true, ms(9)), Duration::ZERO);
        e.observe_write(ms(2));
        assert_eq!(e.remaining(false, ms(2)), ms(7));
    }
}
