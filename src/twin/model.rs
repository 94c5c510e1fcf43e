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

use serde::{Deserialize, Serialize};

use super::commands::{self, Commands, Origin};
use super::schema::{LocalSlot, RuleKind, TypeModel};
use crate::topology::expr::Env;
use crate::topology::{Agg, OutputKind, Resolve};

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
    /// source for the sensor.
    pub redelivered: bool,
}

/// A related asset's sensor value, relayed to the twins that relate to it
/// (see ARCHITECTURE.md "Relations").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Relayed {
    /// Index into the twin's related-value table ([`TypeModel::related`]).
    pub slot: u16,
    pub latest: Latest,
}

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

/// One sensor in a twin update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SensorUpdate {
    pub latest: Latest,
    pub quality: Quality,
    /// The twin's estimate (equal to the value without a deadband).
    pub estimate: f64,
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

/// An open window's accumulator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Acc {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// The reading with the greatest event time (ties: the later arrival).
    pub last: f64,
    /// Sum of squared deviations from the mean (Welford), for `stddev`.
    pub m2: f64,
}

impl Acc {
    pub fn first(v: f64) -> Acc {
        Acc {
            count: 1,
            sum: v,
            min: v,
            max: v,
            last: v,
            m2: 0.0,
        }
    }

    /// Adds `v`; `is_last`: its event time is at or after the window's
    /// greatest so far.
    #[inline]
    pub fn add(&mut self, v: f64, is_last: bool) {
        // Welford on the running mean; the sum stays the plain sum (exact
        // for the conformance digest).
        let mean = self.sum / self.count as f64;
        self.count += 1;
        self.sum += v;
        let delta = v - mean;
        self.m2 += delta * (v - self.sum / self.count as f64);
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
        if is_last {
            self.last = v;
        }
    }

    pub fn avg(&self) -> f64 {
        self.sum / self.count as f64
    }

    pub fn stddev(&self) -> f64 {
        (self.m2.max(0.0) / self.count as f64).sqrt()
    }

    pub fn get(&self, agg: Agg) -> f64 {
        match agg {
            Agg::Count => self.count as f64,
            Agg::Sum => self.sum,
            Agg::Min => self.min,
            Agg::Max => self.max,
            Agg::Avg => self.avg(),
            Agg::Last => self.last,
            Agg::Stddev => self.stddev(),
        }
    }
}

/// A window that has not closed yet. The twin keeps them in one vector sorted
/// by `(last_ms, slot)`, so closing is popping from the front.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OpenWindow {
    /// The window's last millisecond (`start + size - 1`).
    pub last_ms: i64,
    /// Source position of the event that opened the window.
    pub first_origin: u64,
    pub acc: Acc,
    pub slot: u16,
    /// `last_ms` minus the event time of `acc.last` (windows are shorter
    /// than 2^32 ms; a 4-byte field fits in the padding).
    pub last_back: u32,
}

/// A closed window as the replay digest records it: enough to sum window
/// averages in the order of one global stream (by end, then by the position
/// of the event that opened the window), as `reference.py` does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClosedDigest {
    pub last_ms: i64,
    pub first_origin: u64,
    pub avg: f64,
}

/// The latest joined pair of a join.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JoinPair {
    /// The later event time of the two readings (`NO_TS`: no pair yet).
    pub ts: i64,
    pub left: f64,
    pub right: f64,
}

impl JoinPair {
    pub const NONE: JoinPair = JoinPair {
        ts: NO_TS,
        left: 0.0,
        right: 0.0,
    };
}

/// Per alert (a rule, or a built-in stale / discrepancy / offline alert): the
/// lifecycle raised -> acknowledged -> cleared, one active alert at a time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub active: bool,
    /// An operator acknowledged the active alert.
    pub acked: bool,
    /// Incremented on every raise: `(asset, rule, seq)` identifies an alert.
    pub seq: u32,
    /// Times the rule held while this alert was active (including the raise).
    pub firings: u64,
    /// Time that raised the current alert (event time; processing time for
    /// the built-in staleness alerts).
    pub since_ts: i64,
    /// Time of the latest firing and the value of the alert's first input
    /// then: a rule that keeps firing updates these, it emits nothing.
    pub last_ts: i64,
    pub last_value: f64,
    /// Inactive, with a `for:` duration: event time since which the condition
    /// has held at every evaluation (`NO_TS`: it does not hold).
    pub pending_since: i64,
}

