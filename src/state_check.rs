//! `twinstream check-state DIR`: verifies a state directory offline.
//!
//! Opens the store read-only (beside a running node too) and reads every
//! value of every column family through RocksDB's block checksums, then
//! decodes each by what its family holds: the meta values (format, source
//! positions, schemas, shard metas, the history clock, replay digests),
//! each shard's twin records (and that the schema each names is stored),
//! timers, deadline index and history, the sinks' outbox and the MQTT
//! sources' inbox. Whatever does
//! not read is a [`Finding`] naming where it is; nothing is written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::cluster::ShardMeta;
use crate::source::SourcePosition;
use crate::store::history::{self, page};
use crate::store::{Store, StoreError, STORE_FORMAT};
use crate::twin::record::{self, Schema};

/// Something in the store that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where: a column family, and the key when there is one.
    pub place: String,
    pub problem: String,
}

/// What one column family (or part of `meta`) held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub values: u64,
    pub bytes: u64,
}

/// The verdict on a state directory.
#[derive(Debug, Default)]
pub struct Checked {
    pub format: Option<u16>,
    /// Values per kind (`meta: source positions`, `shard 0: twins`, ...).
    pub read: BTreeMap<String, Tally>,
    pub findings: Vec<Finding>,
}

impl Checked {
    fn count(&mut self, what: &str, value: &[u8]) {
        let t = self.read.entry(what.to_string()).or_default();
        t.values += 1;
        t.bytes += value.len() as u64;
    }

    fn find(&mut self, place: impl Into<String>, problem: impl Into<String>) {
        self.findings.push(Finding {
            place: place.into(),
            problem: problem.into(),
        });
    }
}

/// Checks the store in `dir`. `Err`: it cannot be opened at all (the error
/// says why: a missing or corrupt file, a lock held by another process).
pub fn check(dir: &Path) -> Result<Checked, StoreError> {
    let store = Store::open_read_only(dir)?;
    let families = store.column_families()?;
    let mut out = Checked::default();
    let mut schemas = BTreeSet::new();
    if families.iter().any(|f| f == "meta") {
        check_meta(&store, &mut out, &mut schemas);
    } else {
        out.find(
            "meta",
            "column family `meta` is missing: the store's format, source positions and schemas are gone",
        );
    }
    // Every shard the store has a family of (the read-only open lists them):
    // its twins and timers are the state it cannot lose (the deadline index
    // and history are rebuilt or start empty).
    for shard in store.shards() {
        for (needed, what) in [
            (crate::store::shard_cf(shard), "twins"),
            (crate::store::timer_cf(shard), "timers"),
        ] {
            if !families.contains(&needed) {
                out.find(needed, format!("column family missing: shard {shard} lost its {what}"));
            }
        }
        check_shard(&store, shard, &schemas, &mut out);
    }
    if families.iter().any(|f| f == "outbox") {
        scan(&store, "outbox", &mut out, |out, key, value| {
            out.count("outbox: messages", value);
            if let Err(e) = crate::sink::check_outbox_value(value) {
                out.find(format!("outbox {}", show_key(key)), e.to_string());
            }
        });
    }
    if families.iter().any(|f| f == "inbox") {
        scan(&store, "inbox", &mut out, |out, key, value| {
            out.count("inbox: messages", value);
            if let Err(e) = crate::store::check_inbox_value(value) {
                out.find(format!("inbox {}", show_key(key)), e.to_string());
            }
        });
    }
    Ok(out)
}

/// Reads every value of `cf` into `f`; a read error (a damaged block) is a
/// finding, and the scan of that family stops there.
fn scan(store: &Store, cf: &str, out: &mut Checked, mut f: impl FnMut(&mut Checked, &[u8], &[u8])) {
    let mut last = Vec::new();
    let result = store.scan(cf, |k, v| {
        last.clear();
        last.extend_from_slice(k);
        f(out, k, v);
    });
    if let Err(e) = result {
        let after = if last.is_empty() {
            String::new()
        } else {
            format!(" after key {}", show_key(&last))
        };
        out.find(cf, format!("reading stopped{after}: {e}"));
    }
}

