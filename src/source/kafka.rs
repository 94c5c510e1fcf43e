//! The Kafka source: an rdkafka `BaseConsumer` on a thread of its own whose
//! offsets live in the twins' snapshots (effectively-once twin state).
//!
//! * Every partition of the topics is assigned explicitly and starts at the
//!   next offset stored with the last durable checkpoint (the beginning when
//!   none is stored); twinstream never relies on the group's committed
//!   offsets for correctness. After a crash the source re-reads exactly what
//!   the durable state does not hold, so state, windows and counts equal an
//!   uninterrupted run.
//! * Records ready in librdkafka's queue (up to [`MAX_BATCH`]) become one
//!   chunk at once; each chunk takes a flow permit and carries the next offset
//!   of the partitions it read, which the router stores with the checkpoint.
//!   One consumer thread keeps each partition's order.
//! * Once a checkpoint is durable, its offsets are also committed to the
//!   consumer group (asynchronously; informational, for lag tools).
//! * The record key is the asset id unless the decode mapping names `asset`.
//!   A record that does not decode is dead-lettered with its topic,
//!   partition, offset and original bytes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::statistics::Statistics;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::decode::{Decoder, Scratch};
use super::{SourceError, SourcePosition};
use crate::cluster::changelog::ChangelogError;
use crate::cluster::member::{Member, MemberError, Membership};
use crate::cluster::partition_for;
use crate::pipeline::flow::{AcquireError, Flow};
use crate::pipeline::{DeadLetter, DeadReason, DecodedChunk, Origin, RelayRecord, RemoteRelay};
use crate::pipeline::{Fatal, FatalTx};
use crate::topology::KafkaSpec;

/// Records per chunk at most.
pub const MAX_BATCH: usize = 4096;
/// How long the engine may have no room before the partitions are paused.
const PAUSE_AFTER: Duration = Duration::from_secs(1);
/// How often librdkafka reports statistics (the consumer lag).
const STATS_EVERY_MS: &str = "1000";
/// How long a stopping source waits for the final checkpoint to commit its
/// offsets to the group.
const FINAL_COMMIT: Duration = Duration::from_secs(10);
/// How often durable offsets are committed to the group (informational: a
/// commit is a broker write; Kafka Streams commits every 30 s). The lag
/// gauges follow every durable checkpoint regardless: they read the offsets
/// stored locally in the consumer.
const COMMIT_EVERY: Duration = Duration::from_secs(5);

pub struct KafkaSource {
    pub source: u16,
    pub name: Arc<str>,
    pub spec: KafkaSpec,
    pub decoder: Arc<Decoder>,
    /// Used when the spec names no group.
    pub default_group: String,
    /// Settings read from the environment at start-up (`properties_env`).
    pub secrets: Vec<(String, String)>,
    /// Where the last durable checkpoint left each partition.
    pub start: SourcePosition,
    /// Errors that stop the node.
    pub fatal: FatalTx,
    /// The node is a member of a cluster sharded by this source's
    /// partitions: the group assigns them (`subscribe`).
    pub cluster: Option<Membership>,
}

/// `(topic, partition, next offset)` a chunk reached.
type Reached = Vec<(Arc<str>, i32, i64)>;
/// Chunks routed and not yet durable, by sequence number.
type Uncommitted = VecDeque<(u64, Reached)>;

/// A record copied out of librdkafka's buffers.
struct Record {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    /// A twinstream sink says the broker may have taken it before.
    redelivered: bool,
    /// A value relayed by a twin of another node (cluster).
    relay: bool,
}

