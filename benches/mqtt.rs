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
//! * **B, twinstream**, once per `--ack-after` setting (`inbox,checkpoint`
//!   by default, side by side against the same broker and phase A):
//!   `twinstream run` with an `mqtt` source (QoS 1; `ack_after: inbox`: acks
//!   sent once the messages are in the node's write-ahead inbox;
//!   `ack_after: checkpoint`: only after the checkpoint holding their state
//!   is durable; either way checkpoints at least every 20 ms, the source's
//!   default `ack_interval`, and snapshots every `--snapshot-interval`), the
//!   rule `vibration > 95` on raw readings, and a stdout sink of
//!   `twin_updates` and `alerts`. Every
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
//!   `ts`; for every alert transition of the rule (the values cycle through
//!   0-99.99, so about one vibration reading in ten makes one), latency =
//!   the alert line read - the `ts` of the reading that made it: publish ->
//!   alert out. Twin updates coalesce the readings of one batch, so fewer
//!   values are seen than published. p50 / p90 / p99 / p99.9 / max of each.
//!   Skipped when B did not reach half of A's rate. (B sustains A's rate or
//!   nearly, B/A 0.84-1.11 in the runs of BENCHMARKS.md, so half of A is
//!   about half of the node's sustainable rate through this broker.)
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
//!
//! This file holds the workload, the phases and the report; the generic
//! parts are in `benches/support/`: Mosquitto and the MQTT clients
//! (`mosquitto.rs`), the `twinstream run` process (`twinstream.rs`), latency
//! percentiles (`latency.rs`), CPU use and the clocks (`system.rs`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use rumqttc::{Client, QoS};

#[path = "support/latency.rs"]
mod latency;
#[path = "support/mosquitto.rs"]
mod mosquitto;
#[path = "support/system.rs"]
mod system;
#[path = "support/twinstream.rs"]
mod twinstream;
#[path = "support/updates.rs"]
mod updates;

use latency::{paced, Latency, Paced};
use mosquitto::{mosquitto_version, Broker, MqttClient, START};
use system::{epoch_ms, load_average, machine, CpuMeter};
use twinstream::Twinstream;
use updates::{sensors_yaml, Tracker, SENSORS, SPIKE_RULE};

const TOPIC_FILTER: &str = "plant/+/+";

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
    /// The MQTT source's `ack_after` settings to run B and C with, in order,
    /// against the same broker and phase A.
    #[arg(long, value_delimiter = ',', default_value = "inbox,checkpoint")]
    ack_after: Vec<String>,
    /// twinstream's `node.snapshot.interval` (the MQTT source's
    /// `ack_interval`, 20 ms, applies when it is shorter).
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
    /// twinstream's `node.snapshot.sync`: fsync checkpoints and inbox writes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sync: bool,
    /// Mosquitto's `set_tcp_nodelay` (false: Nagle's algorithm batches its writes).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    tcp_nodelay: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.messages == 0 || args.assets == 0 || args.inflight.is_empty() || args.ack_after.is_empty() {
        bail!("--messages, --assets, --inflight and --ack-after must not be empty");
    }
    if let Some(bad) = args
        .ack_after
        .iter()
        .find(|a| !["inbox", "checkpoint"].contains(&a.as_str()))
    {
        bail!("--ack-after: `{bad}` is neither `inbox` nor `checkpoint`");
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
         twinstream snapshot.interval {} (sync {}), stdout sink of twin_updates; B and C with ack_after {} (either way \
         checkpoints at least every ack_interval, 20 ms by default)",
        args.messages,
        args.assets,
        SENSORS.len(),
        args.snapshot_interval,
        args.sync,
        args.ack_after.join(", then ")
    );
    let mut rows = Vec::new();
    for &inflight in &args.inflight {
        println!();
        println!("## max_inflight_messages {}", describe_inflight(inflight));
        let broker = Broker::start(&mosquitto, inflight, args.tcp_nodelay)?;
        println!("- broker settings: {}", broker.settings);
        let mut row = bare(&args, &broker).with_context(|| {
            format!(
                "with max_inflight_messages {inflight}; mosquitto log:\n{}",
                broker.log_tail()
            )
        })?;
        for ack_after in &args.ack_after {
            println!();
            println!("### twinstream, ack_after {ack_after}");
            let figures = twinstream(&args, &bin, &broker, &row, ack_after).with_context(|| {
                format!(
                    "with max_inflight_messages {inflight}, ack_after {ack_after}; mosquitto log:\n{}",
                    broker.log_tail()
                )
            })?;
            row.twinstream.push(figures);
        }
        rows.push(row);
    }
    summary(&args, &rows);
    Ok(())
}

