//! Delivery reports counted per batch of records, so that a publishing task is woken once per
//! batch instead of once per record.
//!
//! Why: rdkafka's `FutureProducer` gives every record a future of its own — a oneshot channel
//! and a boxed opaque allocated per record, a wake-up per delivery report, and a poll of every
//! pending future when they are joined. For a batch of 2,000 records that is 2,000 wake-ups
//! where one is needed (the publish path was ~11 % of the worker's profile; with this and one
//! producer per process, the tokio threads that run it spent ~1 µs less per action:
//! docs/benchmarks.md). Here a record
//! carries a [`Ticket`] (its batch's slot and its index, packed in the opaque pointer
//! librdkafka hands back, so sending allocates nothing for it), the delivery callback counts
//! the report in its batch, and the batch's one channel is completed when the last report has
//! arrived.

use std::sync::Mutex;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::sync::oneshot;

use crate::pipeline::log::too_large;

/// Bits of a [`Ticket`] that hold the record's index; the slot takes the others.
const INDEX_BITS: u32 = usize::BITS / 2;
/// The largest slot and the largest index a [`Ticket`] holds (2^32 - 1 on 64-bit targets).
const LARGEST: usize = (1 << INDEX_BITS) - 1;

/// A record's identity in its delivery report: its batch's slot and its index in the batch,
/// packed in one `usize`, which librdkafka carries as the record's opaque pointer (no
/// allocation, unlike a boxed opaque).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(usize);

impl Ticket {
    /// `None` when the slot or the index does not fit half a pointer.
    fn new(slot: usize, index: usize) -> Option<Ticket> {
        (slot <= LARGEST && index <= LARGEST).then_some(Ticket((slot << INDEX_BITS) | index))
    }

    fn slot(self) -> usize {
        self.0 >> INDEX_BITS
    }

    fn index(self) -> usize {
        self.0 & LARGEST
    }

    /// The opaque librdkafka carries.
    pub fn opaque(self) -> usize {
        self.0
    }

    /// The ticket an opaque carried.
    pub fn from_opaque(opaque: usize) -> Ticket {
        Ticket(opaque)
    }
}

/// What the delivery reports of a batch said, besides "delivered".
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Records refused for their size (by the broker's or the topic's limit), with the code.
    pub too_large: Vec<(usize, RDKafkaErrorCode)>,
    /// The record of lowest index that failed for another reason, and why.
    pub failed: Option<(usize, KafkaError)>,
}

/// A batch whose records are in librdkafka's hands.
struct Batch {
    /// How many records were handed over; `None` while the publisher is still sending.
    sent: Option<usize>,
    delivered: usize,
    outcome: Outcome,
    done: oneshot::Sender<Outcome>,
}

impl Batch {
    fn complete(&self) -> bool {
        self.sent == Some(self.delivered)
    }
}

/// The batches in flight of one producer, by slot. A slot is reused only once its batch's
/// last report arrived, so no report can reach a later batch.
#[derive(Default)]
pub struct Batches {
    slots: Mutex<Vec<Option<Batch>>>,
}

impl Batches {
    /// A new batch: the guard through which its records are sent, and the channel on which
    /// its outcome arrives. The channel closes without an outcome when the producer (and so
    /// this table) goes away with records in flight.
    pub fn open(&self) -> (Sending<'_>, oneshot::Receiver<Outcome>) {
        let (done, outcome) = oneshot::channel();
        let batch = Batch {
            sent: None,
            delivered: 0,
            outcome: Outcome::default(),
            done,
        };
        let mut slots = self.locked();
        let slot = match slots.iter().position(Option::is_none) {
            Some(free) => {
                slots[free] = Some(batch);
                free
            }
            None => {
                slots.push(Some(batch));
                slots.len() - 1
            }
        };
        let sending = Sending {
            batches: self,
            slot,
            sent: 0,
        };
        (sending, outcome)
    }

    /// Counts one delivery report (`error` when the record was not delivered).
    pub fn report(&self, ticket: Ticket, error: Option<&KafkaError>) {
        let finished = {
            let mut slots = self.locked();
            let Some(batch) = slots.get_mut(ticket.slot()).and_then(Option::as_mut) else {
                return;
            };
            batch.delivered += 1;
            let index = ticket.index();
            match error {
                None => {}
                Some(KafkaError::MessageProduction(code)) if too_large(*code) => {
                    batch.outcome.too_large.push((index, *code));
                }
                Some(e)
                    if batch
                        .outcome
                        .failed
                        .as_ref()
                        .is_none_or(|(i, _)| index < *i) =>
                {
                    batch.outcome.failed = Some((index, e.clone()));
                }
                Some(_) => {}
            }
            take_complete(&mut slots, ticket.slot())
        };
        finish(finished);
    }

