//! The entry point for reading: [`Unpickler`], the reader engine's options
//! and the typed layer's registry put together.

use std::io;
use std::sync::Arc;

use crate::base::error::Result;
use crate::base::limits::Limits;
use crate::read::input::{Input, IoRead, SliceRead, Source};
use crate::read::stream::Stream;
use crate::read::{self, Options, StringDecoding};
use crate::typed::construct::Construct;
use crate::typed::registry::{Lookup, Registry};
use crate::value::{Global, Graph, Value};

/// Reads pickles, with options: inert mode, string decoding, limits, a
/// persistent-id hook, out-of-band buffers and extension codes.
///
/// ```
/// use reduce::{Unpickler, Value};
///
/// // pickle.dumps(["a", 1], protocol=2)
/// let bytes = b"\x80\x02]q\x00(X\x01\x00\x00\x00aq\x01K\x01e.";
/// let value: Value = Unpickler::from_slice(bytes).load()?;
/// assert_eq!(value, Value::List(vec!["a".into(), 1.into()]));
/// # Ok::<(), reduce::Error>(())
/// ```
///
/// Several pickles written one after another are read in turn, as with
/// Python's `Unpickler.load`. The clean end of the stream is
/// [`ErrorKind::EndOfInput`](crate::ErrorKind::EndOfInput) (Python's
/// `EOFError`), and a pickle cut short is
/// [`ErrorKind::Eof`](crate::ErrorKind::Eof):
///
/// ```
/// use reduce::{ErrorKind, Unpickler, Value};
///
/// let stream = b"K\x01.K\x02.";
/// let mut unpickler = Unpickler::new(&stream[..]);
/// let mut all = Vec::new();
/// loop {
///     match unpickler.load::<Value>() {
///         Ok(v) => all.push(v),
///         Err(e) if matches!(e.kind(), ErrorKind::EndOfInput) => break,
///         Err(e) => return Err(e),
///     }
/// }
/// assert_eq!(all, [Value::Int(1), Value::Int(2)]);
/// # Ok::<(), reduce::Error>(())
/// ```
pub struct Unpickler<'h, I> {
    input: I,
    options: Options<'h>,
    registry: Option<Arc<Registry>>,
    streaming: bool,
    /// Whether the last load was read by the stream.
    streamed: bool,
}

/// The options, with each hook shown as whether it is set (the input is
/// not shown: it need not be `Debug`).
impl<I> std::fmt::Debug for Unpickler<'_, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = &self.options;
        f.debug_struct("Unpickler")
            .field("inert", &o.inert)
            .field("strings", &o.strings)
            .field("fix_imports", &o.fix_imports)
            .field("limits", &o.limits)
            .field("persistent_load", &o.persistent_load.is_some())
            .field("buffers", &o.buffers.len())
            .field("extensions", &o.extensions)
            .field("registry", &self.registry.is_some())
            .field("streaming", &self.streaming)
            .finish_non_exhaustive()
    }
}

impl<'a> Unpickler<'static, SliceRead<'a>> {
    /// An unpickler reading from a byte slice.
    pub fn from_slice(bytes: &'a [u8]) -> Self {
        Unpickler::with_input(SliceRead::new(bytes))
    }

    /// How many bytes have been read, i.e. where the next pickle starts.
    pub fn position(&self) -> usize {
        self.input.position()
    }
}

impl<R: io::Read> Unpickler<'static, IoRead<R>> {
    /// An unpickler reading from `reader`.
    pub fn new(reader: R) -> Self {
        Unpickler::with_input(IoRead::new(reader))
    }
}

impl<'h, R: io::Read> Unpickler<'h, IoRead<R>> {
    /// The reader back, positioned just after the last `STOP` read.
    pub fn into_inner(self) -> R {
        self.input.into_reader()
    }

    /// The next pickle read ahead whole, given to a reader of its own
    /// (serde's tape): exactly its bytes, through `STOP`. When `read`
    /// gives up (or the read-ahead did), the bytes stay buffered for a
    /// [`load_graph`](Unpickler::load_graph) that reads them again.
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
    pub(crate) fn read_whole<T>(&mut self, read: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
        let (data, start) = self.input.whole()?;
        let end = data.len();
        let value = read(&data[start..])?;
        self.input.seek(end);
        Some(value)
    }
}

impl<'h, I: Input> Unpickler<'h, I> {
    fn with_input(input: I) -> Self {
        Unpickler {
            input,
            options: Options::default(),
            registry: None,
            streaming: true,
            streamed: false,
        }
    }

