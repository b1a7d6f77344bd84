//! Writing typed values: the [`Reduce`] trait and the [`Saver`] it writes to.
//!
//! A `Saver` streams straight to pickle bytes: no [`Value`](crate::Value) tree is built.
//! It makes CPython's memo decisions (every `str`, `bytes`, container and
//! reduced object is memoized), and keeps identity where Rust has it: two
//! clones of one `Rc` or `Arc` are one object in the pickle, written once
//! and then as a memo reference.

use std::any::Any;

use num_bigint::BigInt;

use crate::base::error::{Error, ErrorKind, Result};
use crate::base::hash::AddrMap;
use crate::base::limits::{grow, GROW_EVERY, MAX_TYPED_DEPTH};
use crate::base::op::*;
use crate::text::PyStr;
use crate::typed::registry::Lookup;
use crate::value::{Graph, PickleBuffer, Value};
use crate::write::names::{FieldNames, StaticName};
use crate::write::out::{unpicklable, Out};
use crate::write::rules::{self, Batcher, Batches, Batching};

/// How a value of this type is written as a pickle: Python's `__reduce__`.
///
/// Plain data writes itself as its Python twin (a `Vec` is a `list`, a
/// `HashMap` a `dict`, ...); other types write a *reduction*, a constructor
/// named by its global path plus arguments, with [`Saver::reduction`].
///
/// The standard library's types, both ways ([`Construct`](crate::Construct)
/// reads the same twins back):
///
/// | Rust | Python |
/// |---|---|
/// | `bool` | `bool` |
/// | `i8` … `i128`, `u8` … `u128`, `isize`, `usize` | `int` |
/// | `f32`, `f64` | `float` (an `int` reads as a float too; a finite float beyond `f32::MAX` is an error for `f32`) |
/// | `char`, `String`, `&str`, `Box<str>`, `Cow<str>`, [`PyStr`](crate::PyStr) | `str` |
/// | `Vec<T>`, `VecDeque<T>`, `[T; N]`, `[T]` | `list` (reads from a tuple too); a `tuple` as a dict key or set item |
/// | `(A, B, …)` up to 12, `()` | `tuple` |
/// | `Option<T>` | `None` or the value |
/// | `HashMap`, `BTreeMap` | `dict` |
/// | `HashSet`, `BTreeSet` | `set` (reads from a frozenset or list too); a `frozenset` as a dict key or set item |
/// | `indexmap::IndexMap`, `indexmap::IndexSet` (feature `indexmap`) | `dict` in insertion order (as Python keeps it), `set` in the set's order |
/// | `Box<T>`, `RefCell<T>` | as `T` |
/// | `Rc<T>`, `Arc<T>` | as `T`, with identity: clones are one object |
/// | [`Bytes`](crate::Bytes), [`ByteArray`](crate::ByteArray) | `bytes`, `bytearray` |
/// | [`Value`](crate::Value), [`Graph`](crate::Graph) | any object |
///
/// Python hashes dict keys and set items, and cannot hash a list, a set or
/// a dict: a `Vec` or a set there (a `HashMap<Vec<u8>, _>`, a
/// `BTreeSet<BTreeSet<_>>`) is written as a tuple or a frozenset, down
/// through tuples, and a map there is an error. The arguments of an object
/// made by a call are not keys, and keep their lists.
///
/// Hash maps and sets are written in a fixed order (their keys sorted by
/// their pickled bytes), so the same value always gives the same bytes.
/// A byte buffer (`Vec<u8>`) is a `list` of ints like any `Vec`; wrap it in
/// [`Bytes`](crate::Bytes) to write Python `bytes`.
///
/// ```
/// use reduce::{Reduce, Saver};
///
/// struct Point { x: f64, y: f64 }
///
/// impl Reduce for Point {
///     fn reduce(&self, s: &mut Saver<'_, '_>) -> reduce::Result<()> {
///         // geometry.Point(x, y)
///         s.reduction("geometry", "Point").args(&(self.x, self.y)).save()
///     }
/// }
///
/// let bytes = reduce::to_vec_with_protocol(&Point { x: 1.0, y: 2.0 }, 2)?;
/// assert_eq!(
///     bytes,
///     b"\x80\x02cgeometry\nPoint\nq\x00G?\xf0\x00\x00\x00\x00\x00\x00G@\x00\x00\x00\x00\x00\x00\x00\x86q\x01Rq\x02.",
/// );
/// # Ok::<(), reduce::Error>(())
/// ```
pub trait Reduce {
    /// Writes `self` to `s` as exactly one object.
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()>;

