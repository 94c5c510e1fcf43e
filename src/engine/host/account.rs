//! What a batch changed in a twin, told to the node-wide metrics.

use crate::telemetry;
use crate::twin::commands::Phase;
use crate::twin::model::{Transition, TwinState};
use crate::twin::schema::TypeModel;

/// Reports what changed between `before` and `after` to the node-wide
/// gauges and counters: `stale` more stale sensors (the backup may not hold
/// the sensors: [`TwinState::keep`] counts them), active alerts by
/// severity, alert transitions and the end-to-end latency of raised alerts
/// (a few entries per twin, compared once per batch). Without `now` (a
/// restore) only the gauges move.
pub(super) fn account(m: &TypeModel, before: &TwinState, after: &TwinState, stale: i64, now: Option<i64>) {
    telemetry::sensors_stale(stale);
    for (r, (a, b)) in before.alerts.iter().zip(after.alerts.iter()).enumerate() {
        if a == b {
            continue;
        }
        let severity = m.rules[r].severity.name();
        telemetry::alerts_active(severity, i64::from(b.active) - i64::from(a.active));
        let Some(now) = now else { continue };
        if b.seq != a.seq && b.active {
            telemetry::alert_transition(severity, Transition::Raised.name());
            telemetry::alert_latency((now - b.since_ts) as f64 / 1000.0);
        }
        if b.acked && !a.acked && b.seq == a.seq {
            telemetry::alert_transition(severity, Transition::Acknowledged.name());
        }
        if a.active && (!b.active || b.seq != a.seq) {
            telemetry::alert_transition(severity, Transition::Cleared.name());
        }
    }
    if let (Some(a), Some(b)) = (before.commands(), after.commands()) {
        if a != b {
            telemetry::commands_pending(b.count(Phase::Pending) as i64 - a.count(Phase::Pending) as i64);
            if now.is_some() {
                for c in &b.log {
                    match a.log.iter().find(|o| o.def == c.def && o.seq == c.seq) {
                        None => {
                            telemetry::commands("issued", 1);
                            if c.phase != Phase::Pending {
                                telemetry::commands(c.phase.name(), 1);
                            }
                        }
                        Some(o) if o.phase == Phase::Pending && c.phase != Phase::Pending => {
                            telemetry::commands(c.phase.name(), 1)
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
}
