//! The cluster against a real Kafka-compatible broker (tansu, SQLite
//! storage) and real twinstream processes: shards are the partitions of the
//! ingest topic, handed over through the consumer group, restored from the
//! changelog.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::sse::Events;
use common::*;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use twinstream::cluster::changelog::{self, Fold};

const WAIT: Duration = Duration::from_secs(180);
const PARTITIONS: u32 = 12;
const ASSETS: usize = 1000;
const READINGS: usize = 60;

/// Produces keyed records with Kafka's default partitioner (murmur2), as a
/// cluster expects.
fn produce(brokers: &str, records: &[(String, String)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for (key, value) in records {
        send_waiting(&producer, BaseRecord::to("telemetry").key(key).payload(value));
    }
    producer.flush(WAIT).unwrap();
}

/// The pumps every node of the cluster runs.
const MODEL: &str = r#"asset_types:
  pump:
    sensors: { temperature: { unit: degC }, current: { unit: A } }
    commands: { set_limit: { reported: current, tolerance: 0.5, timeout: 1h } }
    history: { raw: off, tiers: [{ every: 1s, keep: 7d }, { every: 2s, keep: 7d }] }
assets: [{ id: "pump-*", type: pump }]
windows: [{ name: w1s, size: 1s }]
rules:
  - { name: hot, when: "temperature > 100", clear_when: "temperature < 90" }
  - { name: busy, when: "w1s.current.avg > 60" }
"#;

/// Node `name` reading `source`, with its own sinks; `cluster` says whether
/// it is a member of the cluster (the shared group) or runs alone.
fn topology(dir: &Path, name: &str, source: &str, cluster: bool) -> PathBuf {
    let mut topo = Topo::new(name)
        .snapshot_every("100ms")
        .with("http: { write_token_env: TWINSTREAM_WRITE_TOKEN }");
    if cluster {
        topo = topo.with("cluster: { source: fleet, changelog: twins-changelog, session_timeout: 6s }");
    }
    topo.model(MODEL)
        .source(source)
        .file_sink("updates", &dir.join(format!("updates-{name}.jsonl")), "twin_updates")
        .file_sink("alerts", &dir.join(format!("alerts-{name}.jsonl")), "alerts")
        .file_sink("dead", &dir.join(format!("dead-{name}.jsonl")), "dead_letters")
        .write(&dir.join(format!("{name}.yaml")))
}

/// The cluster's source: the ingest topic, in group `group`.
fn kafka_source(brokers: &str, group: &str) -> String {
    format!(
        r#"{{ name: fleet, type: kafka, brokers: "{brokers}", topics: [telemetry], group_id: {group}, decode: {{ sensor: sensor, ts: ts, value: value }} }}"#
    )
}

/// The greatest version per asset over every node's update file.
fn all_versions(dir: &Path) -> HashMap<String, u64> {
    let mut max = HashMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("updates-") {
            for (asset, v) in versions(&path) {
                let e = max.entry(asset).or_insert(0);
                *e = v.max(*e);
            }
        }
    }
    max
}

fn wait_all(dir: &Path, runs: &mut [&mut Running], what: &str, done: impl Fn(&HashMap<String, u64>) -> bool) {
    let mut max = HashMap::new();
    let reached = poll_until(WAIT, || {
        max = all_versions(dir);
        done(&max).then_some(())
    });
    if reached.is_none() {
        dump_logs(runs);
        panic!("{what}: {} assets, lowest version {:?}", max.len(), max.values().min());
    }
}

