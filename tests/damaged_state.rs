//! Damaged state: a twin record that cannot be read is quarantined - its
//! bytes dead-lettered with the reason, the twin rebuilt as the topology
//! says - never misread and never silently dropped.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// A node reading `data` (a file it follows), its dead letters to
/// `dlq.jsonl` beside it; `node` adds to the node's settings.
fn topology(dir: &Path, data: &Path, node: &str) -> PathBuf {
    let mut topo = Topo::new("damaged").snapshot_every("100ms");
    if !node.is_empty() {
        topo = topo.with(node);
    }
    topo.model(
        r#"asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s, range: [0, 50] }
assets: [{ id: "pump-*", type: pump }]
windows: [{ name: w1s, size: 1s }]
"#,
    )
    .source(&format!(
        r#"{{ name: in, type: file, path: "{}", pace: fast, decode: {{ asset: asset, sensor: sensor, ts: ts, value: value }} }}"#,
        data.display()
    ))
    .file_sink("dlq", &dir.join("dlq.jsonl"), "dead_letters")
    .write(&dir.join("t.yaml"))
}

/// A directory of its own for a node: `(dir, the file it follows, its
/// topology, its state directory)`; `node` adds to its settings.
fn files(node: &str) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("in.jsonl");
    let topo = topology(dir.path(), &data, node);
    let state = dir.path().join("state");
    (dir, data, topo, state)
}

/// Appends `n` readings of each asset, a second apart from `from_s`.
fn append(data: &Path, assets: &[&str], from_s: i64, n: i64) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data)
        .unwrap();
    for i in 0..n {
        for a in assets {
            let ts = 1_700_000_000_000 + (from_s + i) * 1000;
            writeln!(
                f,
                r#"{{"asset":"{a}","sensor":"vibration","ts":{ts},"value":{}}}"#,
                1 + i
            )
            .unwrap();
        }
    }
}

/// Events per twin in the store.
fn events(state: &Path) -> Vec<(String, u64)> {
    digest(state).into_iter().map(|(a, e, ..)| (a, e)).collect()
}

/// Cuts `asset`'s stored record in half: readable by RocksDB, not as a
/// twin record. Returns the damaged bytes.
fn damage(state: &Path, asset: &str) -> Vec<u8> {
    let store = twinstream::store::Store::open(state, 1).unwrap();
    let good = store.get_twin(0, asset).unwrap().expect("the twin is stored");
    let bad = good[..good.len() / 2].to_vec();
    assert!(
        twinstream::twin::record::decode(&bad).is_err(),
        "the cut record must not decode"
    );
    store.put_twin_raw(0, asset, &bad).unwrap();
    bad
}

