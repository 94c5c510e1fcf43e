//! MQTT and Kafka settings of broker sources and sinks: the connection
//! (address, credentials, TLS; brokers and librdkafka properties), topics,
//! QoS and a sink's queue.

use std::path::PathBuf;
use std::time::Duration;

use marked_yaml::Node;

use super::Cx;
use crate::topology::diag::Diagnostics;
use crate::topology::spec::*;
use crate::topology::yaml::{pos, scalar_str, spanned_scalar, Fields, Spanned};

impl<'t> Cx<'t> {
    pub(super) fn mqtt(&mut self, f: &Fields<'_>, what: &str) -> Option<MqttSpec> {
        let conn = self.mqtt_conn(f, what);
        let d = &mut self.diags;
        let topics = f.str_list("topics", d).unwrap_or_default();
        if topics.is_empty() {
            d.error(
                f.pos(),
                format!("{what}: list the topic filters to subscribe to in `topics`"),
            );
        }
        for t in &topics {
            let bad = t.value.is_empty()
                || t.value.split('/').enumerate().any(|(i, l)| {
                    (l.contains('#') && (l != "#" || i + 1 != t.value.split('/').count()))
                        || (l.contains('+') && l != "+")
                });
            if bad {
                d.error(
                    t.pos,
                    format!(
                        "{what}.topics: `{}` is not a topic filter (`+` is one whole level, `#` only the last)",
                        t.value
                    ),
                );
            }
        }
        let qos = mqtt_qos(f, what, d);
        let clean_session = f.bool("clean_session", d).is_some_and(|b| b.value);
        let ack_after = match f.choice("ack_after", &["inbox", "checkpoint"], false, d) {
            Some(a) if a.value == "checkpoint" => AckAfter::Checkpoint,
            _ => AckAfter::Inbox,
        };
        let ack_interval = match f.duration("ack_interval", false, d) {
            Some(a) if a.value.is_zero() => {
                d.error(a.pos, format!("{what}.ack_interval: must be greater than zero"));
                DEFAULT_ACK_INTERVAL
            }
            Some(a) => a.value,
            None => DEFAULT_ACK_INTERVAL,
        };
        let topic_fields = match f.str("topic_fields", false, d) {
            Some(t) => match TopicTemplate::parse(&t.value) {
                Ok(tt) => Some(tt),
                Err(e) => {
                    d.error(t.pos, format!("{what}.topic_fields: {e}"));
                    None
                }
            },
            None => None,
        };
        Some(MqttSpec {
            conn,
            topics: topics.into_iter().map(|t| t.value).collect(),
            qos,
            ack_after,
            ack_interval,
            clean_session,
            topic_fields,
        })
    }

    pub(super) fn kafka(&mut self, f: &Fields<'_>, what: &str, key_is_asset: bool) -> Option<KafkaSpec> {
        const RESERVED: &[&str] = &[
            "bootstrap.servers",
            "group.id",
            "enable.auto.commit",
            "enable.auto.offset.store",
        ];
        let conn = self.kafka_conn(f, what, RESERVED, "offsets live in its snapshots");
        let d = &mut self.diags;
        let topics = f.str_list("topics", d).unwrap_or_default();
        if topics.is_empty() {
            d.error(f.pos(), format!("{what}: list the topics to consume in `topics`"));
        }
        let group_id = f.str("group_id", false, d).map(|g| g.value).unwrap_or_default();
        Some(KafkaSpec {
            conn: conn?,
            topics: topics.into_iter().map(|t| t.value).collect(),
            group_id,
            key_is_asset,
        })
    }

