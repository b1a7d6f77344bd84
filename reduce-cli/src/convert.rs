//! `reduce convert`: a torch checkpoint (zip or legacy) to a safetensors
//! file, loading only what torch's `weights_only` allow-list allows.
//!
//! The writing side works from [`Tensor`] (name, dtype, shape, bytes). The
//! reading side, [`load`], is an interim torch reader that stands in for
//! `reduce::torch` until it lands: it checks every global of the
//! checkpoint's pickles against the `torch` preset, loads them inert, and
//! cuts each tensor out of its storage.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;

use reduce::{Graph, Unpickler, Value};

use crate::pickles::{self, Target};
use crate::policy::{self, AllowList};

/// Element types safetensors can hold and torch storages name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    fn from_storage(name: &str) -> Option<Dtype> {
        Some(match name {
            "DoubleStorage" => Dtype::F64,
            "FloatStorage" => Dtype::F32,
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::BF16,
            "LongStorage" => Dtype::I64,
            "IntStorage" => Dtype::I32,
            "ShortStorage" => Dtype::I16,
            "CharStorage" => Dtype::I8,
            "ByteStorage" => Dtype::U8,
            "BoolStorage" => Dtype::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    fn safetensors(self) -> safetensors::Dtype {
        use safetensors::Dtype as S;
        match self {
            Dtype::F64 => S::F64,
            Dtype::F32 => S::F32,
            Dtype::F16 => S::F16,
            Dtype::BF16 => S::BF16,
            Dtype::I64 => S::I64,
            Dtype::I32 => S::I32,
            Dtype::I16 => S::I16,
            Dtype::I8 => S::I8,
            Dtype::U8 => S::U8,
            Dtype::Bool => S::BOOL,
        }
    }
}

/// One tensor, contiguous, in little-endian bytes: what `convert` writes.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Its key in the state dict, nested keys joined with `.`.
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl safetensors::View for &Tensor {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype.safetensors()
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes `tensors` to `out` as safetensors.
pub fn write(tensors: &[Tensor], out: &Path) -> Result<(), String> {
    let views = tensors.iter().map(|t| (t.name.clone(), t));
    safetensors::serialize_to_file(views, &None, out)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))
}

/// The storages of a checkpoint, by key.
struct Storages {
    data: HashMap<String, Vec<u8>>,
}

/// Reads the tensors of a torch checkpoint, refusing any global outside
/// torch's `weights_only` allow-list. Values that are not tensors (epoch
/// counters, strings) are left out; `skipped` counts them.
pub fn load(bytes: &[u8], skipped: &mut Vec<String>) -> Result<Vec<Tensor>, String> {
    let mut allow = AllowList::default();
    allow.add("torch")?;
    let (pickle, storages) = if bytes.starts_with(b"PK\x03\x04") {
        zip_checkpoint(bytes)?
    } else {
        legacy_checkpoint(bytes)?
    };
    check(&pickle, &allow)?;
    let graph: Graph = Unpickler::from_slice(&pickle)
        .inert(true)
        .load()
        .map_err(|e| format!("data.pkl: {e}"))?;
    let mut out = Vec::new();
    walk(
        &graph,
        graph.root(),
        String::new(),
        &storages,
        &mut out,
        skipped,
        0,
    )?;
    Ok(out)
}

/// Refuses a pickle that names anything outside the allow-list.
fn check(pickle: &[u8], allow: &AllowList) -> Result<(), String> {
    let (found, end) = pickles::scan_one(pickle);
    for r in found {
        match r.named {
            Target::Global { module, name } => {
                if let Some(reason) = policy::danger(&module, &name) {
                    return Err(format!(
                        "refusing the checkpoint: `{module}.{name}` at byte {} can run code ({reason})",
                        r.offset
                    ));
                }
                if !allow.contains(&module, &name) {
                    return Err(format!(
                        "refusing the checkpoint: `{module}.{name}` at byte {} is not in torch's weights_only allow-list",
                        r.offset
                    ));
                }
            }
            Target::Extension(code) => {
                return Err(format!(
                    "refusing the checkpoint: extension code {code} at byte {}",
                    r.offset
                ))
            }
            Target::Computed => {
                return Err(format!(
                    "refusing the checkpoint: a computed global at byte {}",
                    r.offset
                ))
            }
        }
    }
    end.map(|_| ()).map_err(|e| format!("data.pkl: {e}"))
}

