//! The broker sink: one driver for the MQTT and Kafka sinks over a
//! [`Transport`]. A thread of its own takes the hub's [`Cmd`]s: it renders
//! the batches it receives into its [`Outbox`] (keeping a batch, and its
//! flow permit, while over the bound), lets the transport hand queued
//! messages over and apply what the broker reports, answers the
//! checkpoint's flushes with the outbox's changes, and on close keeps
//! sending what it holds for a few seconds, then records what is left.
//!
//! The transport ([`super::mqtt`], [`super::kafka`]) is what differs
//! between brokers: how a message is keyed and headed, how it is sent
//! (publish, produce), how acknowledgements and connection events arrive,
//! reconnects and backoff, and where its errors say the sink writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::outbox::{Outbox, Timing};
use super::{json, Cmd, OutboxOp, SinkError};
use crate::pipeline::{DeadLetter, OutputBatch};
use crate::pipeline::{Fatal, FatalTx};
use crate::store::Store;
use crate::topology::{OutputKind, OutputTopic};
use crate::twin::schema::OutputMask;

/// How long a closing sink keeps sending what it holds and waits for the
/// broker to acknowledge it.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A record's headers (Kafka).
pub(super) type Headers = Vec<(String, Vec<u8>)>;

/// What one broker does differently: the sink's driver ([`BrokerSink`])
/// calls it from its thread, handing it the outbox.
pub(super) trait Transport {
    /// What the broker's client reports to the sink thread:
    /// acknowledgements (MQTT PUBACKs, Kafka delivery reports) and
    /// connection events.
    type Event;
    /// Which characters a value put in a topic keeps (the others become
    /// `_`).
    const TOPIC_CHAR: fn(char) -> bool;
    /// Whether a closing sink stops the transport before it records what is
    /// left in the store (Kafka) or after (MQTT).
    const STOP_BEFORE_SAVE: bool;

    /// The sink's topic template.
    fn topic(&self) -> &OutputTopic;
    /// Where the sink writes, as its errors say (`mqtt host:port`).
    fn target(&self) -> String;
    /// The key and headers of the message of an output or event of `asset`
    /// (`kind`: its `{kind}` label; `again`: an event its source may have
    /// delivered before).
    fn output(&self, asset: &str, kind: &'static str, again: bool) -> (Option<Vec<u8>>, Headers);
    /// Queues what `batch` relays to followers on other nodes (a sink that
    /// takes `relays`); `topic` is a buffer to render topics in.
    fn relays(&self, _batch: &OutputBatch, _asset: &str, _asset_type: &str, _topic: &mut String, _outbox: &mut Outbox) {
    }
    /// The key, headers and payload of a dead letter's message (`line`: a
    /// buffer to render it in).
    fn dead_letter(
        &self,
        batch: &OutputBatch,
        d: &DeadLetter,
        line: &mut Vec<u8>,
    ) -> (Option<Vec<u8>>, Headers, Vec<u8>);
    /// Connects when due and hands queued messages to the client (none
    /// once the sink has `failed`). An error is a failure retrying cannot
    /// fix.
    fn send(&mut self, outbox: &mut Outbox, failed: bool) -> Result<(), String>;
    /// What to wait for events on now (none without a connection).
    fn events(&self) -> Option<Receiver<Self::Event>>;
    /// Applies an event to the outbox. An error is a failure retrying
    /// cannot fix.
    fn on_event(&mut self, outbox: &mut Outbox, event: Self::Event) -> Result<(), String>;
    /// The channel of [`Transport::events`] ended; whether a closing sink
    /// keeps waiting for acknowledgements.
    fn ended(&mut self, outbox: &mut Outbox) -> bool;
    /// The sink failed: what the transport lets go (MQTT: its connection;
    /// Kafka: nothing, its producer delivers what it was handed).
    fn halt(&mut self);
    /// The sink closes: the transport ends.
    fn stop(&mut self);
}

/// A broker sink: its outbox, driven over transport `T`.
pub(super) struct BrokerSink<T: Transport> {
    name: Arc<str>,
    pub(super) transport: T,
    mask: OutputMask,
    /// Source index -> name (events name their source).
    sources: Arc<[Arc<str>]>,
    store: Arc<Store>,
    fatal: FatalTx,
    pub(super) outbox: Outbox,
    failed: Option<SinkError>,
    /// The topic last rendered.
    pub(super) topic: String,
    line: Vec<u8>,
}

impl<T: Transport> BrokerSink<T> {
    /// A sink `name` that starts with `outbox` (restored from the store).
    pub(super) fn over(
        name: &str,
        transport: T,
        outbox: Outbox,
        mask: OutputMask,
        sources: Arc<[Arc<str>]>,
        store: Arc<Store>,
        fatal: FatalTx,
    ) -> BrokerSink<T> {
        BrokerSink {
            name: name.into(),
            transport,
            mask,
            sources,
            store,
            fatal,
            outbox,
            failed: None,
            topic: String::new(),
            line: Vec::with_capacity(512),
        }
    }

    pub(super) fn run(mut self, cmds: &Receiver<Cmd>) {
        loop {
            self.step();
            let events = self.transport.events().unwrap_or_else(crossbeam_channel::never);
            crossbeam_channel::select! {
                recv(cmds) -> cmd => match cmd {
                    Ok(Cmd::Deliver(batch)) => self.accept(batch),
                    Ok(Cmd::Flush(reply)) => {
                        let _ = reply.send(self.flush());
                    }
                    Ok(Cmd::Close) | Err(_) => break,
                },
                recv(events) -> event => match event {
                    Ok(event) => self.on_event(event),
                    Err(_) => {
                        self.transport.ended(&mut self.outbox);
                    }
                },
                default(Duration::from_millis(20)) => {}
            }
        }
        self.close();
    }

