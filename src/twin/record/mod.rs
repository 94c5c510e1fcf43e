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
//!
//! `schema.rs` holds the [`Schema`] (names by index) and its stored form;
//! `parts.rs` the part records a [`TwinRecord`] is made of; `restore.rs`
//! [`TwinRecord::into_state`], the mapping back by name; this file the
//! record of a state, and encoding and decoding with the format versions
//! (older ones migrated on read).

use serde::{Deserialize, Serialize};

use super::model::{AlertState, DerivedState, FilterRecord, Latest, Quality, TwinState, TwinStats, NO_TS};
use super::schema::TypeModel;
use crate::store::envelope::{self, EnvelopeError};

mod in_parts;
mod parts;
mod restore;
mod schema;

pub use in_parts::{in_parts, operand_pays, IN_PARTS_MIN_SENSORS};

pub use parts::{
    AccRecord, AlertRecord, ClosedRecord, CommandsRecord, JoinRecord, RelatedRecord, SensorRecord, SourceRecord,
    WindowRecord,
};
pub use restore::RestoreNotes;
pub use schema::{Schema, SCHEMA_FORMAT};

/// Format version of [`TwinRecord`] payloads written by this build: the
/// record, then a [`CommandsRecord`], then the model's filter (an optional
/// [`FilterRecord`]). Version 4 (before models), version 3 (the record
/// alone, before commands) and version 2 (before staleness, sources, joins
/// and relations) are migrated on read.
pub const TWIN_FORMAT: u16 = 5;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TwinRecord {
    /// Id of the [`Schema`] the indices below refer to.
    pub schema: u64,
    pub version: u64,
    pub max_ts: i64,
    /// `wm_floor - max_ts` when the idle timeout closed windows.
    pub wm_floor: Option<i64>,
    /// The greatest processing time a sensor was heard from; `seen` values
    /// are stored relative to it.
    pub seen_base: Option<i64>,
    /// Sensors with a value.
    pub sensors: Vec<SensorRecord>,
    /// Per-source readings with a value, by index into the schema's sources.
    pub by_source: Vec<SourceRecord>,
    pub sync_lag_ms: i32,
    pub offline: bool,
    pub open: Vec<WindowRecord>,
    /// The last closed window of each slot that rules read.
    pub closed: Vec<ClosedRecord>,
    pub joins: Vec<JoinRecord>,
    pub related: Vec<RelatedRecord>,
    /// Alerts whose state is not the initial one.
    pub alerts: Vec<AlertRecord>,
    pub stats: TwinStats,
    /// Stored after the record (format 4), not inside it, so format 3
    /// payloads decode with this same struct.
    #[serde(skip)]
    pub commands: CommandsRecord,
    /// The model's filter (format 5), after the commands.
    #[serde(skip)]
    pub filter: Option<FilterRecord>,
    /// What derived `integral` and `rate` sensors keep (format 5, after the
    /// filter; absent from the first format 5 records, which had none).
    #[serde(skip)]
    pub derived: Vec<DerivedRecord>,
}

/// A derived sensor's state, by the sensor's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DerivedRecord {
    pub sensor: String,
    pub state: DerivedState,
}

impl TwinRecord {
    /// The record of `st`. Digest entries are not part of it: the snapshot
    /// moves them into the checkpoint first.
    pub fn from_state(m: &TypeModel, st: &TwinState) -> TwinRecord {
        let mut rec = TwinRecord::default();
        rec.fill(m, st, true);
        rec
    }

