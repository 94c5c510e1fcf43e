//! Ground truth from a declared model: an asset whose true state moves by
//! the asset type's model (with its process noise), read by sensors with
//! their measurement noise, and sensor faults injected on top.
//!
//! The true state steps exactly as the twin's filter predicts (the same
//! discretisation: [`FilterState::predict`] run on the truth with a zero
//! covariance leaves the step's mean in `x` and its process noise
//! covariance in `P`), plus a draw of that noise. A reading of observed
//! sensor `k` is `h_k . x` plus `N(0, r_k)`, then the fault active at its
//! time, if any:
//!
//! * **stuck**: the sensor repeats the reading it gave when the fault began;
//! * **bias**: a step of `size` standard deviations of its noise;
//! * **drift**: an offset growing linearly to `size` standard deviations
//!   over the fault.
//!
//! Deterministic for a seed: tests and benchmarks score the twin's estimate
//! and its anomaly alert against the truth.

use ndarray::{Array1, Array2};

use crate::topology::SimFault;
use crate::twin::model::{FilterModel, FilterState};

/// A standard normal draw (Box-Muller).
pub fn gauss(rng: &mut fastrand::Rng) -> f64 {
    let u = 1.0 - rng.f64(); // (0, 1]: the log is finite
    let v = rng.f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The lower-triangular `L` with `L L' = P` for a positive semi-definite
/// `P` (a zero pivot leaves its column zero: that direction has no noise).
fn cholesky(p: &Array2<f64>) -> Array2<f64> {
    let n = p.nrows();
    let mut l = Array2::zeros((n, n));
    for j in 0..n {
        let d = p[[j, j]] - (0..j).map(|k| l[[j, k]] * l[[j, k]]).sum::<f64>();
        if d <= 1e-300 {
            continue;
        }
        let ljj = d.sqrt();
        l[[j, j]] = ljj;
        for i in (j + 1)..n {
            let s = p[[i, j]] - (0..j).map(|k| l[[i, k]] * l[[j, k]]).sum::<f64>();
            l[[i, j]] = s / ljj;
        }
    }
    l
}

/// One asset's true state and its sensors.
#[derive(Debug, Clone)]
pub struct TrueAsset {
    /// `x` is the true state; `p` scratch for a step's noise covariance.
    truth: FilterState,
    rng: fastrand::Rng,
    /// Per observation: the standard deviation of a reading.
    sigma: Vec<f64>,
}

impl TrueAsset {
    /// Starts at state `x0`, event time `t0`.
    pub fn new(fm: &FilterModel, x0: Array1<f64>, t0: i64, seed: u64) -> TrueAsset {
        let mut truth = FilterState::new(fm);
        truth.x = x0;
        truth.p.fill(0.0);
        truth.t = t0;
        TrueAsset {
            truth,
            rng: fastrand::Rng::with_seed(seed),
            sigma: fm.observations.iter().map(|o| o.r.sqrt()).collect(),
        }
    }

    /// The state whose observation `k` is `value` and which is otherwise
    /// zero (a level at `value`, its rate 0).
    pub fn state_at(fm: &FilterModel, k: usize, value: f64) -> Array1<f64> {
        let h = &fm.observations[k].h;
        let hh = h.dot(h);
        if hh > 0.0 {
            h * (value / hh)
        } else {
            Array1::zeros(fm.n())
        }
    }

    /// Moves the true state to event time `t` (nothing if it is not later)
    /// under inputs `u` (`NaN`: not commanded), drawing the process noise.
    pub fn advance(&mut self, fm: &FilterModel, t: i64, u: &[f64]) {
        if t <= self.truth.t {
            return;
        }
        self.truth.p.fill(0.0);
        self.truth.advance(fm, t, u);
        let l = cholesky(&self.truth.p);
        let z: Array1<f64> = (0..fm.n()).map(|_| gauss(&mut self.rng)).collect();
        self.truth.x += &l.dot(&z);
        self.truth.p.fill(0.0);
    }

    pub fn t(&self) -> i64 {
        self.truth.t
    }

    /// The true state.
    pub fn state(&self) -> &Array1<f64> {
        &self.truth.x
    }

    /// The true value of observed sensor `k` (`h_k . x`).
    pub fn value(&self, fm: &FilterModel, k: usize) -> f64 {
        fm.observations[k].h.dot(&self.truth.x)
    }

    /// The standard deviation of observation `k`'s readings.
    pub fn sigma(&self, k: usize) -> f64 {
        self.sigma[k]
    }

    /// A reading of observed sensor `k` now, with `fault` if one is active
    /// on it.
    pub fn read(&mut self, fm: &FilterModel, k: usize, fault: Option<&mut Fault>) -> f64 {
        let clean = self.value(fm, k) + self.sigma[k] * gauss(&mut self.rng);
        let Some(f) = fault.filter(|f| f.observation == k && (f.start..f.end).contains(&self.truth.t)) else {
            return clean;
        };
        let size = f.size * self.sigma[k];
        match f.kind {
            SimFault::Stuck => *f.stuck.get_or_insert(clean),
            SimFault::Bias => clean + size,
            SimFault::Drift => {
                let frac = (self.truth.t - f.start) as f64 / (f.end - f.start).max(1) as f64;
                clean + size * frac
            }
        }
    }
}

/// One injected sensor fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub kind: SimFault,
    /// The observation (index into the model's observed sensors) it hits.
    pub observation: usize,
    /// Event time it starts (inclusive) and ends (exclusive).
    pub start: i64,
    pub end: i64,
    /// In standard deviations of the sensor's noise (bias and drift).
    pub size: f64,
    /// A stuck sensor's reading, once it has given one.
    pub stuck: Option<f64>,
}

