//! The store: RocksDB under the node's `state_dir`.
//!
//! * column family `meta`: the store format version and every source's
//!   position (`source/<name>`);
//! * column family `outbox`: QoS 1 sink messages not yet acknowledged by
//!   their broker, staged with checkpoints;
//! * column family `inbox`: MQTT QoS 1 messages acknowledged to their
//!   broker and not yet in a durable checkpoint (written by the source);
//! * one column family per shard (`twins-0000`, ...): key = asset id, value =
//!   a twin record in a versioned [`envelope`], whole or in [`parts`] (a
//!   checkpoint may merge in only the parts that changed, which the
//!   family's merge operator folds);
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
//! * one history column family per shard (`history-0000`, ...): each
//!   twin's sensor history in pages, its alert transitions and commands,
//!   staged with its record (see [`history`]).
//!
//! A shard's four column families are its unit: created when the node takes
//! the shard ([`Store::ensure_shard`]), dropped when another node has it
//! ([`Store::drop_shard`]), found again on open (issue 8, shards =
//! partitions). Hence RocksDB's multi-threaded column family mode.
//!
//! Where each part lives: `checkpoint.rs` stages a checkpoint's batch and
//! commits it; `timers.rs` holds the timers and the deadline index;
//! `outbox.rs` the outbox column family; `inbox.rs` the MQTT sources'
//! write-ahead inbox; `parts.rs` twin values in parts and their folding;
//! `migrate.rs` the layout format and its migration; this file opens and
//! flushes the store, names the column families, creates and drops shards,
//! and reads and writes twin records and meta values.

mod checkpoint;
pub mod envelope;
pub mod history;
mod inbox;
mod migrate;
mod outbox;
pub mod parts;
mod timers;

use std::path::{Path, PathBuf};

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rocksdb::{BoundColumnFamily, ColumnFamilyDescriptor, IteratorMode, MultiThreaded, Options};

pub use checkpoint::Checkpoint;
use inbox::INBOX_CF;
pub use inbox::{check_inbox_value, InboxMessage};
pub use migrate::{format_key, STORE_FORMAT};
use outbox::OUTBOX_CF;
pub use timers::{DeadlineCursor, TimerChange};

/// Multi-threaded column family mode: shards are created and dropped while
/// the store is shared (a shard's column families are its unit of handover).
type Db = rocksdb::DBWithThreadMode<MultiThreaded>;

const META_CF: &str = "meta";
const WRITE_BUFFER_BYTES: usize = 16 << 20;
/// The write-ahead log size past which RocksDB flushes the families that
/// hold its oldest part (what a restart after a crash replays).
const MAX_WAL_BYTES: u64 = 64 << 20;

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
fn shard_cfs(shard: u32) -> [String; 4] {
    [
        shard_cf(shard),
        timer_cf(shard),
        deadline_cf(shard),
        history::history_cf(shard),
    ]
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
    /// Files of the store are missing or damaged: it cannot be opened as a
    /// whole, and a node never runs on part of its state.
    #[error("the store in {path} is damaged: {what} (RocksDB: {cause}). The node does not start on part of its state: restore the directory from a backup, or move it aside and start with an empty one (a cluster node restores its shards from the changelog; a standalone node reads its sources again from where they keep data, and what a broker no longer holds is lost)")]
    Damaged { path: PathBuf, what: String, cause: String },
    /// A column family the store had is gone (not created empty again:
    /// that would silently lose what it held).
    #[error("the store in {path} is damaged: column family {missing} is missing ({what}). The node does not start without it: restore the directory from a backup, or move it aside and start with an empty one (a cluster node restores its shards from the changelog; a standalone node reads its sources again from where they keep data, and what a broker no longer holds is lost)")]
    MissingFamily {
        path: PathBuf,
        missing: String,
        what: String,
    },
    #[error("{path} is not a state directory (no RocksDB `CURRENT` file in it)")]
    NotAStore { path: PathBuf },
    #[error("the store in {path} has layout format {found}; this build reads format {supported}")]
    UnsupportedFormat { path: PathBuf, found: u16, supported: u16 },
    #[error("store read failed: {0}")]
    Read(rocksdb::Error),
    #[error("store write failed (state stays at the previous checkpoint): {0}")]
    Write(rocksdb::Error),
    #[error("stored history is unreadable: {0}")]
    History(String),
    #[error("stored value {key:?} is unreadable: {cause}")]
    Envelope {
        key: String,
        cause: envelope::EnvelopeError,
    },
}

