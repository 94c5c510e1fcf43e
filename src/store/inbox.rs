//! The inbox column family: MQTT QoS 1 messages acknowledged to their
//! broker before a checkpoint holds the state they produce (the source's
//! write-ahead inbox, `ack_after: inbox`).
//!
//! The source writes each group of messages it routes in one batch, with
//! the durability of a checkpoint (`node.snapshot.sync`), and acknowledges
//! them once that write returns; it removes them (one range tombstone) once
//! a checkpoint holding their state is durable. What a crash leaves here is
//! read back, in order, when the node starts: the messages the broker will
//! not send again because they were acknowledged.
//!
//! Key: source name, NUL, the entry's sequence number (big-endian), like the
//! outbox's. Value: a versioned envelope of `[topic length u32 LE][topic]
//! [payload]`.

use rocksdb::{IteratorMode, WriteBatch, WriteOptions};

use super::outbox::{named_seq, named_seq_key};
use super::{envelope, Store, StoreError};

pub(super) const INBOX_CF: &str = "inbox";

/// Format of an inbox value: `[topic length u32 LE][topic][payload]`.
pub const INBOX_FORMAT: u16 = 1;

/// A message of the inbox: its topic and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxMessage<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
}

impl Store {
    /// Writes `messages` as the inbox entries `first..` of `source`, in one
    /// batch: with `sync` the write-ahead log is fsynced before this
    /// returns (survives power loss, like a checkpoint with
    /// `snapshot.sync`). Returns the sequence number after the last.
    pub fn inbox_append<'a>(
        &self,
        source: &str,
        first: u64,
        messages: impl IntoIterator<Item = InboxMessage<'a>>,
        sync: bool,
    ) -> Result<u64, StoreError> {
        let cf = self.cf(INBOX_CF);
        let mut batch = WriteBatch::default();
        let mut seq = first;
        let mut value = Vec::new();
        for m in messages {
            value.clear();
            envelope::put_header(INBOX_FORMAT, &mut value);
            value.extend_from_slice(&(m.topic.len() as u32).to_le_bytes());
            value.extend_from_slice(m.topic.as_bytes());
            value.extend_from_slice(m.payload);
            batch.put_cf(&cf, named_seq_key(source, seq), &value);
            seq += 1;
        }
        if seq > first {
            let mut wo = WriteOptions::default();
            wo.set_sync(sync);
            self.db.write_opt(batch, &wo).map_err(StoreError::Write)?;
        }
        Ok(seq)
    }

    /// Removes the inbox entries `seqs` of `source` (one range tombstone).
    /// Not synced: an entry a crash brings back is read again at the start,
    /// and the twin recognises a reading it already holds.
    pub fn inbox_remove(&self, source: &str, seqs: std::ops::Range<u64>) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.db
            .delete_range_cf(
                &self.cf(INBOX_CF),
                named_seq_key(source, seqs.start),
                named_seq_key(source, seqs.end),
            )
            .map_err(StoreError::Write)
    }

    /// The sequence numbers of the first and after the last inbox entry of
    /// `source` (equal when it has none: `0..0`).
    pub fn inbox_bounds(&self, source: &str) -> Result<std::ops::Range<u64>, StoreError> {
        let mut first = None;
        self.named_from(INBOX_CF, source, 0, |seq, _| {
            first = Some(seq);
            Ok(false)
        })?;
        let Some(first) = first else { return Ok(0..0) };
        let end = named_seq_key(source, u64::MAX);
        let last = self
            .db
            .iterator_cf(
                &self.cf(INBOX_CF),
                IteratorMode::From(&end, rocksdb::Direction::Reverse),
            )
            .next()
            .transpose()
            .map_err(StoreError::Read)?
            .and_then(|(k, _)| named_seq(&k, source))
            .unwrap_or(first);
        Ok(first..last + 1)
    }

    /// How many inbox entries `source` holds from sequence number `from` on.
    pub fn inbox_count(&self, source: &str, from: u64) -> Result<u64, StoreError> {
        let mut n = 0;
        self.named_from(INBOX_CF, source, from, |_, _| {
            n += 1;
            Ok(true)
        })?;
        Ok(n)
    }

    /// Puts a raw inbox value; for tools and tests that prepare a store.
    pub fn put_inbox_raw(&self, source: &str, seq: u64, value: &[u8]) -> Result<(), StoreError> {
        self.db
            .put_cf(&self.cf(INBOX_CF), named_seq_key(source, seq), value)
            .map_err(StoreError::Write)
    }

    /// Calls `f(seq, message)` for the inbox entries of `source` from
    /// `from` on, in order, while it answers `true`. An entry that does
    /// not read as a message (a damaged value) is handed over as
    /// [`StoreError::Envelope`] with its raw bytes, so the caller can
    /// dead-letter it rather than lose it.
    pub fn inbox_from(
        &self,
        source: &str,
        from: u64,
        mut f: impl FnMut(u64, Result<InboxMessage<'_>, (StoreError, &[u8])>) -> bool,
    ) -> Result<(), StoreError> {
        self.named_from(INBOX_CF, source, from, |seq, v| {
            let message = decode(v).map_err(|cause| {
                let key = format!("inbox {source}/{seq}");
                (StoreError::Envelope { key, cause }, v)
            });
            Ok(f(seq, message))
        })
    }
}

