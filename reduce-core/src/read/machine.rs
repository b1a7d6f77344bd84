//! The stack machine: one step per opcode, the memo, marks, and in inert
//! mode the program of steps beside the values.

use std::cell::Cell;
use std::collections::HashMap;

use num_bigint::BigInt;

use super::decode;
use super::input::{SliceRead, Source};
use super::{known_global, Builtin, Options, Resolve, StringDecoding};
use crate::base::error::{Error, ErrorKind, Result};
use crate::base::op::*;
use crate::text::compat;
use crate::text::PyStr;
use crate::value::graph::{compact, compact_in_order};
use crate::value::{Graph, Id, Persistent, PickleBuffer, Reduction, Seq, Spelling, Step, Value};

pub(super) struct Machine<'o, 'h> {
    opts: &'o mut Options<'h>,
    resolve: &'o dyn Resolve,
    /// `opts.inert` and `opts.limits.max_stack`, read on every push.
    inert: bool,
    max_stack: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    objects: Vec<Value>,
    /// Each memo key's place in `kept`, a shared object's id with
    /// [`SHARED`], or [`COUNTED`], for the keys
    /// below `dense` (under [`Keep::None`], where every put is counted
    /// only, as long as the last key a `GET` shared on the spot, and
    /// [`COUNTED`] past its end); the other keys in `memo_sparse`.
    memo: Vec<u32>,
    dense: usize,
    memo_sparse: HashMap<u64, u32>,
    /// The memo's kept values: scalars, and references to shared objects.
    kept: Vec<Value>,
    memo_len: usize,
    /// Which memo puts are kept (see [`Keep`]).
    keep: Keep,
    /// Set when a `GET` under [`Keep::None`] asked for a put that was only
    /// counted and whose object has left its stack slot: the load must run
    /// again with a scan.
    pub(super) rerun: bool,
    /// Under [`Keep::None`], the puts whose object may still be in the
    /// stack slot it was put from, oldest first (so by slot), for a `GET`
    /// to share on the spot. Those at or above `low` have left.
    live: Vec<Live>,
    /// The stack's lowest length since `live` was last brought up to date.
    low: usize,
    /// Whether a `GET` may share a put on the spot: under [`Keep::None`],
    /// until a key is put twice (so a key is in `live` at most once).
    spot: bool,
    /// One count per put and per `DUP`: the order in which a reader
    /// keeping every fetched put shares objects, each at its put.
    seq: u64,
    /// Under [`Keep::None`], each object's place in that order (a `GET`
    /// sharing on the spot shares an object later than its put).
    births: Vec<u64>,
    /// Containers pushed: the tree cannot be deeper than this, so while it
    /// is within `max_depth` the depth need not be walked at `STOP`.
    containers: usize,
    proto: u8,
    /// Inert mode: steps taken while no value was on the stack above the
    /// last mark, waiting to go before the next value pushed.
    pending: Vec<Step>,
    /// Bytes of names `STACK_GLOBAL` has copied out of strings, which a
    /// pickle can fetch from its memo again and again for five bytes each.
    name_bytes: u64,
    /// Under [`Keep::None`], for a caller that wants a tree (see
    /// [`Machine::copy_fetches`]): a `GET` of a str or a global that has
    /// left its stack slot pushes a copy of it, as the tree would hold it,
    /// instead of losing the bet.
    copy: bool,
    /// With `copy`: whether `again` is kept up to date. It is made only at
    /// the first `GET` that needs it (see [`Machine::note_puts`]): until
    /// then, a put of a str costs nothing, and one of a global a clone.
    noted: bool,
    /// With `copy`: where the pickle begins in the input, for that scan.
    start: usize,
    /// With `noted`: where the str just pushed by a string opcode begins,
    /// and where it and the puts right after it end.
    str_at: (u64, u64),
    /// With `noted`: how to copy each dense key's object, by key (one entry
    /// per key below `dense`): [`NOT_COPIED`], the position of the string
    /// opcode that made a str, or [`COPIED_GLOBAL`] and an index in `globals`.
    again: Vec<u32>,
    /// With `copy`: the room `again` is made with.
    again_room: usize,
    /// With `copy`: the globals put, cloned, each with the position of its
    /// put opcode (which the scan that makes `again` finds it by).
    globals: Vec<(u32, crate::value::Global)>,
}

/// In [`Machine::again`]: a `GET` of this key loses the bet (as of a key
/// past the table's end).
const NOT_COPIED: u32 = u32::MAX;
/// The longest input whose fetches the machine copies (see
/// [`Machine::copy_fetches`]).
const COPY_MAX_LEN: usize = 1 << 16;
/// In [`Machine::again`]: the key's object is the global at the index in
/// the bits below.
const COPIED_GLOBAL: u32 = 1 << 31;

#[cold]
fn underflow() -> Error {
    Error::new(ErrorKind::StackUnderflow)
}

/// Values kept inline even when memoized: scalars, and the empty tuple,
/// which has no identity in Python (it is a singleton, and never memoized
/// by a pickler).
fn is_cheap(v: &Value) -> bool {
    match v {
        Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Ref(_) => true,
        Value::Tuple(t) => t.is_empty(),
        _ => false,
    }
}

impl<'o, 'h> Machine<'o, 'h> {
    /// A machine for one load, keeping the memo puts `keep` says. `len`
    /// is the input's length where it is known (a slice), else 0: the
    /// stack, the marks and the notes of puts start at a size in
    /// proportion to it (a few bytes make each), so that a small pickle's
    /// vectors seldom grow.
    pub(super) fn new(
        opts: &'o mut Options<'h>,
        resolve: &'o dyn Resolve,
        keep: Keep,
        len: usize,
    ) -> Self {
        let spot = matches!(keep, Keep::None);
        let mut tables = Tables::take();
        fn room<T>(v: &mut Vec<T>, n: usize) {
            if v.capacity() < n {
                v.reserve_exact(n);
            }
        }
        if spot {
            room(&mut tables.live, (len / 64).min(64));
        }
        // Sized from the input, but well below it and with no floor:
        // a small pickle's read should not hold several times its own
        // size in room. Under 32 bytes, where that gives none and the
        // first push would make room for four values (128 bytes), a
        // value per 8 bytes (the header and STOP take 3 to 12, a value
        // 2 or more): `(1, 2.5, "x")`, 29 bytes, gets its 3.
        let stack = if len < 32 {
            len / 8
        } else {
            (len / 32).min(256)
        };
        room(&mut tables.stack, stack);
        room(&mut tables.marks, (len / 64).min(64));
        Machine {
            inert: opts.inert,
            max_stack: opts.limits.max_stack,
            opts,
            resolve,
            spot,
            keep,
            rerun: false,
            live: tables.live,
            low: 0,
            seq: 0,
            births: tables.births,
            containers: 0,
            stack: tables.stack,
            marks: tables.marks,
            objects: Vec::new(),
            memo: tables.memo,
            memo_sparse: HashMap::new(),
            kept: Vec::new(),
            dense: 0,
            memo_len: 0,
            proto: 0,
            pending: Vec::new(),
            name_bytes: 0,
            copy: false,
            noted: false,
            start: 0,
            str_at: (u64::MAX, u64::MAX),
            again: Vec::new(),
            again_room: 0,
            globals: Vec::new(),
        }
    }

    /// For a caller that wants the root as a tree (a `Value`), under
    /// [`Keep::None`]: a `GET` of a str or a global that has left its
    /// stack slot pushes a copy, which is what the tree holds in that
    /// place, so such a pickle (an instance's class and attribute names
    /// fetched for every instance, as CPython writes a list of them) wins
    /// the bet. A string is decoded again from where it was written; a
    /// global, cloned at its put. Neither can change after it is made, and
    /// every opcode reads a copy as it reads a shared one.
    ///
    /// `into_tree` refuses a tree of more than `max_tree_nodes` values,
    /// which it counts only when the graph shares something; a graph with
    /// only such copies is not counted. Each byte of input makes at most
    /// three values (`NEWOBJ_EX`: the object, `copyreg.__newobj_ex__` and
    /// the argument tuple; a `GET` of two bytes or more makes one copy), so
    /// the copies are made only where four per byte of input stay within the
    /// limit: then the tree with them is within it too, as the Graph path
    /// would have found it. A longer pickle loses the bet as before.
    ///
    /// `start` is where the pickle begins in the input, `len` its length
    /// at most (the input left), `end` where the input ends: positions,
    /// kept in 31 bits, are the input's.
    ///
    /// Only up to [`COPY_MAX_LEN`] bytes: the notes (made at the first
    /// `GET` that needs them, see [`Machine::note_puts`]) cost a few
    /// instructions a put, and their table, grown put by put through a
    /// large pickle, left the heap slower to free the value afterwards
    /// (a list of 10,000 small records read 5% slower). A larger pickle
    /// loses its bet to the stream as before.
    pub(super) fn copy_fetches(&mut self, start: usize, len: usize, end: usize) {
        self.start = start;
        self.copy = matches!(self.keep, Keep::None)
            && len <= COPY_MAX_LEN
            && len.saturating_mul(4) <= self.opts.limits.max_tree_nodes
            && end < COPIED_GLOBAL as usize;
        self.again_room = len / 8;
    }

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    #[inline]
    fn push(&mut self, v: Value) -> Result<()> {
        if self.stack.len() + self.marks.len() >= self.max_stack {
            return Err(self.stack_full());
        }
        self.containers += levels(&v);
        if self.stack.len() == self.stack.capacity() {
            // Half again, not double: a read's peak holds the stack beside
            // the container its items move into, and a pickle's stack
            // seldom grows more than a few times.
            self.stack.reserve_exact((self.stack.len() / 2).max(4));
        }
        if !self.pending.is_empty() {
            self.push_after_steps(v);
        } else {
            self.stack.push(v);
        }
        Ok(())
    }

    /// [`Machine::push`] of an atom (an int, a float, `None`, a bool, a
    /// str: no levels), in line where nothing waits for it.
    ///
    /// The fast path tests for spare capacity itself, so that the push
    /// below cannot grow the stack: the value is then written straight
    /// into its slot, where a push that might call out builds it on the
    /// machine stack first and copies it over, reading back 32 bytes that
    /// were just written in smaller pieces (a stall on every atom).
    #[inline(always)]
    fn push_atom(&mut self, v: Value) -> Result<()> {
        if self.stack.len() + self.marks.len() >= self.max_stack
            || !self.pending.is_empty()
            || self.stack.len() == self.stack.capacity()
        {
            return self.push(v);
        }
        self.stack.push(v);
        Ok(())
    }

    /// [`Machine::push`] of a container (one level), with
    /// [`Machine::push_atom`]'s fast path.
    #[inline(always)]
    fn push_container(&mut self, v: Value) -> Result<()> {
        debug_assert_eq!(levels(&v), 1);
        if self.stack.len() + self.marks.len() >= self.max_stack
            || !self.pending.is_empty()
            || self.stack.len() == self.stack.capacity()
        {
            return self.push(v);
        }
        self.containers += 1;
        self.stack.push(v);
        Ok(())
    }

    /// Inert mode: pushes `v` with the steps waiting for it before it.
    #[cold]
    #[inline(never)]
    fn push_after_steps(&mut self, v: Value) {
        let before = std::mem::take(&mut self.pending);
        self.stack.push(Value::Seq(Box::new(Seq {
            before,
            value: v,
            after: Vec::new(),
        })));
    }

    #[cold]
    fn stack_full(&self) -> Error {
        Error::new(ErrorKind::Limit {
            limit: "max_stack",
            max: self.max_stack as u64,
        })
    }

    fn pop(&mut self) -> Result<Value> {
        if self.stack.len() <= self.fence() {
            return Err(underflow());
        }
        let v = self.stack.pop().unwrap_or_default();
        self.shrunk();
        Ok(v)
    }

