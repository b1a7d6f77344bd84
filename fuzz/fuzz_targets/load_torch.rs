//! Any bytes, read as a torch checkpoint (zip or legacy): an error or a
//! checkpoint whose state dict writes and reads back, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reduce_tests::fuzz::load_torch(data));
