//! `numpy.dtype`: what one item of an array is, described.
//!
//! numpy pickles a dtype as `numpy.dtype(code, False, True)` followed by a
//! `BUILD` state tuple:
//!
//! ```text
//! (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
//! ```
//!
//! `code` is the kind character and a size (`'f8'`, `'U5'`, `'V16'`);
//! `elsize` and `alignment` are `-1` except for flexible and structured
//! dtypes; `fields` maps each name (and each title) to `(dtype, offset[,
//! title])`; version 4 adds `metadata`: `dtype.metadata` (a dict), or
//! for a datetime the pair of it and the unit.

use std::collections::{HashMap, HashSet};

use crate::base::error::Result;
use crate::typed::construct::{Construct, Node};
use crate::typed::impls::{Bytes, Interned};
use crate::typed::save::{FnReduce, Reduce, Saver};
use crate::value::Value;

/// The deepest a dtype may nest inside itself (structured dtypes of
/// structured dtypes), as a guard against hostile pickles; numpy's own
/// limit on dimensions is 64.
const MAX_DIMS: usize = 64;

/// The kind of a numpy dtype: its `dtype.kind` character.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// `b`: `bool`.
    Bool,
    /// `i`: signed integers, `int8` … `int64`.
    Int,
    /// `u`: unsigned integers, `uint8` … `uint64`.
    UInt,
    /// `f`: `float16`, `float32`, `float64`, `longdouble`.
    Float,
    /// `c`: `complex64`, `complex128`, `clongdouble`.
    Complex,
    /// `S`: fixed-size `bytes` (NUL-padded).
    Bytes,
    /// `U`: fixed-size `str`, UCS-4 (4 bytes a character).
    Str,
    /// `V`: raw bytes, structured records and subarrays.
    Void,
    /// `O`: Python objects (each item is a pickled value).
    Object,
    /// `M`: `datetime64`.
    DateTime,
    /// `m`: `timedelta64`.
    TimeDelta,
}

impl Kind {
    /// The `dtype.kind` character.
    pub fn char(self) -> char {
        match self {
            Kind::Bool => 'b',
            Kind::Int => 'i',
            Kind::UInt => 'u',
            Kind::Float => 'f',
            Kind::Complex => 'c',
            Kind::Bytes => 'S',
            Kind::Str => 'U',
            Kind::Void => 'V',
            Kind::Object => 'O',
            Kind::DateTime => 'M',
            Kind::TimeDelta => 'm',
        }
    }

    fn from_char(c: char) -> Option<Kind> {
        Some(match c {
            'b' => Kind::Bool,
            'i' => Kind::Int,
            'u' => Kind::UInt,
            'f' => Kind::Float,
            'c' => Kind::Complex,
            'S' => Kind::Bytes,
            'U' => Kind::Str,
            'V' => Kind::Void,
            'O' => Kind::Object,
            'M' => Kind::DateTime,
            'm' => Kind::TimeDelta,
            _ => return None,
        })
    }

    /// Flexible kinds carry their size in the dtype (`S3`, `U5`, `V16`).
    fn flexible(self) -> bool {
        matches!(self, Kind::Bytes | Kind::Str | Kind::Void)
    }
}

/// The byte order of a dtype's items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// `<`.
    Little,
    /// `>`.
    Big,
    /// `|`: not applicable (one-byte items, bytes, objects, records).
    NotApplicable,
}

impl ByteOrder {
    /// The byte order of this machine.
    pub const NATIVE: ByteOrder = if cfg!(target_endian = "big") {
        ByteOrder::Big
    } else {
        ByteOrder::Little
    };

    /// numpy's character: `<`, `>` or `|`.
    pub fn char(self) -> char {
        match self {
            ByteOrder::Little => '<',
            ByteOrder::Big => '>',
            ByteOrder::NotApplicable => '|',
        }
    }
}

/// One field of a structured dtype.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The field's name.
    pub name: String,
    /// The field's dtype.
    pub dtype: DType,
    /// Where the field starts inside an item, in bytes.
    pub offset: usize,
    /// The field's title, if it has one (a second name numpy accepts).
    pub title: Option<String>,
}

