//! Twin hosting: a twin is a **virtual actor** hosted by the shard worker of
//! its thread ([`super::worker`]), as Orleans grains and Akka entities are,
//! not an actix actor of its own. Single writer; its own batch of inputs per
//! activation, handed by a plain call in mailbox order; supervised restart
//! from its last good state; activated on demand (lazy restore) and
//! passivated when idle. An actix actor per asset would cost ~850 bytes and a
//! message per batch (ARCHITECTURE.md "What a twin is").
//!
//! The pure model ([`crate::twin`]) decides; this module does the IO around
//! it, through explicit lifecycle hooks the worker calls:
//!
//! * **Restore** ([`TwinActor::start`], `on_start`): the twin's record is read
//!   from the store ([`stored`]) the first time the asset is seen; a record
//!   this build cannot read stops the node with a clear error instead of
//!   being guessed at.
//! * **Apply** ([`TwinActor::apply`]): the state is backed up (into a
//!   per-thread scratch, so no allocation in steady state; the replay
//!   digest, which applying only appends to, by its length) and each batch
//!   applied in place. If the model panics, the possibly half-updated state
//!   is replaced by the backup: the twin restarts from its last good state,
//!   which equals its last snapshot plus the replay of every message since
//!   (the model is deterministic), and the batch is retried one event at a
//!   time. An event that panics [`MAX_ATTEMPTS`] times goes to the
//!   dead-letter sink and the twin carries on (poison-message guard).
//! * **Snapshot** ([`TwinActor::snapshot`], `handle_checkpoint`): asked by
//!   the worker, the twin encodes its record and says what its timer and
//!   closed-window digest add; the worker puts that part into the epoch.
//!   Barriers follow the batches in the worker's mailbox, so a snapshot holds
//!   exactly the events routed before the barrier; the worker may ask later,
//!   but always before the twin's next input.
//! * **Questions** ([`questions`]): the HTTP API's reads and writes,
//!   answered from the twin's own state.

mod account;
pub mod history;
pub mod questions;
pub mod stored;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use self::account::account;
pub use self::questions::Question;
use super::router::Feedback;
use super::EngineError;
use crate::pipeline::flow::Permit;
use crate::pipeline::now_ms;
use crate::pipeline::watch::Feed;
use crate::pipeline::{DeadLetter, DeadReason, Origin, OutputBatch};
use crate::sink::SinkHub;
use crate::store::{Store, TimerChange};
use crate::telemetry;
use crate::topology::DamagedTwin;
use crate::twin::model::{
    apply, next_deadline, ClosedDigest, Event, Input, Output, Relayed, SensorsBackup, TwinState, NO_TS,
};
use crate::twin::record;
use crate::twin::schema::TypeModel;
use crate::twin::view::{self, Glance};

/// The origin `source` of a dead letter that holds a damaged twin record.
pub const STORE_ORIGIN: &str = "store";

/// Attempts at one event before it is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 3;

/// Reads the last committed record of twin `asset` of shard `shard` from
/// outside the node (a cluster's changelog), with its timer: `Ok(None)`
/// when there is none.
pub type Rebuild = Arc<dyn Fn(u32, &str) -> Result<Option<(Vec<u8>, Option<i64>)>, String> + Send + Sync>;

/// What every twin of a node shares.
pub struct TwinContext {
    pub store: Arc<Store>,
    /// A cluster node: every snapshot carries the twin's timer (the
    /// changelog's record of a twin must be complete on its own).
    pub changelog: bool,
    pub sinks: SinkHub,
    pub fatal: crate::pipeline::FatalTx,
    /// Source index -> name, for dead letters.
    pub source_names: Vec<Arc<str>>,
    /// A sink takes `events`: every applied event goes to the sinks.
    pub forward_events: bool,
    /// Cluster: relayed values also go to the sinks (the relay sink sends
    /// them to followers on other nodes).
    pub remote_relays: bool,
    /// To the router: timer deadlines and values to relay to related twins.
    pub feedback: crossbeam_channel::Sender<Feedback>,
    /// Where twins tell watchers what changed (while anyone watches).
    pub feed: Arc<Feed>,
    /// What a twin whose stored record is damaged starts from
    /// (`node.damaged_twin`), and where a cluster node reads it back from.
    pub damaged: DamagedTwin,
    pub rebuild: Option<Rebuild>,
    /// Test hook: the model panics on an event with this value.
    #[cfg(test)]
    pub panic_hook: Option<tests::PanicHook>,
}

