//! [`Stream::value`]: any value, as the `Graph` path makes it for a typed
//! read of a [`Value`] (a tree: what the pickle fetches from its memo comes
//! out by value).
//!
//! A stack machine cannot know which object it builds until the opcode that
//! ends it: `1 2 TUPLE2` is a tuple whose first item is `1`. The reader
//! reads a value, then asks [`Stream::next_use`] what the opcodes after it
//! do with it (found for every value at once by one pass over the pickle
//! that only counts stack items, [`Stream::analyse`]): nothing (it is its
//! parent's), or build on it (`TUPLEn`, `REDUCE`, `NEWOBJ`, `BUILD`,
//! items), in which case it reads the other operands and goes on. A typed
//! tuple that begins where the value does claims its own `TUPLEn`.
//! Whatever it does not follow exactly as the machine does is a [`Miss`].

use num_bigint::BigInt;

use super::{decode, effect, skip_arg, Effect, Kind, Mark, Miss, Pulled, Stream};
use crate::base::hash::AddrMap;
use crate::base::op::*;
use crate::read::input::SliceRead;
use crate::read::{known_global, Builtin, StringDecoding};
use crate::text::PyStr;
use crate::value::{Global, Reduction, Value};

/// What [`Stream::analyse`] finds: each `MARK`'s position and its
/// closer's, in order, and what takes each value from the stack, by where
/// the value is complete.
pub(super) struct Analysis {
    marks: Vec<(u32, u32)>,
    /// Where a value is complete and something builds on it (or it is
    /// unknown what does); every other place before `end` is [`Use::Alone`].
    uses: AddrMap<u32, Use>,
    /// Where the pass stopped.
    end: u32,
}

/// What the opcodes after a value do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Use {
    /// Nothing: it is an operand of its parent's opcode, or the root.
    Alone,
    /// Not known: the machine would fail before.
    Unknown,
    /// An opcode takes it as its lowest operand, with this many items above
    /// it.
    Op(u8, usize),
    /// `MARK` right after it, closed by `APPENDS`, `SETITEMS` or `ADDITEMS`.
    Batch(u8),
}

impl<'a> Stream<'a> {
    /// Any value, as the `Graph` path makes it for a typed read of a
    /// [`Value`]; a miss for what it cannot make the same (a memo fetch of
    /// a list, dict, set or object, which the `Graph` path shares; a cycle;
    /// a call other than to a global; more values than `max_tree_nodes`).
    pub fn value(&mut self) -> Pulled<Value> {
        let before = self.nodes;
        let v = self.any()?;
        if self.nodes - before > self.max_tree_nodes {
            return Err(Miss);
        }
        Ok(v)
    }

    /// The value of a field read by its own Graph-path reader (see
    /// `typed::construct::graph_field`): a memo fetch in it is a miss, and
    /// so is a later fetch of what it memoized, but for globals (which a
    /// typed read takes by name on either path) and the module names
    /// `STACK_GLOBAL` copies, so that the two paths cannot differ through
    /// an object the field shares with the rest of the pickle.
    pub(crate) fn sealed_value(&mut self) -> Pulled<Value> {
        let from = self.memo.len();
        let sealed = std::mem::replace(&mut self.sealed, true);
        let v = self.value();
        self.sealed = sealed;
        let v = v?;
        for slot in &mut self.memo[from..] {
            slot.sealed = !matches!(slot.kind, Kind::Global | Kind::Nested);
        }
        Ok(v)
    }

    /// The whole pickle as a [`Graph`](crate::Graph) of no shared objects:
    /// at the root only, when nothing is fetched from the memo.
    pub fn graph(&mut self) -> Pulled<crate::value::Graph> {
        let gets = self.gets;
        if self.depth != 1 {
            return Err(Miss);
        }
        let v = self.any()?;
        if self.gets != gets {
            return Err(Miss);
        }
        Ok(crate::value::Graph::new(v))
    }

