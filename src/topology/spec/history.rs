//! `history:` of an asset type: which series the twin keeps the past of,
//! in which tiers, for how long.

use std::time::Duration;

/// Retention of the raw tier when `history: on` leaves it out.
pub const DEFAULT_RAW_KEEP: Duration = Duration::from_secs(3600);
/// Downsampled tiers when `history: on` leaves them out: `(every, keep)`.
pub const DEFAULT_TIERS: [(Duration, Duration); 2] = [
    (Duration::from_secs(60), Duration::from_secs(7 * 86_400)),
    (Duration::from_secs(3600), Duration::from_secs(365 * 86_400)),
];
/// Retention of alert transitions and commands when left out.
pub const DEFAULT_EVENTS_KEEP: Duration = Duration::from_secs(30 * 86_400);
/// The most downsampled tiers a type declares.
pub const MAX_TIERS: usize = 6;

/// Disk per downsampled bucket after compaction (LZ4), measured on a day of
/// a noisy 1 Hz signal in a 1-minute tier (`scripts/bench-history.sh`;
/// BENCHMARKS.md "History"): what `check` and the metric estimate with.
pub const BUCKET_BYTES: f64 = 41.2;
/// Disk per reading of the raw tier, measured the same way.
pub const RAW_READING_BYTES: f64 = 8.75;

const DAY_MS: f64 = 86_400_000.0;

/// A retention or width as written: in the largest of `d`, `h`, `m`, `s`
/// that divides it (`365d`, `90m`), else milliseconds.
pub fn span_text(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, name) in [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")] {
        if ms >= unit && ms.is_multiple_of(unit) {
            return format!("{}{name}", ms / unit);
        }
    }
    format!("{ms}ms")
}

/// What one series is expected to take on disk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Footprint {
    /// Bytes written per day (every tier).
    pub per_day: f64,
    /// Bytes held once every tier is full (its whole retention).
    pub retained: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistorySpec {
    /// What is kept, in declaration order.
    pub series: Vec<SeriesSpec>,
    /// Retention of every reading (the raw tier); `None`: no raw tier.
    pub raw: Option<Duration>,
    /// Downsampled tiers, finest first (`every` strictly increasing).
    pub tiers: Vec<TierSpec>,
    /// Retention of alert transitions and commands; `None`: not kept.
    pub events: Option<Duration>,
}

impl HistorySpec {
    /// The expected disk use of a series read every `every` (a bucket
    /// holds at least one reading, so a tier finer than the readings costs
    /// a bucket per reading).
    pub fn footprint(&self, every: Duration) -> Footprint {
        let every_ms = (every.as_secs_f64() * 1000.0).max(1.0);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut f = Footprint {
            per_day: 0.0,
            retained: 0.0,
        };
        if let Some(keep) = self.raw {
            f.per_day += DAY_MS / every_ms * RAW_READING_BYTES;
            f.retained += ms(keep) / every_ms * RAW_READING_BYTES;
        }
        for t in &self.tiers {
            let width = ms(t.every).max(every_ms);
            f.per_day += DAY_MS / width * BUCKET_BYTES;
            f.retained += ms(t.keep) / width * BUCKET_BYTES;
        }
        f
    }
}

impl super::AssetType {
    /// What one of its series is expected to take on disk, with the period
    /// assumed: the kept sensors' nominal period (`expected_every`, the
    /// fastest) where declared, else a reading a second.
    pub fn history_footprint(&self) -> Option<(Duration, Footprint)> {
        let h = self.history.as_ref()?;
        let every = h
            .series
            .iter()
            .filter_map(|x| match x.of {
                SeriesOf::Sensor(i) => self.sensors[i].expected_every,
                SeriesOf::Estimate(_) => None,
            })
            .min()
            .unwrap_or(Duration::from_secs(1));
        Some((every, h.footprint(every)))
    }
}

/// One series: a sensor (measured or derived) or a state of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSpec {
    /// The sensor's name, or `est.<state>`.
    pub name: String,
    pub of: SeriesOf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesOf {
    /// Index into the type's sensors.
    Sensor(usize),
    /// Index into the model's states: the estimate after each reading the
    /// model takes, at that reading's event time.
    Estimate(usize),
}

/// A downsampled tier: buckets `every` wide, kept for `keep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierSpec {
    pub every: Duration,
    pub keep: Duration,
}
