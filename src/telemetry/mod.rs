//! Every metric name and label, and the small functions that record them.
//!
//! Names follow `twinstream_<area>_<name>_<unit>`; counters end in `_total`,
//! durations are `_seconds`. Labels have bounded cardinality: source, sink,
//! reason - never an asset id. Hot paths call these once per batch, not per
//! event. Without an installed recorder every call is a no-op.

pub mod health;
pub mod logging;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const EVENTS_RECEIVED: &str = "twinstream_events_received_total";
pub const EVENTS_APPLIED: &str = "twinstream_events_applied_total";
pub const EVENTS_LATE: &str = "twinstream_events_late_total";
/// Readings older than their twin's model estimate: not taken into it.
pub const MODEL_OUT_OF_ORDER: &str = "twinstream_model_out_of_order_total";
pub const DEAD_LETTERS: &str = "twinstream_dead_letters_total";
pub const APPLY_LATENCY: &str = "twinstream_apply_latency_seconds";
pub const TWINS_ACTIVE: &str = "twinstream_twins_active";
pub const TWINS_PASSIVATED: &str = "twinstream_twins_passivated_total";
pub const TWINS_STARTED: &str = "twinstream_twins_started_total";
pub const TWIN_RESTARTS: &str = "twinstream_twin_restarts_total";
/// Twins whose stored record could not be read: dead-lettered and rebuilt
/// (`from`: `changelog` or `empty`).
pub const TWINS_QUARANTINED: &str = "twinstream_twins_quarantined_total";
pub const SNAPSHOT_DURATION: &str = "twinstream_snapshot_duration_seconds";
pub const SNAPSHOT_BYTES: &str = "twinstream_snapshot_bytes_total";
pub const SNAPSHOT_TWINS: &str = "twinstream_snapshot_twins_total";
/// Of the twin records snapshots wrote, those merged in as the sensors that
/// changed (a record in parts); the rest were whole.
pub const SNAPSHOT_OPERANDS: &str = "twinstream_snapshot_twin_operands_total";
/// The pause after the last durable checkpoint before the next may start
/// (`node.snapshot.min_pause`; with `auto`, how long the last one took).
pub const SNAPSHOT_PAUSE: &str = "twinstream_snapshot_pause_seconds";
pub const SINK_LINES: &str = "twinstream_sink_lines_total";
pub const FLOW_INFLIGHT: &str = "twinstream_flow_inflight_chunks";
pub const TIMERS_FIRED: &str = "twinstream_timers_fired_total";
pub const TIMERS_PENDING: &str = "twinstream_timers_pending";
pub const RELAYS_DELIVERED: &str = "twinstream_relays_delivered_total";
pub const SYNC_LAG: &str = "twinstream_twin_sync_lag_seconds";
pub const MQTT_UNACKED: &str = "twinstream_mqtt_unacked_messages";
pub const MQTT_CONNECTED: &str = "twinstream_mqtt_connected";
/// MQTT QoS 1 messages acknowledged from the source's inbox and not yet in
/// a durable checkpoint (`ack_after: inbox`).
pub const MQTT_INBOX: &str = "twinstream_mqtt_inbox_messages";
/// How long writing a group of messages into the inbox took: what an
/// acknowledgement waits for (`ack_after: inbox`).
pub const MQTT_INBOX_WRITE: &str = "twinstream_mqtt_inbox_write_seconds";
/// Inbox writes that failed (each is tried again; its messages stay
/// unacknowledged until one succeeds).
pub const MQTT_INBOX_FAILURES: &str = "twinstream_mqtt_inbox_write_failures_total";
pub const FLOW_LIMIT: &str = "twinstream_flow_limit_chunks";
pub const SINK_QUEUE: &str = "twinstream_sink_queue_messages";
pub const SINK_QUEUE_LIMIT: &str = "twinstream_sink_queue_limit_messages";
pub const SINK_BACKPRESSURE: &str = "twinstream_sink_backpressure";
pub const SINK_DROPPED: &str = "twinstream_sink_dropped_total";
pub const SINK_RETRIES: &str = "twinstream_sink_retries_total";
pub const SINK_BUFFER: &str = "twinstream_sink_buffer_bytes";
pub const SINK_BUFFER_LIMIT: &str = "twinstream_sink_buffer_limit_bytes";
pub const RECORDS_RECEIVED: &str = "twinstream_records_received_total";
pub const KAFKA_LAG: &str = "twinstream_kafka_consumer_lag_messages";
pub const KAFKA_PAUSED: &str = "twinstream_kafka_paused";
pub const KAFKA_CONNECTED: &str = "twinstream_kafka_connected";
pub const ALERTS_ACTIVE: &str = "twinstream_alerts_active";
pub const ALERT_TRANSITIONS: &str = "twinstream_alert_transitions_total";
pub const ALERT_LATENCY: &str = "twinstream_alert_latency_seconds";
pub const SENSORS_STALE: &str = "twinstream_sensors_stale";
pub const HTTP_REQUESTS: &str = "twinstream_http_requests_total";
pub const HTTP_DURATION: &str = "twinstream_http_request_duration_seconds";
pub const HTTP_AUTH_FAILURES: &str = "twinstream_http_auth_failures_total";
pub const READY: &str = "twinstream_ready";
pub const COMMANDS_PENDING: &str = "twinstream_commands_pending";
pub const COMMANDS: &str = "twinstream_commands_total";
pub const WORKER_BACKLOG: &str = "twinstream_worker_mailbox_batches";
pub const SHARDS_OWNED: &str = "twinstream_shards_owned";
pub const SHARDS_RESTORING: &str = "twinstream_shards_restoring";
pub const SHARD_RESTORE_DURATION: &str = "twinstream_shard_restore_duration_seconds";
pub const SHARD_RESTORE_RECORDS: &str = "twinstream_shard_restore_records_total";
pub const REBALANCES: &str = "twinstream_rebalances_total";
pub const CHANGELOG_RECORDS: &str = "twinstream_changelog_records_total";
/// History records (whole buckets, alert and command entries) written to
/// the changelog's history topic, and their bytes.
pub const CHANGELOG_HISTORY_RECORDS: &str = "twinstream_changelog_history_records_total";
pub const CHANGELOG_HISTORY_BYTES: &str = "twinstream_changelog_history_bytes_total";
/// History staged in checkpoints: page operands and entries, and their bytes.
pub const HISTORY_WRITES: &str = "twinstream_history_writes_total";
pub const HISTORY_WRITE_BYTES: &str = "twinstream_history_write_bytes_total";
/// What a sensor's history is expected to take on disk per day, per asset
/// type, from its declaration (`check` prints the same).
pub const HISTORY_SENSOR_DAY_BYTES: &str = "twinstream_history_sensor_day_bytes";
/// History on disk (table files), bytes, summed over the node's shards.
pub const HISTORY_DISK_BYTES: &str = "twinstream_history_disk_bytes";
/// The history clock: the latest reading time in durable history, epoch seconds.
pub const HISTORY_CLOCK: &str = "twinstream_history_clock_seconds";
/// The latency of each hop of the pipeline (`hop`: one of [`HOPS`]).
pub const HOP_LATENCY: &str = "twinstream_hop_latency_seconds";
/// The latency budget the topology declares for a hop at a quantile
/// (`node.slo`); the alert rules compare the hop's quantile with it.
pub const LATENCY_BUDGET: &str = "twinstream_latency_budget_seconds";

