//! Output batches: what a twin (or a decoder, for dead letters) hands the
//! sinks, one batch per applied input, holding its chunk's flow permit.

use std::sync::Arc;
use std::time::Instant;

use super::dead_letter::DeadLetter;
use crate::pipeline::flow::Permit;
use crate::topology::OutputKind;
use crate::twin::model::{Event, Output};
use crate::twin::schema::{OutputMask, TypeModel};

/// Outputs of one twin batch (or dead letters of one input chunk).
#[derive(Debug)]
pub struct OutputBatch {
    pub asset: Option<Arc<str>>,
    pub model: Option<Arc<TypeModel>>,
    pub outputs: Vec<Output>,
    pub dead_letters: Vec<DeadLetter>,
    /// The events the twin applied (for sinks that take `events`).
    pub events: Vec<Event>,
    /// Processing time the batch was produced, epoch ms.
    pub at_ms: i64,
    /// When the batch was produced (the `output` hop starts).
    pub produced: Instant,
    pub permit: Option<Permit>,
}

impl OutputBatch {
    pub fn mask(&self) -> OutputMask {
        let mut m = OutputMask::default();
        for o in &self.outputs {
            if let Some(k) = o.kind() {
                m = m.with(k);
            }
        }
        if !self.dead_letters.is_empty() {
            m = m.with(OutputKind::DeadLetters);
        }
        if !self.events.is_empty() {
            m = m.with(OutputKind::Events);
        }
        m
    }
}
