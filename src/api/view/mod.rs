//! The operator's view: a page served by the node itself (`GET /`), its
//! script and style embedded in the binary, and the stream of changes it
//! listens to (`GET /events`, Server-Sent Events).
//!
//! The page is plain HTML, CSS and JavaScript with no library and no build
//! step (ARCHITECTURE.md "The view"): it reads what the API serves, with
//! the API's tokens, and renders every asset id and value as text. Its URLs
//! are relative, so it works behind a reverse proxy's path prefix.

use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};

use super::auth::Access;
use super::handlers::AppState;
use super::ApiError;
use crate::pipeline::watch::{Feed, Item, Since};

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// What the page may load and run: its own script and style, requests to
/// its own origin, nothing inline, no frames.
pub const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// An idle stream sends a comment this often (proxies close silent ones).
const KEEPALIVE: Duration = Duration::from_secs(15);

/// How long a browser waits before it reconnects a dropped stream.
const RETRY_MS: u32 = 1000;

fn embedded(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        // The binary is the version: a new node serves new files.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, format!("\"{}\"", env!("CARGO_PKG_VERSION"))))
        .body(body)
}

/// `GET /`: the page. It holds no data, so it needs no token; what it reads
/// does.
pub async fn page() -> HttpResponse {
    embedded(INDEX, "text/html; charset=utf-8")
}

/// `GET /view/{file}`: the page's script and style.
pub async fn file(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    match name.as_str() {
        "app.js" => Ok(embedded(SCRIPT, "text/javascript; charset=utf-8")),
        "app.css" => Ok(embedded(STYLE, "text/css; charset=utf-8")),
        other => Err(ApiError::NotFound(format!("the view has no file `{other}`"))),
    }
}

/// The asset types: sensors with units and bounds, commands with their
/// bounds, what history keeps.
#[utoipa::path(get, path = "/types", tag = "view",
    responses((status = 200, body = [crate::twin::view::TypeView]),
        (status = 401, body = super::error::ErrorBody)))]
pub async fn types(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Access::Read, "/types")?;
    Ok(HttpResponse::Ok().json(&*state.catalog()?.types))
}

/// Where a stream starts: after the id the browser last saw
/// (`Last-Event-ID`, sent on a reconnect) or `after`, else from now.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Start after this event id (a `Last-Event-ID` header wins).
    pub after: Option<u64>,
}

/// `GET /events`: this node's twins' changes as Server-Sent Events. Event
/// names: `hello` (first, with the id the stream starts after), `twin` (a
/// summary whose health, offline flag or counts changed, or a new twin),
/// `alert` (every transition: raised, acknowledged, cleared, with the alert
/// as it stands after it), `command` (issued, or left `pending`),
/// and `reset` when the stream cannot resume where asked (the node no
/// longer holds every change since): reload, then go on.
#[utoipa::path(get, path = "/events", tag = "view", params(EventsQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "the last event id seen; resumes after it")),
    responses((status = 200, content_type = "text/event-stream", body = String,
            description = "Server-Sent Events: `hello`, `twin` (a TwinSummary), `alert` (an AlertEvent), `command` (a CommandView), `reset`"),
        (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody)))]
pub async fn events(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Access::Read, "/events")?;
    let resume = match req.headers().get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::BadRequest("Last-Event-ID: not an event id of this node".into()))?,
        ),
        None => q.after,
    };
    let feed = state.engine.feed.clone();
    let (subscription, head) = feed.subscribe();
    let stream = Stream {
        feed,
        _subscription: subscription,
        after: resume.or(head),
        hello: Some(resume.or(head)),
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Tells nginx-style proxies not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures_util::stream::unfold(stream, Stream::next)))
}

struct Stream {
    feed: std::sync::Arc<Feed>,
    _subscription: crate::pipeline::watch::Subscription,
    /// The id of the last item sent (`None`: none yet, from the start).
    after: Option<u64>,
    /// The `hello` not yet sent, with the id the stream starts after.
    hello: Option<Option<u64>>,
}

impl Stream {
    async fn next(mut self) -> Option<(Result<Bytes, ApiError>, Stream)> {
        if let Some(after) = self.hello.take() {
            let id = after.map_or_else(|| "null".to_string(), |a| a.to_string());
            let text = format!("retry: {RETRY_MS}\nevent: hello\ndata: {{\"after\":{id}}}\n\n");
            return Some((Ok(Bytes::from(text)), self));
        }
        loop {
            if self.feed.closed() {
                return None;
            }
            match self.feed.since(self.after) {
                Since::Gap => {
                    self.after = self.feed.head();
                    let id = self.after.map_or_else(String::new, |a| format!("id: {a}\n"));
                    let text = format!("{id}event: reset\ndata: {{}}\n\n");
                    return Some((Ok(Bytes::from(text)), self));
                }
                Since::Items(items) if !items.is_empty() => {
                    self.after = items.last().map(|i| i.seq);
                    return Some((Ok(Bytes::from(render(&items))), self));
                }
                Since::Items(_) => {
                    let before = self.after;
                    self.feed.wait(before, KEEPALIVE).await;
                    if self.feed.head() == before || self.feed.head().is_none() {
                        if self.feed.closed() {
                            return None;
                        }
                        return Some((Ok(Bytes::from_static(b": keepalive\n\n")), self));
                    }
                }
            }
        }
    }
}

/// Items as Server-Sent Events (the JSON has no newline: one `data` line).
fn render(items: &[Item]) -> String {
    let mut out = String::with_capacity(items.iter().map(|i| i.json.len() + 32).sum());
    for i in items {
        out.push_str("id: ");
        out.push_str(&i.seq.to_string());
        out.push_str("\nevent: ");
        out.push_str(i.kind);
        out.push_str("\ndata: ");
        out.push_str(&i.json);
        out.push_str("\n\n");
    }
    out
}
