//! The HTTP API against the running binary: twins (filters, pagination),
//! alerts and their acknowledgement (durable across a restart), bearer-token
//! auth, the error shape, readiness following a real Mosquitto, and a real
//! Prometheus (Debian package) scraping `/metrics`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// A response: status and body (JSON when it parses, else a string);
/// status 0 when the connection failed.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Value,
    /// `X-Twinstream-Read`: where a twin was read from.
    read: Option<String>,
}

fn request(method: &str, url: &str, token: Option<&str>, body: Option<&[u8]>) -> Reply {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let mut req = agent.request(method, url);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    let res = match body {
        Some(b) => req.set("Content-Type", "application/json").send_bytes(b),
        None => req.call(),
    };
    let res = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        // Not listening (yet, or any more): status 0, for pollers to retry.
        Err(e) => {
            return Reply {
                status: 0,
                body: Value::String(format!("{method} {url}: {e}")),
                read: None,
            }
        }
    };
    let status = res.status();
    let read = res.header("X-Twinstream-Read").map(str::to_string);
    let text = res.into_string().unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply { status, body, read }
}

fn get(base: &str, path: &str) -> Reply {
    request("GET", &format!("{base}{path}"), None, None)
}

/// Polls `GET path` until `done` holds for the reply.
fn wait_get(base: &str, path: &str, what: &str, done: impl Fn(&Reply) -> bool) -> Reply {
    let mut last = None;
    poll_until(WAIT, || {
        let r = get(base, path);
        if done(&r) {
            return Some(r);
        }
        last = Some(r);
        None
    })
    .unwrap_or_else(|| panic!("{what}: last reply to {path}: {last:?}"))
}

fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.body["error"]["code"], code, "{r:?}");
    assert!(
        r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{r:?}"
    );
}

const TYPES: &str = r#"asset_types:
  pump:
    sensors: { temperature: { unit: degC }, current: { unit: A } }
    relations: { feeds: tank }
  tank:
    sensors:
      level: { unit: m, expected_every: 100ms, stale_after: 400ms }
assets:
  - { id: tank-1, type: tank }
  - { id: tank-2, type: tank }
  - { id: "pump-*", type: pump, relations: { feeds: tank-1 } }
rules:
  - { name: hot, when: "temperature > 80", severity: critical, asset_types: [pump] }
"#;

/// A topology with a file source reading `in.jsonl`; `http` is the
/// `node.http` mapping.
fn topology(dir: &Path, http: &str) -> PathBuf {
    Topo::new("http-test")
        .with(&format!("http: {http}"))
        .model(TYPES)
        .file_source("plc", &dir.join("in.jsonl"))
        .file_sink("alerts", &dir.join("alerts.jsonl"), "alerts")
        .write(&dir.join("http.yaml"))
}

fn readings(dir: &Path) {
    let mut lines = String::new();
    let mut add = |asset: &str, sensor: &str, ts: i64, value: f64| {
        lines.push_str(&format!(
            "{{\"asset\":\"{asset}\",\"sensor\":\"{sensor}\",\"ts\":{ts},\"value\":{value}}}\n"
        ));
    };
    for (i, pump) in ["pump-1", "pump-2", "pump-3"].iter().enumerate() {
        add(pump, "current", 1_000, 10.0 + i as f64);
        add(pump, "temperature", 1_000, 60.0);
    }
    // pump-2 runs hot: a critical alert.
    add("pump-2", "temperature", 2_000, 95.0);
    add("tank-1", "level", 1_500, 3.5);
    std::fs::write(dir.join("in.jsonl"), lines).unwrap();
}

/// Runs the node with its HTTP API on a port it picks and waits until it
/// is ready; returns it and the API's base URL.
fn start(state: &Path, topo: &Path, env: &[(&str, &str)]) -> (Running, String) {
    let mut cmd = run_cmd(topo, state);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut run = spawn(&mut cmd);
    let base = run.http_base();
    wait_get(&base, "/readyz", "the node did not become ready", |r| r.status == 200);
    (run, base)
}

