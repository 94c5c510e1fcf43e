//! Sources: where events come from.
//!
//! * [`file`]: JSON-lines files (replay, backfill), as fast as possible or at
//!   the recorded pace; resumes from the durable byte offset.
//! * [`simulator`]: a synthetic fleet with noise, drift, spikes and gaps.
//! * [`decode`]: raw record -> [`Event`](crate::twin::model::Event) by the
//!   topology's decode mapping; failures become dead letters.
//!
//! Sources read in chunks; each chunk carries a flow permit and a sequence
//! number, decoding runs on a pool of threads, and the router puts chunks
//! back in sequence order, so each asset's events keep their source order.

pub mod build;
pub mod decode;
pub mod file;
pub mod kafka;
pub mod mqtt;
pub mod simulator;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::pipeline::DecodedChunk;
use crate::store::envelope::{self, EnvelopeError};
use decode::Decoder;

/// Format version of stored source positions (1: without Kafka offsets,
/// migrated on read).
pub const POSITION_FORMAT: u16 = 2;

/// How far a source has been consumed, stored in the same write as the twin
/// state that reflects it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePosition {
    /// Identity of the file this position belongs to.
    pub fingerprint: Option<Fingerprint>,
    /// Next byte to read.
    pub offset: u64,
    /// Lines consumed so far.
    pub line: u64,
    /// Records decoded so far, including dead-lettered ones.
    pub records: u64,
    pub dead_letters: u64,
    /// The end of input was reached and applied (open windows flushed).
    pub finished: bool,
    /// Kafka: the next offset of every partition consumed, by topic.
    pub partitions: Vec<PartitionOffset>,
}

/// The next offset to consume from one Kafka partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    pub next: i64,
}

/// Format 1 of [`SourcePosition`].
#[derive(Deserialize)]
struct PositionV1 {
    fingerprint: Option<Fingerprint>,
    offset: u64,
    line: u64,
    records: u64,
    dead_letters: u64,
    finished: bool,
}

impl SourcePosition {
    /// Records that `partition` of `topic` continues at `next`.
    pub fn advance(&mut self, topic: &str, partition: i32, next: i64) {
        match self
            .partitions
            .iter_mut()
            .find(|p| p.partition == partition && p.topic == topic)
        {
            Some(p) => p.next = p.next.max(next),
            None => self.partitions.push(PartitionOffset {
                topic: topic.to_string(),
                partition,
                next,
            }),
        }
    }

    /// The next offset of `partition` of `topic`, if one is stored.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.partitions
            .iter()
            .find(|p| p.partition == partition && p.topic == topic)
            .map(|p| p.next)
    }

    pub fn meta_key(source: &str) -> String {
        format!("source/{source}")
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut buf = envelope::start(POSITION_FORMAT, 96);
        bincode::serde::encode_into_std_write(self, &mut buf, bincode::config::standard())
            .expect("writing to a Vec cannot fail");
        buf
    }

    pub fn decode(bytes: &[u8]) -> Result<SourcePosition, EnvelopeError> {
        let corrupt = |e: bincode::error::DecodeError| EnvelopeError::Corrupt(format!("source position: {e}"));
        if let Ok(v1) = envelope::open(bytes, 1, "source position") {
            let (p, _): (PositionV1, _) =
                bincode::serde::decode_from_slice(v1, crate::store::envelope::bincode_config()).map_err(corrupt)?;
            return Ok(SourcePosition {
                fingerprint: p.fingerprint,
                offset: p.offset,
                line: p.line,
                records: p.records,
                dead_letters: p.dead_letters,
                finished: p.finished,
                partitions: Vec::new(),
            });
        }
        let payload = envelope::open(bytes, POSITION_FORMAT, "source position")?;
        bincode::serde::decode_from_slice(payload, crate::store::envelope::bincode_config())
            .map(|(p, _)| p)
            .map_err(corrupt)
    }
}

/// Identifies a file by its path and the hash of its first 64 KiB, so a
/// position is never applied to a different file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub path: String,
    pub head_len: u64,
    pub head_hash: u64,
}

impl Fingerprint {
    /// Bytes hashed from the start of a file.
    pub const HEAD: u64 = 1 << 16;

    pub fn of(path: &std::path::Path) -> std::io::Result<Fingerprint> {
        Self::of_prefix(path, Self::HEAD)
    }

    /// The fingerprint of the first `limit` bytes (fewer if the file is shorter).
    fn of_prefix(path: &std::path::Path, limit: u64) -> std::io::Result<Fingerprint> {
        use std::io::Read;
        let mut head = Vec::with_capacity(limit.min(Self::HEAD) as usize);
        std::fs::File::open(path)?.take(limit).read_to_end(&mut head)?;
        let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(Fingerprint {
            path: abs.display().to_string(),
            head_len: head.len() as u64,
            head_hash: envelope::fnv1a(&head),
        })
    }

