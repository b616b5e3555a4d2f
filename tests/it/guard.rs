//! The real daemon in a private network namespace: what an operator would see through
//! `/proc/sys`, stderr and the service manager's notify socket.

use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;

/// Starts a guard with `action`, forwarding at 1, and waits until it is ready.
fn ready_guard(ns: &fwdguard::sandbox::PrivateNetns, action: &str) -> Daemon {
    ns.write(ALL_FORWARDING, "1").expect("write");
    Daemon::start(&forwarding_config(action)).ready()
}

#[test]
fn restores_after_a_write_to_ip_forward() {
    in_private_netns("restores_after_a_write_to_ip_forward", |ns| {
        let d = ready_guard(ns, "restore");
        ns.write(IP_FORWARD, "0").expect("write");
        wait_forwarding_on("forwarding back at 1", SECOND);
        d.wait_stderr("net.ipv4.conf.all.forwarding was 0, restored to 1", SECOND);
        d.wait_stderr("(seen via netconf)", SECOND);
    });
}

#[test]
fn restores_after_a_write_to_conf_all_forwarding() {
    in_private_netns("restores_after_a_write_to_conf_all_forwarding", |ns| {
        let d = ready_guard(ns, "restore");
        knock_and_wait(ns, 3);
        d.wait_stderr("was 0, restored to 1", SECOND);
        assert_eq!(read(IP_FORWARD), "1");
    });
}

#[test]
fn restores_after_sysctl_w_as_network_stop_runs_it() {
    in_private_netns("restores_after_sysctl_w_as_network_stop_runs_it", |ns| {
        let d = ready_guard(ns, "restore");
        let status = ns
            .command("sysctl")
            .expect("private")
            .args(["-q", "-w", "net.ipv4.ip_forward=0"])
            .status()
            .expect("sysctl(8) is installed (procps)");
        assert!(status.success());
        wait_forwarding_on("forwarding back at 1", SECOND);
        d.wait_stderr("was 0, restored to 1", SECOND);
    });
}

#[test]
fn alert_mode_leaves_the_zero_and_reports_drop_and_recovery() {
    in_private_netns(
        "alert_mode_leaves_the_zero_and_reports_drop_and_recovery",
        |ns| {
            let d = ready_guard(ns, "alert");
            ns.write(ALL_FORWARDING, "0").expect("write");
            d.wait_stderr(
            "net.ipv4.conf.all.forwarding is 0, want 1; action is alert, not changing it (seen via netconf)",
            SECOND,
        );
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(read(ALL_FORWARDING), "0", "alert must not write");
            ns.write(ALL_FORWARDING, "1").expect("write");
            d.wait_stderr("is back at 1 after", SECOND);
            assert!(d.stderr().contains("set by someone else"));
        },
    );
}

#[test]
fn a_zero_at_start_is_fixed_before_ready() {
    in_private_netns("a_zero_at_start_is_fixed_before_ready", |ns| {
        ns.write(ALL_FORWARDING, "0").expect("write");
        let d = Daemon::start(&forwarding_config("restore")).ready();
        // Read the moment READY arrives: no event could have been needed.
        assert_eq!(read(ALL_FORWARDING), "1");
        // stderr is written by a thread of its own, so it may lag READY a little.
        d.wait_stderr("was 0, restored to 1 in", SECOND);
        d.wait_stderr("(seen via startup)", SECOND);
    });
}

