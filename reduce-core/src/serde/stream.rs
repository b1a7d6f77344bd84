//! The fast path of [`from_slice`](super::from_slice): the opcodes decoded
//! once (with the reader's decoder, `read/decode.rs`) into a flat tape of
//! nodes that point into the input, then walked by serde, which borrows
//! `&'de str` and `&'de [u8]` straight from the slice. No `Value`, no
//! `Graph`, no string copied.
//!
//! The tape takes the plain data CPython writes (every protocol, memo
//! references, frames, the `set`/`frozenset`/`bytes`/`bytearray` calls of
//! the older protocols). Anything else (another global, `BUILD`, `POP`, a
//! Python 2 string, a container changed after it was shared, a limit
//! reached, any error at all) makes it give up, and `from_slice` reads the
//! pickle again through the [`Graph`](crate::Graph) path. So the results
//! and the errors are that path's: the fast path only decides how fast.

use ::serde::de::{self, DeserializeSeed, Visitor};
use num_bigint::BigInt;

use crate::base::error::{Error, ErrorKind, Result};
use crate::base::limits::Limits;
use crate::base::op::*;
use crate::read::decode::{self, IntLine};
use crate::read::input::Source;
use crate::read::{known_global, Builtin as ReaderBuiltin};

const NIL: u32 = u32::MAX;

/// Where a string or bytes node's data is.
#[derive(Clone, Copy)]
enum Blob {
    /// `data[off..off + len]` of the input.
    Slice(u32, u32),
    /// An index into the tape's owned strings or bytes.
    Owned(u32),
}

#[derive(Clone, Copy, PartialEq)]
enum Builtin {
    Set,
    FrozenSet,
    Bytes,
    ByteArray,
    CodecsEncode,
}

#[derive(Clone, Copy)]
enum Kind {
    None,
    Bool(bool),
    Int(i64),
    Big(u32),
    Float(f64),
    Str(Blob),
    Bytes(Blob),
    ByteArray(Blob),
    Tuple,
    List,
    Dict,
    Set,
    FrozenSet,
    /// A memo reference to another node.
    Ref(u32),
    Global(Builtin),
    /// A list whose items became a set (`set([...])`): it is not data any
    /// more.
    Spent,
}

const ATTACHED: u8 = 1;
const FETCHED: u8 = 2;

#[derive(Clone, Copy)]
struct Node {
    kind: Kind,
    first: u32,
    last: u32,
    next: u32,
    len: u32,
    height: u32,
    flags: u8,
}

/// Why the fast path gave up: the caller reads the pickle again the slow
/// way, which says what (if anything) is wrong.
struct GiveUp;

impl From<Error> for GiveUp {
    fn from(_: Error) -> GiveUp {
        GiveUp
    }
}

type Try<T> = std::result::Result<T, GiveUp>;

/// The decoded pickle.
pub(crate) struct Tape<'de> {
    data: &'de [u8],
    nodes: Vec<Node>,
    strs: Vec<String>,
    bytes: Vec<Vec<u8>>,
    bigs: Vec<BigInt>,
    root: u32,
}

struct Cursor<'de> {
    data: &'de [u8],
    pos: usize,
}

impl Source for Cursor<'_> {
    fn pos(&self) -> u64 {
        self.pos as u64
    }
    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or_else(|| Error::new(ErrorKind::Eof))?;
        self.pos += 1;
        Ok(b)
    }
    fn take(&mut self, n: u64) -> Result<&[u8]> {
        let n = usize::try_from(n).map_err(|_| Error::new(ErrorKind::Eof))?;
        if n > self.data.len() - self.pos {
            return Err(Error::new(ErrorKind::Eof));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn line(&mut self) -> Result<&[u8]> {
        let rest = &self.data[self.pos..];
        let i = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| Error::new(ErrorKind::Eof))?;
        self.pos += i + 1;
        Ok(&rest[..i])
    }
    fn frame(&mut self, len: u64) -> Result<()> {
        if len > (self.data.len() - self.pos) as u64 {
            return Err(Error::new(ErrorKind::Eof));
        }
        Ok(())
    }
}

