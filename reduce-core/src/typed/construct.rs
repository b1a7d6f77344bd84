//! Reading typed values: the [`Construct`] trait and the [`Node`]s it reads.
//!
//! A pickle is first loaded into a [`Graph`] (a stack machine cannot know
//! which object it is building until the opcode that ends it); a
//! `Construct` type then reads itself from a `Node`, a place in that graph
//! that knows its path, so a mismatch says where it is:
//! `[3].points[0].x: expected float, found str`.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::{self, Write as _};

use crate::base::error::{Error, ErrorKind, Result};
use crate::base::limits::{grow, GROW_EVERY};
use crate::read::stream::{Miss, Pulled, Stream};
use crate::typed::registry::Lookup;
use crate::value::{Global, Graph, Id, Reduction, Value};

/// How a value of this type is built from a pickle: the Rust side of
/// Python's constructor call.
///
/// A `Construct` written by hand says how to build the value; the global
/// the pickle names must still be allowed, as every global is, by a
/// registered constructor (in the process-wide [`registry()`](crate::registry)
/// or an unpickler's own [`Registry`](crate::Registry)) or a preset.
/// `#[derive(Reduce)]` registers its type itself.
///
/// ```
/// use reduce::{Construct, Node};
///
/// struct Point { x: f64, y: f64 }
///
/// impl Construct for Point {
///     fn construct(node: Node<'_>) -> reduce::Result<Self> {
///         // geometry.Point(x, y)
///         let call = node.reduction("geometry", "Point")?;
///         let (x, y) = call.args().construct()?;
///         Ok(Point { x, y })
///     }
/// }
///
/// // The strict loader calls only registered globals: allow geometry.Point
/// // (a derived type registers itself; one written by hand is registered).
/// let mut registry = reduce::Registry::new();
/// registry.register_constructor("geometry", "Point", Point::construct)?;
/// let bytes = b"\x80\x02cgeometry\nPoint\nq\x00G?\xf0\x00\x00\x00\x00\x00\x00G@\x00\x00\x00\x00\x00\x00\x00\x86q\x01Rq\x02.";
/// let p: Point = reduce::Unpickler::from_slice(bytes).registry(registry).load()?;
/// assert_eq!((p.x, p.y), (1.0, 2.0));
/// # Ok::<(), reduce::Error>(())
/// ```
pub trait Construct: Sized {
    /// Builds a value from `node`.
    fn construct(node: Node<'_>) -> Result<Self>;

    /// For types whose state can be applied after they are made (Python's
    /// `BUILD`): the object made from the constructor's arguments alone.
    /// Returning `Some` lets an `Rc<RefCell<Self>>` take part in a cycle
    /// through its state.
    fn construct_shell(node: Node<'_>) -> Option<Result<Self>> {
        let _ = node;
        None
    }

    /// Applies the state (and items) of `node` to a value made by
    /// [`construct_shell`](Construct::construct_shell).
    fn fill_shell(&mut self, node: Node<'_>) -> Result<()> {
        let _ = node;
        Ok(())
    }

    /// Like [`fill_shell`](Construct::fill_shell), through a shared
    /// reference, for types with interior mutability (`RefCell`).
    #[doc(hidden)]
    fn fill_shared(&self, node: Node<'_>) -> Result<()> {
        let _ = node;
        Err(node.error_msg("this type cannot be filled through a shared reference"))
    }

    /// Whether [`construct_stream`](Construct::construct_stream) reads one
    /// value and nothing below it (an int, a float, a `str`): such a value
    /// is read without a level of its own to count, only the check that
    /// its level is allowed. Wrong for a reader that reads items, whose
    /// levels would then be counted one short.
    #[doc(hidden)]
    const __LEAF: bool = false;

    /// The one global a derived type is written and read as
    /// (`module.name`), where it has one (an enum of globals has one per
    /// variant): [`Registry::register`](crate::Registry::register) refuses
    /// another path, which the type would never write or read.
    #[doc(hidden)]
    fn __path() -> Option<(&'static str, &'static str)> {
        None
    }

    /// Builds a value straight from the opcodes, without a `Graph`, when
    /// the pickle is shaped as CPython writes this type's data; otherwise
    /// [`Miss`], and the load reads the pickle again through the `Graph`
    /// path ([`construct`](Construct::construct)), which gives the result or
    /// the error. An implementation must accept nothing `construct` would
    /// refuse, and build what `construct` would build. The default always
    /// misses.
    #[doc(hidden)]
    fn construct_stream(stream: &mut Stream<'_>) -> Pulled<Self> {
        let _ = stream;
        Err(Miss)
    }

    /// Whether a load of this type as the whole pickle tries the stream
    /// first. `Value` and `Graph` say no: for a whole pickle the `Graph`
    /// reader is the faster of the two (and shares for free); the stream
    /// reads them inside typed values (`rest` fields, a `Vec<Value>`).
    #[doc(hidden)]
    fn stream_at_root() -> bool {
        true
    }

    /// Whether a load of this type takes the pickle as Python data, so
    /// that a dict key or set item Python could not hash (a list, say) is
    /// an error, as it is when CPython loads it. `Value` and `Graph` say
    /// yes; a Rust type's keys are what its type says.
    #[doc(hidden)]
    fn python_data() -> bool {
        false
    }

    /// Whether a whole-pickle load that the `Graph` reader began, and
    /// whose bet that nothing is fetched from the memo was lost, tries the
    /// stream before reading again. `Value` says yes: the stream copies
    /// fetched strings and tuples as the tree would, without a `Graph`.
    #[doc(hidden)]
    fn stream_after_sharing() -> bool {
        false
    }

    /// Builds a value from a whole loaded pickle. The default reads the
    /// root; `Value` and `Graph` take the graph itself without copying.
    #[doc(hidden)]
    fn from_graph(
        graph: Graph,
        lookup: &Lookup,
        limits: &crate::base::limits::Limits,
    ) -> Result<Self> {
        let ctx = Ctx::new(lookup, &graph, limits.max_typed_depth, typed_copies(limits));
        let value = Self::construct(Node::root(&graph, &ctx))?;
        ctx.finish()?;
        Ok(value)
    }
}

/// The bound on what a typed read copies out of shared objects: the
/// larger of [`Limits::max_tree_nodes`](crate::Limits::max_tree_nodes) and
/// its default. Never below the default, because the stream reads a value
/// that a pickle fetches from its memo again within a budget of its own,
/// and both paths must give the same result under any limits.
pub(crate) fn typed_copies(limits: &crate::base::limits::Limits) -> usize {
    limits
        .max_tree_nodes
        .max(crate::base::limits::Limits::default().max_tree_nodes)
}

/// A field read by its own Graph-path reader `read` (`#[reduce(with)]`,
/// `#[reduce(registry)]`) on the stream: its value read as a [`Value`]
/// ([`Stream::sealed_value`]) and given, as a graph of its own, to `read`
/// at the depth the `Graph` path would, with its own context (nothing in it
/// is shared with the rest of the load) and its queued states applied
/// after.
pub(crate) fn graph_field<T>(
    s: &mut Stream<'_>,
    read: impl FnOnce(Node<'_>) -> Result<T>,
) -> Pulled<T> {
    let lookup: &Lookup = s.resolver().as_any().downcast_ref().ok_or(Miss)?;
    let value = s.sealed_value()?;
    let graph = Graph::new(value);
    // Sealed: nothing in it is shared, so nothing is read twice.
    let ctx = Ctx::new(lookup, &graph, s.max_typed_depth(), usize::MAX);
    let mut node = Node::root(&graph, &ctx);
    // The stream counts the root one level deep, the Graph path none.
    node.depth = s.depth().checked_sub(1).ok_or(Miss)?;
    let value = read(node).map_err(|_| Miss)?;
    ctx.finish().map_err(|_| Miss)?;
    Ok(value)
}

/// The state of one typed load: the registry, and the objects already built
/// for shared ids (so two references to one object give one `Rc`).
pub struct Ctx<'l> {
    pub(crate) lookup: &'l Lookup,
    graph: &'l Graph,
    built: RefCell<HashMap<(Id, TypeId), Box<dyn Any>>>,
    in_progress: RefCell<HashSet<Id>>,
    /// State still to apply to shared objects made by [`Node::once`].
    pending: RefCell<VecDeque<(Target, PendingFill)>>,
    /// [`Limits::max_typed_depth`](crate::Limits::max_typed_depth).
    max_depth: usize,
    /// What was read inside shared objects, by [`Value`]'s copy weight:
    /// each place that refers to a shared object reads it again, and
    /// [`Limits::max_tree_nodes`](crate::Limits::max_tree_nodes) bounds the
    /// sum, as it bounds the copies of a `Value` tree.
    copied: std::cell::Cell<usize>,
    max_copied: usize,
}

/// Where a queued fill's node is: a shared object of the graph, or a copy
/// of an inline value (whose references still point into the graph).
enum Target {
    Shared(Id),
    Owned(Value),
}

type PendingFill = Box<dyn for<'x> FnOnce(Node<'x>) -> Result<()>>;

