//! Derived sensors (`expr`, `integral`, `rate` in the topology): values the
//! twin computes from its other values, applied as readings of their own.
//!
//! When a reading changes a value a derived sensor reads, the twin computes
//! the derived value at the reading's event time and applies it as a
//! reading of the derived sensor, through the same path as a measured one:
//! latest value, windows, joins, rules, relays and twin updates treat it
//! exactly alike. A derived sensor reads only sensors declared before it, so
//! a chain of them ends.
//!
//! * `expr` is recomputed on every reading that becomes the latest value of
//!   a sensor it reads, and on every reading the model takes in when it
//!   reads the model's estimates;
//! * `integral` adds each reading's value times the event time until the
//!   next reading (sample and hold), in units of `per`; its first reading
//!   starts it at 0;
//! * `rate` is the change between two consecutive readings over the time
//!   between them, per second; its first reading only starts it.
//!
//! A reading older than the last one an `integral` or a `rate` took is not
//! taken (it would rewrite the past); it still reaches the sensor's own
//! value and windows.

use serde::{Deserialize, Serialize};

use super::rules::TwinEnv;
use super::{on_event, Event, Output, Quality, TwinState, NO_TS};
use crate::topology::expr::Num;
use crate::topology::{AssetType, Derive, Slot};
use crate::twin::schema::{LocalSlot, TypeModel};

/// A derived sensor of the type, compiled.
#[derive(Debug, Clone)]
pub struct DerivedDef {
    pub sensor: u16,
    pub kind: DerivedKind,
}

#[derive(Debug, Clone)]
pub enum DerivedKind {
    Expr {
        num: Num<LocalSlot>,
        /// It reads the model's estimates: recomputed when the model moves.
        reads_model: bool,
    },
    Integral {
        input: u16,
        per_ms: f64,
        /// Index into the twin's [`DerivedState`]s.
        state: u16,
    },
    Rate {
        input: u16,
        state: u16,
    },
}

/// What an `integral` or a `rate` keeps between readings: the last reading
/// it took, and the integral so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DerivedState {
    pub ts: i64,
    pub value: f64,
    pub acc: f64,
}

impl DerivedState {
    pub const NONE: DerivedState = DerivedState {
        ts: NO_TS,
        value: f64::NAN,
        acc: 0.0,
    };

    /// Takes reading `(ts, v)` of sensor `s` if it is the `input` and later
    /// than the last reading taken; returns the state before it (`ts`
    /// `NO_TS`: this is the first), or `None` when it is not taken.
    fn take(&mut self, input: u16, s: u16, ts: i64, v: f64) -> Option<DerivedState> {
        if input != s || (self.ts != NO_TS && ts <= self.ts) {
            return None;
        }
        let before = *self;
        (self.ts, self.value) = (ts, v);
        Some(before)
    }
}

impl DerivedDef {
    /// Index of its [`DerivedState`] (`integral` and `rate`).
    pub fn state(&self) -> Option<u16> {
        match self.kind {
            DerivedKind::Integral { state, .. } | DerivedKind::Rate { state, .. } => Some(state),
            DerivedKind::Expr { .. } => None,
        }
    }
}

