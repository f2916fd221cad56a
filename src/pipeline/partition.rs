//! One partition's share of the work: its users' and resources' state, and the evaluation of
//! one batch of its records (DESIGN §2 steps 2–3 and the material for 4).
//!
//! A worker owns partition number `p` of every input topic together (the topics are
//! co-partitioned by user key, and the range assignor hands the same numbers of every topic
//! to the same member), so all of a user's actions, commands and inventory answers meet in
//! one `Partition`: the single writer of that user's state.

use lru::LruCache;
use rustc_hash::{FxHashMap, FxHashSet};
use std::num::NonZeroUsize;
use std::sync::Arc;

use super::input::{Input, Inputs};
use super::log::{InRecord, OutRecord};
use crate::core::catalog::Catalog;
use crate::core::decode::{self, Rejection};
use crate::core::evaluator::{self, Context, UserInput};
use crate::core::events::{Event, EventBody, Stream};
use crate::core::ids;
use crate::core::inventory;
use crate::core::model::SourceRef;
use crate::settings::Topics;
use crate::store::{
    BatchWrite, ClaimRecord, FinishedCount, HistoryEntry, ResourceRecord, StateStore, StoreError,
    UserKey, UserRecord,
};

/// What happened to the records of a batch, for metrics and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub applied: u64,
    pub duplicates: u64,
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
    pub publish: Vec<OutRecord>,
    /// `(topic, partition, offset)` of every record, for the commit.
    pub processed: Vec<(String, i32, i64)>,
    pub stats: Stats,
    touched_users: Vec<UserKey>,
    touched_resources: Vec<String>,
}

/// The state cache and bookkeeping of one partition number.
pub struct Partition {
    pub id: i32,
    users: LruCache<UserKey, UserRecord>,
    /// The configured cache size; a batch with more users grows the cache to hold them all
    /// until the next batch (see `load`).
    cache_users: usize,
    resources: FxHashMap<String, ResourceRecord>,
    /// Per consumed topic-partition, the offset below which everything is committed: the
    /// first offset seen after taking the partition (the group's committed position), then
    /// this owner's own commits. Outbox events caused below it were published.
    floors: FxHashMap<(String, i32), i64>,
    /// Published resource outboxes whose clearing is written with the next batch (inventory
    /// traffic is small, so resources keep the simple explicit clear).
    resources_to_clear: FxHashSet<String>,
    /// Ownership epoch from the store, for fenced writes; and the batch counter under it.
    epoch: Option<i64>,
    batch_seq: i64,
    counters_loaded: bool,
}

/// The key of a per-partition "users who achieved this challenge" counter.
fn finished_key(tenant: &str, challenge: u32, partition: i32) -> String {
    format!("{tenant}/finished/{challenge}/p{partition}")
}

impl Partition {
    pub fn new(id: i32, cache_users: usize) -> Self {
        let cache_users = cache_users.max(16);
        Partition {
            id,
            users: LruCache::new(NonZeroUsize::new(cache_users).expect("non-zero")),
            cache_users,
            resources: FxHashMap::default(),
            floors: FxHashMap::default(),
            resources_to_clear: FxHashSet::default(),
            epoch: None,
            batch_seq: 0,
            counters_loaded: false,
        }
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
        self.resources_to_clear.clear();
        self.counters_loaded = false;
    }

    pub fn cached_users(&self) -> usize {
        self.users.len()
    }

    /// Whether a pending outbox clear must still be written before the cache is dropped.
    pub fn has_pending_clears(&self) -> bool {
        !self.resources_to_clear.is_empty()
    }

    /// A write of just the pending clears (on revoke and shutdown).
    pub fn flush_clears(&mut self) -> BatchWrite {
        let mut write = BatchWrite::default();
        for key in self.resources_to_clear.drain() {
            if let Some(r) = self.resources.get(&key) {
                write.resources.push((key, r.clone()));
            }
        }
        write.write_timestamp = self.next_timestamp();
        write
    }

    fn next_timestamp(&mut self) -> Option<i64> {
        self.epoch.map(|e| {
            self.batch_seq += 1;
            crate::store::write_timestamp(e, self.batch_seq)
        })
    }

