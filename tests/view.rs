//! The operator's view in a real headless Chromium (WebDriver), against the
//! API at the same moment: the fleet's tiles and counts, a twin's sensors,
//! an alert acknowledged by a click, a command sent from the form reaching
//! its sink, a tile changing colour after a pushed change, an asset id with
//! markup shown as text, a read token asked for, the page behind a path
//! prefix, and the demo's view. The event stream itself (`GET /events`,
//! resuming after a reconnect) is checked over plain HTTP.
//!
//! Screenshots go to `$TWINSTREAM_TEST_OUTPUT/view/` (default: the cargo
//! target dir's `test-output/view/`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::browser::{output_dir, Browser};
use common::sse::{entry, Events};
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// An id a browser must show as text, never run: it would set the title.
const MARKUP: &str = "pump-<img src=x onerror=document.title='pwned'>";

fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = ureq::get(&format!("{base}{path}")).timeout(Duration::from_secs(30));
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    match req.call() {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(s, r)) => (s, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("GET {path}: {e}"),
    }
}

fn api(base: &str, path: &str) -> Value {
    let (status, body) = get(base, path, None);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Per-health counts of the API's twins (offline counted apart from red).
fn api_counts(base: &str, token: Option<&str>) -> Value {
    let (status, page) = get(base, "/twins?limit=1000", token);
    assert_eq!(status, 200, "{page}");
    let mut n = json!({"green": 0, "yellow": 0, "red": 0, "offline": 0, "total": 0});
    for t in page["items"].as_array().unwrap() {
        let h = if t["offline"] == true {
            "offline"
        } else {
            t["health"].as_str().unwrap()
        };
        n[h] = json!(n[h].as_u64().unwrap() + 1);
        n["total"] = json!(n["total"].as_u64().unwrap() + 1);
    }
    n
}

/// The page's counts, in the shape of [`api_counts`].
const PAGE_COUNTS: &str = r#"
    const n = { total: document.querySelectorAll('.tile').length };
    for (const b of document.querySelectorAll('[data-count]')) n[b.dataset.count] = Number(b.querySelector('b').textContent);
    return n;"#;

/// The browser's console errors, without the 401s that make the page ask
/// for a token (the browser logs every failed request).
fn console_errors(b: &Browser) -> Vec<String> {
    b.errors()
        .into_iter()
        .filter(|e| !e.contains("status of 401"))
        .collect()
}

/// Waits until the page and the API show the same counts, read one after
/// the other with the API unchanged around the page's read.
fn counts_agree(b: &Browser, base: &str, token: Option<&str>) -> Value {
    let mut last = (Value::Null, Value::Null);
    poll_until(WAIT, || {
        let before = api_counts(base, token);
        let page = b.eval(PAGE_COUNTS, json!([]));
        let after = api_counts(base, token);
        if before == after && page == after {
            return Some(after);
        }
        last = (page, after);
        None
    })
    .unwrap_or_else(|| panic!("page and API counts differ: {last:?}"))
}

fn shot(b: &Browser, name: &str) -> PathBuf {
    let path = output_dir().join("view").join(name);
    b.screenshot(&path);
    println!("screenshot: {}", path.display());
    path
}

/// A plant read over MQTT: pumps feeding tank-1, a critical rule on the
/// temperature, a commanded speed whose commands go to a file sink.
fn plant(dir: &Path, broker: u16, http: &str) -> PathBuf {
    Topo::new("view-test")
        .with(&format!("http: {http}"))
        .model(
            r#"asset_types:
  pump:
    sensors:
      temperature: { unit: degC, range: [0, 150] }
      speed: { unit: rpm }
    relations: { feeds: tank }
    commands:
      set_speed: { reported: speed, tolerance: 5, timeout: 1h, min: 0, max: 3000 }
    history: on
  tank:
    sensors: { level: { unit: m } }
assets:
  - { id: tank-1, type: tank }
  - { id: "pump-*", type: pump, relations: { feeds: tank-1 } }
rules:
  - { name: hot, when: "temperature > 80", severity: critical, asset_types: [pump] }
"#,
        )
        .mqtt_source("plant", broker, "view-test")
        .file_sink("commands", &dir.join("commands.jsonl"), "commands")
        .write(&dir.join("plant.yaml"))
}

fn reading(asset: &str, sensor: &str, ts: i64, value: f64) -> (String, String) {
    (
        format!("plant/{asset}/{sensor}"),
        format!("{{\"ts\":{ts},\"value\":{value}}}"),
    )
}

/// Starts the node and waits for readiness; returns it and its base URL.
fn start(topo: &Path, state: &Path, env: &[(&str, &str)]) -> (Running, String) {
    let mut cmd = run_cmd(topo, state);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut run = spawn(&mut cmd);
    let base = run.http_base();
    poll_until(WAIT, || (get(&base, "/readyz", None).0 == 200).then_some(())).expect("the node did not become ready");
    (run, base)
}

fn twin_value(base: &str, asset: &str, sensor: &str) -> Value {
    api(base, &format!("/twins/{}", urlencoding(asset)))["sensors"][sensor]["value"].clone()
}

fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn the_view_shows_the_fleet_and_a_twin_as_the_api_does_and_follows_pushed_changes() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = plant(dir.path(), broker.port, "{ write_token_env: VIEW_WRITE }");
    let (run, base) = start(&topo, &dir.path().join("state"), &[("VIEW_WRITE", "w-view")]);
    let mut first = vec![reading("tank-1", "level", 1_000, 4.0)];
    for (i, pump) in ["pump-1", "pump-2", "pump-3", MARKUP].iter().enumerate() {
        first.push(reading(pump, "temperature", 1_000, 60.0 + i as f64));
        first.push(reading(pump, "speed", 1_000, 1000.0));
    }
    publish(broker.port, &first);
    poll_until(WAIT, || (api_counts(&base, None)["total"] == 5).then_some(())).expect("five twins in the API");
    poll_until(WAIT, || {
        (twin_value(&base, MARKUP, "speed") == json!(1000.0)).then_some(())
    })
    .expect("every reading applied");

    let b = Browser::start();
    b.goto(&format!("{base}/"));
    let counts = counts_agree(&b, &base, None);
    assert_eq!(counts["green"], 5, "{counts}");

    // The markup id is text: one tile shows it verbatim, no image exists,
    // nothing ran.
    let shown = b.wait(
        "the markup id's tile",
        WAIT,
        "return [...document.querySelectorAll('.tile')].find(t => t.dataset.asset === arguments[0])?.querySelector('.id').textContent ?? null;",
        json!([MARKUP]),
    );
    assert_eq!(shown, MARKUP);
    let safe = b.eval(
        "return { images: document.images.length, title: document.title };",
        json!([]),
    );
    assert_eq!(safe, json!({"images": 0, "title": "twinstream"}));

    // Grouped by type and relation.
    let groups = b.eval(
        "return [...document.querySelectorAll('.group')].map(g => g.dataset.group);",
        json!([]),
    );
    assert_eq!(groups, json!(["pump · feeds tank-1", "tank"]));
    shot(&b, "fleet.png");

    // A pushed change: pump-2 runs hot, its tile turns red.
    let tile_health = "return document.querySelector('.tile[data-asset=\"pump-2\"]')?.dataset.health ?? null;";
    assert_eq!(b.eval(tile_health, json!([])), "green");
    let pushed = Instant::now();
    publish(broker.port, &[reading("pump-2", "temperature", 2_000, 95.0)]);
    b.wait(
        "pump-2's tile turning red",
        WAIT,
        "return document.querySelector('.tile[data-asset=\"pump-2\"]')?.dataset.health === 'red' || null;",
        json!([]),
    );
    println!(
        "pump-2's tile turned red {:?} after the reading was published",
        pushed.elapsed()
    );
    counts_agree(&b, &base, None);

    // A twin's page: every sensor's value as the API has it.
    b.click(".tile[data-asset=\"pump-1\"]");
    b.wait(
        "pump-1's sensors",
        WAIT,
        "return document.querySelector('tr[data-sensor=\"speed\"] .value')?.textContent ?? null;",
        json!([]),
    );
    let shown_values = b.eval(
        "return Object.fromEntries([...document.querySelectorAll('tr[data-sensor]')].map(r => [r.dataset.sensor, r.querySelector('.value').textContent]));",
        json!([]),
    );
    let t = api(&base, "/twins/pump-1");
    assert_eq!(
        shown_values,
        json!({
            "temperature": format!("{} degC", t["sensors"]["temperature"]["value"].as_f64().unwrap()),
            "speed": format!("{} rpm", t["sensors"]["speed"]["value"].as_f64().unwrap()),
        })
    );
    let relation = b.eval(
        "return document.querySelector('#relations a')?.getAttribute('href') ?? null;",
        json!([]),
    );
    assert_eq!(relation, "#/twin/tank-1");
    let text = b.eval("return document.getElementById('main').textContent;", json!([]));
    assert!(!text.as_str().unwrap().contains("null"), "{text}");
    b.wait(
        "pump-1's trend",
        WAIT,
        "return document.querySelectorAll('#trends .card').length === 2 || null;",
        json!([]),
    );

    // The command form: bounds from the topology, then a command that
    // reaches the sink and is acknowledged when the speed reports it.
    let bounds = b.eval(
        "const v = document.getElementById('command-value'); v.value = '5000'; const ok = v.checkValidity(); v.value = ''; return { min: v.min, max: v.max, over: ok };",
        json!([]),
    );
    assert_eq!(bounds, json!({"min": "0", "max": "3000", "over": false}));
    b.type_into("#command-value", "1200");
    b.click("#command-form button[type=submit]");
    // The write token is asked for, once, and kept in memory.
    b.wait(
        "the token dialog",
        WAIT,
        "return document.getElementById('token-dialog').open || null;",
        json!([]),
    );
    b.type_into("#token-input", "w-view");
    b.click("#token-form button[type=submit]");
    let sink = dir.path().join("commands.jsonl");
    let sent = poll_until(WAIT, || {
        let text = std::fs::read_to_string(&sink).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|c| c["id"] == "pump-1/set_speed/1")
    })
    .expect("the command in the sink");
    assert_eq!(sent["value"], 1200.0);
    let command_is = |state: &str| {
        format!("return document.querySelector('tr[data-command=\"pump-1/set_speed/1\"] td:nth-child(3)')?.textContent === '{state}' || null;")
    };
    b.wait("the command pending", WAIT, &command_is("pending"), json!([]));
    shot(&b, "asset.png");
    publish(broker.port, &[reading("pump-1", "speed", 3_000, 1200.0)]);
    b.wait("the command acked", WAIT, &command_is("acked"), json!([]));
    assert_eq!(api(&base, "/twins/pump-1")["command_log"][0]["state"], "acked");

    // Acknowledge pump-2's alert from its page: the API then shows it.
    b.goto(&format!("{base}/#/twin/pump-2"));
    b.click("button.ack[data-alert=\"pump-2/hot/1\"]");
    let acked = poll_until(WAIT, || {
        let a = api(&base, "/alerts?state=all");
        a["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == "pump-2/hot/1" && a["state"] == "acknowledged")
            .cloned()
    });
    assert!(acked.is_some(), "pump-2's alert acknowledged through the page");
    b.wait(
        "the page showing it acknowledged",
        WAIT,
        "return document.querySelector('#twin-alerts tr[data-alert=\"pump-2/hot/1\"] td:nth-child(3)')?.textContent === 'acknowledged' || null;",
        json!([]),
    );

    // The alerts page lists what is active, most severe first.
    b.goto(&format!("{base}/#/alerts"));
    let listed = b.wait(
        "the alerts page",
        WAIT,
        "const rows = [...document.querySelectorAll('#alert-list tr[data-alert]')].map(r => r.dataset.alert); return rows.length ? rows : null;",
        json!([]),
    );
    assert_eq!(listed, json!(["pump-2/hot/1"]));
    let storage = b.eval(
        "return { local: localStorage.length, session: sessionStorage.length, url: location.href.includes('w-view') };",
        json!([]),
    );
    assert_eq!(
        storage,
        json!({"local": 0, "session": 0, "url": false}),
        "the token stays in memory"
    );
    assert_eq!(
        console_errors(&b),
        Vec::<String>::new(),
        "no errors in the browser's console (CSP included)"
    );
    drop(b);
    let (_, lines) = stop_cleanly(run);
    assert!(lines.iter().any(|l| l.contains("stopped cleanly")), "{lines:?}");
}

