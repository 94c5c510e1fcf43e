//! twinstream: an actor-based stateful stream processor for real-time digital
//! twins.
//!
//! # Layout
//!
//! * [`topology`] - the topology YAML: schema, validation (every error with
//!   `file:line:col`), the rule expression language, the `check` summary.
//! * [`source`] - where events come from: JSON-lines files, MQTT (acked from
//!   a write-ahead inbox), Kafka and the simulator; decoding records into
//!   events by the topology's mapping (a record scanner first, `serde_json`
//!   as the fallback).
//! * [`pipeline`] - what passes between the stages: flow permits, decoded
//!   chunks, dead letters, output batches, shard controls and relayed values,
//!   the `Fatal` error components send, the clock, the live feed of changes
//!   the operator's view watches.
//! * [`engine`] - the dataflow: the router (with the node's timer heap fed
//!   from the store's deadline index, passivation of idle twins, and the
//!   relay of related values), worker threads hosting their twins as
//!   virtual actors ([`engine::host`]: restore, supervised apply, snapshot
//!   hooks), checkpoints (epochs + the store writer), start and shutdown,
//!   and the questions the API asks ([`engine::query`]).
//! * [`twin`] - the twin as a pure model (no IO): `apply` (values, sources,
//!   estimates, the model's Kalman filter, staleness, windows, joins, rules
//!   and alerts, the log of what history keeps), forecasts and what-if runs
//!   on a copy, its compiled
//!   per-type schema, the stored record format (indexing a stored per-type
//!   name schema; whole, or in parts for many-sensor twins) and the
//!   read-only views the API shows.
//! * [`sink`] - outputs: stdout and JSON-lines file sinks, MQTT and Kafka
//!   sinks (threads sharing a store-backed outbox, with store-and-forward
//!   for an edge's uplink), dead letters.
//! * [`mqtt`] - MQTT plumbing the source and the sink share: options,
//!   the connection thread, backoff, refusals.
//! * [`kafka`] - Kafka plumbing the source and the sink share: client
//!   configuration with secrets from the environment, librdkafka's logs.
//! * [`store`] - RocksDB: twin records (whole, or in parts whose merge
//!   operands a merge operator folds), their timers (and the deadline index
//!   over them), history (pages of buckets merged by an operator, retention
//!   by a compaction filter) and source positions in versioned envelopes,
//!   written atomically per checkpoint; the sinks' outbox and the MQTT
//!   sources' inbox.
//! * [`report`] - the replay report (workload v1 outputs) from durable state.
//! * [`state_check`] - `check-state`: a state directory verified offline,
//!   every value read through its checksum and decoded.
//! * [`fuzzing`] - the fuzz targets (every reader of outside input as a
//!   function of bytes), run by AFL++ in `fuzz/` and replayed by the tests.
//! * [`cluster`] - shards = partitions of the ingest topic: the
//!   partitioner, what the node owns, per-shard meta, the changelog
//!   (publish with consistency markers, fold on restore; history in a topic
//!   of its own), the directory of
//!   shard owners (where the API forwards), and where relayed values go.
//! * [`priority`] - CPU priorities where threads compete for cores: the
//!   store writer yields to ingestion, the API's threads answer first.
//! * [`telemetry`] - every metric name, the Prometheus recorder,
//!   readiness, and log setup.
//! * [`api`] - the HTTP API (actix-web): twins, forecasts and what-if,
//!   history, alerts, health, metrics, OpenAPI; the operator's web view (an
//!   embedded page and its event stream); bearer-token auth; in a cluster,
//!   forwarding to the owner of another node's twin. It asks the engine through [`engine::query`].
//!
//! `ARCHITECTURE.md` at the repository root has the code map and the
//! invariants each layer keeps.

pub mod api;
pub mod cluster;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod kafka;
pub mod mqtt;
pub mod pipeline;
pub mod priority;
pub mod report;
pub mod sink;
pub mod source;
pub mod state_check;
pub mod store;
pub mod telemetry;
pub mod topology;
pub mod twin;