fn zip_checkpoint(bytes: &[u8]) -> Result<(Vec<u8>, Storages), String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a readable zip archive: {e}"))?;
    let names: Vec<String> = archive.file_names().map(str::to_string).collect();
    let pkl = names
        .iter()
        .find(|n| n.ends_with("data.pkl"))
        .ok_or("expected a torch zip checkpoint (a member named .../data.pkl), found none")?
        .clone();
    let prefix = format!("{}data/", pkl.trim_end_matches("data.pkl"));
    let mut read = |name: &str| -> Result<Vec<u8>, String> {
        let mut f = archive
            .by_name(name)
            .map_err(|e| format!("zip member {name}: {e}"))?;
        let mut data = Vec::with_capacity(f.size().min(bytes.len() as u64 * 4) as usize);
        let size = f.size();
        (&mut f)
            .take(size)
            .read_to_end(&mut data)
            .map_err(|e| format!("zip member {name}: cannot inflate: {e}"))?;
        Ok(data)
    };
    if let Some(order) = names.iter().find(|n| n.ends_with("byteorder")) {
        let order = read(order)?;
        if order.trim_ascii() != b"little" {
            return Err(format!(
                "expected a little-endian checkpoint, found byteorder {:?}",
                String::from_utf8_lossy(&order)
            ));
        }
    }
    let pickle = read(&pkl)?;
    let mut data = HashMap::new();
    for name in names.iter().filter(|n| n.starts_with(&prefix)) {
        data.insert(name[prefix.len()..].to_string(), read(name)?);
    }
    Ok((pickle, Storages { data }))
}

/// A checkpoint written with `_use_new_zipfile_serialization=False`: five
/// pickles (magic number, protocol, system info, the object, the storage
/// keys), then each storage as an 8-byte element count and its bytes.
fn legacy_checkpoint(bytes: &[u8]) -> Result<(Vec<u8>, Storages), String> {
    let mut pos = 0usize;
    let mut pickles_ = Vec::new();
    for _ in 0..5 {
        let (_, end) = pickles::scan_one(&bytes[pos..]);
        let n = end.map_err(|e| {
            format!(
                "expected a torch checkpoint (zip, or five pickles then storages), at byte {pos}: {e}"
            )
        })?;
        pickles_.push(&bytes[pos..pos + n]);
        pos += n;
    }
    let magic: Value = reduce::from_slice(pickles_[0]).map_err(|e| format!("magic number: {e}"))?;
    if magic != Value::int(0x1950a86a20f9469cfc6cu128) {
        return Err(format!(
            "expected torch's magic number in the first pickle, found {magic:?}"
        ));
    }
    let keys: Vec<String> =
        reduce::from_slice(pickles_[4]).map_err(|e| format!("storage keys: {e}"))?;
    let pickle = pickles_[3].to_vec();
    // Each storage's element size comes from its type in the object
    // pickle's persistent ids.
    let graph: Graph = Unpickler::from_slice(&pickle)
        .inert(true)
        .load()
        .map_err(|e| format!("the object pickle: {e}"))?;
    let mut sizes = HashMap::new();
    collect_storage_types(&graph, &mut sizes);
    let mut data = HashMap::new();
    for key in keys {
        let count = bytes
            .get(pos..pos + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .ok_or_else(|| format!("storage {key}: its size at byte {pos} runs past the end"))?;
        pos += 8;
        let size = *sizes
            .get(&key)
            .ok_or_else(|| format!("storage {key} is listed but no tensor names its type"))?;
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(size))
            .filter(|&l| l <= bytes.len() - pos)
            .ok_or_else(|| {
                format!("storage {key} at byte {pos}: {count} elements run past the end")
            })?;
        data.insert(key, bytes[pos..pos + len].to_vec());
        pos += len;
    }
    Ok((pickle, Storages { data }))
}

