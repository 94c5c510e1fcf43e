//! MQTT plumbing shared by the MQTT source and sink: client options from a
//! topology's connection settings, the thread that drives a rumqttc
//! connection, backoff, and which connection errors retrying cannot fix.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rumqttc::{Client, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, PubAck, Publish, QoS};

use crate::topology::MqttConn;

/// The largest packet MQTT allows. rumqttc's default (10 KiB) would turn one
/// large message into a connection error - and a redelivery loop; the
/// broker enforces its own limit (`message_size_limit`).
pub const MAX_PACKET: usize = 268_435_455;
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// PEM bytes: the CA, and the client certificate and key for mutual TLS.
pub type TlsFiles = (Vec<u8>, Option<(Vec<u8>, Vec<u8>)>);

/// The secrets of a connection, read once at start-up.
#[derive(Clone, Default)]
pub struct Credentials {
    pub password: Option<String>,
    pub tls: Option<TlsFiles>,
}

/// Why the secrets of a connection cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read the MQTT password from {from}: {error}")]
    Password { from: String, error: String },
    #[error("cannot read TLS file {path}: {error}")]
    TlsFile { path: PathBuf, error: std::io::Error },
}

impl Credentials {
    /// Reads the password and the TLS files `conn` names.
    pub fn read(conn: &MqttConn) -> Result<Credentials, CredentialError> {
        let password = match &conn.password {
            Some(secret) => Some(secret.read().map_err(|error| CredentialError::Password {
                from: secret.describe(),
                error,
            })?),
            None => None,
        };
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|error| CredentialError::TlsFile {
                path: path.clone(),
                error,
            })
        };
        let tls = match &conn.tls {
            Some(t) => Some((
                read(&t.ca_file)?,
                match &t.client {
                    Some((cert, key)) => Some((read(cert)?, read(key)?)),
                    None => None,
                },
            )),
            None => None,
        };
        Ok(Credentials { password, tls })
    }
}

/// rumqttc options for `conn`; `default_client_id` when it names none.
pub fn options(conn: &MqttConn, default_client_id: &str, creds: &Credentials) -> MqttOptions {
    let client_id = if conn.client_id.is_empty() {
        default_client_id.to_string()
    } else {
        conn.client_id.clone()
    };
    let mut opts = MqttOptions::new(client_id, conn.host.clone(), conn.port);
    opts.set_keep_alive(conn.keep_alive);
    opts.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    if let Some((ca, client_auth)) = &creds.tls {
        opts.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Simple {
            ca: ca.clone(),
            alpn: None,
            client_auth: client_auth.clone(),
        }));
    }
    if let Some(user) = &conn.username {
        opts.set_credentials(user.clone(), creds.password.clone().unwrap_or_default());
    }
    opts
}

/// Exponential backoff with jitter (50-100% of the step, so many nodes do
/// not retry in step), from [`BACKOFF_MIN`] to [`BACKOFF_MAX`].
pub struct Backoff {
    step: Duration,
    rng: fastrand::Rng,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            step: BACKOFF_MIN,
            rng: fastrand::Rng::new(),
        }
    }
}

impl Backoff {
    /// The next wait; the step doubles.
    pub fn next_delay(&mut self) -> Duration {
        let wait = self.step.mul_f64(0.5 + 0.5 * self.rng.f64());
        self.step = (self.step * 2).min(BACKOFF_MAX);
        wait
    }

    pub fn reset(&mut self) {
        self.step = BACKOFF_MIN;
    }
}

/// How a connection thread treats an error.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Back off, then let rumqttc reconnect on the next poll.
    Reconnect,
    /// Hand the error over and end: the owner builds a new connection.
    Return,
}