    /// Removes outbox events whose cause is below its partition's committed floor: they were
    /// published before the offsets were committed. What remains is re-published (same ids).
    fn drop_published(&self, record: &mut UserRecord) {
        if record.outbox_causes.len() != record.outbox.len() {
            record
                .outbox_causes
                .resize(record.outbox.len(), SourceRef::new("", -1, -1));
        }
        let floors = &self.floors;
        let published = |cause: &SourceRef| {
            floors
                .get(&(cause.topic.clone(), cause.partition))
                .is_some_and(|&floor| cause.offset < floor)
        };
        let (outbox, causes): (Vec<Event>, Vec<SourceRef>) = std::mem::take(&mut record.outbox)
            .into_iter()
            .zip(std::mem::take(&mut record.outbox_causes))
            .filter(|(_, cause)| !published(cause))
            .unzip();
        record.outbox = outbox;
        record.outbox_causes = causes;
        record
            .outbox_requests
            .retain(|r| match cause_of_request(&r.request_id) {
                Some((topic, partition, offset)) => {
                    !published(&SourceRef::new(topic, partition, offset))
                }
                None => true,
            });
    }

    /// After a commit: everything processed is below the floor now.
    pub fn committed(&mut self, processed: &[(String, i32, i64)]) {
        for (t, p, o) in processed {
            let floor = self.floors.entry((t.clone(), *p)).or_insert(o + 1);
            *floor = (*floor).max(o + 1);
        }
    }

