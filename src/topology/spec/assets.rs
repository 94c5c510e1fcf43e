//! Assets: exact ids and patterns, and their typed relations.

use crate::topology::diag::Pos;

/// A relation an asset type may have to another asset, e.g. `feeds: tank`.
#[derive(Debug, Clone)]
pub struct RelationSpec {
    pub name: String,
    pub target_type: usize,
}

#[derive(Debug, Clone)]
pub struct AssetEntry {
    pub id: AssetPattern,
    pub pos: Pos,
    pub asset_type: usize,
    /// Relation name (index into the type's relations) -> related asset id.
    pub relations: Vec<(usize, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetPattern {
    Exact(String),
    /// A glob with `*` (any run of characters) and `?` (one character).
    Glob(String),
}

impl AssetPattern {
    pub fn parse(text: &str) -> AssetPattern {
        if text.contains(['*', '?']) {
            AssetPattern::Glob(text.to_string())
        } else {
            AssetPattern::Exact(text.to_string())
        }
    }

    pub fn text(&self) -> &str {
        match self {
            AssetPattern::Exact(s) | AssetPattern::Glob(s) => s,
        }
    }

    pub fn matches(&self, id: &str) -> bool {
        match self {
            AssetPattern::Exact(s) => s == id,
            AssetPattern::Glob(g) => glob_match(g.as_bytes(), id.as_bytes()),
        }
    }
}

/// Iterative glob match with `*` and `?`, linear in practice.
pub fn glob_match(pat: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_shell_patterns() {
        let rows = [
            ("pump-*", "pump-00042", true),
            ("pump-*", "pump-", true),
            ("pump-*", "tank-1", false),
            ("*-7", "tank-7", true),
            ("line-?/motor-*", "line-3/motor-12", true),
            ("line-?/motor-*", "line-33/motor-12", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
        ];
        for (pat, id, want) in rows {
            assert_eq!(AssetPattern::parse(pat).matches(id), want, "{pat} vs {id}");
        }
    }
}
