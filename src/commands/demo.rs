//! `fwdguard demo`: the guard at work in a private network namespace. It knocks forwarding to 0
//! the ways `network stop` and `sysctl -w` do and shows what fwdguard saw, what it did, and how
//! long the knob stayed at 0 as measured from outside the daemon.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::EXIT_FAILURE;
use crate::config::Config;
use crate::daemon::{self, Setup};
use crate::report::{Report, Sink, human};
use crate::sandbox::PrivateNetns;

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const ALL_FORWARDING: &str = "/proc/sys/net/ipv4/conf/all/forwarding";
/// A knob not back within this long is reported as not restored.
const GIVE_UP: Duration = Duration::from_secs(2);

/// Reports, handed to the demo's main thread.
struct Channel(mpsc::Sender<Report>);

impl Sink for Channel {
    fn emit(&mut self, report: &Report) {
        let _ = self.0.send(report.clone());
    }

    fn name(&self) -> String {
        "demo".into()
    }
}

/// Writes `0` to `path` and reads it back until it shows `1` again: how long a reader on
/// another CPU saw the knob down, from just before the write. `None` if not back in `give_up`.
pub fn knock(path: &Path, give_up: Duration) -> io::Result<Option<Duration>> {
    let mut reader = OpenOptions::new().read(true).open(path)?;
    let mut writer = OpenOptions::new().write(true).open(path)?;
    let mut buf = [0u8; 8];
    let start = Instant::now();
    writer.write_all(b"0\n")?;
    loop {
        reader.rewind()?;
        let n = reader.read(&mut buf)?;
        if buf[..n].starts_with(b"1") {
            return Ok(Some(start.elapsed()));
        }
        if start.elapsed() > give_up {
            return Ok(None);
        }
    }
}

/// Pins the calling thread to one CPU, so writer and guard do not fight over a core.
pub fn pin_to_cpu(cpu: usize) -> nix::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
}

/// sysctl(8), also where a normal user's PATH does not look (`/usr/sbin`, `/sbin`).
fn find_sysctl() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join("sysctl"))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `fwdguard demo`: runs the demo and says why it could not; the process must not have
/// started threads yet.
pub fn run(bursts: usize) -> u8 {
    match show(bursts) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("fwdguard demo: {e}");
            EXIT_FAILURE
        }
    }
}

fn show(bursts: usize) -> Result<(), String> {
    let netns = PrivateNetns::enter_process().map_err(|e| e.to_string())?;
    println!(
        "fwdguard demo: in a private network namespace net:[{}] (this host's is net:[{}]); nothing outside it is touched.\n",
        netns.private, netns.host
    );
    let two_cpus = cpus() >= 2;
    if two_cpus {
        let _ = pin_to_cpu(0);
    }

    netns.verify().map_err(|e| e.to_string())?;
    std::fs::write(ALL_FORWARDING, "0\n").map_err(|e| format!("{ALL_FORWARDING}: {e}"))?;
    // No BPF hook: the demo shows the restorer, and attaches nothing outside its namespace.
    let config = Config {
        bpf_hook: false,
        ..Config::default()
    };
    println!("Forwarding is 0 in the namespace. Starting the guard with the built-in default:");
    for g in &config.guards {
        println!(
            "  keep {} = {}, action {}",
            g.key,
            g.want,
            g.action.as_str()
        );
    }

    let (tx, reports) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let guard = std::thread::spawn(move || -> Result<(), String> {
        if two_cpus {
            let _ = pin_to_cpu(1);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let setup = Setup::new(config, None, Box::new(Channel(tx)));
        rt.block_on(daemon::run(setup, async {
            let _ = stop_rx.await;
        }))
        .map_err(|e| e.to_string())
    });

    let show = |wait: Duration| {
        let mut first = true;
        while let Ok(r) = reports.recv_timeout(if first {
            wait
        } else {
            Duration::from_millis(20)
        }) {
            println!("    fwdguard: {r}");
            first = false;
        }
    };
    show(GIVE_UP);
    println!("  guard up after {}\n", human(started.elapsed()));

    let mut failed = 0;
    let mut single = |n: usize, what: &str, path: &str| {
        print!("knock {n}: {what}");
        match knock(Path::new(path), GIVE_UP) {
            Ok(Some(d)) => println!(
                "\n    at 0 for {} (from the write to a reader seeing 1)",
                human(d)
            ),
            Ok(None) => {
                failed += 1;
                println!("\n    NOT restored within {}", human(GIVE_UP));
            }
            Err(e) => {
                failed += 1;
                println!("\n    {path}: {e}");
            }
        }
        show(Duration::from_millis(200));
    };
    single(1, "echo 0 > /proc/sys/net/ipv4/ip_forward", IP_FORWARD);
    single(
        2,
        "echo 0 > /proc/sys/net/ipv4/conf/all/forwarding",
        ALL_FORWARDING,
    );

    print!(
        "knock 3: sysctl -w net.ipv4.ip_forward=0 (what `systemctl restart network` runs on CentOS/RHEL)"
    );
    match find_sysctl().map(|p| {
        Command::new(p)
            .args(["-q", "-w", "net.ipv4.ip_forward=0"])
            .status()
    }) {
        Some(Ok(s)) if s.success() => println!(),
        Some(Ok(s)) => println!("\n    sysctl failed: {s}"),
        Some(Err(e)) => println!("\n    sysctl(8) could not be run ({e}); skipped"),
        None => {
            println!("\n    sysctl(8) is not installed (not in PATH, /usr/sbin or /sbin); skipped")
        }
    }
    show(Duration::from_millis(500));

    println!("\nknock 4: {bursts} writes of 0 in a row, each as soon as the last was undone");
    let mut times = Vec::with_capacity(bursts);
    for _ in 0..bursts {
        match knock(Path::new(ALL_FORWARDING), GIVE_UP) {
            Ok(Some(d)) => times.push(d),
            _ => failed += 1,
        }
    }
    if !times.is_empty() {
        times.sort();
        let pct = |p: usize| times[(times.len() - 1) * p / 100];
        println!(
            "    at 0 for: min {}, median {}, p99 {}, max {} over {} drops{}",
            human(times[0]),
            human(pct(50)),
            human(pct(99)),
            human(times[times.len() - 1]),
            times.len(),
            if two_cpus {
                " (writer and guard on different CPUs)"
            } else {
                ""
            }
        );
    }
    show(Duration::from_millis(200));

    let _ = stop_tx.send(());
    guard
        .join()
        .map_err(|_| "the guard thread panicked".to_owned())??;
    let end =
        std::fs::read_to_string(ALL_FORWARDING).map_err(|e| format!("{ALL_FORWARDING}: {e}"))?;
    println!(
        "\nnet.ipv4.conf.all.forwarding = {} at the end.",
        end.trim()
    );
    if failed > 0 || end.trim() != "1" {
        return Err(format!("{failed} knocks were not restored"));
    }
    println!(
        "Every drop was undone. On a real host: `fwdguard run` (or the systemd unit) does this for the host's own knobs."
    );
    Ok(())
}
