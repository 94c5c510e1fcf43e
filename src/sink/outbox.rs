//! What a broker sink (MQTT, Kafka) holds between a twin's output and the
//! broker's acknowledgement, independent of the transport:
//!
//! * **queue**: rendered messages not yet handed to the client, in order;
//! * **sent**: handed to the client and not all acknowledged, in order;
//! * **held**: twins' batches kept, with their flow permits, while more than
//!   `limit` messages are held (backpressure: the sources stop reading);
//! * **the store outbox**: at every checkpoint the unacknowledged messages of
//!   a durable sink are staged in the checkpoint's `WriteBatch` (column
//!   family `outbox`); an acknowledged stored message is removed in a later
//!   checkpoint; a restarted sink starts with what is stored.
//! * **store-and-forward** (a sink with a `buffer`, e.g. an edge node's
//!   uplink): messages beyond `limit` are kept in the store only (read back
//!   in order as the broker takes them), so an outage of hours costs disk,
//!   not memory. Batches are held back only when the stored messages reach
//!   the buffer's `max_bytes`, or while more than `limit` messages wait for
//!   their first checkpoint.
//!
//! The transport hands messages over ([`Outbox::take`], [`Outbox::sent`]),
//! reports acknowledgements ([`Outbox::ack`]) and lost connections
//! ([`Outbox::requeue`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{json, OutboxOp, SinkError};
use crate::pipeline::OutputBatch;
use crate::pipeline::{Fatal, FatalTx};
use crate::store::{envelope, Checkpoint, Store, StoreError};
use crate::telemetry;
use crate::topology::{OutputKind, WhenFull};
use crate::twin::schema::OutputMask;

/// Format of an outbox value: `[topic length u32 LE][topic][payload]`.
const FORMAT_V1: u16 = 1;
/// Format of an outbox value: `[topic length u32 LE][topic][key length u32
/// LE, u32::MAX: no key][key][header count u16 LE]([name length u16 LE]
/// [name][value length u32 LE][value])*[payload]`.
const FORMAT_V2: u16 = 2;
/// Format 2 after `[partition i32 LE, -1: the partitioner's choice]`.
pub const OUTBOX_FORMAT: u16 = 3;
/// Share of a buffer's `max_bytes` above which the sink warns (and the
/// `TwinstreamSinkBufferNearFull` alert fires).
pub const BUFFER_WARN_RATIO: f64 = 0.8;

/// One message for a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Msg {
    /// Position in the sink's output, stable across restarts (the store key).
    pub seq: u64,
    pub topic: String,
    /// The record key (Kafka).
    pub key: Option<Vec<u8>>,
    /// Record headers (Kafka).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The Kafka partition, when not the key's (a relay to a shard).
    pub partition: Option<i32>,
    pub payload: Vec<u8>,
    /// In the store outbox (staged in a checkpoint, or loaded from it).
    pub stored: bool,
}

/// A message handed to the client.
pub(super) struct Sent {
    pub msg: Msg,
    /// The transport's handle for it (MQTT: the packet id), once known.
    pub tag: Option<u16>,
    pub acked: bool,
}

/// Store-and-forward: the messages the store holds and memory does not.
struct Spill {
    store: Arc<Store>,
    max_bytes: u64,
    /// Bytes of this sink's stored messages not acknowledged yet.
    bytes: u64,
    /// Messages `next..end` are in the store only, to be read back in order.
    next: u64,
    end: u64,
    /// Pushed while `next..end` is not empty: they follow it.
    tail: VecDeque<Msg>,
    /// Pushed since the last checkpoint (memory only until it commits),
    /// and their stored size.
    unstored: usize,
    unstored_bytes: u64,
    /// Above [`BUFFER_WARN_RATIO`] or full, as last said in the log.
    level: BufferLevel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BufferLevel {
    Normal,
    NearFull,
    Full,
}

impl Spill {
    fn spilled(&self) -> usize {
        (self.end - self.next) as usize
    }

