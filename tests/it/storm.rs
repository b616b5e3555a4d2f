//! A storm of drops against the real daemon, with the outputs a service has under systemd: a
//! journal socket that is read slowly and a notify socket that nobody reads while it lasts.
//! What an operator must see afterwards: forwarding on, a handful of reports rather than one
//! per drop, and the daemon's memory where it was.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use fwdguard::sandbox::PrivateNetns;

const IPV6_ALL_FORWARDING: &str = "/proc/sys/net/ipv6/conf/all/forwarding";
/// The three ways to turn forwarding off; `ip_forward` and `conf/all/forwarding` are one knob.
const PATHS: [&str; 3] = [IP_FORWARD, ALL_FORWARDING, IPV6_ALL_FORWARDING];
/// Writes of 0 per path, one writer thread per path.
const WRITES_PER_PATH: usize = 34_000;
/// "Right within milliseconds": from the last write returning to every knob reading 1.
const SETTLED_WITHIN: Duration = Duration::from_millis(100);
/// Reports and log lines allowed for the whole storm: the first few drops of each key, one
/// flapping report per key, lost events, lost entries. Without coalescing the slow reader
/// alone would take in about one entry per millisecond of the storm.
const MAX_ENTRIES: usize = 60;
/// Growth of the daemon's resident memory allowed over the storm.
const MAX_RSS_GROWTH_KIB: u64 = 2 * 1024;
/// `MESSAGE_ID` of the notice that entries were dropped while the journal was not reading.
const OUTPUT_LOST: &str = "d5c2a0e4b7f14f7c9a1e3b6d8c0f2a47";
/// Time the journal reader takes per entry: a journald that keeps up, slowly.
const JOURNAL_READ_PAUSE: Duration = Duration::from_millis(1);

/// Guards both forwarding knobs (`ip_forward` by its usual name) and never re-reads on a
/// timer within the test: only events can undo the drops.
const CONFIG: &str = r#"reread-interval = "1h"

[[guard]]
key = "net.ipv4.ip_forward"
value = "1"

[[guard]]
key = "net.ipv6.conf.all.forwarding"
value = "1"
"#;

/// Reads the fake journal slowly on a thread of its own until told to stop; returns the
/// `MESSAGE` (or `MESSAGE_ID`) of every entry it got.
fn slow_reader(
    journal: FakeJournal,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        // The whole journal, not only its socket: its directory must outlive the daemon.
        let journal = journal;
        let mut entries = Vec::new();
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            // tracing-journald sends an empty datagram at start to probe the socket.
            if let Ok(n @ 1..) = journal.socket.recv(&mut buf) {
                let f = journal_fields(&buf[..n]);
                entries.push(
                    f.get("MESSAGE")
                        .or_else(|| f.get("MESSAGE_ID"))
                        .cloned()
                        .unwrap_or_default(),
                );
                std::thread::sleep(JOURNAL_READ_PAUSE);
            }
        }
        entries
    })
}

