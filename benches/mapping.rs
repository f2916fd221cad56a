//! Mapping + JSON decode: records/s on one core for a ~150-byte action (targets in docs/benchmarks.md).
//! The mappings are compiled once, as the worker holds them.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use questline::core::decode;
use questline::core::mapping::Mapping;
use std::path::Path;

/// The allocator the `questline` binary runs (src/allocator.rs), so the bench measures what
/// the worker does: with glibc's, this bench measured a quarter to a third less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let catalog = questline::files::load_catalog(&root.join("examples/catalog")).unwrap();
    let kickapps = questline::files::load_mapping(&root.join("mappings/kickapps.toml"))
        .unwrap()
        .compile();
    let native = Mapping::native().compile();
    let seed_record =
        br#"{"userId": "151631", "triggerId": 1, "value": 1000, "actionId": "pos-2026-11-25-000123", "occurredAt": "2026-11-25T10:00:00Z"}"#;
    let kick_record = br#"{"user_id": "kick-user-000123", "actionId": "post_comment", "location": "forum", "quantity": 2, "userActionId": "ua-000000123"}"#;
    let mut group = c.benchmark_group("mapping");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("native_{}_bytes", seed_record.len()), |b| {
        b.iter(|| decode::decode(&native, &catalog, std::hint::black_box(seed_record)).unwrap())
    });
    group.bench_function(format!("kickapps_{}_bytes", kick_record.len()), |b| {
        b.iter(|| decode::decode(&kickapps, &catalog, std::hint::black_box(kick_record)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
