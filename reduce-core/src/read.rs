//! The reader engine: a stack machine over the opcodes of protocols 0 to 5.
//!
//! It builds a [`Graph`]: an object the pickle memoizes and fetches again
//! goes into a table when it is memoized, so that later `GET`s (sharing)
//! and references from inside itself (cycles) point at one object. When
//! `STOP` is reached the objects referred to only once are moved back
//! inline, so plain data loads as a plain tree. A put that no `GET` fetches
//! is only counted: a slice is read first on the bet that nothing is
//! fetched, sharing on the spot what a `GET` fetches from the stack slot it
//! was put from, and read again after a scan for the fetched keys if a
//! `GET` asks for an object that has left its slot (see `load`); a stream
//! and inert mode keep every put.
//!
//! | file | what |
//! |---|---|
//! | `input.rs` | where the bytes come from: a slice, or any `io::Read` (frames) |
//! | `decode.rs` | each opcode's argument, decoded once for the machine and the inspector |
//! | `machine.rs` | the stack machine, the memo, and inert mode's program |
//! | `stream.rs` | streaming typed reads: a typed value straight from the opcodes, when the pickle is shaped as CPython writes plain data |
//!
//! The engine asks the layer above about globals only through [`Resolve`],
//! its `find_class`; the typed layer's registry answers it.

use std::collections::{HashMap, VecDeque};

use crate::base::error::{Error, ErrorKind, Result};
use crate::base::limits::Limits;
use crate::base::op::STOP;
use crate::value::{Global, Graph, Value};

pub(crate) mod decode;
pub(crate) mod input;
mod machine;
pub(crate) mod stream;

use input::Input;

/// How the Python 2 string opcodes (`STRING`, `BINSTRING`,
/// `SHORT_BINSTRING`) are decoded: Python's `encoding` argument of
/// `pickle.loads`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StringDecoding {
    /// Decode as ASCII and fail on any other byte (Python's default).
    #[default]
    Ascii,
    /// Decode as Latin-1: every byte is one code point (`encoding="latin1"`,
    /// what NumPy arrays pickled by Python 2 need).
    Latin1,
    /// Keep the bytes as `bytes` (`encoding="bytes"`).
    Bytes,
}

/// A hook that turns a persistent id into the object it stands for.
pub type PersistentLoad<'h> = Box<dyn FnMut(Graph) -> Result<Value> + 'h>;

/// The reader's `find_class`: what the machine asks the layer above about
/// the globals a pickle names (outside inert mode, which keeps them all as
/// data).
pub(crate) trait Resolve {
    /// `Ok` when `module.name` (already under its Python 3 name) may be
    /// loaded, else the error that refuses it by name. `plain_data` says the
    /// reader itself knows the global (`builtins.set`, `_codecs.encode`, ...).
    fn find_class(&self, module: &str, name: &str, plain_data: bool) -> Result<()>;
    /// The global an extension code (`EXT1`, `EXT2`, `EXT4`) names, if one is
    /// registered.
    fn extension(&self, code: u32) -> Option<Global>;
    /// The resolver itself, for the layer above to find its own type in
    /// (the registry a field read by its Graph-path reader needs).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// What the machine is told: the unpickler's options.
pub(crate) struct Options<'h> {
    pub(crate) inert: bool,
    pub(crate) strings: StringDecoding,
    pub(crate) fix_imports: bool,
    pub(crate) limits: Limits,
    pub(crate) persistent_load: Option<PersistentLoad<'h>>,
    pub(crate) buffers: VecDeque<Vec<u8>>,
    pub(crate) extensions: HashMap<u32, Global>,
    /// Whether the load refuses dict keys and set items Python cannot hash
    /// (a load of a `Value` or a `Graph`: Python data as it is).
    pub(crate) hashing: bool,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            inert: false,
            strings: StringDecoding::default(),
            fix_imports: true,
            limits: Limits::default(),
            persistent_load: None,
            buffers: VecDeque::new(),
            extensions: HashMap::new(),
            hashing: true,
        }
    }
}

