//! Storages and tensors: bytes, and a strided view over them.

use std::sync::Arc;

use super::dtype::DType;
use crate::base::error::{Error, Result};

/// A storage: one flat buffer of bytes, which tensors view.
///
/// Tensors that share a storage in the checkpoint (a view and its base, or
/// the `weight` and `bias` slices of one fused buffer) hold the same
/// `Arc<Storage>`: compare them with [`Arc::ptr_eq`].
#[derive(Clone, Debug, PartialEq)]
pub struct Storage {
    key: String,
    dtype: DType,
    device: String,
    data: Vec<u8>,
}

impl Storage {
    /// A storage of `dtype` elements (the storage class torch names it by,
    /// `torch.FloatStorage` for `float32`), `data` in little-endian byte
    /// order. Fails unless `data` holds a whole number of elements.
    pub fn new(dtype: DType, data: Vec<u8>) -> Result<Storage> {
        Storage::with_key(String::new(), dtype, "cpu".into(), data)
    }

    pub(crate) fn with_key(
        key: String,
        dtype: DType,
        device: String,
        data: Vec<u8>,
    ) -> Result<Storage> {
        if !data.len().is_multiple_of(dtype.element_size()) {
            return Err(Error::invalid(format!(
                "a {dtype} storage needs a multiple of {} bytes, found {}",
                dtype.element_size(),
                data.len()
            )));
        }
        Ok(Storage {
            key,
            dtype,
            device,
            data,
        })
    }

    /// The key the checkpoint stores it under (`"0"`, `"1"`, ... in the zip
    /// format, where the bytes are in `archive/data/<key>`); empty for a
    /// storage made with [`Storage::new`].
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The element type it was saved as: the dtype of its storage class, or
    /// `uint8` for a `torch.UntypedStorage` (which holds the `float8`,
    /// `uint16`... tensors).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Where torch kept it when it saved it: `"cpu"`, `"cuda:0"`, ... The
    /// bytes are here, in memory, whatever it says.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The raw bytes, little-endian whatever the saving machine was.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The number of elements of its dtype.
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.element_size()
    }

    /// The number of bytes.
    pub fn nbytes(&self) -> usize {
        self.data.len()
    }

    /// Whether the storage has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A tensor: a dtype, a shape, strides and an offset into a [`Storage`].
///
/// Strides and offset count elements, as torch's do. Every `Tensor` is valid:
/// its elements lie inside its storage (checked when it is made).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    dtype: DType,
    storage: Arc<Storage>,
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
    requires_grad: bool,
    parameter: bool,
}

impl Tensor {
    /// A contiguous tensor of `shape` over its own storage, which must hold
    /// exactly its elements.
    ///
    /// ```
    /// use reduce::torch::{DType, Storage, Tensor};
    ///
    /// let bytes = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    /// let t = Tensor::new(Storage::new(DType::Float32, bytes)?, &[2, 3])?;
    /// assert_eq!(t.strides(), &[3, 1]);
    /// assert_eq!(t.to_vec::<f32>()?, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    /// # Ok::<(), reduce::Error>(())
    /// ```
    pub fn new(storage: Storage, shape: &[usize]) -> Result<Tensor> {
        let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if numel != Some(storage.len()) {
            return Err(Error::invalid(format!(
                "a tensor of shape {shape:?} needs {} elements, found a storage of {}",
                numel.map_or("too many".to_string(), |n| n.to_string()),
                storage.len()
            )));
        }
        let strides = contiguous_strides(shape);
        let dtype = storage.dtype;
        Tensor::from_storage(Arc::new(storage), dtype, shape, &strides, 0)
    }

