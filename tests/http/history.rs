//! History through the API: a sensor's buckets in a tier and re-aggregated,
//! raw readings, several sensors, paging, times as RFC 3339, errors, alert
//! transitions and commands with their outcome, all durable across a restart.

use super::*;

/// 2023-11-14T22:13:00Z, on a minute boundary.
const T0: i64 = 1_699_999_980_000;

fn history_topology(dir: &Path) -> PathBuf {
    Topo::new("history-test")
        .with("http: { write_token_env: TEST_WRITE_TOKEN }")
        .model(
            r#"asset_types:
  pump:
    sensors: { temperature: { unit: degC }, current: { unit: A }, valve: { unit: pct } }
    commands:
      set_valve: { reported: valve, timeout: 300ms, rollback: 0, min: 0, max: 100 }
    history:
      raw: 1h
      tiers: [{ every: 1m, keep: 7d }, { every: 1h, keep: 365d }]
      sensors: [temperature, current]
  tank:
    sensors: { level: { unit: m } }
assets:
  - { id: "pump-*", type: pump }
  - { id: tank-1, type: tank }
rules:
  - { name: hot, when: "temperature > 80", severity: critical, asset_types: [pump] }
"#,
        )
        .file_source("plc", &dir.join("in.jsonl"))
        .file_sink("out", &dir.join("out.jsonl"), "alerts, commands")
        .write(&dir.join("history.yaml"))
}

/// pump-1: temperature `i % 100` and current 5 every second for 150 s from
/// T0, then a late temperature of 1000 in the first minute.
fn history_readings(dir: &Path) {
    let mut lines = String::new();
    let mut add = |sensor: &str, ts: i64, value: f64| {
        lines.push_str(&format!(
            "{{\"asset\":\"pump-1\",\"sensor\":\"{sensor}\",\"ts\":{ts},\"value\":{value}}}\n"
        ));
    };
    for i in 0..150 {
        add("temperature", T0 + i * 1000, (i % 100) as f64);
        add("current", T0 + i * 1000, 5.0);
    }
    add("temperature", T0 + 5_500, 1000.0);
    lines.push_str(&format!(
        "{{\"asset\":\"tank-1\",\"sensor\":\"level\",\"ts\":{T0},\"value\":1}}\n"
    ));
    std::fs::write(dir.join("in.jsonl"), lines).unwrap();
}

fn points(r: &Reply, series: usize) -> Vec<Value> {
    r.body["series"][series]["points"]
        .as_array()
        .unwrap_or_else(|| panic!("{r:?}"))
        .clone()
}

