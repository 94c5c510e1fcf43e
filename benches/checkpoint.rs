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
//! * `checkpoint/cpu/10k-dirty-64-sensors`: the same for twins of a type
//!   with 64 sensors of which 4 report in a second (10 readings each), the
//!   kind of twin an incremental record is for, written as a node without a
//!   changelog writes them: in parts, merged in as the sensors that changed
//!   (`twin::record::Encoder::encode_parts`, `Store::merge_twin`); and
//!   `checkpoint/cpu/10k-dirty-64-sensors-whole`, the same twins in the same
//!   run with every record whole (a cluster node's records, and every
//!   node's before issue 28). Printed once: its record
//!   sizes, and how large a record of only what changed would be: the
//!   record less its unchanged sensors' entries, each changed entry with its
//!   times made absolute.
//! * `checkpoint/layout/*`: the 64-sensor twins' checkpoint CPU (counted
//!   as above, timers left out) in five ways of storing a twin, to pick the
//!   incremental record's design by measurement: today's whole record
//!   under one key (`full-record`); the same written without the
//!   write-ahead log, the memtable flushed at each checkpoint instead
//!   (`full-record-no-wal-flushed`); the record less its sensors under one
//!   key and the sensors in groups of 16 under a key each, a checkpoint
//!   writing the groups with a sensor that reported
//!   (`key-per-16-sensors`); and one key taking, at each checkpoint, a
//!   merge operand of the record less its sensors and the reported
//!   sensors' entries, which a RocksDB merge operator folds at reads,
//!   flushes and compactions, with the entries' times absolute
//!   (`merge-operator`) or relative to a base per twin
//!   (`merge-operator-relative-times`).
//!   The part layouts build the header from the whole record
//!   (`TwinRecord::from_state`), so their figures include work a real
//!   implementation would skip. Printed once per layout: reading every
//!   twin back (keys, bytes per twin, time) and the store's size.
//! * `supervision/bare/100k` and `supervision/backed-up/100k`: one batch (a
//!   reading of every sensor) applied to each of 100k twins in turn, so each
//!   is out of cache as in a busy node; `backed-up` first copies the state
//!   as the host does before every batch (`TwinState::back_up`, the state a
//!   panic rolls back to) and lets it go after (`TwinState::keep`). The
//!   difference is what supervision costs a batch. `sensors-logged` keeps
//!   the sensors in the undo log instead of the copy
//!   (`SensorsBackup::Logged`, each saved on its first change).
//!   `supervision/*/halls-64-sensors`: the same for 30k twins of 64 sensors,
//!   a batch of one reading each (a busy node's chunks give a twin of many
//!   about that), where the log saves one sensor of 64; the host logs the
//!   sensors of types with `SensorsBackup::LOGGED_FROM` or more.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use twinstream::store::envelope::bincode_config;
use twinstream::store::{Checkpoint, Store, TimerChange};
use twinstream::topology::{self, OutputKind};
use twinstream::twin::model::{apply, next_deadline, Event, Input, Output, SensorsBackup, TwinState, NO_TS};
use twinstream::twin::record::{self, SensorRecord, TwinRecord};
use twinstream::twin::schema::{Model, OutputMask, TypeModel};

#[path = "support/pump.rs"]
mod pump;
use pump::{type_model, Fleet, Rng, BASE_TS};

const TWINS: usize = 10_000;
/// Distinct event streams the twins share (each twin from its own place).
const STREAMS: usize = 64;
/// Twins the supervision benchmark goes through in turn: ~100 MB of state,
/// more than the caches hold, so each batch starts with its twin out of
/// cache.
const COLD_TWINS: usize = 100_000;
/// Halls the supervision benchmark goes through in turn: ~100 MB of state
/// (2 KB of sensors each, and their windows).
const COLD_HALLS: usize = 30_000;
/// Readings a twin takes between two checkpoints: a second of its stream.
const READINGS: usize = 40;
/// Sensors of the many-sensor type ...
const MANY: usize = 64;
/// ... and how many of them report in a second (10 readings each).
const REPORTING: usize = 4;