impl Default for AlertState {
    fn default() -> Self {
        AlertState {
            active: false,
            acked: false,
            seq: 0,
            firings: 0,
            since_ts: 0,
            last_ts: 0,
            last_value: 0.0,
            pending_since: NO_TS,
        }
    }
}

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
/// (ARCHITECTURE.md "Memory per twin"), so the parts only some asset types
/// use live behind one optional pointer ([`TwinExt`]).
#[derive(Debug, PartialEq)]
pub struct TwinState {
    /// Incremented by every applied event.
    pub version: u64,
    /// Greatest event time seen; the watermark is this minus the type's
    /// out-of-orderness.
    pub max_ts: i64,
    /// Per sensor. Fixed-length parts are boxed slices, not `Vec`s: 8 bytes
    /// less each.
    pub sensors: Box<[SensorState]>,
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
    /// Desired values and commands ([`super::commands`]), when the type
    /// declares commands (boxed: 8 bytes for every other twin).
    pub commands: Option<Box<Commands>>,
}

const EXT: &str = "the type model gives a twin the extension for what it uses";

/// The twin's extension, borrowing only that field.
macro_rules! ext {
    ($st:expr) => {
        $st.ext.as_deref().expect(EXT)
    };
}
macro_rules! ext_mut {
    ($st:expr) => {
        $st.ext.as_deref_mut().expect(EXT)
    };
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
        }
    }

    /// Reuses `self`'s allocations.
    fn clone_from(&mut self, src: &Self) {
        self.copy_from(src, true);
    }
}

impl TwinState {
    /// Copies `self` into `backup` for [`TwinState::roll_back`], reusing the
    /// backup's allocations (the actor does this before every batch, so it
    /// must not allocate). The replay digest is not copied: applying only
    /// appends to it, so its length is the backup.
    pub fn back_up(&self, backup: &mut TwinState) -> usize {
        backup.copy_from(self, false);
        self.digest().len()
    }

    /// Puts the state [`TwinState::back_up`] saved (and returned
    /// `digest_len` for) back, in place of a possibly half-applied one;
    /// `backup` is left holding the discarded state.
    pub fn roll_back(&mut self, backup: &mut TwinState, digest_len: usize) {
        let mut digest = self.ext.as_deref_mut().map(|x| std::mem::take(&mut x.digest));
        std::mem::swap(self, backup);
        if let (Some(x), Some(mut d)) = (self.ext.as_deref_mut(), digest.take()) {
            d.truncate(digest_len);
            x.digest = d;
        }
    }

    fn copy_from(&mut self, src: &Self, digest: bool) {
        self.version = src.version;
        self.max_ts = src.max_ts;
        self.sensors.clone_from(&src.sensors);
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
            }
            (a, b) => a.clone_from(b),
        }
    }
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
}

impl TwinState {
    pub fn new(m: &TypeModel) -> TwinState {
        TwinState {
            version: 0,
            max_ts: NO_TS,
            sensors: vec![SensorState::NONE; m.sensors.len()].into_boxed_slice(),
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
                })
            }),
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

    /// The twin's commands (types that declare commands).
    pub fn commands(&self) -> Option<&Commands> {
        self.ext.as_deref()?.commands.as_deref()
    }

    pub fn digest(&self) -> &[ClosedDigest] {
        self.ext.as_ref().map_or(&[], |x| &x.digest)
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

    /// `max_ts - out_of_orderness` (never below what the idle timeout
    /// closed): no event at or before it is expected.
    pub fn watermark(&self, m: &TypeModel) -> i64 {
        let wm = if self.max_ts == NO_TS {
            NO_TS
        } else {
            self.max_ts.saturating_sub(m.out_of_orderness_ms)
        };
        wm.max(self.wm_floor())
    }

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

    pub fn health(&self, m: &TypeModel) -> Health {
        let mut h = Health::Green;
        if self.offline {
            return Health::Red;
        }
        if self.sensors.iter().any(|s| s.quality != Quality::Good) {
            h = Health::Yellow;
        }
        for (r, a) in self.alerts.iter().enumerate() {
            if a.active {
                match m.rules[r].severity {
                    crate::topology::Severity::Critical => return Health::Red,
                    _ => h = Health::Yellow,
                }
            }
        }
        h
    }

    /// Processing time of the most recent reading of any sensor.
    fn last_seen(&self) -> i64 {
        self.sensors.iter().map(|s| s.seen).max().unwrap_or(NO_TS)
    }
}

