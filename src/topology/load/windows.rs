//! `windows:`: tumbling and sliding windows over sensors of asset types.

use marked_yaml::Node;

use super::names::{is_identifier, Naming};
use super::{hint, Cx};
use crate::topology::spec::*;

/// Window names appear in rule expressions: identifiers, one per window.
const WINDOW: Naming = Naming {
    valid: is_identifier,
    bad: |what, _| format!("{what}: name must be an identifier (letters, digits, `_`)"),
    duplicate: |_, name, line| format!("duplicate window name `{name}` (first declared at line {line})"),
    ..Naming::ANY
};

impl<'t> Cx<'t> {
    pub(super) fn windows(&mut self, node: &Node, types: &[AssetType]) -> Vec<WindowSpec> {
        let mut out: Vec<WindowSpec> = Vec::new();
        for entry in self.named_entries(node, "windows") {
            const FIELDS: &[&str] = &["name", "type", "size", "slide", "sensors", "asset_types"];
            let Some((name, f)) = self.named_item(entry, "window", FIELDS, &WINDOW, &out) else {
                continue;
            };
            let what = f.what().to_string();
            let kind = f.choice("type", &["tumbling", "sliding"], false, &mut self.diags);
            let size = f.duration("size", true, &mut self.diags);
            let slide = f.duration("slide", false, &mut self.diags);
            let sliding = kind.as_ref().is_some_and(|k| k.value == "sliding");
            let (Some(size), true) = (size, kind.is_some() || f.get("type").is_none()) else {
                continue;
            };
            if size.value.is_zero() || size.value.subsec_nanos() % 1_000_000 != 0 {
                self.err(
                    size.pos,
                    format!("{what}.size: must be a positive whole number of milliseconds"),
                );
            }
            let slide = match (sliding, slide) {
                (false, None) => size.value,
                (false, Some(s)) => {
                    self.err(s.pos, format!("{what}.slide: only sliding windows have a slide"));
                    size.value
                }
                (true, None) => {
                    self.err(f.pos(), format!("{what}: a sliding window needs `slide`"));
                    size.value
                }
                (true, Some(s)) => {
                    if s.value.is_zero() || s.value > size.value || s.value.subsec_nanos() % 1_000_000 != 0 {
                        self.err(
                            s.pos,
                            format!("{what}.slide: must be whole milliseconds, above zero and at most the size"),
                        );
                    }
                    s.value
                }
            };
            let selected = self.type_selector(&f, types);
            let sensor_names = f.str_list("sensors", &mut self.diags);
            let mut coverage = Vec::new();
            for t in selected {
                let idx: Vec<usize> = match &sensor_names {
                    None => (0..types[t].sensors.len()).collect(),
                    Some(names) => names
                        .iter()
                        .filter_map(|n| match types[t].sensor_index(&n.value) {
                            Some(i) => Some(i),
                            None => {
                                let hint = hint(&n.value, types[t].sensors.iter().map(|s| s.name.as_str()));
                                self.err(
                                    n.pos,
                                    format!(
                                        "{what}: unknown sensor `{}` for asset type `{}`{hint}",
                                        n.value, types[t].name
                                    ),
                                );
                                None
                            }
                        })
                        .collect(),
                };
                coverage.push((t, idx));
            }
            out.push(WindowSpec {
                name: name.value,
                pos: name.pos,
                size: size.value,
                slide,
                coverage,
            });
        }
        out
    }
}