    /// Stored and about to be: a batch that takes the buffer past
    /// `max_bytes` waits.
    fn full(&self) -> bool {
        self.bytes + self.unstored_bytes > self.max_bytes
    }
}

pub(super) struct Outbox {
    name: Arc<str>,
    /// Messages held in memory before batches are held back.
    limit: usize,
    when_full: WhenFull,
    /// Unacknowledged messages are stored with checkpoints.
    durable: bool,
    queue: VecDeque<Msg>,
    pub sent: VecDeque<Sent>,
    held: VecDeque<Arc<OutputBatch>>,
    /// Ranges of stored messages acknowledged since the last flush.
    acked_stored: Vec<std::ops::Range<u64>>,
    next_seq: u64,
    /// Messages before this one were stored by an earlier run: the broker
    /// may have them already.
    first_new: u64,
    /// The greatest sequence number handed to the client: the queue's
    /// messages after it were never sent, and follow each other.
    taken: Option<u64>,
    spill: Option<Spill>,
    /// Acknowledged since the last metrics report.
    published: u64,
    /// Dropped (`when_full: drop_oldest`) since the last report.
    dropped: u64,
    reported: Instant,
}

impl Outbox {
    fn new(
        name: &str,
        limit: usize,
        when_full: WhenFull,
        durable: bool,
        queue: VecDeque<Msg>,
        next_seq: u64,
    ) -> Outbox {
        telemetry::sink_queue_limit(name, limit);
        Outbox {
            name: name.into(),
            limit,
            when_full,
            durable,
            queue,
            sent: VecDeque::new(),
            held: VecDeque::new(),
            acked_stored: Vec::new(),
            next_seq,
            first_new: next_seq,
            taken: None,
            spill: None,
            published: 0,
            dropped: 0,
            reported: Instant::now(),
        }
    }

    /// An outbox that starts with the messages sink `name` left in the store.
    pub fn restore(
        name: &str,
        store: &Store,
        limit: usize,
        when_full: WhenFull,
        durable: bool,
    ) -> Result<Outbox, StoreError> {
        let mut queue = VecDeque::new();
        let mut next_seq = 0;
        store.for_each_outbox(name, |seq, value| {
            queue.push_back(read(name, seq, value)?);
            next_seq = seq + 1;
            Ok(())
        })?;
        if !queue.is_empty() {
            tracing::info!(
                sink = name,
                messages = queue.len(),
                "publishing the messages the last run left unacknowledged"
            );
        }
        Ok(Outbox::new(name, limit, when_full, durable, queue, next_seq))
    }

    /// A store-and-forward outbox (always durable): up to `limit` of the
    /// stored messages are read into memory, the rest stay in the store
    /// until the broker has taken the ones before them.
    pub fn restore_buffered(name: &str, store: Arc<Store>, limit: usize, max_bytes: u64) -> Result<Outbox, StoreError> {
        let mut queue = VecDeque::new();
        let (mut first, mut next_seq, mut bytes) = (None, 0, 0u64);
        store.for_each_outbox(name, |seq, value| {
            first.get_or_insert(seq);
            if queue.len() < limit {
                queue.push_back(read(name, seq, value)?);
            }
            bytes += value.len() as u64;
            next_seq = seq + 1;
            Ok(())
        })?;
        if let Some(first) = first {
            tracing::info!(
                sink = name,
                messages = next_seq - first,
                bytes,
                "forwarding the messages the buffer holds from the last run"
            );
        }
        let in_memory = queue.back().map_or(next_seq, |m| m.seq + 1);
        let mut o = Outbox::new(name, limit, WhenFull::Block, true, queue, next_seq);
        telemetry::sink_buffer_limit(name, max_bytes);
        telemetry::sink_buffer(name, bytes);
        o.spill = Some(Spill {
            store,
            max_bytes,
            bytes,
            next: in_memory,
            end: next_seq,
            tail: VecDeque::new(),
            unstored: 0,
            unstored_bytes: 0,
            level: BufferLevel::Normal,
        });
        o.report_level();
        Ok(o)
    }

    /// Messages held, in memory or (store-and-forward) in the store only.
    pub fn held(&self) -> usize {
        self.queue.len() + self.sent.len() + self.spill.as_ref().map_or(0, |s| s.tail.len() + s.spilled())
    }

    /// Messages not handed to the client yet.
    pub fn queued(&self) -> usize {
        self.held() - self.sent.len()
    }

    /// Whether the broker may have message `seq` already: an earlier run
    /// stored it, and may have sent it before it stopped.
    pub fn maybe_sent_before(&self, seq: u64) -> bool {
        seq < self.first_new
    }

