//! The changelog: a topic with one partition per shard, keyed by asset id,
//! that lets any node restore a shard another node owned.
//!
//! Records (Kafka Streams' approach, plus a marker instead of transactions),
//! each value framed `[0xC1][kind][incarnation u64 BE][epoch u64 BE]...`
//! (no headers: see [`frame`]):
//!
//! * a **twin record**: key = asset id, `NUL`, the writer's incarnation
//!   (u64 BE) and a slot byte (see [`record_key`]); kind 4, the writer's
//!   incarnation and checkpoint (epoch), the twin's next deadline when it
//!   has one (`[1][i64 BE]` or `[0]`), then the twin's stored record;
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
//! checkpoint with an older offset.
//!
//! **Compaction never removes a committed record.** Compaction keeps the
//! last record of each key, so no record that may stay uncommitted may
//! share a key with a committed one. Twin record keys therefore carry the
//! writer's incarnation (a fenced writer, still writing after another node
//! claimed the shard, writes under keys of its own) and one of two slots:
//! a writer moves an asset to its other slot only once the marker of its
//! last record is verified - no later owner's claim before it - so the slot
//! being written never holds the asset's latest committed record
//! ([`Slots`]); a writer that finds such a claim writes nothing more of the
//! shard. (Keys that carried only the asset id, as earlier
//! builds wrote them, let a fenced writer's record shadow the committed one
//! once compacted: the twin came back empty while its ingest offset was
//! kept.) A restore lists the keys the fold found superseded
//! ([`Restored::stale`]) and writes tombstones for them, so the changelog
//! keeps about one record per asset: a key superseded in one restore's view
//! is superseded in every later one (later records of its incarnation are
//! fenced by that restore's claim), so even a fenced node's tombstones are
//! safe. Marker and claim keys are per incarnation, so compaction keeps
//! each incarnation's last marker.

use std::collections::{BTreeMap, HashMap};
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
    /// Keys of twin records that no restore will use again (superseded,
    /// fenced or never committed): to be removed with tombstones.
    pub stale: Vec<Vec<u8>>,
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
    key: Vec<u8>,
    twin: Twin,
}

/// Applies a changelog partition in log order. Pure: the IO is in
/// [`read`].
#[derive(Default)]
pub struct Fold {
    out: Restored,
    pending: Vec<Pending>,
    /// Every twin record key whose last record is not a tombstone, with its
    /// asset.
    keys: HashMap<Vec<u8>, String>,
    /// The key of each asset's committed record.
    committed_key: HashMap<String, Vec<u8>>,
}

impl Fold {
    /// A twin record of `asset` under `key`.
    pub fn record(&mut self, inc: u64, epoch: u64, asset: &str, key: &[u8], twin: Twin) {
        self.out.records += 1;
        self.keys.insert(key.to_vec(), asset.to_string());
        if inc < self.out.max_incarnation {
            // A writer that lost the shard: fenced.
            self.out.ignored += 1;
            return;
        }
        self.pending.push(Pending {
            inc,
            epoch,
            asset: asset.to_string(),
            key: key.to_vec(),
            twin,
        });
    }

    /// A tombstone: the records of `key` before it are gone (compacted
    /// away, or about to be).
    pub fn tombstone(&mut self, key: &[u8]) {
        self.out.records += 1;
        self.keys.remove(key);
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
                self.out.ignored += 1;
            } else if p.inc == inc && p.epoch <= epoch {
                self.committed_key.insert(p.asset.clone(), p.key);
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
        let before = self.pending.len();
        self.pending.retain(|p| p.inc >= inc);
        self.out.ignored += (before - self.pending.len()) as u64;
    }

    pub fn max_incarnation(&self) -> u64 {
        self.out.max_incarnation
    }

