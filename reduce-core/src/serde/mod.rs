//! serde both ways: any `Serialize` type written as plain pickle data, any
//! `Deserialize` type read from one, and [`Value`] as serde data
//! (feature `serde`, on by default).
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Point {
//!     x: f64,
//!     y: f64,
//! }
//!
//! let bytes = reduce::serde::to_vec_with_protocol(&Point { x: 1.0, y: 2.5 }, 2)?;
//! // pickle.dumps({'x': 1.0, 'y': 2.5}, protocol=2), byte for byte:
//! assert_eq!(
//!     bytes,
//!     b"\x80\x02}q\x00(X\x01\x00\x00\x00xq\x01G?\xf0\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00yq\x02G@\x04\x00\x00\x00\x00\x00\x00u."
//! );
//! let back: Point = reduce::serde::from_slice(&bytes)?;
//! assert_eq!(back, Point { x: 1.0, y: 2.5 });
//!
//! // Errors say where, as the typed reader's do.
//! let err = reduce::serde::from_slice::<Vec<Point>>(
//!     &reduce::serde::to_vec(&vec![serde_json::json!({"x": 1.0, "y": "two"})])?,
//! )
//! .unwrap_err();
//! assert_eq!(err.to_string(), "[0].y: expected float, found str");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # serde or `Reduce`?
//!
//! | you have | use |
//! |---|---|
//! | Rust types that already derive serde, and want plain data (dicts, lists, str, numbers) that Python reads without any class | `reduce::serde` |
//! | files written by serde-pickle | `reduce::serde` (it reads them, and serde-pickle reads what it writes) |
//! | instances of Python classes (`module.Class(...)`, `__dict__`, `__slots__`, dataclasses, enums) | `#[derive(Reduce)]` ([`macro@crate::Reduce`]) |
//! | objects shared between places, or cycles, that must stay shared | [`Reduce`](trait@crate::Reduce) with `Rc`/`Arc`, or [`Graph`]: serde has no sharing, so `reduce::serde` writes each use in full and reads a shared object by value (a cycle is an error) |
//! | types of other crates that Python knows as classes (`datetime`, numpy arrays, ...) | the [`Registry`](crate::Registry) and its [presets](crate::preset) |
//! | anything a pickle may hold, kept as it is | [`Value`] / [`Graph`] with [`crate::from_slice`] |
//! | a pickle as JSON (or any serde format), or JSON as a pickle | [`Value`]'s `Serialize` and `Deserialize` (below) |
//!
//! # The mapping
//!
//! Writing follows serde-pickle's default mapping, so that files switch
//! crates without changes:
//!
//! | serde | Python |
//! |---|---|
//! | `bool`, integers (`i128`/`u128` too), `f32`/`f64` | `bool`, `int`, `float` |
//! | `char`, `str` | `str` |
//! | bytes (`serde_bytes`) | `bytes` (`_codecs.encode` before protocol 3, as CPython) |
//! | `None`, `()`, a unit struct | `None` |
//! | `Some(x)`, a newtype struct | `x` |
//! | sequence (`Vec`, `HashSet`, ...) | `list` |
//! | tuple, tuple struct | `tuple` |
//! | map | `dict` |
//! | struct | `dict` with `str` keys |
//! | `E::Unit` | `'Unit'` |
//! | `E::Newtype(x)` | `{'Newtype': x}` |
//! | `E::Tuple(a, b)` | `{'Tuple': [a, b]}` |
//! | `E::Struct { a }` | `{'Struct': {'a': a}}` |
//!
//! Reading takes the same forms and a little more: sets, frozensets and
//! tuples where a sequence is expected, a tuple or list where a struct is
//! expected, an `int` where a float is expected (of any size, as Python's
//! `float(i)`; past the largest float an error), `bytes` or a list of ints
//! for bytes, and serde-pickle's older enum forms `('Unit',)` and
//! `('Variant', data)`. [`deserialize_any`](::serde::Deserializer::deserialize_any)
//! works (so `serde_json::Value` and untagged enums do), and so do
//! `#[serde(flatten)]` and ignored fields.
//!
//! # The bytes
//!
//! At every protocol the bytes are `pickle.dumps(obj, protocol=P)` of the
//! same Python data, memo, frames and batches included, where the Python
//! data's field names (struct fields, variant names) are one string object
//! each, as they are in a dict built from literals, by `json.loads`, by
//! `vars()` or by `dataclasses.asdict()`: each is written once and fetched
//! from the memo after. Other strings are written each time, as distinct
//! objects are. A map whose length serde does not announce (as
//! `#[serde(flatten)]` makes) is gathered first and its keys written as
//! distinct strings.
//!
//! CPython keeps a single object for the empty string, for each
//! one-character Latin-1 string, for `b""` and for each one-byte `bytes`,
//! however they were made, so Python's `[chr(97), chr(97)]` pickles the
//! second `'a'` as a memo reference; so does `vec!["a", "a"]` here (and
//! every writer of the crate). A one-character field name is another
//! object in CPython 3.11 (an interned identifier), and stays one here.
//!
//! # Value and serde
//!
//! [`Value`] implements `Serialize` and `Deserialize`, and [`Graph`]
//! implements `Serialize`, so a pickle transcodes to any serde format and
//! back:
//!
//! ```
//! use reduce::Value;
//!
//! // pickle.dumps({'name': 'ada', 'scores': (9.5, 8), 'raw': b'\x00'}, protocol=4)
//! let pickle = b"\x80\x04\x952\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x04name\x94\x8c\x03ada\x94\x8c\x06scores\x94G@#\x00\x00\x00\x00\x00\x00K\x08\x86\x94\x8c\x03raw\x94C\x01\x00\x94u.";
//! let value: Value = reduce::from_slice(pickle)?;
//! let json = serde_json::to_string(&value)?;
//! assert_eq!(json, r#"{"name":"ada","scores":[9.5,8],"raw":[0]}"#);
//!
//! let back: Value = serde_json::from_str(r#"{"name": "ada", "n": [1, 2.5, null]}"#)?;
//! assert_eq!(format!("{back:?}"), "{'name': 'ada', 'n': [1, 2.5, None]}");
//! let pickle = reduce::to_vec(&back)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! | Python | as serde data (`Serialize`) | from serde data (`Deserialize`) |
//! |---|---|---|
//! | `None` | unit | unit and `None` |
//! | `bool`, `float` | `bool`, `f64` | the same |
//! | `int` | `i64`; beyond it `u64`, `i128` or `u128`; beyond 128 bits an error | any integer, as `int` |
//! | `str` | `str`; a lone surrogate is an error | `str` |
//! | `bytes`, `bytearray`, `PickleBuffer` | bytes (JSON writes them as a list of ints) | bytes as `bytes` |
//! | `tuple` | tuple | — (a sequence reads as `list`; as a dict key, as `tuple`, which Python can hash) |
//! | `list`, `set`, `frozenset` | sequence | sequence as `list` |
//! | `dict` | map, any keys (JSON accepts `str` keys, and writes int keys as strings) | map as `dict` |
//! | a global, a reduced object, a persistent id | an error that names it | — |
//! | a shared object of a [`Graph`] | written by value at each use; a cycle is an error | — |
//!
//! So `Value` → JSON → `Value` keeps data but not Python's types around
//! it: tuples and sets come back as lists, bytes as lists of ints. A format
//! with byte strings and big integers does better: through CBOR
//! (`ciborium`) a dict of strs, floats, ints of any size up to 128 bits,
//! bytes, lists, `None` and `bool` comes back equal, and pickles to the
//! same bytes. For Python's exact types, keep the pickle or a [`Value`].
//!
//! # Two paths
//!
//! [`from_slice`] decodes the opcodes once, with the reader's own decoder,
//! into a flat tape of nodes that point into the input, and serde walks the
//! tape: no [`Value`], no [`Graph`], and strings and bytes are borrowed from
//! the slice where the pickle holds them as they are (`BINUNICODE`,
//! `BINBYTES`, ... from protocol 1 for `str` and 3 for `bytes`):
//!
//! ```
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Row<'a> {
//!     name: &'a str,
//!     #[serde(borrow)]
//!     tags: Vec<&'a str>,
//! }
//!
//! // pickle.dumps({'name': 'ann', 'tags': ['red']}, protocol=4)
//! let bytes = b"\x80\x04\x95\x22\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x04name\x94\x8c\x03ann\x94\x8c\x04tags\x94]\x94\x8c\x03red\x94au.";
//! let row: Row = reduce::serde::from_slice(bytes)?;
//! assert_eq!((row.name, row.tags[0]), ("ann", "red"));
//! # Ok::<(), reduce::Error>(())
//! ```
//!
//! The tape takes what CPython writes for plain data at every protocol:
//! memo references, frames, and the `set([...])`, `frozenset([...])`,
//! `_codecs.encode(...)` and `bytearray(...)` calls of the older protocols.
//! For anything else (another global, a container changed after it was
//! shared, a cycle, an error of any kind) it steps aside and the pickle is
//! read through a [`Graph`], as [`from_unpickler`] and [`from_graph`]
//! always read: the results and errors are that path's, and
//! a test checks both paths agree on every input it has, broken ones
//! included. Borrowing needs the fast path; on the Graph path a borrowed
//! `&str` is an error. [`from_reader`] reads the pickle ahead into memory
//! through its `STOP` (never past it), then takes the same two paths.
//!
//! # Shared and cyclic values
//!
//! serde has no sharing. Writing, each use of a value is written in full
//! (serde's `Rc` support writes the target each time). Reading, an object
//! that the pickle shares is read by value at each place that uses it, up
//! to [`Limits::max_tree_nodes`](crate::Limits::max_tree_nodes) copied
//! nodes; a value that contains itself is an error that says so, never a
//! hang. [`from_unpickler`] takes lower limits for untrusted input.
//!
//! # Differences from serde-pickle
//!
//! Both crates read each other's files (see the tests in
//! `tests/tests/serde.rs`): structs, every enum form, options, maps with
//! non-string keys, bytes, `u64` and `i64` edges, `f32`, chars, unit
//! structs. What differs is the bytes:
//!
//! | | serde-pickle | `reduce::serde` |
//! |---|---|---|
//! | protocols written | 2 and 3 (default 3) | 0 to 5 (default 5) |
//! | memo | none | CPython's: each `str`, `bytes`, list, dict and tuple memoized; field names written once |
//! | frames (protocol 4+) | none | CPython's 64 KiB frames |
//! | batches | `MARK` ... `APPENDS`/`SETITEMS` for every container | CPython's: one item with `APPEND`/`SETITEM`, else chunks of 1000 |
//! | small ints and strings | `BININT`, `BINUNICODE` | `BININT1`/`BININT2`, `SHORT_BINUNICODE` as CPython |
//! | `i128`, `u128` | not supported | `int` |
//! | an `int` above `i64` read by `deserialize_any` | an error | `u64`, `i128` or `u128` as it fits |
//! | bytes after `STOP` | an error (`TrailingBytes`) | ignored, as `pickle.loads` does |
//!
//! serde-pickle's reader rejects an `int` outside `i64` wherever it reads
//! one through `deserialize_any` (which it does for every type), so a `u64`
//! above `i64::MAX` that either crate writes does not read back with
//! serde-pickle; `reduce::serde` reads it.

mod de;
mod ser;
mod stream;
mod value;

use std::fmt;
use std::io;

use ::serde::de::{DeserializeOwned, Expected, Unexpected};
use ::serde::{Deserialize, Serialize};

use crate::base::error::{Error, ErrorKind, Result};
use crate::base::limits::Limits;
use crate::base::op::DEFAULT_PROTOCOL;
use crate::read::input::Input;
use crate::unpickler::Unpickler;
use crate::value::{Graph, Value};
use crate::write::out::{check_protocol, no_extensions, Out};

/// Writes `value` as a pickle at protocol [`DEFAULT_PROTOCOL`] (5). As
/// with [`crate::to_vec`], the `Vec` of a small pickle keeps the
/// kilobyte of room the output starts with.
///
/// ```
/// let bytes = reduce::serde::to_vec(&vec![(1u8, "a")])?;
/// // pickle.dumps([(1, 'a')], protocol=5)
/// assert_eq!(bytes, b"\x80\x05\x95\x0c\x00\x00\x00\x00\x00\x00\x00]\x94K\x01\x8c\x01a\x94\x86\x94a.");
/// # Ok::<(), reduce::Error>(())
/// ```
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    to_vec_with_protocol(value, DEFAULT_PROTOCOL)
}