fn check_meta(store: &Store, out: &mut Checked, schemas: &mut BTreeSet<u64>) {
    scan(store, "meta", out, |out, key, value| {
        let k = String::from_utf8_lossy(key);
        let place = format!("meta {k}");
        let problem = if k == "store/format" {
            out.count("meta: store format", value);
            match <[u8; 2]>::try_from(value) {
                Ok(b) => {
                    let f = u16::from_le_bytes(b);
                    out.format = Some(f);
                    (f > STORE_FORMAT).then(|| format!("format {f}: this build reads up to {STORE_FORMAT}"))
                }
                Err(_) => Some("not a 2-byte format number".into()),
            }
        } else if k.starts_with("source/") {
            out.count("meta: source positions", value);
            SourcePosition::decode(value).err().map(|e| e.to_string())
        } else if let Some(id) = k.strip_prefix("schema/") {
            out.count("meta: schemas", value);
            match Schema::decode(value) {
                Ok(s) if format!("{:016x}", s.id()) == id => {
                    schemas.insert(s.id());
                    None
                }
                Ok(s) => Some(format!("its content hashes to {:016x}, not to its key", s.id())),
                Err(e) => Some(e.to_string()),
            }
        } else if k.starts_with("shard/") {
            out.count("meta: shard metas", value);
            ShardMeta::decode(value).err().map(|e| e.to_string())
        } else if k == history::CLOCK_KEY {
            out.count("meta: history clock", value);
            (value.len() != 8).then(|| "not an 8-byte time".into())
        } else if k.starts_with(crate::report::DIGEST_PREFIX) {
            out.count("meta: replay digests", value);
            crate::report::decode_digest(value).err().map(|e| e.to_string())
        } else {
            out.count("meta: other", value);
            None
        };
        if let Some(p) = problem {
            out.find(place, p);
        }
    });
}

fn check_shard(store: &Store, shard: u32, schemas: &BTreeSet<u64>, out: &mut Checked) {
    let label = |what: &str| format!("shard {shard}: {what}");
    let cf = crate::store::shard_cf(shard);
    scan(store, &cf, out, |out, key, value| {
        out.count(&label("twins"), value);
        let place = format!("{cf} twin `{}`", show_key(key));
        match record::decode(value) {
            Ok(rec) if !schemas.contains(&rec.schema) => out.find(
                place,
                format!("refers to schema {:016x}, which `meta` does not hold", rec.schema),
            ),
            Ok(_) => {}
            Err(e) => out.find(place, e.to_string()),
        }
    });
    let cf = crate::store::timer_cf(shard);
    scan(store, &cf, out, |out, key, value| {
        out.count(&label("timers"), value);
        if value.len() != 8 {
            out.find(format!("{cf} `{}`", show_key(key)), "a timer is 8 bytes");
        }
    });
    let cf = crate::store::deadline_cf(shard);
    scan(store, &cf, out, |out, key, value| {
        out.count(&label("deadlines"), value);
        if key.len() < 8 || std::str::from_utf8(&key[8..]).is_err() || !value.is_empty() {
            out.find(
                format!("{cf} {}", show_key(key)),
                "a deadline is an 8-byte time and a UTF-8 asset id, with no value",
            );
        }
    });
    let cf = history::history_cf(shard);
    scan(store, &cf, out, |out, key, value| {
        out.count(&label("history"), value);
        let problem = match history_kind(key) {
            Some(history::SERIES) => page::Page::decode(value).err().map(|e| e.to_string()),
            Some(history::ALERT | history::COMMAND) => match page::entry_body(value) {
                Ok(body) => serde_json::from_slice::<serde_json::Value>(body)
                    .err()
                    .map(|e| format!("entry is not JSON: {e}")),
                Err(e) => Some(e.to_string()),
            },
            _ => Some("not a history key".into()),
        };
        if let Some(p) = problem {
            out.find(format!("{cf} {}", show_key(key)), p);
        }
    });
}

/// The kind byte of a history key (`[asset len u16 BE][asset][kind]...`).
fn history_kind(key: &[u8]) -> Option<u8> {
    let len = u16::from_be_bytes(key.get(..2)?.try_into().ok()?) as usize;
    key.get(2 + len).copied()
}

/// A key as text where it is printable, else in hex.
fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
        _ => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}
