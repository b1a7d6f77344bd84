//! `numpy.ndarray`, dtype-erased: dtype, shape, order and bytes.

use std::fmt;

use super::dtype::{ByteOrder, DType, Kind, Shape};
use super::element::Element;
use super::{is_frombuffer, is_reconstruct, MULTIARRAY_WRITE};
use crate::base::error::{Error, ErrorKind, Result};
use crate::typed::construct::{Construct, Ctx, Node};
use crate::typed::registry::Lookup;
use crate::typed::save::{FnReduce, Reduce, Saver};
use crate::value::{Graph, Value};

/// numpy allows 64 dimensions (numpy 1: 32).
const MAX_DIMS: usize = 64;

/// The memory order of an array's items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Order {
    /// Row-major: the last index varies fastest (numpy's default).
    #[default]
    C,
    /// Column-major: the first index varies fastest.
    Fortran,
}

/// A numpy array whose dtype is known only at run time: the dtype, the
/// shape, the memory order, and the items as bytes (or, for `object`
/// arrays, as [`Value`]s).
///
/// ```
/// use reduce::numpy::{Array, Order};
///
/// let a = Array::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
/// assert_eq!(a.shape(), &[2, 3]);
/// assert_eq!(a.dtype().str(), "<f4");
/// assert_eq!(a.order(), Order::C);
/// assert_eq!(a.to_vec::<f32>()?, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
/// assert!(a.to_vec::<f64>().is_err()); // the dtype is float32
/// # Ok::<(), reduce::Error>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct Array {
    dtype: DType,
    shape: Vec<usize>,
    order: Order,
    data: Data,
}

#[derive(Clone, PartialEq)]
enum Data {
    Bytes(Vec<u8>),
    Objects(Vec<Value>),
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Array");
        d.field("dtype", &self.dtype.str())
            .field("shape", &self.shape)
            .field("order", &self.order);
        match &self.data {
            Data::Bytes(b) if b.len() <= 64 => d.field("bytes", b),
            Data::Bytes(b) => d.field("bytes", &format_args!("[{} bytes]", b.len())),
            Data::Objects(o) if o.len() <= 16 => d.field("objects", o),
            Data::Objects(o) => d.field("objects", &format_args!("[{} objects]", o.len())),
        };
        d.finish()
    }
}

/// The number of items of `shape`, if it does not overflow.
fn count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

fn shape_error(shape: &[usize], items: usize, what: &str) -> Error {
    Error::invalid(format!(
        "an array of shape {shape:?} needs {} {what}, found {items}",
        count(shape).map_or_else(|| "too many".to_owned(), |n| n.to_string())
    ))
}