    pub(super) fn kafka_sink(&mut self, f: &Fields<'_>, what: &str) -> Option<KafkaSinkSpec> {
        const RESERVED: &[&str] = &["bootstrap.servers", "enable.idempotence", "acks", "transactional.id"];
        let conn = self.kafka_conn(f, what, RESERVED, "its idempotent producer keeps each asset's order");
        let d = &mut self.diags;
        let topic = match f.str("topic", true, d) {
            Some(t) => match OutputTopic::parse(&t.value) {
                Ok(topic) if topic.parts.contains(&TopicPart::Asset) => {
                    d.error(
                        t.pos,
                        format!("{what}.topic: a topic per asset does not scale; the asset id is the record key (use `{{kind}}`, `{{asset_type}}` or `{{name}}`)"),
                    );
                    None
                }
                Ok(topic) => {
                    let literal: String = topic
                        .parts
                        .iter()
                        .filter_map(|p| match *p {
                            TopicPart::Text(a, b) => Some(&topic.text[a..b]),
                            _ => None,
                        })
                        .collect();
                    if let Some(c) = literal.chars().find(|c| !kafka_topic_char(*c)) {
                        d.error(
                            t.pos,
                            format!("{what}.topic: `{c}` cannot be in a Kafka topic (letters, digits, `.`, `_`, `-`)"),
                        );
                        None
                    } else if topic.text.len() > 200 {
                        d.error(t.pos, format!("{what}.topic: longer than Kafka allows"));
                        None
                    } else {
                        Some(topic)
                    }
                }
                Err(e) => {
                    d.error(t.pos, format!("{what}.topic: {e}"));
                    None
                }
            },
            None => None,
        };
        let queue = sink_queue(f, what, d);
        let buffer = f.get("buffer").and_then(|b| {
            let b = Fields::new(b, &format!("{what}.buffer"), &["max_bytes"], d)?;
            let max = b.bytes("max_bytes", true, d)?;
            if max.value < 1 << 16 {
                d.error(max.pos, format!("{what}.buffer.max_bytes: at least 64KiB"));
            }
            Some(max.value)
        });
        Some(KafkaSinkSpec {
            conn: conn?,
            topic: topic?,
            queue,
            buffer,
        })
    }

    /// `brokers`, `properties` and `properties_env` of a Kafka source or
    /// sink; `reserved` settings are twinstream's (`why`).
    fn kafka_conn(&mut self, f: &Fields<'_>, what: &str, reserved: &[&str], why: &str) -> Option<KafkaConn> {
        let d = &mut self.diags;
        let brokers = f.str("brokers", true, d);
        let pairs = |field: &str, d: &mut Diagnostics| -> Vec<(Spanned<String>, Spanned<String>)> {
            let Some(node) = f.get(field) else { return Vec::new() };
            let Node::Mapping(map) = node else {
                d.error(
                    pos(node),
                    format!("{what}.{field}: expected a mapping of librdkafka settings"),
                );
                return Vec::new();
            };
            map.iter()
                .filter_map(|(k, v)| {
                    let value = scalar_str(v, &format!("{what}.{field}.{}", k.as_str()), d)?;
                    Some((spanned_scalar(k), value))
                })
                .collect()
        };
        let properties = pairs("properties", d);
        let properties_env = pairs("properties_env", d);
        for (k, _) in &properties {
            let lower = k.value.to_lowercase();
            if lower.contains("password") || lower.contains("secret") || lower.ends_with(".key.pem") {
                d.error(
                    k.pos,
                    format!("{what}.properties.{}: never write a secret in the topology; name an environment variable under `properties_env`", k.value),
                );
            }
        }
        let named = properties
            .iter()
            .map(|p| ("properties", p))
            .chain(properties_env.iter().map(|p| ("properties_env", p)));
        for (field, (k, _)) in named {
            if reserved.contains(&k.value.as_str()) {
                d.error(k.pos, format!("{what}.{field}.{}: set by twinstream ({why})", k.value));
            }
        }
        Some(KafkaConn {
            brokers: brokers?.value,
            properties: properties.into_iter().map(|(k, v)| (k.value, v.value)).collect(),
            properties_env: properties_env.into_iter().map(|(k, v)| (k.value, v.value)).collect(),
        })
    }

