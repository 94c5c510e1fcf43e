//! What each route does.
//!
//! Twins in memory answer for themselves (through the router and their
//! worker: the state is read by its owner, never behind a lock ingestion
//! takes). For lists, twins that are not in memory (stored by an earlier run
//! and not woken since) are read from the store's records, a RocksDB read
//! that never blocks the writer, and assets the topology names that have no
//! state yet are listed with an empty one.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use utoipa::{IntoParams, ToSchema};

use super::auth::{Access, Tokens};
use super::peers;
use super::ApiError;
use crate::engine::host::stored::{self, Restored};
use crate::engine::query::{AckError, Catalog, CommandError, EngineLink, Request};
use crate::telemetry::health;
use crate::twin::model::{Health, Quality, TwinState};
use crate::twin::view::{self, AlertView, CommandView, RelationView, Surveyed, TwinSummary, TwinView};

/// How long a request waits for the engine to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write waits for the checkpoint that makes it durable.
const DURABLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Page size bounds.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// What every handler shares.
pub struct AppState {
    pub engine: EngineLink,
    pub tokens: Tokens,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Forwards requests to the other nodes of a cluster.
    pub peers: ureq::Agent,
}

impl AppState {
    pub(super) fn catalog(&self) -> Result<&Catalog, ApiError> {
        self.engine
            .catalog
            .get()
            .ok_or_else(|| ApiError::Unavailable("the engine is starting; try again shortly".into()))
    }

    pub(super) fn send(&self, r: Request) -> Result<(), ApiError> {
        self.engine
            .requests
            .send(r)
            .map_err(|_| ApiError::Unavailable("the engine has stopped".into()))
    }
}

/// Awaits an engine answer: a dropped reply means the engine stopped or the
/// asset is not there (`gone`).
pub(super) async fn answer<T>(rx: oneshot::Receiver<T>, gone: impl FnOnce() -> ApiError) -> Result<T, ApiError> {
    match actix_web::rt::time::timeout(ANSWER_TIMEOUT, rx).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(gone()),
        Err(_) => Err(ApiError::Unavailable(format!(
            "the engine did not answer within {}s",
            ANSWER_TIMEOUT.as_secs()
        ))),
    }
}

/// Checks that the topology admits `asset` (404 otherwise) and says whether
/// the router may start its twin when it is not in memory: the topology
/// names it, or the store holds it. (A pattern alone does not: a request for
/// any id a pattern matches must not create a twin.)
pub(super) fn locate(c: &Catalog, asset: &str) -> Result<bool, ApiError> {
    if c.index.resolve(asset).is_none() {
        return Err(ApiError::NotFound(format!("no twin `{asset}`")));
    }
    let shard = owned_shard(c, asset)?;
    Ok(c.index.is_exact(asset)
        || stopped(c.store())?
            .get_twin(shard, asset)
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .is_some())
}

/// The shard of `asset`, if this node owns it (421 otherwise: another node
/// of the cluster does).
pub(super) fn owned_shard(c: &Catalog, asset: &str) -> Result<u32, ApiError> {
    let shard = c.sharding.shard_of(asset);
    if c.sharding.owns(shard) {
        return Ok(shard);
    }
    Err(ApiError::Misdirected(format!(
        "twin `{asset}` belongs to shard {shard}, which another node of the cluster owns"
    )))
}

/// The store, or 503 once the engine has stopped.
pub(super) fn stopped(
    store: Option<std::sync::Arc<crate::store::Store>>,
) -> Result<std::sync::Arc<crate::store::Store>, ApiError> {
    store.ok_or_else(|| ApiError::Unavailable("the engine has stopped".into()))
}

/// Waits until the write the router marked is durable.
async fn durable(rx: oneshot::Receiver<()>, what: &str) -> Result<(), ApiError> {
    match actix_web::rt::time::timeout(DURABLE_TIMEOUT, rx).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(ApiError::Unavailable(format!(
            "{what} was applied but the node stopped before it was durable; repeat the request"
        ))),
    }
}

/// The page of `items` (sorted by `key`) after `after`.
fn paged<T: Serialize>(
    items: Vec<T>,
    after: Option<String>,
    limit: usize,
    key: impl Fn(&T) -> &str,
) -> serde_json::Value {
    let total = items.len();
    let after = after.unwrap_or_default();
    let start = items.partition_point(|t| key(t) <= after.as_str());
    let mut page: Vec<T> = items.into_iter().skip(start).take(limit + 1).collect();
    let next = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|t| key(t).to_string())
    } else {
        None
    };
    serde_json::json!({ "items": page, "total": total, "next": next })
}

