//! Derived sensors against hand-computed values.

use std::sync::Arc;

use super::*;
use crate::twin::model::{apply, Input, Output, TwinState};
use crate::twin::model_tests::{ev, type_model};
use crate::twin::record;
use crate::twin::schema::TypeModel;

const PUMP: &str = r#"
asset_types:
  pump:
    sensors:
      flow: { unit: m3/h }
      head: { unit: m }
      power: { unit: kW }
      efficiency: { unit: "1", expr: "flow * head / power" }
      energy: { unit: kWh, integral: power, per: 1h }
      surge: { unit: m3/h/s, rate: flow }
      surge_abs: { unit: m3/h/s, expr: "abs(surge)" }
assets: [{ id: "p-*", type: pump }]
windows: [{ name: w10s, size: 10s, sensors: [efficiency] }]
rules:
  - { name: inefficient, when: "w10s.efficiency.avg < 1", asset_types: [pump] }
  - { name: surging, when: "surge_abs > 5", asset_types: [pump] }
sources: [{ name: f, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#;

fn pump() -> Arc<TypeModel> {
    type_model(PUMP)
}

const FLOW: u16 = 0;
const HEAD: u16 = 1;
const POWER: u16 = 2;
const EFFICIENCY: usize = 3;
const ENERGY: usize = 4;
const SURGE: usize = 5;
const SURGE_ABS: usize = 6;

fn feed(m: &TypeModel, st: &mut TwinState, events: &[Event]) -> Vec<Output> {
    let mut out = Vec::new();
    apply(m, st, Input::Events(events), 0, &mut out);
    out
}

#[test]
fn an_expression_follows_the_values_it_reads() {
    let m = pump();
    let mut st = TwinState::new(&m);
    // Nothing until every input has a value (NaN is not a reading).
    feed(&m, &mut st, &[ev(FLOW, 1000, 10.0), ev(HEAD, 1000, 4.0)]);
    assert_eq!(st.sensors[EFFICIENCY].ts, NO_TS);
    let out = feed(&m, &mut st, &[ev(POWER, 2000, 20.0)]);
    assert_eq!((st.sensors[EFFICIENCY].ts, st.sensors[EFFICIENCY].value), (2000, 2.0));
    // In the twin update, like a measured sensor.
    let changed: Vec<u16> = out
        .iter()
        .find_map(|o| match o {
            Output::TwinUpdate { changed, .. } => Some(changed.iter().map(|(s, _)| *s).collect()),
            _ => None,
        })
        .unwrap();
    assert!(changed.contains(&(EFFICIENCY as u16)), "{changed:?}");
    // A later flow moves it; an older one does not (it is not the value).
    feed(&m, &mut st, &[ev(FLOW, 3000, 5.0)]);
    assert_eq!(st.sensors[EFFICIENCY].value, 1.0);
    feed(&m, &mut st, &[ev(FLOW, 2500, 50.0)]);
    assert_eq!((st.sensors[EFFICIENCY].ts, st.sensors[EFFICIENCY].value), (3000, 1.0));
}

#[test]
fn an_integral_holds_each_value_until_the_next_reading() {
    let m = pump();
    let mut st = TwinState::new(&m);
    // 36 kW for 10 s, then 72 kW for 5 s: 0.1 + 0.1 kWh.
    feed(&m, &mut st, &[ev(POWER, 0, 36.0)]);
    assert_eq!(st.sensors[ENERGY].value, 0.0, "the first reading starts it");
    feed(&m, &mut st, &[ev(POWER, 10_000, 72.0)]);
    assert!((st.sensors[ENERGY].value - 0.1).abs() < 1e-12);
    // An older reading is not taken into it.
    feed(&m, &mut st, &[ev(POWER, 9_000, 1000.0)]);
    assert!((st.sensors[ENERGY].value - 0.1).abs() < 1e-12);
    feed(&m, &mut st, &[ev(POWER, 15_000, 0.0)]);
    assert!((st.sensors[ENERGY].value - 0.2).abs() < 1e-12);
    assert_eq!(st.sensors[ENERGY].ts, 15_000);
}

#[test]
fn a_rate_is_the_change_per_second_and_chains_into_expressions_and_rules() {
    let m = pump();
    let mut st = TwinState::new(&m);
    feed(&m, &mut st, &[ev(FLOW, 0, 10.0)]);
    assert_eq!(st.sensors[SURGE].ts, NO_TS, "one reading has no rate");
    feed(&m, &mut st, &[ev(FLOW, 2000, 14.0)]);
    assert_eq!(st.sensors[SURGE].value, 2.0);
    // A drop of 30 in 3 s: -10 per second; |rate| > 5 raises `surging`.
    let out = feed(&m, &mut st, &[ev(FLOW, 5000, -16.0)]);
    assert_eq!(st.sensors[SURGE].value, -10.0);
    assert_eq!(st.sensors[SURGE_ABS].value, 10.0);
    let surging = m.rule_index("surging").unwrap();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Alert { rule, .. } if *rule == surging)),
        "{out:?}"
    );
}