/// The nodes' logs, for a failure: on stderr, or in files under
/// `$TWINSTREAM_TEST_LOGS` when set.
fn dump_logs(runs: &mut [&mut Running]) {
    let dir = std::env::var("TWINSTREAM_TEST_LOGS").ok().map(PathBuf::from);
    for (i, run) in runs.iter_mut().enumerate() {
        while let Ok(l) = run.stderr.try_recv() {
            run.seen_err.push(l);
        }
        let lines: Vec<&String> = run
            .seen_err
            .iter()
            .filter(|l| !l.contains("checkpoint durable"))
            .collect();
        match &dir {
            Some(d) => {
                std::fs::create_dir_all(d).unwrap();
                let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
                std::fs::write(d.join(format!("node-{i}.log")), text).unwrap();
            }
            None => {
                eprintln!("--- node {i}");
                for l in lines {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// One history bucket: `asset,series,width,start,count,sum,min,max,...`
/// as the replay's `--history-out` writes it.
type Rows = Vec<twinstream::report::HistoryRow>;

/// The downsampled history the cluster's history topic holds, as far as
/// the changelog's markers commit it.
fn changelog_history(brokers: &str) -> Rows {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers).set("group.id", "history-reader");
    let reader = changelog::reader(&c, "twins-changelog").unwrap();
    let stop = AtomicBool::new(false);
    let dir = tempfile::tempdir().unwrap();
    let store = twinstream::store::Store::open(dir.path(), 1).unwrap();
    let mut rows = Vec::new();
    for shard in 0..PARTITIONS {
        let (lo, hi) = changelog::watermarks(&reader, "twins-changelog", shard).unwrap();
        let mut fold = Fold::default();
        changelog::read(&reader, "twins-changelog", shard, lo, hi, &mut fold, &stop).unwrap();
        let mut h = changelog::HistoryFold::new(fold.finish().committed);
        changelog::read_history(&reader, "twins-changelog.history", shard, &mut h, &stop).unwrap();
        assert!(
            h.kept.len() > 1000,
            "shard {shard}: {} history records kept",
            h.kept.len()
        );
        store.ensure_shard(shard).unwrap();
        store
            .replace_shard(shard, std::iter::empty(), h.kept.into_iter(), "test/meta", b"")
            .unwrap();
        twinstream::report::history(&store, shard, Some(&mut rows)).unwrap();
    }
    rows.sort();
    rows
}

/// The downsampled history in the stores at `states`, over the shards
/// each owns (`None`: every shard it holds).
fn store_history(states: &[(PathBuf, Option<Vec<u32>>)]) -> Rows {
    let mut rows = Vec::new();
    for (state, owned) in states {
        let store = twinstream::store::Store::open(state, 1).unwrap();
        for shard in owned.clone().unwrap_or_else(|| store.shards()) {
            twinstream::report::history(&store, shard, Some(&mut rows)).unwrap();
        }
    }
    rows.retain(|r| r.2 > 0);
    rows.sort();
    rows
}

/// Every update line of every node, by (asset, version): a version written
/// twice (re-done after a takeover) must be the same twin. (Updates are per
/// applied batch, so versions may skip, and an update shows the sensors its
/// batch changed: the new owner's batches, cut from what its consumer had
/// fetched, can end at the same version with fewer or more readings in
/// them. So two updates of a version agree on everything else and on every
/// sensor both show.)
fn consistent_histories(dir: &Path) {
    let mut seen: BTreeMap<(String, u64), serde_json::Value> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("updates-") {
            continue;
        }
        for mut v in jsonl(&path) {
            let key = (v["asset"].as_str().unwrap().to_string(), v["version"].as_u64().unwrap());
            // When it was emitted differs between two owners; what is not.
            if let Some(o) = v.as_object_mut() {
                o.remove("emitted_at");
            }
            match seen.get(&key) {
                Some(prev) => {
                    let (mut a, mut b) = (prev.clone(), v.clone());
                    let (sa, sb) = (a["sensors"].take(), b["sensors"].take());
                    assert_eq!(a, b, "two different updates for {key:?}");
                    let (sa, sb) = (sa.as_object().unwrap(), sb.as_object().unwrap());
                    let both: Vec<&String> = sa.keys().filter(|k| sb.contains_key(*k)).collect();
                    assert!(!both.is_empty(), "updates of {key:?} share no sensor: {prev} / {v}");
                    for s in both {
                        assert_eq!(sa[s], sb[s], "two different values of {s} in the updates for {key:?}");
                    }
                }
                None => {
                    seen.insert(key, v);
                }
            }
        }
    }
    let last = seen.keys().fold(HashMap::<&str, u64>::new(), |mut m, (a, v)| {
        let e = m.entry(a).or_default();
        *e = (*e).max(*v);
        m
    });
    assert_eq!(last.len(), ASSETS);
    assert!(
        last.values().all(|v| *v == READINGS as u64),
        "every twin reached version {READINGS}"
    );
}

/// Every alert transition the files named `alerts-*` in `dir` hold, per
/// asset, once each (a takeover emits again what followed the last
/// checkpoint: the same transitions, the same ids).
fn alert_histories(dir: &Path) -> BTreeMap<String, Vec<serde_json::Value>> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("alerts-"))
        .collect();
    // The API test acknowledges one in the cluster only.
    outputs_by_id(&files, "event_id", |a| a["transition"] != "acknowledged")
}

/// The sum of `twinstream_shards_owned` over running nodes' logs is not
/// observable from outside without the API; each node logs what it owns.
fn owned_from_log(run: &mut Running) -> Vec<u32> {
    // Drain what the node printed so far.
    while let Ok(l) = run.stderr.try_recv() {
        run.seen_err.push(l);
    }
    let mut owned = std::collections::BTreeSet::new();
    for l in &run.seen_err {
        if l.contains("shard acquired") {
            if let Some(s) = field(l, "shard") {
                owned.insert(s);
            }
        }
        if l.contains("shards released") || l.contains("shards lost") {
            for s in list_field(l, "shards") {
                owned.remove(&s);
            }
        }
    }
    owned.into_iter().collect()
}

/// `GET url`: status, the owner header, the JSON body.
fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Option<String>, serde_json::Value) {
    let mut r = ureq::get(url);
    for (k, v) in headers {
        r = r.set(k, v);
    }
    let res = match r.call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let owner = res.header("X-Twinstream-Owner").map(str::to_string);
    (res.status(), owner, res.into_json().unwrap())
}