fn relations(c: &Catalog, asset: &str) -> Vec<RelationView> {
    let Some(entry) = c.index.resolve(asset) else {
        return Vec::new();
    };
    let ty = &c.model.types[c.index.entry_type[entry as usize] as usize];
    c.index.entry_relations[entry as usize]
        .iter()
        .map(|(r, target)| RelationView {
            relation: ty.relations.get(*r as usize).map_or("?", |n| &**n).to_string(),
            asset: target.to_string(),
        })
        .collect()
}

// ------------------------------------------------------------------ health

#[derive(Serialize, ToSchema)]
pub struct Alive {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Alive)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Alive { status: "ok" })
}

#[derive(Serialize, ToSchema)]
pub struct ReadyBody {
    pub ready: bool,
    /// The engine restored its state and runs.
    pub restored: bool,
    #[schema(value_type = Vec<Object>)]
    pub sources: Vec<health::SourceHealth>,
}

/// Ready: state restored and every broker source connected (503 until then).
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = ReadyBody), (status = 503, body = ReadyBody)))]
pub async fn readyz() -> HttpResponse {
    let r = health::readiness();
    let body = ReadyBody {
        ready: r.ready,
        restored: r.restored,
        sources: r.sources,
    };
    if body.ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text exposition of every twinstream metric.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Access::Read, "/metrics")?;
    let Some(handle) = &state.metrics else {
        return Err(ApiError::NotFound("metrics are not recorded in this process".into()));
    };
    handle.run_upkeep();
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render()))
}

// ------------------------------------------------------------------ twins

/// Filters and paging of `GET /twins`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TwinQuery {
    /// Asset type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub asset_type: Option<String>,
    /// `green`, `yellow` or `red`.
    pub health: Option<String>,
    /// Twins with at least one sensor of this quality: `good`, `stale`, `suspect`.
    pub quality: Option<String>,
    /// Twins with this relation (`feeds`), or this relation to this asset
    /// (`feeds:tank-1`).
    pub relation: Option<String>,
    /// `active` (an alert is active), `unacknowledged` (an active alert
    /// nobody acknowledged) or `none` (no active alert).
    pub alert: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<usize>,
    /// Return twins whose asset id sorts after this one (the previous
    /// page's `next`).
    pub after: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TwinPage {
    pub items: Vec<TwinSummary>,
    /// Twins matching the filters, over all pages.
    pub total: usize,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next: Option<String>,
    /// Cluster: shards no node answered for (the page lacks their twins);
    /// absent when every shard is in.
    pub missing_shards: Option<Vec<u32>>,
}

fn limit(l: Option<usize>) -> Result<usize, ApiError> {
    match l {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(format!("limit: 1 to {MAX_LIMIT}, not {n}"))),
    }
}

fn one_of<T: Copy>(field: &str, value: &str, options: &[(&str, T)]) -> Result<T, ApiError> {
    options
        .iter()
        .find(|(n, _)| *n == value)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            ApiError::BadRequest(format!("{field}: one of {}, not `{value}`", names.join(", ")))
        })
}

