//! Sinks: write outputs (windows, alerts, commands, twin updates, dead
//! letters) as JSON lines to stdout or files (actors), or send them to an
//! MQTT broker ([`mqtt`]) or Kafka ([`kafka`]): threads sharing a
//! store-backed [`outbox`].
//!
//! Twins send one [`OutputBatch`] per applied batch to every sink whose
//! subscribed kinds it contains. A batch holds the flow [`Permit`] of its
//! input chunk, so a slow sink slows the sources. At every checkpoint the
//! store writer asks each sink to [`FlushSink`] and commits only when all of
//! them confirm: an output is written (or, for an MQTT sink, published and
//! acknowledged or staged in the checkpoint's outbox) before the state that
//! produced it is durable (outputs are at-least-once; nothing is lost on a
//! crash).

mod broker;
mod build;
mod json;
mod kafka;
mod lines;
mod mqtt;
mod outbox;

pub use outbox::check_value as check_outbox_value;
#[doc(hidden)]
pub use outbox::example_value as example_outbox_value;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use lines::SinkActor;

use crate::pipeline::FatalTx;
use crate::pipeline::OutputBatch;
use crate::store::{Checkpoint, Store};
use crate::topology::{OutputKind, SinkKind, SinkSpec};
use crate::twin::schema::OutputMask;

#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Arc<OutputBatch>);

/// Write out everything received so far (and fsync files when `sync`), then
/// answer on `reply` with the outbox changes to commit with the checkpoint.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushSink {
    pub sync: bool,
    pub reply: crossbeam_channel::Sender<Result<Vec<OutboxOp>, SinkError>>,
}

/// A change to a sink's outbox (messages a broker has not acknowledged),
/// committed with a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum OutboxOp {
    /// Store message `seq`.
    Put { sink: Arc<str>, seq: u64, value: Vec<u8> },
    /// Remove the messages `seqs` (acknowledged).
    Remove { sink: Arc<str>, seqs: std::ops::Range<u64> },
}

impl OutboxOp {
    /// Stages the change in `ckpt`.
    pub fn stage(&self, store: &Store, ckpt: &mut Checkpoint) {
        match self {
            OutboxOp::Put { sink, seq, value } => store.stage_outbox(ckpt, sink, *seq, Some(value)),
            OutboxOp::Remove { sink, seqs } => store.stage_outbox_removal(ckpt, sink, seqs.clone()),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("sink `{sink}` cannot write to {target}: {message}")]
pub struct SinkError {
    pub sink: String,
    pub target: String,
    pub message: String,
}

/// The `{kind}` of a topic: the output line's `kind`.
pub(crate) fn kind_label(kind: OutputKind) -> &'static str {
    match kind {
        OutputKind::TwinUpdates => "twin_update",
        OutputKind::Windows => "window",
        OutputKind::Alerts => "alert",
        OutputKind::DeadLetters => "dead_letter",
        OutputKind::LateEvents => "late_event",
        OutputKind::Joins => "join",
        OutputKind::Commands => "command",
        OutputKind::Events => "event",
        OutputKind::Relays => "relay",
    }
}

/// What the store writer and the hub ask a sink thread (MQTT, Kafka).
enum Cmd {
    Deliver(Arc<OutputBatch>),
    /// Reply with the outbox changes since the last flush.
    Flush(crossbeam_channel::Sender<Result<Vec<OutboxOp>, SinkError>>),
    /// Publish what is held (for a few seconds), record what was
    /// acknowledged, and end.
    Close,
}

pub use crate::topology::expand_path;

/// A running sink.
#[derive(Clone)]
enum Handle {
    Actor(Addr<SinkActor>),
    Thread(crossbeam_channel::Sender<Cmd>),
}

/// What starting a sink needs besides its spec.
pub struct SinkContext<'a> {
    /// File paths may contain `{state_dir}`, replaced by this.
    pub state_dir: &'a Path,
    pub arbiter: &'a ArbiterHandle,
    /// Where MQTT sinks keep their outbox.
    pub store: Arc<Store>,
    /// Where a sink reports a failure that stops the node.
    pub fatal: FatalTx,
    /// MQTT client ids default to, and Kafka client ids are,
    /// `twinstream-<node>-sink-<name>`.
    pub node: &'a str,
    /// Source index -> name (events name their source).
    pub sources: Arc<[Arc<str>]>,
    /// Cluster: where the sink taking relays sends a related asset's values.
    pub relays: Option<Arc<crate::cluster::RelayRoutes>>,
}

