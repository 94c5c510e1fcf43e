//! A worker: one actix actor per worker thread (arbiter) that hosts the twin
//! actors living on that thread and hands them their messages.
//!
//! The router sends each worker one message per input chunk instead of one
//! per twin, so crossing threads costs one wake-up per chunk; the worker then
//! hands every twin its batch by a direct call, in order. It is the twins'
//! mailbox: a twin's messages reach the worker in the order the router sent
//! them, and the worker handles them one at a time. Twins are started on
//! first use (restored from the store) and dropped when passivated or when
//! another node owns their shard.
//!
//! **Snapshots in slices, input first.** A checkpoint barrier for many
//! twins is not encoded in one go: the worker marks each twin as owing the
//! epoch and encodes them [`SNAPSHOT_SLICE`] at a time when no input batch
//! waits in its mailbox, so a checkpoint of 100k dirty twins fills the gaps
//! between inputs instead of delaying them. A twin that owes a snapshot is
//! encoded before its next input, so its part still holds exactly the events
//! routed before the barrier (and the twins that get input are encoded as it
//! comes). A worker that never runs out of input still finishes the epoch:
//! once it has been owed for [`SNAPSHOT_PATIENCE`], slices go between inputs.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::checkpoint::Epoch;
use super::host::{history, Apply, Question, Tally, TwinActor, TwinContext, TypeContext, Unrestored};
use super::query::Gather;
use crate::pipeline::flow::Permit;
use crate::twin::model::{Event, Relayed};
use crate::twin::record;
use crate::twin::schema::TypeModel;
use crate::twin::view::Surveyed;

/// Twins a worker encodes in one go while it owes snapshots (~1-4 us
/// each: an input arriving meanwhile waits at most about a millisecond).
pub const SNAPSHOT_SLICE: usize = 256;

/// How long owed snapshots wait for a gap in the input before slices go
/// between inputs anyway (a worker that never idles still completes the
/// epoch, and the next checkpoint, which waits for it, can start).
pub const SNAPSHOT_PATIENCE: Duration = Duration::from_millis(250);

thread_local! {
    /// What twins encode their records with (one per worker thread).
    static RECORD: RefCell<record::Encoder> = RefCell::new(record::Encoder::default());
    /// The history part of a twin's snapshot (one per worker thread).
    static HISTORY: RefCell<history::Part> = RefCell::new(history::Part::default());
}

/// The snapshot hook: asks `twin` for its part of `epoch` and adds it. A
/// twin with no state to give aborts the epoch (the node is stopping).
pub(crate) fn take_part(twin: &mut TwinActor, epoch: &Arc<Epoch>) {
    RECORD.with(|enc| {
        HISTORY.with(|hist| {
            let (mut enc, mut hist) = (enc.borrow_mut(), hist.borrow_mut());
            match twin.snapshot(&mut enc, |d| epoch.add_digest(d), &mut hist) {
                Ok(timer) => epoch.add(twin.shard(), twin.asset(), &enc, timer, &hist),
                Err(Unrestored) => epoch.abort(),
            }
        })
    });
}

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

    /// Input batches sent to `worker` and not taken yet.
    fn waiting(&self, worker: usize) -> usize {
        self.0[worker].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reports every worker's depth.
    pub fn report(&self) {
        for w in 0..self.0.len() {
            crate::telemetry::worker_backlog(w, self.waiting(w));
        }
    }
}

/// An epoch whose barrier reached this worker: the twins that may still owe
/// it their part, from `next` on.
struct Owed {
    epoch: Arc<Epoch>,
    locals: Vec<u32>,
    next: usize,
    /// When its barrier reached the worker.
    since: Instant,
}

