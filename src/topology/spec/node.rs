//! The node: its name, role, state directory, HTTP API, checkpoints, cluster
//! membership, and secrets read from the environment or files.

use crate::topology::diag::Pos;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// How the API's threads compete with ingestion for the cores.
    pub http_priority: ApiPriority,
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
    /// How far an event's timestamp may be from this node's clock.
    pub time_tolerance: TimeTolerance,
    /// What a twin whose stored record cannot be read starts from.
    pub damaged_twin: DamagedTwin,
    /// Latency budgets per hop and quantile (`node.slo`), exported for the
    /// alert rules; sorted, one per hop and quantile.
    pub slo: Vec<LatencyBudget>,
}

/// A latency budget: the hop's `quantile` should stay within `budget`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyBudget {
    pub hop: Hop,
    pub quantile: Quantile,
    pub budget: Duration,
}

/// What happens to a twin whose stored record is damaged (cannot be
/// decoded): its bytes always go to the dead letters (`damaged_state`), and
/// then it ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamagedTwin {
    /// ... stops the node (nothing starts from a guess).
    Stop,
    /// ... starts from empty, as a new twin would.
    Empty,
    /// ... is read back from the cluster's changelog (its last committed
    /// checkpoint, the same state the local record held); from empty when
    /// the changelog has no readable copy either.
    Changelog,
}

impl DamagedTwin {
    pub const NAMES: [&'static str; 3] = ["stop", "empty", "changelog"];

    pub fn name(self) -> &'static str {
        match self {
            DamagedTwin::Stop => "stop",
            DamagedTwin::Empty => "empty",
            DamagedTwin::Changelog => "changelog",
        }
    }
}

/// How the API's threads compete with ingestion for the cores
/// (`node.http.priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiPriority {
    /// The real-time round-robin policy at its lowest priority: a waking
    /// API thread takes a core from ingestion at once, and is never taken
    /// off one by it. Where the kernel refuses it, [`High`](Self::High).
    #[default]
    Realtime,
    /// Nice -5 and 0.1 ms time slices: ahead of ingestion in the normal
    /// policy, which still makes a waking thread wait for the next tick
    /// now and then.
    High,
    /// Like ingestion.
    Normal,
}

impl ApiPriority {
    /// Every setting, in the order of [`NAMES`](Self::NAMES) (and of the
    /// discriminants).
    pub const ALL: [ApiPriority; 3] = [ApiPriority::Realtime, ApiPriority::High, ApiPriority::Normal];
    pub const NAMES: [&'static str; 3] = ["realtime", "high", "normal"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn from_name(name: &str) -> Option<ApiPriority> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// How far ahead of, or behind, the node's processing-time clock an event
/// may be stamped; beyond it the record is dead-lettered
/// (`future_timestamp`, `past_timestamp`) instead of moving its twin's
/// watermark. `None`: no bound that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeTolerance {
    pub future: Option<Duration>,
    pub past: Option<Duration>,
}

impl Default for TimeTolerance {
    /// An hour ahead (a device clock that is wrong by more is broken, as
    /// Kafka 4's `log.message.timestamp.after.max.ms` assumes); any age
    /// behind, since replays and backfills carry old timestamps.
    fn default() -> Self {
        TimeTolerance {
            future: Some(Duration::from_secs(3600)),
            past: None,
        }
    }
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
    /// How long after a checkpoint is durable the next may start (by
    /// `interval` or `max_events`), unless an API write waits for one.
    pub min_pause: MinPause,
}

/// `node.snapshot.min_pause`: the pause between one checkpoint durable and
/// the next started, which bounds the share of time the node spends
/// checkpointing (as Flink's `execution.checkpointing.min-pause`, here also
/// adaptive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinPause {
    /// As long as the last checkpoint took, from start to durable: at most
    /// half of the time goes to checkpoints, however many bytes they write
    /// and however long they yield to input. A cheap checkpoint leaves the
    /// cadence to `interval`.
    Auto,
    /// A fixed pause; zero for none.
    Fixed(Duration),
}

impl MinPause {
    /// The pause after a checkpoint that took `took`.
    pub fn after(self, took: Duration) -> Duration {
        match self {
            MinPause::Auto => took,
            MinPause::Fixed(pause) => pause,
        }
    }

    pub fn describe(self) -> String {
        match self {
            MinPause::Auto => "auto".into(),
            MinPause::Fixed(pause) => humantime::format_duration(pause).to_string(),
        }
    }
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

/// The hops of the pipeline whose latency `twinstream_hop_latency_seconds`
/// measures, in the order a reading passes them (`node.slo` sets budgets on
/// them; `telemetry::HOPS` has the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hop {
    /// Received by a source (its chunk started) -> decoded and taken by the
    /// router: decoding and the wait for the router.
    Decode,
    /// Taken by the router -> applied by its twin: the wait in a worker's
    /// mailbox and the twin's work.
    Apply,
    /// Produced by a twin -> out of the node: written by a file or stdout
    /// sink, acknowledged by the broker for an MQTT or Kafka sink.
    Output,
    /// Received by a source -> the checkpoint holding its effects durable
    /// (when MQTT messages are acknowledged and Kafka offsets committed).
    Durable,
    /// The event time of the reading that raised or cleared an alert -> the
    /// alert out of the node (as `output`): what an operator waits.
    EndToEnd,
}

impl Hop {
    pub const ALL: [Hop; 5] = [Hop::Decode, Hop::Apply, Hop::Output, Hop::Durable, Hop::EndToEnd];
    pub const NAMES: [&'static str; 5] = ["decode", "apply", "output", "durable", "end_to_end"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// The quantiles a latency budget may be set at (the alert rules have one
/// rule each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quantile {
    P50,
    P99,
    P999,
}

impl Quantile {
    pub const ALL: [Quantile; 3] = [Quantile::P50, Quantile::P99, Quantile::P999];
    /// As the topology names them.
    pub const NAMES: [&'static str; 3] = ["p50", "p99", "p999"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// As the `quantile` label (and PromQL's `histogram_quantile`) has it.
    pub fn label(self) -> &'static str {
        ["0.5", "0.99", "0.999"][self as usize]
    }
}