/// What every twin of one asset type shares: its model and the engine's
/// context, behind one pointer (the actor is kept small, see
/// docs/decisions.md "Memory per twin").
pub struct TypeContext {
    pub model: Arc<TypeModel>,
    pub cx: Arc<TwinContext>,
}

pub struct TwinActor {
    asset: Arc<str>,
    tcx: Arc<TypeContext>,
    /// The shard the twin belongs to (0 on a single node).
    shard: u32,
    state: TwinState,
    /// The deadline the router's timer index and the store hold for this
    /// twin (`NO_TS`: none), at or before its real next deadline: events
    /// only move that later, so it is re-armed only when it must be earlier
    /// or after a tick.
    armed: i64,
    /// The deadline the store holds for this twin (`NO_TS`: none): `armed`
    /// as of its last snapshot.
    stored: i64,
    /// Restore failed: the node is stopping; do nothing.
    failed: bool,
    /// The epoch whose snapshot this twin owes (its barrier arrived and it
    /// is not encoded yet; 0: none). The worker encodes it before the twin's
    /// next input.
    pub(crate) owes: u64,
}

/// Work for a twin: readings, relayed values of related assets, and whether
/// a timer of it is due.
pub struct Apply {
    pub events: Vec<Event>,
    pub related: Vec<Relayed>,
    pub tick: bool,
    pub received_at: Instant,
    /// When the router took the chunk.
    pub routed_at: Instant,
}

/// Events applied (and how many of them were late) over a worker's
/// delivery: counted once per delivery, not once per twin.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub events: u64,
    pub late: u64,
    /// Readings older than the model's estimate (not taken into it).
    pub model_out_of_order: u64,
}

impl Tally {
    /// Adds the tally to the metrics.
    pub fn record(self) {
        if self.events > 0 {
            telemetry::events_applied(self.events, self.late, self.model_out_of_order);
        }
    }
}

thread_local! {
    /// The backup of the state a batch is applied to (one per worker thread).
    static SCRATCH: RefCell<Option<TwinState>> = const { RefCell::new(None) };
}

impl TwinActor {
    fn new(asset: Arc<str>, tcx: Arc<TypeContext>, shard: u32) -> TwinActor {
        TwinActor {
            state: TwinState::new(&tcx.model),
            asset,
            shard,
            tcx,
            armed: NO_TS,
            stored: NO_TS,
            failed: false,
            owes: 0,
        }
    }

    /// `on_start` hook: the twin of `asset`, restored from the store (lazy
    /// restore: on its first use). A damaged record is quarantined
    /// ([`Self::quarantine`]); a store that cannot be read, or a damaged
    /// record under `node.damaged_twin: stop`, stops the node (the error
    /// goes to the engine) and the twin then does nothing.
    pub fn start(asset: Arc<str>, tcx: Arc<TypeContext>, shard: u32) -> TwinActor {
        let mut twin = TwinActor::new(asset, tcx, shard);
        if let Err(e) = twin.restore() {
            tracing::error!(asset = %twin.asset, error = %e, "cannot restore twin");
            twin.failed = true;
            let _ = twin.tcx.cx.fatal.send(crate::pipeline::Fatal::new(e));
        }
        twin
    }

    /// `on_start` hook: lazy restore from the store.
    fn restore(&mut self) -> Result<(), EngineError> {
        let Some(bytes) = self.tcx.cx.store.get_twin(self.shard, &self.asset)? else {
            telemetry::twin_started("new");
            return Ok(());
        };
        telemetry::twin_started("store");
        let model = &self.tcx.model;
        let (state, notes) = match stored::restore(&self.tcx.cx.store, model, &bytes) {
            Ok(stored::Restored::State(state, notes)) => (state, notes),
            Ok(stored::Restored::OtherType { stored }) => {
                tracing::warn!(
                    asset = %self.asset,
                    %stored,
                    now = %model.name,
                    "asset changed type in the topology; its stored twin does not apply and starts fresh"
                );
                return Ok(());
            }
            Err(stored::RestoreError::Store(e)) => return Err(e.into()),
            Err(stored::RestoreError::Record(error)) => match self.quarantine(bytes, error)? {
                Some(rebuilt) => rebuilt,
                None => return Ok(()),
            },
        };
        if !notes.dropped.is_empty() {
            tracing::warn!(asset = %self.asset, dropped = ?notes.dropped, "restored twin: parts the topology no longer declares were dropped");
        }
        // Only the gauges: nothing transitioned.
        account(
            model,
            &TwinState::new(model),
            &state,
            state.sensors.stale() as i64,
            None,
        );
        self.state = state;
        // The node's timer index (the router's heap, or the store's deadline
        // index it reads as deadlines near) holds the stored deadline.
        if model.timers {
            self.stored = self.tcx.cx.store.get_timer(self.shard, &self.asset)?.unwrap_or(NO_TS);
            self.armed = self.stored;
        }
        Ok(())
    }

