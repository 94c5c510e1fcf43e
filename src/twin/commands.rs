//! Actuation commands in the twin model: pure, like the rest of
//! [`super::model`] (`now`, processing time, is supplied by the caller).
//!
//! A command sets the twin's *desired* value of one of its type's commands
//! and goes out through the command sinks with a per-command sequence
//! number `seq` (its id is `asset/command/seq`). It stays **pending** until
//!
//! * a reading of the command's `reported` sensor lies within `tolerance`
//!   of the desired value (the device reports the commanded state), or
//! * a reading of its `ack_sensor` equals `seq` (the device's ack message,
//!   mapped to that sensor by a source), -> **acked**; `-seq` -> **rejected**;
//!
//! or its deadline (issue time + `timeout`) passes -> **failed**: the
//! configured rollback value is sent (as a command of its own, which is not
//! rolled back again) and the command's `command-failed:<name>` alert is
//! raised. A rejected command raises the alert too; the next acknowledged
//! command of that name clears it. A newer command of the same name
//! supersedes a pending one (the latest desired value wins).
//!
//! The twin keeps every pending command and the [`KEEP_FINISHED`] most
//! recent finished ones: that is also the window in which a repeated
//! idempotency key returns the command it created.

use serde::{Deserialize, Serialize};

use super::model::{history, set_alert, Output, TwinState, NO_TS};
use super::schema::TypeModel;
use crate::topology::OutputKind;

/// Finished commands a twin remembers (for the API and idempotency keys).
pub const KEEP_FINISHED: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Pending,
    Acked,
    /// Not acknowledged before its deadline.
    Failed,
    /// The device answered `-seq`.
    Rejected,
    /// A newer command of the same name replaced it while pending.
    Superseded,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Acked => "acked",
            Phase::Failed => "failed",
            Phase::Rejected => "rejected",
            Phase::Superseded => "superseded",
        }
    }
}

/// Who sent a command.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Origin {
    /// `POST /twins/{id}/commands`.
    Api,
    /// Rule `rule`'s action when its alert `alert_seq` was raised (or
    /// cleared, with `on_clear`).
    Rule { rule: u16, alert_seq: u32, cleared: bool },
    /// The rollback of failed command `of`.
    Rollback { of: u32 },
}

/// One command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Index into [`TypeModel::commands`].
    pub def: u16,
    pub seq: u32,
    pub value: f64,
    /// The idempotency key it was created with (API commands).
    pub key: Option<String>,
    pub origin: Origin,
    /// Processing time it was issued and by when it must be acknowledged.
    pub issued_ms: i64,
    pub deadline_ms: i64,
    pub phase: Phase,
    /// Processing time it left `pending` (`NO_TS` while pending).
    pub finished_ms: i64,
}

/// A twin's commands.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Commands {
    /// Per command of the type: the desired value (`NaN`: none yet).
    pub desired: Box<[f64]>,
    /// Per command of the type: the last `seq` issued.
    pub seq: Box<[u32]>,
    /// Pending commands and the most recent finished ones, in issue order.
    pub log: Vec<Command>,
}

impl Commands {
    pub fn new(m: &TypeModel) -> Commands {
        Commands {
            desired: vec![f64::NAN; m.commands.len()].into_boxed_slice(),
            seq: vec![0; m.commands.len()].into_boxed_slice(),
            log: Vec::new(),
        }
    }

    /// The command an idempotency key created, while the twin remembers it.
    pub fn by_key(&self, key: &str) -> Option<&Command> {
        self.log.iter().rev().find(|c| c.key.as_deref() == Some(key))
    }

    pub fn pending(&self, def: u16) -> Option<&Command> {
        self.log.iter().find(|c| c.def == def && c.phase == Phase::Pending)
    }

    pub fn count(&self, phase: Phase) -> usize {
        self.log.iter().filter(|c| c.phase == phase).count()
    }
}

/// Whether the type keeps its commands in history.
fn logs_history(m: &TypeModel) -> bool {
    m.history.as_ref().is_some_and(|h| h.events_keep_ms.is_some())
}

fn table(st: &mut TwinState) -> &mut Commands {
    st.ext
        .as_deref_mut()
        .and_then(|x| x.commands.as_deref_mut())
        .expect("a type with commands gives its twins a command table")
}

/// A command to issue: command `def` of the type = `value`.
#[derive(Debug, Clone, Copy)]
pub struct Order<'a> {
    pub def: u16,
    pub value: f64,
    /// The idempotency key (API commands).
    pub key: Option<&'a str>,
    pub origin: Origin,
}

