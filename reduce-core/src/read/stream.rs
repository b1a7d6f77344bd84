//! Streaming typed reads: a typed value built straight from the opcodes,
//! with no `Value` stack, object table or `Graph`.
//!
//! A [`Stream`] is a cursor over a byte slice that a typed reader
//! ([`Construct::construct_stream`](crate::Construct)) pulls values from in
//! the order CPython's pickler writes them: a list is `EMPTY_LIST`, then
//! batches of items; a tuple its items then `TUPLE2`; an object its
//! global, its argument tuple, then `REDUCE`; an instance of a plain class
//! its class, `EMPTY_TUPLE`, `NEWOBJ`, then its state and `BUILD`, the
//! state's attributes in any order. The memo costs one position
//! per entry: a `GET` reads the object again from where it was first
//! written, which gives the same value for everything a typed read can
//! share by value (strings, tuples, globals, and containers read by value).
//!
//! A `Value` (and a field read by its own Graph-path reader, from the
//! `Value` of it) is read by [`Stream::value`] (`stream/any.rs`), which
//! follows what a stack machine does with each value it reads.
//!
//! Whatever the stream does not expect (a shape other than CPython's, a
//! cycle, a container changed after it was built, a limit approached, an
//! error of any kind) is a [`Miss`]: the caller then reads the whole pickle
//! again through the `Graph` path, which gives the same value or the
//! error. The stream never reports an error of its own, so results and
//! messages cannot differ between the two paths.

use num_bigint::BigInt;

use super::decode::{self, IntLine};
use super::input::SliceRead;
use super::machine::NAME_BYTES_PER_INPUT_BYTE;
use super::{known_global, Options, Resolve, StringDecoding};
use crate::base::limits::{grow, GROW_EVERY};
use crate::base::op::*;
use crate::text::compat;
use crate::value::Value;

mod any;

/// The stream cannot read this pickle as the type asked for: read it
/// through the `Graph` path instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Miss;

/// A typed reader's result on the stream.
pub type Pulled<T> = std::result::Result<T, Miss>;

/// A memo entry: where the object it names was first written, and whether
/// it is still being built (a container between its creation and its last
/// item: a `GET` of it is a cycle or a change, which the stream leaves to
/// the `Graph` path).
#[derive(Clone, Copy)]
struct Slot {
    /// A position in the input; an input of 4 GiB or more is left to the
    /// Graph path. (12 bytes a slot: the memo is most of what the stream
    /// holds while it reads.)
    start: u32,
    open: bool,
    /// Memoized inside a field read by its Graph-path reader (see
    /// [`Stream::sealed_value`]): a fetch of it is a miss, but for the name
    /// of a global (`STACK_GLOBAL` copies it).
    sealed: bool,
    kind: Kind,
}

/// What a memo entry holds, as the reader that recorded it saw it. A `GET`
/// where a value starts stands for the whole value only if it holds the
/// kind asked for; where the value's first operand may be a memo reference
/// (a class, a module name, a tuple's first item), another kind is that
/// operand.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// An int, float, bool or None.
    Atom,
    Str,
    Bytes,
    List,
    Dict,
    /// A tuple of this many items (at most `u16::MAX`: a typed reader's
    /// tuple has a few).
    Tuple(u16),
    Global,
    /// A nested name before protocol 4: `getattr(parent, "name")`.
    Nested,
    /// An object built by a call (`REDUCE`).
    Object,
    /// A `set` (`EMPTY_SET`, `ADDITEMS`), read as a [`Value`].
    Set,
    /// A `frozenset` written `MARK` ... `FROZENSET`, read as a [`Value`].
    FrozenSet,
    /// Anything else a [`Value`] read holds: no typed reader reads it
    /// again, nor does the `Value` reader (a form CPython does not write,
    /// or the result of a call to a builtin).
    Opaque,
}

/// Where a value began, and whether reading it jumped back to an earlier
/// copy (a memo `GET`), to return to afterwards.
#[must_use]
pub struct Mark {
    start: usize,
    back: Option<usize>,
}

/// A place in the stream to return to: see [`Stream::undo`].
#[derive(Clone, Copy)]
struct Spot {
    pos: usize,
    memo: usize,
    memo_len: usize,
    height: usize,
    name_bytes: u64,
    back: usize,
    depth: usize,
}

/// A cursor that typed readers pull values from. See the module docs.
pub struct Stream<'a> {
    data: &'a [u8],
    pos: usize,
    proto: u8,
    memo: Vec<Slot>,
    memo_len: usize,
    /// Positions to return to after reading an object again from its first
    /// copy; non-empty while doing so (the memo is then not written).
    back: Vec<usize>,
    /// Bytes that may still be read again through `GET`s: a pickle whose
    /// objects fetch each other many times (a DAG that doubles at each
    /// level) is left to the `Graph` path, which shares them.
    budget: usize,
    depth: usize,
    /// Bytes of names `STACK_GLOBAL` copied, as the `Graph` path counts them.
    name_bytes: u64,
    /// Items pushed on the machine's stack at this point (marks included),
    /// counted as the `Graph` path counts them, for `max_stack`.
    height: usize,
    max_depth: usize,
    max_stack: usize,
    max_memo: usize,
    max_int_digits: usize,
    fix_imports: bool,
    resolve: &'a dyn Resolve,
    /// Where the pickle starts, for [`Stream::closer_of`]'s pass.
    origin: usize,
    /// How Python 2 strings decode, for the [`Value`] reader.
    strings: StringDecoding,
    /// Where a typed tuple of `n` items without a `MARK` begins, while its
    /// items are read: a [`Value`] read there leaves the closing `TUPLEn`
    /// to the tuple (see [`Stream::value`]).
    claims: Claims,
    /// The marks and what takes each value from the stack, found by one
    /// pass over the pickle the first time a [`Value`] read needs them.
    analysis: Option<Box<any::Analysis>>,
    /// Values the [`Value`] reader made, and memo fetches it followed.
    nodes: usize,
    gets: usize,
    /// The most values one [`Value`] may hold: the Graph path's
    /// `max_tree_nodes`, the lower of the load's and the default.
    max_tree_nodes: usize,
    /// Set while a field is read for its Graph-path reader: a memo fetch is
    /// a miss, but of a global (see [`Stream::sealed_value`]).
    sealed: bool,
    /// Set while the names of a `STACK_GLOBAL` are read: a fetch of a
    /// sealed entry is no miss there.
    names: bool,
    /// Where the attribute name just read began (see
    /// [`Stream::attribute`]).
    key_spot: Option<Spot>,
    max_typed_depth: usize,
}

/// The claims of typed tuples being read, innermost last: a few inline
/// (a small tuple's read allocated for its claim before), more on the heap.
#[derive(Default)]
pub(crate) struct Claims {
    inline: [(usize, usize); 8],
    len: usize,
    spill: Vec<(usize, usize)>,
}

impl Claims {
    pub(crate) fn push(&mut self, claim: (usize, usize)) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = claim,
            None => self.spill.push(claim),
        }
        self.len += 1;
    }

    pub(crate) fn pop(&mut self) {
        if self.len > self.inline.len() {
            self.spill.pop();
        }
        self.len = self.len.saturating_sub(1);
    }

    /// The claims from the innermost out.
    pub(crate) fn rev(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.len).rev().map(|i| {
            self.inline
                .get(i)
                .copied()
                .unwrap_or_else(|| self.spill[i - 8])
        })
    }
}