    /// Whether `reduce` never writes another value through
    /// [`Saver::save`] (an int, a float, a str), so that saving it needs no
    /// depth guard. The crate's own atoms say yes; leave the default.
    #[doc(hidden)]
    #[inline]
    fn __leaf(&self) -> bool {
        false
    }
}

/// The error for a value Python cannot hash where it must (a dict key, a
/// set item).
#[cold]
fn unhashable(what: &str) -> Error {
    unpicklable(format!(
        "a {what} cannot be a dict key or a set item: Python cannot hash it"
    ))
}

/// A hook asked about every value written through the registry before the
/// registry itself: Python's `reducer_override`. Return `Ok(true)` when it
/// wrote the value.
pub type ReducerOverride<'h> = Box<dyn FnMut(&dyn Any, &mut Saver<'_, '_>) -> Result<bool> + 'h>;

type OverrideHook<'s> = dyn FnMut(&dyn Any, &mut Saver<'_, '_>) -> Result<bool> + 's;
type PersistentIdHook<'s> = dyn FnMut(&dyn Any) -> Option<Value> + 's;
type BufferHook<'s> = dyn FnMut(&PickleBuffer) -> bool + 's;

/// The caller's hooks, borrowed for one dump.
pub(crate) struct Hooks<'s> {
    pub(crate) reducer_override: Option<&'s mut OverrideHook<'s>>,
    pub(crate) persistent_id: Option<&'s mut PersistentIdHook<'s>>,
    pub(crate) buffer_callback: Option<&'s mut BufferHook<'s>>,
}

/// Where a typed value is written. Each method writes exactly one object.
pub struct Saver<'s, 'o> {
    /// Owned, as the serde writer's is: each `Reduce::reduce` loop gets
    /// `&mut Saver`, and an output one pointer away keeps its length out
    /// of reach of the bytes stored.
    pub(crate) out: Out<'o>,
    pub(crate) registry: &'s Lookup,
    /// Memo indexes of objects with identity (the target of an `Rc`/`Arc`).
    ptr_memo: AddrMap<usize, u32>,
    /// The identity of the object about to be written, set by [`Saver::shared`].
    pending: Option<usize>,
    depth: usize,
    hooks: Hooks<'s>,
    /// Whether the value being written is a dict key or a set item, which
    /// Python must hash: a list is then written as a tuple and a set as a
    /// frozenset, and a dict is an error (see [`Saver::list`]).
    hashable: bool,
}

impl<'s, 'o> Saver<'s, 'o> {
    pub(crate) fn new(out: Out<'o>, registry: &'s Lookup, hooks: Hooks<'s>) -> Self {
        Saver {
            out,
            registry,
            ptr_memo: AddrMap::default(),
            pending: None,
            depth: 0,
            hooks,
            hashable: false,
        }
    }

    /// The protocol being written.
    pub fn protocol(&self) -> u8 {
        self.out.proto
    }