/// Reads one pickle from `input` into a [`Graph`].
///
/// `tree` says the caller wants the root as a tree (a [`Value`]): the
/// first reading copies a fetched str or global into its place, as the
/// tree would (see `Machine::copy_fetches`), and when it still loses its
/// bet, the stream reads the tree by value (memo fetches of strings and
/// tuples copied as the tree would copy them) before the slice is read
/// again; either way the `Graph` it returns has no shared objects. Where
/// the stream misses, the second reading goes on as without it, and gives
/// every error. Returns whether the stream read it.
pub(crate) fn load<I: Input>(
    input: &mut I,
    options: &mut Options<'_>,
    resolve: &dyn Resolve,
    tree: bool,
) -> Result<(Graph, bool)> {
    // A slice is read first keeping no memo put, on the bet that nothing is
    // fetched. A GET of an object still in the stack slot it was put from
    // shares it there; a GET of one that has left loses the bet, and the
    // slice is read again keeping the puts its GETs fetch (found by a
    // scan). A second reading is only sound where the first had no effect
    // outside the machine: no hook called, no buffer taken. A stream and
    // inert mode keep every put.
    let began = input.pos();
    load_from(input, options, resolve, tree).map_err(|e| ran_out(e, began))
}

/// An input that ends where the pickle should begin is not a truncated
/// pickle: [`ErrorKind::EndOfInput`], which ends a loop over a stream.
fn ran_out(e: Error, began: u64) -> Error {
    if matches!(e.kind(), ErrorKind::Eof) && e.offset() == Some(began) && e.opcode().is_none() {
        return Error::new(ErrorKind::EndOfInput).at(began, None);
    }
    e
}

/// [`load`], with any error as the machine gives it.
fn load_from<I: Input>(
    input: &mut I,
    options: &mut Options<'_>,
    resolve: &dyn Resolve,
    tree: bool,
) -> Result<(Graph, bool)> {
    let fresh = !options.inert && options.persistent_load.is_none() && options.buffers.is_empty();
    let keep = match input.slice() {
        Some(_) if fresh => machine::Keep::None,
        _ => machine::Keep::All,
    };
    let start = input.slice().map(|(_, pos)| pos);
    let len = input
        .slice()
        .map_or(0, |(data, pos)| data.len().saturating_sub(pos));
    let mut machine = machine::Machine::new(options, resolve, keep, len);
    if tree {
        // A str or a global fetched after it has left its slot is copied
        // where the tree holds a copy anyway: an instance's class and
        // attribute names, fetched for every instance, do not lose the bet.
        machine.copy_fetches(
            start.unwrap_or_default(),
            len,
            input.slice().map_or(0, |(data, _)| data.len()),
        );
    }
    let stop = match machine.run(input) {
        Err(_) if machine.rerun => {
            drop(machine);
            return load_again(
                input,
                options,
                resolve,
                tree,
                start.unwrap_or_default(),
                len,
            );
        }
        stop => stop?,
    };
    let graph = machine.finish().map_err(|e| e.at(stop, Some(STOP)))?;
    Ok((graph, false))
}

/// [`load`]'s second reading of a slice from `start`, when the first lost
/// its bet. A function of its own, so that `load` builds its machine where
/// it lives: a machine assigned again was built aside and copied in, 480
/// bytes on every read.
#[inline(never)]
fn load_again<I: Input>(
    input: &mut I,
    options: &mut Options<'_>,
    resolve: &dyn Resolve,
    tree: bool,
    start: usize,
    len: usize,
) -> Result<(Graph, bool)> {
    if tree && options.extensions.is_empty() {
        if let Some((data, _)) = input.slice() {
            let streamed = stream::Stream::new(data, start, options, resolve)
                .root(|s| s.value())
                .ok();
            if let Some((root, end)) = streamed {
                input.seek(end);
                return Ok((Graph::new(root), true));
            }
        }
    }
    input.seek(start);
    let keep = match input.slice() {
        Some((data, _)) => machine::Keep::Fetched(machine::fetched_keys(
            data,
            start,
            options.limits.max_int_digits,
        )),
        None => machine::Keep::All,
    };
    let mut machine = machine::Machine::new(options, resolve, keep, len);
    let stop = machine.run(input)?;
    let graph = machine.finish().map_err(|e| e.at(stop, Some(STOP)))?;
    Ok((graph, false))
}

