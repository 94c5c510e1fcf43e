//! Twin models (`asset_types.<t>.model`) end to end: the estimate of a noisy
//! sensor in twin updates, alerts and the API, and a filter that resumes
//! exactly where its durable state ends after a crash.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// Tanks with a noisy level (sigma 0.1) and the level preset; a rule on the
/// residual.
const TANKS: &str = r#"asset_types:
  tank:
    sensors: { level: { unit: m, noise: 0.1 } }
    model: { preset: level, sensor: level, q: 0.0001 }
assets: [{ id: "tank-*", type: tank }]
rules:
  - name: jump
    when: "residual.level > 1"
    severity: warning
    command: { name: inspect, value: 1 }
  - name: high
    when: "level > 14"
"#;

/// A deterministic noise in [-1, 1) (xorshift).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// `twinstream run TOPO` with its state in `dir/state`, and its API's base
/// URL.
fn run_node(topo: &Path, dir: &Path) -> (Running, String) {
    let mut run = spawn(
        twinstream()
            .arg("run")
            .arg(topo)
            .arg("--state-dir")
            .arg(dir.join("state")),
    );
    let base = run.http_base();
    (run, base)
}

/// `n` readings per tank, 1 s apart: level `10 + tank` plus uniform noise of
/// standard deviation 0.1 (half-width 0.1 * sqrt 3); reading `spike` of
/// tank-0 is 5 too high.
fn readings(dir: &Path, tanks: usize, n: usize, spike: Option<usize>) -> PathBuf {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut text = String::new();
    for i in 0..n {
        for t in 0..tanks {
            let mut value = 10.0 + t as f64 + 0.1 * 3f64.sqrt() * noise.next();
            if t == 0 && Some(i) == spike {
                value += 5.0;
            }
            text.push_str(&format!(
                "{{\"asset\":\"tank-{t}\",\"sensor\":\"level\",\"ts\":{},\"value\":{value}}}\n",
                1_700_000_000_000i64 + i as i64 * 1000
            ));
        }
    }
    let path = dir.join("levels.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

fn topology(dir: &Path, data: &Path, updates: &Path, alerts: &Path) -> PathBuf {
    Topo::new("model-test")
        .model(TANKS)
        .file_source("levels", data)
        .file_sink("updates", updates, "twin_updates")
        .file_sink("alerts", alerts, "alerts,commands")
        .write(&dir.join("tanks.yaml"))
}

/// The last twin update of each asset.
fn last_updates(path: &Path) -> std::collections::BTreeMap<String, serde_json::Value> {
    jsonl(path)
        .into_iter()
        .map(|u| (u["asset"].as_str().unwrap().to_string(), u))
        .collect()
}

#[test]
fn a_level_model_estimates_a_noisy_sensor_in_updates_alerts_and_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = readings(dir.path(), 2, 300, Some(200));
    let (updates, alerts) = (dir.path().join("updates.jsonl"), dir.path().join("alerts.jsonl"));
    let topo = topology(dir.path(), &data, &updates, &alerts);
    let (run, base) = run_node(&topo, dir.path());
    let twin = poll_until(Duration::from_secs(60), || {
        let v = get_json(&format!("{base}/twins/tank-0")).ok()?;
        (v["version"] == 300).then_some(v)
    })
    .expect("tank-0 applies every reading within a minute");
    let model = &twin["model"];
    let est = model["states"]["level"]["est"].as_f64().unwrap();
    let std = model["states"]["level"]["std"].as_f64().unwrap();
    // 300 readings of sigma 0.1 with a slow random walk: the estimate is far
    // closer to the truth than one reading.
    assert!((est - 10.0).abs() < 0.05, "estimate {est}: {model}");
    assert!(std > 0.0 && std < 0.05, "std {std}: {model}");
    assert_eq!(model["updates"], 300, "{model}");
    assert_eq!(model["out_of_order"], 0, "{model}");
    let version = model["version"].as_str().unwrap().to_string();
    assert_eq!(version.len(), 16, "{model}");
    let residual = model["sensors"]["level"]["residual"].as_f64().unwrap();
    assert!(residual.abs() < 0.5, "{model}");
    assert!(
        model["sensors"]["level"]["residual_std"].as_f64().unwrap() > 0.09,
        "{model}"
    );

    stop_cleanly(run);
    // Twin updates carry the model's estimate and version.
    let last = last_updates(&updates);
    assert_eq!(last.len(), 2);
    for (asset, u) in &last {
        assert_eq!(u["model"]["version"], version.as_str(), "{u}");
        let truth = if asset == "tank-0" { 10.0 } else { 11.0 };
        let est = u["model"]["states"]["level"]["est"].as_f64().unwrap();
        assert!((est - truth).abs() < 0.05, "{asset}: {est} for {truth}: {u}");
    }
    // The spike (5 sigma of the noise... 50 here) raised the residual rule
    // once, on tank-0, and the next reading cleared it.
    let (alerts, commands): (Vec<_>, Vec<_>) = jsonl(&alerts).into_iter().partition(|o| o["kind"] == "alert");
    let (alerts, high): (Vec<_>, Vec<_>) = alerts.into_iter().partition(|a| a["rule"] == "jump");
    let raised: Vec<_> = alerts.iter().filter(|a| a["transition"] == "raised").collect();
    assert_eq!(raised.len(), 1, "{alerts:?}");
    assert_eq!(raised[0]["asset"], "tank-0");
    assert_eq!(raised[0]["ts"], 1_700_000_000_000i64 + 200 * 1000);
    assert!(
        raised[0]["inputs"]["residual.level"].as_f64().unwrap() > 4.5,
        "{:?}",
        raised[0]
    );
    assert!(alerts.iter().any(|a| a["transition"] == "cleared"), "{alerts:?}");
    // The rule reads the model: its alerts and its command name the model's
    // version, so the action traces back to it.
    assert!(alerts.iter().all(|a| a["model"] == version.as_str()), "{alerts:?}");
    // A rule on the raw reading does not.
    assert_eq!(high.len(), 2, "the spike raised and cleared it: {high:?}");
    assert!(high.iter().all(|a| a.get("model").is_none()), "{high:?}");
    assert_eq!(commands.len(), 1, "{commands:?}");
    assert_eq!(commands[0]["command"], "inspect");
    assert_eq!(commands[0]["model"], version.as_str(), "{commands:?}");
}

#[test]
fn a_crashed_replay_resumes_the_filter_where_its_durable_state_ends() {
    let dir = tempfile::tempdir().unwrap();
    let data = readings(dir.path(), 50, 400, None);
    let run_to_end = |name: &str, kills: usize| {
        let updates = dir.path().join(format!("{name}-updates.jsonl"));
        let alerts = dir.path().join(format!("{name}-alerts.jsonl"));
        let topo = topology(dir.path(), &data, &updates, &alerts);
        let state = dir.path().join(format!("{name}-state"));
        let report = dir.path().join(format!("{name}.json"));
        for _ in 0..kills {
            let mut run = spawn(
                twinstream()
                    .arg("replay")
                    .arg(&topo)
                    .arg(&data)
                    .arg("--report")
                    .arg(&report)
                    .arg("--state-dir")
                    .arg(&state)
                    .args(["--rate", "4000"]),
            );
            for n in 0..2 {
                run.wait_stderr(&format!("checkpoint {}", n + 1), Duration::from_secs(120), |l| {
                    l.contains("checkpoint durable")
                });
            }
            run.child.kill().unwrap();
            assert!(!run.child.wait().unwrap().success(), "killed, not finished");
        }
        replay(&topo, &data, &state, &report, &[]);
        let r = json(&report);
        if kills > 0 {
            assert!(r["resumed_from_line"].as_u64().unwrap() > 0, "must resume: {r}");
        }
        last_updates(&updates)
    };
    let clean = run_to_end("clean", 0);
    let crashed = run_to_end("crashed", 2);
    assert_eq!(clean.len(), 50);
    for (asset, c) in &clean {
        // Bit for bit: the same estimate, covariance and residuals.
        assert_eq!(crashed[asset]["model"], c["model"], "{asset}");
    }
}

/// Ovens whose temperature lags towards the set point (tau 60 s); lamps
/// have no model. A rule on the estimate sends a command.
const OVENS: &str = r#"asset_types:
  oven:
    sensors: { temp: { unit: degC, noise: 0.5 } }
    commands: { setpoint: { reported: temp, min: 0, max: 300 } }
    model: { preset: lag, sensor: temp, command: setpoint, tau: 60s, q: 0.01 }
  lamp:
    sensors: { on: { unit: bool } }
assets: [{ id: oven-1, type: oven }, { id: lamp-1, type: lamp }]
rules:
  - name: hot
    when: "est.value > 80"
    for: 30s
    severity: critical
    asset_types: [oven]
    command: { name: setpoint, value: 50 }
"#;

fn post_json(url: &str, body: serde_json::Value) -> Result<serde_json::Value, (u16, String)> {
    match ureq::post(url).send_json(body) {
        Ok(r) => Ok(r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => Err((code, r.into_string().unwrap())),
        Err(e) => panic!("{url}: {e}"),
    }
}

fn get_json(url: &str) -> Result<serde_json::Value, (u16, String)> {
    match ureq::get(url).call() {
        Ok(r) => Ok(r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => Err((code, r.into_string().unwrap())),
        Err(e) => panic!("{url}: {e}"),
    }
}

#[test]
fn forecast_and_what_if_look_ahead_without_touching_the_twin() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000i64;
    let mut text = String::new();
    for i in 0..60 {
        let ts = t0 + i * 1000;
        text.push_str(&format!(
            "{{\"asset\":\"oven-1\",\"sensor\":\"temp\",\"ts\":{ts},\"value\":20}}\n"
        ));
    }
    text.push_str(&format!(
        "{{\"asset\":\"lamp-1\",\"sensor\":\"on\",\"ts\":{t0},\"value\":1}}\n"
    ));
    let data = dir.path().join("ovens.jsonl");
    std::fs::write(&data, text).unwrap();
    let commands = dir.path().join("commands.jsonl");
    let alerts = dir.path().join("alerts.jsonl");
    let topo = Topo::new("ovens")
        .model(OVENS)
        .file_source("ovens", &data)
        .file_sink("commands", &commands, "commands")
        .file_sink("alerts", &alerts, "alerts")
        .write(&dir.path().join("ovens.yaml"));
    let (run, base) = run_node(&topo, dir.path());
    // Forecasts read the last durable checkpoint (like GET /twins/{id}):
    // wait until it holds every reading.
    let before = poll_until(Duration::from_secs(60), || {
        let v = get_json(&format!("{base}/twins/oven-1")).ok()?;
        (v["version"] == 60).then_some(v)
    })
    .expect("oven-1's checkpoint holds every reading within a minute");

    // Nothing commanded: the lag holds its value, and grows uncertain.
    let f = get_json(&format!("{base}/twins/oven-1/forecast?horizon=10m&step=10s")).unwrap();
    let points = f["points"].as_array().unwrap();
    assert_eq!(points.len(), 61, "{f}");
    assert_eq!(f["from"], t0 + 59_000);
    assert_eq!(f["step_ms"], 10_000);
    assert_eq!(f["model"], before["model"]["version"]);
    let mean = |p: &serde_json::Value| p["states"]["value"]["mean"].as_f64().unwrap();
    let std = |p: &serde_json::Value| p["states"]["value"]["std"].as_f64().unwrap();
    assert!(points.iter().all(|p| (mean(p) - 20.0).abs() < 0.1), "{f}");
    assert!(std(&points[60]) > std(&points[0]), "{f}");
    assert_eq!(points[60]["ts"], t0 + 59_000 + 600_000);
    assert_eq!(
        points[3]["sensors"]["temp"]["mean"],
        points[3]["states"]["value"]["mean"]
    );

    // Set to 200 after 25 s: the estimate passes 80 at ~49 s, the rule holds
    // 30 s and fires at the 80 s step, sending its command.
    // (From the twin itself this time: the same state.)
    let body = serde_json::json!({
        "horizon": "10m", "step": "10s", "fresh": true,
        "commands": [{ "command": "setpoint", "value": 200, "at": "25s" }]
    });
    let w = post_json(&format!("{base}/twins/oven-1/whatif"), body).unwrap();
    assert_eq!(w["points"].as_array().unwrap().len(), 61);
    let x0 = mean(&w["points"][0]);
    let at30 = 200.0 + (x0 - 200.0) * (-5.0f64 / 60.0).exp();
    assert!((mean(&w["points"][3]) - at30).abs() < 1e-6, "{w}");
    assert_eq!(w["alerts"][0]["rule"], "hot", "{w}");
    assert_eq!(w["alerts"][0]["transition"], "raised");
    assert_eq!(w["alerts"][0]["severity"], "critical");
    assert_eq!(w["alerts"][0]["ts"], t0 + 59_000 + 80_000);
    assert_eq!(w["commands"][0]["command"], "setpoint");
    assert_eq!(w["commands"][0]["value"], 50.0);

    // Wrong calls say what is wrong.
    let cases: &[(&str, Option<serde_json::Value>, u16, &str)] = &[
        ("/twins/oven-1/forecast?step=0s", None, 400, "step"),
        ("/twins/oven-1/forecast?horizon=soon", None, 400, "horizon: `soon`"),
        (
            "/twins/oven-1/forecast?horizon=1000h&step=1s",
            None,
            400,
            "at most 10000",
        ),
        ("/twins/oven-1/forecast?when=now", None, 400, "unknown field"),
        ("/twins/lamp-1/forecast", None, 404, "declares no model"),
        ("/twins/nope/forecast", None, 404, "no twin `nope`"),
        (
            "/twins/oven-1/whatif",
            Some(serde_json::json!({ "commands": [{ "command": "heat", "value": 1 }] })),
            400,
            "no command `heat` (it has: setpoint)",
        ),
        (
            "/twins/oven-1/whatif",
            Some(serde_json::json!({ "commands": [{ "command": "setpoint", "value": 999 }] })),
            400,
            "outside [0, 300]",
        ),
        (
            "/twins/oven-1/whatif",
            Some(serde_json::json!({ "commands": [{ "command": "setpoint", "value": 1, "at": "11m" }] })),
            400,
            "outside the horizon",
        ),
        (
            "/twins/oven-1/whatif",
            Some(serde_json::json!({ "horizon": 5 })),
            400,
            "body:",
        ),
    ];
    for (path, body, code, says) in cases {
        let url = format!("{base}{path}");
        let (got, text) = match body {
            Some(b) => post_json(&url, b.clone()).unwrap_err(),
            None => get_json(&url).unwrap_err(),
        };
        assert_eq!(got, *code, "{path}: {text}");
        assert!(text.contains(says), "{path}: {text}");
    }

    // The live twin is as it was: nothing applied, nothing sent.
    let after = get_json(&format!("{base}/twins/oven-1?fresh=true")).unwrap();
    assert_eq!(after["version"], before["version"]);
    assert_eq!(after["model"], before["model"]);
    assert_eq!(after["command_log"], serde_json::json!([]));
    assert_eq!(after["alerts"], before["alerts"]);
    stop_cleanly(run);
    assert!(jsonl(&commands).is_empty(), "a what-if sends nothing");
    assert!(jsonl(&alerts).is_empty(), "a what-if raises nothing");
}

#[test]
fn the_simulator_reads_a_true_state_that_moves_by_the_model_and_writes_it_alongside() {
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("truth.jsonl");
    let updates = dir.path().join("updates.jsonl");
    let topo = Topo::new("sim-model")
        .model(
            r#"asset_types:
  tank:
    sensors: { level: { unit: m, noise: 0.1, range: [0, 20] } }
    model: { preset: level, sensor: level, q: 0.0001 }
assets: [{ id: "tank-*", type: tank }]
"#,
        )
        .source(&format!(
            r#"{{ name: sim, type: simulator, asset_type: tank, count: 2, every: 20ms, seed: 3,
               model: {{ faults: [bias], fault_every: 1s, fault_for: 500ms, fault_size: 50, truth: "{}" }} }}"#,
            truth.display()
        ))
        .file_sink("updates", &updates, "twin_updates")
        .write(&dir.path().join("sim.yaml"));
    let (run, base) = run_node(&topo, dir.path());
    poll_until(Duration::from_secs(60), || {
        let v = get_json(&format!("{base}/twins/tank-00001?fresh=true")).ok()?;
        (v["model"]["updates"].as_u64()? >= 300).then_some(())
    })
    .expect("the simulated tank's model takes 300 readings within a minute");
    stop_cleanly(run);

    let lines = jsonl(&truth);
    assert!(lines.len() >= 600, "{}", lines.len());
    let (mut faulty, mut clean) = (Vec::new(), Vec::new());
    for l in &lines {
        assert_eq!(l["sensor"], "level", "{l}");
        assert_eq!(
            l["truth"], l["states"]["level"],
            "the level preset observes its state: {l}"
        );
        let error = (l["value"].as_f64().unwrap() - l["truth"].as_f64().unwrap()).abs();
        match l["fault"].as_str() {
            Some("bias") => faulty.push(error),
            None => clean.push(error),
            other => panic!("{other:?}: {l}"),
        }
    }
    // Clean readings carry the noise (sigma 0.1); biased ones 50 sigma more.
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(!faulty.is_empty() && !clean.is_empty());
    assert!(mean(&clean) < 0.2, "{}", mean(&clean));
    assert!(faulty.iter().all(|e| (*e - 5.0).abs() < 1.0), "{faulty:?}");
    // Every reading the twin took is a line of the truth, at its time.
    let written: std::collections::HashSet<(String, i64, u64)> = lines
        .iter()
        .map(|l| {
            let value = l["value"].as_f64().unwrap();
            (
                l["asset"].as_str().unwrap().to_string(),
                l["ts"].as_i64().unwrap(),
                value.to_bits(),
            )
        })
        .collect();
    let taken = jsonl(&updates);
    assert!(!taken.is_empty());
    for u in &taken {
        let level = &u["sensors"]["level"];
        let key = (
            u["asset"].as_str().unwrap().to_string(),
            level["ts"].as_i64().unwrap(),
            level["value"].as_f64().unwrap().to_bits(),
        );
        assert!(written.contains(&key), "{u}");
    }
}

