//! Latency figures of a paced run: what the paced publisher did, and the
//! percentiles of the latencies measured meanwhile.
#![allow(dead_code)] // each benchmark uses what it needs

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// What a paced publisher (`paced` in `benches/mqtt.rs`) published.
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
    /// How long after the last publish call its PUBACK came.
    pub puback_lag_ms: f64,
    pub values: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    pub fn new(mut v: Vec<f64>, target_rate: f64, run: &Paced, last_puback: Instant) -> Result<Latency> {
        if v.is_empty() {
            bail!("no latency measured");
        }
        v.sort_by(f64::total_cmp);
        Ok(Latency {
            target_rate,
            published: run.published,
            secs: run.elapsed.as_secs_f64(),
            puback_lag_ms: last_puback.saturating_duration_since(run.last_publish).as_secs_f64() * 1e3,
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
        format!(
            "{} messages in {:.1} s at {:.0} msg/s (target {:.0}; the last PUBACK {:.1} ms after the last publish); \
             {} {what}: p50 **{:.2} ms**, p90 {:.2} ms, p99 **{:.2} ms**, p99.9 {:.2} ms, max {:.2} ms",
            self.published,
            self.secs,
            self.rate(),
            self.target_rate,
            self.puback_lag_ms,
            self.values,
            self.p50,
            self.p90,
            self.p99,
            self.p999,
            self.max
        )
    }

    pub fn cells(&self) -> String {
        format!("{:.2} / {:.2} / {:.2}", self.p50, self.p99, self.max)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
