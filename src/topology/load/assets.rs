//! `assets:`: asset ids and patterns, their types and relations.

use std::collections::HashMap;

use marked_yaml::Node;

use super::names::{is_name, Naming};
use super::{hint, Cx};
use crate::topology::diag::Pos;
use crate::topology::spec::*;
use crate::topology::yaml::{pos, scalar_str, Fields};

/// Asset ids: printable (`*` and `?` make a pattern), one per asset.
const ASSET: Naming = Naming {
    valid: |id| is_name(&id.replace(['*', '?'], "x")),
    bad: |_, id| format!("asset id `{id}`: use letters, digits and `-_.:/` (and `*`, `?` in patterns)"),
    duplicate: |_, id, line| format!("duplicate asset id `{id}` (first declared at line {line})"),
    ..Naming::ANY
};

impl<'t> Cx<'t> {
    pub(super) fn assets(&mut self, node: &Node, types: &[AssetType]) -> Vec<AssetEntry> {
        let Some(seq) = node.as_sequence() else {
            self.err(pos(node), "assets: expected a list of `{id: ..., type: ...}`");
            return Vec::new();
        };
        let mut out: Vec<AssetEntry> = Vec::new();
        let mut seen: HashMap<String, Pos> = HashMap::new();
        let mut pending = Vec::new();
        for item in seq.iter() {
            const FIELDS: &[&str] = &["id", "type", "relations"];
            let Some(f) = Fields::new(item, "asset", FIELDS, &mut self.diags) else {
                continue;
            };
            let id = f.str("id", true, &mut self.diags);
            let ty = f.str("type", true, &mut self.diags);
            let (Some(id), Some(ty)) = (id, ty) else { continue };
            self.check_name(&id, "asset", &ASSET, Some(&seen));
            seen.entry(id.value.clone()).or_insert(id.pos);
            let Some(t) = types.iter().position(|t| t.name == ty.value) else {
                let hint = hint(&ty.value, types.iter().map(|t| t.name.as_str()));
                self.err(
                    ty.pos,
                    format!("asset `{}`: unknown asset type `{}`{hint}", id.value, ty.value),
                );
                continue;
            };
            if let Some(rel) = f.get("relations") {
                pending.push((out.len(), rel));
            }
            out.push(AssetEntry {
                id: AssetPattern::parse(&id.value),
                pos: id.pos,
                asset_type: t,
                relations: Vec::new(),
            });
        }
        for (idx, rel) in pending {
            let (ty, id) = (out[idx].asset_type, out[idx].id.text().to_string());
            let what = format!("asset `{id}`.relations");
            let Some(map) = rel.as_mapping() else {
                self.err(pos(rel), format!("{what}: expected a mapping like `feeds: tank-7`"));
                continue;
            };
            for (k, v) in map.iter() {
                let rname = k.as_str();
                let Some(r) = types[ty].relations.iter().position(|r| r.name == rname) else {
                    let hint = hint(rname, types[ty].relations.iter().map(|r| r.name.as_str()));
                    self.err(
                        Pos::of(k.span()),
                        format!(
                            "{what}: asset type `{}` declares no relation `{rname}`{hint}",
                            types[ty].name
                        ),
                    );
                    continue;
                };
                let Some(target) = scalar_str(v, &format!("{what}.{rname}"), &mut self.diags) else {
                    continue;
                };
                let want = types[ty].relations[r].target_type;
                match resolve_asset(&out, &target.value) {
                    Some(e) if out[e].asset_type == want => out[idx].relations.push((r, target.value)),
                    // (A type with errors of its own may be missing from
                    // `types`: the file is refused either way.)
                    Some(e) => {
                        let name = |t: usize| types.get(t).map_or("?", |t| t.name.as_str());
                        self.err(
                            target.pos,
                            format!(
                                "{what}.{rname}: `{}` is a `{}`, but `{rname}` relates to a `{}`",
                                target.value,
                                name(out[e].asset_type),
                                name(want)
                            ),
                        )
                    }
                    None => self.err(target.pos, format!("{what}.{rname}: unknown asset `{}`", target.value)),
                }
            }
        }
        out
    }
}

/// Index of the asset entry that `id` resolves to: an exact id first, then
/// the first matching pattern in declaration order.
pub fn resolve_asset(entries: &[AssetEntry], id: &str) -> Option<usize> {
    entries
        .iter()
        .position(|e| matches!(&e.id, AssetPattern::Exact(x) if x == id))
        .or_else(|| {
            entries
                .iter()
                .position(|e| matches!(e.id, AssetPattern::Glob(_)) && e.id.matches(id))
        })
}
