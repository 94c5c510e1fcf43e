//! The replay report: workload v1's outputs (see `tests/workload/WORKLOAD.md`)
//! computed from the **durable** twin state.
//!
//! Every figure comes from twin records in the store (their counters, window
//! digests and latest values) and the source position stored with them, so a
//! replay that was killed and resumed reports exactly what an uninterrupted
//! run reports: nothing is counted twice or missed.

use serde::Serialize;

use crate::source::SourcePosition;
use crate::store::envelope::{self, EnvelopeError};
use crate::store::{Store, StoreError};
use crate::twin::model::ClosedDigest;
use crate::twin::record;

/// Meta keys of the replay digest: closed windows, one value per checkpoint.
pub const DIGEST_PREFIX: &str = "digest/";
const DIGEST_FORMAT: u16 = 1;

pub fn encode_digest(closed: &[ClosedDigest]) -> Vec<u8> {
    let mut buf = envelope::start(DIGEST_FORMAT, closed.len() * 24);
    bincode::serde::encode_into_std_write(closed, &mut buf, bincode::config::standard())
        .expect("writing to a Vec cannot fail");
    buf
}

pub fn decode_digest(bytes: &[u8]) -> Result<Vec<ClosedDigest>, EnvelopeError> {
    let payload = envelope::open(bytes, DIGEST_FORMAT, "window digest")?;
    bincode::serde::decode_from_slice(payload, crate::store::envelope::bincode_config())
        .map(|(v, _)| v)
        .map_err(|e| EnvelopeError::Corrupt(format!("window digest: {e}")))
}

/// The sum of window averages in the order one global stream emits them:
/// by window end, then by the position of the event that opened the window
/// (`reference.py`'s order), added one by one in `f64` and rounded like
/// Python's `round(x, 3)`. Summing in this exact order matters: averages are
/// often multiples of 1/640, so the exact sum can sit on a rounding tie that
/// only the accumulated error of this order decides.
fn sum_avg(store: &Store) -> Result<f64, StoreError> {
    let mut closed = Vec::new();
    store.for_each_meta(DIGEST_PREFIX, |key, bytes| {
        let part = decode_digest(bytes).map_err(|source| StoreError::Envelope {
            key: key.to_string(),
            cause: source,
        })?;
        closed.extend(part);
        Ok(())
    })?;
    closed.sort_unstable_by_key(|c| (c.last_ms, c.first_origin));
    let sum = closed.iter().fold(0.0f64, |acc, c| acc + c.avg);
    // format! rounds the exact binary value correctly, like Python's round().
    Ok(format!("{sum:.3}").parse().unwrap_or(f64::NAN))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Events applied to twins.
    pub events: u64,
    /// Windows closed (emitted).
    pub windows: u64,
    /// Rule firings: evaluations that held (an alert raised or re-fired).
    pub alerts: u64,
    /// Events dropped from windows that had already closed.
    pub late: u64,
    pub sum_count: u64,
    pub sum_value_x64: i64,
    pub sum_max_x64: i64,
    pub sum_avg: f64,
    pub latest_keys: u64,
    pub latest_value_x64: i64,
    pub latest_ts_sum: i64,
    /// Records read, including dead-lettered ones.
    pub records: u64,
    pub dead_letters: u64,
    pub twins: u64,
    /// The replay reached the end of the file.
    pub complete: bool,
    /// This process: events routed, wall time and rate.
    pub run_events: u64,
    pub run_seconds: f64,
    pub events_per_second: f64,
    /// Line this process started from (0 = the beginning; more = resumed).
    pub resumed_from_line: u64,
    /// What durable history holds (types with `history:`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryReport>,
}

/// Durable history within retention, summed over every twin, series and
/// tier: downsampled buckets, and the raw tier's readings. Values are
/// multiples of 1/64 in workload v1, so `*_x64` sums are exact integers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HistoryReport {
    pub history_buckets: u64,
    pub history_count: u64,
    pub history_sum_x64: i64,
    pub history_min_x64: i64,
    pub history_max_x64: i64,
    pub history_first_x64: i64,
    pub history_last_x64: i64,
    pub history_first_ts_sum: i64,
    pub history_last_ts_sum: i64,
    pub history_raw: u64,
    pub history_raw_x64: i64,
    pub history_raw_ts_sum: i64,
    /// The history column families' table files, bytes (not a conformance
    /// field: it depends on flushes and compactions; `replay --compact`
    /// measures it after a full compaction).
    pub history_disk_bytes: u64,
}

