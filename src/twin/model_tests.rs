//! Table-driven tests of the pure twin model.

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use super::model::*;
use super::record;
use super::schema::{Model, OutputMask, TypeModel};
use crate::topology;

const BASE: &str = r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s }
      temperature: { unit: degC }
    watermark: { out_of_orderness: 200ms }
assets: [{ id: "p-*", type: pump }]
sources: [{ name: f, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#;

/// The first asset type of topology `text`, compiled with every output.
pub(crate) fn type_model(text: &str) -> Arc<TypeModel> {
    let topo = topology::parse(Path::new("t.yaml"), text).unwrap_or_else(|d| panic!("{d}"));
    Model::build(&topo, OutputMask::all(), false).types[0].clone()
}

fn model(extra: &str) -> Arc<TypeModel> {
    let text = format!("{BASE}{extra}");
    type_model(&text)
}

const W1S: &str = "windows: [{ name: w1s, size: 1s }]\n";

/// A hall of 10 sensors (many: its records are stored in parts and its
/// batches log their sensors' changes): most plain, two that go stale, one
/// with a deadband estimate, one with two sources.
pub(crate) const HALL: &str = r#"
asset_types:
  hall:
    sensors:
      s0: { unit: degC, expected_every: 1s, stale_after: 5s }
      s1: { unit: degC }
      s2: { unit: degC }
      s3: { unit: degC }
      s4: { unit: degC }
      s5: { unit: degC }
      s6: { unit: degC }
      s7: { unit: degC }
      s8: { unit: degC, expected_every: 1s, stale_after: 5s, deadband: 0.5 }
      s9:
        unit: bar
        sources: { plc: { trust: 0.9 }, scada: { trust: 0.5 } }
        resolve: latest
        tolerance: 1.0
    watermark: { out_of_orderness: 200ms }
assets: [{ id: "h-*", type: hall }]
sources:
  - { name: plc, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }
  - { name: scada, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }
windows: [{ name: w1s, size: 1s }]
"#;

/// A step of a [`HALL`] twin: readings `(sensor, source, event time,
/// value)` applied at a processing time that moves on by `gap` ms, then
/// maybe a timer tick.
pub(crate) type HallStep = (Vec<(u16, u16, i64, i64)>, i64, bool);

pub(crate) fn hall_steps() -> impl Strategy<Value = Vec<HallStep>> {
    let reading = (0u16..10, 0u16..2, 0i64..200_000, 0i64..64);
    let step = (prop::collection::vec(reading, 0..6), 0i64..8_000, any::<bool>());
    prop::collection::vec(step, 1..25)
}

/// The events of a [`HallStep`]'s readings.
pub(crate) fn hall_batch(readings: &[(u16, u16, i64, i64)]) -> Vec<Event> {
    readings
        .iter()
        .map(|&(sensor, source, ts, v)| Event {
            ts: 1_700_000_000_000 + ts,
            value: v as f64 / 4.0,
            sensor,
            source: if sensor == 9 { source } else { 0 },
            origin: 0,
            redelivered: false,
            replayed: false,
        })
        .collect()
}

pub(super) fn ev(sensor: u16, ts: i64, value: f64) -> Event {
    Event {
        ts,
        value,
        sensor,
        source: 0,
        origin: 0,
        redelivered: false,
        replayed: false,
    }
}

fn run(m: &TypeModel, events: &[Event]) -> (TwinState, Vec<Output>) {
    let mut st = TwinState::new(m);
    let mut out = Vec::new();
    apply(m, &mut st, Input::Events(events), 0, &mut out);
    (st, out)
}

fn windows(out: &[Output]) -> Vec<(u16, i64, u64, f64)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Window { slot, start, acc } => Some((*slot, *start, acc.count, acc.sum)),
            _ => None,
        })
        .collect()
}

#[test]
fn latest_value_is_chosen_by_event_time_ties_go_to_the_later_arrival() {
    let m = model("");
    // (events, expected latest of sensor 0 as (ts, value))
    let rows: &[(&[Event], (i64, f64))] = &[
        (&[ev(0, 10, 1.0)], (10, 1.0)),
        (&[ev(0, 10, 1.0), ev(0, 20, 2.0)], (20, 2.0)),
        (&[ev(0, 20, 2.0), ev(0, 10, 1.0)], (20, 2.0)), // older arrives late: ignored
        (&[ev(0, 10, 1.0), ev(0, 10, 3.0)], (10, 3.0)), // tie: later arrival
        (&[ev(0, 30, 3.0), ev(1, 40, 9.0), ev(0, 25, 1.0)], (30, 3.0)),
    ];
    for (events, (ts, value)) in rows {
        let (st, _) = run(&m, events);
        assert_eq!((st.sensors[0].ts, st.sensors[0].value), (*ts, *value), "{events:?}");
        assert_eq!(st.stats.events, events.len() as u64);
        assert_eq!(st.version, events.len() as u64);
    }
}

