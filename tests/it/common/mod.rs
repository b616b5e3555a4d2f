//! Shared test harness: the real binary under a fake service manager. Tests that write sysctls
//! run inside `in_private_netns` (`fwdguard::sandbox::in_private_netns`, module by module), and
//! write only through `PrivateNetns::write`, which proves first that the thread is not in the
//! host's namespace.

pub mod bus;
pub mod prometheus;
pub mod receiver;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fwdguard::sandbox::PrivateNetns;

pub const BIN: &str = env!("CARGO_BIN_EXE_fwdguard");
pub const ALL_FORWARDING: &str = "/proc/sys/net/ipv4/conf/all/forwarding";
pub const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
pub const SECOND: Duration = Duration::from_secs(1);

/// One guard of forwarding, as the first table of a configuration file (webhooks follow).
pub const ONE_GUARD: &str = "[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = 1\n\n";

pub fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
        .trim()
        .to_owned()
}

/// Polls `cond` until it holds; panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    start.elapsed()
}

/// Whose turn it is to run tests in private namespaces: a module, and how many of its tests
/// are running.
static TURN: Mutex<(String, usize)> = Mutex::new((String::new(), 0));
static TURN_CHANGED: Condvar = Condvar::new();

/// A module's turn, held for one test; see `in_private_netns`. (`false`: a thread that is no
/// test's, which takes no turn.)
pub struct Turn(bool);

/// Waits until no test of another module runs in a private namespace; the test's module is
/// the first part of its thread's name, which the test harness sets to the test's path
/// (`guard::restores_after_...`).
fn module_turn() -> Turn {
    let Some(module) = std::thread::current()
        .name()
        .and_then(|n| n.split_once("::"))
        .map(|(m, _)| m.to_owned())
    else {
        return Turn(false);
    };
    let mut turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
    while turn.1 > 0 && turn.0 != module {
        turn = TURN_CHANGED
            .wait(turn)
            .unwrap_or_else(PoisonError::into_inner);
    }
    turn.0 = module;
    turn.1 += 1;
    Turn(true)
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.0 {
            return;
        }
        let mut turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        turn.1 -= 1;
        if turn.1 == 0 {
            TURN_CHANGED.notify_all();
        }
    }
}

/// `fwdguard::sandbox::in_private_netns`, taking turns by module: the tests of one module run
/// side by side, as they did when each module was a binary of its own, but never beside those
/// of another. Modules write forwarding in their namespaces, hold RTNL doing so (in any
/// namespace a write of forwarding that finds RTNL taken is restarted, and the BPF hook then
/// sees it twice), run storms of writes and time restores: each was written to run with only
/// its own kind.
pub fn in_private_netns<R: Send + 'static>(
    test: &str,
    body: impl FnOnce(&PrivateNetns) -> R + Send + 'static,
) -> Option<R> {
    let _turn = module_turn();
    fwdguard::sandbox::in_private_netns(test, body)
}

/// Waits until forwarding reads 1 again; panics with `what` after `timeout`.
pub fn wait_forwarding_on(what: &str, timeout: Duration) -> Duration {
    wait_for(what, timeout, || read(ALL_FORWARDING) == "1")
}

/// Knocks forwarding to 0 `n` times; each time it must be back at 1 within a second.
pub fn knock_and_wait(ns: &PrivateNetns, n: usize) {
    for i in 0..n {
        ns.write(ALL_FORWARDING, "0").expect("write");
        wait_forwarding_on(&format!("restore {i} of {n}"), SECOND);
    }
}

/// `fwdguard ARGS` on the host, for commands that read no sysctl.
pub fn fwdguard(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run fwdguard")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `fwdguard check -c CONFIG` as the last arguments of `wrapper` (as for
/// `Daemon::start_under`), in the private namespace, with `env` added: exit code and stdout.
pub fn check_under(
    ns: &PrivateNetns,
    wrapper: &[&str],
    config: &Path,
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let line: Vec<&str> = wrapper.iter().copied().chain([BIN]).collect();
    let out = ns
        .command(line[0])
        .expect("private")
        .args(&line[1..])
        .args(["check", "-c"])
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .expect("fwdguard check");
    (out.status.code(), stdout(&out))
}

/// `ip ARGS` (iproute2) in the private namespace; it must succeed. Returns its stdout.
pub fn ip(ns: &PrivateNetns, args: &[&str]) -> String {
    let out = ns
        .command("ip")
        .expect("private")
        .args(args)
        .output()
        .expect("ip (iproute2) is installed");
    assert!(out.status.success(), "ip {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// The path of `program` if it is installed. If not, a test that needs it fails under
/// `CI=true` (`.ci/run` installs it) and elsewhere says `SKIPPED`.
pub fn tool(test: &str, program: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    });
    let need = format!("{program} (Debian package {package})");
    fwdguard::sandbox::require(test, found.is_some(), &need);
    found
}

/// Writes `text` as `fwdguard.toml` in `dir`; returns its path.
pub fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("fwdguard.toml");
    std::fs::write(&path, text).expect("config");
    path
}

