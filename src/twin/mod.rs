//! The twin of an asset.
//!
//! * [`model`] - the pure state machine `apply(state, input, now)`; no IO.
//! * [`schema`] - the per-asset-type tables the model runs on.
//! * [`record`] - the versioned on-disk form of a twin.
//! * [`actor`] - the supervised actor that owns a twin and its IO.

pub mod actor;
pub mod model;
pub mod record;
pub mod schema;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod semantics_tests;