/// A numpy dtype, described: kind, item size, byte order, and for
/// structured dtypes their fields, for subarray dtypes their base and
/// shape, for `datetime64`/`timedelta64` their unit.
///
/// ```
/// use reduce::numpy::{ByteOrder, DType, Kind};
///
/// let f = DType::of::<f32>();
/// assert_eq!((f.kind(), f.item_size(), f.byte_order()), (Kind::Float, 4, ByteOrder::Little));
/// assert_eq!(f.str(), "<f4");
/// ```
#[derive(Clone, Debug)]
pub struct DType {
    kind: Kind,
    size: usize,
    order: ByteOrder,
    subarray: Option<Box<(DType, Vec<usize>)>>,
    fields: Option<Vec<Field>>,
    unit: Option<(String, u32)>,
    /// `dtype.metadata`, the dict given as `numpy.dtype(..., metadata=...)`.
    metadata: Option<Value>,
    /// numpy's `alignment` and `flags` as pickled, written back unchanged
    /// (numpy 1 pickles the flags as a signed byte, numpy 2 unsigned).
    alignment: i64,
    flags: i64,
}

impl PartialEq for DType {
    fn eq(&self, other: &DType) -> bool {
        // alignment and flags are numpy's bookkeeping, derived from the
        // rest (and pickled differently by numpy 1 and 2).
        self.kind == other.kind
            && self.size == other.size
            && self.order == other.order
            && self.subarray == other.subarray
            && self.fields == other.fields
            && self.unit == other.unit
    }
}

/// `NPY_NEEDS_INIT`: numpy's flag on `U` dtypes.
const NEEDS_INIT: i64 = 8;
/// `NPY_OBJECT_DTYPE_FLAGS`: the flags of `O`.
const OBJECT_FLAGS: i64 = 63;
/// `NPY_NEEDS_PYAPI`: numpy's flag on structured dtypes.
const NEEDS_PYAPI: i64 = 16;

impl DType {
    /// A plain dtype: `kind`, `size` bytes an item, in `order` (forced to
    /// [`ByteOrder::NotApplicable`] where numpy does: one-byte numbers, `S`,
    /// `V` and `O`).
    ///
    /// Fails if the size does not fit the kind (`Bool` is 1 byte, `Int` 1 to
    /// 8, `Object` 8, `Str` a multiple of 4, ...).
    pub fn new(kind: Kind, size: usize, order: ByteOrder) -> Result<DType> {
        let ok = match kind {
            Kind::Bool => size == 1,
            Kind::Int | Kind::UInt => matches!(size, 1 | 2 | 4 | 8),
            Kind::Float => matches!(size, 2 | 4 | 8 | 12 | 16),
            Kind::Complex => matches!(size, 8 | 16 | 24 | 32),
            Kind::Object | Kind::DateTime | Kind::TimeDelta => size == 8,
            Kind::Str => size.is_multiple_of(4),
            Kind::Bytes | Kind::Void => true,
        };
        if !ok {
            return Err(crate::base::error::Error::invalid(format!(
                "a numpy dtype of kind '{}' cannot have {size}-byte items",
                kind.char()
            )));
        }
        let order = if (size == 1 && kind != Kind::Str)
            || matches!(kind, Kind::Bytes | Kind::Void | Kind::Object)
        {
            ByteOrder::NotApplicable
        } else if order == ByteOrder::NotApplicable {
            ByteOrder::NATIVE
        } else {
            order
        };
        let (alignment, flags) = match kind {
            Kind::Str => (4, NEEDS_INIT),
            Kind::Bytes | Kind::Void => (1, 0),
            Kind::Object => (-1, OBJECT_FLAGS),
            _ => (-1, 0),
        };
        Ok(DType {
            kind,
            size,
            order,
            subarray: None,
            fields: None,
            unit: (matches!(kind, Kind::DateTime | Kind::TimeDelta))
                .then(|| ("generic".to_owned(), 1)),
            metadata: None,
            alignment,
            flags,
        })
    }

    /// The dtype numpy uses for a Rust element type (`float32` for `f32`,
    /// little-endian).
    pub fn of<T: super::Element>() -> DType {
        DType {
            kind: T::KIND,
            size: T::SIZE,
            order: if T::SIZE == 1 {
                ByteOrder::NotApplicable
            } else {
                ByteOrder::Little
            },
            subarray: None,
            fields: None,
            unit: None,
            metadata: None,
            alignment: -1,
            flags: 0,
        }
    }

