//! The MQTT source against a real Mosquitto (started by the test on an
//! ephemeral port): topic levels as fields, QoS 1 acknowledged only after
//! the state is durable, malformed payloads dead-lettered with their topic.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(60);

fn topology(dir: &Path, port: u16) -> std::path::PathBuf {
    topology_as(dir, port, "twinstream-test", "")
}

/// The MQTT test topology; `extra` adds entries to its source.
fn topology_as(dir: &Path, port: u16, client_id: &str, extra: &str) -> std::path::PathBuf {
    Topo::new("mqtt-test")
        .model(PUMPS)
        .mqtt_source_with("plant", port, client_id, extra)
        .file_sink("updates", &dir.join("updates.jsonl"), "twin_updates")
        .file_sink("dead", &dir.join("dead.jsonl"), "dead_letters")
        .write(&dir.join("mqtt.yaml"))
}

/// A node on the test topology in `dir`, once subscribed: its state
/// directory, topology and process.
fn subscribed(dir: &Path, port: u16) -> (std::path::PathBuf, std::path::PathBuf, Running) {
    let state = dir.join("state");
    let topo = topology(dir, port);
    let mut run = spawn(&mut run_cmd(&topo, &state));
    run.wait_stderr("the MQTT subscription", WAIT, |l| l.contains("MQTT subscribed"));
    (state, topo, run)
}