#[test]
fn notify_socket_gets_ready_status_watchdog_reloading_and_stopping() {
    in_private_netns(
        "notify_socket_gets_ready_status_watchdog_reloading_and_stopping",
        |ns| {
            ns.write(ALL_FORWARDING, "1").expect("write");
            let mut d = Daemon::start_with(&forwarding_config("restore"), |cmd, _| {
                cmd.env("WATCHDOG_USEC", "200000");
            });
            let ready = d.wait_notify("READY=1", 5 * SECOND);
            assert!(
                ready.contains("STATUS=guarding 1 key: 1 holding; 0 restores"),
                "{ready}"
            );
            // Pings at half the watchdog timeout: several within a second.
            let start = Instant::now();
            d.clear_notes();
            for _ in 0..3 {
                d.wait_notify("WATCHDOG=1", SECOND);
                d.notes.retain(|n| !n.contains("WATCHDOG=1"));
            }
            assert!(start.elapsed() < SECOND);

            ns.write(ALL_FORWARDING, "0").expect("write");
            wait_forwarding_on("restore", SECOND);
            let status = d.wait_notify_containing("1 restores", SECOND);
            assert!(
                status.contains("last: net.ipv4.conf.all.forwarding was 0, restored to 1"),
                "{status}"
            );

            d.clear_notes();
            d.signal(Signal::SIGHUP);
            let reloading = d.wait_notify("RELOADING=1", SECOND);
            let usec = reloading
                .lines()
                .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
                .expect("MONOTONIC_USEC with RELOADING=1");
            assert!(usec.parse::<u64>().expect("a number") > 0);
            d.wait_notify("READY=1", SECOND);

            d.signal(Signal::SIGTERM);
            d.wait_notify("STOPPING=1", SECOND);
            assert!(d.wait_exit(SECOND).success());
        },
    );
}

#[test]
fn sigterm_and_sigint_stop_within_a_second() {
    in_private_netns("sigterm_and_sigint_stop_within_a_second", |ns| {
        for signal in [Signal::SIGTERM, Signal::SIGINT] {
            let mut d = ready_guard(ns, "restore");
            let start = Instant::now();
            d.signal(signal);
            let status = d.wait_exit(SECOND);
            assert!(status.success(), "{signal}: {status}");
            assert!(start.elapsed() < SECOND);
            d.wait_notify("STOPPING=1", SECOND);
        }
    });
}

#[test]
fn reload_applies_a_good_file_and_keeps_the_old_config_on_a_bad_one() {
    in_private_netns(
        "reload_applies_a_good_file_and_keeps_the_old_config_on_a_bad_one",
        |ns| {
            let mut d = ready_guard(ns, "alert");
            ns.write(ALL_FORWARDING, "0").expect("write");
            d.wait_stderr("action is alert", SECOND);

            // A good file that switches to restore: the reload itself fixes the knob.
            std::fs::write(d.config_path(), forwarding_config("restore")).expect("config");
            d.clear_notes();
            d.signal(Signal::SIGHUP);
            d.wait_notify("READY=1", SECOND);
            d.wait_stderr("configuration reloaded from", SECOND);
            wait_forwarding_on("restore after reload", SECOND);
            d.wait_stderr("(seen via reload)", SECOND);

            // A bad file: refused whole, with file:line:col, and the restoring guard goes on.
            std::fs::write(
            d.config_path(),
            "[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = \"1\"\naction = \"alert\"\nbogus = 1\n",
        )
        .expect("config");
            d.clear_notes();
            d.signal(Signal::SIGHUP);
            let ready = d.wait_notify("READY=1", SECOND);
            assert!(
                ready.contains("reload failed, running previous config"),
                "{ready}"
            );
            let path = d.config_path().display().to_string();
            d.wait_stderr(&format!("{path}:5:1: unknown field `bogus`"), SECOND);
            ns.write(ALL_FORWARDING, "0").expect("write");
            wait_forwarding_on("still restoring after a bad reload", SECOND);
        },
    );
}

/// Writes `values` in turn, `count` times, through one open file, as fast as the kernel takes
/// them; returns when the last write returned.
fn storm(
    ns: &fwdguard::sandbox::PrivateNetns,
    path: &str,
    values: &[&[u8]],
    count: usize,
) -> Instant {
    // At offset 0 each time: with kernel.sysctl_writes_strict=1 (the default) a write at a
    // later file position is ignored.
    use std::os::unix::fs::FileExt;
    ns.verify().expect("private");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    for i in 0..count {
        f.write_all_at(values[i % values.len()], 0).expect("write");
    }
    Instant::now()
}

