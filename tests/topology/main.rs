//! Topology validation through the library: every class of error is reported
//! as one exact `file:line:col: message` line, and every error of a file is
//! reported at once, in file order.
//!
//! Each YAML text below starts on line 1 (the newline after `r#"` is dropped),
//! and every expected line/column was counted by hand on that text (1-based;
//! inside quoted expressions, the column of the offending character).

use std::path::Path;

use twinstream::topology;

mod error_classes;
mod model;
mod model_errors;
mod semantics_errors;

use error_classes::ERROR_CLASSES;
use semantics_errors::SEMANTICS_ERRORS;

/// The diagnostics of `yaml` (named `t.yaml`) as printed lines; panics when
/// the text is valid.
fn diagnostics(yaml: &str) -> Vec<String> {
    let text = yaml.strip_prefix('\n').unwrap_or(yaml);
    match topology::parse(Path::new("t.yaml"), text) {
        Ok(_) => panic!("expected diagnostics, the topology is valid:\n{text}"),
        Err(d) => d.to_string().lines().map(str::to_string).collect(),
    }
}

/// One YAML text and the diagnostics it must give, line for line.
pub struct Case {
    pub name: &'static str,
    pub yaml: &'static str,
    pub want: &'static [&'static str],
}

/// Checks every case and reports all mismatches at once.
fn check_cases(cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let got = diagnostics(c.yaml);
        if got != c.want {
            failures.push(format!(
                "case `{}`:\n  want:\n    {}\n  got:\n    {}",
                c.name,
                c.want.join("\n    "),
                got.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// An edge evaluates the rules marked `local`, a cluster node the others
/// (each rule runs in one place), a standalone node all; an edge's uplink
/// buffers 1 GiB by default.
#[test]
fn rules_run_where_their_role_says_and_an_uplink_buffers_by_default() {
    let text = |role: &str, extra: &str| {
        format!(
            r#"
node: {{ {role} }}
asset_types:
  pump:
    sensors:
      vibration: {{ unit: mm/s }}
assets: [{{ id: pump-1, type: pump }}]
sources:
  - name: k
    type: kafka
    brokers: "127.0.0.1:9092"
    topics: [t]
    group_id: g
    decode: {{ sensor: s, ts: t, value: v }}
rules:
  - {{ name: trip, when: "vibration > 9", local: true }}
  - {{ name: wear, when: "vibration > 5" }}
sinks:
  - {{ name: up, type: kafka, brokers: "127.0.0.1:9092", topic: telemetry, outputs: [events]{extra} }}
"#
        )
    };
    let load = |role: &str, extra: &str| topology::parse(Path::new("t.yaml"), &text(role, extra)).unwrap();
    let names = |t: &topology::Topology| t.rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    let edge = load("role: edge", "");
    assert_eq!(edge.node.role, topology::NodeRole::Edge);
    assert_eq!(names(&edge), ["trip"]);
    assert_eq!(edge.rules_elsewhere, ["wear"]);
    let topology::SinkKind::Kafka(k) = &edge.sinks[0].kind else {
        panic!()
    };
    assert_eq!(k.buffer, Some(topology::DEFAULT_EVENTS_BUFFER));
    assert!(
        edge.summary()
            .contains("wear (evaluated by the cluster: not marked `local`)"),
        "{}",
        edge.summary()
    );
    let sized = load("role: edge", ", buffer: { max_bytes: 256MiB }");
    let topology::SinkKind::Kafka(k) = &sized.sinks[0].kind else {
        panic!()
    };
    assert_eq!(k.buffer, Some(256 << 20));
    let cluster = load("cluster: { source: k, changelog: cl }", "");
    assert_eq!(cluster.node.role, topology::NodeRole::Cluster);
    assert_eq!(names(&cluster), ["wear"]);
    let alone = load("name: solo", "");
    assert_eq!(alone.node.role, topology::NodeRole::Standalone);
    assert_eq!(names(&alone), ["trip", "wear"]);
    assert!(alone.rules_elsewhere.is_empty());
}

#[test]
fn every_class_of_error_is_one_exact_positioned_line() {
    check_cases(ERROR_CLASSES);
}

/// Errors about a whole mapping (a missing field, a simulator's assets, a
/// decode mapping's shape) point at the mapping. A flow mapping starts at its
/// `{`; a block mapping starts at its first key, and that is where the
/// position must be - not at the `:` after that key.
const BLOCK_MAPPING_POSITIONS: &[Case] = &[
    Case {
        name: "a simulator whose assets are not declared (block mapping)",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s, expected_every: 1s }
assets:
  - { id: pump-00000, type: pump }
sources:
  - name: sim
    type: simulator
    asset_type: pump
    count: 3
"#,
        want: &["t.yaml:8:5: source `sim`: simulated asset `pump-00002` matches no entry under `assets`"],
    },
    Case {
        name: "a decode mapping with both `sensor`/`value` and `values` (block mapping)",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode:
      asset: a
      ts: t
      sensor: s
      value: v
      values: { vibration: vib }
"#,
        want: &["t.yaml:10:7: source `in`.decode: use either `sensor` + `value` (one reading per record) or `values` (one field per sensor), not both"],
    },
    Case {
        name: "missing required fields (block mappings)",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration:
        range: [0, 1]
assets:
  - type: pump
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
sinks:
  - name: f
    type: file
    outputs: [alerts]
"#,
        want: &[
            "t.yaml:5:9: sensor `vibration`: missing required field `unit`",
            "t.yaml:7:5: asset: missing required field `id`",
            "t.yaml:13:5: sink `f`: a file sink needs `path`",
        ],
    },
];

#[test]
fn errors_about_a_block_mapping_point_at_its_first_key() {
    check_cases(BLOCK_MAPPING_POSITIONS);
}

#[test]
fn every_error_of_a_file_is_reported_at_once_in_file_order() {
    let yaml = r#"
version: 3
node:
  name: n1
  snapshot: { interval: 0s, max_evnts: 10 }
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s, range: [9, 1], expected_every: 5s, stale_after: 2s }
      temperature: { unit: degC, expected_every: soon }
    relations: { feeds: tnk }
assets:
  - { id: pump-*, type: pmp }
  - { id: pump-1, type: pump }
  - { id: pump-1, type: pump }
sources:
  - { name: in, type: file, pace: fastest, decode: { asset: a, sensor: s, ts: t, value: v } }
windows:
  - { name: w1s, size: 1s }
  - { name: w1s, size: 10 }
rules:
  - { name: hot, when: "temprature > 80" }
  - { name: odd, when: "vibration >> 1", severity: fatal }
sinks:
  - { name: out, type: stdout, outputs: [alerts, windws] }
"#;
    let want = [
        "t.yaml:1:10: topology.version: this build reads version 1, found 3",
        "t.yaml:4:25: node.snapshot.interval: must be greater than zero",
        "t.yaml:4:29: node.snapshot: unknown field `max_evnts` (did you mean `max_events`?)",
        "t.yaml:8:40: sensor `vibration`.range: lower bound 9 is above upper bound 1",
        "t.yaml:8:80: sensor `vibration`.stale_after: must be longer than expected_every (5s)",
        "t.yaml:9:50: sensor `temperature`.expected_every: expected a duration like `200ms`, `10s` or `5m`, found `soon` (expected number at 0)",
        "t.yaml:10:25: asset type `pump`.relations.feeds: unknown asset type `tnk`",
        "t.yaml:12:25: asset `pump-*`: unknown asset type `pmp` (did you mean `pump`?)",
        "t.yaml:14:11: duplicate asset id `pump-1` (first declared at line 13)",
        "t.yaml:16:35: source `in`.pace: expected `fast` or `recorded`, found `fastest`",
        "t.yaml:19:13: duplicate window name `w1s` (first declared at line 18)",
        "t.yaml:19:24: window `w1s`.size: expected a duration with a unit, like `10ms` or `10s`, found `10`",
        "t.yaml:21:25: rule `hot`.when: unknown name `temprature`: not a sensor, relation, window or join of asset type `pump` (did you mean `temperature`?)",
        "t.yaml:22:36: rule `odd`.when: expected a value, found `>`",
        "t.yaml:22:52: rule `odd`.severity: expected `info`, `warning` or `critical`, found `fatal`",
        "t.yaml:24:50: sink `out`.outputs: unknown output `windws`; expected `twin_updates`, `windows`, `alerts`, `dead_letters`, `late_events`, `joins`, `commands` or `events`",
    ];
    assert_eq!(diagnostics(yaml), want);
}

/// The checkout being tested (set by cargo at run time), see tests/common.
fn checkout() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
        .into()
}

#[test]
fn every_bundled_topology_is_valid() {
    let dir = checkout().join("topologies");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(d) = topology::parse(&path, &text) {
                panic!("{} has diagnostics:\n{d}", path.display());
            }
            checked.push(path.file_name().unwrap().to_string_lossy().to_string());
        }
    }
    checked.sort();
    for known in [
        "demo.yaml",
        "plant-line.yaml",
        "workload-v1.yaml",
        "workload-v1-semantics.yaml",
    ] {
        assert!(checked.iter().any(|c| c == known), "{known} not found in {checked:?}");
    }
}