/// Whether `value` reads as an inbox message (`twinstream check-state`).
pub fn check_inbox_value(value: &[u8]) -> Result<(), envelope::EnvelopeError> {
    decode(value).map(|_| ())
}

/// The message an inbox value holds.
fn decode(value: &[u8]) -> Result<InboxMessage<'_>, envelope::EnvelopeError> {
    let body = envelope::open(value, INBOX_FORMAT, "inbox message")?;
    let corrupt = |what: &str| envelope::EnvelopeError::Corrupt(format!("inbox message {what}"));
    let len = body
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| corrupt("cut short"))?;
    let topic = body.get(4..4 + len).ok_or_else(|| corrupt("topic cut short"))?;
    let topic = std::str::from_utf8(topic).map_err(|_| corrupt("topic is not UTF-8"))?;
    Ok(InboxMessage {
        topic,
        payload: &body[4 + len..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(store: &Store, source: &str, from: u64) -> Vec<(u64, String, Vec<u8>)> {
        let mut got = Vec::new();
        store
            .inbox_from(source, from, |seq, m| {
                let m = m.expect("readable");
                got.push((seq, m.topic.to_string(), m.payload.to_vec()));
                true
            })
            .unwrap();
        got
    }

    #[test]
    fn inbox_entries_are_kept_per_source_in_order_and_removed_by_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1).unwrap();
        let msg = |topic, payload| InboxMessage { topic, payload };
        assert_eq!(store.inbox_bounds("a").unwrap(), 0..0);
        // "a" is a prefix of "ab": their entries must not mix.
        let next = store
            .inbox_append("ab", 5, [msg("t/1", &b"{}"[..]), msg("", b"")], true)
            .unwrap();
        assert_eq!(next, 7);
        let next = store
            .inbox_append("a", 0, (0..300).map(|_| msg("p/1/t", &b"{\"v\":1}"[..])), false)
            .unwrap();
        assert_eq!(next, 300);
        assert_eq!(
            store.inbox_append("a", 300, [], false).unwrap(),
            300,
            "nothing to write"
        );
        assert_eq!(store.inbox_bounds("a").unwrap(), 0..300);
        assert_eq!(store.inbox_bounds("ab").unwrap(), 5..7);
        assert_eq!(store.inbox_bounds("b").unwrap(), 0..0);
        assert_eq!(
            read(&store, "ab", 0),
            [(5, "t/1".to_string(), b"{}".to_vec()), (6, String::new(), Vec::new())]
        );
        store.inbox_remove("a", 0..299).unwrap();
        assert_eq!(
            read(&store, "a", 0),
            [(299, "p/1/t".to_string(), b"{\"v\":1}".to_vec())]
        );
        assert_eq!(store.inbox_bounds("a").unwrap(), 299..300);
        assert_eq!(read(&store, "ab", 6).len(), 1, "read from a position");
        drop(store);
        // Entries survive a reopen.
        let store = Store::open(dir.path(), 1).unwrap();
        assert_eq!(store.inbox_bounds("ab").unwrap(), 5..7);
        store.inbox_remove("ab", 5..7).unwrap();
        assert!(read(&store, "ab", 0).is_empty());
        assert_eq!(read(&store, "a", 0).len(), 1, "another source's entries stay");
    }

    #[test]
    fn a_damaged_entry_is_handed_over_with_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1).unwrap();
        store
            .inbox_append(
                "a",
                0,
                [InboxMessage {
                    topic: "t",
                    payload: b"x",
                }],
                false,
            )
            .unwrap();
        for (i, value) in [&b"\x01"[..], b"\x02\x00abc", b"\x01\x00\xff\x00\x00\x00t"]
            .iter()
            .enumerate()
        {
            store.put_inbox_raw("a", 1 + i as u64, value).unwrap();
        }
        let mut got = Vec::new();
        store
            .inbox_from("a", 0, |seq, m| {
                got.push((
                    seq,
                    m.map(|m| m.payload.to_vec())
                        .map_err(|(e, raw)| (e.to_string(), raw.to_vec())),
                ));
                true
            })
            .unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], (0, Ok(b"x".to_vec())));
        for (i, (seq, m)) in got[1..].iter().enumerate() {
            let (error, raw) = m.as_ref().expect_err("damaged");
            assert_eq!(*seq, 1 + i as u64);
            assert!(error.contains(&format!("inbox a/{seq}")), "{error}");
            assert_eq!(
                raw,
                &store
                    .db
                    .get_cf(&store.cf(INBOX_CF), named_seq_key("a", *seq))
                    .unwrap()
                    .unwrap()
            );
        }
    }
}