    /// Queues a message at the end.
    pub fn push(&mut self, topic: String, key: Option<Vec<u8>>, headers: Vec<(String, Vec<u8>)>, payload: Vec<u8>) {
        self.push_to(topic, None, key, headers, payload);
    }

    /// Queues a message for a given partition at the end.
    pub fn push_to(
        &mut self,
        topic: String,
        partition: Option<i32>,
        key: Option<Vec<u8>>,
        headers: Vec<(String, Vec<u8>)>,
        payload: Vec<u8>,
    ) {
        let msg = Msg {
            seq: self.next_seq,
            topic,
            key,
            headers,
            partition,
            payload,
            stored: false,
        };
        self.next_seq += 1;
        match &mut self.spill {
            Some(s) => {
                s.unstored += 1;
                s.unstored_bytes += stored_len(&msg) as u64;
                if s.spilled() > 0 {
                    s.tail.push_back(msg);
                } else {
                    self.queue.push_back(msg);
                }
            }
            None => self.queue.push_back(msg),
        }
    }

    /// Whether twins' batches must wait: too much in memory, or (store-and-
    /// forward) the buffer is full or too much waits for its first
    /// checkpoint.
    fn over(&self) -> bool {
        match &self.spill {
            Some(s) => s.full() || s.unstored > self.limit,
            None => self.held() > self.limit,
        }
    }

    /// After the messages of `batch` are pushed: keeps the batch (and its
    /// flow permit) while over the limit, or drops the oldest queued
    /// messages (`drop_oldest`).
    pub fn admit(&mut self, batch: Arc<OutputBatch>) {
        match self.when_full {
            WhenFull::Block if self.over() => self.held.push_back(batch),
            WhenFull::Block => {}
            WhenFull::DropOldest => {
                let over = self.held().saturating_sub(self.limit).min(self.queue.len());
                self.queue.drain(..over);
                self.dropped += over as u64;
            }
        }
    }

    /// The next queued message, to hand to the client; give it back with
    /// [`Outbox::untake`] if the client cannot take it now. Store-and-
    /// forward: at most `limit` are handed over unacknowledged, and the
    /// queue is refilled from the store.
    pub fn take(&mut self) -> Option<Msg> {
        if let Some(s) = &self.spill {
            if self.sent.len() >= self.limit {
                return None;
            }
            let behind = s.spilled() > 0 || !s.tail.is_empty();
            if self.queue.is_empty() && behind {
                self.refill();
            }
        }
        let msg = self.queue.pop_front()?;
        self.taken = Some(self.taken.map_or(msg.seq, |t| t.max(msg.seq)));
        Some(msg)
    }

    pub fn untake(&mut self, msg: Msg) {
        self.queue.push_front(msg);
    }

    /// Reads the next stored-only messages back into the queue, in order;
    /// stops at one the store does not hold yet (its checkpoint is still
    /// being committed). Once none is left, the tail follows.
    fn refill(&mut self) {
        let Some(s) = &mut self.spill else { return };
        let (name, limit) = (&self.name, self.limit);
        let (mut expect, end) = (s.next, s.end);
        let queue = &mut self.queue;
        let result = s.store.outbox_from(name, expect, |seq, value| {
            if seq != expect || seq >= end || queue.len() >= limit {
                return Ok(false);
            }
            queue.push_back(read(name, seq, value)?);
            expect += 1;
            Ok(true)
        });
        if let Err(e) = result {
            // Retried at the next take; the node's store is failing.
            tracing::error!(sink = %self.name, error = %e, "cannot read the buffered messages back");
            return;
        }
        s.next = expect;
        if s.spilled() == 0 {
            self.queue.extend(s.tail.drain(..));
        }
    }

    /// The client took `msg`; it waits for its acknowledgement.
    pub fn sent(&mut self, msg: Msg) {
        self.sent.push_back(Sent {
            msg,
            tag: None,
            acked: false,
        });
    }

    /// The broker acknowledged the sent message `seq`; false if there is no
    /// such message waiting.
    pub fn ack(&mut self, seq: u64) -> bool {
        // `sent` is in sequence order unless a failed message was sent
        // again after later ones: then search it.
        let i = match self.sent.binary_search_by_key(&seq, |s| s.msg.seq) {
            Ok(i) if !self.sent[i].acked => Some(i),
            _ => self.sent.iter().position(|s| s.msg.seq == seq && !s.acked),
        };
        let Some(i) = i else { return false };
        self.sent[i].acked = true;
        self.complete();
        true
    }

