//! Readiness: what `GET /readyz` reports.
//!
//! A node is ready when its state is restored (the engine has opened the
//! store, loaded its timers and started its dataflow) and every broker
//! source is connected. Sources register when the engine starts them and
//! report connections as they come and go.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::Serialize;

static RESTORED: AtomicBool = AtomicBool::new(false);
static SOURCES: Mutex<Vec<(String, bool)>> = Mutex::new(Vec::new());
/// Cluster: shards being restored (not serving yet).
static RESTORING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// One broker source and whether it is connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceHealth {
    pub source: String,
    pub connected: bool,
}

/// What readiness is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// The engine has restored its state and is running.
    pub restored: bool,
    pub sources: Vec<SourceHealth>,
    /// Cluster: shards this node is restoring (it is not ready meanwhile).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restoring_shards: Vec<u32>,
}

/// Cluster: the shards being restored now.
pub fn set_restoring(shards: Vec<u32>) {
    *RESTORING.lock().unwrap_or_else(|p| p.into_inner()) = shards;
    super::ready(readiness().ready);
}

/// The engine is running on restored state (`true`), or stopped (`false`).
pub fn set_restored(up: bool) {
    RESTORED.store(up, Ordering::SeqCst);
    super::ready(readiness().ready);
}

/// Adds a broker source readiness waits for, not connected yet.
pub fn register_source(name: &str) {
    source_connected(name, false);
}

/// A broker source connected or lost its connection.
pub fn source_connected(name: &str, up: bool) {
    {
        let mut sources = SOURCES.lock().unwrap_or_else(|p| p.into_inner());
        match sources.iter_mut().find(|(n, _)| n == name) {
            Some(s) => s.1 = up,
            None => sources.push((name.to_string(), up)),
        }
    }
    super::ready(readiness().ready);
}

pub fn readiness() -> Readiness {
    let restored = RESTORED.load(Ordering::SeqCst);
    let sources: Vec<SourceHealth> = SOURCES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(source, connected)| SourceHealth {
            source: source.clone(),
            connected: *connected,
        })
        .collect();
    let restoring_shards = RESTORING.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Readiness {
        ready: restored && sources.iter().all(|s| s.connected) && restoring_shards.is_empty(),
        restored,
        sources,
        restoring_shards,
    }
}
