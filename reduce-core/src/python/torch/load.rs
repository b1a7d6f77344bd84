//! Reading `torch.save` files: the zip archive and the legacy stream.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, LazyLock};

use num_bigint::BigInt;

use super::allow;
use super::dtype::DType;
use super::object::{Checkpoint, Format, Object};
use super::tensor::{Storage, Tensor};
use crate::base::error::{Error, ErrorKind, Result};
use crate::inspect::{self, Named};
use crate::text::compat;
use crate::typed::registry::Registry;
use crate::unpickler::Unpickler;
use crate::value::{Graph, Id, Value};

/// `torch.serialization.MAGIC_NUMBER`, the first pickle of a legacy file.
const LEGACY_MAGIC: u128 = 0x1950a86a20f9469cfc6c;
/// `torch.serialization.PROTOCOL_VERSION`, the second.
const LEGACY_PROTOCOL: i64 = 1001;
/// A persistent id is a 5- or 6-tuple of small things.
const MAX_PID_NODES: usize = 64;
/// How deep the saved object may nest (torch's own loader is bound by
/// Python's recursion limit, 1000).
const MAX_DEPTH: usize = 1000;

/// The weights-only registry, built once.
static REGISTRY: LazyLock<Arc<Registry>> = LazyLock::new(|| {
    let mut reg = Registry::new();
    // The names are distinct and the registry is empty: this cannot fail.
    let _ = allow::install(&mut reg);
    Arc::new(reg)
});