/// Writes `value` as a pickle at protocol `proto` (0 to 5).
///
/// ```
/// // pickle.dumps({'a': None}, protocol=0)
/// let bytes = reduce::serde::to_vec_with_protocol(&std::collections::BTreeMap::from([("a", ())]), 0)?;
/// assert_eq!(bytes, b"(dp0\nVa\np1\nNs.");
/// # Ok::<(), reduce::Error>(())
/// ```
pub fn to_vec_with_protocol<T: Serialize + ?Sized>(value: &T, proto: u8) -> Result<Vec<u8>> {
    // Straight into the result: no writer to copy the buffer into.
    check_protocol(proto)?;
    let mut ser = ser::Serializer::new(Out::new(proto, true, no_extensions(), None));
    ser.out.start();
    value.serialize(&mut ser)?;
    ser.out.finish()?;
    Ok(ser.out.take_buf())
}

/// Writes `value` as a pickle at protocol [`DEFAULT_PROTOCOL`] to `writer`.
pub fn to_writer<W: io::Write, T: Serialize + ?Sized>(mut writer: W, value: &T) -> Result<()> {
    write(&mut writer, value, DEFAULT_PROTOCOL)
}

/// Writes `value` as a pickle at protocol `proto` to `writer`.
pub fn to_writer_with_protocol<W: io::Write, T: Serialize + ?Sized>(
    mut writer: W,
    value: &T,
    proto: u8,
) -> Result<()> {
    write(&mut writer, value, proto)
}

