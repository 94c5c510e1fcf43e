//! The MQTT source: a rumqttc subscription whose messages become chunks.
//!
//! * The messages the connection has ready (up to [`MAX_BATCH`]) become one
//!   chunk, routed at once: no lingering at low rates, and chunks grow by
//!   themselves while the engine is busy. A chunk is decoded on this thread
//!   (MQTT rates do not need the decoder pool) and routed like any chunk;
//!   each takes a flow permit, so a busy engine stops this thread reading
//!   (the broker then holds the messages).
//! * Topic levels named by `topic_fields` (`plant/{asset}/{sensor}`) are
//!   handed to the decoder inside the record (under [`TOPIC_KEY`]), so the
//!   decode mapping reads them like payload fields.
//! * **QoS 1 is acknowledged after durability**: manual acks. With
//!   `ack_after: inbox` (the default) a chunk's messages are acked once the
//!   source has written them into the store's inbox ([`inbox`]), which a
//!   start after a crash replays; with `ack_after: checkpoint` only when the
//!   router reports that a checkpoint holding the chunk is durable. A crash
//!   before either means redelivery. Until then the source keeps only their
//!   packet ids (2 bytes a message); many acks due at once go to the
//!   connection thread in bulk ([`BulkAcks`]), so acknowledging keeps up
//!   with a flood.
//! * A thread of its own drives the rumqttc connection (a poll cut short
//!   would restart a connect or TLS handshake); connection errors are
//!   retried there with exponential backoff and jitter (100 ms to 10 s,
//!   [`crate::mqtt`]); the
//!   first error of a streak is logged as a warning. A refusal that retrying
//!   cannot fix (credentials, authorisation, an untrusted certificate) stops
//!   the node with one error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rumqttc::{Client, Event, Packet, Publish, QoS};

mod acks;
mod inbox;

use acks::Acks;
pub use inbox::Inbox;
use inbox::InboxLog;

use super::decode::{Decoder, Scratch};
use super::SourceError;
use crate::mqtt::{describe, drive, refusal, BulkAcks, Credentials, OnError};
use crate::pipeline::flow::Flow;
use crate::pipeline::DecodedChunk;
use crate::topology::{MqttSpec, TOPIC_KEY};

/// Messages per chunk at most.
pub const MAX_BATCH: usize = 2048;
/// Connection events waiting for the source thread at most.
const EVENT_QUEUE: usize = 4096;
/// How often the gauges of messages waiting for acks are updated at most
/// (the source loop turns once per connection event).
const GAUGES_EVERY: Duration = Duration::from_millis(100);
/// How long a stopping source waits for the final checkpoint's acks.
const FINAL_ACKS: Duration = Duration::from_secs(30);
/// How long a stopping source waits for the broker to close the connection
/// after its DISCONNECT.
const DISCONNECT_CONFIRMED: Duration = Duration::from_secs(5);

pub struct MqttSource {
    pub source: u16,
    pub name: Arc<str>,
    pub spec: MqttSpec,
    pub decoder: Arc<Decoder>,
    /// Used when the spec names no client id.
    pub default_client_id: String,
    /// The password and TLS files, read at start-up.
    pub credentials: Credentials,
    /// Errors that stop the node (a refused connection).
    pub fatal: crate::pipeline::FatalTx,
    /// Where QoS 1 messages are acknowledged from (`ack_after: inbox`);
    /// `None`: they wait for a checkpoint.
    pub inbox: Option<Inbox>,
}

