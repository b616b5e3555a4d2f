//! What [`crate::diagnosis`] looks at, read below a root (the host's `/`, or an image): the
//! sysctl files ([`super::scan`]), the initscripts network service, Docker's `daemon.json`, and
//! the systemd-networkd and NetworkManager files that can turn forwarding off. For `fwdguard
//! doctor`, `fwdguard check` and the daemon's watch of the persisted files.

use std::collections::BTreeSet;

use super::Unreadable;
use super::scan::{Found, Root, scan};
use crate::diagnosis::{Inputs, TextFile};

/// EL7 initscripts' network service.
const NETWORK_SCRIPTS: [&str; 2] = ["/etc/rc.d/init.d/network", "/etc/init.d/network"];
const DOCKER_DAEMON_JSON: &str = "/etc/docker/daemon.json";
const NETWORKD_CONF: [&str; 4] = [
    "/etc/systemd/networkd.conf",
    "/run/systemd/networkd.conf",
    "/usr/local/lib/systemd/networkd.conf",
    "/usr/lib/systemd/networkd.conf",
];
const NETWORKD_CONF_D: [&str; 4] = [
    "/etc/systemd/networkd.conf.d",
    "/run/systemd/networkd.conf.d",
    "/usr/local/lib/systemd/networkd.conf.d",
    "/usr/lib/systemd/networkd.conf.d",
];
const NETWORKD_NETWORK: [&str; 5] = [
    "/etc/systemd/network",
    "/run/systemd/network",
    "/usr/local/lib/systemd/network",
    "/usr/lib/systemd/network",
    "/lib/systemd/network",
];
const NM_PROFILES: [&str; 3] = [
    "/etc/NetworkManager/system-connections",
    "/run/NetworkManager/system-connections",
    "/usr/lib/NetworkManager/system-connections",
];
const NM_CONF: &str = "/etc/NetworkManager/NetworkManager.conf";
const NM_CONF_D: [&str; 3] = [
    "/etc/NetworkManager/conf.d",
    "/run/NetworkManager/conf.d",
    "/usr/lib/NetworkManager/conf.d",
];

/// Reads the files the diagnosis looks at below `root` (the service state is left out: it is
/// the host's, not the root's).
pub fn gather(root: &Root) -> Inputs {
    let (tree, mut unreadable) = scan(root);
    let mut read = |path: &str| -> Option<TextFile> {
        match root.read(path) {
            Found::Text { text, .. } => Some(TextFile {
                path: path.to_owned(),
                text,
            }),
            Found::Bad(error) => {
                unreadable.push(Unreadable {
                    path: path.to_owned(),
                    error,
                });
                None
            }
            Found::DevNull | Found::Missing => None,
        }
    };
    // /etc/init.d is a link to rc.d/init.d on EL7: read the file once.
    let mut seen = BTreeSet::new();
    let mut network_scripts = Vec::new();
    for path in NETWORK_SCRIPTS {
        if let Ok(real) = root.resolve(path)
            && seen.insert(real)
            && let Some(f) = read(path)
        {
            network_scripts.push(f);
        }
    }
    let docker = read(DOCKER_DAEMON_JSON);
    // networkd.conf(5): only the first main file found is used; drop-ins add to it.
    let mut networkd: Vec<TextFile> = NETWORKD_CONF
        .iter()
        .find_map(|p| read(p))
        .into_iter()
        .collect();
    networkd.extend(read_dirs(root, &NETWORKD_CONF_D, ".conf", &mut unreadable));
    networkd.extend(read_dirs(
        root,
        &NETWORKD_NETWORK,
        ".network",
        &mut unreadable,
    ));
    let mut network_manager = read_dirs(root, &NM_PROFILES, ".nmconnection", &mut unreadable);
    if let Found::Text { text, .. } = root.read(NM_CONF) {
        network_manager.push(TextFile {
            path: NM_CONF.into(),
            text,
        });
    }
    network_manager.extend(read_dirs(root, &NM_CONF_D, ".conf", &mut unreadable));
    Inputs {
        tree,
        network_scripts,
        docker,
        networkd,
        network_manager,
        service: None,
        unreadable,
    }
}

/// The files of systemd-style directories: a name in an earlier directory masks a later one.
fn read_dirs(root: &Root, dirs: &[&str], suffix: &str, bad: &mut Vec<Unreadable>) -> Vec<TextFile> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for dir in dirs {
        for (name, found) in root.conf_dir(dir, suffix, bad).unwrap_or_default() {
            if !names.insert(name.clone()) {
                continue;
            }
            if let Found::Text { text, .. } = found {
                out.push(TextFile {
                    path: format!("{dir}/{name}"),
                    text,
                });
            }
        }
    }
    out
}
