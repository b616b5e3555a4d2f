//! fwdguard keeps sysctls, above all `net.ipv4.conf.all.forwarding`, at the value a Docker host
//! needs, and restores or reports a drop within microseconds of the kernel making it.
//!
//! The code follows the data:
//! - [`source`]: where observations come from: kernel netconf and link events over netlink,
//!   inotify on `/proc/sys` files (the timed re-read lives in the daemon loop).
//! - [`policy`]: the pure decisions: restore or alert, flapping, retry backoff. No I/O.
//! - [`daemon`]: the loop that feeds observations to the policy and carries out its decisions.
//! - [`sysctl`]: reading and writing the knobs; [`key`]: validated key names and how each can
//!   be watched; [`value`]: values as the kernel prints them and the shapes keys can hold;
//!   [`config`]: the TOML file.
//! - [`report`]: what operators are told, with journal `MESSAGE_ID`s; [`systemd`]: sd_notify.
//! - [`check`], [`demo`], [`cli`]: the other commands; [`sandbox`]: private network namespaces
//!   for the demo, benchmarks and tests.

pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod key;
pub mod logging;
pub mod observation;
pub mod output;
pub mod policy;
pub mod report;
pub mod routing;
pub mod sandbox;
pub mod snapshot;
pub mod source;
pub mod sysctl;
pub mod value;
