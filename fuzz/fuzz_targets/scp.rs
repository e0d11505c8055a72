//! Fuzz target `scp`: see `recorder::fuzzing::scp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| recorder::fuzzing::scp(data));
