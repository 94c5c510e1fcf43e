//! The validated topology: what a topology YAML file means, as typed values.
//!
//! Everything here has passed validation: names are unique, references
//! resolve, durations are positive, rule expressions are compiled. Indices
//! (`usize`/`u16`) point into the vectors of [`Topology`].

mod asset_types;
mod assets;
mod connections;
mod history;
mod model;
mod node;
mod rules;
mod sinks;
mod sources;
mod windows;

pub use asset_types::*;
pub use assets::*;
pub use connections::*;
pub use history::*;
pub use model::{AnomalySpec, ModelSpec, Observation, Preset, Transition as ModelTransition};
pub use node::*;
pub use rules::*;
pub use sinks::*;
pub use sources::*;
pub use windows::*;

use std::path::PathBuf;
use std::time::Duration;

/// Format version of topology files this build understands.
pub const TOPOLOGY_VERSION: u32 = 1;

/// How long a twin idles before it is passivated, unless `node.passivate_after` says.
pub const DEFAULT_PASSIVATE_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Topology {
    /// The file it was loaded from, as given by the user.
    pub file: PathBuf,
    pub node: NodeSpec,
    pub asset_types: Vec<AssetType>,
    pub assets: Vec<AssetEntry>,
    pub sources: Vec<SourceSpec>,
    pub windows: Vec<WindowSpec>,
    pub joins: Vec<JoinSpec>,
    /// The rules this node evaluates (see [`NodeRole::evaluates`]).
    pub rules: Vec<RuleSpec>,
    /// Rules of the file another role evaluates (an edge skips the rules
    /// not marked `local`, a cluster node the local ones).
    pub rules_elsewhere: Vec<String>,
    pub sinks: Vec<SinkSpec>,
}

impl Topology {
    /// The longest any asset type keeps downsampled history or alert and
    /// command history (`None`: no type keeps any).
    pub fn history_keep(&self) -> Option<Duration> {
        self.asset_types
            .iter()
            .filter_map(|t| t.history.as_ref())
            .flat_map(|h| h.tiers.iter().map(|t| t.keep).chain(h.events))
            .max()
    }
}
