//! Timers and the deadline index: a twin's next deadline (`timers-<shard>`,
//! key = asset id) and the same deadlines in order (`deadlines-<shard>`),
//! staged together, and the index read in deadline order from a cursor.

use rocksdb::IteratorMode;

use super::{deadline_cf, envelope, timer_cf, Checkpoint, Store, StoreError};

/// A deadline as an index key prefix: big-endian with the sign bit flipped,
/// so keys sort as the deadlines do (negative ones included).
pub(super) fn deadline_prefix(at: i64) -> [u8; 8] {
    ((at as u64) ^ (1 << 63)).to_be_bytes()
}

/// The index key of `asset`'s deadline `at`.
pub(super) fn deadline_key(at: i64, asset: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + asset.len());
    key.extend_from_slice(&deadline_prefix(at));
    key.extend_from_slice(asset.as_bytes());
    key
}

/// Where a reading of the deadline index goes on ([`Store::deadlines_from`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadlineCursor(Vec<u8>);

/// A change of a twin's stored deadline: what the store holds now, and what
/// it should hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerChange {
    pub old: Option<i64>,
    pub new: Option<i64>,
}

impl Store {
    /// Stages a change of a twin's timer deadline (`new: None`: it has
    /// none) in the timers and the deadline index; `old` must be what the
    /// store holds (its entry in the index is removed).
    pub fn put_timer(&self, ckpt: &mut Checkpoint, shard: u32, asset: &str, change: TimerChange) {
        let timers = &self.cf(&timer_cf(shard));
        let index = &self.cf(&deadline_cf(shard));
        if change.old == change.new {
            return;
        }
        if let Some(old) = change.old {
            ckpt.batch.delete_cf(index, deadline_key(old, asset));
        }
        match change.new {
            Some(at) => {
                ckpt.batch.put_cf(timers, asset.as_bytes(), at.to_be_bytes());
                ckpt.batch.put_cf(index, deadline_key(at, asset), []);
            }
            None => ckpt.batch.delete_cf(timers, asset.as_bytes()),
        }
    }

    /// The stored timer deadline of `asset` in `shard`.
    pub fn get_timer(&self, shard: u32, asset: &str) -> Result<Option<i64>, StoreError> {
        let Some(cf) = self.db.cf_handle(&timer_cf(shard)) else {
            return Ok(None);
        };
        match self.db.get_cf(&cf, asset.as_bytes()).map_err(StoreError::Read)? {
            None => Ok(None),
            Some(v) => match <[u8; 8]>::try_from(&*v) {
                Ok(at) => Ok(Some(i64::from_be_bytes(at))),
                Err(_) => Err(StoreError::Envelope {
                    key: asset.to_string(),
                    cause: envelope::EnvelopeError::Corrupt("a timer is 8 bytes".into()),
                }),
            },
        }
    }

    /// Calls `f(deadline, asset)` for the deadlines of `shard` from `cursor`
    /// on, in deadline order, while they are at most `until` and at most
    /// `limit` of them; moves `cursor` past the last one read. A cursor that
    /// is `Default` starts at the earliest deadline.
    pub fn deadlines_from(
        &self,
        shard: u32,
        cursor: &mut DeadlineCursor,
        until: i64,
        limit: usize,
        mut f: impl FnMut(i64, &str),
    ) -> Result<usize, StoreError> {
        let Some(cf) = self.db.cf_handle(&deadline_cf(shard)) else {
            return Ok(0);
        };
        let mut opts = rocksdb::ReadOptions::default();
        // Everything after `until` is of no interest: stop the scan there.
        if let Some(after) = until.checked_add(1) {
            opts.set_iterate_upper_bound(deadline_prefix(after).to_vec());
        }
        let mode = IteratorMode::From(&cursor.0, rocksdb::Direction::Forward);
        let mut n = 0;
        for item in self.db.iterator_cf_opt(&cf, opts, mode) {
            if n == limit {
                break;
            }
            let (k, _) = item.map_err(StoreError::Read)?;
            let (Some(head), Ok(asset)) = (k.get(..8), std::str::from_utf8(k.get(8..).unwrap_or_default())) else {
                return Err(StoreError::Envelope {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    cause: envelope::EnvelopeError::Corrupt("a deadline key is 8 bytes and a UTF-8 asset id".into()),
                });
            };
            let at = (u64::from_be_bytes(head.try_into().expect("8 bytes")) ^ (1 << 63)) as i64;
            if at > until {
                break;
            }
            f(at, asset);
            n += 1;
            // The next key after this one.
            cursor.0.clear();
            cursor.0.extend_from_slice(&k);
            cursor.0.push(0);
        }
        Ok(n)
    }

