//! Any bytes, read into a Graph in strict and in inert mode (and walked
//! with the inspection API): an error or a value, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reduce_tests::fuzz::load_value(data));