    /// Notes that the stack shrank: the puts above its length have left
    /// their slots (see `live`). Every place that shrinks the stack calls
    /// this.
    #[inline(always)]
    fn shrunk(&mut self) {
        self.low = self.low.min(self.stack.len());
    }

    #[inline]
    fn top_index(&self) -> Result<usize> {
        if self.stack.len() <= self.fence() {
            return Err(underflow());
        }
        Ok(self.stack.len() - 1)
    }

    /// The items since the last mark, and the mark removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| Error::new(ErrorKind::MissingMark))?;
        let items = self.stack.split_off(mark);
        self.shrunk();
        Ok(items)
    }

    /// The object a stack slot stands for, following a shared reference
    /// and looking inside a [`Seq`].
    fn target_mut(&mut self, index: usize) -> &mut Value {
        let mut slot = &mut self.stack[index];
        if let Value::Seq(s) = slot {
            slot = &mut s.value;
        }
        match *slot {
            Value::Ref(id) => &mut self.objects[id.index()],
            ref mut v => v,
        }
    }

    /// Follows a reference for reading, looking inside a [`Seq`].
    fn deref<'v>(&'v self, v: &'v Value) -> &'v Value {
        let v = match v {
            Value::Seq(s) => &s.value,
            v => v,
        };
        match v {
            Value::Ref(id) => &self.objects[id.index()],
            v => v,
        }
    }

    /// `v` for an error message: shared objects shown by value (the first
    /// few dozen values), so the message is the same whether the reader
    /// kept the memo's objects shared or not.
    fn shown(&self, v: &Value) -> Value {
        let mut out = self.deref(v).clone();
        let mut budget = 64usize;
        let mut stack: Vec<&mut Value> = vec![&mut out];
        while let Some(v) = stack.pop() {
            if budget == 0 {
                break;
            }
            budget -= 1;
            if let Value::Ref(id) = *v {
                if let Some(target) = self.objects.get(id.index()) {
                    *v = target.clone();
                }
            }
            v.for_each_child_mut(|c| stack.push(c));
        }
        out
    }

    /// Makes `v` shareable: containers and strings move into the object
    /// table and come back as a reference; small scalars are copied.
    fn share(&mut self, v: Value) -> Value {
        if is_cheap(&v) {
            return v;
        }
        let id = Id(self.objects.len() as u32);
        self.objects.push(v);
        if matches!(self.keep, Keep::None) {
            self.births.push(self.seq);
        }
        Value::Ref(id)
    }

    /// Shares the top of the stack, returning a reference to it. In inert
    /// mode the slot keeps a reference marked as the object's birth slot, so
    /// that a later change through it is told from one through a memo
    /// fetch.
    fn share_top(&mut self) -> Result<Value> {
        let i = self.top_index()?;
        let inert = self.inert;
        let mut slot = std::mem::take(&mut self.stack[i]);
        let inner = match &mut slot {
            Value::Seq(s) => &mut s.value,
            v => v,
        };
        let value = std::mem::take(inner);
        if is_cheap(&value) {
            // A scalar, or an object shared already: the slot keeps what it
            // holds (its birth mark too), and the memo gets a plain
            // reference.
            let shared = match &value {
                Value::Ref(id) => Value::Ref(Id(id.index() as u32)),
                v => cheap_clone(v),
            };
            *inner = value;
            self.stack[i] = slot;
            return Ok(shared);
        }
        let shared = self.share(value);
        *inner = match shared {
            Value::Ref(id) if inert => Value::Ref(Id(id.0 | Id::BIRTH)),
            ref v => cheap_clone(v),
        };
        self.stack[i] = slot;
        Ok(shared)
    }

    /// Inert mode: records a step taken for its effect at this point of the
    /// program, after the value on top of the stack (if there is one above
    /// the last mark) or before the next value pushed.
    fn record(&mut self, step: Step) {
        self.pending.push(step);
        self.settle();
    }

    /// [`Machine::record`] of several steps, in order: moved whole where
    /// nothing waits, so that values thrown away one after another (`K\x01`
    /// `0`, again and again), each carrying the steps of those before it,
    /// cost their own steps and not all the earlier ones again (40,000 of
    /// them took 5 s).
    fn record_all(&mut self, mut steps: Vec<Step>) {
        if steps.is_empty() {
            return;
        }
        if self.pending.is_empty() {
            self.pending = steps;
        } else {
            self.pending.append(&mut steps);
        }
        self.settle();
    }

    /// Inert mode: a value built and thrown away. A value with steps of its
    /// own is taken apart, so that one program has one shape: its steps
    /// before, the value, its steps after.
    fn discard(&mut self, mut v: Value) {
        if let Value::Seq(s) = &mut v {
            let s = std::mem::take(s);
            let Seq {
                before,
                value,
                after,
            } = *s;
            self.record_all(before);
            self.discard(value);
            self.record_all(after);
            return;
        }
        if matches!(v, Value::Ref(id) if id.0 & Id::BIRTH == 0) {
            // An object fetched from the memo and thrown away: nothing
            // happened (a step on it already says it is fetched).
            return;
        }
        self.record(Step::Discard(v));
    }

    /// Inert mode: the steps taken before the first operand of a value being
    /// built from operands become steps before the value itself, so that
    /// each program has one shape whatever protocol wrote it (a writer
    /// writes steps before a value, then the value's first operand).
    fn hoist(&self, first: Option<&mut Value>) -> Vec<Step> {
        let Some(v) = first else {
            return Vec::new();
        };
        let Value::Seq(s) = v else {
            return Vec::new();
        };
        let before = std::mem::take(&mut s.before);
        if s.after.is_empty() {
            *v = std::mem::take(&mut s.value);
        }
        before
    }

    /// [`Machine::push_built`] of a container, in line where no step was
    /// hoisted.
    #[inline(always)]
    fn push_built_container(&mut self, v: Value, before: Vec<Step>) -> Result<()> {
        if before.is_empty() {
            return self.push_container(v);
        }
        self.push_built(v, before)
    }

    /// Pushes a value built from operands, with the steps hoisted from its
    /// first operand before it.
    fn push_built(&mut self, v: Value, mut before: Vec<Step>) -> Result<()> {
        if !before.is_empty() {
            before.append(&mut self.pending);
            self.pending = before;
        }
        self.push(v)
    }

    /// Inert mode: steps waiting for a value go after the value on top of
    /// the stack, if there is one above the last mark (after an opcode that
    /// shrank the stack, say); otherwise they wait for the next value pushed
    /// ([`Machine::push`]).
    fn settle(&mut self) {
        if self.pending.is_empty() || self.stack.len() <= self.fence() {
            return;
        }
        let i = self.stack.len() - 1;
        let top = &mut self.stack[i];
        if !matches!(top, Value::Seq(_)) {
            let value = std::mem::take(top);
            *top = Value::Seq(Box::new(Seq {
                before: Vec::new(),
                value,
                after: Vec::new(),
            }));
        }
        if let Value::Seq(s) = top {
            if s.after.is_empty() {
                std::mem::swap(&mut s.after, &mut self.pending);
            } else {
                s.after.append(&mut self.pending);
            }
        }
    }

    /// Inert mode: whether a change to the object in stack slot `index` is
    /// one CPython's pickler would have written as part of building it
    /// (kept in the object), rather than a separate step: a change through
    /// the object's own slot, with nothing recorded after it, continuing
    /// full batches of [`BATCHSIZE`] (or, at protocol 0, single items;
    /// `single` says the change is `APPEND`/`SETITEM`).
    fn attached(&self, index: usize, single: bool) -> bool {
        let slot = &self.stack[index];
        let inner = match slot {
            Value::Seq(s) if !s.after.is_empty() => return false,
            Value::Seq(s) => &s.value,
            v => v,
        };
        if let Value::Ref(id) = inner {
            if id.0 & Id::BIRTH == 0 {
                // Fetched again from the memo: a change after the fact.
                return false;
            }
        }
        let full = |n: usize| n == 0 || n.is_multiple_of(BATCHSIZE) || (single && self.proto == 0);
        match self.deref(slot) {
            Value::List(v) | Value::Set(v) => full(v.len()),
            Value::Dict(d) => full(d.len()),
            Value::Reduce(r) => full(r.list_items.len()) && full(r.dict_items.len()),
            _ => false,
        }
    }

    /// Whether the object in stack slot `index` could take the change in
    /// CPython: an int or a string fails there.
    fn check_target(&self, index: usize, what: Change) -> Result<()> {
        // Only what could take the change in CPython: an int or a string
        // fails there, and would be no object to change here.
        let ok = matches!(
            (self.deref(&self.stack[index]), what),
            (
                Value::Reduce(_) | Value::PersistentId(_) | Value::Global(_),
                _
            ) | (Value::List(_), Change::Items)
                | (Value::Dict(_), Change::Pairs)
                | (Value::Set(_), Change::Set)
        );
        if !ok {
            let found = crate::text::a(self.deref(&self.stack[index]).type_name());
            return Err(Error::invalid(match what {
                Change::Items => format!("expected a list to append to, found {found}"),
                Change::Pairs => format!("expected a dict to set items in, found {found}"),
                Change::Set => format!("expected a set to add items to, found {found}"),
                Change::State => format!("expected an object to BUILD, found {found}"),
            }));
        }
        Ok(())
    }

    /// Inert mode: turns the change about to be made to stack slot `index`
    /// into a step on a reference to its object, recorded after the slot.
    /// Returns the reference.
    fn detach(&mut self, index: usize, what: Change) -> Result<Value> {
        self.check_target(index, what)?;
        let mut slot = std::mem::take(&mut self.stack[index]);
        let (mut seq, value) = match &mut slot {
            Value::Seq(s) => {
                let v = std::mem::take(&mut s.value);
                (Some(std::mem::take(s)), v)
            }
            v => (None, std::mem::take(v)),
        };
        let (slot_value, target) = match value {
            Value::Ref(id) => (Value::Ref(id), Value::Ref(Id(id.index() as u32))),
            v => {
                let id = Id(self.objects.len() as u32);
                self.objects.push(v);
                (Value::Ref(Id(id.0 | Id::BIRTH)), Value::Ref(id))
            }
        };
        self.stack[index] = match seq.take() {
            Some(mut s) => {
                s.value = slot_value;
                Value::Seq(s)
            }
            None => slot_value,
        };
        Ok(target)
    }

    /// A put: the object on top of the stack is shared if some `GET`
    /// fetches `key`, and only counted otherwise (it stays where it is, and
    /// moves into its container as any unshared value does).
    #[inline(always)]
    fn memo_put(&mut self, key: u64) -> Result<()> {
        if matches!(self.keep, Keep::None) {
            return self.memo_count(key);
        }
        self.memo_keep(key)
    }

    /// [`Machine::memo_put`] keeping the puts [`Keep::All`] or
    /// [`Keep::Fetched`] says.
    #[inline(never)]
    fn memo_keep(&mut self, key: u64) -> Result<()> {
        let kept = match &self.keep {
            Keep::All => true,
            Keep::None => false,
            Keep::Fetched(f) => f.contains(key),
        };
        let value = if kept {
            Some(self.share_top()?)
        } else {
            self.top_index()?;
            None
        };
        let (new_key, old) = match usize::try_from(key) {
            Ok(k) if k < self.dense => (false, self.memo.get(k).copied().unwrap_or(COUNTED)),
            Ok(k) if k == self.dense => (true, COUNTED),
            _ => match self.memo_sparse.get(&key) {
                Some(&old) => (false, old),
                None => (true, COUNTED),
            },
        };
        let index = match value {
            None => COUNTED,
            // A key put again reuses its place among the kept values.
            Some(v) if old != COUNTED => {
                self.kept[old as usize] = v;
                old
            }
            Some(v) => self.keep_value(v)?,
        };
        match usize::try_from(key) {
            Ok(k) if k < self.dense => {
                if let Some(slot) = self.memo.get_mut(k) {
                    *slot = index;
                }
            }
            Ok(k) if k == self.dense => {
                self.dense += 1;
                if !matches!(self.keep, Keep::None) {
                    self.memo.push(index);
                }
            }
            _ => {
                self.memo_sparse.insert(key, index);
            }
        }
        if new_key {
            self.memo_len += 1;
            if self.memo_len > self.opts.limits.max_memo {
                return Err(Error::new(ErrorKind::Limit {
                    limit: "max_memo",
                    max: self.opts.limits.max_memo as u64,
                }));
            }
        }
        Ok(())
    }

    /// A put under [`Keep::None`]: only counted, and noted for a `GET` to
    /// share on the spot while the object stays in its stack slot. The
    /// same as [`Machine::memo_put`] keeping nothing, on the path every
    /// put of an unshared pickle takes.
    #[inline(always)]
    fn memo_count(&mut self, key: u64) -> Result<()> {
        let slot = self.top_index()?;
        self.seq += 1;
        let new_key = match usize::try_from(key) {
            Ok(k) if k < self.dense => {
                if let Some(place) = self.memo.get_mut(k) {
                    *place = COUNTED;
                }
                false
            }
            Ok(k) if k == self.dense => {
                self.dense += 1;
                if !self.memo_sparse.is_empty() && self.memo_sparse.contains_key(&key) {
                    // Put before as a sparse key (and counted again as a
                    // new one, as `memo_put` does): a key put twice.
                    self.spot = false;
                    self.live = Vec::new();
                }
                true
            }
            _ => self.memo_sparse.insert(key, COUNTED).is_none(),
        };
        if !new_key {
            // A key put twice: `live` could hold an older put of it that a
            // GET would take for the latest.
            self.spot = false;
            self.live = Vec::new();
            return Ok(());
        }
        self.memo_len += 1;
        if self.memo_len > self.opts.limits.max_memo {
            return Err(Error::new(ErrorKind::Limit {
                limit: "max_memo",
                max: self.opts.limits.max_memo as u64,
            }));
        }
        if self.spot {
            // Entries are kept small (a pickle of a few puts holds little
            // besides them); a put past what they hold stops the sharing on
            // the spot, as a key put twice does.
            match (
                u32::try_from(key),
                u32::try_from(slot),
                u32::try_from(self.seq),
            ) {
                (Ok(key), Ok(slot), Ok(birth)) => {
                    self.sync_live();
                    if self.live.len() == self.live.capacity() {
                        // Doubling from one: a tiny pickle's Value read holds little else.
                        self.live.reserve_exact(self.live.len().max(1));
                    }
                    self.live.push(Live { key, slot, birth });
                }
                _ => {
                    self.spot = false;
                    self.live = Vec::new();
                }
            }
        }
        Ok(())
    }

    /// Drops from `live` the puts whose slot the stack has given up since
    /// it was last brought up to date.
    #[inline]
    fn sync_live(&mut self) {
        while self
            .live
            .last()
            .is_some_and(|e| e.slot as usize >= self.low)
        {
            self.live.pop();
        }
        self.low = self.stack.len();
    }

    /// Under [`Keep::None`]: a `GET` of `key`, whose put was only counted,
    /// shares the object if it is still in the stack slot it was put from,
    /// as a reader keeping that put would have shared it there: the slot
    /// and the memo get a reference to it, which is pushed. `false` if it
    /// has left. (Pushed here, not returned: a `Result<Option<Value>>`
    /// came back through memory and was copied out in pieces that did not
    /// match the stores that wrote it, a stall of its own on every GET.)
    fn share_live(&mut self, key: u64) -> Result<bool> {
        self.sync_live();
        // Picklers number their keys upwards, so `live` is mostly sorted by
        // key. A key is in it at most once, so an entry found with it is
        // the put, sorted or not; failing that, the latest few are looked
        // through (a GET of an older one reads again, rather than every
        // GET searching all).
        let Ok(key32) = u32::try_from(key) else {
            // No such key is kept (see `memo_count`).
            return Ok(false);
        };
        let n = self.live.len();
        let found = self
            .live
            .binary_search_by_key(&key32, |e| e.key)
            .ok()
            .or_else(|| {
                self.live
                    .iter()
                    .rev()
                    .take(LIVE_SEARCH)
                    .position(|e| e.key == key32)
                    .map(|p| n - 1 - p)
            });
        let Some(at) = found else {
            return Ok(false);
        };
        let Live { slot, birth, .. } = self.live[at];
        let (slot, birth) = (slot as usize, u64::from(birth));
        // The object's id when it is shared by reference, or a copy of a
        // cheap value.
        let shared: std::result::Result<Id, Value> = match &mut self.stack[slot] {
            Value::Seq(_) => return Ok(false),
            Value::Ref(id) => {
                // Shared already (by a DUP, or a GET of another key put
                // from this slot): shared at its first put.
                let id = Id(id.index() as u32);
                if let Some(b) = self.births.get_mut(id.index()) {
                    *b = (*b).min(birth);
                }
                Ok(id)
            }
            v if is_cheap(v) => Err(cheap_clone(v)),
            v => {
                if self.births.is_empty() {
                    // The first shared: as many may follow as are noted,
                    // but the table's first block stays under 1 KiB. A
                    // larger request makes glibc merge its cached small
                    // blocks (those the last read's result freed), and the
                    // lists still to come were then each allocated the
                    // slow way: dag60's first block of 61 objects cost its
                    // read 5% of its instructions, 8% of its time.
                    let n = self.live.len();
                    self.objects
                        .reserve(n.min(1000 / std::mem::size_of::<Value>()));
                    self.births.reserve(n);
                }
                let id = Id(self.objects.len() as u32);
                self.objects.push(std::mem::replace(v, Value::Ref(id)));
                self.births.push(birth);
                Ok(id)
            }
        };
        let index = match &shared {
            // The memo names a shared object by its id, with no place in
            // `kept` (32 bytes a key, for a pickle that shares every put).
            Ok(id) if id.index() < SHARED as usize => SHARED | id.index() as u32,
            Ok(id) => self.keep_value(Value::Ref(*id))?,
            Err(v) => self.keep_value(cheap_clone(v))?,
        };
        match usize::try_from(key) {
            Ok(k) if k < self.dense => {
                if self.memo.len() <= k {
                    self.memo.resize(k + 1, COUNTED);
                }
                self.memo[k] = index;
            }
            _ => {
                self.memo_sparse.insert(key, index);
            }
        }
        match shared {
            // Built in its slot (see `push_atom`).
            Ok(id) => self.push_atom(Value::Ref(id))?,
            Err(v) => self.push(v)?,
        }
        Ok(true)
    }

    /// Keeps `v` in a new place of `kept`; returns the place. Places stay
    /// below 2^31 (only `max_memo` raised above them reaches it): the bit
    /// above tells an object's id in the memo (see [`SHARED`]).
    fn keep_value(&mut self, v: Value) -> Result<u32> {
        let i = u32::try_from(self.kept.len())
            .ok()
            .filter(|&i| i < SHARED)
            .ok_or_else(|| {
                Error::new(ErrorKind::Limit {
                    limit: "max_memo",
                    max: COUNTED as u64,
                })
            })?;
        self.kept.push(v);
        Ok(i)
    }

    /// A `GET` of `key`; `read` is the input and the position after the
    /// `GET`, where the input is a slice.
    fn memo_get(&mut self, key: u64, read: Option<(&[u8], usize)>) -> Result<()> {
        let found = match usize::try_from(key) {
            Ok(k) if k < self.dense => Some(self.memo.get(k).copied().unwrap_or(COUNTED)),
            _ => self.memo_sparse.get(&key).copied(),
        };
        let v = match found {
            None => return Err(Error::new(ErrorKind::MissingMemo(key))),
            Some(i) if i & SHARED != 0 && i != COUNTED => Value::Ref(Id(i & !SHARED)),
            Some(i) if i != COUNTED => cheap_clone(&self.kept[i as usize]),
            // Optimistic: the pickle does fetch from its memo after all.
            Some(_) if matches!(self.keep, Keep::None) => {
                if self.copy {
                    if !self.noted {
                        self.note_puts(read);
                    }
                    if let Some(v) = self.copy_of(key, read.map(|(data, _)| data)) {
                        // A global counts as a level, as when it was made.
                        return self.push(v);
                    }
                }
                if self.spot && self.share_live(key)? {
                    return Ok(());
                }
                self.rerun = true;
                return Err(Error::invalid("memo fetched: read again, keeping puts"));
            }
            // The scan found every GET the machine can reach, so a put it
            // did not keep is never fetched; were it, this is the error
            // rather than a wrong value.
            Some(_) => {
                return Err(Error::invalid(format!(
                    "memo key {key} was fetched but not kept (a reader bug)"
                )))
            }
        };
        self.push(v)
    }

    /// With `copy`: a copy of the object put at dense key `key`, if it is a
    /// str or a global (see [`Machine::copy_fetches`]).
    fn copy_of(&self, key: u64, data: Option<&[u8]>) -> Option<Value> {
        match *self.again.get(usize::try_from(key).ok()?)? {
            NOT_COPIED => None,
            g if g & COPIED_GLOBAL != 0 => {
                let (_, g) = self.globals.get((g & !COPIED_GLOBAL) as usize)?;
                Some(Value::Global(Box::new(g.clone())))
            }
            at => {
                let (data, at) = (data?, at as usize);
                let mut src = SliceRead::at(data, at + 1);
                decode::unicode(&mut src, *data.get(at)?)
                    .ok()
                    .map(Value::Str)
            }
        }
    }

    /// With `copy`: notes how to copy the object just put at `key` (by a
    /// put opcode from `at` to `end`), if a `GET` fetches it. In line: a
    /// pickle of many strings puts each. Until a `GET` needs the notes,
    /// only a global is kept (cloned: it cannot be found again in the
    /// input); [`Machine::note_puts`] finds the rest when they are needed.
    #[inline(always)]
    fn note_put(&mut self, key: u64, at: u64, end: u64) {
        if !self.noted {
            if let Some(Value::Global(_)) = self.stack.last() {
                self.keep_global(at);
            }
            return;
        }
        let again = match self.stack.last() {
            Some(Value::Str(_)) if self.str_at.1 == at => {
                // Put right after the string opcode that pushed it (or
                // after its other puts). Positions are below `COPIED_GLOBAL`
                // (see `copy_fetches`).
                self.str_at.1 = end;
                self.str_at.0 as u32
            }
            Some(Value::Global(_)) => {
                let again = self.keep_global(at);
                return self.note_at(key, again);
            }
            _ => NOT_COPIED,
        };
        let k = key as usize;
        if k == self.again.len() && k < self.dense && k < self.again.capacity() {
            self.again.push(again);
        } else if again != NOT_COPIED || k < self.again.len() {
            self.note_at(key, again);
        }
    }

    /// [`Machine::note_put`] of a global (on top of the stack), put by the
    /// opcode at `at`: cloned, and its note given.
    #[inline(never)]
    fn keep_global(&mut self, at: u64) -> u32 {
        match self.stack.last() {
            Some(Value::Global(g)) if self.globals.len() < COPIED_GLOBAL as usize => {
                if self.globals.len() == self.globals.capacity() {
                    // Doubling from one: a pickle of one object puts one
                    // class (and a small one's read holds little else).
                    self.globals.reserve_exact(self.globals.len().max(1));
                }
                self.globals.push((at as u32, (**g).clone()));
                COPIED_GLOBAL | (self.globals.len() - 1) as u32
            }
            _ => NOT_COPIED,
        }
    }

    /// [`Machine::note_put`] off its common path: a key put again, the
    /// table full or not yet made, or a key past the dense ones (left to
    /// lose the bet). The table is made at the first put of a str or a
    /// global (a pickle of numbers makes none), at about a put per 8 bytes
    /// of a pickle of short strings.
    #[inline(never)]
    fn note_at(&mut self, key: u64, again: u32) {
        match usize::try_from(key) {
            Ok(k) if k < self.again.len() => self.again[k] = again,
            // Keys past the table's end are not copied.
            _ if again == NOT_COPIED => {}
            Ok(k) if k < self.dense => {
                if self.again.capacity() == 0 {
                    self.again.reserve_exact(self.again_room.max(k + 1));
                }
                self.again.resize(k, NOT_COPIED);
                self.again.push(again);
            }
            _ => {}
        }
    }

    /// With `copy`, at the first `GET` that needs the notes: makes `again`
    /// as [`Machine::note_put`] would have made it put by put, from the
    /// input read so far (`read`: the input and the position after the
    /// `GET`), and keeps it from here on. Runs once per load, over bytes
    /// the machine has run already, so its opcodes split as the machine
    /// split them (see [`fetched_keys`]); a put's key is read as the
    /// machine read it, `MEMOIZE`'s counted as the machine counts keys.
    /// A str put right after its string opcode (or its other puts) is
    /// noted there; a global, by the clone `keep_global` made at its put.
    /// Where the scan does not end as the machine did (it cannot, on input
    /// the machine has run; but the input is never trusted), nothing is
    /// copied: the load loses its bet, which changes nothing but its speed.
    #[cold]
    #[inline(never)]
    fn note_puts(&mut self, read: Option<(&[u8], usize)>) {
        self.noted = true;
        let found = read.and_then(|(data, to)| {
            scan_puts(
                data,
                self.start,
                to,
                self.opts.limits.max_int_digits,
                &self.globals,
                self.again_room.max(self.dense),
            )
        });
        match found {
            Some(PutScan {
                again,
                dense,
                memo_len,
            }) if dense == self.dense && memo_len == self.memo_len => self.again = again,
            _ => {
                self.copy = false;
                self.again = Vec::new();
            }
        }
    }

    /// Runs opcodes up to `STOP`, returning its offset.
    pub(super) fn run<S: Source>(&mut self, src: &mut S) -> Result<u64> {
        loop {
            let at = src.pos();
            let op = src.byte().map_err(|e| e.at(at, None))?;
            match self.step(op, src) {
                Ok(true) => return Ok(at),
                Ok(false) => {
                    if !self.pending.is_empty() {
                        self.settle();
                    }
                }
                Err(e) => return Err(e.at(at, Some(op))),
            }
        }
    }

    fn decode_py2_str(&self, bytes: &[u8]) -> Result<Value> {
        Ok(match self.opts.strings {
            StringDecoding::Bytes => Value::Bytes(bytes.to_vec()),
            StringDecoding::Latin1 => Value::Str(latin1(bytes)),
            StringDecoding::Ascii => {
                if !bytes.is_ascii() {
                    let at = bytes.iter().position(|b| !b.is_ascii()).unwrap_or(0);
                    return Err(Error::invalid(format!(
                        "byte 0x{:02x} at position {at} of a Python 2 str is not ASCII; choose StringDecoding::Latin1 or ::Bytes",
                        bytes[at]
                    )));
                }
                Value::Str(PyStr::from(std::str::from_utf8(bytes).unwrap_or_default()))
            }
        })
    }

    /// Looks a global up: maps Python 2 names, checks it is allowed, and
    /// gives the value to push.
    fn find_global(&self, module: &str, name: &str) -> Result<Value> {
        let (module, name) = if self.proto < 3 && self.opts.fix_imports {
            compat::to_python3(module, name)
        } else {
            (module, name)
        };
        self.find_global_checked(module, name)
    }

    /// Checks a global (already under its Python 3 name) against the
    /// allow-list: known to plain data, registered, or inert mode.
    fn find_global_checked(&self, module: &str, name: &str) -> Result<Value> {
        if !self.inert {
            let plain_data = known_global(module, name).is_some();
            self.resolve.find_class(module, name, plain_data)?;
        }
        Ok(Value::global(module, name))
    }

    fn builtin_of(&self, callable: &Value) -> Option<Builtin> {
        match self.deref(callable) {
            Value::Global(g) => known_global(&g.module, &g.name).flatten(),
            _ => None,
        }
    }

    /// `callable(*args)` for REDUCE, INST and OBJ.
    fn call(&mut self, callable: Value, args: Value) -> Result<Value> {
        if !matches!(self.deref(&args), Value::Tuple(_)) {
            return Err(Error::invalid(format!(
                "expected an argument tuple, found {}",
                crate::text::a(self.deref(&args).type_name())
            )));
        }
        if let Some(Builtin::GetAttr) = self.builtin_of(&callable) {
            // Inert mode keeps the call as it is, with the very objects it
            // took; strict mode reads it as the nested global it names.
            if self.inert {
                return Ok(Value::Reduce(Box::new(Reduction::new(callable, args))));
            }
            if let Some((module, name)) = self.nested_global(&args) {
                // The dotted global is checked like any named one.
                return self.find_global_checked(&module, &name);
            }
            if !self.inert {
                return Err(Error::invalid(
                    "builtins.getattr is only understood on a global and a name (a nested class)",
                ));
            }
        } else if let Some(b) = self.builtin_of(&callable) {
            if let (Builtin::Set | Builtin::FrozenSet, Value::Tuple(a)) = (b, self.deref(&args)) {
                if let Some(Value::List(items) | Value::Tuple(items)) =
                    a.first().map(|v| self.deref(v))
                {
                    self.check_hashable(items, 1, "a set item")?;
                }
            }
            match self.call_builtin(b, &args) {
                Some(v) => return Ok(v),
                None if !self.inert => {
                    return Err(Error::invalid(format!(
                        "unexpected arguments for {:?}: {:?}",
                        self.shown(&callable),
                        self.shown(&args)
                    )))
                }
                None => {}
            }
        } else {
            // Only a global, or an object a pickle built (a bound method
            // from getattr, say), can be called; inert mode keeps those.
            let callable_ok = match self.deref(&callable) {
                Value::Global(_) => true,
                Value::Reduce(_) => self.inert,
                _ => false,
            };
            if !callable_ok {
                return Err(Error::invalid(format!(
                    "expected a global to call, found {}",
                    crate::text::a(self.deref(&callable).type_name())
                )));
            }
        }
        Ok(Value::Reduce(Box::new(Reduction::new(callable, args))))
    }

    /// `(global, "name")`, the arguments of `getattr` naming a nested class.
    fn nested_global(&self, args: &Value) -> Option<(String, String)> {
        let Value::Tuple(a) = self.deref(args) else {
            return None;
        };
        match a.as_slice() {
            [g, n] => match (self.deref(g), self.deref(n)) {
                (Value::Global(g), Value::Str(n)) => {
                    Some((g.module.clone(), format!("{}.{}", g.name, n.as_str()?)))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Strict reads of Python data (a [`Value`] or a [`Graph`]): refuses a
    /// dict key or set item CPython could not hash (`TypeError: unhashable
    /// type: 'list'` when it loads the pickle), which a `Value` could hold
    /// but no Python object can. Typed reads build Rust types, whose keys
    /// are what their types say; inert mode keeps the pickle as it is.
    #[inline(never)]
    fn check_hashable(&self, items: &[Value], step: usize, what: &'static str) -> Result<()> {
        if !self.opts.hashing || self.inert {
            return Ok(());
        }
        // Keys of one kind in a loop: a test each, the rest out of line.
        let mut i = 0;
        while i < items.len() {
            let k = &items[i];
            if !matches!(
                k,
                Value::Str(_) | Value::Int(_) | Value::Float(_) | Value::None | Value::Bool(_)
            ) {
                self.check_key(k, what)?;
            }
            i += step;
        }
        Ok(())
    }

    /// [`Machine::check_hashable`] of a key that is not a scalar.
    #[inline(never)]
    fn check_key(&self, k: &Value, what: &str) -> Result<()> {
        match super::unhashable(k, &self.objects) {
            None => Ok(()),
            Some(t) => Err(Error::invalid(format!(
                "unhashable type '{t}' as {what} (CPython refuses to load it)"
            ))),
        }
    }

    /// What the built-in constructors of plain data make of their arguments;
    /// `None` if the arguments are not of a form CPython writes.
    fn call_builtin(&self, b: Builtin, args: &Value) -> Option<Value> {
        if let Value::Seq(_) = args {
            return None;
        }
        let args = match self.deref(args) {
            Value::Tuple(a) => a,
            _ => return None,
        };
        if args_of_seq(args) {
            // Steps around an argument: keep the call as it is.
            return None;
        }
        let arg = |i: usize| args.get(i).map(|v| self.deref(v));
        let items = |v: &Value| -> Option<Vec<Value>> {
            match v {
                Value::List(items) | Value::Tuple(items) => {
                    Some(items.iter().map(cheap_clone).collect())
                }
                _ => None,
            }
        };
        match (b, args.len()) {
            (Builtin::Set, 0) => Some(Value::Set(vec![])),
            (Builtin::Set, 1) => items(arg(0)?).map(Value::Set),
            (Builtin::FrozenSet, 0) => Some(Value::FrozenSet(vec![])),
            (Builtin::FrozenSet, 1) => items(arg(0)?).map(Value::FrozenSet),
            (Builtin::Bytes, 0) => Some(Value::Bytes(vec![])),
            (Builtin::ByteArray, 0) => Some(Value::ByteArray(vec![])),
            (Builtin::ByteArray, 1) => match arg(0)? {
                Value::Bytes(b) => Some(Value::ByteArray(b.clone())),
                _ => None,
            },
            (Builtin::ByteArray, 2) | (Builtin::CodecsEncode, 2) => {
                let (Value::Str(s), Value::Str(enc)) = (arg(0)?, arg(1)?) else {
                    return None;
                };
                if !matches!(enc.as_str()?, "latin1" | "latin-1" | "iso-8859-1") {
                    return None;
                }
                let bytes = s
                    .code_points()
                    .map(|c| u8::try_from(c).ok())
                    .collect::<Option<Vec<u8>>>()?;
                Some(if b == Builtin::ByteArray {
                    Value::ByteArray(bytes)
                } else {
                    Value::Bytes(bytes)
                })
            }
            _ => None,
        }
    }

    /// CPython writes a reduction's `state_setter` as
    /// `setter(obj, state)` `REDUCE` `POP`: the call is made for its effect on
    /// `obj`. Its result, popped, is folded back into `obj` as its state and
    /// setter, so that nothing is lost and it is written back the same way.
    fn attach_state_setter(&mut self, mut popped: Value) -> Option<Value> {
        let Value::Reduce(call) = &mut popped else {
            return Some(popped);
        };
        let Value::Tuple(args) = &call.args else {
            return Some(popped);
        };
        let [Value::Ref(target), _] = args.as_slice() else {
            return Some(popped);
        };
        let target = *target;
        let fresh =
            call.state.is_none() && call.list_items.is_empty() && call.dict_items.is_empty();
        let Some(Value::Reduce(obj)) = self.objects.get(target.index()) else {
            return Some(popped);
        };
        if !fresh || obj.state.is_some() || obj.state_setter.is_some() {
            return Some(popped);
        }
        // Only the object's own slot right below, as CPython writes it.
        if self.inert {
            let below = self.stack.len().checked_sub(1).map(|i| &self.stack[i]);
            let own = matches!(below, Some(Value::Ref(id)) if id.0 & Id::BIRTH != 0 && id.index() == target.index());
            if !own {
                return Some(popped);
            }
        }
        let Value::Tuple(args) = &mut call.args else {
            return Some(popped);
        };
        let state = args.pop().unwrap_or_default();
        let setter = std::mem::take(&mut call.callable);
        if let Some(Value::Reduce(obj)) = self.objects.get_mut(target.index()) {
            obj.state = Some(state);
            obj.state_setter = Some(setter);
        }
        None
    }

    /// `NEWOBJ` needs a class. Only the `builtins` module is known well
    /// enough to tell a function (`len`) from a class (`int`); other globals
    /// are taken on trust, and reduced objects only in inert mode.
    fn check_class(&self, cls: &Value, op: &str) -> Result<()> {
        let ok = match self.deref(cls) {
            Value::Global(g) if g.module == "builtins" => builtin_is_class(&g.name),
            Value::Global(_) => true,
            Value::Reduce(_) => self.inert,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "{op} expected a class, found {:?}",
                self.shown(cls)
            )))
        }
    }

    /// `persistent_load(pid)`: the hook gets the id as a graph of its own;
    /// inert mode without a hook keeps it as data.
    fn persistent(&mut self, pid: Value, line: bool) -> Result<Value> {
        if self.opts.persistent_load.is_none() {
            return if self.inert {
                Ok(Value::PersistentId(Box::new(Persistent { pid, line })))
            } else {
                Err(Error::new(ErrorKind::NoPersistentLoad))
            };
        }
        let graph = self.subgraph(pid)?;
        match self.opts.persistent_load.as_mut() {
            Some(hook) => hook(graph),
            None => Err(Error::new(ErrorKind::NoPersistentLoad)),
        }
    }

    /// A self-contained copy of `root` and the objects it reaches: memo
    /// references resolved, what it holds twice still shared. The copy is
    /// bounded by `max_tree_nodes`.
    fn subgraph(&self, root: Value) -> Result<Graph> {
        let mut map: HashMap<usize, u32> = HashMap::new();
        let mut order: Vec<usize> = Vec::new();
        let mut nodes = 0usize;
        let mut todo: Vec<&Value> = vec![&root];
        let budget = self.opts.limits.max_tree_nodes;
        while let Some(v) = todo.pop() {
            nodes += v.copy_weight();
            if nodes > budget {
                return Err(Error::new(ErrorKind::Limit {
                    limit: "max_tree_nodes",
                    max: budget as u64,
                }));
            }
            if let Value::Ref(id) = v {
                let i = id.index();
                if i >= self.objects.len() {
                    return Err(Error::new(ErrorKind::DanglingRef(id.0)));
                }
                if let std::collections::hash_map::Entry::Vacant(e) = map.entry(i) {
                    e.insert(order.len() as u32);
                    order.push(i);
                    todo.push(&self.objects[i]);
                }
                continue;
            }
            v.for_each_child(|c| todo.push(c));
        }
        let renumber = |mut v: Value| {
            let mut stack: Vec<&mut Value> = vec![&mut v];
            while let Some(x) = stack.pop() {
                if let Value::Ref(id) = x {
                    *id = Id(map.get(&id.index()).copied().unwrap_or(0));
                    continue;
                }
                x.for_each_child_mut(|c| stack.push(c));
            }
            v
        };
        let objects: Vec<Value> = order
            .iter()
            .map(|&i| renumber(self.objects[i].clone()))
            .collect();
        compact(renumber(root), objects, self.opts.limits.max_depth)
    }

    /// `APPEND`/`APPENDS` (`pairs` false) and `SETITEM`/`SETITEMS` (true):
    /// moves the stack's items from `from` on into the list or dict just
    /// below them, without collecting them first.
    fn extend_container(&mut self, from: usize, pairs: bool) -> Result<()> {
        if from <= self.fence() || from > self.stack.len() {
            return Err(underflow());
        }
        if pairs && !(self.stack.len() - from).is_multiple_of(2) {
            return Err(Error::invalid("odd number of items for SETITEMS"));
        }
        if self.inert && !self.attached(from - 1, self.stack.len() - from == 1 + pairs as usize) {
            return self.detached_items(from, pairs);
        }
        if pairs {
            self.check_hashable(&self.stack[from..], 2, "a dict key")?;
        }
        // The container leaves its slot while the items move in, so that
        // they move straight off the stack (a drain), with no placeholder
        // left behind each one.
        let mut holder = std::mem::take(&mut self.stack[from - 1]);
        let slot = match &mut holder {
            Value::Seq(s) => &mut s.value,
            v => v,
        };
        let target = match *slot {
            Value::Ref(id) => &mut self.objects[id.index()],
            ref mut v => v,
        };
        let moved = match (target, pairs) {
            (Value::List(list), false) if list.capacity() == 0 => {
                // A list's first items (`EMPTY_LIST`, then `APPENDS`): one
                // allocation of their number, filled by one copy.
                *list = self.stack.split_off(from);
                Ok(())
            }
            (Value::List(list), false) if self.stack.len() - from >= BULK_MOVE => {
                // A later batch of many items (`APPENDS` writes 1000 at a
                // time): moved in two copies of the whole batch, where a
                // drain moves them one by one (20 instructions each).
                list.append(&mut self.stack.split_off(from));
                Ok(())
            }
            (target, pairs) => match (target, pairs, self.stack.drain(from..)) {
                (Value::List(list), false, items) => {
                    list.extend(items);
                    Ok(())
                }
                (Value::Reduce(r), false, items) => {
                    r.list_items.extend(items);
                    Ok(())
                }
                (Value::Dict(d), true, items) => {
                    d.extend(Pairs(items));
                    Ok(())
                }
                (Value::Reduce(r), true, items) => {
                    r.dict_items.extend(Pairs(items));
                    Ok(())
                }
                (other, false, _) => Err(format!(
                    "expected a list to append to, found {}",
                    crate::text::a(other.type_name())
                )),
                (other, true, _) => Err(format!(
                    "expected a dict to set items in, found {}",
                    crate::text::a(other.type_name())
                )),
            },
        };
        self.stack[from - 1] = holder;
        self.shrunk();
        moved.map_err(Error::invalid)
    }

    /// Inert mode: `APPENDS`/`SETITEMS` (and the single forms) on an object
    /// built earlier, kept as a [`Step`] after the slot.
    fn detached_items(&mut self, from: usize, pairs: bool) -> Result<()> {
        let mut items = self.stack.split_off(from);
        self.shrunk();
        if items.is_empty() {
            // `MARK` `APPENDS` with nothing between changes nothing (but
            // fails on what cannot take items, as in CPython).
            let what = if pairs { Change::Pairs } else { Change::Items };
            return self.check_target(from - 1, what);
        }
        let target = self.detach(from - 1, if pairs { Change::Pairs } else { Change::Items })?;
        let step = if pairs {
            let mut kv = Vec::with_capacity(items.len() / 2);
            let mut it = items.drain(..);
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                kv.push((k, v));
            }
            Step::SetItems { target, items: kv }
        } else {
            Step::Append { target, items }
        };
        self.record(step);
        Ok(())
    }

    /// Runs one opcode; `Ok(true)` at `STOP`. In line in `run`'s loop: a
    /// call per opcode paid a prologue saving six registers and a frame of
    /// some 600 bytes.
    #[inline(always)]
    fn step<S: Source>(&mut self, op: u8, src: &mut S) -> Result<bool> {
        match op {
            // Stack and mark manipulation.
            MARK => {
                if self.stack.len() + self.marks.len() >= self.opts.limits.max_stack {
                    return Err(Error::new(ErrorKind::Limit {
                        limit: "max_stack",
                        max: self.opts.limits.max_stack as u64,
                    }));
                }
                self.marks.push(self.stack.len());
            }
            STOP => return Ok(true),
            POP => {
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    let popped = self.pop()?;
                    if let Some(popped) = self.attach_state_setter(popped) {
                        if self.inert {
                            self.discard(popped);
                        }
                    }
                }
            }
            POP_MARK => {
                let items = self.pop_mark()?;
                if self.inert {
                    for item in items {
                        self.discard(item);
                    }
                }
            }
            DUP => {
                self.seq += 1;
                let v = self.share_top()?;
                self.push(v)?;
            }

            // Framing and protocol.
            PROTO => self.proto = decode::proto(src)?,
            FRAME => {
                let len = decode::uint8(src)?;
                src.frame(len)?;
            }

            // Atoms.
            NONE => self.push_atom(Value::None)?,
            NEWTRUE => self.push_atom(Value::Bool(true))?,
            NEWFALSE => self.push_atom(Value::Bool(false))?,
            INT => {
                let v = match decode::int_line(src, self.opts.limits.max_int_digits)? {
                    decode::IntLine::Bool(b) => Value::Bool(b),
                    decode::IntLine::Int(i) => Value::int(i),
                };
                self.push(v)?;
            }
            BININT => {
                let i = decode::int4(src)?;
                self.push_atom(Value::Int(i as i64))?
            }
            BININT1 => {
                let b = decode::uint1(src)?;
                self.push_atom(Value::Int(b as i64))?
            }
            BININT2 => {
                let i = decode::uint2(src)?;
                self.push_atom(Value::Int(i as i64))?
            }
            LONG => {
                let v = Value::int(decode::long_line(src, self.opts.limits.max_int_digits)?);
                self.push(v)?
            }
            LONG1 | LONG4 => {
                let bytes = decode::long_bytes(src, op)?;
                match decode::small_long(bytes) {
                    Some(i) => self.push_atom(Value::Int(i))?,
                    None => self.push(Value::int(BigInt::from_signed_bytes_le(bytes)))?,
                }
            }
            FLOAT => {
                let x = decode::float_line(src)?;
                self.push(Value::Float(x))?
            }
            BINFLOAT => {
                let x = decode::float8(src)?;
                self.push_atom(Value::Float(x))?
            }

            // Strings and bytes.
            STRING | BINSTRING | SHORT_BINSTRING => {
                let bytes = decode::py2_string(src, op)?;
                let v = self.decode_py2_str(&bytes)?;
                self.push(v)?
            }
            UNICODE | SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 => {
                let at = src.pos() - 1;
                let s = decode::unicode(src, op)?;
                if self.noted {
                    self.str_at = (at, src.pos());
                }
                self.push_atom(Value::Str(s))?
            }
            SHORT_BINBYTES | BINBYTES | BINBYTES8 | BYTEARRAY8 => {
                let bytes = decode::bytes(src, op)?.to_vec();
                self.push(if op == BYTEARRAY8 {
                    Value::ByteArray(bytes)
                } else {
                    Value::Bytes(bytes)
                })?
            }

            // Containers.
            EMPTY_TUPLE => self.push_container(Value::Tuple(vec![]))?,
            EMPTY_LIST => self.push_container(Value::List(vec![]))?,
            EMPTY_DICT => self.push_container(Value::Dict(vec![]))?,
            EMPTY_SET => self.push_container(Value::Set(vec![]))?,
            TUPLE => {
                let mut items = self.pop_mark()?;
                let before = self.hoist(items.first_mut());
                self.push_built_container(Value::Tuple(items), before)?
            }
            TUPLE1 | TUPLE2 | TUPLE3 => {
                let n = (op - TUPLE1 + 1) as usize;
                if self.stack.len() < self.fence() + n {
                    return Err(underflow());
                }
                let mut items = self.stack.split_off(self.stack.len() - n);
                self.shrunk();
                let before = self.hoist(items.first_mut());
                self.push_built_container(Value::Tuple(items), before)?
            }
            LIST => {
                let mut items = self.pop_mark()?;
                let before = self.hoist(items.first_mut());
                self.push_built_container(Value::List(items), before)?
            }
            DICT => {
                let mut items = self.pop_mark()?;
                let before = self.hoist(items.first_mut());
                if items.len() % 2 != 0 {
                    return Err(Error::invalid("odd number of items for DICT"));
                }
                self.check_hashable(&items, 2, "a dict key")?;
                let mut pairs = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                self.push_built_container(Value::Dict(pairs), before)?
            }
            FROZENSET => {
                let mut items = self.pop_mark()?;
                self.check_hashable(&items, 1, "a frozenset item")?;
                let before = self.hoist(items.first_mut());
                self.push_built_container(Value::FrozenSet(items), before)?
            }
            APPEND => {
                let from = self.stack.len().checked_sub(1).ok_or_else(underflow)?;
                self.extend_container(from, false)?
            }
            APPENDS => {
                let mark = self
                    .marks
                    .pop()
                    .ok_or_else(|| Error::new(ErrorKind::MissingMark))?;
                self.extend_container(mark, false)?
            }
            SETITEM => {
                let from = self.stack.len().checked_sub(2).ok_or_else(underflow)?;
                self.extend_container(from, true)?
            }
            SETITEMS => {
                let mark = self
                    .marks
                    .pop()
                    .ok_or_else(|| Error::new(ErrorKind::MissingMark))?;
                self.extend_container(mark, true)?
            }
            ADDITEMS => {
                let items = self.pop_mark()?;
                self.check_hashable(&items, 1, "a set item")?;
                let i = self.top_index()?;
                if self.inert && !items.is_empty() && !self.attached(i, false) {
                    let target = self.detach(i, Change::Set)?;
                    self.record(Step::AddItems { target, items });
                    return Ok(false);
                }
                match self.target_mut(i) {
                    Value::Set(s) => s.extend(items),
                    other => {
                        return Err(Error::invalid(format!(
                            "expected a set to add items to, found {}",
                            crate::text::a(other.type_name())
                        )))
                    }
                }
            }

            // Memo.
            PUT | BINPUT | LONG_BINPUT => {
                let at = src.pos() - 1;
                let key = decode::memo_key(src, op, self.opts.limits.max_int_digits)?;
                self.memo_put(key)?;
                if self.copy {
                    self.note_put(key, at, src.pos());
                }
            }
            MEMOIZE => {
                let key = self.memo_len as u64;
                self.memo_put(key)?;
                if self.copy {
                    let end = src.pos();
                    self.note_put(key, end - 1, end);
                }
            }
            GET | BINGET | LONG_BINGET => {
                let key = decode::memo_key(src, op, self.opts.limits.max_int_digits)?;
                self.memo_get(key, src.slice())?
            }

            // Globals and objects.
            GLOBAL => {
                let module = decode::name_line(src, "GLOBAL module name")?;
                let name = decode::name_line(src, "GLOBAL name")?;
                let mut v = self.find_global(&module, &name)?;
                if self.inert {
                    if let Value::Global(g) = &mut v {
                        g.spelling = Spelling::Line;
                    }
                }
                self.push(v)?
            }
            STACK_GLOBAL => {
                let name_v = self.pop()?;
                let mut module_v = self.pop()?;
                let before = self.hoist(Some(&mut module_v));
                let (Value::Str(module), Value::Str(name)) =
                    (self.deref(&module_v), self.deref(&name_v))
                else {
                    return Err(Error::invalid("STACK_GLOBAL requires str module and name"));
                };
                // Each global keeps its own copy of the names: bounded by the
                // input, as the inspector's report is (a long name fetched
                // from the memo a million times would otherwise cost far
                // more memory than the pickle's length justifies).
                let copied = (module.len() + name.len()) as u64;
                let (module, name) = (
                    module.to_string_lossy().into_owned(),
                    name.to_string_lossy().into_owned(),
                );
                self.name_bytes += copied;
                let budget = NAME_BYTES_PER_INPUT_BYTE * src.pos() + (1 << 20);
                if self.name_bytes > budget {
                    return Err(Error::new(ErrorKind::Limit {
                        limit: "global names",
                        max: budget,
                    })
                    .with_detail(
                        "STACK_GLOBAL names copied from the memo add up to more than 32 bytes per byte of input"
                            .into(),
                    ));
                }
                let mut v = self.find_global(&module, &name)?;
                if self.inert {
                    if let Value::Global(g) = &mut v {
                        g.spelling = Spelling::Stack(Box::new((module_v, name_v)));
                    }
                }
                self.push_built(v, before)?
            }
            EXT1 | EXT2 | EXT4 => {
                let code = decode::ext_code(src, op)?;
                let g = self
                    .opts
                    .extensions
                    .get(&code)
                    .cloned()
                    .or_else(|| self.resolve.extension(code))
                    .ok_or_else(|| Error::new(ErrorKind::UnknownExtension(code)))?;
                let v = self.find_global(&g.module, &g.name)?;
                self.push(v)?
            }
            REDUCE => {
                let args = self.pop()?;
                let mut callable = self.pop()?;
                let before = self.hoist(Some(&mut callable));
                let v = self.call(callable, args)?;
                self.push_built(v, before)?
            }
            INST => {
                let module = decode::name_line(src, "INST module name")?;
                let name = decode::name_line(src, "INST name")?;
                let mut args = self.pop_mark()?;
                let before = self.hoist(args.first_mut());
                let cls = self.find_global(&module, &name)?;
                let v = self.call(cls, Value::Tuple(args))?;
                self.push_built(v, before)?
            }
            OBJ => {
                let mut args = self.pop_mark()?;
                if args.is_empty() {
                    return Err(underflow());
                }
                let mut cls = args.remove(0);
                let before = self.hoist(Some(&mut cls));
                let v = self.call(cls, Value::Tuple(args))?;
                self.push_built(v, before)?
            }
            NEWOBJ => {
                let args = self.pop()?;
                let mut cls = self.pop()?;
                let before = self.hoist(Some(&mut cls));
                self.check_class(&cls, "NEWOBJ")?;
                if matches!(args, Value::Seq(_)) {
                    return Err(Error::invalid(
                        "inert mode cannot keep steps taken between NEWOBJ's arguments and NEWOBJ",
                    ));
                }
                let Value::Tuple(items) = self.deref(&args) else {
                    return Err(Error::invalid(format!(
                        "NEWOBJ expected an argument tuple, found {}",
                        crate::text::a(self.deref(&args).type_name())
                    )));
                };
                let mut all = Vec::with_capacity(items.len() + 1);
                all.push(cls);
                all.extend(items.iter().map(cheap_clone));
                let v = self.call(Value::global("copyreg", "__newobj__"), Value::Tuple(all))?;
                self.push_built(v, before)?
            }
            NEWOBJ_EX => {
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let mut cls = self.pop()?;
                let before = self.hoist(Some(&mut cls));
                self.check_class(&cls, "NEWOBJ_EX")?;
                if !matches!(self.deref(&args), Value::Tuple(_)) {
                    return Err(Error::invalid("NEWOBJ_EX args argument must be a tuple"));
                }
                if !matches!(self.deref(&kwargs), Value::Dict(_)) {
                    return Err(Error::invalid("NEWOBJ_EX kwargs argument must be a dict"));
                }
                let v = self.call(
                    Value::global("copyreg", "__newobj_ex__"),
                    Value::Tuple(vec![cls, args, kwargs]),
                )?;
                self.push_built(v, before)?
            }
            BUILD => {
                let state = self.pop()?;
                let i = self.top_index()?;
                if self.inert && !self.build_attached(i) {
                    let target = self.detach(i, Change::State)?;
                    self.record(Step::Build { target, state });
                    return Ok(false);
                }
                match self.target_mut(i) {
                    Value::Reduce(r) if r.state.is_none() => r.state = Some(state),
                    Value::Reduce(_) => {
                        return Err(Error::invalid(
                            "BUILD applied twice to one object, which a Value holds one state for: read it in inert mode, which keeps the second as a step",
                        ))
                    }
                    other => {
                        return Err(Error::invalid(format!(
                            "expected an object to BUILD, found {}",
                            crate::text::a(other.type_name())
                        )))
                    }
                }
            }
            PERSID => {
                let pid = Value::str(decode::persid_line(src)?);
                let v = self.persistent(pid, true)?;
                self.push(v)?
            }
            BINPERSID => {
                let mut pid = self.pop()?;
                let before = self.hoist(Some(&mut pid));
                let v = self.persistent(pid, false)?;
                self.push_built(v, before)?
            }

            // Out-of-band buffers.
            NEXT_BUFFER => {
                let data = self
                    .opts
                    .buffers
                    .pop_front()
                    .ok_or_else(|| Error::new(ErrorKind::NoBuffer))?;
                self.push(Value::Buffer(Box::new(PickleBuffer {
                    data,
                    readonly: false,
                })))?
            }
            READONLY_BUFFER => {
                let i = self.top_index()?;
                match self.target_mut(i) {
                    Value::Buffer(b) => b.readonly = true,
                    Value::Bytes(_) => {}
                    other => {
                        return Err(Error::invalid(format!(
                            "expected a buffer for READONLY_BUFFER, found {}",
                            crate::text::a(other.type_name())
                        )))
                    }
                }
            }
            other => return Err(Error::new(ErrorKind::UnknownOpcode(other))),
        }
        Ok(false)
    }

    /// Inert mode: whether `BUILD` on stack slot `index` is the state of the
    /// object CPython's pickler just built (kept in the object).
    fn build_attached(&self, index: usize) -> bool {
        let slot = &self.stack[index];
        let inner = match slot {
            Value::Seq(s) if !s.after.is_empty() => return false,
            Value::Seq(s) => &s.value,
            v => v,
        };
        if matches!(inner, Value::Ref(id) if id.0 & Id::BIRTH == 0) {
            return false;
        }
        matches!(self.deref(slot), Value::Reduce(r) if r.state.is_none())
    }

    /// Ends a load: takes the root, keeps shared the objects reached twice or
    /// more, moves the others inline, and drops the unreachable ones. In
    /// inert mode, values left under the root were built for their effect:
    /// they become steps before it. (By `&mut`: a machine moved into the
    /// call was copied first, 480 bytes on every read.)
    pub(super) fn finish(&mut self) -> Result<Graph> {
        let mut root = self.pop()?;
        if self.inert && (!self.stack.is_empty() || !self.pending.is_empty()) {
            let after = std::mem::take(&mut self.pending);
            // Values left under the root: thrown away, in order, before it.
            self.marks.clear();
            let below = std::mem::take(&mut self.stack);
            below.into_iter().for_each(|v| self.discard(v));
            let left = std::mem::take(&mut self.pending);
            let mut seq = match &mut root {
                Value::Seq(s) => std::mem::take(s),
                v => Box::new(Seq {
                    before: Vec::new(),
                    value: std::mem::take(v),
                    after: Vec::new(),
                }),
            };
            seq.before.splice(0..0, left);
            seq.after.extend(after);
            root = Value::Seq(seq);
        }
        let max_depth = self.opts.limits.max_depth;
        if self.objects.is_empty()
            && !self.inert
            && self.opts.persistent_load.is_none()
            && self.containers <= max_depth
        {
            // Nothing shared, and too few containers to nest deeper than
            // `max_depth` (every level of the tree is one of them): the
            // root is the tree, with nothing to count, move or check.
            return Ok(Graph::new(root));
        }
        let objects = std::mem::take(&mut self.objects);
        // The machine's tables are done with: freed, or handed on to the
        // next load, before the compaction allocates, rather than with the
        // machine after it (a pickle of deep sharing, 60 nested levels,
        // held as much again in them).
        self.free_tables();
        if self.births.is_sorted() {
            self.give_tables();
            return compact(root, objects, max_depth);
        }
        // Shared on the spot out of order: numbered as a reader keeping
        // every fetched put numbers them, by put.
        let mut order: Vec<usize> = (0..objects.len()).collect();
        order.sort_unstable_by_key(|&i| self.births[i]);
        self.give_tables();
        compact_in_order(root, objects, max_depth, Some(&order))
    }

    /// Frees the memo's other tables and the notes (see
    /// [`Machine::finish`]).
    fn free_tables(&mut self) {
        self.memo_sparse = HashMap::new();
        self.kept = Vec::new();
        self.again = Vec::new();
        self.globals = Vec::new();
    }

    /// Hands the stack, the marks, the memo, the notes of puts and their
    /// births to the next machine on this thread, emptied.
    fn give_tables(&mut self) {
        Tables {
            stack: std::mem::take(&mut self.stack),
            marks: std::mem::take(&mut self.marks),
            live: std::mem::take(&mut self.live),
            memo: std::mem::take(&mut self.memo),
            births: std::mem::take(&mut self.births),
        }
        .give();
    }
}

