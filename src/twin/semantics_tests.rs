//! Table-driven tests of the twin semantics beyond windows and rules:
//! aggregates, staleness (virtual time), idle timeout, late events, sources
//! and conflict resolution, deadband, joins, relations and the alert
//! lifecycle.

use std::path::Path;
use std::sync::Arc;

use super::model::*;
use super::model_tests::type_model;
use super::record;
use super::schema::{Model, OutputMask, TypeModel};
use crate::topology;

/// One pump with three sensors: `temperature` and `current` report every
/// second and go stale after 5 s; `pressure` has two sources, `plc`
/// (measured, trust 0.9) and `scada` (commanded, trust 0.5).
const PUMP: &str = r#"
asset_types:
  pump:
    sensors:
      temperature: { unit: degC, expected_every: 1s, stale_after: 5s }
      current: { unit: A, expected_every: 1s, stale_after: 5s }
      pressure:
        unit: bar
        sources: { plc: { trust: 0.9 }, scada: { trust: 0.5, kind: commanded }, lab: { trust: 0.95 } }
        resolve: RESOLVE
        tolerance: 1.0
    relations: { feeds: tank }
    watermark: { out_of_orderness: 0s, idle_timeout: 30s }
  tank:
    sensors:
      level: { unit: m }
assets: [{ id: "p-*", type: pump }, { id: "t-*", type: tank }]
sources:
  - { name: plc, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }
  - { name: scada, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }
  - { name: lab, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }
"#;

const TEMP: u16 = 0;
const CURRENT: u16 = 1;
const PRESSURE: u16 = 2;
const PLC: u16 = 0;
const SCADA: u16 = 1;
const LAB: u16 = 2;

fn pump(resolve: &str, extra: &str) -> Arc<TypeModel> {
    let text = format!("{}{extra}", PUMP.replace("RESOLVE", resolve));
    type_model(&text)
}

fn ev(sensor: u16, ts: i64, value: f64) -> Event {
    Event {
        ts,
        value,
        sensor,
        source: PLC,
        origin: 0,
        redelivered: false,
        replayed: false,
    }
}

fn from(source: u16, ts: i64, value: f64) -> Event {
    Event {
        source,
        ..ev(PRESSURE, ts, value)
    }
}

/// A twin driven through inputs at virtual processing times.
struct Twin {
    m: Arc<TypeModel>,
    st: TwinState,
    out: Vec<Output>,
}

impl Twin {
    fn new(m: Arc<TypeModel>) -> Twin {
        Twin {
            st: TwinState::new(&m),
            m,
            out: Vec::new(),
        }
    }

    fn at(&mut self, now: i64, events: &[Event]) -> &mut Twin {
        apply(&self.m, &mut self.st, Input::Events(events), now, &mut self.out);
        self
    }

    fn tick(&mut self, now: i64) -> &mut Twin {
        apply(&self.m, &mut self.st, Input::Tick, now, &mut self.out);
        self
    }

    /// Alert transitions so far as `(alert name, transition, ts)`, drained.
    fn alerts(&mut self) -> Vec<(String, Transition, i64)> {
        let m = self.m.clone();
        self.out
            .drain(..)
            .filter_map(|o| match o {
                Output::Alert {
                    rule, transition, ts, ..
                } => Some((m.rules[rule as usize].name.to_string(), transition, ts)),
                _ => None,
            })
            .collect()
    }

    fn alert(&self, name: &str) -> AlertState {
        self.st.alerts[self.m.rule_index(name).unwrap() as usize]
    }
}

