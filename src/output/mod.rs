//! Where fwdguard's words go, none of which may ever make the guard wait: the journal
//! ([`journal`]), stderr ([`stderr`]), the service manager ([`notify`]), and the sinks the
//! configuration asks for ([`configured_sinks`]).

pub mod journal;
pub mod notify;
pub mod stderr;

use tokio::sync::watch;

use crate::config::Config;
use crate::report::Sink;
use crate::snapshot::Snapshot;

/// The sinks the configuration asks for, besides the journal or stderr (which come from the
/// environment and live as long as the process). Built at start and again on every reload,
/// so a sink follows its file: the webhooks (and, beside them, the metrics server, which shows
/// `snapshots`).
pub fn configured_sinks(
    config: &Config,
    snapshots: &watch::Receiver<Snapshot>,
) -> Vec<Box<dyn Sink>> {
    crate::alert::configure(config, snapshots)
}
