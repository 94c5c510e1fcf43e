//! Decoding raw records into events with a topology's decode mapping.
//!
//! A record is read in one pass with `serde_json` through a
//! [`DeserializeSeed`] that visits only the mapped fields (skipping the rest
//! unparsed) and borrows strings from the input. Records are grouped by asset
//! so the router handles each asset once per chunk. Anything wrong with a
//! record - bad JSON, a missing field, an unknown asset or sensor, a value
//! out of range - becomes a [`DeadLetter`] with the original bytes.
//!
//! `agree.rs` checks the scanner against `serde_json` on one record (the
//! property tests and the `scanner` fuzz target); `fields.rs` holds the mapped fields (the tree both readers walk, and the
//! per-record `Extract` they fill); `scan.rs` the fast record scanner;
//! `seed.rs` the `serde_json` path (the seeds and visitors); this file the
//! asset index and the decoder: its tables, chunks and records, dead
//! letters and timestamps.

use std::collections::HashMap;

use ahash::AHashMap;
use compact_str::CompactString;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeSeed;

use crate::pipeline::{DeadLetter, DeadReason, DecodedChunk, Group, Origin};
use crate::topology::{AssetPattern, DecodeSpec, Topology, TsFormat};
use crate::twin::model::Event;

mod agree;
mod fields;
mod scan;
mod seed;
#[cfg(test)]
mod tests;

pub use agree::scanner_agrees;
pub(crate) use fields::short_eq;
use fields::{Extract, FieldTree, RawTs, Target};
use seed::TreeSeed;

/// Resolves asset ids to `assets` entries: exact ids first, then patterns in
/// declaration order (the same rule as [`crate::topology::resolve_asset`]).
#[derive(Debug)]
pub struct AssetIndex {
    exact: HashMap<Box<str>, u32>,
    globs: Vec<(AssetPattern, u32)>,
    /// Entry -> asset type index.
    pub entry_type: Vec<u16>,
    /// Entry -> its relations: (relation index of the type, related asset id).
    pub entry_relations: Vec<Vec<(u16, Box<str>)>>,
}

impl AssetIndex {
    pub fn new(topo: &Topology) -> AssetIndex {
        let mut exact = HashMap::new();
        let mut globs = Vec::new();
        for (i, e) in topo.assets.iter().enumerate() {
            match &e.id {
                AssetPattern::Exact(id) => {
                    exact.entry(id.as_str().into()).or_insert(i as u32);
                }
                AssetPattern::Glob(_) => globs.push((e.id.clone(), i as u32)),
            }
        }
        AssetIndex {
            exact,
            globs,
            entry_type: topo.assets.iter().map(|e| e.asset_type as u16).collect(),
            entry_relations: topo
                .assets
                .iter()
                .map(|e| {
                    e.relations
                        .iter()
                        .map(|(r, id)| (*r as u16, id.as_str().into()))
                        .collect()
                })
                .collect(),
        }
    }

    /// Ids of the entries that name one asset, with their entry index.
    pub fn exact_ids(&self) -> impl Iterator<Item = (&str, u32)> {
        self.exact.iter().map(|(id, e)| (&**id, *e))
    }

    /// Whether an entry names `id` itself (not a pattern).
    pub fn is_exact(&self, id: &str) -> bool {
        self.exact.contains_key(id)
    }

    pub fn resolve(&self, id: &str) -> Option<u32> {
        if let Some(e) = self.exact.get(id) {
            return Some(*e);
        }
        self.globs.iter().find(|(p, _)| p.matches(id)).map(|(_, e)| *e)
    }
}

/// An asset id as the key of a chunk's group map: held inline (up to 24
/// bytes), so a probe compares within the table instead of chasing a
/// pointer into the chunk (that cache miss was the decoder's hottest
/// instruction), and compared with [`short_eq`].
#[derive(Debug, Clone)]
struct GroupKey(CompactString);

impl std::hash::Hash for GroupKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.as_str().hash(h)
    }
}

impl PartialEq for GroupKey {
    fn eq(&self, other: &Self) -> bool {
        short_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for GroupKey {}

/// Marks an asset id no `assets` entry matches.
const UNKNOWN: u32 = u32::MAX;

/// Per-decoder-thread hints kept across chunks, to size buffers once.
#[derive(Debug)]
pub struct Scratch {
    groups: usize,
    events_per_group: usize,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            groups: 64,
            events_per_group: 8,
        }
    }
}

