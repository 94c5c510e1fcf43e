//! Asset type models (`model:`): each preset's matrices, the matrix form and
//! its defaults, the anomaly test's parameters, the rule names that read a
//! model, and a model's version.

use std::path::Path;
use std::time::Duration;

use twinstream::topology::{self, ModelSlot, ModelSpec, ModelTransition, Preset, Severity, Slot, Topology};

use super::check_cases;
use super::model_errors::MODEL_ERRORS;

const TAIL: &str = "
assets: [{ id: t-1, type: tank }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
";

/// The topology of `types` (the text under `asset_types:`) and `rest`.
fn load(types: &str, rest: &str) -> Topology {
    let text = format!("asset_types:\n{types}{TAIL}{rest}");
    topology::parse(Path::new("t.yaml"), &text).unwrap_or_else(|d| panic!("{d}\n{text}"))
}

/// The model of the first asset type of `types`.
fn model(types: &str) -> ModelSpec {
    load(types, "").asset_types[0].model.clone().expect("a model")
}

#[test]
fn model_errors_are_positioned() {
    check_cases(MODEL_ERRORS);
}

#[test]
fn a_sensor_takes_its_noise() {
    let t = load(
        "  tank:\n    sensors: { level: { unit: m, noise: 0.05 }, flow: { unit: m3/h } }\n",
        "",
    );
    assert_eq!(t.asset_types[0].sensors[0].noise, Some(0.05));
    assert_eq!(t.asset_types[0].sensors[1].noise, None);
    assert!(t.asset_types[0].model.is_none());
}

#[test]
fn preset_level_is_a_random_walk_observed_directly() {
    let m = model(
        "  tank:\n    sensors: { temp: { unit: degC }, level: { unit: m, noise: 0.05 } }\n    model: { preset: level, sensor: level, q: 0.01 }\n",
    );
    let r = 0.05 * 0.05;
    assert_eq!(m.preset, Some(Preset::Level));
    assert_eq!(m.states, ["level"]);
    assert_eq!(m.transition, ModelTransition::Continuous);
    assert_eq!(m.a, [[0.0]]);
    assert_eq!(m.b, vec![Vec::<f64>::new()]);
    assert!(m.inputs.is_empty());
    assert_eq!(m.q, [[0.01]]);
    assert_eq!(m.observe.len(), 1);
    assert_eq!(
        (m.observe[0].sensor, m.observe[0].h.as_slice(), m.observe[0].r),
        (1, &[1.0][..], r)
    );
    assert_eq!(m.x0, None);
    assert_eq!(m.p0, [[1e6 * r]]);
    assert_eq!(m.anomaly, None);
}

#[test]
fn preset_level_rate_is_a_constant_velocity_and_r_overrides_the_noise() {
    let m = model(
        "  tank:\n    sensors: { level: { unit: m, noise: 0.05 } }\n    model: { preset: level_rate, sensor: level, q: 0.001, r: 0.01 }\n",
    );
    assert_eq!(m.preset, Some(Preset::LevelRate));
    assert_eq!(m.states, ["level", "rate"]);
    assert_eq!(m.a, [[0.0, 1.0], [0.0, 0.0]]);
    assert_eq!(m.b, vec![Vec::<f64>::new(); 2]);
    assert_eq!(m.q, [[0.0, 0.0], [0.0, 0.001]]);
    assert_eq!(m.observe[0].h, [1.0, 0.0]);
    assert_eq!(m.observe[0].r, 0.01);
    assert_eq!(m.x0, None);
    assert_eq!(m.p0, [[1e4, 0.0], [0.0, 1e4]]);
}

#[test]
fn preset_lag_follows_its_command() {
    let lag = |gain: &str| {
        model(&format!(
            "  tank:
    sensors: {{ temp: {{ unit: degC, noise: 0.5 }} }}
    commands: {{ fan: {{ reported: temp }}, setpoint: {{ reported: temp }} }}
    model: {{ preset: lag, sensor: temp, command: setpoint, tau: 30s{gain}, q: 0.01 }}
"
        ))
    };
    let m = lag(", gain: 2");
    assert_eq!(m.preset, Some(Preset::Lag));
    assert_eq!(m.states, ["value"]);
    assert_eq!(m.transition, ModelTransition::Continuous);
    assert_eq!(m.a, [[-1.0 / 30.0]]);
    assert_eq!(m.b, [[2.0 / 30.0]]);
    assert_eq!(m.inputs, [1], "the index of `setpoint` among the commands");
    assert_eq!(m.q, [[0.01]]);
    assert_eq!((m.observe[0].h.as_slice(), m.observe[0].r), (&[1.0][..], 0.25));
    assert_eq!(m.p0, [[1e6 * 0.25]]);
    let unit_gain = lag("");
    assert_eq!(unit_gain.b, [[1.0 / 30.0]], "gain defaults to 1");
}

const MATRIX_FORM: &str = "  tank:
    sensors:
      inflow: { unit: m3/h }
      level: { unit: m, noise: 0.05 }
    commands: { pump: { reported: level }, valve: { reported: level } }
    model:
      states: [level, rate]
      transition: discrete
      A: [[1, 1], [0, 1]]
      B: [[0], [0.5]]
      inputs: [valve]
      observe: { level: [1, 0], inflow: [0, 1] }
      Q: [[0, 0], [0, 0.01]]
      R: { inflow: 0.04 }
      x0: [2, -0]
      P0: [[1, 0.5], [0.5, 1]]
      anomaly: { false_alarm: 0.01, window: 20, for: 30s, severity: critical }
";

#[test]
fn the_matrix_form_resolves_names_to_indices() {
    let m = model(MATRIX_FORM);
    assert_eq!(m.preset, None);
    assert_eq!(m.states, ["level", "rate"]);
    assert_eq!(m.transition, ModelTransition::Discrete);
    assert_eq!(m.a, [[1.0, 1.0], [0.0, 1.0]]);
    assert_eq!(m.b, [[0.0], [0.5]]);
    assert_eq!(m.inputs, [1], "`valve` is the second command");
    let obs: Vec<(usize, Vec<f64>, f64)> = m.observe.iter().map(|o| (o.sensor, o.h.clone(), o.r)).collect();
    assert_eq!(
        obs,
        [(1, vec![1.0, 0.0], 0.05 * 0.05), (0, vec![0.0, 1.0], 0.04)],
        "in `observe` order; `R` where given, else the sensor's noise squared"
    );
    assert_eq!(m.q, [[0.0, 0.0], [0.0, 0.01]]);
    assert_eq!(m.x0, Some(vec![2.0, 0.0]));
    assert_eq!(m.p0, [[1.0, 0.5], [0.5, 1.0]]);
    let a = m.anomaly.expect("anomaly");
    assert_eq!(
        (a.false_alarm, a.window, a.hold, a.severity),
        (0.01, 20, Duration::from_secs(30), Severity::Critical)
    );
}

#[test]
fn the_matrix_form_defaults_to_continuous_no_x0_and_a_diffuse_p0() {
    let m = model(
        "  tank:
    sensors: { level: { unit: m, noise: 0.05 }, flow: { unit: m3/h, noise: 0.2 } }
    model:
      states: [level, inflow]
      A: [[0, 1], [0, 0]]
      observe: { level: [1, 0], flow: [0, 1] }
      Q: [[0, 0], [0, 0.01]]
      anomaly: {}
",
    );
    assert_eq!(m.transition, ModelTransition::Continuous);
    assert_eq!(m.b, vec![Vec::<f64>::new(); 2]);
    assert_eq!(m.x0, None);
    let r_max = 0.2 * 0.2;
    assert_eq!(
        m.p0,
        [[1e6 * r_max, 0.0], [0.0, 1e6 * r_max]],
        "1e6 times the largest R"
    );
    let a = m.anomaly.expect("anomaly: {} takes the defaults");
    assert_eq!(
        (a.false_alarm, a.window, a.hold, a.severity),
        (0.001, 10, Duration::ZERO, Severity::Warning)
    );
}

#[test]
fn rule_names_read_the_model() {
    let t = load(
        "  tank:
    sensors: { temp: { unit: degC }, level: { unit: m, noise: 0.05 } }
    model: { preset: level_rate, sensor: level, q: 0.001, anomaly: {} }
  pump:
    sensors: { nis: { unit: \"1\" } }
",
        r#"rules:
  - name: model
    when: "est.level > 1 and est.rate.std < 2 and abs(residual.level) > 0.5 or nis > 20"
    asset_types: [tank]
  - { name: plain, when: "nis > 1", asset_types: [pump] }
"#,
    );
    let slots = |rule: usize| {
        let mut out = Vec::new();
        t.rules[rule].compiled[0].1.visit_slots(&mut |s| out.push(s));
        out
    };
    assert_eq!(
        slots(0),
        [
            Slot::Model(ModelSlot::Est { state: 0 }),
            Slot::Model(ModelSlot::EstStd { state: 1 }),
            Slot::Model(ModelSlot::Residual { sensor: 1 }),
            Slot::Model(ModelSlot::Nis),
        ]
    );
    // A type without a model keeps its sensor named `nis`.
    assert_eq!(t.rules[1].compiled[0].0, 1);
    assert_eq!(slots(1), [Slot::Latest { sensor: 0 }]);
}

#[test]
fn the_version_is_a_stable_hash_of_the_declaration() {
    let version = |types: &str| model(types).version;
    let block = version(MATRIX_FORM);
    assert_eq!(block, version(MATRIX_FORM), "the same text, the same version");
    // Layout, comments and the order of fields do not count.
    let reordered = MATRIX_FORM.replace("      A: [[1, 1], [0, 1]]\n", "").replace(
        "      states: [level, rate]\n",
        "      states: [level, rate]  # a comment\n      A:\n        - [1.0, 1]\n        - [0, 1e0]\n",
    );
    assert_ne!(reordered, MATRIX_FORM);
    assert_eq!(version(&reordered), block);
    // Anything that changes what the filter computes does.
    for (from, to) in [
        ("[0, 0.01]]", "[0, 0.02]]"),
        ("noise: 0.05", "noise: 0.06"),
        ("window: 20", "window: 21"),
        ("transition: discrete", "transition: continuous"),
        ("x0: [2, -0]", "x0: [2, 1]"),
        ("inputs: [valve]", "inputs: [pump]"),
    ] {
        assert!(MATRIX_FORM.contains(from), "{from}");
        assert_ne!(version(&MATRIX_FORM.replace(from, to)), block, "{from} -> {to}");
    }
    let preset = |q: &str| {
        version(&format!(
            "  tank:\n    sensors: {{ level: {{ unit: m, noise: 0.05 }} }}\n    model: {{ preset: level, sensor: level, q: {q} }}\n"
        ))
    };
    assert_eq!(preset("0.01"), preset("0.010"));
    assert_ne!(preset("0.01"), preset("0.02"));
    // The same matrices written out are another declaration (the preset is
    // part of the version): documented, either would do.
    let written_out = version(
        "  tank:\n    sensors: { level: { unit: m, noise: 0.05 } }\n    model: { states: [level], A: [[0]], observe: { level: [1] }, Q: [[0.01]], P0: [[2500.0000000000005]] }\n",
    );
    assert_ne!(written_out, preset("0.01"));
    // FNV-1a over a fixed encoding: the same on every build and platform.
    // Changing the encoding changes the version of every deployed model.
    assert_eq!(preset("0.01"), PINNED_LEVEL_VERSION, "{:#018x}", preset("0.01"));
}

/// The version of `{preset: level, sensor: level, q: 0.01}` with noise 0.05.
const PINNED_LEVEL_VERSION: u64 = 0x055b_41f9_9e41_0af1;

#[test]
fn the_summary_names_the_model() {
    let t = load(MATRIX_FORM, "");
    let s = t.summary();
    let want = format!(
        "               model matrices [level, rate] discrete; observes level (R 0.0025), inflow (R 0.04); inputs valve; anomaly [critical] false alarm 0.01 over 20 readings for 30s; version {:016x}",
        t.asset_types[0].model.as_ref().unwrap().version
    );
    assert!(s.lines().any(|l| l == want), "no line\n{want}\nin:\n{s}");
    assert!(s.lines().any(|l| l == "               level: noise 0.05"), "{s}");
}
