//! Restoring a stored record into the current model: stored indices mapped
//! to the current ones by name, what the model no longer has dropped and
//! listed in [`RestoreNotes`].

use super::{Schema, TwinRecord};
use crate::twin::commands::Command;
use crate::twin::model::{Estimate, JoinPair, Latest, OpenWindow, SensorState, SourceReading, TwinState, NO_TS};
use crate::twin::schema::TypeModel;

/// What was dropped while restoring a record into the current model.
#[derive(Debug, Default, PartialEq)]
pub struct RestoreNotes {
    pub dropped: Vec<String>,
}

impl TwinRecord {
    /// Rebuilds the twin under the current model. `stored` is the schema the
    /// record was written with (the model's own when [`Self::schema`] is
    /// `m.schema_id`). Entries the model no longer has (a removed sensor,
    /// window or rule) are dropped and listed.
    pub fn into_state(self, m: &TypeModel, stored: &Schema) -> (TwinState, RestoreNotes) {
        let same = self.schema == m.schema_id;
        let mut st = TwinState::new(m);
        let mut notes = RestoreNotes::default();
        st.version = self.version;
        st.max_ts = self.max_ts;

        st.sync_lag_ms = self.sync_lag_ms;
        // The optional parts, filled below and put back at the end.
        let mut ext = st.ext.take();
        if let (Some(x), Some(f)) = (ext.as_deref_mut(), self.wm_floor) {
            x.wm_floor = self.max_ts.wrapping_add(f);
        }
        st.offline = self.offline;
        st.stats = self.stats;
        let seen = |back: Option<i64>| match (back, self.seen_base) {
            (Some(b), Some(base)) => base.wrapping_sub(b),
            _ => NO_TS,
        };
        let name = |names: &[String], i: u16| names.get(i as usize).map_or("?", String::as_str).to_string();
        // Maps a stored index to the current one: the same index for a record
        // written with this very model (a corrupt one is dropped, not a
        // panic), else by name.
        let by_name = |stored_names: &[String], current: &dyn Fn(&str) -> Option<usize>, len: usize, i: u16| {
            if same {
                Some(i as usize).filter(|i| *i < len)
            } else {
                current(stored_names.get(i as usize)?)
            }
        };
        let sensor_of = |i: u16| {
            by_name(
                &stored.sensors,
                &|n| m.sensor_index(n).map(usize::from),
                m.sensors.len(),
                i,
            )
        };
        let slot_of = |i: u16| {
            if same {
                return Some(i).filter(|i| (*i as usize) < m.slots.len());
            }
            let (window, sensor) = stored.slots.get(i as usize)?;
            m.slot_index(m.window_index(window)?, m.sensor_index(sensor)?)
        };
        for r in &self.sensors {
            match sensor_of(r.sensor) {
                Some(s) => {
                    // Changed, as every sensor of a restored twin: its next
                    // record is whole (the stored one may be of another schema).
                    *st.sensors.get_mut(s) = SensorState::new(
                        self.max_ts.wrapping_sub(r.age_ms),
                        r.value,
                        seen(r.seen_back),
                        r.source,
                        r.quality,
                    );
                    if let (Some(e), Some((age, value)), Some(x)) =
                        (m.sensor_defs[s].estimate, r.estimate, ext.as_deref_mut())
                    {
                        x.estimates[e as usize] = Estimate {
                            value,
                            ts: self.max_ts.wrapping_sub(age),
                        };
                    }
                }
                None => notes
                    .dropped
                    .push(format!("sensor `{}`", name(&stored.sensors, r.sensor))),
            }
        }
        for r in &self.by_source {
            let find = |n: &str| m.schema.sources.iter().position(|c| c == n);
            let n = ext.as_ref().map_or(0, |x| x.by_source.len());
            match (by_name(&stored.sources, &find, n, r.slot), ext.as_deref_mut()) {
                (Some(k), Some(x)) => {
                    x.by_source[k] = SourceReading {
                        ts: self.max_ts.wrapping_sub(r.age_ms),
                        value: r.value,
                        seen: seen(r.seen_back),
                    }
                }
                _ => notes
                    .dropped
                    .push(format!("source reading `{}`", name(&stored.sources, r.slot))),
            }
        }
        for w in &self.open {
            match slot_of(w.slot) {
                Some(slot) => st.open.push(OpenWindow {
                    last_ms: self.max_ts.wrapping_add(w.end_ms),
                    first_origin: w.first_origin,
                    acc: w.acc.acc(),
                    slot,
                    last_back: w.last_back,
                }),
                None => {
                    let (window, sensor) = stored
                        .slots
                        .get(w.slot as usize)
                        .cloned()
                        .unwrap_or_else(|| ("?".into(), "?".into()));
                    notes
                        .dropped
                        .push(format!("open window `{window}` of sensor `{sensor}`"));
                }
            }
        }
        if !same {
            st.open.sort_by_key(|w| (w.last_ms, w.slot));
        }
        for c in &self.closed {
            if let Some(i) = slot_of(c.slot).and_then(|slot| m.closed_index.get(slot as usize).copied().flatten()) {
                st.closed[i as usize] = Some(c.acc.acc());
            }
        }
        for j in &self.joins {
            let find = |n: &str| m.joins.iter().position(|d| &*d.name == n);
            let n = ext.as_ref().map_or(0, |x| x.joins.len());
            if let (Some(k), Some(x)) = (by_name(&stored.joins, &find, n, j.join), ext.as_deref_mut()) {
                x.joins[k] = JoinPair {
                    ts: self.max_ts.wrapping_sub(j.age_ms),
                    left: j.left,
                    right: j.right,
                };
            }
        }
        for r in &self.related {
            let find = |n: &str| m.related.iter().position(|d| &*d.name == n);
            let n = ext.as_ref().map_or(0, |x| x.related.len());
            if let (Some(k), Some(x)) = (by_name(&stored.related, &find, n, r.slot), ext.as_deref_mut()) {
                x.related[k] = Latest {
                    ts: r.ts,
                    value: r.value,
                };
            }
        }
        for a in &self.alerts {
            let find = |n: &str| m.rule_index(n).map(usize::from);
            match by_name(&stored.rules, &find, st.alerts.len(), a.rule) {
                Some(r) => st.alerts[r] = a.state,
                None => notes
                    .dropped
                    .push(format!("alert state of rule `{}`", name(&stored.rules, a.rule))),
            }
        }
        if let Some(table) = ext.as_deref_mut().and_then(|x| x.commands.as_deref_mut()) {
            let def = |n: &str| m.commands.iter().position(|c| &*c.name == n);
            for (name, desired, seq) in &self.commands.entries {
                match def(name) {
                    Some(d) => {
                        table.desired[d] = *desired;
                        table.seq[d] = *seq;
                    }
                    None => notes.dropped.push(format!("desired state of command `{name}`")),
                }
            }
            for (name, cmd) in &self.commands.log {
                if let Some(d) = def(name) {
                    table.log.push(Command {
                        def: d as u16,
                        ..cmd.clone()
                    });
                }
            }
        } else if !self.commands.entries.is_empty() {
            notes.dropped.push("every command (the type declares none)".into());
        }
        if let Some(rec) = &self.filter {
            let restored = m.filter.as_ref().and_then(|fm| rec.restore(fm));
            match (ext.as_deref_mut(), restored) {
                (Some(x), Some(f)) => x.filter = Some(Box::new(f)),
                _ => notes
                    .dropped
                    .push("the model's estimate (the model changed: its filter starts again)".into()),
            }
        }
        for r in &self.derived {
            let state = m
                .derived
                .iter()
                .find(|d| *m.sensors[d.sensor as usize] == *r.sensor)
                .and_then(|d| d.state());
            match (ext.as_deref_mut(), state) {
                (Some(x), Some(i)) => x.derived[i as usize] = r.state,
                _ => notes.dropped.push(format!(
                    "derived sensor `{}` (no longer an integral or a rate)",
                    r.sensor
                )),
            }
        }
        st.ext = ext;
        (st, notes)
    }
}