    /// The twin's stored record `bytes` cannot be read (`error`): its bytes
    /// go to the dead letters and the twin is rebuilt - from the changelog's
    /// last committed copy (a cluster node: the same state the record held,
    /// written back to the store), else from empty (`None`). Never misread,
    /// never silently dropped. The node stops instead under
    /// `node.damaged_twin: stop`, and for a record of a format version this
    /// build does not know (a newer build wrote it; it is left as it is).
    fn quarantine(
        &self,
        bytes: Vec<u8>,
        error: crate::store::envelope::EnvelopeError,
    ) -> Result<Option<(TwinState, record::RestoreNotes)>, EngineError> {
        let cx = &self.tcx.cx;
        let (asset, shard) = (self.asset.clone(), self.shard);
        let stop = |error| EngineError::Restore {
            asset: asset.to_string(),
            error,
        };
        let mut rebuilt = None;
        let mut why_empty = String::new();
        match (cx.damaged, &cx.rebuild) {
            // A record of a format this build does not know was written by
            // a newer build: not damage, and never replaced.
            _ if matches!(error, crate::store::envelope::EnvelopeError::UnknownVersion { .. }) => {
                return Err(stop(error))
            }
            (DamagedTwin::Stop, _) => return Err(stop(error)),
            (DamagedTwin::Changelog, Some(rebuild)) => match rebuild(shard, &asset) {
                Ok(Some((copy, _timer))) => match stored::restore(&cx.store, &self.tcx.model, &copy) {
                    Ok(stored::Restored::State(state, notes)) => {
                        cx.store.put_twin_raw(shard, &asset, &copy)?;
                        rebuilt = Some((state, notes));
                    }
                    Ok(stored::Restored::OtherType { stored }) => {
                        why_empty = format!(" (the changelog's copy is of type `{stored}`)")
                    }
                    Err(e) => why_empty = format!(" (the changelog's copy is unreadable too: {e})"),
                },
                Ok(None) => why_empty = " (the changelog holds no committed copy)".into(),
                // Starting from empty while a good copy may exist would
                // lose state: stop, so a restart tries again.
                Err(e) => {
                    return Err(EngineError::Aborted(format!(
                        "twin `{asset}` (shard {shard}): its stored record is unreadable ({error}) and the changelog to rebuild it from cannot be read: {e}"
                    )))
                }
            },
            (DamagedTwin::Changelog, None) => why_empty = " (no changelog to read: not running as a cluster member)".into(),
            (DamagedTwin::Empty, _) => {}
        }
        let from = if rebuilt.is_some() { "changelog" } else { "empty" };
        let message = format!(
            "twin `{asset}` (shard {shard}): its stored record is unreadable ({error}); quarantined here and rebuilt from {from}{why_empty}"
        );
        tracing::error!(asset = %asset, shard, from, error = %error, "damaged twin record quarantined (dead-lettered) and rebuilt");
        telemetry::twin_quarantined(from);
        telemetry::dead_lettered(STORE_ORIGIN, DeadReason::DamagedState.code(), 1);
        let letter = DeadLetter {
            origin: Origin {
                source: STORE_ORIGIN.into(),
                file: None,
                line: 0,
                offset: None,
                topic: None,
                partition: None,
            },
            reason: DeadReason::DamagedState,
            message,
            payload: bytes,
            key: Some(asset.as_bytes().to_vec()),
        };
        // Ahead of anything the twin does next: flushed before the
        // checkpoint that replaces the record.
        self.deliver(Vec::new(), vec![letter], None, None);
        Ok(rebuilt)
    }

