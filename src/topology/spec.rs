//! The validated topology: what a topology YAML file means, as typed values.
//!
//! Everything here has passed validation: names are unique, references
//! resolve, durations are positive, rule expressions are compiled. Indices
//! (`usize`/`u16`) point into the vectors of [`Topology`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::diag::Pos;
use super::expr::Cond;

/// Format version of topology files this build understands.
pub const TOPOLOGY_VERSION: u32 = 1;

/// How long a twin idles before it is passivated, unless `node.passivate_after` says.
pub const DEFAULT_PASSIVATE_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Topology {
    /// The file it was loaded from, as given by the user.
    pub file: PathBuf,
    pub node: NodeSpec,
    pub asset_types: Vec<AssetType>,
    pub assets: Vec<AssetEntry>,
    pub sources: Vec<SourceSpec>,
    pub windows: Vec<WindowSpec>,
    pub joins: Vec<JoinSpec>,
    /// The rules this node evaluates (see [`NodeRole::evaluates`]).
    pub rules: Vec<RuleSpec>,
    /// Rules of the file another role evaluates (an edge skips the rules
    /// not marked `local`, a cluster node the local ones).
    pub rules_elsewhere: Vec<String>,
    pub sinks: Vec<SinkSpec>,
}

#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    /// Runtime data directory (RocksDB and default dead-letter file).
    pub state_dir: PathBuf,
    pub snapshot: SnapshotSpec,
    /// Where the HTTP API listens, when enabled.
    pub http_listen: Option<SocketAddr>,
    /// The bearer token writes (`POST`) need; without one the API refuses
    /// every write.
    pub http_write_token: Option<Secret>,
    /// The bearer token reads need; without one reads are open.
    pub http_read_token: Option<Secret>,
    /// Actor worker threads; 0 = one per core.
    pub workers: usize,
    /// Decoder threads; 0 = one per core.
    pub decoders: usize,
    /// Input chunks in flight between sources and sinks (the backpressure bound).
    pub max_inflight_chunks: usize,
    /// A twin that gets nothing (no event, timer or API request) for this
    /// long is passivated: dropped from memory once its state is durable,
    /// woken from the store by its next input. `None`: never.
    pub passivate_after: Option<Duration>,
    /// Member of a cluster: shards are the partitions of a Kafka source.
    pub cluster: Option<ClusterSpec>,
    pub role: NodeRole,
}

/// What a node is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeRole {
    /// One node does everything.
    #[default]
    Standalone,
    /// Near the assets: reads them (MQTT), evaluates the rules marked
    /// `local` (edge autonomy) and forwards every event to the cluster's
    /// Kafka topic, buffering in the store while the uplink is down.
    Edge,
    /// A member of a cluster (`node.cluster`): owns the shards the group
    /// assigns it.
    Cluster,
}

impl NodeRole {
    pub const NAMES: [&'static str; 3] = ["standalone", "edge", "cluster"];

    pub fn name(self) -> &'static str {
        match self {
            NodeRole::Standalone => "standalone",
            NodeRole::Edge => "edge",
            NodeRole::Cluster => "cluster",
        }
    }

    /// Whether a node of this role evaluates a rule: an edge evaluates only
    /// the `local` ones, a cluster node the others (each rule runs in one
    /// place, so an alert or a command is never sent twice), a standalone
    /// node all.
    pub fn evaluates(self, local: bool) -> bool {
        match self {
            NodeRole::Standalone => true,
            NodeRole::Edge => local,
            NodeRole::Cluster => !local,
        }
    }
}

/// A node of a cluster: the partitions of `source`'s topic are the shards,
/// assigned by its consumer group; each shard's checkpoints are published to
/// the `changelog` topic so another node can restore it.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The Kafka source whose topic is sharded (keyed by asset id).
    pub source: String,
    /// The changelog topic (as many partitions as the source's topic).
    pub changelog: String,
    /// How long the group waits for a silent node before moving its shards.
    pub session_timeout: Duration,
    /// Where other nodes reach this node's HTTP API (`http://host:port`);
    /// default: the address the API listens on.
    pub advertise: Option<String>,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct SnapshotSpec {
    /// Write dirty twins at least this often.
    pub interval: Duration,
    /// ... or after this many applied events, whichever comes first.
    pub max_events: u64,
    /// fsync the RocksDB write-ahead log on every snapshot (survives power loss).
    pub sync: bool,
}

