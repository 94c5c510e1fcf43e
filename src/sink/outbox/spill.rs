//! Store-and-forward (a sink with a `buffer`, e.g. an edge node's uplink):
//! messages beyond what memory holds are kept in the store only and read
//! back in order as the broker takes them, so an outage of hours costs
//! disk, not memory. The store's range of them has no gap: only messages
//! never sent leave memory, at a checkpoint that stores them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::codec::{read, stored_len};
use super::{Msg, Queue, Timing};
use crate::store::{Store, StoreError};
use crate::telemetry;

/// Share of a buffer's `max_bytes` above which the sink warns (and the
/// `TwinstreamSinkBufferNearFull` alert fires).
pub const BUFFER_WARN_RATIO: f64 = 0.8;

/// Store-and-forward: the messages the store holds and memory does not.
pub(super) struct Spill {
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
    /// When the messages in the store only were produced (the stored form
    /// has no time), for the `output` hop when they are read back: by
    /// sequence number, one entry per [`TIMING_GRAIN`] of production and
    /// one per alert transition (its event time exactly). Memory stays a
    /// few bytes per second of outage, not per message.
    timings: VecDeque<(u64, Timing)>,
}

/// How finely the production times of spilled messages are kept: a
/// message read back is timed from the first one produced within this
/// before it (its `output` hop reads at most this much long).
const TIMING_GRAIN: Duration = Duration::from_secs(1);

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

    /// Reads what sink `name` left in the store: up to `limit` of the
    /// stored messages into memory (returned with the next sequence
    /// number), the rest stay in the store until the broker has taken the
    /// ones before them.
    pub(super) fn restore(
        name: &str,
        store: Arc<Store>,
        limit: usize,
        max_bytes: u64,
    ) -> Result<(Spill, VecDeque<Msg>, u64), StoreError> {
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
        let spill = Spill {
            store,
            max_bytes,
            bytes,
            next: in_memory,
            end: next_seq,
            tail: VecDeque::new(),
            unstored: 0,
            unstored_bytes: 0,
            level: BufferLevel::Normal,
            timings: VecDeque::new(),
        };
        Ok((spill, queue, next_seq))
    }

    /// Reports the buffer's limit and level when its outbox starts.
    pub(super) fn announce(&mut self, name: &str) {
        telemetry::sink_buffer_limit(name, self.max_bytes);
        telemetry::sink_buffer(name, self.bytes);
        self.report_level(name);
    }

    /// Messages in the store only, or waiting behind them.
    pub(super) fn held(&self) -> usize {
        self.tail.len() + self.spilled()
    }

    /// Whether the store holds messages memory does not, before the queue's.
    pub(super) fn behind(&self) -> bool {
        self.spilled() > 0 || !self.tail.is_empty()
    }

    /// Whether twins' batches must wait: the buffer is full, or more than
    /// `limit` messages wait for their first checkpoint.
    pub(super) fn holds_back(&self, limit: usize) -> bool {
        self.full() || self.unstored > limit
    }

    /// Queues `msg` at the end: after the messages the store alone holds,
    /// if there are any.
    pub(super) fn push(&mut self, msg: Msg, queue: &mut VecDeque<Msg>) {
        self.unstored += 1;
        self.unstored_bytes += stored_len(&msg) as u64;
        if self.spilled() > 0 {
            self.tail.push_back(msg);
        } else {
            queue.push_back(msg);
        }
    }

    /// Reads the next stored-only messages of sink `name` back into the
    /// queue, in order, up to `limit` queued; stops at one the store does
    /// not hold yet (its checkpoint is still being committed). Once none is
    /// left, the tail follows.
    pub(super) fn refill(&mut self, name: &str, limit: usize, queue: &mut VecDeque<Msg>) {
        let (mut expect, end) = (self.next, self.end);
        let timings = &mut self.timings;
        let result = self.store.outbox_from(name, expect, |seq, value| {
            if seq != expect || seq >= end || queue.len() >= limit {
                return Ok(false);
            }
            let mut msg = read(name, seq, value)?;
            msg.timing = timing_of(timings, seq);
            queue.push_back(msg);
            expect += 1;
            Ok(true)
        });
        if let Err(e) = result {
            // Retried at the next take; the node's store is failing.
            tracing::error!(sink = %name, error = %e, "cannot read the buffered messages back");
            return;
        }
        self.next = expect;
        if self.spilled() == 0 {
            queue.extend(self.tail.drain(..));
        }
    }

    /// Keeps the timing of `msg`, which leaves memory for the store.
    fn keep_timing(&mut self, msg: &Msg) {
        let Some(produced) = msg.timing.produced else { return };
        let coarse = self
            .timings
            .back()
            .and_then(|(_, t)| t.produced)
            .is_some_and(|last| produced.saturating_duration_since(last) < TIMING_GRAIN);
        if msg.timing.alert_ms.is_some() || !coarse {
            self.timings.push_back((msg.seq, msg.timing));
        }
    }

    /// The stored message `msg` is acknowledged: its bytes leave the buffer.
    pub(super) fn retire(&mut self, msg: &Msg) {
        self.bytes = self.bytes.saturating_sub(stored_len(msg) as u64);
    }

    /// The messages pushed while the store held some alone.
    pub(super) fn tail_mut(&mut self) -> impl Iterator<Item = &mut Msg> {
        self.tail.iter_mut()
    }

    /// A checkpoint stores `bytes` more of this sink's messages.
    pub(super) fn stored(&mut self, bytes: u64) {
        self.bytes += bytes;
    }

    /// Reports the buffer's size and level (with the outbox's metrics).
    pub(super) fn report(&mut self, name: &str) {
        telemetry::sink_buffer(name, self.bytes);
        self.report_level(name);
    }

    /// Says in the log when the buffer passes [`BUFFER_WARN_RATIO`], fills
    /// up (ingest is held back) and empties again.
    fn report_level(&mut self, name: &str) {
        let level = if self.full() {
            BufferLevel::Full
        } else if self.bytes as f64 >= self.max_bytes as f64 * BUFFER_WARN_RATIO {
            BufferLevel::NearFull
        } else {
            BufferLevel::Normal
        };
        if level == self.level {
            return;
        }
        let (bytes, max_bytes, messages) = (self.bytes, self.max_bytes, self.spilled() + self.tail.len());
        match level {
            BufferLevel::Full => tracing::error!(sink = %name, bytes, max_bytes,
                "buffer full: holding back ingest until the broker takes messages (sources stop; MQTT messages stay with their broker)"),
            BufferLevel::NearFull => tracing::warn!(sink = %name, bytes, max_bytes, messages,
                "buffer above {}% of its limit; the broker is not taking messages", (BUFFER_WARN_RATIO * 100.0) as u32),
            BufferLevel::Normal => {
                tracing::info!(sink = %name, bytes, max_bytes, "buffer back below its warning level")
            }
        }
        self.level = level;
    }

    /// At a checkpoint: every message is stored (this checkpoint's batch
    /// holds the newest), so memory keeps the first `limit` queued ones and
    /// the store alone the rest. Only messages never sent leave memory:
    /// they follow each other, so the store's range of them has no gap.
    pub(super) fn evict(&mut self, queue: &mut Queue, limit: usize) {
        self.unstored = 0;
        self.unstored_bytes = 0;
        if self.spilled() > 0 {
            if let Some(last) = self.tail.back() {
                debug_assert_eq!(self.tail.front().map(|m| m.seq), Some(self.end));
                self.end = last.seq + 1;
                let tail = std::mem::take(&mut self.tail);
                for m in &tail {
                    self.keep_timing(m);
                }
            }
            return;
        }
        if queue.queued.len() <= limit {
            return;
        }
        let never_sent = queue.sent_before();
        let from = never_sent.max(limit);
        if from >= queue.queued.len() {
            return;
        }
        let evicted = queue.queued.split_off(from);
        for m in &evicted {
            self.keep_timing(m);
        }
        self.next = evicted.front().expect("not empty").seq;
        self.end = evicted.back().expect("not empty").seq + 1;
        debug_assert_eq!(self.spilled(), evicted.len(), "evicted messages follow each other");
    }
}

