//! Flood benchmark (RELIABILITY.md "Flood"): ten times the node's
//! sustainable rate through MQTT and Kafka at once, for five minutes, against
//! a real Mosquitto and a real Kafka-compatible broker (tansu, SQLite).
//!
//! Run it with `scripts/bench-flood.sh [ARGS]` (it builds the release binary
//! and points `TWINSTREAM_BIN` at it); `--help` lists the knobs.
//!
//! The node runs one MQTT source (QoS 1, acks after the checkpoint, on
//! Mosquitto with its default `max_inflight_messages 20` and no queue limit)
//! and one Kafka source (6 partitions), snapshots on, confined by a cgroup
//! CPU quota to `--cpu` cores (default 0.25): on this 2-core machine the
//! producers and brokers can offer ten times what a quarter core sustains,
//! not ten times what two cores do.
//!
//! 1. **S, sustainable rate**: with the node stopped (its MQTT session
//!    kept), `--probe` readings wait in each broker; the node starts and
//!    S = readings / (start -> every reading applied): what it sustains
//!    flat out on its quota.
//! 2. **Flood**: an MQTT publisher and a Kafka producer offer `--factor` x S
//!    readings a second, half each, for `--seconds`. Every second: the node's
//!    resident memory, what it applied, its backpressure (MQTT messages
//!    received and not yet acknowledged, Kafka partitions paused and lag),
//!    and what waits in each broker (offered and not yet received).
//! 3. **Catch-up**: the producers stop; the time until every twin has
//!    applied every reading, and the rate (the node's fastest: it works
//!    through a large backlog flat out), against which the flood's factor is
//!    stated too. With `--catch-up-cpu`, the rate is measured over the first
//!    `--catch-up-probe` seconds and the quota then raised, so a flood of
//!    many times a small quota's rate drains in minutes, not hours.
//!
//! Verdict: nothing lost and nothing applied twice (every reading the
//! brokers acknowledged is applied exactly once: each twin's version equals
//! its readings; readings redelivered after a reconnect are counted as
//! applied by the node's counter and recognised by the twins), no dead
//! letters, resident memory within `--rss-bound-mib` throughout.
//! The figures are reported; the bench exits non-zero when the verdict
//! fails or something breaks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use rdkafka::producer::{BaseRecord, Producer};
use rumqttc::QoS;

#[path = "support/broker.rs"]
mod broker;
#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/mosquitto.rs"]
mod mosquitto;
#[path = "support/node.rs"]
mod node;
#[path = "support/system.rs"]
mod system;

const TOPIC: &str = "telemetry";
const PARTITIONS: i32 = 6;

