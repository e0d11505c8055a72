//! Fuzz target `sftp`: see `recorder::fuzzing::sftp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| recorder::fuzzing::sftp(data));
