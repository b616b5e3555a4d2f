//! fwdguard keeps sysctls, above all `net.ipv4.conf.all.forwarding`, at the value a Docker host
//! needs, and restores or reports a drop within microseconds of the kernel making it.
//!
//! The code follows the data: sources -> observations -> routing -> policy -> decisions ->
//! actions (knob write, sinks) -> snapshot (STATUS=, check, metrics). What is decided lives in
//! the core crate (`fwdguard-core`, no I/O of its own), re-exported here under the same names;
//! the modules of this crate do the I/O around it.
//!
//! From the core:
//! - [`key`]: validated key names and how each can be watched; [`value`]: values as the kernel
//!   prints them and the shapes keys can hold.
//! - [`observation`]: what was seen and how, with the value an event carried and a cause.
//! - [`routing`]: which guards (by [`routing::GuardId`]) a kernel event concerns.
//! - [`policy`]: the decisions: restore or alert, flapping, retry backoff.
//! - [`service_jobs`]: which service job a drop belongs to, from the jobs the D-Bus watcher records.
//! - [`report`]: what operators are told, with journal `MESSAGE_ID`s, and the [`report::Sink`]
//!   they go to; [`payload`]: the webhook bodies (`json`, `slack`, `alertmanager`).
//! - [`snapshot`]: the guard's state as the loop publishes it.
//! - [`knob`]: the knob I/O as a trait ([`knob::Knobs`]) that [`sysctl`] implements.
//! - [`check`]: `fwdguard check`'s verdict, on keys read through a [`knob::Knobs`] handed in;
//!   [`diagnosis`]: `fwdguard doctor`'s hazards and fixes, from file contents [`persist`] read.
//! - [`hook`]: what the daemon settles for when the BPF hook cannot be had as configured.
//!
//! This crate:
//! - [`source`]: where observations come from: kernel netconf and link events over netlink,
//!   inotify on `/proc/sys` files (the timed re-read lives in the daemon loop), systemd service
//!   jobs over D-Bus, and the watch of the persisted sysctl files; [`bpf`]: the cgroup/sysctl
//!   hook that replaces writes to `prevent` keys before they land and names every writer (its
//!   events come in as observations).
//! - [`daemon`]: the loop that feeds observations to the policy and carries out its decisions,
//!   generic over the knob I/O ([`knob::Knobs`]).
//! - [`sysctl`]: the real knobs under `/proc/sys`.
//! - [`config`]: the TOML file and the files it names, read and handed to the core's
//!   validation (whose schema it re-exports).
//! - [`persist`]: the persisted sysctl files, and the network service, Docker, networkd and
//!   NetworkManager files, read below a root (the host's `/` or an image); what they will set
//!   is the core's `persist` (re-exported there).
//! - [`output`]: where reports go, none of which ever makes the guard wait: the journal,
//!   stderr, sd_notify, and the webhooks and metrics listener the configuration asks for
//!   ([`output::ConfiguredOutputs`]).
//! - [`alert`]: the webhooks' delivery thread, queues and HTTP(S) client; [`metrics`]:
//!   `/metrics` for Prometheus, served on the delivery thread.
//! - [`logging`]: diagnostics through `tracing`, to the journal or stderr.
//! - [`cli`]: the command line (clap definitions, usage errors, dispatch); [`commands`]: one
//!   module per command (`run`, `check`, `doctor`, `demo`, `alert test`, `config check`).
//! - [`sandbox`]: private network namespaces for the demo, benchmarks and tests.

pub use fwdguard_core::{
    check, diagnosis, hook, key, knob, observation, payload, policy, report, routing, service_jobs,
    snapshot, value,
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
