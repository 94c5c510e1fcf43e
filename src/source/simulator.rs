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
//! It is seeded and deterministic given the same clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use compact_str::CompactString;
use crossbeam_channel::Sender;

use super::decode::AssetIndex;
use crate::pipeline::flow::{AcquireError, Flow};
use crate::pipeline::{now_ms, DecodedChunk, Group};
use crate::topology::{SimulatorSpec, Topology};
use crate::twin::model::Event;

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
}

struct AssetSim {
    id: CompactString,
    entry: u32,
    drifting: bool,
    sensors: Vec<SensorSim>,
}

pub struct Simulator {
    source: u16,
    spec: SimulatorSpec,
    assets: Vec<AssetSim>,
    rng: fastrand::Rng,
    started_ms: i64,
}

impl Simulator {
    pub fn new(topo: &Topology, source: u16, spec: &SimulatorSpec, index: &AssetIndex) -> Simulator {
        let mut rng = fastrand::Rng::with_seed(spec.seed);
        let ty = &topo.asset_types[spec.asset_type];
        let start = now_ms();
        let assets = (0..spec.count)
            .filter_map(|i| {
                let id = format!("{}{:0w$}", spec.prefix, i, w = spec.digits);
                let entry = index.resolve(&id)?;
                let drifting = rng.f64() < spec.drift_frac;
                let sensors = ty
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
                        }
                    })
                    .collect();
                Some(AssetSim {
                    id: id.into(),
                    entry,
                    drifting,
                    sensors,
                })
            })
            .collect();
        Simulator {
            source,
            spec: spec.clone(),
            assets,
            rng,
            started_ms: start,
        }
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
                if !self.spec.sensors.is_empty() && !self.spec.sensors.contains(&si) {
                    continue;
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
                    });
                }
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
        let mut last = DecodedChunk::empty(self.source, seq, 0, 0);
        last.last = true;
        let _ = out.send(last);
    }
}