impl<'a> Stream<'a> {
    pub(crate) fn new(
        data: &'a [u8],
        pos: usize,
        options: &Options<'_>,
        resolve: &'a dyn Resolve,
    ) -> Stream<'a> {
        let limits = &options.limits;
        Stream {
            data,
            pos,
            proto: 0,
            memo: Vec::new(),
            memo_len: 0,
            back: Vec::new(),
            budget: data.len().saturating_mul(4).saturating_add(1 << 16),
            depth: 0,
            name_bytes: 0,
            height: 0,
            // The Graph path counts containers of the value (a reduced
            // object and its argument tuple are two): the stream counts one
            // per typed level, so it stops at half the value depth.
            max_depth: limits.max_typed_depth.min(limits.max_depth / 2),
            max_stack: limits.max_stack,
            max_memo: limits.max_memo,
            max_int_digits: limits.max_int_digits,
            fix_imports: options.fix_imports,
            resolve,
            origin: pos,
            strings: options.strings,
            claims: Claims::default(),
            analysis: None,
            nodes: 0,
            gets: 0,
            max_tree_nodes: limits
                .max_tree_nodes
                .min(crate::base::limits::Limits::default().max_tree_nodes),
            sealed: false,
            names: false,
            key_spot: None,
            max_typed_depth: limits.max_typed_depth,
        }
    }

    /// What resolves globals: the layer above's registry.
    pub(crate) fn resolver(&self) -> &'a dyn Resolve {
        self.resolve
    }

    /// How many values deep the cursor is (one for the root).
    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    /// [`Limits::max_typed_depth`](crate::Limits::max_typed_depth).
    pub(crate) fn max_typed_depth(&self) -> usize {
        self.max_typed_depth
    }

    /// Reads a whole pickle as a `T`: its `PROTO`, the value, and `STOP`.
    /// Returns the value and the position just after `STOP`.
    pub(crate) fn root<T>(
        mut self,
        value: impl FnOnce(&mut Self) -> Pulled<T>,
    ) -> Pulled<(T, usize)> {
        if self.peek()? == PROTO {
            self.pos += 1;
            self.proto = self.byte()?;
            if self.proto > HIGHEST_PROTOCOL {
                return Err(Miss);
            }
        }
        let value = self.read(value)?;
        // The root's own slot, as a container counts an item's.
        self.push(1)?;
        if self.op()? != STOP {
            return Err(Miss);
        }
        Ok((value, self.pos))
    }

    /// Reads one value with `value` (a typed reader: `T::construct_stream`),
    /// one level deeper.
    #[inline]
    pub fn read<T>(&mut self, value: impl FnOnce(&mut Self) -> Pulled<T>) -> Pulled<T> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(Miss);
        }
        let r = if self.depth.is_multiple_of(GROW_EVERY) {
            grow(|| value(self))
        } else {
            value(self)
        };
        self.depth -= 1;
        r
    }

    /// [`Stream::read`] for a reader that reads no value below its own:
    /// the same test of the depth, without counting the level or making
    /// room on the stack (it does not recurse).
    #[inline(always)]
    pub fn read_leaf<T>(&mut self, value: impl FnOnce(&mut Self) -> Pulled<T>) -> Pulled<T> {
        if self.depth >= self.max_depth {
            return Err(Miss);
        }
        value(self)
    }

    // ---- bytes --------------------------------------------------------------

    #[inline]
    fn byte(&mut self) -> Pulled<u8> {
        let b = *self.data.get(self.pos).ok_or(Miss)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Pulled<&'a [u8]> {
        if n > self.data.len() - self.pos {
            return Err(Miss);
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        if !self.back.is_empty() {
            self.spend(n)?;
        }
        Ok(s)
    }

    fn spend(&mut self, n: usize) -> Pulled<()> {
        self.budget = self.budget.checked_sub(n + 1).ok_or(Miss)?;
        Ok(())
    }

    /// Runs one of the shared argument decoders at the cursor.
    fn decode<R>(
        &mut self,
        f: impl FnOnce(&mut SliceRead<'a>) -> crate::base::error::Result<R>,
    ) -> Pulled<R> {
        let mut src = SliceRead::at(self.data, self.pos);
        let r = f(&mut src).map_err(|_| Miss)?;
        self.pos = src.position();
        Ok(r)
    }

    /// The next opcode, after any `FRAME`s (which, as in CPython's C
    /// unpickler, only check that their bytes exist), without taking it.
    #[inline(always)]
    pub fn peek(&mut self) -> Pulled<u8> {
        match self.data.get(self.pos) {
            Some(&op) if op != FRAME => Ok(op),
            _ => self.peek_frame(),
        }
    }

    #[inline(never)]
    fn peek_frame(&mut self) -> Pulled<u8> {
        loop {
            let op = *self.data.get(self.pos).ok_or(Miss)?;
            if op != FRAME {
                return Ok(op);
            }
            self.pos += 1;
            let len = u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| Miss)?);
            if len > (self.data.len() - self.pos) as u64 {
                return Err(Miss);
            }
        }
    }

    /// Takes the next opcode.
    #[inline(always)]
    fn op(&mut self) -> Pulled<u8> {
        let op = self.peek()?;
        self.pos += 1;
        if !self.back.is_empty() {
            self.spend(0)?;
        }
        Ok(op)
    }

    /// Takes the next opcode if it is `op`.
    #[inline]
    fn eat(&mut self, op: u8) -> Pulled<bool> {
        if self.peek()? == op {
            self.pos += 1;
            return Ok(true);
        }
        Ok(false)
    }

    // ---- the memo -----------------------------------------------------------

    /// Starts reading a value of `kind`: a memo `GET` of one jumps to the
    /// object's first copy (returned to by [`Stream::end`]).
    #[inline(always)]
    fn begin(&mut self, kind: Kind) -> Pulled<Mark> {
        let start = self.pos;
        match self.data.get(start) {
            Some(&(GET | BINGET | LONG_BINGET | FRAME)) | None => self.begin_get(kind),
            Some(_) => Ok(Mark { start, back: None }),
        }
    }

    /// [`Stream::begin`] at a `GET` (or a `FRAME` before the value).
    #[inline(never)]
    fn begin_get(&mut self, kind: Kind) -> Pulled<Mark> {
        let op = self.peek()?;
        let start = self.pos;
        if !matches!(op, GET | BINGET | LONG_BINGET) {
            return Ok(Mark { start, back: None });
        }
        let operand = Mark { start, back: None };
        let mut src = SliceRead::at(self.data, self.pos + 1);
        let key = decode::memo_key(&mut src, op, self.max_int_digits).map_err(|_| Miss)?;
        let after = src.position();
        let slot = usize::try_from(key)
            .ok()
            .and_then(|k| self.memo.get(k))
            .copied()
            .ok_or(Miss)?;
        // Which readers may meet their first operand as a GET.
        let first_operand = match kind {
            Kind::Object => true,
            Kind::Global => slot.kind == Kind::Str,
            Kind::Tuple(n) => self.proto >= 2 && (1..=3).contains(&n),
            _ => false,
        };
        if slot.kind != kind {
            return if first_operand {
                Ok(operand)
            } else {
                Err(Miss)
            };
        }
        if let Kind::Tuple(n) = kind {
            // The GET may be the tuple, or its first item (a tuple of as
            // many items): if the bytes read both ways, leave it to the
            // Graph path.
            if first_operand && self.closes_tuple(n as usize)? {
                return Err(Miss);
            }
        }
        if slot.open || (slot.sealed && !self.names) {
            return Err(Miss);
        }
        self.pos = after;
        self.back.push(self.pos);
        self.spend(0)?;
        self.pos = slot.start as usize;
        Ok(Mark {
            start,
            back: Some(self.back.len()),
        })
    }

    /// Ends a value begun with `begin`: back from an earlier copy, and the
    /// memo entries written right after the value recorded.
    #[inline(always)]
    fn end(&mut self, mark: Mark, kind: Kind) -> Pulled<()> {
        if let Some(depth) = mark.back {
            if self.back.len() != depth {
                return Err(Miss);
            }
            self.pos = self.back.pop().ok_or(Miss)?;
        }
        match self.data.get(self.pos) {
            Some(&(MEMOIZE | BINPUT)) if self.back.is_empty() => {
                self.memo_one(mark.start, kind, false).map(drop)
            }
            Some(&(PUT | BINPUT | LONG_BINPUT | MEMOIZE | FRAME)) | None => {
                self.memo_after(mark.start, kind, false).map(drop)
            }
            Some(_) => Ok(()),
        }
    }

    /// [`Stream::memo_after`] for its common case, inline: one `MEMOIZE` or
    /// `BINPUT` of the next key, read for the first time.
    #[inline(always)]
    fn memo_one(&mut self, start: usize, kind: Kind, open: bool) -> Pulled<Option<usize>> {
        let (len, key) = match self.data[self.pos] {
            MEMOIZE => (1, self.memo.len()),
            _ => match self.data.get(self.pos + 1) {
                Some(&k) => (2, k as usize),
                None => return Err(Miss),
            },
        };
        match self.data.get(self.pos + len) {
            Some(&(PUT | BINPUT | LONG_BINPUT | MEMOIZE | FRAME)) | None => {
                return self.memo_after(start, kind, open)
            }
            Some(_) => {}
        }
        if key != self.memo.len() || self.memo_len >= self.max_memo {
            return Err(Miss);
        }
        let start = u32::try_from(start).map_err(|_| Miss)?;
        self.pos += len;
        self.memo_push(Slot {
            start,
            open,
            sealed: false,
            kind,
        });
        self.memo_len += 1;
        Ok(Some(key))
    }

    /// [`Stream::memo_after`] for a container just opened (its entry left
    /// open until its last item), its common case in line.
    #[inline(always)]
    fn memo_open(&mut self, start: usize, kind: Kind) -> Pulled<Option<usize>> {
        match self.data.get(self.pos) {
            Some(&(MEMOIZE | BINPUT)) if self.back.is_empty() => self.memo_one(start, kind, true),
            Some(&(PUT | BINPUT | LONG_BINPUT | MEMOIZE | FRAME)) | None => {
                self.memo_after(start, kind, true)
            }
            Some(_) => Ok(None),
        }
    }

    /// Takes the memo puts right after an object (at most one for an open
    /// container), recording where the object starts. Returns the key of a
    /// container's entry, to close when its last item is read.
    #[inline(never)]
    fn memo_after(&mut self, start: usize, kind: Kind, open: bool) -> Pulled<Option<usize>> {
        let mut key = None;
        loop {
            let op = self.peek()?;
            let k = match op {
                PUT | BINPUT | LONG_BINPUT => {
                    self.pos += 1;
                    let max = self.max_int_digits;
                    self.decode(|s| decode::memo_key(s, op, max))?
                }
                MEMOIZE => {
                    self.pos += 1;
                    self.memo_len as u64
                }
                _ => return Ok(key),
            };
            if !self.back.is_empty() {
                // Read again: the entries were recorded the first time.
                continue;
            }
            if open && key.is_some() {
                return Err(Miss);
            }
            let k = usize::try_from(k).map_err(|_| Miss)?;
            // Entries come in order, each once, as CPython writes them (so
            // a read in vain is undone by truncating); an entry written
            // twice, or out of order, is left to the Graph path.
            if k != self.memo.len() {
                return Err(Miss);
            }
            let start = u32::try_from(start).map_err(|_| Miss)?;
            self.memo_push(Slot {
                start,
                open,
                sealed: false,
                kind,
            });
            self.memo_len += 1;
            if self.memo_len > self.max_memo {
                return Err(Miss);
            }
            key = Some(k);
        }
    }

    /// Records a memo entry. The memo grows from two entries, doubling: a
    /// small pickle's read holds room for about the entries it has, not
    /// for the four a `Vec` starts with (half a tiny pickle's peak memory),
    /// and a pickle of one value and its container allocates once.
    #[inline(always)]
    fn memo_push(&mut self, slot: Slot) {
        if self.memo.len() == self.memo.capacity() {
            self.grow_memo();
        }
        self.memo.push(slot);
    }

    #[cold]
    #[inline(never)]
    fn grow_memo(&mut self) {
        self.memo.reserve_exact(self.memo.len().max(2));
    }

    fn close(&mut self, key: Option<usize>) {
        if let Some(k) = key {
            self.memo[k].open = false;
        }
    }

    fn push(&mut self, n: usize) -> Pulled<()> {
        self.height += n;
        if self.height > self.max_stack {
            return Err(Miss);
        }
        Ok(())
    }

    // ---- atoms --------------------------------------------------------------

    /// Takes an atom of `n` bytes (its opcode included) at the cursor when
    /// nothing makes it more than that: not read again from the memo, and
    /// not followed by a memo put or a `FRAME` (which [`Stream::end`]
    /// takes). `false` leaves the general path to it.
    #[inline(always)]
    fn atom_alone(&mut self, n: usize) -> bool {
        let next = self.pos + n;
        if !self.back.is_empty() {
            return false;
        }
        match self.data.get(next) {
            Some(&(PUT | BINPUT | LONG_BINPUT | MEMOIZE | FRAME)) | None => false,
            Some(_) => {
                self.pos = next;
                true
            }
        }
    }

    /// An `int` that fits in an `i64`.
    #[inline(always)]
    pub fn int(&mut self) -> Pulled<i64> {
        // The common case in line: a binary int of its own.
        let d = self.data;
        let p = self.pos;
        let v = match d.get(p) {
            Some(&BININT1) => d.get(p + 1).map(|&b| (b as i64, 2)),
            Some(&BININT2) => match d.get(p + 1..p + 3) {
                Some(&[a, b]) => Some((u16::from_le_bytes([a, b]) as i64, 3)),
                _ => None,
            },
            Some(&BININT) => match d.get(p + 1..p + 5) {
                Some(&[a, b, c, e]) => Some((i32::from_le_bytes([a, b, c, e]) as i64, 5)),
                _ => None,
            },
            // One to eight bytes of two's complement, loaded as a word and
            // sign-extended (no copy of a variable length).
            Some(&LONG1) => match (d.get(p + 1), d.get(p + 2..p + 10)) {
                (Some(&n @ 1..=8), Some(w)) => {
                    let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
                    let shift = 64 - 8 * u32::from(n);
                    Some((((w << shift) as i64) >> shift, 2 + n as usize))
                }
                _ => None,
            },
            _ => None,
        };
        if let Some((v, n)) = v {
            if self.atom_alone(n) {
                return Ok(v);
            }
        }
        self.int_general()
    }

    #[inline(never)]
    fn int_general(&mut self) -> Pulled<i64> {
        let mark = self.begin(Kind::Atom)?;
        let v = match self.op()? {
            BININT1 => self.byte()? as i64,
            BININT2 => {
                let b = self.take(2)?;
                u16::from_le_bytes([b[0], b[1]]) as i64
            }
            BININT => {
                let b = self.take(4)?;
                i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64
            }
            LONG1 => {
                let n = self.byte()? as usize;
                decode::small_long(self.take(n)?).ok_or(Miss)?
            }
            INT => {
                let max = self.max_int_digits;
                match self.decode(|s| decode::int_line(s, max))? {
                    IntLine::Int(i) => i64::try_from(&i).map_err(|_| Miss)?,
                    IntLine::Bool(_) => return Err(Miss),
                }
            }
            LONG => {
                let max = self.max_int_digits;
                let i: BigInt = self.decode(|s| decode::long_line(s, max))?;
                i64::try_from(&i).map_err(|_| Miss)?
            }
            _ => return Err(Miss),
        };
        self.end(mark, Kind::Atom)?;
        Ok(v)
    }

    /// A `bool`.
    #[inline]
    pub fn bool(&mut self) -> Pulled<bool> {
        let v = match self.data.get(self.pos) {
            Some(&NEWTRUE) => true,
            Some(&NEWFALSE) => false,
            _ => return self.bool_general(),
        };
        if self.atom_alone(1) {
            return Ok(v);
        }
        self.bool_general()
    }

    #[inline(never)]
    fn bool_general(&mut self) -> Pulled<bool> {
        let mark = self.begin(Kind::Atom)?;
        let v = match self.op()? {
            NEWTRUE => true,
            NEWFALSE => false,
            INT => match self.decode(|s| decode::int_line(s, 2))? {
                IntLine::Bool(b) => b,
                IntLine::Int(_) => return Err(Miss),
            },
            _ => return Err(Miss),
        };
        self.end(mark, Kind::Atom)?;
        Ok(v)
    }

    /// A `float`, or an `int` that fits in an `i64` (Python code often
    /// stores 1 where it means 1.0).
    #[inline]
    pub fn float(&mut self) -> Pulled<f64> {
        if self.data.get(self.pos) == Some(&BINFLOAT) {
            // Big-endian, as `struct.pack(">d")` writes it.
            if let Some(b) = self.data.get(self.pos + 1..self.pos + 9) {
                let v = f64::from_be_bytes(b.try_into().map_err(|_| Miss)?);
                if self.atom_alone(9) {
                    return Ok(v);
                }
            }
        }
        self.float_general()
    }

    #[inline(never)]
    fn float_general(&mut self) -> Pulled<f64> {
        match self.peek()? {
            BINFLOAT | FLOAT => {}
            _ => return self.int().map(|i| i as f64),
        }
        let mark = self.begin(Kind::Atom)?;
        let v = match self.op()? {
            BINFLOAT => f64::from_be_bytes(self.take(8)?.try_into().map_err(|_| Miss)?),
            _ => self.decode(decode::float_line)?,
        };
        self.end(mark, Kind::Atom)?;
        Ok(v)
    }

    /// A `str` without lone surrogates, borrowed from the input where the
    /// pickle holds it as UTF-8.
    #[inline]
    pub fn str(&mut self) -> Pulled<std::borrow::Cow<'a, str>> {
        // The common case in line: a binary str read for the first time,
        // alone or memoized by the `MEMOIZE` CPython writes after it.
        let d = self.data;
        let p = self.pos;
        let (n, at) = match d.get(p) {
            Some(&SHORT_BINUNICODE) => match d.get(p + 1) {
                Some(&n) => (n as usize, p + 2),
                None => return self.str_general(),
            },
            Some(&BINUNICODE) => match d.get(p + 1..p + 5) {
                Some(&[a, b, c, e]) => (u32::from_le_bytes([a, b, c, e]) as usize, p + 5),
                _ => return self.str_general(),
            },
            _ => return self.str_general(),
        };
        let Some(bytes) = d.get(at..at + n) else {
            return self.str_general();
        };
        let end = at + n;
        if !self.back.is_empty() {
            return self.str_general();
        }
        let memoized = match d.get(end) {
            Some(&MEMOIZE) => true,
            Some(&(PUT | BINPUT | LONG_BINPUT | FRAME)) | None => return self.str_general(),
            Some(_) => false,
        };
        if memoized {
            let next = d.get(end + 1);
            if matches!(
                next,
                Some(&(PUT | BINPUT | LONG_BINPUT | MEMOIZE | FRAME)) | None
            ) || self.memo_len >= self.max_memo
            {
                return self.str_general();
            }
        }
        let s = crate::text::utf8(bytes).ok_or(Miss)?;
        if memoized {
            let start = u32::try_from(p).map_err(|_| Miss)?;
            self.memo_push(Slot {
                start,
                open: false,
                sealed: false,
                kind: Kind::Str,
            });
            self.memo_len += 1;
            self.pos = end + 1;
        } else {
            self.pos = end;
        }
        Ok(std::borrow::Cow::Borrowed(s))
    }

    #[inline(never)]
    fn str_general(&mut self) -> Pulled<std::borrow::Cow<'a, str>> {
        let mark = self.begin(Kind::Str)?;
        let op = self.op()?;
        let n = match op {
            SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 => self.str_len(op)?,
            UNICODE => {
                let s = self.decode(|s| decode::unicode(s, UNICODE))?;
                let s = s.as_str().ok_or(Miss)?.to_owned();
                self.end(mark, Kind::Str)?;
                return Ok(std::borrow::Cow::Owned(s));
            }
            _ => return Err(Miss),
        };
        let s = crate::text::utf8(self.take(n)?).ok_or(Miss)?;
        self.end(mark, Kind::Str)?;
        Ok(std::borrow::Cow::Borrowed(s))
    }

    /// The length prefix of a binary `str` opcode `op`.
    fn str_len(&mut self, op: u8) -> Pulled<usize> {
        Ok(match op {
            SHORT_BINUNICODE => self.byte()? as usize,
            BINUNICODE => {
                let b = self.take(4)?;
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
            }
            _ => {
                let n = u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| Miss)?);
                usize::try_from(n).map_err(|_| Miss)?
            }
        })
    }

    /// An attribute name: a `str`, as its UTF-8 bytes, which the caller
    /// checks (with `crate::text::utf8`) only if it matches no field
    /// name: a name that equals a field's is valid UTF-8.
    fn key(&mut self) -> Pulled<std::borrow::Cow<'a, [u8]>> {
        if let Some(key) = self.key_again() {
            return Ok(std::borrow::Cow::Borrowed(key));
        }
        let mark = self.begin(Kind::Str)?;
        let op = self.op()?;
        let n = match op {
            SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 => self.str_len(op)?,
            UNICODE => {
                let s = self.decode(|s| decode::unicode(s, UNICODE))?;
                let s = s.as_str().ok_or(Miss)?.to_owned();
                self.end(mark, Kind::Str)?;
                return Ok(std::borrow::Cow::Owned(s.into_bytes()));
            }
            _ => return Err(Miss),
        };
        let b = self.take(n)?;
        self.end(mark, Kind::Str)?;
        Ok(std::borrow::Cow::Borrowed(b))
    }

    /// [`Stream::key`]'s common case, inline: a `BINGET` of a short str
    /// read before (an attribute name after the first object), its bytes
    /// taken from the first copy without going there and back. `None`
    /// leaves the general path to it.
    #[inline(always)]
    fn key_again(&mut self) -> Option<&'a [u8]> {
        let data = self.data;
        let at = self.pos;
        if data.get(at) != Some(&BINGET) {
            return None;
        }
        let slot = self.memo.get(*data.get(at + 1)? as usize)?;
        let start = slot.start as usize;
        if slot.open
            || slot.sealed
            || slot.kind != Kind::Str
            || data.get(start) != Some(&SHORT_BINUNICODE)
        {
            return None;
        }
        // A memo put after the GET records it again: the general path.
        if let Some(&(PUT | BINPUT | LONG_BINPUT | MEMOIZE | FRAME)) | None = data.get(at + 2) {
            return None;
        }
        let n = *data.get(start + 1)? as usize;
        let key = data.get(start + 2..start + 2 + n)?;
        // Read again, as the general path counts it.
        self.budget = self.budget.checked_sub(n + 2)?;
        self.pos = at + 2;
        Some(key)
    }

    /// A `bytes` or `bytearray` written with its own opcode (protocols 3 and
    /// later), borrowed from the input.
    pub fn bytes(&mut self) -> Pulled<&'a [u8]> {
        let mark = self.begin(Kind::Bytes)?;
        let n = match self.op()? {
            SHORT_BINBYTES => self.byte()? as usize,
            BINBYTES => {
                let b = self.take(4)?;
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
            }
            BINBYTES8 | BYTEARRAY8 => {
                let n = u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| Miss)?);
                usize::try_from(n).map_err(|_| Miss)?
            }
            _ => return Err(Miss),
        };
        let b = self.take(n)?;
        self.end(mark, Kind::Bytes)?;
        Ok(b)
    }

    /// Takes `None` if it is next. (Inline: an `Option`'s test, where a
    /// call cost as much as the test.)
    #[inline]
    pub fn none(&mut self) -> Pulled<bool> {
        self.eat(NONE)
    }

    // ---- containers ---------------------------------------------------------

    /// A `list`: `read` reads each item and `sink` takes it, in order.
    /// Returns how many.
    pub fn list<T>(
        &mut self,
        read: impl FnMut(&mut Self) -> Pulled<T>,
        sink: impl FnMut(T),
    ) -> Pulled<usize> {
        self.list_into(read, &mut Each(sink))
    }

    /// A `list` whose items `item` reads into `items`, which is sized
    /// first when the items of a batch can be counted cheaply (a pickle
    /// list has no length). Each item is read one level deeper, as
    /// [`Stream::read`] reads a value: `item` reads it without it (the
    /// level is counted once for them all). Returns how many.
    pub fn list_vec<T>(
        &mut self,
        item: impl FnMut(&mut Self) -> Pulled<T>,
        items: &mut Vec<T>,
    ) -> Pulled<usize> {
        // An empty list one level too deep is a miss too: the Graph path
        // then reads it.
        self.read(|s| s.list_into(item, items))
    }

    /// A `dict` whose keys and values `pair` reads into `pairs`, sized and
    /// one level deeper as [`Stream::list_vec`] reads its items.
    pub fn dict_vec<T>(
        &mut self,
        pair: impl FnMut(&mut Self) -> Pulled<T>,
        pairs: &mut Vec<T>,
    ) -> Pulled<usize> {
        self.read(|s| s.dict_into(pair, pairs))
    }

    fn list_into<T>(
        &mut self,
        read: impl FnMut(&mut Self) -> Pulled<T>,
        sink: &mut impl Items<T>,
    ) -> Pulled<usize> {
        let mark = self.begin(Kind::List)?;
        match self.op()? {
            EMPTY_LIST => {}
            MARK if self.eat(LIST)? => {}
            _ => return Err(Miss),
        }
        let key = self.memo_open(mark.start, Kind::List)?;
        // The container sits on the stack while its items are read.
        self.push(1)?;
        let n = self.items(APPEND, APPENDS, 1, read, sink)?;
        self.height -= 1;
        self.close(key);
        self.end(mark, Kind::List)?;
        Ok(n)
    }

    /// A `dict`: `read` reads each key and value (in that order) and `sink`
    /// takes them, in order. Returns how many.
    pub fn dict<T>(
        &mut self,
        read: impl FnMut(&mut Self) -> Pulled<T>,
        sink: impl FnMut(T),
    ) -> Pulled<usize> {
        self.dict_into(read, &mut Each(sink))
    }

    fn dict_into<T>(
        &mut self,
        read: impl FnMut(&mut Self) -> Pulled<T>,
        sink: &mut impl Items<T>,
    ) -> Pulled<usize> {
        let mark = self.begin(Kind::Dict)?;
        match self.op()? {
            EMPTY_DICT => {}
            MARK if self.eat(DICT)? => {}
            _ => return Err(Miss),
        }
        let key = self.memo_open(mark.start, Kind::Dict)?;
        // The container sits on the stack while its items are read.
        self.push(1)?;
        let n = self.items(SETITEM, SETITEMS, 2, read, sink)?;
        self.height -= 1;
        self.close(key);
        self.end(mark, Kind::Dict)?;
        Ok(n)
    }

    /// A container's items after its header: batches (`MARK` ... `many`),
    /// and items alone followed by `one`. From protocol 2 on, CPython writes
    /// an item alone only right after the header (a container of one), and
    /// nothing after its batches.
    fn items<T, I: Items<T>>(
        &mut self,
        one: u8,
        many: u8,
        per: usize,
        mut read: impl FnMut(&mut Self) -> Pulled<T>,
        sink: &mut I,
    ) -> Pulled<usize> {
        let mut n = 0;
        let mut first = true;
        let begin = self.pos;
        // Where the guess below is made: once, after a first batch.
        let mut guess_at = GUESS_AFTER;
        loop {
            if self.peek()? == MARK && self.batch(many)? {
                let spot = self.spot();
                self.pos += 1;
                self.push(1)?;
                if I::SIZED {
                    if n >= guess_at {
                        guess_at = usize::MAX;
                        self.guess_rest(sink, begin, n);
                    } else if let Some(values) = self.count_atoms(many) {
                        // At most CPython's batch: a hostile batch of many
                        // small atoms, each read as a large type, reserves
                        // no more.
                        sink.expect((values / per).min(1000));
                    }
                }
                let mut k = 0;
                while self.peek()? != many {
                    // A pair's key sits on the stack while its value is
                    // read: counted for the whole item, to be safe. The
                    // height only grows through the batch, so the limit
                    // is checked once at its end (an item's own values
                    // check theirs).
                    self.height += per - 1;
                    match read(self) {
                        Ok(v) => {
                            self.height -= per - 1;
                            sink.put(v)
                        }
                        // From protocol 2 a MARK right after the header
                        // may open a marked tuple (of more than three
                        // items): the container's one item, or the next
                        // value of its parent (the container is empty).
                        // Nothing was taken yet: read it as such.
                        Err(Miss) if k == 0 && first && self.proto >= 2 => {
                            self.undo(spot)?;
                            if let Some(v) = self.alone(&mut read, one, per)? {
                                sink.put(v);
                                n += 1;
                            }
                            return Ok(n);
                        }
                        Err(miss) => return Err(miss),
                    }
                    self.height += per;
                    k += 1;
                }
                if self.height > self.max_stack {
                    return Err(Miss);
                }
                self.pos += 1;
                self.height -= per * k + 1;
                n += k;
            } else if self.proto >= 2 && !first {
                break;
            } else {
                match self.alone(&mut read, one, per)? {
                    Some(v) => {
                        sink.put(v);
                        n += 1;
                    }
                    None => break,
                }
            }
            first = false;
        }
        if I::SIZED && guess_at == usize::MAX {
            sink.trim();
        }
        Ok(n)
    }

    /// Sizes `sink` for the rest of a container whose `n` items so far
    /// were read from `begin`. A batch holds a thousand items at most, and
    /// growing batch by batch copies the items again at each doubling:
    /// past a first batch, the rest of the input is guessed to hold items
    /// of the same size, as a long list (often the whole pickle) does.
    #[cold]
    #[inline(never)]
    fn guess_rest<T>(&self, sink: &mut impl Items<T>, begin: usize, n: usize) {
        let left = self.data.len() - self.pos;
        // Saturating: the cursor only moves on through a container's
        // batches, but a guess is no place to trust that.
        let each = (self.pos.saturating_sub(begin) / n).max(1);
        sink.expect_rest(left / each, left);
    }

    /// Reads an item that may be alone, followed by `one` (`APPEND`,
    /// `SETITEM`), or may be the next value of the container's parent: it
    /// is read, and if `one` does not follow (or it cannot be read), the
    /// stream is put back as it was and `None` says the container ended.
    /// The bytes read in vain count against the budget.
    fn alone<T>(
        &mut self,
        read: &mut impl FnMut(&mut Self) -> Pulled<T>,
        one: u8,
        per: usize,
    ) -> Pulled<Option<T>> {
        let spot = self.spot();
        // The stack limit as the `Graph` path meets it: the key while the
        // value is read, then the whole item before `one` takes it. Past
        // the limit is a miss of the whole load, not an item in vain.
        self.push(per - 1)?;
        if let Ok(v) = read(self) {
            self.height -= per - 1;
            self.push(per)?;
            self.height -= per;
            if self.eat(one)? {
                return Ok(Some(v));
            }
        }
        self.undo(spot)?;
        Ok(None)
    }

    /// Where the stream is, to come back to after a read in vain.
    fn spot(&self) -> Spot {
        Spot {
            pos: self.pos,
            memo: self.memo.len(),
            memo_len: self.memo_len,
            height: self.height,
            name_bytes: self.name_bytes,
            back: self.back.len(),
            depth: self.depth,
        }
    }

    /// Puts the stream back at `spot`, the memo entries recorded since
    /// forgotten; the bytes read in vain count against the budget.
    fn undo(&mut self, spot: Spot) -> Pulled<()> {
        let spent = self.pos.abs_diff(spot.pos);
        self.pos = spot.pos;
        self.memo.truncate(spot.memo);
        self.memo_len = spot.memo_len;
        self.height = spot.height;
        self.name_bytes = spot.name_bytes;
        self.back.truncate(spot.back);
        self.depth = spot.depth;
        self.budget = self.budget.checked_sub(spent + 1).ok_or(Miss)?;
        Ok(())
    }

    /// A `tuple` of exactly `n` items, which `items` reads (calling
    /// [`Stream::read`] `n` times). In line, with its body: the tuple is
    /// built where its reader returns it, not copied out of a call.
    #[inline(always)]
    pub fn tuple<R>(&mut self, n: usize, items: impl FnOnce(&mut Self) -> Pulled<R>) -> Pulled<R> {
        let kind = Kind::Tuple(u16::try_from(n).map_err(|_| Miss)?);
        let mark = self.begin(kind)?;
        let r = self.tuple_body(n, items)?;
        self.end(mark, kind)?;
        Ok(r)
    }

    #[inline(always)]
    fn tuple_body<R>(&mut self, n: usize, items: impl FnOnce(&mut Self) -> Pulled<R>) -> Pulled<R> {
        if n == 0 {
            return match self.op()? {
                EMPTY_TUPLE => items(self),
                MARK if self.eat(TUPLE)? => items(self),
                _ => Err(Miss),
            };
        }
        // CPython marks every tuple before protocol 2, and from it those of
        // more than three items; another writer's choice is a miss.
        let marked = self.proto < 2 || n > 3;
        if marked && !self.eat(MARK)? {
            return Err(Miss);
        }
        self.push(n + usize::from(marked))?;
        let r = if marked {
            items(self)?
        } else {
            // A `Value` as the first item leaves TUPLEn to this tuple.
            self.claims.push((self.pos, n));
            let r = items(self);
            self.claims.pop();
            r?
        };
        self.height -= n + usize::from(marked);
        let close = if marked {
            TUPLE
        } else {
            [TUPLE1, TUPLE2, TUPLE3][n - 1]
        };
        if self.op()? != close {
            return Err(Miss);
        }
        Ok(r)
    }

    /// An object `module.name(*args)`, with `n` arguments that `args` reads:
    /// the global (as `GLOBAL`, `STACK_GLOBAL` or a memo reference to one),
    /// the argument tuple, then `REDUCE`. Nothing may follow it (no
    /// `BUILD`, no items): a miss.
    pub fn reduce<R>(
        &mut self,
        module: &str,
        name: &str,
        n: usize,
        args: impl FnOnce(&mut Self) -> Pulled<R>,
    ) -> Pulled<R> {
        if known_global(module, name).is_some() {
            return Err(Miss);
        }
        let mark = self.begin(Kind::Object)?;
        self.global(module, name)?;
        self.push(1)?;
        let r = self.tuple(n, args)?;
        self.height -= 1;
        if self.op()? != REDUCE {
            return Err(Miss);
        }
        self.end(mark, Kind::Object)?;
        Ok(r)
    }

    /// An object built by one of the globals `module.names[i]` (the variants
    /// of an enum): the global, then what `args` reads given `i` (the
    /// argument tuple), then `REDUCE`.
    pub fn reduce_any<R>(
        &mut self,
        module: &str,
        names: &[&str],
        args: impl FnOnce(&mut Self, usize) -> Pulled<R>,
    ) -> Pulled<R> {
        let mark = self.begin(Kind::Object)?;
        let i = self.global_with(|m, n| {
            if m != module || known_global(m, n).is_some() {
                return None;
            }
            names.iter().position(|x| *x == n)
        })?;
        self.push(1)?;
        let r = args(self, i)?;
        self.height -= 1;
        if self.op()? != REDUCE {
            return Err(Miss);
        }
        self.end(mark, Kind::Object)?;
        Ok(r)
    }

    /// An int that fits in an `i64`, or a str, as the [`Value`] the `Graph`
    /// path makes of it: the value of a Python `Enum` member.
    pub fn int_or_str(&mut self) -> Pulled<Value> {
        let op = match self.peek()? {
            op @ (GET | BINGET | LONG_BINGET) => {
                let mut src = SliceRead::at(self.data, self.pos + 1);
                let key = decode::memo_key(&mut src, op, self.max_int_digits).map_err(|_| Miss)?;
                match usize::try_from(key).ok().and_then(|k| self.memo.get(k)) {
                    Some(slot) if slot.kind == Kind::Str => SHORT_BINUNICODE,
                    _ => return Err(Miss),
                }
            }
            op => op,
        };
        match op {
            SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 | UNICODE => Ok(Value::from(&*self.str()?)),
            _ => self.int().map(Value::Int),
        }
    }

    /// The global `module.name`, allowed as the `Graph` path allows it.
    fn global(&mut self, module: &str, name: &str) -> Pulled<()> {
        self.global_with(|m, n| (m == module && n == name).then_some(()))
    }

    /// A global, allowed as the `Graph` path allows it, that `pick` (given
    /// its module and name under their Python 3 names) accepts.
    pub(crate) fn global_with<R>(
        &mut self,
        pick: impl FnOnce(&str, &str) -> Option<R>,
    ) -> Pulled<R> {
        if self.proto < 4 && self.get_of(Kind::Nested)? {
            // A nested name written before: read again from its first copy.
            let mark = self.begin(Kind::Nested)?;
            let r = self.global_here(pick)?;
            self.end(mark, Kind::Nested)?;
            return Ok(r);
        }
        self.global_here(pick)
    }

    /// Any global, its names copied (the parent of a nested name).
    fn global_owned(&mut self) -> Pulled<(String, String)> {
        self.global_with(|m, n| Some((m.to_owned(), n.to_owned())))
    }

    /// Whether the next opcode is a `GET` of a memo entry of `kind`.
    fn get_of(&mut self, kind: Kind) -> Pulled<bool> {
        let op = self.peek()?;
        if !matches!(op, GET | BINGET | LONG_BINGET) {
            return Ok(false);
        }
        let mut src = SliceRead::at(self.data, self.pos + 1);
        let key = decode::memo_key(&mut src, op, self.max_int_digits).map_err(|_| Miss)?;
        Ok(usize::try_from(key)
            .ok()
            .and_then(|k| self.memo.get(k))
            .is_some_and(|slot| slot.kind == kind))
    }

    /// A global at the cursor: `GLOBAL`, `STACK_GLOBAL`, a memo reference
    /// to one, or, before protocol 4, a nested name `getattr(parent,
    /// "name")` as CPython writes one (which the Graph path reads as the
    /// global `module.parent.name`).
    fn global_here<R>(&mut self, pick: impl FnOnce(&str, &str) -> Option<R>) -> Pulled<R> {
        let start = self.pos;
        let mut pick = Some(pick);
        let proto = self.proto;
        let picked = self.plain_global(|m, n| {
            if proto < 4 && m == "builtins" && n == "getattr" {
                return Ok(None);
            }
            let pick = pick.take().ok_or(Miss)?;
            pick(m, n).map(Some).ok_or(Miss)
        })?;
        if let Some(r) = picked {
            return Ok(r);
        }
        // getattr(parent, "name"), then REDUCE.
        self.push(1)?;
        let (module, name) = self.tuple(2, |s| {
            let (m, parent) = s.read(Self::global_owned)?;
            let last = s.str()?;
            Ok((m, format!("{parent}.{last}")))
        })?;
        self.height -= 1;
        if self.op()? != REDUCE {
            return Err(Miss);
        }
        self.allowed(&module, &name)?;
        let pick = pick.take().ok_or(Miss)?;
        let r = pick(&module, &name).ok_or(Miss)?;
        self.end(Mark { start, back: None }, Kind::Nested)?;
        Ok(r)
    }

    /// `GLOBAL`, `STACK_GLOBAL`, or a memo reference to one, given to `f`.
    fn plain_global<R>(&mut self, f: impl FnOnce(&str, &str) -> Pulled<R>) -> Pulled<R> {
        let mark = self.begin(Kind::Global)?;
        // Read again from its first copy: it was allowed then.
        let again = !self.back.is_empty();
        let picked = match self.peek()? {
            GLOBAL => {
                self.pos += 1;
                let m = self.decode(|s| decode::name_line(s, "GLOBAL module name"))?;
                let n = self.decode(|s| decode::name_line(s, "GLOBAL name"))?;
                let (m, n) = if self.proto < 3 && self.fix_imports {
                    compat::to_python3(&m, &n)
                } else {
                    (m.as_str(), n.as_str())
                };
                if !again {
                    self.allowed(m, n)?;
                }
                f(m, n)?
            }
            _ => {
                self.push(2)?;
                self.names = true;
                let names = self.str().and_then(|m| Ok((m, self.str()?)));
                self.names = false;
                let (m, n) = names?;
                self.height -= 2;
                if self.op()? != STACK_GLOBAL {
                    return Err(Miss);
                }
                if self.back.is_empty() {
                    // The Graph path's bound on names STACK_GLOBAL copies.
                    self.name_bytes += (m.len() + n.len()) as u64;
                    if self.name_bytes > NAME_BYTES_PER_INPUT_BYTE * self.pos as u64 + (1 << 20) {
                        return Err(Miss);
                    }
                }
                let (m, n) = if self.proto < 3 && self.fix_imports {
                    compat::to_python3(&m, &n)
                } else {
                    (&*m, &*n)
                };
                if !again {
                    self.allowed(m, n)?;
                }
                f(m, n)?
            }
        };
        self.end(mark, Kind::Global)?;
        Ok(picked)
    }

    fn allowed(&self, module: &str, name: &str) -> Pulled<()> {
        // As the machine asks: the globals plain data uses (`builtins.set`,
        // `copyreg._reconstructor`, ...) are known to it.
        self.resolve
            .find_class(module, name, known_global(module, name).is_some())
            .map_err(|_| Miss)
    }

    /// An instance of the class `module.name` as CPython writes one of a
    /// plain class (`object.__reduce_ex__`): from protocol 2 `cls`,
    /// `EMPTY_TUPLE`, `NEWOBJ`; before it `copyreg._reconstructor(cls,
    /// object, None)`; then, unless its state is empty, the state and
    /// `BUILD`. The state is a dict (the `__dict__`) or a pair `(dict or
    /// None, slots dict)` (a class with `__slots__`): `entry` is given the
    /// name of each attribute (its UTF-8 bytes), `__dict__` part first,
    /// with the stream at the value, which it reads, returning `true`; or
    /// `false`, not reading it, for an attribute it does not know, which
    /// the stream then [skips](Stream::skip). Returns whether there was a
    /// state: if not, whatever `entry` kept is to be forgotten.
    pub fn instance(
        &mut self,
        module: &str,
        name: &str,
        mut entry: impl FnMut(&mut Self, &[u8]) -> Pulled<bool>,
    ) -> Pulled<bool> {
        // The class itself must be a class the Graph path builds as an
        // object, not one of the globals it reads as plain data.
        if known_global(module, name).is_some() {
            return Err(Miss);
        }
        let mark = self.begin(Kind::Object)?;
        self.push(1)?;
        if self.proto >= 2 {
            self.global(module, name)?;
            self.tuple(0, |_| Ok(()))?;
            if self.op()? != NEWOBJ {
                return Err(Miss);
            }
        } else {
            self.global("copyreg", "_reconstructor")?;
            self.tuple(3, |s| {
                s.global(module, name)?;
                s.global("builtins", "object")?;
                if s.none()? {
                    Ok(())
                } else {
                    Err(Miss)
                }
            })?;
            if self.op()? != REDUCE {
                return Err(Miss);
            }
        }
        // The object is memoized before its state is read: a GET of it
        // inside the state is a cycle, left to the Graph path.
        let key = self.memo_after(mark.start, Kind::Object, true)?;
        let built = self.instance_state(&mut entry)?;
        self.height -= 1;
        self.close(key);
        self.end(mark, Kind::Object)?;
        Ok(built)
    }

    /// The state after an instance and its `BUILD`, read on trial: a value
    /// not followed by `BUILD` is the next value of the object's parent,
    /// and the object has no state.
    fn instance_state(
        &mut self,
        entry: &mut impl FnMut(&mut Self, &[u8]) -> Pulled<bool>,
    ) -> Pulled<bool> {
        match self.peek()? {
            EMPTY_DICT | MARK | NONE | GET | BINGET | LONG_BINGET => {}
            _ => return Ok(false),
        }
        let spot = self.spot();
        let read = self.read(|s| {
            s.push(1)?;
            s.state_parts(entry)?;
            s.height -= 1;
            Ok(())
        });
        if read.is_ok() && self.eat(BUILD)? {
            return Ok(true);
        }
        self.undo(spot)?;
        Ok(false)
    }

    /// A state dict, or a `(dict or None, slots dict)` pair (from protocol
    /// 2, as CPython writes one: items then `TUPLE2`).
    fn state_parts(
        &mut self,
        entry: &mut impl FnMut(&mut Self, &[u8]) -> Pulled<bool>,
    ) -> Pulled<()> {
        let start = self.pos;
        if self.none()? {
            if self.proto < 2 {
                return Err(Miss);
            }
        } else {
            self.attributes(entry)?;
            if self.peek()? == BUILD {
                return Ok(());
            }
            if self.proto < 2 {
                return Err(Miss);
            }
        }
        // The pair: its slots part, then TUPLE2. (A GET of a whole pair, or
        // a pair that starts with a GET, CPython never writes.)
        self.push(1)?;
        self.attributes(entry)?;
        self.height -= 1;
        if self.op()? != TUPLE2 {
            return Err(Miss);
        }
        self.end(Mark { start, back: None }, Kind::Tuple(2))
    }

    /// A dict of attributes (str keys): see [`Stream::instance`].
    fn attributes(
        &mut self,
        entry: &mut impl FnMut(&mut Self, &[u8]) -> Pulled<bool>,
    ) -> Pulled<()> {
        self.dict(
            |s| {
                let spot = s.spot();
                let key = s.key()?;
                s.push(1)?;
                s.key_spot = Some(spot);
                let known = entry(s, &key);
                s.key_spot = None;
                if !known? {
                    // An unknown attribute: its name is checked as the
                    // Graph path's decoder checks it, its value skipped.
                    crate::text::utf8(&key).ok_or(Miss)?;
                    s.skip()?;
                }
                s.height -= 1;
                Ok(())
            },
            drop,
        )
        .map(drop)
    }

    /// Reads a value of plain data (`None`, a bool, an int that fits in an
    /// `i64`, a float, a str, bytes, an empty tuple, and lists and dicts of
    /// them) and drops it: an attribute a type has no field for. Anything
    /// else is a miss.
    pub fn skip(&mut self) -> Pulled<()> {
        self.read(Self::skip_value)
    }

    fn skip_value(&mut self) -> Pulled<()> {
        let mut op = self.peek()?;
        if let GET | BINGET | LONG_BINGET = op {
            // What the entry holds decides how to read it again.
            let mut src = SliceRead::at(self.data, self.pos + 1);
            let key = decode::memo_key(&mut src, op, self.max_int_digits).map_err(|_| Miss)?;
            let slot = usize::try_from(key)
                .ok()
                .and_then(|k| self.memo.get(k))
                .ok_or(Miss)?;
            op = match slot.kind {
                Kind::Str => SHORT_BINUNICODE,
                Kind::Bytes => SHORT_BINBYTES,
                Kind::List => EMPTY_LIST,
                Kind::Dict => EMPTY_DICT,
                Kind::Tuple(0) => EMPTY_TUPLE,
                _ => return Err(Miss),
            };
        } else if op == MARK {
            op = match self.data.get(self.pos + 1) {
                Some(&LIST) => EMPTY_LIST,
                Some(&DICT) => EMPTY_DICT,
                Some(&TUPLE) => EMPTY_TUPLE,
                _ => return Err(Miss),
            };
        }
        match op {
            NONE => self.op().map(drop),
            NEWTRUE | NEWFALSE => self.bool().map(drop),
            // Protocols 0 and 1 write a bool as an INT line, `I01`.
            INT if matches!(
                self.data.get(self.pos + 1..self.pos + 4),
                Some(b"00\n" | b"01\n")
            ) =>
            {
                self.bool().map(drop)
            }
            BININT | BININT1 | BININT2 | LONG1 | INT | LONG => self.int().map(drop),
            BINFLOAT | FLOAT => self.float().map(drop),
            SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 | UNICODE => self.str().map(drop),
            SHORT_BINBYTES | BINBYTES | BINBYTES8 | BYTEARRAY8 => self.bytes().map(drop),
            EMPTY_TUPLE => self.tuple(0, |_| Ok(())),
            EMPTY_LIST => self.list(Self::skip, drop).map(drop),
            EMPTY_DICT => self
                .dict(
                    |s| {
                        s.skip()?;
                        s.push(1)?;
                        s.skip()?;
                        s.height -= 1;
                        Ok(())
                    },
                    drop,
                )
                .map(drop),
            _ => Err(Miss),
        }
    }

    /// Whether the values from here (a `GET`) could be `n` items closed by
    /// `TUPLE1`-`TUPLE3`, so that the `GET` is a tuple's first item.
    fn closes_tuple(&mut self, n: usize) -> Pulled<bool> {
        let close = [TUPLE1, TUPLE2, TUPLE3][n - 1];
        self.scan(|op, height, marks| (marks == 0 && height == n && op == close).then_some(true))
    }

    /// Walks the opcodes from the cursor as a stack machine that only counts
    /// items, without reading anything, until `verdict` (given each opcode
    /// before it runs, the items above the start, and the open marks) gives
    /// an answer; an opcode it cannot follow, or one that would take an item
    /// from below the start, answers no.
    fn scan(&mut self, mut verdict: impl FnMut(u8, usize, usize) -> Option<bool>) -> Pulled<bool> {
        let mut src = SliceRead::at(self.data, self.pos);
        let start = self.pos;
        let mut height = 0usize;
        let mut marks: Vec<usize> = Vec::new();
        let answer = loop {
            let Ok(op) = decode::uint1(&mut src) else {
                break false;
            };
            if let Some(v) = verdict(op, height, marks.len()) {
                break v;
            }
            let Some(effect) = effect(op) else {
                break false;
            };
            if skip_arg(&mut src, op).is_err() {
                break false;
            }
            match effect {
                Effect::Stack(pop, push) => {
                    let floor = marks.last().copied().unwrap_or(0);
                    if height < floor + pop {
                        break false;
                    }
                    height = height - pop + push;
                }
                Effect::Mark => marks.push(height),
                Effect::Close(push) => match marks.pop() {
                    Some(h) => height = h + push,
                    None => break false,
                },
                Effect::Stop => break false,
            }
        };
        self.budget = self
            .budget
            .checked_sub(src.position() - start)
            .ok_or(Miss)?;
        Ok(answer)
    }

    /// The values of the batch at the cursor (just after its `MARK`), when
    /// they are all atoms, strings or memo fetches, up to `many`: a
    /// container is sized with it before its items are read. `None` for
    /// anything else (nested containers are read as they come). The scan
    /// stops at the first value that is not an atom, so each byte of the
    /// input is counted at most once by the container it belongs to, and
    /// after [`COUNT_AHEAD`] values: a long batch grows its container by
    /// doubling for less than counting all of it costs (a tenth of a read
    /// of floats).
    #[inline(never)]
    fn count_atoms(&self, many: u8) -> Option<usize> {
        let d = self.data;
        let mut i = self.pos;
        let mut values = 0;
        loop {
            if values >= COUNT_AHEAD {
                return Some(values);
            }
            let op = *d.get(i)?;
            let step = ATOM_STEP[op as usize];
            if step != 0 {
                // A fixed size: the length, and the value bit.
                i += (step & 0x0f) as usize;
                values += (step >> 4) as usize;
                continue;
            }
            let len = match op {
                SHORT_BINUNICODE | SHORT_BINBYTES => 2 + *d.get(i + 1)? as usize,
                BINUNICODE | BINBYTES => {
                    let n = d.get(i + 1..i + 5)?;
                    5 + u32::from_le_bytes([n[0], n[1], n[2], n[3]]) as usize
                }
                _ if op == many => return Some(values),
                _ => return None,
            };
            i = i.checked_add(len)?;
            values += 1;
        }
    }

    /// Whether the `MARK` next opens a batch of items (closed by `many`),
    /// rather than an item of its own (a marked tuple). From protocol 2 on,
    /// CPython marks an item only in a list or dict of one item, so a batch
    /// is assumed: if it was an item, its closer is not `many`, the first
    /// item fails to read, and [`Stream::items`] reads the marked item
    /// alone instead. Before protocol 2 (no `PROTO`: 0 or 1) every tuple is
    /// marked, so the closer is looked for ahead.
    fn batch(&mut self, many: u8) -> Pulled<bool> {
        if self.proto >= 2 {
            return Ok(true);
        }
        let mut src = SliceRead::at(self.data, self.pos);
        let start = self.pos;
        let mut marks = 0usize;
        let verdict = loop {
            let Ok(op) = decode::uint1(&mut src) else {
                break false;
            };
            match effect(op) {
                None | Some(Effect::Stop) => break false,
                Some(Effect::Mark) => marks += 1,
                Some(Effect::Close(_)) => {
                    marks -= 1;
                    if marks == 0 {
                        break op == many;
                    }
                }
                Some(Effect::Stack(..)) => {}
            }
            if skip_arg(&mut src, op).is_err() {
                break false;
            }
        };
        self.budget = self
            .budget
            .checked_sub(src.position() - start)
            .ok_or(Miss)?;
        Ok(verdict)
    }
}

