//! Kafka ingest benchmark: twinstream next to a bare rdkafka consumer reading
//! the same topic of a real Kafka-compatible broker, in the same run.
//!
//! Run it with `scripts/bench-kafka.sh [FILE]` (workload v1 JSON lines; it
//! builds the release binary and points `TWINSTREAM_BIN` at it).
//!
//! 1. Starts tansu (SQLite storage) on 127.0.0.1 and an ephemeral port and
//!    produces every line of FILE into a 6-partition topic, keyed by the
//!    line's `asset` (idempotent producer, normal batching).
//! 2. **A, bare consumer**: an rdkafka `BaseConsumer` assigned every
//!    partition from the beginning counts the records; rate = records /
//!    (assignment -> last record). It does nothing else: the reference.
//! 3. **B, twinstream**: `twinstream run` with `topologies/workload-v1.yaml`'s
//!    twin model and a `kafka` source (snapshots on, fsync); rate = records /
//!    (its log line "Kafka partitions assigned" -> "Kafka source caught up", which
//!    it prints when librdkafka's statistics, every second, show no lag on
//!    any partition). B includes up to a second of statistics interval, and
//!    at most `max_inflight_chunks` chunks were routed and not yet applied at
//!    that line.
//! 3. **S, bare stream consumer**: the same with rdkafka's async
//!    `StreamConsumer` on a tokio current-thread runtime - the alternative
//!    the source could be built on (it is a `BaseConsumer` on a thread of its
//!    own; S/A says what the other choice would cost or gain). A and S also
//!    report the CPU time they spent per record (this process's, which runs
//!    nothing else meanwhile): with the broker as the ceiling, that is where
//!    the two can differ.
//!    Before A, one offset commit of a throwaway group lets the broker pay
//!    for its first write after the load, which otherwise falls on the
//!    first twinstream phase (the only one that writes): without it that
//!    phase was slower than the second in 3 of 4 runs (by 4-36%).
//! 4. A, S and B again (each twice, alternating, so a noisy neighbour hits
//!    all of them).
//! 5. **C, latency at half the node's sustainable rate** (half of B's mean
//!    rate; `BENCH_LATENCY_RATE` runs C alone at the rate it gives, without
//!    the load and the rounds above). For 10 s, records
//!    `{"asset", "sensor", "ts", "value"}` round-robin over 1000 pumps x 4
//!    sensors with `ts` = wall-clock epoch ms at the produce call, keyed by
//!    asset, into a fresh 6-partition topic, produced with `linger.ms` 1
//!    (the usual low-latency setting; librdkafka batches what queues
//!    meanwhile anyway; `BENCH_LATENCY_LINGER_MS`). Two consumers read them
//!    at the same time, both with `fetch.wait.max.ms` 10
//!    (`BENCH_LATENCY_FETCH_WAIT_MS`; librdkafka's default 500 is how long
//!    tansu holds a fetch when nothing is there, and it does not answer
//!    early when records arrive: 400+ ms at any rate):
//!    * **bare**: a `BaseConsumer` on a thread of this process; latency =
//!      received - `ts`: what the producer and the broker add;
//!    * **twinstream**: `twinstream run` with workload v1's twin model (1 s
//!      windows, 200 ms watermark, snapshots every second with fsync) plus
//!      the rule `vibration > 95` on raw readings, and a stdout sink of
//!      `twin_updates` and `alerts`. After one warm-up reading per pump
//!      (the twins exist), latency = the line read - `ts`, for every sensor
//!      value in a twin update (produce -> twin update) and every alert
//!      transition of that rule (produce of the reading -> alert out);
//!    * **added by twinstream**: for the same record, twinstream's line read
//!      less the bare consumer's receipt (negative when twinstream's fetch
//!      came first).
//!
//!    p50 / p90 / p99 / p99.9 / max of each, and the CPU each process used.
//!    With tansu the broker is the bottleneck of this phase: it takes a
//!    core at 1,000 records/s with two consumers fetching every 10 ms
//!    (BENCHMARKS.md, "End to end").
//!
//! B/A is the ratio the issue targets (>= 0.90). Reported, never asserted.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

