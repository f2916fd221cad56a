//! The in-process log: partitioned, ordered, offset-addressed topics in memory, with one
//! consumer group member. `demo` runs the real worker loop on it, and tests use it where
//! they test the pipeline rather than Kafka. It partitions keys with Kafka's own murmur2,
//! so a user lands on the same partition number here as on a real broker.

use async_trait::async_trait;
use chrono::Utc;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

use super::log::{Headers, InRecord, Log, LogError, OutRecord, Published, Rebalance, RecordKey};

/// Kafka's default partitioner hash (murmur2, as in the Java client and librdkafka's
/// `murmur2_random`), so partition numbers agree with real producers.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition Kafka's default partitioner picks for a key.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

#[derive(Default)]
struct Inner {
    topics: BTreeMap<String, Vec<Vec<InRecord>>>,
    positions: BTreeMap<(String, i32), i64>,
    committed: BTreeMap<(String, i32), i64>,
    subscribed: Vec<String>,
    rebalances: Vec<Rebalance>,
    paused: bool,
    /// The largest record [`Log::publish`] accepts ([`OutRecord::size`]), as a broker's
    /// `message.max.bytes` would; no limit when `None`.
    max_record_bytes: Option<usize>,
}

/// An in-memory log with `partitions` partitions per topic.
pub struct MemoryLog {
    partitions: i32,
    inner: Mutex<Inner>,
    changed: Notify,
}

