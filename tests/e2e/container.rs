//! A Debian 12 system booted with systemd-nspawn: its own systemd as PID 1, its own network
//! namespace (`--private-network`, so every sysctl written inside is the container's), and a
//! root file system that survives reboots: an overlay of a shared, cached debootstrap tree
//! (lower) and a directory of the test's own (upper).
//!
//! Recipe (docs/kernel-and-systemd-facts.md#nspawn-recipe): `--register=no --keep-unit
//! --console=passive --boot` inside `unshare --mount --propagation private` with a tmpfs on
//! `/run/systemd/nspawn`, each container in a cgroup of its own.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Packages the container needs beyond minbase: systemd as init, D-Bus for systemctl, sysctl(8)
/// and ip(8).
const INCLUDE: &str = "systemd,systemd-sysv,dbus,procps,iproute2";
const SUITE: &str = "bookworm";

/// Where the debootstrap tarball and its unpacked tree are kept between runs.
fn cache_dir() -> PathBuf {
    match std::env::var_os("FWDGUARD_E2E_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .join("e2e-cache"),
    }
}

/// Runs a host command to completion; panics with its output if it fails.
pub fn host(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    stdout_of_success(&format!("{cmd:?}"), &out)
}

/// What `what` printed on stdout; it must have succeeded, or the panic shows all it printed.
fn stdout_of_success(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Debian mirror apt already uses on this host, so debootstrap needs no other network.
fn mirror() -> String {
    let mut sources = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        more.sort();
        sources.extend(more);
    }
    for path in sources {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        // deb822 (`URIs: ...` with `Suites: bookworm ...`) or one-line (`deb URI bookworm ...`).
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(str::trim))
                    .unwrap_or("")
            };
            if field("Suites:").split_whitespace().any(|s| s == SUITE)
                && field("Types:").split_whitespace().any(|t| t == "deb")
                && let Some(uri) = field("URIs:").split_whitespace().next()
            {
                return uri.to_owned();
            }
        }
        for line in text.lines() {
            let words: Vec<_> = line.split_whitespace().collect();
            if let ["deb", uri, suite, ..] = words.as_slice()
                && *suite == SUITE
                && !uri.starts_with('[')
            {
                return (*uri).to_owned();
            }
        }
    }
    "http://deb.debian.org/debian".to_owned()
}

/// The unpacked root file system all containers share read-only (the overlay's lower layer).
/// Made once with debootstrap (about a minute, more on a busy machine) and cached as a tarball.
pub fn rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let cache = cache_dir();
        std::fs::create_dir_all(&cache).expect("cache dir");
        let tarball = cache.join(format!("debian-{SUITE}-minbase.tar"));
        if !tarball.exists() {
            let tmp = cache.join("debootstrap.tmp");
            let _ = std::fs::remove_dir_all(&tmp);
            let mirror = mirror();
            eprintln!(
                "e2e: debootstrap {SUITE} from {mirror} into {}",
                tmp.display()
            );
            host(Command::new("debootstrap").args([
                "--variant=minbase",
                &format!("--include={INCLUDE}"),
                SUITE,
                tmp.to_str().expect("utf-8 path"),
                &mirror,
            ]));
            let partial = tarball.with_extension("tar.partial");
            host(
                Command::new("tar")
                    .arg("-C")
                    .arg(&tmp)
                    .arg("-cf")
                    .arg(&partial)
                    .arg("."),
            );
            std::fs::rename(&partial, &tarball).expect("rename tarball");
            std::fs::remove_dir_all(&tmp).expect("remove debootstrap tree");
        }
        let tree = cache.join(format!("debian-{SUITE}-minbase"));
        let stamp = tree.join(".unpacked");
        if !stamp.exists() {
            let _ = std::fs::remove_dir_all(&tree);
            std::fs::create_dir_all(&tree).expect("tree dir");
            host(
                Command::new("tar")
                    .arg("-C")
                    .arg(&tree)
                    .arg("-xf")
                    .arg(&tarball),
            );
            std::fs::write(&stamp, "").expect("stamp");
        }
        tree
    })
}

/// A booted container. Dropping it shuts it down and removes its files and cgroups; when the
/// test is failing, it first prints the container's journal.
pub struct Container {
    pub name: String,
    /// Extra `systemd-nspawn` arguments, kept for reboots.
    nspawn_args: Vec<String>,
    dir: tempfile::TempDir,
    nspawn: Option<Child>,
    pid1: u32,
}