    /// The bytes `value` pickles to on its own (at protocol 4 or up), with
    /// this saver's registry, extension codes and hooks: how hash
    /// containers order their items the same way every time.
    pub(crate) fn sort_key<T: Reduce + ?Sized>(&mut self, value: &T) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        let out = self.out.fresh(self.out.proto.max(4), &mut buf)?;
        let hooks = Hooks {
            reducer_override: self.hooks.reducer_override.as_deref_mut().map(|h| h as _),
            persistent_id: self.hooks.persistent_id.as_deref_mut().map(|h| h as _),
            buffer_callback: self.hooks.buffer_callback.as_deref_mut().map(|h| h as _),
        };
        let mut sub = Saver::new(out, self.registry, hooks);
        sub.out.start();
        sub.depth = self.depth;
        sub.hashable = true;
        value.reduce(&mut sub)?;
        sub.out.finish()?;
        drop(sub);
        Ok(buf)
    }

    /// Writes one child value, guarding the depth.
    #[inline(always)]
    pub fn save<T: Reduce + ?Sized>(&mut self, value: &T) -> Result<()> {
        if value.__leaf() {
            // An atom goes no deeper.
            return value.reduce(self);
        }
        let depth = self.depth + 1;
        // Each level recurses: grow the stack on the heap when it runs low
        // (checked every few levels; the red zone covers those between).
        if depth.is_multiple_of(GROW_EVERY) || depth > MAX_TYPED_DEPTH {
            return self.save_deep(value);
        }
        self.depth = depth;
        let r = value.reduce(self);
        self.depth = depth - 1;
        r
    }

    /// [`Saver::save`] every few levels: the depth limit, and more stack.
    #[inline(never)]
    fn save_deep<T: Reduce + ?Sized>(&mut self, value: &T) -> Result<()> {
        if self.depth >= MAX_TYPED_DEPTH {
            return Err(unpicklable(format!(
                "maximum recursion depth ({MAX_TYPED_DEPTH}) exceeded while pickling a typed value; write deep data as a reduce::Graph"
            )));
        }
        self.depth += 1;
        let r = grow(|| value.reduce(self));
        self.depth -= 1;
        r
    }

    /// [`Saver::save`] of a dict key or a set item, which Python hashes.
    #[inline]
    fn save_key<T: Reduce + ?Sized>(&mut self, value: &T) -> Result<()> {
        if value.__leaf() {
            return value.reduce(self);
        }
        let was = std::mem::replace(&mut self.hashable, true);
        let r = self.save(value);
        self.hashable = was;
        r
    }

    #[inline]
    fn take_identity(&mut self) -> Option<usize> {
        self.pending.take()
    }

    #[inline]
    fn remember(&mut self, key: Option<usize>, idx: u32) {
        if let Some(k) = key {
            self.remember_shared(k, idx);
        }
    }

    /// The memo index of an object with identity: out of line, as most
    /// objects have none and the map's insertion would crowd the writing
    /// of every string.
    #[inline(never)]
    fn remember_shared(&mut self, key: usize, idx: u32) {
        self.ptr_memo.insert(key, idx);
    }

    #[inline]
    fn memo_put(&mut self, key: Option<usize>) -> Result<()> {
        let idx = self.out.memo_put()?;
        self.remember(key, idx);
        Ok(())
    }

    /// Writes an object that has identity, such as the target of an `Rc`:
    /// the first time in full (through `write`), every later time as a memo
    /// reference. `key` must be unique to the object while it is being
    /// written, e.g. its address.
    pub fn shared(
        &mut self,
        key: usize,
        write: impl FnOnce(&mut Self) -> Result<()>,
    ) -> Result<()> {
        if let Some(&idx) = self.ptr_memo.get(&key) {
            return self.out.get(idx);
        }
        self.pending = Some(key);
        let r = write(self);
        self.pending = None;
        r
    }

    // ---- atoms ------------------------------------------------------------
    //
    // `None`, bools, ints and floats are not memoized, so an identity
    // pending for them (an `Rc<f64>`) has nothing to attach to: the hot
    // ones (`none`, `bool`, `i64`, `f64`) leave it, and [`Saver::shared`]
    // clears it when its one object is written.

    /// `None`.
    #[inline]
    pub fn none(&mut self) -> Result<()> {
        self.out.none()
    }

    /// A `bool`.
    #[inline]
    pub fn bool(&mut self, b: bool) -> Result<()> {
        self.out.bool(b)
    }

    /// An `int`.
    #[inline]
    pub fn i64(&mut self, i: i64) -> Result<()> {
        self.out.int(i)
    }

    /// An `int` of up to 128 bits.
    pub fn i128(&mut self, i: i128) -> Result<()> {
        self.pending = None;
        self.out.int128(i)
    }

    /// An `int` of any size.
    pub fn bigint(&mut self, i: &BigInt) -> Result<()> {
        self.pending = None;
        self.out.bigint(i)
    }

    /// A `float`.
    #[inline]
    pub fn f64(&mut self, x: f64) -> Result<()> {
        self.out.float(x)
    }

    /// A `str`.
    #[inline(always)]
    pub fn str(&mut self, s: &str) -> Result<()> {
        let key = self.take_identity();
        if s.len() <= 2 && Out::is_single_str(s.as_bytes()) {
            return self.single_str(s, key);
        }
        self.out.str_utf8(s)?;
        self.remember(key, self.out.last_memo());
        Ok(())
    }

    /// [`Saver::str`] of CPython's one object of `""` or of a Latin-1
    /// character: a memo reference after the first. Out of line, so that
    /// other strings pay one comparison.
    #[inline(never)]
    fn single_str(&mut self, s: &str, key: Option<usize>) -> Result<()> {
        let idx = self.out.single_str(s)?;
        self.remember(key, idx);
        Ok(())
    }

    /// A `str` that CPython keeps interned (an attribute name): written once
    /// per pickle, then as a memo reference. See [`Interned`](crate::Interned).
    pub fn interned_str(&mut self, s: &str) -> Result<()> {
        self.pending = None;
        self.out.interned_str(s).map(|_| ())
    }

    /// Name `i` of a derived type's field names, as
    /// [`Saver::interned_str`] writes it.
    #[inline]
    pub(crate) fn field_name(&mut self, names: &'static FieldNames, i: usize) -> Result<()> {
        self.pending = None;
        self.out.reserve_names(names.ids());
        self.out.field_name(&names.table()[i])
    }

    /// A `str` that may hold lone surrogates.
    pub fn py_str(&mut self, s: &PyStr) -> Result<()> {
        let key = self.take_identity();
        let idx = match s.as_str() {
            Some(t) if t.len() <= 2 && Out::is_single_str(t.as_bytes()) => {
                self.out.single_str(t)?
            }
            _ => self.out.str(s)?,
        };
        self.remember(key, idx);
        Ok(())
    }

    /// A `bytes` object.
    pub fn bytes(&mut self, b: &[u8]) -> Result<()> {
        let key = self.take_identity();
        let idx = self.out.bytes_value(b)?;
        self.remember(key, idx);
        Ok(())
    }

    /// A `bytearray`.
    pub fn bytearray(&mut self, b: &[u8]) -> Result<()> {
        let key = self.take_identity();
        let idx = self.out.bytes(b, true)?;
        self.remember(key, idx);
        Ok(())
    }

    /// A global `module.name` (a class or function, by name).
    pub fn global(&mut self, module: &str, name: &str) -> Result<()> {
        let key = self.take_identity();
        if let Some(idx) = self.out.global(module, name)? {
            self.remember(key, idx);
        }
        Ok(())
    }

    /// A [`Value`](crate::Value) (a tree without [`Value::Ref`]s), as
    /// CPython writes the same objects made at run time.
    pub fn value(&mut self, v: &Value) -> Result<()> {
        self.pending = None;
        let callback = self.hooks.buffer_callback.as_deref_mut().map(|h| h as _);
        crate::write::encode::encode_tree(&mut self.out, v, callback)
    }

    /// A [`Graph`]: its root, with its shared objects.
    pub fn graph(&mut self, g: &Graph) -> Result<()> {
        self.pending = None;
        let callback = self.hooks.buffer_callback.as_deref_mut().map(|h| h as _);
        crate::write::encode::encode_into(&mut self.out, &g.root, &g.objects, callback)
    }

    /// A persistent id: a reference to an object kept outside the pickle,
    /// which the reader's `persistent_load` hook resolves. At protocol 0 the
    /// id must be an ASCII `str`.
    pub fn persistent_id(&mut self, pid: &Value) -> Result<()> {
        self.pending = None;
        self.value(&Value::PersistentId(Box::new(pid.clone().into())))
    }

    // ---- containers -------------------------------------------------------

    /// A `tuple` of `len` items, which `items` writes (each with
    /// [`Saver::save`]).
    #[inline]
    pub fn tuple(&mut self, len: usize, items: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        let key = self.take_identity();
        let proto = self.out.proto;
        self.out.begin()?;
        self.out.write(rules::tuple_open(proto, len));
        if len == 0 {
            return Ok(());
        }
        items(self)?;
        match key {
            // The common case: its closer and `MEMOIZE` in one write.
            None => self.out.close_memoized(rules::tuple_close(proto, len)),
            Some(k) => self.tuple_end_shared(k, len),
        }
    }

    /// The end of a tuple with identity (the target of an `Rc`).
    #[inline(never)]
    fn tuple_end_shared(&mut self, key: usize, len: usize) -> Result<()> {
        let proto = self.out.proto;
        if let Some(&idx) = self.ptr_memo.get(&key) {
            // The tuple reached itself through its items: keep that copy.
            let (op, times) = rules::tuple_unwind(proto, len);
            self.out.write(&vec![op; times]);
            self.out.get_within(idx);
            return Ok(());
        }
        self.out.write(&[rules::tuple_close(proto, len)]);
        self.memo_put(Some(key))
    }

    /// An empty list or dict, as CPython opens one before its items
    /// (`empty` from protocol 1, `MARK` and `closer` before), memoized.
    #[inline(always)]
    fn open_container(&mut self, empty: u8, closer: u8) -> Result<()> {
        let key = self.take_identity();
        self.out.begin()?;
        if self.out.proto >= 1 {
            self.out.write(&[empty]);
        } else {
            self.out.write(&[MARK, closer]);
        }
        self.memo_put(key)
    }

    /// A `list` of `items`; a `tuple` of them where Python needs a
    /// hashable value (a dict key, a set item, or an item of a tuple that
    /// is one), since a list cannot be hashed: a `HashMap<Vec<u8>, _>` is a
    /// dict with tuple keys, which read back into `Vec`s.
    pub fn list<'a, T, I>(&mut self, items: I) -> Result<()>
    where
        T: Reduce + ?Sized + 'a,
        I: IntoIterator<Item = &'a T>,
        I::IntoIter: ExactSizeIterator,
    {
        if self.hashable {
            return self.list_as_tuple(items.into_iter());
        }
        self.list_of(items.into_iter(), false)
    }

    /// A `list` of `items`, each written as a dict key if `keys`.
    #[inline(always)]
    fn list_of<'a, T, I>(&mut self, mut items: I, keys: bool) -> Result<()>
    where
        T: Reduce + ?Sized + 'a,
        I: ExactSizeIterator<Item = &'a T>,
    {
        self.open_container(EMPTY_LIST, LIST)?;
        self.batch(Batching::List, items.len(), APPEND, APPENDS, |s| {
            let item = items.next().ok_or_else(short_iterator)?;
            if keys {
                s.save_key(item)
            } else {
                s.save(item)
            }
        })
    }

    /// [`Saver::list`] where a hashable value is needed.
    #[inline(never)]
    fn list_as_tuple<'a, T, I>(&mut self, mut items: I) -> Result<()>
    where
        T: Reduce + ?Sized + 'a,
        I: ExactSizeIterator<Item = &'a T>,
    {
        self.tuple(items.len(), |s| {
            for _ in 0..items.len() {
                s.save(items.next().ok_or_else(short_iterator)?)?;
            }
            Ok(())
        })
    }

    /// A `dict` of `pairs`, in the order given.
    pub fn dict<'a, K, V, I>(&mut self, pairs: I) -> Result<()>
    where
        K: Reduce + ?Sized + 'a,
        V: Reduce + ?Sized + 'a,
        I: IntoIterator<Item = (&'a K, &'a V)>,
        I::IntoIter: ExactSizeIterator,
    {
        if self.hashable {
            return Err(unhashable("dict"));
        }
        self.open_container(EMPTY_DICT, DICT)?;
        let mut pairs = pairs.into_iter();
        self.batch(Batching::Dict, pairs.len(), SETITEM, SETITEMS, |s| {
            let (k, v) = pairs.next().ok_or_else(short_iterator)?;
            s.save_key(k)?;
            s.save(v)
        })
    }

    /// A `dict` of `n` attributes, each named by `names` and written by
    /// `fields` with [`StateDict::field`]: an instance's `__dict__`, as
    /// [`Saver::dict`] writes it.
    pub(crate) fn state_dict(
        &mut self,
        names: &'static FieldNames,
        n: usize,
        fields: impl FnOnce(&mut StateDict<'_, 's, 'o>) -> Result<()>,
    ) -> Result<()> {
        self.open_container(EMPTY_DICT, DICT)?;
        self.out.reserve_names(names.ids());
        let proto = self.out.proto;
        let batch = Batcher::started(Batching::Dict, proto, n, &mut self.out);
        let mut dict = StateDict {
            saver: self,
            names: names.table(),
            batch,
        };
        fields(&mut dict)?;
        let StateDict { saver, batch, .. } = dict;
        batch.end(&mut saver.out);
        Ok(())
    }

    /// A `set` of `items`, in the order given; a `frozenset` where Python
    /// needs a hashable value (see [`Saver::list`]).
    pub fn set<'a, T, I>(&mut self, items: I) -> Result<()>
    where
        T: Reduce + ?Sized + 'a,
        I: IntoIterator<Item = &'a T>,
        I::IntoIter: ExactSizeIterator,
    {
        if self.hashable {
            return self.frozenset(items);
        }
        let key = self.take_identity();
        let mut items = items.into_iter();
        if let Some(global) = rules::set_constructor(self.out.proto, false) {
            return self.set_by_reduce(key, global, items);
        }
        self.out.begin()?;
        self.out.write(&[EMPTY_SET]);
        self.memo_put(key)?;
        self.batch(Batching::Set, items.len(), ADDITEMS, ADDITEMS, |s| {
            s.save_key(items.next().ok_or_else(short_iterator)?)
        })
    }

    /// A `frozenset` of `items`, in the order given.
    pub fn frozenset<'a, T, I>(&mut self, items: I) -> Result<()>
    where
        T: Reduce + ?Sized + 'a,
        I: IntoIterator<Item = &'a T>,
        I::IntoIter: ExactSizeIterator,
    {
        let key = self.take_identity();
        if let Some(global) = rules::set_constructor(self.out.proto, true) {
            return self.set_by_reduce(key, global, items.into_iter());
        }
        self.out.begin()?;
        self.out.write(&[MARK]);
        for item in items {
            self.save_key(item)?;
        }
        if let Some(&idx) = key.and_then(|k| self.ptr_memo.get(&k)) {
            self.out.write(&[POP_MARK]);
            self.out.get_within(idx);
            return Ok(());
        }
        self.out.write(&[FROZENSET]);
        self.memo_put(key)
    }

    /// `set(list)` or `frozenset(list)`, as CPython writes them before
    /// protocol 4.
    fn set_by_reduce<'a, T, I>(
        &mut self,
        key: Option<usize>,
        (module, name): (&'static str, &'static str),
        items: I,
    ) -> Result<()>
    where
        T: Reduce + ?Sized + 'a,
        I: ExactSizeIterator<Item = &'a T>,
    {
        self.out.global(module, name)?;
        self.out.fresh_tuple_start(1)?;
        self.list_of(items, true)?;
        self.out.fresh_tuple_end(1)?;
        self.out.write(&[REDUCE]);
        self.memo_put(key)
    }

    /// Writes `n` items (each by `item`) in the chunks CPython writes them
    /// in (see [`rules::Batches`]).
    fn batch(
        &mut self,
        kind: Batching,
        n: usize,
        one: u8,
        many: u8,
        mut item: impl FnMut(&mut Self) -> Result<()>,
    ) -> Result<()> {
        for chunk in Batches::new(kind, self.out.proto, n) {
            if chunk.many {
                self.out.write(&[MARK]);
            }
            for _ in 0..chunk.len {
                item(self)?;
            }
            self.out.write(&[if chunk.many { many } else { one }]);
        }
        Ok(())
    }

    // ---- reductions -------------------------------------------------------

    /// Starts a reduction: the object is rebuilt by calling the global
    /// `module.name` with the arguments given to
    /// [`ReductionSaver::args`], then given its state, list items and dict
    /// items.
    pub fn reduction<'r>(
        &'r mut self,
        module: &'r str,
        name: &'r str,
    ) -> ReductionSaver<'r, 's, 'o> {
        ReductionSaver {
            saver: self,
            module,
            name,
            args: None,
            new_obj: false,
            state: None,
            state_setter: None,
            list_items: &[],
            dict_items: &[],
        }
    }

    /// Writes a value through the registry: the reducer registered for its
    /// type (after the `reducer_override` hook, if any). This is how values
    /// of foreign types, and trait objects, are written.
    pub fn registered(&mut self, value: &dyn Any) -> Result<()> {
        self.registered_as(value, None)
    }

    /// [`registered`](Saver::registered) for a value whose Rust type is
    /// known, so that a missing reducer is reported by the type's name.
    pub fn registered_typed<T: Any>(&mut self, value: &T) -> Result<()> {
        self.registered_as(value, Some(std::any::type_name::<T>()))
    }

    fn registered_as(&mut self, value: &dyn Any, type_name: Option<&'static str>) -> Result<()> {
        if let Some(hook) = self.hooks.persistent_id.as_deref_mut() {
            if let Some(pid) = hook(value) {
                return self.persistent_id(&pid);
            }
        }
        if let Some(hook) = self.hooks.reducer_override.take() {
            let done = hook(value, self);
            self.hooks.reducer_override = Some(hook);
            if done? {
                return Ok(());
            }
        }
        let type_id = value.type_id();
        let reducer = self.registry.reducer(type_id).ok_or_else(|| {
            Error::new(ErrorKind::Unpicklable(format!(
                "no reducer is registered for {}; register one with Registry::register_reducer",
                type_name.unwrap_or("this type (a `dyn Any` whose type has no name here)")
            )))
        })?;
        reducer(value, self)
    }
}

