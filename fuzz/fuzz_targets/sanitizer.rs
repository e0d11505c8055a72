//! Fuzz target `sanitizer`: see `recorder::fuzzing::sanitizer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| recorder::fuzzing::sanitizer(data));