impl KafkaSource {
    fn config(&self) -> ClientConfig {
        let group = if self.spec.group_id.is_empty() {
            &self.default_group
        } else {
            &self.spec.group_id
        };
        let mut c = crate::kafka::config(
            &self.spec.conn,
            &[
                ("auto.offset.reset", "earliest"),
                // Bounded prefetch: what librdkafka buffers while the engine
                // is behind (the source then stops polling).
                ("queued.max.messages.kbytes", "16384"),
                // Consumer lag per partition, from librdkafka's own view of
                // the high watermarks (no extra broker requests).
                ("statistics.interval.ms", STATS_EVERY_MS),
            ],
            &self.secrets,
        );
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        if let Some(cluster) = &self.cluster {
            // The eager protocol: every member releases its shards before
            // any is assigned again, so a shard never has two owners.
            // (Re-taking the same shard is cheap: the local copy is fresh.)
            let session = cluster.session_timeout.as_millis().max(1000);
            c.set("partition.assignment.strategy", "roundrobin")
                .set("session.timeout.ms", session.to_string())
                .set("heartbeat.interval.ms", (session / 4).max(250).to_string());
        }
        c
    }

    /// The brokers and client settings alone (for the changelog clients).
    fn plain_config(&self) -> ClientConfig {
        crate::kafka::config(&self.spec.conn, &[], &self.secrets)
    }

