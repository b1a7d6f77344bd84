//! Python pickle for Rust, extended the way `copyreg` extends `pickle`.
//!
//! `reduce` reads and writes real CPython pickles, protocols 0 to 5. What it
//! writes for plain data is byte for byte what CPython 3.11's
//! `pickle.dumps(obj, protocol=P)` writes, memo, frames and batches included;
//! what CPython writes, it reads. Loading never runs code: a global that the
//! pickle names is either one plain data needs (`builtins.set`,
//! `_codecs.encode`, ...) or an error naming it, unless you ask for
//! [inert mode](Unpickler::inert), which keeps the whole pickle as data: every
//! global, every call (those made only for their effect too) and every
//! change, in order, so that written back it makes CPython do exactly what
//! the original did.
//!
//! ```
//! use reduce::Value;
//!
//! // pickle.dumps({"a": [1, 2.5, None]}, protocol=2), from CPython
//! let bytes = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00Nes.";
//! let value: Value = reduce::from_slice(bytes)?;
//! assert_eq!(format!("{value:?}"), "{'a': [1, 2.5, None]}");
//!
//! // Written back at the same protocol, the bytes are CPython's.
//! assert_eq!(reduce::to_vec_with_protocol(&value, 2)?, bytes);
//! # Ok::<(), reduce::Error>(())
//! ```
//!
//! Typed values write straight to bytes and read back with a path in every
//! error:
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! let scores = BTreeMap::from([("ada".to_string(), vec![9.5, 8.0])]);
//! let bytes = reduce::to_vec(&scores)?;
//! let back: BTreeMap<String, Vec<f64>> = reduce::from_slice(&bytes)?;
//! assert_eq!(back, scores);
//!
//! let err = reduce::from_slice::<BTreeMap<String, Vec<String>>>(&bytes).unwrap_err();
//! assert_eq!(err.to_string(), "['ada'][0]: expected str, found float");
//! # Ok::<(), reduce::Error>(())
//! ```
//!
//! A typed read builds its value straight from the opcodes, with no
//! intermediate tree, whenever the pickle is shaped as CPython writes plain
//! data and objects (memo references to strings, tuples and classes
//! included); any other pickle (a cycle, a shared mutable container, an
//! `Rc`, a shape the streaming reader does not follow) is read through a
//! [`Graph`], with the same result or the same error
//! ([`Unpickler::streaming`]).
//!
//! # Which function do I use
//!
//! | to ... | use |
//! |---|---|
//! | write a Rust value | [`to_vec`], [`to_writer`], [`to_vec_with_protocol`] (any [`Reduce`] type) |
//! | read a Rust value | [`from_slice::<T>`](from_slice), [`from_reader`] (any [`Construct`] type) |
//! | give your own type a reduction | `#[derive(Reduce)]` (see [`macro@Reduce`]), or implement [`Reduce`](trait@Reduce) and [`Construct`] |
//! | read and write an instance of a Python class (`__dict__`, `__slots__`, dataclass) | `#[derive(Reduce)]` with `#[reduce(state)]` or `#[reduce(state = "slots")]` (see [`macro@Reduce`]) |
//! | teach a type you do not own (`copyreg.pickle`) | [`Registry::register_reducer`], [`Registry::register_constructor`], [`Registered`] |
//! | read an object whose type is known only at run time | [`Dynamic`] |
//! | read plain data into a tree | [`from_slice::<Value>`](from_slice), [`from_reader`] |
//! | read anything, keeping sharing and cycles | [`from_slice::<Graph>`](from_slice) |
//! | read with options (inert mode, Python 2 strings, limits, persistent ids, buffers) | [`Unpickler`] |
//! | write at protocol 5 | [`to_vec`], [`to_writer`] |
//! | write at another protocol | [`to_vec_with_protocol`] |
//! | write with options (protocol, buffer callback, extension codes) | [`Pickler`] |
//! | read several pickles from one stream | [`Unpickler::load`], called in turn |
//! | read `datetime`, `Decimal`, `UUID`, `OrderedDict`, ... | install [`preset::STDLIB`], then any of the above (see [Python's data](#pythons-data-the-standard-library-numpy-pytorch)) |
//! | allow a named list of globals | [`Registry::add_preset`] with a [`preset`] |
//! | read or write numpy arrays, scalars and dtypes | [`numpy::register`], then [`numpy::Array`] (or `ndarray::ArrayD<T>` with feature `ndarray`) |
//! | read or write a PyTorch checkpoint (`torch.save`) | `torch::load`, `torch::save` (feature `torch`) |
//! | write or read a type that derives serde's `Serialize`/`Deserialize`, or turn a pickle into JSON | `serde::to_vec`, `serde::from_slice`, `Value`'s serde impls (module `serde`, feature `serde`) |
//!
//! # copyreg, side by side
//!
//! The idea comes from a Python Cookbook recipe that teaches `pickle` about
//! a type it cannot handle by registering a reducer with `copyreg`. Here is
//! the same move for a Rust type this crate does not own,
//! [`std::time::Duration`], written as CPython's `datetime.timedelta`:
//!
//! ```python
//! import copyreg, datetime
//!
//! def reduce_duration(d):                       # a reducer: callable + args
//!     return datetime.timedelta, (0, d.seconds, d.microseconds)
//!
//! copyreg.pickle(Duration, reduce_duration)     # taught after the fact
//! ```
//!
//! ```
//! use std::time::Duration;
//! use reduce::Registered;
//!
//! // copyreg.pickle(Duration, reduce_duration)
//! reduce::registry().register_reducer(|d: &Duration, s| {
//!     s.reduction("datetime", "timedelta").args(&(0u64, d.as_secs(), d.subsec_micros())).save()
//! })?;
//! // find_class allowing datetime.timedelta, and what it builds
//! reduce::registry().register_constructor("datetime", "timedelta", |node| {
//!     let (days, secs, micros): (u64, u64, u32) = node.any_reduction()?.args().construct()?;
//!     Ok(Duration::new(days * 86_400 + secs, micros * 1000))
//! })?;
//!
//! let bytes = reduce::to_vec_with_protocol(&Registered(Duration::from_millis(1500)), 2)?;
//! // pickle.dumps(datetime.timedelta(seconds=1.5), protocol=2), byte for byte:
//! assert_eq!(bytes, b"\x80\x02cdatetime\ntimedelta\nq\x00K\x00K\x01J \xa1\x07\x00\x87q\x01Rq\x02.");
//! let back: Registered<Duration> = reduce::from_slice(&bytes)?;
//! assert_eq!(back.0, Duration::from_millis(1500));
//!
//! // Anything not registered is refused by name, and nothing is ever called.
//! let evil = b"cos\nsystem\n(S'echo pwned'\ntR.";
//! let err = reduce::from_slice::<reduce::Value>(evil).unwrap_err();
//! assert!(err.to_string().starts_with("global `os.system` is not allowed"));
//! # Ok::<(), reduce::Error>(())
//! ```
//!
//! [`registry()`] is the process-wide table (`copyreg`'s); an owned
//! [`Registry`] given to [`Pickler::registry`] or [`Unpickler::registry`]
//! layers over it for one pickler, as `Pickler.dispatch_table` does.
//! Extension codes (`copyreg.add_extension`) live in the same registry and
//! are checked like any other global.
//!
//! # The value model
//!
//! A [`Value`] is one Python object: `None`, `bool`, `int` of any size,
//! `float`, `str` (lossless, lone surrogates included, see [`PyStr`]),
//! `bytes`, `bytearray`, `tuple`, `list`, `dict` (insertion order, any
//! hashable key), `set`, `frozenset`, a [global](Global) kept as data, a
//! [reduced object](Reduce) (callable, args, state, list items, dict items),
//! a persistent id and a protocol 5 [`PickleBuffer`]. In inert mode a
//! [`Value::Seq`] also keeps what the pickle did for effect beside a value:
//! calls whose result it threw away and changes to objects built earlier
//! ([`Step`]). A `Value` is four words; a `str` of up to 24 bytes (12 on
//! 32-bit targets) is held inside it, so most dict keys and attribute
//! names cost no allocation to read, clone or drop.
//!
//! Loading a `Value` or a [`Graph`] refuses what CPython refuses to load: a
//! dict key or set item Python cannot hash (a list, dict, set or
//! bytearray, alone or inside tuples) is an error, `unhashable type 'list'
//! as a dict key`, at its byte offset. Inert mode keeps such a pickle as it
//! is, and a typed load reads the keys its Rust type says
//! (`BTreeMap<Vec<i64>, i64>`).
//!
//! A [`Graph`] is a root value plus the objects reachable from more than one
//! place, which the tree reaches through [`Value::Ref`]. A list that
//! contains itself loads as a list that contains itself; a DAG that doubles
//! sixty times loads as sixty small objects, not 2<sup>60</sup>. Nothing is
//! reference-counted, so nothing leaks, and dropping, printing, cloning and
//! comparing never recurse, whatever the depth.
//!
//! # Python's data: the standard library, numpy, PyTorch
//!
//! Python's everyday data has Rust twins, read and written as CPython 3.11
//! (and numpy, and torch) write them. Their globals are refused until you
//! opt in: install a preset such as [`preset::STDLIB`], and a
//! [`Value`] or [`Graph`] keeps them as reduced objects, a [`Dynamic`]
//! builds the first twin listed, and a typed read builds the twin you ask
//! for.
//!
//! ```
//! # #[cfg(feature = "chrono")] {
//! use chrono::NaiveDate;
//!
//! reduce::registry().add_preset(&reduce::preset::STDLIB)?;
//! // pickle.dumps(datetime.date(2020, 1, 2), protocol=0): packed bytes
//! // through _codecs.encode, as CPython writes them before protocol 3.
//! let bytes = b"cdatetime\ndate\np0\n(c_codecs\nencode\np1\n(V\x07\xe4\x01\x02\np2\nVlatin1\np3\ntp4\nRp5\ntp6\nRp7\n.";
//! let d: NaiveDate = reduce::from_slice(bytes)?;
//! assert_eq!(Some(d), NaiveDate::from_ymd_opt(2020, 1, 2));
//! assert_eq!(reduce::to_vec_with_protocol(&d, 0)?, bytes);
//! # }
//! # Ok::<(), reduce::Error>(())
//! ```
//!
//! | Python | Rust | preset | feature |
//! |---|---|---|---|
//! | `datetime.date` | `chrono::NaiveDate` | `stdlib` | `chrono` |
//! | `datetime.time` | `chrono::NaiveTime` (naive), `stdlib::PyTime` (fold, tzinfo) | `stdlib` | `chrono` |
//! | `datetime.datetime` | `chrono::NaiveDateTime` (naive), `DateTime<FixedOffset>`, `DateTime<Utc>` (a `timezone`), `stdlib::PyDateTime` (everything: fold, a `timezone`'s name, a `zoneinfo` key) | `stdlib` | `chrono` |
//! | `datetime.timedelta` | `chrono::TimeDelta` | `stdlib` | `chrono` |
//! | `datetime.timezone`, `zoneinfo.ZoneInfo` | `stdlib::TzInfo` | `stdlib` | `chrono` |
//! | `decimal.Decimal` | [`stdlib::Decimal`] (lossless: NaN, sNaN, infinities, exponent) | `stdlib` | |
//! | `fractions.Fraction` | `num_rational::BigRational` | `stdlib` | `num-rational` |
//! | `complex` | `num_complex::Complex<f64>` (and `<f32>`) | `stdlib` | `num-complex` |
//! | `uuid.UUID` | `uuid::Uuid` | `stdlib` | `uuid` |
//! | `ipaddress.IPv4Address`, `IPv6Address` | `std::net::Ipv4Addr`, `Ipv6Addr`, `IpAddr` (a scope id is an error) | `stdlib` | |
//! | `ipaddress.IPv4Network`, `IPv6Network` | [`stdlib::IpNetwork`] | `stdlib` | |
//! | `ipaddress.IPv4Interface`, `IPv6Interface` | [`stdlib::IpInterface`] | `stdlib` | |
//! | `pathlib.PurePosixPath`, `PosixPath` | `std::path::PathBuf` (written as `PurePosixPath`) | `stdlib` | |
//! | `collections.OrderedDict` | [`stdlib::OrderedDict`] | `stdlib` | |
//! | `collections.defaultdict` | [`stdlib::DefaultDict`] (the factory kept as a name) | `stdlib` | |
//! | `collections.Counter` | [`stdlib::Counter`] | `stdlib` | |
//! | `collections.deque` | [`stdlib::Deque`] (with `maxlen`) | `stdlib` | |
//! | `range`, `slice` | [`stdlib::Range`], [`stdlib::Slice`] | `stdlib` | |
//! | a namedtuple, a subclass of `list`, `dict`, `tuple`, `str`, `int`, `set` | your derived or registered type: protocols 0 and 1's `copyreg._reconstructor(cls, base, state)` reads as protocol 2's form (see [`Call::base`]) | `stdlib` | |
//! | `numpy.ndarray` (numpy 1.x and 2.x, out-of-band buffers too) | [`numpy::Array`] (any dtype, structured ones described), `ndarray::Array<T, D>` | `numpy` | `ndarray` (and `half`, `num-complex` for those items) |
//! | a numpy scalar, `numpy.dtype` | [`numpy::Scalar`], [`numpy::DType`] | `numpy` | |
//! | a `torch.save` checkpoint (zip or legacy), its tensors | `torch::Checkpoint`, [`torch::Tensor`] (`to_ndarray` with `ndarray`) | `torch` | `torch` |
//!
//! Each preset ([`preset::STDLIB`], [`preset::NUMPY`],
//! [`preset::TORCH_WEIGHTS_ONLY`]) lists every global it allows. Without a
//! type's feature its global is still allowed and loads as data in a
//! [`Value`].
//!
//! # Formats, opcode by opcode
//!
//! | Python type | protocol 0 | protocol 1 | protocol 2 | protocol 3 | protocol 4 | protocol 5 |
//! |---|---|---|---|---|---|---|
//! | `None` | `NONE` | ← | ← | ← | ← | ← |
//! | `bool` | `INT` `01`/`00` | ← | `NEWTRUE`/`NEWFALSE` | ← | ← | ← |
//! | `int`, 32-bit | `INT` | `BININT1`/`BININT2`/`BININT` | ← | ← | ← | ← |
//! | `int`, larger | `LONG` | ← | `LONG1`/`LONG4` | ← | ← | ← |
//! | `float` | `FLOAT` (`repr`) | `BINFLOAT` | ← | ← | ← | ← |
//! | `str` | `UNICODE` | `BINUNICODE` | ← | ← | `SHORT_BINUNICODE`/`BINUNICODE`/`BINUNICODE8` | ← |
//! | `bytes` | `_codecs.encode(s, "latin1")` | ← | ← | `SHORT_BINBYTES`/`BINBYTES` | + `BINBYTES8` | ← |
//! | `bytearray` | `bytearray(bytes)` | ← | ← | ← | ← | `BYTEARRAY8` |
//! | `tuple` | `MARK` … `TUPLE` | `EMPTY_TUPLE`, `MARK` … `TUPLE` | + `TUPLE1`–`TUPLE3` | ← | ← | ← |
//! | `list` | `MARK` `LIST`, `APPEND` | `EMPTY_LIST`, `APPENDS` | ← | ← | ← | ← |
//! | `dict` | `MARK` `DICT`, `SETITEM` | `EMPTY_DICT`, `SETITEMS` | ← | ← | ← | ← |
//! | `set` | `set(list)` | ← | ← | ← | `EMPTY_SET`, `ADDITEMS` | ← |
//! | `frozenset` | `frozenset(list)` | ← | ← | ← | `MARK` … `FROZENSET` | ← |
//! | global | `GLOBAL` | ← | ← (or `EXT1`/`EXT2`/`EXT4`) | ← | `STACK_GLOBAL` | ← |
//! | reduced object | `REDUCE`, `BUILD` | ← | + `NEWOBJ` | ← | + `NEWOBJ_EX` | ← |
//! | persistent id | `PERSID` | `BINPERSID` | ← | ← | ← | ← |
//! | `PickleBuffer` | — | — | — | — | — | in band, or `NEXT_BUFFER` (+ `READONLY_BUFFER`) |
//! | memo | `PUT`/`GET` | `BINPUT`/`LONG_BINPUT`, `BINGET`/`LONG_BINGET` | ← | ← | `MEMOIZE` | ← |
//!
//! "←" means as in the protocol before. The reader also takes every opcode
//! CPython no longer writes: `STRING`, `BINSTRING`, `SHORT_BINSTRING` (Python
//! 2 `str`, decoded as the [`StringDecoding`] you choose), `INST`, `OBJ`,
//! `DUP`, `POP`, `POP_MARK`, and `FRAME` anywhere it is well formed.
//! The writer is [`Pickler`] (over the writer engine, `write/`), the reader
//! [`Unpickler`] (over the reader engine, `read/`); opcode names are exactly
//! those of CPython's `pickle.py`, in [`op`].
//!
//! # Features
//!
//! | feature | default | what it turns on |
//! |---|---|---|
//! | `derive` | yes | `#[derive(Reduce)]` (the `reduce-derive` proc-macro; costs syn and quote at build time) |
//! | `serde` | yes | `reduce::serde`: serde types as plain pickle data both ways, and `Value` as serde data (costs the serde crate) |
//! | `indexmap` | no | `Reduce`/`Construct` for `indexmap::IndexMap` (a `dict` in insertion order, as Python keeps it) and `IndexSet` |
//! | `chrono` | no | `datetime`'s types as chrono's, and `stdlib::PyDateTime`, `stdlib::PyTime`, `stdlib::TzInfo` (costs chrono, std only: no clock, no time zone database) |
//! | `uuid` | no | `uuid.UUID` as `uuid::Uuid` |
//! | `num-complex` | no | `complex` as `num_complex::Complex`, and numpy `complex64`/`complex128` items |
//! | `num-rational` | no | `fractions.Fraction` as `num_rational::BigRational` |
//! | `ndarray` | no | `Reduce`/`Construct` for `ndarray::Array<T, D>` (`ArrayD`, `Array1`, `Array2`, ...) as numpy arrays, `numpy::Array::to_ndarray` and `torch::Tensor::to_ndarray` |
//! | `half` | no | numpy `float16` items as `half::f16` ([`numpy::Element`]) |
//! | `torch` | no | `torch::load` and `torch::save`: PyTorch checkpoints read (zip and legacy, `weights_only` strict) and written (costs the `zip` and `crc32fast` crates) |
//!
//! # Modules
//!
//! The public modules are [`op`], [`inspect`], [`preset`], [`stdlib`],
//! [`numpy`], [`torch`], `serde` and [`security`]; everything else is at the crate
//! root. Inside, the source is in layers, each a folder of `src/` (or a
//! file at its root), and every import points down: a layer uses only the
//! layers below it, which a test (`tests/tests/layers.rs`) checks.
//!
//! | layer | where | what |
//! |---|---|---|
//! | Python's data, serde | `python/`, `serde/` | [`preset`], [`stdlib`], [`numpy`], [`torch`]: Python's types as Rust types, and the allow-lists for their globals; `serde` (feature `serde`): serde types as pickles, and pickles into serde types |
//! | entry points | `lib.rs`, `unpickler.rs`, `pickler.rs`, `inspect.rs` | [`from_slice`], [`to_vec`] and friends; [`Unpickler`] and [`Pickler`], which put an engine and the typed layer together; [`inspect`], which walks a pickle without loading it |
//! | typed | `typed/` | [`Reduce`] and [`Saver`] (`save.rs`), [`Construct`], [`Node`] and [`Dynamic`] (`construct.rs`), the [`Registry`] (`registry.rs`, `copyreg`), the standard library's impls (`impls.rs`), instance state and [`Rest`] (`state.rs`). The only import loop is here, and it is copyreg's: the registry stores callbacks typed over `Saver` and `Node`, and those look callbacks up in the registry |
//! | reader engine | `read/` | the inputs ([`SliceRead`], [`IoRead`]), each opcode's argument (`decode.rs`, shared with [`inspect`]), the stack machine (`machine.rs`); it asks about globals only through its own `Resolve` trait (its `find_class`), which the registry implements |
//! | writer engine | `write/` | the [`Value`] encoder (`encode.rs`), the output with its frames and memo (`out.rs`), and CPython's container rules, used by both writers (`rules.rs`: tuple ends, batches of 1000, `set` before protocol 4) |
//! | value model | `value/` | [`Value`], [`Graph`] with the algorithms between graphs and trees (`graph.rs`), [`Global`], [`Reduction`], [`Step`], [`PickleBuffer`] |
//! | text | `text/` | [`PyStr`] (`pystr.rs`), float `repr` and protocol 0's escapes, the Python 2/3 names (`compat.rs`), what `repr` prints as is (`printable.rs`) |
//! | leaves | `base/` | opcodes and protocol numbers ([`op`]), [`Error`], [`Limits`] and [`MAX_TYPED_DEPTH`] |
//!
//! # Limits and errors
//!
//! Every failure is an [`Error`] with an [`ErrorKind`] that says what was
//! expected and what was found. A fault in the pickle itself (truncated, an
//! unknown opcode, a global that is not allowed) carries the byte offset and
//! the opcode where it happened ([`Error::offset`]); a value that does not
//! fit the type asked for carries its path in the value instead
//! ([`Error::path`]: `[3].points[0].x: expected float, found str`). No
//! input makes the reader panic, overflow the stack or allocate more than
//! the input's length justifies (a `BINBYTES8` claiming 2<sup>63</sup>
//! bytes fails before allocating anything); the [`Limits`] bound the rest.
//!
//! # Security
//!
//! [`security`] is the security model: what loading can and cannot do,
//! compared point by point with CPython's `find_class`, picklescan and
//! fickling, what is safe to load from an untrusted source, and what a
//! registered constructor must guard itself.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod base;
#[doc(hidden)]
pub mod __private {
    pub use crate::typed::private::*;
}
pub mod inspect;
mod pickler;
mod python;
mod read;
pub mod security;
#[cfg(feature = "serde")]
pub mod serde;
mod text;
mod typed;
mod unpickler;
mod value;
mod write;