fn items(r: &Reply, field: &str) -> Vec<String> {
    r.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{r:?}"))
        .iter()
        .map(|i| i[field].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn twins_and_alerts_are_served_filtered_paged_and_acknowledged_durably() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    readings(dir.path());
    let topo = topology(dir.path(), "{ write_token_env: TEST_WRITE_TOKEN }");
    let env = [("TEST_WRITE_TOKEN", "w-0123456789")];
    let (run, base) = start(&state, &topo, &env);

    assert_eq!(get(&base, "/healthz").body["status"], "ok");
    let pump2 = wait_get(&base, "/twins/pump-2", "pump-2 never reached version 3", |r| {
        r.status == 200 && r.body["version"] == 3
    });
    let t = &pump2.body;
    assert_eq!(t["type"], "pump");
    assert_eq!(t["health"], "red", "a critical alert is active: {t}");
    assert_eq!(t["sensors"]["temperature"]["value"], 95.0);
    assert_eq!(t["sensors"]["temperature"]["ts"], 2_000);
    assert_eq!(t["sensors"]["temperature"]["source"], "plc");
    assert_eq!(t["sensors"]["temperature"]["quality"], "good");
    assert_eq!(t["sensors"]["current"]["value"], 11.0);
    assert_eq!(
        t["relations"],
        serde_json::json!([{ "relation": "feeds", "asset": "tank-1" }])
    );
    assert_eq!(t["alerts"][0]["id"], "pump-2/hot/1");
    assert_eq!(t["alerts"][0]["state"], "raised");
    assert_eq!(t["alerts"][0]["severity"], "critical");
    assert_eq!(t["stats"]["events"], 3);

    // Read from the last durable checkpoint once one holds the twin (the
    // twin itself answers before), from the twin with `fresh=true`; the
    // same here, as nothing arrives any more.
    let stored = wait_get(&base, "/twins/pump-2", "no checkpoint holds pump-2", |r| {
        r.read.as_deref() == Some("checkpoint")
    });
    let fresh = get(&base, "/twins/pump-2?fresh=true");
    assert_eq!(fresh.read.as_deref(), Some("twin"), "{fresh:?}");
    assert_eq!(fresh.body["sensors"], stored.body["sensors"]);
    assert_eq!(fresh.body["alerts"], stored.body["alerts"]);
    assert_error(&get(&base, "/twins/pump-2?fresh=maybe"), 400, "bad_request");

    // tank-2 is declared and never reported (no checkpoint has it: the twin
    // answers); pump-9 matches a pattern and has no state; nothing matches
    // `valve-1`.
    let tank2 = get(&base, "/twins/tank-2");
    assert_eq!(
        (tank2.status, tank2.body["version"].clone()),
        (200, 0.into()),
        "{tank2:?}"
    );
    assert_eq!(tank2.read.as_deref(), Some("twin"));
    assert_error(&get(&base, "/twins/pump-9"), 404, "not_found");
    assert_error(&get(&base, "/twins/valve-1"), 404, "not_found");

    // tank-1 reported once and goes stale (processing time) 400 ms later:
    // `stale:level` and, with no sensor fresh, `offline` (critical: red).
    let stale = wait_get(&base, "/twins?quality=stale", "tank-1 never went stale", |r| {
        r.body["total"] == 1
    });
    assert_eq!(items(&stale, "asset"), ["tank-1"]);

    // Lists: every twin once, in asset order, paged by `next`.
    let all = get(&base, "/twins");
    assert_eq!(all.body["total"], 5, "{all:?}");
    assert_eq!(items(&all, "asset"), ["pump-1", "pump-2", "pump-3", "tank-1", "tank-2"]);
    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let page = get(&base, &format!("/twins?limit=2&after={after}"));
        assert_eq!(page.status, 200, "{page:?}");
        paged.extend(items(&page, "asset"));
        match page.body["next"].as_str() {
            Some(n) => after = n.to_string(),
            None => break,
        }
    }
    assert_eq!(paged, items(&all, "asset"));
    assert_eq!(items(&get(&base, "/twins?type=tank"), "asset"), ["tank-1", "tank-2"]);
    assert_eq!(items(&get(&base, "/twins?health=red"), "asset"), ["pump-2", "tank-1"]);
    assert_eq!(items(&get(&base, "/twins?health=green&type=tank"), "asset"), ["tank-2"]);
    assert_eq!(items(&get(&base, "/twins?alert=active"), "asset"), ["pump-2", "tank-1"]);
    assert_eq!(
        items(&get(&base, "/twins?alert=none&type=pump"), "asset"),
        ["pump-1", "pump-3"]
    );
    assert_eq!(
        items(&get(&base, "/twins?relation=feeds:tank-1"), "asset"),
        ["pump-1", "pump-2", "pump-3"]
    );
    assert!(items(&get(&base, "/twins?relation=feeds:tank-2"), "asset").is_empty());
    for bad in [
        "/twins?health=purple",
        "/twins?limit=0",
        "/twins?limit=5000",
        "/twins?colour=red",
        "/twins?type=valve",
        "/alerts?state=open",
        "/alerts?severity=fatal",
    ] {
        assert_error(&get(&base, bad), 400, "bad_request");
    }

    // Alerts, and acknowledging one.
    let alerts = get(&base, "/alerts");
    assert_eq!(
        items(&alerts, "id"),
        ["pump-2/hot/1", "tank-1/offline/1", "tank-1/stale:level/1"],
        "{alerts:?}"
    );
    assert_eq!(
        items(&get(&base, "/alerts?severity=warning"), "id"),
        ["tank-1/stale:level/1"]
    );
    assert_eq!(
        items(&get(&base, "/alerts?asset=pump-2&limit=1"), "id"),
        ["pump-2/hot/1"]
    );
    let ack = format!("{base}/alerts/pump-2/hot/1/ack");
    assert_error(&request("POST", &ack, None, None), 401, "unauthorized");
    assert_error(&request("POST", &ack, Some("w-wrong"), None), 401, "unauthorized");
    let acked = request("POST", &ack, Some("w-0123456789"), None);
    assert_eq!(acked.status, 200, "{acked:?}");
    assert_eq!(acked.body["state"], "acknowledged");
    let again = request("POST", &ack, Some("w-0123456789"), None);
    assert_eq!(
        (again.status, &again.body),
        (200, &acked.body),
        "acknowledging twice answers the same"
    );
    assert_eq!(
        items(&get(&base, "/alerts?state=raised"), "id"),
        ["tank-1/offline/1", "tank-1/stale:level/1"]
    );
    assert_eq!(
        items(
            &get(&base, "/alerts?state=acknowledged&severity=critical&asset=pump-2"),
            "id"
        ),
        ["pump-2/hot/1"]
    );
    let token = Some("w-0123456789");
    assert_error(
        &request("POST", &format!("{base}/alerts/pump-2/hot/7/ack"), token, None),
        409,
        "conflict",
    );
    assert_error(
        &request("POST", &format!("{base}/alerts/pump-2/cold/1/ack"), token, None),
        404,
        "not_found",
    );
    assert_error(
        &request("POST", &format!("{base}/alerts/pump-1/hot/1/ack"), token, None),
        404,
        "not_found",
    );
    assert_error(
        &request("POST", &format!("{base}/alerts/pump-2/hot/x/ack"), token, None),
        400,
        "bad_request",
    );
    assert_error(&request("GET", &ack, token, None), 405, "method_not_allowed");
    assert_error(
        &request("DELETE", &format!("{base}/twins"), token, None),
        405,
        "method_not_allowed",
    );
    assert_error(&get(&base, "/nowhere"), 404, "not_found");

    // The acknowledgement went to the alert sink as a transition.
    let transitions: Vec<String> = jsonl(&dir.path().join("alerts.jsonl"))
        .iter()
        .filter(|l| l["asset"] == "pump-2")
        .map(|l| format!("{}:{}", l["id"].as_str().unwrap(), l["transition"].as_str().unwrap()))
        .collect();
    assert_eq!(transitions, ["pump-2/hot/1:raised", "pump-2/hot/1:acknowledged"]);

    let metrics = get(&base, "/metrics").body;
    let metrics = metrics.as_str().unwrap();
    for series in [
        "twinstream_http_auth_failures_total{route=\"/alerts/{id}/ack\"} 2",
        "twinstream_alerts_active{severity=\"critical\"} 2",
        "twinstream_alert_transitions_total{severity=\"critical\",transition=\"acknowledged\"} 1",
        "twinstream_sensors_stale 1",
        "twinstream_ready 1",
    ] {
        assert!(metrics.contains(series), "no `{series}` in:\n{metrics}");
    }
    let doc = get(&base, "/openapi.json").body;
    assert!(doc["paths"]["/twins/{id}"]["get"].is_object(), "{doc}");
    stop_cleanly(run);

    // After a restart the acknowledgement is still there, read from the
    // store for the list and from the woken twin for the detail.
    let (run, base) = start(&state, &topo, &env);
    let acked = get(&base, "/alerts?state=acknowledged");
    assert_eq!(items(&acked, "id"), ["pump-2/hot/1"], "{acked:?}");
    let pump2 = get(&base, "/twins/pump-2");
    assert_eq!(pump2.body["alerts"][0]["state"], "acknowledged", "{pump2:?}");
    assert_eq!(pump2.body["version"], 3);
    stop_cleanly(run);
}