    /// Lets the transport connect when due and hand queued messages over;
    /// releases held batches.
    fn step(&mut self) {
        if let Err(message) = self.transport.send(&mut self.outbox, self.failed.is_some()) {
            self.fail(message);
        }
        self.outbox.tick();
    }

    fn on_event(&mut self, event: T::Event) {
        if let Err(message) = self.transport.on_event(&mut self.outbox, event) {
            self.fail(message);
        }
    }

    /// A failure retrying cannot fix: the node stops.
    fn fail(&mut self, message: String) {
        self.transport.halt();
        let err = SinkError {
            sink: self.name.to_string(),
            target: self.transport.target(),
            message,
        };
        fail_once(&mut self.failed, &self.fatal, err);
    }

    /// Renders the outputs of `batch` this sink takes into the queue; keeps
    /// the batch (and its flow permit) while over the bound.
    pub(super) fn accept(&mut self, batch: Arc<OutputBatch>) {
        if self.failed.is_some() {
            return;
        }
        let asset = batch.asset.as_deref().unwrap_or("");
        let asset_type = batch.model.as_deref().map_or("", |m| &*m.name);
        let (transport, queue, topic) = (&self.transport, &mut self.outbox, &mut self.topic);
        each_output(
            &batch,
            self.mask,
            &self.sources,
            &mut self.line,
            |kind, name, line, again, alert_ms| {
                transport
                    .topic()
                    .render(topic, asset, asset_type, kind, name, T::TOPIC_CHAR);
                let (key, headers) = transport.output(asset, kind, again);
                let timing = Timing {
                    produced: Some(batch.produced),
                    alert_ms,
                };
                queue.push(topic.clone(), key, headers, line.to_vec(), timing);
            },
        );
        if self.mask.has(OutputKind::Relays) {
            self.transport
                .relays(&batch, asset, asset_type, &mut self.topic, &mut self.outbox);
        }
        if self.mask.has(OutputKind::DeadLetters) {
            for d in &batch.dead_letters {
                self.transport.topic().render(
                    &mut self.topic,
                    asset,
                    "",
                    "dead_letter",
                    d.reason.code(),
                    T::TOPIC_CHAR,
                );
                let (key, headers, payload) = self.transport.dead_letter(&batch, d, &mut self.line);
                let timing = Timing {
                    produced: Some(batch.produced),
                    alert_ms: None,
                };
                self.outbox.push(self.topic.clone(), key, headers, payload, timing);
            }
        }
        self.outbox.admit(batch);
    }

    /// The outbox changes for the checkpoint being committed (durable
    /// sinks: MQTT QoS 1, Kafka).
    pub(super) fn flush(&mut self) -> Result<Vec<OutboxOp>, SinkError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        Ok(self.outbox.flush())
    }

    /// Keeps sending for up to [`CLOSE_WAIT`] while the broker has not
    /// acknowledged everything held, then records in the store what was
    /// acknowledged and (durable sinks) what is still held, so the next run
    /// sends exactly what is left.
    fn close(mut self) {
        let until = Instant::now() + CLOSE_WAIT;
        while self.failed.is_none() && self.outbox.held() > 0 && Instant::now() < until {
            self.step();
            let Some(events) = self.transport.events() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            match events.recv_timeout(Duration::from_millis(20)) {
                Ok(event) => self.on_event(event),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    if !self.transport.ended(&mut self.outbox) {
                        break;
                    }
                }
            }
        }
        if T::STOP_BEFORE_SAVE {
            self.transport.stop();
        }
        if self.failed.is_none() {
            self.outbox.save(&self.store);
        }
        if !T::STOP_BEFORE_SAVE {
            self.transport.stop();
        }
    }
}

/// Calls `f(kind, name, line, redelivered, alert_ms)` for each output of
/// `batch` that `mask` takes, then each of its events when the mask takes
/// `events`: its `{kind}` label, its `{name}` (an event's: its sensor), its
/// JSON line without the newline (rendered into `line`), whether it is an
/// event its source may have delivered before, and for an alert transition
/// the event time that caused it.
pub(super) fn each_output(
    batch: &OutputBatch,
    mask: OutputMask,
    sources: &[Arc<str>],
    line: &mut Vec<u8>,
    mut f: impl FnMut(&'static str, &str, &[u8], bool, Option<i64>),
) {
    let trim = |line: &mut Vec<u8>| {
        if line.last() == Some(&b'\n') {
            line.pop();
        }
    };
    for o in &batch.outputs {
        let Some(kind) = o.kind().filter(|k| mask.has(*k)) else {
            continue;
        };
        line.clear();
        json::render_output(line, batch, o);
        trim(line);
        if !line.is_empty() {
            f(
                super::kind_label(kind),
                json::output_name(batch, o),
                line,
                false,
                o.alert_ts(),
            );
        }
    }
    if !mask.has(OutputKind::Events) {
        return;
    }
    let Some(m) = batch.model.as_deref() else { return };
    for e in &batch.events {
        line.clear();
        json::render_event(line, batch, e, sources);
        trim(line);
        f(
            super::kind_label(OutputKind::Events),
            &m.sensors[e.sensor as usize],
            line,
            e.redelivered,
            None,
        );
    }
}

/// Records a failure retrying cannot fix, once: the sink refuses every later
/// flush (so no checkpoint commits past an output that was not delivered)
/// and the node stops, reporting it as the reason.
pub(super) fn fail_once(failed: &mut Option<SinkError>, fatal: &FatalTx, err: SinkError) {
    if failed.is_none() {
        if fatal.send(Fatal::new(err.clone())).is_err() {
            tracing::error!(sink = %err.sink, error = %err, "sink failed");
        }
        *failed = Some(err);
    }
}