/// What decoding one chunk keeps between its records.
struct ChunkCx<'de> {
    ex: Extract<'de>,
    /// Asset id (borrowed from the chunk) -> its group in the chunk, or
    /// [`UNKNOWN`]. Built per chunk, so it costs nothing per twin.
    groups: AHashMap<GroupKey, u32>,
    events_per_group: usize,
    /// Processing time when the chunk was decoded, read once per chunk when
    /// the node bounds timestamps (`node.time_tolerance`).
    now: i64,
}

/// Per asset type: how names and values of this source map onto sensors.
#[derive(Debug)]
struct TypeTable {
    sensors: Vec<Box<str>>,
    /// Valid range per sensor (inclusive), after conversion.
    range: Vec<(f64, f64)>,
    /// `raw * scale + offset` per sensor.
    convert: Vec<(f64, f64)>,
    /// Wide field index -> sensor index in this type.
    wide: Vec<Option<u16>>,
    /// Per sensor: this source is not among the sensor's declared sources.
    foreign: Vec<bool>,
    /// Per sensor: the twin computes it (`expr`, `integral`, `rate`).
    derived: Vec<bool>,
}

impl TypeTable {
    #[inline]
    fn sensor(&self, name: &str) -> Option<u16> {
        self.sensors
            .iter()
            .position(|s| short_eq(s.as_bytes(), name.as_bytes()))
            .map(|i| i as u16)
    }
}

/// A compiled decode mapping of one source.
#[derive(Debug)]
pub struct Decoder {
    pub source: u16,
    pub source_name: Arc<str>,
    pub file: Option<Arc<str>>,
    tree: FieldTree,
    ts_format: TsFormat,
    wide_names: Vec<Box<str>>,
    assets: Arc<AssetIndex>,
    types: Vec<TypeTable>,
    ts_field: String,
    asset_field: String,
    /// `(contract_field, contract)`: records must state this contract there.
    contract: Option<(String, Box<str>)>,
    sensor_field: Option<String>,
    value_field: Option<String>,
    /// Try the record scanner first (off only to measure the serde_json path).
    scanner: bool,
    /// `node.time_tolerance` in milliseconds: how far ahead of and behind
    /// processing time a timestamp may be.
    future_ms: Option<i64>,
    past_ms: Option<i64>,
}

impl Decoder {
    pub fn new(
        topo: &Topology,
        source: u16,
        spec: &DecodeSpec,
        assets: Arc<AssetIndex>,
        file: Option<Arc<str>>,
    ) -> Decoder {
        let mut tree = FieldTree::default();
        tree.insert(&spec.asset, Target::Asset);
        if let Some(c) = &spec.contract_field {
            tree.insert(c, Target::Contract);
        }
        tree.insert(&spec.ts, Target::Ts);
        if let Some(s) = &spec.sensor {
            tree.insert(s, Target::Sensor);
        }
        if let Some(v) = &spec.value {
            tree.insert(v, Target::Value);
        }
        for (i, (_, path)) in spec.values.iter().enumerate() {
            tree.insert(path, Target::Wide(i as u16));
        }
        let types = topo
            .asset_types
            .iter()
            .map(|t| TypeTable {
                sensors: t.sensors.iter().map(|s| s.name.as_str().into()).collect(),
                range: t
                    .sensors
                    .iter()
                    .map(|s| (s.min.unwrap_or(f64::NEG_INFINITY), s.max.unwrap_or(f64::INFINITY)))
                    .collect(),
                convert: t
                    .sensors
                    .iter()
                    .map(|s| {
                        spec.convert
                            .iter()
                            .find(|c| c.sensor == s.name)
                            .map_or((1.0, 0.0), |c| (c.scale, c.offset))
                    })
                    .collect(),
                wide: spec
                    .values
                    .iter()
                    .map(|(name, _)| t.sensor_index(name).map(|i| i as u16))
                    .collect(),
                foreign: t
                    .sensors
                    .iter()
                    .map(|s| !s.sources.is_empty() && !s.sources.iter().any(|x| x.source == source as usize))
                    .collect(),
                derived: t.sensors.iter().map(|s| s.derive.is_some()).collect(),
            })
            .collect();
        Decoder {
            source,
            source_name: topo.sources[source as usize].name.as_str().into(),
            file,
            tree,
            ts_format: spec.ts_format,
            wide_names: spec.values.iter().map(|(n, _)| n.as_str().into()).collect(),
            assets,
            types,
            ts_field: spec.ts.to_string(),
            asset_field: spec.asset.to_string(),
            contract: spec
                .contract_field
                .as_ref()
                .zip(spec.contract.as_deref())
                .map(|(f, c)| (f.to_string(), c.into())),
            sensor_field: spec.sensor.as_ref().map(ToString::to_string),
            value_field: spec.value.as_ref().map(ToString::to_string),
            scanner: true,
            future_ms: topo.node.time_tolerance.future.map(|d| d.as_millis() as i64),
            past_ms: topo.node.time_tolerance.past.map(|d| d.as_millis() as i64),
        }
    }

