//! Shared helpers for black-box tests: run the real binary, the
//! conformance workload's tools, and wait on output with deadlines (never sleeps).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_twinstream")
}

/// The checkout under test: where `cargo test` runs it from (set at run
/// time), not where the test binary was compiled (a target dir shared by
/// several checkouts may hold a binary compiled in another one).
pub fn repo() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()))
}

/// The conformance workload's tools: generator, reference implementation
/// and comparison (`tests/workload/`, independent of the engine's code).
pub fn workload_dir() -> PathBuf {
    repo().join("tests/workload")
}

/// Calls `probe` every few milliseconds until it returns `Some`, or
/// `timeout` passes (then `None`). The one way tests wait for a condition
/// they cannot be told about.
pub fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs a command to completion and requires success.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `twinstream replay TOPO DATA --report REPORT --state-dir STATE EXTRA...`,
/// run to completion; it must succeed.
pub fn replay(topo: impl AsRef<Path>, data: &Path, state: &Path, report: &Path, extra: &[&str]) -> Output {
    ok(twinstream()
        .arg("replay")
        .arg(topo.as_ref())
        .arg(data)
        .arg("--report")
        .arg(report)
        .arg("--state-dir")
        .arg(state)
        .args(extra))
}

/// Generates a workload v1 file with `args` into `dir/name`.
pub fn gen_workload(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    ok(Command::new(python())
        .arg(workload_dir().join("gen_workload.py"))
        .args(args)
        .arg("--out")
        .arg(&out));
    out
}

/// `reference.py FILE --json` into `dir/ref.json`.
pub fn reference(dir: &Path, data: &Path) -> PathBuf {
    let out = ok(Command::new(python())
        .arg(workload_dir().join("reference.py"))
        .arg(data)
        .arg("--json"));
    let path = dir.join(format!("ref-{}.json", data.file_stem().unwrap().to_string_lossy()));
    std::fs::write(&path, out.stdout).unwrap();
    path
}

/// `compare.py REF OURS`; returns its stdout and whether it said MATCH.
pub fn compare(reference: &Path, ours: &Path) -> (bool, String) {
    let out = Command::new(python())
        .arg(workload_dir().join("compare.py"))
        .arg(reference)
        .arg(ours)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.success() && text.starts_with("MATCH"), text)
}

pub fn twinstream() -> Command {
    let mut c = Command::new(bin());
    c.current_dir(repo());
    c.env("RUST_LOG", "info");
    // `run` serves the HTTP API on a free port (a topology such as the demo
    // names a fixed one), with the demo's write token; tests that care pass
    // `--http` and their own tokens.
    c.env("TWINSTREAM_HTTP", "127.0.0.1:0");
    c.env("TWINSTREAM_WRITE_TOKEN", "test-token");
    c
}

pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

pub fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// `twinstream run TOPO --state-dir STATE`.
pub fn run_cmd(topo: &Path, state: &Path) -> Command {
    let mut c = twinstream();
    c.arg("run").arg(topo).arg("--state-dir").arg(state);
    c
}

/// Sends SIGTERM and requires a clean exit that says so; returns stdout and
/// stderr.
pub fn stop_cleanly(run: Running) -> (Vec<String>, Vec<String>) {
    run.signal("TERM");
    let (status, out, err) = run.finish_all(Duration::from_secs(60));
    assert!(
        status.success(),
        "exit {status} after SIGTERM; stderr:\n{}",
        err.join("\n")
    );
    assert!(
        err.iter().any(|l| l.contains("stopped cleanly")),
        "no `stopped cleanly` on stderr:\n{}",
        err.join("\n")
    );
    (out, err)
}

/// A running child whose stdout and stderr lines arrive on channels.
pub struct Running {
    pub child: Child,
    pub stdout: mpsc::Receiver<String>,
    pub stderr: mpsc::Receiver<String>,
    pub seen_err: Vec<String>,
    pub seen_out: Vec<String>,
}

fn pump(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line from `lines` that satisfies `pred` within `timeout`; every
/// line read is kept in `seen`.
fn first_line(
    lines: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).ok()?;
        seen.push(line.clone());
        if pred(&line) {
            return Some(line);
        }
    }
}