fn collect_storage_types(graph: &Graph, sizes: &mut HashMap<String, usize>) {
    let mut stack = vec![graph.root()];
    stack.extend(graph.objects());
    while let Some(v) = stack.pop() {
        if let Value::PersistentId(p) = v {
            if let Some((dtype, key)) = storage_id(graph, p) {
                sizes.insert(key, dtype.size());
            }
        }
        match v {
            Value::Tuple(t) | Value::List(t) => stack.extend(t),
            Value::Dict(d) => stack.extend(d.iter().flat_map(|(k, v)| [k, v])),
            Value::Reduce(r) => {
                stack.push(&r.args);
                stack.extend(&r.state);
                stack.extend(r.dict_items.iter().flat_map(|(k, v)| [k, v]));
                stack.extend(&r.list_items);
            }
            _ => {}
        }
    }
}

/// `('storage', torch.FloatStorage, key, location, numel)`: dtype and key.
fn storage_id(graph: &Graph, pid: &Value) -> Option<(Dtype, String)> {
    let items = graph.resolve(pid).as_items()?;
    if graph.resolve(items.first()?).as_str()? != "storage" {
        return None;
    }
    let dtype = match graph.resolve(items.get(1)?) {
        Value::Global(g) if g.module == "torch" => Dtype::from_storage(&g.name)?,
        _ => return None,
    };
    let key = match graph.resolve(items.get(2)?) {
        Value::Str(s) => s.to_string_lossy().into_owned(),
        Value::Int(i) => i.to_string(),
        _ => return None,
    };
    Some((dtype, key))
}

fn ints(graph: &Graph, v: &Value, what: &str) -> Result<Vec<i64>, String> {
    let items = graph.resolve(v).as_items().ok_or_else(|| {
        format!(
            "expected a tuple for the {what}, found {}",
            graph.resolve(v).type_name()
        )
    })?;
    items
        .iter()
        .map(|i| {
            graph
                .resolve(i)
                .as_i64()
                .ok_or_else(|| format!("expected ints in the {what}"))
        })
        .collect()
}

/// The dict items of a state dict: a `dict`, or an `OrderedDict` reduction.
fn dict_items<'a>(graph: &'a Graph, v: &'a Value) -> Option<&'a [(Value, Value)]> {
    match graph.resolve(v) {
        Value::Dict(d) => Some(d),
        Value::Reduce(r) => match graph.resolve(&r.callable) {
            Value::Global(g) if g.module == "collections" && g.name == "OrderedDict" => {
                Some(&r.dict_items)
            }
            _ => None,
        },
        _ => None,
    }
}

fn walk(
    graph: &Graph,
    v: &Value,
    name: String,
    storages: &Storages,
    out: &mut Vec<Tensor>,
    skipped: &mut Vec<String>,
    depth: usize,
) -> Result<(), String> {
    if depth > 64 {
        return Err(format!("{name}: nested more than 64 dicts deep"));
    }
    if let Some(items) = dict_items(graph, v) {
        for (k, item) in items {
            let key = match graph.resolve(k) {
                Value::Str(s) => s.to_string_lossy().into_owned(),
                other => format!("{other:?}"),
            };
            let full = if name.is_empty() {
                key
            } else {
                format!("{name}.{key}")
            };
            walk(graph, item, full, storages, out, skipped, depth + 1)?;
        }
        return Ok(());
    }
    match tensor(graph, v, &name, storages)? {
        Some(t) => out.push(t),
        None => skipped.push(name),
    }
    Ok(())
}

