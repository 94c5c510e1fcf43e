//! The twin's model of its asset: a linear Kalman filter over the state-space
//! model of its type (`asset_types.<t>.model`, [`ModelSpec`]).
//!
//! The filter estimates the states x(t) that sensors only see through noise
//! (y = h . x + v). Each reading of an observed sensor first *predicts* the
//! state to the reading's event time (the step is the event time elapsed, so
//! irregular sampling is handled), then *updates* with that one reading (one
//! row of H: sensors reporting separately update separately). A reading
//! older than the filter's time is not rewound into it: it is counted
//! ([`FilterState::out_of_order`]) and reaches latest values and windows as
//! any reading does.
//!
//! Numerics: the covariance update is in Joseph form,
//! `P = (I - k h) P (I - k h)' + k r k'`, which stays symmetric and positive
//! semi-definite under rounding, and P is re-symmetrised after every step.
//! Updates are scalar (one sensor at a time), so nothing is inverted.
//!
//! Discretising `dx/dt = A x + B u + w` over a step `dt`: the presets have
//! closed forms; the matrix form takes `F = exp(A dt)`, the input gain and
//! `Q_d` from one matrix exponential (Van Loan), memoised per worker thread
//! by model and step (readings arrive at a few distinct steps).
//!
//! A non-linear model would add a variant to [`Dynamics`] with its own
//! predict (an extended filter: the Jacobian of f at the estimate in place
//! of F; or sigma points for an unscented one) and keep this update, which
//! only needs the observation row at the estimate.

use std::sync::Arc;

use ndarray::{s, Array1, Array2};
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

use super::NO_TS;
use crate::topology::expr::Cond;
use crate::topology::{AssetType, ModelSlot, ModelSpec, ModelTransition, Preset, Severity};
use crate::twin::schema::{LocalSlot, RuleDef, RuleKind, MODEL_ANOMALY_ALERT};

/// The built-in `model:anomaly` alert as a rule: raised when the NIS
/// window sum leaves its chi-square interval or the bias test its normal
/// bound, cleared (hysteresis) once both are back inside the narrower bounds
/// of a ten times larger false-alarm rate.
pub fn anomaly_rule(def: &AnomalyDef, severity: Severity, model: &ModelSpec, ty: &AssetType) -> RuleDef {
    use crate::topology::expr::{CmpOp, Num};
    let var = |slot| Num::Var(LocalSlot::Model(slot));
    let cmp = |slot, op, v: f64| Box::new(Cond::Cmp(op, var(slot), Num::Const(v)));
    let mut inputs: Vec<(Arc<str>, LocalSlot)> = vec![
        ("nis".into(), LocalSlot::Model(ModelSlot::Nis)),
        ("bias".into(), LocalSlot::Model(ModelSlot::Bias)),
    ];
    for o in &model.observe {
        inputs.push((
            format!("nis.{}", ty.sensors[o.sensor].name).into(),
            LocalSlot::Model(ModelSlot::NisPart {
                sensor: o.sensor as u16,
            }),
        ));
    }
    let nis_out = Cond::Or(
        cmp(ModelSlot::Nis, CmpOp::Lt, def.low),
        cmp(ModelSlot::Nis, CmpOp::Gt, def.high),
    );
    let nis_in = Cond::And(
        cmp(ModelSlot::Nis, CmpOp::Ge, def.clear_low),
        cmp(ModelSlot::Nis, CmpOp::Le, def.clear_high),
    );
    RuleDef {
        name: MODEL_ANOMALY_ALERT.into(),
        severity,
        message: Some(
            format!(
                "the readings do not fit the model (over {} readings: nis outside [{:.3}, {:.3}], or bias above {:.3}): \
                 nis.<sensor> is each sensor's part",
                def.window, def.low, def.high, def.bias_high
            )
            .into(),
        ),
        kind: RuleKind::Expr {
            cond: Cond::Or(Box::new(nis_out), cmp(ModelSlot::Bias, CmpOp::Gt, def.bias_high)),
            clear: Some(Cond::And(
                Box::new(nis_in),
                cmp(ModelSlot::Bias, CmpOp::Le, def.clear_bias),
            )),
            hold_ms: def.hold_ms,
        },
        inputs,
        command: None,
        tracked: None,
    }
}

