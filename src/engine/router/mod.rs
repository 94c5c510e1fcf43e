//! The router: the one place where decoded chunks are put back in source
//! order and turned into per-twin batches.
//!
//! * It maps asset ids to twins (worker thread + index), starting a twin on
//!   its first event, and sends each worker one message per chunk.
//! * It remembers which twins it sent events to since the last checkpoint
//!   (the dirty set) and starts checkpoints ([`Epoch`]) every
//!   `snapshot.interval` or `snapshot.max_events`.
//! * It tracks every source's position as of the chunks it has routed, which
//!   is what a checkpoint stores next to the twins.
//! * It keeps the node's timer index: one deadline per twin that needs one
//!   (staleness, idle timeout, command timeouts) in a heap, so 100k twins
//!   cost a heap, not 100k timers. Twins in memory report their deadlines;
//!   those of twins only in the store (passivated, or not woken since a
//!   restart) are read from the store's deadline index as they near. An
//!   entry may fire early (the twin re-arms it), never late.
//! * It passivates twins idle for `node.passivate_after` once their state
//!   is durable.
//! * It relays values that twins read through relations (`feeds.level`) from
//!   the related twin to the twins that relate to it.
//! * At the end it flushes (replay: end of input closes every window), writes
//!   a final checkpoint and waits until it is durable.
//!
//! One file per role, each readable and changeable without the others (what
//! they all use - worker addresses, model, index, store, sharding, flow - is
//! on [`Router`]; a method that needs several roles takes their parts and
//! lives with the role it serves):
//!
//! * `mod.rs`: the routing loop - chunks back in source order, per-worker batches, end of input.
//! * `sources.rs`: a source's slot - chunks waiting for their turn by sequence, position, acks.
//! * `directory.rs`: asset id -> twin (worker + local slot), starting twins, passivating idle ones.
//! * `epochs.rs`: dirty sets, starting checkpoints, epochs in flight, what waits for durability.
//! * `timers.rs`: the timer heap and the cursors over the store's deadline index; timer rounds.
//! * `relays.rs`: followers, the last relayed values, relays waiting for delivery.
//! * `shards.rs`: the shards a cluster node owns: acquired, released, lost; their marks.
//! * `requests.rs`: the HTTP API's questions, sent to the twin they are about.

mod directory;
mod epochs;
mod relays;
mod requests;
mod shards;
mod sources;
mod timers;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use crossbeam_channel::{never, select, Receiver, Sender};

pub use sources::SourceSlot;

use directory::Directory;
use epochs::Epochs;
use relays::{Relays, RELAY_ROUND};
use shards::Shards;
use timers::{Timers, TIMER_ROUND};

use super::checkpoint::{Durable, Epoch};
use super::query::Request;
use super::worker::{Backlog, Deliver, EndOfInputAll, TwinBatch, Worker};
use super::EngineError;
use crate::cluster::Sharding;
use crate::pipeline::flow::Flow;
use crate::pipeline::now_ms;
use crate::pipeline::{DecodedChunk, Fatal, OutputBatch};
use crate::sink::SinkHub;
use crate::source::decode::AssetIndex;
use crate::source::SourcePosition;
use crate::store::Store;
use crate::telemetry;
use crate::topology::SnapshotSpec;
use crate::twin::model::Latest;
use crate::twin::schema::Model;

/// What twins tell the router.
#[derive(Debug)]
pub enum Feedback {
    /// Wake `asset` at processing time `at` (epoch ms).
    Timer { asset: Arc<str>, at: i64 },
    /// A sensor of `asset` that other twins read through a relation changed.
    Relay {
        asset: Arc<str>,
        sensor: u16,
        latest: Latest,
    },
}

/// How the run ended.
#[derive(Debug, Default)]
pub struct RouterOutcome {
    pub positions: Vec<(String, SourcePosition)>,
    pub twins: usize,
    pub checkpoints: u64,
    /// Events routed in this run.
    pub events: u64,
    /// Every source reached its end of input (and it was applied).
    pub finished: bool,
}

/// The router: one struct per role (see the module's files), and what
/// every role uses.
pub struct Router {
    pub sources: Vec<SourceSlot>,
    workers: Vec<Addr<Worker>>,
    backlog: Arc<Backlog>,
    /// Events routed in this run.
    events: u64,
    model: Arc<Model>,
    index: Arc<AssetIndex>,
    store: Arc<Store>,
    sharding: Arc<Sharding>,
    sinks: SinkHub,
    flow: Flow,
    /// Replay: apply the end of input when sources reach it, then stop.
    pub flush_at_end: bool,
    /// Asset id -> twin; passivation.
    directory: Directory,
    /// Dirty sets, checkpoints, durability.
    epochs: Epochs,
    /// The timer heap and deadline cursors.
    timers: Timers,
    /// Followers and relayed values.
    relays: Relays,
    /// Owned shards (cluster).
    shards: Shards,
}