/// Every twin of the node: in memory (asked), stored, or named by the
/// topology with no state yet. Sorted by asset id.
async fn census(state: &web::Data<AppState>) -> Result<Vec<Surveyed>, ApiError> {
    state.catalog()?;
    let (tx, rx) = oneshot::channel();
    state.send(Request::Survey { reply: tx })?;
    let live = answer(rx, || ApiError::Unavailable("the engine has stopped".into())).await?;
    let state = state.clone();
    super::server::blocking(move || {
        let c = state.catalog()?;
        let mut all: BTreeMap<String, Surveyed> = live.into_iter().map(|s| (s.summary.asset.clone(), s)).collect();
        let in_memory: HashSet<String> = all.keys().cloned().collect();
        let mut failed = None;
        let store = stopped(c.store())?;
        for shard in c.sharding.owned() {
            store
                .for_each_twin(shard, |asset, bytes| {
                    if in_memory.contains(asset) {
                        return Ok(());
                    }
                    let Some(m) = c.type_of(asset) else { return Ok(()) };
                    match stored::restore(&store, m, bytes) {
                        Ok(Restored::State(st, _)) => {
                            all.insert(asset.to_string(), view::survey(m, asset, &st));
                        }
                        Ok(Restored::OtherType { .. }) => {
                            all.insert(asset.to_string(), view::survey(m, asset, &TwinState::new(m)));
                        }
                        Err(e) => failed = Some(format!("stored twin `{asset}` is unreadable: {e}")),
                    }
                    Ok(())
                })
                .map_err(|e| ApiError::Internal(e.to_string()))?;
        }
        if let Some(f) = failed {
            return Err(ApiError::Internal(f));
        }
        for (id, entry) in c.index.exact_ids() {
            if !all.contains_key(id) && c.sharding.owns(c.sharding.shard_of(id)) {
                let m = &c.model.types[c.index.entry_type[entry as usize] as usize];
                all.insert(id.to_string(), view::survey(m, id, &TwinState::new(m)));
            }
        }
        Ok(all.into_values().collect())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Twins, filtered and paged by asset id.
#[utoipa::path(get, path = "/twins", tag = "twins", params(TwinQuery),
    responses((status = 200, body = TwinPage), (status = 400, body = super::error::ErrorBody),
        (status = 401, body = super::error::ErrorBody)))]
pub async fn list_twins(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<TwinQuery>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Access::Read, "/twins")?;
    let q = q.into_inner();
    let limit = limit(q.limit)?;
    let health = match &q.health {
        Some(h) => Some(one_of(
            "health",
            h,
            &[
                ("green", Health::Green),
                ("yellow", Health::Yellow),
                ("red", Health::Red),
            ],
        )?),
        None => None,
    };
    let quality = match &q.quality {
        Some(v) => Some(one_of(
            "quality",
            v,
            &[
                ("good", Quality::Good),
                ("stale", Quality::Stale),
                ("suspect", Quality::Suspect),
            ],
        )?),
        None => None,
    };
    #[derive(Clone, Copy)]
    enum AlertFilter {
        Active,
        Unacknowledged,
        None,
    }
    let alert = match &q.alert {
        Some(v) => Some(one_of(
            "alert",
            v,
            &[
                ("active", AlertFilter::Active),
                ("unacknowledged", AlertFilter::Unacknowledged),
                ("none", AlertFilter::None),
            ],
        )?),
        None => None,
    };
    let c = state.catalog()?;
    if let Some(t) = &q.asset_type {
        if !c.model.types.iter().any(|m| &*m.name == t) {
            let names: Vec<&str> = c.model.types.iter().map(|m| &*m.name).collect();
            return Err(ApiError::BadRequest(format!(
                "type: no asset type `{t}` (the topology has {})",
                names.join(", ")
            )));
        }
    }
    let relation = q.relation.as_deref().map(|r| match r.split_once(':') {
        Some((name, target)) => (name, Some(target)),
        None => (r, None),
    });
    let mut matching = Vec::new();
    for s in census(&state).await? {
        let mut t = s.summary;
        if q.asset_type.as_deref().is_some_and(|ty| t.asset_type != ty)
            || health.is_some_and(|h| t.health != h)
            || quality.is_some_and(|ql| !t.quality.values().any(|v| *v == ql))
        {
            continue;
        }
        let keep = match alert {
            Some(AlertFilter::Active) => t.active_alerts > 0,
            Some(AlertFilter::Unacknowledged) => t.unacknowledged_alerts > 0,
            Some(AlertFilter::None) => t.active_alerts == 0,
            None => true,
        };
        if !keep {
            continue;
        }
        t.relations = relations(c, &t.asset);
        if let Some((name, target)) = relation {
            if !t
                .relations
                .iter()
                .any(|r| r.relation == name && target.is_none_or(|x| r.asset == x))
            {
                continue;
            }
        }
        matching.push(t);
    }
    let page = paged(matching, q.after, limit, |t| &t.asset);
    Ok(HttpResponse::Ok().json(peers::gather(&state.peers, c, &req, page, limit, "asset").await?))
}

/// How `GET /twins/{id}` reads.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TwinRead {
    /// `true`: ask the twin itself, including events not durable yet (it
    /// answers after the work queued before the question). Default: the
    /// twin as of the last durable checkpoint.
    pub fresh: Option<bool>,
}

/// The response header that says where a twin was read from: `checkpoint`
/// (the last durable one) or `twin` (the live actor).
pub const READ_HEADER: &str = "X-Twinstream-Read";