/// The `__dict__` of an instance being written by a derived type (see
/// [`Saver::state_dict`]).
#[doc(hidden)]
pub struct StateDict<'d, 's, 'o> {
    saver: &'d mut Saver<'s, 'o>,
    names: &'static [StaticName],
    batch: Batcher,
}

impl StateDict<'_, '_, '_> {
    /// Attribute `i`: its name (an interned `str`, written once per
    /// pickle) and `value`.
    #[inline]
    pub fn field<T: Reduce + ?Sized>(&mut self, i: usize, value: &T) -> Result<()> {
        self.saver.out.field_name(&self.names[i])?;
        self.saver.save(value)?;
        self.batch.item(&mut self.saver.out);
        Ok(())
    }
}

/// A reduction being written: `module.name(*args)`, then state and items.
/// Made by [`Saver::reduction`]; nothing is written until
/// [`save`](ReductionSaver::save).
#[must_use = "nothing is written until .save() is called"]
pub struct ReductionSaver<'r, 's, 'o> {
    saver: &'r mut Saver<'s, 'o>,
    module: &'r str,
    name: &'r str,
    args: Option<&'r dyn Reduce>,
    new_obj: bool,
    state: Option<&'r dyn Reduce>,
    state_setter: Option<(&'r str, &'r str)>,
    list_items: &'r [&'r dyn Reduce],
    dict_items: &'r [(&'r dyn Reduce, &'r dyn Reduce)],
}

