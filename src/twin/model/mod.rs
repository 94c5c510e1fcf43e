//! The twin model: a pure state machine, `apply(state, input, now) -> outputs`.
//!
//! No IO, no clocks, no randomness: the same inputs give the same state and
//! outputs, which is what makes snapshots + replay exact and lets the actor
//! retry a batch on a copy after a panic. `apply` mutates the state in place
//! and appends outputs to a buffer (the allocation-free form of
//! `(state, input, now) -> (state, outputs)`).
//!
//! `now` (processing time, supplied by the caller) is read only by what the
//! design defines in processing time: when a sensor was last heard from
//! (staleness, `offline`), the idle timeout of windows, and the sync lag.
//! Everything derived from event time (latest values, windows, joins, rules
//! over them, the counters of [`TwinStats`]) is independent of it.
//!
//! Nothing here depends on how events are batched: the result of applying
//! `[a, b]` equals applying `[a]` then `[b]` (except for how twin updates are
//! grouped), so crash + resume from any snapshot gives the same twin.
//!
//! # Layout
//!
//! One file per semantic; this file has the entry points ([`apply`], the
//! dispatch of an [`Input`], the path of one event through the semantics)
//! and what they produce ([`Output`]).
//!
//! * `state.rs` - [`TwinState`] and [`TwinExt`]: construction, back-up and
//!   roll-back ([`SensorsBackup`]: copied or logged), accessors, [`Health`],
//!   the [`TwinStats`] counters.
//! * `sensors.rs` - readings ([`Event`]) and sensor values: redelivery,
//!   conflict resolution between sources (discrepancy, [`Quality`]), the
//!   deadband estimate and the sync lag; a twin's [`Sensors`] with their
//!   change marks and a batch's undo log ([`SensorUndo`]).
//! * `windows.rs` - the watermark, open windows ([`Acc`]), closing them, the
//!   replay digest ([`ClosedDigest`]).
//! * `joins.rs` - joins ([`JoinPair`]) and values of related assets
//!   ([`Relayed`]).
//! * `timers.rs` - what processing time drives: staleness, `offline`, the
//!   idle timeout ([`next_deadline`], [`Input::Tick`]).
//! * `derived.rs` - derived sensors (`expr`, `integral`, `rate`), applied
//!   as readings of their own.
//! * `filter.rs` - the Kalman filter of the type's model.
//! * `rules.rs` - rule evaluation (`for:`, `clear_when`), the alert lifecycle
//!   ([`AlertState`]) and the commands rules send.

use serde::{Deserialize, Serialize};

use super::commands::{self, Origin};
use super::schema::TypeModel;
use crate::topology::OutputKind;

const EXT: &str = "the type model gives a twin the extension for what it uses";

/// The twin's extension, borrowing only that field.
macro_rules! ext {
    ($st:expr) => {
        $st.ext.as_deref().expect($crate::twin::model::EXT)
    };
}
macro_rules! ext_mut {
    ($st:expr) => {
        $st.ext.as_deref_mut().expect($crate::twin::model::EXT)
    };
}

mod derived;
mod filter;
pub mod history;
mod joins;
mod rules;
mod sensors;
mod state;
mod timers;
mod windows;

pub use derived::{build as derived_sensors, DerivedDef, DerivedKind, DerivedState};
pub use filter::{
    anomaly_rule, expm, AnomalyDef, Dynamics, FilterModel, FilterRecord, FilterState, ModelUpdate, ObservationDef,
    ObservationState, ObservedUpdate, Step,
};
pub use history::{HistoryLog, HistoryModel, Logged, Partial, RawReading};
pub use joins::{JoinPair, Relayed};
pub(super) use rules::set_alert;
pub use rules::AlertState;
pub use sensors::{Changed, Estimate, Event, Latest, Quality, SensorState, SensorUndo, Sensors, SourceReading};
pub use state::{Figures, Health, LogMarks, SensorsBackup, TwinExt, TwinState, TwinStats};
pub use timers::next_deadline;
pub use windows::{Acc, ClosedDigest, OpenWindow};

use joins::{on_related, try_join};
use rules::{alert_inputs, emit_alert, evaluate_rule, issue_rule_commands};
use sensors::{already_applied, reconcile, resolve};
use timers::on_tick;
use windows::{add_to_window, close_windows};

