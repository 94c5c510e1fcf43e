//! The mapped fields of a decode mapping: the tree of field paths both
//! readers (the scanner and the `serde_json` seeds) walk, matching a key
//! against a field name, and the per-record [`Extract`] they fill.

use std::borrow::Cow;

use crate::topology::FieldPath;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Contract,
    Asset,
    Sensor,
    Ts,
    Value,
    /// Wide records: the i-th entry of `DecodeSpec::values`.
    Wide(u16),
}

/// A field name with its first 8 bytes as an integer, so matching a JSON key
/// is one length and one integer compare in the common case.
#[derive(Debug)]
struct FieldName {
    name: Box<str>,
    head: u64,
}

/// `a == b` for the short names records carry (asset and sensor ids, field
/// names): up to 16 bytes with two overlapping word loads each, no call to
/// `memcmp` (which was 12% of replay CPU, most of it call overhead).
#[inline]
pub(crate) fn short_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

#[inline]
fn head_of(b: &[u8]) -> u64 {
    if b.len() >= 8 {
        u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
    } else {
        let mut h = 0u64;
        for (i, c) in b.iter().enumerate() {
            h |= u64::from(*c) << (8 * i);
        }
        h
    }
}

impl FieldName {
    fn new(name: &str) -> FieldName {
        FieldName {
            name: name.into(),
            head: head_of(name.as_bytes()),
        }
    }

    #[inline]
    fn matches(&self, key: &str) -> bool {
        let (n, k) = (self.name.as_bytes(), key.as_bytes());
        n.len() == k.len() && self.head == head_of(k) && (n.len() <= 8 || short_eq(&n[8..], &k[8..]))
    }
}

/// The mapped fields as a tree, so nested paths are found in one pass.
#[derive(Debug, Default)]
pub(super) struct FieldTree {
    fields: Vec<(FieldName, Node)>,
}

#[derive(Debug)]
pub(super) enum Node {
    Leaf(Target),
    Tree(FieldTree),
}

impl FieldTree {
    pub(super) fn insert(&mut self, path: &FieldPath, target: Target) {
        let (head, rest) = path.0.split_first().expect("field paths are never empty");
        if rest.is_empty() {
            self.fields.push((FieldName::new(head), Node::Leaf(target)));
            return;
        }
        let idx = match self
            .fields
            .iter()
            .position(|(n, node)| *n.name == **head && matches!(node, Node::Tree(_)))
        {
            Some(i) => i,
            None => {
                self.fields
                    .push((FieldName::new(head), Node::Tree(FieldTree::default())));
                self.fields.len() - 1
            }
        };
        if let Node::Tree(t) = &mut self.fields[idx].1 {
            t.insert(&FieldPath(rest.to_vec()), target);
        }
    }

    /// The node of `key`, scanning from `*from` (the field after the last
    /// match: keys usually arrive in the same order in every record).
    #[inline]
    pub(super) fn get(&self, key: &str, from: &mut usize) -> Option<&Node> {
        let n = self.fields.len();
        for i in 0..n {
            let j = (*from + i) % n;
            if self.fields[j].0.matches(key) {
                *from = j + 1;
                return Some(&self.fields[j].1);
            }
        }
        None
    }
}

/// Reused per-record scratch.
#[derive(Default)]
pub(super) struct Extract<'de> {
    pub(super) contract: Option<Cow<'de, str>>,
    pub(super) asset: Option<Cow<'de, str>>,
    pub(super) sensor: Option<Cow<'de, str>>,
    pub(super) ts: Option<RawTs<'de>>,
    pub(super) value: Option<f64>,
    pub(super) wide: Vec<(u16, f64)>,
}

impl Extract<'_> {
    pub(super) fn reset(&mut self) {
        self.contract = None;
        self.asset = None;
        self.sensor = None;
        self.ts = None;
        self.value = None;
        self.wide.clear();
    }
}

#[derive(Debug, PartialEq)]
pub(super) enum RawTs<'de> {
    Int(i64),
    Float(f64),
    Str(Cow<'de, str>),
}