#[derive(Debug, Clone)]
pub struct AssetType {
    pub name: String,
    pub pos: Pos,
    pub sensors: Vec<SensorSpec>,
    pub relations: Vec<RelationSpec>,
    /// Bounded out-of-orderness of the per-asset watermark.
    pub out_of_orderness: Duration,
    /// No reading at all for this long (processing time) closes the asset's
    /// open windows, so a quiet asset never holds them open forever.
    pub idle_timeout: Option<Duration>,
    /// Actuation commands the type accepts, with how each is confirmed.
    pub commands: Vec<CommandDef>,
}

/// An actuation command of an asset type: what acknowledges it, how long
/// it may stay pending, and what is sent when it fails.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandDef {
    pub name: String,
    pub pos: Pos,
    /// The sensor that reports the commanded state: a reading within
    /// `tolerance` of the desired value acknowledges the command.
    pub reported: Option<usize>,
    pub tolerance: f64,
    /// The sensor the device acknowledges on (its ack topic maps there): a
    /// reading equal to the command's `seq` acknowledges it, `-seq` rejects it.
    pub ack_sensor: Option<usize>,
    /// Pending longer than this (processing time): failed.
    pub timeout: Duration,
    /// The value sent when a command fails (times out).
    pub rollback: Option<f64>,
    /// Inclusive bounds of a value the API accepts.
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl AssetType {
    pub fn sensor_index(&self, name: &str) -> Option<usize> {
        self.sensors.iter().position(|s| s.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct SensorSpec {
    pub name: String,
    pub unit: String,
    /// Inclusive valid range; a value outside it is dead-lettered.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Nominal reporting period.
    pub expected_every: Option<Duration>,
    /// No reading for this long (processing time) makes the sensor stale.
    pub stale_after: Option<Duration>,
    /// The twin's estimate moves only when a reading differs from it by more
    /// than this (state reconciliation); zero follows every reading.
    pub deadband: f64,
    /// Sources that report this sensor, in priority order; empty: any source,
    /// the latest reading wins.
    pub sources: Vec<SensorSource>,
    pub resolve: Resolve,
    /// Sources disagreeing by more than `tolerance` raise a `discrepancy`
    /// alert, cleared once they agree within `clear_tolerance`.
    pub tolerance: Option<f64>,
    pub clear_tolerance: f64,
}

/// One source of a multi-source sensor.
#[derive(Debug, Clone)]
pub struct SensorSource {
    /// Index into [`Topology::sources`].
    pub source: usize,
    pub name: String,
    pub pos: Pos,
    /// Trust score in `[0, 1]` (policy `confidence`).
    pub trust: f64,
    /// A measurement (`measured`) outranks a commanded or expected value
    /// (`commanded`) under policy `confidence`.
    pub measured: bool,
}

/// How the twin picks a sensor's value when several sources report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolve {
    /// The reading with the newest event time.
    Latest,
    /// The first source in declaration order that is not stale.
    Priority,
    /// Measured before commanded, then the highest trust, then the newest.
    Confidence,
    /// The median of the sources that are not stale.
    Median,
}

impl Resolve {
    pub const ALL: [(&'static str, Resolve); 4] = [
        ("latest", Resolve::Latest),
        ("priority", Resolve::Priority),
        ("confidence", Resolve::Confidence),
        ("median", Resolve::Median),
    ];
}

/// A windowed join of two readings of one asset: a sensor with another
/// sensor, or with a sensor of a related asset.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    pub name: String,
    pub pos: Pos,
    /// Pair readings whose event times are at most this far apart.
    pub within: Duration,
    /// Per asset type index: (left sensor, right side).
    pub coverage: Vec<(usize, usize, JoinSide)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinSide {
    /// A sensor of the same asset.
    Sensor(usize),
    /// `relation.sensor`: a sensor of the asset the relation points to.
    Related { relation: usize, sensor: usize },
}

impl JoinSpec {
    pub fn sides_for(&self, asset_type: usize) -> Option<(usize, JoinSide)> {
        self.coverage
            .iter()
            .find(|(t, _, _)| *t == asset_type)
            .map(|(_, l, r)| (*l, *r))
    }
}

/// A relation an asset type may have to another asset, e.g. `feeds: tank`.
#[derive(Debug, Clone)]
pub struct RelationSpec {
    pub name: String,
    pub target_type: usize,
}

#[derive(Debug, Clone)]
pub struct AssetEntry {
    pub id: AssetPattern,
    pub pos: Pos,
    pub asset_type: usize,
    /// Relation name (index into the type's relations) -> related asset id.
    pub relations: Vec<(usize, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetPattern {
    Exact(String),
    /// A glob with `*` (any run of characters) and `?` (one character).
    Glob(String),
}

impl AssetPattern {
    pub fn parse(text: &str) -> AssetPattern {
        if text.contains(['*', '?']) {
            AssetPattern::Glob(text.to_string())
        } else {
            AssetPattern::Exact(text.to_string())
        }
    }

    pub fn text(&self) -> &str {
        match self {
            AssetPattern::Exact(s) | AssetPattern::Glob(s) => s,
        }
    }

    pub fn matches(&self, id: &str) -> bool {
        match self {
            AssetPattern::Exact(s) => s == id,
            AssetPattern::Glob(g) => glob_match(g.as_bytes(), id.as_bytes()),
        }
    }
}

/// Iterative glob match with `*` and `?`, linear in practice.
pub fn glob_match(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub name: String,
    pub pos: Pos,
    pub kind: SourceKind,
    /// How raw records become events; absent for sources that produce events
    /// directly (the simulator).
    pub decode: Option<DecodeSpec>,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    File(FileSourceSpec),
    Simulator(SimulatorSpec),
    Mqtt(MqttSpec),
    Kafka(KafkaSpec),
}

impl SourceKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceKind::File(_) => "file",
            SourceKind::Simulator(_) => "simulator",
            SourceKind::Mqtt(_) => "mqtt",
            SourceKind::Kafka(_) => "kafka",
        }
    }
}

/// The JSON key under which an MQTT source hands the fields of a message's
/// topic to the decoder (not a key a payload can use by accident).
pub const TOPIC_KEY: &str = "\u{1}topic";

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

/// A Kafka sink: outputs produced (idempotent producer) to a topic template,
/// keyed by asset id.
#[derive(Debug, Clone)]
pub struct KafkaSinkSpec {
    pub conn: KafkaConn,
    /// The topic of each record, e.g. `twins.{kind}`; never per asset.
    pub topic: OutputTopic,
    /// Messages held in memory (unacknowledged or waiting for the brokers)
    /// before the sink holds back the twins' batches, which stops ingest.
    pub queue: usize,
    /// Store-and-forward: beyond `queue`, messages wait in the store, up to
    /// this many bytes (then ingest is held back).
    pub buffer: Option<u64>,
}

/// The store-and-forward buffer of a Kafka sink that takes `events` (an
/// edge's uplink) when the topology sets none.
pub const DEFAULT_EVENTS_BUFFER: u64 = 1 << 30;

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
    /// 0 or 1. With 1, a message is acknowledged only once the state it
    /// produced is durable.
    pub qos: u8,
    /// With QoS 1, checkpoints are taken at least this often while messages
    /// wait for their ack (the broker holds back, and slowly searches, a
    /// long list of unacknowledged messages).
    pub ack_interval: Duration,
    pub clean_session: bool,
    /// How topic levels name fields, e.g. `plant/{asset}/{sensor}`.
    pub topic_fields: Option<TopicTemplate>,
}

/// How often an MQTT QoS 1 source's messages are acknowledged (checkpoints
/// at least this often while it has messages waiting) unless it says
/// otherwise: `scripts/bench-mqtt.sh` measured p99 latency 68 ms with 200 ms
/// checkpoints, 7.5 ms with 50 ms and 5.5 ms with 20 ms.
pub const DEFAULT_ACK_INTERVAL: Duration = Duration::from_millis(20);

/// Messages an MQTT sink holds in memory unless its `queue` says otherwise.
pub const DEFAULT_SINK_QUEUE: usize = 10_000;

/// Where dead letters go when no sink takes them (`{state_dir}` is the
/// node's state directory).
pub const DEFAULT_DEAD_LETTERS: &str = "{state_dir}/dead_letters.jsonl";

/// An MQTT sink: outputs published to a topic template.
#[derive(Debug, Clone)]
pub struct MqttSinkSpec {
    pub conn: MqttConn,
    /// The topic of each message, e.g. `plant/{asset}/commands`.
    pub topic: OutputTopic,
    /// 0 (at most once) or 1 (at least once, kept in the store until the
    /// broker acknowledges it).
    pub qos: u8,
    pub retain: bool,
    /// Messages held in memory (unacknowledged or waiting for the broker)
    /// before the sink holds back the twins' batches, which stops ingest.
    pub queue: usize,
    /// What a full queue does: hold the twins back, or (QoS 0 only) drop
    /// its oldest message.
    pub when_full: WhenFull,
}

/// What an MQTT sink does with a full queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Keep the twins' batches and their flow permits: ingest stops until
    /// the broker takes messages again. Nothing is lost.
    Block,
    /// Drop the oldest queued message (counted): ingest never waits for
    /// this sink. Only for QoS 0, which promises at most once anyway.
    DropOldest,
}

