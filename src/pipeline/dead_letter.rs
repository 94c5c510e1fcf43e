//! Dead letters: records that could not be applied, with their origin, the
//! reason (a stable code) and the original bytes, so they can be fixed and
//! replayed. Decoders and twins make them; the dead-letter sink writes them.

use std::sync::Arc;

/// Why a record was dead-lettered (a stable, machine-readable code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadReason {
    /// Not valid JSON, or a field of the wrong type.
    Malformed,
    /// A field the decode mapping needs is absent.
    MissingField,
    /// The timestamp cannot be read.
    BadTimestamp,
    /// The timestamp is further ahead of the node's clock than
    /// `node.time_tolerance.future`.
    FutureTimestamp,
    /// The timestamp is further behind the node's clock than
    /// `node.time_tolerance.past`.
    PastTimestamp,
    /// No `assets` entry matches the asset id.
    UnknownAsset,
    /// The asset's type has no such sensor.
    UnknownSensor,
    /// The value is outside the sensor's declared range, or not finite.
    OutOfRange,
    /// The record states a telemetry contract other than the one the
    /// source's mapping reads (or none).
    UnknownContract,
    /// The sensor declares its sources and this source is not one of them.
    UnknownSource,
    /// The twin panicked on this event three times.
    Poison,
    /// A twin's stored record cannot be read (the payload is its bytes):
    /// the twin was quarantined and rebuilt (`node.damaged_twin`).
    DamagedState,
    /// Cluster: the record's key belongs to another partition than the one
    /// it arrived on (not produced with Kafka's default partitioner).
    WrongPartition,
}

impl DeadReason {
    pub fn code(self) -> &'static str {
        match self {
            DeadReason::Malformed => "malformed",
            DeadReason::MissingField => "missing_field",
            DeadReason::BadTimestamp => "bad_timestamp",
            DeadReason::FutureTimestamp => "future_timestamp",
            DeadReason::PastTimestamp => "past_timestamp",
            DeadReason::UnknownAsset => "unknown_asset",
            DeadReason::UnknownSensor => "unknown_sensor",
            DeadReason::OutOfRange => "out_of_range",
            DeadReason::UnknownContract => "unknown_contract",
            DeadReason::UnknownSource => "unknown_source",
            DeadReason::Poison => "poison",
            DeadReason::DamagedState => "damaged_state",
            DeadReason::WrongPartition => "wrong_partition",
        }
    }
}

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Origin {
    pub source: Arc<str>,
    /// The file a file source read (absent for other sources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<Arc<str>>,
    /// 1-based line number (files) or position in the source.
    pub line: u64,
    /// Byte offset of the record in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The MQTT or Kafka topic a record came on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<Arc<str>>,
    /// The Kafka partition (the offset is in `offset`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
}

/// A record that could not be applied, with everything needed to fix and
/// replay it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub origin: Origin,
    pub reason: DeadReason,
    pub message: String,
    /// The original bytes of the record.
    pub payload: Vec<u8>,
    /// The record's key (Kafka), kept for the dead-letter topic.
    pub key: Option<Vec<u8>>,
}

#[cfg(test)]
impl DeadLetter {
    /// Line `line` of source `source`, `{`: not JSON (sink tests).
    pub(crate) fn malformed_line(source: &str, line: u64) -> DeadLetter {
        DeadLetter {
            origin: Origin {
                source: source.into(),
                file: None,
                line,
                offset: None,
                topic: None,
                partition: None,
            },
            reason: DeadReason::Malformed,
            message: "not JSON".into(),
            payload: b"{".to_vec(),
            key: None,
        }
    }
}