/// Every metric name above (dashboards and alert rules may name only these).
pub const ALL: &[&str] = &[
    EVENTS_RECEIVED,
    EVENTS_APPLIED,
    EVENTS_LATE,
    MODEL_OUT_OF_ORDER,
    DEAD_LETTERS,
    APPLY_LATENCY,
    TWINS_ACTIVE,
    TWINS_PASSIVATED,
    TWINS_STARTED,
    TWIN_RESTARTS,
    TWINS_QUARANTINED,
    SNAPSHOT_DURATION,
    SNAPSHOT_BYTES,
    SNAPSHOT_TWINS,
    SNAPSHOT_OPERANDS,
    SNAPSHOT_PAUSE,
    SINK_LINES,
    FLOW_INFLIGHT,
    TIMERS_FIRED,
    TIMERS_PENDING,
    RELAYS_DELIVERED,
    SYNC_LAG,
    MQTT_UNACKED,
    MQTT_CONNECTED,
    MQTT_INBOX,
    MQTT_INBOX_WRITE,
    MQTT_INBOX_FAILURES,
    FLOW_LIMIT,
    SINK_QUEUE,
    SINK_QUEUE_LIMIT,
    SINK_BACKPRESSURE,
    SINK_DROPPED,
    SINK_RETRIES,
    SINK_BUFFER,
    SINK_BUFFER_LIMIT,
    RECORDS_RECEIVED,
    KAFKA_LAG,
    KAFKA_PAUSED,
    KAFKA_CONNECTED,
    ALERTS_ACTIVE,
    ALERT_TRANSITIONS,
    ALERT_LATENCY,
    SENSORS_STALE,
    HTTP_REQUESTS,
    HTTP_DURATION,
    HTTP_AUTH_FAILURES,
    READY,
    COMMANDS_PENDING,
    COMMANDS,
    WORKER_BACKLOG,
    SHARDS_OWNED,
    SHARDS_RESTORING,
    SHARD_RESTORE_DURATION,
    SHARD_RESTORE_RECORDS,
    REBALANCES,
    CHANGELOG_RECORDS,
    CHANGELOG_HISTORY_RECORDS,
    CHANGELOG_HISTORY_BYTES,
    HISTORY_WRITES,
    HISTORY_WRITE_BYTES,
    HISTORY_SENSOR_DAY_BYTES,
    HISTORY_DISK_BYTES,
    HISTORY_CLOCK,
    HOP_LATENCY,
    LATENCY_BUDGET,
];