pub struct Store {
    db: Db,
    path: PathBuf,
    /// Shards whose column families exist.
    shards: Mutex<BTreeSet<u32>>,
    /// What history retention is measured against ([`history::Clock`]).
    clock: history::Clock,
    /// Shards found with their twins or timers family missing (a cluster
    /// node's store opened with no required shards): not in `shards`, left
    /// for [`Self::discard_shard`] so the shard is restored from elsewhere.
    incomplete: Vec<(u32, Vec<String>)>,
}

/// Options of every column family but history's.
fn cf_options() -> Options {
    use rocksdb::DBCompressionType as C;
    let mut o = Options::default();
    // Memtable flushes (L0) and L1 are written uncompressed: a checkpoint's
    // records are compressed once, when compaction moves them to the levels
    // that keep them, not also at every flush (checkpoint CPU per dirty twin
    // -6%; docs/decisions.md, "RocksDB settings by measurement").
    o.set_compression_per_level(&[C::None, C::None, C::Lz4, C::Lz4, C::Lz4, C::Lz4, C::Lz4]);
    o.set_write_buffer_size(WRITE_BUFFER_BYTES);
    o
}

/// The options of column family `name` (history families have their own;
/// twins families fold incremental records with [`parts`]' merge operator).
fn options_of(name: &str, clock: &history::Clock) -> Options {
    if name.starts_with("history-") {
        history::history_options(clock)
    } else if name.starts_with("twins-") {
        let mut o = cf_options();
        o.set_merge_operator(parts::MERGE_OPERATOR, parts::full_merge, parts::partial_merge);
        o
    } else {
        cf_options()
    }
}

/// The shard a twin, timer, deadline or history column family belongs to.
fn shard_of(cf: &str) -> Option<u32> {
    cf.strip_prefix("twins-")
        .or_else(|| cf.strip_prefix("timers-"))
        .or_else(|| cf.strip_prefix("deadlines-"))
        .or_else(|| cf.strip_prefix("history-"))
        .and_then(|n| n.parse().ok())
}

/// What a failed open means: held by another process, damaged (files
/// missing or corrupt), or another failure.
fn open_error(dir: &Path, e: rocksdb::Error) -> StoreError {
    let text = e.to_string();
    let path = dir.to_path_buf();
    // "IO error: While lock file: DIR/LOCK: Resource temporarily unavailable"
    // (not any message with "lock" in it: "block checksum mismatch").
    if text.contains("lock file") || text.contains("/LOCK") {
        return StoreError::Locked { path };
    }
    if e.kind() == rocksdb::ErrorKind::Corruption || text.contains("No such file") {
        // RocksDB names the file: "... While open a file for random read:
        // DIR/000009.sst: No such file or directory".
        let file = text
            .split([' ', ':'])
            .find(|w| w.ends_with(".sst") || w.ends_with(".log") || w.contains("MANIFEST-"))
            .map(|f| {
                Path::new(f)
                    .file_name()
                    .map_or(f.to_string(), |n| n.to_string_lossy().into_owned())
            });
        let what = match file {
            Some(f) if text.contains("No such file") => format!("file {f} is missing"),
            Some(f) => format!("file {f} is corrupt"),
            None => "its files are inconsistent".to_string(),
        };
        return StoreError::Damaged {
            path,
            what,
            cause: text,
        };
    }
    StoreError::Open { path, cause: e }
}

/// What RocksDB's log of this open says it dropped while recovering the
/// write-ahead log (`LOG` in the store's directory, written by the open).
fn recovery_notes(dir: &Path) -> Vec<String> {
    let Ok(log) = std::fs::read_to_string(dir.join("LOG")) else {
        return Vec::new();
    };
    log.lines()
        .filter(|l| l.contains("[WARN]") && l.contains("db_impl_open") && l.contains("dropping"))
        .filter_map(|l| l.split("] ").nth(2).or_else(|| l.rsplit("] ").next()))
        .map(str::to_string)
        .collect()
}

