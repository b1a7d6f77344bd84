//! The Rust element types a numpy array's items can be read as.

use super::dtype::{ByteOrder, Kind};

mod sealed {
    pub trait Sealed {}
}

/// A Rust type that is one numpy item: `bool`, `i8` … `i64`, `u8` …
/// `u64`, `f32`, `f64`, and with their features `half::f16` (`half`) and
/// `num_complex::Complex<f32>`/`Complex<f64>` (`num-complex`).
///
/// The trait is sealed: its methods are the crate's business.
pub trait Element: Copy + std::fmt::Debug + PartialEq + 'static + sealed::Sealed {
    /// The numpy kind of this type.
    #[doc(hidden)]
    const KIND: Kind;
    /// The item size in bytes.
    #[doc(hidden)]
    const SIZE: usize;
    /// Reads one item from exactly [`SIZE`](Element::SIZE) bytes.
    #[doc(hidden)]
    fn read(bytes: &[u8], order: ByteOrder) -> Self;
    /// Appends the item, little-endian.
    #[doc(hidden)]
    fn write_le(self, out: &mut Vec<u8>);
    /// The bytes as items in this machine's byte order, if their length and
    /// alignment allow it without copying.
    #[doc(hidden)]
    fn cast(bytes: &[u8]) -> Option<&[Self]>;
}

macro_rules! number {
    ($($t:ty => $kind:ident),* $(,)?) => {
        number!($($t => $kind, bytemuck::try_cast_slice),*);
    };
    ($($t:ty => $kind:ident, $cast:expr),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const KIND: Kind = Kind::$kind;
            const SIZE: usize = std::mem::size_of::<$t>();
            fn read(bytes: &[u8], order: ByteOrder) -> Self {
                let raw = <[u8; std::mem::size_of::<$t>()]>::try_from(bytes).unwrap_or_default();
                match order {
                    ByteOrder::Big => <$t>::from_be_bytes(raw),
                    _ => <$t>::from_le_bytes(raw),
                }
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn cast(bytes: &[u8]) -> Option<&[Self]> {
                $cast(bytes).ok()
            }
        }
    )*};
}

number!(
    i8 => Int, i16 => Int, i32 => Int, i64 => Int,
    u8 => UInt, u16 => UInt, u32 => UInt, u64 => UInt,
    f32 => Float, f64 => Float,
);

// Read by copying only: viewing `f16`s in place would need half's
// `bytemuck` feature, which builds a second syn for its derive.
#[cfg(feature = "half")]
number!(half::f16 => Float, |_| Err::<&[half::f16], ()>(()));

impl sealed::Sealed for bool {}

/// numpy's `bool` is one byte; any byte but 0 is true, as in numpy.
impl Element for bool {
    const KIND: Kind = Kind::Bool;
    const SIZE: usize = 1;
    fn read(bytes: &[u8], _: ByteOrder) -> Self {
        bytes.first().is_some_and(|&b| b != 0)
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
    fn cast(_: &[u8]) -> Option<&[Self]> {
        // A byte other than 0 or 1 is no Rust bool: always copy.
        None
    }
}

#[cfg(feature = "num-complex")]
macro_rules! complex {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for num_complex::Complex<$t> {}
        /// numpy's complex is the real part then the imaginary part.
        impl Element for num_complex::Complex<$t> {
            const KIND: Kind = Kind::Complex;
            const SIZE: usize = 2 * std::mem::size_of::<$t>();
            fn read(bytes: &[u8], order: ByteOrder) -> Self {
                let (re, im) = bytes.split_at(bytes.len() / 2);
                num_complex::Complex::new(<$t>::read(re, order), <$t>::read(im, order))
            }
            fn write_le(self, out: &mut Vec<u8>) {
                self.re.write_le(out);
                self.im.write_le(out);
            }
            fn cast(bytes: &[u8]) -> Option<&[Self]> {
                bytemuck::try_cast_slice(bytes).ok()
            }
        }
    )*};
}

#[cfg(feature = "num-complex")]
complex!(f32, f64);
