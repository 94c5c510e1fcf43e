//! What the HTTP API asks the engine, and how the answers come back.
//!
//! A request goes to the router (which knows where every twin lives and
//! starts a stored twin that is not in memory), then to the twin's worker and
//! the twin actor itself, which answers from its own state: reads never take
//! a lock the ingestion path takes. Answers travel on one-shot channels the
//! API awaits. A write (an alert acknowledgement) is answered once it is
//! applied, and its `durable` channel fires when the checkpoint holding it
//! is committed.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::pipeline::watch::Feed;
use crate::source::decode::AssetIndex;
use crate::store::Store;
use crate::twin::schema::{Model, TypeModel};
use crate::twin::view::{AlertView, CommandView, Surveyed, TwinView};

/// A question for the engine.
#[derive(Debug)]
pub enum Request {
    /// The full view of one twin. `start`: start it from the store when it
    /// is not in memory (the API knows the store or the topology has it);
    /// otherwise an asset not in memory gets no answer.
    Twin {
        asset: String,
        start: bool,
        reply: oneshot::Sender<TwinView>,
    },
    /// A copy of one twin's state and its type model, to look ahead with
    /// ([`crate::twin::foresight`]) off the twin's thread.
    Copy {
        asset: String,
        start: bool,
        reply: oneshot::Sender<TwinCopy>,
    },
    /// The summary and alerts of every twin in memory.
    Survey { reply: oneshot::Sender<Vec<Surveyed>> },
    /// Acknowledge alert `seq` of rule `rule`.
    AckAlert {
        asset: String,
        start: bool,
        rule: String,
        seq: u32,
        reply: oneshot::Sender<Result<AlertView, AckError>>,
        durable: oneshot::Sender<()>,
    },
    /// Send command `command` = `value` with idempotency key `key`; the
    /// reply says whether it is new.
    Command {
        asset: String,
        start: bool,
        command: String,
        value: f64,
        key: String,
        reply: oneshot::Sender<Result<(CommandView, bool), CommandError>>,
        durable: oneshot::Sender<()>,
    },
}

/// A twin's state as of the question, with the type model it runs on.
#[derive(Debug)]
pub struct TwinCopy {
    pub model: Arc<TypeModel>,
    pub state: Box<crate::twin::model::TwinState>,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("asset type `{asset_type}` has no command `{command}` (it has: {})", known.join(", "))]
    NoSuchCommand {
        asset_type: String,
        command: String,
        known: Vec<String>,
    },
    #[error("command `{command}`: {value} is outside [{}, {}]",
        min.map_or("-inf".to_string(), |v| v.to_string()), max.map_or("+inf".to_string(), |v| v.to_string()))]
    OutOfRange {
        command: String,
        value: f64,
        min: Option<f64>,
        max: Option<f64>,
    },
    /// The key created a different command.
    #[error("idempotency key `{key}` already created command {} ({} = {}); use a new key for a new command", existing.id, existing.command, existing.value)]
    KeyReused { key: String, existing: Box<CommandView> },
    #[error("the twin failed to apply the command: {0}")]
    Failed(String),
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AckError {
    #[error("asset type `{asset_type}` has no rule `{rule}`")]
    NoSuchRule { asset_type: String, rule: String },
    #[error("alert {id} has never been raised")]
    NeverRaised { id: String },
    /// The alert is cleared, or a later alert of the rule replaced it.
    #[error("alert {id} is not active (its rule's current alert: {current})")]
    NotActive { id: String, current: String },
}

/// What the API reads without asking the router: the model, which asset ids
/// the topology admits, and the store (for twins that are not in memory).
/// The engine publishes it once it has opened the store.
pub struct Catalog {
    pub model: Arc<Model>,
    pub index: Arc<AssetIndex>,
    /// Weak: the engine owns the store and closes it when it stops, whatever
    /// the API still holds (a RocksDB left open at exit aborts the process).
    pub store: std::sync::Weak<Store>,
    /// Which shards this node owns (one, always, on a single node).
    pub sharding: Arc<crate::cluster::Sharding>,
    /// Source index -> name.
    pub source_names: Vec<Arc<str>>,
    /// The asset types as the view shows them (`GET /types`).
    pub types: Arc<[crate::twin::view::TypeView]>,
}

/// The API's end of the link to a running engine.
#[derive(Clone)]
pub struct EngineLink {
    pub requests: crossbeam_channel::Sender<Request>,
    pub catalog: Arc<std::sync::OnceLock<Catalog>>,
    /// What the twins publish for watchers (`GET /events`).
    pub feed: Arc<Feed>,
}

/// The engine's end.
pub struct ApiLink {
    pub requests: crossbeam_channel::Receiver<Request>,
    pub catalog: Arc<std::sync::OnceLock<Catalog>>,
    /// Where the API listens (a cluster node announces it).
    pub addr: Option<std::net::SocketAddr>,
    pub feed: Arc<Feed>,
}

/// A pair of connected ends.
pub fn link() -> (EngineLink, ApiLink) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let catalog = Arc::new(std::sync::OnceLock::new());
    let feed = Feed::new();
    (
        EngineLink {
            requests: tx,
            catalog: catalog.clone(),
            feed: feed.clone(),
        },
        ApiLink {
            requests: rx,
            catalog,
            addr: None,
            feed,
        },
    )
}

/// Collects one item from every twin a question was fanned out to: the
/// router, each worker and each twin hold a clone, and when the last one is
/// dropped the items are sent.
pub struct Gather<T> {
    items: Mutex<Vec<T>>,
    reply: Option<oneshot::Sender<Vec<T>>>,
}

impl Catalog {
    /// The type model of `asset`, if an entry of the topology admits it.
    pub fn type_of(&self, asset: &str) -> Option<&Arc<TypeModel>> {
        let entry = self.index.resolve(asset)?;
        Some(&self.model.types[self.index.entry_type[entry as usize] as usize])
    }

    /// The store, while the engine runs.
    pub fn store(&self) -> Option<Arc<Store>> {
        self.store.upgrade()
    }
}

impl<T> Gather<T> {
    pub fn new(reply: oneshot::Sender<Vec<T>>) -> Arc<Gather<T>> {
        Arc::new(Gather {
            items: Mutex::new(Vec::new()),
            reply: Some(reply),
        })
    }

    pub fn add(&self, item: T) {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).push(item);
    }
}

impl<T> Drop for Gather<T> {
    fn drop(&mut self) {
        if let Some(tx) = self.reply.take() {
            let items = std::mem::take(self.items.get_mut().unwrap_or_else(|p| p.into_inner()));
            let _ = tx.send(items);
        }
    }
}

impl<T> std::fmt::Debug for Gather<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gather")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gather_answers_when_its_last_holder_lets_go() {
        let (tx, mut rx) = oneshot::channel();
        let g = Gather::new(tx);
        let twins: Vec<_> = (0..3).map(|_| g.clone()).collect();
        drop(g);
        for (i, t) in twins.into_iter().enumerate() {
            assert!(rx.try_recv().is_err(), "answered before every twin added its item");
            t.add(i);
        }
        let mut got = rx.try_recv().expect("answered");
        got.sort();
        assert_eq!(got, vec![0, 1, 2]);
    }
}
