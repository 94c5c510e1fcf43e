//! The node's timer index: one deadline per twin that needs one
//! (staleness, idle timeout, command timeouts) in a heap, so 100k twins
//! cost a heap, not 100k timers. Twins in memory report their deadlines
//! ([`super::Feedback::Timer`]); those of twins only in the store
//! (passivated, or not woken since a restart) are read from the store's
//! deadline index as they near, through one cursor per owned shard. An
//! entry may fire early (the twin re-arms it), never late.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

use ahash::AHashMap;
use compact_str::CompactString;

use super::Router;
use crate::engine::worker::{Deliver, TwinBatch};
use crate::store::{DeadlineCursor, Store};
use crate::telemetry;
use crate::twin::model::Relayed;

/// How often the router looks at due timers.
pub(super) const TIMER_ROUND: Duration = Duration::from_millis(100);
/// How far ahead of now the router reads the store's deadline index.
const DEADLINE_LOOKAHEAD_MS: i64 = 1_000;
/// Stored deadlines read per timer round at most: 50k twins woken a second
/// after a long stop, while input keeps flowing between the rounds.
const DEADLINE_SCAN_BUDGET: usize = 5_000;

pub(super) struct Timers {
    /// Timer deadlines (epoch ms) of twins, earliest first: those twins in
    /// memory armed, and those the deadline index holds up to a little
    /// after now.
    heap: BinaryHeap<Reverse<(i64, CompactString)>>,
    /// Per owned shard: how far its deadline index has been read.
    cursors: BTreeMap<u32, DeadlineCursor>,
}

impl Timers {
    pub(super) fn new() -> Timers {
        Timers {
            heap: BinaryHeap::new(),
            cursors: BTreeMap::new(),
        }
    }

    /// A deadline a twin in memory armed.
    #[inline]
    pub(super) fn arm(&mut self, at: i64, asset: &str) {
        self.heap.push(Reverse((at, asset.into())));
    }

    /// Reads the deadline index of `shard` (owned now) from its start, as
    /// its deadlines come due.
    pub(super) fn follow(&mut self, shard: u32) {
        self.cursors.insert(shard, DeadlineCursor::default());
    }

    /// Stops reading the deadline index of `shard` (no longer owned).
    pub(super) fn forget(&mut self, shard: u32) {
        self.cursors.remove(&shard);
    }

    /// Moves the stored deadlines due by `now` + [`DEADLINE_LOOKAHEAD_MS`]
    /// into the heap, at most [`DEADLINE_SCAN_BUDGET`] a round (a node
    /// restarted after a long stop wakes its overdue twins over several
    /// rounds instead of in one stall). A deadline stored after the cursor
    /// passed it was also sent to the heap by its twin; one read twice fires
    /// twice, and a twin finding nothing due re-arms (early, never late).
    fn scan_deadlines(&mut self, store: &Store, now: i64) {
        let until = now.saturating_add(DEADLINE_LOOKAHEAD_MS);
        let mut budget = DEADLINE_SCAN_BUDGET;
        let timers = &mut self.heap;
        for (shard, cursor) in self.cursors.iter_mut() {
            if budget == 0 {
                break;
            }
            match store.deadlines_from(*shard, cursor, until, budget, |at, asset| {
                timers.push(Reverse((at, asset.into())))
            }) {
                Ok(n) => budget -= n,
                Err(e) => {
                    tracing::error!(shard, error = %e, "the deadline index is unreadable: twins of this shard wake only on input");
                }
            }
        }
    }
}

impl Router {
    /// Starts reading the stored deadlines of this node's twins (a
    /// restart): a twin that comes due wakes without waiting for a reading.
    /// Nothing is read now - the store's deadline index is read in deadline
    /// order as deadlines near ([`Timers::scan_deadlines`]). (`replay` runs no
    /// timers.)
    pub fn start_timers(&mut self) {
        if self.flush_at_end {
            return;
        }
        for shard in self.sharding.owned() {
            self.timers.follow(shard);
        }
        tracing::info!(
            shards = self.timers.cursors.len(),
            "timers of stored twins armed from the deadline index"
        );
    }

    /// Delivers due timers and pending relays, one message per worker.
    /// (`replay` keeps no timers: see [`Self::start_timers`].)
    pub(super) fn timer_round(&mut self, now: i64) {
        self.timers.scan_deadlines(&self.store, now);
        let mut work: AHashMap<CompactString, (bool, Vec<Relayed>)> = AHashMap::new();
        while self.timers.heap.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            let Some(Reverse((_, asset))) = self.timers.heap.pop() else {
                break;
            };
            work.entry(asset).or_default().0 = true;
        }
        let fired = work.len();
        let mut relays = 0;
        for (asset, relayed) in self.relays.drain() {
            relays += relayed.len();
            work.entry(asset).or_default().1 = relayed;
        }
        telemetry::timers(fired, self.timers.heap.len());
        telemetry::relays_delivered(relays);
        telemetry::twins_active(self.directory.twins.len());
        self.backlog.report();
        if work.is_empty() {
            return;
        }
        let mut batches: Vec<Vec<TwinBatch>> = (0..self.workers.len()).map(|_| Vec::new()).collect();
        for (asset, (tick, related)) in work {
            let entry = match self.directory.twins.get(asset.as_str()) {
                Some(t) if !self.sharding.owns(t.shard) => continue,
                Some(_) => 0,
                // Another node's twin (a shard handed over): its owner
                // loaded the timer with the shard.
                None if !self.sharding.owns(self.sharding.shard_of(&asset)) => continue,
                None => match self.index.resolve(&asset) {
                    Some(e) => e,
                    None => {
                        tracing::warn!(%asset, "a timer or relayed value for an asset no entry matches any more; dropped");
                        continue;
                    }
                },
            };
            let (worker, local, create) = self.twin(&asset, entry);
            batches[worker].push(TwinBatch {
                local,
                create,
                events: Vec::new(),
                related,
                tick,
            });
        }
        let permit = self.flow.extra();
        let now = Instant::now();
        for (w, batches) in batches.into_iter().enumerate() {
            if !batches.is_empty() {
                self.backlog.sent(w);
                self.workers[w].do_send(Deliver {
                    batches,
                    received_at: now,
                    routed_at: now,
                    permit: permit.clone(),
                });
            }
        }
    }
}
