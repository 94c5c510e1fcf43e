//! Broker connections: the MQTT and Kafka settings sources and sinks share.

use super::{Secret, TopicTemplate};
use std::path::PathBuf;
use std::time::Duration;

/// How to reach a Kafka cluster (sources and sinks alike).
#[derive(Debug, Clone)]
pub struct KafkaConn {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// librdkafka settings passed through (`security.protocol`, ...).
    pub properties: Vec<(String, String)>,
    /// librdkafka settings read from environment variables at start-up
    /// (`sasl.password: KAFKA_PASSWORD`): secrets never sit in the topology.
    pub properties_env: Vec<(String, String)>,
}

/// A Kafka consumer (rdkafka) whose offsets live in the twins' snapshots.
#[derive(Debug, Clone)]
pub struct KafkaSpec {
    pub conn: KafkaConn,
    pub topics: Vec<String>,
    /// The consumer group offsets are committed to (informational: the
    /// source resumes from the offsets stored with the snapshots); empty:
    /// `twinstream-<node>`.
    pub group_id: String,
    /// The record key is the asset id (the decode mapping names no `asset`).
    pub key_is_asset: bool,
}

/// How to reach and log in to an MQTT broker (sources and sinks alike).
#[derive(Debug, Clone)]
pub struct MqttConn {
    pub host: String,
    pub port: u16,
    /// Stable across restarts so a persistent session finds its messages;
    /// empty: `twinstream-<node>-<source or sink>`.
    pub client_id: String,
    pub keep_alive: Duration,
    pub username: Option<String>,
    /// Where the password comes from (never the topology itself).
    pub password: Option<Secret>,
    pub tls: Option<MqttTls>,
}

/// An MQTT subscription (rumqttc).
#[derive(Debug, Clone)]
pub struct MqttSpec {
    pub conn: MqttConn,
    /// Topic filters (`+` and `#` wildcards).
    pub topics: Vec<String>,
    /// 0 or 1. With 1, a message is acknowledged only once it, or the
    /// state it produced, is durable ([`AckAfter`]).
    pub qos: u8,
    /// With QoS 1: what a message's acknowledgement waits for.
    pub ack_after: AckAfter,
    /// With QoS 1, checkpoints are taken at least this often while messages
    /// flow: with [`AckAfter::Checkpoint`] the acks wait for them (the
    /// broker holds back, and slowly searches, a long list of
    /// unacknowledged messages); with the inbox, small frequent checkpoints
    /// keep the latency tail down.
    pub ack_interval: Duration,
    pub clean_session: bool,
    /// How topic levels name fields, e.g. `plant/{asset}/{sensor}`.
    pub topic_fields: Option<TopicTemplate>,
}

/// What acknowledging an MQTT QoS 1 message waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckAfter {
    /// The message is in the node's write-ahead inbox (RocksDB, as durable
    /// as a checkpoint): acks do not wait for a checkpoint, and a crash
    /// replays the inbox at the next start (the default).
    Inbox,
    /// A checkpoint holding the state the message produced is durable
    /// (checkpoints at least every `ack_interval`).
    Checkpoint,
}

/// How often an MQTT QoS 1 source's messages are acknowledged (checkpoints
/// at least this often while it has messages waiting) unless it says
/// otherwise: `scripts/bench-mqtt.sh` measured p99 latency 68 ms with 200 ms
/// checkpoints, 7.5 ms with 50 ms and 5.5 ms with 20 ms.
pub const DEFAULT_ACK_INTERVAL: Duration = Duration::from_millis(20);

/// TLS to the broker: the CA that signs its certificate, and optionally a
/// client certificate and key (mutual TLS). PEM files, read at start-up.
#[derive(Debug, Clone)]
pub struct MqttTls {
    pub ca_file: PathBuf,
    pub client: Option<(PathBuf, PathBuf)>,
}
