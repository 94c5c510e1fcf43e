//! The simulator source: a fleet of assets with realistic signals.
//!
//! Every sensor reports every `every` (or its `expected_every`) around a
//! baseline at 25-45% of its range, with a slow wave and noise. On top:
//! * **drift**: a fraction of assets drift upward on their first sensor over
//!   three minutes, crossing high thresholds, then return to normal;
//! * **spikes**: short excursions to 85-98% of the range;
//! * **gaps**: a sensor goes silent for 30-120 s (staleness);
//! * **jitter**: event times lag the sample time a little, so events arrive
//!   slightly out of order.
//!
//! With `model:`, the sensors the asset type's model observes are read off
//! a true state that moves by that model ([`truth`]), with the faults the
//! source injects, and the true state can be written alongside each
//! reading; the other sensors keep the signals above.
//!
//! It is seeded and deterministic given the same clock.

pub mod truth;

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use compact_str::CompactString;
use crossbeam_channel::Sender;

use super::decode::AssetIndex;
use super::SourceError;
use crate::pipeline::flow::{AcquireError, Flow};
use crate::pipeline::{now_ms, DecodedChunk, Group};
use crate::topology::{SimulatorSpec, Topology};
use crate::twin::model::{Event, FilterModel};
use truth::{FaultSchedule, TrueAsset};

const TICK: Duration = Duration::from_millis(100);
const DRIFT_PERIOD_MS: f64 = 180_000.0;

struct SensorSim {
    lo: f64,
    span: f64,
    base: f64,
    wave_amp: f64,
    wave_period_ms: f64,
    wave_phase: f64,
    noise: f64,
    every_ms: i64,
    next_due: i64,
    silent_until: i64,
    spike_left: u32,
    /// The twin computes it: never simulated.
    derived: bool,
}

struct AssetSim {
    id: CompactString,
    entry: u32,
    drifting: bool,
    sensors: Vec<SensorSim>,
    model: Option<Box<ModelAsset>>,
}

/// An asset whose observed sensors read a true state.
struct ModelAsset {
    truth: TrueAsset,
    faults: FaultSchedule,
}

/// `model:` of the source: the type's model, and where the truth goes.
struct ModelMode {
    fm: FilterModel,
    sensor_names: Vec<String>,
    truth: Option<std::io::BufWriter<std::fs::File>>,
    /// Samples due in one tick, in time order: (time, sensor, observation).
    due: Vec<(i64, u16, usize)>,
}

pub struct Simulator {
    source: u16,
    spec: SimulatorSpec,
    assets: Vec<AssetSim>,
    rng: fastrand::Rng,
    started_ms: i64,
    model: Option<ModelMode>,
}

