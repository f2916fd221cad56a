//! One partition's share of the work: its users' and resources' state, and the evaluation of
//! one batch of its records (docs/design.md, commit protocol steps 2–3 and the material for 4).
//!
//! A worker owns partition number `p` of every input topic together (the topics are
//! co-partitioned by user key, and the range assignor hands the same numbers of every topic
//! to the same member), so all of a user's actions, commands and inventory answers meet in
//! one `Partition`: the single writer of that user's state.
//!
//! Its users' amount requests (programmatic events) meet there too: before a batch is
//! evaluated, the requests still undecided are handed to the amount caller, all at once
//! ([`crate::amounts`]), and the record step records each outcome and answers it.

use lru::LruCache;
use rustc_hash::{FxHashMap, FxHashSet};
use smol_str::SmolStr;
use std::num::NonZeroUsize;
use std::sync::Arc;

use super::dead_letters;
use super::input::{Input, Inputs};
use super::log::{text_header, Headers, InRecord, OutRecord};
use super::outbox::{self, OutboxEntry};
use super::user_cache::{Slot, UserCache};
use crate::amounts::{AmountCaller, Call, Fallbacks};
use crate::core::catalog::{Catalog, CatalogHistory};
use crate::core::events::{Event, EventBody, Stream};
use crate::core::interned::InternedName;
use crate::core::inventory::{Request, Response};
use crate::core::model::SourceRef;
use crate::core::rules::programmatic::{AmountOutcome, AmountRequest, AmountResponse};
use crate::core::step::{self, AmountCall, FirstCompletion, Outcome, Output, Owner, Position};
use crate::settings::Topics;
use crate::store::{
    BatchWrite, ClaimRecord, FinishedCount, ResourceRecord, StateStore, StoreError, UserKey,
};
use crate::trace_context::TraceContext;

/// A consumed record with what it is and who owns it, worked out once per record: the owner's
/// key is built here and borrowed by the load, the evaluation and the write.
struct DecodedRecord<'r> {
    record: &'r InRecord,
    input: Input,
    owner: Option<Owner>,
}

impl DecodedRecord<'_> {
    fn user(&self) -> Option<&UserKey> {
        match &self.owner {
            Some(Owner::User(key)) => Some(key),
            _ => None,
        }
    }
}

/// How many records ahead the record step asks for a user's state ([`UserCache::prefetch`]):
/// far enough that it arrives while the records in between are evaluated, near enough that
/// it is still in the cache when its own turn comes. Measured (`benches/record_step.rs`, 8
/// alternated rounds): 1 and 2 alike, 4 slower than 2 in each of 4 pairs.
const LOOKAHEAD: usize = 2;

/// A batch's users, found in the cache once, when the batch is loaded: for each decoded
/// record that a user owns, the slot of that user's cached record, and whether the record is
/// the user's last of the batch. That record's step encodes the user's row, while the state
/// it just changed is still in the CPU's caches (encoding every touched user after the batch
/// read each state back from memory).
struct BatchUsers {
    of_record: Vec<Option<RecordUser>>,
}

#[derive(Clone, Copy)]
struct RecordUser {
    slot: Slot,
    last: bool,
}

/// What happened to the records of a batch, for metrics and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub applied: u64,
    /// Inputs dropped as duplicates, each by what identified it ([`duplicate_reason`]).
    pub duplicates: Vec<&'static str>,
    pub redelivered: u64,
    pub ignored: u64,
    /// Dead letters by reason class.
    pub dead_letters: Vec<&'static str>,
    /// Reward types granted.
    pub granted: Vec<String>,
}

/// A processed batch, ready to persist, publish and commit in that order.
#[derive(Debug, Default)]
pub struct Batch {
    pub write: BatchWrite,
    /// The records to produce, each with the consumed record that caused it.
    pub publish: Vec<OutboxEntry>,
    /// `(topic, partition, offset)` of every record, for the commit. The topic's name is
    /// interned: no heap copy or reference count per record.
    pub processed: Vec<(InternedName, i32, i64)>,
    pub stats: Stats,
}

/// The state cache and bookkeeping of one partition number.
pub struct Partition {
    pub id: i32,
    /// Bounded by `pipeline.cache_users` and this partition's share of `pipeline.cache_mb`;
    /// a batch with more users keeps them all until the next batch (see `load`).
    users: UserCache,
    resources: FxHashMap<String, ResourceRecord>,
    /// Per consumed topic-partition, the offset below which everything is committed: the
    /// first offset seen after taking the partition (the group's committed position), then
    /// this owner's own commits. Outbox entries caused below it were published.
    floors: FxHashMap<(InternedName, i32), i64>,
    /// Whose outboxes this partition writes (`group/pN` and `group/pN.2`: see
    /// `pipeline::outbox`).
    outbox_owners: [String; 2],
    /// The outbox the latest batch was made for: the next batch replaces it, unless that
    /// batch is written ahead ([`Partition::write_ahead_outbox`]).
    outbox_slot: usize,
    /// The number of the last batch whose outbox was made (see [`outbox::Stored::seq`]).
    outbox_seq: u64,
    /// Whether the stored outboxes were read since the partition was taken or its cache
    /// reset; until then the next batch reads them and publishes what may not have been
    /// published.
    outbox_loaded: bool,
    /// Ownership epoch from the store, for fenced writes; and the batch counter under it.
    epoch: Option<i64>,
    batch_seq: i64,
    /// The catalog whose challenges' people-finished counters are loaded.
    counters_loaded: Option<Arc<Catalog>>,
    /// Claim outcomes of the batch being evaluated and of the one before it, which may not be
    /// durable yet; older ones are read from the store. A claim id is exactly-once forever.
    claims: RecentClaims,
    /// Decides amount requests (programmatic events' endpoints).
    amounts: Arc<dyn AmountCaller>,
    /// Outcomes the caller decided, by request id, kept across [`Partition::reset`]: a batch
    /// retried after a failed write answers with them instead of calling again. An outcome is a
    /// fact about its request, true whatever the cache holds; the durable copy is in the
    /// request's pending entry once the batch is written.
    decided: LruCache<String, AmountOutcome>,
    /// Where users' rows are serialized before each is copied into a buffer of its size
    /// ([`BatchWrite::push_user_row`]): reused, so it stays in the CPU's caches.
    row_scratch: Vec<u8>,
    /// The watermark marks of the topic-partitions this partition consumed, kept from batch
    /// to batch (see [`InputMarks`]).
    marks: InputMarks,
    /// How long the last batch's growing lists became (see [`ListSizes`]).
    sizes: ListSizes,
}

