//! Twins passivated and woken with their state; a restarted node that
//! serves before it restores anything.

use super::*;

/// Idle twins are passivated once durable, and every way in wakes them
/// with their state intact: a staleness timer (from the deadline index,
/// the twin not in memory), an API read, and a new event.
#[test]
fn passivated_twins_wake_on_a_timer_an_api_read_and_an_event_with_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // The file feeds the first readings, the broker the one after.
    let broker = Mosquitto::start();
    // Passivation after 1 s idle (swept every second); the tank goes stale
    // 6 s after its reading, long after it was passivated.
    let topo = Topo::new("passivate-test")
        .with("passivate_after: 1s")
        .model(
            r#"asset_types:
  pump:
    sensors: { temperature: { unit: degC } }
  tank:
    sensors:
      level: { unit: m, expected_every: 1s, stale_after: 6s }
assets:
  - { id: tank-1, type: tank }
  - { id: "pump-*", type: pump }
"#,
        )
        .file_source("plc", &dir.path().join("in.jsonl"))
        .mqtt_source("plant", broker.port, "passivate-test")
        .file_sink("alerts", &dir.path().join("alerts.jsonl"), "alerts")
        .write(&dir.path().join("passivate.yaml"));
    let line = |asset: &str, sensor: &str, ts: i64, value: f64| {
        format!("{{\"asset\":\"{asset}\",\"sensor\":\"{sensor}\",\"ts\":{ts},\"value\":{value}}}\n")
    };
    std::fs::write(
        dir.path().join("in.jsonl"),
        line("pump-1", "temperature", 1_000, 60.0) + &line("tank-1", "level", 1_000, 3.5),
    )
    .unwrap();
    let (run, base) = start(&state, &topo, &[]);
    let started = |from: &str| format!("twinstream_twins_started_total{{from=\"{from}\"}}");

    // Both twins start new, apply their reading and are passivated.
    wait_metric(&base, &started("new"), "both twins started", |v| v >= 2.0);
    wait_metric(
        &base,
        "twinstream_twins_passivated_total",
        "both twins passivated",
        |v| v >= 2.0,
    );
    assert!(
        alert_transitions(dir.path(), "tank-1").is_empty(),
        "passivated before its sensor went stale"
    );
    assert_eq!(metric(&base, "twinstream_twins_active"), 0.0, "no twin in memory");
    let woken = metric(&base, &started("store"));

    // The staleness timer of the passivated tank fires from the deadline
    // index: the twin is restored to raise the alert.
    let stale = poll_until(WAIT, || {
        alert_transitions(dir.path(), "tank-1")
            .contains(&"stale:level:raised".to_string())
            .then_some(())
    });
    assert!(stale.is_some(), "tank-1 never went stale");
    assert!(
        metric(&base, &started("store")) > woken,
        "the timer restored tank-1 from the store"
    );
    let tank = get(&base, "/twins/tank-1?fresh=true");
    assert_eq!(tank.body["sensors"]["level"]["value"], 3.5, "{tank:?}");
    assert_eq!(tank.body["sensors"]["level"]["quality"], "stale", "{tank:?}");

    // An API read wakes the passivated pump; its state is what it applied.
    wait_metric(
        &base,
        "twinstream_twins_passivated_total",
        "both passivated again",
        |v| v >= 3.0,
    );
    let pump = wait_get(&base, "/twins/pump-1?fresh=true", "pump-1 answers", |r| r.status == 200);
    assert_eq!(pump.read.as_deref(), Some("twin"), "{pump:?}");
    assert_eq!(pump.body["sensors"]["temperature"]["value"], 60.0, "{pump:?}");
    assert_eq!(pump.body["stats"]["events"], 1, "{pump:?}");
    let version = pump.body["version"].as_u64().unwrap();

    // A new event reaches the twin, restored or still in memory, on top of
    // that state.
    publish(
        broker.port,
        &[("plant/pump-1/temperature".into(), r#"{"ts":2000,"value":70.0}"#.into())],
    );
    let pump = wait_get(&base, "/twins/pump-1?fresh=true", "pump-1 applies the event", |r| {
        r.body["stats"]["events"] == 2
    });
    assert_eq!(pump.body["sensors"]["temperature"]["value"], 70.0, "{pump:?}");
    assert_eq!(pump.body["version"].as_u64(), Some(version + 1), "{pump:?}");
    stop_cleanly(run);
}

/// A restarted node serves before it restores any twin (no scan of the
/// store at start); a twin is restored, state intact, when first asked.
#[test]
fn a_restarted_node_is_ready_before_restoring_and_restores_a_twin_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let topo = Topo::new("restart-test")
        .model(
            "asset_types:\n  pump:\n    sensors: { temperature: { unit: degC }, current: { unit: A } }\nassets:\n  - { id: \"pump-*\", type: pump }\n",
        )
        .file_source("plc", &dir.path().join("in.jsonl"))
        .write(&dir.path().join("restart.yaml"));
    let lines: String = (0..500)
        .flat_map(|i| {
            [("temperature", 40.0 + (i % 50) as f64), ("current", i as f64)].map(|(sensor, value)| {
                format!(
                    "{{\"asset\":\"pump-{i}\",\"sensor\":\"{sensor}\",\"ts\":{},\"value\":{value}}}\n",
                    1_000 + i
                )
            })
        })
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), lines).unwrap();
    let started = "twinstream_twins_started_total{from=\"store\"}";

    let (run, base) = start(&state, &topo, &[]);
    let first = wait_get(&base, "/twins/pump-499", "the last pump applied and durable", |r| {
        r.read.as_deref() == Some("checkpoint") && r.body["version"] == 2
    });
    stop_cleanly(run);

    let (run, base) = start(&state, &topo, &[]);
    assert_eq!(metric(&base, started), 0.0, "ready before restoring any twin");
    let pump = get(&base, "/twins/pump-499?fresh=true");
    assert_eq!((pump.status, pump.read.as_deref()), (200, Some("twin")), "{pump:?}");
    assert_eq!(pump.body["sensors"], first.body["sensors"], "restored as stored");
    assert_eq!(pump.body["version"], 2);
    assert_eq!(metric(&base, started), 1.0, "only the twin asked for was restored");
    stop_cleanly(run);
}

