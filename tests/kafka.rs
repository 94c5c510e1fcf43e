//! The Kafka source and sink against a real Kafka-compatible broker (tansu
//! with its SQLite storage engine, started by the test on an ephemeral
//! port): offsets stored with the snapshots give effectively-once twin
//! state; the sink's output, deduplicated by id, is complete and in order.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(120);

/// A record read back from a topic.
#[derive(Debug)]
struct Record {
    partition: i32,
    offset: i64,
    key: Option<String>,
    payload: Vec<u8>,
    headers: HashMap<String, String>,
}

impl Record {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap()
    }
}

/// Reads `topic` from the beginning of every partition until `done` holds
/// for what was read (two minutes at most).
fn consume_until(brokers: &str, topic: &str, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-reader-{topic}"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer.fetch_metadata(Some(topic), WAIT).unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let complete = poll_until(WAIT, || {
        // Records as they come; back to the poll when none came for a while.
        while !done(&out) {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
                return None;
            };
            let headers = m.headers().map_or_else(HashMap::new, |h| {
                h.iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned();
                        (h.key.to_string(), value)
                    })
                    .collect()
            });
            out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
        Some(())
    });
    assert!(complete.is_some(), "{topic}: {} records, not done", out.len());
    out
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
        send_waiting(&producer, BaseRecord::to(topic).key(key).payload(value));
    }
    producer.flush(WAIT).unwrap();
}

fn topology(dir: &Path, brokers: &str) -> std::path::PathBuf {
    topology_reading(
        dir,
        Topo::new("kafka-test").kafka_source("fleet", brokers, "telemetry", ""),
    )
}

/// The Kafka test topology with the source(s) `topo` has.
fn topology_reading(dir: &Path, topo: Topo) -> std::path::PathBuf {
    topo.model(PUMPS)
        .file_sink("updates", &dir.join("updates.jsonl"), "twin_updates")
        .file_sink("dead", &dir.join("dead.jsonl"), "dead_letters")
        .write(&dir.join("kafka.yaml"))
}

/// 6 partitions, 200,000 events for 1,000 assets: the state after three
/// `kill -9` mid-stream and restarts equals a file run of the same events;
/// a malformed record is dead-lettered with its topic, partition and offset;
/// a restart of the finished node applies nothing again.
#[test]
fn kafka_state_after_kills_equals_the_replay_of_the_same_events() {
    let broker = Tansu::start();
    let brokers = broker.brokers();
    create_topic(&brokers, "telemetry", 6);
    let (assets, readings) = (1000, 200);
    let (mut records, lines) = keyed_events(assets, 0, readings);
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
    // Killed at three points of the stream: once some twin is past reading
    // 20, 80 and 140 (progress, not time: the kills land mid-stream however
    // fast the producer is).
    let updates = dir.path().join("updates.jsonl");
    for version in [20, 80, 140] {
        wait_for(&updates, "progress", |max| max.values().any(|v| *v >= version));
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
    let file_topo = topology_reading(file_dir.path(), Topo::new("kafka-test").file_source("fleet", &data));
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
    // The group's committed offsets (informational, for lag tools) reach the
    // end of every partition once the node has stopped cleanly.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "twinstream-kafka-test")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition("telemetry", p);
    }
    let committed = consumer.committed_offsets(tpl, WAIT).unwrap();
    let mut total = 0;
    for e in committed.elements() {
        let (_, high) = consumer.fetch_watermarks("telemetry", e.partition(), WAIT).unwrap();
        assert_eq!(e.offset(), Offset::Offset(high), "partition {}", e.partition());
        total += high;
    }
    assert_eq!(total, (assets * readings) as i64);
    let twins = digest(&state);
    assert_eq!(twins.len(), assets);
    for (asset, events, _, _, latest) in &twins {
        let a: usize = asset[5..].parse().unwrap();
        assert_eq!(*events, readings as u64, "{asset}");
        assert_eq!(latest, &vec![(a + readings - 1) as f64], "{asset}");
    }
}