/// How many history entries and output items and events the last batch made, to size the
/// next batch's lists from the start. A list grown by doubling copies what it holds at each
/// step: a history entry is some 500 bytes, an event 320, and the copies were 3 % of the
/// record step's instructions (callgrind, the record step bench). Batches of a partition
/// are alike, not equal: the room asked for is a quarter more than the last batch used.
#[derive(Clone, Copy, Default)]
struct ListSizes {
    history: usize,
    items: usize,
    events: usize,
}

impl ListSizes {
    /// The room for a list whose last batch's length was `last`.
    fn room(last: usize) -> usize {
        last + last / 4
    }
}

/// How many decided amount outcomes a partition remembers beyond the store (see
/// `Partition::decided`); more than a few batches' worth.
const DECIDED_AMOUNTS: usize = 4096;

/// Claim outcomes by (user, claim id), in two generations: the batch being evaluated and the
/// previous one (in flight while this one is evaluated). Everything older is durable.
#[derive(Default)]
struct RecentClaims {
    current: FxHashMap<(UserKey, String), ClaimRecord>,
    previous: FxHashMap<(UserKey, String), ClaimRecord>,
}

impl RecentClaims {
    fn get(&self, key: &(UserKey, String)) -> Option<&ClaimRecord> {
        self.current.get(key).or_else(|| self.previous.get(key))
    }

    /// A new batch: the previous batch's outcomes are durable now, the last one's may not be.
    fn rotate(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }

    fn clear(&mut self) {
        self.current.clear();
        self.previous.clear();
    }
}

/// The key of a per-partition "users who achieved this challenge" counter.
fn finished_key(tenant: &str, challenge: u32, partition: i32) -> String {
    format!("{tenant}/finished/{challenge}/p{partition}")
}

impl Partition {
    /// Partition `id` of consumer group `group` (which names its stored outbox), caching at
    /// most `cache_users` users (and no memory budget until [`Partition::set_cache_budget`]).
    pub fn new(group: &str, id: i32, cache_users: usize) -> Self {
        Partition {
            id,
            users: UserCache::new(cache_users.max(16), usize::MAX),
            resources: FxHashMap::default(),
            floors: FxHashMap::default(),
            outbox_owners: [format!("{group}/p{id}"), format!("{group}/p{id}.2")],
            outbox_slot: 0,
            outbox_seq: 0,
            outbox_loaded: false,
            epoch: None,
            batch_seq: 0,
            counters_loaded: None,
            claims: RecentClaims::default(),
            amounts: Arc::new(Fallbacks),
            decided: LruCache::new(NonZeroUsize::new(DECIDED_AMOUNTS).expect("non-zero")),
            row_scratch: Vec::new(),
            marks: InputMarks::default(),
            sizes: ListSizes::default(),
        }
    }

    /// Decides amount requests with `amounts` (by default every request gets its event's
    /// fallback, `not_called`).
    pub fn with_amounts(mut self, amounts: Arc<dyn AmountCaller>) -> Self {
        self.amounts = amounts;
        self
    }

    pub fn set_epoch(&mut self, epoch: i64) {
        self.epoch = Some(epoch);
        self.batch_seq = 0;
    }

    pub fn epoch(&self) -> Option<i64> {
        self.epoch
    }

    /// Forgets every cached state: after a failed batch the next attempt starts from what
    /// the store durably holds, which is always consistent with the watermark.
    pub fn reset(&mut self) {
        self.users.clear();
        self.resources.clear();
        self.counters_loaded = None;
        self.outbox_loaded = false;
        self.claims.clear();
    }

    pub fn cached_users(&self) -> usize {
        self.users.len()
    }

    /// The estimated memory of the cached users, in bytes.
    pub fn cached_bytes(&self) -> usize {
        self.users.bytes()
    }

    /// This partition's share of the worker's user-cache budget (`pipeline.cache_mb`), in
    /// bytes; applied at the next batch.
    pub fn set_cache_budget(&mut self, bytes: usize) {
        self.users.set_budget(bytes);
    }

    /// The writes that empty both stored outboxes: on a clean stop, once the last batch is
    /// committed, so the next owner has nothing to consider re-publishing.
    pub fn clear_outboxes(&mut self) -> [BatchWrite; 2] {
        [0, 1].map(|slot| {
            let outbox = Some(self.numbered_outbox(slot, &[]));
            BatchWrite {
                outbox,
                write_timestamp: self.next_timestamp(),
                ..BatchWrite::default()
            }
        })
    }

    /// The next batch's outbox holding `entries`, numbered next, replacing the latest
    /// batch's: written after that batch is committed, as batches are unless written ahead.
    /// (So a worker that writes nothing ahead rewrites one outbox row per partition, and the
    /// embedded store's checkpoint moves one into its database, not two.)
    fn next_outbox(&mut self, entries: &[OutboxEntry]) -> crate::store::OutboxWrite {
        self.numbered_outbox(self.outbox_slot, entries)
    }

    /// The outbox of `slot` holding `entries`, numbered next.
    fn numbered_outbox(
        &mut self,
        slot: usize,
        entries: &[OutboxEntry],
    ) -> crate::store::OutboxWrite {
        self.outbox_seq += 1;
        outbox::write(&self.outbox_owners[slot], self.outbox_seq, entries)
    }

    /// Moves `write`'s outbox (this partition's latest batch's) to the other slot: the batch
    /// is written ahead, while the batch before it, whose outbox it would otherwise replace,
    /// may still be unpublished.
    pub fn write_ahead_outbox(&mut self, write: &mut BatchWrite) {
        self.outbox_slot ^= 1;
        if let Some(outbox) = write.outbox.as_mut() {
            outbox
                .owner
                .clone_from(&self.outbox_owners[self.outbox_slot]);
        }
    }

    fn next_timestamp(&mut self) -> Option<i64> {
        self.epoch.map(|e| {
            self.batch_seq += 1;
            crate::store::write_timestamp(e, self.batch_seq)
        })
    }

