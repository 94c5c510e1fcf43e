//! Commands through the API: out over MQTT, acknowledged, failed with a
//! rollback, and durable across a restart.

use super::*;

/// A pump whose speed is commanded over MQTT and acknowledged on
/// `plant/<asset>/speed_ack`; its valve command waits an hour.
fn command_topology(dir: &Path, broker: u16) -> PathBuf {
    Topo::new("cmd-test")
        .with("http: { write_token_env: TEST_WRITE_TOKEN }")
        .model(
            r#"asset_types:
  pump:
    sensors: { speed: { unit: rpm }, speed_ack: { unit: seq }, valve: { unit: pct } }
    commands:
      set_speed: { reported: speed, tolerance: 5, ack_sensor: speed_ack, timeout: 1500ms, rollback: 0 }
      set_valve: { reported: valve, timeout: 1h, min: 0, max: 100 }
assets: [{ id: "pump-*", type: pump }]
"#,
        )
        .mqtt_source("plant", broker, "cmd-test")
        .sink(&format!(
            r#"{{ name: commands, type: mqtt, port: {broker}, topic: "cmd/{{asset}}/{{name}}", qos: 1, outputs: [commands] }}"#
        ))
        .file_sink("alerts", &dir.join("alerts.jsonl"), "alerts")
        .write(&dir.join("commands.yaml"))
}

fn post_command(base: &str, asset: &str, token: Option<&str>, body: &Value) -> Reply {
    request(
        "POST",
        &format!("{base}/twins/{asset}/commands"),
        token,
        Some(body.to_string().as_bytes()),
    )
}

