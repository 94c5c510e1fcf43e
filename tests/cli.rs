//! The command line as a user meets it: `check`, `--version`, and the clear
//! errors `replay` and `run` give for what they cannot do.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// How long any of these commands may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

struct Done {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to completion within `DEADLINE` (killing it and failing the
/// test past the deadline).
fn run_to_end(cmd: &mut Command) -> Done {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => {
            let out = out.unwrap();
            Done {
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            panic!("{cmd:?} did not finish within {DEADLINE:?}");
        }
    }
}

fn bundled_topologies() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo().join("topologies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| Path::new("topologies").join(p.file_name().unwrap()))
        .collect();
    out.sort();
    assert!(out.len() >= 3, "expected the bundled topologies, found {out:?}");
    out
}

#[test]
fn check_accepts_every_bundled_topology_and_prints_a_summary() {
    for topo in bundled_topologies() {
        let done = run_to_end(twinstream().arg("check").arg(&topo));
        assert!(
            done.status.success(),
            "check {} failed ({}):\n{}{}",
            topo.display(),
            done.status,
            done.stdout,
            done.stderr
        );
        let lines: Vec<&str> = done.stdout.lines().collect();
        assert_eq!(lines[0], format!("{}: OK", topo.display()), "{}", done.stdout);
        for section in ["node ", "types ", "assets ", "sources ", "windows ", "rules ", "sinks "] {
            assert!(
                lines.iter().any(|l| l.starts_with(section)),
                "summary of {} has no `{section}` line:\n{}",
                topo.display(),
                done.stdout
            );
        }
    }
}

#[test]
fn check_summarises_what_the_demo_declares() {
    let done = run_to_end(twinstream().args(["check", "topologies/demo.yaml"]));
    assert!(done.status.success(), "{}{}", done.stdout, done.stderr);
    let out = &done.stdout;
    for want in [
        "topologies/demo.yaml: OK",
        "node      demo  state_dir=state  snapshot every 2s or 1000000 events (fsync), min pause auto",
        "http      127.0.0.1:8080  writes: token from environment variable `TWINSTREAM_WRITE_TOKEN`  reads: open  priority: realtime",
        "types     2",
        "assets    2 entries (1 ids, 1 patterns)",
        "sources   3",
        "windows   1",
        "joins     2",
        "rules     6",
        "sinks     2",
        "               temperature: stale after 10s, deadband 0.5",
        "               pressure: stale after 10s, sources plant-sim > scada (confidence), discrepancy above 3",
        "  supply       within 5s; pump: pressure with feeds.level",
    ] {
        assert!(out.lines().any(|l| l == want), "no line `{want}` in:\n{out}");
    }
    assert!(
        out.contains("plant-sim") && out.contains("simulator 20 x pump-000.."),
        "{out}"
    );
    assert!(out.contains("overheating  [critical] temperature > 100"), "{out}");
}

const BROKEN: &str = "\
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s, expected_every: fast }
      temperature: { unit: degC, range: [100, 0] }
assets:
  - { id: pump-*, type: pmp }
sources:
  - { name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }
rules:
  - { name: hot, when: \"temprature > 80\" }
sinks:
  - { name: out, type: stdout, outputs: [alert] }
";

#[test]
fn check_prints_every_problem_of_a_broken_file_on_stdout_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, BROKEN).unwrap();
    let done = run_to_end(twinstream().arg("check").arg(&path));
    assert_eq!(done.status.code(), Some(1), "{}{}", done.stdout, done.stderr);
    let p = path.display();
    let want = vec![
        format!("{p}:4:48: sensor `vibration`.expected_every: expected a duration like `200ms`, `10s` or `5m`, found `fast` (expected number at 0)"),
        format!("{p}:5:42: sensor `temperature`.range: lower bound 100 is above upper bound 0"),
        format!("{p}:7:25: asset `pump-*`: unknown asset type `pmp` (did you mean `pump`?)"),
        format!("{p}:11:25: rule `hot`.when: unknown name `temprature`: not a sensor, relation, window or join of asset type `pump` (did you mean `temperature`?)"),
        format!("{p}:13:42: sink `out`.outputs: unknown output `alert`; expected `twin_updates`, `windows`, `alerts`, `dead_letters`, `late_events`, `joins`, `commands` or `events`"),
    ];
    let got: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(got, want, "stderr:\n{}", done.stderr);
    assert!(
        done.stderr.contains(&format!("{p}: 5 problem(s)")),
        "stderr: {}",
        done.stderr
    );
}

const MODELLED: &str = "\
asset_types:
  tank:
    sensors:
      level: { unit: m, noise: 0.05 }
    model: { preset: level_rate, sensor: level, q: 0.001, anomaly: { window: 20 } }
assets:
  - { id: tank-1, type: tank }
sources:
  - { name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }
rules:
  - { name: draining, when: \"est.rate < -0.01\" }
";

/// `check` prints an asset type's model (and its version) in the summary,
/// and a model's problems as positioned lines.
#[test]
fn check_summarises_a_model_and_positions_its_problems() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("model.yaml");
    std::fs::write(&good, MODELLED).unwrap();
    let done = run_to_end(twinstream().arg("check").arg(&good));
    assert!(done.status.success(), "{}{}", done.stdout, done.stderr);
    let model = done
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("model "))
        .unwrap_or_else(|| panic!("no model line in:\n{}", done.stdout));
    assert!(
        model.starts_with("               model level_rate [level, rate] continuous; observes level (R 0.0025); anomaly [warning] false alarm 0.001 over 20 readings; version "),
        "{model}"
    );
    let broken = dir.path().join("broken-model.yaml");
    let text = MODELLED
        .replace("noise: 0.05", "noise: -1")
        .replace("est.rate", "est.rte");
    std::fs::write(&broken, text).unwrap();
    let done = run_to_end(twinstream().arg("check").arg(&broken));
    assert_eq!(done.status.code(), Some(1), "{}{}", done.stdout, done.stderr);
    let p = broken.display();
    let want = vec![
        format!("{p}:4:32: sensor `level`.noise: must be a finite number above zero (the standard deviation of the measurement noise)"),
        format!("{p}:11:34: rule `draining`.when: no state `rte` in the model of asset type `tank` (did you mean `rate`?); its states: `level` or `rate`"),
    ];
    let got: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(got, want, "stderr:\n{}", done.stderr);
}