#[derive(Parser, Debug)]
#[command(about = "Ten times the sustainable rate through MQTT and Kafka (benches/flood.rs)")]
struct Args {
    /// How long the flood lasts, in seconds.
    #[arg(long, default_value_t = 300)]
    seconds: u64,
    /// The flood's rate, as a multiple of the measured sustainable rate.
    #[arg(long, default_value_t = 10.0)]
    factor: f64,
    /// The node's CPU quota, in cores (a cgroup's).
    #[arg(long, default_value_t = 0.25)]
    cpu: f64,
    /// The quota's period, ms: the quota is whole milliseconds of it (at
    /// 100, the kernel's default, steps of 0.01 cores). A long period
    /// freezes the node for most of each one: a harsher starvation.
    #[arg(long, default_value_t = 100)]
    quota_period_ms: u64,
    /// Readings per broker that wait for the sustainable-rate probe.
    #[arg(long, default_value_t = 100_000)]
    probe: u64,
    /// Assets per broker.
    #[arg(long, default_value_t = 500)]
    assets: usize,
    /// The node's resident memory bound, MiB.
    #[arg(long, default_value_t = 512)]
    rss_bound_mib: u64,
    /// How long the catch-up may take, in seconds.
    #[arg(long, default_value_t = 3600)]
    catch_up_limit: u64,
    /// Raise the node's quota to this many cores once the catch-up rate on
    /// the flood's quota is measured (`--catch-up-probe`): a flood of many
    /// times a small quota's rate otherwise takes hours to drain.
    #[arg(long)]
    catch_up_cpu: Option<f64>,
    /// Seconds of catch-up on the flood's quota that measure its rate, when
    /// `--catch-up-cpu` raises the quota after them.
    #[arg(long, default_value_t = 600)]
    catch_up_probe: u64,
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bin =
        PathBuf::from(std::env::var("TWINSTREAM_BIN").context("TWINSTREAM_BIN: the twinstream binary to measure")?);
    let mosquitto_bin = std::env::var("MOSQUITTO").unwrap_or_else(|_| "mosquitto".into());
    let mqtt = mosquitto::Broker::start(&mosquitto_bin, 20, false)?;
    let kafka = broker::Broker::start();
    broker::create_topic(&kafka.brokers(), TOPIC, PARTITIONS);
    let dir = tempfile::tempdir()?;
    let topo = topology(dir.path(), mqtt.port, &kafka.brokers())?;
    let state = dir.path().join("state");
    let mut quota = Quota::new(args.cpu, args.quota_period_ms)?;
    println!(
        "- {}; Mosquitto ({}), tansu (SQLite); node confined to {} cores ({})",
        system::machine(),
        mqtt.settings,
        args.cpu,
        quota.describe()
    );

    // The node's MQTT session exists (it subscribed) before the backlog.
    let mut node = start(&bin, &topo, &state, &quota);
    let api = node.api();
    wait_metric(
        &api,
        "twinstream_mqtt_connected{source=\"plc\"}",
        Duration::from_secs(60),
        |v| v >= 1.0,
    )?;
    stop(node)?;

    let mut offered = Offered::default();
    let publisher = mosquitto::MqttClient::connect("flood-publisher", mqtt.port, true, 10_000)?;
    let producer = broker::keyed_producer(&kafka.brokers());
    let t = Instant::now();
    for i in 0..args.probe {
        offered.mqtt(&publisher, args.assets, i)?;
        offered.kafka(&producer, args.assets, i);
    }
    producer.flush(Duration::from_secs(600))?;
    publisher.wait("the probe's PUBACKs", Duration::from_secs(600), |s| {
        s.pubacks >= args.probe
    })?;
    println!(
        "- probe backlog: {} readings in each broker, offered in {:.1} s",
        args.probe,
        t.elapsed().as_secs_f64()
    );

    // S: the backlog drained flat out.
    let mut node = start(&bin, &topo, &state, &quota);
    let started = Instant::now();
    let api = node.api();
    let total = offered.total();
    let cpu_at_start = cpu::proc_cpu(node.child.id());
    wait_metric(
        &api,
        "twinstream_events_applied_total",
        Duration::from_secs(3600),
        |v| v >= total as f64,
    )?;
    let sustainable = total as f64 / started.elapsed().as_secs_f64();
    println!(
        "- S: {total} readings applied in {:.1} s = **{sustainable:.0} readings/s** on {} cores (it used {:.2})",
        started.elapsed().as_secs_f64(),
        args.cpu,
        (cpu::proc_cpu(node.child.id()) - cpu_at_start) / started.elapsed().as_secs_f64()
    );
    let applied_before = metric(&api, "twinstream_events_applied_total")?;

