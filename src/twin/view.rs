//! Read-only views of a twin, as the HTTP API shows them.
//!
//! Pure functions of `(model, state)`: the twin actor builds them when asked
//! (the state is read by its owner, never behind a lock), and the API builds
//! them from stored records for twins that are not in memory. Timestamps are
//! epoch milliseconds; a part that has no value yet is `null`.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::commands::{Command, Origin, Phase};
use super::model::{Figures, Health, Latest, Output, Quality, Transition, TwinState, NO_TS};
use super::schema::TypeModel;
use crate::topology::Severity;

/// Everything the twin holds, for `GET /twins/{id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TwinView {
    pub asset: String,
    #[serde(rename = "type")]
    pub asset_type: String,
    /// Incremented by every applied event.
    pub version: u64,
    #[schema(value_type = String, example = "green")]
    pub health: Health,
    /// Every sensor that can go stale is stale.
    pub offline: bool,
    /// Greatest event time seen.
    pub max_ts: Option<i64>,
    /// Event time no later event is expected at or before (per asset).
    pub watermark: Option<i64>,
    /// Processing time minus event time of the reading last reflected.
    pub sync_lag_ms: Option<i64>,
    pub sensors: BTreeMap<String, SensorView>,
    /// Open windows, oldest first, and the last closed one per window and
    /// sensor that rules read.
    pub windows: Vec<WindowView>,
    /// Latest joined pair per join.
    pub joins: BTreeMap<String, JoinView>,
    /// Values of related assets this twin reads (`relation.sensor`).
    pub related: BTreeMap<String, ReadingView>,
    /// The alert of every rule that has ever raised one (active or not).
    pub alerts: Vec<AlertView>,
    /// This asset's relations (`feeds` -> `tank-1`).
    pub relations: Vec<RelationView>,
    /// Per command of the type: desired and reported state, their delta,
    /// and the pending command.
    pub commands: BTreeMap<String, DesiredView>,
    /// Pending and recent commands, oldest first.
    pub command_log: Vec<CommandView>,
    /// The type's model: what it estimates (absent: the type has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelView>,
    pub stats: StatsView,
}