impl Drop for Machine<'_, '_> {
    fn drop(&mut self) {
        self.give_tables();
    }
}

/// The machine's tables that grow with the pickle's depth and its puts,
/// kept empty between loads, one set per thread: the next load on the
/// thread starts with their room. A read of a pickle 60 lists deep grew
/// its stack five times, the last two past glibc's small-block caches,
/// and each such block sent the allocator's cached small blocks back to
/// its bins, so that the read's 60 small lists were each allocated the
/// slow way: 10% of the read's instructions. A table of more than
/// [`Tables::KEEP`] bytes is freed as before, so a thread keeps at most
/// 80 KiB between loads.
#[derive(Default)]
struct Tables {
    stack: Vec<Value>,
    marks: Vec<usize>,
    live: Vec<Live>,
    memo: Vec<u32>,
    births: Vec<u64>,
}

thread_local! {
    static TABLES: Cell<Tables> = const {
        Cell::new(Tables {
            stack: Vec::new(),
            marks: Vec::new(),
            live: Vec::new(),
            memo: Vec::new(),
            births: Vec::new(),
        })
    };
}

impl Tables {
    /// The most room, in bytes, a table keeps between loads.
    const KEEP: usize = 16 << 10;

    /// This thread's tables (empty), or new ones: a load within a load
    /// (a constructor that reads a pickle) finds them taken.
    fn take() -> Tables {
        TABLES.try_with(Cell::take).unwrap_or_default()
    }

