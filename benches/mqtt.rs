//! MQTT ingest benchmark: twinstream next to a bare rumqttc subscriber on one
//! real Mosquitto, in the same run.
//!
//! Run it with `scripts/bench-mqtt.sh [N]`, which builds the release binary
//! and runs `cargo bench --bench mqtt -- --messages N` with `TWINSTREAM_BIN`
//! pointing at it (without the variable, the binary cargo built alongside
//! this bench is used). `--help` lists the knobs.
//!
//! For each broker setting of `--inflight` (Mosquitto's
//! `max_inflight_messages`; `0` is unlimited, `20` its default) a fresh
//! Mosquitto is started on 127.0.0.1 and an ephemeral port
//! (`max_queued_messages 0`, `persistence false`, `set_tcp_nodelay` as
//! `--tcp-nodelay` says: default false, Mosquitto's own default),
//! and three phases run against it. The workload is N messages
//! `plant/pump-XXX/<sensor>` with payload `{"ts": <ms>, "value": <f64>}`,
//! round-robin over `--assets` pumps x 4 sensors, each (asset, sensor)'s `ts`
//! strictly increasing. Every client is QoS 1; the publisher has a 60,000
//! message inflight window and publishes as fast as the broker takes it.
//!
//! * **A, bare subscriber**: a rumqttc subscriber (QoS 1, persistent
//!   session, acking every message at once) receives the N messages; rate =
//!   N / (first received -> last received). This is what the broker and this
//!   machine deliver to one subscriber that does nothing: the reference for B.
//!   Then the bare subscriber's latency at half that rate, measured like C
//!   (payload `ts` -> received): what the publisher and the broker alone add.
//! * **B, twinstream**: `twinstream run` with an `mqtt` source (QoS 1, acks
//!   sent only after the checkpoint holding the state is durable, snapshots
//!   every `--snapshot-interval`, and at least every 20 ms, the source's
//!   default `ack_interval`) and a stdout sink of `twin_updates`. Every
//!   pump gets one warm-up reading first (the twins exist, so B measures the
//!   steady state), then the same N messages; rate = N / (first publish ->
//!   the twin update carrying the last `ts` of every (asset, sensor) read
//!   from twinstream's stdout). With a limited inflight window the acks that
//!   wait for a checkpoint can throttle delivery; B then stops after
//!   `--throttled-budget` and reports the rate it reached (events applied,
//!   read from the twins' `version`, over the budget). (Mosquitto 2.0.11
//!   releases up to `max_inflight_messages` queued messages per PUBACK it
//!   receives, so a burst of acks after a checkpoint widens the window far
//!   beyond the setting: there the throttle shows in C's latency rather
//!   than in B's rate.)
//! * **C, latency**: publishing paced at half of A's rate for
//!   `--latency-secs`, payload `ts` = wall-clock epoch ms at publish; for every
//!   sensor value in a twin update, latency = wall time the line was read -
//!   `ts`. Twin updates coalesce the readings of one batch, so fewer values
//!   are seen than published. Skipped when B did not reach half of A's rate.
//!
//! Reading the report: "publisher" rates are N / (first publish -> last
//! PUBACK); when one is close to its phase's rate, the publisher (or the
//! broker) is the bottleneck, not the subscriber. Each phase also prints the
//! CPU the broker, twinstream and this bench (publisher, bare subscriber,
//! reader of twinstream's output) used, in cores: a broker near 1.00 is
//! saturated (it is single-threaded); "other processes" is the rest of the
//! machine (a busy neighbour makes that phase's figures suspect). B can
//! exceed A: a subscriber that acks
//! every message at once costs the broker a PUBACK per message while the
//! messages flow, twinstream's acks come in bursts after each checkpoint.
//! B/A is the ingest ratio (target >= 0.90); C's target is p99 < 10 ms.
//! Targets are reported, never
//! asserted. The `ts` has millisecond resolution and is truncated, so each
//! latency is over-stated by less than 1 ms. Everything (broker, publisher,
//! twinstream, the reader of its output) shares this machine's cores, so the
//! figures include that contention. The bench exits non-zero only on a real
//! failure: a timeout, a broker or twinstream error, dead letters.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};
use serde::Deserialize;

const SENSORS: [&str; 4] = ["temperature", "vibration", "pressure", "current"];
const TOPIC_FILTER: &str = "plant/+/+";
/// The publisher's inflight window (rumqttc's packet ids are 16 bits).
const PUBLISH_INFLIGHT: u16 = 60_000;
/// How long start-up steps (broker, connections, subscriptions) may take.
const START: Duration = Duration::from_secs(60);

