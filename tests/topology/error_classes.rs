//! One case per class of error a topology can have: each is one exact
//! `file:line:col: message` line.

use super::Case;

pub const ERROR_CLASSES: &[Case] = &[
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
    Case {
        name: "a time tolerance that is not a duration, too small, or of an unknown direction",
        yaml: r#"
node: { time_tolerance: { future: soon, past: 10ms, ahead: 1h } }
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: f
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
"#,
        want: &[
            "t.yaml:1:35: node.time_tolerance.future: expected a duration like `1h` or `7d`, or `off`, found `soon`",
            "t.yaml:1:47: node.time_tolerance.past: at least 1s (or `off`): clocks are never that close",
            "t.yaml:1:53: node.time_tolerance: unknown field `ahead`; expected one of `future` or `past`",
        ],
    },
    Case {
        name: "an API priority that is not one of the three",
        yaml: r#"
node: { http: { listen: "127.0.0.1:0", priority: urgent } }
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: f
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
"#,
        want: &["t.yaml:1:50: node.http.priority: expected `realtime`, `high` or `normal`, found `urgent`"],
    },
    Case {
        name: "a pause between checkpoints that is neither `auto` nor a duration",
        yaml: r#"
node: { snapshot: { min_pause: soon } }
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: f
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
"#,
        want: &["t.yaml:1:32: node.snapshot.min_pause: `auto` or a duration like `200ms`, `10s` or `5m`, found `soon` (expected number at 0)"],
    },
    Case {
        name: "a damaged twin rebuilt from a changelog a standalone node does not have",
        yaml: r#"
node: { damaged_twin: changelog }
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: f
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
"#,
        want: &[
            "t.yaml:1:23: node.damaged_twin: `changelog` needs a cluster node (`node.cluster`); a standalone or edge node has no changelog: use `empty` or `stop`",
        ],
    },
    Case {
        name: "latency budgets: an unknown hop or quantile, a zero or malformed budget",
        yaml: r#"
node:
  slo:
    aply: 10ms
    apply: { p95: 10ms }
    durable: 0s
    end_to_end: { p99: soon }
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
assets: [{ id: pump-1, type: pump }]
sources:
  - name: f
    type: file
    decode: { asset: a, sensor: s, ts: t, value: v }
"#,
        want: &[
            "t.yaml:3:5: node.slo: unknown field `aply` (did you mean `apply`?)",
            "t.yaml:4:14: node.slo.apply: unknown field `p95` (did you mean `p99`?)",
            "t.yaml:5:14: node.slo.durable: a budget must be greater than zero",
            "t.yaml:6:24: node.slo.end_to_end.p99: expected a duration like `200ms`, `10s` or `5m`, found `soon` (expected number at 0)",
        ],
    },
];