    /// Empties the tables and keeps them for the next load on this thread.
    fn give(mut self) {
        fn keep<T>(v: &mut Vec<T>) {
            if v.capacity() * std::mem::size_of::<T>() > Tables::KEEP {
                *v = Vec::new();
            } else {
                v.clear();
            }
        }
        if self.stack.capacity()
            + self.marks.capacity()
            + self.live.capacity()
            + self.memo.capacity()
            + self.births.capacity()
            == 0
        {
            // Handed back already (by `finish`): keep what the thread has.
            return;
        }
        keep(&mut self.stack);
        keep(&mut self.marks);
        keep(&mut self.live);
        keep(&mut self.memo);
        keep(&mut self.births);
        // During the thread's teardown there is nowhere to keep them.
        let _ = TABLES.try_with(|t| t.set(self));
    }
}

/// How many levels of nesting a value pushed on the stack can add to the
/// tree: one for a container, two for a reduced object (its argument tuple
/// may be one the machine built without pushing it: `NEWOBJ`'s, `INST`'s),
/// none for an atom or a reference (the object it names was counted when
/// it was pushed).
#[inline]
fn levels(v: &Value) -> usize {
    match v {
        Value::Reduce(_) => 2,
        Value::Tuple(_)
        | Value::List(_)
        | Value::Dict(_)
        | Value::Set(_)
        | Value::FrozenSet(_)
        | Value::PersistentId(_)
        | Value::Global(_)
        | Value::Seq(_) => 1,
        _ => 0,
    }
}

