//! Rules and alerts: evaluating a rule (`for:`, `clear_when`), the alert
//! lifecycle raised -> acknowledged -> cleared ([`AlertState`]), what an
//! alert reports, and the actuation commands rules send.

use serde::{Deserialize, Serialize};

use super::{Output, Quality, Transition, TwinState, NO_TS};
use crate::topology::expr::Env;
use crate::topology::OutputKind;
use crate::twin::commands::{self, Origin};
use crate::twin::schema::{LocalSlot, RuleKind, TypeModel};

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

pub(super) struct TwinEnv<'a>(pub &'a TypeModel, pub &'a TwinState);

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
            LocalSlot::Model(slot) => st.model_value(m, slot),
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

pub(super) fn evaluate_rule(m: &TypeModel, st: &mut TwinState, r: u16, ts: i64, out: &mut Vec<Output>) {
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
pub(in crate::twin) fn set_alert(m: &TypeModel, st: &mut TwinState, r: u16, on: bool, ts: i64, out: &mut Vec<Output>) {
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
    if m.history.as_ref().is_some_and(|h| h.events_keep_ms.is_some()) {
        super::history::on_alert(st, r, transition, ts, &inputs);
    }
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
            if rule.tracked.is_none() && m.history.as_ref().is_some_and(|h| h.events_keep_ms.is_some()) {
                super::history::on_rule_command(st, r, transition, ts, value);
            }
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

pub(super) fn emit_alert(
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
pub(super) fn alert_inputs(m: &TypeModel, st: &TwinState, r: u16) -> Vec<f64> {
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

/// Rules whose command is tracked left an [`Output::Command`] in
/// `out[mark..]`: each becomes an issued command (sent as
/// [`Output::Actuate`]). Issuing needs processing time, which rule
/// evaluation (in event time) does not have.
pub(super) fn issue_rule_commands(m: &TypeModel, st: &mut TwinState, now: i64, out: &mut Vec<Output>, mark: usize) {
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
