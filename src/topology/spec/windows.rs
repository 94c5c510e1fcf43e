//! Windows and joins: what a window aggregates and how rules read it.

use crate::topology::diag::Pos;
use serde::Serialize;
use std::time::Duration;

/// A windowed join of two readings of one asset: a sensor with another
/// sensor, or with a sensor of a related asset.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    pub name: String,
    pub pos: Pos,
    /// Pair readings whose event times are at most this far apart.
    pub within: Duration,
    /// Per asset type index: (left sensor, right side).
    pub coverage: Vec<(usize, usize, JoinSide)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinSide {
    /// A sensor of the same asset.
    Sensor(usize),
    /// `relation.sensor`: a sensor of the asset the relation points to.
    Related { relation: usize, sensor: usize },
}

impl JoinSpec {
    pub fn sides_for(&self, asset_type: usize) -> Option<(usize, JoinSide)> {
        self.coverage
            .iter()
            .find(|(t, _, _)| *t == asset_type)
            .map(|(_, l, r)| (*l, *r))
    }
}

#[derive(Debug, Clone)]
pub struct WindowSpec {
    pub name: String,
    pub pos: Pos,
    pub size: Duration,
    /// Equal to `size` for tumbling windows.
    pub slide: Duration,
    /// Per asset type index: the sensors (indices) this window covers.
    /// Types the window does not apply to are absent.
    pub coverage: Vec<(usize, Vec<usize>)>,
}

impl WindowSpec {
    pub fn is_tumbling(&self) -> bool {
        self.size == self.slide
    }

    pub fn sensors_for(&self, asset_type: usize) -> Option<&[usize]> {
        self.coverage
            .iter()
            .find(|(t, _)| *t == asset_type)
            .map(|(_, s)| s.as_slice())
    }
}

/// What a name in a rule expression refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The latest value of a sensor (by sensor index of the asset type).
    Latest { sensor: u16 },
    /// An aggregate of the most recently closed window of a sensor.
    Window { window: u16, sensor: u16, agg: Agg },
    /// 1 while the sensor is stale, else 0.
    Stale { sensor: u16 },
    /// The latest value of a related asset's sensor.
    Related { relation: u16, sensor: u16 },
    /// A side (0 = left, 1 = right) of a join's latest joined pair.
    Join { join: u16, side: u8 },
    /// What the asset type's model estimates.
    Model(ModelSlot),
}

/// What rules read of the model: `est.<state>`, `est.<state>.std`,
/// `residual.<sensor>`, `nis`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelSlot {
    /// The estimate of a state (index into the model's states).
    Est { state: u16 },
    /// Its standard deviation.
    EstStd { state: u16 },
    /// The innovation of a sensor's latest reading (sensor index of the type).
    Residual { sensor: u16 },
    /// The normalised innovation squared, summed over the anomaly window.
    Nis,
    /// A sensor's part of that sum (reported with the anomaly alert; rules
    /// cannot name it).
    NisPart { sensor: u16 },
    /// The bias test: the largest over observed sensors of the window's
    /// normalised innovations summed, over the square root of their count
    /// (a standard normal while the model fits; the anomaly alert reads it,
    /// rules cannot name it).
    Bias,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Agg {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    /// The reading with the greatest event time (ties: the later arrival).
    Last,
    /// Population standard deviation.
    Stddev,
}

impl Agg {
    pub const ALL: [(&'static str, Agg); 7] = [
        ("count", Agg::Count),
        ("sum", Agg::Sum),
        ("min", Agg::Min),
        ("max", Agg::Max),
        ("avg", Agg::Avg),
        ("last", Agg::Last),
        ("stddev", Agg::Stddev),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, a)| *a == self).map_or("?", |(n, _)| n)
    }
}