/// CPU time of `clock` (a `CLOCK_*_CPUTIME_ID`) so far.
fn cpu(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The process's CPU time over `feed(twins)` then `write(twins)`, less this
/// thread's own over `feed`: what writing costs, RocksDB's threads
/// included, without the applying that made the twins dirty.
fn write_cpu<T: ?Sized>(twins: &mut T, feed: impl FnOnce(&mut T), write: impl FnOnce(&mut T)) -> Duration {
    let process = cpu(libc::CLOCK_PROCESS_CPUTIME_ID);
    let feeding = cpu(libc::CLOCK_THREAD_CPUTIME_ID);
    feed(twins);
    let fed = cpu(libc::CLOCK_THREAD_CPUTIME_ID) - feeding;
    write(twins);
    cpu(libc::CLOCK_PROCESS_CPUTIME_ID) - process - fed
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
    checkpoint_cpu(&mut g, "10k-dirty", &m, &mut fleet, Records::AsTheNode);

    let m = hall_model();
    let mut halls = Halls::warmed(&m, TWINS);
    many_sensors_changed(&m, &mut halls);
    checkpoint_cpu(&mut g, "10k-dirty-64-sensors", &m, &mut halls, Records::AsTheNode);
    checkpoint_cpu(&mut g, "10k-dirty-64-sensors-whole", &m, &mut halls, Records::Whole);
    g.finish();
}

/// Twins a checkpoint benchmark makes dirty.
trait Dirty {
    fn len(&self) -> usize;
    /// Every twin takes its next second of readings.
    fn second(&mut self);
    fn state(&self, i: usize) -> &TwinState;
    fn state_mut(&mut self, i: usize) -> &mut TwinState;
}

impl Dirty for Fleet<'_> {
    fn len(&self) -> usize {
        self.twins.len()
    }
    fn second(&mut self) {
        for i in 0..self.twins.len() {
            self.step(i, READINGS);
        }
    }
    fn state(&self, i: usize) -> &TwinState {
        &self.twins[i].st
    }
    fn state_mut(&mut self, i: usize) -> &mut TwinState {
        &mut self.twins[i].st
    }
}

/// How a checkpoint benchmark writes twin records.
#[derive(Clone, Copy, PartialEq)]
enum Records {
    /// As a node without a changelog does: a many-sensor twin's record in
    /// parts, merged in as the sensors that changed when they are few.
    AsTheNode,
    /// Every record whole (a cluster node; every node before issue 28).
    Whole,
}

/// The CPU of a round: every twin of `twins` takes a second of readings
/// (not counted), then is encoded as `records` says and staged with its
/// timer change into one checkpoint, committed without fsync (counted,
/// RocksDB's threads too).
fn checkpoint_cpu(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    m: &TypeModel,
    twins: &mut dyn Dirty,
    records: Records,
) {
    let n = twins.len();
    let assets: Vec<String> = (0..n).map(asset).collect();
    let mut stored: Vec<Option<i64>> = vec![None; n];
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), 1).expect("store opens");
    let mut enc = record::Encoder::default();
    // The last round's records: how many were operands, and their bytes.
    let (mut operands, mut bytes) = (0, 0);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::new("cpu", name), |b| {
        b.iter_custom(|rounds| {
            let mut spent = Duration::ZERO;
            for _ in 0..rounds {
                spent += write_cpu(
                    &mut *twins,
                    |t| t.second(),
                    |twins| {
                        let mut ckpt = Checkpoint::default();
                        for (i, asset) in assets.iter().enumerate() {
                            let st = twins.state_mut(i);
                            // As `TwinActor::snapshot` does.
                            if records == Records::AsTheNode && record::in_parts(m) {
                                let changed = st.sensors.take_changed();
                                enc.encode_parts(m, st, record::operand_pays(m, changed).then_some(changed));
                            } else {
                                enc.encode(m, st);
                            }
                            if enc.is_operand() {
                                store.merge_twin(&mut ckpt, 0, asset, enc.bytes());
                            } else {
                                store.put_twin(&mut ckpt, 0, asset, enc.bytes());
                            }
                            let new = next_deadline(m, st);
                            store.put_timer(&mut ckpt, 0, asset, TimerChange { old: stored[i], new });
                            stored[i] = new;
                        }
                        (operands, bytes) = (ckpt.operands(), ckpt.bytes());
                        store.commit(ckpt, false).expect("commit");
                    },
                );
            }
            spent
        });
    });
    if bytes == 0 {
        // Filtered out: nothing was measured.
        return;
    }
    // Reading every twin back as a restore does (RocksDB folds what
    // operands compaction has not folded yet).
    let t = std::time::Instant::now();
    let mut read = 0;
    store
        .for_each_twin(0, |_, v| {
            read += record::decode(v).map_or(0, |r| r.sensors.len());
            Ok(())
        })
        .expect("reads");
    println!(
        "checkpoint/cpu/{name}: the last round wrote {operands} operands of {n} records, {:.0} B per twin; \
         reading and decoding every twin back: {:.1} ms ({read} sensors)",
        bytes as f64 / n as f64,
        t.elapsed().as_secs_f64() * 1e3
    );
}

