//! inotify on the sysctl configuration files (`/etc/sysctl.conf` and the `sysctl.d`
//! directories, below a root): after a change has settled, the files are read again in a
//! blocking thread and the new [`Tree`] is sent to the daemon loop, which works out whether a
//! guarded key's persisted value now conflicts with its guard (or no longer does).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use inotify::{Inotify, WatchMask};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use crate::key::SysctlKey;
use crate::persist::resolve::{Conflict, ConflictTracker, SYSCTL_CONF, SYSCTL_D, Tree, conflicts};
use crate::persist::scan::{Root, Unreadable, scan};
use crate::report::{PersistedConflict, Report};
use crate::snapshot::Snapshot;
use crate::value::Value;

/// Editors write a file in several steps (truncate, write, rename): wait for quiet first.
pub const SETTLE: Duration = Duration::from_millis(150);

/// One reading of the files.
#[derive(Debug, Clone)]
pub struct Persisted {
    pub tree: Tree,
    pub unreadable: Vec<Unreadable>,
}

/// Reads the files once in a blocking thread.
pub async fn read(root: Root) -> Persisted {
    let task = tokio::task::spawn_blocking(move || scan(&root));
    match task.await {
        Ok((tree, unreadable)) => Persisted { tree, unreadable },
        Err(e) => Persisted {
            tree: Tree::default(),
            unreadable: vec![Unreadable {
                path: "sysctl files".into(),
                error: format!("reading failed: {e}"),
            }],
        },
    }
}

struct Watcher {
    inotify: AsyncFd<Inotify>,
    root: Root,
    buf: Vec<u8>,
}

/// Names in a parent directory that matter: `sysctl.d` appearing, `sysctl.conf` changing.
fn relevant(name: Option<&OsStr>, parent_watch: bool) -> bool {
    !parent_watch || name.is_some_and(|n| n == "sysctl.d" || n == "sysctl.conf")
}

impl Watcher {
    fn new(root: Root) -> io::Result<Self> {
        let inotify = Inotify::init()?;
        // SAFETY: `Inotify` owns its descriptor, which stays open (and `as_raw_fd` returns
        // it) until the `Inotify` is dropped, which only happens with the `AsyncFd`.
        #[allow(unsafe_code)]
        let inotify = unsafe { AsyncFd::register(inotify) }?;
        let mut w = Self {
            inotify,
            root,
            buf: vec![0; 8192],
        };
        w.add_watches();
        Ok(w)
    }

    /// The directories to watch (on this machine): each sysctl.d and its parent, so a
    /// directory that is created later is seen too.
    fn dirs(&self) -> Vec<(PathBuf, bool)> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let conf_parent = Path::new(SYSCTL_CONF)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        for dir in SYSCTL_D {
            let parent = Path::new(dir)
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            for (logical, is_parent) in [(dir.to_owned(), false), (parent, true)] {
                let host = match self.root.resolve(&logical) {
                    Ok(r) => self.root.host_path(&r),
                    Err(_) => continue,
                };
                if seen.insert(host.clone()) {
                    out.push((host, is_parent));
                }
            }
        }
        if let Ok(r) = self.root.resolve(&conf_parent) {
            let host = self.root.host_path(&r);
            if seen.insert(host.clone()) {
                out.push((host, true));
            }
        }
        out
    }

    /// (Re-)adds the watches: inotify hands back the same descriptor for a watched
    /// directory, and a directory created since gets one now.
    fn add_watches(&mut self) -> Vec<(inotify::WatchDescriptor, bool)> {
        let mask = WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::CLOSE_WRITE
            | WatchMask::MODIFY
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::ATTRIB
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR;
        let dirs = self.dirs();
        let mut watches = self.inotify.get_mut().watches();
        dirs.into_iter()
            .filter_map(|(path, parent)| match watches.add(&path, mask) {
                Ok(wd) => Some((wd, parent)),
                Err(e) => {
                    tracing::debug!(path = %path.display(), "no inotify watch: {e}");
                    None
                }
            })
            .collect()
    }

    /// Waits for a relevant change, then for `SETTLE` of quiet.
    async fn changed(&mut self) -> io::Result<()> {
        loop {
            let parents: Vec<_> = self.add_watches();
            let mut relevant_seen = false;
            let mut ready = self.inotify.readable_mut().await?;
            match ready.try_io(|fd| {
                let events = fd.get_mut().read_events(&mut self.buf)?;
                Ok(events
                    .map(|e| {
                        let parent = parents.iter().any(|(wd, p)| *p && *wd == e.wd);
                        relevant(e.name, parent)
                    })
                    .collect::<Vec<bool>>())
            }) {
                Ok(Ok(hits)) => relevant_seen |= hits.into_iter().any(|h| h),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
            if !relevant_seen {
                continue;
            }
            // Drain until quiet.
            loop {
                match tokio::time::timeout(SETTLE, self.inotify.readable_mut()).await {
                    Err(_quiet) => return Ok(()),
                    Ok(ready) => {
                        let mut ready = ready?;
                        let _ =
                            ready.try_io(|fd| fd.get_mut().read_events(&mut self.buf).map(|_| ()));
                    }
                }
            }
        }
    }
}

