//! Test topologies built from the parts the test files share: a node, an
//! asset model, sources and sinks, each written once here.
//!
//! ```ignore
//! let topo = Topo::new("mqtt-test")
//!     .model(PUMPS)
//!     .mqtt_source("plant", broker.port, "twinstream-test")
//!     .file_sink("updates", &dir.join("updates.jsonl"), "twin_updates")
//!     .write(&dir.join("mqtt.yaml"));
//! ```

use std::path::{Path, PathBuf};

/// Pumps with a temperature and a current, every `pump-*` asset, and 1 s
/// tumbling windows: the model most tests share.
pub const PUMPS: &str = r#"asset_types:
  pump:
    sensors: { temperature: { unit: degC }, current: { unit: A } }
assets: [{ id: "pump-*", type: pump }]
windows: [{ name: w1s, size: 1s }]
"#;

/// A topology under construction.
#[derive(Debug, Clone)]
pub struct Topo {
    /// Entries of the `node` mapping, in flow style (`name: x`).
    node: Vec<String>,
    /// Block YAML: asset types, assets, windows, joins, rules.
    model: String,
    /// Flow mappings, one per source.
    sources: Vec<String>,
    /// Flow mappings, one per sink.
    sinks: Vec<String>,
}

impl Topo {
    /// Node `name`, checkpointing every 50 ms (tests wait on durability).
    pub fn new(name: &str) -> Topo {
        Topo {
            node: vec![format!("name: {name}"), "snapshot: { interval: 50ms }".into()],
            model: String::new(),
            sources: Vec::new(),
            sinks: Vec::new(),
        }
    }

    /// Another entry of the `node` mapping, e.g. `http: { write_token_env: T }`.
    pub fn with(mut self, setting: &str) -> Topo {
        self.node.push(setting.to_string());
        self
    }

    /// Checkpoints every `interval` (e.g. `100ms`) instead of 50 ms.
    pub fn snapshot_every(mut self, interval: &str) -> Topo {
        self.node[1] = format!("snapshot: {{ interval: {interval} }}");
        self
    }

    /// The asset model (block YAML: `asset_types:`, `assets:`, ...).
    pub fn model(mut self, yaml: &str) -> Topo {
        self.model.push_str(yaml);
        if !self.model.ends_with('\n') {
            self.model.push('\n');
        }
        self
    }

    /// A source, as a YAML flow mapping.
    pub fn source(mut self, mapping: &str) -> Topo {
        self.sources.push(mapping.to_string());
        self
    }

    /// A JSON-lines file source `name` reading `path` with the usual mapping
    /// (`asset`, `sensor`, `ts`, `value`).
    pub fn file_source(self, name: &str, path: &Path) -> Topo {
        self.source(&format!(
            r#"{{ name: {name}, type: file, path: "{}", decode: {{ asset: asset, sensor: sensor, ts: ts, value: value }} }}"#,
            path.display()
        ))
    }

    /// An MQTT source on the local broker at `port`: QoS 1 readings on
    /// `plant/<asset>/<sensor>` with `{"ts": .., "value": ..}` payloads.
    pub fn mqtt_source(self, name: &str, port: u16, client_id: &str) -> Topo {
        self.mqtt_source_with(name, port, client_id, "")
    }

    /// [`Topo::mqtt_source`] with more entries (`extra`, e.g.
    /// `, username: u, password_env: P`).
    pub fn mqtt_source_with(self, name: &str, port: u16, client_id: &str, extra: &str) -> Topo {
        self.source(&format!(
            r#"{{ name: {name}, type: mqtt, port: {port}, client_id: {client_id}, topics: ["plant/+/+"], qos: 1, topic_fields: "plant/{{asset}}/{{sensor}}", decode: {{ ts: ts, value: value }}{extra} }}"#
        ))
    }

    /// A Kafka source `name` on `brokers` reading `topic`, records keyed by
    /// asset with `{"sensor": .., "ts": .., "value": ..}` values; `extra`
    /// adds entries (e.g. `, group: g`).
    pub fn kafka_source(self, name: &str, brokers: &str, topic: &str, extra: &str) -> Topo {
        self.source(&format!(
            r#"{{ name: {name}, type: kafka, brokers: "{brokers}", topics: [{topic}], decode: {{ sensor: sensor, ts: ts, value: value }}{extra} }}"#
        ))
    }

    /// A sink, as a YAML flow mapping.
    pub fn sink(mut self, mapping: &str) -> Topo {
        self.sinks.push(mapping.to_string());
        self
    }

    /// A JSON-lines file sink `name` writing `outputs` (e.g. `alerts` or
    /// `twin_updates, alerts`) to `path`.
    pub fn file_sink(self, name: &str, path: &Path, outputs: &str) -> Topo {
        self.sink(&format!(
            r#"{{ name: {name}, type: file, path: "{}", outputs: [{outputs}] }}"#,
            path.display()
        ))
    }

    /// The topology's YAML.
    pub fn yaml(&self) -> String {
        let mut y = format!("version: 1\nnode: {{ {} }}\n{}", self.node.join(", "), self.model);
        for (key, items) in [("sources", &self.sources), ("sinks", &self.sinks)] {
            if !items.is_empty() {
                y.push_str(key);
                y.push_str(":\n");
                for i in items {
                    y.push_str("  - ");
                    y.push_str(i);
                    y.push('\n');
                }
            }
        }
        y
    }

    /// Writes the topology to `path` and returns it.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.yaml()).unwrap();
        path.to_path_buf()
    }
}
