//! `reduce convert`: a torch checkpoint (zip or legacy) to a safetensors
//! file, loading only what torch's `weights_only` allow-list allows.
//!
//! Reading is `reduce::torch`, which refuses every global outside that
//! list by name and offset before anything is loaded; a refused global
//! that can run code is also said to. Writing is the `safetensors` crate,
//! from each tensor's bytes in row-major order.

use std::borrow::Cow;
use std::path::Path;

use reduce::torch::{self, DType, Object};
use reduce::ErrorKind;

use crate::policy;

/// One tensor to write, under its name in the state dict (nested keys
/// joined with `.`).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Its key, nested keys joined with `.`.
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
/// are found through dicts (nested keys joined with `.`); anything else
/// (epoch counters, strings, lists) is left out, and `skipped` names it.
/// Fails if a view's elements overlap so much that writing them would take
/// far more than the file holds (`Tensor::check_gather`). `path` is the
/// checkpoint's, for the commands an error suggests.
pub fn load(bytes: &[u8], path: &Path, skipped: &mut Vec<String>) -> Result<Vec<Tensor>, String> {
    let checkpoint = torch::from_slice(bytes).map_err(|e| refusal(e, path))?;
    let mut out = Vec::new();
    // Depth first, in the saved order, without recursion.
    let mut stack: Vec<(String, &Object)> = vec![(String::new(), checkpoint.root())];
    while let Some((name, obj)) = stack.pop() {
        if let Object::Tensor(t) = obj {
            let dtype = safetensors_dtype(t.dtype()).ok_or_else(|| {
                format!(
                    "{name}: safetensors has no dtype for torch.{}",
                    t.dtype().name()
                )
            })?;
            t.check_gather().map_err(|e| format!("{name}: {e}"))?;
            out.push(Tensor {
                name,
                dtype,
                tensor: t.clone(),
            });
            continue;
        }
        let Some(items) = obj.items() else {
            skipped.push(name);
            continue;
        };
        for (k, v) in items.iter().rev() {
            let key = match k {
                Object::Str(s) => s.clone(),
                Object::Int(i) => i.to_string(),
                other => format!("<{}>", other.type_name()),
            };
            let full = if name.is_empty() {
                key
            } else {
                format!("{name}.{key}")
            };
            stack.push((full, v));
        }
    }
    Ok(out)
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
