//! Helpers shared by the trackers' unit tests: scripts of chunks per stream, one line per
//! event to write expectations in, and feeding a script whole, re-chunked or cut everywhere.

use sha2::{Digest, Sha256};

use super::Stream;

#[path = "../../tests/common/transfer_script.rs"]
mod script;
pub(super) use script::*;

pub(super) fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub(super) fn sha_hex(data: &[u8]) -> String {
    hex::encode(sha(data))
}

/// The trackers' memory, for the tests that bound it.
pub(super) trait Tracker: Feed {
    fn memory(&self) -> usize;
}

#[track_caller]
pub(super) fn check(actual: &[String], expected: &[&str]) {
    let actual: Vec<&str> = actual.iter().map(String::as_str).collect();
    assert_eq!(actual, expected);
}

/// Every way of cutting each message in two, and one byte at a time,
/// gives the same events as the whole messages.
#[track_caller]
pub(super) fn check_every_split(new: &dyn Fn() -> Box<dyn Tracker>, script: &[(Stream, Vec<u8>)]) {
    let whole = describe_all(&run(new().as_mut(), script));
    for (i, (stream, bytes)) in script.iter().enumerate() {
        for cut in 1..bytes.len() {
            let mut split: Script = script[..i].to_vec();
            split.push((*stream, bytes[..cut].to_vec()));
            split.push((*stream, bytes[cut..].to_vec()));
            split.extend_from_slice(&script[i + 1..]);
            let got = describe_all(&run(new().as_mut(), &split));
            assert_eq!(got, whole, "message {i} cut at {cut}");
        }
    }
    let bytewise: Script =
        script.iter().flat_map(|(s, b)| b.iter().map(move |&x| (*s, vec![x]))).collect();
    assert_eq!(describe_all(&run(new().as_mut(), &bytewise)), whole);
    // Consecutive messages of one stream in one chunk.
    let mut merged: Script = Vec::new();
    for (stream, bytes) in script {
        match merged.last_mut() {
            Some((s, b)) if s == stream => b.extend_from_slice(bytes),
            _ => merged.push((*stream, bytes.clone())),
        }
    }
    assert_eq!(describe_all(&run(new().as_mut(), &merged)), whole);
}