/// Which memo puts the machine keeps (shares, so that a `GET` finds the
/// object); the others are only counted.
pub(super) enum Keep {
    /// Every put: a stream, which cannot be read twice, and inert mode.
    All,
    /// None, on the bet that nothing is fetched (most data pickles: a
    /// pickler memoizes every string and tuple, but fetches only what it
    /// meets twice). The first `GET` loses the bet and sets
    /// [`Machine::rerun`].
    None,
    /// The puts to keys that some `GET` fetches, found by [`fetched_keys`].
    Fetched(Fetched),
}

/// A memo key put but fetched by no `GET`: only counted, for `max_memo`
/// and for `MEMOIZE`'s next key.
const COUNTED: u32 = u32::MAX;
/// In the memo (but for [`COUNTED`]): the entry is the id of a shared
/// object in the bits below, not a place in `kept`. Only the puts a `GET`
/// shares on the spot are kept so; places in `kept` stay below it.
const SHARED: u32 = 1 << 31;

/// A put under [`Keep::None`] whose object was on top of the stack.
#[derive(Clone, Copy)]
struct Live {
    key: u32,
    /// The stack slot the object was put from.
    slot: u32,
    /// [`Machine::seq`] at the put.
    birth: u32,
}

/// How many of the latest puts in `live` a `GET` looks through when a
/// bisection (of keys not put in rising order) does not find its key.
const LIVE_SEARCH: usize = 32;

