//! Rules: conditions, severities and the commands they send.

use super::Slot;
use crate::topology::diag::Pos;
use crate::topology::expr::Cond;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub name: String,
    pub pos: Pos,
    pub when: String,
    /// `for`: how long (event time) `when` must keep holding before the
    /// alert is raised; zero raises at once.
    pub hold: Duration,
    /// `clear_when`: what clears an active alert (hysteresis); without it the
    /// alert clears as soon as `when` stops holding.
    pub clear_when: Option<String>,
    pub severity: Severity,
    pub message: Option<String>,
    /// The condition compiled for each asset type the rule applies to.
    pub compiled: Vec<(usize, Cond<Slot>)>,
    /// `clear_when` compiled likewise (empty without one).
    pub clear_compiled: Vec<(usize, Cond<Slot>)>,
    /// A command sent when the alert is raised (and, with `on_clear`, when
    /// it clears).
    pub command: Option<CommandSpec>,
    /// Evaluated at the edge (edge autonomy), not by the cluster.
    pub local: bool,
}

/// A rule's actuation command: `name` set to `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    pub name: String,
    pub value: f64,
    /// The value sent when the alert clears; none: nothing is sent then.
    pub on_clear: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const NAMES: [&'static str; 3] = ["info", "warning", "critical"];

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}
