//! Fuzz target `approval`: see `shared::fuzzing::approval`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shared::fuzzing::approval(data));
