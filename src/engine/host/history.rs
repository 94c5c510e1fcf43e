//! A twin's part of history in a checkpoint: what it logged since its last
//! snapshot ([`HistoryLog`]: partial buckets, raw readings, alert
//! transitions and commands), folded into one page operand per series, tier
//! and page, and an entry per alert transition and command.

use std::collections::BTreeMap;

use crate::store::history::page::{encode_entry, expiry, page_start, Bucket, Page};
use crate::store::history::{alert_key, command_key, page_key, series_prefix, HistoryOp};
use crate::twin::model::{HistoryLog, HistoryModel, Logged, Transition};
use crate::twin::schema::TypeModel;
use crate::twin::view::{self, CommandView};

/// What a snapshot adds to the checkpoint: the operations, and the
/// greatest reading time among them (`NO_TS`: none).
#[derive(Debug, Default)]
pub struct Part {
    pub ops: Vec<HistoryOp>,
    pub max_ts: i64,
}

impl Part {
    /// The bytes of its keys and values.
    pub fn bytes(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                HistoryOp::Merge { key, value } | HistoryOp::Put { key, value } => key.len() + value.len(),
            })
            .sum()
    }
}

/// Folds `log` (in the order it was logged) into `part` (emptied by the
/// snapshot that calls it).
pub fn fold(m: &TypeModel, asset: &str, log: &HistoryLog, part: &mut Part) {
    let Some(h) = &m.history else { return };
    // (series, tier, page start) -> page; tier 0 is the raw tier, the
    // downsampled ones follow.
    let mut pages: BTreeMap<(u16, u8, i64), Page> = BTreeMap::new();
    for p in &log.partials {
        let width = h.tiers[p.tier as usize].0;
        let start = page_start(p.start, width);
        let page = pages.entry((p.series, p.tier + 1, start)).or_default();
        let i = ((p.start - start) / width) as u8;
        let b = Bucket {
            count: p.count,
            sum: p.sum,
            min: p.min,
            max: p.max,
            first_ts: p.first_ts,
            first: p.first,
            last_ts: p.last_ts,
            last: p.last,
        };
        part.max_ts = part.max_ts.max(p.last_ts);
        match page.buckets.binary_search_by_key(&i, |b| b.0) {
            Ok(k) => page.buckets[k].1.combine(&b),
            Err(k) => page.buckets.insert(k, (i, b)),
        }
    }
    for r in &log.raw {
        part.max_ts = part.max_ts.max(r.ts);
        let page = pages.entry((r.series, 0, page_start(r.ts, 0))).or_default();
        // In event-time order (equal times: arrival order), as pages keep them.
        let at = page.readings.partition_point(|x| x.0 <= r.ts);
        page.readings.insert(at, (r.ts, r.value));
    }
    for e in &log.events {
        if let Some(op) = entry(m, h, asset, e) {
            part.ops.push(op);
        }
    }
    for ((series, t, start), mut page) in pages {
        let (width, keep) = match t {
            0 => (0, h.raw_keep_ms.unwrap_or(0)),
            t => h.tiers[t as usize - 1],
        };
        page.expires = expiry(start, width, keep);
        let mut value = Vec::with_capacity(16 + 40 * (page.buckets.len() + page.readings.len()));
        page.encode(&mut value);
        let prefix = series_prefix(asset, &h.series[series as usize], width);
        part.ops.push(HistoryOp::Merge {
            key: page_key(&prefix, start),
            value,
        });
    }
}

/// An alert transition or a command, as its history entry.
fn entry(m: &TypeModel, h: &HistoryModel, asset: &str, item: &Logged) -> Option<HistoryOp> {
    let keep = h.events_keep_ms?;
    let (key, at, json) = match item {
        Logged::Alert {
            rule,
            transition,
            seq,
            ts,
            inputs,
        } => {
            let r = &m.rules[*rule as usize];
            let v = view::alert_transition(m, asset, *rule, *transition, *seq, *ts, inputs);
            // The codes stored keys use (what stores hold keeps its meaning).
            let code = match transition {
                Transition::Cleared => 0,
                Transition::Raised => 1,
                Transition::Acknowledged => 2,
            };
            (alert_key(asset, *ts, &r.name, *seq, code), *ts, serde_json::to_vec(&v))
        }
        Logged::RuleCommand {
            rule,
            seq,
            transition,
            ts,
            value,
        } => {
            let r = &m.rules[*rule as usize];
            let name = r.command.as_ref().map_or("", |c| c.name.as_str());
            let v = CommandView {
                id: transition.event_id(asset, &r.name, *seq),
                asset: asset.to_string(),
                command: name.to_string(),
                seq: *seq,
                value: *value,
                state: "sent",
                origin: "rule",
                rule: Some(r.name.to_string()),
                rollback_of: None,
                idempotency_key: None,
                issued_at: *ts,
                deadline: *ts,
                finished_at: None,
            };
            let key = command_key(asset, *ts, &v.id, *seq);
            (key, *ts, serde_json::to_vec(&v))
        }
        Logged::Command(c) => {
            let v = view::command(m, asset, c);
            let key = command_key(asset, c.issued_ms, &v.command, c.seq);
            (key, c.issued_ms, serde_json::to_vec(&v))
        }
    };
    let json = json.ok()?;
    Some(HistoryOp::Put {
        key,
        value: encode_entry(at.saturating_add(keep), &json),
    })
}
