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
//!
//! The transport hands messages over ([`Outbox::take`], [`Outbox::sent`]),
//! reports acknowledgements ([`Outbox::ack`]) and lost connections
//! ([`Outbox::requeue`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::{json, OutboxOp, OutputBatch, SinkError};
use crate::engine::EngineError;
use crate::store::{envelope, Checkpoint, Store, StoreError};
use crate::telemetry;
use crate::topology::WhenFull;
use crate::twin::schema::OutputMask;

/// Format of an outbox value: `[topic length u32 LE][topic][payload]`.
const FORMAT_V1: u16 = 1;
/// Format of an outbox value: `[topic length u32 LE][topic][key length u32
/// LE, u32::MAX: no key][key][header count u16 LE]([name length u16 LE]
/// [name][value length u32 LE][value])*[payload]`.
pub const OUTBOX_FORMAT: u16 = 2;

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
    /// Stored messages acknowledged since the last flush.
    acked_stored: Vec<u64>,
    next_seq: u64,
    /// Acknowledged since the last metrics report.
    published: u64,
    /// Dropped (`when_full: drop_oldest`) since the last report.
    dropped: u64,
    reported: Instant,
}

impl Outbox {
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
            let mut msg = decode(value).map_err(|cause| StoreError::Envelope {
                key: format!("outbox {name}/{seq}"),
                cause,
            })?;
            msg.seq = seq;
            queue.push_back(msg);
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
        telemetry::sink_queue_limit(name, limit);
        Ok(Outbox {
            name: name.into(),
            limit,
            when_full,
            durable,
            queue,
            sent: VecDeque::new(),
            held: VecDeque::new(),
            acked_stored: Vec::new(),
            next_seq,
            published: 0,
            dropped: 0,
            reported: Instant::now(),
        })
    }

    /// Messages held in memory: queued and unacknowledged.
    pub fn held(&self) -> usize {
        self.queue.len() + self.sent.len()
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Queues a message at the end.
    pub fn push(&mut self, topic: String, key: Option<Vec<u8>>, headers: Vec<(String, Vec<u8>)>, payload: Vec<u8>) {
        self.queue.push_back(Msg {
            seq: self.next_seq,
            topic,
            key,
            headers,
            payload,
            stored: false,
        });
        self.next_seq += 1;
    }

    /// After the messages of `batch` are pushed: keeps the batch (and its
    /// flow permit) while over the limit, or drops the oldest queued
    /// messages (`drop_oldest`).
    pub fn admit(&mut self, batch: Arc<OutputBatch>) {
        match self.when_full {
            WhenFull::Block if self.held() > self.limit => self.held.push_back(batch),
            WhenFull::Block => {}
            WhenFull::DropOldest => {
                let over = self.held().saturating_sub(self.limit).min(self.queue.len());
                self.queue.drain(..over);
                self.dropped += over as u64;
            }
        }
    }

    /// The next queued message, to hand to the client; give it back with
    /// [`Outbox::untake`] if the client cannot take it now.
    pub fn take(&mut self) -> Option<Msg> {
        self.queue.pop_front()
    }

    pub fn untake(&mut self, msg: Msg) {
        self.queue.push_front(msg);
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
            if s.msg.stored {
                self.acked_stored.push(s.msg.seq);
            }
            self.published += 1;
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
        while let Some(s) = self.sent.pop_back() {
            if !s.acked {
                self.queue.push_front(s.msg);
            } else {
                if s.msg.stored {
                    self.acked_stored.push(s.msg.seq);
                }
                self.published += 1;
            }
        }
    }

    /// Releases held batches while under the limit; reports the metrics
    /// (at most every 100 ms).
    pub fn tick(&mut self) {
        while self.held() <= self.limit && self.held.pop_front().is_some() {}
        if self.reported.elapsed() >= Duration::from_millis(100) {
            self.reported = Instant::now();
            telemetry::sink_queue(&self.name, self.held(), !self.held.is_empty());
            telemetry::sink_written(&self.name, std::mem::take(&mut self.published));
            telemetry::sink_dropped(&self.name, std::mem::take(&mut self.dropped));
        }
    }

    /// The outbox changes for the checkpoint being committed: messages not
    /// acknowledged and not stored yet (durable sinks), and stored ones
    /// acknowledged since.
    pub fn flush(&mut self) -> Vec<OutboxOp> {
        let mut ops: Vec<OutboxOp> = self
            .acked_stored
            .drain(..)
            .map(|seq| OutboxOp {
                sink: self.name.clone(),
                seq,
                value: None,
            })
            .collect();
        if self.durable {
            let unsaved = self
                .sent
                .iter_mut()
                .filter(|s| !s.acked)
                .map(|s| &mut s.msg)
                .chain(self.queue.iter_mut())
                .filter(|m| !m.stored);
            for m in unsaved {
                m.stored = true;
                ops.push(OutboxOp {
                    sink: self.name.clone(),
                    seq: m.seq,
                    value: Some(encode(m)),
                });
            }
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
                store.stage_outbox(&mut ckpt, &op.sink, op.seq, op.value.as_deref());
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

/// Calls `f(kind, name, line)` for each output of `batch` that `mask` takes:
/// its `{kind}` label, its `{name}` and its JSON line without the newline
/// (rendered into `line`).
pub(super) fn each_output(
    batch: &OutputBatch,
    mask: OutputMask,
    line: &mut Vec<u8>,
    mut f: impl FnMut(&'static str, &str, &[u8]),
) {
    for o in &batch.outputs {
        let Some(kind) = o.kind().filter(|k| mask.has(*k)) else {
            continue;
        };
        line.clear();
        json::render_output(line, batch, o);
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if !line.is_empty() {
            f(super::kind_label(kind), json::output_name(batch, o), line);
        }
    }
}

/// Records a failure retrying cannot fix, once: the sink refuses every later
/// flush (so no checkpoint commits past an output that was not delivered)
/// and the node stops, reporting it as the reason.
pub(super) fn fail_once(failed: &mut Option<SinkError>, fatal: &Sender<EngineError>, err: SinkError) {
    if failed.is_none() {
        if fatal.send(EngineError::Sink(err.clone())).is_err() {
            tracing::error!(sink = %err.sink, error = %err, "sink failed");
        }
        *failed = Some(err);
    }
}

pub(super) fn encode(m: &Msg) -> Vec<u8> {
    let headers: usize = m.headers.iter().map(|(n, v)| 6 + n.len() + v.len()).sum();
    let key = m.key.as_ref().map_or(0, Vec::len);
    let mut v = envelope::start(OUTBOX_FORMAT, 10 + m.topic.len() + key + headers + m.payload.len());
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

/// A stored message (its `seq` is the store key's, set by the caller).
pub(super) fn decode(value: &[u8]) -> Result<Msg, envelope::EnvelopeError> {
    let (version, body) = envelope::open_any(value, &[FORMAT_V1, OUTBOX_FORMAT], "outbox message")?;
    let mut r = Reader(body);
    let len = r.u32()? as usize;
    let topic = String::from_utf8(r.bytes(len)?.to_vec())
        .map_err(|_| envelope::EnvelopeError::Corrupt("outbox topic is not UTF-8".into()))?;
    let mut msg = Msg {
        seq: 0,
        topic,
        key: None,
        headers: Vec::new(),
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
            payload: br#"{"id":"x"}"#.to_vec(),
            stored: true,
        }
    }

    #[test]
    fn outbox_values_round_trip_and_refuse_garbage() {
        for m in [
            msg(None, &[]),
            msg(Some(b""), &[]),
            msg(Some(b"p-1"), &[("twinstream.reason", b"malformed"), ("empty", b"")]),
        ] {
            let v = encode(&m);
            assert_eq!(decode(&v).unwrap(), m);
            assert!(decode(&v[..v.len() - m.payload.len() - 1]).is_err());
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
}
