//! PyTorch checkpoints, read and written without Python.
//!
//! Reading and writing files ([`load`], [`from_reader`], [`from_slice`],
//! [`save`], [`to_writer`]) need the `torch` feature, which brings the zip
//! crate; the types ([`Tensor`], [`Storage`], [`DType`], [`Object`],
//! [`Checkpoint`]) are always here.
//!
//! [`load`] reads what `torch.save` writes: the zip archive of torch 1.6
//! and later, and the legacy stream of pickles and raw storages of earlier
//! versions (`_use_new_zipfile_serialization=False`). It is as strict as
//! `torch.load(weights_only=True)`: the pickle may name only the globals in
//! torch's `weights_only` allow-list, and any other global is refused by
//! name before anything is loaded. Nothing is ever called.
//!
//! ```no_run
//! # #[cfg(feature = "torch")]
//! # fn main() -> Result<(), reduce::Error> {
//! use reduce::torch;
//!
//! let checkpoint = torch::load("model.pt")?;
//! for (name, tensor) in checkpoint.state_dict()? {
//!     println!("{name}: {} {:?}", tensor.dtype(), tensor.shape());
//! }
//! // Anything else saved beside the weights is plain data:
//! if let Some(torch::Object::Int(epoch)) = checkpoint.root().get("epoch") {
//!     println!("epoch {epoch}");
//! }
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "torch"))]
//! # fn main() {}
//! ```
//!
//! [`save`] writes a state dict back the way `torch.save(OrderedDict(...))`
//! does: the same `data.pkl`, byte for byte, in the same archive layout, so
//! `torch.load(f, weights_only=True)` reads it.
//!
//! ```
//! # #[cfg(feature = "torch")]
//! # fn main() -> Result<(), reduce::Error> {
//! use reduce::torch::{self, DType, Storage, Tensor};
//!
//! let data = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
//! let weight = Tensor::new(Storage::new(DType::Float32, data)?, &[2, 2])?;
//! let mut file = Vec::new();
//! torch::to_writer(&mut file, &[("fc.weight".to_string(), weight.clone())])?;
//!
//! let back = torch::from_slice(&file)?.state_dict()?;
//! assert_eq!(back[0].0, "fc.weight");
//! assert_eq!(back[0].1.to_vec::<f32>()?, [1.0, 2.0, 3.0, 4.0]);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "torch"))]
//! # fn main() {}
//! ```
//!
//! # What is read
//!
//! | Python | [`Object`] |
//! |---|---|
//! | `None`, `bool`, `int`, `float`, `complex`, `str`, `bytes`, `bytearray` | `None`, `Bool`, `Int`/`BigInt`, `Float`, `Complex`, `Str`, `Bytes` |
//! | `tuple`, `list`, `set`, `dict` | `Tuple`, `List`, `Set`, `Dict` |
//! | `collections.OrderedDict` (a `state_dict()` with its `_metadata`) | `OrderedDict` |
//! | `torch.Tensor` (`_rebuild_tensor`, `_v2`, `_v3`), `nn.Parameter` | `Tensor` |
//! | `torch.Size`, `torch.float32`..., `torch.device` | `Size`, `DType`, `Device` |
//!
//! A [`Tensor`] is a dtype, a shape, strides and an offset into a
//! [`Storage`]; tensors that share a storage in the file (a view and its
//! base) share one `Arc<Storage>`. [`Tensor::to_vec`] gathers the elements
//! in row-major order, contiguous or strided; [`Tensor::to_ndarray`] makes
//! an `ndarray::ArrayD` (feature `ndarray`). An expanded view (a stride of
//! 0) can describe far more elements than the file holds: gathering one is
//! refused past the larger of its storage's size and 64 MiB
//! ([`Tensor::check_gather`]). Sparse, quantized and nested tensors, and
//! tensor subclasses, are refused with an error that says so.
//!
//! A dict is read with its items as the pickle sets them; torch never sets
//! a key twice, and for a file that does, [`Object::get`] and
//! [`Checkpoint::state_dict`] keep what Python keeps (the key at its first
//! position, with the last value). [`save`] and [`to_writer`] refuse two
//! tensors of one name.
//!
//! # The allow-list
//!
//! These are the globals `torch.load(weights_only=True)` allows by default
//! (torch 2.15's `_get_allowed_globals()`), and the only ones [`load`]
//! allows:
//!
//! - `collections.OrderedDict`, `collections.Counter`, `_codecs.encode`,
//!   `builtins.bytearray`, `builtins.set`, `builtins.complex`;
//! - `torch._utils._rebuild_tensor`, `_rebuild_tensor_v2`, `_rebuild_tensor_v3`,
//!   `_rebuild_parameter`, `_rebuild_parameter_with_state`, `_rebuild_qtensor`,
//!   `_rebuild_sparse_tensor`, `_rebuild_meta_tensor_no_storage`,
//!   `_rebuild_wrapper_subclass`, `_rebuild_device_tensor_from_numpy`,
//!   `_rebuild_device_tensor_from_cpu_tensor`;
//!   `torch._tensor._rebuild_from_type_v2`; `torch.serialization._get_layout`;
//! - `torch.Size`, `torch.Tensor`, `torch.device`, `torch.nn.parameter.Parameter`;
//! - every dtype (`torch.float32`, `torch.bfloat16`, `torch.float8_e4m3fn`,
//!   `torch.uint1`...`torch.uint7`, `torch.int1`...`torch.int7`, `torch.qint8`, ...)
//!   and quantization scheme (`torch.per_tensor_affine`, ...);
//! - every storage class (`torch.FloatStorage`, ..., `torch.QInt8Storage`,
//!   `torch.cuda.FloatStorage`, ..., `torch.storage.TypedStorage`,
//!   `torch.storage.UntypedStorage`) and legacy tensor class
//!   (`torch.FloatTensor`, `torch.cuda.FloatTensor`,
//!   `torch.sparse.FloatTensor`, `torch.cuda.sparse.FloatTensor`, ...).
//!
//! `tests/fixtures/torch/weights_only_globals.txt` has the exact list,
//! written by torch itself; a test holds this module to it.