/// Issues `order`; returns its `seq`.
pub fn issue(m: &TypeModel, st: &mut TwinState, order: Order<'_>, now: i64, out: &mut Vec<Output>) -> u32 {
    let Order {
        def,
        value,
        key,
        origin,
    } = order;
    let timeout = m.commands[def as usize].timeout_ms;
    let logs = logs_history(m);
    let t = table(st);
    let mut superseded = Vec::new();
    for c in t.log.iter_mut().filter(|c| c.def == def && c.phase == Phase::Pending) {
        c.phase = Phase::Superseded;
        c.finished_ms = now;
        if logs {
            superseded.push(c.clone());
        }
    }
    t.seq[def as usize] += 1;
    let seq = t.seq[def as usize];
    t.desired[def as usize] = value;
    let command = Command {
        def,
        seq,
        value,
        key: key.map(str::to_string),
        origin,
        issued_ms: now,
        deadline_ms: now.saturating_add(timeout),
        phase: Phase::Pending,
        finished_ms: NO_TS,
    };
    if logs {
        superseded.push(command.clone());
    }
    t.log.push(command);
    // Forget the oldest finished commands beyond the bound.
    let finished = t.log.iter().filter(|c| c.phase != Phase::Pending).count();
    let mut excess = finished.saturating_sub(KEEP_FINISHED);
    t.log.retain(|c| {
        if excess > 0 && c.phase != Phase::Pending {
            excess -= 1;
            false
        } else {
            true
        }
    });
    for c in &superseded {
        history::on_command(st, c);
    }
    if m.emit.has(OutputKind::Commands) {
        out.push(Output::Actuate {
            def,
            seq,
            value,
            origin,
        });
    }
    seq
}

/// A reading of sensor `s` (value `v`): acknowledges what it confirms.
pub fn on_reading(m: &TypeModel, st: &mut TwinState, s: u16, v: f64, now: i64, out: &mut Vec<Output>) {
    for &def in &m.commands_by_sensor[s as usize] {
        let c = &m.commands[def as usize];
        let Some(pending) = table(st).pending(def).cloned() else {
            continue;
        };
        let outcome = if c.ack_sensor == Some(s) && v == f64::from(pending.seq) {
            Some(Phase::Acked)
        } else if c.ack_sensor == Some(s) && v == -f64::from(pending.seq) {
            Some(Phase::Rejected)
        } else if c.reported == Some(s) && (v - pending.value).abs() <= c.tolerance {
            Some(Phase::Acked)
        } else {
            None
        };
        if let Some(phase) = outcome {
            finish(m, st, def, pending.seq, phase, now, out);
        }
    }
}

fn finish(m: &TypeModel, st: &mut TwinState, def: u16, seq: u32, phase: Phase, now: i64, out: &mut Vec<Output>) {
    let Some(c) = table(st)
        .log
        .iter_mut()
        .find(|c| c.def == def && c.seq == seq && c.phase == Phase::Pending)
    else {
        return;
    };
    c.phase = phase;
    c.finished_ms = now;
    let origin = c.origin;
    if logs_history(m) {
        let c = c.clone();
        history::on_command(st, &c);
    }
    let alert = m.commands[def as usize].failed_alert;
    match phase {
        Phase::Acked => set_alert(m, st, alert, false, now, out),
        Phase::Failed | Phase::Rejected => {
            set_alert(m, st, alert, true, now, out);
            // A failed command is rolled back; a rollback is not.
            if let (Phase::Failed, Some(v), false) = (
                phase,
                m.commands[def as usize].rollback,
                matches!(origin, Origin::Rollback { .. }),
            ) {
                let rollback = Order {
                    def,
                    value: v,
                    key: None,
                    origin: Origin::Rollback { of: seq },
                };
                issue(m, st, rollback, now, out);
            }
        }
        Phase::Pending | Phase::Superseded => {}
    }
}

/// Fails every pending command whose deadline has passed.
pub fn on_tick(m: &TypeModel, st: &mut TwinState, now: i64, out: &mut Vec<Output>) {
    let due: Vec<(u16, u32)> = table(st)
        .log
        .iter()
        .filter(|c| c.phase == Phase::Pending && c.deadline_ms <= now)
        .map(|c| (c.def, c.seq))
        .collect();
    for (def, seq) in due {
        finish(m, st, def, seq, Phase::Failed, now, out);
    }
}

/// The earliest deadline of a pending command.
pub fn next_deadline(st: &TwinState) -> Option<i64> {
    st.commands()?
        .log
        .iter()
        .filter(|c| c.phase == Phase::Pending)
        .map(|c| c.deadline_ms)
        .min()
}