    /// One value and whatever builds on it.
    pub(super) fn any(&mut self) -> Pulled<Value> {
        self.peek()?;
        let start = self.pos;
        let spot = self.spot();
        let v = self.primary()?;
        let depth = self.depth;
        let r = self.build_on(start, spot, v);
        self.depth = depth;
        r
    }

    /// One level more of nesting for a value built on another.
    fn wrap(&mut self) -> Pulled<()> {
        self.depth += 1;
        self.nodes += 1;
        if self.depth > self.max_depth {
            return Err(Miss);
        }
        Ok(())
    }

    /// Reads what the opcodes after `v` (which began at `start`) build on
    /// it, until nothing does.
    fn build_on(&mut self, start: usize, spot: super::Spot, mut v: Value) -> Pulled<Value> {
        // The memo entry of an object being built: open while its state and
        // items are read (a fetch of it there is a cycle).
        let mut open: Option<usize> = None;
        loop {
            let (op, above) = match self.next_use()? {
                Use::Alone | Use::Unknown => break,
                Use::Batch(closer) => {
                    self.batch_into(&mut v, closer)?;
                    continue;
                }
                Use::Op(op, above) => (op, above),
            };
            match op {
                TUPLE1 | TUPLE2 | TUPLE3 => {
                    let n = (op - TUPLE1 + 1) as usize;
                    if self.claimed(start, n) {
                        break;
                    }
                    self.close(open.take());
                    self.wrap()?;
                    self.push(n)?;
                    let mut items = Vec::with_capacity(n);
                    items.push(v);
                    for _ in 1..n {
                        items.push(self.read(Self::any)?);
                    }
                    self.height -= n;
                    if self.op()? != op {
                        return Err(Miss);
                    }
                    v = Value::Tuple(items);
                    // CPython's form of a small tuple from protocol 2, which
                    // the typed readers read again.
                    let kind = if self.proto >= 2 {
                        Kind::Tuple(n as u16)
                    } else {
                        Kind::Opaque
                    };
                    self.end(Mark { start, back: None }, kind)?;
                }
                REDUCE | NEWOBJ | NEWOBJ_EX => {
                    self.close(open.take());
                    self.wrap()?;
                    self.push(above + 1)?;
                    let a = self.read(Self::any)?;
                    let b = if op == NEWOBJ_EX {
                        Some(self.read(Self::any)?)
                    } else {
                        None
                    };
                    self.height -= above + 1;
                    if self.op()? != op {
                        return Err(Miss);
                    }
                    let (made, kind) = match (op, b) {
                        (REDUCE, _) => self.call(v, a)?,
                        (NEWOBJ, _) => self.new_obj(v, a)?,
                        (_, Some(kwargs)) => self.new_obj_ex(v, a, kwargs)?,
                        _ => return Err(Miss),
                    };
                    v = made;
                    if kind == Kind::Object {
                        open = self.memo_after(start, Kind::Object, true)?;
                    } else {
                        self.end(Mark { start, back: None }, kind)?;
                    }
                }
                STACK_GLOBAL if matches!(v, Value::Str(_)) => {
                    // The str is a module name: the global is read again
                    // from where it began, as the typed readers read one.
                    self.undo(spot)?;
                    v = self.global_value()?;
                }
                BUILD => {
                    let Value::Reduce(r) = &mut v else {
                        return Err(Miss);
                    };
                    if r.state.is_some() {
                        return Err(Miss);
                    }
                    self.push(2)?;
                    let state = self.read(Self::any)?;
                    self.height -= 2;
                    if self.op()? != BUILD {
                        return Err(Miss);
                    }
                    r.state = Some(state);
                    self.end(Mark { start, back: None }, Kind::Object)?;
                }
                APPEND | SETITEM => {
                    let Value::Reduce(r) = &mut v else {
                        // A list or dict changed after its own items: the
                        // typed readers would read it again without.
                        return Err(Miss);
                    };
                    self.push(above + 1)?;
                    let a = self.read(Self::any)?;
                    if op == APPEND {
                        self.height -= above + 1;
                        if self.op()? != APPEND {
                            return Err(Miss);
                        }
                        r.list_items.push(a);
                    } else {
                        let b = self.read(Self::any)?;
                        self.height -= above + 1;
                        if self.op()? != SETITEM {
                            return Err(Miss);
                        }
                        r.dict_items.push((a, b));
                    }
                    self.end(Mark { start, back: None }, Kind::Object)?;
                }
                _ => return Err(Miss),
            }
        }
        self.close(open);
        Ok(v)
    }

