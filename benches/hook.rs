//! What the BPF sysctl hook (`action = "prevent"`) costs and what it buys.
//!
//! Run it as root with
//!
//! ```text
//! cargo bench --bench hook
//! ```
//!
//! It enters a private network namespace first (the host's knobs are never written), creates a
//! cgroup v2 child of its own, moves itself into it and attaches the hook there (never at the
//! root, never to a cgroup it did not create), exactly as `fwdguard run` would with
//! `FWDGUARD_BPF_CGROUP` set. It prints, never asserts:
//!
//! 1. time at 0 under `prevent`: a writer on one CPU writes `0` to `ip_forward` in a loop while
//!    a reader on another CPU reads it; how many reads saw 0;
//! 2. the writer's `pwrite()` cost (a kept descriptor, offset 0) without the hook and with it,
//!    for the guarded key (writes of `1`, which pass; writes of `0`, which are replaced and
//!    reported) and for an unguarded key (`ip_default_ttl`).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use fwdguard::bpf::{Hook, Mode, Options, Target};
use fwdguard::commands::demo::pin_to_cpu;
use fwdguard::sandbox::PrivateNetns;

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const TTL: &str = "/proc/sys/net/ipv4/ip_default_ttl";
const STORM: usize = 100_000;
const OPS: usize = 10_000;
const RUNS: usize = 7;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hook bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The bench's own cgroup; the bench moves back out and removes it at the end.
struct BenchCgroup {
    path: PathBuf,
    home: PathBuf,
}

impl BenchCgroup {
    fn enter() -> Result<Self, String> {
        let mountinfo =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
        let root = fwdguard::bpf::cgroup::cgroup2_mount_point(&mountinfo)
            .ok_or("cgroup2 is not mounted")?;
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("no cgroup v2 line in /proc/self/cgroup")?;
        let home = root.join(rel.trim_start_matches('/'));
        let path = root.join(format!("fwdguard-bench-{}", std::process::id()));
        std::fs::create_dir(&path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        std::fs::write(path.join("cgroup.procs"), "0").map_err(|e| format!("join: {e}"))?;
        Ok(Self { path, home })
    }
}

impl Drop for BenchCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.home.join("cgroup.procs"), "0");
        let _ = std::fs::remove_dir(&self.path);
    }
}

fn run() -> Result<(), String> {
    let netns = PrivateNetns::enter_process().map_err(|e| e.to_string())?;
    netns.verify().map_err(|e| e.to_string())?;
    println!(
        "fwdguard hook benchmark, in a private network namespace net:[{}] (the host's is net:[{}])",
        netns.private, netns.host
    );
    let cgroup = BenchCgroup::enter()?;
    netns.write(IP_FORWARD, "1").map_err(|e| e.to_string())?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    let knob = OpenOptions::new()
        .read(true)
        .write(true)
        .open(IP_FORWARD)
        .map_err(|e| e.to_string())?;
    let ttl = OpenOptions::new()
        .read(true)
        .write(true)
        .open(TTL)
        .map_err(|e| e.to_string())?;
    let without = [median_ns(&knob, b"1\n"), f64::NAN, median_ns(&ttl, b"64\n")];

    let attempts = Arc::new(AtomicU64::new(0));
    let counted = attempts.clone();
    let options = Options {
        cgroup: Some(cgroup.path.clone()),
        fault: None,
    };
    let targets = [Target {
        name: "net/ipv4/conf/all/forwarding".into(),
        want: "1".into(),
        mode: Mode::Prevent,
    }];
    let hook = Hook::attach(&targets, &options, move |_| {
        counted.fetch_add(1, Ordering::Relaxed);
    })
    .map_err(|e| e.to_string())?;
    println!(
        "hook attached to {} (probe passed)\n",
        cgroup.path.display()
    );

    // 1. Time at 0.
    let (reads, zeros, secs) = storm(&knob, cpus)?;
    println!(
        "time at 0 under prevent: {zeros} of {reads} reads saw 0 while {STORM} writes of \"0\" ran ({:.0} writes/s){}",
        STORM as f64 / secs,
        if cpus < 2 {
            " (one CPU: reader and writer share it)"
        } else {
            ""
        }
    );

    // 2. write() cost.
    let with = [
        median_ns(&knob, b"1\n"),
        median_ns(&knob, b"0\n"),
        median_ns(&ttl, b"64\n"),
    ];
    drop(hook);
    // The baseline again, detached: noise from other load shows as a difference between the two.
    let after = [median_ns(&knob, b"1\n"), f64::NAN, median_ns(&ttl, b"64\n")];
    let reported = attempts.load(Ordering::Relaxed);
    println!(
        "attempts reported: {reported} (the ring buffer drops events under a flood; the verdict never depends on them)\n"
    );
    println!(
        "| pwrite(), fd kept, median of {RUNS} x {OPS} | no hook (before / after) | hook (prevent) |"
    );
    println!("|---|---|---|");
    for (what, i) in [
        ("guarded `ip_forward`, writing `1` (passes, no event)", 0),
        ("guarded `ip_forward`, writing `0` (replaced, event)", 1),
        ("unguarded `ip_default_ttl`", 2),
    ] {
        let before = if without[i].is_nan() {
            "n/a (would drop the knob)".to_owned()
        } else {
            format!("{:.0} / {:.0} ns", without[i], after[i])
        };
        println!("| {what} | {before} | {:.0} ns |", with[i]);
    }
    netns.verify().map_err(|e| e.to_string())?;
    Ok(())
}

/// Median ns per `pwrite(value)` at offset 0 over `RUNS` runs of `OPS` writes.
fn median_ns(f: &File, value: &[u8]) -> f64 {
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..OPS {
                let _ = f.write_at(value, 0);
            }
            start.elapsed().as_nanos() as f64 / OPS as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[RUNS / 2]
}

/// A writer thread (CPU 0) writes "0" `STORM` times; a reader thread (CPU 1) reads meanwhile.
/// Returns (reads, reads that saw 0, writer seconds).
fn storm(knob: &File, cpus: usize) -> Result<(u64, u64, f64), String> {
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        let f = knob.try_clone().map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            if cpus > 1 {
                let _ = pin_to_cpu(1);
            }
            let (mut reads, mut zeros) = (0u64, 0u64);
            let mut buf = [0u8; 8];
            while !done.load(Ordering::Relaxed) {
                if let Ok(n) = f.read_at(&mut buf, 0) {
                    reads += 1;
                    zeros += u64::from(buf[..n].starts_with(b"0"));
                }
            }
            (reads, zeros)
        })
    };
    let writer = {
        let f = knob.try_clone().map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            let _ = pin_to_cpu(0);
            let start = Instant::now();
            for _ in 0..STORM {
                let _ = f.write_at(b"0\n", 0);
            }
            start.elapsed().as_secs_f64()
        })
    };
    let secs = writer.join().map_err(|_| "writer panicked")?;
    done.store(true, Ordering::Relaxed);
    let (reads, zeros) = reader.join().map_err(|_| "reader panicked")?;
    Ok((reads, zeros, secs))
}
