//! The twin semantics through the real binary (`twinstream run` over file
//! sources, topologies in `tests/topologies/`): staleness timers that fire
//! while running and after a restart, `offline` and recovery; two sources of
//! one sensor with a discrepancy; joins with a sensor of the same asset and
//! of a related asset; late events routed to their own sink; window `last`
//! and `stddev`.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;
use twinstream::store::Store;
use twinstream::twin::model::Quality;
use twinstream::twin::record;

const WAIT: Duration = Duration::from_secs(60);

/// `tests/topologies/NAME` with `{dir}` replaced by `dir`, written into `dir`.
fn topology(name: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("tests/topologies").join(name)).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text.replace("{dir}", &dir.display().to_string())).unwrap();
    path
}

/// Appends JSON lines `(asset, sensor, ts, value)` to `file`.
fn append(file: &Path, lines: &[(&str, &str, i64, f64)]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    for (asset, sensor, ts, value) in lines {
        writeln!(
            f,
            r#"{{"asset":"{asset}","sensor":"{sensor}","ts":{ts},"value":{value}}}"#
        )
        .unwrap();
    }
}

fn alert_line(l: &str) -> Option<Value> {
    l.contains("\"kind\":\"alert\"")
        .then(|| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
}

/// A predicate: an alert line of `asset`, `rule`, `transition`.
fn alert_is(asset: &'static str, rule: &'static str, transition: &'static str) -> impl Fn(&str) -> bool {
    move |l| alert_line(l).is_some_and(|a| a["asset"] == asset && a["rule"] == rule && a["transition"] == transition)
}

fn alerts_of(lines: &[String], asset: &str) -> Vec<(String, String, u64)> {
    lines
        .iter()
        .filter_map(|l| alert_line(l))
        .filter(|a| a["asset"] == asset)
        .map(|a| {
            let id = a["id"].as_str().unwrap();
            let seq = id.rsplit('/').next().unwrap().parse().unwrap();
            (
                a["rule"].as_str().unwrap().to_string(),
                a["transition"].as_str().unwrap().to_string(),
                seq,
            )
        })
        .collect()
}

fn twin(state: &Path, asset: &str) -> record::TwinRecord {
    let store = Store::open(state, 1).unwrap();
    let bytes = store
        .get_twin(0, asset)
        .unwrap()
        .unwrap_or_else(|| panic!("{asset} stored"));
    record::decode(&bytes).unwrap()
}

/// Stale sensors raise `stale:<sensor>`, all of them `offline`; a restart
/// remembers it (nothing raised twice) and fresh data clears both.
#[test]
fn staleness_goes_offline_survives_a_restart_and_recovers_with_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("feed.jsonl");
    let state = dir.path().join("state");
    let topo = topology("staleness.yaml", dir.path());
    append(
        &data,
        &[
            ("pump-0", "vibration", 1_000, 1.0),
            ("pump-0", "temperature", 1_000, 50.0),
            ("pump-1", "vibration", 1_000, 2.0),
        ],
    );

    let mut run = spawn(&mut run_cmd(&topo, &state));
    for (what, asset) in [("pump-0 offline", "pump-0"), ("pump-1 offline", "pump-1")] {
        if !run.seen_out.iter().any(|l| alert_is(asset, "offline", "raised")(l)) {
            run.wait_stdout(what, WAIT, alert_is(asset, "offline", "raised"));
        }
    }
    let (out, _) = stop_cleanly(run);
    let mut p0 = alerts_of(&out, "pump-0");
    p0.sort();
    assert_eq!(
        p0,
        [
            ("offline".into(), "raised".into(), 1),
            ("stale:temperature".into(), "raised".into(), 1),
            ("stale:vibration".into(), "raised".into(), 1),
        ],
        "{out:#?}"
    );
    // pump-1 never reported temperature: not stale (nothing is known), and
    // with vibration stale no sensor is fresh: offline.
    let mut p1 = alerts_of(&out, "pump-1");
    p1.sort();
    assert_eq!(
        p1,
        [
            ("offline".into(), "raised".into(), 1),
            ("stale:vibration".into(), "raised".into(), 1)
        ]
    );
    let rec = twin(&state, "pump-0");
    assert!(rec.offline);
    assert!(rec.sensors.iter().all(|s| s.quality == Quality::Stale), "{rec:?}");

    // Data for pump-0 only: it recovers; pump-1 stays offline and nothing is
    // raised a second time after the restart.
    append(&data, &[("pump-0", "vibration", 2_000, 1.5)]);
    let mut run = spawn(&mut run_cmd(&topo, &state));
    run.wait_stdout("pump-0 back online", WAIT, alert_is("pump-0", "offline", "cleared"));
    // ... and stale again a second after its last reading (seq 2), by which
    // time any timer loaded from the store has long fired.
    run.wait_stdout(
        "pump-0 stale again",
        WAIT,
        alert_is("pump-0", "stale:vibration", "raised"),
    );
    let (mut out, _) = stop_cleanly(run);
    out.retain(|l| alert_line(l).is_some());
    assert_eq!(alerts_of(&out, "pump-1"), [], "pump-1 was already offline: {out:#?}");
    let p0 = alerts_of(&out, "pump-0");
    assert!(p0.contains(&("stale:vibration".into(), "cleared".into(), 1)), "{p0:?}");
    assert!(p0.contains(&("stale:vibration".into(), "raised".into(), 2)), "{p0:?}");
    assert!(
        !p0.iter().any(|a| a.0 == "stale:temperature" && a.1 == "cleared"),
        "temperature did not report: still stale {p0:?}"
    );
}