#[path = "support/broker.rs"]
mod broker;
#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/latency.rs"]
mod latency;
#[path = "support/system.rs"]
mod system;
#[path = "support/twinstream.rs"]
mod twinstream;
#[path = "support/updates.rs"]
mod updates;

use cpu::proc_cpu;

use broker::Broker;
use latency::{paced, Latency, Paced};
use system::{epoch_ms, load_average, wall_ms, CpuMeter};
use twinstream::Twinstream;
use updates::{asset, sensors_yaml, Arrivals, Tracker, SENSORS, SPIKE_RULE};

const TOPIC: &str = "telemetry";
const PARTITIONS: i32 = 6;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let Some(file) = args.first().map(PathBuf::from) else {
        eprintln!("usage: cargo bench --bench kafka -- FILE   (workload v1 JSON lines)");
        std::process::exit(2);
    };
    let bin = std::env::var("TWINSTREAM_BIN").expect("TWINSTREAM_BIN: the twinstream binary to measure");
    let broker = Broker::start();
    let brokers = broker.brokers();
    if let Ok(rate) = std::env::var("BENCH_LATENCY_RATE") {
        // Phase C alone, at the rate given (of an earlier run's B, halved).
        let rate: f64 = rate.parse().expect("BENCH_LATENCY_RATE: records per second");
        if let Err(e) = latencies(&bin, &broker, rate) {
            eprintln!("phase C failed: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    broker::create_topic(&brokers, TOPIC, PARTITIONS);
    let t = Instant::now();
    let records = produce(&brokers, &file);
    println!(
        "- produced {records} records into {PARTITIONS} partitions in {:.1} s ({:.0} msg/s; tansu, SQLite storage)",
        t.elapsed().as_secs_f64(),
        records as f64 / t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    settle(&brokers);
    println!(
        "- broker settled: a first offset commit after the load took {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let mut bare = Vec::new();
    let mut stream = Vec::new();
    let mut cpu_ratio = Vec::new();
    let mut ours = Vec::new();
    for round in 1..=2 {
        let (cpu, broker_cpu) = (cpu_seconds(), proc_cpu(broker.child.id()));
        let a = bare_consumer(&brokers, records, round);
        let a_cpu = cpu_seconds() - cpu;
        println!(
            "- A{round} bare consumer: {records} records in {a:.2} s = **{:.0} rec/s**, {:.2} us CPU/record; broker {:.2} cores",
            records as f64 / a,
            a_cpu * 1e6 / records as f64,
            (proc_cpu(broker.child.id()) - broker_cpu) / a
        );
        bare.push(records as f64 / a);
        let (cpu, broker_cpu) = (cpu_seconds(), proc_cpu(broker.child.id()));
        let s = stream_consumer(&brokers, records, round);
        let s_cpu = cpu_seconds() - cpu;
        println!(
            "- S{round} bare StreamConsumer: {records} records in {s:.2} s = **{:.0} rec/s**, {:.2} us CPU/record; broker {:.2} cores",
            records as f64 / s,
            s_cpu * 1e6 / records as f64,
            (proc_cpu(broker.child.id()) - broker_cpu) / s
        );
        stream.push(records as f64 / s);
        cpu_ratio.push(s_cpu / a_cpu);
        let broker_cpu = proc_cpu(broker.child.id());
        let (b, b_cpu) = twinstream(&bin, &brokers);
        println!(
            "- B{round} twinstream: {records} records in {b:.2} s = **{:.0} rec/s**, {:.2} us CPU/record (twinstream process); broker {:.2} cores",
            records as f64 / b,
            b_cpu * 1e6 / records as f64,
            (proc_cpu(broker.child.id()) - broker_cpu) / b
        );
        ours.push(records as f64 / b);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "- B/A = **{:.2}** (mean of {:.0} and {:.0} rec/s over {:.0} and {:.0}); target >= 0.90",
        mean(&ours) / mean(&bare),
        ours[0],
        ours[1],
        bare[0],
        bare[1]
    );
    println!(
        "- StreamConsumer/BaseConsumer: rate **{:.2}** (mean of {:.0} and {:.0} rec/s), CPU per record **{:.2}** ({:.2}, {:.2})",
        mean(&stream) / mean(&bare),
        stream[0],
        stream[1],
        mean(&cpu_ratio),
        cpu_ratio[0],
        cpu_ratio[1]
    );
    if let Err(e) = latencies(&bin, &broker, mean(&ours) / 2.0) {
        eprintln!("phase C failed: {e:#}");
        std::process::exit(1);
    }
    println!("- load average at the end: {}", load_average());
}

/// Pumps in phase C (each has the 4 sensors of [`SENSORS`]).
const LATENCY_ASSETS: usize = 1000;
/// How long phase C produces, per consumer.
const LATENCY_SECS: f64 = 10.0;
/// Phase C's topic.
const LATENCY_TOPIC: &str = "latency";
/// Every wait of phase C that must complete.
const LATENCY_TIMEOUT: Duration = Duration::from_secs(180);

/// Phase C: latency at `rate` records/s through twinstream, with a bare
/// consumer reading the same records meanwhile.
fn latencies(bin: &str, broker: &Broker, rate: f64) -> anyhow::Result<()> {
    let brokers = broker.brokers();
    println!(
        "- C latency at {rate:.0} rec/s, {LATENCY_ASSETS} pumps x 4 sensors, for {LATENCY_SECS} s; \
         twinstream and a bare consumer read the same records at the same time:"
    );
    broker::create_topic(&brokers, LATENCY_TOPIC, PARTITIONS);
    let producer = latency_producer(&brokers);
    let dir = tempfile::tempdir()?;
    let topo = dir.path().join("latency.yaml");
    std::fs::write(&topo, latency_topology(&brokers))?;
    let state = dir.path().join("state");
    let mut ts = Twinstream::start(Path::new(bin), &topo, &state)?;
    ts.wait_stderr("Kafka partitions assigned", LATENCY_TIMEOUT)?;
    let start_ms = epoch_ms();
    let bare = BareLatency::start(&brokers, start_ms);
    let mut tracker = Tracker::new(LATENCY_ASSETS);
    // Warm-up: one reading per pump, so C measures twins that exist.
    let mut warm = vec![i64::MIN; tracker.pairs()];
    for a in 0..LATENCY_ASSETS {
        let ts = start_ms - 1000;
        broker::send(
            &producer,
            BaseRecord::to(LATENCY_TOPIC)
                .key(&asset(a))
                .payload(&record(a, 0, ts, 1.0)),
        );
        warm[a * SENSORS.len()] = ts;
    }
    tracker.expect(warm);
    anyhow::ensure!(
        ts.pump(&mut tracker, Instant::now() + LATENCY_TIMEOUT)?,
        "timed out waiting for the warm-up readings in twin updates"
    );
    tracker.latency_from = start_ms;
    tracker.arrivals = Some(Arrivals::default());
    let cpu = CpuMeter::start(&[
        ("broker", broker.child.id()),
        ("twinstream", ts.child.id()),
        ("bench", std::process::id()),
    ]);
    let paced = std::thread::spawn(move || produce_paced(&producer, rate, start_ms));
    let deadline = Instant::now() + Duration::from_secs_f64(LATENCY_SECS) + LATENCY_TIMEOUT;
    while !paced.is_finished() {
        ts.pump_for(&mut tracker, Duration::from_millis(20))?;
        anyhow::ensure!(Instant::now() < deadline, "the paced producer did not finish");
    }
    let run = paced
        .join()
        .map_err(|_| anyhow::anyhow!("the paced producer panicked"))??;
    tracker.expect(run.last.clone());
    anyhow::ensure!(
        ts.pump(&mut tracker, Instant::now() + LATENCY_TIMEOUT)?,
        "timed out waiting for phase C's last readings: {} (asset, sensor) pairs missing",
        tracker.missing
    );
    let received = bare.finish(run.published)?;
    let cpu = cpu.stop();
    let bare = Latency::new(
        received.iter().map(|(&(_, ts), &at)| at - ts as f64).collect(),
        rate,
        &run,
        None,
    )?;
    println!(
        "  - bare consumer: {}",
        bare.describe("records received, produce -> received")
    );
    let updates = Latency::new(std::mem::take(&mut tracker.latencies), rate, &run, None)?;
    println!(
        "  - twinstream, twin updates: {}",
        updates.describe("sensor values in twin updates, produce -> update line read")
    );
    let alerts = Latency::new(tracker.take_alerts("vibration-spike"), rate, &run, None)?;
    println!(
        "  - twinstream, alerts: {}",
        alerts.describe("alert transitions of `vibration > 95`, produce of the reading -> alert line read")
    );
    // What twinstream adds: when a reading (or the alert it caused) came
    // out of twinstream less when the bare consumer got the same record.
    let arrivals = tracker.arrivals.take().expect("on");
    let added = |at: &[(usize, i64, f64)]| -> Vec<f64> {
        at.iter()
            .filter_map(|(pair, ts, wall)| Some(wall - received.get(&(*pair, *ts))?))
            .collect()
    };
    let added_updates = Latency::new(added(&arrivals.updates), rate, &run, None)?;
    let added_alerts = Latency::new(added(&arrivals.alerts), rate, &run, None)?;
    println!(
        "  - added by twinstream (the same record: twinstream's line read - the bare consumer's receipt): \
         twin updates p50 **{:.2} ms**, p99 **{:.2} ms**, p99.9 **{:.2} ms** ({} values); \
         alerts p50 **{:.2} ms**, p99 **{:.2} ms**, p99.9 **{:.2} ms** ({} transitions)",
        added_updates.p50,
        added_updates.p99,
        added_updates.p999,
        added_updates.values,
        added_alerts.p50,
        added_alerts.p99,
        added_alerts.p999,
        added_alerts.values
    );
    println!("    - {cpu}");
    let (events, dead) = ts.stop(&state)?;
    anyhow::ensure!(dead == 0, "twinstream dead-lettered {dead} records");
    println!("  - twinstream stopped cleanly ({events} events applied)");
    println!(
        "- C summary (ms, p50 / p99 / p99.9 / max): bare consumer {}; twinstream: twin update {}, alert out {}; \
         added by twinstream: twin update {}, alert out {}",
        bare.cells(),
        updates.cells(),
        alerts.cells(),
        added_updates.cells(),
        added_alerts.cells()
    );
    Ok(())
}

/// A record of phase C, as the bare consumer reads it.
#[derive(serde::Deserialize)]
struct LatencyRecord {
    asset: String,
    sensor: String,
    ts: i64,
}

/// A consumer of phase C's topic beside twinstream, on a thread of its own:
/// the latency of every record with `ts` at or after the start.
struct BareLatency {
    /// When each record with `ts` at or after the start was received, by
    /// ((asset, sensor) pair, `ts`): wall ms.
    received: Arc<Mutex<HashMap<(usize, i64), f64>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl BareLatency {
    /// Assigned every partition from the beginning when this returns.
    fn start(brokers: &str, from_ms: i64) -> BareLatency {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "bare-latency")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", fetch_wait_ms())
            .create()
            .expect("a consumer");
        consumer
            .fetch_metadata(Some(LATENCY_TOPIC), Duration::from_secs(10))
            .expect("the topic's metadata");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(LATENCY_TOPIC, p, Offset::Beginning).unwrap();
        }
        consumer.assign(&tpl).expect("an assignment");
        let received = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let now = wall_ms();
                let rec: LatencyRecord =
                    serde_json::from_slice(m.payload().unwrap_or_default()).expect("a record of phase C");
                if rec.ts >= from_ms {
                    let asset: usize = rec.asset["pump-".len()..].parse().expect("a pump");
                    let sensor = SENSORS.iter().position(|s| *s == rec.sensor).expect("a sensor");
                    r.lock().unwrap().insert((asset * SENSORS.len() + sensor, rec.ts), now);
                }
            }
        });
        BareLatency { received, stop, thread }
    }

    /// Waits for `records` records and returns when each came.
    fn finish(self, records: u64) -> anyhow::Result<HashMap<(usize, i64), f64>> {
        let deadline = Instant::now() + LATENCY_TIMEOUT;
        loop {
            let got = self.received.lock().unwrap().len() as u64;
            if got >= records {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the bare consumer received {got} of {records} records"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the bare consumer panicked"))?;
        let received = std::mem::take(&mut *self.received.lock().unwrap());
        Ok(received)
    }
}