pub const LABEL_SOURCE: &str = "source";
pub const LABEL_SINK: &str = "sink";
pub const LABEL_REASON: &str = "reason";
pub const LABEL_TOPIC: &str = "topic";
pub const LABEL_PARTITION: &str = "partition";
pub const LABEL_SEVERITY: &str = "severity";
pub const LABEL_TRANSITION: &str = "transition";
/// An HTTP route's pattern (`/twins/{id}`), never the path itself.
pub const LABEL_ROUTE: &str = "route";
pub const LABEL_STATUS: &str = "status";
/// A worker thread's index (bounded by `node.workers`).
pub const LABEL_WORKER: &str = "worker";
/// What happened to a command: issued, acked, failed, rejected, superseded.
pub const LABEL_OUTCOME: &str = "outcome";
/// Where a shard was restored from: `local` or `changelog`; where a twin
/// started from: `store` or `new`.
pub const LABEL_FROM: &str = "from";
/// What a rebalance did to this node: `assign`, `revoke`, `lost`.
pub const LABEL_KIND: &str = "kind";
/// An asset type's name (bounded by the topology).
pub const LABEL_TYPE: &str = "type";
/// A hop of the pipeline (one of [`HOPS`]).
pub const LABEL_HOP: &str = "hop";
/// A latency budget's quantile (`0.5`, `0.99`, `0.999`: PromQL's).
pub const LABEL_QUANTILE: &str = "quantile";

/// The hops [`HOP_LATENCY`] times (its `hop` label), in the order a
/// reading passes them; `topology::Hop` says what each is (the topology
/// names the same hops in `node.slo`, and a test checks the two agree).
/// `twinstream_apply_latency_seconds` is `decode` and `apply` together.
pub const HOPS: [&str; 5] = ["decode", "apply", "output", "durable", "end_to_end"];

