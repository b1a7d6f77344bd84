//! Tensor element types, by their torch names and storage classes.

use std::fmt;

/// A tensor's element type: `torch.float32`, `torch.bfloat16`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DType {
    /// `torch.bool`, one byte, 0 or 1.
    Bool,
    /// `torch.uint8`.
    UInt8,
    /// `torch.int8`.
    Int8,
    /// `torch.int16`.
    Int16,
    /// `torch.int32`.
    Int32,
    /// `torch.int64`.
    Int64,
    /// `torch.uint16`.
    UInt16,
    /// `torch.uint32`.
    UInt32,
    /// `torch.uint64`.
    UInt64,
    /// `torch.float16` (IEEE half).
    Float16,
    /// `torch.bfloat16` (the top half of a `float32`).
    BFloat16,
    /// `torch.float32`.
    Float32,
    /// `torch.float64`.
    Float64,
    /// `torch.complex64`: two `float32`.
    Complex64,
    /// `torch.complex128`: two `float64`.
    Complex128,
    /// `torch.float8_e4m3fn`.
    Float8E4M3Fn,
    /// `torch.float8_e5m2`.
    Float8E5M2,
}

/// Each dtype: its name in `torch`, its legacy storage class (the class a
/// persistent id names), its size in bytes.
const TABLE: &[(DType, &str, Option<&str>, usize)] = &[
    (DType::Bool, "bool", Some("BoolStorage"), 1),
    (DType::UInt8, "uint8", Some("ByteStorage"), 1),
    (DType::Int8, "int8", Some("CharStorage"), 1),
    (DType::Int16, "int16", Some("ShortStorage"), 2),
    (DType::Int32, "int32", Some("IntStorage"), 4),
    (DType::Int64, "int64", Some("LongStorage"), 8),
    (DType::UInt16, "uint16", None, 2),
    (DType::UInt32, "uint32", None, 4),
    (DType::UInt64, "uint64", None, 8),
    (DType::Float16, "float16", Some("HalfStorage"), 2),
    (DType::BFloat16, "bfloat16", Some("BFloat16Storage"), 2),
    (DType::Float32, "float32", Some("FloatStorage"), 4),
    (DType::Float64, "float64", Some("DoubleStorage"), 8),
    (
        DType::Complex64,
        "complex64",
        Some("ComplexFloatStorage"),
        8,
    ),
    (
        DType::Complex128,
        "complex128",
        Some("ComplexDoubleStorage"),
        16,
    ),
    (DType::Float8E4M3Fn, "float8_e4m3fn", None, 1),
    (DType::Float8E5M2, "float8_e5m2", None, 1),
];

impl DType {
    fn row(self) -> &'static (DType, &'static str, Option<&'static str>, usize) {
        // Every variant has a row; the table and the enum are kept together.
        TABLE.iter().find(|r| r.0 == self).unwrap_or(&TABLE[0])
    }

    /// The name after `torch.`: `"float32"`, `"bfloat16"`, ...
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// The size of one element in bytes.
    pub fn element_size(self) -> usize {
        self.row().3
    }

    /// The storage class torch names in a checkpoint for this dtype
    /// (`"FloatStorage"`), if it has one; dtypes without one are saved as
    /// `torch.UntypedStorage` with `_rebuild_tensor_v3`.
    pub fn storage_class(self) -> Option<&'static str> {
        self.row().2
    }

    /// The dtype named `torch.<name>` (`"float32"`; the aliases `"float"`,
    /// `"half"`, `"long"`... are not globals torch writes).
    pub fn from_name(name: &str) -> Option<DType> {
        TABLE.iter().find(|r| r.1 == name).map(|r| r.0)
    }

    /// The dtype of a storage class, `torch.<class>` (`"FloatStorage"`).
    pub fn from_storage_class(class: &str) -> Option<DType> {
        TABLE.iter().find(|r| r.2 == Some(class)).map(|r| r.0)
    }
}

impl fmt::Display for DType {
    /// As Python prints it: `torch.float32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "torch.{}", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_storage_classes_round_trip() {
        for &(d, name, class, _) in TABLE {
            assert_eq!(DType::from_name(name), Some(d));
            if let Some(c) = class {
                assert_eq!(DType::from_storage_class(c), Some(d));
            }
            assert_eq!(d.row().0, d);
        }
        assert_eq!(DType::BFloat16.to_string(), "torch.bfloat16");
        assert_eq!(DType::from_storage_class("QInt8Storage"), None);
    }
}
