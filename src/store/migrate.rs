//! The store's layout format: checked on open, older formats this build
//! knows migrated (format 1 -> 2: the deadline index built from the timers;
//! 2 -> 3: nothing to rewrite).

use super::timers::deadline_key;
use super::{deadline_cf, Checkpoint, Store, StoreError, META_CF};

/// Format of the store layout (column families and meta keys). 2: the
/// deadline index (format 1 stores are migrated on open: the index is built
/// from the timers). 3: twins families may hold records in parts and merge
/// operands, folded by their merge operator ([`super::parts`]), which a
/// build before could not read: the format tells it so, rather than a
/// failed read of one twin. A format 2 store is format 3 as it is.
pub const STORE_FORMAT: u16 = 3;

const FORMAT_KEY: &[u8] = b"store/format";

impl Store {
    /// Checks the layout format, migrating an older one this build knows;
    /// `fresh`: the store was just created.
    pub(super) fn check_format(&self, fresh: bool) -> Result<(), StoreError> {
        let meta = self.cf(META_CF);
        let found = match self.db.get_cf(&meta, FORMAT_KEY).map_err(StoreError::Read)? {
            // Created by this build, or by a build before formats were written.
            None if fresh => STORE_FORMAT,
            None => 1,
            Some(v) if v.len() == 2 => u16::from_le_bytes([v[0], v[1]]),
            Some(_) => u16::MAX,
        };
        match found {
            STORE_FORMAT | 2 => {}
            1 => self.migrate_deadline_index()?,
            _ => {
                return Err(StoreError::UnsupportedFormat {
                    path: self.path.clone(),
                    found,
                    supported: STORE_FORMAT,
                })
            }
        }
        self.db
            .put_cf(&meta, FORMAT_KEY, STORE_FORMAT.to_le_bytes())
            .map_err(StoreError::Write)
    }

    /// Format 1 -> 2: builds every shard's deadline index from its timers
    /// (once; the format is written afterwards, so a crash part-way builds it
    /// again from the start).
    fn migrate_deadline_index(&self) -> Result<(), StoreError> {
        for shard in self.shards() {
            let cf = self.cf(&deadline_cf(shard));
            let mut ckpt = Checkpoint::default();
            let mut n = 0u64;
            self.for_each_timer(shard, |asset, at| {
                ckpt.batch.put_cf(&cf, deadline_key(at, asset), []);
                n += 1;
                Ok(())
            })?;
            self.commit(ckpt, true)?;
            tracing::info!(
                shard,
                timers = n,
                "store format 1 -> 2: deadline index built from the timers"
            );
        }
        Ok(())
    }
}

/// The meta key under which the store records its layout format.
pub fn format_key() -> &'static [u8] {
    FORMAT_KEY
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::timers::tests::due;
    use crate::store::{timer_cf, DeadlineCursor};

    #[test]
    fn a_format_1_store_gets_its_deadline_index_built_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            // What a format-1 build left: timers, no index, format 1.
            let s = Store::open(dir.path(), 1).unwrap();
            let mut ckpt = Checkpoint::default();
            let timers = s.cf(&timer_cf(0));
            for (asset, at) in [("x", 7i64), ("y", 3)] {
                ckpt.batch.put_cf(&timers, asset.as_bytes(), at.to_be_bytes());
            }
            drop(timers);
            s.commit(ckpt, true).unwrap();
            s.put_meta_raw(FORMAT_KEY, &1u16.to_le_bytes()).unwrap();
        }
        let s = Store::open(dir.path(), 1).unwrap();
        let got = due(&s, &mut DeadlineCursor::default(), i64::MAX, 100);
        assert_eq!(got, [(3, "y".into()), (7, "x".into())]);
        let format = s.db.get_cf(&s.cf(META_CF), FORMAT_KEY).unwrap();
        assert_eq!(
            format,
            Some(STORE_FORMAT.to_le_bytes().to_vec()),
            "the new format is written"
        );
    }

    #[test]
    fn a_format_2_store_opens_as_format_3_with_its_twins_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 1).unwrap();
            s.put_twin_raw(0, "a", &[5, 0, 9]).unwrap();
            s.put_meta_raw(FORMAT_KEY, &2u16.to_le_bytes()).unwrap();
        }
        let s = Store::open(dir.path(), 1).unwrap();
        assert_eq!(s.get_twin(0, "a").unwrap(), Some(vec![5, 0, 9]));
        let format = s.db.get_cf(&s.cf(META_CF), FORMAT_KEY).unwrap();
        assert_eq!(format, Some(3u16.to_le_bytes().to_vec()));
    }

    #[test]
    fn unknown_store_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 1).unwrap();
            s.put_meta_raw(FORMAT_KEY, &99u16.to_le_bytes()).unwrap();
        }
        let err = Store::open(dir.path(), 1).err().expect("must refuse");
        assert!(matches!(err, StoreError::UnsupportedFormat { found: 99, .. }), "{err}");
    }
}