    // The flood.
    let rate = args.factor * sustainable;
    println!(
        "- flood: {:.0} readings/s offered ({}x S), half MQTT, half Kafka, for {} s",
        rate, args.factor, args.seconds
    );
    let stop_flood = Arc::new(AtomicBool::new(false));
    let sent_mqtt = Arc::new(AtomicU64::new(0));
    let sent_kafka = Arc::new(AtomicU64::new(0));
    let flood_mqtt = {
        let (stop, sent, first) = (stop_flood.clone(), sent_mqtt.clone(), args.probe);
        let assets = args.assets;
        let client = publisher.client.clone();
        std::thread::spawn(move || {
            paced(rate / 2.0, &stop, &sent, |i| {
                let (topic, payload) = mqtt_reading(assets, first + i);
                client.publish(topic, QoS::AtLeastOnce, false, payload).is_ok()
            })
        })
    };
    let flood_kafka = {
        let (stop, sent, first) = (stop_flood.clone(), sent_kafka.clone(), args.probe);
        let assets = args.assets;
        let brokers = kafka.brokers();
        std::thread::spawn(move || {
            let producer = broker::keyed_producer(&brokers);
            paced(rate / 2.0, &stop, &sent, |i| {
                let (key, value) = kafka_reading(assets, first + i);
                broker::send(&producer, BaseRecord::to(TOPIC).key(&key).payload(&value));
                true
            });
            producer.flush(Duration::from_secs(600)).unwrap();
        })
    };
    let flood_started = Instant::now();
    let cpu_at_flood = cpu::proc_cpu(node.child.id());
    let mut samples = Vec::new();
    let mut next_sample = flood_started;
    while flood_started.elapsed() < Duration::from_secs(args.seconds) {
        next_sample += Duration::from_secs(1);
        // The sampling period: a measurement's cadence, not a wait on it.
        std::thread::sleep(next_sample.saturating_duration_since(Instant::now()));
        node.drain();
        let s = Sample::take(
            &api,
            node.child.id(),
            flood_started,
            &publisher,
            &sent_kafka,
            applied_before,
        )?;
        if samples.len() % 30 == 29 {
            println!("  {}", s.line());
        }
        samples.push(s);
    }
    // What was offered in the flood's time (a sender blocked by its broker
    // finishes the reading in hand after it).
    let flood_secs = flood_started.elapsed().as_secs_f64();
    let offered_in_time = sent_mqtt.load(Ordering::Relaxed) + sent_kafka.load(Ordering::Relaxed);
    let flood_cores = (cpu::proc_cpu(node.child.id()) - cpu_at_flood) / flood_secs;
    stop_flood.store(true, Ordering::Relaxed);
    flood_mqtt.join().expect("the MQTT publisher");
    flood_kafka.join().expect("the Kafka producer");
    let flood_mqtt_sent = sent_mqtt.load(Ordering::Relaxed);
    let flood_kafka_sent = sent_kafka.load(Ordering::Relaxed);
    publisher.wait("every PUBACK", Duration::from_secs(600), |s| {
        s.pubacks >= args.probe + flood_mqtt_sent
    })?;
    let offered_flood = flood_mqtt_sent + flood_kafka_sent;
    println!(
        "- offered during the flood: {offered_in_time} readings in {flood_secs:.0} s = {:.0}/s ({:.1}x S; the brokers took no more); {offered_flood} in all (MQTT {flood_mqtt_sent}, Kafka {flood_kafka_sent})",
        offered_in_time as f64 / flood_secs,
        offered_in_time as f64 / flood_secs / sustainable
    );

    // Catch-up: until every twin has applied each of its readings (its
    // version). The applied counter is not the test: it also counts
    // redelivered readings a twin recognised and skipped (an MQTT
    // reconnect resends what was not acknowledged), so it passes the
    // offered total early when there were any.
    let total = total + offered_flood;
    let expected = expected_versions(args.assets, args.probe, flood_mqtt_sent, flood_kafka_sent);
    let t = Instant::now();
    let applied_at_flood_end = metric(&api, "twinstream_events_applied_total")?;
    let mut rss_peak = samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    let mut measured: Option<(f64, f64)> = None;
    let (caught_up, versions) = loop {
        let applied = metric(&api, "twinstream_events_applied_total")?;
        if let Some(r) = rss_mib(node.child.id()) {
            rss_peak = rss_peak.max(r);
        }
        node.drain();
        if let (Some(cores), None) = (args.catch_up_cpu, measured) {
            if t.elapsed() >= Duration::from_secs(args.catch_up_probe) {
                let rate = (applied - applied_at_flood_end) / t.elapsed().as_secs_f64();
                measured = Some((t.elapsed().as_secs_f64(), rate));
                quota.set(cores)?;
            }
        }
        if applied >= total as f64 {
            let v = twin_versions(&api)?;
            if v == expected {
                break (t.elapsed(), v);
            }
        }
        if t.elapsed() > Duration::from_secs(args.catch_up_limit) {
            bail!(
                "not caught up after {} s: {applied} of {total} applied",
                args.catch_up_limit
            );
        }
        std::thread::sleep(Duration::from_millis(if applied >= total as f64 { 1000 } else { 200 }));
    };
    let applied = metric(&api, "twinstream_events_applied_total")?;
    let rebalances = metric(&api, "twinstream_rebalances_total").unwrap_or(0.0);
    let dead = metric(&api, "twinstream_dead_letters_total").unwrap_or(0.0);
    node.drain();
    let events = stop_node(&mut node)?;
    publisher.close()?;

