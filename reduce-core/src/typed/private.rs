//! What `#[derive(Reduce)]` expands to refers to, through one hidden path
//! so the generated code never depends on the user's imports.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

pub use inventory;

pub use crate::read::stream::{Miss, Pulled, Stream};
pub use crate::typed::registry::{GenericName, Registration};
pub use crate::typed::save::FnReduce;
pub use crate::typed::save::StateDict;
pub use crate::typed::state::{save_instance, save_state, InstanceState};
pub use crate::write::names::FieldNames;

use crate::typed::construct::Construct;
use crate::typed::save::{Reduce, Saver};

/// Name `.1` of a derived type's [`FieldNames`]: an attribute name, written
/// as an interned `str`.
pub struct FieldName(pub &'static FieldNames, pub usize);

impl Reduce for FieldName {
    #[inline]
    fn reduce(&self, s: &mut Saver<'_, '_>) -> crate::base::error::Result<()> {
        s.field_name(self.0, self.1)
    }

    #[inline]
    fn __leaf(&self) -> bool {
        true
    }
}

/// One item or field of type `T` on the stream, a level below its
/// container: [`Stream::read`], or [`Stream::read_leaf`] for a type that
/// reads nothing below it.
#[inline(always)]
pub fn read_item<T: Construct>(s: &mut Stream<'_>) -> Pulled<T> {
    if T::__LEAF {
        s.read_leaf(T::construct_stream)
    } else {
        s.read(T::construct_stream)
    }
}

/// A `#[reduce(bytes)]` field on the stream: `bytes` or `bytearray` with
/// its own opcode, as `reduce::bytes::construct` reads them.
pub fn bytes_stream(s: &mut Stream<'_>) -> Pulled<Vec<u8>> {
    s.bytes().map(<[u8]>::to_vec)
}

/// A field read `with` a function or through the registry, on the stream:
/// see `graph_field` in the typed layer's `construct` module.
pub fn graph_field<T>(
    s: &mut Stream<'_>,
    read: impl FnOnce(crate::typed::construct::Node<'_>) -> crate::base::error::Result<T>,
) -> Pulled<T> {
    crate::typed::construct::graph_field(s, read)
}

/// `a::b::c` as Python spells a module, `a.b.c`, made once per module.
pub fn dotted(module_path: &'static str) -> &'static str {
    static CACHE: LazyLock<Mutex<HashMap<&'static str, &'static str>>> =
        LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(module_path)
        .or_insert_with(|| Box::leak(module_path.replace("::", ".").into_boxed_str()))
}