    /// Whether a stored outbox entry may not have been published: its cause is at or above
    /// its input partition's committed floor, or this owner has not seen that partition yet.
    fn unpublished(&self, entry: &OutboxEntry) -> bool {
        let cause = &entry.cause;
        self.floors
            .get(&(cause.topic, cause.partition))
            .is_none_or(|&floor| cause.offset >= floor)
    }

    /// After a batch's commit: everything it processed is below the floor now.
    pub fn committed(&mut self, processed: &[(InternedName, i32, i64)]) {
        for (t, p, o) in processed {
            let floor = self.floors.entry((*t, *p)).or_insert(o + 1);
            *floor = (*floor).max(o + 1);
        }
    }

    /// Reads what the batch needs that is not cached: its users, resources and counters, and
    /// (first batch after taking or a reset) the stored outbox, whose entries that may not
    /// have been published are returned with where each record's user is cached.
    async fn load<S: StateStore + ?Sized>(
        &mut self,
        store: &S,
        catalog: &Arc<Catalog>,
        decoded: &[DecodedRecord<'_>],
    ) -> Result<(BatchUsers, Vec<OutboxEntry>), StoreError> {
        // Every user of the batch stays cached until the batch is committed: `process` works
        // on the cached records, so one evicted mid-batch would be evaluated from an empty
        // record, and its write and its events would be lost. So the cache holds at least the
        // batch's users, whatever `cache_users` and the budget say (it shrinks back at the next batch,
        // evicting only users of committed batches), and the batch's cached users are made
        // the most recent before the missing ones are loaded.
        // Sized for a user per record (the most a batch has): grown by rehashing, the index
        // cost 1.3 % of the record step's instructions, sized 0.7 % (callgrind).
        let mut index: FxHashMap<&UserKey, usize> =
            FxHashMap::with_capacity_and_hasher(decoded.len(), Default::default());
        let mut batch_users: Vec<&UserKey> = Vec::with_capacity(decoded.len());
        // Per batch user, its last record; per record, its user's place in `batch_users`.
        let mut last_record: Vec<usize> = Vec::with_capacity(decoded.len());
        let mut user_of: Vec<Option<usize>> = Vec::with_capacity(decoded.len());
        let mut resources: Vec<String> = Vec::new();
        let mut wanted_resources: FxHashSet<String> = FxHashSet::default();
        for (i, d) in decoded.iter().enumerate() {
            if let Some(key) = d.user() {
                let n = *index.entry(key).or_insert_with(|| {
                    batch_users.push(key);
                    last_record.push(i);
                    batch_users.len() - 1
                });
                last_record[n] = i;
                user_of.push(Some(n));
                continue;
            }
            user_of.push(None);
            if let Input::Request(r) = &d.input {
                let key = r.resource();
                if !self.resources.contains_key(&key) && wanted_resources.insert(key.clone()) {
                    resources.push(key);
                }
            }
        }
        drop(index);
        // Cached users of this batch become the most recent *before* the cache shrinks: a
        // user of the previous batch may not be durable yet (the worker evaluates a batch
        // while the previous one is written), and if it were evicted here and reloaded, this
        // batch would start from its stale stored state. Evicting a previous batch's user
        // that this batch does not touch is harmless: its write is already built, and it is
        // next read after that write.
        let promoted: Vec<Option<Slot>> = batch_users
            .iter()
            .map(|key| self.users.promote(key))
            .collect();
        let missing: Vec<UserKey> = batch_users
            .iter()
            .zip(&promoted)
            .filter(|(_, slot)| slot.is_none())
            .map(|(&key, _)| key.clone())
            .collect();
        self.users.shrink(batch_users.len() - missing.len());
        // The people-finished counters of every challenge, loaded once per catalog (a new
        // version may add a challenge, or bring one back whose counter is stored).
        let counted = self
            .counters_loaded
            .as_ref()
            .is_some_and(|loaded| Arc::ptr_eq(loaded, catalog));
        if !counted {
            for tenant in catalog.tenants() {
                for c in &tenant.challenges {
                    let key = finished_key(&tenant.tenant, c.id, self.id);
                    if !self.resources.contains_key(&key) && wanted_resources.insert(key.clone()) {
                        resources.push(key);
                    }
                }
            }
        }
        // Claims name their id: one whose outcome is stored is a retry and pays nothing.
        self.claims.rotate();
        for d in decoded {
            if let Input::Claim(claim) = &d.input {
                let key = (
                    UserKey::new(&claim.tenant, &claim.user_id),
                    claim.claim_id.clone(),
                );
                if self.claims.get(&key).is_none() {
                    if let Some(record) = store.claim(&key.0, &key.1).await? {
                        self.claims.current.insert(key, record);
                    }
                }
            }
        }
        let loaded = if missing.is_empty() {
            Vec::new()
        } else {
            store.load_users(&missing).await?
        };
        // The missing users, in the batch's order, each cached with its stored record (an
        // empty one for a user the store has none of).
        let mut loaded = missing
            .into_iter()
            .zip(loaded.into_iter().chain(std::iter::repeat_with(|| None)));
        let slots: Vec<Slot> = promoted
            .into_iter()
            .map(|slot| match slot {
                Some(slot) => slot,
                None => {
                    let (key, record) = loaded
                        .next()
                        .expect("one missing user per slot not promoted");
                    self.users.put(key, record.unwrap_or_default())
                }
            })
            .collect();
        let users = BatchUsers {
            of_record: user_of
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    n.map(|n| RecordUser {
                        slot: slots[n],
                        last: last_record[n] == i,
                    })
                })
                .collect(),
        };
        if !resources.is_empty() {
            let loaded = store.load_resources(&resources).await?;
            for (key, record) in resources.into_iter().zip(loaded) {
                self.resources.insert(key, record.unwrap_or_default());
            }
        }
        self.counters_loaded = Some(Arc::clone(catalog));
        let mut carried = Vec::new();
        if !self.outbox_loaded {
            carried = self.load_outboxes(store).await?;
            self.outbox_loaded = true;
        }
        Ok((users, carried))
    }

    /// Reads both stored outboxes: returns their entries that may not have been published,
    /// in the order they were produced, and takes the newer one as the latest batch's, with
    /// numbers continuing from it. (The next batch carries these entries, so it may replace
    /// either.)
    async fn load_outboxes<S: StateStore + ?Sized>(
        &mut self,
        store: &S,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut stored = Vec::with_capacity(2);
        let mut seqs = [None; 2];
        for (slot, owner) in self.outbox_owners.iter().enumerate() {
            if let Some(bytes) = store.load_outbox(owner).await? {
                let read = outbox::decode(&bytes)
                    .map_err(|e| StoreError::corrupt(format!("outbox {owner}"), e))?;
                seqs[slot] = Some(read.seq);
                stored.push(read);
            }
        }
        self.outbox_slot = usize::from(seqs[1] > seqs[0]);
        self.outbox_seq = seqs.iter().flatten().copied().max().unwrap_or(0);
        let mut carried = outbox::merge(stored);
        carried.retain(|entry| self.unpublished(entry));
        if !carried.is_empty() {
            tracing::info!(
                partition = self.id,
                records = carried.len(),
                "publishing the stored outboxes again (same event ids)"
            );
        }
        Ok(carried)
    }

    /// Evaluates a batch of this partition's records in offset order. On error nothing is
    /// half-applied that matters: call [`Partition::reset`] and process the same records again.
    pub async fn process<S: StateStore + ?Sized>(
        &mut self,
        store: &S,
        inputs: &Inputs,
        topics: &Topics,
        records: &[InRecord],
    ) -> Result<Batch, StoreError> {
        // Each record is evaluated with the catalog in force at its timestamp; the history
        // must know every version in force at the newest one.
        let newest = records.iter().map(|r| r.timestamp).max();
        let history = match newest {
            Some(newest) => inputs.catalog().covering(newest).await,
            None => inputs.history(),
        };
        // The first records seen of a topic-partition start at the committed position. The
        // lowest of the batch, not the first: a poll that spans an eager revoke-and-reassign
        // can hand over records fetched before it and then again from the committed offset,
        // and a floor too high would drop outbox entries that were never published.
        let mut lowest: FxHashMap<(InternedName, i32), i64> = FxHashMap::default();
        for r in records {
            let low = lowest.entry((r.topic, r.partition)).or_insert(r.offset);
            *low = (*low).min(r.offset);
        }
        for (topic_partition, offset) in lowest {
            self.floors.entry(topic_partition).or_insert(offset);
        }
        let decoded: Vec<DecodedRecord<'_>> = records
            .iter()
            .map(|record| {
                let input = inputs.decode(record, history.at(record.timestamp));
                let owner = input.owner();
                DecodedRecord {
                    record,
                    input,
                    owner,
                }
            })
            .collect();
        let (users, carried) = self.load(store, history.latest(), &decoded).await?;
        let decided = self.decide_amounts(&history, &decoded).await;
        let mut batch = Batch::default();
        batch
            .write
            .history
            .reserve(ListSizes::room(self.sizes.history));
        batch
            .write
            .reserve_user_rows(users.of_record.iter().flatten().filter(|u| u.last).count());
        let mut touched_resources: FxHashSet<String> = FxHashSet::default();
        let mut produced = Produced::sized(self.sizes, decoded.len());
        let output_topics = OutputTopics::from(topics);
        for (i, record_user) in users.of_record.iter().enumerate() {
            // The user of a record a few ahead: its state starts loading while this one is
            // evaluated.
            if let Some(Some(ahead)) = users.of_record.get(i + LOOKAHEAD) {
                self.users.prefetch(ahead.slot);
            }
            let DecodedRecord {
                record,
                ref input,
                ref owner,
            } = decoded[i];
            let topic = record.topic;
            let mark = self.marks.mark(topic, record.partition);
            batch
                .processed
                .push((topic, record.partition, record.offset));
            let source = SourceRef {
                topic,
                partition: record.partition,
                offset: record.offset,
            };
            // A traced record: its span (exporting) and the context what it causes carries.
            let (span, trace) = record_trace(record);
            let _in_span = span.as_ref().map(tracing::Span::enter);
            if let Some(trace) = trace {
                produced.traces.insert(source.clone(), trace);
            }
            let pos = Position {
                source: &source,
                mark: &mark,
                record_time: record.timestamp,
                payload: &record.payload,
            };
            let catalog = history.at(record.timestamp);
            let out = match owner {
                Some(Owner::User(key)) => {
                    let prior = match input {
                        Input::Claim(claim) => {
                            self.claims.get(&(key.clone(), claim.claim_id.clone()))
                        }
                        _ => None,
                    };
                    let RecordUser { slot, last } =
                        record_user.expect("a batch's users are cached when it is loaded");
                    let user = self.users.record_mut(slot);
                    if last {
                        // Its row is written after this action: start loading what it copies.
                        user.state.prefetch_kept_parts();
                    }
                    let out = match input {
                        Input::AmountCall(request) => {
                            step::amount(user, request, decided.get(&request.request_id), &pos)
                        }
                        _ => step::user(user, input, catalog, &pos, prior),
                    };
                    // Step 3 material: the user's row, from the cached state, at its last
                    // record of the batch.
                    if last {
                        let row =
                            batch
                                .write
                                .push_user_row(key.clone(), user, &mut self.row_scratch);
                        self.users.measured(slot, row);
                    }
                    out
                }
                Some(Owner::Resource(key)) => {
                    let resource = self.resources.entry(key.clone()).or_default();
                    touched_resources.insert(key.clone());
                    step::resource(resource, input, catalog, &pos)
                }
                None => step::unowned(input, &record.payload, catalog, &pos),
            };
            let user = match owner {
                Some(Owner::User(key)) => Some(key),
                _ => None,
            };
            self.keep(
                &mut batch,
                &mut produced,
                (record, input),
                user,
                &source,
                out,
                &output_topics,
            );
        }
        // Step 3 material: every touched or counted resource; the outbox.
        let mut resource_keys = touched_resources;
        resource_keys.extend(
            batch
                .write
                .finished
                .iter()
                .map(|f| finished_key(&f.tenant, f.challenge_id, self.id)),
        );
        for key in resource_keys {
            if let Some(r) = self.resources.get(&key) {
                batch.write.push_resource_row(key, r);
            }
        }
        batch.write.write_timestamp = self.next_timestamp();
        let carried_len = carried.len();
        self.sizes = ListSizes {
            history: batch.write.history.len(),
            items: produced.items.len(),
            events: produced.events.len(),
        };
        let entries = produced.into_entries(carried, &output_topics);
        // Serialized here, while the previous batch is being written, not in the write. A
        // history entry's event is the one this batch publishes: its row reuses those bytes
        // (not a carried entry's, which an earlier version may have serialized differently).
        // Sized at once: collected from a `filter_map`, the map grew by rehashing (0.5 % of
        // the record step).
        let mut published: FxHashMap<&str, &[u8]> =
            FxHashMap::with_capacity_and_hasher(entries.len() - carried_len, Default::default());
        published.extend(
            entries[carried_len..]
                .iter()
                .filter_map(|e| Some((outbox::event_id(&e.record)?, e.record.payload.as_slice()))),
        );
        batch.write.encode_with(|id| published.get(id).copied())?;
        drop(published);
        batch.write.outbox = Some(self.next_outbox(&entries));
        // Step 4 material: dead letters (already in `publish`), then the outbox.
        batch.publish.extend(entries);
        Ok(batch)
    }

    /// The amount stage's IO, before the batch is evaluated: the batch's amount requests that
    /// their users' records say are open and undecided (not redeliveries) are decided by the
    /// caller, concurrently, once per request id; outcomes decided before in this ownership
    /// are reused. The users are loaded, so their records are in the cache.
    async fn decide_amounts(
        &mut self,
        history: &CatalogHistory,
        decoded: &[DecodedRecord<'_>],
    ) -> FxHashMap<String, AmountOutcome> {
        let mut decided = FxHashMap::default();
        let mut calls: Vec<Call> = Vec::new();
        let mut seen: FxHashSet<&str> = FxHashSet::default();
        for DecodedRecord { record, input, .. } in decoded {
            let Input::AmountCall(request) = input else {
                continue;
            };
            if !self.needs_call(request, record) || !seen.insert(&request.request_id) {
                continue;
            }
            if let Some(outcome) = self.decided.get(&request.request_id) {
                decided.insert(request.request_id.clone(), outcome.clone());
                continue;
            }
            let def = history
                .at(record.timestamp)
                .tenant(&request.tenant)
                .and_then(|t| t.event(&request.event))
                .and_then(|e| e.programmatic.clone());
            calls.push(Call {
                request: request.clone(),
                def,
            });
        }
        if calls.is_empty() {
            return decided;
        }
        let ids: Vec<String> = calls.iter().map(|c| c.request.request_id.clone()).collect();
        let outcomes = self.amounts.decide(calls).await;
        for (id, outcome) in ids.into_iter().zip(outcomes) {
            self.decided.put(id.clone(), outcome.clone());
            decided.insert(id, outcome);
        }
        decided
    }

    /// Whether an amount request consumed as `record` needs the caller: its user's pending
    /// entry is open and undecided, and the record is not a redelivery.
    fn needs_call(&self, request: &AmountRequest, record: &InRecord) -> bool {
        let key = UserKey::new(&request.tenant, &request.user_id);
        let source = SourceRef::new(record.topic, record.partition, record.offset);
        self.users.peek(&key).is_some_and(|user| {
            !step::already_applied(&user.applied, &source)
                && step::amount_call(user, request) == AmountCall::Call
        })
    }

    /// Keeps what the record step produced for one input: its stats, its read models (history,
    /// claim outcomes, the partition's people-finished counters) and the records to produce.
    #[allow(clippy::too_many_arguments)]
    fn keep(
        &mut self,
        batch: &mut Batch,
        produced: &mut Produced,
        (record, input): (&InRecord, &Input),
        user: Option<&UserKey>,
        source: &SourceRef,
        out: Output,
        topics: &OutputTopics,
    ) {
        match &out.outcome {
            Outcome::Applied => batch.stats.applied += 1,
            Outcome::Duplicate => batch.stats.duplicates.push(duplicate_reason(input)),
            Outcome::Redelivered => batch.stats.redelivered += 1,
            Outcome::Ignored(_) => batch.stats.ignored += 1,
            Outcome::DeadLettered => {
                // A record no state owns is dead-lettered whatever any state says: published
                // with the batch, not kept in the outbox (a redelivery makes the same one,
                // with the same id). A user's refused action (a disabled user) moved the
                // user's watermark: its dead letter goes in the outbox with the user's state.
                let rejection = match input {
                    Input::DeadLetter(rejection) => Some(rejection),
                    _ => out.rejection.as_ref(),
                };
                if let Some(rejection) = rejection {
                    batch.stats.dead_letters.push(rejection.kind.as_str());
                    for event in &out.events {
                        let mut letter =
                            dead_letters::record(event, rejection, record, &topics.dead_letter);
                        if let Some(trace) = produced.traces.get(source) {
                            trace.set_on(&mut letter.headers);
                        }
                        if user.is_some() {
                            produced.push(source.clone(), Produce::Record(Box::new(letter)));
                        } else {
                            batch.publish.push(OutboxEntry {
                                cause: source.clone(),
                                record: letter,
                            });
                        }
                    }
                }
                return;
            }
        }
        batch
            .stats
            .granted
            .extend(out.granted().map(str::to_string));
        if let Some(key) = user {
            batch
                .write
                .history
                .extend(out.history.into_iter().map(|entry| (key.clone(), entry)));
            for claim in out.claims {
                self.claims
                    .current
                    .insert((key.clone(), claim.claim_id.clone()), claim.clone());
                batch.write.claims.push((key.clone(), claim));
            }
            produced.push_events(source, out.events);
        }
        for done in out.first_completions {
            self.count_finished(batch, &done);
        }
        for request in out.requests {
            produced.push(source.clone(), Produce::Request(Box::new(request)));
        }
        for response in out.responses {
            produced.push(source.clone(), Produce::Response(Box::new(response)));
        }
        for request in out.amount_requests {
            produced.push(source.clone(), Produce::AmountRequest(Box::new(request)));
        }
        for response in out.amount_responses {
            produced.push(source.clone(), Produce::AmountResponse(Box::new(response)));
        }
    }

    /// One more user who achieved a challenge, in this partition's counter of it.
    fn count_finished(&mut self, batch: &mut Batch, done: &FirstCompletion) {
        let counter = self
            .resources
            .entry(finished_key(&done.tenant, done.challenge_id, self.id))
            .or_default();
        counter.state.winners += 1;
        let count = counter.state.winners;
        batch
            .write
            .finished
            .retain(|f| !(f.tenant == done.tenant && f.challenge_id == done.challenge_id));
        batch.write.finished.push(FinishedCount {
            tenant: done.tenant.clone(),
            challenge_id: done.challenge_id,
            partition: format!("p{}", self.id),
            count,
        });
    }
}

