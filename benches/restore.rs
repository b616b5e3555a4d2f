//! How long `net.ipv4.conf.all.forwarding` stays at 0 after a drop, and what guarding it costs:
//! the real `fwdguard run` against the alternatives, in the same private network namespace.
//!
//! ```text
//! cargo bench --bench restore
//! ```
//!
//! Needs root (or unprivileged user namespaces; then `strace` may be unable to attach). The
//! process enters a private network namespace before anything else and proves it is not the
//! host's; every contender is spawned from it and checked to be in it. The host's forwarding
//! knobs are never written. Contenders, one at a time, each a separate process:
//!
//! - **fwdguard**: the release binary, `run -c` a temporary config (no `NOTIFY_SOCKET`, no
//!   journal, `RUST_LOG=warn`, stderr to a file);
//! - **bare listener**: the least a guard can do. A netlink socket subscribed to
//!   `RTNLGRP_IPV4_NETCONF`, the knob's file kept open, `pwrite("1\n", 0)` on every datagram,
//!   nothing else. It is this benchmark's own binary, run again with `--contender bare`;
//! - **re-apply loop**: `while :; do echo 1 > .../forwarding; sleep 1; done`, as a cron job or
//!   script would;
//! - **10 s timer**: reads the knob every 10 s and writes 1 if it is wrong, as Cilium's
//!   reconciler does (this binary with `--contender timer`).
//!
//! With 2+ CPUs the writer (this process) is pinned to CPU 0 and every contender to CPU 1
//! (`taskset -c 1`). fwdguard and the bare listener alternate in rounds, each round a fresh
//! process, so drift of the machine hits both. Nothing is asserted: figures are printed beside
//! their targets.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use fwdguard::sandbox::PrivateNetns;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_fwdguard");
const ALL_FORWARDING: &str = "/proc/sys/net/ipv4/conf/all/forwarding";

/// Rounds of fwdguard and the bare listener, per interface count.
const ROUNDS: usize = 6;
/// Per contender and round: drops not measured (cold caches, first reports), then measured
/// drops with a pause after each restore, then back to back.
const WARM_UP: usize = 50;
const SPACED: usize = 300;
const BACK_TO_BACK: usize = 400;
/// The pause before each spaced drop: the contender's CPU goes idle, as on a real host where
/// drops are rare (in a VM, waking a halted vCPU then adds to the time at 0).
const GAP: Duration = Duration::from_millis(1);
/// A drop not undone within this long counts as lost; the bench then undoes it itself.
const GIVE_UP: Duration = Duration::from_secs(2);
/// Spaced drops under strace, per contender and interface count.
const TRACED: usize = 300;
/// Interfaces for the second set of rounds (bridges: this kernel has no dummy driver).
const BRIDGES: usize = 100;
const IDLE: Duration = Duration::from_secs(60);
/// fwdguard's timed re-read in the benchmark's config (its default).
const REREAD: Duration = Duration::from_secs(30);
/// Drops against the re-apply loop and the timer, each after a random pause so that it lands
/// at a random point of their period.
const LOOP_DROPS: usize = 6;
const TIMER_DROPS: usize = 3;
const LOOP_PERIOD: Duration = Duration::from_secs(1);
const TIMER_PERIOD: Duration = Duration::from_secs(10);

/// Targets from issue 5, relative to the bare listener.
const MEDIAN_TARGET: f64 = 1.1;
const P99_TARGET: f64 = 1.5;
const RSS_TARGET_KIB: u64 = 4 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("--contender") => contender(args.get(2).map(String::as_str)),
        _ => bench(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("restore bench: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---- the contenders this binary plays itself ----

fn contender(which: Option<&str>) -> Result<(), String> {
    let knob = OpenOptions::new()
        .read(true)
        .write(true)
        .open(ALL_FORWARDING)
        .map_err(|e| format!("{ALL_FORWARDING}: {e}"))?;
    match which {
        Some("bare") => bare_listener(&knob),
        Some("timer") => loop {
            std::thread::sleep(TIMER_PERIOD);
            let mut buf = [0u8; 8];
            let n = knob.read_at(&mut buf, 0).map_err(|e| e.to_string())?;
            if !buf[..n].starts_with(b"1") {
                knob.write_all_at(b"1\n", 0).map_err(|e| e.to_string())?;
            }
        },
        other => Err(format!("unknown contender {other:?}")),
    }
}

/// Subscribes to IPv4 netconf events and writes 1 on every datagram, whatever it says: two
/// syscalls per wake-up (`recvfrom`, `pwrite64`). A write of an unchanged value sends no event.
fn bare_listener(knob: &File) -> Result<(), String> {
    use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| format!("netlink socket: {e}"))?;
    socket.bind_auto().map_err(|e| format!("bind: {e}"))?;
    socket
        .add_membership(libc::RTNLGRP_IPV4_NETCONF)
        .map_err(|e| format!("subscribe: {e}"))?;
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65536];
    loop {
        match socket.recv(&mut &mut buf[..], 0) {
            // ENOBUFS: events were lost, so maybe a drop: write anyway.
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("recv: {e}")),
        }
        let _ = knob.write_at(b"1\n", 0);
    }
}

