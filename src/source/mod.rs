//! Where observations come from: netconf and link events over netlink, inotify on `/proc/sys`
//! files, and systemd service jobs over D-Bus ([`jobs`]). Each source says which keys may have
//! changed, and what it knows of the new value; routing and the policy take it from there.
//! [`persisted`] watches the sysctl configuration files and reports conflicts with the guards.

pub mod files;
pub mod jobs;
pub mod netconf;
pub mod netlink;
pub mod persisted;

use crate::cause::ServiceJobs;
use crate::config::Guard;
use crate::daemon::Setup;
use crate::key::Watch;
use crate::persist::scan::Root;
use crate::snapshot::Degradation;

/// What would keep the daemon from seeing changes of this guard's key quickly, found out the
/// way the daemon would: subscribing to netconf events, adding an inotify watch. For
/// `fwdguard check`.
pub fn probe(guard: &Guard) -> Vec<Degradation> {
    let mut found = Vec::new();
    let netlink = netlink::can_subscribe();
    let needs_file_watch = match guard.key.watch() {
        Watch::Netconf { .. } => match &netlink {
            Ok(()) => false,
            Err(e) => {
                found.push(Degradation::NoNetlink {
                    error: e.to_string(),
                });
                true
            }
        },
        Watch::File => true,
    };
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

/// Starts the sources that name causes, each in a task of its own (call inside the runtime):
/// the D-Bus job watcher (unless `service-units` is empty) and the watch of the persisted
/// sysctl files. They read `service-units`, `service-window` and `persisted-root` once: a
/// change of those takes effect at the next start.
pub fn spawn_cause_sources(setup: &mut Setup) {
    let causes = setup.config.causes.clone();
    if !causes.units.is_empty() {
        let (jobs, attribution) = tokio::sync::watch::channel(ServiceJobs::new(causes.window));
        setup.attribute_with(attribution);
        tokio::spawn(jobs::feed(
            jobs::Bus::System,
            causes.units,
            jobs,
            setup.observer(),
        ));
    }
    tokio::spawn(persisted::report(
        Root::new(&causes.persisted_root),
        setup.snapshots(),
        setup.reporter(),
    ));
}
