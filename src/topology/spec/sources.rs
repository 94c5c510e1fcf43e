//! Sources: files, the simulator, MQTT and Kafka; how a record decodes.

use super::{KafkaSpec, MqttSpec};
use crate::topology::diag::Pos;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub name: String,
    pub pos: Pos,
    pub kind: SourceKind,
    /// How raw records become events; absent for sources that produce events
    /// directly (the simulator).
    pub decode: Option<DecodeSpec>,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    File(FileSourceSpec),
    Simulator(SimulatorSpec),
    Mqtt(MqttSpec),
    Kafka(KafkaSpec),
}

impl SourceKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceKind::File(_) => "file",
            SourceKind::Simulator(_) => "simulator",
            SourceKind::Mqtt(_) => "mqtt",
            SourceKind::Kafka(_) => "kafka",
        }
    }
}

/// The JSON key under which an MQTT source hands the fields of a message's
/// topic to the decoder (not a key a payload can use by accident).
pub const TOPIC_KEY: &str = "\u{1}topic";

/// A topic template: literal levels, `{field}` levels and `+` (any level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    pub levels: Vec<TopicLevel>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicLevel {
    Literal(String),
    Field(String),
    Any,
}

impl TopicTemplate {
    pub const FIELDS: [&'static str; 2] = ["asset", "sensor"];

    /// A template whose only field is the asset (a Kafka record's key).
    pub fn asset_only() -> TopicTemplate {
        TopicTemplate {
            levels: vec![TopicLevel::Field("asset".into())],
        }
    }

    pub fn parse(text: &str) -> Result<TopicTemplate, String> {
        let mut levels = Vec::new();
        for level in text.split('/') {
            levels.push(match level {
                "+" => TopicLevel::Any,
                l if l.starts_with('{') && l.ends_with('}') => {
                    let name = &l[1..l.len() - 1];
                    if !Self::FIELDS.contains(&name) {
                        return Err(format!(
                            "`{{{name}}}`: a topic level can name `{{asset}}` or `{{sensor}}`"
                        ));
                    }
                    if levels.contains(&TopicLevel::Field(name.to_string())) {
                        return Err(format!("`{{{name}}}` appears twice"));
                    }
                    TopicLevel::Field(name.to_string())
                }
                l if l.contains(['{', '}', '#', '+']) => {
                    return Err(format!("level `{l}`: use a name, `+` or `{{asset}}`/`{{sensor}}`"))
                }
                l => TopicLevel::Literal(l.to_string()),
            });
        }
        Ok(TopicTemplate { levels })
    }

    pub fn has(&self, field: &str) -> bool {
        self.levels
            .iter()
            .any(|l| matches!(l, TopicLevel::Field(f) if f == field))
    }

    /// The fields `topic` gives, or `None` when it does not fit the template.
    pub fn extract<'t>(&self, topic: &'t str) -> Option<Vec<(&str, &'t str)>> {
        let parts: Vec<&str> = topic.split('/').collect();
        if parts.len() != self.levels.len() {
            return None;
        }
        let mut out = Vec::new();
        for (level, part) in self.levels.iter().zip(parts) {
            match level {
                TopicLevel::Literal(l) if l != part => return None,
                TopicLevel::Field(f) => out.push((f.as_str(), part)),
                _ => {}
            }
        }
        Some(out)
    }
}

#[derive(Debug, Clone)]
pub struct FileSourceSpec {
    /// The JSON-lines file; `replay` supplies it on the command line instead.
    pub path: Option<PathBuf>,
    pub pace: Pace,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as possible.
    Fast,
    /// At the pace recorded in the event timestamps, times `speed`.
    Recorded { speed: f64 },
}

#[derive(Debug, Clone)]
pub struct SimulatorSpec {
    pub asset_type: usize,
    /// Asset ids are `prefix` + a zero-padded number `0..count`.
    pub prefix: String,
    pub count: u32,
    pub digits: usize,
    /// Sampling period per sensor; defaults to the sensor's `expected_every`.
    pub every: Option<Duration>,
    pub seed: u64,
    /// Event-time jitter (events arrive out of order by up to this much).
    pub jitter: Duration,
    /// Probability per sample of a spike (a short excursion to 80-100% of range).
    pub spike_prob: f64,
    /// Probability per sample that a sensor goes silent for a while.
    pub gap_prob: f64,
    /// Fraction of assets whose first sensor drifts upward over time.
    pub drift_frac: f64,
    /// The sensors it reports (indices); empty: all. A second simulator with
    /// the same seed and a subset plays a second source of those sensors:
    /// same baselines, its own noise, spikes and gaps.
    pub sensors: Vec<usize>,
    /// Readings of the sensors the type's model observes come from the
    /// model (`source::simulator::truth`).
    pub model: Option<SimModelSpec>,
}

/// `model:` of a simulator source: the true state moves by the asset
/// type's model, sensors read it with their noise, and faults are injected.
#[derive(Debug, Clone, PartialEq)]
pub struct SimModelSpec {
    /// The kinds injected, in turn (empty: none).
    pub faults: Vec<SimFault>,
    /// Mean time between the faults of one asset.
    pub fault_every: Duration,
    /// How long a fault lasts.
    pub fault_for: Duration,
    /// Bias step, or the drift reached at the fault's end, in standard
    /// deviations of the sensor's noise.
    pub fault_size: f64,
    /// Where to write the true state alongside each reading (JSON lines).
    pub truth: Option<std::path::PathBuf>,
}

/// A sensor fault the simulator injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimFault {
    /// The sensor repeats one reading.
    Stuck,
    /// A step offset.
    Bias,
    /// An offset growing linearly.
    Drift,
}

impl SimFault {
    pub const NAMES: [&'static str; 3] = ["stuck", "bias", "drift"];

    pub fn parse(s: &str) -> Option<SimFault> {
        match s {
            "stuck" => Some(SimFault::Stuck),
            "bias" => Some(SimFault::Bias),
            "drift" => Some(SimFault::Drift),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Debug, Clone)]
pub struct DecodeSpec {
    /// Name and version of the telemetry contract this mapping decodes.
    pub contract: Option<String>,
    /// Where a record states its contract; a record that states another one
    /// (or none) is dead-lettered as `unknown_contract`.
    pub contract_field: Option<FieldPath>,
    pub asset: FieldPath,
    /// Narrow records: one reading per record, sensor name in a field.
    pub sensor: Option<FieldPath>,
    pub value: Option<FieldPath>,
    /// Wide records: several readings per record, one field per sensor.
    pub values: Vec<(String, FieldPath)>,
    pub ts: FieldPath,
    pub ts_format: TsFormat,
    /// Unit conversion into the sensor's declared unit: `raw * scale + offset`.
    pub convert: Vec<Convert>,
}

#[derive(Debug, Clone)]
pub struct Convert {
    pub sensor: String,
    pub scale: f64,
    pub offset: f64,
}

/// A dotted path into a JSON object, e.g. `payload.motor.current`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    pub fn parse(text: &str) -> Result<FieldPath, String> {
        let segs: Vec<String> = text.split('.').map(str::to_string).collect();
        if segs.iter().any(String::is_empty) {
            return Err(format!(
                "`{text}` is not a field path; expected names separated by dots, like `payload.temp`"
            ));
        }
        Ok(FieldPath(segs))
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsFormat {
    EpochMillis,
    EpochSeconds,
    EpochMicros,
    Rfc3339,
}
