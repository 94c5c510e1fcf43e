//! Sinks built from their spec: what the hub calls for every sink of a
//! topology, so adding a sink type touches this folder and the topology, not
//! the engine.

use std::fs::{File, OpenOptions};
use std::io::BufWriter;

use crossbeam_channel::Receiver;

use super::lines::{SinkActor, Target};
use super::{kafka, mqtt, Cmd, SinkContext, SinkError};
use crate::mqtt::Credentials;
use crate::topology::{SinkKind, SinkSpec};
use crate::twin::schema::OutputMask;

/// A broker sink's run loop, for a thread of its own.
pub(super) type RunBroker = Box<dyn FnOnce(&Receiver<Cmd>) + Send>;

/// A sink ready to start.
pub(super) enum Built {
    /// A JSON-lines sink: an actor on the sinks' arbiter.
    Lines(Box<SinkActor>),
    /// A broker sink: runs on a thread of its own, fed by [`Cmd`]s.
    Broker(RunBroker),
}

/// Builds sink `spec`, which takes the outputs in `mask`.
pub(super) fn build(spec: &SinkSpec, mask: OutputMask, cx: &SinkContext<'_>) -> Result<Built, SinkError> {
    let target = match &spec.kind {
        SinkKind::Stdout => Target::Stdout(BufWriter::new(std::io::stdout())),
        SinkKind::File { path } => {
            let open = || -> std::io::Result<File> {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                OpenOptions::new().create(true).append(true).open(path)
            };
            let file = open().map_err(|e| SinkError {
                sink: spec.name.clone(),
                target: path.display().to_string(),
                message: e.to_string(),
            })?;
            Target::File {
                out: BufWriter::with_capacity(1 << 16, file),
                path: path.clone(),
            }
        }
        SinkKind::Mqtt(m) => {
            let credentials = Credentials::read(&m.conn).map_err(|e| SinkError {
                sink: spec.name.clone(),
                target: format!("mqtt {}:{}", m.conn.host, m.conn.port),
                message: e.to_string(),
            })?;
            let sink = mqtt::MqttSink::new(
                &spec.name,
                (**m).clone(),
                mask,
                cx.sources.clone(),
                format!("twinstream-{}-sink-{}", cx.node, spec.name),
                credentials,
                cx.store.clone(),
                cx.fatal.clone(),
            )?;
            return Ok(Built::Broker(Box::new(move |rx| sink.run(rx))));
        }
        SinkKind::Kafka(k) => {
            let secrets = crate::kafka::secrets(&k.conn).map_err(|(property, var)| SinkError {
                sink: spec.name.clone(),
                target: format!("kafka {}", k.conn.brokers),
                message: format!("environment variable `{var}` (for `{property}`) is not set"),
            })?;
            let sink = kafka::KafkaSink::new(
                &spec.name,
                (**k).clone(),
                mask,
                cx.sources.clone(),
                &format!("twinstream-{}-sink-{}", cx.node, spec.name),
                &secrets,
                cx.store.clone(),
                cx.fatal.clone(),
            )?
            .with_relays(cx.relays.clone());
            return Ok(Built::Broker(Box::new(move |rx| sink.run(rx))));
        }
    };
    Ok(Built::Lines(Box::new(SinkActor::new(
        spec.name.clone(),
        mask,
        cx.sources.clone(),
        target,
    ))))
}
