//! Every fuzz input ever kept - the seed corpora in `fuzz/corpus/<target>/`
//! and every crash found, in `fuzz/crashes/<target>/` - replayed through
//! its target (`twinstream::fuzzing`): what AFL++ once found stays fixed.
//! The `http` inputs go to a real node's API.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use common::*;

/// The inputs of `target`: its corpus and its crashes.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for kind in ["corpus", "crashes"] {
        let dir = repo().join("fuzz").join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_file() && path.file_name().is_some_and(|n| n != "README.md") {
                out.push((
                    format!("{kind}/{target}/{}", path.file_name().unwrap().to_string_lossy()),
                    std::fs::read(&path).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Runs every input of `target` through `f`; fails naming each that panics.
fn replay(target: &str, mut f: impl FnMut(&[u8])) {
    let inputs = inputs(target);
    assert!(inputs.len() >= 5, "fuzz/corpus/{target} holds {} seeds", inputs.len());
    let failed: Vec<String> = inputs
        .iter()
        .filter_map(|(name, data)| {
            catch_unwind(AssertUnwindSafe(|| f(data)))
                .err()
                .map(|p| format!("{name}: {}", p.downcast_ref::<String>().map_or("panic", String::as_str)))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} inputs fail:\n{}",
        failed.len(),
        inputs.len(),
        failed.join("\n")
    );
}

#[test]
fn scanner_corpus() {
    replay("scanner", twinstream::fuzzing::scanner);
}

#[test]
fn decode_corpus() {
    replay("decode", twinstream::fuzzing::decode);
}

#[test]
fn topology_corpus() {
    replay("topology", twinstream::fuzzing::topology);
}

#[test]
fn expr_corpus() {
    replay("expr", twinstream::fuzzing::expr);
}

#[test]
fn stored_corpus() {
    replay("stored", twinstream::fuzzing::stored);
}

#[test]
fn http_corpus_against_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = spawn(&mut run_cmd(
        Path::new("topologies/demo.yaml"),
        &dir.path().join("state"),
    ));
    let base = run.http_base();
    let ready = poll_until(Duration::from_secs(60), || {
        ureq::get(&format!("{base}/readyz")).call().ok().map(|_| ())
    });
    assert!(ready.is_some(), "the node never got ready");
    let mut answered = 0;
    replay("http", |data| {
        if twinstream::fuzzing::http(&base, "test-token", data).is_some() {
            answered += 1;
        }
    });
    assert!(answered >= 5, "only {answered} inputs were requests");
    // Still up and answering after all of them.
    assert!(ureq::get(&format!("{base}/healthz")).call().is_ok());
    stop_cleanly(run);
}
