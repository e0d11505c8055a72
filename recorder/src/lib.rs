//! The gateway crate (the SSH gateway arrives with its own issue).