impl<'de> Cursor<'de> {
    /// The `n` bytes of data after a length just decoded, as a blob of the
    /// input.
    fn blob(&mut self, n: u64) -> Try<(Blob, &'de [u8])> {
        let start = self.pos;
        self.take(n)?;
        let (off, len) = (u32::try_from(start), u32::try_from(n));
        let (Ok(off), Ok(len)) = (off, len) else {
            return Err(GiveUp);
        };
        Ok((Blob::Slice(off, len), &self.data[start..self.pos]))
    }
}

/// A height above this gives up: the slow path's limits decide.
const MAX_HEIGHT: u32 = 10_000;

struct Machine<'de> {
    tape: Tape<'de>,
    stack: Vec<u32>,
    marks: Vec<usize>,
    memo: Vec<u32>,
    proto: u8,
    limits: Limits,
}

impl<'de> Machine<'de> {
    fn push(&mut self, kind: Kind) -> Try<()> {
        let id = self.new_node(kind)?;
        self.stack.push(id);
        if self.stack.len() + self.marks.len() > self.limits.max_stack {
            return Err(GiveUp);
        }
        Ok(())
    }

    fn new_node(&mut self, kind: Kind) -> Try<u32> {
        let id = u32::try_from(self.tape.nodes.len()).map_err(|_| GiveUp)?;
        if id == NIL {
            return Err(GiveUp);
        }
        self.tape.nodes.push(Node {
            kind,
            first: NIL,
            last: NIL,
            next: NIL,
            len: 0,
            height: 0,
            flags: 0,
        });
        Ok(id)
    }

