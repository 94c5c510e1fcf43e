//! A node's side of the consumer group: what happens when the group assigns
//! or revokes shards. Runs on the cluster source's consumer thread, inside
//! librdkafka's rebalance callback, so the partitions change hands only
//! once this is done.
//!
//! * **Assign**: for each new shard, write a claim to its changelog
//!   partition (the fence), then restore: from the local store when the
//!   changelog still ends where this node last wrote it, otherwise by
//!   folding the changelog up to the claim into a fresh column family. The
//!   router then learns the shards (in the source's chunk order) and the
//!   partitions start at the restored offsets.
//! * **Revoke**: the router checkpoints the shards (changelog + local
//!   store), and stops their twins; only then does the callback return and
//!   the group hand the partitions on.
//! * **Lost** (this node's session expired; another node may own the
//!   shards already): the twins stop without another write for the shards.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use super::changelog::{self, ChangelogError, Fold, HistoryFold};
use super::directory::{self, Owner};
use super::{incarnation, ShardMeta, Sharding};
use crate::pipeline::{Acquired, DecodedChunk, ShardControl};
use crate::store::{Store, StoreError};
use crate::telemetry;

#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(transparent)]
    Changelog(#[from] ChangelogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("shard {shard}: stored shard meta is unreadable: {error}")]
    Meta {
        shard: u32,
        error: crate::store::envelope::EnvelopeError,
    },
    #[error("changelog topic `{topic}` has {found} partitions; the cluster's topic has {want} (one changelog partition per shard): recreate it with {want}")]
    Partitions { topic: String, found: usize, want: u32 },
    #[error("cannot create changelog topic `{topic}`: {reason}")]
    CreateTopic { topic: String, reason: String },
}

/// What the engine gives the cluster source (see [`Member`]).
pub struct Membership {
    /// `node.name`, announced as the owner of the shards it takes.
    pub node: String,
    pub store: Arc<Store>,
    pub sharding: Arc<Sharding>,
    pub changelog: String,
    pub session_timeout: Duration,
    pub stop: Arc<AtomicBool>,
    /// The longest any type keeps history (`None`: no type keeps any): the
    /// retention of the changelog's history topic.
    pub history_keep: Option<Duration>,
}

/// What the cluster source needs to hand shards over.
pub struct Member {
    pub node: String,
    pub store: Arc<Store>,
    pub sharding: Arc<Sharding>,
    pub changelog_topic: String,
    /// Client settings of the cluster's brokers (the source's).
    pub config: ClientConfig,
    /// The source's index and its chunk stream (controls go in sequence).
    pub source: u16,
    pub out: Sender<DecodedChunk>,
    /// The source's chunk numbering (shared with its read loop).
    pub seq: Arc<AtomicU64>,
    /// Partitions this node reads now.
    pub owned: Mutex<BTreeSet<i32>>,
    /// Set when the source stops: the final checkpoint covers every shard,
    /// and the group's revoke at close needs no handshake.
    pub stopping: AtomicBool,
    pub stop: Arc<AtomicBool>,
    pub history_keep: Option<Duration>,
    writer: Mutex<Option<changelog::Writer>>,
}

impl Member {
    pub fn new(
        m: &Membership,
        config: ClientConfig,
        source: u16,
        out: Sender<DecodedChunk>,
        seq: Arc<AtomicU64>,
    ) -> Member {
        Member {
            node: m.node.clone(),
            store: m.store.clone(),
            sharding: m.sharding.clone(),
            changelog_topic: m.changelog.clone(),
            config,
            source,
            out,
            seq,
            owned: Mutex::new(BTreeSet::new()),
            stopping: AtomicBool::new(false),
            stop: m.stop.clone(),
            history_keep: m.history_keep,
            writer: Mutex::new(None),
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    pub fn owns(&self, partition: i32) -> bool {
        self.owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&partition)
    }

    /// Creates the changelog topic with one partition per shard, and the
    /// owners topic ([`directory`]), when they do not exist; refuses a
    /// changelog with another partition count.
    pub fn ensure_changelog(
        &self,
        consumer: &BaseConsumer<impl rdkafka::consumer::ConsumerContext>,
        shards: u32,
    ) -> Result<(), MemberError> {
        let owners = directory::topic(&self.changelog_topic);
        match partitions_of(consumer, &owners) {
            Some(_) => {}
            None => self.create_topic(&owners, 1, None)?,
        }
        let mut topics = vec![(self.changelog_topic.clone(), None)];
        if let Some(keep) = self.history_keep {
            // Compacted, and deleted by age: a bucket older than the longest
            // retention is of no use to a restore.
            let ms = (keep + Duration::from_secs(86_400)).as_millis().min(i64::MAX as u128);
            topics.push((changelog::history_topic(&self.changelog_topic), Some(ms.to_string())));
        }
        for (topic, retention) in topics {
            match partitions_of(consumer, &topic) {
                Some(n) if n == shards as usize => {}
                Some(n) => {
                    return Err(MemberError::Partitions {
                        topic,
                        found: n,
                        want: shards,
                    })
                }
                None => self.create_topic(&topic, shards, retention.as_deref())?,
            }
        }
        Ok(())
    }

    /// Creates compacted `topic` with `partitions` (one that exists by now
    /// is fine: another node created it); with `retention_ms`, also deleted
    /// by age.
    fn create_topic(&self, topic: &str, partitions: u32, retention_ms: Option<&str>) -> Result<(), MemberError> {
        let fail = |reason: String| MemberError::CreateTopic {
            topic: topic.to_string(),
            reason,
        };
        let admin: AdminClient<DefaultClientContext> = self.config.create().map_err(|e| fail(e.to_string()))?;
        let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(-1));
        let new = match retention_ms {
            Some(ms) => new.set("cleanup.policy", "compact,delete").set("retention.ms", ms),
            None => new.set("cleanup.policy", "compact"),
        };
        let results = block_on(admin.create_topics(&[new], &AdminOptions::new())).map_err(|e| fail(e.to_string()))?;
        for r in results {
            match r {
                Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(fail(code.to_string())),
            }
        }
        tracing::info!(topic, partitions, "cluster topic created");
        Ok(())
    }