    async fn load<S: StateStore + ?Sized>(
        &mut self,
        store: &S,
        catalog: &Catalog,
        decoded: &[(&InRecord, Input)],
    ) -> Result<(), StoreError> {
        // Every user of the batch stays cached until the batch is committed: `process` works
        // on the cached records, so one evicted mid-batch would be evaluated from an empty
        // record, and its write and its events would be lost. So the cache holds at least the
        // batch's users, whatever `cache_users` says (it shrinks back at the next batch,
        // evicting only users of committed batches), and the batch's cached users are made
        // the most recent before the missing ones are loaded.
        let mut needed: FxHashSet<UserKey> = FxHashSet::default();
        let mut batch_users: Vec<UserKey> = Vec::new();
        let mut resources: Vec<String> = Vec::new();
        let mut wanted_resources: FxHashSet<String> = FxHashSet::default();
        for (_, input) in decoded {
            if let Some(key) = input.user() {
                if needed.insert(key.clone()) {
                    batch_users.push(key);
                }
            } else if let Input::Request(r) = input {
                let key = r.resource();
                if !self.resources.contains_key(&key) && wanted_resources.insert(key.clone()) {
                    resources.push(key);
                }
            }
        }
        let capacity = batch_users.len().max(self.cache_users);
        if self.users.cap().get() != capacity {
            self.users
                .resize(NonZeroUsize::new(capacity).expect("at least 16"));
        }
        let users: Vec<UserKey> = batch_users
            .into_iter()
            .filter(|key| self.users.get(key).is_none())
            .collect();
        if !self.counters_loaded {
            for tenant in catalog.tenants() {
                for c in &tenant.challenges {
                    resources.push(finished_key(&tenant.tenant, c.id, self.id));
                }
            }
        }
        if !users.is_empty() {
            let loaded = store.load_users(&users).await?;
            for (key, record) in users.into_iter().zip(loaded) {
                let mut record = record.unwrap_or_default();
                self.drop_published(&mut record);
                self.users.put(key, record);
            }
        }
        if !resources.is_empty() {
            let loaded = store.load_resources(&resources).await?;
            for (key, record) in resources.into_iter().zip(loaded) {
                self.resources.insert(key, record.unwrap_or_default());
            }
        }
        self.counters_loaded = true;
        Ok(())
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
        let catalog = Arc::clone(inputs.catalog());
        // The first records seen of a topic-partition start at the committed position. The
        // lowest of the batch, not the first: a poll that spans an eager revoke-and-reassign
        // can hand over records fetched before it and then again from the committed offset,
        // and a floor too high would drop outbox events that were never published.
        let mut lowest: FxHashMap<(&str, i32), i64> = FxHashMap::default();
        for r in records {
            let low = lowest.entry((&r.topic, r.partition)).or_insert(r.offset);
            *low = (*low).min(r.offset);
        }
        for ((topic, partition), offset) in lowest {
            self.floors
                .entry((topic.to_string(), partition))
                .or_insert(offset);
        }
        let decoded: Vec<(&InRecord, Input)> =
            records.iter().map(|r| (r, inputs.decode(r))).collect();
        self.load(store, &catalog, &decoded).await?;
        let mut batch = Batch::default();
        let mut touched_users: FxHashSet<UserKey> = FxHashSet::default();
        let mut touched_resources: FxHashSet<String> = FxHashSet::default();
        // Where this batch's events start in each outbox (progress coalesces only among them).
        let mut outbox_start: FxHashMap<UserKey, usize> = FxHashMap::default();
        for (record, input) in decoded {
            batch
                .processed
                .push((record.topic.clone(), record.partition, record.offset));
            let source = SourceRef::new(&record.topic, record.partition, record.offset);
            let mark = format!("{}:{}", record.topic, record.partition);
            match input {
                Input::DeadLetter(rejection) => {
                    batch.stats.dead_letters.push(reason_class(&rejection));
                    let event =
                        decode::dead_letter(&rejection, &record.payload, &source, record.timestamp);
                    batch
                        .publish
                        .push(dead_letter_record(&event, &rejection, topics));
                }
                Input::Ignored(_) => batch.stats.ignored += 1,
                Input::Request(request) => {
                    let key = request.resource();
                    let Some(tenant) = catalog.tenant(&request.tenant) else {
                        batch.stats.ignored += 1;
                        continue;
                    };
                    let res = self.resources.entry(key.clone()).or_default();
                    touched_resources.insert(key);
                    if res.applied.get(&mark).is_some_and(|&o| o >= record.offset) {
                        batch.stats.redelivered += 1;
                        continue;
                    }
                    let response = inventory::evaluate(&mut res.state, &request, tenant);
                    res.applied.insert(mark, record.offset);
                    res.outbox.push(response);
                    batch.stats.applied += 1;
                }
                input => {
                    let key = input.user().expect("user inputs name their user");
                    let Some(tenant) = catalog.tenant(&key.tenant) else {
                        let rejection = Rejection {
                            reason: format!("tenant: unknown tenant '{}'", key.tenant),
                            field: Some("tenant".into()),
                            error_code: None,
                            user_id: Some(key.user_id.clone()),
                            tenant: key.tenant.clone(),
                        };
                        batch.stats.dead_letters.push("unknown_tenant");
                        let event = decode::dead_letter(
                            &rejection,
                            &record.payload,
                            &source,
                            record.timestamp,
                        );
                        batch
                            .publish
                            .push(dead_letter_record(&event, &rejection, topics));
                        continue;
                    };
                    let user = self
                        .users
                        .get_or_insert_mut(key.clone(), UserRecord::default);
                    touched_users.insert(key.clone());
                    let start = *outbox_start.entry(key.clone()).or_insert(user.outbox.len());
                    if user.applied.get(&mark).is_some_and(|&o| o >= record.offset) {
                        batch.stats.redelivered += 1;
                        continue;
                    }
                    let cause = match &input {
                        Input::Response(r) => r.request_id.clone(),
                        _ => ids::cause_of(&source),
                    };
                    let ctx = Context {
                        source: &source,
                        cause: &cause,
                        record_time: record.timestamp,
                    };
                    let effects = match &input {
                        Input::Action { action, trigger_id } => match tenant.trigger(*trigger_id) {
                            Some(trigger) => evaluator::evaluate(
                                &mut user.state,
                                UserInput::Action(action, trigger),
                                tenant,
                                &key.user_id,
                                &ctx,
                            ),
                            None => Default::default(),
                        },
                        Input::Claim(claim) => evaluator::evaluate(
                            &mut user.state,
                            UserInput::Claim(claim),
                            tenant,
                            &key.user_id,
                            &ctx,
                        ),
                        Input::Response(response) => evaluator::evaluate(
                            &mut user.state,
                            UserInput::Response(response),
                            tenant,
                            &key.user_id,
                            &ctx,
                        ),
                        _ => unreachable!("routed above"),
                    };
                    user.applied.insert(mark, record.offset);
                    if effects.duplicate {
                        batch.stats.duplicates += 1;
                    } else {
                        batch.stats.applied += 1;
                    }
                    for event in &effects.events {
                        record_read_models(
                            &mut batch,
                            user,
                            &key,
                            event,
                            self.id,
                            &mut self.resources,
                        );
                    }
                    for event in effects.events {
                        push_coalesced(user, start, event, &source_of_cause(record));
                    }
                    user.outbox_requests.extend(effects.requests);
                }
            }
        }
        // Step 3 material: every touched user; every touched, counted or published-last-time
        // resource. (A user's published outbox is not rewritten just to clear it: its causes
        // are below the committed floor, so a reload drops it.)
        for key in &touched_users {
            if let Some(r) = self.users.peek(key) {
                batch.write.users.push((key.clone(), r.clone()));
            }
        }
        let mut resource_keys: FxHashSet<String> = touched_resources.clone();
        resource_keys.extend(self.resources_to_clear.iter().cloned());
        resource_keys.extend(
            batch
                .write
                .finished
                .iter()
                .map(|f| finished_key(&f.tenant, f.challenge_id, self.id)),
        );
        for key in resource_keys {
            if let Some(r) = self.resources.get(&key) {
                let record = r.clone();
                batch.write.resources.push((key, record));
            }
        }
        batch.write.write_timestamp = self.next_timestamp();
        // Step 4 material: outboxes, in a stable order.
        let mut users: Vec<UserKey> = touched_users.into_iter().collect();
        users.sort();
        for key in &users {
            if let Some(r) = self.users.peek(key) {
                publish_user_outbox(&mut batch.publish, r, topics);
            }
        }
        let mut resources: Vec<String> = touched_resources.into_iter().collect();
        resources.sort();
        for key in &resources {
            if let Some(r) = self.resources.get(key) {
                for response in &r.outbox {
                    batch.publish.push(OutRecord {
                        topic: topics.inventory_responses.clone(),
                        key: response.user_id.clone(),
                        payload: serde_json::to_vec(response).expect("responses serialize"),
                        headers: Vec::new(),
                    });
                }
            }
        }
        batch.touched_users = users;
        batch.touched_resources = resources;
        Ok(batch)
    }