    /// Inert mode: keep every global and every reduction as data
    /// ([`Value::Global`], [`Value::Reduce`]) instead of refusing unknown
    /// ones. Nothing is ever called in either mode. Default off.
    ///
    /// Inert mode keeps the whole pickle as a program: every call, including
    /// those made only for their effect (`REDUCE` then `POP`), every change
    /// to an object made after it was built, and the order of each relative
    /// to the calls that receive the object ([`Value::Seq`], [`Step`](crate::Step)); how
    /// each global was spelled (`GLOBAL` or `STACK_GLOBAL` on which string
    /// objects); and persistent ids as [`Value::PersistentId`] data when no
    /// [`persistent_load`](Unpickler::persistent_load) hook is set. Written
    /// back, it makes CPython perform the same calls with the same arguments
    /// in the same order, and what CPython's own pickler wrote comes back
    /// byte for byte. (One exception: before protocol 3 CPython writes
    /// `bytes` as `_codecs.encode(text, 'latin1')`, read here as the
    /// `bytes`; where the pickle fetches that text again from the memo, a
    /// one-character `str` CPython shared with it, the rewrite writes the
    /// `str` anew. The objects are equal.) What the model cannot hold is an
    /// error, never dropped.
    ///
    /// ```
    /// use reduce::Unpickler;
    ///
    /// // A fickling-style payload: the data, then exec(...) run for its effect.
    /// let bytes = b"\x80\x02]q\x00c__builtin__\nexec\nX\x04\x00\x00\x00passq\x01\x85R0.";
    /// let graph = Unpickler::from_slice(bytes).inert(true).load_graph()?;
    /// // Nothing ran, and nothing was lost: the call is written back.
    /// assert!(format!("{graph:?}").contains("Discard(<reduce builtins.exec, ('pass',)>)"));
    /// let out = reduce::to_vec_with_protocol(&graph, 2)?;
    /// assert!(out.windows(5).any(|w| w == b"exec\n"));
    /// # Ok::<(), reduce::Error>(())
    /// ```
    pub fn inert(mut self, inert: bool) -> Self {
        self.options.inert = inert;
        self
    }

    /// How `STRING`, `BINSTRING` and `SHORT_BINSTRING` are decoded. Default
    /// [`StringDecoding::Ascii`].
    pub fn strings(mut self, decoding: StringDecoding) -> Self {
        self.options.strings = decoding;
        self
    }

    /// Map Python 2 names (`__builtin__`, `copy_reg`, ...) in protocol 0-2
    /// pickles to their Python 3 names, as Python's `fix_imports` does.
    /// Default on.
    pub fn fix_imports(mut self, fix: bool) -> Self {
        self.options.fix_imports = fix;
        self
    }