    /// Consumes and routes records until `stop` or a closed flow. `durable`
    /// receives the sequence number up to which chunks are durable.
    pub fn run(self, flow: &Flow, out: &Sender<DecodedChunk>, durable: &Receiver<u64>, stop: &AtomicBool) {
        let seq = Arc::new(AtomicU64::new(0));
        let next_seq = || seq.fetch_add(1, Ordering::Relaxed);
        let finish = |seq: u64| {
            let mut last = DecodedChunk::empty(self.source, seq, 0, 0);
            last.last = true;
            let _ = out.send(last);
        };
        let member =
            (self.cluster.as_ref()).map(|c| Member::new(c, self.plain_config(), self.source, out.clone(), seq.clone()));
        let context = LogContext {
            source: self.name.clone(),
            caught_up: AtomicBool::new(false),
            assigned: std::sync::atomic::AtomicUsize::new(0),
            member,
            fatal: self.fatal.clone(),
        };
        let consumer: BaseConsumer<LogContext> = match self.config().create_with_context(context) {
            Ok(c) => c,
            Err(e) => {
                self.stop_node(format!("cannot create the consumer: {e}"));
                return finish(next_seq());
            }
        };
        let Some(assignment) = self.assignment(&consumer, stop) else {
            return finish(next_seq());
        };
        if let Some(m) = &consumer.context().member {
            // The shards are the partitions; the group assigns them.
            let shards = assignment.count() as u32;
            m.sharding.set_partitions(shards);
            if let Err(e) = m.ensure_changelog(&consumer, shards) {
                self.stop_node(e.to_string());
                return finish(next_seq());
            }
            m.follow_owners();
            let topics: Vec<&str> = self.spec.topics.iter().map(String::as_str).collect();
            if let Err(e) = consumer.subscribe(&topics) {
                self.stop_node(format!("cannot join the consumer group: {e}"));
                return finish(next_seq());
            }
            tracing::info!(source = %self.name, brokers = %self.spec.conn.brokers, shards,
                changelog = %m.changelog_topic, "joined the cluster's consumer group");
        } else {
            if let Err(e) = consumer.assign(&assignment) {
                self.stop_node(format!("cannot assign the partitions: {e}"));
                return finish(next_seq());
            }
            consumer.context().assigned.store(assignment.count(), Ordering::Relaxed);
            tracing::info!(source = %self.name, brokers = %self.spec.conn.brokers, partitions = assignment.count(),
                resumed = self.start.partitions.len(), "Kafka partitions assigned");
        }
        crate::telemetry::kafka_connected(&self.name, true);
        let mut scratch = Scratch::default();
        let mut records: Vec<Record> = Vec::new();
        // Chunks routed and not yet durable, with the offsets they reach.
        let mut uncommitted: Uncommitted = VecDeque::new();
        let mut topics: BTreeMap<String, Arc<str>> = BTreeMap::new();
        let mut failing = false;
        let mut committed_at = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            self.store_durable(&consumer, durable.try_iter().last(), &mut uncommitted);
            if committed_at.elapsed() >= COMMIT_EVERY {
                committed_at = Instant::now();
                self.commit(&consumer, CommitMode::Async);
            }
            let mut timeout = Duration::from_millis(100);
            while records.len() < MAX_BATCH {
                match consumer.poll(timeout) {
                    None => break,
                    Some(Ok(m)) => {
                        failing = false;
                        let topic = topics
                            .entry(m.topic().to_string())
                            .or_insert_with(|| m.topic().into())
                            .clone();
                        records.push(Record {
                            topic,
                            partition: m.partition(),
                            offset: m.offset(),
                            key: m.key().map(<[u8]>::to_vec),
                            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                            redelivered: m
                                .headers()
                                .is_some_and(|h| h.iter().any(|h| h.key == crate::kafka::REDELIVERED_HEADER)),
                            relay: m.headers().is_some_and(|h| {
                                h.iter()
                                    .any(|h| h.key == crate::kafka::KIND_HEADER && h.value == Some(b"relay"))
                            }),
                        });
                    }
                    Some(Err(e)) => {
                        // librdkafka retries connections itself; say so once.
                        if !failing {
                            tracing::warn!(source = %self.name, error = ?e, "Kafka consumer error; librdkafka retries");
                            failing = true;
                        }
                        break;
                    }
                }
                timeout = Duration::ZERO;
            }
            if let Some(m) = &consumer.context().member {
                // Records of a shard handed over while they were buffered:
                // its new owner reads them from the stored offset.
                records.retain(|r| m.owns(r.partition));
            }
            if records.is_empty() {
                continue;
            }
            // Backpressure: when the engine has no room, stop fetching (pause
            // every partition) instead of letting librdkafka prefetch more.
            // librdkafka's prefetch is bounded (16 MiB) anyway; pausing drops
            // it (a resume fetches again), so pause only for a real stall.
            let permit = match flow.acquire_timeout(PAUSE_AFTER) {
                Ok(p) => p,
                Err(AcquireError::Closed) => break,
                Err(AcquireError::Timeout) => {
                    let assignment = consumer.assignment().unwrap_or_else(|_| assignment.clone());
                    let paused = consumer.pause(&assignment).is_ok();
                    crate::telemetry::kafka_paused(&self.name, paused);
                    let since = Instant::now();
                    tracing::info!(source = %self.name, after = ?PAUSE_AFTER,
                        "Kafka partitions paused: the engine has no room for more records");
                    let permit = flow.acquire_until(stop);
                    tracing::info!(source = %self.name, paused_ms = since.elapsed().as_millis() as u64,
                        "Kafka partitions resumed");
                    if paused {
                        if let Err(e) = consumer.resume(&assignment) {
                            self.stop_node(format!("cannot resume the partitions: {e}"));
                            break;
                        }
                        crate::telemetry::kafka_paused(&self.name, false);
                    }
                    let Some(permit) = permit else { break };
                    permit
                }
            };
            let seq = next_seq();
            let shards = consumer.context().member.as_ref().map(|m| m.sharding.partitions());
            let mut chunk = self.chunk(seq, &records, shards, &mut scratch);
            chunk.permit = Some(permit);
            records.clear();
            uncommitted.push_back((seq, chunk.partitions.clone()));
            if out.send(chunk).is_err() {
                return;
            }
        }
        if let Some(m) = &consumer.context().member {
            // The final checkpoint holds every shard: leaving the group
            // needs no handshake.
            m.stopping.store(true, Ordering::Relaxed);
        }
        // Records polled and not routed are read again after a restart (their
        // offsets are not stored). Commit what the final checkpoint holds.
        finish(next_seq());
        let deadline = Instant::now() + FINAL_COMMIT;
        while !uncommitted.is_empty() && Instant::now() < deadline {
            match durable.recv_timeout(Duration::from_millis(10)) {
                Ok(up_to) => self.store_durable(&consumer, Some(up_to), &mut uncommitted),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.commit(&consumer, CommitMode::Sync);
    }

    /// Every partition of the topics, each at its stored next offset (the
    /// beginning when none is stored). Waits for the brokers' metadata,
    /// retrying until `stop`.
    fn assignment(&self, consumer: &BaseConsumer<LogContext>, stop: &AtomicBool) -> Option<TopicPartitionList> {
        let mut backoff = crate::mqtt::Backoff::default();
        let mut warned = false;
        loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let mut tpl = TopicPartitionList::new();
            let mut missing = Vec::new();
            for topic in &self.spec.topics {
                match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                    Ok(md) => {
                        let t = md.topics().iter().find(|t| t.name() == topic);
                        match t.filter(|t| t.error().is_none() && !t.partitions().is_empty()) {
                            Some(t) => {
                                for p in t.partitions() {
                                    let offset = self
                                        .start
                                        .next_offset(topic, p.id())
                                        .map_or(Offset::Beginning, Offset::Offset);
                                    if let Err(e) = tpl.add_partition_offset(topic, p.id(), offset) {
                                        self.stop_node(format!("topic `{topic}` partition {}: {e}", p.id()));
                                        return None;
                                    }
                                }
                            }
                            None => missing.push(format!("topic `{topic}` does not exist (yet)")),
                        }
                    }
                    Err(e) => missing.push(format!("no metadata for `{topic}`: {e}")),
                }
            }
            if missing.is_empty() {
                return Some(tpl);
            }
            if !warned {
                tracing::warn!(source = %self.name, brokers = %self.spec.conn.brokers, problem = %missing.join("; "),
                    "Kafka topics not available; retrying with backoff");
                warned = true;
            }
            let until = Instant::now() + backoff.next_delay();
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Stores in the consumer (locally: the lag gauges read them) the offsets
    /// of the chunks up to `up_to`, which a durable checkpoint holds.
    fn store_durable(&self, consumer: &BaseConsumer<LogContext>, up_to: Option<u64>, uncommitted: &mut Uncommitted) {
        let Some(up_to) = up_to else { return };
        let tpl = take_durable(uncommitted, up_to);
        if tpl.count() > 0 {
            if let Err(e) = consumer.store_offsets(&tpl) {
                tracing::debug!(source = %self.name, error = %e, "storing durable offsets in the consumer failed");
            }
        }
    }

    /// Commits the stored (durable) offsets to the group: informational, for
    /// lag tools; twinstream resumes from its snapshots.
    fn commit(&self, consumer: &BaseConsumer<LogContext>, mode: CommitMode) {
        match consumer.commit_consumer_state(mode) {
            // Nothing stored since the last commit.
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::debug!(source = %self.name, error = %e, "committing offsets to the group failed (informational)")
            }
        }
    }

