//! What the Kafka source and sink share: the client configuration (brokers,
//! passed-through librdkafka settings, secrets from the environment) and
//! librdkafka's logs routed to tracing.

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::ClientConfig;

use crate::topology::KafkaConn;

/// A record header twinstream's Kafka sinks set on a record the broker may
/// have taken before (an event its source redelivered, or a record an
/// earlier run stored unacknowledged and produces again); twinstream's Kafka
/// sources then apply its events only if they are newer than what the twin
/// holds from that source (duplicates are recognised, DESIGN.md "State and
/// recovery").
pub const REDELIVERED_HEADER: &str = "twinstream.redelivered";

/// The record header twinstream's Kafka sinks name an output's kind in
/// (`alert`, `relay`, ...).
pub const KIND_HEADER: &str = "twinstream.kind";

/// The `properties_env` settings read from the environment at start-up.
/// Err: `(property, variable)` of the first variable that is not set.
pub fn secrets(conn: &KafkaConn) -> Result<Vec<(String, String)>, (String, String)> {
    conn.properties_env
        .iter()
        .map(|(property, var)| match std::env::var(var) {
            Ok(value) => Ok((property.clone(), value)),
            Err(_) => Err((property.clone(), var.clone())),
        })
        .collect()
}

/// A client configuration: the brokers, twinstream's `defaults`, then the
/// topology's `properties` and the `secrets` (which may override defaults;
/// the settings twinstream owns are refused when the topology loads).
pub fn config(conn: &KafkaConn, defaults: &[(&str, &str)], secrets: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &conn.brokers);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in conn.properties.iter().chain(secrets) {
        c.set(k, v);
    }
    // librdkafka's `debug` contexts log at debug level, which the client
    // drops unless asked for: asking for them means wanting them.
    if conn.properties.iter().any(|(k, _)| k == "debug") {
        c.set_log_level(RDKafkaLogLevel::Debug);
    }
    c
}

/// Routes a librdkafka log line of client `client` to tracing.
pub fn log(client: &str, level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(client, facility, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(client, facility, "librdkafka: {message}"),
        _ => tracing::debug!(client, facility, "librdkafka: {message}"),
    }
}
