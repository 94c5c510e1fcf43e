//! Event-time windows: the watermark, open windows and their accumulator
//! ([`Acc`]), closing them (and the rules closed windows trigger), the replay
//! digest ([`ClosedDigest`]).
//!
//! Which windows an event lands in, and whether it is late, is step (c) of
//! `on_event` in `mod.rs`; the idle timeout that closes a quiet asset's
//! windows is in `timers.rs`.

use serde::{Deserialize, Serialize};

use super::rules::evaluate_rule;
use super::{Event, Output, TwinState, NO_TS};
use crate::topology::{Agg, OutputKind};
use crate::twin::schema::TypeModel;

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

impl TwinState {
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
}

#[inline]
pub(super) fn add_to_window(open: &mut Vec<OpenWindow>, last_ms: i64, slot: u16, e: &Event) {
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
pub(super) fn close_windows(m: &TypeModel, st: &mut TwinState, wm: i64, out: &mut Vec<Output>) {
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