/// The compiled model of one asset type.
#[derive(Debug, Clone)]
pub struct FilterModel {
    /// Hash of the declaration: named by every output the model influenced.
    pub version: u64,
    pub states: Vec<Arc<str>>,
    pub dynamics: Dynamics,
    /// Commands whose desired values are the inputs `u` (indices into the
    /// type's commands).
    pub inputs: Vec<u16>,
    pub observations: Vec<ObservationDef>,
    /// sensor -> index into `observations`.
    pub by_sensor: Vec<Option<u16>>,
    pub x0: Option<Array1<f64>>,
    pub p0: Array2<f64>,
    pub anomaly: Option<AnomalyDef>,
}

/// How the state moves between readings.
#[derive(Debug, Clone)]
pub enum Dynamics {
    /// `x' = x + w`, `Q_d = q dt`.
    Level { q: f64 },
    /// `[level, rate]' = [level + rate dt, rate]`, white-noise acceleration
    /// with spectral density `q`.
    LevelRate { q: f64 },
    /// `x' = a x + (1 - a) gain u`, `a = exp(-dt / tau)`; with no commanded
    /// value yet the state holds (`a = 1`).
    Lag { tau_s: f64, gain: f64, q: f64 },
    /// `dx/dt = A x + B u + w`, `E[w w'] = Q` per second.
    Continuous {
        a: Array2<f64>,
        b: Array2<f64>,
        q: Array2<f64>,
    },
    /// `x' = F x + B u + w` once per reading, `E[w w'] = Q` per step.
    Discrete {
        f: Array2<f64>,
        b: Array2<f64>,
        q: Array2<f64>,
    },
}

#[derive(Debug, Clone)]
pub struct ObservationDef {
    pub sensor: u16,
    pub h: Array1<f64>,
    /// Measurement noise variance.
    pub r: f64,
}

/// The model anomaly test, compiled: two tests over the window, each at
/// half the declared false-alarm rate.
#[derive(Debug, Clone)]
pub struct AnomalyDef {
    /// Readings per test window (the chi-square's degrees of freedom).
    pub window: u32,
    /// The spread test: the two-sided chi-square interval of the window's
    /// normalised innovations squared, summed.
    pub low: f64,
    pub high: f64,
    /// The bias test: the bound of a standard normal ([`FilterState::bias_z`]),
    /// two-sided. A sensor drifting slower than the filter follows moves
    /// the innovations' mean long before it moves their spread.
    pub bias_high: f64,
    /// The alert clears inside these narrower bounds (ten times the
    /// false-alarm rate, at most the quartiles): hysteresis.
    pub clear_low: f64,
    pub clear_high: f64,
    pub clear_bias: f64,
    pub hold_ms: i64,
}

impl AnomalyDef {
    /// The bounds a fault-free window stays inside with probability
    /// `1 - false_alarm` (both tests together).
    pub fn new(window: u32, false_alarm: f64, hold_ms: i64) -> AnomalyDef {
        let chi = ChiSquared::new(window as f64).expect("validated: window >= 1");
        let normal = Normal::standard();
        let each = false_alarm / 2.0;
        let clear = (each * 10.0).min(0.5);
        AnomalyDef {
            window,
            low: chi.inverse_cdf(each / 2.0),
            high: chi.inverse_cdf(1.0 - each / 2.0),
            bias_high: normal.inverse_cdf(1.0 - each / 2.0),
            clear_low: chi.inverse_cdf(clear / 2.0),
            clear_high: chi.inverse_cdf(1.0 - clear / 2.0),
            clear_bias: normal.inverse_cdf(1.0 - clear / 2.0),
            hold_ms,
        }
    }
}

