//! The changelog: a topic with one partition per shard, keyed by asset id,
//! that lets any node restore a shard another node owned.
//!
//! Records (Kafka Streams' approach, plus a marker instead of transactions),
//! each value framed `[0xC1][kind][incarnation u64 BE][epoch u64 BE]...`
//! (no headers: see [`frame`]):
//!
//! * a **twin record**: key = asset id; kind 0, the writer's incarnation
//!   and checkpoint (epoch), the twin's next deadline when it has one
//!   (`[1][i64 BE]` or `[0]`), then the twin's stored record;
//! * a **marker** after each checkpoint's records of the shard: key
//!   `NUL marker/<inc>`, kind 1, then the next offset of the shard's ingest
//!   partition. Records of incarnation *i* and epoch <= *e* are committed
//!   once marker (*i*, *e*) follows them;
//! * a **claim** written by a node taking a shard, before it reads it: key
//!   `NUL claim/<inc>`, kind 2. Anything an older incarnation writes after a
//!   claim (a node that lost the shard without knowing it yet) is ignored.
//!
//! History (see [`crate::store::history`]) has a topic of its own,
//! `<changelog>.history`, one partition per shard, compacted *and* deleted
//! by age (its retention: the longest a type keeps history): a **bucket**
//! record per downsampled bucket a checkpoint changed, keyed by the
//! bucket's key, carrying the whole bucket as it is after the checkpoint
//! (kind 3, `[inc][epoch]` like a twin record), and a record per alert
//! transition and command. Written (and acknowledged) before the
//! checkpoint's twin records and markers; a restore keeps, per key, the
//! last version whose `(inc, epoch)` a marker of the changelog committed
//! ([`HistoryFold`]). The raw tier is not in it: a shard restored from the
//! changelog has its downsampled history and alert and command history,
//! and its raw tier starts again.
//!
//! Changelogs of earlier builds carried the same fields in record headers
//! (`tw-inc`, `tw-epoch`, `tw-timer`, `tw-kind`); they are still read.
//!
//! [`Fold`] applies a partition in log order and keeps, per asset, the last
//! committed record: a restore never mixes records of an unfinished
//! checkpoint with an older offset. Marker and claim keys are per
//! incarnation so compaction keeps each incarnation's last marker; a record
//! an unfinished checkpoint left behind (which compaction would let shadow
//! the committed one) is reported so the new owner writes the committed
//! record again ([`Restored::rewrite`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Headers};
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
    /// Per incarnation, the last checkpoint a marker committed (what
    /// history records count).
    pub committed: BTreeMap<u64, u64>,
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
        let last = self.out.committed.entry(inc).or_insert(epoch);
        *last = (*last).max(epoch);
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
    value: Vec<u8>,
}

/// The first byte of a framed changelog value.
const FRAME: u8 = 0xC1;
const KIND_RECORD: u8 = 0;
const KIND_MARKER: u8 = 1;
const KIND_CLAIM: u8 = 2;
const KIND_HISTORY: u8 = 3;

/// The history topic of changelog `topic`.
pub fn history_topic(topic: &str) -> String {
    format!("{topic}.history")
}

/// One history record of a checkpoint: a whole bucket, an alert
/// transition or a command, under its store key.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub shard: u32,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// Keeps, per key, the last history record that a marker committed.
/// Pure: the IO is in [`read_history`].
#[derive(Debug, Default)]
pub struct HistoryFold {
    committed: BTreeMap<u64, u64>,
    pub kept: HashMap<Vec<u8>, Vec<u8>>,
    pub records: u64,
    pub ignored: u64,
}

impl HistoryFold {
    /// A fold counting what `committed` (from the changelog's [`Fold`]) commits.
    pub fn new(committed: BTreeMap<u64, u64>) -> HistoryFold {
        HistoryFold {
            committed,
            ..HistoryFold::default()
        }
    }

    pub fn record(&mut self, inc: u64, epoch: u64, key: &[u8], value: &[u8]) {
        self.records += 1;
        if self.committed.get(&inc).is_some_and(|last| epoch <= *last) {
            self.kept.insert(key.to_vec(), value.to_vec());
        } else {
            self.ignored += 1;
        }
    }
}