    /// Retires the acknowledged messages at the head of `sent`.
    pub fn complete(&mut self) {
        while self.sent.front().is_some_and(|s| s.acked) {
            let s = self.sent.pop_front().expect("checked");
            self.retire(&s.msg);
        }
    }

    /// `msg` is acknowledged and leaves the outbox (and the store).
    fn retire(&mut self, msg: &Msg) {
        self.published += 1;
        if !msg.stored {
            return;
        }
        match self.acked_stored.last_mut() {
            Some(r) if r.end == msg.seq => r.end += 1,
            _ => self.acked_stored.push(msg.seq..msg.seq + 1),
        }
        if let Some(s) = &mut self.spill {
            s.bytes = s.bytes.saturating_sub(stored_len(msg) as u64);
        }
    }

    /// The sent message `seq` failed: it goes back to the queue, in order,
    /// to be sent again.
    pub fn retry(&mut self, seq: u64) {
        if let Some(i) = self.sent.iter().position(|s| s.msg.seq == seq && !s.acked) {
            let s = self.sent.remove(i).expect("found");
            let at = self.queue.partition_point(|m| m.seq < seq);
            self.queue.insert(at, s.msg);
        }
    }

    /// The connection is gone: what it did not get acknowledged goes back to
    /// the head of the queue, in order.
    pub fn requeue(&mut self) {
        let mut acked = Vec::new();
        while let Some(s) = self.sent.pop_back() {
            if !s.acked {
                self.queue.push_front(s.msg);
            } else {
                acked.push(s.msg);
            }
        }
        for m in acked.iter().rev() {
            self.retire(m);
        }
    }

    /// Releases held batches while under the limit; reports the metrics
    /// (at most every 100 ms).
    pub fn tick(&mut self) {
        while !self.over() && self.held.pop_front().is_some() {}
        if self.reported.elapsed() >= Duration::from_millis(100) {
            self.reported = Instant::now();
            telemetry::sink_queue(&self.name, self.held(), !self.held.is_empty());
            telemetry::sink_written(&self.name, std::mem::take(&mut self.published));
            telemetry::sink_dropped(&self.name, std::mem::take(&mut self.dropped));
            if let Some(s) = &self.spill {
                telemetry::sink_buffer(&self.name, s.bytes);
            }
            self.report_level();
        }
    }

    /// Says in the log when the buffer passes [`BUFFER_WARN_RATIO`], fills
    /// up (ingest is held back) and empties again.
    fn report_level(&mut self) {
        let Some(s) = &mut self.spill else { return };
        let level = if s.full() {
            BufferLevel::Full
        } else if s.bytes as f64 >= s.max_bytes as f64 * BUFFER_WARN_RATIO {
            BufferLevel::NearFull
        } else {
            BufferLevel::Normal
        };
        if level == s.level {
            return;
        }
        let (bytes, max_bytes, messages) = (s.bytes, s.max_bytes, s.spilled() + s.tail.len());
        match level {
            BufferLevel::Full => tracing::error!(sink = %self.name, bytes, max_bytes,
                "buffer full: holding back ingest until the broker takes messages (sources stop; MQTT messages stay with their broker)"),
            BufferLevel::NearFull => tracing::warn!(sink = %self.name, bytes, max_bytes, messages,
                "buffer above {}% of its limit; the broker is not taking messages", (BUFFER_WARN_RATIO * 100.0) as u32),
            BufferLevel::Normal => {
                tracing::info!(sink = %self.name, bytes, max_bytes, "buffer back below its warning level")
            }
        }
        s.level = level;
    }