/// Reads a checkpoint from a reader, in either format.
pub(crate) fn from_reader<R: Read + Seek>(mut reader: R) -> Result<Checkpoint> {
    let start = reader.stream_position()?;
    // The file's real length bounds every allocation made up front.
    let len = reader.seek(SeekFrom::End(0))?.saturating_sub(start);
    reader.seek(SeekFrom::Start(start))?;
    let mut head = [0u8; 4];
    let n = read_up_to(&mut reader, &mut head)?;
    reader.seek(SeekFrom::Start(start))?;
    if n == 4 && &head == b"PK\x03\x04" {
        read_zip(reader, len)
    } else {
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        reader.read_to_end(&mut bytes)?;
        read_legacy(bytes)
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Refuses, by name, every global outside torch's `weights_only` set, as
/// `torch.load(weights_only=True)` does, before anything is loaded: the
/// reader alone would also take the plain-data globals it knows
/// (`builtins.frozenset`, `copyreg._reconstructor`, ...).
fn check_globals(pickle: &[u8]) -> Result<()> {
    for found in inspect::globals(pickle)? {
        let at = |e: Error| e.at(found.offset, Some(found.opcode));
        match found.named {
            Named::Global(g) => {
                // Protocol 2 writes Python 2 names (`__builtin__.complex`);
                // torch maps them as the reader does.
                let (module, name) = compat::to_python3(&g.module, &g.name);
                if !allow::allowed(module, name) {
                    return Err(at(Error::new(ErrorKind::UnknownGlobal {
                        module: module.into(),
                        name: name.into(),
                        near: Vec::new(),
                    })
                    .with_detail(
                        "torch.load(weights_only=True) refuses it too: it is not in torch's weights_only allow-list".into(),
                    )));
                }
            }
            Named::Extension(code) => {
                return Err(at(Error::new(ErrorKind::UnknownExtension(code))
                    .with_detail("torch's weights_only loader takes no extension codes".into())))
            }
            _ => {
                return Err(at(Error::invalid(
                    "a global whose name is computed while loading: torch's weights_only loader refuses it",
                )))
            }
        }
    }
    Ok(())
}

/// Loads the pickle that holds the saved object, persistent ids kept as
/// data for [`Converter`] to resolve.
fn load_object(pickle: &[u8]) -> Result<(Graph, usize)> {
    check_globals(pickle)?;
    let mut unpickler = Unpickler::from_slice(pickle)
        .registry(REGISTRY.clone())
        // The id arrives whole; kept as a tree it needs nothing from the
        // object's graph to be read later.
        .persistent_load(|pid: Graph| {
            Ok(Value::PersistentId(Box::new(
                pid.into_tree(MAX_PID_NODES)?.into(),
            )))
        });
    let graph = unpickler.load_graph()?;
    Ok((graph, unpickler.position()))
}

/// A storage a persistent id names.
#[derive(Debug)]
struct StorageSpec {
    key: String,
    dtype: DType,
    device: String,
    numel: usize,
}

impl StorageSpec {
    fn nbytes(&self) -> Result<usize> {
        self.numel
            .checked_mul(self.dtype.element_size())
            .ok_or_else(|| Error::invalid(format!("storage '{}' is too large", self.key)))
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => s.as_str().map(str::to_owned),
        // Python 2 checkpoints loaded with encoding="bytes".
        Value::Bytes(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

/// `('storage', torch.FloatStorage, '0', 'cpu', 6)` (zip), with a sixth
/// item, the view metadata, in legacy files.
fn parse_pid(graph: &Graph, pid: &Value, legacy: bool) -> Result<StorageSpec> {
    let r = |v| graph.resolve(v);
    let bad = |what: &str| {
        Error::invalid(format!(
            "expected a persistent id ('storage', storage class, key, location, size), found {what}"
        ))
    };
    let Value::Tuple(items) = r(pid) else {
        return Err(bad(&format!("a {}", r(pid).type_name())));
    };
    let want = if legacy { 6 } else { 5 };
    if items.len() != want {
        return Err(bad(&format!("a tuple of {} items", items.len())));
    }
    if text(r(&items[0])).as_deref() != Some("storage") {
        return Err(bad(&format!("the kind {:?}", r(&items[0]))));
    }
    let dtype = match r(&items[1]) {
        Value::Global(g) if g.name == "UntypedStorage" => DType::UInt8,
        Value::Global(g) => DType::from_storage_class(&g.name).ok_or_else(|| {
            Error::invalid(format!(
                "storage class `{g}` is not supported (quantized storages are not)"
            ))
        })?,
        other => return Err(bad(&format!("the storage class {other:?}"))),
    };
    let key = text(r(&items[2])).ok_or_else(|| bad("a key that is no str"))?;
    let device = text(r(&items[3])).ok_or_else(|| bad("a location that is no str"))?;
    let numel = r(&items[4])
        .as_i64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| bad(&format!("the size {:?}", r(&items[4]))))?;
    if legacy && !matches!(r(&items[5]), Value::None) {
        return Err(Error::invalid(format!(
            "storage '{key}' is a view of another storage (view metadata), which torch stopped writing before 1.0 and reduce::torch does not read"
        )));
    }
    Ok(StorageSpec {
        key,
        dtype,
        device,
        numel,
    })
}

/// Every storage the object names, by key, in first-named order.
fn storage_specs(graph: &Graph, legacy: bool) -> Result<Vec<StorageSpec>> {
    let mut specs: Vec<StorageSpec> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    // Depth first from the root, entering each shared object where it is
    // first reached: the order in which the pickle was written.
    let mut seen = vec![false; graph.objects().len()];
    let mut stack: Vec<&Value> = vec![graph.root()];
    let mut pids = Vec::new();
    while let Some(v) = stack.pop() {
        match v {
            Value::PersistentId(pid) => pids.push(&pid.pid),
            Value::Ref(id) => {
                if let Some(false) = seen.get(id.index()) {
                    seen[id.index()] = true;
                    stack.push(graph.get(*id));
                }
            }
            _ => {
                let mut children = Vec::new();
                v.for_each_child(|c| children.push(c));
                stack.extend(children.into_iter().rev());
            }
        }
    }
    for pid in pids {
        let spec = parse_pid(graph, pid, legacy)?;
        match index.get(&spec.key) {
            Some(&i) => {
                let seen = &specs[i];
                if seen.dtype != spec.dtype || seen.numel != spec.numel {
                    return Err(Error::invalid(format!(
                        "storage '{}' is named as {} {} and as {} {} (torch refuses to save one storage as two types)",
                        spec.key, seen.numel, seen.dtype, spec.numel, spec.dtype
                    )));
                }
            }
            None => {
                index.insert(spec.key.clone(), specs.len());
                specs.push(spec);
            }
        }
    }
    Ok(specs)
}

/// The member of a torch zip archive that `torch.load` reads as `record`
/// (`data.pkl`, `byteorder`, `data/0`), given the archive's member names
/// in central-directory order.
///
/// torch's reader (`PyTorchStreamReader`) puts every record in the folder
/// of the archive's first member, and looks names up with miniz, which
/// ignores ASCII case: `archive/DATA.PKL` is read as `archive/data.pkl`,
/// `archive/Data/0` as storage `0`, and so is `ARCHIVE/DATA.PKL` (though
/// `torch.load`, listing the records, then refuses an archive whose
/// members do not all start with the first one's folder byte for byte;
/// this lookup does not check that). An archive whose first member is in
/// no folder, which torch refuses, is read from its top level.
///
/// `Ok(None)` when no member matches. Two members that differ only in
/// case are an error: torch's binary search may find either, so which one
/// it loads is not known.
pub fn archive_member<'a>(names: &[&'a str], record: &str) -> Result<Option<&'a str>> {
    let prefix = archive_folder(names);
    let want = format!("{prefix}{record}");
    let mut found = names.iter().filter(|n| n.eq_ignore_ascii_case(&want));
    let first = found.next().copied();
    if let Some(other) = found.next() {
        return Err(Error::invalid(format!(
            "the archive holds both `{}` and `{other}`, which torch does not tell apart (it finds {want} without regard to case): which one it loads is not known",
            first.unwrap_or_default()
        )));
    }
    Ok(first)
}

/// The folder of the archive's first member, with its slash: where torch
/// looks for every record. Empty when that member is in no folder.
fn archive_folder<'a>(names: &[&'a str]) -> &'a str {
    names
        .first()
        .and_then(|first| first.find('/').map(|slash| &first[..=slash]))
        .unwrap_or("")
}