/// A changelog value: `[FRAME][kind][inc][epoch]` then `tail`. The fields
/// are in the value, not in headers: a broker stores a header as data of
/// its own (tansu's SQLite storage: one query per header when serving a
/// fetch, which made a 10,000-twin restore take 20 s), and the value is
/// compressed with the batch.
fn frame(kind: u8, inc: u64, epoch: u64, tail: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(18 + tail.iter().map(|t| t.len()).sum::<usize>());
    v.push(FRAME);
    v.push(kind);
    v.extend_from_slice(&inc.to_be_bytes());
    v.extend_from_slice(&epoch.to_be_bytes());
    for t in tail {
        v.extend_from_slice(t);
    }
    v
}

/// A framed value: `(kind, inc, epoch, tail)`.
fn unframe(v: &[u8]) -> Result<(u8, u64, u64, &[u8]), &'static str> {
    if v.len() < 18 || v[0] != FRAME {
        return Err("neither framed nor with `tw-inc` headers");
    }
    let u = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
    Ok((v[1], u(&v[2..10]), u(&v[10..18]), &v[18..]))
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
            let timer = match e.timer {
                Some(t) => [&[1u8][..], &t.to_be_bytes()].concat(),
                None => vec![0],
            };
            out.push(Out {
                partition: e.shard,
                key: e.asset.as_bytes(),
                value: frame(KIND_RECORD, incarnation_of(e.shard), epoch, &[&timer, &e.record]),
            });
        }
        let keys: Vec<Vec<u8>> = markers
            .iter()
            .map(|(_, inc, _)| format!("\0marker/{inc}").into_bytes())
            .collect();
        for ((shard, inc, next), key) in markers.iter().zip(&keys) {
            out.push(Out {
                partition: *shard,
                key,
                value: frame(KIND_MARKER, *inc, epoch, &[&next.to_be_bytes()]),
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

    /// Writes the history records of checkpoint `epoch` to `topic` (the
    /// [`history_topic`]) and waits until every one is acknowledged: before
    /// the checkpoint's markers, so a committed checkpoint's history is
    /// always there.
    pub fn history(
        &self,
        topic: &str,
        epoch: u64,
        entries: &[HistoryEntry],
        incarnation_of: impl Fn(u32) -> u64,
    ) -> Result<(), ChangelogError> {
        if entries.is_empty() {
            return Ok(());
        }
        let out = entries
            .iter()
            .map(|e| Out {
                partition: e.shard,
                key: &e.key,
                value: frame(KIND_HISTORY, incarnation_of(e.shard), epoch, &[&e.value]),
            })
            .collect();
        self.send_to(topic, out).map(|_| ())
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
                value: frame(KIND_CLAIM, *inc, 0, &[]),
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
                value: value.clone(),
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
                .payload(&o.value);
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

/// A twin record's changelog value, then a marker committing it, a claim
/// and a history value, as this build writes them (fuzz seeds).
#[doc(hidden)]
pub fn example_values(record: &[u8]) -> [Vec<u8>; 4] {
    [
        frame(KIND_RECORD, 7, 3, &[&[1], &42i64.to_be_bytes(), record]),
        frame(KIND_MARKER, 7, 3, &[&1234i64.to_be_bytes()]),
        frame(KIND_CLAIM, 8, 0, &[]),
        frame(KIND_HISTORY, 7, 3, &[b"{}"]),
    ]
}

/// Applies one changelog value as this build writes it (framed, no
/// headers) to `fold`: what a restore does with each message, for the
/// `stored` fuzz target.
pub fn apply_value(fold: &mut Fold, key: Option<&[u8]>, value: &[u8]) -> Result<(), &'static str> {
    apply(fold, key, value, |_| None)
}

/// Applies one message of the history topic to `fold`.
pub fn apply_history_value(fold: &mut HistoryFold, key: Option<&[u8]>, value: &[u8]) -> Result<(), &'static str> {
    let (kind, inc, epoch, value) = unframe(value)?;
    if kind != KIND_HISTORY {
        return Err("not a history record");
    }
    fold.record(inc, epoch, key.ok_or("a history record without a key")?, value);
    Ok(())
}

/// Applies one changelog message (`key`, `value`, its headers) to `fold`.
fn apply<'m>(
    fold: &mut Fold,
    key: Option<&[u8]>,
    value: &[u8],
    header: impl Fn(&str) -> Option<&'m [u8]>,
) -> Result<(), &'static str> {
    let asset = || {
        key.and_then(|k| std::str::from_utf8(k).ok())
            .ok_or("the key is not a UTF-8 asset id")
    };
    let Some(inc) = u64_of(header(H_INC)) else {
        let (kind, inc, epoch, tail) = unframe(value)?;
        match kind {
            KIND_MARKER => {
                let next = <[u8; 8]>::try_from(tail).map_err(|_| "marker value is not an 8-byte offset")?;
                fold.marker(inc, epoch, i64::from_be_bytes(next));
            }
            KIND_CLAIM => fold.claim(inc),
            KIND_RECORD => {
                let (timer, record) = match tail {
                    [0, rest @ ..] => (None, rest),
                    [1, t @ ..] if t.len() >= 8 => {
                        (Some(i64::from_be_bytes(t[..8].try_into().expect("8 bytes"))), &t[8..])
                    }
                    _ => return Err("record without its timer flag"),
                };
                let twin = Twin {
                    record: record.to_vec(),
                    timer,
                };
                fold.record(inc, epoch, asset()?, twin);
            }
            _ => return Err("unknown kind"),
        }
        return Ok(());
    };
    // A changelog of an earlier build: the fields in headers.
    match header(H_KIND) {
        Some(MARKER) => {
            let epoch = u64_of(header(H_EPOCH)).ok_or("marker without an epoch")?;
            let next = <[u8; 8]>::try_from(value).map_err(|_| "marker value is not an 8-byte offset")?;
            fold.marker(inc, epoch, i64::from_be_bytes(next));
        }
        Some(CLAIM) => fold.claim(inc),
        Some(_) => return Err("unknown `tw-kind`"),
        None => {
            let epoch = u64_of(header(H_EPOCH)).ok_or("record without an epoch")?;
            let twin = Twin {
                record: value.to_vec(),
                timer: u64_of(header(H_TIMER)).map(|t| t as i64),
            };
            fold.record(inc, epoch, asset()?, twin);
        }
    }
    Ok(())
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
    read_with(consumer, topic, shard, from, to, stop, |m| {
        apply(fold, m.key(), m.payload().unwrap_or_default(), |name| header(m, name))
    })
}

