//! The chaos soak (RELIABILITY.md "Soak"): an edge node behind Mosquitto and
//! a three-node cluster on the Kafka-compatible broker, fed by an MQTT and a
//! Kafka producer with known content, while a fault injector, at random
//! times drawn from a seed, kills (`kill -9`) and restarts nodes, restarts
//! both brokers, cuts, slows or hangs the network between the nodes and
//! their brokers, fills a node's disk and steps a node's clock - several at
//! once. At the end the checker compares every twin with one uninterrupted
//! single-node run over the same input, every alert and command
//! (deduplicated by id) with that run's, and every process's peak memory
//! with its bound.
//!
//! `cargo test --release --test soak` is the short run CI makes;
//! `scripts/soak.sh` makes long ones. Settings, from the environment:
//! `SOAK_SECONDS` (faults for this long; 60), `SOAK_SEED` (the schedule;
//! default from the clock, always printed: the same seed replays the same
//! schedule), `SOAK_MEAN_GAP` (mean seconds between faults; 5),
//! `SOAK_RATE` (readings per second; 300), `SOAK_REPORT` (a file for the
//! JSON summary), `SOAK_LOGS` (a directory to keep every process's log in).
//!
//! What the checker takes as the input, and why:
//! * MQTT readings as a witness subscriber received them from Mosquitto. A
//!   publisher that retries after a lost PUBACK (a broker restart) makes
//!   Mosquitto deliver that reading twice, unmarked, to every subscriber:
//!   at least once on the publisher's hop, before twinstream sees it, so the
//!   single-node run gets it twice too.
//! * Kafka readings as the ingest topic holds them (a producer's retry
//!   across a broker restart can write a record twice). The checker also
//!   requires every produced reading to be there.
//!
//! Network faults sit at the brokers: every Kafka client (edge uplink,
//! cluster nodes, producer) reaches the broker through one proxy, which the
//! broker advertises as its address, and the edge reaches Mosquitto through
//! another. Cluster nodes exchange state only through the broker.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::{self, Proxy};
use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

const PARTITIONS: u32 = 6;
const CHANGELOG: &str = "soak-changelog";
/// Assets fed through the edge (MQTT) and straight into Kafka.
const MQTT_ASSETS: usize = 60;
const KAFKA_ASSETS: usize = 60;
/// How long the end may take to converge once the faults stop.
const SETTLE: Duration = Duration::from_secs(300);
/// The memory bound of every twinstream process (resident set), throughout.
const NODE_RSS_BOUND: u64 = 768 << 20;
/// Each node's state directory is a tmpfs of this size (the disk that
/// fills).
const DISK: &str = "256m";

/// The model every node runs: the edge evaluates `trip` (local) and
/// forwards every reading; the cluster evaluates the rest; the single node
/// all of it.
const MODEL: &str = r#"asset_types:
  pump:
    sensors: { temperature: { unit: degC }, current: { unit: A } }
    history: { raw: off, tiers: [{ every: 1s, keep: 7d }] }
assets: [{ id: "pump-*", type: pump }]
windows: [{ name: w1s, size: 1s }]
rules:
  - { name: trip, when: "temperature > 150", clear_when: "temperature < 130", local: true, severity: critical, command: { name: stop, value: 1 } }
  - { name: hot, when: "temperature > 100", clear_when: "temperature < 90" }
  - { name: busy, when: "w1s.current.avg > 60" }
"#;

struct Settings {
    seconds: u64,
    seed: u64,
    mean_gap: f64,
    rate: f64,
    report: Option<PathBuf>,
    logs: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let num = |name: &str, default: f64| {
            var(name).map_or(default, |v| v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}")))
        };
        let seed = var("SOAK_SEED").map_or_else(
            || {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    % 1_000_000_007
            },
            |v| v.parse().unwrap_or_else(|e| panic!("SOAK_SEED={v}: {e}")),
        );
        Settings {
            seconds: num("SOAK_SECONDS", 60.0) as u64,
            seed,
            mean_gap: num("SOAK_MEAN_GAP", 5.0),
            rate: num("SOAK_RATE", 300.0),
            report: var("SOAK_REPORT").map(PathBuf::from),
            logs: var("SOAK_LOGS").map(PathBuf::from),
        }
    }
}

/// The nodes: the edge, then the cluster's three.
const NODES: [&str; 4] = ["edge", "a", "b", "c"];
const CLUSTER: &[&str] = NODES.split_at(1).1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// The edge to Mosquitto.
    Mqtt,
    /// Everyone to the Kafka-compatible broker.
    Kafka,
}

/// One fault of the schedule.
#[derive(Debug, Clone)]
enum Fault {
    /// `kill -9`, then started again after `down`.
    Kill { node: usize, down: Duration },
    /// SIGTERM, and started again once it exited.
    Restart { node: usize },
    /// Mosquitto stopped (saving its sessions) for `down`.
    MqttBroker { down: Duration },
    /// The Kafka-compatible broker killed for `down`.
    KafkaBroker { down: Duration },
    /// A network fault on a link for `lasting`.
    Net {
        link: Link,
        fault: proxy::Fault,
        lasting: Duration,
    },
    /// The node's disk filled up for `lasting`.
    DiskFull { node: usize, lasting: Duration },
    /// The node's processing-time clock stepped by `ms` for `lasting`, then
    /// back (`TWINSTREAM_CLOCK_OFFSET_FILE` and SIGUSR2).
    ClockStep { node: usize, ms: i64, lasting: Duration },
}

