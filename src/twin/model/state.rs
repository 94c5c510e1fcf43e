//! The state of a twin: [`TwinState`], the optional [`TwinExt`], their
//! construction, back-up and roll-back, accessors, health and counters.

use serde::{Deserialize, Serialize};

use super::derived::DerivedState;
use super::filter::{FilterModel, FilterState};
use super::history::HistoryLog;
use super::{
    Acc, AlertState, ClosedDigest, Estimate, JoinPair, Latest, OpenWindow, Quality, SensorUndo, Sensors, SourceReading,
    NO_TS,
};
use crate::topology::ModelSlot;
use crate::twin::commands::Commands;
use crate::twin::schema::TypeModel;

/// Counters kept in the twin itself, so they are exactly as durable as the
/// state they describe (a crash never counts an event twice).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct TwinStats {
    pub events: u64,
    /// Events dropped from at least one window because it had closed.
    pub late: u64,
    pub windows: u64,
    /// Sum over closed windows of `count`, `sum*64` and `max*64`: an exact
    /// digest of the window stream (conformance reports).
    pub window_count_sum: u64,
    pub window_sum_x64: i64,
    pub window_max_x64: i64,
    /// Rule evaluations that held (each raise or re-fire of an alert).
    pub firings: u64,
}

/// Twin health: green (all good), yellow (a sensor stale or suspect, or a
/// warning / info alert active), red (offline, or a critical alert active).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Green,
    Yellow,
    Red,
}

/// The twin of one asset.
///
/// Every twin actor holds one inline; its size decides the actor's task size
/// (docs/decisions.md "Memory per twin"), so the parts only some asset types
/// use live behind one optional pointer ([`TwinExt`]).
#[derive(Debug, PartialEq)]
pub struct TwinState {
    /// Incremented by every applied event.
    pub version: u64,
    /// Greatest event time seen; the watermark is this minus the type's
    /// out-of-orderness.
    pub max_ts: i64,
    /// Per sensor, each marked when it changed since the twin's last
    /// record. Fixed-length parts are boxed slices, not `Vec`s: 8 bytes
    /// less each.
    pub sensors: Sensors,
    /// Open windows sorted by `(last_ms, slot)`.
    pub open: Vec<OpenWindow>,
    /// Most recently closed window, for slots that rules read.
    pub closed: Box<[Option<Acc>]>,
    /// Rules first, then the built-in alerts ([`TypeModel::rules`]).
    pub alerts: Box<[AlertState]>,
    pub stats: TwinStats,
    /// Processing time minus event time of the reading the twin last
    /// reflected (the sync lag), ms, saturated to `i32`; `i32::MIN` before
    /// the first.
    pub sync_lag_ms: i32,
    /// Nothing that can go stale is fresh, and something is stale.
    pub offline: bool,
    /// What only some types use; `None` when the type uses none of it.
    pub ext: Option<Box<TwinExt>>,
    /// What history keeps of the inputs since the last snapshot (types
    /// with `history:`): allocated by the first input that logs something,
    /// dropped by the snapshot that moves it into the checkpoint, so an
    /// idle twin holds none of it.
    pub history: Option<Box<HistoryLog>>,
}

/// The parts of a twin that only some asset types use: allocated when the
/// type model needs them ([`TypeModel::needs_ext`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TwinExt {
    /// Windows ending at or before this were closed by the idle timeout: the
    /// watermark never goes below it.
    pub wm_floor: i64,
    /// Each source's latest reading of the multi-source sensors
    /// ([`TypeModel::source_slot`]).
    pub by_source: Box<[SourceReading]>,
    /// Estimates of the sensors with a deadband.
    pub estimates: Box<[Estimate]>,
    /// Latest joined pair per join.
    pub joins: Box<[JoinPair]>,
    /// Values of related assets that rules and joins read.
    pub related: Box<[Latest]>,
    /// Windows closed since the last snapshot, when the model keeps a digest
    /// (replay); the snapshot moves them into the checkpoint.
    pub digest: Vec<ClosedDigest>,
    /// Desired values and commands ([`super::commands`](crate::twin::commands)),
    /// when the type declares commands (boxed: 8 bytes for every other twin).
    pub commands: Option<Box<Commands>>,
    /// The Kalman filter of the type's model, when it declares one.
    pub filter: Option<Box<FilterState>>,
    /// What the derived `integral` and `rate` sensors keep between readings.
    pub derived: Box<[DerivedState]>,
}

