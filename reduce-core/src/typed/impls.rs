//! [`Reduce`] and [`Construct`] for the standard library's types: each
//! writes and reads as its natural Python twin.
//!
//! | Rust | Python |
//! |---|---|
//! | `bool` | `bool` |
//! | `i8` … `i128`, `u8` … `u128`, `isize`, `usize` | `int` |
//! | `f32`, `f64` | `float` (an `int` reads as a float too; a finite float beyond `f32::MAX` is an error for `f32`) |
//! | `char`, `String`, `&str`, `Box<str>`, `Cow<str>`, [`PyStr`] | `str` |
//! | `Vec<T>`, `VecDeque<T>`, `[T; N]`, `[T]` | `list` (reads from a tuple too) |
//! | `(A, B, …)` up to 12, `()` | `tuple` |
//! | `Option<T>` | `None` or the value |
//! | `HashMap`, `BTreeMap` | `dict` |
//! | `HashSet`, `BTreeSet` | `set` (reads from a frozenset or list too) |
//! | `indexmap::IndexMap`, `indexmap::IndexSet` (feature `indexmap`) | `dict` in insertion order (as Python keeps it), `set` in the set's order |
//! | `Box<T>`, `RefCell<T>` | as `T` |
//! | `Rc<T>`, `Arc<T>` | as `T`, with identity: clones are one object |
//! | [`Bytes`], [`ByteArray`] | `bytes`, `bytearray` |
//! | [`Value`], [`Graph`] | any object |
//!
//! Hash maps and sets are written in a fixed order (their keys sorted by
//! their pickled bytes), so the same value always gives the same bytes.
//! A byte buffer (`Vec<u8>`) is a `list` of ints like any `Vec`; wrap it in
//! [`Bytes`] to write Python `bytes`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::rc::Rc;
use std::sync::Arc;

use num_bigint::BigInt;

use crate::base::error::{ErrorKind, Result};
use crate::base::limits::Limits;
use crate::read::stream::{Miss, Pulled, Stream};
use crate::text::PyStr;
use crate::typed::construct::{Construct, Node};
use crate::typed::private::read_item;
use crate::typed::registry::Lookup;
use crate::typed::save::{Reduce, Saver};
use crate::value::graph::{subgraph, tree};
use crate::value::{Graph, Value};

// ---- integers ---------------------------------------------------------------

macro_rules! small_ints {
    ($($t:ty)*) => {$(
        impl Reduce for $t {
            #[inline]
            fn __leaf(&self) -> bool {
                true
            }
            // Always: a call per int in a list or dict cost about as much
            // as writing the int.
            #[inline(always)]
            fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
                s.i64(*self as i64)
            }
        }
    )*};
}
small_ints!(i8 i16 i32 i64 isize u8 u16 u32);

/// Every integer type reads the same way: an int that fits, else an error
/// naming the range.
macro_rules! int_construct {
    ($($t:ty)*) => {$(
        impl Construct for $t {
            fn construct(node: Node<'_>) -> Result<Self> {
                // The common case, without a bignum.
                if let Some(v) = small_int::<$t>(&node) {
                    return Ok(v);
                }
                let big = int_of(&node)?;
                <$t>::try_from(&big).map_err(|_| {
                    node.error_msg(format!("int {big} is out of range for {}", stringify!($t)))
                })
            }
            const __LEAF: bool = true;
            fn construct_stream(s: &mut Stream<'_>) -> Pulled<Self> {
                <$t>::try_from(s.int()?).map_err(|_| Miss)
            }
        }
    )*};
}
int_construct!(i8 i16 i32 i64 isize u8 u16 u32 u64 usize i128 u128);