    fn pop(&mut self) -> Try<u32> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(GiveUp);
        }
        self.stack.pop().ok_or(GiveUp)
    }

    fn top(&self) -> Try<u32> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(GiveUp);
        }
        self.stack.last().copied().ok_or(GiveUp)
    }

    fn target(&self, id: u32) -> u32 {
        match self.tape.nodes[id as usize].kind {
            Kind::Ref(t) => t,
            _ => id,
        }
    }

    /// Adds `child` as the last item of `parent`, which nobody may have
    /// seen yet: a change to a shared or placed container would need the
    /// graph's bookkeeping.
    fn attach(&mut self, parent: u32, child: u32) -> Try<()> {
        let p = self.tape.nodes[parent as usize];
        if p.flags & (ATTACHED | FETCHED) != 0 {
            return Err(GiveUp);
        }
        let c_height = self.tape.nodes[self.target(child) as usize].height;
        let c = &mut self.tape.nodes[child as usize];
        if c.flags & ATTACHED != 0 {
            return Err(GiveUp);
        }
        c.flags |= ATTACHED;
        if p.last == NIL {
            self.tape.nodes[parent as usize].first = child;
        } else {
            self.tape.nodes[p.last as usize].next = child;
        }
        let p = &mut self.tape.nodes[parent as usize];
        p.last = child;
        p.len += 1;
        p.height = p.height.max(c_height + 1);
        if p.height > MAX_HEIGHT {
            return Err(GiveUp);
        }
        Ok(())
    }

    /// A new container of the items from `stack[from..]`, in their place.
    fn container(&mut self, kind: Kind, from: usize) -> Try<()> {
        let id = self.new_node(kind)?;
        for i in from..self.stack.len() {
            let item = self.stack[i];
            self.attach(id, item)?;
        }
        self.stack.truncate(from);
        self.stack.push(id);
        Ok(())
    }

    /// The items from `stack[from..]` added to the container just below
    /// them, which must be of the kind `want` says.
    fn extend(&mut self, from: usize, want: fn(Kind) -> bool) -> Try<()> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if from == 0 || from - 1 < floor || from > self.stack.len() {
            return Err(GiveUp);
        }
        let target = self.stack[from - 1];
        if !want(self.tape.nodes[target as usize].kind) {
            return Err(GiveUp);
        }
        for i in from..self.stack.len() {
            let item = self.stack[i];
            self.attach(target, item)?;
        }
        self.stack.truncate(from);
        Ok(())
    }

    /// Where the items above the last mark start; the mark is removed.
    fn mark(&mut self) -> Try<usize> {
        self.marks.pop().ok_or(GiveUp)
    }

    /// Where the last `n` items start, none of them under a mark.
    fn last(&self, n: usize) -> Try<usize> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() < floor + n {
            return Err(GiveUp);
        }
        Ok(self.stack.len() - n)
    }

    fn memo_put(&mut self, key: u64) -> Try<()> {
        let id = self.target(self.top()?);
        let key = usize::try_from(key).map_err(|_| GiveUp)?;
        if key >= self.memo.len() {
            if key > 2 * self.memo.len() + 1024 || key >= self.limits.max_memo {
                return Err(GiveUp);
            }
            self.memo.resize(key + 1, NIL);
        }
        self.memo[key] = id;
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Try<()> {
        let id = *usize::try_from(key)
            .ok()
            .and_then(|k| self.memo.get(k))
            .ok_or(GiveUp)?;
        if id == NIL {
            return Err(GiveUp);
        }
        self.tape.nodes[id as usize].flags |= FETCHED;
        let height = self.tape.nodes[id as usize].height;
        self.push(Kind::Ref(id))?;
        let r = *self.stack.last().ok_or(GiveUp)?;
        self.tape.nodes[r as usize].height = height;
        Ok(())
    }

    fn int(&mut self, b: BigInt) -> Try<()> {
        match i64::try_from(&b) {
            Ok(i) => self.push(Kind::Int(i)),
            Err(_) => {
                let idx = u32::try_from(self.tape.bigs.len()).map_err(|_| GiveUp)?;
                self.tape.bigs.push(b);
                self.push(Kind::Big(idx))
            }
        }
    }

    fn owned_str(&mut self, s: String) -> Try<()> {
        let idx = u32::try_from(self.tape.strs.len()).map_err(|_| GiveUp)?;
        self.tape.strs.push(s);
        self.push(Kind::Str(Blob::Owned(idx)))
    }

    fn owned_bytes(&mut self, b: Vec<u8>, bytearray: bool) -> Try<()> {
        let idx = u32::try_from(self.tape.bytes.len()).map_err(|_| GiveUp)?;
        self.tape.bytes.push(b);
        let blob = Blob::Owned(idx);
        self.push(if bytearray {
            Kind::ByteArray(blob)
        } else {
            Kind::Bytes(blob)
        })
    }

    fn global(&mut self, module: &str, name: &str) -> Try<()> {
        // The globals plain data needs, as the reader knows them.
        let b = match known_global(module, name) {
            Some(Some(ReaderBuiltin::Set)) => Builtin::Set,
            Some(Some(ReaderBuiltin::FrozenSet)) => Builtin::FrozenSet,
            Some(Some(ReaderBuiltin::Bytes)) => Builtin::Bytes,
            Some(Some(ReaderBuiltin::ByteArray)) => Builtin::ByteArray,
            Some(Some(ReaderBuiltin::CodecsEncode)) => Builtin::CodecsEncode,
            _ => return Err(GiveUp),
        };
        // A registration that claims one of these names twice is an
        // error the slow path reports.
        let lookup = crate::typed::registry::Lookup::new(None);
        if lookup.conflict(&format!("{module}.{name}")).is_some() {
            return Err(GiveUp);
        }
        self.push(Kind::Global(b))
    }

    fn str_of(&self, id: u32) -> Option<&str> {
        match self.tape.nodes[self.target(id) as usize].kind {
            Kind::Str(b) => Some(self.tape.str(b)),
            _ => None,
        }
    }

    /// `REDUCE` of one of the calls plain data uses.
    fn reduce(&mut self) -> Try<()> {
        let args = self.pop()?;
        let args = self.target(args);
        let callable = self.pop()?;
        let callable = self.target(callable);
        let Kind::Global(b) = self.tape.nodes[callable as usize].kind else {
            return Err(GiveUp);
        };
        let a = self.tape.nodes[args as usize];
        if !matches!(a.kind, Kind::Tuple) {
            return Err(GiveUp);
        }
        let arg = |m: &Self, i: u32| -> u32 {
            let mut c = a.first;
            for _ in 0..i {
                c = m.tape.nodes[c as usize].next;
            }
            m.target(c)
        };
        match (b, a.len) {
            (Builtin::Set, 0) => self.container(Kind::Set, self.stack.len()),
            (Builtin::FrozenSet, 0) => self.container(Kind::FrozenSet, self.stack.len()),
            (Builtin::Set | Builtin::FrozenSet, 1) => {
                let list = arg(self, 0);
                let l = self.tape.nodes[list as usize];
                if !matches!(l.kind, Kind::List | Kind::Tuple) || l.flags & FETCHED != 0 {
                    return Err(GiveUp);
                }
                // The set takes the list's items; the list is spent.
                let kind = if b == Builtin::Set {
                    Kind::Set
                } else {
                    Kind::FrozenSet
                };
                let id = self.new_node(kind)?;
                let n = &mut self.tape.nodes[id as usize];
                n.first = l.first;
                n.last = l.last;
                n.len = l.len;
                n.height = l.height;
                self.tape.nodes[list as usize].kind = Kind::Spent;
                self.stack.push(id);
                Ok(())
            }
            (Builtin::Bytes, 0) => self.owned_bytes(Vec::new(), false),
            (Builtin::ByteArray, 0) => self.owned_bytes(Vec::new(), true),
            (Builtin::ByteArray, 1) => match self.tape.nodes[arg(self, 0) as usize].kind {
                Kind::Bytes(blob) => self.push(Kind::ByteArray(blob)),
                _ => Err(GiveUp),
            },
            (Builtin::ByteArray | Builtin::CodecsEncode, 2) => {
                let (s, enc) = (arg(self, 0), arg(self, 1));
                let (Some(s), Some(enc)) = (self.str_of(s), self.str_of(enc)) else {
                    return Err(GiveUp);
                };
                if !matches!(enc, "latin1" | "latin-1" | "iso-8859-1") {
                    return Err(GiveUp);
                }
                let bytes = s
                    .chars()
                    .map(|c| u8::try_from(c as u32).ok())
                    .collect::<Option<Vec<u8>>>()
                    .ok_or(GiveUp)?;
                self.owned_bytes(bytes, b == Builtin::ByteArray)
            }
            _ => Err(GiveUp),
        }
    }

    fn run(mut self, src: &mut Cursor<'de>) -> Try<Tape<'de>> {
        let digits = self.limits.max_int_digits;
        loop {
            let op = src.byte()?;
            match op {
                PROTO => self.proto = decode::proto(src)?,
                FRAME => {
                    let n = decode::uint8(src)?;
                    src.frame(n)?;
                }
                STOP => break,
                // ---- atoms ----
                NONE => self.push(Kind::None)?,
                NEWTRUE => self.push(Kind::Bool(true))?,
                NEWFALSE => self.push(Kind::Bool(false))?,
                BININT1 => self.push(Kind::Int(decode::uint1(src)? as i64))?,
                BININT2 => self.push(Kind::Int(decode::uint2(src)? as i64))?,
                BININT => self.push(Kind::Int(decode::int4(src)? as i64))?,
                INT => match decode::int_line(src, digits)? {
                    IntLine::Bool(b) => self.push(Kind::Bool(b))?,
                    IntLine::Int(i) => self.int(i)?,
                },
                LONG => {
                    let i = decode::long_line(src, digits)?;
                    self.int(i)?
                }
                LONG1 | LONG4 => {
                    let b = decode::long_bytes(src, op)?;
                    match decode::small_long(b) {
                        Some(i) => self.push(Kind::Int(i))?,
                        None => {
                            let i = BigInt::from_signed_bytes_le(b);
                            self.int(i)?
                        }
                    }
                }
                BINFLOAT => self.push(Kind::Float(decode::float8(src)?))?,
                FLOAT => self.push(Kind::Float(decode::float_line(src)?))?,
                SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 => {
                    let n = match op {
                        SHORT_BINUNICODE => decode::uint1(src)? as u64,
                        BINUNICODE => decode::uint4(src)?,
                        _ => decode::uint8(src)?,
                    };
                    let (blob, data) = src.blob(n)?;
                    // A lone surrogate is not Rust text: the slow path
                    // keeps it, and serde's reader refuses it there.
                    crate::text::utf8(data).ok_or(GiveUp)?;
                    self.push(Kind::Str(blob))?
                }
                UNICODE => {
                    let s = decode::unicode(src, op)?;
                    let s = s.as_str().ok_or(GiveUp)?.to_owned();
                    self.owned_str(s)?
                }
                SHORT_BINBYTES | BINBYTES | BINBYTES8 | BYTEARRAY8 => {
                    let n = match op {
                        SHORT_BINBYTES => decode::uint1(src)? as u64,
                        BINBYTES => decode::uint4(src)?,
                        _ => decode::uint8(src)?,
                    };
                    let (blob, _) = src.blob(n)?;
                    self.push(if op == BYTEARRAY8 {
                        Kind::ByteArray(blob)
                    } else {
                        Kind::Bytes(blob)
                    })?
                }
                // ---- containers ----
                MARK => {
                    self.marks.push(self.stack.len());
                    if self.stack.len() + self.marks.len() > self.limits.max_stack {
                        return Err(GiveUp);
                    }
                }
                EMPTY_TUPLE => self.container(Kind::Tuple, self.stack.len())?,
                TUPLE => {
                    let from = self.mark()?;
                    self.container(Kind::Tuple, from)?
                }
                TUPLE1 | TUPLE2 | TUPLE3 => {
                    let from = self.last((op - TUPLE1 + 1) as usize)?;
                    self.container(Kind::Tuple, from)?
                }
                EMPTY_LIST => self.container(Kind::List, self.stack.len())?,
                LIST => {
                    let from = self.mark()?;
                    self.container(Kind::List, from)?
                }
                APPEND => {
                    let from = self.last(1)?;
                    self.extend(from, |k| matches!(k, Kind::List))?
                }
                APPENDS => {
                    let from = self.mark()?;
                    self.extend(from, |k| matches!(k, Kind::List))?
                }
                EMPTY_DICT => self.container(Kind::Dict, self.stack.len())?,
                DICT => {
                    let from = self.mark()?;
                    if !(self.stack.len() - from).is_multiple_of(2) {
                        return Err(GiveUp);
                    }
                    self.container(Kind::Dict, from)?
                }
                SETITEM => {
                    let from = self.last(2)?;
                    self.extend(from, |k| matches!(k, Kind::Dict))?
                }
                SETITEMS => {
                    let from = self.mark()?;
                    if !(self.stack.len() - from).is_multiple_of(2) {
                        return Err(GiveUp);
                    }
                    self.extend(from, |k| matches!(k, Kind::Dict))?
                }
                EMPTY_SET => self.container(Kind::Set, self.stack.len())?,
                ADDITEMS => {
                    let from = self.mark()?;
                    self.extend(from, |k| matches!(k, Kind::Set))?
                }
                FROZENSET => {
                    let from = self.mark()?;
                    self.container(Kind::FrozenSet, from)?
                }
                // ---- memo ----
                PUT | BINPUT | LONG_BINPUT => {
                    let key = decode::memo_key(src, op, digits)?;
                    self.memo_put(key)?
                }
                MEMOIZE => {
                    let key = self.memo.len() as u64;
                    self.memo_put(key)?
                }
                GET | BINGET | LONG_BINGET => {
                    let key = decode::memo_key(src, op, digits)?;
                    self.memo_get(key)?
                }
                // ---- the calls plain data uses ----
                GLOBAL => {
                    let module = decode::name_line(src, "GLOBAL module name")?;
                    let name = decode::name_line(src, "GLOBAL name")?;
                    let (m, n) = if self.proto < 3 {
                        crate::text::compat::to_python3(&module, &name)
                    } else {
                        (module.as_str(), name.as_str())
                    };
                    let (m, n) = (m.to_owned(), n.to_owned());
                    self.global(&m, &n)?
                }
                STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(m), Some(n)) = (self.str_of(module), self.str_of(name)) else {
                        return Err(GiveUp);
                    };
                    let (m, n) = (m.to_owned(), n.to_owned());
                    self.global(&m, &n)?
                }
                REDUCE => self.reduce()?,
                _ => return Err(GiveUp),
            }
        }
        if self.stack.len() != 1 || !self.marks.is_empty() {
            return Err(GiveUp);
        }
        self.tape.root = self.stack[0];
        if self.tape.nodes[self.target(self.tape.root) as usize].height > MAX_HEIGHT {
            return Err(GiveUp);
        }
        Ok(self.tape)
    }
}