fn read_zip<R: Read + Seek>(reader: R, len: u64) -> Result<Checkpoint> {
    let mut zip = zip::ZipArchive::new(reader).map_err(zip_error)?;
    // torch names the archive's one folder after the file (`model/` for
    // model.pt; `archive/` when it wrote to a buffer), and finds its
    // records there whatever their case.
    let names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let prefix = archive_folder(&names);
    let pickle_name = archive_member(&names, "data.pkl")?
        .ok_or_else(|| Error::invalid(format!("expected a torch checkpoint with {prefix}data.pkl, found a zip archive without one (a TorchScript archive has code/ and constants.pkl: torch.jit.load reads those)")))?;
    let pickle = read_entry(&mut zip, pickle_name, None, len)?;
    let big_endian = match archive_member(&names, "byteorder")? {
        None => false,
        Some(name) => match read_entry(&mut zip, name, Some(16), len)?.as_slice() {
            b"little" => false,
            b"big" => true,
            other => {
                return Err(Error::invalid(format!(
                    "expected byteorder 'little' or 'big', found {:?}",
                    String::from_utf8_lossy(other)
                )))
            }
        },
    };
    let (graph, _) = load_object(&pickle)?;
    let specs = storage_specs(&graph, false)?;
    let mut storages = Vec::with_capacity(specs.len());
    for spec in specs {
        let nbytes = spec.nbytes()?;
        let Some(name) = archive_member(&names, &format!("data/{}", spec.key))? else {
            return Err(Error::invalid(format!(
                "storage '{}' is named in data.pkl but the archive has no {prefix}data/{}",
                spec.key, spec.key
            )));
        };
        let mut data = read_entry(&mut zip, name, Some(nbytes), len)?;
        if data.len() != nbytes {
            return Err(Error::invalid(format!(
                "expected {nbytes} bytes in {name} ({} {}), found {}",
                spec.numel,
                spec.dtype,
                data.len()
            )));
        }
        if big_endian {
            swap_to_little(&mut data, spec.dtype);
        }
        storages.push(Arc::new(Storage::with_key(
            spec.key,
            spec.dtype,
            spec.device,
            data,
        )?));
    }
    Converter::new(&graph, storages, Format::Zip).run()
}

/// How many times its compressed size a compressed member may inflate to,
/// above [`INFLATE_FLOOR`] (see [`inflate_cap`]).
const INFLATE_RATIO: u64 = 100;

/// The size to which any compressed member may inflate, whatever its
/// ratio.
const INFLATE_FLOOR: u64 = 64 << 20;

/// The most bytes [`load`](crate::torch::load) inflates a compressed zip
/// member of `compressed` bytes to: 100 times its size, and 64 MiB
/// whatever its size. A member that inflates further is refused as a zip
/// bomb, before it fills memory. (Deflate reaches about 1000 times on
/// repeated bytes, pickles and tensors hardly a tenth of that, and torch
/// stores its members uncompressed.)
///
/// ```
/// assert_eq!(reduce::torch::inflate_cap(1 << 20), 100 << 20);
/// assert_eq!(reduce::torch::inflate_cap(1), 64 << 20);
/// ```
pub fn inflate_cap(compressed: u64) -> u64 {
    compressed.saturating_mul(INFLATE_RATIO).max(INFLATE_FLOOR)
}

/// An entry's bytes, at most `max + 1` of them when `max` is given (so that
/// a short or long entry is found without trusting its header), and never
/// more than [`inflate_cap`] of a compressed entry.
fn read_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    max: Option<usize>,
    file_len: u64,
) -> Result<Vec<u8>> {
    let entry = zip.by_name(name).map_err(zip_error)?;
    let mut out = Vec::new();
    let stored = entry.compression() == zip::CompressionMethod::Stored;
    // A stored entry's bytes are in the file: reserving them at once is
    // justified by the file's length, and saves growing a large buffer.
    if stored && entry.size() <= file_len {
        let want = max.map_or(entry.size(), |m| entry.size().min(m as u64));
        out.reserve_exact(usize::try_from(want).unwrap_or(0));
    }
    let cap = if stored {
        u64::MAX
    } else {
        inflate_cap(entry.compressed_size())
    };
    let compressed = entry.compressed_size();
    let want = max
        .map_or(u64::MAX, |m| m as u64 + 1)
        .min(cap.saturating_add(1));
    entry.take(want).read_to_end(&mut out)?;
    if out.len() as u64 > cap {
        return Err(Error::invalid(format!(
            "the zip member {name} inflates past {cap} bytes from {compressed}, more than {INFLATE_RATIO} times its size: refused as a zip bomb"
        )));
    }
    Ok(out)
}