impl<'l> Ctx<'l> {
    pub(crate) fn new(
        lookup: &'l Lookup,
        graph: &'l Graph,
        max_depth: usize,
        max_copied: usize,
    ) -> Self {
        Ctx {
            lookup,
            graph,
            built: RefCell::new(HashMap::new()),
            in_progress: RefCell::new(HashSet::new()),
            pending: RefCell::new(VecDeque::new()),
            max_depth,
            copied: std::cell::Cell::new(0),
            max_copied,
        }
    }

    /// Applies the queued states, including any queued while doing so.
    pub(crate) fn finish(&self) -> Result<()> {
        loop {
            let next = {
                match self.pending.borrow_mut().pop_front() {
                    Some(next) => next,
                    None => return Ok(()),
                }
            };
            let (target, fill) = next;
            let value = match &target {
                Target::Shared(id) => self
                    .graph
                    .objects
                    .get(id.index())
                    .ok_or_else(|| Error::new(ErrorKind::DanglingRef(id.0)))?,
                Target::Owned(v) => v,
            };
            fill(Node {
                graph: self.graph,
                value,
                ctx: self,
                parent: None,
                seg: Seg::Root,
                skip: 0,
                one: false,
                depth: 0,
                copied: false,
            })?;
        }
    }
}

impl fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx").finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug)]
enum Seg<'a> {
    Root,
    Index(usize),
    Field(&'a str),
    Key(&'a Value),
    State,
}

/// A place in a loaded pickle: a value, the graph it belongs to, and the
/// path from the root, for error messages.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    graph: &'a Graph,
    value: &'a Value,
    ctx: &'a Ctx<'a>,
    parent: Option<&'a Node<'a>>,
    seg: Seg<'a>,
    /// Leading tuple items that are not part of this node (the class in
    /// `NEWOBJ`'s `(cls, *args)`).
    skip: usize,
    /// The value is the one item of an argument tuple that is not in the
    /// pickle: the state `copyreg._reconstructor(cls, str, state)` gives a
    /// builtin base, seen as the `(state,)` that `NEWOBJ` would pass.
    one: bool,
    /// How many nodes lie between this one and the root.
    depth: usize,
    /// The node is inside a shared object (or is a reference to one),
    /// read again for each place that refers to it.
    copied: bool,
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Node({}: {:?})", self.path(), self.value)
    }
}

