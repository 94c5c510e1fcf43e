//! A small typed reader over marked YAML nodes that reports every problem.
//!
//! `serde` stops at the first error; an operator fixing a topology wants all of
//! them at once. These helpers read one field at a time, push a positioned
//! [`Diagnostic`](super::diag::Diagnostic) for anything wrong and return `None`
//! for that field, so validation carries on with the rest of the file.

use std::time::Duration;

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::Node;

use super::diag::{one_of, suggest, Diagnostics, Pos};

/// A string value with the position it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

impl<T> Spanned<T> {
    pub fn new(value: T, pos: Pos) -> Self {
        Spanned { value, pos }
    }
}

pub fn kind_of(node: &Node) -> &'static str {
    match node {
        Node::Scalar(_) => "a scalar",
        Node::Mapping(_) => "a mapping",
        Node::Sequence(_) => "a list",
    }
}

/// Where `node` starts. A block mapping's own span starts at the `:` after
/// its first key, so a mapping is placed at its first key when that is earlier
/// (a flow mapping's `{` comes before its first key and is kept).
pub fn pos(node: &Node) -> Pos {
    match node {
        Node::Mapping(map) => mapping_pos(map),
        _ => Pos::of(node.span()),
    }
}

fn mapping_pos(map: &MarkedMappingNode) -> Pos {
    let own = Pos::of(map.span());
    match map.keys().next() {
        Some(first) => own.min(Pos::of(first.span())),
        None => own,
    }
}

/// A mapping whose keys are checked against a fixed set of field names.
pub struct Fields<'a> {
    map: &'a MarkedMappingNode,
    what: String,
    known: &'static [&'static str],
}

impl<'a> Fields<'a> {
    /// Reads `node` as a mapping with the `known` fields. Reports (once) when it
    /// is not a mapping, and every key that is not one of `known`.
    pub fn new(
        node: &'a Node,
        what: &str,
        known: &'static [&'static str],
        diags: &mut Diagnostics,
    ) -> Option<Fields<'a>> {
        let Some(map) = node.as_mapping() else {
            diags.error(
                pos(node),
                format!("{what}: expected a mapping, found {}", kind_of(node)),
            );
            return None;
        };
        for key in map.keys() {
            let name = key.as_str();
            if !known.contains(&name) {
                let hint = match suggest(name, known.iter().copied()) {
                    Some(s) => format!(" (did you mean `{s}`?)"),
                    None => format!("; expected one of {}", one_of(known)),
                };
                diags.error(Pos::of(key.span()), format!("{what}: unknown field `{name}`{hint}"));
            }
        }
        Some(Fields {
            map,
            what: what.to_string(),
            known,
        })
    }

    /// Names the mapping in later messages (`rule` -> ``rule `hot` ``), once
    /// its name is known.
    pub fn rename(&mut self, what: &str) {
        self.what = what.to_string();
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    pub fn pos(&self) -> Pos {
        mapping_pos(self.map)
    }

    pub fn get(&self, field: &str) -> Option<&'a Node> {
        debug_assert!(self.known.contains(&field), "field {field} not declared");
        self.map.get_node(field)
    }

    /// Reports a missing required field at the mapping's position.
    pub fn require(&self, field: &str, diags: &mut Diagnostics) -> Option<&'a Node> {
        let node = self.get(field);
        if node.is_none() {
            diags.error(self.pos(), format!("{}: missing required field `{field}`", self.what));
        }
        node
    }

    pub fn str(&self, field: &str, required: bool, diags: &mut Diagnostics) -> Option<Spanned<String>> {
        let node = if required {
            self.require(field, diags)?
        } else {
            self.get(field)?
        };
        scalar_str(node, &format!("{}.{field}", self.what), diags)
    }

    pub fn duration(&self, field: &str, required: bool, diags: &mut Diagnostics) -> Option<Spanned<Duration>> {
        let s = self.str(field, required, diags)?;
        match parse_duration(&s.value) {
            Ok(d) => Some(Spanned::new(d, s.pos)),
            Err(msg) => {
                diags.error(s.pos, format!("{}.{field}: {msg}", self.what));
                None
            }
        }
    }

    pub fn f64(&self, field: &str, required: bool, diags: &mut Diagnostics) -> Option<Spanned<f64>> {
        let s = self.str(field, required, diags)?;
        number(&s, &format!("{}.{field}", self.what), diags)
    }

    pub fn u64(&self, field: &str, required: bool, diags: &mut Diagnostics) -> Option<Spanned<u64>> {
        let s = self.str(field, required, diags)?;
        match s.value.replace('_', "").parse::<u64>() {
            Ok(v) => Some(Spanned::new(v, s.pos)),
            Err(_) => {
                diags.error(
                    s.pos,
                    format!(
                        "{}.{field}: expected a non-negative integer, found `{}`",
                        self.what, s.value
                    ),
                );
                None
            }
        }
    }

    /// A size in bytes: `268435456`, `256MiB`, `1 GiB`, `512kB`.
    pub fn bytes(&self, field: &str, required: bool, diags: &mut Diagnostics) -> Option<Spanned<u64>> {
        let s = self.str(field, required, diags)?;
        match parse_bytes(&s.value) {
            Ok(b) => Some(Spanned::new(b, s.pos)),
            Err(msg) => {
                diags.error(s.pos, format!("{}.{field}: {msg}", self.what));
                None
            }
        }
    }

    pub fn bool(&self, field: &str, diags: &mut Diagnostics) -> Option<Spanned<bool>> {
        let s = self.str(field, false, diags)?;
        match s.value.as_str() {
            "true" => Some(Spanned::new(true, s.pos)),
            "false" => Some(Spanned::new(false, s.pos)),
            other => {
                diags.error(
                    s.pos,
                    format!("{}.{field}: expected `true` or `false`, found `{other}`", self.what),
                );
                None
            }
        }
    }

    /// A scalar that must be one of `choices`.
    pub fn choice(
        &self,
        field: &str,
        choices: &[&str],
        required: bool,
        diags: &mut Diagnostics,
    ) -> Option<Spanned<String>> {
        let s = self.str(field, required, diags)?;
        if choices.contains(&s.value.as_str()) {
            Some(s)
        } else {
            diags.error(
                s.pos,
                format!(
                    "{}.{field}: expected {}, found `{}`",
                    self.what,
                    one_of(choices),
                    s.value
                ),
            );
            None
        }
    }

    /// A list of scalars; a single scalar is accepted as a list of one.
    pub fn str_list(&self, field: &str, diags: &mut Diagnostics) -> Option<Vec<Spanned<String>>> {
        let node = self.get(field)?;
        let what = format!("{}.{field}", self.what);
        match node {
            Node::Scalar(s) => Some(vec![spanned_scalar(s)]),
            Node::Sequence(seq) => Some(seq.iter().filter_map(|item| scalar_str(item, &what, diags)).collect()),
            Node::Mapping(_) => {
                diags.error(pos(node), format!("{what}: expected a list, found a mapping"));
                None
            }
        }
    }
}

