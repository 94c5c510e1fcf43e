//! `GET /twins/{id}/history`, `/twins/{id}/alerts/history` and
//! `/twins/{id}/commands/history`: the twin's past, read from the store
//! (durable history: what the last checkpoint holds, like `GET /twins/{id}`).
//!
//! A history query names its series (default: every series the type
//! keeps), a time range and a `step`; the coarsest tier whose buckets tile
//! the step serves it, re-aggregated to the step (`step=raw`: every
//! reading). Every series returns at most `max_points` points; when one
//! would return more, all stop before the same time and `next` says where
//! to go on.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Access;
use super::handlers::{owned_shard, stopped, AppState};
use super::{peers, ApiError};
use crate::engine::query::Catalog;
use crate::store::history::{series_prefix, Bucket, ALERT, COMMAND};
use crate::store::Store;
use crate::topology::span_text;
use crate::twin::model::HistoryModel;

const DEFAULT_RANGE_MS: i64 = 3_600_000;
const DEFAULT_MAX_POINTS: usize = 10_000;
const MAX_MAX_POINTS: usize = 100_000;
const DEFAULT_LIMIT: usize = 1000;

/// `GET /twins/{id}/history`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Series, comma-separated: sensor names or `est.<state>` (default:
    /// every series the type keeps).
    pub sensor: Option<String>,
    /// Start (inclusive): RFC 3339 or epoch ms. Default: `to` - 1h.
    pub from: Option<String>,
    /// End (exclusive): RFC 3339 or epoch ms. Default: just after the
    /// latest reading in history.
    pub to: Option<String>,
    /// Bucket width of the answer, like `1m` (a multiple of a tier's
    /// `every`), or `raw` for every reading. Default: the finest tier that
    /// still keeps `from`.
    pub step: Option<String>,
    /// Points per series at most (default 10000, at most 100000).
    pub max_points: Option<usize>,
}

/// `GET /twins/{id}/alerts/history` and `/commands/history`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Start (inclusive): RFC 3339 or epoch ms. Default: the beginning.
    pub from: Option<String>,
    /// End (exclusive). Default: the end.
    pub to: Option<String>,
    /// Entries per page (default 1000, at most 100000; entries of one
    /// millisecond stay on one page, which may then hold a few more);
    /// `next` continues.
    pub limit: Option<usize>,
}

/// One bucket of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PointView {
    /// Start of the bucket (epoch ms); a raw reading's event time.
    pub t: i64,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub first: f64,
    pub first_ts: i64,
    pub last: f64,
    pub last_ts: i64,
}

/// One raw reading.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ReadingPoint {
    pub t: i64,
    pub value: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesView {
    pub sensor: String,
    /// Buckets (a downsampled tier), in time order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points: Option<Vec<PointView>>,
    /// Readings (`step=raw`), in event-time order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readings: Option<Vec<ReadingPoint>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryView {
    pub asset: String,
    pub from: i64,
    pub to: i64,
    /// The answer's bucket width, ms (0: raw readings).
    pub step_ms: i64,
    /// The tier that served it: its `every` (0: raw) and `keep`, ms.
    pub tier_ms: i64,
    pub keep_ms: i64,
    /// The greatest reading time in durable history on this node:
    /// retention is measured back from it.
    pub clock: Option<i64>,
    pub series: Vec<SeriesView>,
    /// More points remain: ask again with `from` = this.
    pub next: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertHistoryView {
    pub asset: String,
    /// In time order.
    pub transitions: Vec<crate::twin::view::AlertTransitionView>,
    /// More remain: ask again with `from` = this.
    pub next: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommandHistoryView {
    pub asset: String,
    /// In order of issue, each as it is now (or was when history last
    /// heard of it).
    pub commands: Vec<crate::twin::view::CommandView>,
    pub next: Option<i64>,
}

/// Epoch ms or RFC 3339.
fn time(field: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(v)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{field}: `{v}` is neither epoch milliseconds nor an RFC 3339 time like `2026-12-04T10:00:00Z`"
            ))
        })
}

/// The twin's type's history, its store and shard; or the error to answer.
fn locate<'c>(c: &'c Catalog, asset: &str) -> Result<(&'c HistoryModel, std::sync::Arc<Store>, u32), ApiError> {
    let not_found = || ApiError::NotFound(format!("no twin `{asset}`"));
    let m = c.type_of(asset).ok_or_else(not_found)?;
    let h = m.history.as_ref().ok_or_else(|| {
        ApiError::NotFound(format!(
            "twin `{asset}` keeps no history: its type `{}` declares no `history:`",
            m.name
        ))
    })?;
    Ok((h, stopped(c.store())?, owned_shard(c, asset)?))
}