#[test]
fn windows_close_when_the_watermark_passes_their_last_millisecond() {
    let m = model(W1S);
    // Window [0, 999] closes when max_ts - 200 >= 999, i.e. at max_ts 1199.
    let rows: &[(&[Event], usize)] = &[
        (&[ev(0, 0, 1.0), ev(0, 1198, 1.0)], 0),
        (&[ev(0, 0, 1.0), ev(0, 1199, 1.0)], 1),
        (&[ev(0, 999, 1.0), ev(0, 1199, 1.0)], 1), // last millisecond is inside
        (&[ev(0, 1000, 1.0), ev(0, 1199, 1.0)], 0), // first ms of the next window
        (&[ev(0, 0, 1.0), ev(1, 1199, 1.0)], 1),   // any sensor advances the asset watermark
    ];
    for (events, closed) in rows {
        let (_, out) = run(&m, events);
        assert_eq!(windows(&out).len(), *closed, "{events:?}");
    }
}

#[test]
fn window_aggregates_and_late_events() {
    let m = model(W1S);
    let events = [
        ev(0, 100, 1.0),
        ev(0, 900, 3.0),
        ev(0, 50, 2.0),    // out of order, not late: window still open
        ev(0, 1300, 5.0),  // closes [0,999] (watermark 1100 >= 999)
        ev(0, 999, 100.0), // late: its window has been emitted
        ev(0, 1400, 1.0),
    ];
    let (st, out) = run(&m, &events);
    let w = windows(&out);
    assert_eq!(w, vec![(0, 0, 3, 6.0)]);
    assert_eq!(st.stats.late, 1);
    assert_eq!(st.stats.windows, 1);
    assert_eq!(st.stats.window_count_sum, 3);
    assert_eq!(st.stats.window_sum_x64, 6 * 64);
    assert_eq!(st.stats.window_max_x64, 3 * 64);
    // The late event still counts for latest-value purposes only if newest: it is not.
    assert_eq!(st.sensors[0].ts, 1400);
    // End of input closes the rest, in order.
    let mut st = st;
    let mut out = Vec::new();
    apply(&m, &mut st, Input::EndOfInput, 0, &mut out);
    assert_eq!(windows(&out), vec![(0, 1000, 2, 6.0)]);
    assert!(st.open.is_empty());
}

#[test]
fn a_late_event_is_judged_against_the_watermark_before_it() {
    let m = model(W1S);
    // 1199 arrives first and closes [0,999]; then 999 is late.
    let (st, _) = run(&m, &[ev(0, 1199, 1.0), ev(0, 999, 1.0)]);
    assert_eq!(st.stats.late, 1);
    // The event that advances the watermark is itself judged before: ts 1200
    // with watermark -inf goes into [1000, 1999].
    let (st, _) = run(&m, &[ev(0, 5000, 1.0)]);
    assert_eq!(st.stats.late, 0);
    assert_eq!(st.open.len(), 1);
}

#[test]
fn sliding_windows_assign_each_event_to_every_covering_window() {
    let m = model("windows: [{ name: s, type: sliding, size: 3s, slide: 1s, sensors: [vibration] }]\n");
    let (mut st, _) = run(&m, &[ev(0, 2500, 1.0), ev(1, 2600, 7.0)]);
    // 2500 falls in [0,2999], [1000,3999], [2000,4999]; temperature has no window.
    assert_eq!(st.open.len(), 3);
    let mut out = Vec::new();
    apply(&m, &mut st, Input::EndOfInput, 0, &mut out);
    let starts: Vec<i64> = windows(&out).iter().map(|w| w.1).collect();
    assert_eq!(starts, vec![0, 1000, 2000]);
}

fn alerts(out: &[Output]) -> Vec<(u16, Transition, u32)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Alert {
                rule, transition, seq, ..
            } => Some((*rule, *transition, *seq)),
            _ => None,
        })
        .collect()
}

#[test]
fn window_rule_raises_once_counts_firings_and_clears() {
    let m = model(&format!(
        "{W1S}rules: [{{ name: high, when: \"w1s.vibration.avg > 7.0\" }}]\n"
    ));
    // Windows: avg 8 (raise), avg 9 (still firing), avg 1 (clear), avg 8 (raise #2).
    let mut events = Vec::new();
    for (sec, v) in [(0, 8.0), (1, 9.0), (2, 1.0), (3, 8.0), (4, 0.0)] {
        events.push(ev(0, sec * 1000 + 500, v));
    }
    events.push(ev(0, 10_000, 0.0));
    let (st, out) = run(&m, &events);
    assert_eq!(
        alerts(&out),
        vec![
            (0, Transition::Raised, 1),
            (0, Transition::Cleared, 1),
            (0, Transition::Raised, 2),
            (0, Transition::Cleared, 2),
        ]
    );
    assert_eq!(st.stats.firings, 3, "every window above 7 is a firing");
    assert!(!st.alerts[0].active);
}