#[derive(Parser, Debug)]
#[command(about = "MQTT ingest: twinstream vs a bare rumqttc subscriber on one Mosquitto")]
struct Args {
    /// Messages per throughput phase (A and B).
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// Pumps (each has 4 sensors).
    #[arg(long, default_value_t = 1000)]
    assets: usize,
    /// Mosquitto `max_inflight_messages` settings to run, in order (0: unlimited).
    #[arg(long, value_delimiter = ',', default_value = "0,20")]
    inflight: Vec<u32>,
    /// twinstream's `node.snapshot.interval` (acks wait for a checkpoint; the
    /// MQTT source's `ack_interval`, 20 ms, applies when it is shorter).
    #[arg(long, default_value = "200ms")]
    snapshot_interval: String,
    /// How long phase C publishes.
    #[arg(long, default_value_t = 10.0)]
    latency_secs: f64,
    /// Deadline (seconds) of every wait that must complete.
    #[arg(long, default_value_t = 180.0)]
    timeout: f64,
    /// With a limited inflight window, phase B stops after this many seconds.
    #[arg(long, default_value_t = 20.0)]
    throttled_budget: f64,
    /// Mosquitto's `set_tcp_nodelay` (false: Nagle's algorithm batches its writes).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    tcp_nodelay: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.messages == 0 || args.assets == 0 || args.inflight.is_empty() {
        bail!("--messages, --assets and --inflight must not be empty");
    }
    let bin = match std::env::var_os("TWINSTREAM_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_twinstream")),
    };
    if !bin.is_file() {
        bail!("no twinstream binary at {} (set TWINSTREAM_BIN)", bin.display());
    }
    let mosquitto = std::env::var("MOSQUITTO").unwrap_or_else(|_| "mosquitto".into());

    println!("# MQTT ingest: twinstream vs a bare rumqttc subscriber, one Mosquitto");
    println!("- machine: {}", machine());
    println!("- broker: {}", mosquitto_version(&mosquitto));
    println!("- twinstream: {}", bin.display());
    println!(
        "- workload: N = {} messages per phase, {} assets x {} sensors, QoS 1, payload {{\"ts\": <ms>, \"value\": <f64>}}; \
         twinstream snapshot.interval {} (the MQTT source checkpoints at least every ack_interval, 20 ms by default), stdout sink of twin_updates",
        args.messages,
        args.assets,
        SENSORS.len(),
        args.snapshot_interval
    );
    let mut rows = Vec::new();
    for &inflight in &args.inflight {
        println!();
        println!("## max_inflight_messages {}", describe_inflight(inflight));
        let broker = Broker::start(&mosquitto, inflight, args.tcp_nodelay)?;
        println!("- broker settings: {}", broker.settings);
        let row = run_config(&args, &bin, &broker).with_context(|| {
            format!(
                "with max_inflight_messages {inflight}; mosquitto log:\n{}",
                broker.log_tail()
            )
        })?;
        rows.push(row);
    }
    summary(&args, &rows);
    Ok(())
}

/// The figures of one broker setting.
struct Row {
    inflight: u32,
    a_rate: f64,
    a_pub_rate: f64,
    /// The bare subscriber's latency at half its rate (C's pacing).
    a_latency: Latency,
    b_rate: f64,
    b_pub_rate: f64,
    /// Phase B did not finish within the budget (throttled).
    b_partial: bool,
    c: Option<Latency>,
}