/// A twin that is not in memory still goes stale: its deadline was stored
/// with its snapshot, and the restarted node wakes it without any reading.
#[test]
fn stored_timers_wake_twins_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("feed.jsonl");
    let state = dir.path().join("state");
    // stale_after 4 s: the first run stops long before that.
    let topo = topology("staleness.yaml", dir.path());
    std::fs::write(
        &topo,
        std::fs::read_to_string(&topo)
            .unwrap()
            .replace("stale_after: 1s", "stale_after: 4s"),
    )
    .unwrap();
    append(&data, &[("pump-7", "vibration", 1_000, 1.0)]);
    let mut run = spawn(&mut run_cmd(&topo, &state));
    run.wait_stderr("the first checkpoint", WAIT, |l| l.contains("checkpoint durable"));
    let (out, _) = stop_cleanly(run);
    assert!(
        !out.iter().any(|l| alert_line(l).is_some()),
        "stopped before anything went stale: {out:?}"
    );

    let mut run = spawn(&mut run_cmd(&topo, &state));
    run.wait_stderr("the stored timer loaded", WAIT, |l| {
        l.contains("timers of stored twins armed")
    });
    run.wait_stdout(
        "pump-7 stale from its stored timer",
        WAIT,
        alert_is("pump-7", "stale:vibration", "raised"),
    );
    stop_cleanly(run);
}

