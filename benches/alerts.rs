//! Do webhooks and metrics slow the guard down? The real `fwdguard run` undoes drops of
//! `net.ipv4.conf.all.forwarding` in a private network namespace, four times over, each with a
//! fresh daemon:
//!
//! 1. the guard alone;
//! 2. with two webhooks (`json` and `alertmanager`) whose server accepts connections and never
//!    answers, and flapping detection out of reach (fewer drops per second than
//!    `flap-threshold`), so every drop is a report for them;
//! 3. with `/metrics` scraped 1000 times a second;
//! 4. with both.
//!
//! It prints, never asserts, how long forwarding stays at 0 (median and p99, back to back and
//! with 1 ms between drops) and each run's ratio to the first; then the RSS of a daemon with
//! two webhooks and metrics, and its wake-ups over 5 idle seconds.
//!
//! ```text
//! cargo bench --bench alerts
//! ```
//!
//! Root or unprivileged user namespaces needed. The host's knobs are never written: the
//! process enters its own network namespace before anything else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fwdguard::commands::demo::{knock, pin_to_cpu};
use fwdguard::sandbox::PrivateNetns;

const BIN: &str = env!("CARGO_BIN_EXE_fwdguard");
const ALL_FORWARDING: &str = "/proc/sys/net/ipv4/conf/all/forwarding";
/// Drops per phase, warm-up included, stay under `flap-threshold` (at most 1000) within
/// `flap-window` (1 s): every drop is a report for the webhooks, none is folded into flapping.
const WARM_UP: usize = 90;
const DROPS: usize = 900;
const GAP: Duration = Duration::from_millis(1);
const SCRAPES_PER_SECOND: u64 = 1_000;
const IDLE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alerts bench: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Case {
    name: &'static str,
    hanging_webhooks: bool,
    scrapes: bool,
}

fn run() -> Result<(), String> {
    let netns = PrivateNetns::enter_process().map_err(|e| e.to_string())?;
    netns.verify().map_err(|e| e.to_string())?;
    println!(
        "fwdguard alerts benchmark, in a private network namespace net:[{}] (the host's is net:[{}])",
        netns.private, netns.host
    );
    let up = netns
        .command("ip")
        .map_err(|e| e.to_string())?
        .args(["link", "set", "lo", "up"])
        .status()
        .map_err(|e| format!("ip link set lo up: {e}"))?;
    if !up.success() {
        return Err("cannot bring up lo in the namespace".into());
    }
    // The server that never answers and the scraper run unpinned, started before this thread
    // pins itself (threads inherit the affinity of their creator).
    let hanging = hanging_server()?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let pinned = cpus >= 2 && pin_to_cpu(0).is_ok();
    println!(
        "pinning: {}",
        if pinned {
            "writer on CPU 0, daemon on CPU 1 (taskset -c 1); server and scraper unpinned"
        } else {
            "none (fewer than 2 CPUs)"
        }
    );

    let cases = [
        Case {
            name: "guard alone",
            hanging_webhooks: false,
            scrapes: false,
        },
        Case {
            name: "2 hanging webhooks",
            hanging_webhooks: true,
            scrapes: false,
        },
        Case {
            name: "1000 scrapes/s",
            hanging_webhooks: false,
            scrapes: true,
        },
        Case {
            name: "both",
            hanging_webhooks: true,
            scrapes: true,
        },
    ];
    println!(
        "\n{:<22} {:>31} {:>31}   scrapes/s",
        "time at 0", "back to back: median     p99", "1 ms apart: median     p99"
    );
    let mut base: Option<[Duration; 4]> = None;
    for case in &cases {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let metrics = free_addr()?;
        let config = config(
            case.hanging_webhooks.then_some(hanging),
            case.scrapes.then_some(metrics),
        );
        let daemon = Daemon::spawn(&netns, dir.path(), &config, pinned)?;
        let scraper = case.scrapes.then(|| Scraper::start(metrics));
        let mut fast = times(0)?;
        // A quiet window between the phases, so the flapping window starts empty.
        std::thread::sleep(Duration::from_millis(1100));
        let mut slow = times(1)?;
        let scraped = scraper.map(Scraper::stop);
        let figures = [
            percentile(&mut fast, 50),
            percentile(&mut fast, 99),
            percentile(&mut slow, 50),
            percentile(&mut slow, 99),
        ];
        let ratio = |i: usize| {
            base.map_or(String::new(), |b| {
                format!(" ({:+.0}%)", 100.0 * (ratio(figures[i], b[i]) - 1.0))
            })
        };
        println!(
            "{:<22} {:>9}{:<6} {:>9}{:<6} {:>9}{:<6} {:>9}{:<6} {}",
            case.name,
            us(figures[0]),
            ratio(0),
            us(figures[1]),
            ratio(1),
            us(figures[2]),
            ratio(2),
            us(figures[3]),
            ratio(3),
            scraped.map_or("-".into(), |r| format!("{r:.0}"))
        );
        base.get_or_insert(figures);
        daemon.stop();
    }

    // Memory and idleness with two webhooks and metrics configured, nothing to send.
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let metrics = free_addr()?;
    let daemon = Daemon::spawn(
        &netns,
        dir.path(),
        &config(Some(hanging), Some(metrics)),
        pinned,
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_start = daemon.rss_kib()?;
    let before = daemon.wakeups()?;
    std::thread::sleep(IDLE);
    let after = daemon.wakeups()?;
    println!(
        "\ndaemon with 2 webhooks and metrics: RSS {:.1} MiB after start; idle {}s: {} wake-ups over {} threads",
        rss_start as f64 / 1024.0,
        IDLE.as_secs(),
        after.0 - before.0,
        after.1
    );
    for _ in 0..WARM_UP {
        knock(Path::new(ALL_FORWARDING), Duration::from_secs(2)).map_err(|e| e.to_string())?;
    }
    println!(
        "   RSS {:.1} MiB after {WARM_UP} restores, each a report queued for both (hanging) webhooks",
        daemon.rss_kib()? as f64 / 1024.0
    );
    daemon.stop();
    Ok(())
}

fn config(hanging: Option<SocketAddr>, metrics: Option<SocketAddr>) -> String {
    let mut c = String::from(
        "reread-interval = \"30s\"\nflap-threshold = 1000\nflap-window = \"1s\"\n\n[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = \"1\"\n",
    );
    if let Some(addr) = hanging {
        c.push_str(&format!(
            "\n[[webhook]]\nformat = \"json\"\nurl = \"http://{addr}/hook\"\ntimeout = \"1m\"\n\n[[webhook]]\nformat = \"alertmanager\"\nurl = \"http://{addr}\"\ntimeout = \"1m\"\n"
        ));
    }
    if let Some(addr) = metrics {
        c.push_str(&format!("\n[metrics]\nlisten = \"{addr}\"\n"));
    }
    c
}

/// Drops after a warm-up, each `gap_ms` after the last restore.
fn times(gap_ms: u64) -> Result<Vec<Duration>, String> {
    let mut out = Vec::with_capacity(DROPS);
    for i in 0..WARM_UP + DROPS {
        let t = knock(Path::new(ALL_FORWARDING), Duration::from_secs(2))
            .map_err(|e| e.to_string())?
            .ok_or("a drop was not restored within 2 s")?;
        if i >= WARM_UP {
            out.push(t);
        }
        if gap_ms > 0 {
            std::thread::sleep(GAP);
        }
    }
    Ok(out)
}

fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    samples[(samples.len() * p / 100).min(samples.len() - 1)]
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn us(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

fn free_addr() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("free port: {e}"))
}