/// Any node's API answers for every asset: reads and writes of another
/// node's twin are forwarded to its owner, lists gather every node's.
fn any_node_answers_for_any_asset(apis: &[(&str, String, Vec<u32>)]) {
    for (name, api, _) in apis {
        let (status, _, page) = get(&format!("{api}/twins?limit=1000"), &[]);
        assert_eq!(status, 200, "{name}: {page}");
        assert_eq!(
            page["total"], ASSETS,
            "{name} lists every twin of the cluster: {}",
            page["missing_shards"]
        );
        assert_eq!(page["items"].as_array().unwrap().len(), ASSETS);
        assert!(page["next"].is_null() && page.get("missing_shards").is_none());
        let (_, _, half) = get(&format!("{api}/twins?limit=500"), &[]);
        let after = half["next"].as_str().unwrap();
        let (_, _, rest) = get(&format!("{api}/twins?limit=500&after={after}"), &[]);
        let ids = |p: &serde_json::Value| -> Vec<String> {
            p["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["asset"].as_str().unwrap().to_string())
                .collect()
        };
        let mut paged = ids(&half);
        paged.extend(ids(&rest));
        assert_eq!(paged, ids(&page), "{name}: two pages are the one page");
    }
    let (first, first_api, _) = &apis[0];
    let (other, other_api, other_shards) = &apis[1];
    let asset = (0..ASSETS)
        .map(|a| format!("pump-{a:04}"))
        .find(|a| other_shards.contains(&twinstream::cluster::partition_for(a.as_bytes(), PARTITIONS)))
        .unwrap();
    for query in ["", "?fresh=true"] {
        // The default read is the last durable checkpoint: it may trail
        // the applied events by a checkpoint.
        let mut last = serde_json::Value::Null;
        poll_until(WAIT, || {
            let (status, owner, twin) = get(&format!("{first_api}/twins/{asset}{query}"), &[]);
            assert_eq!(status, 200, "{twin}");
            assert_eq!(owner.as_deref(), Some(*other), "{first} forwarded to the owner");
            assert_eq!(twin["asset"], asset.as_str());
            last = twin;
            (last["version"] == READINGS).then_some(())
        })
        .unwrap_or_else(|| panic!("{asset} never showed version {READINGS}: {last}"));
    }
    // History too (durable history): forwarded to the owner, which restored
    // what moved.
    let path = format!("/twins/{asset}/history?sensor=temperature,current&step=1s&from=1700000000000&to=1700000010000");
    let mut last = serde_json::Value::Null;
    poll_until(WAIT, || {
        let (status, owner, history) = get(&format!("{first_api}{path}"), &[]);
        assert_eq!((status, owner.as_deref()), (200, Some(*other)), "{history}");
        let count = |s: usize| -> u64 {
            history["series"][s]["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["count"].as_u64().unwrap())
                .sum()
        };
        let full = (count(0), count(1)) == ((READINGS / 2) as u64, (READINGS / 2) as u64);
        last = history;
        full.then_some(())
    })
    .unwrap_or_else(|| panic!("{asset}'s history never held every reading: {last}"));
    // A forwarded request is never forwarded again.
    let (status, _, err) = get(
        &format!("{first_api}/twins/{asset}"),
        &[("X-Twinstream-Forwarded-By", "http://elsewhere")],
    );
    assert_eq!((status, err["error"]["code"].as_str()), (421, Some("misdirected")));
    // Every node lists the same alerts; one of the other node's twins,
    // acknowledged through this node, is acknowledged at its owner.
    let (_, _, raised) = get(&format!("{first_api}/alerts?state=raised&limit=1000"), &[]);
    let (_, _, direct) = get(&format!("{other_api}/alerts?state=raised&limit=1000"), &[]);
    assert_eq!(raised["items"], direct["items"], "every node lists the same alerts");
    let theirs = |a: &&serde_json::Value| {
        other_shards.contains(&twinstream::cluster::partition_for(
            a["asset"].as_str().unwrap().as_bytes(),
            PARTITIONS,
        ))
    };
    let active = raised["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(theirs)
        .expect("an alert raised on the other node");
    let (id, asset) = (active["id"].as_str().unwrap(), active["asset"].as_str().unwrap());
    let res = ureq::post(&format!("{first_api}/alerts/{id}/ack"))
        .set("Authorization", "Bearer test-token")
        .call()
        .unwrap();
    assert_eq!(res.header("X-Twinstream-Owner"), Some(*other));
    let acked: serde_json::Value = res.into_json().unwrap();
    assert_eq!(acked["state"], "acknowledged");
    let (_, _, after) = get(&format!("{other_api}/alerts?state=acknowledged&asset={asset}"), &[]);
    assert_eq!(after["items"][0]["id"], id, "the owner holds the acknowledgement");
    // A command, with its body, likewise; repeating it is idempotent there.
    let send = || {
        ureq::post(&format!("{first_api}/twins/{asset}/commands"))
            .set("Authorization", "Bearer test-token")
            .set("Idempotency-Key", "cluster-test-1")
            .send_json(serde_json::json!({ "command": "set_limit", "value": 42.0 }))
            .unwrap()
    };
    let res = send();
    assert_eq!((res.status(), res.header("X-Twinstream-Owner")), (202, Some(*other)));
    let command: serde_json::Value = res.into_json().unwrap();
    assert_eq!(send().status(), 200, "the same key answers the same command");
    let (_, _, twin) = get(&format!("{other_api}/twins/{asset}?fresh=true"), &[]);
    let log = twin["command_log"].as_array().unwrap();
    assert!(log.iter().any(|c| c["id"] == command["id"]), "{twin}");
}

fn field(line: &str, name: &str) -> Option<u32> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn list_field(line: &str, name: &str) -> Vec<u32> {
    let Some(at) = line.find(&format!("{name}=[")) else {
        return Vec::new();
    };
    let rest = &line[at + name.len() + 2..];
    let end = rest.find(']').unwrap_or(0);
    rest[..end].split(',').filter_map(|s| s.trim().parse().ok()).collect()
}

fn start(topo: &Path, state: &Path) -> Running {
    let mut run = spawn(&mut run_cmd(topo, state));
    run.wait_stderr("joining the group", WAIT, |l| {
        l.contains("joined the cluster's consumer group")
    });
    run
}

/// Three nodes share 12 shards of 1,000 assets; one is killed (`kill -9`)
/// mid-stream and a fourth joins later: the changelog's final state equals a
/// single-node run of the same events, every twin's history is one history,
/// and at the end every shard has exactly one owner.
#[test]
fn a_cluster_survives_kill_and_join_with_the_state_of_one_uninterrupted_run() {
    let broker = Tansu::start();
    let brokers = broker.brokers();
    create_topic(&brokers, "telemetry", PARTITIONS as i32);
    let dir = tempfile::tempdir().unwrap();
    let source = kafka_source(&brokers, "cluster-test");
    let nodes: Vec<(PathBuf, PathBuf)> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| {
            (
                topology(dir.path(), n, &source, true),
                dir.path().join(format!("state-{n}")),
            )
        })
        .collect();
    let mut a = start(&nodes[0].0, &nodes[0].1);
    let mut b = start(&nodes[1].0, &nodes[1].1);
    let mut c = start(&nodes[2].0, &nodes[2].1);

    let third = READINGS / 3;
    let (first, mut lines) = keyed_events(ASSETS, 0, third);
    produce(&brokers, &first);
    wait_all(dir.path(), &mut [&mut a, &mut b, &mut c], "first third applied", |m| {
        m.len() == ASSETS && m.values().all(|v| *v == third as u64)
    });

    // A record on another partition than its key's is dead-lettered by the
    // partition's owner, and changes no twin.
    let right = twinstream::cluster::partition_for(b"pump-0000", PARTITIONS);
    let wrong = (right + 1) % PARTITIONS;
    {
        let producer: ThreadedProducer<DefaultProducerContext> =
            ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
        let payload = r#"{"sensor":"temperature","ts":1700000000000,"value":999}"#;
        let record = BaseRecord::to("telemetry")
            .key("pump-0000")
            .payload(payload)
            .partition(wrong as i32);
        producer.send(record).map_err(|(e, _)| e).unwrap();
        producer.flush(WAIT).unwrap();
    }
    let misrouted = poll_until(WAIT, || {
        let found: Vec<serde_json::Value> = ["a", "b", "c"]
            .iter()
            .map(|n| dir.path().join(format!("dead-{n}.jsonl")))
            .filter(|p| p.exists())
            .flat_map(|p| jsonl(&p))
            .filter(|d| d["reason"] == "wrong_partition")
            .collect();
        (!found.is_empty()).then_some(found)
    })
    .expect("no wrong_partition dead letter");
    assert_eq!(misrouted[0]["origin"]["partition"], wrong);
    assert!(misrouted[0]["message"]
        .as_str()
        .unwrap()
        .contains(&format!("partition {right} of 12")));

    // Mid-stream: b dies with whatever it had not checkpointed.
    let (second, more) = keyed_events(ASSETS, third, 2 * third);
    lines.push_str(&more);
    let producer = std::thread::spawn({
        let brokers = brokers.clone();
        move || produce(&brokers, &second)
    });
    wait_all(
        dir.path(),
        &mut [&mut a, &mut b, &mut c],
        "second third under way",
        |m| m.values().any(|v| *v > third as u64 + 2),
    );
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    producer.join().unwrap();
    wait_all(
        dir.path(),
        &mut [&mut a, &mut b, &mut c],
        "second third applied by the survivors",
        |m| m.values().all(|v| *v == 2 * third as u64),
    );

    // A node joins: shards move to it, and the rest of the stream.
    let mut d = start(&nodes[3].0, &nodes[3].1);
    d.wait_stderr("shards moving to the new node", WAIT, |l| l.contains("shard acquired"));
    let (rest, more) = keyed_events(ASSETS, 2 * third, READINGS);
    lines.push_str(&more);
    produce(&brokers, &rest);
    wait_all(
        dir.path(),
        &mut [&mut a, &mut b, &mut c, &mut d],
        "every event applied",
        |m| m.len() == ASSETS && m.values().all(|v| *v == READINGS as u64),
    );

    // Each shard has one owner: the survivors' logs account for all 12,
    // and no shard twice.
    let mut owned: Vec<Vec<u32>> = Vec::new();
    let one_owner_each = poll_until(WAIT, || {
        owned = [&mut a, &mut c, &mut d].into_iter().map(owned_from_log).collect();
        let mut all: Vec<u32> = owned.iter().flatten().copied().collect();
        all.sort_unstable();
        (all == (0..PARTITIONS).collect::<Vec<_>>() && owned.iter().all(|o| !o.is_empty())).then_some(())
    });
    if one_owner_each.is_none() {
        dump_logs(&mut [&mut a, &mut b, &mut c, &mut d]);
        panic!("shards owned: {owned:?}");
    }
    let apis: Vec<(&str, String, Vec<u32>)> = [("a", &mut a), ("c", &mut c), ("d", &mut d)]
        .into_iter()
        .map(|(name, run)| {
            let shards = owned_from_log(run);
            (name, run.http_base(), shards)
        })
        .collect();
    any_node_answers_for_any_asset(&apis);
    if std::env::var("TWINSTREAM_TEST_LOGS").is_ok() {
        dump_logs(&mut [&mut a, &mut b, &mut c, &mut d]);
    }
    for run in [a, c, d] {
        stop_cleanly(run);
    }
    consistent_histories(dir.path());

    // The same events through one node, from a file.
    let single = tempfile::tempdir().unwrap();
    let data = single.path().join("events.jsonl");
    std::fs::write(&data, lines).unwrap();
    let file_source = format!(
        r#"{{ name: fleet, type: file, path: "{}", decode: {{ asset: asset, sensor: sensor, ts: ts, value: value }} }}"#,
        data.display()
    );
    let single_topo = topology(single.path(), "single", &file_source, false);
    let state = single.path().join("state");
    let run = spawn(&mut run_cmd(&single_topo, &state));
    wait_for_versions(&single.path().join("updates-single.jsonl"), ASSETS, READINGS as u64);
    stop_cleanly(run);
    let want = digest(&state);
    assert_eq!(want.len(), ASSETS);
    let got = changelog_digest(&brokers, "twins-changelog", PARTITIONS);
    assert!(
        got.iter().all(|t| t.1 == READINGS as u64),
        "every event applied exactly once"
    );
    assert_eq!(
        got, want,
        "cluster state (changelog) == one node's run of the same events"
    );
    // History moved with the shards: the history topic, and the stores of
    // the nodes that own the shards now, hold every bucket one node holds.
    let single_history = store_history(&[(state.clone(), None)]);
    assert_eq!(
        single_history.iter().map(|r| r.4).sum::<u64>(),
        2 * (ASSETS * READINGS) as u64,
        "every reading once in each of the two tiers"
    );
    let cluster_history = store_history(&[
        (nodes[0].1.clone(), Some(owned[0].clone())),
        (nodes[2].1.clone(), Some(owned[1].clone())),
        (nodes[3].1.clone(), Some(owned[2].clone())),
    ]);
    assert!(
        cluster_history == single_history,
        "the owners' history == one node's: {} vs {} buckets",
        cluster_history.len(),
        single_history.len()
    );
    assert!(
        changelog_history(&brokers) == single_history,
        "the history topic == one node's history"
    );
    let alerts = alert_histories(dir.path());
    assert!(alerts.values().map(Vec::len).sum::<usize>() > 100, "the rules fire");
    assert_eq!(
        alerts,
        alert_histories(single.path()),
        "the cluster's alerts == one node's"
    );
}

/// Relations across nodes: a tank's level reaches the pumps that feed it
/// wherever they are, through relay records on the followers' shards (a
/// pattern entry: every shard; an exact entry: its shard). Each pump's rule
/// over `feeds.level` fires with the tank's value.
#[test]
fn a_related_value_reaches_followers_on_other_nodes() {
    const PARTS: u32 = 4;
    let broker = Tansu::start();
    let brokers = broker.brokers();
    create_topic(&brokers, "telemetry", PARTS as i32);
    let dir = tempfile::tempdir().unwrap();
    // The exact follower and its tank on shards of different parity: with
    // two members, the round-robin assignor puts them on different nodes.
    let part = |id: &str| twinstream::cluster::partition_for(id.as_bytes(), PARTS);
    let solo_tank = (1..100)
        .map(|i| format!("tank-{i}"))
        .find(|t| part(t) % 2 != part("pump-solo") % 2)
        .unwrap();
    let topo = |name: &str| {
        Topo::new(name)
            .snapshot_every("100ms")
            .with("cluster: { source: fleet, changelog: relay-changelog, session_timeout: 6s }")
            .model(&format!(
                r#"asset_types:
  tank:
    sensors: {{ level: {{ unit: m }} }}
  pump:
    sensors: {{ pressure: {{ unit: bar }} }}
    relations: {{ feeds: tank }}
assets:
  - {{ id: tank-0, type: tank }}
  - {{ id: {solo_tank}, type: tank }}
  - {{ id: pump-solo, type: pump, relations: {{ feeds: {solo_tank} }} }}
  - {{ id: "pump-*", type: pump, relations: {{ feeds: tank-0 }} }}
rules:
  - {{ name: low-supply, when: "feeds.level < 10", asset_types: [pump] }}
"#
            ))
            .source(&kafka_source(&brokers, "relay-test"))
            .file_sink("alerts", &dir.path().join(format!("alerts-{name}.jsonl")), "alerts")
            .write(&dir.path().join(format!("{name}.yaml")))
    };
    let mut a = start(&topo("a"), &dir.path().join("state-a"));
    let mut b = start(&topo("b"), &dir.path().join("state-b"));
    // Both nodes own shards before anything is produced.
    let mut shards = (Vec::new(), Vec::new());
    let (owned_a, owned_b) = poll_until(WAIT, || {
        shards = (owned_from_log(&mut a), owned_from_log(&mut b));
        let (oa, ob) = &shards;
        (oa.len() + ob.len() == PARTS as usize && !oa.is_empty() && !ob.is_empty()).then(|| shards.clone())
    })
    .unwrap_or_else(|| panic!("shards: {shards:?}"));
    let node_of = |asset: &str| if owned_a.contains(&part(asset)) { "a" } else { "b" };
    assert_ne!(
        node_of("pump-solo"),
        node_of(&solo_tank),
        "the exact follower is on the other node"
    );
    let pumps: Vec<String> = (0..40)
        .map(|i| format!("pump-{i:04}"))
        .chain(["pump-solo".into()])
        .collect();
    assert!(
        pumps.iter().any(|p| node_of(p) != node_of("tank-0")),
        "some pumps are on the other node than tank-0 ({owned_a:?} / {owned_b:?})"
    );
    let reading = |sensor: &str, value: f64| format!(r#"{{"sensor":"{sensor}","ts":1700000000000,"value":{value}}}"#);
    let mut records: Vec<(String, String)> = pumps.iter().map(|p| (p.clone(), reading("pressure", 3.0))).collect();
    produce(&brokers, &records);
    records = vec![
        ("tank-0".into(), reading("level", 5.0)),
        (solo_tank.clone(), reading("level", 2.0)),
    ];
    produce(&brokers, &records);
    let mut raised: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let all_raised = poll_until(WAIT, || {
        raised.clear();
        for n in ["a", "b"] {
            let path = dir.path().join(format!("alerts-{n}.jsonl"));
            if path.exists() {
                for alert in jsonl(&path) {
                    raised.insert(
                        alert["asset"].as_str().unwrap().to_string(),
                        alert["inputs"]["feeds.level"].clone(),
                    );
                }
            }
        }
        pumps.iter().all(|p| raised.contains_key(p)).then_some(())
    });
    if all_raised.is_none() {
        dump_logs(&mut [&mut a, &mut b]);
        let missing: Vec<&String> = pumps.iter().filter(|p| !raised.contains_key(*p)).collect();
        panic!(
            "no alert for {missing:?} (tank-0 on {}, {solo_tank} on {})",
            node_of("tank-0"),
            node_of(&solo_tank)
        );
    }
    for p in &pumps {
        let want = if *p == "pump-solo" { 2.0 } else { 5.0 };
        assert_eq!(raised[p], want, "{p} fired on its own tank's level");
    }
    for run in [a, b] {
        stop_cleanly(run);
    }
}

/// The operator's view talks to one node: its event stream merges every
/// owner's changes, resumes from the merged cursor, and its page shows the
/// whole fleet.
#[test]
fn any_node_streams_every_owners_changes_and_shows_the_whole_fleet() {
    const PARTS: u32 = 4;
    let broker = Tansu::start();
    let brokers = broker.brokers();
    create_topic(&brokers, "telemetry", PARTS as i32);
    let dir = tempfile::tempdir().unwrap();
    let source = kafka_source(&brokers, "view-test");
    let mut a = start(&topology(dir.path(), "a", &source, true), &dir.path().join("state-a"));
    let mut b = start(&topology(dir.path(), "b", &source, true), &dir.path().join("state-b"));
    let mut shards = (Vec::new(), Vec::new());
    let (owned_a, _) = poll_until(WAIT, || {
        shards = (owned_from_log(&mut a), owned_from_log(&mut b));
        let (oa, ob) = &shards;
        (oa.len() + ob.len() == PARTS as usize && !oa.is_empty() && !ob.is_empty()).then(|| shards.clone())
    })
    .unwrap_or_else(|| panic!("shards: {shards:?}"));
    let on_a = |asset: &str| owned_a.contains(&twinstream::cluster::partition_for(asset.as_bytes(), PARTS));
    let all: Vec<String> = (0..200).map(|i| format!("pump-{i:04}")).collect();
    let here: Vec<String> = all.iter().filter(|p| on_a(p)).take(3).cloned().collect();
    let there: Vec<String> = all.iter().filter(|p| !on_a(p)).take(3).cloned().collect();
    assert_eq!((here.len(), there.len()), (3, 3));
    let base = a.http_base();
    // Node a knows where b's API is (lists name no missing shard), as a
    // page opened now would find it.
    poll_until(WAIT, || {
        let (status, _, page) = get(&format!("{base}/twins?limit=1"), &[]);
        (status == 200 && page.get("missing_shards").is_none()).then_some(())
    })
    .expect("node a knows every owner");

    let mut stream = Events::open(&base, None);
    assert_eq!(stream.next().1, "hello");
    let reading = |p: &String, ts: i64, t: f64| {
        (
            p.clone(),
            format!(r#"{{"sensor":"temperature","ts":{ts},"value":{t}}}"#),
        )
    };
    let hot: Vec<_> = here.iter().chain(&there).map(|p| reading(p, 1_000, 120.0)).collect();
    produce(&brokers, &hot);
    let raised = stream.until("alert", 6);
    let mut assets: Vec<&str> = raised
        .iter()
        .filter(|(_, e, _)| e == "alert")
        .map(|(_, _, d)| d["asset"].as_str().unwrap())
        .collect();
    assets.sort_unstable();
    let mut want: Vec<&str> = here.iter().chain(&there).map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(assets, want, "node a streams both nodes' alerts");
    let cursor = raised.last().unwrap().0.clone().unwrap();
    assert_eq!(cursor.split(',').count(), 2, "one entry per node: {cursor}");
    drop(stream);

    // Missed while disconnected: b's pumps cool down.
    let cool: Vec<_> = there.iter().map(|p| reading(p, 2_000, 50.0)).collect();
    produce(&brokers, &cool);
    let mut resumed = Events::open(&base, Some(&cursor));
    assert_eq!(resumed.next().1, "hello");
    let cleared: Vec<String> = resumed
        .until("alert", 3)
        .iter()
        .filter(|(_, e, _)| e == "alert")
        .map(|(_, _, d)| d["transition"]["event_id"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = there.iter().map(|p| format!("{p}/hot/1/cleared")).collect();
    let mut got = cleared.clone();
    got.sort();
    assert_eq!(got, want, "resumed from the merged cursor: {cleared:?}");
    drop(resumed);

    // The page on node a counts both nodes' twins.
    let browser = common::browser::Browser::start();
    browser.goto(&format!("{base}/"));
    browser.wait(
        "every twin's tile on node a's page",
        WAIT,
        "return document.querySelectorAll('.tile').length === 6 || null;",
        serde_json::json!([]),
    );
    let counts = browser.wait(
        "the counts after the pushed changes",
        WAIT,
        "const n = h => document.querySelector(`[data-count=${h}] b`).textContent; return n('yellow') === '3' ? [n('green'), n('yellow')] : null;",
        serde_json::json!([]),
    );
    assert_eq!(
        counts,
        serde_json::json!(["3", "3"]),
        "a's own pumps still warn, b's cooled down"
    );
    drop(browser);
    stop_cleanly(a);
    stop_cleanly(b);
}

/// One cluster node, `a`, on a broker of its own whose ingest topic has
/// `parts` shards; its updates and dead letters go to files in `dir`.
struct OneNode {
    _broker: Tansu,
    brokers: String,
    dir: tempfile::TempDir,
    topo: PathBuf,
    state: PathBuf,
}

fn one_node(parts: u32, changelog: &str) -> OneNode {
    let broker = Tansu::start();
    let brokers = broker.brokers();
    create_topic(&brokers, "telemetry", parts as i32);
    let dir = tempfile::tempdir().unwrap();
    let topo = Topo::new("a")
        .snapshot_every("100ms")
        .with(&format!(
            "cluster: {{ source: fleet, changelog: {changelog}, session_timeout: 6s }}"
        ))
        .model(MODEL)
        .source(&kafka_source(&brokers, &format!("{changelog}-test")))
        .file_sink("updates", &dir.path().join("updates-a.jsonl"), "twin_updates")
        .file_sink("dead", &dir.path().join("dead-a.jsonl"), "dead_letters")
        .write(&dir.path().join("a.yaml"));
    let state = dir.path().join("state-a");
    OneNode {
        _broker: broker,
        brokers,
        dir,
        topo,
        state,
    }
}

/// Reading `i` of a pump's temperature: a second apart, a degree warmer.
fn temperature(i: i64) -> String {
    format!(
        r#"{{"sensor":"temperature","ts":{},"value":{}}}"#,
        1_700_000_000_000 + i * 1000,
        20 + i
    )
}

/// A cluster node whose local record of a twin is damaged quarantines it
/// (its bytes to the dead letters) and reads the twin's last committed
/// checkpoint back from the changelog: the twin carries on from the state
/// it had, not from empty.
#[test]
fn a_damaged_twin_record_is_rebuilt_from_the_changelog() {
    const PARTS: u32 = 2;
    // `_broker` lives to the end: the broker stops when it drops.
    let OneNode {
        _broker,
        brokers,
        dir,
        topo,
        state,
    } = one_node(PARTS, "damaged-changelog");
    let pumps: Vec<String> = (0..10).map(|i| format!("pump-{i:04}")).collect();
    let records: Vec<(String, String)> = (0..3)
        .flat_map(|i| pumps.iter().map(move |p| (p.clone(), temperature(i))))
        .collect();

    let mut a = start(&topo, &state);
    produce(&brokers, &records);
    wait_all(dir.path(), &mut [&mut a], "first readings", |v| {
        pumps.iter().all(|p| v.get(p) == Some(&3))
    });
    stop_cleanly(a);
    let before = digest(&state);

    let victim = "pump-0003";
    let shard = twinstream::cluster::partition_for(victim.as_bytes(), PARTS);
    let bad = {
        let store = twinstream::store::Store::open(&state, 1).unwrap();
        let good = store.get_twin(shard, victim).unwrap().expect("stored");
        let bad = good[..good.len() / 2].to_vec();
        store.put_twin_raw(shard, victim, &bad).unwrap();
        bad
    };

    let mut a = start(&topo, &state);
    produce(&brokers, &[(victim.to_string(), temperature(3))]);
    wait_all(dir.path(), &mut [&mut a], "the damaged twin's next reading", |v| {
        v.get(victim) == Some(&4)
    });
    stop_cleanly(a);

    let after = digest(&state);
    for (b, a) in before.iter().zip(&after) {
        if b.0 == victim {
            assert_eq!(a.1, b.1 + 1, "{victim} carried on from its committed state: {a:?}");
        } else {
            assert_eq!(a, b, "other twins are untouched");
        }
    }
    let dead = jsonl(&dir.path().join("dead-a.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0]["reason"].as_str(), dead[0]["key"].as_str()),
        (Some("damaged_state"), Some(victim))
    );
    assert_eq!(dead_letter_payload(&dead[0]), bad);
    let msg = dead[0]["message"].as_str().unwrap();
    assert!(msg.ends_with("quarantined here and rebuilt from changelog"), "{msg}");
}

/// A node that finds another owner's claim on a shard it still works on
/// (its group session ran out meanwhile) writes no more of the shard to the
/// changelog, and its own copy of the shard stops counting as fresh: its
/// store goes on taking the twins while the changelog counts none of it.
/// When the node gets the shard back with nothing written after it, it
/// restores the shard from the changelog, not from its store (twins ahead
/// of the stored offset would apply events twice). Every reading is applied
/// once, and the changelog holds what the node holds.
#[test]
fn a_node_fenced_off_a_shard_restores_it_from_the_changelog_and_applies_every_reading_once() {
    const PARTS: u32 = 2;
    const CHANGELOG: &str = "fenced-changelog";
    let OneNode {
        _broker,
        brokers,
        dir,
        topo,
        state,
    } = one_node(PARTS, CHANGELOG);
    let pumps: Vec<String> = (0..10).map(|i| format!("pump-{i:04}")).collect();
    for shard in 0..PARTS {
        assert!(
            pumps
                .iter()
                .any(|p| twinstream::cluster::partition_for(p.as_bytes(), PARTS) == shard),
            "shard {shard} has pumps"
        );
    }
    let readings = |from: i64, to: i64| -> Vec<(String, String)> {
        (from..to)
            .flat_map(|i| pumps.iter().map(move |p| (p.clone(), temperature(i))))
            .collect()
    };
    let reached = |n: u64| move |v: &HashMap<String, u64>| (0..10).all(|i| v.get(&format!("pump-{i:04}")) >= Some(&n));

    let mut a = start(&topo, &state);
    produce(&brokers, &readings(0, 3));
    wait_all(dir.path(), &mut [&mut a], "the first readings", reached(3));
    // Another node claims both shards, an incarnation after this node's.
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &brokers);
    let other = changelog::Writer::new(&config, CHANGELOG).unwrap();
    let later = twinstream::cluster::incarnation(0) + 3_600_000_000;
    other.claim(&[(0, later), (1, later)]).unwrap();
    // The node's next checkpoint of each shard finds the claim...
    produce(&brokers, &readings(3, 5));
    for shard in 0..PARTS {
        a.wait_stderr_ever(&format!("the claim on shard {shard} found"), WAIT, |l| {
            l.contains("another node claimed this shard") && field(l, "shard") == Some(shard)
        });
    }
    // ...and the checkpoints after it hold the shards' twins locally only.
    produce(&brokers, &readings(5, 7));
    wait_all(dir.path(), &mut [&mut a], "the readings after the claim", reached(7));
    stop_cleanly(a);

    // The group gives it the shards again; nothing was written after it.
    let mut a = start(&topo, &state);
    let mut taken = std::collections::BTreeSet::new();
    while taken.len() < PARTS as usize {
        let line = a.wait_stderr("the shards taken", WAIT, |l| l.contains("shards acquired"));
        taken.extend(list_field(&line, "partitions"));
    }
    for shard in 0..PARTS {
        assert!(
            a.seen_err
                .iter()
                .any(|l| l.contains("shard restored from the changelog") && field(l, "shard") == Some(shard)),
            "shard {shard} was not restored from the changelog"
        );
    }
    produce(&brokers, &readings(7, 8));
    wait_all(dir.path(), &mut [&mut a], "the last reading", reached(8));
    stop_cleanly(a);

    let local = digest(&state);
    assert_eq!(local.len(), pumps.len());
    for twin in &local {
        assert_eq!(twin.1, 8, "every reading applied once: {twin:?}");
    }
    assert_eq!(
        changelog_digest(&brokers, CHANGELOG, PARTS),
        local,
        "the changelog holds what the node holds"
    );
}
