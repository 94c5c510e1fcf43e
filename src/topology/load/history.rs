//! `history:` of an asset type: `on` (the defaults), `off`, or a mapping of
//! `sensors`, `raw`, `tiers` and `events`.

use std::time::Duration;

use marked_yaml::Node;

use super::{hint, Cx};
use crate::topology::spec::*;
use crate::topology::yaml::{self, pos, Fields};

impl Cx<'_> {
    /// The history an asset type keeps; `None` when it keeps none (or the
    /// declaration is wrong, which is reported).
    pub(super) fn history(
        &mut self,
        node: &Node,
        what: &str,
        sensors: &[SensorSpec],
        model: Option<&ModelSpec>,
    ) -> Option<HistorySpec> {
        let what = format!("{what}.history");
        let all = || -> Vec<SeriesSpec> {
            sensors
                .iter()
                .enumerate()
                .map(|(i, s)| SeriesSpec {
                    name: s.name.clone(),
                    of: SeriesOf::Sensor(i),
                })
                .collect()
        };
        let defaults = HistorySpec {
            series: all(),
            raw: Some(DEFAULT_RAW_KEEP),
            tiers: DEFAULT_TIERS
                .iter()
                .map(|&(every, keep)| TierSpec { every, keep })
                .collect(),
            events: Some(DEFAULT_EVENTS_KEEP),
        };
        if let Node::Scalar(s) = node {
            return match s.as_str() {
                "on" | "true" => Some(defaults),
                "off" | "false" => None,
                other => {
                    self.err(
                        pos(node),
                        format!("{what}: expected `on`, `off` or a mapping with `sensors`, `raw`, `tiers`, `events`, found `{other}`"),
                    );
                    None
                }
            };
        }
        const FIELDS: &[&str] = &["sensors", "raw", "tiers", "events"];
        let f = Fields::new(node, &what, FIELDS, &mut self.diags)?;
        let mut spec = defaults;
        let errors = self.diags.len();
        if let Some(list) = f.str_list("sensors", &mut self.diags) {
            spec.series.clear();
            for name in list {
                let of = match name.value.strip_prefix("est.") {
                    Some(state) => {
                        let states = model.map(|m| m.states.as_slice()).unwrap_or_default();
                        match states.iter().position(|s| s == state) {
                            Some(i) => SeriesOf::Estimate(i),
                            None if model.is_none() => {
                                self.err(
                                    name.pos,
                                    format!(
                                        "{what}.sensors: `{}` reads the model, and the type declares none",
                                        name.value
                                    ),
                                );
                                continue;
                            }
                            None => {
                                let hint = hint(state, states.iter().map(String::as_str));
                                self.err(
                                    name.pos,
                                    format!("{what}.sensors: the model has no state `{state}`{hint}"),
                                );
                                continue;
                            }
                        }
                    }
                    None => match sensors.iter().position(|s| s.name == name.value) {
                        Some(i) => SeriesOf::Sensor(i),
                        None => {
                            let hint = hint(&name.value, sensors.iter().map(|s| s.name.as_str()));
                            self.err(
                                name.pos,
                                format!("{what}.sensors: unknown sensor `{}`{hint}", name.value),
                            );
                            continue;
                        }
                    },
                };
                if spec.series.iter().any(|s| s.name == name.value) {
                    self.err(name.pos, format!("{what}.sensors: `{}` listed twice", name.value));
                    continue;
                }
                spec.series.push(SeriesSpec { name: name.value, of });
            }
        }
        spec.raw = self.keep_or_off(&f, "raw", &what).unwrap_or(spec.raw);
        spec.events = self.keep_or_off(&f, "events", &what).unwrap_or(spec.events);
        if let Some(tiers) = f.get("tiers") {
            spec.tiers = self.tiers(tiers, &what);
        }
        if self.diags.len() > errors {
            return None;
        }
        if spec.series.is_empty() && spec.events.is_none() {
            self.err(
                f.pos(),
                format!("{what}: keeps nothing (no sensors and `events: off`); write `history: off`"),
            );
            return None;
        }
        Some(spec)
    }

    /// `raw` or `events`: a retention or `off`; `None` when absent.
    fn keep_or_off(&mut self, f: &Fields<'_>, field: &str, what: &str) -> Option<Option<Duration>> {
        let s = f.str(field, false, &mut self.diags)?;
        if s.value == "off" {
            return Some(None);
        }
        match yaml::parse_duration(&s.value) {
            Ok(d) if d >= Duration::from_millis(1) => Some(Some(d)),
            Ok(_) => {
                self.err(s.pos, format!("{what}.{field}: must be at least 1ms"));
                None
            }
            Err(e) => {
                self.err(s.pos, format!("{what}.{field}: {e}, or `off`"));
                None
            }
        }
    }

    /// `tiers:` a list of `{every, keep}`, finest first.
    fn tiers(&mut self, node: &Node, what: &str) -> Vec<TierSpec> {
        let what = format!("{what}.tiers");
        if let Node::Scalar(s) = node {
            if s.as_str() == "off" {
                return Vec::new();
            }
        }
        let Some(items) = node.as_sequence() else {
            self.err(
                pos(node),
                format!("{what}: expected a list like `[{{every: 1m, keep: 7d}}]`, or `off`"),
            );
            return Vec::new();
        };
        let mut out: Vec<TierSpec> = Vec::new();
        for item in items.iter() {
            const TIER: &[&str] = &["every", "keep"];
            let Some(t) = Fields::new(item, &what, TIER, &mut self.diags) else {
                continue;
            };
            let (Some(every), Some(keep)) = (
                t.duration("every", true, &mut self.diags),
                t.duration("keep", true, &mut self.diags),
            ) else {
                continue;
            };
            if every.value < Duration::from_millis(1) || every.value.subsec_nanos() % 1_000_000 != 0 {
                self.err(
                    every.pos,
                    format!("{what}.every: must be a whole number of milliseconds, at least 1ms"),
                );
                continue;
            }
            if every.value > Duration::from_secs(366 * 86_400) {
                self.err(every.pos, format!("{what}.every: at most 366 days"));
                continue;
            }
            if keep.value < every.value {
                self.err(
                    keep.pos,
                    format!(
                        "{what}.keep: shorter than `every` ({}): no bucket would be kept whole",
                        humantime::format_duration(every.value)
                    ),
                );
                continue;
            }
            if let Some(prev) = out.last() {
                if every.value <= prev.every {
                    self.err(
                        every.pos,
                        format!(
                            "{what}.every: tiers go from finest to coarsest; {} follows {}",
                            humantime::format_duration(every.value),
                            humantime::format_duration(prev.every)
                        ),
                    );
                    continue;
                }
            }
            out.push(TierSpec {
                every: every.value,
                keep: keep.value,
            });
        }
        if out.len() > MAX_TIERS {
            self.err(pos(node), format!("{what}: at most {MAX_TIERS} tiers"));
            out.truncate(MAX_TIERS);
        }
        out
    }
}
