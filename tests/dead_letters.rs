//! Bad records go to the dead-letter sink with their bytes, origin and
//! reason; nothing crashes and nothing vanishes.

mod common;

use common::*;

const WAIT: std::time::Duration = std::time::Duration::from_secs(60);

const TOPO: &str = r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s, range: [0, 50] }
      temperature: { unit: degC, range: [-40, 200] }
assets: [{ id: "pump-*", type: pump }]
sources:
  - name: in
    type: file
    decode: { asset: asset, sensor: sensor, ts: ts, value: value }
windows: [{ name: w1s, size: 1s }]
sinks:
  - { name: dlq, type: file, path: "{state_dir}/dlq.jsonl", outputs: [dead_letters] }
"#;

#[test]
fn every_bad_record_is_dead_lettered_with_bytes_origin_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("dlq.yaml");
    std::fs::write(&topo, TOPO).unwrap();
    let lines: Vec<&[u8]> = vec![
        br#"{"asset":"pump-1","sensor":"vibration","ts":1000,"value":1.5}"#,
        br#"{not json"#,
        br#"{"asset":"pump-1","sensor":"temperature","ts":1001,"value":40}"#,
        br#"{"asset":"tank-1","sensor":"level","ts":1002,"value":1}"#,
        br#"{"asset":"pump-1","sensor":"rpm","ts":1003,"value":1}"#,
        br#"{"asset":"pump-1","sensor":"vibration","ts":1004,"value":500}"#,
        br#"{"asset":"pump-1","sensor":"vibration","value":1}"#,
        br#"{"asset":"pump-1","sensor":"vibration","ts":"yesterday","value":1}"#,
        b"",
        br#"{"asset":"pump-1","sensor":"vibration","ts":1005,"value":"high"}"#,
        b"{\"asset\":\"pump-\xff\",\"sensor\":\"vibration\",\"ts\":1006,\"value\":1}",
        br#"{"asset":"pump-2","sensor":"vibration","ts":1007,"value":2.5}"#,
    ];
    let data = dir.path().join("in.jsonl");
    std::fs::write(&data, lines.join(&b"\n"[..])).unwrap();
    let state = dir.path().join("state");
    let report = dir.path().join("r.json");
    replay(&topo, &data, &state, &report, &[]);

    let r = json(&report);
    assert_eq!(r["events"], 3, "{r}");
    assert_eq!(r["records"], 11, "the empty line is not a record: {r}");
    assert_eq!(r["dead_letters"], 8, "{r}");
    assert_eq!(r["twins"], 2, "{r}");

    let dead = jsonl(&state.join("dlq.jsonl"));
    let got: Vec<(u64, &str)> = dead
        .iter()
        .map(|d| (d["origin"]["line"].as_u64().unwrap(), d["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, "malformed"),
            (4, "unknown_asset"),
            (5, "unknown_sensor"),
            (6, "out_of_range"),
            (7, "missing_field"),
            (8, "bad_timestamp"),
            (10, "malformed"),
            (11, "malformed"),
        ]
    );
    for d in &dead {
        let line = d["origin"]["line"].as_u64().unwrap() as usize;
        let original = lines[line - 1];
        assert_eq!(dead_letter_payload(d), original, "{d}");
        assert_eq!(d["origin"]["source"], "in");
        assert!(d["origin"]["file"].as_str().unwrap().ends_with("in.jsonl"));
        assert!(!d["message"].as_str().unwrap().is_empty());
    }
    let msg = |line: u64| {
        dead.iter().find(|d| d["origin"]["line"] == line).unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(msg(4).contains("unknown asset `tank-1`"), "{}", msg(4));
    assert!(msg(5).contains("unknown sensor `rpm`"), "{}", msg(5));
    assert!(msg(6).contains("outside its range [0, 50]"), "{}", msg(6));
    assert!(msg(7).contains("missing field `ts`"), "{}", msg(7));
    assert!(msg(10).contains("field `value`"), "{}", msg(10));
    assert!(
        dead[7].get("payload_base64").is_some(),
        "invalid UTF-8 is kept as base64"
    );
}

/// A source that names its telemetry contract and where records state theirs
/// dead-letters a record of another contract version, or of none, with the
/// reason `unknown_contract`, and applies the rest (nested field, unit
/// conversion on the way).
#[test]
fn a_record_of_another_contract_version_is_dead_lettered_with_that_reason() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("contract.yaml");
    std::fs::write(
        &topo,
        TOPO.replace(
            "    decode: { asset: asset, sensor: sensor, ts: ts, value: value }\n",
            "    decode:\n      contract: pump-gw/v2\n      contract_field: meta.contract\n      \
             asset: asset\n      sensor: sensor\n      ts: ts\n      value: value\n      \
             convert: { temperature: { scale: 0.1 } }\n",
        ),
    )
    .unwrap();
    let lines = [
        r#"{"meta":{"contract":"pump-gw/v2"},"asset":"pump-1","sensor":"temperature","ts":1000,"value":415}"#,
        r#"{"meta":{"contract":"pump-gw/v3"},"asset":"pump-1","sensor":"temperature","ts":1001,"value":420}"#,
        r#"{"asset":"pump-1","sensor":"temperature","ts":1002,"value":425}"#,
        r#"{"meta":{"contract":"pump-gw/v2"},"asset":"pump-2","sensor":"vibration","ts":1003,"value":2.5}"#,
    ];
    let data = dir.path().join("in.jsonl");
    std::fs::write(&data, lines.join("\n")).unwrap();
    let state = dir.path().join("state");
    let report = dir.path().join("r.json");
    replay(&topo, &data, &state, &report, &[]);

    let r = json(&report);
    assert_eq!(
        (r["events"].as_u64(), r["dead_letters"].as_u64()),
        (Some(2), Some(2)),
        "{r}"
    );
    // 41.5 (converted) + 2.5: the v2 records applied.
    assert_eq!(r["latest_value_x64"], (41.5 * 64.0 + 2.5 * 64.0) as i64, "{r}");
    let dead = jsonl(&state.join("dlq.jsonl"));
    let got: Vec<(u64, &str, &str)> = dead
        .iter()
        .map(|d| {
            (
                d["origin"]["line"].as_u64().unwrap(),
                d["reason"].as_str().unwrap(),
                d["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                2,
                "unknown_contract",
                "the record states contract `pump-gw/v3` at `meta.contract`; this source reads `pump-gw/v2`"
            ),
            (
                3,
                "unknown_contract",
                "the record states no contract at `meta.contract`; this source reads `pump-gw/v2`"
            ),
        ]
    );
    assert_eq!(dead[0]["payload"], lines[1]);
}

/// A record stamped beyond `node.time_tolerance` of the node's clock is
/// dead-lettered with the reason and by how much, instead of moving its
/// twin's watermark (a year-2100 reading would close every window until
/// then); by default only the future is bounded (an hour), since replays
/// carry old timestamps.
#[test]
fn timestamps_beyond_the_time_tolerance_are_dead_lettered_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let hour = 3_600_000;
    let line = |asset: &str, ts: i64| format!(r#"{{"asset":"{asset}","sensor":"vibration","ts":{ts},"value":1.5}}"#);
    let lines = [
        line("pump-1", now),
        line("pump-1", 4_102_444_800_000), // 2100-01-01
        line("pump-1", now + 2 * hour),
        line("pump-1", now + hour / 2),
        line("pump-2", 1_000), // 1970
        line("pump-2", now - 20 * 24 * hour),
        // Past RFC 3339's year 9999 (found by the `decode` fuzz target).
        line("pump-3", 1_700_000_000_123_000_123),
    ];
    let data = dir.path().join("in.jsonl");
    std::fs::write(&data, lines.join("\n")).unwrap();
    let run = |name: &str, topo_text: String| {
        let topo = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&topo, topo_text).unwrap();
        let state = dir.path().join(name);
        let report = dir.path().join(format!("{name}.json"));
        replay(&topo, &data, &state, &report, &[]);
        let dead: Vec<(u64, String, String)> = jsonl(&state.join("dlq.jsonl"))
            .iter()
            .map(|d| {
                let s = |v: &serde_json::Value| v.as_str().unwrap().to_string();
                (d["origin"]["line"].as_u64().unwrap(), s(&d["reason"]), s(&d["message"]))
            })
            .collect();
        (json(&report), dead)
    };

    let (r, dead) = run("default", TOPO.to_string());
    assert_eq!(
        (r["events"].as_u64(), r["dead_letters"].as_u64()),
        (Some(4), Some(3)),
        "{r}"
    );
    let reasons: Vec<(u64, &str)> = dead.iter().map(|(l, r, _)| (*l, r.as_str())).collect();
    assert_eq!(
        reasons,
        [
            (2, "future_timestamp"),
            (3, "future_timestamp"),
            (7, "future_timestamp")
        ]
    );
    assert!(
        dead[2]
            .2
            .starts_with("timestamp 1700000000123000123 ms since the epoch is "),
        "{}",
        dead[2].2
    );
    assert!(
        dead[0].2.starts_with("timestamp 2100-01-01T00:00:00.000Z is ")
            && dead[0].2.contains("ahead of this node's clock")
            && dead[0].2.ends_with("beyond node.time_tolerance.future (1h)"),
        "{}",
        dead[0].2
    );

    let (r, dead) = run(
        "bounded",
        format!("node: {{ time_tolerance: {{ future: 3h, past: 7d }} }}\n{TOPO}"),
    );
    assert_eq!(
        (r["events"].as_u64(), r["dead_letters"].as_u64()),
        (Some(3), Some(4)),
        "{r}"
    );
    let reasons: Vec<(u64, &str)> = dead.iter().map(|(l, r, _)| (*l, r.as_str())).collect();
    assert_eq!(
        reasons,
        [
            (2, "future_timestamp"),
            (5, "past_timestamp"),
            (6, "past_timestamp"),
            (7, "future_timestamp")
        ]
    );
    assert!(
        dead[2].2.contains("is 20days ") && dead[2].2.ends_with("beyond node.time_tolerance.past (7days)"),
        "{}",
        dead[2].2
    );

    let (r, _) = run("off", format!("node: {{ time_tolerance: {{ future: off }} }}\n{TOPO}"));
    assert_eq!(
        (r["events"].as_u64(), r["dead_letters"].as_u64()),
        (Some(7), Some(0)),
        "{r}"
    );
}