/// How many items a container's first batches must hold before
/// [`Stream::items`] guesses how many the rest of the input holds.
const GUESS_AFTER: usize = 256;

/// How many values of a batch [`Stream::count_atoms`] counts at most
/// before its container is sized: all of a small container's, and enough
/// of a long batch's to start it.
const COUNT_AHEAD: usize = 64;

/// For [`Stream::count_atoms`], each opcode of a fixed size that makes one
/// value (`0x10` + its size) or none (its size: a memo put); 0 for any
/// other.
const ATOM_STEP: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let op = i as u8;
        t[i] = match op {
            NONE | NEWTRUE | NEWFALSE | EMPTY_TUPLE => 0x11,
            BININT1 | BINGET => 0x12,
            BININT2 => 0x13,
            BININT | LONG_BINGET => 0x15,
            BINFLOAT => 0x19,
            MEMOIZE => 0x01,
            BINPUT => 0x02,
            LONG_BINPUT => 0x05,
            _ => 0,
        };
        i += 1;
    }
    t
};

/// What takes a container's items as [`Stream::items`] reads them.
pub(crate) trait Items<T> {
    /// Whether [`Items::expect`] does anything: if not, the items are not
    /// counted ahead.
    const SIZED: bool;
    /// About `n` more items are coming.
    fn expect(&mut self, n: usize);
    /// About `n` more items are coming, a guess from the `left` bytes of
    /// input: room is made for at most four times those bytes, so that a
    /// hostile guess costs memory in proportion to the input, as reading
    /// it would.
    fn expect_rest(&mut self, n: usize, left: usize);
    /// The items are all in, after a guess: room left over from a guess
    /// too large is given back.
    fn trim(&mut self);
    fn put(&mut self, item: T);
}

