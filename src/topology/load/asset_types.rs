//! `asset_types:`: each type's sensors (with their sources, linked to the
//! topology's sources once those are read), relations, watermark and
//! commands; its `model:` is read by `model.rs`.

use std::time::Duration;

use marked_yaml::Node;

use super::derived::Pending;
use super::model::Owner;
use super::names::{is_identifier, is_name, Naming};
use super::{hint, Cx};
use crate::topology::diag::Diagnostics;
use crate::topology::spec::*;
use crate::topology::yaml::{self, pos, scalar_str, spanned_scalar, Fields, Spanned};

/// Asset type names: printable (a mapping's keys are never repeated).
const ASSET_TYPE: Naming = Naming {
    valid: is_name,
    bad: |_, name| format!("asset type name `{name}`: use letters, digits, `-`, `_` or `.`"),
    ..Naming::ANY
};

/// Sensor names appear in rule expressions: identifiers.
const SENSOR: Naming = Naming {
    valid: is_identifier,
    bad: |what, name| format!("{what}: sensor name `{name}` must be an identifier (letters, digits, `_`)"),
    ..Naming::ANY
};

/// Relation names appear in rule expressions: identifiers.
const RELATION: Naming = Naming {
    valid: is_identifier,
    bad: |what, name| format!("{what}: relation name `{name}` must be an identifier (letters, digits, `_`)"),
    ..Naming::ANY
};

/// Command names of an asset type: identifiers.
const COMMAND: Naming = Naming {
    valid: is_identifier,
    bad: |what, name| format!("{what}: command name `{name}` must be an identifier (letters, digits, `_`)"),
    ..Naming::ANY
};

/// A sensor's sources: each listed once.
const SENSOR_SOURCE: Naming = Naming {
    duplicate: |what, name, _| format!("{what}: source `{name}` listed twice"),
    ..Naming::ANY
};

