//! Real brokers started by the tests on 127.0.0.1 - Mosquitto (MQTT) and
//! tansu (Kafka-compatible) - and clients to publish, subscribe and create
//! topics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

use super::{ok, poll_until};

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

    /// A broker with Mosquitto's default inflight window (20 unacknowledged
    /// QoS 1 messages per client: it sends no more until acks come).
    pub fn with_default_inflight() -> Mosquitto {
        Self::start_conf(None, "max_inflight_messages 20\n")
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
        let conf = |port: u16| {
            std::fs::write(
                dir.path().join("mosquitto.conf"),
                format!(
                    "max_inflight_messages 0\nlistener {port} 127.0.0.1\n{listener_lines}{auth}persistence true\n\
                     persistence_location {}/\nmax_queued_messages 0\nuser root\nlog_dest stderr\n",
                    dir.path().display()
                ),
            )
            .unwrap();
            Self::spawn(dir.path())
        };
        let (child, port) = listening("mosquitto", None, conf);
        Mosquitto { child, port, dir }
    }

    /// Runs mosquitto with the configuration in `dir` (its port is in it).
    fn spawn(dir: &Path) -> Child {
        Command::new("mosquitto")
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mosquitto (scripts/install-deps.sh installs it): {e}"))
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

    /// The broker's process id (to sample its memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts a stopped broker again on its port, with its saved sessions.
    pub fn resume(&mut self) {
        let dir = self.dir.path().to_path_buf();
        (self.child, _) = listening("mosquitto", Some(self.port), |_| Self::spawn(&dir));
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    /// Where it tells clients to reach it, when not at its own port.
    advertised: Option<String>,
}

impl Tansu {
    pub fn start() -> Tansu {
        Self::start_advertising(None)
    }

    /// A broker that tells clients to reach it at `advertised` (`host:port`
    /// of a proxy in front of it), or at its own port.
    pub fn start_advertising(advertised: Option<String>) -> Tansu {
        let dir = tempfile::tempdir().unwrap();
        let (child, port) = listening("tansu", None, |port| {
            Self::spawn(dir.path(), port, advertised.as_deref())
        });
        Tansu {
            child,
            port,
            dir,
            advertised,
        }
    }

    /// Runs the broker on `port` with its data in `dir`; it advertises
    /// `advertised`, or the same address.
    fn spawn(dir: &Path, port: u16, advertised: Option<&str>) -> Child {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = advertised.map_or_else(|| url.clone(), |a| format!("tcp://{a}"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("tansu.log"))
            .unwrap();
        Command::new(tansu_bin())
            .current_dir(dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            // Its warnings, or what `TANSU_LOG` asks for, go to `tansu.log`.
            .env("RUST_LOG", std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tansu (scripts/install-deps.sh installs it): {e}"))
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

    /// The broker's process id (to sample its memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the broker (kill); [`Tansu::resume`] starts it again.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a stopped broker again on its port and data.
    pub fn resume(&mut self) {
        let dir = self.dir.path().to_path_buf();
        let advertised = self.advertised.clone();
        (self.child, _) = listening("tansu", Some(self.port), |port| {
            Self::spawn(&dir, port, advertised.as_deref())
        });
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now: a candidate for a broker that must be
/// told its port (Mosquitto, and tansu, which advertises it). Another
/// process may take it before the broker binds it: [`listening`] checks the
/// broker itself holds it and tries again otherwise.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a server with `spawn(port)` until the child itself listens on
/// 127.0.0.1:`port`: on a port of its own choosing (`fixed` is `None`: a
/// free port, another one if the child cannot bind it), or on `fixed` (a
/// restart: the same port again, as soon as it is free). Ready means the
/// listening socket is one of the child's descriptors, not merely that
/// something accepts connections on the port.
pub fn listening(what: &str, fixed: Option<u16>, mut spawn: impl FnMut(u16) -> Child) -> (Child, u16) {
    for _attempt in 0..20 {
        let port = fixed.unwrap_or_else(free_port);
        let mut child = spawn(port);
        let up = poll_until(Duration::from_secs(20), || {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(Err(status));
            }
            owns_listener(child.id(), port).then_some(Ok(()))
        });
        match up {
            Some(Ok(())) => return (child, port),
            // It could not bind (the port was taken meanwhile): again.
            Some(Err(_)) => continue,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not listen on 127.0.0.1:{port} within 20 s");
            }
        }
    }
    panic!("{what} exited 20 times without listening");
}

/// Whether process `pid` holds a socket listening on 127.0.0.1:`port`.
fn owns_listener(pid: u32, port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // local_address, state (0A: LISTEN), inode
            (f.len() > 9 && f[1] == local && f[3] == "0A").then(|| format!("socket:[{}]", f[9]))
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
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
    let all = poll_until(Duration::from_secs(60), || {
        // Take acks as they come; back to the poll when none came for a while.
        while acked < messages.len() {
            match connection.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        (acked == messages.len()).then_some(())
    });
    assert!(all.is_some(), "only {acked} of {} published", messages.len());
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
        let all = poll_until(Duration::from_secs(60), || {
            while !done(got) {
                match self.messages.recv_timeout(Duration::from_millis(100)) {
                    Ok(m) => got.push(m),
                    Err(_) => return None,
                }
            }
            Some(())
        });
        assert!(all.is_some(), "{what}: {} messages", got.len());
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

/// Hands `record` to `producer`, letting deliveries drain its local queue
/// while it is full.
pub fn send_waiting<C, K, P>(
    producer: &rdkafka::producer::ThreadedProducer<C>,
    mut record: rdkafka::producer::BaseRecord<'_, K, P, C::DeliveryOpaque>,
) where
    C: rdkafka::producer::ProducerContext + 'static,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    use rdkafka::producer::Producer as _;
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, r)) => {
                producer.poll(Duration::from_millis(10));
                record = r;
            }
        }
    }
}