    /// A view of `storage` as `dtype` elements: torch's
    /// `as_strided(shape, strides, offset)`. Fails if an element would lie
    /// outside the storage.
    pub fn from_storage(
        storage: Arc<Storage>,
        dtype: DType,
        shape: &[usize],
        strides: &[usize],
        offset: usize,
    ) -> Result<Tensor> {
        if shape.len() != strides.len() {
            return Err(Error::invalid(format!(
                "a tensor of {} dimensions needs as many strides, found {}",
                shape.len(),
                strides.len()
            )));
        }
        // Strides of 0 (torch's `expand`) let a small storage back a huge
        // tensor; its bytes must still be countable.
        let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if numel
            .and_then(|n| n.checked_mul(dtype.element_size()))
            .is_none_or(|b| b > isize::MAX as usize)
        {
            return Err(Error::invalid(format!(
                "a {dtype} tensor of shape {shape:?} has more bytes than memory can hold"
            )));
        }
        // The furthest element, checked without overflow; a tensor with a
        // zero dimension has no elements and may point anywhere.
        if !shape.contains(&0) {
            let mut last = Some(offset);
            for (&n, &s) in shape.iter().zip(strides) {
                last = last.and_then(|l| (n - 1).checked_mul(s).and_then(|x| x.checked_add(l)));
            }
            match last {
                Some(l) if l < storage.nbytes() / dtype.element_size() => {}
                _ => {
                    return Err(Error::invalid(format!(
                        "a {dtype} tensor of shape {shape:?}, strides {strides:?} and offset {offset} reaches outside its storage of {} bytes",
                        storage.nbytes()
                    )))
                }
            }
        }
        Ok(Tensor {
            dtype,
            storage,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            offset,
            requires_grad: false,
            parameter: false,
        })
    }

    #[cfg_attr(not(feature = "torch"), allow(dead_code))]
    pub(crate) fn set_grad(mut self, requires_grad: bool, parameter: bool) -> Tensor {
        self.requires_grad = requires_grad;
        self.parameter = parameter;
        self
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The size of each dimension; empty for a 0-dim (scalar) tensor.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The step between neighbours in each dimension, in elements.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Where the first element is in the storage, in elements.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The storage, shared with every tensor that views it.
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// Whether it was saved with `requires_grad=True`.
    pub fn requires_grad(&self) -> bool {
        self.requires_grad
    }

    /// Whether it was saved as a `torch.nn.Parameter`.
    pub fn is_parameter(&self) -> bool {
        self.parameter
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the elements are laid out row-major without gaps (torch's
    /// `is_contiguous()`): then [`Tensor::bytes`] borrows from the storage.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&n, &s) in self.shape.iter().zip(&self.strides).rev() {
            if n != 1 && s != expected {
                return false;
            }
            expected *= n;
        }
        true
    }

    /// The size of its elements in bytes: [`Tensor::numel`] times the
    /// dtype's size (what [`Tensor::bytes`] returns; checked to fit in
    /// memory's address range when the tensor is made).
    pub fn nbytes(&self) -> usize {
        self.numel() * self.dtype.element_size()
    }

    /// The most bytes [`Tensor::bytes`] (and so [`Tensor::to_vec`],
    /// [`Tensor::to_f32_vec`], [`Tensor::to_ndarray`]) gathers for a view
    /// that has more bytes than its storage, 64 MiB: see
    /// [`Tensor::check_gather`].
    pub const GATHER_LIMIT: usize = 64 << 20;

    /// Whether [`Tensor::bytes`] would gather the elements, found without
    /// allocating anything.
    ///
    /// A view whose elements overlap (a stride of 0, as torch's `expand`
    /// makes) can have far more bytes than its storage: a 1-element storage
    /// viewed as 2²⁰ × 2²⁰ with strides (0, 0) is a file of a few hundred
    /// bytes and a tensor of 4 TiB. Gathering a view is refused when it
    /// would take more than its storage's size or [`Tensor::GATHER_LIMIT`],
    /// whichever is larger. A view that does not overlap never has more
    /// bytes than its storage, so it is never refused; an expanded one is
    /// allowed as much as it needs up to 64 MiB, which every real expanded
    /// buffer we know of fits in, while a hostile file cannot make a reader
    /// allocate much more than it holds. The storage itself can be read
    /// whatever its size with [`Storage::data`].
    pub fn check_gather(&self) -> Result<()> {
        let nbytes = self.nbytes();
        let storage = self.storage.nbytes();
        if nbytes > storage.max(Tensor::GATHER_LIMIT) {
            return Err(Error::invalid(format!(
                "a {} tensor of shape {:?} and strides {:?} has {nbytes} bytes of elements over a storage of {storage} bytes: its elements overlap (a stride of 0, as `expand` makes), and gathering more than the storage's size or 64 MiB, whichever is larger, is refused",
                self.dtype, self.shape, self.strides
            )));
        }
        Ok(())
    }

    /// The elements' bytes in row-major order, little-endian: borrowed when
    /// the tensor is contiguous, gathered otherwise. Fails, without
    /// allocating, for a view whose elements overlap and would take more
    /// than its storage's size or 64 MiB (see [`Tensor::check_gather`]).
    pub fn bytes(&self) -> Result<std::borrow::Cow<'_, [u8]>> {
        self.check_gather()?;
        let size = self.dtype().element_size();
        let data = self.storage.data();
        if self.numel() == 0 {
            return Ok(std::borrow::Cow::Borrowed(&[]));
        }
        if self.is_contiguous() {
            let start = self.offset * size;
            return Ok(std::borrow::Cow::Borrowed(
                &data[start..start + self.nbytes()],
            ));
        }
        let mut out = Vec::with_capacity(self.nbytes());
        self.for_each_index(|i| out.extend_from_slice(&data[i * size..(i + 1) * size]));
        Ok(std::borrow::Cow::Owned(out))
    }

