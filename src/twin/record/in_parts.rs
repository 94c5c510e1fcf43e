//! A twin record in parts (format 6): the record less its sensors as the
//! header, and each sensor as an entry keyed by its index, in the store's
//! layout of values in parts ([`crate::store::parts`]). A checkpoint of a
//! twin with many sensors, of which few changed since its last record,
//! merges in a record of only those sensors' entries, which the store
//! folds into the value (issue 28's incremental records; docs/decisions.md
//! "Incremental twin records").
//!
//! An entry is copied from value to value without being decoded, so its
//! times cannot be relative to the twin's greatest event time when the
//! value is read (as a whole record's are): they are relative to its
//! section's context, a coarse base of event time and one of processing
//! time ([`Context`]). The base moves every 65.5 s, so the operands of a
//! minute share one and the store joins their sections.
//!
//! What a reader gets is a [`TwinRecord`] as format 5 would have given, its
//! sensors' times relative to the header's `max_ts` and `seen_base`.

use serde::{Deserialize, Serialize};

use super::{config, decode_payload, put_payload, Appender, Encoder, SensorRecord, TwinRecord, TWIN_FORMAT};
use crate::store::envelope::EnvelopeError;
use crate::store::parts::{self, Parts, Writer};
use crate::twin::model::{Changed, Quality, TwinState};
use crate::twin::schema::TypeModel;

/// The envelope format of a record in parts.
pub const FORMAT: u16 = parts::FORMAT;

/// Types with fewer sensors keep whole records: a record is mostly its
/// header, and an operand saves little of it (measured: a workload-v1
/// pump's 4 sensors all report every second).
pub const IN_PARTS_MIN_SENSORS: usize = 8;

/// Bases move in steps of 2^16 ms (65.5 s).
const BASE_STEP_BITS: u32 = 16;

/// Whether a node that may store records in parts (one that keeps no
/// changelog, which takes whole records) stores `m`'s in parts.
pub fn in_parts(m: &TypeModel) -> bool {
    // An entry's id is its sensor's index, a `u16`.
    (IN_PARTS_MIN_SENSORS..=1 << 16).contains(&m.sensors.len())
}

/// Whether a record of only the `changed` sensors pays, rather than a
/// whole one: fewer than half of `m`'s sensors changed.
pub fn operand_pays(m: &TypeModel, changed: Changed) -> bool {
    !changed.is_all() && (changed.count() as usize) * 2 < m.sensors.len()
}

/// What a section's entries are relative to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Context {
    /// A base of event time: entries store `base_ts - ts`.
    base_ts: i64,
    /// A base of processing time: entries store `base_seen - seen`.
    base_seen: i64,
}

fn base(t: i64) -> i64 {
    t & !((1 << BASE_STEP_BITS) - 1)
}

/// A sensor as an entry: a [`SensorRecord`] without its index (the entry's
/// id), its times relative to the section's [`Context`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct SensorEntry {
    age_ms: i64,
    value: f64,
    seen_back: Option<i64>,
    source: u16,
    quality: Quality,
    estimate: Option<(i64, f64)>,
}

impl Encoder {
    /// Encodes a twin as a record in parts: every sensor with a value
    /// (`changed` `None`: the value that replaces the stored one), or only
    /// the `changed` ones (a merge operand; a changed sensor without a value
    /// is removed). [`Encoder::bytes`] holds it until the next.
    pub fn encode_parts(&mut self, m: &TypeModel, st: &TwinState, changed: Option<Changed>) {
        self.rec.fill(m, st, false);
        self.scratch.clear();
        put_payload(&self.rec, &mut self.scratch);
        let ctx = Context {
            base_ts: base(st.max_ts),
            base_seen: base(self.rec.seen_base.unwrap_or(0)),
        };
        let mut w = Writer::new(&mut self.bytes, &self.scratch);
        self.scratch.clear();
        bincode::serde::encode_into_writer(ctx, Appender(&mut self.scratch), config())
            .expect("writing to a Vec cannot fail");
        w.section(&self.scratch);
        let entry = |s: usize| {
            let r = SensorRecord::of(m, st, s, ctx.base_ts, ctx.base_seen);
            SensorEntry {
                age_ms: r.age_ms,
                value: r.value,
                seen_back: r.seen_back,
                source: r.source,
                quality: r.quality,
                estimate: r.estimate,
            }
        };
        let put = |s: usize| {
            if st.sensors[s].is_set() {
                w.entry_with(s as u16, |out| {
                    bincode::serde::encode_into_writer(entry(s), Appender(out), config())
                        .expect("writing to a Vec cannot fail");
                });
            } else {
                w.entry(s as u16, &[]);
            }
        };
        match changed {
            None => (0..st.sensors.len()).filter(|s| st.sensors[*s].is_set()).for_each(put),
            Some(changed) => changed.iter().filter(|s| *s < st.sensors.len()).for_each(put),
        }
        w.finish();
        self.operand = changed.is_some();
    }
}