/// A hall of 64 temperature sensors with a 1 s tumbling window on each and
/// one rule.
fn hall_model() -> Arc<TypeModel> {
    let sensors: String = (0..MANY)
        .map(|i| format!("      s{i:02}: {{ unit: degC }}\n"))
        .collect();
    let text = format!(
        r#"version: 1
asset_types:
  hall:
    sensors:
{sensors}    watermark:
      out_of_orderness: 200ms
assets:
  - id: hall-*
    type: hall
sources:
  - name: events
    type: file
    decode: {{ asset: asset, sensor: sensor, ts: ts, value: value }}
windows:
  - {{ name: w1s, type: tumbling, size: 1s }}
rules:
  - name: hot
    when: "w1s.s00.avg > 30.0"
    severity: warning
"#
    );
    let topo = topology::parse(std::path::Path::new("hall.yaml"), &text).unwrap_or_else(|d| panic!("{d}"));
    Model::build(&topo, OutputMask::default().with(OutputKind::Alerts), true).types[0].clone()
}

struct Hall {
    st: TwinState,
    rng: Rng,
    second: i64,
    origin: u64,
    /// The sensors that reported in the last second.
    picked: [u16; REPORTING],
    /// Readings taken one at a time ([`Halls::reading`]).
    readings: i64,
}

impl Hall {
    /// `REPORTING` sensors picked at random.
    fn pick(&mut self) {
        let mut k = 0;
        while k < REPORTING {
            let s = (self.rng.next() % MANY as u64) as u16;
            if !self.picked[..k].contains(&s) {
                self.picked[k] = s;
                k += 1;
            }
        }
    }

    /// Reading `j` (of 10) of the `k`th picked sensor in the hall's
    /// current second.
    fn event(&mut self, j: i64, k: usize) -> Event {
        self.origin += 1;
        Event {
            ts: BASE_TS + self.second * 1000 + j * 100 + k as i64 * 7,
            value: ((20.0 + 5.0 * self.rng.unit()) * 64.0).round() / 64.0,
            sensor: self.picked[k],
            source: 0,
            origin: self.origin,
            redelivered: false,
            replayed: false,
        }
    }

    /// Applies `events` as a replay does (the digest moved out after).
    fn apply(&mut self, m: &TypeModel, events: &[Event], out: &mut Vec<Output>) {
        apply(m, &mut self.st, Input::Events(events), 0, out);
        black_box(out.len());
        out.clear();
        self.st.take_digest(|d| {
            black_box(d.len());
        });
    }
}

/// Twins of [`hall_model`]: in each second, `REPORTING` of the sensors,
/// picked at random, report 10 readings each.
struct Halls<'m> {
    m: &'m TypeModel,
    twins: Vec<Hall>,
    batch: Vec<Event>,
    out: Vec<Output>,
}

