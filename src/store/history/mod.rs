//! History: each shard's `history-NNNN` column family, next to its twins.
//!
//! Keys, ordered so that one series' pages are contiguous and in time
//! order (a range read is one seek):
//!
//! ```text
//! [asset len u16 BE][asset][0][series len u8][series][tier width ms u64 BE][page start]  pages
//! [asset len u16 BE][asset][1][at][rule len u8][rule][seq u32 BE][transition u8]        alert transitions
//! [asset len u16 BE][asset][2][issued][command len u8][command][seq u32 BE]             commands
//! ```
//!
//! Times are i64 with the sign bit flipped, big-endian (order-preserving).
//! Series and tiers are named by their name and width, not by an index, so
//! a changed topology never reads one series as another.
//!
//! Pages are written as merge operands ([`page`]); alert transitions and
//! commands as values (a command again when it finishes). Every value
//! carries its expiry, and the **history clock** (the greatest event time
//! of any reading checkpointed, stored in `meta` with each checkpoint)
//! decides what is past retention: reads hide it at once, and the
//! compaction filter drops it when RocksDB compacts the file it is in (no
//! scan of its own).

pub mod page;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use rocksdb::{compaction_filter::Decision, Direction, IteratorMode, Options, ReadOptions};

use super::{cf_options, Checkpoint, Store, StoreError, META_CF};
pub use page::{Bucket, Page};

/// The meta key of the history clock.
pub const CLOCK_KEY: &str = "history/clock";

/// Kinds of history keys.
pub const SERIES: u8 = 0;
pub const ALERT: u8 = 1;
pub const COMMAND: u8 = 2;

/// The history column family of a shard.
pub fn history_cf(shard: u32) -> String {
    format!("history-{shard:04}")
}

/// The greatest event time of the readings in durable history, shared with
/// the compaction filter; `i64::MIN` before the first.
#[derive(Debug, Clone)]
pub struct Clock(Arc<AtomicI64>);

impl Clock {
    pub fn new() -> Clock {
        Clock(Arc::new(AtomicI64::new(i64::MIN)))
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Acquire)
    }

    pub fn advance(&self, to: i64) {
        self.0.fetch_max(to, Ordering::AcqRel);
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Options of a history column family: the page merge operator, and the
/// compaction filter that drops what the clock has put past retention.
pub(super) fn history_options(clock: &Clock) -> Options {
    let mut o = cf_options();
    o.set_merge_operator(
        "twinstream.history.v1",
        |_key: &[u8], existing: Option<&[u8]>, ops: &rocksdb::MergeOperands| page::merge(existing, ops.iter()),
        |_key: &[u8], existing: Option<&[u8]>, ops: &rocksdb::MergeOperands| page::merge(existing, ops.iter()),
    );
    // A page a checkpoint touches every second stays a few operands deep.
    o.set_max_successive_merges(32);
    // Table files are compacted again at least daily, so what retention
    // passed leaves the disk even where no new writes push compactions.
    o.set_periodic_compaction_seconds(86_400);
    let clock = clock.clone();
    o.set_compaction_filter(
        "twinstream.history.retention",
        move |_level, _key: &[u8], value: &[u8]| match page::header_expiry(value) {
            Ok(expires) if expires <= clock.get() => Decision::Remove,
            _ => Decision::Keep,
        },
    );
    o
}

fn put_time(out: &mut Vec<u8>, t: i64) {
    out.extend_from_slice(&((t as u64) ^ (1 << 63)).to_be_bytes());
}

fn get_time(b: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(b.get(..8)?.try_into().ok()?) ^ (1 << 63)) as i64)
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    let n = name.len().min(255);
    out.push(n as u8);
    out.extend_from_slice(&name.as_bytes()[..n]);
}

/// The key prefix of everything of `asset` of `kind`.
pub fn asset_prefix(asset: &str, kind: u8) -> Vec<u8> {
    let a = &asset.as_bytes()[..asset.len().min(u16::MAX as usize)];
    let mut k = Vec::with_capacity(a.len() + 24);
    k.extend_from_slice(&(a.len() as u16).to_be_bytes());
    k.extend_from_slice(a);
    k.push(kind);
    k
}

/// The key prefix of one series' tier.
pub fn series_prefix(asset: &str, series: &str, width: i64) -> Vec<u8> {
    let mut k = asset_prefix(asset, SERIES);
    put_name(&mut k, series);
    k.extend_from_slice(&(width as u64).to_be_bytes());
    k
}

/// The key of a page.
pub fn page_key(prefix: &[u8], page_start: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    put_time(&mut k, page_start);
    k
}