/// What a twin is asked to do.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Readings, in arrival order.
    Events(&'a [Event]),
    /// Values of related assets changed.
    Related(&'a [Relayed]),
    /// A timer of the twin is due (staleness, idle timeout): check them
    /// against `now`.
    Tick,
    /// An operator acknowledged alert `seq` of rule `rule`.
    Ack { rule: u16, seq: u32 },
    /// An operator sent command `def` = `value` with an idempotency key
    /// (see [`super::commands`]).
    Command { def: u16, value: f64, key: &'a str },
    /// The source has no more data: the watermark moves to +infinity and every
    /// open window closes (replay of a finite file).
    EndOfInput,
}

/// No value yet.
pub const NO_TS: i64 = i64::MIN;

/// One sensor in a twin update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SensorUpdate {
    pub latest: Latest,
    pub quality: Quality,
    /// The twin's estimate (equal to the value without a deadband).
    pub estimate: f64,
}

/// Alert lifecycle transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Raised,
    Acknowledged,
    Cleared,
}

impl Transition {
    pub fn name(self) -> &'static str {
        match self {
            Transition::Raised => "raised",
            Transition::Acknowledged => "acknowledged",
            Transition::Cleared => "cleared",
        }
    }

    /// `asset/rule/seq/transition`: the id of this transition of alert
    /// `seq` of `rule` (alert sinks, rule commands, history).
    pub fn event_id(self, asset: &str, rule: &str, seq: u32) -> String {
        format!("{asset}/{rule}/{seq}/{}", self.name())
    }
}

/// What applying an input produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Window {
        slot: u16,
        start: i64,
        acc: Acc,
    },
    Alert {
        rule: u16,
        transition: Transition,
        seq: u32,
        /// Time of the evaluation that caused the transition.
        ts: i64,
        /// Values of the alert's inputs at that moment (same order as
        /// `RuleDef::inputs`).
        inputs: Vec<f64>,
    },
    /// Sensors whose value or quality changed in this input, with their quality and
    /// what rules read (the estimate with a deadband), and the twin's health.
    TwinUpdate {
        version: u64,
        changed: Vec<(u16, SensorUpdate)>,
        health: Health,
        /// The model's estimate, when the readings moved it.
        model: Option<Box<ModelUpdate>>,
    },
    /// An event for windows that had closed (it still counts everywhere
    /// else: latest value, joins, rules).
    Late {
        event: Event,
        watermark: i64,
    },
    /// Two readings paired by a join.
    Joined {
        join: u16,
        pair: JoinPair,
    },
    /// A rule's actuation command, sent when its alert was raised (or
    /// cleared, with `on_clear`).
    Command {
        rule: u16,
        /// The alert's sequence number and the transition that sent it: the
        /// command's id is `asset/rule/seq/transition`.
        seq: u32,
        transition: Transition,
        ts: i64,
        value: f64,
    },
    /// A tracked command ([`super::commands`]): its id is
    /// `asset/command/seq`.
    Actuate {
        def: u16,
        seq: u32,
        value: f64,
        origin: Origin,
    },
    /// A value other twins read through a relation changed: the engine
    /// relays it to them.
    Relay {
        sensor: u16,
        latest: Latest,
    },
}

impl Output {
    /// The output kind (sinks subscribe to kinds).
    pub fn kind(&self) -> Option<OutputKind> {
        match self {
            Output::Window { .. } => Some(OutputKind::Windows),
            Output::Alert { .. } => Some(OutputKind::Alerts),
            Output::TwinUpdate { .. } => Some(OutputKind::TwinUpdates),
            Output::Late { .. } => Some(OutputKind::LateEvents),
            Output::Joined { .. } => Some(OutputKind::Joins),
            Output::Command { .. } | Output::Actuate { .. } => Some(OutputKind::Commands),
            Output::Relay { .. } => Some(OutputKind::Relays),
        }
    }

    /// An alert transition's time (the event time that caused it).
    pub fn alert_ts(&self) -> Option<i64> {
        match self {
            Output::Alert { ts, .. } => Some(*ts),
            _ => None,
        }
    }
}

/// Applies `input` to `state`, appending outputs to `out`. `now_ms` is the
/// processing time (epoch ms); see the module documentation for what reads it.
pub fn apply(m: &TypeModel, state: &mut TwinState, input: Input<'_>, now_ms: i64, out: &mut Vec<Output>) {
    let mark = out.len();
    apply_input(m, state, input, now_ms, out);
    if !m.commands.is_empty() {
        issue_rule_commands(m, state, now_ms, out, mark);
    }
}

