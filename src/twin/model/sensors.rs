//! Readings and sensor values: an [`Event`] and redelivery, the value of a
//! sensor with several sources (conflict resolution, the discrepancy alert,
//! [`Quality::Suspect`]), the deadband [`Estimate`] and the sync lag.
//!
//! The path of one event (freshness, value, windows, joins, rules, commands)
//! is `on_event` in `mod.rs`; its value step (b) calls into this file.

use serde::{Deserialize, Serialize};

use super::rules::set_alert;
use super::{Output, TwinState, NO_TS};
use crate::topology::Resolve;
use crate::twin::schema::TypeModel;

/// One decoded reading, routed to the twin of its asset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// Event time, epoch milliseconds.
    pub ts: i64,
    pub value: f64,
    /// Sensor index within the asset type.
    pub sensor: u16,
    /// Index of the topology source that produced the event.
    pub source: u16,
    /// Position of the record in its source (line number, offset).
    pub origin: u64,
    /// The source says it may have delivered this reading before (MQTT
    /// DUP): applied only if it is newer than what the twin holds from that
    /// source for the sensor. Outputs carry the mark (an edge's forwarded
    /// events: the cluster recognises them the same way).
    pub redelivered: bool,
    /// Replayed from the source's inbox after a crash: the durable state
    /// does not hold it (the source knows by position), so it is applied
    /// whatever its time; it may have left the node before the crash, so it
    /// is also `redelivered` for the outputs.
    pub replayed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latest {
    pub ts: i64,
    pub value: f64,
}

impl Latest {
    /// No reading yet. (Rules read an unset value as NaN, see `TwinEnv`.)
    pub const NONE: Latest = Latest { ts: NO_TS, value: 0.0 };

    pub fn is_set(&self) -> bool {
        self.ts != NO_TS
    }
}

/// Data quality of a sensor's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    #[default]
    Good,
    /// Not heard from for `stale_after` (processing time).
    Stale,
    /// Its sources disagree by more than the tolerance.
    Suspect,
}

/// A sensor as the twin sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SensorState {
    /// The sensor's value (after conflict resolution) and its event time.
    pub ts: i64,
    pub value: f64,
    /// Processing time of the last reading (`NO_TS`: none yet).
    pub seen: i64,
    /// Source of the value.
    pub source: u16,
    pub quality: Quality,
}

impl SensorState {
    pub const NONE: SensorState = SensorState {
        ts: NO_TS,
        value: 0.0,
        seen: NO_TS,
        source: 0,
        quality: Quality::Good,
    };

    pub fn is_set(&self) -> bool {
        self.ts != NO_TS
    }

    pub fn latest(&self) -> Latest {
        Latest {
            ts: self.ts,
            value: self.value,
        }
    }
}

/// One source's latest reading of a multi-source sensor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SourceReading {
    pub ts: i64,
    pub value: f64,
    /// Processing time it arrived.
    pub seen: i64,
}

impl SourceReading {
    pub const NONE: SourceReading = SourceReading {
        ts: NO_TS,
        value: 0.0,
        seen: NO_TS,
    };
}

/// The value the twin believes for a sensor with a deadband (seed 002: the
/// twin state y(t) moves to the measured x(t) only when |x - y| > deadband).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub value: f64,
    /// Event time of the reading it was last reconciled to.
    pub ts: i64,
}

impl Estimate {
    pub const NONE: Estimate = Estimate { value: 0.0, ts: NO_TS };
}

impl TwinState {
    /// The value rules read for sensor `s`: its estimate when it has a
    /// deadband, else its value.
    pub fn believed(&self, m: &TypeModel, s: usize) -> Option<f64> {
        match m.sensor_defs[s].estimate {
            Some(e) => {
                let e = self.estimates()[e as usize];
                (e.ts != NO_TS).then_some(e.value)
            }
            None => self.sensors[s].is_set().then_some(self.sensors[s].value),
        }
    }
}

/// `now - ts` in ms, saturated to `i32`.
fn lag(now: i64, ts: i64) -> i32 {
    now.saturating_sub(ts)
        .clamp(i64::from(i32::MIN + 1), i64::from(i32::MAX)) as i32
}

/// A redelivered reading the twin already reflects: its source's reading of
/// the sensor is at least as new (readings of one sensor from one source
/// arrive in order: MQTT keeps order per topic).
pub(super) fn already_applied(m: &TypeModel, st: &TwinState, e: &Event) -> bool {
    let s = e.sensor as usize;
    match m.source_slot(s, e.source) {
        Some(k) => {
            let r = st.by_source()[k];
            r.ts != NO_TS && e.ts <= r.ts
        }
        None => st.sensors[s].is_set() && e.ts <= st.sensors[s].ts,
    }
}

