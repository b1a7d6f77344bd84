//! numpy scalars: `numpy.float64(1.5)`, `numpy.int32(7)`, ...

use super::dtype::{DType, Kind};
use super::element::Element;
use super::{is_scalar, MULTIARRAY_WRITE};
use crate::base::error::{Error, ErrorKind, Result};
use crate::typed::construct::{Construct, Node};
use crate::typed::save::{FnReduce, Reduce, Saver};
use crate::value::Value;

/// A numpy scalar (`numpy.float64(1.5)`, `numpy.bool_(True)`, ...): a
/// dtype and the bytes of one item, or for an `object` scalar, the object.
/// numpy pickles it as `numpy.core.multiarray.scalar(dtype, bytes)`.
///
/// ```
/// use reduce::numpy::Scalar;
///
/// let x = Scalar::new(1.5f64);
/// assert_eq!(x.dtype().str(), "<f8");
/// assert_eq!(x.get::<f64>()?, 1.5);
/// assert!(x.get::<f32>().is_err());
/// # Ok::<(), reduce::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    dtype: DType,
    data: ScalarData,
}

#[derive(Clone, Debug, PartialEq)]
enum ScalarData {
    Bytes(Vec<u8>),
    Object(Value),
}

impl Scalar {
    /// The numpy scalar of a Rust value (`numpy.float32` for an `f32`).
    pub fn new<T: Element>(x: T) -> Scalar {
        let mut bytes = Vec::with_capacity(T::SIZE);
        x.write_le(&mut bytes);
        Scalar {
            dtype: DType::of::<T>(),
            data: ScalarData::Bytes(bytes),
        }
    }

    /// A scalar of any dtype but `object` from its bytes. Fails if there
    /// are not `item_size` bytes.
    pub fn from_bytes(dtype: DType, bytes: Vec<u8>) -> Result<Scalar> {
        if dtype.has_object() || bytes.len() != dtype.item_size() {
            return Err(Error::invalid(format!(
                "a numpy scalar of dtype {} needs {} bytes, found {}",
                dtype.str(),
                dtype.item_size(),
                bytes.len()
            )));
        }
        Ok(Scalar {
            dtype,
            data: ScalarData::Bytes(bytes),
        })
    }

    /// The dtype.
    pub fn dtype(&self) -> &DType {
        &self.dtype
    }

    /// The item's bytes, in the dtype's byte order; `None` for an `object`
    /// scalar.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.data {
            ScalarData::Bytes(b) => Some(b),
            ScalarData::Object(_) => None,
        }
    }

    /// The object of an `object` scalar.
    pub fn object(&self) -> Option<&Value> {
        match &self.data {
            ScalarData::Object(v) => Some(v),
            ScalarData::Bytes(_) => None,
        }
    }

    /// The value as a `T`, converted from the dtype's byte order. Fails if
    /// the dtype is not `T`'s.
    pub fn get<T: Element>(&self) -> Result<T> {
        let d = &self.dtype;
        match &self.data {
            ScalarData::Bytes(b)
                if d.kind() == T::KIND
                    && d.item_size() == T::SIZE
                    && d.fields().is_none()
                    && d.subdtype().is_none() =>
            {
                Ok(T::read(b, d.byte_order()))
            }
            _ => Err(Error::new(ErrorKind::Type {
                expected: format!("a numpy scalar of {}", std::any::type_name::<T>()),
                found: "another dtype",
            })
            .with_detail(format!("its dtype is {}", d.str()))),
        }
    }
}

impl Construct for Scalar {
    fn construct(node: Node<'_>) -> Result<Self> {
        let call = node.any_reduction()?;
        let g = call.global();
        if !is_scalar(&g.module, &g.name) {
            return Err(node
                .error(ErrorKind::Type {
                    expected: "a numpy scalar".to_owned(),
                    found: "another object",
                })
                .with_detail(format!("it is built by {g}")));
        }
        let args = call.args();
        let items = args.items()?;
        let [dtype, data] = items else {
            return Err(args.error_msg(format!(
                "expected scalar(dtype, data), found {} arguments",
                items.len()
            )));
        };
        let dtype: DType = args.field("dtype", dtype)?;
        if dtype.kind() == Kind::Object {
            let object: Value = args.field("data", data)?;
            return Ok(Scalar {
                dtype,
                data: ScalarData::Object(object),
            });
        }
        let bytes = args.with_field("data", data, super::data_bytes)?;
        Scalar::from_bytes(dtype, bytes).map_err(|e| e.with_path(node.path()))
    }
}

/// Written as `numpy.core.multiarray.scalar(dtype, bytes)`, which numpy 1
/// and 2 both load (numpy 2 keeps it for old pickles, without a warning).
impl Reduce for Scalar {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let data = FnReduce(|s: &mut Saver<'_, '_>| match &self.data {
            ScalarData::Bytes(b) => s.bytes(b),
            ScalarData::Object(v) => s.value(v),
        });
        s.reduction(MULTIARRAY_WRITE, "scalar")
            .args(&(&self.dtype, data))
            .save()
    }
}
