//! Where observations come from: netconf and link events over netlink, inotify on `/proc/sys`
//! files. Each source says which keys may have changed, and what it knows of the new value;
//! routing and the policy take it from there.

pub mod files;
pub mod jobs;
pub mod netconf;
pub mod netlink;
pub mod persisted;

use crate::config::Guard;
use crate::key::Watch;
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