/// The memo keys that a pickle's `GET`, `BINGET` and `LONG_BINGET` fetch.
#[derive(Default)]
pub(super) struct Fetched {
    /// One bit per key below [`Fetched::DENSE`].
    dense: Vec<u64>,
    sparse: std::collections::HashSet<u64>,
}

impl Fetched {
    /// Keys below this are bits (at most 128 KiB of them); above, a set.
    const DENSE: u64 = 1 << 20;

    fn insert(&mut self, key: u64) {
        if key < Self::DENSE {
            let word = (key / 64) as usize;
            if word >= self.dense.len() {
                self.dense.resize(word + 1, 0);
            }
            self.dense[word] |= 1 << (key % 64);
        } else {
            self.sparse.insert(key);
        }
    }

    #[inline]
    fn contains(&self, key: u64) -> bool {
        if key < Self::DENSE {
            self.dense
                .get((key / 64) as usize)
                .is_some_and(|w| w & (1 << (key % 64)) != 0)
        } else {
            self.sparse.contains(&key)
        }
    }
}

/// How [`fetched_keys`] skips each opcode's argument: a fixed size (0 to
/// 8 bytes), or one of the kinds below it.
const SKIP: [u8; 256] = {
    let mut t = [END; 256];
    let none = [
        MARK,
        POP,
        POP_MARK,
        DUP,
        NONE,
        NEWTRUE,
        NEWFALSE,
        EMPTY_TUPLE,
        EMPTY_LIST,
        EMPTY_DICT,
        EMPTY_SET,
        TUPLE,
        TUPLE1,
        TUPLE2,
        TUPLE3,
        LIST,
        DICT,
        FROZENSET,
        APPEND,
        APPENDS,
        SETITEM,
        SETITEMS,
        ADDITEMS,
        MEMOIZE,
        STACK_GLOBAL,
        REDUCE,
        OBJ,
        NEWOBJ,
        NEWOBJ_EX,
        BUILD,
        BINPERSID,
        NEXT_BUFFER,
        READONLY_BUFFER,
    ];
    let mut i = 0;
    while i < none.len() {
        t[none[i] as usize] = 0;
        i += 1;
    }
    let sized: &[(u8, u8)] = &[
        (PROTO, 1),
        (BININT1, 1),
        (EXT1, 1),
        (BINPUT, 1),
        (BININT2, 2),
        (EXT2, 2),
        (BININT, 4),
        (EXT4, 4),
        (LONG_BINPUT, 4),
        (BINFLOAT, 8),
        (FRAME, 8),
        (SHORT_BINSTRING, LEN1),
        (SHORT_BINUNICODE, LEN1),
        (SHORT_BINBYTES, LEN1),
        (LONG1, LEN1),
        (BINSTRING, LEN4_SIGNED),
        (LONG4, LEN4_SIGNED),
        (BINUNICODE, LEN4),
        (BINBYTES, LEN4),
        (BINUNICODE8, LEN8),
        (BINBYTES8, LEN8),
        (BYTEARRAY8, LEN8),
        (INT, LINE),
        (LONG, LINE),
        (FLOAT, LINE),
        (STRING, LINE),
        (UNICODE, LINE),
        (PERSID, LINE),
        (GLOBAL, TWO_LINES),
        (INST, TWO_LINES),
        (PUT, KEY_LINE),
        (GET, KEY_LINE),
        (BINGET, KEY1),
        (LONG_BINGET, KEY4),
        (STOP, END),
    ];
    let mut i = 0;
    while i < sized.len() {
        t[sized[i].0 as usize] = sized[i].1;
        i += 1;
    }
    t
};
const LEN1: u8 = 9;
const LEN4_SIGNED: u8 = 10;
const LEN4: u8 = 11;
const LEN8: u8 = 12;
const LINE: u8 = 13;
const TWO_LINES: u8 = 14;
const KEY_LINE: u8 = 15;
const KEY1: u8 = 16;
const KEY4: u8 = 17;
/// `STOP`, or an opcode the machine fails on.
const END: u8 = 255;