impl<'r> ReductionSaver<'r, '_, '_> {
    /// The arguments: a value that writes a tuple (a Rust tuple, or `()`).
    pub fn args(mut self, args: &'r dyn Reduce) -> Self {
        self.args = Some(args);
        self
    }

    /// Build the object as CPython builds instances of ordinary classes:
    /// `cls.__new__(cls, *args)` (`copyreg.__newobj__`, written as `NEWOBJ`
    /// from protocol 2).
    pub fn new_obj(mut self) -> Self {
        self.new_obj = true;
        self
    }

    /// The state, applied after the object is made and memoized (`BUILD`):
    /// what makes cycles through the object possible.
    pub fn state(mut self, state: &'r dyn Reduce) -> Self {
        self.state = Some(state);
        self
    }

    /// A global `module.name` called as `setter(obj, state)` instead of
    /// `BUILD`.
    pub fn state_setter(mut self, module: &'r str, name: &'r str) -> Self {
        self.state_setter = Some((module, name));
        self
    }

    /// Items appended to the object after it is made (`APPEND`/`APPENDS`),
    /// as for a `list` subclass.
    pub fn list_items(mut self, items: &'r [&'r dyn Reduce]) -> Self {
        self.list_items = items;
        self
    }

    /// Items set on the object after it is made (`SETITEM`/`SETITEMS`), as
    /// for a `dict` subclass.
    pub fn dict_items(mut self, items: &'r [(&'r dyn Reduce, &'r dyn Reduce)]) -> Self {
        self.dict_items = items;
        self
    }

    /// Writes the reduction.
    pub fn save(self) -> Result<()> {
        let ReductionSaver {
            saver,
            module,
            name,
            args,
            new_obj,
            state,
            state_setter,
            list_items,
            dict_items,
        } = self;
        // An object made by a call hashes as its class says: its
        // arguments and state are not keys.
        let was = std::mem::replace(&mut saver.hashable, false);
        let r = (|| {
            let key = saver.take_identity();
            if new_obj && saver.out.proto >= 2 {
                saver.out.global(module, name)?;
                saver.save(args.unwrap_or(&()))?;
                saver.out.write(&[NEWOBJ]);
            } else if new_obj {
                // Before protocol 2 CPython writes an ordinary instance as
                // copyreg._reconstructor(cls, object, None), which takes no
                // arguments for __new__.
                if args.is_some() {
                    return Err(unpicklable(format!(
                        "{module}.{name} passes arguments to __new__, which needs protocol 2 or higher"
                    )));
                }
                saver.out.global("copyreg", "_reconstructor")?;
                saver.out.fresh_tuple_start(3)?;
                saver.out.global(module, name)?;
                saver.out.global("builtins", "object")?;
                saver.out.none()?;
                saver.out.fresh_tuple_end(3)?;
                saver.out.write(&[REDUCE]);
            } else {
                let args = args.unwrap_or(&());
                saver.out.global(module, name)?;
                saver.save(args)?;
                saver.out.write(&[REDUCE]);
            }
            if let Some(&idx) = key.and_then(|k| saver.ptr_memo.get(&k)) {
                // Made while its own arguments were written.
                saver.out.write(&[POP]);
                saver.out.get_within(idx);
                return Ok(());
            }
            let idx = saver.out.memo_put()?;
            saver.remember(key, idx);
            let mut list = list_items.iter();
            saver.batch(Batching::Iter, list_items.len(), APPEND, APPENDS, |s| {
                s.save(*list.next().ok_or_else(short_iterator)?)
            })?;
            let mut dict = dict_items.iter();
            saver.batch(Batching::Iter, dict_items.len(), SETITEM, SETITEMS, |s| {
                let (k, v) = dict.next().ok_or_else(short_iterator)?;
                s.save_key(*k)?;
                s.save(*v)
            })?;
            if let Some(state) = state {
                match state_setter {
                    None => {
                        saver.save(state)?;
                        saver.out.write(&[BUILD]);
                    }
                    Some((m, n)) => {
                        saver.out.global(m, n)?;
                        saver.out.get(idx)?;
                        saver.save(state)?;
                        saver.out.write(&rules::STATE_SETTER_CALL);
                    }
                }
            }
            Ok(())
        })();
        saver.hashable = was;
        r
    }
}

