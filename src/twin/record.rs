//! The on-disk form of a twin: a versioned envelope around a bincode 2
//! payload that names sensors, windows and rules instead of indexing them, so
//! a snapshot survives edits to the topology (a sensor added or removed)
//! without being misread.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::model::{Acc, AlertState, Latest, OpenWindow, TwinState, TwinStats};
use super::schema::TypeModel;
use crate::store::envelope::{self, EnvelopeError};

/// Format version of [`TwinRecord`] payloads written by this build.
pub const TWIN_FORMAT: u16 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwinRecord<'a> {
    pub asset_type: Cow<'a, str>,
    pub version: u64,
    pub max_ts: i64,
    pub sensors: Vec<(Cow<'a, str>, Latest)>,
    pub open: Vec<WindowRecord<'a>>,
    pub closed: Vec<WindowRecord<'a>>,
    pub alerts: Vec<(Cow<'a, str>, AlertState)>,
    pub stats: TwinStats,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord<'a> {
    pub window: Cow<'a, str>,
    pub sensor: Cow<'a, str>,
    pub last_ms: i64,
    pub first_origin: u64,
    pub acc: Acc,
}

/// What was dropped while restoring a record into the current model.
#[derive(Debug, Default, PartialEq)]
pub struct RestoreNotes {
    pub dropped: Vec<String>,
}

impl<'a> TwinRecord<'a> {
    /// The record of `st`. Digest entries are not part of it: the snapshot
    /// moves them into the checkpoint first.
    pub fn from_state(m: &'a TypeModel, st: &TwinState) -> TwinRecord<'a> {
        let slot_names = |slot: usize| {
            let s = m.slots[slot];
            (
                Cow::Borrowed(&*m.windows[s.window as usize].name),
                Cow::Borrowed(&*m.sensors[s.sensor as usize]),
            )
        };
        TwinRecord {
            asset_type: Cow::Borrowed(&m.name),
            version: st.version,
            max_ts: st.max_ts,
            sensors: m
                .sensors
                .iter()
                .zip(&st.sensors)
                .filter(|(_, l)| l.is_set())
                .map(|(n, l)| (Cow::Borrowed(&**n), *l))
                .collect(),
            open: st
                .open
                .iter()
                .map(|w| {
                    let (window, sensor) = slot_names(w.slot as usize);
                    WindowRecord {
                        window,
                        sensor,
                        last_ms: w.last_ms,
                        first_origin: w.first_origin,
                        acc: w.acc,
                    }
                })
                .collect(),
            closed: m
                .closed_index
                .iter()
                .enumerate()
                .filter_map(|(slot, c)| {
                    let acc = st.closed[(*c)? as usize]?;
                    let (window, sensor) = slot_names(slot);
                    Some(WindowRecord {
                        window,
                        sensor,
                        last_ms: 0,
                        first_origin: 0,
                        acc,
                    })
                })
                .collect(),
            alerts: m
                .rules
                .iter()
                .zip(&st.alerts)
                .filter(|(_, a)| **a != AlertState::default())
                .map(|(r, a)| (Cow::Borrowed(&*r.name), *a))
                .collect(),
            stats: st.stats,
        }
    }

    /// Rebuilds the twin under the current model. Entries the model no longer
    /// has (a removed sensor, window or rule) are dropped and listed.
    pub fn into_state(self, m: &TypeModel) -> (TwinState, RestoreNotes) {
        let mut st = TwinState::new(m);
        let mut notes = RestoreNotes::default();
        st.version = self.version;
        st.max_ts = self.max_ts;
        st.stats = self.stats;
        for (name, latest) in self.sensors {
            match m.sensor_index(&name) {
                Some(s) => st.sensors[s as usize] = latest,
                None => notes.dropped.push(format!("sensor `{name}`")),
            }
        }
        let slot_of = |w: &WindowRecord<'_>| {
            let window = m.window_index(&w.window)?;
            let sensor = m.sensor_index(&w.sensor)?;
            m.slot_index(window, sensor)
        };
        for w in self.open {
            match slot_of(&w) {
                Some(slot) => st.open.push(OpenWindow {
                    last_ms: w.last_ms,
                    slot,
                    first_origin: w.first_origin,
                    acc: w.acc,
                }),
                None => notes
                    .dropped
                    .push(format!("open window `{}` of sensor `{}`", w.window, w.sensor)),
            }
        }
        st.open.sort_by_key(|w| (w.last_ms, w.slot));
        for w in self.closed {
            if let Some(c) = slot_of(&w).and_then(|slot| m.closed_index[slot as usize]) {
                st.closed[c as usize] = Some(w.acc);
            }
        }
        for (name, alert) in self.alerts {
            match m.rule_index(&name) {
                Some(r) => st.alerts[r as usize] = alert,
                None => notes.dropped.push(format!("alert state of rule `{name}`")),
            }
        }
        (st, notes)
    }
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a twin into a versioned envelope.
pub fn encode(m: &TypeModel, st: &TwinState) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_into(m, st, &mut buf);
    buf
}

/// Encodes a twin into `buf` (cleared first), reusing its allocation.
pub fn encode_into(m: &TypeModel, st: &TwinState, buf: &mut Vec<u8>) {
    let rec = TwinRecord::from_state(m, st);
    buf.clear();
    envelope::put_header(TWIN_FORMAT, buf);
    bincode::serde::encode_into_std_write(&rec, buf, config()).expect("writing to a Vec cannot fail");
}

/// Decodes a twin envelope; an unknown format version is an error, never a
/// guess.
pub fn decode(bytes: &[u8]) -> Result<TwinRecord<'static>, EnvelopeError> {
    let payload = envelope::open(bytes, TWIN_FORMAT, "twin")?;
    let (rec, _) = bincode::serde::decode_from_slice::<TwinRecord<'static>, _>(payload, config())
        .map_err(|e| EnvelopeError::Corrupt(format!("twin payload: {e}")))?;
    Ok(rec)
}
