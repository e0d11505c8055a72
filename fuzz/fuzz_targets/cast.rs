//! Fuzz target `cast`: see `format::fuzzing::cast`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| format::fuzzing::cast(data));