impl Fault {
    fn kind(&self) -> &'static str {
        match self {
            Fault::Kill { .. } => "kill -9",
            Fault::Restart { .. } => "clean restart",
            Fault::MqttBroker { .. } => "MQTT broker restart",
            Fault::KafkaBroker { .. } => "Kafka broker restart",
            Fault::Net { fault, .. } => match fault {
                proxy::Fault::Partition => "network partition",
                proxy::Fault::Latency(_) => "network latency",
                proxy::Fault::Hang => "network hang",
                proxy::Fault::Pass => "network pass",
            },
            Fault::DiskFull { .. } => "disk full",
            Fault::ClockStep { .. } => "clock step",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill { node, down } => write!(f, "kill -9 {}, down {down:.1?}", NODES[*node]),
            Fault::Restart { node } => write!(f, "clean restart of {}", NODES[*node]),
            Fault::MqttBroker { down } => write!(f, "Mosquitto stopped for {down:.1?}"),
            Fault::KafkaBroker { down } => write!(f, "Kafka broker killed for {down:.1?}"),
            Fault::Net { link, fault, lasting } => write!(f, "{fault:?} on the {link:?} link for {lasting:.1?}"),
            Fault::DiskFull { node, lasting } => write!(f, "disk of {} full for {lasting:.1?}", NODES[*node]),
            Fault::ClockStep { node, ms, lasting } => {
                write!(
                    f,
                    "clock of {} stepped {:+.1} h for {lasting:.1?}",
                    NODES[*node],
                    *ms as f64 / 3.6e6
                )
            }
        }
    }
}

/// The faults of a run, at their times: a function of the seed alone.
fn schedule(seed: u64, seconds: u64, mean_gap: f64) -> Vec<(Duration, Fault)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let secs = |rng: &mut fastrand::Rng, lo: f64, hi: f64| Duration::from_secs_f64(lo + rng.f64() * (hi - lo));
    let mut at = 0.0;
    let mut out = Vec::new();
    loop {
        // Exponential gaps: faults cluster and overlap at random.
        at += (-mean_gap * (1.0 - rng.f64()).ln()).max(0.2);
        if at >= seconds as f64 {
            return out;
        }
        let node = rng.usize(0..NODES.len());
        let fault = match rng.u32(0..14) {
            0..=2 => Fault::Kill {
                node,
                down: secs(&mut rng, 0.2, 3.0),
            },
            3..=4 => Fault::Restart { node },
            5 => Fault::MqttBroker {
                down: secs(&mut rng, 0.0, 3.0),
            },
            6 => Fault::KafkaBroker {
                down: secs(&mut rng, 0.0, 3.0),
            },
            7..=10 => Fault::Net {
                link: if rng.bool() { Link::Mqtt } else { Link::Kafka },
                fault: match rng.u32(0..3) {
                    0 => proxy::Fault::Partition,
                    1 => proxy::Fault::Latency(Duration::from_millis(rng.u64(20..300))),
                    _ => proxy::Fault::Hang,
                },
                lasting: secs(&mut rng, 1.0, 8.0),
            },
            11..=12 => Fault::DiskFull {
                node,
                lasting: secs(&mut rng, 2.0, 8.0),
            },
            _ => Fault::ClockStep {
                node,
                // Half an hour to three hours, either way.
                ms: rng.i64(1_800_000..10_800_000) * if rng.bool() { 1 } else { -1 },
                lasting: secs(&mut rng, 2.0, 20.0),
            },
        };
        out.push((Duration::from_secs_f64(at), fault));
    }
}

