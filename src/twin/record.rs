//! The on-disk form of a twin: a versioned envelope around a bincode 2
//! payload.
//!
//! A record refers to sensors, windows and rules by index into a [`Schema`]:
//! the names of one asset type's parts, stored once in the store's meta
//! column family under its content hash (written when the engine starts).
//! A record names its schema, so a snapshot survives edits to the topology (a
//! sensor added or removed): restoring under a different model maps the
//! stored names to the current indices and drops what is gone. Names were
//! ~40% of a record when every record carried them, and a checkpoint holds
//! its records twice in memory (the write batch and the memtable).
//! Timestamps are stored relative to the twin's greatest event time, so they
//! take a byte or two instead of nine.

use serde::{Deserialize, Serialize};

use super::model::{Acc, AlertState, Latest, OpenWindow, TwinState, TwinStats};
use super::schema::TypeModel;
use crate::store::envelope::{self, EnvelopeError};
use crate::store::{Store, StoreError};

/// Format version of [`TwinRecord`] payloads written by this build.
pub const TWIN_FORMAT: u16 = 2;
/// Format version of [`Schema`] payloads written by this build.
pub const SCHEMA_FORMAT: u16 = 1;

/// The names of an asset type's parts, in the order records index them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub asset_type: String,
    pub sensors: Vec<String>,
    /// Window slots as `(window, sensor)`.
    pub slots: Vec<(String, String)>,
    pub rules: Vec<String>,
}

impl Schema {
    pub fn of(m: &TypeModel) -> Schema {
        Schema {
            asset_type: m.name.to_string(),
            sensors: m.sensors.iter().map(|s| s.to_string()).collect(),
            slots: m
                .slots
                .iter()
                .map(|s| {
                    (
                        m.windows[s.window as usize].name.to_string(),
                        m.sensors[s.sensor as usize].to_string(),
                    )
                })
                .collect(),
            rules: m.rules.iter().map(|r| r.name.to_string()).collect(),
        }
    }