/// What [`TwinState::back_up`] did not copy: the lengths of a twin's
/// append-only logs (the replay digest, history's raw readings and events),
/// which rolling back truncates them to, and whether the sensors are in the
/// thread's undo log instead of the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogMarks {
    digest: usize,
    raw: usize,
    events: usize,
    sensors: SensorsBackup,
}

/// How a backup keeps a twin's sensors for a roll-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorsBackup {
    /// Copied with the rest of the twin: cheaper for a few sensors.
    Copied,
    /// Each saved in the thread's undo log on its first change in the
    /// batch ([`SensorUndo`]): a batch changes a few of many.
    Logged,
}

impl SensorsBackup {
    /// Sensors from which on a twin's are logged rather than copied. A batch
    /// of one reading to a twin of 64 sensors out of cache costs 2.0-2.6x
    /// the bare batch with the copy, 1.3-1.6x with the log; a batch of 4 to
    /// a workload-v1 pump costs -2 to +4% more with the copy, 8-10% with the
    /// log (`cargo bench --bench checkpoint -- supervision/`, BENCHMARKS.md).
    pub const LOGGED_FROM: usize = 8;

    /// How twins of type `m` are backed up.
    pub fn of(m: &TypeModel) -> SensorsBackup {
        if m.sensors.len() >= Self::LOGGED_FROM {
            SensorsBackup::Logged
        } else {
            SensorsBackup::Copied
        }
    }
}

impl Clone for TwinState {
    fn clone(&self) -> Self {
        TwinState {
            version: self.version,
            max_ts: self.max_ts,
            sensors: self.sensors.clone(),
            open: self.open.clone(),
            closed: self.closed.clone(),
            alerts: self.alerts.clone(),
            stats: self.stats,
            sync_lag_ms: self.sync_lag_ms,
            offline: self.offline,
            ext: self.ext.clone(),
            history: self.history.clone(),
        }
    }

    /// Reuses `self`'s allocations.
    fn clone_from(&mut self, src: &Self) {
        self.copy_from(src, true, true);
    }
}

impl TwinState {
    /// Copies `self` into `backup` for [`TwinState::roll_back`], reusing the
    /// backup's allocations (the actor does this before every batch, so it
    /// must not allocate). The replay digest and history's raw readings and
    /// events are not copied: applying only appends to them, so their
    /// lengths are the backup (history's partial buckets, a few, are).
    /// `sensors` says whether the sensors are copied or logged as the batch
    /// changes them; either way the batch ends with [`TwinState::keep`] or
    /// [`TwinState::roll_back`].
    pub fn back_up(&self, backup: &mut TwinState, sensors: SensorsBackup) -> LogMarks {
        backup.copy_from(self, false, sensors == SensorsBackup::Copied);
        if sensors == SensorsBackup::Logged {
            SensorUndo::arm(&self.sensors);
        }
        let h = self.history.as_deref();
        LogMarks {
            digest: self.digest().len(),
            raw: h.map_or(0, |h| h.raw.len()),
            events: h.map_or(0, |h| h.events.len()),
            sensors,
        }
    }

    /// The batch [`TwinState::back_up`] saved `backup` (and `marks`) for
    /// succeeded: returns how many more sensors are stale than before it.
    pub fn keep(&mut self, backup: &TwinState, marks: LogMarks) -> i64 {
        match marks.sensors {
            SensorsBackup::Copied => self.sensors.stale() as i64 - backup.sensors.stale() as i64,
            SensorsBackup::Logged => SensorUndo::keep(&mut self.sensors),
        }
    }