impl MemoryLog {
    pub fn new(partitions: i32) -> Arc<Self> {
        Arc::new(MemoryLog {
            partitions: partitions.max(1),
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes the one member to `topics`, assigning every partition of each.
    pub fn subscribe(&self, topics: &[String]) {
        let mut inner = self.lock();
        let mut assigned = Vec::new();
        for t in topics {
            inner
                .topics
                .entry(t.clone())
                .or_insert_with(|| vec![Vec::new(); self.partitions as usize]);
            for p in 0..self.partitions {
                let from = inner.committed.get(&(t.clone(), p)).copied().unwrap_or(0);
                inner.positions.insert((t.clone(), p), from);
                assigned.push((t.clone(), p));
            }
        }
        inner.subscribed = topics.to_vec();
        inner.rebalances.push(Rebalance::Assigned(assigned));
    }

    /// Appends a record as a producer would; returns its partition and offset.
    pub fn append(&self, topic: &str, key: &str, payload: Vec<u8>) -> (i32, i64) {
        self.append_with_headers(topic, key, payload, Headers::new())
    }

    /// [`MemoryLog::append`], with headers (named as a producer names them).
    pub fn append_with_headers(
        &self,
        topic: &str,
        key: &str,
        payload: Vec<u8>,
        headers: Headers,
    ) -> (i32, i64) {
        let headers = headers
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_vec()))
            .collect();
        let (p, offset) = {
            let mut inner = self.lock();
            let partitions = inner
                .topics
                .entry(topic.to_string())
                .or_insert_with(|| vec![Vec::new(); self.partitions as usize]);
            let p = partition_for(key.as_bytes(), self.partitions);
            let log = &mut partitions[p as usize];
            let offset = log.len() as i64;
            log.push(InRecord {
                topic: topic.into(),
                partition: p,
                offset,
                key: Some(RecordKey::from_slice(key.as_bytes())),
                payload,
                timestamp: Utc::now(),
                headers,
            });
            (p, offset)
        };
        self.changed.notify_waiters();
        (p, offset)
    }

    /// Every record of a topic, partition by partition, in offset order.
    pub fn records(&self, topic: &str) -> Vec<InRecord> {
        self.lock()
            .topics
            .get(topic)
            .map(|ps| ps.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// Records of a topic past per-partition positions, advancing them (for readers such as
    /// the demo's event printer).
    pub fn read_new(&self, topic: &str, positions: &mut BTreeMap<i32, usize>) -> Vec<InRecord> {
        let inner = self.lock();
        let mut out = Vec::new();
        if let Some(ps) = inner.topics.get(topic) {
            for (p, log) in ps.iter().enumerate() {
                let pos = positions.entry(p as i32).or_insert(0);
                out.extend(log[*pos..].iter().cloned());
                *pos = log.len();
            }
        }
        out
    }

    /// Committed offsets (next to read), by topic and partition.
    pub fn committed(&self) -> BTreeMap<(String, i32), i64> {
        self.lock().committed.clone()
    }

    /// Consumer positions (next offset to hand out), by topic and partition: with
    /// [`MemoryLog::committed`], how many records the member holds in flight.
    pub fn positions(&self) -> BTreeMap<(String, i32), i64> {
        self.lock().positions.clone()
    }

    /// Refuses records larger than `bytes` from now on, as a broker with that
    /// `message.max.bytes` does ([`Published::too_large`]).
    pub fn set_max_record_bytes(&self, bytes: usize) {
        self.lock().max_record_bytes = Some(bytes);
    }

    /// Whether the member paused fetching ([`Log::set_paused`]).
    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// An eager rebalance that hands every partition back to the same member, as Kafka's
    /// classic protocol does when a member joins or leaves: everything is revoked, then
    /// assigned again, and fetching restarts from the committed offsets.
    pub fn rebalance(&self) {
        let mut inner = self.lock();
        let assigned: Vec<(String, i32)> = inner.positions.keys().cloned().collect();
        for key in &assigned {
            let from = inner.committed.get(key).copied().unwrap_or(0);
            inner.positions.insert(key.clone(), from);
        }
        inner.rebalances.push(Rebalance::Revoked(assigned.clone()));
        inner.rebalances.push(Rebalance::Assigned(assigned));
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Waits until something is appended (or the timeout passes).
    pub async fn wait_for_change(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.changed.notified()).await;
    }

    fn take(&self, max: usize) -> Vec<InRecord> {
        let mut inner = self.lock();
        if inner.paused || max == 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        let subscribed = inner.subscribed.clone();
        // Round-robin over partitions so no partition starves another.
        'outer: loop {
            let mut progressed = false;
            for t in &subscribed {
                for p in 0..self.partitions {
                    let pos = inner.positions.get(&(t.clone(), p)).copied().unwrap_or(0);
                    let next = inner
                        .topics
                        .get(t)
                        .and_then(|ps| ps[p as usize].get(pos as usize))
                        .cloned();
                    if let Some(r) = next {
                        out.push(r);
                        inner.positions.insert((t.clone(), p), pos + 1);
                        progressed = true;
                        if out.len() >= max {
                            break 'outer;
                        }
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        out
    }
}

#[async_trait]
impl Log for MemoryLog {
    async fn poll_batch(
        &self,
        max: usize,
        linger: Duration,
        idle: Duration,
    ) -> Result<Vec<InRecord>, LogError> {
        let notified = self.changed.notified();
        let mut out = self.take(max);
        if out.is_empty() {
            let _ = tokio::time::timeout(idle, notified).await;
            out = self.take(max);
            if out.is_empty() {
                return Ok(out);
            }
        }
        if out.len() < max && !linger.is_zero() {
            tokio::time::sleep(linger).await;
            let more = self.take(max - out.len());
            out.extend(more);
        }
        Ok(out)
    }

    async fn publish(&self, records: &[OutRecord]) -> Result<Published, LogError> {
        let limit = self.lock().max_record_bytes;
        let mut published = Published::default();
        for (i, r) in records.iter().enumerate() {
            if limit.is_some_and(|max| r.size() > max) {
                published.too_large.push(i);
            } else {
                self.append_with_headers(&r.topic, &r.key, r.payload.clone(), r.headers.clone());
            }
        }
        Ok(published)
    }

    async fn commit(&self, processed: &[(String, i32, i64)]) -> Result<(), LogError> {
        let mut inner = self.lock();
        for (t, p, o) in processed {
            let slot = inner.committed.entry((t.clone(), *p)).or_insert(0);
            *slot = (*slot).max(o + 1);
        }
        Ok(())
    }

    fn take_rebalances(&self) -> Vec<Rebalance> {
        std::mem::take(&mut self.lock().rebalances)
    }

    fn set_paused(&self, paused: bool) -> Result<(), LogError> {
        self.lock().paused = paused;
        Ok(())
    }
}

/// Commands go into the in-process log's commands topic (the demo's and the tests' sidecar),
/// keyed by user like the Kafka sink's.
pub struct MemoryCommandSink {
    pub log: Arc<MemoryLog>,
    pub topic: String,
}

#[async_trait]
impl super::commands::CommandSink for MemoryCommandSink {
    async fn submit(
        &self,
        command: &super::commands::Command,
        trace: Option<&crate::trace_context::TraceContext>,
    ) -> Result<(), super::commands::SubmitError> {
        let payload = serde_json::to_vec(command).map_err(super::commands::SubmitError::Encode)?;
        self.log.append_with_headers(
            &self.topic,
            command.user_id(),
            payload,
            super::commands::command_headers(trace),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_partitioner() {
        // Reference values of Kafka's Utils.murmur2 (the Java client's default partitioner).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }
}