impl<'de> Tape<'de> {
    /// What one copy of a node counts against the limit of copies, as
    /// [`Value`]'s `copy_weight` counts it: one more per 32 bytes of text,
    /// bytes or digits.
    fn copy_weight(&self, kind: Kind) -> usize {
        1 + match kind {
            Kind::Str(Blob::Slice(_, len))
            | Kind::Bytes(Blob::Slice(_, len))
            | Kind::ByteArray(Blob::Slice(_, len)) => len as usize / 32,
            Kind::Str(Blob::Owned(i)) => self.strs[i as usize].len() / 32,
            Kind::Bytes(Blob::Owned(i)) | Kind::ByteArray(Blob::Owned(i)) => {
                self.bytes[i as usize].len() / 32
            }
            Kind::Big(i) => (self.bigs[i as usize].bits() / 256) as usize,
            _ => 0,
        }
    }

    fn str(&self, b: Blob) -> &str {
        match b {
            // Checked to be UTF-8 when decoded.
            Blob::Slice(off, len) => {
                crate::text::utf8(&self.data[off as usize..(off + len) as usize]).unwrap_or("")
            }
            Blob::Owned(i) => &self.strs[i as usize],
        }
    }
}

/// Decodes `data`, or gives up.
fn decode(data: &[u8]) -> Try<Tape<'_>> {
    if u32::try_from(data.len()).is_err() {
        return Err(GiveUp);
    }
    let machine = Machine {
        tape: Tape {
            data,
            nodes: Vec::with_capacity(data.len() / 4),
            strs: Vec::new(),
            bytes: Vec::new(),
            bigs: Vec::new(),
            root: NIL,
        },
        // Sized from the input, as the nodes are, so that a small pickle's
        // stack and memo do not grow one allocation at a time (a put is
        // a byte or two, a value at least one): 4 bytes an entry.
        stack: Vec::with_capacity((data.len() / 8).clamp(4, 256)),
        marks: Vec::new(),
        memo: Vec::with_capacity((data.len() / 8).min(4096)),
        proto: 0,
        limits: Limits::default(),
    };
    machine.run(&mut Cursor { data, pos: 0 })
}

