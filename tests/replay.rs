//! Workload v1 conformance and crash recovery through the real binary.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn assert_match(dir: &Path, data: &Path, report: &Path) {
    assert_match_with(dir, data, report, &[]);
}

fn assert_match_with(dir: &Path, data: &Path, report: &Path, args: &[&std::ffi::OsStr]) {
    let reference = reference_with(dir, data, args);
    let (matched, text) = compare(&reference, report);
    assert!(
        matched,
        "{text}\nreference: {}\nours: {}",
        std::fs::read_to_string(&reference).unwrap(),
        std::fs::read_to_string(report).unwrap()
    );
}

#[test]
fn small_workload_matches_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen_workload(
        dir.path(),
        "small.jsonl",
        &["--assets", "200", "--seconds", "5", "--late-frac", "0.005"],
    );
    let report = dir.path().join("ours.json");
    replay(
        "topologies/workload-v1.yaml",
        &data,
        &dir.path().join("state"),
        &report,
        &[],
    );
    assert_match(dir.path(), &data, &report);
    let r = json(&report);
    assert_eq!(r["complete"], true);
    assert_eq!(r["events"], 40_000);
    assert!(
        r["late"].as_u64().unwrap() > 0,
        "the small preset injects late events: {r}"
    );
    assert!(
        r["alerts"].as_u64().unwrap() > 0,
        "drifting pumps must raise alerts: {r}"
    );
    assert_eq!(r["dead_letters"], 0);
}

#[test]
fn other_seeds_jitter_and_lateness_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let variants: &[&[&str]] = &[
        &["--seed", "7"],
        &["--seed", "1234"],
        &["--jitter-ms", "90", "--late-frac", "0.01"],
    ];
    for (i, args) in variants.iter().enumerate() {
        let mut all = vec!["--assets", "100", "--seconds", "5"];
        all.extend_from_slice(args);
        let data = gen_workload(dir.path(), &format!("v{i}.jsonl"), &all);
        let report = dir.path().join(format!("v{i}.json"));
        replay(
            "topologies/workload-v1.yaml",
            &data,
            &dir.path().join(format!("state{i}")),
            &report,
            &[],
        );
        assert_match(dir.path(), &data, &report);
    }
}

const HISTORY_TOPOLOGY: &str = "topologies/workload-v1-history.yaml";

/// The history fields of the report (see `WORKLOAD.md`, "History").
const HISTORY_FIELDS: [&str; 12] = [
    "history_buckets",
    "history_count",
    "history_sum_x64",
    "history_min_x64",
    "history_max_x64",
    "history_first_x64",
    "history_last_x64",
    "history_first_ts_sum",
    "history_last_ts_sum",
    "history_raw",
    "history_raw_x64",
    "history_raw_ts_sum",
];

/// Every bucket of a replayed trace's history, in every tier and within
/// retention, equals the reference's, row by row, also when the replay took
/// many checkpoints (each adds a page operand to every bucket it touched,
/// late readings included).
#[test]
fn history_of_a_replay_matches_the_reference_row_by_row() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen_workload(
        dir.path(),
        "small.jsonl",
        &["--assets", "200", "--seconds", "5", "--late-frac", "0.005"],
    );
    // A checkpoint every 100 ms of a replay paced to last about a second,
    // however long each takes.
    let text = std::fs::read_to_string(repo().join(HISTORY_TOPOLOGY)).unwrap();
    assert!(text.contains("    interval: 1s\n"));
    let topo = dir.path().join("history.yaml");
    std::fs::write(&topo, text.replace("interval: 1s", EVERY_100MS)).unwrap();
    let report = dir.path().join("ours.json");
    let ours_csv = dir.path().join("ours.csv");
    let out = replay(
        &topo,
        &data,
        &dir.path().join("state"),
        &report,
        &["--history-out", ours_csv.to_str().unwrap(), "--rate", "40000"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.matches("checkpoint durable").count() >= 10, "{stderr}");
    let ref_csv = dir.path().join("ref.csv");
    assert_match_with(
        dir.path(),
        &data,
        &report,
        &["--history-out".as_ref(), ref_csv.as_os_str()],
    );
    let r = json(&report);
    for f in HISTORY_FIELDS {
        assert!(r[f].as_i64().unwrap() > 0, "{f} must be exercised: {r}");
    }
    let (ours, theirs) = (
        std::fs::read_to_string(&ours_csv).unwrap(),
        std::fs::read_to_string(&ref_csv).unwrap(),
    );
    assert_eq!(ours.lines().count(), theirs.lines().count());
    for (a, b) in ours.lines().zip(theirs.lines()) {
        assert_eq!(a, b, "first differing row (ours, reference)");
    }
    // Retention: the 1 s tier (kept 3 s) and the raw tier (kept 2 s) hold
    // only the end of the 5 s trace; the 5 s tier (kept 1 h) all of it.
    let starts = |width: &str| -> Vec<i64> {
        ours.lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|c| c[2] == width)
            .map(|c| c[3].parse().unwrap())
            .collect()
    };
    let span = |v: Vec<i64>| v.iter().max().unwrap() - v.iter().min().unwrap();
    assert!(span(starts("0")) < 2100, "raw tier kept 2 s");
    assert!(span(starts("1000")) <= 3000, "1 s tier kept 3 s");
    assert!(span(starts("5000")) >= 5000, "5 s tier keeps the whole trace");
}

