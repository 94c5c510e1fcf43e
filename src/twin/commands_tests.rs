//! Table-driven tests of commands in the pure twin model: acknowledgement by
//! reported state and by ack message, rejection, timeout with rollback and
//! alert, supersession, idempotency keys, rule-issued commands, and the
//! stored form.

use std::path::Path;
use std::sync::Arc;

use super::commands::{Origin, Phase, KEEP_FINISHED};
use super::model::*;
use super::model_tests::{ev, type_model};
use super::record;
use super::schema::{Model, OutputMask, TypeModel};
use crate::topology;

/// Sensors: 0 speed (reported), 1 speed_ack, 2 temperature.
const TOPO: &str = r#"
asset_types:
  pump:
    sensors:
      speed: { unit: rpm }
      speed_ack: { unit: seq }
      temperature: { unit: degC }
    commands:
      set_speed: { reported: speed, tolerance: 5, ack_sensor: speed_ack, timeout: 10s, rollback: 0, min: 0, max: 3000 }
assets: [{ id: "p-*", type: pump }]
sources: [{ name: f, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
rules:
  - { name: hot, when: "temperature > 90", severity: critical, command: { name: set_speed, value: 500, on_clear: 1500 } }
"#;

fn model() -> Arc<TypeModel> {
    type_model(TOPO)
}

/// `(seq, value, origin)` of every command sent in `out`.
fn sent(out: &[Output]) -> Vec<(u32, f64, Origin)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Actuate { seq, value, origin, .. } => Some((*seq, *value, *origin)),
            _ => None,
        })
        .collect()
}

fn phases(st: &TwinState) -> Vec<(u32, Phase)> {
    st.commands().unwrap().log.iter().map(|c| (c.seq, c.phase)).collect()
}

fn failed_alert(m: &TypeModel, st: &TwinState) -> bool {
    st.alerts[m.commands[0].failed_alert as usize].active
}

/// What happens after `POST set_speed = 1200` at t=1000.
enum Then {
    Events(Vec<Event>),
    Tick(i64),
}

