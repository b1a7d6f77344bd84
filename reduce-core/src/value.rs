//! The Python object graph: [`Value`], [`Graph`] and the small types they hold.
//!
//! A [`Value`] is a tree. Objects that are reachable from more than one place (a
//! list that holds the same dict twice, a list that contains itself) live in a
//! [`Graph`]'s table of shared objects and are reached through [`Value::Ref`].
//! Nothing is reference-counted, so a cycle can never leak, and dropping,
//! printing, cloning or comparing a value of any depth never recurses.

use std::fmt;

use num_bigint::BigInt;

pub(crate) mod graph;
mod repr;

use repr::write_bytes_repr;

use crate::text::PyStr;
pub use graph::Graph;

/// One Python object.
///
/// Plain data is a tree of these. Sharing and cycles go through [`Value::Ref`],
/// which names an object in the [`Graph`] that holds the value.
///
/// Moving out of a `Value` by pattern is not possible, because `Value` runs its
/// own [`Drop`] (which is what lets a million nested lists drop without
/// overflowing the stack). Match on a reference, or use the `into_*`
/// methods and [`std::mem::take`].
#[derive(Default)]
pub enum Value {
    /// `None`.
    #[default]
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An `int` that fits in an `i64`.
    Int(i64),
    /// An `int` outside the `i64` range. Readers never produce a `BigInt`
    /// that fits in an `i64`; writers accept either.
    BigInt(Box<BigInt>),
    /// A `float`.
    Float(f64),
    /// A `str`, including strings with lone surrogates.
    Str(PyStr),
    /// A `bytes` object.
    Bytes(Vec<u8>),
    /// A `bytearray`.
    ByteArray(Vec<u8>),
    /// A `tuple`.
    Tuple(Vec<Value>),
    /// A `list`.
    List(Vec<Value>),
    /// A `dict`, in insertion order. Keys may be any hashable value (a load
    /// refuses a list, dict, set or bytearray key, as CPython does).
    Dict(Vec<(Value, Value)>),
    /// A `set`, in the order its items were pickled.
    Set(Vec<Value>),
    /// A `frozenset`, in the order its items were pickled.
    FrozenSet(Vec<Value>),
    /// A reference to a global by name (a class or a function), kept as data.
    Global(Box<Global>),
    /// An object rebuilt by calling a constructor: Python's reduce tuple.
    Reduce(Box<Reduction>),
    /// A persistent id (`PERSID`/`BINPERSID`), kept as data.
    PersistentId(Box<Persistent>),
    /// A protocol 5 `PickleBuffer`, in band or out of band.
    Buffer(Box<PickleBuffer>),
    /// A shared object: an index into the [`Graph`] that holds this value.
    Ref(Id),
    /// A value with the steps a pickle took just before and just after
    /// building it for their effect alone: calls whose result was thrown
    /// away, and changes to objects built earlier. Only
    /// [inert mode](crate::Unpickler::inert) makes these; see [`Seq`].
    Seq(Box<Seq>),
}

/// Inert mode's record of what a pickle did for effect, kept next to the
/// value it did it beside, in order.
///
/// A pickle is a program: besides building its result it may call functions
/// and throw the result away (`REDUCE` then `POP`), or change an object it
/// built earlier (fetch it from the memo, `SETITEMS`, `POP`). dill fills a
/// closure's cells and a recursive function's globals this way. Inert mode
/// keeps each such step where it happened, so that writing the value back
/// makes CPython perform the same calls and changes in the same order.
///
/// ```
/// use reduce::{Step, Value};
///
/// // l = []; m.f(l), with the result of the call thrown away.
/// let bytes = b"\x80\x02]q\x00cm\nf\nh\x00\x85R0.";
/// let graph = reduce::Unpickler::from_slice(bytes).inert(true).load_graph()?;
/// let Value::Seq(seq) = graph.root() else { panic!("expected a Seq") };
/// assert!(matches!(&seq.after[0], Step::Discard(Value::Reduce(_))));
/// // Written back, the call is made again (REDUCE, memoized as CPython
/// // would), and its result thrown away (POP).
/// let out = reduce::to_vec_with_protocol(&graph, 2)?;
/// assert!(out.ends_with(b"Rq\x030."), "{out:?}");
/// # Ok::<(), reduce::Error>(())
/// ```
#[derive(Clone, PartialEq, Default, Debug)]
pub struct Seq {
    /// Steps taken before the value was built.
    pub before: Vec<Step>,
    /// The value itself.
    pub value: Value,
    /// Steps taken after the value was built, before anything used it.
    pub after: Vec<Step>,
}

