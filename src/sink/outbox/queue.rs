//! The messages a broker sink holds in memory, in order: **queued**
//! (rendered, not yet handed to the client) and **sent** (handed to the
//! client, not all acknowledged). What an acknowledgement retires is the
//! outbox's business ([`super::Outbox`]); this is only the order.

use std::collections::VecDeque;
use std::time::Instant;

/// When a message's output was produced and, for an alert transition, the
/// event time that caused it: where the `output` and `end_to_end` hops
/// start. Kept in memory only (none for a message read back from the
/// store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(in crate::sink) struct Timing {
    pub produced: Option<Instant>,
    pub alert_ms: Option<i64>,
}

/// One message for a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::sink) struct Msg {
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
    pub timing: Timing,
}

/// A message handed to the client.
pub(in crate::sink) struct Sent {
    pub msg: Msg,
    /// The transport's handle for it (MQTT: the packet id), once known.
    pub tag: Option<u16>,
    pub acked: bool,
}

/// The messages memory holds.
pub(in crate::sink) struct Queue {
    /// Rendered messages not yet handed to the client, in order.
    pub(in crate::sink) queued: VecDeque<Msg>,
    /// Handed to the client and not all acknowledged, in order.
    pub(in crate::sink) sent: VecDeque<Sent>,
    /// The greatest sequence number handed to the client: the queue's
    /// messages after it were never sent, and follow each other.
    taken: Option<u64>,
}

impl Queue {
    pub(super) fn new(queued: VecDeque<Msg>) -> Queue {
        Queue {
            queued,
            sent: VecDeque::new(),
            taken: None,
        }
    }

    /// Messages held in memory, queued or sent.
    pub(super) fn held(&self) -> usize {
        self.queued.len() + self.sent.len()
    }

    /// The next queued message, to hand to the client.
    pub(super) fn take(&mut self) -> Option<Msg> {
        let msg = self.queued.pop_front()?;
        self.taken = Some(self.taken.map_or(msg.seq, |t| t.max(msg.seq)));
        Some(msg)
    }

    pub(super) fn untake(&mut self, msg: Msg) {
        self.queued.push_front(msg);
    }

    /// How many queued messages (from the head) were handed to the client
    /// before: the ones after them were never sent, and follow each other.
    pub(super) fn sent_before(&self) -> usize {
        let taken = self.taken;
        self.queued.partition_point(|m| taken.is_some_and(|t| m.seq <= t))
    }

    /// The client took `msg`; it waits for its acknowledgement.
    pub(super) fn sent(&mut self, msg: Msg) {
        self.sent.push_back(Sent {
            msg,
            tag: None,
            acked: false,
        });
    }

    /// Marks the sent message `seq` acknowledged; false if there is no such
    /// message waiting.
    pub(super) fn ack(&mut self, seq: u64) -> bool {
        // `sent` is in sequence order unless a failed message was sent
        // again after later ones: then search it.
        let i = match self.sent.binary_search_by_key(&seq, |s| s.msg.seq) {
            Ok(i) if !self.sent[i].acked => Some(i),
            _ => self.sent.iter().position(|s| s.msg.seq == seq && !s.acked),
        };
        let Some(i) = i else { return false };
        self.sent[i].acked = true;
        true
    }

    /// Removes the acknowledged message at the head of `sent`, if it is.
    pub(super) fn pop_acked(&mut self) -> Option<Msg> {
        if !self.sent.front().is_some_and(|s| s.acked) {
            return None;
        }
        self.sent.pop_front().map(|s| s.msg)
    }

    /// The sent message `seq` failed: it goes back to the queue, in order,
    /// to be sent again.
    pub(super) fn retry(&mut self, seq: u64) {
        if let Some(i) = self.sent.iter().position(|s| s.msg.seq == seq && !s.acked) {
            let s = self.sent.remove(i).expect("found");
            let at = self.queued.partition_point(|m| m.seq < seq);
            self.queued.insert(at, s.msg);
        }
    }

    /// The connection is gone: what it did not get acknowledged goes back to
    /// the head of the queue, in order. Returns the acknowledged ones that
    /// were still waiting behind an unacknowledged one, in order.
    pub(super) fn requeue(&mut self) -> Vec<Msg> {
        let mut acked = Vec::new();
        while let Some(s) = self.sent.pop_back() {
            if !s.acked {
                self.queued.push_front(s.msg);
            } else {
                acked.push(s.msg);
            }
        }
        acked.reverse();
        acked
    }
}

#[cfg(test)]
mod tests {
    use super::super::Outbox;
    use crate::store::Store;
    use crate::topology::WhenFull;

    #[test]
    fn a_failed_message_goes_back_in_order_and_acks_retire_from_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1).unwrap();
        let mut o = Outbox::restore("k", &store, 100, WhenFull::Block, true).unwrap();
        for n in 0..4u8 {
            o.push("t".into(), None, Vec::new(), vec![n], Default::default());
        }
        while let Some(m) = o.take() {
            o.sent(m);
        }
        assert!(o.ack(2));
        assert!(!o.ack(2), "acknowledged once");
        assert_eq!(o.queue.sent.len(), 4, "an ack behind an unacked message waits");
        o.retry(1);
        assert!(o.ack(0));
        // 0 and 2 are retired; 1 waits to be sent again.
        assert_eq!(o.queue.sent.iter().map(|s| s.msg.seq).collect::<Vec<_>>(), [3]);
        assert_eq!(o.take().map(|m| m.seq), Some(1));
        // A lost connection puts the unacknowledged back, in order.
        o.requeue();
        assert_eq!(o.take().map(|m| m.seq), Some(3));
        assert_eq!(o.held(), 0);
    }
}