/// One writer per path, each with a descriptor opened once and `pwrite("0\n")` at offset 0
/// (with `kernel.sysctl_writes_strict=1` a write at a later offset is silently ignored).
/// Returns when every writer is done.
fn storm(ns: &PrivateNetns) {
    let writers: Vec<_> = PATHS
        .iter()
        .map(|&path| {
            let ns = *ns;
            // Threads inherit the spawning thread's network namespace; each checks anyway.
            std::thread::spawn(move || {
                ns.verify().expect("writer in the private namespace");
                let knob = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .unwrap_or_else(|e| panic!("open {path}: {e}"));
                for _ in 0..WRITES_PER_PATH {
                    knob.write_all_at(b"0\n", 0)
                        .unwrap_or_else(|e| panic!("write {path}: {e}"));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
}

/// One storm at a time: the two tests would otherwise share two CPUs with each other's writers
/// and daemons, and the time to settle would measure that.
static ONE_STORM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Starts the guard with `journal` as its journal, runs the storm, and checks what must hold
/// whoever reads the outputs: every knob back at 1 within `SETTLED_WITHIN` of the last write
/// and staying there, a later drop undone at once, and VmRSS near where it started.
fn storm_against_the_daemon(ns: &PrivateNetns, daemon: &mut Daemon) {
    daemon.wait_notify("READY=1", Duration::from_secs(5));
    let pid = daemon.child.id();
    let rss_start = status_kib(pid, "VmRSS:");

    // From here on the notify socket is not read (the harness reads it only when asked).
    let started = Instant::now();
    storm(ns);
    let ended = Instant::now();

    let all_one = || PATHS.iter().all(|p| read(p) == "1");
    let give_up = ended + Duration::from_secs(2);
    while !all_one() && Instant::now() < give_up {
        std::thread::sleep(Duration::from_micros(200));
    }
    let settled = ended.elapsed();
    let knobs: Vec<String> = PATHS.iter().map(|p| format!("{p}={}", read(p))).collect();
    eprintln!(
        "{} writes of 0 in {:?}; knobs {knobs:?} {settled:?} after the last one",
        PATHS.len() * WRITES_PER_PATH,
        ended - started
    );
    assert!(
        all_one(),
        "forwarding still off {settled:?} after the storm: {knobs:?}; the daemon is stuck or gave up\nstderr:\n{}",
        daemon.stderr()
    );
    assert!(
        settled <= SETTLED_WITHIN,
        "forwarding back on only {settled:?} after the storm (want <= {SETTLED_WITHIN:?})"
    );
    std::thread::sleep(Duration::from_millis(50));
    assert!(all_one(), "nothing left pending flips a knob later");

    ns.write(ALL_FORWARDING, "0").expect("write");
    wait_forwarding_on("a drop after the storm undone", SECOND);

    let rss_end = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");
    eprintln!("daemon VmRSS {rss_start} kB before, {rss_end} kB after (VmHWM {hwm} kB)");
    assert!(
        rss_end <= rss_start + MAX_RSS_GROWTH_KIB,
        "VmRSS grew from {rss_start} kB to {rss_end} kB over the storm"
    );
    assert!(
        daemon.child.try_wait().expect("wait").is_none(),
        "the daemon died"
    );
}

/// journald stalled (it happens on a busy host) and the service manager not reading either:
/// the guard must go on restoring and drop what it cannot send.
#[test]
fn a_storm_with_nobody_reading_journal_or_notify_ends_right() {
    in_private_netns(
        "a_storm_with_nobody_reading_journal_or_notify_ends_right",
        |ns| {
            let _one = ONE_STORM.lock().unwrap_or_else(|e| e.into_inner());
            for path in PATHS {
                ns.write(path, "1").expect("write");
            }
            let journal = FakeJournal::bind();
            let mut d = journal.start_daemon(CONFIG);
            storm_against_the_daemon(ns, &mut d);

            // journald reads again: what it got, plus what the daemon says it dropped, is
            // still a handful: the drops were coalesced before the queue was full.
            let (mut entries, mut dropped) = (0, 0);
            let mut buf = vec![0u8; 65536];
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(1500) {
                let Ok(n @ 1..) = journal.socket.recv(&mut buf) else {
                    continue;
                };
                let f = journal_fields(&buf[..n]);
                if f.get("MESSAGE_ID").map(String::as_str) == Some(OUTPUT_LOST) {
                    dropped += f["FWDGUARD_COUNT"].parse::<usize>().expect("a count");
                    break;
                }
                entries += 1;
            }
            eprintln!("journal: {entries} entries received, {dropped} reported dropped");
            assert!(
                entries + dropped <= MAX_ENTRIES,
                "{entries} journal entries received and {dropped} dropped for one storm: reports are not coalesced"
            );
        },
    );
}

/// journald keeping up, slowly: the storm is told in a few entries (the first drops of each
/// key, then flapping), not one per drop.
#[test]
fn a_storm_is_reported_in_a_few_journal_entries() {
    in_private_netns("a_storm_is_reported_in_a_few_journal_entries", |ns| {
        let _one = ONE_STORM.lock().unwrap_or_else(|e| e.into_inner());
        for path in PATHS {
            ns.write(path, "1").expect("write");
        }
        let journal = FakeJournal::bind();
        let mut d = journal.start_daemon(CONFIG);
        let stop = Arc::new(AtomicBool::new(false));
        let reader = slow_reader(journal, stop.clone());
        storm_against_the_daemon(ns, &mut d);

        // Let the reader take in what is still queued, then count.
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let entries = reader.join().expect("journal reader");
        let stderr = d.stderr();
        let lines = stderr.lines().count();
        eprintln!(
            "{} journal entries, {lines} stderr lines: {entries:#?}",
            entries.len()
        );
        assert!(
            entries.len() + lines <= MAX_ENTRIES,
            "{} journal entries and {lines} stderr lines for one storm: reports are not coalesced\nentries: {entries:#?}\nstderr:\n{stderr}",
            entries.len()
        );
        // Each key's part of the storm was told (its first drops, flapping, or writes that
        // did not stick while the writers kept at it); which of these depends on the race.
        for key in [
            "net.ipv4.conf.all.forwarding",
            "net.ipv6.conf.all.forwarding",
        ] {
            assert!(
                entries
                    .iter()
                    .any(|e| e.contains(key) && !e.starts_with("guarding")),
                "the storm on {key} is not reported: {entries:#?}"
            );
        }
    });
}
