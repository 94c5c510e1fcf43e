//! What watchers are told: the changes one input makes to a twin.

use super::model::*;
use super::model_tests::{ev, type_model};
use super::view::{changes, glance, Change};

const PUMP: &str = r#"
asset_types:
  pump:
    sensors: { temperature: { unit: degC }, speed: { unit: rpm } }
    commands:
      set_speed: { reported: speed, tolerance: 5, timeout: 1h }
assets: [{ id: "p-*", type: pump }]
rules:
  - { name: hot, when: "temperature > 80", severity: critical }
sources: [{ name: f, type: file, decode: { asset: a, sensor: s, ts: t, value: v } }]
"#;

/// Applies `input` and returns the kinds and key facts of what watchers
/// are told.
fn told(m: &super::schema::TypeModel, st: &mut TwinState, input: Input<'_>) -> Vec<String> {
    let before = glance(m, st);
    let mut out = Vec::new();
    apply(m, st, input, 1_000, &mut out);
    changes(m, "p-1", &before, st, &out)
        .into_iter()
        .map(|c| match c {
            Change::Twin(t) => format!("twin {} {}", serde_json::to_value(t.health).unwrap(), t.active_alerts),
            Change::Alert(a) => format!(
                "alert {} {}",
                a.transition.event_id,
                a.alert.map_or("replaced".into(), |v| v.state.to_string())
            ),
            Change::Command(c) => format!("command {} {}", c.id, c.state),
        })
        .collect()
}

#[test]
fn a_new_twin_a_health_change_and_every_alert_transition_are_told() {
    let m = type_model(PUMP);
    let mut st = TwinState::new(&m);
    // The first event: the twin is new to watchers even though it stays green.
    assert_eq!(
        told(&m, &mut st, Input::Events(&[ev(0, 1_000, 20.0)])),
        ["twin \"green\" 0"]
    );
    // Nothing a watcher sees changed.
    assert_eq!(
        told(&m, &mut st, Input::Events(&[ev(0, 2_000, 21.0)])),
        Vec::<String>::new()
    );
    // Raised, cleared and raised again in one input: every transition, and
    // only the last one carries the alert as it stands.
    let burst = [ev(0, 3_000, 90.0), ev(0, 4_000, 20.0), ev(0, 5_000, 95.0)];
    assert_eq!(
        told(&m, &mut st, Input::Events(&burst)),
        [
            "twin \"red\" 1",
            "alert p-1/hot/1/raised replaced",
            "alert p-1/hot/1/cleared replaced",
            "alert p-1/hot/2/raised raised",
        ]
    );
    assert_eq!(
        told(&m, &mut st, Input::Ack { rule: 0, seq: 2 }),
        ["twin \"red\" 1", "alert p-1/hot/2/acknowledged acknowledged"],
        "the unacknowledged count moves with the alert"
    );
}

#[test]
fn commands_are_told_when_issued_and_when_they_leave_pending() {
    let m = type_model(PUMP);
    let mut st = TwinState::new(&m);
    told(&m, &mut st, Input::Events(&[ev(1, 1_000, 100.0)]));
    let issued = told(
        &m,
        &mut st,
        Input::Command {
            def: 0,
            value: 1200.0,
            key: "k",
        },
    );
    assert_eq!(issued, ["twin \"green\" 0", "command p-1/set_speed/1 pending"]);
    // The speed reports the commanded value: acknowledged.
    assert_eq!(
        told(&m, &mut st, Input::Events(&[ev(1, 2_000, 1201.0)])),
        ["twin \"green\" 0", "command p-1/set_speed/1 acked"]
    );
}