/// What a user or resource evaluation produced, before it is encoded as a record.
///
/// The rare kinds are boxed, so that an item is 48 bytes, not 192: a batch's list of items is
/// moved and read once per output, and nearly every output is an event (a tenth of the main
/// thread's copying was the pushing of these items; perf, `scripts/bench`).
enum Produce {
    /// An event, by its index in [`Produced::events`].
    Event(usize),
    /// A record made whole already (a user's refused action's dead letter).
    Record(Box<OutRecord>),
    Request(Box<Request>),
    Response(Box<Response>),
    AmountRequest(Box<AmountRequest>),
    AmountResponse(Box<AmountResponse>),
}

// The item size the boxing is for, checked when compiling: a variant added unboxed fails here.
const _: () = assert!(std::mem::size_of::<Option<(SourceRef, Produce)>>() == 48);

/// The topics a batch's records go to, interned once per batch from the settings: a record
/// takes its topic as a copy of an [`InternedName`], not as a heap copy of the name.
struct OutputTopics {
    progress: InternedName,
    rewards: InternedName,
    dead_letter: InternedName,
    inventory_requests: InternedName,
    inventory_responses: InternedName,
    amount_requests: InternedName,
    amount_responses: InternedName,
}

impl From<&Topics> for OutputTopics {
    fn from(topics: &Topics) -> Self {
        OutputTopics {
            progress: topics.progress.as_str().into(),
            rewards: topics.rewards.as_str().into(),
            dead_letter: topics.dead_letter.as_str().into(),
            inventory_requests: topics.inventory_requests.as_str().into(),
            inventory_responses: topics.inventory_responses.as_str().into(),
            amount_requests: topics.amount_requests.as_str().into(),
            amount_responses: topics.amount_responses.as_str().into(),
        }
    }
}