/// Latencies publish -> received of one paced run, in ms.
struct Latency {
    target_rate: f64,
    published: u64,
    secs: f64,
    /// How long after the last publish call its PUBACK came.
    puback_lag_ms: f64,
    values: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Latency {
    fn new(mut v: Vec<f64>, target_rate: f64, run: &Paced, last_puback: Instant) -> Result<Latency> {
        if v.is_empty() {
            bail!("no latency measured");
        }
        v.sort_by(f64::total_cmp);
        Ok(Latency {
            target_rate,
            published: run.published,
            secs: run.elapsed.as_secs_f64(),
            puback_lag_ms: last_puback.saturating_duration_since(run.last_publish).as_secs_f64() * 1e3,
            values: v.len(),
            p50: percentile(&v, 50.0),
            p90: percentile(&v, 90.0),
            p99: percentile(&v, 99.0),
            p999: percentile(&v, 99.9),
            max: v[v.len() - 1],
        })
    }

    fn rate(&self) -> f64 {
        self.published as f64 / self.secs
    }

    fn describe(&self, what: &str) -> String {
        format!(
            "{} messages in {:.1} s at {:.0} msg/s (target {:.0}; the last PUBACK {:.1} ms after the last publish); \
             {} {what}: p50 **{:.2} ms**, p90 {:.2} ms, p99 **{:.2} ms**, p99.9 {:.2} ms, max {:.2} ms",
            self.published,
            self.secs,
            self.rate(),
            self.target_rate,
            self.puback_lag_ms,
            self.values,
            self.p50,
            self.p90,
            self.p99,
            self.p999,
            self.max
        )
    }

    fn cells(&self) -> String {
        format!("{:.2} / {:.2} / {:.2}", self.p50, self.p99, self.max)
    }
}

fn run_config(args: &Args, bin: &Path, broker: &Broker) -> Result<Row> {
    let timeout = Duration::from_secs_f64(args.timeout);
    let base_ts = epoch_ms() - 3_600_000;
    let n = args.messages as u64;

    // --- A: the bare subscriber ------------------------------------------
    let sub = MqttClient::connect("bench-bare-subscriber", broker.port, false, 1000)?;
    sub.client.subscribe(TOPIC_FILTER, QoS::AtLeastOnce)?;
    sub.wait("the bare subscription", START, |s| s.subacks > 0)?;
    let publisher = MqttClient::connect("bench-publisher-a", broker.port, true, 10_000)?;
    let messages = workload(args.messages, args.assets, base_ts);
    let cpu = CpuMeter::start(&[("broker", broker.child.id()), ("bench", std::process::id())]);
    let t0 = Instant::now();
    for (topic, payload) in messages {
        publisher.client.publish(topic, QoS::AtLeastOnce, false, payload)?;
    }
    sub.wait("the bare subscriber to receive every message", timeout, |s| {
        s.received >= n
    })?;
    let cpu = cpu.stop();
    publisher.wait("every PUBACK", timeout, |s| s.pubacks >= n)?;
    let (s, p) = (sub.snapshot(), publisher.snapshot());
    let rx_secs = (s.last_rx.unwrap() - s.first_rx.unwrap()).as_secs_f64();
    let a_rate = n as f64 / rx_secs;
    let a_pub_rate = n as f64 / (p.last_puback.unwrap() - t0).as_secs_f64();
    println!(
        "- A bare subscriber: {n} messages in {rx_secs:.3} s (first -> last received) = **{a_rate:.0} msg/s**; \
         publisher {a_pub_rate:.0} msg/s{}",
        if s.received > n {
            format!("; {} duplicates", s.received - n)
        } else {
            String::new()
        }
    );
    println!("  - {cpu}");

    // The same latency measurement as C, on the bare subscriber: what the
    // publisher and the broker alone add at that rate.
    let target_rate = a_rate / 2.0;
    let start_ms = epoch_ms();
    sub.state.lock().unwrap().latency_from = Some(start_ms);
    let cpu = CpuMeter::start(&[("broker", broker.child.id()), ("bench", std::process::id())]);
    let run = paced(&publisher.client, args.assets, target_rate, args.latency_secs, start_ms)?;
    let cpu = cpu.stop();
    sub.wait("the bare subscriber to receive the paced messages", timeout, |s| {
        s.received >= n + run.published
    })?;
    publisher.wait("every PUBACK", timeout, |s| s.pubacks >= n + run.published)?;
    let latencies = std::mem::take(&mut sub.state.lock().unwrap().latencies);
    let a_latency = Latency::new(latencies, target_rate, &run, publisher.snapshot().last_puback.unwrap())?;
    println!(
        "- A latency at half the bare rate (bare subscriber, C's pacing): {}",
        a_latency.describe("messages received, publish -> received")
    );
    println!("  - {cpu}");
    // Leave no session behind that the broker would queue B's messages for.
    sub.client.unsubscribe(TOPIC_FILTER)?;
    sub.wait("the bare unsubscription", START, |s| s.unsubacks > 0)?;
    sub.close()?;
    publisher.close()?;

    // --- B: twinstream ---------------------------------------------------
    let dir = tempfile::Builder::new().prefix("twinstream-bench-mqtt").tempdir()?;
    let topo = write_topology(dir.path(), broker.port, &args.snapshot_interval)?;
    let state = dir.path().join("state");
    let mut ts = Twinstream::start(bin, &topo, &state)?;
    ts.wait_stderr("MQTT subscribed", START)?;
    let publisher = MqttClient::connect("bench-publisher-b", broker.port, true, 10_000)?;
    let mut tracker = Tracker::new(args.assets);

    // Warm-up: one reading per pump; B starts once all of them are twin state.
    let warm_ts = base_ts - 1000;
    let mut warm = vec![i64::MIN; tracker.pairs()];
    for a in 0..args.assets {
        let payload = format!(r#"{{"ts": {warm_ts}, "value": 1.0}}"#);
        publisher
            .client
            .publish(topic(a, 0), QoS::AtLeastOnce, false, payload.into_bytes())?;
        warm[a * SENSORS.len()] = warm_ts;
    }
    tracker.expect(warm);
    if !ts.pump(&mut tracker, Instant::now() + timeout)? {
        bail!("timed out waiting for the warm-up readings in twin updates");
    }
    let warm_events = tracker.events();
    let warm_pubacks = args.assets as u64;
    publisher.wait("the warm-up PUBACKs", timeout, |s| s.pubacks >= warm_pubacks)?;

    let messages = workload(args.messages, args.assets, base_ts);
    tracker.expect(last_ts(&messages, args.assets, base_ts));
    let throttled = broker.inflight != 0;
    let budget = if throttled {
        Duration::from_secs_f64(args.throttled_budget.min(args.timeout))
    } else {
        timeout
    };
    let cpu = CpuMeter::start(&[
        ("broker", broker.child.id()),
        ("twinstream", ts.child.id()),
        ("bench", std::process::id()),
    ]);
    let t0 = Instant::now();
    for (topic, payload) in messages {
        publisher.client.publish(topic, QoS::AtLeastOnce, false, payload)?;
    }
    let done = ts.pump(&mut tracker, t0 + budget)?;
    let cpu = cpu.stop();
    let (b_rate, b_pub_rate, b_partial) = if done {
        let secs = (tracker.completed_at.unwrap() - t0).as_secs_f64();
        publisher.wait("every PUBACK", timeout, |s| s.pubacks >= warm_pubacks + n)?;
        let p = publisher.snapshot();
        let pub_rate = n as f64 / (p.last_puback.unwrap() - t0).as_secs_f64();
        let rate = n as f64 / secs;
        println!(
            "- B twinstream: {n} messages in {secs:.3} s (first publish -> last twin update) = **{rate:.0} msg/s**; \
             publisher {pub_rate:.0} msg/s; B/A = **{:.2}**",
            rate / a_rate
        );
        (rate, pub_rate, false)
    } else if throttled {
        let applied = tracker.events() - warm_events;
        let secs = budget.as_secs_f64();
        let rate = applied as f64 / secs;
        let p = publisher.snapshot();
        let pub_rate = match p.last_puback {
            Some(at) if p.pubacks >= warm_pubacks + n => n as f64 / (at - t0).as_secs_f64(),
            _ => f64::NAN,
        };
        println!(
            "- B twinstream: **throttled**: {applied} of {n} messages applied in {secs:.1} s = **{rate:.0} msg/s**; \
             publisher {pub_rate:.0} msg/s (the broker queued the rest); B/A = **{:.4}**",
            rate / a_rate
        );
        (rate, pub_rate, true)
    } else {
        bail!(
            "timed out after {budget:?}: twin updates reached the last reading of {} of {} (asset, sensor) pairs",
            tracker.pairs() - tracker.missing,
            tracker.pairs()
        );
    };
    println!("  - {cpu}");

    // --- C: latency at half the bare rate --------------------------------
    let c = if b_partial || b_rate < target_rate {
        println!(
            "- C latency: skipped: twinstream's ingest ({b_rate:.0} msg/s) is below half the bare rate ({target_rate:.0} msg/s)"
        );
        None
    } else {
        let pubacks_before = publisher.snapshot().pubacks;
        let start_ms = epoch_ms();
        tracker.latency_from = start_ms;
        let client = publisher.client.clone();
        let (assets, secs) = (args.assets, args.latency_secs);
        let cpu = CpuMeter::start(&[
            ("broker", broker.child.id()),
            ("twinstream", ts.child.id()),
            ("bench", std::process::id()),
        ]);
        let paced = std::thread::spawn(move || paced(&client, assets, target_rate, secs, start_ms));
        let deadline = Instant::now() + Duration::from_secs_f64(secs) + timeout;
        while !paced.is_finished() {
            ts.pump_for(&mut tracker, Duration::from_millis(20))?;
            if Instant::now() > deadline {
                bail!("the paced publisher did not finish");
            }
        }
        let run = paced.join().map_err(|_| anyhow!("the paced publisher panicked"))??;
        let cpu = cpu.stop();
        tracker.expect(run.last.clone());
        if !ts.pump(&mut tracker, Instant::now() + timeout)? {
            bail!(
                "timed out waiting for phase C's last readings: {} (asset, sensor) pairs missing",
                tracker.missing
            );
        }
        publisher.wait("every PUBACK", timeout, |s| s.pubacks >= pubacks_before + run.published)?;
        let latencies = std::mem::take(&mut tracker.latencies);
        let l = Latency::new(latencies, target_rate, &run, publisher.snapshot().last_puback.unwrap())?;
        println!(
            "- C latency at half the bare rate (twinstream): {}",
            l.describe("sensor values in twin updates, publish -> update line read")
        );
        println!("  - {cpu}");
        Some(l)
    };

    publisher.close()?;
    let (events, dead) = ts.stop(&state)?;
    if dead > 0 {
        bail!("twinstream dead-lettered {dead} records (see its dead_letters.jsonl)");
    }
    println!("- twinstream stopped cleanly ({events} events applied in this run)");
    Ok(Row {
        inflight: broker.inflight,
        a_rate,
        a_pub_rate,
        a_latency,
        b_rate,
        b_pub_rate,
        b_partial,
        c,
    })
}

fn summary(args: &Args, rows: &[Row]) {
    println!();
    println!(
        "## Summary (N = {}, {} assets x {} sensors; latencies p50 / p99 / max in ms at half the bare rate)",
        args.messages,
        args.assets,
        SENSORS.len()
    );
    println!();
    println!(
        "| max_inflight_messages | A bare msg/s | B twinstream msg/s | B/A | publisher A / B msg/s | paced msg/s | \
         bare latency | twinstream latency |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.0}{} | {:.2} | {:.0} / {:.0} | {:.0} | {} | {} |",
            describe_inflight(r.inflight),
            r.a_rate,
            r.b_rate,
            if r.b_partial { " (throttled)" } else { "" },
            r.b_rate / r.a_rate,
            r.a_pub_rate,
            r.b_pub_rate,
            r.a_latency.target_rate,
            r.a_latency.cells(),
            r.c.as_ref().map_or("skipped".into(), Latency::cells),
        );
    }
    println!();
    for r in rows {
        let ratio = r.b_rate / r.a_rate;
        let mut line = format!(
            "- targets with max_inflight_messages {}: ingest B/A >= 0.90: {} ({ratio:.2})",
            describe_inflight(r.inflight),
            verdict(ratio >= 0.9)
        );
        match &r.c {
            Some(c) => {
                let _ = write!(
                    line,
                    "; p99 < 10 ms at half the bare rate: {} ({:.2} ms)",
                    verdict(c.p99 < 10.0),
                    c.p99
                );
            }
            None => line.push_str("; p99 < 10 ms at half the bare rate: not measured"),
        }
        println!("{line}");
    }
    println!("- latencies: ms, `ts` truncated to whole ms (each figure over-states by < 1 ms)");
    println!("- load average at the end: {}", load_average());
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn describe_inflight(n: u32) -> String {
    if n == 0 {
        "0 (unlimited)".into()
    } else {
        n.to_string()
    }
}

// --- the workload ----------------------------------------------------------

fn topic(asset: usize, sensor: usize) -> String {
    format!("plant/pump-{asset:03}/{}", SENSORS[sensor])
}

/// N messages round-robin over (asset, sensor); round `r` has `ts` = base + r.
fn workload(n: usize, assets: usize, base_ts: i64) -> Vec<(String, Vec<u8>)> {
    let pairs = assets * SENSORS.len();
    (0..n)
        .map(|k| {
            let (pair, round) = (k % pairs, k / pairs);
            let value = ((k * 7919) % 10_000) as f64 / 100.0;
            (
                topic(pair / SENSORS.len(), pair % SENSORS.len()),
                format!(r#"{{"ts": {}, "value": {value}}}"#, base_ts + round as i64).into_bytes(),
            )
        })
        .collect()
}

/// The last `ts` of each (asset, sensor) in [`workload`] (`i64::MIN`: none).
fn last_ts(messages: &[(String, Vec<u8>)], assets: usize, base_ts: i64) -> Vec<i64> {
    let pairs = assets * SENSORS.len();
    let mut last = vec![i64::MIN; pairs];
    for k in messages.len().saturating_sub(pairs)..messages.len() {
        last[k % pairs] = base_ts + (k / pairs) as i64;
    }
    last
}

/// What [`paced`] published.
struct Paced {
    published: u64,
    /// The last `ts` of each (asset, sensor).
    last: Vec<i64>,
    elapsed: Duration,
    /// When the last publish call returned.
    last_publish: Instant,
}

/// Publishes round-robin at `rate` messages/s for `secs`, `ts` = wall-clock
/// ms at the publish call (strictly increasing per pair, never below
/// `start_ms`).
fn paced(client: &Client, assets: usize, rate: f64, secs: f64, start_ms: i64) -> Result<Paced> {
    let pairs = assets * SENSORS.len();
    let mut last = vec![i64::MIN; pairs];
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(secs);
    let mut k = 0u64;
    loop {
        let due = t0 + Duration::from_secs_f64(k as f64 / rate);
        if due >= end {
            break;
        }
        let now = Instant::now();
        // Pacing, not synchronisation: at most 1 ms ahead of schedule.
        if due > now + Duration::from_millis(1) {
            std::thread::sleep(due - now);
        }
        let pair = (k % pairs as u64) as usize;
        let ts = epoch_ms().max(last[pair] + 1).max(start_ms);
        last[pair] = ts;
        let value = (k % 10_000) as f64 / 100.0;
        client.publish(
            topic(pair / SENSORS.len(), pair % SENSORS.len()),
            QoS::AtLeastOnce,
            false,
            format!(r#"{{"ts": {ts}, "value": {value}}}"#).into_bytes(),
        )?;
        k += 1;
    }
    let last_publish = Instant::now();
    Ok(Paced {
        published: k,
        last,
        elapsed: last_publish - t0,
        last_publish,
    })
}

/// The `ts` of a payload this bench wrote (`{"ts": <ms>, ...}`).
fn payload_ts(payload: &[u8]) -> Option<i64> {
    let rest = payload.strip_prefix(br#"{"ts": "#)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn write_topology(dir: &Path, port: u16, snapshot: &str) -> Result<PathBuf> {
    let sensors: String = SENSORS
        .iter()
        .zip(["degC", "mm/s", "bar", "A"])
        .map(|(s, unit)| format!("      {s}: {{ unit: {unit} }}\n"))
        .collect();
    let path = dir.join("bench-mqtt.yaml");
    std::fs::write(
        &path,
        format!(
            r#"version: 1
node:
  name: bench-mqtt
  snapshot:
    interval: {snapshot}
asset_types:
  pump:
    sensors:
{sensors}assets:
  - id: "pump-*"
    type: pump
sources:
  - name: plant
    type: mqtt
    host: 127.0.0.1
    port: {port}
    client_id: twinstream-bench-mqtt
    topics: ["{TOPIC_FILTER}"]
    qos: 1
    topic_fields: "plant/{{asset}}/{{sensor}}"
    decode: {{ ts: ts, value: value }}
sinks:
  - name: updates
    type: stdout
    outputs: [twin_updates]
"#
        ),
    )?;
    Ok(path)
}

// --- twin updates ----------------------------------------------------------

/// A line of twinstream's stdout and when it was read.
struct Line {
    text: String,
    at: Instant,
    /// Wall clock (epoch ms, fractional) at the same moment.
    wall_ms: f64,
}

#[derive(Deserialize)]
struct UpdateLine {
    kind: String,
    asset: String,
    version: u64,
    sensors: HashMap<String, Reading>,
}

#[derive(Deserialize)]
struct Reading {
    ts: i64,
}

/// What the twin updates have shown so far.
struct Tracker {
    /// Newest `ts` seen per (asset, sensor).
    seen: Vec<i64>,
    /// The `ts` each pair must reach (`i64::MIN`: nothing expected).
    target: Vec<i64>,
    /// Pairs whose newest `ts` is still below their target.
    missing: usize,
    /// When the last missing pair arrived.
    completed_at: Option<Instant>,
    /// Newest version per asset (a twin's version counts its applied events).
    versions: Vec<u64>,
    /// Latencies are recorded for readings with `ts` at or after this.
    latency_from: i64,
    latencies: Vec<f64>,
}

impl Tracker {
    fn new(assets: usize) -> Tracker {
        let pairs = assets * SENSORS.len();
        Tracker {
            seen: vec![i64::MIN; pairs],
            target: vec![i64::MIN; pairs],
            missing: 0,
            completed_at: None,
            versions: vec![0; assets],
            latency_from: i64::MAX,
            latencies: Vec::new(),
        }
    }

    fn pairs(&self) -> usize {
        self.seen.len()
    }

    /// Events applied so far, over all twins.
    fn events(&self) -> u64 {
        self.versions.iter().sum()
    }

    fn expect(&mut self, target: Vec<i64>) {
        self.missing = self.seen.iter().zip(&target).filter(|(s, t)| s < t).count();
        self.target = target;
        self.completed_at = None;
    }

    fn take(&mut self, line: &Line) -> Result<()> {
        let u: UpdateLine =
            serde_json::from_str(&line.text).with_context(|| format!("not a twin update: {}", line.text))?;
        if u.kind != "twin_update" {
            bail!("unexpected output line: {}", line.text);
        }
        let asset: usize = u
            .asset
            .strip_prefix("pump-")
            .and_then(|n| n.parse().ok())
            .filter(|a| *a < self.versions.len())
            .ok_or_else(|| anyhow!("unexpected asset in {}", line.text))?;
        self.versions[asset] = self.versions[asset].max(u.version);
        for (name, r) in &u.sensors {
            let s = SENSORS
                .iter()
                .position(|x| x == name)
                .ok_or_else(|| anyhow!("unexpected sensor in {}", line.text))?;
            let pair = asset * SENSORS.len() + s;
            if r.ts >= self.latency_from {
                self.latencies.push(line.wall_ms - r.ts as f64);
            }
            let (old, target) = (self.seen[pair], self.target[pair]);
            if r.ts > old {
                self.seen[pair] = r.ts;
                if old < target && r.ts >= target {
                    self.missing -= 1;
                    if self.missing == 0 {
                        self.completed_at = Some(line.at);
                    }
                }
            }
        }
        Ok(())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// --- processes -------------------------------------------------------------

/// `twinstream run`: stdout lines (time-stamped as read) on a channel,
/// stderr lines kept. Killed if dropped while running.
struct Twinstream {
    child: Child,
    lines: crossbeam_channel::Receiver<Line>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Twinstream {
    fn start(bin: &Path, topo: &Path, state: &Path) -> Result<Twinstream> {
        let mut child = Command::new(bin)
            .arg("run")
            .arg(topo)
            .arg("--state-dir")
            .arg(state)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let (tx, lines) = crossbeam_channel::unbounded();
        let out = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(1 << 20, out);
            loop {
                let mut text = String::new();
                match r.read_line(&mut text) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = Line {
                    at: Instant::now(),
                    wall_ms: wall_ms(),
                    text,
                };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().expect("piped");
        let keep = stderr.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(l);
            }
        });
        Ok(Twinstream { child, lines, stderr })
    }

    fn stderr_tail(&self) -> String {
        let err = self.stderr.lock().unwrap();
        err[err.len().saturating_sub(30)..].join("\n")
    }

    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("twinstream exited ({status}); stderr:\n{}", self.stderr_tail());
        }
        Ok(())
    }

    /// Waits until a stderr line contains `what`.
    fn wait_stderr(&mut self, what: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.stderr.lock().unwrap().iter().any(|l| l.contains(what)) {
            self.check_running()?;
            if Instant::now() > deadline {
                bail!(
                    "timed out waiting for `{what}` from twinstream; stderr:\n{}",
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Feeds output lines to `tracker` until nothing is missing (true) or
    /// `deadline` (false).
    fn pump(&mut self, tracker: &mut Tracker, deadline: Instant) -> Result<bool> {
        while tracker.missing > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.pump_for(tracker, left.min(Duration::from_millis(50)))?;
        }
        Ok(true)
    }

    /// Feeds the output lines that arrive within `wait` to `tracker`.
    fn pump_for(&mut self, tracker: &mut Tracker, wait: Duration) -> Result<()> {
        match self.lines.recv_timeout(wait) {
            Ok(line) => tracker.take(&line)?,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => return self.check_running(),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                let _ = self.child.wait();
                self.check_running()?;
                bail!("twinstream closed its stdout");
            }
        }
        while let Ok(line) = self.lines.try_recv() {
            tracker.take(&line)?;
        }
        Ok(())
    }

    /// SIGTERM and a clean exit; returns the events it applied and the
    /// number of dead letters it wrote.
    fn stop(mut self, state: &Path) -> Result<(u64, usize)> {
        // SAFETY: kill(2) on our own child's pid.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) } != 0 {
            bail!("cannot signal twinstream: {}", std::io::Error::last_os_error());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                bail!("twinstream did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The stderr reader ends at EOF; wait for its last lines.
        let deadline = Instant::now() + Duration::from_secs(5);
        let stopped = loop {
            let err = self.stderr.lock().unwrap();
            if let Some(l) = err.iter().find(|l| l.contains("stopped cleanly")) {
                break Some(l.clone());
            }
            drop(err);
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let Some(stopped) = stopped.filter(|_| status.success()) else {
            bail!(
                "twinstream did not stop cleanly ({status}); stderr:\n{}",
                self.stderr_tail()
            );
        };
        let events = stopped
            .split_whitespace()
            .find_map(|w| w.strip_prefix("events=")?.parse().ok())
            .unwrap_or(0);
        let dead = std::fs::read_to_string(state.join("dead_letters.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        Ok((events, dead))
    }
}

impl Drop for Twinstream {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Mosquitto on 127.0.0.1 and an ephemeral port with its own config file in
/// a temporary directory; killed when dropped.
struct Broker {
    child: Child,
    port: u16,
    inflight: u32,
    settings: String,
    dir: tempfile::TempDir,
}

impl Broker {
    fn start(mosquitto: &str, inflight: u32, nodelay: bool) -> Result<Broker> {
        let dir = tempfile::Builder::new()
            .prefix("twinstream-bench-mosquitto")
            .tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let settings = format!(
            "max_inflight_messages {inflight}\nmax_queued_messages 0\npersistence false\nset_tcp_nodelay {nodelay}\n"
        );
        std::fs::write(
            dir.path().join("mosquitto.conf"),
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\n{settings}user root\nlog_dest file {}\n",
                dir.path().join("mosquitto.log").display()
            ),
        )?;
        let child = Command::new(mosquitto)
            .arg("-c")
            .arg(dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {mosquitto} (scripts/install-deps.sh installs it)"))?;
        let mut broker = Broker {
            child,
            port,
            inflight,
            settings: settings.trim_end().replace('\n', ", "),
            dir,
        };
        // Ready when it accepts connections.
        let deadline = Instant::now() + START;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = broker.child.try_wait()? {
                bail!("mosquitto exited ({status}):\n{}", broker.log_tail());
            }
            if Instant::now() > deadline {
                bail!("mosquitto did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(broker)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- MQTT clients ------------------------------------------------------------

/// What a client's connection thread has seen.
#[derive(Default)]
struct ClientState {
    connected: bool,
    subacks: u64,
    unsubacks: u64,
    pubacks: u64,
    last_puback: Option<Instant>,
    received: u64,
    first_rx: Option<Instant>,
    last_rx: Option<Instant>,
    /// Received messages whose payload `ts` is at or after this get their
    /// latency (wall time received - `ts`, ms) recorded.
    latency_from: Option<i64>,
    latencies: Vec<f64>,
    error: Option<String>,
}

/// A rumqttc client whose connection a thread drives (incoming QoS 1
/// messages are acked at once); it stops at the first error.
struct MqttClient {
    client: Client,
    state: Arc<Mutex<ClientState>>,
    thread: JoinHandle<()>,
}

impl MqttClient {
    fn connect(id: &str, port: u16, clean_session: bool, cap: usize) -> Result<MqttClient> {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(60));
        opts.set_clean_session(clean_session);
        opts.set_inflight(PUBLISH_INFLIGHT);
        let (client, mut connection) = Client::new(opts, cap);
        let state = Arc::new(Mutex::new(ClientState::default()));
        let shared = state.clone();
        let thread = std::thread::Builder::new().name(id.into()).spawn(move || {
            for event in connection.iter() {
                let (now, wall) = (Instant::now(), wall_ms());
                let mut s = shared.lock().unwrap();
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => s.connected = true,
                    Ok(Event::Incoming(Packet::SubAck(_))) => s.subacks += 1,
                    Ok(Event::Incoming(Packet::UnsubAck(_))) => s.unsubacks += 1,
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        s.pubacks += 1;
                        s.last_puback = Some(now);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        s.received += 1;
                        s.first_rx.get_or_insert(now);
                        s.last_rx = Some(now);
                        if let (Some(from), Some(ts)) = (s.latency_from, payload_ts(&p.payload)) {
                            if ts >= from {
                                s.latencies.push(wall - ts as f64);
                            }
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => {
                        s.error = Some(e.to_string());
                        break;
                    }
                }
            }
        })?;
        let c = MqttClient { client, state, thread };
        c.wait(&format!("{id} to connect"), START, |s| s.connected)?;
        Ok(c)
    }

    /// The counters so far (without the latencies).
    fn snapshot(&self) -> ClientState {
        let s = self.state.lock().unwrap();
        ClientState {
            latencies: Vec::new(),
            error: s.error.clone(),
            ..*s
        }
    }

    /// Polls until `pred` holds; fails on a connection error or at `timeout`.
    fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&ClientState) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let s = self.state.lock().unwrap();
                if pred(&s) {
                    return Ok(());
                }
                if let Some(e) = &s.error {
                    bail!("MQTT connection error while waiting for {what}: {e}");
                }
            }
            if Instant::now() > deadline {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn close(self) -> Result<()> {
        self.client.disconnect()?;
        self.thread
            .join()
            .map_err(|_| anyhow!("an MQTT connection thread panicked"))?;
        Ok(())
    }
}

// --- misc ------------------------------------------------------------------

/// CPU time of some processes, and of the rest of the machine, over a phase.
struct CpuMeter {
    started: Instant,
    procs: Vec<(&'static str, u32, f64)>,
    machine: f64,
}

impl CpuMeter {
    fn start(procs: &[(&'static str, u32)]) -> CpuMeter {
        CpuMeter {
            started: Instant::now(),
            procs: procs.iter().map(|&(name, pid)| (name, pid, cpu_secs(pid))).collect(),
            machine: machine_busy_secs(),
        }
    }

    /// "CPU busy (cores, of N): broker 0.97, ..., other processes 0.02"
    /// since [`start`](Self::start).
    fn stop(self) -> String {
        let wall = self.started.elapsed().as_secs_f64();
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        let mut ours = 0.0;
        let mut busy: Vec<String> = self
            .procs
            .iter()
            .map(|&(name, pid, before)| {
                let used = cpu_secs(pid) - before;
                ours += used;
                format!("{name} {:.2}", used / wall)
            })
            .collect();
        let others = ((machine_busy_secs() - self.machine - ours) / wall).max(0.0);
        busy.push(format!("other processes {others:.2}"));
        format!("CPU busy over the phase (cores, of {cpus}): {}", busy.join(", "))
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// User + system CPU seconds of process `pid` (all its threads) so far.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces): state is field
    // 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, f)| f.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// CPU seconds the whole machine has been busy (not idle, not waiting for
/// I/O) so far, from /proc/stat.
fn machine_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next().and_then(|l| l.strip_prefix("cpu ")) else {
        return f64::NAN;
    };
    let ticks: Vec<f64> = cpu.split_whitespace().filter_map(|t| t.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let busy: f64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    busy / clock_ticks()
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as f64
        / 1000.0
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} cpus (nproc), {model}; load average {} at start", load_average())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn mosquitto_version(mosquitto: &str) -> String {
    let out = Command::new(mosquitto).arg("-h").output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr))
        .unwrap_or_default();
    let version = text.lines().find(|l| l.contains("version"));
    version.unwrap_or("mosquitto (version unknown)").trim().to_string()
}
