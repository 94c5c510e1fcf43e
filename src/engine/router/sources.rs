//! A source's slot in the router: its chunks put back in sequence order
//! (decoders finish them out of order), its position as of the chunks
//! routed, and where its acknowledgements go.

use std::collections::BTreeMap;
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::pipeline::DecodedChunk;
use crate::source::SourcePosition;

pub struct SourceSlot {
    pub name: Arc<str>,
    /// Whether the source has a durable position (files do, the simulator
    /// does not).
    pub positioned: bool,
    pub position: SourcePosition,
    pub next_seq: u64,
    pending: BTreeMap<u64, DecodedChunk>,
    pub done: bool,
    pub end_of_input: bool,
    /// Told the sequence number up to which this source's chunks are
    /// durable (sources that acknowledge after durability: MQTT QoS 1).
    pub acks: Option<Sender<u64>>,
}

impl SourceSlot {
    pub fn new(name: Arc<str>, positioned: bool, position: SourcePosition, running: bool) -> SourceSlot {
        SourceSlot {
            name,
            positioned,
            position,
            next_seq: 0,
            pending: BTreeMap::new(),
            done: !running,
            end_of_input: false,
            acks: None,
        }
    }

    /// Keeps a chunk that arrived before its turn (`seq` past `next_seq`).
    #[inline]
    pub(super) fn hold(&mut self, chunk: DecodedChunk) {
        self.pending.insert(chunk.seq, chunk);
    }

    /// The kept chunk whose turn it is now (`next_seq`), if it arrived.
    #[inline]
    pub(super) fn take_next(&mut self) -> Option<DecodedChunk> {
        let seq = self.next_seq;
        self.pending.remove(&seq)
    }
}