/// A closure that takes each item.
struct Each<F>(F);

impl<T, F: FnMut(T)> Items<T> for Each<F> {
    const SIZED: bool = false;
    fn expect(&mut self, _: usize) {}
    fn expect_rest(&mut self, _: usize, _: usize) {}
    fn trim(&mut self) {}
    #[inline(always)]
    fn put(&mut self, item: T) {
        (self.0)(item)
    }
}

impl<T> Items<T> for Vec<T> {
    const SIZED: bool = true;
    fn expect(&mut self, n: usize) {
        self.reserve(n);
    }
    fn expect_rest(&mut self, n: usize, left: usize) {
        let most = left.saturating_mul(4) / size_of::<T>().max(1);
        self.reserve_exact(n.min(most));
    }
    fn trim(&mut self) {
        if self.len() < self.capacity() / 2 {
            self.shrink_to_fit();
        }
    }
    #[inline(always)]
    fn put(&mut self, item: T) {
        self.push(item)
    }
}

/// What an opcode does to the stack, for the scans of [`Stream::scan`] and
/// [`Stream::batch`].
#[derive(Clone, Copy)]
enum Effect {
    /// Pops this many items, then pushes this many.
    Stack(usize, usize),
    Mark,
    /// Pops to the last mark, then pushes this many.
    Close(usize),
    Stop,
}

