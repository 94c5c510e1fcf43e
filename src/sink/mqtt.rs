//! The MQTT sink: outputs published through rumqttc to a topic template
//! (`plant/{asset}/commands`), one JSON output per message.
//!
//! * **A thread of its own** renders the batches it receives into its queue
//!   and publishes them in order, at most [`INFLIGHT`] unacknowledged at a
//!   time. Per asset, messages leave in the order the twin produced them.
//! * **QoS 1 survives crashes and broker outages (outbox).** At every
//!   checkpoint the sink hands the messages the broker has not acknowledged
//!   yet to the store writer, which stages them in the checkpoint's
//!   `WriteBatch` (column family `outbox`); a message acknowledged after that
//!   is removed in a later checkpoint. On start the sink publishes its stored
//!   messages first. A checkpoint therefore never waits for the broker, and
//!   no output of a durable state is lost while the broker is down.
//! * **Bounded.** Beyond `queue` messages held (queued or unacknowledged),
//!   the sink keeps the twins' batches - and with them their flow permits -
//!   instead of releasing them, so the sources stop reading until the broker
//!   takes messages again (`twinstream_sink_backpressure` is 1 meanwhile).
//! * **Reconnects** with exponential backoff and jitter; each connection is a
//!   fresh clean-session client, and the messages published on the lost one
//!   and not acknowledged go back to the head of the queue, so they are
//!   published again in order. Delivery is at least once: a consumer may see
//!   a message twice and deduplicates by its `id` / `event_id`. A refusal
//!   retrying cannot fix (credentials, TLS) stops the node with one error.
//! * **QoS 0** is at most once: nothing is stored, and what is queued while
//!   the broker is down is lost if the node crashes. With `when_full:
//!   drop_oldest` a full queue drops its oldest message instead of holding
//!   the twins back (`twinstream_sink_dropped_total`).
//!
//! The thread, its outbox, flushes and close are the broker sink's
//! ([`super::broker`]); this module is its MQTT [`Transport`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;
use rumqttc::{Client, ConnectionError, Event, Outgoing, Packet, QoS};

use super::broker::{BrokerSink, Headers, Transport};
use super::outbox::Outbox;
use super::{json, SinkError};
use crate::mqtt::{describe, refusal, Backoff, Credentials, OnError};
use crate::pipeline::FatalTx;
use crate::pipeline::{DeadLetter, OutputBatch};
use crate::store::Store;
use crate::telemetry;
use crate::topology::{mqtt_topic_char, MqttSinkSpec, OutputTopic};
use crate::twin::schema::OutputMask;

/// Messages published and not yet acknowledged, at most.
pub const INFLIGHT: usize = 256;

/// The client of the current connection and the events of its thread.
struct Link {
    client: Client,
    events: Receiver<Result<Event, ConnectionError>>,
    driving: Arc<AtomicBool>,
    connected: bool,
}

impl Drop for Link {
    fn drop(&mut self) {
        // The connection thread ends at its next event; the client's drop
        // closes the request channel it polls.
        self.driving.store(false, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
    }
}

/// The MQTT sink: the broker sink over [`Mqtt`].
pub(super) type MqttSink = BrokerSink<Mqtt>;

/// Publishing through rumqttc: the transport of an [`MqttSink`].
pub(super) struct Mqtt {
    name: Arc<str>,
    spec: MqttSinkSpec,
    qos: QoS,
    default_client_id: String,
    credentials: Credentials,
    /// Index in `outbox.queue.sent` of the first message rumqttc has not
    /// sent yet.
    unsent: usize,
    link: Option<Link>,
    reconnect_at: Instant,
    backoff: Backoff,
    /// Set on the first failure of a streak (one warning per streak).
    failing: bool,
}

impl MqttSink {
    /// A sink that starts with the messages `name` left in the store.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        name: &str,
        spec: MqttSinkSpec,
        mask: OutputMask,
        sources: Arc<[Arc<str>]>,
        default_client_id: String,
        credentials: Credentials,
        store: Arc<Store>,
        fatal: FatalTx,
    ) -> Result<MqttSink, SinkError> {
        let outbox =
            Outbox::restore(name, &store, spec.queue, spec.when_full, spec.qos > 0).map_err(|e| SinkError {
                sink: name.to_string(),
                target: format!("mqtt {}:{}", spec.conn.host, spec.conn.port),
                message: e.to_string(),
            })?;
        let qos = if spec.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        telemetry::mqtt_sink_connected(name, false);
        let transport = Mqtt {
            name: name.into(),
            spec,
            qos,
            default_client_id,
            credentials,
            unsent: 0,
            link: None,
            reconnect_at: Instant::now(),
            backoff: Backoff::default(),
            failing: false,
        };
        Ok(BrokerSink::over(name, transport, outbox, mask, sources, store, fatal))
    }
}