#[test]
fn qos1_messages_become_twin_state_and_acked_ones_are_not_redelivered() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let (state, topo, run) = subscribed(dir.path(), broker.port);
    // 20 pumps x 2 sensors x 25 readings, then five bad messages.
    let mut messages = Vec::new();
    for i in 0..25 {
        for p in 0..20 {
            for sensor in ["temperature", "current"] {
                let value = (p * 100 + i) as f64 / 4.0;
                messages.push((
                    format!("plant/pump-{p:02}/{sensor}"),
                    format!(r#"{{"ts":{},"value":{value}}}"#, 1_700_000_000_000i64 + i * 1000),
                ));
            }
        }
    }
    messages.push(("plant/pump-00/temperature".into(), "not json".into()));
    messages.push(("plant/pump-01/current".into(), String::new()));
    messages.push(("plant/pump-00/rpm".into(), r#"{"ts":1,"value":1}"#.into()));
    messages.push(("plant/pump-00/temperature/extra".into(), r#"{"ts":1,"value":1}"#.into()));
    // Larger than rumqttc's default packet limit (10 KiB): still one record.
    messages.push(("plant/pump-02/temperature".into(), "x".repeat(64 << 10)));
    publish(broker.port, &messages);
    wait_for_versions(&dir.path().join("updates.jsonl"), 20, 50);
    stop_cleanly(run);

    let twins = digest(&state);
    assert_eq!(twins.len(), 20, "{twins:?}");
    for (asset, events, _, _, latest) in &twins {
        let p: usize = asset[5..].parse().unwrap();
        assert_eq!(*events, 50, "{asset}");
        let want = (p * 100 + 24) as f64 / 4.0;
        assert_eq!(latest, &vec![want, want], "{asset}");
    }
    let dead = jsonl(&dir.path().join("dead.jsonl"));
    let mut reasons: Vec<(String, String)> = dead
        .iter()
        .map(|d| {
            (
                d["reason"].as_str().unwrap().to_string(),
                d["origin"]["topic"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("malformed".to_string(), "plant/pump-00/temperature".to_string()),
            ("malformed".to_string(), "plant/pump-01/current".to_string()),
            ("malformed".to_string(), "plant/pump-02/temperature".to_string()),
            ("unknown_sensor".to_string(), "plant/pump-00/rpm".to_string()),
        ],
        "{dead:#?}"
    );
    let malformed = dead
        .iter()
        .find(|d| d["reason"] == "malformed" && d["origin"]["topic"] == "plant/pump-00/temperature")
        .unwrap();
    assert_eq!(malformed["payload"], "not json", "the original payload is kept");

    // The topic with an extra level is not even delivered (`plant/+/+`).
    // A second run on the same persistent session gets nothing again: every
    // message was acknowledged once its state was durable (the last ones by
    // the final checkpoint of the clean stop).
    let mut run = spawn(&mut run_cmd(&topo, &state));
    run.wait_stderr("the MQTT session", WAIT, |l| {
        l.contains("MQTT connected") && l.contains("session_present=true")
    });
    // One more message proves the session delivers; nothing before it came again.
    publish(
        broker.port,
        &[(
            "plant/pump-00/current".into(),
            r#"{"ts":1700000100000,"value":1.5}"#.into(),
        )],
    );
    wait_for(
        &dir.path().join("updates.jsonl"),
        "pump-00 did not reach version 51",
        |max| max.get("pump-00") == Some(&51),
    );
    stop_cleanly(run);
    let twins = digest(&state);
    let total: u64 = twins.iter().map(|t| t.1).sum();
    assert_eq!(total, 1001, "no message applied twice: {twins:?}");
}

/// Acknowledgements leave in bulk once a checkpoint holds their messages
/// (one at a time, rumqttc's request queue fell behind a flood without
/// bound): after 10,000 messages and a clean stop, a client that takes
/// over the node's persistent session at once is sent nothing but what
/// comes after. (A node that exited before the broker had read its acks
/// would lose them to the takeover: the stop waits for the broker to close
/// the connection.)
#[test]
fn every_durable_message_is_acknowledged_at_the_broker_after_a_burst() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let (_, _, run) = subscribed(dir.path(), broker.port);
    let messages: Vec<(String, String)> = (0..500)
        .flat_map(|i| {
            (0..20).map(move |p| {
                (
                    format!("plant/pump-{p:02}/temperature"),
                    format!(r#"{{"ts":{},"value":{i}}}"#, 1_700_000_000_000i64 + i * 1000),
                )
            })
        })
        .collect();
    publish(broker.port, &messages);
    wait_for_versions(&dir.path().join("updates.jsonl"), 20, 500);
    stop_cleanly(run);

    let mut opts = rumqttc::MqttOptions::new("twinstream-test", "127.0.0.1", broker.port);
    opts.set_clean_session(false);
    let (client, mut connection) = rumqttc::Client::new(opts, 16);
    let mut session_present = None;
    let mut redelivered = 0;
    let mut marked = false;
    let done = poll_until(Duration::from_secs(30), || {
        match connection.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)))) => {
                session_present = Some(ack.session_present);
                if !marked {
                    marked = true;
                    publish(broker.port, &[("plant/marker/temperature".into(), "end".into())]);
                }
            }
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                if p.topic == "plant/marker/temperature" {
                    return Some(());
                }
                redelivered += 1;
            }
            _ => {}
        }
        None
    });
    let _ = client.disconnect();
    assert_eq!(session_present, Some(true), "the node's session was kept");
    assert!(done.is_some(), "the marker never came");
    assert_eq!(redelivered, 0, "messages the node made durable were not acknowledged");
}

