//! Decoded chunks: what sources hand the router, in each source's order.

use std::sync::Arc;
use std::time::Instant;

use compact_str::CompactString;

use super::dead_letter::DeadLetter;
use super::shards::{RemoteRelay, ShardControl};
use crate::pipeline::flow::Permit;
use crate::twin::model::Event;

/// Readings of one asset from one chunk, in arrival order.
#[derive(Debug)]
pub struct Group {
    /// The asset id; ids up to 24 bytes are stored inline.
    pub asset: CompactString,
    pub entry: u32,
    pub events: Vec<Event>,
}

/// A decoded chunk of one source, in the source's order (`seq`).
#[derive(Debug)]
pub struct DecodedChunk {
    pub source: u16,
    pub seq: u64,
    pub groups: Vec<Group>,
    pub dead_letters: Vec<DeadLetter>,
    /// Records read (including dead-lettered ones).
    pub records: u64,
    pub events: u64,
    /// Where the source continues after this chunk (file: byte offset, line).
    pub end_offset: u64,
    pub end_line: u64,
    /// The last chunk of this source run: it stops after it.
    pub last: bool,
    /// The source read everything there is (end of the file).
    pub end_of_input: bool,
    /// Kafka: `(topic, partition, next offset)` of the partitions this chunk
    /// read from.
    pub partitions: Vec<(Arc<str>, i32, i64)>,
    pub received_at: Instant,
    pub permit: Option<Permit>,
    /// Cluster source: a change of the shards this node owns.
    pub control: Option<ShardControl>,
    /// Cluster source: values twins of other nodes relayed to twins here.
    pub relays: Vec<RemoteRelay>,
}

impl DecodedChunk {
    pub fn empty(source: u16, seq: u64, end_offset: u64, end_line: u64) -> DecodedChunk {
        DecodedChunk {
            source,
            seq,
            groups: Vec::new(),
            dead_letters: Vec::new(),
            records: 0,
            events: 0,
            end_offset,
            end_line,
            last: false,
            end_of_input: false,
            partitions: Vec::new(),
            received_at: Instant::now(),
            permit: None,
            control: None,
            relays: Vec::new(),
        }
    }
}
