//! `rules:`: conditions, severities and commands, and compiling their
//! expressions against each asset type they apply to (with the names that
//! read an asset type's model: `est.<state>`, `residual.<sensor>`, `nis`).

use std::time::Duration;

use marked_yaml::Node;

use super::names::{is_name, Naming};
use super::{hint, Cx};
use crate::topology::diag::{one_of, Diagnostics, Pos};
use crate::topology::expr::{compile_condition, Cond, Resolver, Unresolved};
use crate::topology::spec::*;
use crate::topology::yaml::{Fields, Spanned};

/// Rule names: printable, not a built-in alert's, one per rule.
const RULE: Naming = Naming {
    valid: is_name,
    bad: |what, _| format!("{what}: use letters, digits, `-`, `_` or `.` in rule names"),
    reserved: |what, name| {
        (name == "offline" || name.starts_with("stale:") || name.starts_with("discrepancy:")).then(|| {
            format!("{what}: `offline`, `stale:*` and `discrepancy:*` name the built-in alerts; choose another name")
        })
    },
    duplicate: |_, name, line| format!("duplicate rule name `{name}` (first declared at line {line})"),
};

/// The name of the command a rule sends: printable.
const COMMAND: Naming = Naming {
    valid: is_name,
    bad: |at, _| format!("{at}: use letters, digits, `-`, `_` or `.`"),
    ..Naming::ANY
};

/// `severity:` of a rule or of a model's anomaly alert: `info`, `warning`
/// (the default) or `critical`.
pub(super) fn severity(f: &Fields<'_>, d: &mut Diagnostics) -> Severity {
    f.choice("severity", &Severity::NAMES, false, d)
        .and_then(|s| Severity::parse(&s.value))
        .unwrap_or(Severity::Warning)
}

impl<'t> Cx<'t> {
    pub(super) fn rules(
        &mut self,
        node: &Node,
        types: &[AssetType],
        windows: &[WindowSpec],
        joins: &[JoinSpec],
    ) -> Vec<RuleSpec> {
        let mut out: Vec<RuleSpec> = Vec::new();
        let rejected_models = self.rejected_models.clone();
        for entry in self.named_entries(node, "rules") {
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
            let Some((name, f)) = self.named_item(entry, "rule", FIELDS, &RULE, &out) else {
                continue;
            };
            let what = f.what().to_string();
            let severity = severity(&f, &mut self.diags);
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
            let cx = ExprScope {
                types,
                windows,
                joins,
                rejected_models: &rejected_models,
            };
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
        self.check_name(&name, &format!("{what}.command.name"), &COMMAND, None);
        let d = &mut self.diags;
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
                model_rejected: scope.rejected_models.contains(&t),
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
    pub(super) fn expression_start(&self, p: Pos, text: &str) -> Option<Pos> {
        let line = self.lines.get(p.line.checked_sub(1)?)?;
        let rest: String = line.chars().skip(p.col.checked_sub(1)?).collect();
        let (quote, body) = match rest.chars().next() {
            Some('"' | '\'') => (1, rest[1..].to_string()),
            _ => (0, rest),
        };
        body.starts_with(text).then(|| p.shifted(quote))
    }
}

/// What rule expressions may name.
struct ExprScope<'a> {
    types: &'a [AssetType],
    windows: &'a [WindowSpec],
    joins: &'a [JoinSpec],
    /// Asset types whose `model:` was rejected (see [`Cx::rejected_models`]).
    rejected_models: &'a [usize],
}

/// Resolves rule-expression names for one asset type.
struct TypeResolver<'a> {
    types: &'a [AssetType],
    asset_type: usize,
    windows: &'a [WindowSpec],
    joins: &'a [JoinSpec],
    /// The type declares a model that was rejected (and reported): its model
    /// names resolve to a stand-in, as the topology is invalid already.
    model_rejected: bool,
}

impl Resolver for TypeResolver<'_> {
    type Slot = Slot;

    fn resolve(&self, path: &[&str]) -> Result<Slot, Unresolved> {
        let ty = &self.types[self.asset_type];
        let first = path[0];
        // `est`, `residual` and `nis` read the type's model. A sensor,
        // relation, window or join of that name keeps it in a type without a
        // model (as before models existed); in a type with one, the name
        // would mean two things, so it is refused.
        if MODEL_NAMES.contains(&first) {
            match (self.user_name(first), ty.model.is_some()) {
                (Some(other), true) => {
                    return Err(format!(
                        "`{first}` is both {other} and the model's `{first}` in asset type `{}`; rename the {}",
                        ty.name,
                        other.split(' ').next().unwrap_or("other")
                    )
                    .into())
                }
                (None, _) if self.model_rejected => return Ok(Slot::Model(ModelSlot::Nis)),
                (None, _) => return resolve_model_name(ty, path),
                (Some(_), false) => {}
            }
        }
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
        let model_names = if ty.model.is_some() { &MODEL_NAMES[..] } else { &[] };
        let candidates = ty
            .sensors
            .iter()
            .map(|s| s.name.as_str())
            .chain(self.windows.iter().map(|w| w.name.as_str()))
            .chain(ty.relations.iter().map(|r| r.name.as_str()))
            .chain(self.joins.iter().map(|j| j.name.as_str()))
            .chain(model_names.iter().copied());
        let h = hint(first, candidates);
        let kinds = if ty.model.is_some() {
            "sensor, relation, window, join or model name (`est`, `residual`, `nis`)"
        } else {
            "sensor, relation, window or join"
        };
        Err(format!("unknown name `{first}`: not a {kinds} of asset type `{}`{h}", ty.name).into())
    }
}

