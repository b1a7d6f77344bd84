//! numpy arrays, scalars and dtypes, read and written without numpy.
//!
//! A numpy pickle names a handful of numpy globals; [`register`] allows
//! exactly those (the list is below) and teaches the registry what they
//! build. Then an array reads as an [`Array`]: its [`DType`], shape,
//! memory [`Order`] and bytes, with typed access to the items.
//!
//! ```
//! use reduce::numpy::{self, Array};
//!
//! // pickle.dumps(numpy.arange(6, dtype="<i4").reshape(2, 3), protocol=2)
//! // from numpy 2 (numpy 1 names numpy.core.multiarray; both read the same)
//! let bytes = b"\x80\x02cnumpy._core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85q\x02c_codecs\nencode\nq\x03X\x01\x00\x00\x00bq\x04X\x06\x00\x00\x00latin1q\x05\x86q\x06Rq\x07\x87q\x08Rq\x09(K\x01K\x02K\x03\x86q\ncnumpy\ndtype\nq\x0bX\x02\x00\x00\x00i4q\x0c\x89\x88\x87q\x0dRq\x0e(K\x03X\x01\x00\x00\x00<q\x0fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x10b\x89h\x03X\x18\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04\x00\x00\x00\x05\x00\x00\x00q\x11h\x05\x86q\x12Rq\x13tq\x14b.";
//!
//! let mut registry = reduce::Registry::new();
//! numpy::register(&mut registry)?;
//! let a: Array = reduce::Unpickler::from_slice(bytes).registry(registry).load()?;
//! assert_eq!(a.shape(), &[2, 3]);
//! assert_eq!(a.dtype().str(), "<i4");
//! assert_eq!(a.to_vec::<i32>()?, [0, 1, 2, 3, 4, 5]);
//! // Without copying, where the bytes are aligned for i32 (they usually are):
//! if let Ok(items) = a.as_slice::<i32>() {
//!     assert_eq!(items, [0, 1, 2, 3, 4, 5]);
//! }
//! # Ok::<(), reduce::Error>(())
//! ```
//!
//! Without [`register`], strict loading refuses the pickle by name
//! (``global `numpy._core.multiarray._reconstruct` is not allowed``). With
//! it, a [`Value`](crate::Value) or [`Graph`](crate::Graph) load keeps the
//! arrays as reduced objects, and `Array`, [`Scalar`], [`DType`] (and with
//! the `ndarray` feature, `ndarray::ArrayD<T>`, `Array1<T>`, `Array2<T>`,
//! ...) read them wherever they appear in a typed value.
//!
//! Writing is one call, and numpy 1.x and 2.x both load the result:
//!
//! ```
//! use reduce::numpy::Array;
//!
//! let a = Array::from_vec(vec![1.5f64, 2.5, 3.5], &[3])?;
//! let bytes = reduce::to_vec_with_protocol(&a, 2)?;
//! assert!(bytes.starts_with(b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n"));
//!
//! let mut registry = reduce::Registry::new();
//! reduce::numpy::register(&mut registry)?;
//! let back: Array = reduce::Unpickler::from_slice(&bytes).registry(registry).load()?;
//! assert_eq!(back, a);
//! # Ok::<(), reduce::Error>(())
//! ```
//!
//! # What numpy writes, and what this module reads
//!
//! | numpy writes | when | read as |
//! |---|---|---|
//! | `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')` + `BUILD (1, shape, dtype, is_fortran, bytes)` | numpy 1, protocols 0-4; protocol 5 for object and non-contiguous arrays | [`Array`] |
//! | the same under `numpy._core.multiarray` | numpy 2 | [`Array`] |
//! | `numpy.core.numeric._frombuffer(PickleBuffer, dtype, shape, 'C' or 'F')` | numpy 1, protocol 5, contiguous arrays; the buffer in band (`BYTEARRAY8`) or out of band (`NEXT_BUFFER`, given to [`Unpickler::buffers`](crate::Unpickler::buffers)) | [`Array`] |
//! | the same under `numpy._core.numeric` | numpy 2 | [`Array`] |
//! | `numpy.core.multiarray.scalar(dtype, bytes)` (`numpy._core` in numpy 2) | `numpy.float64(1.5)` and the like | [`Scalar`] |
//! | `numpy.dtype(code, False, True)` + `BUILD` state | every array and scalar, and a dtype on its own | [`DType`] |
//!
//! Pickles that numpy 1 wrote under Python 2 hold their data as Python 2
//! strings: read them with
//! [`StringDecoding::Latin1`](crate::StringDecoding::Latin1), as CPython 3
//! needs `encoding="latin1"`.
//!
//! An array that is the root of the pickle takes its bytes (or its
//! out-of-band buffer) without copying them; an array inside another value
//! copies them once. Subclasses of `ndarray` (`numpy.ma.MaskedArray`,
//! `numpy.matrix`, pandas' own) are refused by name, and so are structured
//! dtypes with object fields; read such pickles as a
//! [`Value`](crate::Value) in [inert mode](crate::Unpickler::inert). A
//! dtype's `metadata` dict (`numpy.dtype('f8', metadata={...})`, as h5py
//! marks its string types) is kept as a `Value` ([`DType::metadata`]) and
//! written back.
//!
//! # The allow-list
//!
//! [`register`] allows these globals and nothing else:
//!
//! | global | builds |
//! |---|---|
//! | `numpy.core.multiarray._reconstruct`, `numpy._core.multiarray._reconstruct` | [`Array`] |
//! | `numpy.core.numeric._frombuffer`, `numpy._core.numeric._frombuffer` | [`Array`] |
//! | `numpy.core.multiarray.scalar`, `numpy._core.multiarray.scalar` | [`Scalar`] |
//! | `numpy.dtype` | [`DType`] |
//! | `numpy.ndarray` | nothing: allowed only as `_reconstruct`'s class argument |
//! | the scalar types `numpy.bool_` (numpy 2: `numpy.bool`), `int8` … `int64`, `longlong`, `uint8` … `uint64`, `ulonglong`, `float16`, `float32`, `float64`, `complex64`, `complex128`, `object_`, `str_`, `bytes_`, `void`, `datetime64`, `timedelta64` | nothing when called; named as a value (`dtype=np.float64` in a scikit-learn estimator) they read as their [`DType`] |
//!
//! None of them runs code of the pickle's choosing in numpy either; numpy's
//! own `allow_pickle=False` refuses object arrays, which here are
//! [`Value`](crate::Value)s, built by nothing but the reader.
//!
//! # Writing: which module path, and why
//!
//! [`Array`], [`Scalar`] and `ndarray` arrays are written as numpy writes
//! them below protocol 5, at every protocol:
//! `numpy.core.multiarray._reconstruct` with the bytes in band, and
//! `numpy.core.multiarray.scalar`. numpy 2 renamed `numpy.core` to
//! `numpy._core` but keeps exactly these two names importable from
//! `numpy.core.multiarray` without a warning, for old pickles; numpy 1.26
//! has no `numpy._core.numeric`, so numpy 2's protocol 5 pickles do not
//! load there, and numpy 2 loads `numpy.core.numeric._frombuffer` only with
//! a `DeprecationWarning`. The bytes written at protocols 2 to 4 are numpy
//! 1.26's own, byte for byte (the fixtures test this).
//!
//! So arrays are written in band at protocol 5 too, as numpy itself does
//! for arrays that are not contiguous: out-of-band writing needs
//! `_frombuffer`, under one of the two names above that one numpy version
//! or the other objects to. The test `numpy_2_loads_what_rust_writes`
//! loads everything written with warnings as errors, under numpy 2 in CI
//! and, by hand, under numpy 1.26 (`REDUCE_NUMPY_PYTHON`, see the test).
//!
//! # dtypes
//!
//! | numpy | [`Kind`] | Rust [`Element`] | size |
//! |---|---|---|---|
//! | `bool` (`b1`) | `Bool` | `bool` | 1 |
//! | `int8` … `int64` (`i1` … `i8`) | `Int` | `i8` … `i64` | 1 to 8 |
//! | `uint8` … `uint64` (`u1` … `u8`) | `UInt` | `u8` … `u64` | 1 to 8 |
//! | `float16` (`f2`) | `Float` | `half::f16` (feature `half`) | 2 |
//! | `float32`, `float64` (`f4`, `f8`) | `Float` | `f32`, `f64` | 4, 8 |
//! | `longdouble` (`f16`, `f12`) | `Float` | bytes only | 16, 12 |
//! | `complex64`, `complex128` (`c8`, `c16`) | `Complex` | `num_complex::Complex<f32>`, `<f64>` (feature `num-complex`) | 8, 16 |
//! | `bytes_` (`S<n>`) | `Bytes` | bytes only | n |
//! | `str_` (`U<n>`, UCS-4) | `Str` | bytes only | 4n |
//! | `void` (`V<n>`), structured, subarray | `Void` | bytes only; [`DType::fields`], [`DType::subdtype`] | n |
//! | `object` (`O`) | `Object` | [`Value`](crate::Value) items: [`Array::objects`] | 8 |
//! | `datetime64`, `timedelta64` (`M8[unit]`, `m8[unit]`) | `DateTime`, `TimeDelta` | `i64`: counts of the unit ([`DType::time_unit`]) since 1970-01-01 for a date; `NaT` is `i64::MIN` | 8 |
//!
//! Big-endian dtypes (`>f8`) read as they are: [`Array::to_vec`] and
//! `ndarray` convert to this machine's order, [`Array::as_slice`] refuses.
//! numpy 2's variable-width `StringDType` is not supported.