/// `kill -9` mid-stream and a restart on the same persistent session: the
/// broker redelivers what was not acknowledged (DUP); what the durable state
/// already holds is recognised and not applied again, what was lost with
/// the crash is applied. The result equals a second node that subscribed to
/// the same messages and was never interrupted.
#[test]
fn a_kill_mid_stream_loses_nothing_and_applies_nothing_twice() {
    let broker = Mosquitto::start();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (state_a, state_b) = (dir_a.path().join("state"), dir_b.path().join("state"));
    let topo_a = topology_as(dir_a.path(), broker.port, "node-killed", "");
    let topo_b = topology_as(dir_b.path(), broker.port, "node-uninterrupted", "");
    let mut a = spawn(&mut run_cmd(&topo_a, &state_a));
    let mut b = spawn(&mut run_cmd(&topo_b, &state_b));
    a.wait_stderr("A subscribed", WAIT, |l| l.contains("MQTT subscribed"));
    b.wait_stderr("B subscribed", WAIT, |l| l.contains("MQTT subscribed"));

    // 1,000 pumps x 2 sensors x 50 readings (100,000 messages), in time order.
    let (pumps, readings) = (1000, 50);
    let mut messages = Vec::with_capacity(pumps * 2 * readings);
    for i in 0..readings {
        for p in 0..pumps {
            for sensor in ["temperature", "current"] {
                let value = ((p * 7 + i * 3) % 400) as f64 / 8.0;
                messages.push((
                    format!("plant/pump-{p:04}/{sensor}"),
                    format!(r#"{{"ts":{},"value":{value}}}"#, 1_700_000_000_000i64 + i as i64 * 250),
                ));
            }
        }
    }
    let publisher = std::thread::spawn({
        let port = broker.port;
        move || publish(port, &messages)
    });
    // Kill A once it has made some of it durable.
    a.wait_stderr("a durable checkpoint of A", WAIT, |l| l.contains("checkpoint durable"));
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let mut a = spawn(&mut run_cmd(&topo_a, &state_a));
    publisher.join().unwrap();
    let want = (readings * 2) as u64;
    wait_for_versions(&dir_b.path().join("updates.jsonl"), pumps, want);
    wait_for_versions(&dir_a.path().join("updates.jsonl"), pumps, want);
    a.wait_stderr("A reconnected", WAIT, |l| l.contains("MQTT connected"));
    stop_cleanly(a);
    stop_cleanly(b);

    let (got, uninterrupted) = (digest(&state_a), digest(&state_b));
    assert_eq!(got.len(), pumps);
    assert!(got.iter().all(|t| t.1 == want), "every reading applied exactly once");
    assert_eq!(
        got, uninterrupted,
        "the killed node ends where the uninterrupted one does"
    );
}

/// `ack_after: inbox` (the default) with the broker's default inflight
/// window of 20: acks leave once messages are in the node's inbox, so all
/// 2,000 messages arrive although no checkpoint is taken (the snapshot
/// interval and `ack_interval` are an hour; acks waiting for a checkpoint
/// would stall at 20). `kill -9`
/// then loses the whole twin state, and the broker is replaced by an empty
/// one, so nothing can be redelivered: the restarted node rebuilds every
/// twin from its inbox, exactly once, dead-letters a damaged entry with its
/// bytes, and a clean stop leaves the inbox empty.
#[test]
fn acks_do_not_wait_for_checkpoints_and_a_crash_replays_the_inbox() {
    let mut broker = Mosquitto::with_default_inflight();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let topo_on = |port: u16| {
        Topo::new("mqtt-inbox")
            .model(PUMPS)
            .snapshot_every("1h")
            .mqtt_source_with("plant", port, "node-inbox", ", ack_interval: 1h")
            .file_sink("updates", &dir.path().join("updates.jsonl"), "twin_updates")
            .file_sink("dead", &dir.path().join("dead.jsonl"), "dead_letters")
            .write(&dir.path().join("mqtt.yaml"))
    };
    let mut run = spawn(&mut run_cmd(&topo_on(broker.port), &state));
    run.wait_stderr("the subscription", WAIT, |l| l.contains("MQTT subscribed"));
    let (pumps, readings) = (20, 100);
    let mut messages = Vec::new();
    for i in 0..readings {
        for p in 0..pumps {
            messages.push((
                format!("plant/pump-{p:02}/temperature"),
                format!(
                    r#"{{"ts":{},"value":{}}}"#,
                    1_700_000_000_000i64 + i as i64 * 1000,
                    (p * 1000 + i) as f64
                ),
            ));
        }
    }
    publish(broker.port, &messages);
    wait_for_versions(&dir.path().join("updates.jsonl"), pumps, readings as u64);
    // The twins apply a chunk while its messages are written into the
    // inbox: wait until the last write is there (read beside the node).
    let all = (pumps * readings) as u64;
    let inboxed = poll_until(WAIT, || {
        let store = twinstream::store::Store::open_read_only(&state).ok()?;
        (store.inbox_bounds("plant").ok()? == (0..all)).then_some(())
    });
    assert!(inboxed.is_some(), "the inbox never held all {all} messages");
    run.child.kill().unwrap();
    let (_, stderr) = run.finish(WAIT);
    let checkpoints = stderr.iter().filter(|l| l.contains("checkpoint durable")).count();
    assert_eq!(checkpoints, 0, "every ack left without a checkpoint");

    // Nothing of the twins is durable, and the new broker has no session.
    broker.stop();
    let broker = Mosquitto::with_default_inflight();
    {
        let store = twinstream::store::Store::open(&state, 1).unwrap();
        assert_eq!(
            store.inbox_bounds("plant").unwrap(),
            0..(pumps * readings) as u64,
            "every acknowledged message is in the inbox"
        );
        // A damaged entry after them (a torn value: its topic cut short):
        // dead-lettered, not lost.
        store
            .put_inbox_raw("plant", 5_000, b"\x01\x00\x09\x00\x00\x00plant")
            .unwrap();
    }
    assert!(digest(&state).is_empty(), "no twin was checkpointed");
    // A start with `ack_after: checkpoint` does not read the inbox: it says so.
    let without_inbox = Topo::new("mqtt-inbox")
        .model(PUMPS)
        .snapshot_every("1h")
        .mqtt_source_with(
            "plant",
            broker.port,
            "node-inbox",
            ", ack_interval: 1h, ack_after: checkpoint",
        )
        .write(&dir.path().join("mqtt-checkpoint.yaml"));
    let mut run = spawn(&mut run_cmd(&without_inbox, &state));
    run.wait_stderr("the unread-inbox warning", WAIT, |l| {
        l.contains("WARN") && l.contains("MQTT inbox holds messages of this source") && l.contains("messages=2001")
    });
    run.child.kill().unwrap();
    run.finish(WAIT);
    let mut run = spawn(&mut run_cmd(&topo_on(broker.port), &state));
    run.wait_stderr("the inbox replay", WAIT, |l| {
        l.contains("routed the messages the MQTT inbox held") && l.contains("messages=2000")
    });
    // Ready: subscribed, or connected to the session that holds the
    // subscription (the node in between may or may not have reached the
    // broker before it was killed).
    run.wait_stderr("the subscription", WAIT, |l| {
        l.contains("MQTT subscribed") || (l.contains("MQTT connected") && l.contains("session_present=true"))
    });
    stop_cleanly(run);

    let twins = digest(&state);
    assert_eq!(twins.len(), pumps, "{twins:?}");
    for (asset, events, _, _, latest) in &twins {
        let p: usize = asset[5..].parse().unwrap();
        assert_eq!(*events, readings as u64, "{asset}: every reading applied exactly once");
        assert_eq!(latest, &vec![(p * 1000 + readings - 1) as f64], "{asset}");
    }
    let dead = jsonl(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0]["reason"], "damaged_state");
    assert!(
        dead[0]["message"].as_str().unwrap().contains("inbox plant/5000"),
        "{dead:#?}"
    );
    let store = twinstream::store::Store::open(&state, 1).unwrap();
    assert_eq!(
        store.inbox_bounds("plant").unwrap(),
        0..0,
        "the final checkpoint holds everything: the inbox is empty"
    );
}