impl Produce {
    /// The record to publish; an event is taken from `events` (its id moved, not copied).
    fn into_record(self, events: &mut [Event], topics: &OutputTopics) -> OutRecord {
        match self {
            Produce::Record(record) => *record,
            Produce::Event(index) => {
                let event = &mut events[index];
                let topic = match event.stream() {
                    Stream::Progress => &topics.progress,
                    Stream::Rewards => &topics.rewards,
                    Stream::DeadLetter => &topics.dead_letter,
                };
                // Written before its id is taken for the header.
                let payload = event_json(event);
                OutRecord {
                    topic: *topic,
                    payload,
                    headers: vec![
                        text_header("questline-event-id", &event.event_id),
                        text_header("questline-event-type", event.body.kind()),
                    ],
                    key: event.user_id.clone(),
                }
            }
            Produce::Request(request) => OutRecord {
                topic: topics.inventory_requests,
                key: request.resource().into(),
                payload: serde_json::to_vec(&request).expect("requests serialize"),
                headers: Headers::new(),
            },
            Produce::Response(response) => OutRecord {
                topic: topics.inventory_responses,
                payload: serde_json::to_vec(&response).expect("responses serialize"),
                key: response.user_id.into(),
                headers: Headers::new(),
            },
            Produce::AmountRequest(request) => OutRecord {
                topic: topics.amount_requests,
                payload: serde_json::to_vec(&request).expect("amount requests serialize"),
                key: request.user_id.into(),
                headers: Headers::new(),
            },
            Produce::AmountResponse(response) => OutRecord {
                topic: topics.amount_responses,
                payload: serde_json::to_vec(&response).expect("amount responses serialize"),
                key: response.user_id.into(),
                headers: Headers::new(),
            },
        }
    }
}

