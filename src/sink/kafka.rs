//! The Kafka sink: outputs produced by an idempotent rdkafka producer to a
//! topic template (`twins.{kind}`), keyed by asset id.
//!
//! * **Keyed, in order.** The record key is the asset id, so every output of
//!   one asset lands in one partition; the idempotent producer (`acks=all`)
//!   keeps their order through its own retries. Outputs are JSON (the same
//!   lines a file sink writes) with a `twinstream.kind` header; events
//!   (`outputs: [events]`, an edge's uplink to the cluster) carry none (their
//!   payload names the kind), and any record the broker may have taken
//!   before carries `twinstream.redelivered`, so a twinstream source
//!   recognises the duplicate.
//! * **Dead letters** are produced as the *original* record: its key and
//!   bytes, with headers naming the origin (`twinstream.origin.topic`,
//!   `.partition`, `.offset`, `.source`, `.file`, `.line`) and the error
//!   (`twinstream.error.reason`, `twinstream.error.message`).
//! * **Never dropped silently.** librdkafka retries a record until the
//!   brokers take it (`message.timeout.ms` 0: no local timeout); a delivery
//!   that still fails with an error retrying can fix (a topic that does not
//!   exist yet, a timeout a topology configured) is produced again after a
//!   backoff (`twinstream_sink_retries_total`, one warning per streak); one
//!   retrying cannot fix (record too large, not authorized, a fatal producer
//!   error) stops the node, and the record stays in the outbox.
//! * **Survives crashes (outbox).** What the brokers have not acknowledged
//!   at a checkpoint is staged in the checkpoint's `WriteBatch` and produced
//!   again by the next run, as for a QoS 1 MQTT sink ([`super::outbox`]).
//!   Delivery is at least once: a consumer deduplicates by the output's `id`
//!   / `event_id`.
//! * **Bounded.** Beyond `queue` messages held, the twins' batches and their
//!   flow permits are kept, so the sources stop reading.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::outbox::{self, Outbox};
use super::{Cmd, OutboxOp, SinkError};
use crate::cluster::RelayRoutes;
use crate::mqtt::Backoff;
use crate::pipeline::FatalTx;
use crate::pipeline::{DeadLetter, OutputBatch, RelayRecord};
use crate::store::Store;
use crate::telemetry;
use crate::topology::{kafka_topic_char, KafkaSinkSpec, OutputKind, WhenFull};
use crate::twin::model::Output;
use crate::twin::schema::OutputMask;

/// How long a closing sink waits for the brokers to acknowledge what it holds.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Header names of the records this sink produces.
pub mod header {
    /// Every record: the output kind (`alert`, `command`, `dead_letter`, ...).
    pub const KIND: &str = crate::kafka::KIND_HEADER;
    /// Dead letters: why (`malformed`, `unknown_asset`, ...).
    pub const REASON: &str = "twinstream.error.reason";
    /// Dead letters: the error message.
    pub const MESSAGE: &str = "twinstream.error.message";
    /// Dead letters: the source that read the record.
    pub const SOURCE: &str = "twinstream.origin.source";
    /// Dead letters from Kafka: the topic, partition and offset read.
    pub const TOPIC: &str = "twinstream.origin.topic";
    pub const PARTITION: &str = "twinstream.origin.partition";
    pub const OFFSET: &str = "twinstream.origin.offset";
    /// Dead letters from files: the file and the 1-based line.
    pub const FILE: &str = "twinstream.origin.file";
    pub const LINE: &str = "twinstream.origin.line";
    /// A record the broker may have taken before (value `1`).
    pub const REDELIVERED: &str = crate::kafka::REDELIVERED_HEADER;
}

/// The outcome of one record, from librdkafka's delivery callback.
struct Delivery {
    seq: u64,
    result: Result<(), KafkaError>,
}

/// Hands delivery reports to the sink thread; logs librdkafka's complaints.
struct Deliveries {
    sink: Arc<str>,
    tx: Sender<Delivery>,
    /// A client error was logged and no delivery succeeded since.
    failing: Arc<AtomicBool>,
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::log(&self.sink, level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka retries connections itself; say so once per streak.
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(sink = %self.sink, error = %error,
                "Kafka sink cannot reach the brokers ({reason}); holding records, librdkafka retries");
        }
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let result = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.clone()),
        };
        let _ = self.tx.send(Delivery {
            seq: seq as u64,
            result,
        });
    }
}