/// The broker restarts mid-stream: the node reconnects with backoff, the
/// broker (which kept the session) redelivers what was not acknowledged,
/// and every reading is applied exactly once.
#[test]
fn a_broker_restart_mid_stream_loses_nothing_and_applies_nothing_twice() {
    let mut broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let topo = topology_as(dir.path(), broker.port, "node-restart", "");
    let mut run = spawn(&mut run_cmd(&topo, &state));
    run.wait_stderr("the subscription", WAIT, |l| l.contains("MQTT subscribed"));
    let (pumps, readings) = (200, 40);
    let batch = |from: usize, to: usize| {
        let mut m = Vec::new();
        for i in from..to {
            for p in 0..pumps {
                m.push((
                    format!("plant/pump-{p:04}/temperature"),
                    format!(
                        r#"{{"ts":{},"value":{}}}"#,
                        1_700_000_000_000i64 + i as i64 * 500,
                        (p + i) as f64
                    ),
                ));
            }
        }
        m
    };
    publish(broker.port, &batch(0, readings / 2));
    broker.restart();
    run.wait_stderr("the reconnection", WAIT, |l| {
        l.contains("MQTT connected") && l.contains("session_present=true")
    });
    publish(broker.port, &batch(readings / 2, readings));
    wait_for_versions(&dir.path().join("updates.jsonl"), pumps, readings as u64);
    stop_cleanly(run);
    let twins = digest(&state);
    assert_eq!(twins.len(), pumps);
    for (asset, events, _, _, latest) in &twins {
        let p: usize = asset[5..].parse().unwrap();
        assert_eq!(*events, readings as u64, "{asset}");
        assert_eq!(latest, &vec![(p + readings - 1) as f64], "{asset}");
    }
}