#[test]
fn the_knob_ends_right_after_a_burst_of_writes() {
    in_private_netns("the_knob_ends_right_after_a_burst_of_writes", |ns| {
        let d = ready_guard(ns, "restore");
        let end = storm(ns, ALL_FORWARDING, &[b"0\n"], 30_000);
        let took = wait_forwarding_on("forwarding back at 1 after the burst", 2 * SECOND);
        eprintln!(
            "burst of 30 000 writes of 0: back at 1 {:?} after it",
            end.elapsed().min(took)
        );
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(read(ALL_FORWARDING), "1", "nothing pending flips it later");
        // The log is written by its own thread: wait for it rather than race it.
        d.wait_stderr("was 0, restored to 1", 2 * SECOND);
    });
}

#[test]
fn lost_events_are_recovered_by_a_reread_once_the_queue_is_drained() {
    in_private_netns(
        "lost_events_are_recovered_by_a_reread_once_the_queue_is_drained",
        |ns| {
            let d = ready_guard(ns, "restore");
            // Stop the daemon and overflow its receive queue with IPv6 events. The kernel reports
            // ENOBUFS once, then drops what does not fit, here the event of the IPv4 drop that
            // follows. Nothing left in the queue points at IPv4: only the re-read of every key
            // once the queue is drained can see that 0
            // (docs/kernel-and-systemd-facts.md#enobufs-overrun).
            d.signal(Signal::SIGSTOP);
            storm(
                ns,
                "/proc/sys/net/ipv6/conf/all/forwarding",
                &[b"1\n", b"0\n"],
                50_000,
            );
            storm(ns, ALL_FORWARDING, &[b"0\n"], 1);
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(read(ALL_FORWARDING), "0");
            let resumed = Instant::now();
            d.signal(Signal::SIGCONT);
            wait_forwarding_on("forwarding back at 1 after the overrun", 2 * SECOND);
            eprintln!(
                "knob back at 1 {:?} after the daemon resumed",
                resumed.elapsed()
            );
            d.wait_stderr("kernel events were lost", SECOND);
            d.wait_stderr("(seen via overrun)", SECOND);
        },
    );
}

#[test]
fn a_per_interface_guard_follows_its_interface() {
    in_private_netns("a_per_interface_guard_follows_its_interface", |ns| {
        let config = "reread-interval = \"1h\"\n[[guard]]\nkey = \"net.ipv4.conf.fg1.forwarding\"\nvalue = 1\n";
        let d = Daemon::start(config).ready();
        d.wait_stderr(
            "net.ipv4.conf.fg1.forwarding cannot be guarded for now: it does not exist",
            SECOND,
        );

        // Appears under another name, then is renamed to the guarded one: guarded at once.
        // (Bridges, since this kernel has no dummy driver.)
        ip(ns, &["link", "add", "fg0", "type", "bridge"]);
        ip(ns, &["link", "set", "fg0", "name", "fg1"]);
        let fg1 = "/proc/sys/net/ipv4/conf/fg1/forwarding";
        wait_for("fg1 forwarding set", SECOND, || {
            std::fs::read_to_string(fg1).is_ok_and(|v| v.trim() == "1")
        });
        d.wait_stderr("net.ipv4.conf.fg1.forwarding is available again", SECOND);

        // A per-device write sends only that device's event.
        ns.write(fg1, "0").expect("write");
        wait_for("fg1 restored", SECOND, || read(fg1) == "1");

        // Renamed away: the guard says so.
        let before = d.stderr().matches("cannot be guarded for now").count();
        ip(ns, &["link", "set", "fg1", "name", "fg2"]);
        wait_for("rename noticed", SECOND, || {
            d.stderr().matches("cannot be guarded for now").count() > before
        });
        ip(ns, &["link", "del", "fg2"]);
    });
}

