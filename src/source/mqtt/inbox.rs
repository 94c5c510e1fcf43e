//! The source's side of the write-ahead inbox (`ack_after: inbox`).
//!
//! A QoS 1 message is acknowledged once it is in the store's inbox
//! ([`Store::inbox_append`]), not once a checkpoint holds the state it
//! produced, so the broker's inflight window turns over in the time of one
//! write, not of a checkpoint interval.
//!
//! * Each routed chunk's messages get the next entry numbers, and the chunk
//!   carries the number after its last as its source position
//!   (`end_offset`), which checkpoints store with the twin state. Entries
//!   before the stored position are in the durable state; entries from it
//!   on are not.
//! * A writer thread ([`Writer`]) writes the chunks in entry order, with
//!   the durability of a checkpoint (`node.snapshot.sync`); the chunks that
//!   queue up while one write runs go together in the next (group commit).
//!   The source never waits for it: the twins apply a chunk while its
//!   messages are written, and they are acknowledged when the writer
//!   reports. A write that fails (a full disk) loses nothing: it is tried
//!   again, in order, and its messages (and the later ones) stay
//!   unacknowledged until then; the source stops reading when
//!   [`MAX_WAITING_FAILING`] chunks wait for a failing writer, or
//!   [`MAX_WAITING_MESSAGES`] messages for a slow one.
//! * Entries a durable checkpoint holds are removed (one range tombstone,
//!   not synced).
//! * A start routes the entries from the stored position on, before the
//!   connection delivers anything new: acknowledged, they would not come
//!   again. They are new to the durable state, so they are applied as
//!   they are, exactly once, whatever order the broker delivered them in.
//!   Entries before the position are removed unread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use rumqttc::{Publish, QoS};

use crate::pipeline::dead_letter::{DeadLetter, DeadReason, Origin};
use crate::store::{InboxMessage, Store, StoreError};

/// Where an MQTT source keeps the messages it acknowledged.
pub struct Inbox {
    pub store: Arc<Store>,
    /// fsync every write (`node.snapshot.sync`): as durable as a checkpoint.
    pub sync: bool,
    /// The stored source position: the first entry the durable state does
    /// not hold.
    pub durable: u64,
}

/// Entries a crash left, read back at the start.
pub(super) struct Left {
    /// The readable ones, as messages.
    pub publishes: Vec<Publish>,
    /// The unreadable ones, as dead letters with their stored bytes.
    pub damaged: Vec<DeadLetter>,
}

/// An MQTT source's inbox entries: numbered, written (by its [`Writer`]),
/// held by a durable checkpoint, removed.
pub(super) struct InboxLog {
    inbox: Inbox,
    source: Arc<str>,
    /// The number the next entry gets.
    next: u64,
    /// Every entry before this one is removed.
    removed: u64,
    /// Every entry before this one is held by a durable checkpoint.
    durable: u64,
    /// Every entry before this one is routed (the source's position).
    routed: u64,
    /// Routed chunks with entries, and the entry after their last, oldest
    /// first (until a durable checkpoint holds them).
    chunks: VecDeque<(u64, u64)>,
}

impl InboxLog {
    /// The inbox of `source`: entries before the stored position are
    /// removed; the others are what a crash left (see [`Self::left`]).
    pub(super) fn open(inbox: Inbox, source: Arc<str>) -> Result<InboxLog, StoreError> {
        let stored = inbox.store.inbox_bounds(&source)?;
        let durable = inbox.durable;
        if stored.start < durable && !stored.is_empty() {
            inbox
                .store
                .inbox_remove(&source, stored.start..durable.min(stored.end))?;
        }
        // Numbers only grow, across restarts too: an entry numbered below
        // the stored position would count as durable at the next start.
        let next = stored.end.max(durable);
        Ok(InboxLog {
            inbox,
            source,
            next,
            removed: durable.max(stored.start).min(next),
            durable,
            routed: durable.max(stored.start).min(next),
            chunks: VecDeque::new(),
        })
    }

    /// Up to `max` entries a crash left, from entry `from` on (start at
    /// [`Self::first_left`]), and the entry after them (`from` when none
    /// are left).
    pub(super) fn left(&self, from: u64, max: usize) -> Result<(Left, u64), StoreError> {
        let mut left = Left {
            publishes: Vec::new(),
            damaged: Vec::new(),
        };
        let mut end = from;
        self.inbox.store.inbox_from(&self.source, from, |seq, m| {
            match m {
                Ok(m) => left.publishes.push(Publish::new(m.topic, QoS::AtLeastOnce, m.payload)),
                Err((error, raw)) => left.damaged.push(DeadLetter {
                    origin: Origin {
                        source: self.source.clone(),
                        file: None,
                        line: seq,
                        offset: None,
                        topic: None,
                        partition: None,
                    },
                    reason: DeadReason::DamagedState,
                    message: error.to_string(),
                    payload: raw.to_vec(),
                    key: None,
                }),
            }
            end = seq + 1;
            left.publishes.len() + left.damaged.len() < max
        })?;
        Ok((left, end))
    }

    /// The first entry a crash left.
    pub(super) fn first_left(&self) -> u64 {
        self.removed
    }