impl Array {
    /// A C-order array of `shape` holding `data` (`numpy.array(data,
    /// dtype=T).reshape(shape)`), little-endian. Fails if the shape does not
    /// hold exactly `data.len()` items.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize]) -> Result<Array> {
        if count(shape) != Some(data.len()) || shape.len() > MAX_DIMS {
            return Err(shape_error(shape, data.len(), "items"));
        }
        let mut bytes = Vec::with_capacity(data.len() * T::SIZE);
        for x in data {
            x.write_le(&mut bytes);
        }
        Ok(Array {
            dtype: DType::of::<T>(),
            shape: shape.to_vec(),
            order: Order::C,
            data: Data::Bytes(bytes),
        })
    }

    /// An array of any dtype but `object` from its bytes, in `order`. Fails
    /// if the bytes are not `item_size` times the number of items.
    pub fn from_bytes(
        dtype: DType,
        shape: &[usize],
        order: Order,
        bytes: Vec<u8>,
    ) -> Result<Array> {
        if dtype.has_object() {
            return Err(Error::invalid(
                "an array of Python objects holds values, not bytes: use Array::from_objects",
            ));
        }
        let want = count(shape).and_then(|n| n.checked_mul(dtype.item_size()));
        if want != Some(bytes.len()) || shape.len() > MAX_DIMS {
            return Err(Error::invalid(format!(
                "an array of shape {shape:?} and dtype {} needs {} bytes, found {}",
                dtype.str(),
                want.map_or_else(|| "too many".to_owned(), |n| n.to_string()),
                bytes.len()
            )));
        }
        Ok(Array {
            dtype,
            shape: shape.to_vec(),
            order,
            data: Data::Bytes(bytes),
        })
    }

    /// An `object` array (dtype `O`) of Python values, in `order`.
    pub fn from_objects(values: Vec<Value>, shape: &[usize], order: Order) -> Result<Array> {
        if count(shape) != Some(values.len()) || shape.len() > MAX_DIMS {
            return Err(shape_error(shape, values.len(), "objects"));
        }
        Ok(Array {
            dtype: DType::new(Kind::Object, 8, ByteOrder::NotApplicable)?,
            shape: shape.to_vec(),
            order,
            data: Data::Objects(values),
        })
    }

    /// An array of bytes known to fit the dtype and shape.
    #[cfg(feature = "ndarray")]
    pub(crate) fn from_parts(
        dtype: DType,
        shape: Vec<usize>,
        order: Order,
        bytes: Vec<u8>,
    ) -> Array {
        Array {
            dtype,
            shape,
            order,
            data: Data::Bytes(bytes),
        }
    }

    /// The dtype.
    pub fn dtype(&self) -> &DType {
        &self.dtype
    }

    /// The shape (`()` for a 0-d array, which holds one item).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The memory order of [`bytes`](Array::bytes) and
    /// [`objects`](Array::objects).
    pub fn order(&self) -> Order {
        self.order
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        count(&self.shape).unwrap_or(0)
    }

    /// Whether the array has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The items' bytes in memory order ([`Array::order`]), in the dtype's
    /// byte order; `None` for an `object` array.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.data {
            Data::Bytes(b) => Some(b),
            Data::Objects(_) => None,
        }
    }

    /// The bytes, without copying; `None` for an `object` array.
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self.data {
            Data::Bytes(b) => Some(b),
            Data::Objects(_) => None,
        }
    }

    /// The items of an `object` array in memory order; `None` for others.
    pub fn objects(&self) -> Option<&[Value]> {
        match &self.data {
            Data::Objects(o) => Some(o),
            Data::Bytes(_) => None,
        }
    }

    /// Checks that the items are `T`s: a `datetime64` or `timedelta64`
    /// is `i64`s, counts of its unit.
    fn check<T: Element>(&self) -> Result<()> {
        let d = &self.dtype;
        let counts = T::KIND == Kind::Int && matches!(d.kind(), Kind::DateTime | Kind::TimeDelta);
        if (d.kind() == T::KIND || counts)
            && d.item_size() == T::SIZE
            && d.fields().is_none()
            && d.subdtype().is_none()
        {
            return Ok(());
        }
        Err(Error::new(ErrorKind::Type {
            expected: format!(
                "a numpy array of {} ({})",
                std::any::type_name::<T>(),
                DType::of::<T>().str()
            ),
            found: "another dtype",
        })
        .with_detail(format!("its dtype is {}", d.str())))
    }

    /// The items as a slice of `T`, without copying, in memory order
    /// ([`Array::order`]: a Fortran-order array gives its items column by
    /// column). Fails if the dtype is not `T`'s, if the byte order is not
    /// this machine's, or if the bytes are not aligned for `T` (then use
    /// [`to_vec`](Array::to_vec), which copies). `bool` is never viewed in
    /// place (a byte other than 0 or 1 is no Rust `bool`), nor is
    /// `half::f16`.
    pub fn as_slice<T: Element>(&self) -> Result<&[T]> {
        self.check::<T>()?;
        if T::SIZE > 1 && self.dtype.byte_order() != ByteOrder::NATIVE {
            return Err(Error::invalid(format!(
                "the array is {}, not in this machine's byte order: use to_vec, which converts",
                self.dtype.str()
            )));
        }
        self.bytes()
            .and_then(T::cast)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "the array's bytes cannot be viewed as {} in place (alignment): use to_vec, which copies",
                    std::any::type_name::<T>()
                ))
            })
    }

    /// The items as `T`s in logical (C, row-major) order, whatever the
    /// memory order, converted from the dtype's byte order. Fails if the
    /// dtype is not `T`'s.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        let items = self.to_vec_in_memory_order::<T>()?;
        Ok(match self.order {
            Order::Fortran => fortran_to_c(&items, &self.shape),
            Order::C => items,
        })
    }

    /// The items as `T`s in memory order.
    pub(crate) fn to_vec_in_memory_order<T: Element>(&self) -> Result<Vec<T>> {
        self.check::<T>()?;
        let bytes = self.bytes().unwrap_or_default();
        let order = self.dtype.byte_order();
        // Aligned and in this machine's order: one copy.
        if T::SIZE == 1 || order == ByteOrder::NATIVE {
            if let Some(items) = T::cast(bytes) {
                return Ok(items.to_vec());
            }
        }
        Ok(bytes
            .chunks_exact(T::SIZE)
            .map(|b| T::read(b, order))
            .collect())
    }

    /// The items in memory order, as bytes or objects.
    fn data(&self) -> DataRef<'_> {
        match &self.data {
            Data::Bytes(b) => DataRef::Bytes(b),
            Data::Objects(o) => DataRef::Objects(o),
        }
    }

    /// Reads an array from a node, using `stolen` as its data if given (the
    /// data was moved out of the graph).
    fn read(node: Node<'_>, stolen: Option<Vec<u8>>) -> Result<Array> {
        let call = node.any_reduction()?;
        let g = call.global();
        let array = if is_reconstruct(&g.module, &g.name) {
            read_reconstruct(call, stolen)
        } else if is_frombuffer(&g.module, &g.name) {
            read_frombuffer(call, stolen)
        } else {
            return Err(node
                .error(ErrorKind::Type {
                    expected: "a numpy array".to_owned(),
                    found: "another object",
                })
                .with_detail(format!("it is built by {g}")));
        };
        array.map_err(|e| e.with_path(node.path()))
    }
}