pub struct Worker {
    /// This worker's index (its slot in the [`Backlog`]).
    index: usize,
    backlog: Arc<Backlog>,
    /// By local index; `None`: a free slot (the twin was passivated, or its
    /// shard went to another node). Boxed: a free slot costs 8 bytes.
    twins: Vec<Option<Box<TwinActor>>>,
    /// Twins in memory.
    live: usize,
    cx: Arc<TwinContext>,
    /// One per asset type seen so far (a handful: found by pointer).
    types: Vec<Arc<TypeContext>>,
    /// Epochs not all of whose twins have been encoded yet, oldest first.
    owed: VecDeque<Owed>,
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
            owed: VecDeque::new(),
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
            let twin = Some(Box::new(TwinActor::start(asset, tcx, shard)));
            if (local as usize) < self.twins.len() {
                // The slot of a twin that left.
                debug_assert!(self.twins[local as usize].is_none(), "a slot is reused only once free");
                self.twins[local as usize] = twin;
            } else {
                debug_assert_eq!(local as usize, self.twins.len(), "new slots are created in order");
                self.twins.push(twin);
            }
            self.live += 1;
        }
    }

    /// The twin at `local`, ready for its next input: a snapshot it owes is
    /// taken first, so the snapshot holds nothing routed after its barrier.
    fn ready(&mut self, local: u32) -> Option<&mut TwinActor> {
        let twin = self.twins.get_mut(local as usize)?.as_deref_mut()?;
        if twin.owes != 0 {
            let owed = self.owed.iter().find(|o| o.epoch.id == twin.owes);
            let epoch = &owed.expect("a twin owes only epochs the worker holds").epoch;
            take_part(twin, epoch);
            twin.owes = 0;
        }
        Some(twin)
    }

    /// Encodes up to `budget` twins of the oldest epochs still owed.
    fn snapshot_slice(&mut self, mut budget: usize) {
        while let Some(front) = self.owed.front_mut() {
            while front.next < front.locals.len() && budget > 0 {
                let local = front.locals[front.next] as usize;
                front.next += 1;
                // A twin that no longer owes this epoch gave its part on
                // demand, before an input.
                if let Some(twin) = self.twins[local].as_deref_mut() {
                    if twin.owes == front.epoch.id {
                        take_part(twin, &front.epoch);
                        twin.owes = 0;
                        budget -= 1;
                    }
                }
            }
            if front.next < front.locals.len() {
                return;
            }
            self.owed.pop_front();
        }
    }

    /// A slice of the snapshots owed, if they are due: when no input batch
    /// waits, or once the oldest epoch has waited [`SNAPSHOT_PATIENCE`].
    fn advance_snapshots(&mut self) {
        let Some(oldest) = self.owed.front() else {
            return;
        };
        if slice_due(self.backlog.waiting(self.index), oldest.since.elapsed()) {
            self.snapshot_slice(SNAPSHOT_SLICE);
        }
    }

    /// Every snapshot owed, now.
    fn settle_all(&mut self) {
        self.snapshot_slice(usize::MAX);
    }

    /// Asks to go on encoding owed snapshots after the messages queued now.
    fn continue_snapshots(&self, ctx: &mut Context<Self>) {
        if !self.owed.is_empty() {
            ctx.notify(ContinueSnapshots);
        }
    }

    /// Drops the twins at `locals` (their last state is durable, or another
    /// node owns them now); their slots are free for new twins.
    fn drop_twins(&mut self, locals: &[u32]) -> usize {
        let mut dropped = 0;
        for &local in locals {
            // A snapshot it owes is still part of its epoch.
            if self.ready(local).is_some() {
                self.twins[local as usize] = None;
                self.live -= 1;
                dropped += 1;
            }
        }
        dropped
    }
}

/// Whether a worker owing snapshots for `owed_for` encodes a slice now,
/// with `waiting` input batches in its mailbox: input goes first, unless the
/// snapshots have waited [`SNAPSHOT_PATIENCE`] already.
fn slice_due(waiting: usize, owed_for: Duration) -> bool {
    waiting == 0 || owed_for >= SNAPSHOT_PATIENCE
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
    /// When the router took the chunk.
    pub routed_at: Instant,
    pub permit: Permit,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct CheckpointTwins {
    pub epoch: Arc<Epoch>,
    pub locals: Vec<u32>,
}

/// To itself: go on encoding owed snapshots.
#[derive(Message)]
#[rtype(result = "()")]
struct ContinueSnapshots;

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
        let mut tally = Tally::default();
        for b in msg.batches {
            self.ensure(b.local, b.create);
            if b.events.is_empty() && b.related.is_empty() && !b.tick {
                continue;
            }
            let Some(twin) = self.ready(b.local) else {
                continue;
            };
            let apply = Apply {
                events: b.events,
                related: b.related,
                tick: b.tick,
                received_at: msg.received_at,
                routed_at: msg.routed_at,
            };
            twin.apply(apply, &msg.permit, &mut tally);
        }
        tally.record();
        self.advance_snapshots();
    }
}

