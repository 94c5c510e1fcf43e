//! The twin directory: which worker thread hosts the twin of each asset id
//! and in which local slot, starting a twin (round robin over the workers)
//! on its first event, timer or API request; and passivation: twins idle
//! for `node.passivate_after` are dropped once their state is durable, to
//! start again from the store when next needed.

use std::time::{Duration, Instant};

use actix::Addr;
use ahash::AHashMap;
use compact_str::CompactString;

use super::Router;
use crate::engine::worker::{Evict, Leave, NewTwin, Worker};
use crate::telemetry;

pub(super) struct TwinRef {
    /// The epoch this twin is dirty for (it is in that epoch's dirty set).
    pub(super) dirty_for: u64,
    pub(super) local: u32,
    /// Its shard (0 on a single node).
    pub(super) shard: u32,
    /// When the router last sent it something ([`Directory::clock`], seconds).
    last_active: u32,
    pub(super) worker: u16,
}

pub(super) struct Directory {
    /// Asset id (inline up to 24 bytes) -> its twin.
    pub(super) twins: AHashMap<CompactString, TwinRef>,
    /// Per worker: how many local slots it has handed out (the next new one).
    slots: Vec<u32>,
    /// Per worker: local slots of evicted twins, reused by new ones (the
    /// worker has processed the eviction before anything reaches the slot
    /// again: both travel in its mailbox, in order).
    free: Vec<Vec<u32>>,
    next_worker: usize,
    /// Passivate twins idle for this long (`node.passivate_after`).
    passivate_after: Option<Duration>,
    /// Seconds since the router started, as of the current message.
    clock: u32,
    started: Instant,
    last_sweep: Instant,
}

/// How often the router looks for twins to passivate: a quarter of the idle
/// time (a twin stays in memory at most 1.25 x `passivate_after`), at least
/// every second, at most every minute.
fn sweep_every(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

impl Directory {
    pub(super) fn new(workers: usize, passivate_after: Option<Duration>) -> Directory {
        Directory {
            twins: AHashMap::new(),
            slots: vec![0; workers],
            free: vec![Vec::new(); workers],
            next_worker: 0,
            passivate_after,
            clock: 0,
            started: Instant::now(),
            last_sweep: Instant::now(),
        }
    }

    /// Sets the clock for the message about to be handled.
    #[inline]
    pub(super) fn tick(&mut self) {
        self.clock = self.started.elapsed().as_secs() as u32;
    }

    /// Passivates idle twins when a sweep is due (every [`sweep_every`]);
    /// `durable_epoch`: the last epoch known durable.
    pub(super) fn sweep(&mut self, workers: &[Addr<Worker>], durable_epoch: u64) {
        if self
            .passivate_after
            .is_some_and(|idle| self.last_sweep.elapsed() >= sweep_every(idle))
        {
            self.passivate_idle(workers, durable_epoch);
            self.last_sweep = Instant::now();
        }
    }

    /// Removes the twins `leave` picks and has their workers drop them;
    /// returns how many. Their slots are reused only after the worker
    /// dropped the twin: both travel in its mailbox, in order.
    pub(super) fn drop_twins(
        &mut self,
        workers: &[Addr<Worker>],
        why: Leave,
        mut leave: impl FnMut(&TwinRef) -> bool,
    ) -> usize {
        let mut locals: Vec<Vec<u32>> = vec![Vec::new(); workers.len()];
        self.twins.retain(|_, t| {
            let go = leave(t);
            if go {
                locals[t.worker as usize].push(t.local);
            }
            !go
        });
        let mut n = 0;
        for (w, locals) in locals.into_iter().enumerate() {
            if !locals.is_empty() {
                n += locals.len();
                self.free[w].extend_from_slice(&locals);
                workers[w].do_send(Evict { locals, why });
            }
        }
        n
    }

    /// Passivates every twin idle for `passivate_after` whose state is
    /// durable (not dirty since the last durable epoch): its worker drops it,
    /// and its next event, timer or API request starts it from the store.
    /// Its timer stays in the index. One pass over the twins in memory
    /// (~10 ns each), every [`sweep_every`].
    fn passivate_idle(&mut self, workers: &[Addr<Worker>], durable_epoch: u64) {
        let Some(idle) = self.passivate_after else { return };
        let idle = idle.as_secs().min(u64::from(u32::MAX)) as u32;
        let (clock, durable) = (self.clock, durable_epoch);
        let n = self.drop_twins(workers, Leave::Passivate, |t| {
            clock.saturating_sub(t.last_active) >= idle && t.dirty_for <= durable
        });
        telemetry::twins_active(self.twins.len());
        if n > 0 {
            tracing::debug!(twins = n, active = self.twins.len(), "passivated idle twins");
        }
    }
}

impl Router {
    /// The twin of `asset` (starting it if new), marked dirty for the next epoch.
    #[inline]
    pub(super) fn twin(&mut self, asset: &str, entry: u32) -> (usize, u32, Option<NewTwin>) {
        self.twin_ref(asset, entry, true)
    }

    /// The twin of `asset` (starting it if new); `dirty`: it will change, so
    /// the next epoch snapshots it.
    pub(super) fn twin_ref(&mut self, asset: &str, entry: u32, dirty: bool) -> (usize, u32, Option<NewTwin>) {
        let next = self.epochs.next();
        if let Some(t) = self.directory.twins.get_mut(asset) {
            t.last_active = self.directory.clock;
            if dirty && t.dirty_for != next {
                t.dirty_for = next;
                self.epochs.mark(t.worker as usize, t.local);
                self.shards.twin_changed(t.shard);
            }
            return (t.worker as usize, t.local, None);
        }
        let shard = self.sharding.shard_of(asset);
        let directory = &mut self.directory;
        let worker = directory.next_worker;
        directory.next_worker = (directory.next_worker + 1) % directory.slots.len();
        // A slot of an evicted twin first: a node that hands shards back
        // and forth keeps its workers' tables the size of what it owns.
        let local = match directory.free[worker].pop() {
            Some(local) => local,
            None => {
                directory.slots[worker] += 1;
                directory.slots[worker] - 1
            }
        };
        directory.twins.insert(
            asset.into(),
            TwinRef {
                worker: worker as u16,
                local,
                shard,
                // Epochs count from 1: 0 is dirty for none.
                dirty_for: if dirty { next } else { 0 },
                last_active: directory.clock,
            },
        );
        if dirty {
            self.epochs.mark(worker, local);
            self.shards.twin_changed(shard);
        }
        if !self.index.entry_relations[entry as usize].is_empty() {
            self.relays.register_follower(&self.model, &self.index, asset, entry);
        }
        let ty = self.index.entry_type[entry as usize] as usize;
        (worker, local, Some((asset.into(), self.model.types[ty].clone(), shard)))
    }
}
