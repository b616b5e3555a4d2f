//! fwdguard keeps sysctls, above all `net.ipv4.conf.all.forwarding`, at the value a Docker host
//! needs, and restores or reports a drop within microseconds of the kernel making it.
//!
//! The code follows the data: sources -> observations -> routing -> policy -> decisions ->
//! actions (knob write, sinks) -> snapshot (STATUS=, check, metrics).
//! - [`source`]: where observations come from: kernel netconf and link events over netlink,
//!   inotify on `/proc/sys` files (the timed re-read lives in the daemon loop); [`bpf`]: the
//!   cgroup/sysctl hook that replaces writes to `prevent` keys before they land and names
//!   every writer (its events come in as observations).
//! - [`observation`]: what was seen and how, with the value an event carried and a cause.
//! - [`routing`]: which guards (by [`routing::GuardId`]) a kernel event concerns. No I/O.
//! - [`policy`]: the pure decisions: restore or alert, flapping, retry backoff. No I/O.
//! - [`daemon`]: the loop that feeds observations to the policy and carries out its decisions,
//!   generic over the knob I/O ([`knob::Knobs`]).
//! - [`snapshot`]: the guard's state as the loop publishes it.
//! - [`knob`]: the knob I/O as the pure core sees it; [`sysctl`]: the real knobs under
//!   `/proc/sys`; [`key`]: validated key names and how each can
//!   be watched; [`value`]: values as the kernel prints them and the shapes keys can hold;
//!   [`config`]: the TOML file.
//! - [`report`]: what operators are told, with journal `MESSAGE_ID`s; [`output`]: the journal,
//!   stderr and sd_notify, none of which ever waits, and the sinks built from the configuration.
//! - [`cli`]: the command line; [`commands`]: each command (`run`, `check`, `doctor`, `demo`,
//!   `alert test`, `config check`); [`sandbox`]: private network namespaces
//!   for the demo, benchmarks and tests.

pub use fwdguard_core::{
    cause, check, diagnosis, key, knob, observation, payload, policy, report, routing, snapshot,
    value,
};

pub mod alert;
pub mod bpf;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod persist;
pub mod sandbox;
pub mod source;
pub mod sysctl;
