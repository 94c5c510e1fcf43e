//! Twin values in parts: a header and keyed entries, so that a checkpoint
//! can write only the entries that changed as a RocksDB merge operand and
//! the store folds them into the value (issue 28's incremental records;
//! docs/decisions.md "Incremental twin records").
//!
//! The store does not know what a header or an entry means (the twin
//! record format does: `twin::record`); it knows how values in parts are
//! laid out and how they fold:
//!
//! ```text
//! [format: u16 LE = FORMAT][header length][header]
//! section*: [context length][context][entry count]
//!           entry*: [id][length][bytes]      (a length of 0: the entry is removed)
//! ```
//!
//! Lengths, counts and ids are LEB128 varints. A section's context is what
//! its entries' bytes are relative to (a twin's entries store their times
//! relative to bases of event and processing time written in the context),
//! so an entry is copied from value to value without being decoded.
//!
//! Folding a value and the operands after it, oldest first: the newest
//! header; of each id, the newest entry, in the section it was written
//! with; sections left without entries dropped, and next sections with the
//! same context joined. A full merge (with the stored value, or with none
//! when the key has none) drops removed entries; a partial merge (operands
//! only) keeps them, as they may shadow an entry of the value below. Folding
//! is associative, so RocksDB may fold operands in any grouping.

/// The envelope format of a value in parts (a twin record's format 6; the
/// whole record of format 5 is not in parts).
pub const FORMAT: u16 = 6;

/// The largest entry id a value may hold (a twin's sensor index is a
/// `u16`; the fold keeps a bit per id).
const MAX_ID: u64 = u16::MAX as u64;

/// The name RocksDB records for the twins families' merge operator.
pub(super) const MERGE_OPERATOR: &str = "twinstream.twin-parts.v1";

/// Writes a value in parts: [`Writer::new`] with the header, then sections
/// and their entries, then [`Writer::finish`].
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// Where the open section's entry count goes, and its count so far.
    section: Option<(usize, u64)>,
}