    /// Whether a typed tuple of `n` items begins at `start`: its `TUPLEn`
    /// closes it, not a tuple made of the value read there.
    fn claimed(&self, start: usize, n: usize) -> bool {
        self.claims
            .rev()
            .take_while(|c| c.0 == start)
            .any(|c| c.1 == n)
    }

    /// `MARK` items `closer` on the object `v`: items appended or set.
    fn batch_into(&mut self, v: &mut Value, closer: u8) -> Pulled<()> {
        let Value::Reduce(r) = v else {
            return Err(Miss);
        };
        if self.op()? != MARK {
            return Err(Miss);
        }
        self.push(2)?;
        let mut k = 0;
        while self.peek()? != closer {
            let a = self.read(Self::any)?;
            self.push(1)?;
            k += 1;
            match closer {
                APPENDS => r.list_items.push(a),
                SETITEMS => {
                    let b = self.read(Self::any)?;
                    self.push(1)?;
                    k += 1;
                    r.dict_items.push((a, b));
                }
                _ => return Err(Miss),
            }
        }
        self.pos += 1;
        self.height -= k + 2;
        Ok(())
    }

    /// `callable(*args)` as the machine calls it outside inert mode.
    fn call(&mut self, callable: Value, args: Value) -> Pulled<(Value, Kind)> {
        let (Value::Global(g), Value::Tuple(items)) = (&callable, &args) else {
            return Err(Miss);
        };
        match known_global(&g.module, &g.name) {
            Some(Some(Builtin::GetAttr)) => {
                let [Value::Global(p), Value::Str(n)] = items.as_slice() else {
                    return Err(Miss);
                };
                let (module, name) = (
                    p.module.clone(),
                    format!("{}.{}", p.name, n.as_str().ok_or(Miss)?),
                );
                if self.back.is_empty() {
                    self.allowed(&module, &name)?;
                }
                Ok((
                    Value::Global(Box::new(Global::new(module, name))),
                    Kind::Opaque,
                ))
            }
            Some(Some(b)) => {
                let mut args = args;
                let mut items = match &mut args {
                    Value::Tuple(items) => std::mem::take(items),
                    _ => return Err(Miss),
                };
                let made = builtin(b, &mut items).ok_or(Miss)?;
                let kind = match made {
                    Value::Set(_) => Kind::Set,
                    _ => Kind::Opaque,
                };
                Ok((made, kind))
            }
            _ => Ok((
                Value::Reduce(Box::new(Reduction::new(callable, args))),
                Kind::Object,
            )),
        }
    }

    /// `NEWOBJ`: `copyreg.__newobj__(cls, *args)`.
    fn new_obj(&mut self, cls: Value, args: Value) -> Pulled<(Value, Kind)> {
        check_class(&cls)?;
        let mut args = args;
        let Value::Tuple(items) = &mut args else {
            return Err(Miss);
        };
        let items = std::mem::take(items);
        let mut all = Vec::with_capacity(items.len() + 1);
        all.push(cls);
        all.extend(items);
        self.nodes += 2;
        let r = Reduction::new(Value::global("copyreg", "__newobj__"), Value::Tuple(all));
        Ok((Value::Reduce(Box::new(r)), Kind::Object))
    }

    /// `NEWOBJ_EX`: `copyreg.__newobj_ex__(cls, args, kwargs)`.
    fn new_obj_ex(&mut self, cls: Value, args: Value, kwargs: Value) -> Pulled<(Value, Kind)> {
        check_class(&cls)?;
        if !matches!(args, Value::Tuple(_)) || !matches!(kwargs, Value::Dict(_)) {
            return Err(Miss);
        }
        self.nodes += 2;
        let r = Reduction::new(
            Value::global("copyreg", "__newobj_ex__"),
            Value::Tuple(vec![cls, args, kwargs]),
        );
        Ok((Value::Reduce(Box::new(r)), Kind::Object))
    }