impl<'a> Node<'a> {
    pub(crate) fn root(graph: &'a Graph, ctx: &'a Ctx<'a>) -> Node<'a> {
        Node {
            graph,
            value: &graph.root,
            ctx,
            parent: None,
            seg: Seg::Root,
            skip: 0,
            one: false,
            depth: 0,
            copied: false,
        }
    }

    fn child<'b>(&'b self, seg: Seg<'b>, value: &'b Value) -> Node<'b> {
        Node {
            graph: self.graph,
            value,
            ctx: self.ctx,
            parent: Some(self),
            seg,
            skip: 0,
            one: false,
            depth: self.depth + 1,
            copied: self.copied || matches!(value, Value::Ref(_)),
        }
    }

    /// Runs `f` on a child node: the one way typed reading recurses. The
    /// depth is bounded by [`Limits::max_typed_depth`](crate::Limits), and
    /// the stack grows on the heap when it runs low, so that a recursive
    /// type nested deep in a hostile pickle is an error, never a stack
    /// overflow, whatever the thread's stack size.
    fn descend<'b, R>(
        &'b self,
        seg: Seg<'b>,
        value: &'b Value,
        f: impl FnOnce(Node<'b>) -> Result<R>,
    ) -> Result<R> {
        let child = self.child(seg, value);
        if child.depth > self.ctx.max_depth {
            if let Some(cycle) = child.cycle() {
                return Err(cycle);
            }
            return Err(child.error(ErrorKind::Limit {
                limit: "max_typed_depth",
                max: self.ctx.max_depth as u64,
            }));
        }
        if child.copied {
            child.count_copy()?;
        }
        if child.depth.is_multiple_of(GROW_EVERY) {
            grow(|| f(child))
        } else {
            f(child)
        }
    }

    /// Counts this node's copy against the context's limit.
    #[cold]
    fn count_copy(&self) -> Result<()> {
        let ctx = self.ctx;
        let copied = ctx.copied.get().saturating_add(self.value().copy_weight());
        if copied > ctx.max_copied {
            return Err(self
                .error(ErrorKind::Limit {
                    limit: "max_tree_nodes",
                    max: ctx.max_copied as u64,
                })
                .with_detail(
                    "shared objects read again for every place that refers to them; read them as Rc<T>, or the whole as a Graph, which keeps them shared".to_string(),
                ));
        }
        ctx.copied.set(copied);
        Ok(())
    }

    /// At the depth limit, where the chain of nodes from the root first
    /// comes back into a shared object it is already inside: a cycle read
    /// into a type that cannot share (a `Box`, a plain field), which would
    /// otherwise be reported as the limit, deep in the cycle.
    #[cold]
    fn cycle(&self) -> Option<Error> {
        let mut chain = Vec::with_capacity(self.depth + 1);
        let mut at = Some(self);
        while let Some(n) = at {
            chain.push(n);
            at = n.parent;
        }
        let mut inside = std::collections::HashSet::new();
        chain.into_iter().rev().find_map(|n| {
            let id = n.shared_id()?;
            (!inside.insert(id)).then(|| {
                n.error_msg(
                    "the value refers to itself (a cycle); only Rc<RefCell<T>> of a type with state (construct_shell) can be built in a cycle, or read it as a Graph",
                )
            })
        })
    }

    /// The value here, with a shared reference followed.
    pub fn value(&self) -> &'a Value {
        self.graph.resolve(self.value)
    }

    /// The shared object this node refers to, if it is one.
    pub fn shared_id(&self) -> Option<Id> {
        match self.value {
            Value::Ref(id) => Some(*id),
            _ => None,
        }
    }

    /// The graph this node belongs to.
    pub fn graph(&self) -> &'a Graph {
        self.graph
    }

    /// The path from the root, as in `[3].points[0].x` (empty at the root).
    pub fn path(&self) -> String {
        let mut segs = Vec::new();
        let mut at = Some(self);
        while let Some(n) = at {
            segs.push(n.seg);
            at = n.parent;
        }
        let mut out = String::new();
        for seg in segs.into_iter().rev() {
            match seg {
                Seg::Root => {}
                Seg::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
                Seg::Field(f) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(f);
                }
                Seg::Key(k) => {
                    // A key the pickle fetched from its memo (CPython's
                    // one object of `'x'`) by what it is, not `#0`.
                    let _ = write!(out, "[{:?}]", self.graph.resolve(k));
                }
                // The state's fields read as the object's own fields.
                Seg::State => {}
            }
        }
        out
    }

    /// An error at this node.
    pub fn error(&self, kind: ErrorKind) -> Error {
        Error::new(kind).with_path(self.path())
    }

    /// An error at this node with a message.
    pub fn error_msg(&self, msg: impl Into<String>) -> Error {
        self.error(ErrorKind::Invalid(msg.into()))
    }

    /// "expected `what`, found" the Python type here.
    pub fn expected(&self, what: &str) -> Error {
        self.error(ErrorKind::Type {
            expected: what.to_owned(),
            found: self.value().type_name(),
        })
    }

    /// Builds a `T` from this node.
    pub fn construct<T: Construct>(&self) -> Result<T> {
        T::construct(*self)
    }

    /// The items of a `list`, `tuple`, `set` or `frozenset`.
    pub fn items(&self) -> Result<&'a [Value]> {
        if self.one {
            return Ok(std::slice::from_ref(self.value));
        }
        let items = self
            .value()
            .as_items()
            .ok_or_else(|| self.expected("a list or tuple"))?;
        Ok(items.get(self.skip..).unwrap_or(&[]))
    }

    /// Builds a `T` from item `index` of `items` (which came from
    /// [`Node::items`] or the like), with the index in the path.
    pub fn item<T: Construct>(&self, index: usize, item: &Value) -> Result<T> {
        self.descend(Seg::Index(index), item, T::construct)
    }

    /// Builds a `T` from the value under a field name, for error paths.
    pub fn field<T: Construct>(&self, name: &str, value: &Value) -> Result<T> {
        self.descend(Seg::Field(name), value, T::construct)
    }

    /// Runs `f` on the node of a named field's value (for fields read with a
    /// custom function).
    pub fn with_field<R>(
        &self,
        name: &str,
        value: &Value,
        f: impl FnOnce(Node<'_>) -> Result<R>,
    ) -> Result<R> {
        // The custom function's own errors get the field's path (if it
        // gave none deeper).
        self.descend(Seg::Field(name), value, |n| {
            f(n).map_err(|e| e.with_path(n.path()))
        })
    }

    /// The value under key `name` of a state dict with str keys (an
    /// instance `__dict__`), if present.
    pub fn state_entry(&self, name: &str) -> Result<Option<&'a Value>> {
        Ok(self
            .pairs()?
            .iter()
            .find(|(k, _)| self.graph.resolve(k).as_str() == Some(name))
            .map(|(_, v)| v))
    }

    /// Builds a `T` from the value of a dict entry, with the key in the path.
    pub fn entry<T: Construct>(&self, key: &Value, value: &Value) -> Result<T> {
        self.descend(Seg::Key(key), value, T::construct)
    }

    /// Builds a `T` from a value that is not one of this node's own items
    /// (a dict key), keeping this node's path.
    pub fn sibling<T: Construct>(&self, value: &Value) -> Result<T> {
        self.descend(Seg::Root, value, T::construct)
    }

    /// The pairs of a `dict`.
    pub fn pairs(&self) -> Result<&'a [(Value, Value)]> {
        self.value()
            .as_dict()
            .ok_or_else(|| self.expected("a dict"))
    }

    /// A field of an object state given as a dict with str keys (an
    /// instance `__dict__`): `Ok(None)` when absent.
    pub fn state_field<T: Construct>(&self, name: &str) -> Result<Option<T>> {
        for (k, v) in self.pairs()? {
            if self.graph.resolve(k).as_str() == Some(name) {
                let seg = Seg::Field(name_static(name, k, self.graph));
                return self.descend(seg, v, T::construct).map(Some);
            }
        }
        Ok(None)
    }

    /// The reduced object here, which must be built by the global
    /// `module.name` (by `REDUCE`, or by `NEWOBJ` on that class).
    pub fn reduction(&self, module: &str, name: &str) -> Result<Call<'a>> {
        let call = self.any_reduction()?;
        if call.global.module != module || call.global.name != name {
            return Err(self
                .error(ErrorKind::Type {
                    expected: format!("an object built by {module}.{name}"),
                    found: "another object",
                })
                .with_detail(format!("it is built by {}", call.global)));
        }
        Ok(call)
    }

    /// The reduced object here, whatever builds it.
    pub fn any_reduction(&self) -> Result<Call<'a>> {
        let Value::Reduce(r) = self.value() else {
            return Err(self.expected("an object built by a constructor"));
        };
        let callable = self.graph.resolve(&r.callable);
        let Value::Global(g) = callable else {
            return Err(self.error_msg("expected a global as the constructor"));
        };
        let args = self.graph.resolve(&r.args);
        let call = |global, args| Call {
            global,
            args,
            base: None,
            list_items: &r.list_items,
            dict_items: &r.dict_items,
            reduce: r,
            node: *self,
        };
        // NEWOBJ: copyreg.__newobj__(cls, *args) builds an instance of cls.
        if g.module == "copyreg"
            && (g.name == "__newobj__" || g.name == "__newobj_ex__" || g.name == "_reconstructor")
        {
            if let Value::Tuple(items) = args {
                if let Some(Value::Global(cls)) = items.first().map(|c| self.graph.resolve(c)) {
                    return Ok(match g.name.as_str() {
                        "__newobj__" => call(cls, Args::Tuple(&r.args, 1)),
                        "__newobj_ex__" => match items.get(1) {
                            Some(a) => call(cls, Args::Tuple(a, 0)),
                            None => call(cls, Args::Tuple(&r.args, items.len())),
                        },
                        _ => {
                            self.reconstructed(call(cls, Args::Tuple(&r.args, items.len())), items)
                        }
                    });
                }
            }
        }
        Ok(call(g, Args::Tuple(&r.args, 0)))
    }

    /// `copyreg._reconstructor(cls, base, state)`, protocols 0 and 1's form
    /// of an instance of a builtin's subclass: `base.__new__(cls, state)`
    /// then `base.__init__(obj, state)`. The state is presented as what
    /// protocol 2 gives the same object, so one reader serves every
    /// protocol: a `tuple` base's state as the arguments (a namedtuple's
    /// fields), a `list` base's as list items, a `dict` base's as dict
    /// items, any other builtin's (`str`, `int`, ...) as the one argument.
    fn reconstructed(&self, mut call: Call<'a>, items: &'a [Value]) -> Call<'a> {
        let (Some(Value::Global(base)), Some(state)) =
            (items.get(1).map(|b| self.graph.resolve(b)), items.get(2))
        else {
            return call;
        };
        call.base = Some(base);
        let resolved = self.graph.resolve(state);
        match (base.module.as_str(), base.name.as_str()) {
            ("builtins", "object") => {}
            ("builtins", "tuple") => call.args = Args::Tuple(state, 0),
            ("builtins", "list") => {
                if let Some(list) = resolved.as_items() {
                    call.list_items = list;
                }
            }
            ("builtins", "dict") => {
                if let Some(pairs) = resolved.as_dict() {
                    call.dict_items = pairs;
                }
            }
            _ if !matches!(resolved, Value::None) => call.args = Args::One(state),
            _ => {}
        }
        call
    }

    /// Builds the object here with the constructor the registry has for its
    /// global, whatever type that constructor makes.
    pub fn registered_any(&self) -> Result<Box<dyn Any>> {
        let call = self.any_reduction()?;
        let path = call.global.to_string();
        let f = self.ctx.lookup.constructor(&path).ok_or_else(|| {
            if let Some(preset) = self.ctx.lookup.allowed_by(&path) {
                return self.error_msg(format!(
                    "`{path}` is allowed by the `{preset}` preset, but no constructor makes a Rust value of it (is the Cargo feature for it on?); read it as a Value"
                ));
            }
            self.error(ErrorKind::UnknownGlobal {
                module: call.global.module.clone(),
                name: call.global.name.clone(),
                near: self.ctx.lookup.near(&path),
            })
        })?;
        f(*self)
    }

    /// Builds the object here with the constructor the registry has for its
    /// global, as a `T`: the type the constructor makes, or one a registered
    /// upcast turns it into (a trait object).
    pub fn registered<T: Any>(&self) -> Result<T> {
        let any = self.registered_any()?;
        let made = (*any).type_id();
        let any = match any.downcast::<T>() {
            Ok(t) => return Ok(*t),
            Err(any) => any,
        };
        self.ctx
            .lookup
            .upcast(made, TypeId::of::<T>())
            .and_then(|f| f(any))
            .and_then(|b| b.downcast::<T>().ok())
            .map(|b| *b)
            .ok_or_else(|| {
                self.error_msg(format!(
                    "the constructor registered for this object does not make the Rust type {} (register an upcast to it)",
                    std::any::type_name::<T>()
                ))
            })
    }

    /// Builds the object here once, as Python's `BUILD` does: `shell` makes
    /// it from what it needs up front, and `fill` applies its state later,
    /// after everything reachable has been made. Every other reference to
    /// the same object gets a clone of the first result (so `T` is usually
    /// an `Rc`), and the object may be reached again from its own state: a
    /// cycle.
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use reduce::{Construct, Node, Value};
    ///
    /// /// A Python list, shared and possibly containing itself.
    /// #[derive(Clone)]
    /// struct Shared(Rc<RefCell<Vec<Shared>>>);
    ///
    /// impl Construct for Shared {
    ///     fn construct(node: Node<'_>) -> reduce::Result<Self> {
    ///         node.once(
    ///             || Ok(Shared(Rc::new(RefCell::new(Vec::new())))),
    ///             |list, node| {
    ///                 let items = node.items()?;
    ///                 for (i, item) in items.iter().enumerate() {
    ///                     let made: Shared = node.item(i, item)?;
    ///                     list.0.borrow_mut().push(made);
    ///                 }
    ///                 Ok(())
    ///             },
    ///         )
    ///     }
    /// }
    ///
    /// // l = []; l.append(l)
    /// let l: Shared = reduce::from_slice(b"\x80\x02]q\x00h\x00a.")?;
    /// assert!(Rc::ptr_eq(&l.0, &l.0.borrow()[0].0));
    /// l.0.borrow_mut().clear(); // break the cycle
    /// # Ok::<(), reduce::Error>(())
    /// ```
    pub fn once<T: Clone + 'static>(
        &self,
        shell: impl FnOnce() -> Result<T>,
        fill: impl FnOnce(&T, Node<'_>) -> Result<()> + 'static,
    ) -> Result<T> {
        if let Some(made) = self.built::<T>() {
            return Ok(made);
        }
        let made = shell()?;
        self.remember(&made);
        // Even an object referred to from one place can be in a cycle,
        // through a shared object around it, so its state always waits.
        let target = match self.shared_id() {
            Some(id) => Target::Shared(id),
            None => Target::Owned(self.value().clone()),
        };
        let keep = made.clone();
        self.ctx
            .pending
            .borrow_mut()
            .push_back((target, Box::new(move |node: Node<'_>| fill(&keep, node))));
        Ok(made)
    }

    /// The object built for this shared id as a `T` before, if any.
    pub(crate) fn built<T: Clone + 'static>(&self) -> Option<T> {
        let id = self.shared_id()?;
        self.ctx
            .built
            .borrow()
            .get(&(id, TypeId::of::<T>()))
            .and_then(|b| b.downcast_ref::<T>())
            .cloned()
    }

    pub(crate) fn remember<T: Clone + 'static>(&self, value: &T) {
        if let Some(id) = self.shared_id() {
            self.ctx
                .built
                .borrow_mut()
                .insert((id, TypeId::of::<T>()), Box::new(value.clone()));
        }
    }

    /// Runs `build` with this node's shared id marked as being built, so
    /// that reaching it again (a cycle) is an error instead of a loop.
    pub(crate) fn guard_cycle<T>(&self, build: impl FnOnce() -> Result<T>) -> Result<T> {
        let Some(id) = self.shared_id() else {
            return build();
        };
        if !self.ctx.in_progress.borrow_mut().insert(id) {
            return Err(self.error_msg(
                "the value refers to itself; only Rc<RefCell<T>> of a type with state (construct_shell) can be built in a cycle",
            ));
        }
        let r = build();
        self.ctx.in_progress.borrow_mut().remove(&id);
        r
    }
}