/// Bucket bounds (seconds) of every `_seconds` histogram: 100 µs to 5 min.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0,
];

/// Why the Prometheus recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the Prometheus metrics recorder: {0}")]
pub struct RecorderError(String);

/// Installs the process-wide recorder behind `GET /metrics` and returns
/// the handle that renders the text exposition. Histograms are exported
/// with buckets (Prometheus computes quantiles across scrapes and nodes).
pub fn install_prometheus() -> Result<PrometheusHandle, RecorderError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(|e| RecorderError(e.to_string()))?
        .install_recorder()
        .map_err(|e| RecorderError(e.to_string()))
}

pub fn events_received(source: &str, n: u64) {
    counter!(EVENTS_RECEIVED, LABEL_SOURCE => source.to_string()).increment(n);
}

pub fn events_applied(n: u64, late: u64, model_out_of_order: u64) {
    counter!(EVENTS_APPLIED).increment(n);
    if late > 0 {
        counter!(EVENTS_LATE).increment(late);
    }
    if model_out_of_order > 0 {
        counter!(MODEL_OUT_OF_ORDER).increment(model_out_of_order);
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

/// A twin applied a batch of events its source received at `received`
/// and the router took at `routed`: the time from receipt to the twin
/// updated, and the `apply` hop.
pub fn apply_latency(received: std::time::Instant, routed: std::time::Instant) {
    let now = std::time::Instant::now();
    HOT.with(|h| {
        h.apply_latency
            .record(now.saturating_duration_since(received).as_secs_f64());
        h.apply.record(now.saturating_duration_since(routed).as_secs_f64());
    });
}

/// Shards (partitions of the cluster's ingest topic) this node owns.
pub fn shards_owned(n: usize) {
    gauge!(SHARDS_OWNED).set(n as f64);
}

/// Shards being restored (from the local store or the changelog).
pub fn shards_restoring(n: usize) {
    gauge!(SHARDS_RESTORING).set(n as f64);
}

/// A shard restored: how long it took and how many changelog records it read
/// (`from`: `local` or `changelog`).
pub fn shard_restored(from: &'static str, seconds: f64, records: u64) {
    histogram!(SHARD_RESTORE_DURATION, LABEL_FROM => from).record(seconds);
    counter!(SHARD_RESTORE_RECORDS, LABEL_FROM => from).increment(records);
}

/// A rebalance of the consumer group reached this node (`kind`: `assign`,
/// `revoke` or `lost`).
pub fn rebalanced(kind: &'static str) {
    counter!(REBALANCES, LABEL_KIND => kind).increment(1);
}

/// Twin records and markers written to the changelog.
pub fn changelog_written(n: usize) {
    counter!(CHANGELOG_RECORDS).increment(n as u64);
}

pub fn changelog_history_written(records: usize, bytes: usize) {
    counter!(CHANGELOG_HISTORY_RECORDS).increment(records as u64);
    counter!(CHANGELOG_HISTORY_BYTES).increment(bytes as u64);
}

/// History a checkpoint staged.
pub fn history_written(writes: usize, bytes: usize) {
    counter!(HISTORY_WRITES).increment(writes as u64);
    counter!(HISTORY_WRITE_BYTES).increment(bytes as u64);
}

/// The expected disk use of a sensor's history of `asset_type`, per day.
pub fn history_sensor_day(asset_type: &str, bytes: f64) {
    gauge!(HISTORY_SENSOR_DAY_BYTES, LABEL_TYPE => asset_type.to_string()).set(bytes);
}

/// History on disk and the history clock (ms), after a checkpoint.
pub fn history_state(disk_bytes: u64, clock_ms: i64) {
    gauge!(HISTORY_DISK_BYTES).set(disk_bytes as f64);
    if clock_ms != i64::MIN {
        gauge!(HISTORY_CLOCK).set(clock_ms as f64 / 1000.0);
    }
}

/// Twins in memory (the rest of the node's twins are in the store only).
pub fn twins_active(n: usize) {
    gauge!(TWINS_ACTIVE).set(n as f64);
}

/// Twins dropped from memory after `node.passivate_after` idle.
pub fn twins_passivated(n: usize) {
    if n > 0 {
        counter!(TWINS_PASSIVATED).increment(n as u64);
    }
}

/// A twin started in memory: `from` is `store` (restored: woken after
/// passivation or a restart) or `new` (no record yet).
pub fn twin_started(from: &'static str) {
    counter!(TWINS_STARTED, LABEL_FROM => from).increment(1);
}

/// A twin's stored record was damaged; it was rebuilt `from` `changelog`
/// or `empty`.
pub fn twin_quarantined(from: &'static str) {
    counter!(TWINS_QUARANTINED, LABEL_FROM => from).increment(1);
}

pub fn twin_restarted() {
    counter!(TWIN_RESTARTS).increment(1);
}

/// A checkpoint committed: `twins` records, `operands` of them merge
/// operands of the sensors that changed.
pub fn snapshot_written(seconds: f64, twins: usize, operands: usize, bytes: usize) {
    histogram!(SNAPSHOT_DURATION).record(seconds);
    counter!(SNAPSHOT_TWINS).increment(twins as u64);
    counter!(SNAPSHOT_OPERANDS).increment(operands as u64);
    counter!(SNAPSHOT_BYTES).increment(bytes as u64);
}

pub fn snapshot_pause(seconds: f64) {
    gauge!(SNAPSHOT_PAUSE).set(seconds);
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
/// wait for the inbox, or a durable checkpoint): with the broker's inflight
/// limit, what bounds the stream.
pub fn mqtt_unacked(source: &str, n: usize) {
    gauge!(MQTT_UNACKED, LABEL_SOURCE => source.to_string()).set(n as f64);
}

/// Messages an MQTT source holds in its inbox (acknowledged, waiting for a
/// durable checkpoint).
pub fn mqtt_inbox(source: &str, n: u64) {
    gauge!(MQTT_INBOX, LABEL_SOURCE => source.to_string()).set(n as f64);
}

/// One write of messages into an MQTT source's inbox took `seconds`.
pub fn mqtt_inbox_write(source: &str, seconds: f64) {
    histogram!(MQTT_INBOX_WRITE, LABEL_SOURCE => source.to_string()).record(seconds);
}

/// A write into an MQTT source's inbox failed.
pub fn mqtt_inbox_failed(source: &str) {
    counter!(MQTT_INBOX_FAILURES, LABEL_SOURCE => source.to_string()).increment(1);
}

/// 1 while an MQTT source is connected and its subscriptions are in place
/// (a session the broker kept, or every SUBACK of a new one), else 0
/// (readiness follows it).
pub fn mqtt_connected(source: &str, up: bool) {
    gauge!(MQTT_CONNECTED, LABEL_SOURCE => source.to_string()).set(if up { 1.0 } else { 0.0 });
    health::source_connected(source, up);
}

/// 1 once a Kafka source has its partitions assigned (readiness follows it).
pub fn kafka_connected(source: &str, up: bool) {
    gauge!(KAFKA_CONNECTED, LABEL_SOURCE => source.to_string()).set(if up { 1.0 } else { 0.0 });
    health::source_connected(source, up);
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

/// Bytes a store-and-forward sink keeps in the store for its broker.
pub fn sink_buffer(sink: &str, bytes: u64) {
    gauge!(SINK_BUFFER, LABEL_SINK => sink.to_string()).set(bytes as f64);
}

/// The `buffer.max_bytes` of a store-and-forward sink.
pub fn sink_buffer_limit(sink: &str, bytes: u64) {
    gauge!(SINK_BUFFER_LIMIT, LABEL_SINK => sink.to_string()).set(bytes as f64);
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

/// The latency of `hop` (one of [`HOPS`]): `seconds`, observed `n` times.
pub fn hop(hop: &'static str, seconds: f64, n: u64) {
    if n > 0 {
        histogram!(HOP_LATENCY, LABEL_HOP => hop).record_many(seconds.max(0.0), n as usize);
    }
}

/// The router took a chunk its source received at `received`, at
/// `routed`: the `decode` hop (once per chunk).
pub fn decoded(received: std::time::Instant, routed: std::time::Instant) {
    let seconds = routed.saturating_duration_since(received).as_secs_f64();
    HOT.with(|h| h.decode.record(seconds));
}

/// The `output` and `end_to_end` hops as a sink observes them when outputs
/// leave the node (handles registered once per sink).
pub struct OutputHops {
    output: metrics::Histogram,
    end_to_end: metrics::Histogram,
}

impl Default for OutputHops {
    fn default() -> OutputHops {
        OutputHops {
            output: histogram!(HOP_LATENCY, LABEL_HOP => HOPS[2]),
            end_to_end: histogram!(HOP_LATENCY, LABEL_HOP => HOPS[4]),
        }
    }
}

impl OutputHops {
    /// `n` outputs a twin produced at `produced` are out.
    pub fn out(&self, produced: std::time::Instant, n: u64) {
        if n > 0 {
            self.output.record_many(produced.elapsed().as_secs_f64(), n as usize);
        }
    }

    /// An alert transition, caused at event time `event_ms`, is out at
    /// processing time `now_ms`.
    pub fn alert_out(&self, event_ms: i64, now_ms: i64) {
        self.end_to_end
            .record(now_ms.saturating_sub(event_ms).max(0) as f64 / 1000.0);
    }
}

/// Exports the latency budgets the topology declares (`node.slo`): per
/// hop and quantile label (`0.99`), in seconds.
pub fn latency_budgets(budgets: &[(&'static str, &'static str, std::time::Duration)]) {
    for &(hop, quantile, budget) in budgets {
        gauge!(LATENCY_BUDGET, LABEL_HOP => hop, LABEL_QUANTILE => quantile).set(budget.as_secs_f64());
    }
}

/// The sync lag of a twin after a batch (processing time minus the event
/// time of the reading it last reflected).
pub fn sync_lag(ms: i32) {
    if ms != i32::MIN {
        HOT.with(|h| h.sync_lag.record(f64::from(ms) / 1000.0));
    }
}

/// Handles of the metrics recorded once per twin batch, registered once
/// per thread instead of looked up by name every time (the recorder is
/// installed before the engine starts its threads).
struct Hot {
    apply_latency: metrics::Histogram,
    sync_lag: metrics::Histogram,
    /// [`HOP_LATENCY`] of hops `decode` (per chunk) and `apply`.
    decode: metrics::Histogram,
    apply: metrics::Histogram,
}

thread_local! {
    static HOT: Hot = Hot {
        apply_latency: histogram!(APPLY_LATENCY),
        sync_lag: histogram!(SYNC_LAG),
        decode: histogram!(HOP_LATENCY, LABEL_HOP => HOPS[0]),
        apply: histogram!(HOP_LATENCY, LABEL_HOP => HOPS[1]),
    };
}

/// Alert transitions, by severity (raised, acknowledged, cleared), and the
/// number of active alerts they leave.
pub fn alert_transition(severity: &'static str, transition: &'static str) {
    counter!(ALERT_TRANSITIONS, LABEL_SEVERITY => severity, LABEL_TRANSITION => transition).increment(1);
}

/// Active alerts of `severity` changed by `delta` (a raise, a clear, a
/// restored twin's active alerts).
pub fn alerts_active(severity: &'static str, delta: i64) {
    if delta != 0 {
        gauge!(ALERTS_ACTIVE, LABEL_SEVERITY => severity).increment(delta as f64);
    }
}

/// End-to-end latency of a raised alert: processing time it was emitted
/// minus the event time that raised it.
pub fn alert_latency(seconds: f64) {
    histogram!(ALERT_LATENCY).record(seconds.max(0.0));
}

/// Stale sensors of the twins in memory changed by `delta`.
pub fn sensors_stale(delta: i64) {
    if delta != 0 {
        gauge!(SENSORS_STALE).increment(delta as f64);
    }
}

/// Input batches waiting in worker `w`'s mailbox.
pub fn worker_backlog(w: usize, n: usize) {
    gauge!(WORKER_BACKLOG, LABEL_WORKER => w.to_string()).set(n as f64);
}

/// Commands issued or finished (`outcome`), counted once each.
pub fn commands(outcome: &'static str, n: u64) {
    if n > 0 {
        counter!(COMMANDS, LABEL_OUTCOME => outcome).increment(n);
    }
}

/// Pending commands of the twins in memory changed by `delta`.
pub fn commands_pending(delta: i64) {
    if delta != 0 {
        gauge!(COMMANDS_PENDING).increment(delta as f64);
    }
}

/// One HTTP request answered: `route` is the matched pattern.
pub fn http_request(route: &str, status: u16, seconds: f64) {
    counter!(HTTP_REQUESTS, LABEL_ROUTE => route.to_string(), LABEL_STATUS => status.to_string()).increment(1);
    histogram!(HTTP_DURATION, LABEL_ROUTE => route.to_string()).record(seconds);
}

/// A request refused for a missing or wrong bearer token.
pub fn http_auth_failed(route: &str) {
    counter!(HTTP_AUTH_FAILURES, LABEL_ROUTE => route.to_string()).increment(1);
}

/// 1 while the node is ready (`/readyz`).
pub fn ready(up: bool) {
    gauge!(READY).set(if up { 1.0 } else { 0.0 });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `twinstream_*` metric names in `text`; panics on one that
    /// twinstream does not export (a renamed metric would silence an alert
    /// or blank a panel).
    fn named_metrics(text: &str, what: &str) -> Vec<String> {
        let mut named = Vec::new();
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
            assert!(ALL.contains(&base), "{what}: `{name}` is not a twinstream metric");
            named.push(base.to_string());
        }
        named
    }

    #[test]
    fn the_alert_rules_name_only_exported_metrics() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
        let text = std::fs::read_to_string(&path).unwrap();
        let named = named_metrics(&text, &path.display().to_string());
        for wanted in [
            DEAD_LETTERS,
            RECORDS_RECEIVED,
            KAFKA_LAG,
            SENSORS_STALE,
            READY,
            COMMANDS,
        ] {
            assert!(named.iter().any(|n| n == wanted), "no rule on {wanted}");
        }
    }

    /// The Grafana dashboard parses, and every panel query names only
    /// exported metrics.
    #[test]
    fn the_grafana_dashboard_queries_only_exported_metrics() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/twinstream.json");
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut queries = 0;
        let mut named = Vec::new();
        for panel in doc["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().map_or(&[][..], |t| t.as_slice()) {
                let expr = target["expr"].as_str().unwrap();
                let here = named_metrics(expr, &format!("panel `{}`", panel["title"]));
                assert!(!here.is_empty(), "panel `{}`: `{expr}` names no metric", panel["title"]);
                named.extend(here);
                queries += 1;
            }
        }
        assert!(queries >= 20, "{queries} queries");
        for wanted in [
            EVENTS_APPLIED,
            APPLY_LATENCY,
            ALERT_LATENCY,
            DEAD_LETTERS,
            KAFKA_LAG,
            HTTP_REQUESTS,
            COMMANDS_PENDING,
        ] {
            assert!(named.iter().any(|n| n == wanted), "no panel on {wanted}");
        }
    }

    #[test]
    fn metric_names_follow_the_convention() {
        for name in ALL {
            assert!(name.starts_with("twinstream_"), "{name}");
            assert_eq!(ALL.iter().filter(|n| *n == name).count(), 1, "{name} listed twice");
        }
    }
}