    // The report.
    let during = |f: fn(&Sample) -> f64| samples.iter().map(f).fold(0.0, f64::max);
    let first_min = &samples[..samples.len().min(60)];
    let last_min = &samples[samples.len().saturating_sub(60)..];
    let mean = |v: &[Sample], f: fn(&Sample) -> f64| v.iter().map(f).sum::<f64>() / v.len().max(1) as f64;
    let applied_rate = (samples.last().map_or(0.0, |s| s.applied)) / flood_secs;
    println!(
        "- during the flood: the node used {flood_cores:.2} cores and applied {applied_rate:.0}/s ({:.2}x S); backlog in the brokers up to {:.0} (MQTT {:.0}, Kafka lag {:.0}); MQTT unacked up to {:.0}; Kafka partitions paused up to {:.0}",
        applied_rate / sustainable,
        during(|s| s.backlog_mqtt + s.backlog_kafka),
        during(|s| s.backlog_mqtt),
        during(|s| s.kafka_lag),
        during(|s| s.mqtt_unacked),
        during(|s| s.kafka_paused)
    );
    println!(
        "- node RSS: mean {:.0} MiB in the first minute, {:.0} MiB in the last, peak **{rss_peak:.0} MiB** (bound {} MiB)",
        mean(first_min, |s| s.rss_mib),
        mean(last_min, |s| s.rss_mib),
        args.rss_bound_mib
    );
    // S is measured on a small backlog; over a large one the node batches
    // more and applies faster: the flood's factor against that rate too
    // (with `--catch-up-cpu`, the rate before the quota was raised).
    let offered_rate = offered_in_time as f64 / flood_secs;
    let catch_up_rate = match measured {
        Some((_, rate)) => rate,
        None => samples.last().map_or(0.0, |s| s.backlog_mqtt + s.backlog_kafka) / caught_up.as_secs_f64().max(0.001),
    };
    let quota_note = match (measured, args.catch_up_cpu) {
        (Some((secs, _)), Some(cores)) => format!(
            " over its first {secs:.0} s on the flood's quota, which was then raised to {cores} cores to finish"
        ),
        _ => " over the backlog".into(),
    };
    println!(
        "- catch-up: **{:.1} s** after the flood stopped; {catch_up_rate:.0} readings/s{quota_note} ({:.2}x S): the flood offered **{:.1}x** this rate",
        caught_up.as_secs_f64(),
        catch_up_rate / sustainable,
        offered_rate / catch_up_rate.max(1.0)
    );
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(asset, v)| versions.get(*asset) != Some(v))
        .map(|(asset, v)| format!("{asset}: version {:?}, {v} readings", versions.get(asset)))
        .collect();
    println!(
        "- applied {applied:.0} readings for {total} offered: {:.0} redelivered and recognised (stopped cleanly with events={events}); Kafka rebalances {rebalances:.0}; {} twins checked, {} with a wrong version; {dead:.0} dead letters",
        applied - total as f64,
        expected.len(),
        wrong.len()
    );
    let mut failures = Vec::new();
    if !wrong.is_empty() {
        failures.push(format!(
            "{} twins with the wrong version, e.g. {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        ));
    }
    if dead > 0.0 {
        failures.push(format!("{dead} dead letters"));
    }
    if rss_peak > args.rss_bound_mib as f64 {
        failures.push(format!(
            "RSS peak {rss_peak:.0} MiB over the bound {} MiB",
            args.rss_bound_mib
        ));
    }
    if failures.is_empty() {
        println!("- verdict: **PASS** (0 lost, 0 twice, RSS within the bound, caught up)");
        Ok(())
    } else {
        println!("- verdict: **FAIL**: {}", failures.join("; "));
        bail!("flood verdict failed")
    }
}

/// The node's topology: an MQTT and a Kafka source, one model, dead letters
/// to a file in the state directory.
fn topology(dir: &Path, mqtt_port: u16, brokers: &str) -> Result<PathBuf> {
    let yaml = format!(
        r#"version: 1
node: {{ name: flood, snapshot: {{ interval: 1s }} }}
asset_types:
  pump:
    sensors: {{ temperature: {{ unit: degC }}, current: {{ unit: A }} }}
assets: [{{ id: "pump-*", type: pump }}]
windows: [{{ name: w1s, size: 1s }}]
rules:
  - {{ name: hot, when: "temperature > 100", clear_when: "temperature < 90" }}
sources:
  - {{ name: plc, type: mqtt, port: {mqtt_port}, client_id: flood-node, topics: ["plant/+/+"], qos: 1, topic_fields: "plant/{{asset}}/{{sensor}}", decode: {{ ts: ts, value: value }} }}
  - {{ name: fleet, type: kafka, brokers: "{brokers}", topics: [{TOPIC}], group_id: flood, decode: {{ sensor: sensor, ts: ts, value: value }} }}
sinks:
  - {{ name: dead, type: file, path: "{}", outputs: [dead_letters] }}
"#,
        dir.join("dead.jsonl").display()
    );
    let path = dir.join("flood.yaml");
    std::fs::write(&path, yaml)?;
    Ok(path)
}

/// A cgroup holding the node to a CPU quota (cgroup v1's `cpu` hierarchy,
/// else v2's `cpu.max`); removed when dropped.
struct Quota {
    dir: PathBuf,
    cores: f64,
    /// cgroup v1 (`cpu.cfs_quota_us`), else v2 (`cpu.max`).
    v1: bool,
    /// The quota's period, µs.
    period_us: u64,
}

impl Quota {
    fn new(cores: f64, period_ms: u64) -> Result<Quota> {
        let period_us = period_ms * 1000;
        let name = format!("twinstream-flood-{}", std::process::id());
        let (v1, v2) = (Path::new("/sys/fs/cgroup/cpu"), Path::new("/sys/fs/cgroup"));
        let (dir, is_v1) = if v1.join("cpu.cfs_quota_us").exists() {
            (v1.join(&name), true)
        } else if v2.join("cgroup.controllers").exists() {
            let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+cpu");
            (v2.join(&name), false)
        } else {
            bail!("no cgroup CPU controller under /sys/fs/cgroup: the flood needs one to hold the node to a quota")
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {} (needs root)", dir.display()))?;
        if is_v1 {
            std::fs::write(dir.join("cpu.cfs_period_us"), period_us.to_string())?;
        }
        let mut quota = Quota {
            dir,
            cores,
            v1: is_v1,
            period_us,
        };
        quota.set(cores)?;
        Ok(quota)
    }

    /// Holds the cgroup to `cores` from now on.
    fn set(&mut self, cores: f64) -> Result<()> {
        let quota = (cores * self.period_us as f64).round() as u64;
        let (file, value) = match self.v1 {
            true => ("cpu.cfs_quota_us", quota.to_string()),
            false => ("cpu.max", format!("{quota} {}", self.period_us)),
        };
        std::fs::write(self.dir.join(file), value)
            .with_context(|| format!("setting {file} of {}", self.dir.display()))?;
        self.cores = cores;
        Ok(())
    }

    fn add(&self, pid: u32) -> Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving {pid} into {}", self.dir.display()))
    }

    fn describe(&self) -> String {
        format!(
            "cgroup {}, {:.0} ms of CPU per {} ms",
            self.dir.display(),
            self.cores * self.period_us as f64 / 1000.0,
            self.period_us / 1000
        )
    }
}

impl Drop for Quota {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn start(bin: &Path, topo: &Path, state: &Path, quota: &Quota) -> node::Node {
    let node = node::Node::start(bin, topo, state);
    quota.add(node.child.id()).expect("the node under its quota");
    node
}

fn stop(mut node: node::Node) -> Result<()> {
    stop_node(&mut node).map(drop)
}

/// SIGTERM and a clean exit; returns the `events=` it reported.
fn stop_node(node: &mut node::Node) -> Result<u64> {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(node.child.id() as libc::pid_t, libc::SIGTERM) };
    let (_, line) = node.wait("the node to stop", |l| l.contains("stopped cleanly"));
    let status = node.child.wait()?;
    if !status.success() {
        bail!("the node exited with {status}");
    }
    let events = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("events=")?.parse().ok())
        .unwrap_or(0);
    Ok(events)
}

