//! The `serde_json` path of record decoding: a [`DeserializeSeed`] that
//! visits only the mapped fields of a [`FieldTree`] (skipping the rest
//! unparsed) and borrows strings from the input, and the visitors of keys,
//! names and timestamps.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::fields::{Extract, FieldTree, Node, RawTs, Target};

pub(super) struct TreeSeed<'a, 'de> {
    pub(super) tree: &'a FieldTree,
    pub(super) out: &'a mut Extract<'de>,
}

impl<'de> DeserializeSeed<'de> for TreeSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TreeSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut from = 0;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match self.tree.get(&key.0, &mut from) {
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some(Node::Tree(sub)) => map.next_value_seed(NestedSeed(TreeSeed {
                    tree: sub,
                    out: &mut *self.out,
                }))?,
                Some(Node::Leaf(target)) => {
                    let field = |e: &dyn fmt::Display| de::Error::custom(format!("field `{}`: {e}", key.0));
                    match *target {
                        Target::Asset => self.out.asset = Some(map.next_value::<Name<'de>>().map_err(|e| field(&e))?.0),
                        Target::Contract => {
                            self.out.contract = Some(map.next_value::<Name<'de>>().map_err(|e| field(&e))?.0)
                        }
                        Target::Sensor => {
                            self.out.sensor = Some(map.next_value::<Name<'de>>().map_err(|e| field(&e))?.0)
                        }
                        Target::Ts => self.out.ts = Some(map.next_value::<TsValue<'de>>().map_err(|e| field(&e))?.0),
                        Target::Value => self.out.value = map.next_value::<Option<f64>>().map_err(|e| field(&e))?,
                        Target::Wide(i) => {
                            if let Some(v) = map.next_value::<Option<f64>>().map_err(|e| field(&e))? {
                                self.out.wide.push((i, v));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A nested object on a mapped path; anything else there is ignored (the
/// fields below it then count as missing).
struct NestedSeed<'a, 'de>(TreeSeed<'a, 'de>);

impl<'de> DeserializeSeed<'de> for NestedSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NestedSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.0.visit_map(map)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor).map(Key)
    }
}

/// An asset or sensor name: a string, or an integer id rendered as text.
struct Name<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrVisitor).map(Name)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

struct TsValue<'de>(RawTs<'de>);

impl<'de> de::Deserialize<'de> for TsValue<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawTs::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(RawTs::Int)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(RawTs::Float(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RawTs::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawTs::Str(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V).map(TsValue)
    }
}
