//! A checkpoint: twin records, timers, outbox messages and source positions
//! staged in one RocksDB `WriteBatch`, then committed atomically.

use rocksdb::{WriteBatch, WriteOptions};

use super::{shard_cf, Store, StoreError, META_CF};

/// One atomic checkpoint being staged: twin records of one or more shards
/// and the source positions they reflect, in a RocksDB `WriteBatch` (records
/// are copied in once, as they arrive).
#[derive(Default)]
pub struct Checkpoint {
    pub(super) batch: WriteBatch,
    pub(super) twins: usize,
    /// Of `twins`, the merge operands.
    pub(super) operands: usize,
    pub(super) bytes: usize,
    /// The history clock this checkpoint moves to (see [`super::history`]).
    pub(super) clock: Option<i64>,
}

impl Checkpoint {
    pub fn twins(&self) -> usize {
        self.twins
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Twin records staged as merge operands ([`Store::merge_twin`]).
    pub fn operands(&self) -> usize {
        self.operands
    }
}

impl Store {
    /// Stages a twin record into `ckpt`.
    pub fn put_twin(&self, ckpt: &mut Checkpoint, shard: u32, asset: &str, record: &[u8]) {
        ckpt.batch.put_cf(&self.cf(&shard_cf(shard)), asset.as_bytes(), record);
        ckpt.twins += 1;
        ckpt.bytes += asset.len() + record.len();
    }

    /// Stages a merge operand of a twin record in [`parts`](super::parts)
    /// into `ckpt`: the parts of the twin that changed since its record
    /// before, which the store folds into it.
    pub fn merge_twin(&self, ckpt: &mut Checkpoint, shard: u32, asset: &str, parts: &[u8]) {
        ckpt.batch.merge_cf(&self.cf(&shard_cf(shard)), asset.as_bytes(), parts);
        ckpt.twins += 1;
        ckpt.operands += 1;
        ckpt.bytes += asset.len() + parts.len();
    }

    /// Stages a meta value (a source position) into `ckpt`.
    pub fn put_position(&self, ckpt: &mut Checkpoint, key: &str, value: &[u8]) {
        ckpt.batch.put_cf(&self.cf(META_CF), key.as_bytes(), value);
        ckpt.bytes += key.len() + value.len();
    }

    /// Stages the removal of a meta value into `ckpt`.
    pub fn delete_position(&self, ckpt: &mut Checkpoint, key: &str) {
        ckpt.batch.delete_cf(&self.cf(META_CF), key.as_bytes());
        ckpt.bytes += key.len();
    }

    /// Writes the checkpoint atomically; with `sync` the WAL is fsynced
    /// before this returns.
    pub fn commit(&self, ckpt: Checkpoint, sync: bool) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(ckpt.batch, &wo).map_err(StoreError::Write)?;
        if let Some(at) = ckpt.clock {
            self.clock.advance(at);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_is_atomic_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 2).unwrap();
            let mut ckpt = Checkpoint::default();
            s.put_twin(&mut ckpt, 0, "a", &[1, 2]);
            s.put_twin(&mut ckpt, 1, "b", &[3]);
            s.put_position(&mut ckpt, "source/x", &[9]);
            assert_eq!((ckpt.twins(), ckpt.bytes()), (2, 14));
            s.commit(ckpt, true).unwrap();
        }
        let s = Store::open(dir.path(), 2).unwrap();
        assert_eq!(s.get_twin(0, "a").unwrap(), Some(vec![1, 2]));
        assert_eq!(s.get_twin(1, "b").unwrap(), Some(vec![3]));
        assert_eq!(s.get_twin(0, "b").unwrap(), None);
        assert_eq!(s.get_meta("source/x").unwrap(), Some(vec![9]));
        let mut keys = Vec::new();
        s.for_each_twin(1, |k, _| {
            keys.push(k.to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(keys, vec!["b"]);
    }

    /// A value in parts with one section: `entries` as `(id, bytes)`.
    fn parts(header: &[u8], entries: &[(u16, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = crate::store::parts::Writer::new(&mut out, header);
        w.section(b"c");
        for (id, b) in entries {
            w.entry(*id, b);
        }
        w.finish();
        out
    }

    /// The header and standing entries (by id) of a twin's stored value.
    fn read(s: &Store, asset: &str) -> (Vec<u8>, Vec<(u16, Vec<u8>)>) {
        let v = s.get_twin(0, asset).unwrap().expect("stored");
        let p = crate::store::parts::Parts::read(&v).expect("in parts");
        let mut entries: Vec<(u16, Vec<u8>)> = p
            .sections
            .iter()
            .flat_map(|s| s.entries.iter().map(|(id, b)| (*id, b.to_vec())))
            .collect();
        entries.sort();
        (p.header.to_vec(), entries)
    }

    #[test]
    fn merged_parts_fold_into_the_value_across_reopens_and_compactions() {
        let dir = tempfile::tempdir().unwrap();
        let want = (
            b"h3".to_vec(),
            vec![(1, b"b2".to_vec()), (2, b"c3".to_vec()), (3, b"d1".to_vec())],
        );
        {
            let s = Store::open(dir.path(), 1).unwrap();
            let mut ckpt = Checkpoint::default();
            s.put_twin(&mut ckpt, 0, "a", &parts(b"h1", &[(0, b"a1"), (1, b"b1"), (3, b"d1")]));
            s.commit(ckpt, false).unwrap();
            let mut ckpt = Checkpoint::default();
            s.merge_twin(&mut ckpt, 0, "a", &parts(b"h2", &[(1, b"b2"), (0, b"")]));
            assert_eq!((ckpt.twins(), ckpt.operands()), (1, 1));
            s.commit(ckpt, true).unwrap();
            // One operand in the memtable, one flushed to a table file.
            s.flush().unwrap();
            let mut ckpt = Checkpoint::default();
            s.merge_twin(&mut ckpt, 0, "a", &parts(b"h3", &[(2, b"c3")]));
            s.commit(ckpt, true).unwrap();
            assert_eq!(read(&s, "a"), want);
        }
        // After a restart (the log replayed), and after compaction folded
        // the operands into the value.
        let s = Store::open(dir.path(), 1).unwrap();
        assert_eq!(read(&s, "a"), want);
        s.db.compact_range_cf(&s.cf(&shard_cf(0)), None::<&[u8]>, None::<&[u8]>);
        assert_eq!(read(&s, "a"), want);
        let mut seen = Vec::new();
        s.for_each_twin(0, |k, v| {
            seen.push((k.to_string(), v.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
    }

    #[test]
    fn an_operand_on_a_whole_record_fails_the_read_rather_than_guess() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1).unwrap();
        let mut ckpt = Checkpoint::default();
        s.put_twin(&mut ckpt, 0, "a", &[5, 0, 1, 2, 3]);
        s.merge_twin(&mut ckpt, 0, "a", &parts(b"h", &[(0, b"x")]));
        s.commit(ckpt, false).unwrap();
        let err = s.get_twin(0, "a").unwrap_err();
        assert!(matches!(err, StoreError::Read(_)), "{err:?}");
    }
}
