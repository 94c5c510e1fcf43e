//! Forecasts and what-if runs against hand-computed trajectories.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::topology;
use crate::twin::model_tests::ev;
use crate::twin::schema::{Model, OutputMask};

const OVEN: &str = r#"
asset_types:
  oven:
    sensors:
      temp: { unit: degC, noise: 0.5 }
      door: { unit: bool }
    commands: { setpoint: { reported: temp, min: 0, max: 300 } }
    model: { preset: lag, sensor: temp, command: setpoint, tau: 60s, q: 0.01 }
assets: [{ id: "o-*", type: oven }]
sources: [{ name: f, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#;

fn build(text: &str, emit: OutputMask) -> Arc<TypeModel> {
    let topo = topology::parse(Path::new("t.yaml"), text).unwrap_or_else(|d| panic!("{d}"));
    Model::build(&topo, emit, false).types[0].clone()
}

fn oven(rules: &str) -> Arc<TypeModel> {
    build(&format!("{OVEN}{rules}"), OutputMask::all())
}

/// A twin that read `temp` = 20 every second for a minute.
fn warmed(m: &TypeModel) -> TwinState {
    let mut st = TwinState::new(m);
    let events: Vec<Event> = (0..60).map(|i| ev(0, 1_000_000 + i * 1000, 20.0)).collect();
    apply(m, &mut st, Input::Events(&events), 0, &mut Vec::new());
    st
}

fn set(m: &TypeModel, st: &mut TwinState, value: f64) {
    let input = Input::Command {
        def: 0,
        value,
        key: "k",
    };
    apply(m, st, input, 0, &mut Vec::new());
}

/// The mean of the (only) state at point `k`.
fn mean(t: &Trajectory, k: usize) -> f64 {
    t.points[k].states[0].0
}

#[test]
fn a_forecast_lags_towards_the_desired_value_and_grows_uncertain() {
    let m = oven("");
    let mut st = warmed(&m);
    set(&m, &mut st, 100.0);
    let before = st.clone();
    let f = forecast(&m, &st, Horizon::new(600_000, 10_000).unwrap()).unwrap();
    assert_eq!(
        format!("{st:?}"),
        format!("{before:?}"),
        "a forecast reads the twin only"
    );
    assert_eq!(f.points.len(), 61, "the estimate, then one point per step");
    let (x0, sd0) = st.filter().unwrap().state(0);
    assert_eq!(f.points[0].ts, 1_059_000);
    assert_eq!(f.points[0].states[0], (x0, sd0));
    for k in 1..=60 {
        // x(t) = u + (x0 - u) exp(-t / tau), step by step.
        let want = 100.0 + (x0 - 100.0) * (-(k as f64) * 10.0 / 60.0).exp();
        assert!((mean(&f, k) - want).abs() < 1e-9, "step {k}: {} vs {want}", mean(&f, k));
        assert_eq!(f.points[k].ts, 1_059_000 + k as i64 * 10_000);
        // The variance tends to q tau / 2 from below: it only grows here.
        assert!(f.points[k].states[0].1 >= f.points[k - 1].states[0].1);
        assert_eq!(f.points[k].sensors[0].0, mean(&f, k), "temp observes the state");
    }
    let limit = (0.01f64 * 60.0 / 2.0).sqrt();
    assert!((f.points[60].states[0].1 - limit).abs() < 0.01, "{:?}", f.points[60]);
}

#[test]
fn with_nothing_commanded_a_lag_holds_its_value() {
    let m = oven("");
    let st = warmed(&m);
    let f = forecast(&m, &st, Horizon::new(60_000, 10_000).unwrap()).unwrap();
    assert!(f.points.iter().all(|p| p.states[0].0 == f.points[0].states[0].0));
}

#[test]
fn a_what_if_without_commands_is_the_forecast() {
    let m = oven("rules: [{ name: hot, when: \"temp > 80\" }]\n");
    let mut st = warmed(&m);
    set(&m, &mut st, 100.0);
    let h = Horizon::new(600_000, 10_000).unwrap();
    let w = what_if(&m, &st, h, &[], 0).unwrap();
    let f = forecast(&m, &st, h).unwrap();
    assert_eq!(w.trajectory, f);
    // The forecast crosses 80 where exp(-t/60) = 20/80: t = 83.2 s, so at
    // the step of 90 s.
    let hot = m.rule_index("hot").unwrap();
    assert_eq!(
        w.alerts,
        [Fired {
            rule: hot,
            transition: Transition::Raised,
            ts: 1_059_000 + 90_000
        }]
    );
    assert_eq!(w.active_at_end, [hot]);
}

#[test]
fn a_what_if_applies_its_commands_when_they_are_due_and_leaves_the_twin_alone() {
    let rules = "rules:
  - { name: hot, when: \"est.value > 80\", for: 30s, severity: critical,
      command: { name: setpoint, value: 50, on_clear: 100 } }
";
    let m = oven(rules);
    let st = warmed(&m);
    let before = st.clone();
    let h = Horizon::new(600_000, 10_000).unwrap();
    let plan = [Hypothetical {
        def: 0,
        value: 200.0,
        at_ms: 25_000,
    }];
    let w = what_if(&m, &st, h, &plan, 5_000).unwrap();
    // (Debug: a desired value not set yet is NaN, which equals nothing.)
    assert_eq!(format!("{st:?}"), format!("{before:?}"), "the live twin is untouched");
    // Up to 25 s nothing is commanded: the value holds.
    let x0 = st.filter().unwrap().state(0).0;
    assert_eq!(mean(&w.trajectory, 2), x0);
    // From 25 s it lags towards 200: at 30 s it has had 5 s of it.
    let at30 = 200.0 + (x0 - 200.0) * (-5.0f64 / 60.0).exp();
    assert!((mean(&w.trajectory, 3) - at30).abs() < 1e-9);
    // Above 80 from t = 25 + 60 ln(180/120) = 49.3 s (the 50 s step), held
    // 30 s: raised at 80 s, and the rule's command sets 50, which the lag
    // then follows down: below 80 again, the alert clears and sends 100.
    let hot = m.rule_index("hot").unwrap();
    let t0 = 1_059_000;
    assert_eq!(
        w.alerts[0],
        Fired {
            rule: hot,
            transition: Transition::Raised,
            ts: t0 + 80_000
        }
    );
    assert_eq!(
        w.commands[0],
        RuleCommand {
            rule: hot,
            value: 50.0,
            ts: t0 + 80_000
        }
    );
    let cleared = w.alerts[1];
    assert_eq!((cleared.rule, cleared.transition), (hot, Transition::Cleared));
    assert!(cleared.ts > t0 + 80_000);
    assert_eq!(
        w.commands[1],
        RuleCommand {
            rule: hot,
            value: 100.0,
            ts: cleared.ts
        }
    );
    // The rule's own command drives the rest of the run: the model follows
    // the set point the rules chose, so the alert comes back.
    assert!(w.alerts.len() >= 3, "{:?}", w.alerts);
}

#[test]
fn alerts_are_seen_when_no_sink_takes_alerts() {
    let rules = "rules: [{ name: hot, when: \"temp > 80\" }]\n";
    let m = build(&format!("{OVEN}{rules}"), OutputMask::default());
    let mut st = warmed(&m);
    set(&m, &mut st, 100.0);
    let w = what_if(&m, &st, Horizon::new(600_000, 10_000).unwrap(), &[], 0).unwrap();
    assert_eq!(w.alerts.len(), 1, "{:?}", w.alerts);
}

#[test]
fn a_what_if_leaves_the_anomaly_test_to_the_real_readings() {
    let m = build(
        &OVEN.replace("q: 0.01 }", "q: 0.01, anomaly: { window: 10, false_alarm: 0.001 } }"),
        OutputMask::all(),
    );
    let st = warmed(&m);
    let nis = st.filter().unwrap().nis_sum();
    assert!(nis.is_finite());
    let w = what_if(&m, &st, Horizon::new(600_000, 10_000).unwrap(), &[], 0).unwrap();
    assert!(
        w.alerts.is_empty(),
        "its own predictions are not anomalies: {:?}",
        w.alerts
    );
}

#[test]
fn what_cannot_be_foreseen_says_why() {
    let h = Horizon::new(60_000, 10_000).unwrap();
    let m = oven("");
    assert_eq!(forecast(&m, &TwinState::new(&m), h), Err(ForesightError::NoEstimate));
    let plain = build(&OVEN.replace("    model:", "    #"), OutputMask::all());
    let st = warmed(&plain);
    assert!(matches!(forecast(&plain, &st, h), Err(ForesightError::NoModel(t)) if t == "oven"));
    for bad in [(0, 1), (10, 20), (MAX_STEPS + 1, 1)] {
        assert!(
            matches!(Horizon::new(bad.0, bad.1), Err(ForesightError::BadHorizon(_))),
            "{bad:?}"
        );
    }
    assert!(Horizon::new(MAX_STEPS, 1).is_ok());
    let st = warmed(&m);
    for (value, at_ms) in [(301.0, 0), (-1.0, 0), (f64::NAN, 0), (10.0, -1), (10.0, 60_001)] {
        let plan = [Hypothetical { def: 0, value, at_ms }];
        let e = what_if(&m, &st, h, &plan, 0).unwrap_err();
        assert!(matches!(e, ForesightError::BadCommand(_)), "{value} at {at_ms}: {e}");
    }
}
