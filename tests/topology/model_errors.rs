//! The errors of asset type models (`model:`) and sensor `noise:`, and of
//! the rule names that read a model, each at its position.

use super::Case;

pub const MODEL_ERRORS: &[Case] = &[
    Case {
        name: "a sensor noise that is not a finite number above zero",
        yaml: r#"
asset_types:
  tank:
    sensors:
      level: { unit: m, noise: 0 }
      temp: { unit: degC, noise: .inf }
      flow: { unit: m3/h, noise: lots }
assets: [{ id: t-1, type: tank }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#,
        want: &[
            "t.yaml:4:32: sensor `level`.noise: must be a finite number above zero (the standard deviation of the measurement noise)",
            "t.yaml:5:34: sensor `temp`.noise: must be a finite number, found `.inf`",
            "t.yaml:6:34: sensor `flow`.noise: expected a number, found `lots`",
        ],
    },
    Case {
        name: "presets: unknown preset, no noise, q below zero, unknown sensor, r not above zero",
        yaml: r#"
asset_types:
  tank:
    sensors: { level: { unit: m, noise: 0.05 } }
    commands: { valve: { reported: level } }
    model: { preset: levl, sensor: level, q: 0.01 }
  pond:
    sensors: { level: { unit: m } }
    model: { preset: level, sensor: level, q: -1 }
  pit:
    sensors: { level: { unit: m, noise: 0.05 } }
    model: { preset: level_rate, sensor: lvel, q: 0.01, r: 0 }
  well:
    sensors: { level: { unit: m } }
    model: { preset: level, sensor: level, q: 0.01 }
assets: [{ id: t-1, type: tank }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#,
        want: &[
            "t.yaml:5:22: asset type `tank`.model.preset: expected `level`, `level_rate` or `lag`, found `levl`",
            "t.yaml:8:37: asset type `pond`: model observes `level`: give the sensor `noise:` (its standard deviation) or the model `r:` (its variance)",
            "t.yaml:8:47: asset type `pond`.model.q: must be zero or above (a variance per second)",
            "t.yaml:11:42: asset type `pit`.model.sensor: no sensor `lvel` in asset type `pit` (did you mean `level`?)",
            "t.yaml:11:60: asset type `pit`.model.r: must be above zero (a variance)",
            "t.yaml:14:37: asset type `well`: model observes `level`: give the sensor `noise:` (its standard deviation) or the model `r:` (its variance)",
        ],
    },
    Case {
        name: "preset `lag`: its command, tau and gain",
        yaml: r#"
asset_types:
  oven:
    sensors: { temp: { unit: degC, noise: 0.5 } }
    commands: { heat: { reported: temp } }
    model: { preset: lag, sensor: temp, command: heater, tau: 0s, gain: .nan, q: 0.01 }
  kiln:
    sensors: { temp: { unit: degC, noise: 0.5 } }
    model: { preset: lag, sensor: temp, q: 0.01 }
  tank:
    sensors: { temp: { unit: degC, noise: 0.5 } }
    model: { preset: lag, sensor: temp, command: heat, tau: 30, q: 0.01 }
assets: [{ id: t-1, type: tank }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#,
        want: &[
            "t.yaml:5:50: asset type `oven`.model.command: `heater` is not a command of asset type `oven` (did you mean `heat`?); its commands: `heat`",
            "t.yaml:5:63: asset type `oven`.model.tau: must be greater than zero",
            "t.yaml:5:73: asset type `oven`.model.gain: must be a finite number, found `.nan`",
            "t.yaml:8:12: asset type `kiln`.model: missing required field `tau`",
            "t.yaml:8:12: asset type `kiln`.model: missing required field `command`",
            "t.yaml:11:50: asset type `tank`.model.command: `heat` is not a command of asset type `tank`; it declares no `commands:`",
            "t.yaml:11:61: asset type `tank`.model.tau: expected a duration with a unit, like `30ms` or `30s`, found `30`",
        ],
    },
    Case {
        name: "preset and matrix fields mixed, unknown fields, neither form",
        yaml: r#"
asset_types:
  tank:
    sensors: { level: { unit: m, noise: 0.05 } }
    model:
      preset: level
      sensor: level
      q: 0.01
      tau: 30s
      Q: [[0.01]]
      observe: { level: [1] }
      colour: red
  pond:
    sensors: { level: { unit: m, noise: 0.05 } }
    model:
      states: [level]
      A: [[0]]
      observe: { level: [1] }
      Q: [[0.01]]
      q: 0.01
      r: 0.1
  pit:
    sensors: { level: { unit: m, noise: 0.05 } }
    model: { anomaly: { window: 5 } }
assets: [{ id: t-1, type: tank }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#,
        want: &[
            "t.yaml:8:7: asset type `tank`.model: preset `level` takes no `tau` (only preset `lag` does)",
            "t.yaml:9:7: asset type `tank`.model: a `preset` model takes no `Q` (that is the matrix form); a preset's fields: `preset`, `sensor`, `q`, `r`, `tau`, `gain`, `command`",
            "t.yaml:10:7: asset type `tank`.model: a `preset` model takes no `observe` (that is the matrix form); a preset's fields: `preset`, `sensor`, `q`, `r`, `tau`, `gain`, `command`",
            "t.yaml:11:7: asset type `tank`.model: unknown field `colour`; expected one of `preset`, `sensor`, `q`, `r`, `tau`, `gain`, `command`, `states`, `transition`, `A`, `B`, `inputs`, `observe`, `Q`, `R`, `x0`, `P0` or `anomaly`",
            "t.yaml:19:7: asset type `pond`.model: `q` is a field of a `preset` model (the matrix form's process noise is `Q`)",
            "t.yaml:20:7: asset type `pond`.model: `r` is a field of a `preset` model (the matrix form's measurement noise is `R: {<sensor>: <variance>}`)",
            "t.yaml:23:12: asset type `pit`.model: give a `preset` (`level`, `level_rate` or `lag`) or the matrices (`states`, `A`, `observe`, `Q`, ...)",
        ],
    },
    Case {
        name: "matrix dimensions and non-finite numbers",
        yaml: r#"
asset_types:
  tank:
    sensors: { level: { unit: m, noise: 0.05 } }
    commands: { valve: { reported: level } }
    model:
      states: [level, rate]
      A: [[0, 1], [0, 0, 0]]
      B: [[0], [1, 2]]
      inputs: [valve]
      observe: { level: [1] }
      Q: [[0, 0], [0, 0.01], [0, 0]]
      x0: [0, 0, 0]
      P0: 1
  pond:
    sensors: { level: { unit: m, noise: 0.05 } }
    model:
      states: [level, rate]
      A: [[0, 1], 0]
      observe: { level: [1, 0] }
      Q: [[0, 0], [0, .inf]]
assets: [{ id: t-1, type: tank }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#,
        want: &[
            "t.yaml:7:19: asset type `tank`.model.A: expected 2 rows of 2 numbers (one per state), row 2 has 3",
            "t.yaml:8:16: asset type `tank`.model.B: expected 2 rows of 1 number (one per input), row 2 has 2",
            "t.yaml:10:25: asset type `tank`.model.observe.level: expected 2 numbers (one per state), found 1",
            "t.yaml:11:10: asset type `tank`.model.Q: expected 2 rows of 2 numbers (one per state), found 3 rows",
            "t.yaml:12:11: asset type `tank`.model.x0: expected 2 numbers (one per state), found 3",
            "t.yaml:13:11: asset type `tank`.model.P0: expected 2 rows of 2 numbers (one per state), found a scalar",
            "t.yaml:18:19: asset type `pond`.model.A: expected 2 rows of 2 numbers (one per state), row 2 is a scalar",
            "t.yaml:20:23: asset type `pond`.model.Q: must be a finite number, found `.inf`",
        ],
    },
    Case {
        name: "states, transition, inputs and observed sensors",
        yaml: r#"
asset_types:
  tank:
    sensors: { level: { unit: m, noise: 0.05 }, flow: { unit: m3/h } }
    commands: { valve: { reported: level } }
    model:
      states: [level, rate, level, 2nd]
      transition: sideways
      A: [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
      inputs: [valv, valve, valve]
      observe: { level: [1, 0, 0, 0], lvl: [1, 0, 0, 0], flow: [0, 0, 0, 0] }
      Q: [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
assets: [{ id: t-1, type: tank }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#,
        want: &[
            "t.yaml:6:29: asset type `tank`.model.states: state `level` listed twice",
            "t.yaml:6:36: asset type `tank`.model.states: state name `2nd` must be an identifier (letters, digits, `_`)",
            "t.yaml:7:19: asset type `tank`.model.transition: expected `continuous` or `discrete`, found `sideways`",
            "t.yaml:9:16: asset type `tank`.model.inputs: `valv` is not a command of asset type `tank` (did you mean `valve`?); its commands: `valve`",
            "t.yaml:9:29: asset type `tank`.model.inputs: command `valve` listed twice",
            "t.yaml:10:39: asset type `tank`.model.observe: no sensor `lvl` in asset type `tank`",
            "t.yaml:10:58: asset type `tank`: model observes `flow`: give the sensor `noise:` (its standard deviation) or the model `R: {flow: ...}`",
            "t.yaml:10:64: asset type `tank`.model.observe.flow: a row of zeros observes no state",
        ],
    },
    Case {
        name: "Q symmetric and positive semi-definite, P0 positive definite",
        yaml: r#"
asset_types:
  tank:
    sensors: { level: { unit: m, noise: 0.05 } }
    model:
      states: [level, rate]
      A: [[0, 1], [0, 0]]
      observe: { level: [1, 0] }
      Q: [[0, 0.5], [0, 0.01]]
      P0: [[1, 0], [0, 0]]
  pond:
    sensors: { level: { unit: m, noise: 0.05 } }
    model:
      states: [level, rate]
      A: [[0, 1], [0, 0]]
      observe: { level: [1, 0] }
      Q: [[0, 1], [1, 0.01]]
      P0: [[1, 2], [2, 1]]
  pit:
    sensors: { level: { unit: m, noise: 0.05 } }
    model:
      states: [level]
      A: [[0]]
      observe: { level: [1] }
      Q: [[-0.01]]
assets: [{ id: t-1, type: tank }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#,
        want: &[
            "t.yaml:8:10: asset type `tank`.model.Q: must be symmetric; row 2, column 1 is 0 but row 1, column 2 is 0.5",
            "t.yaml:9:11: asset type `tank`.model.P0: must be positive definite (a covariance in which every state, and every combination of them, has a variance above zero)",
            "t.yaml:16:10: asset type `pond`.model.Q: must be positive semi-definite (a covariance: no combination of the states may have a negative variance)",
            "t.yaml:17:11: asset type `pond`.model.P0: must be positive definite (a covariance in which every state, and every combination of them, has a variance above zero)",
            "t.yaml:24:10: asset type `pit`.model.Q: must be positive semi-definite (a covariance: no combination of the states may have a negative variance)",
        ],
    },
    Case {
        name: "measurement noise: no noise and no R, R not above zero, R of a sensor not observed",
        yaml: r#"
asset_types:
  tank:
    sensors: { level: { unit: m }, flow: { unit: m3/h }, temp: { unit: degC } }
    model:
      states: [level, inflow]
      A: [[0, 1], [0, 0]]
      observe: { level: [1, 0], flow: [0, 1] }
      Q: [[0, 0], [0, 0.01]]
      R: { flow: 0, temp: 1 }
  pond:
    sensors: { level: { unit: m } }
    model:
      states: [level]
      A: [[0]]
      observe: { level: [1] }
      Q: [[0.01]]
      R: { level: 0.0025 }
assets: [{ id: t-1, type: tank }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#,
        want: &[
            "t.yaml:7:18: asset type `tank`: model observes `level`: give the sensor `noise:` (its standard deviation) or the model `R: {level: ...}`",
            "t.yaml:9:18: asset type `tank`.model.R.flow: must be above zero (a variance)",
            "t.yaml:9:21: asset type `tank`.model.R: the model does not observe `temp`; `R` gives the variance of each sensor under `observe`",
        ],
    },
    Case {
        name: "B without inputs, inputs without B, an input that is not a command",
        yaml: r#"
asset_types:
  tank:
    sensors: { level: { unit: m, noise: 0.05 } }
    model:
      states: [level]
      A: [[0]]
      B: [[1]]
      observe: { level: [1] }
      Q: [[0.01]]
  pond:
    sensors: { level: { unit: m, noise: 0.05 } }
    commands: { valve: { reported: level } }
    model:
      states: [level]
      A: [[0]]
      inputs: [valve]
      observe: { level: [1] }
      Q: [[0.01]]
  pit:
    sensors: { level: { unit: m, noise: 0.05 } }
    model:
      states: [level]
      A: [[0]]
      B: [[1]]
      inputs: [drain]
      observe: { level: [1] }
      Q: [[0.01]]
assets: [{ id: t-1, type: tank }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#,
        want: &[
            "t.yaml:7:10: asset type `tank`.model.B: there are no `inputs` to drive the states; add `inputs: [<command>]` or remove `B`",
            "t.yaml:14:7: asset type `pond`.model: missing required field `B` (1 row of 1 number, one per input): how the `inputs` drive the states",
            "t.yaml:25:16: asset type `pit`.model.inputs: `drain` is not a command of asset type `pit`; it declares no `commands:`",
        ],
    },
    Case {
        name: "anomaly fields",
        yaml: r#"
asset_types:
  tank:
    sensors: { level: { unit: m, noise: 0.05 } }
    model:
      preset: level
      sensor: level
      q: 0.01
      anomaly: { false_alarm: 0.5, window: 0, for: soon, severity: fatal, colour: red }
  pond:
    sensors: { level: { unit: m, noise: 0.05 } }
    model: { preset: level, sensor: level, q: 0.01, anomaly: { false_alarm: 0 } }
assets: [{ id: t-1, type: tank }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#,
        want: &[
            "t.yaml:8:31: asset type `tank`.model.anomaly.false_alarm: must be above 0 and below 0.5 (the probability that a fault-free window is flagged)",
            "t.yaml:8:44: asset type `tank`.model.anomaly.window: must be at least 1 reading",
            "t.yaml:8:52: asset type `tank`.model.anomaly.for: expected a duration like `200ms`, `10s` or `5m`, found `soon` (expected number at 0)",
            "t.yaml:8:68: asset type `tank`.model.anomaly.severity: expected `info`, `warning` or `critical`, found `fatal`",
            "t.yaml:8:75: asset type `tank`.model.anomaly: unknown field `colour`; expected one of `false_alarm`, `window`, `for` or `severity`",
            "t.yaml:11:77: asset type `pond`.model.anomaly.false_alarm: must be above 0 and below 0.5 (the probability that a fault-free window is flagged)",
        ],
    },
    Case {
        name: "rule names that read the model",
        yaml: r#"
asset_types:
  tank:
    sensors: { level: { unit: m, noise: 0.05 }, temp: { unit: degC }, nis: { unit: "1" } }
    model: { preset: level_rate, sensor: level, q: 0.001 }
  pump:
    sensors: { nis: { unit: "1" } }
assets: [{ id: t-1, type: tank }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
rules:
  - { name: a, when: "est.levl > 1", asset_types: [tank] }
  - { name: b, when: "est.level.var > 1 or est > 2", asset_types: [tank] }
  - { name: c, when: "residual.temp > 1 or residual.tmp > 1", asset_types: [tank] }
  - { name: d, when: "nis > 1", asset_types: [tank] }
  - { name: e, when: "nis > 1", asset_types: [pump] }
  - { name: f, when: "est.level > 1" }
  - { name: g, when: "esst.level > 1", asset_types: [tank] }
  - { name: h, when: "residual > 1 or nis.x > 1", asset_types: [tank] }
"#,
        want: &[
            "t.yaml:10:27: rule `a`.when: no state `levl` in the model of asset type `tank` (did you mean `level`?); its states: `level` or `rate`",
            "t.yaml:11:33: rule `b`.when: `est.level.var`: a state has its estimate `est.level` and its standard deviation `est.level.std`",
            "t.yaml:11:44: rule `b`.when: `est`: write a state's estimate as `est.<state>` (states: `level` or `rate`)",
            "t.yaml:12:32: rule `c`.when: the model of asset type `tank` does not observe `temp`; it observes `level`",
            "t.yaml:12:53: rule `c`.when: unknown sensor `tmp` for asset type `tank`",
            "t.yaml:13:23: rule `d`.when: `nis` is both sensor `nis` and the model's `nis` in asset type `tank`; rename the sensor",
            "t.yaml:15:23: rule `f`.when: `est.level`: asset type `pump` has no `model:`; `est`, `residual` and `nis` read a model's estimates",
            "t.yaml:16:23: rule `g`.when: unknown name `esst`: not a sensor, relation, window, join or model name (`est`, `residual`, `nis`) of asset type `tank` (did you mean `est`?)",
            "t.yaml:17:23: rule `h`.when: `residual`: write a sensor's residual as `residual.<sensor>`, e.g. `residual.level`",
            "t.yaml:17:39: rule `h`.when: `nis` is both sensor `nis` and the model's `nis` in asset type `tank`; rename the sensor",
        ],
    },
    Case {
        name: "`nis` needs `anomaly:`; a window named `est` in a type with a model",
        yaml: r#"
asset_types:
  tank:
    sensors: { level: { unit: m, noise: 0.05 } }
    model: { preset: level, sensor: level, q: 0.001 }
windows:
  - { name: est, size: 10s }
assets: [{ id: t-1, type: tank }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
rules:
  - { name: a, when: "nis > 20" }
  - { name: b, when: "est.level.avg > 1" }
"#,
        want: &[
            "t.yaml:10:23: rule `a`.when: `nis` is summed over the window of the model's `anomaly:`, and the model of asset type `tank` declares none (`anomaly: {}` takes the defaults)",
            "t.yaml:11:23: rule `b`.when: `est` is both window `est` and the model's `est` in asset type `tank`; rename the window",
        ],
    },
    Case {
        name: "a rejected model or noise is reported once, not again by what uses it",
        yaml: r#"
asset_types:
  tank:
    sensors: { level: { unit: m, noise: -0.05 } }
    model: { preset: level, sensor: level, q: -1 }
assets: [{ id: t-1, type: tank }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
rules:
  - { name: a, when: "est.level > 1" }
"#,
        want: &[
            "t.yaml:3:41: sensor `level`.noise: must be a finite number above zero (the standard deviation of the measurement noise)",
            "t.yaml:4:47: asset type `tank`.model.q: must be zero or above (a variance per second)",
        ],
    },
    Case {
        name: "a simulator's model: a type without one, unknown faults, zero durations, a size not above zero",
        yaml: r#"
asset_types:
  tank:
    sensors: { level: { unit: m, noise: 0.05 } }
    model: { preset: level, sensor: level, q: 0.01 }
  pump:
    sensors: { speed: { unit: rpm } }
assets: [{ id: "t-*", type: tank }, { id: "p-*", type: pump }]
sources:
  - { name: a, type: simulator, asset_type: pump, prefix: p-, every: 1s, model: { faults: [bias] } }
  - name: b
    type: simulator
    asset_type: tank
    prefix: t-
    every: 1s
    model: { faults: [stuk, drift], fault_every: 0s, fault_for: 0s, fault_size: -1, truthh: x }
"#,
        want: &[
            "t.yaml:9:81: source `a`.model: asset type `pump` declares no model to simulate",
            "t.yaml:15:23: source `b`.model.faults: one of stuck, bias, drift, not `stuk`",
            "t.yaml:15:50: source `b`.model.fault_every: must be above zero",
            "t.yaml:15:65: source `b`.model.fault_for: must be above zero",
            "t.yaml:15:81: source `b`.model.fault_size: a number above zero (standard deviations)",
            "t.yaml:15:85: source `b`.model: unknown field `truthh` (did you mean `truth`?)",
        ],
    },
    Case {
        name: "derived sensors: two kinds, per without integral, fields no source gives, names declared after or unknown, a bad expression, a model observing one",
        yaml: r#"
asset_types:
  pump:
    sensors:
      flow: { unit: m3/h, noise: 0.1 }
      a: { unit: x, expr: "flow * 2", rate: flow }
      b: { unit: x, rate: flow, per: 1h, range: [0, 1] }
      c: { unit: x, integral: power }
      d: { unit: x, expr: "later + flow.stale + nope" }
      e: { unit: x, expr: "flow +" }
      later: { unit: x, rate: flow }
    model: { preset: level, sensor: later, q: 0.01, r: 1 }
assets: [{ id: p-1, type: pump }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#,
        want: &[
            "t.yaml:5:45: sensor `a`: a derived sensor has one of `expr`, `integral` or `rate`",
            "t.yaml:6:38: sensor `b`.per: only an `integral` has a time unit",
            "t.yaml:6:49: sensor `b`: `range` does not apply to a derived sensor (no source reports it)",
            "t.yaml:7:31: asset type `pump`: sensor `c`.integral: no sensor `power`",
            "t.yaml:8:28: asset type `pump`: sensor `d`.expr: `later` is declared after this sensor; a derived sensor reads sensors declared before it",
            "t.yaml:8:41: asset type `pump`: sensor `d`.expr: `flow.stale`: a derived sensor reads `flow` (its value)",
            "t.yaml:8:49: asset type `pump`: sensor `d`.expr: unknown name `nope`: a derived sensor reads the sensors declared before it and the model's `est`, `residual` and `nis`",
            "t.yaml:9:34: asset type `pump`: sensor `e`.expr: expected a value, found the end of the expression",
            "t.yaml:11:12: asset type `pump`: the model observes `later`, a derived sensor; a model observes measured sensors",
        ],
    },
    Case {
        name: "history: a bad switch, unknown sensors and states, twice, tiers out of order or too short, bad retentions, keeping nothing",
        yaml: r#"
asset_types:
  pump:
    sensors: { flow: { unit: m3/h, noise: 0.1 }, temp: { unit: degC } }
    model: { preset: level, sensor: flow, q: 0.01 }
    history:
      sensors: [flow, flw, est.levl, flow]
      raw: soon
      tiers:
        - { every: 1h, keep: 1d }
        - { every: 1m, keep: 7d }
        - { every: 1s, keep: 100ms }
        - { every: 1500us, keep: 1h }
      events: 0s
  tank:
    sensors: { level: { unit: m } }
    history: maybe
  valve:
    sensors: { pos: { unit: pct } }
    history: { sensors: [est.x], events: off, colour: red }
  pit:
    sensors: { level: { unit: m } }
    history: { sensors: [], events: off }
assets: [{ id: p-1, type: pump }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#,
        want: &[
            "t.yaml:6:23: asset type `pump`.history.sensors: unknown sensor `flw` (did you mean `flow`?)",
            "t.yaml:6:28: asset type `pump`.history.sensors: the model has no state `levl` (did you mean `level`?)",
            "t.yaml:6:38: asset type `pump`.history.sensors: `flow` listed twice",
            "t.yaml:7:12: asset type `pump`.history.raw: expected a duration like `200ms`, `10s` or `5m`, found `soon` (expected number at 0), or `off`",
            "t.yaml:10:20: asset type `pump`.history.tiers.every: tiers go from finest to coarsest; 1m follows 1h",
            "t.yaml:11:30: asset type `pump`.history.tiers.keep: shorter than `every` (1s): no bucket would be kept whole",
            "t.yaml:12:20: asset type `pump`.history.tiers.every: must be a whole number of milliseconds, at least 1ms",
            "t.yaml:13:15: asset type `pump`.history.events: must be at least 1ms",
            "t.yaml:16:14: asset type `tank`.history: expected `on`, `off` or a mapping with `sensors`, `raw`, `tiers`, `events`, found `maybe`",
            "t.yaml:19:26: asset type `valve`.history.sensors: `est.x` reads the model, and the type declares none",
            "t.yaml:19:47: asset type `valve`.history: unknown field `colour`; expected one of `sensors`, `raw`, `tiers` or `events`",
            "t.yaml:22:14: asset type `pit`.history: keeps nothing (no sensors and `events: off`); write `history: off`",
        ],
    },
];