/// The README's topology example (the YAML block of its "Topology" section)
/// is a valid topology.
#[test]
fn the_readme_topology_example_is_valid() {
    let readme = std::fs::read_to_string(checkout().join("README.md")).unwrap();
    let section = &readme[readme.find("\n## Topology").expect("a Topology section")..];
    let start = section.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    if let Err(d) = topology::parse(Path::new("README.md"), block) {
        panic!("the README example has diagnostics:\n{d}\n{block}");
    }
}

#[test]
fn twin_semantics_errors_are_positioned() {
    check_cases(SEMANTICS_ERRORS);
}

/// A topology of one pump read from a file, whose `node:` mapping holds
/// `node`.
fn with_node(node: &str) -> twinstream::topology::Topology {
    let text = format!(
        "node: {{ {node} }}\n\
         asset_types: {{ pump: {{ sensors: {{ t: {{ unit: C }} }} }} }}\n\
         assets: [{{ id: pump-1, type: pump }}]\n\
         sources: [{{ name: f, type: file, decode: {{ asset: a, sensor: s, ts: t, value: v }} }}]\n"
    );
    topology::parse(Path::new("t.yaml"), &text).unwrap_or_else(|d| panic!("{d}"))
}

/// `node.slo`: a bare duration is a p99 budget; a mapping sets budgets per
/// quantile; hops without one have none.
#[test]
fn latency_budgets_are_per_hop_and_quantile_with_p99_by_default() {
    use std::time::Duration;
    use twinstream::topology::{Hop, Quantile};
    let t = with_node("slo: { apply: 10ms, end_to_end: { p50: 500ms, p999: 2s } }");
    let got: Vec<(Hop, Quantile, Duration)> = t.node.slo.iter().map(|b| (b.hop, b.quantile, b.budget)).collect();
    assert_eq!(
        got,
        [
            (Hop::Apply, Quantile::P99, Duration::from_millis(10)),
            (Hop::EndToEnd, Quantile::P50, Duration::from_millis(500)),
            (Hop::EndToEnd, Quantile::P999, Duration::from_secs(2)),
        ]
    );
}

/// `node.snapshot.min_pause` is `auto` unless set; a duration is a fixed
/// pause, `0s` none.
#[test]
fn the_pause_between_checkpoints_is_auto_a_duration_or_none() {
    use std::time::Duration;
    use twinstream::topology::MinPause;
    let pause = |snapshot: &str| with_node(snapshot).node.snapshot.min_pause;
    assert_eq!(pause("name: n"), MinPause::Auto);
    assert_eq!(pause("snapshot: { min_pause: auto }"), MinPause::Auto);
    assert_eq!(
        pause("snapshot: { min_pause: 250ms }"),
        MinPause::Fixed(Duration::from_millis(250))
    );
    assert_eq!(pause("snapshot: { min_pause: 0s }"), MinPause::Fixed(Duration::ZERO));
    assert_eq!(
        MinPause::Fixed(Duration::ZERO).after(Duration::from_secs(3)),
        Duration::ZERO
    );
}

/// The hops the topology sets budgets on are the ones the metrics time.
#[test]
fn the_topology_names_the_hops_the_metrics_time() {
    let names: Vec<&str> = topology::Hop::ALL.iter().map(|h| h.name()).collect();
    assert_eq!(names, twinstream::telemetry::HOPS);
}
