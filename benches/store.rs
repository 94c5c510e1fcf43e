//! The twin store (RocksDB) on the paths that scale with twins.
//!
//!     cargo bench --bench store
//!
//! On a store of 100k twins with a timer each (records of ~300 bytes, about
//! what a workload-v1 twin encodes to):
//!
//! * `store/checkpoint/10k`: stage 10k twin records and their timer changes
//!   into one checkpoint and commit it (no fsync: the WAL write itself) - a
//!   snapshot's store side, per twin.
//! * `store/restore-read`: `get_twin` + `get_timer` of a random stored twin -
//!   what waking a passivated twin (or the first event after a restart)
//!   reads.
//! * `store/deadlines/5000`: reading 5000 due entries of the deadline index
//!   from a cursor - a timer round's budget (DEADLINE_SCAN_BUDGET).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use twinstream::store::{Checkpoint, DeadlineCursor, Store, TimerChange};

const TWINS: usize = 100_000;
const RECORD: usize = 300;

fn asset(i: usize) -> String {
    format!("pump-{i:07}")
}

fn filled(dir: &std::path::Path) -> Store {
    let store = Store::open(dir, 1).expect("store opens");
    let record = vec![7u8; RECORD];
    for chunk in (0..TWINS).collect::<Vec<_>>().chunks(10_000) {
        let mut ckpt = Checkpoint::default();
        for &i in chunk {
            store.put_twin(&mut ckpt, 0, &asset(i), &record);
            let change = TimerChange {
                old: None,
                new: Some(1_700_000_000_000 + i as i64),
            };
            store.put_timer(&mut ckpt, 0, &asset(i), change);
        }
        store.commit(ckpt, false).expect("commit");
    }
    store
}

fn bench_store(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = filled(dir.path());
    let record = vec![9u8; RECORD];
    let mut g = c.benchmark_group("store");

    g.throughput(Throughput::Elements(10_000));
    let mut round = 0i64;
    g.bench_function("checkpoint/10k", |b| {
        b.iter(|| {
            round += 1;
            let mut ckpt = Checkpoint::default();
            for i in 0..10_000 {
                let a = asset((i * 7 + round as usize * 10_000) % TWINS);
                store.put_twin(&mut ckpt, 0, &a, &record);
                let change = TimerChange {
                    old: Some(round * 10),
                    new: Some(round * 10 + 1),
                };
                store.put_timer(&mut ckpt, 0, &a, change);
            }
            store.commit(ckpt, false).expect("commit");
        });
    });

    g.throughput(Throughput::Elements(1));
    let mut n = 0usize;
    g.bench_function("restore-read", |b| {
        b.iter(|| {
            n = (n + 7919) % TWINS;
            let a = asset(n);
            let rec = store.get_twin(0, &a).expect("read");
            let timer = store.get_timer(0, &a).expect("read");
            black_box((rec.map(|r| r.len()), timer))
        });
    });

    g.throughput(Throughput::Elements(5_000));
    g.bench_function("deadlines/5000", |b| {
        b.iter_batched_ref(
            DeadlineCursor::default,
            |cursor| {
                let mut sum = 0i64;
                let read = store
                    .deadlines_from(0, cursor, i64::MAX, 5_000, |at, _| sum = sum.wrapping_add(at))
                    .expect("scan");
                assert_eq!(read, 5_000);
                black_box(sum)
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
