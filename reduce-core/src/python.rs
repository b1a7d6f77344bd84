//! Python's data: the standard library's types, numpy's arrays and
//! PyTorch's checkpoints as Rust types, and the presets that allow their
//! globals. This layer is built on the entry points and the typed layer
//! below it; nothing below imports it (a preset announces itself to the
//! registry at link time).

pub mod numpy;
pub mod preset;
pub mod stdlib;
pub mod torch;