/// A checkpoint every 100 ms, not paced by its cost (for the snapshot of
/// a topology whose `interval: 1s` line is indented by four spaces).
const EVERY_100MS: &str = "interval: 100ms\n    min_pause: 0s";

/// Retention frees disk: a trace of 200 s, checkpointed every 100 ms of a
/// replay paced to 4 s (so its raw pages are written while within
/// retention), with the raw tier kept 2 s, takes a fraction of the disk it
/// takes kept 1 h once RocksDB has compacted (`--compact`: the compaction
/// filter drops the pages past retention), and shows only the readings
/// within 2 s of the last.
#[test]
fn retention_frees_the_disk_of_what_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen_workload(dir.path(), "r.jsonl", &["--assets", "100", "--seconds", "200"]);
    let text = std::fs::read_to_string(repo().join(HISTORY_TOPOLOGY)).unwrap();
    let mut disk = Vec::new();
    for (name, raw) in [("short", "raw: 2s"), ("long", "raw: 1h")] {
        let topo = dir.path().join(format!("{name}.yaml"));
        let t = text
            .replace("raw: 2s", raw)
            .replace("- { every: 1s, keep: 3s }\n", "")
            .replace("- { every: 5s, keep: 1h }", "- { every: 1h, keep: 1h }")
            .replace("interval: 1s", EVERY_100MS);
        assert!(
            t.contains(raw) && !t.contains("every: 1s") && t.contains("100ms"),
            "{t}"
        );
        std::fs::write(&topo, t).unwrap();
        let report = dir.path().join(format!("{name}.json"));
        let out = replay(
            &topo,
            &data,
            &dir.path().join(name),
            &report,
            &["--compact", "--rate", "200000"],
        );
        let checkpoints = String::from_utf8_lossy(&out.stderr)
            .matches("checkpoint durable")
            .count();
        assert!(checkpoints >= 20, "{checkpoints} checkpoints");
        let r = json(&report);
        disk.push((
            r["history_raw"].as_u64().unwrap(),
            r["history_disk_bytes"].as_u64().unwrap(),
        ));
    }
    let ((short_n, short_b), (long_n, long_b)) = (disk[0], disk[1]);
    assert_eq!(long_n, 100 * 4 * 10 * 200, "1 h keeps every reading");
    assert!(short_n * 50 < long_n, "2 s of 200 shown: {short_n} of {long_n}");
    assert!(
        short_b * 4 < long_b,
        "retention freed the disk: {short_b} vs {long_b} bytes"
    );
}

/// Asserts that a crashed and resumed replay's report `r` says what the
/// uninterrupted one's `c` does, of the durable state and of `more` fields.
fn same_state(r: &serde_json::Value, c: &serde_json::Value, more: &[&str]) {
    for field in [
        "events",
        "windows",
        "alerts",
        "late",
        "sum_count",
        "sum_value_x64",
        "sum_max_x64",
        "sum_avg",
        "latest_keys",
        "latest_value_x64",
        "latest_ts_sum",
        "records",
        "dead_letters",
        "twins",
    ]
    .iter()
    .chain(more)
    {
        assert!(!c[field].is_null(), "{field} missing: {c}");
        assert_eq!(r[field], c[field], "field {field}: crashed {r} vs clean {c}");
    }
}