    /// A global, as [`Stream::global_with`] reads one (a memo fetch of one
    /// too).
    fn global_value(&mut self) -> Pulled<Value> {
        self.global_with(|m, n| Some(Value::Global(Box::new(Global::new(m, n)))))
    }

    /// A value that stands on its own: an atom, a container with its items,
    /// a marked tuple, a global, a memo fetch.
    fn primary(&mut self) -> Pulled<Value> {
        let op = self.peek()?;
        let start = self.pos;
        self.nodes += 1;
        let (v, kind) = match op {
            GET | BINGET | LONG_BINGET => return self.fetched(),
            GLOBAL => return self.global_value(),
            EMPTY_LIST => {
                self.push(1)?;
                let mut items = Vec::new();
                self.list(|s| s.read(Self::any), |v| items.push(v))?;
                self.height -= 1;
                return Ok(Value::List(items));
            }
            EMPTY_DICT => return self.any_dict(),
            EMPTY_SET => return self.any_set(),
            MARK => return self.marked(),
            EMPTY_TUPLE => {
                self.pos += 1;
                (Value::Tuple(Vec::new()), Kind::Tuple(0))
            }
            _ => self.atom()?,
        };
        self.end(Mark { start, back: None }, kind)?;
        Ok(v)
    }

    /// A `dict`, its keys and values any values.
    fn any_dict(&mut self) -> Pulled<Value> {
        self.push(1)?;
        let mut pairs = Vec::new();
        self.dict(
            |s| {
                let k = s.read(Self::any)?;
                if unhashable(&k) {
                    return Err(Miss);
                }
                s.push(1)?;
                let v = s.read(Self::any)?;
                s.height -= 1;
                Ok((k, v))
            },
            |kv| pairs.push(kv),
        )?;
        self.height -= 1;
        Ok(Value::Dict(pairs))
    }

    /// A `set`: `EMPTY_SET`, then batches `MARK` items `ADDITEMS`.
    fn any_set(&mut self) -> Pulled<Value> {
        let start = self.pos;
        if self.op()? != EMPTY_SET {
            return Err(Miss);
        }
        let key = self.memo_after(start, Kind::Set, true)?;
        self.push(1)?;
        let mut items = Vec::new();
        while self.peek()? == MARK {
            let at = self.pos;
            let closer = self.closer_of(at)?;
            if self.data[closer] != ADDITEMS {
                // The set's parent's next value.
                break;
            }
            self.pos += 1;
            self.push(1)?;
            let mut k = 0;
            while self.peek()? != ADDITEMS {
                let item = self.read(Self::any)?;
                if unhashable(&item) {
                    return Err(Miss);
                }
                items.push(item);
                self.push(1)?;
                k += 1;
            }
            if self.pos != closer {
                return Err(Miss);
            }
            self.pos += 1;
            self.height -= k + 1;
        }
        self.height -= 1;
        self.close(key);
        self.end(Mark { start, back: None }, Kind::Set)?;
        Ok(Value::Set(items))
    }