/// Two sources of `pressure`, a join within the pump, a join and a rule over
/// the tank the pump feeds, late events to their own sink, and window `last`
/// and `stddev` - all from file sources through the real binary.
#[test]
fn sources_joins_relations_late_events_and_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    let (plc, scada) = (dir.path().join("plc.jsonl"), dir.path().join("scada.jsonl"));
    let state = dir.path().join("state");
    let topo = topology("plant.yaml", dir.path());
    append(
        &plc,
        &[
            // window [0, 10 s) of temperature: 80, 90, 100 -> last 100 (by
            // event time, though it arrives first), stddev 8.165
            ("pump-1", "temperature", 9_000, 100.0),
            ("pump-1", "temperature", 1_000, 80.0),
            ("pump-1", "temperature", 5_000, 90.0),
            // joins with temperature 100 @ 9 s: hot at low load
            ("pump-1", "current", 9_500, 1.0),
            ("pump-1", "pressure", 9_600, 5.0),
            // closes [0, 10 s) (out-of-orderness 1 s) ...
            ("pump-1", "temperature", 12_000, 70.0),
            // ... so this one is late
            ("pump-1", "temperature", 2_000, 60.0),
            // the tank the pump feeds runs low
            ("tank-1", "level", 9_700, 0.4),
        ],
    );
    append(&scada, &[("pump-1", "pressure", 9_600, 9.5)]);
    // `lab` is a source of the topology, but not one of pressure's.
    append(&dir.path().join("lab.jsonl"), &[("pump-1", "pressure", 9_600, 7.0)]);

    let mut run = spawn(&mut run_cmd(&topo, &state));
    for (what, rule) in [
        ("the discrepancy", "discrepancy:pressure"),
        ("the join rule", "hot-at-low-load"),
        ("the relation rule", "dry-tank"),
    ] {
        if !run.seen_out.iter().any(|l| alert_is("pump-1", rule, "raised")(l)) {
            run.wait_stdout(what, WAIT, alert_is("pump-1", rule, "raised"));
        }
    }
    // The final checkpoint at the stop holds everything applied.
    let (out, _) = stop_cleanly(run);

    let disc = out
        .iter()
        .filter_map(|l| alert_line(l))
        .find(|a| a["rule"] == "discrepancy:pressure")
        .unwrap();
    assert_eq!(disc["inputs"]["pressure@plc"], 5.0, "{disc}");
    assert_eq!(disc["inputs"]["pressure@scada"], 9.5, "{disc}");
    let dry = out
        .iter()
        .filter_map(|l| alert_line(l))
        .find(|a| a["rule"] == "dry-tank")
        .unwrap();
    assert_eq!(dry["inputs"]["feeds.level"], 0.4, "{dry}");

    let windows = jsonl(&dir.path().join("windows.jsonl"));
    let w = windows
        .iter()
        .find(|w| w["sensor"] == "temperature" && w["start"] == 0)
        .unwrap_or_else(|| panic!("{windows:#?}"));
    assert_eq!((w["count"].as_u64(), w["last"].as_f64()), (Some(3), Some(100.0)), "{w}");
    assert!((w["stddev"].as_f64().unwrap() - 8.16496580927726).abs() < 1e-9, "{w}");
    let late = jsonl(&dir.path().join("late.jsonl"));
    assert_eq!(late.len(), 1, "{late:#?}");
    assert_eq!(
        (late[0]["ts"].as_i64(), late[0]["value"].as_f64()),
        (Some(2_000), Some(60.0))
    );
    let joins = jsonl(&dir.path().join("joins.jsonl"));
    assert!(
        joins
            .iter()
            .any(|j| j["join"] == "supply" && j["left"] == 5.0 && j["right"] == 0.4),
        "the pump's pressure joined with the tank's level: {joins:#?}"
    );

    let dead = jsonl(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0]["reason"], "unknown_source", "{}", dead[0]);
    assert_eq!(dead[0]["origin"]["source"], "lab", "{}", dead[0]);
    // Twin updates carry quality and health: the discrepancy leaves pressure
    // suspect and the twin yellow (warning alerts active, none critical).
    let updates = jsonl(&dir.path().join("updates.jsonl"));
    let last = updates
        .iter()
        .rev()
        .find(|u| u["sensors"].get("pressure").is_some())
        .unwrap();
    assert_eq!(last["sensors"]["pressure"]["quality"], "suspect", "{last}");
    assert_eq!(last["health"], "yellow", "{last}");

    // The twin keeps each source's reading and the resolved one (policy
    // confidence: the measured PLC over the commanded SCADA).
    let rec = twin(&state, "pump-1");
    let mut by_source: Vec<f64> = rec.by_source.iter().map(|r| r.value).collect();
    by_source.sort_by(f64::total_cmp);
    assert_eq!(by_source, [5.0, 9.5]);
    let store = Store::open(&state, 1).unwrap();
    let schema = twinstream::engine::host::stored::load_schema(&store, rec.schema).unwrap();
    let pressure = schema.sensors.iter().position(|s| s == "pressure").unwrap() as u16;
    let p = rec.sensors.iter().find(|s| s.sensor == pressure).unwrap();
    assert_eq!((p.value, p.quality), (5.0, Quality::Suspect));
    assert_eq!(rec.related.len(), 1);
    assert_eq!(rec.related[0].value, 0.4);
}
