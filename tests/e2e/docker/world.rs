//! A world of its own for each test: the "internet" and the "Docker host" namespaces, a private
//! dockerd, and fwdguard, all under one PID namespace whose init is `world.sh init`. The shell
//! side lives in `world.sh` (shared with `examples/docker-incident.sh`); this side drives it
//! through `nsenter`, and tears everything down when dropped, printing dockerd's log and
//! fwdguard's output if the test failed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Daemon, forwarding_config};

const WORLD_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/docker/world.sh");
pub const IMAGE: &str = "busybox:e2e";
pub const URL: &str = "http://198.51.100.1/file";
/// The host's knobs, which must read the same after the test as before.
const HOST_KNOBS: [&str; 3] = [
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/ipv4/conf/all/forwarding",
    "/proc/sys/net/ipv6/conf/all/forwarding",
];
/// What the world needs from the machine (`.ci/run` installs it).
const TOOLS: [&str; 7] = [
    "/usr/sbin/dockerd",
    "/usr/bin/docker",
    "/bin/busybox",
    "/usr/bin/unshare",
    "/usr/bin/nsenter",
    "/usr/bin/python3",
    "/usr/sbin/ip",
];

pub struct World {
    test: &'static str,
    /// `unshare`, whose child is the world's init.
    holder: Child,
    /// Closing it tells the init to tear the world down.
    holder_stdin: Option<ChildStdin>,
    /// The host's PID of the world's init.
    init: String,
    pub dir: tempfile::TempDir,
    tag: String,
    /// The host's network namespace, `net:[INODE]`.
    host_netns: String,
    host_knobs: String,
    guards: Vec<Daemon>,
}

fn host_knobs() -> String {
    HOST_KNOBS
        .iter()
        .map(|k| std::fs::read_to_string(k).unwrap_or_else(|e| format!("{k}: {e}\n")))
        .collect()
}