fn matrix(rows: &[Vec<f64>], cols: usize) -> Array2<f64> {
    let mut m = Array2::zeros((rows.len(), cols));
    for (i, row) in rows.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            m[[i, j]] = *v;
        }
    }
    m
}

impl FilterModel {
    /// Compiles a validated model of asset type `ty`.
    pub fn build(spec: &ModelSpec, ty: &AssetType) -> FilterModel {
        let n = spec.states.len();
        let m = spec.inputs.len();
        let a = matrix(&spec.a, n);
        let b = matrix(&spec.b, m);
        let q = matrix(&spec.q, n);
        let dynamics = match (spec.preset, spec.transition) {
            (Some(Preset::Level), _) => Dynamics::Level { q: q[[0, 0]] },
            (Some(Preset::LevelRate), _) => Dynamics::LevelRate { q: q[[1, 1]] },
            (Some(Preset::Lag), _) => {
                let tau_s = -1.0 / a[[0, 0]];
                Dynamics::Lag {
                    tau_s,
                    gain: b[[0, 0]] * tau_s,
                    q: q[[0, 0]],
                }
            }
            (None, ModelTransition::Continuous) => Dynamics::Continuous { a, b, q },
            (None, ModelTransition::Discrete) => Dynamics::Discrete { f: a, b, q },
        };
        let mut by_sensor = vec![None; ty.sensors.len()];
        let observations = spec
            .observe
            .iter()
            .enumerate()
            .map(|(i, o)| {
                by_sensor[o.sensor] = Some(i as u16);
                ObservationDef {
                    sensor: o.sensor as u16,
                    h: Array1::from(o.h.clone()),
                    r: o.r,
                }
            })
            .collect();
        FilterModel {
            version: spec.version,
            states: spec.states.iter().map(|s| s.as_str().into()).collect(),
            dynamics,
            inputs: spec.inputs.iter().map(|&i| i as u16).collect(),
            observations,
            by_sensor,
            x0: spec.x0.clone().map(Array1::from),
            p0: matrix(&spec.p0, n),
            anomaly: spec
                .anomaly
                .as_ref()
                .map(|a| AnomalyDef::new(a.window, a.false_alarm, a.hold.as_millis() as i64)),
        }
    }

    pub fn n(&self) -> usize {
        self.states.len()
    }
}

/// What the filter last made of one observed sensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObservationState {
    /// Event time of the sensor's last reading the filter took (`NO_TS`:
    /// none yet).
    pub ts: i64,
    /// The innovation: the reading minus the predicted observation.
    pub residual: f64,
    /// Variance of the innovation (`h P h' + r` before the update).
    pub residual_var: f64,
}

impl ObservationState {
    pub const NONE: ObservationState = ObservationState {
        ts: NO_TS,
        residual: f64::NAN,
        residual_var: f64::NAN,
    };
}

/// The filter of one twin: estimate, covariance and the anomaly window.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterState {
    /// Event time of the estimate (`NO_TS`: no reading yet).
    pub t: i64,
    pub x: Array1<f64>,
    pub p: Array2<f64>,
    pub observations: Box<[ObservationState]>,
    /// Normalised innovations (`residual / its standard deviation`) of the
    /// last readings (a ring of the anomaly window's length), with the
    /// observation each came from; squared, they are the NIS.
    pub nis: Box<[(f64, u16)]>,
    /// Next slot of the ring, and how many are filled.
    pub nis_next: u32,
    pub nis_filled: u32,
    /// Readings taken in.
    pub updates: u64,
    /// Readings older than the estimate, not taken into it.
    pub out_of_order: u64,
    /// A what-if copy ([`crate::twin::foresight`]): readings only move the
    /// estimate forward in time, they are not taken in. Never stored.
    pub open_loop: bool,
}

/// The matrix form discretised over one step: `F`, the input gain `G` and
/// the noise covariance `Q_d`.
#[derive(Debug, Clone, PartialEq)]
struct Discretised {
    f: Array2<f64>,
    g: Array2<f64>,
    q: Array2<f64>,
}

