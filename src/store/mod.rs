//! The store: RocksDB under the node's `state_dir`.
//!
//! * column family `meta`: the store format version and every source's
//!   position (`source/<name>`);
//! * one column family per shard (`twins-0000`, ...): key = asset id, value =
//!   a twin record in a versioned [`envelope`];
//! * one timer column family per shard (`timers-0000`, ...): key = asset id,
//!   value = the twin's next timer deadline (epoch ms, 8 bytes big-endian),
//!   written with the record;
//! * one deadline index per shard (`deadlines-0000`, ...): key = the same
//!   deadline (order-preserving, 8 bytes) then the asset id, empty value. The
//!   node's timer index reads it in deadline order, only as far as what is
//!   due soon: a restarted node wakes its twins on time without reading all
//!   their timers first, and a passivated twin costs memory only once its
//!   deadline is near (see [`Store::deadlines_from`]).
//!
//! A checkpoint writes the twin records and the source positions that they
//! reflect in **one** `WriteBatch`, so after a crash the state and the
//! positions always agree.
//!
//! A shard's three column families are its unit: created when the node takes
//! the shard ([`Store::ensure_shard`]), dropped when another node has it
//! ([`Store::drop_shard`]), found again on open (issue 8, shards =
//! partitions). Hence RocksDB's multi-threaded column family mode.

pub mod envelope;

use std::path::{Path, PathBuf};

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rocksdb::{
    BoundColumnFamily, ColumnFamilyDescriptor, IteratorMode, MultiThreaded, Options, WriteBatch, WriteOptions,
};

/// Multi-threaded column family mode: shards are created and dropped while
/// the store is shared (a shard's column families are its unit of handover).
type Db = rocksdb::DBWithThreadMode<MultiThreaded>;

/// Format of the store layout (column families and meta keys). 2: the
/// deadline index (format 1 stores are migrated on open: the index is built
/// from the timers).
pub const STORE_FORMAT: u16 = 2;

const META_CF: &str = "meta";
/// Messages of QoS 1 sinks not yet acknowledged by their broker, keyed by
/// sink name, NUL, and the message's sequence number (big-endian).
const OUTBOX_CF: &str = "outbox";
const WRITE_BUFFER_BYTES: usize = 16 << 20;
/// The write-ahead log size past which RocksDB flushes the families that
/// hold its oldest part (what a restart after a crash replays).
const MAX_WAL_BYTES: u64 = 64 << 20;
const FORMAT_KEY: &[u8] = b"store/format";

/// The column family of a shard.
pub fn shard_cf(shard: u32) -> String {
    format!("twins-{shard:04}")
}

/// The timer column family of a shard.
pub fn timer_cf(shard: u32) -> String {
    format!("timers-{shard:04}")
}

/// The deadline index of a shard.
pub fn deadline_cf(shard: u32) -> String {
    format!("deadlines-{shard:04}")
}

/// The column families that make up a shard.
fn shard_cfs(shard: u32) -> [String; 3] {
    [shard_cf(shard), timer_cf(shard), deadline_cf(shard)]
}

/// A deadline as an index key prefix: big-endian with the sign bit flipped,
/// so keys sort as the deadlines do (negative ones included).
fn deadline_prefix(at: i64) -> [u8; 8] {
    ((at as u64) ^ (1 << 63)).to_be_bytes()
}

/// The index key of `asset`'s deadline `at`.
fn deadline_key(at: i64, asset: &str) -> Vec<u8> {
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

/// Every variant's message already names its cause, so none declares a
/// `source()`: printing the error chain (`{:#}`) then names the cause once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create state directory {path}: {cause}")]
    CreateDir { path: PathBuf, cause: std::io::Error },
    #[error("state directory {path} is in use by another twinstream process (RocksDB lock held)")]
    Locked { path: PathBuf },
    #[error("cannot open the store in {path}: {cause}")]
    Open { path: PathBuf, cause: rocksdb::Error },
    #[error("the store in {path} has layout format {found}; this build reads format {supported}")]
    UnsupportedFormat { path: PathBuf, found: u16, supported: u16 },
    #[error("store read failed: {0}")]
    Read(rocksdb::Error),
    #[error("store write failed (state stays at the previous checkpoint): {0}")]
    Write(rocksdb::Error),
    #[error("stored value {key:?} is unreadable: {cause}")]
    Envelope {
        key: String,
        cause: envelope::EnvelopeError,
    },
}