#[test]
fn window_aggregates_include_last_by_event_time_and_stddev() {
    let m = pump(
        "latest",
        "windows: [{ name: w10s, size: 10s, sensors: [temperature], asset_types: [pump] }]\n",
    );
    // (readings (ts, value) in arrival order, want last, want stddev)
    // (readings (ts, value) in arrival order, want last, want stddev)
    type Row<'a> = (&'a [(i64, f64)], f64, f64);
    let rows: &[Row] = &[
        (&[(1000, 2.0)], 2.0, 0.0),
        (
            &[(1000, 2.0), (2000, 4.0), (3000, 4.0), (4000, 4.0)],
            4.0,
            0.8660254037844386,
        ),
        (&[(5000, 9.0), (1000, 1.0)], 9.0, 4.0), // an older reading arriving later is not `last`
        (&[(5000, 9.0), (5000, 3.0)], 3.0, 3.0), // tie on event time: the later arrival
        (
            &[
                (2000, 2.0),
                (4000, 4.0),
                (4000, 4.0),
                (4000, 4.0),
                (5000, 5.0),
                (5000, 5.0),
                (7000, 7.0),
                (9000, 9.0),
            ],
            9.0,
            2.0,
        ),
    ];
    for (readings, last, stddev) in rows {
        let mut t = Twin::new(m.clone());
        let events: Vec<Event> = readings.iter().map(|&(ts, v)| ev(TEMP, ts, v)).collect();
        t.at(0, &events);
        // An open window keeps `last` and the deviation across a snapshot
        // (a window sink reads them).
        assert!(t.m.keeps_spread);
        let (back, _) = record::decode(&record::encode(&t.m, &t.st))
            .unwrap()
            .into_state(&t.m, &t.m.schema);
        assert_eq!(back.open, t.st.open, "{readings:?}");
        apply(&t.m, &mut t.st, Input::EndOfInput, 0, &mut t.out);
        let acc = t
            .out
            .iter()
            .find_map(|o| match o {
                Output::Window { acc, .. } => Some(*acc),
                _ => None,
            })
            .unwrap();
        assert_eq!(acc.get(topology::Agg::Last), *last, "{readings:?}");
        assert!(
            (acc.get(topology::Agg::Stddev) - stddev).abs() < 1e-12,
            "{readings:?}: {acc:?}"
        );
    }
}

