//! The `Value` encoder: CPython's `save()` over an explicit task stack, so a
//! value of any depth is written without recursion.

use super::out::{unpicklable, Out};
use super::rules::{self, Batches, Batching};
use crate::base::error::{Error, ErrorKind, Result};
use crate::base::hash::AddrMap;
use crate::base::op::*;
use crate::value::{Global, Id, PickleBuffer, Reduction, Spelling, Step, Value};

/// The identity of an object for the memo, as CPython's `id()`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Ident {
    /// A fresh object nobody can meet again (an argument tuple the writer
    /// builds, a tree node outside any recursive tuple).
    Fresh,
    /// A shared object of the graph.
    Shared(Id),
    /// A tree node met while a recursive tuple is being written, where it may
    /// be met again.
    Addr(*const Value),
}

enum Task<'a> {
    Save(&'a Value),
    Op(u8),
    Opcodes(&'static [u8]),
    /// Saves the items one by one.
    Items(&'a [Value]),
    Pairs(&'a [(Value, Value)]),
    /// Items in the chunks CPython writes them in, each after a `MARK` and
    /// followed by `many`, or alone and followed by `one`.
    Batches {
        items: &'a [Value],
        plan: Batches,
        one: u8,
        many: u8,
    },
    PairBatches {
        pairs: &'a [(Value, Value)],
        plan: Batches,
        one: u8,
        many: u8,
    },
    /// A tuple's items are on the stack: close it, or fetch it from the memo
    /// if saving the items memoized it (a recursive tuple).
    EndTuple {
        ident: Ident,
        n: usize,
        region: bool,
    },
    EndFrozenSet {
        ident: Ident,
        region: bool,
    },
    /// `callable` and `args` are written: memoize the object, then its items
    /// and state.
    EndReduce {
        ident: Ident,
        reduce: Option<&'a Reduction>,
        region: bool,
    },
    /// A list the writer makes itself (`set(list)` before protocol 4).
    FreshList(&'a [Value]),
    FreshTupleStart(usize),
    FreshTupleEnd(usize),
    /// A global the writer names itself.
    Global(&'static str, &'static str),
    /// A memo reference to an object already written.
    Get(u32),
    /// A global's `STACK_GLOBAL` is written: memoize it.
    EndGlobal(&'a Global, Ident),
    /// Memoize what was just written, as `ident`.
    MemoPut(Ident),
}

struct Encoder<'e, 'o, 'a> {
    out: &'e mut Out<'o>,
    objects: &'a [Value],
    buffer_callback: Option<&'e mut (dyn FnMut(&PickleBuffer) -> bool + 'e)>,
    shared_memo: Vec<u32>,
    addr_memo: AddrMap<*const Value, u32>,
    /// How many recursive-capable objects (shared tuples, frozensets and
    /// reductions not yet memoized) are being written.
    regions: usize,
    /// How many times each shared object of that kind is being written,
    /// one inside the other (made on the first).
    entered: Vec<u8>,
    /// A tree of plain data, written as CPython writes the same objects
    /// made at run time: `""` and one-character Latin-1 strings are one
    /// object each (see [`Out::single_str`]). A graph's strings are
    /// written as it holds them: it keeps what its pickle shared, and a
    /// literal `'b'` and a decoded one are two objects in CPython.
    singles: bool,
}

const NOT_MEMOIZED: u32 = u32::MAX;

/// Writes a `Value` (with the shared objects of its graph) on `out`, as one
/// object of a pickle being written: a graph's, with its strings as it
/// holds them.
pub(crate) fn encode_into<'e>(
    out: &'e mut Out<'_>,
    root: &Value,
    objects: &[Value],
    buffer_callback: Option<&'e mut (dyn FnMut(&PickleBuffer) -> bool + 'e)>,
) -> Result<()> {
    Encoder::new(out, objects, buffer_callback, false).run(root)
}

/// [`encode_into`] of a tree of plain data (a [`Value`], what serde
/// gathered), with CPython's single objects shared.
pub(crate) fn encode_tree<'e>(
    out: &'e mut Out<'_>,
    root: &Value,
    buffer_callback: Option<&'e mut (dyn FnMut(&PickleBuffer) -> bool + 'e)>,
) -> Result<()> {
    Encoder::new(out, &[], buffer_callback, true).run(root)
}