macro_rules! big_ints {
    ($($t:ty)*) => {$(
        impl Reduce for $t {
            #[inline]
            fn __leaf(&self) -> bool {
                true
            }
            #[inline]
            fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
                // The common case first: an int that fits an i64.
                if let Ok(i) = i64::try_from(*self) {
                    return s.i64(i);
                }
                match i128::try_from(*self) {
                    Ok(i) => s.i128(i),
                    Err(_) => s.bigint(&BigInt::from(*self)),
                }
            }
        }
    )*};
}
big_ints!(u64 usize i128 u128);

/// The int here as a `T`, when it is an `i64` that fits.
fn small_int<T: TryFrom<i64>>(node: &Node<'_>) -> Option<T> {
    match node.value() {
        Value::Int(i) => T::try_from(*i).ok(),
        _ => None,
    }
}

fn int_of(node: &Node<'_>) -> Result<BigInt> {
    match node.value() {
        Value::Int(i) => Ok(BigInt::from(*i)),
        Value::BigInt(b) => Ok((**b).clone()),
        _ => Err(node.expected("int")),
    }
}

impl Reduce for BigInt {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.bigint(self)
    }
}

impl Construct for BigInt {
    fn construct(node: Node<'_>) -> Result<Self> {
        int_of(&node)
    }
}

impl Reduce for bool {
    #[inline]
    fn __leaf(&self) -> bool {
        true
    }
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.bool(*self)
    }
}

impl Construct for bool {
    fn construct(node: Node<'_>) -> Result<Self> {
        match node.value() {
            Value::Bool(b) => Ok(*b),
            _ => Err(node.expected("bool")),
        }
    }
    const __LEAF: bool = true;
    fn construct_stream(s: &mut Stream<'_>) -> Pulled<Self> {
        s.bool()
    }
}

// ---- floats -----------------------------------------------------------------

impl Reduce for f64 {
    #[inline]
    fn __leaf(&self) -> bool {
        true
    }
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.f64(*self)
    }
}

impl Reduce for f32 {
    #[inline]
    fn __leaf(&self) -> bool {
        true
    }
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.f64(*self as f64)
    }
}

/// `float(i)` for an int beyond `i64`: the nearest float, halfway cases to
/// even, as CPython rounds; `None` beyond `f64::MAX`, where CPython raises
/// `OverflowError`.
pub(crate) fn big_to_f64(i: &num_bigint::BigInt) -> Option<f64> {
    let magnitude = i.magnitude();
    let bits = magnitude.bits();
    let x = if bits <= 64 {
        magnitude.iter_u64_digits().next().unwrap_or(0) as f64
    } else {
        // The top 64 bits, with the lowest one set if any bit below them
        // is (a sticky bit): `u64 as f64` then rounds as the whole would.
        let shift = bits - 64;
        let top = (magnitude >> shift).iter_u64_digits().next().unwrap_or(0);
        let sticky = magnitude.trailing_zeros().is_some_and(|z| z < shift);
        let top = top | u64::from(sticky);
        (top as f64) * 2f64.powi(i32::try_from(shift).ok()?)
    };
    if x.is_infinite() {
        return None;
    }
    Some(if i.sign() == num_bigint::Sign::Minus {
        -x
    } else {
        x
    })
}

impl Construct for f64 {
    fn construct(node: Node<'_>) -> Result<Self> {
        match node.value() {
            Value::Float(x) => Ok(*x),
            // Python code often stores 1 where it means 1.0.
            Value::Int(i) => Ok(*i as f64),
            Value::BigInt(i) => big_to_f64(i).ok_or_else(|| {
                node.error_msg("int too large to convert to float (as Python's float() says)")
            }),
            _ => Err(node.expected("float")),
        }
    }
    const __LEAF: bool = true;
    fn construct_stream(s: &mut Stream<'_>) -> Pulled<Self> {
        s.float()
    }
}

