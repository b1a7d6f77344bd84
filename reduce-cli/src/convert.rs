//! `reduce convert`: a torch checkpoint (zip or legacy) to a safetensors
//! file, loading only what torch's `weights_only` allow-list allows.
//!
//! Reading is `reduce::torch`, which refuses every global outside that
//! list by name and offset before anything is loaded; a refused global
//! that can run code is also said to. Writing is the `safetensors` crate,
//! from each tensor's bytes in row-major order.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use reduce::torch::{self, DType, Object};
use reduce::ErrorKind;

use crate::policy;

/// One tensor to write, under its name in the checkpoint (nested keys and
/// indices joined with `.`).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Its name: nested keys and indices joined with `.`.
    pub name: String,
    dtype: safetensors::Dtype,
    tensor: torch::Tensor,
}

impl Tensor {
    /// The size of its data in bytes.
    pub fn len(&self) -> usize {
        self.tensor.nbytes()
    }
}

impl safetensors::View for &Tensor {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        self.tensor.shape()
    }
    fn data(&self) -> Cow<'_, [u8]> {
        // `load` kept only tensors whose bytes can be gathered
        // (`check_gather`), so this does not fail.
        self.tensor.bytes().unwrap_or_default()
    }
    fn data_len(&self) -> usize {
        self.len()
    }
}

/// The safetensors dtype of a torch dtype; complex tensors have none.
fn safetensors_dtype(dtype: DType) -> Option<safetensors::Dtype> {
    use safetensors::Dtype as S;
    Some(match dtype {
        DType::Bool => S::BOOL,
        DType::UInt8 => S::U8,
        DType::Int8 => S::I8,
        DType::Int16 => S::I16,
        DType::Int32 => S::I32,
        DType::Int64 => S::I64,
        DType::UInt16 => S::U16,
        DType::UInt32 => S::U32,
        DType::UInt64 => S::U64,
        DType::Float16 => S::F16,
        DType::BFloat16 => S::BF16,
        DType::Float32 => S::F32,
        DType::Float64 => S::F64,
        DType::Float8E4M3Fn => S::F8_E4M3,
        DType::Float8E5M2 => S::F8_E5M2,
        _ => return None,
    })
}