    /// The outbox changes for the checkpoint being committed: messages not
    /// acknowledged and not stored yet (durable sinks), and stored ones
    /// acknowledged since. Store-and-forward: what memory holds beyond
    /// `limit` is then left to the store.
    pub fn flush(&mut self) -> Vec<OutboxOp> {
        let mut ops: Vec<OutboxOp> = self
            .acked_stored
            .drain(..)
            .map(|seqs| OutboxOp::Remove {
                sink: self.name.clone(),
                seqs,
            })
            .collect();
        if self.durable {
            let tail = self.spill.iter_mut().flat_map(|s| s.tail.iter_mut());
            let unsaved = self
                .sent
                .iter_mut()
                .filter(|s| !s.acked)
                .map(|s| &mut s.msg)
                .chain(self.queue.iter_mut())
                .chain(tail)
                .filter(|m| !m.stored);
            let mut added = 0u64;
            for m in unsaved {
                m.stored = true;
                let value = encode(m);
                added += value.len() as u64;
                ops.push(OutboxOp::Put {
                    sink: self.name.clone(),
                    seq: m.seq,
                    value,
                });
            }
            if let Some(s) = &mut self.spill {
                s.bytes += added;
            }
        }
        self.evict();
        ops
    }

    /// Store-and-forward, at a checkpoint: every message is stored (this
    /// checkpoint's batch holds the newest), so memory keeps the first
    /// `limit` queued ones and the store alone the rest. Only messages
    /// never sent leave memory: they follow each other, so the store's
    /// range of them has no gap.
    fn evict(&mut self) {
        let Some(s) = &mut self.spill else { return };
        s.unstored = 0;
        s.unstored_bytes = 0;
        if s.spilled() > 0 {
            if let Some(last) = s.tail.back() {
                debug_assert_eq!(s.tail.front().map(|m| m.seq), Some(s.end));
                s.end = last.seq + 1;
                s.tail.clear();
            }
            return;
        }
        if self.queue.len() <= self.limit {
            return;
        }
        let taken = self.taken;
        let never_sent = self.queue.partition_point(|m| taken.is_some_and(|t| m.seq <= t));
        let from = never_sent.max(self.limit);
        if from >= self.queue.len() {
            return;
        }
        let evicted = self.queue.split_off(from);
        s.next = evicted.front().expect("not empty").seq;
        s.end = evicted.back().expect("not empty").seq + 1;
        debug_assert_eq!(s.spilled(), evicted.len(), "evicted messages follow each other");
    }