impl<'m> Halls<'m> {
    fn new(m: &'m TypeModel, n: usize) -> Self {
        Halls {
            m,
            twins: (0..n)
                .map(|i| Hall {
                    st: TwinState::new(m),
                    rng: Rng::new(i as u64 + 1),
                    second: 0,
                    origin: 0,
                    picked: [0; REPORTING],
                    readings: 0,
                })
                .collect(),
            batch: Vec::with_capacity(REPORTING * 10),
            out: Vec::with_capacity(64),
        }
    }

    /// `n` halls a minute into their streams.
    fn warmed(m: &'m TypeModel, n: usize) -> Self {
        let mut halls = Halls::new(m, n);
        for _ in 0..60 {
            halls.second();
        }
        halls
    }
}

impl Halls<'_> {
    /// Applies the next reading of hall `i` alone: a batch as a busy node's
    /// chunks give a twin of many (2 ms of input each).
    fn reading(&mut self, i: usize) {
        const PER_SECOND: i64 = REPORTING as i64 * 10;
        let t = &mut self.twins[i];
        let k = t.readings % PER_SECOND;
        if k == 0 {
            t.pick();
        }
        let event = t.event(k / REPORTING as i64, (k % REPORTING as i64) as usize);
        t.readings += 1;
        if t.readings % PER_SECOND == 0 {
            t.second += 1;
        }
        t.apply(self.m, std::slice::from_ref(&event), &mut self.out);
    }
}

impl Dirty for Halls<'_> {
    fn len(&self) -> usize {
        self.twins.len()
    }

    fn second(&mut self) {
        for t in &mut self.twins {
            t.pick();
            self.batch.clear();
            for j in 0..10 {
                for k in 0..REPORTING {
                    self.batch.push(t.event(j, k));
                }
            }
            t.apply(self.m, &self.batch, &mut self.out);
            t.second += 1;
        }
    }

    fn state(&self, i: usize) -> &TwinState {
        &self.twins[i].st
    }

    fn state_mut(&mut self, i: usize) -> &mut TwinState {
        &mut self.twins[i].st
    }
}

/// Prints the many-sensor twins' record sizes and what a record of only the
/// changed parts would take: the full record less the entries of the
/// sensors that did not change, each changed entry 9 bytes larger (its
/// times made absolute, as a part stored apart from the twin's `max_ts`
/// must be: the record stores every sensor's time relative to it, so every
/// entry's bytes change with any new reading).
fn many_sensors_changed(m: &TypeModel, halls: &mut Halls<'_>) {
    let before: Vec<TwinState> = halls.twins.iter().map(|t| t.st.clone()).collect();
    halls.second();
    let (mut full, mut parts, mut changed) = (0usize, 0usize, 0usize);
    let mut enc = record::Encoder::default();
    for (a, t) in before.iter().zip(&halls.twins) {
        enc.encode(m, &t.st);
        full += enc.bytes().len();
        let rec = TwinRecord::from_state(m, &t.st);
        let mut part = enc.bytes().len();
        for s in &rec.sensors {
            let i = s.sensor as usize;
            if a.sensors[i] == t.st.sensors[i] {
                part -= bincode::serde::encode_to_vec(s, bincode_config())
                    .expect("encodes")
                    .len();
            } else {
                part += 9;
                changed += 1;
            }
        }
        parts += part;
    }
    let n = halls.twins.len() as f64;
    println!(
        "checkpoint: {} twins of {MANY} sensors ({REPORTING} report in a second): records of {:.0} B on average; \
         a second apart {:.1} sensors changed per twin; a record of the changed parts only: {:.0} B ({:.0}% of the record)",
        halls.twins.len(),
        full as f64 / n,
        changed as f64 / n,
        parts as f64 / n,
        100.0 * parts as f64 / full as f64
    );
}

/// Sensors per key in the key-per-group layout.
const GROUP: usize = 16;