/// A topic made of literal text and `{asset}`, `{asset_type}`, `{kind}`
/// (`alert`, `command`, ...) and `{name}` (the rule, command, window or join).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputTopic {
    pub text: String,
    pub parts: Vec<TopicPart>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicPart {
    Text(usize, usize),
    Asset,
    AssetType,
    Kind,
    Name,
}

impl OutputTopic {
    pub const FIELDS: [&'static str; 4] = ["asset", "asset_type", "kind", "name"];

    pub fn parse(text: &str) -> Result<OutputTopic, String> {
        if text.is_empty() {
            return Err("a topic cannot be empty".into());
        }
        if text.contains(['+', '#', '\0']) {
            return Err("a topic to publish to cannot hold `+`, `#` or NUL".into());
        }
        let mut parts = Vec::new();
        let mut rest = 0;
        while let Some(open) = text[rest..].find('{').map(|i| i + rest) {
            let Some(close) = text[open..].find('}').map(|i| i + open) else {
                return Err(format!("`{{` at character {} is not closed", open + 1));
            };
            if open > rest {
                parts.push(TopicPart::Text(rest, open));
            }
            parts.push(match &text[open + 1..close] {
                "asset" => TopicPart::Asset,
                "asset_type" => TopicPart::AssetType,
                "kind" => TopicPart::Kind,
                "name" => TopicPart::Name,
                other => {
                    return Err(format!(
                        "`{{{other}}}`: a topic can name {}",
                        Self::FIELDS.map(|f| format!("`{{{f}}}`")).join(", ")
                    ))
                }
            });
            rest = close + 1;
        }
        if text[rest..].contains('}') {
            return Err("`}` without `{`".into());
        }
        if rest < text.len() {
            parts.push(TopicPart::Text(rest, text.len()));
        }
        Ok(OutputTopic {
            text: text.to_string(),
            parts,
        })
    }

    /// Writes the topic for one output into `out`. A substituted value that
    /// is empty is written as `_`, and its characters the broker refuses
    /// (`legal` says no: MQTT `+`, `#`, NUL) as `_`.
    pub fn render(
        &self,
        out: &mut String,
        asset: &str,
        asset_type: &str,
        kind: &str,
        name: &str,
        legal: fn(char) -> bool,
    ) {
        out.clear();
        for part in &self.parts {
            let value = match *part {
                TopicPart::Text(a, b) => {
                    out.push_str(&self.text[a..b]);
                    continue;
                }
                TopicPart::Asset => asset,
                TopicPart::AssetType => asset_type,
                TopicPart::Kind => kind,
                TopicPart::Name => name,
            };
            if value.is_empty() {
                out.push('_');
            }
            out.extend(value.chars().map(|c| if legal(c) { c } else { '_' }));
        }
    }
}

/// A character an MQTT topic to publish to can hold.
pub fn mqtt_topic_char(c: char) -> bool {
    !matches!(c, '+' | '#' | '\0')
}

/// A character a Kafka topic name can hold.
pub fn kafka_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// TLS to the broker: the CA that signs its certificate, and optionally a
/// client certificate and key (mutual TLS). PEM files, read at start-up.
#[derive(Debug, Clone)]
pub struct MqttTls {
    pub ca_file: PathBuf,
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Where a secret is read from at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// An environment variable.
    Env(String),
    /// A file (its content, without a trailing newline).
    File(PathBuf),
}

impl Secret {
    pub fn describe(&self) -> String {
        match self {
            Secret::Env(v) => format!("environment variable `{v}`"),
            Secret::File(p) => format!("file {}", p.display()),
        }
    }

    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Env(v) => std::env::var(v).map_err(|_| "it is not set".to_string()),
            Secret::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| e.to_string()),
        }
    }
}