impl Handler<CheckpointTwins> for Worker {
    type Result = ();

    fn handle(&mut self, msg: CheckpointTwins, ctx: &mut Context<Self>) {
        let id = msg.epoch.id;
        let mut owing = Vec::with_capacity(msg.locals.len());
        for local in msg.locals {
            match self.ready(local) {
                Some(twin) => {
                    twin.owes = id;
                    owing.push(local);
                }
                // Not reached: a twin leaves only once its state is durable
                // and gets nothing afterwards. Count the part so the epoch
                // completes.
                None => msg.epoch.skip(),
            }
        }
        self.owed.push_back(Owed {
            epoch: msg.epoch,
            locals: owing,
            next: 0,
            since: Instant::now(),
        });
        self.advance_snapshots();
        self.continue_snapshots(ctx);
    }
}

impl Handler<ContinueSnapshots> for Worker {
    type Result = ();

    fn handle(&mut self, _: ContinueSnapshots, ctx: &mut Context<Self>) {
        self.advance_snapshots();
        self.continue_snapshots(ctx);
    }
}

impl Handler<AskTwin> for Worker {
    type Result = ();

    fn handle(&mut self, msg: AskTwin, _: &mut Context<Self>) {
        self.ensure(msg.local, msg.create);
        if let Some(twin) = self.ready(msg.local) {
            twin.answer(msg.question);
        }
    }
}

impl Handler<SurveyAll> for Worker {
    type Result = ();

    fn handle(&mut self, msg: SurveyAll, _: &mut Context<Self>) {
        // Read-only: a twin that owes a snapshot shows the same state.
        for twin in self.twins.iter_mut().flatten() {
            twin.answer(Question::Survey(msg.gather.clone()));
        }
    }
}

impl Handler<EndOfInputAll> for Worker {
    type Result = ();

    fn handle(&mut self, msg: EndOfInputAll, _: &mut Context<Self>) {
        self.settle_all();
        for twin in self.twins.iter_mut().flatten() {
            twin.end_of_input(&msg.permit);
        }
    }
}

/// Why twins leave a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// Idle for `node.passivate_after`: their state is durable and they wake
    /// on their next event, timer or API request.
    Passivate,
    /// Another node owns their shard now.
    Evict,
}

/// Drops twins from memory (after the checkpoint that holds their last
/// state is durable). The router reuses their slots afterwards.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Evict {
    pub locals: Vec<u32>,
    pub why: Leave,
}

impl Handler<Evict> for Worker {
    type Result = ();

    fn handle(&mut self, msg: Evict, _: &mut Context<Self>) {
        let dropped = self.drop_twins(&msg.locals);
        if msg.why == Leave::Passivate {
            crate::telemetry::twins_passivated(dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owed_snapshots_wait_for_a_gap_in_the_input_but_not_forever() {
        assert!(slice_due(0, Duration::ZERO), "an idle worker encodes at once");
        assert!(!slice_due(1, Duration::ZERO), "input waiting goes first");
        assert!(!slice_due(3, SNAPSHOT_PATIENCE - Duration::from_millis(1)));
        assert!(
            slice_due(3, SNAPSHOT_PATIENCE),
            "a busy worker still completes the epoch"
        );
    }

    #[test]
    fn the_backlog_counts_batches_sent_and_not_taken() {
        let b = Backlog::new(2);
        b.sent(1);
        b.sent(1);
        b.taken(1);
        assert_eq!((b.waiting(0), b.waiting(1)), (0, 1));
    }
}