mod array;
mod dtype;
mod element;
#[cfg(feature = "ndarray")]
mod ndarray;
mod scalar;

pub use self::array::{Array, Order};
pub use self::dtype::{ByteOrder, DType, Field, Kind};
pub use self::element::Element;
pub use self::scalar::Scalar;

use crate::base::error::Result;
use crate::typed::registry::Registry;

/// The module written for `_reconstruct` and `scalar`: numpy 1's, which
/// numpy 2 keeps for old pickles (see the module docs).
const MULTIARRAY_WRITE: &str = "numpy.core.multiarray";

/// The numpy globals a numpy pickle needs, `(module, qualified name)`:
/// the allow-list [`register`] installs.
pub(crate) const GLOBALS: &[(&str, &str)] = &[
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy", "bool_"),
    ("numpy", "bool"),
    ("numpy", "int8"),
    ("numpy", "int16"),
    ("numpy", "int32"),
    ("numpy", "int64"),
    ("numpy", "longlong"),
    ("numpy", "uint8"),
    ("numpy", "uint16"),
    ("numpy", "uint32"),
    ("numpy", "uint64"),
    ("numpy", "ulonglong"),
    ("numpy", "float16"),
    ("numpy", "float32"),
    ("numpy", "float64"),
    ("numpy", "complex64"),
    ("numpy", "complex128"),
    ("numpy", "object_"),
    ("numpy", "str_"),
    ("numpy", "bytes_"),
    ("numpy", "void"),
    ("numpy", "datetime64"),
    ("numpy", "timedelta64"),
];