impl Simulator {
    /// `state_dir` replaces `{state_dir}` in the truth file's path.
    pub fn new(
        topo: &Topology,
        source: u16,
        spec: &SimulatorSpec,
        index: &AssetIndex,
        state_dir: &std::path::Path,
    ) -> Result<Simulator, SourceError> {
        let mut rng = fastrand::Rng::with_seed(spec.seed);
        let ty = &topo.asset_types[spec.asset_type];
        let start = now_ms();
        let mut model = match (&spec.model, &ty.model) {
            (Some(m), Some(declared)) => {
                let truth = match m.truth.as_deref().map(|p| crate::topology::expand_path(p, state_dir)) {
                    Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(&path).map_err(|e| {
                        SourceError::Config {
                            source_name: topo.sources[source as usize].name.clone(),
                            problem: format!("model.truth: cannot create {}: {e}", path.display()),
                        }
                    })?)),
                    None => None,
                };
                Some(ModelMode {
                    fm: FilterModel::build(declared, ty),
                    sensor_names: ty.sensors.iter().map(|s| s.name.clone()).collect(),
                    truth,
                    due: Vec::new(),
                })
            }
            _ => None,
        };
        let assets = (0..spec.count)
            .filter_map(|i| {
                let id = format!("{}{:0w$}", spec.prefix, i, w = spec.digits);
                let entry = index.resolve(&id)?;
                let drifting = rng.f64() < spec.drift_frac;
                let sensors: Vec<SensorSim> = ty
                    .sensors
                    .iter()
                    .map(|s| {
                        let (lo, hi) = match (s.min, s.max) {
                            (Some(lo), Some(hi)) if hi > lo => (lo, hi),
                            (Some(lo), None) => (lo, lo + 100.0),
                            (None, Some(hi)) => (hi - 100.0, hi),
                            _ => (0.0, 100.0),
                        };
                        let span = hi - lo;
                        let every = spec
                            .every
                            .or(s.expected_every)
                            .unwrap_or(Duration::from_secs(1))
                            .as_millis()
                            .max(1) as i64;
                        SensorSim {
                            lo,
                            span,
                            base: lo + span * (0.25 + 0.2 * rng.f64()),
                            wave_amp: span * 0.04,
                            wave_period_ms: 60_000.0 + 240_000.0 * rng.f64(),
                            wave_phase: std::f64::consts::TAU * rng.f64(),
                            noise: span * 0.015,
                            every_ms: every,
                            next_due: start + rng.i64(0..every),
                            silent_until: 0,
                            spike_left: 0,
                            derived: s.derive.is_some(),
                        }
                    })
                    .collect();
                let model = match (&mut model, &spec.model) {
                    (Some(mode), Some(m)) => {
                        let fm = &mode.fm;
                        let first = fm.observations[0].sensor as usize;
                        let x0 = fm
                            .x0
                            .clone()
                            .unwrap_or_else(|| TrueAsset::state_at(fm, 0, sensors[first].base));
                        let seed = spec.seed ^ (u64::from(i) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                        Some(Box::new(ModelAsset {
                            truth: TrueAsset::new(fm, x0, start, seed),
                            faults: FaultSchedule::new(
                                &m.faults,
                                m.fault_every.as_millis() as i64,
                                m.fault_for.as_millis() as i64,
                                m.fault_size,
                                fm.observations.len(),
                                start,
                                seed.rotate_left(17),
                            ),
                        }))
                    }
                    _ => None,
                };
                Some(AssetSim {
                    id: id.into(),
                    entry,
                    drifting,
                    sensors,
                    model,
                })
            })
            .collect();
        Ok(Simulator {
            source,
            spec: spec.clone(),
            assets,
            rng,
            started_ms: start,
            model,
        })
    }

    /// Samples due up to `now`, grouped by asset.
    fn tick(&mut self, now: i64) -> (Vec<Group>, u64) {
        let mut groups = Vec::new();
        let mut n = 0u64;
        let jitter = self.spec.jitter.as_millis() as i64;
        let elapsed = (now - self.started_ms) as f64;
        for a in &mut self.assets {
            let mut events = Vec::new();
            for (si, s) in a.sensors.iter_mut().enumerate() {
                if s.derived || (!self.spec.sensors.is_empty() && !self.spec.sensors.contains(&si)) {
                    continue;
                }
                if let (Some(mode), Some(_)) = (&mut self.model, &a.model) {
                    if let Some(k) = mode.fm.by_sensor[si] {
                        while s.next_due <= now {
                            mode.due.push((s.next_due, si as u16, k as usize));
                            s.next_due += s.every_ms;
                        }
                        continue;
                    }
                }
                while s.next_due <= now {
                    let t = s.next_due;
                    s.next_due += s.every_ms;
                    if t < s.silent_until {
                        continue;
                    }
                    if self.rng.f64() < self.spec.gap_prob {
                        s.silent_until = t + self.rng.i64(30_000..120_000);
                        continue;
                    }
                    let mut v = s.base
                        + s.wave_amp * (s.wave_phase + std::f64::consts::TAU * t as f64 / s.wave_period_ms).sin()
                        + s.noise * (self.rng.f64() + self.rng.f64() - 1.0);
                    if a.drifting && si == 0 {
                        // A 3-minute sawtooth that climbs to ~95% of the range.
                        let phase = (elapsed % DRIFT_PERIOD_MS) / DRIFT_PERIOD_MS;
                        v += (s.lo + 0.95 * s.span - s.base) * phase;
                    }
                    if s.spike_left == 0 && self.rng.f64() < self.spec.spike_prob {
                        s.spike_left = self.rng.u32(3..10);
                    }
                    if s.spike_left > 0 {
                        s.spike_left -= 1;
                        v = s.lo + s.span * (0.85 + 0.13 * self.rng.f64());
                    }
                    let v = v.clamp(s.lo, s.lo + s.span);
                    let ts = if jitter > 0 { t - self.rng.i64(0..=jitter) } else { t };
                    events.push(Event {
                        ts,
                        value: (v * 1000.0).round() / 1000.0,
                        sensor: si as u16,
                        source: self.source,
                        origin: 0,
                        redelivered: false,
                        replayed: false,
                    });
                }
            }
            if let (Some(mode), Some(m)) = (&mut self.model, &mut a.model) {
                read_model(mode, m, &a.id, self.source, jitter, &mut self.rng, &mut events);
            }
            if !events.is_empty() {
                n += events.len() as u64;
                groups.push(Group {
                    asset: a.id.clone(),
                    entry: a.entry,
                    events,
                });
            }
        }
        (groups, n)
    }

    /// Produces samples in real time until `stop` or a closed flow.
    pub fn run(mut self, flow: &Flow, out: &Sender<DecodedChunk>, stop: &AtomicBool) {
        let mut seq = 0u64;
        let mut next = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let permit = match flow.acquire_timeout(Duration::from_millis(100)) {
                Ok(p) => p,
                Err(AcquireError::Timeout) => continue,
                Err(AcquireError::Closed) => break,
            };
            let (groups, n) = self.tick(now_ms());
            // The truth is readable as it goes (a demo tails it).
            if let Some(mode) = self.model.as_mut() {
                if let Some(Err(e)) = mode.truth.as_mut().map(|w| w.flush()) {
                    tracing::warn!(error = %e, "simulator: writing the true state failed; it is no longer written");
                    mode.truth = None;
                }
            }
            if n > 0 {
                let mut chunk = DecodedChunk::empty(self.source, seq, 0, 0);
                chunk.records = n;
                chunk.events = n;
                chunk.groups = groups;
                chunk.permit = Some(permit);
                if out.send(chunk).is_err() {
                    return;
                }
                seq += 1;
            }
            next += TICK;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                next = now;
            }
        }
        if let Some(w) = self.model.as_mut().and_then(|m| m.truth.as_mut()) {
            if let Err(e) = w.flush() {
                tracing::warn!(error = %e, "simulator: writing the true state failed");
            }
        }
        let mut last = DecodedChunk::empty(self.source, seq, 0, 0);
        last.last = true;
        let _ = out.send(last);
    }
}