/// A topic template: literal levels, `{field}` levels and `+` (any level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    pub levels: Vec<TopicLevel>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicLevel {
    Literal(String),
    Field(String),
    Any,
}

impl TopicTemplate {
    pub const FIELDS: [&'static str; 2] = ["asset", "sensor"];

    /// A template whose only field is the asset (a Kafka record's key).
    pub fn asset_only() -> TopicTemplate {
        TopicTemplate {
            levels: vec![TopicLevel::Field("asset".into())],
        }
    }

    pub fn parse(text: &str) -> Result<TopicTemplate, String> {
        let mut levels = Vec::new();
        for level in text.split('/') {
            levels.push(match level {
                "+" => TopicLevel::Any,
                l if l.starts_with('{') && l.ends_with('}') => {
                    let name = &l[1..l.len() - 1];
                    if !Self::FIELDS.contains(&name) {
                        return Err(format!(
                            "`{{{name}}}`: a topic level can name `{{asset}}` or `{{sensor}}`"
                        ));
                    }
                    if levels.contains(&TopicLevel::Field(name.to_string())) {
                        return Err(format!("`{{{name}}}` appears twice"));
                    }
                    TopicLevel::Field(name.to_string())
                }
                l if l.contains(['{', '}', '#', '+']) => {
                    return Err(format!("level `{l}`: use a name, `+` or `{{asset}}`/`{{sensor}}`"))
                }
                l => TopicLevel::Literal(l.to_string()),
            });
        }
        Ok(TopicTemplate { levels })
    }

    pub fn has(&self, field: &str) -> bool {
        self.levels
            .iter()
            .any(|l| matches!(l, TopicLevel::Field(f) if f == field))
    }

    /// The fields `topic` gives, or `None` when it does not fit the template.
    pub fn extract<'t>(&self, topic: &'t str) -> Option<Vec<(&str, &'t str)>> {
        let parts: Vec<&str> = topic.split('/').collect();
        if parts.len() != self.levels.len() {
            return None;
        }
        let mut out = Vec::new();
        for (level, part) in self.levels.iter().zip(parts) {
            match level {
                TopicLevel::Literal(l) if l != part => return None,
                TopicLevel::Field(f) => out.push((f.as_str(), part)),
                _ => {}
            }
        }
        Some(out)
    }
}