/// The earliest processing time at which [`Input::Tick`] may change the
/// twin: a sensor or a source going stale, or the idle timeout. `None`: no
/// timer needed.
pub fn next_deadline(m: &TypeModel, st: &TwinState) -> Option<i64> {
    let mut next = i64::MAX;
    for (s, def) in m.sensor_defs.iter().enumerate() {
        let Some(stale) = def.stale_after_ms else { continue };
        let sensor = &st.sensors[s];
        if sensor.seen != NO_TS && sensor.quality != Quality::Stale {
            next = next.min(sensor.seen.saturating_add(stale));
        }
        // A source going stale changes what the sensor resolves to.
        if let Some(set) = &def.sources {
            for r in &st.by_source()[set.first as usize..set.first as usize + set.sources.len()] {
                let due = r.seen.saturating_add(stale);
                if r.seen != NO_TS && due > sensor.seen {
                    next = next.min(due);
                }
            }
        }
    }
    if let Some(idle) = m.idle_timeout_ms {
        if !st.open.is_empty() {
            next = next.min(st.last_seen().saturating_add(idle));
        }
    }
    if !m.commands.is_empty() {
        if let Some(at) = commands::next_deadline(st) {
            next = next.min(at);
        }
    }
    (next != i64::MAX).then_some(next)
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

/// Rules whose command is tracked left an [`Output::Command`] in
/// `out[mark..]`: each becomes an issued command (sent as
/// [`Output::Actuate`]). Issuing needs processing time, which rule
/// evaluation (in event time) does not have.
fn issue_rule_commands(m: &TypeModel, st: &mut TwinState, now: i64, out: &mut Vec<Output>, mark: usize) {
    let mut tracked = Vec::new();
    let mut i = mark;
    while i < out.len() {
        if let Output::Command {
            rule,
            seq,
            transition,
            value,
            ..
        } = out[i]
        {
            if let Some(def) = m.rules[rule as usize].tracked {
                let origin = Origin::Rule {
                    rule,
                    alert_seq: seq,
                    cleared: transition == Transition::Cleared,
                };
                tracked.push((def, value, origin));
                out.remove(i);
                continue;
            }
        }
        i += 1;
    }
    for (def, value, origin) in tracked {
        let order = commands::Order {
            def,
            value,
            key: None,
            origin,
        };
        commands::issue(m, st, order, now, out);
    }
}

fn apply_input(m: &TypeModel, state: &mut TwinState, input: Input<'_>, now_ms: i64, out: &mut Vec<Output>) {
    match input {
        Input::Events(events) => {
            let track = m.emit.has(OutputKind::TwinUpdates);
            let mut changed: Vec<(u16, SensorUpdate)> = Vec::new();
            for e in events {
                let quality = state.sensors[e.sensor as usize].quality;
                let became_latest = on_event(m, state, e, now_ms, out);
                // A reading may change the quality without the value (a
                // discrepancy between sources, a stale sensor reporting).
                if track && (became_latest || state.sensors[e.sensor as usize].quality != quality) {
                    let s = e.sensor as usize;
                    let update = SensorUpdate {
                        latest: state.sensors[s].latest(),
                        quality: state.sensors[s].quality,
                        estimate: state.believed(m, s).unwrap_or(f64::NAN),
                    };
                    match changed.iter_mut().find(|(s, _)| *s == e.sensor) {
                        Some(c) => c.1 = update,
                        None => changed.push((e.sensor, update)),
                    }
                }
            }
            if track && !changed.is_empty() {
                out.push(Output::TwinUpdate {
                    version: state.version,
                    changed,
                    health: state.health(m),
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

/// Applies one event; returns whether it changed the sensor's value.
#[inline]
fn on_event(m: &TypeModel, st: &mut TwinState, e: &Event, now: i64, out: &mut Vec<Output>) -> bool {
    if e.redelivered && already_applied(m, st, e) {
        return false;
    }
    st.version += 1;
    st.stats.events += 1;
    let s = e.sensor as usize;
    let def = &m.sensor_defs[s];

    // (a) the sensor is heard from: fresh again (only timers read when)
    if m.timers {
        st.sensors[s].seen = now;
    }
    if st.sensors[s].quality == Quality::Stale {
        st.sensors[s].quality = Quality::Good;
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
            let cur = &mut st.sensors[s];
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

    // (f) commands the reading confirms (any reading, latest or not: the
    // device reported it)
    if !m.commands_by_sensor[s].is_empty() {
        commands::on_reading(m, st, e.sensor, e.value, now, out);
    }
    became_latest
}

/// `now - ts` in ms, saturated to `i32`.
fn lag(now: i64, ts: i64) -> i32 {
    now.saturating_sub(ts)
        .clamp(i64::from(i32::MIN + 1), i64::from(i32::MAX)) as i32
}

/// A redelivered reading the twin already reflects: its source's reading of
/// the sensor is at least as new (readings of one sensor from one source
/// arrive in order: MQTT keeps order per topic).
fn already_applied(m: &TypeModel, st: &TwinState, e: &Event) -> bool {
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
fn reconcile(m: &TypeModel, st: &mut TwinState, s: usize, now: i64) {
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
fn resolve(m: &TypeModel, st: &mut TwinState, s: usize, now: i64, ts: i64, out: &mut Vec<Output>) -> bool {
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

fn on_related(m: &TypeModel, st: &mut TwinState, v: &Relayed, out: &mut Vec<Output>) {
    let k = v.slot as usize;
    let related = &mut ext_mut!(st).related;
    if k >= related.len() || v.latest.ts < related[k].ts {
        return;
    }
    related[k] = v.latest;
    for &j in &m.joins_by_related[k] {
        let def = &m.joins[j as usize];
        let left = st.sensors[def.left as usize].latest();
        try_join(m, st, j, left, v.latest, out);
    }
    for &r in &m.rules_by_related[k] {
        evaluate_rule(m, st, r, v.latest.ts, out);
    }
}

/// Pairs `left` with `right` when both are set and within the join's
/// window; a pair older than the current one is ignored.
fn try_join(m: &TypeModel, st: &mut TwinState, j: u16, left: Latest, right: Latest, out: &mut Vec<Output>) {
    if !left.is_set() || !right.is_set() || left.ts.abs_diff(right.ts) > m.joins[j as usize].within_ms {
        return;
    }
    let pair = JoinPair {
        ts: left.ts.max(right.ts),
        left: left.value,
        right: right.value,
    };
    let joins = &mut ext_mut!(st).joins;
    if pair.ts < joins[j as usize].ts {
        return;
    }
    joins[j as usize] = pair;
    if m.emit.has(OutputKind::Joins) {
        out.push(Output::Joined { join: j, pair });
    }
    for &r in &m.rules_by_join[j as usize] {
        evaluate_rule(m, st, r, pair.ts, out);
    }
}

/// A timer is due: sensors not heard from for `stale_after` go stale, sources
/// that went stale no longer count, an asset whose sensors are all stale is
/// offline, and the idle timeout closes the windows of a quiet asset.
fn on_tick(m: &TypeModel, st: &mut TwinState, now: i64, out: &mut Vec<Output>) {
    if !m.commands.is_empty() {
        commands::on_tick(m, st, now, out);
    }
    let mut fresh = 0;
    let mut stale = 0;
    for s in 0..m.sensor_defs.len() {
        let def = &m.sensor_defs[s];
        let Some(after) = def.stale_after_ms else { continue };
        if def.sources.is_some() && st.sensors[s].quality != Quality::Stale {
            // A source may have gone stale: resolve again.
            if resolve(m, st, s, now, now, out) {
                reconcile(m, st, s, now);
                let ts = st.sensors[s].ts;
                for &r in &m.rules_by_sensor[s] {
                    evaluate_rule(m, st, r, ts, out);
                }
            }
        }
        let sensor = &mut st.sensors[s];
        if sensor.quality != Quality::Stale && sensor.seen != NO_TS && now.saturating_sub(sensor.seen) >= after {
            sensor.quality = Quality::Stale;
            if let Some(r) = def.stale_alert {
                set_alert(m, st, r, true, now, out);
            }
            for &r in &m.rules_by_stale[s] {
                evaluate_rule(m, st, r, now, out);
            }
        }
        match (st.sensors[s].quality, st.sensors[s].seen) {
            (Quality::Stale, _) => stale += 1,
            (_, NO_TS) => {}
            _ => fresh += 1,
        }
    }
    // Offline: something went stale and nothing that can go stale is fresh
    // (a sensor that never reported counts as neither).
    if stale > 0 && fresh == 0 && !st.offline {
        st.offline = true;
        if let Some(r) = m.offline_alert {
            set_alert(m, st, r, true, now, out);
        }
    }
    if let Some(idle) = m.idle_timeout_ms {
        if let Some(last) = st.open.last().map(|w| w.last_ms) {
            if st.last_seen() != NO_TS && now.saturating_sub(st.last_seen()) >= idle {
                // Close everything open; later events for those windows are late.
                let x = ext_mut!(st);
                x.wm_floor = x.wm_floor.max(last);
                close_windows(m, st, last, out);
            }
        }
    }
}

#[inline]
fn add_to_window(open: &mut Vec<OpenWindow>, last_ms: i64, slot: u16, e: &Event) {
    let back = u32::try_from(last_ms - e.ts).unwrap_or(u32::MAX);
    // Newest windows sit at the back: search from there.
    let mut i = open.len();
    while i > 0 {
        let w = &mut open[i - 1];
        if w.last_ms == last_ms && w.slot == slot {
            let is_last = back <= w.last_back;
            w.acc.add(e.value, is_last);
            if is_last {
                w.last_back = back;
            }
            return;
        }
        if (w.last_ms, w.slot) < (last_ms, slot) {
            break;
        }
        i -= 1;
    }
    open.insert(
        i,
        OpenWindow {
            last_ms,
            first_origin: e.origin,
            acc: Acc::first(e.value),
            slot,
            last_back: back,
        },
    );
}

/// Closes every open window whose last millisecond is at or before `wm`, in
/// order of end time; windows ending together close as a group before the
/// rules they trigger are evaluated.
fn close_windows(m: &TypeModel, st: &mut TwinState, wm: i64, out: &mut Vec<Output>) {
    let n = st.open.iter().take_while(|w| w.last_ms <= wm).count();
    if n == 0 {
        return;
    }
    let emit = m.emit.has(OutputKind::Windows);
    let mut i = 0;
    while i < n {
        let end = st.open[i].last_ms;
        let mut triggered: Vec<u16> = Vec::new();
        while i < n && st.open[i].last_ms == end {
            let w = st.open[i];
            let stats = &mut st.stats;
            stats.windows += 1;
            stats.window_count_sum += w.acc.count;
            stats.window_sum_x64 += (w.acc.sum * 64.0) as i64;
            stats.window_max_x64 += (w.acc.max * 64.0) as i64;
            if m.digest {
                ext_mut!(st).digest.push(ClosedDigest {
                    last_ms: w.last_ms,
                    first_origin: w.first_origin,
                    avg: w.acc.avg(),
                });
            }
            if let Some(c) = m.closed_index[w.slot as usize] {
                st.closed[c as usize] = Some(w.acc);
            }
            triggered.extend_from_slice(&m.rules_by_slot[w.slot as usize]);
            if emit {
                let size = m.windows[m.slots[w.slot as usize].window as usize].size_ms;
                out.push(Output::Window {
                    slot: w.slot,
                    start: w.last_ms - size + 1,
                    acc: w.acc,
                });
            }
            i += 1;
        }
        triggered.sort_unstable();
        triggered.dedup();
        for r in triggered {
            evaluate_rule(m, st, r, end, out);
        }
    }
    st.open.drain(..n);
}

struct TwinEnv<'a>(&'a TypeModel, &'a TwinState);

impl Env<LocalSlot> for TwinEnv<'_> {
    #[inline]
    fn get(&self, slot: LocalSlot) -> f64 {
        let TwinEnv(m, st) = *self;
        match slot {
            LocalSlot::Latest(s) => st.believed(m, s as usize).unwrap_or(f64::NAN),
            LocalSlot::Closed { closed, agg } => st.closed[closed as usize].map_or(f64::NAN, |a| a.get(agg)),
            LocalSlot::Stale(s) => {
                if st.sensors[s as usize].quality == Quality::Stale {
                    1.0
                } else {
                    0.0
                }
            }
            LocalSlot::Related(k) => {
                let l = st.related()[k as usize];
                if l.is_set() {
                    l.value
                } else {
                    f64::NAN
                }
            }
            LocalSlot::Join { join, side } => {
                let p = st.joins()[join as usize];
                match (p.ts == NO_TS, side) {
                    (true, _) => f64::NAN,
                    (false, 0) => p.left,
                    (false, _) => p.right,
                }
            }
        }
    }
}

fn evaluate_rule(m: &TypeModel, st: &mut TwinState, r: u16, ts: i64, out: &mut Vec<Output>) {
    let rule = &m.rules[r as usize];
    let RuleKind::Expr { cond, clear, hold_ms } = &rule.kind else {
        return;
    };
    let env = TwinEnv(m, st);
    let holds = cond.eval(&env);
    let active = st.alerts[r as usize].active;
    // Hysteresis: with `clear_when`, an active alert clears only when that
    // holds, not merely when `when` stops holding.
    let clears = active
        && match clear {
            Some(clear) => clear.eval(&env),
            None => !holds,
        };
    let first_input = rule.inputs.first().map_or(f64::NAN, |(_, s)| env.get(*s));
    let alert = &mut st.alerts[r as usize];
    let transition = if !active {
        if !holds {
            alert.pending_since = NO_TS;
            None
        } else {
            if alert.pending_since == NO_TS {
                alert.pending_since = ts;
            }
            // `for:` - the condition has held at every evaluation since
            // `pending_since`; raise once that spans the duration.
            if ts.saturating_sub(alert.pending_since) >= *hold_ms {
                alert.pending_since = NO_TS;
                Some(Transition::Raised)
            } else {
                None
            }
        }
    } else if clears {
        Some(Transition::Cleared)
    } else {
        if holds {
            // Still firing: the active alert is updated, nothing is emitted.
            alert.firings += 1;
            alert.last_ts = ts;
            alert.last_value = if first_input.is_nan() { 0.0 } else { first_input };
        }
        None
    };
    if holds {
        st.stats.firings += 1;
    }
    match transition {
        Some(Transition::Raised) => set_alert(m, st, r, true, ts, out),
        Some(Transition::Cleared) => set_alert(m, st, r, false, ts, out),
        _ => {}
    }
}

/// Raises (`on`) or clears alert `r`, emitting the transition; a no-op when
/// it is already in that state.
pub(super) fn set_alert(m: &TypeModel, st: &mut TwinState, r: u16, on: bool, ts: i64, out: &mut Vec<Output>) {
    if st.alerts[r as usize].active == on {
        return;
    }
    let inputs = alert_inputs(m, st, r);
    // An input not known yet reads NaN; the alert keeps 0 (states compare).
    let value = inputs.first().copied().filter(|v| !v.is_nan()).unwrap_or(0.0);
    let a = &mut st.alerts[r as usize];
    a.active = on;
    a.last_ts = ts;
    a.last_value = value;
    let transition = if on {
        a.acked = false;
        a.seq += 1;
        a.firings = 1;
        a.since_ts = ts;
        Transition::Raised
    } else {
        Transition::Cleared
    };
    emit_alert(m, st, r, transition, ts, inputs, out);
    // A tracked command is issued whether or not a sink sends commands (it
    // sets the desired state): see `issue_rule_commands`.
    let rule = &m.rules[r as usize];
    if let Some(c) = rule
        .command
        .as_ref()
        .filter(|_| rule.tracked.is_some() || m.emit.has(OutputKind::Commands))
    {
        let value = if on { Some(c.value) } else { c.on_clear };
        if let Some(value) = value {
            out.push(Output::Command {
                rule: r,
                seq: st.alerts[r as usize].seq,
                transition,
                ts,
                value,
            });
        }
    }
}

fn emit_alert(
    m: &TypeModel,
    st: &TwinState,
    r: u16,
    transition: Transition,
    ts: i64,
    inputs: Vec<f64>,
    out: &mut Vec<Output>,
) {
    if m.emit.has(OutputKind::Alerts) {
        out.push(Output::Alert {
            rule: r,
            transition,
            seq: st.alerts[r as usize].seq,
            ts,
            inputs,
        });
    }
}

/// The values reported with alert `r` (names in `RuleDef::inputs`).
fn alert_inputs(m: &TypeModel, st: &TwinState, r: u16) -> Vec<f64> {
    let rule = &m.rules[r as usize];
    let env = TwinEnv(m, st);
    match &rule.kind {
        RuleKind::Expr { .. } | RuleKind::Stale { .. } => rule.inputs.iter().map(|(_, s)| env.get(*s)).collect(),
        RuleKind::Discrepancy { sensor } => {
            let set = m.sensor_defs[*sensor as usize]
                .sources
                .as_ref()
                .expect("discrepancy alerts belong to multi-source sensors");
            st.by_source()[set.first as usize..set.first as usize + set.sources.len()]
                .iter()
                .map(|r| if r.ts == NO_TS { f64::NAN } else { r.value })
                .collect()
        }
        RuleKind::Offline | RuleKind::CommandFailed { .. } => Vec::new(),
    }
}