/// One step a pickle took for its effect; see [`Seq`].
///
/// `target` is the object changed, a [`Value::Ref`] to an object of the
/// [`Graph`] (it was built earlier and fetched again).
#[derive(Clone, PartialEq, Debug)]
#[non_exhaustive]
pub enum Step {
    /// A value built and thrown away (`POP`, `POP_MARK`, or left under the
    /// result at `STOP`): whatever it calls is called for its effect.
    Discard(Value),
    /// Items appended to an object built earlier (`APPEND`, `APPENDS`).
    Append {
        /// The object.
        target: Value,
        /// The items, in order.
        items: Vec<Value>,
    },
    /// Items set in an object built earlier (`SETITEM`, `SETITEMS`).
    SetItems {
        /// The object.
        target: Value,
        /// The keys and values, in order.
        items: Vec<(Value, Value)>,
    },
    /// Items added to a set built earlier (`ADDITEMS`).
    AddItems {
        /// The set.
        target: Value,
        /// The items, in order.
        items: Vec<Value>,
    },
    /// State given to an object built earlier, or given a second time
    /// (`BUILD`).
    Build {
        /// The object.
        target: Value,
        /// The state.
        state: Value,
    },
}

impl Step {
    /// Calls `f` on each value the step holds, in pickling order.
    pub(crate) fn for_each<'a>(&'a self, f: &mut impl FnMut(&'a Value)) {
        match self {
            Step::Discard(v) => f(v),
            Step::Append { target, items } | Step::AddItems { target, items } => {
                f(target);
                items.iter().for_each(f);
            }
            Step::SetItems { target, items } => {
                f(target);
                items.iter().for_each(|(k, v)| {
                    f(k);
                    f(v)
                });
            }
            Step::Build { target, state } => {
                f(target);
                f(state)
            }
        }
    }

    fn for_each_mut<'a>(&'a mut self, f: &mut impl FnMut(&'a mut Value)) {
        match self {
            Step::Discard(v) => f(v),
            Step::Append { target, items } | Step::AddItems { target, items } => {
                f(target);
                items.iter_mut().for_each(f);
            }
            Step::SetItems { target, items } => {
                f(target);
                items.iter_mut().for_each(|(k, v)| {
                    f(k);
                    f(v)
                });
            }
            Step::Build { target, state } => {
                f(target);
                f(state)
            }
        }
    }

    /// The same step with every value taken from `next`, in `for_each` order.
    fn refill(&self, next: &mut impl FnMut() -> Value) -> Step {
        match self {
            Step::Discard(_) => Step::Discard(next()),
            Step::Append { items, .. } => Step::Append {
                target: next(),
                items: items.iter().map(|_| next()).collect(),
            },
            Step::AddItems { items, .. } => Step::AddItems {
                target: next(),
                items: items.iter().map(|_| next()).collect(),
            },
            Step::SetItems { items, .. } => Step::SetItems {
                target: next(),
                items: items.iter().map(|_| (next(), next())).collect(),
            },
            Step::Build { .. } => Step::Build {
                target: next(),
                state: next(),
            },
        }
    }
}

/// The index of a shared object inside a [`Graph`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub(crate) u32);

impl Id {
    /// Marks, inside the reader only, the stack slot where an object was
    /// built (as opposed to one fetched again from the memo). Never seen
    /// outside the reader: loading renumbers every reference.
    pub(crate) const BIRTH: u32 = 1 << 31;

    /// The position of the object in [`Graph::objects`].
    pub fn index(self) -> usize {
        (self.0 & !Id::BIRTH) as usize
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.index())
    }
}

