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
#[derive(Debug, Clone, Copy)]
pub struct SensorState {
    /// The sensor's value (after conflict resolution) and its event time.
    pub ts: i64,
    pub value: f64,
    /// Processing time of the last reading (`NO_TS`: none yet).
    pub seen: i64,
    /// Source of the value.
    pub source: u16,
    pub quality: Quality,
    /// Changed since the twin's last record (see [`Sensors`]); in the
    /// struct's padding, so a twin is no larger for it. Private: a sensor
    /// built elsewhere ([`SensorState::NONE`], [`SensorState::new`]) is
    /// changed, so writing a whole one marks it too.
    changed: bool,
    /// Saved in the undo log of the batch being applied ([`SensorUndo`]),
    /// in the padding too; never set outside a batch.
    saved: bool,
}

// The mark fits in the padding: a sensor is 32 bytes with it as without.
const _: () = assert!(std::mem::size_of::<SensorState>() == 32);

impl SensorState {
    pub const NONE: SensorState = SensorState {
        ts: NO_TS,
        value: 0.0,
        seen: NO_TS,
        source: 0,
        quality: Quality::Good,
        changed: true,
        saved: false,
    };

    /// A sensor with a value (changed since the twin's last record).
    pub fn new(ts: i64, value: f64, seen: i64, source: u16, quality: Quality) -> SensorState {
        SensorState {
            ts,
            value,
            seen,
            source,
            quality,
            changed: true,
            saved: false,
        }
    }

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

/// Two sensors are equal when their values are: whether one changed since
/// a record is bookkeeping, not state.
impl PartialEq for SensorState {
    fn eq(&self, other: &SensorState) -> bool {
        let SensorState {
            ts,
            value,
            seen,
            source,
            quality,
            changed: _,
            saved: _,
        } = *self;
        ts == other.ts
            && value == other.value
            && seen == other.seen
            && source == other.source
            && quality == other.quality
    }
}

/// A twin's sensors, each marked when it changed since the twin's last
/// record: a checkpoint of a twin with many sensors writes only those
/// (issue 28's incremental records). Read as a slice; written only through
/// [`Sensors::get_mut`], which marks the sensor, so no write can miss its
/// mark (a missed one would lose the sensor's value at a restore). A new
/// twin's sensors are all marked: its first record is whole.
///
/// The same writes keep the undo log of a supervised batch
/// ([`SensorUndo`]) when the twin's sensors are many.
#[derive(Debug, PartialEq)]
pub struct Sensors(Box<[SensorState]>);

/// A copy is not in any batch's undo log.
impl Clone for Sensors {
    fn clone(&self) -> Sensors {
        let mut copy = Sensors(self.0.clone());
        for s in copy.0.iter_mut() {
            s.saved = false;
        }
        copy
    }
}

impl Sensors {
    /// `n` sensors without values, all changed.
    pub fn new(n: usize) -> Sensors {
        Sensors(vec![SensorState::NONE; n].into_boxed_slice())
    }

    /// Sensor `s`, to write: marked as changed (and saved first, in a
    /// batch that keeps an undo log of these sensors).
    pub fn get_mut(&mut self, s: usize) -> &mut SensorState {
        self.mark(s);
        &mut self.0[s]
    }

    /// Marks sensor `s` as changed without a write to its value (its
    /// deadband estimate moved).
    pub fn mark(&mut self, s: usize) {
        if !self.0[s].saved {
            SensorUndo::save(self, s);
        }
        self.0[s].changed = true;
    }

    /// Which sensors changed since the last [`Sensors::take_changed`].
    pub fn changed(&self) -> Changed {
        let mut c = Changed::default();
        for (s, sensor) in self.0.iter().enumerate() {
            if sensor.changed {
                c.mark(s);
            }
        }
        c
    }

    /// Which sensors changed, the marks cleared: the twin's record is being
    /// written.
    pub fn take_changed(&mut self) -> Changed {
        let c = self.changed();
        for sensor in self.0.iter_mut() {
            sensor.changed = false;
        }
        c
    }

    /// Takes `src`'s values and marks, in `self`'s allocation (outside a
    /// batch: the full backup of a twin with few sensors).
    pub fn copy_from(&mut self, src: &Sensors) {
        self.0.clone_from(&src.0);
    }

