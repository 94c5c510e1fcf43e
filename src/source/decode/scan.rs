//! The fast path of record decoding: a single-pass scanner for the JSON
//! records sources actually send, with `serde_json` as the fallback.
//!
//! It reads a record into the same [`Extract`] the `serde_json` path
//! ([`super::seed::TreeSeed`]) fills, and gives up (returns `None`) on anything it
//! does not read exactly as `serde_json` would: a string with an escape or a
//! control character, a number out of the `f64` range, nesting deeper than
//! [`MAX_DEPTH`], or any syntax error. The caller then decodes the record
//! with `serde_json`, which also words the error of a malformed one. So the
//! fast path changes no result, only the time: the differential tests in
//! `decode/tests.rs` hold it to that on generated records, valid and not.
//!
//! Numbers follow `serde_json` (with its `float_roundtrip` feature, so both
//! round floats correctly): an integer is a `u64` when non-negative, an
//! `i64` when negative, `-0` and integers beyond 64 bits are floats;
//! anything with a fraction or an exponent is a float (Rust's `f64` parser,
//! correctly rounded; a result that is not finite falls back).
//!
//! Why not a general JSON crate: `cargo bench --bench decode` measures
//! `serde_json`, `sonic-rs` and `simd-json` on the same lines (figures in
//! BENCHMARKS.md); the record is small and flat, the mapping wants four
//! fields, and what costs is the per-record machinery around them.

use std::borrow::Cow;

use super::fields::{Extract, FieldTree, Node, RawTs, Target};

/// Objects and arrays nested deeper than this are left to `serde_json`
/// (whose own limit is 128).
const MAX_DEPTH: u32 = 64;

/// The powers of ten an `f64` holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// A JSON number as `serde_json` hands it to a visitor.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::U64(v) => v as f64,
            Num::I64(v) => v as f64,
            Num::F64(v) => v,
        }
    }
}

struct Scan<'de> {
    text: &'de str,
    b: &'de [u8],
    i: usize,
}

/// Reads `text` into `out` with the mapped fields of `tree`; `None`: the
/// record must go through `serde_json` (`out` is then partly filled and must
/// be reset).
pub(super) fn record<'de>(text: &'de str, tree: &FieldTree, out: &mut Extract<'de>) -> Option<()> {
    let mut s = Scan {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    s.ws();
    s.object(tree, out, 0)?;
    s.ws();
    (s.i == s.b.len()).then_some(())
}