/// Moves the estimate of sensor `s` to its value when it differs by more
/// than the deadband; records the sync lag when the twin reflects a reading.
pub(super) fn reconcile(m: &TypeModel, st: &mut TwinState, s: usize, now: i64) {
    let sensor = st.sensors[s];
    match m.sensor_defs[s].estimate {
        None => st.sync_lag_ms = lag(now, sensor.ts),
        Some(e) => {
            let est = &mut ext_mut!(st).estimates[e as usize];
            if est.ts == NO_TS || (sensor.value - est.value).abs() > m.sensor_defs[s].deadband {
                *est = Estimate {
                    value: sensor.value,
                    ts: sensor.ts,
                };
                st.sync_lag_ms = lag(now, sensor.ts);
            }
        }
    }
}

/// Resolves multi-source sensor `s` from its sources' latest readings;
/// returns whether its value changed. Raises or clears the discrepancy alert.
pub(super) fn resolve(m: &TypeModel, st: &mut TwinState, s: usize, now: i64, ts: i64, out: &mut Vec<Output>) -> bool {
    let def = &m.sensor_defs[s];
    let set = def.sources.as_ref().expect("called for multi-source sensors");
    let first = set.first as usize;
    let readings = &ext!(st).by_source[first..first + set.sources.len()];
    let fresh = |r: &SourceReading| r.ts != NO_TS && def.stale_after_ms.is_none_or(|st| now - r.seen < st);
    // Candidates: fresh sources; when none is fresh, every source with a value.
    let any_fresh = readings.iter().any(fresh);
    let usable = |i: usize| {
        let r = &readings[i];
        r.ts != NO_TS && (!any_fresh || fresh(r))
    };
    let n = readings.len();
    let pick: Option<(i64, f64, u16)> = match set.policy {
        Resolve::Latest => (0..n)
            .filter(|&i| usable(i))
            .max_by_key(|&i| (readings[i].ts, readings[i].seen, std::cmp::Reverse(i)))
            .map(|i| (readings[i].ts, readings[i].value, set.sources[i].source)),
        Resolve::Priority => (0..n)
            .find(|&i| usable(i))
            .map(|i| (readings[i].ts, readings[i].value, set.sources[i].source)),
        Resolve::Confidence => (0..n)
            .filter(|&i| usable(i))
            .max_by(|&a, &b| {
                let (sa, sb) = (&set.sources[a], &set.sources[b]);
                (sa.measured, sa.trust, readings[a].ts)
                    .partial_cmp(&(sb.measured, sb.trust, readings[b].ts))
                    .unwrap_or(std::cmp::Ordering::Equal)
                    // equal rank: the earlier-declared source
                    .then(b.cmp(&a))
            })
            .map(|i| (readings[i].ts, readings[i].value, set.sources[i].source)),
        Resolve::Median => {
            let mut vals: Vec<(f64, i64)> = (0..n)
                .filter(|&i| usable(i))
                .map(|i| (readings[i].value, readings[i].ts))
                .collect();
            vals.sort_by(|a, b| a.0.total_cmp(&b.0));
            let k = vals.len();
            (k > 0).then(|| {
                let v = if k % 2 == 1 {
                    vals[k / 2].0
                } else {
                    (vals[k / 2 - 1].0 + vals[k / 2].0) / 2.0
                };
                let ts = vals.iter().map(|v| v.1).max().unwrap_or(NO_TS);
                (ts, v, u16::MAX)
            })
        }
    };
    // Discrepancy: the spread of the fresh sources against the tolerance,
    // with hysteresis (raise above `tolerance`, clear at `clear_tolerance`).
    if let (Some(tol), Some(r)) = (set.tolerance, set.discrepancy_alert) {
        let (lo, hi) = (0..n)
            .filter(|&i| fresh(&readings[i]))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), i| {
                (lo.min(readings[i].value), hi.max(readings[i].value))
            });
        let spread = if hi >= lo { hi - lo } else { 0.0 };
        let active = st.alerts[r as usize].active;
        if !active && spread > tol {
            st.sensors[s].quality = Quality::Suspect;
            set_alert(m, st, r, true, ts, out);
        } else if active && spread <= set.clear_tolerance {
            if st.sensors[s].quality == Quality::Suspect {
                st.sensors[s].quality = Quality::Good;
            }
            set_alert(m, st, r, false, ts, out);
        } else if active {
            let a = &mut st.alerts[r as usize];
            a.firings += 1;
            a.last_ts = ts;
            a.last_value = spread;
        }
    }
    let Some((ts, value, source)) = pick else {
        return false;
    };
    let cur = &mut st.sensors[s];
    let changed = cur.ts != ts || cur.value.to_bits() != value.to_bits();
    cur.ts = ts;
    cur.value = value;
    cur.source = source;
    changed
}