/// A tmpfs mounted at a directory, unmounted when dropped: a disk the soak
/// can fill.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={DISK}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the soak mounts a tmpfs per node to fill its disk, which needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }

    /// Fills the disk to the last byte.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 1 << 20];
        while f.write_all(&block).is_ok() {}
        // The last partial block.
        while f.write_all(&block[..4096]).is_ok() {}
    }

    fn free(&self) {
        let _ = std::fs::remove_file(self.0.join("filler"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A node as a service manager runs it: restarted whenever it exits (after
/// a second), unless a fault holds it down.
struct Node {
    name: &'static str,
    topo: PathBuf,
    disk: Tmpfs,
    log: PathBuf,
    /// Its clock offset, in ms (`TWINSTREAM_CLOCK_OFFSET_FILE`).
    clock: PathBuf,
    child: Option<Child>,
    /// When it was last started.
    started: Option<Instant>,
    /// Not started again before this.
    held_until: Option<Instant>,
    /// When the soak sent SIGTERM (a clean restart).
    stopping: Option<Instant>,
    starts: u32,
    /// Exits the soak did not cause: status and the last error it logged.
    exits: Vec<String>,
    /// Clean stops that took longer than a minute (then killed).
    slow_stops: u32,
}

impl Node {
    fn new(name: &'static str, topo: PathBuf, dir: &Path) -> Node {
        Node {
            name,
            topo,
            disk: Tmpfs::mount(&dir.join(format!("state-{name}"))),
            log: dir.join(format!("{name}.log")),
            clock: dir.join(format!("clock-{name}")),
            child: None,
            started: None,
            held_until: None,
            stopping: None,
            starts: 0,
            exits: Vec::new(),
            slow_stops: 0,
        }
    }

    fn start(&mut self) {
        let log = OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = run_cmd(&self.topo, &self.disk.0.join("state"));
        cmd.env("TWINSTREAM_CLOCK_OFFSET_FILE", &self.clock)
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name)),
        );
        self.started = Some(Instant::now());
        self.starts += 1;
    }

    /// Steps its processing-time clock to the machine's plus `ms`. A node
    /// started in the last second may not have its SIGUSR2 handler yet (the
    /// signal would end it): it is not signalled, and reads the file at its
    /// next start.
    fn step_clock(&mut self, ms: i64) {
        let tmp = self.clock.with_extension("new");
        std::fs::write(&tmp, ms.to_string()).unwrap();
        std::fs::rename(&tmp, &self.clock).unwrap();
        let settled = self.started.is_some_and(|t| t.elapsed() > Duration::from_secs(1));
        if let (Some(pid), true) = (self.pid(), settled) {
            let _ = Command::new("kill").arg("-USR2").arg(pid.to_string()).status();
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn kill(&mut self, down: Duration) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stopping = None;
        self.held_until = Some(Instant::now() + down);
    }

    fn terminate(&mut self) {
        if let (Some(pid), None) = (self.pid(), self.stopping) {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
            self.stopping = Some(Instant::now());
        }
    }

    /// The last line of its log that says what went wrong.
    fn last_error(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .rev()
            .find(|l| l.contains("ERROR") || l.contains("panicked") || l.contains("error:"))
            .unwrap_or("(nothing logged)")
            .chars()
            .take(400)
            .collect()
    }

    /// One step of the service manager.
    fn supervise(&mut self, now: Instant) {
        if let Some(child) = &mut self.child {
            match child.try_wait().unwrap() {
                None => {
                    if self.stopping.is_some_and(|t| now - t > Duration::from_secs(60)) {
                        self.slow_stops += 1;
                        self.kill(Duration::ZERO);
                    }
                    return;
                }
                Some(status) => {
                    self.child = None;
                    match self.stopping.take() {
                        Some(_) if status.success() => self.held_until = None,
                        _ => {
                            self.exits.push(format!("{status}: {}", self.last_error()));
                            self.held_until = Some(now + Duration::from_secs(1));
                        }
                    }
                }
            }
        }
        if self.child.is_none() && self.held_until.is_none_or(|t| now >= t) {
            self.held_until = None;
            self.start();
        }
    }

    /// SIGTERM and a clean exit, at the end.
    fn stop(&mut self) {
        self.terminate();
        let Some(mut child) = self.child.take() else { return };
        let status = poll_until(Duration::from_secs(120), || child.try_wait().unwrap());
        let Some(status) = status else {
            let _ = child.kill();
            panic!("{} did not stop within 120 s: {}", self.name, self.last_error());
        };
        assert!(
            status.success(),
            "{} stopped with {status}: {}",
            self.name,
            self.last_error()
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The resident set size of process `pid`, in bytes.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// One reading of an asset: `(sensor, ts, value)`.
type Reading = (String, i64, f64);

/// Round `i` of asset number `a`: sensors alternate; temperatures sweep
/// through the rules' thresholds, currents through the window's.
fn reading(a: usize, i: usize) -> Reading {
    let ts = 1_700_000_000_000i64 + i as i64 * 100;
    if i.is_multiple_of(2) {
        ("temperature".into(), ts, ((a * 7 + i * 13) % 170) as f64)
    } else {
        ("current".into(), ts, ((a * 3 + i * 11) % 100) as f64)
    }
}

fn mqtt_asset(a: usize) -> String {
    format!("pump-m{a:03}")
}

fn kafka_asset(a: usize) -> String {
    format!("pump-k{a:03}")
}

/// What Mosquitto delivered to a subscriber of its own (never faulted),
/// per asset in order: a message redelivered after a lost PUBACK comes
/// marked `dup` and is kept once; an unmarked second copy (the publisher
/// retried) is the broker's delivery of a second message, kept.
#[derive(Default)]
struct Witnessed {
    by_asset: BTreeMap<String, Vec<Reading>>,
    seen: HashSet<(String, String, i64)>,
    /// The publisher's last message, after every reading, came.
    ended: bool,
}

/// The topic of the publisher's last message (outside the edge's
/// `plant/+/+`): Mosquitto delivers one publisher's messages to a
/// subscriber in order, so when it arrives every reading the broker took
/// arrived before it.
const END: &str = "soak/end";

impl Witnessed {
    fn take(&mut self, topic: &str, payload: &[u8], dup: bool) {
        let mut parts = topic.split('/').skip(1);
        let (asset, sensor) = (parts.next().unwrap().to_string(), parts.next().unwrap().to_string());
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        let (ts, value) = (v["ts"].as_i64().unwrap(), v["value"].as_f64().unwrap());
        if !self.seen.insert((asset.clone(), sensor.clone(), ts)) && dup {
            return;
        }
        self.by_asset.entry(asset).or_default().push((sensor, ts, value));
    }

    fn distinct(&self) -> usize {
        self.seen.len()
    }
}

fn witness(port: u16) -> (Client, Arc<Mutex<Witnessed>>) {
    let mut opts = MqttOptions::new("soak-witness", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_clean_session(false);
    let (client, mut connection) = Client::new(opts, 64);
    client.subscribe("plant/+/+", QoS::AtLeastOnce).unwrap();
    client.subscribe(END, QoS::AtLeastOnce).unwrap();
    let got = Arc::new(Mutex::new(Witnessed::default()));
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let sink = got.clone();
    std::thread::spawn(move || {
        for n in connection.iter() {
            match n {
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == END => sink.lock().unwrap().ended = true,
                Ok(Event::Incoming(Packet::Publish(p))) => sink.lock().unwrap().take(&p.topic, &p.payload, p.dup),
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => {}
                // The broker is away: a pause before rumqttc reconnects.
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    ready
        .recv_timeout(Duration::from_secs(60))
        .expect("the witness's subscription was not confirmed");
    (client, got)
}

/// Publishes round after round of the MQTT assets' readings, paced to
/// `rate` a second, until `stop`; returns how many it published. At QoS 2:
/// rumqttc retransmits what was not acknowledged when it reconnects, and
/// QoS 2 keeps a retransmission from becoming a second message at the
/// broker (at QoS 1 it would: a second, unmarked copy to every subscriber,
/// which twinstream rightly applies, and which a later redelivery could
/// make ambiguous to this checker). The edge subscribes at QoS 1.
fn mqtt_publisher(port: u16, rate: f64, stop: Arc<AtomicBool>) -> (std::thread::JoinHandle<usize>, Client) {
    let mut opts = MqttOptions::new("soak-publisher", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_clean_session(false);
    opts.set_inflight(100);
    let (client, mut connection) = Client::new(opts, 256);
    std::thread::spawn(move || {
        for n in connection.iter() {
            match n {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    let publisher = client.clone();
    let thread = std::thread::spawn(move || {
        let started = Instant::now();
        let mut sent = 0;
        for i in 0.. {
            if stop.load(Ordering::Relaxed) {
                return sent;
            }
            for a in 0..MQTT_ASSETS {
                let (sensor, ts, value) = reading(a, i);
                let topic = format!("plant/{}/{sensor}", mqtt_asset(a));
                let payload = format!(r#"{{"ts":{ts},"value":{value}}}"#);
                publisher.publish(topic, QoS::ExactlyOnce, false, payload).unwrap();
                sent += 1;
            }
            pace(started, sent, rate);
        }
        unreachable!()
    });
    (thread, client)
}

/// Waits until `sent` readings are due at `rate` a second since `started`.
/// Pacing: the rate of the input, not synchronisation.
fn pace(started: Instant, sent: usize, rate: f64) {
    let due = Duration::from_secs_f64(sent as f64 / rate);
    if let Some(ahead) = due.checked_sub(started.elapsed()) {
        std::thread::sleep(ahead);
    }
}

/// Counts the producer's deliveries that failed for good.
struct Deliveries(Arc<AtomicU64>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Produces round after round of the Kafka assets' readings, keyed by
/// asset (Kafka's default partitioner, as a cluster expects), idempotent,
/// never timing out, paced to `rate` a second, until `stop`; returns the
/// readings it produced and how many failed for good.
fn kafka_producer(
    brokers: String,
    rate: f64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(BTreeMap<String, Vec<Reading>>, u64)> {
    std::thread::spawn(move || {
        let failed = Arc::new(AtomicU64::new(0));
        let producer: ThreadedProducer<Deliveries> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5")
            .create_with_context(Deliveries(failed.clone()))
            .unwrap();
        let mut produced: BTreeMap<String, Vec<Reading>> = BTreeMap::new();
        let started = Instant::now();
        let mut sent = 0usize;
        for i in 0.. {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            for a in 0..KAFKA_ASSETS {
                let r = reading(a, i);
                let asset = kafka_asset(a);
                let value = format!(r#"{{"sensor":"{}","ts":{},"value":{}}}"#, r.0, r.1, r.2);
                send_waiting(&producer, BaseRecord::to("telemetry").key(&asset).payload(&value));
                produced.entry(asset).or_default().push(r);
                sent += 1;
            }
            pace(started, sent, rate);
        }
        producer
            .flush(SETTLE)
            .expect("the producer's records were not all delivered");
        (produced, failed.load(Ordering::Relaxed))
    })
}

/// The ingest topic as read so far: per key, `(reading, marked
/// redelivered)` in partition order.
struct TopicReader {
    consumer: BaseConsumer,
    by_asset: BTreeMap<String, Vec<(Reading, bool)>>,
}

impl TopicReader {
    fn new(brokers: &str) -> TopicReader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "soak-checker")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS as i32 {
            tpl.add_partition_offset("telemetry", p, Offset::Beginning).unwrap();
        }
        consumer.assign(&tpl).unwrap();
        TopicReader {
            consumer,
            by_asset: BTreeMap::new(),
        }
    }

    /// Reads what arrived until none came for a while.
    fn read(&mut self) {
        while let Some(m) = self.consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("reading the ingest topic");
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let again = v["redelivered"] == true
                || m.headers()
                    .is_some_and(|h| h.iter().any(|h| h.key == "twinstream.redelivered"));
            let r = (
                v["sensor"].as_str().unwrap().to_string(),
                v["ts"].as_i64().unwrap(),
                v["value"].as_f64().unwrap(),
            );
            self.by_asset.entry(key).or_default().push((r, again));
        }
    }

    /// An asset's records without those a node recognises as duplicates
    /// (marked redelivered, already seen).
    fn deduplicated(&self, asset: &str) -> Vec<Reading> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (r, again) in self.by_asset.get(asset).into_iter().flatten() {
            if !seen.insert((r.0.clone(), r.1)) && *again {
                continue;
            }
            out.push(r.clone());
        }
        out
    }
}

/// Follows JSON-lines files as sinks append to them: the greatest twin
/// version per asset seen in any.
struct Versions {
    files: Vec<(PathBuf, u64)>,
    max: HashMap<String, u64>,
}

impl Versions {
    fn new(files: Vec<PathBuf>) -> Versions {
        Versions {
            files: files.into_iter().map(|f| (f, 0)).collect(),
            max: HashMap::new(),
        }
    }

    fn update(&mut self) -> &HashMap<String, u64> {
        for (path, offset) in &mut self.files {
            let Ok(mut f) = std::fs::File::open(&*path) else {
                continue;
            };
            f.seek(SeekFrom::Start(*offset)).unwrap();
            let mut text = String::new();
            f.read_to_string(&mut text).unwrap();
            // Whole lines only; the rest is read next time.
            let Some(end) = text.rfind('\n') else { continue };
            for l in text[..=end].lines() {
                // A line a kill cut short is no version.
                let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                    continue;
                };
                if let (Some(asset), Some(version)) = (v["asset"].as_str(), v["version"].as_u64()) {
                    let e = self.max.entry(asset.to_string()).or_default();
                    *e = (*e).max(version);
                }
            }
            *offset += end as u64 + 1;
        }
        &self.max
    }
}

/// What a run found, printed and written to `SOAK_REPORT`.
#[derive(serde::Serialize, Default)]
struct Report {
    seed: u64,
    /// Seconds of faults, and of the whole run (with the end's checks).
    seconds: u64,
    elapsed_s: u64,
    faults: BTreeMap<&'static str, u32>,
    faults_total: usize,
    events_in: usize,
    twins_checked: usize,
    mismatches: usize,
    alerts_checked: usize,
    commands_checked: usize,
    /// Readings a broker delivered twice on the producers' hop.
    producer_duplicates: usize,
    /// MQTT readings the publisher's client published and Mosquitto never
    /// delivered (lost before the broker took them).
    publisher_lost: usize,
    peak_rss_mib: BTreeMap<String, u64>,
    node_starts: BTreeMap<&'static str, u32>,
    /// Exits the soak did not cause, per node: the status and last error.
    unexpected_exits: BTreeMap<&'static str, Vec<String>>,
    slow_stops: u32,
    dead_letters: BTreeMap<String, usize>,
    verdict: String,
}

/// Everything a run starts; dropped in this order: the nodes (killed,
/// their disks unmounted), the links, the brokers, the directory.
struct Soak {
    nodes: Vec<Node>,
    mqtt_link: Proxy,
    kafka_link: Proxy,
    mosquitto: Mosquitto,
    tansu: Tansu,
    dir: tempfile::TempDir,
    settings: Settings,
    /// When the brokers, links and disks faulted come back.
    mqtt_down_until: Option<Instant>,
    kafka_down_until: Option<Instant>,
    link_until: [Option<Instant>; 2],
    disk_until: [Option<Instant>; 4],
    clock_until: [Option<Instant>; 4],
    peak_rss: BTreeMap<String, u64>,
    /// When the input and the faults began.
    started: Instant,
}

impl Soak {
    fn brokers(&self) -> String {
        self.kafka_link.endpoint()
    }

    fn sample_rss(&mut self) {
        let mut procs: Vec<(String, Option<u32>)> = self.nodes.iter().map(|n| (n.name.to_string(), n.pid())).collect();
        if self.mqtt_down_until.is_none() {
            procs.push(("mosquitto".into(), Some(self.mosquitto.pid())));
        }
        if self.kafka_down_until.is_none() {
            procs.push(("tansu".into(), Some(self.tansu.pid())));
        }
        for (name, pid) in procs {
            if let Some(bytes) = pid.and_then(rss) {
                let peak = self.peak_rss.entry(name).or_default();
                *peak = (*peak).max(bytes);
            }
        }
    }

    fn link(&self, link: Link) -> &Proxy {
        match link {
            Link::Mqtt => &self.mqtt_link,
            Link::Kafka => &self.kafka_link,
        }
    }

    fn inject(&mut self, fault: &Fault, now: Instant) {
        match *fault {
            Fault::Kill { node, down } => self.nodes[node].kill(down),
            Fault::Restart { node } => self.nodes[node].terminate(),
            Fault::MqttBroker { down } => {
                if self.mqtt_down_until.is_none() {
                    self.mosquitto.stop();
                }
                self.mqtt_down_until = self.mqtt_down_until.max(Some(now + down));
            }
            Fault::KafkaBroker { down } => {
                if self.kafka_down_until.is_none() {
                    self.tansu.stop();
                }
                self.kafka_down_until = self.kafka_down_until.max(Some(now + down));
            }
            Fault::Net { link, fault, lasting } => {
                self.link(link).set(fault);
                self.link_until[link as usize] = Some(now + lasting);
            }
            Fault::DiskFull { node, lasting } => {
                self.nodes[node].disk.fill();
                self.disk_until[node] = self.disk_until[node].max(Some(now + lasting));
            }
            Fault::ClockStep { node, ms, lasting } => {
                self.nodes[node].step_clock(ms);
                self.clock_until[node] = self.clock_until[node].max(Some(now + lasting));
            }
        }
    }

    /// Ends the faults whose time is up (`all`: every one), and restarts
    /// what exited.
    fn heal(&mut self, now: Instant, all: bool) {
        let due = |until: &mut Option<Instant>| {
            let d = until.is_some_and(|t| all || now >= t);
            if d {
                *until = None;
            }
            d
        };
        if due(&mut self.mqtt_down_until) {
            self.mosquitto.resume();
        }
        if due(&mut self.kafka_down_until) {
            self.tansu.resume();
        }
        for (i, link) in [Link::Mqtt, Link::Kafka].into_iter().enumerate() {
            if due(&mut self.link_until[i]) {
                self.link(link).set(proxy::Fault::Pass);
            }
        }
        for i in 0..self.nodes.len() {
            if due(&mut self.disk_until[i]) {
                self.nodes[i].disk.free();
            }
            if due(&mut self.clock_until[i]) {
                self.nodes[i].step_clock(0);
            }
            if all {
                self.nodes[i].held_until = None;
            }
            self.nodes[i].supervise(now);
        }
    }
}

/// Writes the topology of node `name` (the edge, or a cluster member) into
/// `dir`.
fn node_topology(dir: &Path, name: &str, mqtt: &str, brokers: &str) -> PathBuf {
    let file = |what: &str| dir.join(format!("{what}-{name}.jsonl"));
    let topo = Topo::new(name).snapshot_every("100ms").model(MODEL);
    let topo = if name == "edge" {
        let port = mqtt.rsplit(':').next().unwrap().parse().unwrap();
        topo.with("role: edge")
            .mqtt_source("plant", port, "soak-edge")
            .sink(&format!(
                r#"{{ name: up, type: kafka, brokers: "{brokers}", topic: telemetry, buffer: {{ max_bytes: 64MiB }}, outputs: [events] }}"#
            ))
            .file_sink("alerts", &file("alerts"), "alerts")
            .file_sink("commands", &file("commands"), "commands")
    } else {
        topo.with(&format!(
            "cluster: {{ source: fleet, changelog: {CHANGELOG}, session_timeout: 6s }}"
        ))
        .source(&format!(
            r#"{{ name: fleet, type: kafka, brokers: "{brokers}", topics: [telemetry], group_id: soak, decode: {{ sensor: sensor, ts: ts, value: value }} }}"#
        ))
        .file_sink("updates", &file("updates"), "twin_updates")
        .file_sink("alerts", &file("alerts"), "alerts")
    };
    topo.file_sink("dead", &file("dead"), "dead_letters")
        .write(&dir.join(format!("{name}.yaml")))
}

/// Every update, alert, command and dead-letter file of `names` in `dir`.
fn files(dir: &Path, what: &str, names: &[&str]) -> Vec<PathBuf> {
    names.iter().map(|n| dir.join(format!("{what}-{n}.jsonl"))).collect()
}

#[test]
fn the_cluster_and_its_edge_lose_nothing_and_apply_nothing_twice_under_many_faults_at_once() {
    let settings = Settings::from_env();
    let plan = schedule(settings.seed, settings.seconds, settings.mean_gap);
    eprintln!(
        "soak: seed {} ({} faults over {} s; replay with SOAK_SEED={} SOAK_SECONDS={} SOAK_MEAN_GAP={})",
        settings.seed,
        plan.len(),
        settings.seconds,
        settings.seed,
        settings.seconds,
        settings.mean_gap
    );
    let dir = tempfile::tempdir().unwrap();
    let mosquitto = Mosquitto::start();
    let mqtt_link = Proxy::start(format!("127.0.0.1:{}", mosquitto.port).parse().unwrap());
    let kafka_link = Proxy::listen();
    let tansu = Tansu::start_advertising(Some(kafka_link.endpoint()));
    kafka_link.retarget(format!("127.0.0.1:{}", tansu.port).parse().unwrap());
    create_topic(&kafka_link.endpoint(), "telemetry", PARTITIONS as i32);
    let nodes = NODES
        .iter()
        .map(|name| {
            let topo = node_topology(dir.path(), name, &mqtt_link.endpoint(), &kafka_link.endpoint());
            Node::new(name, topo, dir.path())
        })
        .collect();
    let mut soak = Soak {
        settings,
        dir,
        mosquitto,
        tansu,
        mqtt_link,
        kafka_link,
        nodes,
        mqtt_down_until: None,
        kafka_down_until: None,
        link_until: [None; 2],
        disk_until: [None; 4],
        clock_until: [None; 4],
        peak_rss: BTreeMap::new(),
        started: Instant::now(),
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut soak, &plan)));
    keep_logs(&soak);
    if let Err(e) = outcome {
        for n in &soak.nodes {
            eprintln!("--- {} (last error): {}", n.name, n.last_error());
        }
        std::panic::resume_unwind(e);
    }
}

/// The run: input and faults, then the check.
fn run(soak: &mut Soak, plan: &[(Duration, Fault)]) {
    let (_witness, witnessed) = witness(soak.mosquitto.port);
    for n in &mut soak.nodes {
        n.start();
    }
    // Mosquitto queues for the edge's session once it subscribed; what is
    // published before that is not the edge's to receive.
    let subscribed = poll_until(SETTLE, || {
        soak.heal(Instant::now(), false);
        std::fs::read_to_string(&soak.nodes[0].log)
            .unwrap_or_default()
            .contains("MQTT subscribed")
            .then_some(())
    });
    assert!(
        subscribed.is_some(),
        "the edge never subscribed: {}",
        soak.nodes[0].last_error()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let rate = soak.settings.rate / 2.0;
    let (publisher, publisher_client) = mqtt_publisher(soak.mosquitto.port, rate, stop.clone());
    let producer = kafka_producer(soak.brokers(), rate, stop.clone());

    let mut report = Report {
        seed: soak.settings.seed,
        seconds: soak.settings.seconds,
        faults_total: plan.len(),
        ..Report::default()
    };
    let started = Instant::now();
    soak.started = started;
    let mut next = plan.iter().peekable();
    let mut last_sample = started;
    while started.elapsed() < Duration::from_secs(soak.settings.seconds) {
        let now = Instant::now();
        while let Some((at, fault)) = next.next_if(|(at, _)| started + *at <= now) {
            eprintln!("soak: [{:>7.1?}] {fault}", at);
            *report.faults.entry(fault.kind()).or_default() += 1;
            soak.inject(fault, now);
        }
        soak.heal(now, false);
        if now - last_sample >= Duration::from_millis(500) {
            soak.sample_rss();
            last_sample = now;
        }
        // The injector's clock tick: faults are due at times, not events.
        std::thread::sleep(Duration::from_millis(50));
    }

    eprintln!("soak: faults done; healing, and draining the input");
    soak.heal(Instant::now(), true);
    stop.store(true, Ordering::Relaxed);
    let published = publisher.join().unwrap();
    let (produced, failed) = producer.join().unwrap();
    assert_eq!(failed, 0, "the Kafka producer gave up on records");

    // What Mosquitto took reached its subscribers: its readings, then the
    // end. (A reading the publisher's client lost on a reconnect never
    // reached the broker: counted, not the nodes' to apply.)
    publisher_client.publish(END, QoS::ExactlyOnce, false, "end").unwrap();
    let ended = poll_until(SETTLE, || {
        soak.heal(Instant::now(), false);
        witnessed.lock().unwrap().ended.then_some(())
    });
    assert!(
        ended.is_some(),
        "the publisher's last message never reached the witness"
    );
    let _ = publisher_client.disconnect();
    report.publisher_lost = published - witnessed.lock().unwrap().distinct();
    let witnessed = std::mem::take(&mut witnessed.lock().unwrap().by_asset);

    // The edge forwarded every MQTT reading, in order, and the topic holds
    // every Kafka reading.
    let mut topic = TopicReader::new(&soak.brokers());
    let mut missing = String::new();
    let complete = poll_until(SETTLE, || {
        soak.heal(Instant::now(), false);
        topic.read();
        missing = witnessed
            .iter()
            .find(|(asset, want)| topic.deduplicated(asset) != **want)
            .map(|(asset, want)| {
                let got = topic.deduplicated(asset);
                let at = got.iter().zip(want.iter()).take_while(|(g, w)| g == w).count();
                let raw = &topic.by_asset.get(asset).map_or(&[][..], |v| &v[..]);
                format!(
                    "{asset}: {} forwarded of {}; first difference at {at}: witness {:?}, forwarded {:?}; as the topic holds them (marked redelivered): {:?}",
                    got.len(),
                    want.len(),
                    &want[at.saturating_sub(2)..(at + 3).min(want.len())],
                    &got[at.saturating_sub(2)..(at + 3).min(got.len())],
                    raw.iter().filter(|(r, _)| want[at.saturating_sub(2)..(at + 3).min(want.len())].contains(r)).collect::<Vec<_>>()
                )
            })
            .or_else(|| {
                produced.iter().find_map(|(asset, want)| {
                    let got: HashSet<(String, i64)> =
                        topic.deduplicated(asset).into_iter().map(|r| (r.0, r.1)).collect();
                    let lost = want.iter().filter(|r| !got.contains(&(r.0.clone(), r.1))).count();
                    (lost > 0).then(|| format!("{asset}: {lost} produced readings not in the topic"))
                })
            })
            .unwrap_or_default();
        missing.is_empty().then_some(())
    });
    assert!(complete.is_some(), "the ingest topic is incomplete: {missing}");

    // The input of record, per asset.
    let mut input: BTreeMap<String, Vec<Reading>> = witnessed;
    for asset in produced.keys() {
        let got = topic.deduplicated(asset);
        report.producer_duplicates += got.len() - produced[asset].len();
        input.insert(asset.clone(), got);
    }
    report.producer_duplicates += input
        .iter()
        .filter(|(a, _)| a.starts_with("pump-m"))
        .map(|(_, r)| r.len())
        .sum::<usize>()
        - (published - report.publisher_lost);
    report.events_in = input.values().map(Vec::len).sum();

    // The cluster applied all of it.
    let mut versions = Versions::new(files(soak.dir.path(), "updates", CLUSTER));
    let mut behind = String::new();
    let applied = poll_until(SETTLE, || {
        soak.heal(Instant::now(), false);
        soak.sample_rss();
        let max = versions.update();
        behind = input
            .iter()
            .find(|(asset, r)| max.get(*asset).copied().unwrap_or(0) < r.len() as u64)
            .map(|(asset, r)| format!("{asset} at version {:?} of {}", max.get(asset), r.len()))
            .unwrap_or_default();
        behind.is_empty().then_some(())
    });
    if applied.is_none() {
        // Checked below, twin by twin, against the single node.
        eprintln!("soak: the cluster's twin updates stopped short of the input: {behind}");
    }
    for n in &mut soak.nodes {
        n.stop();
    }

    check(soak, &input, &mut report);
}

/// Compares the cluster and the edge with one node that read the same input
/// from a file, and reports.
fn check(soak: &mut Soak, input: &BTreeMap<String, Vec<Reading>>, report: &mut Report) {
    let dir = soak.dir.path();
    let single = dir.join("single");
    std::fs::create_dir_all(&single).unwrap();
    let data = single.join("input.jsonl");
    let mut lines = String::new();
    for (asset, readings) in input {
        for (sensor, ts, value) in readings {
            lines.push_str(&format!(
                r#"{{"asset":"{asset}","sensor":"{sensor}","ts":{ts},"value":{value}}}"#
            ));
            lines.push('\n');
        }
    }
    std::fs::write(&data, lines).unwrap();
    let file = |what: &str| single.join(format!("{what}.jsonl"));
    let topo = Topo::new("single")
        .snapshot_every("100ms")
        .model(MODEL)
        .file_source("fleet", &data)
        .file_sink("updates", &file("updates"), "twin_updates")
        .file_sink("alerts", &file("alerts"), "alerts")
        .file_sink("commands", &file("commands"), "commands")
        .write(&single.join("single.yaml"));
    let state = single.join("state");
    let node = spawn(&mut run_cmd(&topo, &state));
    let mut versions = Versions::new(vec![file("updates")]);
    let done = poll_until(SETTLE, || {
        let max = versions.update();
        input
            .iter()
            .all(|(asset, r)| max.get(asset) == Some(&(r.len() as u64)))
            .then_some(())
    });
    assert!(done.is_some(), "the single node did not apply its input");
    stop_cleanly(node);

    let want = digest(&state);
    let got = changelog_digest(&soak.brokers(), CHANGELOG, PARTITIONS);
    report.twins_checked = want.len();
    let got_by: HashMap<&str, _> = got.iter().map(|t| (t.0.as_str(), t)).collect();
    let mut mismatches: Vec<String> = want
        .iter()
        .filter(|w| got_by.get(w.0.as_str()) != Some(w))
        .map(|w| format!("{}: cluster {:?}, one node {w:?}", w.0, got_by.get(w.0.as_str())))
        .collect();
    if got.len() != want.len() {
        mismatches.push(format!(
            "{} twins in the cluster, {} in one node",
            got.len(),
            want.len()
        ));
    }

    // Alerts: the cluster's rules from the cluster, the local one from the
    // edge (for the assets behind it); commands from the edge.
    let local = |o: &serde_json::Value| o["rule"] == "trip";
    let behind_edge = |o: &serde_json::Value| o["asset"].as_str().unwrap().starts_with("pump-m");
    // Two different outputs with one id (a twin that went back in time) are
    // mismatches of the cluster; the single node's outputs must have none.
    let mut of_cluster = |what: &str, (outputs, conflicts): (_, Vec<String>)| {
        mismatches.extend(
            conflicts
                .into_iter()
                .map(|c| format!("{what}: two different outputs with one id: {c}")),
        );
        outputs
    };
    let compared = [
        (
            "alerts (cluster rules)",
            of_cluster(
                "alerts (cluster rules)",
                outputs_and_conflicts(&files(dir, "alerts", CLUSTER), "event_id", |o| !local(o)),
            ),
            outputs_by_id(&[file("alerts")], "event_id", |o| !local(o)),
        ),
        (
            "alerts (edge rule)",
            of_cluster(
                "alerts (edge rule)",
                outputs_and_conflicts(&files(dir, "alerts", &["edge"]), "event_id", local),
            ),
            outputs_by_id(&[file("alerts")], "event_id", |o| local(o) && behind_edge(o)),
        ),
        (
            "commands (edge rule)",
            of_cluster(
                "commands (edge rule)",
                outputs_and_conflicts(&files(dir, "commands", &["edge"]), "id", |_| true),
            ),
            outputs_by_id(&[file("commands")], "id", behind_edge),
        ),
    ];
    for (what, got, want) in &compared {
        let n: usize = want.values().map(Vec::len).sum();
        assert!(
            n > 0,
            "{what}: the single node emitted none; the soak's input should fire them"
        );
        if what.starts_with("commands") {
            report.commands_checked += n;
        } else {
            report.alerts_checked += n;
        }
        for asset in want.keys().chain(got.keys()).collect::<std::collections::BTreeSet<_>>() {
            if got.get(asset) != want.get(asset) {
                mismatches.push(format!(
                    "{what} of {asset}: {} vs {} in one node",
                    got.get(asset).map_or(0, Vec::len),
                    want.get(asset).map_or(0, Vec::len)
                ));
            }
        }
    }
    report.mismatches = mismatches.len();

    for f in files(dir, "dead", &NODES) {
        for d in std::fs::read_to_string(&f).unwrap_or_default().lines() {
            if let Ok(d) = serde_json::from_str::<serde_json::Value>(d) {
                *report
                    .dead_letters
                    .entry(d["reason"].as_str().unwrap_or("?").to_string())
                    .or_default() += 1;
            }
        }
    }
    report.peak_rss_mib = soak.peak_rss.iter().map(|(k, v)| (k.clone(), v >> 20)).collect();
    for n in &soak.nodes {
        report.node_starts.insert(n.name, n.starts);
        if !n.exits.is_empty() {
            report.unexpected_exits.insert(n.name, n.exits.clone());
        }
        report.slow_stops += n.slow_stops;
    }
    let panicked: Vec<&str> = soak
        .nodes
        .iter()
        .filter(|n| std::fs::read_to_string(&n.log).unwrap_or_default().contains("panicked"))
        .map(|n| n.name)
        .collect();
    let over: Vec<String> = soak
        .peak_rss
        .iter()
        .filter(|(name, bytes)| NODES.contains(&name.as_str()) && **bytes > NODE_RSS_BOUND)
        .map(|(name, bytes)| format!("{name}: {} MiB", bytes >> 20))
        .collect();
    report.elapsed_s = soak.started.elapsed().as_secs();
    report.verdict = if mismatches.is_empty() && panicked.is_empty() && over.is_empty() {
        "PASS".into()
    } else {
        "FAIL".into()
    };
    let summary = serde_json::to_string_pretty(&report).unwrap();
    eprintln!("soak: {summary}");
    if let Some(path) = &soak.settings.report {
        std::fs::write(path, &summary).unwrap();
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(panicked.is_empty(), "a node panicked: {panicked:?} (see its log)");
    assert!(
        over.is_empty(),
        "memory beyond the bound of {} MiB: {over:?}",
        NODE_RSS_BOUND >> 20
    );
}

/// Copies every node's log to `SOAK_LOGS`, when set.
fn keep_logs(soak: &Soak) {
    let Some(to) = &soak.settings.logs else { return };
    std::fs::create_dir_all(to).unwrap();
    for n in &soak.nodes {
        let _ = std::fs::copy(&n.log, to.join(format!("{}.log", n.name)));
    }
    for entry in std::fs::read_dir(soak.dir.path()).unwrap().filter_map(Result::ok) {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "jsonl" || e == "yaml") {
            let _ = std::fs::copy(&p, to.join(p.file_name().unwrap()));
        }
    }
}
