//! Fuzz target `scp`: see `format::fuzzing::scp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| format::fuzzing::scp(data));
