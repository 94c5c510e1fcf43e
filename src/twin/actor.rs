//! The asset actor: owns one twin and all its IO.
//!
//! A twin actor is *hosted* by the worker of its thread ([`crate::engine::worker`]):
//! the worker is its mailbox and scheduler, and hands it its messages in
//! order by calling the methods here (`apply`, `answer`, `snapshot`,
//! `end_of_input`). A twin keeps the actor's contract - private state, one
//! message at a time, in arrival order, outputs as messages - without a task
//! and a mailbox of its own (~820 bytes a twin, and a wake-up per batch; see
//! ARCHITECTURE.md "Hosted twin actors").
//!
//! * **Restore** ([`TwinActor::start`]): the twin is read from the store the
//!   first time the asset is seen (lazy restore); a record this build cannot
//!   read stops the node with a clear error instead of being guessed at.
//! * **Apply**: the state is backed up (into a per-thread scratch, so no
//!   allocation in steady state; the replay digest, which applying only
//!   appends to, by its length) and each batch applied in place. If the
//!   model panics, the possibly half-updated state is replaced by the backup:
//!   the twin restarts from its last good state, which equals its last
//!   snapshot plus the replay of every message since (the model is
//!   deterministic), and the batch is retried one event at a time. An event that panics [`MAX_ATTEMPTS`] times goes to the
//!   dead-letter sink and the twin carries on (poison-message guard).
//! * **Snapshot** (checkpoint barrier): the twin encodes itself into the
//!   epoch. Barriers follow the batches in the worker's mailbox, so a
//!   snapshot holds exactly the events routed before the barrier; the worker
//!   may encode a twin later, but always before the twin's next input.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use super::commands::Phase;
use super::model::{apply, next_deadline, Event, Input, Output, Quality, Relayed, Transition, TwinState, NO_TS};
use super::record;
use super::schema::TypeModel;
use super::view::{self, AlertView, CommandView, Surveyed, TwinView};
use crate::engine::checkpoint::Epoch;
use crate::engine::query::{AckError, CommandError, Gather};
use crate::engine::router::Feedback;
use crate::engine::EngineError;
use crate::pipeline::flow::Permit;
use crate::pipeline::now_ms;
use crate::pipeline::{DeadLetter, DeadReason, Origin, OutputBatch};
use crate::sink::SinkHub;
use crate::store::{Store, TimerChange};
use crate::telemetry;

/// Attempts at one event before it is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 3;

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
    /// Test hook: the model panics on an event with this value.
    #[cfg(test)]
    pub panic_hook: Option<tests::PanicHook>,
}

/// What every twin of one asset type shares: its model and the engine's
/// context, behind one pointer (the actor is kept small, see
/// ARCHITECTURE.md "Memory per twin").
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
}

/// Events applied (and how many of them were late) over a worker's
/// delivery: counted once per delivery, not once per twin.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub events: u64,
    pub late: u64,
}

impl Tally {
    /// Adds the tally to the metrics.
    pub fn record(self) {
        if self.events > 0 {
            telemetry::events_applied(self.events, self.late);
        }
    }
}

/// A question from the HTTP API, answered from the twin's own state.
pub enum Question {
    View(tokio::sync::oneshot::Sender<TwinView>),
    Survey(Arc<Gather<Surveyed>>),
    /// Acknowledge alert `seq` of rule `rule`.
    Ack {
        rule: String,
        seq: u32,
        reply: tokio::sync::oneshot::Sender<Result<AlertView, AckError>>,
    },
    /// Send command `command` = `value` (idempotent by `key`).
    Command {
        command: String,
        value: f64,
        key: String,
        reply: tokio::sync::oneshot::Sender<Result<(CommandView, bool), CommandError>>,
    },
}