pub fn spawn(cmd: &mut Command) -> Running {
    spawn_with_stdout(cmd, Stdio::piped())
}

/// [`spawn`] with the child's stdout going to `stdout`; the returned
/// `Running::stdout` then has lines only when it is `Stdio::piped()`.
pub fn spawn_with_stdout(cmd: &mut Command, stdout: Stdio) -> Running {
    let mut child = cmd
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let stdout = match child.stdout.take() {
        Some(out) => pump(out),
        None => mpsc::channel().1,
    };
    let stderr = pump(child.stderr.take().unwrap());
    Running {
        child,
        stdout,
        stderr,
        seen_err: Vec::new(),
        seen_out: Vec::new(),
    }
}

impl Running {
    /// Waits until a stderr line satisfies `pred`, or panics at the deadline.
    pub fn wait_stderr(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        match first_line(&self.stderr, &mut self.seen_err, timeout, pred) {
            Some(line) => line,
            None => panic!(
                "timed out after {timeout:?} waiting for {what}; stderr so far:\n{}",
                self.seen_err.join("\n")
            ),
        }
    }

    /// Waits until a stdout line satisfies `pred`, or panics at the deadline.
    pub fn wait_stdout(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        match first_line(&self.stdout, &mut self.seen_out, timeout, pred) {
            Some(line) => line,
            None => {
                let err: Vec<String> = self.stderr.try_iter().collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; stdout so far:\n{}\nstderr:\n{}",
                    self.seen_out.join("\n"),
                    err.join("\n")
                )
            }
        }
    }

    /// Sends a signal by name (e.g. "TERM") with the system `kill`.
    pub fn signal(&self, sig: &str) {
        ok(Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string()));
    }

    /// Waits for exit (with a deadline) and returns the status and the rest
    /// of stderr.
    pub fn finish(self, timeout: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let (status, _, err) = self.finish_all(timeout);
        (status, err)
    }

    /// Waits for exit (with a deadline) and returns the status, every stdout
    /// line and every stderr line.
    pub fn finish_all(mut self, timeout: Duration) -> (std::process::ExitStatus, Vec<String>, Vec<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let (mut out, mut err) = (std::mem::take(&mut self.seen_out), std::mem::take(&mut self.seen_err));
                // The pump threads end at EOF; collect what is left.
                while let Ok(l) = self.stderr.recv_timeout(Duration::from_secs(5)) {
                    err.push(l);
                }
                while let Ok(l) = self.stdout.recv_timeout(Duration::from_secs(5)) {
                    out.push(l);
                }
                return (status, out, err);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "process did not exit within {timeout:?}; stderr:\n{}",
                    self.seen_err.join("\n")
                );
            }
            // Drain output so the child never blocks on a full pipe.
            while let Ok(l) = self.stderr.recv_timeout(Duration::from_millis(50)) {
                self.seen_err.push(l);
            }
            while let Ok(l) = self.stdout.try_recv() {
                self.seen_out.push(l);
            }
        }
    }
}