impl<'t> Cx<'t> {
    pub(super) fn asset_types(&mut self, node: &Node) -> Vec<AssetType> {
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
            let key = spanned_scalar(key);
            self.check_name(&key, "asset_types", &ASSET_TYPE, None);
            let Spanned { value: name, pos: kpos } = key;
            let what = format!("asset type `{name}`");
            const FIELDS: &[&str] = &["sensors", "relations", "watermark", "commands", "model", "history"];
            let Some(f) = Fields::new(def, &what, FIELDS, &mut self.diags) else {
                continue;
            };
            let (mut sensors, mut derived) = (Vec::new(), Vec::new());
            if let Some(sn) = f.require("sensors", &mut self.diags) {
                (sensors, derived) = self.sensors(sn, &what);
            }
            let commands = match f.get("commands") {
                Some(c) => self.commands(c, &what, &sensors),
                None => Vec::new(),
            };
            let model = f.get("model").and_then(|m| {
                let owner = Owner {
                    what: &what,
                    sensors: &sensors,
                    commands: &commands,
                };
                let model = self.model(m, &owner);
                if model.is_none() {
                    self.rejected_models.push(out.len());
                }
                model
            });
            let history = f
                .get("history")
                .and_then(|h| self.history(h, &what, &sensors, model.as_ref()));
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
            let mut ty = AssetType {
                name,
                pos: kpos,
                sensors,
                relations: Vec::new(),
                out_of_orderness: ooo,
                idle_timeout,
                commands,
                model,
                history,
            };
            let rejected = self.rejected_models.contains(&out.len());
            self.link_derived(&mut ty, derived, rejected);
            out.push(ty);
        }
        for (idx, rel) in pending_relations {
            let what = format!("asset type `{}`.relations", out[idx].name);
            let Some(map) = rel.as_mapping() else {
                self.err(pos(rel), format!("{what}: expected a mapping like `feeds: tank`"));
                continue;
            };
            for (k, v) in map.iter() {
                let rname = spanned_scalar(k);
                self.check_name(&rname, &what, &RELATION, None);
                let rname = rname.value;
                let Some(target) = scalar_str(v, &format!("{what}.{rname}"), &mut self.diags) else {
                    continue;
                };
                // An index into the types loaded (a declared type with
                // errors of its own is not among them: already reported).
                match out.iter().position(|t| t.name == target.value) {
                    Some(t) => out[idx].relations.push(RelationSpec {
                        name: rname,
                        target_type: t,
                    }),
                    None if names.contains(&target.value) => {}
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
            let key = spanned_scalar(key);
            self.check_name(&key, what, &COMMAND, None);
            let Spanned { value: name, pos: kpos } = key;
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

    /// The sensors, and the derivations of the derived ones (by index), to
    /// resolve once the type's model is read.
    fn sensors(&mut self, node: &Node, what: &str) -> (Vec<SensorSpec>, Vec<(usize, Pending)>) {
        let Some(map) = node.as_mapping() else {
            self.err(
                pos(node),
                format!("{what}.sensors: expected a mapping of sensor name to definition, like `temperature: {{unit: degC}}`"),
            );
            return (Vec::new(), Vec::new());
        };
        if map.is_empty() {
            self.err(pos(node), format!("{what}.sensors: declare at least one sensor"));
        }
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for (key, def) in map.iter() {
            let name = spanned_scalar(key);
            self.check_name(&name, what, &SENSOR, None);
            let name = name.value;
            let swhat = format!("sensor `{name}`");
            const FIELDS: &[&str] = &[
                "unit",
                "range",
                "expected_every",
                "stale_after",
                "deadband",
                "noise",
                "sources",
                "resolve",
                "tolerance",
                "clear_tolerance",
                "expr",
                "integral",
                "rate",
                "per",
            ];
            let Some(f) = Fields::new(def, &swhat, FIELDS, &mut self.diags) else {
                continue;
            };
            if let Some(p) = self.derivation(&f, &swhat) {
                pending.push((out.len(), p));
            }
            let unit = f
                .str("unit", true, &mut self.diags)
                .map(|u| u.value)
                .unwrap_or_default();
            let (mut min, mut max) = (None, None);
            if let Some(r) = f.get("range") {
                match r.as_sequence() {
                    Some(seq) if seq.len() == 2 => {
                        let lo = scalar_str(&seq[0], &format!("{swhat}.range"), &mut self.diags)
                            .and_then(|s| yaml::number(&s, &format!("{swhat}.range"), &mut self.diags));
                        let hi = scalar_str(&seq[1], &format!("{swhat}.range"), &mut self.diags)
                            .and_then(|s| yaml::number(&s, &format!("{swhat}.range"), &mut self.diags));
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
            // A rejected `noise` is kept as NaN (the topology is invalid
            // already): a model observing the sensor then does not report it
            // as missing too.
            let noise = f.get("noise").map(|node| {
                let n = self.number(node, &format!("{swhat}.noise")).unwrap_or(f64::NAN);
                if n > 0.0 {
                    return n;
                }
                if !n.is_nan() {
                    self.err(
                        yaml::pos(node),
                        format!("{swhat}.noise: must be a finite number above zero (the standard deviation of the measurement noise)"),
                    );
                }
                f64::NAN
            });
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
                noise,
                sources,
                resolve: resolve.unwrap_or(Resolve::Latest),
                tolerance,
                // Hysteresis: sources flapping around the tolerance do not
                // raise and clear the alert on every reading.
                clear_tolerance: clear_tolerance.map_or(tolerance.unwrap_or(0.0) * 0.8, |c| c.value),
                derive: None,
            });
        }
        (out, pending)
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
            cx.check_name(&name, &what, &SENSOR_SOURCE, Some(&out));
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
                    let name = spanned_scalar(k);
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
    pub(super) fn link_sensor_sources(&mut self, types: &mut [AssetType], sources: &[SourceSpec]) {
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
}
