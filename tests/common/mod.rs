//! Shared helpers for black-box tests: run the real binary ([`process`]),
//! real brokers ([`brokers`]), topologies built from shared parts
//! ([`topo`]), a real headless browser ([`browser`]), event streams ([`sse`]),
//! network faults between processes ([`proxy`]), the conformance workload's tools, and waiting on a condition
//! with a deadline ([`poll_until`]; never a sleep as synchronisation).

// Every test file includes this module and uses a part of it.
#![allow(dead_code, unused_imports)]

pub mod brokers;
pub mod browser;
pub mod process;
pub mod proxy;
pub mod sse;
pub mod topo;

pub use brokers::*;
pub use process::*;
pub use topo::{Topo, PUMPS};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_twinstream")
}

/// The checkout under test: where `cargo test` runs it from (set at run
/// time), not where the test binary was compiled (a target dir shared by
/// several checkouts may hold a binary compiled in another one).
pub fn repo() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()))
}

/// The conformance workload's tools: generator, reference implementation
/// and comparison (`tests/workload/`, independent of the engine's code).
pub fn workload_dir() -> PathBuf {
    repo().join("tests/workload")
}

/// The value of the Prometheus series `series` (exact name and labels) on
/// the node at `base`; `None` when it is not exported (yet).
pub fn metric(base: &str, series: &str) -> Option<f64> {
    let text = ureq::get(&format!("{base}/metrics")).call().ok()?.into_string().ok()?;
    text.lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
}

/// Calls `probe` every few milliseconds until it returns `Some`, or
/// `timeout` passes (then `None`). The one way tests wait for a condition
/// they cannot be told about.
pub fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs a command to completion and requires success.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `twinstream replay TOPO DATA --report REPORT --state-dir STATE EXTRA...`,
/// run to completion; it must succeed.
pub fn replay(topo: impl AsRef<Path>, data: &Path, state: &Path, report: &Path, extra: &[&str]) -> Output {
    ok(twinstream()
        .arg("replay")
        .arg(topo.as_ref())
        .arg(data)
        .arg("--report")
        .arg(report)
        .arg("--state-dir")
        .arg(state)
        .args(extra))
}

/// Generates a workload v1 file with `args` into `dir/name`.
pub fn gen_workload(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    ok(Command::new(python())
        .arg(workload_dir().join("gen_workload.py"))
        .args(args)
        .arg("--out")
        .arg(&out));
    out
}

/// `reference.py FILE --json` into `dir/ref.json`.
pub fn reference(dir: &Path, data: &Path) -> PathBuf {
    reference_with(dir, data, &[])
}

/// `reference.py DATA --json ARGS...` (e.g. `--history-out H.csv`).
pub fn reference_with(dir: &Path, data: &Path, args: &[&std::ffi::OsStr]) -> PathBuf {
    let out = ok(Command::new(python())
        .arg(workload_dir().join("reference.py"))
        .arg(data)
        .arg("--json")
        .args(args));
    let path = dir.join(format!("ref-{}.json", data.file_stem().unwrap().to_string_lossy()));
    std::fs::write(&path, out.stdout).unwrap();
    path
}

/// `compare.py REF OURS`; returns its stdout and whether it said MATCH.
pub fn compare(reference: &Path, ours: &Path) -> (bool, String) {
    let out = Command::new(python())
        .arg(workload_dir().join("compare.py"))
        .arg(reference)
        .arg(ours)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.success() && text.starts_with("MATCH"), text)
}

pub fn twinstream() -> Command {
    let mut c = Command::new(bin());
    c.current_dir(repo());
    c.env("RUST_LOG", "info");
    // `run` serves the HTTP API on a free port (a topology such as the demo
    // names a fixed one), with the demo's write token; tests that care pass
    // `--http` and their own tokens.
    c.env("TWINSTREAM_HTTP", "127.0.0.1:0");
    c.env("TWINSTREAM_WRITE_TOKEN", "test-token");
    c
}

pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// The record bytes a dead-letter line holds (`payload` as text, or
/// `payload_base64`).
pub fn dead_letter_payload(d: &serde_json::Value) -> Vec<u8> {
    use base64::Engine as _;
    match d.get("payload_base64") {
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b.as_str().expect("base64 text"))
            .expect("valid base64"),
        None => d["payload"].as_str().expect("a payload").as_bytes().to_vec(),
    }
}

pub fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// `twinstream run TOPO --state-dir STATE`.
pub fn run_cmd(topo: &Path, state: &Path) -> Command {
    let mut c = twinstream();
    c.arg("run").arg(topo).arg("--state-dir").arg(state);
    c
}

/// `(asset, events, windows, window count sum, latest values)` of every twin.
pub type Digest = Vec<(String, u64, u64, u64, Vec<f64>)>;

/// One twin's entry of a [`Digest`], from its stored record.
fn digest_entry(asset: &str, record: &[u8]) -> (String, u64, u64, u64, Vec<f64>) {
    let rec = twinstream::twin::record::decode(record).unwrap();
    let s = rec.stats;
    (
        asset.to_string(),
        s.events,
        s.windows,
        s.window_count_sum,
        rec.latest().map(|(_, l)| l.value).collect(),
    )
}