/// The mark of each topic-partition a partition consumes (`topic:partition`), cloned into the
/// watermarks and history chains of the users it touches. A mark up to 23 bytes is held
/// inline and cloned as a copy; a longer one is allocated once and shared, where owned copies
/// were allocations per record and per user, each a cold line when next compared or written.
/// Kept from batch to batch, so a long mark stays one allocation in the CPU's caches. A
/// partition reads a handful of topic-partitions, and interned topic names compare by
/// address: a scan beats hashing.
#[derive(Default)]
struct InputMarks {
    marks: Vec<(InternedName, i32, SmolStr)>,
}

impl InputMarks {
    /// More than any configuration reads; past it the marks are made again from empty.
    const MAX: usize = 256;

    fn mark(&mut self, topic: InternedName, partition: i32) -> SmolStr {
        if let Some((_, _, mark)) = self
            .marks
            .iter()
            .find(|(t, p, _)| *p == partition && *t == topic)
        {
            return mark.clone();
        }
        if self.marks.len() >= Self::MAX {
            self.marks.clear();
        }
        let made = step::input_mark(&SourceRef {
            topic,
            partition,
            offset: 0,
        });
        self.marks.push((topic, partition, made.clone()));
        made
    }
}

/// Whose progress a `progress.updated` event reports: its tenant, user, challenge, group and
/// trigger. The names are the event's own `SmolStr`s: no heap copy per event.
type ProgressKey = (SmolStr, SmolStr, u32, u32, u32);

/// The batch's output in processing order, with progress events coalesced: only the last
/// state per user, challenge, group and trigger is kept, so output volume does not double
/// the input. Encoded only at the end, so coalesced-away events cost no serialization.
///
/// Events are kept apart, in the order they came, and an item names its event by index: an
/// event is some 320 bytes, and as an item it was copied at each step from the evaluator to
/// its record (pushed, taken, flattened, matched: six copies an event, a tenth of the record
/// step's instructions with the other moves of large values), where now the events of an
/// input are appended at once and read in place when encoded. Coalesced-away events stay in
/// the list until the batch ends (a batch's worth, at most its records times the events an
/// input makes).
#[derive(Default)]
struct Produced {
    items: Vec<Option<(SourceRef, Produce)>>,
    events: Vec<Event>,
    last_progress: FxHashMap<ProgressKey, usize>,
    /// The trace context each traced input's records carry (`traceparent`, `tracestate`).
    traces: FxHashMap<SourceRef, TraceContext>,
}

