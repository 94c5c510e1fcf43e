//! Topology: the YAML schema, its validation (every error at once, with
//! `file:line:col`), and the one-screen summary `twinstream check` prints.
//!
//! * [`load`] reads a file into a validated [`Topology`] or [`Diagnostics`].
//! * [`expr`] is the rule expression language, compiled once at load.
//! * [`spec`] holds the typed, validated topology.

pub mod diag;
pub mod expr;
pub mod load;
pub mod spec;
pub mod yaml;

use std::fmt::Write as _;

pub use diag::{Diagnostic, Diagnostics, Pos};
pub use load::{load, parse, resolve_asset, LoadError};
pub use spec::*;

impl Topology {
    /// The one-screen summary printed by `twinstream check` for a valid file.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let n = &self.node;
        let _ = writeln!(s, "{}: OK", self.file.display());
        let _ = writeln!(
            s,
            "node      {}{}  state_dir={}  snapshot every {} or {} events{}, min pause {}",
            n.name,
            match n.role {
                NodeRole::Standalone => String::new(),
                role => format!(" ({})", role.name()),
            },
            n.state_dir.display(),
            humantime::format_duration(n.snapshot.interval),
            n.snapshot.max_events,
            if n.snapshot.sync { " (fsync)" } else { "" },
            n.snapshot.min_pause.describe(),
        );
        if let Some(http) = n.http_listen {
            let auth = |t: &Option<Secret>, none: &str| {
                t.as_ref()
                    .map_or(none.to_string(), |t| format!("token from {}", t.describe()))
            };
            let _ = writeln!(
                s,
                "http      {http}  writes: {}  reads: {}  priority: {}",
                auth(&n.http_write_token, "disabled (no token)"),
                auth(&n.http_read_token, "open"),
                n.http_priority.name(),
            );
        }
        let _ = writeln!(s, "types     {}", self.asset_types.len());
        for t in &self.asset_types {
            let sensors: Vec<String> = t
                .sensors
                .iter()
                .map(|x| {
                    if x.unit.is_empty() {
                        x.name.clone()
                    } else {
                        format!("{} [{}]", x.name, x.unit)
                    }
                })
                .collect();
            let idle = t.idle_timeout.map_or(String::new(), |d| {
                format!(", idle timeout {}", humantime::format_duration(d))
            });
            let _ = writeln!(
                s,
                "  {:<12} sensors: {}; out-of-orderness {}{idle}",
                t.name,
                sensors.join(", "),
                humantime::format_duration(t.out_of_orderness)
            );
            for x in &t.sensors {
                let mut notes = Vec::new();
                if let Some(d) = x.stale_after {
                    notes.push(format!("stale after {}", humantime::format_duration(d)));
                }
                if x.deadband > 0.0 {
                    notes.push(format!("deadband {}", x.deadband));
                }
                if let Some(n) = x.noise {
                    notes.push(format!("noise {n}"));
                }
                match &x.derive {
                    Some(Derive::Expr(_)) => notes.push("derived: an expression".into()),
                    Some(Derive::Integral { sensor, per }) => notes.push(format!(
                        "derived: the integral of {} per {}",
                        t.sensors[*sensor].name,
                        humantime::format_duration(*per)
                    )),
                    Some(Derive::Rate { sensor }) => {
                        notes.push(format!("derived: the rate of {} per second", t.sensors[*sensor].name))
                    }
                    None => {}
                }
                if !x.sources.is_empty() {
                    let names: Vec<&str> = x.sources.iter().map(|s| s.name.as_str()).collect();
                    let policy = Resolve::ALL
                        .iter()
                        .find(|(_, r)| *r == x.resolve)
                        .map_or("?", |(n, _)| n);
                    notes.push(format!("sources {} ({policy})", names.join(" > ")));
                }
                if let Some(t) = x.tolerance {
                    notes.push(format!("discrepancy above {t}"));
                }
                if !notes.is_empty() {
                    let _ = writeln!(s, "  {:<12} {}: {}", "", x.name, notes.join(", "));
                }
            }
            for r in &t.relations {
                let _ = writeln!(
                    s,
                    "  {:<12} relation {} -> {}",
                    "", r.name, self.asset_types[r.target_type].name
                );
            }
            if let Some(m) = &t.model {
                let _ = writeln!(s, "  {:<12} {}", "", model_summary(t, m));
            }
            if let (Some(h), Some((every, f))) = (&t.history, t.history_footprint()) {
                let _ = writeln!(s, "  {:<12} {}", "", history_summary(h, every, f));
            }
        }
        let exact = self
            .assets
            .iter()
            .filter(|a| matches!(a.id, AssetPattern::Exact(_)))
            .count();
        let _ = writeln!(
            s,
            "assets    {} entries ({} ids, {} patterns)",
            self.assets.len(),
            exact,
            self.assets.len() - exact
        );
        let _ = writeln!(s, "sources   {}", self.sources.len());
        for src in &self.sources {
            let detail = match &src.kind {
                SourceKind::File(f) => format!(
                    "file {}{}",
                    f.path
                        .as_ref()
                        .map_or("(path given by `replay`)".into(), |p| p.display().to_string()),
                    match f.pace {
                        Pace::Fast => String::new(),
                        Pace::Recorded { speed } => format!(", recorded pace x{speed}"),
                    }
                ),
                SourceKind::Simulator(sim) => {
                    let model = match &sim.model {
                        Some(m) if m.faults.is_empty() => ", readings from the model".to_string(),
                        Some(m) => {
                            let kinds: Vec<&str> = m.faults.iter().map(|f| f.name()).collect();
                            format!(
                                ", readings from the model with {} faults every ~{} for {}",
                                kinds.join("/"),
                                humantime::format_duration(m.fault_every),
                                humantime::format_duration(m.fault_for)
                            )
                        }
                        None => String::new(),
                    };
                    format!(
                        "simulator {} x {}{:0w$}..{model}",
                        sim.count,
                        sim.prefix,
                        0,
                        w = sim.digits
                    )
                }
                SourceKind::Kafka(k) => format!(
                    "kafka {} {}{}",
                    k.conn.brokers,
                    k.topics.join(" "),
                    if k.key_is_asset { ", key = asset" } else { "" }
                ),
                SourceKind::Mqtt(m) => format!(
                    "mqtt {}:{} {} qos {}{}",
                    m.conn.host,
                    m.conn.port,
                    m.topics.join(" "),
                    m.qos,
                    if m.clean_session { "" } else { ", persistent session" }
                ),
            };
            let contract = src
                .decode
                .as_ref()
                .and_then(|d| d.contract.as_ref())
                .map_or(String::new(), |c| format!(" contract {c}"));
            let _ = writeln!(s, "  {:<12} {detail}{contract}", src.name);
        }
        let _ = writeln!(s, "windows   {}", self.windows.len());
        for w in &self.windows {
            let kind = if w.is_tumbling() {
                format!("tumbling {}", humantime::format_duration(w.size))
            } else {
                format!(
                    "sliding {} every {}",
                    humantime::format_duration(w.size),
                    humantime::format_duration(w.slide)
                )
            };
            let cover: Vec<String> = w
                .coverage
                .iter()
                .map(|(t, sensors)| format!("{}({})", self.asset_types[*t].name, sensors.len()))
                .collect();
            let _ = writeln!(s, "  {:<12} {kind} over {}", w.name, cover.join(", "));
        }
        if !self.joins.is_empty() {
            let _ = writeln!(s, "joins     {}", self.joins.len());
            for j in &self.joins {
                let sides: Vec<String> = j
                    .coverage
                    .iter()
                    .map(|(t, l, r)| {
                        let ty = &self.asset_types[*t];
                        let right = match r {
                            JoinSide::Sensor(x) => ty.sensors[*x].name.clone(),
                            JoinSide::Related { relation, sensor } => format!(
                                "{}.{}",
                                ty.relations[*relation].name,
                                self.asset_types[ty.relations[*relation].target_type].sensors[*sensor].name
                            ),
                        };
                        format!("{}: {} with {right}", ty.name, ty.sensors[*l].name)
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "  {:<12} within {}; {}",
                    j.name,
                    humantime::format_duration(j.within),
                    sides.join("; ")
                );
            }
        }
        let _ = writeln!(s, "rules     {}", self.rules.len());
        for r in &self.rules {
            let sev = format!("{:?}", r.severity).to_lowercase();
            let hold = if r.hold.is_zero() {
                String::new()
            } else {
                format!(" for {}", humantime::format_duration(r.hold))
            };
            let clear = r
                .clear_when
                .as_ref()
                .map_or(String::new(), |c| format!("; clears when {c}"));
            let command = r.command.as_ref().map_or(String::new(), |c| match c.on_clear {
                Some(off) => format!("; sends {}={} ({off} on clear)", c.name, c.value),
                None => format!("; sends {}={}", c.name, c.value),
            });
            let local = if r.local { " (local)" } else { "" };
            let _ = writeln!(s, "  {:<12} [{sev}]{local} {}{hold}{clear}{command}", r.name, r.when);
        }
        if !self.rules_elsewhere.is_empty() {
            let _ = writeln!(
                s,
                "  {:<12} {} (evaluated {})",
                "elsewhere",
                self.rules_elsewhere.join(", "),
                if n.role == NodeRole::Edge {
                    "by the cluster: not marked `local`"
                } else {
                    "at the edge: marked `local`"
                }
            );
        }
        let _ = writeln!(s, "sinks     {}", self.sinks.len());
        for k in &self.sinks {
            let kind = match &k.kind {
                SinkKind::Stdout => "stdout".to_string(),
                SinkKind::File { path } => format!("file {}", path.display()),
                SinkKind::Mqtt(m) => format!(
                    "mqtt {}:{} {} qos {}{}",
                    m.conn.host,
                    m.conn.port,
                    m.topic.text,
                    m.qos,
                    if m.retain { ", retained" } else { "" }
                ),
                SinkKind::Kafka(k) => format!(
                    "kafka {} {} (keyed by asset){}",
                    k.conn.brokers,
                    k.topic.text,
                    k.buffer.map_or(String::new(), |b| format!(
                        ", buffers up to {} in the store",
                        bytesize::ByteSize::b(b).display().iec()
                    ))
                ),
            };
            let outs: Vec<&str> = k.outputs.iter().map(|o| o.name()).collect();
            let _ = writeln!(s, "  {:<12} {kind} <- {}", k.name, outs.join(", "));
        }
        if !self.sinks.iter().any(|k| k.outputs.contains(&OutputKind::DeadLetters)) {
            let _ = writeln!(
                s,
                "dead letters go to {} (no sink takes `dead_letters`)",
                DEFAULT_DEAD_LETTERS
            );
        }
        s
    }
}