/// Reading `i` of the MQTT assets: `(topic, payload)`.
fn mqtt_reading(assets: usize, i: u64) -> (String, String) {
    let (asset, sensor, ts, value) = reading(assets, i);
    (
        format!("plant/pump-m{asset:04}/{sensor}"),
        format!(r#"{{"ts":{ts},"value":{value}}}"#),
    )
}

/// Reading `i` of the Kafka assets: `(key, value)`.
fn kafka_reading(assets: usize, i: u64) -> (String, String) {
    let (asset, sensor, ts, value) = reading(assets, i);
    (
        format!("pump-k{asset:04}"),
        format!(r#"{{"sensor":"{sensor}","ts":{ts},"value":{value}}}"#),
    )
}

/// Reading `i`: round-robin over the assets, sensors alternating by round,
/// each asset's timestamps increasing.
fn reading(assets: usize, i: u64) -> (usize, &'static str, i64, f64) {
    let asset = (i % assets as u64) as usize;
    let round = i / assets as u64;
    let sensor = if round.is_multiple_of(2) {
        "temperature"
    } else {
        "current"
    };
    (
        asset,
        sensor,
        1_700_000_000_000 + round as i64 * 100,
        ((asset as u64 * 7 + round * 13) % 150) as f64,
    )
}

/// Each twin's expected version: how many readings it was given.
fn expected_versions(assets: usize, probe: u64, mqtt: u64, kafka: u64) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (prefix, n) in [("m", probe + mqtt), ("k", probe + kafka)] {
        for a in 0..assets as u64 {
            let v = n / assets as u64 + u64::from(a < n % assets as u64);
            if v > 0 {
                out.insert(format!("pump-{prefix}{a:04}"), v);
            }
        }
    }
    out
}

/// What was offered to the brokers before the flood.
#[derive(Default)]
struct Offered {
    mqtt: u64,
    kafka: u64,
}

impl Offered {
    fn mqtt(&mut self, client: &mosquitto::MqttClient, assets: usize, i: u64) -> Result<()> {
        let (topic, payload) = mqtt_reading(assets, i);
        client.client.publish(topic, QoS::AtLeastOnce, false, payload)?;
        self.mqtt += 1;
        Ok(())
    }

    fn kafka(
        &mut self,
        producer: &rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
        assets: usize,
        i: u64,
    ) {
        let (key, value) = kafka_reading(assets, i);
        broker::send(producer, BaseRecord::to(TOPIC).key(&key).payload(&value));
        self.kafka += 1;
    }

    fn total(&self) -> u64 {
        self.mqtt + self.kafka
    }
}

/// Calls `send(i)` for i = 0, 1, ... at `rate` a second until `stop`,
/// counting in `sent`. A sender that falls behind catches up as fast as
/// it can (the offered rate is what the broker takes).
fn paced(rate: f64, stop: &AtomicBool, sent: &AtomicU64, mut send: impl FnMut(u64) -> bool) {
    let started = Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = Duration::from_secs_f64(i as f64 / rate);
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            // Pacing: the offered rate, not synchronisation.
            std::thread::sleep(ahead.min(Duration::from_millis(10)));
            continue;
        }
        if !send(i) {
            return;
        }
        i += 1;
        sent.store(i, Ordering::Relaxed);
    }
}