fn write<T: Serialize + ?Sized>(sink: &mut dyn io::Write, value: &T, proto: u8) -> Result<()> {
    check_protocol(proto)?;
    let mut ser = ser::Serializer::new(Out::new(proto, true, no_extensions(), Some(sink)));
    ser.out.start();
    value.serialize(&mut ser)?;
    ser.out.finish()
}

/// Reads a `T` from one pickle in `bytes`, with the default options
/// (strict globals, default [`Limits`]). Bytes after `STOP` are ignored,
/// as CPython's `pickle.loads` ignores them (serde-pickle refuses them);
/// use [`from_unpickler`] with [`Unpickler::from_slice`] to read on from
/// there, or compare [`Unpickler::position`] with the length.
///
/// Plain data takes the fast path, which borrows `&'de str` and `&'de [u8]`
/// from `bytes` (see [the two paths](self#two-paths)); anything else is
/// read through a [`Graph`], with the same results and errors.
///
/// ```
/// use std::collections::HashMap;
///
/// // pickle.dumps({1: [b'x', None]}, protocol=2), from CPython
/// let bytes = b"\x80\x02}q\x00K\x01]q\x01(c_codecs\nencode\nq\x02X\x01\x00\x00\x00xq\x03X\x06\x00\x00\x00latin1q\x04\x86q\x05Rq\x06Nes.";
/// let map: HashMap<u8, Vec<Option<serde_bytes::ByteBuf>>> = reduce::serde::from_slice(bytes)?;
/// assert_eq!(map[&1][0].as_deref().map(|b| &b[..]), Some(&b"x"[..]));
/// assert_eq!(map[&1][1], None);
/// # Ok::<(), reduce::Error>(())
/// ```
pub fn from_slice<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T> {
    if let Some(value) = stream::from_slice(bytes) {
        return Ok(value);
    }
    let graph = Unpickler::from_slice(bytes).load_graph_typed()?;
    graph_deserialize(&graph)
}

