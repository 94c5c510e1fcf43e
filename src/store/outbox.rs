//! The outbox column family: messages of QoS 1 sinks not yet acknowledged
//! by their broker, staged with a checkpoint and read back in order.

use rocksdb::IteratorMode;

use super::{Checkpoint, Store, StoreError};

/// Messages of QoS 1 sinks not yet acknowledged by their broker, keyed by
/// sink name, NUL, and the message's sequence number (big-endian).
pub(super) const OUTBOX_CF: &str = "outbox";

impl Store {
    /// Stages an outbox message (`Some`) or its removal (`None`).
    pub fn stage_outbox(&self, ckpt: &mut Checkpoint, sink: &str, seq: u64, value: Option<&[u8]>) {
        let key = named_seq_key(sink, seq);
        match value {
            Some(v) => ckpt.batch.put_cf(&self.cf(OUTBOX_CF), key, v),
            None => ckpt.batch.delete_cf(&self.cf(OUTBOX_CF), key),
        }
    }

    /// Stages the removal of outbox messages `seqs` of `sink` (one range
    /// tombstone, however many messages).
    pub fn stage_outbox_removal(&self, ckpt: &mut Checkpoint, sink: &str, seqs: std::ops::Range<u64>) {
        match seqs.end - seqs.start {
            0 => {}
            1 => self.stage_outbox(ckpt, sink, seqs.start, None),
            _ => ckpt.batch.delete_range_cf(
                &self.cf(OUTBOX_CF),
                named_seq_key(sink, seqs.start),
                named_seq_key(sink, seqs.end),
            ),
        }
    }

    /// Calls `f(seq, value)` for every outbox message of `sink`, in order.
    pub fn for_each_outbox(
        &self,
        sink: &str,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.outbox_from(sink, 0, |seq, v| f(seq, v).map(|()| true))
    }

    /// Calls `f(seq, value)` for the outbox messages of `sink` from `from`
    /// on, in order, while it answers `true`.
    pub fn outbox_from(
        &self,
        sink: &str,
        from: u64,
        f: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.named_from(OUTBOX_CF, sink, from, f)
    }

    /// Calls `f(seq, value)` for the [`named_seq_key`] entries of `name` in
    /// column family `cf` from `from` on, in order, while it answers `true`.
    pub(super) fn named_from(
        &self,
        cf: &str,
        name: &str,
        from: u64,
        mut f: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let start = named_seq_key(name, from);
        let mode = IteratorMode::From(&start, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(&self.cf(cf), mode) {
            let (k, v) = item.map_err(StoreError::Read)?;
            let Some(seq) = named_seq(&k, name) else { break };
            if !f(seq, &v)? {
                break;
            }
        }
        Ok(())
    }

    /// The sinks with messages in the outbox, and how many each has.
    pub fn outbox_sinks(&self) -> Result<Vec<(String, usize)>, StoreError> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for item in self.db.iterator_cf(&self.cf(OUTBOX_CF), IteratorMode::Start) {
            let (k, _) = item.map_err(StoreError::Read)?;
            let name = String::from_utf8_lossy(&k[..k.len().saturating_sub(9)]);
            match out.last_mut() {
                Some((n, count)) if *n == name => *count += 1,
                _ => out.push((name.into_owned(), 1)),
            }
        }
        Ok(out)
    }
}

/// `name`, NUL, `seq` big-endian: the key of the outbox and the inbox, in
/// sequence order per name (no name runs into another: the NUL ends it).
pub(super) fn named_seq_key(name: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 9);
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence number of `key` if it is a [`named_seq_key`] of `name`.
pub(super) fn named_seq(key: &[u8], name: &str) -> Option<u64> {
    let rest = key.strip_prefix(name.as_bytes())?.strip_prefix(&[0])?;
    <[u8; 8]>::try_from(rest).ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_messages_are_kept_per_sink_in_sequence_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1).unwrap();
        let mut ckpt = Checkpoint::default();
        // "a" is a prefix of "ab": their messages must not mix.
        for (sink, seq) in [("ab", 1), ("a", 300), ("a", 2), ("ab", 0), ("a", 7)] {
            store.stage_outbox(&mut ckpt, sink, seq, Some(format!("{sink}{seq}").as_bytes()));
        }
        store.stage_outbox(&mut ckpt, "a", 7, None);
        store.commit(ckpt, false).unwrap();
        let read = |sink: &str| {
            let mut got = Vec::new();
            store
                .for_each_outbox(sink, |seq, v| {
                    got.push((seq, String::from_utf8(v.to_vec()).unwrap()));
                    Ok(())
                })
                .unwrap();
            got
        };
        assert_eq!(read("a"), [(2, "a2".to_string()), (300, "a300".to_string())]);
        assert_eq!(read("ab"), [(0, "ab0".to_string()), (1, "ab1".to_string())]);
        assert!(read("b").is_empty());
        assert_eq!(
            store.outbox_sinks().unwrap(),
            [("a".to_string(), 2), ("ab".to_string(), 2)]
        );
        // Read from a position, while asked; remove a range.
        let mut from = Vec::new();
        store
            .outbox_from("a", 3, |seq, _| {
                from.push(seq);
                Ok(true)
            })
            .unwrap();
        assert_eq!(from, [300]);
        let mut ckpt = Checkpoint::default();
        for seq in 10..20 {
            store.stage_outbox(&mut ckpt, "ab", seq, Some(b"x"));
        }
        store.commit(ckpt, false).unwrap();
        let mut ckpt = Checkpoint::default();
        store.stage_outbox_removal(&mut ckpt, "ab", 1..15);
        store.commit(ckpt, false).unwrap();
        let seqs: Vec<u64> = read("ab").into_iter().map(|(s, _)| s).collect();
        assert_eq!(seqs, [0, 15, 16, 17, 18, 19]);
        assert_eq!(read("a").len(), 2, "another sink's messages stay");
    }
}
