//! The per-asset-type model compiled from the topology: sensor, window and
//! rule tables laid out for the hot path (indices, no names, no lookups).

use std::sync::Arc;

use crate::topology::expr::Cond;
use crate::topology::{Agg, CommandSpec, JoinSide, ModelSlot, OutputKind, Resolve, Severity, Slot, Topology};

/// Names of the built-in alerts (user rules may not take them).
pub const OFFLINE_ALERT: &str = "offline";
pub const STALE_PREFIX: &str = "stale:";
pub const DISCREPANCY_PREFIX: &str = "discrepancy:";
pub const COMMAND_FAILED_PREFIX: &str = "command-failed:";
/// The model anomaly alert (`asset_types.<t>.model.anomaly`).
pub const MODEL_ANOMALY_ALERT: &str = "model:anomaly";

/// Everything the twin model needs to know about one asset type.
#[derive(Debug)]
pub struct TypeModel {
    pub index: usize,
    pub name: Arc<str>,
    pub sensors: Vec<Arc<str>>,
    /// Per sensor: staleness, deadband, sources.
    pub sensor_defs: Vec<SensorDef>,
    /// Entries of the twin's per-source table (multi-source sensors).
    pub n_source_slots: usize,
    /// Sensors with a deadband (each has an estimate).
    pub n_estimates: usize,
    pub out_of_orderness_ms: i64,
    /// No reading for this long (processing time) closes the open windows.
    pub idle_timeout_ms: Option<i64>,
    /// Twins of this type need timers (staleness, idle timeout): they note
    /// when each reading was applied.
    pub timers: bool,
    /// Windows that cover this type.
    pub windows: Vec<WindowDef>,
    /// (window, sensor) pairs: one set of open windows each.
    pub slots: Vec<WinSlot>,
    /// sensor -> slots the sensor's events go into.
    pub slots_by_sensor: Vec<Vec<u16>>,
    pub rules: Vec<RuleDef>,
    /// slot -> rules evaluated when a window of the slot closes.
    pub rules_by_slot: Vec<Vec<u16>>,
    /// sensor -> rules evaluated when the sensor's latest value changes.
    pub rules_by_sensor: Vec<Vec<u16>>,
    /// sensor -> rules that read whether it is stale.
    pub rules_by_stale: Vec<Vec<u16>>,
    /// join -> rules that read its pair.
    pub rules_by_join: Vec<Vec<u16>>,
    /// Rules that read the model's estimates (evaluated after each update).
    pub rules_by_model: Vec<u16>,
    /// related value -> rules that read it.
    pub rules_by_related: Vec<Vec<u16>>,
    /// The built-in `offline` alert (when some sensor can go stale).
    pub offline_alert: Option<u16>,
    pub joins: Vec<JoinDef>,
    /// sensor -> (join, the sensor is its left side).
    pub joins_by_sensor: Vec<Vec<(u16, bool)>>,
    /// related value -> joins whose right side it is.
    pub joins_by_related: Vec<Vec<u16>>,
    /// Values of related assets this type reads (rules, joins).
    pub related: Vec<RelatedDef>,
    /// Actuation commands the type accepts.
    pub commands: Vec<CommandModel>,
    /// sensor -> commands it acknowledges (as reported state or ack).
    pub commands_by_sensor: Vec<Vec<u16>>,
    /// This type's relations, by index of the topology's relation list.
    pub relations: Vec<Arc<str>>,
    /// sensor -> some other type reads it through a relation: relay changes.
    pub relayed: Vec<bool>,
    /// slot -> index into the twin's last-closed table, for slots rules read.
    pub closed_index: Vec<Option<u16>>,
    pub n_closed: usize,
    /// Output kinds some sink consumes; the model only builds those.
    pub emit: OutputMask,
    /// Something reads a window's `last` or `stddev` (a window sink or a
    /// rule): records keep them.
    pub keeps_spread: bool,
    /// Record closed windows for the replay digest.
    pub digest: bool,
    /// The type's state-space model, compiled for its Kalman filter.
    pub filter: Option<super::model::FilterModel>,
    /// Derived sensors (`expr`, `integral`, `rate`).
    pub derived: Vec<super::model::DerivedDef>,
    /// sensor -> derived sensors its readings trigger.
    pub derived_by_sensor: Vec<Vec<u16>>,
    /// Derived sensors that keep state between readings (`integral`, `rate`).
    pub n_derived_state: usize,
    /// What the twin keeps of its past (`history:`).
    pub history: Option<super::model::HistoryModel>,
    /// The names twin records of this type index, and their id.
    pub schema: super::record::Schema,
    pub schema_id: u64,
}

