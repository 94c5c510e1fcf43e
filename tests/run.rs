//! `twinstream run` through the real binary: the simulator demo until
//! SIGTERM, a file source that resumes where the previous run stopped, and a
//! state directory that only one process may use.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use twinstream::store::Store;
use twinstream::twin::record;

/// Every twin of the store in `state`, decoded: `(asset, asset type, events)`.
fn stored_twins(state: &Path) -> Vec<(String, String, u64)> {
    let store = Store::open(state, 1).unwrap_or_else(|e| panic!("opening {}: {e}", state.display()));
    let mut twins = Vec::new();
    store
        .for_each_twin(0, |asset, bytes| {
            let rec = record::decode(bytes).unwrap_or_else(|e| panic!("twin `{asset}` does not decode: {e}"));
            let schema = twinstream::engine::host::stored::load_schema(&store, rec.schema)
                .unwrap_or_else(|e| panic!("twin `{asset}`: its schema does not load: {e}"));
            twins.push((asset.to_string(), schema.asset_type, rec.stats.events));
            Ok(())
        })
        .unwrap();
    twins
}

/// The README demo shows, within a minute or two, a stale sensor, a
/// discrepancy between the PLC and the SCADA, and an alert raised and then
/// cleared; it stops cleanly and keeps every twin.
#[test]
fn the_demo_shows_staleness_a_discrepancy_and_a_cleared_alert_and_keeps_its_twins() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut run = spawn(&mut run_cmd(Path::new("topologies/demo.yaml"), &state));
    let alert = |l: &str| -> Option<serde_json::Value> {
        l.contains("\"kind\":\"alert\"")
            .then(|| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
    };
    let is = |rule_prefix: &'static str, transition: &'static str| {
        move |l: &str| {
            alert(l)
                .is_some_and(|a| a["rule"].as_str().unwrap().starts_with(rule_prefix) && a["transition"] == transition)
        }
    };
    // Each wait sees the lines the previous ones read past.
    let deadline = Duration::from_secs(150);
    let seen = |run: &Running, pred: &dyn Fn(&str) -> bool| run.seen_out.iter().any(|l| pred(l));
    for (what, prefix, transition) in [
        ("a stale sensor", "stale:", "raised"),
        ("a discrepancy", "discrepancy:pressure", "raised"),
        ("a cleared alert", "", "cleared"),
    ] {
        let pred = is(prefix, transition);
        if !seen(&run, &pred) {
            run.wait_stdout(what, deadline, pred);
        }
    }
    let first = run
        .seen_out
        .iter()
        .find_map(|l| alert(l).filter(|a| a["rule"].as_str().unwrap().starts_with("discrepancy:")))
        .unwrap();
    assert!(first["asset"].as_str().unwrap().starts_with("pump-"), "{first}");
    let inputs = first["inputs"].as_object().unwrap();
    assert!(
        inputs.contains_key("pressure@plant-sim") && inputs.contains_key("pressure@scada"),
        "a discrepancy names both sources and their values: {first}"
    );
    stop_cleanly(run);

    let twins = stored_twins(&state);
    assert_eq!(twins.len(), 21, "20 pumps and the tank: {twins:?}");
    for (asset, ty, events) in &twins {
        let want = if asset.starts_with("tank-") { "tank" } else { "pump" };
        assert_eq!(ty, want, "{asset}");
        assert!(*events > 0, "{asset} has no events");
    }
}

#[test]
fn a_second_run_on_a_state_dir_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let topo = Path::new("topologies/demo.yaml");
    let mut first = spawn(&mut run_cmd(topo, &state));
    // The store is open once a checkpoint is durable.
    first.wait_stderr("a durable checkpoint", Duration::from_secs(60), |l| {
        l.contains("checkpoint durable")
    });

    let second = spawn(&mut run_cmd(topo, &state));
    let (status, stderr) = second.finish(Duration::from_secs(60));
    let stderr = stderr.join("\n");
    assert!(!status.success(), "the second run must fail:\n{stderr}");
    assert!(
        stderr.contains("is in use by another twinstream process"),
        "no clear `in use` error:\n{stderr}"
    );
    assert!(
        stderr.contains(&state.display().to_string()),
        "the error names the directory:\n{stderr}"
    );

    // The first run is unharmed.
    stop_cleanly(first);
    assert_eq!(stored_twins(&state).len(), 21);
}