/// How a many-sensor twin's checkpoint could be stored (issue 28's
/// incremental records, measured before one is built).
#[derive(Clone, Copy)]
enum Layout {
    /// Today: the whole record under the twin's key.
    Full,
    /// The whole record, written without the write-ahead log, and the
    /// memtable flushed at each checkpoint (the flush its durable point).
    FullFlushed,
    /// The record less its sensors under `asset NUL h`, the sensors in
    /// groups of [`GROUP`] under `asset NUL g<n>`: a checkpoint writes the
    /// header and each group with a sensor that reported.
    Groups,
    /// One key: a checkpoint merges in the header and the entries of the
    /// sensors that reported, and a merge operator folds them into the
    /// value at reads, flushes and compactions.
    Merge,
    /// [`Layout::Merge`] with entry times relative to a base per twin (its
    /// `max_ts` at its first write, kept in the twin), not absolute.
    MergeRelative,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Full => "full-record",
            Layout::FullFlushed => "full-record-no-wal-flushed",
            Layout::Groups => "key-per-16-sensors",
            Layout::Merge => "merge-operator",
            Layout::MergeRelative => "merge-operator-relative-times",
        }
    }
}

/// A RocksDB with the store's options for twin families, and the parts'
/// merge operator.
fn layout_db(dir: &std::path::Path) -> rocksdb::DB {
    use rocksdb::DBCompressionType as C;
    let mut o = rocksdb::Options::default();
    o.create_if_missing(true);
    o.set_write_buffer_size(16 << 20);
    o.set_max_background_jobs(2);
    o.set_max_total_wal_size(64 << 20);
    o.set_compression_per_level(&[C::None, C::None, C::Lz4, C::Lz4, C::Lz4, C::Lz4, C::Lz4]);
    o.set_merge_operator("twin-parts", merge_parts, merge_parts);
    rocksdb::DB::open(&o, dir).expect("the layout benchmark's store opens")
}

/// The record of `st` less its sensors, as the part layouts keep it.
fn header(m: &TypeModel, st: &TwinState, out: &mut Vec<u8>) {
    let mut rec = TwinRecord::from_state(m, st);
    rec.sensors.clear();
    let h = bincode::serde::encode_to_vec(&rec, bincode_config()).expect("encodes");
    out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    out.extend_from_slice(&h);
}

/// Sensor `s`'s entry, its times relative to `base` (0: absolute):
/// `[sensor][length][record]`.
fn entry(st: &TwinState, s: u16, base: i64, out: &mut Vec<u8>) {
    let l = st.sensors[s as usize];
    if l.ts == NO_TS {
        return;
    }
    let rec = SensorRecord {
        sensor: s,
        age_ms: l.ts - base,
        value: l.value,
        seen_back: (l.seen != NO_TS).then(|| l.seen - base),
        source: l.source,
        quality: l.quality,
        estimate: None,
    };
    let e = bincode::serde::encode_to_vec(rec, bincode_config()).expect("encodes");
    out.extend_from_slice(&s.to_le_bytes());
    out.extend_from_slice(&(e.len() as u16).to_le_bytes());
    out.extend_from_slice(&e);
}

/// Folds part values, oldest first, into one: the newest header, and per
/// sensor the newest entry.
fn fold_parts<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut header: &[u8] = &[];
    let mut entries: BTreeMap<u16, &[u8]> = BTreeMap::new();
    for v in values {
        let n = u32::from_le_bytes(v[..4].try_into().expect("4 bytes")) as usize;
        header = &v[4..4 + n];
        let mut rest = &v[4 + n..];
        while rest.len() >= 4 {
            let s = u16::from_le_bytes([rest[0], rest[1]]);
            let len = u16::from_le_bytes([rest[2], rest[3]]) as usize;
            entries.insert(s, &rest[4..4 + len]);
            rest = &rest[4 + len..];
        }
    }
    let mut out = Vec::with_capacity(4 + header.len() + entries.values().map(|e| 4 + e.len()).sum::<usize>());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(header);
    for (s, e) in entries {
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(&(e.len() as u16).to_le_bytes());
        out.extend_from_slice(e);
    }
    out
}