/// `check` prints what a type keeps of its history and what it costs:
/// from the measured size of a bucket and of a raw reading, at the
/// sensors' nominal period.
#[test]
fn check_summarises_history_with_its_expected_disk_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.yaml");
    let text = MODELLED.replace(
        "    model:",
        "    history: { sensors: [level, est.level], raw: 1h, tiers: [{ every: 1m, keep: 7d }] }\n    model:",
    );
    assert_ne!(text, MODELLED);
    std::fs::write(&path, &text).unwrap();
    let done = run_to_end(twinstream().arg("check").arg(&path));
    assert!(done.status.success(), "{}{}", done.stdout, done.stderr);
    let line = done
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("history "))
        .unwrap_or_else(|| panic!("no history line in:\n{}", done.stdout));
    // A reading a second: 86,400 raw readings and 1,440 buckets a day.
    let day = 86_400.0 * twinstream::topology::RAW_READING_BYTES + 1_440.0 * twinstream::topology::BUCKET_BYTES;
    assert!(
        line.contains("history of level, est.level: raw 1h, 1m for 7d; events 30d; writes ~")
            && line.contains(&format!(
                "{} per sensor-day (a reading every 1s)",
                bytesize::ByteSize::b(day as u64)
            )),
        "{line}"
    );
}

#[test]
fn check_of_a_missing_file_fails_naming_the_file() {
    let done = run_to_end(twinstream().args(["check", "topologies/no-such-topology.yaml"]));
    assert!(!done.status.success());
    assert!(done.stdout.is_empty(), "{}", done.stdout);
    assert!(
        done.stderr
            .contains("cannot read topology topologies/no-such-topology.yaml: No such file or directory"),
        "{}",
        done.stderr
    );
}

