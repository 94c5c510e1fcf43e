//! `node:`: the node's name, state directory, snapshots, HTTP API (with its
//! tokens), cluster membership, role, time tolerance and what a damaged twin
//! record starts from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use marked_yaml::Node;

use super::Cx;
use crate::topology::diag::Diagnostics;
use crate::topology::spec::*;
use crate::topology::yaml::{parse_duration, pos, scalar_str, Fields, Spanned};

impl<'t> Cx<'t> {
    pub(super) fn node(&mut self, node: Option<&Node>) -> Option<NodeSpec> {
        let mut spec = NodeSpec {
            name: "node-1".into(),
            state_dir: PathBuf::from("state"),
            snapshot: SnapshotSpec {
                interval: Duration::from_secs(1),
                max_events: 1_000_000,
                sync: true,
                min_pause: MinPause::Auto,
            },
            http_listen: None,
            http_write_token: None,
            http_read_token: None,
            http_priority: ApiPriority::default(),
            workers: 0,
            decoders: 0,
            max_inflight_chunks: 8,
            passivate_after: Some(DEFAULT_PASSIVATE_AFTER),
            cluster: None,
            role: NodeRole::Standalone,
            time_tolerance: TimeTolerance::default(),
            damaged_twin: DamagedTwin::Empty,
            slo: Vec::new(),
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
            "time_tolerance",
            "damaged_twin",
            "slo",
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
            const SNAP: &[&str] = &["interval", "max_events", "sync", "min_pause"];
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
                if let Some(p) = s.str("min_pause", false, d) {
                    if p.value == "auto" {
                        spec.snapshot.min_pause = MinPause::Auto;
                    } else {
                        match parse_duration(&p.value) {
                            Ok(pause) => spec.snapshot.min_pause = MinPause::Fixed(pause),
                            Err(msg) => d.error(
                                p.pos,
                                format!(
                                    "node.snapshot.min_pause: `auto` or {}",
                                    msg.replacen("expected ", "", 1)
                                ),
                            ),
                        }
                    }
                }
            }
        }
        if let Some(t) = f.get("time_tolerance") {
            const TOLERANCE: &[&str] = &["future", "past"];
            if let Some(t) = Fields::new(t, "node.time_tolerance", TOLERANCE, d) {
                for (field, slot) in [
                    ("future", &mut spec.time_tolerance.future),
                    ("past", &mut spec.time_tolerance.past),
                ] {
                    let Some(s) = t.str(field, false, d) else { continue };
                    if s.value == "off" {
                        *slot = None;
                        continue;
                    }
                    match parse_duration(&s.value) {
                        Ok(v) if v < Duration::from_secs(1) => d.error(
                            s.pos,
                            format!("node.time_tolerance.{field}: at least 1s (or `off`): clocks are never that close"),
                        ),
                        Ok(v) => *slot = Some(v),
                        Err(_) => d.error(
                            s.pos,
                            format!(
                                "node.time_tolerance.{field}: expected a duration like `1h` or `7d`, or `off`, found `{}`",
                                s.value
                            ),
                        ),
                    }
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
        // A cluster node has every twin's last checkpoint in its changelog.
        if spec.role == NodeRole::Cluster {
            spec.damaged_twin = DamagedTwin::Changelog;
        }
        if let Some(c) = f.choice("damaged_twin", &DamagedTwin::NAMES, false, d) {
            spec.damaged_twin = match c.value.as_str() {
                "stop" => DamagedTwin::Stop,
                "changelog" => DamagedTwin::Changelog,
                _ => DamagedTwin::Empty,
            };
            if spec.damaged_twin == DamagedTwin::Changelog && spec.role != NodeRole::Cluster {
                d.error(
                    c.pos,
                    "node.damaged_twin: `changelog` needs a cluster node (`node.cluster`); a standalone or edge node has no changelog: use `empty` or `stop`",
                );
            }
        }
        if let Some(slo) = f.get("slo") {
            spec.slo = latency_budgets(slo, d);
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
                "priority",
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
                if let Some(c) = h.choice("priority", &ApiPriority::NAMES, false, d) {
                    spec.http_priority = ApiPriority::from_name(&c.value).unwrap_or_default();
                }
            }
        }
        Some(spec)
    }
}

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

/// `node.slo`: per hop (`apply: 10ms`, a p99 budget) or per hop and
/// quantile (`end_to_end: { p50: 500ms, p99: 2s }`).
fn latency_budgets(slo: &Node, d: &mut Diagnostics) -> Vec<LatencyBudget> {
    use crate::topology::{Hop, Quantile};
    let mut out = Vec::new();
    let Some(f) = Fields::new(slo, "node.slo", &Hop::NAMES, d) else {
        return out;
    };
    for hop in Hop::ALL {
        let Some(node) = f.get(hop.name()) else { continue };
        let what = format!("node.slo.{}", hop.name());
        let mut budget =
            |what: &str, quantile: Quantile, text: &Spanned<String>, d: &mut Diagnostics| match parse_duration(
                &text.value,
            ) {
                Ok(b) if b.is_zero() => d.error(text.pos, format!("{what}: a budget must be greater than zero")),
                Ok(budget) => out.push(LatencyBudget { hop, quantile, budget }),
                Err(msg) => d.error(text.pos, format!("{what}: {msg}")),
            };
        if node.as_mapping().is_some() {
            let Some(q) = Fields::new(node, &what, &Quantile::NAMES, d) else {
                continue;
            };
            for quantile in Quantile::ALL {
                if let Some(text) = q.str(quantile.name(), false, d) {
                    budget(&format!("{what}.{}", quantile.name()), quantile, &text, d);
                }
            }
        } else if let Some(text) = scalar_str(node, &what, d) {
            budget(&what, Quantile::P99, &text, d);
        }
    }
    out
}