/// Accepts connections, reads what comes, never answers.
fn hanging_server() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    Ok(addr)
}

/// GETs /metrics at a steady rate on a thread of its own.
struct Scraper {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    started: Instant,
    thread: std::thread::JoinHandle<()>,
}

impl Scraper {
    fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let (s, d) = (stop.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let period = Duration::from_nanos(1_000_000_000 / SCRAPES_PER_SECOND);
            let mut next = Instant::now();
            let mut body = Vec::with_capacity(16 * 1024);
            while !s.load(Ordering::Relaxed) {
                if let Ok(mut c) = TcpStream::connect(addr) {
                    let _ = c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
                    body.clear();
                    let ok = c.read_to_end(&mut body).is_ok()
                        && body.get(8..13).is_some_and(|s| s == b" 200 ");
                    if ok {
                        d.fetch_add(1, Ordering::Relaxed);
                    }
                }
                next += period;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        });
        Self {
            stop,
            done,
            started: Instant::now(),
            thread,
        }
    }

    /// Stops; the rate achieved.
    fn stop(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.done.load(Ordering::Relaxed) as f64 / self.started.elapsed().as_secs_f64()
    }
}

struct Daemon {
    child: Child,
}

impl Daemon {
    /// Starts the daemon on `config` and waits until it holds the knob at 1.
    fn spawn(netns: &PrivateNetns, dir: &Path, config: &str, pinned: bool) -> Result<Self, String> {
        let path = dir.join("fwdguard.toml");
        std::fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
        netns
            .write(ALL_FORWARDING, "0")
            .map_err(|e| e.to_string())?;
        let mut cmd = if pinned {
            let mut c = netns.command("taskset").map_err(|e| e.to_string())?;
            c.args(["-c", "1", BIN]);
            c
        } else {
            netns.command(BIN).map_err(|e| e.to_string())?
        };
        let child = cmd
            .arg("run")
            .arg("-c")
            .arg(&path)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn the daemon: {e}"))?;
        let start = Instant::now();
        while std::fs::read_to_string(ALL_FORWARDING)
            .map_err(|e| e.to_string())?
            .trim()
            != "1"
        {
            if start.elapsed() > Duration::from_secs(5) {
                return Err("the daemon did not restore forwarding within 5 s".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Self { child })
    }

    fn rss_kib(&self) -> Result<u64, String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .map_err(|e| e.to_string())?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| "no VmRSS".into())
    }

    /// Context switches summed over all threads, and the thread count.
    fn wakeups(&self) -> Result<(u64, usize), String> {
        let tasks = format!("/proc/{}/task", self.child.id());
        let mut total = 0;
        let mut threads = 0;
        for entry in std::fs::read_dir(&tasks).map_err(|e| format!("{tasks}: {e}"))? {
            let path = entry.map_err(|e| e.to_string())?.path().join("status");
            let status = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            for field in ["voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"] {
                total += status
                    .lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
            }
            threads += 1;
        }
        Ok((total, threads))
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