    /// Records in the store what was acknowledged and (durable sinks) what
    /// is still held, so the next run sends exactly what is left; says what
    /// happens to what is left.
    pub fn save(&mut self, store: &Store) {
        let left = self.held();
        let ops = self.flush();
        if !ops.is_empty() {
            let mut ckpt = Checkpoint::default();
            for op in &ops {
                op.stage(store, &mut ckpt);
            }
            if let Err(e) = store.commit(ckpt, true) {
                tracing::error!(sink = %self.name, error = %e, "cannot record the sink's outbox");
            }
        }
        if left > 0 {
            if self.durable {
                tracing::info!(sink = %self.name, messages = left,
                    "stopped with messages not acknowledged by the broker; they are kept and published on the next start");
            } else {
                tracing::warn!(sink = %self.name, messages = left,
                    "stopped with QoS 0 messages not published; they are dropped");
            }
        }
    }
}

/// A stored message of sink `name`.
fn read(name: &str, seq: u64, value: &[u8]) -> Result<Msg, StoreError> {
    let mut msg = decode(value).map_err(|cause| StoreError::Envelope {
        key: format!("outbox {name}/{seq}"),
        cause,
    })?;
    msg.seq = seq;
    Ok(msg)
}

/// Calls `f(kind, name, line, redelivered)` for each output of `batch`
/// that `mask` takes, then each of its events when the mask takes
/// `events`: its `{kind}` label, its `{name}` (an event's: its sensor), its
/// JSON line without the newline (rendered into `line`), and whether it is
/// an event its source may have delivered before.
pub(super) fn each_output(
    batch: &OutputBatch,
    mask: OutputMask,
    sources: &[Arc<str>],
    line: &mut Vec<u8>,
    mut f: impl FnMut(&'static str, &str, &[u8], bool),
) {
    let trim = |line: &mut Vec<u8>| {
        if line.last() == Some(&b'\n') {
            line.pop();
        }
    };
    for o in &batch.outputs {
        let Some(kind) = o.kind().filter(|k| mask.has(*k)) else {
            continue;
        };
        line.clear();
        json::render_output(line, batch, o);
        trim(line);
        if !line.is_empty() {
            f(super::kind_label(kind), json::output_name(batch, o), line, false);
        }
    }
    if !mask.has(OutputKind::Events) {
        return;
    }
    let Some(m) = batch.model.as_deref() else { return };
    for e in &batch.events {
        line.clear();
        json::render_event(line, batch, e, sources);
        trim(line);
        f(
            super::kind_label(OutputKind::Events),
            &m.sensors[e.sensor as usize],
            line,
            e.redelivered,
        );
    }
}

/// Records a failure retrying cannot fix, once: the sink refuses every later
/// flush (so no checkpoint commits past an output that was not delivered)
/// and the node stops, reporting it as the reason.
pub(super) fn fail_once(failed: &mut Option<SinkError>, fatal: &FatalTx, err: SinkError) {
    if failed.is_none() {
        if fatal.send(Fatal::new(err.clone())).is_err() {
            tracing::error!(sink = %err.sink, error = %err, "sink failed");
        }
        *failed = Some(err);
    }
}

pub(super) fn encode(m: &Msg) -> Vec<u8> {
    let headers: usize = m.headers.iter().map(|(n, v)| 6 + n.len() + v.len()).sum();
    let key = m.key.as_ref().map_or(0, Vec::len);
    let mut v = envelope::start(OUTBOX_FORMAT, 14 + m.topic.len() + key + headers + m.payload.len());
    v.extend_from_slice(&m.partition.unwrap_or(-1).to_le_bytes());
    v.extend_from_slice(&(m.topic.len() as u32).to_le_bytes());
    v.extend_from_slice(m.topic.as_bytes());
    match &m.key {
        Some(k) => {
            v.extend_from_slice(&(k.len() as u32).to_le_bytes());
            v.extend_from_slice(k);
        }
        None => v.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
    v.extend_from_slice(&(m.headers.len() as u16).to_le_bytes());
    for (name, value) in &m.headers {
        v.extend_from_slice(&(name.len() as u16).to_le_bytes());
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(&(value.len() as u32).to_le_bytes());
        v.extend_from_slice(value);
    }
    v.extend_from_slice(&m.payload);
    v
}

/// The length of `encode(m)`.
fn stored_len(m: &Msg) -> usize {
    let headers: usize = m.headers.iter().map(|(n, v)| 6 + n.len() + v.len()).sum();
    2 + 14 + m.topic.len() + m.key.as_ref().map_or(0, Vec::len) + headers + m.payload.len()
}

/// A stored message (its `seq` is the store key's, set by the caller).
pub(super) fn decode(value: &[u8]) -> Result<Msg, envelope::EnvelopeError> {
    let (version, body) = envelope::open_any(value, &[FORMAT_V1, FORMAT_V2, OUTBOX_FORMAT], "outbox message")?;
    let mut r = Reader(body);
    let partition = match version {
        OUTBOX_FORMAT => Some(r.u32()? as i32).filter(|p| *p >= 0),
        _ => None,
    };
    let len = r.u32()? as usize;
    let topic = String::from_utf8(r.bytes(len)?.to_vec())
        .map_err(|_| envelope::EnvelopeError::Corrupt("outbox topic is not UTF-8".into()))?;
    let mut msg = Msg {
        seq: 0,
        topic,
        key: None,
        headers: Vec::new(),
        partition,
        payload: Vec::new(),
        stored: true,
    };
    if version >= 2 {
        msg.key = match r.u32()? {
            u32::MAX => None,
            len => Some(r.bytes(len as usize)?.to_vec()),
        };
        for _ in 0..r.u16()? {
            let len = r.u16()? as usize;
            let name = String::from_utf8(r.bytes(len)?.to_vec())
                .map_err(|_| envelope::EnvelopeError::Corrupt("outbox header name is not UTF-8".into()))?;
            let len = r.u32()? as usize;
            msg.headers.push((name, r.bytes(len)?.to_vec()));
        }
    }
    msg.payload = r.0.to_vec();
    Ok(msg)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], envelope::EnvelopeError> {
        if self.0.len() < n {
            return Err(envelope::EnvelopeError::Corrupt("outbox message cut short".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, envelope::EnvelopeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u16(&mut self) -> Result<u16, envelope::EnvelopeError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(key: Option<&[u8]>, headers: &[(&str, &[u8])]) -> Msg {
        Msg {
            seq: 0,
            topic: "plant/p-1/commands".into(),
            key: key.map(<[u8]>::to_vec),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect(),
            partition: None,
            payload: br#"{"id":"x"}"#.to_vec(),
            stored: true,
        }
    }

    #[test]
    fn outbox_values_round_trip_and_refuse_garbage() {
        let to_partition = Msg {
            partition: Some(7),
            ..msg(Some(b"tank-1"), &[("twinstream.kind", b"relay")])
        };
        for m in [
            msg(None, &[]),
            msg(Some(b""), &[]),
            msg(Some(b"p-1"), &[("twinstream.reason", b"malformed"), ("empty", b"")]),
            to_partition,
        ] {
            let v = encode(&m);
            assert_eq!(v.len(), stored_len(&m));
            assert_eq!(decode(&v).unwrap(), m);
            assert!(decode(&v[..v.len() - m.payload.len() - 1]).is_err());
            // Format 2 (no partition) still reads.
            let mut v2 = envelope::start(FORMAT_V2, 0);
            v2.extend_from_slice(&v[6..]);
            assert_eq!(decode(&v2).unwrap(), Msg { partition: None, ..m });
        }
        let v = encode(&msg(Some(b"p-1"), &[("h", b"v")]));
        assert!(decode(&v[..12]).is_err());
        let mut other = v.clone();
        other[0] = 9;
        assert!(matches!(
            decode(&other),
            Err(envelope::EnvelopeError::UnknownVersion { .. })
        ));
    }

    #[test]
    fn values_of_the_first_format_still_read() {
        // `[topic length][topic][payload]`, as MQTT sinks stored them.
        let mut v = envelope::start(FORMAT_V1, 0);
        v.extend_from_slice(&18u32.to_le_bytes());
        v.extend_from_slice(b"plant/p-1/commands");
        v.extend_from_slice(br#"{"id":"x"}"#);
        assert_eq!(decode(&v).unwrap(), msg(None, &[]));
    }

    #[test]
    fn a_failed_message_goes_back_in_order_and_acks_retire_from_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1).unwrap();
        let mut o = Outbox::restore("k", &store, 100, WhenFull::Block, true).unwrap();
        for n in 0..4u8 {
            o.push("t".into(), None, Vec::new(), vec![n]);
        }
        while let Some(m) = o.take() {
            o.sent(m);
        }
        assert!(o.ack(2));
        assert!(!o.ack(2), "acknowledged once");
        assert_eq!(o.sent.len(), 4, "an ack behind an unacked message waits");
        o.retry(1);
        assert!(o.ack(0));
        // 0 and 2 are retired; 1 waits to be sent again.
        assert_eq!(o.sent.iter().map(|s| s.msg.seq).collect::<Vec<_>>(), [3]);
        assert_eq!(o.take().map(|m| m.seq), Some(1));
        // A lost connection puts the unacknowledged back, in order.
        o.requeue();
        assert_eq!(o.take().map(|m| m.seq), Some(3));
        assert_eq!(o.held(), 0);
    }

    fn empty_batch(flow: &crate::pipeline::flow::Flow) -> Arc<OutputBatch> {
        Arc::new(OutputBatch {
            asset: None,
            model: None,
            outputs: Vec::new(),
            dead_letters: Vec::new(),
            events: Vec::new(),
            at_ms: 0,
            permit: flow.acquire(),
        })
    }

    fn commit(store: &Store, ops: &[OutboxOp]) {
        let mut ckpt = Checkpoint::default();
        for op in ops {
            op.stage(store, &mut ckpt);
        }
        store.commit(ckpt, false).unwrap();
    }

    /// Everything the client is handed until it has nothing more, acked.
    fn drain(o: &mut Outbox) -> Vec<u8> {
        let mut got = Vec::new();
        while let Some(m) = o.take() {
            got.push(m.payload[0]);
            let seq = m.seq;
            o.sent(m);
            assert!(o.ack(seq));
        }
        got
    }

    #[test]
    fn a_buffered_outbox_keeps_what_memory_does_not_hold_in_the_store_and_forwards_it_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), 1).unwrap());
        let flow = crate::pipeline::flow::Flow::new(8);
        let mut o = Outbox::restore_buffered("up", store.clone(), 4, 1 << 20).unwrap();
        // The broker is down: ten messages, more than memory takes before
        // a checkpoint stores them, so the batch waits with its permit.
        for n in 0..10u8 {
            o.push("t".into(), Some(b"k".to_vec()), Vec::new(), vec![n]);
        }
        o.admit(empty_batch(&flow));
        o.tick();
        assert_eq!(flow.inflight(), 1, "held until a checkpoint stores them");
        let ops = o.flush();
        assert_eq!(ops.len(), 10);
        assert!(matches!(ops[0], OutboxOp::Put { seq: 0, .. }));
        commit(&store, &ops);
        o.tick();
        assert_eq!(flow.inflight(), 0, "stored: ingest goes on");
        assert_eq!(o.held(), 10);
        assert_eq!(o.queue.len(), 4, "memory keeps `limit` of them");
        // More while the range is in the store: they follow it, and the
        // next checkpoint moves them there too; that checkpoint is not
        // committed yet when the client catches up.
        for n in 10..13u8 {
            o.push("t".into(), None, Vec::new(), vec![n]);
        }
        let pending = o.flush();
        assert_eq!(pending.len(), 3);
        assert!(o.spill.as_ref().unwrap().tail.is_empty());
        // Only `limit` handed over unacknowledged.
        let mut out = Vec::new();
        while let Some(m) = o.take() {
            out.push(m.seq);
            o.sent(m);
        }
        assert_eq!(out, [0, 1, 2, 3]);
        for seq in out {
            o.ack(seq);
        }
        // Read back from the store, stopping before what is not committed.
        assert_eq!(drain(&mut o), [4, 5, 6, 7, 8, 9]);
        assert_eq!(o.held(), 3);
        commit(&store, &pending);
        assert_eq!(drain(&mut o), [10, 11, 12]);
        assert_eq!(o.held(), 0);
        assert_eq!(o.spill.as_ref().unwrap().bytes, 0, "every stored byte acknowledged");
        // One range removes what was acknowledged.
        let ops = o.flush();
        assert_eq!(
            ops,
            [OutboxOp::Remove {
                sink: "up".into(),
                seqs: 0..13
            }]
        );
        commit(&store, &ops);
        let mut left = 0;
        store
            .for_each_outbox("up", |_, _| {
                left += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn a_full_buffer_holds_ingest_back_and_a_restart_forwards_what_it_held() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), 1).unwrap());
        let flow = crate::pipeline::flow::Flow::new(8);
        let size = stored_len(&msg(None, &[])) as u64;
        assert_eq!(size as usize, encode(&msg(None, &[])).len());
        let mut o = Outbox::restore_buffered("up", store.clone(), 2, 5 * size).unwrap();
        for n in 0..5u8 {
            o.push("plant/p-1/commands".into(), None, Vec::new(), vec![n; 10]);
            o.admit(empty_batch(&flow));
            commit(&store, &o.flush());
        }
        o.tick();
        assert_eq!(flow.inflight(), 0);
        // Full: the next batch waits until the broker takes one.
        o.push("plant/p-1/commands".into(), None, Vec::new(), vec![5; 10]);
        o.admit(empty_batch(&flow));
        commit(&store, &o.flush());
        o.tick();
        assert_eq!(flow.inflight(), 1, "a full buffer holds the batch back");
        let m = o.take().unwrap();
        let seq = m.seq;
        o.sent(m);
        assert!(o.ack(seq));
        assert!(!o.ack(seq), "acknowledged once");
        o.tick();
        assert_eq!(o.spill.as_ref().unwrap().bytes, 5 * size);
        assert_eq!(flow.inflight(), 0, "back at the limit: ingest goes on");
        // A crash: the next run forwards the rest, marked as possibly sent.
        commit(&store, &o.flush());
        drop(o);
        let mut again = Outbox::restore_buffered("up", store.clone(), 2, 5 * size).unwrap();
        assert_eq!(again.held(), 5);
        assert_eq!(again.queue.len(), 2, "memory keeps `limit`, the store the rest");
        assert!(again.maybe_sent_before(2) && !again.maybe_sent_before(6));
        again.push("plant/p-1/commands".into(), None, Vec::new(), vec![6; 10]);
        commit(&store, &again.flush());
        assert_eq!(drain(&mut again), [1, 2, 3, 4, 5, 6]);
    }
}
