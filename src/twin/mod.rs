//! The twin of an asset.
//!
//! * [`model`] - the pure state machine `apply(state, input, now)`; no IO.
//! * [`commands`] - actuation commands in that model: desired state,
//!   pending until acknowledged, failure, rollback.
//! * [`schema`] - the per-asset-type tables the model runs on.
//! * [`record`] - the versioned on-disk form of a twin.
//! * [`view`] - read-only views of a twin for the HTTP API.
//! * [`actor`] - the supervised actor that owns a twin and its IO.

pub mod actor;
pub mod commands;
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