    /// `MARK` items and the closer that makes them one value (`TUPLE`,
    /// `LIST`, `DICT`, `FROZENSET`).
    fn marked(&mut self) -> Pulled<Value> {
        let start = self.pos;
        let at = self.closer_of(start)?;
        let closer = self.data[at];
        if matches!(closer, LIST | DICT) && self.data.get(start + 1) == Some(&closer) {
            // An empty container, its items appended after: as the typed
            // readers read it.
            self.push(1)?;
            let v = if closer == LIST {
                let mut items = Vec::new();
                self.list(|s| s.read(Self::any), |v| items.push(v))?;
                Value::List(items)
            } else {
                self.height -= 1;
                return self.any_dict();
            };
            self.height -= 1;
            return Ok(v);
        }
        if !matches!(closer, TUPLE | LIST | DICT | FROZENSET) {
            return Err(Miss);
        }
        self.pos += 1;
        self.push(1)?;
        let mut items = Vec::new();
        while self.peek()? != closer || self.pos < at {
            if self.pos >= at {
                return Err(Miss);
            }
            items.push(self.read(Self::any)?);
            self.push(1)?;
        }
        if self.pos != at {
            return Err(Miss);
        }
        self.pos += 1;
        self.height -= items.len() + 1;
        let n = items.len();
        let keys = match closer {
            DICT => items.iter().step_by(2).any(unhashable),
            FROZENSET => items.iter().any(unhashable),
            _ => false,
        };
        if keys {
            return Err(Miss);
        }
        let (v, kind) = match closer {
            TUPLE => {
                // CPython marks every tuple before protocol 2, and from it
                // those of more than three items: the form the typed
                // readers read again.
                let kind = match u16::try_from(n) {
                    Ok(k) if self.proto < 2 || n > 3 || n == 0 => Kind::Tuple(k),
                    _ => Kind::Opaque,
                };
                (Value::Tuple(items), kind)
            }
            LIST => (Value::List(items), Kind::Opaque),
            DICT => {
                if n % 2 != 0 {
                    return Err(Miss);
                }
                let mut pairs = Vec::with_capacity(n / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                (Value::Dict(pairs), Kind::Opaque)
            }
            _ => (Value::FrozenSet(items), Kind::FrozenSet),
        };
        self.end(Mark { start, back: None }, kind)?;
        Ok(v)
    }

    /// A memo fetch: read again from the object's first copy where the
    /// `Graph` path's tree holds it by value and nothing can have changed
    /// it (a str, bytes, an int, a tuple, a frozenset, a global).
    fn fetched(&mut self) -> Pulled<Value> {
        let op = self.peek()?;
        let start = self.pos;
        let mut src = SliceRead::at(self.data, start + 1);
        let key = decode::memo_key(&mut src, op, self.max_int_digits).map_err(|_| Miss)?;
        let after = src.position();
        let slot = usize::try_from(key)
            .ok()
            .and_then(|k| self.memo.get(k))
            .copied()
            .ok_or(Miss)?;
        let global = matches!(slot.kind, Kind::Global | Kind::Nested);
        if slot.open {
            return Err(Miss);
        }
        if slot.sealed || (self.sealed && !global) {
            // Across a field's bounds, only as a module name, which
            // `STACK_GLOBAL` copies into the global.
            let at = std::mem::replace(&mut self.pos, after);
            let used = self.next_use();
            self.pos = at;
            if slot.kind != Kind::Str || used? != Use::Op(STACK_GLOBAL, 1) {
                return Err(Miss);
            }
            return self.global_value();
        }
        self.gets += 1;
        match slot.kind {
            Kind::Global | Kind::Nested => return self.global_value(),
            Kind::Atom | Kind::Str | Kind::Bytes | Kind::FrozenSet | Kind::Tuple(_) => {}
            _ => return Err(Miss),
        }
        self.pos = after;
        self.back.push(self.pos);
        self.spend(0)?;
        self.pos = slot.start as usize;
        let mark = Mark {
            start,
            back: Some(self.back.len()),
        };
        let v = match slot.kind {
            Kind::Tuple(n) => self.tuple_again(n as usize)?,
            Kind::FrozenSet => self.marked()?,
            _ => self.atom()?.0,
        };
        // `Option<Value>` reads a `None` as `None`, but a fetched one as
        // `Some(None)` on the stream: left to the Graph path.
        if matches!(v, Value::None) {
            return Err(Miss);
        }
        self.end(mark, slot.kind)?;
        Ok(v)
    }

    /// A tuple of `n` items read again from its first copy (as CPython
    /// writes one), which must be the whole of what was memoized there:
    /// nothing in the first copy builds on it.
    fn tuple_again(&mut self, n: usize) -> Pulled<Value> {
        if n == 0 {
            return match self.op()? {
                EMPTY_TUPLE => Ok(Value::Tuple(Vec::new())),
                MARK if self.eat(TUPLE)? => Ok(Value::Tuple(Vec::new())),
                _ => Err(Miss),
            };
        }
        let marked = self.proto < 2 || n > 3;
        if marked && !self.eat(MARK)? {
            return Err(Miss);
        }
        self.push(n + usize::from(marked))?;
        if !marked {
            self.claims.push((self.pos, n));
        }
        let mut items = Vec::with_capacity(n.min(64));
        let mut read = Ok(());
        for _ in 0..n {
            match self.read(Self::any) {
                Ok(v) => items.push(v),
                Err(m) => {
                    read = Err(m);
                    break;
                }
            }
        }
        if !marked {
            self.claims.pop();
        }
        read?;
        self.height -= n + usize::from(marked);
        let close = if marked {
            TUPLE
        } else {
            [TUPLE1, TUPLE2, TUPLE3][n - 1]
        };
        if self.op()? != close {
            return Err(Miss);
        }
        if self.next_use()? != Use::Alone {
            return Err(Miss);
        }
        Ok(Value::Tuple(items))
    }

    /// Runs a decoder at the cursor; bytes read again from a first copy
    /// count against the budget.
    fn arg<R>(
        &mut self,
        f: impl FnOnce(&mut SliceRead<'a>) -> crate::base::error::Result<R>,
    ) -> Pulled<R> {
        let at = self.pos;
        let r = self.decode(f)?;
        if !self.back.is_empty() {
            self.spend(self.pos - at)?;
        }
        Ok(r)
    }

    /// An atom: one opcode and its argument.
    fn atom(&mut self) -> Pulled<(Value, Kind)> {
        let op = self.op()?;
        let max = self.max_int_digits;
        let atom = |v| Ok((v, Kind::Atom));
        match op {
            NONE => atom(Value::None),
            NEWTRUE => atom(Value::Bool(true)),
            NEWFALSE => atom(Value::Bool(false)),
            INT => match self.arg(|s| decode::int_line(s, max))? {
                decode::IntLine::Bool(b) => atom(Value::Bool(b)),
                decode::IntLine::Int(i) => atom(Value::int(i)),
            },
            BININT => atom(Value::Int(self.arg(decode::int4)? as i64)),
            BININT1 => atom(Value::Int(self.arg(decode::uint1)? as i64)),
            BININT2 => atom(Value::Int(self.arg(decode::uint2)? as i64)),
            LONG => atom(Value::int(self.arg(|s| decode::long_line(s, max))?)),
            LONG1 | LONG4 => atom(self.arg(|s| {
                let bytes = decode::long_bytes(s, op)?;
                Ok(match decode::small_long(bytes) {
                    Some(i) => Value::Int(i),
                    None => Value::int(BigInt::from_signed_bytes_le(bytes)),
                })
            })?),
            FLOAT => atom(Value::Float(self.arg(decode::float_line)?)),
            BINFLOAT => atom(Value::Float(self.arg(decode::float8)?)),
            STRING | BINSTRING | SHORT_BINSTRING => {
                let strings = self.strings;
                let v = self.arg(|s| {
                    let bytes = decode::py2_string(s, op)?;
                    Ok(py2_str(&bytes, strings))
                })?;
                let v = v.ok_or(Miss)?;
                let kind = match v {
                    Value::Str(_) => Kind::Str,
                    _ => Kind::Bytes,
                };
                Ok((v, kind))
            }
            UNICODE | SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 => {
                Ok((Value::Str(self.arg(|s| decode::unicode(s, op))?), Kind::Str))
            }
            SHORT_BINBYTES | BINBYTES | BINBYTES8 | BYTEARRAY8 => {
                let b = self.arg(|s| decode::bytes(s, op).map(<[u8]>::to_vec))?;
                let v = if op == BYTEARRAY8 {
                    Value::ByteArray(b)
                } else {
                    Value::Bytes(b)
                };
                Ok((v, Kind::Bytes))
            }
            _ => Err(Miss),
        }
    }

    /// What the opcodes after the value just read do with it (see [`Use`]),
    /// as [`Stream::analyse`] found.
    fn next_use(&mut self) -> Pulled<Use> {
        // The value's memo puts (and frames) are part of it.
        let mut src = SliceRead::at(self.data, self.pos);
        let q = loop {
            let at = src.position();
            match self.data.get(at) {
                Some(&op @ (PUT | BINPUT | LONG_BINPUT | MEMOIZE | FRAME)) => {
                    src = SliceRead::at(self.data, at + 1);
                    if skip_arg(&mut src, op).is_err() {
                        return Ok(Use::Unknown);
                    }
                }
                _ => break at,
            }
        };
        let q = u32::try_from(q).map_err(|_| Miss)?;
        let analysis = self.analysis()?;
        if q >= analysis.end {
            return Ok(Use::Unknown);
        }
        Ok(analysis.uses.get(&q).copied().unwrap_or(Use::Alone))
    }

    /// The position of the closer of the `MARK` at `at`.
    fn closer_of(&mut self, at: usize) -> Pulled<usize> {
        let at32 = u32::try_from(at).map_err(|_| Miss)?;
        let marks = &self.analysis()?.marks;
        let i = marks
            .binary_search_by_key(&at32, |m| m.0)
            .map_err(|_| Miss)?;
        Ok(marks[i].1 as usize)
    }

    fn analysis(&mut self) -> Pulled<&Analysis> {
        if self.analysis.is_none() {
            self.analysis = Some(Box::new(self.analyse()?));
        }
        self.analysis.as_deref().ok_or(Miss)
    }

    /// One pass over the pickle as a machine that only counts stack items,
    /// up to `STOP` or where the machine would fail: each `MARK` paired
    /// with the opcode that pops it (a closer, or `POP` right above it),
    /// and for each place where a value is complete (after its memo puts)
    /// what takes it from the stack.
    fn analyse(&mut self) -> Pulled<Analysis> {
        let pos32 = |p: usize| u32::try_from(p).map_err(|_| Miss);
        let mut src = SliceRead::at(self.data, self.origin);
        // Each item on the stack: where the value that is its top is
        // complete.
        let mut stack: Vec<u32> = Vec::new();
        let mut open: Vec<(u32, usize)> = Vec::new();
        let mut marks = Vec::new();
        let mut uses: AddrMap<u32, Use> = AddrMap::default();
        let mut answer = |q: u32, u: Use| {
            if u != Use::Alone {
                uses.insert(q, u);
            }
        };
        let stop = loop {
            let at = pos32(src.position())?;
            let Ok(op) = decode::uint1(&mut src) else {
                break at;
            };
            let effect = effect(op);
            if skip_arg(&mut src, op).is_err() {
                break at;
            }
            let end = pos32(src.position())?;
            let floor = open.last().map_or(0, |m| m.1);
            match effect {
                None => break at,
                Some(Effect::Stop) => {
                    // What is left is the root and what lies under it.
                    stack.clear();
                    break end;
                }
                Some(Effect::Mark) => open.push((at, stack.len())),
                Some(Effect::Close(push)) => {
                    let Some((m, h)) = open.pop() else {
                        break at;
                    };
                    marks.push((m, at));
                    for q in stack.drain(h..) {
                        answer(q, Use::Alone);
                    }
                    if push == 1 {
                        stack.push(end);
                    } else if let (Some(below), APPENDS | SETITEMS | ADDITEMS) =
                        (stack.last_mut(), op)
                    {
                        // Items added to the value right below the mark.
                        if *below == m {
                            answer(m, Use::Batch(op));
                            *below = end;
                        }
                    }
                }
                Some(Effect::Stack(..))
                    if op == POP && !open.is_empty() && stack.len() == floor =>
                {
                    if let Some((m, _)) = open.pop() {
                        marks.push((m, at));
                    }
                }
                Some(Effect::Stack(0, 0)) => {
                    // A memo put, a frame: part of the value on top.
                    if let Some(top) = stack.last_mut() {
                        if *top == at {
                            *top = end;
                        }
                    }
                }
                Some(Effect::Stack(pop, push)) => {
                    if stack.len() < floor + pop {
                        break at;
                    }
                    let from = stack.len() - pop;
                    for (i, q) in stack.drain(from..).enumerate() {
                        answer(
                            q,
                            if i == 0 {
                                Use::Op(op, pop - 1)
                            } else {
                                Use::Alone
                            },
                        );
                    }
                    stack.extend(std::iter::repeat_n(end, push));
                }
            }
        };
        // The machine fails here: what is on the stack is taken by nothing.
        for q in stack {
            answer(q, Use::Unknown);
        }
        marks.sort_unstable();
        Ok(Analysis {
            marks,
            uses,
            end: stop,
        })
    }

    /// Keeps one attribute of an instance's state that a type has no field
    /// for (a `#[reduce(rest)]` field): its name read again by `key`, its
    /// value read by `value`, each one level deeper, as the `Graph` path
    /// reads them. Only inside [`Stream::instance`]'s `entry`, at the value.
    pub fn attribute<K, V>(
        &mut self,
        key: impl FnOnce(&mut Self) -> Pulled<K>,
        value: impl FnOnce(&mut Self) -> Pulled<V>,
    ) -> Pulled<(K, V)> {
        let spot = self.key_spot.take().ok_or(Miss)?;
        let (at, height) = (self.pos, self.height);
        self.undo(spot)?;
        let k = self.read(key)?;
        if self.pos != at {
            return Err(Miss);
        }
        self.height = height;
        let v = self.read(value)?;
        Ok((k, v))
    }
}

/// `NEWOBJ` needs a class: as the machine's `check_class` (outside inert
/// mode).
fn check_class(cls: &Value) -> Pulled<()> {
    let ok = match cls {
        Value::Global(g) if g.module == "builtins" => {
            crate::read::machine::builtin_is_class(&g.name)
        }
        Value::Global(_) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Miss)
    }
}

/// Whether Python could not hash `v` as a dict key or set item: the
/// `Graph` path then refuses it (a `Value` or a `Graph` loaded) or keeps it
/// (a typed load's `Value`), which the stream leaves to that path. (A
/// tree of the stream holds no references.)
#[inline]
fn unhashable(v: &Value) -> bool {
    crate::read::unhashable(v, &[]).is_some()
}

/// What the builtin constructors of plain data make of their arguments, as
/// the machine's `call_builtin`; `None` where it fails.
fn builtin(b: Builtin, args: &mut [Value]) -> Option<Value> {
    let items = |v: &mut Value| match v {
        Value::List(items) | Value::Tuple(items)
            if !(matches!(b, Builtin::Set | Builtin::FrozenSet)
                && items.iter().any(unhashable)) =>
        {
            Some(std::mem::take(items))
        }
        _ => None,
    };
    match (b, args) {
        (Builtin::Set, []) => Some(Value::Set(vec![])),
        (Builtin::Set, [a]) => items(a).map(Value::Set),
        (Builtin::FrozenSet, []) => Some(Value::FrozenSet(vec![])),
        (Builtin::FrozenSet, [a]) => items(a).map(Value::FrozenSet),
        (Builtin::Bytes, []) => Some(Value::Bytes(vec![])),
        (Builtin::ByteArray, []) => Some(Value::ByteArray(vec![])),
        (Builtin::ByteArray, [Value::Bytes(b)]) => Some(Value::ByteArray(std::mem::take(b))),
        (Builtin::ByteArray | Builtin::CodecsEncode, [Value::Str(s), Value::Str(enc)]) => {
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

/// A Python 2 `str` as the machine decodes it; `None` where it fails.
fn py2_str(bytes: &[u8], strings: StringDecoding) -> Option<Value> {
    Some(match strings {
        StringDecoding::Bytes => Value::Bytes(bytes.to_vec()),
        StringDecoding::Latin1 => Value::Str(PyStr::from(
            bytes.iter().map(|&b| b as char).collect::<String>(),
        )),
        StringDecoding::Ascii => {
            if !bytes.is_ascii() {
                return None;
            }
            Value::Str(PyStr::from(std::str::from_utf8(bytes).ok()?))
        }
    })
}
