//! `GET /twins/{id}/forecast` and `POST /twins/{id}/whatif`: the twin's
//! model looking ahead ([`crate::twin::foresight`]).
//!
//! Like `GET /twins/{id}`, both start from the twin as the last durable
//! checkpoint stored it (read from RocksDB on the HTTP thread: no message to
//! the engine, so ingestion never delays the answer; about
//! `snapshot.interval` old), or with `fresh=true` from a copy the twin
//! itself sends (a question on its mailbox, answered after the work queued
//! before it); a twin no checkpoint holds yet is asked too. The prediction
//! runs on the API's blocking pool, off the twins' threads. A what-if is a
//! read: it runs on a copy and never touches the live twin (no state change,
//! no output, nothing written), so it needs only read access.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use utoipa::{IntoParams, ToSchema};

use super::auth::Access;
use super::handlers::{answer, checkpointed_state, locate, raw_json_body, AppState};
use super::{peers, ApiError};
use crate::engine::query::{Request, TwinCopy};
use crate::twin::foresight::{self, ForesightError, Horizon, Hypothetical, Trajectory};
use crate::twin::schema::TypeModel;

const DEFAULT_HORIZON: &str = "10m";
const DEFAULT_STEP: &str = "10s";

/// How far `GET /twins/{id}/forecast` looks.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ForecastQuery {
    /// How far ahead of the estimate (default `10m`).
    pub horizon: Option<String>,
    /// Time between points (default `10s`); at most 10000 steps.
    pub step: Option<String>,
    /// `true`: from the twin itself, including events not durable yet.
    /// Default: from the last durable checkpoint.
    pub fresh: Option<bool>,
}

/// `POST /twins/{id}/whatif`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhatIfBody {
    /// Default `10m`.
    pub horizon: Option<String>,
    /// Default `10s`.
    pub step: Option<String>,
    /// Commands to apply, each at its time.
    #[serde(default)]
    pub commands: Vec<HypotheticalBody>,
    /// `true`: from the twin itself, including events not durable yet.
    /// Default: from the last durable checkpoint.
    pub fresh: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HypotheticalBody {
    /// A command of the twin's type.
    pub command: String,
    pub value: f64,
    /// How long after the estimate's time it is applied (default `0s`).
    pub at: Option<String>,
}

/// A mean and its standard deviation.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeanStd {
    pub mean: f64,
    pub std: f64,
}

/// The model at one step.
#[derive(Debug, Serialize, ToSchema)]
pub struct PointView {
    /// Event time, epoch ms.
    pub ts: i64,
    /// Per state of the model.
    pub states: BTreeMap<String, MeanStd>,
    /// Per observed sensor: the predicted value (`h . x`) and its standard
    /// deviation (the value's, not a reading's: add the sensor's noise for
    /// where a reading would fall).
    pub sensors: BTreeMap<String, MeanStd>,
}

/// The model's forecast from the current estimate.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastView {
    pub asset: String,
    /// Hash of the model's declaration (hex).
    pub model: String,
    /// Event time of the estimate it starts from (the first point).
    pub from: i64,
    pub step_ms: i64,
    pub points: Vec<PointView>,
}

/// An alert the trajectory would raise or clear.
#[derive(Debug, Serialize, ToSchema)]
pub struct FiredView {
    pub rule: String,
    #[schema(value_type = String)]
    pub severity: crate::topology::Severity,
    /// `raised` or `cleared`.
    pub transition: &'static str,
    pub ts: i64,
}

/// A command a rule would send.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleCommandView {
    pub rule: String,
    pub command: String,
    pub value: f64,
    pub ts: i64,
}

/// What the hypothetical commands would do.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhatIfView {
    pub asset: String,
    pub model: String,
    pub from: i64,
    pub step_ms: i64,
    pub points: Vec<PointView>,
    /// Alert transitions along the trajectory, in time order.
    pub alerts: Vec<FiredView>,
    /// Commands rules would send along it.
    pub commands: Vec<RuleCommandView>,
    /// Rules whose alert is active at the horizon.
    pub active_at_end: Vec<String>,
}

fn duration(field: &str, v: Option<&str>, default: &str) -> Result<i64, ApiError> {
    let text = v.unwrap_or(default);
    humantime::parse_duration(text)
        .map_err(|e| ApiError::BadRequest(format!("{field}: `{text}` is not a duration like `10s` or `5m`: {e}")))
        .and_then(|d: Duration| {
            i64::try_from(d.as_millis()).map_err(|_| ApiError::BadRequest(format!("{field}: `{text}` is too long")))
        })
}

fn horizon(h: Option<&str>, s: Option<&str>) -> Result<Horizon, ApiError> {
    Horizon::new(
        duration("horizon", h, DEFAULT_HORIZON)?,
        duration("step", s, DEFAULT_STEP)?,
    )
    .map_err(refused)
}

fn refused(e: ForesightError) -> ApiError {
    match e {
        ForesightError::NoModel(_) => ApiError::NotFound(e.to_string()),
        ForesightError::NoEstimate => ApiError::Conflict(e.to_string()),
        ForesightError::BadHorizon(_) | ForesightError::BadCommand(_) => ApiError::BadRequest(e.to_string()),
    }
}