/// The timing of spilled message `seq`, read back in order ([`Spill`]'s
/// `timings`): produced as the last entry at or before it says, an alert's
/// event time if it is one. Entries before it are done with.
fn timing_of(timings: &mut VecDeque<(u64, Timing)>, seq: u64) -> Timing {
    while timings.get(1).is_some_and(|(s, _)| *s <= seq) {
        timings.pop_front();
    }
    match timings.front() {
        Some(&(s, t)) if s == seq => t,
        Some(&(s, t)) if s < seq => Timing {
            produced: t.produced,
            alert_ms: None,
        },
        _ => Timing::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::tests::msg;
    use super::super::codec::{encode, stored_len};
    use super::super::Outbox;
    use crate::pipeline::OutputBatch;
    use crate::sink::OutboxOp;
    use crate::store::{Checkpoint, Store};
    use std::sync::Arc;

    fn empty_batch(flow: &crate::pipeline::flow::Flow) -> Arc<OutputBatch> {
        Arc::new(OutputBatch {
            asset: None,
            model: None,
            outputs: Vec::new(),
            dead_letters: Vec::new(),
            events: Vec::new(),
            at_ms: 0,
            produced: std::time::Instant::now(),
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
            o.push("t".into(), Some(b"k".to_vec()), Vec::new(), vec![n], Default::default());
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
        assert_eq!(o.queue.queued.len(), 4, "memory keeps `limit` of them");
        // More while the range is in the store: they follow it, and the
        // next checkpoint moves them there too; that checkpoint is not
        // committed yet when the client catches up.
        for n in 10..13u8 {
            o.push("t".into(), None, Vec::new(), vec![n], Default::default());
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
            o.push(
                "plant/p-1/commands".into(),
                None,
                Vec::new(),
                vec![n; 10],
                Default::default(),
            );
            o.admit(empty_batch(&flow));
            commit(&store, &o.flush());
        }
        o.tick();
        assert_eq!(flow.inflight(), 0);
        // Full: the next batch waits until the broker takes one.
        o.push(
            "plant/p-1/commands".into(),
            None,
            Vec::new(),
            vec![5; 10],
            Default::default(),
        );
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
        assert_eq!(again.queue.queued.len(), 2, "memory keeps `limit`, the store the rest");
        assert!(again.maybe_sent_before(2) && !again.maybe_sent_before(6));
        again.push(
            "plant/p-1/commands".into(),
            None,
            Vec::new(),
            vec![6; 10],
            Default::default(),
        );
        commit(&store, &again.flush());
        assert_eq!(drain(&mut again), [1, 2, 3, 4, 5, 6]);
    }

    /// Messages that leave memory for the store keep when they were
    /// produced, to the second (an alert to its event time), so the
    /// `output` hop times them when they are read back.
    #[test]
    fn spilled_messages_keep_their_production_time_to_the_grain() {
        use super::super::Timing;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), 1).unwrap());
        let mut o = Outbox::restore_buffered("up", store.clone(), 2, 1 << 20).unwrap();
        let t0 = std::time::Instant::now();
        // Eight messages, 400 ms apart; the sixth is an alert.
        let timing = |n: u64| Timing {
            produced: Some(t0 + std::time::Duration::from_millis(400 * n)),
            alert_ms: (n == 5).then_some(1_700_000_000_000),
        };
        for n in 0..8u8 {
            o.push("t".into(), None, Vec::new(), vec![n], timing(n.into()));
        }
        commit(&store, &o.flush());
        assert_eq!(o.queue.queued.len(), 2, "six are in the store only");
        let mut got = Vec::new();
        while let Some(m) = o.take() {
            got.push((m.seq, m.timing));
            let seq = m.seq;
            o.sent(m);
            assert!(o.ack(seq));
        }
        assert_eq!(got.len(), 8);
        // In memory: exact. Read back: as the entry before, within a
        // second (message 2 starts one; the alert, 5, is kept exactly and
        // starts the next), and the alert's event time exactly.
        let first_of_grain = [0, 1, 2, 2, 2, 5, 5, 5];
        for (seq, t) in got {
            let want = if seq < 2 {
                timing(seq)
            } else {
                timing(first_of_grain[seq as usize])
            };
            assert_eq!(t.produced, want.produced, "message {seq}");
            assert_eq!(t.alert_ms, timing(seq).alert_ms, "message {seq}");
        }
    }
}