/// Kafka in and Kafka out: a rule that flips on every reading sends alerts
/// and commands to `twins.{kind}` keyed by asset; the node is killed (-9)
/// twice mid-stream. Read back and deduplicated by id, the outputs are
/// exactly those of every reading, each asset's in order of first arrival
/// and in one partition. Malformed records land on `telemetry.dlq` as their
/// original key and bytes, with headers naming topic, partition, offset and
/// the error.
#[test]
fn kafka_sink_output_deduplicated_by_id_is_complete_and_dead_letters_keep_their_origin() {
    let broker = Tansu::start();
    let brokers = broker.brokers();
    for (topic, partitions) in [
        ("telemetry", 3),
        ("twins.alert", 3),
        ("twins.command", 3),
        ("telemetry.dlq", 1),
    ] {
        create_topic(&brokers, topic, partitions);
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let topo = Topo::new("kafka-sink-test")
        .model(
            r#"asset_types:
  pump:
    sensors: { temperature: { unit: degC } }
assets: [{ id: "pump-*", type: pump }]
rules:
  - name: hot
    when: "temperature > 90"
    clear_when: "temperature < 80"
    command: { name: cooling, value: 1, on_clear: 0 }
"#,
        )
        .kafka_source("fleet", &brokers, "telemetry", "")
        .sink(&format!(
            r#"{{ name: out, type: kafka, brokers: "{brokers}", topic: "twins.{{kind}}", outputs: [alerts, commands] }}"#
        ))
        .sink(&format!(
            r#"{{ name: dlq, type: kafka, brokers: "{brokers}", topic: telemetry.dlq, outputs: [dead_letters] }}"#
        ))
        .file_sink("updates", &dir.path().join("updates.jsonl"), "twin_updates")
        .write(&dir.path().join("kafka-sink.yaml"));
    // Reading i of a pump flips the rule (95 raises, 70 clears): alert
    // `pump/hot/<i/2+1>/<raised|cleared>` and a command with that id.
    let (pumps, readings) = (20, 100);
    let mut records = Vec::new();
    let mut malformed = Vec::new();
    for i in 0..readings {
        for p in 0..pumps {
            let value = if i % 2 == 0 { 95 } else { 70 };
            records.push((
                format!("pump-{p:02}"),
                format!(
                    r#"{{"sensor":"temperature","ts":{},"value":{value}}}"#,
                    1_700_000_000_000i64 + i as i64 * 1000
                ),
            ));
        }
        if i % 20 == 10 {
            let bad = (format!("pump-{:02}", i % pumps), format!("not json #{i}"));
            malformed.push(bad.clone());
            records.push(bad);
        }
    }
    let updates = dir.path().join("updates.jsonl");
    let mut run = spawn(&mut run_cmd(&topo, &state));
    run.wait_stderr("the assignment", WAIT, |l| l.contains("Kafka partitions assigned"));
    // A live stream: slices of 5 readings per pump, 50 ms apart.
    let producer = std::thread::spawn({
        let brokers = brokers.clone();
        move || {
            for slice in records.chunks(pumps * 5) {
                produce(&brokers, "telemetry", slice);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    // Killed once every pump is past reading 30, and again past 60.
    for version in [30, 60] {
        wait_for(&updates, "progress", |max| {
            max.len() == pumps && max.values().all(|v| *v >= version)
        });
        run.child.kill().unwrap();
        run.child.wait().unwrap();
        run = spawn(&mut run_cmd(&topo, &state));
    }
    producer.join().unwrap();
    wait_for_versions(&updates, pumps, readings as u64);

    let expected: BTreeSet<String> = (0..pumps)
        .flat_map(|p| {
            (0..readings).map(move |i| {
                let transition = if i % 2 == 0 { "raised" } else { "cleared" };
                format!("pump-{p:02}/hot/{}/{transition}", i / 2 + 1)
            })
        })
        .collect();
    for (topic, id_field) in [("twins.alert", "event_id"), ("twins.command", "id")] {
        let got = consume_until(&brokers, topic, |recs| {
            recs.iter()
                .map(|r| r.json()[id_field].as_str().unwrap().to_string())
                .collect::<BTreeSet<_>>()
                == expected
        });
        let mut first: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut partition_of: HashMap<String, i32> = HashMap::new();
        let mut seen = BTreeSet::new();
        for r in &got {
            let line = r.json();
            let asset = line["asset"].as_str().unwrap().to_string();
            assert_eq!(r.key.as_deref(), Some(asset.as_str()), "keyed by asset: {line}");
            assert_eq!(
                *partition_of.entry(asset.clone()).or_insert(r.partition),
                r.partition,
                "one asset, one partition"
            );
            let expected_kind = if topic == "twins.alert" { "alert" } else { "command" };
            assert_eq!(
                r.headers.get("twinstream.kind").map(String::as_str),
                Some(expected_kind)
            );
            let id = line[id_field].as_str().unwrap().to_string();
            if seen.insert(id.clone()) {
                // `asset/hot/<n>/<transition>` -> the reading that caused it.
                let parts: Vec<&str> = id.split('/').collect();
                let n: usize = parts[2].parse().unwrap();
                first
                    .entry(asset)
                    .or_default()
                    .push((n - 1) * 2 + usize::from(parts[3] == "cleared"));
            }
        }
        assert_eq!(seen, expected, "{topic}: every output, deduplicated by id");
        for (asset, order) in &first {
            assert_eq!(
                order,
                &(0..readings).collect::<Vec<_>>(),
                "{topic} {asset}: first arrivals in order"
            );
        }
    }

    // Dead letters: the original record, its origin in the headers.
    let dead = consume_until(&brokers, "telemetry.dlq", |recs| {
        recs.iter().map(|r| r.payload.clone()).collect::<BTreeSet<_>>().len() == malformed.len()
    });
    let source = consume_until(&brokers, "telemetry", |recs| {
        malformed
            .iter()
            .all(|(_, v)| recs.iter().any(|r| r.payload == v.as_bytes()))
    });
    for (key, value) in &malformed {
        let letters: Vec<&Record> = dead.iter().filter(|r| r.payload == value.as_bytes()).collect();
        assert!(!letters.is_empty(), "{value} dead-lettered");
        let original = source.iter().find(|r| r.payload == value.as_bytes()).unwrap();
        for d in letters {
            assert_eq!(d.key.as_deref(), Some(key.as_str()), "the original key");
            let h = &d.headers;
            assert_eq!(h["twinstream.kind"], "dead_letter");
            assert_eq!(h["twinstream.error.reason"], "malformed");
            assert!(!h["twinstream.error.message"].is_empty());
            assert_eq!(h["twinstream.origin.source"], "fleet");
            assert_eq!(h["twinstream.origin.topic"], "telemetry");
            assert_eq!(h["twinstream.origin.partition"], original.partition.to_string());
            assert_eq!(h["twinstream.origin.offset"], original.offset.to_string());
        }
    }
    stop_cleanly(run);
}

/// The sink's brokers are down while the node runs and the node is killed
/// (-9): the outputs wait in the outbox, are produced by the next run once
/// the brokers are back, and nothing is lost.
#[test]
fn kafka_sink_outputs_wait_in_the_outbox_through_a_broker_outage_and_a_crash() {
    let mut broker = Tansu::start();
    let brokers = broker.brokers();
    create_topic(&brokers, "twins.twin_update", 2);
    broker.stop();
    let dir = tempfile::tempdir().unwrap();
    let (assets, readings) = (50, 20);
    let mut lines = String::new();
    for i in 0..readings {
        for a in 0..assets {
            lines.push_str(&format!(
                "{{\"asset\":\"pump-{a:02}\",\"sensor\":\"temperature\",\"ts\":{},\"value\":{i}}}\n",
                1_700_000_000_000i64 + i as i64 * 1000
            ));
        }
    }
    std::fs::write(dir.path().join("events.jsonl"), lines).unwrap();
    let topo = Topo::new("outage-test")
        .model(
            r#"asset_types:
  pump:
    sensors: { temperature: { unit: degC } }
assets: [{ id: "pump-*", type: pump }]
"#,
        )
        .file_source("file", &dir.path().join("events.jsonl"))
        .sink(&format!(
            r#"{{ name: out, type: kafka, brokers: "{brokers}", topic: "twins.{{kind}}", outputs: [twin_updates] }}"#
        ))
        .file_sink("updates", &dir.path().join("updates.jsonl"), "twin_updates")
        .write(&dir.path().join("outage.yaml"));
    let state = dir.path().join("state");
    let mut run = spawn(&mut run_cmd(&topo, &state));
    run.wait_stderr("the outage noticed", WAIT, |l| {
        l.contains("Kafka sink cannot reach the brokers")
    });
    wait_for_versions(&dir.path().join("updates.jsonl"), assets, readings as u64);
    // Every output is in a durable checkpoint's outbox once the state is
    // (that checkpoint may come before the sink noticed the outage).
    run.wait_stderr_ever("a checkpoint after the last event", WAIT, |l| {
        l.contains("checkpoint durable") && l.contains(&format!("line={}", assets * readings))
    });
    run.child.kill().unwrap();
    run.child.wait().unwrap();

    broker.resume();
    let mut run = spawn(&mut run_cmd(&topo, &state));
    run.wait_stderr("the outbox restored", WAIT, |l| {
        l.contains("publishing the messages the last run left unacknowledged")
    });
    // What the file sink next to it wrote (twins send one update per
    // applied batch).
    let expected: BTreeSet<(String, u64)> = jsonl(&dir.path().join("updates.jsonl"))
        .iter()
        .map(|l| (l["asset"].as_str().unwrap().to_string(), l["version"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        versions(&dir.path().join("updates.jsonl")).values().min(),
        Some(&(readings as u64))
    );
    let seen = |recs: &[Record]| -> BTreeSet<(String, u64)> {
        recs.iter()
            .map(|r| {
                let l = r.json();
                (l["asset"].as_str().unwrap().to_string(), l["version"].as_u64().unwrap())
            })
            .collect()
    };
    let got = consume_until(&brokers, "twins.twin_update", |recs| seen(recs) == expected);
    assert_eq!(seen(&got), expected);
    stop_cleanly(run);
}

/// `GET /readyz`: the status and the source's `connected` (status 0 when
/// the API does not answer yet).
fn readiness(base: &str) -> (u16, Option<bool>) {
    let res = match ureq::get(&format!("{base}/readyz")).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(_) => return (0, None),
    };
    let status = res.status();
    let body: serde_json::Value = res.into_json().unwrap();
    (status, body["sources"][0]["connected"].as_bool())
}

fn wait_ready(base: &str, what: &str, want: (u16, Option<bool>)) {
    let mut got = (0, None);
    let reached = poll_until(WAIT, || {
        got = readiness(base);
        (got == want).then_some(())
    });
    assert!(reached.is_some(), "{what}: /readyz says {got:?}");
}

/// `/readyz` follows the broker: ready once the partitions are assigned,
/// not ready while the broker is down, ready again when it is back.
#[test]
fn readiness_follows_the_kafka_broker() {
    let mut broker = Tansu::start();
    create_topic(&broker.brokers(), "telemetry", 2);
    let dir = tempfile::tempdir().unwrap();
    let topo = topology(dir.path(), &broker.brokers());
    let mut run = spawn(&mut run_cmd(&topo, &dir.path().join("state")));
    let base = run.http_base();
    wait_ready(&base, "not ready with the broker up", (200, Some(true)));
    broker.stop();
    wait_ready(&base, "still ready with the broker down", (503, Some(false)));
    broker.resume();
    wait_ready(&base, "not ready after the broker came back", (200, Some(true)));
    stop_cleanly(run);
}
