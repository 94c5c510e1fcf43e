//! The live feed of what operators watch: a twin's health and counts, its
//! alert transitions and its command outcomes, as they happen, for the
//! view's pushed updates (`GET /events`).
//!
//! The twins' hosts publish; the API's streams read. Nothing is recorded
//! while nobody watches: publishers check one atomic flag
//! ([`Feed::recording`]) before they look at a twin, so an unwatched node
//! pays one relaxed load per applied batch. Recording starts with the
//! first subscriber and stops [`GRACE`] after the last one leaves, so a
//! page that reconnects within it resumes where it stopped.
//!
//! Every item has a sequence number; with the feed's incarnation (random
//! per process) it makes the stream's event id. The feed keeps the last
//! [`CAPACITY`] items; a subscriber that resumes from a number the feed no
//! longer holds, or from before a pause in recording, is told to start over
//! ([`Since::Gap`]) instead of silently missing changes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Items the feed keeps for subscribers that resume.
pub const CAPACITY: usize = 50_000;

/// How long recording continues after the last subscriber left.
pub const GRACE: Duration = Duration::from_secs(60);

/// One change: its kind (the stream's event name) and its JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub seq: u64,
    pub kind: &'static str,
    pub json: Arc<str>,
}

/// What a subscriber resuming from a sequence number gets.
#[derive(Debug, PartialEq)]
pub enum Since {
    /// Every item from it on, in order (possibly none).
    Items(Vec<Item>),
    /// Some of those items are not held: start over.
    Gap,
}

#[derive(Debug, Default)]
struct Ring {
    items: VecDeque<Item>,
    /// The sequence number of the next item.
    next: u64,
    /// The first sequence number of the current recording: items before it
    /// may be missing.
    floor: u64,
    subscribers: usize,
    /// When the last subscriber left (while recording).
    left_at: Option<Instant>,
}

/// The node's feed.
#[derive(Debug)]
pub struct Feed {
    /// Tells this feed's sequence numbers from another node's, or from this
    /// node's before a restart (they start at 0 again).
    incarnation: u64,
    recording: AtomicBool,
    /// The node is stopping: streams end.
    closed: AtomicBool,
    ring: Mutex<Ring>,
    /// Wakes the streams waiting for items.
    arrived: tokio::sync::Notify,
}

impl Feed {
    pub fn new() -> Arc<Feed> {
        use std::hash::{BuildHasher, Hasher};
        // std's per-process random keys: no clock, no extra crate.
        let incarnation = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Arc::new(Feed {
            incarnation,
            recording: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            ring: Mutex::new(Ring::default()),
            arrived: tokio::sync::Notify::new(),
        })
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Whether publishers should look for changes.
    #[inline]
    pub fn recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        // A publisher that panicked left whole items: the ring stays usable.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds items; a no-op when not recording.
    pub fn publish(&self, items: impl IntoIterator<Item = (&'static str, String)>) {
        if !self.recording() {
            return;
        }
        let mut ring = self.ring();
        if ring.subscribers == 0 && ring.left_at.is_some_and(|t| t.elapsed() >= GRACE) {
            self.recording.store(false, Ordering::Relaxed);
            ring.items.clear();
            return;
        }
        let mut any = false;
        for (kind, json) in items {
            let seq = ring.next;
            ring.next += 1;
            if ring.items.len() == CAPACITY {
                ring.items.pop_front();
            }
            ring.items.push_back(Item {
                seq,
                kind,
                json: json.into(),
            });
            any = true;
        }
        drop(ring);
        if any {
            self.arrived.notify_waiters();
        }
    }

    /// A new subscriber: recording starts (or goes on). Returns the
    /// sequence number the next item will have: where a subscriber that
    /// wants only what is new starts. Drop the guard to leave.
    pub fn subscribe(self: &Arc<Self>) -> (Subscription, u64) {
        let mut ring = self.ring();
        if !self.recording() {
            ring.items.clear();
            ring.floor = ring.next;
            self.recording.store(true, Ordering::Relaxed);
        }
        ring.subscribers += 1;
        ring.left_at = None;
        let next = ring.next;
        (Subscription { feed: self.clone() }, next)
    }

    /// The items from sequence number `from` on, or [`Since::Gap`] when
    /// some of them are not held.
    pub fn since(&self, from: u64) -> Since {
        let ring = self.ring();
        if from > ring.next {
            // A number this feed never gave.
            return Since::Gap;
        }
        let oldest = ring.items.front().map_or(ring.next, |i| i.seq);
        if from < ring.floor || from < oldest {
            return Since::Gap;
        }
        let skip = (from - oldest) as usize;
        Since::Items(ring.items.iter().skip(skip).cloned().collect())
    }

    /// The sequence number the next item will have.
    pub fn next(&self) -> u64 {
        self.ring().next
    }

    /// Ends every stream (the node is stopping) and wakes them.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.arrived.notify_waiters();
    }

    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Waits until item `from` is published, the feed closes, or `timeout`
    /// passes.
    pub async fn wait(&self, from: u64, timeout: Duration) {
        let arrived = self.arrived.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        if self.next() > from || self.closed() {
            return;
        }
        let _ = actix_rt::time::timeout(timeout, arrived).await;
    }
}

/// A subscriber's presence; dropping it leaves the feed.
#[derive(Debug)]
pub struct Subscription {
    feed: Arc<Feed>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut ring = self.feed.ring();
        ring.subscribers -= 1;
        if ring.subscribers == 0 {
            ring.left_at = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u64) -> (&'static str, String) {
        ("twin", format!("{{\"n\":{n}}}"))
    }

