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
//!
//! The thread, its outbox, flushes and close are the broker sink's
//! ([`super::broker`]); this module is its Kafka [`Transport`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::broker::{BrokerSink, Headers, Transport};
use super::outbox::Outbox;
use super::SinkError;
use crate::cluster::RelayRoutes;
use crate::mqtt::Backoff;
use crate::pipeline::FatalTx;
use crate::pipeline::{DeadLetter, OutputBatch, RelayRecord};
use crate::store::Store;
use crate::telemetry;
use crate::topology::{kafka_topic_char, KafkaSinkSpec, OutputKind, OutputTopic, WhenFull};
use crate::twin::model::Output;
use crate::twin::schema::OutputMask;

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
pub(super) struct Delivery {
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

/// The Kafka sink: the broker sink over [`Kafka`].
pub(super) type KafkaSink = BrokerSink<Kafka>;

/// Producing through an idempotent rdkafka producer: the transport of a
/// [`KafkaSink`].
pub(super) struct Kafka {
    name: Arc<str>,
    spec: KafkaSinkSpec,
    producer: Option<ThreadedProducer<Deliveries>>,
    deliveries: Receiver<Delivery>,
    failing: Arc<AtomicBool>,
    /// Nothing is produced before this (a delivery failed).
    retry_at: Option<Instant>,
    backoff: Backoff,
    /// Failed deliveries since the last metrics report.
    retries: u64,
    /// Cluster: where relayed values go (the sink taking `Relays`).
    relays: Option<Arc<RelayRoutes>>,
}

impl KafkaSink {
    /// A cluster's relay sink: values twins relay to followers on other
    /// nodes go to the shards' partitions of the ingest topic.
    pub(super) fn with_relays(mut self, relays: Option<Arc<RelayRoutes>>) -> KafkaSink {
        self.transport.relays = relays;
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
        let transport = Kafka {
            name: name.into(),
            spec,
            producer: Some(producer),
            deliveries,
            failing,
            retry_at: None,
            backoff: Backoff::default(),
            retries: 0,
            relays: None,
        };
        Ok(BrokerSink::over(name, transport, outbox, mask, sources, store, fatal))
    }
}

impl Kafka {
    /// A delivery failed with an error retrying can fix: produce again
    /// after a backoff; warn once per streak.
    fn back_off(&mut self, outbox: &Outbox, e: &KafkaError) {
        self.retries += 1;
        if self.retry_at.is_none() {
            self.retry_at = Some(Instant::now() + self.backoff.next_delay());
        }
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(sink = %self.name, error = %e, queued = outbox.queued(),
                "Kafka sink delivery failed; holding the records and producing them again with backoff");
        }
    }
}

impl Transport for Kafka {
    type Event = Delivery;
    const TOPIC_CHAR: fn(char) -> bool = kafka_topic_char;
    // What is not acknowledged now is produced again by the next run.
    const STOP_BEFORE_SAVE: bool = true;

    fn topic(&self) -> &OutputTopic {
        &self.spec.topic
    }

    fn target(&self) -> String {
        format!("kafka {}", self.spec.conn.brokers)
    }

    /// Keyed by asset; the output kind in a header.
    fn output(&self, asset: &str, kind: &'static str, again: bool) -> (Option<Vec<u8>>, Headers) {
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
        (Some(asset.as_bytes().to_vec()), headers)
    }

    fn relays(&self, batch: &OutputBatch, asset: &str, asset_type: &str, topic: &mut String, outbox: &mut Outbox) {
        let Some(routes) = &self.relays else { return };
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
                .render(topic, asset, asset_type, "relay", "", kafka_topic_char);
            for shard in shards {
                outbox.push_to(
                    topic.clone(),
                    Some(shard as i32),
                    Some(asset.as_bytes().to_vec()),
                    vec![(header::KIND.into(), b"relay".to_vec())],
                    payload.clone(),
                    Default::default(),
                );
            }
        }
    }

    /// The original record: its key (or the asset) and bytes, with headers
    /// naming its origin and error.
    fn dead_letter(
        &self,
        batch: &OutputBatch,
        d: &DeadLetter,
        _line: &mut Vec<u8>,
    ) -> (Option<Vec<u8>>, Headers, Vec<u8>) {
        let key = d
            .key
            .clone()
            .or_else(|| batch.asset.as_ref().map(|a| a.as_bytes().to_vec()));
        (key, dead_letter_headers(d), d.payload.clone())
    }

    /// Hands queued records to the producer (unless a retry is pending).
    fn send(&mut self, outbox: &mut Outbox, failed: bool) -> Result<(), String> {
        if self.retries > 0 {
            telemetry::sink_retried(&self.name, std::mem::take(&mut self.retries));
        }
        if self.retry_at.is_some_and(|t| Instant::now() < t) || failed {
            return Ok(());
        }
        self.retry_at = None;
        while let Some(msg) = outbox.take() {
            let Some(producer) = &self.producer else {
                outbox.untake(msg);
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
            let again = outbox.maybe_sent_before(msg.seq) && !msg.headers.iter().any(|(k, _)| k == header::REDELIVERED);
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
                Ok(()) => outbox.sent(msg),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    // librdkafka's queue is full: deliveries drain it.
                    outbox.untake(msg);
                    break;
                }
                Err(e) => {
                    let (seq, topic) = (msg.seq, msg.topic.clone());
                    outbox.untake(msg);
                    if permanent(&e) {
                        return Err(format!("record {seq} cannot be produced to `{topic}`: {e}"));
                    }
                    self.back_off(outbox, &e);
                    break;
                }
            }
        }
        Ok(())
    }

    fn events(&self) -> Option<Receiver<Delivery>> {
        Some(self.deliveries.clone())
    }

    fn on_event(&mut self, outbox: &mut Outbox, d: Delivery) -> Result<(), String> {
        match d.result {
            Ok(()) => {
                outbox.ack(d.seq);
                if self.failing.swap(false, Ordering::Relaxed) {
                    self.backoff.reset();
                    tracing::info!(sink = %self.name, queued = outbox.queued(), "Kafka sink delivering again");
                }
            }
            Err(e) if permanent(&e) => {
                outbox.retry(d.seq);
                return Err(format!("record {} was refused: {e}", d.seq));
            }
            Err(e) => {
                outbox.retry(d.seq);
                self.back_off(outbox, &e);
            }
        }
        Ok(())
    }

    /// Delivery reports end only with the producer: nothing more to wait for.
    fn ended(&mut self, _outbox: &mut Outbox) -> bool {
        false
    }

    /// The producer keeps delivering what it has; nothing more is handed
    /// to it.
    fn halt(&mut self) {}

    fn stop(&mut self) {
        self.producer = None;
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
