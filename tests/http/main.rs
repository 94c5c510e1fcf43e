//! The HTTP API against the running binary: twins (filters, pagination),
//! alerts and their acknowledgement (durable across a restart), bearer-token
//! auth, the error shape, readiness following a real Mosquitto, and a real
//! Prometheus (Debian package) scraping `/metrics`.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod commands;
mod history;
mod lifecycle;
mod observability;
mod twins;

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

/// The value of the Prometheus series `series` (exact name and labels), 0
/// when it is not exported (yet).
fn metric(base: &str, series: &str) -> f64 {
    common::metric(base, series).unwrap_or(0.0)
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