/// A topology with one file source reading `data` as fast as possible.
fn file_topology(dir: &Path, data: &Path) -> PathBuf {
    Topo::new("feed")
        .snapshot_every("100ms")
        .model(
            r#"asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: "pump-*", type: pump }]
"#,
        )
        .source(&format!(
            r#"{{ name: feed, type: file, path: "{}", pace: fast, decode: {{ asset: asset, sensor: sensor, ts: ts, value: value }} }}"#,
            data.display()
        ))
        .write(&dir.join("feed.yaml"))
}

/// Appends events `from..to` (4 pumps, increasing timestamps) to `data`.
fn append_events(data: &Path, from: u64, to: u64) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data)
        .unwrap();
    for i in from..to {
        writeln!(
            f,
            r#"{{"asset":"pump-{}","sensor":"vibration","ts":{},"value":{}}}"#,
            i % 4,
            1_700_000_000_000u64 + i * 10,
            (i % 50) as f64 / 8.0
        )
        .unwrap();
    }
}

fn events_in_store(state: &Path) -> u64 {
    stored_twins(state).iter().map(|(_, _, e)| e).sum()
}

/// Two runs over one growing file: the second reads only what was appended.
fn resumes_after_the_stored_position(first: u64, more: u64) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("feed.jsonl");
    append_events(&data, 0, first);
    let topo = file_topology(dir.path(), &data);
    let state = dir.path().join("state");

    run_until_line(&topo, &state, first);
    assert_eq!(events_in_store(&state), first, "after the first run");

    append_events(&data, first, first + more);
    run_until_line(&topo, &state, first + more);
    assert_eq!(
        events_in_store(&state),
        first + more,
        "the second run must apply only the appended lines"
    );
}

/// A small file (under 64 KiB) that grows between runs.
#[test]
fn a_restarted_run_resumes_a_small_grown_file_after_its_stored_position() {
    resumes_after_the_stored_position(40, 20);
}

/// A file larger than 64 KiB that grows between runs.
#[test]
fn a_restarted_run_resumes_a_large_grown_file_after_its_stored_position() {
    let (first, more) = (1500, 300);
    // ~70 bytes a line: the first part alone is over 64 KiB.
    assert!(first * 60 > 64 * 1024);
    resumes_after_the_stored_position(first, more);
}

/// Twins written under one topology restore under an edited one: a sensor
/// added before the existing one changes every index, and the stored names
/// (the record's schema, kept in the store) still say which value is which.
#[test]
fn twins_restore_after_the_topology_gains_a_sensor() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("feed.jsonl");
    append_events(&data, 0, 40);
    let topo = file_topology(dir.path(), &data);
    let state = dir.path().join("state");
    run_until_line(&topo, &state, 40);

    let yaml = std::fs::read_to_string(&topo).unwrap().replace(
        "      vibration: { unit: mm/s }\n",
        "      current: { unit: A }\n      vibration: { unit: mm/s }\n",
    );
    assert!(yaml.contains("current:"), "the edit applies:\n{yaml}");
    std::fs::write(&topo, yaml).unwrap();
    append_events(&data, 40, 60);
    run_until_line(&topo, &state, 60);

    let twins = stored_twins(&state);
    assert_eq!(twins.len(), 4, "{twins:?}");
    assert_eq!(
        events_in_store(&state),
        60,
        "every twin kept its count across the edit: {twins:?}"
    );
    let store = Store::open(&state, 1).unwrap();
    let bytes = store.get_twin(0, "pump-1").unwrap().expect("pump-1 stored");
    let rec = record::decode(&bytes).unwrap();
    let schema = twinstream::engine::host::stored::load_schema(&store, rec.schema).unwrap();
    assert_eq!(
        schema.sensors,
        ["current", "vibration"],
        "written with the new topology"
    );
    let latest: Vec<(String, f64)> = rec
        .latest()
        .map(|(s, l)| (schema.sensors[s as usize].clone(), l.value))
        .collect();
    // pump-1's last event is line 57: value (57 % 50) / 8.
    assert_eq!(latest, [("vibration".to_string(), 7.0 / 8.0)]);
}