impl Produced {
    /// Room for the output of `records` inputs: one item and one event per input (what the
    /// end-to-end benchmark makes: 1.0–1.4), or the room the last batch's output asks for if
    /// that is more, so the lists do not grow by doubling as the batch's events come.
    fn sized(last: ListSizes, records: usize) -> Self {
        Produced {
            items: Vec::with_capacity(ListSizes::room(last.items).max(records)),
            events: Vec::with_capacity(ListSizes::room(last.events).max(records)),
            // A progress key per input at most, nearly always (one `progress.updated` each):
            // grown by rehashing, the map cost 1.3 % of the record step's instructions, sized
            // 0.5 % (callgrind).
            last_progress: FxHashMap::with_capacity_and_hasher(records, Default::default()),
            ..Produced::default()
        }
    }

    fn push(&mut self, cause: SourceRef, what: Produce) {
        self.items.push(Some((cause, what)));
    }

    /// An input's events, appended to the batch's as they are, each an item in order. A
    /// `progress.updated` supersedes the batch's earlier one of the same user, challenge,
    /// group and trigger.
    fn push_events(&mut self, cause: &SourceRef, mut events: Vec<Event>) {
        let first = self.events.len();
        self.events.append(&mut events);
        for index in first..self.events.len() {
            let event = &self.events[index];
            if let EventBody::ProgressUpdated {
                challenge_id,
                group_id,
                trigger_id,
                ..
            } = &event.body
            {
                let key = (
                    event.tenant.clone(),
                    event.user_id.clone(),
                    *challenge_id,
                    *group_id,
                    *trigger_id,
                );
                if let Some(earlier) = self.last_progress.insert(key, self.items.len()) {
                    self.items[earlier] = None;
                }
            }
            self.push(cause.clone(), Produce::Event(index));
        }
    }

    /// The outbox: entries carried from the stored outbox first (their causes come first),
    /// then this batch's, minus any the carried ones already hold (a batch re-evaluated after
    /// an interrupted write produces the same ids again).
    fn into_entries(self, carried: Vec<OutboxEntry>, topics: &OutputTopics) -> Vec<OutboxEntry> {
        let carried_ids: FxHashSet<String> = carried
            .iter()
            .filter_map(|e| outbox::event_id(&e.record).map(str::to_string))
            .collect();
        let mut entries = carried;
        entries.reserve(self.items.len());
        let mut events = self.events;
        for (cause, what) in self.items.into_iter().flatten() {
            let mut record = what.into_record(&mut events, topics);
            // Most traffic is untraced: no lookup (and no hashing of the cause) then.
            let trace = (!self.traces.is_empty())
                .then(|| self.traces.get(&cause))
                .flatten();
            if let Some(trace) = trace {
                trace.set_on(&mut record.headers);
            }
            // Most batches carry nothing: no header to read then.
            if !carried_ids.is_empty()
                && outbox::event_id(&record).is_some_and(|id| carried_ids.contains(id))
            {
                continue;
            }
            entries.push(OutboxEntry { cause, record });
        }
        entries
    }
}

/// An event as the JSON that is published: written into a buffer sized for a typical event
/// (the benchmark's average 356–363 bytes), not serde_json's 128 bytes grown twice.
fn event_json(event: &Event) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(512);
    crate::core::event_json::write(event, &mut bytes);
    bytes
}

/// The `record` span of a consumed record that carries a valid `traceparent`, when spans are
/// exported (a child of that parent), and the trace context the records it causes carry: the
/// span's, or the record's own unchanged when spans are not exported. Untraced records get
/// neither: a span per record of all traffic would cost more than the batch spans tell.
fn record_trace(record: &InRecord) -> (Option<tracing::Span>, Option<TraceContext>) {
    let Some(incoming) = TraceContext::from_headers(&record.headers) else {
        return (None, None);
    };
    if !crate::otlp::exporting() {
        return (None, Some(incoming));
    }
    let span = tracing::info_span!(
        "record",
        topic = %record.topic,
        partition = record.partition,
        offset = record.offset,
    );
    let trace = crate::otlp::continue_trace(&span, Some(&incoming));
    (Some(span), trace)
}

