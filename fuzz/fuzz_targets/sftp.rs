//! Fuzz target `sftp`: see `format::fuzzing::sftp`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| format::fuzzing::sftp(data));