impl Mqtt {
    fn connect(&mut self) -> Result<(), String> {
        let mut opts = crate::mqtt::options(&self.spec.conn, &self.default_client_id, &self.credentials);
        // Nothing to resume: what the last connection did not get
        // acknowledged is published again from the outbox.
        opts.set_clean_session(true);
        opts.set_inflight(INFLIGHT as u16);
        let (client, connection) = Client::new(opts, INFLIGHT + 16);
        let (tx, events) = crossbeam_channel::bounded(INFLIGHT * 2 + 64);
        let driving = Arc::new(AtomicBool::new(true));
        let d = driving.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("mqtt-sink-{}", self.name))
            .spawn(move || crate::mqtt::drive(connection, &tx, &d, OnError::Return, None));
        match spawned {
            Ok(_) => {
                self.link = Some(Link {
                    client,
                    events,
                    driving,
                    connected: false,
                });
                Ok(())
            }
            Err(e) => Err(format!("cannot start a thread: {e}")),
        }
    }

    /// Retires the acknowledged messages at the head of what was sent.
    fn complete(&mut self, outbox: &mut Outbox) {
        let before = outbox.queue.sent.len();
        outbox.complete();
        self.unsent -= before - outbox.queue.sent.len();
    }

    /// The connection is gone: what it did not get acknowledged goes back to
    /// the head of the queue, and a new one is tried after a backoff.
    fn lost(&mut self, outbox: &mut Outbox, reason: String) {
        self.link = None;
        outbox.requeue();
        self.unsent = 0;
        self.reconnect_at = Instant::now() + self.backoff.next_delay();
        telemetry::mqtt_sink_connected(&self.name, false);
        if !self.failing {
            tracing::warn!(sink = %self.name, host = %self.spec.conn.host, port = self.spec.conn.port,
                error = %reason, queued = outbox.queued(), "MQTT sink disconnected; holding messages and retrying with backoff");
            self.failing = true;
        }
    }
}

impl Transport for Mqtt {
    type Event = Result<Event, ConnectionError>;
    const TOPIC_CHAR: fn(char) -> bool = mqtt_topic_char;
    const STOP_BEFORE_SAVE: bool = false;

    fn topic(&self) -> &OutputTopic {
        &self.spec.topic
    }

    fn target(&self) -> String {
        format!("mqtt {}:{}", self.spec.conn.host, self.spec.conn.port)
    }

    /// One JSON output per message: no key, no headers.
    fn output(&self, _asset: &str, _kind: &'static str, _again: bool) -> (Option<Vec<u8>>, Headers) {
        (None, Vec::new())
    }

    /// A dead letter's JSON line.
    fn dead_letter(
        &self,
        batch: &OutputBatch,
        d: &DeadLetter,
        line: &mut Vec<u8>,
    ) -> (Option<Vec<u8>>, Headers, Vec<u8>) {
        line.clear();
        json::render_dead_letter(line, d, batch.at_ms);
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        (None, Vec::new(), line.clone())
    }

    /// Connects when due, hands queued messages over.
    fn send(&mut self, outbox: &mut Outbox, failed: bool) -> Result<(), String> {
        if self.link.is_none() && !failed && Instant::now() >= self.reconnect_at {
            self.connect()?;
        }
        if let Some(link) = self.link.as_ref().filter(|l| l.connected) {
            while outbox.queue.sent.len() < INFLIGHT {
                let Some(msg) = outbox.take() else { break };
                if link
                    .client
                    .try_publish(msg.topic.clone(), self.qos, self.spec.retain, msg.payload.clone())
                    .is_err()
                {
                    // The request queue is full: rumqttc drains it.
                    outbox.untake(msg);
                    break;
                }
                // Acknowledged once rumqttc sent it (QoS 0) or the broker
                // acknowledged it (QoS 1): never before it has a packet id.
                outbox.sent(msg);
            }
        }
        Ok(())
    }

    fn events(&self) -> Option<Receiver<Self::Event>> {
        self.link.as_ref().map(|l| l.events.clone())
    }

