//! `joins:`: pairs of sensors (of one asset, or across a relation) within a
//! time bound.

use marked_yaml::Node;

use super::names::{is_identifier, Naming};
use super::{hint, Cx};
use crate::topology::spec::*;

/// Join names appear in rule expressions: identifiers, one per join.
const JOIN: Naming = Naming {
    valid: is_identifier,
    bad: |what, _| format!("{what}: name must be an identifier (letters, digits, `_`)"),
    duplicate: |_, name, line| format!("duplicate join name `{name}` (first declared at line {line})"),
    ..Naming::ANY
};

impl<'t> Cx<'t> {
    pub(super) fn joins(&mut self, node: &Node, types: &[AssetType]) -> Vec<JoinSpec> {
        let mut out: Vec<JoinSpec> = Vec::new();
        for entry in self.named_entries(node, "joins") {
            const FIELDS: &[&str] = &["name", "left", "right", "within", "asset_types"];
            let Some((name, f)) = self.named_item(entry, "join", FIELDS, &JOIN, &out) else {
                continue;
            };
            let what = f.what().to_string();
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
}
