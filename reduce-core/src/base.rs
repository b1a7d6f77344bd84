//! The leaves: opcodes and protocol numbers, the error type, the limits,
//! and the hasher for address-keyed maps.
//! Nothing here imports anything else from the crate.

pub(crate) mod error;
pub(crate) mod hash;
pub(crate) mod limits;
pub mod op;