    /// Decodes `records` into a chunk: the key is handed to the decoder as
    /// the asset (unless the mapping reads it from the value); dead letters
    /// keep the original bytes and name topic, partition and offset.
    ///
    /// In a cluster (`shards`: the partition count) a record whose key
    /// belongs to another partition is dead-lettered (`wrong_partition`).
    fn chunk(&self, seq: u64, records: &[Record], shards: Option<u32>, scratch: &mut Scratch) -> DecodedChunk {
        let mut chunk = DecodedChunk::empty(self.source, seq, 0, 0);
        let mut lines: Vec<u8> = Vec::with_capacity(records.iter().map(|r| r.payload.len() + 64).sum());
        // Line number (1-based) -> record.
        let mut line_of: Vec<usize> = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            if r.relay && shards.is_some() {
                chunk.records += 1;
                match serde_json::from_slice::<RelayRecord>(&r.payload) {
                    Ok(v) => chunk.relays.push(RemoteRelay {
                        asset: v.asset.to_string(),
                        sensor: v.sensor.to_string(),
                        latest: crate::twin::model::Latest {
                            ts: v.ts,
                            value: v.value,
                        },
                        shard: r.partition as u32,
                    }),
                    Err(e) => chunk.dead_letters.push(DeadLetter {
                        origin: self.origin(r),
                        reason: DeadReason::Malformed,
                        message: format!("a relay record (header twinstream.kind: relay) that does not decode: {e}"),
                        payload: r.payload.clone(),
                        key: r.key.clone(),
                    }),
                }
                continue;
            }
            if let (Some(n), Some(key)) = (shards, &r.key) {
                let want = partition_for(key, n);
                if want != r.partition as u32 {
                    chunk.dead_letters.push(DeadLetter {
                        origin: self.origin(r),
                        reason: DeadReason::WrongPartition,
                        message: format!(
                            "asset `{}` belongs to partition {want} of {n} (Kafka's default partitioner: murmur2 of the key), not {}: produce with the default partitioner (librdkafka: `partitioner=murmur2_random`)",
                            String::from_utf8_lossy(key),
                            r.partition
                        ),
                        payload: r.payload.clone(),
                        key: Some(key.clone()),
                    });
                    chunk.records += 1;
                    continue;
                }
            }
            line_of.push(i);
            let flat: Vec<u8> = r
                .payload
                .iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
                .collect();
            match (&r.key, self.spec.key_is_asset) {
                _ if flat.trim_ascii().is_empty() => lines.extend_from_slice(b"null"),
                (Some(key), true) => {
                    let key = String::from_utf8_lossy(key);
                    super::mqtt::splice(&mut lines, &[("asset", &key)], &flat);
                }
                // No key: the decoder reports the missing asset.
                (None, true) => super::mqtt::splice(&mut lines, &[], &flat),
                (_, false) => lines.extend_from_slice(&flat),
            }
            lines.push(b'\n');
        }
        let misrouted = chunk.dead_letters.len();
        self.decoder.decode_lines(&lines, 0, 1, &mut chunk, scratch);
        // Events carry their record's line: mark those of records a
        // twinstream sink produced again.
        if records.iter().any(|r| r.redelivered) {
            for g in &mut chunk.groups {
                for e in &mut g.events {
                    e.redelivered = line_of
                        .get(e.origin as usize - 1)
                        .is_some_and(|i| records[*i].redelivered);
                }
            }
        }
        for d in &mut chunk.dead_letters[misrouted..] {
            if let Some(r) = line_of.get(d.origin.line as usize - 1).map(|i| &records[*i]) {
                d.payload = r.payload.clone();
                d.key = r.key.clone();
                d.origin.topic = Some(r.topic.clone());
                d.origin.partition = Some(r.partition);
                d.origin.offset = Some(r.offset as u64);
            }
        }
        let mut next: BTreeMap<(Arc<str>, i32), i64> = BTreeMap::new();
        for r in records {
            let e = next.entry((r.topic.clone(), r.partition)).or_insert(0);
            *e = (*e).max(r.offset + 1);
        }
        chunk.partitions = next.into_iter().map(|((t, p), n)| (t, p, n)).collect();
        chunk
    }

    /// Where record `r` was read (for its dead letter).
    fn origin(&self, r: &Record) -> Origin {
        Origin {
            source: self.name.clone(),
            file: None,
            line: 0,
            offset: Some(r.offset as u64),
            topic: Some(r.topic.clone()),
            partition: Some(r.partition),
        }
    }

    fn stop_node(&self, reason: String) {
        let _ = self.fatal.send(Fatal::new(SourceError::Kafka {
            source_name: self.name.to_string(),
            reason,
        }));
    }
}

