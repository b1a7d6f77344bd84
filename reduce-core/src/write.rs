//! The pickler: writes a [`Graph`] or [`Value`] as CPython 3.11's C pickler
//! (`_pickle`) writes the same object, byte for byte.
//!
//! The writer follows CPython's `save()` with an explicit task stack instead
//! of recursion, so a value of any depth can be written. The parts that make
//! the bytes identical are the memo (what is memoized, and when, is
//! CPython's: containers before their items, tuples, frozensets and reduced
//! objects after), the frames (committed at the end of a `save` once they
//! reach 64 KiB; payloads of 64 KiB and more written outside any frame) and
//! the batches of 1000 (with CPython's quirks, kept on purpose: a `dict` or
//! `set` whose size is a multiple of 1000 ends with an empty batch).

use std::collections::HashMap;
use std::io;

use num_bigint::{BigInt, Sign};

use crate::error::{Error, ErrorKind, Result};
use crate::op::*;
use crate::value::{Graph, Id, PickleBuffer, PyStr, Reduce, Value};
use crate::{compat, text};

/// The highest protocol this crate reads and writes.
pub const HIGHEST_PROTOCOL: u8 = 5;
/// The protocol written unless another is chosen.
pub const DEFAULT_PROTOCOL: u8 = 5;

const FRAME_SIZE_TARGET: usize = 64 * 1024;
const FRAME_SIZE_MIN: usize = 4;
const FRAME_HEADER_SIZE: usize = 9;
const BATCHSIZE: usize = 1000;

/// A hook deciding, for each [`PickleBuffer`], whether it is written in band
/// (`true`) or out of band (`false`): Python's `buffer_callback`.
pub type BufferCallback<'h> = Box<dyn FnMut(&PickleBuffer) -> bool + 'h>;

/// Writes pickles, with options: protocol, `fix_imports`, a buffer callback
/// for out-of-band data and extension codes.
///
/// ```
/// use reduce::{Pickler, Value};
///
/// let mut out = Vec::new();
/// Pickler::new(&mut out).protocol(2).dump(&Value::List(vec![1.into()]))?;
/// assert_eq!(out, b"\x80\x02]q\x00K\x01a.");
/// # Ok::<(), reduce::Error>(())
/// ```
///
/// Each [`dump`](Pickler::dump) writes a complete, independent pickle (as
/// `pickle.dumps` does); several dumps to one writer can be read back in turn
/// by one [`Unpickler`](crate::Unpickler).
pub struct Pickler<'h, W> {
    writer: W,
    options: WriteOptions<'h>,
}

struct WriteOptions<'h> {
    proto: u8,
    fix_imports: bool,
    buffer_callback: Option<BufferCallback<'h>>,
    extensions: HashMap<(String, String), u32>,
}

impl Default for WriteOptions<'_> {
    fn default() -> Self {
        WriteOptions {
            proto: DEFAULT_PROTOCOL,
            fix_imports: true,
            buffer_callback: None,
            extensions: HashMap::new(),
        }
    }
}

impl<W: io::Write> Pickler<'static, W> {
    /// A pickler writing to `writer` at protocol [`DEFAULT_PROTOCOL`].
    pub fn new(writer: W) -> Self {
        Pickler {
            writer,
            options: WriteOptions::default(),
        }
    }
}

impl<'h, W: io::Write> Pickler<'h, W> {
    /// The protocol, 0 to 5. A protocol above 5 makes `dump` fail.
    pub fn protocol(mut self, proto: u8) -> Self {
        self.options.proto = proto;
        self
    }

    /// Write globals under their Python 2 names at protocols 0 to 2
    /// (`builtins` as `__builtin__`, ...), as Python's `fix_imports` does.
    /// Default on.
    pub fn fix_imports(mut self, fix: bool) -> Self {
        self.options.fix_imports = fix;
        self
    }