/// Each thread of process `pid`: its name, scheduling policy and nice
/// value (`/proc/PID/task/TID/stat`: fields 19 and 41, counted after the
/// name, which may hold spaces and parentheses).
fn threads(pid: u32) -> Vec<(String, i32, i32)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue; // the thread ended
        };
        let name = stat[stat.find('(').unwrap() + 1..stat.rfind(')').unwrap()].to_string();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        // After the name, field 3 (state) is index 0.
        out.push((name, fields[41 - 3].parse().unwrap(), fields[19 - 3].parse().unwrap()));
    }
    out
}

/// Whether this process may put a thread in the real-time policy (root
/// here; a container without CAP_SYS_NICE may not).
fn may_run_realtime() -> bool {
    std::thread::spawn(|| twinstream::priority::set_realtime(twinstream::priority::API_RT_PRIORITY).is_ok())
        .join()
        .unwrap()
}

/// `node.http.priority`: by default the threads that answer requests run
/// in the real-time round-robin policy (where permitted) and nothing else
/// does; `high` raises them to nice -5 instead; `normal` leaves them as
/// ingestion.
#[test]
fn the_api_threads_take_the_priority_the_topology_sets() {
    let rt = may_run_realtime();
    for setting in ["", ", priority: high", ", priority: normal"] {
        let dir = tempfile::tempdir().unwrap();
        readings(dir.path());
        let topo = topology(dir.path(), &format!("{{ listen: \"127.0.0.1:0\"{setting} }}"));
        let (run, base) = start(&dir.path().join("state"), &topo, &[]);
        // A read on a worker and one rendered on the blocking pool.
        wait_get(&base, "/twins/pump-2", "pump-2 is not served", |r| r.status == 200);
        assert_eq!(get(&base, "/twins").status, 200);
        let all = threads(run.child.id());
        let realtime: Vec<&String> = all.iter().filter(|t| t.1 == libc::SCHED_RR).map(|t| &t.0).collect();
        let raised: Vec<&String> = all.iter().filter(|t| t.2 == -5).map(|t| &t.0).collect();
        match setting {
            "" if rt => {
                assert!(realtime.len() >= 2, "a worker and a blocking thread: {all:?}");
                assert!(raised.is_empty(), "{all:?}");
            }
            "" | ", priority: high" => {
                assert!(realtime.is_empty(), "{all:?}");
                assert!(raised.len() >= 2, "a worker and a blocking thread: {all:?}");
            }
            _ => assert!(realtime.is_empty() && raised.is_empty(), "{all:?}"),
        }
        // Ingestion never does.
        for (name, policy, nice) in &all {
            if name.starts_with("decode") || name.starts_with("source") || name == "router" {
                assert_eq!((*policy, *nice), (libc::SCHED_OTHER, 0), "{name}");
            }
        }
        stop_cleanly(run);
    }
}

/// Where the kernel refuses the real-time policy (here the node starts
/// without `CAP_SYS_NICE`, through util-linux's `setpriv`), the API still
/// answers, its threads take what `high` can get, and the log says so once.
#[test]
fn a_refused_real_time_policy_falls_back_and_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    readings(dir.path());
    let topo = topology(dir.path(), "{ listen: \"127.0.0.1:0\" }");
    let node = run_cmd(&topo, &dir.path().join("state"));
    let mut cmd = Command::new("setpriv");
    cmd.args(["--inh-caps=-sys_nice", "--bounding-set=-sys_nice"])
        .arg(node.get_program())
        .args(node.get_args());
    let mut run = spawn(&mut cmd);
    let base = run.http_base();
    wait_get(&base, "/readyz", "the node did not become ready", |r| r.status == 200);
    wait_get(&base, "/twins/pump-2", "pump-2 is not served", |r| r.status == 200);
    assert_eq!(get(&base, "/twins").status, 200);
    let all = threads(run.child.id());
    assert!(all.iter().all(|t| t.1 == libc::SCHED_OTHER), "{all:?}");
    let (_, err) = stop_cleanly(run);
    let said: Vec<&String> = err
        .iter()
        .filter(|l| l.contains("refuses the real-time policy"))
        .collect();
    assert_eq!(said.len(), 1, "{err:?}");
    assert!(
        said[0].contains("run at nice 0 with short time slices instead"),
        "{}",
        said[0]
    );
}