/// A named case: `temperature` readings `(ts, value)` and the transitions
/// (with their event times) they must produce.
type RuleCase<'a> = (&'a str, &'a [(i64, f64)], &'a [(Transition, i64)]);

/// Event times and transitions (with their timestamps) of one rule over a
/// series of `temperature` readings.
fn transitions_over(m: &TypeModel, readings: &[(i64, f64)]) -> Vec<(Transition, i64)> {
    let events: Vec<Event> = readings.iter().map(|&(ts, v)| ev(1, ts, v)).collect();
    let (_, out) = run(m, &events);
    out.iter()
        .filter_map(|o| match o {
            Output::Alert { transition, ts, .. } => Some((*transition, *ts)),
            _ => None,
        })
        .collect()
}

#[test]
fn clear_when_holds_an_alert_through_a_rule_flapping_around_its_threshold() {
    use Transition::*;
    let m = model("rules: [{ name: hot, when: \"temperature > 90\", clear_when: \"temperature < 80\" }]\n");
    let rows: &[RuleCase] = &[
        (
            "raise, flap 89/91, clear below 80",
            &[(1, 95.0), (2, 89.0), (3, 91.0), (4, 88.0), (5, 79.0)],
            &[(Raised, 1), (Cleared, 5)],
        ),
        (
            "between the thresholds, never raised",
            &[(1, 85.0), (2, 89.9), (3, 81.0)],
            &[],
        ),
        (
            "exactly on the thresholds: neither",
            &[(1, 90.0), (2, 95.0), (3, 80.0), (4, 79.9)],
            &[(Raised, 2), (Cleared, 4)],
        ),
        (
            "raised again after clearing",
            &[(1, 95.0), (2, 70.0), (3, 85.0), (4, 91.0)],
            &[(Raised, 1), (Cleared, 2), (Raised, 4)],
        ),
    ];
    for (name, readings, want) in rows {
        assert_eq!(transitions_over(&m, readings), *want, "{name}");
    }
    // Without `clear_when` the same flapping raises and clears every time.
    let plain = model("rules: [{ name: hot, when: \"temperature > 90\" }]\n");
    assert_eq!(
        transitions_over(&plain, &[(1, 95.0), (2, 89.0), (3, 91.0)]),
        vec![(Raised, 1), (Cleared, 2), (Raised, 3)]
    );
}

#[test]
fn for_raises_only_after_the_condition_held_that_long() {
    use Transition::*;
    let m = model("rules: [{ name: hot, when: \"temperature > 90\", for: 30s }]\n");
    let rows: &[RuleCase] = &[
        (
            "held 30 s: raised at 30 s",
            &[(0, 95.0), (10_000, 96.0), (30_000, 97.0)],
            &[(Raised, 30_000)],
        ),
        ("held 29.999 s: not yet", &[(0, 95.0), (29_999, 96.0)], &[]),
        (
            "interrupted by one good reading: starts over",
            &[
                (0, 95.0),
                (20_000, 85.0),
                (25_000, 95.0),
                (50_000, 95.0),
                (55_000, 95.0),
            ],
            &[(Raised, 55_000)],
        ),
        (
            "clears at once when it stops holding",
            &[(0, 95.0), (30_000, 95.0), (31_000, 80.0)],
            &[(Raised, 30_000), (Cleared, 31_000)],
        ),
    ];
    for (name, readings, want) in rows {
        assert_eq!(transitions_over(&m, readings), *want, "{name}");
    }
}

#[test]
fn a_pending_for_survives_a_snapshot_and_restore() {
    let m = model("rules: [{ name: hot, when: \"temperature > 90\", for: 30s }]\n");
    let (st, out) = run(&m, &[ev(1, 0, 95.0), ev(1, 20_000, 95.0)]);
    assert!(out.iter().all(|o| !matches!(o, Output::Alert { .. })), "{out:?}");
    let (mut back, _) = record::decode(&record::encode(&m, &st))
        .unwrap()
        .into_state(&m, &m.schema);
    assert_eq!(back, st);
    let mut out = Vec::new();
    apply(&m, &mut back, Input::Events(&[ev(1, 30_000, 95.0)]), 0, &mut out);
    assert_eq!(
        alerts(&out),
        vec![(0, Transition::Raised, 1)],
        "pending since 0 s, not since the restore"
    );
}