/// The tier `(width, keep)` that serves `step` (`None`: the default).
fn tier_for(h: &HistoryModel, step: Option<&str>, from: i64, clock: i64) -> Result<((i64, i64), i64), ApiError> {
    let tiers: Vec<(i64, i64)> = h.all_tiers().collect();
    let list = || {
        tiers
            .iter()
            .map(|(w, k)| {
                let w = if *w == 0 {
                    "raw".to_string()
                } else {
                    span_text(Duration::from_millis(*w as u64))
                };
                format!("{w} (kept {})", span_text(Duration::from_millis(*k as u64)))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match step {
        Some("raw") => {
            let raw = tiers.iter().find(|t| t.0 == 0).ok_or_else(|| {
                ApiError::BadRequest(format!("step=raw: the type keeps no raw tier; its tiers: {}", list()))
            })?;
            Ok((*raw, 0))
        }
        Some(s) => {
            let step = humantime::parse_duration(s)
                .ok()
                .and_then(|d| i64::try_from(d.as_millis()).ok())
                .filter(|ms| *ms > 0)
                .ok_or_else(|| ApiError::BadRequest(format!("step: `{s}` is not a duration like `1m`, nor `raw`")))?;
            let tier = tiers
                .iter()
                .rev()
                .find(|(w, _)| *w > 0 && step % w == 0)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "step: `{s}` is not a multiple of any tier's `every`; the tiers: {}",
                        list()
                    ))
                })?;
            Ok((*tier, step))
        }
        None => {
            // The finest tier that still keeps `from` (else the coarsest).
            let keeps = |(w, k): &(i64, i64)| from.saturating_add(*w) > clock.saturating_sub(*k);
            let tier = tiers
                .iter()
                .find(|t| keeps(t))
                .or(tiers.last())
                .ok_or_else(|| ApiError::NotFound("the type keeps no series".into()))?;
            Ok((*tier, tier.0))
        }
    }
}

/// Reads one series: up to `max + 1` points from `from` (the last tells
/// where the next page starts).
#[allow(clippy::too_many_arguments)]
fn read_series(
    store: &Store,
    shard: u32,
    asset: &str,
    series: &str,
    (width, keep): (i64, i64),
    step: i64,
    (from, to): (i64, i64),
    max: usize,
) -> Result<SeriesView, ApiError> {
    let clock = store.history_clock().get();
    let visible_from = clock.saturating_sub(keep);
    let prefix = series_prefix(asset, series, width);
    let internal = |e: crate::store::StoreError| ApiError::Internal(e.to_string());
    if width == 0 {
        let mut readings = Vec::new();
        store
            .history_pages(shard, &prefix, 0, from, to, |_, page| {
                for (t, value) in page.readings {
                    if t >= from && t < to && t > visible_from {
                        readings.push(ReadingPoint { t, value });
                    }
                }
                readings.len() <= max
            })
            .map_err(internal)?;
        return Ok(SeriesView {
            sensor: series.to_string(),
            points: None,
            readings: Some(readings),
        });
    }
    // Buckets of the tier, re-aggregated into steps (aligned to the epoch).
    let mut points: Vec<(i64, Bucket)> = Vec::new();
    store
        .history_pages(shard, &prefix, width, from, to, |start, page| {
            for (i, b) in &page.buckets {
                let t = start + i64::from(*i) * width;
                if t < from || t >= to || t + width <= visible_from {
                    continue;
                }
                let s = t.div_euclid(step) * step;
                match points.last_mut() {
                    Some((ps, acc)) if *ps == s => acc.combine(b),
                    _ => points.push((s, *b)),
                }
            }
            points.len() <= max
        })
        .map_err(internal)?;
    Ok(SeriesView {
        sensor: series.to_string(),
        points: Some(
            points
                .into_iter()
                .map(|(t, b)| PointView {
                    t,
                    count: b.count,
                    min: b.min,
                    max: b.max,
                    mean: b.mean(),
                    first: b.first,
                    first_ts: b.first_ts,
                    last: b.last,
                    last_ts: b.last_ts,
                })
                .collect(),
        ),
        readings: None,
    })
}

impl SeriesView {
    /// The time of point `i`.
    fn time_at(&self, i: usize) -> Option<i64> {
        match (&self.points, &self.readings) {
            (Some(p), _) => p.get(i).map(|p| p.t),
            (_, Some(r)) => r.get(i).map(|r| r.t),
            _ => None,
        }
    }