    /// Makes `self` the record of `st`, reusing its lists' allocations (a
    /// checkpoint encodes every dirty twin through one [`Encoder`]);
    /// without `with_sensors`, its sensors are left out (a record in parts
    /// writes them as entries).
    fn fill(&mut self, m: &TypeModel, st: &TwinState, with_sensors: bool) {
        // Every field by name, so that a field added to the record cannot
        // be left holding the twin encoded before.
        let TwinRecord {
            schema,
            version,
            max_ts: rec_max_ts,
            wm_floor,
            seen_base: rec_seen_base,
            sensors,
            by_source,
            sync_lag_ms,
            offline,
            open,
            closed,
            joins,
            related,
            alerts,
            stats,
            commands,
            filter,
            derived,
        } = self;
        let max_ts = st.max_ts;
        // When a reading was applied matters only to timers.
        let timers = m.timers;
        let seen_base = if timers {
            st.sensors.iter().map(|s| s.seen).max().unwrap_or(NO_TS)
        } else {
            NO_TS
        };
        let seen_back = |seen: i64| (timers && seen != NO_TS).then(|| seen_base.wrapping_sub(seen));
        *schema = m.schema_id;
        *version = st.version;
        *rec_max_ts = max_ts;
        *wm_floor = (st.wm_floor() != NO_TS).then(|| st.wm_floor().wrapping_sub(max_ts));
        *rec_seen_base = (seen_base != NO_TS).then_some(seen_base);
        refill(
            sensors,
            st.sensors
                .iter()
                .enumerate()
                .filter(|(_, l)| with_sensors && l.is_set())
                .map(|(s, _)| SensorRecord::of(m, st, s, max_ts, seen_base)),
        );
        refill(
            by_source,
            st.by_source()
                .iter()
                .enumerate()
                .filter(|(_, r)| r.ts != NO_TS)
                .map(|(i, r)| SourceRecord {
                    slot: i as u16,
                    age_ms: max_ts.wrapping_sub(r.ts),
                    value: r.value,
                    seen_back: seen_back(r.seen),
                }),
        );
        *sync_lag_ms = st.sync_lag_ms;
        *offline = st.offline;
        refill(
            open,
            st.open.iter().map(|w| WindowRecord {
                slot: w.slot,
                end_ms: w.last_ms.wrapping_sub(max_ts),
                first_origin: w.first_origin,
                acc: AccRecord::of(m, &w.acc),
                last_back: w.last_back,
            }),
        );
        refill(
            closed,
            m.closed_index.iter().enumerate().filter_map(|(slot, c)| {
                Some(ClosedRecord {
                    slot: slot as u16,
                    acc: AccRecord::of(m, &st.closed[(*c)? as usize]?),
                })
            }),
        );
        refill(
            joins,
            st.joins()
                .iter()
                .enumerate()
                .filter(|(_, p)| p.ts != NO_TS)
                .map(|(j, p)| JoinRecord {
                    join: j as u16,
                    age_ms: max_ts.wrapping_sub(p.ts),
                    left: p.left,
                    right: p.right,
                }),
        );
        refill(
            related,
            st.related()
                .iter()
                .enumerate()
                .filter(|(_, l)| l.is_set())
                .map(|(k, l)| RelatedRecord {
                    slot: k as u16,
                    ts: l.ts,
                    value: l.value,
                }),
        );
        refill(
            alerts,
            st.alerts
                .iter()
                .enumerate()
                .filter(|(_, a)| **a != AlertState::default())
                .map(|(r, a)| AlertRecord {
                    rule: r as u16,
                    state: *a,
                }),
        );
        *stats = st.stats;
        // Commands, the filter and derived sensors are what only some types
        // have; their records are built afresh (names are strings).
        *commands = match st.commands() {
            Some(c) => CommandsRecord {
                entries: c
                    .seq
                    .iter()
                    .enumerate()
                    .filter(|(_, seq)| **seq > 0)
                    .map(|(d, seq)| (m.commands[d].name.to_string(), c.desired[d], *seq))
                    .collect(),
                log: c
                    .log
                    .iter()
                    .map(|cmd| (m.commands[cmd.def as usize].name.to_string(), cmd.clone()))
                    .collect(),
            },
            None => CommandsRecord::default(),
        };
        *filter = m
            .filter
            .as_ref()
            .zip(st.filter())
            .filter(|(_, f)| f.t != NO_TS)
            .map(|(fm, f)| FilterRecord::of(fm, f));
        *derived = m
            .derived
            .iter()
            .filter_map(|d| {
                Some(DerivedRecord {
                    sensor: m.sensors[d.sensor as usize].to_string(),
                    state: st.ext.as_deref()?.derived[d.state()? as usize],
                })
            })
            .filter(|r| r.state.ts != NO_TS)
            .collect();
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
}

/// Twin format 2: before staleness, sources, joins and relations.
mod v2 {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    pub struct Record {
        schema: u64,
        version: u64,
        max_ts: i64,
        sensors: Vec<Sensor>,
        open: Vec<Window>,
        closed: Vec<Closed>,
        alerts: Vec<Alert>,
        stats: TwinStats,
    }

    #[derive(Deserialize)]
    struct Sensor {
        sensor: u16,
        age_ms: i64,
        value: f64,
    }

    #[derive(Deserialize, Clone, Copy)]
    struct Acc2 {
        count: u64,
        sum: f64,
        min: f64,
        max: f64,
    }

    #[derive(Deserialize)]
    struct Window {
        slot: u16,
        end_ms: i64,
        first_origin: u64,
        acc: Acc2,
    }

    #[derive(Deserialize)]
    struct Closed {
        slot: u16,
        acc: Acc2,
    }

    #[derive(Deserialize)]
    struct Alert {
        rule: u16,
        active: bool,
        seq: u32,
        firings: u64,
        since_ts: i64,
        pending_since: i64,
    }