/// Routes librdkafka's logs and errors to tracing (an end of partition is
/// not an error) and its statistics to the consumer-lag gauges.
struct LogContext {
    source: Arc<str>,
    /// Every partition's lag was zero at the last statistics.
    caught_up: AtomicBool,
    /// Partitions assigned (set once assigned): "caught up" needs the lag
    /// of every one of them.
    assigned: std::sync::atomic::AtomicUsize,
    /// A cluster source: hands shards over on rebalances.
    member: Option<Member>,
    fatal: FatalTx,
}

impl ClientContext for LogContext {
    fn stats(&self, statistics: Statistics) {
        let mut total = 0i64;
        let mut known = 0usize;
        for (topic, t) in &statistics.topics {
            // Partition -1 is librdkafka's internal "unassigned" queue.
            for p in t.partitions.values().filter(|p| p.partition >= 0) {
                // Records not yet in a durable checkpoint: the high watermark
                // less the offset stored at the last one (an empty partition
                // has nothing stored and no lag).
                let lag = match p.consumer_lag_stored {
                    lag if lag >= 0 && p.stored_offset >= 0 => lag,
                    _ if p.hi_offset >= 0 && p.hi_offset == p.lo_offset => 0,
                    // Nothing read since it was assigned, and it starts at
                    // the end (a shard taken over with nothing left to read).
                    _ if p.hi_offset >= 0 && p.next_offset >= p.hi_offset => 0,
                    _ => continue,
                };
                crate::telemetry::kafka_lag(&self.source, topic, p.partition, lag);
                total += lag;
                known += 1;
            }
        }
        let assigned = self.assigned.load(Ordering::Relaxed);
        // Readiness: once assigned, connected while some cluster broker (not
        // a bootstrap entry) is up; librdkafka reconnects on its own, so its
        // statistics are where a lost broker shows.
        if assigned > 0 {
            let up = statistics.brokers.values().any(|b| b.nodeid >= 0 && b.state == "UP");
            crate::telemetry::kafka_connected(&self.source, up);
        }
        let caught_up = assigned > 0 && known >= assigned && total == 0;
        if caught_up && !self.caught_up.swap(true, Ordering::Relaxed) {
            tracing::info!(source = %self.source, partitions = known,
                "Kafka source caught up: no partition has records left to read");
        } else if !caught_up {
            self.caught_up.store(false, Ordering::Relaxed);
        }
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        crate::kafka::log(&self.source, level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !eof {
            tracing::warn!(source = %self.source, error = %error, "Kafka client error: {reason}");
        }
    }
}

impl ConsumerContext for LogContext {
    /// A cluster source's rebalance: restore what is assigned before
    /// reading it, and checkpoint what is revoked before releasing it (see
    /// [`Member`]). librdkafka calls this from `poll` on the source thread.
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let Some(m) = &self.member else { return };
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let elements = tpl.elements();
        let partitions: Vec<i32> = elements.iter().map(|e| e.partition()).collect();
        let topic = elements.first().map(|e| e.topic().to_string());
        drop(elements);
        let fail = |what: String| {
            let _ = self.fatal.send(Fatal::new(SourceError::Kafka {
                source_name: self.source.to_string(),
                reason: what,
            }));
        };
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                crate::telemetry::rebalanced("assign");
                match m.acquire(&partitions) {
                    Ok(offsets) => {
                        for (p, next) in offsets {
                            let offset = if next >= 0 {
                                Offset::Offset(next)
                            } else {
                                Offset::Beginning
                            };
                            if let Some(t) = &topic {
                                let _ = tpl.set_partition_offset(t, p, offset);
                            }
                        }
                    }
                    // The node is stopping: it takes nothing over (the
                    // group assigns the shards again once it has left).
                    Err(MemberError::Changelog(ChangelogError::Stopped)) => return,
                    Err(e) => return fail(format!("cannot take over shards {partitions:?}: {e}")),
                }
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    return fail(format!("cannot start reading shards {partitions:?}: {e}"));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                crate::telemetry::rebalanced(if lost { "lost" } else { "revoke" });
                m.release(&partitions, lost);
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::warn!(source = %self.source, error = %e, "releasing partitions failed");
                }
            }
            other => {
                tracing::warn!(source = %self.source, error = ?other, "consumer group rebalance failed; the group retries");
                if !cooperative {
                    let _ = consumer.unassign();
                }
            }
        }
        let n = consumer.assignment().map_or(0, |a| a.count());
        self.assigned.store(n, Ordering::Relaxed);
    }
}

/// The offsets (next, per partition) of the chunks up to `up_to`, removed.
fn take_durable(uncommitted: &mut Uncommitted, up_to: u64) -> TopicPartitionList {
    let mut next: BTreeMap<(Arc<str>, i32), i64> = BTreeMap::new();
    while uncommitted.front().is_some_and(|(s, _)| *s <= up_to) {
        for (t, p, n) in uncommitted.pop_front().expect("checked").1 {
            let e = next.entry((t, p)).or_insert(n);
            *e = (*e).max(n);
        }
    }
    let mut tpl = TopicPartitionList::new();
    for ((t, p), n) in next {
        let _ = tpl.add_partition_offset(&t, p, Offset::Offset(n));
    }
    tpl
}