/// `(id, value)` of the commands published so far.
fn published(got: &[(String, Vec<u8>, bool)]) -> Vec<(String, f64)> {
    got.iter()
        .map(|(_, p, _)| {
            let v: Value = serde_json::from_slice(p).unwrap();
            (v["id"].as_str().unwrap().to_string(), v["value"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn commands_go_out_over_mqtt_are_acknowledged_fail_with_rollback_and_survive_a_restart() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let topo = command_topology(dir.path(), broker.port);
    let token = "w-commands";
    let env = [("TEST_WRITE_TOKEN", token)];
    let (run, base) = start(&state, &topo, &env);
    let devices = Subscriber::start(broker.port, "test-devices", "cmd/#", true);
    let reading = |sensor: &str, ts: i64, value: f64| {
        (
            format!("plant/pump-1/{sensor}"),
            format!("{{\"ts\":{ts},\"value\":{value}}}"),
        )
    };
    publish(broker.port, &[reading("speed", 1_000, 800.0)]);
    wait_get(&base, "/twins/pump-1", "pump-1 never appeared", |r| r.status == 200);

    // Bad requests are refused before anything is sent.
    let url = format!("{base}/twins/pump-1/commands");
    let good = serde_json::json!({ "command": "set_speed", "value": 1200, "idempotency_key": "k1" });
    assert_error(&post_command(&base, "pump-1", None, &good), 401, "unauthorized");
    assert_error(
        &request("POST", &url, Some(token), Some(b"{\"command\": ")),
        400,
        "bad_request",
    );
    let big = format!(
        "{{\"command\": \"set_speed\", \"value\": 1, \"idempotency_key\": \"{}\"}}",
        "x".repeat(20_000)
    );
    assert_error(
        &request("POST", &url, Some(token), Some(big.as_bytes())),
        413,
        "payload_too_large",
    );
    let agent = ureq::AgentBuilder::new().build();
    let plain = match agent
        .post(&url)
        .set("Authorization", &format!("Bearer {token}"))
        .set("Content-Type", "text/plain")
        .send_string(&good.to_string())
    {
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap()),
        other => panic!("{other:?}"),
    };
    assert_eq!(plain.0, 415, "{plain:?}");
    for (body, code) in [
        (serde_json::json!({ "command": "set_speed", "value": 1 }), "bad_request"),
        (
            serde_json::json!({ "command": "fly", "value": 1, "idempotency_key": "z" }),
            "bad_request",
        ),
        (
            serde_json::json!({ "command": "set_valve", "value": 150, "idempotency_key": "z" }),
            "bad_request",
        ),
        (
            serde_json::json!({ "command": "set_speed", "value": "fast", "idempotency_key": "z" }),
            "bad_request",
        ),
        (
            serde_json::json!({ "command": "set_speed", "value": 1, "idempotency_key": "z", "extra": 1 }),
            "bad_request",
        ),
    ] {
        assert_error(&post_command(&base, "pump-1", Some(token), &body), 400, code);
    }
    assert_error(&post_command(&base, "valve-1", Some(token), &good), 404, "not_found");

    // A command: published to the device, pending, idempotent by key.
    let created = post_command(&base, "pump-1", Some(token), &good);
    assert_eq!(created.status, 202, "{created:?}");
    assert_eq!(created.body["id"], "pump-1/set_speed/1");
    assert_eq!(created.body["state"], "pending");
    let mut got = Vec::new();
    devices.collect_until(&mut got, "the command was not published", |g| !g.is_empty());
    assert_eq!(got[0].0, "cmd/pump-1/set_speed");
    assert_eq!(published(&got), [("pump-1/set_speed/1".to_string(), 1200.0)]);
    let again = post_command(&base, "pump-1", Some(token), &good);
    assert_eq!(
        (again.status, &again.body["id"]),
        (200, &created.body["id"]),
        "{again:?}"
    );
    let other = serde_json::json!({ "command": "set_speed", "value": 1300, "idempotency_key": "k1" });
    assert_error(&post_command(&base, "pump-1", Some(token), &other), 409, "conflict");
    let twin = get(&base, "/twins/pump-1").body;
    assert_eq!(twin["commands"]["set_speed"]["desired"], 1200.0);
    assert_eq!(twin["commands"]["set_speed"]["reported"], 800.0);
    assert_eq!(twin["commands"]["set_speed"]["delta"], -400.0);
    assert_eq!(twin["commands"]["set_speed"]["pending"]["seq"], 1);

    // The device acknowledges on its ack topic.
    publish(broker.port, &[reading("speed_ack", 2_000, 1.0)]);
    let acked = wait_get(&base, "/twins/pump-1", "the command was not acknowledged", |r| {
        r.body["command_log"][0]["state"] == "acked"
    });
    assert_eq!(acked.body["commands"]["set_speed"]["pending"], Value::Null);

    // No answer: after 1.5 s it fails, the rollback goes out, an alert is raised.
    let slow = serde_json::json!({ "command": "set_speed", "value": 1800, "idempotency_key": "k2" });
    assert_eq!(post_command(&base, "pump-1", Some(token), &slow).status, 202);
    devices.collect_until(&mut got, "no rollback published", |g| g.len() >= 3);
    assert_eq!(
        published(&got),
        [
            ("pump-1/set_speed/1".to_string(), 1200.0),
            ("pump-1/set_speed/2".to_string(), 1800.0),
            ("pump-1/set_speed/3".to_string(), 0.0),
        ]
    );
    let rollback: Value = serde_json::from_slice(&got[2].1).unwrap();
    assert_eq!(
        (rollback["origin"].as_str(), rollback["rollback_of"].as_u64()),
        (Some("rollback"), Some(2))
    );
    let failed = wait_get(&base, "/alerts", "no command-failed alert", |r| r.body["total"] == 1);
    assert_eq!(items(&failed, "id"), ["pump-1/command-failed:set_speed/1"]);
    // The alert list asked the twins; so does `fresh=true` (the checkpoint
    // may not hold the failure yet).
    let log = get(&base, "/twins/pump-1?fresh=true").body["command_log"].clone();
    let states: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    assert_eq!(states[..2], ["acked", "failed"], "{log}");

    // A command that waits an hour survives a restart, and is acknowledged after it.
    let valve = serde_json::json!({ "command": "set_valve", "value": 40, "idempotency_key": "v1" });
    assert_eq!(post_command(&base, "pump-1", Some(token), &valve).status, 202);
    stop_cleanly(run);
    let (run, base) = start(&state, &topo, &env);
    let twin = get(&base, "/twins/pump-1").body;
    assert_eq!(
        twin["commands"]["set_valve"]["pending"]["id"], "pump-1/set_valve/1",
        "{twin}"
    );
    assert_eq!(twin["commands"]["set_valve"]["desired"], 40.0);
    let repeat = post_command(&base, "pump-1", Some(token), &valve);
    assert_eq!(
        (repeat.status, repeat.body["id"].as_str()),
        (200, Some("pump-1/set_valve/1"))
    );
    publish(broker.port, &[reading("valve", 3_000, 40.0)]);
    wait_get(
        &base,
        "/twins/pump-1",
        "the valve command was not acknowledged after the restart",
        |r| {
            r.body["commands"]["set_valve"]["pending"].is_null()
                && r.body["command_log"].as_array().is_some_and(|l| {
                    l.iter()
                        .any(|c| c["id"] == "pump-1/set_valve/1" && c["state"] == "acked")
                })
        },
    );
    let metrics = get(&base, "/metrics").body;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("twinstream_commands_total{outcome=\"acked\"} 1"),
        "{metrics}"
    );
    stop_cleanly(run);
}
