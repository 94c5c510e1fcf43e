//! Joins (pairing two readings within a time bound) and the values of
//! related assets ([`Relayed`]) that joins and rules read.
//!
//! A reading's own side of its joins is step (d) of `on_event` in `mod.rs`.

use serde::{Deserialize, Serialize};

use super::rules::evaluate_rule;
use super::{Latest, Output, TwinState, NO_TS};
use crate::topology::OutputKind;
use crate::twin::schema::TypeModel;

/// A related asset's sensor value, relayed to the twins that relate to it
/// (see docs/decisions.md "Relations").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Relayed {
    /// Index into the twin's related-value table ([`TypeModel::related`]).
    pub slot: u16,
    pub latest: Latest,
}

/// The latest joined pair of a join.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JoinPair {
    /// The later event time of the two readings (`NO_TS`: no pair yet).
    pub ts: i64,
    pub left: f64,
    pub right: f64,
}

impl JoinPair {
    pub const NONE: JoinPair = JoinPair {
        ts: NO_TS,
        left: 0.0,
        right: 0.0,
    };
}

pub(super) fn on_related(m: &TypeModel, st: &mut TwinState, v: &Relayed, out: &mut Vec<Output>) {
    let k = v.slot as usize;
    let related = &mut ext_mut!(st).related;
    if k >= related.len() || v.latest.ts < related[k].ts {
        return;
    }
    related[k] = v.latest;
    for &j in &m.joins_by_related[k] {
        let def = &m.joins[j as usize];
        let left = st.sensors[def.left as usize].latest();
        try_join(m, st, j, left, v.latest, out);
    }
    for &r in &m.rules_by_related[k] {
        evaluate_rule(m, st, r, v.latest.ts, out);
    }
}

/// Pairs `left` with `right` when both are set and within the join's
/// window; a pair older than the current one is ignored.
pub(super) fn try_join(m: &TypeModel, st: &mut TwinState, j: u16, left: Latest, right: Latest, out: &mut Vec<Output>) {
    if !left.is_set() || !right.is_set() || left.ts.abs_diff(right.ts) > m.joins[j as usize].within_ms {
        return;
    }
    let pair = JoinPair {
        ts: left.ts.max(right.ts),
        left: left.value,
        right: right.value,
    };
    let joins = &mut ext_mut!(st).joins;
    if pair.ts < joins[j as usize].ts {
        return;
    }
    joins[j as usize] = pair;
    if m.emit.has(OutputKind::Joins) {
        out.push(Output::Joined { join: j, pair });
    }
    for &r in &m.rules_by_join[j as usize] {
        evaluate_rule(m, st, r, pair.ts, out);
    }
}