impl Construct for f32 {
    fn construct(node: Node<'_>) -> Result<Self> {
        let x = f64::construct(node)?;
        // `as` rounds to the nearest f32 (a tiny value to zero), but turns
        // a finite value beyond f32::MAX into an infinity: that is an error,
        // while inf and nan stay what they are.
        let y = x as f32;
        if y.is_infinite() && x.is_finite() {
            return Err(node.error_msg(format!(
                "float {x:e} is out of range for f32 (expected a magnitude up to {:e})",
                f32::MAX
            )));
        }
        Ok(y)
    }
    const __LEAF: bool = true;
    fn construct_stream(s: &mut Stream<'_>) -> Pulled<Self> {
        let x = s.float()?;
        let y = x as f32;
        if y.is_infinite() && x.is_finite() {
            return Err(Miss);
        }
        Ok(y)
    }
}

// ---- strings ----------------------------------------------------------------

impl Reduce for str {
    #[inline]
    fn __leaf(&self) -> bool {
        true
    }
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.str(self)
    }
}

impl Reduce for String {
    #[inline]
    fn __leaf(&self) -> bool {
        true
    }
    #[inline(always)]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.str(self)
    }
}

impl Reduce for Cow<'_, str> {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.str(self)
    }
}

impl Reduce for char {
    #[inline]
    fn __leaf(&self) -> bool {
        true
    }
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.str(self.encode_utf8(&mut [0; 4]))
    }
}

/// A `str` that CPython would hold interned (`sys.intern`): attribute
/// names, the keys of an instance `__dict__`, module names. CPython writes
/// one interned string once and then as a memo reference, so the state of
/// many instances repeats its keys as references; `Interned` does the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Interned<'a>(pub &'a str);

impl Reduce for Interned<'_> {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.interned_str(self.0)
    }
}

impl Reduce for PyStr {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.py_str(self)
    }
}

fn str_of<'a>(node: &Node<'a>) -> Result<&'a str> {
    match node.value() {
        Value::Str(s) => s.as_str().ok_or_else(|| {
            node.error_msg(
                "str holds a lone surrogate, which Rust strings cannot; read it as a PyStr",
            )
        }),
        _ => Err(node.expected("str")),
    }
}

impl Construct for String {
    fn construct(node: Node<'_>) -> Result<Self> {
        str_of(&node).map(str::to_owned)
    }
    const __LEAF: bool = true;
    fn construct_stream(s: &mut Stream<'_>) -> Pulled<Self> {
        s.str().map(|s| s.into_owned())
    }
}

impl Construct for Box<str> {
    fn construct(node: Node<'_>) -> Result<Self> {
        str_of(&node).map(Box::from)
    }
    fn construct_stream(s: &mut Stream<'_>) -> Pulled<Self> {
        s.str().map(|s| Box::from(&*s))
    }
}

impl Construct for Cow<'static, str> {
    fn construct(node: Node<'_>) -> Result<Self> {
        str_of(&node).map(|s| Cow::Owned(s.to_owned()))
    }
}

impl Construct for char {
    fn construct(node: Node<'_>) -> Result<Self> {
        let s = str_of(&node)?;
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(node.error_msg(format!(
                "expected a str of one character, found {} characters",
                s.chars().count()
            ))),
        }
    }
}

impl Construct for PyStr {
    fn construct(node: Node<'_>) -> Result<Self> {
        match node.value() {
            Value::Str(s) => Ok(s.clone()),
            _ => Err(node.expected("str")),
        }
    }
}

// ---- bytes ------------------------------------------------------------------

/// A byte buffer written as Python `bytes` (a plain `Vec<u8>` is a `list` of
/// ints). Reads from `bytes`, `bytearray` or a protocol 5 buffer.
///
/// ```
/// use reduce::Bytes;
///
/// let pickle = reduce::to_vec_with_protocol(&Bytes(b"\x00\xff".to_vec()), 3)?;
/// assert_eq!(pickle, b"\x80\x03C\x02\x00\xffq\x00.");
/// let back: Bytes = reduce::from_slice(&pickle)?;
/// assert_eq!(back.0, b"\x00\xff");
/// # Ok::<(), reduce::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes(pub Vec<u8>);

/// A byte buffer written as Python `bytearray`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteArray(pub Vec<u8>);