/// The digest of every twin in the store at `state`, over all its shards.
pub fn digest(state: &Path) -> Digest {
    let store = twinstream::store::Store::open(state, 1).unwrap();
    let mut out = Vec::new();
    for shard in store.shards() {
        store
            .for_each_twin(shard, |asset, bytes| {
                out.push(digest_entry(asset, bytes));
                Ok(())
            })
            .unwrap();
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The state of every twin as a cluster's changelog `topic` (of
/// `partitions` shards) holds it, as far as its markers commit it: what
/// any node would restore, in the digest form of a local store.
pub fn changelog_digest(brokers: &str, topic: &str, partitions: u32) -> Digest {
    use twinstream::cluster::changelog::{self, Fold};
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", "digest-reader");
    let reader = changelog::reader(&config, topic).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut out = Vec::new();
    for shard in 0..partitions {
        let (lo, hi) = changelog::watermarks(&reader, topic, shard).unwrap();
        let mut fold = Fold::default();
        changelog::read(&reader, topic, shard, lo, hi, &mut fold, &stop).unwrap();
        for (asset, twin) in fold.finish().twins {
            assert_eq!(
                twinstream::cluster::partition_for(asset.as_bytes(), partitions),
                shard,
                "{asset} in the changelog of another shard"
            );
            out.push(digest_entry(&asset, &twin.record));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The outputs (alert transitions, commands) that JSON-lines sink files
/// hold and `keep` accepts, per asset, once each by their `id_field`: a
/// restarted or taken-over twin emits again what followed its last
/// checkpoint, with the same ids, and must emit the same thing. When it was
/// emitted (`at`) differs between two emissions and is left out. Per asset,
/// ordered by (rule, event time, id): several files interleave. Panics on
/// two different outputs with one id.
pub fn outputs_by_id(
    files: &[PathBuf],
    id_field: &str,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> std::collections::BTreeMap<String, Vec<serde_json::Value>> {
    let (by_asset, conflicts) = outputs_and_conflicts(files, id_field, keep);
    assert!(
        conflicts.is_empty(),
        "two different outputs with one {id_field}: {conflicts:#?}"
    );
    by_asset
}

/// [`outputs_by_id`], and each pair of different outputs with one id (the
/// first kept) described, for a checker that reports rather than stops.
pub fn outputs_and_conflicts(
    files: &[PathBuf],
    id_field: &str,
    keep: impl Fn(&serde_json::Value) -> bool,
) -> (std::collections::BTreeMap<String, Vec<serde_json::Value>>, Vec<String>) {
    let mut by_asset: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    let mut conflicts = Vec::new();
    let mut files = files.to_vec();
    files.sort();
    for path in files.iter().filter(|p| p.exists()) {
        let text = std::fs::read_to_string(path).unwrap();
        // A line a `kill -9` cut short is not an output (its whole copy
        // follows, emitted again).
        for mut o in text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        {
            if !keep(&o) {
                continue;
            }
            o.as_object_mut().unwrap().remove("at");
            let seen = by_asset.entry(o["asset"].as_str().unwrap().to_string()).or_default();
            match seen.iter().find(|s| s[id_field] == o[id_field]) {
                Some(prev) if prev != &o => conflicts.push(format!("{prev} and {o}")),
                Some(_) => {}
                None => seen.push(o),
            }
        }
    }
    for outputs in by_asset.values_mut() {
        outputs.sort_by_key(|o| {
            (
                o["rule"].as_str().unwrap_or_default().to_string(),
                o["ts"].as_i64().unwrap_or_default(),
                o[id_field].as_str().unwrap().to_string(),
            )
        });
    }
    (by_asset, conflicts)
}

/// The greatest twin version per asset in the twin-update file. A line the
/// sink is still writing, or one a `kill -9` cut short, is not a version.
pub fn versions(updates: &Path) -> std::collections::HashMap<String, u64> {
    let text = std::fs::read_to_string(updates).unwrap_or_default();
    let mut max = std::collections::HashMap::new();
    for l in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        let e = max.entry(v["asset"].as_str().unwrap().to_string()).or_insert(0);
        *e = (*e).max(v["version"].as_u64().unwrap());
    }
    max
}

/// Polls the twin-update file until `done` holds for its versions.
pub fn wait_for(updates: &Path, what: &str, done: impl Fn(&std::collections::HashMap<String, u64>) -> bool) {
    let mut last = Default::default();
    let reached = poll_until(Duration::from_secs(120), || {
        last = versions(updates);
        done(&last).then_some(())
    });
    assert!(reached.is_some(), "{what}: {last:?}");
}

/// Waits until every one of `assets` twins is at `version`.
pub fn wait_for_versions(updates: &Path, assets: usize, version: u64) {
    wait_for(
        updates,
        &format!("twin updates did not reach version {version}"),
        |max| max.len() == assets && max.values().all(|v| *v == version),
    );
}
