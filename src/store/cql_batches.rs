//! How the CQL store packs a batch's writes into CQL batches: the partitions that live on the
//! same replicas (the same nodes, and the same shard on each) go together, a few at a time,
//! so that a batch of a worker costs a few requests instead of one per user.
//!
//! Why: each request costs the worker's driver (a frame built, a stream id, a task woken for
//! the answer) and the coordinator (a frame parsed, a response written) about the same
//! whatever it carries, and a batch of the worker touches hundreds of users, each of whose
//! writes (record, history entries, claims) fit in one small statement group. Grouping
//! partitions by where they live keeps the coordinator the driver picks (a replica of the
//! first statement's token, on that token's shard) an owner of every partition in the batch:
//! no extra hop, only fewer requests. The scylla driver's shard-aware batching rests on the
//! same idea (scylla-rust-driver pull request 738: batching lowers the CPU that network
//! operations cost when inserting many rows, and the batches are best made per shard).
//!
//! Limits keep a packed batch far below the cluster's batch-size warning (128 KiB by default)
//! and its fan-out small; a partition whose writes exceed them alone is split as before.
//! Partitions whose replicas the driver cannot name (no ring metadata yet, several nodes) go
//! one partition per batch, as every partition did before packing.

use rustc_hash::FxHashMap;
use std::hash::Hash;

/// How many partitions, statements and bytes one packed CQL batch may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackLimits {
    /// Partitions per batch; 1 writes each partition in a batch of its own.
    pub partitions: usize,
    /// Statements per batch.
    pub statements: usize,
    /// The statements' values, in bytes, per batch (a partition alone may pass it).
    pub bytes: usize,
}

/// A CQL batch to send: statements of `partitions` partitions.
#[derive(Debug)]
pub struct PackedBatch<T> {
    pub partitions: usize,
    pub statements: Vec<T>,
}

/// One partition's writes in order, with the nodes that own it when they are known.
pub struct PartitionWrites<K, T> {
    pub replicas: Option<K>,
    pub statements: Vec<T>,
}

/// Packs `partitions` into batches within `limits`: partitions of the same replicas together,
/// in the order they come, a partition's statements never interleaved with another's and
/// split only when they alone pass the statement limit. `bytes` weighs a statement.
pub fn pack<K: Hash + Eq, T>(
    partitions: Vec<PartitionWrites<K, T>>,
    limits: PackLimits,
    bytes: impl Fn(&T) -> usize,
) -> Vec<PackedBatch<T>> {
    let statements_cap = limits.statements.max(1);
    let mut batches: Vec<PackedBatch<T>> = Vec::new();
    // The batch being filled for each set of replicas: its index in `batches`, and the bytes
    // it carries.
    let mut open: FxHashMap<K, (usize, usize)> = FxHashMap::default();
    for partition in partitions {
        let count = partition.statements.len();
        let shareable = limits.partitions > 1 && count <= statements_cap;
        let Some(replicas) = partition.replicas.filter(|_| shareable) else {
            split_into(&mut batches, partition.statements, statements_cap);
            continue;
        };
        let size: usize = partition.statements.iter().map(&bytes).sum();
        match open.get_mut(&replicas) {
            Some((at, used))
                if batches[*at].partitions < limits.partitions
                    && batches[*at].statements.len() + count <= statements_cap
                    && *used + size <= limits.bytes =>
            {
                let batch = &mut batches[*at];
                batch.statements.extend(partition.statements);
                batch.partitions += 1;
                *used += size;
            }
            _ => {
                batches.push(PackedBatch {
                    partitions: 1,
                    statements: partition.statements,
                });
                open.insert(replicas, (batches.len() - 1, size));
            }
        }
    }
    batches
}

