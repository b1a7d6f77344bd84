//! Any bytes, read as typed values of several shapes: an error or a value,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reduce_tests::fuzz::load_typed(data));