impl Store {
    /// Opens (creating if needed) the store in `dir` with shards `0..shards`
    /// (and any other shard it holds). A store that lost a column family
    /// of a shard in `0..shards`, or its `meta`, is refused
    /// ([`StoreError::MissingFamily`]); a shard beyond them that lost its
    /// twins or timers is left out and listed by
    /// [`Self::incomplete_shards`]. A shard whose creation a crash cut short
    /// (its twins family there and empty, the later ones not) is completed.
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
        let mut cfs: Vec<String> = vec![META_CF.to_string(), OUTBOX_CF.to_string(), INBOX_CF.to_string()];
        let existing: Vec<String> = Db::list_cf(&opts, dir).unwrap_or_default();
        for shard in 0..shards {
            cfs.extend(shard_cfs(shard));
        }
        for cf in &existing {
            if !cfs.contains(cf) && cf != "default" {
                cfs.push(cf.clone());
            }
        }
        let fresh = existing.is_empty();
        if !fresh && !existing.iter().any(|c| c == META_CF) {
            return Err(StoreError::MissingFamily {
                path: dir.to_path_buf(),
                missing: format!("`{META_CF}`"),
                what: "the store's format, every source's position and the schemas twin records refer to".into(),
            });
        }
        let mut present: BTreeSet<u32> = cfs.iter().filter_map(|c| shard_of(c)).collect();
        // A shard the store has some families of, but not its twins or
        // timers, lost state: refused (a required shard) or left for the
        // caller to restore (a cluster node's). One without its deadline
        // index or history (a format 1 store, or one from before history)
        // gets them, empty; a shard it has none of is new.
        let had: BTreeSet<u32> = existing.iter().filter_map(|c| shard_of(c)).collect();
        let mut partial = Vec::new();
        for shard in present.clone() {
            let lost: Vec<String> = [shard_cf(shard), timer_cf(shard)]
                .into_iter()
                .filter(|cf| !existing.contains(cf))
                .collect();
            if had.contains(&shard) && !lost.is_empty() {
                cfs.retain(|c| !lost.contains(c));
                present.remove(&shard);
                partial.push((shard, lost));
                continue;
            }
            for cf in shard_cfs(shard) {
                if !cfs.contains(&cf) {
                    cfs.push(cf);
                }
            }
        }
        let clock = history::Clock::new();
        let descriptors = cfs
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(name, options_of(name, &clock)));
        let db = Db::open_cf_descriptors(&opts, dir, descriptors).map_err(|e| open_error(dir, e))?;
        let mut incomplete = Vec::new();
        for (shard, lost) in partial {
            // Families are created twins first (`shard_cfs`): a shard whose
            // twins family is there (it was opened: not lost), empty, and
            // whose later families are not, is a creation a crash cut short
            // - nothing was ever written to it - and is completed. Anything
            // else lost state.
            let twins_empty = db
                .cf_handle(&shard_cf(shard))
                .is_some_and(|cf| db.iterator_cf(&cf, IteratorMode::Start).next().is_none());
            if twins_empty {
                for cf in shard_cfs(shard) {
                    if db.cf_handle(&cf).is_none() {
                        db.create_cf(&cf, &options_of(&cf, &clock)).map_err(StoreError::Write)?;
                    }
                }
                tracing::info!(shard, families = ?lost, "completed a shard whose creation a crash cut short (it held nothing)");
                present.insert(shard);
                continue;
            }
            if shard < shards {
                return Err(StoreError::MissingFamily {
                    path: dir.to_path_buf(),
                    missing: lost.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(" and "),
                    what: format!("the state of shard {shard}'s twins"),
                });
            }
            incomplete.push((shard, lost));
        }
        let store = Store {
            db,
            path: dir.to_path_buf(),
            shards: Mutex::new(present),
            clock,
            incomplete,
        };
        store.check_format(fresh)?;
        store.load_history_clock()?;
        for note in recovery_notes(dir) {
            tracing::warn!(
                %note,
                "the store's write-ahead log ended in an incomplete or damaged record (a crash during a write, or a damaged disk): the store recovered to its last complete checkpoint and every source resumes from there"
            );
        }
        Ok(store)
    }

    /// Opens the store in `dir` read-only, every column family it has, for
    /// offline checks (`twinstream check-state`): writes nothing, and works
    /// beside a running node.
    pub fn open_read_only(dir: &Path) -> Result<Store, StoreError> {
        if !dir.join("CURRENT").is_file() {
            return Err(StoreError::NotAStore {
                path: dir.to_path_buf(),
            });
        }
        let opts = Options::default();
        let names = Db::list_cf(&opts, dir).map_err(|e| open_error(dir, e))?;
        let clock = history::Clock::new();
        let descriptors = names
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(name, options_of(name, &clock)));
        let db = Db::open_cf_descriptors_read_only(&opts, dir, descriptors, false).map_err(|e| open_error(dir, e))?;
        let store = Store {
            db,
            path: dir.to_path_buf(),
            shards: Mutex::new(names.iter().filter_map(|c| shard_of(c)).collect()),
            clock,
            incomplete: Vec::new(),
        };
        if names.iter().any(|c| c == META_CF) {
            store.load_history_clock()?;
        }
        Ok(store)
    }

    /// The names of the store's column families (as RocksDB lists them).
    pub fn column_families(&self) -> Result<Vec<String>, StoreError> {
        Db::list_cf(&Options::default(), &self.path).map_err(StoreError::Read)
    }

    /// Calls `f(key, value)` for every value of column family `cf`, in key
    /// order, reading every block through its checksum (and not into the
    /// block cache). Stops at the first error (a damaged block).
    pub fn scan(&self, cf: &str, mut f: impl FnMut(&[u8], &[u8])) -> Result<(), StoreError> {
        let Some(handle) = self.db.cf_handle(cf) else {
            return Ok(());
        };
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_verify_checksums(true);
        ro.fill_cache(false);
        for item in self.db.iterator_cf_opt(&handle, ro, IteratorMode::Start) {
            let (k, v) = item.map_err(StoreError::Read)?;
            f(&k, &v);
        }
        Ok(())
    }

    /// Shards whose twins or timers family was missing at the open, with
    /// the missing families (a cluster node's store; see [`Self::open`]).
    pub fn incomplete_shards(&self) -> &[(u32, Vec<String>)] {
        &self.incomplete
    }

    /// Drops whatever families of `shard` exist, held or not: a shard that
    /// lost part of its state, to be restored whole from elsewhere.
    pub fn discard_shard(&self, shard: u32) -> Result<(), StoreError> {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        shards.remove(&shard);
        self.drop_families(shard)
    }

    /// Drops whichever of `shard`'s column families exist (the caller
    /// holds the `shards` lock).
    fn drop_families(&self, shard: u32) -> Result<(), StoreError> {
        for cf in shard_cfs(shard) {
            if self.db.cf_handle(&cf).is_some() {
                self.db.drop_cf(&cf).map_err(StoreError::Write)?;
            }
        }
        Ok(())
    }

    /// Writes every memtable to table files and waits, so the next open
    /// has no log to replay (what the log holds is durable either way).
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut names = vec![META_CF.to_string(), OUTBOX_CF.to_string(), INBOX_CF.to_string()];
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
                self.db
                    .create_cf(&cf, &options_of(&cf, &self.clock))
                    .map_err(StoreError::Write)?;
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
        self.drop_families(shard)?;
        Ok(true)
    }

    /// A column family's handle. Every family a caller names exists: the
    /// fixed ones from the open, a shard's from [`Self::ensure_shard`].
    fn cf(&self, name: &str) -> Arc<BoundColumnFamily<'_>> {
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family `{name}` does not exist"))
    }

    /// The stored record (an envelope) of `asset` in `shard` (none when the
    /// store does not hold the shard).
    pub fn get_twin(&self, shard: u32, asset: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(cf) = self.db.cf_handle(&shard_cf(shard)) else {
            return Ok(None);
        };
        self.db.get_cf(&cf, asset.as_bytes()).map_err(StoreError::Read)
    }

    /// Replaces `shard` with restored twins `(asset, record, timer)`, their
    /// history (`(key, value)` as the changelog keeps it) and its meta value
    /// (`meta_key`), written last: a crash part-way leaves a shard without
    /// meta, which the next restore replaces again.
    pub fn replace_shard<'a>(
        &self,
        shard: u32,
        twins: impl Iterator<Item = (&'a str, &'a [u8], Option<i64>)>,
        history: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
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
        self.stage_restored_history(&mut ckpt, shard, history)?;
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

    /// Deletes one meta value on its own (not part of a checkpoint).
    pub fn delete_meta(&self, key: &str) -> Result<(), StoreError> {
        self.db
            .delete_cf(&self.cf(META_CF), key.as_bytes())
            .map_err(StoreError::Write)
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A checkpoint of one twin record `v` for `asset` in shard 0.
    fn commit_twin(s: &Store, asset: &str, v: &[u8]) {
        let mut ckpt = Checkpoint::default();
        s.put_twin(&mut ckpt, 0, asset, v);
        s.commit(ckpt, true).unwrap();
    }

    #[test]
    fn a_lost_column_family_is_refused_or_left_for_a_restore_never_created_empty() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 1).unwrap();
            commit_twin(&s, "a", &[1]);
            s.db.drop_cf(&shard_cf(0)).unwrap();
        }
        let err = Store::open(dir.path(), 1).err().expect("must refuse");
        assert!(matches!(err, StoreError::MissingFamily { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("column family `twins-0000` is missing (the state of shard 0's twins)"),
            "{msg}"
        );
        // A cluster node's store (no shard required): the shard is left out
        // for a restore from the changelog, and its remains can be dropped.
        let s = Store::open(dir.path(), 0).unwrap();
        assert_eq!(s.shards(), Vec::<u32>::new());
        assert_eq!(s.incomplete_shards(), [(0, vec![shard_cf(0)])]);
        s.discard_shard(0).unwrap();
        drop(s);
        let s = Store::open(dir.path(), 0).unwrap();
        assert!(s.incomplete_shards().is_empty() && s.shards().is_empty());
        assert!(s.ensure_shard(0).unwrap(), "created again, whole");
    }

    #[test]
    fn a_shard_whose_creation_a_crash_cut_short_is_completed_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            // Killed after its twins family was created, before the rest.
            let s = Store::open(dir.path(), 1).unwrap();
            for cf in &shard_cfs(0)[1..] {
                s.db.drop_cf(cf).unwrap();
            }
        }
        let s = Store::open(dir.path(), 1).expect("nothing was written: completed");
        assert_eq!(s.shards(), vec![0]);
        assert!(s.incomplete_shards().is_empty());
        commit_twin(&s, "a", &[1]);
        assert_eq!(s.get_twin(0, "a").unwrap(), Some(vec![1]));
        drop(s);
        // A twins family with records whose timers family is gone lost
        // state: refused, as before.
        {
            let s = Store::open(dir.path(), 1).unwrap();
            s.db.drop_cf(&timer_cf(0)).unwrap();
        }
        let err = Store::open(dir.path(), 1).err().expect("must refuse").to_string();
        assert!(err.contains("column family `timers-0000` is missing"), "{err}");
    }

    #[test]
    fn a_store_without_its_meta_family_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 1).unwrap();
            commit_twin(&s, "a", &[1]);
            s.db.drop_cf(META_CF).unwrap();
        }
        let err = Store::open(dir.path(), 1).err().expect("must refuse").to_string();
        assert!(err.contains("column family `meta` is missing"), "{err}");
    }

    #[test]
    fn a_deleted_table_file_is_named_and_the_store_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 1).unwrap();
            commit_twin(&s, "a", &[1]);
            s.flush().unwrap();
        }
        let sst = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "sst"))
            .expect("a flush writes a table file");
        std::fs::remove_file(&sst).unwrap();
        let name = sst.file_name().unwrap().to_string_lossy().into_owned();
        for err in [
            Store::open(dir.path(), 1).err(),
            Store::open_read_only(dir.path()).err(),
        ] {
            let err = err.expect("must refuse");
            assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&format!("is damaged: file {name} is missing")), "{msg}");
            assert!(msg.contains("does not start on part of its state"), "{msg}");
        }
    }

    #[test]
    fn a_truncated_log_recovers_to_the_last_complete_checkpoint_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path(), 1).unwrap();
            commit_twin(&s, "a", &[1; 100]);
            commit_twin(&s, "b", &[2; 100]);
        }
        let log = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .expect("the write-ahead log");
        let len = std::fs::metadata(&log).unwrap().len();
        // Cut into the last record (the second checkpoint).
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(len - 20)
            .unwrap();
        let s = Store::open(dir.path(), 1).unwrap();
        assert_eq!(
            s.get_twin(0, "a").unwrap(),
            Some(vec![1; 100]),
            "the complete checkpoint"
        );
        assert_eq!(s.get_twin(0, "b").unwrap(), None, "the cut one is gone, whole");
        let notes = recovery_notes(dir.path());
        assert!(
            notes.len() == 1 && notes[0].contains("dropping") && notes[0].contains("Corruption"),
            "{notes:?}"
        );
    }

    #[test]
    fn a_second_process_cannot_open_the_same_store() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path(), 1).unwrap();
        let err = Store::open(dir.path(), 1).err().expect("must refuse");
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    }
}
