//! The twin of an asset, as a pure model: no IO, no clock, no threads
//! (`tests/layers.rs` checks it). The engine hosts twins and does their IO
//! (`engine::host`).
//!
//! * [`model`] - the pure state machine `apply(state, input, now)`.
//! * [`foresight`] - the model's forecast, and what-if runs of
//!   hypothetical commands on a copy of the twin.
//! * [`commands`] - actuation commands in that model: desired state,
//!   pending until acknowledged, failure, rollback.
//! * [`schema`] - the per-asset-type tables the model runs on.
//! * [`record`] - the versioned stored form of a twin (bytes; the store
//!   itself is the engine's business).
//! * [`view`] - read-only views of a twin for the HTTP API.

pub mod commands;
pub mod foresight;
pub mod model;
pub mod record;
pub mod schema;
pub mod view;

#[cfg(test)]
mod commands_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod semantics_tests;
#[cfg(test)]
mod view_tests;
