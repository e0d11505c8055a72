//! Fuzz target `commands`: see `recorder::fuzzing::commands`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| recorder::fuzzing::commands(data));