/// Faults one after another: the gap before each is drawn uniformly from
/// `0.5..1.5` times `every`, the kind and the sensor in turn.
#[derive(Debug, Clone)]
pub struct FaultSchedule {
    kinds: Vec<SimFault>,
    every_ms: i64,
    for_ms: i64,
    size: f64,
    observations: usize,
    rng: fastrand::Rng,
    count: u64,
    /// The current or next fault.
    pub next: Option<Fault>,
}

impl FaultSchedule {
    /// No kinds: no faults.
    pub fn new(
        kinds: &[SimFault],
        every_ms: i64,
        for_ms: i64,
        size: f64,
        observations: usize,
        t0: i64,
        seed: u64,
    ) -> FaultSchedule {
        let mut s = FaultSchedule {
            kinds: kinds.to_vec(),
            every_ms: every_ms.max(1),
            for_ms: for_ms.max(1),
            size,
            observations: observations.max(1),
            rng: fastrand::Rng::with_seed(seed),
            count: 0,
            next: None,
        };
        s.next = s.after(t0);
        s
    }

    fn after(&mut self, t: i64) -> Option<Fault> {
        if self.kinds.is_empty() {
            return None;
        }
        let gap = self.every_ms / 2 + self.rng.i64(0..=self.every_ms);
        let kind = self.kinds[(self.count % self.kinds.len() as u64) as usize];
        let observation = (self.count / self.kinds.len() as u64 % self.observations as u64) as usize;
        self.count += 1;
        Some(Fault {
            kind,
            observation,
            start: t + gap,
            end: t + gap + self.for_ms,
            size: self.size,
            stuck: None,
        })
    }

    /// The fault active at `t` (faults that ended before it are replaced
    /// by the next; times must not go backwards).
    pub fn at(&mut self, t: i64) -> Option<&mut Fault> {
        while self.next.as_ref().is_some_and(|f| f.end <= t) {
            let end = self.next.as_ref().map_or(t, |f| f.end);
            self.next = self.after(end);
        }
        self.next.as_mut().filter(|f| f.start <= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_factors_a_semidefinite_matrix() {
        let p = ndarray::arr2(&[[4.0, 2.0, 0.0], [2.0, 2.0, 0.0], [0.0, 0.0, 0.0]]);
        let l = cholesky(&p);
        let back = l.dot(&l.t());
        for (a, b) in back.iter().zip(p.iter()) {
            assert!((a - b).abs() < 1e-12, "{back} vs {p}");
        }
    }

    #[test]
    fn draws_are_standard_normal() {
        let mut rng = fastrand::Rng::with_seed(3);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| gauss(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.02, "{mean} {var}");
    }

    #[test]
    fn faults_follow_one_another_in_turn() {
        use SimFault::*;
        let mut s = FaultSchedule::new(&[Stuck, Bias, Drift], 600_000, 60_000, 6.0, 1, 0, 9);
        let mut seen = Vec::new();
        let mut t = 0;
        while seen.len() < 6 {
            if let Some(f) = s.at(t) {
                if seen.last() != Some(&(f.kind, f.start)) {
                    assert!((300_000..=900_000 + 60_000 * 6 + 900_000 * 6).contains(&f.start));
                    seen.push((f.kind, f.start));
                }
            }
            t += 1000;
        }
        let kinds: Vec<SimFault> = seen.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [Stuck, Bias, Drift, Stuck, Bias, Drift]);
        assert!(seen.windows(2).all(|w| w[1].1 - w[0].1 >= 300_000 + 60_000));
    }
}