#[test]
fn a_key_without_netconf_is_restored_through_inotify() {
    in_private_netns("a_key_without_netconf_is_restored_through_inotify", |ns| {
        // tcp_ecn is per network namespace and sends no netconf event. With a re-read only
        // once an hour, a quick restore can only come from inotify.
        let key = "/proc/sys/net/ipv4/tcp_ecn";
        ns.write(key, "2").expect("write");
        let config = "reread-interval = \"1h\"\n[[guard]]\nkey = \"net.ipv4.tcp_ecn\"\nvalue = 2\n";
        let d = Daemon::start(config).ready();
        ns.write(key, "1").expect("write");
        wait_for("tcp_ecn back at 2", SECOND, || read(key) == "2");
        d.wait_stderr("net.ipv4.tcp_ecn was 1, restored to 2", SECOND);
        d.wait_stderr("(seen via inotify)", SECOND);
    });
}

/// Sets an interface's IPv4 forwarding through RTM_SETLINK (IFLA_AF_SPEC / AF_INET /
/// IFLA_INET_CONF): the kernel sends no netconf event for it and no /proc file is written.
fn set_forwarding_by_setlink(ns: &fwdguard::sandbox::PrivateNetns, ifindex: u32, value: u32) {
    use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
    fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }
    const NLA_F_NESTED: u16 = 1 << 15;
    let conf = nla(1 /* IPV4_DEVCONF_FORWARDING */, &value.to_ne_bytes());
    let inet_conf = nla(1 /* IFLA_INET_CONF */ | NLA_F_NESTED, &conf);
    let af_inet = nla(libc::AF_INET as u16 | NLA_F_NESTED, &inet_conf);
    let af_spec = nla(26 /* IFLA_AF_SPEC */ | NLA_F_NESTED, &af_inet);
    let mut ifinfo = vec![0u8; 16]; // struct ifinfomsg, family AF_UNSPEC
    ifinfo[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    let body = [ifinfo, af_spec].concat();
    let mut msg = Vec::new();
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&(libc::RTM_SETLINK).to_ne_bytes());
    msg.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid
    msg.extend_from_slice(&body);

    ns.verify().expect("private");
    let mut socket = Socket::new(NETLINK_ROUTE).expect("socket");
    socket.bind_auto().expect("bind");
    socket
        .send_to(&msg, &SocketAddr::new(0, 0), 0)
        .expect("send");
    let mut buf = vec![0u8; 4096];
    let n = socket.recv(&mut &mut buf[..], 0).expect("ack");
    let error = i32::from_ne_bytes(buf[16..20].try_into().expect("4 bytes"));
    assert!(
        n >= 20 && error == 0,
        "RTM_SETLINK failed: errno {}",
        -error
    );
}

#[test]
fn the_timed_reread_catches_a_change_that_sends_no_event() {
    in_private_netns(
        "the_timed_reread_catches_a_change_that_sends_no_event",
        |ns| {
            ip(ns, &["link", "add", "fg0", "type", "bridge"]);
            let path = "/proc/sys/net/ipv4/conf/fg0/forwarding";
            ns.write(path, "1").expect("write");
            let config = "reread-interval = \"1s\"\n[[guard]]\nkey = \"net.ipv4.conf.fg0.forwarding\"\nvalue = 1\n";
            let d = Daemon::start(config).ready();

            // Not /sys/class/net: sysfs there shows the host's namespace.
            let ifindex: u32 = ip(ns, &["-o", "link", "show", "fg0"])
                .split(':')
                .next()
                .and_then(|i| i.trim().parse().ok())
                .expect("ifindex from ip -o link");
            set_forwarding_by_setlink(ns, ifindex, 0);
            assert_eq!(read(path), "0", "the blind-spot write took effect");
            let took = wait_for("the re-read restores fg0", 3 * SECOND, || read(path) == "1");
            d.wait_stderr("net.ipv4.conf.fg0.forwarding was 0, restored to 1", SECOND);
            assert!(d.stderr().contains("(seen via reread)"), "{}", d.stderr());
            assert!(
                took > Duration::from_millis(10),
                "no event should have seen it: {took:?}"
            );
        },
    );
}