impl TypeResolver<'_> {
    /// What else `name` names for this asset type: ``sensor `nis` ``, ...
    fn user_name(&self, name: &str) -> Option<String> {
        let ty = &self.types[self.asset_type];
        let kind = if ty.sensor_index(name).is_some() {
            "sensor"
        } else if ty.relations.iter().any(|r| r.name == name) {
            "relation"
        } else if self.windows.iter().any(|w| w.name == name) {
            "window"
        } else if self.joins.iter().any(|j| j.name == name) {
            "join"
        } else {
            return None;
        };
        Some(format!("{kind} `{name}`"))
    }
}

/// The rule names that read an asset type's model.
pub(super) const MODEL_NAMES: [&str; 3] = ["est", "residual", "nis"];

/// Resolves a rule name that starts with `est`, `residual` or `nis` for the
/// asset type `ty`: `est.<state>`, `est.<state>.std`, `residual.<sensor>`
/// (a sensor the model observes) and `nis` (needs the model's `anomaly:`,
/// whose window it sums over).
pub(super) fn resolve_model_name(ty: &AssetType, path: &[&str]) -> Result<Slot, Unresolved> {
    let first = path[0];
    let Some(model) = &ty.model else {
        return Err(format!(
            "`{}`: asset type `{}` has no `model:`; `est`, `residual` and `nis` read a model's estimates",
            path.join("."),
            ty.name
        )
        .into());
    };
    let states = || {
        let names: Vec<&str> = model.states.iter().map(String::as_str).collect();
        one_of(&names)
    };
    let slot = match (first, path) {
        ("est", [_, state, rest @ ..]) => {
            let Some(i) = model.states.iter().position(|s| s == state) else {
                let h = hint(state, model.states.iter().map(String::as_str));
                return Err(Unresolved::at(
                    1,
                    format!(
                        "no state `{state}` in the model of asset type `{}`{h}; its states: {}",
                        ty.name,
                        states()
                    ),
                ));
            };
            match rest {
                [] => ModelSlot::Est { state: i as u16 },
                ["std"] => ModelSlot::EstStd { state: i as u16 },
                _ => {
                    return Err(Unresolved::at(
                        2,
                        format!(
                            "`{}`: a state has its estimate `est.{state}` and its standard deviation `est.{state}.std`",
                            path.join(".")
                        ),
                    ))
                }
            }
        }
        ("est", _) => {
            return Err(format!(
                "`est`: write a state's estimate as `est.<state>` (states: {})",
                states()
            )
            .into());
        }
        ("residual", [_, sensor]) => {
            let observed: Vec<&str> = model
                .observe
                .iter()
                .map(|o| ty.sensors[o.sensor].name.as_str())
                .collect();
            match ty.sensor_index(sensor) {
                Some(s) if model.observe.iter().any(|o| o.sensor == s) => ModelSlot::Residual { sensor: s as u16 },
                Some(_) => {
                    return Err(Unresolved::at(
                        1,
                        format!(
                            "the model of asset type `{}` does not observe `{sensor}`; it observes {}",
                            ty.name,
                            one_of(&observed)
                        ),
                    ))
                }
                None => {
                    let h = hint(sensor, observed.iter().copied());
                    return Err(Unresolved::at(
                        1,
                        format!("unknown sensor `{sensor}` for asset type `{}`{h}", ty.name),
                    ));
                }
            }
        }
        ("residual", _) => {
            return Err(format!(
                "`{}`: write a sensor's residual as `residual.<sensor>`, e.g. `residual.{}`",
                path.join("."),
                ty.sensors[model.observe[0].sensor].name
            )
            .into());
        }
        (_, [_]) if model.anomaly.is_some() => ModelSlot::Nis,
        (_, [_]) => {
            return Err(format!(
                "`nis` is summed over the window of the model's `anomaly:`, and the model of asset type `{}` declares none (`anomaly: {{}}` takes the defaults)",
                ty.name
            )
            .into());
        }
        _ => return Err(Unresolved::at(1, format!("`{}`: `nis` has no fields", path.join(".")))),
    };
    Ok(Slot::Model(slot))
}
