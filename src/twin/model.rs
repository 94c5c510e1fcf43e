//! The twin model: a pure state machine, `apply(state, input, now) -> outputs`.
//!
//! No IO, no clocks, no randomness: the same inputs give the same state and
//! outputs, which is what makes snapshots + replay exact and lets the actor
//! retry a batch on a copy after a panic. `apply` mutates the state in place
//! and appends outputs to a buffer (the allocation-free form of
//! `(state, input, now) -> (state, outputs)`).
//!
//! Nothing here depends on how events are batched: the result of applying
//! `[a, b]` equals applying `[a]` then `[b]` (except for how twin updates are
//! grouped), so crash + resume from any snapshot gives the same twin.

use serde::{Deserialize, Serialize};

use super::schema::{LocalSlot, TypeModel};
use crate::topology::expr::Env;
use crate::topology::{Agg, OutputKind};

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
}

/// What a twin is asked to do.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Readings, in arrival order.
    Events(&'a [Event]),
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
    /// No reading yet. (Rules read an unset sensor as NaN, see `TwinEnv`.)
    pub const NONE: Latest = Latest { ts: NO_TS, value: 0.0 };

    pub fn is_set(&self) -> bool {
        self.ts != NO_TS
    }
}

/// An open window's accumulator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Acc {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Acc {
    fn first(v: f64) -> Acc {
        Acc {
            count: 1,
            sum: v,
            min: v,
            max: v,
        }
    }

    #[inline]
    fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
    }

    pub fn avg(&self) -> f64 {
        self.sum / self.count as f64
    }

    pub fn get(&self, agg: Agg) -> f64 {
        match agg {
            Agg::Count => self.count as f64,
            Agg::Sum => self.sum,
            Agg::Min => self.min,
            Agg::Max => self.max,
            Agg::Avg => self.avg(),
        }
    }
}

/// A window that has not closed yet. The twin keeps them in one vector sorted
/// by `(last_ms, slot)`, so closing is popping from the front.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OpenWindow {
    /// The window's last millisecond (`start + size - 1`).
    pub last_ms: i64,
    pub slot: u16,
    /// Source position of the event that opened the window.
    pub first_origin: u64,
    pub acc: Acc,
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

/// Per rule: the alert lifecycle (issue: raised -> cleared; one active alert
/// per asset and rule).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub active: bool,
    /// Incremented on every raise: `(asset, rule, seq)` identifies an alert.
    pub seq: u32,
    /// Times the rule held while this alert was active (including the raise).
    pub firings: u64,
    /// Event time that raised the current alert.
    pub since_ts: i64,
    /// Inactive, with a `for:` duration: event time since which the condition
    /// has held at every evaluation (`NO_TS`: it does not hold).
    pub pending_since: i64,
}

impl Default for AlertState {
    fn default() -> Self {
        AlertState {
            active: false,
            seq: 0,
            firings: 0,
            since_ts: 0,
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

/// The twin of one asset.
#[derive(Debug, PartialEq)]
pub struct TwinState {
    /// Incremented by every applied event.
    pub version: u64,
    /// Greatest event time seen; the watermark is this minus the type's
    /// out-of-orderness.
    pub max_ts: i64,
    /// Latest value per sensor (by event time; ties: later arrival).
    /// Fixed-length parts are boxed slices, not `Vec`s: 8 bytes less each
    /// keeps the actor's task within a smaller allocation (ARCHITECTURE.md).
    pub sensors: Box<[Latest]>,
    /// Open windows sorted by `(last_ms, slot)`.
    pub open: Vec<OpenWindow>,
    /// Most recently closed window, for slots that rules read.
    pub closed: Box<[Option<Acc>]>,
    pub alerts: Box<[AlertState]>,
    pub stats: TwinStats,
    /// Windows closed since the last snapshot, when the model keeps a digest
    /// (replay); the snapshot moves them into the checkpoint.
    pub digest: Vec<ClosedDigest>,
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
            digest: self.digest.clone(),
        }
    }

    /// Reuses `self`'s allocations: the actor copies a twin into a scratch
    /// state before every batch, so this must not allocate.
    fn clone_from(&mut self, src: &Self) {
        self.version = src.version;
        self.max_ts = src.max_ts;
        self.sensors.clone_from(&src.sensors);
        self.open.clone_from(&src.open);
        self.closed.clone_from(&src.closed);
        self.alerts.clone_from(&src.alerts);
        self.stats = src.stats;
        self.digest.clone_from(&src.digest);
    }
}

/// Alert lifecycle transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Raised,
    Cleared,
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
        /// Event time of the evaluation that caused the transition.
        ts: i64,
        /// Values of the rule's inputs at that moment (same order as
        /// `RuleDef::inputs`).
        inputs: Vec<f64>,
    },
    /// Latest values that changed in this input.
    TwinUpdate {
        version: u64,
        changed: Vec<(u16, Latest)>,
    },
}

impl Output {
    pub fn kind(&self) -> OutputKind {
        match self {
            Output::Window { .. } => OutputKind::Windows,
            Output::Alert { .. } => OutputKind::Alerts,
            Output::TwinUpdate { .. } => OutputKind::TwinUpdates,
        }
    }
}