/// Sends a fresh reading now and after every change, until the receiver is dropped.
pub async fn watch(root: Root, tx: mpsc::Sender<Persisted>) {
    let mut watcher = match Watcher::new(root.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "cannot watch the sysctl files with inotify: {e}; persisted values are checked at start and on reload only"
            );
            None
        }
    };
    loop {
        if tx.send(read(root.clone()).await).await.is_err() {
            return;
        }
        match &mut watcher {
            Some(w) => {
                if let Err(e) = w.changed().await {
                    tracing::warn!(
                        "inotify on the sysctl files failed: {e}; no longer watching them"
                    );
                    watcher = None;
                }
            }
            None => {
                tx.closed().await;
                return;
            }
        }
    }
}

/// For the daemon: reports each persisted value that conflicts with a guard when it is first
/// seen (at start, or when the files change) and when it goes away, and at start once every
/// other hazard `fwdguard doctor` would name. Works from the guards the loop publishes, so a
/// reload is followed; recomputes only when the files or the guards changed.
pub async fn report(
    root: Root,
    mut snapshots: tokio::sync::watch::Receiver<Snapshot>,
    reporter: mpsc::Sender<Report>,
) {
    let (tx, mut rx) = mpsc::channel(4);
    tokio::spawn(watch(root.clone(), tx));
    let mut tracker = ConflictTracker::default();
    let mut tree: Option<Tree> = None;
    let mut unreadable: Vec<Unreadable> = Vec::new();
    let mut guards: Vec<(SysctlKey, Value)> = Vec::new();
    let mut hazards_said = false;
    loop {
        let files_changed = tokio::select! {
            p = rx.recv() => match p {
                Some(p) => {
                    if p.unreadable != unreadable {
                        for u in &p.unreadable {
                            tracing::warn!(path = %u.path, "persisted sysctl settings: {u}");
                        }
                        unreadable = p.unreadable;
                    }
                    tree = Some(p.tree);
                    true
                }
                None => return,
            },
            r = snapshots.changed() => {
                if r.is_err() {
                    return;
                }
                false
            }
        };
        let now = guards_of(&snapshots.borrow_and_update());
        if !files_changed && now == guards {
            continue;
        }
        guards = now;
        let Some(t) = &tree else { continue };
        if guards.is_empty() {
            continue;
        }
        let mut reports = Vec::new();
        if !hazards_said {
            hazards_said = true;
            reports.extend(other_hazards(root.clone(), guards.clone()).await);
        }
        let (new, mut gone) = tracker.update(conflicts(t, &guards));
        // A key no longer guarded (after a reload) is not news about the files.
        gone.retain(|c| guards.iter().any(|(k, _)| k.to_string() == c.key));
        reports.extend(
            new.into_iter()
                .map(|c| Report::PersistedConflict(persisted(c))),
        );
        reports.extend(
            gone.into_iter()
                .map(|c| Report::PersistedConflictGone(persisted(c))),
        );
        for r in reports {
            if reporter.send(r).await.is_err() {
                return;
            }
        }
    }
}

fn guards_of(snapshot: &Snapshot) -> Vec<(SysctlKey, Value)> {
    snapshot
        .guards
        .iter()
        .filter_map(|g| Some((SysctlKey::parse(&g.key).ok()?, Value::new(&g.want))))
        .collect()
}

fn persisted(c: Conflict) -> PersistedConflict {
    let mut source = c.setting.at.to_string();
    if let Some(via) = &c.setting.at.via {
        source.push_str(&format!(" (via {via})"));
    }
    PersistedConflict {
        key: SysctlKey::parse(&c.key).unwrap_or_else(|_| unreachable!("a guarded key")),
        want: Value::new(&c.want),
        value: c.setting.value,
        source,
        appliers: c.appliers.iter().map(|a| a.name().to_owned()).collect(),
    }
}

/// The hazards other than persisted values (the initscripts network service, Docker,
/// networkd, NetworkManager), read in a blocking thread.
async fn other_hazards(root: Root, guards: Vec<(SysctlKey, Value)>) -> Vec<Report> {
    let found = tokio::task::spawn_blocking(move || {
        let inputs = crate::persist::inputs::gather(&root);
        crate::diagnosis::diagnose(&inputs, &guards, "", Vec::new()).hazards
    })
    .await
    .unwrap_or_default();
    found
        .into_iter()
        .filter(|h| h.kind != crate::diagnosis::Kind::Persisted)
        .map(|h| Report::Hazard {
            source: h.evidence,
            hazard: h.what,
            fix: h.fix,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_file_is_seen() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("etc")).expect("mkdir");
        let (tx, mut rx) = mpsc::channel(4);
        tokio::spawn(watch(Root::new(d.path()), tx));
        let first = rx.recv().await.expect("first reading");
        assert!(first.tree.dirs.is_empty());
        // /etc/sysctl.d appears, then a file in it.
        std::fs::create_dir_all(d.path().join("etc/sysctl.d")).expect("mkdir");
        let _ = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        std::fs::write(
            d.path().join("etc/sysctl.d/50-x.conf"),
            "net.ipv4.ip_forward=0\n",
        )
        .expect("write");
        let mut found = false;
        for _ in 0..5 {
            let p = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a reading after the change")
                .expect("running");
            if p.tree
                .dirs
                .get("/etc/sysctl.d")
                .is_some_and(|d| d.contains_key("50-x.conf"))
            {
                found = true;
                break;
            }
        }
        assert!(found);
    }
}