/// Reads a `T` on the fast path; `None` when it gave up.
pub(crate) fn from_slice<'de, T: de::Deserialize<'de>>(data: &'de [u8]) -> Option<T> {
    let tape = decode(data).ok()?;
    let limits = Limits::default();
    let mut walk = Walk {
        on_path: Vec::new(),
        in_ref: 0,
        copied: 0,
        max_copied: limits.max_tree_nodes,
        depth: 0,
        max_depth: limits.max_typed_depth,
    };
    T::deserialize(TapeDe {
        tape: &tape,
        walk: &mut walk,
        id: tape.root,
    })
    .ok()
}

// ---- the walk: serde over the tape, as `de.rs` walks a Graph ------------------

struct Walk {
    on_path: Vec<bool>,
    in_ref: usize,
    copied: usize,
    max_copied: usize,
    depth: usize,
    max_depth: usize,
}

fn give_up() -> Error {
    Error::custom("the fast path gave up")
}

struct TapeDe<'w, 't, 'de> {
    tape: &'t Tape<'de>,
    walk: &'w mut Walk,
    id: u32,
}

impl<'w, 't, 'de> TapeDe<'w, 't, 'de> {
    fn node(&self) -> Node {
        self.tape.nodes[self.id as usize]
    }

    fn child<T>(walk: &mut Walk, f: impl FnOnce(&mut Walk) -> Result<T>) -> Result<T> {
        if walk.depth >= walk.max_depth {
            return Err(give_up());
        }
        walk.depth += 1;
        let r = if walk.depth.is_multiple_of(crate::base::limits::GROW_EVERY) {
            crate::base::limits::grow(|| f(walk))
        } else {
            f(walk)
        };
        walk.depth -= 1;
        r
    }