    pub fn finish(mut self) -> Restored {
        self.out.ignored += self.pending.len() as u64;
        let committed = &self.committed_key;
        let mut stale: Vec<Vec<u8>> = self
            .keys
            .into_iter()
            .filter(|(key, asset)| committed.get(asset) != Some(key))
            .map(|(key, _)| key)
            .collect();
        stale.sort_unstable();
        self.out.stale = stale;
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
    config: ClientConfig,
    slots: Mutex<Slots>,
    /// Reads what other writers put between this node's writes.
    reader: Mutex<Option<BaseConsumer>>,
}

/// Which key each record of this node goes under (see [`record_key`]):
/// per shard, the incarnation it writes the shard as, the last slot of each
/// asset (and of the marker) with the checkpoint that wrote it, and how far
/// the partition is known to hold nothing but this node's writes.
///
/// The rule that keeps compaction from removing a committed record: an
/// asset's record moves to its other slot only when its last record is
/// known to be committed for good (its checkpoint's marker **verified**:
/// no claim of a later owner before it); otherwise it overwrites its last
/// record (uncommitted, or committed but not yet known to be). So the slot
/// being written never holds the asset's latest committed record. A marker
/// is verified when every offset between the previous verified one and it
/// is this node's own write; when another writer's messages lie between,
/// they are read ([`Writer::checkpoint`]), and a claim or marker of a later
/// incarnation among them means this node was fenced off the shard: it
/// writes nothing more to it.
#[derive(Debug, Default)]
pub struct Slots(HashMap<u32, ShardSlots>);

#[derive(Debug, Default)]
struct ShardSlots {
    incarnation: u64,
    /// The offset after this node's last write whose predecessors were all
    /// verified (`None`: nothing written yet).
    next: Option<i64>,
    /// The last checkpoint whose marker is verified.
    verified: Option<u64>,
    fenced: bool,
    /// Per asset: the slot and checkpoint of its last record.
    last: HashMap<String, (u8, u64)>,
    /// The same for the shard's marker.
    marker: Option<(u8, u64)>,
}

/// What [`Slots::written`] found of a checkpoint's writes to a shard.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Every offset since the last verified write is this node's own.
    Verified,
    /// Other writers' messages lie in `from..to` (not `mine`): read them and
    /// call [`Slots::inspected`].
    Inspect { from: i64, to: i64 },
}

impl Slots {
    fn shard(&mut self, shard: u32, incarnation: u64) -> &mut ShardSlots {
        let s = self.0.entry(shard).or_default();
        if s.incarnation != incarnation {
            *s = ShardSlots {
                incarnation,
                ..ShardSlots::default()
            };
        }
        s
    }

    /// Whether this node learned it was fenced off `shard` as `incarnation`.
    pub fn fenced(&self, shard: u32, incarnation: u64) -> bool {
        self.0
            .get(&shard)
            .is_some_and(|s| s.incarnation == incarnation && s.fenced)
    }

    /// The slot of the next record of `asset` (`None`: the marker) in
    /// `shard`, written by checkpoint `epoch`.
    pub fn slot(&mut self, shard: u32, incarnation: u64, asset: Option<&str>, epoch: u64) -> u8 {
        let s = self.shard(shard, incarnation);
        let verified = s.verified;
        let last = match asset {
            None => s.marker.get_or_insert((0, epoch)),
            Some(a) => match s.last.get_mut(a) {
                Some(last) => last,
                // An asset's first record in this incarnation: a key of its own.
                None => return s.last.entry(a.to_string()).or_insert((0, epoch)).0,
            },
        };
        let (slot, e) = *last;
        let slot = match e {
            // Twice in one checkpoint: the same record.
            e if e == epoch => slot,
            e if verified.is_some_and(|v| e <= v) => 1 - slot,
            _ => slot,
        };
        *last = (slot, epoch);
        slot
    }