pub use crate::base::error::{Error, ErrorKind, Result};
pub use crate::base::limits::{Limits, MAX_TYPED_DEPTH};
pub use crate::base::op;
pub use crate::base::op::{DEFAULT_PROTOCOL, HIGHEST_PROTOCOL};
pub use crate::pickler::{BufferCallback, PersistentId, Pickler};
pub use crate::python::{numpy, preset, stdlib, torch};
pub use crate::read::input::{Input, IoRead, SliceRead};
pub use crate::read::{PersistentLoad, StringDecoding};
pub use crate::text::PyStr;
pub use crate::typed::construct::{Call, Construct, Dynamic, Node, StateNode};
pub use crate::typed::impls::{bytes, tuple, ByteArray, Bytes, Interned};
pub use crate::typed::registry::Preset;
pub use crate::typed::registry::{
    registry, ConstructorFn, GlobalRegistry, ReducerFn, Registry, UpcastFn,
};
pub use crate::typed::save::{
    FnReduce, Reduce, ReducerOverride, ReductionSaver, Registered, Saver,
};
pub use crate::typed::state::Rest;
pub use crate::unpickler::Unpickler;
pub use crate::value::{Global, Graph, Id, Persistent, PickleBuffer, Reduction, Seq, Step, Value};
pub use num_bigint::BigInt;
/// Derives [`Reduce`](trait@Reduce) and [`Construct`] for a type and
/// registers it, so that Python's `module.Name(*fields)` and the Rust type
/// read and write each other.
///
/// ```
/// use reduce::Reduce;
///
/// #[derive(Reduce, Debug, PartialEq)]
/// #[reduce(module = "geometry")]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
///
/// // geometry.Point(1.0, 2.0), as CPython writes it for a class whose
/// // __reduce__ returns (Point, (self.x, self.y)).
/// let bytes = reduce::to_vec_with_protocol(&Point { x: 1.0, y: 2.0 }, 2)?;
/// assert_eq!(
///     bytes,
///     b"\x80\x02cgeometry\nPoint\nq\x00G?\xf0\x00\x00\x00\x00\x00\x00G@\x00\x00\x00\x00\x00\x00\x00\x86q\x01Rq\x02.",
/// );
/// // The type registered itself at link time, so strict loading allows it.
/// let back: Point = reduce::from_slice(&bytes)?;
/// assert_eq!(back, Point { x: 1.0, y: 2.0 });
/// # Ok::<(), reduce::Error>(())
/// ```
///
/// # Forms
///
/// | attribute | Rust | Python |
/// |---|---|---|
/// | (none) | `struct Point { x, y }`, `struct Pair(a, b)`, `struct Unit` | `module.Point(x, y)` (`REDUCE`) |
/// | `state` | `struct Account { owner, balance }` | an ordinary instance or dataclass: `copyreg.__newobj__(Account)` then `BUILD` with `{"owner": ..., "balance": ...}` |
/// | `state = "slots"` | `struct Point { x, y }` | an instance of a class with `__slots__` (`@dataclass(slots=True)`): `BUILD` with `(None, {"x": ..., "y": ...})` |
/// | `state, default` | as `state`, `Self: Default` | the same; missing keys keep their default, and `Rc<RefCell<Self>>` may take part in cycles |
/// | (none), on an enum | `enum Shape { Circle { r }, Empty }` | nested classes: `module.Shape.Circle(r)`, `module.Shape.Empty()` |
/// | `flat_variants` | `enum Token { Word { text } }` | top-level classes: `module.Word(text)` |
/// | `python_enum` | `enum Color { Red = 1, #[reduce(value = "blue")] Blue }` | `enum.Enum` members, by value: `module.Color(1)`, each written once per pickle and fetched from the memo after (a member is one object) |
///
/// The module defaults to the Rust module path with `::` written as `.`,
/// the name to the type's name.
///
/// # Container attributes
///
/// | attribute | meaning |
/// |---|---|
/// | `module = "a.b"` | the Python module |
/// | `name = "Name"` | the Python qualified name (`"Outer.Inner"` for a nested class) |
/// | `crate = "path"` | where the runtime is, if `reduce` is re-exported under another path |
/// | `state`, `state = "dict"`, `state = "slots"`, `default`, `flat_variants`, `python_enum` | the forms above |
/// | `deny_unknown_fields` | with `state`: an attribute the type has no field for is an error naming it (the default drops it) |
///
/// # Field and variant attributes
///
/// | attribute | meaning |
/// |---|---|
/// | `rename = "n"` | the field's name in a state `__dict__` and in error paths; on a variant, its class's whole qualified name in the module (`"Shape.Circle"` keeps it nested in the enum's class, `"Circle"` makes it a class of the module) |
/// | `skip` | not written; read back as `Default::default()`, or `default = "path::to::fn"` |
/// | `default`, `default = "path::to::fn"` | with `state`: the value when the key is missing (`Default::default()`, or the function's); a field's `default = "path"` wins over the container's `default` |
/// | `with = "module"` | written by `module::reduce(&T, &mut Saver)`, read by `module::construct(Node) -> Result<T>` |
/// | `bytes` | a `Vec<u8>` written as Python `bytes` (`with = "reduce::bytes"`) |
/// | `registry` | a field of a foreign type, written and read through the [`Registry`] |
/// | `serde` | a field whose type has only serde's `Serialize`/`Deserialize`: written as the plain data serde gives it, read back through serde (feature `serde`; see `reduce::serde::field`) |
/// | `rest` | with `state`: a [`Rest`] field (`Vec<(String, Value)>`, `BTreeMap<String, Value>`, `IndexMap`) that keeps the attributes no other field names, and writes them back |
/// | `in_dict` | with `state = "slots"`: the attribute lives in the instance `__dict__`, not in a slot (for a `rest` field: write the kept attributes there) |
/// | `value = 1` / `value = "s"` | a `python_enum` member's value (else its discriminant) |
///
/// Bounds are inferred per type parameter: `T: Reduce` (or `T: Construct`)
/// for each `T` that appears in a field written the default way.
///
/// # Python instances: `__dict__`, `__slots__` and unknown attributes
///
/// CPython pickles an instance of an ordinary class (a dataclass too) as
/// `copyreg.__newobj__(cls)` and a *state* applied by `BUILD`: its
/// `__dict__`, or, when the class has `__slots__`, the pair
/// `(__dict__ or None, {slot: value})`. Both `state` forms read either
/// shape, so a field is found wherever the instance keeps it; what they
/// write differs. `state` writes a `__dict__`; `state = "slots"` writes the
/// pair, with the fields marked `in_dict` in its `__dict__` part. (CPython
/// itself cannot pickle a `__slots__` class at protocols 0 and 1; what
/// this crate writes at those protocols, it loads.)
///
/// ```
/// use reduce::{Reduce, Value};
///
/// // @dataclass(slots=True)
/// // class Point:
/// //     x: float
/// //     y: float
/// #[derive(Reduce, Debug, PartialEq)]
/// #[reduce(module = "geometry", state = "slots")]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
///
/// let bytes = reduce::to_vec(&Point { x: 1.0, y: 2.0 })?;
/// // What CPython writes for Point(1.0, 2.0): the slots, by name.
/// let value: Value = reduce::Unpickler::from_slice(&bytes).inert(true).load()?;
/// assert_eq!(
///     format!("{value:?}"),
///     "<reduce copyreg.__newobj__, (geometry.Point,), state=(None, {'x': 1.0, 'y': 2.0})>"
/// );
/// assert_eq!(reduce::from_slice::<Point>(&bytes)?, Point { x: 1.0, y: 2.0 });
/// # Ok::<(), reduce::Error>(())
/// ```
///
/// An attribute of the instance that the Rust type has no field for is
/// dropped by default, so that a Python class may grow without breaking its
/// Rust readers. (It is dropped after it is read: an attribute that holds
/// an instance of a class, a `datetime.date` say, names that class's
/// global, which must be allowed as every global is, by a registered type
/// or a preset such as [`preset::STDLIB`].)
/// `deny_unknown_fields` makes it an error that names it, and
/// a `rest` field keeps it and writes it back (into the `__dict__`, or for
/// `state = "slots"` into the slots unless the field is `in_dict`).
/// Skipped fields are not read, so their attributes count as unknown.
///
/// ```
/// use reduce::{Reduce, Reduction, Value};
///
/// #[derive(Reduce, Debug, PartialEq)]
/// #[reduce(module = "shop", state)]
/// struct Item {
///     name: String,
/// }
///
/// #[derive(Reduce, Debug)]
/// #[reduce(module = "shop", state, deny_unknown_fields)]
/// struct StrictItem {
///     name: String,
/// }
///
/// #[derive(Reduce, Debug, PartialEq)]
/// #[reduce(module = "shop", state)]
/// struct OpenItem {
///     name: String,
///     #[reduce(rest)]
///     other: Vec<(String, Value)>,
/// }
///
/// // An instance of shop.<class> with the __dict__ {'name': 'pen', 'colour': 'red'},
/// // as CPython pickles it.
/// fn pen(class: &str) -> reduce::Result<Vec<u8>> {
///     let new = Value::global("copyreg", "__newobj__");
///     let mut pen = Reduction::new(new, Value::Tuple(vec![Value::global("shop", class)]));
///     pen.state = Some(Value::Dict(vec![
///         (Value::str("name"), Value::str("pen")),
///         (Value::str("colour"), Value::str("red")),
///     ]));
///     reduce::to_vec(&Value::Reduce(Box::new(pen)))
/// }
///
/// // Dropped...
/// assert_eq!(reduce::from_slice::<Item>(&pen("Item")?)?, Item { name: "pen".into() });
/// // ...refused by name...
/// let err = reduce::from_slice::<StrictItem>(&pen("StrictItem")?).unwrap_err();
/// assert!(err.to_string().starts_with(
///     "expected only name in the state of shop.StrictItem, found `colour`: Rust type "
/// ));
/// // ...or kept, and written back.
/// let kept: OpenItem = reduce::from_slice(&pen("OpenItem")?)?;
/// assert_eq!(kept.other, [("colour".to_string(), Value::str("red"))]);
/// assert_eq!(reduce::from_slice::<Value>(&reduce::to_vec(&kept)?)?, reduce::from_slice::<Value>(&pen("OpenItem")?)?);
/// # Ok::<(), reduce::Error>(())
/// ```
///
/// An error in the state says where, which Python class and which Rust
/// field: `[3].points[0].x: expected float, found str (in Rust field
/// app::Point::x)`, `[1]: expected attribute `y` in the state of
/// geometry.Point, found none (...)`.
///
/// # Registration
///
/// A derived type registers its constructor in the process-wide
/// [`registry()`] at link time, before `main` (with `inventory`). Two types
/// claiming one global are recorded in [`Registry::conflicts`], and loading
/// that global says so. A *generic* type cannot register itself, since each
/// instantiation is a different type: register one instantiation, any one,
/// with `reduce::registry().register::<Wrapper<u8>>("module", "Wrapper")`,
/// as the error for an unregistered one says. That allows the global, and
/// every instantiation then reads it (the Rust type read says which); a
/// second instantiation under the same name is refused as a duplicate.
///
/// Every misuse of an attribute is a compile error at the attribute, naming
/// the fix; all of a derive's mistakes are reported at once.
#[cfg(feature = "derive")]
pub use reduce_derive::Reduce;

