//! How fast the real `fwdguard run` undoes a drop of `net.ipv4.conf.all.forwarding`, and what
//! it costs while doing so and while idle.
//!
//! Run it (as root, or with unprivileged user namespaces enabled) with
//!
//! ```text
//! cargo bench --bench restore
//! ```
//!
//! Everything happens in a private network namespace entered before anything else: the host's
//! forwarding knobs are never written. The daemon runs as a separate process (the real binary,
//! a temporary config, no `NOTIFY_SOCKET`, `RUST_LOG=warn`); with 2+ CPUs it is pinned to CPU 1
//! and the writer (this process) to CPU 0, as on a host where the guard and whoever drops
//! forwarding do not share a core. It prints, never asserts:
//!
//! 1. how long forwarding stays at 0 after a write of 0, as a reader on the writer's CPU sees it
//!    (`fwdguard::demo::knock`), over thousands of drops, back to back and 1 ms apart;
//! 2. what the `write("0\n")` syscall costs the writer, without and with the daemon listening
//!    (with it, the kernel also queues netconf events to the daemon and wakes it);
//! 3. the daemon's RSS right after start and after ~10 000 restores;
//! 4. the daemon's CPU time and wake-ups over 10 idle seconds.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use fwdguard::demo::{knock, pin_to_cpu};
use fwdguard::sandbox::PrivateNetns;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_fwdguard");
const ALL_FORWARDING: &str = "/proc/sys/net/ipv4/conf/all/forwarding";
/// The knob must be back within this long, or the drop counts as not restored.
const GIVE_UP: Duration = Duration::from_secs(2);

/// Drops not measured, so page faults and cold caches in the daemon's first restores stay out
/// of the figures (they still count as restores for the RSS line).
const WARM_UP: usize = 100;
const KNOCKS: usize = 5_000;
const WRITES_WITHOUT_DAEMON: usize = 2_000;
const WRITES_WITH_DAEMON: usize = 5_000;
const IDLE: Duration = Duration::from_secs(10);
/// Drops come back to back (a writer in a loop: the daemon's CPU stays busy), or with this
/// pause after each restore (the daemon's CPU goes idle in between, as on a real host where
/// drops are rare; in a VM, waking a halted vCPU then adds to the time at 0).
const GAP: Duration = Duration::from_millis(1);
/// Drops in a row not undone within `GIVE_UP` after which a phase stops early.
const MAX_LOST_IN_A_ROW: usize = 3;

const CONFIG: &str = r#"reread-interval = "30s"