fn zip_error(e: zip::result::ZipError) -> Error {
    match e {
        zip::result::ZipError::Io(e) => Error::from(e),
        other => Error::invalid(format!("expected a torch zip archive: {other}")),
    }
}

/// Storages of a big-endian machine, turned little-endian element by
/// element (complex numbers are two floats, each swapped).
fn swap_to_little(data: &mut [u8], dtype: DType) {
    let size = match dtype {
        DType::Complex64 => 4,
        DType::Complex128 => 8,
        d => d.element_size(),
    };
    for chunk in data.chunks_exact_mut(size) {
        chunk.reverse();
    }
}

fn read_legacy(mut bytes: Vec<u8>) -> Result<Checkpoint> {
    if bytes.len() > 262 && &bytes[257..262] == b"ustar" {
        return Err(Error::invalid(
            "expected a torch checkpoint, found a tar archive (the format of torch before 0.4), which reduce::torch does not read",
        ));
    }
    let mut pos = 0usize;
    let next = |what: &str, pos: &mut usize| -> Result<Value> {
        // Inert, so that a file that is not a checkpoint is told so by what
        // it holds rather than by the first global it names.
        let mut u = Unpickler::from_slice(&bytes[*pos..]).inert(true);
        let v = u.load::<Value>().map_err(|e| {
            Error::invalid(format!(
                "expected a torch checkpoint (a zip archive, or the legacy stream of pickles): reading its {what} at byte {}: {e}",
                *pos
            ))
        })?;
        *pos += u.position();
        Ok(v)
    };
    // As a graph: a file that is not a checkpoint may hold a cycle.
    let mut u = Unpickler::from_slice(&bytes).inert(true);
    let graph = u.load_graph().map_err(|e| {
        Error::invalid(format!(
            "expected a torch checkpoint (a zip archive, or the legacy stream of pickles): reading its magic number at byte 0: {e}"
        ))
    })?;
    pos += u.position();
    let magic = match graph.root() {
        Value::Ref(id) => graph.get(*id),
        v => v,
    };
    if *magic != Value::BigInt(Box::new(BigInt::from(LEGACY_MAGIC))) {
        let found = match magic {
            Value::Int(_) | Value::BigInt(_) => format!("{magic:?}"),
            v => crate::text::a(v.type_name()),
        };
        return Err(Error::invalid(format!(
            "expected a torch checkpoint (a zip archive, or the legacy stream of pickles that begins with torch's magic number {LEGACY_MAGIC}), found a pickle of {found}"
        )));
    }
    let proto = next("protocol version", &mut pos)?;
    if proto.as_i64() != Some(LEGACY_PROTOCOL) {
        return Err(Error::invalid(format!(
            "expected legacy protocol version {LEGACY_PROTOCOL}, found {proto:?}"
        )));
    }
    let _sys_info = next("system information", &mut pos)?;
    let (graph, used) = load_object(&bytes[pos..])?;
    pos += used;
    let keys = next("storage keys", &mut pos)?;
    let keys = keys.into_items().map_err(|v| {
        Error::invalid(format!(
            "expected the list of storage keys, found {}",
            crate::text::a(v.type_name())
        ))
    })?;
    let specs = storage_specs(&graph, true)?;
    let mut by_key: HashMap<&str, &StorageSpec> =
        specs.iter().map(|s| (s.key.as_str(), s)).collect();
    // Where each storage's bytes are, checked before any is moved.
    let mut ranges: Vec<(String, std::ops::Range<usize>)> = Vec::with_capacity(keys.len());
    for key in &keys {
        let key = text(key).ok_or_else(|| Error::invalid("expected str storage keys"))?;
        let spec = by_key.remove(key.as_str()).ok_or_else(|| {
            Error::invalid(format!(
                "storage '{key}' is in the key list but the object does not name it (or names it twice)"
            ))
        })?;
        let nbytes = spec.nbytes()?;
        // Each storage: its element count as a little-endian int64, then
        // its bytes, little-endian (torch swaps on big-endian machines).
        let header = bytes.get(pos..pos + 8).ok_or_else(|| truncated(&key))?;
        let numel = u64::from_le_bytes(header.try_into().unwrap_or_default());
        if numel != spec.numel as u64 {
            return Err(Error::invalid(format!(
                "storage '{key}': the object says {} elements, the file {numel}",
                spec.numel
            )));
        }
        pos += 8;
        let end = pos
            .checked_add(nbytes)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| truncated(&key))?;
        ranges.push((key, pos..end));
        pos = end;
    }
    if let Some(missing) = by_key.keys().next() {
        return Err(Error::invalid(format!(
            "storage '{missing}' is named by the object but missing from the key list"
        )));
    }
    // The storages are cut off the end of the file's buffer, last first, so
    // the file and its storages are never in memory twice over.
    let mut data_of: HashMap<String, Vec<u8>> = HashMap::with_capacity(ranges.len());
    for (key, range) in ranges.into_iter().rev() {
        bytes.truncate(range.end);
        let data = bytes.split_off(range.start);
        bytes.shrink_to_fit();
        data_of.insert(key, data);
    }
    let storages = specs
        .into_iter()
        .map(|s| {
            let data = data_of.remove(&s.key).unwrap_or_default();
            Storage::with_key(s.key, s.dtype, s.device, data).map(Arc::new)
        })
        .collect::<Result<Vec<_>>>()?;
    Converter::new(&graph, storages, Format::Legacy).run()
}

