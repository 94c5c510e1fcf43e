//! How good the twin's model is, scored against simulated ground truth
//! (`support/score.rs`): not a speed benchmark, a quality one.
//!
//!     cargo bench --bench estimate
//!
//! * Estimate quality: the RMSE of the estimated sensor value against the
//!   true one, over the RMSE of the raw readings (their noise), for a
//!   `level` and a first-order `lag` model driven by random set points.
//! * Anomaly detection: stuck sensors, bias steps and slow drifts injected
//!   into otherwise fault-free traces; the share of faults the
//!   `model:anomaly` alert catches within the declared delay, and false
//!   alerts per fault-free asset-day.

#[path = "support/score.rs"]
mod score;

use score::{score, Scenario};
use twinstream::topology::SimFault;

const SOURCE: &str = "assets: [{ id: \"a-*\", type: t }]
sources: [{ name: f, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let level = format!(
        "asset_types:
  t:
    sensors: {{ level: {{ unit: m, noise: 0.1 }} }}
    model: {{ preset: level, sensor: level, q: 0.00001, anomaly: {{ false_alarm: 0.000001, window: 120, for: 10s }} }}
{SOURCE}"
    );
    let lag = format!(
        "asset_types:
  t:
    sensors: {{ temp: {{ unit: degC, noise: 0.5 }} }}
    commands: {{ setpoint: {{ reported: temp, tolerance: 1000 }} }}
    model: {{ preset: lag, sensor: temp, command: setpoint, tau: 60s, q: 0.001, anomaly: {{ false_alarm: 0.000001, window: 120, for: 10s }} }}
{SOURCE}"
    );
    let hours = if quick { 6.0 } else { 24.0 };
    let assets = if quick { 4 } else { 20 };
    for (name, topology, set_points, start) in [
        ("level", &level, None, 10.0),
        ("lag", &lag, Some((20.0, 200.0, 600_000)), 20.0),
    ] {
        let clean = score(&Scenario {
            topology,
            assets,
            hours,
            every_ms: 1000,
            seed: 7,
            faults: &[],
            fault_every_ms: 1,
            fault_for_ms: 1,
            fault_size: 0.0,
            detect_within_ms: 120_000,
            set_points,
            start_value: start,
        });
        println!(
            "{name:6} estimate: RMSE {:.4} vs raw {:.4}: ratio {:.3}; false alerts {} over {:.1} asset-days = {:.2}/asset-day",
            clean.rmse_estimate,
            clean.rmse_raw,
            clean.rmse_ratio(),
            clean.false_alerts,
            clean.clean_asset_days,
            clean.false_alerts_per_asset_day()
        );
        let faulty = score(&Scenario {
            topology,
            assets,
            hours,
            every_ms: 1000,
            seed: 11,
            faults: &[SimFault::Stuck, SimFault::Bias, SimFault::Drift],
            fault_every_ms: 1_800_000,
            fault_for_ms: 300_000,
            fault_size: 6.0,
            detect_within_ms: 300_000,
            set_points,
            start_value: start,
        });
        for kind in [SimFault::Stuck, SimFault::Bias, SimFault::Drift] {
            let (caught, of) = faulty.caught(Some(kind));
            let mut delays: Vec<i64> = faulty
                .faults
                .iter()
                .filter(|f| f.kind == kind)
                .filter_map(|f| f.delay_ms)
                .collect();
            delays.sort_unstable();
            let median = delays.get(delays.len() / 2).copied().unwrap_or(0);
            println!(
                "{name:6} {:5}: caught {caught}/{of} ({:.1}%), median delay {:.0} s",
                kind.name(),
                100.0 * caught as f64 / of.max(1) as f64,
                median as f64 / 1000.0
            );
        }
        println!(
            "{name:6} with faults: false alerts {} over {:.1} clean asset-days",
            faulty.false_alerts, faulty.clean_asset_days
        );
    }
}
