//! Fuzz target `cast`: see `recorder::fuzzing::cast`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| recorder::fuzzing::cast(data));
