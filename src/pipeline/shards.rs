//! What a cluster passes along the dataflow: changes of the shards a node
//! owns (in the cluster source's chunk order) and values twins of other
//! nodes relay to twins here.

use serde::{Deserialize, Serialize};

/// A value a twin of another node relayed to its followers here (a relay
/// record on the ingest partition of shard `shard`).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteRelay {
    /// The related asset (e.g. the tank).
    pub asset: String,
    pub sensor: String,
    pub latest: crate::twin::model::Latest,
    pub shard: u32,
}

/// The payload of a relay record (`twinstream.kind: relay`), produced to
/// the ingest topic's partition of each shard with followers.
#[derive(Debug, Serialize, Deserialize)]
pub struct RelayRecord<'a> {
    pub kind: &'a str,
    pub asset: &'a str,
    pub sensor: &'a str,
    pub ts: i64,
    pub value: f64,
}

/// A change of the shards a node owns, sent by the cluster source in its
/// chunk sequence: the router applies it after every chunk before it and
/// before any after it.
#[derive(Debug)]
pub enum ShardControl {
    /// Shards the group assigned to this node, restored into the store.
    Acquire(Vec<Acquired>),
    /// Shards revoked: checkpoint them, stop their twins, then say `done`
    /// (the partitions are released only then).
    Release {
        shards: Vec<u32>,
        done: crossbeam_channel::Sender<()>,
    },
    /// Shards this node lost without a rebalance (its session expired):
    /// another node may own them already, so stop their twins without
    /// writing anything more for them.
    Lost {
        shards: Vec<u32>,
        done: crossbeam_channel::Sender<()>,
    },
}

/// A shard taken over.
#[derive(Debug, Clone)]
pub struct Acquired {
    pub shard: u32,
    /// This node's incarnation as the shard's owner (the changelog fence).
    pub incarnation: u64,
    /// Where its ingest partition resumes (-1: from the start).
    pub next_offset: i64,
}