    /// Decodes every record with `serde_json`, for `benches/decode.rs` to
    /// measure what the scanner saves.
    #[doc(hidden)]
    pub fn without_scanner(mut self) -> Decoder {
        self.scanner = false;
        self
    }

    /// Decodes the complete lines in `data` (which starts at byte `offset`,
    /// line `first_line` (1-based) of the source) into `out`.
    pub fn decode_lines(
        &self,
        data: &[u8],
        offset: u64,
        first_line: u64,
        out: &mut DecodedChunk,
        scratch: &mut Scratch,
    ) {
        let mut cx = ChunkCx {
            ex: Extract::default(),
            groups: AHashMap::with_capacity(scratch.groups),
            events_per_group: scratch.events_per_group,
            now: if self.future_ms.is_some() || self.past_ms.is_some() {
                crate::pipeline::now_ms()
            } else {
                0
            },
        };
        // Validate UTF-8 for the whole chunk at once (SIMD); only a chunk with
        // invalid bytes is checked record by record.
        let valid = simdutf8::basic::from_utf8(data).is_ok();
        let mut pos = 0usize;
        let mut line_no = first_line;
        while pos < data.len() {
            let end = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i);
            let mut line = &data[pos..end];
            let line_offset = offset + pos as u64;
            pos = end + 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                out.records += 1;
                self.decode_record(line, valid, (line_no, line_offset), &mut cx, out);
            }
            line_no += 1;
        }
        scratch.groups = cx.groups.len().max(16);
        if !out.groups.is_empty() {
            scratch.events_per_group = (out.events as usize).div_ceil(out.groups.len()).clamp(1, 4096);
        }
    }

    fn dead(
        &self,
        out: &mut DecodedChunk,
        line: &[u8],
        line_no: u64,
        offset: u64,
        reason: DeadReason,
        message: String,
    ) {
        out.dead_letters.push(DeadLetter {
            origin: Origin {
                source: self.source_name.clone(),
                file: self.file.clone(),
                line: line_no,
                offset: Some(offset),
                topic: None,
                partition: None,
            },
            reason,
            message,
            payload: line.to_vec(),
            key: None,
        });
    }

    fn decode_record<'de>(
        &self,
        line: &'de [u8],
        valid_utf8: bool,
        (line_no, offset): (u64, u64),
        cx: &mut ChunkCx<'de>,
        out: &mut DecodedChunk,
    ) {
        let ChunkCx {
            ex,
            groups,
            events_per_group,
            now,
        } = cx;
        let events_per_group = *events_per_group;
        ex.reset();
        // serde_json skips its per-string UTF-8 checks on a `&str`.
        let text = if valid_utf8 {
            // SAFETY: the whole chunk is valid UTF-8 and `line` is cut at
            // ASCII `\n`/`\r` bytes, which are never inside a multi-byte
            // character, so `line` is valid UTF-8 too.
            unsafe { std::str::from_utf8_unchecked(line) }
        } else {
            match std::str::from_utf8(line) {
                Ok(t) => t,
                Err(e) => {
                    let msg = format!("record is not valid UTF-8 ({e})");
                    return self.dead(out, line, line_no, offset, DeadReason::Malformed, msg);
                }
            }
        };
        // The fast path reads what sources send; anything else, and every
        // malformed record, goes through serde_json.
        if !self.scanner || scan::record(text, &self.tree, ex).is_none() {
            ex.reset();
            let mut de = serde_json::Deserializer::from_str(text);
            let parsed = TreeSeed {
                tree: &self.tree,
                out: ex,
            }
            .deserialize(&mut de)
            .and_then(|()| de.end());
            if let Err(e) = parsed {
                let msg = e.to_string().replace(" at line 1 column", " at column");
                return self.dead(out, line, line_no, offset, DeadReason::Malformed, msg);
            }
        }
        if let Some((field, want)) = &self.contract {
            let msg = match ex.contract.take() {
                Some(c) if *c == **want => None,
                Some(c) => Some(format!(
                    "the record states contract `{c}` at `{field}`; this source reads `{want}`"
                )),
                None => Some(format!(
                    "the record states no contract at `{field}`; this source reads `{want}`"
                )),
            };
            if let Some(msg) = msg {
                return self.dead(out, line, line_no, offset, DeadReason::UnknownContract, msg);
            }
        }
        let Some(asset) = ex.asset.take() else {
            let msg = format!("missing field `{}` (asset id)", self.asset_field);
            return self.dead(out, line, line_no, offset, DeadReason::MissingField, msg);
        };
        let ts = match ex.ts.take() {
            None => {
                let msg = format!("missing field `{}` (timestamp)", self.ts_field);
                return self.dead(out, line, line_no, offset, DeadReason::MissingField, msg);
            }
            Some(raw) => match self.timestamp(raw) {
                Ok(ts) => ts,
                Err(msg) => return self.dead(out, line, line_no, offset, DeadReason::BadTimestamp, msg),
            },
        };
        if let Err((reason, msg)) = self.within_tolerance(ts, *now) {
            return self.dead(out, line, line_no, offset, reason, msg);
        }
        let key = GroupKey(CompactString::from(&*asset));
        let group = match groups.get(&key) {
            Some(g) => *g,
            None => {
                let g = match self.assets.resolve(&asset) {
                    Some(entry) => {
                        out.groups.push(Group {
                            asset: CompactString::from(&*asset),
                            entry,
                            events: Vec::with_capacity(events_per_group),
                        });
                        (out.groups.len() - 1) as u32
                    }
                    None => UNKNOWN,
                };
                groups.insert(key, g);
                g
            }
        };
        if group == UNKNOWN {
            let msg = format!("unknown asset `{asset}`: no entry under `assets` matches it");
            return self.dead(out, line, line_no, offset, DeadReason::UnknownAsset, msg);
        }
        let group = group as usize;
        let ty = self.assets.entry_type[out.groups[group].entry as usize] as usize;
        let table = &self.types[ty];
        let push = |sensor: u16, raw: f64, out: &mut DecodedChunk| -> Result<(), (DeadReason, String)> {
            if table.derived[sensor as usize] {
                return Err((
                    DeadReason::UnknownSensor,
                    format!(
                        "sensor `{}` is derived: the twin computes it, no source reports it",
                        table.sensors[sensor as usize]
                    ),
                ));
            }
            if table.foreign[sensor as usize] {
                return Err((
                    DeadReason::UnknownSource,
                    format!(
                        "sensor `{}` lists its sources and `{}` is not one of them",
                        table.sensors[sensor as usize], self.source_name
                    ),
                ));
            }
            let (scale, off) = table.convert[sensor as usize];
            let value = raw * scale + off;
            let (lo, hi) = table.range[sensor as usize];
            if !value.is_finite() || value < lo || value > hi {
                return Err((
                    DeadReason::OutOfRange,
                    format!(
                        "value {value} of sensor `{}` is outside its range [{lo}, {hi}]",
                        table.sensors[sensor as usize]
                    ),
                ));
            }
            out.groups[group].events.push(Event {
                ts,
                value,
                sensor,
                source: self.source,
                origin: line_no,
                redelivered: false,
                replayed: false,
            });
            out.events += 1;
            Ok(())
        };
        if self.sensor_field.is_some() {
            let Some(name) = ex.sensor.take() else {
                let msg = format!(
                    "missing field `{}` (sensor)",
                    self.sensor_field.as_deref().unwrap_or("")
                );
                return self.dead(out, line, line_no, offset, DeadReason::MissingField, msg);
            };
            let Some(sensor) = table.sensor(&name) else {
                let msg = format!(
                    "unknown sensor `{name}` for asset `{asset}` (type has {})",
                    table.sensors.join(", ")
                );
                return self.dead(out, line, line_no, offset, DeadReason::UnknownSensor, msg);
            };
            let Some(raw) = ex.value else {
                let msg = format!("missing field `{}` (value)", self.value_field.as_deref().unwrap_or(""));
                return self.dead(out, line, line_no, offset, DeadReason::MissingField, msg);
            };
            if let Err((reason, msg)) = push(sensor, raw, out) {
                self.dead(out, line, line_no, offset, reason, msg);
            }
        } else {
            if ex.wide.is_empty() {
                let msg = "no mapped sensor field is present".to_string();
                return self.dead(out, line, line_no, offset, DeadReason::MissingField, msg);
            }
            for i in 0..ex.wide.len() {
                let (field, raw) = ex.wide[i];
                let result = match table.wide[field as usize] {
                    Some(sensor) => push(sensor, raw, out),
                    None => Err((
                        DeadReason::UnknownSensor,
                        format!(
                            "unknown sensor `{}` for asset `{asset}` (type has {})",
                            self.wide_names[field as usize],
                            table.sensors.join(", ")
                        ),
                    )),
                };
                if let Err((reason, msg)) = result {
                    self.dead(out, line, line_no, offset, reason, msg);
                }
            }
        }
    }

    fn timestamp(&self, raw: RawTs<'_>) -> Result<i64, String> {
        let bad = |what: &dyn fmt::Display| format!("cannot read timestamp `{what}` as {:?}", self.ts_format);
        let number = match raw {
            RawTs::Str(s) if self.ts_format == TsFormat::Rfc3339 => {
                let t = humantime::parse_rfc3339_weak(&s).map_err(|e| format!("timestamp `{s}`: {e}"))?;
                let d = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| bad(&s))?;
                return Ok(d.as_millis() as i64);
            }
            RawTs::Str(s) => s.trim().parse::<f64>().map_err(|_| bad(&s))?,
            RawTs::Int(i) => match self.ts_format {
                TsFormat::EpochMillis => return Ok(i),
                TsFormat::EpochSeconds => return i.checked_mul(1000).ok_or_else(|| bad(&i)),
                TsFormat::EpochMicros => return Ok(i.div_euclid(1000)),
                TsFormat::Rfc3339 => return Err(bad(&i)),
            },
            RawTs::Float(f) => f,
        };
        let ms = match self.ts_format {
            TsFormat::EpochMillis => number,
            TsFormat::EpochSeconds => number * 1000.0,
            TsFormat::EpochMicros => number / 1000.0,
            TsFormat::Rfc3339 => return Err(bad(&number)),
        };
        if ms.is_finite() && ms.abs() < 9.0e15 {
            Ok(ms.floor() as i64)
        } else {
            Err(bad(&number))
        }
    }

    /// Checks `ts` against `node.time_tolerance` around processing time
    /// `now`: a record stamped years ahead would otherwise move its twin's
    /// watermark there and close every window until then.
    #[inline]
    fn within_tolerance(&self, ts: i64, now: i64) -> Result<(), (DeadReason, String)> {
        // RFC 3339 has four-digit years (humantime's formatter fails past
        // 9999-12-31): beyond them, the number.
        const MAX_RFC3339_MS: i64 = 253_402_300_799_999;
        let show = |ms: i64| match u64::try_from(ms) {
            Ok(u) if ms <= MAX_RFC3339_MS => {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u);
                humantime::format_rfc3339_millis(t).to_string()
            }
            _ => format!("{ms} ms since the epoch"),
        };
        let span = |ms: i64| humantime::format_duration(std::time::Duration::from_secs(ms.unsigned_abs() / 1000));
        match (self.future_ms, self.past_ms) {
            (Some(limit), _) if ts.saturating_sub(now) > limit => Err((
                DeadReason::FutureTimestamp,
                format!(
                    "timestamp {} is {} ahead of this node's clock ({}), beyond node.time_tolerance.future ({})",
                    show(ts),
                    span(ts.saturating_sub(now)),
                    show(now),
                    span(limit)
                ),
            )),
            (_, Some(limit)) if now.saturating_sub(ts) > limit => Err((
                DeadReason::PastTimestamp,
                format!(
                    "timestamp {} is {} behind this node's clock ({}), beyond node.time_tolerance.past ({})",
                    show(ts),
                    span(now.saturating_sub(ts)),
                    show(now),
                    span(limit)
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The event time of one record, if it decodes (used to pace replays).
    pub fn peek_ts(&self, line: &[u8]) -> Option<i64> {
        let mut ex = Extract::default();
        let mut de = serde_json::Deserializer::from_slice(line);
        TreeSeed {
            tree: &self.tree,
            out: &mut ex,
        }
        .deserialize(&mut de)
        .ok()?;
        self.timestamp(ex.ts?).ok()
    }
}