/// The twin as stored by the last durable checkpoint, if it has one: read
/// on this thread from RocksDB, without a message to the engine.
fn checkpointed(c: &Catalog, asset: &str) -> Result<Option<TwinView>, ApiError> {
    Ok(checkpointed_state(c, asset)?.map(|(m, st)| view::twin(&m, asset, &st, &c.source_names)))
}

/// The state of the twin as the last durable checkpoint stored it, with its
/// type model: read on this thread from RocksDB (a read never blocks the
/// writer), without a message to the engine.
pub(super) fn checkpointed_state(
    c: &Catalog,
    asset: &str,
) -> Result<Option<(std::sync::Arc<crate::twin::schema::TypeModel>, TwinState)>, ApiError> {
    let store = stopped(c.store())?;
    let Some(bytes) = store
        .get_twin(owned_shard(c, asset)?, asset)
        .map_err(|e| ApiError::Internal(e.to_string()))?
    else {
        return Ok(None);
    };
    let Some(m) = c.type_of(asset) else { return Ok(None) };
    match stored::restore(&store, m, &bytes) {
        Ok(Restored::State(st, _)) => Ok(Some((m.clone(), st))),
        // Written as another type: the twin itself knows what it is now.
        Ok(Restored::OtherType { .. }) => Ok(None),
        Err(e) => Err(ApiError::Internal(format!("stored twin `{asset}` is unreadable: {e}"))),
    }
}

/// One twin: latest values with time, source and quality, estimates,
/// windows, joins, alerts, desired/reported state and commands, relations
/// and version. Read from the last durable checkpoint (committed state: a
/// crash never takes back what it shows; about `snapshot.interval` old)
/// unless `fresh=true`, or the twin has no checkpoint yet.
#[utoipa::path(get, path = "/twins/{id}", tag = "twins",
    params(("id" = String, Path, description = "Asset id"), TwinRead),
    responses((status = 200, body = TwinView, headers(("X-Twinstream-Read" = String, description = "`checkpoint` or `twin`"))),
        (status = 404, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody)))]
pub async fn get_twin(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    q: web::Query<TwinRead>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Access::Read, "/twins/{id}")?;
    let asset = id.into_inner();
    let c = state.catalog()?;
    let not_found = || ApiError::NotFound(format!("no twin `{asset}`"));
    if c.index.resolve(&asset).is_none() {
        return Err(not_found());
    }
    if let Some(answer) = peers::to_owner(&state.peers, c, &req, &asset, None).await? {
        return Ok(answer);
    }
    if !q.fresh.unwrap_or(false) {
        if let Some(mut view) = checkpointed(c, &asset)? {
            view.relations = relations(c, &asset);
            return Ok(HttpResponse::Ok().insert_header((READ_HEADER, "checkpoint")).json(view));
        }
    }
    let start = locate(c, &asset)?;
    let (tx, rx) = oneshot::channel();
    state.send(Request::Twin {
        asset: asset.clone(),
        start,
        reply: tx,
    })?;
    let mut view = answer(rx, not_found).await?;
    view.relations = relations(c, &asset);
    Ok(HttpResponse::Ok().insert_header((READ_HEADER, "twin")).json(view))
}

// ------------------------------------------------------------------ alerts

/// Filters and paging of `GET /alerts`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// `active` (raised or acknowledged; the default), `raised`,
    /// `acknowledged`, `cleared` or `all`.
    pub state: Option<String>,
    /// `info`, `warning` or `critical`.
    pub severity: Option<String>,
    /// Alerts of this asset only.
    pub asset: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<usize>,
    /// Return alerts whose id sorts after this one (the previous page's `next`).
    pub after: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AlertPage {
    pub items: Vec<AlertView>,
    pub total: usize,
    pub next: Option<String>,
    /// Cluster: shards no node answered for; absent when every shard is in.
    pub missing_shards: Option<Vec<u32>>,
}

/// Alerts (the current one of every rule of every twin), filtered and paged by id.
#[utoipa::path(get, path = "/alerts", tag = "alerts", params(AlertQuery),
    responses((status = 200, body = AlertPage), (status = 400, body = super::error::ErrorBody)))]