    /// How many of the sensors are stale.
    pub fn stale(&self) -> usize {
        self.0.iter().filter(|s| s.quality == Quality::Stale).count()
    }
}

/// The undo log of a supervised batch: the sensors it changes, each saved
/// on its first change, so a panic puts those back rather than a copy of
/// every sensor made before each batch (issue 28, item 2). Worth it for a
/// twin of many sensors of which a batch changes a few
/// ([`SensorsBackup::of`](super::SensorsBackup::of) picks it by the type's sensor count).
///
/// One per thread: a thread applies one twin's batch at a time, and its
/// sensors' writes ([`Sensors::get_mut`], [`Sensors::mark`]) cannot reach a
/// log they do not carry (the twin's size is budgeted). Only the armed
/// twin's sensors are saved (by their slice's address): a copy of a twin
/// made and changed during the batch is not.
pub struct SensorUndo;

struct UndoLog {
    /// The armed sensors' slice; null when no batch logs.
    armed: std::cell::Cell<*const SensorState>,
    saved: std::cell::RefCell<Vec<(u32, SensorState)>>,
}

thread_local! {
    static UNDO: UndoLog = const {
        UndoLog {
            armed: std::cell::Cell::new(std::ptr::null()),
            saved: std::cell::RefCell::new(Vec::new()),
        }
    };
}

impl SensorUndo {
    /// A batch begins: `sensors`' first changes are saved from now on.
    pub fn arm(sensors: &Sensors) {
        UNDO.with(|u| {
            u.saved.borrow_mut().clear();
            u.armed.set(sensors.0.as_ptr());
        });
    }

    /// Saves sensor `s` of `sensors` before its first change, when they are
    /// the armed ones.
    #[inline(never)]
    fn save(sensors: &mut Sensors, s: usize) {
        UNDO.with(|u| {
            if std::ptr::eq(u.armed.get(), sensors.0.as_ptr()) {
                u.saved.borrow_mut().push((s as u32, sensors.0[s]));
                sensors.0[s].saved = true;
            }
        });
    }

    /// The batch succeeded: the log is dropped and `sensors`' saves
    /// cleared. Returns how many more of them are stale than before it.
    pub fn keep(sensors: &mut Sensors) -> i64 {
        UNDO.with(|u| {
            u.armed.set(std::ptr::null());
            let mut stale = 0i64;
            // Earliest first: a sensor saved twice (a whole sensor written
            // over its flag) counts once, from its state before the batch.
            for &(s, before) in u.saved.borrow().iter() {
                let now = &mut sensors.0[s as usize];
                if now.saved {
                    now.saved = false;
                    stale += i64::from(now.quality == Quality::Stale) - i64::from(before.quality == Quality::Stale);
                }
            }
            u.saved.borrow_mut().clear();
            stale
        })
    }

    /// The batch panicked: `sensors` get back what they were before it.
    pub fn undo(sensors: &mut Sensors) {
        UNDO.with(|u| {
            u.armed.set(std::ptr::null());
            // Latest first, so a sensor saved twice ends as it began.
            for &(s, before) in u.saved.borrow().iter().rev() {
                sensors.0[s as usize] = before;
            }
            u.saved.borrow_mut().clear();
        });
    }
}

impl std::ops::Deref for Sensors {
    type Target = [SensorState];

    fn deref(&self) -> &[SensorState] {
        &self.0
    }
}

/// Which of a twin's sensors changed: a bit per sensor for the first 64;
/// a write to any later one counts as all (its record is written whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Changed(u64);

impl Changed {
    pub const ALL: Changed = Changed(u64::MAX);

    fn mark(&mut self, s: usize) {
        self.0 |= if s < 64 { 1 << s } else { u64::MAX };
    }

    /// Everything counts as changed: only a whole record will do.
    pub fn is_all(self) -> bool {
        self == Changed::ALL
    }

    /// How many sensors changed (64 for [`Changed::ALL`]).
    pub fn count(self) -> u32 {
        self.0.count_ones()
    }

    /// The changed sensors in order (of the first 64).
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            (bits != 0).then(|| {
                let s = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                s
            })
        })
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
                // The estimate is stored with its sensor.
                st.sensors.mark(s);
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
            st.sensors.get_mut(s).quality = Quality::Suspect;
            set_alert(m, st, r, true, ts, out);
        } else if active && spread <= set.clear_tolerance {
            if st.sensors[s].quality == Quality::Suspect {
                st.sensors.get_mut(s).quality = Quality::Good;
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
    let cur = st.sensors.get_mut(s);
    let changed = cur.ts != ts || cur.value.to_bits() != value.to_bits();
    cur.ts = ts;
    cur.value = value;
    cur.source = source;
    changed
}
