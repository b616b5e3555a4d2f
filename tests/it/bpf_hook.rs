//! The BPF sysctl hook on the real kernel. Every test attaches only to a cgroup it creates
//! (`TestCgroup`), runs its writers inside that cgroup and inside a private network namespace
//! (proven not the host's), and never touches the host's knobs.

use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use crate::common::{ALL_FORWARDING, IP_FORWARD, TestCgroup, in_private_netns, read};
use fwdguard::bpf::{Attempt, Fault, Hook, HookError, Mode, Options, Target};
use fwdguard::sandbox::PrivateNetns;

const V6_FORWARDING: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

fn target(name: &str, mode: Mode) -> Target {
    Target {
        name: name.into(),
        want: "1".into(),
        mode,
    }
}

fn forwarding_targets(mode: Mode) -> Vec<Target> {
    vec![
        target("net/ipv4/conf/all/forwarding", mode),
        target("net/ipv6/conf/all/forwarding", mode),
    ]
}

fn attach(
    cg: &TestCgroup,
    targets: &[Target],
    fault: Option<Fault>,
) -> Result<(Hook, Receiver<Attempt>), HookError> {
    let (tx, rx) = channel();
    let options = Options {
        cgroup: Some(cg.path.clone()),
        fault,
    };
    let hook = Hook::attach(targets, &options, move |a| {
        let _ = tx.send(a);
    })?;
    Ok((hook, rx))
}

/// Forwarding at 1, a cgroup `tag` of the test's, and the hook attached there guarding both
/// forwarding knobs with `mode`.
fn hooked(ns: &PrivateNetns, tag: &str, mode: Mode) -> (TestCgroup, Hook, Receiver<Attempt>) {
    let cg = TestCgroup::new(tag);
    ns.write(IP_FORWARD, "1").expect("write");
    let (hook, rx) = attach(&cg, &forwarding_targets(mode), None).expect("hook");
    (cg, hook, rx)
}

fn sh_in(ns: &PrivateNetns, cg: &TestCgroup, script: &str, args: &[&str]) -> (u32, i32, String) {
    let (pid, code, _, err) = cg.sh(ns, script, args);
    (pid, code, err)
}

fn next_attempt(rx: &Receiver<Attempt>) -> Attempt {
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the hook reported the attempt")
}

/// The hook reports nothing for half a second; `why` it should not.
fn assert_no_attempt(rx: &Receiver<Attempt>, why: &str) {
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "{why}"
    );
}

/// `value` written to `path` by a shell in `cg` goes through untouched: the shell succeeds
/// quietly and the key reads `value`.
fn assert_write_passes(ns: &PrivateNetns, cg: &TestCgroup, path: &str, value: &str) {
    let (_, code, err) = sh_in(ns, cg, "echo \"$2\" > \"$1\"", &[path, value]);
    assert_eq!((code, err.as_str()), (0, ""), "{path}={value}");
    assert_eq!(read(path), value, "{path} untouched");
}

#[test]
fn prevent_keeps_every_spelling_of_zero_out() {
    in_private_netns("prevent_keeps_every_spelling_of_zero_out", |ns| {
        ns.write(V6_FORWARDING, "1").expect("write");
        let (cg, _hook, rx) = hooked(ns, "prevent", Mode::Prevent);

        for (key, path) in [
            ("net.ipv4.ip_forward", IP_FORWARD),
            ("net.ipv4.conf.all.forwarding", ALL_FORWARDING),
            ("net.ipv6.conf.all.forwarding", V6_FORWARDING),
        ] {
            let (pid, code, err) = sh_in(ns, &cg, "exec sysctl -q -w \"$1=0\"", &[key]);
            assert_eq!(
                (code, err.as_str()),
                (0, ""),
                "sysctl -w {key}=0 sees success"
            );
            assert_eq!(read(path), "1", "{key} stayed 1");
            let a = next_attempt(&rx);
            assert!(a.writer.replaced, "{a:?}");
            assert_eq!((a.writer.pid, a.writer.comm.as_str()), (pid, "sysctl"));
            assert_eq!(a.writer.ppid, std::process::id(), "the test started sh");
            assert_eq!(a.writer.uid, 0);
            assert_eq!(a.writer.written, "0\\n");
            assert_eq!(
                a.writer.cgroup.as_deref(),
                Some(cg.relative.as_str()),
                "cgroup id resolved to the test cgroup"
            );

            for (spelling, shown) in [
                ("0", "0"),
                ("0\n", "0\\n"),
                (" 0", " 0"),
                ("00", "00"),
                ("0x0", "0x0"),
                ("-0", "-0"),
            ] {
                let (pid, code, err) =
                    sh_in(ns, &cg, "printf '%s' \"$1\" > \"$2\"", &[spelling, path]);
                assert_eq!((code, err.as_str()), (0, ""), "{spelling:?} > {path}");
                assert_eq!(read(path), "1", "{spelling:?} > {path}");
                let a = next_attempt(&rx);
                assert_eq!((a.writer.pid, a.writer.comm.as_str()), (pid, "sh"));
                assert_eq!(a.writer.written, shown);
                assert!(a.writer.replaced);
            }
            let (_, code, _) = sh_in(ns, &cg, "echo 0 > \"$1\"", &[path]);
            assert_eq!(code, 0);
            assert_eq!(read(path), "1");
            assert!(next_attempt(&rx).writer.replaced);
        }

        // Writes that keep the value, and other keys, pass untouched and unreported.
        for (path, value) in [
            (IP_FORWARD, "1"),
            ("/proc/sys/net/ipv4/ip_default_ttl", "33"),
            ("/proc/sys/net/ipv4/conf/default/forwarding", "0"),
            ("/proc/sys/net/ipv4/conf/lo/forwarding", "0"),
        ] {
            assert_write_passes(ns, &cg, path, value);
        }
        assert_no_attempt(
            &rx,
            "no report for writes that keep the value or other keys",
        );
    });
}