    /// Follows the owners topic into the node's directory, on a thread of
    /// its own, until the node stops.
    pub fn follow_owners(&self) {
        let (config, topic) = (self.config.clone(), directory::topic(&self.changelog_topic));
        let (sharding, stop) = (self.sharding.clone(), self.stop.clone());
        let spawned = std::thread::Builder::new()
            .name("shard-owners".into())
            .spawn(move || directory::follow(&config, &topic, &sharding.directory, &stop));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start reading the shard owners");
        }
    }

    fn with_writer<T>(
        &self,
        f: impl FnOnce(&changelog::Writer) -> Result<T, ChangelogError>,
    ) -> Result<T, ChangelogError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if w.is_none() {
            *w = Some(changelog::Writer::new(&self.config, &self.changelog_topic)?);
        }
        f(w.as_ref().expect("just set"))
    }

    /// Restores `partitions` and tells the router; returns where each
    /// partition resumes (-1: from the start).
    pub fn acquire(&self, partitions: &[i32]) -> Result<Vec<(i32, i64)>, MemberError> {
        let topic = &self.changelog_topic;
        let started = Instant::now();
        if self.stop.load(Ordering::Relaxed) {
            return Err(ChangelogError::Stopped.into());
        }
        for p in partitions {
            self.sharding.set_restoring(*p as u32, true);
        }
        let reader = changelog::reader(&self.config, topic)?;
        // Where each shard stands, then one claim per shard, in one write.
        let mut plans = Vec::new();
        for &p in partitions {
            let shard = p as u32;
            let local = match self.store.get_meta(&ShardMeta::key(shard))? {
                Some(bytes) => Some(ShardMeta::decode(&bytes).map_err(|error| MemberError::Meta { shard, error })?),
                None => None,
            };
            let (lo, hi) = changelog::watermarks(&reader, topic, shard)?;
            plans.push((shard, local, lo, hi, incarnation(local.map_or(0, |m| m.incarnation))));
        }
        let claims: Vec<(u32, u64)> = plans.iter().map(|(s, _, _, _, inc)| (*s, *inc)).collect();
        let claimed = self.with_writer(|w| w.claim(&claims))?;
        let mut acquired = Vec::new();
        let mut offsets = Vec::new();
        for ((shard, local, lo, hi, mut inc), mut claim) in plans.into_iter().zip(claimed) {
            let t = Instant::now();
            let key = ShardMeta::key(shard);
            let fresh = local.filter(|m| m.changelog_end == hi && claim == hi && self.store.shards().contains(&shard));
            let (meta, from, records) = match fresh {
                Some(m) => {
                    let meta = ShardMeta {
                        changelog_end: claim + 1,
                        incarnation: inc,
                        ..m
                    };
                    self.store.put_meta(&key, &meta.encode())?;
                    (meta, "local", 0)
                }
                None => {
                    let mut fold = Fold::default();
                    let mut next = lo;
                    loop {
                        changelog::read(&reader, topic, shard, next, claim, &mut fold, &self.stop)?;
                        if fold.max_incarnation() < inc {
                            break;
                        }
                        // Another writer's incarnation is not older than
                        // ours (clocks apart): claim again above it.
                        next = claim;
                        inc = incarnation(fold.max_incarnation());
                        claim = self.with_writer(|w| w.claim(&[(shard, inc)]))?[0];
                    }
                    let restored = fold.finish();
                    // Records no restore uses again go (see `changelog`'s
                    // docs: safe even if another node claims the shard now).
                    let end = match self.with_writer(|w| w.tombstones(shard, &restored.stale)) {
                        Ok(end) => end.unwrap_or(claim + 1),
                        Err(error) => {
                            tracing::warn!(shard, %error, stale = restored.stale.len(), "cannot remove the changelog's stale twin records now; the next restore tries again");
                            claim + 1
                        }
                    };
                    let meta = ShardMeta {
                        next_offset: restored.next_offset.unwrap_or(-1),
                        changelog_end: end,
                        incarnation: inc,
                    };
                    // The history the committed checkpoints hold.
                    let history = match self.history_keep {
                        Some(_) => {
                            let mut h = HistoryFold::new(restored.committed.clone());
                            let topic = changelog::history_topic(topic);
                            changelog::read_history(&reader, &topic, shard, &mut h, &self.stop)?;
                            Some(h)
                        }
                        None => None,
                    };
                    if let Some(h) = &history {
                        tracing::info!(
                            shard,
                            kept = h.kept.len(),
                            records = h.records,
                            ignored = h.ignored,
                            "shard history read from the changelog"
                        );
                    }
                    self.store.replace_shard(
                        shard,
                        restored
                            .twins
                            .iter()
                            .map(|(a, t)| (a.as_str(), t.record.as_slice(), t.timer)),
                        history.into_iter().flat_map(|h| h.kept),
                        &key,
                        &meta.encode(),
                    )?;
                    tracing::info!(
                        shard,
                        twins = restored.twins.len(),
                        records = restored.records,
                        ignored = restored.ignored,
                        stale = restored.stale.len(),
                        ms = t.elapsed().as_millis() as u64,
                        "shard restored from the changelog"
                    );
                    (meta, "changelog", restored.records)
                }
            };
            telemetry::shard_restored(from, t.elapsed().as_secs_f64(), records);
            acquired.push(Acquired {
                shard,
                incarnation: inc,
                next_offset: meta.next_offset,
            });
            offsets.push((shard as i32, meta.next_offset));
        }
        // Where the API of any node finds these shards now.
        let owners: Vec<(u32, Owner)> = acquired
            .iter()
            .map(|a| {
                let owner = Owner {
                    node: self.node.clone(),
                    http: self.sharding.directory.me(),
                    incarnation: a.incarnation,
                };
                (a.shard, owner)
            })
            .collect();
        self.with_writer(|w| w.announce(&directory::topic(topic), &owners))?;
        for (shard, owner) in owners {
            self.sharding.directory.learn(shard, owner);
        }
        self.owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(partitions.iter().copied());
        let mut chunk = DecodedChunk::empty(self.source, self.next_seq(), 0, 0);
        chunk.control = Some(ShardControl::Acquire(acquired));
        let _ = self.out.send(chunk);
        for p in partitions {
            self.sharding.set_restoring(*p as u32, false);
        }
        tracing::info!(
            ?partitions,
            ms = started.elapsed().as_millis() as u64,
            "shards acquired"
        );
        Ok(offsets)
    }

    /// Hands `partitions` back: waits until the router has checkpointed
    /// them and stopped their twins (`lost`: stopped them without a write).
    pub fn release(&self, partitions: &[i32], lost: bool) {
        self.owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|p| !partitions.contains(p));
        if self.stopping.load(Ordering::Relaxed) || partitions.is_empty() {
            return;
        }
        let started = Instant::now();
        let (done, wait) = crossbeam_channel::bounded(1);
        let shards = partitions.iter().map(|p| *p as u32).collect();
        let mut chunk = DecodedChunk::empty(self.source, self.next_seq(), 0, 0);
        chunk.control = Some(if lost {
            ShardControl::Lost { shards, done }
        } else {
            ShardControl::Release { shards, done }
        });
        if self.out.send(chunk).is_err() {
            return;
        }
        // Until the router answers or is gone (its end of `done` drops).
        while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = wait.recv_timeout(Duration::from_millis(100)) {}
        tracing::info!(
            ?partitions,
            lost,
            ms = started.elapsed().as_millis() as u64,
            "shards handed back"
        );
    }
}

/// The partition count of `topic`, if it exists.
fn partitions_of(consumer: &BaseConsumer<impl rdkafka::consumer::ConsumerContext>, topic: &str) -> Option<usize> {
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .ok()
        .and_then(|md| {
            md.topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().len())
        })
        .filter(|n| *n > 0)
}

/// Runs a future of rdkafka's admin client to completion on this thread
/// (librdkafka's own thread completes it; no runtime needed).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}