fn merge_parts(_key: &[u8], existing: Option<&[u8]>, operands: &rocksdb::MergeOperands) -> Option<Vec<u8>> {
    Some(fold_parts(existing.into_iter().chain(operands.iter())))
}

/// What a checkpoint writes of one twin in `layout`: `changed` are the
/// sensors that reported since its last write (`None`: its first write,
/// the whole twin); `base` is what entry times are relative to.
#[allow(clippy::too_many_arguments)]
fn stage(
    layout: Layout,
    batch: &mut rocksdb::WriteBatch,
    m: &TypeModel,
    st: &TwinState,
    asset: &str,
    changed: Option<&[u16]>,
    base: i64,
    enc: &mut record::Encoder,
    buf: &mut Vec<u8>,
) {
    // Every sensor only at a twin's first write, outside the measured rounds.
    let all: Vec<u16>;
    let sensors = match changed {
        Some(changed) => changed,
        None => {
            all = (0..MANY as u16).collect();
            &all
        }
    };
    let key = |tail: &[u8]| [asset.as_bytes(), &[0], tail].concat();
    buf.clear();
    match layout {
        Layout::Full | Layout::FullFlushed => {
            enc.encode(m, st);
            batch.put(asset, enc.bytes());
        }
        Layout::Groups => {
            header(m, st, buf);
            batch.put(key(b"h"), &buf[..]);
            let mut groups: Vec<usize> = sensors.iter().map(|s| *s as usize / GROUP).collect();
            groups.sort_unstable();
            groups.dedup();
            for g in groups {
                buf.clear();
                for s in g * GROUP..(g + 1) * GROUP {
                    entry(st, s as u16, 0, buf);
                }
                batch.put(key(&[b'g', g as u8]), &buf[..]);
            }
        }
        Layout::Merge | Layout::MergeRelative => {
            header(m, st, buf);
            for s in sensors {
                entry(st, *s, base, buf);
            }
            match changed {
                Some(_) => batch.merge(asset, &buf[..]),
                None => batch.put(asset, &buf[..]),
            }
        }
    }
}