fn truncated(key: &str) -> Error {
    Error::invalid(format!("the file ends inside storage '{key}'"))
}

/// Turns the loaded graph into [`Object`]s.
struct Converter<'g> {
    graph: &'g Graph,
    storages: Vec<Arc<Storage>>,
    by_key: HashMap<String, usize>,
    format: Format,
    /// Shared objects being converted: a reference back to one is a cycle.
    open: Vec<bool>,
    /// Objects made so far, against `budget`.
    made: usize,
    budget: usize,
}

impl<'g> Converter<'g> {
    fn new(graph: &'g Graph, storages: Vec<Arc<Storage>>, format: Format) -> Self {
        let by_key = storages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.key().to_owned(), i))
            .collect();
        // A shared object is converted at each place that names it; the
        // budget keeps a DAG that doubles at each level from growing into
        // an astronomically large tree.
        let budget = 1_000_000usize.max(16 * (graph.objects().len() + 1));
        Converter {
            graph,
            storages,
            by_key,
            format,
            open: vec![false; graph.objects().len()],
            made: 0,
            budget,
        }
    }

    fn run(mut self) -> Result<Checkpoint> {
        let root = self.object(self.graph.root(), 0)?;
        Ok(Checkpoint {
            root,
            format: self.format,
            storages: self.storages,
        })
    }

    fn object(&mut self, v: &Value, depth: usize) -> Result<Object> {
        if depth > MAX_DEPTH {
            return Err(Error::invalid(format!(
                "the checkpoint nests deeper than {MAX_DEPTH} levels"
            )));
        }
        // Each level recurses; a debug build's frames would overflow a
        // thread's stack long before the limit, so grow it on the heap.
        if depth.is_multiple_of(crate::base::limits::GROW_EVERY) {
            crate::base::limits::grow(|| self.object_here(v, depth))
        } else {
            self.object_here(v, depth)
        }
    }

    fn object_here(&mut self, v: &Value, depth: usize) -> Result<Object> {
        self.made += 1;
        if self.made > self.budget {
            return Err(Error::new(ErrorKind::Limit {
                limit: "max_tree_nodes",
                max: self.budget as u64,
            }));
        }
        let d = depth + 1;
        Ok(match v {
            Value::Ref(id) => return self.shared(*id, depth),
            Value::None => Object::None,
            Value::Bool(b) => Object::Bool(*b),
            Value::Int(i) => Object::Int(*i),
            Value::BigInt(i) => Object::BigInt((**i).clone()),
            Value::Float(x) => Object::Float(*x),
            Value::Str(s) => Object::Str(
                s.as_str()
                    .ok_or_else(|| {
                        Error::invalid("expected a str, found one with lone surrogates")
                    })?
                    .to_owned(),
            ),
            Value::Bytes(b) | Value::ByteArray(b) => Object::Bytes(b.clone()),
            Value::Tuple(items) => Object::Tuple(self.objects(items, d)?),
            Value::List(items) => Object::List(self.objects(items, d)?),
            Value::Set(items) => Object::Set(self.objects(items, d)?),
            Value::Dict(pairs) => Object::Dict(self.pairs(pairs, d)?),
            Value::Global(g) if g.module == "torch" => match DType::from_name(&g.name) {
                Some(dtype) => Object::DType(dtype),
                None => return Err(unsupported(&format!("the global `{g}` as a value"))),
            },
            Value::Global(g) => return Err(unsupported(&format!("the global `{g}` as a value"))),
            Value::Reduce(r) => {
                let Value::Global(g) = self.graph.resolve(&r.callable) else {
                    return Err(Error::invalid("expected a global to call"));
                };
                let args = match self.graph.resolve(&r.args) {
                    Value::Tuple(a) => a.as_slice(),
                    _ => return Err(Error::invalid("expected an argument tuple")),
                };
                let path = format!("{}.{}", g.module, g.name);
                let plain = r.state.is_none() && r.list_items.is_empty() && r.dict_items.is_empty();
                match path.as_str() {
                    "collections.OrderedDict" if args.is_empty() && r.list_items.is_empty() => {
                        let items = self.pairs(&r.dict_items, d)?;
                        let attrs = match &r.state {
                            None => None,
                            Some(s) => Some(Box::new(self.object(s, d)?)),
                        };
                        Object::OrderedDict { items, attrs }
                    }
                    "torch._utils._rebuild_tensor_v2"
                    | "torch._utils._rebuild_tensor"
                    | "torch._utils._rebuild_tensor_v3"
                        if plain =>
                    {
                        Object::Tensor(self.tensor(&path, args)?)
                    }
                    "torch._utils._rebuild_parameter"
                    | "torch._utils._rebuild_parameter_with_state"
                        if plain && args.len() >= 2 =>
                    {
                        let Object::Tensor(t) = self.object(&args[0], d)? else {
                            return Err(Error::invalid(format!("{path}: expected a tensor")));
                        };
                        let grad = self.bool_arg(&path, &args[1])?;
                        Object::Tensor(t.set_grad(grad, true))
                    }
                    "torch._tensor._rebuild_from_type_v2" if plain && args.len() == 4 => {
                        // A tensor rebuilt then given its class: only the
                        // plain classes are known here.
                        match self.graph.resolve(&args[1]) {
                            Value::Global(c)
                                if matches!(
                                    format!("{c}").as_str(),
                                    "torch.Tensor" | "torch.nn.parameter.Parameter"
                                ) => {}
                            other => {
                                return Err(unsupported(&format!("a tensor subclass {other:?}")))
                            }
                        }
                        let Value::Tuple(inner) = self.graph.resolve(&args[2]) else {
                            return Err(Error::invalid(format!(
                                "{path}: expected an argument tuple"
                            )));
                        };
                        let call = crate::value::Reduction::new(
                            args[0].clone(),
                            Value::Tuple(inner.clone()),
                        );
                        self.object(&Value::Reduce(Box::new(call)), d)?
                    }
                    "torch.Size" if plain && args.len() == 1 => {
                        let dims = self.ints(&path, &args[0])?;
                        Object::Size(dims)
                    }
                    "torch.device" if plain && !args.is_empty() && args.len() <= 2 => {
                        let kind = match self.graph.resolve(&args[0]) {
                            Value::Str(s) => s.to_string_lossy().into_owned(),
                            _ => return Err(Error::invalid("torch.device: expected a str")),
                        };
                        match args.get(1).map(|a| self.graph.resolve(a)) {
                            None | Some(Value::None) => Object::Device(kind),
                            Some(Value::Int(i)) => Object::Device(format!("{kind}:{i}")),
                            Some(_) => {
                                return Err(Error::invalid("torch.device: expected an int index"))
                            }
                        }
                    }
                    "builtins.complex" if plain && args.len() == 2 => {
                        match (
                            self.graph.resolve(&args[0]).as_f64(),
                            self.graph.resolve(&args[1]).as_f64(),
                        ) {
                            (Some(re), Some(im)) => Object::Complex(re, im),
                            _ => return Err(Error::invalid("complex: expected two floats")),
                        }
                    }
                    _ => return Err(unsupported(&format!("a call of `{path}` in this form"))),
                }
            }
            Value::PersistentId(_) => {
                return Err(unsupported("a storage outside a tensor"));
            }
            // Inert mode's record of effects; strict loading makes none.
            Value::FrozenSet(_) | Value::Buffer(_) | Value::Seq(_) => {
                return Err(unsupported(&format!("a {}", v.type_name())));
            }
        })
    }

    fn shared(&mut self, id: Id, depth: usize) -> Result<Object> {
        let graph = self.graph;
        let target = graph
            .objects()
            .get(id.index())
            .ok_or_else(|| Error::new(ErrorKind::DanglingRef(id.index() as u32)))?;
        if std::mem::replace(&mut self.open[id.index()], true) {
            return Err(Error::invalid(
                "the checkpoint holds a cycle, which reduce::torch's tree of objects cannot hold",
            ));
        }
        let r = self.object(target, depth);
        self.open[id.index()] = false;
        r
    }

    fn objects(&mut self, items: &[Value], depth: usize) -> Result<Vec<Object>> {
        items.iter().map(|v| self.object(v, depth)).collect()
    }

    fn pairs(&mut self, pairs: &[(Value, Value)], depth: usize) -> Result<Vec<(Object, Object)>> {
        pairs
            .iter()
            .map(|(k, v)| Ok((self.object(k, depth)?, self.object(v, depth)?)))
            .collect()
    }

    fn bool_arg(&self, path: &str, v: &Value) -> Result<bool> {
        match self.graph.resolve(v) {
            Value::Bool(b) => Ok(*b),
            other => Err(Error::invalid(format!(
                "{path}: expected a bool, found {}",
                crate::text::a(other.type_name())
            ))),
        }
    }

    fn ints(&self, path: &str, v: &Value) -> Result<Vec<i64>> {
        let bad = || Error::invalid(format!("{path}: expected a tuple of ints"));
        match self.graph.resolve(v) {
            Value::Tuple(items) => items
                .iter()
                .map(|i| self.graph.resolve(i).as_i64().ok_or_else(bad))
                .collect(),
            _ => Err(bad()),
        }
    }

    fn sizes(&self, path: &str, v: &Value) -> Result<Vec<usize>> {
        self.ints(path, v)?
            .into_iter()
            .map(|i| {
                usize::try_from(i).map_err(|_| {
                    Error::invalid(format!(
                        "{path}: expected sizes and strides of 0 or more, found {i}"
                    ))
                })
            })
            .collect()
    }

    /// `_rebuild_tensor(storage, offset, size, stride)`,
    /// `_rebuild_tensor_v2(..., requires_grad, backward_hooks[, metadata])`,
    /// `_rebuild_tensor_v3(..., requires_grad, backward_hooks, dtype[, metadata])`.
    fn tensor(&mut self, path: &str, args: &[Value]) -> Result<Tensor> {
        let arity_ok = match path {
            "torch._utils._rebuild_tensor" => args.len() == 4,
            "torch._utils._rebuild_tensor_v2" => matches!(args.len(), 6 | 7),
            _ => matches!(args.len(), 7 | 8),
        };
        if !arity_ok {
            return Err(Error::invalid(format!(
                "{path}: unexpected number of arguments ({})",
                args.len()
            )));
        }
        let storage = match self.graph.resolve(&args[0]) {
            Value::PersistentId(pid) => {
                let spec = parse_pid(self.graph, &pid.pid, self.format == Format::Legacy)?;
                let i = self.by_key.get(&spec.key).copied().ok_or_else(|| {
                    Error::invalid(format!("storage '{}' was not read", spec.key))
                })?;
                self.storages[i].clone()
            }
            other => {
                return Err(Error::invalid(format!(
                    "{path}: expected a storage (a persistent id), found {}",
                    crate::text::a(other.type_name())
                )))
            }
        };
        let offset = self
            .graph
            .resolve(&args[1])
            .as_i64()
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| Error::invalid(format!("{path}: expected an offset of 0 or more")))?;
        let shape = self.sizes(path, &args[2])?;
        let strides = self.sizes(path, &args[3])?;
        let requires_grad = match args.get(4) {
            Some(v) if args.len() > 4 => self.bool_arg(path, v)?,
            _ => false,
        };
        let dtype = if path.ends_with("_v3") {
            match self.graph.resolve(&args[6]) {
                Value::Global(g) if g.module == "torch" => DType::from_name(&g.name)
                    .ok_or_else(|| unsupported(&format!("the dtype `{g}`")))?,
                other => {
                    return Err(Error::invalid(format!(
                        "{path}: expected a dtype, found {other:?}"
                    )))
                }
            }
        } else {
            storage.dtype()
        };
        Ok(
            Tensor::from_storage(storage, dtype, &shape, &strides, offset)?
                .set_grad(requires_grad, false),
        )
    }
}