pub(super) struct KafkaSink {
    name: Arc<str>,
    spec: KafkaSinkSpec,
    mask: OutputMask,
    /// Source index -> name (events name their source).
    sources: Arc<[Arc<str>]>,
    store: Arc<Store>,
    fatal: FatalTx,
    outbox: Outbox,
    producer: Option<ThreadedProducer<Deliveries>>,
    deliveries: Receiver<Delivery>,
    failing: Arc<AtomicBool>,
    /// Nothing is produced before this (a delivery failed).
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// Failed deliveries since the last metrics report.
    retries: u64,
    failed: Option<SinkError>,
    topic: String,
    line: Vec<u8>,
    /// Cluster: where relayed values go (the sink taking `Relays`).
    relays: Option<Arc<RelayRoutes>>,
}

impl KafkaSink {
    /// A cluster's relay sink: values twins relay to followers on other
    /// nodes go to the shards' partitions of the ingest topic.
    pub(super) fn with_relays(mut self, relays: Option<Arc<RelayRoutes>>) -> KafkaSink {
        self.relays = relays;
        self
    }

    /// A sink that starts with the records `name` left in the store.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        name: &str,
        spec: KafkaSinkSpec,
        mask: OutputMask,
        sources: Arc<[Arc<str>]>,
        client_id: &str,
        secrets: &[(String, String)],
        store: Arc<Store>,
        fatal: FatalTx,
    ) -> Result<KafkaSink, SinkError> {
        let sink_error = |message: String| SinkError {
            sink: name.to_string(),
            target: format!("kafka {}", spec.conn.brokers),
            message,
        };
        let outbox = match spec.buffer {
            Some(max_bytes) => Outbox::restore_buffered(name, store.clone(), spec.queue, max_bytes),
            None => Outbox::restore(name, &store, spec.queue, WhenFull::Block, true),
        }
        .map_err(|e| sink_error(e.to_string()))?;
        let (tx, deliveries) = crossbeam_channel::unbounded();
        let failing = Arc::new(AtomicBool::new(false));
        let context = Deliveries {
            sink: name.into(),
            tx,
            failing: failing.clone(),
        };
        let producer = crate::kafka::config(
            &spec.conn,
            &[
                // Retried by librdkafka until the brokers take it; a topology
                // may set a timeout, and the sink then produces it again.
                ("message.timeout.ms", "0"),
                ("linger.ms", "5"),
                ("client.id", client_id),
                // Kafka's default partitioner (murmur2 of the key, as Java
                // clients): a record lands where a cluster's nodes look for
                // its asset (an edge's uplink feeds the cluster's topic).
                ("partitioner", "murmur2_random"),
            ],
            secrets,
        )
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create_with_context(context)
        .map_err(|e| sink_error(format!("cannot create the producer: {e}")))?;
        Ok(KafkaSink {
            name: name.into(),
            spec,
            mask,
            sources,
            store,
            fatal,
            outbox,
            producer: Some(producer),
            deliveries,
            failing,
            retry_at: None,
            backoff: Backoff::default(),
            retries: 0,
            failed: None,
            topic: String::new(),
            line: Vec::with_capacity(512),
            relays: None,
        })
    }

    pub(super) fn run(mut self, cmds: &Receiver<Cmd>) {
        let deliveries = self.deliveries.clone();
        loop {
            self.step();
            crossbeam_channel::select! {
                recv(cmds) -> cmd => match cmd {
                    Ok(Cmd::Deliver(batch)) => self.accept(batch),
                    Ok(Cmd::Flush(reply)) => {
                        let _ = reply.send(self.flush());
                    }
                    Ok(Cmd::Close) | Err(_) => break,
                },
                recv(deliveries) -> d => {
                    if let Ok(d) = d {
                        self.on_delivery(d);
                    }
                }
                default(Duration::from_millis(20)) => {}
            }
        }
        self.close();
    }

    /// Hands queued records to the producer (unless a retry is pending) and
    /// releases held batches.
    fn step(&mut self) {
        self.outbox.tick();
        if self.retries > 0 {
            telemetry::sink_retried(&self.name, std::mem::take(&mut self.retries));
        }
        if self.retry_at.is_some_and(|t| Instant::now() < t) || self.failed.is_some() {
            return;
        }
        self.retry_at = None;
        while let Some(msg) = self.outbox.take() {
            let Some(producer) = &self.producer else {
                self.outbox.untake(msg);
                break;
            };
            let mut record =
                BaseRecord::<[u8], [u8], usize>::with_opaque_to(&msg.topic, msg.seq as usize).payload(&msg.payload[..]);
            if let Some(p) = msg.partition {
                record = record.partition(p);
            }
            if let Some(key) = &msg.key {
                record = record.key(&key[..]);
            }
            let again =
                self.outbox.maybe_sent_before(msg.seq) && !msg.headers.iter().any(|(k, _)| k == header::REDELIVERED);
            if !msg.headers.is_empty() || again {
                let mut headers = msg.headers.iter().fold(
                    OwnedHeaders::new_with_capacity(msg.headers.len() + 1),
                    |h, (key, value)| {
                        h.insert(Header {
                            key,
                            value: Some(&value[..]),
                        })
                    },
                );
                if again {
                    headers = headers.insert(Header {
                        key: header::REDELIVERED,
                        value: Some(&b"1"[..]),
                    });
                }
                record = record.headers(headers);
            }
            match producer.send(record).map_err(|(e, _)| e) {
                Ok(()) => self.outbox.sent(msg),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    // librdkafka's queue is full: deliveries drain it.
                    self.outbox.untake(msg);
                    break;
                }
                Err(e) => {
                    let (seq, topic) = (msg.seq, msg.topic.clone());
                    self.outbox.untake(msg);
                    if permanent(&e) {
                        self.fail(format!("record {seq} cannot be produced to `{topic}`: {e}"));
                    } else {
                        self.back_off(&e);
                    }
                    break;
                }
            }
        }
    }

    fn on_delivery(&mut self, d: Delivery) {
        match d.result {
            Ok(()) => {
                self.outbox.ack(d.seq);
                if self.failing.swap(false, Ordering::Relaxed) {
                    self.backoff.reset();
                    tracing::info!(sink = %self.name, queued = self.outbox.queued(), "Kafka sink delivering again");
                }
            }
            Err(e) if permanent(&e) => {
                self.outbox.retry(d.seq);
                self.fail(format!("record {} was refused: {e}", d.seq));
            }
            Err(e) => {
                self.outbox.retry(d.seq);
                self.back_off(&e);
            }
        }
    }

    /// A delivery failed with an error retrying can fix: produce again
    /// after a backoff; warn once per streak.
    fn back_off(&mut self, e: &KafkaError) {
        self.retries += 1;
        if self.retry_at.is_none() {
            self.retry_at = Some(Instant::now() + self.backoff.next_delay());
        }
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(sink = %self.name, error = %e, queued = self.outbox.queued(),
                "Kafka sink delivery failed; holding the records and producing them again with backoff");
        }
    }

    /// A failure retrying cannot fix: the node stops.
    fn fail(&mut self, message: String) {
        let err = SinkError {
            sink: self.name.to_string(),
            target: format!("kafka {}", self.spec.conn.brokers),
            message,
        };
        outbox::fail_once(&mut self.failed, &self.fatal, err);
    }

    /// Renders the outputs of `batch` this sink takes into the queue; keeps
    /// the batch (and its flow permit) while over the bound.
    fn accept(&mut self, batch: Arc<OutputBatch>) {
        if self.failed.is_some() {
            return;
        }
        let asset = batch.asset.as_deref().unwrap_or("");
        let asset_type = batch.model.as_deref().map_or("", |m| &*m.name);
        let (topic, queue) = (&self.spec.topic, &mut self.outbox);
        outbox::each_output(
            &batch,
            self.mask,
            &self.sources,
            &mut self.line,
            |kind, name, line, again| {
                topic.render(&mut self.topic, asset, asset_type, kind, name, kafka_topic_char);
                // Events are the cluster's ingest: lean records (their
                // payload says `"kind":"event"`), a header only when
                // redelivered.
                let mut headers = Vec::new();
                if kind != super::kind_label(OutputKind::Events) {
                    headers.push((header::KIND.into(), kind.as_bytes().to_vec()));
                }
                if again {
                    headers.push((header::REDELIVERED.into(), b"1".to_vec()));
                }
                queue.push(
                    self.topic.clone(),
                    Some(asset.as_bytes().to_vec()),
                    headers,
                    line.to_vec(),
                );
            },
        );
        if let Some(routes) = self.relays.as_ref().filter(|_| self.mask.has(OutputKind::Relays)) {
            for o in &batch.outputs {
                let (Output::Relay { sensor, latest }, Some(m)) = (o, batch.model.as_deref()) else {
                    continue;
                };
                let shards = routes.targets(asset);
                if shards.is_empty() {
                    continue;
                }
                let payload = serde_json::to_vec(&RelayRecord {
                    kind: "relay",
                    asset,
                    sensor: &m.sensors[*sensor as usize],
                    ts: latest.ts,
                    value: latest.value,
                })
                .expect("a relay serializes");
                self.spec
                    .topic
                    .render(&mut self.topic, asset, asset_type, "relay", "", kafka_topic_char);
                for shard in shards {
                    self.outbox.push_to(
                        self.topic.clone(),
                        Some(shard as i32),
                        Some(asset.as_bytes().to_vec()),
                        vec![(header::KIND.into(), b"relay".to_vec())],
                        payload.clone(),
                    );
                }
            }
        }
        if self.mask.has(OutputKind::DeadLetters) {
            for d in &batch.dead_letters {
                self.spec.topic.render(
                    &mut self.topic,
                    asset,
                    "",
                    "dead_letter",
                    d.reason.code(),
                    kafka_topic_char,
                );
                let key = d
                    .key
                    .clone()
                    .or_else(|| batch.asset.as_ref().map(|a| a.as_bytes().to_vec()));
                self.outbox
                    .push(self.topic.clone(), key, dead_letter_headers(d), d.payload.clone());
            }
        }
        self.outbox.admit(batch);
    }

    fn flush(&mut self) -> Result<Vec<OutboxOp>, SinkError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        Ok(self.outbox.flush())
    }

    /// Waits up to [`CLOSE_WAIT`] for the brokers to acknowledge what is
    /// held, then records in the store what is left for the next run.
    fn close(mut self) {
        let until = Instant::now() + CLOSE_WAIT;
        while self.failed.is_none() && self.outbox.held() > 0 && Instant::now() < until {
            self.step();
            match self.deliveries.recv_timeout(Duration::from_millis(20)) {
                Ok(d) => self.on_delivery(d),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
        // What is not acknowledged now is produced again by the next run.
        self.producer = None;
        if self.failed.is_none() {
            self.outbox.save(&self.store);
        }
    }
}

/// The headers of a dead letter's record: where it came from and why it
/// could not be applied.
fn dead_letter_headers(d: &DeadLetter) -> Vec<(String, Vec<u8>)> {
    let o = &d.origin;
    let mut h = vec![
        (header::KIND.to_string(), b"dead_letter".to_vec()),
        (header::REASON.to_string(), d.reason.code().as_bytes().to_vec()),
        (header::MESSAGE.to_string(), d.message.as_bytes().to_vec()),
        (header::SOURCE.to_string(), o.source.as_bytes().to_vec()),
    ];
    if let Some(t) = &o.topic {
        h.push((header::TOPIC.into(), t.as_bytes().to_vec()));
    }
    if let Some(p) = o.partition {
        h.push((header::PARTITION.into(), p.to_string().into_bytes()));
    }
    if let Some(off) = o.offset {
        h.push((header::OFFSET.into(), off.to_string().into_bytes()));
    }
    if let Some(f) = &o.file {
        h.push((header::FILE.into(), f.as_bytes().to_vec()));
    }
    if o.topic.is_none() {
        h.push((header::LINE.into(), o.line.to_string().into_bytes()));
    }
    h
}

/// A produce or delivery error retrying cannot fix.
fn permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    e.rdkafka_error_code().is_some_and(|code| {
        matches!(
            code,
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidRecord
                | C::InvalidTopic
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::SaslAuthenticationFailed
                | C::Authentication
                | C::InvalidArgument
                | C::InvalidRequiredAcks
                | C::PolicyViolation
                | C::Fatal
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{DeadReason, Origin};

    #[test]
    fn a_dead_letter_record_names_its_origin_and_error_in_headers() {
        let d = DeadLetter {
            origin: Origin {
                source: "fleet".into(),
                file: None,
                line: 3,
                offset: Some(41),
                topic: Some("telemetry".into()),
                partition: Some(5),
            },
            reason: DeadReason::Malformed,
            message: "expected value at line 1".into(),
            payload: b"not json".to_vec(),
            key: Some(b"pump-7".to_vec()),
        };
        let h = dead_letter_headers(&d);
        let get = |k: &str| {
            h.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(get(header::REASON).as_deref(), Some("malformed"));
        assert_eq!(get(header::MESSAGE).as_deref(), Some("expected value at line 1"));
        assert_eq!(get(header::TOPIC).as_deref(), Some("telemetry"));
        assert_eq!(get(header::PARTITION).as_deref(), Some("5"));
        assert_eq!(get(header::OFFSET).as_deref(), Some("41"));
        assert_eq!(get(header::LINE), None, "a Kafka record is named by its offset");
    }

    #[test]
    fn errors_retrying_cannot_fix_stop_the_sink_and_transient_ones_do_not() {
        assert!(permanent(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(permanent(&KafkaError::MessageProduction(
            RDKafkaErrorCode::TopicAuthorizationFailed
        )));
        for transient in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::QueueFull,
        ] {
            assert!(!permanent(&KafkaError::MessageProduction(transient)), "{transient:?}");
        }
    }
}