impl MqttSource {
    /// Subscribes and routes messages until `stop` or a closed flow.
    /// `durable` receives the sequence number up to which chunks are durable.
    pub fn run(mut self, flow: &Flow, out: &Sender<DecodedChunk>, durable: &Receiver<u64>, stop: &AtomicBool) {
        let mut seq = 0u64;
        let mut scratch = Scratch::default();
        // The last chunk carries the position of what was routed (with an
        // inbox: checkpoints store it, and it never goes back).
        let stored = self.inbox.as_ref().map_or(0, |i| i.durable);
        // What a crash left in the inbox goes first: those messages were
        // acknowledged, the broker does not send them again.
        let mut inbox = match self.inbox.take().map(|i| InboxLog::open(i, self.name.clone())) {
            None => None,
            Some(Ok(log)) => Some(log),
            Some(Err(e)) => {
                self.stop_node(SourceError::Inbox {
                    source_name: self.name.to_string(),
                    error: e,
                });
                return self.end(out, seq, stored);
            }
        };
        let position = |inbox: &Option<InboxLog>| inbox.as_ref().map_or(stored, InboxLog::position);
        if let Some(log) = &mut inbox {
            let routed = self.route_left(log, flow, out, stop, &mut seq, &mut scratch);
            if !matches!(routed, Ok(true)) {
                if let Err(e) = routed {
                    self.stop_node(SourceError::Inbox {
                        source_name: self.name.to_string(),
                        error: e,
                    });
                }
                return self.end(out, seq, log.position());
            }
        }
        let mut opts = crate::mqtt::options(&self.spec.conn, &self.default_client_id, &self.credentials);
        opts.set_clean_session(self.spec.clean_session);
        opts.set_manual_acks(true);
        let qos = if self.spec.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let (client, connection) = Client::new(opts, 1024);
        let (events_tx, events) = crossbeam_channel::bounded(EVENT_QUEUE);
        let (bulk, bulk_tx) = BulkAcks::new(client.clone());
        let driving = Arc::new(AtomicBool::new(true));
        {
            let driving = driving.clone();
            let name = format!("mqtt-{}", self.name);
            let spawned = std::thread::Builder::new()
                .name(name)
                .spawn(move || drive(connection, &events_tx, &driving, OnError::Reconnect, Some(&bulk)));
            if let Err(e) = spawned {
                self.stop_node(SourceError::Thread {
                    source_name: self.name.to_string(),
                    error: e.to_string(),
                });
                return self.end(out, seq, position(&inbox));
            }
        }
        let end_at = position(&inbox);
        let inbox = match inbox.map(|log| log.writer().map(|w| (log, w))) {
            None => None,
            Some(Ok(pair)) => Some(pair),
            Some(Err(e)) => {
                self.stop_node(SourceError::Thread {
                    source_name: self.name.to_string(),
                    error: e.to_string(),
                });
                return self.end(out, seq, end_at);
            }
        };
        let mut acks = Acks::new(client.clone(), bulk_tx, inbox);
        let mut batch: Vec<Publish> = Vec::new();
        let mut conn = ConnState::default();
        while !stop.load(Ordering::Relaxed) {
            // Acknowledge what is durable, in the inbox or a checkpoint.
            // Acks go through rumqttc's bounded request queue, which only
            // the connection thread drains, and only while it can hand
            // events over: never block on it.
            while let Ok(up_to) = durable.try_recv() {
                acks.durable(up_to);
            }
            acks.take_written();
            acks.send();
            acks.gauges(&self.name, Instant::now());
            // Take what the connection has ready (up to a chunk), then route
            // it at once: no lingering at low rates, and chunks grow by
            // themselves while the engine is busy and messages queue up.
            // The inbox writer's report wakes the wait too (acks are due).
            let mut ready = crossbeam_channel::Select::new();
            if !acks.backlogged() {
                ready.recv(&events);
            }
            if let Some(reports) = acks.reports() {
                ready.recv(reports);
            }
            let _ = ready.ready_timeout(Duration::from_millis(2));
            if acks.backlogged() {
                // The inbox writer is too far behind (a failing disk, or a
                // slow one 65,536 messages behind): read nothing new until
                // it catches up; the broker keeps the messages.
                continue;
            }
            let mut next = match events.try_recv() {
                Ok(event) => Some(event),
                Err(crossbeam_channel::TryRecvError::Empty) => None,
                Err(crossbeam_channel::TryRecvError::Disconnected) => break,
            };
            let mut refused = false;
            while let Some(event) = next.take() {
                match self.on_event(event, &client, qos, &mut batch, &mut conn) {
                    Ok(()) => {}
                    Err(reason) => {
                        // Retrying cannot fix credentials, authorisation or
                        // an untrusted certificate: one clear error, and the
                        // node stops.
                        self.stop_node(SourceError::Refused {
                            source_name: self.name.to_string(),
                            reason,
                        });
                        refused = true;
                        break;
                    }
                }
                if batch.len() < MAX_BATCH {
                    next = events.try_recv().ok();
                }
            }
            if refused {
                break;
            }
            if !batch.is_empty() {
                let Some(permit) = flow.acquire_until(stop) else { break };
                let publishes = std::mem::take(&mut batch);
                let mut chunk = self.chunk(seq, &publishes, &mut scratch);
                chunk.permit = Some(permit);
                // The twins apply the chunk while its messages are written
                // into the inbox (acknowledged then), or wait for a checkpoint.
                if qos == QoS::AtLeastOnce {
                    acks.routed(seq, publishes, &mut chunk);
                } else {
                    chunk.end_offset = acks.position();
                }
                if out.send(chunk).is_err() {
                    return;
                }
                seq += 1;
            }
        }
        // Messages not yet routed stay with the broker (persistent session)
        // and come again after the restart. The ones routed are written into
        // the inbox or made durable by the router's final checkpoint: wait
        // for both and acknowledge them, so a clean stop does not cause
        // redelivery.
        self.end(out, seq, acks.position());
        let deadline = Instant::now() + FINAL_ACKS;
        while !acks.settled() && Instant::now() < deadline {
            match durable.recv_timeout(Duration::from_millis(5)) {
                Ok(up_to) => acks.durable(up_to),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) if acks.only_checkpoints_left() => break,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(1)),
            }
            acks.take_written();
            acks.send();
            // Keep the connection thread moving (it blocks while its event
            // queue is full, and then drains no acks). Messages arriving now
            // are not routed: unacknowledged, the broker keeps them.
            while events.try_recv().is_ok() {}
        }
        if acks.unacked_chunks() > 0 {
            tracing::warn!(source = %self.name, chunks = acks.unacked_chunks(),
                "stopped before the final checkpoint acknowledged every routed message; the broker redelivers them");
        }
        acks.gauges(&self.name, Instant::now() + GAUGES_EVERY);
        acks.close();
        // Never block on the request queue here either.
        let _ = client.try_disconnect();
        disconnected(&self.name, &events);
        // Dropping the client ends the connection thread's iteration.
        driving.store(false, Ordering::Relaxed);
    }

    /// Handles one connection event: a message joins `batch`; a refusal
    /// retrying cannot fix is returned.
    fn on_event(
        &self,
        event: Result<Event, rumqttc::ConnectionError>,
        client: &Client,
        qos: QoS,
        batch: &mut Vec<Publish>,
        conn: &mut ConnState,
    ) -> Result<(), String> {
        match event {
            Ok(Event::Incoming(Packet::Publish(p))) => batch.push(p),
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(source = %self.name, host = %self.spec.conn.host, port = self.spec.conn.port,
                    session_present = ack.session_present, "MQTT connected");
                conn.failing = false;
                conn.subacks_due = 0;
                conn.refused = false;
                if ack.session_present {
                    // The session holds the subscriptions: messages flow.
                    crate::telemetry::mqtt_connected(&self.name, true);
                } else {
                    // Ready once the broker confirms every subscription:
                    // a message published before that is not this
                    // session's, and a new session would miss it.
                    for t in &self.spec.topics {
                        match client.subscribe(t.clone(), qos) {
                            Ok(()) => conn.subacks_due += 1,
                            Err(e) => tracing::error!(source = %self.name, topic = %t, error = %e, "cannot subscribe"),
                        }
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                conn.refused |= ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                conn.subacks_due = conn.subacks_due.saturating_sub(1);
                if conn.subacks_due == 0 {
                    if conn.refused {
                        tracing::error!(source = %self.name, topics = ?self.spec.topics,
                            "the broker refused a subscription; the source stays not ready");
                    } else {
                        tracing::info!(source = %self.name, topics = ?self.spec.topics, "MQTT subscribed");
                        crate::telemetry::mqtt_connected(&self.name, true);
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                if let Some(reason) = refusal(&e) {
                    return Err(reason);
                }
                // The connection thread backs off before it retries.
                crate::telemetry::mqtt_connected(&self.name, false);
                if !conn.failing {
                    tracing::warn!(source = %self.name, host = %self.spec.conn.host, port = self.spec.conn.port,
                        error = %describe(&e), "MQTT connection failed; retrying with backoff");
                    conn.failing = true;
                }
            }
        }
        Ok(())
    }

    fn stop_node(&self, error: SourceError) {
        let _ = self.fatal.send(crate::pipeline::Fatal::new(error));
    }

    /// Sends the source's last chunk (chunk `seq`, at `position`): the
    /// router then takes its final checkpoint.
    fn end(&self, out: &Sender<DecodedChunk>, seq: u64, position: u64) {
        let mut last = DecodedChunk::empty(self.source, seq, position, 0);
        last.last = true;
        let _ = out.send(last);
    }

    /// Routes what a crash left in the inbox, in chunks, before anything
    /// new; `Ok(false)`: the node stopped meanwhile.
    fn route_left(
        &self,
        log: &mut InboxLog,
        flow: &Flow,
        out: &Sender<DecodedChunk>,
        stop: &AtomicBool,
        seq: &mut u64,
        scratch: &mut Scratch,
    ) -> Result<bool, crate::store::StoreError> {
        let mut from = log.first_left();
        let mut routed = 0usize;
        loop {
            let (left, end) = log.left(from, MAX_BATCH)?;
            if end == from {
                break;
            }
            let Some(permit) = flow.acquire_until(stop) else {
                return Ok(false);
            };
            let mut chunk = self.chunk(*seq, &left.publishes, scratch);
            // New to the durable state (by position), so applied whatever
            // its time; perhaps forwarded before the crash, so outputs mark
            // it redelivered.
            for e in chunk.groups.iter_mut().flat_map(|g| g.events.iter_mut()) {
                e.redelivered = true;
                e.replayed = true;
            }
            if !left.damaged.is_empty() {
                tracing::error!(source = %self.name, entries = left.damaged.len(),
                    "unreadable entries in the MQTT inbox; they go to the dead-letter sink with their stored bytes");
                chunk.records += left.damaged.len() as u64;
                chunk.dead_letters.extend(left.damaged);
            }
            chunk.permit = Some(permit);
            chunk.end_offset = end;
            routed += left.publishes.len();
            if out.send(chunk).is_err() {
                return Ok(false);
            }
            log.routed_left(*seq, end);
            *seq += 1;
            from = end;
        }
        log.left_routed();
        if routed > 0 {
            tracing::info!(source = %self.name, messages = routed,
                "routed the messages the MQTT inbox held from before the stop (acknowledged, not yet checkpointed)");
        }
        crate::telemetry::mqtt_inbox(&self.name, log.held());
        Ok(true)
    }

    /// Decodes `publishes` into a chunk: each message one record, with the
    /// fields of its topic handed over under [`TOPIC_KEY`]. Dead letters
    /// keep the original payload and name the topic.
    fn chunk(&self, seq: u64, publishes: &[Publish], scratch: &mut Scratch) -> DecodedChunk {
        let mut chunk = DecodedChunk::empty(self.source, seq, 0, 0);
        let mut lines: Vec<u8> = Vec::with_capacity(publishes.iter().map(|p| p.payload.len() + 64).sum());
        // Messages whose topic does not fit the template (for dead letters).
        let mut misfit = vec![false; publishes.len()];
        for (i, p) in publishes.iter().enumerate() {
            let fields = self.spec.topic_fields.as_ref().map(|t| t.extract(&p.topic));
            misfit[i] = matches!(fields, Some(None));
            match fields {
                Some(None) => {
                    // Does not fit the template: the decoder reports the
                    // missing field; the line must still be one record.
                    lines.extend_from_slice(b"{}");
                }
                // An empty payload is still a record (the decoder rejects it).
                _ if p.payload.trim_ascii().is_empty() => lines.extend_from_slice(b"null"),
                Some(Some(fields)) => splice(&mut lines, &fields, &p.payload),
                None => lines.extend(
                    p.payload
                        .iter()
                        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
                ),
            }
            lines.push(b'\n');
        }
        self.decoder.decode_lines(&lines, 0, 1, &mut chunk, scratch);
        // Events carry the record's line: mark those of redelivered messages.
        if publishes.iter().any(|p| p.dup) {
            for g in &mut chunk.groups {
                for e in &mut g.events {
                    e.redelivered = publishes.get(e.origin as usize - 1).is_some_and(|p| p.dup);
                }
            }
        }
        for d in &mut chunk.dead_letters {
            let i = d.origin.line as usize - 1;
            if let Some(p) = publishes.get(i) {
                d.payload = p.payload.to_vec();
                d.origin.topic = Some(p.topic.as_str().into());
                d.origin.offset = None;
                if misfit[i] {
                    d.message = format!("topic `{}` does not fit `topic_fields`; {}", p.topic, d.message);
                }
            }
        }
        chunk
    }
}

/// Writes `{"<TOPIC_KEY>":{fields},<the payload object's members>}`; a payload
/// that is not an object is written as it is (the decoder rejects it).
pub(crate) fn splice(out: &mut Vec<u8>, fields: &[(&str, &str)], payload: &[u8]) {
    let body: Vec<u8> = payload
        .iter()
        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
        .collect();
    let trimmed = body.trim_ascii_start();
    let Some(rest) = trimmed.strip_prefix(b"{") else {
        out.extend_from_slice(&body);
        return;
    };
    out.push(b'{');
    serde_json::to_writer(&mut *out, TOPIC_KEY).expect("writing to a Vec");
    out.extend_from_slice(b":{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, k).expect("writing to a Vec");
        out.push(b':');
        serde_json::to_writer(&mut *out, v).expect("writing to a Vec");
    }
    out.push(b'}');
    if !rest.trim_ascii_start().starts_with(b"}") {
        out.push(b',');
    }
    out.extend_from_slice(rest);
}

/// The source's view of its connection.
#[derive(Debug, Default)]
struct ConnState {
    /// In a streak of connection errors (the first was logged).
    failing: bool,
    /// Subscriptions of a new session the broker has not confirmed yet.
    subacks_due: usize,
    /// The broker refused one of them.
    refused: bool,
}

/// Waits, after a DISCONNECT was requested, until the broker closes the
/// connection. A broker reads a connection's packets in order and closes it
/// on DISCONNECT, so then it has read every acknowledgement sent before.
/// Exiting sooner leaves them unread in its socket, and a restart that takes
/// the session over at once makes the broker drop them and redeliver (the
/// twins recognise the readings, but a clean stop should not cause that).
/// Logs a warning when no close comes in time.
fn disconnected(source: &str, events: &Receiver<Result<Event, rumqttc::ConnectionError>>) {
    let until = Instant::now() + DISCONNECT_CONFIRMED;
    let mut sent = false;
    while Instant::now() < until {
        match events.recv_timeout(Duration::from_millis(50)) {
            Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) => sent = true,
            // The read that fails after the DISCONNECT is the broker's close.
            Ok(Err(_)) if sent => return,
            Ok(Err(_)) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            _ => {}
        }
    }
    tracing::warn!(
        source,
        "the MQTT broker did not confirm the disconnect; acknowledgements it has not read yet are lost, and it \
         redelivers those messages (the twins recognise them as applied)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_fields_are_spliced_into_the_payload_object() {
        let rows: &[(&[u8], &str)] = &[
            (
                br#"{"ts":1,"value":2.5}"#,
                "{\"\\u0001topic\":{\"asset\":\"p-1\"},\"ts\":1,\"value\":2.5}",
            ),
            (b"  {}", "{\"\\u0001topic\":{\"asset\":\"p-1\"}}"),
            (
                b"{\n \"ts\": 1\n}",
                "{\"\\u0001topic\":{\"asset\":\"p-1\"},  \"ts\": 1 }",
            ),
            (b"[1,2]", "[1,2]"),
        ];
        for (payload, want) in rows {
            let mut out = Vec::new();
            splice(&mut out, &[("asset", "p-1")], payload);
            assert_eq!(String::from_utf8(out).unwrap(), *want);
        }
    }
}
