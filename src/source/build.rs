//! Sources built from their spec: what `engine::run` calls for every source
//! a run uses, so adding a source type touches this folder and the topology,
//! not the engine.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::decode::{AssetIndex, Decoder};
use super::file::{chunk_bytes, FileReader};
use super::kafka::KafkaSource;
use super::mqtt::{Inbox, MqttSource};
use super::simulator::Simulator;
use super::{DecodeJob, SourceError, SourcePosition};
use crate::cluster::member::Membership;
use crate::mqtt::Credentials;
use crate::pipeline::{DecodedChunk, FatalTx, Flow};
use crate::store::Store;
use crate::telemetry;
use crate::topology::{AckAfter, DecodeSpec, Pace, SourceKind, SourceSpec, Topology};

/// What every source of a run shares.
pub struct SourceContext<'a> {
    pub topo: &'a Topology,
    pub index: &'a Arc<AssetIndex>,
    pub flow: &'a Flow,
    /// Set when the node stops: sources finish their chunk and end.
    pub stop: &'a Arc<AtomicBool>,
    pub fatal: &'a FatalTx,
    /// Where sources that decode their own records send chunks.
    pub chunks: &'a Sender<DecodedChunk>,
    /// Where file sources hand raw chunks to the decoder pool.
    pub jobs: &'a Sender<DecodeJob>,
    /// The byte offset a replayed file has reached (the progress bar).
    pub progress: &'a Arc<AtomicU64>,
    /// The node's state directory (`{state_dir}` in paths).
    pub state_dir: &'a std::path::Path,
    /// The node's store (the MQTT sources' inbox).
    pub store: &'a Arc<Store>,
    /// Whether writes to the store fsync (`node.snapshot.sync`).
    pub sync: bool,
}

/// How this run uses one source.
pub struct SourceRun {
    /// The source's index in the topology.
    pub index: usize,
    /// The file a file source reads (its `path`, or the replayed file).
    pub file: Option<PathBuf>,
    /// Where it starts: the stored position.
    pub position: SourcePosition,
    pub pace: Pace,
    /// Records per second, when limited.
    pub rate: Option<f64>,
    /// MQTT and Kafka: told the chunk sequence up to which the state is
    /// durable (they acknowledge, or commit, only that).
    pub acks: Option<Receiver<u64>>,
    /// The cluster source: this node's side of the consumer group.
    pub membership: Option<Membership>,
}

/// A source ready to run on a thread of its own.
pub struct Built {
    /// The thread's name.
    pub thread: String,
    pub run: Box<dyn FnOnce() + Send>,
}

/// What a `run` (not a replay) of source `spec` reads from a file: a file
/// source's `path`, which it must have; other sources read no file.
pub fn file_of(spec: &SourceSpec) -> Result<Option<PathBuf>, SourceError> {
    match &spec.kind {
        SourceKind::File(f) => match &f.path {
            Some(p) => Ok(Some(p.clone())),
            None => Err(SourceError::Config {
                source_name: spec.name.clone(),
                problem: "has no `path`: give it one, or use `twinstream replay TOPO FILE`".into(),
            }),
        },
        SourceKind::Simulator(_) | SourceKind::Mqtt(_) | SourceKind::Kafka(_) => Ok(None),
    }
}

/// The pace a `run` reads source `spec` at (files may follow their
/// timestamps; everything else comes as it comes).
pub fn pace_of(spec: &SourceSpec) -> Pace {
    match &spec.kind {
        SourceKind::File(f) => f.pace,
        _ => Pace::Fast,
    }
}

/// Whether source `spec` resumes from a position stored with the
/// checkpoints: a file (byte offset, line), Kafka (offsets) and MQTT with
/// an inbox (the first inbox entry the state does not hold).
pub fn is_positioned(spec: &SourceSpec, reads_file: bool) -> bool {
    reads_file || matches!(spec.kind, SourceKind::Kafka(_)) || has_inbox(spec)
}

/// Whether source `spec` acknowledges from the write-ahead inbox (MQTT QoS
/// 1 with `ack_after: inbox`).
pub fn has_inbox(spec: &SourceSpec) -> bool {
    matches!(&spec.kind, SourceKind::Mqtt(m) if m.qos == 1 && m.ack_after == AckAfter::Inbox)
}

/// Warns when the store's inbox holds messages of MQTT source `name` from
/// `position` on: a run with `ack_after: inbox` acknowledged them and did
/// not stop cleanly, and a source without the inbox does not read them.
fn warn_unread_inbox(store: &Store, name: &str, position: u64) {
    match store.inbox_count(name, position) {
        Ok(0) => {}
        Ok(messages) => tracing::warn!(
            source = name,
            messages,
            "the MQTT inbox holds messages of this source that a run with `ack_after: inbox` acknowledged and did \
             not checkpoint (it did not stop cleanly); this source, without the inbox, does not read them: start once \
             with `ack_after: inbox` to apply them, stop cleanly, then switch"
        ),
        Err(e) => tracing::warn!(source = name, error = %e, "cannot read the MQTT inbox"),
    }
}

