//! Limits: how much a hostile pickle may make the reader build, and how
//! deep the typed layer recurses on either side. Every limit of the crate
//! lives here, so the reader's and the writer's agree on where to look.

/// The deepest nesting the typed writer ([`Reduce`](crate::Reduce))
/// follows, as CPython's recursion limit (1000) stops its pickler: a typed
/// value is as deep as CPython could have written it. (CPython's loader is
/// not recursive and reads deeper pickles; `Value` and `Graph` are written
/// without this limit, so deeper data is written as a `Graph`.) The typed
/// reader's bound is [`Limits::max_typed_depth`], ten times this: it reads
/// what other picklers wrote deeper, and a reader can be given a smaller
/// one per load.
pub const MAX_TYPED_DEPTH: usize = 1000;

/// Resource limits of the reader. Each one stops a hostile input early with
/// [`ErrorKind::Limit`](crate::ErrorKind::Limit) naming the field.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Most items on the stack plus open `MARK`s at any time. Default 10,000,000.
    pub max_stack: usize,
    /// Most entries in the memo. Default 10,000,000.
    pub max_memo: usize,
    /// Deepest nesting of the loaded value: how deep its deepest container
    /// sits, the root at depth 0 (`[]` is 0 deep, `[[]]` 1, fifty nested
    /// lists 49). Default 100,000. Every part of this crate handles any depth
    /// without recursion; the limit protects code that walks the value
    /// recursively afterwards.
    pub max_depth: usize,
    /// Most decimal digits in a protocol 0 `INT`/`LONG` (CPython's
    /// `sys.get_int_max_str_digits()`). Default 4300.
    pub max_int_digits: usize,
    /// Most values made when a [`Graph`](crate::Graph) with shared objects is copied into a
    /// plain [`Value`](crate::Value) tree (`from_slice::<Value>`), or read
    /// by value into a typed or serde value: a shared object counts once for
    /// every place that refers to it, and a copy of a `str`, `bytes` or big
    /// `int` one value more per 32 bytes of it, so that the limit bounds the
    /// bytes copied too (about 32 bytes a value: 320 MB at the default).
    /// A typed read counts against the larger of this and the default.
    /// Default 10,000,000.
    pub max_tree_nodes: usize,
    /// Deepest nesting a typed read ([`Construct`](crate::Construct)) follows: typed reading
    /// recurses once per level of the Rust type, so a recursive type (a
    /// linked list, a tree) read from a deeply nested pickle stops here.
    /// The stack grows on the heap as needed, so any thread can read up to
    /// this depth. Default 10,000.
    pub max_typed_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_stack: 10_000_000,
            max_memo: 10_000_000,
            max_depth: 100_000,
            max_int_digits: 4300,
            max_tree_nodes: 10_000_000,
            max_typed_depth: 10 * MAX_TYPED_DEPTH,
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_stack`].
    pub fn max_stack(mut self, n: usize) -> Self {
        self.max_stack = n;
        self
    }
    /// Sets [`Limits::max_memo`].
    pub fn max_memo(mut self, n: usize) -> Self {
        self.max_memo = n;
        self
    }
    /// Sets [`Limits::max_depth`].
    pub fn max_depth(mut self, n: usize) -> Self {
        self.max_depth = n;
        self
    }
    /// Sets [`Limits::max_int_digits`].
    pub fn max_int_digits(mut self, n: usize) -> Self {
        self.max_int_digits = n;
        self
    }
    /// Sets [`Limits::max_tree_nodes`].
    pub fn max_tree_nodes(mut self, n: usize) -> Self {
        self.max_tree_nodes = n;
        self
    }
    /// Sets [`Limits::max_typed_depth`].
    pub fn max_typed_depth(mut self, n: usize) -> Self {
        self.max_typed_depth = n;
        self
    }
}

/// Runs `f` with at least [`RED_ZONE`] bytes of stack, moving to a fresh
/// heap-allocated segment of [`STACK_SEGMENT`] bytes when less is left.
pub(crate) fn grow<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, f)
}

/// How many levels of typed reading or writing run between two checks of
/// the stack left (each check costs a few nanoseconds per value).
pub(crate) const GROW_EVERY: usize = 8;
/// Stack that [`GROW_EVERY`] levels may use before the next check (a
/// debug build uses about 10 KiB a level).
const RED_ZONE: usize = 256 * 1024;
/// Stack allocated at a time when it runs low.
const STACK_SEGMENT: usize = 2 * 1024 * 1024;