// Without the feature, the links to the reading and writing functions have
// nothing to point to.
#![cfg_attr(not(feature = "torch"), allow(rustdoc::broken_intra_doc_links))]

mod allow;
mod dtype;
#[cfg(feature = "torch")]
mod load;
mod object;
#[cfg(feature = "torch")]
mod save;
mod tensor;

#[cfg(feature = "torch")]
use std::fs::File;
#[cfg(feature = "torch")]
use std::io::{BufReader, BufWriter, Cursor, Read, Seek, Write};
#[cfg(feature = "torch")]
use std::path::Path;

// The allow-list needs no feature: reduce::preset offers it for loading
// plain values too.
#[allow(unused_imports)]
pub(crate) use self::allow::{install, WEIGHTS_ONLY};
pub use self::dtype::DType;
pub use self::object::{Checkpoint, Format, Object};
pub use self::tensor::{Element, Storage, Tensor};

#[cfg(feature = "torch")]
use crate::base::error::Result;

/// Reads a `torch.save` file, zip or legacy, allowing only the globals
/// `torch.load(weights_only=True)` allows.
#[cfg(feature = "torch")]
pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint> {
    from_reader(BufReader::new(File::open(path)?))
}

/// Reads a `torch.save` file from `reader`, which starts at the file's first
/// byte.
#[cfg(feature = "torch")]
pub fn from_reader<R: Read + Seek>(reader: R) -> Result<Checkpoint> {
    load::from_reader(reader)
}

#[cfg(feature = "torch")]
pub use self::load::{archive_member, inflate_cap};

/// Reads a `torch.save` file held in memory.
#[cfg(feature = "torch")]
pub fn from_slice(bytes: &[u8]) -> Result<Checkpoint> {
    load::from_reader(Cursor::new(bytes))
}

/// Writes `tensors` to `path` as `torch.save(OrderedDict(tensors), path)`
/// does: the archive's folder is named after the file (`model/` for
/// `model.pt`), as torch names it.
///
/// Fails, before the file is created, if two tensors have one name (a
/// state dict holds each name once) or if two tensors view one storage as
/// different dtypes (torch refuses that too).
#[cfg(feature = "torch")]
pub fn save(path: impl AsRef<Path>, tensors: &[(String, Tensor)]) -> Result<()> {
    let pieces = save::pieces(tensors)?;
    let path = path.as_ref();
    // torch's PyTorchStreamWriter: the file name up to its first dot.
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let archive = match file_name.split('.').next() {
        Some(stem) if !stem.is_empty() => stem.to_owned(),
        _ => "archive".to_owned(),
    };
    let mut out = BufWriter::new(File::create(path)?);
    save::write_state_dict(&mut out, &archive, pieces)?;
    out.flush()?;
    Ok(())
}

/// Writes `tensors` to `writer` as `torch.save(OrderedDict(tensors), buffer)`
/// does (the archive's folder is `archive/`).
///
/// Fails, before anything is written, if two tensors have one name or view
/// one storage as different dtypes, as [`save`] does.
#[cfg(feature = "torch")]
pub fn to_writer<W: Write>(writer: W, tensors: &[(String, Tensor)]) -> Result<()> {
    save::write_state_dict(writer, "archive", save::pieces(tensors)?)
}
