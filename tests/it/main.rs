//! The integration tests, one binary: the real `fwdguard` binary and the library's public API
//! against the real kernel, real HTTP servers, a private dbus-daemon and a fake journal. Tests
//! that write sysctls run in private network namespaces through `common::in_private_netns`,
//! where the modules take turns (never `fwdguard::sandbox::in_private_netns` directly). The
//! end-to-end tests under systemd-nspawn and Docker are binaries of their own (tests/e2e).
//!
//! One module per area; `common` is the shared harness.

mod common;

mod alert_cli;
mod alerts;
mod alerts_daemon;
mod architecture;
mod bpf_hook;
mod catalog;
mod causes;
mod cli;
mod config_props;
mod doctor;
mod guard;
mod jobs;
mod journal;
mod metrics;
mod persist;
mod prevent;
mod storm;
