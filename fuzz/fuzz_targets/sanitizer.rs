//! Fuzz target `sanitizer`: see `format::fuzzing::sanitizer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| format::fuzzing::sanitizer(data));