    /// `datetime64` or `timedelta64` in `unit` (`"s"`, `"ms"`, `"ns"`,
    /// `"D"`, ... or `"generic"`), counting `count` units at a time
    /// (`m8[10s]` is `("s", 10)`).
    pub fn datetime(kind: Kind, unit: &str, count: u32, order: ByteOrder) -> Result<DType> {
        if !matches!(kind, Kind::DateTime | Kind::TimeDelta) {
            return Err(crate::base::error::Error::invalid(format!(
                "a time unit needs a datetime64 or timedelta64 dtype, not kind '{}'",
                kind.char()
            )));
        }
        let mut d = DType::new(kind, 8, order)?;
        d.unit = Some((unit.to_owned(), count));
        Ok(d)
    }

    /// A structured dtype: named fields at offsets inside items of
    /// `item_size` bytes (as `numpy.dtype({"names": ..., "formats": ...,
    /// "offsets": ..., "itemsize": ...})`). Fails if a field does not fit
    /// or two fields share a name.
    pub fn structured(fields: Vec<Field>, item_size: usize) -> Result<DType> {
        let mut names = HashSet::with_capacity(fields.len());
        for f in &fields {
            if f.offset
                .checked_add(f.dtype.size)
                .is_none_or(|end| end > item_size)
            {
                return Err(crate::base::error::Error::invalid(format!(
                    "field `{}` ({} bytes at offset {}) does not fit in {item_size}-byte items",
                    f.name, f.dtype.size, f.offset
                )));
            }
            if !names.insert(f.name.as_str()) {
                return Err(crate::base::error::Error::invalid(format!(
                    "two fields are named `{}`",
                    f.name
                )));
            }
        }
        Ok(DType {
            kind: Kind::Void,
            size: item_size,
            order: ByteOrder::NotApplicable,
            subarray: None,
            flags: fields
                .iter()
                .fold(NEEDS_PYAPI, |acc, f| acc | (f.dtype.flags & OBJECT_FLAGS)),
            fields: Some(fields),
            unit: None,
            metadata: None,
            alignment: 1,
        })
    }

