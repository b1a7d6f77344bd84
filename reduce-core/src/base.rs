//! The leaves: opcodes and protocol numbers, the error type, and the limits.
//! Nothing here imports anything else from the crate.

pub(crate) mod error;
pub(crate) mod limits;
pub mod op;