#[test]
fn latest_value_rules_fire_on_transitions_and_never_on_missing_data() {
    let m = model("rules: [{ name: hot, when: \"temperature > 90 and vibration < 5\" }]\n");
    let rows: &[(&[Event], &[Transition])] = &[
        (&[ev(1, 1, 95.0)], &[]), // vibration unknown: does not fire
        (&[ev(0, 1, 1.0), ev(1, 2, 95.0)], &[Transition::Raised]),
        (&[ev(0, 1, 1.0), ev(1, 2, 95.0), ev(1, 3, 96.0)], &[Transition::Raised]),
        (
            &[ev(0, 1, 1.0), ev(1, 2, 95.0), ev(1, 3, 20.0)],
            &[Transition::Raised, Transition::Cleared],
        ),
        (&[ev(0, 1, 1.0), ev(1, 3, 95.0), ev(1, 2, 20.0)], &[Transition::Raised]), // older value ignored
    ];
    for (events, want) in rows {
        let (_, out) = run(&m, events);
        let got: Vec<Transition> = alerts(&out).iter().map(|a| a.1).collect();
        assert_eq!(got, *want, "{events:?}");
    }
}

#[test]
fn rules_over_windows_closing_together_see_both() {
    let m = model(&format!(
        "{W1S}rules: [{{ name: r, when: \"w1s.vibration.avg > w1s.temperature.avg\" }}]\n"
    ));
    let (st, out) = run(&m, &[ev(0, 100, 5.0), ev(1, 100, 4.0), ev(0, 2000, 0.0)]);
    assert_eq!(alerts(&out), vec![(0, Transition::Raised, 1)]);
    assert_eq!(st.stats.firings, 1, "evaluated once per group of windows");
}

#[test]
fn records_round_trip_and_survive_topology_edits() {
    let m = model(&format!(
        "{W1S}rules: [{{ name: high, when: \"w1s.vibration.avg > 1\" }}]\n"
    ));
    let (st, _) = run(
        &m,
        &[ev(0, 100, 5.0), ev(1, 200, 4.0), ev(0, 1300, 2.0), ev(1, 1400, 3.0)],
    );
    let bytes = record::encode(&m, &st);
    let (back, notes) = record::decode(&bytes).unwrap().into_state(&m, &m.schema);
    assert_eq!(back, st);
    assert!(notes.dropped.is_empty());

    // The same record under a model without `temperature`: it is dropped, the rest kept.
    let text = BASE.replace("      temperature: { unit: degC }\n", "");
    let topo = topology::parse(Path::new("t.yaml"), &format!("{text}{W1S}")).unwrap();
    let m2 = Model::build(&topo, OutputMask::all(), false).types[0].clone();
    assert_ne!(m2.schema_id, m.schema_id);
    let (back, notes) = record::decode(&bytes).unwrap().into_state(&m2, &m.schema);
    assert_eq!(back.sensors[0], st.sensors[0]);
    assert_eq!(back.open.len(), 1, "the open temperature window is gone");
    assert_eq!(back.stats, st.stats);
    assert!(notes.dropped.iter().any(|d| d.contains("temperature")), "{notes:?}");
}

#[test]
fn an_unknown_record_version_is_refused() {
    let m = model("");
    let mut bytes = record::encode(&m, &TwinState::new(&m));
    bytes[0] = 42;
    let err = record::decode(&bytes).unwrap_err();
    assert!(err.to_string().contains("format version 42"), "{err}");
}

/// WORKLOAD.md semantics for one asset, written the obvious way.
fn reference(events: &[Event], ooo: i64, size: i64) -> (u64, Vec<(u16, i64, u64, f64)>) {
    use std::collections::BTreeMap;
    let mut open: BTreeMap<(i64, u16), (u64, f64)> = BTreeMap::new();
    let mut fired = Vec::new();
    let mut max_ts: Option<i64> = None;
    let mut late = 0;
    for e in events {
        let wm = max_ts.map_or(i64::MIN, |m| m - ooo);
        let start = e.ts - e.ts.rem_euclid(size);
        if start + size - 1 <= wm {
            late += 1;
        } else {
            let w = open.entry((start, e.sensor)).or_insert((0, 0.0));
            w.0 += 1;
            w.1 += e.value;
        }
        if max_ts.is_none_or(|m| e.ts > m) {
            max_ts = Some(e.ts);
            let wm = e.ts - ooo;
            let ready: Vec<_> = open.keys().filter(|(s, _)| s + size - 1 <= wm).copied().collect();
            for k in ready {
                let (c, s) = open.remove(&k).unwrap();
                fired.push((k.1, k.0, c, s));
            }
        }
    }
    for ((start, sensor), (c, s)) in open {
        fired.push((sensor, start, c, s));
    }
    fired.sort_by_key(|w| (w.1, w.0));
    (late, fired)
}

