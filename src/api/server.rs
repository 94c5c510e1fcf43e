//! The HTTP server: its own thread and actix system (two workers), so
//! requests never run on the engine's threads.

use std::net::SocketAddr;
use std::time::Instant;

use actix_web::dev::{ServerHandle, Service};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use super::auth::Tokens;
use super::handlers::{self, AppState};
use super::ApiError;
use super::{foresight, history, view};
use crate::engine::query::EngineLink;
use crate::telemetry;

/// What the server needs.
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub tokens: Tokens,
    /// Renders `/metrics` (absent: the route answers 404).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// How the API's threads compete with ingestion for the cores.
    pub priority: crate::topology::ApiPriority,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {error}")]
    Bind { addr: SocketAddr, error: std::io::Error },
    #[error("the HTTP server thread stopped while starting")]
    Thread,
}

/// A running server.
pub struct Server {
    /// The address it listens on (the port is known even when `listen`
    /// asked for port 0).
    pub addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Closed first on stop: open event streams end instead of holding
    /// the graceful stop.
    feed: std::sync::Arc<crate::pipeline::watch::Feed>,
}

impl Server {
    /// Stops accepting, lets requests in progress finish, and joins the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            self.feed.close();
            let handle = self.handle.clone();
            // `stop` returns a future that completes once the server has stopped.
            let _ = std::thread::spawn(move || actix_web::rt::System::new().block_on(handle.stop(true))).join();
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY: usize = 16 * 1024;

/// Answers every route with the stable error shape.
async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no route {} {}", req.method(), req.path())))
}

async fn not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        req.method(),
        req.path()
    )))
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(super::openapi::json())
}

fn routes(cfg: &mut web::ServiceConfig) {
    let resource = |path: &str| web::resource(path).default_service(web::to(not_allowed));
    cfg.service(resource("/healthz").route(web::get().to(handlers::healthz)))
        .service(resource("/readyz").route(web::get().to(handlers::readyz)))
        .service(resource("/metrics").route(web::get().to(handlers::metrics)))
        .service(resource("/openapi.json").route(web::get().to(openapi)))
        .service(resource("/twins").route(web::get().to(handlers::list_twins)))
        .service(resource("/twins/{id}").route(web::get().to(handlers::get_twin)))
        .service(resource("/twins/{id}/commands").route(web::post().to(handlers::send_command)))
        .service(resource("/twins/{id}/forecast").route(web::get().to(foresight::forecast)))
        .service(resource("/twins/{id}/whatif").route(web::post().to(foresight::what_if)))
        .service(resource("/twins/{id}/history").route(web::get().to(history::history)))
        .service(resource("/twins/{id}/alerts/history").route(web::get().to(history::alerts)))
        .service(resource("/twins/{id}/commands/history").route(web::get().to(history::commands)))
        .service(resource("/alerts").route(web::get().to(handlers::list_alerts)))
        .service(resource("/").route(web::get().to(view::page)))
        .service(resource("/view/{file}").route(web::get().to(view::file)))
        .service(resource("/events").route(web::get().to(view::events::events)))
        .service(resource("/types").route(web::get().to(view::types)))
        .service(resource("/alerts/{id:.+}/ack").route(web::post().to(handlers::ack_alert)));
}

/// Runs `f` on the API's blocking pool (reads and renders that would hold
/// an HTTP worker), on a thread that [answers first](crate::priority::answer_first)
/// like the workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, actix_web::error::BlockingError> {
    web::block(move || {
        crate::priority::answer_first();
        f()
    })
    .await
}

/// Query strings that do not parse are a 400 in the stable shape.
fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|e, _| ApiError::BadRequest(format!("query: {e}")).into())
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|e, _| ApiError::BadRequest(format!("path: {e}")).into())
}

/// Starts the server on its own thread; returns once it listens.
pub fn start(cfg: ApiConfig, engine: EngineLink) -> Result<Server, StartError> {
    let feed = engine.feed.clone();
    let state = web::Data::new(AppState {
        engine,
        tokens: cfg.tokens,
        metrics: cfg.metrics,
        peers: super::peers::agent(),
    });
    let listen = cfg.listen;
    crate::priority::set_api_priority(cfg.priority);
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            let sys = actix_web::rt::System::new();
            sys.block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .app_data(query_config())
                        .app_data(path_config())
                        .wrap_fn(|req, srv| {
                            crate::priority::answer_first();
                            let started = Instant::now();
                            let fut = srv.call(req);
                            async move {
                                let res = fut.await?;
                                let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
                                telemetry::http_request(&route, res.status().as_u16(), started.elapsed().as_secs_f64());
                                Ok(res)
                            }
                        })
                        .configure(routes)
                        .default_service(web::to(not_found))
                })
                .workers(2)
                .disable_signals()
                .bind(listen);
                let server = match server {
                    Ok(s) => s,
                    Err(error) => {
                        let _ = tx.send(Err(StartError::Bind { addr: listen, error }));
                        return;
                    }
                };
                let addr = server.addrs().first().copied().unwrap_or(listen);
                let server = server.run();
                let _ = tx.send(Ok((addr, server.handle())));
                let _ = server.await;
            });
        })
        .map_err(|_| StartError::Thread)?;
    match rx.recv() {
        Ok(Ok((addr, handle))) => {
            tracing::info!(%addr, "HTTP API listening");
            tracing::info!("the operator's view: http://{addr}/");
            Ok(Server {
                addr,
                handle,
                thread: Some(thread),
                feed,
            })
        }
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(StartError::Thread)
        }
    }
}