#[derive(Debug, Clone)]
pub struct FileSourceSpec {
    /// The JSON-lines file; `replay` supplies it on the command line instead.
    pub path: Option<PathBuf>,
    pub pace: Pace,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as possible.
    Fast,
    /// At the pace recorded in the event timestamps, times `speed`.
    Recorded { speed: f64 },
}

#[derive(Debug, Clone)]
pub struct SimulatorSpec {
    pub asset_type: usize,
    /// Asset ids are `prefix` + a zero-padded number `0..count`.
    pub prefix: String,
    pub count: u32,
    pub digits: usize,
    /// Sampling period per sensor; defaults to the sensor's `expected_every`.
    pub every: Option<Duration>,
    pub seed: u64,
    /// Event-time jitter (events arrive out of order by up to this much).
    pub jitter: Duration,
    /// Probability per sample of a spike (a short excursion to 80-100% of range).
    pub spike_prob: f64,
    /// Probability per sample that a sensor goes silent for a while.
    pub gap_prob: f64,
    /// Fraction of assets whose first sensor drifts upward over time.
    pub drift_frac: f64,
    /// The sensors it reports (indices); empty: all. A second simulator with
    /// the same seed and a subset plays a second source of those sensors:
    /// same baselines, its own noise, spikes and gaps.
    pub sensors: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct DecodeSpec {
    /// Name and version of the telemetry contract this mapping decodes.
    pub contract: Option<String>,
    /// Where a record states its contract; a record that states another one
    /// (or none) is dead-lettered as `unknown_contract`.
    pub contract_field: Option<FieldPath>,
    pub asset: FieldPath,
    /// Narrow records: one reading per record, sensor name in a field.
    pub sensor: Option<FieldPath>,
    pub value: Option<FieldPath>,
    /// Wide records: several readings per record, one field per sensor.
    pub values: Vec<(String, FieldPath)>,
    pub ts: FieldPath,
    pub ts_format: TsFormat,
    /// Unit conversion into the sensor's declared unit: `raw * scale + offset`.
    pub convert: Vec<Convert>,
}

#[derive(Debug, Clone)]
pub struct Convert {
    pub sensor: String,
    pub scale: f64,
    pub offset: f64,
}

/// A dotted path into a JSON object, e.g. `payload.motor.current`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let segs: Vec<String> = text.split('.').map(str::to_string).collect();
        if segs.iter().any(String::is_empty) {
            return Err(format!(
                "`{text}` is not a field path; expected names separated by dots, like `payload.temp`"
            ));
        }
        Ok(FieldPath(segs))
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsFormat {
    EpochMillis,
    EpochSeconds,
    EpochMicros,
    Rfc3339,
}

#[derive(Debug, Clone)]
pub struct WindowSpec {
    pub name: String,
    pub pos: Pos,
    pub size: Duration,
    /// Equal to `size` for tumbling windows.
    pub slide: Duration,
    /// Per asset type index: the sensors (indices) this window covers.
    /// Types the window does not apply to are absent.
    pub coverage: Vec<(usize, Vec<usize>)>,
}

impl WindowSpec {
    pub fn is_tumbling(&self) -> bool {
        self.size == self.slide
    }