    /// Format 2 did not keep `last` or the deviation of a window: a window
    /// open across the upgrade reports its average as `last` and the
    /// deviation of the readings after the upgrade.
    fn acc(a: Acc2) -> AccRecord {
        AccRecord {
            count: a.count,
            sum: a.sum,
            min: a.min,
            max: a.max,
            spread: None,
        }
    }

    impl Record {
        pub fn migrate(self) -> TwinRecord {
            TwinRecord {
                schema: self.schema,
                version: self.version,
                max_ts: self.max_ts,
                wm_floor: None,
                seen_base: None,
                sensors: self
                    .sensors
                    .into_iter()
                    .map(|s| SensorRecord {
                        sensor: s.sensor,
                        age_ms: s.age_ms,
                        value: s.value,
                        seen_back: None,
                        source: 0,
                        quality: Quality::Good,
                        estimate: None,
                    })
                    .collect(),
                by_source: Vec::new(),
                sync_lag_ms: i32::MIN,
                offline: false,
                open: self
                    .open
                    .into_iter()
                    .map(|w| WindowRecord {
                        slot: w.slot,
                        end_ms: w.end_ms,
                        first_origin: w.first_origin,
                        acc: acc(w.acc),
                        last_back: 0,
                    })
                    .collect(),
                closed: self
                    .closed
                    .into_iter()
                    .map(|c| ClosedRecord {
                        slot: c.slot,
                        acc: acc(c.acc),
                    })
                    .collect(),
                joins: Vec::new(),
                related: Vec::new(),
                alerts: self
                    .alerts
                    .into_iter()
                    .map(|a| AlertRecord {
                        rule: a.rule,
                        state: AlertState {
                            active: a.active,
                            seq: a.seq,
                            firings: a.firings,
                            since_ts: a.since_ts,
                            last_ts: a.since_ts,
                            pending_since: a.pending_since,
                            ..AlertState::default()
                        },
                    })
                    .collect(),
                stats: self.stats,
                commands: CommandsRecord::default(),
                filter: None,
                derived: Vec::new(),
            }
        }
    }
}

fn config() -> impl bincode::config::Config {
    envelope::bincode_config()
}

/// `list`'s items become `items`, in its allocation.
fn refill<T>(list: &mut Vec<T>, items: impl Iterator<Item = T>) {
    list.clear();
    list.extend(items);
}

/// Encodes a twin into a versioned envelope.
pub fn encode(m: &TypeModel, st: &TwinState) -> Vec<u8> {
    let mut enc = Encoder::default();
    enc.encode(m, st);
    enc.bytes
}

/// Encodes twin records keeping the record's lists and the bytes from one
/// record to the next (a worker keeps one, and a checkpoint encodes each
/// dirty twin through it; the parts only some types have, commands, the
/// filter and derived sensors, are still built afresh).
#[derive(Debug, Default)]
pub struct Encoder {
    rec: TwinRecord,
    bytes: Vec<u8>,
    /// A record in parts: its header, and an entry, while being written.
    scratch: Vec<u8>,
    /// The last record encoded is a merge operand: only the sensors that
    /// changed ([`Encoder::encode_parts`]).
    operand: bool,
}

impl Encoder {
    /// Encodes a twin; [`Encoder::bytes`] holds the envelope until the next.
    pub fn encode(&mut self, m: &TypeModel, st: &TwinState) {
        self.rec.fill(m, st, true);
        put(&self.rec, &mut self.bytes);
        self.operand = false;
    }

    /// Whether [`Encoder::bytes`] is a merge operand (only the sensors that
    /// changed), not a value that replaces the stored one.
    pub fn is_operand(&self) -> bool {
        self.operand
    }

