//! Unreadable state is a clear startup or restore error, never misread: a
//! store layout, a twin record or a source position in a format this build
//! does not know stops the run with a message that names what and where, and
//! leaves the stored bytes as they were.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use twinstream::store::{format_key, Store, STORE_FORMAT};

const WORKLOAD: &str = "topologies/workload-v1.yaml";
const DEADLINE: Duration = Duration::from_secs(120);

struct Setup {
    _dir: tempfile::TempDir,
    topology: PathBuf,
    data: PathBuf,
    state: PathBuf,
    report: PathBuf,
}

/// A small workload and an empty state dir, prepared by `prepare(store)`.
fn setup(prepare: impl FnOnce(&Store)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = gen_workload(dir.path(), "small.jsonl", &["--assets", "20", "--seconds", "2"]);
    let state = dir.path().join("state");
    {
        let store = Store::open(&state, 1).unwrap();
        prepare(&store);
    }
    let report = dir.path().join("report.json");
    Setup {
        _dir: dir,
        topology: PathBuf::from(WORKLOAD),
        data,
        state,
        report,
    }
}

/// Replays the workload on the prepared state; it must fail. Returns stderr.
fn replay_must_fail(s: &Setup) -> String {
    let run = spawn(
        twinstream()
            .arg("replay")
            .arg(&s.topology)
            .arg(&s.data)
            .arg("--report")
            .arg(&s.report)
            .arg("--state-dir")
            .arg(&s.state),
    );
    let (status, stderr) = run.finish(DEADLINE);
    let stderr = stderr.join("\n");
    assert!(!status.success(), "the replay must fail, it exited {status}:\n{stderr}");
    assert!(!s.report.exists(), "a failed replay writes no report");
    stderr
}

fn assert_mentions(stderr: &str, parts: &[&str]) {
    for p in parts {
        assert!(stderr.contains(p), "stderr does not mention `{p}`:\n{stderr}");
    }
}

fn stored_twin(state: &Path, asset: &str) -> Option<Vec<u8>> {
    Store::open(state, 1).unwrap().get_twin(0, asset).unwrap()
}

#[test]
fn an_unknown_store_layout_format_is_refused_at_startup() {
    let s = setup(|store| store.put_meta_raw(format_key(), &99u16.to_le_bytes()).unwrap());
    let stderr = replay_must_fail(&s);
    assert_mentions(
        &stderr,
        &[
            &format!("the store in {} has layout format 99", s.state.display()),
            &format!("this build reads format {STORE_FORMAT}"),
        ],
    );

    // `run` refuses it the same way.
    let run = spawn(
        twinstream()
            .args(["run", "topologies/demo.yaml", "--state-dir"])
            .arg(&s.state),
    );
    let (status, stderr) = run.finish(DEADLINE);
    let stderr = stderr.join("\n");
    assert!(!status.success(), "{stderr}");
    assert_mentions(&stderr, &["has layout format 99"]);
}

#[test]
fn a_twin_record_of_an_unknown_format_version_stops_the_replay_naming_the_asset() {
    let bad = [99u8, 0, 1, 2, 3];
    let s = setup(|store| store.put_twin_raw(0, "pump-00000", &bad).unwrap());
    let stderr = replay_must_fail(&s);
    assert_mentions(&stderr, &["pump-00000", "format version 99"]);
    assert_eq!(
        stored_twin(&s.state, "pump-00000").as_deref(),
        Some(&bad[..]),
        "the unreadable record is left as it was"
    );
}

/// (By default a corrupt record is quarantined and the twin rebuilt:
/// `tests/damaged_state.rs`; `node.damaged_twin: stop` stops instead.)
#[test]
fn with_damaged_twin_stop_a_corrupt_twin_record_stops_the_replay_naming_the_asset() {
    // The current format version, and bytes that are not a twin record.
    let mut bad = twinstream::twin::record::TWIN_FORMAT.to_le_bytes().to_vec();
    bad.extend_from_slice(&[0xff; 9]);
    let mut s = setup(|store| store.put_twin_raw(0, "pump-00003", &bad).unwrap());
    let topo = std::fs::read_to_string(WORKLOAD)
        .unwrap()
        .replace("  name: conformance\n", "  name: conformance\n  damaged_twin: stop\n");
    assert!(topo.contains("damaged_twin: stop"));
    s.topology = s.data.with_file_name("stop.yaml");
    std::fs::write(&s.topology, topo).unwrap();
    let stderr = replay_must_fail(&s);
    assert_mentions(&stderr, &["pump-00003", "corrupt"]);
    assert_eq!(stored_twin(&s.state, "pump-00003").as_deref(), Some(&bad[..]));
}

#[test]
fn a_source_position_of_an_unknown_format_version_is_refused_at_startup() {
    let s = setup(|store| store.put_meta_raw(b"source/events", &[99, 0, 0, 0, 0]).unwrap());
    let stderr = replay_must_fail(&s);
    assert_mentions(
        &stderr,
        &["stored position of source `events` is unreadable", "format version 99"],
    );
    let store = Store::open(&s.state, 1).unwrap();
    assert_eq!(
        store.get_meta("source/events").unwrap().as_deref(),
        Some(&[99u8, 0, 0, 0, 0][..])
    );
}

#[test]
fn a_source_position_with_a_corrupt_payload_is_refused_at_startup() {
    let s = setup(|store| store.put_meta_raw(b"source/events", &[1, 0, 0xff, 0xff, 0xff]).unwrap());
    let stderr = replay_must_fail(&s);
    assert_mentions(
        &stderr,
        &["stored position of source `events` is unreadable", "corrupt"],
    );
}