/// Polls the connection until the client is gone, `driving` is cleared or
/// (with [`OnError::Return`]) the first error, handing every event over.
/// rumqttc's connection makes progress only while it is polled, and a poll
/// cut short (a timeout) starts a connect or TLS handshake over: a thread of
/// its own drives it.
pub fn drive(
    mut connection: rumqttc::Connection,
    events: &Sender<Result<Event, ConnectionError>>,
    driving: &AtomicBool,
    on_error: OnError,
    acks: Option<&BulkAcks>,
) {
    let mut backoff = Backoff::default();
    loop {
        if let Some(acks) = acks {
            acks.write(&mut connection);
        }
        let Ok(notification) = connection.recv() else { break };
        let failed = notification.is_err();
        if matches!(notification, Ok(Event::Incoming(Packet::ConnAck(_)))) {
            backoff.reset();
        }
        if events.send(notification).is_err() || !driving.load(Ordering::Relaxed) {
            break;
        }
        if failed {
            if on_error == OnError::Return {
                break;
            }
            let until = Instant::now() + backoff.next_delay();
            while driving.load(Ordering::Relaxed) && Instant::now() < until {
                // Taken while disconnected too (they go out after the
                // reconnect), so a stopping source never waits on them.
                if let Some(acks) = acks {
                    acks.write(&mut connection);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The QoS 1 acknowledgement of message `pkid`, as a client takes it.
pub fn ack_of(pkid: u16) -> Publish {
    let mut p = Publish::new("", QoS::AtLeastOnce, Vec::<u8>::new());
    p.pkid = pkid;
    p
}

/// Acknowledgements handed to the thread that drives a connection in
/// bulk. rumqttc takes one request per turn of its event loop while it reads
/// up to ten messages per turn, so under a flood acknowledgements sent one
/// by one fall behind without bound (and a broker that sends past its
/// in-flight limit keeps sending). The driving thread writes these straight
/// into the connection's write buffer between turns, and sends the last one
/// as a request, which wakes the loop and flushes them all.
pub struct BulkAcks {
    rx: Receiver<Vec<u16>>,
    client: Client,
    /// Batches taken and queued (the last ack of each as a request).
    handled: Arc<AtomicU64>,
}

/// The source's end of [`BulkAcks`].
pub struct AckSender {
    tx: Sender<Vec<u16>>,
    sent: u64,
    handled: Arc<AtomicU64>,
}

impl AckSender {
    pub fn send(&mut self, pkids: Vec<u16>) {
        if self.tx.send(pkids).is_ok() {
            self.sent += 1;
        }
    }

    /// Whether the connection thread has queued every batch sent: then a
    /// request made now (a disconnect) comes after all of them.
    pub fn settled(&self) -> bool {
        self.handled.load(Ordering::Acquire) >= self.sent
    }
}

impl BulkAcks {
    /// The driving thread's end, and the sender the source hands packet ids to.
    pub fn new(client: Client) -> (BulkAcks, AckSender) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let handled = Arc::new(AtomicU64::new(0));
        let sender = AckSender {
            tx,
            sent: 0,
            handled: handled.clone(),
        };
        (BulkAcks { rx, client, handled }, sender)
    }

    fn write(&self, connection: &mut rumqttc::Connection) {
        let mut last = None;
        let mut batches = 0;
        while let Ok(pkids) = self.rx.try_recv() {
            batches += 1;
            for pkid in pkids {
                if let Some(prev) = last.replace(pkid) {
                    write_ack(connection, prev);
                }
            }
        }
        if let Some(pkid) = last {
            // Queue full: the requests waiting flush the buffer anyway.
            if self.client.try_ack(&ack_of(pkid)).is_err() {
                write_ack(connection, pkid);
            }
        }
        self.handled.fetch_add(batches, Ordering::Release);
    }
}

fn write_ack(connection: &mut rumqttc::Connection, pkid: u16) {
    // A PUBACK is four bytes into a growable buffer: it cannot fail.
    let _ = PubAck::new(pkid).write(&mut connection.eventloop.state.write);
}

/// A refusal that retrying cannot fix - credentials, authorisation, the
/// client id, a TLS failure on the certificate chain or the configured
/// files - described; `None` for anything else (worth a retry).
pub fn refusal(e: &ConnectionError) -> Option<String> {
    let text = match e {
        ConnectionError::ConnectionRefused(code) => {
            return match code {
                ConnectReturnCode::ServiceUnavailable => None,
                ConnectReturnCode::BadUserNamePassword => Some("bad user name or password".to_string()),
                ConnectReturnCode::NotAuthorized => {
                    Some("not authorised (check the user name, the password and the broker's ACL)".to_string())
                }
                ConnectReturnCode::BadClientId => Some("client id rejected".to_string()),
                other => Some(format!("{other:?}")),
            }
        }
        ConnectionError::Tls(t) => t.to_string(),
        ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => io.to_string(),
        _ => return None,
    };
    let lower = text.to_lowercase();
    ["certificate", "tls", "handshake", "alert"]
        .iter()
        .any(|w| lower.contains(w))
        .then(|| format!("TLS: {text}"))
}

/// A connection error for a log line.
pub fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::Io(io) => format!("{io} (is the broker running and reachable?)"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let mut step = BACKOFF_MIN;
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(d >= step / 2 && d <= step, "{d:?} outside {:?}..={step:?}", step / 2);
            step = (step * 2).min(BACKOFF_MAX);
        }
        assert!(b.next_delay() >= BACKOFF_MAX / 2);
        b.reset();
        assert!(b.next_delay() <= BACKOFF_MIN);
    }
}
