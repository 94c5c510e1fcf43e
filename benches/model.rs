//! Throughput of the pure twin model (`twin::model::apply`) on a workload-v1
//! twin, and the cost of its on-disk record (`twin::record`).
//!
//!     cargo bench --bench model
//!     cargo bench --bench model -- --warm-up-time 1 --measurement-time 2   (quick)
//!
//! * `apply/tumbling-1s/B`: workload v1 (4 sensors, 1 s tumbling window on
//!   every sensor, 200 ms out-of-orderness, rule `w1s.vibration.avg > 7.0`),
//!   one twin fed its own event stream in batches of B events.
//! * `apply/sliding-10s-1s/B`: the same with a 10 s window sliding every 1 s
//!   (every event lands in 10 windows).
//! * `apply/tumbling-1s+level-rate/B`: the tumbling case with a 2-state
//!   model (`level_rate`) filtering vibration; `+matrix-2` the same
//!   dynamics in matrix form (`A`, `Q`), discretised per step.
//! * `foresight/forecast-60`, `foresight/whatif-60`: the model looking 60
//!   steps ahead from a fed twin (what `GET /twins/{id}/forecast` and
//!   `POST /twins/{id}/whatif` compute, without the HTTP).
//! * `record/*`: encode a typical twin into its snapshot envelope (as a
//!   worker does, through one `Encoder`; `encode-fresh` allocating its
//!   lists and bytes afresh, as `record::encode` does), decode it, and decode +
//!   restore it into a `TwinState`. The id carries the size.
//!
//! The event stream is what one asset of `gen_workload.py` produces: each
//! sensor every 100 ms at a fixed phase, timestamps jittered by +-50 ms (out of
//! order by up to 100 ms), 1 in 2000 events very late (2-3 s), values on a
//! 1/64 grid; vibration drifts across 7.0 so the rule raises and clears alerts.
//! The model is built as `replay` builds it (alerts emitted, window digest on).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use twinstream::twin::model::{apply, Input};
use twinstream::twin::record;

#[path = "support/pump.rs"]
mod pump;
use pump::{type_model, with_model, Feeder, BASE_TS};

fn bench_apply(c: &mut Criterion) {
    let tumbling = type_model("  - { name: w1s, type: tumbling, size: 1s }", "w1s.vibration.avg > 7.0");
    let sliding = type_model(
        "  - { name: w10s, type: sliding, size: 10s, slide: 1s }",
        "w10s.vibration.avg > 7.0",
    );
    // A 2-state model filtering vibration: the closed-form preset, and the
    // same dynamics as matrices (a matrix exponential per distinct step).
    let preset = with_model(
        "  - { name: w1s, type: tumbling, size: 1s }",
        "w1s.vibration.avg > 7.0",
        "    model: { preset: level_rate, sensor: vibration, q: 0.01 }",
    );
    let matrix = with_model(
        "  - { name: w1s, type: tumbling, size: 1s }",
        "w1s.vibration.avg > 7.0",
        "    model: { states: [level, rate], A: [[0, 1], [0, 0]], observe: { vibration: [1, 0] }, Q: [[0, 0], [0, 0.01]] }",
    );
    let mut g = c.benchmark_group("apply");
    for (name, m) in [
        ("tumbling-1s", &tumbling),
        ("sliding-10s-1s", &sliding),
        ("tumbling-1s+level-rate", &preset),
        ("tumbling-1s+matrix-2", &matrix),
    ] {
        // sanity: the stream closes windows and raises alerts
        let mut f = Feeder::new(m);
        let mut alerts = 0;
        for _ in 0..f.events.len() {
            apply(m, &mut f.st, Input::Events(&f.events[f.pos..f.pos + 1]), 0, &mut f.out);
            f.pos += 1;
            alerts += f.out.len();
            f.out.clear();
        }
        assert!(
            f.st.stats.windows > 100 && alerts > 0 && f.st.stats.late > 0,
            "{name}: {:?}",
            f.st.stats
        );

        for batch in [1usize, 16, 64] {
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(BenchmarkId::new(name, batch), |b| {
                let mut f = Feeder::new(m);
                b.iter(|| f.step(batch));
            });
        }
    }
    g.finish();
}

fn bench_record(c: &mut Criterion) {
    let m = type_model("  - { name: w1s, type: tumbling, size: 1s }", "w1s.vibration.avg > 7.0");
    // A typical twin: 30 s of events in, mid-second (open windows for every
    // sensor, the last closed vibration window, an alert state).
    let mut f = Feeder::new(&m);
    for _ in 0..(30 * 40 + 18) {
        f.step(1);
    }
    assert!(!f.st.open.is_empty() && f.st.alerts[0].seq > 0, "not a typical twin");
    let st = f.st;
    let bytes = record::encode(&m, &st);
    let size = format!("{}B", bytes.len());

    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("encode", &size), |b| {
        let mut enc = record::Encoder::default();
        b.iter(|| {
            enc.encode(&m, black_box(&st));
            black_box(enc.bytes().len())
        });
    });
    // The same with every list and the bytes allocated afresh
    // (`record::encode`, what a one-off encode costs).
    g.bench_function(BenchmarkId::new("encode-fresh", &size), |b| {
        b.iter(|| black_box(record::encode(&m, black_box(&st)).len()));
    });
    g.bench_function(BenchmarkId::new("decode", &size), |b| {
        b.iter(|| record::decode(black_box(&bytes)).expect("decodes"));
    });
    g.bench_function(BenchmarkId::new("decode+restore", &size), |b| {
        b.iter(|| {
            record::decode(black_box(&bytes))
                .expect("decodes")
                .into_state(&m, &m.schema)
                .0
        });
    });
    g.finish();
}

/// The model looking ahead from a fed twin: a forecast and a what-if
/// (a copy of the twin run over the horizon, rules and windows included)
/// of 60 steps (10 minutes at 10 s), without the HTTP around them.
fn bench_foresight(c: &mut Criterion) {
    use twinstream::twin::foresight::{forecast, what_if, Horizon};
    let m = with_model(
        "  - { name: w1s, type: tumbling, size: 1s }",
        "w1s.vibration.avg > 7.0",
        "    model: { preset: level_rate, sensor: vibration, q: 0.01 }",
    );
    let mut f = Feeder::new(&m);
    for _ in 0..(30 * 40) {
        f.step(1);
    }
    let st = f.st;
    let h = Horizon::new(600_000, 10_000).expect("a valid horizon");
    let mut g = c.benchmark_group("foresight");
    g.bench_function("forecast-60", |b| {
        b.iter(|| forecast(&m, black_box(&st), h).expect("an estimate"))
    });
    g.bench_function("whatif-60", |b| {
        b.iter(|| what_if(&m, black_box(&st), h, &[], BASE_TS).expect("an estimate"))
    });
    g.finish();
}

criterion_group!(benches, bench_apply, bench_record, bench_foresight);
criterion_main!(benches);
