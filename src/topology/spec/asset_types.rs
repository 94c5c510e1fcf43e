//! Asset types: sensors (units, ranges, staleness, deadband, several
//! sources and how they are resolved) and the commands a type takes.

use super::RelationSpec;
use crate::topology::diag::Pos;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct AssetType {
    pub name: String,
    pub pos: Pos,
    pub sensors: Vec<SensorSpec>,
    pub relations: Vec<RelationSpec>,
    /// Bounded out-of-orderness of the per-asset watermark.
    pub out_of_orderness: Duration,
    /// No reading at all for this long (processing time) closes the asset's
    /// open windows, so a quiet asset never holds them open forever.
    pub idle_timeout: Option<Duration>,
    /// Actuation commands the type accepts, with how each is confirmed.
    pub commands: Vec<CommandDef>,
    /// The state-space model the twin filters its readings with.
    pub model: Option<super::ModelSpec>,
    /// The past the twin keeps (`history:`).
    pub history: Option<super::HistorySpec>,
}

/// An actuation command of an asset type: what acknowledges it, how long
/// it may stay pending, and what is sent when it fails.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandDef {
    pub name: String,
    pub pos: Pos,
    /// The sensor that reports the commanded state: a reading within
    /// `tolerance` of the desired value acknowledges the command.
    pub reported: Option<usize>,
    pub tolerance: f64,
    /// The sensor the device acknowledges on (its ack topic maps there): a
    /// reading equal to the command's `seq` acknowledges it, `-seq` rejects it.
    pub ack_sensor: Option<usize>,
    /// Pending longer than this (processing time): failed.
    pub timeout: Duration,
    /// The value sent when a command fails (times out).
    pub rollback: Option<f64>,
    /// Inclusive bounds of a value the API accepts.
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl AssetType {
    pub fn sensor_index(&self, name: &str) -> Option<usize> {
        self.sensors.iter().position(|s| s.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct SensorSpec {
    pub name: String,
    pub unit: String,
    /// Inclusive valid range; a value outside it is dead-lettered.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Nominal reporting period.
    pub expected_every: Option<Duration>,
    /// No reading for this long (processing time) makes the sensor stale.
    pub stale_after: Option<Duration>,
    /// The twin's estimate moves only when a reading differs from it by more
    /// than this (state reconciliation); zero follows every reading.
    pub deadband: f64,
    /// Standard deviation of the sensor's measurement noise: a model that
    /// observes the sensor takes its variance as the measurement noise.
    pub noise: Option<f64>,
    /// Sources that report this sensor, in priority order; empty: any source,
    /// the latest reading wins.
    pub sources: Vec<SensorSource>,
    pub resolve: Resolve,
    /// Sources disagreeing by more than `tolerance` raise a `discrepancy`
    /// alert, cleared once they agree within `clear_tolerance`.
    pub tolerance: Option<f64>,
    pub clear_tolerance: f64,
    /// A derived sensor: computed by the twin, never reported by a source.
    pub derive: Option<Derive>,
}

/// How a derived sensor is computed from the twin's other values (sensors
/// declared before it, and the model's estimates).
#[derive(Debug, Clone)]
pub enum Derive {
    /// `expr:`, recomputed whenever a value it reads changes.
    Expr(crate::topology::expr::Num<super::Slot>),
    /// `integral:` of a sensor over event time, per `per` (each reading's
    /// value held until the next).
    Integral { sensor: usize, per: Duration },
    /// `rate:` of change of a sensor per second, between its readings.
    Rate { sensor: usize },
}

/// One source of a multi-source sensor.
#[derive(Debug, Clone)]
pub struct SensorSource {
    /// Index into [`Topology::sources`](super::Topology::sources).
    pub source: usize,
    pub name: String,
    pub pos: Pos,
    /// Trust score in `[0, 1]` (policy `confidence`).
    pub trust: f64,
    /// A measurement (`measured`) outranks a commanded or expected value
    /// (`commanded`) under policy `confidence`.
    pub measured: bool,
}

/// How the twin picks a sensor's value when several sources report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolve {
    /// The reading with the newest event time.
    Latest,
    /// The first source in declaration order that is not stale.
    Priority,
    /// Measured before commanded, then the highest trust, then the newest.
    Confidence,
    /// The median of the sources that are not stale.
    Median,
}

impl Resolve {
    pub const ALL: [(&'static str, Resolve); 4] = [
        ("latest", Resolve::Latest),
        ("priority", Resolve::Priority),
        ("confidence", Resolve::Confidence),
        ("median", Resolve::Median),
    ];
}