thread_local! {
    /// The backup of the state a batch is applied to (one per worker thread).
    static SCRATCH: RefCell<Option<TwinState>> = const { RefCell::new(None) };
    /// The buffer snapshots are encoded into (one per worker thread).
    static RECORD: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
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
    /// restore: on its first use). A record it cannot restore stops the
    /// node (the error goes to the engine); the twin then does nothing.
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
        let (state, notes) = match record::restore(&self.tcx.cx.store, model, &bytes) {
            Ok(record::Restored::State(state, notes)) => (state, notes),
            Ok(record::Restored::OtherType { stored }) => {
                tracing::warn!(
                    asset = %self.asset,
                    %stored,
                    now = %model.name,
                    "asset changed type in the topology; its stored twin does not apply and starts fresh"
                );
                return Ok(());
            }
            Err(record::RestoreError::Store(e)) => return Err(e.into()),
            Err(record::RestoreError::Record(error)) => {
                return Err(EngineError::Restore {
                    asset: self.asset.to_string(),
                    error,
                })
            }
        };
        if !notes.dropped.is_empty() {
            tracing::warn!(asset = %self.asset, dropped = ?notes.dropped, "restored twin: parts the topology no longer declares were dropped");
        }
        // Only the gauges: nothing transitioned.
        account(model, &TwinState::new(model), &state, None);
        self.state = state;
        // The node's timer index (the router's heap, or the store's deadline
        // index it reads as deadlines near) holds the stored deadline.
        if model.timers {
            self.stored = self.tcx.cx.store.get_timer(self.shard, &self.asset)?.unwrap_or(NO_TS);
            self.armed = self.stored;
        }
        Ok(())
    }

    /// Applies `input` in place after backing the state up; if the model
    /// panics, the backup becomes the state again (the twin restarts from its
    /// last good state). The backup is a per-thread scratch, so this does not
    /// allocate, and each twin keeps its own allocations.
    fn apply_guarded(&mut self, input: Input<'_>, now: i64, out: &mut Vec<Output>) -> Result<(), String> {
        let mut backup = SCRATCH
            .with(|s| s.borrow_mut().take())
            .unwrap_or_else(|| TwinState::new(&self.tcx.model));
        let digest_len = self.state.back_up(&mut backup);
        let mark = out.len();
        let (model, state) = (&self.tcx.model, &mut self.state);
        #[cfg(test)]
        let hook = self.tcx.cx.panic_hook.as_ref();
        let result = catch_unwind(AssertUnwindSafe(|| {
            #[cfg(test)]
            if let (Some(h), Input::Events(evs)) = (hook, input) {
                h.maybe_panic(evs);
            }
            apply(model, state, input, now, out);
        }));
        let outcome = match result {
            Ok(()) => {
                account(&self.tcx.model, &backup, &self.state, Some(now));
                Ok(())
            }
            Err(panic) => {
                self.state.roll_back(&mut backup, digest_len);
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

    fn deliver(&self, outputs: Vec<Output>, dead_letters: Vec<DeadLetter>, permit: Option<&Permit>) {
        self.deliver_with_events(outputs, dead_letters, Vec::new(), permit);
    }

    /// Sends the outputs, dead letters and (for sinks that take `events`)
    /// the applied events of one input to the sinks.
    fn deliver_with_events(
        &self,
        mut outputs: Vec<Output>,
        dead_letters: Vec<DeadLetter>,
        events: Vec<Event>,
        permit: Option<&Permit>,
    ) {
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

/// Reports what changed between `before` and `after` to the node-wide
/// gauges and counters: stale sensors, active alerts by severity, alert
/// transitions and the end-to-end latency of raised alerts (a few entries
/// per twin, compared once per batch). Without `now` (a restore) only the
/// gauges move.
fn account(m: &TypeModel, before: &TwinState, after: &TwinState, now: Option<i64>) {
    let stale = |st: &TwinState| st.sensors.iter().filter(|s| s.quality == Quality::Stale).count() as i64;
    telemetry::sensors_stale(stale(after) - stale(before));
    for (r, (a, b)) in before.alerts.iter().zip(after.alerts.iter()).enumerate() {
        if a == b {
            continue;
        }
        let severity = m.rules[r].severity.name();
        telemetry::alerts_active(severity, i64::from(b.active) - i64::from(a.active));
        let Some(now) = now else { continue };
        if b.seq != a.seq && b.active {
            telemetry::alert_transition(severity, Transition::Raised.name());
            telemetry::alert_latency((now - b.since_ts) as f64 / 1000.0);
        }
        if b.acked && !a.acked && b.seq == a.seq {
            telemetry::alert_transition(severity, Transition::Acknowledged.name());
        }
        if a.active && (!b.active || b.seq != a.seq) {
            telemetry::alert_transition(severity, Transition::Cleared.name());
        }
    }
    if let (Some(a), Some(b)) = (before.commands(), after.commands()) {
        if a != b {
            telemetry::commands_pending(b.count(Phase::Pending) as i64 - a.count(Phase::Pending) as i64);
            if now.is_some() {
                for c in &b.log {
                    match a.log.iter().find(|o| o.def == c.def && o.seq == c.seq) {
                        None => {
                            telemetry::commands("issued", 1);
                            if c.phase != Phase::Pending {
                                telemetry::commands(c.phase.name(), 1);
                            }
                        }
                        Some(o) if o.phase == Phase::Pending && c.phase != Phase::Pending => {
                            telemetry::commands(c.phase.name(), 1)
                        }
                        Some(_) => {}
                    }
                }
            }
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
        let now = now_ms();
        let mut out = Vec::new();
        let mut dead = Vec::new();
        let mut poisoned = Vec::new();
        if !msg.events.is_empty() {
            let late_before = self.state.stats.late;
            if let Err(first) = self.apply_guarded(Input::Events(&msg.events), now, &mut out) {
                (poisoned, dead) = self.recover(&msg.events, first, now, &mut out).into_iter().unzip();
            }
            tally.events += (msg.events.len() - poisoned.len()) as u64;
            tally.late += self.state.stats.late - late_before;
            telemetry::apply_latency(msg.received_at.elapsed().as_secs_f64());
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
        self.deliver_with_events(out, dead, events, Some(permit));
    }

    /// The source has no more data: every open window closes.
    pub fn end_of_input(&mut self, permit: &Permit) {
        if self.failed {
            return;
        }
        let mut out = Vec::new();
        self.apply_retrying(
            Input::EndOfInput,
            now_ms(),
            &mut out,
            "closing its windows at end of input",
        );
        self.deliver(out, Vec::new(), Some(permit));
    }
}

impl TwinActor {
    /// Acknowledges alert `seq` of rule `rule` (idempotent: acknowledging an
    /// acknowledged alert again answers the same).
    fn acknowledge(&mut self, rule: &str, seq: u32) -> Result<AlertView, AckError> {
        let model = self.tcx.model.clone();
        let id = format!("{}/{rule}/{seq}", self.asset);
        let Some(r) = model.rules.iter().position(|d| &*d.name == rule) else {
            return Err(AckError::NoSuchRule {
                asset_type: model.name.to_string(),
                rule: rule.to_string(),
            });
        };
        let a = self.state.alerts[r];
        if a.seq == 0 {
            return Err(AckError::NeverRaised { id });
        }
        if !a.active || a.seq != seq {
            let current = format!(
                "{}/{rule}/{} ({})",
                self.asset,
                a.seq,
                if a.active { "active" } else { "cleared" }
            );
            return Err(AckError::NotActive { id, current });
        }
        if !a.acked {
            let mut out = Vec::new();
            let input = Input::Ack { rule: r as u16, seq };
            self.apply_retrying(input, now_ms(), &mut out, "acknowledging an alert");
            self.deliver(out, Vec::new(), None);
        }
        view::alerts(&model, &self.asset, &self.state)
            .into_iter()
            .find(|v| v.rule == rule)
            .ok_or(AckError::NeverRaised { id })
    }
}

impl TwinActor {
    /// Issues command `name` = `value` under idempotency key `key`; answers
    /// the command and whether it is new (a repeated key answers the command
    /// it created, if the request is the same).
    fn command(&mut self, name: &str, value: f64, key: &str) -> Result<(CommandView, bool), CommandError> {
        let model = self.tcx.model.clone();
        let Some(def) = model.commands.iter().position(|c| &*c.name == name) else {
            return Err(CommandError::NoSuchCommand {
                asset_type: model.name.to_string(),
                command: name.to_string(),
                known: model.commands.iter().map(|c| c.name.to_string()).collect(),
            });
        };
        let c = &model.commands[def];
        if c.min.is_some_and(|lo| value < lo) || c.max.is_some_and(|hi| value > hi) {
            return Err(CommandError::OutOfRange {
                command: name.to_string(),
                value,
                min: c.min,
                max: c.max,
            });
        }
        let table = self.state.commands().expect("a type with commands has a command table");
        if let Some(existing) = table.by_key(key) {
            let view = view::command(&model, &self.asset, existing);
            return if existing.def as usize == def && existing.value == value {
                Ok((view, false))
            } else {
                Err(CommandError::KeyReused {
                    key: key.to_string(),
                    existing: Box::new(view),
                })
            };
        }
        let mut out = Vec::new();
        let input = Input::Command {
            def: def as u16,
            value,
            key,
        };
        if let Err(msg) = self.apply_guarded(input, now_ms(), &mut out) {
            telemetry::twin_restarted();
            tracing::error!(asset = %self.asset, panic = %msg, "twin panicked issuing a command");
            return Err(CommandError::Failed(msg));
        }
        self.rearm(false);
        self.deliver(out, Vec::new(), None);
        let table = self.state.commands().expect("checked above");
        let issued = table.by_key(key).expect("the command just issued");
        Ok((view::command(&model, &self.asset, issued), true))
    }
}

impl TwinActor {
    /// Answers a question of the HTTP API from the twin's own state.
    pub fn answer(&mut self, msg: Question) {
        // A twin whose restore failed has no state to show; the node is stopping.
        if self.failed {
            return;
        }
        let m = &self.tcx.model;
        match msg {
            Question::View(reply) => {
                let _ = reply.send(view::twin(m, &self.asset, &self.state, &self.tcx.cx.source_names));
            }
            Question::Survey(gather) => gather.add(view::survey(m, &self.asset, &self.state)),
            Question::Ack { rule, seq, reply } => {
                let _ = reply.send(self.acknowledge(&rule, seq));
            }
            Question::Command {
                command,
                value,
                key,
                reply,
            } => {
                let _ = reply.send(self.command(&command, value, &key));
            }
        }
    }
}

impl TwinActor {
    /// `handle_checkpoint` hook: the twin's part of `epoch` (its record and,
    /// when it changed, its timer).
    pub fn snapshot(&mut self, epoch: &Arc<Epoch>) {
        if self.failed {
            epoch.abort();
            return;
        }
        // Windows closed since the last snapshot go into the same checkpoint.
        self.state.take_digest(|d| epoch.add_digest(d));
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
        RECORD.with(|buf| {
            let mut buf = buf.borrow_mut();
            record::encode_into(&self.tcx.model, &self.state, &mut buf);
            epoch.add(self.shard, &self.asset, &buf, timer);
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::engine::checkpoint::{writer_loop, Durable};
    use crate::pipeline::flow::Flow;
    use crate::twin::schema::{Model, OutputMask};

    /// Makes the model panic on events with `value`, `remaining` times.
    pub struct PanicHook {
        pub value: f64,
        pub remaining: AtomicU32,
    }

    impl PanicHook {
        pub(super) fn maybe_panic(&self, events: &[Event]) {
            if events.iter().any(|e| e.value == self.value)
                && self
                    .remaining
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1))
                    .is_ok()
            {
                panic!("test hook: poison value {}", self.value);
            }
        }
    }

    fn ev(ts: i64, value: f64, origin: u64) -> Event {
        Event {
            ts,
            value,
            sensor: 0,
            source: 0,
            origin,
            redelivered: false,
        }
    }

    /// Runs one twin through `events` with a hook that panics up to `panics`
    /// times, snapshots it and returns the stored record, the dead letters
    /// written and how many panics happened.
    fn run_twin(events: Vec<Event>, panics: u32) -> (record::TwinRecord, Vec<serde_json::Value>, u32) {
        let dir = tempfile::tempdir().unwrap();
        let topo = crate::topology::parse(
            Path::new("t.yaml"),
            "asset_types: { pump: { sensors: { vibration: { unit: mm/s } } } }\n\
             assets: [{ id: p1, type: pump }]\n\
             sources: [{ name: f, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]\n\
             windows: [{ name: w1s, size: 1s }]\n",
        )
        .unwrap();
        // With the replay digest, as a replay keeps it.
        let model = Model::build(&topo, OutputMask::all(), true).types[0].clone();
        let store = Arc::new(Store::open(&dir.path().join("db"), 1).unwrap());
        let system = actix::System::new();
        let (dead_path, record, hook_left, tallied) = system.block_on(async {
            let sink_arbiter = actix::Arbiter::new();
            let (fatal, _fatal_rx) = crossbeam_channel::unbounded();
            let sinks = SinkHub::start(
                &[],
                &crate::sink::SinkContext {
                    state_dir: dir.path(),
                    arbiter: &sink_arbiter.handle(),
                    store: store.clone(),
                    fatal: fatal.clone(),
                    node: "test",
                    sources: Arc::from(vec![Arc::<str>::from("f")]),
                    relays: None,
                },
            )
            .unwrap();
            let hook = PanicHook {
                value: 666.0,
                remaining: AtomicU32::new(panics),
            };
            let cx = Arc::new(TwinContext {
                store: store.clone(),
                changelog: false,
                sinks: sinks.clone(),
                fatal: fatal.clone(),
                source_names: vec!["f".into()],
                forward_events: false,
                remote_relays: false,
                feedback: crossbeam_channel::unbounded().0,
                panic_hook: Some(hook),
            });
            let mut twin = TwinActor::start("p1".into(), Arc::new(TypeContext { model, cx: cx.clone() }), 0);
            let flow = Flow::new(4);
            let apply = Apply {
                events,
                related: Vec::new(),
                tick: false,
                received_at: Instant::now(),
            };
            let mut tally = Tally::default();
            twin.apply(apply, &flow.acquire().unwrap(), &mut tally);
            let tallied = tally.events;
            // Checkpoint through the real writer: sinks flushed, then committed.
            let (epoch_tx, epoch_rx) = crossbeam_channel::unbounded();
            let (durable_tx, durable_rx) = crossbeam_channel::unbounded::<Durable>();
            let (s2, k2) = (store.clone(), sinks.clone());
            let writer = std::thread::spawn(move || writer_loop(epoch_rx, None, s2, k2, true, durable_tx, fatal));
            let ep = Epoch::new(1, 1, &[], "digest/t".into(), store.clone(), epoch_tx, None);
            twin.snapshot(&ep);
            ep.arrive();
            drop(ep);
            let d = durable_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("checkpoint durable");
            assert_eq!(d.twins, 1);
            let left = cx.panic_hook.as_ref().unwrap().remaining.load(Ordering::SeqCst);
            // Join every thread holding the store before it is closed.
            drop(twin);
            sink_arbiter.stop();
            sink_arbiter.join().unwrap();
            writer.join().unwrap();
            let bytes = store.get_twin(0, "p1").unwrap().expect("twin stored");
            (
                dir.path().join("dead_letters.jsonl"),
                record::decode(&bytes).unwrap(),
                left,
                tallied,
            )
        });
        assert_eq!(tallied, record.stats.events, "the tally counts the events applied");
        let dead = std::fs::read_to_string(dead_path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (record, dead, panics - hook_left)
    }

    #[test]
    fn a_transient_panic_restarts_the_twin_and_loses_nothing() {
        let (rec, dead, panicked) = run_twin(vec![ev(100, 1.0, 1), ev(200, 666.0, 2), ev(300, 2.0, 3)], 1);
        assert_eq!(panicked, 1);
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(rec.stats.events, 3, "every event applied exactly once");
        assert_eq!(rec.sensors[0].value, 2.0, "in arrival order");
        assert_eq!(rec.open[0].acc.count, 3);
        assert_eq!(rec.open[0].acc.sum, 669.0);
    }

    #[test]
    fn an_event_that_panics_three_times_is_dead_lettered_and_the_rest_applied() {
        let (rec, dead, panicked) = run_twin(vec![ev(100, 1.0, 1), ev(200, 666.0, 2), ev(300, 2.0, 3)], u32::MAX);
        assert_eq!(
            panicked, MAX_ATTEMPTS,
            "the batch, then the event alone until the limit"
        );
        assert_eq!(rec.stats.events, 2, "the poison event is not applied");
        assert_eq!(rec.open[0].acc.sum, 3.0);
        assert_eq!(rec.sensors[0].value, 2.0);
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0]["reason"], "poison");
        assert_eq!(dead[0]["origin"]["line"], 2);
        assert!(dead[0]["message"].as_str().unwrap().contains("3 times"), "{}", dead[0]);
        let payload: serde_json::Value = serde_json::from_str(dead[0]["payload"].as_str().unwrap()).unwrap();
        assert_eq!(payload["value"], 666.0);
        assert_eq!(payload["asset"], "p1");
    }
}

/// A twin actor lives in one allocation of its worker (a boxed slot); its
/// size is most of a twin's fixed memory (ARCHITECTURE.md "Memory per
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
