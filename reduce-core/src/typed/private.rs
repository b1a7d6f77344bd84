//! What `#[derive(Reduce)]` expands to refers to, through one hidden path
//! so the generated code never depends on the user's imports.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

pub use inventory;

pub use crate::read::stream::{Miss, Pulled, Stream};
pub use crate::typed::registry::{GenericName, Registration};
pub use crate::typed::save::FnReduce;
pub use crate::typed::state::{save_instance, InstanceState};

/// A `#[reduce(bytes)]` field on the stream: `bytes` or `bytearray` with
/// its own opcode, as `reduce::bytes::construct` reads them.
pub fn bytes_stream(s: &mut Stream<'_>) -> Pulled<Vec<u8>> {
    s.bytes().map(<[u8]>::to_vec)
}

/// A `#[reduce(serde)]` field on the stream: its value as a `Value`, then
/// deserialized, as `reduce::serde::field::construct` reads it.
#[cfg(feature = "serde")]
pub fn serde_stream<T: ::serde::de::DeserializeOwned>(s: &mut Stream<'_>) -> Pulled<T> {
    let value = s.value()?;
    crate::serde::from_value(&value).map_err(|_| Miss)
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
