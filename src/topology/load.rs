//! Topology YAML -> validated [`Topology`], reporting every problem at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use marked_yaml::{LoadError as YamlError, Node};

use super::diag::{one_of, suggest, Diagnostics, Pos};
use super::expr::{compile_condition, Cond, Resolver, Unresolved};
use super::spec::*;
use super::yaml::{entries, pos, scalar_str, spanned_scalar, Entries, Fields, Spanned};

/// Why a topology could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The cause is part of the message (not a `source()`), so printing the
    /// error chain names it once.
    #[error("cannot read topology {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    /// The file has problems; every one of them is in the diagnostics.
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// Reads and validates the topology at `path`.
pub fn load(path: &Path) -> Result<Topology, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        cause: source,
    })?;
    parse(path, &text).map_err(LoadError::Invalid)
}

/// Validates topology `text`; `path` names it in diagnostics.
pub fn parse(path: &Path, text: &str) -> Result<Topology, Diagnostics> {
    let mut diags = Diagnostics::new(path.display().to_string());
    let strict = marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true);
    let root = match marked_yaml::parse_yaml_with_options(0, text, strict) {
        Ok(root) => root,
        // A duplicate key is reported, and the rest of the file is still
        // checked (as read with the later value winning): every other error
        // is reported with it.
        Err(e @ YamlError::DuplicateKey(_)) => {
            let (p, msg) = yaml_error(&e);
            diags.error(p, msg);
            match marked_yaml::parse_yaml_with_options(0, text, marked_yaml::LoaderOptions::default()) {
                Ok(root) => root,
                Err(_) => return Err(diags),
            }
        }
        Err(e) => {
            let (p, msg) = yaml_error(&e);
            diags.error(p, msg);
            return Err(diags);
        }
    };
    let mut cx = Cx {
        diags,
        lines: text.lines().collect(),
    };
    let topo = cx.topology(path, &root);
    match topo {
        Some(t) if cx.diags.is_empty() => Ok(t),
        _ => Err(cx.diags),
    }
}

fn yaml_error(e: &YamlError) -> (Pos, String) {
    let marker_pos = |m: &marked_yaml::Marker| Pos {
        line: m.line(),
        col: m.column(),
    };
    match e {
        YamlError::TopLevelMustBeMapping(m) => (marker_pos(m), "the topology must be a YAML mapping".into()),
        YamlError::DuplicateKey(k) => (
            Pos::of(k.key.span()),
            format!(
                "duplicate key `{}` (first at line {})",
                k.key.as_str(),
                Pos::of(k.prev_key.span()).line
            ),
        ),
        YamlError::ScanError(m, err) => (marker_pos(m), format!("invalid YAML: {}", err.info())),
        YamlError::UnexpectedAnchor(m) => (
            marker_pos(m),
            "YAML anchors and aliases are not supported in topologies".into(),
        ),
        YamlError::UnexpectedTag(m) => (marker_pos(m), "YAML tags are not supported in topologies".into()),
        YamlError::MappingKeyMustBeScalar(m) => (marker_pos(m), "mapping keys must be plain names".into()),
        other => (Pos::default(), format!("invalid YAML: {other}")),
    }
}

struct Cx<'t> {
    diags: Diagnostics,
    lines: Vec<&'t str>,
}

const TOP_FIELDS: &[&str] = &[
    "version",
    "node",
    "asset_types",
    "assets",
    "sources",
    "windows",
    "joins",
    "rules",
    "sinks",
];

/// Sensor, window and relation names appear in rule expressions, so they must
/// be identifiers.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Names of assets, rules, sources and sinks: printable, no spaces or globs.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
}

impl<'t> Cx<'t> {
    fn err(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags.error(pos, msg);
    }

    fn topology(&mut self, path: &Path, root: &Node) -> Option<Topology> {
        let top = Fields::new(root, "topology", TOP_FIELDS, &mut self.diags)?;
        if let Some(v) = top.u64("version", false, &mut self.diags) {
            if v.value != u64::from(TOPOLOGY_VERSION) {
                self.err(
                    v.pos,
                    format!(
                        "topology.version: this build reads version {TOPOLOGY_VERSION}, found {}",
                        v.value
                    ),
                );
            }
        }
        let node = self.node(top.get("node"));
        let mut asset_types = match top.require("asset_types", &mut self.diags) {
            Some(n) => self.asset_types(n),
            None => Vec::new(),
        };
        let assets = match top.require("assets", &mut self.diags) {
            Some(n) => self.assets(n, &asset_types),
            None => Vec::new(),
        };
        let windows = match top.get("windows") {
            Some(n) => self.windows(n, &asset_types),
            None => Vec::new(),
        };
        let joins = match top.get("joins") {
            Some(n) => self.joins(n, &asset_types),
            None => Vec::new(),
        };
        let rules = match top.get("rules") {
            Some(n) => self.rules(n, &asset_types, &windows, &joins),
            None => Vec::new(),
        };
        let sources = match top.require("sources", &mut self.diags) {
            Some(n) => self.sources(n, &asset_types, &assets),
            None => Vec::new(),
        };
        self.link_sensor_sources(&mut asset_types, &sources);
        let sinks = match top.get("sinks") {
            Some(n) => self.sinks(n),
            None => Vec::new(),
        };
        let mut rules = rules;
        let mut rules_elsewhere = Vec::new();
        if let Some(node) = &node {
            self.distinct_client_ids(&node.name, &sources, &sinks);
            if let Some(cluster) = &node.cluster {
                self.cluster_source(cluster, &sources);
            }
            if node.role == NodeRole::Edge {
                self.edge_uplink(&sinks);
            }
            rules.retain(|r| {
                let here = node.role.evaluates(r.local);
                if !here {
                    rules_elsewhere.push(r.name.clone());
                }
                here
            });
        }
        Some(Topology {
            file: path.to_path_buf(),
            node: node?,
            asset_types,
            assets,
            sources,
            windows,
            joins,
            rules,
            rules_elsewhere,
            sinks,
        })
    }

    /// An edge forwards every event to the cluster: it needs a Kafka sink
    /// that takes `events`.
    fn edge_uplink(&mut self, sinks: &[SinkSpec]) {
        let uplink = sinks
            .iter()
            .any(|s| matches!(s.kind, SinkKind::Kafka(_)) && s.outputs.contains(&OutputKind::Events));
        if !uplink {
            let pos = sinks.first().map_or_else(Pos::default, |s| s.pos);
            self.err(
                pos,
                "node.role edge: an edge forwards every event to the cluster; add a Kafka sink with `outputs: [events]` and the cluster's ingest topic",
            );
        }
    }

    /// A cluster shards one Kafka topic keyed by asset id, read by one
    /// group; every event of a cluster node comes from it (MQTT devices
    /// reach a cluster through an edge node).
    fn cluster_source(&mut self, cluster: &ClusterSpec, sources: &[SourceSpec]) {
        let Some(src) = sources.iter().find(|s| s.name == cluster.source) else {
            let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
            self.err(
                cluster.pos,
                format!(
                    "node.cluster.source: no source `{}` (sources: {})",
                    cluster.source,
                    names.join(", ")
                ),
            );
            return;
        };
        let SourceKind::Kafka(k) = &src.kind else {
            self.err(
                cluster.pos,
                format!(
                    "node.cluster.source: `{}` is not a Kafka source; a cluster shards the partitions of a Kafka topic",
                    src.name
                ),
            );
            return;
        };
        if k.topics.len() != 1 {
            self.err(
                src.pos,
                format!(
                    "source `{}`: a cluster source reads exactly one topic (its partitions are the shards); found {}",
                    src.name,
                    k.topics.len()
                ),
            );
        }
        if !k.key_is_asset {
            self.err(src.pos, format!("source `{}`: a cluster source takes the asset id from the record key (its partition); remove `asset` from its decode mapping", src.name));
        }
        if k.group_id.is_empty() {
            self.err(
                src.pos,
                format!(
                    "source `{}`: a cluster source needs `group_id`, the same on every node of the cluster",
                    src.name
                ),
            );
        }
        if k.topics.contains(&cluster.changelog) {
            self.err(cluster.pos, "node.cluster.changelog: must not be the ingest topic");
        }
        for other in sources.iter().filter(|s| s.name != cluster.source) {
            self.err(other.pos, format!("source `{}`: a cluster node reads only its cluster source `{}` (MQTT devices reach a cluster through an edge node)", other.name, cluster.source));
        }
    }

    /// Two MQTT clients with one id on one broker take the session from
    /// each other in turn: refuse it.
    fn distinct_client_ids(&mut self, node: &str, sources: &[SourceSpec], sinks: &[SinkSpec]) {
        let mut seen: Vec<(String, &MqttConn, Pos)> = Vec::new();
        let clients = sources
            .iter()
            .filter_map(|s| match &s.kind {
                SourceKind::Mqtt(m) => Some((&m.conn, format!("twinstream-{node}-{}", s.name), s.pos)),
                _ => None,
            })
            .chain(sinks.iter().filter_map(|s| match &s.kind {
                SinkKind::Mqtt(m) => Some((&m.conn, format!("twinstream-{node}-sink-{}", s.name), s.pos)),
                _ => None,
            }));
        for (conn, default, pos) in clients {
            let id = if conn.client_id.is_empty() {
                default
            } else {
                conn.client_id.clone()
            };
            if let Some((_, _, first)) = seen
                .iter()
                .find(|(i, c, _)| *i == id && c.host == conn.host && c.port == conn.port)
            {
                self.err(
                    pos,
                    format!(
                        "MQTT client id `{id}` is already used at line {} for the same broker; the broker would disconnect one for the other - give each `client_id` its own value",
                        first.line
                    ),
                );
            } else {
                seen.push((id, conn, pos));
            }
        }
    }

    // ------------------------------------------------------------ node