#[derive(Debug, Clone)]
pub struct WindowDef {
    pub name: Arc<str>,
    pub size_ms: i64,
    pub slide_ms: i64,
}

impl WindowDef {
    /// Calls `f(start)` for every window containing `ts`, newest first.
    #[inline]
    pub fn for_each_start(&self, ts: i64, mut f: impl FnMut(i64)) {
        let mut start = ts - ts.rem_euclid(self.slide_ms);
        while start > ts - self.size_ms {
            f(start);
            start -= self.slide_ms;
        }
    }
}

/// What the model needs to know about one sensor.
#[derive(Debug, Clone)]
pub struct SensorDef {
    pub stale_after_ms: Option<i64>,
    pub deadband: f64,
    /// Index into the twin's estimates (sensors with a deadband).
    pub estimate: Option<u16>,
    pub sources: Option<SourceSet>,
    /// The built-in `stale:<sensor>` alert.
    pub stale_alert: Option<u16>,
}

/// The sources of a multi-source sensor, in priority order.
#[derive(Debug, Clone)]
pub struct SourceSet {
    /// First index into the twin's per-source table.
    pub first: u16,
    pub sources: Vec<SourceDef>,
    pub policy: Resolve,
    pub tolerance: Option<f64>,
    pub clear_tolerance: f64,
    /// The built-in `discrepancy:<sensor>` alert.
    pub discrepancy_alert: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct SourceDef {
    /// Topology source index.
    pub source: u16,
    pub name: Arc<str>,
    pub trust: f64,
    pub measured: bool,
}

#[derive(Debug, Clone)]
pub struct JoinDef {
    pub name: Arc<str>,
    pub left: u16,
    pub right: JoinRight,
    pub within_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JoinRight {
    Sensor(u16),
    /// Index into the related values.
    Related(u16),
}

/// A related asset's sensor that this type reads.
#[derive(Debug, Clone)]
pub struct RelatedDef {
    /// Index into [`TypeModel::relations`].
    pub relation: u16,
    /// Sensor index in the related asset's type.
    pub sensor: u16,
    /// `relation.sensor`, as rules write it.
    pub name: Arc<str>,
}

#[derive(Debug, Clone, Copy)]
pub struct WinSlot {
    pub window: u16,
    pub sensor: u16,
}

/// What a rule expression reads, in this type's layout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LocalSlot {
    /// The value rules read for a sensor (its estimate with a deadband).
    Latest(u16),
    Closed {
        closed: u16,
        agg: Agg,
    },
    Stale(u16),
    Related(u16),
    Join {
        join: u16,
        side: u8,
    },
    /// What the type's model estimates.
    Model(ModelSlot),
}

/// An alert a twin can raise: a rule of the topology or a built-in one.
#[derive(Debug)]
pub struct RuleDef {
    pub name: Arc<str>,
    pub severity: Severity,
    pub message: Option<Arc<str>>,
    pub kind: RuleKind,
    /// Display names and slots of the alert's inputs, reported with it.
    pub inputs: Vec<(Arc<str>, LocalSlot)>,
    /// The command the rule sends when its alert is raised or cleared.
    pub command: Option<CommandSpec>,
    /// That command is one of the type's [`TypeModel::commands`]: it is
    /// tracked (pending until acknowledged).
    pub tracked: Option<u16>,
}

/// An actuation command of the type (`asset_types.<t>.commands`).
#[derive(Debug, Clone)]
pub struct CommandModel {
    pub name: Arc<str>,
    /// The sensor that reports the commanded state, and how close counts.
    pub reported: Option<u16>,
    pub tolerance: f64,
    /// The sensor acknowledgements arrive on (`seq`: ok, `-seq`: rejected).
    pub ack_sensor: Option<u16>,
    pub timeout_ms: i64,
    pub rollback: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The built-in alert raised when a command fails.
    pub failed_alert: u16,
}

impl CommandModel {
    /// `value` is within the command's inclusive bounds.
    pub fn admits(&self, value: f64) -> bool {
        !(self.min.is_some_and(|lo| value < lo) || self.max.is_some_and(|hi| value > hi))
    }
}

#[derive(Debug)]
pub enum RuleKind {
    Expr {
        cond: Cond<LocalSlot>,
        /// Clears an active alert (hysteresis); `None`: `cond` no longer holding.
        clear: Option<Cond<LocalSlot>>,
        /// `cond` must hold this long (event time) before the alert is raised.
        hold_ms: i64,
    },
    /// The sensor has not been heard from for `stale_after`.
    Stale { sensor: u16 },
    /// The sensor's sources disagree by more than its tolerance; the inputs
    /// are the sources' values.
    Discrepancy { sensor: u16 },
    /// No sensor that can go stale is fresh, and one is stale.
    Offline,
    /// A command was not acknowledged in time, or was rejected; cleared by
    /// the next acknowledged command.
    CommandFailed { command: u16 },
}

/// A set of [`OutputKind`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputMask(pub u16);

impl OutputMask {
    pub fn all() -> OutputMask {
        OutputMask(0xffff)
    }
    pub fn with(self, k: OutputKind) -> OutputMask {
        OutputMask(self.0 | k.bit())
    }
    pub fn has(self, k: OutputKind) -> bool {
        self.0 & k.bit() != 0
    }
    pub fn intersects(self, other: OutputMask) -> bool {
        self.0 & other.0 != 0
    }
}

/// The compiled model of every asset type of a topology.
#[derive(Debug)]
pub struct Model {
    pub types: Vec<Arc<TypeModel>>,
}

impl Model {
    /// Compiles the topology; `emit` says which output kinds to build, and
    /// `digest` whether twins record closed windows for a replay report.
    pub fn build(topo: &Topology, emit: OutputMask, digest: bool) -> Model {
        let types = (0..topo.asset_types.len())
            .map(|t| Arc::new(TypeModel::build(topo, t, emit, digest)))
            .collect();
        Model { types }
    }
}

impl TypeModel {
    fn build(topo: &Topology, t: usize, emit: OutputMask, digest: bool) -> TypeModel {
        let ty = &topo.asset_types[t];
        let n_sensors = ty.sensors.len();
        let mut windows = Vec::new();
        let mut window_local = vec![None; topo.windows.len()];
        let mut slots = Vec::new();
        let mut slots_by_sensor = vec![Vec::new(); n_sensors];
        for (wi, w) in topo.windows.iter().enumerate() {
            let Some(sensors) = w.sensors_for(t) else { continue };
            window_local[wi] = Some(windows.len() as u16);
            for &s in sensors {
                slots_by_sensor[s].push(slots.len() as u16);
                slots.push(WinSlot {
                    window: windows.len() as u16,
                    sensor: s as u16,
                });
            }
            windows.push(WindowDef {
                name: w.name.as_str().into(),
                size_ms: w.size.as_millis() as i64,
                slide_ms: w.slide.as_millis() as i64,
            });
        }
        let slot_of = |window: u16, sensor: u16| -> usize {
            let local = window_local[window as usize].expect("validated: window covers type");
            slots
                .iter()
                .position(|s| s.window == local && s.sensor == sensor)
                .expect("validated: window covers sensor")
        };

        // Sensors: staleness, deadband, sources.
        let mut n_source_slots = 0usize;
        let mut n_estimates = 0usize;
        let mut sensor_defs: Vec<SensorDef> = ty
            .sensors
            .iter()
            .map(|sp| {
                let estimate = (sp.deadband > 0.0).then(|| {
                    n_estimates += 1;
                    (n_estimates - 1) as u16
                });
                let sources = (!sp.sources.is_empty()).then(|| {
                    let first = n_source_slots as u16;
                    n_source_slots += sp.sources.len();
                    SourceSet {
                        first,
                        sources: sp
                            .sources
                            .iter()
                            .map(|s| SourceDef {
                                source: s.source as u16,
                                name: s.name.as_str().into(),
                                trust: s.trust,
                                measured: s.measured,
                            })
                            .collect(),
                        policy: sp.resolve,
                        tolerance: sp.tolerance,
                        clear_tolerance: sp.clear_tolerance,
                        discrepancy_alert: None,
                    }
                });
                SensorDef {
                    stale_after_ms: sp.stale_after.map(|d| d.as_millis() as i64),
                    deadband: sp.deadband,
                    estimate,
                    sources,
                    stale_alert: None,
                }
            })
            .collect();

        // Relations and the related values this type reads.
        let relations: Vec<Arc<str>> = ty.relations.iter().map(|r| r.name.as_str().into()).collect();
        let mut related: Vec<RelatedDef> = Vec::new();
        let mut related_index = |relation: u16, sensor: u16| -> u16 {
            if let Some(i) = related
                .iter()
                .position(|r| r.relation == relation && r.sensor == sensor)
            {
                return i as u16;
            }
            let rel = &ty.relations[relation as usize];
            related.push(RelatedDef {
                relation,
                sensor,
                name: format!(
                    "{}.{}",
                    rel.name, topo.asset_types[rel.target_type].sensors[sensor as usize].name
                )
                .into(),
            });
            (related.len() - 1) as u16
        };

        // Joins.
        let mut joins = Vec::new();
        let mut join_local = vec![None; topo.joins.len()];
        let mut joins_by_sensor = vec![Vec::new(); n_sensors];
        let mut joins_by_related_pairs: Vec<(u16, u16)> = Vec::new();
        for (ji, j) in topo.joins.iter().enumerate() {
            let Some((left, right)) = j.sides_for(t) else { continue };
            let local = joins.len() as u16;
            join_local[ji] = Some(local);
            joins_by_sensor[left].push((local, true));
            let right = match right {
                JoinSide::Sensor(s) => {
                    joins_by_sensor[s].push((local, false));
                    JoinRight::Sensor(s as u16)
                }
                JoinSide::Related { relation, sensor } => {
                    let k = related_index(relation as u16, sensor as u16);
                    joins_by_related_pairs.push((k, local));
                    JoinRight::Related(k)
                }
            };
            joins.push(JoinDef {
                name: j.name.as_str().into(),
                left: left as u16,
                right,
                within_ms: j.within.as_millis() as u64,
            });
        }

        let mut closed_index = vec![None; slots.len()];
        let mut n_closed = 0usize;
        let mut rules = Vec::new();
        let mut rules_by_slot = vec![Vec::new(); slots.len()];
        let mut rules_by_sensor = vec![Vec::new(); n_sensors];
        let mut rules_by_stale = vec![Vec::new(); n_sensors];
        let mut rules_by_join = vec![Vec::new(); joins.len()];
        let mut rules_by_model = Vec::new();
        let mut rules_by_related_pairs: Vec<(u16, u16)> = Vec::new();
        for r in &topo.rules {
            let Some((_, cond)) = r.compiled.iter().find(|(ct, _)| *ct == t) else {
                continue;
            };
            let clear_cond = r.clear_compiled.iter().find(|(ct, _)| *ct == t).map(|(_, c)| c);
            let ri = rules.len() as u16;
            let mut inputs: Vec<(Arc<str>, LocalSlot)> = Vec::new();
            let mut map_slot = |s: Slot| -> LocalSlot {
                match s {
                    Slot::Latest { sensor } => LocalSlot::Latest(sensor),
                    Slot::Window { window, sensor, agg } => {
                        let slot = slot_of(window, sensor);
                        let closed = *closed_index[slot].get_or_insert_with(|| {
                            n_closed += 1;
                            (n_closed - 1) as u16
                        });
                        LocalSlot::Closed { closed, agg }
                    }
                    Slot::Stale { sensor } => LocalSlot::Stale(sensor),
                    Slot::Related { relation, sensor } => LocalSlot::Related(related_index(relation, sensor)),
                    Slot::Model(m) => LocalSlot::Model(m),
                    Slot::Join { join, side } => LocalSlot::Join {
                        join: join_local[join as usize].expect("validated: join applies to type"),
                        side,
                    },
                }
            };
            let local = map_cond(cond, &mut map_slot);
            let clear = clear_cond.map(|c| map_cond(c, &mut map_slot));
            // What either condition reads triggers the rule and is reported
            // with its alerts.
            for c in std::iter::once(cond).chain(clear_cond) {
                c.visit_slots(&mut |s| {
                    let local = map_slot(s);
                    let name = match (s, local) {
                        (Slot::Latest { sensor }, _) => {
                            push_unique(&mut rules_by_sensor[sensor as usize], ri);
                            ty.sensors[sensor as usize].name.clone()
                        }
                        (Slot::Window { window, sensor, agg }, _) => {
                            let slot = slot_of(window, sensor);
                            push_unique(&mut rules_by_slot[slot], ri);
                            format!(
                                "{}.{}.{}",
                                topo.windows[window as usize].name,
                                ty.sensors[sensor as usize].name,
                                agg.name()
                            )
                        }
                        (Slot::Stale { sensor }, _) => {
                            push_unique(&mut rules_by_stale[sensor as usize], ri);
                            format!("{}.stale", ty.sensors[sensor as usize].name)
                        }
                        (Slot::Related { relation, sensor }, LocalSlot::Related(k)) => {
                            if !rules_by_related_pairs.contains(&(k, ri)) {
                                rules_by_related_pairs.push((k, ri));
                            }
                            let rel = &ty.relations[relation as usize];
                            format!(
                                "{}.{}",
                                rel.name, topo.asset_types[rel.target_type].sensors[sensor as usize].name
                            )
                        }
                        (Slot::Join { join, side }, LocalSlot::Join { join: j, .. }) => {
                            push_unique(&mut rules_by_join[j as usize], ri);
                            let def = &joins[j as usize];
                            let side_name = match (side, def.right) {
                                (0, _) => ty.sensors[def.left as usize].name.clone(),
                                (_, JoinRight::Sensor(r)) => ty.sensors[r as usize].name.clone(),
                                (_, JoinRight::Related(_)) => match topo.joins[join as usize].sides_for(t) {
                                    Some((_, JoinSide::Related { relation, sensor })) => {
                                        let rel = &ty.relations[relation];
                                        format!(
                                            "{}.{}",
                                            rel.name, topo.asset_types[rel.target_type].sensors[sensor].name
                                        )
                                    }
                                    _ => "?".into(),
                                },
                            };
                            format!("{}.{side_name}", topo.joins[join as usize].name)
                        }
                        (Slot::Model(slot), _) => {
                            push_unique(&mut rules_by_model, ri);
                            let spec = ty.model.as_ref().expect("validated: model slots need a model");
                            match slot {
                                ModelSlot::Est { state } => format!("est.{}", spec.states[state as usize]),
                                ModelSlot::EstStd { state } => format!("est.{}.std", spec.states[state as usize]),
                                ModelSlot::Residual { sensor } => {
                                    format!("residual.{}", ty.sensors[sensor as usize].name)
                                }
                                ModelSlot::Nis => "nis".to_string(),
                                ModelSlot::NisPart { sensor } => format!("nis.{}", ty.sensors[sensor as usize].name),
                                ModelSlot::Bias => "bias".to_string(),
                            }
                        }
                        _ => unreachable!("map_slot keeps the kind of slot"),
                    };
                    if !inputs.iter().any(|(n, _)| **n == *name) {
                        inputs.push((name.into(), local));
                    }
                });
            }
            rules.push(RuleDef {
                name: r.name.as_str().into(),
                severity: r.severity,
                message: r.message.as_deref().map(Into::into),
                kind: RuleKind::Expr {
                    cond: local,
                    clear,
                    hold_ms: r.hold.as_millis() as i64,
                },
                inputs,
                command: r.command.clone(),
                tracked: r
                    .command
                    .as_ref()
                    .and_then(|c| ty.commands.iter().position(|d| d.name == c.name))
                    .map(|i| i as u16),
            });
        }

        // Built-in alerts, after the rules: stale per sensor, discrepancy per
        // multi-source sensor with a tolerance, offline per asset.
        let mut any_stale = false;
        for (s, def) in sensor_defs.iter_mut().enumerate() {
            let name = &ty.sensors[s].name;
            if def.stale_after_ms.is_some() {
                any_stale = true;
                def.stale_alert = Some(rules.len() as u16);
                rules.push(RuleDef {
                    name: format!("{STALE_PREFIX}{name}").into(),
                    severity: Severity::Warning,
                    message: Some(format!("sensor `{name}` has not reported for its stale_after").into()),
                    kind: RuleKind::Stale { sensor: s as u16 },
                    inputs: vec![(name.as_str().into(), LocalSlot::Latest(s as u16))],
                    command: None,
                    tracked: None,
                });
            }
            if let Some(set) = &mut def.sources {
                if set.tolerance.is_some() {
                    set.discrepancy_alert = Some(rules.len() as u16);
                    rules.push(RuleDef {
                        name: format!("{DISCREPANCY_PREFIX}{name}").into(),
                        severity: Severity::Warning,
                        message: Some(format!("the sources of `{name}` disagree by more than its tolerance").into()),
                        kind: RuleKind::Discrepancy { sensor: s as u16 },
                        inputs: set
                            .sources
                            .iter()
                            .map(|src| (format!("{name}@{}", src.name).into(), LocalSlot::Latest(s as u16)))
                            .collect(),
                        command: None,
                        tracked: None,
                    });
                }
            }
        }
        let offline_alert = any_stale.then(|| {
            rules.push(RuleDef {
                name: OFFLINE_ALERT.into(),
                severity: Severity::Critical,
                message: Some("no sensor of the asset is reporting".into()),
                kind: RuleKind::Offline,
                inputs: Vec::new(),
                command: None,
                tracked: None,
            });
            (rules.len() - 1) as u16
        });
        // The model anomaly alert: the NIS window sum leaves its interval.
        let filter = ty.model.as_ref().map(|spec| super::model::FilterModel::build(spec, ty));
        if let (Some(spec), Some(def)) = (&ty.model, filter.as_ref().and_then(|f| f.anomaly.as_ref())) {
            let severity = spec.anomaly.as_ref().expect("compiled from it").severity;
            rules_by_model.push(rules.len() as u16);
            rules.push(super::model::anomaly_rule(def, severity, spec, ty));
        }
        // One "command failed" alert per command.
        let mut commands = Vec::new();
        let mut commands_by_sensor = vec![Vec::new(); n_sensors];
        for (c, def) in ty.commands.iter().enumerate() {
            for s in [def.reported, def.ack_sensor].into_iter().flatten() {
                push_unique(&mut commands_by_sensor[s], c as u16);
            }
            commands.push(CommandModel {
                name: def.name.as_str().into(),
                reported: def.reported.map(|s| s as u16),
                tolerance: def.tolerance,
                ack_sensor: def.ack_sensor.map(|s| s as u16),
                timeout_ms: def.timeout.as_millis() as i64,
                rollback: def.rollback,
                min: def.min,
                max: def.max,
                failed_alert: rules.len() as u16,
            });
            rules.push(RuleDef {
                name: format!("{COMMAND_FAILED_PREFIX}{}", def.name).into(),
                severity: Severity::Warning,
                message: Some(format!("command `{}` was not acknowledged in time, or was rejected", def.name).into()),
                kind: RuleKind::CommandFailed { command: c as u16 },
                inputs: Vec::new(),
                command: None,
                tracked: None,
            });
        }

        let mut joins_by_related = vec![Vec::new(); related.len()];
        for (k, j) in joins_by_related_pairs {
            push_unique(&mut joins_by_related[k as usize], j);
        }
        let mut rules_by_related = vec![Vec::new(); related.len()];
        for (k, r) in rules_by_related_pairs {
            push_unique(&mut rules_by_related[k as usize], r);
        }
        // Sensors of this type that another type reads through a relation.
        let mut relayed = vec![false; n_sensors];
        for other in &topo.asset_types {
            for (ri, rel) in other.relations.iter().enumerate() {
                if rel.target_type != t {
                    continue;
                }
                for (s, flag) in relayed.iter_mut().enumerate() {
                    *flag |= reads_related(topo, other, ri, s);
                }
            }
        }
        let observed: Vec<usize> = ty
            .model
            .iter()
            .flat_map(|m| m.observe.iter().map(|o| o.sensor))
            .collect();
        let (derived, derived_by_sensor, n_derived_state) = super::model::derived_sensors(ty, &observed);
        let mut m = TypeModel {
            index: t,
            name: ty.name.as_str().into(),
            sensors: ty.sensors.iter().map(|s| s.name.as_str().into()).collect(),
            sensor_defs,
            n_source_slots,
            n_estimates,
            out_of_orderness_ms: ty.out_of_orderness.as_millis() as i64,
            idle_timeout_ms: ty.idle_timeout.map(|d| d.as_millis() as i64),
            timers: ty.idle_timeout.is_some()
                || ty.sensors.iter().any(|s| s.stale_after.is_some())
                || !ty.commands.is_empty(),
            windows,
            slots,
            slots_by_sensor,
            rules,
            rules_by_slot,
            rules_by_sensor,
            rules_by_stale,
            rules_by_join,
            rules_by_model,
            rules_by_related,
            offline_alert,
            joins,
            joins_by_sensor,
            joins_by_related,
            related,
            commands,
            commands_by_sensor,
            relations,
            relayed,
            closed_index,
            n_closed,
            emit,
            keeps_spread: false,
            digest,
            filter,
            derived,
            derived_by_sensor,
            n_derived_state,
            history: ty
                .history
                .as_ref()
                .map(|h| super::model::HistoryModel::of(h, ty.sensors.len())),
            schema: super::record::Schema::default(),
            schema_id: 0,
        };
        m.keeps_spread = emit.has(OutputKind::Windows)
            || m.rules.iter().any(|r| {
                r.inputs.iter().any(|(_, s)| {
                    matches!(
                        s,
                        LocalSlot::Closed {
                            agg: Agg::Last | Agg::Stddev,
                            ..
                        }
                    )
                })
            });
        m.schema = super::record::Schema::of(&m);
        m.schema_id = m.schema.id();
        m
    }

