//! The changelog: a topic with one partition per shard, keyed by asset id,
//! that lets any node restore a shard another node owned.
//!
//! Records (Kafka Streams' approach, plus a marker instead of transactions):
//!
//! * a **twin record**: key = asset id, value = the twin's stored record,
//!   headers `tw-inc` (the writer's incarnation), `tw-epoch` (its checkpoint)
//!   and `tw-timer` (the twin's next deadline, when it has one);
//! * a **marker** after each checkpoint's records of the shard: key
//!   `NUL marker/<inc>`, header `tw-kind: marker`, value = the next offset of
//!   the shard's ingest partition. Records of incarnation *i* and epoch <= *e*
//!   are committed once marker (*i*, *e*) follows them;
//! * a **claim** written by a node taking a shard, before it reads it: key
//!   `NUL claim/<inc>`, header `tw-kind: claim`. Anything an older incarnation
//!   writes after a claim (a node that lost the shard without knowing it yet)
//!   is ignored.
//!
//! [`Fold`] applies a partition in log order and keeps, per asset, the last
//! committed record: a restore never mixes records of an unfinished
//! checkpoint with an older offset. Marker and claim keys are per
//! incarnation so compaction keeps each incarnation's last marker; a record
//! an unfinished checkpoint left behind (which compaction would let shadow
//! the committed one) is reported so the new owner writes the committed
//! record again ([`Restored::rewrite`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const H_INC: &str = "tw-inc";
const H_EPOCH: &str = "tw-epoch";
const H_TIMER: &str = "tw-timer";
const H_KIND: &str = "tw-kind";
const MARKER: &[u8] = b"marker";
const CLAIM: &[u8] = b"claim";

/// How long a changelog read may make no progress before it fails.
const STALL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    #[error("changelog `{topic}`: {reason}")]
    Client { topic: String, reason: String },
    #[error("changelog `{topic}` partition {partition}: a write was not acknowledged: {reason}")]
    Delivery {
        topic: String,
        partition: u32,
        reason: String,
    },
    #[error(
        "changelog `{topic}` partition {partition}: record at offset {offset} is not a changelog record: {reason}"
    )]
    Corrupt {
        topic: String,
        partition: u32,
        offset: i64,
        reason: String,
    },
    #[error("changelog `{topic}` partition {partition}: no progress reading up to offset {to} for {STALL:?}")]
    Stalled { topic: String, partition: u32, to: i64 },
    #[error("stopped while restoring")]
    Stopped,
}

/// One twin record of a checkpoint, for the changelog.
#[derive(Debug, Clone)]
pub struct Entry {
    pub shard: u32,
    pub asset: String,
    pub record: Vec<u8>,
    pub timer: Option<i64>,
}

/// A restored twin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Twin {
    pub record: Vec<u8>,
    pub timer: Option<i64>,
}

/// What a fold of a changelog partition restores.
#[derive(Debug, Default)]
pub struct Restored {
    /// The last committed record of every asset.
    pub twins: HashMap<String, Twin>,
    /// Where the shard's ingest partition resumes (the last marker's);
    /// `None`: no checkpoint completed, read it from the start.
    pub next_offset: Option<i64>,
    /// Assets with a record after their committed one that no marker
    /// commits: write the committed record again.
    pub rewrite: Vec<String>,
    /// The highest incarnation of a marker or claim seen.
    pub max_incarnation: u64,
    /// Records read (twin records, markers and claims).
    pub records: u64,
    /// Twin records ignored (unfinished checkpoints, fenced writers).
    pub ignored: u64,
}

struct Pending {
    inc: u64,
    epoch: u64,
    asset: String,
    twin: Twin,
}

/// Applies a changelog partition in log order. Pure: the IO is in
/// [`read`].
#[derive(Default)]
pub struct Fold {
    out: Restored,
    pending: Vec<Pending>,
    discarded: BTreeSet<String>,
}

