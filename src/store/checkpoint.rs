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
}

impl Store {
    /// Stages a twin record into `ckpt`.
    pub fn put_twin(&self, ckpt: &mut Checkpoint, shard: u32, asset: &str, record: &[u8]) {
        ckpt.batch.put_cf(&self.cf(&shard_cf(shard)), asset.as_bytes(), record);
        ckpt.twins += 1;
        ckpt.bytes += asset.len() + record.len();
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
}
