//! Mosquitto for benchmarks: the broker on 127.0.0.1 and an ephemeral port,
//! and rumqttc clients (QoS 1) that publish and subscribe and count what
//! they see. Needs `system.rs`, included as `mod system`.
#![allow(dead_code)] // each benchmark uses what it needs

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet};

use crate::system::wall_ms;

/// The publisher's inflight window (rumqttc's packet ids are 16 bits).
pub const PUBLISH_INFLIGHT: u16 = 60_000;
/// How long start-up steps (broker, connections, subscriptions) may take.
pub const START: Duration = Duration::from_secs(60);

/// Mosquitto on 127.0.0.1 and an ephemeral port with its own config file in
/// a temporary directory; killed when dropped.
pub struct Broker {
    pub child: Child,
    pub port: u16,
    pub inflight: u32,
    pub settings: String,
    dir: tempfile::TempDir,
}

impl Broker {
    pub fn start(mosquitto: &str, inflight: u32, nodelay: bool) -> Result<Broker> {
        let dir = tempfile::Builder::new()
            .prefix("twinstream-bench-mosquitto")
            .tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let settings = format!(
            "max_inflight_messages {inflight}\nmax_queued_messages 0\npersistence false\nset_tcp_nodelay {nodelay}\n"
        );
        std::fs::write(
            dir.path().join("mosquitto.conf"),
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\n{settings}user root\nlog_dest file {}\n",
                dir.path().join("mosquitto.log").display()
            ),
        )?;
        let child = Command::new(mosquitto)
            .arg("-c")
            .arg(dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {mosquitto} (scripts/install-deps.sh installs it)"))?;
        let mut broker = Broker {
            child,
            port,
            inflight,
            settings: settings.trim_end().replace('\n', ", "),
            dir,
        };
        // Ready when it accepts connections.
        let deadline = Instant::now() + START;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = broker.child.try_wait()? {
                bail!("mosquitto exited ({status}):\n{}", broker.log_tail());
            }
            if Instant::now() > deadline {
                bail!("mosquitto did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(broker)
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn mosquitto_version(mosquitto: &str) -> String {
    let out = Command::new(mosquitto).arg("-h").output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr))
        .unwrap_or_default();
    let version = text.lines().find(|l| l.contains("version"));
    version.unwrap_or("mosquitto (version unknown)").trim().to_string()
}

/// What a client's connection thread has seen.
#[derive(Default)]
pub struct ClientState {
    pub connected: bool,
    pub subacks: u64,
    pub unsubacks: u64,
    pub pubacks: u64,
    pub last_puback: Option<Instant>,
    pub received: u64,
    pub first_rx: Option<Instant>,
    pub last_rx: Option<Instant>,
    /// Received messages whose payload `ts` is at or after this get their
    /// latency (wall time received - `ts`, ms) recorded.
    pub latency_from: Option<i64>,
    pub latencies: Vec<f64>,
    pub error: Option<String>,
}

/// A rumqttc client whose connection a thread drives (incoming QoS 1
/// messages are acked at once); it stops at the first error.
pub struct MqttClient {
    pub client: Client,
    pub state: Arc<Mutex<ClientState>>,
    thread: JoinHandle<()>,
}

impl MqttClient {
    pub fn connect(id: &str, port: u16, clean_session: bool, cap: usize) -> Result<MqttClient> {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(60));
        opts.set_clean_session(clean_session);
        opts.set_inflight(PUBLISH_INFLIGHT);
        let (client, mut connection) = Client::new(opts, cap);
        let state = Arc::new(Mutex::new(ClientState::default()));
        let shared = state.clone();
        let thread = std::thread::Builder::new().name(id.into()).spawn(move || {
            for event in connection.iter() {
                let (now, wall) = (Instant::now(), wall_ms());
                let mut s = shared.lock().unwrap();
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => s.connected = true,
                    Ok(Event::Incoming(Packet::SubAck(_))) => s.subacks += 1,
                    Ok(Event::Incoming(Packet::UnsubAck(_))) => s.unsubacks += 1,
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        s.pubacks += 1;
                        s.last_puback = Some(now);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        s.received += 1;
                        s.first_rx.get_or_insert(now);
                        s.last_rx = Some(now);
                        if let (Some(from), Some(ts)) = (s.latency_from, payload_ts(&p.payload)) {
                            if ts >= from {
                                s.latencies.push(wall - ts as f64);
                            }
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => {
                        s.error = Some(e.to_string());
                        break;
                    }
                }
            }
        })?;
        let c = MqttClient { client, state, thread };
        c.wait(&format!("{id} to connect"), START, |s| s.connected)?;
        Ok(c)
    }

    /// The counters so far (without the latencies).
    pub fn snapshot(&self) -> ClientState {
        let s = self.state.lock().unwrap();
        ClientState {
            latencies: Vec::new(),
            error: s.error.clone(),
            ..*s
        }
    }

    /// Polls until `pred` holds; fails on a connection error or at `timeout`.
    pub fn wait(&self, what: &str, timeout: Duration, pred: impl Fn(&ClientState) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let s = self.state.lock().unwrap();
                if pred(&s) {
                    return Ok(());
                }
                if let Some(e) = &s.error {
                    bail!("MQTT connection error while waiting for {what}: {e}");
                }
            }
            if Instant::now() > deadline {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn close(self) -> Result<()> {
        self.client.disconnect()?;
        self.thread
            .join()
            .map_err(|_| anyhow!("an MQTT connection thread panicked"))?;
        Ok(())
    }
}

/// The `ts` of a payload the MQTT bench writes (`{"ts": <ms>, ...}`).
fn payload_ts(payload: &[u8]) -> Option<i64> {
    let rest = payload.strip_prefix(br#"{"ts": "#)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}
