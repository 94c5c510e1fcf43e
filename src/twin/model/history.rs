//! What a twin logs for its history ([`HistoryLog`]): each reading of a
//! kept series (and the model's estimate after each reading it takes),
//! folded at once into a partial bucket per downsampled tier (the bucket
//! being filled: its last partial of that series and tier) and kept as it
//! is for the raw tier; each alert transition and each command. Pure: the
//! log is part of the state, rolled back with it, and the twin's snapshot
//! hands it to the checkpoint (where the engine folds it into pages), like
//! the replay digest.
//!
//! A reading goes into a tier only while its bucket is within retention by
//! the twin's own latest event time; the history clock (the node's latest)
//! is never behind that, so what is skipped here would be hidden anyway.

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

/// What a twin logged for history since its last snapshot.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryLog {
    /// Partial buckets of the downsampled tiers, in the order they were
    /// started: a reading folds into the last one of its series and tier
    /// when that is its bucket, else starts another (a late reading, a new
    /// bucket). Mutated in place: the supervision backup copies it.
    pub partials: Vec<Partial>,
    /// Readings for the raw tier, in arrival order (append-only).
    pub raw: Vec<RawReading>,
    /// Alert transitions and commands, in order (append-only).
    pub events: Vec<Logged>,
}

impl HistoryLog {
    pub fn is_empty(&self) -> bool {
        self.partials.is_empty() && self.raw.is_empty() && self.events.is_empty()
    }
}

/// The readings of one series in one bucket of a downsampled tier (the
/// same fold as the store's `page::Bucket`, which the checkpoint turns it
/// into: ties of `first` go to the earlier reading, of `last` to the later).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Partial {
    pub series: u16,
    /// Index into [`HistoryModel::tiers`].
    pub tier: u8,
    pub start: i64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first_ts: i64,
    pub first: f64,
    pub last_ts: i64,
    pub last: f64,
}

impl Partial {
    fn new(series: u16, tier: u8, start: i64, ts: i64, value: f64) -> Partial {
        Partial {
            series,
            tier,
            start,
            count: 1,
            sum: value,
            min: value,
            max: value,
            first_ts: ts,
            first: value,
            last_ts: ts,
            last: value,
        }
    }

    fn add(&mut self, ts: i64, value: f64) {
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if ts < self.first_ts {
            (self.first_ts, self.first) = (ts, value);
        }
        if ts >= self.last_ts {
            (self.last_ts, self.last) = (ts, value);
        }
    }
}

/// A reading for the raw tier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawReading {
    pub series: u16,
    pub ts: i64,
    pub value: f64,
}

/// One logged alert transition or command.
#[derive(Debug, Clone, PartialEq)]
pub enum Logged {
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
    st.history.get_or_insert_with(Default::default).events.push(item);
}

/// A reading of a kept series was applied.
#[inline]
pub(super) fn on_reading(h: &HistoryModel, st: &mut TwinState, series: u16, ts: i64, value: f64) {
    let latest = st.max_ts.max(ts);
    let log = st.history.get_or_insert_with(Default::default);
    for (t, &(width, keep)) in h.tiers.iter().enumerate() {
        let start = ts.div_euclid(width) * width;
        if start.saturating_add(width) <= latest.saturating_sub(keep) {
            continue;
        }
        let t = t as u8;
        match log
            .partials
            .iter_mut()
            .rev()
            .find(|p| p.series == series && p.tier == t)
        {
            Some(p) if p.start == start => p.add(ts, value),
            _ => log.partials.push(Partial::new(series, t, start, ts, value)),
        }
    }
    if h.raw_keep_ms.is_some_and(|keep| ts > latest.saturating_sub(keep)) {
        log.raw.push(RawReading { series, ts, value });
    }
}

/// The model took a reading at `ts`: its estimates of the kept states.
pub(super) fn on_estimate(h: &HistoryModel, st: &mut TwinState, ts: i64) {
    for &(state, series) in h.estimates.iter() {
        let Some(value) = st.filter().map(|f| f.x[state as usize]) else {
            return;
        };
        on_reading(h, st, series, ts, value);
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
