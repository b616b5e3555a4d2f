//! Private network namespaces for `fwdguard demo`, the benchmark and the tests: every sysctl
//! they write lands in a namespace of their own, and each proves it before writing.

use std::io;
use std::os::unix::fs::MetadataExt;

use nix::sched::{CloneFlags, unshare};
use nix::unistd::{Gid, Uid};

/// The network namespace of the calling thread, as its inode number (`net:[INODE]`).
///
/// `thread-self`, not `self`: a network namespace belongs to a thread, and `/proc/sys/net`
/// resolves through the calling thread's.
pub fn current_netns() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// Why no private namespace could be made.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot read the current network namespace: {0}")]
    Inspect(#[source] io::Error),
    #[error(
        "cannot create a private network namespace ({0}); run as root, or enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)"
    )]
    Unshare(#[source] nix::Error),
    #[error("cannot map our user into the new user namespace: {0}")]
    IdMap(#[source] io::Error),
    #[error("still in the host's network namespace net:[{0}] after unshare; refusing to go on")]
    NotPrivate(u64),
}

/// Proof that the calling thread is in a network namespace other than the one it started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivateNetns {
    pub host: u64,
    pub private: u64,
}

impl PrivateNetns {
    /// Checks, right now, that the calling thread is in this private namespace. Call it before
    /// writing a sysctl from a thread that might not be.
    pub fn verify(&self) -> Result<(), SandboxError> {
        let now = current_netns().map_err(SandboxError::Inspect)?;
        if now == self.private && now != self.host {
            Ok(())
        } else {
            Err(SandboxError::NotPrivate(now))
        }
    }

    /// Moves the calling thread (root only) into a new network namespace. Threads started from
    /// it, and processes it spawns, are in it too; other threads are not.
    pub fn enter_thread() -> Result<Self, SandboxError> {
        Self::enter(CloneFlags::CLONE_NEWNET)
    }

    /// Moves the whole process into a new network namespace. The process must not have started
    /// any thread yet. Without root it creates a user namespace too, mapping our user to root
    /// inside, which owns the new network namespace and may write its sysctls.
    pub fn enter_process() -> Result<Self, SandboxError> {
        if Uid::effective().is_root() {
            return Self::enter(CloneFlags::CLONE_NEWNET);
        }
        let (uid, gid) = (Uid::effective(), Gid::effective());
        let this = Self::enter(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET)?;
        let map = |file: &str, text: String| std::fs::write(format!("/proc/self/{file}"), text);
        map("setgroups", "deny".into())
            .and_then(|()| map("uid_map", format!("0 {uid} 1")))
            .and_then(|()| map("gid_map", format!("0 {gid} 1")))
            .map_err(SandboxError::IdMap)?;
        Ok(this)
    }

    /// Writes a sysctl file (`/proc/sys/...`), after proving that the calling thread is in this
    /// private namespace.
    pub fn write(&self, path: &str, value: &str) -> io::Result<()> {
        self.verify().map_err(io::Error::other)?;
        std::fs::write(path, format!("{value}\n"))
            .map_err(|e| io::Error::new(e.kind(), format!("write {path}: {e}")))
    }

    /// A command to run in this namespace: it must be spawned from the calling thread.
    pub fn command(&self, program: &str) -> io::Result<std::process::Command> {
        self.verify().map_err(io::Error::other)?;
        Ok(std::process::Command::new(program))
    }

    fn enter(flags: CloneFlags) -> Result<Self, SandboxError> {
        let host = current_netns().map_err(SandboxError::Inspect)?;
        unshare(flags).map_err(SandboxError::Unshare)?;
        let private = current_netns().map_err(SandboxError::Inspect)?;
        let this = Self { host, private };
        if private == host {
            return Err(SandboxError::NotPrivate(host));
        }
        Ok(this)
    }
}

/// For tests (feature `test-kit`): the command line that runs the shell `script` in a
/// mount namespace of its own, whose mounts do not propagate back (`unshare --mount`, root
/// only); `arg0` is the script's `$0`, and arguments added after it are its `$@`.
#[cfg(any(test, feature = "test-kit"))]
pub fn in_private_mounts<'a>(script: &'a str, arg0: &'a str) -> [&'a str; 9] {
    [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        arg0,
    ]
}

/// For tests that need something this machine may not have (root, a tool): `true` when
/// `available`. Otherwise the test fails when `CI=true`, and elsewhere it is skipped with a
/// visible `SKIPPED` line naming what it needs. (Feature `test-kit`.)
#[cfg(any(test, feature = "test-kit"))]
#[track_caller]
pub fn require(test: &str, available: bool, need: &str) -> bool {
    if available {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs {need}; CI must provide it"
    );
    // Straight to the descriptor: the test harness captures eprintln! of passing tests.
    use std::io::Write as _;
    let _ = writeln!(io::stderr(), "SKIPPED {test}: needs {need}");
    false
}

/// For tests (feature `test-kit`): runs `body` on a new thread moved into a new network namespace, and checks
/// afterwards that the host's `ip_forward` did not change. Needs root: without it the test
/// fails when `CI=true`, and elsewhere is skipped with a visible `SKIPPED` line (`None`).
#[cfg(any(test, feature = "test-kit"))]
pub fn in_private_netns<R: Send + 'static>(
    test: &str,
    body: impl FnOnce(&PrivateNetns) -> R + Send + 'static,
) -> Option<R> {
    const HOST_KNOB: &str = "/proc/sys/net/ipv4/ip_forward";
    if !require(
        test,
        Uid::effective().is_root(),
        "root (it makes a private network namespace)",
    ) {
        return None;
    }
    let host_before = std::fs::read_to_string(HOST_KNOB).expect("read the host's ip_forward");
    let result = std::thread::spawn(move || {
        let ns = PrivateNetns::enter_thread().expect("a private network namespace");
        body(&ns)
    })
    .join();
    let host_after = std::fs::read_to_string(HOST_KNOB).expect("read the host's ip_forward");
    assert_eq!(
        host_before, host_after,
        "the host's ip_forward changed during {test}"
    );
    match result {
        Ok(r) => Some(r),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