/// The figures of one broker setting.
struct Row {
    inflight: u32,
    /// The epoch ms the workload's timestamps start from (one hour ago).
    base_ts: i64,
    a_rate: f64,
    a_pub_rate: f64,
    /// The bare subscriber's latency at half its rate (C's pacing).
    a_latency: Latency,
    /// Phases B and C per `--ack-after`.
    twinstream: Vec<Figures>,
}

/// Phases B and C of one `ack_after` setting.
struct Figures {
    ack_after: String,
    b_rate: f64,
    b_pub_rate: f64,
    /// Phase B did not finish within the budget (throttled).
    b_partial: bool,
    /// Phase C: publish -> twin update, publish -> alert out.
    c: Option<(Latency, Latency)>,
}

/// Phase A: the bare subscriber's rate, then its latency at half that rate.
fn bare(args: &Args, broker: &Broker) -> Result<Row> {
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
    let run = paced_mqtt(&publisher.client, args.assets, target_rate, args.latency_secs, start_ms)?;
    let cpu = cpu.stop();
    sub.wait("the bare subscriber to receive the paced messages", timeout, |s| {
        s.received >= n + run.published
    })?;
    publisher.wait("every PUBACK", timeout, |s| s.pubacks >= n + run.published)?;
    let latencies = std::mem::take(&mut sub.state.lock().unwrap().latencies);
    let a_latency = Latency::new(latencies, target_rate, &run, publisher.snapshot().last_puback)?;
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
    Ok(Row {
        inflight: broker.inflight,
        base_ts,
        a_rate,
        a_pub_rate,
        a_latency,
        twinstream: Vec::new(),
    })
}

/// Phases B and C: twinstream with `ack_after`, against phase A's figures.
fn twinstream(args: &Args, bin: &Path, broker: &Broker, a: &Row, ack_after: &str) -> Result<Figures> {
    let timeout = Duration::from_secs_f64(args.timeout);
    let n = args.messages as u64;
    let (a_rate, base_ts) = (a.a_rate, a.base_ts);
    let target_rate = a_rate / 2.0;

    // --- B: twinstream ---------------------------------------------------
    let dir = tempfile::Builder::new().prefix("twinstream-bench-mqtt").tempdir()?;
    let topo = write_topology(dir.path(), broker.port, &args.snapshot_interval, args.sync, ack_after)?;
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
        let paced = std::thread::spawn(move || paced_mqtt(&client, assets, target_rate, secs, start_ms));
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
        let last_puback = publisher.snapshot().last_puback;
        let latencies = std::mem::take(&mut tracker.latencies);
        let updates = Latency::new(latencies, target_rate, &run, last_puback)?;
        println!(
            "- C latency at half the bare rate (twinstream): {}",
            updates.describe("sensor values in twin updates, publish -> update line read")
        );
        let stalls = updates::stalls(&std::mem::take(&mut tracker.slow));
        if !stalls.is_empty() {
            println!(
                "  - twin updates later than {} ms: {}",
                updates::SLOW_MS,
                stalls.join(", ")
            );
        }
        let alerts = Latency::new(tracker.take_alerts("vibration-spike"), target_rate, &run, last_puback)?;
        println!(
            "- C alerts: {}",
            alerts.describe("alert transitions of `vibration > 95`, publish of the reading -> alert line read")
        );
        println!("  - {cpu}");
        Some((updates, alerts))
    };

    publisher.close()?;
    let (events, dead) = ts.stop(&state)?;
    if dead > 0 {
        bail!("twinstream dead-lettered {dead} records (see its dead_letters.jsonl)");
    }
    println!("- twinstream stopped cleanly ({events} events applied in this run)");
    // End its persistent session, so the broker queues nothing for it while
    // the next setting runs.
    let ended = MqttClient::connect(&client_id(ack_after), broker.port, true, 10)?;
    ended.wait("the session's end", START, |s| s.connected)?;
    ended.close()?;
    Ok(Figures {
        ack_after: ack_after.to_string(),
        b_rate,
        b_pub_rate,
        b_partial,
        c,
    })
}

