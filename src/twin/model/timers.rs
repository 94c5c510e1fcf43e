//! What processing time drives: sensors and sources going stale, `offline`,
//! the idle timeout of windows (and the command timeouts of
//! [`crate::twin::commands`]): when the next timer is due and what a tick does.

use super::rules::{evaluate_rule, set_alert};
use super::sensors::{reconcile, resolve};
use super::windows::close_windows;
use super::{Output, Quality, TwinState, NO_TS};
use crate::twin::commands;
use crate::twin::schema::TypeModel;

impl TwinState {
    /// Processing time of the most recent reading of any sensor.
    fn last_seen(&self) -> i64 {
        self.sensors.iter().map(|s| s.seen).max().unwrap_or(NO_TS)
    }
}

/// The earliest processing time at which [`Input::Tick`](super::Input::Tick)
/// may change the twin: a sensor or a source going stale, or the idle
/// timeout. `None`: no timer needed.
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

/// A timer is due: sensors not heard from for `stale_after` go stale, sources
/// that went stale no longer count, an asset whose sensors are all stale is
/// offline, and the idle timeout closes the windows of a quiet asset.
pub(super) fn on_tick(m: &TypeModel, st: &mut TwinState, now: i64, out: &mut Vec<Output>) {
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
        let sensor = st.sensors[s];
        if sensor.quality != Quality::Stale && sensor.seen != NO_TS && now.saturating_sub(sensor.seen) >= after {
            st.sensors.get_mut(s).quality = Quality::Stale;
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
