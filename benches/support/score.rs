//! Scores a twin's model against simulated ground truth: assets whose true
//! state moves by the declared model (`source::simulator::truth`), read by
//! a noisy sensor with faults injected, fed to the pure twin one reading at
//! a time; commands (random set points) go to both the truth and the twin.
//!
//! Shared by `benches/estimate.rs` (the figures) and `tests/estimate.rs`
//! (the scored test).

use std::path::Path;

use twinstream::source::simulator::truth::{FaultSchedule, TrueAsset};
use twinstream::topology::{self, SimFault};
use twinstream::twin::model::{apply, Event, Input, Output, Transition, TwinState};
use twinstream::twin::schema::{Model, OutputMask, TypeModel, MODEL_ANOMALY_ALERT};

/// What to simulate.
pub struct Scenario<'a> {
    /// A topology with one asset type, whose model observes one sensor.
    pub topology: &'a str,
    pub assets: u64,
    pub hours: f64,
    pub every_ms: i64,
    pub seed: u64,
    pub faults: &'a [SimFault],
    pub fault_every_ms: i64,
    pub fault_for_ms: i64,
    /// In standard deviations of the sensor's noise.
    pub fault_size: f64,
    /// A fault counts as caught if the anomaly alert is raised (or is
    /// active) within this long of its start.
    pub detect_within_ms: i64,
    /// Random set points in `[min, max]` of the type's first command, one
    /// every so often (`None`: no commands).
    pub set_points: Option<(f64, f64, i64)>,
    /// The true state starts with its observed sensor at this value.
    pub start_value: f64,
}

/// How the model did.
#[derive(Debug, Default, Clone)]
pub struct Score {
    /// Over fault-free readings after the first minute: the estimate's and
    /// the raw readings' root mean square error against the true value.
    pub rmse_estimate: f64,
    pub rmse_raw: f64,
    pub faults: Vec<FaultOutcome>,
    /// Raised while no fault was active nor had ended within
    /// `detect_within_ms`.
    pub false_alerts: u64,
    pub asset_days: f64,
    /// Fault-free asset-days (the denominator of the false alert rate).
    pub clean_asset_days: f64,
}

#[derive(Debug, Clone)]
pub struct FaultOutcome {
    pub kind: SimFault,
    /// Time from the fault's start to the alert (`None`: not caught in time).
    pub delay_ms: Option<i64>,
}

impl Score {
    pub fn rmse_ratio(&self) -> f64 {
        self.rmse_estimate / self.rmse_raw
    }

    pub fn caught(&self, kind: Option<SimFault>) -> (usize, usize) {
        let of: Vec<&FaultOutcome> = self
            .faults
            .iter()
            .filter(|f| kind.is_none_or(|k| f.kind == k))
            .collect();
        (of.iter().filter(|f| f.delay_ms.is_some()).count(), of.len())
    }

    pub fn false_alerts_per_asset_day(&self) -> f64 {
        self.false_alerts as f64 / self.clean_asset_days.max(1e-9)
    }
}

pub fn type_model(yaml: &str) -> std::sync::Arc<TypeModel> {
    let topo = topology::parse(Path::new("score.yaml"), yaml).unwrap_or_else(|d| panic!("{d}"));
    Model::build(&topo, OutputMask::all(), false).types[0].clone()
}

