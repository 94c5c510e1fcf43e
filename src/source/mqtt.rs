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
//! * **QoS 1 is acknowledged after durability**: manual acks; a chunk's
//!   messages are acked only when the router reports that a checkpoint
//!   holding the chunk is durable. A crash before that means redelivery.
//!   Until then the source keeps only their packet ids (2 bytes a
//!   message); many acks due at once go to the connection thread in bulk
//!   ([`BulkAcks`]), so acknowledging keeps up with a flood.
//! * A thread of its own drives the rumqttc connection (a poll cut short
//!   would restart a connect or TLS handshake); connection errors are
//!   retried there with exponential backoff and jitter (100 ms to 10 s,
//!   [`crate::mqtt`]); the
//!   first error of a streak is logged as a warning. A refusal that retrying
//!   cannot fix (credentials, authorisation, an untrusted certificate) stops
//!   the node with one error.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rumqttc::{Client, Event, Packet, Publish, QoS};

use super::decode::{Decoder, Scratch};
use super::SourceError;
use crate::mqtt::{ack_of, describe, drive, refusal, AckSender, BulkAcks, Credentials, OnError};
use crate::pipeline::flow::Flow;
use crate::pipeline::DecodedChunk;
use crate::topology::{MqttSpec, TOPIC_KEY};

/// Messages per chunk at most.
pub const MAX_BATCH: usize = 2048;
/// Connection events waiting for the source thread at most.
const EVENT_QUEUE: usize = 4096;
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
}

impl MqttSource {
    /// Subscribes and routes messages until `stop` or a closed flow.
    /// `durable` receives the sequence number up to which chunks are durable.
    pub fn run(self, flow: &Flow, out: &Sender<DecodedChunk>, durable: &Receiver<u64>, stop: &AtomicBool) {
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
        let (bulk, mut bulk_tx) = BulkAcks::new(client.clone());
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
                let mut last = DecodedChunk::empty(self.source, 0, 0, 0);
                last.last = true;
                let _ = out.send(last);
                return;
            }
        }
        let mut seq = 0u64;
        let mut batch: Vec<Publish> = Vec::new();
        // Routed QoS 1 messages by chunk, as their packet ids (all an
        // acknowledgement needs: 2 bytes a message, not the message).
        let mut unacked: VecDeque<(u64, Vec<u16>)> = VecDeque::new();
        let mut to_ack: VecDeque<u16> = VecDeque::new();
        let mut scratch = Scratch::default();
        let mut conn = ConnState::default();
        while !stop.load(Ordering::Relaxed) {
            // Acknowledge what is durable. Acks go through rumqttc's bounded
            // request queue, which only the connection thread drains, and
            // only while it can hand events over: never block on it.
            let mut released = false;
            while let Ok(up_to) = durable.try_recv() {
                release(&mut unacked, up_to, &mut to_ack);
                released = true;
            }
            send_acks(&client, &mut bulk_tx, &mut to_ack);
            if released {
                crate::telemetry::mqtt_unacked(&self.name, waiting(&unacked, &to_ack));
            }
            // Take what the connection has ready (up to a chunk), then route
            // it at once: no lingering at low rates, and chunks grow by
            // themselves while the engine is busy and messages queue up.
            let mut next = match events.recv_timeout(Duration::from_millis(2)) {
                Ok(event) => Some(event),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
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
                if out.send(chunk).is_err() {
                    return;
                }
                if qos == QoS::AtLeastOnce {
                    let pkids = publishes.iter().filter(|p| p.qos != QoS::AtMostOnce).map(|p| p.pkid);
                    unacked.push_back((seq, pkids.collect()));
                }
                seq += 1;
                crate::telemetry::mqtt_unacked(&self.name, waiting(&unacked, &to_ack));
            }
        }
        // Messages not yet routed stay with the broker (persistent session)
        // and come again after the restart. The ones routed are made durable
        // by the router's final checkpoint: wait for it and acknowledge them,
        // so a clean stop does not cause redelivery.
        let mut last = DecodedChunk::empty(self.source, seq, 0, 0);
        last.last = true;
        let _ = out.send(last);
        let deadline = Instant::now() + FINAL_ACKS;
        while (!unacked.is_empty() || !to_ack.is_empty() || !bulk_tx.settled()) && Instant::now() < deadline {
            match durable.recv_timeout(Duration::from_millis(5)) {
                Ok(up_to) => release(&mut unacked, up_to, &mut to_ack),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) if to_ack.is_empty() && bulk_tx.settled() => {
                    break
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(1)),
            }
            send_acks(&client, &mut bulk_tx, &mut to_ack);
            // Keep the connection thread moving (it blocks while its event
            // queue is full, and then drains no acks). Messages arriving now
            // are not routed: unacknowledged, the broker keeps them.
            while events.try_recv().is_ok() {}
        }
        if !unacked.is_empty() {
            tracing::warn!(source = %self.name, chunks = unacked.len(),
                "stopped before the final checkpoint acknowledged every routed message; the broker redelivers them");
        }
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

/// Messages routed and not yet acknowledged.
fn waiting(unacked: &VecDeque<(u64, Vec<u16>)>, to_ack: &VecDeque<u16>) -> usize {
    unacked.iter().map(|(_, p)| p.len()).sum::<usize>() + to_ack.len()
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

/// Moves the messages of chunks up to `up_to` to the ack queue.
fn release(unacked: &mut VecDeque<(u64, Vec<u16>)>, up_to: u64, to_ack: &mut VecDeque<u16>) {
    while unacked.front().is_some_and(|(s, _)| *s <= up_to) {
        to_ack.extend(unacked.pop_front().expect("checked").1);
    }
}

/// Acknowledgements up to this many go through rumqttc's request queue one
/// by one; more go to the connection thread in bulk ([`BulkAcks`]).
const ACKS_ONE_BY_ONE: usize = 16;

/// Hands every acknowledgement due to the connection: a few through
/// rumqttc's request queue (never blocking on it), more in bulk, followed
/// by one request that wakes the connection thread.
fn send_acks(client: &Client, bulk: &mut AckSender, to_ack: &mut VecDeque<u16>) {
    if to_ack.len() > ACKS_ONE_BY_ONE {
        let keep = to_ack.len() - 1;
        bulk.send(to_ack.drain(..keep).collect());
    }
    while let Some(&pkid) = to_ack.front() {
        if client.try_ack(&ack_of(pkid)).is_err() {
            // Full: the connection loop drains it; try again next round.
            return;
        }
        to_ack.pop_front();
    }
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
