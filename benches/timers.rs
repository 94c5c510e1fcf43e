//! What staleness timers cost a node with many twins.
//!
//!     cargo bench --bench timers
//!
//! The engine keeps one deadline per twin in a binary heap (the router's
//! timer index, docs/decisions.md "Timers"). A healthy twin costs about one tick
//! per `stale_after`: the entry fires, the twin finds nothing stale (or a
//! sensor that went stale), and re-arms. These benchmarks time that round
//! trip for the twin state and the heap, on 100k twins with four sensors:
//!
//! * `tick-round/100k`: pop 100k due entries, apply `Input::Tick` to each
//!   twin, compute its next deadline and push it back - what the router and
//!   the twins do for 100k timers, minus the message delivery.
//! * `next-deadline`: the per-batch cost on the hot path (the actor asks
//!   for the twin's deadline before and after every batch).
//!
//! With `stale_after: 60s`, 100k twins tick 1,667 times a second: the
//! node's timer load is `tick-round / 100k * 1667` per second of wall time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use twinstream::topology;
use twinstream::twin::model::{apply, next_deadline, Event, Input, TwinState};
use twinstream::twin::schema::{Model, OutputMask};

const TWINS: usize = 100_000;
const TOPOLOGY: &str = r#"
asset_types:
  pump:
    sensors:
      vibration:   { unit: mm/s, expected_every: 1s, stale_after: 60s }
      temperature: { unit: degC, expected_every: 1s, stale_after: 60s }
      pressure:    { unit: bar,  expected_every: 1s, stale_after: 60s }
      current:     { unit: A,    expected_every: 1s, stale_after: 60s }
assets: [{ id: "pump-*", type: pump }]
sources: [{ name: events, type: file, decode: { asset: asset, sensor: sensor, ts: ts, value: value } }]
windows: [{ name: w1s, size: 1s }]
"#;

fn bench(c: &mut Criterion) {
    let topo = topology::parse(Path::new("bench.yaml"), TOPOLOGY).expect("valid topology");
    let m = Model::build(&topo, OutputMask::all(), false).types[0].clone();
    // Every twin heard from every sensor at processing time 0..TWINS ms.
    let mut twins: Vec<TwinState> = (0..TWINS)
        .map(|i| {
            let mut st = TwinState::new(&m);
            let events: Vec<Event> = (0..4u16)
                .map(|s| Event {
                    ts: 1_000 + i as i64,
                    value: 1.0,
                    sensor: s,
                    source: 0,
                    origin: 0,
                    redelivered: false,
                    replayed: false,
                })
                .collect();
            apply(&m, &mut st, Input::Events(&events), i as i64, &mut Vec::new());
            st
        })
        .collect();

    let mut g = c.benchmark_group("timers");
    g.throughput(Throughput::Elements(TWINS as u64));
    g.sample_size(10);
    g.bench_function("tick-round/100k", |b| {
        let mut now = 0i64;
        b.iter(|| {
            // Each round is due before anything goes stale: the common case
            // of an early entry on a healthy twin, which re-arms.
            now += 1;
            let mut heap: BinaryHeap<Reverse<(i64, u32)>> = (0..TWINS as u32).map(|i| Reverse((now, i))).collect();
            let mut out = Vec::new();
            let mut rearmed = 0usize;
            while let Some(Reverse((at, i))) = heap.pop() {
                if at > now {
                    heap.push(Reverse((at, i)));
                    break;
                }
                let st = &mut twins[i as usize];
                apply(&m, st, Input::Tick, now, &mut out);
                out.clear();
                if let Some(next) = next_deadline(&m, st) {
                    heap.push(Reverse((next, i)));
                    rearmed += 1;
                }
            }
            black_box(rearmed)
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("next-deadline", |b| {
        let st = &twins[TWINS / 2];
        b.iter(|| black_box(next_deadline(&m, black_box(st))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