/// Reads a `T` from one pickle in `reader`, leaving the reader just after
/// its `STOP`.
///
/// The pickle is read ahead into memory through its `STOP` (never past
/// it), then takes the same fast path as [`from_slice`]; the `Graph` path
/// reads those bytes again if needed.
///
/// ```
/// // pickle.dumps({'x': [1, 2]}) + b'rest', from CPython
/// let mut reader: &[u8] = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01x\x94]\x94(K\x01K\x02es.rest";
/// let map: std::collections::HashMap<String, Vec<u8>> = reduce::serde::from_reader(&mut reader)?;
/// assert_eq!(map["x"], [1, 2]);
/// assert_eq!(reader, b"rest");
/// # Ok::<(), reduce::Error>(())
/// ```
pub fn from_reader<T: DeserializeOwned, R: io::Read>(reader: R) -> Result<T> {
    let mut unpickler = Unpickler::new(reader);
    if let Some(value) = unpickler.read_whole(|bytes| stream::from_slice::<T>(bytes)) {
        return Ok(value);
    }
    let graph = unpickler.load_graph_typed()?;
    from_graph(&graph)
}

/// Reads a `T` from the next pickle of `unpickler`, with its options:
/// [`Limits`] (`max_tree_nodes` bounds the nodes of shared objects read
/// again by value, `max_typed_depth` the nesting), Python 2 strings, a
/// registry, inert mode, persistent ids. Reads through a [`Graph`]; call it
/// again for the next pickle of the stream.
///
/// ```
/// // Two pickles in a row: pickle.dumps([1, 2]) + pickle.dumps('x')
/// let stream = b"\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02e.\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00\x8c\x01x\x94.";
/// let mut unpickler = reduce::Unpickler::from_slice(stream)
///     .limits(reduce::Limits::default().max_tree_nodes(1000));
/// let first: Vec<u8> = reduce::serde::from_unpickler(&mut unpickler)?;
/// let second: String = reduce::serde::from_unpickler(&mut unpickler)?;
/// assert_eq!((first, second.as_str()), (vec![1, 2], "x"));
/// # Ok::<(), reduce::Error>(())
/// ```
pub fn from_unpickler<T: DeserializeOwned>(unpickler: &mut Unpickler<'_, impl Input>) -> Result<T> {
    let graph = unpickler.load_graph_typed()?;
    let limits = unpickler.current_limits();
    let mut walk = de::Walk::new(
        &graph.objects,
        limits.max_tree_nodes,
        limits.max_typed_depth,
    );
    T::deserialize(de::De {
        walk: &mut walk,
        v: &graph.root,
    })
}