#[test]
fn a_failed_restore_is_reported_as_critical_and_the_guard_keeps_running() {
    in_private_netns(
        "a_failed_restore_is_reported_as_critical_and_the_guard_keeps_running",
        |ns| {
            // As an unprivileged user the daemon can read the knob but not write it (EACCES).
            let nobody = [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
            ];
            ns.write(ALL_FORWARDING, "0").expect("write");
            let mut d = Daemon::start_under(&nobody, &forwarding_config("restore"), |_, stderr| {
                // Let the unprivileged daemon read its config and reach the notify socket.
                use std::os::unix::fs::PermissionsExt;
                let dir = stderr.parent().expect("dir");
                let open = |p: &std::path::Path, mode| {
                    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                        .expect("chmod")
                };
                open(dir, 0o755);
                open(&dir.join("notify"), 0o777);
            })
            .ready();
            d.wait_stderr(
                "cannot restore net.ipv4.conf.all.forwarding to 1: write net.ipv4.conf.all.forwarding: Permission denied (os error 13) (fwdguard lacks CAP_NET_ADMIN, which writing it needs)",
                SECOND,
            );
            // Loud in STATUS= too, naming the key, the capability and the consequence.
            let status = d.wait_notify_containing("DEGRADED", SECOND);
            assert!(
                status.contains("DEGRADED net.ipv4.conf.all.forwarding: cannot restore (write net.ipv4.conf.all.forwarding: Permission denied (os error 13) (fwdguard lacks CAP_NET_ADMIN, which writing it needs)); drops are reported but not undone"),
                "{status}"
            );
            // And `fwdguard check`, run the same way, says so without a daemon.
            let (code, text) = check_under(ns, &nobody, &d.config_path(), &[]);
            assert_eq!(code, Some(2), "{text}");
            assert!(
                text.contains("warning  net.ipv4.conf.all.forwarding: cannot restore (write net.ipv4.conf.all.forwarding: Permission denied (os error 13) (fwdguard lacks CAP_NET_ADMIN"),
                "{text}"
            );
            assert!(
                d.stderr().contains("ERROR"),
                "reported at the highest level: {}",
                d.stderr()
            );
            // Retries back off and the failure is not reported again.
            std::thread::sleep(Duration::from_millis(400));
            let failures = d.stderr().matches("ERROR cannot restore").count();
            assert_eq!(failures, 1, "{}", d.stderr());
            assert_eq!(read(ALL_FORWARDING), "0");
            assert!(d.child.try_wait().expect("wait").is_none(), "still running");

            // Someone with the privilege fixes it: that is news too.
            ns.write(ALL_FORWARDING, "1").expect("write");
            d.wait_stderr("is back at 1 after", SECOND);
        },
    );
}

#[test]
fn a_writer_that_drops_the_knob_after_every_restore_does_not_win() {
    in_private_netns(
        "a_writer_that_drops_the_knob_after_every_restore_does_not_win",
        |ns| {
            use std::os::unix::fs::FileExt;
            // The writer puts 0 back the moment it reads 1, often between fwdguard's write and
            // its read-back. Backing off there would hand it the knob for seconds.
            let d = ready_guard(ns, "restore");
            ns.verify().expect("private");
            let knob = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(ALL_FORWARDING)
                .expect("open");
            let mut buf = [0u8; 4];
            let mut drops = 0u32;
            let fight = Instant::now();
            while fight.elapsed() < SECOND {
                let n = knob.read_at(&mut buf, 0).expect("read");
                if buf[..n].starts_with(b"1") {
                    knob.write_all_at(b"0\n", 0).expect("write");
                    drops += 1;
                }
            }
            let stopped = Instant::now();
            let took = wait_forwarding_on("the knob back at 1 after the fight", 2 * SECOND);
            eprintln!("{drops} drops in 1 s; back at 1 {took:?} after the writer stopped");
            assert!(
                drops > 100,
                "fwdguard kept restoring during the fight: {drops} drops\n{}",
                d.stderr()
            );
            // Idle, it is back within a millisecond. The bound leaves room for a loaded CI
            // machine, and still fails a backoff that let the writer's last 0 stand: by the
            // end of a 1 s fight that backoff has doubled past 800 ms.
            assert!(
                stopped.elapsed() < Duration::from_millis(500),
                "no backoff after a contested restore: back only after {took:?}\n{}",
                d.stderr()
            );
        },
    );
}

