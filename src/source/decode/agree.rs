//! The record scanner checked against `serde_json` on one record: on every
//! record the scanner reads, both must read the same fields; a record it
//! declines is `serde_json`'s to decide. Shared by the property tests and
//! the `scanner` fuzz target.

use serde::de::DeserializeSeed;

use super::fields::{Extract, FieldTree, RawTs, Target};
use super::{scan, seed::TreeSeed};
use crate::topology::FieldPath;

/// The mapping both readers walk: flat and nested fields.
pub(super) fn tree() -> FieldTree {
    let mut tree = FieldTree::default();
    for (path, target) in [
        ("asset", Target::Asset),
        ("ts", Target::Ts),
        ("sensor", Target::Sensor),
        ("value", Target::Value),
        ("meta.contract", Target::Contract),
        ("payload.temp", Target::Wide(0)),
        ("payload.deep.rpm", Target::Wide(1)),
    ] {
        tree.insert(&FieldPath::parse(path).expect("a valid path"), target);
    }
    tree
}

/// What the `serde_json` path reads from `text` (`None`: an error).
pub(super) fn by_serde<'de>(text: &'de str, tree: &FieldTree) -> Option<Extract<'de>> {
    let mut out = Extract::default();
    let mut de = serde_json::Deserializer::from_str(text);
    TreeSeed { tree, out: &mut out }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .ok()?;
    Some(out)
}

pub(super) fn by_scan<'de>(text: &'de str, tree: &FieldTree) -> Option<Extract<'de>> {
    let mut out = Extract::default();
    scan::record(text, tree, &mut out)?;
    Some(out)
}

/// A reading as comparable text (floats by their bits: `-0.0` and NaN
/// payloads must agree too).
pub(super) fn show(ex: &Extract<'_>) -> String {
    let ts = match &ex.ts {
        Some(RawTs::Float(f)) => format!("F{:x}", f.to_bits()),
        other => format!("{other:?}"),
    };
    let wide: Vec<_> = ex.wide.iter().map(|(i, v)| (i, v.to_bits())).collect();
    format!(
        "{:?} {:?} {:?} {ts} {:?} {wide:?}",
        ex.contract,
        ex.asset,
        ex.sensor,
        ex.value.map(f64::to_bits)
    )
}

/// Whether the scanner read `text` itself (`Ok(false)`: it left it to
/// `serde_json`); `Err` says how the two disagree.
pub fn scanner_agrees(text: &str) -> Result<bool, String> {
    let tree = tree();
    let Some(fast) = by_scan(text, &tree) else {
        return Ok(false);
    };
    match by_serde(text, &tree) {
        None => Err(format!("the scanner read a record serde_json refuses: {text}")),
        Some(slow) if show(&fast) != show(&slow) => Err(format!(
            "on {text}: the scanner read {}, serde_json {}",
            show(&fast),
            show(&slow)
        )),
        Some(_) => Ok(true),
    }
}