/// A value written (and read) through the registry rather than through a
/// trait implementation: for types you do not own, which the orphan rule
/// keeps you from implementing [`Reduce`] or
/// [`Construct`](crate::Construct) for.
///
/// ```
/// use std::time::Duration;
/// use reduce::{Registered, Registry};
///
/// // copyreg.pickle(timedelta, ...), after the fact, for a type we do not own.
/// let mut registry = Registry::new();
/// registry.register_reducer(|d: &Duration, s| {
///     let args = (0u64, d.as_secs(), d.subsec_micros());
///     s.reduction("datetime", "timedelta").args(&args).save()
/// })?;
/// registry.register_constructor("datetime", "timedelta", |node| {
///     let (days, secs, micros): (u64, u64, u32) = node.any_reduction()?.args().construct()?;
///     Ok(Duration::new(days * 86_400 + secs, micros * 1000))
/// })?;
///
/// let mut bytes = Vec::new();
/// reduce::Pickler::new(&mut bytes)
///     .protocol(2)
///     .registry(registry.clone())
///     .dump(&Registered(Duration::from_millis(1500)))?;
/// // What CPython writes for pickle.dumps(timedelta(seconds=1.5), 2).
/// assert_eq!(bytes, b"\x80\x02cdatetime\ntimedelta\nq\x00K\x00K\x01J \xa1\x07\x00\x87q\x01Rq\x02.");
///
/// let back: Registered<Duration> = reduce::Unpickler::from_slice(&bytes).registry(registry).load()?;
/// assert_eq!(back.0, Duration::from_millis(1500));
/// # Ok::<(), reduce::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Registered<T>(pub T);