    /// Whether twins of this type use the parts of [`super::model::TwinExt`].
    pub fn needs_ext(&self) -> bool {
        self.digest
            || self.idle_timeout_ms.is_some()
            || self.n_source_slots > 0
            || self.n_estimates > 0
            || !self.joins.is_empty()
            || !self.related.is_empty()
            || !self.commands.is_empty()
            || self.filter.is_some()
            || self.n_derived_state > 0
    }

    /// Index in the twin's per-source table of `source`'s reading of
    /// multi-source sensor `s`.
    #[inline]
    pub fn source_slot(&self, s: usize, source: u16) -> Option<usize> {
        let set = self.sensor_defs[s].sources.as_ref()?;
        let i = set.sources.iter().position(|d| d.source == source)?;
        Some(set.first as usize + i)
    }

    pub fn sensor_index(&self, name: &str) -> Option<u16> {
        self.sensors.iter().position(|s| &**s == name).map(|i| i as u16)
    }

    pub fn window_index(&self, name: &str) -> Option<u16> {
        self.windows.iter().position(|w| &*w.name == name).map(|i| i as u16)
    }

    /// The version of the model rule `rule` reads, if it reads one: its
    /// alerts and commands name it, so an action traces back to the model.
    pub fn model_version_of(&self, rule: u16) -> Option<u64> {
        let fm = self.filter.as_ref()?;
        self.rules_by_model.contains(&rule).then_some(fm.version)
    }

