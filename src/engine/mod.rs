//! The engine: builds the dataflow of a topology and runs it.
//!
//! ```text
//! file reader ─▶ decoder pool ─┐
//! simulator ───────────────────┴▶ router ─▶ workers (one per thread) ─▶ twin actors ─▶ sinks
//!                                   │                                      │
//!                                   └── checkpoint barriers ──────────────▶└─▶ store writer (RocksDB)
//! ```
//!
//! Threads: one per file source, `decoders` decoder threads, the router, the
//! store writer, `workers` actix arbiters for twins and one arbiter for
//! sinks. [`run`] returns when the sources are done (replay) or `stop` is set
//! (SIGINT/SIGTERM), after a final durable checkpoint.

pub mod checkpoint;
pub mod host;
pub mod query;
pub mod router;
pub mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::cluster::member::Membership;
use crate::pipeline::watch::Feed;
use crate::pipeline::{Fatal, Flow};
use crate::sink::{SinkContext, SinkError, SinkHub};
use crate::source::decode::AssetIndex;
use crate::source::file::check_position;
use crate::source::{self, decoder_loop, SourceError, SourcePosition};
use crate::store::envelope::EnvelopeError;
use crate::store::{Store, StoreError};
use crate::topology::{Pace, SourceKind, Topology};
use crate::twin::schema::Model;
use host::TwinContext;
use router::{Router, RouterParts, SourceSlot};
use worker::Worker;

/// Why the engine stopped with an error. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("cannot restore twin `{asset}`: {error}")]
    Restore { asset: String, error: EnvelopeError },
    #[error("stored position of source `{source_name}` is unreadable: {error}")]
    Position { source_name: String, error: EnvelopeError },
    #[error(transparent)]
    Changelog(#[from] crate::cluster::changelog::ChangelogError),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Aborted(String),
    /// A running source, sink or the store writer failed.
    #[error(transparent)]
    Fatal(#[from] Fatal),
}

/// What to run.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Every source of the topology, until stopped.
    Run,
    /// One file through the decode mapping of source `source`, as fast as
    /// possible (or at `rate` records/s); stops at its end.
    Replay {
        file: PathBuf,
        source: usize,
        rate: Option<f64>,
    },
}

pub struct Options {
    pub mode: Mode,
    pub state_dir: PathBuf,
    /// The HTTP API's questions, when it runs.
    pub api: Option<query::ApiLink>,
}

/// How a run ended.
#[derive(Debug)]
pub struct Summary {
    pub positions: Vec<(String, SourcePosition)>,
    /// Where each positioned source started in this run.
    pub started_at: Vec<(String, SourcePosition)>,
    pub twins: usize,
    pub checkpoints: u64,
    pub events: u64,
    pub elapsed: Duration,
    /// Every source reached its end of input (replay complete).
    pub finished: bool,
    pub flow_high_water: usize,
}

/// The name of a cluster's relay sink (its outbox in the store).
pub const RELAY_SINK: &str = "cluster-relays";

/// A cluster's relay sink: an idempotent Kafka producer to the ingest
/// topic, on the cluster source's brokers.
fn relay_sink(
    topo: &Topology,
    cluster: &crate::topology::ClusterSpec,
) -> Result<crate::topology::SinkSpec, EngineError> {
    let src = topo.sources.iter().find(|s| s.name == cluster.source);
    let Some(SourceKind::Kafka(k)) = src.map(|s| &s.kind) else {
        return Err(EngineError::Aborted(format!(
            "cluster source `{}` is not a Kafka source",
            cluster.source
        )));
    };
    let topic = crate::topology::OutputTopic::parse(&k.topics[0])
        .map_err(|e| EngineError::Aborted(format!("ingest topic `{}`: {e}", k.topics[0])))?;
    Ok(crate::topology::SinkSpec {
        name: RELAY_SINK.into(),
        pos: Default::default(),
        kind: crate::topology::SinkKind::Kafka(Box::new(crate::topology::KafkaSinkSpec {
            conn: k.conn.clone(),
            topic,
            queue: crate::topology::DEFAULT_SINK_QUEUE,
            buffer: None,
        })),
        outputs: vec![crate::topology::OutputKind::Relays],
    })
}

