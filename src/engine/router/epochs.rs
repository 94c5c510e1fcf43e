//! Epochs: the router remembers which twins it sent events to since the
//! last checkpoint (the dirty sets) and starts checkpoints ([`Epoch`])
//! every `snapshot.interval` or `snapshot.max_events`, no sooner than
//! `snapshot.min_pause` after the last was durable (or at once for an API
//! write). An epoch stores the twins of its dirty set and every
//! source's position as of the chunks routed; once it is durable, what
//! waited for it goes on: acknowledging sources, API writes, released
//! shards ([`super::shards`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::Router;
use crate::engine::checkpoint::{Durable, Epoch};
use crate::engine::worker::CheckpointTwins;
use crate::source::SourcePosition;
use crate::telemetry;
use crate::topology::Hop;
use crate::topology::SnapshotSpec;

/// When the chunks an epoch holds were received, for the `durable` hop:
/// counts per time grain (1 ms, doubled whenever more than
/// [`Received::MAX_GRAINS`] grains are in use, so a long interval under
/// load stays small; each chunk is timed by its grain's middle).
#[derive(Debug)]
pub(super) struct Received {
    /// What grains count from.
    base: Instant,
    grain_us: u64,
    counts: BTreeMap<u64, u64>,
}

impl Received {
    const MAX_GRAINS: usize = 4096;
    const FIRST_GRAIN_US: u64 = 1000;

    fn new(base: Instant) -> Received {
        Received {
            base,
            grain_us: Self::FIRST_GRAIN_US,
            counts: BTreeMap::new(),
        }
    }

    /// A chunk received at `at`.
    pub(super) fn push(&mut self, at: Instant) {
        let us = at.saturating_duration_since(self.base).as_micros() as u64;
        *self.counts.entry(us / self.grain_us).or_default() += 1;
        if self.counts.len() > Self::MAX_GRAINS {
            self.grain_us *= 2;
            let mut coarser = BTreeMap::new();
            for (grain, n) in std::mem::take(&mut self.counts) {
                *coarser.entry(grain / 2).or_default() += n;
            }
            self.counts = coarser;
        }
    }

    /// Takes what was pushed, leaving this empty (at the first grain).
    fn take(&mut self) -> Received {
        std::mem::replace(self, Received::new(self.base))
    }

    /// Observes the `durable` hop of every chunk: durable at `at`.
    fn durable(&self, at: Instant) {
        for (&grain, &n) in &self.counts {
            let received = self.base + Duration::from_micros(grain * self.grain_us + self.grain_us / 2);
            telemetry::hop(
                Hop::Durable.name(),
                at.saturating_duration_since(received).as_secs_f64(),
                n,
            );
        }
    }
}

/// An epoch started and not yet durable.
struct InflightEpoch {
    id: u64,
    /// When its chunks were received.
    received: Received,
    /// The line of the first positioned source it stores (for the log).
    line: Option<u64>,
    /// Per acknowledging source: `next_seq` when the epoch started (it holds
    /// every chunk before that).
    acked: Vec<(usize, u64)>,
}

pub(super) struct Epochs {
    /// Per worker: the local slots of the twins dirty for the next epoch.
    dirty: Vec<Vec<u32>>,
    /// How many twins the dirty sets hold.
    n_dirty: usize,
    /// A source's position changed since the last epoch (it needs one even
    /// when no twin is dirty).
    pub(super) positions_changed: bool,
    /// Id of the last epoch started; the next one is `epoch + 1`.
    pub(super) epoch: u64,
    /// Epochs started and not yet durable, oldest first.
    inflight: VecDeque<InflightEpoch>,
    /// When the last epoch started.
    last_checkpoint: Instant,
    /// The next epoch starts no sooner (`snapshot.min_pause` after the last
    /// durable), unless an API write waits for it.
    pause_ends: Instant,
    /// Events routed since the last epoch started.
    pub(super) events_since_checkpoint: u64,
    /// When the chunks routed since the last epoch started were received.
    pub(super) received: Received,
    /// Where an epoch goes once every part arrived (the store writer).
    writer: Sender<Arc<Epoch>>,
    snapshot: SnapshotSpec,
    /// Identifies this process run (nanoseconds since the epoch at start).
    run_id: u128,
    /// An API write waits for a checkpoint: take the next one without
    /// waiting for the interval.
    urgent: bool,
    /// API writes waiting for durability: the epoch that holds each.
    durable_waiters: Vec<(u64, tokio::sync::oneshot::Sender<()>)>,
    /// The last epoch known durable.
    pub(super) durable_epoch: u64,
}