#[test]
fn an_event_exactly_on_a_window_boundary_opens_the_next_window() {
    let m = pump(
        "latest",
        "windows: [{ name: w10s, size: 10s, sensors: [temperature], asset_types: [pump] }]\n",
    );
    let mut t = Twin::new(m);
    t.at(0, &[ev(TEMP, 9_999, 1.0), ev(TEMP, 10_000, 2.0)]);
    // Out-of-orderness 0: 10 000 closes [0, 9 999].
    let closed: Vec<(i64, u64)> = t
        .out
        .iter()
        .filter_map(|o| match o {
            Output::Window { start, acc, .. } => Some((*start, acc.count)),
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![(0, 1)]);
    assert_eq!(t.st.open.len(), 1);
    assert_eq!(t.st.open[0].last_ms, 19_999);
}

#[test]
fn a_late_event_is_counted_and_routed_to_the_late_output_but_still_counts_elsewhere() {
    let m = pump(
        "latest",
        "windows: [{ name: w10s, size: 10s, sensors: [temperature], asset_types: [pump] }]\n\
         joins: [{ name: heat, left: temperature, right: current, within: 10s, asset_types: [pump] }]\n",
    );
    let mut t = Twin::new(m);
    t.at(
        0,
        &[ev(TEMP, 25_000, 1.0), ev(CURRENT, 3_000, 7.0), ev(TEMP, 5_000, 2.0)],
    );
    let late: Vec<(i64, i64)> = t
        .out
        .iter()
        .filter_map(|o| match o {
            Output::Late { event, watermark } => Some((event.ts, *watermark)),
            _ => None,
        })
        .collect();
    assert_eq!(late, vec![(5_000, 25_000)], "the window [0, 10 s) had closed");
    assert_eq!(t.st.stats.late, 1);
    assert_eq!(t.st.stats.events, 3);
    // Not the latest value (older), but it still pairs in the join.
    assert_eq!(t.st.sensors[TEMP as usize].value, 1.0);
    assert_eq!(t.st.joins()[0].ts, 5_000);
}

#[test]
fn a_quiet_asset_closes_its_windows_after_the_idle_timeout() {
    let m = pump(
        "latest",
        "windows: [{ name: w10s, size: 10s, sensors: [temperature], asset_types: [pump] }]\n",
    );
    let mut t = Twin::new(m.clone());
    t.at(1_000_000, &[ev(TEMP, 1_000, 1.0), ev(TEMP, 2_000, 3.0)]);
    assert_eq!(t.st.open.len(), 1);
    // The earliest timer is staleness (5 s); idle is 30 s after the last reading.
    assert_eq!(next_deadline(&m, &t.st), Some(1_005_000));
    t.tick(1_005_000);
    assert_eq!(t.st.open.len(), 1, "stale, but not idle yet");
    assert_eq!(next_deadline(&m, &t.st), Some(1_030_000));
    t.tick(1_029_999);
    assert_eq!(t.st.open.len(), 1);
    t.tick(1_030_000);
    assert!(t.st.open.is_empty(), "idle: the window closed without the watermark");
    let windows = t.out.iter().filter(|o| matches!(o, Output::Window { .. })).count();
    assert_eq!(windows, 1);
    // A reading for the closed window when the asset wakes up is late, not
    // a second window [0, 10 s).
    t.out.clear();
    t.at(1_040_000, &[ev(TEMP, 3_000, 5.0)]);
    assert_eq!(t.st.stats.late, 1);
    assert!(t.st.open.is_empty());
    assert_eq!(
        next_deadline(&m, &t.st),
        Some(1_045_000),
        "no window open: staleness only"
    );
}

#[test]
fn staleness_in_virtual_time_stale_alert_offline_and_recovery() {
    use Transition::*;
    let m = pump("latest", "");
    let mut t = Twin::new(m.clone());
    t.at(0, &[ev(TEMP, 100, 50.0), ev(CURRENT, 100, 10.0)]);
    assert_eq!(t.st.health(&m), Health::Green);
    assert_eq!(next_deadline(&m, &t.st), Some(5_000));
    t.at(3_000, &[ev(CURRENT, 3_100, 11.0)]);
    t.tick(4_999);
    assert!(t.alerts().is_empty(), "not stale before stale_after");
    t.tick(5_000);
    assert_eq!(t.alerts(), vec![("stale:temperature".into(), Raised, 5_000)]);
    assert_eq!(t.st.sensors[TEMP as usize].quality, Quality::Stale);
    assert_eq!(t.st.health(&m), Health::Yellow);
    assert!(!t.st.offline, "current is still fresh");
    t.tick(8_000);
    assert_eq!(
        t.alerts(),
        vec![
            ("stale:current".into(), Raised, 8_000),
            ("offline".into(), Raised, 8_000)
        ]
    );
    assert!(t.st.offline);
    assert_eq!(t.st.health(&m), Health::Red);
    assert_eq!(next_deadline(&m, &t.st), None, "nothing left to go stale");
    // Data returns: fresh again, alerts cleared, online.
    t.at(9_000, &[ev(TEMP, 9_000, 51.0)]);
    assert_eq!(
        t.alerts(),
        vec![
            ("stale:temperature".into(), Cleared, 9_000),
            ("offline".into(), Cleared, 9_000)
        ]
    );
    assert_eq!(t.st.sensors[TEMP as usize].quality, Quality::Good);
    assert!(!t.st.offline);
    assert_eq!(t.alert("stale:temperature").seq, 1);
    assert_eq!(next_deadline(&m, &t.st), Some(14_000));
}

#[test]
fn staleness_survives_a_restart() {
    use Transition::*;
    let m = pump("latest", "");
    let mut t = Twin::new(m.clone());
    t.at(0, &[ev(TEMP, 100, 50.0), ev(CURRENT, 100, 10.0)]);
    t.tick(5_000);
    t.alerts();
    // Snapshot, "restart", restore: the deadline index entry is derived from
    // the restored state, and the raised alert is not raised again.
    let rec = record::decode(&record::encode(&m, &t.st)).unwrap();
    let (back, notes) = rec.into_state(&m, &m.schema);
    assert!(notes.dropped.is_empty());
    assert_eq!(back, t.st);
    let mut t2 = Twin::new(m.clone());
    t2.st = back;
    assert_eq!(next_deadline(&m, &t2.st), None, "both stale after the tick at 5 s");
    t2.tick(60_000);
    assert!(
        t2.alerts().is_empty(),
        "stale alerts are raised once, not again after a restart"
    );
    t2.at(61_000, &[ev(CURRENT, 61_000, 1.0)]);
    assert_eq!(
        t2.alerts(),
        vec![
            ("stale:current".into(), Cleared, 61_000),
            ("offline".into(), Cleared, 61_000)
        ]
    );
}

#[test]
fn conflict_resolution_policies() {
    // Readings of `pressure` (source, ts, value) at processing time 0, and the
    // value each policy resolves to.
    let readings = [from(PLC, 1_000, 5.0), from(SCADA, 2_000, 5.4), from(LAB, 1_500, 5.2)];
    let rows = [
        ("latest", 5.4, SCADA),    // newest event time
        ("priority", 5.0, PLC),    // first declared
        ("confidence", 5.2, LAB),  // measured beats commanded, then trust 0.95 > 0.9
        ("median", 5.2, u16::MAX), // median of three
    ];
    for (policy, want, source) in rows {
        let mut t = Twin::new(pump(policy, ""));
        t.at(0, &readings);
        let p = t.st.sensors[PRESSURE as usize];
        assert_eq!((p.value, p.source), (want, source), "{policy}");
        assert_eq!(
            t.st.by_source().iter().map(|r| r.value).collect::<Vec<_>>(),
            vec![5.0, 5.4, 5.2]
        );
    }
    // Median of two: the mean of both.
    let mut t = Twin::new(pump("median", ""));
    t.at(0, &[from(PLC, 1_000, 5.0), from(SCADA, 1_000, 5.5)]);
    assert_eq!(t.st.sensors[PRESSURE as usize].value, 5.25);
}

#[test]
fn priority_falls_back_when_the_preferred_source_goes_stale() {
    let m = pump("priority", "");
    // Without stale_after on `pressure` every source counts: plc keeps priority.
    let mut t = Twin::new(m);
    t.at(0, &[from(PLC, 1_000, 5.0)])
        .at(60_000, &[from(SCADA, 61_000, 7.0)]);
    assert_eq!(t.st.sensors[PRESSURE as usize].value, 5.0);

    let stale = PUMP.replace("RESOLVE", "priority").replace(
        "        tolerance: 1.0\n",
        "        tolerance: 1.0\n        stale_after: 5s\n",
    );
    let m = type_model(&stale);
    let mut t = Twin::new(m.clone());
    t.at(0, &[from(PLC, 1_000, 5.0), from(SCADA, 1_000, 5.5)]);
    assert_eq!(t.st.sensors[PRESSURE as usize].value, 5.0);
    t.at(4_000, &[from(SCADA, 4_000, 5.6)]);
    assert_eq!(next_deadline(&m, &t.st), Some(5_000), "plc goes stale at 5 s");
    t.tick(5_000);
    assert_eq!(
        (
            t.st.sensors[PRESSURE as usize].value,
            t.st.sensors[PRESSURE as usize].source
        ),
        (5.6, SCADA),
        "plc is stale: the next source in priority order"
    );
    t.at(6_000, &[from(PLC, 6_000, 5.1)]);
    assert_eq!(t.st.sensors[PRESSURE as usize].value, 5.1, "plc is back");
}

#[test]
fn sources_flapping_around_the_tolerance_raise_one_discrepancy() {
    use Transition::*;
    // tolerance 1.0, clear_tolerance 0.8 (the default, 80%).
    let mut t = Twin::new(pump("confidence", ""));
    let spreads = [0.5, 1.2, 0.95, 1.05, 0.9, 0.81, 1.1, 0.8, 0.5, 1.5];
    for (i, d) in spreads.iter().enumerate() {
        let ts = (i as i64 + 1) * 1000;
        t.at(ts, &[from(PLC, ts, 5.0), from(SCADA, ts, 5.0 + d)]);
    }
    let got = t.alerts();
    assert_eq!(
        got,
        vec![
            ("discrepancy:pressure".into(), Raised, 2_000),
            ("discrepancy:pressure".into(), Cleared, 8_000),
            ("discrepancy:pressure".into(), Raised, 10_000),
        ],
        "raised above 1.0, held through 0.81..1.1, cleared at 0.8"
    );
    // The alert names the sources and their values.
    let m = t.m.clone();
    let r = m.rule_index("discrepancy:pressure").unwrap() as usize;
    let names: Vec<&str> = m.rules[r].inputs.iter().map(|(n, _)| &**n).collect();
    assert_eq!(names, vec!["pressure@plc", "pressure@scada", "pressure@lab"]);
    t.at(11_000, &[from(PLC, 11_000, 5.0), from(SCADA, 11_000, 9.0)]);
    assert_eq!(t.st.sensors[PRESSURE as usize].quality, Quality::Suspect);
    assert_eq!(
        t.alert("discrepancy:pressure").firings,
        3,
        "still disagreeing: updated, not raised again"
    );
    assert_eq!(t.alert("discrepancy:pressure").last_value, 4.0, "the spread");
    assert!(t.alerts().is_empty());
}

#[test]
fn deadband_moves_the_estimate_only_past_the_band_and_reports_sync_lag() {
    let text = PUMP.replace("RESOLVE", "latest").replace(
        "stale_after: 5s }\n      current",
        "stale_after: 5s, deadband: 0.5 }\n      current",
    );
    let topo = topology::parse(
        Path::new("t.yaml"),
        &format!("{text}rules: [{{ name: hot, when: \"temperature > 50.4\", asset_types: [pump] }}]\n"),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let m = Model::build(&topo, OutputMask::all(), false).types[0].clone();
    let mut t = Twin::new(m.clone());
    // (now, ts, reading, estimate after, sync lag after)
    let rows = [
        (1_000, 900, 50.0, 50.0, 100),
        (2_000, 1_900, 50.3, 50.0, 100), // within the band: the twin keeps 50.0
        (3_000, 2_900, 50.5, 50.0, 100), // exactly the band: still within
        (4_050, 3_900, 50.6, 50.6, 150), // past it: reconciled, 150 ms behind
        (5_000, 4_900, 50.2, 50.6, 150),
    ];
    for (now, ts, v, est, lag) in rows {
        t.at(now, &[ev(TEMP, ts, v)]);
        assert_eq!(
            t.st.sensors[TEMP as usize].value, v,
            "the measured value always follows"
        );
        assert_eq!(t.st.believed(&m, TEMP as usize), Some(est), "reading {v}");
        assert_eq!(t.st.sync_lag_ms, lag, "reading {v}");
    }
    // Rules read the estimate: 50.5 never raised `hot` (> 50.4); 50.6 did.
    let raised: Vec<i64> = t.alerts().iter().filter(|a| a.0 == "hot").map(|a| a.2).collect();
    assert_eq!(raised, vec![3_900]);
}

#[test]
fn joins_pair_readings_within_the_window_and_feed_rules() {
    use Transition::*;
    let m = pump(
        "latest",
        "joins: [{ name: heat, left: temperature, right: current, within: 10s, asset_types: [pump] }]\n\
         rules: [{ name: hot_idle, when: \"heat.temperature > 80 and heat.current < 2\", asset_types: [pump] }]\n",
    );
    /// (case, events, the join's pair (ts, left, right), rule transitions)
    type Row<'a> = (&'a str, &'a [Event], Option<(i64, f64, f64)>, &'a [Transition]);
    let rows: &[Row] = &[
        ("partner never arrives", &[ev(TEMP, 1_000, 90.0)], None, &[]),
        (
            "pair within 10 s",
            &[ev(TEMP, 1_000, 90.0), ev(CURRENT, 11_000, 1.0)],
            Some((11_000, 90.0, 1.0)),
            &[Raised],
        ),
        (
            "too far apart",
            &[ev(TEMP, 1_000, 90.0), ev(CURRENT, 11_001, 1.0)],
            None,
            &[],
        ),
        (
            "newer pair replaces, rule clears",
            &[ev(TEMP, 1_000, 90.0), ev(CURRENT, 2_000, 1.0), ev(CURRENT, 3_000, 5.0)],
            Some((3_000, 90.0, 5.0)),
            &[Raised, Cleared],
        ),
        (
            "an older pair does not replace a newer one",
            &[ev(TEMP, 5_000, 90.0), ev(CURRENT, 6_000, 1.0), ev(CURRENT, 4_000, 9.0)],
            Some((6_000, 90.0, 1.0)),
            &[Raised],
        ),
    ];
    for (name, events, pair, want) in rows {
        let mut t = Twin::new(m.clone());
        t.at(0, events);
        let got =
            (t.st.joins()[0].ts != NO_TS).then(|| (t.st.joins()[0].ts, t.st.joins()[0].left, t.st.joins()[0].right));
        assert_eq!(got, *pair, "{name}");
        let transitions: Vec<Transition> = t.alerts().iter().map(|a| a.1).collect();
        assert_eq!(transitions, *want, "{name}");
    }
}

#[test]
fn related_values_feed_joins_and_rules() {
    use Transition::*;
    let m = pump(
        "latest",
        "joins: [{ name: supply, left: pressure, right: feeds.level, within: 30s, asset_types: [pump] }]\n\
         rules:\n  - { name: dry_run, when: \"supply.pressure > 4 and supply.feeds.level < 1\", asset_types: [pump] }\n  - { name: tank_low, when: \"feeds.level < 0.5\", asset_types: [pump] }\n",
    );
    assert_eq!(m.related.len(), 1);
    assert_eq!(&*m.related[0].name, "feeds.level");
    let mut t = Twin::new(m.clone());
    t.at(0, &[from(PLC, 10_000, 5.0)]);
    assert!(t.alerts().is_empty(), "no tank value yet");
    let relay = |ts, value| Relayed {
        slot: 0,
        latest: Latest { ts, value },
    };
    apply(&m, &mut t.st, Input::Related(&[relay(20_000, 0.8)]), 0, &mut t.out);
    assert_eq!(t.alerts(), vec![("dry_run".into(), Raised, 20_000)]);
    apply(&m, &mut t.st, Input::Related(&[relay(25_000, 0.4)]), 0, &mut t.out);
    assert_eq!(t.alerts(), vec![("tank_low".into(), Raised, 25_000)]);
    // An older relayed value is ignored.
    apply(&m, &mut t.st, Input::Related(&[relay(1_000, 9.0)]), 0, &mut t.out);
    assert_eq!(t.st.related()[0], Latest { ts: 25_000, value: 0.4 });

    // The tank side: its level is relayed when it changes.
    let topo = topology::parse(
        Path::new("t.yaml"),
        &format!(
            "{}rules: [{{ name: tank_low, when: \"feeds.level < 0.5\", asset_types: [pump] }}]\n",
            PUMP.replace("RESOLVE", "latest")
        ),
    )
    .unwrap();
    let tank = Model::build(&topo, OutputMask::all(), false).types[1].clone();
    assert_eq!(tank.relayed, vec![true]);
    let mut t = Twin::new(tank);
    t.at(0, &[ev(0, 5, 1.5)]);
    assert!(t
        .out
        .iter()
        .any(|o| matches!(o, Output::Relay { sensor: 0, latest } if latest.value == 1.5)));
}

#[test]
fn alert_lifecycle_raise_update_acknowledge_clear() {
    use Transition::*;
    let m = pump(
        "latest",
        "rules: [{ name: hot, when: \"temperature > 90\", severity: critical, asset_types: [pump] }]\n",
    );
    let mut t = Twin::new(m.clone());
    t.at(0, &[ev(TEMP, 1_000, 95.0)]);
    assert_eq!(t.alerts(), vec![("hot".into(), Raised, 1_000)]);
    assert_eq!(t.st.health(&m), Health::Red);
    t.at(0, &[ev(TEMP, 2_000, 97.0), ev(TEMP, 3_000, 99.0)]);
    assert!(t.alerts().is_empty(), "a rule that keeps firing emits nothing");
    let a = t.alert("hot");
    assert_eq!(
        (a.firings, a.last_ts, a.last_value, a.since_ts),
        (3, 3_000, 99.0, 1_000)
    );
    // Acknowledge: a wrong sequence number is ignored, the right one once.
    let r = m.rule_index("hot").unwrap();
    for seq in [7, 1, 1] {
        apply(&m, &mut t.st, Input::Ack { rule: r, seq }, 3_500, &mut t.out);
    }
    assert_eq!(t.alerts(), vec![("hot".into(), Acknowledged, 3_500)]);
    assert!(t.alert("hot").acked);
    t.at(0, &[ev(TEMP, 4_000, 20.0)]);
    assert_eq!(t.alerts(), vec![("hot".into(), Cleared, 4_000)]);
    // Acknowledging a cleared alert does nothing; a new raise is not acked.
    apply(&m, &mut t.st, Input::Ack { rule: r, seq: 1 }, 5_000, &mut t.out);
    t.at(0, &[ev(TEMP, 6_000, 95.0)]);
    assert_eq!(t.alerts(), vec![("hot".into(), Raised, 6_000)]);
    let a = t.alert("hot");
    assert_eq!((a.seq, a.acked), (2, false));
    // The whole lifecycle is in the snapshot.
    let (back, _) = record::decode(&record::encode(&m, &t.st))
        .unwrap()
        .into_state(&m, &m.schema);
    assert_eq!(back.alerts, t.st.alerts);
}

#[test]
fn duplicate_and_out_of_order_events() {
    let m = pump(
        "latest",
        "windows: [{ name: w10s, size: 10s, sensors: [temperature], asset_types: [pump] }]\n",
    );
    let mut t = Twin::new(m);
    // A duplicate (same ts, value) that is not marked redelivered is applied
    // (workload v1 counts every line); one marked redelivered is dropped
    // below.
    t.at(0, &[ev(TEMP, 2_000, 5.0), ev(TEMP, 1_000, 4.0), ev(TEMP, 2_000, 5.0)]);
    assert_eq!(t.st.sensors[TEMP as usize].ts, 2_000);
    assert_eq!(t.st.sensors[TEMP as usize].value, 5.0);
    assert_eq!(t.st.open[0].acc.count, 3);
    assert_eq!(t.st.open[0].acc.last, 5.0);
    assert_eq!(t.st.version, 3);
}

#[test]
fn redelivered_readings_the_twin_already_reflects_are_dropped() {
    let m = pump(
        "latest",
        "windows: [{ name: w10s, size: 10s, sensors: [temperature], asset_types: [pump] }]\n",
    );
    let again = |e: Event| Event { redelivered: true, ..e };
    let mut t = Twin::new(m.clone());
    t.at(0, &[ev(TEMP, 1_000, 5.0), ev(TEMP, 2_000, 6.0)]);
    let before = (t.st.version, t.st.stats.events, t.st.open[0].acc.count);
    // Redelivered copies of both (after a crash between the checkpoint and
    // the acks): nothing changes.
    t.at(0, &[again(ev(TEMP, 1_000, 5.0)), again(ev(TEMP, 2_000, 6.0))]);
    assert_eq!((t.st.version, t.st.stats.events, t.st.open[0].acc.count), before);
    // A redelivered reading the twin never saw (lost with the crash) is new.
    t.at(0, &[again(ev(TEMP, 3_000, 7.0))]);
    assert_eq!(t.st.stats.events, 3);
    assert_eq!(t.st.sensors[TEMP as usize].value, 7.0);
    // One replayed from the inbox is applied even when older (the broker
    // delivered it out of order): the source knows the state lacks it.
    let replayed = |e: Event| Event {
        redelivered: true,
        replayed: true,
        ..e
    };
    t.at(0, &[replayed(ev(TEMP, 2_500, 6.5))]);
    assert_eq!(t.st.stats.events, 4, "a replayed reading is applied whatever its time");
    t.at(0, &[again(ev(TEMP, 2_500, 6.5))]);
    assert_eq!(t.st.stats.events, 4, "its redelivered copy is not");
    // Per source for a multi-source sensor: scada's first reading is new
    // even though plc's is newer.
    let mut t = Twin::new(m);
    t.at(
        0,
        &[
            from(PLC, 5_000, 5.0),
            again(from(SCADA, 4_000, 5.1)),
            again(from(PLC, 5_000, 5.0)),
        ],
    );
    assert_eq!(t.st.stats.events, 2);
    assert_eq!(t.st.by_source()[SCADA as usize].ts, 4_000);
}