    /// Ends the sending of a batch of `sent` records.
    fn seal(&self, slot: usize, sent: usize) {
        let finished = {
            let mut slots = self.locked();
            if let Some(batch) = slots.get_mut(slot).and_then(Option::as_mut) {
                batch.sent = Some(sent);
            }
            take_complete(&mut slots, slot)
        };
        finish(finished);
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, Vec<Option<Batch>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Frees `slot` when its batch is complete, and returns the batch to be finished outside the
/// lock (waking its task there, not while the delivery callback holds the table).
fn take_complete(slots: &mut [Option<Batch>], slot: usize) -> Option<Batch> {
    let entry = slots.get_mut(slot)?;
    if entry.as_ref().is_some_and(Batch::complete) {
        entry.take()
    } else {
        None
    }
}

fn finish(batch: Option<Batch>) {
    if let Some(batch) = batch {
        // The publisher may have stopped waiting (its task was cancelled): nothing to tell.
        let _ = batch.done.send(batch.outcome);
    }
}

/// A batch being sent. Dropping it seals the batch with the records counted so far — also
/// when the publisher returns early or its task is cancelled, so the slot is freed once those
/// records' reports are in.
pub struct Sending<'a> {
    batches: &'a Batches,
    slot: usize,
    /// Records handed to librdkafka so far.
    pub sent: usize,
}

impl Sending<'_> {
    /// The ticket of the record at `index`; `None` beyond 2^32 records or batches in flight
    /// (2^16 on 32-bit targets).
    pub fn ticket(&self, index: usize) -> Option<Ticket> {
        Ticket::new(self.slot, index)
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.batches.seal(self.slot, self.sent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: RDKafkaErrorCode) -> KafkaError {
        KafkaError::MessageProduction(e)
    }

    #[test]
    fn a_ticket_keeps_its_slot_and_index_through_the_opaque() {
        let ticket = Ticket::new(7, 1_999).unwrap();
        let back = Ticket::from_opaque(ticket.opaque());
        assert_eq!((back.slot(), back.index()), (7, 1_999));
        assert_eq!(Ticket::new(LARGEST + 1, 0), None);
        assert_eq!(Ticket::new(0, LARGEST + 1), None);
    }

    #[tokio::test]
    async fn reports_before_and_after_sealing_complete_the_batch_once() {
        let batches = Batches::default();
        let (mut sending, mut done) = batches.open();
        let first = sending.ticket(0).unwrap();
        let second = sending.ticket(1).unwrap();
        sending.sent = 2;
        batches.report(first, None);
        drop(sending);
        assert!(done.try_recv().is_err(), "one record still in flight");
        batches.report(second, None);
        assert_eq!(done.await.unwrap(), Outcome::default());
        assert!(batches.locked().iter().all(Option::is_none), "slot freed");
    }

    #[tokio::test]
    async fn the_outcome_keeps_too_large_records_and_the_first_failure() {
        let batches = Batches::default();
        let (mut sending, done) = batches.open();
        let tickets: Vec<Ticket> = (0..4).map(|i| sending.ticket(i).unwrap()).collect();
        sending.sent = 4;
        drop(sending);
        batches.report(tickets[3], Some(&code(RDKafkaErrorCode::MessageTimedOut)));
        batches.report(
            tickets[2],
            Some(&code(RDKafkaErrorCode::MessageSizeTooLarge)),
        );
        batches.report(
            tickets[1],
            Some(&code(RDKafkaErrorCode::BrokerNotAvailable)),
        );
        batches.report(tickets[0], None);
        let outcome = done.await.unwrap();
        assert_eq!(
            outcome.too_large,
            vec![(2, RDKafkaErrorCode::MessageSizeTooLarge)]
        );
        assert_eq!(
            outcome.failed,
            Some((1, code(RDKafkaErrorCode::BrokerNotAvailable)))
        );
    }

    #[tokio::test]
    async fn a_batch_with_nothing_sent_completes_when_sealed() {
        let batches = Batches::default();
        let (sending, done) = batches.open();
        drop(sending);
        assert_eq!(done.await.unwrap(), Outcome::default());
    }

    #[tokio::test]
    async fn batches_in_flight_get_their_own_slots_and_reports() {
        let batches = Batches::default();
        let (mut a, done_a) = batches.open();
        let (mut b, done_b) = batches.open();
        let (ta, tb) = (a.ticket(0).unwrap(), b.ticket(0).unwrap());
        assert_ne!(ta.slot(), tb.slot());
        a.sent = 1;
        b.sent = 1;
        drop((a, b));
        batches.report(tb, Some(&code(RDKafkaErrorCode::MessageTimedOut)));
        batches.report(ta, None);
        assert_eq!(done_a.await.unwrap(), Outcome::default());
        assert!(done_b.await.unwrap().failed.is_some());
        // Both slots are free again: the next batch reuses the first.
        let (next, _done) = batches.open();
        assert_eq!(next.ticket(0).unwrap().slot(), 0);
    }

    #[tokio::test]
    async fn the_channel_closes_when_the_table_goes_away_with_records_in_flight() {
        let batches = Batches::default();
        let (mut sending, done) = batches.open();
        sending.sent = 1;
        drop(sending);
        drop(batches);
        assert!(done.await.is_err());
    }

    #[test]
    fn a_report_of_an_unknown_slot_is_ignored() {
        let batches = Batches::default();
        batches.report(Ticket::new(3, 0).unwrap(), None);
        assert!(batches.locked().is_empty());
    }
}