    /// A subarray dtype: each item is an array of `shape` items of `base`
    /// (`numpy.dtype(("i4", (2, 3)))`).
    pub fn subarray(base: DType, shape: Vec<usize>) -> Result<DType> {
        let size = shape
            .iter()
            .try_fold(base.size, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| {
                crate::base::error::Error::invalid("the subarray dtype's size overflows")
            })?;
        Ok(DType {
            kind: Kind::Void,
            size,
            order: ByteOrder::NotApplicable,
            alignment: if base.alignment > 0 {
                base.alignment
            } else {
                base.size.max(1) as i64
            },
            flags: base.flags,
            subarray: Some(Box::new((base, shape))),
            fields: None,
            unit: None,
            metadata: None,
        })
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The size of one item in bytes (`dtype.itemsize`).
    pub fn item_size(&self) -> usize {
        self.size
    }

    /// The byte order.
    pub fn byte_order(&self) -> ByteOrder {
        self.order
    }

    /// The fields of a structured dtype, in order (`dtype.names` with
    /// `dtype.fields`); `None` for other dtypes.
    pub fn fields(&self) -> Option<&[Field]> {
        self.fields.as_deref()
    }

    /// The base dtype and shape of a subarray dtype (`dtype.subdtype`).
    pub fn subdtype(&self) -> Option<(&DType, &[usize])> {
        self.subarray.as_deref().map(|(d, s)| (d, s.as_slice()))
    }

    /// numpy's `dtype.metadata`: the dict given as `numpy.dtype(...,
    /// metadata=...)` (h5py marks its string types with one), kept as read
    /// and written back; `None` where there is none. Equality ignores it,
    /// as numpy's does.
    ///
    /// ```
    /// use reduce::numpy::DType;
    /// use reduce::Value;
    ///
    /// let meta = Value::Dict(vec![(Value::from("unit"), Value::from("m"))]);
    /// let d = DType::of::<f64>().with_metadata(Some(meta.clone()));
    /// assert_eq!(d.metadata(), Some(&meta));
    /// assert_eq!(d, DType::of::<f64>());
    /// ```
    pub fn metadata(&self) -> Option<&Value> {
        self.metadata.as_ref()
    }

    /// This dtype with `metadata` as its `dtype.metadata` (a dict), or
    /// none.
    pub fn with_metadata(mut self, metadata: Option<Value>) -> DType {
        self.metadata = metadata;
        self
    }

    /// The unit and count of a `datetime64`/`timedelta64` (`("ns", 1)`).
    pub fn time_unit(&self) -> Option<(&str, u32)> {
        self.unit.as_ref().map(|(u, n)| (u.as_str(), *n))
    }

    /// Whether items are Python objects (`O`), also inside fields.
    pub fn has_object(&self) -> bool {
        self.kind == Kind::Object
            || self.subdtype().is_some_and(|(d, _)| d.has_object())
            || self
                .fields()
                .is_some_and(|f| f.iter().any(|f| f.dtype.has_object()))
    }

    /// numpy's `dtype.str` for plain dtypes (`"<f4"`, `"|b1"`, `"<U5"`,
    /// `"<M8[ns]"`), `"|V<size>"` for records and subarrays.
    pub fn str(&self) -> String {
        if self.kind == Kind::Object {
            return "|O".to_owned();
        }
        let mut s = format!("{}{}", self.order.char(), self.code());
        if let Some((unit, n)) = self.time_unit() {
            if unit != "generic" {
                if n == 1 {
                    s.push_str(&format!("[{unit}]"));
                } else {
                    s.push_str(&format!("[{n}{unit}]"));
                }
            }
        }
        s
    }

    /// The code numpy pickles as the dtype's first argument: kind and size,
    /// in characters for `U`.
    fn code(&self) -> String {
        let n = match self.kind {
            Kind::Str => self.size / 4,
            _ => self.size,
        };
        format!("{}{n}", self.kind.char())
    }

    /// Reads a dtype from `numpy.dtype(code, align, copy)` and its state.
    fn read(node: Node<'_>) -> Result<DType> {
        let call = node.reduction("numpy", "dtype")?;
        let args = call.args();
        let items = args.items()?;
        let code: String = match items.first() {
            Some(v) => args.item(0, v)?,
            None => return Err(args.error_msg("numpy.dtype needs a type code argument")),
        };
        let mut chars = code.chars();
        let kind = chars.next().and_then(Kind::from_char).ok_or_else(|| {
            args.error_msg(format!(
                "unsupported numpy dtype code `{code}` (expected a kind character of `biufcSUVOMm` and a size)"
            ))
        })?;
        let digits = chars.as_str();
        let coded: usize = if digits.is_empty() {
            0
        } else {
            digits
                .parse()
                .map_err(|_| args.error_msg(format!("numpy dtype code `{code}` has a bad size")))?
        };
        let Some(state) = call.state() else {
            // No state: numpy's defaults (native order).
            let size = if kind == Kind::Str {
                coded.saturating_mul(4)
            } else {
                coded
            };
            return DType::new(kind, size, ByteOrder::NATIVE).map_err(|e| e.with_path(node.path()));
        };
        state.with(|st| read_state(st, kind, coded))
    }
}

fn read_state(st: Node<'_>, kind: Kind, coded: usize) -> Result<DType> {
    let items = st.items()?;
    // numpy since 1.7 writes version 3 (8 items) or 4 (9, with metadata).
    let [version, order, subarray, names, fields, elsize, alignment, flags, metadata @ ..] = items
    else {
        return Err(st.error_msg(format!(
            "expected a numpy dtype state of 8 or 9 items, found {}",
            items.len()
        )));
    };
    if metadata.len() > 1 {
        return Err(st.error_msg(format!(
            "expected a numpy dtype state of 8 or 9 items, found {}",
            items.len()
        )));
    }
    let version: i64 = st.field("version", version)?;
    if !(3..=4).contains(&version) {
        return Err(st.error_msg(format!(
            "unsupported numpy dtype state version {version} (expected 3 or 4)"
        )));
    }
    let order: String = st.field("byteorder", order)?;
    let order = match order.as_str() {
        "<" => ByteOrder::Little,
        ">" => ByteOrder::Big,
        "|" => ByteOrder::NotApplicable,
        "=" => ByteOrder::NATIVE,
        other => {
            return Err(st.error_msg(format!(
                "expected a byte order of `<`, `>`, `|` or `=`, found `{other}`"
            )))
        }
    };
    let subarray: Option<(DType, Vec<usize>)> = st.field("subarray", subarray)?;
    let names: Option<Vec<String>> = st.field("names", names)?;
    let elsize: i64 = st.field("elsize", elsize)?;
    let alignment: i64 = st.field("alignment", alignment)?;
    let flags: i64 = st.field("flags", flags)?;
    let size = if elsize >= 0 && (kind.flexible() || elsize > 0) {
        usize::try_from(elsize).map_err(|_| st.error_msg("the numpy dtype's size overflows"))?
    } else if kind == Kind::Str {
        coded.saturating_mul(4)
    } else {
        coded
    };
    let mut dtype = DType::new(kind, size, order).map_err(|e| e.with_path(st.path()))?;
    dtype.alignment = alignment;
    dtype.flags = flags;
    // Metadata as numpy 1 writes "none" for a datetime: `{}`.
    let given = |m: Value| match &m {
        Value::None => None,
        Value::Dict(d) if d.is_empty() => None,
        _ => Some(m),
    };
    if matches!(kind, Kind::DateTime | Kind::TimeDelta) {
        dtype.unit = Some(("generic".to_owned(), 1));
        if let Some(metadata) = metadata.first() {
            st.with_field("metadata", metadata, |m| {
                let parts = m.items()?;
                if let Some(dict) = parts.first() {
                    dtype.metadata = given(m.item(0, dict)?);
                }
                if let Some(unit) = parts.get(1) {
                    let (u, n, _, _): (Bytes, u32, Value, Value) = m.item(1, unit)?;
                    let u = String::from_utf8(u.0)
                        .map_err(|_| m.error_msg("the datetime unit is not ASCII"))?;
                    dtype.unit = Some((u, n));
                }
                Ok(())
            })?;
        }
    } else if let Some(m) = metadata.first() {
        let m: Value = st.field("metadata", m)?;
        // Version 4 without a unit: the dict itself, `{}` kept as given.
        dtype.metadata = match m {
            Value::None => None,
            m => Some(m),
        };
    }
    if let Some((base, shape)) = subarray {
        if shape.len() > MAX_DIMS {
            return Err(st.error_msg(format!(
                "a numpy subarray of {} dimensions (numpy allows {MAX_DIMS})",
                shape.len()
            )));
        }
        let whole = DType::subarray(base, shape).map_err(|e| e.with_path(st.path()))?;
        if whole.size != dtype.size {
            return Err(st.error_msg(format!(
                "the subarray dtype's items are {} bytes, but its size says {}",
                whole.size, dtype.size
            )));
        }
        dtype.subarray = whole.subarray;
    }
    if let Some(names) = names {
        let pairs = st.with_field("fields", fields, |f| f.pairs().map(<[_]>::to_vec))?;
        // By key, so that many fields cost linear time.
        let by_name: HashMap<&str, &Value> = pairs
            .iter()
            .filter_map(|(k, v)| st.graph().resolve(k).as_str().map(|k| (k, v)))
            .collect();
        let mut fields = Vec::with_capacity(names.len().min(pairs.len()));
        for name in names {
            let Some(&entry) = by_name.get(name.as_str()) else {
                return Err(st.error_msg(format!(
                    "the numpy dtype names field `{name}` but has no entry for it"
                )));
            };
            let FieldEntry(dtype, offset, title) =
                st.with_field(&name, entry, FieldEntry::construct)?;
            fields.push(Field {
                name,
                dtype,
                offset,
                title,
            });
        }
        let checked = DType::structured(fields, dtype.size).map_err(|e| e.with_path(st.path()))?;
        dtype.fields = checked.fields;
    }
    Ok(dtype)
}

/// `(dtype, offset)` or `(dtype, offset, title)`: one entry of a
/// structured dtype's `fields`.
struct FieldEntry(DType, usize, Option<String>);

impl Construct for FieldEntry {
    fn construct(node: Node<'_>) -> Result<Self> {
        let items = node.items()?;
        match items {
            [d, o] => Ok(FieldEntry(node.item(0, d)?, node.item(1, o)?, None)),
            [d, o, t] => Ok(FieldEntry(
                node.item(0, d)?,
                node.item(1, o)?,
                node.item(2, t)?,
            )),
            _ => Err(node.error_msg(format!(
                "expected a field entry (dtype, offset[, title]), found {} items",
                items.len()
            ))),
        }
    }
}

/// Reads `numpy.dtype(...)`, or a numpy scalar type named as a value
/// (`numpy.float64` reads as `<f8`).
impl Construct for DType {
    fn construct(node: Node<'_>) -> Result<Self> {
        if let Value::Global(g) = node.value() {
            if let Some(dtype) = super::scalar_type(&g.module, &g.name) {
                return dtype.map_err(|e| e.with_path(node.path()));
            }
        }
        DType::read(node)
    }
}

/// Written as numpy 1 and 2 both write it: `numpy.dtype(code, False,
/// True)` and the state tuple (version 4 with the unit for datetimes).
impl Reduce for DType {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let code = self.code();
        let order = self.order.char().to_string();
        let flexible = self.kind.flexible() || self.fields.is_some() || self.subarray.is_some();
        let (elsize, alignment) = if flexible {
            (self.size as i64, self.alignment)
        } else {
            (-1, -1)
        };
        let state = FnReduce(|s: &mut Saver<'_, '_>| {
            let v4 = self.unit.is_some() || self.metadata.is_some();
            s.tuple(if v4 { 9 } else { 8 }, |s| {
                s.i64(if v4 { 4 } else { 3 })?;
                // One-character strings are one object each in CPython, so
                // numpy's pickles refer back to the first `<` or `|`.
                s.str(&order)?;
                match self.subdtype() {
                    Some((base, shape)) => s.save(&(base, Shape(shape)))?,
                    None => s.none()?,
                }
                match self.fields() {
                    Some(fields) => {
                        s.save(&Names(fields))?;
                        s.save(&FieldsDict(fields))?;
                    }
                    None => {
                        s.none()?;
                        s.none()?;
                    }
                }
                s.i64(elsize)?;
                s.i64(alignment)?;
                s.i64(self.flags)?;
                if let Some((unit, count)) = &self.unit {
                    // numpy 1 writes `{}` for "no metadata", numpy 2 `None`;
                    // both read `{}`.
                    let empty: Vec<(Value, Value)> = Vec::new();
                    s.tuple(2, |s| {
                        match &self.metadata {
                            Some(m) => s.save(m)?,
                            None => s.dict(empty.iter().map(|(k, v)| (k, v)))?,
                        }
                        s.save(&(Bytes(unit.as_bytes().to_vec()), *count, 1u32, 1u32))
                    })?;
                } else if let Some(m) = &self.metadata {
                    s.save(m)?;
                }
                Ok(())
            })
        });
        s.reduction("numpy", "dtype")
            .args(&(code.as_str(), false, true))
            .state(&state)
            .save()
    }
}