    fn on_event(&mut self, outbox: &mut Outbox, event: Self::Event) -> Result<(), String> {
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Some(link) = &mut self.link {
                    link.connected = true;
                }
                self.backoff.reset();
                self.failing = false;
                tracing::info!(sink = %self.name, host = %self.spec.conn.host, port = self.spec.conn.port,
                    queued = outbox.queued(), "MQTT sink connected");
                telemetry::mqtt_sink_connected(&self.name, true);
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                // rumqttc sends in the order it was handed the messages.
                if let Some(s) = outbox.queue.sent.get_mut(self.unsent) {
                    s.tag = Some(pkid);
                    s.acked = self.qos == QoS::AtMostOnce;
                    self.unsent += 1;
                }
                self.complete(outbox);
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(s) = outbox
                    .queue
                    .sent
                    .iter_mut()
                    .find(|s| s.tag == Some(ack.pkid) && !s.acked)
                {
                    s.acked = true;
                }
                self.complete(outbox);
            }
            Ok(_) => {}
            Err(e) => match refusal(&e) {
                Some(reason) => return Err(format!("the broker refused the connection: {reason}")),
                None => self.lost(outbox, describe(&e)),
            },
        }
        Ok(())
    }

    /// The connection thread ended: a lost connection.
    fn ended(&mut self, outbox: &mut Outbox) -> bool {
        self.lost(outbox, "the connection thread ended".into());
        true
    }

    /// The connection goes.
    fn halt(&mut self) {
        self.link = None;
        telemetry::mqtt_sink_connected(&self.name, false);
    }

    /// Closing: as on a failure, the connection goes.
    fn stop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pipeline::flow::Flow;
    use crate::pipeline::DeadLetter;
    use crate::sink::OutboxOp;
    use crate::store::Checkpoint;
    use crate::topology::{MqttConn, OutputKind, OutputTopic, WhenFull};

    /// A sink whose broker is not there (a port nothing listens on).
    fn unreachable_sink(store: &Arc<Store>, queue: usize) -> MqttSink {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spec = MqttSinkSpec {
            conn: MqttConn {
                host: "127.0.0.1".into(),
                port,
                client_id: String::new(),
                keep_alive: Duration::from_secs(30),
                username: None,
                password: None,
                tls: None,
            },
            topic: OutputTopic::parse("dead/{name}").unwrap(),
            qos: 1,
            retain: false,
            queue,
            when_full: WhenFull::Block,
        };
        let mask = OutputMask::default().with(OutputKind::DeadLetters);
        let (fatal, _) = crossbeam_channel::unbounded();
        MqttSink::new(
            "out",
            spec,
            mask,
            Arc::from(Vec::new()),
            "test".into(),
            Credentials::default(),
            store.clone(),
            fatal,
        )
        .unwrap()
    }

    fn batch(flow: &Flow, n: u64) -> Arc<OutputBatch> {
        Arc::new(OutputBatch {
            asset: None,
            model: None,
            outputs: Vec::new(),
            events: Vec::new(),
            dead_letters: vec![DeadLetter::malformed_line("s", n)],
            at_ms: 0,
            produced: std::time::Instant::now(),
            permit: flow.acquire(),
        })
    }

    #[test]
    fn over_its_bound_the_sink_holds_permits_and_its_outbox_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), 1).unwrap());
        let flow = Flow::new(8);
        let mut sink = unreachable_sink(&store, 2);
        for n in 1..=4 {
            sink.accept(batch(&flow, n));
        }
        // Two messages fit; the batches of the third and fourth keep their
        // permits, so the source behind them stops.
        assert_eq!(sink.outbox.held(), 4);
        assert_eq!(flow.inflight(), 2);
        assert_eq!(sink.topic, "dead/malformed");

        // A checkpoint stores every unacknowledged QoS 1 message once.
        let ops = sink.flush().unwrap();
        assert_eq!(sink.outbox.held(), 4);
        let puts: Vec<u64> = ops
            .iter()
            .map(|o| match o {
                OutboxOp::Put { seq, .. } => *seq,
                OutboxOp::Remove { .. } => panic!("nothing was acknowledged: {o:?}"),
            })
            .collect();
        assert_eq!(puts, [0, 1, 2, 3]);
        assert!(sink.flush().unwrap().is_empty(), "stored messages are not staged again");
        let mut ckpt = Checkpoint::default();
        for op in &ops {
            op.stage(&store, &mut ckpt);
        }
        store.commit(ckpt, true).unwrap();
        drop(sink);
        assert_eq!(flow.inflight(), 0, "dropping the sink releases what it held");

        // The next run starts with them, in order, numbering on after them.
        let mut again = unreachable_sink(&store, 2);
        again.accept(batch(&flow, 5));
        let mut queued = Vec::new();
        while let Some(m) = again.outbox.take() {
            queued.push(m);
        }
        let seqs: Vec<(u64, bool)> = queued.iter().map(|m| (m.seq, m.stored)).collect();
        assert_eq!(seqs, [(0, true), (1, true), (2, true), (3, true), (4, false)]);
        assert_eq!(queued[0].topic, "dead/malformed");
        let line: serde_json::Value = serde_json::from_slice(&queued[0].payload).unwrap();
        assert_eq!(line["reason"], "malformed");
    }

    #[test]
    fn a_qos0_sink_that_drops_keeps_the_newest_and_never_holds_permits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), 1).unwrap());
        let flow = Flow::new(8);
        let mut sink = unreachable_sink(&store, 2);
        sink.transport.spec.qos = 0;
        sink.transport.qos = QoS::AtMostOnce;
        sink.transport.spec.when_full = WhenFull::DropOldest;
        sink.outbox = Outbox::restore("out", &store, 2, WhenFull::DropOldest, false).unwrap();
        for n in 1..=5 {
            sink.accept(batch(&flow, n));
        }
        assert_eq!(flow.inflight(), 0, "no batch is held");
        assert!(sink.flush().unwrap().is_empty(), "QoS 0 stores nothing");
        let mut kept = Vec::new();
        while let Some(m) = sink.outbox.take() {
            kept.push(m.seq);
        }
        assert_eq!(kept, [3, 4]);
    }
}