    /// The hook asked for each [`PickleBuffer`] at protocol 5: return `false`
    /// to write it out of band (`NEXT_BUFFER`), keeping the data yourself, or
    /// `true` to write it in band. Without a hook, buffers go in band.
    pub fn buffer_callback<'g>(self, hook: impl FnMut(&PickleBuffer) -> bool + 'g) -> Pickler<'g, W>
    where
        'h: 'g,
    {
        let mut options: WriteOptions<'g> = self.options;
        options.buffer_callback = Some(Box::new(hook));
        Pickler {
            writer: self.writer,
            options,
        }
    }

    /// Writes the global `module.name` as extension code `code`
    /// (`EXT1`/`EXT2`/`EXT4`) at protocol 2 and up, as
    /// `copyreg.add_extension` does.
    pub fn extension(mut self, code: u32, module: &str, name: &str) -> Self {
        self.options
            .extensions
            .insert((module.to_owned(), name.to_owned()), code);
        self
    }

    /// Writes one pickle of `value`.
    pub fn dump<T: crate::ToPickle + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.to_pickle(self)
    }

    /// Writes one pickle of a graph.
    pub fn dump_graph(&mut self, graph: &Graph) -> Result<()> {
        let mut enc = Encoder::new(&mut self.options, &graph.objects, Some(&mut self.writer))?;
        enc.dump(&graph.root)?;
        Ok(())
    }

    /// Writes one pickle of a value (a tree; it may not hold [`Value::Ref`]s).
    pub fn dump_value(&mut self, value: &Value) -> Result<()> {
        let mut enc = Encoder::new(&mut self.options, &[], Some(&mut self.writer))?;
        enc.dump(value)?;
        Ok(())
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.writer
    }
}

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
    /// The end of a `save` of a container: where CPython may commit a frame.
    Boundary,
    /// Saves the items one by one.
    Items(&'a [Value]),
    Pairs(&'a [(Value, Value)]),
    /// Protocol 0 `APPEND`/`SETITEM` after each item.
    AppendEach(&'a [Value]),
    SetItemEach(&'a [(Value, Value)]),
    /// `batch_list_exact`: chunks of 1000, no special case after the first.
    ListChunks(&'a [Value]),
    /// `batch_list` for an iterator: a last chunk of one uses `APPEND`.
    AppendBatches(&'a [Value]),
    /// `batch_dict_exact` and `save_set`: chunks of 1000, repeated while the
    /// last one was full (so an empty one follows a multiple of 1000).
    DictChunks(&'a [(Value, Value)]),
    SetChunks(&'a [Value]),
    /// `batch_dict` for an iterator.
    SetItemBatches(&'a [(Value, Value)]),
    /// A tuple's items are on the stack: close it, or fetch it from the memo
    /// if saving the items memoized it (a recursive tuple).
    EndTuple {
        ident: Ident,
        n: usize,
        small: bool,
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
        reduce: Option<&'a Reduce>,
        region: bool,
    },
    /// Fresh objects the writer makes on the way.
    FreshList(&'a [Value]),
    FreshTupleStart,
    FreshTupleEnd(usize),
    Global {
        module: &'a str,
        name: &'a str,
        ident: Ident,
    },
    /// Memoizes a global written as `getattr(parent, name)`.
    MemoPutGlobal {
        module: &'a str,
        name: &'a str,
        ident: Ident,
    },
    Str(&'a str),
    Latin1Str(&'a [u8]),
    InternedLatin1,
    Bytes(&'a [u8], Ident),
    Get(Ident),
}

struct Encoder<'o, 'h, 'a, 'w> {
    opts: &'o mut WriteOptions<'h>,
    objects: &'a [Value],
    out: Vec<u8>,
    sink: Option<&'w mut dyn io::Write>,
    proto: u8,
    framing: bool,
    frame_start: Option<usize>,
    memo_len: u32,
    shared_memo: Vec<u32>,
    global_memo: HashMap<(&'a str, &'a str), u32>,
    module_memo: HashMap<&'a str, u32>,
    latin1_memo: Option<u32>,
    addr_memo: HashMap<*const Value, u32>,
    /// How many recursive-capable objects (shared tuples, frozensets and
    /// reductions not yet memoized) are being written.
    regions: usize,
}

const NOT_MEMOIZED: u32 = u32::MAX;

fn unpicklable(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unpicklable(msg.into()))
}

impl<'o, 'h, 'a, 'w> Encoder<'o, 'h, 'a, 'w> {
    fn new(
        opts: &'o mut WriteOptions<'h>,
        objects: &'a [Value],
        sink: Option<&'w mut dyn io::Write>,
    ) -> Result<Self> {
        if opts.proto > HIGHEST_PROTOCOL {
            return Err(Error::new(ErrorKind::UnsupportedProtocol(opts.proto)));
        }
        let proto = opts.proto;
        Ok(Encoder {
            opts,
            objects,
            out: Vec::with_capacity(256),
            sink,
            proto,
            framing: false,
            frame_start: None,
            memo_len: 0,
            shared_memo: vec![NOT_MEMOIZED; objects.len()],
            global_memo: HashMap::new(),
            module_memo: HashMap::new(),
            latin1_memo: None,
            addr_memo: HashMap::new(),
            regions: 0,
        })
    }

    fn dump(&mut self, root: &'a Value) -> Result<()> {
        if self.proto >= 2 {
            self.write(&[PROTO, self.proto]);
            if self.proto >= 4 {
                self.framing = true;
            }
        }
        self.run(root)?;
        self.write(&[STOP]);
        self.commit_frame();
        self.framing = false;
        self.flush()
    }

    // ---- output, frames ---------------------------------------------------

    fn write(&mut self, data: &[u8]) {
        if self.framing && self.frame_start.is_none() {
            self.frame_start = Some(self.out.len());
            self.out.extend_from_slice(&[0; FRAME_HEADER_SIZE]);
        }
        self.out.extend_from_slice(data);
    }

    /// A header and a payload; a payload of 64 KiB or more goes outside any
    /// frame, so that a reader can take it without copying it into a frame
    /// buffer first.
    fn write_payload(&mut self, header: &[u8], data: &[u8]) {
        if data.len() >= FRAME_SIZE_TARGET && self.framing {
            self.commit_frame();
            self.framing = false;
            self.write(header);
            self.write(data);
            self.framing = true;
        } else {
            self.write(header);
            self.write(data);
        }
    }

    fn commit_frame(&mut self) {
        let Some(start) = self.frame_start.take() else {
            return;
        };
        let len = self.out.len() - start - FRAME_HEADER_SIZE;
        if len >= FRAME_SIZE_MIN {
            self.out[start] = FRAME;
            self.out[start + 1..start + FRAME_HEADER_SIZE]
                .copy_from_slice(&(len as u64).to_le_bytes());
        } else {
            // Too small to be worth a frame: CPython drops the header.
            self.out.drain(start..start + FRAME_HEADER_SIZE);
        }
    }

    /// The end of one `save`: commit the frame once it reaches the target
    /// size, and hand finished bytes to the writer.
    fn boundary(&mut self) -> Result<()> {
        if let Some(start) = self.frame_start {
            if self.out.len() - start - FRAME_HEADER_SIZE >= FRAME_SIZE_TARGET {
                self.commit_frame();
                self.flush()?;
            }
        } else if !self.framing && self.out.len() >= FRAME_SIZE_TARGET {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.frame_start.is_some() {
            return Ok(());
        }
        if let Some(sink) = self.sink.as_mut() {
            sink.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    // ---- memo --------------------------------------------------------------

    fn memo_index(&self, ident: Ident) -> Option<u32> {
        match ident {
            Ident::Fresh => None,
            Ident::Shared(id) => Some(self.shared_memo[id.index()]).filter(|&m| m != NOT_MEMOIZED),
            Ident::Addr(p) => self.addr_memo.get(&p).copied(),
        }
    }

    fn memo_put(&mut self, ident: Ident) -> Result<u32> {
        let idx = self.memo_len;
        if idx == u32::MAX - 1 {
            return Err(unpicklable("more than 2**32 - 2 memoized objects"));
        }
        self.memo_len += 1;
        if self.proto >= 4 {
            self.write(&[MEMOIZE]);
        } else if self.proto >= 1 {
            match u8::try_from(idx) {
                Ok(i) => self.write(&[BINPUT, i]),
                Err(_) => {
                    let b = idx.to_le_bytes();
                    self.write(&[LONG_BINPUT, b[0], b[1], b[2], b[3]])
                }
            }
        } else {
            self.write(format!("p{idx}\n").as_bytes());
        }
        match ident {
            Ident::Fresh => {}
            Ident::Shared(id) => self.shared_memo[id.index()] = idx,
            Ident::Addr(p) => {
                self.addr_memo.insert(p, idx);
            }
        }
        Ok(idx)
    }

    fn write_get(&mut self, idx: u32) {
        if self.proto >= 1 {
            match u8::try_from(idx) {
                Ok(i) => self.write(&[BINGET, i]),
                Err(_) => {
                    let b = idx.to_le_bytes();
                    self.write(&[LONG_BINGET, b[0], b[1], b[2], b[3]])
                }
            }
        } else {
            self.write(format!("g{idx}\n").as_bytes());
        }
    }

    // ---- the save loop -----------------------------------------------------

    fn run(&mut self, root: &'a Value) -> Result<()> {
        let mut tasks: Vec<Task<'a>> = vec![Task::Save(root)];
        while let Some(task) = tasks.pop() {
            self.task(task, &mut tasks)?;
        }
        Ok(())
    }

    fn task(&mut self, task: Task<'a>, tasks: &mut Vec<Task<'a>>) -> Result<()> {
        match task {
            Task::Save(v) => self.save(v, tasks)?,
            Task::Op(op) => self.write(&[op]),
            Task::Boundary => self.boundary()?,
            Task::Items(items) => {
                if let Some((first, rest)) = items.split_first() {
                    tasks.push(Task::Items(rest));
                    tasks.push(Task::Save(first));
                }
            }
            Task::Pairs(pairs) => {
                if let Some(((k, v), rest)) = pairs.split_first() {
                    tasks.push(Task::Pairs(rest));
                    tasks.push(Task::Save(v));
                    tasks.push(Task::Save(k));
                }
            }
            Task::AppendEach(items) => {
                if let Some((first, rest)) = items.split_first() {
                    tasks.push(Task::AppendEach(rest));
                    tasks.push(Task::Op(APPEND));
                    tasks.push(Task::Save(first));
                }
            }
            Task::SetItemEach(pairs) => {
                if let Some(((k, v), rest)) = pairs.split_first() {
                    tasks.push(Task::SetItemEach(rest));
                    tasks.push(Task::Op(SETITEM));
                    tasks.push(Task::Save(v));
                    tasks.push(Task::Save(k));
                }
            }
            Task::ListChunks(items) => {
                let (chunk, rest) = items.split_at(items.len().min(BATCHSIZE));
                self.write(&[MARK]);
                if !rest.is_empty() {
                    tasks.push(Task::ListChunks(rest));
                }
                tasks.push(Task::Op(APPENDS));
                tasks.push(Task::Items(chunk));
            }
            Task::AppendBatches(items) => match items.len() {
                0 => {}
                1 => {
                    tasks.push(Task::Op(APPEND));
                    tasks.push(Task::Save(&items[0]));
                }
                n => {
                    let (chunk, rest) = items.split_at(n.min(BATCHSIZE));
                    self.write(&[MARK]);
                    if chunk.len() == BATCHSIZE {
                        tasks.push(Task::AppendBatches(rest));
                    }
                    tasks.push(Task::Op(APPENDS));
                    tasks.push(Task::Items(chunk));
                }
            },
            Task::DictChunks(pairs) => {
                let (chunk, rest) = pairs.split_at(pairs.len().min(BATCHSIZE));
                self.write(&[MARK]);
                if chunk.len() == BATCHSIZE {
                    tasks.push(Task::DictChunks(rest));
                }
                tasks.push(Task::Op(SETITEMS));
                tasks.push(Task::Pairs(chunk));
            }
            Task::SetChunks(items) => {
                let (chunk, rest) = items.split_at(items.len().min(BATCHSIZE));
                self.write(&[MARK]);
                if chunk.len() == BATCHSIZE {
                    tasks.push(Task::SetChunks(rest));
                }
                tasks.push(Task::Op(ADDITEMS));
                tasks.push(Task::Items(chunk));
            }
            Task::SetItemBatches(pairs) => match pairs.len() {
                0 => {}
                1 => {
                    tasks.push(Task::Op(SETITEM));
                    tasks.push(Task::Save(&pairs[0].1));
                    tasks.push(Task::Save(&pairs[0].0));
                }
                n => {
                    let (chunk, rest) = pairs.split_at(n.min(BATCHSIZE));
                    self.write(&[MARK]);
                    if chunk.len() == BATCHSIZE {
                        tasks.push(Task::SetItemBatches(rest));
                    }
                    tasks.push(Task::Op(SETITEMS));
                    tasks.push(Task::Pairs(chunk));
                }
            },
            Task::EndTuple {
                ident,
                n,
                small,
                region,
            } => {
                if region {
                    self.regions -= 1;
                }
                if let Some(idx) = self.memo_index(ident) {
                    // The tuple reached itself through its items and was
                    // written (and memoized) inside: drop this copy's items.
                    if small {
                        self.write(&vec![POP; n]);
                    } else if self.proto >= 1 {
                        self.write(&[POP_MARK]);
                    } else {
                        self.write(&vec![POP; n + 1]);
                    }
                    self.write_get(idx);
                } else {
                    let op = if small {
                        [TUPLE1, TUPLE2, TUPLE3][n - 1]
                    } else {
                        TUPLE
                    };
                    self.write(&[op]);
                    self.memo_put(ident)?;
                }
                self.boundary()?;
            }
            Task::EndFrozenSet { ident, region } => {
                if region {
                    self.regions -= 1;
                }
                if let Some(idx) = self.memo_index(ident) {
                    self.write(&[POP_MARK]);
                    self.write_get(idx);
                } else {
                    self.write(&[FROZENSET]);
                    self.memo_put(ident)?;
                }
                self.boundary()?;
            }
            Task::EndReduce {
                ident,
                reduce,
                region,
            } => {
                if region {
                    self.regions -= 1;
                }
                if let Some(idx) = self.memo_index(ident) {
                    // Made while its own arguments were written: CPython
                    // drops this copy and skips the items and state too.
                    self.write(&[POP]);
                    self.write_get(idx);
                    self.boundary()?;
                    return Ok(());
                }
                self.memo_put(ident)?;
                tasks.push(Task::Boundary);
                if let Some(r) = reduce {
                    if let Some(state) = &r.state {
                        match &r.state_setter {
                            None => {
                                tasks.push(Task::Op(BUILD));
                                tasks.push(Task::Save(state));
                            }
                            Some(setter) => {
                                tasks.push(Task::Op(POP));
                                tasks.push(Task::Op(REDUCE));
                                tasks.push(Task::Op(TUPLE2));
                                tasks.push(Task::Save(state));
                                tasks.push(Task::Get(ident));
                                tasks.push(Task::Save(setter));
                            }
                        }
                    }
                    if !r.dict_items.is_empty() {
                        tasks.push(if self.proto == 0 {
                            Task::SetItemEach(&r.dict_items)
                        } else {
                            Task::SetItemBatches(&r.dict_items)
                        });
                    }
                    if !r.list_items.is_empty() {
                        tasks.push(if self.proto == 0 {
                            Task::AppendEach(&r.list_items)
                        } else {
                            Task::AppendBatches(&r.list_items)
                        });
                    }
                }
            }
            Task::FreshList(items) => {
                self.list_header();
                self.memo_put(Ident::Fresh)?;
                tasks.push(Task::Boundary);
                self.list_items(items, tasks);
            }
            Task::FreshTupleStart => {
                if self.proto < 2 {
                    self.write(&[MARK]);
                }
            }
            Task::FreshTupleEnd(n) => {
                if self.proto >= 2 {
                    self.write(&[[TUPLE1, TUPLE2, TUPLE3][n - 1]]);
                } else {
                    self.write(&[TUPLE]);
                }
                self.memo_put(Ident::Fresh)?;
                self.boundary()?;
            }
            Task::Global {
                module,
                name,
                ident,
            } => self.save_global(module, name, ident, tasks)?,
            Task::Str(s) => {
                self.str_data(&PyStr::from(s));
                self.memo_put(Ident::Fresh)?;
                self.boundary()?;
            }
            Task::Latin1Str(bytes) => {
                let s = PyStr::from(bytes.iter().map(|&b| b as char).collect::<String>());
                self.str_data(&s);
                self.memo_put(Ident::Fresh)?;
                self.boundary()?;
            }
            Task::InternedLatin1 => {
                // `_codecs.encode(s, "latin1")` always passes the one interned
                // "latin1" string, so its second use is a memo reference.
                match self.latin1_memo {
                    Some(idx) => self.write_get(idx),
                    None => {
                        self.str_data(&PyStr::from("latin1"));
                        self.latin1_memo = Some(self.memo_put(Ident::Fresh)?);
                    }
                }
                self.boundary()?;
            }
            Task::Bytes(bytes, ident) => self.save_bytes(bytes, ident, false, tasks)?,
            Task::MemoPutGlobal {
                module,
                name,
                ident,
            } => {
                let idx = self.memo_put(ident)?;
                self.global_memo.insert((module, name), idx);
                self.boundary()?;
            }
            Task::Get(ident) => {
                let idx = self.memo_index(ident).ok_or_else(|| {
                    unpicklable("an object's state setter needs the object memoized")
                })?;
                self.write_get(idx);
                self.boundary()?;
            }
        }
        Ok(())
    }

    fn save(&mut self, v: &'a Value, tasks: &mut Vec<Task<'a>>) -> Result<()> {
        let (obj, ident) = match v {
            Value::Ref(id) => {
                let obj = self
                    .objects
                    .get(id.index())
                    .ok_or(Error::new(ErrorKind::DanglingRef(id.0)))?;
                if let Value::Ref(_) = obj {
                    return Err(unpicklable("a shared object may not itself be a reference"));
                }
                (obj, Ident::Shared(*id))
            }
            v if self.regions > 0 && is_memoized_kind(v) => (v, Ident::Addr(v as *const Value)),
            v => (v, Ident::Fresh),
        };
        if !matches!(ident, Ident::Fresh) {
            if let Some(idx) = self.memo_index(ident) {
                self.write_get(idx);
                return self.boundary();
            }
        }
        self.save_obj(obj, ident, tasks)
    }

    fn list_header(&mut self) {
        if self.proto >= 1 {
            self.write(&[EMPTY_LIST]);
        } else {
            self.write(&[MARK, LIST]);
        }
    }

    fn list_items(&mut self, items: &'a [Value], tasks: &mut Vec<Task<'a>>) {
        if items.is_empty() {
            return;
        }
        if self.proto == 0 {
            tasks.push(Task::AppendEach(items));
        } else if items.len() == 1 {
            tasks.push(Task::Op(APPEND));
            tasks.push(Task::Save(&items[0]));
        } else {
            tasks.push(Task::ListChunks(items));
        }
    }

    /// Starts a region where tree nodes are memoized by address, because the
    /// object being written may be met again before it is memoized.
    fn open_region(&mut self, ident: Ident) -> bool {
        if matches!(ident, Ident::Shared(_)) {
            self.regions += 1;
            true
        } else {
            false
        }
    }

    fn save_obj(&mut self, v: &'a Value, ident: Ident, tasks: &mut Vec<Task<'a>>) -> Result<()> {
        match v {
            Value::None => self.write(&[NONE]),
            Value::Bool(b) => {
                if self.proto >= 2 {
                    self.write(&[if *b { NEWTRUE } else { NEWFALSE }]);
                } else {
                    self.write(if *b { b"I01\n" } else { b"I00\n" });
                }
            }
            Value::Int(i) => self.save_int(*i)?,
            Value::BigInt(b) => match i64::try_from(&**b) {
                Ok(i) => self.save_int(i)?,
                Err(_) => self.save_bigint(b)?,
            },
            Value::Float(x) => {
                if self.proto >= 1 {
                    // struct.pack('>d'): the one big-endian number in pickle.
                    let mut buf = [BINFLOAT; 9];
                    buf[1..].copy_from_slice(&x.to_be_bytes());
                    self.write(&buf);
                } else {
                    let repr = text::float_repr(*x);
                    self.write(&[FLOAT]);
                    self.write(repr.as_bytes());
                    self.write(b"\n");
                }
            }
            Value::Str(s) => {
                self.str_data(s);
                self.memo_put(ident)?;
            }
            Value::Bytes(b) => return self.save_bytes(b, ident, false, tasks),
            Value::ByteArray(b) => return self.save_bytes(b, ident, true, tasks),
            Value::Buffer(buf) => return self.save_buffer(buf, ident, tasks),
            Value::Tuple(items) => return self.save_tuple(items, ident, tasks),
            Value::List(items) => {
                self.list_header();
                self.memo_put(ident)?;
                tasks.push(Task::Boundary);
                self.list_items(items, tasks);
                return Ok(());
            }
            Value::Dict(pairs) => {
                if self.proto >= 1 {
                    self.write(&[EMPTY_DICT]);
                } else {
                    self.write(&[MARK, DICT]);
                }
                self.memo_put(ident)?;
                tasks.push(Task::Boundary);
                match pairs.len() {
                    0 => {}
                    _ if self.proto == 0 => tasks.push(Task::SetItemEach(pairs)),
                    1 => {
                        tasks.push(Task::Op(SETITEM));
                        tasks.push(Task::Save(&pairs[0].1));
                        tasks.push(Task::Save(&pairs[0].0));
                    }
                    _ => tasks.push(Task::DictChunks(pairs)),
                }
                return Ok(());
            }
            Value::Set(items) => {
                if self.proto < 4 {
                    return self.save_reduce_of("builtins", "set", items, ident, tasks);
                }
                self.write(&[EMPTY_SET]);
                self.memo_put(ident)?;
                tasks.push(Task::Boundary);
                if !items.is_empty() {
                    tasks.push(Task::SetChunks(items));
                }
                return Ok(());
            }
            Value::FrozenSet(items) => {
                if self.proto < 4 {
                    return self.save_reduce_of("builtins", "frozenset", items, ident, tasks);
                }
                let region = self.open_region(ident);
                self.write(&[MARK]);
                tasks.push(Task::EndFrozenSet { ident, region });
                tasks.push(Task::Items(items));
                return Ok(());
            }
            Value::Global(g) => return self.save_global(&g.module, &g.name, ident, tasks),
            Value::Reduce(r) => return self.save_reduce(r, ident, tasks),
            Value::PersistentId(pid) => {
                if self.proto == 0 {
                    let text = match &**pid {
                        Value::Str(s)
                            if s.as_bytes().is_ascii() && !s.as_bytes().contains(&b'\n') =>
                        {
                            s.as_bytes()
                        }
                        _ => {
                            return Err(unpicklable(
                                "persistent IDs in protocol 0 must be ASCII strings",
                            ))
                        }
                    };
                    self.write(&[PERSID]);
                    self.write(text);
                    self.write(b"\n");
                } else {
                    tasks.push(Task::Op(BINPERSID));
                    tasks.push(Task::Save(pid));
                }
                return Ok(());
            }
            Value::Ref(_) => {
                return Err(unpicklable("a shared object may not itself be a reference"))
            }
        }
        self.boundary()
    }

    fn save_int(&mut self, i: i64) -> Result<()> {
        if let Ok(v) = i32::try_from(i) {
            if self.proto >= 1 {
                if (0..=0xff).contains(&v) {
                    self.write(&[BININT1, v as u8]);
                } else if (0..=0xffff).contains(&v) {
                    let b = (v as u16).to_le_bytes();
                    self.write(&[BININT2, b[0], b[1]]);
                } else {
                    let b = v.to_le_bytes();
                    self.write(&[BININT, b[0], b[1], b[2], b[3]]);
                }
            } else {
                self.write(format!("I{v}\n").as_bytes());
            }
            return Ok(());
        }
        self.save_bigint(&BigInt::from(i))
    }

    fn save_bigint(&mut self, b: &BigInt) -> Result<()> {
        if self.proto >= 2 {
            // Minimal two's complement, little-endian, as _PyLong_AsByteArray
            // gives it after CPython trims a redundant sign byte.
            let bytes = if b.sign() == Sign::NoSign {
                Vec::new()
            } else {
                b.to_signed_bytes_le()
            };
            match u8::try_from(bytes.len()) {
                Ok(n) => self.write(&[LONG1, n]),
                Err(_) => {
                    let n = u32::try_from(bytes.len())
                        .map_err(|_| unpicklable("int too large to pickle"))?
                        .to_le_bytes();
                    self.write(&[LONG4, n[0], n[1], n[2], n[3]]);
                }
            }
            self.write(&bytes);
        } else {
            let digits = b.to_string();
            // CPython refuses str() of an int above sys.get_int_max_str_digits().
            if digits.trim_start_matches('-').len() > 4300 {
                return Err(unpicklable(
                    "int has more than 4300 digits, which protocols 0 and 1 cannot write (as in CPython)",
                ));
            }
            self.write(&[LONG]);
            self.write(digits.as_bytes());
            self.write(b"L\n");
        }
        Ok(())
    }

    fn str_data(&mut self, s: &PyStr) {
        if self.proto == 0 {
            let mut buf = vec![UNICODE];
            text::raw_unicode_escape(s, &mut buf);
            buf.push(b'\n');
            self.write(&buf);
            return;
        }
        let data = s.as_bytes();
        let n = data.len();
        if n <= 0xff && self.proto >= 4 {
            self.write_payload(&[SHORT_BINUNICODE, n as u8], data);
        } else if let Ok(n32) = u32::try_from(n) {
            let b = n32.to_le_bytes();
            self.write_payload(&[BINUNICODE, b[0], b[1], b[2], b[3]], data);
        } else {
            let mut header = [BINUNICODE8; 9];
            header[1..].copy_from_slice(&(n as u64).to_le_bytes());
            self.write_payload(&header, data);
        }
    }

    fn save_bytes(
        &mut self,
        data: &'a [u8],
        ident: Ident,
        bytearray: bool,
        tasks: &mut Vec<Task<'a>>,
    ) -> Result<()> {
        if bytearray && self.proto < 5 {
            // bytearray(b"...") as a reduction (bytearray() when empty).
            let region = self.open_region(ident);
            tasks.push(Task::EndReduce {
                ident,
                reduce: None,
                region,
            });
            tasks.push(Task::Op(REDUCE));
            if data.is_empty() {
                self.empty_tuple(tasks);
            } else {
                tasks.push(Task::FreshTupleEnd(1));
                tasks.push(Task::Bytes(data, Ident::Fresh));
                tasks.push(Task::FreshTupleStart);
            }
            tasks.push(Task::Global {
                module: "builtins",
                name: "bytearray",
                ident: Ident::Fresh,
            });
            return Ok(());
        }
        if bytearray {
            let mut header = [BYTEARRAY8; 9];
            header[1..].copy_from_slice(&(data.len() as u64).to_le_bytes());
            self.write_payload(&header, data);
            self.memo_put(ident)?;
            return self.boundary();
        }
        if self.proto < 3 {
            // No bytes opcode before protocol 3: `_codecs.encode(s, "latin1")`
            // with the bytes read as Latin-1 text (`bytes()` when empty).
            let region = self.open_region(ident);
            tasks.push(Task::EndReduce {
                ident,
                reduce: None,
                region,
            });
            tasks.push(Task::Op(REDUCE));
            if data.is_empty() {
                self.empty_tuple(tasks);
                tasks.push(Task::Global {
                    module: "builtins",
                    name: "bytes",
                    ident: Ident::Fresh,
                });
            } else {
                tasks.push(Task::FreshTupleEnd(2));
                tasks.push(Task::InternedLatin1);
                tasks.push(Task::Latin1Str(data));
                tasks.push(Task::FreshTupleStart);
                tasks.push(Task::Global {
                    module: "_codecs",
                    name: "encode",
                    ident: Ident::Fresh,
                });
            }
            return Ok(());
        }
        let n = data.len();
        if n <= 0xff {
            self.write_payload(&[SHORT_BINBYTES, n as u8], data);
        } else if let Ok(n32) = u32::try_from(n) {
            let b = n32.to_le_bytes();
            self.write_payload(&[BINBYTES, b[0], b[1], b[2], b[3]], data);
        } else if self.proto >= 4 {
            let mut header = [BINBYTES8; 9];
            header[1..].copy_from_slice(&(n as u64).to_le_bytes());
            self.write_payload(&header, data);
        } else {
            return Err(unpicklable(
                "serializing a bytes object larger than 4 GiB requires pickle protocol 4 or higher",
            ));
        }
        self.memo_put(ident)?;
        self.boundary()
    }

    fn empty_tuple(&mut self, tasks: &mut Vec<Task<'a>>) {
        if self.proto >= 1 {
            tasks.push(Task::Op(EMPTY_TUPLE));
        } else {
            tasks.push(Task::Op(TUPLE));
            tasks.push(Task::Op(MARK));
        }
    }

    fn save_buffer(
        &mut self,
        buf: &'a PickleBuffer,
        ident: Ident,
        tasks: &mut Vec<Task<'a>>,
    ) -> Result<()> {
        if self.proto < 5 {
            return Err(unpicklable(
                "PickleBuffer can only be pickled with protocol >= 5",
            ));
        }
        let in_band = match self.opts.buffer_callback.as_mut() {
            Some(hook) => hook(buf),
            None => true,
        };
        if in_band {
            return self.save_bytes(&buf.data, ident, !buf.readonly, tasks);
        }
        self.write(&[NEXT_BUFFER]);
        if buf.readonly {
            self.write(&[READONLY_BUFFER]);
        }
        self.boundary()
    }

    fn save_tuple(
        &mut self,
        items: &'a [Value],
        ident: Ident,
        tasks: &mut Vec<Task<'a>>,
    ) -> Result<()> {
        let n = items.len();
        if n == 0 {
            if self.proto >= 1 {
                self.write(&[EMPTY_TUPLE]);
            } else {
                self.write(&[MARK, TUPLE]);
            }
            return self.boundary();
        }
        let region = self.open_region(ident);
        let small = n <= 3 && self.proto >= 2;
        if !small {
            self.write(&[MARK]);
        }
        tasks.push(Task::EndTuple {
            ident,
            n,
            small,
            region,
        });
        tasks.push(Task::Items(items));
        Ok(())
    }

    /// `save_reduce((module.name, (list(items),)), obj)`: sets and frozensets
    /// before protocol 4.
    fn save_reduce_of(
        &mut self,
        module: &'static str,
        name: &'static str,
        items: &'a [Value],
        ident: Ident,
        tasks: &mut Vec<Task<'a>>,
    ) -> Result<()> {
        let region = self.open_region(ident);
        tasks.push(Task::EndReduce {
            ident,
            reduce: None,
            region,
        });
        tasks.push(Task::Op(REDUCE));
        tasks.push(Task::FreshTupleEnd(1));
        tasks.push(Task::FreshList(items));
        tasks.push(Task::FreshTupleStart);
        tasks.push(Task::Global {
            module,
            name,
            ident: Ident::Fresh,
        });
        Ok(())
    }

    fn save_reduce(
        &mut self,
        r: &'a Reduce,
        ident: Ident,
        tasks: &mut Vec<Task<'a>>,
    ) -> Result<()> {
        let callable = match &r.callable {
            Value::Ref(id) => self.objects.get(id.index()).unwrap_or(&r.callable),
            v => v,
        };
        let func_name = match callable {
            Value::Global(g) => g.name.rsplit('.').next().unwrap_or(""),
            _ => "",
        };
        let args = match &r.args {
            Value::Ref(id) => self.objects.get(id.index()).unwrap_or(&r.args),
            v => v,
        };
        let region = self.open_region(ident);
        tasks.push(Task::EndReduce {
            ident,
            reduce: Some(r),
            region,
        });
        if self.proto >= 2 && func_name == "__newobj_ex__" && self.proto >= 4 {
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
        } else if self.proto >= 2 && func_name == "__newobj__" {
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

    /// Queues a tuple object the writer makes itself, which cannot be met
    /// again.
    fn fresh_tuple(&mut self, items: &'a [Value], tasks: &mut Vec<Task<'a>>) {
        if items.is_empty() {
            self.empty_tuple(tasks);
            return;
        }
        let small = items.len() <= 3 && self.proto >= 2;
        tasks.push(Task::EndTuple {
            ident: Ident::Fresh,
            n: items.len(),
            small,
            region: false,
        });
        tasks.push(Task::Items(items));
        if !small {
            tasks.push(Task::Op(MARK));
        }
    }

    fn save_global(
        &mut self,
        module: &'a str,
        name: &'a str,
        ident: Ident,
        tasks: &mut Vec<Task<'a>>,
    ) -> Result<()> {
        // One function or class is one object, so every use of the same name
        // after the first is a memo reference.
        if let Some(&idx) = self.global_memo.get(&(module, name)) {
            self.write_get(idx);
            if let Ident::Shared(id) = ident {
                self.shared_memo[id.index()] = idx;
            }
            return self.boundary();
        }
        if self.proto >= 2 {
            if let Some(&code) = self
                .opts
                .extensions
                .get(&(module.to_owned(), name.to_owned()))
            {
                if code <= 0xff {
                    self.write(&[EXT1, code as u8]);
                } else if code <= 0xffff {
                    let b = (code as u16).to_le_bytes();
                    self.write(&[EXT2, b[0], b[1]]);
                } else {
                    let b = code.to_le_bytes();
                    self.write(&[EXT4, b[0], b[1], b[2], b[3]]);
                }
                return self.boundary();
            }
        }
        if self.proto >= 4 {
            // The module name is the module's interned `__name__`, the same
            // object for every global of that module.
            match self.module_memo.get(module) {
                Some(&idx) => self.write_get(idx),
                None => {
                    self.str_data(&PyStr::from(module));
                    let idx = self.memo_put(Ident::Fresh)?;
                    self.module_memo.insert(module, idx);
                }
            }
            self.boundary()?;
            self.str_data(&PyStr::from(name));
            self.memo_put(Ident::Fresh)?;
            self.boundary()?;
            self.write(&[STACK_GLOBAL]);
        } else if let Some((parent, last)) = name.rsplit_once('.') {
            // A nested name before protocol 4: getattr(parent, "last").
            tasks.push(Task::MemoPutGlobal {
                module,
                name,
                ident,
            });
            tasks.push(Task::Op(REDUCE));
            tasks.push(Task::FreshTupleEnd(2));
            tasks.push(Task::Str(last));
            tasks.push(Task::Global {
                module,
                name: parent,
                ident: Ident::Fresh,
            });
            tasks.push(Task::FreshTupleStart);
            tasks.push(Task::Global {
                module: "builtins",
                name: "getattr",
                ident: Ident::Fresh,
            });
            return Ok(());
        } else {
            let (m, n) = if self.proto < 3 && self.opts.fix_imports {
                compat::to_python2(module, name)
            } else {
                (module, name)
            };
            if self.proto < 3 && !(m.is_ascii() && n.is_ascii()) {
                return Err(unpicklable(format!(
                    "can't pickle global identifier '{module}.{name}' using pickle protocol {}",
                    self.proto
                )));
            }
            if m.contains('\n') || n.contains('\n') {
                return Err(unpicklable(format!(
                    "global name {module:?}.{name:?} contains a newline"
                )));
            }
            let mut buf = Vec::with_capacity(m.len() + n.len() + 3);
            buf.push(GLOBAL);
            buf.extend_from_slice(m.as_bytes());
            buf.push(b'\n');
            buf.extend_from_slice(n.as_bytes());
            buf.push(b'\n');
            self.write(&buf);
        }
        let idx = self.memo_put(ident)?;
        self.global_memo.insert((module, name), idx);
        self.boundary()
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