/// A global name: `module` and `name` (a dotted qualified name), as written by
/// the `GLOBAL` and `STACK_GLOBAL` opcodes.
///
/// Names are stored as Python 3 spells them: a protocol 0–2 pickle that says
/// `__builtin__.set` loads as `builtins.set`, and is written back as
/// `__builtin__.set` at those protocols, as CPython's `fix_imports` does.
///
/// Equality, hashing and order look at `module` and `name` only. A global
/// loaded in [inert mode](crate::Unpickler::inert) also remembers how the
/// pickle spelled it (`GLOBAL`, or `STACK_GLOBAL` and the very string
/// objects it took), so that it is written back the same way.
#[derive(Clone)]
pub struct Global {
    /// The module, e.g. `collections`.
    pub module: String,
    /// The qualified name inside the module, e.g. `OrderedDict`.
    pub name: String,
    pub(crate) spelling: Spelling,
}

/// How a pickle spelled a global, kept by inert mode.
#[derive(Clone, Default)]
pub(crate) enum Spelling {
    /// As the writer chooses for the protocol.
    #[default]
    Default,
    /// `GLOBAL module\nname\n`, at any protocol.
    Line,
    /// `STACK_GLOBAL` on these two values (strings, or references to
    /// shared strings), at any protocol that has it.
    Stack(Box<(Value, Value)>),
}

impl Global {
    /// A global `module.name`.
    pub fn new(module: impl Into<String>, name: impl Into<String>) -> Self {
        Global {
            module: module.into(),
            name: name.into(),
            spelling: Spelling::Default,
        }
    }

    fn key(&self) -> (&str, &str) {
        (&self.module, &self.name)
    }
}

impl PartialEq for Global {
    fn eq(&self, other: &Global) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Global {}

impl std::hash::Hash for Global {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state)
    }
}

impl PartialOrd for Global {
    fn partial_cmp(&self, other: &Global) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Global {
    fn cmp(&self, other: &Global) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl fmt::Debug for Global {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

impl fmt::Display for Global {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// Python's reduce tuple: `callable(*args)`, then `state` applied with `BUILD`
/// (or with `state_setter(obj, state)`), `list_items` appended and `dict_items`
/// set.
///
/// `NEWOBJ` and `NEWOBJ_EX` load as Python models them: a call of
/// `copyreg.__newobj__` with `(cls, *args)` and of `copyreg.__newobj_ex__` with
/// `(cls, args, kwargs)`; the writer turns those back into the opcodes at the
/// protocols that have them.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Reduction {
    /// What is called, usually a [`Value::Global`].
    pub callable: Value,
    /// The arguments, usually a [`Value::Tuple`].
    pub args: Value,
    /// The state given to `BUILD`, if any.
    pub state: Option<Value>,
    /// Items appended after construction (`APPEND`/`APPENDS`).
    pub list_items: Vec<Value>,
    /// Items set after construction (`SETITEM`/`SETITEMS`).
    pub dict_items: Vec<(Value, Value)>,
    /// A callable that applies the state instead of `BUILD`.
    pub state_setter: Option<Value>,
}

impl Reduction {
    /// `callable(*args)` with no state or items.
    pub fn new(callable: Value, args: Value) -> Self {
        Reduction {
            callable,
            args,
            ..Reduction::default()
        }
    }
}

/// A persistent id kept as data: what `persistent_load` would receive.
///
/// Inert mode also remembers whether the pickle spelled it `PERSID` (a line
/// of ASCII text) rather than `BINPERSID` (any object), so that it is
/// written back the same way at any protocol. Equality looks at the id
/// only.
///
/// ```
/// use reduce::{Persistent, Value};
///
/// // pickle.dumps(x, protocol=2) with persistent_id returning 'blob:7'.
/// let bytes = b"\x80\x02X\x06\x00\x00\x00blob:7q\x00Q.";
/// let graph = reduce::Unpickler::from_slice(bytes).inert(true).load_graph()?;
/// assert_eq!(graph.root(), &Value::PersistentId(Box::new(Persistent::new(Value::str("blob:7")))));
/// # Ok::<(), reduce::Error>(())
/// ```
#[derive(Clone, Default, Debug)]
pub struct Persistent {
    /// The id.
    pub pid: Value,
    /// Spelled `PERSID` (a protocol 0 line) in the pickle it came from.
    pub(crate) line: bool,
}

impl Persistent {
    /// A persistent id `pid`, written as the protocol chooses.
    pub fn new(pid: Value) -> Persistent {
        Persistent { pid, line: false }
    }
}

impl From<Value> for Persistent {
    fn from(pid: Value) -> Persistent {
        Persistent::new(pid)
    }
}

impl PartialEq for Persistent {
    fn eq(&self, other: &Persistent) -> bool {
        self.pid == other.pid
    }
}

/// A protocol 5 out-of-band buffer (`PickleBuffer`).
///
/// Written out of band (`NEXT_BUFFER`) when the pickler's buffer callback asks
/// for it, and otherwise in band as `bytes` (read-only) or `bytearray`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PickleBuffer {
    /// The bytes of the buffer.
    pub data: Vec<u8>,
    /// Whether the buffer is read-only (`READONLY_BUFFER`).
    pub readonly: bool,
}

impl fmt::Debug for PickleBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PickleBuffer(")?;
        write_bytes_repr(f, "b", &self.data)?;
        if self.readonly {
            write!(f, ", readonly")?;
        }
        write!(f, ")")
    }
}

impl Value {
    /// A `str` value.
    pub fn str(s: impl Into<PyStr>) -> Value {
        Value::Str(s.into())
    }