/// The Python type of the first value in `v` Python cannot hash as a dict
/// key or set item (a list, dict, set or bytearray, alone or inside
/// tuples), or `None`; a reference is followed into `objects`. CPython
/// refuses to load a pickle that makes one a key (`TypeError: unhashable
/// type`).
#[inline]
pub(crate) fn unhashable<'v>(v: &'v Value, objects: &'v [Value]) -> Option<&'static str> {
    let open = |v: &'v Value| -> &'v Value {
        let v = match v {
            Value::Seq(s) => &s.value,
            v => v,
        };
        match v {
            Value::Ref(id) => objects.get(id.index()).unwrap_or(v),
            v => v,
        }
    };
    let v = open(v);
    match v {
        Value::List(_) | Value::Dict(_) | Value::Set(_) | Value::ByteArray(_) => {
            Some(v.type_name())
        }
        Value::Tuple(items) => items.iter().find_map(|i| {
            let i = open(i);
            match i {
                Value::List(_) | Value::Dict(_) | Value::Set(_) | Value::ByteArray(_) => {
                    Some(i.type_name())
                }
                Value::Tuple(inner) if !inner.is_empty() => unhashable_deep(inner, objects),
                _ => None,
            }
        }),
        _ => None,
    }
}

/// [`unhashable`] of tuples in a tuple, without recursion (tuples may nest
/// as deep as the input goes); each shared object is looked at once, so a
/// tuple of tuples that share their items costs its size, not the size of
/// its tree.
#[inline(never)]
fn unhashable_deep<'v>(items: &'v [Value], objects: &'v [Value]) -> Option<&'static str> {
    let mut todo: Vec<&Value> = items.iter().collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(v) = todo.pop() {
        let v = match v {
            Value::Seq(s) => &s.value,
            v => v,
        };
        let v = match v {
            Value::Ref(id) if !seen.insert(id.index()) => continue,
            Value::Ref(id) => objects.get(id.index()).unwrap_or(v),
            v => v,
        };
        match v {
            Value::List(_) | Value::Dict(_) | Value::Set(_) | Value::ByteArray(_) => {
                return Some(v.type_name())
            }
            Value::Tuple(items) => todo.extend(items),
            _ => {}
        }
    }
    None
}

/// What a known global means when it is called.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Builtin {
    Set,
    FrozenSet,
    ByteArray,
    Bytes,
    CodecsEncode,
    /// `getattr(global, "name")`: how CPython names a nested class before
    /// protocol 4. Understood only on a global, as the dotted global.
    GetAttr,
}

/// The globals plain data needs. `None` means allowed and kept as data.
pub(crate) fn known_global(module: &str, name: &str) -> Option<Option<Builtin>> {
    Some(match (module, name) {
        ("builtins", "set") => Some(Builtin::Set),
        ("builtins", "frozenset") => Some(Builtin::FrozenSet),
        ("builtins", "bytearray") => Some(Builtin::ByteArray),
        ("builtins", "bytes") => Some(Builtin::Bytes),
        ("_codecs", "encode") => Some(Builtin::CodecsEncode),
        ("builtins", "getattr") => Some(Builtin::GetAttr),
        ("copyreg", "_reconstructor")
        | ("copyreg", "__newobj__")
        | ("copyreg", "__newobj_ex__")
        | ("builtins", "object") => None,
        _ => return None,
    })
}