/// `items` in Fortran order to C order, for `shape`.
pub(crate) fn fortran_to_c<T: Clone>(items: &[T], shape: &[usize]) -> Vec<T> {
    reorder(items, shape, Order::Fortran)
}

/// `items` in C order to Fortran order, for `shape`.
fn c_to_fortran<T: Clone>(items: &[T], shape: &[usize]) -> Vec<T> {
    reorder(items, shape, Order::C)
}

/// `items`, laid out in order `from`, laid out in the other order.
fn reorder<T: Clone>(items: &[T], shape: &[usize], from: Order) -> Vec<T> {
    if shape.iter().filter(|&&d| d > 1).count() < 2 {
        return items.to_vec();
    }
    // `dims` lists the dimensions from the source's fastest-varying to its
    // slowest, which gives the source's strides.
    let n = shape.len();
    let mut strides = vec![0usize; n];
    let mut s = 1usize;
    let dims: Vec<usize> = match from {
        Order::C => (0..n).rev().collect(),
        Order::Fortran => (0..n).collect(),
    };
    for &k in &dims {
        strides[k] = s;
        s = s.saturating_mul(shape[k]);
    }
    // Walk the indexes in the target's order: it varies fastest where the
    // source varies slowest.
    let mut index = vec![0usize; n];
    let mut out = Vec::with_capacity(items.len());
    for _ in 0..items.len() {
        let at: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        if let Some(x) = items.get(at) {
            out.push(x.clone());
        }
        for &k in dims.iter().rev() {
            index[k] += 1;
            if index[k] < shape[k] {
                break;
            }
            index[k] = 0;
        }
    }
    out
}

