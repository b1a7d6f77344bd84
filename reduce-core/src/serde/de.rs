//! serde's `Deserializer` over a loaded [`Graph`]: plain data read into any
//! `Deserialize` type, shared objects by value, a cycle an error, and the
//! path inside the value in every error.

use std::fmt::Write as _;

use ::serde::de::{self, DeserializeSeed, Visitor};
use num_bigint::BigInt;

use crate::base::error::{Error, ErrorKind, Result};
use crate::value::Value;

/// One step of the path from the root to the value being read.
#[derive(Clone, Copy)]
enum Seg<'g> {
    Index(usize),
    /// A dict key, shown as Python's `repr`.
    Key(&'g Value),
    /// A struct field or an enum variant, shown as `.name`.
    Field(&'g str),
}

/// What the walk keeps between values.
pub(crate) struct Walk<'g> {
    objects: &'g [Value],
    on_path: Vec<bool>,
    /// Shared objects on the path being read.
    in_ref: usize,
    /// Nodes read inside shared objects, which are read once per use.
    copied: usize,
    max_copied: usize,
    depth: usize,
    max_depth: usize,
    path: Vec<Seg<'g>>,
}

impl<'g> Walk<'g> {
    pub(crate) fn new(objects: &'g [Value], max_copied: usize, max_depth: usize) -> Self {
        Walk {
            objects,
            on_path: vec![false; objects.len()],
            in_ref: 0,
            copied: 0,
            max_copied,
            depth: 0,
            max_depth,
            path: Vec::new(),
        }
    }

    /// `v`, or the shared object it refers to.
    fn get(&self, v: &'g Value) -> &'g Value {
        match v {
            Value::Ref(id) => self.objects.get(id.index()).unwrap_or(v),
            _ => v,
        }
    }

    fn path(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Seg::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
                Seg::Key(k) => {
                    let _ = write!(out, "[{:?}]", self.get(k));
                }
                Seg::Field(f) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(f);
                }
            }
        }
        out
    }

    /// Reads one child at `seg`, guarding the depth; an error gets the path
    /// of the innermost value that failed.
    fn child<T>(&mut self, seg: Seg<'g>, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.depth >= self.max_depth {
            return Err(Error::new(ErrorKind::Limit {
                limit: "max_typed_depth",
                max: self.max_depth as u64,
            })
            .with_path(self.path()));
        }
        self.depth += 1;
        self.path.push(seg);
        let r = if self.depth.is_multiple_of(crate::base::limits::GROW_EVERY) {
            crate::base::limits::grow(|| f(self))
        } else {
            f(self)
        };
        // The innermost path wins; the outer levels need not build theirs.
        let r = r.map_err(|e| match e.path() {
            Some(_) => e,
            None => e.with_path(self.path()),
        });
        self.path.pop();
        self.depth -= 1;
        r
    }
}

impl<'g> Walk<'g> {
    /// One level without a path segment of its own (a newtype struct,
    /// `Some`): the depth is guarded as [`Walk::child`] guards it, since a
    /// type like `struct L(Option<Box<L>>)` recurses there on one value.
    fn level<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.depth >= self.max_depth {
            return Err(Error::new(ErrorKind::Limit {
                limit: "max_typed_depth",
                max: self.max_depth as u64,
            })
            .with_path(self.path()));
        }
        self.depth += 1;
        let r = if self.depth.is_multiple_of(crate::base::limits::GROW_EVERY) {
            crate::base::limits::grow(|| f(self))
        } else {
            f(self)
        };
        self.depth -= 1;
        r
    }
}

/// The deserializer for one value of the graph.
pub(crate) struct De<'w, 'g> {
    pub(crate) walk: &'w mut Walk<'g>,
    pub(crate) v: &'g Value,
}

fn type_error(expected: &str, found: &Value) -> Error {
    Error::new(ErrorKind::Type {
        expected: expected.to_string(),
        found: found.type_name(),
    })
}

impl<'w, 'g> De<'w, 'g> {
    /// Follows a shared reference, refusing a cycle, and counting the copy.
    fn resolved<T>(self, f: impl FnOnce(De<'_, 'g>) -> Result<T>) -> Result<T> {
        let Value::Ref(id) = self.v else {
            if self.walk.in_ref > 0 {
                self.walk.copied += self.v.copy_weight();
                if self.walk.copied > self.walk.max_copied {
                    return Err(Error::new(ErrorKind::Limit {
                        limit: "max_tree_nodes",
                        max: self.walk.max_copied as u64,
                    }));
                }
            }
            return f(self);
        };
        let i = id.index();
        let Some(obj) = self.walk.objects.get(i) else {
            return Err(Error::new(ErrorKind::DanglingRef(id.0)));
        };
        if self.walk.on_path[i] {
            return Err(Error::invalid(
                "the value contains itself (a cycle), which serde cannot represent; load it as a reduce::Graph",
            ));
        }
        self.walk.on_path[i] = true;
        self.walk.in_ref += 1;
        let r = De {
            walk: &mut *self.walk,
            v: obj,
        }
        .resolved(f);
        self.walk.in_ref -= 1;
        self.walk.on_path[i] = false;
        r
    }

