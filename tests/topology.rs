//! Topology validation through the library: every class of error is reported
//! as one exact `file:line:col: message` line, and every error of a file is
//! reported at once, in file order.
//!
//! Each YAML text below starts on line 1 (the newline after `r#"` is dropped),
//! and every expected line/column was counted by hand on that text (1-based;
//! inside quoted expressions, the column of the offending character).

use std::path::Path;

use twinstream::topology;

/// The diagnostics of `yaml` (named `t.yaml`) as printed lines; panics when
/// the text is valid.
fn diagnostics(yaml: &str) -> Vec<String> {
    let text = yaml.strip_prefix('\n').unwrap_or(yaml);
    match topology::parse(Path::new("t.yaml"), text) {
        Ok(_) => panic!("expected diagnostics, the topology is valid:\n{text}"),
        Err(d) => d.to_string().lines().map(str::to_string).collect(),
    }
}

struct Case {
    name: &'static str,
    yaml: &'static str,
    want: &'static [&'static str],
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

const ERROR_CLASSES: &[Case] = &[
    Case {
        name: "unknown field with a did-you-mean hint",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s, expected_evry: 1s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
"#,
        want: &["t.yaml:4:32: sensor `vibration`: unknown field `expected_evry` (did you mean `expected_every`?)"],
    },
    Case {
        name: "unknown top-level field with a hint",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
window:
  - name: w1s
    size: 1s
"#,
        want: &["t.yaml:10:1: topology: unknown field `window` (did you mean `windows`?)"],
    },
    Case {
        name: "unknown field without a hint lists the known fields",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
windows:
  - name: w1s
    size: 1s
    colour: red
"#,
        want: &["t.yaml:13:5: window: unknown field `colour`; expected one of `name`, `type`, `size`, `slide`, `sensors` or `asset_types`"],
    },
    Case {
        name: "a mapping where a scalar is expected",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration:
        unit: { si: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
"#,
        want: &["t.yaml:5:15: sensor `vibration`.unit: expected a scalar, found a mapping"],
    },
    Case {
        name: "a list where a mapping is expected",
        yaml: r#"
node: [demo, state]
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: [asset, sensor, ts, value]
"#,
        want: &[
            "t.yaml:1:7: node: expected a mapping, found a list",
            "t.yaml:10:13: source `in`.decode: expected a mapping, found a list",
        ],
    },
    Case {
        name: "bad durations: a word, and a number without unit",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s, expected_every: fast }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
windows:
  - name: w1s
    size: 200
"#,
        want: &[
            "t.yaml:4:48: sensor `vibration`.expected_every: expected a duration like `200ms`, `10s` or `5m`, found `fast` (expected number at 0)",
            "t.yaml:12:11: window `w1s`.size: expected a duration with a unit, like `200ms` or `200s`, found `200`",
        ],
    },
    Case {
        name: "duplicate asset ids, source, window, rule and sink names",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets:
  - { id: pump-1, type: pump }
  - { id: pump-1, type: pump }
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
windows:
  - { name: w1s, size: 1s }
  - { name: w1s, size: 2s }
rules:
  - { name: shaky, when: "vibration > 7" }
  - { name: shaky, when: "vibration > 9" }
sinks:
  - { name: out, type: stdout, outputs: [alerts] }
  - { name: out, type: stdout, outputs: [windows] }
"#,
        want: &[
            "t.yaml:7:11: duplicate asset id `pump-1` (first declared at line 6)",
            "t.yaml:12:11: duplicate source name `in` (first declared at line 9)",
            "t.yaml:17:13: duplicate window name `w1s` (first declared at line 16)",
            "t.yaml:20:13: duplicate rule name `shaky` (first declared at line 19)",
            "t.yaml:23:13: duplicate sink name `out` (first declared at line 22)",
        ],
    },
    Case {
        name: "duplicate names in the mapping form of a collection are duplicate YAML keys",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
windows:
  w1s: { size: 1s }
  w1s: { size: 2s }
"#,
        want: &["t.yaml:12:3: duplicate key `w1s` (first at line 11)"],
    },
    Case {
        name: "bad names in every named section, each in its own words (sinks take any name)",
        yaml: r#"
asset_types:
  pump:
    sensors: { vibration: { unit: mm/s }, 2nd: { unit: A } }
    relations: { feeds-to: pump }
    commands: { "go!": { reported: vibration } }
  "t@nk":
    sensors: { level: { unit: m } }
assets: [{ id: pump 1, type: pump }, { id: "pump-*", type: pump }]
sources: [{ name: in put, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
windows: { w-1: { size: 1s } }
joins: [{ name: j-1, left: vibration, right: 2nd, within: 1s }]
rules:
  - { name: r 1, when: "vibration > 1", asset_types: [pump], command: { name: go slow, value: 1 } }
sinks: { any name: { type: stdout, outputs: [alerts] } }
"#,
        want: &[
            "t.yaml:3:43: asset type `pump`: sensor name `2nd` must be an identifier (letters, digits, `_`)",
            "t.yaml:4:18: asset type `pump`.relations: relation name `feeds-to` must be an identifier (letters, digits, `_`)",
            "t.yaml:5:17: asset type `pump`: command name `go!` must be an identifier (letters, digits, `_`)",
            "t.yaml:6:3: asset type name `t@nk`: use letters, digits, `-`, `_` or `.`",
            "t.yaml:8:16: asset id `pump 1`: use letters, digits and `-_.:/` (and `*`, `?` in patterns)",
            "t.yaml:9:19: source `in put`: use letters, digits, `-`, `_` or `.` in source names",
            "t.yaml:10:12: window `w-1`: name must be an identifier (letters, digits, `_`)",
            "t.yaml:11:17: join `j-1`: name must be an identifier (letters, digits, `_`)",
            "t.yaml:13:13: rule `r 1`: use letters, digits, `-`, `_` or `.` in rule names",
            "t.yaml:13:79: rule `r 1`.command.name: use letters, digits, `-`, `_` or `.`",
        ],
    },
    Case {
        name: "a duplicate repeats a kept item (an asset counts even with an unknown type); a name's problems in order",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s, sources: [in, in] }
      current: { unit: A }
assets:
  - { id: pump-1, type: pumpp }
  - { id: pump-1, type: pump }
sources:
  - { name: in, type: kafka }
  - { name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }
windows:
  - { name: w }
  - { name: w, size: 1s }
joins:
  - { name: j, left: vibration, right: current, within: 1s }
  - { name: j, left: vibration, right: current, within: 2s }
rules:
  - { name: "stale: x", when: "vibration > 1" }
  - { name: "stale: x", when: "vibration > 2" }
"#,
        want: &[
            "t.yaml:4:46: sensor `vibration`.sources: source `in` listed twice",
            "t.yaml:7:25: asset `pump-1`: unknown asset type `pumpp` (did you mean `pump`?)",
            "t.yaml:8:11: duplicate asset id `pump-1` (first declared at line 7)",
            "t.yaml:10:5: source `in`: missing required field `decode`",
            "t.yaml:13:5: window `w`: missing required field `size`",
            "t.yaml:17:13: duplicate join name `j` (first declared at line 16)",
            "t.yaml:19:13: rule `stale: x`: use letters, digits, `-`, `_` or `.` in rule names",
            "t.yaml:19:13: rule `stale: x`: `offline`, `stale:*` and `discrepancy:*` name the built-in alerts; choose another name",
            "t.yaml:20:13: rule `stale: x`: use letters, digits, `-`, `_` or `.` in rule names",
            "t.yaml:20:13: rule `stale: x`: `offline`, `stale:*` and `discrepancy:*` name the built-in alerts; choose another name",
            "t.yaml:20:13: duplicate rule name `stale: x` (first declared at line 19)",
        ],
    },
    Case {
        name: "a duplicate YAML key",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
      vibration: { unit: g }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
"#,
        want: &["t.yaml:5:7: duplicate key `vibration` (first at line 4)"],
    },
    Case {
        name: "a rule's `for` and `clear_when` are checked like `when`",
        yaml: r#"
asset_types:
  pump:
    sensors:
      temperature: { unit: degC }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
rules:
  - { name: hot, when: "temperature > 90", for: soon, clear_when: "temprature < 80" }
  - { name: warm, when: "temperature > 70", for: 30s, clear_when: "temperature <" }
"#,
        want: &[
            "t.yaml:11:49: rule `hot`.for: expected a duration like `200ms`, `10s` or `5m`, found `soon` (expected number at 0)",
            "t.yaml:11:68: rule `hot`.clear_when: unknown name `temprature`: not a sensor, relation, window or join of asset type `pump` (did you mean `temperature`?)",
            "t.yaml:12:81: rule `warm`.clear_when: expected a value, found the end of the expression",
        ],
    },
    Case {
        name: "a contract field needs a valid path and the contract it checks",
        yaml: r#"
asset_types:
  pump:
    sensors:
      temperature: { unit: degC }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v, contract_field: meta..c }
  - name: in2
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v, contract_field: meta.c }
"#,
        want: &[
            "t.yaml:9:69: source `in`.decode.contract_field: `meta..c` is not a field path; expected names separated by dots, like `payload.temp`",
            "t.yaml:12:69: source `in2`.decode.contract_field: give `contract` too: the contract records must state",
        ],
    },
    Case {
        name: "a duplicate YAML key does not hide the file's other errors",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
      vibration: { unit: g }
assets: [{ id: pump-1, type: pmp }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
"#,
        want: &[
            "t.yaml:5:7: duplicate key `vibration` (first at line 4)",
            "t.yaml:6:30: asset `pump-1`: unknown asset type `pmp` (did you mean `pump`?)",
        ],
    },
    Case {
        name: "rules naming an unknown sensor, an unknown window, an unknown aggregate",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
      temperature: { unit: degC }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
windows:
  - { name: w1s, size: 1s }
rules:
  - name: hot
    when: "temprature > 80"
  - name: shaky
    when: w5s.vibration.avg > 7
  - name: spiky
    when: "vibration > 1 and w1s.vibration.mean > 7"
  - name: noisy
    when: "w1s.vibratoin.max > 7"
"#,
        want: &[
            "t.yaml:15:12: rule `hot`.when: unknown name `temprature`: not a sensor, relation, window or join of asset type `pump` (did you mean `temperature`?)",
            "t.yaml:17:11: rule `shaky`.when: unknown name `w5s`: not a sensor, relation, window or join of asset type `pump` (did you mean `w1s`?)",
            // Points at the start of the name `w1s.vibration.mean`.
            "t.yaml:19:44: rule `spiky`.when: unknown aggregate `mean`; expected `count`, `sum`, `min`, `max`, `avg`, `last` or `stddev`",
            "t.yaml:21:16: rule `noisy`.when: unknown sensor `vibratoin` for asset type `pump` (did you mean `vibration`?)",
        ],
    },
    Case {
        name: "expressions that do not parse point at the character",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
      temperature: { unit: degC }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
rules:
  - name: quoted
    when: "temperature > > 80"
  - name: unquoted
    when: temperature = 80
  - name: single-quoted
    when: 'vibration > 1 and (temperature < 3'
  - name: trailing
    when: "vibration > 1 2"
"#,
        want: &[
            // The second `>`.
            "t.yaml:13:26: rule `quoted`.when: expected a value, found `>`",
            // The `=`.
            "t.yaml:15:23: rule `unquoted`.when: `=` is not an operator; use `==` to compare",
            // Just past the expression: its closing quote.
            "t.yaml:17:46: rule `single-quoted`.when: expected `)`, found the end of the expression",
            // The `2`.
            "t.yaml:19:26: rule `trailing`.when: unexpected number `2` after the end of the expression",
        ],
    },
    Case {
        name: "assets: an unknown type, a relation to an unknown asset and of the wrong type",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
    relations:
      feeds: tank
  tank:
    sensors:
      level: { unit: "%" }
assets:
  - { id: tank-1, type: tank }
  - { id: mixer-1, type: mixr }
  - id: pump-1
    type: pump
    relations: { feeds: tank-9 }
  - id: pump-2
    type: pump
    relations: { feeds: pump-1 }
  - id: pump-3
    type: pump
    relations: { drains: tank-1 }
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
"#,
        want: &[
            "t.yaml:12:26: asset `mixer-1`: unknown asset type `mixr`",
            "t.yaml:15:25: asset `pump-1`.relations.feeds: unknown asset `tank-9`",
            "t.yaml:18:25: asset `pump-2`.relations.feeds: `pump-1` is a `pump`, but `feeds` relates to a `tank`",
            "t.yaml:21:18: asset `pump-3`.relations: asset type `pump` declares no relation `drains`",
        ],
    },
    Case {
        name: "a relation of an asset type to an unknown type",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
    relations: { feeds: tanks }
  tank:
    sensors:
      level: { unit: "%" }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
"#,
        want: &["t.yaml:5:25: asset type `pump`.relations.feeds: unknown asset type `tanks` (did you mean `tank`?)"],
    },
    Case {
        name: "a simulator whose assets are not declared (flow mapping: points at `{`)",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s, expected_every: 1s }
  tank:
    sensors:
      level: { unit: "%", expected_every: 1s }
assets:
  - { id: pump-00000, type: pump }
  - { id: pump-00001, type: tank }
sources:
  - { name: sim, type: simulator, asset_type: pump, count: 3 }
  - { name: sim2, type: simulator, asset_type: pump, count: 2 }
"#,
        want: &[
            "t.yaml:12:5: source `sim`: simulated asset `pump-00002` matches no entry under `assets`",
            "t.yaml:13:5: source `sim2`: simulated asset `pump-00001` is declared as a `tank`, not a `pump`",
        ],
    },
    Case {
        name: "a decode mapping with both `sensor`/`value` and `values` (flow mapping)",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, ts: t, sensor: s, value: v, values: { vibration: vib } }
