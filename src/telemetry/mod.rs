//! Every metric name and label, and the small functions that record them.
//!
//! Names follow `twinstream_<area>_<name>_<unit>`; counters end in `_total`,
//! durations are `_seconds`. Labels have bounded cardinality: source, sink,
//! reason - never an asset id. Hot paths call these once per batch, not per
//! event. Without an installed recorder every call is a no-op.

pub mod logging;

use metrics::{counter, gauge, histogram};

pub const EVENTS_RECEIVED: &str = "twinstream_events_received_total";
pub const EVENTS_APPLIED: &str = "twinstream_events_applied_total";
pub const EVENTS_LATE: &str = "twinstream_events_late_total";
pub const DEAD_LETTERS: &str = "twinstream_dead_letters_total";
pub const APPLY_LATENCY: &str = "twinstream_apply_latency_seconds";
pub const TWINS_ACTIVE: &str = "twinstream_twins_active";
pub const TWIN_RESTARTS: &str = "twinstream_twin_restarts_total";
pub const SNAPSHOT_DURATION: &str = "twinstream_snapshot_duration_seconds";
pub const SNAPSHOT_BYTES: &str = "twinstream_snapshot_bytes_total";
pub const SNAPSHOT_TWINS: &str = "twinstream_snapshot_twins_total";
pub const SINK_LINES: &str = "twinstream_sink_lines_total";
pub const FLOW_INFLIGHT: &str = "twinstream_flow_inflight_chunks";
pub const TIMERS_FIRED: &str = "twinstream_timers_fired_total";
pub const TIMERS_PENDING: &str = "twinstream_timers_pending";
pub const RELAYS_DELIVERED: &str = "twinstream_relays_delivered_total";
pub const SYNC_LAG: &str = "twinstream_twin_sync_lag_seconds";
pub const MQTT_UNACKED: &str = "twinstream_mqtt_unacked_messages";
pub const MQTT_CONNECTED: &str = "twinstream_mqtt_connected";
pub const FLOW_LIMIT: &str = "twinstream_flow_limit_chunks";
pub const SINK_QUEUE: &str = "twinstream_sink_queue_messages";
pub const SINK_QUEUE_LIMIT: &str = "twinstream_sink_queue_limit_messages";
pub const SINK_BACKPRESSURE: &str = "twinstream_sink_backpressure";
pub const SINK_DROPPED: &str = "twinstream_sink_dropped_total";
pub const SINK_RETRIES: &str = "twinstream_sink_retries_total";
pub const RECORDS_RECEIVED: &str = "twinstream_records_received_total";
pub const KAFKA_LAG: &str = "twinstream_kafka_consumer_lag_messages";
pub const KAFKA_PAUSED: &str = "twinstream_kafka_paused";

/// Every metric name above (dashboards and alert rules may name only these).
pub const ALL: &[&str] = &[
    EVENTS_RECEIVED,
    EVENTS_APPLIED,
    EVENTS_LATE,
    DEAD_LETTERS,
    APPLY_LATENCY,
    TWINS_ACTIVE,
    TWIN_RESTARTS,
    SNAPSHOT_DURATION,
    SNAPSHOT_BYTES,
    SNAPSHOT_TWINS,
    SINK_LINES,
    FLOW_INFLIGHT,
    TIMERS_FIRED,
    TIMERS_PENDING,
    RELAYS_DELIVERED,
    SYNC_LAG,
    MQTT_UNACKED,
    MQTT_CONNECTED,
    FLOW_LIMIT,
    SINK_QUEUE,
    SINK_QUEUE_LIMIT,
    SINK_BACKPRESSURE,
    SINK_DROPPED,
    SINK_RETRIES,
    RECORDS_RECEIVED,
    KAFKA_LAG,
    KAFKA_PAUSED,
];

pub const LABEL_SOURCE: &str = "source";
pub const LABEL_SINK: &str = "sink";
pub const LABEL_REASON: &str = "reason";
pub const LABEL_TOPIC: &str = "topic";
pub const LABEL_PARTITION: &str = "partition";

pub fn events_received(source: &str, n: u64) {
    counter!(EVENTS_RECEIVED, LABEL_SOURCE => source.to_string()).increment(n);
}

pub fn events_applied(n: u64, late: u64) {
    counter!(EVENTS_APPLIED).increment(n);
    if late > 0 {
        counter!(EVENTS_LATE).increment(late);
    }
}

/// Records read by a source, dead-lettered ones included: with
/// [`DEAD_LETTERS`], the dead-letter ratio.
pub fn records_received(source: &str, n: u64) {
    counter!(RECORDS_RECEIVED, LABEL_SOURCE => source.to_string()).increment(n);
}

/// Deliveries a sink will try again.
pub fn sink_retried(sink: &str, n: u64) {
    counter!(SINK_RETRIES, LABEL_SINK => sink.to_string()).increment(n);
}

pub fn dead_lettered(source: &str, reason: &'static str, n: u64) {
    counter!(DEAD_LETTERS, LABEL_SOURCE => source.to_string(), LABEL_REASON => reason).increment(n);
}

/// Time from an event batch being received to the twin being updated.
pub fn apply_latency(seconds: f64) {
    histogram!(APPLY_LATENCY).record(seconds);
}

