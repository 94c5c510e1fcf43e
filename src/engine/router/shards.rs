//! The shards this node owns (a cluster node; a single node owns shard 0
//! for good): their incarnation and next ingest offset, which an epoch
//! stores for the shards that changed since the last one, and the shards
//! acquired, released and lost in chunk order ([`ShardControl`]).

use std::collections::{BTreeMap, BTreeSet};

use crossbeam_channel::Sender;

use super::Router;
use crate::engine::checkpoint::ShardMark;
use crate::engine::worker::Leave;
use crate::pipeline::{Acquired, ShardControl};

pub(super) struct Shards {
    /// Cluster: the owned shards' incarnation and next ingest offset.
    pub(super) owned: BTreeMap<u32, (u64, i64)>,
    /// A cluster node (shards come and go); a single node has shard 0.
    clustered: bool,
    /// Cluster: shards whose twins or offset changed since the last epoch.
    pub(super) changed: BTreeSet<u32>,
    /// Released shards whose twins stop once the epoch holding them is
    /// durable: `(epoch, shards, done)`.
    releases: Vec<(u64, Vec<u32>, Sender<()>)>,
}

impl Shards {
    pub(super) fn new(clustered: bool) -> Shards {
        Shards {
            owned: BTreeMap::new(),
            clustered,
            changed: Default::default(),
            releases: Vec::new(),
        }
    }

    /// A twin of `shard` changed: a cluster node stores the shard's mark
    /// with the next epoch.
    #[inline]
    pub(super) fn twin_changed(&mut self, shard: u32) {
        if self.clustered {
            self.changed.insert(shard);
        }
    }

    /// What an epoch starting now stores of the shards (cluster): the
    /// marks of those changed since the last one.
    pub(super) fn marks(&mut self) -> Option<Vec<ShardMark>> {
        self.clustered.then(|| {
            let changed = std::mem::take(&mut self.changed);
            changed
                .into_iter()
                .filter_map(|shard| {
                    self.owned.get(&shard).map(|(incarnation, next_offset)| ShardMark {
                        shard,
                        incarnation: *incarnation,
                        next_offset: *next_offset,
                    })
                })
                .collect()
        })
    }
}

impl Router {
    /// A change of the shards this node owns (cluster), in chunk order.
    pub(super) fn on_control(&mut self, control: ShardControl) {
        match control {
            ShardControl::Acquire(shards) => {
                for a in shards {
                    self.acquire(a);
                }
            }
            ShardControl::Release { shards, done } => {
                // Nothing reaches these shards' twins any more (the source
                // reads no more of them, timers and the API see they are not
                // owned); the epoch holds everything routed to them.
                for s in &shards {
                    self.shards.changed.insert(*s);
                }
                let epoch = self.start_epoch();
                for s in &shards {
                    self.shards.owned.remove(s);
                    self.sharding.release(*s);
                    self.timers.forget(*s);
                }
                self.shards.releases.push((epoch, shards, done));
            }
            ShardControl::Lost { shards, done } => {
                for s in &shards {
                    self.shards.owned.remove(s);
                    self.sharding.release(*s);
                    self.shards.changed.remove(s);
                    self.timers.forget(*s);
                }
                self.evict(&shards);
                tracing::warn!(
                    ?shards,
                    "shards lost (this node's group session expired): twins stopped without a final checkpoint"
                );
                // Answer once the epochs in flight are durable, so no write
                // of this node for them lands after the shards move on.
                match self.epochs.newest_inflight() {
                    Some(epoch) => self.shards.releases.push((epoch, Vec::new(), done)),
                    None => {
                        let _ = done.send(());
                    }
                }
            }
        }
    }

    fn acquire(&mut self, a: Acquired) {
        self.shards.owned.insert(a.shard, (a.incarnation, a.next_offset));
        self.sharding.acquire(a.shard);
        // Its deadlines are read from the shard's index as they come due.
        self.timers.follow(a.shard);
        tracing::info!(shard = a.shard, next_offset = a.next_offset, "shard acquired");
        self.shards.changed.insert(a.shard);
    }

    /// Stops the twins of `shards` (their state is durable, or another node
    /// owns them now). Those dirty for the next epoch leave its dirty sets:
    /// their slots may go to new twins before it starts, which would then
    /// be listed twice (and another node owns their state now).
    fn evict(&mut self, shards: &[u32]) {
        let next = self.epochs.next();
        let mut dirty = Vec::new();
        self.directory.drop_twins(&self.workers, Leave::Evict, |t| {
            let leaves = shards.contains(&t.shard);
            if leaves && t.dirty_for == next {
                dirty.push((t.worker as usize, t.local));
            }
            leaves
        });
        self.epochs.forget(&dirty);
    }

    /// Epoch `durable` is durable: the twins of the shards released with it
    /// or before stop, and whoever released them hears so.
    pub(super) fn release_durable(&mut self, durable: u64) {
        let (released, waiting) = std::mem::take(&mut self.shards.releases)
            .into_iter()
            .partition(|(epoch, _, _)| *epoch <= durable);
        self.shards.releases = waiting;
        for (_, shards, done) in released {
            self.evict(&shards);
            tracing::info!(
                ?shards,
                epoch = durable,
                "shards released: final checkpoint durable, twins stopped"
            );
            let _ = done.send(());
        }
    }
}
