//! The typed layer: Rust types as Python objects. [`Reduce`](save::Reduce)
//! and its [`Saver`](save::Saver) write them, [`Construct`](construct::Construct)
//! and its [`Node`](construct::Node) read them, and the
//! [`Registry`](registry::Registry) (`copyreg`) teaches both about types
//! after the fact. The one import loop of the crate is here, and it is
//! copyreg's own: the registry stores reducers and constructors typed over
//! `Saver` and `Node`, and those look reducers and constructors up in the
//! registry.

pub(crate) mod construct;
pub(crate) mod impls;
pub(crate) mod private;
pub(crate) mod registry;
pub(crate) mod save;
pub(crate) mod state;