    /// The stored form: an envelope around bincode.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = envelope::start(SCHEMA_FORMAT, 128);
        bincode::serde::encode_into_std_write(self, &mut buf, config()).expect("writing to a Vec cannot fail");
        buf
    }

    pub fn decode(bytes: &[u8]) -> Result<Schema, EnvelopeError> {
        let payload = envelope::open(bytes, SCHEMA_FORMAT, "twin schema")?;
        bincode::serde::decode_from_slice(payload, config())
            .map(|(s, _)| s)
            .map_err(|e| EnvelopeError::Corrupt(format!("twin schema: {e}")))
    }

    /// Content hash of the stored form: the id records refer to.
    pub fn id(&self) -> u64 {
        crate::source::fnv1a(&self.encode())
    }

    pub fn meta_key(id: u64) -> String {
        format!("schema/{id:016x}")
    }

    /// Stores this schema unless the store has it already (schemas are
    /// immutable: the key is the content hash).
    pub fn ensure_stored(&self, store: &Store) -> Result<(), StoreError> {
        let key = Schema::meta_key(self.id());
        if store.get_meta(&key)?.is_none() {
            store.put_meta(&key, &self.encode())?;
        }
        Ok(())
    }

    /// The schema with id `id`, from the store.
    pub fn load(store: &Store, id: u64) -> Result<Schema, StoreError> {
        let key = Schema::meta_key(id);
        let cause = |cause| StoreError::Envelope {
            key: key.clone(),
            cause,
        };
        match store.get_meta(&key)? {
            Some(bytes) => Schema::decode(&bytes).map_err(cause),
            None => Err(cause(EnvelopeError::Corrupt(format!(
                "a twin record refers to schema {id:016x}, which the store does not hold"
            )))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwinRecord {
    /// Id of the [`Schema`] the indices below refer to.
    pub schema: u64,
    pub version: u64,
    pub max_ts: i64,
    /// Sensors with a value.
    pub sensors: Vec<SensorRecord>,
    pub open: Vec<WindowRecord>,
    /// The last closed window of each slot that rules read.
    pub closed: Vec<ClosedRecord>,
    /// Rules whose alert state is not the initial one.
    pub alerts: Vec<AlertRecord>,
    pub stats: TwinStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SensorRecord {
    pub sensor: u16,
    /// `max_ts - ts` (wrapping).
    pub age_ms: i64,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord {
    pub slot: u16,
    /// `last_ms - max_ts` (wrapping).
    pub end_ms: i64,
    pub first_origin: u64,
    pub acc: Acc,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClosedRecord {
    pub slot: u16,
    pub acc: Acc,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub rule: u16,
    pub state: AlertState,
}

/// What was dropped while restoring a record into the current model.
#[derive(Debug, Default, PartialEq)]
pub struct RestoreNotes {
    pub dropped: Vec<String>,
}

impl TwinRecord {
    /// The record of `st`. Digest entries are not part of it: the snapshot
    /// moves them into the checkpoint first.
    pub fn from_state(m: &TypeModel, st: &TwinState) -> TwinRecord {
        let max_ts = st.max_ts;
        TwinRecord {
            schema: m.schema_id,
            version: st.version,
            max_ts,
            sensors: st
                .sensors
                .iter()
                .enumerate()
                .filter(|(_, l)| l.is_set())
                .map(|(s, l)| SensorRecord {
                    sensor: s as u16,
                    age_ms: max_ts.wrapping_sub(l.ts),
                    value: l.value,
                })
                .collect(),
            open: st
                .open
                .iter()
                .map(|w| WindowRecord {
                    slot: w.slot,
                    end_ms: w.last_ms.wrapping_sub(max_ts),
                    first_origin: w.first_origin,
                    acc: w.acc,
                })
                .collect(),
            closed: m
                .closed_index
                .iter()
                .enumerate()
                .filter_map(|(slot, c)| {
                    Some(ClosedRecord {
                        slot: slot as u16,
                        acc: st.closed[(*c)? as usize]?,
                    })
                })
                .collect(),
            alerts: st
                .alerts
                .iter()
                .enumerate()
                .filter(|(_, a)| **a != AlertState::default())
                .map(|(r, a)| AlertRecord {
                    rule: r as u16,
                    state: *a,
                })
                .collect(),
            stats: st.stats,
        }
    }

    /// Latest values by stored sensor index.
    pub fn latest(&self) -> impl Iterator<Item = (u16, Latest)> + '_ {
        self.sensors.iter().map(|s| {
            (
                s.sensor,
                Latest {
                    ts: self.max_ts.wrapping_sub(s.age_ms),
                    value: s.value,
                },
            )
        })
    }

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
        st.stats = self.stats;
        let name = |names: &[String], i: u16| names.get(i as usize).map_or("?", String::as_str).to_string();
        // Indices of a record written with this very model; a corrupt one is
        // dropped, not a panic.
        let sensor_of = |i: u16| {
            if same {
                Some(i).filter(|i| (*i as usize) < m.sensors.len())
            } else {
                m.sensor_index(stored.sensors.get(i as usize)?)
            }
        };
        let slot_of = |i: u16| {
            if same {
                return Some(i).filter(|i| (*i as usize) < m.slots.len());
            }
            let (window, sensor) = stored.slots.get(i as usize)?;
            m.slot_index(m.window_index(window)?, m.sensor_index(sensor)?)
        };
        for (i, latest) in self.latest() {
            match sensor_of(i) {
                Some(s) => st.sensors[s as usize] = latest,
                None => notes.dropped.push(format!("sensor `{}`", name(&stored.sensors, i))),
            }
        }
        for w in &self.open {
            match slot_of(w.slot) {
                Some(slot) => st.open.push(OpenWindow {
                    last_ms: self.max_ts.wrapping_add(w.end_ms),
                    slot,
                    first_origin: w.first_origin,
                    acc: w.acc,
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
                st.closed[i as usize] = Some(c.acc);
            }
        }
        for a in &self.alerts {
            let rule = if same {
                Some(a.rule).filter(|r| (*r as usize) < st.alerts.len())
            } else {
                stored.rules.get(a.rule as usize).and_then(|n| m.rule_index(n))
            };
            match rule {
                Some(r) => st.alerts[r as usize] = a.state,
                None => notes
                    .dropped
                    .push(format!("alert state of rule `{}`", name(&stored.rules, a.rule))),
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
pub fn decode(bytes: &[u8]) -> Result<TwinRecord, EnvelopeError> {
    let payload = envelope::open(bytes, TWIN_FORMAT, "twin")?;
    let (rec, _) = bincode::serde::decode_from_slice::<TwinRecord, _>(payload, config())
        .map_err(|e| EnvelopeError::Corrupt(format!("twin payload: {e}")))?;
    Ok(rec)
}