    fn node(&mut self, node: Option<&Node>) -> Option<NodeSpec> {
        let mut spec = NodeSpec {
            name: "node-1".into(),
            state_dir: PathBuf::from("state"),
            snapshot: SnapshotSpec {
                interval: Duration::from_secs(1),
                max_events: 1_000_000,
                sync: true,
            },
            http_listen: None,
            http_write_token: None,
            http_read_token: None,
            workers: 0,
            decoders: 0,
            max_inflight_chunks: 8,
            passivate_after: Some(DEFAULT_PASSIVATE_AFTER),
            cluster: None,
            role: NodeRole::Standalone,
        };
        let Some(node) = node else { return Some(spec) };
        const FIELDS: &[&str] = &[
            "name",
            "state_dir",
            "snapshot",
            "http",
            "workers",
            "decoders",
            "max_inflight_chunks",
            "passivate_after",
            "cluster",
            "role",
        ];
        let f = Fields::new(node, "node", FIELDS, &mut self.diags)?;
        let d = &mut self.diags;
        if let Some(n) = f.str("name", false, d) {
            spec.name = n.value;
        }
        if let Some(s) = f.str("state_dir", false, d) {
            spec.state_dir = PathBuf::from(s.value);
        }
        if let Some(w) = f.u64("workers", false, d) {
            spec.workers = w.value as usize;
        }
        if let Some(w) = f.u64("decoders", false, d) {
            spec.decoders = w.value as usize;
        }
        if let Some(w) = f.u64("max_inflight_chunks", false, d) {
            if w.value == 0 {
                d.error(w.pos, "node.max_inflight_chunks: must be at least 1");
            }
            spec.max_inflight_chunks = w.value.max(1) as usize;
        }
        if let Some(p) = f.str("passivate_after", false, d) {
            if p.value == "never" {
                spec.passivate_after = None;
            } else if let Some(after) = f.duration("passivate_after", false, d) {
                if after.value < Duration::from_secs(1) {
                    d.error(
                        after.pos,
                        "node.passivate_after: at least 1s (or `never`): a twin is passivated only after its state is durable",
                    );
                }
                spec.passivate_after = Some(after.value);
            }
        }
        if let Some(snap) = f.get("snapshot") {
            const SNAP: &[&str] = &["interval", "max_events", "sync"];
            if let Some(s) = Fields::new(snap, "node.snapshot", SNAP, d) {
                if let Some(i) = s.duration("interval", false, d) {
                    if i.value.is_zero() {
                        d.error(i.pos, "node.snapshot.interval: must be greater than zero");
                    }
                    spec.snapshot.interval = i.value;
                }
                if let Some(m) = s.u64("max_events", false, d) {
                    if m.value == 0 {
                        d.error(m.pos, "node.snapshot.max_events: must be at least 1");
                    }
                    spec.snapshot.max_events = m.value;
                }
                if let Some(b) = s.bool("sync", d) {
                    spec.snapshot.sync = b.value;
                }
            }
        }
        if let Some(c) = f.get("cluster") {
            const CLUSTER: &[&str] = &["source", "changelog", "session_timeout", "advertise"];
            if let Some(c) = Fields::new(c, "node.cluster", CLUSTER, d) {
                let source = c.str("source", true, d);
                let changelog = c.str("changelog", true, d);
                let advertise = c.str("advertise", false, d).and_then(|a| {
                    let url = a.value.trim_end_matches('/');
                    let host = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
                    match host {
                        Some(h) if !h.is_empty() && !h.contains('/') => Some(url.to_string()),
                        _ => {
                            d.error(
                                a.pos,
                                format!("node.cluster.advertise: expected the URL other nodes reach this node's HTTP API at, like `http://10.0.0.3:8080`, found `{}`", a.value),
                            );
                            None
                        }
                    }
                });
                let session_timeout = c.duration("session_timeout", false, d);
                if let Some(t) = &session_timeout {
                    if t.value < Duration::from_secs(1) || t.value > Duration::from_secs(300) {
                        d.error(t.pos, "node.cluster.session_timeout: between 1s and 300s");
                    }
                }
                if let (Some(source), Some(changelog)) = (source, changelog) {
                    spec.cluster = Some(ClusterSpec {
                        pos: source.pos,
                        source: source.value,
                        changelog: changelog.value,
                        session_timeout: session_timeout.map_or(Duration::from_secs(10), |t| t.value),
                        advertise,
                    });
                }
            }
        }
        if spec.cluster.is_some() {
            spec.role = NodeRole::Cluster;
        }
        if let Some(r) = f.choice("role", &NodeRole::NAMES, false, d) {
            let role = match r.value.as_str() {
                "edge" => NodeRole::Edge,
                "cluster" => NodeRole::Cluster,
                _ => NodeRole::Standalone,
            };
            match (role, spec.cluster.is_some()) {
                (NodeRole::Cluster, false) => d.error(
                    r.pos,
                    "node.role: a cluster node needs `node.cluster` (its source, changelog and session timeout)",
                ),
                (NodeRole::Edge | NodeRole::Standalone, true) => d.error(
                    r.pos,
                    format!(
                        "node.role: a `{}` node is not a member of a cluster; remove `node.cluster` or the role",
                        r.value
                    ),
                ),
                _ => spec.role = role,
            }
        }
        if let Some(http) = f.get("http") {
            const HTTP: &[&str] = &[
                "listen",
                "write_token",
                "write_token_env",
                "write_token_file",
                "read_token",
                "read_token_env",
                "read_token_file",
            ];
            if let Some(h) = Fields::new(http, "node.http", HTTP, d) {
                if let Some(l) = h.str("listen", false, d) {
                    match l.value.parse::<SocketAddr>() {
                        Ok(a) => spec.http_listen = Some(a),
                        Err(_) => d.error(
                            l.pos,
                            format!(
                                "node.http.listen: expected an address like `127.0.0.1:8080`, found `{}`",
                                l.value
                            ),
                        ),
                    }
                }
                spec.http_write_token = token(&h, "write_token", d);
                spec.http_read_token = token(&h, "read_token", d);
            }
        }
        Some(spec)
    }

    // ------------------------------------------------------------ asset types

