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
//!
//! It composes the in-memory [`queue`] of held messages, the store-and-
//! forward [`spill`] to the store, and the [`codec`] of stored messages.

mod codec;
mod queue;
mod spill;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::codec::{encode, read};
use self::queue::Queue;
pub(super) use self::queue::{Msg, Timing};
use self::spill::Spill;
use super::OutboxOp;
use crate::pipeline::OutputBatch;
use crate::store::{Checkpoint, Store, StoreError};
use crate::telemetry;
use crate::topology::WhenFull;

pub(super) struct Outbox {
    name: Arc<str>,
    /// Messages held in memory before batches are held back.
    limit: usize,
    when_full: WhenFull,
    /// Unacknowledged messages are stored with checkpoints.
    durable: bool,
    /// Queued and sent messages, in order.
    pub queue: Queue,
    held: VecDeque<Arc<OutputBatch>>,
    /// Ranges of stored messages acknowledged since the last flush.
    acked_stored: Vec<std::ops::Range<u64>>,
    /// Acknowledged messages are out: the `output` and `end_to_end` hops.
    hops: telemetry::OutputHops,
    next_seq: u64,
    /// Messages before this one were stored by an earlier run: the broker
    /// may have them already.
    first_new: u64,
    spill: Option<Spill>,
    /// Acknowledged since the last metrics report.
    published: u64,
    /// Dropped (`when_full: drop_oldest`) since the last report.
    dropped: u64,
    reported: Instant,
}

/// Whether a stored outbox value reads as a message (for
/// `twinstream check-state`).
pub fn check_value(value: &[u8]) -> Result<(), crate::store::envelope::EnvelopeError> {
    codec::decode(value).map(|_| ())
}

/// A stored outbox value as this build writes it (fuzz seeds).
#[doc(hidden)]
pub fn example_value(topic: &str, key: Option<&[u8]>, headers: &[(&str, &[u8])], payload: &[u8]) -> Vec<u8> {
    codec::encode(&queue::Msg {
        seq: 0,
        topic: topic.into(),
        key: key.map(<[u8]>::to_vec),
        headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect(),
        partition: Some(3),
        payload: payload.to_vec(),
        stored: true,
        timing: Default::default(),
    })
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
            queue: Queue::new(queue),
            held: VecDeque::new(),
            acked_stored: Vec::new(),
            hops: telemetry::OutputHops::default(),
            next_seq,
            first_new: next_seq,
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
        let (mut spill, queue, next_seq) = Spill::restore(name, store, limit, max_bytes)?;
        let mut o = Outbox::new(name, limit, WhenFull::Block, true, queue, next_seq);
        spill.announce(name);
        o.spill = Some(spill);
        Ok(o)
    }

    /// Messages held, in memory or (store-and-forward) in the store only.
    pub fn held(&self) -> usize {
        self.queue.held() + self.spill.as_ref().map_or(0, Spill::held)
    }

    /// Messages not handed to the client yet.
    pub fn queued(&self) -> usize {
        self.held() - self.queue.sent.len()
    }

    /// Whether the broker may have message `seq` already: an earlier run
    /// stored it, and may have sent it before it stopped.
    pub fn maybe_sent_before(&self, seq: u64) -> bool {
        seq < self.first_new
    }

    /// Queues a message at the end.
    pub fn push(
        &mut self,
        topic: String,
        key: Option<Vec<u8>>,
        headers: Vec<(String, Vec<u8>)>,
        payload: Vec<u8>,
        timing: Timing,
    ) {
        self.push_to(topic, None, key, headers, payload, timing);
    }

    /// Queues a message for a given partition at the end.
    pub fn push_to(
        &mut self,
        topic: String,
        partition: Option<i32>,
        key: Option<Vec<u8>>,
        headers: Vec<(String, Vec<u8>)>,
        payload: Vec<u8>,
        timing: Timing,
    ) {
        let msg = Msg {
            seq: self.next_seq,
            topic,
            key,
            headers,
            partition,
            payload,
            stored: false,
            timing,
        };
        self.next_seq += 1;
        match &mut self.spill {
            Some(s) => s.push(msg, &mut self.queue.queued),
            None => self.queue.queued.push_back(msg),
        }
    }

    /// Whether twins' batches must wait: too much in memory, or (store-and-
    /// forward) the buffer is full or too much waits for its first
    /// checkpoint.
    fn over(&self) -> bool {
        match &self.spill {
            Some(s) => s.holds_back(self.limit),
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
                let over = self.held().saturating_sub(self.limit).min(self.queue.queued.len());
                self.queue.queued.drain(..over);
                self.dropped += over as u64;
            }
        }
    }

    /// The next queued message, to hand to the client; give it back with
    /// [`Outbox::untake`] if the client cannot take it now. Store-and-
    /// forward: at most `limit` are handed over unacknowledged, and the
    /// queue is refilled from the store.
    pub fn take(&mut self) -> Option<Msg> {
        if let Some(s) = &mut self.spill {
            if self.queue.sent.len() >= self.limit {
                return None;
            }
            if self.queue.queued.is_empty() && s.behind() {
                s.refill(&self.name, self.limit, &mut self.queue.queued);
            }
        }
        self.queue.take()
    }

    pub fn untake(&mut self, msg: Msg) {
        self.queue.untake(msg);
    }

    /// The client took `msg`; it waits for its acknowledgement.
    pub fn sent(&mut self, msg: Msg) {
        self.queue.sent(msg);
    }

    /// The broker acknowledged the sent message `seq`; false if there is no
    /// such message waiting.
    pub fn ack(&mut self, seq: u64) -> bool {
        if !self.queue.ack(seq) {
            return false;
        }
        self.complete();
        true
    }

    /// Retires the acknowledged messages at the head of `sent`.
    pub fn complete(&mut self) {
        while let Some(msg) = self.queue.pop_acked() {
            self.retire(&msg);
        }
    }

    /// `msg` is acknowledged and leaves the outbox (and the store).
    fn retire(&mut self, msg: &Msg) {
        self.published += 1;
        if let Some(produced) = msg.timing.produced {
            self.hops.out(produced, 1);
        }
        if let Some(ts) = msg.timing.alert_ms {
            self.hops.alert_out(ts, crate::pipeline::now_ms());
        }
        if !msg.stored {
            return;
        }
        match self.acked_stored.last_mut() {
            Some(r) if r.end == msg.seq => r.end += 1,
            _ => self.acked_stored.push(msg.seq..msg.seq + 1),
        }
        if let Some(s) = &mut self.spill {
            s.retire(msg);
        }
    }

    /// The sent message `seq` failed: it goes back to the queue, in order,
    /// to be sent again.
    pub fn retry(&mut self, seq: u64) {
        self.queue.retry(seq);
    }

    /// The connection is gone: what it did not get acknowledged goes back to
    /// the head of the queue, in order.
    pub fn requeue(&mut self) {
        for m in &self.queue.requeue() {
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
            if let Some(s) = &mut self.spill {
                s.report(&self.name);
            }
        }
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
            let tail = self.spill.iter_mut().flat_map(|s| s.tail_mut());
            let unsaved = self
                .queue
                .sent
                .iter_mut()
                .filter(|s| !s.acked)
                .map(|s| &mut s.msg)
                .chain(self.queue.queued.iter_mut())
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
                s.stored(added);
            }
        }
        if let Some(s) = &mut self.spill {
            s.evict(&mut self.queue, self.limit);
        }
        ops
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