#[test]
fn writes_in_another_network_namespace_pass_untouched() {
    in_private_netns("writes_in_another_network_namespace_pass_untouched", |ns| {
        let (cg, _hook, rx) = hooked(ns, "otherns", Mode::Prevent);
        // Same cgroup, one more network namespace down.
        let (_, code, out, err) = cg.sh(
            ns,
            "exec unshare -n sh -c 'echo 1 > \"$1\" && echo 0 > \"$1\" && cat \"$1\"' sh \"$1\"",
            &[IP_FORWARD],
        );
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(out, "0", "the other namespace's write landed");
        assert_no_attempt(&rx, "not reported");
        assert_eq!(read(IP_FORWARD), "1", "ours untouched too");
    });
}

#[test]
fn a_reader_on_another_cpu_never_sees_zero_over_100_000_writes() {
    in_private_netns("a_reader_on_another_cpu_never_sees_zero", |ns| {
        let (cg, _hook, rx) = hooked(ns, "storm", Mode::Prevent);
        let cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
        let usable: Vec<usize> = (0..nix::sched::CpuSet::count())
            .filter(|&c| cpus.is_set(c).unwrap_or(false))
            .collect();
        assert!(usable.len() >= 2, "needs two CPUs, has {usable:?}");
        let (writer_cpu, reader_cpu) = (usable[0], usable[1]);

        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut set = nix::sched::CpuSet::new();
                set.set(reader_cpu).unwrap();
                nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
                let f = std::fs::File::open(IP_FORWARD).unwrap();
                let (mut reads, mut zeros) = (0u64, 0u64);
                let mut buf = [0u8; 8];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let n = std::os::unix::fs::FileExt::read_at(&f, &mut buf, 0).unwrap();
                    reads += 1;
                    if buf[..n].starts_with(b"0") {
                        zeros += 1;
                    }
                }
                (reads, zeros)
            })
        };
        // 100 000 writes of "0" (open, write at offset 0, close: a kept descriptor's later
        // writes land at an offset the kernel ignores), pinned to the other CPU.
        let (_, code, err) = sh_in(
            ns,
            &cg,
            "exec taskset -c \"$1\" sh -c 'i=0; while [ $i -lt 100000 ]; do \
             printf 0 > \"$1\" || exit 9; i=$((i+1)); done' sh \"$2\"",
            &[&writer_cpu.to_string(), IP_FORWARD],
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (reads, zeros) = reader.join().unwrap();
        assert_eq!((code, err.as_str()), (0, ""), "every write succeeded");
        assert_eq!(read(IP_FORWARD), "1");
        assert!(reads > 10_000, "the reader read {reads} times");
        assert_eq!(zeros, 0, "the reader saw 0 in {zeros} of {reads} reads");
        assert!(rx.try_iter().count() > 0, "attempts were reported");
    });
}

#[test]
fn audit_reports_the_writer_and_lets_the_write_through() {
    in_private_netns("audit_reports_the_writer", |ns| {
        let (cg, _hook, rx) = hooked(ns, "audit", Mode::Audit);
        let (pid, code, _) = sh_in(ns, &cg, "exec sysctl -q -w net.ipv4.ip_forward=0", &[]);
        assert_eq!(code, 0);
        assert_eq!(read(IP_FORWARD), "0", "audit only");
        let a = next_attempt(&rx);
        assert!(!a.writer.replaced);
        assert_eq!((a.writer.pid, a.writer.comm.as_str()), (pid, "sysctl"));
        assert_eq!(a.name, "net/ipv4/ip_forward");
        assert_eq!(a.target, 0, "reported for the conf/all/forwarding guard");
    });
}

