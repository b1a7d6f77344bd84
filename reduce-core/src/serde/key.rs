//! Dict keys, which Python hashes: a sequence there is written as a tuple
//! (all the way down), and a map, a struct or a variant with data (a dict
//! in the serde-pickle mapping) is an error, since Python cannot hash a
//! dict. An atom is written as anywhere else, in line: a key of a string
//! or a number costs nothing more.

use ::serde::ser::{self, Impossible, Serialize};

use crate::base::error::{Error, Result};
use crate::value::Value;

use super::ser::{hashable, unhashable, Serializer};
use super::value::ValueSerializer;

/// Writes one dict key on a [`Serializer`].
pub(crate) struct KeySerializer<'s, 'o>(pub(crate) &'s mut Serializer<'o>);

/// A sequence or tuple key: its items gathered, then written as a tuple.
pub(crate) struct KeyTuple<'s, 'o> {
    ser: &'s mut Serializer<'o>,
    items: Vec<Value>,
}

impl KeyTuple<'_, '_> {
    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let v = value.serialize(ValueSerializer::at(self.ser.depth() + 1))?;
        self.items.push(hashable(v)?);
        Ok(())
    }

    fn end(self) -> Result<()> {
        let tuple = Value::Tuple(self.items);
        crate::write::encode::encode_into(&mut self.ser.out, &tuple, &[], None)
    }
}

macro_rules! atoms {
    ($($method:ident($t:ty)),* $(,)?) => {
        $(
            #[inline(always)]
            fn $method(self, v: $t) -> Result<()> {
                ser::Serializer::$method(self.0, v)
            }
        )*
    };
}

impl<'s, 'o> ser::Serializer for KeySerializer<'s, 'o> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = KeyTuple<'s, 'o>;
    type SerializeTuple = KeyTuple<'s, 'o>;
    type SerializeTupleStruct = KeyTuple<'s, 'o>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    atoms!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
    );

    #[inline]
    fn serialize_none(self) -> Result<()> {
        ser::Serializer::serialize_none(self.0)
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        value.serialize(self)
    }
    #[inline]
    fn serialize_unit(self) -> Result<()> {
        ser::Serializer::serialize_unit(self.0)
    }
    #[inline]
    fn serialize_unit_struct(self, name: &'static str) -> Result<()> {
        ser::Serializer::serialize_unit_struct(self.0, name)
    }
    #[inline]
    fn serialize_unit_variant(
        self,
        name: &'static str,
        i: u32,
        variant: &'static str,
    ) -> Result<()> {
        ser::Serializer::serialize_unit_variant(self.0, name, i, variant)
    }
    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _i: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<()> {
        Err(unhashable())
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<KeyTuple<'s, 'o>> {
        Ok(KeyTuple {
            ser: self.0,
            items: Vec::with_capacity(len.unwrap_or(0).min(64)),
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<KeyTuple<'s, 'o>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<KeyTuple<'s, 'o>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _i: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        Err(unhashable())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap> {
        Err(unhashable())
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct> {
        Err(unhashable())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _i: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        Err(unhashable())
    }
}

impl ser::SerializeSeq for KeyTuple<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.item(value)
    }
    fn end(self) -> Result<()> {
        KeyTuple::end(self)
    }
}

impl ser::SerializeTuple for KeyTuple<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.item(value)
    }
    fn end(self) -> Result<()> {
        KeyTuple::end(self)
    }
}

impl ser::SerializeTupleStruct for KeyTuple<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.item(value)
    }
    fn end(self) -> Result<()> {
        KeyTuple::end(self)
    }
}