fn effect(op: u8) -> Option<Effect> {
    use Effect::*;
    Some(match op {
        NONE | NEWTRUE | NEWFALSE | INT | BININT | BININT1 | BININT2 | LONG | LONG1 | LONG4
        | FLOAT | BINFLOAT | STRING | BINSTRING | SHORT_BINSTRING | UNICODE | SHORT_BINUNICODE
        | BINUNICODE | BINUNICODE8 | BINBYTES | SHORT_BINBYTES | BINBYTES8 | BYTEARRAY8
        | EMPTY_LIST | EMPTY_DICT | EMPTY_SET | EMPTY_TUPLE | GLOBAL | GET | BINGET
        | LONG_BINGET | EXT1 | EXT2 | EXT4 | PERSID | NEXT_BUFFER => Stack(0, 1),
        DUP => Stack(1, 2),
        PUT | BINPUT | LONG_BINPUT | MEMOIZE | FRAME | PROTO => Stack(0, 0),
        BINPERSID | READONLY_BUFFER | TUPLE1 => Stack(1, 1),
        TUPLE2 | STACK_GLOBAL | REDUCE | NEWOBJ | BUILD => Stack(2, 1),
        TUPLE3 | NEWOBJ_EX => Stack(3, 1),
        APPEND => Stack(2, 1),
        SETITEM => Stack(3, 1),
        POP => Stack(1, 0),
        MARK => Mark,
        TUPLE | LIST | DICT | FROZENSET | INST | OBJ => Close(1),
        APPENDS | SETITEMS | ADDITEMS | POP_MARK => Close(0),
        STOP => Stop,
        _ => return None,
    })
}