impl Reduce for Bytes {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.bytes(&self.0)
    }
}

impl Reduce for ByteArray {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.bytearray(&self.0)
    }
}

fn bytes_of(node: &Node<'_>) -> Result<Vec<u8>> {
    match node.value() {
        Value::Bytes(b) | Value::ByteArray(b) => Ok(b.clone()),
        Value::Buffer(b) => Ok(b.data.clone()),
        _ => Err(node.expected("bytes")),
    }
}

impl Construct for Bytes {
    fn construct(node: Node<'_>) -> Result<Self> {
        bytes_of(&node).map(Bytes)
    }
    fn construct_stream(s: &mut Stream<'_>) -> Pulled<Self> {
        s.bytes().map(|b| Bytes(b.to_vec()))
    }
}

impl Construct for ByteArray {
    fn construct(node: Node<'_>) -> Result<Self> {
        bytes_of(&node).map(ByteArray)
    }
}

/// `#[reduce(with = "reduce::bytes")]`: a `Vec<u8>` field written as
/// Python `bytes`.
pub mod bytes {
    use super::*;

    /// Writes the buffer as `bytes`.
    pub fn reduce(v: &[u8], s: &mut Saver<'_, '_>) -> Result<()> {
        s.bytes(v)
    }

    /// Reads `bytes`, `bytearray` or a buffer.
    pub fn construct(node: Node<'_>) -> Result<Vec<u8>> {
        bytes_of(&node)
    }
}

/// `#[reduce(with = "reduce::tuple")]`: a `Vec<T>` field written as a Python
/// `tuple` (a plain `Vec` is a `list`), for constructors that insist on
/// tuples, such as `types.CodeType`.
pub mod tuple {
    use super::*;

    /// Writes the items as a `tuple`.
    pub fn reduce<T: Reduce>(items: &[T], s: &mut Saver<'_, '_>) -> Result<()> {
        s.tuple(items.len(), |s| items.iter().try_for_each(|i| s.save(i)))
    }

    /// Reads a `tuple` (or a `list`) of items.
    pub fn construct<T: Construct>(node: Node<'_>) -> Result<Vec<T>> {
        collect(&node)
    }
}

// ---- sequences --------------------------------------------------------------

impl<T: Reduce> Reduce for [T] {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.list(self.iter())
    }
}

impl<T: Reduce> Reduce for Vec<T> {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.list(self.iter())
    }
}

impl<T: Reduce> Reduce for VecDeque<T> {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.list(self.iter())
    }
}

impl<T: Reduce, const N: usize> Reduce for [T; N] {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.list(self.iter())
    }
}

fn collect<T: Construct, C: FromIterator<T>>(node: &Node<'_>) -> Result<C> {
    node.items()?
        .iter()
        .enumerate()
        .map(|(i, v)| node.item(i, v))
        .collect()
}

impl<T: Construct> Construct for Vec<T> {
    fn construct(node: Node<'_>) -> Result<Self> {
        collect(&node)
    }
    fn construct_stream(s: &mut Stream<'_>) -> Pulled<Self> {
        let mut items = Vec::new();
        s.list_vec(T::construct_stream, &mut items)?;
        Ok(items)
    }
}

impl<T: Construct> Construct for VecDeque<T> {
    fn construct(node: Node<'_>) -> Result<Self> {
        collect(&node)
    }
    fn construct_stream(s: &mut Stream<'_>) -> Pulled<Self> {
        Vec::<T>::construct_stream(s).map(VecDeque::from)
    }
}

impl<T: Construct, const N: usize> Construct for [T; N] {
    fn construct(node: Node<'_>) -> Result<Self> {
        let items: Vec<T> = collect(&node)?;
        let n = items.len();
        items
            .try_into()
            .map_err(|_| node.error_msg(format!("expected {N} items, found {n}")))
    }
}

// ---- tuples -----------------------------------------------------------------