#[test]
fn reads_can_need_a_token_and_writes_need_one_configured() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    readings(dir.path());
    std::fs::write(dir.path().join("read-token"), "r-secret\n").unwrap();
    let http = format!("{{ read_token_file: \"{}/read-token\" }}", dir.path().display());
    let topo = topology(dir.path(), &http);
    let (run, base) = start(&state, &topo, &[]);
    // Probes stay open.
    assert_eq!(get(&base, "/healthz").status, 200);
    assert_error(&get(&base, "/twins"), 401, "unauthorized");
    assert_error(&get(&base, "/metrics"), 401, "unauthorized");
    let ok = request("GET", &format!("{base}/twins?type=pump"), Some("r-secret"), None);
    assert_eq!(ok.status, 200, "{ok:?}");
    // No write token configured: writes are refused whatever the token.
    let ack = request(
        "POST",
        &format!("{base}/alerts/pump-2/hot/1/ack"),
        Some("r-secret"),
        None,
    );
    assert_error(&ack, 403, "forbidden");
    stop_cleanly(run);

    // A token named in the topology must be readable, or the node does not start.
    let topo = topology(dir.path(), "{ write_token_env: TEST_UNSET_TOKEN_VARIABLE }");
    let out = twinstream()
        .arg("run")
        .arg(&topo)
        .arg("--state-dir")
        .arg(&state)
        .arg("--http")
        .arg("127.0.0.1:0")
        .env_remove("TEST_UNSET_TOKEN_VARIABLE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TEST_UNSET_TOKEN_VARIABLE") && err.contains("not set"),
        "{err}"
    );
    // A token written inline is refused by `check`.
    let topo = topology(dir.path(), "{ write_token: hunter2 }");
    let out = twinstream().arg("check").arg(&topo).output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("never write a token in the topology"), "{text}");
}

