//! The end-to-end benchmarks' pumps and what twinstream says about them:
//! `pump-NNN` assets of four sensors, the twin updates and alerts on
//! twinstream's stdout sink, and the latencies read from them (publish ->
//! the line read). Shared by `benches/mqtt.rs` and `benches/kafka.rs`;
//! needs `twinstream.rs`, included as `mod twinstream`.
#![allow(dead_code)] // each benchmark uses what it needs

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use crate::twinstream::{Line, Tracks};

pub const SENSORS: [&str; 4] = ["temperature", "vibration", "pressure", "current"];

/// The rule whose alerts are timed: a raw reading of `vibration` above 95
/// raises it, the next one at or below clears it. The paced publishers'
/// values cycle through 0-99.99, so about one vibration reading in ten
/// makes a transition.
pub const SPIKE_RULE: &str = r#"  - name: vibration-spike
    when: "vibration > 95"
"#;

/// The sensor [`SPIKE_RULE`] reads.
pub const SPIKE_SENSOR: usize = 1;

/// Latency past which a twin update counts as slow ([`Tracker::slow`]).
pub const SLOW_MS: f64 = 50.0;

/// The slow stretches of `slow` (twin update lines read with a value older
/// than [`SLOW_MS`], by wall ms): "HH:MM:SS.mmm +D ms (worst W ms)", one per
/// stretch of lines less than a second apart.
pub fn stalls(slow: &[(f64, f64)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < slow.len() {
        let (start, mut worst) = slow[i];
        let mut end = start;
        i += 1;
        while i < slow.len() && slow[i].0 - end < 1000.0 {
            end = slow[i].0;
            worst = worst.max(slow[i].1);
            i += 1;
        }
        let ms = start as i64 % 86_400_000;
        out.push(format!(
            "{:02}:{:02}:{:02}.{:03} UTC +{:.0} ms (worst {worst:.0} ms)",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000,
            end - start
        ));
    }
    out
}

/// The asset of pump number `a`.
pub fn asset(a: usize) -> String {
    format!("pump-{a:03}")
}

/// The sensors of the pump type, as a topology's `sensors:` block.
pub fn sensors_yaml() -> String {
    SENSORS
        .iter()
        .zip(["degC", "mm/s", "bar", "A"])
        .map(|(s, unit)| format!("      {s}: {{ unit: {unit} }}\n"))
        .collect()
}

/// One line of the stdout sink (`twin_updates` and `alerts`).
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Out {
    TwinUpdate {
        asset: String,
        version: u64,
        sensors: HashMap<String, Reading>,
    },
    Alert {
        asset: String,
        rule: String,
        /// The event time of the reading that made the transition.
        ts: i64,
    },
}

#[derive(Deserialize)]
struct Reading {
    ts: i64,
}

/// What the twin updates and alerts have shown so far.
pub struct Tracker {
    /// Newest `ts` seen per (asset, sensor).
    seen: Vec<i64>,
    /// The `ts` each pair must reach (`i64::MIN`: nothing expected).
    target: Vec<i64>,
    /// Pairs whose newest `ts` is still below their target.
    pub missing: usize,
    /// When the last missing pair arrived.
    pub completed_at: Option<Instant>,
    /// Newest version per asset (a twin's version counts its applied events).
    versions: Vec<u64>,
    /// Latencies are recorded for readings and alerts with `ts` at or after this.
    pub latency_from: i64,
    /// Sensor values in twin updates: read - `ts`, ms.
    pub latencies: Vec<f64>,
    /// Twin update lines that carried a value older than [`SLOW_MS`]: when
    /// read (wall ms) and the oldest value's latency.
    pub slow: Vec<(f64, f64)>,
    /// Alert transitions per rule: read - the `ts` that caused them, ms.
    pub alert_latencies: HashMap<String, Vec<f64>>,
    /// With [`Self::arrivals`] on: when each (asset, sensor)'s reading `ts`
    /// showed up in a twin update, and when alerts of [`SPIKE_RULE`]
    /// caused by one did (to compare with when another consumer got it).
    pub arrivals: Option<Arrivals>,
}

/// When readings showed up, by (pair, `ts`): wall ms.
#[derive(Default)]
pub struct Arrivals {
    pub updates: Vec<(usize, i64, f64)>,
    pub alerts: Vec<(usize, i64, f64)>,
}

impl Tracker {
    pub fn new(assets: usize) -> Tracker {
        let pairs = assets * SENSORS.len();
        Tracker {
            seen: vec![i64::MIN; pairs],
            target: vec![i64::MIN; pairs],
            missing: 0,
            completed_at: None,
            versions: vec![0; assets],
            latency_from: i64::MAX,
            latencies: Vec::new(),
            slow: Vec::new(),
            alert_latencies: HashMap::new(),
            arrivals: None,
        }
    }

    pub fn pairs(&self) -> usize {
        self.seen.len()
    }

    /// Events applied so far, over all twins.
    pub fn events(&self) -> u64 {
        self.versions.iter().sum()
    }

    pub fn expect(&mut self, target: Vec<i64>) {
        self.missing = self.seen.iter().zip(&target).filter(|(s, t)| s < t).count();
        self.target = target;
        self.completed_at = None;
    }

    /// The alert latencies of `rule` recorded so far, taken.
    pub fn take_alerts(&mut self, rule: &str) -> Vec<f64> {
        self.alert_latencies.remove(rule).unwrap_or_default()
    }
}

/// The number of pump `asset` (of `line`), one of `assets`.
fn asset_no(assets: usize, asset: &str, line: &Line) -> Result<usize> {
    asset
        .strip_prefix("pump-")
        .and_then(|n| n.parse().ok())
        .filter(|a| *a < assets)
        .ok_or_else(|| anyhow!("unexpected asset in {}", line.text))
}

impl Tracks for Tracker {
    fn missing(&self) -> usize {
        self.missing
    }

    fn take(&mut self, line: &Line) -> Result<()> {
        let out: Out = serde_json::from_str(&line.text)
            .with_context(|| format!("neither a twin update nor an alert: {}", line.text))?;
        let (asset, version, sensors) = match out {
            Out::TwinUpdate {
                asset,
                version,
                sensors,
            } => (asset, version, sensors),
            Out::Alert { asset, rule, ts } => {
                if ts >= self.latency_from {
                    let assets = self.versions.len();
                    if let Some(a) = self.arrivals.as_mut().filter(|_| rule == "vibration-spike") {
                        let pair = asset_no(assets, &asset, line)? * SENSORS.len() + SPIKE_SENSOR;
                        a.alerts.push((pair, ts, line.wall_ms));
                    }
                    self.alert_latencies
                        .entry(rule)
                        .or_default()
                        .push(line.wall_ms - ts as f64);
                }
                return Ok(());
            }
        };
        let asset = asset_no(self.versions.len(), &asset, line)?;
        self.versions[asset] = self.versions[asset].max(version);
        let mut oldest = 0.0f64;
        for (name, r) in &sensors {
            let Some(s) = SENSORS.iter().position(|x| x == name) else {
                bail!("unexpected sensor in {}", line.text);
            };
            let pair = asset * SENSORS.len() + s;
            if r.ts >= self.latency_from {
                let latency = line.wall_ms - r.ts as f64;
                oldest = oldest.max(latency);
                self.latencies.push(latency);
                if let Some(a) = &mut self.arrivals {
                    a.updates.push((pair, r.ts, line.wall_ms));
                }
            }
            let (old, target) = (self.seen[pair], self.target[pair]);
            if r.ts > old {
                self.seen[pair] = r.ts;
                if old < target && r.ts >= target {
                    self.missing -= 1;
                    if self.missing == 0 {
                        self.completed_at = Some(line.at);
                    }
                }
            }
        }
        if oldest > SLOW_MS {
            self.slow.push((line.wall_ms, oldest));
        }
        Ok(())
    }
}
