//! A worker: one actor per worker thread (arbiter) that starts the twin
//! actors living on that thread and hands them their batches.
//!
//! The router sends each worker one message per input chunk instead of one
//! per twin, so crossing threads costs one wake-up per chunk; the worker then
//! delivers to its twins locally, in order. Twin actors are started on first
//! use, on the worker's own thread.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::checkpoint::Epoch;
use super::flow::Permit;
use super::query::Gather;
use crate::twin::actor::{Apply, EndOfInput, Question, Snapshot, TwinActor, TwinContext, TypeContext};
use crate::twin::model::{Event, Relayed};
use crate::twin::schema::TypeModel;
use crate::twin::view::Surveyed;

/// Input batches sent to each worker and not yet handed to its twins (the
/// depth of the workers' mailboxes, as `twinstream_worker_mailbox_batches`).
pub struct Backlog(Vec<std::sync::atomic::AtomicUsize>);

impl Backlog {
    pub fn new(workers: usize) -> Arc<Backlog> {
        Arc::new(Backlog((0..workers).map(|_| Default::default()).collect()))
    }

    pub fn sent(&self, worker: usize) {
        self.0[worker].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn taken(&self, worker: usize) {
        self.0[worker].fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Reports every worker's depth.
    pub fn report(&self) {
        for (w, n) in self.0.iter().enumerate() {
            crate::telemetry::worker_backlog(w, n.load(std::sync::atomic::Ordering::Relaxed));
        }
    }
}

pub struct Worker {
    /// This worker's index (its slot in the [`Backlog`]).
    index: usize,
    backlog: Arc<Backlog>,
    /// By local index; `None`: evicted (its shard went to another node).
    twins: Vec<Option<Addr<TwinActor>>>,
    /// Twins not evicted.
    live: usize,
    cx: Arc<TwinContext>,
    /// One per asset type seen so far (a handful: found by pointer).
    types: Vec<Arc<TypeContext>>,
}

impl Worker {
    pub fn new(index: usize, backlog: Arc<Backlog>, cx: Arc<TwinContext>) -> Worker {
        Worker {
            index,
            backlog,
            twins: Vec::new(),
            live: 0,
            cx,
            types: Vec::new(),
        }
    }

    fn type_context(&mut self, model: Arc<TypeModel>) -> Arc<TypeContext> {
        if let Some(t) = self.types.iter().find(|t| Arc::ptr_eq(&t.model, &model)) {
            return t.clone();
        }
        let t = Arc::new(TypeContext {
            model,
            cx: self.cx.clone(),
        });
        self.types.push(t.clone());
        t
    }

    /// Starts the twin at `local` when `create` says it is new.
    fn ensure(&mut self, local: u32, create: Option<NewTwin>) {
        if let Some((asset, model, shard)) = create {
            let tcx = self.type_context(model);
            let twin = Some(TwinActor::new(asset, tcx, shard).start());
            if (local as usize) < self.twins.len() {
                // The slot of an evicted twin.
                debug_assert!(self.twins[local as usize].is_none(), "a slot is reused only once free");
                self.twins[local as usize] = twin;
            } else {
                debug_assert_eq!(local as usize, self.twins.len(), "new slots are created in order");
                self.twins.push(twin);
            }
            self.live += 1;
            crate::telemetry::twins_active(self.live);
        }
    }
}

impl Actor for Worker {
    type Context = Context<Self>;
}

/// What a worker needs to start a twin: its asset id, type model and shard.
pub type NewTwin = (Arc<str>, Arc<TypeModel>, u32);

/// Events for one twin of this worker.
pub struct TwinBatch {
    /// The twin's index on this worker (assigned by the router in order).
    pub local: u32,
    /// Set on the twin's first batch: start its actor.
    pub create: Option<NewTwin>,
    pub events: Vec<Event>,
    /// Values of related assets relayed to this twin.
    pub related: Vec<Relayed>,
    /// A timer of the twin is due.
    pub tick: bool,
}

impl TwinBatch {
    pub fn events(local: u32, create: Option<NewTwin>, events: Vec<Event>) -> TwinBatch {
        TwinBatch {
            local,
            create,
            events,
            related: Vec::new(),
            tick: false,
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub batches: Vec<TwinBatch>,
    pub received_at: Instant,
    pub permit: Permit,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct CheckpointTwins {
    pub epoch: Arc<Epoch>,
    pub locals: Vec<u32>,
}

/// A question (from the HTTP API) for one twin of this worker.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AskTwin {
    pub local: u32,
    /// Set when the twin is not in memory yet: start it (from the store).
    pub create: Option<NewTwin>,
    pub question: Question,
}

/// The survey question for every twin of this worker.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SurveyAll {
    pub gather: Arc<Gather<Surveyed>>,
}

/// End of input for every twin of this worker.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndOfInputAll {
    pub permit: Permit,
}

impl Handler<Deliver> for Worker {
    type Result = ();

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
        self.backlog.taken(self.index);
        for b in msg.batches {
            self.ensure(b.local, b.create);
            if !b.events.is_empty() || !b.related.is_empty() || b.tick {
                let Some(twin) = &self.twins[b.local as usize] else {
                    continue;
                };
                twin.do_send(Apply {
                    events: b.events,
                    related: b.related,
                    tick: b.tick,
                    received_at: msg.received_at,
                    permit: msg.permit.clone(),
                });
            }
        }
    }
}

impl Handler<CheckpointTwins> for Worker {
    type Result = ();

    fn handle(&mut self, msg: CheckpointTwins, _: &mut Context<Self>) {
        for local in msg.locals {
            match &self.twins[local as usize] {
                Some(twin) => twin.do_send(Snapshot {
                    epoch: msg.epoch.clone(),
                }),
                // Not reached: a twin is evicted only after a durable
                // checkpoint and gets nothing afterwards. Count the part so
                // the epoch completes.
                None => msg.epoch.skip(),
            }
        }
    }
}

impl Handler<AskTwin> for Worker {
    type Result = ();

    fn handle(&mut self, msg: AskTwin, _: &mut Context<Self>) {
        self.ensure(msg.local, msg.create);
        if let Some(twin) = &self.twins[msg.local as usize] {
            twin.do_send(msg.question);
        }
    }
}

impl Handler<SurveyAll> for Worker {
    type Result = ();

    fn handle(&mut self, msg: SurveyAll, _: &mut Context<Self>) {
        for twin in self.twins.iter().flatten() {
            twin.do_send(Question::Survey(msg.gather.clone()));
        }
    }
}

impl Handler<EndOfInputAll> for Worker {
    type Result = ();

    fn handle(&mut self, msg: EndOfInputAll, _: &mut Context<Self>) {
        for twin in self.twins.iter().flatten() {
            twin.do_send(EndOfInput {
                permit: msg.permit.clone(),
            });
        }
    }
}

/// Stops twins whose shard another node owns now (after the checkpoint
/// that holds their last state is durable). Their slots are not reused.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Evict {
    pub locals: Vec<u32>,
}

impl Handler<Evict> for Worker {
    type Result = ();

    fn handle(&mut self, msg: Evict, _: &mut Context<Self>) {
        for local in msg.locals {
            // Dropping the address stops the actor once its mailbox is empty.
            if self.twins[local as usize].take().is_some() {
                self.live -= 1;
            }
        }
        crate::telemetry::twins_active(self.live);
    }
}