fn unsupported(what: &str) -> Error {
    Error::invalid(format!(
        "{what} is allowed by torch's weights_only loader but reduce::torch does not rebuild it (sparse, quantized, nested and subclassed tensors are not read)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::torch::save::{pieces, ZipOut};

    /// An archive as a big-endian machine's torch writes it: `byteorder`
    /// says `big` and the storages are big-endian.
    #[test]
    fn big_endian_storages_are_swapped() {
        let le: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let t = Tensor::new(Storage::new(DType::Float32, le).unwrap(), &[2]).unwrap();
        let p = pieces(&[("x".to_string(), t)]).unwrap();
        let be: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|x| x.to_be_bytes())
            .collect();
        let mut file = Vec::new();
        let mut zip = ZipOut::new(&mut file);
        zip.entry("archive/data.pkl", &p.pickle).unwrap();
        zip.entry("archive/byteorder", b"big").unwrap();
        zip.entry("archive/data/0", &be).unwrap();
        zip.finish().unwrap();
        let ck = from_reader(std::io::Cursor::new(&file)).unwrap();
        let sd = ck.state_dict().unwrap();
        assert_eq!(sd[0].1.to_vec::<f32>().unwrap(), [1.5, -2.0]);

        let mut file = Vec::new();
        let mut zip = ZipOut::new(&mut file);
        zip.entry("archive/data.pkl", &p.pickle).unwrap();
        zip.entry("archive/byteorder", b"middle").unwrap();
        zip.finish().unwrap();
        let err = from_reader(std::io::Cursor::new(&file)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected byteorder 'little' or 'big', found \"middle\""
        );
    }

    #[test]
    fn a_storage_missing_from_the_archive_is_named() {
        let t = Tensor::new(Storage::new(DType::UInt8, vec![1, 2]).unwrap(), &[2]).unwrap();
        let p = pieces(&[("x".to_string(), t)]).unwrap();
        let mut file = Vec::new();
        let mut zip = ZipOut::new(&mut file);
        zip.entry("m/data.pkl", &p.pickle).unwrap();
        zip.finish().unwrap();
        let err = from_reader(std::io::Cursor::new(&file)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "storage '0' is named in data.pkl but the archive has no m/data/0"
        );
    }

    /// torch finds its records without regard to case, in the folder of
    /// the first member: so does the loader, storages and byteorder too.
    #[test]
    fn records_are_found_whatever_their_case() {
        let t = Tensor::new(Storage::new(DType::Float32, vec![0; 8]).unwrap(), &[2]).unwrap();
        let p = pieces(&[("x".to_string(), t)]).unwrap();
        let be: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|x| x.to_be_bytes())
            .collect();
        let mut file = Vec::new();
        let mut zip = ZipOut::new(&mut file);
        zip.entry("model/DATA.PKL", &p.pickle).unwrap();
        zip.entry("model/ByteOrder", b"big").unwrap();
        zip.entry("model/Data/0", &be).unwrap();
        zip.finish().unwrap();
        let ck = from_reader(std::io::Cursor::new(&file)).unwrap();
        let sd = ck.state_dict().unwrap();
        assert_eq!(sd[0].1.to_vec::<f32>().unwrap(), [1.5, -2.0]);

        // Two members torch cannot tell apart: either could be loaded.
        let mut file = Vec::new();
        let mut zip = ZipOut::new(&mut file);
        zip.entry("archive/data.pkl", &p.pickle).unwrap();
        zip.entry("archive/DATA.pkl", &p.pickle).unwrap();
        zip.finish().unwrap();
        let err = from_reader(std::io::Cursor::new(&file)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the archive holds both `archive/data.pkl` and `archive/DATA.pkl`, which torch does not tell apart (it finds archive/data.pkl without regard to case): which one it loads is not known"
        );
    }

    /// The folder is the first member's: a data.pkl in another folder is
    /// not the one torch reads.
    #[test]
    fn records_are_in_the_first_members_folder() {
        let names = ["b/version", "a/data.pkl", "B/Data.pkl", "b/data/0"];
        assert_eq!(
            archive_member(&names, "data.pkl").unwrap(),
            Some("B/Data.pkl")
        );
        assert_eq!(archive_member(&names, "DATA/0").unwrap(), Some("b/data/0"));
        assert_eq!(archive_member(&names, "byteorder").unwrap(), None);
        assert_eq!(
            archive_member(&["a/data.pkl"][..0], "data.pkl").unwrap(),
            None
        );
        // No folder (torch refuses the archive): the top level.
        assert_eq!(
            archive_member(&["data.pkl", "x/data.pkl"], "data.pkl").unwrap(),
            Some("data.pkl")
        );

        let t = Tensor::new(Storage::new(DType::UInt8, vec![1, 2]).unwrap(), &[2]).unwrap();
        let p = pieces(&[("x".to_string(), t)]).unwrap();
        let mut file = Vec::new();
        let mut zip = ZipOut::new(&mut file);
        zip.entry("other/version", b"3").unwrap();
        zip.entry("model/data.pkl", &p.pickle).unwrap();
        zip.entry("model/data/0", &[1, 2]).unwrap();
        zip.finish().unwrap();
        let err = from_reader(std::io::Cursor::new(&file)).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "expected a torch checkpoint with other/data.pkl, found a zip archive without one"
            ),
            "{err}"
        );
    }
}