/// Field names in paths must outlive the node; state keys usually are
/// literals in the caller, but only the graph's string is sure to.
fn name_static<'g>(_name: &str, key: &'g Value, graph: &'g Graph) -> &'g str {
    graph.resolve(key).as_str().unwrap_or("?")
}

/// A reduced object in a loaded pickle: the global that builds it, its
/// arguments, state and items.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    global: &'a Global,
    args: Args<'a>,
    /// The builtin base named by `copyreg._reconstructor`, if so.
    base: Option<&'a Global>,
    list_items: &'a [Value],
    dict_items: &'a [(Value, Value)],
    reduce: &'a Reduction,
    node: Node<'a>,
}

/// The object's path in the pickle, its global and its reduction, as
/// `Call(path: global, Reduction {..})`.
impl fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Call({}: {}, {:?})",
            self.node.path(),
            self.global,
            self.reduce
        )
    }
}

/// Where a call's arguments are.
#[derive(Clone, Copy)]
enum Args<'a> {
    /// A tuple, less its first `n` items.
    Tuple(&'a Value, usize),
    /// One value, the only argument.
    One(&'a Value),
}

impl<'a> Call<'a> {
    /// The global that builds the object (for `NEWOBJ`, the class).
    pub fn global(&self) -> &'a Global {
        self.global
    }

    /// The constructor's arguments, as a node to read as a tuple.
    pub fn args(&self) -> Node<'a> {
        let (value, skip, one) = match self.args {
            Args::Tuple(value, skip) => (value, skip, false),
            Args::One(value) => (value, 0, true),
        };
        Node {
            graph: self.node.graph,
            value,
            ctx: self.node.ctx,
            parent: self.node.parent,
            seg: self.node.seg,
            skip,
            one,
            depth: self.node.depth,
            copied: self.node.copied,
        }
    }

    /// The builtin base (`builtins.list`, `builtins.tuple`, ...) when the
    /// object was written as `copyreg._reconstructor(cls, base, state)`, as
    /// protocols 0 and 1 write an instance of a builtin's subclass. Its
    /// state is already presented as [`args`](Call::args),
    /// [`list_items`](Call::list_items) or [`dict_items`](Call::dict_items),
    /// as protocol 2 would give it.
    ///
    /// One difference stays, CPython's own: from protocol 2 a namedtuple
    /// passes its fields as arguments, but a plain `tuple` subclass passes
    /// one argument, the tuple. A `tuple` base's state reads as the fields
    /// (the namedtuple form); a reader of a plain `tuple` subclass checks
    /// `base()` to know which form it has.
    pub fn base(&self) -> Option<&'a Global> {
        self.base
    }

    /// The state applied with `BUILD`, if any.
    pub fn state(&self) -> Option<StateNode<'a>> {
        self.reduce.state.as_ref().map(|s| StateNode {
            value: s,
            node: self.node,
        })
    }

    /// Items appended after construction (for a `list` subclass at
    /// protocols 0 and 1, the list given to its base).
    pub fn list_items(&self) -> &'a [Value] {
        self.list_items
    }

    /// Items set after construction (for a `dict` subclass at protocols 0
    /// and 1, the dict given to its base).
    pub fn dict_items(&self) -> &'a [(Value, Value)] {
        self.dict_items
    }

    /// The node of the object itself.
    pub fn node(&self) -> Node<'a> {
        self.node
    }
}