    /// Chunk `seq` was routed from the entries a crash left, up to `end`.
    pub(super) fn routed_left(&mut self, seq: u64, end: u64) {
        self.chunks.push_back((seq, end));
        self.routed = end;
    }

    /// Every entry a crash left is routed.
    pub(super) fn left_routed(&mut self) {
        self.routed = self.next;
    }

    /// Numbers the QoS 1 messages of chunk `seq` (`n` of them): returns the
    /// first number and the one after the last (the chunk's position).
    pub(super) fn number(&mut self, seq: u64, n: u64) -> (u64, u64) {
        debug_assert_eq!(self.routed, self.next, "numbered after the entries a crash left");
        let first = self.next;
        self.next += n;
        self.routed = self.next;
        if n > 0 {
            self.chunks.push_back((seq, self.next));
        }
        (first, self.next)
    }

    /// The source's position: the first entry not routed yet (a chunk
    /// carries it; checkpoints store it with the state).
    pub(super) fn position(&self) -> u64 {
        self.routed
    }

    /// Starts the thread that writes numbered chunks into the inbox.
    pub(super) fn writer(&self) -> std::io::Result<Writer> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let (done_tx, done) = crossbeam_channel::unbounded();
        let (store, sync, source) = (self.inbox.store.clone(), self.inbox.sync, self.source.clone());
        let (closing, failing) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let thread = {
            let (closing, failing) = (closing.clone(), failing.clone());
            std::thread::Builder::new()
                .name(format!("mqtt-inbox-{}", self.source))
                .spawn(move || write_loop(&store, sync, &source, &rx, &done_tx, &closing, &failing))?
        };
        Ok(Writer {
            closing,
            failing,
            tx: Some(tx),
            done,
            thread: Some(thread),
            pending: 0,
            pending_messages: 0,
        })
    }

    /// A durable checkpoint holds the chunks up to `up_to`: `writer`
    /// removes their entries, after the writes it has in hand (which
    /// include theirs: a chunk is handed over before it is routed).
    pub(super) fn release(&mut self, up_to: u64, writer: &Writer) {
        while let Some(&(seq, end)) = self.chunks.front() {
            if seq > up_to {
                break;
            }
            self.durable = end;
            self.chunks.pop_front();
        }
        if self.durable > self.removed {
            writer.remove(self.removed..self.durable);
            self.removed = self.durable;
        }
    }

    /// Entries numbered and not removed yet.
    pub(super) fn held(&self) -> u64 {
        self.next - self.removed
    }

    /// Whether entries wait for a checkpoint to be removed.
    pub(super) fn waiting(&self) -> bool {
        self.removed < self.next
    }
}

/// Chunks handed to the writer and not reported yet past which the source
/// stops reading while a write fails (a full disk: the broker keeps the
/// messages).
pub(super) const MAX_WAITING_FAILING: usize = 256;

/// Messages handed to the writer and not reported yet past which the source
/// stops reading in any case. A sync that stalls for hundreds of ms (a
/// shared disk) must not stall the input behind it: the twins apply what is
/// routed meanwhile and only the acks wait. A few seconds of input at tens of
/// thousands of messages a second, a few MB held.
pub(super) const MAX_WAITING_MESSAGES: usize = 65_536;

/// Whether a source should stop reading with `chunks` of `messages` waiting
/// for its inbox writer, whose write `failing` or not.
fn backlogged(chunks: usize, messages: usize, failing: bool) -> bool {
    messages >= MAX_WAITING_MESSAGES || (failing && chunks >= MAX_WAITING_FAILING)
}

/// What the writer thread does, in order.
enum Job {
    Write(Numbered),
    /// Removes the entries a durable checkpoint holds (not synced: an entry
    /// left behind by a crash is below the stored position, and the next
    /// start removes it unread).
    Remove(std::ops::Range<u64>),
}

/// A chunk's QoS 1 messages, numbered from `first`, for the writer.
struct Numbered {
    first: u64,
    publishes: Vec<Publish>,
}

/// What the writer did with a group of chunks.
pub(super) struct Written {
    /// How many chunks the group held.
    pub chunks: usize,
    /// How many messages they held (QoS 0 ones too).
    pub messages: usize,
    /// Their QoS 1 packet ids, in order: due now.
    pub pkids: Vec<u16>,
}

/// The thread that writes an MQTT source's numbered chunks into the inbox.
pub(super) struct Writer {
    /// Set when the source stops: a write failing again is given up.
    closing: Arc<AtomicBool>,
    /// Set while a write fails and is tried again.
    failing: Arc<AtomicBool>,
    tx: Option<Sender<Job>>,
    /// What it wrote, in chunk order.
    pub done: Receiver<Written>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Chunks handed over and not reported yet.
    pending: usize,
    /// The messages of those chunks.
    pending_messages: usize,
}

impl Writer {
    /// Hands the messages of a chunk, numbered from `first`, over for
    /// writing.
    pub(super) fn write(&mut self, first: u64, publishes: Vec<Publish>) {
        if let Some(tx) = &self.tx {
            let messages = publishes.len();
            if tx.send(Job::Write(Numbered { first, publishes })).is_ok() {
                self.pending += 1;
                self.pending_messages += messages;
            }
        }
    }

