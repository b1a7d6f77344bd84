//! What `#[derive(Reduce)]` expands to refers to, through one hidden path
//! so the generated code never depends on the user's imports.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

pub use inventory;

use crate::base::error::Result;
use crate::registry::Registry;

pub use crate::save::FnReduce;
pub use crate::state::{save_instance, InstanceState};

/// `a::b::c` as Python spells a module, `a.b.c`, made once per module.
pub fn dotted(module_path: &'static str) -> &'static str {
    static CACHE: LazyLock<Mutex<HashMap<&'static str, &'static str>>> =
        LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(module_path)
        .or_insert_with(|| Box::leak(module_path.replace("::", ".").into_boxed_str()))
}

/// A derived type that registers itself at link time.
pub struct Registration {
    /// The type's name, for conflict reports.
    pub type_name: &'static str,
    /// Registers the type's reducer and constructors.
    pub register: fn(&mut Registry) -> Result<()>,
}

inventory::collect!(Registration);

/// A generic derived type, which cannot register itself: its global path,
/// so the error for an unregistered instantiation can say why.
pub struct GenericName {
    /// The global path `module.name`.
    pub path: fn() -> String,
}

inventory::collect!(GenericName);
