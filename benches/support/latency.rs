//! Latency figures of a paced run: the paced publisher, what it did, and
//! the percentiles of the latencies measured meanwhile. Needs `system.rs`,
//! included as `mod system`.
#![allow(dead_code)] // each benchmark uses what it needs

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::system::epoch_ms;

/// Publishes round-robin over `pairs` (asset, sensor) pairs at `rate`
/// messages/s for `secs` through `send(pair, ts, value)`: `ts` is the
/// wall-clock ms at the call (strictly increasing per pair, never below
/// `start_ms`), values cycle through 0-99.99.
pub fn paced(
    pairs: usize,
    rate: f64,
    secs: f64,
    start_ms: i64,
    mut send: impl FnMut(usize, i64, f64) -> Result<()>,
) -> Result<Paced> {
    let mut last = vec![i64::MIN; pairs];
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(secs);
    let mut k = 0u64;
    loop {
        let due = t0 + Duration::from_secs_f64(k as f64 / rate);
        if due >= end {
            break;
        }
        let now = Instant::now();
        // Pacing, not synchronisation: at most 1 ms ahead of schedule.
        if due > now + Duration::from_millis(1) {
            std::thread::sleep(due - now);
        }
        let pair = (k % pairs as u64) as usize;
        let ts = epoch_ms().max(last[pair] + 1).max(start_ms);
        last[pair] = ts;
        send(pair, ts, (k % 10_000) as f64 / 100.0)?;
        k += 1;
    }
    let last_publish = Instant::now();
    Ok(Paced {
        published: k,
        last,
        elapsed: last_publish - t0,
        last_publish,
    })
}

/// What a paced publisher ([`paced`]) published.
pub struct Paced {
    pub published: u64,
    /// The last `ts` of each (asset, sensor).
    pub last: Vec<i64>,
    pub elapsed: Duration,
    /// When the last publish call returned.
    pub last_publish: Instant,
}

/// Latencies publish -> received of one paced run, in ms.
pub struct Latency {
    pub target_rate: f64,
    pub published: u64,
    pub secs: f64,
    /// How long after the last publish call its PUBACK came (MQTT).
    pub puback_lag_ms: Option<f64>,
    pub values: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// The figures of `v`; `last_puback`: when the last PUBACK came (MQTT).
    pub fn new(mut v: Vec<f64>, target_rate: f64, run: &Paced, last_puback: Option<Instant>) -> Result<Latency> {
        if v.is_empty() {
            bail!("no latency measured");
        }
        v.sort_by(f64::total_cmp);
        Ok(Latency {
            target_rate,
            published: run.published,
            secs: run.elapsed.as_secs_f64(),
            puback_lag_ms: last_puback.map(|at| at.saturating_duration_since(run.last_publish).as_secs_f64() * 1e3),
            values: v.len(),
            p50: percentile(&v, 50.0),
            p90: percentile(&v, 90.0),
            p99: percentile(&v, 99.0),
            p999: percentile(&v, 99.9),
            max: v[v.len() - 1],
        })
    }

    fn rate(&self) -> f64 {
        self.published as f64 / self.secs
    }

    pub fn describe(&self, what: &str) -> String {
        let lag = self.puback_lag_ms.map_or(String::new(), |ms| {
            format!("; the last PUBACK {ms:.1} ms after the last publish")
        });
        format!(
            "{} messages in {:.1} s at {:.0} msg/s (target {:.0}{lag}); \
             {} {what}: p50 **{:.2} ms**, p90 {:.2} ms, p99 **{:.2} ms**, p99.9 **{:.2} ms**, max {:.2} ms",
            self.published,
            self.secs,
            self.rate(),
            self.target_rate,
            self.values,
            self.p50,
            self.p90,
            self.p99,
            self.p999,
            self.max
        )
    }

    /// "p50 / p99 / p99.9 / max".
    pub fn cells(&self) -> String {
        format!("{:.2} / {:.2} / {:.2} / {:.2}", self.p50, self.p99, self.p999, self.max)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