fn apply_input(m: &TypeModel, state: &mut TwinState, input: Input<'_>, now_ms: i64, out: &mut Vec<Output>) {
    match input {
        Input::Events(events) => {
            let track = m.emit.has(OutputKind::TwinUpdates);
            let mut changed: Vec<(u16, SensorUpdate)> = Vec::new();
            let updates_before = state.filter().map_or(0, |f| f.updates);
            let mut applied = Vec::new();
            for e in events {
                let quality = state.sensors[e.sensor as usize].quality;
                let derives = !m.derived_by_sensor[e.sensor as usize].is_empty();
                let updates = derives.then(|| state.filter().map_or(0, |f| f.updates));
                let became_latest = on_event(m, state, e, now_ms, out);
                if track {
                    applied.push((e.sensor, quality, became_latest));
                }
                if let Some(updates) = updates {
                    let estimated = state.filter().is_some_and(|f| f.updates != updates);
                    let took = derived::Took {
                        latest: became_latest,
                        estimated,
                    };
                    derived::follow(m, state, e, took, now_ms, out, &mut applied);
                    if !track {
                        applied.clear();
                    }
                }
                for (sensor, quality, became_latest) in applied.drain(..) {
                    // A reading may change the quality without the value (a
                    // discrepancy between sources, a stale sensor reporting).
                    let s = sensor as usize;
                    if became_latest || state.sensors[s].quality != quality {
                        let update = SensorUpdate {
                            latest: state.sensors[s].latest(),
                            quality: state.sensors[s].quality,
                            estimate: state.believed(m, s).unwrap_or(f64::NAN),
                        };
                        match changed.iter_mut().find(|(c, _)| *c == sensor) {
                            Some(c) => c.1 = update,
                            None => changed.push((sensor, update)),
                        }
                    }
                }
            }
            let model = match (&m.filter, state.filter()) {
                (Some(fm), Some(f)) if track && f.updates != updates_before => Some(Box::new(f.update_of(fm))),
                _ => None,
            };
            if track && (!changed.is_empty() || model.is_some()) {
                out.push(Output::TwinUpdate {
                    version: state.version,
                    changed,
                    health: state.health(m),
                    model,
                });
            }
        }
        Input::Related(values) => {
            for v in values {
                on_related(m, state, v, out);
            }
        }
        Input::Tick => on_tick(m, state, now_ms, out),
        Input::Ack { rule, seq } => {
            if let Some(a) = state.alerts.get_mut(rule as usize) {
                if a.active && a.seq == seq && !a.acked {
                    a.acked = true;
                    let inputs = alert_inputs(m, state, rule);
                    if m.history.as_ref().is_some_and(|h| h.events_keep_ms.is_some()) {
                        history::on_alert(state, rule, Transition::Acknowledged, now_ms, &inputs);
                    }
                    emit_alert(m, state, rule, Transition::Acknowledged, now_ms, inputs, out);
                }
            }
        }
        Input::Command { def, value, key } => {
            let order = commands::Order {
                def,
                value,
                key: Some(key),
                origin: Origin::Api,
            };
            commands::issue(m, state, order, now_ms, out);
        }
        Input::EndOfInput => close_windows(m, state, i64::MAX, out),
    }
}

/// Takes a reading into the model's filter; returns whether the estimate
/// moved.
fn on_model_reading(m: &TypeModel, st: &mut TwinState, e: &Event) -> bool {
    let fm = m.filter.as_ref().expect("called with a model");
    if fm.by_sensor[e.sensor as usize].is_none() {
        return false;
    }
    // The inputs on the stack for up to 4 of them (a reading allocates nothing).
    let mut stack = [f64::NAN; 4];
    let mut heap = Vec::new();
    let inputs: &mut [f64] = if fm.inputs.len() <= stack.len() {
        &mut stack[..fm.inputs.len()]
    } else {
        heap.resize(fm.inputs.len(), f64::NAN);
        &mut heap
    };
    st.model_inputs(fm, inputs);
    let filter = st.filter_mut().expect("a model gives its twins a filter");
    filter.on_reading(fm, e.sensor, e.ts, e.value, inputs) == Step::Updated
}