#[test]
fn a_damaged_twin_record_is_dead_lettered_with_its_bytes_and_the_twin_starts_from_empty() {
    let (dir, data, topo, state) = files("");
    append(&data, &["pump-1", "pump-2"], 0, 5);
    run_until_line(&topo, &state, 10);
    assert_eq!(events(&state), [("pump-1".into(), 5), ("pump-2".into(), 5)]);

    let bad = damage(&state, "pump-1");
    append(&data, &["pump-1", "pump-2"], 5, 3);
    run_until_line(&topo, &state, 16);
    assert_eq!(
        events(&state),
        [("pump-1".into(), 3), ("pump-2".into(), 8)],
        "pump-1 starts from empty, pump-2 is untouched"
    );
    let dead = jsonl(&dir.path().join("dlq.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(d["reason"], "damaged_state");
    assert_eq!(d["origin"]["source"], "store");
    assert_eq!(d["key"], "pump-1");
    assert_eq!(dead_letter_payload(d), bad, "the damaged bytes are kept");
    let msg = d["message"].as_str().unwrap();
    assert!(
        msg.starts_with("twin `pump-1` (shard 0): its stored record is unreadable (")
            && msg.ends_with("quarantined here and rebuilt from empty"),
        "{msg}"
    );

    // The rebuilt record replaced the damaged one: nothing more to say.
    append(&data, &["pump-1"], 8, 1);
    run_until_line(&topo, &state, 17);
    assert_eq!(events(&state)[0], ("pump-1".into(), 4));
    assert_eq!(jsonl(&dir.path().join("dlq.jsonl")).len(), 1, "quarantined once");
}

#[test]
fn with_damaged_twin_stop_a_damaged_record_stops_the_node_and_names_it() {
    let (dir, data, topo, state) = files("damaged_twin: stop");
    append(&data, &["pump-1"], 0, 2);
    run_until_line(&topo, &state, 2);
    damage(&state, "pump-1");
    append(&data, &["pump-1"], 2, 1);

    let run = spawn(&mut run_cmd(&topo, &state));
    let (status, stderr) = run.finish(Duration::from_secs(60));
    assert!(!status.success());
    let err = stderr.join("\n");
    assert!(err.contains("cannot restore twin `pump-1`"), "{err}");
    // Nothing was replaced or dead-lettered: the record is as it was.
    let store = twinstream::store::Store::open(&state, 1).unwrap();
    let kept = store.get_twin(0, "pump-1").unwrap().unwrap();
    assert!(twinstream::twin::record::decode(&kept).is_err());
    assert!(!dir.path().join("dlq.jsonl").exists() || jsonl(&dir.path().join("dlq.jsonl")).is_empty());
}

/// `twinstream check-state DIR`: its output and exit code.
fn check_state(state: &Path) -> (i32, String) {
    let out = twinstream().arg("check-state").arg(state).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

/// The store's files with extension `ext` (`sst`: table files, `log`: the
/// write-ahead log), largest first.
fn store_files(state: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
    files
}

#[test]
fn check_state_reads_every_value_and_names_what_is_damaged() {
    let (dir, data, topo, state) = files("");
    append(&data, &["pump-1", "pump-2"], 0, 5);
    run_until_line(&topo, &state, 10);

    let (code, out) = check_state(&state);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  shard 0: twins: 2 ("), "{out}");
    assert!(out.contains("  meta: source positions: 1 ("), "{out}");
    assert!(out.ends_with("ok: every value reads\n"), "{out}");

    damage(&state, "pump-2");
    let (code, out) = check_state(&state);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("DAMAGED twins-0000 twin `pump-2`: stored value is corrupt: twin payload:"),
        "{out}"
    );
    assert!(
        out.contains("1 damaged; at the next start a damaged twin record is quarantined"),
        "{out}"
    );

    // A file of the store gone: neither check-state nor the node opens it,
    // and both name the file.
    let gone = store_files(&state, "sst").remove(0);
    std::fs::remove_file(&gone).unwrap();
    let name = gone.file_name().unwrap().to_string_lossy().into_owned();
    let (code, out) = check_state(&state);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(&format!("is damaged: file {name} is missing")), "{out}");
    let run = spawn(&mut run_cmd(&topo, &state));
    let (status, stderr) = run.finish(Duration::from_secs(60));
    assert!(!status.success());
    let err = stderr.join("\n");
    assert!(
        err.contains(&format!("is damaged: file {name} is missing"))
            && err.contains("does not start on part of its state"),
        "{err}"
    );

    let (code, out) = check_state(&dir.path().join("nowhere"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is not a state directory"), "{out}");
}

/// A table file with damaged bytes: RocksDB's checksums catch it, at the
/// open or when the block is read, and nothing is misread.
#[test]
fn a_damaged_table_file_is_caught_by_its_checksums() {
    let (_dir, data, topo, state) = files("");
    append(&data, &["pump-1", "pump-2", "pump-3"], 0, 50);
    run_until_line(&topo, &state, 150);
    let sst = store_files(&state, "sst").remove(0);
    let mut bytes = std::fs::read(&sst).unwrap();
    // The first data block starts the file.
    for b in &mut bytes[20..40] {
        *b ^= 0xff;
    }
    std::fs::write(&sst, bytes).unwrap();
    let (code, out) = check_state(&state);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("checksum mismatch") || out.contains("Corruption"), "{out}");
}

/// A write-ahead log cut short (a torn write, a damaged disk) loses only
/// whole checkpoints: the store recovers to the last complete one, says
/// so, and the source resumes from the position stored with it - the
/// state ends equal to an uninterrupted run's.
#[test]
fn a_truncated_write_ahead_log_recovers_to_a_complete_checkpoint_and_loses_nothing() {
    let (dir, data, topo, _) = files("");
    append(&data, &["pump-1", "pump-2", "pump-3"], 0, 20);

    let whole = dir.path().join("whole");
    run_until_line(&topo, &whole, 60);

    // Killed after its checkpoints: they are in the log, not in table files.
    let state = dir.path().join("state");
    let mut run = spawn(&mut run_cmd(&topo, &state));
    run.wait_stderr("a durable checkpoint at line 60", Duration::from_secs(60), |l| {
        l.contains("checkpoint durable") && log_field(l, "line").as_deref() == Some("60")
    });
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    let log = store_files(&state, "log").remove(0);
    let len = std::fs::metadata(&log).unwrap().len();
    assert!(len > 100, "the checkpoints are in the log ({len} bytes)");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(len - 40)
        .unwrap();

    let mut run = spawn(&mut run_cmd(&topo, &state));
    let said = run.wait_stderr("the recovery warning", Duration::from_secs(60), |l| {
        l.contains("write-ahead log ended in an incomplete or damaged record")
    });
    assert!(said.contains("dropping"), "{said}");
    run.wait_stderr("a durable checkpoint at line 60", Duration::from_secs(60), |l| {
        l.contains("checkpoint durable") && log_field(l, "line").as_deref() == Some("60")
    });
    stop_cleanly(run);
    assert_eq!(digest(&state), digest(&whole));
}