/// One atomic checkpoint being staged: twin records of one or more shards
/// and the source positions they reflect, in a RocksDB `WriteBatch` (records
/// are copied in once, as they arrive).
#[derive(Default)]
pub struct Checkpoint {
    batch: WriteBatch,
    twins: usize,
    bytes: usize,
}

impl Checkpoint {
    pub fn twins(&self) -> usize {
        self.twins
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

pub struct Store {
    db: Db,
    path: PathBuf,
    /// Shards whose column families exist.
    shards: Mutex<BTreeSet<u32>>,
}

/// Options of every column family.
fn cf_options() -> Options {
    let mut o = Options::default();
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    o.set_write_buffer_size(WRITE_BUFFER_BYTES);
    o
}

/// The shard a twin, timer or deadline column family belongs to.
fn shard_of(cf: &str) -> Option<u32> {
    cf.strip_prefix("twins-")
        .or_else(|| cf.strip_prefix("timers-"))
        .or_else(|| cf.strip_prefix("deadlines-"))
        .and_then(|n| n.parse().ok())
}

impl Store {
    /// Opens (creating if needed) the store in `dir` with shards `0..shards`
    /// (and any other shard it holds).
    pub fn open(dir: &Path, shards: u32) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            cause: source,
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // Twin records are small and rewritten often: modest memtables keep
        // the store's memory a small fixed base.
        opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_keep_log_file_num(4);
        // The log a crash leaves is replayed at the next open: bounded, so a
        // restart after a crash stays quick too (families holding the oldest
        // log are flushed when it grows past this).
        opts.set_max_total_wal_size(MAX_WAL_BYTES);
        let mut cfs: Vec<String> = vec![META_CF.to_string(), OUTBOX_CF.to_string()];
        let existing: Vec<String> = Db::list_cf(&opts, dir).unwrap_or_default();
        for shard in 0..shards {
            cfs.extend(shard_cfs(shard));
        }
        for cf in &existing {
            if !cfs.contains(cf) && cf != "default" {
                cfs.push(cf.clone());
            }
        }
        let present: BTreeSet<u32> = cfs.iter().filter_map(|c| shard_of(c)).collect();
        // A shard with some of its families but not all (a crash while
        // creating it, or a format 1 store without the deadline index) gets
        // the missing ones.
        for shard in &present {
            for cf in shard_cfs(*shard) {
                if !cfs.contains(&cf) {
                    cfs.push(cf);
                }
            }
        }
        let fresh = existing.is_empty();
        let descriptors = cfs.iter().map(|name| ColumnFamilyDescriptor::new(name, cf_options()));
        let db = Db::open_cf_descriptors(&opts, dir, descriptors).map_err(|source| {
            if source.to_string().contains("lock") {
                StoreError::Locked {
                    path: dir.to_path_buf(),
                }
            } else {
                StoreError::Open {
                    path: dir.to_path_buf(),
                    cause: source,
                }
            }
        })?;
        let store = Store {
            db,
            path: dir.to_path_buf(),
            shards: Mutex::new(present),
        };
        store.check_format(fresh)?;
        Ok(store)
    }

    /// Writes every memtable to table files and waits, so the next open
    /// has no log to replay (what the log holds is durable either way).
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut names = vec![META_CF.to_string(), OUTBOX_CF.to_string()];
        names.extend(self.shards().into_iter().flat_map(shard_cfs));
        let cfs: Vec<_> = names.iter().filter_map(|n| self.db.cf_handle(n)).collect();
        let refs: Vec<&Arc<BoundColumnFamily<'_>>> = cfs.iter().collect();
        self.db
            .flush_cfs_opt(&refs, &rocksdb::FlushOptions::default())
            .map_err(StoreError::Write)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shards the store holds, in order.
    pub fn shards(&self) -> Vec<u32> {
        self.shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// Creates `shard`'s column families if the store does not hold them
    /// yet; returns whether it created them.
    pub fn ensure_shard(&self, shard: u32) -> Result<bool, StoreError> {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        if shards.contains(&shard) {
            return Ok(false);
        }
        for cf in shard_cfs(shard) {
            if self.db.cf_handle(&cf).is_none() {
                self.db.create_cf(&cf, &cf_options()).map_err(StoreError::Write)?;
            }
        }
        shards.insert(shard);
        Ok(true)
    }

    /// Drops `shard` as a unit: its twins, timers and deadlines (a shard another node
    /// took over). Returns whether the store held it.
    pub fn drop_shard(&self, shard: u32) -> Result<bool, StoreError> {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        if !shards.remove(&shard) {
            return Ok(false);
        }
        for cf in shard_cfs(shard) {
            if self.db.cf_handle(&cf).is_some() {
                self.db.drop_cf(&cf).map_err(StoreError::Write)?;
            }
        }
        Ok(true)
    }

    /// A column family's handle. Every family a caller names exists: the
    /// fixed ones from the open, a shard's from [`Self::ensure_shard`].
    fn cf(&self, name: &str) -> Arc<BoundColumnFamily<'_>> {
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family `{name}` does not exist"))
    }

    /// Checks the layout format, migrating an older one this build knows;
    /// `fresh`: the store was just created.
    fn check_format(&self, fresh: bool) -> Result<(), StoreError> {
        let meta = self.cf(META_CF);
        let found = match self.db.get_cf(&meta, FORMAT_KEY).map_err(StoreError::Read)? {
            // Created by this build, or by a build before formats were written.
            None if fresh => STORE_FORMAT,
            None => 1,
            Some(v) if v.len() == 2 => u16::from_le_bytes([v[0], v[1]]),
            Some(_) => u16::MAX,
        };
        match found {
            STORE_FORMAT => {}
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

    /// The stored record (an envelope) of `asset` in `shard` (none when the
    /// store does not hold the shard).
    pub fn get_twin(&self, shard: u32, asset: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(cf) = self.db.cf_handle(&shard_cf(shard)) else {
            return Ok(None);
        };
        self.db.get_cf(&cf, asset.as_bytes()).map_err(StoreError::Read)
    }

    /// Replaces `shard` with restored twins `(asset, record, timer)` and its
    /// meta value (`meta_key`), written last: a crash part-way leaves a
    /// shard without meta, which the next restore replaces again.
    pub fn replace_shard<'a>(
        &self,
        shard: u32,
        twins: impl Iterator<Item = (&'a str, &'a [u8], Option<i64>)>,
        meta_key: &str,
        meta: &[u8],
    ) -> Result<(), StoreError> {
        self.db
            .delete_cf(&self.cf(META_CF), meta_key.as_bytes())
            .map_err(StoreError::Write)?;
        self.drop_shard(shard)?;
        self.ensure_shard(shard)?;
        let mut ckpt = Checkpoint::default();
        for (asset, record, timer) in twins {
            self.put_twin(&mut ckpt, shard, asset, record);
            if timer.is_some() {
                self.put_timer(&mut ckpt, shard, asset, TimerChange { old: None, new: timer });
            }
            if ckpt.bytes >= 16 << 20 {
                self.commit(std::mem::take(&mut ckpt), false)?;
            }
        }
        self.put_position(&mut ckpt, meta_key, meta);
        self.commit(ckpt, true)
    }

    /// Writes raw meta values; used for source positions (`source/<name>`).
    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get_cf(&self.cf(META_CF), key.as_bytes())
            .map_err(StoreError::Read)
    }

    /// Writes one meta value on its own (not part of a checkpoint).
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.db
            .put_cf(&self.cf(META_CF), key.as_bytes(), value)
            .map_err(StoreError::Write)
    }