    /// Calls `f(asset, deadline)` for every stored timer of `shard`.
    pub fn for_each_timer(
        &self,
        shard: u32,
        mut f: impl FnMut(&str, i64) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let Some(cf) = self.db.cf_handle(&timer_cf(shard)) else {
            return Ok(());
        };
        for item in self.db.iterator_cf(&cf, IteratorMode::Start) {
            let (k, v) = item.map_err(StoreError::Read)?;
            let (Ok(key), Ok(at)) = (std::str::from_utf8(&k), <[u8; 8]>::try_from(&*v)) else {
                return Err(StoreError::Envelope {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    cause: envelope::EnvelopeError::Corrupt("a timer is 8 bytes under a UTF-8 asset id".into()),
                });
            };
            f(key, i64::from_be_bytes(at))?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Reads every deadline of shard 0 due by `until`, `limit` a call.
    pub(crate) fn due(s: &Store, cursor: &mut DeadlineCursor, until: i64, limit: usize) -> Vec<(i64, String)> {
        let mut got = Vec::new();
        let n = s
            .deadlines_from(0, cursor, until, limit, |at, asset| got.push((at, asset.to_string())))
            .unwrap();
        assert_eq!(n, got.len());
        got
    }

    #[test]
    fn the_deadline_index_follows_timer_changes_in_deadline_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1).unwrap();
        let mut ckpt = Checkpoint::default();
        // Negative deadlines sort before positive ones (the sign is flipped).
        for (asset, at) in [("c", 30), ("a", 10), ("b", -5), ("d", 10), ("e", 99)] {
            s.put_timer(
                &mut ckpt,
                0,
                asset,
                TimerChange {
                    old: None,
                    new: Some(at),
                },
            );
        }
        s.commit(ckpt, false).unwrap();
        let mut ckpt = Checkpoint::default();
        // `e` moves earlier, `c` loses its timer, `a` keeps it.
        s.put_timer(
            &mut ckpt,
            0,
            "e",
            TimerChange {
                old: Some(99),
                new: Some(20),
            },
        );
        s.put_timer(
            &mut ckpt,
            0,
            "c",
            TimerChange {
                old: Some(30),
                new: None,
            },
        );
        s.put_timer(
            &mut ckpt,
            0,
            "a",
            TimerChange {
                old: Some(10),
                new: Some(10),
            },
        );
        s.commit(ckpt, false).unwrap();
        assert_eq!(s.get_timer(0, "e").unwrap(), Some(20));
        assert_eq!(s.get_timer(0, "c").unwrap(), None);

        let mut cursor = DeadlineCursor::default();
        assert_eq!(due(&s, &mut cursor, 10, 2), [(-5, "b".into()), (10, "a".into())]);
        // The limit stopped the first read; the next starts after it.
        assert_eq!(due(&s, &mut cursor, 10, 100), [(10, "d".into())]);
        assert!(due(&s, &mut cursor, 19, 100).is_empty(), "nothing more due by 19");
        assert_eq!(due(&s, &mut cursor, i64::MAX, 100), [(20, "e".into())]);
        assert!(
            due(&s, &mut cursor, i64::MAX, 100).is_empty(),
            "each entry is read once"
        );
        // A fresh cursor reads them all again; an unknown shard has none.
        assert_eq!(due(&s, &mut DeadlineCursor::default(), i64::MAX, 100).len(), 4);
        let mut none = 0;
        s.deadlines_from(5, &mut DeadlineCursor::default(), i64::MAX, 100, |_, _| none += 1)
            .unwrap();
        assert_eq!(none, 0);
    }
}
