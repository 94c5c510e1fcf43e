//! A workload-v1 pump twin for the benchmarks of the pure model and of
//! checkpoints: its topology, its type model, and the event stream one asset
//! of `gen_workload.py` produces, fed in batches.
#![allow(dead_code)] // each benchmark uses what it needs

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use twinstream::topology::{self, OutputKind};
use twinstream::twin::model::{apply, Event, Input, Output, TwinState};
use twinstream::twin::schema::{Model, OutputMask, TypeModel};

pub const BASE_TS: i64 = 1_700_000_000_000;
pub const SENSORS: usize = 4;
pub const PERIOD_MS: i64 = 100;
/// Event time covered by the pre-generated stream; a multiple of the window
/// slide, so shifting the stream by it keeps windows aligned.
pub const TICKS: i64 = 1600;
pub const SPAN_MS: i64 = TICKS * PERIOD_MS;

pub fn topology_text(windows: &str, rule: &str, model: &str) -> String {
    format!(
        r#"version: 1
asset_types:
  pump:
    sensors:
      vibration:   {{ unit: mm/s, noise: 0.5 }}
      temperature: {{ unit: degC }}
      pressure:    {{ unit: bar }}
      current:     {{ unit: A }}
    watermark:
      out_of_orderness: 200ms
{model}
assets:
  - id: pump-*
    type: pump
sources:
  - name: events
    type: file
    decode: {{ asset: asset, sensor: sensor, ts: ts, value: value }}
windows:
{windows}
rules:
  - name: vibration-high
    when: "{rule}"
    severity: warning
"#
    )
}

pub fn type_model(windows: &str, rule: &str) -> Arc<TypeModel> {
    with_model(windows, rule, "")
}

/// The same with `model` under the asset type (e.g. `    model: {...}`).
pub fn with_model(windows: &str, rule: &str, model: &str) -> Arc<TypeModel> {
    let text = topology_text(windows, rule, model);
    let topo = topology::parse(Path::new("bench.yaml"), &text).unwrap_or_else(|d| panic!("{d}"));
    let mask = OutputMask::default().with(OutputKind::Alerts);
    Model::build(&topo, mask, true).types[0].clone()
}

/// splitmix64: deterministic, no extra crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

/// One twin's events over `TICKS` sampling periods, in arrival order.
pub fn twin_events(seed: u64) -> Vec<Event> {
    let mut rng = Rng(seed);
    let base = [5.5, 60.0, 5.0, 35.0];
    let noise = [0.6, 1.0, 0.2, 1.5];
    let mut phases: Vec<(i64, u16)> = (0..SENSORS as u16).map(|s| (rng.range(0, PERIOD_MS - 1), s)).collect();
    phases.sort_unstable();
    let mut events = Vec::with_capacity(TICKS as usize * SENSORS);
    for k in 0..TICKS {
        for &(phase, s) in &phases {
            let nominal = k * PERIOD_MS + phase;
            let t = if nominal >= 3000 && rng.next().is_multiple_of(2000) {
                nominal - rng.range(2000, 3000)
            } else {
                (nominal + rng.range(-50, 50)).max(0)
            };
            let i = s as usize;
            let mut v = base[i] + noise[i] * (rng.unit() + rng.unit() - 1.0);
            if i == 0 {
                // crosses 7.0 a few times over the stream
                v += 2.5 * (t as f64 / 20_000.0 * std::f64::consts::TAU).sin();
            }
            let v = (v.max(0.0) * 64.0).round() / 64.0;
            events.push(Event {
                ts: BASE_TS + t,
                value: v,
                sensor: s,
                source: 0,
                origin: events.len() as u64 + 1,
                redelivered: false,
                replayed: false,
            });
        }
    }
    events
}

/// Feeds one twin its stream in batches of `batch`, forever (the stream is
/// shifted by its span on every wrap, so windows keep closing).
pub struct Feeder<'m> {
    pub m: &'m TypeModel,
    pub st: TwinState,
    pub events: Vec<Event>,
    pub pos: usize,
    pub out: Vec<Output>,
}

impl<'m> Feeder<'m> {
    pub fn new(m: &'m TypeModel) -> Self {
        Self::with_seed(m, 42)
    }

    /// A twin fed the stream of seed `seed` (each asset its own).
    pub fn with_seed(m: &'m TypeModel, seed: u64) -> Self {
        Feeder {
            m,
            st: TwinState::new(m),
            events: twin_events(seed),
            pos: 0,
            out: Vec::with_capacity(64),
        }
    }

    #[inline]
    pub fn step(&mut self, batch: usize) {
        if self.pos + batch > self.events.len() {
            for e in &mut self.events {
                e.ts += SPAN_MS;
            }
            self.pos = 0;
        }
        let events = &self.events[self.pos..self.pos + batch];
        apply(self.m, &mut self.st, Input::Events(events), 0, &mut self.out);
        self.pos += batch;
        black_box(self.out.len());
        self.out.clear();
        // replay moves the digest into each checkpoint; do it every batch
        self.st.take_digest(|d| {
            black_box(d.len());
        });
    }
}

/// Many twins, each fed one of a few shared streams from its own place
/// (a stream is ~250 KB: one per twin would not fit 100k twins in memory).
pub struct Fleet<'m> {
    pub m: &'m TypeModel,
    streams: Vec<Vec<Event>>,
    pub twins: Vec<FleetTwin>,
    batch: Vec<Event>,
    out: Vec<Output>,
}

pub struct FleetTwin {
    pub st: TwinState,
    stream: usize,
    pos: usize,
    /// Times the twin went through its stream: its event times are shifted
    /// by that many spans.
    laps: i64,
}

impl<'m> Fleet<'m> {
    /// `twins` twins over `streams` distinct streams.
    pub fn new(m: &'m TypeModel, twins: usize, streams: usize) -> Self {
        Fleet {
            m,
            streams: (0..streams as u64).map(|s| twin_events(s + 1)).collect(),
            twins: (0..twins)
                .map(|i| FleetTwin {
                    st: TwinState::new(m),
                    stream: i % streams,
                    pos: 0,
                    laps: 0,
                })
                .collect(),
            batch: Vec::with_capacity(64),
            out: Vec::with_capacity(64),
        }
    }

    /// Applies the next `batch` events of twin `i`'s stream to it.
    #[inline]
    pub fn step(&mut self, i: usize, batch: usize) {
        let t = &mut self.twins[i];
        let events = &self.streams[t.stream];
        if t.pos + batch > events.len() {
            t.laps += 1;
            t.pos = 0;
        }
        let shift = t.laps * SPAN_MS;
        self.batch.clear();
        self.batch.extend(
            events[t.pos..t.pos + batch]
                .iter()
                .map(|e| Event { ts: e.ts + shift, ..*e }),
        );
        apply(self.m, &mut t.st, Input::Events(&self.batch), 0, &mut self.out);
        t.pos += batch;
        black_box(self.out.len());
        self.out.clear();
        t.st.take_digest(|d| {
            black_box(d.len());
        });
    }
}
