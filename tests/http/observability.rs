//! Readiness following a real Mosquitto, and a real Prometheus (Debian
//! package) scraping `/metrics`.

use super::*;

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
        "twinstream_snapshot_pause_seconds",
        "twinstream_alerts_active{severity=\"critical\"}",
        "twinstream_alert_latency_seconds_count",
        // pump-2's critical alert left through the alerts file.
        "twinstream_hop_latency_seconds_count{hop=\"end_to_end\"}",
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

/// The latency of each hop is exported, the budgets of `node.slo` with it,
/// and the alert rules compare the two: a budget no node can keep (the
/// median `apply` hop within a microsecond) is breached, a generous one
/// (`durable` within five minutes) is not.
#[test]
fn a_hop_over_its_latency_budget_raises_the_budget_alert_in_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let topo = Topo::new("slo-test")
        .with("slo: { apply: { p50: 1us, p99: 1h }, durable: 5m }")
        .snapshot_every("200ms")
        .model("asset_types: { pump: { sensors: { temperature: { unit: degC, range: [0, 100] } } } }\nassets: [{ id: \"pump-*\", type: pump }]\n")
        .source("{ name: sim, type: simulator, asset_type: pump, count: 5, every: 20ms, seed: 1 }")
        .file_sink("updates", &dir.path().join("updates.jsonl"), "twin_updates")
        .write(&dir.path().join("slo.yaml"));
    let (run, base) = start(&dir.path().join("state"), &topo, &[]);
    let budget = "twinstream_latency_budget_seconds{hop=\"apply\",quantile=\"0.5\"}";
    assert_eq!(metric(&base, budget), 1e-6, "the declared budget is exported");
    let prom = Prometheus::start(base.trim_start_matches("http://"));
    for hop in ["decode", "apply", "output", "durable"] {
        prom.wait(
            &format!("twinstream_hop_latency_seconds_count{{hop=\"{hop}\"}}"),
            "hop not observed",
            |v| v > 0.0,
        );
    }
    let breached = |hop: &str, quantile: &str| {
        let alerts = get(&prom.base, "/api/v1/alerts");
        alerts.body["data"]["alerts"].as_array().unwrap().iter().any(|a| {
            a["labels"]["alertname"] == "TwinstreamLatencyBudgetBreached"
                && a["labels"]["hop"] == hop
                && a["labels"]["quantile"] == quantile
        })
    };
    poll_until(WAIT, || breached("apply", "0.5").then_some(()))
        .expect("the apply hop's median is over a 1 us budget, and no alert says so");
    // The same hop's generous p99 budget, and the durable one, hold (and
    // are measured).
    let durable_p99 =
        "histogram_quantile(0.99, sum by (le) (rate(twinstream_hop_latency_seconds_bucket{hop=\"durable\"}[5m])))";
    prom.wait(durable_p99, "no durable p99", |v| v > 0.0 && v < 300.0);
    assert!(!breached("apply", "0.99"), "a p99 within an hour reported as breached");
    assert!(
        !breached("durable", "0.99"),
        "a checkpoint within 5 minutes reported as breached"
    );
    stop_cleanly(run);
}