/// The consumers' `fetch.wait.max.ms` in phase C (`BENCH_LATENCY_FETCH_WAIT_MS`).
fn fetch_wait_ms() -> String {
    std::env::var("BENCH_LATENCY_FETCH_WAIT_MS").unwrap_or_else(|_| "10".into())
}

/// A producer for the latency phase: idempotent, keyed like the load,
/// `linger.ms` 1 (`BENCH_LATENCY_LINGER_MS` to change it).
fn latency_producer(brokers: &str) -> ThreadedProducer<DefaultProducerContext> {
    let linger = std::env::var("BENCH_LATENCY_LINGER_MS").unwrap_or_else(|_| "1".into());
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", linger)
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("a producer")
}

fn record(asset_no: usize, sensor: usize, ts: i64, value: f64) -> String {
    format!(
        r#"{{"asset":"{}","sensor":"{}","ts":{ts},"value":{value}}}"#,
        asset(asset_no),
        SENSORS[sensor]
    )
}

/// Produces phase C's records at `rate` for [`LATENCY_SECS`].
fn produce_paced(
    producer: &ThreadedProducer<DefaultProducerContext>,
    rate: f64,
    start_ms: i64,
) -> anyhow::Result<Paced> {
    let run = paced(
        LATENCY_ASSETS * SENSORS.len(),
        rate,
        LATENCY_SECS,
        start_ms,
        |pair, ts, value| {
            let (a, s) = (pair / SENSORS.len(), pair % SENSORS.len());
            broker::send(
                producer,
                BaseRecord::to(LATENCY_TOPIC)
                    .key(&asset(a))
                    .payload(&record(a, s, ts, value)),
            );
            Ok(())
        },
    )?;
    producer.flush(LATENCY_TIMEOUT)?;
    Ok(run)
}

