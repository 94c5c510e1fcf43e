//! Relations: the router relays values that twins read through relations
//! (`feeds.level`) from the related twin to the twins that relate to it
//! (its followers), and keeps the last value relayed per related asset for
//! followers that start later. Relayed values wait to be delivered with the
//! next chunk or timer round ([`super::timers`]).

use std::time::Duration;

use ahash::AHashMap;
use compact_str::CompactString;

use super::Router;
use crate::cluster::Sharding;
use crate::pipeline::RemoteRelay;
use crate::source::decode::AssetIndex;
use crate::twin::model::{Latest, Relayed};
use crate::twin::schema::Model;

/// How long relayed values wait at most to be delivered with others.
pub(super) const RELAY_ROUND: Duration = Duration::from_millis(5);

/// A twin that reads a sensor of another asset through a relation.
struct Follower {
    asset: CompactString,
    /// Sensor of the related asset.
    sensor: u16,
    /// Where the follower keeps it.
    slot: u16,
}

pub(super) struct Relays {
    /// Related asset id -> the twins that read it.
    followers: AHashMap<CompactString, Vec<Follower>>,
    /// The last relayed values per related asset, for followers that start later.
    board: AHashMap<CompactString, Vec<(u16, Latest)>>,
    /// Relayed values per twin waiting to be delivered (with the next chunk
    /// or timer round).
    pending: AHashMap<CompactString, Vec<Relayed>>,
}

impl Relays {
    /// Registers the followers named by exact asset entries (glob entries
    /// register each asset when its twin starts).
    pub(super) fn new(model: &Model, index: &AssetIndex) -> Relays {
        let mut relays = Relays {
            followers: AHashMap::new(),
            board: AHashMap::new(),
            pending: AHashMap::new(),
        };
        for (id, entry) in index.exact_ids() {
            relays.register_follower(model, index, id, entry);
        }
        relays
    }

    pub(super) fn register_follower(&mut self, model: &Model, index: &AssetIndex, asset: &str, entry: u32) {
        let ty = &model.types[index.entry_type[entry as usize] as usize];
        for (relation, target) in &index.entry_relations[entry as usize] {
            for (slot, def) in ty.related.iter().enumerate() {
                if def.relation != *relation {
                    continue;
                }
                let list = self.followers.entry((&**target).into()).or_default();
                if list.iter().any(|f| f.asset == asset && f.slot == slot as u16) {
                    continue;
                }
                list.push(Follower {
                    asset: asset.into(),
                    sensor: def.sensor,
                    slot: slot as u16,
                });
                // What the related asset reported before this twin started.
                if let Some(latest) = self
                    .board
                    .get(&**target)
                    .and_then(|b| b.iter().find(|(s, _)| *s == def.sensor))
                    .map(|(_, l)| *l)
                {
                    self.pending.entry(asset.into()).or_default().push(Relayed {
                        slot: slot as u16,
                        latest,
                    });
                }
            }
        }
    }

    /// A sensor of `asset` that other twins read changed: its followers get
    /// it with their next message (`shard`: only those of that shard - a
    /// relay record from another node, one per shard with followers).
    pub(super) fn relay(&mut self, sharding: &Sharding, asset: &str, sensor: u16, latest: Latest, shard: Option<u32>) {
        let board = self.board.entry(asset.into()).or_default();
        match board.iter_mut().find(|(s, _)| *s == sensor) {
            // The newest value (a relay record read again after a takeover
            // may be older than one relayed since).
            Some(b) if b.1.ts > latest.ts => {}
            Some(b) => b.1 = latest,
            None => board.push((sensor, latest)),
        }
        let Some(followers) = self.followers.get(asset) else {
            return;
        };
        for f in followers.iter().filter(|f| f.sensor == sensor) {
            if shard.is_some_and(|s| sharding.shard_of(&f.asset) != s) {
                continue;
            }
            self.pending
                .entry(f.asset.clone())
                .or_default()
                .push(Relayed { slot: f.slot, latest });
        }
    }

    /// Whether relayed values wait to be delivered.
    #[inline]
    pub(super) fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes the relayed values waiting, per twin, for delivery.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = (CompactString, Vec<Relayed>)> + '_ {
        self.pending.drain()
    }
}

impl Router {
    /// Relay records of a cluster source: values twins of other nodes
    /// relayed to this node's followers.
    pub(super) fn remote_relays(&mut self, relays: Vec<RemoteRelay>) {
        for r in relays {
            let sensor = self.index.resolve(&r.asset).and_then(|e| {
                let ty = &self.model.types[self.index.entry_type[e as usize] as usize];
                ty.sensors.iter().position(|s| **s == *r.sensor)
            });
            match sensor {
                Some(s) => self
                    .relays
                    .relay(&self.sharding, &r.asset, s as u16, r.latest, Some(r.shard)),
                None => tracing::warn!(asset = %r.asset, sensor = %r.sensor,
                    "a relayed value of an asset or sensor this topology does not have; ignored"),
            }
        }
    }
}