    /// An `int` value of any size, stored as [`Value::Int`] when it fits.
    pub fn int(i: impl Into<BigInt>) -> Value {
        let big = i.into();
        match i64::try_from(&big) {
            Ok(small) => Value::Int(small),
            Err(_) => Value::BigInt(Box::new(big)),
        }
    }

    /// A global reference `module.name`.
    pub fn global(module: impl Into<String>, name: impl Into<String>) -> Value {
        Value::Global(Box::new(Global::new(module, name)))
    }

    /// What one copy of this value, without its children, counts against
    /// [`Limits::max_tree_nodes`](crate::Limits::max_tree_nodes) where a
    /// shared object is read by value into each place that refers to it:
    /// one value, and one more per 32 bytes of its text, bytes or digits,
    /// so that the limit bounds the bytes copied as well as the values (a
    /// long string that a million references share).
    pub(crate) fn copy_weight(&self) -> usize {
        1 + match self {
            Value::Str(s) => s.as_bytes().len() / 32,
            Value::Bytes(b) | Value::ByteArray(b) => b.len() / 32,
            Value::BigInt(b) => (b.bits() / 256) as usize,
            Value::Buffer(b) => b.data.len() / 32,
            _ => 0,
        }
    }

    /// The Python type name of the value (`"list"`, `"dict"`, `"int"`...);
    /// `"global"`, `"object"`, `"persistent id"`, `"buffer"` and `"ref"` for
    /// the rest.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::ByteArray(_) => "bytearray",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Global(_) => "global",
            Value::Reduce(_) => "object",
            Value::PersistentId(_) => "persistent id",
            Value::Buffer(_) => "buffer",
            Value::Ref(_) => "ref",
            Value::Seq(s) => s.value.type_name(),
        }
    }

    /// The string, if this is a `str` without lone surrogates.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => s.as_str(),
            _ => None,
        }
    }

    /// The integer, if this is an `int` that fits in an `i64` (or a `bool`,
    /// which Python treats as an `int`).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            Value::BigInt(b) => i64::try_from(&**b).ok(),
            _ => None,
        }
    }

    /// The number, if this is a `float`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The bytes, if this is `bytes` or `bytearray`.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) | Value::ByteArray(b) => Some(b),
            _ => None,
        }
    }

    /// The items, if this is a `list`, `tuple`, `set` or `frozenset`.
    pub fn as_items(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Tuple(v) | Value::Set(v) | Value::FrozenSet(v) => Some(v),
            _ => None,
        }
    }

    /// The pairs, if this is a `dict`.
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The items, moved out, if this is a `list`, `tuple`, `set` or
    /// `frozenset`; otherwise the value itself back.
    pub fn into_items(mut self) -> Result<Vec<Value>, Value> {
        match &mut self {
            Value::List(v) | Value::Tuple(v) | Value::Set(v) | Value::FrozenSet(v) => {
                Ok(std::mem::take(v))
            }
            _ => Err(self),
        }
    }

    /// The pairs, moved out, if this is a `dict`; otherwise the value itself back.
    pub fn into_dict(mut self) -> Result<Vec<(Value, Value)>, Value> {
        match &mut self {
            Value::Dict(d) => Ok(std::mem::take(d)),
            _ => Err(self),
        }
    }

    /// Whether the value holds other values (dropping it goes further).
    #[inline]
    fn is_container(&self) -> bool {
        match self {
            Value::Tuple(v) | Value::List(v) | Value::Set(v) | Value::FrozenSet(v) => !v.is_empty(),
            Value::Dict(d) => !d.is_empty(),
            Value::Reduce(_) | Value::PersistentId(_) | Value::Seq(_) => true,
            _ => false,
        }
    }

    /// Drops every child, leaving the value without any: as a plain
    /// recursive drop would, down to [`DROP_DEPTH`] levels below the value
    /// dropped; a container deeper than that is moved onto `deep` whole,
    /// to be unlinked in turn from a fresh depth.
    fn unlink(&mut self, depth: usize, deep: &mut Vec<Value>) {
        let mut each = |mut c: Value| {
            if c.is_container() {
                if depth < DROP_DEPTH {
                    // Left childless, `c` then drops without going further.
                    c.unlink(depth + 1, deep);
                } else {
                    deep.push(c);
                }
            }
        };
        // The items move out of their vector one by one (no placeholder
        // left behind) and are dropped as `unlink_item` says: a list of
        // lists of ints costs less than a plain drop.
        match self {
            Value::Tuple(v) | Value::List(v) | Value::Set(v) | Value::FrozenSet(v) => {
                v.drain(..).for_each(|c| c.unlink_item(depth, deep));
            }
            Value::Dict(d) => {
                d.drain(..).for_each(|(k, v)| {
                    k.unlink_item(depth, deep);
                    v.unlink_item(depth, deep)
                });
            }
            Value::Reduce(r) => {
                each(std::mem::take(&mut r.callable));
                each(std::mem::take(&mut r.args));
                r.state.take().map(&mut each);
                r.state_setter.take().map(&mut each);
                r.list_items.drain(..).for_each(&mut each);
                r.dict_items.drain(..).for_each(|(k, v)| {
                    each(k);
                    each(v)
                });
            }
            Value::PersistentId(p) => each(std::mem::take(&mut p.pid)),
            Value::Seq(s) => {
                let mut all = Vec::new();
                for step in s.before.iter_mut().chain(s.after.iter_mut()) {
                    step.for_each_mut(&mut |v| all.push(std::mem::take(v)));
                }
                s.before.clear();
                s.after.clear();
                all.push(std::mem::take(&mut s.value));
                all.into_iter().for_each(each);
            }
            _ => {}
        }
    }

    /// Drops a child of a value at `depth`, taken out of it: a container
    /// is emptied first, as a plain recursive drop would (or, too deep,
    /// moved onto `deep` whole). An int or a float has nothing to free, so
    /// its drop (an out-of-line call per item) is skipped.
    #[inline]
    fn unlink_item(mut self, depth: usize, deep: &mut Vec<Value>) {
        match &self {
            Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Ref(_) => {
                std::mem::forget(self)
            }
            Value::Tuple(v) | Value::List(v) | Value::Set(v) | Value::FrozenSet(v)
                if v.is_empty() => {}
            Value::Dict(d) if d.is_empty() => {}
            Value::Tuple(_)
            | Value::List(_)
            | Value::Set(_)
            | Value::FrozenSet(_)
            | Value::Dict(_)
            | Value::Reduce(_)
            | Value::PersistentId(_)
            | Value::Seq(_) => {
                if depth < DROP_DEPTH {
                    self.unlink(depth + 1, deep);
                } else {
                    deep.push(self);
                }
            }
            // A str, bytes: freed by its drop, with nothing below.
            _ => {}
        }
    }

    /// Calls `f` on each direct child, in pickling order.
    pub(crate) fn for_each_child<'a>(&'a self, mut f: impl FnMut(&'a Value)) {
        match self {
            Value::Tuple(v) | Value::List(v) | Value::Set(v) | Value::FrozenSet(v) => {
                v.iter().for_each(f)
            }
            Value::Dict(d) => d.iter().for_each(|(k, v)| {
                f(k);
                f(v)
            }),
            Value::Reduce(r) => {
                f(&r.callable);
                f(&r.args);
                r.list_items.iter().for_each(&mut f);
                r.dict_items.iter().for_each(|(k, v)| {
                    f(k);
                    f(v)
                });
                if let Some(s) = &r.state {
                    f(s)
                }
                if let Some(s) = &r.state_setter {
                    f(s)
                }
            }
            Value::PersistentId(p) => f(&p.pid),
            Value::Global(g) => {
                if let Spelling::Stack(ops) = &g.spelling {
                    f(&ops.0);
                    f(&ops.1);
                }
            }
            Value::Seq(s) => {
                s.before.iter().for_each(|step| step.for_each(&mut f));
                f(&s.value);
                s.after.iter().for_each(|step| step.for_each(&mut f));
            }
            _ => {}
        }
    }

    /// Calls `f` on each direct child, mutably, in pickling order.
    pub(crate) fn for_each_child_mut<'a>(&'a mut self, mut f: impl FnMut(&'a mut Value)) {
        match self {
            Value::Tuple(v) | Value::List(v) | Value::Set(v) | Value::FrozenSet(v) => {
                v.iter_mut().for_each(f)
            }
            Value::Dict(d) => d.iter_mut().for_each(|(k, v)| {
                f(k);
                f(v)
            }),
            Value::Reduce(r) => {
                let Reduction {
                    callable,
                    args,
                    state,
                    list_items,
                    dict_items,
                    state_setter,
                } = &mut **r;
                f(callable);
                f(args);
                list_items.iter_mut().for_each(&mut f);
                dict_items.iter_mut().for_each(|(k, v)| {
                    f(k);
                    f(v)
                });
                if let Some(s) = state {
                    f(s)
                }
                if let Some(s) = state_setter {
                    f(s)
                }
            }
            Value::PersistentId(p) => f(&mut p.pid),
            Value::Global(g) => {
                if let Spelling::Stack(ops) = &mut g.spelling {
                    let (m, n) = &mut **ops;
                    f(m);
                    f(n);
                }
            }
            Value::Seq(s) => {
                let Seq {
                    before,
                    value,
                    after,
                } = &mut **s;
                before.iter_mut().for_each(|step| step.for_each_mut(&mut f));
                f(value);
                after.iter_mut().for_each(|step| step.for_each_mut(&mut f));
            }
            _ => {}
        }
    }

    /// A copy of this value without its children (containers come back empty).
    fn shallow_clone(&self) -> Value {
        match self {
            Value::None => Value::None,
            Value::Bool(b) => Value::Bool(*b),
            Value::Int(i) => Value::Int(*i),
            Value::BigInt(b) => Value::BigInt(b.clone()),
            Value::Float(f) => Value::Float(*f),
            Value::Str(s) => Value::Str(s.clone()),
            Value::Bytes(b) => Value::Bytes(b.clone()),
            Value::ByteArray(b) => Value::ByteArray(b.clone()),
            Value::Tuple(v) => Value::Tuple(Vec::with_capacity(v.len())),
            Value::List(v) => Value::List(Vec::with_capacity(v.len())),
            Value::Dict(d) => Value::Dict(Vec::with_capacity(d.len())),
            Value::Set(v) => Value::Set(Vec::with_capacity(v.len())),
            Value::FrozenSet(v) => Value::FrozenSet(Vec::with_capacity(v.len())),
            Value::Global(g) => Value::Global(Box::new(Global {
                module: g.module.clone(),
                name: g.name.clone(),
                spelling: match g.spelling {
                    Spelling::Stack(_) => Spelling::Stack(Box::default()),
                    Spelling::Line => Spelling::Line,
                    Spelling::Default => Spelling::Default,
                },
            })),
            Value::Seq(_) => Value::Seq(Box::default()),
            Value::Reduce(r) => Value::Reduce(Box::new(Reduction {
                state: r.state.as_ref().map(|_| Value::None),
                state_setter: r.state_setter.as_ref().map(|_| Value::None),
                list_items: Vec::with_capacity(r.list_items.len()),
                dict_items: Vec::with_capacity(r.dict_items.len()),
                ..Reduction::default()
            })),
            Value::PersistentId(p) => Value::PersistentId(Box::new(Persistent {
                pid: Value::None,
                line: p.line,
            })),
            Value::Buffer(b) => Value::Buffer(b.clone()),
            Value::Ref(id) => Value::Ref(*id),
        }
    }

    fn child_count(&self) -> usize {
        let mut n = 0;
        self.for_each_child(|_| n += 1);
        n
    }

    /// Fills an empty shell made by `shallow_clone` of `src` with `children`,
    /// given in `for_each_child` order.
    fn fill(&mut self, src: &Value, children: impl Iterator<Item = Value>) {
        let mut children = children;
        let mut next = || children.next().unwrap_or_default();
        match (self, src) {
            (
                Value::Tuple(v) | Value::List(v) | Value::Set(v) | Value::FrozenSet(v),
                Value::Tuple(s) | Value::List(s) | Value::Set(s) | Value::FrozenSet(s),
            ) => v.extend(s.iter().map(|_| next())),
            (Value::Dict(d), Value::Dict(s)) => d.extend(s.iter().map(|_| (next(), next()))),
            (Value::Reduce(r), Value::Reduce(s)) => {
                r.callable = next();
                r.args = next();
                r.list_items.extend(s.list_items.iter().map(|_| next()));
                r.dict_items
                    .extend(s.dict_items.iter().map(|_| (next(), next())));
                if s.state.is_some() {
                    r.state = Some(next())
                }
                if s.state_setter.is_some() {
                    r.state_setter = Some(next())
                }
            }
            (Value::PersistentId(p), _) => p.pid = next(),
            (Value::Global(g), _) => {
                if let Spelling::Stack(ops) = &mut g.spelling {
                    **ops = (next(), next());
                }
            }
            (Value::Seq(s), Value::Seq(src)) => {
                s.before = src.before.iter().map(|st| st.refill(&mut next)).collect();
                s.value = next();
                s.after = src.after.iter().map(|st| st.refill(&mut next)).collect();
            }
            _ => {}
        }
    }
}