    /// The envelope last encoded.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Appends to a `Vec` directly (bincode's `std::io::Write` adapter goes
/// through `io::Write` for every field).
struct Appender<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for Appender<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

fn put(rec: &TwinRecord, buf: &mut Vec<u8>) {
    buf.clear();
    envelope::put_header(TWIN_FORMAT, buf);
    put_payload(rec, buf);
}

/// Appends the payload of format 5 (also the header of a record in parts).
fn put_payload(rec: &TwinRecord, buf: &mut Vec<u8>) {
    bincode::serde::encode_into_writer(rec, Appender(buf), config()).expect("writing to a Vec cannot fail");
    bincode::serde::encode_into_writer(&rec.commands, Appender(buf), config()).expect("writing to a Vec cannot fail");
    bincode::serde::encode_into_writer(&rec.filter, Appender(buf), config()).expect("writing to a Vec cannot fail");
    bincode::serde::encode_into_writer(&rec.derived, Appender(buf), config()).expect("writing to a Vec cannot fail");
}

/// Decodes a twin envelope; an unknown format version is an error, never a
/// guess.
pub fn decode(bytes: &[u8]) -> Result<TwinRecord, EnvelopeError> {
    let corrupt = |e: bincode::error::DecodeError| EnvelopeError::Corrupt(format!("twin payload: {e}"));
    if bytes.len() >= 2 && u16::from_le_bytes([bytes[0], bytes[1]]) == in_parts::FORMAT {
        return in_parts::decode(bytes);
    }
    match envelope::open(bytes, 2, "twin") {
        Ok(payload) => {
            let (old, _) = bincode::serde::decode_from_slice::<v2::Record, _>(payload, config()).map_err(corrupt)?;
            return Ok(old.migrate());
        }
        Err(EnvelopeError::UnknownVersion { .. }) => {}
        Err(e) => return Err(e),
    }
    match envelope::open(bytes, 3, "twin") {
        Ok(payload) => {
            let (rec, _) = bincode::serde::decode_from_slice::<TwinRecord, _>(payload, config()).map_err(corrupt)?;
            return Ok(rec);
        }
        Err(EnvelopeError::UnknownVersion { .. }) => {}
        Err(e) => return Err(e),
    }
    let (format, payload) = envelope::open_any(bytes, &[4, TWIN_FORMAT, in_parts::FORMAT], "twin")?;
    decode_payload(format, payload)
}

/// Decodes a payload of format 4 or 5 (or the header of a record in parts,
/// which is a format 5 payload).
fn decode_payload(format: u16, payload: &[u8]) -> Result<TwinRecord, EnvelopeError> {
    let corrupt = |e: bincode::error::DecodeError| EnvelopeError::Corrupt(format!("twin payload: {e}"));
    let (mut rec, n) = bincode::serde::decode_from_slice::<TwinRecord, _>(payload, config()).map_err(corrupt)?;
    let (commands, k) =
        bincode::serde::decode_from_slice::<CommandsRecord, _>(&payload[n..], config()).map_err(corrupt)?;
    rec.commands = commands;
    if format >= 5 {
        let (filter, f) = bincode::serde::decode_from_slice::<Option<FilterRecord>, _>(&payload[n + k..], config())
            .map_err(corrupt)?;
        rec.filter = filter;
        let rest = &payload[n + k + f..];
        if !rest.is_empty() {
            let (derived, _) =
                bincode::serde::decode_from_slice::<Vec<DerivedRecord>, _>(rest, config()).map_err(corrupt)?;
            rec.derived = derived;
        }
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;

    /// An accumulator as format 2 wrote it: count, sum, min, max.
    type Acc2 = (u64, f64, f64, f64);

    /// A twin record as format 2 wrote it (the layout `v2` reads).
    #[derive(Serialize)]
    struct V2 {
        schema: u64,
        version: u64,
        max_ts: i64,
        sensors: Vec<(u16, i64, f64)>,
        open: Vec<(u16, i64, u64, Acc2)>,
        closed: Vec<(u16, Acc2)>,
        alerts: Vec<(u16, bool, u32, u64, i64, i64)>,
        stats: TwinStats,
    }

    #[test]
    fn a_format_2_record_is_migrated_on_read() {
        let old = V2 {
            schema: 7,
            version: 12,
            max_ts: 10_000,
            sensors: vec![(1, 500, 3.5)],
            open: vec![(0, 999, 42, (4, 10.0, 1.0, 4.0))],
            closed: vec![(0, (2, 3.0, 1.0, 2.0))],
            alerts: vec![(0, true, 3, 5, 9_000, NO_TS)],
            stats: TwinStats {
                events: 12,
                ..TwinStats::default()
            },
        };
        let mut bytes = envelope::start(2, 64);
        bincode::serde::encode_into_std_write(&old, &mut bytes, config()).unwrap();
        let rec = decode(&bytes).unwrap();
        assert_eq!(
            (rec.schema, rec.version, rec.max_ts, rec.stats.events),
            (7, 12, 10_000, 12)
        );
        assert_eq!(
            rec.latest().collect::<Vec<_>>(),
            [(1, Latest { ts: 9_500, value: 3.5 })]
        );
        assert_eq!(rec.sensors[0].quality, Quality::Good);
        let acc = rec.open[0].acc.acc();
        assert_eq!((acc.count, acc.sum, acc.min, acc.max), (4, 10.0, 1.0, 4.0));
        assert_eq!(
            (acc.last, acc.m2),
            (2.5, 0.0),
            "not kept by format 2: the average, no deviation"
        );
        assert_eq!(rec.open[0].first_origin, 42);
        assert_eq!(rec.closed[0].acc.count, 2);
        let a = rec.alerts[0].state;
        assert_eq!(
            (a.active, a.acked, a.seq, a.firings, a.since_ts),
            (true, false, 3, 5, 9_000)
        );
        // Written back, it is format 3.
        assert_eq!(u16::from_le_bytes([bytes[0], bytes[1]]), 2);
    }
}