/// A memoised discretisation and the matrices it was made from (checked
/// on every hit: a hash is not a proof).
struct Memo {
    of: (Array2<f64>, Array2<f64>, Array2<f64>),
    d: std::rc::Rc<Discretised>,
}

/// Entries a worker thread keeps in [`DISCRETISED`] before starting over.
const DISCRETISED_MAX: usize = 4096;

thread_local! {
    /// Discretisations by (model version, step in ms), per worker thread: a
    /// memo of a pure function (the same step of the same model gives the
    /// same matrices, bit for bit), so a twin's result never depends on it.
    /// Readings at a jittered period take a few hundred distinct steps;
    /// every twin of the type shares them.
    static DISCRETISED: std::cell::RefCell<std::collections::HashMap<(u64, i64), Memo>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The discretisation of `fm`'s matrix form over `dt_ms`.
fn discretised(
    fm: &FilterModel,
    a: &Array2<f64>,
    b: &Array2<f64>,
    q: &Array2<f64>,
    dt_ms: i64,
) -> std::rc::Rc<Discretised> {
    DISCRETISED.with(|memo| {
        let mut memo = memo.borrow_mut();
        if let Some(m) = memo.get(&(fm.version, dt_ms)) {
            if m.of.0 == *a && m.of.1 == *b && m.of.2 == *q {
                return m.d.clone();
            }
        }
        if memo.len() >= DISCRETISED_MAX {
            memo.clear();
        }
        let d = std::rc::Rc::new(discretise(a, b, q, dt_ms as f64 / 1000.0));
        let of = (a.clone(), b.clone(), q.clone());
        memo.insert((fm.version, dt_ms), Memo { of, d: d.clone() });
        d
    })
}

/// The model's part of a twin update and of the twin's view: the estimate
/// after the readings.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelUpdate {
    /// Event time of the estimate.
    pub ts: i64,
    /// Per state: estimate and standard deviation.
    pub states: Vec<(f64, f64)>,
    /// Per observed sensor.
    pub sensors: Vec<ObservedUpdate>,
    /// [`FilterState::nis_sum`].
    pub nis: f64,
}

/// What the model makes of one observed sensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObservedUpdate {
    pub sensor: u16,
    /// The estimated observation `h . x` and its standard deviation.
    pub estimate: f64,
    pub std: f64,
    /// The innovation of the last reading taken in, and its standard
    /// deviation (`NaN`: none yet).
    pub residual: f64,
    pub residual_std: f64,
}

/// The stored form of a [`FilterState`] (twin record format 5): indices
/// are the model's own, valid while its version is the same.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FilterRecord {
    /// [`FilterModel::version`] it was written under.
    pub model: u64,
    pub t: i64,
    pub x: Vec<f64>,
    /// Row-major, `n x n`.
    pub p: Vec<f64>,
    /// Per observation: event time, residual, its variance.
    pub observations: Vec<(i64, f64, f64)>,
    /// The anomaly window: normalised innovations (signed) and their
    /// observation.
    pub nis: Vec<(f64, u16)>,
    pub nis_next: u32,
    pub nis_filled: u32,
    pub updates: u64,
    pub out_of_order: u64,
}

impl FilterRecord {
    pub fn of(fm: &FilterModel, f: &FilterState) -> FilterRecord {
        FilterRecord {
            model: fm.version,
            t: f.t,
            x: f.x.to_vec(),
            p: f.p.iter().copied().collect(),
            observations: f
                .observations
                .iter()
                .map(|o| (o.ts, o.residual, o.residual_var))
                .collect(),
            nis: f.nis.to_vec(),
            nis_next: f.nis_next,
            nis_filled: f.nis_filled,
            updates: f.updates,
            out_of_order: f.out_of_order,
        }
    }

