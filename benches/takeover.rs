//! Shard takeover benchmark: how long a cluster takes to serve a dead node's
//! shard again. Run it with `scripts/bench-takeover.sh [RUNS] [TWINS]`.
//!
//! 1. Starts tansu (SQLite storage) on 127.0.0.1, a 2-partition topic, and
//!    two twinstream nodes (`node.cluster`, snapshots every second, session
//!    timeout `BENCH_SESSION_TIMEOUT`, default 6s).
//! 2. Produces TWINS assets per shard (default 10,000), three readings each,
//!    keyed by asset id (Kafka's default partitioner), and waits until both
//!    nodes have caught up and checkpointed.
//! 3. Kills node B (`kill -9`) and times, from the survivor's log lines as
//!    they arrive:
//!    * **noticed**: kill -> the survivor's revoke ("shards handed back"): the
//!      group's session timeout plus the rebalance start;
//!    * **serving**: kill -> the survivor has restored B's shard and reads it
//!      ("shards acquired" naming it);
//!    * **takeover**: noticed -> serving: what twinstream adds (final
//!      checkpoint of its own shards, claim, changelog read of the dead shard);
//!    * **rejoin**: B restarts and takes a shard back (its local copy is
//!      stale: a changelog restore too), timed from its start.
//! 4. Repeats RUNS times (default 5) and prints each run and min/median/max.
//!
//! Reported, never asserted (the target: takeover of a 10,000-twin shard
//! under 5 s after the group notices).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, Producer};

#[path = "support/broker.rs"]
mod broker;
#[path = "support/node.rs"]
mod node;

use node::Node;

const TOPIC: &str = "telemetry";
const WAIT: Duration = Duration::from_secs(300);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let runs: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let twins: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let session = std::env::var("BENCH_SESSION_TIMEOUT").unwrap_or_else(|_| "6s".into());
    let bin = PathBuf::from(std::env::var("TWINSTREAM_BIN").expect("TWINSTREAM_BIN: the twinstream binary"));

    let broker = broker::Broker::start();
    let brokers = broker.brokers();
    broker::create_topic(&brokers, TOPIC, 2);
    let dir = tempfile::tempdir().unwrap();
    let topo = topology(dir.path(), &brokers, &session);
    println!("# shard takeover: 2 nodes, 2 shards of ~{twins} twins, session timeout {session}, {runs} runs");

    let mut a = Node::start(&bin, &topo, &dir.path().join("a"));
    let mut b = Node::start(&bin, &topo, &dir.path().join("b"));
    a.wait("A joined", |l| {
        l.contains("shards acquired") && !l.contains("partitions=[]")
    });
    b.wait("B joined", |l| {
        l.contains("shards acquired") && !l.contains("partitions=[]")
    });
    produce(&brokers, twins * 2);
    for n in [&mut a, &mut b] {
        n.wait("caught up", |l| l.contains("Kafka source caught up"));
    }

    let (mut noticed, mut serving, mut takeover, mut back) = (vec![], vec![], vec![], vec![]);
    for run in 1..=runs {
        // Both serve, and "caught up" means a durable checkpoint holds all
        // they read (the lag counts from the offsets stored with it).
        a.drain();
        let killed = Instant::now();
        b.kill();
        let (revoked, _) = a.wait("the survivor's revoke", |l| l.contains("shards handed back"));
        let (acquired, line) = a.wait("the takeover", |l| {
            l.contains("shards acquired") && l.contains("partitions=[") && l.matches(',').count() >= 1
        });
        let restore = field(&line, "ms").unwrap_or(0);
        noticed.push(revoked - killed);
        serving.push(acquired - killed);
        takeover.push(acquired - revoked);
        println!(
            "run {run}: noticed {:>6.2} s, serving {:>6.2} s, takeover {:>5.2} s (restore in the callback {restore} ms)",
            (revoked - killed).as_secs_f64(),
            (acquired - killed).as_secs_f64(),
            (acquired - revoked).as_secs_f64()
        );
        // B comes back and takes a shard back (from the changelog: its copy
        // is stale).
        let started = Instant::now();
        b = Node::start(&bin, &topo, &dir.path().join("b"));
        let (t, _) = b.wait("B taking a shard back", |l| {
            l.contains("shards acquired") && !l.contains("partitions=[]")
        });
        back.push(t - started);
        println!(
            "run {run}: restarted node serving again after {:.2} s",
            (t - started).as_secs_f64()
        );
        b.wait("B caught up", |l| l.contains("Kafka source caught up"));
    }
    println!("{}", summary("noticed (kill -> group rebalance)", &mut noticed));
    println!("{}", summary("serving (kill -> shard served again)", &mut serving));
    println!("{}", summary("takeover (rebalance -> shard served)", &mut takeover));
    println!("{}", summary("rejoin (restart -> shard served)", &mut back));
    a.kill();
    b.kill();
}

fn summary(what: &str, xs: &mut [Duration]) -> String {
    xs.sort();
    let s = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    format!(
        "{what}: min {}, median {}, max {} ({} runs)",
        s(xs[0]),
        s(xs[xs.len() / 2]),
        s(xs[xs.len() - 1]),
        xs.len()
    )
}

fn field(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn topology(dir: &Path, brokers: &str, session: &str) -> PathBuf {
    let path = dir.join("cluster.yaml");
    std::fs::write(
        &path,
        format!(
            r#"version: 1
node:
  name: bench
  snapshot: {{ interval: 1s }}
  cluster: {{ source: fleet, changelog: twins-changelog, session_timeout: {session} }}
asset_types:
  pump:
    sensors:
      temperature: {{ unit: degC, stale_after: 1h }}
      current: {{ unit: A }}
assets: [{{ id: "pump-*", type: pump }}]
windows: [{{ name: w10s, size: 10s }}]
sources:
  - name: fleet
    type: kafka
    brokers: "{brokers}"
    topics: [{TOPIC}]
    group_id: bench-takeover
    decode: {{ sensor: sensor, ts: ts, value: value }}
"#
        ),
    )
    .unwrap();
    path
}

/// `assets` assets, three readings each, keyed by asset id (murmur2).
fn produce(brokers: &str, assets: usize) {
    let producer = broker::keyed_producer(brokers);
    for i in 0..3 {
        for a in 0..assets {
            let key = format!("pump-{a:06}");
            let sensor = if i % 2 == 0 { "temperature" } else { "current" };
            let value = format!(
                r#"{{"sensor":"{sensor}","ts":{},"value":{}}}"#,
                1_700_000_000_000i64 + i * 1000,
                (a % 100) as f64 / 2.0
            );
            broker::send(&producer, BaseRecord::to(TOPIC).key(&key).payload(&value));
        }
    }
    producer.flush(WAIT).unwrap();
}