/// `history of temperature, flow: raw 1h, 1m for 7d, 1h for 1year; events
/// 30d; ~60 KB per sensor-day (a reading every 1s), ~25 MB per sensor
/// retained`.
fn history_summary(h: &HistorySpec, every: std::time::Duration, f: Footprint) -> String {
    let d = span_text;
    let mut tiers: Vec<String> = h.raw.map(|k| format!("raw {}", d(k))).into_iter().collect();
    tiers.extend(h.tiers.iter().map(|x| format!("{} for {}", d(x.every), d(x.keep))));
    let names: Vec<&str> = h.series.iter().map(|x| x.name.as_str()).collect();
    let events = h.events.map_or("no events".to_string(), |k| format!("events {}", d(k)));
    let size = |b: f64| bytesize::ByteSize::b(b as u64).to_string();
    format!(
        "history of {}: {}; {events}; writes ~{} per sensor-day (a reading every {}), holds ~{} per sensor",
        if names.is_empty() {
            "no sensors".to_string()
        } else {
            names.join(", ")
        },
        if tiers.is_empty() {
            "no tiers".to_string()
        } else {
            tiers.join(", ")
        },
        size(f.per_day),
        d(every),
        size(f.retained),
    )
}

/// `model level_rate [level, rate] continuous; observes level (R 0.0025);
/// anomaly ...; version 0123456789abcdef`.
fn model_summary(t: &AssetType, m: &ModelSpec) -> String {
    let form = m.preset.map_or("matrices", Preset::name);
    let transition = match m.transition {
        ModelTransition::Continuous => "continuous",
        ModelTransition::Discrete => "discrete",
    };
    let observed: Vec<String> = m
        .observe
        .iter()
        .map(|o| format!("{} (R {})", t.sensors[o.sensor].name, significant(o.r)))
        .collect();
    let mut s = format!(
        "model {form} [{}] {transition}; observes {}",
        m.states.join(", "),
        observed.join(", ")
    );
    if !m.inputs.is_empty() {
        let inputs: Vec<&str> = m.inputs.iter().map(|&c| t.commands[c].name.as_str()).collect();
        let _ = write!(s, "; inputs {}", inputs.join(", "));
    }
    if let Some(a) = &m.anomaly {
        let hold = if a.hold.is_zero() {
            String::new()
        } else {
            format!(" for {}", humantime::format_duration(a.hold))
        };
        let _ = write!(
            s,
            "; anomaly [{}] false alarm {} over {} readings{hold}",
            a.severity.name(),
            a.false_alarm,
            a.window
        );
    }
    let _ = write!(s, "; version {:016x}", m.version);
    s
}

/// `v` to 7 significant digits, printed shortest (`0.0025`, not the
/// `0.0025000000000000005` that squaring a noise of 0.05 gives).
fn significant(v: f64) -> f64 {
    format!("{v:.6e}").parse().unwrap_or(v)
}

/// Replaces `{state_dir}` in a path of the topology (a sink's file, the
/// simulator's truth) with the state directory in use.
pub fn expand_path(path: &std::path::Path, state_dir: &std::path::Path) -> std::path::PathBuf {
    let text = path.to_string_lossy();
    if text.contains("{state_dir}") {
        std::path::PathBuf::from(text.replace("{state_dir}", &state_dir.to_string_lossy()))
    } else {
        path.to_path_buf()
    }
}