/// Applies one event; returns whether it changed the sensor's value.
#[inline]
fn on_event(m: &TypeModel, st: &mut TwinState, e: &Event, now: i64, out: &mut Vec<Output>) -> bool {
    if e.redelivered && !e.replayed && already_applied(m, st, e) {
        return false;
    }
    st.version += 1;
    st.stats.events += 1;
    let s = e.sensor as usize;
    let def = &m.sensor_defs[s];
    if let Some(h) = &m.history {
        if let Some(series) = h.by_sensor[s] {
            history::on_reading(h, st, series, e.ts, e.value);
        }
    }

    // (a) the sensor is heard from: fresh again (only timers read when)
    if m.timers {
        st.sensors.get_mut(s).seen = now;
    }
    if st.sensors[s].quality == Quality::Stale {
        st.sensors.get_mut(s).quality = Quality::Good;
        // Staleness is processing time: so are its transitions.
        if let Some(r) = def.stale_alert {
            set_alert(m, st, r, false, now, out);
        }
        for &r in &m.rules_by_stale[s] {
            evaluate_rule(m, st, r, e.ts, out);
        }
    }
    if st.offline {
        st.offline = false;
        if let Some(r) = m.offline_alert {
            set_alert(m, st, r, false, now, out);
        }
    }

    // (b) its value: by event time (ties: the later arrival), resolved
    // between sources when it has several
    let became_latest = match &def.sources {
        None => {
            let cur = st.sensors.get_mut(s);
            let newer = e.ts >= cur.ts;
            if newer {
                cur.ts = e.ts;
                cur.value = e.value;
                cur.source = e.source;
            }
            newer
        }
        Some(_) => {
            let mut changed = false;
            if let Some(k) = m.source_slot(s, e.source) {
                let r = &mut ext_mut!(st).by_source[k];
                if m.timers {
                    r.seen = now;
                }
                if e.ts >= r.ts {
                    r.ts = e.ts;
                    r.value = e.value;
                    changed = resolve(m, st, s, now, e.ts, out);
                }
            }
            changed
        }
    };
    if became_latest {
        reconcile(m, st, s, now);
    }
    // (b') the model takes the reading into its estimate (every reading of
    // an observed sensor: the filter fuses its sources)
    let estimated = m.filter.is_some() && on_model_reading(m, st, e);
    if estimated {
        if let Some(h) = m.history.as_ref().filter(|h| !h.estimates.is_empty()) {
            history::on_estimate(h, st, e.ts);
        }
    }

    // (c) windows, judged against the watermark before this event
    let wm = st.watermark(m);
    let mut late = false;
    for &slot in &m.slots_by_sensor[s] {
        let w = &m.windows[m.slots[slot as usize].window as usize];
        w.for_each_start(e.ts, |start| {
            let last_ms = start + w.size_ms - 1;
            if last_ms <= wm {
                late = true;
            } else {
                add_to_window(&mut st.open, last_ms, slot, e);
            }
        });
    }
    if late {
        st.stats.late += 1;
        if m.emit.has(OutputKind::LateEvents) {
            out.push(Output::Late {
                event: *e,
                watermark: wm,
            });
        }
    }

    // then the watermark advances, closing what it passed
    if e.ts > st.max_ts {
        st.max_ts = e.ts;
        let wm = st.watermark(m);
        if st.open.first().is_some_and(|w| w.last_ms <= wm) {
            close_windows(m, st, wm, out);
        }
    }

    // (d) joins pair this reading with the other side's latest
    for &(j, left) in &m.joins_by_sensor[s] {
        let other = match m.joins[j as usize].right {
            _ if !left => st.sensors[m.joins[j as usize].left as usize].latest(),
            super::schema::JoinRight::Sensor(r) => st.sensors[r as usize].latest(),
            super::schema::JoinRight::Related(k) => ext!(st).related[k as usize],
        };
        let mine = Latest {
            ts: e.ts,
            value: e.value,
        };
        let (l, r) = if left { (mine, other) } else { (other, mine) };
        try_join(m, st, j, l, r, out);
    }

    // (e) rules on the sensor's value
    if became_latest {
        if m.relayed[s] {
            out.push(Output::Relay {
                sensor: e.sensor,
                latest: st.sensors[s].latest(),
            });
        }
        for &r in &m.rules_by_sensor[s] {
            evaluate_rule(m, st, r, e.ts, out);
        }
    }

    if estimated {
        for &r in &m.rules_by_model {
            evaluate_rule(m, st, r, e.ts, out);
        }
    }

    // (f) commands the reading confirms (any reading, latest or not: the
    // device reported it)
    if !m.commands_by_sensor[s].is_empty() {
        commands::on_reading(m, st, e.sensor, e.value, now, out);
    }
    became_latest
}
