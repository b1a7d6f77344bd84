//! [`Value`] and [`Graph`] as serde data, and the serializer behind
//! [`to_value`](super::to_value).

use std::cell::RefCell;
use std::fmt;

use ::serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use ::serde::ser::{self, Serialize, SerializeMap, SerializeSeq, SerializeTuple, Serializer};
use num_bigint::BigInt;

use crate::base::error::{Error, Result};
use crate::base::limits::MAX_TYPED_DEPTH;
use crate::value::{Graph, Value};

// ---- Value and Graph as Serialize ------------------------------------------

/// A value being serialized, with what it needs from around it: its graph
/// (for [`Value::Ref`]), the shared objects being written (a cycle), the
/// copies made of shared objects so far, and the depth.
struct Node<'v> {
    v: &'v Value,
    ctx: &'v Ctx<'v>,
    depth: usize,
}

struct Ctx<'v> {
    objects: &'v [Value],
    state: RefCell<Walk>,
}

struct Walk {
    on_path: Vec<bool>,
    copied: usize,
}

/// Most nodes written again because they are shared: a DAG that doubles
/// sixty times must fail, not write 2<sup>60</sup> nodes. Equal to the
/// reader's default [`Limits::max_tree_nodes`](crate::Limits::max_tree_nodes).
const MAX_COPIED: usize = 10_000_000;

fn unsupported<E: ser::Error>(what: &str) -> E {
    E::custom(format_args!(
        "{what} has no serde form (serde carries plain data only: None, bool, int, float, str, bytes, tuple, list, set, dict)"
    ))
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let child = |v| Node {
            v,
            ctx: self.ctx,
            depth: self.depth + 1,
        };
        if self.depth >= MAX_TYPED_DEPTH {
            return Err(ser::Error::custom(format_args!(
                "maximum recursion depth ({MAX_TYPED_DEPTH}) exceeded while serializing a Value"
            )));
        }
        if self.depth.is_multiple_of(crate::base::limits::GROW_EVERY) && self.depth > 0 {
            return crate::base::limits::grow(|| {
                Node {
                    v: self.v,
                    ctx: self.ctx,
                    depth: self.depth + 1,
                }
                .serialize(s)
            });
        }
        match self.v {
            Value::None => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::BigInt(b) => {
                if let Ok(u) = u64::try_from(&**b) {
                    s.serialize_u64(u)
                } else if let Ok(i) = i128::try_from(&**b) {
                    s.serialize_i128(i)
                } else if let Ok(u) = u128::try_from(&**b) {
                    s.serialize_u128(u)
                } else {
                    Err(ser::Error::custom(
                        "an int beyond 128 bits has no serde form",
                    ))
                }
            }
            Value::Float(x) => s.serialize_f64(*x),
            Value::Str(p) => match p.as_str() {
                Some(t) => s.serialize_str(t),
                None => Err(ser::Error::custom(format_args!(
                    "a str with a lone surrogate ({p:?}) has no serde form"
                ))),
            },
            Value::Bytes(b) | Value::ByteArray(b) => s.serialize_bytes(b),
            Value::Buffer(b) => s.serialize_bytes(&b.data),
            Value::Tuple(items) => {
                let mut t = s.serialize_tuple(items.len())?;
                for item in items {
                    t.serialize_element(&child(item))?;
                }
                t.end()
            }
            Value::List(items) | Value::Set(items) | Value::FrozenSet(items) => {
                let mut t = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    t.serialize_element(&child(item))?;
                }
                t.end()
            }
            Value::Dict(pairs) => {
                let mut m = s.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    m.serialize_entry(&child(k), &child(v))?;
                }
                m.end()
            }
            Value::Ref(id) => {
                let i = id.index();
                let Some(obj) = self.ctx.objects.get(i) else {
                    return Err(unsupported(
                        "a shared reference outside a Graph (serialize the Graph)",
                    ));
                };
                {
                    let mut w = self.ctx.state.borrow_mut();
                    if w.on_path[i] {
                        return Err(ser::Error::custom(
                            "the value has a cycle, which serde cannot represent; write it as a pickle with reduce::to_vec",
                        ));
                    }
                    w.on_path[i] = true;
                    w.copied += 1;
                    if w.copied > MAX_COPIED {
                        return Err(ser::Error::custom(format_args!(
                            "more than {MAX_COPIED} shared objects written again by value"
                        )));
                    }
                }
                let r = child(obj).serialize(s);
                self.ctx.state.borrow_mut().on_path[i] = false;
                r
            }
            Value::Global(g) => Err(unsupported(&format!("a global ({g})"))),
            Value::Reduce(r) => Err(unsupported(&format!(
                "a reduced object (a call of {:?})",
                r.callable
            ))),
            Value::PersistentId(_) => Err(unsupported("a persistent id")),
            Value::Seq(_) => Err(unsupported("a step kept by inert mode")),
        }
    }
}