impl Reduce for () {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.tuple(0, |_| Ok(()))
    }
}

impl Construct for () {
    fn construct(node: Node<'_>) -> Result<Self> {
        match node.value() {
            Value::None => Ok(()),
            Value::Tuple(_) if node.items()?.is_empty() => Ok(()),
            _ => Err(node.expected("an empty tuple")),
        }
    }
}

macro_rules! tuples {
    ($($n:literal => ($($t:ident $i:tt),+);)*) => {$(
        impl<$($t: Reduce),+> Reduce for ($($t,)+) {
            #[inline]
            fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
                s.tuple($n, |s| {
                    $(s.save(&self.$i)?;)+
                    Ok(())
                })
            }
        }
        impl<$($t: Construct),+> Construct for ($($t,)+) {
            fn construct(node: Node<'_>) -> Result<Self> {
                let items = node.items()?;
                if items.len() != $n {
                    return Err(node.error_msg(format!(
                        "expected a tuple of {} items, found {}", $n, items.len()
                    )));
                }
                Ok(($(node.item::<$t>($i, &items[$i])?,)+))
            }
            fn construct_stream(s: &mut Stream<'_>) -> Pulled<Self> {
                s.tuple($n, |s| Ok(($(read_item::<$t>(s)?,)+)))
            }
        }
    )*};
}
tuples! {
    1 => (A 0);
    2 => (A 0, B 1);
    3 => (A 0, B 1, C 2);
    4 => (A 0, B 1, C 2, D 3);
    5 => (A 0, B 1, C 2, D 3, E 4);
    6 => (A 0, B 1, C 2, D 3, E 4, F 5);
    7 => (A 0, B 1, C 2, D 3, E 4, F 5, G 6);
    8 => (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
    9 => (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
    10 => (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
    11 => (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);
    12 => (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10, L 11);
}

// ---- option, boxes, shared pointers -----------------------------------------

impl<T: Reduce> Reduce for Option<T> {
    #[inline(always)]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        match self {
            None => s.none(),
            Some(v) => v.reduce(s),
        }
    }

    #[inline]
    fn __leaf(&self) -> bool {
        match self {
            None => true,
            Some(v) => v.__leaf(),
        }
    }
}

impl<T: Construct> Construct for Option<T> {
    fn construct(node: Node<'_>) -> Result<Self> {
        match node.value() {
            Value::None => Ok(None),
            _ => T::construct(node).map(Some),
        }
    }
    // No level of its own: a leaf if what it holds is.
    const __LEAF: bool = T::__LEAF;
    fn construct_stream(s: &mut Stream<'_>) -> Pulled<Self> {
        if s.none()? {
            return Ok(None);
        }
        T::construct_stream(s).map(Some)
    }
}

impl<T: Reduce + ?Sized> Reduce for &T {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        (**self).reduce(s)
    }

    #[inline]
    fn __leaf(&self) -> bool {
        (**self).__leaf()
    }
}

impl<T: Reduce + ?Sized> Reduce for Box<T> {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        (**self).reduce(s)
    }

    #[inline]
    fn __leaf(&self) -> bool {
        (**self).__leaf()
    }
}

impl<T: Construct> Construct for Box<T> {
    fn construct(node: Node<'_>) -> Result<Self> {
        T::construct(node).map(Box::new)
    }
    fn construct_stream(s: &mut Stream<'_>) -> Pulled<Self> {
        T::construct_stream(s).map(Box::new)
    }
}

impl<T: Reduce + ?Sized> Reduce for RefCell<T> {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let inner = self.try_borrow().map_err(|_| {
            crate::base::error::Error::new(ErrorKind::Unpicklable(
                "a RefCell is mutably borrowed".into(),
            ))
        })?;
        inner.reduce(s)
    }
}

impl<T: Construct> Construct for RefCell<T> {
    fn construct(node: Node<'_>) -> Result<Self> {
        T::construct(node).map(RefCell::new)
    }

