//! `sinks:`: stdout, file, MQTT and Kafka sinks (their broker settings are
//! read in `connections.rs`) and the outputs each takes.

use std::path::PathBuf;

use marked_yaml::Node;

use super::names::Naming;
use super::Cx;
use crate::topology::diag::one_of;
use crate::topology::spec::*;
use crate::topology::yaml::pos;

/// Sink names: any, one per sink.
const SINK: Naming = Naming {
    duplicate: |_, name, line| format!("duplicate sink name `{name}` (first declared at line {line})"),
    ..Naming::ANY
};

impl<'t> Cx<'t> {
    pub(super) fn sinks(&mut self, node: &Node) -> Vec<SinkSpec> {
        let mut out: Vec<SinkSpec> = Vec::new();
        for entry in self.named_entries(node, "sinks") {
            const FIELDS: &[&str] = &[
                "name",
                "type",
                "path",
                "outputs",
                "host",
                "port",
                "client_id",
                "keep_alive",
                "username",
                "password",
                "password_env",
                "password_file",
                "tls",
                "topic",
                "qos",
                "retain",
                "queue",
                "when_full",
                "brokers",
                "properties",
                "properties_env",
                "buffer",
            ];
            let Some((name, f)) = self.named_item(entry, "sink", FIELDS, &SINK, &out) else {
                continue;
            };
            let what = f.what().to_string();
            let kind = f.choice("type", &["stdout", "file", "mqtt", "kafka"], true, &mut self.diags);
            if let Some(k) = &kind {
                let allowed: &[&str] = match k.value.as_str() {
                    "file" => &["name", "type", "outputs", "path"],
                    "stdout" => &["name", "type", "outputs"],
                    "kafka" => &[
                        "name",
                        "type",
                        "outputs",
                        "brokers",
                        "topic",
                        "queue",
                        "properties",
                        "properties_env",
                        "buffer",
                    ],
                    _ => &FIELDS[..FIELDS.len() - 4],
                };
                for field in FIELDS {
                    if !allowed.contains(field) && field != &"path" {
                        if let Some(n) = f.get(field) {
                            self.err(
                                pos(n),
                                format!("{what}: field `{field}` does not apply to a `{}` sink", k.value),
                            );
                        }
                    }
                }
            }
            let path = f.str("path", false, &mut self.diags);
            let kind = match (kind.as_ref().map(|k| k.value.as_str()), path) {
                (Some("file"), Some(p)) => Some(SinkKind::File {
                    path: PathBuf::from(p.value),
                }),
                (Some("file"), None) => {
                    self.err(f.pos(), format!("{what}: a file sink needs `path`"));
                    None
                }
                (Some(_), Some(p)) => {
                    self.err(p.pos, format!("{what}.path: only file sinks have a path"));
                    None
                }
                (Some("mqtt"), None) => self.mqtt_sink(&f, &what).map(|m| SinkKind::Mqtt(Box::new(m))),
                (Some("kafka"), None) => self.kafka_sink(&f, &what).map(|k| SinkKind::Kafka(Box::new(k))),
                (Some(_), None) => Some(SinkKind::Stdout),
                (None, _) => None,
            };
            let names: Vec<&str> = OutputKind::ALL.iter().map(|(n, _)| *n).collect();
            let mut outputs = Vec::new();
            match f.str_list("outputs", &mut self.diags) {
                Some(list) => {
                    for o in list {
                        match OutputKind::ALL.iter().find(|(n, _)| *n == o.value) {
                            Some((_, k)) if outputs.contains(k) => {
                                self.err(o.pos, format!("{what}.outputs: `{}` is listed twice", o.value))
                            }
                            Some((_, k)) => outputs.push(*k),
                            None => self.err(
                                o.pos,
                                format!(
                                    "{what}.outputs: unknown output `{}`; expected {}",
                                    o.value,
                                    one_of(&names)
                                ),
                            ),
                        }
                    }
                }
                None => self.err(
                    f.pos(),
                    format!("{what}: missing required field `outputs` (any of {})", one_of(&names)),
                ),
            }
            let mut kind = kind;
            if let Some(SinkKind::Kafka(k)) = &mut kind {
                // An uplink keeps what the cluster has not taken on disk.
                if outputs.contains(&OutputKind::Events) && k.buffer.is_none() {
                    k.buffer = Some(DEFAULT_EVENTS_BUFFER);
                }
            }
            if let Some(kind) = kind {
                out.push(SinkSpec {
                    name: name.value,
                    pos: name.pos,
                    kind,
                    outputs,
                });
            }
        }
        out
    }
}