#[test]
fn derived_sensors_are_computed_by_the_twin_and_never_reported() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000i64;
    let mut text = String::new();
    let mut line = |sensor: &str, ts: i64, value: f64| {
        text.push_str(&format!(
            "{{\"asset\":\"pump-1\",\"sensor\":\"{sensor}\",\"ts\":{ts},\"value\":{value}}}\n"
        ));
    };
    line("head", t0, 4.0);
    line("power", t0, 36.0);
    line("flow", t0, 10.0);
    line("power", t0 + 10_000, 36.0);
    line("flow", t0 + 10_000, 20.0);
    // A source cannot report what the twin computes.
    line("efficiency", t0 + 10_000, 99.0);
    let data = dir.path().join("pumps.jsonl");
    std::fs::write(&data, text).unwrap();
    let (updates, dead) = (dir.path().join("updates.jsonl"), dir.path().join("dead.jsonl"));
    let topo = Topo::new("derived")
        .model(
            r#"asset_types:
  pump:
    sensors:
      flow: { unit: m3/h }
      head: { unit: m }
      power: { unit: kW }
      efficiency: { unit: "1", expr: "flow * head / power" }
      energy: { unit: kWh, integral: power, per: 1h }
      surge: { unit: m3/h/s, rate: flow }
assets: [{ id: pump-1, type: pump }]
"#,
        )
        .file_source("pumps", &data)
        .file_sink("updates", &updates, "twin_updates")
        .file_sink("dead", &dead, "dead_letters")
        .write(&dir.path().join("pumps.yaml"));
    let (run, base) = run_node(&topo, dir.path());
    let twin = poll_until(Duration::from_secs(60), || {
        let v = get_json(&format!("{base}/twins/pump-1?fresh=true")).ok()?;
        (v["sensors"]["surge"]["value"].is_number()).then_some(v)
    })
    .expect("the derived sensors have values within a minute");
    stop_cleanly(run);
    let s = &twin["sensors"];
    // 20 * 4 / 36; 36 kW for 10 s = 0.1 kWh; (20 - 10) / 10 s.
    assert!(
        (s["efficiency"]["value"].as_f64().unwrap() - 80.0 / 36.0).abs() < 1e-9,
        "{s}"
    );
    assert!((s["energy"]["value"].as_f64().unwrap() - 0.1).abs() < 1e-9, "{s}");
    assert_eq!(s["surge"]["value"], 1.0, "{s}");
    assert_eq!(s["surge"]["ts"], t0 + 10_000, "{s}");
    let updated: Vec<String> = jsonl(&updates)
        .iter()
        .flat_map(|u| u["sensors"].as_object().unwrap().keys().cloned().collect::<Vec<_>>())
        .collect();
    for name in ["efficiency", "energy", "surge"] {
        assert!(updated.iter().any(|n| n == name), "{name} in twin updates: {updated:?}");
    }
    let dead = jsonl(&dead);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["reason"], "unknown_sensor", "{}", dead[0]);
    assert_eq!(
        dead[0]["message"], "sensor `efficiency` is derived: the twin computes it, no source reports it",
        "{}",
        dead[0]
    );
}