    fn construct_shell(node: Node<'_>) -> Option<Result<Self>> {
        T::construct_shell(node).map(|r| r.map(RefCell::new))
    }

    fn fill_shell(&mut self, node: Node<'_>) -> Result<()> {
        self.get_mut().fill_shell(node)
    }

    fn fill_shared(&self, node: Node<'_>) -> Result<()> {
        self.borrow_mut().fill_shell(node)
    }
}

/// Two clones of one `Rc` are one object in the pickle: written once, then
/// as a memo reference.
impl<T: Reduce + ?Sized> Reduce for Rc<T> {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.shared(Rc::as_ptr(self) as *const () as usize, |s| {
            (**self).reduce(s)
        })
    }
}

/// One object referred to twice in the pickle is one `Rc` again; with
/// `T = RefCell<U>` where `U` has state, it may also refer to itself.
impl<T: Construct + 'static> Construct for Rc<T> {
    fn construct(node: Node<'_>) -> Result<Self> {
        if let Some(rc) = node.built::<Rc<T>>() {
            return Ok(rc);
        }
        if node.shared_id().is_some() {
            if let Some(shell) = T::construct_shell(node) {
                let rc = Rc::new(shell?);
                node.remember(&rc);
                T::fill_shared(&rc, node)?;
                return Ok(rc);
            }
        }
        let rc = Rc::new(node.guard_cycle(|| T::construct(node))?);
        node.remember(&rc);
        Ok(rc)
    }
}

/// As for `Rc`: clones are one object.
impl<T: Reduce + ?Sized> Reduce for Arc<T> {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.shared(Arc::as_ptr(self) as *const () as usize, |s| {
            (**self).reduce(s)
        })
    }
}

impl<T: Construct + 'static> Construct for Arc<T> {
    fn construct(node: Node<'_>) -> Result<Self> {
        if let Some(arc) = node.built::<Arc<T>>() {
            return Ok(arc);
        }
        let arc = Arc::new(node.guard_cycle(|| T::construct(node))?);
        node.remember(&arc);
        Ok(arc)
    }
}

// ---- maps and sets ----------------------------------------------------------

impl<K: Reduce + Eq + Hash, V: Reduce, S: BuildHasher> Reduce for HashMap<K, V, S> {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let mut entries = self
            .iter()
            .map(|(k, v)| Ok((s.sort_key(k)?, (k, v))))
            .collect::<Result<Vec<_>>>()?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        s.dict(entries.iter().map(|(_, (k, v))| (*k, *v)))
    }
}

impl<K: Reduce, V: Reduce> Reduce for BTreeMap<K, V> {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.dict(self.iter())
    }
}

fn pairs_into<K: Construct, V: Construct, C: FromIterator<(K, V)>>(node: &Node<'_>) -> Result<C> {
    node.pairs()?
        .iter()
        .map(|(k, v)| Ok((node.sibling::<K>(k)?, node.entry::<V>(k, v)?)))
        .collect()
}

impl<K: Construct + Eq + Hash, V: Construct, S: BuildHasher + Default> Construct
    for HashMap<K, V, S>
{
    fn construct(node: Node<'_>) -> Result<Self> {
        pairs_into(&node)
    }
    fn construct_stream(s: &mut Stream<'_>) -> Pulled<Self> {
        let mut map = HashMap::default();
        s.dict(
            |s| Ok((read_item::<K>(s)?, read_item::<V>(s)?)),
            |(k, v)| drop(map.insert(k, v)),
        )?;
        Ok(map)
    }
}

impl<K: Construct + Ord, V: Construct> Construct for BTreeMap<K, V> {
    fn construct(node: Node<'_>) -> Result<Self> {
        pairs_into(&node)
    }
    fn construct_stream(s: &mut Stream<'_>) -> Pulled<Self> {
        // Collected, then built at once (sorted, as a pickled BTreeMap
        // is, it takes no search per key), as the Graph path builds it: a
        // key written twice keeps its last entry either way.
        let mut pairs = Vec::new();
        s.dict_vec(
            |s| Ok((K::construct_stream(s)?, V::construct_stream(s)?)),
            &mut pairs,
        )?;
        Ok(pairs.into_iter().collect())
    }
}