impl<T: Any> Reduce for Registered<T> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.registered_typed(&self.0)
    }
}

impl<T: Any> crate::typed::construct::Construct for Registered<T> {
    fn construct(node: crate::typed::construct::Node<'_>) -> Result<Self> {
        node.registered::<T>().map(Registered)
    }
}

/// A closure that writes one object: for argument tuples longer than the
/// twelve items Rust tuples implement [`Reduce`] for, or built on the fly.
///
/// ```
/// use reduce::{FnReduce, Saver};
///
/// struct Wide([u8; 15]);
///
/// impl reduce::Reduce for Wide {
///     fn reduce(&self, s: &mut Saver<'_, '_>) -> reduce::Result<()> {
///         let args = FnReduce(|s: &mut Saver<'_, '_>| {
///             s.tuple(15, |s| self.0.iter().try_for_each(|b| s.save(b)))
///         });
///         s.reduction("wide", "Wide").args(&args).save()
///     }
/// }
/// assert!(reduce::to_vec(&Wide([7; 15])).is_ok());
/// ```
pub struct FnReduce<F>(pub F);

impl<F: Fn(&mut Saver<'_, '_>) -> Result<()>> Reduce for FnReduce<F> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        (self.0)(s)
    }
}

/// An `ExactSizeIterator` that ended before its length.
fn short_iterator() -> Error {
    unpicklable("an iterator yielded fewer items than its len() promised")
}