/// The last committed record of `asset` in changelog partition `shard`
/// (what a restore of the shard would give it), read through the whole
/// partition: for a twin whose local record is damaged.
pub fn last_committed(
    config: &ClientConfig,
    topic: &str,
    shard: u32,
    asset: &str,
    stop: &AtomicBool,
) -> Result<Option<Twin>, ChangelogError> {
    let consumer = reader(config, topic)?;
    let (lo, hi) = watermarks(&consumer, topic, shard)?;
    let mut fold = Fold::default();
    read(&consumer, topic, shard, lo, hi, &mut fold, stop)?;
    Ok(fold.finish().twins.remove(asset))
}

/// Folds history partition `shard` of `topic` (the [`history_topic`]) from
/// its start to its end.
pub fn read_history(
    consumer: &BaseConsumer,
    topic: &str,
    shard: u32,
    fold: &mut HistoryFold,
    stop: &AtomicBool,
) -> Result<(), ChangelogError> {
    let (from, to) = watermarks(consumer, topic, shard)?;
    read_with(consumer, topic, shard, from, to, stop, |m| {
        apply_history_value(fold, m.key(), m.payload().unwrap_or_default())
    })
}

fn read_with(
    consumer: &BaseConsumer,
    topic: &str,
    shard: u32,
    from: i64,
    to: i64,
    stop: &AtomicBool,
    mut apply: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> Result<(), &'static str>,
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
        apply(&m).map_err(|reason| corrupt(offset, reason))?;
    }
    let _ = consumer.unassign();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Framed values (this build) and header-carried fields (earlier
    /// builds) fold alike; anything else is refused.
    #[test]
    fn framed_and_header_changelog_values_read_the_same() {
        let none = |_: &str| None;
        let mut framed = Fold::default();
        let timer = [&[1u8][..], &77i64.to_be_bytes()].concat();
        apply(
            &mut framed,
            Some(b"p-1"),
            &frame(KIND_RECORD, 5, 1, &[&timer, b"rec"]),
            none,
        )
        .unwrap();
        apply(
            &mut framed,
            Some(b"p-2"),
            &frame(KIND_RECORD, 5, 1, &[&[0], b"two"]),
            none,
        )
        .unwrap();
        apply(
            &mut framed,
            Some(b"\0marker/5"),
            &frame(KIND_MARKER, 5, 1, &[&42i64.to_be_bytes()]),
            none,
        )
        .unwrap();
        apply(&mut framed, Some(b"\0claim/6"), &frame(KIND_CLAIM, 6, 0, &[]), none).unwrap();

        let mut old = Fold::default();
        let inc = 5u64.to_be_bytes();
        let epoch = 1u64.to_be_bytes();
        let t = 77u64.to_be_bytes();
        let (claim_inc, offset) = (6u64.to_be_bytes(), 42i64.to_be_bytes());
        let (inc, epoch, t) = (&inc[..], &epoch[..], &t[..]);
        let (claim_inc, offset) = (&claim_inc[..], &offset[..]);
        let record = |with_timer: bool| {
            move |name: &str| match name {
                H_INC => Some(inc),
                H_EPOCH => Some(epoch),
                H_TIMER if with_timer => Some(t),
                _ => None,
            }
        };
        apply(&mut old, Some(b"p-1"), b"rec", record(true)).unwrap();
        apply(&mut old, Some(b"p-2"), b"two", record(false)).unwrap();
        let marker = |name: &str| match name {
            H_INC => Some(inc),
            H_EPOCH => Some(epoch),
            H_KIND => Some(MARKER),
            _ => None,
        };
        apply(&mut old, Some(b"\0marker/5"), offset, marker).unwrap();
        let claim = |name: &str| match name {
            H_INC => Some(claim_inc),
            H_KIND => Some(CLAIM),
            _ => None,
        };
        apply(&mut old, Some(b"\0claim/6"), b"", claim).unwrap();

        let (a, b) = (framed.finish(), old.finish());
        assert_eq!(a.twins, b.twins);
        assert_eq!(
            a.twins["p-1"],
            Twin {
                record: b"rec".to_vec(),
                timer: Some(77)
            }
        );
        assert_eq!(a.twins["p-2"].timer, None);
        assert_eq!((a.next_offset, a.max_incarnation), (Some(42), 6));
        assert_eq!((b.next_offset, b.max_incarnation), (Some(42), 6));

        let mut f = Fold::default();
        assert!(apply(&mut f, Some(b"p-1"), b"plain bytes", none).is_err());
        assert!(apply(&mut f, Some(b"p-1"), &frame(9, 1, 1, &[]), none).is_err());
        assert!(apply(&mut f, Some(b"p-1"), &frame(KIND_RECORD, 1, 1, &[]), none).is_err());
        assert!(apply(&mut f, Some(&[0xff]), &frame(KIND_RECORD, 1, 1, &[&[0]]), none).is_err());
    }

    fn twin(v: u8) -> Twin {
        Twin {
            record: vec![v],
            timer: None,
        }
    }

    #[test]
    fn history_counts_the_last_version_a_marker_commits() {
        let mut f = Fold::default();
        f.marker(1, 3, 10);
        f.claim(2);
        f.marker(1, 4, 12); // a fenced writer's marker commits nothing
        f.marker(2, 1, 20);
        let mut h = HistoryFold::new(f.finish().committed);
        h.record(1, 2, b"b", b"v1");
        h.record(1, 3, b"b", b"v2");
        h.record(1, 4, b"b", b"zombie"); // epoch 4 of incarnation 1: no marker
        h.record(2, 1, b"c", b"w1");
        h.record(2, 2, b"c", b"w2"); // not committed yet
        assert_eq!(h.kept.get(&b"b"[..]).map(Vec::as_slice), Some(&b"v2"[..]));
        assert_eq!(h.kept.get(&b"c"[..]).map(Vec::as_slice), Some(&b"w1"[..]));
        assert_eq!((h.records, h.ignored), (5, 2));
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
