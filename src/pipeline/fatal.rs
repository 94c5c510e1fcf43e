//! The error a source or sink sends when the node must stop.

/// A failure of a running component (a source, a sink, the store writer)
/// that stops the node: sent on the engine's `fatal` channel. It carries the
/// component's own typed error (its `Display` and `source()` unchanged), so
/// components name what went wrong without knowing the engine.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Fatal(Box<dyn std::error::Error + Send + Sync + 'static>);

impl Fatal {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Fatal {
        Fatal(Box::new(error))
    }
}

/// Where a component reports a [`Fatal`] failure.
pub type FatalTx = crossbeam_channel::Sender<Fatal>;
