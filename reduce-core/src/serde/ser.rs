//! serde's `Serializer` on the writer's output layer: plain pickle data,
//! streamed, with CPython's memo, frames and batches.
//!
//! Every object goes through [`Out`], the layer the `Value` engine and the
//! typed writer share, so the opcodes, the memo and the frames are theirs.
//! The batching rules (`batch_list_exact`, `batch_dict_exact`) are the same
//! as in [`Saver::list`](crate::Saver::list) and
//! [`Saver::dict`](crate::Saver::dict); they are repeated here for a stream
//! of items whose count serde announces up front.

use ::serde::ser::{self, Impossible, Serialize};
use num_bigint::BigInt;

use crate::base::error::{Error, Result};
use crate::base::limits::{grow, GROW_EVERY, MAX_TYPED_DEPTH};
use crate::base::op::*;
use crate::value::Value;
use crate::write::names::static_name;
use crate::write::out::{unpicklable, Out};
use crate::write::rules::{self, Batcher, Batching};

use super::value::{hashable, unhashable, ValueSerializer};

/// Writes serde's data model on an [`Out`].
pub(crate) struct Serializer<'o> {
    /// Owned, not borrowed: serde's loops (`collect_seq`, `collect_map`)
    /// receive `&mut Serializer`, and with the output one pointer away
    /// rather than two its length is not reloaded through a pointer that
    /// each byte stored might have changed (pp_dicts: 80.1K -> 75.7K
    /// instructions a write; floats -3.5%).
    pub(crate) out: Out<'o>,
    /// Levels open: containers, and the values that an option, a newtype
    /// or a variant wraps. An atom (a number, a string) is not a level: it
    /// cannot recurse, so it pays for no depth check.
    depth: usize,
}

impl<'o> Serializer<'o> {
    pub(crate) fn new(out: Out<'o>) -> Self {
        Serializer { out, depth: 0 }
    }

    /// A field or variant name: written once per pickle, as CPython writes
    /// an interned identifier, then fetched from the memo. serde's names
    /// are numbered once per process with the derived types' field names,
    /// so a pickle finds their memo entries by number.
    #[inline]
    fn name(&mut self, name: &'static str) -> Result<()> {
        self.out.field_name(static_name(name))
    }

    #[inline]
    fn proto(&self) -> u8 {
        self.out.proto
    }

    /// Opens a level: at most `MAX_TYPED_DEPTH` are open at once, as in
    /// the typed writer. Each `enter` has its [`Serializer::leave`] when
    /// the level ends; a write that fails is abandoned, levels and all.
    #[inline(always)]
    fn enter(&mut self) -> Result<()> {
        if self.depth >= MAX_TYPED_DEPTH {
            return Err(too_deep());
        }
        self.depth += 1;
        Ok(())
    }

    #[inline]
    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// One value inside the open level: more stack every few levels (the
    /// recursion runs through the values of containers), nothing else.
    #[inline]
    fn child<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        if self.depth.is_multiple_of(GROW_EVERY) {
            return self.child_deep(value);
        }
        value.serialize(&mut *self)
    }

    #[inline(never)]
    fn child_deep<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        grow(|| value.serialize(&mut *self))
    }

    /// [`Serializer::child`] of a dict key, which Python hashes (see
    /// [`KeySerializer`]).
    #[inline]
    fn key_child<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        if self.depth.is_multiple_of(GROW_EVERY) {
            return grow(|| key.serialize(KeySerializer(&mut *self)));
        }
        key.serialize(KeySerializer(&mut *self))
    }

    /// The one value an option or a newtype wraps, a level of its own:
    /// `struct L(Option<Box<L>>)` recurses through here alone. The checks
    /// of [`Serializer::enter`] and [`Serializer::child`] in one test, the
    /// rest out of line.
    #[inline(always)]
    fn wrapped<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let d = self.depth + 1;
        if d > MAX_TYPED_DEPTH || d.is_multiple_of(GROW_EVERY) {
            return self.wrapped_checked(value);
        }
        self.depth = d;
        let r = value.serialize(&mut *self);
        self.depth = d - 1;
        r
    }

    #[inline(never)]
    fn wrapped_checked<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.enter()?;
        let r = self.child(value);
        self.leave();
        r
    }

    #[inline(always)]
    fn list_open(&mut self) -> Result<()> {
        self.out.begin()?;
        if self.proto() >= 1 {
            self.out.write(&[EMPTY_LIST]);
        } else {
            self.out.write(&[MARK, LIST]);
        }
        self.out.memo_put().map(|_| ())
    }

    #[inline(always)]
    fn dict_open(&mut self) -> Result<()> {
        self.out.begin()?;
        if self.proto() >= 1 {
            self.out.write(&[EMPTY_DICT]);
        } else {
            self.out.write(&[MARK, DICT]);
        }
        self.out.memo_put().map(|_| ())
    }

    /// `{variant: ...}`: the dict of one item that holds a variant's data,
    /// opened up to its key. The name is written once per pickle, as
    /// CPython writes an interned identifier.
    #[inline]
    fn variant_open(&mut self, variant: &'static str) -> Result<()> {
        self.dict_open()?;
        self.name(variant)
    }

    /// A dict's batches, the first opened.
    #[inline(always)]
    fn dict_batch(&mut self, len: usize) -> Batcher {
        let proto = self.proto();
        Batcher::started(Batching::Dict, proto, len, &mut self.out)
    }

    /// A list's batches, the first opened.
    #[inline(always)]
    fn list_batch(&mut self, len: usize) -> Batcher {
        let proto = self.proto();
        Batcher::started(Batching::List, proto, len, &mut self.out)
    }
}