fn arb_events() -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec((0u16..2, 0i64..6000, 0i64..64), 0..200)
        .prop_map(|v| v.into_iter().map(|(s, ts, q)| ev(s, ts, q as f64 / 4.0)).collect())
}

proptest! {
    /// The supervision backup: whatever a batch did to a twin (windows
    /// closed into the replay digest and readings logged for history
    /// included), rolling back restores the state before it exactly.
    #[test]
    fn rolling_back_a_batch_restores_the_state_before_it(before in arb_events(), batch in arb_events(), logged in any::<bool>()) {
        let text = format!("{BASE}{W1S}").replace("    watermark:", "    history: on\n    watermark:");
        let topo = topology::parse(Path::new("t.yaml"), &text).unwrap_or_else(|d| panic!("{d}"));
        let m = Model::build(&topo, OutputMask::all(), true).types[0].clone();
        let mut st = TwinState::new(&m);
        let mut out = Vec::new();
        apply(&m, &mut st, Input::Events(&before), 0, &mut out);
        // As after a snapshot: no sensor changed since the record.
        st.sensors.take_changed();
        let saved = st.clone();
        // A scratch that last backed up some other twin.
        let mut backup = saved.clone();
        apply(&m, &mut backup, Input::Events(&batch), 0, &mut out);
        apply(&m, &mut backup, Input::EndOfInput, 0, &mut out);
        // Either way of keeping the sensors, whichever the type would use.
        let how = if logged { SensorsBackup::Logged } else { SensorsBackup::Copied };
        let marks = st.back_up(&mut backup, how);
        apply(&m, &mut st, Input::Events(&batch), 7, &mut out);
        apply(&m, &mut st, Input::EndOfInput, 7, &mut out);
        prop_assume!(st.digest().len() > saved.digest().len(), "the batch closes windows");
        let logged = |s: &TwinState| s.history.as_ref().map_or(0, |h| h.raw.len());
        prop_assert_eq!(logged(&st), logged(&saved) + batch.len(), "each event of the batch is logged");
        prop_assert!(!st.history.as_ref().unwrap().partials.is_empty());
        st.roll_back(&mut backup, marks);
        prop_assert_eq!(&st, &saved);
        prop_assert_eq!(st.sensors.changed(), saved.sensors.changed(), "and so did the marks");
    }

    /// Supervision of a twin of many sensors, whose batches log the sensors
    /// they change: over a history of batches and timer ticks, each kept or
    /// rolled back, a roll-back restores the state and change marks before
    /// the batch (so a kept batch left no sensor saved that the next would
    /// not save again), the stale count a kept batch reports agrees with
    /// the states, and a copy of the twin changed inside a batch is not
    /// put back in its place.
    #[test]
    fn a_many_sensor_twin_rolls_back_by_its_undo_log(steps in hall_steps(), panics in prop::collection::vec(any::<bool>(), 25)) {
        let m = type_model(HALL);
        prop_assert_eq!(SensorsBackup::of(&m), SensorsBackup::Logged);
        let mut st = TwinState::new(&m);
        let mut backup = TwinState::new(&type_model(BASE));
        let (mut out, mut now) = (Vec::new(), 1_700_000_000_000i64);
        for ((readings, gap, tick), panics) in steps.into_iter().zip(panics) {
            now += gap;
            if panics {
                st.sensors.take_changed();
            }
            let before = st.clone();
            // A copy of the twin, changed before the batch and inside it.
            let mut copy = st.clone();
            let s = readings.first().map_or(0, |r| r.0 as usize);
            copy.sensors.get_mut(s).value = -1.0;
            let marks = st.back_up(&mut backup, SensorsBackup::Logged);
            copy.sensors.get_mut(s).value = -2.0;
            apply(&m, &mut st, Input::Events(&hall_batch(&readings)), now, &mut out);
            if tick {
                apply(&m, &mut st, Input::Tick, now, &mut out);
            }
            if panics {
                st.roll_back(&mut backup, marks);
                prop_assert_eq!(&st, &before);
                prop_assert_eq!(st.sensors.changed(), before.sensors.changed());
            } else {
                let stale = st.keep(&backup, marks);
                prop_assert_eq!(stale, st.sensors.stale() as i64 - before.sensors.stale() as i64);
            }
        }
    }

    /// A worker encodes every dirty twin through one kept encoder: a record
    /// never carries a part of the twin encoded before it.
    #[test]
    fn one_encoder_for_many_twins_writes_each_as_alone(a in arb_events(), b in arb_events()) {
        let m = model(&format!("{W1S}rules: [{{ name: high, when: \"w1s.vibration.avg > 8\" }}]\n"));
        let (mut big, mut out) = run(&m, &a);
        apply(&m, &mut big, Input::EndOfInput, 0, &mut out);
        let (small, _) = run(&m, &b);
        let bare = TwinState::new(&m);
        let mut enc = record::Encoder::default();
        for st in [&big, &small, &bare, &big] {
            enc.encode(&m, st);
            prop_assert_eq!(enc.bytes(), &record::encode(&m, st)[..]);
        }
    }

    #[test]
    fn windows_match_the_reference_semantics(events in arb_events()) {
        let m = model(W1S);
        let (mut st, mut out) = run(&m, &events);
        apply(&m, &mut st, Input::EndOfInput, 0, &mut out);
        let mut got = windows(&out);
        got.sort_by_key(|w| (w.1, w.0));
        let (late, want) = reference(&events, 200, 1000);
        prop_assert_eq!(st.stats.late, late);
        prop_assert_eq!(got, want);
        prop_assert_eq!(st.stats.events, events.len() as u64);
    }

    #[test]
    fn batching_does_not_change_the_twin(events in arb_events(), cuts in prop::collection::vec(0usize..200, 0..8)) {
        let m = model(&format!("{W1S}rules: [{{ name: high, when: \"w1s.vibration.avg > 8\" }}]\n"));
        let (whole, _) = run(&m, &events);
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c <= events.len()).collect();
        cuts.sort_unstable();
        let mut st = TwinState::new(&m);
        let mut out = Vec::new();
        let mut from = 0;
        for c in cuts.into_iter().chain(std::iter::once(events.len())) {
            apply(&m, &mut st, Input::Events(&events[from..c.max(from)]), 0, &mut out);
            from = c.max(from);
        }
        prop_assert_eq!(st, whole);
    }
}