#[test]
fn readiness_follows_the_mqtt_broker() {
    let mut broker = Mosquitto::start();
    broker.stop();
    let dir = tempfile::tempdir().unwrap();
    let topo = Topo::new("ready-test")
        .model("asset_types: { pump: { sensors: { temperature: { unit: degC } } } }\nassets: [{ id: \"pump-*\", type: pump }]\n")
        .mqtt_source("plant", broker.port, "ready-test")
        .sink("{ name: out, type: stdout, outputs: [alerts] }")
        .write(&dir.path().join("mqtt.yaml"));
    let mut run = spawn(&mut run_cmd(&topo, &dir.path().join("state")));
    let base = run.http_base();
    let not_ready = wait_get(&base, "/readyz", "no readiness answer", |r| {
        r.status == 503 && r.body["restored"] == true
    });
    assert_eq!(
        not_ready.body["sources"],
        serde_json::json!([{ "source": "plant", "connected": false }])
    );
    assert_eq!(get(&base, "/healthz").status, 200, "alive while not ready");
    broker.resume();
    let ready = wait_get(&base, "/readyz", "not ready after the broker came up", |r| {
        r.status == 200
    });
    assert_eq!(ready.body["sources"][0]["connected"], true);
    broker.stop();
    wait_get(&base, "/readyz", "still ready with the broker gone", |r| {
        r.status == 503
    });
    broker.resume();
    wait_get(&base, "/readyz", "not ready after the broker came back", |r| {
        r.status == 200
    });
    stop_cleanly(run);
}