/// Reads a `T` from a loaded [`Graph`] (see [`Unpickler::load_graph`]),
/// with the default [`Limits`].
///
/// ```
/// let bytes = b"\x80\x02U\x04caf\xe9q\x00.";  // a Python 2 str
/// let graph = reduce::Unpickler::from_slice(bytes)
///     .strings(reduce::StringDecoding::Latin1)
///     .load_graph()?;
/// let s: String = reduce::serde::from_graph(&graph)?;
/// assert_eq!(s, "café");
/// # Ok::<(), reduce::Error>(())
/// ```
pub fn from_graph<'g, T: Deserialize<'g>>(graph: &'g Graph) -> Result<T> {
    graph_deserialize(graph)
}

/// The Graph path, for a `T` of any lifetime: it borrows nothing.
fn graph_deserialize<'de, T: Deserialize<'de>>(graph: &Graph) -> Result<T> {
    let limits = Limits::default();
    let mut walk = de::Walk::new(
        &graph.objects,
        limits.max_tree_nodes,
        limits.max_typed_depth,
    );
    T::deserialize(de::De {
        walk: &mut walk,
        v: &graph.root,
    })
}

/// Reads a `T` from a [`Value`], without writing it as bytes first.
///
/// ```
/// use reduce::Value;
///
/// let v = Value::List(vec![Value::Int(1), Value::Int(2)]);
/// let (a, b): (u8, u8) = reduce::serde::from_value(&v)?;
/// assert_eq!((a, b), (1, 2));
/// # Ok::<(), reduce::Error>(())
/// ```
pub fn from_value<'v, T: Deserialize<'v>>(value: &'v Value) -> Result<T> {
    let limits = Limits::default();
    let mut walk = de::Walk::new(&[], limits.max_tree_nodes, limits.max_typed_depth);
    T::deserialize(de::De {
        walk: &mut walk,
        v: value,
    })
}

/// Converts `value` to a [`Value`] with the mapping of [`to_vec`], without
/// writing bytes: `reduce::to_vec(&to_value(x)?)` loads in Python as the
/// same object as `reduce::serde::to_vec(x)`.
///
/// ```
/// use reduce::Value;
///
/// let v = reduce::serde::to_value(&(1u8, Some("a"), None::<u8>))?;
/// assert_eq!(v, Value::Tuple(vec![Value::Int(1), Value::str("a"), Value::None]));
/// # Ok::<(), reduce::Error>(())
/// ```
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value> {
    value.serialize(value::ValueSerializer::default())
}