    /// The filter it stores, if it was written under model `fm` (same
    /// version, same shapes); `None`: the filter starts again.
    pub fn restore(&self, fm: &FilterModel) -> Option<FilterState> {
        let n = fm.n();
        let mut f = FilterState::new(fm);
        let fits = self.model == fm.version
            && self.x.len() == n
            && self.p.len() == n * n
            && self.observations.len() == f.observations.len()
            && self.nis.len() == f.nis.len()
            && (self.nis_next as usize) < f.nis.len()
            && self.nis_filled as usize <= f.nis.len()
            && self.nis.iter().all(|(_, k)| (*k as usize) < f.observations.len());
        if !fits {
            return None;
        }
        f.t = self.t;
        f.x = Array1::from(self.x.clone());
        f.p = Array2::from_shape_vec((n, n), self.p.clone()).ok()?;
        for (o, &(ts, residual, residual_var)) in f.observations.iter_mut().zip(&self.observations) {
            *o = ObservationState {
                ts,
                residual,
                residual_var,
            };
        }
        f.nis.copy_from_slice(&self.nis);
        f.nis_next = self.nis_next;
        f.nis_filled = self.nis_filled;
        f.updates = self.updates;
        f.out_of_order = self.out_of_order;
        Some(f)
    }
}

/// What one reading did to the filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Taken in: the estimate moved.
    Updated,
    /// Older than the estimate: counted, not taken in.
    OutOfOrder,
    /// The sensor is not observed by the model, or the value is not finite.
    Ignored,
}

impl FilterState {
    pub fn new(fm: &FilterModel) -> FilterState {
        let n = fm.n();
        FilterState {
            t: NO_TS,
            x: fm.x0.clone().unwrap_or_else(|| Array1::zeros(n)),
            p: fm.p0.clone(),
            observations: vec![ObservationState::NONE; fm.observations.len()].into_boxed_slice(),
            nis: vec![(0.0, 0); fm.anomaly.as_ref().map_or(1, |a| a.window as usize)].into_boxed_slice(),
            nis_next: 0,
            nis_filled: 0,
            updates: 0,
            out_of_order: 0,
            open_loop: false,
        }
    }

    /// Copies `src` into `self` without allocating when the shapes agree
    /// (the twin backs its state up before every batch).
    pub fn copy_from(&mut self, src: &FilterState) {
        self.t = src.t;
        if self.x.len() == src.x.len() && self.p.dim() == src.p.dim() && self.nis.len() == src.nis.len() {
            self.x.assign(&src.x);
            self.p.assign(&src.p);
            self.observations.copy_from_slice(&src.observations);
            self.nis.copy_from_slice(&src.nis);
        } else {
            self.x = src.x.clone();
            self.p = src.p.clone();
            self.observations = src.observations.clone();
            self.nis = src.nis.clone();
        }
        self.nis_next = src.nis_next;
        self.nis_filled = src.nis_filled;
        self.updates = src.updates;
        self.out_of_order = src.out_of_order;
        self.open_loop = src.open_loop;
    }

    /// Takes a reading of sensor `sensor` at event time `ts` into the
    /// estimate; `inputs` are the current values of the model's inputs
    /// (`NaN`: not commanded yet).
    pub fn on_reading(&mut self, fm: &FilterModel, sensor: u16, ts: i64, value: f64, inputs: &[f64]) -> Step {
        let Some(k) = fm.by_sensor.get(sensor as usize).copied().flatten() else {
            return Step::Ignored;
        };
        if !value.is_finite() {
            return Step::Ignored;
        }
        if self.open_loop {
            if self.t == NO_TS {
                return Step::Ignored;
            }
            self.advance(fm, ts, inputs);
            return Step::Updated;
        }
        let obs = &fm.observations[k as usize];
        if self.t == NO_TS {
            if fm.x0.is_none() {
                self.initialise_from(obs, value);
            }
            self.t = ts;
        } else if ts < self.t {
            self.out_of_order += 1;
            return Step::OutOfOrder;
        } else {
            self.predict(fm, ts - self.t, inputs);
            self.t = ts;
        }
        let (residual, var) = self.update(obs, value);
        self.observations[k as usize] = ObservationState {
            ts,
            residual,
            residual_var: var,
        };
        self.updates += 1;
        // The anomaly test starts once the start has settled: the first
        // reading per state explains itself (the estimate starts from them).
        if self.updates <= fm.n() as u64 {
            return Step::Updated;
        }
        let slot = self.nis_next as usize;
        self.nis[slot] = (residual / var.sqrt(), k);
        self.nis_next = ((slot + 1) % self.nis.len()) as u32;
        self.nis_filled = (self.nis_filled + 1).min(self.nis.len() as u32);
        Step::Updated
    }