    fn seq<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let Some(items) = self.v.as_items() else {
            return Err(type_error("list", self.v));
        };
        let mut access = Seq {
            walk: self.walk,
            items,
            next: 0,
        };
        let value = visitor.visit_seq(&mut access)?;
        if access.next < items.len() {
            return Err(Error::invalid(format!(
                "expected {} items, found {}",
                access.next,
                items.len()
            )));
        }
        Ok(value)
    }

    fn map<'de, V: Visitor<'de>>(self, visitor: V, fields: bool) -> Result<V::Value> {
        let Value::Dict(pairs) = self.v else {
            return Err(type_error("dict", self.v));
        };
        visitor.visit_map(Map {
            walk: self.walk,
            pairs,
            next: 0,
            fields,
        })
    }

    fn str<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.v {
            Value::Str(s) => match s.as_str() {
                Some(t) => visitor.visit_str(t),
                None => Err(Error::invalid(format!(
                    "expected str without lone surrogates, found {s:?}"
                ))),
            },
            v => Err(type_error("str", v)),
        }
    }

    fn int<'de, V: Visitor<'de>>(self, visitor: V, expected: &str) -> Result<V::Value> {
        match self.v {
            Value::Int(i) => visitor.visit_i64(*i),
            Value::BigInt(b) => big(b, visitor),
            v => Err(type_error(expected, v)),
        }
    }
}

/// An int outside `i64` as a float, as Python's `float(i)`: the nearest,
/// or an error past the largest float.
pub(crate) fn big_float(b: &BigInt) -> Result<f64> {
    crate::typed::impls::big_to_f64(b).ok_or_else(|| {
        Error::invalid(format!(
            "expected a float, found an int of {} bits, too large to convert to float (as Python's float() says)",
            b.bits()
        ))
    })
}

/// An int outside `i64`: `u64`, `i128` or `u128` as it fits.
pub(crate) fn big<'de, V: Visitor<'de>>(b: &BigInt, visitor: V) -> Result<V::Value> {
    if let Ok(u) = u64::try_from(b) {
        visitor.visit_u64(u)
    } else if let Ok(i) = i128::try_from(b) {
        visitor.visit_i128(i)
    } else if let Ok(u) = u128::try_from(b) {
        visitor.visit_u128(u)
    } else {
        Err(Error::invalid(format!(
            "expected an int of at most 128 bits, found one of {} bits",
            b.bits()
        )))
    }
}

macro_rules! ints {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            self.resolved(|d| d.int(visitor, "int"))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for De<'_, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| match d.v {
            Value::None => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::BigInt(b) => big(b, visitor),
            Value::Float(x) => visitor.visit_f64(*x),
            Value::Str(_) => d.str(visitor),
            Value::Bytes(b) | Value::ByteArray(b) => visitor.visit_bytes(b),
            Value::Buffer(b) => visitor.visit_bytes(&b.data),
            Value::Tuple(_) | Value::List(_) | Value::Set(_) | Value::FrozenSet(_) => {
                d.seq(visitor)
            }
            Value::Dict(_) => d.map(visitor, false),
            v => Err(type_error("plain data", v)),
        })
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| match d.v {
            Value::Bool(b) => visitor.visit_bool(*b),
            v => Err(type_error("bool", v)),
        })
    }

    ints! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| match d.v {
            Value::Float(x) => visitor.visit_f64(*x),
            // An int where a float is expected, as Python's float(i).
            Value::Int(i) => visitor.visit_i64(*i),
            Value::BigInt(b) => visitor.visit_f64(big_float(b)?),
            v => Err(type_error("float", v)),
        })
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| d.str(visitor))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| d.str(visitor))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| d.str(visitor))
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| match d.v {
            Value::Bytes(b) | Value::ByteArray(b) => visitor.visit_bytes(b),
            Value::Buffer(b) => visitor.visit_bytes(&b.data),
            Value::Str(_) => d.str(visitor),
            // serde writes a Vec<u8> without serde_bytes as a list of ints.
            Value::List(_) | Value::Tuple(_) => d.seq(visitor),
            v => Err(type_error("bytes", v)),
        })
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| match d.v {
            Value::None => visitor.visit_none(),
            v => d.walk.level(|walk| visitor.visit_some(De { walk, v })),
        })
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| match d.v {
            Value::None => visitor.visit_unit(),
            v => Err(type_error("None", v)),
        })
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        let De { walk, v } = self;
        walk.level(|walk| visitor.visit_newtype_struct(De { walk, v }))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| d.seq(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.resolved(|d| d.seq(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.resolved(|d| d.seq(visitor))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| d.map(visitor, false))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.resolved(|d| match d.v {
            Value::Dict(_) => d.map(visitor, true),
            // A struct as the tuple of its fields, which serde also reads.
            Value::Tuple(_) | Value::List(_) => d.seq(visitor),
            v => Err(type_error("dict", v)),
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.resolved(|d| {
            // serde-pickle's forms: 'Unit', {'Variant': data}, and the
            // older ('Variant',) and ('Variant', data).
            let (name, data) = match d.v {
                Value::Str(_) => (d.v, None),
                Value::Dict(pairs) if pairs.len() == 1 => (&pairs[0].0, Some(&pairs[0].1)),
                Value::Tuple(items) if items.len() == 1 => (&items[0], None),
                Value::Tuple(items) if items.len() == 2 => (&items[0], Some(&items[1])),
                v => {
                    return Err(Error::new(ErrorKind::Type {
                        expected: "an enum (a str, a dict of one item, or a tuple of the variant name and its data)".into(),
                        found: v.type_name(),
                    }))
                }
            };
            visitor.visit_enum(Enum {
                walk: d.walk,
                name,
                data,
            })
        })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| match d.v {
            Value::Str(_) => d.str(visitor),
            Value::Int(i) if *i >= 0 => visitor.visit_u64(*i as u64),
            Value::Bytes(b) => visitor.visit_bytes(b),
            v => Err(type_error("str", v)),
        })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        // Nothing to walk: the value is already loaded, and skipping it
        // makes nothing.
        visitor.visit_unit()
    }
}

struct Seq<'w, 'g> {
    walk: &'w mut Walk<'g>,
    items: &'g [Value],
    next: usize,
}

impl<'de> de::SeqAccess<'de> for &mut Seq<'_, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        let Some(v) = self.items.get(self.next) else {
            return Ok(None);
        };
        let i = self.next;
        self.next += 1;
        self.walk
            .child(Seg::Index(i), |walk| seed.deserialize(De { walk, v }))
            .map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.next)
    }
}