#[test]
fn dropping_the_hook_detaches_it_at_once() {
    in_private_netns("dropping_the_hook_detaches_it", |ns| {
        let (cg, hook, _rx) = hooked(ns, "detach", Mode::Prevent);
        sh_in(ns, &cg, "echo 0 > \"$1\"", &[IP_FORWARD]);
        assert_eq!(read(IP_FORWARD), "1");
        drop(hook);
        sh_in(ns, &cg, "echo 0 > \"$1\"", &[IP_FORWARD]);
        assert_eq!(read(IP_FORWARD), "0", "no hook once its link is closed");
    });
}

/// As many `prevent` keys as the configuration allows, plus audit keys past what one program
/// holds: the kernel takes the program (its verifier log would overflow any fixed buffer), and
/// the last `prevent` key in the table is kept.
#[test]
fn the_largest_table_loads_and_prevents() {
    in_private_netns("the_largest_table_loads_and_prevents", |ns| {
        let cg = TestCgroup::new("largest");
        ns.write(IP_FORWARD, "1").expect("write");
        let mut targets: Vec<Target> = (0..fwdguard::bpf::MAX_PREVENT - 1)
            .map(|i| target(&format!("net/ipv4/conf/veth{i}/forwarding"), Mode::Prevent))
            .collect();
        targets.push(target("net/ipv4/conf/all/forwarding", Mode::Prevent));
        targets.extend(
            (0..100).map(|i| target(&format!("net/ipv6/conf/veth{i}/forwarding"), Mode::Audit)),
        );
        let (hook, rx) = attach(&cg, &targets, None).expect("hook");
        let prevented = fwdguard::bpf::MAX_PREVENT;
        assert!(hook.attachment.covered.contains(&(prevented - 1)));
        let (pid, code, err) = sh_in(ns, &cg, "exec sysctl -q -w net.ipv4.ip_forward=0", &[]);
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(read(IP_FORWARD), "1", "the last prevent key in the table");
        let a = next_attempt(&rx);
        assert_eq!(
            (a.target, a.writer.pid, a.writer.replaced),
            (prevented - 1, pid, true)
        );
    });
}

/// The probe runs in the guarded namespace itself: it must leave the key it writes as it was,
/// and leave every other writer of that key alone once it is done.
#[test]
fn the_start_up_probe_changes_nothing() {
    in_private_netns("the_start_up_probe_changes_nothing", |ns| {
        let cg = TestCgroup::new("probe");
        const TTL: &str = "/proc/sys/net/ipv4/ip_default_ttl";
        ns.write(TTL, "77").expect("write");
        let (_hook, rx) = attach(&cg, &forwarding_targets(Mode::Prevent), None).expect("hook");
        assert_eq!(read(TTL), "77", "the probe changed ip_default_ttl");
        assert_write_passes(ns, &cg, TTL, "78");
        assert_no_attempt(&rx, "the probe's key is not guarded");
    });
}

#[test]
fn the_probe_catches_a_replacement_the_kernel_ignores() {
    in_private_netns("the_probe_catches_an_ineffective_replacement", |_| {
        let cg = TestCgroup::new("ineffective");
        let err = attach(
            &cg,
            &forwarding_targets(Mode::Prevent),
            Some(Fault::NoReplace),
        )
        .expect_err("the probe refuses");
        assert!(matches!(err, HookError::Ineffective), "{err}");
        assert!(err.to_string().contains("went through as written"), "{err}");
        // Audit needs no replacement, so no probe.
        attach(
            &cg,
            &forwarding_targets(Mode::Audit),
            Some(Fault::NoReplace),
        )
        .expect("audit");
    });
}

#[test]
fn a_verifier_refusal_says_what_the_verifier_said() {
    in_private_netns("a_verifier_refusal_says_why", |_| {
        let cg = TestCgroup::new("verifier");
        let err = attach(&cg, &forwarding_targets(Mode::Audit), Some(Fault::Verifier))
            .expect_err("refused");
        let text = err.to_string();
        assert!(matches!(err, HookError::Load { .. }), "{text}");
        assert!(
            text.contains("verifier:") && text.contains("invalid bpf_context access"),
            "{text}"
        );
    });
}

#[test]
fn a_private_cgroup2_mount_sees_the_same_hierarchy() {
    // What a cgroup v1-only host gets: the v2 hierarchy, mounted nowhere but ours.
    in_private_netns("a_private_cgroup2_mount", |_| {
        let cg = TestCgroup::new("private-mount");
        let root = fwdguard::bpf::cgroup::Root::find_private().expect("fsmount cgroup2");
        let mine = std::fs::metadata(&cg.path).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        let seen = std::fs::metadata(root.path.join(cg.relative.trim_start_matches('/')))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        assert_eq!(mine.unwrap(), seen.unwrap());
        assert!(root.private);
    });
}