/// A real Prometheus on an ephemeral port, scraping `target` every 500 ms.
struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{ scrape_interval: 500ms, evaluation_interval: 500ms }}\n\
                 rule_files: [\"{}\"]\n\
                 scrape_configs:\n  - job_name: twinstream\n    static_configs: [{{ targets: [\"{target}\"] }}]\n",
                repo().join("deploy/prometheus/alerts.yml").display()
            ),
        )
        .unwrap();
        let (child, port) = listening("prometheus", None, |port| {
            Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start prometheus (scripts/install-deps.sh installs it): {e}"))
        });
        let base = format!("http://127.0.0.1:{port}");
        let p = Prometheus { child, base, _dir: dir };
        wait_get(&p.base, "/-/ready", "prometheus did not become ready", |r| {
            r.status == 200
        });
        p
    }

    /// The value of `query` summed over its series, once it has any.
    fn value(&self, query: &str) -> Option<f64> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let url = format!("{}/api/v1/query?query={encoded}", self.base);
        let r = request("GET", &url, None, None);
        assert_eq!(r.body["status"], "success", "{query}: {r:?}");
        let result = r.body["data"]["result"].as_array()?;
        if result.is_empty() {
            return None;
        }
        Some(
            result
                .iter()
                .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
                .sum(),
        )
    }

    fn wait(&self, query: &str, what: &str, done: impl Fn(f64) -> bool) -> f64 {
        poll_until(WAIT, || self.value(query).filter(|v| done(*v)))
            .unwrap_or_else(|| panic!("{what}: {query} = {:?}", self.value(query)))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_node_and_sees_counters_move() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    readings(dir.path());
    let topo = topology(dir.path(), "{ write_token_env: TEST_WRITE_TOKEN }");
    let (run, base) = start(&state, &topo, &[("TEST_WRITE_TOKEN", "w")]);
    let prom = Prometheus::start(base.trim_start_matches("http://"));
    prom.wait("up{job=\"twinstream\"}", "the target is not up", |v| v == 1.0);
    prom.wait("twinstream_events_applied_total", "events applied", |v| v == 8.0);
    for series in [
        "twinstream_events_received_total{source=\"plc\"}",
        "twinstream_records_received_total",
        "twinstream_apply_latency_seconds_bucket",
        "twinstream_twins_active",
        "twinstream_snapshot_duration_seconds_count",
        "twinstream_alerts_active{severity=\"critical\"}",
        "twinstream_alert_latency_seconds_count",
        "twinstream_ready",
    ] {
        prom.wait(series, "series missing", |_| true);
    }
    // A counter moves between scrapes.
    let route = "twinstream_http_requests_total{route=\"/twins\",status=\"200\"}";
    let before = prom.value(route).unwrap_or(0.0);
    for _ in 0..5 {
        assert_eq!(get(&base, "/twins").status, 200);
    }
    prom.wait(route, "HTTP requests not counted", |v| v >= before + 5.0);
    // The alert rules file loaded (a broken rule would fail the reload).
    let rules = get(&prom.base, "/api/v1/rules");
    let groups = rules.body["data"]["groups"].as_array().unwrap();
    assert!(!groups.is_empty(), "{rules:?}");
    stop_cleanly(run);
}

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