/// Writes `tensors` to `out` as safetensors: to a new file beside it,
/// renamed to `out` once whole, so that an error leaves nothing behind and
/// an existing `out` is replaced only by a complete file.
pub fn write(tensors: &[Tensor], out: &Path) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", out.display());
    let Some(file_name) = out.file_name() else {
        return Err(fail(&"not a file name"));
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = out.with_file_name(tmp_name);
    let views = tensors.iter().map(|t| (t.name.clone(), t));
    let written = safetensors::serialize_to_file(views, &None, &tmp)
        .map_err(|e| match e {
            safetensors::SafeTensorError::IoError(e) => fail(&e),
            other => fail(&format!("{other:?}")),
        })
        .and_then(|()| std::fs::rename(&tmp, out).map_err(|e| fail(&e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Reads the tensors of a torch checkpoint with `reduce::torch`, which
/// refuses any global outside torch's `weights_only` allow-list. Tensors
/// are found through dicts, lists, tuples and sets, named by their keys
/// and indices joined with `.` (`model.fc.weight`, `lst.0`; a top-level
/// list's tensors are `0`, `1`, ...); anything else (epoch counters,
/// strings, a list of ints) is left out, and `skipped` names it. Fails if
/// two tensors would get one name, or a tensor the name `__metadata__`,
/// which safetensors reserves, or if a view's elements overlap so much
/// that writing them would take far more than the file holds. `path` is
/// the checkpoint's, for the commands an error suggests.
pub fn load(bytes: &[u8], path: &Path, skipped: &mut Vec<String>) -> Result<Vec<Tensor>, String> {
    let checkpoint = torch::from_slice(bytes).map_err(|e| refusal(e, path))?;
    let mut out = Vec::new();
    // Each name given, with the Python index of the tensor that has it.
    let mut named: HashMap<String, String> = HashMap::new();
    // Depth first, in the saved order, without recursion: each object's
    // name and its index from the root as Python writes it (['a'][0]).
    let mut stack: Vec<(String, String, &Object)> =
        vec![(String::new(), String::new(), checkpoint.root())];
    while let Some((name, at, obj)) = stack.pop() {
        if let Object::Tensor(t) = obj {
            let label = if name.is_empty() {
                "the saved tensor"
            } else {
                name.as_str()
            };
            let dtype = safetensors_dtype(t.dtype()).ok_or_else(|| {
                format!(
                    "{label}: safetensors has no dtype for torch.{}",
                    t.dtype().name()
                )
            })?;
            t.check_gather().map_err(|e| format!("{label}: {e}"))?;
            if name == "__metadata__" {
                return Err(format!(
                    "the tensor at {at} cannot be named `__metadata__`: safetensors keeps that name for the header's metadata"
                ));
            }
            // Only a tensor inside a container can share a name, so `at`
            // is never empty here.
            if let Some(first) = named.insert(name.clone(), at.clone()) {
                let whose = if first == at {
                    format!("the pickle sets {at} twice")
                } else {
                    format!("the one at {first} and the one at {at}")
                };
                return Err(format!(
                    "two tensors would be named `{name}` ({whose}); a safetensors file holds each name once"
                ));
            }
            out.push(Tensor {
                name,
                dtype,
                tensor: t.clone(),
            });
            continue;
        }
        if !holds_a_tensor(obj) {
            skipped.push(name);
            continue;
        }
        let children: Vec<(String, String, &Object)> = match obj {
            Object::Dict(items) | Object::OrderedDict { items, .. } => items
                .iter()
                .map(|(k, v)| (key_name(k), key_index(k), v))
                .collect(),
            Object::List(v) | Object::Tuple(v) | Object::Set(v) => v
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), format!("[{i}]"), v))
                .collect(),
            _ => Vec::new(),
        };
        for (key, index, v) in children.into_iter().rev() {
            let full = if name.is_empty() {
                key
            } else {
                format!("{name}.{key}")
            };
            stack.push((full, format!("{at}{index}"), v));
        }
    }
    Ok(out)
}

/// Whether a tensor is in `obj`, through dicts, lists, tuples and sets.
fn holds_a_tensor(obj: &Object) -> bool {
    let mut stack = vec![obj];
    while let Some(obj) = stack.pop() {
        match obj {
            Object::Tensor(_) => return true,
            Object::Dict(items) | Object::OrderedDict { items, .. } => {
                stack.extend(items.iter().map(|(_, v)| v));
            }
            Object::List(v) | Object::Tuple(v) | Object::Set(v) => stack.extend(v),
            _ => {}
        }
    }
    false
}

/// A dict key in a tensor's name: a `str` as it is, an `int` in decimal,
/// anything else by its type (`<float>`).
fn key_name(k: &Object) -> String {
    match k {
        Object::Str(s) => s.clone(),
        Object::Int(i) => i.to_string(),
        Object::BigInt(i) => i.to_string(),
        other => format!("<{}>", other.type_name()),
    }
}

/// A dict key as Python indexes by it, for messages: `['a']`, `[3]`,
/// `[1.5]`.
fn key_index(k: &Object) -> String {
    match k {
        Object::Str(s) => format!("['{s}']"),
        Object::Int(i) => format!("[{i}]"),
        Object::BigInt(i) => format!("[{i}]"),
        Object::Float(f) => format!("[{f:?}]"),
        Object::Bool(b) => format!("[{}]", if *b { "True" } else { "False" }),
        Object::None => "[None]".to_string(),
        other => format!("[<{}>]", other.type_name()),
    }
}

/// The loader's error, as a command-line user can act on it. The
/// library's advice for an unknown global (register a constructor, read
/// inertly) is for programs; `convert` has no option that allows a name,
/// so the message says which name was refused, whether it can run code,
/// and which commands show the checkpoint without loading it.
fn refusal(e: reduce::Error, path: &Path) -> String {
    let at = match (e.offset(), e.opcode_name()) {
        (Some(at), Some(op)) => format!(" (at byte {at}, {op})"),
        (Some(at), None) => format!(" (at byte {at})"),
        _ => String::new(),
    };
    let look = format!(
        "`reduce scan --allow torch {0}` lists every global it names, and `reduce show {0}` prints it without loading anything",
        path.display()
    );
    match e.kind() {
        ErrorKind::UnknownGlobal { module, name, .. } => {
            let danger = match policy::danger(module, name) {
                Some(reason) => format!("; `{module}.{name}` can run code: {reason}"),
                None => String::new(),
            };
            format!(
                "refused: the checkpoint names `{module}.{name}`{at}, which is not in torch's weights_only allow-list{danger}. convert loads only the names in that list and has no option to allow others (torch.load(weights_only=True) refuses it too); {look}"
            )
        }
        ErrorKind::UnknownExtension(code) => format!(
            "refused: the checkpoint names a global by extension code {code}{at}, which torch's weights_only loader refuses, and so does convert; {look}"
        ),
        _ => e.to_string(),
    }
}
