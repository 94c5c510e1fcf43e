//! What a checkpoint and the supervision backup cost per twin, on
//! workload-v1 pump twins (4 sensors, 1 s tumbling windows, one rule):
//! the yardsticks of issue 28's "checkpoint CPU per dirty twin".
//!
//!     cargo bench --bench checkpoint
//!
//! * `checkpoint/cpu/10k-dirty`: 10k twins, each fed the next second of its
//!   own stream (40 readings), then every one snapshotted as the engine
//!   does: its record encoded (`twin::record::Encoder`, one for all) and staged with
//!   its timer change into one checkpoint, committed without fsync. The
//!   figure is **CPU time, not wall time**: the whole process's over the
//!   round (so RocksDB's flushes and compactions, on its own threads, count
//!   wherever in the round they run) minus the feeding thread's own time
//!   applying the readings. Throughput is dirty twins per CPU second. Printed
//!   once: the record sizes, and which parts of a twin (sensors, open and
//!   closed windows, alerts, counters) changed between two checkpoints, in
//!   how many twins: what a record of only the changed parts would save.
//! * `supervision/bare/100k` and `supervision/backed-up/100k`: one batch (a
//!   reading of every sensor) applied to each of 100k twins in turn, so each
//!   is out of cache as in a busy node; `backed-up` first copies the state
//!   as the host does before every batch (`TwinState::back_up`, the state a
//!   panic rolls back to). The difference is what supervision costs a batch.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use twinstream::store::{Checkpoint, Store, TimerChange};
use twinstream::twin::model::{next_deadline, TwinState};
use twinstream::twin::record;
use twinstream::twin::schema::TypeModel;

#[path = "support/pump.rs"]
mod pump;
use pump::{type_model, Fleet};

const TWINS: usize = 10_000;
/// Distinct event streams the twins share (each twin from its own place).
const STREAMS: usize = 64;
/// Twins the supervision benchmark goes through in turn: ~100 MB of state,
/// more than the caches hold, so each batch starts with its twin out of
/// cache.
const COLD_TWINS: usize = 100_000;
/// Readings a twin takes between two checkpoints: a second of its stream.
const READINGS: usize = 40;

/// CPU time of `clock` (a `CLOCK_*_CPUTIME_ID`) so far.
fn cpu(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn asset(i: usize) -> String {
    format!("pump-{i:07}")
}

fn workload_v1() -> Arc<TypeModel> {
    type_model("  - { name: w1s, type: tumbling, size: 1s }", "w1s.vibration.avg > 7.0")
}

/// A fleet of `twins` workload-v1 twins, each half a minute into its stream:
/// every window and alert state a running twin has.
fn fleet(m: &TypeModel, twins: usize) -> Fleet<'_> {
    let mut fleet = Fleet::new(m, twins, STREAMS);
    for i in 0..twins {
        for _ in 0..30 {
            fleet.step(i, READINGS);
        }
    }
    fleet
}

fn bench_checkpoint(c: &mut Criterion) {
    let m = workload_v1();
    let mut fleet = fleet(&m, TWINS);
    let assets: Vec<String> = (0..TWINS).map(asset).collect();
    let mut stored: Vec<Option<i64>> = vec![None; TWINS];
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), 1).expect("store opens");
    let mut enc = record::Encoder::default();
    let sizes: Vec<usize> = fleet
        .twins
        .iter()
        .map(|t| {
            enc.encode(&m, &t.st);
            enc.bytes().len()
        })
        .collect();
    println!(
        "checkpoint: {TWINS} workload-v1 twins, records of {}-{} B (mean {:.0} B)",
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().max().unwrap_or(&0),
        sizes.iter().sum::<usize>() as f64 / sizes.len() as f64
    );

    // What changes in a twin between two checkpoints: the parts an
    // incremental record would write.
    let before: Vec<TwinState> = fleet.twins.iter().map(|t| t.st.clone()).collect();
    for i in 0..TWINS {
        fleet.step(i, READINGS);
    }
    let share = |changed: &dyn Fn(&TwinState, &TwinState) -> bool| {
        let n = before
            .iter()
            .zip(&fleet.twins)
            .filter(|(a, t)| changed(a, &t.st))
            .count();
        100.0 * n as f64 / TWINS as f64
    };
    let sensors_changed =
        |a: &TwinState, b: &TwinState| a.sensors.iter().zip(b.sensors.iter()).filter(|(x, y)| x != y).count();
    println!(
        "checkpoint: a second apart, twins whose part changed: sensors {:.0}% ({:.1} of {} on average), open windows {:.0}%, closed windows {:.0}%, alerts {:.0}%, counters {:.0}%",
        share(&|a, b| a.sensors != b.sensors),
        before
            .iter()
            .zip(&fleet.twins)
            .map(|(a, t)| sensors_changed(a, &t.st))
            .sum::<usize>() as f64
            / TWINS as f64,
        pump::SENSORS,
        share(&|a, b| a.open != b.open),
        share(&|a, b| a.closed != b.closed),
        share(&|a, b| a.alerts != b.alerts),
        share(&|a, b| a.stats != b.stats),
    );

    let mut g = c.benchmark_group("checkpoint");
    g.sample_size(10);
    g.throughput(Throughput::Elements(TWINS as u64));
    g.bench_function(BenchmarkId::new("cpu", "10k-dirty"), |b| {
        b.iter_custom(|rounds| {
            let mut spent = Duration::ZERO;
            for _ in 0..rounds {
                let process = cpu(libc::CLOCK_PROCESS_CPUTIME_ID);
                let feeding = cpu(libc::CLOCK_THREAD_CPUTIME_ID);
                for i in 0..TWINS {
                    fleet.step(i, READINGS);
                }
                let fed = cpu(libc::CLOCK_THREAD_CPUTIME_ID) - feeding;
                let mut ckpt = Checkpoint::default();
                for (i, t) in fleet.twins.iter().enumerate() {
                    enc.encode(&m, &t.st);
                    store.put_twin(&mut ckpt, 0, &assets[i], enc.bytes());
                    let new = next_deadline(&m, &t.st);
                    store.put_timer(&mut ckpt, 0, &assets[i], TimerChange { old: stored[i], new });
                    stored[i] = new;
                }
                store.commit(ckpt, false).expect("commit");
                spent += cpu(libc::CLOCK_PROCESS_CPUTIME_ID) - process - fed;
            }
            spent
        });
    });
    g.finish();
}

fn bench_supervision(c: &mut Criterion) {
    let m = workload_v1();
    let mut fleet = fleet(&m, COLD_TWINS);
    let mut backup = TwinState::new(&m);
    let mut g = c.benchmark_group("supervision");
    g.sample_size(20);
    g.throughput(Throughput::Elements(COLD_TWINS as u64));
    g.bench_function(BenchmarkId::new("bare", "100k"), |b| {
        b.iter(|| {
            for i in 0..COLD_TWINS {
                fleet.step(i, pump::SENSORS);
            }
        })
    });
    g.bench_function(BenchmarkId::new("backed-up", "100k"), |b| {
        b.iter(|| {
            for i in 0..COLD_TWINS {
                black_box(fleet.twins[i].st.back_up(&mut backup));
                fleet.step(i, pump::SENSORS);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_checkpoint, bench_supervision);
criterion_main!(benches);