fn summary(args: &Args, rows: &[Row]) {
    println!();
    println!(
        "## Summary (N = {}, {} assets x {} sensors; latencies p50 / p99 / p99.9 / max in ms at half the bare rate)",
        args.messages,
        args.assets,
        SENSORS.len()
    );
    println!();
    println!(
        "| max_inflight_messages | ack_after | A bare msg/s | B twinstream msg/s | B/A | publisher A / B msg/s | \
         paced msg/s | bare latency | twinstream latency | alert latency |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        for f in &r.twinstream {
            println!(
                "| {} | {} | {:.0} | {:.0}{} | {:.2} | {:.0} / {:.0} | {:.0} | {} | {} | {} |",
                describe_inflight(r.inflight),
                f.ack_after,
                r.a_rate,
                f.b_rate,
                if f.b_partial { " (throttled)" } else { "" },
                f.b_rate / r.a_rate,
                r.a_pub_rate,
                f.b_pub_rate,
                r.a_latency.target_rate,
                r.a_latency.cells(),
                f.c.as_ref().map_or("skipped".into(), |c| c.0.cells()),
                f.c.as_ref().map_or("skipped".into(), |c| c.1.cells()),
            );
        }
    }
    println!();
    for (r, f) in rows.iter().flat_map(|r| r.twinstream.iter().map(move |f| (r, f))) {
        let ratio = f.b_rate / r.a_rate;
        let mut line = format!(
            "- targets with max_inflight_messages {}, ack_after {}: ingest B/A >= 0.90: {} ({ratio:.2})",
            describe_inflight(r.inflight),
            f.ack_after,
            verdict(ratio >= 0.9)
        );
        match &f.c {
            Some((c, _)) => {
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

/// Publishes the pumps' readings round-robin at `rate` messages/s for `secs`
/// ([`latency::paced`]).
fn paced_mqtt(client: &Client, assets: usize, rate: f64, secs: f64, start_ms: i64) -> Result<Paced> {
    paced(assets * SENSORS.len(), rate, secs, start_ms, |pair, ts, value| {
        client.publish(
            topic(pair / SENSORS.len(), pair % SENSORS.len()),
            QoS::AtLeastOnce,
            false,
            format!(r#"{{"ts": {ts}, "value": {value}}}"#).into_bytes(),
        )?;
        Ok(())
    })
}

/// twinstream's client id with `ack_after` (one session per setting).
fn client_id(ack_after: &str) -> String {
    format!("twinstream-bench-mqtt-{ack_after}")
}

fn write_topology(dir: &Path, port: u16, snapshot: &str, sync: bool, ack_after: &str) -> Result<PathBuf> {
    let client_id = client_id(ack_after);
    let sensors = sensors_yaml();
    let path = dir.join("bench-mqtt.yaml");
    std::fs::write(
        &path,
        format!(
            r#"version: 1
node:
  name: bench-mqtt
  snapshot:
    interval: {snapshot}
    sync: {sync}
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
    client_id: {client_id}
    topics: ["{TOPIC_FILTER}"]
    qos: 1
    ack_after: {ack_after}
    topic_fields: "plant/{{asset}}/{{sensor}}"
    decode: {{ ts: ts, value: value }}
rules:
{SPIKE_RULE}sinks:
  - name: updates
    type: stdout
    outputs: [twin_updates, alerts]
"#
        ),
    )?;
    Ok(path)
}
