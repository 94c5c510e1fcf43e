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