impl Epochs {
    pub(super) fn new(workers: usize, writer: Sender<Arc<Epoch>>, snapshot: SnapshotSpec) -> Epochs {
        Epochs {
            dirty: vec![Vec::new(); workers],
            n_dirty: 0,
            positions_changed: false,
            epoch: 0,
            inflight: VecDeque::new(),
            last_checkpoint: Instant::now(),
            pause_ends: Instant::now(),
            events_since_checkpoint: 0,
            received: Received::new(Instant::now()),
            writer,
            snapshot,
            run_id: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            urgent: false,
            durable_waiters: Vec::new(),
            durable_epoch: 0,
        }
    }

    /// The id of the next epoch (the one a twin changed now is dirty for).
    #[inline]
    pub(super) fn next(&self) -> u64 {
        self.epoch + 1
    }

    /// Puts the twin in slot `local` of `worker` in the next epoch's dirty
    /// set (its `dirty_for` is set by the caller).
    #[inline]
    pub(super) fn mark(&mut self, worker: usize, local: u32) {
        self.dirty[worker].push(local);
        self.n_dirty += 1;
    }

    /// Takes the twins in `gone` (worker, local slot) out of the next
    /// epoch's dirty sets: they left this node.
    pub(super) fn forget(&mut self, gone: &[(usize, u32)]) {
        if gone.is_empty() {
            return;
        }
        let mut by_worker = vec![std::collections::HashSet::new(); self.dirty.len()];
        for &(w, local) in gone {
            by_worker[w].insert(local);
        }
        for (list, gone) in self.dirty.iter_mut().zip(&by_worker) {
            if !gone.is_empty() {
                let before = list.len();
                list.retain(|l| !gone.contains(l));
                self.n_dirty -= before - list.len();
            }
        }
    }

    pub(super) fn checkpoint_due(&self) -> bool {
        self.checkpoint_due_at(Instant::now())
    }

    fn checkpoint_due_at(&self, now: Instant) -> bool {
        self.inflight.is_empty()
            && (self.n_dirty > 0 || self.positions_changed)
            && (self.urgent
                || (now >= self.pause_ends
                    && (now.saturating_duration_since(self.last_checkpoint) >= self.snapshot.interval
                        || self.events_since_checkpoint >= self.snapshot.max_events)))
    }

    /// How long until the next checkpoint is due by the interval and the
    /// pause.
    pub(super) fn until_due(&self) -> Duration {
        let now = Instant::now();
        let interval = (self.last_checkpoint + self.snapshot.interval).saturating_duration_since(now);
        interval.max(self.pause_ends.saturating_duration_since(now))
    }

    /// Epoch `took` from start to durable, which was `now`: the next starts
    /// no sooner than the pause after it.
    fn paced(&mut self, took: Duration, now: Instant) {
        let pause = self.snapshot.min_pause.after(took);
        self.pause_ends = now + pause;
        telemetry::snapshot_pause(pause.as_secs_f64());
    }

    /// An API write to a twin dirty for the next epoch: `durable` is told
    /// once that epoch is durable, which starts without waiting for the
    /// interval.
    pub(super) fn wait_durable(&mut self, durable: tokio::sync::oneshot::Sender<()>) {
        self.durable_waiters.push((self.epoch + 1, durable));
        self.urgent = true;
    }