/// A reverse proxy on 127.0.0.1 that serves the node under `prefix`: one
/// request per connection, the prefix cut from its path.
fn prefix_proxy(upstream: String, prefix: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = upstream.trim_start_matches("http://").to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let end = line == "\r\n";
                    if !line.to_ascii_lowercase().starts_with("connection:") {
                        head.push_str(&line);
                    }
                    if end {
                        break;
                    }
                }
                let (request_line, rest) = head.split_once("\r\n").unwrap();
                let mut parts = request_line.splitn(3, ' ');
                let (method, path, version) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
                let Some(path) = path.strip_prefix(prefix) else {
                    let mut c = client;
                    let _ = c.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    return;
                };
                let mut server = TcpStream::connect(&upstream).unwrap();
                let rest = rest.trim_end_matches("\r\n");
                write!(
                    server,
                    "{method} /{path} {version}\r\n{rest}\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let mut to_server = server.try_clone().unwrap();
                let buffered = reader.buffer().to_vec();
                to_server.write_all(&buffered).unwrap();
                std::thread::spawn(move || {
                    let mut r = reader.into_inner();
                    let _ = std::io::copy(&mut r, &mut to_server);
                });
                let mut c = client;
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = server.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    format!("http://{addr}{prefix}")
}

#[test]
fn with_a_read_token_the_view_asks_for_it_and_works_behind_a_path_prefix() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = plant(
        dir.path(),
        broker.port,
        "{ write_token_env: VIEW_WRITE, read_token_env: VIEW_READ }",
    );
    let env = [("VIEW_WRITE", "w-prefix"), ("VIEW_READ", "r-prefix")];
    let (run, base) = start(&topo, &dir.path().join("state"), &env);
    publish(
        broker.port,
        &[
            reading("pump-1", "temperature", 1_000, 90.0),
            reading("pump-2", "temperature", 1_000, 20.0),
        ],
    );
    poll_until(WAIT, || {
        (api_counts(&base, Some("r-prefix"))["total"] == 3).then_some(())
    })
    .expect("three twins");
    assert_eq!(get(&base, "/twins", None).0, 401, "reads need the token");
    assert_eq!(get(&base, "/events", None).0, 401, "the stream too");
    assert_eq!(get(&base, "/", None).0, 200, "the page itself holds no data");

    let page = prefix_proxy(base.clone(), "/plant/");
    let b = Browser::start();
    b.goto(&page);
    b.wait(
        "the token dialog",
        WAIT,
        "return document.getElementById('token-dialog').open || null;",
        json!([]),
    );
    b.type_into("#token-input", "r-prefix");
    b.click("#token-form button[type=submit]");
    let counts = counts_agree(&b, &base, Some("r-prefix"));
    assert_eq!(counts["red"], 1, "{counts}");
    // Live behind the proxy too.
    publish(broker.port, &[reading("pump-2", "temperature", 2_000, 99.0)]);
    b.wait(
        "pump-2's tile turning red",
        WAIT,
        "return document.querySelector('.tile[data-asset=\"pump-2\"]')?.dataset.health === 'red' || null;",
        json!([]),
    );
    let where_ = b.eval(
        "return { href: location.href, local: localStorage.length, session: sessionStorage.length };",
        json!([]),
    );
    assert!(where_["href"].as_str().unwrap().starts_with(&page), "{where_}");
    assert!(!where_["href"].as_str().unwrap().contains("r-prefix"), "{where_}");
    assert_eq!(
        (where_["local"].clone(), where_["session"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(console_errors(&b), Vec::<String>::new());
    drop(b);
    stop_cleanly(run);
}

#[test]
fn the_demo_view_counts_what_the_api_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (run, base) = start(&repo().join("topologies/demo.yaml"), &dir.path().join("state"), &[]);
    poll_until(WAIT, || (api_counts(&base, None)["total"] == 21).then_some(())).expect("the demo's 21 twins");
    let b = Browser::start();
    b.goto(&format!("{base}/"));
    counts_agree(&b, &base, None);
    shot(&b, "demo-fleet.png");
    b.goto(&format!("{base}/#/twin/tank-0"));
    b.wait(
        "tank-0's model, forecast and trends",
        WAIT,
        "return (document.querySelectorAll('#trends .chart').length === 3 && document.querySelector('#forecast table')) ? true : null;",
        json!([]),
    );
    shot(&b, "demo-tank.png");
    assert_eq!(console_errors(&b), Vec::<String>::new());
    drop(b);
    stop_cleanly(run);
}

#[test]
fn the_event_stream_resumes_after_a_reconnect_without_missing_a_transition() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let topo = plant(dir.path(), broker.port, "{ write_token_env: VIEW_WRITE }");
    let (run, base) = start(&topo, &dir.path().join("state"), &[("VIEW_WRITE", "w")]);
    let mut stream = Events::open(&base, None);
    let (hello_id, hello, cursor) = stream.next();
    assert_eq!(hello, "hello");
    let (incarnation, start) = entry(hello_id.as_deref().unwrap());
    assert_eq!(cursor, json!({ "cursor": hello_id.clone().unwrap() }));
    publish(broker.port, &[reading("pump-1", "temperature", 1_000, 90.0)]);
    let first = stream.until("alert", 1);
    let kinds: Vec<&str> = first.iter().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(
        kinds,
        ["twin", "alert"],
        "a new twin, red, and its alert raised: {first:?}"
    );
    assert_eq!(first[0].2["health"], "red");
    assert_eq!(first[1].2["transition"]["event_id"], "pump-1/hot/1/raised");
    assert_eq!(first[1].2["alert"]["state"], "raised");
    let seen = first.last().unwrap().0.clone().unwrap();
    assert_eq!(entry(&seen), (incarnation.clone(), start + 2));
    drop(stream);

    // While nobody is connected: cleared, raised again.
    publish(
        broker.port,
        &[
            reading("pump-1", "temperature", 2_000, 20.0),
            reading("pump-1", "temperature", 3_000, 95.0),
        ],
    );
    poll_until(WAIT, || {
        let a = api(&base, "/alerts");
        (a["items"][0]["id"] == "pump-1/hot/2").then_some(())
    })
    .expect("the second alert");
    let mut resumed = Events::open(&base, Some(&seen));
    let (id, hello, _) = resumed.next();
    assert_eq!((hello.as_str(), id.as_deref()), ("hello", Some(seen.as_str())));
    let missed = resumed.until("alert", 2);
    let nexts: Vec<u64> = missed.iter().map(|(i, _, _)| entry(i.as_deref().unwrap()).1).collect();
    let from = entry(&seen).1;
    assert_eq!(
        nexts,
        ((from + 1)..=(from + nexts.len() as u64)).collect::<Vec<_>>(),
        "consecutive: {missed:?}"
    );
    let transitions: Vec<&str> = missed
        .iter()
        .filter(|(_, e, _)| e == "alert")
        .map(|(_, _, d)| d["transition"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(transitions, ["pump-1/hot/1/cleared", "pump-1/hot/2/raised"]);
    let last = &missed.iter().rfind(|(_, e, _)| e == "alert").unwrap().2;
    assert_eq!(last["alert"]["id"], "pump-1/hot/2");
    drop(resumed);

    // Ids this node never gave - another incarnation's, or beyond its
    // feed: start over.
    for id in ["0.5".to_string(), format!("{incarnation}.{}", from + 1_000)] {
        let mut unknown = Events::open(&base, Some(&id));
        unknown.next();
        assert_eq!(unknown.next().1, "reset", "{id}");
    }
    let (status, body) = get(&base, "/events?after=nonsense", None);
    assert_eq!(status, 400, "{body}");
    stop_cleanly(run);
}