/// Reads one pickle from a byte slice, with the default options (strict
/// globals, ASCII Python 2 strings, default [`Limits`]). Bytes after `STOP`
/// are ignored; use [`Unpickler::from_slice`] to read on from there.
///
/// ```
/// let value: reduce::Value = reduce::from_slice(b"\x80\x04K\x2a.")?;
/// assert_eq!(value, reduce::Value::Int(42));
/// let n: u8 = reduce::from_slice(b"\x80\x04K\x2a.")?;
/// assert_eq!(n, 42);
/// # Ok::<(), reduce::Error>(())
/// ```
pub fn from_slice<T: Construct>(bytes: &[u8]) -> Result<T> {
    Unpickler::from_slice(bytes).load()
}

/// Reads one pickle from `reader`, with the default options, leaving the
/// reader just after its `STOP`. Wrap unbuffered readers in
/// [`std::io::BufReader`]. A typed read takes the pickle into memory
/// first (through `STOP`, never past it) and builds the value straight
/// from its opcodes, as [`from_slice`] does.
///
/// ```
/// // Two pickles in a file: pickle.dumps([1, 2]) + pickle.dumps('x')
/// let file = b"\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01K\x02e.\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00\x8c\x01x\x94.";
/// let mut reader = std::io::BufReader::new(&file[..]);
/// let first: Vec<u8> = reduce::from_reader(&mut reader)?;
/// let second: String = reduce::from_reader(&mut reader)?;
/// assert_eq!((first, second.as_str()), (vec![1, 2], "x"));
/// # Ok::<(), reduce::Error>(())
/// ```
pub fn from_reader<T: Construct, R: std::io::Read>(reader: R) -> Result<T> {
    Unpickler::new(reader).load()
}

