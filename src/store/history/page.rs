//! The stored form of history: pages of buckets (downsampled tiers) and
//! pages of readings (the raw tier), their encoding, and how two of them
//! combine (the merge operator's work).
//!
//! A page covers [`PAGE_BUCKETS`] buckets of one tier (or
//! [`RAW_PAGE_MS`] of readings) of one series. What a checkpoint writes is
//! a page holding only what changed since the previous one, as a RocksDB
//! merge operand; operands combine into the page. Because combining is
//! associative (and commutative up to ties broken by write order: the
//! earlier write's `first`, the later write's `last`), a late reading is
//! just one more operand, and a page reads the same however its operands
//! were grouped by checkpoints, flushes and compactions.
//!
//! Encoding (`[format][expires i64 BE][body]`): the header's `expires` is
//! the event time from which no bucket of the page is within retention (the
//! compaction filter's test). Doubles are XOR-ed with the same field of the
//! previous entry and written without their zero bytes at either end (the
//! Gorilla idea, at byte granularity): neighbouring values share sign,
//! exponent and the top of the mantissa, which then cost nothing. Times are
//! deltas of deltas, so regular ones cost a byte.

/// Buckets per page of a downsampled tier.
pub const PAGE_BUCKETS: i64 = 64;
/// The span of a page of the raw tier.
pub const RAW_PAGE_MS: i64 = 60_000;
const FORMAT: u8 = 1;
const HEADER: usize = 9;

/// What a downsampled bucket keeps of the readings in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// The reading with the smallest event time (ties: the earlier arrival).
    pub first_ts: i64,
    pub first: f64,
    /// The reading with the greatest event time (ties: the later arrival).
    pub last_ts: i64,
    pub last: f64,
}

impl Bucket {
    pub fn of(ts: i64, value: f64) -> Bucket {
        Bucket {
            count: 1,
            sum: value,
            min: value,
            max: value,
            first_ts: ts,
            first: value,
            last_ts: ts,
            last: value,
        }
    }

    /// Folds in `later`, written after `self`.
    pub fn combine(&mut self, later: &Bucket) {
        self.count += later.count;
        self.sum += later.sum;
        self.min = self.min.min(later.min);
        self.max = self.max.max(later.max);
        if later.first_ts < self.first_ts {
            (self.first_ts, self.first) = (later.first_ts, later.first);
        }
        if later.last_ts >= self.last_ts {
            (self.last_ts, self.last) = (later.last_ts, later.last);
        }
    }

    pub fn add(&mut self, ts: i64, value: f64) {
        self.combine(&Bucket::of(ts, value));
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.count as f64
    }
}

/// A decoded page.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    /// No bucket of the page is within retention once the history clock
    /// reaches this.
    pub expires: i64,
    /// Downsampled: `(bucket index in the page, bucket)` by index.
    pub buckets: Vec<(u8, Bucket)>,
    /// Raw: `(event time, value)` by event time (equal times: arrival order).
    pub readings: Vec<(i64, f64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("history page is unreadable: {0}")]
