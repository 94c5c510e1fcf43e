//! Names of items: every section that names its items (windows, joins,
//! rules, sources, sinks, asset types, sensors and their sources, relations,
//! commands, model states, assets) checks each name through
//! [`Cx::check_name`], by the [`Naming`] it declares next to its code; the
//! sections written as a list or a mapping of named items read each one with
//! [`Cx::named_item`].
//!
//! A name is checked when its item is read, so its problems are reported in
//! the same order as the item's other problems, and a duplicate is one of an
//! item the section kept (an item dropped for an earlier error takes no
//! name).

use std::collections::HashMap;

use marked_yaml::Node;

use super::Cx;
use crate::topology::diag::Pos;
use crate::topology::spec::*;
use crate::topology::yaml::{entries, Entries, Fields, Spanned};

/// Sensor, window and relation names appear in rule expressions, so they must
/// be identifiers.
pub(super) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Names of assets, rules, sources and sinks: printable, no spaces or globs.
pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
}

/// How a section checks the names of its items, and what it says of a bad
/// one: each section keeps its own words (`twinstream check` prints them, and
/// tests compare them).
pub(super) struct Naming {
    /// Whether a name is valid ([`is_identifier`], [`is_name`], ...).
    pub(super) valid: fn(&str) -> bool,
    /// The message for an invalid name; `at` is where the name is: the item
    /// (``window `w-1` ``), or the mapping whose key it is.
    pub(super) bad: fn(at: &str, name: &str) -> String,
    /// The message for a name the section keeps for something else, when
    /// `name` is one.
    pub(super) reserved: fn(at: &str, name: &str) -> Option<String>,
    /// The message for a name an earlier item has, first declared on line
    /// `first`.
    pub(super) duplicate: fn(at: &str, name: &str, first: usize) -> String,
}

impl Naming {
    /// Any name, none reserved: a section's `Naming` sets what it checks
    /// over this (`..Naming::ANY`). The messages it leaves are never used.
    pub(super) const ANY: Naming = Naming {
        valid: |_| true,
        bad: |_, _| String::new(),
        reserved: |_, _| None,
        duplicate: |_, _, _| String::new(),
    };
}

/// The names a section has given to the items it kept so far.
pub(super) trait Taken {
    /// Where the first item named `name` was declared, if there is one.
    fn first(&self, name: &str) -> Option<Pos>;
}

/// The items a section kept, each with its `name` and `pos`.
macro_rules! taken_by_name {
    ($($spec:ty),*) => {$(
        impl Taken for Vec<$spec> {
            fn first(&self, name: &str) -> Option<Pos> {
                self.iter().find(|x| x.name == name).map(|x| x.pos)
            }
        }
    )*};
}

taken_by_name!(WindowSpec, JoinSpec, RuleSpec, SourceSpec, SinkSpec, SensorSource);

/// Names seen so far, with where each was first declared (asset ids: an
/// asset counts even when it is dropped for an unknown type).
impl Taken for HashMap<String, Pos> {
    fn first(&self, name: &str) -> Option<Pos> {
        self.get(name).copied()
    }
}

impl<'t> Cx<'t> {
    /// Checks the name an item is given by its section's `naming`: an invalid
    /// name, a reserved one, then one an `earlier` item has, each reported at
    /// the name. `at` is the item, or the mapping whose key the name is;
    /// `earlier` is `None` where a name cannot repeat (the keys of one
    /// mapping: the parser reports a repeated key) or is not checked for it.
    pub(super) fn check_name(
        &mut self,
        name: &Spanned<String>,
        at: &str,
        naming: &Naming,
        earlier: Option<&dyn Taken>,
    ) {
        if !(naming.valid)(&name.value) {
            self.err(name.pos, (naming.bad)(at, &name.value));
        }
        if let Some(msg) = (naming.reserved)(at, &name.value) {
            self.err(name.pos, msg);
        }
        if let Some(first) = earlier.and_then(|e| e.first(&name.value)) {
            self.err(name.pos, (naming.duplicate)(at, &name.value, first.line));
        }
    }

    /// The entries of a section written as a list of items with a `name`
    /// field, or as a mapping of name to item.
    pub(super) fn named_entries<'n>(&mut self, node: &'n Node, what: &str) -> Vec<(Option<Spanned<String>>, &'n Node)> {
        match entries(node, what, &mut self.diags) {
            Some(Entries::Map(items)) => items.into_iter().map(|(k, v)| (Some(k), v)).collect(),
            Some(Entries::List(items)) => items.into_iter().map(|v| (None, v)).collect(),
            None => Vec::new(),
        }
    }

    /// One of the [`Self::named_entries`], read as a mapping of `fields`
    /// (a `kind`, like `window`, until it has a name): its name is its key,
    /// or else its `name` field, checked by `naming` against the items the
    /// section kept (`earlier`). `None` when it has neither fields nor a name.
    pub(super) fn named_item<'n>(
        &mut self,
        (key, item): (Option<Spanned<String>>, &'n Node),
        kind: &str,
        fields: &'static [&'static str],
        naming: &Naming,
        earlier: &dyn Taken,
    ) -> Option<(Spanned<String>, Fields<'n>)> {
        let mut f = Fields::new(item, kind, fields, &mut self.diags)?;
        let name = key.or_else(|| f.str("name", true, &mut self.diags))?;
        // Later errors about its fields name the item.
        f.rename(&format!("{kind} `{}`", name.value));
        self.check_name(&name, f.what(), naming, Some(earlier));
        Some((name, f))
    }
}
