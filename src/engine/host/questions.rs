//! The HTTP API's questions to a twin, answered from its own state: views,
//! the fleet survey, a copy of the state, acknowledging an alert, issuing a
//! command.

use std::sync::Arc;

use super::TwinActor;
use crate::engine::query::{AckError, CommandError, Gather, TwinCopy};
use crate::pipeline::now_ms;
use crate::telemetry;
use crate::twin::model::Input;
use crate::twin::view::{self, AlertView, CommandView, Surveyed, TwinView};

/// A question from the HTTP API, answered from the twin's own state.
pub enum Question {
    View(tokio::sync::oneshot::Sender<TwinView>),
    Copy(tokio::sync::oneshot::Sender<TwinCopy>),
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
            let seen = self.glance();
            let mut out = Vec::new();
            let input = Input::Ack { rule: r as u16, seq };
            self.apply_retrying(input, now_ms(), &mut out, "acknowledging an alert");
            self.deliver(out, Vec::new(), None, seen);
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
        if !c.admits(value) {
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
        let seen = self.glance();
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
        self.deliver(out, Vec::new(), None, seen);
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
            Question::Copy(reply) => {
                let _ = reply.send(TwinCopy {
                    model: self.tcx.model.clone(),
                    state: Box::new(self.state.clone()),
                });
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