#[test]
fn a_service_manager_that_stops_reading_does_not_stop_the_restores() {
    in_private_netns(
        "a_service_manager_that_stops_reading_does_not_stop_the_restores",
        |ns| {
            // The test reads nothing from the notify socket until the end: its queue (10
            // datagrams) fills with READY, STATUS and WATCHDOG, as with a stalled PID 1.
            ns.write(ALL_FORWARDING, "1").expect("write");
            let mut d = Daemon::start_with(&forwarding_config("restore"), |cmd, _| {
                cmd.env("WATCHDOG_USEC", "20000");
            });
            d.wait_stderr("ready:", 5 * SECOND);
            std::thread::sleep(Duration::from_millis(200));
            knock_and_wait(ns, 50);
            // PID 1 reads again: the latest status arrives, and the loss is reported.
            let status = d.wait_notify_containing(
                "messages to the service manager (NOTIFY_SOCKET) were dropped",
                2 * SECOND,
            );
            assert!(status.starts_with("STATUS=guarding 1 key"), "{status}");
            d.wait_stderr(
                "messages to the service manager (NOTIFY_SOCKET) were dropped while it was not reading",
                2 * SECOND,
            );
        },
    );
}

#[test]
fn a_stderr_pipe_nobody_reads_does_not_stop_the_restores() {
    in_private_netns(
        "a_stderr_pipe_nobody_reads_does_not_stop_the_restores",
        |ns| {
            use std::io::Read;
            // A pipe holds 64 KiB, fwdguard's queue 1024 lines more. Trace logging writes a
            // dozen lines per restore, so a few hundred restores fill both.
            let (reader, writer) = nix::unistd::pipe().expect("pipe");
            nix::fcntl::fcntl(
                &reader,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .expect("our end non-blocking");
            let mut reader = std::fs::File::from(reader);
            ns.write(ALL_FORWARDING, "1").expect("write");
            let mut d = Daemon::start_with(&forwarding_config("restore"), |cmd, _| {
                cmd.stderr(writer).env("RUST_LOG", "trace");
            })
            .ready();
            knock_and_wait(ns, 1000);
            // The reader comes back: what was lost is said once the pipe drains.
            let mut text = String::new();
            let mut buf = vec![0u8; 1 << 16];
            let deadline = Instant::now() + 3 * SECOND;
            while !text.contains("messages to stderr were dropped") && Instant::now() < deadline {
                match reader.read(&mut buf) {
                    Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("read the pipe: {e}"),
                }
                if text.len() > 200_000 {
                    text.drain(..100_000);
                }
            }
            assert!(
                text.contains("messages to stderr were dropped while it was not reading"),
                "{}",
                &text[text.len().saturating_sub(2000)..]
            );
            d.signal(Signal::SIGTERM);
            assert!(d.wait_exit(2 * SECOND).success());
        },
    );
}

#[test]
fn a_restore_keeps_its_descriptor_and_writes_straight_from_the_event() {
    in_private_netns(
        "a_restore_keeps_its_descriptor_and_writes_straight_from_the_event",
        |ns| {
            // strace(1) records the daemon's syscalls (CI installs it).
            ns.write(ALL_FORWARDING, "1").expect("write");
            let dir = tempfile::tempdir().expect("tempdir");
            let trace = dir.path().join("strace");
            let trace_arg = trace.to_str().expect("utf-8").to_owned();
            let mut d = Daemon::start_under(
                &["strace", "-f", "-qq", "-o", &trace_arg, "--"],
                &format!("flap-threshold = 1000\n{}", forwarding_config("restore")),
                |_, _| {},
            );
            d.wait_notify("READY=1", 10 * SECOND);
            let restores = 50;
            knock_and_wait(ns, restores);
            std::thread::sleep(Duration::from_millis(100));
            let text = std::fs::read_to_string(&trace).expect("strace output");
            // Stop the daemon itself: strace would only detach from it.
            let pid: i32 = text
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .expect("pid in strace output");
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).expect("kill");
            d.wait_exit(5 * SECOND);

            let lines: Vec<&str> = text
                .lines()
                .filter(|l| !l.contains("ERESTARTNOINTR"))
                .collect();
            let count = |what: &str| lines.iter().filter(|l| l.contains(what)).count();
            let opens = count("/proc/sys/net/ipv4/conf/all/forwarding");
            assert!(
                opens <= 2,
                "the key's file is opened once, not per restore: {opens} opens"
            );
            // The write comes straight after the datagram that announced the 0 (no drain, no
            // read first), or after the read that confirms an event saying 1 and finds a 0.
            let main = lines
                .iter()
                .find(|l| l.contains("pwrite64("))
                .and_then(|l| l.split_whitespace().next())
                .expect("a write");
            let ours: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("{main} ")))
                .collect();
            let mut straight = 0;
            for (i, l) in ours.iter().enumerate() {
                if l.contains("pwrite64(") {
                    let before = ours[i - 1];
                    if before.contains("NETCONFA_FORWARDING}, 0]") {
                        straight += 1;
                    } else {
                        // ("pread64(" or, when strace split the line, "<... pread64 resumed>";
                        // with another thread in the trace, strace may also split the previous
                        // write into "pwrite64(... <unfinished ...>" and show no line between.)
                        assert!(
                            before.contains("pread64") || before.contains("pwrite64"),
                            "before a write: {before}"
                        );
                    }
                }
            }
            assert!(
                straight >= restores / 2,
                "{straight} of {restores} writes straight after the event"
            );
        },
    );
}

