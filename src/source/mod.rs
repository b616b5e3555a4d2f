//! Where observations come from: netconf and link events over netlink, inotify on `/proc/sys`
//! files, and systemd service jobs over D-Bus ([`jobs`]). Each source says which keys may have
//! changed, and what it knows of the new value; routing and the policy take it from there.
//! [`persisted`] watches the sysctl configuration files and reports conflicts with the guards.

pub mod files;
pub mod jobs;
pub mod netconf;
pub mod netlink;
pub mod persisted;

use tokio::sync::{mpsc, watch};

use crate::config::{CauseSources, Guard};
use crate::key::Watch;
use crate::observation::Observation;
use crate::persist::scan::Root;
use crate::report::Report;
use crate::service_jobs::ServiceJobs;
use crate::snapshot::{Degradation, Snapshot};

/// What would keep the daemon from seeing changes of this guard's key quickly, found out the
/// way the daemon would: subscribing to netconf events, adding an inotify watch. For
/// `fwdguard check`.
pub fn probe(guard: &Guard) -> Vec<Degradation> {
    let mut found = Vec::new();
    let netlink = netlink::can_subscribe();
    if let (Watch::Netconf { .. }, Err(e)) = (guard.key.watch(), &netlink) {
        found.push(Degradation::NoNetlink {
            error: e.to_string(),
        });
    }
    let needs_file_watch = guard.key.watch().needs_file_watch(netlink.is_ok());
    if needs_file_watch
        && let Err(e) = files::can_watch(&guard.key.proc_path())
        && e.kind() != std::io::ErrorKind::NotFound
    {
        found.push(Degradation::NoFileWatch {
            error: files::describe(&e),
        });
    }
    found
}

/// The daemon's channel ends a source running in a task of its own holds.
#[derive(Debug, Clone)]
pub struct DaemonEnds {
    /// Observations, routed to the guards like kernel events.
    pub observer: mpsc::Sender<Observation>,
    /// Reports that are no key change (persisted settings that will turn a key off), sent to
    /// the daemon's sinks.
    pub reporter: mpsc::Sender<Report>,
    /// The guard's state as the daemon publishes it.
    pub snapshots: watch::Receiver<Snapshot>,
}

/// Starts the sources that name causes, each in a task of its own (call inside the runtime):
/// the D-Bus job watcher (unless `service-units` is empty) and the watch of the persisted
/// sysctl files. They read `causes` (`service-units`, `service-window`, `persisted-root`)
/// once: a change of those takes effect at the next start. Returns the service jobs the D-Bus
/// watcher keeps, for the daemon to attribute drops with; `None` without one.
pub fn spawn_cause_sources(
    causes: &CauseSources,
    daemon: DaemonEnds,
) -> Option<watch::Receiver<ServiceJobs>> {
    let mut attribution = None;
    if !causes.units.is_empty() {
        let (jobs, receiver) = watch::channel(ServiceJobs::new(causes.window));
        attribution = Some(receiver);
        tokio::spawn(jobs::feed(
            jobs::Bus::System,
            causes.units.clone(),
            jobs,
            daemon.observer,
        ));
    }
    tokio::spawn(persisted::report(
        Root::new(&causes.persisted_root),
        daemon.snapshots,
        daemon.reporter,
    ));
    attribution
}