    fn named_entries<'n>(&mut self, node: &'n Node, what: &str) -> Vec<(Option<Spanned<String>>, &'n Node)> {
        match entries(node, what, &mut self.diags) {
            Some(Entries::Map(items)) => items.into_iter().map(|(k, v)| (Some(k), v)).collect(),
            Some(Entries::List(items)) => items.into_iter().map(|v| (None, v)).collect(),
            None => Vec::new(),
        }
    }

    fn asset_types(&mut self, node: &Node) -> Vec<AssetType> {
        let Some(map) = node.as_mapping() else {
            self.err(
                pos(node),
                "asset_types: expected a mapping of type name to definition, like `pump: {sensors: ...}`",
            );
            return Vec::new();
        };
        // First pass: names, so relations can refer to types declared later.
        let names: Vec<String> = map.keys().map(|k| k.as_str().to_string()).collect();
        let mut out = Vec::new();
        let mut pending_relations = Vec::new();
        for (key, def) in map.iter() {
            let name = key.as_str().to_string();
            let kpos = Pos::of(key.span());
            if !is_name(&name) {
                self.err(
                    kpos,
                    format!("asset type name `{name}`: use letters, digits, `-`, `_` or `.`"),
                );
            }
            let what = format!("asset type `{name}`");
            const FIELDS: &[&str] = &["sensors", "relations", "watermark", "commands"];
            let Some(f) = Fields::new(def, &what, FIELDS, &mut self.diags) else {
                continue;
            };
            let mut sensors = Vec::new();
            if let Some(sn) = f.require("sensors", &mut self.diags) {
                sensors = self.sensors(sn, &what);
            }
            let commands = match f.get("commands") {
                Some(c) => self.commands(c, &what, &sensors),
                None => Vec::new(),
            };
            let mut ooo = Duration::from_secs(1);
            let mut idle_timeout = None;
            if let Some(wm) = f.get("watermark") {
                const WM: &[&str] = &["out_of_orderness", "idle_timeout"];
                if let Some(w) = Fields::new(wm, &format!("{what}.watermark"), WM, &mut self.diags) {
                    if let Some(d) = w.duration("out_of_orderness", false, &mut self.diags) {
                        ooo = d.value;
                    }
                    if let Some(d) = w.duration("idle_timeout", false, &mut self.diags) {
                        if d.value < Duration::from_millis(1) {
                            self.err(d.pos, format!("{what}.watermark.idle_timeout: must be at least 1ms"));
                        }
                        idle_timeout = Some(d.value);
                    }
                }
            }
            if let Some(rel) = f.get("relations") {
                pending_relations.push((out.len(), rel));
            }
            out.push(AssetType {
                name,
                pos: kpos,
                sensors,
                relations: Vec::new(),
                out_of_orderness: ooo,
                idle_timeout,
                commands,
            });
        }
        for (idx, rel) in pending_relations {
            let what = format!("asset type `{}`.relations", out[idx].name);
            let Some(map) = rel.as_mapping() else {
                self.err(pos(rel), format!("{what}: expected a mapping like `feeds: tank`"));
                continue;
            };
            for (k, v) in map.iter() {
                let rname = k.as_str().to_string();
                if !is_identifier(&rname) {
                    self.err(
                        Pos::of(k.span()),
                        format!("{what}: relation name `{rname}` must be an identifier (letters, digits, `_`)"),
                    );
                }
                let Some(target) = scalar_str(v, &format!("{what}.{rname}"), &mut self.diags) else {
                    continue;
                };
                match names.iter().position(|n| *n == target.value) {
                    Some(t) => out[idx].relations.push(RelationSpec {
                        name: rname,
                        target_type: t,
                    }),
                    None => {
                        let hint = hint(&target.value, names.iter().map(String::as_str));
                        self.err(
                            target.pos,
                            format!("{what}.{rname}: unknown asset type `{}`{hint}", target.value),
                        );
                    }
                }
            }
        }
        out
    }

    /// `commands:` of an asset type: `name: {reported, tolerance, ack_sensor,
    /// timeout, rollback, min, max}`.
    fn commands(&mut self, node: &Node, what: &str, sensors: &[SensorSpec]) -> Vec<CommandDef> {
        let Some(map) = node.as_mapping() else {
            self.err(
                pos(node),
                format!("{what}.commands: expected a mapping of command name to definition, like `speed: {{reported: rpm, timeout: 30s}}`"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, def) in map.iter() {
            let name = key.as_str().to_string();
            let kpos = Pos::of(key.span());
            if !is_identifier(&name) {
                self.err(
                    kpos,
                    format!("{what}: command name `{name}` must be an identifier (letters, digits, `_`)"),
                );
            }
            let cwhat = format!("{what}.commands.{name}");
            const FIELDS: &[&str] = &[
                "reported",
                "tolerance",
                "ack_sensor",
                "timeout",
                "rollback",
                "min",
                "max",
            ];
            let Some(f) = Fields::new(def, &cwhat, FIELDS, &mut self.diags) else {
                continue;
            };
            let d = &mut self.diags;
            let sensor = |field: &str, d: &mut Diagnostics| {
                let s = f.str(field, false, d)?;
                match sensors.iter().position(|x| x.name == s.value) {
                    Some(i) => Some(i),
                    None => {
                        let hint = hint(&s.value, sensors.iter().map(|x| x.name.as_str()));
                        d.error(
                            s.pos,
                            format!("{cwhat}.{field}: no sensor `{}` in {what}{hint}", s.value),
                        );
                        None
                    }
                }
            };
            let reported = sensor("reported", d);
            let ack_sensor = sensor("ack_sensor", d);
            if f.get("reported").is_none() && f.get("ack_sensor").is_none() {
                d.error(
                    kpos,
                    format!("{cwhat}: nothing could acknowledge it; give `reported` (a sensor that reports the commanded state) or `ack_sensor` (the sensor the device acknowledges on), or both"),
                );
            }
            let tolerance = f.f64("tolerance", false, d).map_or(0.0, |t| {
                if t.value < 0.0 || !t.value.is_finite() {
                    d.error(t.pos, format!("{cwhat}.tolerance: a finite number >= 0"));
                }
                t.value
            });
            let timeout = f.duration("timeout", false, d).map_or(Duration::from_secs(60), |t| {
                if t.value < Duration::from_millis(1) {
                    d.error(t.pos, format!("{cwhat}.timeout: at least 1ms"));
                }
                t.value
            });
            let rollback = f.f64("rollback", false, d).map(|v| v.value);
            let min = f.f64("min", false, d).map(|v| v.value);
            let max = f.f64("max", false, d).map(|v| v.value);
            if let (Some(lo), Some(hi)) = (min, max) {
                if lo > hi {
                    d.error(kpos, format!("{cwhat}: `min` {lo} is above `max` {hi}"));
                }
            }
            out.push(CommandDef {
                name,
                pos: kpos,
                reported,
                tolerance,
                ack_sensor,
                timeout,
                rollback,
                min,
                max,
            });
        }
        out
    }

    fn sensors(&mut self, node: &Node, what: &str) -> Vec<SensorSpec> {
        let Some(map) = node.as_mapping() else {
            self.err(
                pos(node),
                format!("{what}.sensors: expected a mapping of sensor name to definition, like `temperature: {{unit: degC}}`"),
            );
            return Vec::new();
        };
        if map.is_empty() {
            self.err(pos(node), format!("{what}.sensors: declare at least one sensor"));
        }
        let mut out = Vec::new();
        for (key, def) in map.iter() {
            let name = key.as_str().to_string();
            let kpos = Pos::of(key.span());
            if !is_identifier(&name) {
                self.err(
                    kpos,
                    format!("{what}: sensor name `{name}` must be an identifier (letters, digits, `_`)"),
                );
            }
            let swhat = format!("sensor `{name}`");
            const FIELDS: &[&str] = &[
                "unit",
                "range",
                "expected_every",
                "stale_after",
                "deadband",
                "sources",
                "resolve",
                "tolerance",
                "clear_tolerance",
            ];
            let Some(f) = Fields::new(def, &swhat, FIELDS, &mut self.diags) else {
                continue;
            };
            let unit = f
                .str("unit", true, &mut self.diags)
                .map(|u| u.value)
                .unwrap_or_default();
            let (mut min, mut max) = (None, None);
            if let Some(r) = f.get("range") {
                match r.as_sequence() {
                    Some(seq) if seq.len() == 2 => {
                        let lo = scalar_str(&seq[0], &format!("{swhat}.range"), &mut self.diags)
                            .and_then(|s| super::yaml::number(&s, &format!("{swhat}.range"), &mut self.diags));
                        let hi = scalar_str(&seq[1], &format!("{swhat}.range"), &mut self.diags)
                            .and_then(|s| super::yaml::number(&s, &format!("{swhat}.range"), &mut self.diags));
                        if let (Some(lo), Some(hi)) = (&lo, &hi) {
                            if lo.value > hi.value {
                                self.err(
                                    lo.pos,
                                    format!(
                                        "{swhat}.range: lower bound {} is above upper bound {}",
                                        lo.value, hi.value
                                    ),
                                );
                            }
                        }
                        min = lo.map(|v| v.value);
                        max = hi.map(|v| v.value);
                    }
                    _ => self.err(pos(r), format!("{swhat}.range: expected `[min, max]`")),
                }
            }
            let expected_every = f.duration("expected_every", false, &mut self.diags);
            let stale_after = f.duration("stale_after", false, &mut self.diags);
            if let (Some(e), Some(s)) = (&expected_every, &stale_after) {
                if s.value <= e.value {
                    self.err(
                        s.pos,
                        format!(
                            "{swhat}.stale_after: must be longer than expected_every ({})",
                            humantime::format_duration(e.value)
                        ),
                    );
                }
            }
            for d in [&expected_every, &stale_after].into_iter().flatten() {
                if d.value.is_zero() {
                    self.err(d.pos, format!("{swhat}: durations must be greater than zero"));
                }
            }
            let deadband = f.f64("deadband", false, &mut self.diags);
            if let Some(d) = &deadband {
                if !(d.value >= 0.0 && d.value.is_finite()) {
                    self.err(
                        d.pos,
                        format!("{swhat}.deadband: must be a finite number, zero or above"),
                    );
                }
            }
            let sources = self.sensor_sources(&f, &swhat);
            let resolve_at = f.choice("resolve", &Resolve::ALL.map(|(n, _)| n), false, &mut self.diags);
            let resolve = resolve_at
                .as_ref()
                .and_then(|r| Resolve::ALL.iter().find(|(n, _)| *n == r.value).map(|(_, r)| *r));
            if let (Some(r), true) = (&resolve_at, sources.len() < 2) {
                self.err(
                    r.pos,
                    format!("{swhat}.resolve: a policy needs at least two `sources` to choose between"),
                );
            }
            let tolerance = f.f64("tolerance", false, &mut self.diags);
            let clear_tolerance = f.f64("clear_tolerance", false, &mut self.diags);
            if let Some(t) = &tolerance {
                if sources.len() < 2 {
                    self.err(
                        t.pos,
                        format!("{swhat}.tolerance: only a sensor with two or more `sources` can disagree"),
                    );
                }
                if !(t.value > 0.0 && t.value.is_finite()) {
                    self.err(t.pos, format!("{swhat}.tolerance: must be a finite number above zero"));
                }
            }
            if let Some(c) = &clear_tolerance {
                match &tolerance {
                    None => self.err(c.pos, format!("{swhat}.clear_tolerance: needs `tolerance`")),
                    Some(t) if !(c.value >= 0.0 && c.value <= t.value) => self.err(
                        c.pos,
                        format!("{swhat}.clear_tolerance: must be between 0 and tolerance ({})", t.value),
                    ),
                    Some(_) => {}
                }
            }
            let tolerance = tolerance.map(|t| t.value);
            out.push(SensorSpec {
                name,
                unit,
                min,
                max,
                expected_every: expected_every.map(|d| d.value),
                stale_after: stale_after.map(|d| d.value),
                deadband: deadband.map_or(0.0, |d| d.value),
                sources,
                resolve: resolve.unwrap_or(Resolve::Latest),
                tolerance,
                // Hysteresis: sources flapping around the tolerance do not
                // raise and clear the alert on every reading.
                clear_tolerance: clear_tolerance.map_or(tolerance.unwrap_or(0.0) * 0.8, |c| c.value),
            });
        }
        out
    }

    /// A sensor's `sources`: a mapping of source name to `{trust, kind}`
    /// (or a list of names), in priority order. Names are checked against the
    /// topology's sources once those are read ([`Self::link_sensor_sources`]).
    fn sensor_sources(&mut self, f: &Fields<'_>, swhat: &str) -> Vec<SensorSource> {
        let Some(node) = f.get("sources") else {
            return Vec::new();
        };
        let what = format!("{swhat}.sources");
        let mut out: Vec<SensorSource> = Vec::new();
        let mut add = |cx: &mut Self, name: Spanned<String>, trust: f64, measured: bool| {
            if out.iter().any(|s| s.name == name.value) {
                cx.err(name.pos, format!("{what}: source `{}` listed twice", name.value));
            }
            out.push(SensorSource {
                source: usize::MAX,
                name: name.value,
                pos: name.pos,
                trust,
                measured,
            });
        };
        match node {
            Node::Mapping(map) => {
                for (k, v) in map.iter() {
                    let name = Spanned::new(k.as_str().to_string(), Pos::of(k.span()));
                    let swhat = format!("{what}.{}", name.value);
                    let (mut trust, mut measured) = (1.0, true);
                    if let Some(sf) = Fields::new(v, &swhat, &["trust", "kind"], &mut self.diags) {
                        if let Some(t) = sf.f64("trust", false, &mut self.diags) {
                            if !(0.0..=1.0).contains(&t.value) {
                                self.err(t.pos, format!("{swhat}.trust: must be between 0 and 1"));
                            }
                            trust = t.value;
                        }
                        if let Some(k) = sf.choice("kind", &["measured", "commanded"], false, &mut self.diags) {
                            measured = k.value == "measured";
                        }
                    }
                    add(self, name, trust, measured);
                }
            }
            _ => {
                for name in f.str_list("sources", &mut self.diags).unwrap_or_default() {
                    add(self, name, 1.0, true);
                }
            }
        }
        out
    }

    /// Resolves the source names of multi-source sensors (declared before
    /// the sources are read), and checks that a simulator only simulates
    /// sensors that take readings from it.
    fn link_sensor_sources(&mut self, types: &mut [AssetType], sources: &[SourceSpec]) {
        for src in sources {
            let SourceKind::Simulator(sim) = &src.kind else {
                continue;
            };
            let ty = &types[sim.asset_type];
            for (i, sensor) in ty.sensors.iter().enumerate() {
                let simulated = sim.sensors.is_empty() || sim.sensors.contains(&i);
                if simulated && !sensor.sources.is_empty() && !sensor.sources.iter().any(|s| s.name == src.name) {
                    self.err(
                        src.pos,
                        format!(
                            "source `{}` simulates sensor `{}`, whose `sources` do not list it; add it there or leave the sensor out with `sensors:`",
                            src.name, sensor.name
                        ),
                    );
                }
            }
        }
        for ty in types.iter_mut() {
            for sensor in &mut ty.sensors {
                for s in &mut sensor.sources {
                    match sources.iter().position(|src| src.name == s.name) {
                        Some(i) => s.source = i,
                        None => {
                            let h = hint(&s.name, sources.iter().map(|src| src.name.as_str()));
                            self.err(
                                s.pos,
                                format!("sensor `{}`.sources: unknown source `{}`{h}", sensor.name, s.name),
                            );
                        }
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------ assets

    fn assets(&mut self, node: &Node, types: &[AssetType]) -> Vec<AssetEntry> {
        let Some(seq) = node.as_sequence() else {
            self.err(pos(node), "assets: expected a list of `{id: ..., type: ...}`");
            return Vec::new();
        };
        let mut out: Vec<AssetEntry> = Vec::new();
        let mut seen: HashMap<String, Pos> = HashMap::new();
        let mut pending = Vec::new();
        for item in seq.iter() {
            const FIELDS: &[&str] = &["id", "type", "relations"];
            let Some(f) = Fields::new(item, "asset", FIELDS, &mut self.diags) else {
                continue;
            };
            let id = f.str("id", true, &mut self.diags);
            let ty = f.str("type", true, &mut self.diags);
            let (Some(id), Some(ty)) = (id, ty) else { continue };
            if !is_name(&id.value.replace(['*', '?'], "x")) {
                self.err(
                    id.pos,
                    format!(
                        "asset id `{}`: use letters, digits and `-_.:/` (and `*`, `?` in patterns)",
                        id.value
                    ),
                );
            }
            if let Some(first) = seen.get(&id.value) {
                self.err(
                    id.pos,
                    format!(
                        "duplicate asset id `{}` (first declared at line {})",
                        id.value, first.line
                    ),
                );
            } else {
                seen.insert(id.value.clone(), id.pos);
            }
            let Some(t) = types.iter().position(|t| t.name == ty.value) else {
                let hint = hint(&ty.value, types.iter().map(|t| t.name.as_str()));
                self.err(
                    ty.pos,
                    format!("asset `{}`: unknown asset type `{}`{hint}", id.value, ty.value),
                );
                continue;
            };
            if let Some(rel) = f.get("relations") {
                pending.push((out.len(), rel));
            }
            out.push(AssetEntry {
                id: AssetPattern::parse(&id.value),
                pos: id.pos,
                asset_type: t,
                relations: Vec::new(),
            });
        }
        for (idx, rel) in pending {
            let (ty, id) = (out[idx].asset_type, out[idx].id.text().to_string());
            let what = format!("asset `{id}`.relations");
            let Some(map) = rel.as_mapping() else {
                self.err(pos(rel), format!("{what}: expected a mapping like `feeds: tank-7`"));
                continue;
            };
            for (k, v) in map.iter() {
                let rname = k.as_str();
                let Some(r) = types[ty].relations.iter().position(|r| r.name == rname) else {
                    let hint = hint(rname, types[ty].relations.iter().map(|r| r.name.as_str()));
                    self.err(
                        Pos::of(k.span()),
                        format!(
                            "{what}: asset type `{}` declares no relation `{rname}`{hint}",
                            types[ty].name
                        ),
                    );
                    continue;
                };
                let Some(target) = scalar_str(v, &format!("{what}.{rname}"), &mut self.diags) else {
                    continue;
                };
                let want = types[ty].relations[r].target_type;
                match resolve_asset(&out, &target.value) {
                    Some(e) if out[e].asset_type == want => out[idx].relations.push((r, target.value)),
                    Some(e) => self.err(
                        target.pos,
                        format!(
                            "{what}.{rname}: `{}` is a `{}`, but `{rname}` relates to a `{}`",
                            target.value, types[out[e].asset_type].name, types[want].name
                        ),
                    ),
                    None => self.err(target.pos, format!("{what}.{rname}: unknown asset `{}`", target.value)),
                }
            }
        }
        out
    }

    // ------------------------------------------------------------ windows

    fn type_selector(&mut self, f: &Fields<'_>, types: &[AssetType]) -> Vec<usize> {
        match f.str_list("asset_types", &mut self.diags) {
            None => (0..types.len()).collect(),
            Some(names) => names
                .into_iter()
                .filter_map(|n| match types.iter().position(|t| t.name == n.value) {
                    Some(t) => Some(t),
                    None => {
                        let hint = hint(&n.value, types.iter().map(|t| t.name.as_str()));
                        self.err(n.pos, format!("{}: unknown asset type `{}`{hint}", f.what(), n.value));
                        None
                    }
                })
                .collect(),
        }
    }

    fn windows(&mut self, node: &Node, types: &[AssetType]) -> Vec<WindowSpec> {
        let mut out: Vec<WindowSpec> = Vec::new();
        for (key, item) in self.named_entries(node, "windows") {
            const FIELDS: &[&str] = &["name", "type", "size", "slide", "sensors", "asset_types"];
            let Some(mut f) = Fields::new(item, "window", FIELDS, &mut self.diags) else {
                continue;
            };
            let Some(name) = key.or_else(|| f.str("name", true, &mut self.diags)) else {
                continue;
            };
            let what = format!("window `{}`", name.value);
            // Later errors about its fields name the item.
            f.rename(&what);
            if !is_identifier(&name.value) {
                self.err(
                    name.pos,
                    format!("{what}: name must be an identifier (letters, digits, `_`)"),
                );
            }
            if let Some(prev) = out.iter().find(|w| w.name == name.value) {
                self.err(
                    name.pos,
                    format!(
                        "duplicate window name `{}` (first declared at line {})",
                        name.value, prev.pos.line
                    ),
                );
            }
            let kind = f.choice("type", &["tumbling", "sliding"], false, &mut self.diags);
            let size = f.duration("size", true, &mut self.diags);
            let slide = f.duration("slide", false, &mut self.diags);
            let sliding = kind.as_ref().is_some_and(|k| k.value == "sliding");
            let (Some(size), true) = (size, kind.is_some() || f.get("type").is_none()) else {
                continue;
            };
            if size.value.is_zero() || size.value.subsec_nanos() % 1_000_000 != 0 {
                self.err(
                    size.pos,
                    format!("{what}.size: must be a positive whole number of milliseconds"),
                );
            }
            let slide = match (sliding, slide) {
                (false, None) => size.value,
                (false, Some(s)) => {
                    self.err(s.pos, format!("{what}.slide: only sliding windows have a slide"));
                    size.value
                }
                (true, None) => {
                    self.err(f.pos(), format!("{what}: a sliding window needs `slide`"));
                    size.value
                }
                (true, Some(s)) => {
                    if s.value.is_zero() || s.value > size.value || s.value.subsec_nanos() % 1_000_000 != 0 {
                        self.err(
                            s.pos,
                            format!("{what}.slide: must be whole milliseconds, above zero and at most the size"),
                        );
                    }
                    s.value
                }
            };
            let selected = self.type_selector(&f, types);
            let sensor_names = f.str_list("sensors", &mut self.diags);
            let mut coverage = Vec::new();
            for t in selected {
                let idx: Vec<usize> = match &sensor_names {
                    None => (0..types[t].sensors.len()).collect(),
                    Some(names) => names
                        .iter()
                        .filter_map(|n| match types[t].sensor_index(&n.value) {
                            Some(i) => Some(i),
                            None => {
                                let hint = hint(&n.value, types[t].sensors.iter().map(|s| s.name.as_str()));
                                self.err(
                                    n.pos,
                                    format!(
                                        "{what}: unknown sensor `{}` for asset type `{}`{hint}",
                                        n.value, types[t].name
                                    ),
                                );
                                None
                            }
                        })
                        .collect(),
                };
                coverage.push((t, idx));
            }
            out.push(WindowSpec {
                name: name.value,
                pos: name.pos,
                size: size.value,
                slide,
                coverage,
            });
        }
        out
    }

    // ------------------------------------------------------------ joins

    fn joins(&mut self, node: &Node, types: &[AssetType]) -> Vec<JoinSpec> {
        let mut out: Vec<JoinSpec> = Vec::new();
        for (key, item) in self.named_entries(node, "joins") {
            const FIELDS: &[&str] = &["name", "left", "right", "within", "asset_types"];
            let Some(mut f) = Fields::new(item, "join", FIELDS, &mut self.diags) else {
                continue;
            };
            let Some(name) = key.or_else(|| f.str("name", true, &mut self.diags)) else {
                continue;
            };
            let what = format!("join `{}`", name.value);
            f.rename(&what);
            if !is_identifier(&name.value) {
                self.err(
                    name.pos,
                    format!("{what}: name must be an identifier (letters, digits, `_`)"),
                );
            }
            if let Some(prev) = out.iter().find(|j| j.name == name.value) {
                self.err(
                    name.pos,
                    format!(
                        "duplicate join name `{}` (first declared at line {})",
                        name.value, prev.pos.line
                    ),
                );
            }
            let within = f.duration("within", true, &mut self.diags);
            let left = f.str("left", true, &mut self.diags);
            let right = f.str("right", true, &mut self.diags);
            let explicit = f.get("asset_types").is_some();
            let selected = self.type_selector(&f, types);
            let (Some(within), Some(left), Some(right)) = (within, left, right) else {
                continue;
            };
            if within.value.is_zero() {
                self.err(within.pos, format!("{what}.within: must be greater than zero"));
            }
            let mut coverage = Vec::new();
            let mut problems = Vec::new();
            for t in selected {
                let ty = &types[t];
                let l = ty.sensor_index(&left.value);
                let r = match right.value.split_once('.') {
                    None => ty.sensor_index(&right.value).map(JoinSide::Sensor).ok_or_else(|| {
                        let h = hint(&right.value, ty.sensors.iter().map(|s| s.name.as_str()));
                        format!("unknown sensor `{}` for asset type `{}`{h}", right.value, ty.name)
                    }),
                    Some((rel, sensor)) => match ty.relations.iter().position(|r| r.name == rel) {
                        None => Err(format!(
                            "asset type `{}` has no relation `{rel}`{}",
                            ty.name,
                            hint(rel, ty.relations.iter().map(|r| r.name.as_str()))
                        )),
                        Some(ri) => {
                            let target = &types[ty.relations[ri].target_type];
                            target
                                .sensor_index(sensor)
                                .map(|s| JoinSide::Related {
                                    relation: ri,
                                    sensor: s,
                                })
                                .ok_or_else(|| {
                                    let h = hint(sensor, target.sensors.iter().map(|s| s.name.as_str()));
                                    format!("unknown sensor `{sensor}` of asset type `{}`{h}", target.name)
                                })
                        }
                    },
                };
                match (l, r) {
                    (Some(l), Ok(r)) if r != JoinSide::Sensor(l) => coverage.push((t, l, r)),
                    (Some(_), Ok(_)) => problems.push((right.pos, format!("{what}: a sensor cannot join itself"))),
                    (None, _) if explicit => {
                        let h = hint(&left.value, ty.sensors.iter().map(|s| s.name.as_str()));
                        problems.push((
                            left.pos,
                            format!(
                                "{what}.left: unknown sensor `{}` for asset type `{}`{h}",
                                left.value, ty.name
                            ),
                        ));
                    }
                    (Some(_), Err(e)) => problems.push((right.pos, format!("{what}.right: {e}"))),
                    (None, _) => {}
                }
            }
            if coverage.is_empty() && problems.is_empty() {
                problems.push((
                    left.pos,
                    format!("{what}.left: no asset type has a sensor `{}`", left.value),
                ));
            }
            for (p, m) in problems {
                self.err(p, m);
            }
            out.push(JoinSpec {
                name: name.value,
                pos: name.pos,
                within: within.value,
                coverage,
            });
        }
        out
    }

    // ------------------------------------------------------------ rules

    fn rules(&mut self, node: &Node, types: &[AssetType], windows: &[WindowSpec], joins: &[JoinSpec]) -> Vec<RuleSpec> {
        let mut out: Vec<RuleSpec> = Vec::new();
        for (key, item) in self.named_entries(node, "rules") {
            const FIELDS: &[&str] = &[
                "name",
                "when",
                "for",
                "clear_when",
                "severity",
                "message",
                "asset_types",
                "command",
                "local",
            ];
            let Some(mut f) = Fields::new(item, "rule", FIELDS, &mut self.diags) else {
                continue;
            };
            let Some(name) = key.or_else(|| f.str("name", true, &mut self.diags)) else {
                continue;
            };
            let what = format!("rule `{}`", name.value);
            // Later errors about its fields name the item.
            f.rename(&what);
            if !is_name(&name.value) {
                self.err(
                    name.pos,
                    format!("{what}: use letters, digits, `-`, `_` or `.` in rule names"),
                );
            }
            if name.value == "offline" || name.value.starts_with("stale:") || name.value.starts_with("discrepancy:") {
                self.err(
                    name.pos,
                    format!("{what}: `offline`, `stale:*` and `discrepancy:*` name the built-in alerts; choose another name"),
                );
            }
            if let Some(prev) = out.iter().find(|r| r.name == name.value) {
                self.err(
                    name.pos,
                    format!(
                        "duplicate rule name `{}` (first declared at line {})",
                        name.value, prev.pos.line
                    ),
                );
            }
            let severity = f
                .choice("severity", &Severity::NAMES, false, &mut self.diags)
                .and_then(|s| Severity::parse(&s.value))
                .unwrap_or(Severity::Warning);
            let message = f.str("message", false, &mut self.diags).map(|m| m.value);
            let selected = self.type_selector(&f, types);
            let hold = f
                .duration("for", false, &mut self.diags)
                .map_or(Duration::ZERO, |d| d.value);
            let clear_when = f.str("clear_when", false, &mut self.diags);
            let command = f.get("command").and_then(|c| self.command(c, &what));
            let local = f.bool("local", &mut self.diags).is_some_and(|b| b.value);
            let Some(when) = f.str("when", true, &mut self.diags) else {
                continue;
            };
            let cx = ExprScope { types, windows, joins };
            let compiled = self.compile_rule_expr(&what, "when", &when, &selected, &cx);
            let clear_compiled = match &clear_when {
                Some(c) => self.compile_rule_expr(&what, "clear_when", c, &selected, &cx),
                None => Vec::new(),
            };
            out.push(RuleSpec {
                name: name.value,
                pos: name.pos,
                when: when.value,
                hold,
                clear_when: clear_when.map(|c| c.value),
                severity,
                message,
                compiled,
                clear_compiled,
                command,
                local,
            });
        }
        out
    }

    /// A rule's `command: { name, value, on_clear }`.
    fn command(&mut self, node: &Node, what: &str) -> Option<CommandSpec> {
        let d = &mut self.diags;
        let f = Fields::new(node, &format!("{what}.command"), &["name", "value", "on_clear"], d)?;
        let name = f.str("name", true, d)?;
        if !is_name(&name.value) {
            d.error(
                name.pos,
                format!("{what}.command.name: use letters, digits, `-`, `_` or `.`"),
            );
        }
        let value = f.f64("value", true, d)?;
        let on_clear = f.f64("on_clear", false, d).map(|v| v.value);
        Some(CommandSpec {
            name: name.value,
            value: value.value,
            on_clear,
        })
    }

    /// Compiles a rule's expression (`field`) for each selected asset type,
    /// reporting each problem once at its character.
    fn compile_rule_expr(
        &mut self,
        what: &str,
        field: &str,
        expr: &Spanned<String>,
        selected: &[usize],
        scope: &ExprScope<'_>,
    ) -> Vec<(usize, Cond<Slot>)> {
        let start = self.expression_start(expr.pos, &expr.value);
        let mut compiled = Vec::new();
        let mut reported = std::collections::HashSet::new();
        for &t in selected {
            let resolver = TypeResolver {
                types: scope.types,
                asset_type: t,
                windows: scope.windows,
                joins: scope.joins,
            };
            match compile_condition(&expr.value, &resolver) {
                Ok(c) => compiled.push((t, c)),
                Err(errors) => {
                    for e in errors {
                        // A syntax error is the same for every type: report it once.
                        if !reported.insert((e.offset, e.message.clone())) {
                            continue;
                        }
                        let (p, suffix) = match start {
                            Some(s) => (s.shifted(e.offset), String::new()),
                            None => (expr.pos, format!(" (at character {} of the expression)", e.offset + 1)),
                        };
                        self.err(p, format!("{what}.{field}: {}{suffix}", e.message));
                    }
                }
            }
        }
        compiled
    }

    /// The position of the first character of a single-line scalar's content
    /// (after an opening quote), or `None` when the scalar spans lines.
    fn expression_start(&self, p: Pos, text: &str) -> Option<Pos> {
        let line = self.lines.get(p.line.checked_sub(1)?)?;
        let rest: String = line.chars().skip(p.col.checked_sub(1)?).collect();
        let (quote, body) = match rest.chars().next() {
            Some('"' | '\'') => (1, rest[1..].to_string()),
            _ => (0, rest),
        };
        body.starts_with(text).then(|| p.shifted(quote))
    }

    // ------------------------------------------------------------ sources

    fn sources(&mut self, node: &Node, types: &[AssetType], assets: &[AssetEntry]) -> Vec<SourceSpec> {
        let mut out: Vec<SourceSpec> = Vec::new();
        for (key, item) in self.named_entries(node, "sources") {
            const FIELDS: &[&str] = &[
                "name",
                "type",
                "path",
                "pace",
                "speed",
                "decode",
                "asset_type",
                "prefix",
                "count",
                "digits",
                "every",
                "seed",
                "jitter",
                "spike_prob",
                "gap_prob",
                "drift_frac",
                "sensors",
                "host",
                "port",
                "client_id",
                "topics",
                "qos",
                "clean_session",
                "keep_alive",
                "topic_fields",
                "username",
                "password",
                "password_env",
                "password_file",
                "tls",
                "ack_interval",
                "brokers",
                "group_id",
                "properties",
                "properties_env",
            ];
            let Some(mut f) = Fields::new(item, "source", FIELDS, &mut self.diags) else {
                continue;
            };
            let Some(name) = key.or_else(|| f.str("name", true, &mut self.diags)) else {
                continue;
            };
            let what = format!("source `{}`", name.value);
            // Later errors about its fields name the item.
            f.rename(&what);
            if !is_name(&name.value) {
                self.err(
                    name.pos,
                    format!("{what}: use letters, digits, `-`, `_` or `.` in source names"),
                );
            }
            if let Some(prev) = out.iter().find(|s| s.name == name.value) {
                self.err(
                    name.pos,
                    format!(
                        "duplicate source name `{}` (first declared at line {})",
                        name.value, prev.pos.line
                    ),
                );
            }
            let Some(kind) = f.choice("type", &["file", "simulator", "mqtt", "kafka"], true, &mut self.diags) else {
                continue;
            };
            let allowed: &[&str] = match kind.value.as_str() {
                "file" => &["name", "type", "path", "pace", "speed", "decode"],
                "kafka" => &[
                    "name",
                    "type",
                    "brokers",
                    "topics",
                    "group_id",
                    "properties",
                    "properties_env",
                    "decode",
                ],
                "mqtt" => &[
                    "name",
                    "type",
                    "host",
                    "port",
                    "client_id",
                    "topics",
                    "qos",
                    "clean_session",
                    "keep_alive",
                    "topic_fields",
                    "username",
                    "password",
                    "password_env",
                    "password_file",
                    "tls",
                    "ack_interval",
                    "decode",
                ],
                _ => &[
                    "name",
                    "type",
                    "asset_type",
                    "prefix",
                    "count",
                    "digits",
                    "every",
                    "seed",
                    "jitter",
                    "spike_prob",
                    "gap_prob",
                    "drift_frac",
                    "sensors",
                ],
            };
            for k in FIELDS {
                if !allowed.contains(k) && f.get(k).is_some() {
                    let p = f.get(k).map(pos).unwrap_or_default();
                    self.err(
                        p,
                        format!("{what}: field `{k}` does not apply to a `{}` source", kind.value),
                    );
                }
            }
            let (source_kind, decode) = if kind.value == "file" {
                let pace = match f.choice("pace", &["fast", "recorded"], false, &mut self.diags) {
                    Some(p) if p.value == "recorded" => {
                        let speed = f.f64("speed", false, &mut self.diags).map_or(1.0, |s| s.value);
                        if speed <= 0.0 {
                            self.err(f.pos(), format!("{what}.speed: must be above zero"));
                        }
                        Pace::Recorded { speed }
                    }
                    _ => Pace::Fast,
                };
                let path = f.str("path", false, &mut self.diags).map(|p| PathBuf::from(p.value));
                let decode = match f.require("decode", &mut self.diags) {
                    Some(d) => self.decode(d, &what, types, None),
                    None => None,
                };
                (SourceKind::File(FileSourceSpec { path, pace }), decode)
            } else if kind.value == "kafka" {
                let Some(decode_node) = f.require("decode", &mut self.diags) else {
                    continue;
                };
                let key_is_asset = !matches!(decode_node, Node::Mapping(m) if m.get_node("asset").is_some());
                let Some(spec) = self.kafka(&f, &what, key_is_asset) else {
                    continue;
                };
                let key = key_is_asset.then(TopicTemplate::asset_only);
                let decode = self.decode(decode_node, &what, types, key.as_ref());
                (SourceKind::Kafka(spec), decode)
            } else if kind.value == "mqtt" {
                let Some(spec) = self.mqtt(&f, &what) else { continue };
                let decode = match f.require("decode", &mut self.diags) {
                    Some(d) => self.decode(d, &what, types, spec.topic_fields.as_ref()),
                    None => None,
                };
                (SourceKind::Mqtt(spec), decode)
            } else {
                match self.simulator(&f, &what, types, assets) {
                    Some(sim) => (SourceKind::Simulator(sim), None),
                    None => continue,
                }
            };
            out.push(SourceSpec {
                name: name.value,
                pos: name.pos,
                kind: source_kind,
                decode,
            });
        }
        if out.is_empty() && self.diags.is_empty() {
            self.err(pos(node), "sources: declare at least one source");
        }
        out
    }

    fn mqtt(&mut self, f: &Fields<'_>, what: &str) -> Option<MqttSpec> {
        let conn = self.mqtt_conn(f, what);
        let d = &mut self.diags;
        let topics = f.str_list("topics", d).unwrap_or_default();
        if topics.is_empty() {
            d.error(
                f.pos(),
                format!("{what}: list the topic filters to subscribe to in `topics`"),
            );
        }
        for t in &topics {
            let bad = t.value.is_empty()
                || t.value.split('/').enumerate().any(|(i, l)| {
                    (l.contains('#') && (l != "#" || i + 1 != t.value.split('/').count()))
                        || (l.contains('+') && l != "+")
                });
            if bad {
                d.error(
                    t.pos,
                    format!(
                        "{what}.topics: `{}` is not a topic filter (`+` is one whole level, `#` only the last)",
                        t.value
                    ),
                );
            }
        }
        let qos = mqtt_qos(f, what, d);
        let clean_session = f.bool("clean_session", d).is_some_and(|b| b.value);
        let ack_interval = match f.duration("ack_interval", false, d) {
            Some(a) if a.value.is_zero() => {
                d.error(a.pos, format!("{what}.ack_interval: must be greater than zero"));
                DEFAULT_ACK_INTERVAL
            }
            Some(a) => a.value,
            None => DEFAULT_ACK_INTERVAL,
        };
        let topic_fields = match f.str("topic_fields", false, d) {
            Some(t) => match TopicTemplate::parse(&t.value) {
                Ok(tt) => Some(tt),
                Err(e) => {
                    d.error(t.pos, format!("{what}.topic_fields: {e}"));
                    None
                }
            },
            None => None,
        };
        Some(MqttSpec {
            conn,
            topics: topics.into_iter().map(|t| t.value).collect(),
            qos,
            ack_interval,
            clean_session,
            topic_fields,
        })
    }

    fn kafka(&mut self, f: &Fields<'_>, what: &str, key_is_asset: bool) -> Option<KafkaSpec> {
        const RESERVED: &[&str] = &[
            "bootstrap.servers",
            "group.id",
            "enable.auto.commit",
            "enable.auto.offset.store",
        ];
        let conn = self.kafka_conn(f, what, RESERVED, "offsets live in its snapshots");
        let d = &mut self.diags;
        let topics = f.str_list("topics", d).unwrap_or_default();
        if topics.is_empty() {
            d.error(f.pos(), format!("{what}: list the topics to consume in `topics`"));
        }
        let group_id = f.str("group_id", false, d).map(|g| g.value).unwrap_or_default();
        Some(KafkaSpec {
            conn: conn?,
            topics: topics.into_iter().map(|t| t.value).collect(),
            group_id,
            key_is_asset,
        })
    }

    fn kafka_sink(&mut self, f: &Fields<'_>, what: &str) -> Option<KafkaSinkSpec> {
        const RESERVED: &[&str] = &["bootstrap.servers", "enable.idempotence", "acks", "transactional.id"];
        let conn = self.kafka_conn(f, what, RESERVED, "its idempotent producer keeps each asset's order");
        let d = &mut self.diags;
        let topic = match f.str("topic", true, d) {
            Some(t) => match OutputTopic::parse(&t.value) {
                Ok(topic) if topic.parts.contains(&TopicPart::Asset) => {
                    d.error(
                        t.pos,
                        format!("{what}.topic: a topic per asset does not scale; the asset id is the record key (use `{{kind}}`, `{{asset_type}}` or `{{name}}`)"),
                    );
                    None
                }
                Ok(topic) => {
                    let literal: String = topic
                        .parts
                        .iter()
                        .filter_map(|p| match *p {
                            TopicPart::Text(a, b) => Some(&topic.text[a..b]),
                            _ => None,
                        })
                        .collect();
                    if let Some(c) = literal.chars().find(|c| !kafka_topic_char(*c)) {
                        d.error(
                            t.pos,
                            format!("{what}.topic: `{c}` cannot be in a Kafka topic (letters, digits, `.`, `_`, `-`)"),
                        );
                        None
                    } else if topic.text.len() > 200 {
                        d.error(t.pos, format!("{what}.topic: longer than Kafka allows"));
                        None
                    } else {
                        Some(topic)
                    }
                }
                Err(e) => {
                    d.error(t.pos, format!("{what}.topic: {e}"));
                    None
                }
            },
            None => None,
        };
        let queue = sink_queue(f, what, d);
        let buffer = f.get("buffer").and_then(|b| {
            let b = Fields::new(b, &format!("{what}.buffer"), &["max_bytes"], d)?;
            let max = b.bytes("max_bytes", true, d)?;
            if max.value < 1 << 16 {
                d.error(max.pos, format!("{what}.buffer.max_bytes: at least 64KiB"));
            }
            Some(max.value)
        });
        Some(KafkaSinkSpec {
            conn: conn?,
            topic: topic?,
            queue,
            buffer,
        })
    }

    /// `brokers`, `properties` and `properties_env` of a Kafka source or
    /// sink; `reserved` settings are twinstream's (`why`).
    fn kafka_conn(&mut self, f: &Fields<'_>, what: &str, reserved: &[&str], why: &str) -> Option<KafkaConn> {
        let d = &mut self.diags;
        let brokers = f.str("brokers", true, d);
        let pairs = |field: &str, d: &mut Diagnostics| -> Vec<(Spanned<String>, Spanned<String>)> {
            let Some(node) = f.get(field) else { return Vec::new() };
            let Node::Mapping(map) = node else {
                d.error(
                    pos(node),
                    format!("{what}.{field}: expected a mapping of librdkafka settings"),
                );
                return Vec::new();
            };
            map.iter()
                .filter_map(|(k, v)| {
                    let value = scalar_str(v, &format!("{what}.{field}.{}", k.as_str()), d)?;
                    Some((spanned_scalar(k), value))
                })
                .collect()
        };
        let properties = pairs("properties", d);
        let properties_env = pairs("properties_env", d);
        for (k, _) in &properties {
            let lower = k.value.to_lowercase();
            if lower.contains("password") || lower.contains("secret") || lower.ends_with(".key.pem") {
                d.error(
                    k.pos,
                    format!("{what}.properties.{}: never write a secret in the topology; name an environment variable under `properties_env`", k.value),
                );
            }
        }
        let named = properties
            .iter()
            .map(|p| ("properties", p))
            .chain(properties_env.iter().map(|p| ("properties_env", p)));
        for (field, (k, _)) in named {
            if reserved.contains(&k.value.as_str()) {
                d.error(k.pos, format!("{what}.{field}.{}: set by twinstream ({why})", k.value));
            }
        }
        Some(KafkaConn {
            brokers: brokers?.value,
            properties: properties.into_iter().map(|(k, v)| (k.value, v.value)).collect(),
            properties_env: properties_env.into_iter().map(|(k, v)| (k.value, v.value)).collect(),
        })
    }

    /// The broker address, client id, keep-alive, credentials and TLS of an
    /// MQTT source or sink.
    fn mqtt_conn(&mut self, f: &Fields<'_>, what: &str) -> MqttConn {
        let d = &mut self.diags;
        let host = f
            .str("host", false, d)
            .map_or_else(|| "127.0.0.1".to_string(), |h| h.value);
        let port = match f.u64("port", false, d) {
            Some(p) if p.value == 0 || p.value > 65535 => {
                d.error(p.pos, format!("{what}.port: must be between 1 and 65535"));
                1883
            }
            Some(p) => p.value as u16,
            None => 1883,
        };
        let client_id = f.str("client_id", false, d).map(|c| c.value);
        let keep_alive = f
            .duration("keep_alive", false, d)
            .map_or(Duration::from_secs(30), |k| k.value);
        let username = f.str("username", false, d).map(|u| u.value);
        if let Some(p) = f.get("password") {
            d.error(
                pos(p),
                format!("{what}.password: never write a password in the topology; use `password_env` (an environment variable) or `password_file`"),
            );
        }
        let password = match (f.str("password_env", false, d), f.str("password_file", false, d)) {
            (Some(e), None) => Some(Secret::Env(e.value)),
            (None, Some(p)) => Some(Secret::File(PathBuf::from(p.value))),
            (Some(e), Some(_)) => {
                d.error(
                    e.pos,
                    format!("{what}: give `password_env` or `password_file`, not both"),
                );
                None
            }
            (None, None) => None,
        };
        if password.is_some() && username.is_none() {
            d.error(f.pos(), format!("{what}: a password needs a `username`"));
        }
        let mut tls = None;
        if let Some(t) = f.get("tls") {
            const TLS: &[&str] = &["ca_file", "cert_file", "key_file"];
            if let Some(tf) = Fields::new(t, &format!("{what}.tls"), TLS, d) {
                let ca = tf.str("ca_file", true, d);
                let cert = tf.str("cert_file", false, d);
                let key = tf.str("key_file", false, d);
                let client = match (cert, key) {
                    (Some(c), Some(k)) => Some((PathBuf::from(c.value), PathBuf::from(k.value))),
                    (None, None) => None,
                    (Some(c), None) => {
                        d.error(c.pos, format!("{what}.tls: a client certificate needs its `key_file`"));
                        None
                    }
                    (None, Some(k)) => {
                        d.error(k.pos, format!("{what}.tls: a client key needs its `cert_file`"));
                        None
                    }
                };
                tls = ca.map(|ca| MqttTls {
                    ca_file: PathBuf::from(ca.value),
                    client,
                });
            }
        }
        MqttConn {
            host,
            port,
            client_id: client_id.unwrap_or_default(),
            keep_alive,
            username,
            password,
            tls,
        }
    }

    fn mqtt_sink(&mut self, f: &Fields<'_>, what: &str) -> Option<MqttSinkSpec> {
        let conn = self.mqtt_conn(f, what);
        let d = &mut self.diags;
        let topic = match f.str("topic", true, d) {
            Some(t) => match OutputTopic::parse(&t.value) {
                Ok(topic) => Some(topic),
                Err(e) => {
                    d.error(t.pos, format!("{what}.topic: {e}"));
                    None
                }
            },
            None => None,
        };
        let qos = mqtt_qos(f, what, d);
        let retain = f.bool("retain", d).is_some_and(|b| b.value);
        let queue = sink_queue(f, what, d);
        let when_full = match f.choice("when_full", &["block", "drop_oldest"], false, d) {
            Some(w) if w.value == "drop_oldest" => {
                if qos != 0 {
                    d.error(
                        w.pos,
                        format!("{what}.when_full: `drop_oldest` loses messages; only a `qos: 0` sink may drop"),
                    );
                }
                WhenFull::DropOldest
            }
            _ => WhenFull::Block,
        };
        Some(MqttSinkSpec {
            conn,
            topic: topic?,
            qos,
            retain,
            queue,
            when_full,
        })
    }

    fn simulator(
        &mut self,
        f: &Fields<'_>,
        what: &str,
        types: &[AssetType],
        assets: &[AssetEntry],
    ) -> Option<SimulatorSpec> {
        let d = &mut self.diags;
        let ty = f.str("asset_type", true, d)?;
        let Some(t) = types.iter().position(|x| x.name == ty.value) else {
            let hint = hint(&ty.value, types.iter().map(|t| t.name.as_str()));
            d.error(
                ty.pos,
                format!("{what}.asset_type: unknown asset type `{}`{hint}", ty.value),
            );
            return None;
        };
        let prefix = f
            .str("prefix", false, d)
            .map_or_else(|| format!("{}-", types[t].name), |p| p.value);
        let count = f.u64("count", false, d).map_or(10, |c| c.value);
        if count == 0 || count > u64::from(u32::MAX) {
            d.error(f.pos(), format!("{what}.count: must be between 1 and {}", u32::MAX));
        }
        let digits = f.u64("digits", false, d).map_or(5, |c| c.value as usize);
        let every = f.duration("every", false, d).map(|e| e.value);
        if every.is_none() && types[t].sensors.iter().any(|s| s.expected_every.is_none()) {
            d.error(
                f.pos(),
                format!(
                    "{what}: set `every`, or `expected_every` on every sensor of `{}`",
                    types[t].name
                ),
            );
        }
        let prob = |field: &str, default: f64, d: &mut Diagnostics| match f.f64(field, false, d) {
            Some(p) if !(0.0..=1.0).contains(&p.value) => {
                d.error(p.pos, format!("{what}.{field}: must be between 0 and 1"));
                default
            }
            Some(p) => p.value,
            None => default,
        };
        let spec = SimulatorSpec {
            asset_type: t,
            prefix,
            count: count.clamp(1, u64::from(u32::MAX)) as u32,
            digits,
            every,
            seed: f.u64("seed", false, d).map_or(1, |s| s.value),
            jitter: f.duration("jitter", false, d).map_or(Duration::ZERO, |j| j.value),
            spike_prob: prob("spike_prob", 0.002, d),
            gap_prob: prob("gap_prob", 0.0005, d),
            drift_frac: prob("drift_frac", 0.1, d),
            sensors: Vec::new(),
        };
        let mut spec = spec;
        if let Some(names) = f.str_list("sensors", d) {
            for n in names {
                match types[t].sensor_index(&n.value) {
                    Some(i) => spec.sensors.push(i),
                    None => {
                        let h = hint(&n.value, types[t].sensors.iter().map(|s| s.name.as_str()));
                        d.error(
                            n.pos,
                            format!("{what}.sensors: unknown sensor `{}` of `{}`{h}", n.value, types[t].name),
                        );
                    }
                }
            }
        }
        // Every simulated asset must be declared, with the simulated type.
        for probe in [0, spec.count.saturating_sub(1)] {
            let id = format!("{}{:0width$}", spec.prefix, probe, width = spec.digits);
            match resolve_asset(assets, &id) {
                Some(e) if assets[e].asset_type == t => {}
                Some(e) => d.error(
                    f.pos(),
                    format!(
                        "{what}: simulated asset `{id}` is declared as a `{}`, not a `{}`",
                        types[assets[e].asset_type].name, types[t].name
                    ),
                ),
                None => d.error(
                    f.pos(),
                    format!("{what}: simulated asset `{id}` matches no entry under `assets`"),
                ),
            }
        }
        Some(spec)
    }

    /// A decode mapping; fields an MQTT topic template gives (`{asset}`,
    /// `{sensor}`) need no path in the payload.
    fn decode(
        &mut self,
        node: &Node,
        what: &str,
        types: &[AssetType],
        topic: Option<&TopicTemplate>,
    ) -> Option<DecodeSpec> {
        const FIELDS: &[&str] = &[
            "format",
            "contract",
            "contract_field",
            "asset",
            "sensor",
            "value",
            "values",
            "ts",
            "ts_format",
            "convert",
        ];
        let dwhat = format!("{what}.decode");
        let f = Fields::new(node, &dwhat, FIELDS, &mut self.diags)?;
        let d = &mut self.diags;
        f.choice("format", &["json"], false, d);
        let path = |field: &str, required: bool, d: &mut Diagnostics| -> Option<FieldPath> {
            let s = f.str(field, required, d)?;
            match FieldPath::parse(&s.value) {
                Ok(p) => Some(p),
                Err(e) => {
                    d.error(s.pos, format!("{dwhat}.{field}: {e}"));
                    None
                }
            }
        };
        let from_topic = |field: &str| {
            topic
                .filter(|t| t.has(field))
                .map(|_| FieldPath(vec![TOPIC_KEY.to_string(), field.to_string()]))
        };
        let asset = from_topic("asset").or_else(|| path("asset", true, d));
        let ts = path("ts", true, d);
        let sensor = from_topic("sensor").or_else(|| path("sensor", false, d));
        let value = path("value", false, d);
        let ts_format = match f.choice("ts_format", &["epoch_ms", "epoch_s", "epoch_us", "rfc3339"], false, d) {
            Some(s) => match s.value.as_str() {
                "epoch_s" => TsFormat::EpochSeconds,
                "epoch_us" => TsFormat::EpochMicros,
                "rfc3339" => TsFormat::Rfc3339,
                _ => TsFormat::EpochMillis,
            },
            None => TsFormat::EpochMillis,
        };
        let known_sensor = |name: &str| types.iter().any(|t| t.sensor_index(name).is_some());
        let all_sensors: Vec<&str> = types
            .iter()
            .flat_map(|t| t.sensors.iter().map(|s| s.name.as_str()))
            .collect();
        let mut values = Vec::new();
        if let Some(v) = f.get("values") {
            match v.as_mapping() {
                Some(map) => {
                    for (k, pnode) in map.iter() {
                        let sname = k.as_str();
                        if !known_sensor(sname) {
                            let hint = hint(sname, all_sensors.iter().copied());
                            d.error(
                                Pos::of(k.span()),
                                format!("{dwhat}.values: unknown sensor `{sname}`{hint}"),
                            );
                        }
                        if let Some(p) = scalar_str(pnode, &format!("{dwhat}.values.{sname}"), d) {
                            match FieldPath::parse(&p.value) {
                                Ok(fp) => values.push((sname.to_string(), fp)),
                                Err(e) => d.error(p.pos, format!("{dwhat}.values.{sname}: {e}")),
                            }
                        }
                    }
                }
                None => d.error(
                    pos(v),
                    format!("{dwhat}.values: expected a mapping of sensor name to field path"),
                ),
            }
        }
        match (sensor.is_some(), value.is_some(), !values.is_empty() || f.get("values").is_some()) {
            (true, true, false) | (false, false, true) => {}
            (_, _, true) => d.error(
                f.pos(),
                format!("{dwhat}: use either `sensor` + `value` (one reading per record) or `values` (one field per sensor), not both"),
            ),
            _ => d.error(
                f.pos(),
                format!("{dwhat}: name the reading: `sensor` + `value` (one reading per record) or `values` (one field per sensor)"),
            ),
        }
        let mut convert = Vec::new();
        if let Some(c) = f.get("convert") {
            match c.as_mapping() {
                Some(map) => {
                    for (k, cnode) in map.iter() {
                        let sname = k.as_str();
                        if !known_sensor(sname) {
                            let hint = hint(sname, all_sensors.iter().copied());
                            d.error(
                                Pos::of(k.span()),
                                format!("{dwhat}.convert: unknown sensor `{sname}`{hint}"),
                            );
                        }
                        let cw = format!("{dwhat}.convert.{sname}");
                        if let Some(cf) = Fields::new(cnode, &cw, &["scale", "offset"], d) {
                            convert.push(Convert {
                                sensor: sname.to_string(),
                                scale: cf.f64("scale", false, d).map_or(1.0, |v| v.value),
                                offset: cf.f64("offset", false, d).map_or(0.0, |v| v.value),
                            });
                        }
                    }
                }
                None => d.error(
                    pos(c),
                    format!("{dwhat}.convert: expected a mapping like `temperature: {{scale: 0.1}}`"),
                ),
            }
        }
        let contract = f.str("contract", false, d).map(|c| c.value);
        let contract_field = path("contract_field", false, d);
        if contract_field.is_some() && contract.is_none() {
            if let Some(s) = f.str("contract_field", false, d) {
                d.error(
                    s.pos,
                    format!("{dwhat}.contract_field: give `contract` too: the contract records must state"),
                );
            }
        }
        Some(DecodeSpec {
            contract,
            contract_field,
            asset: asset?,
            sensor,
            value,
            values,
            ts: ts?,
            ts_format,
            convert,
        })
    }

    // ------------------------------------------------------------ sinks

    fn sinks(&mut self, node: &Node) -> Vec<SinkSpec> {
        let mut out: Vec<SinkSpec> = Vec::new();
        for (key, item) in self.named_entries(node, "sinks") {
            const FIELDS: &[&str] = &[
                "name",
                "type",
                "path",
                "outputs",
                "host",
                "port",
                "client_id",
                "keep_alive",
                "username",
                "password",
                "password_env",
                "password_file",
                "tls",
                "topic",
                "qos",
                "retain",
                "queue",
                "when_full",
                "brokers",
                "properties",
                "properties_env",
                "buffer",
            ];
            let Some(mut f) = Fields::new(item, "sink", FIELDS, &mut self.diags) else {
                continue;
            };
            let Some(name) = key.or_else(|| f.str("name", true, &mut self.diags)) else {
                continue;
            };
            let what = format!("sink `{}`", name.value);
            // Later errors about its fields name the item.
            f.rename(&what);
            if let Some(prev) = out.iter().find(|s| s.name == name.value) {
                self.err(
                    name.pos,
                    format!(
                        "duplicate sink name `{}` (first declared at line {})",
                        name.value, prev.pos.line
                    ),
                );
            }
            let kind = f.choice("type", &["stdout", "file", "mqtt", "kafka"], true, &mut self.diags);
            if let Some(k) = &kind {
                let allowed: &[&str] = match k.value.as_str() {
                    "file" => &["name", "type", "outputs", "path"],
                    "stdout" => &["name", "type", "outputs"],
                    "kafka" => &[
                        "name",
                        "type",
                        "outputs",
                        "brokers",
                        "topic",
                        "queue",
                        "properties",
                        "properties_env",
                        "buffer",
                    ],
                    _ => &FIELDS[..FIELDS.len() - 4],
                };
                for field in FIELDS {
                    if !allowed.contains(field) && field != &"path" {
                        if let Some(n) = f.get(field) {
                            self.err(
                                pos(n),
                                format!("{what}: field `{field}` does not apply to a `{}` sink", k.value),
                            );
                        }
                    }
                }
            }
            let path = f.str("path", false, &mut self.diags);
            let kind = match (kind.as_ref().map(|k| k.value.as_str()), path) {
                (Some("file"), Some(p)) => Some(SinkKind::File {
                    path: PathBuf::from(p.value),
                }),
                (Some("file"), None) => {
                    self.err(f.pos(), format!("{what}: a file sink needs `path`"));
                    None
                }
                (Some(_), Some(p)) => {
                    self.err(p.pos, format!("{what}.path: only file sinks have a path"));
                    None
                }
                (Some("mqtt"), None) => self.mqtt_sink(&f, &what).map(|m| SinkKind::Mqtt(Box::new(m))),
                (Some("kafka"), None) => self.kafka_sink(&f, &what).map(|k| SinkKind::Kafka(Box::new(k))),
                (Some(_), None) => Some(SinkKind::Stdout),
                (None, _) => None,
            };
            let names: Vec<&str> = OutputKind::ALL.iter().map(|(n, _)| *n).collect();
            let mut outputs = Vec::new();
            match f.str_list("outputs", &mut self.diags) {
                Some(list) => {
                    for o in list {
                        match OutputKind::ALL.iter().find(|(n, _)| *n == o.value) {
                            Some((_, k)) if outputs.contains(k) => {
                                self.err(o.pos, format!("{what}.outputs: `{}` is listed twice", o.value))
                            }
                            Some((_, k)) => outputs.push(*k),
                            None => self.err(
                                o.pos,
                                format!(
                                    "{what}.outputs: unknown output `{}`; expected {}",
                                    o.value,
                                    one_of(&names)
                                ),
                            ),
                        }
                    }
                }
                None => self.err(
                    f.pos(),
                    format!("{what}: missing required field `outputs` (any of {})", one_of(&names)),
                ),
            }
            let mut kind = kind;
            if let Some(SinkKind::Kafka(k)) = &mut kind {
                // An uplink keeps what the cluster has not taken on disk.
                if outputs.contains(&OutputKind::Events) && k.buffer.is_none() {
                    k.buffer = Some(DEFAULT_EVENTS_BUFFER);
                }
            }
            if let Some(kind) = kind {
                out.push(SinkSpec {
                    name: name.value,
                    pos: name.pos,
                    kind,
                    outputs,
                });
            }
        }
        out
    }
}

/// `qos`: 0 or 1 (the default).
/// A broker sink's `queue`: messages held in memory before it holds back
/// the twins.
/// `node.http.<name>_env` or `<name>_file`: where an API token is read
/// from. The token itself is never written in the topology.
fn token(f: &Fields<'_>, name: &str, d: &mut Diagnostics) -> Option<Secret> {
    if let Some(p) = f.get(name) {
        d.error(
            pos(p),
            format!("node.http.{name}: never write a token in the topology; use `{name}_env` (an environment variable) or `{name}_file`"),
        );
    }
    match (
        f.str(&format!("{name}_env"), false, d),
        f.str(&format!("{name}_file"), false, d),
    ) {
        (Some(e), None) => Some(Secret::Env(e.value)),
        (None, Some(p)) => Some(Secret::File(PathBuf::from(p.value))),
        (Some(e), Some(_)) => {
            d.error(
                e.pos,
                format!("node.http: give `{name}_env` or `{name}_file`, not both"),
            );
            None
        }
        (None, None) => None,
    }
}

fn sink_queue(f: &Fields<'_>, what: &str, d: &mut Diagnostics) -> usize {
    match f.u64("queue", false, d) {
        Some(q) if q.value == 0 => {
            d.error(q.pos, format!("{what}.queue: at least 1 message"));
            1
        }
        Some(q) => q.value as usize,
        None => DEFAULT_SINK_QUEUE,
    }
}

fn mqtt_qos(f: &Fields<'_>, what: &str, d: &mut Diagnostics) -> u8 {
    match f.u64("qos", false, d) {
        Some(q) if q.value > 1 => {
            d.error(q.pos, format!("{what}.qos: 0 or 1"));
            1
        }
        Some(q) => q.value as u8,
        None => 1,
    }
}

/// Index of the asset entry that `id` resolves to: an exact id first, then
/// the first matching pattern in declaration order.
pub fn resolve_asset(entries: &[AssetEntry], id: &str) -> Option<usize> {
    entries
        .iter()
        .position(|e| matches!(&e.id, AssetPattern::Exact(x) if x == id))
        .or_else(|| {
            entries
                .iter()
                .position(|e| matches!(e.id, AssetPattern::Glob(_)) && e.id.matches(id))
        })
}

fn hint<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match suggest(name, candidates) {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

/// What rule expressions may name.
struct ExprScope<'a> {
    types: &'a [AssetType],
    windows: &'a [WindowSpec],
    joins: &'a [JoinSpec],
}

/// Resolves rule-expression names for one asset type.
struct TypeResolver<'a> {
    types: &'a [AssetType],
    asset_type: usize,
    windows: &'a [WindowSpec],
    joins: &'a [JoinSpec],
}

impl Resolver for TypeResolver<'_> {
    type Slot = Slot;

    fn resolve(&self, path: &[&str]) -> Result<Slot, Unresolved> {
        let ty = &self.types[self.asset_type];
        let first = path[0];
        if let Some(s) = ty.sensor_index(first) {
            return match path {
                [_] | [_, "value"] => Ok(Slot::Latest { sensor: s as u16 }),
                [_, "stale"] if ty.sensors[s].stale_after.is_some() => Ok(Slot::Stale { sensor: s as u16 }),
                [_, "stale"] => Err(Unresolved::at(
                    1,
                    format!("sensor `{first}` declares no `stale_after`, so it is never stale"),
                )),
                _ => Err(Unresolved::at(
                    1,
                    format!(
                        "`{}`: a sensor has `value` and `stale`; window aggregates are written `<window>.{first}.avg`",
                        path.join(".")
                    ),
                )),
            };
        }
        if let Some(ri) = ty.relations.iter().position(|r| r.name == first) {
            let target = &self.types[ty.relations[ri].target_type];
            return match path {
                [_, sensor] | [_, sensor, "value"] => match target.sensor_index(sensor) {
                    Some(s) => Ok(Slot::Related {
                        relation: ri as u16,
                        sensor: s as u16,
                    }),
                    None => {
                        let h = hint(sensor, target.sensors.iter().map(|s| s.name.as_str()));
                        Err(Unresolved::at(
                            1,
                            format!("unknown sensor `{sensor}` of related asset type `{}`{h}", target.name),
                        ))
                    }
                },
                _ => Err(format!(
                    "`{}`: a related asset's value is written `{first}.<sensor>`",
                    path.join(".")
                )
                .into()),
            };
        }
        if let Some(j) = self.joins.iter().position(|j| j.name == first) {
            let Some((left, right)) = self.joins[j].sides_for(self.asset_type) else {
                return Err(format!("join `{first}` does not apply to asset type `{}`", ty.name).into());
            };
            let right_name = match right {
                JoinSide::Sensor(s) => ty.sensors[s].name.clone(),
                JoinSide::Related { relation, sensor } => format!(
                    "{}.{}",
                    ty.relations[relation].name, self.types[ty.relations[relation].target_type].sensors[sensor].name
                ),
            };
            let side = match &path[1..] {
                [s] if *s == ty.sensors[left].name => Some(0),
                [s] if *s == right_name => Some(1),
                [rel, s] if format!("{rel}.{s}") == right_name => Some(1),
                _ => None,
            };
            return match side {
                Some(side) => Ok(Slot::Join { join: j as u16, side }),
                None => Err(Unresolved::at(
                    1,
                    format!(
                        "join `{first}` pairs `{}` with `{right_name}`: write `{first}.{}` or `{first}.{right_name}`",
                        ty.sensors[left].name, ty.sensors[left].name
                    ),
                )),
            };
        }
        if let Some(w) = self.windows.iter().position(|w| w.name == first) {
            let win = &self.windows[w];
            let Some(covered) = win.sensors_for(self.asset_type) else {
                return Err(format!("window `{first}` does not apply to asset type `{}`", ty.name).into());
            };
            let aggs: Vec<&str> = Agg::ALL.iter().map(|(n, _)| *n).collect();
            return match path {
                [_, sensor, agg] => {
                    let Some(s) = ty.sensor_index(sensor) else {
                        let h = hint(sensor, ty.sensors.iter().map(|s| s.name.as_str()));
                        return Err(Unresolved::at(
                            1,
                            format!("unknown sensor `{sensor}` for asset type `{}`{h}", ty.name),
                        ));
                    };
                    if !covered.contains(&s) {
                        return Err(Unresolved::at(
                            1,
                            format!("window `{first}` does not cover sensor `{sensor}`"),
                        ));
                    }
                    match Agg::ALL.iter().find(|(n, _)| n == agg) {
                        Some((_, a)) => Ok(Slot::Window {
                            window: w as u16,
                            sensor: s as u16,
                            agg: *a,
                        }),
                        None => Err(Unresolved::at(
                            2,
                            format!("unknown aggregate `{agg}`; expected {}", one_of(&aggs)),
                        )),
                    }
                }
                _ => Err(format!(
                    "`{}`: write a window aggregate as `{first}.<sensor>.<aggregate>`, e.g. `{first}.{}.avg`",
                    path.join("."),
                    ty.sensors.first().map_or("temperature", |s| s.name.as_str())
                )
                .into()),
            };
        }
        let candidates = ty
            .sensors
            .iter()
            .map(|s| s.name.as_str())
            .chain(self.windows.iter().map(|w| w.name.as_str()))
            .chain(ty.relations.iter().map(|r| r.name.as_str()))
            .chain(self.joins.iter().map(|j| j.name.as_str()));
        let h = hint(first, candidates);
        Err(format!(
            "unknown name `{first}`: not a sensor, relation, window or join of asset type `{}`{h}",
            ty.name
        )
        .into())
    }
}
