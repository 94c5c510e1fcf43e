//! What passes between the stages of the dataflow, and nothing else: the
//! layer sources, twins' hosts, sinks and the engine share, so none of them
//! imports another's internals.
//!
//! * [`flow`]: permits that bound the chunks in flight (backpressure).
//! * [`chunk`]: decoded chunks and their per-asset groups of events.
//! * [`dead_letter`]: records that could not be applied, and why.
//! * [`output`]: what a twin hands the sinks per applied batch.
//! * [`shards`]: a cluster's shard controls and relayed values.
//! * [`fatal`]: the error a running component sends to stop the node.
//! * [`clock`]: processing time.
//! * [`watch`]: the live feed of changes operators watch (health, alerts,
//!   commands), recorded only while someone watches.
//!
//! Events themselves are the twin model's input type
//! ([`crate::twin::model::Event`]); chunks carry them in groups.

pub mod chunk;
pub mod clock;
pub mod dead_letter;
pub mod fatal;
pub mod flow;
pub mod output;
pub mod shards;
pub mod watch;

pub use chunk::{DecodedChunk, Group};
pub use clock::now_ms;
pub use dead_letter::{DeadLetter, DeadReason, Origin};
pub use fatal::{Fatal, FatalTx};
pub use flow::{Flow, Permit};
pub use output::OutputBatch;
pub use shards::{Acquired, RelayRecord, RemoteRelay, ShardControl};