    fn resolved<T>(self, f: impl FnOnce(TapeDe<'_, 't, 'de>) -> Result<T>) -> Result<T> {
        let Kind::Ref(target) = self.node().kind else {
            if self.walk.in_ref > 0 {
                self.walk.copied += self.tape.copy_weight(self.node().kind);
                if self.walk.copied > self.walk.max_copied {
                    return Err(give_up());
                }
            }
            return f(self);
        };
        if self.walk.on_path.is_empty() {
            self.walk.on_path = vec![false; self.tape.nodes.len()];
        }
        let i = target as usize;
        if self.walk.on_path[i] {
            return Err(give_up());
        }
        self.walk.on_path[i] = true;
        self.walk.in_ref += 1;
        let r = TapeDe {
            tape: self.tape,
            walk: &mut *self.walk,
            id: target,
        }
        .resolved(f);
        self.walk.in_ref -= 1;
        self.walk.on_path[i] = false;
        r
    }

    fn seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let n = self.node();
        if !matches!(
            n.kind,
            Kind::Tuple | Kind::List | Kind::Set | Kind::FrozenSet
        ) {
            return Err(give_up());
        }
        let mut access = Seq {
            tape: self.tape,
            walk: self.walk,
            next: n.first,
            left: n.len as usize,
        };
        let value = visitor.visit_seq(&mut access)?;
        if access.next != NIL {
            return Err(give_up());
        }
        Ok(value)
    }