/// A case: name, steps `(now, what)`, then the commands' `(seq, phase)`,
/// whether the failure alert is active, and the `(seq, value)` sent.
type Case = (&'static str, Vec<(i64, Then)>, Vec<(u32, Phase)>, bool, Vec<(u32, f64)>);

#[test]
fn a_command_is_pending_until_acknowledged_and_fails_with_a_rollback_at_its_deadline() {
    use Then::*;
    let rows: Vec<Case> = vec![
        (
            "no answer: pending",
            vec![],
            vec![(1, Phase::Pending)],
            false,
            vec![(1, 1200.0)],
        ),
        (
            "reported state within tolerance acks",
            vec![(2_000, Events(vec![ev(0, 5, 1196.0)]))],
            vec![(1, Phase::Acked)],
            false,
            vec![(1, 1200.0)],
        ),
        (
            "reported state outside tolerance does not",
            vec![(2_000, Events(vec![ev(0, 5, 1190.0)]))],
            vec![(1, Phase::Pending)],
            false,
            vec![(1, 1200.0)],
        ),
        (
            "the ack message with the seq acks",
            vec![(2_000, Events(vec![ev(1, 5, 1.0)]))],
            vec![(1, Phase::Acked)],
            false,
            vec![(1, 1200.0)],
        ),
        (
            "an ack for another seq does nothing",
            vec![(2_000, Events(vec![ev(1, 5, 7.0)]))],
            vec![(1, Phase::Pending)],
            false,
            vec![(1, 1200.0)],
        ),
        (
            "-seq rejects: alert, no rollback",
            vec![(2_000, Events(vec![ev(1, 5, -1.0)]))],
            vec![(1, Phase::Rejected)],
            true,
            vec![(1, 1200.0)],
        ),
        (
            "a tick before the deadline does nothing",
            vec![(10_999, Tick(10_999))],
            vec![(1, Phase::Pending)],
            false,
            vec![(1, 1200.0)],
        ),
        (
            "at the deadline: failed, alert, rollback sent and pending",
            vec![(11_000, Tick(11_000))],
            vec![(1, Phase::Failed), (2, Phase::Pending)],
            true,
            vec![(1, 1200.0), (2, 0.0)],
        ),
        (
            "the rollback acked clears the alert",
            vec![(11_000, Tick(11_000)), (12_000, Events(vec![ev(0, 9, 0.0)]))],
            vec![(1, Phase::Failed), (2, Phase::Acked)],
            false,
            vec![(1, 1200.0), (2, 0.0)],
        ),
        (
            "a failed rollback is not rolled back again",
            vec![(11_000, Tick(11_000)), (21_000, Tick(21_000))],
            vec![(1, Phase::Failed), (2, Phase::Failed)],
            true,
            vec![(1, 1200.0), (2, 0.0)],
        ),
    ];
    let m = model();
    for (name, then, want_phases, want_alert, want_sent) in rows {
        let mut st = TwinState::new(&m);
        let mut out = Vec::new();
        let input = Input::Command {
            def: 0,
            value: 1200.0,
            key: "k1",
        };
        apply(&m, &mut st, input, 1_000, &mut out);
        assert_eq!(next_deadline(&m, &st), Some(11_000), "{name}");
        for (now, step) in then {
            match step {
                Events(evs) => apply(&m, &mut st, Input::Events(&evs), now, &mut out),
                Tick(t) => apply(&m, &mut st, Input::Tick, t, &mut out),
            }
        }
        assert_eq!(phases(&st), want_phases, "{name}");
        assert_eq!(failed_alert(&m, &st), want_alert, "{name}");
        let sent: Vec<(u32, f64)> = sent(&out).into_iter().map(|(s, v, _)| (s, v)).collect();
        assert_eq!(sent, want_sent, "{name}");
    }
}

#[test]
fn a_newer_command_supersedes_a_pending_one_and_sets_the_desired_value() {
    let m = model();
    let mut st = TwinState::new(&m);
    let mut out = Vec::new();
    for (now, value, key) in [(1_000, 1200.0, "a"), (2_000, 1500.0, "b")] {
        apply(&m, &mut st, Input::Command { def: 0, value, key }, now, &mut out);
    }
    assert_eq!(phases(&st), vec![(1, Phase::Superseded), (2, Phase::Pending)]);
    let c = &st.commands().unwrap();
    assert_eq!(c.desired[0], 1500.0);
    assert_eq!(c.by_key("a").unwrap().seq, 1);
    assert_eq!(c.by_key("b").unwrap().phase, Phase::Pending);
    // The reported value of the superseded command acks nothing.
    apply(&m, &mut st, Input::Events(&[ev(0, 5, 1200.0)]), 3_000, &mut out);
    assert_eq!(phases(&st), vec![(1, Phase::Superseded), (2, Phase::Pending)]);
}

#[test]
fn a_twin_remembers_every_pending_command_and_the_latest_finished_ones() {
    let m = model();
    let mut st = TwinState::new(&m);
    let mut out = Vec::new();
    let keys: Vec<String> = (0..KEEP_FINISHED + 5).map(|i| format!("k{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let input = Input::Command {
            def: 0,
            value: i as f64,
            key,
        };
        apply(&m, &mut st, input, 1_000 + i as i64, &mut out);
    }
    let c = &st.commands().unwrap();
    // One pending (the last) and the most recent finished ones.
    assert_eq!(c.log.len(), KEEP_FINISHED + 1);
    assert_eq!(c.count(Phase::Pending), 1);
    assert!(c.by_key("k0").is_none(), "the oldest are forgotten");
    assert_eq!(c.by_key(&keys[KEEP_FINISHED + 4]).unwrap().phase, Phase::Pending);
}

#[test]
fn a_rule_issues_a_tracked_command_on_raise_and_on_clear() {
    let m = model();
    let mut st = TwinState::new(&m);
    let mut out = Vec::new();
    apply(&m, &mut st, Input::Events(&[ev(2, 10, 95.0)]), 1_000, &mut out);
    apply(&m, &mut st, Input::Events(&[ev(2, 20, 70.0)]), 2_000, &mut out);
    let rule = m.rules.iter().position(|r| &*r.name == "hot").unwrap() as u16;
    assert_eq!(
        sent(&out),
        vec![
            (
                1,
                500.0,
                Origin::Rule {
                    rule,
                    alert_seq: 1,
                    cleared: false
                }
            ),
            (
                2,
                1500.0,
                Origin::Rule {
                    rule,
                    alert_seq: 1,
                    cleared: true
                }
            ),
        ]
    );
    assert!(
        !out.iter().any(|o| matches!(o, Output::Command { .. })),
        "a tracked command goes out once, as Actuate"
    );
    assert_eq!(phases(&st), vec![(1, Phase::Superseded), (2, Phase::Pending)]);
    // Without a command sink nothing is sent, but the desired state is set.
    let topo = topology::parse(Path::new("t.yaml"), TOPO).unwrap();
    let quiet = Model::build(&topo, OutputMask::default().with(topology::OutputKind::Alerts), false).types[0].clone();
    let mut st = TwinState::new(&quiet);
    let mut out = Vec::new();
    apply(&quiet, &mut st, Input::Events(&[ev(2, 10, 95.0)]), 1_000, &mut out);
    assert!(sent(&out).is_empty());
    assert_eq!(st.commands().unwrap().desired[0], 500.0);
}

#[test]
fn commands_survive_the_stored_record() {
    let m = model();
    let mut st = TwinState::new(&m);
    let mut out = Vec::new();
    apply(
        &m,
        &mut st,
        Input::Command {
            def: 0,
            value: 700.0,
            key: "x",
        },
        1_000,
        &mut out,
    );
    apply(&m, &mut st, Input::Tick, 11_000, &mut out);
    let bytes = record::encode(&m, &st);
    let rec = record::decode(&bytes).unwrap();
    let (back, notes) = rec.into_state(&m, &m.schema);
    assert!(notes.dropped.is_empty(), "{notes:?}");
    assert_eq!(back, st);
    assert_eq!(phases(&back), vec![(1, Phase::Failed), (2, Phase::Pending)]);
}

#[test]
fn a_command_without_a_way_to_be_acknowledged_is_a_topology_error() {
    let text = TOPO.replace(
        "set_speed: { reported: speed, tolerance: 5, ack_sensor: speed_ack, timeout: 10s, rollback: 0, min: 0, max: 3000 }",
        "set_speed: { timeout: 10s }\n      brake: { reported: nope }",
    );
    let err = topology::parse(Path::new("t.yaml"), &text).unwrap_err().to_string();
    assert!(
        err.contains("commands.set_speed: nothing could acknowledge it"),
        "{err}"
    );
    assert!(err.contains("commands.brake.reported: no sensor `nope`"), "{err}");
}