"#,
        want: &["t.yaml:9:13: source `in`.decode: use either `sensor` + `value` (one reading per record) or `values` (one field per sensor), not both"],
    },
    Case {
        name: "a sink `outputs` typo",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
sinks:
  - name: out
    type: stdout
    outputs: [alerts, alert]
"#,
        want: &["t.yaml:13:23: sink `out`.outputs: unknown output `alert`; expected `twin_updates`, `windows`, `alerts`, `dead_letters`, `late_events`, `joins`, `commands` or `events`"],
    },
    Case {
        name: "range with min > max, stale_after <= expected_every",
        yaml: r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s, range: [20, 0] }
      temperature: { unit: degC, expected_every: 10s, stale_after: 10s }
      pressure: { unit: bar, expected_every: 10s, stale_after: 5s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
"#,
        want: &[
            "t.yaml:4:40: sensor `vibration`.range: lower bound 20 is above upper bound 0",
            "t.yaml:5:68: sensor `temperature`.stale_after: must be longer than expected_every (10s)",
            "t.yaml:6:64: sensor `pressure`.stale_after: must be longer than expected_every (10s)",
        ],
    },
    Case {
        name: "version 2",
        yaml: r#"
version: 2
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
"#,
        want: &["t.yaml:1:10: topology.version: this build reads version 1, found 2"],
    },
    Case {
        name: "a cluster sharded by a source that is not Kafka",
        yaml: r#"
node: { cluster: { source: in, changelog: cl } }
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
"#,
        want: &["t.yaml:1:28: node.cluster.source: `in` is not a Kafka source; a cluster shards the partitions of a Kafka topic"],
    },
    Case {
        name: "a cluster source keyed by value, without a group, next to another source",
        yaml: r#"
node: { cluster: { source: k, changelog: cl } }
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: k
    type: kafka
    brokers: "127.0.0.1:9092"
    topics: [t]
    decode: { asset: a, sensor: s, ts: t, value: v }
  - name: f
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
"#,
        want: &[
            "t.yaml:8:11: source `k`: a cluster source takes the asset id from the record key (its partition); remove `asset` from its decode mapping",
            "t.yaml:8:11: source `k`: a cluster source needs `group_id`, the same on every node of the cluster",
            "t.yaml:13:11: source `f`: a cluster node reads only its cluster source `k` (MQTT devices reach a cluster through an edge node)",
        ],
    },
    Case {
        name: "an edge without an uplink, a buffer too small, a role that needs a cluster",
        yaml: r#"
node: { role: edge }
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: f
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
sinks:
  - name: up
    type: kafka
    brokers: "127.0.0.1:9092"
    topic: telemetry
    buffer: { max_bytes: 1kB }
    outputs: [alerts]
  - name: out
    type: file
    path: out.jsonl
    buffer: { max_bytes: 1GiB }
    outputs: [events]
"#,
        want: &[
            "t.yaml:12:11: node.role edge: an edge forwards every event to the cluster; add a Kafka sink with `outputs: [events]` and the cluster's ingest topic",
            "t.yaml:16:26: sink `up`.buffer.max_bytes: at least 64KiB",
            "t.yaml:21:13: sink `out`: field `buffer` does not apply to a `file` sink",
        ],
    },
    Case {
        name: "roles that contradict `node.cluster`",
        yaml: r#"
node: { role: cluster }
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: f
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
sinks:
  - name: up
    type: kafka
    brokers: "127.0.0.1:9092"
    topic: telemetry
    buffer: { max_bytes: lots }
    outputs: [events]
"#,
        want: &[
            "t.yaml:1:15: node.role: a cluster node needs `node.cluster` (its source, changelog and session timeout)",
            "t.yaml:16:26: sink `up`.buffer.max_bytes: expected a size like `256MiB`, `1GiB` or a number of bytes, found `lots`",
        ],
    },
];

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

