//! The cluster: shards are the partitions of the ingest Kafka topic, and the
//! consumer group's assignment is the shard assignment.
//!
//! * [`partition_for`]: the shard of an asset id, Kafka's default
//!   partitioner (murmur2 of the key, as the Java client and librdkafka's
//!   `murmur2_random` compute it). A record whose key maps to another
//!   partition than the one it arrived on is dead-lettered: the shard of an
//!   asset must be computable by every node (for HTTP reads, timers and
//!   commands), not only known from where its events happened to land.
//! * [`Sharding`]: what the node owns now, shared by the router (which
//!   changes it on handover) and the HTTP API (which reads it).
//! * [`ShardMeta`]: per shard, in the store's meta family, written in the
//!   checkpoint's batch: where the shard's partition resumes, and the end of
//!   the changelog as this node last wrote it (a local copy is fresh when the
//!   changelog still ends there).
//! * [`changelog`]: every checkpoint's twin records, published to a topic
//!   keyed by asset id (partition = shard) with a consistency marker per
//!   shard, and the fold that restores a shard from it on another node.
//! * [`directory`]: who owns each shard and where its HTTP API answers, so
//!   any node's API can forward a request to the owner.

pub mod changelog;
pub mod directory;
pub mod member;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::store::envelope::{self, EnvelopeError};

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), seed
/// `0x9747b28c`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ len as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives `key` among `partitions`
/// (`toPositive(murmur2(key)) % partitions`).
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    ((murmur2(key) & 0x7fff_ffff) as u32) % partitions.max(1)
}

/// The shards of this node, as the router last changed them.
#[derive(Debug, Default)]
pub struct Sharding {
    /// Partitions of the ingest topic (0: not known yet, or not clustered).
    partitions: AtomicU32,
    owned: RwLock<BTreeSet<u32>>,
    restoring: RwLock<BTreeSet<u32>>,
    /// Who owns the other shards (a cluster's HTTP API forwards to them).
    pub directory: directory::Directory,
}

impl Sharding {
    /// A single node: one shard, always owned.
    pub fn single() -> Sharding {
        let s = Sharding::default();
        s.owned.write().unwrap_or_else(|p| p.into_inner()).insert(0);
        s
    }

    pub fn clustered(&self) -> bool {
        self.partitions.load(Ordering::Acquire) > 0
    }

    pub fn set_partitions(&self, n: u32) {
        self.partitions.store(n, Ordering::Release);
    }

    pub fn partitions(&self) -> u32 {
        self.partitions.load(Ordering::Acquire)
    }

    /// The shard of `asset` (0 on a single node).
    pub fn shard_of(&self, asset: &str) -> u32 {
        match self.partitions() {
            0 => 0,
            n => partition_for(asset.as_bytes(), n),
        }
    }

    pub fn owns(&self, shard: u32) -> bool {
        self.owned.read().unwrap_or_else(|p| p.into_inner()).contains(&shard)
    }

    pub fn owned(&self) -> Vec<u32> {
        self.owned
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }

    pub fn acquire(&self, shard: u32) {
        let mut owned = self.owned.write().unwrap_or_else(|p| p.into_inner());
        owned.insert(shard);
        crate::telemetry::shards_owned(owned.len());
    }

    pub fn release(&self, shard: u32) {
        let mut owned = self.owned.write().unwrap_or_else(|p| p.into_inner());
        owned.remove(&shard);
        crate::telemetry::shards_owned(owned.len());
    }

    /// Shards being restored (not serving yet).
    pub fn restoring(&self) -> Vec<u32> {
        self.restoring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }

    pub fn set_restoring(&self, shard: u32, on: bool) {
        let mut r = self.restoring.write().unwrap_or_else(|p| p.into_inner());
        if on {
            r.insert(shard);
        } else {
            r.remove(&shard);
        }
        crate::telemetry::shards_restoring(r.len());
        crate::telemetry::health::set_restoring(r.iter().copied().collect());
    }
}

/// Where a related asset's values go in a cluster: the shards of the twins
/// that relate to it, other than this node's (its router relays to those).
#[derive(Debug)]
pub struct RelayRoutes {
    /// Related asset -> the ids of the exact entries that relate to it.
    followers: std::collections::HashMap<String, Vec<String>>,
    /// Related assets an asset pattern relates to: any shard may follow.
    everywhere: std::collections::HashSet<String>,
    sharding: std::sync::Arc<Sharding>,
}