/// Whether source `spec` is told what is durable (MQTT acknowledges QoS 1
/// messages, Kafka stores offsets, only then).
pub fn acknowledges(spec: &SourceSpec) -> bool {
    matches!(spec.kind, SourceKind::Mqtt(_) | SourceKind::Kafka(_))
}

/// How often source `spec` needs a checkpoint at least, if it needs one:
/// MQTT QoS 1, every `ack_interval` (with `ack_after: checkpoint` its
/// messages are acknowledged by checkpoints; with the inbox, small frequent
/// checkpoints keep the latency tail down: BENCHMARKS.md "MQTT acks").
pub fn checkpoint_every(spec: &SourceSpec) -> Option<std::time::Duration> {
    match &spec.kind {
        SourceKind::Mqtt(m) if m.qos == 1 => Some(m.ack_interval),
        _ => None,
    }
}

fn decode_of(spec: &SourceSpec) -> Result<&DecodeSpec, SourceError> {
    spec.decode.as_ref().ok_or_else(|| SourceError::Config {
        source_name: spec.name.clone(),
        problem: "has no decode mapping".into(),
    })
}

fn acks(spec: &SourceSpec, run: &mut SourceRun) -> Receiver<u64> {
    run.acks.take().unwrap_or_else(|| {
        panic!(
            "source `{}`: every running MQTT or Kafka source has an ack channel",
            spec.name
        )
    })
}

/// Builds source `spec` for `run`.
pub fn build(spec: &SourceSpec, mut run: SourceRun, cx: &SourceContext<'_>) -> Result<Built, SourceError> {
    let i = run.index;
    let name: Arc<str> = spec.name.as_str().into();
    let (flow, stop, fatal) = (cx.flow.clone(), cx.stop.clone(), cx.fatal.clone());
    let thread = format!("source-{}", spec.name);
    let run: Box<dyn FnOnce() + Send> = match (&spec.kind, run.file.take()) {
        (SourceKind::Simulator(sim), _) => {
            let sim = Simulator::new(cx.topo, i as u16, sim, cx.index, cx.state_dir)?;
            let out = cx.chunks.clone();
            Box::new(move || sim.run(&flow, &out, &stop))
        }
        (SourceKind::Kafka(kafka), _) => {
            telemetry::health::register_source(&spec.name);
            let decoder = Arc::new(Decoder::new(
                cx.topo,
                i as u16,
                decode_of(spec)?,
                cx.index.clone(),
                None,
            ));
            let durable = acks(spec, &mut run);
            let secrets = crate::kafka::secrets(&kafka.conn).map_err(|(property, var)| SourceError::KafkaSecret {
                source_name: spec.name.clone(),
                property,
                var,
            })?;
            let source = KafkaSource {
                source: i as u16,
                name,
                spec: kafka.clone(),
                decoder,
                default_group: format!("twinstream-{}", cx.topo.node.name),
                secrets,
                start: run.position,
                fatal,
                cluster: run.membership,
            };
            let out = cx.chunks.clone();
            Box::new(move || source.run(&flow, &out, &durable, &stop))
        }
        (SourceKind::Mqtt(mqtt), _) => {
            telemetry::health::register_source(&spec.name);
            let decoder = Arc::new(Decoder::new(
                cx.topo,
                i as u16,
                decode_of(spec)?,
                cx.index.clone(),
                None,
            ));
            let durable = acks(spec, &mut run);
            let credentials = Credentials::read(&mqtt.conn).map_err(|error| SourceError::Credentials {
                source_name: spec.name.clone(),
                error,
            })?;
            if !has_inbox(spec) {
                warn_unread_inbox(cx.store, &spec.name, run.position.offset);
            }
            let inbox = has_inbox(spec).then(|| Inbox {
                store: cx.store.clone(),
                sync: cx.sync,
                durable: run.position.offset,
            });
            let source = MqttSource {
                inbox,
                credentials,
                source: i as u16,
                name,
                spec: mqtt.clone(),
                decoder,
                default_client_id: format!("twinstream-{}-{}", cx.topo.node.name, spec.name),
                fatal,
            };
            let out = cx.chunks.clone();
            Box::new(move || source.run(&flow, &out, &durable, &stop))
        }
        (_, Some(path)) => {
            let file_label: Arc<str> = path.display().to_string().into();
            let decoder = Arc::new(Decoder::new(
                cx.topo,
                i as u16,
                decode_of(spec)?,
                cx.index.clone(),
                Some(file_label),
            ));
            let reader = FileReader {
                source: i as u16,
                name,
                path,
                decoder,
                start: run.position,
                pace: run.pace,
                rate: run.rate,
                chunk_bytes: chunk_bytes(run.rate, run.pace),
            };
            let (jobs, progress) = (cx.jobs.clone(), cx.progress.clone());
            Box::new(move || {
                if let Err(e) = reader.run(&flow, &jobs, &stop, &progress) {
                    let _ = fatal.send(crate::pipeline::Fatal::new(e));
                }
            })
        }
        (SourceKind::File(_), None) => {
            return Err(SourceError::Config {
                source_name: spec.name.clone(),
                problem: "has no `path`: give it one, or use `twinstream replay TOPO FILE`".into(),
            })
        }
    };
    Ok(Built { thread, run })
}