#[test]
fn history_is_served_by_tier_paged_and_durable_with_alerts_and_commands() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    history_readings(dir.path());
    let topo = history_topology(dir.path());
    let token = "w-history";
    let env = [("TEST_WRITE_TOKEN", token)];
    let (run, base) = start(&state, &topo, &env);
    let minutes = format!(
        "/twins/pump-1/history?sensor=temperature&step=1m&from={T0}&to={}",
        T0 + 600_000
    );
    let r = wait_get(&base, &minutes, "history never held all readings", |r| {
        r.status == 200
            && r.body["series"][0]["points"]
                .as_array()
                .is_some_and(|p| p.iter().map(|p| p["count"].as_u64().unwrap()).sum::<u64>() == 151)
    });
    assert_eq!(
        (r.body["step_ms"].clone(), r.body["tier_ms"].clone()),
        (60_000.into(), 60_000.into())
    );
    let p = points(&r, 0);
    assert_eq!(p.len(), 3, "{r:?}");
    // Minute 0: 0..=59 and the late 1000.
    assert_eq!(p[0]["t"], T0);
    assert_eq!(p[0]["count"], 61);
    assert_eq!(p[0]["min"], 0.0);
    assert_eq!(p[0]["max"], 1000.0);
    assert_eq!(p[0]["mean"], 2770.0 / 61.0);
    assert_eq!(
        (p[0]["first_ts"].clone(), p[0]["first"].clone()),
        (T0.into(), 0.0.into())
    );
    assert_eq!(
        (p[0]["last_ts"].clone(), p[0]["last"].clone()),
        ((T0 + 59_000).into(), 59.0.into())
    );
    // Minute 1: 60..=99 then 0..=19.
    assert_eq!(
        (p[1]["count"].clone(), p[1]["min"].clone(), p[1]["max"].clone()),
        (60.into(), 0.0.into(), 99.0.into())
    );
    assert_eq!(
        (p[1]["first"].clone(), p[1]["last"].clone()),
        (60.0.into(), 19.0.into())
    );
    assert_eq!(p[2]["count"], 30);

    // Re-aggregated to 2 minutes (aligned to the epoch), and from the 1 h tier.
    let two = get(
        &base,
        &format!(
            "/twins/pump-1/history?sensor=temperature&step=2m&from={T0}&to={}",
            T0 + 600_000
        ),
    );
    let two_counts: Vec<u64> = points(&two, 0).iter().map(|p| p["count"].as_u64().unwrap()).collect();
    assert_eq!(two_counts.iter().sum::<u64>(), 151, "{two:?}");
    assert_eq!(two.body["tier_ms"], 60_000);
    let hour = get(
        &base,
        &format!(
            "/twins/pump-1/history?sensor=temperature&step=1h&from={}&to={}",
            T0 - 3_600_000,
            T0 + 3_600_000
        ),
    );
    assert_eq!(hour.body["tier_ms"], 3_600_000, "{hour:?}");
    assert_eq!(
        points(&hour, 0)
            .iter()
            .map(|p| p["count"].as_u64().unwrap())
            .sum::<u64>(),
        151
    );

    // Several series at once; times as RFC 3339.
    let both = get(
        &base,
        "/twins/pump-1/history?sensor=temperature,current&step=1m&from=2023-11-14T22:13:00Z&to=2023-11-14T22:14:00Z",
    );
    assert_eq!(both.status, 200, "{both:?}");
    assert_eq!(both.body["series"][1]["sensor"], "current");
    assert_eq!(points(&both, 0).len(), 1);
    assert_eq!(points(&both, 1)[0]["count"], 60);
    assert_eq!(points(&both, 1)[0]["mean"], 5.0);

    // Paging: two points, then the rest from `next`.
    let first = get(&base, &format!("{minutes}&max_points=2"));
    assert_eq!(points(&first, 0).len(), 2);
    assert_eq!(first.body["next"], T0 + 120_000);
    let rest = get(
        &base,
        &format!(
            "/twins/pump-1/history?sensor=temperature&step=1m&from={}&to={}&max_points=2",
            T0 + 120_000,
            T0 + 600_000
        ),
    );
    assert_eq!(points(&rest, 0).len(), 1);
    assert_eq!(rest.body["next"], Value::Null);

    // Raw readings in event-time order (the late one in its place).
    let raw = get(
        &base,
        &format!(
            "/twins/pump-1/history?sensor=temperature&step=raw&from={}&to={}",
            T0 + 4_000,
            T0 + 7_000
        ),
    );
    let readings: Vec<(i64, f64)> = raw.body["series"][0]["readings"]
        .as_array()
        .unwrap_or_else(|| panic!("{raw:?}"))
        .iter()
        .map(|r| (r["t"].as_i64().unwrap(), r["value"].as_f64().unwrap()))
        .collect();
    assert_eq!(
        readings,
        [
            (T0 + 4_000, 4.0),
            (T0 + 5_000, 5.0),
            (T0 + 5_500, 1000.0),
            (T0 + 6_000, 6.0)
        ]
    );

    // Wrong calls: clear errors.
    for (path, status, code) in [
        ("/twins/pump-1/history?sensor=valve", 400, "bad_request"),
        ("/twins/pump-1/history?step=90s", 400, "bad_request"),
        ("/twins/pump-1/history?step=soon", 400, "bad_request"),
        ("/twins/pump-1/history?from=yesterday", 400, "bad_request"),
        ("/twins/pump-1/history?from=10&to=5", 400, "bad_request"),
        ("/twins/pump-1/history?max_points=0", 400, "bad_request"),
        ("/twins/pump-1/history?colour=red", 400, "bad_request"),
        ("/twins/tank-1/history", 404, "not_found"),
        ("/twins/valve-9/history", 404, "not_found"),
    ] {
        assert_error(&get(&base, path), status, code);
    }

    // Alert transitions: `hot` raised at 81 and cleared at 100 (0).
    let alerts = wait_get(&base, "/twins/pump-1/alerts/history", "no alert history", |r| {
        r.body["transitions"].as_array().is_some_and(|t| t.len() >= 2)
    });
    let t = alerts.body["transitions"].as_array().unwrap();
    let seen: Vec<(String, i64)> = t
        .iter()
        .map(|t| (t["transition"].as_str().unwrap().to_string(), t["ts"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        seen[..2],
        [
            ("raised".to_string(), T0 + 81_000),
            ("cleared".to_string(), T0 + 100_000)
        ]
    );
    assert_eq!(t[0]["event_id"], "pump-1/hot/1/raised");
    assert_eq!(t[0]["inputs"]["temperature"], 81.0);

    // A command that is never confirmed fails and is rolled back; the
    // rollback fails too. History keeps both with their outcome.
    let sent = request(
        "POST",
        &format!("{base}/twins/pump-1/commands"),
        Some(token),
        Some(br#"{"command":"set_valve","value":50,"idempotency_key":"h-1"}"#),
    );
    assert_eq!(sent.status, 202, "{sent:?}");
    let cmds = wait_get(
        &base,
        "/twins/pump-1/commands/history",
        "the commands never failed",
        |r| {
            r.body["commands"]
                .as_array()
                .is_some_and(|c| c.len() == 2 && c.iter().all(|c| c["state"] == "failed"))
        },
    );
    let c = cmds.body["commands"].as_array().unwrap();
    assert_eq!(
        (c[0]["command"].clone(), c[0]["value"].clone(), c[0]["origin"].clone()),
        ("set_valve".into(), 50.0.into(), "api".into())
    );
    assert_eq!(
        (
            c[1]["origin"].clone(),
            c[1]["rollback_of"].clone(),
            c[1]["value"].clone()
        ),
        ("rollback".into(), 1.into(), 0.0.into())
    );
    // ... and the alert the failure raised.
    wait_get(&base, "/twins/pump-1/alerts/history", "no command-failed alert", |r| {
        r.body["transitions"].as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t["rule"] == "command-failed:set_valve" && t["transition"] == "raised")
        })
    });
    let alerts_before = get(&base, "/twins/pump-1/alerts/history").body;
    let paged = get(&base, "/twins/pump-1/alerts/history?limit=1");
    assert_eq!(paged.body["transitions"].as_array().unwrap().len(), 1);
    assert_eq!(paged.body["next"], T0 + 100_000);

    // The same after a restart: history is durable.
    let before = get(&base, &minutes).body;
    let raw_before = get(
        &base,
        &format!("/twins/pump-1/history?step=raw&from={T0}&to={}", T0 + 600_000),
    )
    .body;
    let cmds_before = get(&base, "/twins/pump-1/commands/history").body;
    stop_cleanly(run);
    let (run, base) = start(&state, &topo, &env);
    assert_eq!(get(&base, &minutes).body, before);
    let raw_after = get(
        &base,
        &format!("/twins/pump-1/history?step=raw&from={T0}&to={}", T0 + 600_000),
    )
    .body;
    assert_eq!(raw_after, raw_before);
    assert_eq!(raw_after["series"][0]["readings"].as_array().unwrap().len(), 151);
    assert_eq!(raw_after["series"][1]["readings"].as_array().unwrap().len(), 150);
    assert_eq!(get(&base, "/twins/pump-1/commands/history").body, cmds_before);
    assert_eq!(get(&base, "/twins/pump-1/alerts/history").body, alerts_before);
    stop_cleanly(run);
}