/// The key of an alert transition; `transition` tells the raise, the
/// acknowledgement and the clearing of one alert (one `seq`) apart.
pub fn alert_key(asset: &str, at: i64, rule: &str, seq: u32, transition: u8) -> Vec<u8> {
    let mut k = asset_prefix(asset, ALERT);
    put_time(&mut k, at);
    put_name(&mut k, rule);
    k.extend_from_slice(&seq.to_be_bytes());
    k.push(transition);
    k
}

/// The key of a command.
pub fn command_key(asset: &str, issued: i64, command: &str, seq: u32) -> Vec<u8> {
    let mut k = asset_prefix(asset, COMMAND);
    put_time(&mut k, issued);
    put_name(&mut k, command);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `(asset, series, width, page start)` of a page key; `None` for other
/// kinds of keys.
pub fn parse_page_key(k: &[u8]) -> Option<(&str, &str, i64, i64)> {
    let n = u16::from_be_bytes(k.get(..2)?.try_into().ok()?) as usize;
    let asset = std::str::from_utf8(k.get(2..2 + n)?).ok()?;
    let rest = k.get(2 + n..)?;
    if *rest.first()? != SERIES {
        return None;
    }
    let m = *rest.get(1)? as usize;
    let series = std::str::from_utf8(rest.get(2..2 + m)?).ok()?;
    let rest = rest.get(2 + m..)?;
    if rest.len() != 16 {
        return None;
    }
    let width = u64::from_be_bytes(rest[..8].try_into().ok()?) as i64;
    let start = get_time(&rest[8..])?;
    Some((asset, series, width, start))
}

/// The key of bucket `index` of the page at `page_key` (the changelog
/// keeps buckets one by one).
pub fn bucket_key(page_key: &[u8], index: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(page_key.len() + 1);
    k.extend_from_slice(page_key);
    k.push(index);
    k
}

/// One staged history write.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryOp {
    /// A page operand, merged into the stored page.
    Merge { key: Vec<u8>, value: Vec<u8> },
    /// An alert transition or a command (replacing what the key held).
    Put { key: Vec<u8>, value: Vec<u8> },
}

impl Store {
    /// The history clock (shared with the compaction filter).
    pub fn history_clock(&self) -> &Clock {
        &self.clock
    }

    /// Stages a twin's history writes into `ckpt`.
    pub fn stage_history(&self, ckpt: &mut Checkpoint, shard: u32, ops: &[HistoryOp]) {
        if ops.is_empty() {
            return;
        }
        let cf = self.cf(&history_cf(shard));
        for op in ops {
            match op {
                HistoryOp::Merge { key, value } => {
                    ckpt.batch.merge_cf(&cf, key, value);
                    ckpt.bytes += key.len() + value.len();
                }
                HistoryOp::Put { key, value } => {
                    ckpt.batch.put_cf(&cf, key, value);
                    ckpt.bytes += key.len() + value.len();
                }
            }
        }
    }

    /// Stages the history clock `at` (the greatest reading time the
    /// checkpoint holds; never moves back).
    pub fn stage_history_clock(&self, ckpt: &mut Checkpoint, at: i64) {
        let at = at.max(self.clock.get());
        ckpt.batch.put_cf(&self.cf(META_CF), CLOCK_KEY, at.to_be_bytes());
        ckpt.clock = Some(ckpt.clock.map_or(at, |c: i64| c.max(at)));
    }

    /// Reads the stored clock at open.
    pub(super) fn load_history_clock(&self) -> Result<(), StoreError> {
        if let Some(v) = self.get_meta(CLOCK_KEY)? {
            if let Ok(b) = <[u8; 8]>::try_from(v.as_slice()) {
                self.clock.advance(i64::from_be_bytes(b));
            }
        }
        Ok(())
    }

    /// Calls `f(page start, page)` for the pages of `prefix` (a
    /// [`series_prefix`]) from the one holding `from` while their start is
    /// below `to`, in time order, while `f` answers `true`.
    pub fn history_pages(
        &self,
        shard: u32,
        prefix: &[u8],
        width: i64,
        from: i64,
        to: i64,
        mut f: impl FnMut(i64, Page) -> bool,
    ) -> Result<(), StoreError> {
        let Some(cf) = self.db.cf_handle(&history_cf(shard)) else {
            return Ok(());
        };
        let start = page_key(prefix, page::page_start(from, width));
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(page_key(prefix, to));
        let it = self
            .db
            .iterator_cf_opt(&cf, ro, IteratorMode::From(&start, Direction::Forward));
        for item in it {
            let (k, v) = item.map_err(StoreError::Read)?;
            let Some(at) = k.strip_prefix(prefix).and_then(get_time) else {
                break;
            };
            let page = Page::decode(&v).map_err(|e| StoreError::History(e.to_string()))?;
            if !f(at, page) {
                break;
            }
        }
        Ok(())
    }