    fn map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let n = self.node();
        if !matches!(n.kind, Kind::Dict) {
            return Err(give_up());
        }
        visitor.visit_map(Map {
            tape: self.tape,
            walk: self.walk,
            next: n.first,
            len: n.len as usize / 2,
        })
    }

    fn str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.node().kind {
            Kind::Str(Blob::Slice(off, len)) => {
                let data: &'de [u8] = self.tape.data;
                let s = crate::text::utf8(&data[off as usize..(off + len) as usize])
                    .ok_or_else(give_up)?;
                visitor.visit_borrowed_str(s)
            }
            Kind::Str(b @ Blob::Owned(_)) => visitor.visit_str(self.tape.str(b)),
            _ => Err(give_up()),
        }
    }

    fn bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.node().kind {
            Kind::Bytes(b) | Kind::ByteArray(b) => match b {
                Blob::Slice(off, len) => {
                    let data: &'de [u8] = self.tape.data;
                    visitor.visit_borrowed_bytes(&data[off as usize..(off + len) as usize])
                }
                Blob::Owned(i) => visitor.visit_bytes(&self.tape.bytes[i as usize]),
            },
            _ => Err(give_up()),
        }
    }

    fn int<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.node().kind {
            Kind::Int(i) => visitor.visit_i64(i),
            Kind::Big(i) => super::de::big(&self.tape.bigs[i as usize], visitor),
            _ => Err(give_up()),
        }
    }
}