    /// This node's writes of checkpoint `epoch` to `shard` landed at
    /// `offsets` (in order; the marker's last, when `marked`).
    pub fn written(&mut self, shard: u32, incarnation: u64, epoch: u64, offsets: &[i64], marked: bool) -> Written {
        let s = self.shard(shard, incarnation);
        let (Some(&first), Some(&last)) = (offsets.first(), offsets.last()) else {
            return Written::Verified;
        };
        // Before this node's first marker nothing of its own is committed:
        // a claim there fences all of it, and nothing committed is lost.
        let from = s.next.unwrap_or(first);
        let contiguous = offsets.iter().zip(from..).all(|(o, want)| *o == want);
        if contiguous {
            s.next = Some(last + 1);
            if marked {
                s.verified = Some(epoch);
            }
            Written::Verified
        } else {
            Written::Inspect { from, to: last }
        }
    }

    /// What the other writers' messages in the range [`Slots::written`]
    /// named hold: `later_owner` when a claim or marker of an incarnation
    /// after this node's is among them.
    pub fn inspected(&mut self, shard: u32, incarnation: u64, epoch: u64, last: i64, marked: bool, later_owner: bool) {
        let s = self.shard(shard, incarnation);
        if later_owner {
            s.fenced = true;
            return;
        }
        s.next = Some(last + 1);
        if marked {
            s.verified = Some(epoch);
        }
    }
}

/// The key of a twin record: the asset id, `NUL`, the writer's incarnation
/// (u64 BE) and a slot, 0 or 1. Keys are the writer's own, so a fenced
/// writer's record never shadows (in compaction) another writer's, and
/// [`Slots`] picks the slot so that a record that may stay uncommitted never
/// shadows the latest committed one of its own writer.
pub fn record_key(asset: &str, incarnation: u64, slot: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(asset.len() + 10);
    k.extend_from_slice(asset.as_bytes());
    k.push(0);
    k.extend_from_slice(&incarnation.to_be_bytes());
    k.push(slot);
    k
}

/// The asset id of a [`record_key`].
fn asset_of_key(key: &[u8]) -> Result<&str, &'static str> {
    let asset = key
        .len()
        .checked_sub(10)
        .filter(|&n| key[n] == 0 && key[key.len() - 1] <= 1)
        .map(|n| &key[..n])
        .ok_or("a twin record key without its incarnation and slot")?;
    std::str::from_utf8(asset).map_err(|_| "the key is not a UTF-8 asset id")
}

/// One message to write; an empty value is written as a tombstone (no
/// value).
struct Out<'a> {
    partition: u32,
    key: &'a [u8],
    value: Vec<u8>,
}