/// Steps over an opcode's argument.
fn skip_arg(src: &mut SliceRead<'_>, op: u8) -> crate::base::error::Result<()> {
    use super::input::Source;
    match op {
        BININT1 | BINGET | BINPUT | EXT1 | PROTO => drop(src.byte()?),
        BININT2 | EXT2 => drop(src.take(2)?),
        BININT | LONG_BINGET | LONG_BINPUT | EXT4 => drop(src.take(4)?),
        BINFLOAT | FRAME => drop(src.take(8)?),
        INT | LONG | FLOAT | STRING | UNICODE | PUT | GET | PERSID => drop(src.line()?),
        GLOBAL | INST => {
            src.line()?;
            src.line()?;
        }
        LONG1 | LONG4 => drop(decode::long_bytes(src, op)?),
        BINSTRING | SHORT_BINSTRING => drop(decode::py2_string(src, op)?),
        SHORT_BINUNICODE => {
            let n = src.byte()? as u64;
            src.take(n)?;
        }
        BINUNICODE => {
            let n = decode::uint4(src)?;
            src.take(n)?;
        }
        BINUNICODE8 => {
            let n = decode::uint8(src)?;
            src.take(n)?;
        }
        SHORT_BINBYTES | BINBYTES | BINBYTES8 | BYTEARRAY8 => drop(decode::bytes(src, op)?),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod claims_tests {
    use super::Claims;

    #[test]
    fn claims_come_back_innermost_first_past_the_inline_ones() {
        let mut c = Claims::default();
        for i in 0..12 {
            c.push((i, i * 10));
        }
        let all: Vec<(usize, usize)> = c.rev().collect();
        assert_eq!(all, (0..12).rev().map(|i| (i, i * 10)).collect::<Vec<_>>());
        for _ in 0..5 {
            c.pop();
        }
        let left: Vec<usize> = c.rev().map(|x| x.0).collect();
        assert_eq!(left, vec![6, 5, 4, 3, 2, 1, 0]);
        c.push((99, 1));
        assert_eq!(c.rev().next(), Some((99, 1)));
    }
}
