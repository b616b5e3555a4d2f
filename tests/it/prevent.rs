//! `action = "prevent"` in the real daemon: the BPF hook keeps the knob from moving and names
//! the writer; where it cannot, the daemon says so once and restores. The hook is attached to
//! a cgroup each test creates (`FWDGUARD_BPF_CGROUP`), never to the root; the daemon and the
//! writers run in the test's private network namespace.

use std::time::Duration;

use crate::common::*;
use fwdguard::sandbox::PrivateNetns;
use nix::sys::signal::Signal;

const ATTACH_ENV: &str = fwdguard::bpf::ATTACH_ENV;
const FAULT_ENV: &str = fwdguard::bpf::FAULT_ENV;
/// How the daemon describes its hook under `prevent`, and under `restore`.
const KEPT: &str = "1 key kept from changing";
const AUDIT_ONLY: &str = "writers of 1 key named (audit only)";

fn start(cg: &TestCgroup, action: &str, env: &[(&str, &str)]) -> Daemon {
    start_under(&[], cg, action, env)
}

fn start_under(wrapper: &[&str], cg: &TestCgroup, action: &str, env: &[(&str, &str)]) -> Daemon {
    let mut d = Daemon::start_under(wrapper, &forwarding_config(action), |cmd, _| {
        cmd.env(ATTACH_ENV, &cg.path);
        for (k, v) in env {
            cmd.env(k, v);
        }
    });
    d.wait_notify("READY=1", 10 * SECOND);
    d
}

/// Forwarding at 1, a cgroup `tag` of the test's, and the daemon started with `action` and its
/// hook attached there, which it describes as `says` (`KEPT` or `AUDIT_ONLY`).
fn attached(ns: &PrivateNetns, tag: &str, action: &str, says: &str) -> (TestCgroup, Daemon) {
    let cg = TestCgroup::new(tag);
    ns.write(IP_FORWARD, "1").expect("write");
    let d = start(&cg, action, &[]);
    d.wait_stderr("BPF sysctl hook attached at", SECOND);
    assert!(d.stderr().contains(says), "{}", d.stderr());
    (cg, d)
}

/// `sysctl -w net.ipv4.ip_forward=0` from inside the test cgroup: (pid, exit code).
fn sysctl_zero(ns: &PrivateNetns, cg: &TestCgroup) -> (u32, i32) {
    let (pid, code, _, err) = cg.sh(ns, "exec sysctl -q -w net.ipv4.ip_forward=0", &[]);
    assert_eq!(err, "", "sysctl said nothing");
    (pid, code)
}

/// This test process's command name, as the kernel reports a parent.
fn comm_of_self() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .expect("comm")
        .trim_end()
        .to_owned()
}

#[test]
fn prevent_keeps_forwarding_at_1_and_names_the_writer() {
    in_private_netns("prevent_keeps_forwarding_at_1", |ns| {
        let (cg, mut d) = attached(ns, "daemon-prevent", "prevent", KEPT);

        let (pid, code) = sysctl_zero(ns, &cg);
        assert_eq!(code, 0, "the writer sees success");
        assert_eq!(read(IP_FORWARD), "1");
        assert_eq!(read(ALL_FORWARDING), "1");
        // sh exec'd sysctl: its parent is this test.
        d.wait_stderr(
            &format!(
                "net.ipv4.conf.all.forwarding: write of 0\\n by sysctl (pid {pid}, parent {} pid {}, uid 0, cgroup {}) replaced by 1",
                comm_of_self(),
                std::process::id(),
                cg.relative
            ),
            5 * SECOND,
        );
        let err = d.stderr();
        assert!(
            !err.contains("restored"),
            "never dropped, so never restored:\n{err}"
        );
        d.wait_notify_containing("1 writes replaced", 5 * SECOND);
        assert!(
            d.notes
                .iter()
                .any(|n| n.contains(&format!("hook {}", cg.path.display()))),
            "STATUS names where the hook is: {:?}",
            d.notes
        );

        // `systemctl stop fwdguard`: SIGTERM, and the hook goes with the process.
        d.signal(Signal::SIGTERM);
        assert!(d.wait_exit(5 * SECOND).success());
        let (_, code) = sysctl_zero(ns, &cg);
        assert_eq!(code, 0);
        assert_eq!(read(IP_FORWARD), "0", "stopped: an operator can set 0");
    });
}