    /// Calls `f` with the storage index of each element, in row-major order.
    fn for_each_index(&self, mut f: impl FnMut(usize)) {
        if self.shape.contains(&0) {
            return;
        }
        let mut index = vec![0usize; self.shape.len()];
        loop {
            let at = self.offset
                + index
                    .iter()
                    .zip(&self.strides)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            f(at);
            let mut d = self.shape.len();
            loop {
                if d == 0 {
                    return;
                }
                d -= 1;
                index[d] += 1;
                if index[d] < self.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
    }

    /// The elements in row-major order, as `T`; fails unless `T` is the
    /// tensor's dtype (`f32` for `float32`, `bool` for `bool`, ...), or
    /// when [`Tensor::bytes`] does.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        self.check_dtype::<T>()?;
        Ok(self
            .bytes()?
            .chunks_exact(T::DTYPE.element_size())
            .map(T::from_le)
            .collect())
    }

    /// The elements in row-major order as `f32`, from any real dtype
    /// (`float16`, `bfloat16`, `float8_e4m3fn` and `float8_e5m2` exactly,
    /// wider types rounded); a complex dtype is refused, and so is what
    /// [`Tensor::bytes`] refuses.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        let d = self.dtype();
        let convert: fn(&[u8]) -> f32 = match d {
            DType::Float16 => |b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            DType::BFloat16 => {
                |b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)
            }
            DType::Float8E4M3Fn => |b| f8_e4m3fn_to_f32(b[0]),
            // The top byte of a half: same exponent, two fraction bits.
            DType::Float8E5M2 => |b| f16_to_f32(u16::from(b[0]) << 8),
            DType::Float32 => |b| <f32 as Element>::from_le(b),
            DType::Float64 => |b| <f64 as Element>::from_le(b) as f32,
            DType::Bool | DType::UInt8 => |b| f32::from(b[0]),
            DType::Int8 => |b| f32::from(b[0] as i8),
            DType::Int16 => |b| f32::from(<i16 as Element>::from_le(b)),
            DType::Int32 => |b| <i32 as Element>::from_le(b) as f32,
            DType::Int64 => |b| <i64 as Element>::from_le(b) as f32,
            DType::UInt16 => |b| f32::from(<u16 as Element>::from_le(b)),
            DType::UInt32 => |b| <u32 as Element>::from_le(b) as f32,
            DType::UInt64 => |b| <u64 as Element>::from_le(b) as f32,
            _ => {
                return Err(Error::invalid(format!(
                    "expected a real dtype to convert to float32, found {d}"
                )))
            }
        };
        Ok(self
            .bytes()?
            .chunks_exact(d.element_size())
            .map(convert)
            .collect())
    }

    fn check_dtype<T: Element>(&self) -> Result<()> {
        if self.dtype() != T::DTYPE {
            return Err(Error::invalid(format!(
                "expected a {} tensor for {}, found {}",
                T::DTYPE,
                std::any::type_name::<T>(),
                self.dtype()
            )));
        }
        Ok(())
    }

    /// The tensor as an [`ndarray::ArrayD`], contiguous or strided; fails
    /// unless `T` is the tensor's dtype.
    #[cfg(feature = "ndarray")]
    pub fn to_ndarray<T: Element>(&self) -> Result<ndarray::ArrayD<T>> {
        // Gathered in row-major order, the elements make a standard-layout
        // array of the tensor's shape whatever its strides were.
        let items = self.to_vec::<T>()?;
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&self.shape), items)
            .map_err(|e| Error::invalid(format!("tensor of shape {:?}: {e}", self.shape)))
    }
}