/// Workload v1's twin model with a Kafka source on `latency`, the rule
/// [`SPIKE_RULE`] and a stdout sink of twin updates and alerts.
fn latency_topology(brokers: &str) -> String {
    let sensors = sensors_yaml();
    let fetch_wait = fetch_wait_ms();
    format!(
        r#"version: 1
node:
  name: bench-kafka-latency
  snapshot:
    interval: 1s
    max_events: 1000000
asset_types:
  pump:
    sensors:
{sensors}    watermark:
      out_of_orderness: 200ms
assets:
  - id: "pump-*"
    type: pump
sources:
  - name: events
    type: kafka
    brokers: "{brokers}"
    topics: [{LATENCY_TOPIC}]
    properties: {{ fetch.wait.max.ms: "{fetch_wait}" }}
    decode: {{ asset: asset, sensor: sensor, ts: ts, value: value }}
windows:
  - name: w1s
    type: tumbling
    size: 1s
rules:
  - name: vibration-high
    when: "w1s.vibration.avg > 7.0"
{SPIKE_RULE}sinks:
  - name: out
    type: stdout
    outputs: [twin_updates, alerts]
"#
    )
}

/// Produces every line of `file`, keyed by its `asset`; returns the count.
fn produce(brokers: &str, file: &Path) -> u64 {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let reader = BufReader::with_capacity(1 << 20, std::fs::File::open(file).unwrap());
    let mut n = 0u64;
    for line in reader.lines() {
        let line = line.unwrap();
        let key = line
            .split("\"asset\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string();
        broker::send(&producer, BaseRecord::to(TOPIC).key(&key).payload(&line));
        n += 1;
    }
    producer.flush(Duration::from_secs(600)).unwrap();
    n
}

/// CPU time of this process so far (user + system, every thread): the bare
/// consumers are all that runs in it while they are timed.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Commits an offset for a throwaway group and waits for it: the broker's
/// first write after the bulk load (tansu's SQLite storage may fold its
/// write-ahead log into the database then) is paid here, not by whichever
/// phase writes first (only twinstream commits offsets).
fn settle(brokers: &str) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "settle")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Offset(0)).unwrap();
    }
    consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync).unwrap();
}

