//! Whatever loads (inert) writes back at every protocol, and what is
//! written loads again to an equal graph.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| reduce_tests::fuzz::round_trip(data));