pub struct PageError(&'static str);

/// The event time from which a page starting at `start` of a tier `width`
/// wide (0: raw) kept `keep` is out of retention.
pub fn expiry(start: i64, width: i64, keep: i64) -> i64 {
    start.saturating_add(span(width)).saturating_add(keep)
}

/// The span of a page of a tier `width` wide (0: raw).
pub fn span(width: i64) -> i64 {
    if width == 0 {
        RAW_PAGE_MS
    } else {
        width.saturating_mul(PAGE_BUCKETS)
    }
}

/// The start of the page holding event time `ts` in a tier `width` wide.
pub fn page_start(ts: i64, width: i64) -> i64 {
    let span = span(width);
    ts.div_euclid(span) * span
}

impl Page {
    /// Combines `later` (written after `self`) into `self`.
    pub fn combine(&mut self, later: Page) {
        self.expires = self.expires.max(later.expires);
        if self.buckets.is_empty() {
            self.buckets = later.buckets;
        } else if !later.buckets.is_empty() {
            let mut merged = Vec::with_capacity(self.buckets.len() + later.buckets.len());
            let mut b = later.buckets.into_iter().peekable();
            for (i, mut a) in self.buckets.drain(..) {
                while let Some(&(j, lb)) = b.peek() {
                    if j > i {
                        break;
                    }
                    b.next();
                    if j == i {
                        a.combine(&lb);
                    } else {
                        merged.push((j, lb));
                    }
                }
                merged.push((i, a));
            }
            merged.extend(b);
            self.buckets = merged;
        }
        if self.readings.is_empty() {
            self.readings = later.readings;
        } else if !later.readings.is_empty() {
            // Stable: equal times keep the earlier write first.
            let mut merged = Vec::with_capacity(self.readings.len() + later.readings.len());
            let mut b = later.readings.into_iter().peekable();
            for a in self.readings.drain(..) {
                while let Some(&r) = b.peek() {
                    if r.0 >= a.0 {
                        break;
                    }
                    merged.push(r);
                    b.next();
                }
                merged.push(a);
            }
            merged.extend(b);
            self.readings = merged;
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(FORMAT);
        out.extend_from_slice(&self.expires.to_be_bytes());
        if !self.buckets.is_empty() {
            out.push(b'B');
            let mut prev = [0u64; 5];
            let (mut first, mut span) = (Times::default(), Times::default());
            for (i, b) in &self.buckets {
                out.push(*i);
                put_varint(out, b.count);
                put_varint(out, zigzag(first.next(b.first_ts)));
                put_varint(out, zigzag(span.next(b.last_ts - b.first_ts)));
                for (k, v) in [b.first, b.min, b.max, b.sum, b.last].into_iter().enumerate() {
                    put_xor(out, v.to_bits(), &mut prev[k]);
                }
            }
        } else {
            out.push(b'R');
            let (mut t, mut pv) = (Times::default(), 0u64);
            for (ts, v) in &self.readings {
                put_varint(out, zigzag(t.next(*ts)));
                put_xor(out, v.to_bits(), &mut pv);
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Page, PageError> {
        let expires = header_expiry(bytes)?;
        let mut page = Page {
            expires,
            ..Page::default()
        };
        let mut r = Reader(&bytes[HEADER..]);
        match r.byte() {
            Some(b'B') => {
                let mut prev = [0u64; 5];
                let (mut first, mut span) = (Times::default(), Times::default());
                while let Some(i) = r.byte() {
                    let count = r.varint()?;
                    let first_ts = first.back(unzigzag(r.varint()?));
                    // A bucket holds a reading, and its last is not before
                    // its first: anything else is damage (found by the
                    // `stored` fuzz target: the sum overflowed).
                    let span_ms = span.back(unzigzag(r.varint()?));
                    let last_ts = match first_ts.checked_add(span_ms) {
                        Some(t) if span_ms >= 0 && count > 0 => t,
                        _ => return Err(PageError("a bucket's count or times are impossible")),
                    };
                    let mut v = [0f64; 5];
                    for (k, x) in v.iter_mut().enumerate() {
                        *x = f64::from_bits(r.xor(&mut prev[k])?);
                    }
                    page.buckets.push((
                        i,
                        Bucket {
                            count,
                            first_ts,
                            first: v[0],
                            min: v[1],
                            max: v[2],
                            sum: v[3],
                            last_ts,
                            last: v[4],
                        },
                    ));
                }
            }
            Some(b'R') => {
                let (mut t, mut pv) = (Times::default(), 0u64);
                while !r.0.is_empty() {
                    let ts = t.back(unzigzag(r.varint()?));
                    page.readings.push((ts, f64::from_bits(r.xor(&mut pv)?)));
                }
            }
            _ => return Err(PageError("unknown page kind")),
        }
        Ok(page)
    }
}

/// The `expires` of an encoded value (a page or an event entry).
pub fn header_expiry(bytes: &[u8]) -> Result<i64, PageError> {
    if bytes.len() < HEADER || bytes[0] != FORMAT {
        return Err(PageError("unknown format"));
    }
    Ok(i64::from_be_bytes(bytes[1..HEADER].try_into().expect("8 bytes")))
}

/// An event entry (an alert transition or a command): `[format][expires][json]`.
pub fn encode_entry(expires: i64, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + json.len());
    out.push(FORMAT);
    out.extend_from_slice(&expires.to_be_bytes());
    out.extend_from_slice(json);
    out
}

/// The JSON of an event entry.
pub fn entry_body(bytes: &[u8]) -> Result<&[u8], PageError> {
    header_expiry(bytes)?;
    Ok(&bytes[HEADER..])
}

/// The merge operator: combines the stored page (if any) with the operands,
/// in write order. An unreadable operand keeps the rest (logged by the
/// caller's read, which reports it); `None` only if nothing is readable.
pub fn merge(existing: Option<&[u8]>, operands: impl Iterator<Item = impl AsRef<[u8]>>) -> Option<Vec<u8>> {
    let mut page: Option<Page> = existing.and_then(|b| Page::decode(b).ok());
    for op in operands {
        if let Ok(p) = Page::decode(op.as_ref()) {
            match &mut page {
                Some(acc) => acc.combine(p),
                None => page = Some(p),
            }
        }
    }
    let page = page?;
    let mut out = Vec::new();
    page.encode(&mut out);
    Some(out)
}

/// A sequence of times written as deltas of deltas (Gorilla): regular
/// times (a reading every second, a bucket's first reading every minute)
/// cost one byte each.
#[derive(Default)]
struct Times {
    prev: i64,
    delta: i64,
}

impl Times {
    /// What to write for `t`.
    fn next(&mut self, t: i64) -> i64 {
        let delta = t.wrapping_sub(self.prev);
        let dod = delta.wrapping_sub(self.delta);
        (self.prev, self.delta) = (t, delta);
        dod
    }

    /// The time `dod` (read back) stands for.
    fn back(&mut self, dod: i64) -> i64 {
        self.delta = self.delta.wrapping_add(dod);
        self.prev = self.prev.wrapping_add(self.delta);
        self.prev
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `bits` XOR `prev`, as a control byte (leading zero bytes << 4 | trailing
/// zero bytes) and the bytes between.
fn put_xor(out: &mut Vec<u8>, bits: u64, prev: &mut u64) {
    let x = bits ^ *prev;
    *prev = bits;
    if x == 0 {
        out.push(0x80);
        return;
    }
    let lead = x.leading_zeros() / 8;
    let trail = x.trailing_zeros() / 8;
    out.push(((lead << 4) | trail) as u8);
    let bytes = x.to_be_bytes();
    out.extend_from_slice(&bytes[lead as usize..8 - trail as usize]);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn varint(&mut self) -> Result<u64, PageError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte().ok_or(PageError("truncated number"))?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(PageError("number too long"))
    }

    fn xor(&mut self, prev: &mut u64) -> Result<u64, PageError> {
        let c = self.byte().ok_or(PageError("truncated value"))?;
        let (lead, trail) = ((c >> 4) as usize, (c & 0x0f) as usize);
        if lead == 8 {
            return Ok(*prev);
        }
        let n = 8usize
            .checked_sub(lead + trail)
            .filter(|n| *n > 0)
            .ok_or(PageError("bad value control byte"))?;
        if self.0.len() < n {
            return Err(PageError("truncated value"));
        }
        let mut bytes = [0u8; 8];
        bytes[lead..lead + n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        *prev ^= u64::from_be_bytes(bytes);
        Ok(*prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn page_of(readings: &[(i64, f64)], width: i64) -> Page {
        let mut p = Page::default();
        for &(ts, v) in readings {
            let one = if width == 0 {
                Page {
                    expires: ts,
                    readings: vec![(ts, v)],
                    ..Page::default()
                }
            } else {
                let i = ((ts - page_start(ts, width)) / width) as u8;
                Page {
                    expires: ts,
                    buckets: vec![(i, Bucket::of(ts, v))],
                    ..Page::default()
                }
            };
            p.combine(one);
        }
        p
    }

    fn roundtrip(p: &Page) -> Page {
        let mut b = Vec::new();
        p.encode(&mut b);
        Page::decode(&b).unwrap()
    }

    proptest! {
        /// However readings are split into operands (checkpoints) and the
        /// operands grouped (flushes, compactions), the page is the same as
        /// folding every reading in order; encoding loses nothing.
        #[test]
        fn grouping_of_operands_does_not_change_a_page(
            readings in prop::collection::vec((0i64..64_000, -1000i32..1000), 1..200),
            cuts in prop::collection::vec(0usize..200, 0..6),
            raw in any::<bool>(),
        ) {
            let width = if raw { 0 } else { 1000 };
            let readings: Vec<(i64, f64)> = readings.iter().map(|&(t, v)| (t, f64::from(v) / 64.0)).collect();
            let whole = page_of(&readings, width);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(readings.len())).collect();
            cuts.push(0);
            cuts.push(readings.len());
            cuts.sort();
            let parts: Vec<Vec<u8>> = cuts.windows(2).map(|w| {
                let mut b = Vec::new();
                page_of(&readings[w[0]..w[1]], width).encode(&mut b);
                b
            }).collect();
            // All at once, and as a stored page plus the rest.
            let all = Page::decode(&merge(None, parts.iter()).unwrap()).unwrap();
            prop_assert_eq!(&all, &whole);
            let k = parts.len() / 2;
            let left = merge(None, parts[..k].iter());
            let right = merge(left.as_deref(), parts[k..].iter()).unwrap();
            prop_assert_eq!(&Page::decode(&right).unwrap(), &whole);
            prop_assert_eq!(&roundtrip(&whole), &whole);
        }

        #[test]
        fn any_double_survives_encoding(vals in prop::collection::vec(any::<f64>(), 1..50)) {
            let p = Page {
                expires: -5,
                readings: vals.iter().enumerate().map(|(i, v)| (i as i64 * 7 - 100, *v)).collect(),
                ..Page::default()
            };
            let back = roundtrip(&p);
            prop_assert_eq!(back.expires, -5);
            for (a, b) in back.readings.iter().zip(&p.readings) {
                prop_assert_eq!(a.0, b.0);
                prop_assert_eq!(a.1.to_bits(), b.1.to_bits());
            }
        }
    }

    #[test]
    fn first_and_last_break_ties_by_write_order() {
        let mut a = Bucket::of(10, 1.0);
        a.combine(&Bucket::of(10, 2.0));
        assert_eq!((a.first, a.last), (1.0, 2.0));
        a.combine(&Bucket::of(5, 3.0));
        assert_eq!((a.first_ts, a.first, a.last), (5, 3.0, 2.0));
        assert_eq!((a.count, a.min, a.max, a.mean()), (3, 1.0, 3.0, 2.0));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            &[1, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[1, 0, 0, 0, 0, 0, 0, 0, 0, b'B', 3, 0xff][..],
        ] {
            assert!(Page::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pages_are_aligned_to_their_span() {
        assert_eq!(page_start(-1, 1000), -64_000);
        assert_eq!(page_start(64_000, 1000), 64_000);
        assert_eq!(page_start(59_999, 0), 0);
        assert_eq!(expiry(0, 1000, 10), 64_010);
    }
}