/// Row-major strides for `shape`, in elements.
pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut step = 1usize;
    for (s, &n) in strides.iter_mut().zip(shape).rev() {
        *s = step;
        step = step.saturating_mul(n.max(1));
    }
    strides
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // A subnormal half is a normal float: shift the fraction up.
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// OCP FP8 E4M3 ("fn": finite, NaN only): exponent bias 7, no
/// infinities, NaN for S.1111.111, subnormals m/8 × 2⁻⁶.
fn f8_e4m3fn_to_f32(b: u8) -> f32 {
    let sign = u32::from(b >> 7) << 31;
    let exp = u32::from((b >> 3) & 0xf);
    let frac = u32::from(b & 0x7);
    let bits = match (exp, frac) {
        (0xf, 0x7) => sign | 0x7fc0_0000,
        (0, 0) => sign,
        // m × 2⁻⁹, exact: a small integer times a power of two.
        (0, _) => sign | (frac as f32 * f32::from_bits((127 - 9) << 23)).to_bits(),
        _ => sign | ((exp + 127 - 7) << 23) | (frac << 20),
    };
    f32::from_bits(bits)
}

mod sealed {
    pub trait Sealed {}
}

/// A Rust type that is a tensor element: `bool`, `u8`, `i8`, `i16`, `i32`,
/// `i64`, `u16`, `u32`, `u64`, `f32`, `f64`.
pub trait Element: Copy + sealed::Sealed + 'static {
    /// The dtype whose elements this type holds.
    const DTYPE: DType;
    /// One element from its little-endian bytes (exactly
    /// `DTYPE.element_size()` of them).
    fn from_le(bytes: &[u8]) -> Self;
}

macro_rules! element {
    ($($t:ty => $d:ident),*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            fn from_le(bytes: &[u8]) -> Self {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                b.copy_from_slice(bytes);
                <$t>::from_le_bytes(b)
            }
        }
    )*};
}

element!(u8 => UInt8, i8 => Int8, i16 => Int16, i32 => Int32, i64 => Int64,
    u16 => UInt16, u32 => UInt32, u64 => UInt64, f32 => Float32, f64 => Float64);

impl sealed::Sealed for bool {}
impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn from_le(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_convert_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc080), -2.25);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn float8_converts_exactly() {
        // The OCP FP8 spec's extremes.
        assert_eq!(f8_e4m3fn_to_f32(0x7e), 448.0);
        assert_eq!(f8_e4m3fn_to_f32(0x38), 1.0);
        assert_eq!(f8_e4m3fn_to_f32(0xb8), -1.0);
        assert_eq!(f8_e4m3fn_to_f32(0x08), 2f32.powi(-6));
        assert_eq!(f8_e4m3fn_to_f32(0x01), 2f32.powi(-9));
        assert_eq!(f8_e4m3fn_to_f32(0x07), 7.0 * 2f32.powi(-9));
        assert!(f8_e4m3fn_to_f32(0x7f).is_nan());
        assert!(f8_e4m3fn_to_f32(0xff).is_nan());
        assert_eq!(f8_e4m3fn_to_f32(0x78), 256.0);
        assert_eq!(f8_e4m3fn_to_f32(0x80).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn views_are_checked_against_their_storage() {
        let s = Arc::new(Storage::new(DType::UInt8, (0..6).collect()).unwrap());
        let u8 = DType::UInt8;
        let t = Tensor::from_storage(s.clone(), u8, &[3, 2], &[1, 3], 0).unwrap();
        assert!(!t.is_contiguous());
        assert_eq!(t.to_vec::<u8>().unwrap(), [0, 3, 1, 4, 2, 5]);
        assert!(Tensor::from_storage(s.clone(), u8, &[3, 2], &[1, 3], 1).is_err());
        assert!(Tensor::from_storage(s.clone(), u8, &[2], &[usize::MAX], 0).is_err());
        assert!(Tensor::from_storage(s.clone(), DType::Int32, &[2], &[1], 0).is_err());
        let empty = Tensor::from_storage(s.clone(), u8, &[0, 9], &[9, 1], 100).unwrap();
        assert!(empty.bytes().unwrap().is_empty());
        // expand(): strides of 0.
        let wide = Tensor::from_storage(s.clone(), u8, &[2, 3], &[0, 1], 0).unwrap();
        assert_eq!(wide.to_vec::<u8>().unwrap(), [0, 1, 2, 0, 1, 2]);
        let huge = [usize::MAX / 2, 4];
        assert!(Tensor::from_storage(s, u8, &huge, &[0, 0], 0).is_err());
    }
}
