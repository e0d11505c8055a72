//! Fuzz target `slack_command`: see `bot::fuzzing::slack_command`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bot::fuzzing::slack_command(data));