// ---- the benchmark ----

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Fwdguard,
    Bare,
    Loop,
    Timer,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Fwdguard => "fwdguard",
            Kind::Bare => "bare listener",
            Kind::Loop => "re-apply loop 1 s",
            Kind::Timer => "timer 10 s",
        }
    }
}

/// Everything measured for fwdguard or the bare listener at one interface count.
#[derive(Default)]
struct Figures {
    spaced: Vec<Duration>,
    back_to_back: Vec<Duration>,
    /// CPU time (schedstat, ns) and clock ticks (utime+stime), and the drops they cover.
    cpu_ns: u64,
    cpu_ticks: u64,
    restores: u64,
    lost: usize,
    /// strace -c over `TRACED` restores: total calls, and the calls by name.
    syscalls: Option<(u64, Vec<(String, u64)>)>,
    rss_kib: u64,
    hwm_kib: u64,
}

struct Bench {
    netns: PrivateNetns,
    knob: Knob,
    pinned: bool,
    dir: tempfile::TempDir,
    log: String,
}

fn bench() -> Result<(), String> {
    // First of all, while the process has a single thread: every sysctl written below, by us or
    // by a contender we spawn (they inherit the namespace), lands in this private namespace.
    let netns = PrivateNetns::enter_process().map_err(|e| e.to_string())?;
    netns.verify().map_err(|e| e.to_string())?;
    let began = Instant::now();
    let load_before = loadavg();
    println!(
        "fwdguard restore benchmark, in a private network namespace net:[{}] (the host's is net:[{}])",
        netns.private, netns.host
    );
    // Counted before pinning: available_parallelism follows this thread's affinity.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let pinned = cpus >= 2 && pin_to_cpu0().is_ok();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
    println!(
        "machine: {cpus} CPUs, kernel {kernel}, load average {load_before} at start; pinning: {}",
        if pinned {
            "writer on CPU 0, contenders on CPU 1"
        } else {
            "none (fewer than 2 CPUs)"
        }
    );

    let mut b = Bench {
        knob: Knob::open(&netns)?,
        netns,
        pinned,
        dir: tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?,
        log: String::new(),
    };
    std::fs::write(b.dir.path().join("fwdguard.toml"), config())
        .map_err(|e| format!("config: {e}"))?;

    let mut one = [Figures::default(), Figures::default()];
    let mut many = [Figures::default(), Figures::default()];
    let ifaces_one = b.interfaces()?;
    b.rounds(&mut one)?;
    b.traced(&mut one)?;
    b.add_bridges()?;
    let ifaces_many = b.interfaces()?;
    b.rounds(&mut many)?;
    b.traced(&mut many)?;

    let idle = b.idle()?;
    let reapply = b.slow_contender(Kind::Loop)?;
    let timer = b.slow_contender(Kind::Timer)?;
    let load_after = loadavg();

    let mut out = String::new();
    let _ = writeln!(out, "\n{}", b.log);
    for (label, figures, ifaces) in [("1", &mut one, ifaces_one), ("100", &mut many, ifaces_many)] {
        let _ = writeln!(
            out,
            "== {label} interface(s): {ifaces} IPv4 devices, so a write of `all` sends {} netconf messages",
            ifaces + 2
        );
        report_latency(&mut out, figures);
        report_costs(&mut out, figures);
    }
    report_idle(&mut out, &idle);
    report_slow(&mut out, Kind::Loop, &reapply, LOOP_PERIOD);
    report_slow(&mut out, Kind::Timer, &timer, TIMER_PERIOD);
    report_summary(&mut out, &mut many, &idle, &reapply, &timer);
    let _ = writeln!(
        out,
        "\nload average {load_before} at start, {load_after} at the end; whole run {:.0} s{}",
        began.elapsed().as_secs_f64(),
        if busy(&load_before) || busy(&load_after) {
            " -- THE MACHINE WAS BUSY: other work shared the CPUs, figures are noisier than on a quiet one"
        } else {
            ""
        }
    );
    print!("{out}");
    Ok(())
}

