//! Persisted sysctl settings: what each tool that applies sysctl files (systemd-sysctl,
//! `sysctl --system`, `sysctl -p`, the EL7 initscripts) will write at the next boot or network
//! restart, with `FILE:LINE` for the value that wins and for every entry it overrides.
//!
//! - [`parse`]: one file's lines, in the dialect of each tool (from the core).
//! - [`resolve`]: the order and override rules of each tool, and what a guarded key ends up
//!   as (from the core: it takes file contents and directory listings as data).
//! - [`scan`]: reads those files from a host or from an image below a root directory, never
//!   following a symlink out of it, and reports bad input without stopping.
//! - [`inputs`]: reads, the same way, everything else [`crate::diagnosis`] looks at (network
//!   scripts, Docker, systemd-networkd, NetworkManager).

pub use fwdguard_core::persist::{Unreadable, parse, resolve};
pub mod inputs;
pub mod scan;
