//! Sinks: where outputs go, which kinds each takes, topic templates.

use super::{KafkaConn, MqttConn};
use crate::topology::diag::Pos;
use serde::Serialize;
use std::path::PathBuf;

/// A Kafka sink: outputs produced (idempotent producer) to a topic template,
/// keyed by asset id.
#[derive(Debug, Clone)]
pub struct KafkaSinkSpec {
    pub conn: KafkaConn,
    /// The topic of each record, e.g. `twins.{kind}`; never per asset.
    pub topic: OutputTopic,
    /// Messages held in memory (unacknowledged or waiting for the brokers)
    /// before the sink holds back the twins' batches, which stops ingest.
    pub queue: usize,
    /// Store-and-forward: beyond `queue`, messages wait in the store, up to
    /// this many bytes (then ingest is held back).
    pub buffer: Option<u64>,
}

/// The store-and-forward buffer of a Kafka sink that takes `events` (an
/// edge's uplink) when the topology sets none.
pub const DEFAULT_EVENTS_BUFFER: u64 = 1 << 30;

/// Messages an MQTT sink holds in memory unless its `queue` says otherwise.
pub const DEFAULT_SINK_QUEUE: usize = 10_000;

/// Where dead letters go when no sink takes them (`{state_dir}` is the
/// node's state directory).
pub const DEFAULT_DEAD_LETTERS: &str = "{state_dir}/dead_letters.jsonl";

/// An MQTT sink: outputs published to a topic template.
#[derive(Debug, Clone)]
pub struct MqttSinkSpec {
    pub conn: MqttConn,
    /// The topic of each message, e.g. `plant/{asset}/commands`.
    pub topic: OutputTopic,
    /// 0 (at most once) or 1 (at least once, kept in the store until the
    /// broker acknowledges it).
    pub qos: u8,
    pub retain: bool,
    /// Messages held in memory (unacknowledged or waiting for the broker)
    /// before the sink holds back the twins' batches, which stops ingest.
    pub queue: usize,
    /// What a full queue does: hold the twins back, or (QoS 0 only) drop
    /// its oldest message.
    pub when_full: WhenFull,
}

/// What an MQTT sink does with a full queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Keep the twins' batches and their flow permits: ingest stops until
    /// the broker takes messages again. Nothing is lost.
    Block,
    /// Drop the oldest queued message (counted): ingest never waits for
    /// this sink. Only for QoS 0, which promises at most once anyway.
    DropOldest,
}

/// A topic made of literal text and `{asset}`, `{asset_type}`, `{kind}`
/// (`alert`, `command`, ...) and `{name}` (the rule, command, window or join).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputTopic {
    pub text: String,
    pub parts: Vec<TopicPart>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicPart {
    Text(usize, usize),
    Asset,
    AssetType,
    Kind,
    Name,
}

