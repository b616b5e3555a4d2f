//! Persisted sysctl settings: what each tool that applies sysctl files (systemd-sysctl,
//! `sysctl --system`, `sysctl -p`, the EL7 initscripts) will write at the next boot or network
//! restart, with `FILE:LINE` for the value that wins and for every entry it overrides.
//!
//! - [`parse`]: one file's lines, in the dialect of each tool.
//! - [`resolve`]: the order and override rules of each tool, and what a guarded key ends up
//!   as. It takes file contents and directory listings as data; the binary's `persist::scan`
//!   reads them from a host or an image.

pub mod parse;
pub mod resolve;

use std::fmt;

use serde::Serialize;

/// A file or directory that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub path: String,
    pub error: String,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.error)
    }
}