/// Scans a pickle from `pos` to its `STOP` for the memo keys its `GET`s
/// fetch, skipping every other opcode's argument, so that the machine
/// shares only what is fetched again. Each argument is measured as the
/// machine's decoders read it (`decode.rs`: a length byte, a signed or
/// unsigned length, a line), so the scan splits the bytes into opcodes
/// exactly as the machine does; where it cannot go on (an unknown opcode,
/// a negative length, the end of the input) the machine fails at the same
/// place, and every `GET` it could run has been seen.
pub(super) fn fetched_keys(data: &[u8], mut pos: usize, max_digits: usize) -> Fetched {
    let mut keys = Fetched::default();
    while let Some((next, key)) = op_end(data, pos, max_digits) {
        if let Some(key) = key {
            if matches!(data.get(pos), Some(&(GET | BINGET | LONG_BINGET))) {
                keys.insert(key);
            }
        }
        pos = next;
    }
    keys
}

/// Where the opcode at `pos` ends, as the machine's decoders measure its
/// argument (see [`fetched_keys`]), and the key of a `GET`, `BINGET`,
/// `LONG_BINGET` or `PUT` (whose key is a line to decode). `None` at
/// `STOP` or where the machine would fail.
fn op_end(data: &[u8], pos: usize, max_digits: usize) -> Option<(usize, Option<u64>)> {
    let le = |at: usize, n: usize| -> Option<u64> {
        let b = data.get(at..at.checked_add(n)?)?;
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    };
    let line_end = |at: usize| -> Option<usize> {
        let i = data.get(at..)?.iter().position(|&b| b == b'\n')?;
        Some(at + i + 1)
    };
    let op = *data.get(pos)?;
    let at = pos + 1;
    let kind = SKIP[op as usize];
    let mut key = None;
    let (at, len) = match kind {
        0..=8 => (at, kind as u64),
        LEN1 => (at + 1, le(at, 1)?),
        LEN4_SIGNED => (at + 4, u64::try_from(le(at, 4)? as u32 as i32).ok()?),
        LEN4 => (at + 4, le(at, 4)?),
        LEN8 => (at + 8, le(at, 8)?),
        LINE => (line_end(at)?, 0),
        TWO_LINES => (line_end(line_end(at)?)?, 0),
        KEY1 | KEY4 => {
            let n = if kind == KEY1 { 1 } else { 4 };
            key = Some(le(at, n)?);
            (at + n, 0)
        }
        KEY_LINE => {
            let mut src = SliceRead::at(data, at);
            key = Some(decode::memo_key(&mut src, op, max_digits).ok()?);
            (src.position(), 0)
        }
        _ => return None,
    };
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    // Past the end: the machine fails on this opcode's argument.
    (end <= data.len()).then_some((end, key))
}

