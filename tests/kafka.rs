//! The Kafka source against a real Kafka-compatible broker (tansu with its
//! SQLite storage engine, started by the test on an ephemeral port):
//! offsets stored with the snapshots give effectively-once twin state.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

const WAIT: Duration = Duration::from_secs(120);

/// Creates `topic` with `partitions` partitions.
fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let results = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

/// Produces `(key, value)` records with normal batching and waits for every
/// delivery.
fn produce(brokers: &str, topic: &str, records: &[(String, String)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for (key, value) in records {
        let mut record = BaseRecord::to(topic).key(key).payload(value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    // The local queue is full: let deliveries drain it.
                    producer.poll(Duration::from_millis(10));
                    record = r;
                }
            }
        }
    }
    producer.flush(WAIT).unwrap();
}

fn topology(dir: &Path, brokers: &str) -> std::path::PathBuf {
    let path = dir.join("kafka.yaml");
    std::fs::write(
        &path,
        format!(
            r#"version: 1
node: {{ name: kafka-test, snapshot: {{ interval: 50ms }} }}
asset_types:
  pump:
    sensors: {{ temperature: {{ unit: degC }}, current: {{ unit: A }} }}
assets: [{{ id: "pump-*", type: pump }}]
windows: [{{ name: w1s, size: 1s }}]
sources:
  - name: fleet
    type: kafka
    brokers: "{brokers}"
    topics: [telemetry]
    decode: {{ sensor: sensor, ts: ts, value: value }}
sinks:
  - {{ name: updates, type: file, path: "{dir}/updates.jsonl", outputs: [twin_updates] }}
  - {{ name: dead, type: file, path: "{dir}/dead.jsonl", outputs: [dead_letters] }}
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    path
}

/// 6 partitions, 200,000 events for 1,000 assets: the state after three
/// `kill -9` at checkpoints and restarts equals a file run of the same events;
/// a malformed record is dead-lettered with its topic, partition and offset;
/// a restart of the finished node applies nothing again.
#[test]
fn kafka_state_after_kills_equals_the_replay_of_the_same_events() {
    let broker = Tansu::start();
    let brokers = broker.brokers();
    create_topic(&brokers, "telemetry", 6);
    let (assets, readings) = (1000, 200);
    let mut records = Vec::new();
    let mut lines = String::new();
    for i in 0..readings {
        for a in 0..assets {
            let sensor = if i % 2 == 0 { "temperature" } else { "current" };
            let (ts, value) = (
                1_700_000_000_000i64 + i as i64 * 100,
                ((a * 7 + i * 3) % 500) as f64 / 4.0,
            );
            let asset = format!("pump-{a:04}");
            records.push((
                asset.clone(),
                format!(r#"{{"sensor":"{sensor}","ts":{ts},"value":{value}}}"#),
            ));
            lines.push_str(&format!(
                r#"{{"asset":"{asset}","sensor":"{sensor}","ts":{ts},"value":{value}}}"#
            ));
            lines.push('\n');
        }
    }
    records.push(("pump-000".into(), "not json".into()));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let topo = topology(dir.path(), &brokers);

    let mut run = spawn(&mut run_cmd(&topo, &state));
    run.wait_stderr("the assignment", WAIT, |l| l.contains("Kafka partitions assigned"));
    let producer = std::thread::spawn({
        let brokers = brokers.clone();
        move || produce(&brokers, "telemetry", &records)
    });
    for kill in 0..3 {
        // Later kills wait for more checkpoints: they land at different points.
        for _ in 0..=kill * 3 {
            run.wait_stderr("a durable checkpoint", WAIT, |l| l.contains("checkpoint durable"));
        }
        run.child.kill().unwrap();
        run.child.wait().unwrap();
        run = spawn(&mut run_cmd(&topo, &state));
    }
    producer.join().unwrap();
    wait_for_versions(&dir.path().join("updates.jsonl"), assets, readings as u64);
    stop_cleanly(run);

    // The same events from a file, run the same way (not `replay`, which
    // also closes the last windows at the end of input).
    let file_dir = tempfile::tempdir().unwrap();
    let data = file_dir.path().join("events.jsonl");
    std::fs::write(&data, lines).unwrap();
    let file_topo = file_dir.path().join("file.yaml");
    let text = std::fs::read_to_string(topology(file_dir.path(), &brokers))
        .unwrap()
        .replace(
            &format!("    type: kafka\n    brokers: \"{brokers}\"\n    topics: [telemetry]\n"),
            &format!("    type: file\n    path: \"{}\"\n", data.display()),
        )
        .replace("decode: { sensor: sensor", "decode: { asset: asset, sensor: sensor");
    std::fs::write(&file_topo, text).unwrap();
    let replayed = file_dir.path().join("state");
    let file_run = spawn(&mut run_cmd(&file_topo, &replayed));
    wait_for_versions(&file_dir.path().join("updates.jsonl"), assets, readings as u64);
    stop_cleanly(file_run);
    let (got, want) = (digest(&state), digest(&replayed));
    assert_eq!(got.len(), assets);
    assert!(
        got.iter().all(|t| t.1 == readings as u64),
        "every event applied exactly once"
    );
    assert_eq!(got, want, "kafka after kills == replay of the same events");

    let dead = jsonl(&dir.path().join("dead.jsonl"));
    let malformed: Vec<_> = dead.iter().filter(|d| d["payload"] == "not json").collect();
    assert!(!malformed.is_empty(), "{dead:?}");
    for d in &malformed {
        assert_eq!(d["reason"], "malformed");
        assert_eq!(d["origin"]["topic"], "telemetry");
        assert!(
            d["origin"]["partition"].is_i64() && d["origin"]["offset"].is_u64(),
            "{d}"
        );
    }

    // Everything is durable with its offsets: a restart applies nothing.
    let before = versions(&dir.path().join("updates.jsonl"));
    let mut run = spawn(&mut run_cmd(&topo, &state));
    run.wait_stderr("the assignment", WAIT, |l| l.contains("Kafka partitions assigned"));
    stop_cleanly(run);
    assert_eq!(versions(&dir.path().join("updates.jsonl")), before);
    assert_eq!(digest(&state), want);
}

/// The broker restarts mid-stream: the consumer reconnects and resumes, and
/// every event is applied exactly once.
#[test]
fn a_broker_restart_mid_stream_loses_nothing_and_applies_nothing_twice() {
    let mut broker = Tansu::start();
    let brokers = broker.brokers();
    create_topic(&brokers, "telemetry", 3);
    let (assets, readings) = (100, 40);
    let batch = |from: usize, to: usize| {
        let mut m = Vec::new();
        for i in from..to {
            for a in 0..assets {
                m.push((
                    format!("pump-{a:03}"),
                    format!(
                        r#"{{"sensor":"temperature","ts":{},"value":{}}}"#,
                        1_700_000_000_000i64 + i as i64 * 500,
                        (a + i) as f64
                    ),
                ));
            }
        }
        m
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let topo = topology(dir.path(), &brokers);
    let mut run = spawn(&mut run_cmd(&topo, &state));
    run.wait_stderr("the assignment", WAIT, |l| l.contains("Kafka partitions assigned"));
    produce(&brokers, "telemetry", &batch(0, readings / 2));
    wait_for_versions(&dir.path().join("updates.jsonl"), assets, readings as u64 / 2);
    broker.restart();
    produce(&brokers, "telemetry", &batch(readings / 2, readings));
    wait_for_versions(&dir.path().join("updates.jsonl"), assets, readings as u64);
    // librdkafka's statistics (the lag gauges) see every partition at its end.
    run.wait_stderr("the consumer caught up", WAIT, |l| {
        l.contains("Kafka source caught up") && l.contains("partitions=3")
    });
    stop_cleanly(run);
    let twins = digest(&state);
    assert_eq!(twins.len(), assets);
    for (asset, events, _, _, latest) in &twins {
        let a: usize = asset[5..].parse().unwrap();
        assert_eq!(*events, readings as u64, "{asset}");
        assert_eq!(latest, &vec![(a + readings - 1) as f64], "{asset}");
    }
}