impl Container {
    /// Boots a fresh container, with extra `systemd-nspawn` arguments (`--capability=...`),
    /// and waits for it to finish booting.
    pub fn boot(name: &str, nspawn_args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("e2e-{name}-"))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("tempdir");
        for sub in ["upper", "work", "merged"] {
            std::fs::create_dir(dir.path().join(sub)).expect("overlay dir");
        }
        let mut c = Self {
            name: format!("fwdguard-e2e-{name}-{}", std::process::id()),
            nspawn_args: nspawn_args.iter().map(|a| a.to_string()).collect(),
            dir,
            nspawn: None,
            pid1: 0,
        };
        c.start();
        c
    }

    fn start(&mut self) {
        let d = self.dir.path();
        let script = r#"
            set -e
            name=$1 lower=$2 dir=$3
            shift 3
            mkdir -p /run/systemd/nspawn
            mount -t tmpfs tmpfs /run/systemd/nspawn
            mount -t overlay overlay -o "lowerdir=$lower,upperdir=$dir/upper,workdir=$dir/work" "$dir/merged"
            # A cgroup of its own in each hierarchy systemd uses, or parallel containers collide
            # (and fwdguard's BPF hook inside must attach to a cgroup this test made).
            for h in systemd unified .; do
                if [ "$h" = . ] && [ ! -e /sys/fs/cgroup/cgroup.controllers ]; then continue; fi
                if [ -d "/sys/fs/cgroup/$h" ]; then
                    mkdir -p "/sys/fs/cgroup/$h/$name"
                    echo $$ >"/sys/fs/cgroup/$h/$name/cgroup.procs"
                fi
            done
            exec systemd-nspawn --quiet -D "$dir/merged" -M "$name" --private-network \
                --register=no --keep-unit --console=passive --boot "$@"
        "#;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("nspawn.log"))
            .expect("nspawn log");
        let [unshare, args @ ..] = fwdguard::sandbox::in_private_mounts(script, "sh");
        let child = Command::new(unshare)
            .args(args)
            .arg(&self.name)
            .arg(rootfs())
            .arg(d)
            .args(&self.nspawn_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn systemd-nspawn");
        let nspawn = child.id();
        self.nspawn = Some(child);
        let start = Instant::now();
        self.pid1 = loop {
            let out = Command::new("pgrep")
                .args(["-P", &nspawn.to_string(), "-x", "systemd"])
                .output()
                .expect("pgrep");
            if let Some(pid) = String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.trim().parse().ok())
            {
                break pid;
            }
            if let Some(status) = self
                .nspawn
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("systemd-nspawn exited ({status}):\n{}", self.nspawn_log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no systemd in the container after 30 s:\n{}",
                self.nspawn_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.prove_private_network();
        // "degraded" is fine: some units do not apply in a container. Until systemd listens on
        // its bus, systemctl prints nothing or "offline".
        let state = loop {
            let out = self.sh("systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !state.is_empty() && state != "offline" {
                break state;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "systemd in the container does not answer: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            state == "running" || state == "degraded",
            "container did not boot: {state}\n{}",
            self.text("systemctl --failed --no-legend")
        );
    }

    /// Every sysctl the tests write goes through `sh`, into the container's network namespace:
    /// prove once per boot that it is not the host's.
    fn prove_private_network(&self) {
        let ours = std::fs::read_link("/proc/thread-self/ns/net").expect("our netns");
        let theirs = std::fs::read_link(format!("/proc/{}/ns/net", self.pid1)).expect("its netns");
        assert_ne!(
            ours, theirs,
            "the container shares the host's network namespace; refusing to go on"
        );
    }

    /// Runs a shell script inside the container (all its namespaces, as root, clean environment).
    pub fn sh(&self, script: &str) -> Output {
        self.sh_with_input(script, &[])
    }

    pub fn sh_with_input(&self, script: &str, input: &[u8]) -> Output {
        let mut child = self
            .nsenter(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nsenter");
        // An error here means the script ended without reading its input; its output says why.
        let _ = child.stdin.take().expect("stdin").write_all(input);
        child.wait_with_output().expect("nsenter output")
    }

    /// Starts a shell script inside the container and returns at once; its output is read from
    /// the child.
    pub fn spawn(&self, script: &str) -> Child {
        self.nsenter(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nsenter")
    }

    /// `/bin/sh -c script` in all the container's namespaces, as root, in a clean environment.
    fn nsenter(&self, script: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args([
            "-t",
            &self.pid1.to_string(),
            "-a",
            "--",
            "/bin/sh",
            "-c",
            script,
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .env("SYSTEMD_PAGER", "")
        .env("SYSTEMD_COLORS", "0")
        .env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    }

    /// Runs a script that must succeed; returns its stdout.
    pub fn ok(&self, script: &str) -> String {
        stdout_of_success(&format!("in the container, `{script}`"), &self.sh(script))
    }

    /// stdout and stderr of a script, whatever its exit status.
    pub fn text(&self, script: &str) -> String {
        let out = self.sh(script);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Writes a file in the container.
    pub fn put(&self, path: &str, contents: &[u8]) {
        let out = self.sh_with_input(
            &format!("mkdir -p \"$(dirname '{path}')\" && cat > '{path}'"),
            contents,
        );
        assert!(out.status.success(), "cannot write {path} in the container");
    }

    /// Reboots the container (`systemctl reboot` inside) and waits for the new boot.
    pub fn reboot(&mut self) {
        let _ = self.sh("systemctl reboot");
        let status = self.wait_nspawn(Duration::from_secs(60));
        // systemd-nspawn exits 133 when the container asked for a reboot.
        assert_eq!(
            status.code(),
            Some(133),
            "systemd-nspawn after reboot:\n{}",
            self.nspawn_log()
        );
        self.remove_cgroups();
        self.start();
    }

    fn wait_nspawn(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = self.nspawn.as_mut().expect("running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.nspawn = None;
                return status;
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let status = child.wait().expect("wait");
                self.nspawn = None;
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn nspawn_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nspawn.log")).unwrap_or_default()
    }

    /// Removes the container's cgroups, deepest first (systemd inside made sub-groups).
    fn remove_cgroups(&self) {
        fn rm(dir: &Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        rm(&e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        for h in ["systemd", "unified", "."] {
            rm(&Path::new("/sys/fs/cgroup").join(h).join(&self.name));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() && self.nspawn.is_some() {
            eprintln!(
                "---- journal of container {} ----\n{}\n---- end of journal ----",
                self.name,
                self.text("journalctl -b --no-pager -o short-monotonic | tail -n 400")
            );
        }
        if self.nspawn.is_some() {
            // Killing the container's PID 1 ends its PID namespace at once, and systemd-nspawn
            // with it: nothing in the container needs an orderly shutdown.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid1 as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            self.wait_nspawn(Duration::from_secs(20));
        }
        self.remove_cgroups();
    }
}