[[guard]]
key = "net.ipv4.conf.all.forwarding"
value = "1"
action = "restore"
"#;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("restore bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    // First of all, while the process has a single thread: every sysctl written below, by us or
    // by the daemon we spawn (it inherits the namespace), lands in this private namespace.
    let netns = PrivateNetns::enter_process().map_err(|e| e.to_string())?;
    netns.verify().map_err(|e| e.to_string())?;
    println!(
        "fwdguard restore benchmark, in a private network namespace net:[{}] (the host's is net:[{}])",
        netns.private, netns.host
    );

    // Counted before pinning: available_parallelism follows this thread's affinity.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let pinned = cpus >= 2 && pin_to_cpu(0).is_ok();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
    println!("machine: {cpus} CPUs, kernel {kernel}");

    let knob = Knob::open(&netns)?;

    // 2a: the write alone, nobody listening. Alternate so that every write of 0 is a change
    // (an unchanged value sends no netconf message and would be cheaper than a real drop).
    let mut bare = Vec::with_capacity(WRITES_WITHOUT_DAEMON);
    for _ in 0..WRITES_WITHOUT_DAEMON {
        knob.set("1")?;
        bare.push(knob.timed_zero()?);
    }

    // The daemon must find the knob at 0 and fix it: reading 1 then tells us it is up, with its
    // netlink subscription open (it subscribes before its first read).
    knob.set("0")?;
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let spawned = Instant::now();
    let daemon = Daemon::spawn(&netns, dir.path(), pinned)?;
    knob.wait_for_one(Duration::from_secs(5))
        .map_err(|e| format!("{e} (daemon stderr in {})", daemon.stderr.display()))?;
    let up_after = spawned.elapsed();
    let daemon_ns = std::fs::metadata(format!("/proc/{}/ns/net", daemon.pid()))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .map_err(|e| format!("the daemon's namespace: {e}"))?;
    if daemon_ns != netns.private {
        return Err(format!(
            "the daemon is in net:[{daemon_ns}], not our private net:[{}]",
            netns.private
        ));
    }
    println!(
        "pinning: {}",
        if pinned {
            "writer on CPU 0, daemon on CPU 1 (taskset -c 1)"
        } else {
            "none (fewer than 2 CPUs): writer and daemon share a CPU"
        }
    );
    println!(
        "daemon: pid {} in net:[{daemon_ns}], forwarding restored {} after spawn",
        daemon.pid(),
        fmt_us(up_after)
    );
    let rss_start = daemon.rss_kib()?;

    // 1: time at 0, back to back and spaced.
    let mut tally = Tally::default();
    netns.verify().map_err(|e| e.to_string())?;
    let mut back_to_back = time_at_zero(Duration::ZERO, &mut tally, &knob)?;
    let mut spaced = time_at_zero(GAP, &mut tally, &knob)?;

    // 2b: the write with the daemon listening. The write is timed alone; the wait for the
    // restore is not, but it keeps the daemon's work for one drop out of the next write.
    let mut loaded = Vec::with_capacity(WRITES_WITH_DAEMON);
    for _ in 0..WRITES_WITH_DAEMON {
        if tally.lost_in_a_row >= MAX_LOST_IN_A_ROW {
            break;
        }
        std::thread::sleep(GAP);
        loaded.push(knob.timed_zero()?);
        let restored = knob.wait_for_one(GIVE_UP).is_ok();
        if !tally.count(restored, &knob)? {
            break;
        }
    }
    let rss_after = daemon.rss_kib()?;

    // 4: idle. Nothing writes the knob now; the re-read timer (30 s) is not due within 10 s.
    let before = daemon.usage()?;
    std::thread::sleep(IDLE);
    let after = daemon.usage()?;
    let ticks = clock_ticks_per_second();

    let log = daemon.stop()?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<40} {:>9} {:>9} {:>9} {:>9}   target",
        "", "min", "median", "p99", "max"
    );
    const LATENCY_TARGET: &str = "median <= 50 us, p99 <= 150 us";
    let rows = [
        (
            format!("at 0, back to back ({} drops)", back_to_back.len()),
            &mut back_to_back,
            LATENCY_TARGET,
        ),
        (
            format!("at 0, {} apart ({} drops)", fmt_us(GAP), spaced.len()),
            &mut spaced,
            LATENCY_TARGET,
        ),
        (
            format!("write(\"0\\n\") without daemon ({})", bare.len()),
            &mut bare,
            "",
        ),
        (
            format!("write(\"0\\n\") with daemon ({})", loaded.len()),
            &mut loaded,
            "",
        ),
    ];
    for (label, samples, target) in rows {
        let _ = writeln!(out, "{}", row(&label, samples, target));
    }
    let _ = writeln!(
        out,
        "\ndaemon RSS: {} after start, {} after {} restores   target <= 6 MiB",
        fmt_mib(rss_start),
        fmt_mib(rss_after),
        tally.restored
    );
    let cpu_ticks = after.cpu_ticks.saturating_sub(before.cpu_ticks);
    let voluntary = after.voluntary.saturating_sub(before.voluntary);
    let involuntary = after.involuntary.saturating_sub(before.involuntary);
    let _ = writeln!(
        out,
        "daemon idle {} s: CPU {} ms ({cpu_ticks} ticks at {ticks}/s), wake-ups {} ({voluntary} voluntary + {involuntary} involuntary, {} threads)   target 0",
        IDLE.as_secs(),
        cpu_ticks * 1000 / ticks.max(1),
        voluntary + involuntary,
        after.threads
    );
    let _ = writeln!(
        out,
        "drops not restored within {}: {}{}; daemon log lines at RUST_LOG=warn: {}",
        fmt_us(GIVE_UP),
        tally.lost,
        if tally.lost_in_a_row >= MAX_LOST_IN_A_ROW {
            " (stopped early: the daemon quit restoring)"
        } else {
            ""
        },
        log.lines().count()
    );
    if tally.lost > 0 {
        let _ = writeln!(out, "daemon log:\n{log}");
    }
    print!("{out}");
    Ok(())
}

/// Knocks forwarding to 0 `WARM_UP + KNOCKS` times, `gap` after each restore, and returns how
/// long it stayed at 0 each time after the warm-up.
fn time_at_zero(gap: Duration, tally: &mut Tally, knob: &Knob) -> Result<Vec<Duration>, String> {
    let mut at_zero = Vec::with_capacity(KNOCKS);
    for i in 0..WARM_UP + KNOCKS {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        let restored = knock(Path::new(ALL_FORWARDING), GIVE_UP)
            .map_err(|e| format!("{ALL_FORWARDING}: {e}"))?;
        if let (Some(d), true) = (restored, i >= WARM_UP) {
            at_zero.push(d);
        }
        if !tally.count(restored.is_some(), knob)? {
            break;
        }
    }
    Ok(at_zero)
}

/// The guarded knob, opened once, always written and read at offset 0: with
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

    /// Writes 0 and returns how long the write syscall took, nothing else inside the timer.
    fn timed_zero(&self) -> Result<Duration, String> {
        let start = Instant::now();
        let r = self.file.write_all_at(b"0\n", 0);
        let took = start.elapsed();
        r.map(|()| took)
            .map_err(|e| format!("write 0 to {ALL_FORWARDING}: {e}"))
    }

    fn is_one(&self) -> io::Result<bool> {
        let mut buf = [0u8; 8];
        let n = self.file.read_at(&mut buf, 0)?;
        Ok(buf[..n].starts_with(b"1"))
    }

    /// Spins (the daemon is on another CPU) until the knob reads 1.
    fn wait_for_one(&self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if self
                .is_one()
                .map_err(|e| format!("read {ALL_FORWARDING}: {e}"))?
            {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(format!("forwarding not back to 1 within {timeout:?}"));
            }
        }
    }
}