pub struct RouterParts {
    pub sources: Vec<SourceSlot>,
    pub workers: Vec<Addr<Worker>>,
    pub backlog: Arc<Backlog>,
    pub model: Arc<Model>,
    pub index: Arc<AssetIndex>,
    pub store: Arc<Store>,
    pub sharding: Arc<Sharding>,
    pub clustered: bool,
    pub sinks: SinkHub,
    pub flow: Flow,
    pub epochs: Sender<Arc<Epoch>>,
    pub snapshot: SnapshotSpec,
    pub flush_at_end: bool,
    pub passivate_after: Option<Duration>,
}

impl Router {
    pub fn new(p: RouterParts) -> Router {
        let n = p.workers.len();
        Router {
            sources: p.sources,
            workers: p.workers,
            backlog: p.backlog,
            events: 0,
            // Before `model` and `index` move in.
            relays: Relays::new(&p.model, &p.index),
            model: p.model,
            index: p.index,
            store: p.store,
            sharding: p.sharding,
            sinks: p.sinks,
            flow: p.flow,
            flush_at_end: p.flush_at_end,
            directory: Directory::new(n, p.passivate_after),
            epochs: Epochs::new(n, p.epochs, p.snapshot),
            timers: Timers::new(),
            shards: Shards::new(p.clustered),
        }
    }

    fn on_feedback(&mut self, f: Feedback) {
        match f {
            // `replay` runs no timers: nothing to keep.
            Feedback::Timer { asset, at } => {
                if !self.flush_at_end {
                    self.timers.arm(at, &asset);
                }
            }
            Feedback::Relay { asset, sensor, latest } => {
                self.relays.relay(&self.sharding, &asset, sensor, latest, None)
            }
        }
    }

    /// Routes until every source is done (and, when not replaying, `stop`
    /// is set), then finishes with a durable final checkpoint.
    pub fn run(
        mut self,
        mut chunks: Receiver<DecodedChunk>,
        durable: Receiver<Durable>,
        mut fatal: Receiver<Fatal>,
        mut feedback: Receiver<Feedback>,
        mut requests: Receiver<Request>,
        stop: &AtomicBool,
    ) -> Result<RouterOutcome, EngineError> {
        let mut last_round = Instant::now();
        let mut last_relay = Instant::now();
        loop {
            self.directory.tick();
            self.directory.sweep(&self.workers, self.epochs.durable_epoch);
            if last_round.elapsed() >= TIMER_ROUND {
                self.timer_round(now_ms());
                last_round = Instant::now();
                last_relay = last_round;
            } else if self.relays.waiting() && last_relay.elapsed() >= RELAY_ROUND {
                // Related values travel sooner than timers are checked.
                self.timer_round(now_ms());
                last_relay = Instant::now();
            }
            let all_done = self.sources.iter().all(|s| s.done);
            if all_done && (self.flush_at_end || stop.load(Ordering::Relaxed)) {
                break;
            }
            let wait = self
                .epochs
                .until_due()
                .clamp(Duration::from_millis(1), Duration::from_millis(100));
            // A channel whose senders are all gone (the sources of a run
            // that read their files to the end) is ready forever: replaced
            // by one that never is, or the router would spin.
            select! {
                recv(chunks) -> c => match c { Ok(c) => self.on_chunk(c), Err(_) => chunks = never() },
                recv(feedback) -> f => match f { Ok(f) => self.on_feedback(f), Err(_) => feedback = never() },
                recv(durable) -> d => match d {
                    Ok(d) => self.on_durable(&d),
                    // A writer that failed said why on `fatal` before it went.
                    Err(_) => {
                        return Err(fatal
                            .try_recv()
                            .map_or_else(|_| EngineError::Aborted("the store writer stopped".into()), EngineError::from))
                    }
                },
                recv(requests) -> r => match r { Ok(r) => self.on_request(r), Err(_) => requests = never() },
                recv(fatal) -> e => match e { Ok(e) => return Err(e.into()), Err(_) => fatal = never() },
                default(wait.min(TIMER_ROUND)) => {}
            }
            if self.epochs.checkpoint_due() {
                self.start_epoch();
            }
        }
        let finished = self.flush_at_end && self.sources.iter().all(|s| s.end_of_input || s.position.finished);
        if finished && self.sources.iter().any(|s| !s.position.finished) {
            self.end_of_input()?;
        }
        // The final checkpoint: everything routed, applied and written.
        let last = self.start_epoch();
        loop {
            select! {
                recv(durable) -> d => match d {
                    Ok(d) => {
                        self.on_durable(&d);
                        if d.epoch >= last {
                            break;
                        }
                    }
                    Err(_) => {
                        return Err(fatal.try_recv().map_or_else(
                            |_| EngineError::Aborted("the store writer stopped before the final checkpoint".into()),
                            EngineError::from,
                        ))
                    }
                },
                recv(fatal) -> e => match e { Ok(e) => return Err(e.into()), Err(_) => fatal = never() },
            }
        }
        if !self.flow.wait_idle(Duration::from_secs(60)) {
            tracing::warn!("outputs still in flight after the final checkpoint");
        }
        Ok(RouterOutcome {
            positions: self
                .sources
                .iter()
                .filter(|s| s.positioned)
                .map(|s| (s.name.to_string(), s.position.clone()))
                .collect(),
            twins: self.directory.twins.len(),
            checkpoints: self.epochs.epoch,
            events: self.events,
            finished,
        })
    }

