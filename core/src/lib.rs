//! fwdguard's domain, without I/O: what the daemon and its commands decide, given what they
//! read. The binary crate `fwdguard` reads the kernel, files, D-Bus and the network, and hands
//! this crate data and times (`std::time::Instant`s it took); nothing here blocks, sleeps,
//! opens a file or a socket.
//!
//! The code follows the data: observations -> routing -> policy -> decisions -> reports ->
//! snapshot.
//! - [`key`], [`value`]: validated sysctl names and values as the kernel prints them.
//! - [`config`]: the configuration file's schema, parsing and validation (file contents are
//!   passed in through [`config::Host`]).
//! - [`observation`]: what was seen and how; [`routing`]: which guards a kernel event concerns.
//! - [`policy`]: restore or alert, flapping, retry backoff; [`service_jobs`]: which service job a drop
//!   belongs to.
//! - [`report`]: what operators are told, one table row per kind; [`payload`]: the webhook
//!   bodies built from reports, and the Alertmanager alerts and what reports do to them.
//! - [`snapshot`]: the guard's state as the loop publishes it.
//! - [`knob`]: the knob I/O as the core sees it (a trait the binary implements).
//! - [`persist`]: what the persisted sysctl files will set, from their contents.
//! - [`check`]: `fwdguard check`'s verdict on each guarded key (the keys read through a
//!   [`knob::Knobs`] the binary hands in); [`diagnosis`]: `fwdguard doctor`'s hazards and
//!   fixes, from file contents the binary read.
//! - [`bpf`]: the cgroup/sysctl program's assembly and the kernel BTF parsing (bytes in, bytes out);
//!   [`hook`]: what the daemon settles for when the hook cannot be had as configured.
//!
//! Behind these, private: `guard` (one guarded key and its action, re-exported by [`config`]),
//! `alerting` (the alert names and effects, re-exported by [`payload::alertmanager`]) and
//! `human` (durations as operators read them, re-exported by [`report`]).
#![forbid(unsafe_code)]

mod alerting;
pub mod bpf;
pub mod check;
pub mod config;
pub mod diagnosis;
mod guard;
pub mod hook;
mod human;
pub mod key;
pub mod knob;
pub mod observation;
pub mod payload;
pub mod persist;
pub mod policy;
pub mod report;
pub mod routing;
pub mod service_jobs;
pub mod snapshot;
pub mod value;
