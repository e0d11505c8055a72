//! Fuzz target `commands`: see `format::fuzzing::commands`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| format::fuzzing::commands(data));