    pub fn sensors_for(&self, asset_type: usize) -> Option<&[usize]> {
        self.coverage
            .iter()
            .find(|(t, _)| *t == asset_type)
            .map(|(_, s)| s.as_slice())
    }
}

/// What a name in a rule expression refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The latest value of a sensor (by sensor index of the asset type).
    Latest { sensor: u16 },
    /// An aggregate of the most recently closed window of a sensor.
    Window { window: u16, sensor: u16, agg: Agg },
    /// 1 while the sensor is stale, else 0.
    Stale { sensor: u16 },
    /// The latest value of a related asset's sensor.
    Related { relation: u16, sensor: u16 },
    /// A side (0 = left, 1 = right) of a join's latest joined pair.
    Join { join: u16, side: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Agg {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    /// The reading with the greatest event time (ties: the later arrival).
    Last,
    /// Population standard deviation.
    Stddev,
}

impl Agg {
    pub const ALL: [(&'static str, Agg); 7] = [
        ("count", Agg::Count),
        ("sum", Agg::Sum),
        ("min", Agg::Min),
        ("max", Agg::Max),
        ("avg", Agg::Avg),
        ("last", Agg::Last),
        ("stddev", Agg::Stddev),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, a)| *a == self).map_or("?", |(n, _)| n)
    }
}

#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub name: String,
    pub pos: Pos,
    pub when: String,
    /// `for`: how long (event time) `when` must keep holding before the
    /// alert is raised; zero raises at once.
    pub hold: Duration,
    /// `clear_when`: what clears an active alert (hysteresis); without it the
    /// alert clears as soon as `when` stops holding.
    pub clear_when: Option<String>,
    pub severity: Severity,
    pub message: Option<String>,
    /// The condition compiled for each asset type the rule applies to.
    pub compiled: Vec<(usize, Cond<Slot>)>,
    /// `clear_when` compiled likewise (empty without one).
    pub clear_compiled: Vec<(usize, Cond<Slot>)>,
    /// A command sent when the alert is raised (and, with `on_clear`, when
    /// it clears).
    pub command: Option<CommandSpec>,
    /// Evaluated at the edge (edge autonomy), not by the cluster.
    pub local: bool,
}