impl TwinState {
    pub fn new(m: &TypeModel) -> TwinState {
        TwinState {
            version: 0,
            max_ts: NO_TS,
            sensors: vec![Latest::NONE; m.sensors.len()].into_boxed_slice(),
            open: Vec::new(),
            closed: vec![None; m.n_closed].into_boxed_slice(),
            alerts: vec![AlertState::default(); m.rules.len()].into_boxed_slice(),
            stats: TwinStats::default(),
            digest: Vec::new(),
        }
    }

    /// `max_ts - out_of_orderness`: no event at or before it is expected.
    pub fn watermark(&self, m: &TypeModel) -> i64 {
        if self.max_ts == NO_TS {
            NO_TS
        } else {
            self.max_ts.saturating_sub(m.out_of_orderness_ms)
        }
    }
}

/// Applies `input` to `state`, appending outputs to `out`. `now_ms` is the
/// processing time (epoch ms); it never influences state derived from events.
pub fn apply(m: &TypeModel, state: &mut TwinState, input: Input<'_>, now_ms: i64, out: &mut Vec<Output>) {
    let _ = now_ms;
    match input {
        Input::Events(events) => {
            let track = m.emit.has(OutputKind::TwinUpdates);
            let mut changed: Vec<(u16, Latest)> = Vec::new();
            for e in events {
                let became_latest = on_event(m, state, e, out);
                if track && became_latest {
                    match changed.iter_mut().find(|(s, _)| *s == e.sensor) {
                        Some(c) => c.1 = state.sensors[e.sensor as usize],
                        None => changed.push((e.sensor, state.sensors[e.sensor as usize])),
                    }
                }
            }
            if track && !changed.is_empty() {
                out.push(Output::TwinUpdate {
                    version: state.version,
                    changed,
                });
            }
        }
        Input::EndOfInput => close_windows(m, state, i64::MAX, out),
    }
}

/// Applies one event; returns whether it became the sensor's latest value.
#[inline]
fn on_event(m: &TypeModel, st: &mut TwinState, e: &Event, out: &mut Vec<Output>) -> bool {
    st.version += 1;
    st.stats.events += 1;
    let s = e.sensor as usize;

    // (a) latest value by event time; ties go to the later arrival
    let latest = &mut st.sensors[s];
    let became_latest = e.ts >= latest.ts;
    if became_latest {
        *latest = Latest {
            ts: e.ts,
            value: e.value,
        };
    }

    // (b) windows, judged against the watermark before this event
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
    }

    // then the watermark advances, closing what it passed
    if e.ts > st.max_ts {
        st.max_ts = e.ts;
        let wm = st.watermark(m);
        if st.open.first().is_some_and(|w| w.last_ms <= wm) {
            close_windows(m, st, wm, out);
        }
    }

    // (c) rules on latest values
    if became_latest {
        for &r in &m.rules_by_sensor[s] {
            evaluate_rule(m, st, r, e.ts, out);
        }
    }
    became_latest
}

#[inline]
fn add_to_window(open: &mut Vec<OpenWindow>, last_ms: i64, slot: u16, e: &Event) {
    // Newest windows sit at the back: search from there.
    let mut i = open.len();
    while i > 0 {
        let w = &mut open[i - 1];
        if w.last_ms == last_ms && w.slot == slot {
            w.acc.add(e.value);
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
            slot,
            first_origin: e.origin,
            acc: Acc::first(e.value),
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
                st.digest.push(ClosedDigest {
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

struct TwinEnv<'a>(&'a TwinState);

impl Env<LocalSlot> for TwinEnv<'_> {
    #[inline]
    fn get(&self, slot: LocalSlot) -> f64 {
        match slot {
            LocalSlot::Latest(s) => {
                let l = &self.0.sensors[s as usize];
                if l.is_set() {
                    l.value
                } else {
                    f64::NAN
                }
            }
            LocalSlot::Closed { closed, agg } => self.0.closed[closed as usize].map_or(f64::NAN, |a| a.get(agg)),
        }
    }
}

fn evaluate_rule(m: &TypeModel, st: &mut TwinState, r: u16, ts: i64, out: &mut Vec<Output>) {
    let rule = &m.rules[r as usize];
    let env = TwinEnv(st);
    let holds = rule.cond.eval(&env);
    let active = st.alerts[r as usize].active;
    // Hysteresis: with `clear_when`, an active alert clears only when that
    // holds, not merely when `when` stops holding.
    let clears = active
        && match &rule.clear {
            Some(clear) => clear.eval(&env),
            None => !holds,
        };
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
            if ts.saturating_sub(alert.pending_since) >= rule.hold_ms {
                alert.active = true;
                alert.seq += 1;
                alert.firings = 1;
                alert.since_ts = ts;
                alert.pending_since = NO_TS;
                Some(Transition::Raised)
            } else {
                None
            }
        }
    } else if clears {
        alert.active = false;
        Some(Transition::Cleared)
    } else {
        if holds {
            alert.firings += 1;
        }
        None
    };
    if holds {
        st.stats.firings += 1;
    }
    if let Some(transition) = transition {
        if m.emit.has(OutputKind::Alerts) {
            let env = TwinEnv(st);
            out.push(Output::Alert {
                rule: r,
                transition,
                seq: st.alerts[r as usize].seq,
                ts,
                inputs: rule.inputs.iter().map(|(_, s)| env.get(*s)).collect(),
            });
        }
    }
}