/// The metric label of a duplicate: the id that made the record step drop it. A claim is
/// a duplicate by its claim id (answered before, or waiting for the inventory stage), an
/// action by its action id (among the user's recent ones). Redeliveries caught by the offset
/// watermark are counted apart, as `redelivered`.
pub fn duplicate_reason(input: &Input) -> &'static str {
    match input {
        Input::Claim(_) => "claim_id",
        Input::Grant(_) => "grant_id",
        _ => "action_id",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records of one topic-partition share one mark (a mark too long to be held inline,
    /// one allocation); another topic or partition gets its own.
    #[test]
    fn a_partition_makes_each_mark_once() {
        let long = "upstream.loyalty.actions-from-the-point-of-sale";
        let mut marks = InputMarks::default();
        let first = InternedName::new(long);
        let again = InternedName::new(long);
        let other = InternedName::new("kickapps");
        let mark = marks.mark(first, 3);
        assert!(mark.is_heap_allocated());
        assert_eq!(mark, format!("{long}:3"));
        assert_eq!(
            mark.as_ptr(),
            marks.mark(again, 3).as_ptr(),
            "the same allocation"
        );
        assert_eq!(marks.mark(first, 4), format!("{long}:4"));
        assert_eq!(marks.mark(other, 3), "kickapps:3");
        assert_eq!(marks.marks.len(), 3);
    }

    /// Past the bound the marks start again from empty, and are still right.
    #[test]
    fn marks_past_the_bound_are_made_again() {
        let mut marks = InputMarks::default();
        for i in 0..InputMarks::MAX + 10 {
            let topic = InternedName::new(&format!("t{i}"));
            assert_eq!(marks.mark(topic, 1), format!("t{i}:1"));
        }
        assert!(marks.marks.len() <= InputMarks::MAX);
        assert_eq!(marks.mark(InternedName::new("t0"), 1), "t0:1");
    }

    fn entry(topic: &str, offset: i64) -> OutboxEntry {
        OutboxEntry {
            cause: SourceRef::new(topic, 0, offset),
            record: OutRecord {
                topic: "out".into(),
                key: "u".into(),
                payload: Vec::new(),
                headers: vec![text_header("questline-event-id", format!("e{offset}"))],
            },
        }
    }

    #[test]
    fn stored_entries_below_the_committed_floor_count_as_published() {
        let mut p = Partition::new("g", 0, 16);
        p.committed(&[("t".into(), 0, 4)]); // offsets 0..=4 committed: floor 5
        assert!(!p.unpublished(&entry("t", 3)));
        assert!(!p.unpublished(&entry("t", 4)));
        assert!(p.unpublished(&entry("t", 5)));
        assert!(p.unpublished(&entry("t", 7)));
        // Caused on a partition this owner knows nothing of yet: kept (re-published, same id).
        assert!(p.unpublished(&entry("other", 1)));
    }

    #[test]
    fn progress_coalesces_to_the_last_state_and_carried_ids_are_not_repeated() {
        let topics = Topics::default();
        let progress = |offset: i64, id: &str| Event {
            event_id: id.into(),
            body: EventBody::ProgressUpdated {
                challenge_id: 1,
                group_id: 1,
                trigger_id: 1,
                trigger_frequency: 1.into(),
                accumulated: offset.into(),
                action_left: 0.into(),
                progress: 0.into(),
            },
            tenant: "default".into(),
            user_id: "u".into(),
            occurred_at: chrono::Utc::now(),
            source: SourceRef::new("t", 0, offset),
            catalog_version: 0,
        };
        let mut produced = Produced::default();
        produced.push_events(&SourceRef::new("t", 0, 1), vec![progress(1, "p1")]);
        produced.push_events(&SourceRef::new("t", 0, 2), vec![progress(2, "p2")]);
        produced.push_events(&SourceRef::new("t", 0, 3), vec![progress(3, "e9")]);
        let entries = produced.into_entries(vec![entry("t", 9)], &OutputTopics::from(&topics));
        let ids: Vec<_> = entries
            .iter()
            .map(|e| outbox::event_id(&e.record).unwrap())
            .collect();
        // p1 and p2 coalesced into the last state; its id equals a carried one, so only the
        // carried copy is kept.
        assert_eq!(ids, ["e9"]);
    }

    /// An input's events keep their order among the batch's items, a later progress of the
    /// same user, challenge, group and trigger supersedes an earlier one (which leaves its
    /// place), and each record carries its own event: the JSON with the id, and the id in
    /// its header.
    #[test]
    fn events_are_published_in_order_each_with_its_own_json_and_id() {
        let topics = Topics::default();
        let event = |id: &str, trigger_id: u32, body: Option<EventBody>| Event {
            event_id: id.into(),
            body: body.unwrap_or(EventBody::ProgressUpdated {
                challenge_id: 1,
                group_id: 1,
                trigger_id,
                trigger_frequency: 1.into(),
                accumulated: 1.into(),
                action_left: 0.into(),
                progress: 0.into(),
            }),
            tenant: "default".into(),
            user_id: "u".into(),
            occurred_at: chrono::Utc::now(),
            source: SourceRef::new("t", 0, 1),
            catalog_version: 0,
        };
        let milestone = |id: &str| {
            let body = EventBody::MilestoneAchieved {
                challenge_id: 1,
                milestone_id: "m".into(),
                prizes: Vec::new(),
            };
            event(id, 0, Some(body))
        };
        let mut produced = Produced::default();
        produced.push_events(
            &SourceRef::new("t", 0, 1),
            vec![event("a1", 1, None), event("a3", 3, None), milestone("am")],
        );
        produced.push(
            SourceRef::new("t", 0, 2),
            Produce::Record(Box::new(OutRecord {
                topic: "out".into(),
                key: "u".into(),
                payload: b"{}".to_vec(),
                headers: vec![text_header("questline-event-id", "r")],
            })),
        );
        produced.push_events(&SourceRef::new("t", 0, 3), vec![event("b1", 1, None)]);
        let expected: Vec<(String, Vec<u8>)> = produced
            .events
            .iter()
            .filter(|e| e.event_id != "a1")
            .map(|e| (e.event_id.to_string(), serde_json::to_vec(e).unwrap()))
            .collect();
        let entries = produced.into_entries(Vec::new(), &OutputTopics::from(&topics));
        let ids: Vec<_> = entries
            .iter()
            .map(|e| outbox::event_id(&e.record).unwrap())
            .collect();
        assert_eq!(
            ids,
            ["a3", "am", "r", "b1"],
            "a1 gave way to b1, in b1's place"
        );
        let offsets: Vec<_> = entries.iter().map(|e| e.cause.offset).collect();
        assert_eq!(offsets, [1, 1, 2, 3]);
        for (id, json) in expected {
            let entry = entries
                .iter()
                .find(|e| outbox::event_id(&e.record) == Some(id.as_str()))
                .unwrap();
            assert_eq!(
                entry.record.payload, json,
                "{id}'s record holds its own JSON"
            );
        }
        assert_eq!(entries[1].record.topic.as_str(), topics.rewards);
        assert_eq!(entries[0].record.topic.as_str(), topics.progress);
    }

    /// A batch's lists start with a quarter more room than the last batch's used, and never
    /// less than one item and one event per input.
    #[test]
    fn a_batch_is_sized_from_the_last_one() {
        let last = ListSizes {
            history: 0,
            items: 800,
            events: 40,
        };
        let produced = Produced::sized(last, 500);
        assert!(produced.items.capacity() >= 1000);
        assert!(produced.events.capacity() >= 500);
        assert_eq!(ListSizes::room(0), 0);
        assert_eq!(ListSizes::room(1000), 1250);
    }

    #[test]
    fn the_records_of_a_traced_input_carry_its_trace_context_and_no_other_does() {
        use crate::trace_context::{TraceParent, TRACEPARENT};
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let topics = Topics::default();
        let mut produced = Produced::default();
        let traced = SourceRef::new("t", 0, 1);
        produced.traces.insert(
            traced.clone(),
            TraceContext {
                parent: TraceParent::parse(tp).unwrap(),
                state: None,
            },
        );
        let request = |id: &str| {
            Produce::Record(Box::new(OutRecord {
                topic: "out".into(),
                key: "u".into(),
                payload: b"{}".to_vec(),
                headers: vec![text_header("questline-event-id", id)],
            }))
        };
        produced.push(traced, request("a"));
        produced.push(SourceRef::new("t", 0, 2), request("b"));
        let entries = produced.into_entries(Vec::new(), &OutputTopics::from(&topics));
        assert_eq!(entries[0].record.header(TRACEPARENT), Some(tp));
        assert_eq!(entries[0].record.payload, b"{}", "the payload is untouched");
        assert_eq!(entries[1].record.header(TRACEPARENT), None);
    }
}