/// The clock drill (`TWINSTREAM_CLOCK_OFFSET_FILE`, the soak's clock step):
/// a node started with its clock two hours behind takes a reading stamped
/// with the machine's time as two hours in the future and dead-letters it;
/// stepped back to the machine's time (the file, then SIGUSR2) it takes the
/// next one.
#[test]
fn a_node_whose_clock_is_stepped_back_rejects_live_readings_until_it_is_stepped_again() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let (updates, dead) = (dir.path().join("updates.jsonl"), dir.path().join("dead.jsonl"));
    let topo = Topo::new("clock-drill")
        .model(PUMPS)
        .mqtt_source_with("plant", broker.port, "clock-drill", "")
        .file_sink("updates", &updates, "twin_updates")
        .file_sink("dead", &dead, "dead_letters")
        .write(&dir.path().join("clock.yaml"));
    let offset = dir.path().join("clock-offset");
    std::fs::write(&offset, "-7200000\n").unwrap();
    let mut cmd = run_cmd(&topo, &dir.path().join("state"));
    cmd.env("TWINSTREAM_CLOCK_OFFSET_FILE", &offset);
    let mut run = spawn(&mut cmd);
    run.wait_stderr("the stepped clock", WAIT, |l| {
        l.contains("fault drill: the processing-time clock is stepped") && l.contains("offset_ms=-7200000")
    });
    run.wait_stderr("the MQTT subscription", WAIT, |l| l.contains("MQTT subscribed"));
    let reading = || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        vec![(
            "plant/pump-01/temperature".to_string(),
            format!(r#"{{"ts":{now},"value":20.5}}"#),
        )]
    };
    publish(broker.port, &reading());
    let rejected = poll_until(WAIT, || jsonl(&dead).into_iter().next());
    let rejected = rejected.expect("the reading was not dead-lettered");
    assert_eq!(rejected["reason"], "future_timestamp", "{rejected}");
    assert!(
        rejected["message"]
            .as_str()
            .unwrap()
            .contains("ahead of this node's clock"),
        "{rejected}"
    );

    std::fs::write(&offset, "0").unwrap();
    let pid = run.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-USR2", &pid])
        .status()
        .unwrap()
        .success());
    run.wait_stderr("the clock stepped back", WAIT, |l| {
        l.contains("fault drill: the processing-time clock is stepped") && l.contains("offset_ms=0")
    });
    publish(broker.port, &reading());
    wait_for(&updates, "pump-01 took the reading", |v| v.get("pump-01") == Some(&1));
    stop_cleanly(run);
    assert_eq!(jsonl(&dead).len(), 1, "only the reading of the stepped clock");
}
