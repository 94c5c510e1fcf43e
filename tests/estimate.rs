//! The twin's model scored against simulated ground truth (the true state
//! of assets that move by the declared model, read by noisy sensors, with
//! stuck, bias and drift faults injected): the estimate is closer to the
//! truth than the readings, every fault is caught in time and fault-free
//! data raises nothing. `benches/estimate.rs` reports the same figures on
//! a longer trace.

#[path = "../benches/support/score.rs"]
mod score;

use score::{score, Scenario, Score};
use twinstream::topology::SimFault;

const SOURCE: &str = "assets: [{ id: \"a-*\", type: t }]
sources: [{ name: f, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
";

const ANOMALY: &str = "anomaly: { false_alarm: 0.000001, window: 120, for: 10s }";

fn level() -> String {
    format!(
        "asset_types:
  t:
    sensors: {{ level: {{ unit: m, noise: 0.1 }} }}
    model: {{ preset: level, sensor: level, q: 0.00001, {ANOMALY} }}
{SOURCE}"
    )
}

fn lag() -> String {
    format!(
        "asset_types:
  t:
    sensors: {{ temp: {{ unit: degC, noise: 0.5 }} }}
    commands: {{ setpoint: {{ reported: temp, tolerance: 1000 }} }}
    model: {{ preset: lag, sensor: temp, command: setpoint, tau: 60s, q: 0.001, {ANOMALY} }}
{SOURCE}"
    )
}

fn run(topology: &str, faults: &[SimFault], set_points: Option<(f64, f64, i64)>, seed: u64) -> Score {
    score(&Scenario {
        topology,
        assets: 3,
        hours: 4.0,
        every_ms: 1000,
        seed,
        faults,
        fault_every_ms: 1_800_000,
        fault_for_ms: 300_000,
        fault_size: 6.0,
        detect_within_ms: 300_000,
        set_points,
        start_value: 20.0,
    })
}

#[test]
fn the_estimate_is_closer_to_the_truth_than_the_readings() {
    for (name, topology, set_points) in [("level", level(), None), ("lag", lag(), Some((20.0, 200.0, 600_000)))] {
        let s = run(&topology, &[], set_points, 5);
        assert!(
            (s.rmse_raw - if name == "level" { 0.1 } else { 0.5 }).abs() < 0.01,
            "{name}: the readings carry the declared noise: {s:?}"
        );
        assert!(s.rmse_ratio() <= 0.5, "{name}: {s:?}");
        assert_eq!(s.false_alerts, 0, "{name}: fault-free data raises nothing: {s:?}");
    }
}

#[test]
fn stuck_sensors_bias_steps_and_slow_drifts_are_each_caught() {
    let faults = [SimFault::Stuck, SimFault::Bias, SimFault::Drift];
    for (name, topology, set_points) in [("level", level(), None), ("lag", lag(), Some((20.0, 200.0, 600_000)))] {
        let s = run(&topology, &faults, set_points, 9);
        for kind in faults {
            let (caught, of) = s.caught(Some(kind));
            assert!(of >= 5, "{name} {kind:?}: enough faults to judge: {s:?}");
            assert!(
                caught as f64 >= 0.95 * of as f64,
                "{name} {kind:?}: {caught} of {of} caught within 5 minutes: {s:?}"
            );
        }
        assert!(s.false_alerts_per_asset_day() <= 1.0, "{name}: {s:?}");
    }
}