/// The state given to an object with `BUILD`.
#[derive(Clone, Copy)]
pub struct StateNode<'a> {
    value: &'a Value,
    node: Node<'a>,
}

impl fmt::Debug for StateNode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateNode({}: {:?})", self.node.path(), self.value)
    }
}

impl StateNode<'_> {
    /// Reads the state as a `T`.
    pub fn construct<T: Construct>(&self) -> Result<T> {
        self.node.descend(Seg::State, self.value, T::construct)
    }

    /// Runs `f` on the state's node.
    pub fn with<R>(&self, f: impl FnOnce(Node<'_>) -> R) -> R {
        grow(|| f(self.node.child(Seg::State, self.value)))
    }
}

/// An object whose type is known only at run time: built by whichever
/// constructor the registry has for its global, and downcast afterwards.
///
/// ```
/// use reduce::{Dynamic, Registry};
///
/// #[derive(Debug, PartialEq)]
/// struct Celsius(f64);
///
/// let mut registry = Registry::new();
/// registry.register_constructor("weather", "Celsius", |node| {
///     let (t,): (f64,) = node.any_reduction()?.args().construct()?;
///     Ok(Celsius(t))
/// })?;
/// // weather.Celsius(21.5), protocol 2
/// let bytes = b"\x80\x02cweather\nCelsius\nq\x00G@5\x80\x00\x00\x00\x00\x00\x85q\x01Rq\x02.";
/// let value: Dynamic = reduce::Unpickler::from_slice(bytes).registry(registry).load()?;
/// assert_eq!(value.downcast_ref::<Celsius>(), Some(&Celsius(21.5)));
/// # Ok::<(), reduce::Error>(())
/// ```
pub struct Dynamic(Box<dyn Any>);

impl Dynamic {
    /// The value as a `T`, if it is one.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }

    /// The value as a `T`, or itself back.
    pub fn downcast<T: Any>(self) -> std::result::Result<T, Dynamic> {
        self.0.downcast().map(|b| *b).map_err(Dynamic)
    }

    /// Whether the value is a `T`.
    pub fn is<T: Any>(&self) -> bool {
        self.0.is::<T>()
    }

    /// The boxed value.
    pub fn into_inner(self) -> Box<dyn Any> {
        self.0
    }
}

impl fmt::Debug for Dynamic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dynamic(..)")
    }
}

impl Construct for Dynamic {
    fn construct(node: Node<'_>) -> Result<Self> {
        node.registered_any().map(Dynamic)
    }
}