/// Plain data as serde data. See [the mapping](crate::serde#value-and-serde).
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let ctx = Ctx {
            objects: &[],
            state: RefCell::new(Walk {
                on_path: Vec::new(),
                copied: 0,
            }),
        };
        Node {
            v: self,
            ctx: &ctx,
            depth: 0,
        }
        .serialize(s)
    }
}

/// The root, with each shared object written by value where it is used; a
/// cycle is an error. See [the mapping](crate::serde#value-and-serde).
impl Serialize for Graph {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let ctx = Ctx {
            objects: &self.objects,
            state: RefCell::new(Walk {
                on_path: vec![false; self.objects.len()],
                copied: 0,
            }),
        };
        Node {
            v: &self.root,
            ctx: &ctx,
            depth: 0,
        }
        .serialize(s)
    }
}

// ---- Value as Deserialize ----------------------------------------------------

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("plain data")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::int(v))
    }
    fn visit_i128<E>(self, v: i128) -> std::result::Result<Value, E> {
        Ok(Value::int(v))
    }
    fn visit_u128<E>(self, v: u128) -> std::result::Result<Value, E> {
        Ok(Value::int(v))
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::str(v))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> std::result::Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> std::result::Result<Value, E> {
        Ok(Value::Bytes(v))
    }
    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::None)
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        // The size hint is the format's claim; cap what it makes us reserve.
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some((k, v)) = map.next_entry()? {
            pairs.push((read_key(k), v));
        }
        Ok(Value::Dict(pairs))
    }
}

/// A dict key as Python can hash it: serde has one kind of sequence, which
/// reads as a list (a pickle's tuple key, a JSON array key from CBOR), and
/// a list or set cannot be a key, so a key's lists become tuples and its
/// sets frozensets, at any depth.
fn read_key(mut key: Value) -> Value {
    match &mut key {
        Value::List(items) | Value::Tuple(items) => {
            Value::Tuple(std::mem::take(items).into_iter().map(read_key).collect())
        }
        Value::Set(items) | Value::FrozenSet(items) => {
            Value::FrozenSet(std::mem::take(items).into_iter().map(read_key).collect())
        }
        _ => key,
    }
}

/// Any self-describing serde data as plain data. See [the
/// mapping](crate::serde#value-and-serde).
impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

// ---- to_value ----------------------------------------------------------------

/// serde's data model as a [`Value`], with the mapping the pickle writer
/// uses: `to_vec(&to_value(x)?)` loads as the same Python object as
/// `to_vec(x)`.
#[derive(Clone, Copy, Default)]
pub(crate) struct ValueSerializer {
    depth: usize,
}

impl ValueSerializer {
    /// A serializer `depth` levels down a value being written.
    pub(crate) fn at(depth: usize) -> Self {
        ValueSerializer { depth }
    }

    fn child<T: Serialize + ?Sized>(self, value: &T) -> Result<Value> {
        if self.depth >= MAX_TYPED_DEPTH {
            return Err(crate::write::out::unpicklable(format!(
                "maximum recursion depth ({MAX_TYPED_DEPTH}) exceeded while converting a serde value"
            )));
        }
        let next = ValueSerializer {
            depth: self.depth + 1,
        };
        if next.depth.is_multiple_of(crate::base::limits::GROW_EVERY) {
            crate::base::limits::grow(|| value.serialize(next))
        } else {
            value.serialize(next)
        }
    }
}

fn variant(name: &str, data: Value) -> Value {
    Value::Dict(vec![(Value::str(name), data)])
}

/// A container being converted.
pub(crate) struct ValueCompound {
    ser: ValueSerializer,
    items: Vec<Value>,
    pairs: Vec<(Value, Value)>,
    key: Option<Value>,
    kind: Kind,
}