    fn len(&self) -> usize {
        self.points.as_ref().map_or(0, Vec::len) + self.readings.as_ref().map_or(0, Vec::len)
    }

    fn keep_before(&mut self, t: i64) {
        if let Some(p) = &mut self.points {
            p.retain(|p| p.t < t);
        }
        if let Some(r) = &mut self.readings {
            r.retain(|r| r.t < t);
        }
    }
}

/// A sensor's (or estimate's) past: buckets of count, min, max, mean,
/// first and last, or the raw readings. From durable history (what the
/// last checkpoint holds).
#[utoipa::path(get, path = "/twins/{id}/history", tag = "twins",
    params(("id" = String, Path, description = "Asset id"), HistoryQuery),
    responses((status = 200, body = HistoryView),
        (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody, description = "No such twin, or its type keeps no history")))]
pub async fn history(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    q: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Access::Read, "/twins/{id}/history")?;
    let asset = id.into_inner();
    let c = state.catalog()?;
    if c.index.resolve(&asset).is_none() {
        return Err(ApiError::NotFound(format!("no twin `{asset}`")));
    }
    if let Some(answer) = peers::to_owner(&state.peers, c, &req, &asset, None).await? {
        return Ok(answer);
    }
    let (h, store, shard) = locate(c, &asset)?;
    let clock = store.history_clock().get();
    let has_clock = clock != i64::MIN;
    let to = match &q.to {
        Some(v) => time("to", v)?,
        None if has_clock => clock.saturating_add(1),
        None => 0,
    };
    let from = match &q.from {
        Some(v) => time("from", v)?,
        None => to.saturating_sub(DEFAULT_RANGE_MS),
    };
    if from >= to {
        return Err(ApiError::BadRequest(format!("from ({from}) must be before to ({to})")));
    }
    let max = q.max_points.unwrap_or(DEFAULT_MAX_POINTS);
    if max == 0 || max > MAX_MAX_POINTS {
        return Err(ApiError::BadRequest(format!(
            "max_points: between 1 and {MAX_MAX_POINTS}"
        )));
    }
    let names: Vec<String> = match &q.sensor {
        Some(list) => list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => h.series.iter().map(|s| s.to_string()).collect(),
    };
    for n in &names {
        if !h.series.iter().any(|s| **s == **n) {
            let kept: Vec<&str> = h.series.iter().map(|s| &**s).collect();
            return Err(ApiError::BadRequest(format!(
                "sensor: twin `{asset}` keeps no history of `{n}`; it keeps: {}",
                kept.join(", ")
            )));
        }
    }
    if names.is_empty() {
        return Err(ApiError::BadRequest("sensor: name at least one series".into()));
    }
    let ((width, keep), step) = tier_for(h, q.step.as_deref(), from, clock)?;
    // Read and rendered on the blocking pool: the HTTP workers only send.
    let body = super::server::blocking(move || -> Result<Vec<u8>, ApiError> {
        let mut series = names
            .iter()
            .map(|n| read_series(&store, shard, &asset, n, (width, keep), step, (from, to), max))
            .collect::<Result<Vec<_>, _>>()?;
        // Every series stops before the same time: the first that has one
        // point too many says where.
        let next = series.iter().filter_map(|s| s.time_at(max)).min();
        if let Some(t) = next {
            for s in &mut series {
                s.keep_before(t);
            }
        }
        let points: usize = series.iter().map(SeriesView::len).sum();
        let view = HistoryView {
            asset,
            from,
            to,
            step_ms: step,
            tier_ms: width,
            keep_ms: keep,
            clock: has_clock.then_some(clock),
            series,
            next,
        };
        // Sized once: a 1,440-point answer is ~230 KB, grown by doubling it
        // would be copied ten times.
        let mut body = Vec::with_capacity(256 + points * 200);
        serde_json::to_writer(&mut body, &view).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(body)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(HttpResponse::Ok().content_type("application/json").body(body))
}

/// `GET /twins/{id}/<route>` for entries of `kind`, answered as
/// `{"asset", field: [...], "next"}`. A page never ends inside a
/// millisecond (entries of one time stay together), so `from=next` always
/// goes on from where it ended.
async fn entries(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    q: web::Query<EventsQuery>,
    (kind, route, field): (u8, &str, &str),
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Access::Read, route)?;
    let asset = id.into_inner();
    let c = state.catalog()?;
    if c.index.resolve(&asset).is_none() {
        return Err(ApiError::NotFound(format!("no twin `{asset}`")));
    }
    if let Some(answer) = peers::to_owner(&state.peers, c, &req, &asset, None).await? {
        return Ok(answer);
    }
    let (h, store, shard) = locate(c, &asset)?;
    if h.events_keep_ms.is_none() {
        return Err(ApiError::NotFound(format!(
            "twin `{asset}` keeps no alert or command history (`history.events: off`)"
        )));
    }
    let from = q
        .from
        .as_deref()
        .map(|v| time("from", v))
        .transpose()?
        .unwrap_or(i64::MIN);
    let to = q.to.as_deref().map(|v| time("to", v)).transpose()?.unwrap_or(i64::MAX);
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_MAX_POINTS {
        return Err(ApiError::BadRequest(format!("limit: between 1 and {MAX_MAX_POINTS}")));
    }
    let reading = asset.clone();
    let (items, next) = super::server::blocking(move || {
        let mut out: Vec<serde_json::Value> = Vec::new();
        let (mut next, mut last) = (None, None);
        let mut bad = None;
        store
            .history_entries(shard, &reading, kind, from, to, |at, _, body| {
                if out.len() >= limit && last != Some(at) {
                    next = Some(at);
                    return false;
                }
                last = Some(at);
                match serde_json::from_slice(body) {
                    Ok(v) => out.push(v),
                    Err(e) => bad = Some(e.to_string()),
                }
                true
            })
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        match bad {
            Some(e) => Err(ApiError::Internal(format!("stored history entry is unreadable: {e}"))),
            None => Ok((out, next)),
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "asset": asset, field: items, "next": next })))
}