fn netns_of(pid: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .unwrap_or_else(|e| panic!("network namespace of {pid}: {e}"))
        .display()
        .to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The first child of `pid`, once it has one.
fn first_child(pid: u32, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(child) = children.split_whitespace().next() {
            return child.to_owned();
        }
        assert!(start.elapsed() < timeout, "{pid} started no child");
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl World {
    /// Builds the world, without dockerd. `None` (with a visible SKIPPED line) when not root or
    /// Docker is not installed, except under `CI=true`, where that fails the test.
    pub fn start(test: &'static str) -> Option<Self> {
        let root = nix::unistd::Uid::effective().is_root();
        if !fwdguard::sandbox::require(test, root, "root (it makes private namespaces)") {
            return None;
        }
        let missing: Vec<_> = TOOLS.iter().filter(|t| !Path::new(t).exists()).collect();
        let need = format!(
            "{missing:?} (Debian: docker.io, busybox-static, python3, iproute2, util-linux)"
        );
        if !fwdguard::sandbox::require(test, missing.is_empty(), &need) {
            return None;
        }
        let host_knobs = host_knobs();
        let host_netns = netns_of("self");
        let dir = tempfile::Builder::new()
            .prefix("fwdguard-e2e.")
            .tempdir()
            .expect("tempdir");
        let suffix = dir.path().extension().expect("suffix").to_string_lossy();
        let tag = format!("fwdguard-e2e-{suffix}");
        let log = std::fs::File::create(dir.path().join("world.log")).expect("world.log");
        let mut holder = Command::new("unshare")
            .args(["--net", "--mount", "--pid", "--fork", "--mount-proc"])
            .args(["--propagation", "private", "--", "bash", WORLD_SH, "init"])
            .arg(dir.path())
            .args([&tag, &host_netns])
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn unshare (util-linux)");
        let init = first_child(holder.id(), Duration::from_secs(5));
        let holder_stdin = holder.stdin.take();
        let mut world = Self {
            test,
            holder,
            holder_stdin,
            init,
            dir,
            tag,
            host_netns,
            host_knobs,
            guards: Vec::new(),
        };
        // Before anything in it may write a sysctl: the world is not the host's namespace.
        let world_netns = netns_of(&world.init);
        assert_ne!(
            world_netns, world.host_netns,
            "the world is in the host's network namespace"
        );
        let start = Instant::now();
        while !world.path("ready").exists() {
            if let Ok(Some(status)) = world.holder.try_wait() {
                panic!("the world's init exited ({status}) before it was ready");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the world was not ready within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(world)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A command run inside the world: its network, mount and PID namespaces.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.init, "-n", "-m", "-p", "--", program]);
        cmd
    }

    fn world_sh(&self, args: &[&str]) -> Output {
        let out = self
            .command("bash")
            .arg(WORLD_SH)
            .args(args)
            .output()
            .expect("nsenter (util-linux)");
        assert!(
            out.status.success(),
            "world.sh {args:?}: {}\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    fn dir_str(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// Starts dockerd with `flags` and waits until it answers (the image is imported once).
    pub fn dockerd(&self, flags: &[&str]) {
        let dir = self.dir_str();
        self.world_sh(&[&["dockerd", dir.as_str()], flags].concat());
    }

    pub fn dockerd_stop(&self) {
        self.world_sh(&["dockerd-stop", &self.dir_str()]);
    }

    /// What `network stop` does to forwarding: `sysctl -w net.ipv4.ip_forward=0`, in the world
    /// (world.sh proves first that it is not in the host's network namespace).
    pub fn network_stop(&self) {
        self.world_sh(&["network-stop", &self.host_netns]);
    }

    /// `count` restarts of `network.service` in the world, 0.5 s each, on a host whose sysctl
    /// drop-in says `net.ipv4.ip_forward = 0`: stop writes 0, start 200 ms later writes it again.
    pub fn network_restarts(&self, count: u32) {
        let dir = self.dir_str();
        self.world_sh(&[
            "network-restarts",
            &dir,
            &self.host_netns,
            &count.to_string(),
        ]);
    }

    /// Writes of 0 to `net.ipv4.ip_forward` in the world for `seconds`, as fast as a shell
    /// can, from inside `cgroup` (after the same proof). Returns how many.
    pub fn storm(&self, cgroup: &Path, seconds: u32) -> u64 {
        let cgroup = cgroup.display().to_string();
        let out = self.world_sh(&["storm", &self.host_netns, &cgroup, &seconds.to_string()]);
        text(&out.stdout).trim().parse().expect("a count of writes")
    }

    /// Reads `net.ipv4.conf.all.forwarding` in the world, from a thread moved into its network
    /// namespace, as fast as it can until the watch is stopped.
    pub fn watch_forwarding(&self) -> Watch {
        let netns = std::fs::File::open(format!("/proc/{}/ns/net", self.init)).expect("netns");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let knob = std::fs::File::open("/proc/sys/net/ipv4/conf/all/forwarding").expect("open");
            let (mut reads, mut zeros, mut buf) = (0u64, 0u64, [0u8; 8]);
            while !stopped.load(Ordering::Relaxed) {
                let n = knob.read_at(&mut buf, 0).expect("read");
                reads += 1;
                zeros += u64::from(buf[..n].starts_with(b"0"));
            }
            (reads, zeros)
        });
        Watch { stop, thread }
    }

    /// `sysctl -w KEY=VALUE` in the world, after the same proof.
    pub fn sysctl(&self, assignment: &str) {
        self.world_sh(&["sysctl", &self.host_netns, assignment]);
    }

    /// `net.ipv4.conf.all.forwarding` as the world sees it.
    pub fn forwarding(&self) -> String {
        let out = self
            .command("cat")
            .arg("/proc/sys/net/ipv4/conf/all/forwarding")
            .output()
            .expect("nsenter");
        text(&out.stdout).trim().to_owned()
    }

    /// The Debian client that came with this dockerd (not another `docker` in PATH), on the
    /// world's socket, with the classic builder.
    pub fn docker_command(&self) -> Command {
        let mut cmd = self.command("/usr/bin/docker");
        cmd.arg("-H")
            .arg(format!("unix://{}", self.path("docker.sock").display()))
            .env("DOCKER_CONFIG", self.path("client"))
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null());
        cmd
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_command().args(args).output().expect("docker")
    }

    /// `docker run --init --rm --pull never IMAGE sh -c SCRIPT`.
    pub fn run(&self, image: &str, script: &str) -> Output {
        self.docker(&[
            "run", "--init", "--rm", "--pull", "never", image, "sh", "-c", script,
        ])
    }

    /// `docker build -t TAG` of a Dockerfile `FROM busybox:e2e` plus `step`.
    pub fn build(&self, tag: &str, step: &str) -> Output {
        let context = self.path(&format!("build-{tag}"));
        std::fs::create_dir_all(&context).expect("context");
        std::fs::write(
            context.join("Dockerfile"),
            format!("FROM {IMAGE}\n{step}\n"),
        )
        .expect("Dockerfile");
        let context = context.display().to_string();
        self.docker(&["build", "-t", tag, &context])
    }

    /// What the http server in the "internet" serves.
    pub fn payload(&self) -> String {
        std::fs::read_to_string(self.path("www/file")).expect("payload")
    }

    /// `fwdguard run -c FILE` in the world with `action` on `net.ipv4.conf.all.forwarding`,
    /// once it has told its service manager it is ready.
    pub fn fwdguard(&mut self, action: &str) {
        self.start_fwdguard(action, "", |_| {});
    }

    /// [`World::fwdguard`] with more configuration after the guard (a `[[webhook]]`).
    pub fn fwdguard_with(&mut self, action: &str, more: &str) {
        self.start_fwdguard(action, more, |_| {});
    }

    /// Runs `f` on a thread in the world's network namespace: a socket it makes (a webhook
    /// receiver's listener) lives there, where fwdguard can reach it on 127.0.0.1.
    pub fn in_netns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = std::fs::File::open(format!("/proc/{}/ns/net", self.init)).expect("world netns");
        std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread in the world's netns")
    }

    /// `fwdguard run` with `action`, its BPF hook attached to `cgroup` (not the root).
    pub fn fwdguard_attached(&mut self, action: &str, cgroup: &Path) {
        self.start_fwdguard(action, "", |cmd| {
            cmd.env(fwdguard::bpf::ATTACH_ENV, cgroup);
        });
    }

    fn start_fwdguard(&mut self, action: &str, more: &str, adjust: impl FnOnce(&mut Command)) {
        let wrapper = ["nsenter", "-t", &self.init, "-n", "-m", "-p", "--"];
        let config = forwarding_config(action) + more;
        let d = Daemon::start_under(&wrapper, &config, |cmd, _| adjust(cmd));
        self.guards.push(d);
        let d = self.guards.last_mut().expect("just pushed");
        d.wait_notify("READY=1", Duration::from_secs(5));
    }

    /// The fwdguard started last.
    pub fn guard(&self) -> &Daemon {
        self.guards.last().expect("fwdguard was started")
    }

    fn dump_logs(&self) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "\n===== {}: the world's log", self.test);
        let _ = err.write_all(&std::fs::read(self.path("world.log")).unwrap_or_default());
        let _ = writeln!(err, "===== dockerd's log");
        let _ = err.write_all(&std::fs::read(self.path("dockerd.log")).unwrap_or_default());
        for (i, d) in self.guards.iter().enumerate() {
            let _ = writeln!(err, "===== fwdguard #{}'s stderr\n{}", i + 1, d.stderr());
        }
        let _ = writeln!(err, "=====");
    }

    /// Cgroup directories named after this world that are still there.
    fn leftover_cgroups(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, tag: &str, found: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                if !is_dir {
                    continue;
                }
                if entry.file_name() == tag {
                    found.push(entry.path());
                } else {
                    walk(&entry.path(), tag, found);
                }
            }
        }
        let mut found = Vec::new();
        walk(Path::new("/sys/fs/cgroup"), &self.tag, &mut found);
        found
    }
}

/// A reader of the world's forwarding knob.
pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl Watch {
    /// Stops it: (reads, reads that saw 0).
    pub fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the watch")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            self.dump_logs();
        }
        // EOF on its stdin: the init stops dockerd, the http server and the rest, removes the
        // cgroups, and exits; the kernel then kills whatever is left in its PID namespace.
        drop(self.holder_stdin.take());
        let start = Instant::now();
        while matches!(self.holder.try_wait(), Ok(None))
            && start.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.holder.try_wait(), Ok(None)) {
            let pid = nix::unistd::Pid::from_raw(self.init.parse().unwrap_or(0));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = self.holder.wait();
        }
        self.guards.clear();
        let leftovers = self.leftover_cgroups();
        for dir in &leftovers {
            let _ = Command::new("find")
                .arg(dir)
                .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", "+"])
                .status();
        }
        let knobs = host_knobs();
        if !failed {
            assert!(
                leftovers.is_empty(),
                "{}: the world's teardown left cgroups behind: {leftovers:?}",
                self.test
            );
            assert_eq!(
                self.host_knobs, knobs,
                "{}: the host's forwarding knobs changed",
                self.test
            );
        }
    }
}
