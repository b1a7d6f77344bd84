//! The writer engine: writes a [`Graph`](crate::Graph) or [`Value`](crate::Value) as CPython 3.11's C pickler
//! (`_pickle`) writes the same object, byte for byte.
//!
//! The writer follows CPython's `save()` with an explicit task stack instead
//! of recursion, so a value of any depth can be written. The parts that make
//! the bytes identical are the memo (what is memoized, and when, is
//! CPython's: containers before their items, tuples, frozensets and reduced
//! objects after), the frames (committed at the end of a `save` once they
//! reach 64 KiB; payloads of 64 KiB and more written outside any frame) and
//! the batches of 1000 (with CPython's quirks, kept on purpose: a `dict` or
//! `set` whose size is a multiple of 1000 ends with an empty batch).

//!
//! | file | what |
//! |---|---|
//! | `encode.rs` | the `Value` encoder: CPython's `save()` over a task stack |
//! | `names.rs` | the interned strings of one pickle, written once each |
//! | `out.rs` | the output: frames, the memo, and each scalar's opcodes |
//! | `rules.rs` | CPython's container rules (tuple ends, batches, `set` before protocol 4), which the typed writer follows too |

pub(crate) mod encode;
pub(crate) mod names;
pub(crate) mod out;
pub(crate) mod rules;