impl RelayRoutes {
    /// The routes of `topo`'s relations (none: the topology relates no
    /// asset to another).
    pub fn new(topo: &crate::topology::Topology, sharding: std::sync::Arc<Sharding>) -> Option<RelayRoutes> {
        let mut followers: std::collections::HashMap<String, Vec<String>> = Default::default();
        let mut everywhere = std::collections::HashSet::new();
        for e in &topo.assets {
            for (_, target) in &e.relations {
                match &e.id {
                    crate::topology::AssetPattern::Exact(id) => {
                        followers.entry(target.clone()).or_default().push(id.clone())
                    }
                    crate::topology::AssetPattern::Glob(_) => {
                        everywhere.insert(target.clone());
                    }
                }
            }
        }
        (!followers.is_empty() || !everywhere.is_empty()).then_some(RelayRoutes {
            followers,
            everywhere,
            sharding,
        })
    }

    /// The shards a value of `asset` goes to, other than this node's.
    pub fn targets(&self, asset: &str) -> Vec<u32> {
        let n = self.sharding.partitions();
        let mut shards: BTreeSet<u32> = if self.everywhere.contains(asset) {
            (0..n).collect()
        } else {
            self.followers
                .get(asset)
                .into_iter()
                .flatten()
                .map(|f| partition_for(f.as_bytes(), n))
                .collect()
        };
        shards.retain(|s| !self.sharding.owns(*s));
        shards.into_iter().collect()
    }
}

/// Format of [`ShardMeta`].
pub const SHARD_META_FORMAT: u16 = 1;

/// Where a shard stands in this node's store, written with the checkpoint
/// that holds its twins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// The next offset of the shard's ingest partition (-1: from the start).
    pub next_offset: i64,
    /// The changelog partition's end after this node's last write to it (a
    /// local copy is fresh while the changelog still ends there).
    pub changelog_end: i64,
    /// The incarnation this node owned the shard as when it wrote it.
    pub incarnation: u64,
}

impl ShardMeta {
    pub fn key(shard: u32) -> String {
        format!("shard/{shard}")
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut buf = envelope::start(SHARD_META_FORMAT, 32);
        bincode::serde::encode_into_std_write(self, &mut buf, bincode::config::standard())
            .expect("writing to a Vec cannot fail");
        buf
    }

    pub fn decode(bytes: &[u8]) -> Result<ShardMeta, EnvelopeError> {
        let payload = envelope::open(bytes, SHARD_META_FORMAT, "shard meta")?;
        bincode::serde::decode_from_slice(payload, crate::store::envelope::bincode_config())
            .map(|(m, _)| m)
            .map_err(|e| EnvelopeError::Corrupt(format!("shard meta: {e}")))
    }
}

/// A new incarnation: later than `after` and, across nodes, roughly ordered
/// by time (microseconds since the Unix epoch). The changelog fold checks
/// that it is above every incarnation in the log and asks again if not.
pub fn incarnation(after: u64) -> u64 {
    let now = crate::pipeline::clock::now_us().max(0) as u64;
    now.max(after + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's own test vectors (`UtilsTest.testMurmur2`).
    #[test]
    fn murmur2_matches_kafka() {
        let cases: &[(&str, i32)] = &[
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            ("abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key.as_bytes()), *want, "{key}");
        }
    }

    #[test]
    fn partitions_are_in_range_and_stable() {
        for n in [1, 3, 12] {
            for i in 0..1000 {
                let key = format!("asset-{i}");
                let p = partition_for(key.as_bytes(), n);
                assert!(p < n);
                assert_eq!(p, partition_for(key.as_bytes(), n));
            }
        }
    }

    #[test]
    fn shard_meta_round_trips_and_refuses_other_versions() {
        let m = ShardMeta {
            next_offset: 42,
            changelog_end: 7,
            incarnation: 9,
        };
        assert_eq!(ShardMeta::decode(&m.encode()).unwrap(), m);
        let mut bytes = m.encode();
        bytes[0] = 9;
        assert!(matches!(
            ShardMeta::decode(&bytes),
            Err(EnvelopeError::UnknownVersion { .. })
        ));
    }
}