pub fn twins_active(n: usize) {
    gauge!(TWINS_ACTIVE).set(n as f64);
}

pub fn twin_restarted() {
    counter!(TWIN_RESTARTS).increment(1);
}

pub fn snapshot_written(seconds: f64, twins: usize, bytes: usize) {
    histogram!(SNAPSHOT_DURATION).record(seconds);
    counter!(SNAPSHOT_TWINS).increment(twins as u64);
    counter!(SNAPSHOT_BYTES).increment(bytes as u64);
}

pub fn sink_written(sink: &str, lines: u64) {
    if lines > 0 {
        counter!(SINK_LINES, LABEL_SINK => sink.to_string()).increment(lines);
    }
}

pub fn flow_inflight(n: usize) {
    gauge!(FLOW_INFLIGHT).set(n as f64);
}

/// QoS 1 messages of an MQTT source routed but not yet acknowledged (they
/// wait for a durable checkpoint): with the broker's inflight limit, what
/// bounds the stream.
pub fn mqtt_unacked(source: &str, n: usize) {
    gauge!(MQTT_UNACKED, LABEL_SOURCE => source.to_string()).set(n as f64);
}

/// 1 while an MQTT source is connected, else 0.
pub fn mqtt_connected(source: &str, up: bool) {
    gauge!(MQTT_CONNECTED, LABEL_SOURCE => source.to_string()).set(if up { 1.0 } else { 0.0 });
}

/// Records of a Kafka partition not consumed yet (labels: source, topic,
/// partition - bounded by the topics' partition count).
pub fn kafka_lag(source: &str, topic: &str, partition: i32, lag: i64) {
    gauge!(KAFKA_LAG, LABEL_SOURCE => source.to_string(), LABEL_TOPIC => topic.to_string(),
        LABEL_PARTITION => partition.to_string())
    .set(lag as f64);
}

/// 1 while a Kafka source has paused its partitions (the engine is behind).
pub fn kafka_paused(source: &str, paused: bool) {
    gauge!(KAFKA_PAUSED, LABEL_SOURCE => source.to_string()).set(if paused { 1.0 } else { 0.0 });
}

/// 1 while an MQTT sink is connected, else 0.
pub fn mqtt_sink_connected(sink: &str, up: bool) {
    gauge!(MQTT_CONNECTED, LABEL_SINK => sink.to_string()).set(if up { 1.0 } else { 0.0 });
}

/// The flow's bound: chunks between sources and sinks at most (the high
/// water mark of `twinstream_flow_inflight_chunks`).
pub fn flow_limit(n: usize) {
    gauge!(FLOW_LIMIT).set(n as f64);
}

/// Messages a QoS 0 sink with `when_full: drop_oldest` dropped.
pub fn sink_dropped(sink: &str, n: u64) {
    if n > 0 {
        counter!(SINK_DROPPED, LABEL_SINK => sink.to_string()).increment(n);
    }
}

/// The bound of a sink's queue (its high water mark).
pub fn sink_queue_limit(sink: &str, n: usize) {
    gauge!(SINK_QUEUE_LIMIT, LABEL_SINK => sink.to_string()).set(n as f64);
}

/// Messages a sink holds (queued or unacknowledged), and whether it is
/// over its bound and holding the twins' batches back (ingest slows).
pub fn sink_queue(sink: &str, n: usize, backpressure: bool) {
    gauge!(SINK_QUEUE, LABEL_SINK => sink.to_string()).set(n as f64);
    gauge!(SINK_BACKPRESSURE, LABEL_SINK => sink.to_string()).set(if backpressure { 1.0 } else { 0.0 });
}

/// A timer round: `fired` twins ticked, `pending` entries left in the index.
pub fn timers(fired: usize, pending: usize) {
    if fired > 0 {
        counter!(TIMERS_FIRED).increment(fired as u64);
    }
    gauge!(TIMERS_PENDING).set(pending as f64);
}

pub fn relays_delivered(n: usize) {
    if n > 0 {
        counter!(RELAYS_DELIVERED).increment(n as u64);
    }
}

/// The sync lag of a twin after a batch (processing time minus the event
/// time of the reading it last reflected).
pub fn sync_lag(ms: i32) {
    if ms != i32::MIN {
        histogram!(SYNC_LAG).record(f64::from(ms) / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The alert rules shipped in `deploy/prometheus` name only metrics
    /// twinstream exports (a renamed metric would silence an alert).
    #[test]
    fn the_alert_rules_name_only_exported_metrics() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut named = 0;
        for (i, _) in text.match_indices("twinstream_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `_bucket`, `_sum`, `_count` series of a histogram.
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| ALL.contains(b)))
                .unwrap_or(&name);
            assert!(
                ALL.contains(&base),
                "{}: `{name}` is not a twinstream metric",
                path.display()
            );
            named += 1;
        }
        assert!(text.contains(DEAD_LETTERS) && text.contains(RECORDS_RECEIVED));
        assert!(named >= 2);
    }

    #[test]
    fn metric_names_follow_the_convention() {
        for name in ALL {
            assert!(name.starts_with("twinstream_"), "{name}");
            assert_eq!(ALL.iter().filter(|n| *n == name).count(), 1, "{name} listed twice");
        }
    }
}