macro_rules! ints {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            self.resolved(|d| d.int(visitor))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for TapeDe<'_, '_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| match d.node().kind {
            Kind::None => visitor.visit_unit(),
            Kind::Bool(b) => visitor.visit_bool(b),
            Kind::Int(_) | Kind::Big(_) => d.int(visitor),
            Kind::Float(x) => visitor.visit_f64(x),
            Kind::Str(_) => d.str(visitor),
            Kind::Bytes(_) | Kind::ByteArray(_) => d.bytes(visitor),
            Kind::Tuple | Kind::List | Kind::Set | Kind::FrozenSet => d.seq(visitor),
            Kind::Dict => d.map(visitor),
            _ => Err(give_up()),
        })
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| match d.node().kind {
            Kind::Bool(b) => visitor.visit_bool(b),
            _ => Err(give_up()),
        })
    }

    ints! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| match d.node().kind {
            Kind::Float(x) => visitor.visit_f64(x),
            Kind::Int(i) => visitor.visit_i64(i),
            Kind::Big(i) => visitor.visit_f64(super::de::big_float(&d.tape.bigs[i as usize])?),
            _ => Err(give_up()),
        })
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| d.str(visitor))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| d.str(visitor))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| d.str(visitor))
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| match d.node().kind {
            Kind::Bytes(_) | Kind::ByteArray(_) => d.bytes(visitor),
            Kind::Str(_) => d.str(visitor),
            Kind::List | Kind::Tuple => d.seq(visitor),
            _ => Err(give_up()),
        })
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| match d.node().kind {
            Kind::None => visitor.visit_none(),
            _ => {
                // A level: `struct L(Option<Box<L>>)` recurses here on one
                // node.
                let TapeDe { tape, walk, id } = d;
                TapeDe::child(walk, |walk| visitor.visit_some(TapeDe { tape, walk, id }))
            }
        })
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| match d.node().kind {
            Kind::None => visitor.visit_unit(),
            _ => Err(give_up()),
        })
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        let TapeDe { tape, walk, id } = self;
        TapeDe::child(walk, |walk| {
            visitor.visit_newtype_struct(TapeDe { tape, walk, id })
        })
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| d.seq(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.resolved(|d| d.seq(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.resolved(|d| d.seq(visitor))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| d.map(visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.resolved(|d| match d.node().kind {
            Kind::Dict => d.map(visitor),
            Kind::Tuple | Kind::List => d.seq(visitor),
            _ => Err(give_up()),
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.resolved(|d| {
            let n = d.node();
            let (name, data) = match n.kind {
                Kind::Str(_) => (d.id, NIL),
                Kind::Dict if n.len == 2 => (n.first, d.tape.nodes[n.first as usize].next),
                Kind::Tuple if n.len == 1 => (n.first, NIL),
                Kind::Tuple if n.len == 2 => (n.first, d.tape.nodes[n.first as usize].next),
                _ => return Err(give_up()),
            };
            visitor.visit_enum(Enum {
                tape: d.tape,
                walk: d.walk,
                name,
                data,
            })
        })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.resolved(|d| match d.node().kind {
            Kind::Str(_) => d.str(visitor),
            Kind::Int(i) if i >= 0 => visitor.visit_u64(i as u64),
            Kind::Bytes(_) => d.bytes(visitor),
            _ => Err(give_up()),
        })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }
}

struct Seq<'w, 't, 'de> {
    tape: &'t Tape<'de>,
    walk: &'w mut Walk,
    next: u32,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for &mut Seq<'_, '_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.next == NIL {
            return Ok(None);
        }
        let id = self.next;
        self.next = self.tape.nodes[id as usize].next;
        self.left -= 1;
        let tape = self.tape;
        TapeDe::child(self.walk, |walk| {
            seed.deserialize(TapeDe { tape, walk, id })
        })
        .map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

struct Map<'w, 't, 'de> {
    tape: &'t Tape<'de>,
    walk: &'w mut Walk,
    next: u32,
    len: usize,
}

impl<'de> de::MapAccess<'de> for Map<'_, '_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.next == NIL {
            return Ok(None);
        }
        seed.deserialize(TapeDe {
            tape: self.tape,
            walk: &mut *self.walk,
            id: self.next,
        })
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        if self.next == NIL {
            return Err(give_up());
        }
        let id = self.tape.nodes[self.next as usize].next;
        if id == NIL {
            return Err(give_up());
        }
        self.next = self.tape.nodes[id as usize].next;
        self.len -= 1;
        let tape = self.tape;
        TapeDe::child(self.walk, |walk| {
            seed.deserialize(TapeDe { tape, walk, id })
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len)
    }
}

struct Enum<'w, 't, 'de> {
    tape: &'t Tape<'de>,
    walk: &'w mut Walk,
    name: u32,
    data: u32,
}

impl<'de, 'w, 't> de::EnumAccess<'de> for Enum<'w, 't, 'de> {
    type Error = Error;
    type Variant = Enum<'w, 't, 'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let name = match self.tape.nodes[self.name as usize].kind {
            Kind::Ref(t) => t,
            _ => self.name,
        };
        if !matches!(self.tape.nodes[name as usize].kind, Kind::Str(_)) {
            return Err(give_up());
        }
        let tag = seed.deserialize(TapeDe {
            tape: self.tape,
            walk: &mut *self.walk,
            id: self.name,
        })?;
        Ok((tag, self))
    }
}

impl<'de> de::VariantAccess<'de> for Enum<'_, '_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        if self.data == NIL {
            return Ok(());
        }
        // Not followed through the memo, as the Graph path does not.
        match self.tape.nodes[self.data as usize].kind {
            Kind::None => Ok(()),
            _ => Err(give_up()),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        let (tape, id) = (self.tape, self.data);
        if id == NIL {
            return Err(give_up());
        }
        TapeDe::child(self.walk, |walk| {
            seed.deserialize(TapeDe { tape, walk, id })
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        let (tape, id) = (self.tape, self.data);
        if id == NIL {
            return Err(give_up());
        }
        TapeDe::child(self.walk, |walk| {
            de::Deserializer::deserialize_tuple(TapeDe { tape, walk, id }, len, visitor)
        })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let (tape, id) = (self.tape, self.data);
        if id == NIL {
            return Err(give_up());
        }
        TapeDe::child(self.walk, |walk| {
            de::Deserializer::deserialize_struct(TapeDe { tape, walk, id }, "", fields, visitor)
        })
    }
}