/// `fwdguard run` with a config of the test's, a notify socket of its own and stderr in a file.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    notify: UnixDatagram,
    /// Every notify datagram received so far, in order.
    pub notes: Vec<String>,
    /// The cgroup the daemon's BPF hook attaches to (as root): tests never let it attach to
    /// a cgroup they did not create, such as the root. Removed after the daemon is gone.
    _cgroup: Option<TestCgroup>,
}

impl Daemon {
    pub fn start(config: &str) -> Self {
        Self::start_with(config, |_, _| {})
    }

    /// Starts the daemon; `adjust` can change its environment, knowing its stderr file.
    pub fn start_with(config: &str, adjust: impl FnOnce(&mut Command, &Path)) -> Self {
        Self::start_under(&[], config, adjust)
    }

    /// Starts the daemon as the last arguments of `wrapper` (e.g. an `unshare` command line).
    pub fn start_under(
        wrapper: &[&str],
        config: &str,
        adjust: impl FnOnce(&mut Command, &Path),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        config_file(dir.path(), config);
        let notify_path = dir.path().join("notify");
        let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let stderr_path = dir.path().join("stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut cmd = match wrapper {
            [program, args @ ..] => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            [] => Command::new(BIN),
        };
        cmd.arg("run")
            .arg("-c")
            .arg(dir.path().join("fwdguard.toml"))
            .env("NOTIFY_SOCKET", &notify_path)
            // Never the host's system bus: a test that wants one starts a private bus and
            // points this at it in `adjust`.
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                format!("unix:path={}/no-system-bus", dir.path().display()),
            )
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let cgroup = nix::unistd::Uid::effective()
            .is_root()
            .then(|| TestCgroup::new("daemon"));
        if let Some(cg) = &cgroup {
            cmd.env(fwdguard::bpf::ATTACH_ENV, &cg.path);
        }
        adjust(&mut cmd, &stderr_path);
        let child = cmd.spawn().expect("spawn fwdguard");
        Self {
            child,
            dir,
            notify,
            notes: Vec::new(),
            _cgroup: cgroup,
        }
    }

    /// Waits until the daemon is ready (`READY=1` within 5 s).
    pub fn ready(mut self) -> Self {
        self.wait_notify("READY=1", 5 * SECOND);
        self
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("fwdguard.toml")
    }

    /// Waits for a notify datagram containing `line` (e.g. "READY=1"); returns it.
    pub fn wait_notify(&mut self, line: &str, timeout: Duration) -> String {
        let start = Instant::now();
        if let Some(n) = self.notes.iter().find(|n| n.lines().any(|l| l == line)) {
            return n.clone();
        }
        let mut buf = vec![0u8; 4096];
        loop {
            assert!(
                start.elapsed() < timeout,
                "no {line} within {timeout:?}; got {:?}\nstderr:\n{}",
                self.notes,
                self.stderr()
            );
            if let Ok(n) = self.notify.recv(&mut buf) {
                let note = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.notes.push(note.clone());
                if note.lines().any(|l| l == line) {
                    return note;
                }
            }
        }
    }

    /// Waits for a notify datagram containing `text` anywhere (e.g. in `STATUS=`).
    pub fn wait_notify_containing(&mut self, text: &str, timeout: Duration) -> String {
        let start = Instant::now();
        let mut buf = vec![0u8; 4096];
        loop {
            if let Some(n) = self.notes.iter().find(|n| n.contains(text)) {
                return n.clone();
            }
            assert!(
                start.elapsed() < timeout,
                "no notification with {text:?} within {timeout:?}; got {:?}",
                self.notes
            );
            if let Ok(n) = self.notify.recv(&mut buf) {
                self.notes
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }

    /// Forgets notify datagrams seen so far, to wait for the next one of a kind.
    pub fn clear_notes(&mut self) {
        self.notes.clear();
    }

    pub fn stderr(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(self.dir.path().join("stderr"))
            .and_then(|mut f| f.read_to_string(&mut s))
            .expect("read stderr");
        s
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_stderr(&self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.stderr().contains(needle) {
            assert!(
                start.elapsed() < timeout,
                "stderr has no {needle:?} after {timeout:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("kill");
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(start.elapsed() < timeout, "still running after {timeout:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config guarding forwarding with `action`, re-reading rarely so tests see events at work.
pub fn forwarding_config(action: &str) -> String {
    format!(
        "reread-interval = \"1h\"\n\n[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = \"1\"\naction = \"{action}\"\n"
    )
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A journal of the test's own: a datagram socket that the daemon finds at
/// `/run/systemd/journal/socket`, in a private mount namespace, with its stderr marked as a
/// journal stream the way systemd marks it (`JOURNAL_STREAM=DEV:INODE`). Reports then go to
/// this socket as native journal entries, as under systemd.
pub struct FakeJournal {
    dir: tempfile::TempDir,
    pub socket: UnixDatagram,
}

impl FakeJournal {
    pub fn bind() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = UnixDatagram::bind(dir.path().join("socket")).expect("bind journal socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        Self { dir, socket }
    }

    /// Where the socket is bound.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    /// Starts `fwdguard run` with `config`, seeing this socket as the system journal. Needs
    /// root (a private mount namespace).
    pub fn start_daemon(&self, config: &str) -> Daemon {
        let mount_script = r#"mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && mount --bind "$0" /run/systemd/journal && exec "$@""#;
        let dir = self.dir.path().to_str().expect("utf-8 path");
        Daemon::start_under(
            &fwdguard::sandbox::in_private_mounts(mount_script, dir),
            config,
            |cmd, stderr| {
                use std::os::linux::fs::MetadataExt;
                // systemd sets JOURNAL_STREAM to the device and inode of the stream it hands
                // the service as stderr; the stderr file stands in for it.
                let meta = std::fs::metadata(stderr).expect("stderr");
                cmd.env(
                    "JOURNAL_STREAM",
                    format!("{}:{}", meta.st_dev(), meta.st_ino()),
                );
            },
        )
    }
}

/// Parses a native-protocol journal datagram: `KEY=value\n`, or
/// `KEY\n<u64 LE length><value>\n`.
pub fn journal_fields(mut datagram: &[u8]) -> std::collections::HashMap<String, String> {
    let mut fields = std::collections::HashMap::new();
    while let Some(end) = datagram.iter().position(|b| *b == b'=' || *b == b'\n') {
        let name = String::from_utf8_lossy(&datagram[..end]).into_owned();
        let value;
        if datagram[end] == b'=' {
            let rest = &datagram[end + 1..];
            let stop = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
            value = &rest[..stop];
            datagram = rest.get(stop + 1..).unwrap_or_default();
        } else {
            let rest = &datagram[end + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().expect("length")) as usize;
            value = &rest[8..8 + len];
            datagram = rest.get(8 + len + 1..).unwrap_or_default();
        }
        fields.insert(name, String::from_utf8_lossy(value).into_owned());
    }
    fields
}

/// A field of `/proc/PID/status` in kB (`VmRSS:`, `VmHWM:`).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A cgroup v2 child the test creates (and removes): the only kind of cgroup a test may attach
/// a BPF program to.
pub struct TestCgroup {
    /// Absolute path of the directory.
    pub path: PathBuf,
    /// Path relative to the cgroup2 root, `/fwdguard-test-...`.
    pub relative: String,
}

impl TestCgroup {
    /// A new cgroup named after the process, a number of its own and `tag`.
    pub fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let root = fwdguard::bpf::cgroup::cgroup2_mount_point(&mountinfo)
            .expect("cgroup2 is mounted (hybrid: /sys/fs/cgroup/unified)");
        let name = format!(
            "fwdguard-test-{}-{}-{tag}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        let path = root.join(&name);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self {
            path,
            relative: format!("/{name}"),
        }
    }

    /// Runs `sh -c SCRIPT sh ARGS...` inside this cgroup (it joins first, then runs the
    /// script) and in the calling thread's network namespace, which must be `ns`.
    /// Returns (pid, exit code, stdout trimmed, stderr).
    pub fn sh(&self, ns: &PrivateNetns, script: &str, args: &[&str]) -> (u32, i32, String, String) {
        let child = ns
            .command("sh")
            .expect("still in the private namespace")
            .arg("-c")
            .arg(format!(
                "echo 0 > {}/cgroup.procs && {script}",
                self.path.display()
            ))
            .arg("sh")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let pid = child.id();
        let out = child.wait_with_output().expect("sh output");
        (
            pid,
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Its processes have exited or are exiting; rmdir fails (EBUSY) until they are gone.
        let start = Instant::now();
        while std::fs::remove_dir(&self.path).is_err() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