    /// Applies `input` in place after backing the state up; if the model
    /// panics, the backup becomes the state again (the twin restarts from its
    /// last good state). The backup is a per-thread scratch, so this does not
    /// allocate, and each twin keeps its own allocations.
    fn apply_guarded(&mut self, input: Input<'_>, now: i64, out: &mut Vec<Output>) -> Result<(), String> {
        let mut backup = SCRATCH
            .with(|s| s.borrow_mut().take())
            .unwrap_or_else(|| TwinState::new(&self.tcx.model));
        let marks = self.state.back_up(&mut backup, SensorsBackup::of(&self.tcx.model));
        let mark = out.len();
        let (model, state) = (&self.tcx.model, &mut self.state);
        #[cfg(test)]
        let hook = self.tcx.cx.panic_hook.as_ref();
        let result = catch_unwind(AssertUnwindSafe(|| {
            apply(model, state, input, now, out);
            // After the batch changed the twin: the roll-back must undo it.
            #[cfg(test)]
            if let (Some(h), Input::Events(evs)) = (hook, input) {
                h.maybe_panic(evs);
            }
        }));
        let outcome = match result {
            Ok(()) => {
                let stale = self.state.keep(&backup, marks);
                account(&self.tcx.model, &backup, &self.state, stale, Some(now));
                Ok(())
            }
            Err(panic) => {
                self.state.roll_back(&mut backup, marks);
                out.truncate(mark);
                Err(panic_message(&panic))
            }
        };
        SCRATCH.with(|s| *s.borrow_mut() = Some(backup));
        outcome
    }

    /// Applies an input that is not an event batch (no single event to
    /// dead-letter), up to [`MAX_ATTEMPTS`] times while the model panics.
    fn apply_retrying(&mut self, input: Input<'_>, now: i64, out: &mut Vec<Output>, what: &str) {
        for attempt in 1..=MAX_ATTEMPTS {
            match self.apply_guarded(input, now, out) {
                Ok(()) => return,
                Err(msg) => {
                    telemetry::twin_restarted();
                    tracing::error!(asset = %self.asset, attempt, panic = %msg, "twin panicked on {what}");
                }
            }
        }
    }

    /// The router's timer for this twin may fire early (it is not moved
    /// later when readings arrive), never late: arm an earlier deadline, and
    /// after a tick the next one (or none).
    fn rearm(&mut self, ticked: bool) {
        let next = next_deadline(&self.tcx.model, &self.state);
        let rearm = match next {
            Some(at) => ticked || self.armed == NO_TS || at < self.armed,
            None => ticked && self.armed != NO_TS,
        };
        if !rearm {
            return;
        }
        self.armed = next.unwrap_or(NO_TS);
        if let Some(at) = next {
            let _ = self.tcx.cx.feedback.send(Feedback::Timer {
                asset: self.asset.clone(),
                at,
            });
        }
    }

    fn deliver(
        &self,
        outputs: Vec<Output>,
        dead_letters: Vec<DeadLetter>,
        permit: Option<&Permit>,
        seen: Option<Glance>,
    ) {
        self.deliver_with_events(outputs, dead_letters, Vec::new(), permit, seen);
    }

    /// Sends the outputs, dead letters and (for sinks that take `events`)
    /// the applied events of one input to the sinks, and tells watchers what
    /// the input changed since the twin looked as `seen` (from
    /// [`Self::glance`], taken before the input).
    fn deliver_with_events(
        &self,
        mut outputs: Vec<Output>,
        dead_letters: Vec<DeadLetter>,
        events: Vec<Event>,
        permit: Option<&Permit>,
        seen: Option<Glance>,
    ) {
        if let Some(before) = seen {
            self.tell_watchers(&before, &outputs);
        }
        // Relays are for the router (this node's followers) and, in a
        // cluster, for the relay sink (other nodes' followers).
        if self.tcx.model.relayed.iter().any(|r| *r) {
            let remote = self.tcx.cx.remote_relays;
            outputs.retain(|o| match o {
                Output::Relay { sensor, latest } => {
                    let _ = self.tcx.cx.feedback.send(Feedback::Relay {
                        asset: self.asset.clone(),
                        sensor: *sensor,
                        latest: *latest,
                    });
                    remote
                }
                _ => true,
            });
        }
        if outputs.is_empty() && dead_letters.is_empty() && events.is_empty() {
            return;
        }
        self.tcx.cx.sinks.deliver(OutputBatch {
            asset: Some(self.asset.clone()),
            model: Some(self.tcx.model.clone()),
            outputs,
            dead_letters,
            events,
            at_ms: now_ms(),
            produced: Instant::now(),
            permit: permit.cloned(),
        });
    }