#[test]
fn windows_and_rules_take_derived_values_like_measured_ones() {
    let m = pump();
    let mut st = TwinState::new(&m);
    let mut events = vec![ev(HEAD, 0, 1.0), ev(POWER, 0, 10.0)];
    for i in 0..10 {
        events.push(ev(FLOW, i * 1000, 5.0));
    }
    events.push(ev(FLOW, 12_000, 5.0));
    let out = feed(&m, &mut st, &events);
    let w = out
        .iter()
        .find_map(|o| match o {
            Output::Window { acc, .. } => Some(*acc),
            _ => None,
        })
        .expect("the window over efficiency closed");
    // Ten flows in [0, 10 s): efficiency 0.5 each.
    assert_eq!((w.count, w.sum), (10, 5.0));
    let inefficient = m.rule_index("inefficient").unwrap();
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Alert { rule, .. } if *rule == inefficient)));
}

#[test]
fn integrals_and_rates_survive_a_snapshot() {
    let m = pump();
    let mut st = TwinState::new(&m);
    feed(&m, &mut st, &[ev(POWER, 0, 36.0), ev(FLOW, 0, 1.0)]);
    feed(&m, &mut st, &[ev(POWER, 10_000, 36.0), ev(FLOW, 1000, 3.0)]);
    let bytes = record::encode(&m, &st);
    let (mut back, notes) = record::decode(&bytes).unwrap().into_state(&m, &m.schema);
    assert!(notes.dropped.is_empty(), "{notes:?}");
    feed(&m, &mut st, &[ev(POWER, 20_000, 0.0), ev(FLOW, 2000, 4.0)]);
    feed(&m, &mut back, &[ev(POWER, 20_000, 0.0), ev(FLOW, 2000, 4.0)]);
    assert!((back.sensors[ENERGY].value - 0.2).abs() < 1e-12);
    assert_eq!(back.sensors[SURGE].value, 1.0);
    assert_eq!(format!("{:?}", back.ext), format!("{:?}", st.ext));
}

#[test]
fn an_expression_over_the_estimate_follows_the_readings_the_model_takes() {
    let text = r#"
asset_types:
  tank:
    sensors:
      level: { unit: m, noise: 0.1 }
      off: { unit: m, expr: "level - est.level" }
    model: { preset: level, sensor: level, q: 0.001 }
assets: [{ id: "t-*", type: tank }]
sources: [{ name: f, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#;
    let m = type_model(text);
    let mut st = TwinState::new(&m);
    feed(&m, &mut st, &[ev(0, 1000, 10.0), ev(0, 2000, 11.0)]);
    let est = st.filter().unwrap().state(0).0;
    assert_eq!((st.sensors[1].ts, st.sensors[1].value), (2000, 11.0 - est));
    // Older than the estimate: the model does not take it, the value stays:
    // nothing to recompute (one event applied, no derived one).
    let events = st.stats.events;
    feed(&m, &mut st, &[ev(0, 1500, 50.0)]);
    assert_eq!(st.stats.events, events + 1);
    assert_eq!(st.sensors[1].value, 11.0 - est);
}
