//! The edge role against real brokers: Mosquitto in front (the assets), the
//! Kafka-compatible broker (tansu, SQLite storage) behind (the cluster's
//! ingest topic). The edge applies its local rules, forwards every event
//! keyed by asset id, buffers in the store while the uplink is down, holds
//! ingest back when the buffer is full, survives `kill -9` with the buffer,
//! and drains in order when the uplink returns.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(120);
const ASSETS: usize = 20;
const PARTITIONS: i32 = 4;
/// The uplink's store-and-forward bound, and what memory holds before it.
const BUFFER: u64 = 128 * 1024;
const QUEUE: usize = 500;

/// What the edge, the cluster node and the single node share: the asset
/// types, the window and the rules (one local, one the cluster's).
const MODEL: &str = r#"asset_types:
  pump:
    sensors: { temperature: { unit: degC }, current: { unit: A } }
assets: [{ id: "pump-*", type: pump }]
windows: [{ name: w1s, size: 1s }]
rules:
  - { name: trip, when: "temperature > 140", local: true, severity: critical }
  - { name: wear, when: "current > 10" }
"#;

fn edge_topology(dir: &Path, mqtt: u16, brokers: &str) -> PathBuf {
    Topo::new("edge-1")
        .snapshot_every("100ms")
        .with("role: edge")
        .with("max_inflight_chunks: 2")
        .model(MODEL)
        .mqtt_source("plant", mqtt, "edge-test")
        .sink(&format!(
            r#"{{ name: up, type: kafka, brokers: "{brokers}", topic: telemetry, queue: {QUEUE}, buffer: {{ max_bytes: {BUFFER} }}, outputs: [events] }}"#
        ))
        .file_sink("alerts", &dir.join("alerts.jsonl"), "alerts")
        .file_sink("dead", &dir.join("dead.jsonl"), "dead_letters")
        .write(&dir.join("edge.yaml"))
}

/// A node that reads `source` (the cluster's topic, or the same events from
/// a file): its twin updates and alerts in files named after it; `node`
/// adds a `node` setting (the cluster's).
fn node_topology(dir: &Path, name: &str, node: Option<&str>, source: &str) -> PathBuf {
    let mut topo = Topo::new(name).snapshot_every("100ms");
    if let Some(setting) = node {
        topo = topo.with(setting);
    }
    topo.model(MODEL)
        .source(source)
        .file_sink("updates", &dir.join(format!("updates-{name}.jsonl")), "twin_updates")
        .file_sink("alerts", &dir.join(format!("alerts-{name}.jsonl")), "alerts")
        .write(&dir.join(format!("{name}.yaml")))
}

/// Rounds `from..to` of one reading per asset, sensors alternating by round,
/// as MQTT messages; pump-0003's temperature trips the local rule in round
/// `trip`.
fn readings(from: usize, to: usize, trip: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in from..to {
        for a in 0..ASSETS {
            let sensor = if i % 2 == 0 { "temperature" } else { "current" };
            let value = if a == 3 && i == trip {
                145.0
            } else {
                ((a * 7 + i * 3) % 400) as f64 / 4.0
            };
            let ts = 1_700_000_000_000i64 + i as i64 * 100;
            out.push((
                format!("plant/pump-{a:04}/{sensor}"),
                format!(r#"{{"ts":{ts},"value":{value}}}"#),
            ));
        }
    }
    out
}

/// A record of the uplink topic: `(sensor, ts, value, redelivered)`.
type Forwarded = (String, i64, f64, bool);

/// Reads the uplink topic from the start, per asset in partition order,
/// until it has `want` distinct events.
fn forwarded(brokers: &str, what: &str, want: usize) -> BTreeMap<String, Vec<Forwarded>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "edge-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset("telemetry", p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut by_asset: BTreeMap<String, Vec<Forwarded>> = BTreeMap::new();
    let mut distinct = std::collections::HashSet::new();
    let all = poll_until(WAIT, || {
        // Records as they come; back to the poll when none came for a while.
        while distinct.len() < want {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
                return None;
            };
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            let part = twinstream::cluster::partition_for(key.as_bytes(), PARTITIONS as u32);
            assert_eq!(part as i32, m.partition(), "{key}: Kafka's default partitioner");
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            assert_eq!(v["kind"], "event");
            assert_eq!(v["asset"], key.as_str());
            assert_eq!(v["source"], "plant");
            let again = m
                .headers()
                .is_some_and(|h| h.iter().any(|h| h.key == "twinstream.redelivered"));
            distinct.insert((key.clone(), v["sensor"].to_string(), v["ts"].as_i64().unwrap()));
            by_asset.entry(key).or_default().push((
                v["sensor"].as_str().unwrap().to_string(),
                v["ts"].as_i64().unwrap(),
                v["value"].as_f64().unwrap(),
                again || v["redelivered"] == true,
            ));
        }
        Some(())
    });
    assert!(
        all.is_some(),
        "{what}: {} records",
        by_asset.values().map(Vec::len).sum::<usize>()
    );
    by_asset
}

