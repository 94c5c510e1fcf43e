//! Derived sensors: `expr:`, `integral:` and `rate:` under a sensor of an
//! asset type. Read with the sensor's other fields; resolved once the type's
//! sensors and model are known ([`Cx::link_derived`]).

use std::time::Duration;

use super::{hint, Cx};
use crate::topology::diag::Pos;
use crate::topology::expr::{compile_number, Resolver, Unresolved};
use crate::topology::spec::*;
use crate::topology::yaml::{Fields, Spanned};

/// Fields a derived sensor does not take: a source reports none of it.
const NOT_DERIVED: &[&str] = &[
    "range",
    "expected_every",
    "stale_after",
    "noise",
    "sources",
    "resolve",
    "tolerance",
    "clear_tolerance",
];

/// A derivation as written, resolved by [`Cx::link_derived`].
pub(super) enum Pending {
    Expr(Spanned<String>),
    Integral(Spanned<String>, Duration),
    Rate(Spanned<String>),
}

impl Cx<'_> {
    /// A sensor's `expr`, `integral` (with `per`) or `rate`, if it has one.
    pub(super) fn derivation(&mut self, f: &Fields<'_>, swhat: &str) -> Option<Pending> {
        let d = &mut self.diags;
        let expr = f.str("expr", false, d);
        let integral = f.str("integral", false, d);
        let rate = f.str("rate", false, d);
        let per = f.duration("per", false, d);
        let given: Vec<Pos> = [&expr, &integral, &rate].into_iter().flatten().map(|s| s.pos).collect();
        if given.len() > 1 {
            d.error(
                given[1],
                format!("{swhat}: a derived sensor has one of `expr`, `integral` or `rate`"),
            );
        }
        if let (Some(p), None) = (&per, &integral) {
            d.error(p.pos, format!("{swhat}.per: only an `integral` has a time unit"));
        }
        if given.is_empty() {
            return None;
        }
        for k in NOT_DERIVED {
            if let Some(node) = f.get(k) {
                d.error(
                    crate::topology::yaml::pos(node),
                    format!("{swhat}: `{k}` does not apply to a derived sensor (no source reports it)"),
                );
            }
        }
        let per = match per {
            Some(p) if p.value.is_zero() => {
                d.error(p.pos, format!("{swhat}.per: must be above zero"));
                Duration::from_secs(1)
            }
            Some(p) => p.value,
            None => Duration::from_secs(1),
        };
        match (expr, integral, rate) {
            (Some(e), _, _) => Some(Pending::Expr(e)),
            (_, Some(i), _) => Some(Pending::Integral(i, per)),
            (_, _, Some(r)) => Some(Pending::Rate(r)),
            _ => None,
        }
    }

    /// Resolves the derivations of asset type `ty` (its sensors and model
    /// read): each reads sensors declared before it, so derived sensors
    /// never form a cycle.
    pub(super) fn link_derived(&mut self, ty: &mut AssetType, pending: Vec<(usize, Pending)>, model_rejected: bool) {
        let what = format!("asset type `{}`", ty.name);
        for (i, p) in pending {
            let swhat = format!("sensor `{}`", ty.sensors[i].name);
            let input = |cx: &mut Cx<'_>, name: &Spanned<String>, field: &str| -> Option<usize> {
                match ty.sensor_index(&name.value) {
                    Some(s) if s < i => Some(s),
                    Some(_) => {
                        cx.err(
                            name.pos,
                            format!(
                                "{what}: {swhat}.{field}: `{}` is declared after it; a derived sensor reads sensors declared before it",
                                name.value
                            ),
                        );
                        None
                    }
                    None => {
                        let h = hint(&name.value, ty.sensors.iter().map(|s| s.name.as_str()));
                        cx.err(
                            name.pos,
                            format!("{what}: {swhat}.{field}: no sensor `{}`{h}", name.value),
                        );
                        None
                    }
                }
            };
            let derive = match p {
                Pending::Integral(name, per) => {
                    input(self, &name, "integral").map(|sensor| Derive::Integral { sensor, per })
                }
                Pending::Rate(name) => input(self, &name, "rate").map(|sensor| Derive::Rate { sensor }),
                Pending::Expr(text) => {
                    let resolver = DerivedResolver {
                        ty,
                        before: i,
                        model_rejected,
                    };
                    match compile_number(&text.value, &resolver) {
                        Ok(n) => Some(Derive::Expr(n)),
                        Err(errors) => {
                            let start = self.expression_start(text.pos, &text.value);
                            for e in errors {
                                let (p, suffix) = match start {
                                    Some(s) => (s.shifted(e.offset), String::new()),
                                    None => (text.pos, format!(" (at character {} of the expression)", e.offset + 1)),
                                };
                                self.err(p, format!("{what}: {swhat}.expr: {}{suffix}", e.message));
                            }
                            None
                        }
                    }
                }
            };
            let observed = ty.model.as_ref().filter(|m| m.observe.iter().any(|o| o.sensor == i));
            if let (Some(_), Some(m)) = (&derive, observed) {
                self.err(
                    m.pos,
                    format!(
                        "{what}: the model observes `{}`, a derived sensor; a model observes measured sensors",
                        ty.sensors[i].name
                    ),
                );
            }
            ty.sensors[i].derive = derive;
        }
    }
}

/// What a derived sensor's `expr` may name: sensors declared before it
/// (their values) and the type's model (`est.*`, `residual.*`, `nis`).
struct DerivedResolver<'a> {
    ty: &'a AssetType,
    before: usize,
    model_rejected: bool,
}

impl Resolver for DerivedResolver<'_> {
    type Slot = Slot;

    fn resolve(&self, path: &[&str]) -> Result<Slot, Unresolved> {
        let first = path[0];
        if let Some(s) = self.ty.sensor_index(first) {
            return match path {
                _ if s >= self.before => Err(format!(
                    "`{first}` is declared after this sensor; a derived sensor reads sensors declared before it"
                )
                .into()),
                [_] | [_, "value"] => Ok(Slot::Latest { sensor: s as u16 }),
                _ => Err(Unresolved::at(
                    1,
                    format!("`{}`: a derived sensor reads `{first}` (its value)", path.join(".")),
                )),
            };
        }
        if super::rules::MODEL_NAMES.contains(&first) {
            if self.model_rejected {
                return Ok(Slot::Model(ModelSlot::Nis));
            }
            return super::rules::resolve_model_name(self.ty, path);
        }
        let h = hint(first, self.ty.sensors[..self.before].iter().map(|s| s.name.as_str()));
        Err(format!(
            "unknown name `{first}`{h}: a derived sensor reads the sensors declared before it and the model's `est`, `residual` and `nis`"
        )
        .into())
    }
}