    /// The broker address, client id, keep-alive, credentials and TLS of an
    /// MQTT source or sink.
    fn mqtt_conn(&mut self, f: &Fields<'_>, what: &str) -> MqttConn {
        let d = &mut self.diags;
        let host = f
            .str("host", false, d)
            .map_or_else(|| "127.0.0.1".to_string(), |h| h.value);
        let port = match f.u64("port", false, d) {
            Some(p) if p.value == 0 || p.value > 65535 => {
                d.error(p.pos, format!("{what}.port: must be between 1 and 65535"));
                1883
            }
            Some(p) => p.value as u16,
            None => 1883,
        };
        let client_id = f.str("client_id", false, d).map(|c| c.value);
        let keep_alive = f
            .duration("keep_alive", false, d)
            .map_or(Duration::from_secs(30), |k| k.value);
        let username = f.str("username", false, d).map(|u| u.value);
        if let Some(p) = f.get("password") {
            d.error(
                pos(p),
                format!("{what}.password: never write a password in the topology; use `password_env` (an environment variable) or `password_file`"),
            );
        }
        let password = match (f.str("password_env", false, d), f.str("password_file", false, d)) {
            (Some(e), None) => Some(Secret::Env(e.value)),
            (None, Some(p)) => Some(Secret::File(PathBuf::from(p.value))),
            (Some(e), Some(_)) => {
                d.error(
                    e.pos,
                    format!("{what}: give `password_env` or `password_file`, not both"),
                );
                None
            }
            (None, None) => None,
        };
        if password.is_some() && username.is_none() {
            d.error(f.pos(), format!("{what}: a password needs a `username`"));
        }
        let mut tls = None;
        if let Some(t) = f.get("tls") {
            const TLS: &[&str] = &["ca_file", "cert_file", "key_file"];
            if let Some(tf) = Fields::new(t, &format!("{what}.tls"), TLS, d) {
                let ca = tf.str("ca_file", true, d);
                let cert = tf.str("cert_file", false, d);
                let key = tf.str("key_file", false, d);
                let client = match (cert, key) {
                    (Some(c), Some(k)) => Some((PathBuf::from(c.value), PathBuf::from(k.value))),
                    (None, None) => None,
                    (Some(c), None) => {
                        d.error(c.pos, format!("{what}.tls: a client certificate needs its `key_file`"));
                        None
                    }
                    (None, Some(k)) => {
                        d.error(k.pos, format!("{what}.tls: a client key needs its `cert_file`"));
                        None
                    }
                };
                tls = ca.map(|ca| MqttTls {
                    ca_file: PathBuf::from(ca.value),
                    client,
                });
            }
        }
        MqttConn {
            host,
            port,
            client_id: client_id.unwrap_or_default(),
            keep_alive,
            username,
            password,
            tls,
        }
    }

    pub(super) fn mqtt_sink(&mut self, f: &Fields<'_>, what: &str) -> Option<MqttSinkSpec> {
        let conn = self.mqtt_conn(f, what);
        let d = &mut self.diags;
        let topic = match f.str("topic", true, d) {
            Some(t) => match OutputTopic::parse(&t.value) {
                Ok(topic) => Some(topic),
                Err(e) => {
                    d.error(t.pos, format!("{what}.topic: {e}"));
                    None
                }
            },
            None => None,
        };
        let qos = mqtt_qos(f, what, d);
        let retain = f.bool("retain", d).is_some_and(|b| b.value);
        let queue = sink_queue(f, what, d);
        let when_full = match f.choice("when_full", &["block", "drop_oldest"], false, d) {
            Some(w) if w.value == "drop_oldest" => {
                if qos != 0 {
                    d.error(
                        w.pos,
                        format!("{what}.when_full: `drop_oldest` loses messages; only a `qos: 0` sink may drop"),
                    );
                }
                WhenFull::DropOldest
            }
            _ => WhenFull::Block,
        };
        Some(MqttSinkSpec {
            conn,
            topic: topic?,
            qos,
            retain,
            queue,
            when_full,
        })
    }
}

/// A broker sink's `queue`: messages held in memory before it holds back
/// the twins.
fn sink_queue(f: &Fields<'_>, what: &str, d: &mut Diagnostics) -> usize {
    match f.u64("queue", false, d) {
        Some(q) if q.value == 0 => {
            d.error(q.pos, format!("{what}.queue: at least 1 message"));
            1
        }
        Some(q) => q.value as usize,
        None => DEFAULT_SINK_QUEUE,
    }
}

/// `qos`: 0 or 1 (the default).
fn mqtt_qos(f: &Fields<'_>, what: &str, d: &mut Diagnostics) -> u8 {
    match f.u64("qos", false, d) {
        Some(q) if q.value > 1 => {
            d.error(q.pos, format!("{what}.qos: 0 or 1"));
            1
        }
        Some(q) => q.value as u8,
        None => 1,
    }
}