/// A rule's actuation command: `name` set to `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    pub name: String,
    pub value: f64,
    /// The value sent when the alert clears; none: nothing is sent then.
    pub on_clear: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const NAMES: [&'static str; 3] = ["info", "warning", "critical"];

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Debug, Clone)]
pub struct SinkSpec {
    pub name: String,
    pub pos: Pos,
    pub kind: SinkKind,
    pub outputs: Vec<OutputKind>,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    Stdout,
    File { path: PathBuf },
    Mqtt(Box<MqttSinkSpec>),
    Kafka(Box<KafkaSinkSpec>),
}

/// The kinds of output a twin produces; sinks subscribe to kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    TwinUpdates,
    Windows,
    Alerts,
    DeadLetters,
    /// Events that arrived for windows already closed.
    LateEvents,
    /// Joined pairs of readings.
    Joins,
    /// Actuation commands.
    Commands,
    /// Every event a twin applied, as a reading (an edge forwards these to
    /// the cluster).
    Events,
    /// Values other twins read through a relation (`feeds.level`), for the
    /// cluster's relay of them to followers on other nodes. Internal: no
    /// topology names it.
    Relays,
}

impl OutputKind {
    pub const ALL: [(&'static str, OutputKind); 8] = [
        ("twin_updates", OutputKind::TwinUpdates),
        ("windows", OutputKind::Windows),
        ("alerts", OutputKind::Alerts),
        ("dead_letters", OutputKind::DeadLetters),
        ("late_events", OutputKind::LateEvents),
        ("joins", OutputKind::Joins),
        ("commands", OutputKind::Commands),
        ("events", OutputKind::Events),
    ];

    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Relays => "relays",
            k => Self::ALL.iter().find(|(_, x)| *x == k).map_or("?", |(n, _)| n),
        }
    }

    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_shell_patterns() {
        let rows = [
            ("pump-*", "pump-00042", true),
            ("pump-*", "pump-", true),
            ("pump-*", "tank-1", false),
            ("*-7", "tank-7", true),
            ("line-?/motor-*", "line-3/motor-12", true),
            ("line-?/motor-*", "line-33/motor-12", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
        ];
        for (pat, id, want) in rows {
            assert_eq!(AssetPattern::parse(pat).matches(id), want, "{pat} vs {id}");
        }
    }

    #[test]
    fn output_topics_substitute_fields_and_keep_levels_valid() {
        let rows = [
            (
                "plant/{asset}/commands",
                ("p-1", "pump", "command", "valve"),
                "plant/p-1/commands",
            ),
            (
                "{asset_type}/{asset}/{kind}/{name}",
                ("p-1", "pump", "alert", "hot"),
                "pump/p-1/alert/hot",
            ),
            ("x/{name}", ("p-1", "pump", "dead_letter", ""), "x/_"),
            ("x/{asset}", ("a+b#c", "pump", "alert", ""), "x/a_b_c"),
            ("fixed", ("p-1", "pump", "alert", "hot"), "fixed"),
        ];
        let mut out = String::new();
        for (template, (asset, ty, kind, name), want) in rows {
            let t = OutputTopic::parse(template).unwrap();
            t.render(&mut out, asset, ty, kind, name, mqtt_topic_char);
            assert_eq!(out, want, "{template}");
        }
        for bad in ["", "a/+/b", "a/#", "a/{sensor}", "a/{asset", "a}"] {
            assert!(OutputTopic::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
