//! `asset_types.<t>.model`: a linear state-space model of the asset, which the
//! twin runs a Kalman filter on (`twin::model::filter`).
//!
//! Validated and resolved: a preset is expanded into its matrices here, so
//! everything past the loader sees one form. Matrices are row-major
//! `Vec<Vec<f64>>` (the topology layer has no numeric dependency); the twin
//! compiles them to `ndarray` arrays.

use crate::topology::diag::Pos;

/// A validated model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub pos: Pos,
    /// The preset it was written as (`level`, `level_rate`, `lag`), or `None`
    /// for the matrix form.
    pub preset: Option<Preset>,
    /// State names (identifiers, unique): rules read `est.<state>`.
    pub states: Vec<String>,
    pub transition: Transition,
    /// `n x n`: the continuous-time system matrix `A` (`dx/dt = A x + B u`),
    /// or the discrete transition `F` (`x' = F x + B u`, once per reading).
    pub a: Vec<Vec<f64>>,
    /// `n x m`: how the inputs drive the states (`m = inputs.len()`).
    pub b: Vec<Vec<f64>>,
    /// Inputs: indices into the asset type's `commands`; a command's desired
    /// value drives the model (0 until one is commanded).
    pub inputs: Vec<usize>,
    /// The sensors the model observes, one row of `H` each.
    pub observe: Vec<Observation>,
    /// `n x n`, symmetric, positive semi-definite: process noise, per second
    /// (spectral density) when continuous, per step when discrete.
    pub q: Vec<Vec<f64>>,
    /// Initial state; `None` (the presets, and the matrix form without `x0`):
    /// set from the first reading, as the smallest state that explains it.
    pub x0: Option<Vec<f64>>,
    /// `n x n`, symmetric, positive definite: initial covariance. Default
    /// (presets, and the matrix form without `P0`): diffuse, `1e6` times the
    /// largest measurement variance on the diagonal, so the first readings
    /// set the state whatever its scale.
    pub p0: Vec<Vec<f64>>,
    /// The model anomaly alert (normalised innovation squared against a
    /// chi-square bound), when declared.
    pub anomaly: Option<AnomalySpec>,
    /// A hash of the declaration (its resolved matrices and names): the
    /// model's version, named by every output the model influenced.
    /// FNV-1a over a fixed encoding (`topology/load/model_math.rs`), so the
    /// same on every build and platform; positions, comments and field order
    /// do not count. The preset is part of it: a preset and the same matrices
    /// written out have different versions (the filter steps a preset by its
    /// closed form).
    pub version: u64,
}

/// How the transition is stepped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// `dx/dt = A x + B u`, discretised over the event-time step between
    /// readings (irregular sampling): `F = exp(A dt)`, `Q_d` by Van Loan.
    Continuous,
    /// `x' = F x + B u` once per reading, whatever the time between them.
    Discrete,
}

/// The one-line forms of the common models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// One state, constant but for process noise (a random walk): states
    /// `[level]`, `dx/dt = w`.
    Level,
    /// Level and its rate of change per second (constant velocity): states
    /// `[level, rate]`, `d[level, rate]/dt = [rate, w]`.
    LevelRate,
    /// First-order lag towards `gain * command` with time constant `tau`:
    /// states `[value]`, `dx/dt = (gain * u - x) / tau + w`.
    Lag,
}

impl Preset {
    pub const ALL: [(&'static str, Preset); 3] = [
        ("level", Preset::Level),
        ("level_rate", Preset::LevelRate),
        ("lag", Preset::Lag),
    ];

    pub fn name(self) -> &'static str {
        Preset::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// One observed sensor: `y = h . x + v`, `v ~ N(0, r)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Sensor index within the asset type.
    pub sensor: usize,
    /// Row of `H` (length `n`).
    pub h: Vec<f64>,
    /// Measurement noise variance (default: the sensor's `noise` squared).
    pub r: f64,
}

/// The model anomaly alert: raised when the normalised innovation squared,
/// summed over the last `window` readings, leaves the chi-square interval
/// with `window` degrees of freedom at false-alarm rate `false_alarm`
/// (too large: the readings disagree with the model, e.g. a bias or a
/// drift; too small: they vary less than their noise, e.g. a stuck sensor).
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalySpec {
    pub pos: Pos,
    /// Probability that a fault-free window is flagged, in `(0, 0.5)`.
    pub false_alarm: f64,
    /// Readings per test window (degrees of freedom), >= 1.
    pub window: u32,
    /// The test must fail this long (event time) before the alert is raised.
    pub hold: std::time::Duration,
    pub severity: super::Severity,
}
