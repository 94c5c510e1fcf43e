//! The operator's view: a page served by the node itself (`GET /`), its
//! script and style embedded in the binary, and the stream of changes it
//! listens to (`GET /events`, Server-Sent Events).
//!
//! The page is plain HTML, CSS and JavaScript with no library and no build
//! step (ARCHITECTURE.md "The view"): it reads what the API serves, with
//! the API's tokens, and renders every asset id and value as text. Its URLs
//! are relative, so it works behind a reverse proxy's path prefix.

use actix_web::http::header;
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};

use super::auth::Access;
use super::handlers::AppState;
use super::ApiError;

pub mod events;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// What the page may load and run: its own script and style, requests to
/// its own origin, nothing inline, no frames.
pub const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

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