/// What [`scan_puts`] found: the notes of [`Machine::again`], and the
/// machine's `dense` and `memo_len` as the puts scanned leave them.
struct PutScan {
    again: Vec<u32>,
    dense: usize,
    memo_len: usize,
}

/// The notes [`Machine::note_put`] makes put by put, made at once from the
/// pickle's opcodes from `start` to `to` (which the machine has run), for
/// [`Machine::note_puts`]. `globals` are the globals the machine cloned at
/// their puts, each with its put's position; `room`, the notes' room to
/// make. `None` where the opcodes do not end at `to`, or a global's put is
/// not met where it was made.
fn scan_puts(
    data: &[u8],
    start: usize,
    to: usize,
    max_digits: usize,
    globals: &[(u32, crate::value::Global)],
    room: usize,
) -> Option<PutScan> {
    let data = data.get(..to)?;
    let mut pos = start;
    let (mut dense, mut memo_len) = (0usize, 0usize);
    // Keys put past the dense ones, as the machine's `memo_sparse` holds
    // them (made only for one: a pickler's keys are dense).
    let mut sparse: Option<std::collections::HashSet<u64>> = None;
    let mut again: Vec<u32> = Vec::new();
    let mut str_at = (usize::MAX, usize::MAX);
    let mut next_global = 0usize;
    while let Some(&op) = data.get(pos) {
        // The opcodes of most pickles measured here, the others by `op_end`.
        let (end, key) = match SKIP[op as usize] {
            kind @ 0..=8 => (pos + 1 + kind as usize, None),
            LEN1 => (pos + 2 + *data.get(pos + 1)? as usize, None),
            _ => op_end(data, pos, max_digits)?,
        };
        if end > to {
            return None;
        }
        let key = match op {
            UNICODE | SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 => {
                str_at = (pos, end);
                None
            }
            BINPUT => Some(u64::from(*data.get(pos + 1)?)),
            LONG_BINPUT => {
                let b = data.get(pos + 1..pos + 5)?;
                Some(u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            PUT => key,
            MEMOIZE => Some(memo_len as u64),
            _ => None,
        };
        if let Some(key) = key {
            // Counted as `memo_count` counts it.
            match usize::try_from(key) {
                Ok(k) if k < dense => {}
                Ok(k) if k == dense => {
                    dense += 1;
                    memo_len += 1;
                }
                _ => {
                    if sparse.get_or_insert_with(Default::default).insert(key) {
                        memo_len += 1;
                    }
                }
            }
            let note = match globals.get(next_global) {
                Some(&(at, _)) if at as usize == pos => {
                    next_global += 1;
                    COPIED_GLOBAL | (next_global - 1) as u32
                }
                _ if str_at.1 == pos => {
                    str_at.1 = end;
                    u32::try_from(str_at.0).ok()?
                }
                _ => NOT_COPIED,
            };
            match usize::try_from(key) {
                Ok(k) if k < again.len() => again[k] = note,
                Ok(k) if k < dense && note != NOT_COPIED => {
                    if again.capacity() == 0 {
                        // Made at the first str or global, as `note_at` makes it.
                        again.reserve_exact(room.max(k + 1));
                    }
                    again.resize(k, NOT_COPIED);
                    again.push(note);
                }
                _ => {}
            }
        }
        pos = end;
    }
    (pos == to && next_global == globals.len()).then_some(PutScan {
        again,
        dense,
        memo_len,
    })
}

/// How many bytes of global names `STACK_GLOBAL` may copy per byte of input
/// (beyond a first MiB), as the inspector allows itself.
pub(super) const NAME_BYTES_PER_INPUT_BYTE: u64 = 32;

/// What a change after the fact does, for [`Machine::detach`]'s check.
#[derive(Clone, Copy)]
enum Change {
    Items,
    Pairs,
    Set,
    State,
}

/// Items taken two at a time, as keys and values.
struct Pairs<I>(I);

impl<I: Iterator<Item = Value>> Iterator for Pairs<I> {
    type Item = (Value, Value);

    #[inline]
    fn next(&mut self) -> Option<(Value, Value)> {
        let k = self.0.next()?;
        let v = self.0.next()?;
        Some((k, v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (lo, hi) = self.0.size_hint();
        (lo / 2, hi.map(|h| h / 2))
    }
}

/// Whether any of `items` carries steps (inert mode).
fn args_of_seq(items: &[Value]) -> bool {
    items.iter().any(|v| matches!(v, Value::Seq(_)))
}

/// Copies a value that is cheap to copy, or shares one reference.
fn cheap_clone(v: &Value) -> Value {
    match v {
        Value::None => Value::None,
        Value::Bool(b) => Value::Bool(*b),
        Value::Int(i) => Value::Int(*i),
        Value::Float(f) => Value::Float(*f),
        Value::Ref(id) => Value::Ref(*id),
        other => other.clone(),
    }
}

fn latin1(bytes: &[u8]) -> PyStr {
    PyStr::from(bytes.iter().map(|&b| b as char).collect::<String>())
}

/// Whether `builtins.name` is a class (`int`, `ValueError`), not a function
/// (`len`): the one module known well enough to tell them apart. Shared by
/// the machine and the stream's `Value` reader.
pub(crate) fn builtin_is_class(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        || matches!(
            name,
            "object"
                | "int"
                | "float"
                | "complex"
                | "bool"
                | "str"
                | "bytes"
                | "bytearray"
                | "list"
                | "tuple"
                | "dict"
                | "set"
                | "frozenset"
                | "range"
                | "slice"
                | "type"
                | "memoryview"
                | "property"
                | "staticmethod"
                | "classmethod"
                | "super"
                | "enumerate"
                | "zip"
                | "map"
                | "filter"
                | "reversed"
        )
}

/// From this many items, a batch that joins a list's items is moved by
/// copying the whole batch (an allocation and two `memcpy`s) rather than
/// one item at a time.
const BULK_MOVE: usize = 32;

#[cfg(test)]
mod note_tests {
    use super::*;

    /// Allows every global (the notes do not depend on which).
    struct AllowAll;

    impl Resolve for AllowAll {
        fn find_class(&self, _: &str, _: &str, _: bool) -> Result<()> {
            Ok(())
        }
        fn extension(&self, _: u32) -> Option<crate::value::Global> {
            None
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    /// The notes [`Machine::note_put`] makes put by put (as it did before
    /// the scan, from the first opcode), with the globals it cloned, the
    /// machine's `dense` and `memo_len`, and where it met `STOP`; `None`
    /// where the machine fails or does not copy.
    fn noted_put_by_put(data: &[u8]) -> Option<PutNotes> {
        let mut opts = Options::default();
        let mut m = Machine::new(&mut opts, &AllowAll, Keep::None, data.len());
        m.copy_fetches(0, data.len(), data.len());
        if !m.copy {
            return None;
        }
        m.noted = true;
        let stop = m.run(&mut SliceRead::new(data)).ok()?;
        Some(PutNotes {
            again: std::mem::take(&mut m.again),
            globals: std::mem::take(&mut m.globals),
            dense: m.dense,
            memo_len: m.memo_len,
            stop: stop as usize,
        })
    }

    struct PutNotes {
        again: Vec<u32>,
        globals: Vec<(u32, crate::value::Global)>,
        dense: usize,
        memo_len: usize,
        stop: usize,
    }

    /// Every pickle here, and each with a byte changed: where the machine
    /// noting put by put reads it to `STOP`, the scan of its opcodes makes
    /// the same notes and counts the same keys.
    #[test]
    fn the_scan_notes_every_put_as_the_machine_noting_each_put() {
        let x = |t: &str| [&b"X"[..], &(t.len() as u32).to_le_bytes(), t.as_bytes()].concat();
        let short = |t: &str| [&[0x8c, t.len() as u8][..], t.as_bytes()].concat();
        let mut cases: Vec<Vec<u8>> = vec![
            // A key put twice (str, then str, then a list), puts by every
            // opcode, a str put twice in a row, a copy put again.
            [
                &b"\x80\x02]("[..],
                &x("a"),
                b"q\x00",
                &x("b"),
                b"q\x00q\x01r\x02\x00\x00\x00p3\n",
                &x("c"),
                b"0]q\x01h\x00q\x04e.",
            ]
            .concat(),
            // MEMOIZE, a global, keys past the dense ones, a key put twice.
            [
                &b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00]\x94("[..],
                &short("builtins"),
                b"\x94",
                &short("set"),
                b"\x94\x93\x94",
                &short("a"),
                b"\x94",
                &short("b"),
                b"q\x04",
                &short("c"),
                b"\x94q\x09",
                &short("d"),
                b"\x94q\x07\x94cbuiltins\nfrozenset\nq\x08\x94e(h\x03h\x04h\x01h\x05t\x86.",
            ]
            .concat(),
        ];
        for c in &cases {
            let notes = noted_put_by_put(c).expect("read to STOP");
            assert!(notes.again.iter().filter(|&&n| n != NOT_COPIED).count() >= 3);
            assert_eq!(notes.globals.len(), 3 * usize::from(c[1] == 4));
        }
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        for dir in ["corpus", "attacks"] {
            if let Ok(entries) = std::fs::read_dir(fixtures.join(dir)) {
                for e in entries.flatten() {
                    if e.path().extension().is_some_and(|x| x == "pickle") {
                        cases.extend(std::fs::read(e.path()));
                    }
                }
            }
        }
        let mut mutated = Vec::new();
        for c in cases.iter().take(2) {
            for at in 0..c.len() {
                for b in [0u8, b'q', b'h', 0x94, 0x8c, b'X', b'0', 0xff] {
                    let mut m = c.clone();
                    m[at] = b;
                    mutated.push(m);
                }
            }
        }
        cases.extend(mutated);
        let mut compared = 0;
        let mut noted = 0;
        for data in &cases {
            let Some(want) = noted_put_by_put(data) else {
                continue;
            };
            let got = scan_puts(
                data,
                0,
                want.stop,
                Options::default().limits.max_int_digits,
                &want.globals,
                0,
            )
            .unwrap_or_else(|| panic!("the scan stopped short on {data:?}"));
            assert_eq!((got.dense, got.memo_len), (want.dense, want.memo_len));
            for k in 0..want.again.len().max(got.again.len()) {
                let note = |a: &[u32]| a.get(k).copied().unwrap_or(NOT_COPIED);
                assert_eq!(note(&got.again), note(&want.again), "key {k} of {data:?}");
                noted += usize::from(note(&want.again) != NOT_COPIED);
            }
            compared += 1;
        }
        assert!(
            compared > 100 && noted > 100,
            "{compared} pickles, {noted} notes"
        );
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    #[test]
    fn tables_come_back_empty_and_large_ones_are_freed() {
        let mut small = Tables::default();
        small.stack.reserve_exact(100);
        small.stack.push(Value::Int(7));
        small.memo.extend([1, 2, 3]);
        small.marks.push(4);
        small.give();
        let got = Tables::take();
        assert!(got.stack.capacity() >= 100);
        assert!(got.stack.is_empty() && got.memo.is_empty() && got.marks.is_empty());
        // Taken: a load within a load gets new tables.
        assert_eq!(Tables::take().stack.capacity(), 0);

        let mut large = Tables::default();
        large
            .stack
            .reserve_exact(Tables::KEEP / std::mem::size_of::<Value>() + 1);
        large.live.reserve_exact(10);
        large.give();
        let got = Tables::take();
        assert_eq!(got.stack.capacity(), 0);
        assert!(got.live.capacity() >= 10);
    }
}