    /// The resource limits. Default [`Limits::default`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.options.limits = limits;
        self
    }

    /// The hook that turns a persistent id (`PERSID`, `BINPERSID`) into an
    /// object: Python's `persistent_load`. Without one, a persistent id is an
    /// error, except in [inert mode](Unpickler::inert), which keeps it as
    /// [`Value::PersistentId`] data.
    ///
    /// The hook receives the id whole, as a [`Graph`] of its own: parts the
    /// pickle fetched from its memo are resolved, and parts the id holds
    /// twice stay shared. Return `Value::PersistentId(Box::new(pid.root().clone().into()))`
    /// to keep a self-contained id as data.
    ///
    /// ```
    /// use reduce::{Unpickler, Value};
    ///
    /// // pickle.dumps([P('user', 7), P('user', 8)]) with persistent_id = lambda p: ('user', p.n):
    /// // the second 'user' is a memo reference to the first.
    /// let bytes = b"\x80\x02]q\x00(X\x04\x00\x00\x00userq\x01K\x07\x86q\x02Qh\x01K\x08\x86q\x03Qe.";
    /// let mut seen = Vec::new();
    /// let value: Value = Unpickler::from_slice(bytes)
    ///     .persistent_load(|pid| {
    ///         seen.push(format!("{:?}", pid.root()));
    ///         Ok(Value::None)
    ///     })
    ///     .load()?;
    /// assert_eq!(seen, ["('user', 7)", "('user', 8)"]);
    /// # Ok::<(), reduce::Error>(())
    /// ```
    pub fn persistent_load<'g>(
        self,
        hook: impl FnMut(Graph) -> Result<Value> + 'g,
    ) -> Unpickler<'g, I>
    where
        'h: 'g,
    {
        let mut options: Options<'g> = self.options;
        options.persistent_load = Some(Box::new(hook));
        Unpickler {
            input: self.input,
            options,
            registry: self.registry,
            streaming: self.streaming,
            streamed: false,
        }
    }

    /// Out-of-band buffers for `NEXT_BUFFER`, in order (Python's `buffers`).
    pub fn buffers(mut self, buffers: impl IntoIterator<Item = Vec<u8>>) -> Self {
        self.options.buffers = buffers.into_iter().collect();
        self
    }

    /// Registers an extension code (`EXT1`/`EXT2`/`EXT4`) for the global
    /// `module.name`, as `copyreg.add_extension` does. The global is still
    /// subject to the same checks as one named in full.
    pub fn extension(mut self, code: u32, module: &str, name: &str) -> Self {
        self.options
            .extensions
            .insert(code, Global::new(module, name));
        self
    }

    /// Reads one pickle.
    pub fn load<T: Construct>(&mut self) -> Result<T> {
        let lookup = Lookup::new(self.registry.clone());
        self.streamed = false;
        if let Some(value) = self.stream::<T>(&lookup) {
            self.streamed = true;
            return Ok(value);
        }
        let tree = self.streaming && T::stream_after_sharing();
        self.options.hashing = T::python_data();
        let (graph, streamed) = read::load(&mut self.input, &mut self.options, &lookup, tree)?;
        self.streamed = streamed;
        T::from_graph(graph, &lookup, &self.options.limits)
    }

    /// Reads one pickle into a [`Graph`].
    pub fn load_graph(&mut self) -> Result<Graph> {
        self.options.hashing = true;
        let lookup = Lookup::new(self.registry.clone());
        self.load_with(&lookup)
    }

    /// [`load_graph`](Unpickler::load_graph) for a reader of Rust types
    /// (serde's): dict keys and set items are whatever the type reads.
    #[cfg(feature = "serde")]
    pub(crate) fn load_graph_typed(&mut self) -> Result<Graph> {
        self.options.hashing = false;
        let lookup = Lookup::new(self.registry.clone());
        self.load_with(&lookup)
    }

    /// The streaming path of [`load`](Unpickler::load), where it applies: a
    /// slice, or a reader's pickle read ahead into memory, and nothing that needs the machine (inert mode, hooks,
    /// out-of-band buffers, extension codes given here).
    fn stream<T: Construct>(&mut self, lookup: &Lookup) -> Option<T> {
        let o = &self.options;
        if !self.streaming
            || !T::stream_at_root()
            || o.inert
            || o.persistent_load.is_some()
            || !o.buffers.is_empty()
            || !o.extensions.is_empty()
        {
            return None;
        }
        let (data, pos) = self.input.whole()?;
        let (value, end) = Stream::new(data, pos, o, lookup)
            .root(T::construct_stream)
            .ok()?;
        self.input.seek(end);
        Some(value)
    }

    /// Whether typed loads may build their value straight from the opcodes
    /// (default on). From a reader, the pickle is first read ahead into
    /// memory through its `STOP`, never past it, so the reader is left
    /// where the other path leaves it; a pickle of more than 16 Mi opcodes
    /// is left to the `Graph` path, whose limits stop an endless stream. The value and any error
    /// are the same either way: a pickle the streaming reader does not
    /// follow is read again through a [`Graph`], and an error always comes
    /// from that path. Turning it off makes every load build the `Graph`
    /// first (to compare the two, or to measure).
    ///
    /// The std types stream, and derived types in every form: a
    /// `module.Name(*fields)` struct, an instance (`state`, `state =
    /// "slots"`: the class, then its `__dict__` or `(dict, slots)` state,
    /// attributes in any order, unknown ones of plain data skipped), a
    /// `python_enum` and an enum of one global per variant; a `rest` field
    /// keeps the other attributes as the `Graph` path does. A [`Value`]
    /// streams as the tree the `Graph` path makes of it: memo references to
    /// strings, bytes, tuples, frozensets and classes are read again by
    /// value, one to a list, dict, set or object is left to the `Graph`
    /// path. A field read with `with` or `registry` is read as a `Value`
    /// and given, as a `Graph` of its own, to its reader (a `serde` field is
    /// deserialized from the `Value`); a memo reference across the field's
    /// bounds (but to a class) leaves the load to the `Graph` path.
    ///
    /// ```
    /// use reduce::Unpickler;
    ///
    /// let bytes = reduce::to_vec(&vec![(1u8, "a".to_string())])?;
    /// let fast: Vec<(u8, String)> = Unpickler::from_slice(&bytes).load()?;
    /// let slow: Vec<(u8, String)> = Unpickler::from_slice(&bytes).streaming(false).load()?;
    /// assert_eq!(fast, slow);
    /// # Ok::<(), reduce::Error>(())
    /// ```
    pub fn streaming(mut self, on: bool) -> Self {
        self.streaming = on;
        self
    }

    /// Whether the last [`load`](Unpickler::load) was read straight from
    /// the opcodes (for tests of the two paths).
    #[doc(hidden)]
    pub fn streamed(&self) -> bool {
        self.streamed
    }

    fn load_with(&mut self, lookup: &Lookup) -> Result<Graph> {
        read::load(&mut self.input, &mut self.options, lookup, false).map(|(graph, _)| graph)
    }

    /// A registry layered over the process-wide one for this unpickler:
    /// its constructors are allowed globals too, and its extension codes are
    /// read. (Python's per-unpickler `find_class` override.)
    pub fn registry(mut self, registry: impl Into<Arc<Registry>>) -> Self {
        self.registry = Some(registry.into());
        self
    }

    /// The limits in force.
    pub fn current_limits(&self) -> &Limits {
        &self.options.limits
    }
}