    /// Whether the file at `path` still starts with the bytes this fingerprint
    /// was taken of. A file that only grew since (an appended log, even one
    /// shorter than [`Self::HEAD`] when first read) still matches; the path may
    /// differ (a moved file).
    pub fn matches(&self, path: &std::path::Path) -> std::io::Result<bool> {
        let now = Self::of_prefix(path, self.head_len)?;
        Ok(now.head_len == self.head_len && now.head_hash == self.head_hash)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The topology asks for something this source cannot do.
    #[error("source `{source_name}` {problem}")]
    Config { source_name: String, problem: String },
    /// The broker refused the connection for a reason retrying cannot fix
    /// (credentials, authorisation, client id).
    #[error("source `{source_name}`: the MQTT broker refused the connection: {reason}")]
    Refused { source_name: String, reason: String },
    #[error("source `{source_name}`: cannot start a thread: {error}")]
    Thread { source_name: String, error: String },
    #[error("source `{source_name}`: Kafka: {reason}")]
    Kafka { source_name: String, reason: String },
    #[error("source `{source_name}`: cannot read `{property}` from environment variable `{var}`")]
    KafkaSecret {
        source_name: String,
        property: String,
        var: String,
    },
    #[error("source `{source_name}`: cannot read or write its inbox in the store: {error}")]
    Inbox {
        source_name: String,
        error: crate::store::StoreError,
    },
    #[error("source `{source_name}`: {error}")]
    Credentials {
        source_name: String,
        error: crate::mqtt::CredentialError,
    },
    #[error("source `{source_name}`: cannot read {path}: {error}")]
    Io {
        source_name: String,
        path: PathBuf,
        error: std::io::Error,
    },
    /// `stored` describes the file the position was taken of.
    #[error("source `{source_name}`: the stored position belongs to {stored}, and the first {head_len} bytes of {path} differ from it; the state directory holds another run: start over with `twinstream replay --fresh`, or use another state directory")]
    OtherFile {
        source_name: String,
        path: PathBuf,
        stored: String,
        head_len: u64,
    },
    #[error("source `{source_name}`: {path} is shorter ({len} bytes) than the stored position ({offset}); was the file truncated?")]
    Truncated {
        source_name: String,
        path: PathBuf,
        len: u64,
        offset: u64,
    },
}

/// Raw bytes of one chunk, on their way to the decoder pool.
pub struct DecodeJob {
    pub data: Vec<u8>,
    /// Byte offset of `data` in the source.
    pub offset: u64,
    /// 1-based number of the first line in `data`.
    pub first_line: u64,
    pub decoder: Arc<Decoder>,
    /// Pre-filled with the chunk's sequence, position and permit.
    pub chunk: DecodedChunk,
    /// Where `data` goes once decoded, for the reader to fill again: a fresh
    /// multi-MiB buffer per chunk is fresh pages from the OS, and zeroing
    /// them cost the reader thread ~20% of a replay's CPU.
    pub recycle: Option<crossbeam_channel::Sender<Vec<u8>>>,
}

/// Runs one decoder thread: jobs in, decoded chunks out, until the job channel
/// closes.
pub fn decoder_loop(jobs: crossbeam_channel::Receiver<DecodeJob>, out: crossbeam_channel::Sender<DecodedChunk>) {
    let mut scratch = decode::Scratch::default();
    for mut job in jobs {
        job.decoder
            .decode_lines(&job.data, job.offset, job.first_line, &mut job.chunk, &mut scratch);
        if let Some(recycle) = &job.recycle {
            let mut data = std::mem::take(&mut job.data);
            data.clear();
            // A full pool means the reader has buffers enough: drop this one.
            let _ = recycle.try_send(data);
        }
        if out.send(job.chunk).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_in_an_envelope() {
        let p = SourcePosition {
            fingerprint: Some(Fingerprint {
                path: "/x".into(),
                head_len: 3,
                head_hash: 7,
            }),
            offset: 10,
            line: 2,
            records: 2,
            dead_letters: 1,
            finished: true,
            partitions: vec![PartitionOffset {
                topic: "t".into(),
                partition: 3,
                next: 42,
            }],
        };
        assert_eq!(SourcePosition::decode(&p.encode()), Ok(p.clone()));

        // Format 1 (no partitions) is migrated on read.
        #[derive(Serialize)]
        struct V1<'a>(&'a Option<Fingerprint>, u64, u64, u64, u64, bool);
        let mut v1 = envelope::start(1, 64);
        let old = V1(&p.fingerprint, p.offset, p.line, p.records, p.dead_letters, p.finished);
        bincode::serde::encode_into_std_write(&old, &mut v1, bincode::config::standard()).unwrap();
        let migrated = SourcePosition::decode(&v1).unwrap();
        assert_eq!(
            migrated,
            SourcePosition {
                partitions: Vec::new(),
                ..p
            }
        );

        let mut q = SourcePosition::default();
        q.advance("t", 1, 10);
        q.advance("t", 1, 12);
        q.advance("u", 1, 5);
        assert_eq!(
            (q.next_offset("t", 1), q.next_offset("u", 1), q.next_offset("t", 2)),
            (Some(12), Some(5), None)
        );
        let mut bad = SourcePosition::default().encode();
        bad[0] = 9;
        assert!(matches!(
            SourcePosition::decode(&bad),
            Err(EnvelopeError::UnknownVersion { found: 9, .. })
        ));
    }
}
