//! Checkpoints: consistent snapshots of the dirty twins plus the source
//! positions they reflect, written in one RocksDB `WriteBatch`.
//!
//! The router starts an [`Epoch`] after routing chunk *k*: it records the
//! source positions after *k* and sends a barrier to every twin it routed
//! events to since the previous epoch. A barrier sits behind those events in
//! the twin's mailbox, so the twin's part reflects exactly the events up to
//! *k*. Twins not dirtied in the epoch did not change, so their stored record
//! is already correct for *k*. When every part has arrived, the writer thread
//! flushes every sink (so each output of those events is written before the
//! state is durable) and commits. Epochs commit in order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::host::history;
use super::EngineError;
use crate::cluster::changelog::{self, Entry, HistoryEntry};
use crate::cluster::ShardMeta;
use crate::pipeline::{Fatal, FatalTx};
use crate::sink::SinkHub;
use crate::store::history::page::PageError;
use crate::store::history::{bucket_key, parse_page_key, HistoryOp, Page};
use crate::store::{Checkpoint, Store, StoreError, TimerChange};
use crate::telemetry;
use crate::twin::model::{ClosedDigest, NO_TS};
use crate::twin::record;

/// A shard whose changelog gets a marker in this checkpoint (cluster).
#[derive(Debug, Clone, Copy)]
pub struct ShardMark {
    pub shard: u32,
    pub incarnation: u64,
    /// The next offset of the shard's ingest partition (-1: none read yet).
    pub next_offset: i64,
}

/// One checkpoint being collected.
pub struct Epoch {
    pub id: u64,
    /// Cluster: the twin records for the changelog, and the shards to mark.
    changelog: Option<(Mutex<Vec<Entry>>, Vec<ShardMark>)>,
    remaining: AtomicUsize,
    aborted: AtomicBool,
    /// Staged as parts arrive: each record is copied once, into the batch.
    staged: Mutex<Checkpoint>,
    /// Closed windows of the replay digest, stored under `digest_key`.
    digest: Mutex<Vec<ClosedDigest>>,
    digest_key: String,
    /// The greatest reading time in the history staged (`NO_TS`: none).
    history_max: AtomicI64,
    /// Cluster: the history staged, for the changelog's history topic.
    history_log: Option<Mutex<Vec<(u32, HistoryOp)>>>,
    /// History writes staged and their bytes (for the metrics).
    history_ops: AtomicUsize,
    history_bytes: AtomicUsize,
    store: Arc<Store>,
    started: Instant,
    done: Sender<Arc<Epoch>>,
}

impl Epoch {
    /// An epoch expecting `parts` twin parts. The caller holds one extra
    /// arrival and must call [`arrive`](Self::arrive) once it has sent every
    /// barrier, so the epoch cannot complete while barriers are still going out.
    pub fn new(
        id: u64,
        parts: usize,
        positions: &[(String, Vec<u8>)],
        digest_key: String,
        store: Arc<Store>,
        done: Sender<Arc<Epoch>>,
        marks: Option<Vec<ShardMark>>,
    ) -> Arc<Epoch> {
        let mut staged = Checkpoint::default();
        for (key, value) in positions {
            store.put_position(&mut staged, key, value);
        }
        Arc::new(Epoch {
            id,
            history_log: marks.is_some().then(|| Mutex::new(Vec::new())),
            changelog: marks.map(|m| (Mutex::new(Vec::with_capacity(parts)), m)),
            remaining: AtomicUsize::new(parts + 1),
            aborted: AtomicBool::new(false),
            staged: Mutex::new(staged),
            digest: Mutex::new(Vec::new()),
            digest_key,
            history_max: AtomicI64::new(NO_TS),
            history_ops: AtomicUsize::new(0),
            history_bytes: AtomicUsize::new(0),
            store,
            started: Instant::now(),
            done,
        })
    }