/// What was published, per asset, in order.
fn published(messages: &[(String, String)]) -> BTreeMap<String, Vec<(String, i64, f64)>> {
    let mut out: BTreeMap<String, Vec<(String, i64, f64)>> = BTreeMap::new();
    for (topic, payload) in messages {
        let mut parts = topic.split('/').skip(1);
        let (asset, sensor) = (parts.next().unwrap(), parts.next().unwrap());
        let v: serde_json::Value = serde_json::from_str(payload).unwrap();
        out.entry(asset.to_string()).or_default().push((
            sensor.to_string(),
            v["ts"].as_i64().unwrap(),
            v["value"].as_f64().unwrap(),
        ));
    }
    out
}

/// The forwarded events of each asset without the records a twinstream
/// node would recognise as duplicates (marked redelivered, already seen):
/// they must be exactly what was published, in order.
fn deduplicated(got: &BTreeMap<String, Vec<Forwarded>>) -> BTreeMap<String, Vec<(String, i64, f64)>> {
    got.iter()
        .map(|(asset, records)| {
            let mut kept: Vec<(String, i64, f64)> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (sensor, ts, value, again) in records {
                let r = (sensor.clone(), *ts, *value);
                if !seen.insert((sensor.clone(), *ts, value.to_bits())) {
                    assert!(again, "{asset}: {r:?} forwarded twice without being marked redelivered");
                    continue;
                }
                kept.push(r);
            }
            (asset.clone(), kept)
        })
        .collect()
}

/// Starts the edge (HTTP on a port it picks) and waits until it is ready;
/// returns it and its API's base URL.
fn start_ready(cmd: &mut std::process::Command) -> (Running, String) {
    let mut edge = spawn(cmd);
    let base = edge.http_base();
    let mut last = String::new();
    let ready = poll_until(WAIT, || match ureq::get(&format!("{base}/readyz")).call() {
        Ok(_) => Some(()),
        Err(e) => {
            last = e.to_string();
            None
        }
    });
    if ready.is_none() {
        let lines: Vec<String> = edge.stderr.try_iter().collect();
        panic!("the edge never became ready ({last}):\n{}", lines.join("\n"));
    }
    (edge, base)
}