    pub fn rule_index(&self, name: &str) -> Option<u16> {
        self.rules.iter().position(|r| &*r.name == name).map(|i| i as u16)
    }

    pub fn slot_index(&self, window: u16, sensor: u16) -> Option<u16> {
        self.slots
            .iter()
            .position(|s| s.window == window && s.sensor == sensor)
            .map(|i| i as u16)
    }
}

/// Whether asset type `reader` reads sensor `sensor` of the asset its
/// relation `relation` points to (in a rule or a join).
fn reads_related(topo: &Topology, reader: &crate::topology::AssetType, relation: usize, sensor: usize) -> bool {
    let Some(t) = topo.asset_types.iter().position(|x| std::ptr::eq(x, reader)) else {
        return false;
    };
    let wanted = Slot::Related {
        relation: relation as u16,
        sensor: sensor as u16,
    };
    let in_rules = topo.rules.iter().any(|r| {
        r.compiled
            .iter()
            .chain(&r.clear_compiled)
            .filter(|(ct, _)| *ct == t)
            .any(|(_, c)| {
                let mut found = false;
                c.visit_slots(&mut |s| found |= s == wanted);
                found
            })
    });
    let in_joins = topo
        .joins
        .iter()
        .any(|j| matches!(j.sides_for(t), Some((_, JoinSide::Related { relation: r, sensor: s })) if r == relation && s == sensor));
    in_rules || in_joins
}

fn push_unique(v: &mut Vec<u16>, x: u16) {
    if !v.contains(&x) {
        v.push(x);
    }
}

fn map_cond(c: &Cond<Slot>, f: &mut impl FnMut(Slot) -> LocalSlot) -> Cond<LocalSlot> {
    match c {
        Cond::Const(b) => Cond::Const(*b),
        Cond::Cmp(op, a, b) => Cond::Cmp(*op, a.map(f), b.map(f)),
        Cond::And(a, b) => Cond::And(Box::new(map_cond(a, f)), Box::new(map_cond(b, f))),
        Cond::Or(a, b) => Cond::Or(Box::new(map_cond(a, f)), Box::new(map_cond(b, f))),
        Cond::Not(a) => Cond::Not(Box::new(map_cond(a, f))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(size: i64, slide: i64, ts: i64) -> Vec<i64> {
        let w = WindowDef {
            name: "w".into(),
            size_ms: size,
            slide_ms: slide,
        };
        let mut v = Vec::new();
        w.for_each_start(ts, |s| v.push(s));
        v
    }

    #[test]
    fn window_assignment() {
        assert_eq!(starts(1000, 1000, 1_700_000_000_123), vec![1_700_000_000_000]);
        assert_eq!(starts(1000, 1000, 999), vec![0]);
        assert_eq!(starts(1000, 1000, 1000), vec![1000]);
        assert_eq!(starts(1000, 1000, -1), vec![-1000]);
        assert_eq!(starts(10_000, 5_000, 12_000), vec![10_000, 5_000]);
        assert_eq!(starts(10_000, 5_000, 10_000), vec![10_000, 5_000]);
        assert_eq!(starts(3000, 1000, 2500), vec![2000, 1000, 0]);
    }
}