pub async fn list_alerts(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<AlertQuery>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Access::Read, "/alerts")?;
    let q = q.into_inner();
    let limit = limit(q.limit)?;
    let states: &[&str] = match q.state.as_deref().unwrap_or("active") {
        "active" => &["raised", "acknowledged"],
        "raised" => &["raised"],
        "acknowledged" => &["acknowledged"],
        "cleared" => &["cleared"],
        "all" => &["raised", "acknowledged", "cleared"],
        other => {
            return Err(ApiError::BadRequest(format!(
                "state: one of active, raised, acknowledged, cleared, all, not `{other}`"
            )))
        }
    };
    let severity = match &q.severity {
        Some(s) => Some(
            crate::topology::Severity::parse(s)
                .ok_or_else(|| ApiError::BadRequest(format!("severity: one of info, warning, critical, not `{s}`")))?,
        ),
        None => None,
    };
    let mut matching: Vec<AlertView> = census(&state)
        .await?
        .into_iter()
        .filter(|s| q.asset.as_deref().is_none_or(|a| s.summary.asset == a))
        .flat_map(|s| s.alerts)
        .filter(|a| states.contains(&a.state) && severity.is_none_or(|s| a.severity == s))
        .collect();
    matching.sort_by(|a, b| a.id.cmp(&b.id));
    let page = paged(matching, q.after, limit, |a| &a.id);
    Ok(HttpResponse::Ok().json(peers::gather(&state.peers, state.catalog()?, &req, page, limit, "id").await?))
}

/// Splits an alert id `asset/rule/seq` (the asset id may itself hold `/`).
fn parse_alert_id(id: &str) -> Result<(&str, &str, u32), ApiError> {
    let bad = || ApiError::BadRequest(format!("alert id `{id}`: expected `asset/rule/seq`"));
    let mut parts = id.rsplitn(3, '/');
    let (Some(seq), Some(rule), Some(asset)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if asset.is_empty() || rule.is_empty() {
        return Err(bad());
    }
    let seq = seq.parse::<u32>().map_err(|_| bad())?;
    Ok((asset, rule, seq))
}

/// Acknowledges an active alert. Answers once the acknowledgement is
/// durable; acknowledging an acknowledged alert answers the same.
#[utoipa::path(post, path = "/alerts/{id}/ack", tag = "alerts",
    params(("id" = String, Path, description = "Alert id `asset/rule/seq`")),
    security(("bearer" = [])),
    responses((status = 200, body = AlertView), (status = 401, body = super::error::ErrorBody),
        (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody, description = "The alert is cleared or was replaced")))]
pub async fn ack_alert(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Access::Write, "/alerts/{id}/ack")?;
    let id = id.into_inner();
    let (asset, rule, seq) = parse_alert_id(&id)?;
    let c = state.catalog()?;
    if let Some(answer) = peers::to_owner(&state.peers, c, &req, asset, None).await? {
        return Ok(answer);
    }
    let start = locate(c, asset)?;
    let (tx, rx) = oneshot::channel();
    let (durable_tx, durable_rx) = oneshot::channel();
    state.send(Request::AckAlert {
        asset: asset.to_string(),
        start,
        rule: rule.to_string(),
        seq,
        reply: tx,
        durable: durable_tx,
    })?;
    let alert = answer(rx, || ApiError::NotFound(format!("no twin `{asset}`")))
        .await?
        .map_err(|e| match e {
            AckError::NotActive { .. } => ApiError::Conflict(e.to_string()),
            AckError::NoSuchRule { .. } | AckError::NeverRaised { .. } => ApiError::NotFound(e.to_string()),
        })?;
    durable(durable_rx, "the acknowledgement").await?;
    Ok(HttpResponse::Ok().json(alert))
}

// ------------------------------------------------------------------ commands

/// `POST /twins/{id}/commands`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    /// A command of the twin's type (`asset_types.<type>.commands`).
    pub command: String,
    pub value: f64,
    /// Repeating a request with the same key returns the command it
    /// created instead of sending another; may come as the
    /// `Idempotency-Key` header instead.
    pub idempotency_key: Option<String>,
}

/// Reads a JSON body of at most `limit` bytes, unparsed.
pub(super) async fn raw_json_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    use futures_core::Stream as _;
    let json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(ApiError::UnsupportedMediaType(
            "send the body as `Content-Type: application/json`".into(),
        ));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut payload).poll_next(cx)).await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Sends an actuation command: it sets the twin's desired state, goes out