enum Kind {
    List,
    Tuple,
    Dict,
    TupleVariant(&'static str),
    StructVariant(&'static str),
}

impl ValueCompound {
    fn new(ser: ValueSerializer, kind: Kind, len: usize) -> Self {
        let cap = len.min(4096);
        let (items, pairs) = match kind {
            Kind::Dict | Kind::StructVariant(_) => (Vec::new(), Vec::with_capacity(cap)),
            _ => (Vec::with_capacity(cap), Vec::new()),
        };
        ValueCompound {
            ser,
            items,
            pairs,
            key: None,
            kind,
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.items.push(self.ser.child(value)?);
        Ok(())
    }

    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        // Python hashes dict keys: a sequence there is a tuple.
        self.key = Some(hashable(self.ser.child(key)?)?);
        Ok(())
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let k = self
            .key
            .take()
            .ok_or_else(|| Error::custom("a map value without its key"))?;
        self.pairs.push((k, self.ser.child(value)?));
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<()> {
        self.pairs.push((Value::str(name), self.ser.child(value)?));
        Ok(())
    }

    fn end(self) -> Result<Value> {
        Ok(match self.kind {
            Kind::List => Value::List(self.items),
            Kind::Tuple => Value::Tuple(self.items),
            Kind::Dict => Value::Dict(self.pairs),
            Kind::TupleVariant(name) => variant(name, Value::List(self.items)),
            Kind::StructVariant(name) => variant(name, Value::Dict(self.pairs)),
        })
    }
}

impl Serializer for ValueSerializer {
    type Ok = Value;
    type Error = Error;
    type SerializeSeq = ValueCompound;
    type SerializeTuple = ValueCompound;
    type SerializeTupleStruct = ValueCompound;
    type SerializeTupleVariant = ValueCompound;
    type SerializeMap = ValueCompound;
    type SerializeStruct = ValueCompound;
    type SerializeStructVariant = ValueCompound;

    fn serialize_bool(self, v: bool) -> Result<Value> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Value> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Value> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Value> {
        Ok(Value::Int(v))
    }
    fn serialize_i128(self, v: i128) -> Result<Value> {
        Ok(Value::int(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Value> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Value> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Value> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Value> {
        Ok(Value::int(v))
    }
    fn serialize_u128(self, v: u128) -> Result<Value> {
        Ok(Value::int(BigInt::from(v)))
    }
    fn serialize_f32(self, v: f32) -> Result<Value> {
        Ok(Value::Float(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Value> {
        Ok(Value::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Value> {
        Ok(Value::str(v.encode_utf8(&mut [0; 4]) as &str))
    }
    fn serialize_str(self, v: &str) -> Result<Value> {
        Ok(Value::str(v))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn serialize_none(self) -> Result<Value> {
        Ok(Value::None)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value> {
        self.child(value)
    }
    fn serialize_unit(self) -> Result<Value> {
        Ok(Value::None)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value> {
        Ok(Value::None)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _i: u32,
        v: &'static str,
    ) -> Result<Value> {
        Ok(Value::str(v))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value> {
        self.child(value)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _i: u32,
        v: &'static str,
        value: &T,
    ) -> Result<Value> {
        Ok(variant(v, self.child(value)?))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<ValueCompound> {
        Ok(ValueCompound::new(self, Kind::List, len.unwrap_or(0)))
    }
    fn serialize_tuple(self, len: usize) -> Result<ValueCompound> {
        Ok(ValueCompound::new(self, Kind::Tuple, len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<ValueCompound> {
        Ok(ValueCompound::new(self, Kind::Tuple, len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _i: u32,
        v: &'static str,
        len: usize,
    ) -> Result<ValueCompound> {
        Ok(ValueCompound::new(self, Kind::TupleVariant(v), len))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<ValueCompound> {
        Ok(ValueCompound::new(self, Kind::Dict, len.unwrap_or(0)))
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<ValueCompound> {
        Ok(ValueCompound::new(self, Kind::Dict, len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _i: u32,
        v: &'static str,
        len: usize,
    ) -> Result<ValueCompound> {
        Ok(ValueCompound::new(self, Kind::StructVariant(v), len))
    }
}

impl ser::SerializeSeq for ValueCompound {
    type Ok = Value;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }
    fn end(self) -> Result<Value> {
        ValueCompound::end(self)
    }
}

impl ser::SerializeTuple for ValueCompound {
    type Ok = Value;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }
    fn end(self) -> Result<Value> {
        ValueCompound::end(self)
    }
}

impl ser::SerializeTupleStruct for ValueCompound {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }
    fn end(self) -> Result<Value> {
        ValueCompound::end(self)
    }
}

impl ser::SerializeTupleVariant for ValueCompound {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }
    fn end(self) -> Result<Value> {
        ValueCompound::end(self)
    }
}

impl ser::SerializeMap for ValueCompound {
    type Ok = Value;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.key(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.value(value)
    }
    fn end(self) -> Result<Value> {
        ValueCompound::end(self)
    }
}

impl ser::SerializeStruct for ValueCompound {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.field(key, value)
    }
    fn end(self) -> Result<Value> {
        ValueCompound::end(self)
    }
}

impl ser::SerializeStructVariant for ValueCompound {
    type Ok = Value;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.field(key, value)
    }
    fn end(self) -> Result<Value> {
        ValueCompound::end(self)
    }
}

/// `v` as a dict key: its lists (and theirs) as tuples, as Python can hash
/// those; a dict is an error.
pub(crate) fn hashable(v: Value) -> Result<Value> {
    match &v {
        Value::List(_) | Value::Tuple(_) => Ok(Value::Tuple(
            v.into_items()
                .unwrap_or_default()
                .into_iter()
                .map(hashable)
                .collect::<Result<_>>()?,
        )),
        Value::Dict(_) => Err(unhashable()),
        _ => Ok(v),
    }
}

#[cold]
pub(crate) fn unhashable() -> Error {
    crate::write::out::unpicklable(
        "a map or a struct cannot be a dict key: Python cannot hash a dict".to_owned(),
    )
}