/// What ends a container after its own end: nothing, or the `SETITEM` and
/// the end of the `{variant: ...}` dict around it.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Close {
    Plain,
    Variant,
}

#[cold]
fn too_deep() -> Error {
    unpicklable(format!(
        "maximum recursion depth ({MAX_TYPED_DEPTH}) exceeded while pickling a serde value"
    ))
}

impl Close {
    #[inline]
    fn finish(self, out: &mut Out<'_>) -> Result<()> {
        if self == Close::Variant {
            out.write(&[SETITEM]);
        }
        Ok(())
    }
}

/// A list or dict being written: straight to the output when serde gave its
/// length, else gathered as a [`Value`] and written whole at the end (the
/// batches depend on the count).
pub(crate) struct Compound<'s, 'o> {
    ser: &'s mut Serializer<'o>,
    batch: Batcher,
    close: Close,
    /// The items so far, when serde gave no length. Boxed: a `Compound`
    /// is returned by value for every container.
    gathered: Option<Box<Gathered>>,
    /// Whether each item is written on the spot with nothing else: not
    /// gathered, not at a depth where the stack is checked, and all in one
    /// chunk, `MARK` to the closer that [`Compound::end`] writes (so no
    /// item is counted). One test per item for all three.
    plain: bool,
}

impl<'s, 'o> Compound<'s, 'o> {
    /// Items written as they come, in `batch`'s chunks.
    #[inline(always)]
    fn direct(ser: &'s mut Serializer<'o>, batch: Batcher, close: Close) -> Self {
        let plain = !ser.depth.is_multiple_of(GROW_EVERY) && batch.one_chunk();
        Compound {
            ser,
            batch,
            close,
            gathered: None,
            plain,
        }
    }

    /// Items gathered until the end, when their count is known.
    #[inline(always)]
    fn gathering(ser: &'s mut Serializer<'o>, is_dict: bool) -> Self {
        Compound {
            ser,
            batch: Batcher::idle(),
            close: Close::Plain,
            gathered: Some(Gathered::new(is_dict)),
            plain: false,
        }
    }
}

/// The items of a list or dict whose length serde did not give.
pub(crate) struct Gathered {
    list: Vec<Value>,
    dict: Vec<(Value, Value)>,
    key: Option<Value>,
    is_dict: bool,
}

impl Gathered {
    fn new(is_dict: bool) -> Box<Gathered> {
        Box::new(Gathered {
            list: Vec::new(),
            dict: Vec::new(),
            key: None,
            is_dict,
        })
    }
}

/// A tuple being written: its items, then `TUPLE1`-`TUPLE3` or `TUPLE`.
pub(crate) struct Tuple<'s, 'o> {
    ser: &'s mut Serializer<'o>,
    len: usize,
    written: usize,
}

impl Tuple<'_, '_> {
    #[inline]
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.written += 1;
        self.ser.child(value)
    }

    /// Inlined whole, as [`Compound::end`] is: a `Tuple` passed by value
    /// to a call is copied.
    #[inline(always)]
    fn end(self) -> Result<()> {
        if self.written != self.len {
            return Err(miscounted(self.len, self.written));
        }
        self.ser.leave();
        tuple_end(self.ser, self.len)
    }
}