/// How many levels below a dropped value [`Value::unlink`] goes by
/// recursion (a few KiB of stack) before it moves deeper containers to the
/// heap: a shallow value drops as fast as a plain recursive drop, and a
/// million nested lists still drop without overflowing the stack.
const DROP_DEPTH: usize = 64;

impl Drop for Value {
    #[inline]
    fn drop(&mut self) {
        if self.is_container() {
            self.drop_children();
        }
    }
}

impl Value {
    /// The out-of-line part of [`Drop`]: a value with children.
    #[inline(never)]
    fn drop_children(&mut self) {
        let mut deep = Vec::new();
        self.unlink(0, &mut deep);
        while let Some(mut v) = deep.pop() {
            v.unlink(0, &mut deep);
        }
    }
}

impl Clone for Value {
    fn clone(&self) -> Value {
        // A value without children (a str, an int) is its shallow copy: no
        // stacks to allocate.
        if self.child_count() == 0 {
            return self.shallow_clone();
        }
        // Post-order copy with explicit stacks, so depth costs heap, not stack.
        enum Step<'a> {
            Visit(&'a Value),
            Build(&'a Value, usize),
        }
        let mut steps = vec![Step::Visit(self)];
        let mut done: Vec<Value> = Vec::new();
        while let Some(step) = steps.pop() {
            match step {
                Step::Visit(v) => {
                    let n = v.child_count();
                    if n == 0 {
                        done.push(v.shallow_clone());
                    } else {
                        steps.push(Step::Build(v, n));
                        let mut children = Vec::with_capacity(n);
                        v.for_each_child(|c| children.push(c));
                        steps.extend(children.into_iter().rev().map(Step::Visit));
                    }
                }
                Step::Build(v, n) => {
                    let mut shell = v.shallow_clone();
                    let children = done.split_off(done.len() - n);
                    shell.fill(v, children.into_iter());
                    done.push(shell);
                }
            }
        }
        done.pop().unwrap_or_default()
    }
}

/// Structural equality, without recursion.
///
/// Floats compare as equal when they are equal or both NaN (so a value equals
/// its own copy); `0.0 == -0.0` as in Python. [`Value::Ref`]s compare by id
/// only: compare [`Graph`]s to follow them. `Int` and `BigInt` holding the
/// same number are equal.
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        let mut pairs = vec![(self, other)];
        while let Some((a, b)) = pairs.pop() {
            if !shallow_eq(a, b) {
                return false;
            }
            if let Value::Global(_) = a {
                // How a global was spelled is not part of its value.
                continue;
            }
            let mut left = Vec::new();
            a.for_each_child(|c| left.push(c));
            let mut i = 0;
            let mut mismatch = false;
            b.for_each_child(|c| {
                match left.get(i) {
                    Some(l) => pairs.push((l, c)),
                    None => mismatch = true,
                }
                i += 1;
            });
            if mismatch || i != left.len() {
                return false;
            }
        }
        true
    }
}

