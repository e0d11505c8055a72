//! Fuzz target `discord_interaction`: see `bot::fuzzing::discord_interaction`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bot::fuzzing::discord_interaction(data));