    /// A twin's snapshot (its record as `encoded`: whole, or a merge operand
    /// of the sensors that changed) and, for types with timers, its
    /// deadline: what the store holds and what it should (its `new` is the
    /// changelog's); and what it logged for history.
    pub fn add(
        self: &Arc<Self>,
        shard: u32,
        asset: &str,
        encoded: &record::Encoder,
        timer: Option<TimerChange>,
        history: &history::Part,
    ) {
        let record = encoded.bytes();
        let mut staged = self.staged.lock().unwrap_or_else(|e| e.into_inner());
        if encoded.is_operand() {
            self.store.merge_twin(&mut staged, shard, asset, record);
        } else {
            self.store.put_twin(&mut staged, shard, asset, record);
        }
        if let Some(change) = timer {
            self.store.put_timer(&mut staged, shard, asset, change);
        }
        self.store.stage_history(&mut staged, shard, &history.ops);
        drop(staged);
        if history.max_ts != NO_TS {
            self.history_max.fetch_max(history.max_ts, Ordering::AcqRel);
        }
        if !history.ops.is_empty() {
            self.history_ops.fetch_add(history.ops.len(), Ordering::Relaxed);
            self.history_bytes.fetch_add(history.bytes(), Ordering::Relaxed);
        }
        if let (Some(log), false) = (&self.history_log, history.ops.is_empty()) {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.extend(history.ops.iter().map(|op| (shard, op.clone())));
        }
        if let Some((entries, _)) = &self.changelog {
            debug_assert!(!encoded.is_operand(), "a changelog takes whole records");
            entries.lock().unwrap_or_else(|e| e.into_inner()).push(Entry {
                shard,
                asset: asset.to_string(),
                record: record.to_vec(),
                timer: timer.and_then(|t| t.new),
            });
        }
        self.arrive();
    }

    /// Windows a twin closed since its last snapshot (replay digest).
    pub fn add_digest(&self, closed: &[ClosedDigest]) {
        self.digest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(closed);
    }

    /// A part that has nothing to add.
    pub fn skip(self: &Arc<Self>) {
        self.arrive();
    }

    /// A part arrived (or the router finished sending barriers).
    pub fn arrive(self: &Arc<Self>) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = self.done.send(self.clone());
        }
    }

    /// A twin could not snapshot: this epoch must never commit.
    pub fn abort(self: &Arc<Self>) {
        self.aborted.store(true, Ordering::Release);
        self.arrive();
    }

    fn take(&self) -> Checkpoint {
        let mut ckpt = std::mem::take(&mut *self.staged.lock().unwrap_or_else(|e| e.into_inner()));
        let digest = std::mem::take(&mut *self.digest.lock().unwrap_or_else(|e| e.into_inner()));
        if !digest.is_empty() {
            self.store
                .put_position(&mut ckpt, &self.digest_key, &crate::report::encode_digest(&digest));
        }
        let history_max = self.history_max.load(Ordering::Acquire);
        if history_max != NO_TS {
            self.store.stage_history_clock(&mut ckpt, history_max);
            telemetry::history_written(
                self.history_ops.load(Ordering::Relaxed),
                self.history_bytes.load(Ordering::Relaxed),
            );
        }
        ckpt
    }
}

/// A checkpoint that is durable.
#[derive(Debug, Clone)]
pub struct Durable {
    pub epoch: u64,
    pub twins: usize,
    /// Of `twins`, the records merged in as the sensors that changed.
    pub operands: usize,
    pub bytes: usize,
    /// From the start of the epoch to the commit.
    pub elapsed: Duration,
}