/// The changelog producer of a cluster node: the cluster source's brokers
/// and settings.
fn changelog_writer(
    topo: &Topology,
    cluster: &crate::topology::ClusterSpec,
) -> Result<crate::cluster::changelog::Writer, EngineError> {
    let config = cluster_config(topo, cluster)?;
    Ok(crate::cluster::changelog::Writer::new(&config, &cluster.changelog)?)
}

/// How a cluster node reads a damaged twin's last committed record back
/// from the changelog (`node.damaged_twin: changelog`).
fn changelog_rebuild(
    topo: &Topology,
    cluster: &crate::topology::ClusterSpec,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<host::Rebuild, EngineError> {
    let config = cluster_config(topo, cluster)?;
    let topic = cluster.changelog.clone();
    Ok(Arc::new(move |shard, asset| {
        crate::cluster::changelog::last_committed(&config, &topic, shard, asset, &stop)
            .map(|t| t.map(|t| (t.record, t.timer)))
            .map_err(|e| e.to_string())
    }))
}

/// The client settings of the cluster's brokers (the cluster source's).
fn cluster_config(
    topo: &Topology,
    cluster: &crate::topology::ClusterSpec,
) -> Result<rdkafka::ClientConfig, EngineError> {
    let Some(SourceKind::Kafka(spec)) = topo.sources.iter().find(|s| s.name == cluster.source).map(|s| &s.kind) else {
        return Err(EngineError::Config(format!(
            "node.cluster.source `{}` is not a Kafka source",
            cluster.source
        )));
    };
    let secrets = crate::kafka::secrets(&spec.conn).map_err(|(property, var)| {
        EngineError::Source(SourceError::KafkaSecret {
            source_name: cluster.source.clone(),
            property,
            var,
        })
    })?;
    Ok(crate::kafka::config(&spec.conn, &[], &secrets))
}

/// Runs `topo` until its sources are done (replay) or `stop` is set.
/// `progress` receives the byte offset of a replayed file.
pub fn run(
    topo: &Topology,
    opts: &Options,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
) -> Result<Summary, EngineError> {
    let started = Instant::now();
    // Which sources run, and from where: settled before the state directory
    // is created, so a configuration error leaves nothing behind.
    let mut chosen = Vec::new();
    for (i, src) in topo.sources.iter().enumerate() {
        let (run_it, file) = match &opts.mode {
            Mode::Replay { file, source, .. } => (*source == i, Some(file.clone())),
            Mode::Run => (true, source::build::file_of(src)?),
        };
        if run_it {
            chosen.push((i, file));
        }
    }

    let cluster = topo.node.cluster.as_ref().filter(|_| matches!(opts.mode, Mode::Run));
    // A single node has one shard (0); a cluster node the shards the group
    // assigns it, created as they come.
    let store = Arc::new(Store::open(&opts.state_dir, if cluster.is_some() { 0 } else { 1 })?);
    // A cluster node's shard that lost its twins or timers is restored
    // whole from the changelog, as a shard new to this node would be.
    for (shard, lost) in store.incomplete_shards().to_vec() {
        tracing::warn!(
            shard,
            missing = %lost.join(", "),
            "the store lost part of a shard (column families missing): its remains are dropped and the shard is restored from the changelog when this node is assigned it"
        );
        store.discard_shard(shard)?;
        store.delete_meta(&crate::cluster::ShardMeta::key(shard))?;
    }
    let sharding = Arc::new(if cluster.is_some() {
        crate::cluster::Sharding::default()
    } else {
        crate::cluster::Sharding::single()
    });
    if let Some(c) = cluster {
        // Where the other nodes' APIs forward requests for this node's shards.
        let listen = opts.api.as_ref().and_then(|a| a.addr);
        let me = c.advertise.clone().or_else(|| listen.map(|a| format!("http://{a}")));
        if c.advertise.is_none() && listen.is_some_and(|a| a.ip().is_unspecified()) {
            tracing::warn!(listen = ?listen, "the HTTP API listens on every interface: set `node.cluster.advertise` to the URL other nodes reach it at, or they cannot forward requests for this node's shards");
        }
        sharding.directory.set_me(me);
    }
    let index = Arc::new(AssetIndex::new(topo));
    let mut plans = Vec::new();
    for (i, file) in chosen {
        let src = &topo.sources[i];
        let mut position = SourcePosition::default();
        if source::build::is_positioned(src, file.is_some()) {
            let key = SourcePosition::meta_key(&src.name);
            if let Some(bytes) = store.get_meta(&key)? {
                position = SourcePosition::decode(&bytes).map_err(|error| EngineError::Position {
                    source_name: src.name.clone(),
                    error,
                })?;
            }
        }
        if let Some(path) = &file {
            position = check_position(&src.name, path, position)?;
        }
        plans.push((i, file, position));
    }
    let positioned = |i: usize, file: &Option<PathBuf>| source::build::is_positioned(&topo.sources[i], file.is_some());
    let started_at: Vec<(String, SourcePosition)> = plans
        .iter()
        .filter(|(i, f, _)| positioned(*i, f))
        .map(|(i, _, p)| (topo.sources[*i].name.clone(), p.clone()))
        .collect();
    let replay = matches!(opts.mode, Mode::Replay { .. });
    if replay && plans.iter().all(|(_, _, p)| p.finished) {
        // Already complete: the state in the store is the answer.
        return Ok(Summary {
            positions: started_at.clone(),
            started_at,
            twins: 0,
            checkpoints: 0,
            events: 0,
            elapsed: started.elapsed(),
            finished: true,
            flow_high_water: 0,
        });
    }

    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let n_workers = if topo.node.workers == 0 {
        cores
    } else {
        topo.node.workers
    };
    let n_decoders = if topo.node.decoders == 0 {
        cores
    } else {
        topo.node.decoders
    };
    let flow = Flow::new(topo.node.max_inflight_chunks);
    crate::telemetry::flow_limit(topo.node.max_inflight_chunks);
    let budgets: Vec<_> = topo
        .node
        .slo
        .iter()
        .map(|b| (b.hop.name(), b.quantile.label(), b.budget))
        .collect();
    crate::telemetry::latency_budgets(&budgets);
    for t in &topo.asset_types {
        if let Some((_, f)) = t.history_footprint() {
            crate::telemetry::history_sensor_day(&t.name, f.per_day);
        }
    }

    let system = System::new();
    let sink_arbiter = Arbiter::new();
    let (fatal_tx, fatal_rx) = crossbeam_channel::unbounded::<Fatal>();
    let source_names: Vec<Arc<str>> = topo.sources.iter().map(|s| s.name.as_str().into()).collect();
    // A cluster relays values to followers on other nodes through the
    // ingest topic (a relay record on each follower shard's partition).
    let relays = cluster
        .and_then(|_| crate::cluster::RelayRoutes::new(topo, sharding.clone()))
        .map(Arc::new);
    let mut sink_specs = topo.sinks.clone();
    if let (Some(c), Some(_)) = (cluster, &relays) {
        sink_specs.push(relay_sink(topo, c)?);
    }
    let sinks = SinkHub::start(
        &sink_specs,
        &SinkContext {
            state_dir: &opts.state_dir,
            arbiter: &sink_arbiter.handle(),
            store: store.clone(),
            fatal: fatal_tx.clone(),
            node: &topo.node.name,
            sources: source_names.clone().into(),
            relays: relays.clone(),
        },
    )?;
    // With an API, twins emit their alert transitions for watchers
    // (`GET /events`) whether or not a sink takes them.
    let emit = match &opts.api {
        Some(_) => sinks.wanted().with(crate::topology::OutputKind::Alerts),
        None => sinks.wanted(),
    };
    let model = Arc::new(Model::build(topo, emit, replay));
    // Before any twin record that refers to them.
    for ty in &model.types {
        host::stored::ensure_schema_stored(&store, &ty.schema)?;
    }
    let (feedback_tx, feedback_rx) = crossbeam_channel::unbounded();
    let requests = match &opts.api {
        Some(api) => {
            let _ = api.catalog.set(query::Catalog {
                model: model.clone(),
                index: index.clone(),
                store: Arc::downgrade(&store),
                sharding: sharding.clone(),
                source_names: source_names.clone(),
                types: topo.asset_types.iter().map(crate::twin::view::asset_type).collect(),
            });
            api.requests.clone()
        }
        None => crossbeam_channel::never(),
    };
    // Without an API nobody can watch: a feed of its own that never records.
    let feed = opts.api.as_ref().map_or_else(Feed::new, |a| a.feed.clone());
    let cx = Arc::new(TwinContext {
        store: store.clone(),
        changelog: cluster.is_some(),
        sinks: sinks.clone(),
        fatal: fatal_tx.clone(),
        source_names,
        forward_events: sinks.wanted().has(crate::topology::OutputKind::Events),
        remote_relays: relays.is_some(),
        feedback: feedback_tx,
        feed,
        damaged: topo.node.damaged_twin,
        rebuild: match cluster {
            Some(c) => Some(changelog_rebuild(topo, c, stop.clone())?),
            None => None,
        },
        #[cfg(test)]
        panic_hook: None,
    });
    let worker_arbiters: Vec<Arbiter> = (0..n_workers).map(|_| Arbiter::new()).collect();
    let backlog = worker::Backlog::new(n_workers);
    let workers: Vec<Addr<Worker>> = worker_arbiters
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let (cx, backlog) = (cx.clone(), backlog.clone());
            Worker::start_in_arbiter(&a.handle(), move |_| Worker::new(i, backlog, cx))
        })
        .collect();

    let (job_tx, job_rx) = crossbeam_channel::unbounded();
    let (chunk_tx, chunk_rx) = crossbeam_channel::unbounded();
    let (epoch_tx, epoch_rx) = crossbeam_channel::unbounded();
    let (durable_tx, durable_rx) = crossbeam_channel::unbounded();
    let mut threads = Vec::new();

    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(f)
            .expect("spawning a thread")
    };
    for d in 0..n_decoders {
        let (rx, tx) = (job_rx.clone(), chunk_tx.clone());
        threads.push(spawn(&format!("decode-{d}"), Box::new(move || decoder_loop(rx, tx))));
    }
    drop(job_rx);
    {
        let changelog = match cluster {
            Some(c) => Some(changelog_writer(topo, c)?),
            None => None,
        };
        let (store, sinks, fatal) = (store.clone(), sinks.clone(), fatal_tx.clone());
        let sync = topo.node.snapshot.sync;
        threads.push(spawn(
            "store-writer",
            Box::new(move || {
                crate::priority::yield_to_ingestion();
                checkpoint::writer_loop(epoch_rx, changelog, store, sinks, sync, durable_tx, fatal)
            }),
        ));
    }

    let mut slots = Vec::new();
    for (i, src) in topo.sources.iter().enumerate() {
        let plan = plans.iter().find(|(p, _, _)| *p == i);
        slots.push(SourceSlot::new(
            src.name.as_str().into(),
            plan.is_some_and(|(p, f, _)| positioned(*p, f)),
            plan.map(|(_, _, p)| p.clone()).unwrap_or_default(),
            plan.is_some(),
        ));
    }
    let mut ack_channels = Vec::new();
    for (i, src) in topo.sources.iter().enumerate() {
        if source::build::acknowledges(src) && plans.iter().any(|(p, _, _)| *p == i) {
            let (tx, rx) = crossbeam_channel::unbounded();
            slots[i].acks = Some(tx);
            ack_channels.push((i, rx));
        }
    }
    let source_cx = source::build::SourceContext {
        topo,
        index: &index,
        flow: &flow,
        stop: &stop,
        fatal: &fatal_tx,
        chunks: &chunk_tx,
        jobs: &job_tx,
        progress: &progress,
        state_dir: &opts.state_dir,
        store: &store,
        sync: topo.node.snapshot.sync,
    };
    for (i, file, position) in plans {
        let src = &topo.sources[i];
        let (pace, rate) = match &opts.mode {
            Mode::Replay { rate, .. } => (Pace::Fast, *rate),
            Mode::Run => (source::build::pace_of(src), None),
        };
        let run = source::build::SourceRun {
            index: i,
            file,
            position,
            pace,
            rate,
            acks: ack_channels.iter().find(|(s, _)| *s == i).map(|(_, rx)| rx.clone()),
            membership: cluster.filter(|c| c.source == src.name).map(|c| Membership {
                node: topo.node.name.clone(),
                store: store.clone(),
                sharding: sharding.clone(),
                changelog: c.changelog.clone(),
                session_timeout: c.session_timeout,
                stop: stop.clone(),
                history_keep: topo.history_keep(),
            }),
        };
        let built = source::build::build(src, run, &source_cx)?;
        threads.push(spawn(&built.thread, built.run));
    }
    drop(job_tx);
    drop(chunk_tx);

    // QoS 1 MQTT messages are acknowledged by checkpoints: take them at least
    // as often as those sources ask.
    let mut snapshot = topo.node.snapshot.clone();
    for (i, src) in topo.sources.iter().enumerate() {
        if let Some(every) = source::build::checkpoint_every(src).filter(|_| slots[i].acks.is_some()) {
            snapshot.interval = snapshot.interval.min(every);
        }
    }
    // Closed after the final checkpoint, when the router is done.
    let closing = sinks.clone();
    let mut router = Router::new(RouterParts {
        sources: slots,
        workers,
        backlog,
        model,
        index,
        store: store.clone(),
        sharding,
        clustered: cluster.is_some(),
        sinks,
        flow: flow.clone(),
        epochs: epoch_tx,
        snapshot,
        flush_at_end: replay,
        passivate_after: topo.node.passivate_after,
    });
    router.start_timers();
    let router_system = System::current();
    let (stop_r, flow_r) = (stop.clone(), flow.clone());
    let router_thread = std::thread::Builder::new()
        .name("router".into())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                router.run(chunk_rx, durable_rx, fatal_rx, feedback_rx, requests, &stop_r)
            }));
            // Whatever happened, a panic included: release the sources and
            // stop the actors, or `system.run()` below waits forever.
            stop_r.store(true, Ordering::Relaxed);
            flow_r.close();
            router_system.stop();
            outcome.unwrap_or_else(|_| Err(EngineError::Aborted("the router panicked (see the log)".into())))
        })
        .expect("spawning the router thread");

    // Twins restore lazily (on first use) and their timers are read from the
    // deadline index as they come due: with the dataflow started, the node
    // serves. Nothing was read per twin.
    crate::telemetry::health::set_restored(true);
    let _ = system.run();
    crate::telemetry::health::set_restored(false);
    let outcome = router_thread
        .join()
        .map_err(|_| EngineError::Aborted("the router thread panicked".into()))?;
    for a in worker_arbiters.iter().chain(std::iter::once(&sink_arbiter)) {
        a.stop();
    }
    for a in worker_arbiters.into_iter().chain(std::iter::once(sink_arbiter)) {
        let _ = a.join();
    }
    closing.close();
    drop(fatal_tx);
    for t in threads {
        let _ = t.join();
    }
    let outcome = outcome?;
    // Stopped cleanly: the memtables go to table files, so the next start
    // opens the store without replaying its log (a node of a million twins
    // spent ~3 s on that: scripts/bench-restart.sh).
    if let Err(e) = store.flush() {
        tracing::warn!(error = %e, "could not flush the store at the stop; the next start replays its log");
    }
    Ok(Summary {
        positions: outcome.positions,
        started_at,
        twins: outcome.twins,
        checkpoints: outcome.checkpoints,
        events: outcome.events,
        elapsed: started.elapsed(),
        finished: outcome.finished,
        flow_high_water: flow.high_water(),
    })
}