/// The uplink goes down for a while: the edge keeps applying its local
/// rule, buffers in the store until the bound and then holds ingest back
/// (the readings wait with Mosquitto), is killed (`kill -9`) and restarted
/// with the buffer, and when the uplink returns every event arrives, keyed
/// by asset on its default partition, in the order it was published.
#[test]
fn an_edge_buffers_through_an_uplink_outage_and_a_crash_and_forwards_every_event_in_order() {
    let mqtt = Mosquitto::start();
    let mut kafka = Tansu::start();
    let brokers = kafka.brokers();
    create_topic(&brokers, "telemetry", PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let topo = edge_topology(dir.path(), mqtt.port, &brokers);
    let state = dir.path().join("state");
    let (mut edge, http) = start_ready(&mut run_cmd(&topo, &state));

    // Uplink up: events flow through at once.
    let mut sent = readings(0, 10, usize::MAX);
    publish(mqtt.port, &sent);
    forwarded(&brokers, "first rounds forwarded", 10 * ASSETS);

    // Uplink down: more than the buffer holds (~170 B a record) fills it...
    kafka.stop();
    let wave = readings(10, 60, 30);
    sent.extend_from_slice(&wave);
    publish(mqtt.port, &wave);
    edge.wait_stderr("the buffer filling up", WAIT, |l| l.contains("buffer full"));
    let limit = metric(&http, "twinstream_sink_buffer_limit_bytes{sink=\"up\"}").unwrap();
    assert_eq!(limit, BUFFER as f64);
    // ... and then ingest stops: ~3.4 MB more wait with Mosquitto, while
    // the buffer stays past its limit by at most what was in flight when it
    // filled (`max_inflight_chunks` MQTT chunks).
    let wave = readings(60, 1060, usize::MAX);
    sent.extend_from_slice(&wave);
    publish(mqtt.port, &wave);
    let bound = BUFFER as f64 + (2 * twinstream::source::mqtt::MAX_BATCH * 200) as f64;
    let watch = Instant::now();
    let mut bytes = 0.0;
    while watch.elapsed() < Duration::from_secs(2) {
        bytes = metric(&http, "twinstream_sink_buffer_bytes{sink=\"up\"}").unwrap();
        assert!(bytes <= bound, "{bytes} bytes buffered, more than the bound {bound}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(bytes >= BUFFER as f64 * 0.9, "{bytes}");
    assert_eq!(metric(&http, "twinstream_sink_backpressure{sink=\"up\"}"), Some(1.0));
    // Edge autonomy: the local rule fired while the cluster was away; the
    // cluster's rule is not the edge's to evaluate.
    let alerts = poll_until(WAIT, || {
        let alerts = jsonl(&dir.path().join("alerts.jsonl"));
        (!alerts.is_empty()).then_some(alerts)
    })
    .expect("the local rule never fired");
    assert_eq!(alerts[0]["asset"], "pump-0003");
    assert_eq!(alerts[0]["rule"], "trip");
    assert!(alerts.iter().all(|a| a["rule"] == "trip"), "{alerts:?}");

    // A crash with the uplink still down: the buffer survives it, and
    // Mosquitto keeps what the edge did not acknowledge.
    edge.child.kill().unwrap();
    edge.child.wait().unwrap();
    let mut edge = spawn(&mut run_cmd(&topo, &state));
    let http = edge.http_base();
    edge.wait_stderr("the buffer restored", WAIT, |l| {
        l.contains("forwarding the messages the buffer holds from the last run")
    });

    // Uplink back: everything drains, in order.
    kafka.resume();
    let want = published(&sent);
    let got = forwarded(&brokers, "every event forwarded", sent.len());
    assert_eq!(deduplicated(&got), want, "every event, once, in publication order");
    let emptied = poll_until(WAIT, || {
        (metric(&http, "twinstream_sink_buffer_bytes{sink=\"up\"}") == Some(0.0)).then_some(())
    });
    assert!(emptied.is_some(), "the buffer never emptied");
    let (_, err) = stop_cleanly(edge);
    // Errors: the buffer filling up, and librdkafka failing to connect
    // while the broker was down; nothing else.
    let unexpected: Vec<&String> = err
        .iter()
        .filter(|l| l.contains("ERROR") && !l.contains("buffer full") && !l.contains("Connection refused"))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    assert!(!dir.path().join("dead.jsonl").exists() || jsonl(&dir.path().join("dead.jsonl")).is_empty());

    // The cluster reads what the edge forwarded (duplicates marked
    // redelivered are recognised) and ends with the state of one node that
    // read the same readings from a file.
    let rounds = (sent.len() / ASSETS) as u64;
    let cluster = node_topology(
        dir.path(),
        "cluster",
        Some("cluster: { source: fleet, changelog: edge-test-changelog, session_timeout: 30s }"),
        &format!(
            "{{ name: fleet, type: kafka, brokers: \"{brokers}\", topics: [telemetry], group_id: edge-test-cluster, decode: {{ sensor: sensor, ts: ts, value: value }} }}"
        ),
    );
    let cluster_state = dir.path().join("cluster-state");
    let node = spawn(&mut run_cmd(&cluster, &cluster_state));
    let updates = dir.path().join("updates-cluster.jsonl");
    let caught_up = poll_until(WAIT, || {
        let v = versions(&updates);
        (v.len() == ASSETS && v.values().all(|v| *v == rounds)).then_some(())
    });
    if caught_up.is_none() {
        let lines: Vec<String> = node.stderr.try_iter().collect();
        let log = kafka.log();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        panic!(
            "{:?}\n{}\n--- tansu\n{}",
            versions(&updates),
            lines.join("\n"),
            tail.join("\n")
        );
    }
    stop_cleanly(node);
    let lines: String = sent
        .iter()
        .map(|(topic, payload)| {
            let mut parts = topic.split('/').skip(1);
            let (asset, sensor) = (parts.next().unwrap(), parts.next().unwrap());
            format!("{{\"asset\":\"{asset}\",\"sensor\":\"{sensor}\",{}\n", &payload[1..])
        })
        .collect();
    let file = dir.path().join("readings.jsonl");
    std::fs::write(&file, lines).unwrap();
    let single = node_topology(
        dir.path(),
        "single",
        None,
        &format!(
            "{{ name: fleet, type: file, path: \"{}\", decode: {{ asset: asset, sensor: sensor, ts: ts, value: value }} }}",
            file.display()
        ),
    );
    let single_state = dir.path().join("single-state");
    let node = spawn(&mut run_cmd(&single, &single_state));
    wait_for_versions(&dir.path().join("updates-single.jsonl"), ASSETS, rounds);
    stop_cleanly(node);
    let want = digest(&single_state);
    assert_eq!(want.len(), ASSETS);
    assert_eq!(
        digest(&cluster_state),
        want,
        "the cluster, fed by the edge == one node fed directly"
    );
    // The cluster evaluates the rule the edge does not, as the single node.
    // (Per asset in order; assets interleave differently across shards.)
    let wear = |name: &str| -> BTreeMap<String, Vec<serde_json::Value>> {
        let mut by_asset: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
        for mut a in jsonl(&dir.path().join(format!("alerts-{name}.jsonl"))) {
            if a["rule"] != "wear" {
                continue;
            }
            a.as_object_mut().unwrap().remove("at");
            by_asset
                .entry(a["asset"].as_str().unwrap().to_string())
                .or_default()
                .push(a);
        }
        by_asset
    };
    let in_cluster = wear("cluster");
    assert!(!in_cluster.is_empty());
    assert_eq!(in_cluster, wear("single"));
    assert!(
        jsonl(&dir.path().join("alerts-cluster.jsonl"))
            .iter()
            .all(|a| a["rule"] == "wear"),
        "the local rule is the edge's"
    );
}