/// The running sinks and which output kinds each takes.
#[derive(Clone, Default)]
pub struct SinkHub {
    sinks: Vec<(OutputMask, Handle)>,
    wanted: OutputMask,
    threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

impl SinkHub {
    /// Starts the sinks of `specs`. When no sink takes dead letters they go
    /// to `<state_dir>/dead_letters.jsonl`, so nothing is dropped.
    pub fn start(specs: &[SinkSpec], cx: &SinkContext<'_>) -> Result<SinkHub, SinkError> {
        let mut hub = SinkHub::default();
        let mut specs = specs.to_vec();
        if !specs.iter().any(|s| s.outputs.contains(&OutputKind::DeadLetters)) {
            specs.push(SinkSpec {
                name: "dead-letters".into(),
                pos: Default::default(),
                kind: SinkKind::File {
                    path: PathBuf::from(crate::topology::DEFAULT_DEAD_LETTERS),
                },
                outputs: vec![OutputKind::DeadLetters],
            });
        }
        for spec in &mut specs {
            if let SinkKind::File { path } = &mut spec.kind {
                *path = expand_path(path, cx.state_dir);
            }
        }
        // Messages of a sink the topology no longer has stay in the store
        // (never dropped silently); say so.
        let outbox = cx.store.outbox_sinks().map_err(|e| SinkError {
            sink: "?".into(),
            target: "the store's outbox".into(),
            message: e.to_string(),
        })?;
        for (name, messages) in outbox {
            let known = specs
                .iter()
                .any(|s| s.name == name && matches!(s.kind, SinkKind::Mqtt(_) | SinkKind::Kafka(_)));
            if !known {
                tracing::warn!(sink = %name, messages,
                    "the store holds messages of an MQTT or Kafka sink this topology does not have; they are kept until a sink of that name sends them");
            }
        }
        for spec in specs {
            let mask = spec.outputs.iter().fold(OutputMask::default(), |m, k| m.with(*k));
            match build::build(&spec, mask, cx)? {
                build::Built::Lines(actor) => {
                    let addr = SinkActor::start_in_arbiter(cx.arbiter, move |_| *actor);
                    hub.wanted = OutputMask(hub.wanted.0 | mask.0);
                    hub.sinks.push((mask, Handle::Actor(addr)));
                }
                build::Built::Broker(run) => hub.spawn(&spec.name, mask, run)?,
            }
        }
        Ok(hub)
    }

    /// Runs a broker sink on a thread of its own, fed by [`Cmd`]s.
    fn spawn(
        &mut self,
        name: &str,
        mask: OutputMask,
        run: impl FnOnce(&crossbeam_channel::Receiver<Cmd>) + Send + 'static,
    ) -> Result<(), SinkError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || run(&rx))
            .map_err(|e| SinkError {
                sink: name.to_string(),
                target: "thread".into(),
                message: e.to_string(),
            })?;
        self.threads.lock().unwrap_or_else(|e| e.into_inner()).push(thread);
        self.wanted = OutputMask(self.wanted.0 | mask.0);
        self.sinks.push((mask, Handle::Thread(tx)));
        Ok(())
    }

    /// The output kinds at least one sink takes: twins build only these.
    pub fn wanted(&self) -> OutputMask {
        self.wanted
    }

    /// Sends `batch` to every sink that takes one of its kinds.
    pub fn deliver(&self, batch: OutputBatch) {
        let mask = batch.mask();
        if !self.wanted.intersects(mask) {
            return;
        }
        let batch = Arc::new(batch);
        for (m, sink) in &self.sinks {
            if m.intersects(mask) {
                match sink {
                    Handle::Actor(addr) => addr.do_send(Deliver(batch.clone())),
                    Handle::Thread(tx) => {
                        let _ = tx.send(Cmd::Deliver(batch.clone()));
                    }
                }
            }
        }
    }

    /// Flushes every sink and waits for all confirmations (or the first
    /// error); returns the outbox changes to commit with the checkpoint.
    /// Called from the store writer thread, never from an actor.
    pub fn flush_all(&self, sync: bool, timeout: Duration) -> Result<Vec<OutboxOp>, SinkError> {
        let (tx, rx) = crossbeam_channel::bounded(self.sinks.len().max(1));
        for (_, sink) in &self.sinks {
            match sink {
                Handle::Actor(addr) => addr.do_send(FlushSink {
                    sync,
                    reply: tx.clone(),
                }),
                Handle::Thread(t) => {
                    let _ = t.send(Cmd::Flush(tx.clone()));
                }
            }
        }
        drop(tx);
        let mut ops = Vec::new();
        for _ in 0..self.sinks.len() {
            match rx.recv_timeout(timeout) {
                Ok(Ok(more)) => ops.extend(more),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(SinkError {
                        sink: "?".into(),
                        target: "?".into(),
                        message: format!("a sink did not confirm a flush within {timeout:?}"),
                    })
                }
            }
        }
        Ok(ops)
    }

    /// Lets the thread sinks publish what they hold (for a few seconds),
    /// record what is left in their outbox, and end. Called once, after
    /// the final checkpoint.
    pub fn close(&self) {
        for (_, sink) in &self.sinks {
            if let Handle::Thread(t) = sink {
                let _ = t.send(Cmd::Close);
            }
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}