/// Assigns every partition from the beginning, as twinstream does (metadata
/// first); returns when.
fn assign_all<C: rdkafka::consumer::ConsumerContext>(consumer: &impl Consumer<C>) -> Instant {
    consumer.fetch_metadata(Some(TOPIC), Duration::from_secs(10)).unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    Instant::now()
}

/// Seconds from the assignment to the `records`-th record.
fn bare_consumer(brokers: &str, records: u64, round: u32) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bare-{round}"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let assigned = assign_all(&consumer);
    let mut seen = 0u64;
    let deadline = Instant::now() + Duration::from_secs(1200);
    while seen < records {
        assert!(Instant::now() < deadline, "the bare consumer read only {seen} records");
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            seen += 1;
        }
    }
    assigned.elapsed().as_secs_f64()
}

/// Seconds from the assignment to the `records`-th record, read through
/// rdkafka's async `StreamConsumer` on a tokio current-thread runtime.
fn stream_consumer(brokers: &str, records: u64, round: u32) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("stream-{round}"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let assigned = assign_all(&consumer);
    rt.block_on(async {
        let mut seen = 0u64;
        while seen < records {
            match tokio::time::timeout(Duration::from_secs(1200), consumer.recv()).await {
                Ok(Ok(_)) => seen += 1,
                Ok(Err(e)) => panic!("the stream consumer failed after {seen} records: {e}"),
                Err(_) => panic!("the stream consumer read only {seen} records"),
            }
        }
    });
    assigned.elapsed().as_secs_f64()
}