impl Compound<'_, '_> {
    #[inline(always)]
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        if self.plain {
            return value.serialize(&mut *self.ser);
        }
        if self.gathered.is_some() {
            return self.element_gathered(value);
        }
        self.counted(value)
    }

    /// One item (a list's, or a dict's value) of a container that is not
    /// plain: one level checked, and counted into its chunk.
    #[inline(always)]
    fn counted<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.ser.child(value)?;
        self.batch.item(&mut self.ser.out);
        Ok(())
    }

    #[inline(never)]
    fn element_gathered<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let v = value.serialize(ValueSerializer::at(self.ser.depth))?;
        if let Some(items) = &mut self.gathered {
            items.list.push(v);
        }
        Ok(())
    }

    /// A dict key, which Python hashes: a sequence in it is a tuple.
    #[inline(always)]
    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        if self.gathered.is_some() {
            return self.key_gathered(key);
        }
        if self.plain {
            return key.serialize(KeySerializer(&mut *self.ser));
        }
        self.ser.key_child(key)
    }

    #[inline(never)]
    fn key_gathered<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        let k = hashable(key.serialize(ValueSerializer::at(self.ser.depth))?)?;
        if let Some(items) = &mut self.gathered {
            items.key = Some(k);
        }
        Ok(())
    }

    #[inline(always)]
    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        if self.plain {
            return value.serialize(&mut *self.ser);
        }
        if self.gathered.is_some() {
            return self.value_gathered(value);
        }
        self.counted(value)
    }

    #[inline(never)]
    fn value_gathered<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let depth = self.ser.depth;
        let Some(items) = &mut self.gathered else {
            return Ok(());
        };
        let k = items
            .key
            .take()
            .ok_or_else(|| Error::custom("a map value without its key"))?;
        let v = value.serialize(ValueSerializer::at(depth))?;
        items.dict.push((k, v));
        Ok(())
    }

    /// A struct field: its name is written once per pickle, as CPython
    /// writes the interned attribute names of `vars(obj)` or
    /// `dataclasses.asdict(obj)`.
    #[inline]
    fn field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> Result<()> {
        if self.gathered.is_none() {
            self.ser.name(name)?;
        } else {
            self.key(name)?;
        }
        self.value(value)
    }

    /// Inlined whole: a `Compound` passed by value to a call is copied,
    /// and the copy read back its fields before their last stores had
    /// reached memory.
    #[inline(always)]
    fn end(self) -> Result<()> {
        let Compound {
            ser,
            batch,
            close,
            gathered,
            plain,
        } = self;
        if let Some(items) = gathered {
            return end_gathered(ser, *items);
        }
        if plain {
            // Whatever the count: a serializer that gave more or fewer
            // items than it announced still gets a valid pickle.
            batch.close_one_chunk(&mut ser.out);
        } else {
            batch.end(&mut ser.out);
        }
        ser.leave();
        close.finish(&mut ser.out)
    }
}

/// The end of a list or dict whose items were gathered: written whole.
#[inline(never)]
fn end_gathered(ser: &mut Serializer<'_>, items: Gathered) -> Result<()> {
    let Gathered {
        list,
        dict,
        is_dict,
        ..
    } = items;
    let v = if is_dict {
        Value::Dict(dict)
    } else {
        Value::List(list)
    };
    ser.leave();
    crate::write::encode::encode_tree(&mut ser.out, &v, None)
}

#[cold]
fn miscounted(len: usize, written: usize) -> Error {
    unpicklable(format!("a tuple announced {len} items and gave {written}"))
}

/// Closes a tuple of `len` items as `save_tuple` does: `TUPLE1`-`TUPLE3`
/// from protocol 2, else `MARK` ... `TUPLE`; memoized.
#[inline]
fn tuple_end(ser: &mut Serializer<'_>, len: usize) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    ser.out.close_memoized(rules::tuple_close(ser.proto(), len))
}