impl OutputTopic {
    pub const FIELDS: [&'static str; 4] = ["asset", "asset_type", "kind", "name"];

    pub fn parse(text: &str) -> Result<OutputTopic, String> {
        if text.is_empty() {
            return Err("a topic cannot be empty".into());
        }
        if text.contains(['+', '#', '\0']) {
            return Err("a topic to publish to cannot hold `+`, `#` or NUL".into());
        }
        let mut parts = Vec::new();
        let mut rest = 0;
        while let Some(open) = text[rest..].find('{').map(|i| i + rest) {
            let Some(close) = text[open..].find('}').map(|i| i + open) else {
                return Err(format!("`{{` at character {} is not closed", open + 1));
            };
            if open > rest {
                parts.push(TopicPart::Text(rest, open));
            }
            parts.push(match &text[open + 1..close] {
                "asset" => TopicPart::Asset,
                "asset_type" => TopicPart::AssetType,
                "kind" => TopicPart::Kind,
                "name" => TopicPart::Name,
                other => {
                    return Err(format!(
                        "`{{{other}}}`: a topic can name {}",
                        Self::FIELDS.map(|f| format!("`{{{f}}}`")).join(", ")
                    ))
                }
            });
            rest = close + 1;
        }
        if text[rest..].contains('}') {
            return Err("`}` without `{`".into());
        }
        if rest < text.len() {
            parts.push(TopicPart::Text(rest, text.len()));
        }
        Ok(OutputTopic {
            text: text.to_string(),
            parts,
        })
    }

    /// Writes the topic for one output into `out`. A substituted value that
    /// is empty is written as `_`, and its characters the broker refuses
    /// (`legal` says no: MQTT `+`, `#`, NUL) as `_`.
    pub fn render(
        &self,
        out: &mut String,
        asset: &str,
        asset_type: &str,
        kind: &str,
        name: &str,
        legal: fn(char) -> bool,
    ) {
        out.clear();
        for part in &self.parts {
            let value = match *part {
                TopicPart::Text(a, b) => {
                    out.push_str(&self.text[a..b]);
                    continue;
                }
                TopicPart::Asset => asset,
                TopicPart::AssetType => asset_type,
                TopicPart::Kind => kind,
                TopicPart::Name => name,
            };
            if value.is_empty() {
                out.push('_');
            }
            out.extend(value.chars().map(|c| if legal(c) { c } else { '_' }));
        }
    }
}

/// A character an MQTT topic to publish to can hold.
pub fn mqtt_topic_char(c: char) -> bool {
    !matches!(c, '+' | '#' | '\0')
}

/// A character a Kafka topic name can hold.
pub fn kafka_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

#[derive(Debug, Clone)]
pub struct SinkSpec {
    pub name: String,
    pub pos: Pos,
    pub kind: SinkKind,
    pub outputs: Vec<OutputKind>,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    Stdout,
    File { path: PathBuf },
    Mqtt(Box<MqttSinkSpec>),
    Kafka(Box<KafkaSinkSpec>),
}

/// The kinds of output a twin produces; sinks subscribe to kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    TwinUpdates,
    Windows,
    Alerts,
    DeadLetters,
    /// Events that arrived for windows already closed.
    LateEvents,
    /// Joined pairs of readings.
    Joins,
    /// Actuation commands.
    Commands,
    /// Every event a twin applied, as a reading (an edge forwards these to
    /// the cluster).
    Events,
    /// Values other twins read through a relation (`feeds.level`), for the
    /// cluster's relay of them to followers on other nodes. Internal: no
    /// topology names it.
    Relays,
}

impl OutputKind {
    pub const ALL: [(&'static str, OutputKind); 8] = [
        ("twin_updates", OutputKind::TwinUpdates),
        ("windows", OutputKind::Windows),
        ("alerts", OutputKind::Alerts),
        ("dead_letters", OutputKind::DeadLetters),
        ("late_events", OutputKind::LateEvents),
        ("joins", OutputKind::Joins),
        ("commands", OutputKind::Commands),
        ("events", OutputKind::Events),
    ];

    pub fn name(self) -> &'static str {
        match self {
            OutputKind::Relays => "relays",
            k => Self::ALL.iter().find(|(_, x)| *x == k).map_or("?", |(n, _)| n),
        }
    }

    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_topics_substitute_fields_and_keep_levels_valid() {
        let rows = [
            (
                "plant/{asset}/commands",
                ("p-1", "pump", "command", "valve"),
                "plant/p-1/commands",
            ),
            (
                "{asset_type}/{asset}/{kind}/{name}",
                ("p-1", "pump", "alert", "hot"),
                "pump/p-1/alert/hot",
            ),
            ("x/{name}", ("p-1", "pump", "dead_letter", ""), "x/_"),
            ("x/{asset}", ("a+b#c", "pump", "alert", ""), "x/a_b_c"),
            ("fixed", ("p-1", "pump", "alert", "hot"), "fixed"),
        ];
        let mut out = String::new();
        for (template, (asset, ty, kind, name), want) in rows {
            let t = OutputTopic::parse(template).unwrap();
            t.render(&mut out, asset, ty, kind, name, mqtt_topic_char);
            assert_eq!(out, want, "{template}");
        }
        for bad in ["", "a/+/b", "a/#", "a/{sensor}", "a/{asset", "a}"] {
            assert!(OutputTopic::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
