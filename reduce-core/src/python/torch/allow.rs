//! The globals `torch.load(weights_only=True)` allows, and nothing else.

// Without the torch feature only reduce::preset uses these.
#![cfg_attr(not(feature = "torch"), allow(dead_code))]

use crate::base::error::Result;
use crate::typed::construct::Construct;
use crate::typed::registry::Registry;
use crate::value::Value;

/// The globals torch's `weights_only` unpickler allows by default, as
/// `(module, name)`, sorted: `_get_allowed_globals()` of
/// `torch/_weights_only_unpickler.py` (torch 2.15), which
/// `tests/fixtures/torch/generate.py` writes out and a test compares with
/// this list. Everything else, including the `builtins` and `copyreg` names
/// a plain pickle may use, is refused by [`load`](super::load).
pub(crate) const WEIGHTS_ONLY: &[(&str, &str)] = &[
    ("_codecs", "encode"),
    ("builtins", "bytearray"),
    ("builtins", "complex"),
    ("builtins", "set"),
    ("collections", "Counter"),
    ("collections", "OrderedDict"),
    ("torch", "BFloat16Storage"),
    ("torch", "BFloat16Tensor"),
    ("torch", "BoolStorage"),
    ("torch", "BoolTensor"),
    ("torch", "ByteStorage"),
    ("torch", "ByteTensor"),
    ("torch", "CharStorage"),
    ("torch", "CharTensor"),
    ("torch", "ComplexDoubleStorage"),
    ("torch", "ComplexFloatStorage"),
    ("torch", "DoubleStorage"),
    ("torch", "DoubleTensor"),
    ("torch", "FloatStorage"),
    ("torch", "FloatTensor"),
    ("torch", "HalfStorage"),
    ("torch", "HalfTensor"),
    ("torch", "IntStorage"),
    ("torch", "IntTensor"),
    ("torch", "LongStorage"),
    ("torch", "LongTensor"),
    ("torch", "QInt32Storage"),
    ("torch", "QInt8Storage"),
    ("torch", "QUInt2x4Storage"),
    ("torch", "QUInt4x2Storage"),
    ("torch", "QUInt8Storage"),
    ("torch", "ShortStorage"),
    ("torch", "ShortTensor"),
    ("torch", "Size"),
    ("torch", "Tensor"),
    ("torch", "bcomplex32"),
    ("torch", "bfloat16"),
    ("torch", "bits16"),
    ("torch", "bits1x8"),
    ("torch", "bits2x4"),
    ("torch", "bits4x2"),
    ("torch", "bits8"),
    ("torch", "bool"),
    ("torch", "complex128"),
    ("torch", "complex32"),
    ("torch", "complex64"),
    ("torch", "device"),
    ("torch", "float16"),
    ("torch", "float32"),
    ("torch", "float4_e2m1fn_x2"),
    ("torch", "float64"),
    ("torch", "float8_e4m3fn"),
    ("torch", "float8_e4m3fnuz"),
    ("torch", "float8_e5m2"),
    ("torch", "float8_e5m2fnuz"),
    ("torch", "float8_e8m0fnu"),
    ("torch", "int1"),
    ("torch", "int16"),
    ("torch", "int2"),
    ("torch", "int3"),
    ("torch", "int32"),
    ("torch", "int4"),
    ("torch", "int5"),
    ("torch", "int6"),
    ("torch", "int64"),
    ("torch", "int7"),
    ("torch", "int8"),
    ("torch", "per_channel_affine"),
    ("torch", "per_channel_affine_float_qparams"),
    ("torch", "per_channel_symmetric"),
    ("torch", "per_tensor_affine"),
    ("torch", "per_tensor_symmetric"),
    ("torch", "qint32"),
    ("torch", "qint8"),
    ("torch", "quint2x4"),
    ("torch", "quint4x2"),
    ("torch", "quint8"),
    ("torch", "uint1"),
    ("torch", "uint16"),
    ("torch", "uint2"),
    ("torch", "uint3"),
    ("torch", "uint32"),
    ("torch", "uint4"),
    ("torch", "uint5"),
    ("torch", "uint6"),
    ("torch", "uint64"),
    ("torch", "uint7"),
    ("torch", "uint8"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch._utils", "_rebuild_device_tensor_from_cpu_tensor"),
    ("torch._utils", "_rebuild_device_tensor_from_numpy"),
    ("torch._utils", "_rebuild_meta_tensor_no_storage"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._utils", "_rebuild_qtensor"),
    ("torch._utils", "_rebuild_sparse_tensor"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_wrapper_subclass"),
    ("torch.cuda", "BFloat16Storage"),
    ("torch.cuda", "BFloat16Tensor"),
    ("torch.cuda", "BoolStorage"),
    ("torch.cuda", "BoolTensor"),
    ("torch.cuda", "ByteStorage"),
    ("torch.cuda", "ByteTensor"),
    ("torch.cuda", "CharStorage"),
    ("torch.cuda", "CharTensor"),
    ("torch.cuda", "ComplexDoubleStorage"),
    ("torch.cuda", "ComplexFloatStorage"),
    ("torch.cuda", "DoubleStorage"),
    ("torch.cuda", "DoubleTensor"),
    ("torch.cuda", "FloatStorage"),
    ("torch.cuda", "FloatTensor"),
    ("torch.cuda", "HalfStorage"),
    ("torch.cuda", "HalfTensor"),
    ("torch.cuda", "IntStorage"),
    ("torch.cuda", "IntTensor"),
    ("torch.cuda", "LongStorage"),
    ("torch.cuda", "LongTensor"),
    ("torch.cuda", "ShortStorage"),
    ("torch.cuda", "ShortTensor"),
    ("torch.cuda.sparse", "BFloat16Tensor"),
    ("torch.cuda.sparse", "ByteTensor"),
    ("torch.cuda.sparse", "CharTensor"),
    ("torch.cuda.sparse", "DoubleTensor"),
    ("torch.cuda.sparse", "FloatTensor"),
    ("torch.cuda.sparse", "HalfTensor"),
    ("torch.cuda.sparse", "IntTensor"),
    ("torch.cuda.sparse", "LongTensor"),
    ("torch.cuda.sparse", "ShortTensor"),
    ("torch.nn.parameter", "Parameter"),
    ("torch.serialization", "_get_layout"),
    ("torch.sparse", "BFloat16Tensor"),
    ("torch.sparse", "ByteTensor"),
    ("torch.sparse", "CharTensor"),
    ("torch.sparse", "DoubleTensor"),
    ("torch.sparse", "FloatTensor"),
    ("torch.sparse", "HalfTensor"),
    ("torch.sparse", "IntTensor"),
    ("torch.sparse", "LongTensor"),
    ("torch.sparse", "ShortTensor"),
    ("torch.storage", "TypedStorage"),
    ("torch.storage", "UntypedStorage"),
];

/// Allows every [`WEIGHTS_ONLY`] global in `reg`. Each one's constructor
/// keeps the reduction as data (a [`Value`]); [`load`](super::load) is what
/// turns them into tensors. Globals `reg` already has a constructor for keep
/// it.
pub(crate) fn install(reg: &mut Registry) -> Result<()> {
    for &(module, name) in WEIGHTS_ONLY {
        if !reg.contains(module, name) {
            reg.register_constructor(module, name, Value::construct)?;
        }
    }
    Ok(())
}

/// Whether `module.name` is in [`WEIGHTS_ONLY`].
pub(crate) fn allowed(module: &str, name: &str) -> bool {
    WEIGHTS_ONLY.binary_search(&(module, name)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_for_binary_search() {
        assert!(WEIGHTS_ONLY.windows(2).all(|w| w[0] < w[1]));
        assert!(allowed("torch._utils", "_rebuild_tensor_v2"));
        assert!(!allowed("builtins", "frozenset"));
    }

    #[test]
    fn the_list_is_the_one_torch_wrote() {
        // Written by tests/fixtures/torch/generate.py from torch's own
        // _get_allowed_globals().
        let text = include_str!("../../../../tests/fixtures/torch/weights_only_globals.txt");
        let mut want: Vec<(&str, &str)> = text.lines().filter_map(|l| l.rsplit_once('.')).collect();
        want.sort();
        assert_eq!(WEIGHTS_ONLY, want.as_slice());
    }

    #[test]
    fn install_skips_names_already_registered() {
        let mut reg = Registry::new();
        reg.register_constructor("collections", "OrderedDict", |_| Ok(0u8))
            .unwrap();
        install(&mut reg).unwrap();
        assert_eq!(reg.names().count(), WEIGHTS_ONLY.len());
        assert!(reg.contains("torch._utils", "_rebuild_tensor_v2"));
    }
}