/// One second of the flood.
struct Sample {
    at: f64,
    rss_mib: f64,
    /// Applied since the flood began.
    applied: f64,
    mqtt_unacked: f64,
    kafka_paused: f64,
    kafka_lag: f64,
    /// Offered to a broker (acknowledged by it) and not yet received by the
    /// node.
    backlog_mqtt: f64,
    backlog_kafka: f64,
}

impl Sample {
    fn take(
        api: &str,
        pid: u32,
        since: Instant,
        publisher: &mosquitto::MqttClient,
        kafka_sent: &AtomicU64,
        applied_before: f64,
    ) -> Result<Sample> {
        let text = metrics(api)?;
        let get = |name: &str| value(&text, name).unwrap_or(0.0);
        let probe = get("twinstream_events_applied_total") - applied_before;
        let acked = publisher.snapshot().pubacks as f64;
        let received_mqtt = get("twinstream_records_received_total{source=\"plc\"}");
        let received_kafka = get("twinstream_records_received_total{source=\"fleet\"}");
        let kafka_offered = kafka_sent.load(Ordering::Relaxed) as f64;
        Ok(Sample {
            at: since.elapsed().as_secs_f64(),
            rss_mib: rss_mib(pid).unwrap_or(0.0),
            applied: probe,
            mqtt_unacked: get("twinstream_mqtt_unacked_messages{source=\"plc\"}"),
            kafka_paused: get("twinstream_kafka_paused{source=\"fleet\"}"),
            kafka_lag: sum(&text, "twinstream_kafka_consumer_lag_messages{"),
            backlog_mqtt: (acked - received_mqtt).max(0.0),
            backlog_kafka: (kafka_offered - received_kafka).max(0.0),
        })
    }