    /// After a panic on a batch: retry event by event from the last good
    /// state; returns the dead letters of the events that panicked
    /// [`MAX_ATTEMPTS`] times, with their index in `events`.
    fn recover(
        &mut self,
        events: &[Event],
        first: String,
        now: i64,
        out: &mut Vec<Output>,
    ) -> Vec<(usize, DeadLetter)> {
        telemetry::twin_restarted();
        tracing::warn!(asset = %self.asset, events = events.len(), panic = %first,
            "twin panicked; restarted from its last good state, retrying the batch one event at a time");
        let mut dead = Vec::new();
        for (i, e) in events.iter().enumerate() {
            // The batch attempt was the first try of every event in it.
            let mut attempts = 1;
            loop {
                match self.apply_guarded(Input::Events(std::slice::from_ref(e)), now, out) {
                    Ok(()) => break,
                    Err(msg) => {
                        attempts += 1;
                        telemetry::twin_restarted();
                        if attempts >= MAX_ATTEMPTS {
                            tracing::error!(asset = %self.asset, sensor = e.sensor, ts = e.ts, panic = %msg,
                                "event crashed the twin {MAX_ATTEMPTS} times; dead-lettered");
                            dead.push((i, self.poison_letter(e, &msg)));
                            break;
                        }
                    }
                }
            }
        }
        dead
    }