// A Python dict keeps insertion order; so does an IndexMap, which writes
// and reads its entries in that order (no sorting needed for determinism).
#[cfg(feature = "indexmap")]
impl<K: Reduce, V: Reduce, S> Reduce for indexmap::IndexMap<K, V, S> {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.dict(self.iter())
    }
}

#[cfg(feature = "indexmap")]
impl<K: Construct + Eq + Hash, V: Construct, S: BuildHasher + Default> Construct
    for indexmap::IndexMap<K, V, S>
{
    fn construct(node: Node<'_>) -> Result<Self> {
        pairs_into(&node)
    }
}

#[cfg(feature = "indexmap")]
impl<T: Reduce, S> Reduce for indexmap::IndexSet<T, S> {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.set(self.iter())
    }
}

#[cfg(feature = "indexmap")]
impl<T: Construct + Eq + Hash, S: BuildHasher + Default> Construct for indexmap::IndexSet<T, S> {
    fn construct(node: Node<'_>) -> Result<Self> {
        collect(&node)
    }
}

impl<T: Reduce + Eq + Hash, S: BuildHasher> Reduce for HashSet<T, S> {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        let mut items = self
            .iter()
            .map(|v| Ok((s.sort_key(v)?, v)))
            .collect::<Result<Vec<_>>>()?;
        items.sort_by(|a, b| a.0.cmp(&b.0));
        s.set(items.iter().map(|(_, v)| *v))
    }
}

impl<T: Reduce> Reduce for BTreeSet<T> {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.set(self.iter())
    }
}

impl<T: Construct + Eq + Hash, S: BuildHasher + Default> Construct for HashSet<T, S> {
    fn construct(node: Node<'_>) -> Result<Self> {
        collect(&node)
    }
}

impl<T: Construct + Ord> Construct for BTreeSet<T> {
    fn construct(node: Node<'_>) -> Result<Self> {
        collect(&node)
    }
}

// ---- the dynamic model ------------------------------------------------------

impl Reduce for Value {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.value(self)
    }
}

impl Reduce for Graph {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> Result<()> {
        s.graph(self)
    }
}

/// A plain tree: shared objects are copied into each place that refers to
/// them (within [`Limits::max_tree_nodes`]); a cycle is an error, so read
/// such pickles as a [`Graph`].
impl Construct for Value {
    fn construct(node: Node<'_>) -> Result<Self> {
        tree(
            node.value().clone(),
            node.graph().objects(),
            Limits::default().max_tree_nodes,
        )
        .map_err(|e| e.with_path(node.path()))
    }

    fn from_graph(graph: Graph, _lookup: &Lookup, limits: &Limits) -> Result<Self> {
        graph.into_tree(limits.max_tree_nodes)
    }

    fn construct_stream(s: &mut Stream<'_>) -> Pulled<Self> {
        s.value()
    }

    fn stream_at_root() -> bool {
        false
    }

    fn stream_after_sharing() -> bool {
        true
    }

    fn python_data() -> bool {
        true
    }
}

/// The whole loaded pickle, sharing and cycles kept.
impl Construct for Graph {
    fn construct(node: Node<'_>) -> Result<Self> {
        subgraph(node.value(), node.graph().objects())
    }

    fn from_graph(graph: Graph, _lookup: &Lookup, _limits: &Limits) -> Result<Self> {
        Ok(graph)
    }

    /// The whole pickle, when nothing in it is fetched from the memo (so
    /// nothing is shared).
    fn construct_stream(s: &mut Stream<'_>) -> Pulled<Self> {
        s.graph()
    }

    fn stream_at_root() -> bool {
        false
    }

    fn python_data() -> bool {
        true
    }
}