/// Equality of the values themselves, ignoring children (but not their count).
pub(super) fn shallow_eq(a: &Value, b: &Value) -> bool {
    use Value::*;
    match (a, b) {
        (None, None) => true,
        (Bool(x), Bool(y)) => x == y,
        (Int(x), Int(y)) => x == y,
        (BigInt(x), BigInt(y)) => x == y,
        (Int(x), BigInt(y)) | (BigInt(y), Int(x)) => num_bigint::BigInt::from(*x) == **y,
        (Float(x), Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Str(x), Str(y)) => x == y,
        (Bytes(x), Bytes(y)) | (ByteArray(x), ByteArray(y)) => x == y,
        (Tuple(x), Tuple(y))
        | (List(x), List(y))
        | (Set(x), Set(y))
        | (FrozenSet(x), FrozenSet(y)) => x.len() == y.len(),
        (Dict(x), Dict(y)) => x.len() == y.len(),
        (Global(x), Global(y)) => x == y,
        (Reduce(x), Reduce(y)) => {
            x.list_items.len() == y.list_items.len()
                && x.dict_items.len() == y.dict_items.len()
                && x.state.is_some() == y.state.is_some()
                && x.state_setter.is_some() == y.state_setter.is_some()
        }
        (PersistentId(_), PersistentId(_)) => true,
        (Buffer(x), Buffer(y)) => x == y,
        (Ref(x), Ref(y)) => x == y,
        (Seq(x), Seq(y)) => {
            x.before.len() == y.before.len()
                && x.after.len() == y.after.len()
                && x.before
                    .iter()
                    .chain(&x.after)
                    .zip(y.before.iter().chain(&y.after))
                    .all(|(a, b)| std::mem::discriminant(a) == std::mem::discriminant(b))
        }
        _ => false,
    }
}

impl From<u64> for Value {
    fn from(i: u64) -> Value {
        Value::int(i)
    }
}

impl From<i128> for Value {
    fn from(i: i128) -> Value {
        Value::int(i)
    }
}

impl From<u128> for Value {
    fn from(i: u128) -> Value {
        Value::int(i)
    }
}

impl From<BigInt> for Value {
    fn from(i: BigInt) -> Value {
        Value::int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Float(f)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s.into())
    }
}

impl From<PyStr> for Value {
    fn from(s: PyStr) -> Value {
        Value::Str(s)
    }
}

impl From<Global> for Value {
    fn from(g: Global) -> Value {
        Value::Global(Box::new(g))
    }
}

impl From<Reduction> for Value {
    fn from(r: Reduction) -> Value {
        Value::Reduce(Box::new(r))
    }
}

impl From<Vec<Value>> for Value {
    /// A `list`.
    fn from(v: Vec<Value>) -> Value {
        Value::List(v)
    }
}

impl From<()> for Value {
    fn from(_: ()) -> Value {
        Value::None
    }
}