pub fn score(s: &Scenario<'_>) -> Score {
    let m = type_model(s.topology);
    let fm = m.filter.as_ref().expect("the scenario's type declares a model");
    let anomaly = m.rule_index(MODEL_ANOMALY_ALERT);
    let t0 = 1_700_000_000_000i64;
    let end = t0 + (s.hours * 3_600_000.0) as i64;
    let (mut se_est, mut se_raw, mut n) = (0.0, 0.0, 0u64);
    let mut score = Score::default();
    let mut clean_ms = 0i64;
    let mut out: Vec<Output> = Vec::new();
    for a in 0..s.assets {
        let seed = s.seed ^ (a + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut twin = TwinState::new(&m);
        let x0 = fm
            .x0
            .clone()
            .unwrap_or_else(|| TrueAsset::state_at(fm, 0, s.start_value));
        let mut truth = TrueAsset::new(fm, x0, t0, seed);
        let mut faults = FaultSchedule::new(
            s.faults,
            s.fault_every_ms,
            s.fault_for_ms,
            s.fault_size,
            1,
            t0,
            seed.rotate_left(17),
        );
        let mut rng = fastrand::Rng::with_seed(seed.rotate_left(29));
        let mut u = vec![f64::NAN; fm.inputs.len()];
        let mut next_command = t0;
        // The fault being judged: (outcome index, start, end), and whether
        // the alert is active.
        let mut current: Option<(usize, i64, i64)> = None;
        let mut last_end = i64::MIN / 2;
        let mut active = false;
        let mut t = t0;
        while t < end {
            if let Some((lo, hi, every)) = s.set_points {
                if t >= next_command {
                    let value = lo + (hi - lo) * rng.f64();
                    u[0] = value;
                    let key = format!("{t}");
                    let input = Input::Command {
                        def: 0,
                        value,
                        key: &key,
                    };
                    apply(&m, &mut twin, input, t, &mut out);
                    next_command += every;
                }
            }
            truth.advance(fm, t, &u);
            let fault = faults.at(t);
            let faulty = fault.is_some();
            if let Some(f) = &fault {
                if current.is_none_or(|(_, start, _)| start != f.start) {
                    score.faults.push(FaultOutcome {
                        kind: f.kind,
                        delay_ms: active.then_some(0),
                    });
                    current = Some((score.faults.len() - 1, f.start, f.end));
                }
            }
            let reading = truth.read(fm, 0, fault);
            out.clear();
            let e = Event {
                ts: t,
                value: reading,
                sensor: fm.observations[0].sensor,
                source: 0,
                origin: 0,
                redelivered: false,
                replayed: false,
            };
            apply(&m, &mut twin, Input::Events(&[e]), t, &mut out);
            for o in &out {
                if let Output::Alert { rule, transition, .. } = o {
                    if Some(*rule) != anomaly {
                        continue;
                    }
                    match transition {
                        Transition::Raised => {
                            active = true;
                            match current {
                                Some((i, start, _)) if t - start <= s.detect_within_ms => {
                                    let d = &mut score.faults[i].delay_ms;
                                    d.get_or_insert(t - start);
                                }
                                _ if !faulty && t - last_end > s.detect_within_ms => score.false_alerts += 1,
                                _ => {}
                            }
                        }
                        Transition::Cleared => active = false,
                        Transition::Acknowledged => {}
                    }
                }
            }
            if let Some((_, _, fend)) = current {
                if t >= fend {
                    last_end = fend;
                    current = None;
                }
            }
            let clean = !faulty && t - last_end > s.detect_within_ms;
            if clean {
                clean_ms += s.every_ms;
            }
            if clean && t - t0 >= 60_000 {
                let truth_value = truth.value(fm, 0);
                let est = twin.filter().expect("a filter").observed(fm, 0).0;
                se_est += (est - truth_value).powi(2);
                se_raw += (reading - truth_value).powi(2);
                n += 1;
            }
            t += s.every_ms;
        }
        // A fault still running at the end is not judged.
        if let Some((i, start, _)) = current {
            if end - start < s.detect_within_ms && score.faults[i].delay_ms.is_none() {
                score.faults.pop();
            }
        }
    }
    score.rmse_estimate = (se_est / n as f64).sqrt();
    score.rmse_raw = (se_raw / n as f64).sqrt();
    score.asset_days = s.assets as f64 * s.hours / 24.0;
    score.clean_asset_days = clean_ms as f64 / 86_400_000.0;
    score
}