/// A broker with a password file: the node authenticates with a password
/// from the environment; a wrong password stops the node with one clear
/// error instead of retrying; a password that cannot be read stops it at
/// start.
#[test]
fn passwords_come_from_the_environment_and_a_refusal_is_one_clear_error() {
    let broker = Mosquitto::with_user("plant", "s3cret");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let topo = topology_as(
        dir.path(),
        broker.port,
        "node-auth",
        ", username: plant, password_env: TWINSTREAM_TEST_MQTT_PASSWORD",
    );

    let mut run = spawn(run_cmd(&topo, &state).env("TWINSTREAM_TEST_MQTT_PASSWORD", "s3cret"));
    run.wait_stderr("the subscription", WAIT, |l| l.contains("MQTT subscribed"));
    publish_as(
        broker.port,
        Some(("plant", "s3cret")),
        &[("plant/pump-0001/temperature".into(), r#"{"ts":1,"value":20.5}"#.into())],
    );
    wait_for_versions(&dir.path().join("updates.jsonl"), 1, 1);
    stop_cleanly(run);

    let run = spawn(run_cmd(&topo, &state).env("TWINSTREAM_TEST_MQTT_PASSWORD", "wrong"));
    let (status, _, err) = run.finish_all(WAIT);
    assert!(!status.success(), "a refused connection stops the node");
    let refusals: Vec<&String> = err.iter().filter(|l| l.contains("refused the connection")).collect();
    assert_eq!(
        refusals.len(),
        1,
        "one clear error, not a retry storm:\n{}",
        err.join("\n")
    );
    // Mosquitto 2 answers a wrong password with "not authorised".
    assert!(
        refusals[0].contains("not authorised") || refusals[0].contains("bad user name or password"),
        "{}",
        refusals[0]
    );

    let run = spawn(run_cmd(&topo, &state).env_remove("TWINSTREAM_TEST_MQTT_PASSWORD"));
    let (status, _, err) = run.finish_all(WAIT);
    assert!(!status.success());
    assert!(
        err.iter()
            .any(|l| l
                .contains("cannot read the MQTT password from environment variable `TWINSTREAM_TEST_MQTT_PASSWORD`")),
        "{}",
        err.join("\n")
    );

    // A sink refused by the broker stops the node with one error too.
    let text = std::fs::read_to_string(&topo).unwrap()
        + &format!(
            "  - {{ name: commands, type: mqtt, port: {}, username: plant, password_env: TWINSTREAM_TEST_SINK_PASSWORD, topic: \"plant/{{asset}}/commands\", outputs: [commands] }}\n",
            broker.port
        );
    std::fs::write(&topo, text).unwrap();
    let run = spawn(
        run_cmd(&topo, &state)
            .env("TWINSTREAM_TEST_MQTT_PASSWORD", "s3cret")
            .env("TWINSTREAM_TEST_SINK_PASSWORD", "wrong"),
    );
    let (status, _, err) = run.finish_all(WAIT);
    assert!(!status.success(), "a refused sink stops the node");
    let refusals: Vec<&String> = err.iter().filter(|l| l.contains("refused the connection")).collect();
    assert_eq!(refusals.len(), 1, "{}", err.join("\n"));
    assert!(refusals[0].contains("sink `commands`"), "{}", refusals[0]);
}

/// `openssl ARGS` in `dir`; it must succeed.
fn openssl(dir: &Path, args: &[&str]) {
    ok(std::process::Command::new("openssl").current_dir(dir).args(args));
}

/// A throwaway CA `name`.crt/.key in `dir`.
fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

/// A certificate `name`.crt/.key signed by CA `ca`, with `ext` (X.509 v3
/// extensions).
fn signed(dir: &Path, ca: &str, name: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &format!("{name}.crt"),
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

/// Mutual TLS: the broker's certificate is signed by a throwaway CA and it
/// requires a client certificate. The node with the CA and its certificate
/// ingests; a node that trusts another CA stops with one clear error.
#[test]
fn mutual_tls_ingests_and_an_untrusted_broker_is_one_clear_error() {
    let certs = tempfile::tempdir().unwrap();
    let c = certs.path();
    ca(c, "ca");
    ca(c, "other-ca");
    signed(
        c,
        "ca",
        "broker",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    signed(c, "ca", "node", "extendedKeyUsage=clientAuth\n");
    let broker = Mosquitto::with_listener_config(&format!(
        "cafile {0}/ca.crt\ncertfile {0}/broker.crt\nkeyfile {0}/broker.key\nrequire_certificate true\n",
        c.display()
    ));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let with_tls = |ca: &str| {
        topology_as(
            dir.path(),
            broker.port,
            "node-tls",
            &format!(
                ", tls: {{ ca_file: {0}/{ca}.crt, cert_file: {0}/node.crt, key_file: {0}/node.key }}",
                c.display()
            ),
        )
    };
    let topo = with_tls("ca");
    let mut run = spawn(&mut run_cmd(&topo, &state));
    run.wait_stderr("the subscription over TLS", WAIT, |l| l.contains("MQTT subscribed"));
    stop_cleanly(run);

    let topo = with_tls("other-ca");
    let run = spawn(&mut run_cmd(&topo, &state));
    let (status, _, err) = run.finish_all(WAIT);
    assert!(!status.success(), "an untrusted broker stops the node");
    let refusals: Vec<&String> = err.iter().filter(|l| l.contains("refused the connection")).collect();
    assert_eq!(
        refusals.len(),
        1,
        "one clear error, not a retry storm:\n{}",
        err.join("\n")
    );
    assert!(refusals[0].contains("TLS"), "{}", refusals[0]);
}

/// A test client subscribed to `filter` on a persistent session (the broker
/// keeps its subscription and messages while it is away), collecting
/// Distinct command ids in a file sink's output.
fn distinct_ids(log: &Path) -> usize {
    jsonl(log)
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// Command ids in the order they first arrived, per asset.
fn first_arrivals(messages: &[(String, Vec<u8>, bool)]) -> std::collections::BTreeMap<String, Vec<(String, f64)>> {
    let mut seen = std::collections::HashSet::new();
    let mut per_asset: std::collections::BTreeMap<String, Vec<(String, f64)>> = Default::default();
    for (topic, payload, _) in messages {
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        let asset = v["asset"].as_str().unwrap().to_string();
        assert_eq!(topic, &format!("plant/{asset}/commands"));
        let id = v["id"].as_str().unwrap().to_string();
        if seen.insert(id.clone()) {
            per_asset
                .entry(asset)
                .or_default()
                .push((id, v["value"].as_f64().unwrap()));
        }
    }
    per_asset
}

/// Rule commands go out through an MQTT sink to a subscriber, per asset in
/// the order the twin sent them. While the sink's broker is down they are
/// held; a `kill -9` then loses none of them (the outbox is stored with the
/// checkpoint; what no checkpoint holds is redelivered by the source's
/// broker and produced again); after the restart every command arrives. A
/// second sink publishes twin updates retained: the broker ends with each
/// pump's last state.
#[test]
fn the_sink_delivers_commands_in_order_through_a_broker_outage_and_a_crash() {
    let source_broker = Mosquitto::start();
    let mut sink_broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (a, b) = (source_broker.port, sink_broker.port);
    let topo = Topo::new("sink-test")
        .model(
            r#"asset_types:
  pump:
    sensors: { temperature: { unit: degC } }
assets: [{ id: "pump-*", type: pump }]
rules:
  - name: hot
    when: "temperature > 90"
    clear_when: "temperature < 80"
    command: { name: cooling, value: 1, on_clear: 0 }
"#,
        )
        .source(&format!(
            r#"{{ name: plant, type: mqtt, port: {a}, client_id: sink-test-in, topics: ["plant/+/+"], topic_fields: "plant/{{asset}}/{{sensor}}", decode: {{ ts: ts, value: value }} }}"#
        ))
        .sink(&format!(
            r#"{{ name: commands, type: mqtt, port: {b}, topic: "plant/{{asset}}/commands", qos: 1, outputs: [commands] }}"#
        ))
        .sink(&format!(
            r#"{{ name: state, type: mqtt, port: {b}, topic: "plant/{{asset}}/state", qos: 1, retain: true, outputs: [twin_updates] }}"#
        ))
        .file_sink("log", &dir.path().join("commands.jsonl"), "commands")
        .write(&dir.path().join("sink.yaml"));
    let subscriber = Subscriber::start(sink_broker.port, "command-subscriber", "plant/+/commands", false);
    let mut run = spawn(&mut run_cmd(&topo, &state));
    run.wait_stderr("the subscription", WAIT, |l| l.contains("MQTT subscribed"));

    // Every reading flips the rule: 95 raises, 70 clears. Reading i of a pump
    // sends command `pump/hot/<i/2+1>/<raised|cleared>`.
    let (pumps, readings) = (10, 80);
    let readings_of = |from: usize, to: usize| {
        let mut m = Vec::new();
        for i in from..to {
            for p in 0..pumps {
                let value = if i % 2 == 0 { 95 } else { 70 };
                m.push((
                    format!("plant/pump-{p:02}/temperature"),
                    format!(r#"{{"ts":{},"value":{value}}}"#, 1_700_000_000_000i64 + i as i64 * 1000),
                ));
            }
        }
        m
    };
    let expected = |upto: usize| -> std::collections::BTreeMap<String, Vec<(String, f64)>> {
        (0..pumps)
            .map(|p| {
                let asset = format!("pump-{p:02}");
                let ids = (0..upto)
                    .map(|i| {
                        let t = if i % 2 == 0 { "raised" } else { "cleared" };
                        (
                            format!("{asset}/hot/{}/{t}", i / 2 + 1),
                            if i % 2 == 0 { 1.0 } else { 0.0 },
                        )
                    })
                    .collect();
                (asset, ids)
            })
            .collect()
    };
    let total = |m: &std::collections::BTreeMap<String, Vec<(String, f64)>>| m.values().map(Vec::len).sum::<usize>();

    // Broker up: in order, as sent.
    publish(source_broker.port, &readings_of(0, readings / 2));
    let mut got = Vec::new();
    subscriber.collect_until(&mut got, "the first half of the commands", |g| {
        total(&first_arrivals(g)) == pumps * readings / 2
    });
    assert_eq!(first_arrivals(&got), expected(readings / 2));
    // What leaves the node is timed (the `output` hop): each line the log
    // file took, and each message the sink's broker acknowledged (commands
    // and twin updates).
    let base = run.http_base();
    let lines = |sink: &str| metric(&base, &format!("twinstream_sink_lines_total{{sink=\"{sink}\"}}"));
    let out = || metric(&base, "twinstream_hop_latency_seconds_count{hop=\"output\"}");
    let timed = poll_until(WAIT, || {
        let all = lines("log")? + lines("commands")? + lines("state")?;
        (lines("commands")? == (pumps * readings / 2) as f64 && out()? == all).then_some(())
    });
    assert!(
        timed.is_some(),
        "output hop {:?}; lines: log {:?}, commands {:?}, state {:?}",
        out(),
        lines("log"),
        lines("commands"),
        lines("state")
    );

    // Sink broker down: commands are produced and held. Kill the node once
    // it has produced them all.
    sink_broker.stop();
    run.wait_stderr("the sink noticing", WAIT, |l| l.contains("MQTT sink disconnected"));
    publish(source_broker.port, &readings_of(readings / 2, readings));
    let log = dir.path().join("commands.jsonl");
    let produced = poll_until(WAIT, || (distinct_ids(&log) >= pumps * readings).then_some(()));
    assert!(produced.is_some(), "the commands were not produced");
    run.child.kill().unwrap();
    run.child.wait().unwrap();

    // Broker and node back: every command arrives, first arrivals in order.
    sink_broker.resume();
    let run = spawn(&mut run_cmd(&topo, &state));
    subscriber.collect_until(&mut got, "every command after the restart", |g| {
        total(&first_arrivals(g)) == pumps * readings
    });
    assert_eq!(first_arrivals(&got), expected(readings));

    // A clean stop while the sink's broker is down keeps what it could not
    // publish in the store; the next start publishes it first.
    sink_broker.stop();
    let mut run = run;
    run.wait_stderr("the sink noticing", WAIT, |l| l.contains("MQTT sink disconnected"));
    publish(source_broker.port, &readings_of(readings, readings + 20));
    let produced = poll_until(WAIT, || (distinct_ids(&log) >= pumps * (readings + 20)).then_some(()));
    assert!(produced.is_some(), "the last commands were not produced");
    let (_, stderr) = stop_cleanly(run);
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("kept and published on the next start")),
        "{stderr:?}"
    );
    sink_broker.resume();
    let mut run = spawn(&mut run_cmd(&topo, &state));
    run.wait_stderr("the stored messages", WAIT, |l| {
        l.contains("publishing the messages the last run left unacknowledged")
    });
    let readings = readings + 20;
    subscriber.collect_until(&mut got, "the commands kept over the stop", |g| {
        total(&first_arrivals(g)) == pumps * readings
    });
    assert_eq!(first_arrivals(&got), expected(readings));
    stop_cleanly(run);

    // The retained state of each pump is its last twin update.
    let fresh = Subscriber::start(sink_broker.port, "state-reader", "plant/+/state", true);
    let mut state_msgs = Vec::new();
    fresh.collect_until(&mut state_msgs, "the retained states", |g| g.len() == pumps);
    for (topic, payload, retained) in &state_msgs {
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        assert!(retained, "{topic} was not retained");
        assert_eq!(topic, &format!("plant/{}/state", v["asset"].as_str().unwrap()));
        assert_eq!(v["version"], readings as u64, "{topic}: {v}");
    }
}

/// The README's one-command MQTT demo: it starts a broker, publishing pumps,
/// the node and a device watcher; commands come back to the watcher, and
/// SIGTERM stops the node cleanly and everything else with it.
#[test]
fn the_mqtt_demo_script_sends_commands_back_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut demo = spawn(
        std::process::Command::new("bash")
            .arg(repo().join("scripts/demo-mqtt.sh"))
            .env("MQTT_PORT", port.to_string())
            .env("DEMO_STATE", dir.path().join("state"))
            .env("TWINSTREAM_BIN", bin()),
    );
    let line = demo.wait_stdout("a command at the device", WAIT, |l| {
        l.starts_with("device <- plant/pump-")
    });
    let payload: serde_json::Value = serde_json::from_str(line.splitn(4, ' ').nth(3).unwrap()).unwrap();
    assert_eq!(payload["command"], "cooling", "{line}");
    stop_cleanly(demo);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the demo's broker is still running"
    );
}