/// The checkpoint CPU of the many-sensor twins in each [`Layout`], as
/// [`checkpoint_cpu`] counts it (timers left out, the same in every
/// layout); then, once, how long reading every twin back takes and what
/// the store holds.
fn bench_layout(c: &mut Criterion) {
    let m = hall_model();
    let mut halls = Halls::warmed(&m, TWINS);
    // What the part layouts' header costs beyond what they need: the whole
    // record built to drop its sensors.
    let n = halls.len();
    let mut enc = record::Encoder::default();
    let t = std::time::Instant::now();
    for i in 0..n {
        black_box(TwinRecord::from_state(&m, halls.state(i)));
    }
    let built = t.elapsed();
    let t = std::time::Instant::now();
    for i in 0..n {
        enc.encode(&m, halls.state(i));
        black_box(enc.bytes().len());
    }
    let encoded = t.elapsed();
    println!(
        "checkpoint/layout: per twin, building the whole record (the part layouts' header) {:.2} us, encoding it {:.2} us",
        built.as_secs_f64() * 1e6 / n as f64,
        encoded.as_secs_f64() * 1e6 / n as f64
    );
    let assets: Vec<String> = (0..n).map(asset).collect();
    let mut g = c.benchmark_group("checkpoint");
    g.sample_size(10);
    for layout in [
        Layout::Full,
        Layout::FullFlushed,
        Layout::Groups,
        Layout::Merge,
        Layout::MergeRelative,
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = layout_db(dir.path());
        let mut buf = Vec::new();
        let bases: Vec<i64> = (0..n)
            .map(|i| match layout {
                Layout::MergeRelative => halls.state(i).max_ts,
                _ => 0,
            })
            .collect();
        let mut batch = rocksdb::WriteBatch::default();
        for (i, a) in assets.iter().enumerate() {
            stage(
                layout,
                &mut batch,
                &m,
                halls.state(i),
                a,
                None,
                bases[i],
                &mut enc,
                &mut buf,
            );
        }
        db.write(batch).expect("write");
        let mut written = 0;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("layout", layout.name()), |b| {
            b.iter_custom(|rounds| {
                let mut spent = Duration::ZERO;
                for _ in 0..rounds {
                    spent += write_cpu(
                        &mut halls,
                        |h| h.second(),
                        |halls| {
                            let mut batch = rocksdb::WriteBatch::default();
                            for (i, a) in assets.iter().enumerate() {
                                let t = &halls.twins[i];
                                let changed = Some(&t.picked[..]);
                                stage(layout, &mut batch, &m, &t.st, a, changed, bases[i], &mut enc, &mut buf);
                            }
                            written = batch.size_in_bytes();
                            let mut wo = rocksdb::WriteOptions::default();
                            wo.set_sync(false);
                            let flushed = matches!(layout, Layout::FullFlushed);
                            wo.disable_wal(flushed);
                            db.write_opt(batch, &wo).expect("write");
                            if flushed {
                                db.flush().expect("flush");
                            }
                        },
                    );
                }
                spent
            });
        });
        if written == 0 {
            // Filtered out: nothing was measured.
            continue;
        }
        let t = std::time::Instant::now();
        let (mut keys, mut bytes) = (0usize, 0usize);
        for kv in db.iterator(rocksdb::IteratorMode::Start) {
            let (k, v) = kv.expect("read");
            keys += 1;
            bytes += k.len() + v.len();
        }
        let read = t.elapsed();
        let prop = |p: &str| db.property_int_value(p).ok().flatten().unwrap_or(0);
        println!(
            "checkpoint/layout/{}: a checkpoint writes {:.0} B per twin; reading every twin back: {keys} keys, {:.0} B per twin, {:.1} ms; SST files {:.1} MiB, memtables {:.1} MiB",
            layout.name(),
            written as f64 / n as f64,
            bytes as f64 / n as f64,
            read.as_secs_f64() * 1e3,
            prop("rocksdb.total-sst-files-size") as f64 / (1 << 20) as f64,
            prop("rocksdb.cur-size-all-mem-tables") as f64 / (1 << 20) as f64,
        );
    }
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
    for how in [SensorsBackup::Copied, SensorsBackup::Logged] {
        g.bench_function(BenchmarkId::new(supervised(how), "100k"), |b| {
            b.iter(|| {
                for i in 0..COLD_TWINS {
                    let marks = fleet.twins[i].st.back_up(&mut backup, how);
                    fleet.step(i, pump::SENSORS);
                    black_box(fleet.twins[i].st.keep(&backup, marks));
                }
            })
        });
    }
    g.finish();

    // Halls of 64 sensors, one reading per batch.
    let m = hall_model();
    let mut halls = Halls::new(&m, COLD_HALLS);
    for _ in 0..2 {
        halls.second();
    }
    let mut backup = TwinState::new(&m);
    let mut g = c.benchmark_group("supervision");
    g.sample_size(20);
    g.throughput(Throughput::Elements(COLD_HALLS as u64));
    g.bench_function(BenchmarkId::new("bare", "halls-64-sensors"), |b| {
        b.iter(|| {
            for i in 0..COLD_HALLS {
                halls.reading(i);
            }
        })
    });
    for how in [SensorsBackup::Copied, SensorsBackup::Logged] {
        g.bench_function(BenchmarkId::new(supervised(how), "halls-64-sensors"), |b| {
            b.iter(|| {
                for i in 0..COLD_HALLS {
                    let marks = halls.twins[i].st.back_up(&mut backup, how);
                    halls.reading(i);
                    black_box(halls.twins[i].st.keep(&backup, marks));
                }
            })
        });
    }
    g.finish();
}

/// The benchmark's name for a way of backing up.
fn supervised(how: SensorsBackup) -> &'static str {
    match how {
        SensorsBackup::Copied => "backed-up",
        SensorsBackup::Logged => "sensors-logged",
    }
}

criterion_group!(benches, bench_checkpoint, bench_layout, bench_supervision);
criterion_main!(benches);
