//! The HTTP API (actix-web, JSON): twins, alerts, health, readiness,
//! Prometheus metrics and the OpenAPI description.
//!
//! * [`server`] - start and stop, the routes, the metrics middleware.
//! * [`handlers`] - what each route does; reads ask the twin actors through
//!   the router ([`crate::engine::query`]), never the store's write path.
//! * [`foresight`] - the model's forecast and what-if runs: the twin sends
//!   a copy of its state, the prediction runs off its thread.
//! * [`history`] - a twin's past (sensor buckets, alert transitions,
//!   commands), read from the store's history column families.
//! * [`auth`] - bearer tokens (from the environment or a file, compared in
//!   constant time).
//! * [`error`] - the one error shape: `{"error": {"code", "message"}}`.
//! * [`openapi`] - the OpenAPI document served at `/openapi.json`.
//! * [`view`] - the operator's web page at `/` (embedded) and the stream
//!   of changes it listens to (`/events`).
//! * [`peers`] - a cluster node forwards requests about other nodes' shards
//!   to their owners and gathers lists from every owner.

pub mod auth;
pub mod error;
pub mod foresight;
pub mod handlers;
pub mod history;
pub mod openapi;
pub mod peers;
pub mod server;
pub mod view;

pub use error::ApiError;
pub use server::{start, ApiConfig, Server, StartError};
