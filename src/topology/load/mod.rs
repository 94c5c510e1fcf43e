//! Topology YAML -> validated [`Topology`], reporting every problem at once.
//!
//! One file per YAML section, each an `impl Cx` block that validates it:
//!
//! * `node.rs` - `node:` (name, state, snapshots, HTTP, cluster, role).
//! * `asset_types.rs` - `asset_types:`: sensors and their sources, relations,
//!   watermark, commands.
//! * `model.rs` - an asset type's `model:` (presets, matrices, `anomaly:`)
//!   and the rule names that read it; `model_math.rs` - the checks of its
//!   matrices and its version.
//! * `assets.rs` - `assets:` (ids, patterns, relations) and [`resolve_asset`].
//! * `windows.rs`, `joins.rs` - `windows:`, `joins:`.
//! * `rules.rs` - `rules:`, their commands, and compiling their expressions
//!   against each asset type.
//! * `sources.rs` - `sources:`: files, the simulator, decode mappings.
//! * `sinks.rs` - `sinks:`.
//! * `connections.rs` - MQTT and Kafka settings of broker sources and sinks.
//! * `names.rs` - the names of items: what each section accepts, duplicates,
//!   and reading the items of a list-or-mapping section.
//!
//! This file holds the context (`Cx`), the whole-topology assembly, the
//! checks that span sections (an edge's uplink, a cluster's source, distinct
//! MQTT client ids) and the helpers the sections share.

mod asset_types;
mod assets;
mod connections;
mod derived;
mod history;
mod joins;
mod model;
mod model_math;
mod names;
mod node;
mod rules;
mod sinks;
mod sources;
mod windows;

use std::path::{Path, PathBuf};

use marked_yaml::{LoadError as YamlError, Node};

use super::diag::{suggest, Diagnostics, Pos};
use super::spec::*;
use super::yaml::Fields;

pub use assets::resolve_asset;

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
        rejected_models: Vec::new(),
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
        other => (Pos::START, format!("invalid YAML: {other}")),
    }
}

struct Cx<'t> {
    diags: Diagnostics,
    lines: Vec<&'t str>,
    /// The asset types (indices) whose `model:` was rejected: rules do not
    /// report their model names again as "no model".
    rejected_models: Vec<usize>,
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
                self.edge_uplink(&sinks, top.get("node").map_or(Pos::START, crate::topology::yaml::pos));
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
    fn edge_uplink(&mut self, sinks: &[SinkSpec], node: Pos) {
        let uplink = sinks
            .iter()
            .any(|s| matches!(s.kind, SinkKind::Kafka(_)) && s.outputs.contains(&OutputKind::Events));
        if !uplink {
            let pos = sinks.first().map_or(node, |s| s.pos);
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
}

fn hint<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match suggest(name, candidates) {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}