/// A `_rebuild_tensor_v2(storage, offset, size, stride, ...)` (or a
/// `_rebuild_parameter` around one), cut out of its storage.
fn tensor<'a>(
    graph: &'a Graph,
    mut v: &'a Value,
    name: &str,
    storages: &Storages,
) -> Result<Option<Tensor>, String> {
    // A parameter wraps a tensor; a loop, not recursion, unwraps any
    // number of them.
    loop {
        let Value::Reduce(r) = graph.resolve(v) else {
            return Ok(None);
        };
        let Value::Global(g) = graph.resolve(&r.callable) else {
            return Ok(None);
        };
        let args: &'a [Value] = graph.resolve(&r.args).as_items().unwrap_or_default();
        match (g.module.as_str(), g.name.as_str()) {
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                v = args
                    .first()
                    .ok_or_else(|| format!("{name}: _rebuild_parameter without a tensor"))?;
            }
            ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2") => {
                return rebuild(graph, args, name, storages).map(Some)
            }
            (m, n) => {
                return Err(format!(
                    "{name}: `{m}.{n}` is allowed but not a tensor convert can write"
                ))
            }
        }
    }
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`, cut out of its
/// storage.
fn rebuild(
    graph: &Graph,
    args: &[Value],
    name: &str,
    storages: &Storages,
) -> Result<Tensor, String> {
    let [pid, offset, size, stride, ..] = args else {
        return Err(format!(
            "{name}: expected (storage, offset, size, stride, ...), found {} arguments",
            args.len()
        ));
    };
    let Value::PersistentId(pid) = graph.resolve(pid) else {
        return Err(format!("{name}: expected a storage persistent id"));
    };
    let (dtype, key) = storage_id(graph, pid).ok_or_else(|| {
        format!(
            "{name}: expected ('storage', torch.<Type>Storage, key, ...), found {:?}",
            graph.resolve(pid)
        )
    })?;
    let storage = storages
        .data
        .get(&key)
        .ok_or_else(|| format!("{name}: storage {key} is not in the checkpoint"))?;
    let offset = graph
        .resolve(offset)
        .as_i64()
        .ok_or_else(|| format!("{name}: expected an int storage offset"))?;
    let size = ints(graph, size, "size")?;
    let stride = ints(graph, stride, "stride")?;
    gather(name, dtype, storage, offset, &size, &stride)
}

/// Copies the elements of a strided view into contiguous bytes, checking
/// every index against the storage.
fn gather(
    name: &str,
    dtype: Dtype,
    storage: &[u8],
    offset: i64,
    size: &[i64],
    stride: &[i64],
) -> Result<Tensor, String> {
    let bad = |what: &str| format!("{name}: {what}");
    if size.len() != stride.len() || size.iter().chain(stride).any(|&x| x < 0) || offset < 0 {
        return Err(bad("expected as many sizes as strides, none negative"));
    }
    let el = dtype.size();
    let elements = storage.len() / el;
    let shape: Vec<usize> = size.iter().map(|&s| s as usize).collect();
    let count = shape
        .iter()
        .try_fold(1usize, |a, &s| a.checked_mul(s))
        .filter(|&c| c <= elements || shape.contains(&0))
        .ok_or_else(|| bad("more elements than its storage holds"))?;
    let mut data = Vec::with_capacity(count * el);
    let mut index = vec![0usize; shape.len()];
    for _ in 0..count {
        let at = index
            .iter()
            .zip(stride)
            .try_fold(offset as u64, |a, (&i, &s)| {
                a.checked_add((i as u64).checked_mul(s as u64)?)
            })
            .and_then(|a| usize::try_from(a).ok())
            .filter(|&a| a < elements)
            .ok_or_else(|| bad("a stride reaches past the end of its storage"))?;
        data.extend_from_slice(&storage[at * el..(at + 1) * el]);
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(Tensor {
        name: name.to_string(),
        dtype,
        shape,
        data,
    })
}