    /// No `x0`: the states the first reading observes start at the reading
    /// (its observation row, scaled), the rest at zero.
    fn initialise_from(&mut self, obs: &ObservationDef, value: f64) {
        let hh = obs.h.dot(&obs.h);
        if hh > 0.0 {
            self.x = &obs.h * (value / hh);
        }
    }

    /// Predicts the estimate forward to event time `t` (nothing when it is
    /// not later than the estimate's).
    pub fn advance(&mut self, fm: &FilterModel, t: i64, inputs: &[f64]) {
        if t > self.t {
            self.predict(fm, t - self.t, inputs);
            self.t = t;
        }
    }

    /// Moves the estimate `dt_ms` forward.
    pub fn predict(&mut self, fm: &FilterModel, dt_ms: i64, inputs: &[f64]) {
        if dt_ms <= 0 && !matches!(fm.dynamics, Dynamics::Discrete { .. }) {
            return;
        }
        let dt = dt_ms as f64 / 1000.0;
        match &fm.dynamics {
            Dynamics::Level { q } => {
                self.p[[0, 0]] += q * dt;
            }
            Dynamics::LevelRate { q } => {
                let (x, p) = (&mut self.x, &mut self.p);
                x[0] += x[1] * dt;
                // F P F' with F = [[1, dt], [0, 1]], plus the discretised
                // white-noise acceleration.
                let (p00, p01, p11) = (p[[0, 0]], p[[0, 1]], p[[1, 1]]);
                let n00 = p00 + 2.0 * dt * p01 + dt * dt * p11 + q * dt * dt * dt / 3.0;
                let n01 = p01 + dt * p11 + q * dt * dt / 2.0;
                let n11 = p11 + q * dt;
                p[[0, 0]] = n00;
                p[[0, 1]] = n01;
                p[[1, 0]] = n01;
                p[[1, 1]] = n11;
            }
            Dynamics::Lag { tau_s, gain, q } => {
                let u = inputs.first().copied().unwrap_or(f64::NAN);
                if u.is_nan() {
                    // Nothing commanded: the model has no target to lag
                    // towards; the value holds, as a level would.
                    self.p[[0, 0]] += q * dt;
                } else {
                    let a = (-dt / tau_s).exp();
                    self.x[0] = a * self.x[0] + (1.0 - a) * gain * u;
                    self.p[[0, 0]] = a * a * self.p[[0, 0]] + q * tau_s / 2.0 * (1.0 - a * a);
                }
            }
            Dynamics::Continuous { a, b, q } => {
                let d = discretised(fm, a, b, q, dt_ms);
                step(&mut self.x, &mut self.p, &d.f, &d.g, &d.q, inputs);
            }
            Dynamics::Discrete { f, b, q } => step(&mut self.x, &mut self.p, f, b, q, inputs),
        }
        symmetrise(&mut self.p);
    }