/// Every alert transition of the twin (raised, acknowledged, cleared), in
/// time order, within the retention of `history.events`.
#[utoipa::path(get, path = "/twins/{id}/alerts/history", tag = "alerts",
    params(("id" = String, Path, description = "Asset id"), EventsQuery),
    responses((status = 200, body = AlertHistoryView),
        (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody, description = "No such twin, or its type keeps no alert history")))]
pub async fn alerts(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    q: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    entries(state, req, id, q, (ALERT, "/twins/{id}/alerts/history", "transitions")).await
}

/// Every command of the twin (API, rule and rollback commands) with its
/// outcome, in order of issue, within the retention of `history.events`.
#[utoipa::path(get, path = "/twins/{id}/commands/history", tag = "twins",
    params(("id" = String, Path, description = "Asset id"), EventsQuery),
    responses((status = 200, body = CommandHistoryView),
        (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody, description = "No such twin, or its type keeps no command history")))]
pub async fn commands(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    q: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    entries(state, req, id, q, (COMMAND, "/twins/{id}/commands/history", "commands")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_epoch_ms_or_rfc3339() {
        assert_eq!(time("from", "1700000000123").unwrap(), 1_700_000_000_123);
        assert_eq!(time("from", "2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000);
        assert!(matches!(time("from", "yesterday"), Err(ApiError::BadRequest(_))));
    }

    fn model() -> HistoryModel {
        HistoryModel {
            series: vec!["t".into()].into_boxed_slice(),
            by_sensor: vec![Some(0)].into_boxed_slice(),
            estimates: Box::new([]),
            raw_keep_ms: Some(3_600_000),
            tiers: vec![(60_000, 7 * 86_400_000), (3_600_000, 365 * 86_400_000)].into_boxed_slice(),
            events_keep_ms: None,
        }
    }

    #[test]
    fn the_coarsest_tier_that_tiles_the_step_serves_it() {
        let h = model();
        assert_eq!(
            tier_for(&h, Some("1m"), 0, 0).unwrap(),
            ((60_000, 7 * 86_400_000), 60_000)
        );
        assert_eq!(tier_for(&h, Some("5m"), 0, 0).unwrap().0 .0, 60_000);
        assert_eq!(tier_for(&h, Some("2h"), 0, 0).unwrap().0 .0, 3_600_000);
        assert_eq!(tier_for(&h, Some("raw"), 0, 0).unwrap(), ((0, 3_600_000), 0));
        assert!(matches!(tier_for(&h, Some("90s"), 0, 0), Err(ApiError::BadRequest(_))));
        // No step: the finest tier that still keeps `from`.
        let now = 30 * 86_400_000;
        assert_eq!(tier_for(&h, None, now - 60_000, now).unwrap().0 .0, 0);
        assert_eq!(tier_for(&h, None, now - 86_400_000, now).unwrap().0 .0, 60_000);
        assert_eq!(tier_for(&h, None, now - 20 * 86_400_000, now).unwrap().0 .0, 3_600_000);
    }
}