    fn on_chunk(&mut self, chunk: DecodedChunk) {
        let s = chunk.source as usize;
        if chunk.seq != self.sources[s].next_seq {
            self.sources[s].hold(chunk);
            return;
        }
        self.route(chunk);
        while let Some(next) = self.sources[s].take_next() {
            self.route(next);
        }
    }

    fn route(&mut self, c: DecodedChunk) {
        let routed_at = Instant::now();
        if c.events > 0 {
            telemetry::decoded(c.received_at, routed_at);
            self.epochs.received.push(c.received_at);
        }
        let src = &mut self.sources[c.source as usize];
        src.next_seq += 1;
        telemetry::records_received(&src.name, c.records);
        telemetry::events_received(&src.name, c.events);
        if !c.dead_letters.is_empty() {
            let mut by_reason: BTreeMap<&'static str, u64> = BTreeMap::new();
            for d in &c.dead_letters {
                *by_reason.entry(d.reason.code()).or_default() += 1;
            }
            for (reason, n) in by_reason {
                telemetry::dead_lettered(&src.name, reason, n);
            }
            src.position.dead_letters += c.dead_letters.len() as u64;
            self.sinks.deliver(OutputBatch {
                asset: None,
                model: None,
                outputs: Vec::new(),
                dead_letters: c.dead_letters,
                events: Vec::new(),
                at_ms: now_ms(),
                produced: routed_at,
                permit: c.permit.clone(),
            });
        }
        src.position.offset = c.end_offset;
        src.position.line = c.end_line;
        src.position.records += c.records;
        for (topic, partition, next) in &c.partitions {
            src.position.advance(topic, *partition, *next);
            if let Some(s) = self.shards.owned.get_mut(&(*partition as u32)) {
                s.1 = s.1.max(*next);
                self.shards.changed.insert(*partition as u32);
            }
        }
        if c.last {
            src.done = true;
            src.end_of_input = c.end_of_input;
        }
        // An acknowledging source needs a checkpoint even for a chunk that
        // changed no twin (only dead letters): its acks wait for one.
        self.epochs.positions_changed |= src.positioned || src.acks.is_some();
        self.events += c.events;
        self.epochs.events_since_checkpoint += c.events;
        if let Some(control) = c.control {
            self.on_control(control);
        }
        if !c.relays.is_empty() {
            self.remote_relays(c.relays);
        }
        if c.groups.is_empty() {
            return;
        }
        let mut batches: Vec<Vec<TwinBatch>> = (0..self.workers.len()).map(|_| Vec::new()).collect();
        for g in c.groups {
            let (worker, local, create) = self.twin(&g.asset, g.entry);
            batches[worker].push(TwinBatch::events(local, create, g.events));
        }
        let permit = c.permit.unwrap_or_else(|| self.flow.extra());
        for (w, batches) in batches.into_iter().enumerate() {
            if !batches.is_empty() {
                self.backlog.sent(w);
                self.workers[w].do_send(Deliver {
                    batches,
                    received_at: c.received_at,
                    routed_at,
                    permit: permit.clone(),
                });
            }
        }
    }

    /// The end of input: every twin - including those only in the store -
    /// closes its windows; every twin is snapshotted afterwards.
    fn end_of_input(&mut self) -> Result<(), EngineError> {
        let mut stored = Vec::new();
        self.store.for_each_twin(0, |key, _| {
            stored.push(key.to_string());
            Ok(())
        })?;
        let mut batches: Vec<Vec<TwinBatch>> = (0..self.workers.len()).map(|_| Vec::new()).collect();
        for asset in stored {
            if self.directory.twins.contains_key(asset.as_str()) {
                continue;
            }
            let Some(entry) = self.index.resolve(&asset) else {
                tracing::warn!(%asset, "stored twin matches no asset entry any more; left as it is");
                continue;
            };
            let (worker, local, create) = self.twin(&asset, entry);
            batches[worker].push(TwinBatch::events(local, create, Vec::new()));
        }
        let permit = self.flow.extra();
        let now = Instant::now();
        for (w, addr) in self.workers.iter().enumerate() {
            let batches = std::mem::take(&mut batches[w]);
            if !batches.is_empty() {
                self.backlog.sent(w);
                addr.do_send(Deliver {
                    batches,
                    received_at: now,
                    routed_at: now,
                    permit: permit.clone(),
                });
            }
            addr.do_send(EndOfInputAll { permit: permit.clone() });
        }
        // Every twin may change: all are dirty.
        let next = self.epochs.next();
        for t in self.directory.twins.values_mut() {
            if t.dirty_for != next {
                t.dirty_for = next;
                self.epochs.mark(t.worker as usize, t.local);
            }
        }
        for s in &mut self.sources {
            if s.end_of_input {
                s.position.finished = true;
            }
        }
        self.epochs.positions_changed = true;
        Ok(())
    }
}