/// The true state alongside a reading (`model.truth`).
#[derive(serde::Serialize)]
struct TruthLine<'a> {
    asset: &'a str,
    sensor: &'a str,
    /// The reading's event time.
    ts: i64,
    /// The reading.
    value: f64,
    /// What the sensor would read without noise or fault.
    truth: f64,
    /// The model's states.
    states: std::collections::BTreeMap<&'a str, f64>,
    /// The fault the reading carries.
    fault: Option<&'static str>,
}

/// Reads the model-observed samples due this tick, in time order.
fn read_model(
    mode: &mut ModelMode,
    m: &mut ModelAsset,
    asset: &str,
    source: u16,
    jitter: i64,
    rng: &mut fastrand::Rng,
    events: &mut Vec<Event>,
) {
    mode.due.sort_unstable();
    let fm = &mode.fm;
    let inputs = vec![f64::NAN; fm.inputs.len()];
    for &(t, sensor, k) in &mode.due {
        m.truth.advance(fm, t, &inputs);
        let fault = m.faults.at(t);
        let kind = fault.as_ref().filter(|f| f.observation == k).map(|f| f.kind.name());
        let value = (m.truth.read(fm, k, fault) * 1e6).round() / 1e6;
        let ts = if jitter > 0 { t - rng.i64(0..=jitter) } else { t };
        events.push(Event {
            ts,
            value,
            sensor,
            source,
            origin: 0,
            redelivered: false,
            replayed: false,
        });
        if let Some(w) = mode.truth.as_mut() {
            let line = TruthLine {
                asset,
                sensor: &mode.sensor_names[sensor as usize],
                ts,
                value,
                truth: m.truth.value(fm, k),
                states: fm
                    .states
                    .iter()
                    .map(|s| &**s)
                    .zip(m.truth.state().iter().copied())
                    .collect(),
                fault: kind,
            };
            let written = serde_json::to_writer(&mut *w, &line)
                .map_err(std::io::Error::from)
                .and_then(|()| w.write_all(b"\n"));
            if let Err(e) = written {
                tracing::warn!(error = %e, "simulator: writing the true state failed; it is no longer written");
                mode.truth = None;
            }
        }
    }
    mode.due.clear();
}