    fn poison_letter(&self, e: &Event, msg: &str) -> DeadLetter {
        let source = self
            .tcx
            .cx
            .source_names
            .get(e.source as usize)
            .cloned()
            .unwrap_or_else(|| "?".into());
        telemetry::dead_lettered(&source, DeadReason::Poison.code(), 1);
        let payload = serde_json::json!({
            "asset": &*self.asset,
            "sensor": &*self.tcx.model.sensors[e.sensor as usize],
            "ts": e.ts,
            "value": e.value,
        });
        DeadLetter {
            origin: Origin {
                source,
                file: None,
                line: e.origin,
                offset: None,
                topic: None,
                partition: None,
            },
            reason: DeadReason::Poison,
            message: format!("the twin panicked on this event {MAX_ATTEMPTS} times: {msg}"),
            payload: payload.to_string().into_bytes(),
            key: None,
        }
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

impl TwinActor {
    /// A batch of work (readings, related values, a due timer): applied in
    /// order, outputs to the sinks with the chunk's `permit`. Adds the events
    /// it applied to `tally` (the worker counts them once per delivery).
    pub fn apply(&mut self, mut msg: Apply, permit: &Permit, tally: &mut Tally) {
        if self.failed {
            return;
        }
        let before = self.glance();
        let now = now_ms();
        let mut out = Vec::new();
        let mut dead = Vec::new();
        let mut poisoned = Vec::new();
        if !msg.events.is_empty() {
            let late_before = self.state.stats.late;
            let ooo_before = self.state.filter().map_or(0, |f| f.out_of_order);
            if let Err(first) = self.apply_guarded(Input::Events(&msg.events), now, &mut out) {
                (poisoned, dead) = self.recover(&msg.events, first, now, &mut out).into_iter().unzip();
            }
            tally.events += (msg.events.len() - poisoned.len()) as u64;
            tally.late += self.state.stats.late - late_before;
            // After a roll-back the filter holds fewer: never negative.
            tally.model_out_of_order += self
                .state
                .filter()
                .map_or(0, |f| f.out_of_order)
                .saturating_sub(ooo_before);
            telemetry::apply_latency(msg.received_at, msg.routed_at);
            telemetry::sync_lag(self.state.sync_lag_ms);
        }
        if !msg.related.is_empty() {
            self.apply_retrying(Input::Related(&msg.related), now, &mut out, "values of related assets");
        }
        if msg.tick {
            self.apply_retrying(Input::Tick, now, &mut out, "a timer");
        }
        if self.tcx.model.timers {
            self.rearm(msg.tick);
        }
        // Forwarded (an edge's uplink): every event applied, in order; one
        // that crashed the twin is a dead letter instead.
        let events = if self.tcx.cx.forward_events {
            let mut events = std::mem::take(&mut msg.events);
            for i in poisoned.into_iter().rev() {
                events.remove(i);
            }
            events
        } else {
            Vec::new()
        };
        self.deliver_with_events(out, dead, events, Some(permit), before);
    }

    /// While anyone watches: how the twin looks before an input.
    pub(crate) fn glance(&self) -> Option<Glance> {
        self.tcx
            .cx
            .feed
            .recording()
            .then(|| view::glance(&self.tcx.model, &self.state))
    }

    /// Tells watchers what the input that produced `out` changed since
    /// `before`.
    fn tell_watchers(&self, before: &Glance, out: &[Output]) {
        let changes = view::changes(&self.tcx.model, &self.asset, before, &self.state, out);
        if changes.is_empty() {
            return;
        }
        self.tcx.cx.feed.publish(changes.into_iter().map(|c| {
            // Views of plain data: serialising them cannot fail.
            (c.kind(), serde_json::to_string(&c).unwrap_or_default())
        }));
    }

    /// The source has no more data: every open window closes.
    pub fn end_of_input(&mut self, permit: &Permit) {
        if self.failed {
            return;
        }
        let before = self.glance();
        let mut out = Vec::new();
        self.apply_retrying(
            Input::EndOfInput,
            now_ms(),
            &mut out,
            "closing its windows at end of input",
        );
        self.deliver(out, Vec::new(), Some(permit), before);
    }
}

impl TwinActor {
    /// `handle_checkpoint` hook: the twin's part of a checkpoint. Encodes its
    /// record with `record`, hands the windows closed since its last snapshot
    /// to `digest`, and says how its timer changed (`None`: unchanged). The
    /// worker adds the part to the epoch. `Err`: the twin has no state to
    /// give (its restore failed and the node is stopping); the epoch must not
    /// commit.
    pub fn snapshot(
        &mut self,
        record: &mut record::Encoder,
        digest: impl FnOnce(&[ClosedDigest]),
        history: &mut history::Part,
    ) -> Result<Option<TimerChange>, Unrestored> {
        if self.failed {
            return Err(Unrestored);
        }
        // Windows closed since the last snapshot go into the same checkpoint,
        // and so does what it logged for history.
        self.state.take_digest(digest);
        history.ops.clear();
        history.max_ts = NO_TS;
        let (m, asset) = (&self.tcx.model, &self.asset);
        self.state.take_history(|log| history::fold(m, asset, log, history));
        // The timer goes with the record when it changed (into the store's
        // deadline index), so a restarted node wakes the twin when it is due
        // without reading every record. A cluster node's changelog record
        // carries the timer every time.
        let set = |at: i64| (at != NO_TS).then_some(at);
        let change = TimerChange {
            old: set(self.stored),
            new: set(self.armed),
        };
        let always = self.tcx.cx.changelog && self.tcx.model.timers;
        let timer = (change.old != change.new || always).then_some(change);
        self.stored = self.armed;
        // A node without a changelog (which takes whole records) stores a
        // many-sensor twin in parts, merging in only the sensors that
        // changed when they are few (the marks matter to no other record).
        if !self.tcx.cx.changelog && record::in_parts(m) {
            let changed = self.state.sensors.take_changed();
            let operand = record::operand_pays(m, changed).then_some(changed);
            record.encode_parts(m, &self.state, operand);
        } else {
            record.encode(m, &self.state);
        }
        Ok(timer)
    }

    pub fn asset(&self) -> &Arc<str> {
        &self.asset
    }

    pub fn shard(&self) -> u32 {
        self.shard
    }
}

/// A twin whose restore failed has no part to give a checkpoint.
#[derive(Debug)]
pub struct Unrestored;

/// A twin actor lives in one allocation of its worker (a boxed slot); its
/// size is most of a twin's fixed memory (docs/decisions.md "Memory per
/// twin"). Adding a field to `TwinActor` or `TwinState` must either fit or
/// be a deliberate choice.
#[cfg(test)]
mod footprint {
    #[test]
    fn a_twin_actor_stays_within_224_bytes() {
        let size = std::mem::size_of::<super::TwinActor>();
        assert!(
            size <= 224,
            "TwinActor is {size} B: more than the 224 B a twin's slot allots it"
        );
    }
}
