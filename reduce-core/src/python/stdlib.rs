//! Python's standard-library data as Rust types, both ways.
//!
//! Each type here, and each foreign type behind a Cargo feature, writes
//! what CPython 3.11 writes for its Python twin (protocols 0 to 5) and
//! reads what CPython writes, including the protocol 0 to 2 forms
//! (`datetime`'s packed bytes as a latin-1 `str` through `_codecs.encode`,
//! `__builtin__.xrange` for `range`, ...). Reading them needs their globals
//! allowed: install [`preset::STDLIB`](crate::preset::STDLIB).
//!
//! ```
//! use reduce::stdlib::Decimal;
//!
//! reduce::registry().add_preset(&reduce::preset::STDLIB)?;
//! let d: Decimal = "-sNaN12".parse()?;
//! let bytes = reduce::to_vec_with_protocol(&d, 4)?;
//! // pickle.dumps(decimal.Decimal("-sNaN12"), protocol=4), byte for byte
//! assert_eq!(bytes, b"\x80\x04\x95%\x00\x00\x00\x00\x00\x00\x00\x8c\x07decimal\x94\x8c\x07Decimal\x94\x93\x94\x8c\x07-sNaN12\x94\x85\x94R\x94.");
//! assert_eq!(reduce::from_slice::<Decimal>(&bytes)?, d);
//! # Ok::<(), reduce::Error>(())
//! ```
//!
//! The table of every Python type and its Rust twin is in the crate docs
//! (["Python's data"](crate#pythons-data-the-standard-library-numpy-pytorch)).
//!
//! Namedtuples and subclasses of builtins need no type from here: derive or
//! register your class, and [`Call`] presents protocols 0 and
//! 1's `copyreg._reconstructor(cls, base, state)` as protocol 2 does (a
//! namedtuple's fields as its arguments, a `list` subclass's items as list
//! items, ...), with the base in [`Call::base`](crate::Call::base).

mod collections;
#[cfg(feature = "chrono")]
mod datetime;
mod net;
mod numbers;

pub use self::collections::{Counter, DefaultDict, Deque, OrderedDict, Range, Slice};
#[cfg(feature = "chrono")]
pub use self::datetime::{PyDateTime, PyTime, TzInfo};
pub use self::net::{IpInterface, IpNetwork};
pub use self::numbers::Decimal;

use crate::base::error::Result;
use crate::typed::construct::{Call, Node};
use crate::typed::registry::Registry;
use crate::value::Value;

/// Registers the constructors of [`preset::STDLIB`](crate::preset::STDLIB):
/// each global builds its Rust twin (for [`Dynamic`](crate::Dynamic)).
pub(crate) fn install(r: &mut Registry) -> Result<()> {
    #[cfg(feature = "chrono")]
    datetime::install(r)?;
    numbers::install(r)?;
    net::install(r)?;
    collections::install(r)?;
    Ok(())
}

/// The reduced object at `node`, built by one of `globals`.
fn call_of<'a>(node: &Node<'a>, globals: &[(&str, &str)]) -> Result<Call<'a>> {
    let call = node.any_reduction()?;
    let g = call.global();
    if globals.iter().any(|&(m, n)| g.module == m && g.name == n) {
        return Ok(call);
    }
    let names: Vec<String> = globals.iter().map(|(m, n)| format!("{m}.{n}")).collect();
    Err(node
        .error(crate::base::error::ErrorKind::Type {
            expected: format!("an object built by {}", names.join(" or ")),
            found: "another object",
        })
        .with_detail(format!("it is built by {g}")))
}

/// The arguments of `call`, which must number `min` to `max`.
fn args_of<'a>(call: &Call<'a>, min: usize, max: usize) -> Result<(Node<'a>, &'a [Value])> {
    let args = call.args();
    let items = args.items()?;
    if items.len() < min || items.len() > max {
        let want = if min == max {
            min.to_string()
        } else {
            format!("{min} to {max}")
        };
        return Err(args.error_msg(format!(
            "{} takes {want} arguments, found {}",
            call.global(),
            items.len()
        )));
    }
    Ok((args, items))
}

/// That `call` carries no state or items this type would drop.
fn no_extras(call: &Call<'_>) -> Result<()> {
    let state = call
        .state()
        .map(|s| s.with(|n| !matches!(n.value(), Value::None)))
        .unwrap_or(false);
    if state || !call.list_items().is_empty() || !call.dict_items().is_empty() {
        return Err(call.node().error_msg(format!(
            "this {} has instance attributes or items that the Rust type cannot hold; read it as a Value",
            call.global()
        )));
    }
    Ok(())
}