/// The model's estimate of the asset (`asset_types.<t>.model`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelView {
    /// Hash of the model's declaration (hex): outputs it influenced name it.
    pub version: String,
    /// Event time of the estimate (`null`: no reading yet).
    pub ts: Option<i64>,
    /// Per state: the estimate and its standard deviation.
    pub states: BTreeMap<String, EstimateView>,
    /// Per observed sensor: the estimated value, and the innovation of its
    /// last reading (reading minus prediction) with its standard deviation.
    pub sensors: BTreeMap<String, ObservedView>,
    /// Normalised innovation squared, summed over the anomaly window.
    pub nis: Option<f64>,
    /// Readings taken into the estimate.
    pub updates: u64,
    /// Readings older than the estimate, not taken into it.
    pub out_of_order: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EstimateView {
    pub est: Option<f64>,
    pub std: Option<f64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ObservedView {
    pub est: Option<f64>,
    pub std: Option<f64>,
    pub residual: Option<f64>,
    pub residual_std: Option<f64>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The model part of the view.
pub fn model(m: &TypeModel, st: &TwinState) -> Option<ModelView> {
    let (fm, f) = (m.filter.as_ref()?, st.filter()?);
    let started = f.t != NO_TS;
    let u = f.update_of(fm);
    let known = |v: f64| finite(v).filter(|_| started);
    Some(ModelView {
        version: format!("{:016x}", fm.version),
        ts: ts(f.t),
        states: fm
            .states
            .iter()
            .zip(&u.states)
            .map(|(n, &(est, std))| {
                (
                    n.to_string(),
                    EstimateView {
                        est: known(est),
                        std: known(std),
                    },
                )
            })
            .collect(),
        sensors: u
            .sensors
            .iter()
            .map(|o| {
                (
                    m.sensors[o.sensor as usize].to_string(),
                    ObservedView {
                        est: known(o.estimate),
                        std: known(o.std),
                        residual: known(o.residual),
                        residual_std: known(o.residual_std),
                    },
                )
            })
            .collect(),
        nis: finite(u.nis),
        updates: f.updates,
        out_of_order: f.out_of_order,
    })
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DesiredView {
    /// The value the last command set.
    pub desired: Option<f64>,
    /// The command's `reported` sensor's value.
    pub reported: Option<f64>,
    /// `reported - desired`.
    pub delta: Option<f64>,
    pub pending: Option<CommandView>,
}

/// One actuation command.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CommandView {
    /// `asset/command/seq`: the id the command sink's records carry.
    pub id: String,
    pub asset: String,
    pub command: String,
    pub seq: u32,
    pub value: f64,
    /// `pending`, `acked`, `failed`, `rejected` or `superseded`.
    #[schema(example = "pending")]
    pub state: &'static str,
    /// `api`, `rule` or `rollback`.
    pub origin: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Processing times: issued, the acknowledgement deadline, and when it
    /// left `pending`.
    pub issued_at: i64,
    pub deadline: i64,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SensorView {
    /// The value after conflict resolution, and its event time.
    pub value: Option<f64>,
    pub ts: Option<i64>,
    /// The source of that value.
    pub source: Option<String>,
    #[schema(value_type = String, example = "good")]
    pub quality: Quality,
    /// What the twin believes (the deadband estimate when the sensor has a
    /// deadband, else the value): what rules read.
    pub estimate: Option<f64>,
    /// Processing time the last reading was applied (kept for sensors that
    /// can go stale).
    pub seen: Option<i64>,
    /// Each source's latest reading, for a sensor with several sources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceView {
    pub source: String,
    pub value: Option<f64>,
    pub ts: Option<i64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadingView {
    pub value: f64,
    pub ts: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WindowView {
    pub window: String,
    pub sensor: String,
    /// `open`, or `closed` (the last closed window that rules read).
    pub state: &'static str,
    /// First millisecond of the window and the first after it (open windows).
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub avg: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JoinView {
    /// The later event time of the two readings.
    pub ts: i64,
    pub left: f64,
    pub right: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RelationView {
    pub relation: String,
    pub asset: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatsView {
    pub events: u64,
    /// Events that arrived after a window they belong to had closed.
    pub late: u64,
    /// Windows closed.
    pub windows: u64,
    /// Rule evaluations that held.
    pub firings: u64,
}

/// One alert: the lifecycle raised -> acknowledged -> cleared.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertView {
    /// `asset/rule/seq`: the same id the alert sink's records carry.
    pub id: String,
    pub asset: String,
    #[serde(rename = "type")]
    pub asset_type: String,
    pub rule: String,
    #[schema(value_type = String, example = "critical")]
    pub severity: Severity,
    /// `raised`, `acknowledged` or `cleared`.
    #[schema(example = "raised")]
    pub state: &'static str,
    /// Time that raised it (event time; processing time for staleness).
    pub since_ts: i64,
    /// Time of the latest firing and the value of the alert's first input then.
    pub last_ts: i64,
    pub last_value: f64,
    /// Times the rule held while the alert was active.
    pub firings: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One alert transition, as history keeps it (`GET /twins/{id}/alerts/history`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AlertTransitionView {
    /// `asset/rule/seq/transition`: the `event_id` the alert sink's records carry.
    pub event_id: String,
    pub rule: String,
    #[schema(value_type = String, example = "critical")]
    pub severity: Severity,
    /// `raised`, `acknowledged` or `cleared`.
    #[schema(example = "raised")]
    pub transition: String,
    pub seq: u32,
    /// Time of the evaluation that caused it (event time; processing time
    /// for staleness and acknowledgements).
    pub ts: i64,
    /// The alert's inputs at that moment.
    #[schema(value_type = Object)]
    pub inputs: std::collections::BTreeMap<String, Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A twin in a list (`GET /twins`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TwinSummary {
    pub asset: String,
    #[serde(rename = "type")]
    pub asset_type: String,
    pub version: u64,
    #[schema(value_type = String, example = "green")]
    pub health: Health,
    /// No reading for longer than the type's idle timeout (its health is
    /// then `red`).
    pub offline: bool,
    pub max_ts: Option<i64>,
    /// Quality per sensor.
    #[schema(value_type = BTreeMap<String, String>)]
    pub quality: BTreeMap<String, Quality>,
    /// Active alerts, and of those the ones nobody acknowledged.
    pub active_alerts: u32,
    pub unacknowledged_alerts: u32,
    pub pending_commands: u32,
    /// This asset's relations (filled by the API from the topology).
    pub relations: Vec<RelationView>,
}

/// What a twin contributes to a list query: its summary and its alerts.
#[derive(Debug, Clone)]
pub struct Surveyed {
    pub summary: TwinSummary,
    pub alerts: Vec<AlertView>,
}

fn ts(t: i64) -> Option<i64> {
    (t != NO_TS).then_some(t)
}

/// The alert state of every rule that has raised one.
pub fn alerts(m: &TypeModel, asset: &str, st: &TwinState) -> Vec<AlertView> {
    (0..st.alerts.len()).filter_map(|r| alert(m, asset, st, r)).collect()
}

/// The alert of rule `r` (rules, then built-ins), if it was ever raised.
fn alert(m: &TypeModel, asset: &str, st: &TwinState, r: usize) -> Option<AlertView> {
    let a = &st.alerts[r];
    if a.seq == 0 {
        return None;
    }
    let rule = &m.rules[r];
    Some(AlertView {
        id: format!("{asset}/{}/{}", rule.name, a.seq),
        asset: asset.to_string(),
        asset_type: m.name.to_string(),
        rule: rule.name.to_string(),
        severity: rule.severity,
        state: match (a.active, a.acked) {
            (true, false) => "raised",
            (true, true) => "acknowledged",
            (false, _) => "cleared",
        },
        since_ts: a.since_ts,
        last_ts: a.last_ts,
        last_value: a.last_value,
        firings: a.firings,
        message: rule.message.as_deref().map(str::to_string),
    })
}

pub fn summary(m: &TypeModel, asset: &str, st: &TwinState) -> TwinSummary {
    let figures = st.figures(m);
    TwinSummary {
        asset: asset.to_string(),
        asset_type: m.name.to_string(),
        version: st.version,
        health: figures.health,
        offline: st.offline,
        max_ts: ts(st.max_ts),
        quality: m
            .sensors
            .iter()
            .zip(st.sensors.iter())
            .map(|(n, s)| (n.to_string(), s.quality))
            .collect(),
        active_alerts: figures.active,
        unacknowledged_alerts: figures.unacknowledged,
        pending_commands: st.commands().map_or(0, |c| c.count(Phase::Pending) as u32),
        relations: Vec::new(),
    }
}

pub fn survey(m: &TypeModel, asset: &str, st: &TwinState) -> Surveyed {
    Surveyed {
        summary: summary(m, asset, st),
        alerts: alerts(m, asset, st),
    }
}

/// One command of `asset`.
pub fn command(m: &TypeModel, asset: &str, c: &Command) -> CommandView {
    let name = &m.commands[c.def as usize].name;
    let (origin, rule, rollback_of) = match c.origin {
        Origin::Api => ("api", None, None),
        Origin::Rule { rule, .. } => ("rule", Some(m.rules[rule as usize].name.to_string()), None),
        Origin::Rollback { of } => ("rollback", None, Some(of)),
    };
    CommandView {
        id: format!("{asset}/{name}/{}", c.seq),
        asset: asset.to_string(),
        command: name.to_string(),
        seq: c.seq,
        value: c.value,
        state: c.phase.name(),
        origin,
        rule,
        rollback_of,
        idempotency_key: c.key.clone(),
        issued_at: c.issued_ms,
        deadline: c.deadline_ms,
        finished_at: ts(c.finished_ms),
    }
}

/// The full view; `sources` names the topology's sources by index.
pub fn twin(m: &TypeModel, asset: &str, st: &TwinState, sources: &[std::sync::Arc<str>]) -> TwinView {
    let source_name = |i: u16| {
        sources
            .get(i as usize)
            .map_or_else(|| "?".to_string(), |s| s.to_string())
    };
    let mut sensors = BTreeMap::new();
    for (s, name) in m.sensors.iter().enumerate() {
        let v = &st.sensors[s];
        let set = v.is_set();
        let by_source = match &m.sensor_defs[s].sources {
            Some(set) => st.by_source()[set.first as usize..set.first as usize + set.sources.len()]
                .iter()
                .zip(&set.sources)
                .map(|(r, def)| SourceView {
                    source: def.name.to_string(),
                    value: (r.ts != NO_TS).then_some(r.value),
                    ts: ts(r.ts),
                })
                .collect(),
            None => Vec::new(),
        };
        sensors.insert(
            name.to_string(),
            SensorView {
                value: set.then_some(v.value),
                ts: ts(v.ts),
                source: set.then(|| source_name(v.source)),
                quality: v.quality,
                estimate: st.believed(m, s),
                seen: ts(v.seen),
                sources: by_source,
            },
        );
    }
    let mut windows = Vec::new();
    for w in &st.open {
        let slot = m.slots[w.slot as usize];
        let def = &m.windows[slot.window as usize];
        windows.push(WindowView {
            window: def.name.to_string(),
            sensor: m.sensors[slot.sensor as usize].to_string(),
            state: "open",
            start: Some(w.last_ms + 1 - def.size_ms),
            end: Some(w.last_ms + 1),
            count: w.acc.count,
            sum: w.acc.sum,
            min: w.acc.min,
            max: w.acc.max,
            avg: w.acc.avg(),
        });
    }
    for (slot, closed) in m.closed_index.iter().enumerate() {
        let Some(acc) = closed.and_then(|i| st.closed[i as usize]) else {
            continue;
        };
        let s = m.slots[slot];
        windows.push(WindowView {
            window: m.windows[s.window as usize].name.to_string(),
            sensor: m.sensors[s.sensor as usize].to_string(),
            state: "closed",
            start: None,
            end: None,
            count: acc.count,
            sum: acc.sum,
            min: acc.min,
            max: acc.max,
            avg: acc.avg(),
        });
    }
    let joins = m
        .joins
        .iter()
        .zip(st.joins())
        .filter(|(_, p)| p.ts != NO_TS)
        .map(|(j, p)| {
            (
                j.name.to_string(),
                JoinView {
                    ts: p.ts,
                    left: p.left,
                    right: p.right,
                },
            )
        })
        .collect();
    let related = m
        .related
        .iter()
        .zip(st.related())
        .filter(|(_, l)| l.is_set())
        .map(|(d, l): (_, &Latest)| {
            (
                d.name.to_string(),
                ReadingView {
                    value: l.value,
                    ts: l.ts,
                },
            )
        })
        .collect();
    TwinView {
        asset: asset.to_string(),
        asset_type: m.name.to_string(),
        version: st.version,
        health: st.health(m),
        offline: st.offline,
        max_ts: ts(st.max_ts),
        watermark: ts(st.watermark(m)),
        sync_lag_ms: (st.sync_lag_ms != i32::MIN).then_some(st.sync_lag_ms as i64),
        sensors,
        windows,
        joins,
        related,
        alerts: alerts(m, asset, st),
        relations: Vec::new(),
        commands: match st.commands() {
            Some(table) => m
                .commands
                .iter()
                .enumerate()
                .map(|(d, c)| {
                    let desired = Some(table.desired[d]).filter(|v| !v.is_nan());
                    let reported = c
                        .reported
                        .filter(|s| st.sensors[*s as usize].is_set())
                        .map(|s| st.sensors[s as usize].value);
                    let pending = table.pending(d as u16).map(|p| command(m, asset, p));
                    let delta = desired.zip(reported).map(|(d, r)| r - d);
                    (
                        c.name.to_string(),
                        DesiredView {
                            desired,
                            reported,
                            delta,
                            pending,
                        },
                    )
                })
                .collect(),
            None => BTreeMap::new(),
        },
        command_log: st
            .commands()
            .map_or_else(Vec::new, |t| t.log.iter().map(|c| command(m, asset, c)).collect()),
        model: model(m, st),
        stats: StatsView {
            events: st.stats.events,
            late: st.stats.late,
            windows: st.stats.windows,
            firings: st.stats.firings,
        },
    }
}

/// What a watcher sees of a twin at a glance, to tell what one input
/// changed: its summary's figures and each logged command's phase. (Alert
/// transitions come from the input's outputs: several can happen in one.)
#[derive(Debug, Clone, PartialEq)]
pub struct Glance {
    /// No event applied yet: a watcher may not know the twin.
    fresh: bool,
    figures: Figures,
    offline: bool,
    pending: u32,
    /// Per logged command: `(def, seq, phase)`.
    commands: Vec<(u16, u32, Phase)>,
}

pub fn glance(m: &TypeModel, st: &TwinState) -> Glance {
    let commands = st.commands();
    Glance {
        fresh: st.version == 0,
        figures: st.figures(m),
        offline: st.offline,
        pending: commands.map_or(0, |c| c.count(Phase::Pending) as u32),
        commands: commands.map_or_else(Vec::new, |c| c.log.iter().map(|c| (c.def, c.seq, c.phase)).collect()),
    }
}

/// A change a watcher is told about.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Change {
    /// The twin's first event, or its health, offline flag or counts
    /// changed (`relations` empty).
    Twin(TwinSummary),
    /// An alert was raised, acknowledged or cleared.
    Alert(AlertEvent),
    /// A command was issued or left `pending`.
    Command(CommandView),
}

impl Change {
    /// The name of the change's kind (the event stream's event name).
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Twin(_) => "twin",
            Change::Alert(_) => "alert",
            Change::Command(_) => "command",
        }
    }
}

/// One alert transition for watchers: the transition, and the alert as it
/// stands after it (`null` when a later transition in the same input
/// replaced that alert).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertEvent {
    pub asset: String,
    #[serde(rename = "type")]
    pub asset_type: String,
    pub transition: AlertTransitionView,
    pub alert: Option<AlertView>,
}

/// What one input changed, from the twin's look `before` it, its state
/// `st` after it and the input's outputs `out`: the twin's summary when its
/// figures moved, each alert transition, and each command that is new or
/// changed phase.
pub fn changes(m: &TypeModel, asset: &str, before: &Glance, st: &TwinState, out: &[Output]) -> Vec<Change> {
    let now = glance(m, st);
    let mut changes = Vec::new();
    let figures = |g: &Glance| (g.fresh, g.figures, g.offline, g.pending);
    if figures(&now) != figures(before) {
        changes.push(Change::Twin(summary(m, asset, st)));
    }
    for (i, o) in out.iter().enumerate() {
        if let Output::Alert {
            rule,
            transition,
            seq,
            ts,
            inputs,
        } = o
        {
            let r = *rule as usize;
            // The alert as it stands belongs to the rule's last transition.
            let later = out[i + 1..]
                .iter()
                .any(|x| matches!(x, Output::Alert { rule: next, .. } if next == rule));
            let current = st.alerts[r].seq == *seq && !later;
            changes.push(Change::Alert(AlertEvent {
                asset: asset.to_string(),
                asset_type: m.name.to_string(),
                transition: alert_transition(m, asset, *rule, *transition, *seq, *ts, inputs),
                alert: if current { alert(m, asset, st, r) } else { None },
            }));
        }
    }
    if now.commands != before.commands {
        if let Some(c) = st.commands() {
            for (i, cmd) in c.log.iter().enumerate() {
                if !before.commands.contains(&now.commands[i]) {
                    changes.push(Change::Command(command(m, asset, cmd)));
                }
            }
        }
    }
    changes
}

/// Transition `transition` of alert `seq` of rule `rule` at `ts`, with the
/// values of the rule's inputs then (history keeps it; watchers are told).
pub fn alert_transition(
    m: &TypeModel,
    asset: &str,
    rule: u16,
    transition: Transition,
    seq: u32,
    ts: i64,
    inputs: &[f64],
) -> AlertTransitionView {
    let def = &m.rules[rule as usize];
    AlertTransitionView {
        event_id: transition.event_id(asset, &def.name, seq),
        rule: def.name.to_string(),
        severity: def.severity,
        transition: transition.name().to_string(),
        seq,
        ts,
        inputs: def
            .inputs
            .iter()
            .zip(inputs)
            .map(|((n, _), v)| (n.to_string(), finite(*v)))
            .collect(),
        message: def.message.as_deref().map(str::to_string),
    }
}

/// An asset type as the view shows it (`GET /types`): its sensors with
/// their units, its commands with their bounds, what history keeps.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TypeView {
    pub name: String,
    pub sensors: Vec<SensorTypeView>,
    /// Relation names (`feeds`).
    pub relations: Vec<String>,
    pub commands: Vec<CommandTypeView>,
    /// The model's states (`est.<state>`; empty: no model).
    pub states: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryTypeView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SensorTypeView {
    pub name: String,
    pub unit: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub stale_after_ms: Option<i64>,
    /// Computed by the twin from other values.
    pub derived: bool,
    /// Its sources, for a sensor with several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CommandTypeView {
    pub name: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The sensor that reports the commanded value back.
    pub reported: Option<String>,
    pub timeout_ms: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryTypeView {
    /// Series kept: sensors and `est.<state>`.
    pub series: Vec<String>,
    /// Retention of the raw tier (absent: none).
    pub raw_keep_ms: Option<i64>,
    /// Downsampled tiers, finest first.
    pub tiers: Vec<TierView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TierView {
    pub every_ms: i64,
    pub keep_ms: i64,
}

/// The view of asset type `t`.
pub fn asset_type(t: &crate::topology::AssetType) -> TypeView {
    let ms = |d: std::time::Duration| d.as_millis() as i64;
    TypeView {
        name: t.name.clone(),
        sensors: t
            .sensors
            .iter()
            .map(|s| SensorTypeView {
                name: s.name.clone(),
                unit: s.unit.clone(),
                min: s.min,
                max: s.max,
                stale_after_ms: s.stale_after.map(ms),
                derived: s.derive.is_some(),
                sources: if s.sources.len() > 1 {
                    s.sources.iter().map(|x| x.name.clone()).collect()
                } else {
                    Vec::new()
                },
            })
            .collect(),
        relations: t.relations.iter().map(|r| r.name.clone()).collect(),
        commands: t
            .commands
            .iter()
            .map(|c| CommandTypeView {
                name: c.name.clone(),
                min: c.min,
                max: c.max,
                reported: c.reported.map(|s| t.sensors[s].name.clone()),
                timeout_ms: ms(c.timeout),
            })
            .collect(),
        states: t.model.as_ref().map_or_else(Vec::new, |m| m.states.clone()),
        history: t.history.as_ref().map(|h| HistoryTypeView {
            series: h.series.iter().map(|s| s.name.clone()).collect(),
            raw_keep_ms: h.raw.map(ms),
            tiers: h
                .tiers
                .iter()
                .map(|x| TierView {
                    every_ms: ms(x.every),
                    keep_ms: ms(x.keep),
                })
                .collect(),
        }),
    }
}
