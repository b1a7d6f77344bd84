//! Presets: named allow-lists you opt into.
//!
//! Strict loading refuses every global that nothing registered, which is
//! what makes it safe, and also what stops a real file at its first
//! `datetime.datetime`. A [`Preset`] is a list of globals that are safe to
//! allow (they build data, they run nothing a pickle can steer) together
//! with the constructors that read them as Rust values. Installing one
//! allows exactly its list, and nothing else:
//!
//! ```
//! use reduce::{preset, Registry, Value};
//!
//! // pickle.dumps(datetime.timedelta(days=-1, seconds=5), protocol=2)
//! let bytes = b"\x80\x02cdatetime\ntimedelta\nq\x00J\xff\xff\xff\xffK\x05K\x00\x87q\x01Rq\x02.";
//! let err = reduce::from_slice::<Value>(bytes).unwrap_err();
//! assert!(err.to_string().contains("it is in the `stdlib` preset"), "{err}");
//!
//! let mut registry = Registry::new();
//! registry.add_preset(&preset::STDLIB)?;
//! let value: Value = reduce::Unpickler::from_slice(bytes).registry(registry).load()?;
//! assert_eq!(format!("{value:?}"), "<reduce datetime.timedelta, (-1, 5, 0)>");
//! # Ok::<(), reduce::Error>(())
//! ```
//!
//! Install a preset in the process-wide registry with
//! `reduce::registry().add_preset(&preset::STDLIB)`, or in an owned
//! [`Registry`](crate::Registry) for one unpickler as above. [`by_name`] and [`all`] find
//! presets by name (a command line's `--allow stdlib`). Adding a preset
//! twice does nothing; a constructor you registered first for one of its
//! globals is kept (see [`Registry::add_preset`](crate::Registry::add_preset)).
//!
//! With a preset installed, every read path allows its globals: a
//! [`Value`](crate::Value) or [`Graph`](crate::Graph) keeps them as reduced
//! objects (written back unchanged), [`Dynamic`](crate::Dynamic) builds
//! them with the preset's constructors, and the typed impls (a
//! `chrono::NaiveDate` field, say) read them directly.
//!
//! # The presets
//!
//! | preset | contents |
//! |---|---|
//! | [`STDLIB`] | Python's standard-library data: `datetime`, `decimal`, `fractions`, `complex`, `uuid`, `ipaddress`, `pathlib`, `collections`, `range`, `slice`, and the builtin bases of subclasses |
//! | [`NUMPY`] (`"numpy"`) | numpy arrays, scalars and dtypes, numpy 1.x and 2.x spellings (listed on the [`numpy`](crate::numpy) page) |
//! | [`TORCH_WEIGHTS_ONLY`] (`"torch"`) | exactly the globals `torch.load(weights_only=True)` allows (listed on the [`torch`](crate::torch) page) |
//!
//! Each preset's page lists its globals and what each reads as; that
//! table is generated from the preset's own list, so they cannot drift.

use crate::typed::registry::KnownPreset;
pub use crate::typed::registry::Preset;