/// The dtype of a numpy scalar type named as a value (`dtype=np.float64`
/// in an estimator's parameters): `numpy.dtype(numpy.float64)`.
fn scalar_type(module: &str, name: &str) -> Option<Result<DType>> {
    if module != "numpy" {
        return None;
    }
    let (kind, size) = match name {
        "bool_" | "bool" => (Kind::Bool, 1),
        "int8" => (Kind::Int, 1),
        "int16" => (Kind::Int, 2),
        "int32" => (Kind::Int, 4),
        "int64" | "longlong" => (Kind::Int, 8),
        "uint8" => (Kind::UInt, 1),
        "uint16" => (Kind::UInt, 2),
        "uint32" => (Kind::UInt, 4),
        "uint64" | "ulonglong" => (Kind::UInt, 8),
        "float16" => (Kind::Float, 2),
        "float32" => (Kind::Float, 4),
        "float64" => (Kind::Float, 8),
        "complex64" => (Kind::Complex, 8),
        "complex128" => (Kind::Complex, 16),
        "object_" => (Kind::Object, 8),
        "str_" => (Kind::Str, 0),
        "bytes_" => (Kind::Bytes, 0),
        "void" => (Kind::Void, 0),
        "datetime64" => (Kind::DateTime, 8),
        "timedelta64" => (Kind::TimeDelta, 8),
        _ => return None,
    };
    Some(DType::new(kind, size, ByteOrder::Little))
}

