//! What a twin logs for its history: each reading of a kept series (and
//! the model's estimate after each reading it takes), each alert
//! transition and each command. Pure: the log is part of the state, rolled
//! back with it, and the twin's snapshot hands it to the checkpoint (where
//! the engine folds it into pages), like the replay digest.

use crate::topology::spec::{HistorySpec, SeriesOf};

use super::{Transition, TwinState};
use crate::twin::commands::Command;

/// A type's history, compiled.
#[derive(Debug, Clone)]
pub struct HistoryModel {
    /// Series names (a sensor's, or `est.<state>`), as their keys hold them.
    pub series: Box<[Box<str>]>,
    /// Per sensor: its series, if kept.
    pub by_sensor: Box<[Option<u16>]>,
    /// `(state, series)` of the kept estimates.
    pub estimates: Box<[(u16, u16)]>,
    /// Retention of the raw tier (ms), if kept.
    pub raw_keep_ms: Option<i64>,
    /// `(width, keep)` of each downsampled tier (ms), finest first.
    pub tiers: Box<[(i64, i64)]>,
    /// Retention of alert transitions and commands (ms), if kept.
    pub events_keep_ms: Option<i64>,
}

impl HistoryModel {
    pub fn of(spec: &HistorySpec, n_sensors: usize) -> HistoryModel {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let mut by_sensor = vec![None; n_sensors];
        let mut estimates = Vec::new();
        for (i, s) in spec.series.iter().enumerate() {
            match s.of {
                SeriesOf::Sensor(k) => by_sensor[k] = Some(i as u16),
                SeriesOf::Estimate(k) => estimates.push((k as u16, i as u16)),
            }
        }
        HistoryModel {
            series: spec.series.iter().map(|s| s.name.as_str().into()).collect(),
            by_sensor: by_sensor.into_boxed_slice(),
            estimates: estimates.into_boxed_slice(),
            raw_keep_ms: spec.raw.map(ms),
            tiers: spec.tiers.iter().map(|t| (ms(t.every), ms(t.keep))).collect(),
            events_keep_ms: spec.events.map(ms),
        }
    }

    /// Whether the type keeps any series.
    pub fn keeps_series(&self) -> bool {
        !self.series.is_empty() && (self.raw_keep_ms.is_some() || !self.tiers.is_empty())
    }

    /// Every tier `(width, keep)`, the raw one (width 0) first.
    pub fn all_tiers(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.raw_keep_ms
            .map(|k| (0, k))
            .into_iter()
            .chain(self.tiers.iter().copied())
    }
}

/// One logged item.
#[derive(Debug, Clone, PartialEq)]
pub enum Logged {
    Reading {
        series: u16,
        ts: i64,
        value: f64,
    },
    Alert {
        rule: u16,
        transition: Transition,
        seq: u32,
        ts: i64,
        inputs: Box<[f64]>,
    },
    /// A rule's untracked command.
    RuleCommand {
        rule: u16,
        seq: u32,
        transition: Transition,
        ts: i64,
        value: f64,
    },
    /// A tracked command as it is now (issued, or finished).
    Command(Box<Command>),
}

fn log(st: &mut TwinState, item: Logged) {
    if let Some(x) = st.ext.as_deref_mut() {
        x.history.push(item);
    }
}

/// A reading of sensor `s` was applied.
#[inline]
pub(super) fn on_reading(st: &mut TwinState, series: u16, ts: i64, value: f64) {
    log(st, Logged::Reading { series, ts, value });
}

/// The model took a reading at `ts`: its estimates of the kept states.
pub(super) fn on_estimate(h: &HistoryModel, st: &mut TwinState, ts: i64) {
    for &(state, series) in h.estimates.iter() {
        let Some(value) = st.filter().map(|f| f.x[state as usize]) else {
            return;
        };
        log(st, Logged::Reading { series, ts, value });
    }
}

pub(in crate::twin) fn on_alert(st: &mut TwinState, rule: u16, transition: Transition, ts: i64, inputs: &[f64]) {
    let seq = st.alerts[rule as usize].seq;
    log(
        st,
        Logged::Alert {
            rule,
            transition,
            seq,
            ts,
            inputs: inputs.into(),
        },
    );
}

pub(in crate::twin) fn on_rule_command(st: &mut TwinState, rule: u16, transition: Transition, ts: i64, value: f64) {
    let seq = st.alerts[rule as usize].seq;
    log(
        st,
        Logged::RuleCommand {
            rule,
            seq,
            transition,
            ts,
            value,
        },
    );
}

pub(in crate::twin) fn on_command(st: &mut TwinState, c: &Command) {
    log(st, Logged::Command(Box::new(c.clone())));
}
