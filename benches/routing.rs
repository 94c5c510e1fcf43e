//! Routing a decoded event to its twin: the router's per-group work.
//!
//!     cargo bench --bench routing
//!
//! * `routing/resolve/pattern`: `AssetIndex::resolve` of an id that only a
//!   pattern (`pump-*`) matches - what a new twin costs once.
//! * `routing/shard-of/64`: the shard of an asset in a cluster of 64
//!   partitions (murmur2, Kafka's key hash).
//! * `routing/twin-lookup/1m`: finding a twin among 1M by id in the map
//!   the router keeps (`AHashMap<CompactString, _>`, ids inline), random
//!   order - the per-group lookup, at a million twins.

use std::hint::black_box;
use std::path::Path;

use ahash::AHashMap;
use compact_str::CompactString;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use twinstream::cluster::Sharding;
use twinstream::source::decode::AssetIndex;
use twinstream::topology;

const TOPOLOGY: &str = r#"version: 1
asset_types:
  pump:
    sensors: { vibration: { unit: mm/s } }
  tank:
    sensors: { level: { unit: m } }
assets:
  - { id: tank-1, type: tank }
  - { id: "tank-*", type: tank }
  - { id: "pump-*", type: pump }
sources:
  - { name: events, type: file, decode: { asset: asset, sensor: sensor, ts: ts, value: value } }
"#;

const IDS: usize = 10_000;
const TWINS: usize = 1_000_000;

fn bench_routing(c: &mut Criterion) {
    let topo = topology::parse(Path::new("routing.yaml"), TOPOLOGY).unwrap_or_else(|d| panic!("{d}"));
    let index = AssetIndex::new(&topo);
    let ids: Vec<String> = (0..IDS).map(|i| format!("pump-{:07}", (i * 7919) % TWINS)).collect();
    let mut g = c.benchmark_group("routing");
    g.throughput(Throughput::Elements(IDS as u64));

    g.bench_function("resolve/pattern", |b| {
        b.iter(|| ids.iter().filter_map(|id| index.resolve(id)).sum::<u32>());
    });

    let sharding = Sharding::default();
    sharding.set_partitions(64);
    g.bench_function("shard-of/64", |b| {
        b.iter(|| ids.iter().map(|id| sharding.shard_of(id)).sum::<u32>());
    });

    let twins: AHashMap<CompactString, u64> = (0..TWINS)
        .map(|i| (CompactString::from(format!("pump-{i:07}")), i as u64))
        .collect();
    g.bench_function("twin-lookup/1m", |b| {
        b.iter(|| black_box(ids.iter().filter_map(|id| twins.get(id.as_str())).sum::<u64>()));
    });
    g.finish();
}

criterion_group!(benches, bench_routing);
criterion_main!(benches);