/// `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')`, then
/// `BUILD` with `(1, shape, dtype, is_fortran, data)`: what numpy writes
/// below protocol 5, and at 5 for object and non-contiguous arrays.
fn read_reconstruct(
    call: crate::typed::construct::Call<'_>,
    stolen: Option<Vec<u8>>,
) -> Result<Array> {
    let args = call.args();
    let cls = args.items()?.first().map(|c| args.graph().resolve(c));
    match cls {
        Some(Value::Global(g)) if g.module == "numpy" && g.name == "ndarray" => {}
        Some(Value::Global(g)) => {
            return Err(args.error_msg(format!(
                "only numpy.ndarray itself can be read as an array, not the subclass {g}"
            )))
        }
        _ => return Err(args.error_msg("expected numpy.ndarray as the class to reconstruct")),
    }
    let Some(state) = call.state() else {
        return Err(call
            .node()
            .error_msg("a numpy array without its state (BUILD)"));
    };
    state.with(|st| {
        let items = st.items()?;
        // Version 1 state; numpy before 1.0 wrote the same without it.
        let items = match items {
            [v, rest @ ..] if rest.len() == 4 => {
                let version: i64 = st.item(0, v)?;
                if version != 1 {
                    return Err(st.error_msg(format!(
                        "unsupported numpy array state version {version} (expected 1)"
                    )));
                }
                rest
            }
            [_, _, _, _] => items,
            _ => {
                return Err(st.error_msg(format!(
                    "expected a numpy array state (version, shape, dtype, is_fortran, data), found {} items",
                    items.len()
                )))
            }
        };
        let shape: Vec<usize> = st.field("shape", &items[0])?;
        let dtype: DType = st.field("dtype", &items[1])?;
        let fortran: bool = st.field("is_fortran", &items[2])?;
        let order = if fortran { Order::Fortran } else { Order::C };
        check_dims(&shape)?;
        if dtype.kind() == Kind::Object {
            // Object arrays pickle their items as a list, in C order
            // whatever the array's order (numpy walks them with an iterator).
            let mut list: Value = st.field("data", &items[3])?;
            let values = match &mut list {
                Value::List(values) => std::mem::take(values),
                _ => return Err(st.error_msg("expected the items of an object array as a list")),
            };
            let mut array = Array::from_objects(values, &shape, Order::C)?;
            if order == Order::Fortran {
                if let Data::Objects(o) = &mut array.data {
                    *o = c_to_fortran(o, &shape);
                }
                array.order = Order::Fortran;
            }
            return Ok(array);
        }
        if dtype.has_object() {
            return Err(st.error_msg(
                "structured dtypes with object fields are not supported; read the pickle as a Value",
            ));
        }
        let bytes = match stolen {
            Some(b) => b,
            None => st.with_field("data", &items[3], super::data_bytes)?,
        };
        Array::from_bytes(dtype, &shape, order, bytes)
    })
}

/// `numpy.core.numeric._frombuffer(buffer, dtype, shape, order)`: what
/// numpy writes at protocol 5 for contiguous arrays, with the buffer in
/// band (`BYTEARRAY8`) or out of band (`NEXT_BUFFER`).
fn read_frombuffer(
    call: crate::typed::construct::Call<'_>,
    stolen: Option<Vec<u8>>,
) -> Result<Array> {
    let args = call.args();
    let items = args.items()?;
    let [buffer, dtype, shape, order] = items else {
        return Err(args.error_msg(format!(
            "expected _frombuffer(buffer, dtype, shape, order), found {} arguments",
            items.len()
        )));
    };
    let dtype: DType = args.field("dtype", dtype)?;
    let shape: Vec<usize> = args.field("shape", shape)?;
    check_dims(&shape)?;
    let order: String = args.field("order", order)?;
    let order = match order.as_str() {
        "C" => Order::C,
        "F" => Order::Fortran,
        other => {
            return Err(args.error_msg(format!("expected the order `C` or `F`, found `{other}`")))
        }
    };
    let bytes = match stolen {
        Some(b) => b,
        None => args.with_field("buffer", buffer, super::data_bytes)?,
    };
    Array::from_bytes(dtype, &shape, order, bytes)
}

fn check_dims(shape: &[usize]) -> Result<()> {
    if shape.len() > MAX_DIMS {
        return Err(Error::invalid(format!(
            "an array of {} dimensions (numpy allows {MAX_DIMS})",
            shape.len()
        )));
    }
    Ok(())
}