impl<'e, 'o, 'a> Encoder<'e, 'o, 'a> {
    fn new(
        out: &'e mut Out<'o>,
        objects: &'a [Value],
        buffer_callback: Option<&'e mut (dyn FnMut(&PickleBuffer) -> bool + 'e)>,
        singles: bool,
    ) -> Self {
        Encoder {
            out,
            objects,
            buffer_callback,
            shared_memo: vec![NOT_MEMOIZED; objects.len()],
            addr_memo: AddrMap::default(),
            regions: 0,
            entered: Vec::new(),
            singles,
        }
    }

    fn proto(&self) -> u8 {
        self.out.proto
    }

    fn write(&mut self, data: &[u8]) {
        self.out.write(data)
    }

    #[inline]
    fn memo_index(&self, ident: Ident) -> Option<u32> {
        match ident {
            Ident::Fresh => None,
            Ident::Shared(id) => Some(self.shared_memo[id.index()]).filter(|&m| m != NOT_MEMOIZED),
            Ident::Addr(p) => self.addr_memo.get(&p).copied(),
        }
    }

    /// Records that the object `ident` is at memo index `idx`.
    fn remember(&mut self, ident: Ident, idx: u32) {
        match ident {
            Ident::Fresh => {}
            Ident::Shared(id) => self.shared_memo[id.index()] = idx,
            Ident::Addr(p) => {
                self.addr_memo.insert(p, idx);
            }
        }
    }

    #[inline]
    fn memo_put(&mut self, ident: Ident) -> Result<()> {
        let idx = self.out.memo_put()?;
        self.remember(ident, idx);
        Ok(())
    }

    fn run(&mut self, root: &'a Value) -> Result<()> {
        // Room for a few levels of nesting at once: grown one task at a
        // time from one, the stack cost six reallocations to reach 60
        // levels (5% of a deep write).
        let mut tasks: Vec<Task<'a>> = Vec::with_capacity(32);
        tasks.push(Task::Save(root));
        while let Some(task) = tasks.pop() {
            self.task(task, &mut tasks)?;
        }
        Ok(())
    }

    fn task(&mut self, task: Task<'a>, tasks: &mut Vec<Task<'a>>) -> Result<()> {
        match task {
            Task::Save(v) => self.save(v, tasks)?,
            Task::Op(op) => self.write(&[op]),
            Task::Opcodes(ops) => self.write(ops),
            // Leaves are written on the spot, in the order the stack would
            // write them: a task each cost more than writing them.
            Task::Items(mut items) => {
                while let Some((first, rest)) = items.split_first() {
                    if !self.is_leaf(first) {
                        tasks.push(Task::Items(rest));
                        tasks.push(Task::Save(first));
                        break;
                    }
                    self.save(first, tasks)?;
                    items = rest;
                }
            }
            Task::Pairs(mut pairs) => {
                while let Some(((k, v), rest)) = pairs.split_first() {
                    if !(self.is_leaf(k) && self.is_leaf(v)) {
                        tasks.push(Task::Pairs(rest));
                        tasks.push(Task::Save(v));
                        tasks.push(Task::Save(k));
                        break;
                    }
                    self.save(k, tasks)?;
                    self.save(v, tasks)?;
                    pairs = rest;
                }
            }
            Task::Batches {
                items,
                mut plan,
                one,
                many,
            } => {
                if let Some(b) = plan.next() {
                    let (chunk, rest) = items.split_at(b.len);
                    if b.many {
                        self.write(&[MARK]);
                    }
                    tasks.push(Task::Batches {
                        items: rest,
                        plan,
                        one,
                        many,
                    });
                    tasks.push(Task::Op(if b.many { many } else { one }));
                    tasks.push(Task::Items(chunk));
                }
            }
            Task::PairBatches {
                pairs,
                mut plan,
                one,
                many,
            } => {
                if let Some(b) = plan.next() {
                    let (chunk, rest) = pairs.split_at(b.len);
                    if b.many {
                        self.write(&[MARK]);
                    }
                    tasks.push(Task::PairBatches {
                        pairs: rest,
                        plan,
                        one,
                        many,
                    });
                    tasks.push(Task::Op(if b.many { many } else { one }));
                    tasks.push(Task::Pairs(chunk));
                }
            }
            Task::EndTuple { ident, n, region } => {
                if region {
                    self.close_region(ident);
                }
                if let Some(idx) = self.memo_index(ident) {
                    // The tuple reached itself through its items and was
                    // written (and memoized) inside: drop this copy's items.
                    let (op, times) = rules::tuple_unwind(self.proto(), n);
                    self.write(&vec![op; times]);
                    self.out.get_within(idx);
                } else {
                    self.write(&[rules::tuple_close(self.proto(), n)]);
                    self.memo_put(ident)?;
                }
            }
            Task::EndFrozenSet { ident, region } => {
                if region {
                    self.close_region(ident);
                }
                if let Some(idx) = self.memo_index(ident) {
                    self.write(&[POP_MARK]);
                    self.out.get_within(idx);
                } else {
                    self.write(&[FROZENSET]);
                    self.memo_put(ident)?;
                }
            }
            Task::EndReduce {
                ident,
                reduce,
                region,
            } => {
                if region {
                    self.close_region(ident);
                }
                if let Some(idx) = self.memo_index(ident) {
                    // Made while its own arguments were written: CPython
                    // drops this copy and skips the items and state too.
                    self.write(&[POP]);
                    self.out.get_within(idx);
                    return Ok(());
                }
                let idx = self.out.memo_put()?;
                self.remember(ident, idx);
                if let Some(r) = reduce {
                    self.reduce_rest(r, idx, tasks);
                }
            }
            Task::FreshList(items) => {
                self.out.begin()?;
                self.list_header();
                self.memo_put(Ident::Fresh)?;
                self.list_items(items, tasks);
            }
            Task::FreshTupleStart(n) => self.out.fresh_tuple_start(n)?,
            Task::FreshTupleEnd(n) => self.out.fresh_tuple_end(n)?,
            Task::Global(module, name) => {
                self.out.global(module, name)?;
            }
            Task::Get(idx) => self.out.get(idx)?,
            Task::MemoPut(ident) => self.memo_put(ident)?,
            Task::EndGlobal(g, ident) => {
                let idx = self.out.global_end(&g.module, &g.name)?;
                self.remember(ident, idx);
            }
        }
        Ok(())
    }

    /// Whether saving `v` writes it whole without queueing a task: an
    /// atom, a global by name, or a shared object already in the memo.
    #[inline]
    fn is_leaf(&self, v: &Value) -> bool {
        match v {
            Value::None
            | Value::Bool(_)
            | Value::Int(_)
            | Value::BigInt(_)
            | Value::Float(_)
            | Value::Str(_)
            | Value::Bytes(_)
            | Value::ByteArray(_) => true,
            Value::Global(g) => matches!(g.spelling, Spelling::Default),
            Value::Ref(id) => self
                .shared_memo
                .get(id.index())
                .is_some_and(|&m| m != NOT_MEMOIZED),
            _ => false,
        }
    }

    /// After a reduced object is memoized: its list items, dict items and
    /// state, in CPython's order.
    fn reduce_rest(&mut self, r: &'a Reduction, idx: u32, tasks: &mut Vec<Task<'a>>) {
        if let Some(state) = &r.state {
            match &r.state_setter {
                None => {
                    tasks.push(Task::Op(BUILD));
                    tasks.push(Task::Save(state));
                }
                Some(setter) => {
                    // setter(obj, state), then POP: the call's result is not
                    // the object.
                    tasks.push(Task::Opcodes(&rules::STATE_SETTER_CALL));
                    tasks.push(Task::Save(state));
                    tasks.push(Task::Get(idx));
                    tasks.push(Task::Save(setter));
                }
            }
        }
        tasks.push(self.pair_batches(Batching::Iter, &r.dict_items));
        tasks.push(self.batches(Batching::Iter, &r.list_items, APPEND, APPENDS));
    }

    fn save(&mut self, v: &'a Value, tasks: &mut Vec<Task<'a>>) -> Result<()> {
        // The start of a `save`, where CPython ends a full frame.
        self.out.begin()?;
        let (obj, ident) = match v {
            Value::Ref(id) => {
                let obj = self
                    .objects
                    .get(id.index())
                    .ok_or_else(|| Error::new(ErrorKind::DanglingRef(id.0)))?;
                if let Value::Ref(_) = obj {
                    return Err(unpicklable("a shared object may not itself be a reference"));
                }
                (obj, Ident::Shared(*id))
            }
            v if self.regions > 0 && is_memoized_kind(v) => (v, Ident::Addr(v as *const Value)),
            v => (v, Ident::Fresh),
        };
        if let Some(idx) = self.memo_index(ident) {
            return self.out.get(idx);
        }
        self.save_obj(obj, ident, tasks)
    }

    fn list_header(&mut self) {
        if self.proto() >= 1 {
            self.write(&[EMPTY_LIST]);
        } else {
            self.write(&[MARK, LIST]);
        }
    }

    fn list_items(&mut self, items: &'a [Value], tasks: &mut Vec<Task<'a>>) {
        // One chunk, the common case: its opcodes queued at once rather
        // than through a `Batches` task, with what `Batches` would write.
        if self.proto() >= 1 && items.len() <= BATCHSIZE {
            match items.len() {
                0 => {}
                1 => {
                    tasks.push(Task::Op(APPEND));
                    tasks.push(Task::Items(items));
                }
                _ => {
                    self.write(&[MARK]);
                    tasks.push(Task::Op(APPENDS));
                    tasks.push(Task::Items(items));
                }
            }
            return;
        }
        tasks.push(self.batches(Batching::List, items, APPEND, APPENDS));
    }

    /// A dict's items, as [`Encoder::list_items`] a list's: a dict of
    /// exactly [`BATCHSIZE`] items ends with an empty chunk, so only
    /// fewer take the shortcut.
    fn dict_items(&mut self, pairs: &'a [(Value, Value)], tasks: &mut Vec<Task<'a>>) {
        if self.proto() >= 1 && pairs.len() < BATCHSIZE {
            match pairs.len() {
                0 => {}
                1 => {
                    tasks.push(Task::Op(SETITEM));
                    tasks.push(Task::Pairs(pairs));
                }
                _ => {
                    self.write(&[MARK]);
                    tasks.push(Task::Op(SETITEMS));
                    tasks.push(Task::Pairs(pairs));
                }
            }
            return;
        }
        tasks.push(self.pair_batches(Batching::Dict, pairs));
    }

    /// The task that writes `items` in CPython's chunks.
    fn batches(&self, kind: Batching, items: &'a [Value], one: u8, many: u8) -> Task<'a> {
        Task::Batches {
            items,
            plan: Batches::new(kind, self.proto(), items.len()),
            one,
            many,
        }
    }

    /// The task that writes `pairs` in CPython's chunks (`SETITEM`,
    /// `SETITEMS`).
    fn pair_batches(&self, kind: Batching, pairs: &'a [(Value, Value)]) -> Task<'a> {
        Task::PairBatches {
            pairs,
            plan: Batches::new(kind, self.proto(), pairs.len()),
            one: SETITEM,
            many: SETITEMS,
        }
    }

    /// Starts a region where tree nodes are memoized by address, because the
    /// object being written may be met again before it is memoized.
    ///
    /// Such an object may be met again inside itself once: through a list
    /// or dict, memoized before its items, the second copy ends where it
    /// meets that container again, and CPython then keeps the second. A
    /// third time, it reaches itself through tuples, sets and reductions
    /// alone (a set that holds itself, a reduction among its own
    /// arguments), which never end: CPython's `save` recurses until its
    /// `RecursionError`, and so is this an error, rather than a write
    /// that grows without bound.
    fn open_region(&mut self, ident: Ident) -> Result<bool> {
        let Ident::Shared(id) = ident else {
            return Ok(false);
        };
        if self.entered.is_empty() {
            self.entered = vec![0; self.objects.len()];
        }
        let times = &mut self.entered[id.index()];
        if *times >= 2 {
            return Err(unpicklable(format!(
                "shared object #{} contains itself through tuples, sets or reduced objects alone, with no list or dict between: it cannot be written (CPython's pickle recurses until its RecursionError)",
                id.index()
            )));
        }
        *times += 1;
        self.regions += 1;
        Ok(true)
    }

    /// The end of what [`Encoder::open_region`] opened.
    fn close_region(&mut self, ident: Ident) {
        self.regions -= 1;
        if let Ident::Shared(id) = ident {
            self.entered[id.index()] -= 1;
        }
    }

    fn save_obj(&mut self, v: &'a Value, ident: Ident, tasks: &mut Vec<Task<'a>>) -> Result<()> {
        match v {
            Value::None => self.out.none(),
            Value::Bool(b) => self.out.bool(*b),
            Value::Int(i) => self.out.int(*i),
            Value::BigInt(b) => self.out.bigint(b),
            Value::Float(x) => self.out.float(*x),
            Value::Str(s) => {
                // In a graph as it is: CPython's one-character strings are
                // one object when made at run time, not when written as
                // literals or interned, and the graph keeps what the
                // pickle shared. In a tree, as made at run time.
                let idx = match s.as_str() {
                    Some(t)
                        if self.singles
                            && t.len() <= 2
                            && crate::write::out::Out::is_single_str(t.as_bytes()) =>
                    {
                        self.out.single_str(t)?
                    }
                    _ => self.out.str(s)?,
                };
                self.remember(ident, idx);
                Ok(())
            }
            Value::Bytes(b) => {
                // CPython's `b""` and one-byte `bytes` are one object each,
                // however made.
                let idx = self.out.bytes_value(b)?;
                self.remember(ident, idx);
                Ok(())
            }
            Value::ByteArray(b) => {
                let idx = self.out.bytes(b, true)?;
                self.remember(ident, idx);
                Ok(())
            }
            Value::Buffer(buf) => self.save_buffer(buf, ident),
            Value::Tuple(items) => self.save_tuple(items, ident, tasks),
            Value::List(items) => {
                self.list_header();
                self.memo_put(ident)?;
                self.list_items(items, tasks);
                Ok(())
            }
            Value::Dict(pairs) => {
                if self.proto() >= 1 {
                    self.write(&[EMPTY_DICT]);
                } else {
                    self.write(&[MARK, DICT]);
                }
                self.memo_put(ident)?;
                self.dict_items(pairs, tasks);
                Ok(())
            }
            Value::Set(items) => {
                if let Some(global) = rules::set_constructor(self.proto(), false) {
                    return self.save_reduce_of(global, items, ident, tasks);
                }
                self.write(&[EMPTY_SET]);
                self.memo_put(ident)?;
                tasks.push(self.batches(Batching::Set, items, ADDITEMS, ADDITEMS));
                Ok(())
            }
            Value::FrozenSet(items) => {
                if let Some(global) = rules::set_constructor(self.proto(), true) {
                    return self.save_reduce_of(global, items, ident, tasks);
                }
                let region = self.open_region(ident)?;
                self.write(&[MARK]);
                tasks.push(Task::EndFrozenSet { ident, region });
                tasks.push(Task::Items(items));
                Ok(())
            }
            // Written again even when the name was written before: a pickle
            // that names a global twice makes CPython look it up twice
            // (dill writes `__builtin__.__main__` so). One the pickle fetched
            // from its memo is a shared object, written once.
            Value::Global(g) if !matches!(g.spelling, Spelling::Default) => {
                self.spelled_global(g, ident, tasks)
            }
            Value::Global(g) => {
                if let Some(idx) = self.out.global(&g.module, &g.name)? {
                    self.remember(ident, idx);
                }
                Ok(())
            }
            Value::Seq(seq) => {
                // The task stack pops the last pushed first.
                for step in seq.after.iter().rev() {
                    self.step(step, tasks)?;
                }
                tasks.push(Task::Save(&seq.value));
                for step in seq.before.iter().rev() {
                    self.step(step, tasks)?;
                }
                Ok(())
            }
            Value::Reduce(r) => self.save_reduce(r, ident, tasks),
            Value::PersistentId(p) => {
                let pid = &p.pid;
                let text = match pid {
                    Value::Str(s) if s.as_bytes().is_ascii() && !s.as_bytes().contains(&b'\n') => {
                        Some(s.as_bytes())
                    }
                    _ => None,
                };
                // PERSID at protocol 0, and wherever the pickle read in
                // inert mode spelled it so; BINPERSID otherwise, as CPython.
                if self.proto() == 0 || (p.line && text.is_some()) {
                    let Some(text) = text else {
                        return Err(unpicklable(
                            "persistent IDs in protocol 0 must be ASCII strings",
                        ));
                    };
                    self.write(&[PERSID]);
                    self.write(text);
                    self.write(b"\n");
                    if let Ident::Shared(_) = ident {
                        self.memo_put(ident)?;
                    }
                } else {
                    // CPython never memoizes a persistent object; one a
                    // pickle shared (inert mode) stays one object, loaded
                    // once.
                    if let Ident::Shared(_) = ident {
                        tasks.push(Task::MemoPut(ident));
                    }
                    tasks.push(Task::Op(BINPERSID));
                    tasks.push(Task::Save(pid));
                }
                Ok(())
            }
            Value::Ref(_) => Err(unpicklable("a shared object may not itself be a reference")),
        }
    }

    /// A global as inert mode read it: the same opcode, on the same string
    /// objects (CPython writes a module name again when `__module__` is
    /// another string object).
    fn spelled_global(
        &mut self,
        g: &'a Global,
        ident: Ident,
        tasks: &mut Vec<Task<'a>>,
    ) -> Result<()> {
        match &g.spelling {
            Spelling::Stack(ops) if self.proto() >= 4 => {
                tasks.push(Task::EndGlobal(g, ident));
                tasks.push(Task::Op(STACK_GLOBAL));
                tasks.push(Task::Save(&ops.1));
                tasks.push(Task::Save(&ops.0));
                Ok(())
            }
            Spelling::Line => {
                let idx = self.out.global_line(&g.module, &g.name)?;
                self.remember(ident, idx);
                Ok(())
            }
            _ => {
                if let Some(idx) = self.out.global(&g.module, &g.name)? {
                    self.remember(ident, idx);
                }
                Ok(())
            }
        }
    }

    /// Queues one step of a [`Seq`](crate::Seq): the object or value, the
    /// change, then `POP`, leaving the stack as it was.
    fn step(&mut self, step: &'a Step, tasks: &mut Vec<Task<'a>>) -> Result<()> {
        tasks.push(Task::Op(POP));
        match step {
            Step::Discard(v) => tasks.push(Task::Save(v)),
            Step::Append { target, items } => {
                tasks.push(self.batches(Batching::Whole, items, APPEND, APPENDS));
                tasks.push(Task::Save(target));
            }
            Step::SetItems { target, items } => {
                tasks.push(self.pair_batches(Batching::Whole, items));
                tasks.push(Task::Save(target));
            }
            Step::AddItems { target, items } => {
                if self.proto() < 4 {
                    return Err(unpicklable(
                        "adding items to a set after it is built (ADDITEMS) requires pickle protocol 4 or higher",
                    ));
                }
                // There is no one-item opcode for sets: always a chunk.
                tasks.push(Task::Op(ADDITEMS));
                tasks.push(Task::Items(items));
                tasks.push(Task::Op(MARK));
                tasks.push(Task::Save(target));
            }
            Step::Build { target, state } => {
                tasks.push(Task::Op(BUILD));
                tasks.push(Task::Save(state));
                tasks.push(Task::Save(target));
            }
        }
        Ok(())
    }

    fn save_buffer(&mut self, buf: &'a PickleBuffer, ident: Ident) -> Result<()> {
        if self.proto() < 5 {
            return Err(unpicklable(
                "PickleBuffer can only be pickled with protocol >= 5",
            ));
        }
        let in_band = match self.buffer_callback.as_mut() {
            Some(hook) => hook(buf),
            None => true,
        };
        if in_band {
            let idx = self.out.bytes(&buf.data, !buf.readonly)?;
            self.remember(ident, idx);
            return Ok(());
        }
        self.write(&[NEXT_BUFFER]);
        if buf.readonly {
            self.write(&[READONLY_BUFFER]);
        }
        Ok(())
    }

    fn save_tuple(
        &mut self,
        items: &'a [Value],
        ident: Ident,
        tasks: &mut Vec<Task<'a>>,
    ) -> Result<()> {
        let n = items.len();
        if n == 0 {
            self.write(rules::tuple_open(self.proto(), 0));
            return Ok(());
        }
        let region = self.open_region(ident)?;
        self.write(rules::tuple_open(self.proto(), n));
        tasks.push(Task::EndTuple { ident, n, region });
        tasks.push(Task::Items(items));
        Ok(())
    }

    /// `save_reduce((module.name, (list(items),)), obj)`: sets and frozensets
    /// before protocol 4.
    fn save_reduce_of(
        &mut self,
        (module, name): (&'static str, &'static str),
        items: &'a [Value],
        ident: Ident,
        tasks: &mut Vec<Task<'a>>,
    ) -> Result<()> {
        let region = self.open_region(ident)?;
        tasks.push(Task::EndReduce {
            ident,
            reduce: None,
            region,
        });
        tasks.push(Task::Op(REDUCE));
        tasks.push(Task::FreshTupleEnd(1));
        tasks.push(Task::FreshList(items));
        tasks.push(Task::FreshTupleStart(1));
        tasks.push(Task::Global(module, name));
        Ok(())
    }

    fn save_reduce(
        &mut self,
        r: &'a Reduction,
        ident: Ident,
        tasks: &mut Vec<Task<'a>>,
    ) -> Result<()> {
        let resolve = |v: &'a Value| match v {
            Value::Ref(id) => self.objects.get(id.index()).unwrap_or(v),
            v => v,
        };
        // CPython looks at the callable's `__name__`.
        let func_name = match resolve(&r.callable) {
            Value::Global(g) => g.name.rsplit('.').next().unwrap_or(""),
            _ => "",
        };
        let args = resolve(&r.args);
        let region = self.open_region(ident)?;
        tasks.push(Task::EndReduce {
            ident,
            reduce: Some(r),
            region,
        });
        if func_name == "__newobj_ex__" && self.proto() >= 4 {
            let Value::Tuple(a) = args else {
                return Err(unpicklable(
                    "__newobj_ex__ expects a (cls, args, kwargs) tuple",
                ));
            };
            let [cls, args, kwargs] = a.as_slice() else {
                return Err(unpicklable(
                    "__newobj_ex__ expects a (cls, args, kwargs) tuple",
                ));
            };
            tasks.push(Task::Op(NEWOBJ_EX));
            tasks.push(Task::Save(kwargs));
            tasks.push(Task::Save(args));
            tasks.push(Task::Save(cls));
        } else if func_name == "__newobj__" && self.proto() >= 2 {
            let Value::Tuple(a) = args else {
                return Err(unpicklable("__newobj__ expects a (cls, *args) tuple"));
            };
            let Some((cls, rest)) = a.split_first() else {
                return Err(unpicklable("__newobj__ arglist is empty"));
            };
            tasks.push(Task::Op(NEWOBJ));
            // cls.__new__'s arguments: a new tuple, args[1:].
            self.fresh_tuple(rest, tasks);
            tasks.push(Task::Save(cls));
        } else {
            tasks.push(Task::Op(REDUCE));
            tasks.push(Task::Save(&r.args));
            tasks.push(Task::Save(&r.callable));
        }
        Ok(())
    }

    /// Queues a tuple the writer makes itself, which cannot be met again.
    fn fresh_tuple(&mut self, items: &'a [Value], tasks: &mut Vec<Task<'a>>) {
        let n = items.len();
        if n > 0 {
            tasks.push(Task::EndTuple {
                ident: Ident::Fresh,
                n,
                region: false,
            });
            tasks.push(Task::Items(items));
        }
        tasks.push(Task::Opcodes(rules::tuple_open(self.proto(), n)));
    }
}

/// Whether CPython memoizes values of this kind (and so may find them in its
/// memo when it meets them again).
fn is_memoized_kind(v: &Value) -> bool {
    match v {
        Value::Str(_)
        | Value::Bytes(_)
        | Value::ByteArray(_)
        | Value::List(_)
        | Value::Dict(_)
        | Value::Set(_)
        | Value::FrozenSet(_)
        | Value::Global(_)
        | Value::Reduce(_) => true,
        Value::Tuple(t) => !t.is_empty(),
        _ => false,
    }
}
