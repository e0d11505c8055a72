//! Fuzz target `slack_interaction`: see `bot::fuzzing::slack_interaction`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bot::fuzzing::slack_interaction(data));