impl ::serde::ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(ErrorKind::Custom(msg.to_string()))
    }
}

impl ::serde::de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(ErrorKind::Custom(msg.to_string()))
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Error::new(ErrorKind::Type {
            expected: exp.to_string(),
            found: python_type(&unexp),
        })
    }

    fn missing_field(field: &'static str) -> Self {
        Error::invalid(format!("expected field `{field}`, found none"))
    }
}

/// The Python type a serde `Unexpected` stands for.
fn python_type(unexp: &Unexpected<'_>) -> &'static str {
    match unexp {
        Unexpected::Bool(_) => "bool",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) => "int",
        Unexpected::Float(_) => "float",
        Unexpected::Char(_) | Unexpected::Str(_) => "str",
        Unexpected::Bytes(_) => "bytes",
        Unexpected::Unit | Unexpected::Option => "None",
        Unexpected::Seq => "list",
        Unexpected::Map => "dict",
        Unexpected::UnitVariant
        | Unexpected::NewtypeVariant
        | Unexpected::TupleVariant
        | Unexpected::StructVariant
        | Unexpected::Enum => "enum",
        Unexpected::NewtypeStruct => "object",
        Unexpected::Other(_) => "another object",
    }
}

/// A field of a derived [`Reduce`](crate::Reduce) type whose type has only
/// serde's traits: `#[reduce(serde)]` writes it with [`field::reduce`] (as
/// the plain data [`to_value`] gives) and reads it with
/// [`field::construct`] (through [`from_value`]), so a type from the serde
/// world can sit inside a Python object.
///
/// ```
/// use reduce::Reduce;
/// use serde::{Deserialize, Serialize};
///
/// // A type that only derives serde's traits (another crate's, say).
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Settings {
///     retries: u8,
///     hosts: Vec<String>,
/// }
///
/// #[derive(Reduce, Debug, PartialEq)]
/// #[reduce(module = "app")]
/// struct Job {
///     name: String,
///     #[reduce(serde)]
///     settings: Settings,
/// }
///
/// let job = Job { name: "sync".into(), settings: Settings { retries: 3, hosts: vec!["a".into()] } };
/// let bytes = reduce::to_vec(&job)?;
/// // app.Job('sync', {'retries': 3, 'hosts': ['a']})
/// let value: reduce::Value = reduce::Unpickler::from_slice(&bytes).inert(true).load()?;
/// assert_eq!(format!("{value:?}"), "<reduce app.Job, ('sync', {'retries': 3, 'hosts': ['a']})>");
/// assert_eq!(reduce::from_slice::<Job>(&bytes)?, job);
/// # Ok::<(), reduce::Error>(())
/// ```
pub mod field {
    use ::serde::de::DeserializeOwned;
    use ::serde::Serialize;

    use crate::base::error::Result;
    use crate::typed::construct::{Construct, Node};
    use crate::typed::save::Saver;
    use crate::value::Value;

    /// Writes `value` as the plain data serde gives it.
    pub fn reduce<T: Serialize + ?Sized>(value: &T, s: &mut Saver<'_, '_>) -> Result<()> {
        s.value(&crate::serde::to_value(value)?)
    }

    /// [`construct`] on the stream: the field's value as a `Value`, then
    /// deserialized (a miss where that fails, for the `Graph` path to say
    /// why).
    #[doc(hidden)]
    pub fn construct_stream<T: DeserializeOwned>(
        s: &mut crate::read::stream::Stream<'_>,
    ) -> crate::read::stream::Pulled<T> {
        let value = s.value()?;
        crate::serde::from_value(&value).map_err(|_| crate::read::stream::Miss)
    }

    /// Reads a `T` from the plain data at `node` (shared parts by value).
    pub fn construct<T: DeserializeOwned>(node: Node<'_>) -> Result<T> {
        let value = Value::construct(node)?;
        crate::serde::from_value(&value).map_err(|e| e.under(&node.path()))
    }
}