/// Kills the replay with SIGKILL after `checkpoints` durable checkpoints,
/// and checks that it was still replaying at that point.
fn kill_after_checkpoints(topo: &str, data: &Path, state: &Path, report: &Path, checkpoints: usize, rate: &str) {
    let mut run = spawn(
        twinstream()
            .args(["replay", topo])
            .arg(data)
            .arg("--report")
            .arg(report)
            .arg("--state-dir")
            .arg(state)
            .args(["--rate", rate]),
    );
    for n in 0..checkpoints {
        run.wait_stderr(&format!("checkpoint {}", n + 1), Duration::from_secs(120), |l| {
            l.contains("checkpoint durable")
        });
    }
    run.child.kill().unwrap();
    let status = run.child.wait().unwrap();
    assert!(!status.success(), "the replay must have been killed, not finished");
    assert!(!report.exists(), "a killed replay writes no report");
}

#[test]
fn a_replay_killed_with_sigkill_resumes_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let data = gen_workload(
        dir.path(),
        "crash.jsonl",
        &["--assets", "500", "--seconds", "8", "--late-frac", "0.005"],
    );
    // Uninterrupted run (with history: its buckets must come out the same).
    let clean = dir.path().join("clean.json");
    replay(HISTORY_TOPOLOGY, &data, &dir.path().join("clean-state"), &clean, &[]);

    // Killed twice mid-stream (rate-limited so the kills land inside the file),
    // then resumed to the end.
    let state = dir.path().join("crash-state");
    let report = dir.path().join("crash.json");
    kill_after_checkpoints(HISTORY_TOPOLOGY, &data, &state, &report, 2, "20000");
    kill_after_checkpoints(HISTORY_TOPOLOGY, &data, &state, &report, 2, "20000");
    let out = replay(HISTORY_TOPOLOGY, &data, &state, &report, &[]);
    let r = json(&report);
    assert!(
        r["resumed_from_line"].as_u64().unwrap() > 0,
        "the last run must resume, not start over: {r}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(r["run_events"].as_u64().unwrap() < r["events"].as_u64().unwrap());
    let c = json(&clean);
    same_state(&r, &c, &HISTORY_FIELDS);
    assert_match_with(dir.path(), &data, &report, &["--history".as_ref()]);

    // A finished replay run again reports the same without re-reading.
    let again = dir.path().join("again.json");
    replay(HISTORY_TOPOLOGY, &data, &state, &again, &[]);
    let a = json(&again);
    assert_eq!(a["run_events"], 0);
    assert_eq!(a["windows"], c["windows"]);
}

/// Halls of 16 sensors (`tests/topologies/hall.yaml`): in each second of
/// its stream a hall's 3 sensors, picked at random, report 5 readings each.
/// Returns how many sensors of all halls reported.
fn hall_events(path: &Path, halls: usize, seconds: i64) -> usize {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut rng: u64 = 0x2026_1206;
    let mut reported = std::collections::BTreeSet::new();
    let mut next = |n: u64| {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (rng >> 33) % n
    };
    for second in 0..seconds {
        for hall in 0..halls {
            let mut picked: Vec<u64> = Vec::new();
            while picked.len() < 3 {
                let s = next(16);
                if !picked.contains(&s) {
                    picked.push(s);
                    reported.insert((hall, s));
                }
            }
            for j in 0..5 {
                for (k, s) in picked.iter().enumerate() {
                    let ts = 1_700_000_000_000 + second * 1000 + j * 200 + k as i64 * 7;
                    let value = 20.0 + next(64) as f64 / 8.0;
                    writeln!(
                        out,
                        r#"{{"asset":"hall-{hall:04}","sensor":"s{s:02}","ts":{ts},"value":{value}}}"#
                    )
                    .unwrap();
                }
            }
        }
    }
    out.flush().unwrap();
    reported.len()
}

/// The `operands` of every `checkpoint durable` line in `stderr`, summed.
fn operands_written(stderr: &[u8]) -> u64 {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.contains("checkpoint durable"))
        .filter_map(|l| log_field(l, "operands")?.parse::<u64>().ok())
        .sum()
}