    /// After the batch was written: the resources' pending clears are durable now.
    pub fn written(&mut self, resources: &[String]) {
        for key in resources {
            self.resources_to_clear.remove(key);
        }
    }

    /// After the batch's records were acknowledged: the outboxes are published. The cached
    /// copies are emptied; the stored ones are superseded by the user's next write, and until
    /// then dropped on reload by the committed floor.
    pub fn published(&mut self, batch: &Batch) {
        for key in &batch.touched_users {
            if let Some(r) = self.users.peek_mut(key) {
                r.outbox.clear();
                r.outbox_causes.clear();
                r.outbox_requests.clear();
            }
        }
        for key in &batch.touched_resources {
            if let Some(r) = self.resources.get_mut(key) {
                if !r.outbox.is_empty() {
                    r.outbox.clear();
                    self.resources_to_clear.insert(key.clone());
                }
            }
        }
    }
}

/// The coordinates of a consumed record, as an outbox event's cause.
fn source_of_cause(record: &InRecord) -> SourceRef {
    SourceRef::new(&record.topic, record.partition, record.offset)
}

/// The consumed record behind a request id (`topic:partition:offset#r0…`), if it parses.
fn cause_of_request(request_id: &str) -> Option<(String, i32, i64)> {
    let cause = request_id.split('#').next()?;
    let mut parts = cause.rsplitn(3, ':');
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next()?.to_string();
    Some((topic, partition, offset))
}

/// Progress events coalesce within a batch: only the last state per user, challenge, group
/// and trigger is kept, so output volume does not double the input.
fn push_coalesced(user: &mut UserRecord, start: usize, event: Event, cause: &SourceRef) {
    let outbox = &mut user.outbox;
    if let EventBody::ProgressUpdated {
        challenge_id,
        group_id,
        trigger_id,
        ..
    } = &event.body
    {
        let same = outbox[start.min(outbox.len())..].iter().position(|e| {
            matches!(&e.body, EventBody::ProgressUpdated { challenge_id: c, group_id: g, trigger_id: t, .. }
                if c == challenge_id && g == group_id && t == trigger_id)
        });
        if let Some(i) = same {
            outbox.remove(start + i);
            if start + i < user.outbox_causes.len() {
                user.outbox_causes.remove(start + i);
            }
        }
    }
    user.outbox.push(event);
    user.outbox_causes.push(cause.clone());
}

/// History, claims and "people finished" from the batch's new events.
fn record_read_models(
    batch: &mut Batch,
    user: &mut UserRecord,
    key: &UserKey,
    event: &Event,
    partition: i32,
    resources: &mut FxHashMap<String, ResourceRecord>,
) {
    let history = match &event.body {
        EventBody::ProgressUpdated { .. } | EventBody::DeadLetter { .. } => false,
        EventBody::ClaimCompleted { claim_id, .. } | EventBody::ClaimFailed { claim_id, .. } => {
            batch.write.claims.push((
                key.clone(),
                ClaimRecord {
                    claim_id: claim_id.clone(),
                    event: event.clone(),
                },
            ));
            true
        }
        EventBody::RewardGranted { reward_type, .. } => {
            batch.stats.granted.push(reward_type.clone());
            true
        }
        EventBody::MilestoneAchieved {
            challenge_id,
            milestone_id,
            ..
        } => {
            if milestone_id.ends_with("-1") {
                let counter = resources
                    .entry(finished_key(&key.tenant, *challenge_id, partition))
                    .or_default();
                counter.state.winners += 1;
                let count = counter.state.winners;
                batch
                    .write
                    .finished
                    .retain(|f| !(f.tenant == key.tenant && f.challenge_id == *challenge_id));
                batch.write.finished.push(FinishedCount {
                    tenant: key.tenant.clone(),
                    challenge_id: *challenge_id,
                    partition: format!("p{partition}"),
                    count,
                });
            }
            true
        }
        EventBody::RewardRejected { .. } => true,
    };
    if history {
        batch.write.history.push((
            key.clone(),
            HistoryEntry {
                seq: user.history_len,
                event: event.clone(),
            },
        ));
        user.history_len += 1;
    }
}