fn is_reconstruct(module: &str, name: &str) -> bool {
    name == "_reconstruct" && matches!(module, "numpy.core.multiarray" | "numpy._core.multiarray")
}

fn is_frombuffer(module: &str, name: &str) -> bool {
    name == "_frombuffer" && matches!(module, "numpy.core.numeric" | "numpy._core.numeric")
}

fn is_scalar(module: &str, name: &str) -> bool {
    name == "scalar" && matches!(module, "numpy.core.multiarray" | "numpy._core.multiarray")
}

/// The bytes of an array's or scalar's data: `bytes`, `bytearray`, a
/// buffer, or a Python 2 `str` read with
/// [`StringDecoding::Latin1`](crate::StringDecoding::Latin1), whose code
/// points are the bytes (numpy encodes it back as latin-1 too).
fn data_bytes(node: crate::typed::construct::Node<'_>) -> Result<Vec<u8>> {
    if let crate::value::Value::Str(s) = node.value() {
        return s
            .code_points()
            .map(|c| u8::try_from(c).ok())
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| {
                node.error_msg(
                    "expected array data as bytes or a latin-1 str, found a str beyond latin-1",
                )
            });
    }
    crate::typed::impls::bytes::construct(node)
}

/// Registers the numpy globals ([`GLOBALS`]) and what they build, and the
/// reducers of [`Array`], [`Scalar`] and [`DType`].
pub(crate) fn install(reg: &mut Registry) -> Result<()> {
    use crate::typed::construct::Construct;
    for &(module, name) in GLOBALS {
        if is_reconstruct(module, name) || is_frombuffer(module, name) {
            reg.register_constructor(module, name, Array::construct)?;
        } else if is_scalar(module, name) {
            reg.register_constructor(module, name, Scalar::construct)?;
        } else if name == "dtype" {
            reg.register_constructor(module, name, DType::construct)?;
        } else if scalar_type(module, name).is_some() {
            reg.register_constructor(module, name, move |node| -> Result<DType> {
                Err(node.error_msg(format!(
                    "numpy.{name} is allowed as a type (read it as a DType), not called"
                )))
            })?;
        } else {
            reg.register_constructor(module, name, |node| -> Result<Array> {
                Err(node.error_msg(
                    "numpy.ndarray is allowed only as the class argument of numpy's _reconstruct",
                ))
            })?;
        }
    }
    reg.register_reducer::<Array>(|a, s| s.save(a))?;
    reg.register_reducer::<Scalar>(|a, s| s.save(a))?;
    reg.register_reducer::<DType>(|a, s| s.save(a))?;
    Ok(())
}

/// Allows the numpy globals in `registry` and teaches it what they build:
/// arrays ([`Array`]), scalars ([`Scalar`]) and dtypes ([`DType`]). Fails
/// if one of the names is registered there already.
///
/// For every unpickler at once, register them in the process-wide
/// registry: `reduce::registry().update(reduce::numpy::register)`.
pub fn register(registry: &mut Registry) -> Result<()> {
    install(registry)
}