    /// Puts the state [`TwinState::back_up`] saved (and returned `marks`
    /// for) back, in place of a possibly half-applied one; `backup` is left
    /// holding the discarded state.
    pub fn roll_back(&mut self, backup: &mut TwinState, marks: LogMarks) {
        if marks.sensors == SensorsBackup::Logged {
            // The twin's own sensors, put back, go with the backup.
            SensorUndo::undo(&mut self.sensors);
            std::mem::swap(&mut self.sensors, &mut backup.sensors);
        }
        let digest = self.ext.as_deref_mut().map(|x| std::mem::take(&mut x.digest));
        let logs = self
            .history
            .as_deref_mut()
            .map(|h| (std::mem::take(&mut h.raw), std::mem::take(&mut h.events)));
        std::mem::swap(self, backup);
        if let (Some(x), Some(mut d)) = (self.ext.as_deref_mut(), digest) {
            d.truncate(marks.digest);
            x.digest = d;
        }
        // The backup's raw readings and events are not the twin's (only its
        // partials were copied): the twin's are the ones taken above.
        if let Some(h) = self.history.as_deref_mut() {
            h.raw.clear();
            h.events.clear();
        }
        if let Some((mut raw, mut events)) = logs {
            raw.truncate(marks.raw);
            events.truncate(marks.events);
            if !raw.is_empty() || !events.is_empty() {
                let h = self.history.get_or_insert_with(Default::default);
                (h.raw, h.events) = (raw, events);
            }
        }
        // The backup keeps an emptied log for its allocation: none is none.
        if self.history.as_ref().is_some_and(|h| h.is_empty()) {
            self.history = None;
        }
    }

    fn copy_from(&mut self, src: &Self, digest: bool, sensors: bool) {
        self.version = src.version;
        self.max_ts = src.max_ts;
        if sensors {
            self.sensors.copy_from(&src.sensors);
        }
        self.open.clone_from(&src.open);
        self.closed.clone_from(&src.closed);
        self.alerts.clone_from(&src.alerts);
        self.stats = src.stats;
        self.sync_lag_ms = src.sync_lag_ms;
        self.offline = src.offline;
        match (&mut self.ext, &src.ext) {
            (Some(a), Some(b)) => {
                a.wm_floor = b.wm_floor;
                a.by_source.clone_from(&b.by_source);
                a.estimates.clone_from(&b.estimates);
                a.joins.clone_from(&b.joins);
                a.related.clone_from(&b.related);
                if digest {
                    a.digest.clone_from(&b.digest);
                }
                a.commands.clone_from(&b.commands);
                a.derived.clone_from(&b.derived);
                match (&mut a.filter, &b.filter) {
                    (Some(fa), Some(fb)) => fa.copy_from(fb),
                    (fa, fb) => fa.clone_from(fb),
                }
            }
            (a, b) => a.clone_from(b),
        }
        // History's partial buckets change in place: copied (a few); its
        // raw readings and events only grow: copied only for a clone. A
        // backup that held a log keeps it, emptied, for its allocation.
        match (&mut self.history, &src.history) {
            (Some(a), Some(b)) => {
                a.partials.clone_from(&b.partials);
                if digest {
                    a.raw.clone_from(&b.raw);
                    a.events.clone_from(&b.events);
                } else {
                    a.raw.clear();
                    a.events.clear();
                }
            }
            (Some(a), None) if !digest => {
                a.partials.clear();
                a.raw.clear();
                a.events.clear();
            }
            (a, b) if digest => a.clone_from(b),
            (a, Some(b)) => {
                *a = Some(Box::new(HistoryLog {
                    partials: b.partials.clone(),
                    ..HistoryLog::default()
                }))
            }
            (_, None) => {}
        }
    }
}

impl TwinState {
    pub fn new(m: &TypeModel) -> TwinState {
        TwinState {
            version: 0,
            max_ts: NO_TS,
            sensors: Sensors::new(m.sensors.len()),
            open: Vec::new(),
            closed: vec![None; m.n_closed].into_boxed_slice(),
            alerts: vec![AlertState::default(); m.rules.len()].into_boxed_slice(),
            stats: TwinStats::default(),
            sync_lag_ms: i32::MIN,
            offline: false,
            ext: m.needs_ext().then(|| {
                Box::new(TwinExt {
                    wm_floor: NO_TS,
                    by_source: vec![SourceReading::NONE; m.n_source_slots].into_boxed_slice(),
                    estimates: vec![Estimate::NONE; m.n_estimates].into_boxed_slice(),
                    joins: vec![JoinPair::NONE; m.joins.len()].into_boxed_slice(),
                    related: vec![Latest::NONE; m.related.len()].into_boxed_slice(),
                    digest: Vec::new(),
                    commands: (!m.commands.is_empty()).then(|| Box::new(Commands::new(m))),
                    filter: m.filter.as_ref().map(|f| Box::new(FilterState::new(f))),
                    derived: vec![DerivedState::NONE; m.n_derived_state].into_boxed_slice(),
                })
            }),
            history: None,
        }
    }