/// A test that fails must not leave its process running (it could hold a
/// port or an MQTT client id that the next test uses).
impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A real Mosquitto broker on 127.0.0.1 and an ephemeral port, stopped
/// (killed) when dropped. Configured for QoS 1 tests (TOOLCHAIN.md): no
/// queue limit, no inflight limit, no privilege drop; its sessions and
/// queued messages persist in a temporary directory across [`restart`].
///
/// [`restart`]: Mosquitto::restart
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        Self::start_conf(None, "")
    }

    /// A broker that admits only `user` with `password`.
    pub fn with_user(user: &str, password: &str) -> Mosquitto {
        Self::start_conf(Some((user, password)), "")
    }

    /// A broker whose listener also has `listener_lines` (e.g. TLS files);
    /// anonymous clients allowed.
    pub fn with_listener_config(listener_lines: &str) -> Mosquitto {
        Self::start_conf(None, listener_lines)
    }

    fn start_conf(user: Option<(&str, &str)>, listener_lines: &str) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let auth = match user {
            None => "allow_anonymous true\n".to_string(),
            Some((user, password)) => {
                let file = dir.path().join("passwd");
                ok(Command::new("mosquitto_passwd")
                    .arg("-b")
                    .arg("-c")
                    .arg(&file)
                    .arg(user)
                    .arg(password));
                format!("allow_anonymous false\npassword_file {}\n", file.display())
            }
        };
        let port = free_port();
        std::fs::write(
            dir.path().join("mosquitto.conf"),
            format!(
                "listener {port} 127.0.0.1\n{listener_lines}{auth}persistence true\npersistence_location {}/\n\
                 max_queued_messages 0\nmax_inflight_messages 0\nuser root\nlog_dest stderr\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let child = Self::spawn(dir.path(), port);
        Mosquitto { child, port, dir }
    }

    fn spawn(dir: &Path, port: u16) -> Child {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mosquitto (scripts/install-deps.sh installs it): {e}"));
        // Ready when it accepts connections.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Stops the broker (SIGTERM: it saves its sessions) and starts it again
    /// on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.resume();
    }

    /// Stops the broker (SIGTERM: it saves its sessions).
    pub fn stop(&mut self) {
        ok(Command::new("kill").arg("-TERM").arg(self.child.id().to_string()));
        self.child.wait().unwrap();
    }

    /// Starts a stopped broker again on its port, with its saved sessions.
    pub fn resume(&mut self) {
        self.child = Self::spawn(self.dir.path(), self.port);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(asset, events, windows, window count sum, latest values)` of every twin.
pub type Digest = Vec<(String, u64, u64, u64, Vec<f64>)>;

/// The digest of every twin in the store at `state`, over all its shards.
pub fn digest(state: &Path) -> Digest {
    let store = twinstream::store::Store::open(state, 1).unwrap();
    let mut out = Vec::new();
    for shard in store.shards() {
        store
            .for_each_twin(shard, |asset, bytes| {
                let rec = twinstream::twin::record::decode(bytes).unwrap();
                let s = rec.stats;
                out.push((
                    asset.to_string(),
                    s.events,
                    s.windows,
                    s.window_count_sum,
                    rec.latest().map(|(_, l)| l.value).collect(),
                ));
                Ok(())
            })
            .unwrap();
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The tansu binary (scripts/install-deps.sh installs it under
/// `$CARGO_TOOLS_DIR`, default `~/.cache/twinstream/tools`).
fn tansu_bin() -> PathBuf {
    let dir = std::env::var("CARGO_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/twinstream/tools"));
    let bin = dir.join("bin/tansu");
    if bin.exists() {
        bin
    } else {
        PathBuf::from("tansu")
    }
}

/// A real Kafka-compatible broker (tansu with its SQLite storage engine,
/// which keeps everything across a restart) on 127.0.0.1 and an ephemeral
/// port.
pub struct Tansu {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Tansu {
    pub fn start() -> Tansu {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Self::spawn(dir.path(), port);
        Tansu { child, port, dir }
    }

    fn spawn(dir: &Path, port: u16) -> Child {
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("tansu.log"))
            .unwrap();
        let child = Command::new(tansu_bin())
            .current_dir(dir)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            // Its warnings, or what `TANSU_LOG` asks for, go to `tansu.log`.
            .env("RUST_LOG", std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tansu (scripts/install-deps.sh installs it): {e}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the broker logged (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    /// Stops the broker (kill) and starts it again on its port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.resume();
    }

    /// Stops the broker (kill); [`Tansu::resume`] starts it again.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a stopped broker again on its port and data.
    pub fn resume(&mut self) {
        self.child = Self::spawn(self.dir.path(), self.port);
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The greatest twin version per asset in the twin-update file. A line the
/// sink is still writing, or one a `kill -9` cut short, is not a version.
pub fn versions(updates: &Path) -> std::collections::HashMap<String, u64> {
    let text = std::fs::read_to_string(updates).unwrap_or_default();
    let mut max = std::collections::HashMap::new();
    for l in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        let e = max.entry(v["asset"].as_str().unwrap().to_string()).or_insert(0);
        *e = (*e).max(v["version"].as_u64().unwrap());
    }
    max
}

/// Polls the twin-update file until `done` holds for its versions.
pub fn wait_for(updates: &Path, what: &str, done: impl Fn(&std::collections::HashMap<String, u64>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let max = versions(updates);
        if done(&max) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {max:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until every one of `assets` twins is at `version`.
pub fn wait_for_versions(updates: &Path, assets: usize, version: u64) {
    wait_for(
        updates,
        &format!("twin updates did not reach version {version}"),
        |max| max.len() == assets && max.values().all(|v| *v == version),
    );
}

/// A port nothing listens on now (for a server the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Publishes `(topic, payload)` at QoS 1 and waits for every PUBACK.
pub fn publish(port: u16, messages: &[(String, String)]) {
    publish_as(port, None, messages)
}

pub fn publish_as(port: u16, credentials: Option<(&str, &str)>, messages: &[(String, String)]) {
    let mut opts = MqttOptions::new("test-publisher", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    if let Some((user, password)) = credentials {
        opts.set_credentials(user, password);
    }
    let (client, mut connection) = Client::new(opts, 64);
    let sender = std::thread::spawn({
        let messages = messages.to_vec();
        move || {
            for (topic, payload) in messages {
                client.publish(topic, QoS::AtLeastOnce, false, payload).unwrap();
            }
            client
        }
    });
    let mut acked = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked < messages.len() {
        assert!(
            Instant::now() < deadline,
            "only {acked} of {} published",
            messages.len()
        );
        if let Ok(Ok(Event::Incoming(Packet::PubAck(_)))) = connection.recv_timeout(Duration::from_millis(100)) {
            acked += 1;
        }
    }
    let client = sender.join().unwrap();
    let _ = client.disconnect();
}

/// `(topic, payload, retained)`.
pub struct Subscriber {
    pub messages: std::sync::mpsc::Receiver<(String, Vec<u8>, bool)>,
    client: Client,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    /// Returns once the broker confirmed the subscription.
    pub fn start(port: u16, client_id: &str, filter: &str, clean_session: bool) -> Subscriber {
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(clean_session);
        let (client, mut connection) = Client::new(opts, 64);
        client.subscribe(filter, QoS::AtLeastOnce).unwrap();
        let (tx, messages) = std::sync::mpsc::channel();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            for n in connection.iter() {
                match n {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send((p.topic.clone(), p.payload.to_vec(), p.retain)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    // The broker is away: back off before rumqttc reconnects.
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        ready
            .recv_timeout(Duration::from_secs(60))
            .expect("the subscription was not confirmed");
        Subscriber {
            messages,
            client,
            thread: Some(thread),
        }
    }

    /// Collects messages until `done` holds for all collected so far.
    pub fn collect_until(
        &self,
        got: &mut Vec<(String, Vec<u8>, bool)>,
        what: &str,
        done: impl Fn(&[(String, Vec<u8>, bool)]) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(got) {
            assert!(Instant::now() < deadline, "{what}: {} messages", got.len());
            if let Ok(m) = self.messages.recv_timeout(Duration::from_millis(100)) {
                got.push(m);
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Creates `topic` with `partitions` partitions on a Kafka-compatible broker.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let results = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

/// Rounds `from..to` of one reading per asset (`pump-0000`...), sensors
/// alternating by round: as Kafka records `(key = asset, value without the
/// asset)`, and as the JSON lines a file source reads (with the asset).
pub fn keyed_events(assets: usize, from: usize, to: usize) -> (Vec<(String, String)>, String) {
    let mut records = Vec::new();
    let mut lines = String::new();
    for i in from..to {
        for a in 0..assets {
            let sensor = if i % 2 == 0 { "temperature" } else { "current" };
            let (ts, value) = (
                1_700_000_000_000i64 + i as i64 * 100,
                ((a * 7 + i * 3) % 500) as f64 / 4.0,
            );
            let asset = format!("pump-{a:04}");
            records.push((
                asset.clone(),
                format!(r#"{{"sensor":"{sensor}","ts":{ts},"value":{value}}}"#),
            ));
            lines.push_str(&format!(
                r#"{{"asset":"{asset}","sensor":"{sensor}","ts":{ts},"value":{value}}}"#
            ));
            lines.push('\n');
        }
    }
    (records, lines)
}