/// A writer in a loop: the knob never moves, and the journal gets a few lines (the first
/// writes, one "flapping" line), not one per write.
#[test]
fn a_storm_of_replaced_writes_is_a_few_reports() {
    in_private_netns("a_storm_of_replaced_writes_is_a_few_reports", |ns| {
        let (cg, mut d) = attached(ns, "daemon-storm", "prevent", KEPT);
        let (_, code, _, err) = cg.sh(
            ns,
            "i=0; while [ $i -lt 2000 ]; do echo 0 > \"$1\"; i=$((i + 1)); done",
            &[IP_FORWARD],
        );
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(read(IP_FORWARD), "1");
        d.wait_stderr(
            "is flapping: written or knocked down 5 times within 1m",
            5 * SECOND,
        );
        // (Under a flood some events are dropped before they reach the count; none is needed
        // for the replacement.)
        d.wait_notify_containing("writes replaced", 5 * SECOND);
        let err = d.stderr();
        let single = err.lines().filter(|l| l.contains("replaced by 1")).count();
        assert_eq!(single, 4, "writes before the episode, one by one:\n{err}");
        assert!(!err.contains("restored"), "{err}");
    });
}

#[test]
fn sigkill_removes_the_hook_at_once() {
    in_private_netns("sigkill_removes_the_hook_at_once", |ns| {
        let (cg, mut d) = attached(ns, "daemon-kill", "prevent", KEPT);
        d.signal(Signal::SIGKILL);
        d.wait_exit(5 * SECOND);
        sysctl_zero(ns, &cg);
        assert_eq!(read(IP_FORWARD), "0", "no hook left behind");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(read(IP_FORWARD), "0", "and nobody restores it");
        drop(d);
        // Started again, it restores before READY=1, and prevents again.
        let d = start(&cg, "prevent", &[]);
        assert_eq!(read(IP_FORWARD), "1");
        d.wait_stderr("BPF sysctl hook attached at", SECOND);
        sysctl_zero(ns, &cg);
        assert_eq!(read(IP_FORWARD), "1");
    });
}

#[test]
fn restore_and_alert_name_the_writer_through_the_hook() {
    in_private_netns("restore_and_alert_name_the_writer", |ns| {
        let (cg, d) = attached(ns, "daemon-audit", "restore", AUDIT_ONLY);
        let (pid, code) = sysctl_zero(ns, &cg);
        assert_eq!(code, 0);
        wait_for("the restore", 5 * SECOND, || read(IP_FORWARD) == "1");
        d.wait_stderr(
            &format!("net.ipv4.conf.all.forwarding: sysctl (pid {pid}, parent "),
            5 * SECOND,
        );
        assert!(
            d.stderr()
                .contains("wrote 0\\n (want 1; action restore, the write went through)")
        );
        d.wait_stderr("restored to 1", SECOND);
    });
}