/// The writer thread: commits completed epochs in order.
pub fn writer_loop(
    epochs: Receiver<Arc<Epoch>>,
    changelog: Option<changelog::Writer>,
    store: Arc<Store>,
    sinks: SinkHub,
    sync: bool,
    durable: Sender<Durable>,
    fatal: FatalTx,
) {
    let mut next = 1u64;
    let mut pending: BTreeMap<u64, Arc<Epoch>> = BTreeMap::new();
    for ep in epochs {
        pending.insert(ep.id, ep);
        while let Some(ep) = pending.remove(&next) {
            next += 1;
            if ep.aborted.load(Ordering::Acquire) {
                let _ = fatal.send(Fatal::new(EngineError::Aborted(format!(
                    "checkpoint {} not written: a twin could not snapshot",
                    ep.id
                ))));
                return;
            }
            // Outputs first: everything the checkpointed events produced is
            // written before the state that produced it becomes durable.
            let outbox = match sinks.flush_all(sync, Duration::from_secs(120)) {
                Ok(ops) => ops,
                Err(e) => {
                    let _ = fatal.send(Fatal::new(e));
                    return;
                }
            };
            let mut ckpt = ep.take();
            // Cluster: the changelog first. Once its markers are acknowledged
            // another node can restore this checkpoint; the local commit
            // then records where the changelog ends (a fresh local copy).
            if let (Some(writer), Some((entries, marks))) = (&changelog, &ep.changelog) {
                let entries = std::mem::take(&mut *entries.lock().unwrap_or_else(|e| e.into_inner()));
                let markers: Vec<(u32, u64, i64)> =
                    marks.iter().map(|m| (m.shard, m.incarnation, m.next_offset)).collect();
                let incarnation_of = |shard: u32| marks.iter().find(|m| m.shard == shard).map_or(0, |m| m.incarnation);
                // History first: a marker commits it.
                let history = ep.history_log.as_ref().map_or_else(Vec::new, |log| {
                    std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()))
                });
                let written = whole_buckets(&store, &history).and_then(|h| {
                    let topic = changelog::history_topic(writer.topic());
                    writer
                        .history(&topic, ep.id, &h, incarnation_of)
                        .map_err(EngineError::from)?;
                    telemetry::changelog_history_written(h.len(), h.iter().map(|e| e.key.len() + e.value.len()).sum());
                    Ok(())
                });
                if let Err(e) = written {
                    let _ = fatal.send(Fatal::new(e));
                    return;
                }
                match writer.checkpoint(ep.id, &entries, incarnation_of, &markers) {
                    Ok(ends) => {
                        telemetry::changelog_written(entries.len() + markers.len());
                        for &(shard, end) in &ends {
                            let Some(m) = marks.iter().find(|m| m.shard == shard) else {
                                continue;
                            };
                            let meta = ShardMeta {
                                next_offset: m.next_offset,
                                changelog_end: end,
                                incarnation: m.incarnation,
                            };
                            store.put_position(&mut ckpt, &ShardMeta::key(m.shard), &meta.encode());
                        }
                        // A shard this node was fenced off has no end: the
                        // changelog does not count this write, but the local
                        // batch still holds its twins. Its meta goes with
                        // them, so the local copy is never taken as fresh
                        // (twins ahead of the offset in the meta would
                        // apply events twice); a restore reads the changelog.
                        let ended = |s: u32| ends.iter().any(|(e, _)| *e == s);
                        let mut unended: BTreeSet<u32> = marks.iter().map(|m| m.shard).filter(|s| !ended(*s)).collect();
                        // Records of a shard with no marker here (let go
                        // of meanwhile) are in the local batch too.
                        for e in &entries {
                            if !ended(e.shard) {
                                unended.insert(e.shard);
                            }
                        }
                        for shard in unended {
                            store.delete_position(&mut ckpt, &ShardMeta::key(shard));
                        }
                    }
                    Err(e) => {
                        let _ = fatal.send(Fatal::new(e));
                        return;
                    }
                }
            }
            // Messages a broker has not acknowledged yet become durable with
            // the state that produced them.
            for op in &outbox {
                op.stage(&store, &mut ckpt);
            }
            let (twins, operands, bytes) = (ckpt.twins(), ckpt.operands(), ckpt.bytes());
            let t = Instant::now();
            if let Err(e) = store.commit(ckpt, sync) {
                let _ = fatal.send(Fatal::new(e));
                return;
            }
            telemetry::snapshot_written(t.elapsed().as_secs_f64(), twins, operands, bytes);
            if ep.history_max.load(Ordering::Relaxed) != NO_TS {
                let disk = store.shards().into_iter().map(|s| store.history_disk_bytes(s)).sum();
                telemetry::history_state(disk, store.history_clock().get());
            }
            let _ = durable.send(Durable {
                epoch: ep.id,
                twins,
                operands,
                bytes,
                elapsed: ep.started.elapsed(),
            });
        }
    }
}

/// The changelog's history records of a checkpoint's history writes: each
/// downsampled bucket a page operand touches, whole (the stored bucket,
/// which holds every earlier checkpoint, combined with the operand's), and
/// each alert or command entry as it is. Raw pages stay local.
fn whole_buckets(store: &Store, ops: &[(u32, HistoryOp)]) -> Result<Vec<HistoryEntry>, EngineError> {
    let mut out = Vec::with_capacity(ops.len());
    for (shard, op) in ops {
        match op {
            HistoryOp::Put { key, value } => out.push(HistoryEntry {
                shard: *shard,
                key: key.clone(),
                value: value.clone(),
            }),
            HistoryOp::Merge { key, value } => {
                if parse_page_key(key).is_none_or(|(_, _, width, _)| width == 0) {
                    continue;
                }
                let corrupt = |e: PageError| EngineError::from(StoreError::History(e.to_string()));
                let operand = Page::decode(value).map_err(corrupt)?;
                let stored = match store.get_history(*shard, key)? {
                    Some(v) => Page::decode(&v).map_err(corrupt)?,
                    None => Page::default(),
                };
                for (i, b) in operand.buckets {
                    let whole = match stored.buckets.binary_search_by_key(&i, |s| s.0) {
                        Ok(k) => {
                            let mut w = stored.buckets[k].1;
                            w.combine(&b);
                            w
                        }
                        Err(_) => b,
                    };
                    let page = Page {
                        expires: operand.expires.max(stored.expires),
                        buckets: vec![(i, whole)],
                        readings: Vec::new(),
                    };
                    let mut v = Vec::with_capacity(64);
                    page.encode(&mut v);
                    out.push(HistoryEntry {
                        shard: *shard,
                        key: bucket_key(key, i),
                        value: v,
                    });
                }
            }
        }
    }
    Ok(out)
}
