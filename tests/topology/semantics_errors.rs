//! The errors of the twin semantics' settings (sources and their
//! resolution, staleness, deadband, windows, joins, rules and their
//! commands), each at its position.

use super::Case;

pub const SEMANTICS_ERRORS: &[Case] = &[
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
        name: "an MQTT source's acks: ack_after and ack_interval (`b` and `d` are fine)",
        yaml: r#"
asset_types:
  pump:
    sensors: { temperature: { unit: degC } }
assets: [{ id: "pump-*", type: pump }]
sources:
  - { name: a, type: mqtt, topics: [a/+/+], topic_fields: "a/{asset}/{sensor}", decode: { ts: ts, value: value }, ack_after: disk }
  - { name: b, type: mqtt, topics: [b/+/+], topic_fields: "b/{asset}/{sensor}", decode: { ts: ts, value: value }, ack_interval: 50ms }
  - { name: c, type: mqtt, topics: [c/+/+], topic_fields: "c/{asset}/{sensor}", decode: { ts: ts, value: value }, ack_after: checkpoint, ack_interval: 0s }
  - { name: d, type: mqtt, topics: [d/+/+], topic_fields: "d/{asset}/{sensor}", decode: { ts: ts, value: value }, ack_after: checkpoint, ack_interval: 50ms }
"#,
        want: &[
            "t.yaml:6:126: source `a`.ack_after: expected `inbox` or `checkpoint`, found `disk`",
            "t.yaml:8:152: source `c`.ack_interval: must be greater than zero",
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