/// Seconds from the assignment to twinstream's "caught up" log line, and the
/// CPU seconds its process had used by then.
fn twinstream(bin: &str, brokers: &str) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(repo.join("topologies/workload-v1.yaml"))
        .unwrap()
        .replace(
            "    type: file          # the file is given on the `replay` command line\n",
            &format!("    type: kafka\n    brokers: \"{brokers}\"\n    topics: [{TOPIC}]\n"),
        )
        .replace("      asset: asset\n", "");
    let topo = dir.path().join("kafka.yaml");
    std::fs::write(&topo, text).unwrap();
    let mut assigned = None;
    let mut child = Command::new(bin)
        .args([
            "run",
            topo.to_str().unwrap(),
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut elapsed = None;
    let mut lines = stderr.lines();
    let (mut checkpoints, mut pauses) = (0, 0);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("Kafka partitions assigned") {
            assigned = Some(Instant::now());
        }
        checkpoints += usize::from(line.contains("checkpoint durable"));
        pauses += usize::from(line.contains("Kafka partitions paused"));
        if line.contains("Kafka source caught up") {
            elapsed = Some((
                assigned.expect("assigned before caught up").elapsed().as_secs_f64(),
                proc_cpu(child.id()),
            ));
            break;
        }
        assert!(!line.contains("ERROR"), "twinstream: {line}");
    }
    // Keep reading its log while it stops: a full pipe would block it.
    let drain = std::thread::spawn(move || lines.for_each(drop));
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
    let _ = drain.join();
    println!("  (twinstream: {checkpoints} checkpoints, paused {pauses} times)");
    elapsed.expect("twinstream ended before it caught up")
}