    fn line(&self) -> String {
        format!(
            "t={:.0}s rss={:.0}MiB applied={:.0} backlog mqtt={:.0} kafka={:.0} unacked={:.0} paused={:.0}",
            self.at,
            self.rss_mib,
            self.applied,
            self.backlog_mqtt,
            self.backlog_kafka,
            self.mqtt_unacked,
            self.kafka_paused
        )
    }
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn metrics(api: &str) -> Result<String> {
    Ok(ureq::get(&format!("{api}/metrics")).call()?.into_string()?)
}

/// The value of the series `name` (with its labels, as exported).
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The sum of every series whose line starts with `prefix`.
fn sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn metric(api: &str, name: &str) -> Result<f64> {
    value(&metrics(api)?, name).with_context(|| format!("no {name} in {api}/metrics"))
}

fn wait_metric(api: &str, name: &str, timeout: Duration, done: impl Fn(f64) -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if metrics(api).ok().and_then(|t| value(&t, name)).is_some_and(&done) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name} did not reach what was awaited within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every twin's version, through the API's list (paged).
fn twin_versions(api: &str) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            Some(a) => format!("{api}/twins?limit=1000&after={a}"),
            None => format!("{api}/twins?limit=1000"),
        };
        let page: serde_json::Value = ureq::get(&url).call()?.into_json()?;
        for t in page["items"].as_array().context("a page of twins")? {
            out.insert(
                t["asset"].as_str().context("asset")?.to_string(),
                t["version"].as_u64().context("version")?,
            );
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return Ok(out),
        }
    }
}