impl<'a> Writer<'a> {
    /// Starts a value in `out` (cleared) with `header`.
    pub fn new(out: &'a mut Vec<u8>, header: &[u8]) -> Writer<'a> {
        out.clear();
        out.extend_from_slice(&FORMAT.to_le_bytes());
        put_varint(out, header.len() as u64);
        out.extend_from_slice(header);
        Writer { out, section: None }
    }

    /// Starts a section whose entries are relative to `context`.
    pub fn section(&mut self, context: &[u8]) {
        self.close();
        put_varint(self.out, context.len() as u64);
        self.out.extend_from_slice(context);
        // The count is patched in by `close`: a fixed 5-byte varint slot
        // would waste 4 bytes a section, so the entries are counted first.
        self.section = Some((self.out.len(), 0));
    }

    /// Adds an entry to the open section; `bytes` empty: the entry is
    /// removed.
    pub fn entry(&mut self, id: u16, bytes: &[u8]) {
        let (_, n) = self.section.as_mut().expect("an entry goes in a section");
        *n += 1;
        put_varint(self.out, u64::from(id));
        put_varint(self.out, bytes.len() as u64);
        self.out.extend_from_slice(bytes);
    }

    /// Adds an entry whose bytes `write` appends (saving a copy).
    pub fn entry_with(&mut self, id: u16, write: impl FnOnce(&mut Vec<u8>)) {
        let (_, n) = self.section.as_mut().expect("an entry goes in a section");
        *n += 1;
        put_varint(self.out, u64::from(id));
        // The length is not known before the bytes: written after them,
        // then the two rotated into place (entries are tens of bytes).
        let at = self.out.len();
        write(self.out);
        let len = self.out.len() - at;
        put_varint(self.out, len as u64);
        let varint = self.out.len() - at - len;
        self.out[at..].rotate_right(varint);
    }

    /// Closes the value.
    pub fn finish(mut self) {
        self.close();
    }

    fn close(&mut self) {
        if let Some((at, n)) = self.section.take() {
            // The count, inserted before the entries.
            let (count, len) = varint(n);
            self.out.splice(at..at, count[..len].iter().copied());
        }
    }
}

/// A value in parts, read: its header and sections.
#[derive(Debug, Clone, PartialEq)]
pub struct Parts<'a> {
    pub header: &'a [u8],
    pub sections: Vec<Section<'a>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Section<'a> {
    pub context: &'a [u8],
    /// `(id, bytes)`; empty bytes: removed.
    pub entries: Vec<(u16, &'a [u8])>,
}

/// Why a value is not a value in parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartsError {
    #[error("not a value in parts (format {found}, expected {FORMAT})")]
    Format { found: u16 },
    #[error("a value in parts ends inside its {0}")]
    Truncated(&'static str),
    #[error("a value in parts has entry id {0}, over the largest {MAX_ID}")]
    Id(u64),
}

impl<'a> Parts<'a> {
    /// Reads `bytes` (the whole value, envelope included).
    pub fn read(bytes: &'a [u8]) -> Result<Parts<'a>, PartsError> {
        if bytes.len() < 2 {
            return Err(PartsError::Truncated("format"));
        }
        let found = u16::from_le_bytes([bytes[0], bytes[1]]);
        if found != FORMAT {
            return Err(PartsError::Format { found });
        }
        let mut r = Reader(&bytes[2..]);
        let header = r.bytes("header")?;
        let mut sections = Vec::new();
        while !r.0.is_empty() {
            let context = r.bytes("section context")?;
            let n = r.varint("entry count")?;
            let mut entries = Vec::with_capacity(n.min(1 << 12) as usize);
            for _ in 0..n {
                let id = r.varint("entry id")?;
                if id > MAX_ID {
                    return Err(PartsError::Id(id));
                }
                entries.push((id as u16, r.bytes("entry")?));
            }
            sections.push(Section { context, entries });
        }
        Ok(Parts { header, sections })
    }
}

/// Folds `values`, oldest first, into one value (see the module doc);
/// `full`: the fold starts from the stored value (or from none), so removed
/// entries are dropped. `None` when a value is not in parts: RocksDB then
/// fails the read as corrupt rather than return a wrong twin.
pub fn fold<'a>(values: impl Iterator<Item = &'a [u8]>, full: bool) -> Option<Vec<u8>> {
    let read: Vec<Parts<'a>> = values.map(Parts::read).collect::<Result<_, _>>().ok()?;
    let header = read.last()?.header;
    // Every entry, oldest first, with its section's context.
    let entries: Vec<(&[u8], u16, &[u8])> = read
        .iter()
        .flat_map(|p| &p.sections)
        .flat_map(|s| s.entries.iter().map(|(id, bytes)| (s.context, *id, *bytes)))
        .collect();
    // Newest first, the entries still standing (ids are a twin's sensor
    // indices: a bit set, not a hash set).
    let ids = entries.iter().map(|(_, id, _)| *id as usize + 1).max().unwrap_or(0);
    let mut seen = vec![0u64; ids.div_ceil(64)];
    let mut standing = vec![false; entries.len()];
    for (i, (_, id, bytes)) in entries.iter().enumerate().rev() {
        let (word, bit) = (*id as usize / 64, 1u64 << (id % 64));
        let first = seen[word] & bit == 0;
        seen[word] |= bit;
        standing[i] = first && !(full && bytes.is_empty());
    }
    let size = header.len() + entries.iter().map(|(c, _, b)| c.len() + b.len() + 4).sum::<usize>();
    let mut out = Vec::with_capacity(size + 8);
    let mut w = Writer::new(&mut out, header);
    let mut open: Option<&[u8]> = None;
    for ((context, id, bytes), _) in entries.iter().zip(&standing).filter(|(_, s)| **s) {
        if open != Some(*context) {
            w.section(context);
            open = Some(context);
        }
        w.entry(*id, bytes);
    }
    w.finish();
    Some(out)
}

/// The merge operator of the twins families: a full merge.
pub(super) fn full_merge(_key: &[u8], existing: Option<&[u8]>, ops: &rocksdb::MergeOperands) -> Option<Vec<u8>> {
    fold(existing.into_iter().chain(ops.iter()), true)
}

/// The merge operator of the twins families: operands folded together.
pub(super) fn partial_merge(_key: &[u8], existing: Option<&[u8]>, ops: &rocksdb::MergeOperands) -> Option<Vec<u8>> {
    fold(existing.into_iter().chain(ops.iter()), false)
}

/// `v` as a LEB128 varint: its bytes and how many.
fn varint(mut v: u64) -> ([u8; 10], usize) {
    let (mut bytes, mut len) = ([0u8; 10], 0);
    while v >= 0x80 {
        bytes[len] = (v as u8) | 0x80;
        len += 1;
        v >>= 7;
    }
    bytes[len] = v as u8;
    (bytes, len + 1)
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    let (bytes, len) = varint(v);
    out.extend_from_slice(&bytes[..len]);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self, what: &'static str) -> Result<u64, PartsError> {
        let mut v = 0u64;
        for (i, b) in self.0.iter().enumerate().take(10) {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Ok(v);
            }
        }
        Err(PartsError::Truncated(what))
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], PartsError> {
        let n = self.varint(what)?;
        if n > self.0.len() as u64 {
            return Err(PartsError::Truncated(what));
        }
        let (b, rest) = self.0.split_at(n as usize);
        self.0 = rest;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// A value: header, then sections of `(context, [(id, bytes)])`.
    type Value = (Vec<u8>, Vec<(Vec<u8>, Vec<(u16, Vec<u8>)>)>);

    fn write(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, &v.0);
        for (ctx, entries) in &v.1 {
            w.section(ctx);
            for (id, b) in entries {
                w.entry(*id, b);
            }
        }
        w.finish();
        out
    }