/// The first byte of a framed changelog value.
const FRAME: u8 = 0xC1;
/// A twin record keyed by asset id alone (earlier builds).
const KIND_RECORD: u8 = 0;
const KIND_MARKER: u8 = 1;
const KIND_CLAIM: u8 = 2;
const KIND_HISTORY: u8 = 3;
/// A twin record under a [`record_key`].
const KIND_KEYED_RECORD: u8 = 4;

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
            config: config.clone(),
            slots: Mutex::new(Slots::default()),
            reader: Mutex::new(None),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes the twin records of checkpoint `epoch`, then a marker per shard
    /// `(shard, incarnation, next offset of its ingest partition)`, and waits
    /// until every one is acknowledged. Returns the changelog's end after
    /// each shard's marker; a shard this node was fenced off (another node
    /// claimed it) is not in the answer: not written once known, and not
    /// answered when this write finds the claim (its marker landed after
    /// the claim, so no restore counts it).
    pub fn checkpoint(
        &self,
        epoch: u64,
        entries: &[Entry],
        incarnation_of: impl Fn(u32) -> u64,
        markers: &[(u32, u64, i64)],
    ) -> Result<Vec<(u32, i64)>, ChangelogError> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut keys = Vec::with_capacity(entries.len() + markers.len());
        let mut values = Vec::with_capacity(entries.len() + markers.len());
        let mut shards = Vec::with_capacity(entries.len() + markers.len());
        for e in entries {
            let inc = incarnation_of(e.shard);
            // A record whose shard has no marker here would never count (a
            // shard let go of meanwhile); nor one of a shard fenced off.
            if !markers.iter().any(|(s, _, _)| *s == e.shard) || slots.fenced(e.shard, inc) {
                continue;
            }
            let timer = match e.timer {
                Some(t) => [&[1u8][..], &t.to_be_bytes()].concat(),
                None => vec![0],
            };
            let slot = slots.slot(e.shard, inc, Some(&e.asset), epoch);
            keys.push(record_key(&e.asset, inc, slot));
            values.push(frame(KIND_KEYED_RECORD, inc, epoch, &[&timer, &e.record]));
            shards.push(e.shard);
        }
        let first_marker = keys.len();
        let markers: Vec<_> = markers.iter().filter(|(s, inc, _)| !slots.fenced(*s, *inc)).collect();
        for (shard, inc, next) in &markers {
            let slot = slots.slot(*shard, *inc, None, epoch);
            keys.push(format!("\0marker/{inc}/{slot}").into_bytes());
            values.push(frame(KIND_MARKER, *inc, epoch, &[&next.to_be_bytes()]));
            shards.push(*shard);
        }
        let out = keys
            .iter()
            .zip(values)
            .zip(&shards)
            .map(|((key, value), shard)| Out {
                partition: *shard,
                key,
                value,
            })
            .collect();
        let offsets = self.send_all(out)?;
        // Verify what was written, shard by shard.
        let mut written: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
        for (shard, offset) in shards.iter().zip(&offsets) {
            written.entry(*shard).or_default().push(*offset);
        }
        let marked = |shard: u32| markers.iter().any(|(s, _, _)| *s == shard);
        for (shard, mine) in written {
            let inc = incarnation_of(shard);
            if let Written::Inspect { from, to } = slots.written(shard, inc, epoch, &mine, marked(shard)) {
                let later = self.later_owner(shard, inc, from, to, &mine)?;
                if later {
                    tracing::warn!(
                        shard,
                        incarnation = inc,
                        "another node claimed this shard: this node writes nothing more of it to the changelog (the group moves it on)"
                    );
                }
                slots.inspected(shard, inc, epoch, to, marked(shard), later);
            }
        }
        Ok(markers
            .iter()
            .enumerate()
            .filter(|(_, (shard, inc, _))| !slots.fenced(*shard, *inc))
            .map(|(i, (shard, _, _))| (*shard, offsets[first_marker + i] + 1))
            .collect())
    }

    /// Whether partition `shard` holds, in `from..=to` and not at `mine`,
    /// a claim or marker of an incarnation after `incarnation`.
    fn later_owner(
        &self,
        shard: u32,
        incarnation: u64,
        from: i64,
        to: i64,
        mine: &[i64],
    ) -> Result<bool, ChangelogError> {
        let mut consumer = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if consumer.is_none() {
            *consumer = Some(reader(&self.config, &self.topic)?);
        }
        let consumer = consumer.as_ref().expect("just set");
        let mut later = false;
        let stop = AtomicBool::new(false);
        read_with(consumer, &self.topic, shard, from, to + 1, &stop, |m| {
            if mine.binary_search(&m.offset()).is_err() {
                if let Ok((KIND_CLAIM | KIND_MARKER, inc, _, _)) = unframe(m.payload().unwrap_or_default()) {
                    later |= inc > incarnation;
                }
            }
            Ok(())
        })?;
        Ok(later)
    }

    /// Writes a tombstone for each of `keys` in changelog partition `shard`
    /// (keys a restore found stale, [`Restored::stale`]); returns the
    /// partition's end after them.
    pub fn tombstones(&self, shard: u32, keys: &[Vec<u8>]) -> Result<Option<i64>, ChangelogError> {
        let out = keys
            .iter()
            .map(|key| Out {
                partition: shard,
                key,
                value: Vec::new(),
            })
            .collect();
        Ok(self.send_all(out)?.last().map(|o| o + 1))
    }

    /// Writes the history records of checkpoint `epoch` to `topic` (the
    /// [`history_topic`]) and waits until every one is acknowledged: before
    /// the checkpoint's markers, so a committed checkpoint's history is
    /// always there. Nothing of a shard this node was fenced off.
    ///
    /// Unlike twin records, a bucket keeps its key (the store's) across
    /// writers: a fenced node's first checkpoint after the claim, before it
    /// learns of the claim, can shadow the committed version of the buckets
    /// it touches, and compaction then loses them (a gap in the history
    /// the next owner restores, never in twin state).
    pub fn history(
        &self,
        topic: &str,
        epoch: u64,
        entries: &[HistoryEntry],
        incarnation_of: impl Fn(u32) -> u64,
    ) -> Result<(), ChangelogError> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let out: Vec<Out<'_>> = entries
            .iter()
            .filter(|e| !slots.fenced(e.shard, incarnation_of(e.shard)))
            .map(|e| Out {
                partition: e.shard,
                key: &e.key,
                value: frame(KIND_HISTORY, incarnation_of(e.shard), epoch, &[&e.value]),
            })
            .collect();
        drop(slots);
        if out.is_empty() {
            return Ok(());
        }
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
                .key(o.key);
            if !o.value.is_empty() {
                record = record.payload(&o.value);
            }
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
        frame(KIND_KEYED_RECORD, 7, 3, &[&[1], &42i64.to_be_bytes(), record]),
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
        if value.is_empty() {
            fold.tombstone(key.ok_or("a tombstone without a key")?);
            return Ok(());
        }
        let (kind, inc, epoch, tail) = unframe(value)?;
        match kind {
            KIND_MARKER => {
                let next = <[u8; 8]>::try_from(tail).map_err(|_| "marker value is not an 8-byte offset")?;
                fold.marker(inc, epoch, i64::from_be_bytes(next));
            }
            KIND_CLAIM => fold.claim(inc),
            KIND_RECORD | KIND_KEYED_RECORD => {
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
                let key = key.ok_or("a twin record without a key")?;
                let asset = if kind == KIND_KEYED_RECORD {
                    asset_of_key(key)?
                } else {
                    asset()?
                };
                fold.record(inc, epoch, asset, key, twin);
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
            let asset = asset()?;
            fold.record(inc, epoch, asset, asset.as_bytes(), twin);
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

    /// A twin record of `asset` by incarnation `inc`, in slot 0.
    fn rec(f: &mut Fold, inc: u64, epoch: u64, asset: &str, t: Twin) {
        f.record(inc, epoch, asset, &record_key(asset, inc, 0), t);
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
        f.record(1, 1, "a", &record_key("a", 1, 0), twin(1));
        f.record(1, 1, "b", &record_key("b", 1, 0), twin(1));
        f.marker(1, 1, 10);
        f.record(1, 2, "a", &record_key("a", 1, 1), twin(2));
        // Epoch 2 never finished.
        let r = f.finish();
        assert_eq!(r.twins["a"], twin(1));
        assert_eq!(r.twins["b"], twin(1));
        assert_eq!(r.next_offset, Some(10));
        assert_eq!(r.stale, vec![record_key("a", 1, 1)], "the unfinished record's key");
        assert_eq!(r.ignored, 1);
    }

    #[test]
    fn a_later_owner_fences_the_records_of_an_earlier_one() {
        let mut f = Fold::default();
        rec(&mut f, 1, 1, "a", twin(1));
        f.marker(1, 1, 10);
        // Owner 1 is writing epoch 2 when owner 2 claims the shard.
        f.record(1, 2, "a", &record_key("a", 1, 1), twin(2));
        f.claim(2);
        rec(&mut f, 2, 1, "b", twin(3));
        // Owner 1 did not know yet: its epoch 2 finishes after the claim.
        rec(&mut f, 1, 2, "c", twin(4));
        f.marker(1, 2, 20);
        f.marker(2, 1, 12);
        let r = f.finish();
        assert_eq!(r.twins.get("a"), Some(&twin(1)));
        assert_eq!(r.twins.get("b"), Some(&twin(3)));
        assert_eq!(r.twins.get("c"), None, "a fenced writer's record");
        assert_eq!(r.next_offset, Some(12));
        assert_eq!(r.max_incarnation, 2);
        assert_eq!(r.stale, vec![record_key("a", 1, 1), record_key("c", 1, 0)]);
    }

    #[test]
    fn a_record_committed_by_a_later_owner_supersedes_the_earlier_key() {
        let mut f = Fold::default();
        rec(&mut f, 1, 1, "a", twin(1));
        f.marker(1, 1, 10);
        f.record(1, 2, "a", &record_key("a", 1, 1), twin(2));
        f.claim(2);
        rec(&mut f, 2, 1, "a", twin(3));
        f.marker(2, 1, 11);
        let r = f.finish();
        assert_eq!(r.twins["a"], twin(3));
        assert_eq!(r.stale, vec![record_key("a", 1, 0), record_key("a", 1, 1)]);
    }

    #[test]
    fn a_tombstoned_key_is_not_stale_again() {
        let mut f = Fold::default();
        rec(&mut f, 1, 1, "a", twin(1));
        f.marker(1, 1, 10);
        f.claim(2);
        rec(&mut f, 2, 1, "a", twin(2));
        f.marker(2, 1, 11);
        f.tombstone(&record_key("a", 1, 0));
        let r = f.finish();
        assert_eq!(r.twins["a"], twin(2));
        assert!(r.stale.is_empty(), "{:?}", r.stale);
        assert_eq!(r.records, 6);
    }

    #[test]
    fn a_claim_without_checkpoints_keeps_the_previous_offset() {
        let mut f = Fold::default();
        rec(&mut f, 1, 1, "a", twin(1));
        f.marker(1, 1, 10);
        f.claim(5);
        let r = f.finish();
        assert_eq!(r.next_offset, Some(10));
        assert_eq!(r.twins.len(), 1);
        assert!(r.stale.is_empty());
    }

    #[test]
    fn nothing_committed_means_start_from_the_beginning() {
        let mut f = Fold::default();
        rec(&mut f, 1, 1, "a", twin(1));
        let r = f.finish();
        assert!(r.twins.is_empty());
        assert_eq!(r.next_offset, None);
        assert_eq!(r.stale, vec![record_key("a", 1, 0)], "never committed");
    }

    #[test]
    fn keyed_records_tombstones_and_bad_keys_are_read_as_written() {
        let none = |_: &str| None;
        let mut f = Fold::default();
        let key = record_key("p-1", 5, 1);
        apply(&mut f, Some(&key), &frame(KIND_KEYED_RECORD, 5, 1, &[&[0], b"r"]), none).unwrap();
        apply(
            &mut f,
            Some(b"\0marker/5"),
            &frame(KIND_MARKER, 5, 1, &[&7i64.to_be_bytes()]),
            none,
        )
        .unwrap();
        apply(&mut f, Some(&record_key("p-1", 4, 0)), b"", none).unwrap();
        assert!(apply(&mut f, None, b"", none).is_err(), "a tombstone names its key");
        for bad in [&b"p-1"[..], b"", &record_key("p-1", 5, 2)] {
            let v = frame(KIND_KEYED_RECORD, 5, 1, &[&[0], b"r"]);
            assert!(apply(&mut f, Some(bad), &v, none).is_err(), "{bad:?}");
        }
        let r = f.finish();
        assert_eq!(r.twins["p-1"].record, b"r");
        assert_eq!(r.next_offset, Some(7));
        assert!(r.stale.is_empty());
    }

    #[test]
    fn an_asset_moves_to_its_other_slot_only_once_its_last_record_is_verified() {
        let mut s = Slots::default();
        assert_eq!(s.slot(3, 9, Some("a"), 1), 0);
        assert_eq!(s.slot(3, 9, None, 1), 0);
        // Twice in one checkpoint: the same record.
        assert_eq!(s.slot(3, 9, Some("a"), 1), 0);
        assert_eq!(s.written(3, 9, 1, &[100, 101], true), Written::Verified);
        assert_eq!(s.slot(3, 9, Some("a"), 2), 1, "checkpoint 1 is verified");
        assert_eq!(s.slot(3, 9, None, 2), 1);
        // Another writer's message at 102: not verified until it is read.
        assert_eq!(
            s.written(3, 9, 2, &[103, 104], true),
            Written::Inspect { from: 102, to: 104 }
        );
        assert_eq!(
            s.slot(3, 9, Some("a"), 3),
            1,
            "checkpoint 2 may not be committed: overwrite it"
        );
        s.inspected(3, 9, 2, 104, true, false);
        assert_eq!(s.slot(3, 9, Some("a"), 3), 1, "the same checkpoint, the same record");
        assert_eq!(s.slot(3, 9, Some("b"), 3), 0);
        assert_eq!(s.written(3, 9, 3, &[105, 106], false), Written::Verified);
        assert_eq!(s.slot(3, 9, Some("a"), 4), 1, "checkpoint 3 had no marker");
        assert_eq!(
            s.written(3, 9, 4, &[107, 109], true),
            Written::Inspect { from: 107, to: 109 }
        );
        s.inspected(3, 9, 4, 109, true, true);
        assert!(s.fenced(3, 9), "a later owner's claim at 108");
        // A new incarnation starts again.
        assert!(!s.fenced(3, 10));
        assert_eq!(s.slot(3, 10, Some("a"), 5), 0);
    }

    /// One step of [`compaction_and_tombstones_never_change_what_a_restore_reads`].
    #[derive(Debug, Clone)]
    enum Step {
        /// Writer `w` (modulo the writers) writes a checkpoint of the
        /// assets in `assets` (a bit set), then its marker unless
        /// `unmarked` (records a later marker commits); with `crash`, no
        /// marker follows and the writer never writes again.
        Checkpoint {
            w: usize,
            assets: u8,
            unmarked: bool,
            crash: bool,
        },
        /// A node claims the shard, folds the log up to its claim and
        /// becomes a writer; its tombstones wait for a `Tombstones` step.
        Restore,
        /// The oldest restore's tombstones land.
        Tombstones,
        /// The broker compacts: the last message of each key stays.
        Compact,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (0usize..4, any::<u8>(), proptest::bool::weighted(0.2), proptest::bool::weighted(0.1))
                .prop_map(|(w, assets, unmarked, crash)| Step::Checkpoint { w, assets, unmarked, crash }),
            1 => Just(Step::Restore),
            1 => Just(Step::Tombstones),
            1 => Just(Step::Compact),
        ]
    }

    /// A message of the simulated changelog partition: offset, key, value.
    type Msg = (i64, Vec<u8>, Vec<u8>);

    fn fold(log: &[Msg]) -> Restored {
        let mut f = Fold::default();
        for (_, k, v) in log {
            apply_value(&mut f, Some(k), v).unwrap();
        }
        f.finish()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Writers (live ones, crashed ones, and fenced ones that go on
        /// writing until they notice), restores that tombstone what they
        /// found stale, and compaction at any point: a restore of the
        /// compacted log always equals the restore of everything ever
        /// written. Keyed by asset id alone, a fenced writer's record
        /// shadowed the committed one (the soak's seed 20261205).
        #[test]
        fn compaction_and_tombstones_never_change_what_a_restore_reads(
            steps in proptest::collection::vec(step(), 1..80)
        ) {
            struct W { inc: u64, epoch: u64, slots: Slots, crashed: bool }
            let mut log: Vec<Msg> = Vec::new();
            let mut everything: Vec<Msg> = Vec::new();
            let mut writers = vec![W { inc: 1, epoch: 0, slots: Slots::default(), crashed: false }];
            let mut tombstones: Vec<Vec<Vec<u8>>> = Vec::new();
            let mut end = 0i64;
            let mut next_offset = 0i64;
            let mut value = 0u8;
            let mut append = |log: &mut Vec<Msg>, everything: &mut Vec<Msg>, key: Vec<u8>, v: Vec<u8>| {
                let offset = end;
                end += 1;
                log.push((offset, key.clone(), v.clone()));
                if !v.is_empty() {
                    everything.push((offset, key, v));
                }
                offset
            };
            for s in steps {
                match s {
                    Step::Checkpoint { w, assets, unmarked, crash } => {
                        let n = writers.len();
                        let w = &mut writers[w % n];
                        if w.crashed || w.slots.fenced(0, w.inc) {
                            continue;
                        }
                        w.epoch += 1;
                        let mut mine = Vec::new();
                        for a in (0..8).filter(|a| assets & (1 << a) != 0) {
                            value = value.wrapping_add(1);
                            let asset = format!("a{a}");
                            let slot = w.slots.slot(0, w.inc, Some(&asset), w.epoch);
                            let v = frame(KIND_KEYED_RECORD, w.inc, w.epoch, &[&[0], &[value]]);
                            mine.push(append(&mut log, &mut everything, record_key(&asset, w.inc, slot), v));
                        }
                        if crash {
                            w.crashed = true;
                            continue;
                        }
                        if !unmarked {
                            next_offset += 1;
                            let slot = w.slots.slot(0, w.inc, None, w.epoch);
                            let v = frame(KIND_MARKER, w.inc, w.epoch, &[&next_offset.to_be_bytes()]);
                            let key = format!("\0marker/{}/{slot}", w.inc).into_bytes();
                            mine.push(append(&mut log, &mut everything, key, v));
                        }
                        if let Written::Inspect { from, to } = w.slots.written(0, w.inc, w.epoch, &mine, !unmarked) {
                            let later = log.iter().any(|(o, _, v)| {
                                (from..=to).contains(o)
                                    && !mine.contains(o)
                                    && matches!(unframe(v), Ok((KIND_CLAIM | KIND_MARKER, inc, _, _)) if inc > w.inc)
                            });
                            w.slots.inspected(0, w.inc, w.epoch, to, !unmarked, later);
                        }
                    }
                    Step::Restore => {
                        let inc = writers.iter().map(|w| w.inc).max().unwrap_or(0) + 1;
                        let claim = frame(KIND_CLAIM, inc, 0, &[]);
                        append(&mut log, &mut everything, format!("\0claim/{inc}").into_bytes(), claim);
                        let restored = fold(&log);
                        proptest::prop_assert_eq!(&restored.twins, &fold(&everything).twins);
                        tombstones.push(restored.stale);
                        writers.push(W { inc, epoch: 0, slots: Slots::default(), crashed: false });
                    }
                    Step::Tombstones => {
                        if !tombstones.is_empty() {
                            for k in tombstones.remove(0) {
                                append(&mut log, &mut everything, k, Vec::new());
                            }
                        }
                    }
                    Step::Compact => {
                        let mut last: HashMap<Vec<u8>, i64> = HashMap::new();
                        for (o, k, _) in &log {
                            last.insert(k.clone(), *o);
                        }
                        log.retain(|(o, k, _)| last[k] == *o);
                    }
                }
                let (now, all) = (fold(&log), fold(&everything));
                proptest::prop_assert_eq!(&now.twins, &all.twins);
                proptest::prop_assert_eq!(now.next_offset, all.next_offset);
                proptest::prop_assert_eq!(now.max_incarnation, all.max_incarnation);
            }
        }
    }
}