impl Bench {
    /// `ROUNDS` rounds of fwdguard and the bare listener, alternating which goes first.
    fn rounds(&mut self, figures: &mut [Figures; 2]) -> Result<(), String> {
        for round in 0..ROUNDS {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                let kind = [Kind::Fwdguard, Kind::Bare][i];
                let c = self.spawn(kind)?;
                self.drops(WARM_UP, GAP, &mut Vec::new())?;
                let (ns0, ticks0) = c.cpu()?;
                let mut lost = self.drops(SPACED, GAP, &mut figures[i].spaced)?;
                lost += self.drops(BACK_TO_BACK, Duration::ZERO, &mut figures[i].back_to_back)?;
                let (ns1, ticks1) = c.cpu()?;
                let f = &mut figures[i];
                f.cpu_ns += ns1.saturating_sub(ns0);
                f.cpu_ticks += ticks1.saturating_sub(ticks0);
                f.restores += (SPACED + BACK_TO_BACK - lost) as u64;
                f.lost += lost;
                f.rss_kib = f.rss_kib.max(c.status("VmRSS:")?);
                f.hwm_kib = f.hwm_kib.max(c.status("VmHWM:")?);
                self.stop(c)?;
            }
        }
        Ok(())
    }

    /// Syscalls per restore: `strace -c -f` attached to a fresh contender over `TRACED` drops.
    fn traced(&mut self, figures: &mut [Figures; 2]) -> Result<(), String> {
        for (i, kind) in [Kind::Fwdguard, Kind::Bare].into_iter().enumerate() {
            let c = self.spawn(kind)?;
            self.drops(WARM_UP, GAP, &mut Vec::new())?;
            let out = self.dir.path().join(format!("strace-{i}"));
            let log = self.dir.path().join(format!("strace-{i}.stderr"));
            let strace = File::create(&log).and_then(|stderr| {
                Command::new("strace")
                    .args(["-c", "-f", "-o"])
                    .arg(&out)
                    .args(["-p", &c.pid().to_string()])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(stderr)
                    .spawn()
            });
            let Ok(mut strace) = strace else {
                let _ = writeln!(self.log, "strace not available: no syscall counts");
                self.stop(c)?;
                return Ok(());
            };
            // strace says "Process N attached" once it traces.
            let start = Instant::now();
            let mut attached = false;
            while !attached && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(10));
                attached = std::fs::read_to_string(&log).is_ok_and(|l| l.contains("attached"));
            }
            let mut lost = 0;
            if attached {
                lost = self.drops(TRACED, GAP, &mut Vec::new())?;
            }
            let _ = kill(Pid::from_raw(strace.id() as i32), Signal::SIGINT);
            let _ = strace.wait();
            self.stop(c)?;
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            match (attached, parse_strace(&text)) {
                (true, Some(counts)) => {
                    figures[i].syscalls = Some(counts);
                    if lost > 0 {
                        let _ =
                            writeln!(self.log, "{}: {lost} drops lost under strace", kind.name());
                    }
                }
                _ => {
                    let _ = writeln!(
                        self.log,
                        "strace could not trace {}: no syscall counts",
                        kind.name()
                    );
                }
            }
        }
        Ok(())
    }

    /// All four contenders at once, with nothing dropping the knob, for `IDLE`: how often each
    /// is woken and what it costs. (The knob stays 1: the loop's writes change nothing, so
    /// they send no netconf event to the others.)
    fn idle(&mut self) -> Result<Vec<Idle>, String> {
        let kinds = [Kind::Fwdguard, Kind::Bare, Kind::Loop, Kind::Timer];
        let mut running = Vec::new();
        for kind in kinds {
            running.push(self.spawn_as(kind, Start::Quiet)?);
        }
        let before: Vec<Usage> = running
            .iter()
            .map(Contender::usage)
            .collect::<Result<_, _>>()?;
        // fwdguard's context switches every 50 ms, each increase put down to its re-read
        // timer when it falls shortly before a re-read is due (tokio's timer wheel wakes up
        // to three times on the way to a long deadline), else to something else.
        let guard = &running[0];
        let (mut by_reread, mut other) = (0, 0);
        let mut last = guard.usage()?.switches();
        let begin = Instant::now();
        while begin.elapsed() < IDLE {
            std::thread::sleep(Duration::from_millis(50));
            let now = guard.usage()?.switches();
            let woke = now.saturating_sub(last);
            last = now;
            let since = guard.started.elapsed().as_secs_f64();
            let next_due = (since / REREAD.as_secs_f64()).ceil() * REREAD.as_secs_f64();
            let prev_due = next_due - REREAD.as_secs_f64();
            if next_due - since <= 5.0 || (prev_due > 0.0 && since - prev_due <= 0.5) {
                by_reread += woke;
            } else {
                other += woke;
            }
        }
        let _ = writeln!(
            self.log,
            "fwdguard idle: {by_reread} wake-ups around its re-reads, {other} at other times"
        );
        let tick_ns = 1e9 / clock_ticks_per_second().max(1) as f64;
        let mut idle = Vec::new();
        for (c, b) in running.iter().zip(before) {
            let a = c.usage()?;
            idle.push(Idle {
                kind: c.kind,
                voluntary: a.voluntary.saturating_sub(b.voluntary),
                involuntary: a.involuntary.saturating_sub(b.involuntary),
                // schedstat covers the process's own threads; its children's CPU (the loop's
                // `sleep`s) only shows in cutime/cstime, in ticks.
                cpu_ms: (a.cpu_ns.saturating_sub(b.cpu_ns) as f64
                    + a.children_ticks.saturating_sub(b.children_ticks) as f64 * tick_ns)
                    / 1e6,
                rss_kib: c.status("VmRSS:")?,
                unexplained: (c.kind == Kind::Fwdguard).then_some(other),
            });
        }
        for c in running {
            self.stop(c)?;
        }
        Ok(idle)
    }

    /// Time at 0 against the re-apply loop or the timer: a few drops, each after a random
    /// pause of up to one period, polled every millisecond.
    fn slow_contender(&mut self, kind: Kind) -> Result<Vec<Option<Duration>>, String> {
        let (drops, period) = match kind {
            Kind::Loop => (LOOP_DROPS, LOOP_PERIOD),
            _ => (TIMER_DROPS, TIMER_PERIOD),
        };
        let c = self.spawn(kind)?;
        let mut rng = XorShift::seeded();
        let mut at_zero = Vec::new();
        for _ in 0..drops {
            std::thread::sleep(period.mul_f64(rng.unit()));
            let start = Instant::now();
            self.knob.set("0")?;
            let give_up = period + Duration::from_secs(2);
            let mut restored = None;
            while start.elapsed() < give_up {
                if self.knob.is_one()? {
                    restored = Some(start.elapsed());
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if restored.is_none() {
                self.knob.set("1")?;
            }
            at_zero.push(restored);
        }
        self.stop(c)?;
        Ok(at_zero)
    }

    /// `count` drops, `gap` before each; the time at 0 of each restored one goes to `samples`.
    /// Returns how many were not undone within `GIVE_UP`.
    fn drops(
        &mut self,
        count: usize,
        gap: Duration,
        samples: &mut Vec<Duration>,
    ) -> Result<usize, String> {
        let mut lost = 0;
        for _ in 0..count {
            if !gap.is_zero() {
                std::thread::sleep(gap);
            }
            match self.knob.knock()? {
                Some(d) => samples.push(d),
                None => {
                    lost += 1;
                    self.knob.set("1")?;
                    if lost >= 3 {
                        return Err("3 drops not undone: the contender quit restoring".into());
                    }
                }
            }
        }
        Ok(lost)
    }

    /// Starts a contender on CPU 1 and waits until it is listening.
    fn spawn(&mut self, kind: Kind) -> Result<Contender, String> {
        self.spawn_as(kind, Start::Knocked)
    }

    /// Starts a contender on CPU 1. `Start::Knocked` proves fwdguard is listening by having
    /// it fix a 0 at start; `Start::Quiet` leaves the knob at 1 (for the idle minute, where a
    /// restore at start could leave a timer of its own behind) and gives it 500 ms instead.
    fn spawn_as(&mut self, kind: Kind, start: Start) -> Result<Contender, String> {
        let config = self.dir.path().join("fwdguard.toml");
        let stderr_path = self.dir.path().join(format!("{}.stderr", kind.name()));
        let stderr = File::create(&stderr_path).map_err(|e| format!("stderr file: {e}"))?;
        let self_exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let script = format!("while :; do echo 1 > {ALL_FORWARDING}; sleep 1; done");
        let argv: Vec<String> = match kind {
            Kind::Fwdguard => vec![
                BIN.into(),
                "run".into(),
                "-c".into(),
                config.display().to_string(),
            ],
            Kind::Bare => vec![
                self_exe.display().to_string(),
                "--contender".into(),
                "bare".into(),
            ],
            Kind::Timer => vec![
                self_exe.display().to_string(),
                "--contender".into(),
                "timer".into(),
            ],
            Kind::Loop => vec!["sh".into(), "-c".into(), script],
        };
        let mut cmd = if self.pinned {
            // taskset execs the program, so the child's pid is the contender's.
            let mut c = self.netns.command("taskset").map_err(|e| e.to_string())?;
            c.args(["-c", "1"]).args(&argv);
            c
        } else {
            let mut c = self.netns.command(&argv[0]).map_err(|e| e.to_string())?;
            c.args(&argv[1..]);
            c
        };
        cmd.env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(if kind == Kind::Bare {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(stderr)
            // Its own process group: the loop's `sleep` children go with it.
            .process_group(0);
        // fwdguard is up once it has fixed a 0 found at start (it subscribes before that read).
        let knocked = kind == Kind::Fwdguard && start == Start::Knocked;
        if knocked {
            self.knob.set("0")?;
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", kind.name()))?;
        let started = Instant::now();
        let ready = match kind {
            Kind::Fwdguard if !knocked => {
                std::thread::sleep(Duration::from_millis(500));
                Ok(())
            }
            Kind::Fwdguard => self
                .knob
                .wait_for_one(Duration::from_secs(5))
                .map_err(|e| format!("{e}; fwdguard stderr in {}", stderr_path.display())),
            // It prints one line once subscribed (or nothing, if it failed).
            Kind::Bare => {
                let mut line = String::new();
                let stdout = child.stdout.take().ok_or("no stdout")?;
                let _ = BufReader::new(stdout).read_line(&mut line);
                if line.trim() == "ready" {
                    Ok(())
                } else {
                    Err(format!(
                        "the bare listener did not start; stderr in {}",
                        stderr_path.display()
                    ))
                }
            }
            Kind::Loop | Kind::Timer => Ok(()),
        };
        let c = Contender {
            child,
            kind,
            started,
        };
        ready?;
        let ns = std::fs::metadata(format!("/proc/{}/ns/net", c.pid()))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .map_err(|e| format!("{}'s namespace: {e}", kind.name()))?;
        if ns != self.netns.private {
            return Err(format!(
                "{} is in net:[{ns}], not our private net:[{}]",
                kind.name(),
                self.netns.private
            ));
        }
        Ok(c)
    }

    fn stop(&mut self, mut c: Contender) -> Result<(), String> {
        // The whole group: `sh` and its `sleep`.
        let _ = kill(Pid::from_raw(-(c.pid() as i32)), Signal::SIGTERM);
        let status = c
            .child
            .wait()
            .map_err(|e| format!("wait for {}: {e}", c.kind.name()))?;
        if c.kind == Kind::Fwdguard && !status.success() {
            return Err(format!("fwdguard exited with {status}"));
        }
        Ok(())
    }

    /// IPv4 devices in the namespace, from `/proc/sys/net/ipv4/conf` (not `/sys/class/net`,
    /// which shows the host's namespace here).
    fn interfaces(&self) -> Result<usize, String> {
        self.netns.verify().map_err(|e| e.to_string())?;
        let entries = std::fs::read_dir("/proc/sys/net/ipv4/conf")
            .map_err(|e| format!("/proc/sys/net/ipv4/conf: {e}"))?;
        Ok(entries
            .filter_map(Result::ok)
            .filter(|e| !matches!(e.file_name().to_str(), Some("all" | "default")))
            .count())
    }

    fn add_bridges(&mut self) -> Result<(), String> {
        let mut ip = self
            .netns
            .command("ip")
            .map_err(|e| e.to_string())?
            .args(["-batch", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| format!("ip: {e}"))?;
        let mut batch = String::new();
        for i in 1..BRIDGES {
            let _ = writeln!(batch, "link add fgb{i} type bridge");
        }
        ip.stdin
            .take()
            .ok_or("ip stdin")?
            .write_all(batch.as_bytes())
            .map_err(|e| format!("ip -batch: {e}"))?;
        let status = ip.wait().map_err(|e| format!("ip: {e}"))?;
        if !status.success() {
            return Err(format!("ip -batch exited with {status}"));
        }
        Ok(())
    }
}

/// The restorer alone: no BPF hook (it would also attach at the cgroup2 root, and cost every
/// sysctl access of the writer; `cargo bench --bench hook` measures it).
fn config() -> String {
    format!(
        "reread-interval = \"{}s\"\nbpf-hook = false\n\n[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = \"1\"\naction = \"restore\"\n",
        REREAD.as_secs()
    )
}

/// One running contender.
struct Contender {
    child: Child,
    kind: Kind,
    started: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    Knocked,
    Quiet,
}

/// One contender over the idle minute.
struct Idle {
    kind: Kind,
    voluntary: u64,
    involuntary: u64,
    /// Its own CPU time and its children's.
    cpu_ms: f64,
    rss_kib: u64,
    /// fwdguard only: wake-ups not near a re-read.
    unexplained: Option<u64>,
}

impl Idle {
    fn wakeups(&self) -> u64 {
        self.voluntary + self.involuntary
    }
}

/// What /proc says about a process's use of the CPU so far.
#[derive(Clone, Copy)]
struct Usage {
    /// Time on a CPU, all threads (schedstat, ns).
    cpu_ns: u64,
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
    /// cutime + cstime: children waited for (the loop's `sleep`s), in clock ticks.
    children_ticks: u64,
    /// Context switches summed over all threads.
    voluntary: u64,
    involuntary: u64,
}

impl Usage {
    fn switches(&self) -> u64 {
        self.voluntary + self.involuntary
    }
}

impl Contender {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn status(&self, field: &str) -> Result<u64, String> {
        let status = read_proc(&format!("/proc/{}/status", self.pid()))?;
        status_field(&status, field).ok_or_else(|| format!("no {field} in /proc/PID/status"))
    }

    fn cpu(&self) -> Result<(u64, u64), String> {
        self.usage().map(|u| (u.cpu_ns, u.cpu_ticks))
    }

    fn usage(&self) -> Result<Usage, String> {
        let stat = read_proc(&format!("/proc/{}/stat", self.pid()))?;
        // The command name may hold spaces and parentheses: count fields after the last ')'.
        // There, utime, stime, cutime, cstime are the 12th to 15th (fields 14-17 of proc(5)).
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or("odd /proc/PID/stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| -> Result<u64, String> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| format!("odd /proc/PID/stat: {stat}"))
        };
        let mut usage = Usage {
            cpu_ns: 0,
            cpu_ticks: tick(11)? + tick(12)?,
            children_ticks: tick(13)? + tick(14)?,
            voluntary: 0,
            involuntary: 0,
        };
        let tasks = format!("/proc/{}/task", self.pid());
        for entry in std::fs::read_dir(&tasks).map_err(|e| format!("{tasks}: {e}"))? {
            let dir = entry.map_err(|e| format!("{tasks}: {e}"))?.path();
            let status = read_proc(&dir.join("status").to_string_lossy())?;
            usage.voluntary += status_field(&status, "voluntary_ctxt_switches:").unwrap_or(0);
            usage.involuntary += status_field(&status, "nonvoluntary_ctxt_switches:").unwrap_or(0);
            let schedstat = read_proc(&dir.join("schedstat").to_string_lossy())?;
            usage.cpu_ns += schedstat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(usage)
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        // After stop() this finds the child reaped and does nothing.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(-(self.child.id() as i32)), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// The guarded knob, opened once, written and read at offset 0: with
/// `kernel.sysctl_writes_strict=1` a write at a later position is silently ignored.
struct Knob {
    file: File,
}

impl Knob {
    fn open(netns: &PrivateNetns) -> Result<Self, String> {
        netns.verify().map_err(|e| e.to_string())?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(ALL_FORWARDING)
            .map_err(|e| format!("{ALL_FORWARDING}: {e}"))?;
        Ok(Self { file })
    }

    fn set(&self, value: &str) -> Result<(), String> {
        self.file
            .write_all_at(format!("{value}\n").as_bytes(), 0)
            .map_err(|e| format!("write {value} to {ALL_FORWARDING}: {e}"))
    }

    fn is_one(&self) -> Result<bool, String> {
        let mut buf = [0u8; 8];
        let n = self
            .file
            .read_at(&mut buf, 0)
            .map_err(|e| format!("read {ALL_FORWARDING}: {e}"))?;
        Ok(buf[..n].starts_with(b"1"))
    }

    /// Writes 0 and reads until it shows 1 again: how long a reader on the writer's CPU saw
    /// the knob down, from just before the write. `None` if not back within `GIVE_UP`.
    fn knock(&self) -> Result<Option<Duration>, String> {
        let start = Instant::now();
        self.file
            .write_all_at(b"0\n", 0)
            .map_err(|e| format!("write 0 to {ALL_FORWARDING}: {e}"))?;
        loop {
            if self.is_one()? {
                return Ok(Some(start.elapsed()));
            }
            if start.elapsed() > GIVE_UP {
                return Ok(None);
            }
        }
    }

    /// Spins (the contender is on another CPU) until the knob reads 1.
    fn wait_for_one(&self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        while !self.is_one()? {
            if start.elapsed() > timeout {
                return Err(format!("forwarding not back to 1 within {timeout:?}"));
            }
        }
        Ok(())
    }
}

// ---- printing ----

fn report_latency(out: &mut String, f: &mut [Figures; 2]) {
    let _ = writeln!(
        out,
        "{:<44} {:>9} {:>9} {:>9} {:>9}",
        "time at 0 (write of 0 -> reader sees 1)", "min", "median", "p99", "max"
    );
    for (scenario, pick) in [
        (format!("{} apart", fmt_us(GAP)), 0),
        ("back to back".to_owned(), 1),
    ] {
        let [g, bare] = f;
        let (gs, bs) = if pick == 0 {
            (&mut g.spaced, &mut bare.spaced)
        } else {
            (&mut g.back_to_back, &mut bare.back_to_back)
        };
        gs.sort_unstable();
        bs.sort_unstable();
        for (kind, samples) in [(Kind::Fwdguard, &*gs), (Kind::Bare, &*bs)] {
            let label = format!("  {scenario}, {} ({} drops)", kind.name(), samples.len());
            let _ = writeln!(out, "{}", row(&label, samples));
        }
        if let (Some(gm), Some(bm)) = (median(gs), median(bs)) {
            let (gp, bp) = (percentile(gs, 99), percentile(bs, 99));
            let rm = gm.as_secs_f64() / bm.as_secs_f64();
            let rp = gp.as_secs_f64() / bp.as_secs_f64();
            let _ = writeln!(
                out,
                "  {scenario}: fwdguard / bare listener = {rm:.2}x median ({}), {rp:.2}x p99 ({})",
                verdict(rm <= MEDIAN_TARGET, &format!("target <= {MEDIAN_TARGET}x")),
                verdict(rp <= P99_TARGET, &format!("target <= {P99_TARGET}x")),
            );
        }
    }
}

fn report_costs(out: &mut String, f: &[Figures; 2]) {
    for (kind, fig) in [(Kind::Fwdguard, &f[0]), (Kind::Bare, &f[1])] {
        let per = |total: f64| total / fig.restores.max(1) as f64;
        let ticks_us = per(fig.cpu_ticks as f64 * 1e6 / clock_ticks_per_second() as f64);
        let _ = write!(
            out,
            "  {}: CPU per restore {:.1} us (schedstat; utime+stime says {ticks_us:.1} us at {} ticks/s) over {} restores, {} lost",
            kind.name(),
            per(fig.cpu_ns as f64) / 1000.0,
            clock_ticks_per_second(),
            fig.restores,
            fig.lost,
        );
        match &fig.syscalls {
            Some((total, by_name)) => {
                let n = TRACED as f64;
                let top: Vec<String> = by_name
                    .iter()
                    .filter(|(_, c)| *c as f64 / n >= 0.05)
                    .map(|(name, c)| format!("{name} {:.1}", *c as f64 / n))
                    .collect();
                let _ = writeln!(
                    out,
                    "; syscalls per restore {:.1} ({})",
                    *total as f64 / n,
                    top.join(", ")
                );
            }
            None => {
                let _ = writeln!(out, "; syscalls not counted");
            }
        }
        let _ = writeln!(
            out,
            "  {}: VmRSS {} (VmHWM {}){}",
            kind.name(),
            fmt_mib(fig.rss_kib),
            fmt_mib(fig.hwm_kib),
            if kind == Kind::Fwdguard {
                format!(
                    " {}",
                    verdict(
                        fig.hwm_kib <= RSS_TARGET_KIB,
                        &format!("target <= {}", fmt_mib(RSS_TARGET_KIB))
                    )
                )
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(out);
}

fn report_idle(out: &mut String, idle: &[Idle]) {
    let _ = writeln!(
        out,
        "== idle {} s, all four running, nothing dropping the knob",
        IDLE.as_secs()
    );
    for i in idle {
        let target = match i.unexplained {
            Some(other) => {
                let target = format!(
                    "target: none but the re-read timer's (every {} s); {other} at other times",
                    REREAD.as_secs()
                );
                format!("   {}", verdict(other == 0, &target))
            }
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {:<18} wake-ups {:>4} ({} voluntary + {} involuntary), CPU {:.2} ms, VmRSS {}{target}",
            i.kind.name(),
            i.wakeups(),
            i.voluntary,
            i.involuntary,
            i.cpu_ms,
            fmt_mib(i.rss_kib),
        );
    }
    let _ = writeln!(out);
}

fn report_slow(out: &mut String, kind: Kind, at_zero: &[Option<Duration>], period: Duration) {
    let shown: Vec<String> = at_zero
        .iter()
        .map(|d| d.map_or_else(|| "not undone".to_owned(), fmt_us))
        .collect();
    let mut restored: Vec<Duration> = at_zero.iter().flatten().copied().collect();
    restored.sort_unstable();
    let _ = writeln!(
        out,
        "== {}: {} drops at random points of its {} s period: at 0 for {} (median {})",
        kind.name(),
        at_zero.len(),
        period.as_secs(),
        shown.join(", "),
        median(&restored).map_or_else(|| "-".to_owned(), fmt_us)
    );
}

/// The comparison table (100 interfaces, spaced drops: the case of a real host).
fn report_summary(
    out: &mut String,
    many: &mut [Figures; 2],
    idle: &[Idle],
    reapply: &[Option<Duration>],
    timer: &[Option<Duration>],
) {
    let _ = writeln!(
        out,
        "\n== comparison (100 interfaces, drops {} apart)\n{:<18} {:>24} {:>12} {:>9} {:>9} {:>14} {:>14}",
        fmt_us(GAP),
        "",
        "time at 0 median/p99",
        "CPU/restore",
        "syscalls",
        "RSS",
        "idle wake-ups",
        "idle CPU"
    );
    for kind in [Kind::Fwdguard, Kind::Bare, Kind::Loop, Kind::Timer] {
        let (lat, cpu, syscalls) = match kind {
            Kind::Fwdguard | Kind::Bare => {
                let f = &mut many[usize::from(kind == Kind::Bare)];
                f.spaced.sort_unstable();
                (
                    median(&f.spaced).map_or_else(
                        || "-".to_owned(),
                        |m| format!("{} / {}", fmt_us(m), fmt_us(percentile(&f.spaced, 99))),
                    ),
                    format!(
                        "{:.1} us",
                        f.cpu_ns as f64 / 1000.0 / f.restores.max(1) as f64
                    ),
                    f.syscalls.as_ref().map_or_else(
                        || "-".to_owned(),
                        |(t, _)| format!("{:.1}", *t as f64 / TRACED as f64),
                    ),
                )
            }
            Kind::Loop | Kind::Timer => {
                let samples = if kind == Kind::Loop { reapply } else { timer };
                let mut s: Vec<Duration> = samples.iter().flatten().copied().collect();
                s.sort_unstable();
                let lat =
                    median(&s).map_or_else(|| "-".to_owned(), |m| format!("{} median", fmt_us(m)));
                (lat, "-".to_owned(), "-".to_owned())
            }
        };
        let Some(i) = idle.iter().find(|i| i.kind == kind) else {
            continue;
        };
        let _ = writeln!(
            out,
            "{:<18} {:>24} {cpu:>12} {syscalls:>9} {:>9} {:>9} / min {:>8.2} ms/min",
            kind.name(),
            lat,
            fmt_mib(i.rss_kib),
            i.wakeups(),
            i.cpu_ms * 60.0 / IDLE.as_secs_f64(),
        );
    }
}

fn verdict(met: bool, target: &str) -> String {
    format!("{}: {target}", if met { "met" } else { "MISSED" })
}

/// One table line: min, median, p99, max of sorted samples.
fn row(label: &str, sorted: &[Duration]) -> String {
    let Some((&min, &max)) = sorted.first().zip(sorted.last()) else {
        return format!("{label:<44} no samples");
    };
    format!(
        "{label:<44} {:>9} {:>9} {:>9} {:>9}",
        fmt_us(min),
        fmt_us(percentile(sorted, 50)),
        fmt_us(percentile(sorted, 99)),
        fmt_us(max)
    )
}

fn median(sorted: &[Duration]) -> Option<Duration> {
    (!sorted.is_empty()).then(|| percentile(sorted, 50))
}

/// Nearest-rank percentile of sorted, non-empty samples.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

fn fmt_us(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.1} us")
    }
}

fn fmt_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `strace -c` output: the total number of calls and the calls per syscall, most first.
fn parse_strace(text: &str) -> Option<(u64, Vec<(String, u64)>)> {
    let mut by_name = Vec::new();
    let mut total = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors], syscall
        if f.len() < 5 || f[0].parse::<f64>().is_err() {
            continue;
        }
        let (Some(name), Ok(calls)) = (f.last(), f[3].parse::<u64>()) else {
            continue;
        };
        if *name == "total" {
            total = Some(calls);
        } else {
            by_name.push(((*name).to_owned(), calls));
        }
    }
    by_name.sort_by_key(|(_, calls)| std::cmp::Reverse(*calls));
    total.map(|t| (t, by_name))
}

fn read_proc(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// The number in a `Name:  123 kB` line of a /proc status file.
fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Clock ticks per second for /proc/PID/stat. nix exposes sysconf only with its "feature"
/// feature, not enabled for this crate, and libc's needs unsafe: ask getconf(1).
fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// A 1-minute load average above half a CPU: something else was running.
fn busy(load: &str) -> bool {
    load.split_whitespace()
        .next()
        .and_then(|l| l.parse::<f64>().ok())
        .is_some_and(|l| l > 0.5)
}

fn pin_to_cpu0() -> nix::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(0)?;
    nix::sched::sched_setaffinity(Pid::from_raw(0), &set)
}

/// Pauses at random points of a period; no crate needed for that.
struct XorShift(u64);

impl XorShift {
    fn seeded() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Self(t | 1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}