/// through the command sinks and stays `pending` until acknowledged.
/// Answers once the command is durable: 202 for a new command, 200 (the
/// same command) for a repeated idempotency key.
#[utoipa::path(post, path = "/twins/{id}/commands", tag = "twins",
    params(("id" = String, Path, description = "Asset id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Instead of `idempotency_key` in the body")),
    request_body = CommandBody,
    security(("bearer" = [])),
    responses((status = 202, body = CommandView, description = "A new command"),
        (status = 200, body = CommandView, description = "The command this idempotency key created"),
        (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, body = super::error::ErrorBody, description = "The key created a different command"),
        (status = 413, body = super::error::ErrorBody), (status = 415, body = super::error::ErrorBody)))]
pub async fn send_command(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Access::Write, "/twins/{id}/commands")?;
    let raw = raw_json_body(&req, payload, super::server::MAX_BODY).await?;
    let asset = id.into_inner();
    let c = state.catalog()?;
    if let Some(answer) = peers::to_owner(&state.peers, c, &req, &asset, Some(raw.clone())).await? {
        return Ok(answer);
    }
    let body: CommandBody = serde_json::from_slice(&raw).map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    let header_key = req
        .headers()
        .get("Idempotency-Key")
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::BadRequest("Idempotency-Key: not visible ASCII".into()))
        })
        .transpose()?;
    let key = match (body.idempotency_key, header_key) {
        (Some(b), Some(h)) if b != h => {
            return Err(ApiError::BadRequest(
                "the body's `idempotency_key` and the Idempotency-Key header differ".into(),
            ))
        }
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => {
            return Err(ApiError::BadRequest(
                "give an `idempotency_key` (or the Idempotency-Key header): a retried request must not send the command twice".into(),
            ))
        }
    };
    if key.is_empty() || key.len() > 200 {
        return Err(ApiError::BadRequest("idempotency_key: 1 to 200 characters".into()));
    }
    if !body.value.is_finite() {
        return Err(ApiError::BadRequest("value: a finite number".into()));
    }
    let start = locate(c, &asset)?;
    let (tx, rx) = oneshot::channel();
    let (durable_tx, durable_rx) = oneshot::channel();
    state.send(Request::Command {
        asset: asset.clone(),
        start,
        command: body.command,
        value: body.value,
        key,
        reply: tx,
        durable: durable_tx,
    })?;
    let (command, created) = answer(rx, || ApiError::NotFound(format!("no twin `{asset}`")))
        .await?
        .map_err(|e| match e {
            CommandError::NoSuchCommand { .. } | CommandError::OutOfRange { .. } => ApiError::BadRequest(e.to_string()),
            CommandError::KeyReused { .. } => ApiError::Conflict(e.to_string()),
            CommandError::Failed(_) => ApiError::Internal(e.to_string()),
        })?;
    durable(durable_rx, "the command (repeat it with the same idempotency key)").await?;
    Ok(if created {
        HttpResponse::Accepted().json(command)
    } else {
        HttpResponse::Ok().json(command)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_ids_split_from_the_right() {
        assert_eq!(parse_alert_id("p-1/hot/3").unwrap(), ("p-1", "hot", 3));
        assert_eq!(parse_alert_id("site/a/p-1/hot/12").unwrap(), ("site/a/p-1", "hot", 12));
        for bad in ["p-1/hot", "p-1/hot/x", "/hot/1", "p-1//1", "", "p-1/hot/-1"] {
            assert!(matches!(parse_alert_id(bad), Err(ApiError::BadRequest(_))), "{bad}");
        }
    }

    #[test]
    fn a_page_starts_after_its_cursor_and_names_its_successor_only_when_there_is_one() {
        let items = || vec!["a".to_string(), "b".into(), "c".into(), "d".into()];
        let v = paged(items(), None, 2, |s| s);
        assert_eq!(
            (v["items"].clone(), v["next"].clone(), v["total"].clone()),
            (serde_json::json!(["a", "b"]), "b".into(), 4.into())
        );
        let v = paged(items(), Some("b".into()), 2, |s| s);
        assert_eq!(
            (v["items"].clone(), v["next"].clone()),
            (serde_json::json!(["c", "d"]), serde_json::Value::Null)
        );
        let v = paged(items(), Some("bb".into()), 5, |s| s);
        assert_eq!(
            v["items"],
            serde_json::json!(["c", "d"]),
            "a cursor need not be an item"
        );
    }
}