const SEMANTICS_ERRORS: &[Case] = &[
    Case {
        name: "sources, resolve and tolerances of a sensor",
        yaml: r#"
asset_types:
  pump:
    sensors:
      pressure:
        unit: bar
        sources: { plc: { trust: 1.5 }, scadda: {} }
        resolve: majority
        clear_tolerance: 2
      flow: { unit: m3/h, resolve: median, tolerance: 1 }
assets: [{ id: pump-1, type: pump }]
sources:
  - { name: plc, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }
  - { name: scada, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }
"#,
        want: &[
            "t.yaml:6:34: sensor `pressure`.sources.plc.trust: must be between 0 and 1",
            "t.yaml:6:41: sensor `pressure`.sources: unknown source `scadda` (did you mean `scada`?)",
            "t.yaml:7:18: sensor `pressure`.resolve: expected `latest`, `priority`, `confidence` or `median`, found `majority`",
            "t.yaml:8:26: sensor `pressure`.clear_tolerance: needs `tolerance`",
            "t.yaml:9:36: sensor `flow`.resolve: a policy needs at least two `sources` to choose between",
            "t.yaml:9:55: sensor `flow`.tolerance: only a sensor with two or more `sources` can disagree",
        ],
    },
    Case {
        name: "joins: unknown sides and relations",
        yaml: r#"
asset_types:
  pump:
    sensors: { temperature: { unit: degC }, current: { unit: A } }
    relations: { feeds: tank }
  tank:
    sensors: { level: { unit: m } }
assets: [{ id: pump-1, type: pump }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
joins:
  - { name: a, left: temperature, right: curent, within: 10s, asset_types: [pump] }
  - { name: b, left: temperature, right: fills.level, within: 10s, asset_types: [pump] }
  - { name: c, left: temperature, right: feeds.levl, within: 0s, asset_types: [pump] }
  - { name: d, left: tmperature, right: current, within: 1s }
"#,
        want: &[
            "t.yaml:10:42: join `a`.right: unknown sensor `curent` for asset type `pump` (did you mean `current`?)",
            "t.yaml:11:42: join `b`.right: asset type `pump` has no relation `fills`",
            "t.yaml:12:42: join `c`.right: unknown sensor `levl` of asset type `tank` (did you mean `level`?)",
            "t.yaml:12:62: join `c`.within: must be greater than zero",
            "t.yaml:13:22: join `d`.left: no asset type has a sensor `tmperature`",
        ],
    },
    Case {
        name: "rule names: staleness, relations, joins, reserved names",
        yaml: r#"
asset_types:
  pump:
    sensors: { temperature: { unit: degC }, current: { unit: A, stale_after: 5s } }
    relations: { feeds: tank }
    watermark: { idle_timeout: 0s }
  tank:
    sensors: { level: { unit: m } }
assets: [{ id: pump-1, type: pump }]
sources: [{ name: in, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
joins: [{ name: load, left: temperature, right: current, within: 10s }]
rules:
  - { name: offline, when: "temperature.stale > 0", asset_types: [pump] }
  - { name: r2, when: "current.stale > 0 and feeds.levl < 1", asset_types: [pump] }
  - { name: r3, when: "load.voltage > 1 and w.x.p99 > 1", asset_types: [pump] }
"#,
        want: &[
            "t.yaml:5:32: asset type `pump`.watermark.idle_timeout: must be at least 1ms",
            "t.yaml:12:13: rule `offline`: `offline`, `stale:*` and `discrepancy:*` name the built-in alerts; choose another name",
            "t.yaml:12:41: rule `offline`.when: sensor `temperature` declares no `stale_after`, so it is never stale",
            "t.yaml:13:52: rule `r2`.when: unknown sensor `levl` of related asset type `tank` (did you mean `level`?)",
            "t.yaml:14:29: rule `r3`.when: join `load` pairs `temperature` with `current`: write `load.temperature` or `load.current`",
            "t.yaml:14:45: rule `r3`.when: unknown name `w`: not a sensor, relation, window or join of asset type `pump`",
        ],
    },
    Case {
        name: "a simulator of a sensor that does not list it as a source",
        yaml: r#"
asset_types:
  pump:
    sensors:
      pressure: { unit: bar, expected_every: 1s, sources: [plc, scada] }
assets: [{ id: "pump-*", type: pump }]
sources:
  - { name: plc, type: simulator, asset_type: pump, count: 2, digits: 1 }
  - { name: scada, type: simulator, asset_type: pump, count: 2, digits: 1, sensors: [pressure] }
  - { name: lab, type: simulator, asset_type: pump, count: 2, digits: 1 }
"#,
        want: &[
            "t.yaml:9:13: source `lab` simulates sensor `pressure`, whose `sources` do not list it; add it there or leave the sensor out with `sensors:`",
        ],
    },
    Case {
        name: "an MQTT source: filters, qos, topic fields, port",
        yaml: r#"
asset_types:
  pump:
    sensors: { temperature: { unit: degC } }
assets: [{ id: "pump-*", type: pump }]
sources:
  - name: plant
    type: mqtt
    port: 70000
    topics: ["plant/#/x", "plant/a+"]
    qos: 2
    topic_fields: "plant/{asset}/{rpm}"
    decode: { ts: ts, value: value }
"#,
        want: &[
            "t.yaml:8:11: source `plant`.port: must be between 1 and 65535",
            "t.yaml:9:14: source `plant`.topics: `plant/#/x` is not a topic filter (`+` is one whole level, `#` only the last)",
            "t.yaml:9:27: source `plant`.topics: `plant/a+` is not a topic filter (`+` is one whole level, `#` only the last)",
            "t.yaml:10:10: source `plant`.qos: 0 or 1",
            "t.yaml:11:19: source `plant`.topic_fields: `{rpm}`: a topic level can name `{asset}` or `{sensor}`",
            // Without valid topic fields, the mapping has no asset or sensor.
            "t.yaml:12:13: source `plant`.decode: missing required field `asset`",
            "t.yaml:12:13: source `plant`.decode: name the reading: `sensor` + `value` (one reading per record) or `values` (one field per sensor)",
        ],
    },
    Case {
        name: "an MQTT password written in the topology",
        yaml: r#"
asset_types:
  pump:
    sensors: { temperature: { unit: degC } }
assets: [{ id: "pump-*", type: pump }]
sources:
  - name: plant
    type: mqtt
    topics: ["plant/+/+"]
    password: hunter2
    topic_fields: "plant/{asset}/{sensor}"
    decode: { ts: ts, value: value }
"#,
        want: &["t.yaml:9:15: source `plant`.password: never write a password in the topology; use `password_env` (an environment variable) or `password_file`"],
    },
    Case {
        name: "an MQTT sink: topic template, qos, queue, fields of other sink types",
        yaml: r#"
asset_types:
  pump:
    sensors: { temperature: { unit: degC } }
assets: [{ id: "pump-*", type: pump }]
sources: [{ name: sim, type: simulator, asset_type: pump, count: 2, digits: 1, every: 1s }]
sinks:
  - { name: a, type: mqtt, topic: "plant/{asset}/{sensor}", qos: 2, queue: 0, outputs: [commands] }
  - { name: b, type: mqtt, outputs: [alerts], password: x }
  - { name: c, type: file, path: out.jsonl, topic: x, outputs: [alerts] }
  - { name: d, type: mqtt, topic: "plant/+/x", path: p, outputs: [alerts] }
  - { name: e, type: mqtt, topic: "x", when_full: drop_oldest, outputs: [alerts] }
"#,
        want: &[
            "t.yaml:7:35: sink `a`.topic: `{sensor}`: a topic can name `{asset}`, `{asset_type}`, `{kind}`, `{name}`",
            "t.yaml:7:66: sink `a`.qos: 0 or 1",
            "t.yaml:7:76: sink `a`.queue: at least 1 message",
            "t.yaml:8:5: sink `b`: missing required field `topic`",
            "t.yaml:8:57: sink `b`.password: never write a password in the topology; use `password_env` (an environment variable) or `password_file`",
            "t.yaml:9:52: sink `c`: field `topic` does not apply to a `file` sink",
            "t.yaml:10:54: sink `d`.path: only file sinks have a path",
            "t.yaml:11:51: sink `e`.when_full: `drop_oldest` loses messages; only a `qos: 0` sink may drop",
        ],
    },
    Case {
        name: "a Kafka source: brokers, topics, secrets and settings twinstream owns",
        yaml: r#"
asset_types:
  pump:
    sensors: { temperature: { unit: degC } }
assets: [{ id: "pump-*", type: pump }]
sources:
  - name: fleet
    type: kafka
    properties: { sasl.password: hunter2, enable.auto.commit: "true", linger.ms: 5 }
    decode: { ts: ts, value: value }
"#,
        want: &[
            "t.yaml:6:5: source `fleet`: missing required field `brokers`",
            "t.yaml:6:5: source `fleet`: list the topics to consume in `topics`",
            "t.yaml:8:19: source `fleet`.properties.sasl.password: never write a secret in the topology; name an environment variable under `properties_env`",
            "t.yaml:8:43: source `fleet`.properties.enable.auto.commit: set by twinstream (offsets live in its snapshots)",
        ],
    },
    Case {
        name: "a Kafka sink: topic per asset, characters Kafka refuses, settings twinstream owns, MQTT fields",
        yaml: r#"
asset_types:
  pump:
    sensors: { temperature: { unit: degC } }
assets: [{ id: "pump-*", type: pump }]
sources: [{ name: sim, type: simulator, asset_type: pump, count: 2, digits: 1, every: 1s }]
sinks:
  - { name: a, type: kafka, brokers: "k:9092", topic: "twins.{asset}", outputs: [alerts] }
  - { name: b, type: kafka, brokers: "k:9092", topic: "twins/{kind}", outputs: [alerts] }
  - { name: c, type: kafka, brokers: "k:9092", topic: t, properties: { enable.idempotence: "false" }, outputs: [alerts] }
  - { name: d, type: kafka, topic: t, qos: 1, outputs: [alerts] }
"#,
        want: &[
            "t.yaml:7:55: sink `a`.topic: a topic per asset does not scale; the asset id is the record key (use `{kind}`, `{asset_type}` or `{name}`)",
            "t.yaml:8:55: sink `b`.topic: `/` cannot be in a Kafka topic (letters, digits, `.`, `_`, `-`)",
            "t.yaml:9:72: sink `c`.properties.enable.idempotence: set by twinstream (its idempotent producer keeps each asset's order)",
            "t.yaml:10:5: sink `d`: missing required field `brokers`",
            "t.yaml:10:44: sink `d`: field `qos` does not apply to a `kafka` sink",
        ],
    },
    Case {
        name: "two MQTT clients with one id on one broker",
        yaml: r#"
asset_types:
  pump:
    sensors: { temperature: { unit: degC } }
assets: [{ id: "pump-*", type: pump }]
sources:
  - { name: plant, type: mqtt, client_id: tw, topics: ["p/+/+"], topic_fields: "p/{asset}/{sensor}", decode: { ts: ts, value: value } }
sinks:
  - { name: cmd, type: mqtt, client_id: tw, topic: "p/{asset}/cmd", outputs: [commands] }
  - { name: other-broker, type: mqtt, port: 1884, client_id: tw, topic: "p/{asset}/cmd", outputs: [commands] }
"#,
        want: &["t.yaml:8:13: MQTT client id `tw` is already used at line 6 for the same broker; the broker would disconnect one for the other - give each `client_id` its own value"],
    },
    Case {
        name: "a rule's command",
        yaml: r#"
asset_types:
  pump:
    sensors: { temperature: { unit: degC } }
assets: [{ id: "pump-*", type: pump }]
sources: [{ name: sim, type: simulator, asset_type: pump, count: 2, digits: 1, every: 1s }]
rules:
  - { name: hot, when: "temperature > 90", command: { name: "cool down", value: 1, on_clear: off } }
  - { name: hotter, when: "temperature > 95", command: { value: 1, speed: 2 } }
"#,
        want: &[
            "t.yaml:7:61: rule `hot`.command.name: use letters, digits, `-`, `_` or `.`",
            "t.yaml:7:94: rule `hot`.command.on_clear: expected a number, found `off`",
            "t.yaml:8:56: rule `hotter`.command: missing required field `name`",
            "t.yaml:8:68: rule `hotter`.command: unknown field `speed`; expected one of `name`, `value` or `on_clear`",
        ],
    },
];

#[test]
fn twin_semantics_errors_are_positioned() {
    check_cases(SEMANTICS_ERRORS);
}