    /// Calls `f(at, key, body)` for `asset`'s entries of `kind` ([`ALERT`]
    /// or [`COMMAND`]) with `at` in `from..to`, in time order, while `f`
    /// answers `true`.
    pub fn history_entries(
        &self,
        shard: u32,
        asset: &str,
        kind: u8,
        from: i64,
        to: i64,
        mut f: impl FnMut(i64, &[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let Some(cf) = self.db.cf_handle(&history_cf(shard)) else {
            return Ok(());
        };
        let prefix = asset_prefix(asset, kind);
        let mut start = prefix.clone();
        put_time(&mut start, from);
        let mut end = prefix.clone();
        put_time(&mut end, to);
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(end);
        let it = self
            .db
            .iterator_cf_opt(&cf, ro, IteratorMode::From(&start, Direction::Forward));
        for item in it {
            let (k, v) = item.map_err(StoreError::Read)?;
            let Some(at) = k.strip_prefix(prefix.as_slice()).and_then(get_time) else {
                break;
            };
            let expires = page::header_expiry(&v).map_err(|e| StoreError::History(e.to_string()))?;
            if expires <= self.clock.get() {
                continue;
            }
            let body = page::entry_body(&v).map_err(|e| StoreError::History(e.to_string()))?;
            if !f(at, &k, body) {
                break;
            }
        }
        Ok(())
    }

    /// Calls `f(asset, series, width, page start, page)` for every page of
    /// `shard`, in key order (reports and tools).
    pub fn for_each_page(
        &self,
        shard: u32,
        mut f: impl FnMut(&str, &str, i64, i64, Page) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let Some(cf) = self.db.cf_handle(&history_cf(shard)) else {
            return Ok(());
        };
        for item in self.db.iterator_cf(&cf, IteratorMode::Start) {
            let (k, v) = item.map_err(StoreError::Read)?;
            let Some((asset, series, width, start)) = parse_page_key(&k) else {
                continue;
            };
            let page = Page::decode(&v).map_err(|e| StoreError::History(e.to_string()))?;
            f(asset, series, width, start, page)?;
        }
        Ok(())
    }

    /// The stored value (merged) of history key `key` of `shard`.
    pub fn get_history(&self, shard: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(cf) = self.db.cf_handle(&history_cf(shard)) else {
            return Ok(None);
        };
        self.db.get_cf(&cf, key).map_err(StoreError::Read)
    }

    /// Stages history restored from the changelog into `shard` (emptied by
    /// [`Store::replace_shard`]): whole buckets under their bucket key
    /// ([`bucket_key`]) and alert and command entries under their own. Moves
    /// the history clock to the latest reading among them. Commits along
    /// the way when the batch grows large.
    pub(crate) fn stage_restored_history(
        &self,
        ckpt: &mut Checkpoint,
        shard: u32,
        items: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let mut latest = i64::MIN;
        for (key, value) in items {
            let op = match key.split_last().and_then(|(_, k)| parse_page_key(k).map(|_| k)) {
                Some(page_key) => {
                    if let Ok(p) = Page::decode(&value) {
                        latest = p.buckets.iter().map(|b| b.1.last_ts).fold(latest, i64::max);
                    }
                    HistoryOp::Merge {
                        key: page_key.to_vec(),
                        value,
                    }
                }
                None => HistoryOp::Put { key, value },
            };
            self.stage_history(ckpt, shard, std::slice::from_ref(&op));
            if ckpt.bytes >= 16 << 20 {
                self.commit(std::mem::take(ckpt), false)?;
            }
        }
        if latest != i64::MIN {
            self.stage_history_clock(ckpt, latest);
        }
        Ok(())
    }

    /// Compacts `shard`'s history (what the compaction filter drops is then
    /// gone from disk); for benchmarks and tools. Twice: the filter sees
    /// values, and a compaction that merges a page's operands into its value
    /// passes the value on unfiltered (RocksDB filters merge operands only
    /// with a filter that asks to), so the second pass is the one that
    /// drops a page whose last operands were still apart.
    pub fn compact_history(&self, shard: u32) {
        if let Some(cf) = self.db.cf_handle(&history_cf(shard)) {
            for _ in 0..2 {
                self.db.compact_range_cf(&cf, None::<&[u8]>, None::<&[u8]>);
            }
        }
    }

    /// The size of `shard`'s history on disk (table files), bytes.
    pub fn history_disk_bytes(&self, shard: u32) -> u64 {
        self.db
            .cf_handle(&history_cf(shard))
            .and_then(|cf| {
                self.db
                    .property_int_value_cf(&cf, "rocksdb.total-sst-files-size")
                    .ok()
                    .flatten()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::page::{expiry, page_start};
    use super::*;

    fn operand(width: i64, keep: i64, readings: &[(i64, f64)]) -> (i64, Vec<u8>) {
        let start = page_start(readings[0].0, width);
        let mut p = Page {
            expires: expiry(start, width, keep),
            ..Page::default()
        };
        for &(ts, v) in readings {
            let i = ((ts - start) / width) as u8;
            p.combine(Page {
                buckets: vec![(i, Bucket::of(ts, v))],
                ..Page::default()
            });
        }
        let mut b = Vec::new();
        p.encode(&mut b);
        (start, b)
    }

    fn commit_pages(s: &Store, prefix: &[u8], ops: Vec<(i64, Vec<u8>)>, clock: i64) {
        let mut ckpt = Checkpoint::default();
        let ops: Vec<HistoryOp> = ops
            .into_iter()
            .map(|(start, value)| HistoryOp::Merge {
                key: page_key(prefix, start),
                value,
            })
            .collect();
        s.stage_history(&mut ckpt, 0, &ops);
        s.stage_history_clock(&mut ckpt, clock);
        s.commit(ckpt, false).unwrap();
    }

    #[test]
    fn pages_merge_across_checkpoints_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = series_prefix("pump-1", "temperature", 1000);
        {
            let s = Store::open(dir.path(), 1).unwrap();
            commit_pages(
                &s,
                &prefix,
                vec![operand(1000, 1 << 40, &[(100, 1.0), (1500, 2.0)])],
                1500,
            );
            // A late reading is one more operand.
            commit_pages(&s, &prefix, vec![operand(1000, 1 << 40, &[(50, 4.0)])], 1500);
        }
        let s = Store::open(dir.path(), 1).unwrap();
        assert_eq!(s.history_clock().get(), 1500, "the clock comes back");
        let mut pages = Vec::new();
        s.history_pages(0, &prefix, 1000, 0, 10_000, |at, p| {
            pages.push((at, p));
            true
        })
        .unwrap();
        assert_eq!(pages.len(), 1);
        let b = &pages[0].1.buckets;
        assert_eq!(b.len(), 2);
        assert_eq!(
            (b[0].1.count, b[0].1.first, b[0].1.last, b[0].1.sum),
            (2, 4.0, 1.0, 5.0)
        );
        // Another series of the same asset is not read.
        let other = series_prefix("pump-1", "temperature", 60_000);
        let mut n = 0;
        s.history_pages(0, &other, 60_000, 0, 10_000, |_, _| {
            n += 1;
            true
        })
        .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn the_compaction_filter_frees_what_retention_passed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), 1).unwrap();
        let prefix = series_prefix("pump-1", "t", 1000);
        let keep = 10_000;
        // 200 pages of 64 one-second buckets.
        for p in 0..200i64 {
            let readings: Vec<(i64, f64)> = (0..64)
                .map(|i| (p * 64_000 + i * 1000, (p * 64 + i) as f64 * 0.37))
                .collect();
            // The clock stays at the first page: nothing is past retention yet.
            commit_pages(&s, &prefix, vec![operand(1000, keep, &readings)], 63_000);
        }
        s.flush().unwrap();
        s.compact_history(0);
        let before = s.history_disk_bytes(0);
        // The clock passes all but the last page.
        s.history_clock().advance(199 * 64_000 + keep);
        s.compact_history(0);
        let after = s.history_disk_bytes(0);
        assert!(
            after * 20 < before,
            "retention freed the disk: {before} -> {after} bytes"
        );
        let mut starts = Vec::new();
        s.history_pages(0, &prefix, 1000, 0, i64::MAX, |at, _| {
            starts.push(at);
            true
        })
        .unwrap();
        assert_eq!(starts, [199 * 64_000]);
    }

    #[test]
    fn keys_order_by_asset_series_tier_and_time() {
        let a = page_key(&series_prefix("a", "t", 1000), -5);
        let b = page_key(&series_prefix("a", "t", 1000), 3);
        let c = page_key(&series_prefix("a", "t", 60_000), -100);
        let d = page_key(&series_prefix("b", "t", 1000), -100);
        assert!(a < b && b < c && c < d);
        assert!(alert_key("a", 5, "r", 1, 1) < alert_key("a", 6, "a", 0, 0));
        assert_eq!(parse_page_key(&a), Some(("a", "t", 1000, -5)));
        assert_eq!(parse_page_key(&alert_key("a", 5, "r", 1, 1)), None);
    }
}
