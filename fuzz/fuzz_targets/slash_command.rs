//! Fuzz target `slash_command`: see `bot::fuzzing::slash_command`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bot::fuzzing::slash_command(data));