#[test]
fn many_sensor_twins_stored_in_parts_resume_from_a_kill_to_the_same_result() {
    const HALLS: &str = "tests/topologies/hall.yaml";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("halls.jsonl");
    let reported = hall_events(&data, 300, 20);
    let clean = dir.path().join("clean.json");
    // Paced (3 s) so that checkpoints come between a hall's seconds.
    let out = replay(
        HALLS,
        &data,
        &dir.path().join("clean-state"),
        &clean,
        &["--rate", "30000"],
    );
    assert!(
        operands_written(&out.stderr) > 0,
        "checkpoints merged in the sensors that changed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Killed twice mid-stream, then resumed to the end: what the store
    // folded from the operands is the twins' state.
    let state = dir.path().join("crash-state");
    let report = dir.path().join("crash.json");
    kill_after_checkpoints(HALLS, &data, &state, &report, 3, "30000");
    kill_after_checkpoints(HALLS, &data, &state, &report, 3, "30000");
    let out = replay(HALLS, &data, &state, &report, &[]);
    let (r, c) = (json(&report), json(&clean));
    assert!(
        r["resumed_from_line"].as_u64().unwrap() > 0,
        "the last run must resume, not start over: {r}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(c["events"], 300 * 20 * 15);
    same_state(&r, &c, &[]);
    assert_eq!(
        c["latest_keys"], reported,
        "every sensor that reported has its latest value"
    );
}

#[test]
fn a_state_dir_of_another_file_is_refused_and_fresh_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let a = gen_workload(dir.path(), "a.jsonl", &["--assets", "20", "--seconds", "2"]);
    let b = gen_workload(
        dir.path(),
        "b.jsonl",
        &["--assets", "20", "--seconds", "2", "--seed", "9"],
    );
    let state = dir.path().join("state");
    let report = dir.path().join("r.json");
    replay("topologies/workload-v1.yaml", &a, &state, &report, &[]);
    let out = twinstream()
        .args(["replay", "topologies/workload-v1.yaml"])
        .arg(&b)
        .arg("--report")
        .arg(&report)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to") && err.contains("--fresh"), "{err}");
    replay("topologies/workload-v1.yaml", &b, &state, &report, &["--fresh"]);
    assert_match(dir.path(), &b, &report);
}

/// A store that cannot be written (its disk is full) stops the replay with an
/// error that says so and keeps the last durable checkpoint; run again with
/// room to write, the replay resumes from it and the result is exact. A file
/// size limit (RLIMIT_FSIZE, with SIGXFSZ ignored) stands in for the full
/// disk: RocksDB's writes fail the same way, and no root is needed to mount a
/// small filesystem.
#[test]
fn a_store_that_cannot_be_written_stops_the_replay_and_a_rerun_loses_nothing() {
    use std::os::unix::process::CommandExt;

    let dir = tempfile::tempdir().unwrap();
    let data = gen_workload(dir.path(), "full.jsonl", &["--assets", "2000", "--seconds", "5"]);
    let state = dir.path().join("state");
    let report = dir.path().join("ours.json");
    // Every checkpoint holds all 2000 twins (each reports every 100 ms), about
    // 1 MB of log: with 2 MB per file the store fills after one or two.
    const LIMIT: libc::rlim_t = 2 << 20;
    let mut cmd = twinstream();
    cmd.args(["replay", "topologies/workload-v1.yaml"])
        .arg(&data)
        .arg("--report")
        .arg(&report)
        .arg("--state-dir")
        .arg(&state)
        .args(["--rate", "100000"]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (status, stderr) = spawn(&mut cmd).finish(Duration::from_secs(120));
    let stderr = stderr.join("\n");
    assert!(
        !status.success(),
        "the replay must fail when the store is full:\n{stderr}"
    );
    assert!(
        stderr.contains("store write failed (state stays at the previous checkpoint)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("checkpoint durable"),
        "a checkpoint must have been durable before the store filled:\n{stderr}"
    );
    assert!(!report.exists(), "a failed replay writes no report");

    // Room again: the same command resumes from the last durable checkpoint.
    replay("topologies/workload-v1.yaml", &data, &state, &report, &[]);
    let r = json(&report);
    assert!(
        r["resumed_from_line"].as_u64().unwrap() > 0,
        "the rerun must resume, not start over: {r}"
    );
    assert_match(dir.path(), &data, &report);
}