/// Drops undone by the daemon, and not.
#[derive(Default)]
struct Tally {
    restored: usize,
    lost: usize,
    lost_in_a_row: usize,
}

impl Tally {
    /// Counts one drop; a drop not undone is undone by us, so the next write of 0 is a drop
    /// again. Returns whether to go on.
    fn count(&mut self, restored: bool, knob: &Knob) -> Result<bool, String> {
        if restored {
            self.restored += 1;
            self.lost_in_a_row = 0;
        } else {
            self.lost += 1;
            self.lost_in_a_row += 1;
            knob.set("1")?;
        }
        Ok(self.lost_in_a_row < MAX_LOST_IN_A_ROW)
    }
}

/// `fwdguard run` as a child process; killed if the benchmark stops early.
struct Daemon {
    child: Child,
    stderr: PathBuf,
}

/// What /proc says about the daemon's use of the CPU so far.
struct Usage {
    /// utime + stime of the whole process, in clock ticks.
    cpu_ticks: u64,
    /// Context switches summed over all its threads (/proc/PID/status counts one thread only).
    voluntary: u64,
    involuntary: u64,
    threads: usize,
}

impl Daemon {
    fn spawn(netns: &PrivateNetns, dir: &Path, pinned: bool) -> Result<Self, String> {
        let config = dir.join("fwdguard.toml");
        std::fs::write(&config, CONFIG).map_err(|e| format!("{}: {e}", config.display()))?;
        let stderr = dir.join("stderr");
        let log = File::create(&stderr).map_err(|e| format!("{}: {e}", stderr.display()))?;
        // taskset execs the daemon, so the child's pid is the daemon's.
        let mut cmd: Command = if pinned {
            let mut c = netns.command("taskset").map_err(|e| e.to_string())?;
            c.args(["-c", "1", BIN]);
            c
        } else {
            netns.command(BIN).map_err(|e| e.to_string())?
        };
        cmd.arg("run")
            .arg("-c")
            .arg(&config)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {:?}: {e}", cmd.get_program()))?;
        Ok(Self { child, stderr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss_kib(&self) -> Result<u64, String> {
        let status = read_proc(&format!("/proc/{}/status", self.pid()))?;
        status_field(&status, "VmRSS:").ok_or_else(|| "no VmRSS in /proc/PID/status".to_owned())
    }

    fn usage(&self) -> Result<Usage, String> {
        let stat = read_proc(&format!("/proc/{}/stat", self.pid()))?;
        // The command name may hold spaces and parentheses: count fields after the last ')'.
        // There, utime and stime are the 12th and 13th (fields 14 and 15 of proc(5)).
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
        let cpu_ticks = tick(11)? + tick(12)?;

        let tasks = format!("/proc/{}/task", self.pid());
        let mut usage = Usage {
            cpu_ticks,
            voluntary: 0,
            involuntary: 0,
            threads: 0,
        };
        for entry in std::fs::read_dir(&tasks).map_err(|e| format!("{tasks}: {e}"))? {
            let entry = entry.map_err(|e| format!("{tasks}: {e}"))?;
            let status = read_proc(&entry.path().join("status").to_string_lossy())?;
            usage.voluntary += status_field(&status, "voluntary_ctxt_switches:").unwrap_or(0);
            usage.involuntary += status_field(&status, "nonvoluntary_ctxt_switches:").unwrap_or(0);
            usage.threads += 1;
        }
        Ok(usage)
    }

    /// SIGTERM, then waits; returns what the daemon logged.
    fn stop(mut self) -> Result<String, String> {
        let pid = Pid::from_raw(i32::try_from(self.pid()).map_err(|e| e.to_string())?);
        kill(pid, Signal::SIGTERM).map_err(|e| format!("SIGTERM the daemon: {e}"))?;
        let status = self
            .child
            .wait()
            .map_err(|e| format!("wait for the daemon: {e}"))?;
        let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        if !status.success() {
            return Err(format!("the daemon exited with {status}; stderr:\n{log}"));
        }
        Ok(log)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // After stop() this finds the child reaped and does nothing.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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

/// One table line: min, median, p99, max, and the target.
fn row(label: &str, samples: &mut [Duration], target: &str) -> String {
    samples.sort_unstable();
    let Some((&min, &max)) = samples.first().zip(samples.last()) else {
        return format!("{label:<40} no samples");
    };
    format!(
        "{label:<40} {:>9} {:>9} {:>9} {:>9}   {target}",
        fmt_us(min),
        fmt_us(percentile(samples, 50)),
        fmt_us(percentile(samples, 99)),
        fmt_us(max)
    )
}

/// Nearest-rank percentile of sorted, non-empty samples.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

fn fmt_us(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.1} us")
    }
}

fn fmt_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