/// One partition's `statements` as batches of at most `cap`, appended to `batches`.
fn split_into<T>(batches: &mut Vec<PackedBatch<T>>, statements: Vec<T>, cap: usize) {
    let mut rest = statements;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(cap));
        batches.push(PackedBatch {
            partitions: 1,
            statements: rest,
        });
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: PackLimits = PackLimits {
        partitions: 3,
        statements: 4,
        bytes: 100,
    };

    /// Statements are `(partition, index within it, bytes)`.
    fn partition(
        id: u32,
        replicas: Option<u8>,
        sizes: &[usize],
    ) -> PartitionWrites<u8, (u32, usize, usize)> {
        PartitionWrites {
            replicas,
            statements: sizes.iter().enumerate().map(|(i, &b)| (id, i, b)).collect(),
        }
    }

    fn ids(batches: &[PackedBatch<(u32, usize, usize)>]) -> Vec<Vec<u32>> {
        batches
            .iter()
            .map(|b| b.statements.iter().map(|s| s.0).collect())
            .collect()
    }

    #[test]
    fn partitions_of_the_same_replicas_share_batches_up_to_the_partition_limit() {
        let parts = (1..=7).map(|id| partition(id, Some(0), &[10])).collect();
        assert_eq!(
            ids(&pack(parts, LIMITS, |s| s.2)),
            vec![vec![1, 2, 3], vec![4, 5, 6], vec![7]]
        );
    }

    #[test]
    fn different_replicas_never_share_a_batch() {
        let parts = vec![
            partition(1, Some(0), &[10]),
            partition(2, Some(1), &[10]),
            partition(3, Some(0), &[10]),
            partition(4, Some(1), &[10]),
        ];
        assert_eq!(
            ids(&pack(parts, LIMITS, |s| s.2)),
            vec![vec![1, 3], vec![2, 4]]
        );
    }

    #[test]
    fn unknown_replicas_and_a_limit_of_one_partition_go_alone() {
        let parts = vec![
            partition(1, None, &[10]),
            partition(2, None, &[10]),
            partition(3, Some(0), &[10]),
        ];
        assert_eq!(
            ids(&pack(parts, LIMITS, |s| s.2)),
            vec![vec![1], vec![2], vec![3]]
        );
        let one = PackLimits {
            partitions: 1,
            ..LIMITS
        };
        let parts = vec![partition(1, Some(0), &[10]), partition(2, Some(0), &[10])];
        assert_eq!(ids(&pack(parts, one, |s| s.2)), vec![vec![1], vec![2]]);
    }

    #[test]
    fn statement_and_byte_limits_start_a_new_batch() {
        let parts = vec![
            partition(1, Some(0), &[10, 10, 10]),
            partition(2, Some(0), &[10, 10]), // 5 statements: over 4
            partition(3, Some(0), &[90]),     // 110 bytes with 2: over 100
            partition(4, Some(0), &[5]),
        ];
        assert_eq!(
            ids(&pack(parts, LIMITS, |s| s.2)),
            vec![vec![1, 1, 1], vec![2, 2], vec![3, 4]]
        );
    }

    #[test]
    fn a_partition_over_the_statement_limit_is_split_alone() {
        let parts = vec![
            partition(1, Some(0), &[1]),
            partition(2, Some(0), &[1; 9]),
            partition(3, Some(0), &[1]),
        ];
        assert_eq!(
            ids(&pack(parts, LIMITS, |s| s.2)),
            vec![vec![1, 3], vec![2; 4], vec![2; 4], vec![2]]
        );
    }

    proptest! {
        /// Whatever the partitions: every statement is written exactly once; a batch holds the
        /// partitions of one set of replicas only, within the limits unless it is one
        /// partition's alone; a partition's statements keep their order, and stay together
        /// unless they alone pass the statement limit.
        #[test]
        fn packing_keeps_every_statement_once_and_in_order(
            shapes in prop::collection::vec(
                (prop::option::of(0u8..3), prop::collection::vec(0usize..60, 1..7)),
                0..40,
            ),
            partitions in 1usize..5,
            statements in 1usize..6,
        ) {
            let limits = PackLimits { partitions, statements, bytes: 100 };
            let parts: Vec<_> = shapes
                .iter()
                .enumerate()
                .map(|(id, (replicas, sizes))| partition(id as u32, *replicas, sizes))
                .collect();
            let replicas_of = |id: u32| shapes[id as usize].0;
            let batches = pack(parts, limits, |s| s.2);
            let mut seen: Vec<(u32, usize)> = batches
                .iter()
                .flat_map(|b| &b.statements)
                .map(|s| (s.0, s.1))
                .collect();
            let expected: usize = shapes.iter().map(|(_, sizes)| sizes.len()).sum();
            prop_assert_eq!(seen.len(), expected);
            // Order within a partition, across batches as well.
            for id in 0..shapes.len() as u32 {
                let order: Vec<usize> = seen.iter().filter(|s| s.0 == id).map(|s| s.1).collect();
                prop_assert_eq!(order, (0..shapes[id as usize].1.len()).collect::<Vec<_>>());
            }
            seen.sort();
            seen.dedup();
            prop_assert_eq!(seen.len(), expected);
            for packed in &batches {
                let batch = &packed.statements;
                prop_assert!(!batch.is_empty());
                let mut parts: Vec<u32> = batch.iter().map(|s| s.0).collect();
                parts.dedup();
                let mut distinct = parts.clone();
                distinct.sort();
                distinct.dedup();
                // A partition's statements are contiguous within a batch, and counted.
                prop_assert_eq!(distinct.len(), parts.len());
                prop_assert_eq!(packed.partitions, parts.len());
                if parts.len() > 1 {
                    let first = replicas_of(parts[0]);
                    prop_assert!(first.is_some());
                    prop_assert!(parts.iter().all(|&p| replicas_of(p) == first));
                    prop_assert!(parts.len() <= partitions);
                    prop_assert!(batch.len() <= statements);
                    prop_assert!(batch.iter().map(|s| s.2).sum::<usize>() <= 100);
                } else {
                    prop_assert!(batch.len() <= statements);
                }
            }
        }
    }
}