/// A shape, written as a tuple of ints.
pub(crate) struct Shape<'a>(pub(crate) &'a [usize]);

impl Reduce for Shape<'_> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.tuple(self.0.len(), |s| {
            self.0.iter().try_for_each(|&d| s.i64(d as i64))
        })
    }
}

struct Names<'a>(&'a [Field]);

impl Reduce for Names<'_> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        // The names are the dict's keys too, one object each in CPython.
        s.tuple(self.0.len(), |s| {
            self.0.iter().try_for_each(|f| s.interned_str(&f.name))
        })
    }
}

struct FieldsDict<'a>(&'a [Field]);

struct FieldValue<'a>(&'a Field);

impl Reduce for FieldValue<'_> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let f = self.0;
        // A titled field is one tuple under both keys: written once, then
        // referred to.
        s.shared(f as *const Field as usize, |s| match &f.title {
            Some(t) => s.save(&(&f.dtype, f.offset as u64, Interned(t))),
            None => s.save(&(&f.dtype, f.offset as u64)),
        })
    }
}

impl Reduce for FieldsDict<'_> {
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        // numpy lists every field under its name, and again under its title.
        let mut entries: Vec<(Interned<'_>, FieldValue<'_>)> = Vec::new();
        for f in self.0 {
            entries.push((Interned(&f.name), FieldValue(f)));
            if let Some(t) = &f.title {
                entries.push((Interned(t), FieldValue(f)));
            }
        }
        s.dict(entries.iter().map(|(k, v)| (k, v)))
    }
}