/// `(seq, transition, ts, value)` of a command.
type Sent = (u32, Transition, i64, f64);

/// The commands in `out`.
fn commands(out: &[Output]) -> Vec<Sent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Command {
                seq,
                transition,
                ts,
                value,
                ..
            } => Some((*seq, *transition, *ts, *value)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_rule_command_goes_out_when_its_alert_is_raised_and_with_on_clear_when_it_clears() {
    use Transition::*;
    let readings = [(1, 95.0), (2, 96.0), (3, 70.0), (4, 97.0)];
    let events: Vec<Event> = readings.iter().map(|&(ts, v)| ev(1, ts, v)).collect();
    let rows: &[(&str, &str, &[Sent])] = &[
        (
            "value on raise, on_clear on clear; a rule still firing sends nothing",
            "command: { name: cooling, value: 1, on_clear: 0 }",
            &[(1, Raised, 1, 1.0), (1, Cleared, 3, 0.0), (2, Raised, 4, 1.0)],
        ),
        (
            "without on_clear, nothing is sent on clear",
            "command: { name: cooling, value: 2.5 }",
            &[(1, Raised, 1, 2.5), (2, Raised, 4, 2.5)],
        ),
    ];
    for (name, command, want) in rows {
        let m = model(&format!(
            "rules: [{{ name: hot, when: \"temperature > 90\", {command} }}]\n"
        ));
        let (_, out) = run(&m, &events);
        assert_eq!(commands(&out), *want, "{name}");
    }
    // A topology no sink takes commands from builds none.
    let text =
        format!("{BASE}rules: [{{ name: hot, when: \"temperature > 90\", command: {{ name: c, value: 1 }} }}]\n");
    let topo = topology::parse(Path::new("t.yaml"), &text).unwrap();
    let m = Model::build(&topo, OutputMask::default().with(topology::OutputKind::Alerts), false).types[0].clone();
    let (_, out) = run(&m, &events);
    assert!(commands(&out).is_empty());
    assert_eq!(transitions_over(&m, &readings).len(), 3, "the alerts still go out");
}

const TANK: &str = r#"
asset_types:
  tank:
    sensors:
      level: { unit: m, noise: 0.1 }
      inflow: { unit: m3/h }
    model: { preset: level_rate, sensor: level, q: 0.001 }
assets: [{ id: "t-*", type: tank }]
windows: [{ name: w1s, size: 1s }]
sources: [{ name: f, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#;

fn tank(extra: &str) -> Arc<TypeModel> {
    let text = format!("{TANK}{extra}");
    type_model(&text)
}

#[test]
fn the_model_estimate_is_in_twin_updates_and_rules_read_it() {
    let m = tank("rules: [{ name: rising, when: \"est.rate > 0.5\" }]\n");
    // A level rising 1 per second: the rate estimate climbs past 0.5.
    let events: Vec<Event> = (0..10).map(|i| ev(0, i * 1000, i as f64)).collect();
    let (st, out) = run(&m, &events);
    let f = st.filter().expect("a model gives the twin a filter");
    assert_eq!(f.updates, 10);
    assert!((f.state(1).0 - 1.0).abs() < 0.05, "rate {:?}", f.state(1));
    let raised = out
        .iter()
        .find_map(|o| match o {
            Output::Alert {
                transition: Transition::Raised,
                inputs,
                ..
            } => Some(inputs.clone()),
            _ => None,
        })
        .expect("the rule on the rate estimate fires");
    assert!(raised[0] > 0.5, "{raised:?}");
    let update = out
        .iter()
        .rev()
        .find_map(|o| match o {
            Output::TwinUpdate { model, .. } => model.clone(),
            _ => None,
        })
        .expect("twin updates carry the estimate");
    assert_eq!(update.ts, 9000);
    assert_eq!(update.states.len(), 2);
    assert_eq!(update.sensors[0].sensor, 0);
    // A sensor the model does not observe moves the estimate not at all.
    let mut st2 = st.clone();
    let mut out2 = Vec::new();
    apply(&m, &mut st2, Input::Events(&[ev(1, 9500, 3.0)]), 0, &mut out2);
    assert_eq!(st2.filter(), st.filter());
    assert!(out2
        .iter()
        .all(|o| !matches!(o, Output::TwinUpdate { model: Some(_), .. })));
}

#[test]
fn a_reading_older_than_the_estimate_is_counted_and_still_reaches_values_and_windows() {
    let m = tank("");
    let (st, out) = run(&m, &[ev(0, 5000, 1.0), ev(0, 4500, 7.0)]);
    let f = st.filter().unwrap();
    assert_eq!((f.updates, f.out_of_order, f.t), (1, 1, 5000));
    // Latest by event time is still the 5000 one; the window took both.
    assert_eq!(st.sensors[0].value, 1.0);
    assert_eq!(st.open.iter().map(|w| w.acc.count).sum::<u64>(), 2);
    assert!(out.iter().all(|o| !matches!(o, Output::Late { .. })));
}

#[test]
fn the_filter_round_trips_through_records_and_restarts_when_the_model_changes() {
    let m = tank("");
    let events: Vec<Event> = (0..20).map(|i| ev(0, i * 700, (i % 3) as f64)).collect();
    let (st, _) = run(&m, &events);
    let bytes = record::encode(&m, &st);
    assert_eq!(u16::from_le_bytes([bytes[0], bytes[1]]), record::TWIN_FORMAT);
    let (back, notes) = record::decode(&bytes).unwrap().into_state(&m, &m.schema);
    assert_eq!(back, st, "estimate, covariance, residuals and the NIS window restored");
    assert!(notes.dropped.is_empty(), "{notes:?}");

    // Another model (q changed): its version differs, the filter starts again.
    let text = TANK.replace("q: 0.001", "q: 0.002");
    let topo = topology::parse(Path::new("t.yaml"), &text).unwrap();
    let m2 = Model::build(&topo, OutputMask::all(), false).types[0].clone();
    let (back, notes) = record::decode(&bytes).unwrap().into_state(&m2, &m.schema);
    assert_eq!(back.filter().unwrap().updates, 0);
    assert_eq!(back.sensors[0], st.sensors[0]);
    assert!(notes.dropped.iter().any(|d| d.contains("estimate")), "{notes:?}");
}

#[test]
fn a_format_4_record_from_before_models_still_reads() {
    let m = model("");
    let (st, _) = run(&m, &[ev(0, 100, 5.0)]);
    let mut bytes = record::encode(&m, &st);
    // Format 5 appends the filter (here `None`, one byte) to format 4.
    assert_eq!(bytes.pop(), Some(0));
    bytes[..2].copy_from_slice(&4u16.to_le_bytes());
    let (back, _) = record::decode(&bytes).unwrap().into_state(&m, &m.schema);
    assert_eq!(back, st);
}

/// Deterministic, nearly Gaussian noise of standard deviation 1 (the sum of
/// twelve uniforms, xorshift).
struct Gauss(u64);

impl Gauss {
    fn next(&mut self) -> f64 {
        let mut sum = 0.0;
        for _ in 0..12 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            sum += (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        }
        sum - 6.0
    }
}

#[test]
fn the_model_anomaly_alert_catches_a_stuck_sensor_and_a_bias_and_clears_between() {
    let m = tank("");
    let text = TANK.replace(
        "model: { preset: level_rate, sensor: level, q: 0.001 }",
        "model: { preset: level, sensor: level, q: 0.000001, anomaly: { window: 10, false_alarm: 0.001 } }",
    );
    let m2 = type_model(&text);
    assert_ne!(m.schema_id, m2.schema_id);
    let m = m2;
    let rule = m.rule_index("model:anomaly").expect("the built-in anomaly alert");
    let mut noise = Gauss(0x2545_f491_4f6c_dd1d);
    let mut st = TwinState::new(&m);
    let mut t = 0;
    // Feeds `n` readings made by `reading(i)`; returns the transitions of the
    // anomaly alert with the index of the reading that caused them.
    let mut feed = |st: &mut TwinState, n: usize, reading: &mut dyn FnMut() -> f64| {
        let mut transitions = Vec::new();
        for i in 0..n {
            t += 1000;
            let mut out = Vec::new();
            apply(&m, st, Input::Events(&[ev(0, t, reading())]), 0, &mut out);
            for o in out {
                if let Output::Alert {
                    rule: r,
                    transition,
                    inputs,
                    ..
                } = o
                {
                    if r == rule {
                        transitions.push((i, transition, inputs));
                    }
                }
            }
        }
        transitions
    };
    // Fault-free: sigma 0.1 around 10.
    let normal = feed(&mut st, 300, &mut || 10.0 + 0.1 * noise.next());
    assert!(normal.is_empty(), "false alarms: {normal:?}");
    // Stuck at a plausible value: the readings vary less than their noise.
    let stuck = feed(&mut st, 20, &mut || 10.0);
    assert_eq!(stuck.len(), 1, "{stuck:?}");
    assert_eq!(stuck[0].1, Transition::Raised);
    assert!(stuck[0].0 <= 10, "raised within one window: {stuck:?}");
    assert!(
        stuck[0].2[0] < 1.27,
        "nis below the chi-square(10) 0.025% quantile: {:?}",
        stuck[0].2
    );
    // Working again: cleared.
    let again = feed(&mut st, 40, &mut || 10.0 + 0.1 * noise.next());
    assert_eq!(
        again.iter().map(|t| t.1).collect::<Vec<_>>(),
        [Transition::Cleared],
        "{again:?}"
    );
    // A step bias of five sigma: raised within a few readings, the level's
    // sensor named as the part.
    let bias = feed(&mut st, 10, &mut || 10.5 + 0.1 * noise.next());
    assert_eq!(bias.first().map(|t| t.1), Some(Transition::Raised), "{bias:?}");
    assert!(bias[0].0 <= 3, "{bias:?}");
    let names: Vec<_> = m.rules[rule as usize]
        .inputs
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(names, ["nis", "bias", "nis.level"]);
    assert_eq!(bias[0].2[0], bias[0].2[2], "one observed sensor carries the whole sum");
}

#[test]
fn the_model_anomaly_alert_catches_a_slow_drift_by_the_innovations_bias() {
    let text = TANK.replace(
        "model: { preset: level_rate, sensor: level, q: 0.001 }",
        "model: { preset: level, sensor: level, q: 0.00001, anomaly: { window: 120, false_alarm: 0.000001 } }",
    );
    let m = type_model(&text);
    let rule = m.rule_index("model:anomaly").unwrap();
    let def = m.filter.as_ref().unwrap().anomaly.clone().unwrap();
    let mut noise = Gauss(0x9e37_79b9_7f4a_7c15);
    let mut st = TwinState::new(&m);
    let mut raised = None;
    // 10 minutes fault-free, then the sensor drifts by 0.02 sigma a second.
    for i in 0..1200i64 {
        let drift = if i < 600 { 0.0 } else { 0.002 * (i - 600) as f64 };
        let mut out = Vec::new();
        apply(
            &m,
            &mut st,
            Input::Events(&[ev(0, i * 1000, 10.0 + drift + 0.1 * noise.next())]),
            0,
            &mut out,
        );
        for o in out {
            if let Output::Alert { rule: r, inputs, .. } = o {
                if r == rule && raised.is_none() {
                    raised = Some((i, inputs));
                }
            }
        }
    }
    let (i, inputs) = raised.expect("the drift is caught");
    assert!((600..900).contains(&i), "within five minutes of the drift's start: {i}");
    // The spread of the innovations still looks fine; their mean does not.
    let (nis, bias) = (inputs[0], inputs[1]);
    assert!(nis > def.low && nis < def.high, "{inputs:?}");
    assert!(bias > def.bias_high, "{inputs:?} vs {}", def.bias_high);
}
