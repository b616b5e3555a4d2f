//! inotify on `/proc/sys` files, for keys the kernel sends no netconf event for.
//!
//! A watch on a sysctl file fires only for writes through that very file
//! (docs/kernel-and-systemd-facts.md#inotify-exact-path): `sysctl -w`
//! and `echo > /proc/sys/...` are seen within microseconds, a change made any other way (a
//! module reload resetting it, a netlink request) only by the timed re-read.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use inotify::{Inotify, WatchDescriptor, WatchMask};

use crate::routing::GuardId;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Whether a watch on `path` can be added (for `fwdguard check`).
pub fn can_watch(path: &Path) -> io::Result<()> {
    Inotify::init()?
        .watches()
        .add(path, WatchMask::MODIFY)
        .map(drop)
}

/// An inotify error as operators can act on it.
pub fn describe(e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        format!("{e}: the inotify watch limit is reached (fs.inotify.max_user_watches)")
    } else {
        e.to_string()
    }
}

/// The inotify watches, and which guards each one stands for.
#[derive(Debug)]
pub struct FileWatch {
    inotify: AsyncFd<Inotify>,
    guards: HashMap<WatchDescriptor, Vec<GuardId>>,
    buf: Vec<u8>,
}

impl FileWatch {
    pub fn new() -> io::Result<Self> {
        // `Inotify::init` opens the descriptor non-blocking, as AsyncFd needs.
        let inotify = Inotify::init()?;
        // SAFETY: `Inotify` owns its descriptor: it stays open, and `as_raw_fd` returns the same
        // one, until the `Inotify` is dropped, which only happens with the `AsyncFd`.
        #[allow(unsafe_code)]
        let inotify = unsafe { AsyncFd::register_with_interest(inotify, Interest::READABLE) }?;
        Ok(Self {
            inotify,
            guards: HashMap::new(),
            buf: vec![0; 4096],
        })
    }

    /// Watches `path` for writes on behalf of `guard`. Watching the same file
    /// again is harmless: inotify hands back the same descriptor. A file that was removed and
    /// created again (an interface that went and came back) gets a new one.
    pub fn watch(&mut self, guard: GuardId, path: &Path) -> io::Result<()> {
        let wd = self
            .inotify
            .get_mut()
            .watches()
            .add(path, WatchMask::MODIFY)?;
        let guards = self.guards.entry(wd).or_default();
        if !guards.contains(&guard) {
            guards.push(guard);
        }
        Ok(())
    }

    /// Drops every watch, before a reload puts the new configuration's in place.
    pub fn clear(&mut self) {
        let mut watches = self.inotify.get_ref().watches();
        for (wd, _) in self.guards.drain() {
            // The file may be gone already (its interface was removed): nothing left to undo.
            let _ = watches.remove(wd);
        }
    }

    /// Waits for writes; appends the guards whose files were written.
    pub async fn next(&mut self, out: &mut Vec<GuardId>) -> io::Result<()> {
        loop {
            let mut ready = self.inotify.readable_mut().await?;
            match ready.try_io(|fd| fd.get_mut().read_events(&mut self.buf)) {
                Ok(Ok(events)) => {
                    for event in events {
                        if let Some(guards) = self.guards.get(&event.wd) {
                            out.extend(guards);
                        }
                    }
                    return Ok(());
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}