/// Defines a preset's const from one table: the globals, and the doc rows
/// that list them, so the documentation is the list itself.
macro_rules! preset {
    (
        $(#[$doc:meta])*
        $name:ident = $str:literal, $install:path,
        [$(($m:literal, $n:literal, $what:literal)),* $(,)?]
    ) => {
        $(#[$doc])*
        ///
        /// | global | reads as |
        /// |---|---|
        $(#[doc = concat!("| `", $m, ".", $n, "` | ", $what, " |")])*
        pub const $name: Preset = Preset::new($str, &[$(($m, $n)),*], $install);
    };
}

preset! {
    /// Python's standard-library data: dates and times, exact numbers,
    /// addresses, paths, the `collections` types, `range` and `slice`, and
    /// the builtin types that subclasses name as their base (protocols 0
    /// and 1 write a `list` subclass as
    /// `copyreg._reconstructor(cls, builtins.list, [...])`, and a
    /// `defaultdict` names its factory).
    ///
    /// None of these runs code a pickle can steer: each builds a value from
    /// plain arguments. The Rust types are in [`crate::stdlib`]; those from
    /// other crates need the Cargo feature named. Without the feature the
    /// global is still allowed and loads as a reduced object in a
    /// [`Value`](crate::Value).
    STDLIB = "stdlib", crate::python::stdlib::install,
    [
        ("datetime", "date", "`chrono::NaiveDate` (feature `chrono`)"),
        ("datetime", "time", "`stdlib::PyTime`, `chrono::NaiveTime` (feature `chrono`)"),
        ("datetime", "datetime", "`stdlib::PyDateTime`, `chrono::NaiveDateTime`, `DateTime<FixedOffset>`, `DateTime<Utc>` (feature `chrono`)"),
        ("datetime", "timedelta", "`chrono::TimeDelta` (feature `chrono`)"),
        ("datetime", "timezone", "`stdlib::TzInfo::Fixed`, `chrono::FixedOffset` (feature `chrono`)"),
        ("zoneinfo", "ZoneInfo._unpickle", "`stdlib::TzInfo::Zone`, by key (feature `chrono`)"),
        ("decimal", "Decimal", "[`Decimal`](crate::python::stdlib::Decimal)"),
        ("fractions", "Fraction", "`num_rational::BigRational` (feature `num-rational`)"),
        ("builtins", "complex", "`num_complex::Complex<f64>` (feature `num-complex`)"),
        ("uuid", "UUID", "`uuid::Uuid` (feature `uuid`)"),
        ("ipaddress", "IPv4Address", "`std::net::Ipv4Addr`"),
        ("ipaddress", "IPv6Address", "`std::net::Ipv6Addr`"),
        ("ipaddress", "IPv4Network", "[`IpNetwork`](crate::python::stdlib::IpNetwork)"),
        ("ipaddress", "IPv6Network", "[`IpNetwork`](crate::python::stdlib::IpNetwork)"),
        ("ipaddress", "IPv4Interface", "[`IpInterface`](crate::python::stdlib::IpInterface)"),
        ("ipaddress", "IPv6Interface", "[`IpInterface`](crate::python::stdlib::IpInterface)"),
        ("pathlib", "PurePosixPath", "`std::path::PathBuf`"),
        ("pathlib", "PosixPath", "`std::path::PathBuf`"),
        ("collections", "OrderedDict", "[`OrderedDict`](crate::python::stdlib::OrderedDict)"),
        ("collections", "defaultdict", "[`DefaultDict`](crate::python::stdlib::DefaultDict)"),
        ("collections", "Counter", "[`Counter`](crate::python::stdlib::Counter)"),
        ("collections", "deque", "[`Deque`](crate::python::stdlib::Deque)"),
        ("builtins", "range", "[`Range`](crate::python::stdlib::Range)"),
        ("builtins", "slice", "[`Slice`](crate::python::stdlib::Slice)"),
        ("builtins", "object", "allowed as data: the base of an ordinary class"),
        ("builtins", "tuple", "allowed as data: a base (namedtuples) or a `defaultdict` factory"),
        ("builtins", "list", "allowed as data: a base or a factory"),
        ("builtins", "dict", "allowed as data: a base or a factory"),
        ("builtins", "set", "allowed as data: a factory"),
        ("builtins", "frozenset", "allowed as data: a factory"),
        ("builtins", "str", "allowed as data: a base or a factory"),
        ("builtins", "bytes", "allowed as data: a base or a factory"),
        ("builtins", "int", "allowed as data: a base or a factory"),
        ("builtins", "float", "allowed as data: a base or a factory"),
        ("builtins", "bool", "allowed as data: a factory"),
    ]
}

// Each preset announces itself to the registry, which names the preset
// that would allow a refused global in the error, in this order.
inventory::submit! { KnownPreset { rank: 0, preset: &STDLIB } }
inventory::submit! { KnownPreset { rank: 1, preset: &NUMPY } }
inventory::submit! { KnownPreset { rank: 2, preset: &TORCH_WEIGHTS_ONLY } }

/// Every preset this build knows, for looking one up by name.
pub fn all() -> &'static [&'static Preset] {
    &[&STDLIB, &NUMPY, &TORCH_WEIGHTS_ONLY]
}

/// numpy's arrays, scalars and dtypes, as numpy 1.x (`numpy.core`) and 2.x
/// (`numpy._core`) name them: `_reconstruct`, `_frombuffer`, `scalar`,
/// `dtype`, `ndarray` and the scalar types. They read as
/// [`numpy::Array`](crate::numpy::Array), [`Scalar`](crate::numpy::Scalar)
/// and [`DType`](crate::numpy::DType); the [`numpy`](crate::numpy) page
/// lists every global.
pub const NUMPY: Preset = Preset::new(
    "numpy",
    crate::python::numpy::GLOBALS,
    crate::python::numpy::install,
);

/// torch's `weights_only` set: the globals `torch.load(weights_only=True)`
/// allows, and nothing else (tensor rebuilders, storage classes, dtypes,
/// `OrderedDict`, ...). They are kept as data; [`torch`](crate::torch)'s
/// loader turns them into tensors, and its page lists every global.
pub const TORCH_WEIGHTS_ONLY: Preset = Preset::new(
    "torch",
    crate::python::torch::WEIGHTS_ONLY,
    crate::python::torch::install,
);

/// The preset called `name` (`"stdlib"`, `"numpy"`, `"torch"`), if there is one.
///
/// ```
/// assert_eq!(reduce::preset::by_name("stdlib").map(|p| p.name()), Some("stdlib"));
/// assert!(reduce::preset::by_name("os").is_none());
/// ```
pub fn by_name(name: &str) -> Option<&'static Preset> {
    all().iter().copied().find(|p| p.name() == name)
}