fn publish_user_outbox(out: &mut Vec<OutRecord>, record: &UserRecord, topics: &Topics) {
    for event in &record.outbox {
        let topic = match event.stream() {
            Stream::Progress => &topics.progress,
            Stream::Rewards => &topics.rewards,
            Stream::DeadLetter => &topics.dead_letter,
        };
        out.push(OutRecord {
            topic: topic.clone(),
            key: event.user_id.clone(),
            payload: serde_json::to_vec(event).expect("events serialize"),
            headers: vec![
                ("questline-event-id".into(), event.event_id.clone()),
                ("questline-event-type".into(), event.kind().into()),
            ],
        });
    }
    for request in &record.outbox_requests {
        out.push(OutRecord {
            topic: topics.inventory_requests.clone(),
            key: request.resource(),
            payload: serde_json::to_vec(request).expect("requests serialize"),
            headers: Vec::new(),
        });
    }
}

/// The dead-letter record: the event as its value, the reason and source as headers too.
fn dead_letter_record(event: &Event, rejection: &Rejection, topics: &Topics) -> OutRecord {
    OutRecord {
        topic: topics.dead_letter.clone(),
        key: rejection.user_id.clone().unwrap_or_default(),
        payload: serde_json::to_vec(event).expect("events serialize"),
        headers: vec![
            ("questline-event-id".into(), event.event_id.clone()),
            ("questline-reason".into(), rejection.reason.clone()),
            ("questline-source-topic".into(), event.source.topic.clone()),
            (
                "questline-source-partition".into(),
                event.source.partition.to_string(),
            ),
            (
                "questline-source-offset".into(),
                event.source.offset.to_string(),
            ),
        ],
    }
}

/// The metric label of a dead letter's reason.
pub fn reason_class(rejection: &Rejection) -> &'static str {
    let r = rejection.reason.as_str();
    if r.starts_with("record: not JSON") {
        "not_json"
    } else if r.contains("exceeds the limit") {
        "too_large"
    } else if r.contains("unknown trigger") {
        "unknown_trigger"
    } else if r.contains("unknown tenant") {
        "unknown_tenant"
    } else {
        "mapping"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::events::{EventBody, OriginalEncoding};
    use chrono::Utc;

    fn event(offset: i64) -> Event {
        Event {
            event_id: format!("e{offset}"),
            body: EventBody::DeadLetter {
                reason: "x".into(),
                error_code: None,
                field: None,
                original: String::new(),
                encoding: OriginalEncoding::Utf8,
                truncated_from: None,
            },
            tenant: "default".into(),
            user_id: "u".into(),
            occurred_at: Utc::now(),
            source: SourceRef::new("t", 0, offset),
        }
    }

    #[test]
    fn request_ids_name_their_cause() {
        assert_eq!(cause_of_request("a.b:3:42#r0"), Some(("a.b".into(), 3, 42)));
        assert_eq!(cause_of_request("a:3:42#r0#r1"), Some(("a".into(), 3, 42)));
        assert_eq!(cause_of_request("nonsense"), None);
    }

    #[test]
    fn a_reloaded_outbox_drops_what_was_published_before_the_commit() {
        let mut p = Partition::new(0, 16);
        p.committed(&[("t".into(), 0, 4)]); // offsets 0..=4 committed: floor 5
        let mut record = UserRecord::default();
        for o in [3, 7] {
            record.outbox.push(event(o));
            record.outbox_causes.push(SourceRef::new("t", 0, o));
        }
        // Caused on a partition this owner knows nothing of: kept (re-published, same ids).
        record.outbox.push(event(1));
        record.outbox_causes.push(SourceRef::new("other", 0, 1));
        p.drop_published(&mut record);
        let kept: Vec<&str> = record.outbox.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(kept, ["e7", "e1"]);
        assert_eq!(record.outbox_causes.len(), 2);
    }
}
