//! A real Kafka-compatible broker for benchmarks, and producing to it: tansu (SQLite storage) on
//! 127.0.0.1 and an ephemeral port, as the tests start it.
//! `BENCH_TANSU_STORAGE=memory` uses its in-memory engine instead (faster;
//! it loses everything on a restart and a fetch from the middle of a record
//! batch skips the rest of the batch: only for runs that do neither).
#![allow(dead_code)] // each benchmark uses what it needs

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

pub struct Broker {
    pub child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Broker {
    pub fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tools = std::env::var("CARGO_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/twinstream/tools"));
        let tansu = tools.join("bin/tansu");
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(if tansu.exists() { tansu } else { PathBuf::from("tansu") })
            .current_dir(dir.path())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &storage()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start tansu (scripts/install-deps.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker { child, port, _dir: dir }
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// The storage engine URL `BENCH_TANSU_STORAGE` asks for.
fn storage() -> String {
    match std::env::var("BENCH_TANSU_STORAGE").as_deref() {
        Ok("memory") => "memory://tansu/".into(),
        _ => "sqlite://tansu.db".into(),
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A producer that places records as a cluster expects them (Kafka's
/// default partitioner: murmur2 of the key), idempotent, batching.
pub fn keyed_producer(brokers: &str) -> rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap()
}

/// Hands `record` to `producer`, waiting while its queue is full.
pub fn send<K, P>(
    producer: &rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    mut record: rdkafka::producer::BaseRecord<'_, K, P>,
) where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, r)) => {
                std::thread::sleep(Duration::from_millis(5));
                record = r;
            }
        }
    }
}

pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
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