#[test]
fn a_watch_the_inotify_limit_refuses_is_a_warning_in_the_log_status_and_check() {
    in_private_netns(
        "a_watch_the_inotify_limit_refuses_is_a_warning_in_the_log_status_and_check",
        |ns| {
            // A user namespace of its own with no inotify watches allowed, as when
            // fs.inotify.max_user_watches is used up. tcp_ecn sends no netconf event: inotify
            // would be its quick signal.
            let limited = [
                "unshare",
                "--user",
                "--map-root-user",
                "--",
                "sh",
                "-c",
                "echo 0 > /proc/sys/user/max_inotify_watches && exec \"$@\"",
                "sh",
            ];
            ns.verify().expect("private");
            let config = "reread-interval = \"1h\"\n[[guard]]\nkey = \"net.ipv4.tcp_ecn\"\nvalue = 2\naction = \"alert\"\n";
            ns.write("/proc/sys/net/ipv4/tcp_ecn", "2").expect("write");
            let mut d = Daemon::start_under(&limited, config, |_, _| {}).ready();
            let consequence = "net.ipv4.tcp_ecn: no inotify watch (No space left on device (os error 28): the inotify watch limit is reached (fs.inotify.max_user_watches)); writes to it are seen only by the timed re-read";
            d.wait_stderr(consequence, SECOND);
            let status = d.wait_notify_containing("DEGRADED", SECOND);
            assert!(status.contains(consequence), "{status}");

            let (code, text) = check_under(ns, &limited, &d.config_path(), &[]);
            assert_eq!(code, Some(1), "WARNING: {text}");
            assert!(text.contains(&format!("warning  {consequence}")), "{text}");
        },
    );
}