/// One row of `--history-out`: `asset,series,width,start,count,sum,min,max,
/// first_ts,first,last_ts,last`, values times 64 (a raw reading is a
/// bucket of width 0 holding one).
pub type HistoryRow = (String, String, i64, i64, u64, i64, i64, i64, i64, i64, i64, i64);

fn x64(v: f64) -> i64 {
    (v * 64.0) as i64
}

/// Durable history of `shard` within retention (as the API shows it), and
/// its rows when `rows` is given.
pub fn history(
    store: &Store,
    shard: u32,
    mut rows: Option<&mut Vec<HistoryRow>>,
) -> Result<Option<HistoryReport>, StoreError> {
    use crate::store::history::page::span;
    let clock = store.history_clock().get();
    let mut h = HistoryReport::default();
    let mut any = false;
    store.for_each_page(shard, |asset, series, width, start, page| {
        any = true;
        let keep = page.expires - start - span(width);
        let visible_from = clock.saturating_sub(keep);
        for (ts, v) in &page.readings {
            if *ts > visible_from {
                h.history_raw += 1;
                h.history_raw_x64 += x64(*v);
                h.history_raw_ts_sum += ts;
                if let Some(rows) = rows.as_deref_mut() {
                    let v = x64(*v);
                    rows.push((asset.into(), series.into(), 0, *ts, 1, v, v, v, *ts, v, *ts, v));
                }
            }
        }
        for (i, b) in &page.buckets {
            let t = start + i64::from(*i) * width;
            if t + width <= visible_from {
                continue;
            }
            h.history_buckets += 1;
            h.history_count += b.count;
            h.history_sum_x64 += x64(b.sum);
            h.history_min_x64 += x64(b.min);
            h.history_max_x64 += x64(b.max);
            h.history_first_x64 += x64(b.first);
            h.history_last_x64 += x64(b.last);
            h.history_first_ts_sum += b.first_ts;
            h.history_last_ts_sum += b.last_ts;
            if let Some(rows) = rows.as_deref_mut() {
                rows.push((
                    asset.into(),
                    series.into(),
                    width,
                    t,
                    b.count,
                    x64(b.sum),
                    x64(b.min),
                    x64(b.max),
                    b.first_ts,
                    x64(b.first),
                    b.last_ts,
                    x64(b.last),
                ));
            }
        }
        Ok(())
    })?;
    h.history_disk_bytes = store.history_disk_bytes(shard);
    Ok(any.then_some(h))
}

/// Folds every twin of `shard` and the position of `source` into a report.
pub fn build(store: &Store, shard: u32, source: &str) -> Result<Report, StoreError> {
    let mut r = Report {
        events: 0,
        windows: 0,
        alerts: 0,
        late: 0,
        sum_count: 0,
        sum_value_x64: 0,
        sum_max_x64: 0,
        sum_avg: 0.0,
        latest_keys: 0,
        latest_value_x64: 0,
        latest_ts_sum: 0,
        records: 0,
        dead_letters: 0,
        twins: 0,
        complete: false,
        run_events: 0,
        run_seconds: 0.0,
        events_per_second: 0.0,
        resumed_from_line: 0,
        history: history(store, shard, None)?,
    };
    store.for_each_twin(shard, |key, bytes| {
        let rec = record::decode(bytes).map_err(|source| StoreError::Envelope {
            key: key.to_string(),
            cause: source,
        })?;
        let s = rec.stats;
        r.twins += 1;
        r.events += s.events;
        r.windows += s.windows;
        r.alerts += s.firings;
        r.late += s.late;
        r.sum_count += s.window_count_sum;
        r.sum_value_x64 += s.window_sum_x64;
        r.sum_max_x64 += s.window_max_x64;
        for (_, latest) in rec.latest() {
            r.latest_keys += 1;
            r.latest_value_x64 += (latest.value * 64.0) as i64;
            r.latest_ts_sum += latest.ts;
        }
        Ok(())
    })?;
    r.sum_avg = sum_avg(store)?;
    if let Some(bytes) = store.get_meta(&SourcePosition::meta_key(source))? {
        let p = SourcePosition::decode(&bytes).map_err(|error| StoreError::Envelope {
            key: SourcePosition::meta_key(source),
            cause: error,
        })?;
        r.records = p.records;
        r.dead_letters = p.dead_letters;
        r.complete = p.finished;
    }
    Ok(r)
}
