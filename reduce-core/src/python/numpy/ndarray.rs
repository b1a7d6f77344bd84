//! `ndarray::Array<T, D>` as numpy arrays, both ways (feature `ndarray`).

use ndarray::{ArrayBase, ArrayD, Data, Dimension, IxDyn, ShapeBuilder};

use super::array::{save_array, Array, DataRef, Order};
use super::dtype::DType;
use super::element::Element;
use crate::base::error::{Error, Result};
use crate::typed::construct::{Construct, Node};
use crate::typed::save::{Reduce, Saver};

impl Array {
    /// The array as an [`ndarray::ArrayD`] of `T`, in its own memory order
    /// (a Fortran-order array stays Fortran-order) and converted to this
    /// machine's byte order. Fails if the dtype is not `T`'s.
    ///
    /// ```
    /// use reduce::numpy::Array;
    ///
    /// let a = Array::from_vec(vec![1i64, 2, 3, 4, 5, 6], &[2, 3])?;
    /// let nd = a.to_ndarray::<i64>()?;
    /// assert_eq!(nd[[1, 0]], 4);
    /// # Ok::<(), reduce::Error>(())
    /// ```
    pub fn to_ndarray<T: Element>(&self) -> Result<ArrayD<T>> {
        let items = self.to_vec_in_memory_order::<T>()?;
        let shape = IxDyn(self.shape());
        let made = match self.order() {
            Order::C => ArrayD::from_shape_vec(shape, items),
            Order::Fortran => ArrayD::from_shape_vec(shape.f(), items),
        };
        made.map_err(|e| Error::invalid(format!("the array does not fit its shape: {e}")))
    }

    /// A numpy array of an [`ndarray`] array or view: C order when it is in
    /// standard layout, Fortran order when its transpose is, otherwise its
    /// items copied in C order.
    pub fn from_ndarray<T: Element, S: Data<Elem = T>, D: Dimension>(a: &ArrayBase<S, D>) -> Array {
        let (order, bytes) = ndarray_bytes(a);
        // The bytes are the items of the shape, so they fit it.
        Array::from_parts(DType::of::<T>(), a.shape().to_vec(), order, bytes)
    }
}

fn ndarray_bytes<T: Element, S: Data<Elem = T>, D: Dimension>(
    a: &ArrayBase<S, D>,
) -> (Order, Vec<u8>) {
    let mut bytes = Vec::with_capacity(a.len().saturating_mul(T::SIZE));
    // `iter` walks in logical (C) order; the transpose of a Fortran-order
    // array walks it in memory order.
    let order = if !a.is_standard_layout() && a.t().is_standard_layout() {
        a.t().iter().for_each(|x| x.write_le(&mut bytes));
        Order::Fortran
    } else {
        a.iter().for_each(|x| x.write_le(&mut bytes));
        Order::C
    };
    (order, bytes)
}

/// Reads any numpy array of `T`'s dtype with `D`'s number of dimensions
/// (any number for `IxDyn`), in either byte order, keeping Fortran order.
impl<T: Element, D: Dimension> Construct for ArrayBase<ndarray::OwnedRepr<T>, D> {
    fn construct(node: Node<'_>) -> Result<Self> {
        let array: Array = node.construct()?;
        let dynamic = array
            .to_ndarray::<T>()
            .map_err(|e| e.with_path(node.path()))?;
        let ndim = dynamic.ndim();
        dynamic.into_dimensionality::<D>().map_err(|_| {
            node.error_msg(format!(
                "expected a {}-dimensional array, found {ndim} dimensions",
                D::NDIM.map_or_else(|| "n".to_owned(), |n| n.to_string())
            ))
        })
    }
}

/// Written as numpy writes it (see [`Array`]'s `Reduce`), little-endian.
impl<T: Element, S: Data<Elem = T>, D: Dimension> Reduce for ArrayBase<S, D> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let (order, bytes) = ndarray_bytes(self);
        save_array(
            s,
            &DType::of::<T>(),
            self.shape(),
            order,
            DataRef::Bytes(&bytes),
        )
    }
}