/// The twin's state: as the last durable checkpoint stored it, or (`fresh`,
/// or no checkpoint yet) from the twin itself.
async fn copy_of(state: &web::Data<AppState>, asset: &str, fresh: bool) -> Result<TwinCopy, ApiError> {
    let c = state.catalog()?;
    if c.index.resolve(asset).is_none() {
        return Err(ApiError::NotFound(format!("no twin `{asset}`")));
    }
    if !fresh {
        if let Some((model, st)) = checkpointed_state(c, asset)? {
            return Ok(TwinCopy {
                model,
                state: Box::new(st),
            });
        }
    }
    let start = locate(c, asset)?;
    let (tx, rx) = oneshot::channel();
    state.send(Request::Copy {
        asset: asset.to_string(),
        start,
        reply: tx,
    })?;
    answer(rx, || ApiError::NotFound(format!("no twin `{asset}`"))).await
}

fn points(m: &TypeModel, t: Trajectory) -> Vec<PointView> {
    let fm = m.filter.as_ref().expect("a trajectory comes from a model");
    let pair = |(mean, std): (f64, f64)| MeanStd { mean, std };
    t.points
        .into_iter()
        .map(|p| PointView {
            ts: p.ts,
            states: fm
                .states
                .iter()
                .zip(p.states)
                .map(|(n, v)| (n.to_string(), pair(v)))
                .collect(),
            sensors: fm
                .observations
                .iter()
                .zip(p.sensors)
                .map(|(o, v)| (m.sensors[o.sensor as usize].to_string(), pair(v)))
                .collect(),
        })
        .collect()
}

/// Runs `f` on the blocking pool.
async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    super::server::blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// The predicted states and sensors (mean and standard deviation per step)
/// from the twin's current estimate, driven by its desired command values.
#[utoipa::path(get, path = "/twins/{id}/forecast", tag = "twins",
    params(("id" = String, Path, description = "Asset id"), ForecastQuery),
    responses((status = 200, body = ForecastView),
        (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody, description = "No such twin, or its type declares no model"),
        (status = 409, body = super::error::ErrorBody, description = "The model has no estimate yet")))]
pub async fn forecast(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    q: web::Query<ForecastQuery>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Access::Read, "/twins/{id}/forecast")?;
    let asset = id.into_inner();
    let h = horizon(q.horizon.as_deref(), q.step.as_deref())?;
    if let Some(answer) = peers::to_owner(&state.peers, state.catalog()?, &req, &asset, None).await? {
        return Ok(answer);
    }
    let TwinCopy { model, state: twin } = copy_of(&state, &asset, q.fresh.unwrap_or(false)).await?;
    let view = off_thread(move || {
        let t = foresight::forecast(&model, &twin, h).map_err(refused)?;
        Ok(ForecastView {
            asset,
            model: format!("{:016x}", t.model),
            from: t.points[0].ts,
            step_ms: h.step_ms,
            points: points(&model, t),
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// The trajectory hypothetical commands would give, and every rule that
/// would fire on it and when. Runs on a copy of the twin: nothing changes,
/// nothing is sent or written.
#[utoipa::path(post, path = "/twins/{id}/whatif", tag = "twins",
    params(("id" = String, Path, description = "Asset id")),
    request_body = WhatIfBody,
    responses((status = 200, body = WhatIfView),
        (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody, description = "No such twin, or its type declares no model"),
        (status = 409, body = super::error::ErrorBody, description = "The model has no estimate yet"),
        (status = 413, body = super::error::ErrorBody), (status = 415, body = super::error::ErrorBody)))]
pub async fn what_if(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Access::Read, "/twins/{id}/whatif")?;
    let raw = raw_json_body(&req, payload, super::server::MAX_BODY).await?;
    let asset = id.into_inner();
    if let Some(answer) = peers::to_owner(&state.peers, state.catalog()?, &req, &asset, Some(raw.clone())).await? {
        return Ok(answer);
    }
    let body: WhatIfBody = serde_json::from_slice(&raw).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    let h = horizon(body.horizon.as_deref(), body.step.as_deref())?;
    let TwinCopy { model, state: twin } = copy_of(&state, &asset, body.fresh.unwrap_or(false)).await?;
    let mut plan = Vec::with_capacity(body.commands.len());
    for (i, c) in body.commands.iter().enumerate() {
        let Some(def) = model.commands.iter().position(|d| *d.name == c.command) else {
            let known: Vec<&str> = model.commands.iter().map(|d| &*d.name).collect();
            return Err(ApiError::BadRequest(format!(
                "commands[{i}]: asset type `{}` has no command `{}` (it has: {})",
                model.name,
                c.command,
                known.join(", ")
            )));
        };
        plan.push(Hypothetical {
            def: def as u16,
            value: c.value,
            at_ms: duration(&format!("commands[{i}].at"), c.at.as_deref(), "0s")?,
        });
    }
    let now = crate::pipeline::now_ms();
    let view = off_thread(move || {
        let w = foresight::what_if(&model, &twin, h, &plan, now).map_err(refused)?;
        let rule = |r: u16| model.rules[r as usize].name.to_string();
        Ok(WhatIfView {
            asset,
            model: format!("{:016x}", w.trajectory.model),
            from: w.trajectory.points[0].ts,
            step_ms: h.step_ms,
            alerts: w
                .alerts
                .iter()
                .map(|f| FiredView {
                    rule: rule(f.rule),
                    severity: model.rules[f.rule as usize].severity,
                    transition: f.transition.name(),
                    ts: f.ts,
                })
                .collect(),
            commands: w
                .commands
                .iter()
                .map(|c| RuleCommandView {
                    rule: rule(c.rule),
                    command: model.rules[c.rule as usize]
                        .command
                        .as_ref()
                        .map_or(String::new(), |s| s.name.clone()),
                    value: c.value,
                    ts: c.ts,
                })
                .collect(),
            active_at_end: w.active_at_end.iter().map(|&r| rule(r)).collect(),
            points: points(&model, w.trajectory),
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(view))
}