impl Fold {
    pub fn record(&mut self, inc: u64, epoch: u64, asset: &str, twin: Twin) {
        self.out.records += 1;
        if inc < self.out.max_incarnation {
            // A writer that lost the shard: fenced.
            self.out.ignored += 1;
            self.discarded.insert(asset.to_string());
            return;
        }
        self.pending.push(Pending {
            inc,
            epoch,
            asset: asset.to_string(),
            twin,
        });
    }

    pub fn marker(&mut self, inc: u64, epoch: u64, next_offset: i64) {
        self.out.records += 1;
        if inc < self.out.max_incarnation {
            return;
        }
        self.out.max_incarnation = inc;
        for p in std::mem::take(&mut self.pending) {
            if p.inc < inc {
                self.discard(p.asset);
            } else if p.inc == inc && p.epoch <= epoch {
                // Committed after any record of it that was discarded: that
                // one no longer shadows anything.
                self.discarded.remove(&p.asset);
                self.out.twins.insert(p.asset, p.twin);
            } else {
                self.pending.push(p);
            }
        }
        self.out.next_offset = (next_offset >= 0).then_some(next_offset);
    }

    pub fn claim(&mut self, inc: u64) {
        self.out.records += 1;
        if inc < self.out.max_incarnation {
            return;
        }
        self.out.max_incarnation = inc;
        for p in std::mem::take(&mut self.pending) {
            if p.inc < inc {
                self.discard(p.asset);
            } else {
                self.pending.push(p);
            }
        }
    }

    fn discard(&mut self, asset: String) {
        self.out.ignored += 1;
        self.discarded.insert(asset);
    }

    pub fn max_incarnation(&self) -> u64 {
        self.out.max_incarnation
    }

    pub fn finish(mut self) -> Restored {
        for p in std::mem::take(&mut self.pending) {
            self.discard(p.asset);
        }
        self.out.rewrite = self
            .discarded
            .into_iter()
            .filter(|a| self.out.twins.contains_key(a))
            .collect();
        self.out
    }
}

/// Delivery reports of a [`Writer`]: the offset of each message, by index.
#[derive(Default)]
pub struct Reports {
    delivered: Mutex<Vec<(usize, Result<i64, String>)>>,
}

impl ClientContext for Reports {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::log("changelog", level, facility, message);
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &DeliveryResult<'_>, index: Box<usize>) {
        let r = match result {
            Ok(m) => Ok(m.offset()),
            Err((e, _)) => Err(e.to_string()),
        };
        self.delivered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((*index, r));
    }
}

/// Writes checkpoints and claims to the changelog (an idempotent producer:
/// each partition keeps the order of the writes).
pub struct Writer {
    producer: BaseProducer<Reports>,
    topic: String,
}

/// One message to write.
struct Out<'a> {
    partition: u32,
    key: &'a [u8],
    value: &'a [u8],
    headers: OwnedHeaders,
}

fn header_u64(h: OwnedHeaders, key: &str, v: u64) -> OwnedHeaders {
    h.insert(Header {
        key,
        value: Some(&v.to_be_bytes()),
    })
}