/// Writes `value` as a pickle at protocol [`DEFAULT_PROTOCOL`] (5).
///
/// The output starts with room for about a kilobyte, so that a record
/// is written without growing it; the `Vec` of a smaller pickle keeps that
/// room. A program that holds many small pickles can give it back with
/// [`Vec::shrink_to_fit`] (giving it back on every write would cost a
/// small write more than the write itself).
///
/// ```
/// use reduce::Value;
///
/// let bytes = reduce::to_vec(&Value::List(vec![Value::Int(1), "a".into()]))?;
/// assert_eq!(bytes, b"\x80\x05\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01a\x94e.");
/// // Typed values write as their Python twins, straight to bytes.
/// assert_eq!(reduce::to_vec(&vec![1i32])?, reduce::to_vec(&Value::List(vec![Value::Int(1)]))?);
/// # Ok::<(), reduce::Error>(())
/// ```
pub fn to_vec<T: Reduce + ?Sized>(value: &T) -> Result<Vec<u8>> {
    to_vec_with_protocol(value, DEFAULT_PROTOCOL)
}

/// Writes `value` as a pickle at protocol `proto` (0 to 5).
pub fn to_vec_with_protocol<T: Reduce + ?Sized>(value: &T, proto: u8) -> Result<Vec<u8>> {
    crate::pickler::to_vec(value, proto)
}

/// Writes `value` as a pickle at protocol [`DEFAULT_PROTOCOL`] to `writer`.
pub fn to_writer<T: Reduce + ?Sized, W: std::io::Write>(writer: W, value: &T) -> Result<()> {
    Pickler::new(writer).dump(value)
}