    /// Stages a twin record into `ckpt`.
    pub fn put_twin(&self, ckpt: &mut Checkpoint, shard: u32, asset: &str, record: &[u8]) {
        ckpt.batch.put_cf(&self.cf(&shard_cf(shard)), asset.as_bytes(), record);
        ckpt.twins += 1;
        ckpt.bytes += asset.len() + record.len();
    }

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

    /// Stages a meta value (a source position) into `ckpt`.
    pub fn put_position(&self, ckpt: &mut Checkpoint, key: &str, value: &[u8]) {
        ckpt.batch.put_cf(&self.cf(META_CF), key.as_bytes(), value);
        ckpt.bytes += key.len() + value.len();
    }

    /// Writes the checkpoint atomically; with `sync` the WAL is fsynced
    /// before this returns.
    pub fn commit(&self, ckpt: Checkpoint, sync: bool) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(ckpt.batch, &wo).map_err(StoreError::Write)
    }

    /// Calls `f(key, value)` for every meta value whose key starts with `prefix`.
    pub fn for_each_meta(
        &self,
        prefix: &str,
        mut f: impl FnMut(&str, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mode = IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(&self.cf(META_CF), mode) {
            let (k, v) = item.map_err(StoreError::Read)?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            f(&String::from_utf8_lossy(&k), &v)?;
        }
        Ok(())
    }

    /// Calls `f(asset, record)` for every twin of `shard`, in key order.
    pub fn for_each_twin(
        &self,
        shard: u32,
        mut f: impl FnMut(&str, &[u8]) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let Some(cf) = self.db.cf_handle(&shard_cf(shard)) else {
            return Ok(());
        };
        for item in self.db.iterator_cf(&cf, IteratorMode::Start) {
            let (k, v) = item.map_err(StoreError::Read)?;
            let key = String::from_utf8_lossy(&k);
            f(&key, &v)?;
        }
        Ok(())
    }

    /// Stages an outbox message (`Some`) or its removal (`None`).
    pub fn stage_outbox(&self, ckpt: &mut Checkpoint, sink: &str, seq: u64, value: Option<&[u8]>) {
        let key = outbox_key(sink, seq);
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
                outbox_key(sink, seqs.start),
                outbox_key(sink, seqs.end),
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
        mut f: impl FnMut(u64, &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let start = outbox_key(sink, from);
        let prefix = &start[..start.len() - 8];
        let mode = IteratorMode::From(&start, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(&self.cf(OUTBOX_CF), mode) {
            let (k, v) = item.map_err(StoreError::Read)?;
            let Some(seq) = k.strip_prefix(prefix).and_then(|s| <[u8; 8]>::try_from(s).ok()) else {
                break;
            };
            if !f(u64::from_be_bytes(seq), &v)? {
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

    /// Puts a raw twin value; for tools and tests that prepare a store.
    pub fn put_twin_raw(&self, shard: u32, asset: &str, value: &[u8]) -> Result<(), StoreError> {
        self.db
            .put_cf(&self.cf(&shard_cf(shard)), asset.as_bytes(), value)
            .map_err(StoreError::Write)
    }

    /// Puts a raw meta value; for tools and tests that prepare a store.
    pub fn put_meta_raw(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.db.put_cf(&self.cf(META_CF), key, value).map_err(StoreError::Write)
    }
}

fn outbox_key(sink: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(sink.len() + 9);
    key.extend_from_slice(sink.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The meta key under which the store records its layout format.
pub fn format_key() -> &'static [u8] {
    FORMAT_KEY
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

    #[test]
    fn a_shard_is_created_dropped_and_reopened_as_a_unit() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 1).unwrap();
            assert_eq!(s.shards(), [0]);
            assert!(s.ensure_shard(7).unwrap());
            assert!(!s.ensure_shard(7).unwrap(), "twice is once");
            let mut ckpt = Checkpoint::default();
            s.put_twin(&mut ckpt, 0, "a", &[1]);
            s.put_twin(&mut ckpt, 7, "b", &[2]);
            s.put_timer(
                &mut ckpt,
                7,
                "b",
                TimerChange {
                    old: None,
                    new: Some(42),
                },
            );
            s.commit(ckpt, true).unwrap();
        }
        let s = Store::open(dir.path(), 1).unwrap();
        assert_eq!(s.shards(), [0, 7], "a created shard comes back on open");
        assert_eq!(s.get_twin(7, "b").unwrap(), Some(vec![2]));
        assert!(s.drop_shard(7).unwrap());
        assert!(!s.drop_shard(7).unwrap());
        assert_eq!(s.get_twin(0, "a").unwrap(), Some(vec![1]), "other shards stay");
        drop(s);
        let s = Store::open(dir.path(), 1).unwrap();
        assert_eq!(s.shards(), [0]);
        // Created again, it starts empty: nothing of the dropped one is left.
        s.ensure_shard(7).unwrap();
        assert_eq!(s.get_twin(7, "b").unwrap(), None);
        let mut timers = 0;
        s.for_each_timer(7, |_, _| {
            timers += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(timers, 0);
    }

    /// Reads every deadline of shard 0 due by `until`, `limit` a call.
    fn due(s: &Store, cursor: &mut DeadlineCursor, until: i64, limit: usize) -> Vec<(i64, String)> {
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
    fn unknown_store_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 1).unwrap();
            s.put_meta_raw(FORMAT_KEY, &99u16.to_le_bytes()).unwrap();
        }
        let err = Store::open(dir.path(), 1).err().expect("must refuse");
        assert!(matches!(err, StoreError::UnsupportedFormat { found: 99, .. }), "{err}");
    }

    #[test]
    fn a_second_process_cannot_open_the_same_store() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path(), 1).unwrap();
        let err = Store::open(dir.path(), 1).err().expect("must refuse");
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    }
}