/// Decodes a record in parts into the record format 5 would have given.
pub(super) fn decode(bytes: &[u8]) -> Result<TwinRecord, EnvelopeError> {
    let corrupt = |what: String| EnvelopeError::Corrupt(format!("twin record in parts: {what}"));
    let p = Parts::read(bytes).map_err(|e| corrupt(e.to_string()))?;
    let mut rec = decode_payload(TWIN_FORMAT, p.header)?;
    rec.sensors.clear();
    for s in &p.sections {
        let (ctx, _) = bincode::serde::decode_from_slice::<Context, _>(s.context, config())
            .map_err(|e| corrupt(format!("section context: {e}")))?;
        for (id, bytes) in &s.entries {
            if bytes.is_empty() {
                continue;
            }
            let (e, _) = bincode::serde::decode_from_slice::<SensorEntry, _>(bytes, config())
                .map_err(|e| corrupt(format!("sensor {id}: {e}")))?;
            let ts = ctx.base_ts.wrapping_sub(e.age_ms);
            let seen_back = match (e.seen_back, rec.seen_base) {
                (None, _) => None,
                (Some(back), Some(seen_base)) => Some(seen_base.wrapping_sub(ctx.base_seen.wrapping_sub(back))),
                (Some(_), None) => return Err(corrupt(format!("sensor {id} was heard from, the record never"))),
            };
            rec.sensors.push(SensorRecord {
                sensor: *id,
                age_ms: rec.max_ts.wrapping_sub(ts),
                value: e.value,
                seen_back,
                source: e.source,
                quality: e.quality,
                estimate: e
                    .estimate
                    .map(|(age, v)| (rec.max_ts.wrapping_sub(ctx.base_ts.wrapping_sub(age)), v)),
            });
        }
    }
    rec.sensors.sort_unstable_by_key(|s| s.sensor);
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::parts::fold;
    use crate::twin::model::{apply, Input};
    use crate::twin::model_tests::{hall_batch, hall_steps, type_model, HALL};
    use crate::twin::record::decode;

    proptest! {
        /// Whatever a twin went through, the stored value (its last whole
        /// record, and the operands of the sensors that changed since,
        /// folded as the store folds them) reads back as the whole record
        /// of its state, and restores the state.
        #[test]
        fn the_folded_record_in_parts_is_the_whole_record(steps in hall_steps()) {
            let m = type_model(HALL);
            prop_assert!(in_parts(&m));
            let mut st = TwinState::new(&m);
            let mut enc = Encoder::default();
            let (mut out, mut now) = (Vec::new(), 1_700_000_000_000i64);
            // The values since the last whole record, oldest first.
            let mut stored: Vec<Vec<u8>> = Vec::new();
            for (readings, gap, tick) in steps {
                now += gap;
                apply(&m, &mut st, Input::Events(&hall_batch(&readings)), now, &mut out);
                if tick {
                    apply(&m, &mut st, Input::Tick, now, &mut out);
                }
                let changed = st.sensors.take_changed();
                let operand = operand_pays(&m, changed).then_some(changed);
                enc.encode_parts(&m, &st, operand);
                prop_assert_eq!(enc.is_operand(), operand.is_some());
                if operand.is_none() {
                    stored.clear();
                }
                stored.push(enc.bytes().to_vec());
                let value = fold(stored.iter().map(|v| &v[..]), true).expect("folds");
                let rec = decode(&value).expect("decodes");
                prop_assert_eq!(&rec, &TwinRecord::from_state(&m, &st));
                let (back, notes) = rec.into_state(&m, &m.schema);
                prop_assert!(notes.dropped.is_empty());
                prop_assert_eq!(&back, &st);
            }
        }
    }

    #[test]
    fn few_changed_sensors_make_an_operand_and_most_a_whole_record() {
        let m = type_model(HALL);
        let mut st = TwinState::new(&m);
        assert!(!operand_pays(&m, st.sensors.take_changed()), "a new twin is whole");
        st.sensors.get_mut(3).value = 1.0;
        st.sensors.get_mut(0).value = 1.0;
        let changed = st.sensors.take_changed();
        assert_eq!(changed.iter().collect::<Vec<_>>(), [0, 3]);
        assert!(operand_pays(&m, changed));
        for s in 0..5 {
            st.sensors.get_mut(s).value = 2.0;
        }
        assert!(!operand_pays(&m, st.sensors.take_changed()), "half of 10 changed");
        assert_eq!(st.sensors.changed().count(), 0, "taking the marks clears them");
    }
}