/// The daemon could not have the hook: it says why once, STATUS and check say so, and a drop
/// is restored as under `restore`.
fn falls_back(test: &str, wrapper: &[&str], env: &[(&str, &str)], why: &str) {
    let (test, why) = (test.to_owned(), why.to_owned());
    let wrapper: Vec<String> = wrapper.iter().map(|s| (*s).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    in_private_netns(&test.clone(), move |ns| {
        let cg = TestCgroup::new(&test);
        ns.write(IP_FORWARD, "1").expect("write");
        let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut d = start_under(&wrapper, &cg, "prevent", &env);
        let said = "prevent falls back to restore for net.ipv4.conf.all.forwarding: ";
        d.wait_stderr(said, SECOND);
        assert!(
            d.stderr().contains(&why),
            "names the cause ({why}):\n{}",
            d.stderr()
        );
        d.wait_notify_containing("prevent fell back to restore", SECOND);

        sysctl_zero(ns, &cg);
        wait_for("the restore", 5 * SECOND, || read(IP_FORWARD) == "1");
        d.wait_stderr("restored to 1", 5 * SECOND);

        // Once: a reload with the same keys does not say it again.
        d.signal(Signal::SIGHUP);
        d.wait_stderr("configuration reloaded", 5 * SECOND);
        let warned = d
            .stderr()
            .lines()
            .filter(|l| l.contains(&format!("WARN {said}")))
            .count();
        assert_eq!(warned, 1, "{}", d.stderr());

        // `fwdguard check` (same environment) says it too: WARNING.
        let mut check_env = env.clone();
        check_env.push((ATTACH_ENV, cg.path.to_str().expect("utf-8")));
        let (code, text) = check_under(ns, &wrapper, &d.config_path(), &check_env);
        assert_eq!(code, Some(1), "WARNING:\n{text}");
        assert!(text.contains("prevent fell back to restore"), "{text}");
    });
}

#[test]
fn a_verifier_refusal_falls_back_to_restore() {
    falls_back(
        "fallback-verifier",
        &[],
        &[(FAULT_ENV, "verifier")],
        "the kernel refused the BPF program: Permission denied (os error 13); verifier: 1: (61) r0 = *(u32 *)(r6 +64) / invalid bpf_context access off=64 size=4; writers are not named",
    );
}

#[test]
fn an_ineffective_replacement_falls_back_to_restore_and_still_names_writers() {
    falls_back(
        "fallback-ineffective",
        &[],
        &[(FAULT_ENV, "no-replace")],
        "the start-up probe found the replacement ineffective on this kernel (a write that should have been replaced went through as written: the bpf_sysctl_set_new_value bug); writers are still named",
    );
}

#[test]
fn without_the_capabilities_prevent_falls_back_to_restore() {
    falls_back(
        "fallback-caps",
        &["setpriv", "--bounding-set=-bpf,-perfmon,-sys_admin", "--"],
        &[],
        "needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN",
    );
}

#[test]
fn check_is_ok_when_prevent_can_be_in_force() {
    in_private_netns("check_is_ok_when_prevent_can_be_in_force", |ns| {
        let cg = TestCgroup::new("check-ok");
        ns.write(IP_FORWARD, "1").expect("write");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config_file(dir.path(), &forwarding_config("prevent"));
        let attach = [(ATTACH_ENV, cg.path.to_str().expect("utf-8"))];
        let (code, text) = check_under(ns, &[], &config, &attach);
        assert_eq!(code, Some(0), "{text}");
        assert!(!text.contains("prevent"), "{text}");
    });
}

#[test]
fn a_reload_from_restore_to_prevent_rebuilds_the_hook() {
    in_private_netns("a_reload_from_restore_to_prevent", |ns| {
        let (cg, mut d) = attached(ns, "daemon-reload", "restore", AUDIT_ONLY);
        std::fs::write(d.config_path(), forwarding_config("prevent")).expect("config");
        d.signal(Signal::SIGHUP);
        d.wait_stderr(KEPT, 5 * SECOND);
        let (pid, code) = sysctl_zero(ns, &cg);
        assert_eq!(code, 0);
        assert_eq!(read(IP_FORWARD), "1", "prevented after the reload");
        d.wait_stderr(&format!("by sysctl (pid {pid}, "), 5 * SECOND);
        assert!(!d.stderr().contains("restored to 1"), "{}", d.stderr());
        d.clear_notes();
        d.wait_notify_containing("1 writes replaced", 5 * SECOND);
    });
}