/// The derived sensors of `ty`, the ones each sensor's readings trigger,
/// and how many keep a [`DerivedState`].
pub fn build(ty: &AssetType, observed: &[usize]) -> (Vec<DerivedDef>, Vec<Vec<u16>>, usize) {
    let mut defs = Vec::new();
    let mut by_sensor = vec![Vec::new(); ty.sensors.len()];
    let mut n_state = 0u16;
    for (s, spec) in ty.sensors.iter().enumerate() {
        let Some(derive) = &spec.derive else { continue };
        let d = defs.len() as u16;
        let mut trigger = |input: usize| {
            if !by_sensor[input].contains(&d) {
                by_sensor[input].push(d);
            }
        };
        let kind = match derive {
            Derive::Expr(num) => {
                let mut reads_model = false;
                num.visit_slots(&mut |slot| match slot {
                    Slot::Latest { sensor } => trigger(sensor as usize),
                    _ => reads_model = true,
                });
                if reads_model {
                    observed.iter().for_each(|&o| trigger(o));
                }
                let num = num.map(&mut |slot| match slot {
                    Slot::Latest { sensor } => LocalSlot::Latest(sensor),
                    Slot::Model(m) => LocalSlot::Model(m),
                    other => unreachable!("validated: a derived expression reads sensors and the model, not {other:?}"),
                });
                DerivedKind::Expr { num, reads_model }
            }
            Derive::Integral { sensor, per } => {
                trigger(*sensor);
                n_state += 1;
                DerivedKind::Integral {
                    input: *sensor as u16,
                    per_ms: per.as_secs_f64() * 1000.0,
                    state: n_state - 1,
                }
            }
            Derive::Rate { sensor } => {
                trigger(*sensor);
                n_state += 1;
                DerivedKind::Rate {
                    input: *sensor as u16,
                    state: n_state - 1,
                }
            }
        };
        defs.push(DerivedDef { sensor: s as u16, kind });
    }
    (defs, by_sensor, n_state as usize)
}

/// A reading applied: (sensor, its quality before, it became the latest).
pub(super) type Applied = (u16, Quality, bool);

/// What a reading did: it became its sensor's value; the model took it in.
#[derive(Debug, Clone, Copy)]
pub(super) struct Took {
    pub latest: bool,
    pub estimated: bool,
}

/// After reading `e` was applied, computes the derived sensors it triggers
/// and applies each as a reading, then theirs; appends what it applied to
/// `applied`.
pub(super) fn follow(
    m: &TypeModel,
    st: &mut TwinState,
    e: &Event,
    took: Took,
    now: i64,
    out: &mut Vec<Output>,
    applied: &mut Vec<Applied>,
) {
    let mut work = vec![(e.sensor, e.value, took)];
    while let Some((s, v, took)) = work.pop() {
        for &d in &m.derived_by_sensor[s as usize] {
            let def = &m.derived[d as usize];
            let value = match &def.kind {
                DerivedKind::Expr { num, reads_model } => {
                    if !(took.latest || *reads_model && took.estimated) {
                        continue;
                    }
                    num.eval(&TwinEnv(m, st))
                }
                DerivedKind::Integral { input, per_ms, state } => {
                    let ds = &mut ext_mut!(st).derived[*state as usize];
                    let Some(prev) = ds.take(*input, s, e.ts, v) else {
                        continue;
                    };
                    if prev.ts != NO_TS && prev.value.is_finite() {
                        ds.acc += prev.value * (e.ts - prev.ts) as f64 / per_ms;
                    }
                    ds.acc
                }
                DerivedKind::Rate { input, state } => {
                    let ds = &mut ext_mut!(st).derived[*state as usize];
                    let Some(prev) = ds.take(*input, s, e.ts, v) else {
                        continue;
                    };
                    if prev.ts == NO_TS {
                        f64::NAN
                    } else {
                        (v - prev.value) / ((e.ts - prev.ts) as f64 / 1000.0)
                    }
                }
            };
            if !value.is_finite() {
                continue;
            }
            let derived = Event {
                ts: e.ts,
                value,
                sensor: def.sensor,
                source: e.source,
                origin: e.origin,
                redelivered: false,
                replayed: false,
            };
            let quality = st.sensors[def.sensor as usize].quality;
            let became = on_event(m, st, &derived, now, out);
            applied.push((def.sensor, quality, became));
            // A derived sensor is never observed by the model.
            let took = Took {
                latest: became,
                estimated: false,
            };
            work.push((def.sensor, value, took));
        }
    }
}

#[cfg(test)]
#[path = "derived_tests.rs"]
mod tests;