    fn seqs(s: Since) -> Vec<u64> {
        match s {
            Since::Items(v) => v.iter().map(|i| i.seq).collect(),
            Since::Gap => panic!("a gap"),
        }
    }

    #[test]
    fn nothing_is_recorded_until_someone_subscribes() {
        let feed = Feed::new();
        feed.publish([item(0)]);
        assert!(!feed.recording());
        let (_sub, next) = feed.subscribe();
        assert_eq!(next, 0);
        assert_eq!(seqs(feed.since(0)), Vec::<u64>::new());
        feed.publish([item(1), item(2)]);
        assert_eq!(seqs(feed.since(0)), vec![0, 1]);
        assert_eq!(seqs(feed.since(1)), vec![1]);
        assert_eq!(seqs(feed.since(2)), Vec::<u64>::new());
        assert_eq!(feed.since(7), Since::Gap, "a number it never gave");
        assert_ne!(feed.incarnation(), Feed::new().incarnation());
    }

    #[test]
    fn a_resume_from_an_evicted_item_or_across_a_pause_is_a_gap() {
        let feed = Feed::new();
        let (sub, _) = feed.subscribe();
        feed.publish((0..CAPACITY as u64 + 5).map(item));
        assert_eq!(feed.since(4), Since::Gap, "evicted");
        assert_eq!(seqs(feed.since(5)).len(), CAPACITY);
        drop(sub);
        // Recording goes on within the grace period...
        feed.publish([item(9)]);
        assert!(feed.recording());
        let last = CAPACITY as u64 + 5;
        assert_eq!(seqs(feed.since(last)), vec![last]);
        // ...and stops after it; a later subscriber starts a new recording.
        feed.ring().left_at = Some(Instant::now() - GRACE);
        feed.publish([item(10)]);
        assert!(!feed.recording());
        let (_sub, next) = feed.subscribe();
        assert_eq!(next, last + 1);
        feed.publish([item(11)]);
        assert_eq!(feed.since(last), Since::Gap, "before the pause");
        assert_eq!(seqs(feed.since(last + 1)), vec![last + 1]);
    }

    #[test]
    fn a_waiting_stream_wakes_when_an_item_arrives() {
        let feed = Feed::new();
        let (_sub, next) = feed.subscribe();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let publisher = {
            let feed = feed.clone();
            std::thread::spawn(move || feed.publish([item(1)]))
        };
        rt.block_on(async {
            let started = Instant::now();
            feed.wait(next, Duration::from_secs(30)).await;
            assert!(started.elapsed() < Duration::from_secs(30), "woken, not timed out");
        });
        publisher.join().unwrap();
        assert_eq!(seqs(feed.since(next)), vec![0]);
    }
}