/// The value of the Prometheus series `series` (exact name and labels), 0
/// when it is not exported (yet).
fn metric(base: &str, series: &str) -> f64 {
    let body = get(base, "/metrics").body;
    let text = body.as_str().unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls the series until `done` holds for its value.
fn wait_metric(base: &str, series: &str, what: &str, done: impl Fn(f64) -> bool) -> f64 {
    let mut v = 0.0;
    poll_until(WAIT, || {
        v = metric(base, series);
        done(v).then_some(v)
    })
    .unwrap_or_else(|| panic!("{what}: `{series}` is {v}"))
}

fn alert_transitions(dir: &Path, asset: &str) -> Vec<String> {
    let path = dir.join("alerts.jsonl");
    if !path.exists() {
        return Vec::new();
    }
    jsonl(&path)
        .iter()
        .filter(|l| l["asset"] == asset)
        .map(|l| {
            format!(
                "{}:{}",
                l["rule"].as_str().unwrap_or("?"),
                l["transition"].as_str().unwrap()
            )
        })
        .collect()
}

/// Idle twins are passivated once durable, and every way in wakes them
/// with their state intact: a staleness timer (from the deadline index,
/// the twin not in memory), an API read, and a new event.
#[test]
fn passivated_twins_wake_on_a_timer_an_api_read_and_an_event_with_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // The file feeds the first readings, the broker the one after.
    let broker = Mosquitto::start();
    // Passivation after 1 s idle (swept every second); the tank goes stale
    // 6 s after its reading, long after it was passivated.
    let topo = Topo::new("passivate-test")
        .with("passivate_after: 1s")
        .model(
            r#"asset_types:
  pump:
    sensors: { temperature: { unit: degC } }
  tank:
    sensors:
      level: { unit: m, expected_every: 1s, stale_after: 6s }
assets:
  - { id: tank-1, type: tank }
  - { id: "pump-*", type: pump }
"#,
        )
        .file_source("plc", &dir.path().join("in.jsonl"))
        .mqtt_source("plant", broker.port, "passivate-test")
        .file_sink("alerts", &dir.path().join("alerts.jsonl"), "alerts")
        .write(&dir.path().join("passivate.yaml"));
    let line = |asset: &str, sensor: &str, ts: i64, value: f64| {
        format!("{{\"asset\":\"{asset}\",\"sensor\":\"{sensor}\",\"ts\":{ts},\"value\":{value}}}\n")
    };
    std::fs::write(
        dir.path().join("in.jsonl"),
        line("pump-1", "temperature", 1_000, 60.0) + &line("tank-1", "level", 1_000, 3.5),
    )
    .unwrap();
    let (run, base) = start(&state, &topo, &[]);
    let started = |from: &str| format!("twinstream_twins_started_total{{from=\"{from}\"}}");

    // Both twins start new, apply their reading and are passivated.
    wait_metric(&base, &started("new"), "both twins started", |v| v >= 2.0);
    wait_metric(
        &base,
        "twinstream_twins_passivated_total",
        "both twins passivated",
        |v| v >= 2.0,
    );
    assert!(
        alert_transitions(dir.path(), "tank-1").is_empty(),
        "passivated before its sensor went stale"
    );
    assert_eq!(metric(&base, "twinstream_twins_active"), 0.0, "no twin in memory");
    let woken = metric(&base, &started("store"));

    // The staleness timer of the passivated tank fires from the deadline
    // index: the twin is restored to raise the alert.
    let stale = poll_until(WAIT, || {
        alert_transitions(dir.path(), "tank-1")
            .contains(&"stale:level:raised".to_string())
            .then_some(())
    });
    assert!(stale.is_some(), "tank-1 never went stale");
    assert!(
        metric(&base, &started("store")) > woken,
        "the timer restored tank-1 from the store"
    );
    let tank = get(&base, "/twins/tank-1?fresh=true");
    assert_eq!(tank.body["sensors"]["level"]["value"], 3.5, "{tank:?}");
    assert_eq!(tank.body["sensors"]["level"]["quality"], "stale", "{tank:?}");

    // An API read wakes the passivated pump; its state is what it applied.
    wait_metric(
        &base,
        "twinstream_twins_passivated_total",
        "both passivated again",
        |v| v >= 3.0,
    );
    let pump = wait_get(&base, "/twins/pump-1?fresh=true", "pump-1 answers", |r| r.status == 200);
    assert_eq!(pump.read.as_deref(), Some("twin"), "{pump:?}");
    assert_eq!(pump.body["sensors"]["temperature"]["value"], 60.0, "{pump:?}");
    assert_eq!(pump.body["stats"]["events"], 1, "{pump:?}");
    let version = pump.body["version"].as_u64().unwrap();

    // A new event reaches the twin, restored or still in memory, on top of
    // that state.
    publish(
        broker.port,
        &[("plant/pump-1/temperature".into(), r#"{"ts":2000,"value":70.0}"#.into())],
    );
    let pump = wait_get(&base, "/twins/pump-1?fresh=true", "pump-1 applies the event", |r| {
        r.body["stats"]["events"] == 2
    });
    assert_eq!(pump.body["sensors"]["temperature"]["value"], 70.0, "{pump:?}");
    assert_eq!(pump.body["version"].as_u64(), Some(version + 1), "{pump:?}");
    stop_cleanly(run);
}

/// A restarted node serves before it restores any twin (no scan of the
/// store at start); a twin is restored, state intact, when first asked.
#[test]
fn a_restarted_node_is_ready_before_restoring_and_restores_a_twin_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let topo = Topo::new("restart-test")
        .model(
            "asset_types:\n  pump:\n    sensors: { temperature: { unit: degC }, current: { unit: A } }\nassets:\n  - { id: \"pump-*\", type: pump }\n",
        )
        .file_source("plc", &dir.path().join("in.jsonl"))
        .write(&dir.path().join("restart.yaml"));
    let lines: String = (0..500)
        .flat_map(|i| {
            [("temperature", 40.0 + (i % 50) as f64), ("current", i as f64)].map(|(sensor, value)| {
                format!(
                    "{{\"asset\":\"pump-{i}\",\"sensor\":\"{sensor}\",\"ts\":{},\"value\":{value}}}\n",
                    1_000 + i
                )
            })
        })
        .collect();
    std::fs::write(dir.path().join("in.jsonl"), lines).unwrap();
    let started = "twinstream_twins_started_total{from=\"store\"}";

    let (run, base) = start(&state, &topo, &[]);
    let first = wait_get(&base, "/twins/pump-499", "the last pump applied and durable", |r| {
        r.read.as_deref() == Some("checkpoint") && r.body["version"] == 2
    });
    stop_cleanly(run);

    let (run, base) = start(&state, &topo, &[]);
    assert_eq!(metric(&base, started), 0.0, "ready before restoring any twin");
    let pump = get(&base, "/twins/pump-499?fresh=true");
    assert_eq!((pump.status, pump.read.as_deref()), (200, Some("twin")), "{pump:?}");
    assert_eq!(pump.body["sensors"], first.body["sensors"], "restored as stored");
    assert_eq!(pump.body["version"], 2);
    assert_eq!(metric(&base, started), 1.0, "only the twin asked for was restored");
    stop_cleanly(run);
}