impl<'de> Scan<'de> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// A string without escapes or control characters, at its opening quote.
    #[inline(always)]
    fn string(&mut self) -> Option<&'de str> {
        self.eat(b'"')?;
        let start = self.i;
        let rest = &self.b[start..];
        // Ids and field names are short: a byte loop beats a SIMD search's
        // set-up for them; longer strings get the search.
        let mut len = 0;
        loop {
            match rest.get(len) {
                Some(b'"') => break,
                Some(b'\\') | None => return None,
                Some(c) if *c < 0x20 => return None,
                Some(_) if len == 32 => {
                    len += memchr::memchr2(b'"', b'\\', &rest[len..])?;
                    if rest[len] != b'"' || rest[32..len].iter().any(|c| *c < 0x20) {
                        return None;
                    }
                    break;
                }
                Some(_) => len += 1,
            }
        }
        self.i = start + len + 1;
        // The quote is ASCII: the slice ends on a character boundary.
        Some(&self.text[start..start + len])
    }

    /// A number in JSON's grammar, read as `serde_json` reads it.
    fn number(&mut self) -> Option<Num> {
        let start = self.i;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let mut significand: u64 = 0;
        let mut overflow = false;
        match self.peek()? {
            b'0' => {
                self.i += 1;
                // One leading zero only.
                if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return None;
                }
            }
            b'1'..=b'9' => {
                while let Some(c @ b'0'..=b'9') = self.peek() {
                    match significand
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(c - b'0')))
                    {
                        Some(v) => significand = v,
                        None => overflow = true,
                    }
                    self.i += 1;
                }
            }
            _ => return None,
        }
        let mut float = false;
        // Clinger's fast path: a fraction of at most 22 digits whose digits,
        // all of them, fit in 53 bits is exactly `digits / 10^n`, and one
        // IEEE division rounds correctly - what the exact parser would
        // return, without it.
        let mut fraction: Option<(u64, usize)> = None;
        if self.peek() == Some(b'.') {
            self.i += 1;
            let from = self.i;
            self.digits()?;
            float = true;
            let n = self.i - from;
            if !overflow && n <= 22 {
                let mut m = significand;
                let mut exact = true;
                for c in &self.b[from..self.i] {
                    match m.checked_mul(10).and_then(|v| v.checked_add(u64::from(c - b'0'))) {
                        Some(v) if v <= 1 << 53 => m = v,
                        _ => {
                            exact = false;
                            break;
                        }
                    }
                }
                if exact {
                    fraction = Some((m, n));
                }
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            fraction = None;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.digits()?;
            float = true;
        }
        if let Some((m, n)) = fraction {
            let v = m as f64 / POW10[n];
            return Some(Num::F64(if negative { -v } else { v }));
        }
        // serde_json reads an integer beyond 64 bits as a float too.
        if float || overflow {
            let v: f64 = self.text[start..self.i].parse().ok()?;
            return v.is_finite().then_some(Num::F64(v));
        }
        if !negative {
            return Some(Num::U64(significand));
        }
        let neg = (significand as i64).wrapping_neg();
        // serde_json: a float on `-0` and below `i64::MIN`.
        Some(if neg >= 0 {
            Num::F64(-(significand as f64))
        } else {
            Num::I64(neg)
        })
    }

    /// One or more decimal digits.
    #[inline]
    fn digits(&mut self) -> Option<()> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        (self.i > start).then_some(())
    }

    /// A literal (`true`, `false`, `null`).
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// Any value, read and dropped (`IgnoredAny`).
    fn skip(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'-' | b'0'..=b'9' => self.number().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'[' => self.array(depth + 1),
            b'{' => self.object(&FieldTree::default(), &mut Extract::default(), depth + 1),
            _ => None,
        }
    }

    fn array(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'[')?;
        self.ws();
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            self.skip(depth)?;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An object, at its `{`: mapped fields into `out`, the rest skipped.
    fn object(&mut self, tree: &FieldTree, out: &mut Extract<'de>, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        let mut from = 0;
        loop {
            let key = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            match tree.get(key, &mut from) {
                None => self.skip(depth)?,
                // A mapped path through a value that is not an object: ignored
                // (the fields below it count as missing), as `NestedSeed` does.
                Some(Node::Tree(sub)) if self.peek() == Some(b'{') => self.object(sub, out, depth + 1)?,
                Some(Node::Tree(_)) => self.skip(depth)?,
                Some(Node::Leaf(target)) => self.leaf(*target, out)?,
            }
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The value of a mapped field.
    fn leaf(&mut self, target: Target, out: &mut Extract<'de>) -> Option<()> {
        match target {
            Target::Asset => out.asset = Some(self.name()?),
            Target::Contract => out.contract = Some(self.name()?),
            Target::Sensor => out.sensor = Some(self.name()?),
            Target::Ts => {
                out.ts = Some(match self.peek()? {
                    b'"' => RawTs::Str(Cow::Borrowed(self.string()?)),
                    _ => match self.number()? {
                        Num::U64(v) => RawTs::Int(i64::try_from(v).ok()?),
                        Num::I64(v) => RawTs::Int(v),
                        Num::F64(v) => RawTs::Float(v),
                    },
                })
            }
            Target::Value => out.value = self.optional_number()?,
            Target::Wide(i) => {
                if let Some(v) = self.optional_number()? {
                    out.wide.push((i, v));
                }
            }
        }
        Some(())
    }

    /// An asset, sensor or contract name: a string, or an integer rendered
    /// as text.
    fn name(&mut self) -> Option<Cow<'de, str>> {
        match self.peek()? {
            b'"' => self.string().map(Cow::Borrowed),
            _ => match self.number()? {
                Num::U64(v) => Some(Cow::Owned(v.to_string())),
                Num::I64(v) => Some(Cow::Owned(v.to_string())),
                Num::F64(_) => None,
            },
        }
    }

    /// `null` or a number (`Option<f64>`).
    fn optional_number(&mut self) -> Option<Option<f64>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        self.number().map(|n| Some(n.as_f64()))
    }
}