    /// Updates with one reading: returns the innovation and its variance.
    ///
    /// Joseph form without forming `A = I - k h`: `M = A P = P - k (P h)'`
    /// (P is symmetric), then `P' = M A' + k r k' = M - (M h) k' + r k k'`,
    /// in place, on scratch vectors kept on the stack (a reading allocates
    /// nothing for models of up to 8 states).
    fn update(&mut self, obs: &ObservationDef, value: f64) -> (f64, f64) {
        let n = self.x.len();
        let mut stack = [0.0f64; 24];
        let mut heap = Vec::new();
        let scratch: &mut [f64] = if n <= 8 {
            &mut stack[..3 * n]
        } else {
            heap.resize(3 * n, 0.0);
            &mut heap
        };
        let (ph, rest) = scratch.split_at_mut(n);
        let (k, mh) = rest.split_at_mut(n);
        let (p, h, r) = (&mut self.p, &obs.h, obs.r);
        for i in 0..n {
            ph[i] = (0..n).map(|j| p[[i, j]] * h[j]).sum();
        }
        let s = (0..n).map(|i| h[i] * ph[i]).sum::<f64>() + r;
        let y = value - h.dot(&self.x);
        for i in 0..n {
            k[i] = ph[i] / s;
            self.x[i] += y * k[i];
        }
        for i in 0..n {
            for j in 0..n {
                p[[i, j]] -= k[i] * ph[j];
            }
        }
        for i in 0..n {
            mh[i] = (0..n).map(|j| p[[i, j]] * h[j]).sum();
        }
        for i in 0..n {
            for j in 0..n {
                p[[i, j]] += r * k[i] * k[j] - mh[i] * k[j];
            }
        }
        symmetrise(p);
        (y, s)
    }

    /// The estimate of state `i` and its standard deviation.
    pub fn state(&self, i: usize) -> (f64, f64) {
        (self.x[i], self.p[[i, i]].max(0.0).sqrt())
    }

    /// The estimated observation of sensor observation `k` and its standard
    /// deviation.
    pub fn observed(&self, fm: &FilterModel, k: usize) -> (f64, f64) {
        let h = &fm.observations[k].h;
        (h.dot(&self.x), h.dot(&self.p.dot(h)).max(0.0).sqrt())
    }

    /// The sum of the normalised innovations squared over the window
    /// (`NaN` until the window is full: a part-filled sum is not comparable
    /// with the window's chi-square bounds).
    pub fn nis_sum(&self) -> f64 {
        if !self.window_full() {
            return f64::NAN;
        }
        self.nis[..self.nis_filled as usize].iter().map(|(z, _)| z * z).sum()
    }

    /// The bias test: per observation, the window's normalised innovations
    /// summed over the square root of their count (a standard normal while
    /// the model fits); the largest in magnitude (`NaN` until the window is
    /// full).
    pub fn bias_z(&self) -> f64 {
        if !self.window_full() {
            return f64::NAN;
        }
        let mut worst = 0.0f64;
        for k in 0..self.observations.len() as u16 {
            let (sum, n) = self
                .nis
                .iter()
                .filter(|(_, o)| *o == k)
                .fold((0.0, 0u32), |(s, n), (z, _)| (s + z, n + 1));
            if n > 0 {
                worst = worst.max(sum.abs() / f64::from(n).sqrt());
            }
        }
        worst
    }

    /// Observation `k`'s part of [`FilterState::nis_sum`].
    pub fn nis_part(&self, k: u16) -> f64 {
        if !self.window_full() {
            return f64::NAN;
        }
        self.nis.iter().filter(|(_, o)| *o == k).map(|(z, _)| z * z).sum()
    }

    /// The estimate as a twin update shows it.
    pub fn update_of(&self, fm: &FilterModel) -> ModelUpdate {
        ModelUpdate {
            ts: self.t,
            states: (0..fm.n()).map(|i| self.state(i)).collect(),
            sensors: fm
                .observations
                .iter()
                .enumerate()
                .map(|(k, o)| {
                    let (estimate, std) = self.observed(fm, k);
                    let last = self.observations[k];
                    ObservedUpdate {
                        sensor: o.sensor,
                        estimate,
                        std,
                        residual: last.residual,
                        residual_std: last.residual_var.sqrt(),
                    }
                })
                .collect(),
            nis: self.nis_sum(),
        }
    }