pub fn spanned_scalar(s: &MarkedScalarNode) -> Spanned<String> {
    Spanned::new(s.as_str().to_string(), Pos::of(s.span()))
}

pub fn scalar_str(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<Spanned<String>> {
    match node.as_scalar() {
        Some(s) => Some(spanned_scalar(s)),
        None => {
            diags.error(pos(node), format!("{what}: expected a scalar, found {}", kind_of(node)));
            None
        }
    }
}

pub fn number(s: &Spanned<String>, what: &str, diags: &mut Diagnostics) -> Option<Spanned<f64>> {
    match s.value.replace('_', "").parse::<f64>() {
        Ok(v) if v.is_finite() => Some(Spanned::new(v, s.pos)),
        _ => {
            diags.error(s.pos, format!("{what}: expected a number, found `{}`", s.value));
            None
        }
    }
}

/// The items of a list field, or the entries of a mapping field as
/// `(name, value)` pairs: both shapes are accepted for named collections.
pub enum Entries<'a> {
    List(Vec<&'a Node>),
    Map(Vec<(Spanned<String>, &'a Node)>),
}

pub fn entries<'a>(node: &'a Node, what: &str, diags: &mut Diagnostics) -> Option<Entries<'a>> {
    match node {
        Node::Sequence(seq) => Some(Entries::List(seq.iter().collect())),
        Node::Mapping(map) => Some(Entries::Map(map.iter().map(|(k, v)| (spanned_scalar(k), v)).collect())),
        Node::Scalar(s) if s.as_str().is_empty() => Some(Entries::List(Vec::new())),
        Node::Scalar(_) => {
            diags.error(
                pos(node),
                format!("{what}: expected a list or a mapping, found a scalar"),
            );
            None
        }
    }
}

/// Parses a duration such as `200ms`, `10s`, `5m`, `1h` or `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("expected a duration like `200ms`, `10s` or `5m`, found an empty value".into());
    }
    if text.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "expected a duration with a unit, like `{text}ms` or `{text}s`, found `{text}`"
        ));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("expected a duration like `200ms`, `10s` or `5m`, found `{text}` ({e})"))
}

/// Parses a size such as `268435456`, `256MiB`, `1 GiB` or `512kB`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    text.replace('_', "")
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("expected a size like `256MiB`, `1GiB` or a number of bytes, found `{text}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_or_without_units() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("2kB"), Ok(2000));
        assert!(parse_bytes("lots").unwrap_err().contains("`256MiB`"));
        assert!(parse_bytes("").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn durations_without_unit_are_rejected_with_a_hint() {
        let err = parse_duration("200").unwrap_err();
        assert!(err.contains("`200ms`"), "{err}");
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("").is_err());
    }
}