impl Writer {
    pub fn new(config: &ClientConfig, topic: &str) -> Result<Writer, ChangelogError> {
        let mut c = config.clone();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("compression.type", "lz4");
        let producer = c
            .create_with_context(Reports::default())
            .map_err(|e| ChangelogError::Client {
                topic: topic.to_string(),
                reason: format!("cannot create the producer: {e}"),
            })?;
        Ok(Writer {
            producer,
            topic: topic.to_string(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes the twin records of checkpoint `epoch`, then a marker per shard
    /// `(shard, incarnation, next offset of its ingest partition)`, and waits
    /// until every one is acknowledged. Returns the changelog's end after
    /// each shard's marker.
    pub fn checkpoint(
        &self,
        epoch: u64,
        entries: &[Entry],
        incarnation_of: impl Fn(u32) -> u64,
        markers: &[(u32, u64, i64)],
    ) -> Result<Vec<(u32, i64)>, ChangelogError> {
        let mut out = Vec::with_capacity(entries.len() + markers.len());
        for e in entries {
            let mut h = header_u64(OwnedHeaders::new(), H_INC, incarnation_of(e.shard));
            h = header_u64(h, H_EPOCH, epoch);
            if let Some(t) = e.timer {
                h = header_u64(h, H_TIMER, t as u64);
            }
            out.push(Out {
                partition: e.shard,
                key: e.asset.as_bytes(),
                value: &e.record,
                headers: h,
            });
        }
        let keys: Vec<(Vec<u8>, [u8; 8])> = markers
            .iter()
            .map(|(_, inc, next)| (format!("\0marker/{inc}").into_bytes(), next.to_be_bytes()))
            .collect();
        for ((shard, inc, _), (key, value)) in markers.iter().zip(&keys) {
            let h = header_u64(OwnedHeaders::new(), H_INC, *inc);
            let h = header_u64(h, H_EPOCH, epoch).insert(Header {
                key: H_KIND,
                value: Some(MARKER),
            });
            out.push(Out {
                partition: *shard,
                key,
                value,
                headers: h,
            });
        }
        let offsets = self.send_all(out)?;
        let first_marker = entries.len();
        Ok(markers
            .iter()
            .enumerate()
            .map(|(i, (shard, _, _))| (*shard, offsets[first_marker + i] + 1))
            .collect())
    }

    /// Writes a claim per `(shard, incarnation)`; returns the offset of each.
    pub fn claim(&self, claims: &[(u32, u64)]) -> Result<Vec<i64>, ChangelogError> {
        let keys: Vec<Vec<u8>> = claims
            .iter()
            .map(|(_, inc)| format!("\0claim/{inc}").into_bytes())
            .collect();
        let out = claims
            .iter()
            .zip(&keys)
            .map(|((shard, inc), key)| Out {
                partition: *shard,
                key,
                value: &[],
                headers: header_u64(OwnedHeaders::new(), H_INC, *inc).insert(Header {
                    key: H_KIND,
                    value: Some(CLAIM),
                }),
            })
            .collect();
        self.send_all(out)
    }

    /// Announces this node as the owner of `shards` on the owners topic
    /// ([`super::directory`]), and waits until the brokers have it.
    pub fn announce(&self, topic: &str, owners: &[(u32, super::directory::Owner)]) -> Result<(), ChangelogError> {
        let keys: Vec<(Vec<u8>, Vec<u8>)> = owners
            .iter()
            .map(|(shard, o)| (shard.to_string().into_bytes(), o.encode()))
            .collect();
        let out = keys
            .iter()
            .map(|(key, value)| Out {
                partition: 0,
                key,
                value,
                headers: OwnedHeaders::new(),
            })
            .collect();
        self.send_to(topic, out).map(|_| ())
    }

    /// Produces every message and waits for all delivery reports; the
    /// offsets, in order.
    fn send_all(&self, out: Vec<Out<'_>>) -> Result<Vec<i64>, ChangelogError> {
        self.send_to(&self.topic, out)
    }

    fn send_to(&self, topic: &str, out: Vec<Out<'_>>) -> Result<Vec<i64>, ChangelogError> {
        let n = out.len();
        let partitions: Vec<u32> = out.iter().map(|o| o.partition).collect();
        for (i, o) in out.into_iter().enumerate() {
            let mut record = BaseRecord::with_opaque_to(topic, Box::new(i))
                .partition(o.partition as i32)
                .key(o.key)
                .payload(o.value)
                .headers(o.headers);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        self.producer.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => {
                        return Err(ChangelogError::Delivery {
                            topic: topic.to_string(),
                            partition: o.partition,
                            reason: e.to_string(),
                        })
                    }
                }
            }
        }
        let mut offsets = vec![-1i64; n];
        let mut got = 0;
        while got < n {
            // librdkafka retries on its own until `message.timeout.ms`, then
            // reports the failure.
            let _ = self.producer.flush(Duration::from_millis(500));
            let reports = std::mem::take(
                &mut *self
                    .producer
                    .context()
                    .delivered
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            );
            for (i, r) in reports {
                match r {
                    Ok(offset) => offsets[i] = offset,
                    Err(reason) => {
                        return Err(ChangelogError::Delivery {
                            topic: topic.to_string(),
                            partition: partitions[i],
                            reason,
                        })
                    }
                }
                got += 1;
            }
        }
        Ok(offsets)
    }
}

fn header<'a>(m: &'a rdkafka::message::BorrowedMessage<'_>, key: &str) -> Option<&'a [u8]> {
    m.headers()?.iter().find(|h| h.key == key).and_then(|h| h.value)
}

fn u64_of(bytes: Option<&[u8]>) -> Option<u64> {
    bytes.and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes)
}

/// A consumer for reading changelog partitions (assigned, never in a group).
pub fn reader(config: &ClientConfig, topic: &str) -> Result<BaseConsumer, ChangelogError> {
    let mut c = config.clone();
    // Assigned partitions only: the group id is required, never joined.
    c.set("group.id", format!("{topic}-restore"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // A restore reads to a known end: never wait for more.
        .set("fetch.wait.max.ms", "5")
        .set("auto.offset.reset", "earliest");
    c.create().map_err(|e| ChangelogError::Client {
        topic: topic.to_string(),
        reason: format!("cannot create the reader: {e}"),
    })
}

/// The low and high watermark of changelog partition `shard`.
pub fn watermarks(consumer: &BaseConsumer, topic: &str, shard: u32) -> Result<(i64, i64), ChangelogError> {
    consumer
        .fetch_watermarks(topic, shard as i32, Duration::from_secs(10))
        .map_err(|e| ChangelogError::Client {
            topic: topic.to_string(),
            reason: format!("partition {shard}: cannot read its offsets: {e}"),
        })
}

/// Folds changelog partition `shard` from offset `from` up to (not
/// including) `to`.
pub fn read(
    consumer: &BaseConsumer,
    topic: &str,
    shard: u32,
    from: i64,
    to: i64,
    fold: &mut Fold,
    stop: &AtomicBool,
) -> Result<(), ChangelogError> {
    if from >= to {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, shard as i32, Offset::Offset(from))
        .and_then(|()| consumer.assign(&tpl))
        .map_err(|e| ChangelogError::Client {
            topic: topic.to_string(),
            reason: format!("partition {shard}: cannot read it: {e}"),
        })?;
    let corrupt = |offset: i64, reason: &str| ChangelogError::Corrupt {
        topic: topic.to_string(),
        partition: shard,
        offset,
        reason: reason.to_string(),
    };
    let mut progress = Instant::now();
    let mut next = from;
    while next < to {
        if stop.load(Ordering::Relaxed) {
            return Err(ChangelogError::Stopped);
        }
        if progress.elapsed() > STALL {
            return Err(ChangelogError::Stalled {
                topic: topic.to_string(),
                partition: shard,
                to,
            });
        }
        let m = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(e)) => {
                tracing::debug!(topic, shard, error = %e, "changelog read error; librdkafka retries");
                continue;
            }
            Some(Ok(m)) => m,
        };
        progress = Instant::now();
        let offset = m.offset();
        next = offset + 1;
        if offset >= to {
            break;
        }
        let inc = u64_of(header(&m, H_INC)).ok_or_else(|| corrupt(offset, "no `tw-inc` header"))?;
        match header(&m, H_KIND) {
            Some(MARKER) => {
                let epoch = u64_of(header(&m, H_EPOCH)).ok_or_else(|| corrupt(offset, "marker without an epoch"))?;
                let next_offset = m
                    .payload()
                    .and_then(|p| <[u8; 8]>::try_from(p).ok())
                    .map(i64::from_be_bytes)
                    .ok_or_else(|| corrupt(offset, "marker value is not an 8-byte offset"))?;
                fold.marker(inc, epoch, next_offset);
            }
            Some(CLAIM) => fold.claim(inc),
            Some(_) => return Err(corrupt(offset, "unknown `tw-kind`")),
            None => {
                let epoch = u64_of(header(&m, H_EPOCH)).ok_or_else(|| corrupt(offset, "record without an epoch"))?;
                let asset = m
                    .key()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .ok_or_else(|| corrupt(offset, "the key is not a UTF-8 asset id"))?;
                let twin = Twin {
                    record: m.payload().unwrap_or_default().to_vec(),
                    timer: u64_of(header(&m, H_TIMER)).map(|t| t as i64),
                };
                fold.record(inc, epoch, asset, twin);
            }
        }
    }
    let _ = consumer.unassign();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn twin(v: u8) -> Twin {
        Twin {
            record: vec![v],
            timer: None,
        }
    }

    #[test]
    fn records_count_only_once_their_marker_follows() {
        let mut f = Fold::default();
        f.record(1, 1, "a", twin(1));
        f.record(1, 1, "b", twin(1));
        f.marker(1, 1, 10);
        f.record(1, 2, "a", twin(2));
        // Epoch 2 never finished.
        let r = f.finish();
        assert_eq!(r.twins["a"], twin(1));
        assert_eq!(r.twins["b"], twin(1));
        assert_eq!(r.next_offset, Some(10));
        assert_eq!(r.rewrite, vec!["a".to_string()]);
        assert_eq!(r.ignored, 1);
    }

    #[test]
    fn a_later_owner_fences_the_records_of_an_earlier_one() {
        let mut f = Fold::default();
        f.record(1, 1, "a", twin(1));
        f.marker(1, 1, 10);
        // Owner 1 is writing epoch 2 when owner 2 claims the shard.
        f.record(1, 2, "a", twin(2));
        f.claim(2);
        f.record(2, 1, "b", twin(3));
        // Owner 1 did not know yet: its epoch 2 finishes after the claim.
        f.record(1, 2, "c", twin(4));
        f.marker(1, 2, 20);
        f.marker(2, 1, 12);
        let r = f.finish();
        assert_eq!(r.twins.get("a"), Some(&twin(1)));
        assert_eq!(r.twins.get("b"), Some(&twin(3)));
        assert_eq!(r.twins.get("c"), None, "a fenced writer's record");
        assert_eq!(r.next_offset, Some(12));
        assert_eq!(r.max_incarnation, 2);
        assert_eq!(r.rewrite, vec!["a".to_string()]);
    }

    #[test]
    fn a_record_committed_after_a_discarded_one_needs_no_rewrite() {
        let mut f = Fold::default();
        f.record(1, 1, "a", twin(1));
        f.marker(1, 1, 10);
        f.record(1, 2, "a", twin(2));
        f.claim(2);
        f.record(2, 1, "a", twin(3));
        f.marker(2, 1, 11);
        let r = f.finish();
        assert_eq!(r.twins["a"], twin(3));
        assert!(r.rewrite.is_empty(), "the committed record is the last one");
    }

    #[test]
    fn a_claim_without_checkpoints_keeps_the_previous_offset() {
        let mut f = Fold::default();
        f.record(1, 1, "a", twin(1));
        f.marker(1, 1, 10);
        f.claim(5);
        let r = f.finish();
        assert_eq!(r.next_offset, Some(10));
        assert_eq!(r.twins.len(), 1);
        assert!(r.rewrite.is_empty());
    }

    #[test]
    fn nothing_committed_means_start_from_the_beginning() {
        let mut f = Fold::default();
        f.record(1, 1, "a", twin(1));
        let r = f.finish();
        assert!(r.twins.is_empty());
        assert_eq!(r.next_offset, None);
        assert!(r.rewrite.is_empty(), "no committed record to shadow");
    }
}