    /// The anomaly window is full: the test can be judged.
    pub fn window_full(&self) -> bool {
        self.nis_filled as usize == self.nis.len()
    }
}

/// `x = F x + G u`, `P = F P F' + Q` (inputs not commanded yet count as 0).
fn step(x: &mut Array1<f64>, p: &mut Array2<f64>, f: &Array2<f64>, g: &Array2<f64>, q: &Array2<f64>, u: &[f64]) {
    let mut nx = f.dot(&*x);
    for (j, &uj) in u.iter().enumerate() {
        if uj.is_finite() {
            nx.scaled_add(uj, &g.column(j));
        }
    }
    *x = nx;
    *p = f.dot(&*p).dot(&f.t()) + q;
}

/// Discretises over `dt` seconds: over a short step `h = dt / 2^k` (`|A h|
/// <= 0.5`) one exponential of `[[-A, Q], [0, A']] h` gives `F` and `Q_d`
/// (Van Loan) and one of `[[A, B], [0, 0]] h` the input gain `G`; then `k`
/// doublings (`Q(2h) = F Q F' + Q`, `G(2h) = F G + G`, `F(2h) = F F`). A
/// single exponential over a long step would hold `exp(-A dt)`, which
/// overflows for a stable system.
fn discretise(a: &Array2<f64>, b: &Array2<f64>, q: &Array2<f64>, dt: f64) -> Discretised {
    let n = a.nrows();
    let m = b.ncols();
    let norm = a
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|v| v.abs()).sum::<f64>())
        .fold(0.0, f64::max);
    let doublings = if norm * dt > 0.5 {
        ((norm * dt / 0.5).log2().ceil() as i32).min(60)
    } else {
        0
    };
    let h = dt / 2f64.powi(doublings);
    let mut vl = Array2::zeros((2 * n, 2 * n));
    vl.slice_mut(s![..n, ..n]).assign(&(-a * h));
    vl.slice_mut(s![..n, n..]).assign(&(q * h));
    vl.slice_mut(s![n.., n..]).assign(&(a.t().to_owned() * h));
    let e = expm(&vl);
    let mut f = e.slice(s![n.., n..]).t().to_owned();
    let mut qd = f.dot(&e.slice(s![..n, n..]));
    let mut ab = Array2::zeros((n + m, n + m));
    ab.slice_mut(s![..n, ..n]).assign(&(a * h));
    ab.slice_mut(s![..n, n..]).assign(&(b * h));
    let mut g = expm(&ab).slice(s![..n, n..]).to_owned();
    for _ in 0..doublings {
        qd = f.dot(&qd).dot(&f.t()) + &qd;
        symmetrise(&mut qd);
        g = f.dot(&g) + &g;
        f = f.dot(&f);
    }
    symmetrise(&mut qd);
    Discretised { f, g, q: qd }
}

/// The matrix exponential by scaling and squaring with a Taylor series:
/// scaled to norm <= 0.5, 18 terms leave an error far below f64 rounding.
pub fn expm(m: &Array2<f64>) -> Array2<f64> {
    let norm = m
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|v| v.abs()).sum::<f64>())
        .fold(0.0, f64::max);
    let squarings = if norm > 0.5 {
        (norm / 0.5).log2().ceil() as i32
    } else {
        0
    };
    let scaled = m / 2f64.powi(squarings);
    let n = m.nrows();
    let mut sum = Array2::<f64>::eye(n);
    let mut term = Array2::<f64>::eye(n);
    for k in 1..=18 {
        term = term.dot(&scaled) / k as f64;
        sum += &term;
    }
    for _ in 0..squarings {
        sum = sum.dot(&sum);
    }
    sum
}

fn symmetrise(p: &mut Array2<f64>) {
    let n = p.nrows();
    for i in 0..n {
        for j in (i + 1)..n {
            let v = 0.5 * (p[[i, j]] + p[[j, i]]);
            p[[i, j]] = v;
            p[[j, i]] = v;
        }
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