    /// What a value says, resolved: the header, and each standing id's
    /// context and bytes.
    type Meaning = (Vec<u8>, BTreeMap<u16, (Vec<u8>, Vec<u8>)>);

    /// Applies values oldest first, as the model of folding.
    fn meaning(values: &[Vec<u8>]) -> Meaning {
        let mut header = Vec::new();
        let mut entries = BTreeMap::new();
        for v in values {
            let p = Parts::read(v).unwrap();
            header = p.header.to_vec();
            for s in &p.sections {
                for (id, b) in &s.entries {
                    entries.insert(*id, (s.context.to_vec(), b.to_vec()));
                }
            }
        }
        entries.retain(|_, (_, b)| !b.is_empty());
        (header, entries)
    }

    fn value() -> impl Strategy<Value = Value> {
        let entry = (0u16..12, prop::collection::vec(any::<u8>(), 0..4));
        let section = (prop::collection::vec(0u8..3, 0..2), prop::collection::vec(entry, 0..5));
        (
            prop::collection::vec(any::<u8>(), 0..6),
            prop::collection::vec(section, 0..3),
        )
    }

    #[test]
    fn a_written_value_reads_back() {
        let v: Value = (
            b"head".to_vec(),
            vec![(b"c1".to_vec(), vec![(3, b"x".to_vec()), (300, Vec::new())])],
        );
        let bytes = write(&v);
        let p = Parts::read(&bytes).unwrap();
        assert_eq!(p.header, b"head");
        assert_eq!(p.sections.len(), 1);
        assert_eq!(p.sections[0].context, b"c1");
        assert_eq!(p.sections[0].entries, [(3, &b"x"[..]), (300, &b""[..])]);
    }

    #[test]
    fn entry_with_writes_what_entry_writes() {
        let long = [7u8; 200];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (out, with) in [(&mut a, false), (&mut b, true)] {
            let mut w = Writer::new(out, b"h");
            w.section(b"");
            for bytes in [&b"ab"[..], &long[..]] {
                if with {
                    w.entry_with(9, |o| o.extend_from_slice(bytes));
                } else {
                    w.entry(9, bytes);
                }
            }
            w.finish();
        }
        assert_eq!(a, b);
    }

    #[test]
    fn a_value_not_in_parts_is_refused_and_fails_the_fold() {
        let mut whole = 5u16.to_le_bytes().to_vec();
        whole.extend_from_slice(b"record");
        assert_eq!(Parts::read(&whole), Err(PartsError::Format { found: 5 }));
        let op = write(&(b"h".to_vec(), vec![]));
        assert_eq!(fold([&whole[..], &op[..]].into_iter(), true), None);
        let cut = &op[..op.len() - 1];
        assert!(Parts::read(cut).is_err());
    }

    proptest! {
        /// Folding says what applying the values one by one says, with or
        /// without the stored value, in any grouping of the operands (as
        /// RocksDB's partial merges group them).
        #[test]
        fn folding_is_applying_in_order_in_any_grouping(
            values in prop::collection::vec(value(), 1..6),
            split in 0usize..6,
        ) {
            let bytes: Vec<Vec<u8>> = values.iter().map(write).collect();
            let full = fold(bytes.iter().map(|b| &b[..]), true).unwrap();
            prop_assert_eq!(meaning(std::slice::from_ref(&full)), meaning(&bytes));
            // The operands after the first folded in two groups, partially.
            let ops = &bytes[1..];
            let k = split.min(ops.len());
            let mut grouped = vec![bytes[0].clone()];
            for group in [&ops[..k], &ops[k..]] {
                if !group.is_empty() {
                    grouped.push(fold(group.iter().map(|b| &b[..]), false).unwrap());
                }
            }
            let regrouped = fold(grouped.iter().map(|b| &b[..]), true).unwrap();
            prop_assert_eq!(meaning(&[regrouped]), meaning(&bytes));
            // Removed entries are gone from a full merge.
            let p = Parts::read(&full).unwrap();
            prop_assert!(p.sections.iter().all(|s| !s.entries.is_empty() && s.entries.iter().all(|(_, b)| !b.is_empty())));
        }
    }
}