/// The array's data inside the root of a graph, if the root is an array
/// and its data is held there directly (not shared): the `bytes` of
/// `_reconstruct`'s state or the buffer of `_frombuffer`.
fn data_slot(root: &mut Value) -> Option<&mut Vec<u8>> {
    let Value::Reduce(r) = root else {
        return None;
    };
    let Value::Global(g) = &r.callable else {
        return None;
    };
    let slot = if is_reconstruct(&g.module, &g.name) {
        match r.state.as_mut()? {
            Value::Tuple(items) if matches!(items.len(), 4 | 5) => items.last_mut()?,
            _ => return None,
        }
    } else if is_frombuffer(&g.module, &g.name) {
        match &mut r.args {
            Value::Tuple(items) => items.first_mut()?,
            _ => return None,
        }
    } else {
        return None;
    };
    match slot {
        Value::Bytes(b) | Value::ByteArray(b) => Some(b),
        Value::Buffer(b) => Some(&mut b.data),
        _ => None,
    }
}

impl Construct for Array {
    fn construct(node: Node<'_>) -> Result<Self> {
        Array::read(node, None)
    }

    /// A pickle whose root is an array gives its bytes (or its out-of-band
    /// buffer) to the array without copying them.
    fn from_graph(
        mut graph: Graph,
        lookup: &Lookup,
        limits: &crate::base::limits::Limits,
    ) -> Result<Self> {
        let stolen = data_slot(graph.root_mut()).map(std::mem::take);
        let ctx = Ctx::new(
            lookup,
            &graph,
            limits.max_typed_depth,
            crate::typed::construct::typed_copies(limits),
        );
        let array = Array::read(Node::root(&graph, &ctx), stolen)?;
        ctx.finish()?;
        Ok(array)
    }
}

/// The items of an array to write, in memory order.
pub(crate) enum DataRef<'a> {
    Bytes(&'a [u8]),
    Objects(&'a [Value]),
}

/// Writes an array as `numpy.core.multiarray._reconstruct`, the form numpy
/// 1.x and 2.x both write and read at every protocol. (numpy 2 keeps
/// `numpy.core.multiarray._reconstruct` importable without a warning, for
/// old pickles; numpy 1.26 has no `numpy._core.numeric` for numpy 2's
/// protocol 5 `_frombuffer`, and numpy 2 warns on `numpy.core.numeric`.)
pub(crate) fn save_array(
    s: &mut Saver<'_, '_>,
    dtype: &DType,
    shape: &[usize],
    order: Order,
    data: DataRef<'_>,
) -> Result<()> {
    // numpy says "Fortran" only for arrays that are not also C-contiguous,
    // i.e. with two or more dimensions longer than 1.
    let fortran = order == Order::Fortran && shape.iter().filter(|&&d| d > 1).count() > 1;
    let args = (
        FnReduce(|s: &mut Saver<'_, '_>| s.global("numpy", "ndarray")),
        Shape(&[0]),
        FnReduce(|s: &mut Saver<'_, '_>| s.bytes(b"b")),
    );
    let state = FnReduce(|s: &mut Saver<'_, '_>| {
        s.tuple(5, |s| {
            s.i64(1)?;
            s.save(&Shape(shape))?;
            s.save(dtype)?;
            s.bool(fortran)?;
            match &data {
                DataRef::Bytes(b) => s.bytes(b),
                DataRef::Objects(o) => s.list(o.iter()),
            }
        })
    });
    s.reduction(MULTIARRAY_WRITE, "_reconstruct")
        .args(&args)
        .state(&state)
        .save()
}

/// Written as numpy writes it below protocol 5, under the module path
/// numpy 1 and 2 both load: see the [module docs](super).
impl Reduce for Array {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        match (&self.data, self.order) {
            // numpy lists an object array's items in C order, whatever the
            // array's order.
            (Data::Objects(o), Order::Fortran) => {
                let c = fortran_to_c(o, &self.shape);
                save_array(
                    s,
                    &self.dtype,
                    &self.shape,
                    Order::Fortran,
                    DataRef::Objects(&c),
                )
            }
            _ => save_array(s, &self.dtype, &self.shape, self.order, self.data()),
        }
    }
}