struct Map<'w, 'g> {
    walk: &'w mut Walk<'g>,
    pairs: &'g [(Value, Value)],
    next: usize,
    /// A struct's: keys shown as `.field`.
    fields: bool,
}

impl<'de> de::MapAccess<'de> for Map<'_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let Some((k, _)) = self.pairs.get(self.next) else {
            return Ok(None);
        };
        let walk = &mut *self.walk;
        let r = seed.deserialize(De { walk, v: k });
        r.map(Some).map_err(|e| match e.path() {
            Some(_) => e,
            None => e.with_path(self.walk.path()),
        })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let Some((k, v)) = self.pairs.get(self.next) else {
            return Err(Error::invalid("a dict value asked for after the last item"));
        };
        self.next += 1;
        let seg = match (self.fields, self.walk.get(k).as_str()) {
            (true, Some(name)) => Seg::Field(name),
            _ => Seg::Key(k),
        };
        self.walk
            .child(seg, |walk| seed.deserialize(De { walk, v }))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.pairs.len() - self.next)
    }
}

struct Enum<'w, 'g> {
    walk: &'w mut Walk<'g>,
    name: &'g Value,
    data: Option<&'g Value>,
}

struct Variant<'w, 'g> {
    walk: &'w mut Walk<'g>,
    name: &'g str,
    data: Option<&'g Value>,
}

impl<'de, 'w, 'g> de::EnumAccess<'de> for Enum<'w, 'g> {
    type Error = Error;
    type Variant = Variant<'w, 'g>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Variant<'w, 'g>)> {
        let name = match self.walk.get(self.name) {
            Value::Str(s) => s.as_str(),
            _ => None,
        };
        let Some(name) = name else {
            return Err(type_error("a variant name (str)", self.name));
        };
        let tag = seed.deserialize(De {
            walk: &mut *self.walk,
            v: self.name,
        })?;
        Ok((
            tag,
            Variant {
                walk: self.walk,
                name,
                data: self.data,
            },
        ))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, '_> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        match self.data {
            None | Some(Value::None) => Ok(()),
            Some(v) => Err(type_error("None", v).with_path(self.walk.path())),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        let Some(v) = self.data else {
            return Err(Error::invalid(format!(
                "expected data for variant `{}`, found none",
                self.name
            )));
        };
        self.walk.child(Seg::Field(self.name), |walk| {
            seed.deserialize(De { walk, v })
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        let Some(v) = self.data else {
            return Err(Error::invalid(format!(
                "expected data for variant `{}`, found none",
                self.name
            )));
        };
        self.walk.child(Seg::Field(self.name), |walk| {
            de::Deserializer::deserialize_tuple(De { walk, v }, len, visitor)
        })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let Some(v) = self.data else {
            return Err(Error::invalid(format!(
                "expected data for variant `{}`, found none",
                self.name
            )));
        };
        self.walk.child(Seg::Field(self.name), |walk| {
            de::Deserializer::deserialize_struct(De { walk, v }, "", fields, visitor)
        })
    }
}