    /// Hands the removal of entries `range` over (after the writes in hand).
    fn remove(&self, range: std::ops::Range<u64>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Job::Remove(range));
        }
    }

    /// Takes a report off the count of chunks waiting for one.
    pub(super) fn reported(&mut self, w: &Written) {
        self.pending -= w.chunks;
        self.pending_messages -= w.messages;
    }

    /// Whether the source should read no more for now: too many chunks wait
    /// for a failing writer, or too many messages for a slow one.
    pub(super) fn backlogged(&self) -> bool {
        backlogged(self.pending, self.pending_messages, self.failing())
    }

    /// Chunks handed over and not reported yet.
    pub(super) fn pending(&self) -> usize {
        self.pending
    }

    /// A write fails and is being tried again.
    pub(super) fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the writes in hand.
        self.tx = None;
        self.closing.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether a message is kept in the inbox (QoS 0 ones are never acknowledged).
fn kept(p: &&Publish) -> bool {
    p.qos != QoS::AtMostOnce
}

/// The writer thread: the chunks waiting are written together, in one
/// batch (their entries are numbered consecutively); removals in between
/// keep their place.
fn write_loop(
    store: &Store,
    sync: bool,
    source: &str,
    rx: &Receiver<Job>,
    done: &Sender<Written>,
    closing: &AtomicBool,
    failing: &AtomicBool,
) {
    let mut group = Vec::new();
    while let Ok(job) = rx.recv() {
        for job in std::iter::once(job).chain(rx.try_iter()) {
            match job {
                Job::Write(chunk) => group.push(chunk),
                Job::Remove(range) => {
                    if !write(store, sync, source, &mut group, done, closing, failing) {
                        return;
                    }
                    if let Err(e) = store.inbox_remove(source, range) {
                        tracing::warn!(source, error = %e,
                            "cannot remove checkpointed messages from the MQTT inbox; the next start removes them");
                    }
                }
            }
        }
        if !write(store, sync, source, &mut group, done, closing, failing) {
            return;
        }
    }
}

/// Writes `group` (taking it) in one batch and reports it; `false` when
/// no one takes reports any more.
///
/// A write that fails (a full disk) is tried again, with backoff, until it
/// succeeds: its messages and every later one stay unacknowledged (the
/// broker keeps them; the source stops reading when too much waits),
/// and they are written in order, so a replay never puts a later message
/// before an earlier one the broker would redeliver.
fn write(
    store: &Store,
    sync: bool,
    source: &str,
    group: &mut Vec<Numbered>,
    done: &Sender<Written>,
    closing: &AtomicBool,
    failing: &AtomicBool,
) -> bool {
    let Some(first) = group.first().map(|c| c.first) else {
        return true;
    };
    let mut backoff = crate::mqtt::Backoff::default();
    let mut failed = false;
    loop {
        let messages = group
            .iter()
            .flat_map(|c| c.publishes.iter().filter(kept))
            .map(|p| InboxMessage {
                topic: &p.topic,
                payload: &p.payload,
            });
        let started = std::time::Instant::now();
        match store.inbox_append(source, first, messages, sync) {
            Ok(_) => {
                crate::telemetry::mqtt_inbox_write(source, started.elapsed().as_secs_f64());
                if failed {
                    tracing::info!(source, "the MQTT inbox is written again; its messages are acknowledged");
                    failing.store(false, Ordering::Relaxed);
                }
                break;
            }
            Err(e) => {
                crate::telemetry::mqtt_inbox_failed(source);
                if !failed {
                    tracing::warn!(source, error = %e,
                        "cannot write the MQTT inbox; its messages stay unacknowledged (the broker keeps them) and the write is tried again");
                    failed = true;
                }
                // The source stopped: what is not written stays
                // unacknowledged, and the broker keeps it.
                failing.store(true, Ordering::Relaxed);
                let until = std::time::Instant::now() + backoff.next_delay();
                while std::time::Instant::now() < until {
                    if closing.load(Ordering::Relaxed) {
                        return false;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
    }
    let chunks = group.len();
    let messages = group.iter().map(|c| c.publishes.len()).sum();
    let pkids = group
        .drain(..)
        .flat_map(|c| c.publishes)
        .filter(|p| p.qos != QoS::AtMostOnce);
    let pkids = pkids.map(|p| p.pkid).collect();
    done.send(Written {
        chunks,
        messages,
        pkids,
    })
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_writer_holds_seconds_of_input_a_failing_one_256_chunks() {
        // A sync that stalls: small chunks pile up, reading goes on.
        assert!(!backlogged(5_000, 20_000, false));
        assert!(backlogged(5_000, MAX_WAITING_MESSAGES, false));
        // A write that fails: reading stops soon.
        assert!(!backlogged(MAX_WAITING_FAILING - 1, 1_000, true));
        assert!(backlogged(MAX_WAITING_FAILING, 1_000, true));
        assert!(backlogged(1, MAX_WAITING_MESSAGES, true));
    }
}