/// [`ser::Serializer::collect_seq`] of `n` items, `n` at least
/// `BATCHSIZE`: chunk by chunk as [`Saver::list`](crate::Saver::list)
/// writes them, with no count per item, so that each item's `serialize` is
/// inlined into the loop. (Through [`ser::SerializeSeq`], a `String`'s
/// `serialize_str` was a call per item.)
#[inline(never)]
fn collect_seq_chunked<I>(ser: &mut Serializer<'_>, mut iter: I, n: usize) -> Result<()>
where
    I: Iterator,
    I::Item: Serialize,
{
    use ser::Serializer as _;
    let depth = ser.depth + 1;
    if depth > MAX_TYPED_DEPTH || depth.is_multiple_of(GROW_EVERY) {
        // Where the depth is checked: serde's way, item by item.
        use ser::SerializeSeq;
        let mut seq = ser.serialize_seq(Some(n))?;
        iter.try_for_each(|item| seq.serialize_element(&item))?;
        return seq.end();
    }
    ser.depth = depth;
    ser.list_open()?;
    for chunk in rules::Batches::new(Batching::List, ser.proto(), n) {
        if chunk.many {
            ser.out.write(&[MARK]);
        }
        let mut left = chunk.len;
        iter.by_ref().take(chunk.len).try_for_each(|item| {
            left -= 1;
            item.serialize(&mut *ser)
        })?;
        if left > 0 {
            // An iterator that announced more than it gave: the list ends
            // with what came.
            if chunk.many || left < chunk.len {
                ser.out.write(&[if chunk.many { APPENDS } else { APPEND }]);
            }
            return ser.collect_seq_end();
        }
        ser.out.write(&[if chunk.many { APPENDS } else { APPEND }]);
    }
    // An iterator that announced fewer than it gives: the rest one by one.
    for item in iter {
        item.serialize(&mut *ser)?;
        ser.out.write(&[APPEND]);
    }
    ser.collect_seq_end()
}

impl Serializer<'_> {
    /// The end of a list written by `collect_seq`.
    #[inline]
    fn collect_seq_end(&mut self) -> Result<()> {
        self.leave();
        Ok(())
    }
}