    /// The newest epoch started and not yet durable.
    pub(super) fn newest_inflight(&self) -> Option<u64> {
        self.inflight.back().map(|e| e.id)
    }
}

impl Router {
    /// Starts an epoch over the current dirty set; returns its id.
    pub(super) fn start_epoch(&mut self) -> u64 {
        self.epochs.epoch += 1;
        let positions: Vec<(String, Vec<u8>)> = self
            .sources
            .iter()
            .filter(|s| s.positioned)
            .map(|s| (SourcePosition::meta_key(&s.name), s.position.encode()))
            .collect();
        // Unique across restarts: the run's start time and the epoch.
        let digest_key = format!(
            "{}{:020}-{:010}",
            crate::report::DIGEST_PREFIX,
            self.epochs.run_id,
            self.epochs.epoch
        );
        let marks = self.shards.marks();
        let ep = Epoch::new(
            self.epochs.epoch,
            self.epochs.n_dirty,
            &positions,
            digest_key,
            self.store.clone(),
            self.epochs.writer.clone(),
            marks,
        );
        for (w, locals) in self.epochs.dirty.iter_mut().enumerate() {
            if !locals.is_empty() {
                self.workers[w].do_send(CheckpointTwins {
                    epoch: ep.clone(),
                    locals: std::mem::take(locals),
                });
            }
        }
        ep.arrive();
        self.epochs.urgent = false;
        self.epochs.n_dirty = 0;
        self.epochs.positions_changed = false;
        self.epochs.events_since_checkpoint = 0;
        self.epochs.last_checkpoint = Instant::now();
        let line = self.sources.iter().find(|s| s.positioned).map(|s| s.position.line);
        let acked: Vec<(usize, u64)> = self
            .sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.acks.is_some() && s.next_seq > 0)
            .map(|(i, s)| (i, s.next_seq))
            .collect();
        self.epochs.inflight.push_back(InflightEpoch {
            id: self.epochs.epoch,
            received: self.epochs.received.take(),
            line,
            acked,
        });
        telemetry::flow_inflight(self.flow.inflight());
        self.epochs.epoch
    }

    pub(super) fn on_durable(&mut self, d: &Durable) {
        self.epochs.durable_epoch = self.epochs.durable_epoch.max(d.epoch);
        self.release_durable(d.epoch);
        let (done, waiting) = std::mem::take(&mut self.epochs.durable_waiters)
            .into_iter()
            .partition(|(epoch, _)| *epoch <= d.epoch);
        self.epochs.durable_waiters = waiting;
        for (_, tx) in done {
            let _ = tx.send(());
        }
        // Epochs commit in order; log the position this one stored, not
        // where the sources have got to since.
        let mut line = None;
        let now = Instant::now();
        self.epochs.paced(d.elapsed, now);
        while self.epochs.inflight.front().is_some_and(|e| e.id <= d.epoch) {
            let e = self.epochs.inflight.pop_front().expect("checked");
            e.received.durable(now);
            line = e.line;
            for (source, next_seq) in e.acked {
                if let Some(tx) = &self.sources[source].acks {
                    let _ = tx.send(next_seq - 1);
                }
            }
        }
        tracing::info!(
            epoch = d.epoch,
            twins = d.twins,
            operands = d.operands,
            bytes = d.bytes,
            ms = d.elapsed.as_millis() as u64,
            line,
            "checkpoint durable"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::MinPause;

    /// Epochs of `workers` (a checkpoint every second or 1000 events, with
    /// `min_pause`) and nothing dirty.
    fn clean(workers: usize, min_pause: MinPause) -> Epochs {
        let (writer, _) = crossbeam_channel::unbounded();
        let snapshot = SnapshotSpec {
            interval: Duration::from_secs(1),
            max_events: 1000,
            sync: false,
            min_pause,
        };
        Epochs::new(workers, writer, snapshot)
    }

    /// One worker's epochs, with one twin dirty.
    fn epochs(min_pause: MinPause) -> Epochs {
        let mut e = clean(1, min_pause);
        e.mark(0, 7);
        e
    }

    /// Twins that left (their shard went to another node) leave the dirty
    /// sets, so a new twin in one of their slots is listed once.
    #[test]
    fn twins_that_left_are_not_in_the_next_epoch() {
        let mut e = clean(2, MinPause::Auto);
        for (w, local) in [(0, 1), (0, 2), (1, 1), (1, 3)] {
            e.mark(w, local);
        }
        e.forget(&[(0, 2), (1, 1), (1, 9)]);
        assert_eq!(e.dirty, vec![vec![1], vec![3]]);
        assert_eq!(e.n_dirty, 2);
        e.forget(&[]);
        assert_eq!(e.n_dirty, 2);
    }

    /// With `auto`, a checkpoint that took 3 s holds the next until 3 s
    /// after it was durable, though the interval (1 s) passed long before,
    /// and so does `max_events`; an API write still starts one at once. A cheap
    /// checkpoint leaves the cadence to the interval, and a fixed pause is
    /// what it says.
    #[test]
    fn the_next_checkpoint_waits_as_long_as_the_last_took() {
        let mut e = epochs(MinPause::Auto);
        let started = e.last_checkpoint;
        let durable = started + Duration::from_secs(3);
        e.paced(Duration::from_secs(3), durable);
        assert!(!e.checkpoint_due_at(durable + Duration::from_millis(2999)));
        assert!(e.checkpoint_due_at(durable + Duration::from_secs(3)));
        e.events_since_checkpoint = 1000;
        assert!(!e.checkpoint_due_at(durable), "max_events waits for the pause too");
        assert!(e.checkpoint_due_at(durable + Duration::from_secs(3)));
        e.events_since_checkpoint = 0;
        e.urgent = true;
        assert!(e.checkpoint_due_at(durable), "an API write does not wait for the pause");
        e.urgent = false;

        e.paced(Duration::from_millis(10), started + Duration::from_millis(10));
        assert!(
            !e.checkpoint_due_at(started + Duration::from_millis(999)),
            "the interval still holds"
        );
        assert!(e.checkpoint_due_at(started + Duration::from_secs(1)));

        let mut e = epochs(MinPause::Fixed(Duration::ZERO));
        let started = e.last_checkpoint;
        e.paced(Duration::from_secs(3), started + Duration::from_secs(3));
        assert!(
            e.checkpoint_due_at(started + Duration::from_secs(3)),
            "no pause: due at once"
        );
        let mut e = epochs(MinPause::Fixed(Duration::from_secs(2)));
        let started = e.last_checkpoint;
        e.paced(Duration::from_millis(10), started + Duration::from_millis(10));
        assert!(!e.checkpoint_due_at(started + Duration::from_millis(2009)));
        assert!(e.checkpoint_due_at(started + Duration::from_millis(2010)));
    }

    /// 100,000 chunks over 100 s: the grain doubles until at most
    /// `MAX_GRAINS` are in use (1 ms -> 32 ms), and every chunk is counted.
    #[test]
    fn received_chunks_are_counted_in_few_grains() {
        let base = Instant::now();
        let mut r = Received::new(base);
        for i in 0..100_000u64 {
            r.push(base + Duration::from_micros(i * 1000));
        }
        assert_eq!(r.grain_us, 32_000);
        assert!(r.counts.len() <= Received::MAX_GRAINS, "{}", r.counts.len());
        assert_eq!(r.counts.values().sum::<u64>(), 100_000);
        // 32 chunks a grain (one a millisecond), the first grain from 0 ms.
        assert_eq!(r.counts.first_key_value(), Some((&0, &32)));
        let taken = r.take();
        assert_eq!(taken.counts.len(), 3125);
        assert!(r.counts.is_empty() && r.grain_us == Received::FIRST_GRAIN_US);
    }
}
