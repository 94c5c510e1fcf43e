//! The parts a [`TwinRecord`](super::TwinRecord) is made of: sensors,
//! per-source readings, windows and their accumulators, joins, related
//! values, alerts and commands, as stored.

use serde::{Deserialize, Serialize};

use crate::twin::commands::Command;
use crate::twin::model::{Acc, AlertState, Quality, TwinState, NO_TS};
use crate::twin::schema::TypeModel;

/// A twin's commands as stored, by command name (a topology edit that
/// renames or drops a command drops its entries on restore).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CommandsRecord {
    /// `(command, desired value, last seq)` of every command with a seq.
    pub entries: Vec<(String, f64, u32)>,
    /// Pending and recent commands, oldest first, with their command's name.
    pub log: Vec<(String, Command)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SensorRecord {
    pub sensor: u16,
    /// `max_ts - ts` (wrapping).
    pub age_ms: i64,
    pub value: f64,
    /// `seen_base - seen`; `None`: never heard from in processing time.
    pub seen_back: Option<i64>,
    pub source: u16,
    pub quality: Quality,
    /// (`max_ts - ts`, value) of the estimate, for sensors with a deadband.
    pub estimate: Option<(i64, f64)>,
}

impl SensorRecord {
    /// Sensor `s` of `st`, its times relative to `base_ts` (event time: the
    /// twin's `max_ts` in a whole record) and `base_seen` (processing time:
    /// the greatest `seen`).
    pub(super) fn of(m: &TypeModel, st: &TwinState, s: usize, base_ts: i64, base_seen: i64) -> SensorRecord {
        let l = st.sensors[s];
        SensorRecord {
            sensor: s as u16,
            age_ms: base_ts.wrapping_sub(l.ts),
            value: l.value,
            // When a reading was applied matters only to timers.
            seen_back: (m.timers && l.seen != NO_TS).then(|| base_seen.wrapping_sub(l.seen)),
            source: l.source,
            quality: l.quality,
            estimate: m.sensor_defs[s]
                .estimate
                .map(|e| st.estimates()[e as usize])
                .filter(|e| e.ts != NO_TS)
                .map(|e| (base_ts.wrapping_sub(e.ts), e.value)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub slot: u16,
    pub age_ms: i64,
    pub value: f64,
    pub seen_back: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord {
    pub slot: u16,
    /// `last_ms - max_ts` (wrapping).
    pub end_ms: i64,
    pub first_origin: u64,
    pub acc: AccRecord,
    pub last_back: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClosedRecord {
    pub slot: u16,
    pub acc: AccRecord,
}

/// A window accumulator as stored: `last` and the deviation (16 bytes a
/// window) only when something reads them ([`TypeModel::keeps_spread`]):
/// a window sink, or a rule over `last` or `stddev`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AccRecord {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// `(last, m2)`.
    pub spread: Option<(f64, f64)>,
}

impl AccRecord {
    pub(super) fn of(m: &TypeModel, a: &Acc) -> AccRecord {
        AccRecord {
            count: a.count,
            sum: a.sum,
            min: a.min,
            max: a.max,
            spread: m.keeps_spread.then_some((a.last, a.m2)),
        }
    }

    /// Without the spread, `last` reads as the average and the deviation
    /// counts from the readings after the restore.
    pub fn acc(&self) -> Acc {
        let (last, m2) = self.spread.unwrap_or((self.sum / self.count as f64, 0.0));
        Acc {
            count: self.count,
            sum: self.sum,
            min: self.min,
            max: self.max,
            last,
            m2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JoinRecord {
    pub join: u16,
    pub age_ms: i64,
    pub left: f64,
    pub right: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RelatedRecord {
    pub slot: u16,
    pub ts: i64,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub rule: u16,
    pub state: AlertState,
}
