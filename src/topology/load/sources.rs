//! `sources:`: files, the simulator, MQTT and Kafka sources (their broker
//! settings are read in `connections.rs`), and decode mappings.

use std::path::PathBuf;
use std::time::Duration;

use marked_yaml::Node;

use super::names::{is_name, Naming};
use super::{hint, resolve_asset, Cx};
use crate::topology::diag::{Diagnostics, Pos};
use crate::topology::spec::*;
use crate::topology::yaml::{pos, scalar_str, Fields};

/// Source names: printable, one per source.
const SOURCE: Naming = Naming {
    valid: is_name,
    bad: |what, _| format!("{what}: use letters, digits, `-`, `_` or `.` in source names"),
    duplicate: |_, name, line| format!("duplicate source name `{name}` (first declared at line {line})"),
    ..Naming::ANY
};

impl<'t> Cx<'t> {
    pub(super) fn sources(&mut self, node: &Node, types: &[AssetType], assets: &[AssetEntry]) -> Vec<SourceSpec> {
        let mut out: Vec<SourceSpec> = Vec::new();
        for entry in self.named_entries(node, "sources") {
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
                "model",
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
                "ack_after",
                "ack_interval",
                "brokers",
                "group_id",
                "properties",
                "properties_env",
            ];
            let Some((name, f)) = self.named_item(entry, "source", FIELDS, &SOURCE, &out) else {
                continue;
            };
            let what = f.what().to_string();
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
                    "ack_after",
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
                    "model",
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

    /// `model:` of a simulator: readings from the type's model, with faults.
    fn sim_model(d: &mut Diagnostics, node: &Node, what: &str, ty: &AssetType) -> Option<SimModelSpec> {
        const FIELDS: &[&str] = &["faults", "fault_every", "fault_for", "fault_size", "truth"];
        let what = format!("{what}.model");
        let f = Fields::new(node, &what, FIELDS, d)?;
        if ty.model.is_none() {
            d.error(
                pos(node),
                format!("{what}: asset type `{}` declares no model to simulate", ty.name),
            );
            return None;
        }
        let mut faults = Vec::new();
        for k in f.str_list("faults", d).unwrap_or_default() {
            match SimFault::parse(&k.value) {
                Some(kind) => faults.push(kind),
                None => d.error(
                    k.pos,
                    format!(
                        "{what}.faults: one of {}, not `{}`",
                        SimFault::NAMES.join(", "),
                        k.value
                    ),
                ),
            }
        }
        let positive = |field: &str, default: Duration, d: &mut Diagnostics| match f.duration(field, false, d) {
            Some(v) if v.value.is_zero() => {
                d.error(v.pos, format!("{what}.{field}: must be above zero"));
                default
            }
            Some(v) => v.value,
            None => default,
        };
        let fault_every = positive("fault_every", Duration::from_secs(600), d);
        let fault_for = positive("fault_for", Duration::from_secs(120), d);
        let fault_size = match f.f64("fault_size", false, d) {
            Some(v) if !(v.value.is_finite() && v.value > 0.0) => {
                d.error(
                    v.pos,
                    format!("{what}.fault_size: a number above zero (standard deviations)"),
                );
                6.0
            }
            Some(v) => v.value,
            None => 6.0,
        };
        Some(SimModelSpec {
            faults,
            fault_every,
            fault_for,
            fault_size,
            truth: f.str("truth", false, d).map(|p| PathBuf::from(p.value)),
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
        if every.is_none()
            && types[t]
                .sensors
                .iter()
                .any(|s| s.expected_every.is_none() && s.derive.is_none())
        {
            d.error(
                f.pos(),
                format!(
                    "{what}: set `every`, or `expected_every` on every measured sensor of `{}`",
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
            model: None,
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
        if let Some(node) = f.get("model") {
            spec.model = Self::sim_model(d, node, what, &types[t]);
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
}
