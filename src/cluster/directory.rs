//! Who owns each shard, for the HTTP API of every node: a compacted topic
//! (`<changelog>.owners`, one partition), key = shard, value = the owner's
//! node name, HTTP address and incarnation, written by each node when it
//! takes a shard over and read by every node from the start.
//!
//! An entry is advice, not authority: the changelog's claims fence writers,
//! and a node answers for a shard only while it owns it. A request
//! forwarded to a node that no longer owns the shard is refused there (421)
//! instead of forwarded again, and the client retries. Of two entries of a
//! shard the higher incarnation wins (incarnations grow across owners).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

/// The owners topic of changelog `changelog`.
pub fn topic(changelog: &str) -> String {
    format!("{changelog}.owners")
}

/// The owner of a shard, as it announced itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Its `node.name`.
    pub node: String,
    /// Where its HTTP API answers (`http://host:port`), when it has one.
    pub http: Option<String>,
    pub incarnation: u64,
}

impl Owner {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an owner serializes")
    }

    pub fn decode(bytes: &[u8]) -> Option<Owner> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The owners this node has heard of, and how it announces itself.
#[derive(Debug, Default)]
pub struct Directory {
    owners: RwLock<HashMap<u32, Owner>>,
    /// This node's own HTTP address, as it announces it.
    me: RwLock<Option<String>>,
}

impl Directory {
    pub fn set_me(&self, http: Option<String>) {
        *self.me.write().unwrap_or_else(|p| p.into_inner()) = http;
    }

    /// This node's HTTP address as announced.
    pub fn me(&self) -> Option<String> {
        self.me.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records `owner` for `shard` unless a later incarnation is known.
    pub fn learn(&self, shard: u32, owner: Owner) {
        let mut owners = self.owners.write().unwrap_or_else(|p| p.into_inner());
        match owners.get(&shard) {
            Some(known) if known.incarnation > owner.incarnation => {}
            _ => {
                owners.insert(shard, owner);
            }
        }
    }

    pub fn owner(&self, shard: u32) -> Option<Owner> {
        self.owners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&shard)
            .cloned()
    }

    /// The HTTP address of every other node that owns a shard, with the
    /// shards it owns.
    pub fn peers(&self) -> Vec<(String, Vec<u32>)> {
        let me = self.me();
        let mut peers: HashMap<String, Vec<u32>> = HashMap::new();
        for (shard, o) in self.owners.read().unwrap_or_else(|p| p.into_inner()).iter() {
            if let Some(http) = o.http.as_ref().filter(|h| Some(*h) != me.as_ref()) {
                peers.entry(http.clone()).or_default().push(*shard);
            }
        }
        let mut peers: Vec<(String, Vec<u32>)> = peers.into_iter().collect();
        for (_, shards) in &mut peers {
            shards.sort_unstable();
        }
        peers.sort();
        peers
    }
}

/// Reads the owners topic from its start into `directory` until `stop`.
/// Runs on a thread of its own; a broker that is away is retried by
/// librdkafka.
pub fn follow(config: &ClientConfig, topic: &str, directory: &Directory, stop: &AtomicBool) {
    let mut c = config.clone();
    c.set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = match c.create() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(topic, error = %e, "cannot read the shard owners; HTTP requests for other nodes' assets are refused");
            return;
        }
    };
    let mut tpl = TopicPartitionList::new();
    if tpl.add_partition_offset(topic, 0, Offset::Beginning).is_err() || consumer.assign(&tpl).is_err() {
        tracing::error!(topic, "cannot assign the shard owners' partition");
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let shard = m
                    .key()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .and_then(|k| k.parse::<u32>().ok());
                match (shard, m.payload().and_then(Owner::decode)) {
                    (Some(shard), Some(owner)) => directory.learn(shard, owner),
                    _ => tracing::warn!(topic, offset = m.offset(), "not a shard owner record; ignored"),
                }
            }
            Some(Err(e)) => tracing::debug!(topic, error = %e, "reading the shard owners"),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(node: &str, http: &str, incarnation: u64) -> Owner {
        Owner {
            node: node.into(),
            http: Some(http.into()),
            incarnation,
        }
    }

    #[test]
    fn the_latest_incarnation_owns_a_shard_and_peers_exclude_this_node() {
        let d = Directory::default();
        d.set_me(Some("http://a".into()));
        d.learn(0, owner("b", "http://b", 5));
        d.learn(0, owner("c", "http://c", 3));
        assert_eq!(
            d.owner(0).unwrap().node,
            "b",
            "an older incarnation does not replace a newer one"
        );
        d.learn(0, owner("c", "http://c", 7));
        assert_eq!(d.owner(0).unwrap().node, "c");
        d.learn(1, owner("a", "http://a", 8));
        d.learn(2, owner("c", "http://c", 9));
        assert_eq!(d.peers(), [("http://c".to_string(), vec![0, 2])]);
        assert_eq!(
            Owner::decode(&owner("b", "http://b", 5).encode()),
            Some(owner("b", "http://b", 5))
        );
        assert_eq!(Owner::decode(b"garbage"), None);
    }
}