impl<'s, 'o> ser::Serializer for &'s mut Serializer<'o> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'s, 'o>;
    type SerializeTuple = Tuple<'s, 'o>;
    type SerializeTupleStruct = Tuple<'s, 'o>;
    type SerializeTupleVariant = Compound<'s, 'o>;
    type SerializeMap = Compound<'s, 'o>;
    type SerializeStruct = Compound<'s, 'o>;
    type SerializeStructVariant = Compound<'s, 'o>;

    /// A sequence whose iterator knows its length and fills more than one
    /// batch (a long `Vec`, slice or set) goes in the typed writer's loop,
    /// [`collect_seq_chunked`]. Anything else item by item, as serde's
    /// default does.
    fn collect_seq<I>(self, iter: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        use ser::SerializeSeq;
        let mut iter = iter.into_iter();
        let n = match iter.size_hint() {
            (lo, Some(hi)) if lo == hi => Some(lo),
            _ => None,
        };
        if let Some(n) = n.filter(|&n| n >= BATCHSIZE) {
            return collect_seq_chunked(self, iter, n);
        }
        let mut seq = self.serialize_seq(n)?;
        iter.try_for_each(|item| seq.serialize_element(&item))?;
        seq.end()
    }

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<()> {
        self.out.bool(v)
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<()> {
        self.out.int(v.into())
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result<()> {
        self.out.int(v.into())
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result<()> {
        self.out.int(v.into())
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<()> {
        self.out.int(v)
    }
    #[inline]
    fn serialize_i128(self, v: i128) -> Result<()> {
        self.out.int128(v)
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<()> {
        self.out.int(v.into())
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result<()> {
        self.out.int(v.into())
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result<()> {
        self.out.int(v.into())
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<()> {
        self.out.int128(v.into())
    }
    #[inline]
    fn serialize_u128(self, v: u128) -> Result<()> {
        match i128::try_from(v) {
            Ok(i) => self.out.int128(i),
            Err(_) => self.out.bigint(&BigInt::from(v)),
        }
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<()> {
        // A Python float is a double; f32 widens exactly.
        self.out.float(v.into())
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.out.float(v)
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result<()> {
        let mut buf = [0; 4];
        let s = v.encode_utf8(&mut buf);
        if Out::is_single_str(s.as_bytes()) {
            return self.out.single_str(s).map(|_| ());
        }
        self.out.str_utf8(s)
    }
    /// Never in line: a call per string, whose short case makes no call
    /// of its own and saves no register. Inlined into a loop (which
    /// LLVM chose once dict keys had a serializer of their own), the loop
    /// saved them all: 20,000 strings 1.49M -> 1.58M instructions.
    #[inline(never)]
    fn serialize_str(self, v: &str) -> Result<()> {
        if v.len() <= 2 && Out::is_single_str(v.as_bytes()) {
            // CPython's one object of "" and of each Latin-1 character.
            return self.out.single_str_unit(v);
        }
        self.out.str_utf8_lean(v)
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.out.bytes_value(v).map(|_| ())
    }
    #[inline]
    fn serialize_none(self) -> Result<()> {
        self.out.none()
    }
    /// Out of line, so that serde's `Option::serialize` is small enough to
    /// be inlined where it is called, and a `None` costs no call.
    #[inline(never)]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        self.wrapped(value)
    }
    #[inline]
    fn serialize_unit(self) -> Result<()> {
        self.out.none()
    }
    #[inline]
    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        self.out.none()
    }
    #[inline]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
    ) -> Result<()> {
        self.name(variant)
    }
    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<()> {
        self.wrapped(value)
    }
    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<()> {
        self.enter()?;
        self.variant_open(variant)?;
        self.child(value)?;
        self.leave();
        Close::Variant.finish(&mut self.out)
    }

    #[inline(always)]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq> {
        self.enter()?;
        match len {
            Some(len) => {
                self.list_open()?;
                let batch = self.list_batch(len);
                Ok(Compound::direct(self, batch, Close::Plain))
            }
            None => Ok(Compound::gathering(self, false)),
        }
    }

    #[inline(always)]
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple> {
        self.enter()?;
        self.out.begin()?;
        self.out.write(rules::tuple_open(self.proto(), len));
        Ok(Tuple {
            ser: self,
            len,
            written: 0,
        })
    }

    #[inline]
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        self.serialize_tuple(len)
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        self.enter()?;
        self.variant_open(variant)?;
        self.list_open()?;
        let batch = self.list_batch(len);
        Ok(Compound::direct(self, batch, Close::Variant))
    }

    #[inline(always)]
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap> {
        self.enter()?;
        match len {
            Some(len) => {
                self.dict_open()?;
                let batch = self.dict_batch(len);
                Ok(Compound::direct(self, batch, Close::Plain))
            }
            None => Ok(Compound::gathering(self, true)),
        }
    }

    #[inline(always)]
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Self::SerializeStruct> {
        self.serialize_map(Some(len))
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant> {
        self.enter()?;
        self.variant_open(variant)?;
        self.dict_open()?;
        let batch = self.dict_batch(len);
        Ok(Compound::direct(self, batch, Close::Variant))
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    #[inline(always)]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }
    #[inline(always)]
    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeTuple for Tuple<'_, '_> {
    type Ok = ();
    type Error = Error;
    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }
    #[inline(always)]
    fn end(self) -> Result<()> {
        Tuple::end(self)
    }
}

impl ser::SerializeTupleStruct for Tuple<'_, '_> {
    type Ok = ();
    type Error = Error;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }
    #[inline(always)]
    fn end(self) -> Result<()> {
        Tuple::end(self)
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }
    #[inline(always)]
    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    #[inline(always)]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.key(key)
    }
    #[inline(always)]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.value(value)
    }
    /// Both in line: serde's default is a call per entry.
    #[inline(always)]
    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<()> {
        self.key(key)?;
        self.value(value)
    }
    #[inline(always)]
    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.field(key, value)
    }
    #[inline(always)]
    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.field(key, value)
    }
    #[inline(always)]
    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

// ---- dict keys ------------------------------------------------------------
//
// Python hashes dict keys: a sequence there is written as a tuple (all the
// way down), and a map, a struct or a variant with data (a dict in the
// serde-pickle mapping) is an error, since Python cannot hash a dict. An
// atom is written as anywhere else, in line: a key of a string or a number
// costs nothing more.

/// Writes one dict key on a [`Serializer`].
struct KeySerializer<'s, 'o>(&'s mut Serializer<'o>);

/// A sequence or tuple key: its items gathered, then written as a tuple.
struct KeyTuple<'s, 'o> {
    ser: &'s mut Serializer<'o>,
    items: Vec<Value>,
}

impl KeyTuple<'_, '_> {
    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let v = value.serialize(ValueSerializer::at(self.ser.depth + 1))?;
        self.items.push(hashable(v)?);
        Ok(())
    }

    fn end(self) -> Result<()> {
        let tuple = Value::Tuple(self.items);
        crate::write::encode::encode_tree(&mut self.ser.out, &tuple, None)
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