/// An error's cause is printed once: "cannot read X: No such file", not
/// "cannot read X: No such file: No such file".
#[test]
fn an_error_names_its_cause_once() {
    let done = run_to_end(twinstream().args(["check", "topologies/no-such-topology.yaml"]));
    assert!(!done.status.success());
    assert_eq!(
        done.stderr.matches("No such file or directory").count(),
        1,
        "stderr: {}",
        done.stderr
    );
}

#[test]
fn version_prints_the_name_and_version() {
    let done = run_to_end(twinstream().arg("--version"));
    assert!(done.status.success(), "{}", done.stderr);
    assert_eq!(done.stdout, "twinstream 0.1.0\n");
}

#[test]
fn replay_refuses_a_rate_of_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen_workload(dir.path(), "w.jsonl", &["--assets", "2", "--seconds", "1"]);
    let report = dir.path().join("r.json");
    let done = run_to_end(
        twinstream()
            .args(["replay", "topologies/workload-v1.yaml"])
            .arg(&data)
            .arg("--report")
            .arg(&report)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--rate", "0"]),
    );
    assert!(!done.status.success());
    assert!(
        done.stderr
            .contains("--rate must be a positive number of records per second"),
        "{}",
        done.stderr
    );
    assert!(!report.exists(), "a refused replay writes no report");
}

#[test]
fn replay_of_a_topology_without_a_file_source_asks_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen_workload(dir.path(), "w.jsonl", &["--assets", "2", "--seconds", "1"]);
    let replay = |extra: &[&str]| {
        run_to_end(
            twinstream()
                .args(["replay", "topologies/demo.yaml"])
                .arg(&data)
                .arg("--report")
                .arg(dir.path().join("r.json"))
                .arg("--state-dir")
                .arg(dir.path().join("state"))
                .args(extra),
        )
    };
    let done = replay(&[]);
    assert!(!done.status.success());
    assert!(
        done.stderr.contains(
            "the topology has no file source whose decode mapping `replay` could use; add one or pass --source"
        ),
        "{}",
        done.stderr
    );
    let done = replay(&["--source", "plant-sim"]);
    assert!(!done.status.success());
    assert!(
        done.stderr
            .contains("--source plant-sim: a `simulator` source has no decode mapping to replay with"),
        "{}",
        done.stderr
    );
    let done = replay(&["--source", "nope"]);
    assert!(!done.status.success());
    assert!(
        done.stderr.contains("--source nope: the topology has no such source"),
        "{}",
        done.stderr
    );
}

#[test]
fn run_of_a_file_source_without_path_says_to_give_one_or_replay() {
    let dir = tempfile::tempdir().unwrap();
    let done = run_to_end(
        twinstream()
            .args(["run", "topologies/workload-v1.yaml", "--state-dir"])
            .arg(dir.path().join("state")),
    );
    assert!(!done.status.success(), "{}", done.stderr);
    assert!(
        done.stderr
            .contains("source `events` has no `path`: give it one, or use `twinstream replay TOPO FILE`"),
        "{}",
        done.stderr
    );
    assert!(
        !dir.path().join("state").exists(),
        "a configuration error must leave no state directory behind"
    );
}

/// Human logs written to a pipe or file (not a terminal) carry no ANSI colour
/// codes, so they stay readable and greppable (`line=1200`).
#[test]
fn human_logs_on_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen_workload(dir.path(), "w.jsonl", &["--assets", "2", "--seconds", "1"]);
    let done = run_to_end(
        twinstream()
            .args(["replay", "topologies/workload-v1.yaml"])
            .arg(&data)
            .arg("--report")
            .arg(dir.path().join("r.json"))
            .arg("--state-dir")
            .arg(dir.path().join("state")),
    );
    assert!(done.status.success(), "{}", done.stderr);
    assert!(done.stderr.contains("checkpoint durable"), "{}", done.stderr);
    assert!(
        !done.stderr.contains('\u{1b}'),
        "escape codes in piped logs:\n{:?}",
        done.stderr
    );
}