    /// See [`TwinExt::wm_floor`]; `NO_TS` when the type has no idle timeout.
    pub fn wm_floor(&self) -> i64 {
        self.ext.as_ref().map_or(NO_TS, |x| x.wm_floor)
    }

    pub fn by_source(&self) -> &[SourceReading] {
        self.ext.as_ref().map_or(&[], |x| &x.by_source)
    }

    pub fn estimates(&self) -> &[Estimate] {
        self.ext.as_ref().map_or(&[], |x| &x.estimates)
    }

    pub fn joins(&self) -> &[JoinPair] {
        self.ext.as_ref().map_or(&[], |x| &x.joins)
    }

    pub fn related(&self) -> &[Latest] {
        self.ext.as_ref().map_or(&[], |x| &x.related)
    }

    /// The twin's filter (types that declare a model).
    pub fn filter(&self) -> Option<&FilterState> {
        self.ext.as_deref()?.filter.as_deref()
    }

    pub fn filter_mut(&mut self) -> Option<&mut FilterState> {
        self.ext.as_deref_mut()?.filter.as_deref_mut()
    }

    /// The inputs `u` of model `fm`: the desired values of its commands
    /// (`NaN`: not commanded yet), into `u` (one per input).
    pub fn model_inputs(&self, fm: &FilterModel, u: &mut [f64]) {
        for (slot, &c) in u.iter_mut().zip(&fm.inputs) {
            *slot = self.commands().map_or(f64::NAN, |cs| cs.desired[c as usize]);
        }
    }

    /// What rules read of the model (`NaN`: no model or nothing yet).
    pub fn model_value(&self, m: &TypeModel, slot: ModelSlot) -> f64 {
        let (Some(fm), Some(f)) = (&m.filter, self.filter()) else {
            return f64::NAN;
        };
        if f.t == NO_TS {
            return f64::NAN;
        }
        match slot {
            ModelSlot::Est { state } => f.state(state as usize).0,
            ModelSlot::EstStd { state } => f.state(state as usize).1,
            ModelSlot::Residual { sensor } => fm
                .by_sensor
                .get(sensor as usize)
                .copied()
                .flatten()
                .map_or(f64::NAN, |k| f.observations[k as usize].residual),
            ModelSlot::Nis => f.nis_sum(),
            ModelSlot::Bias => f.bias_z(),
            ModelSlot::NisPart { sensor } => fm
                .by_sensor
                .get(sensor as usize)
                .copied()
                .flatten()
                .map_or(f64::NAN, |k| f.nis_part(k)),
        }
    }

    /// The twin's commands (types that declare commands).
    pub fn commands(&self) -> Option<&Commands> {
        self.ext.as_deref()?.commands.as_deref()
    }

    pub fn digest(&self) -> &[ClosedDigest] {
        self.ext.as_ref().map_or(&[], |x| &x.digest)
    }

    /// Takes what was logged for history since the last snapshot.
    pub fn take_history(&mut self, into: impl FnOnce(&HistoryLog)) {
        if let Some(log) = self.history.take() {
            if !log.is_empty() {
                into(&log);
            }
        }
    }

    /// Takes the windows closed since the last snapshot (replay digest).
    pub fn take_digest(&mut self, into: impl FnOnce(&[ClosedDigest])) {
        if let Some(x) = self.ext.as_deref_mut() {
            if !x.digest.is_empty() {
                into(&x.digest);
                x.digest.clear();
            }
        }
    }

    pub fn health(&self, m: &TypeModel) -> Health {
        self.figures(m).health
    }

    /// Health and alert counts, in one pass over the alerts.
    pub fn figures(&self, m: &TypeModel) -> Figures {
        let (mut active, mut unacknowledged, mut critical) = (0, 0, false);
        for (r, a) in self.alerts.iter().enumerate() {
            if a.active {
                active += 1;
                unacknowledged += u32::from(!a.acked);
                critical |= m.rules[r].severity == crate::topology::Severity::Critical;
            }
        }
        let health = if self.offline || critical {
            Health::Red
        } else if active > 0 || self.sensors.iter().any(|s| s.quality != Quality::Good) {
            Health::Yellow
        } else {
            Health::Green
        };
        Figures {
            health,
            active,
            unacknowledged,
        }
    }
}

/// A twin's health and its active and unacknowledged alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figures {
    pub health: Health,
    pub active: u32,
    pub unacknowledged: u32,
}
