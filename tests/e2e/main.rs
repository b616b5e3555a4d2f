//! End to end: the .deb installed in a Debian 12 system booted under a real systemd
//! (systemd-nspawn with a private network namespace), checked the way an operator would.
//!
//! The package is `FWDGUARD_E2E_DEB` if set (CI points it at the release .deb that
//! `packaging/build.sh` made), else a .deb of the binary this `cargo test` built
//! (`packaging/build.sh --test-deb`, seconds). The Debian tree comes from debootstrap once and is
//! cached under `target/e2e-cache` (or `FWDGUARD_E2E_CACHE`). Needs root, systemd-nspawn
//! (systemd-container), debootstrap, dpkg-deb, cargo-deb, nsenter, unshare and pgrep. Without
//! them each test prints `SKIPPED`; with `CI=true` it fails instead.

mod container;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use container::{Container, host};
use fwdguard::report::message_id;

const HOST_IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Whether this test can run here; `false` after a visible SKIPPED line, a panic under CI=true.
fn prerequisites(test: &str) -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".to_owned());
    }
    let mut tools = vec![
        "systemd-nspawn",
        "nsenter",
        "unshare",
        "pgrep",
        "tar",
        "dpkg-deb",
        "debootstrap",
    ];
    if std::env::var_os("FWDGUARD_E2E_DEB").is_none() {
        tools.push("cargo-deb");
    }
    for tool in tools {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()));
        if !found {
            missing.push(tool.to_owned());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("needs {}", missing.join(", "));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why} (.ci/run installs them)");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// The package under test and an upgrade of it: the same files with a higher version.
struct Debs {
    v1: PathBuf,
    v2: PathBuf,
    version2: String,
}

fn debs() -> &'static Debs {
    static DEBS: OnceLock<Debs> = OnceLock::new();
    DEBS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-debs");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("deb dir");
        let v1 = match std::env::var_os("FWDGUARD_E2E_DEB") {
            Some(deb) => PathBuf::from(deb),
            None => {
                host(
                    Command::new("bash")
                        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/build.sh"))
                        .arg("--test-deb")
                        .arg(env!("CARGO_BIN_EXE_fwdguard"))
                        .arg(&dir),
                );
                std::fs::read_dir(&dir)
                    .expect("deb dir")
                    .flatten()
                    .map(|e| e.path())
                    .find(|p| p.extension().is_some_and(|e| e == "deb"))
                    .expect("build.sh made no .deb")
            }
        };
        let field = |deb: &Path, name: &str| {
            host(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name))
                .trim()
                .to_owned()
        };
        let version2 = format!("{}+e2e.upgrade", field(&v1, "Version"));
        let tree = dir.join("upgrade");
        host(Command::new("dpkg-deb").arg("-R").arg(&v1).arg(&tree));
        let control = tree.join("DEBIAN/control");
        let text = std::fs::read_to_string(&control).expect("control");
        let text: String = text
            .lines()
            .map(|l| match l.strip_prefix("Version: ") {
                Some(_) => format!("Version: {version2}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(&control, text).expect("control");
        let v2 = dir.join("fwdguard-upgrade.deb");
        host(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "-Zgzip", "-z1", "-b"])
                .arg(&tree)
                .arg(&v2),
        );
        Debs { v1, v2, version2 }
    })
}

/// A container with the package installed and its service up.
fn installed(name: &str, before: impl FnOnce(&Container)) -> Container {
    installed_with(name, &[], before)
}

/// [`installed`] in a container booted with extra `systemd-nspawn` arguments.
fn installed_with(name: &str, nspawn_args: &[&str], before: impl FnOnce(&Container)) -> Container {
    let host_before = std::fs::read_to_string(HOST_IP_FORWARD).expect("host ip_forward");
    let debs = debs();
    let c = Container::boot(name, nspawn_args);
    before(&c);
    c.put(
        "/root/fwdguard.deb",
        &std::fs::read(&debs.v1).expect("read .deb"),
    );
    c.ok("dpkg -i /root/fwdguard.deb");
    wait(&c, "fwdguard.service active", || {
        c.text("systemctl is-active fwdguard").trim() == "active"
    });
    assert_eq!(
        std::fs::read_to_string(HOST_IP_FORWARD).expect("host ip_forward"),
        host_before,
        "the host's ip_forward changed"
    );
    c
}

fn wait(c: &Container, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "in {}: timed out waiting for {what}\n{}",
            c.name,
            c.text("systemctl status fwdguard --no-pager -l")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ip_forward(c: &Container) -> String {
    c.ok("cat /proc/sys/net/ipv4/ip_forward").trim().to_owned()
}

fn main_pid(c: &Container) -> String {
    c.ok("systemctl show -p MainPID --value fwdguard")
        .trim()
        .to_owned()
}

/// The journal position now: entries after it are what the next step caused.
fn cursor(c: &Container) -> String {
    let last = c.ok("journalctl -n 1 -o json --no-pager");
    let entry: serde_json::Value = serde_json::from_str(last.trim()).expect("journal entry");
    entry["__CURSOR"].as_str().expect("cursor").to_owned()
}

/// Every journal entry after `cursor` about fwdguard.service: its own and systemd's.
///
/// Filtered here, not by journalctl: systemd 252's journalctl finds nothing for
/// `--after-cursor=C FIELD=VALUE` when the entry at C does not match FIELD=VALUE.
fn since(c: &Container, cursor: &str) -> Vec<serde_json::Value> {
    c.ok(&format!(
        "journalctl --no-pager -o json --after-cursor='{cursor}'"
    ))
    .lines()
    .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("journal entry"))
    .filter(|e| {
        field(e, "_SYSTEMD_UNIT") == "fwdguard.service" || field(e, "UNIT") == "fwdguard.service"
    })
    .collect()
}

/// fwdguard's journal entries with `message_id` after `cursor`.
fn reports(c: &Container, cursor: &str, message_id: &str) -> Vec<serde_json::Value> {
    since(c, cursor)
        .into_iter()
        .filter(|e| field(e, "MESSAGE_ID") == message_id)
        .collect()
}

/// Waits for at least `n` reports with `message_id` after `cursor`; returns them.
fn wait_reports(c: &Container, cursor: &str, message_id: &str, n: usize) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let found = reports(c, cursor, message_id);
        if found.len() >= n {
            return found;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "in {}: {} of {n} journal entries MESSAGE_ID={message_id} after cursor {cursor}; fwdguard logged since:\n{}",
            c.name,
            found.len(),
            c.text(&format!(
                "journalctl -u fwdguard --no-pager -o verbose --after-cursor='{cursor}'"
            ))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes the configuration file, reloads, and waits until fwdguard says it took effect.
fn reconfigure(c: &Container, toml: &str) {
    let start = cursor(c);
    c.put("/etc/fwdguard/fwdguard.toml", toml.as_bytes());
    c.ok("systemctl reload fwdguard");
    wait_reports(c, &start, message_id::CONFIG_RELOADED, 1);
}

fn field<'a>(entry: &'a serde_json::Value, name: &str) -> &'a str {
    entry[name].as_str().unwrap_or("")
}

/// Forwarding dropped to 0, and fwdguard put it back and said so, `n` times or more.
fn repaired(c: &Container, cursor: &str, n: usize) {
    for entry in wait_reports(c, cursor, message_id::DRIFT_RESTORED, n) {
        assert_eq!(field(&entry, "FWDGUARD_OLD"), "0", "{entry}");
        assert_eq!(field(&entry, "FWDGUARD_NEW"), "1", "{entry}");
        assert_eq!(field(&entry, "PRIORITY"), "4", "{entry}");
    }
    wait(c, "ip_forward back at 1", || ip_forward(c) == "1");
}

/// Scenarios 1 and 7: the installed service runs as its own user with CAP_NET_ADMIN only, says
/// what it guards, and `systemd-analyze security` rates it at most 2.0.
#[test]
fn installed_service_is_least_privileged_and_guarding() {
    if !prerequisites("installed_service_is_least_privileged_and_guarding") {
        return;
    }
    let c = installed("service", |_| {});
    assert_eq!(ip_forward(&c), "1", "forwarding was not put to 1 at start");

    let pid = main_pid(&c);
    let status = c.ok(&format!("cat /proc/{pid}/status"));
    let uid = c.ok("id -u fwdguard").trim().to_owned();
    let line = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in\n{status}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_ne!(uid, "0");
    assert_eq!(line("Uid:"), vec![uid.as_str(); 4], "{status}");
    // CAP_NET_ADMIN is capability 12: 0x1000, and nothing else.
    for caps in ["CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(line(caps), vec!["0000000000001000"], "{caps} in\n{status}");
    }
    assert_eq!(line("NoNewPrivs:"), vec!["1"]);

    let status = c.text("systemctl status fwdguard --no-pager -l");
    assert!(status.contains("Status: \"guarding 1 key"), "{status}");
    let journal = c.ok("journalctl -u fwdguard --no-pager -o cat");
    assert!(
        journal.contains("guarding net.ipv4.conf.all.forwarding = 1"),
        "{journal}"
    );

    // The post-install smoke test of an operator.
    let version = c.ok("fwdguard --version");
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")),
        "fwdguard --version: {version}"
    );
    c.ok("fwdguard config check /etc/fwdguard/fwdguard.toml");
    c.ok("fwdguard check");
    c.ok("test -s /usr/share/man/man8/fwdguard.8.gz && test -s /usr/share/man/man5/fwdguard.toml.5.gz");
    c.ok("test -s /usr/share/bash-completion/completions/fwdguard");
    assert_eq!(
        c.ok("systemctl is-enabled fwdguard").trim(),
        "enabled",
        "the preset enables the unit"
    );

    let security = c.text("systemd-analyze security --no-pager fwdguard.service");
    let exposure: f64 = security
        .lines()
        .find_map(|l| l.split("fwdguard.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{security}"));
    eprintln!("systemd-analyze security fwdguard.service in the container: {exposure}");
    assert!(exposure <= 2.0, "exposure {exposure} > 2.0:\n{security}");
}

/// Makes the container a CentOS host as far as forwarding goes: `net.ipv4.ip_forward = 0` in
/// /etc/sysctl.conf and EL7's network script as `network.service`, started (forwarding is 0).
fn centos(c: &Container) {
    let fixture = |name: &str| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/e2e/fixtures")
                .join(name),
        )
        .expect("fixture")
    };
    c.put("/etc/sysctl.conf", &fixture("sysctl.conf"));
    c.put("/etc/rc.d/init.d/network", &fixture("network"));
    c.put(
        "/etc/systemd/system/network.service",
        &fixture("network.service"),
    );
    c.ok("chmod 755 /etc/rc.d/init.d/network && systemctl daemon-reload && systemctl enable --now network");
    assert_eq!(
        ip_forward(c),
        "0",
        "sysctl.conf did not turn forwarding off"
    );
}

/// Scenario 2: CentOS. `net.ipv4.ip_forward = 0` in /etc/sysctl.conf and EL7's network script:
/// restarting network, restarting systemd-sysctl and rebooting each knock forwarding to 0, and
/// each time it ends at 1, with the drop and the repair in the journal.
#[test]
fn centos_network_restart_sysctl_and_reboot_end_with_forwarding_on() {
    if !prerequisites("centos_network_restart_sysctl_and_reboot_end_with_forwarding_on") {
        return;
    }
    let mut c = installed("centos", centos);
    // This scenario knocks forwarding down about 8 times within a minute, which the default
    // configuration rightly reports as flapping (one message instead of one per drop).
    reconfigure(
        &c,
        "flap-threshold = 100\n\n[[guard]]\nkey = \"net.ipv4.ip_forward\"\nvalue = \"1\"\n",
    );
    assert_eq!(ip_forward(&c), "1");

    // stop: sysctl -w net.ipv4.ip_forward=0; start: the sysctl files, twice.
    let step = cursor(&c);
    c.ok("systemctl restart network");
    repaired(&c, &step, 2);

    let step = cursor(&c);
    c.ok("systemctl restart systemd-sysctl");
    repaired(&c, &step, 1);

    let explained = c.ok("journalctl -u fwdguard -x --no-pager");
    assert!(
        explained.contains("Something on this host set the key"),
        "journalctl -x shows no catalog text:\n{explained}"
    );

    // At boot systemd-sysctl sets 0 before fwdguard starts (After=systemd-sysctl.service), and
    // network.service sets it again after: fwdguard repairs both.
    c.reboot();
    wait(&c, "fwdguard.service active after reboot", || {
        c.text("systemctl is-active fwdguard").trim() == "active"
    });
    let restores = c.ok(&format!(
        "journalctl -b -u fwdguard -o json --no-pager MESSAGE_ID={}",
        message_id::DRIFT_RESTORED
    ));
    assert!(
        restores.lines().count() >= 1,
        "no restore in the journal of the new boot"
    );
    assert_eq!(ip_forward(&c), "1");
    assert_eq!(
        c.ok("systemctl is-active network").trim(),
        "active",
        "network.service ran at boot"
    );
}

/// Scenarios 3 and 5: with action "alert" forwarding stays 0 and the journal says so at
/// priority err; a reload with a broken file keeps the running configuration and says why.
#[test]
fn alert_only_and_a_broken_reload() {
    if !prerequisites("alert_only_and_a_broken_reload") {
        return;
    }
    let c = installed("alert", |_| {});
    reconfigure(
        &c,
        "[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = \"1\"\naction = \"alert\"\n",
    );

    let alert_seen = |cursor: &str| {
        let alerts = wait_reports(&c, cursor, message_id::DRIFT_ALERTED, 1);
        assert_eq!(field(&alerts[0], "PRIORITY"), "3", "{}", alerts[0]);
        assert_eq!(field(&alerts[0], "FWDGUARD_NEW"), "0");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(ip_forward(&c), "0", "action alert changed the value");
    };
    let step = cursor(&c);
    c.ok("sysctl -w net.ipv4.ip_forward=0");
    alert_seen(&step);
    let err = c.ok("journalctl -u fwdguard -p err --no-pager -o cat");
    assert!(err.contains("action is alert"), "{err}");

    // A broken file: the reload fails, the service keeps running on the alert configuration.
    let pid = main_pid(&c);
    let step = cursor(&c);
    c.put("/etc/fwdguard/fwdguard.toml", b"[[guard]]\nkey = \n");
    c.ok("systemctl reload fwdguard");
    let failed = wait_reports(&c, &step, message_id::RELOAD_FAILED, 1);
    assert!(
        field(&failed[0], "FWDGUARD_ERROR").contains("fwdguard.toml:2"),
        "the error names file and line: {}",
        failed[0]
    );
    let status = c.text("systemctl status fwdguard --no-pager -l");
    assert!(status.contains("Active: active (running)"), "{status}");
    assert!(
        status.contains("reload"),
        "systemctl status says nothing of the reload:\n{status}"
    );
    assert_eq!(main_pid(&c), pid, "the daemon restarted");

    let step = cursor(&c);
    c.ok("sysctl -w net.ipv4.ip_forward=1");
    wait_reports(&c, &step, message_id::RECOVERED, 1);
    let step = cursor(&c);
    c.ok("sysctl -w net.ipv4.ip_forward=0");
    alert_seen(&step);
}

/// Scenario 4: a daemon that stops answering (SIGSTOP) is killed by the watchdog and restarted,
/// and forwarding is guarded again.
#[test]
fn watchdog_restarts_a_stuck_daemon() {
    if !prerequisites("watchdog_restarts_a_stuck_daemon") {
        return;
    }
    let c = installed("watchdog", |_| {});
    // The unit's 30 s, shortened so that the test does not wait half a minute.
    c.put(
        "/etc/systemd/system/fwdguard.service.d/e2e-watchdog.conf",
        b"[Service]\nWatchdogSec=2s\n",
    );
    c.ok("systemctl daemon-reload && systemctl restart fwdguard");
    let pid = main_pid(&c);
    let step = cursor(&c);
    c.ok(&format!("kill -STOP {pid}"));
    wait(&c, "a new fwdguard process", || {
        let now = main_pid(&c);
        now != pid && now != "0" && c.text("systemctl is-active fwdguard").trim() == "active"
    });
    let said: Vec<_> = since(&c, &step)
        .iter()
        .map(|e| field(e, "MESSAGE").to_owned())
        .collect();
    assert!(
        said.iter().any(|m| m.contains("Watchdog timeout")),
        "no watchdog timeout in: {said:#?}"
    );
    let step = cursor(&c);
    c.ok("sysctl -w net.ipv4.ip_forward=0");
    repaired(&c, &step, 1);
}

/// Scenario 6: an upgrade keeps an edited configuration and restarts the service, removing the
/// package stops it, purging removes the configuration and the user.
#[test]
fn upgrade_keeps_config_remove_stops_purge_cleans_up() {
    if !prerequisites("upgrade_keeps_config_remove_stops_purge_cleans_up") {
        return;
    }
    let debs = debs();
    let c = installed("upgrade", |_| {});
    let edited = "# edited by the operator\nreread-interval = \"10s\"\n\n[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = \"1\"\n";
    c.put("/etc/fwdguard/fwdguard.toml", edited.as_bytes());
    let pid = main_pid(&c);

    c.put(
        "/root/fwdguard-upgrade.deb",
        &std::fs::read(&debs.v2).expect("read .deb"),
    );
    c.ok("dpkg -i /root/fwdguard-upgrade.deb");
    assert_eq!(
        c.ok("dpkg-query -W -f '${Version}' fwdguard").trim(),
        debs.version2
    );
    assert_eq!(
        c.ok("cat /etc/fwdguard/fwdguard.toml"),
        edited,
        "the upgrade replaced the edited configuration"
    );
    wait(&c, "the upgraded service running", || {
        let now = main_pid(&c);
        now != pid && now != "0" && c.text("systemctl is-active fwdguard").trim() == "active"
    });

    c.ok("dpkg -r fwdguard");
    assert_eq!(c.text("systemctl is-active fwdguard").trim(), "inactive");
    assert!(
        !c.sh("systemctl is-enabled fwdguard").status.success(),
        "still enabled after removal"
    );
    assert_eq!(
        c.ok("cat /etc/fwdguard/fwdguard.toml"),
        edited,
        "remove (not purge) keeps the configuration"
    );
    c.ok("test ! -e /usr/bin/fwdguard");

    c.ok("dpkg -P fwdguard");
    c.ok("test ! -e /etc/fwdguard");
    assert!(
        !c.sh("getent passwd fwdguard").status.success(),
        "purge left the user"
    );
}

/// Issue 10 under real systemd: with the packaged drop-in that grants the BPF hook's privileges
/// (`fwdguard-bpf.conf`, linked as the README says) and `action = "prevent"`, the CentOS
/// `network` restart never lets forwarding leave 1 (a reader in the container sees no 0), and
/// the journal names the writers, `sysctl` of `network.service` among them. `systemctl stop
/// fwdguard` takes the hook away, so a 0 set on purpose then stays.
#[test]
fn prevent_keeps_forwarding_on_through_a_centos_network_restart() {
    if !prerequisites("prevent_keeps_forwarding_on_through_a_centos_network_restart") {
        return;
    }
    // systemd-nspawn keeps CAP_BPF and CAP_PERFMON, and bpf(2) itself, from the container
    // unless asked.
    let c = installed_with(
        "prevent",
        &[
            "--capability=CAP_BPF,CAP_PERFMON",
            "--system-call-filter=bpf",
        ],
        centos,
    );
    c.ok("mkdir -p /etc/systemd/system/fwdguard.service.d \\
          && ln -s /usr/share/fwdguard/fwdguard-bpf.conf /etc/systemd/system/fwdguard.service.d/ \\
          && systemctl daemon-reload");
    c.put(
        "/etc/fwdguard/fwdguard.toml",
        b"flap-threshold = 100\n\n[[guard]]\nkey = \"net.ipv4.ip_forward\"\nvalue = \"1\"\naction = \"prevent\"\n",
    );
    let step = cursor(&c);
    c.ok("systemctl restart fwdguard");
    let attached = wait_reports(&c, &step, message_id::HOOK_ATTACHED, 1);
    assert!(
        field(&attached[0], "MESSAGE").contains("1 key kept from changing"),
        "{}",
        attached[0]
    );
    assert!(
        reports(&c, &step, message_id::PREVENT_UNAVAILABLE).is_empty(),
        "prevent fell back: {:#?}",
        reports(&c, &step, message_id::PREVENT_UNAVAILABLE)
    );
    wait(&c, "ip_forward at 1", || ip_forward(&c) == "1");

    // The drop-in adds exactly two capabilities to the unit's one.
    let status = c.ok(&format!("cat /proc/{}/status", main_pid(&c)));
    // CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39).
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().eq(["CapEff:", "000000c000001000"])),
        "{status}"
    );
    let security = c.text("systemd-analyze security --no-pager fwdguard.service");
    assert!(
        security.contains("Overall exposure level for fwdguard.service: 1."),
        "exposure with the drop-in over 2.0:\n{security}"
    );

    // A reader on the other CPU for the whole restart.
    let reader = c.spawn(
        "n=0 z=0; : >/run/reader.up
         while [ ! -e /run/reader.stop ]; do
             read v </proc/sys/net/ipv4/ip_forward; n=$((n + 1)); [ \"$v\" = 1 ] || z=$((z + 1))
         done
         echo \"$n $z\"",
    );
    wait(&c, "the reader", || {
        c.sh("test -e /run/reader.up").status.success()
    });
    let step = cursor(&c);
    c.ok("systemctl restart network");
    c.ok("systemctl restart systemd-sysctl");
    c.ok("touch /run/reader.stop");
    let out = reader.wait_with_output().expect("reader");
    let counts = String::from_utf8_lossy(&out.stdout);
    let (reads, zeros) = counts
        .trim()
        .split_once(' ')
        .and_then(|(n, z)| Some((n.parse::<u64>().ok()?, z.parse::<u64>().ok()?)))
        .unwrap_or_else(|| {
            panic!(
                "reader said {counts:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("reader: {reads} reads of ip_forward during the restarts, {zeros} not 1");
    assert!(reads > 100, "the reader hardly ran: {reads} reads");
    assert_eq!(zeros, 0, "forwarding left 1 in {zeros} of {reads} reads");

    // stop: `sysctl -w net.ipv4.ip_forward=0` by the network script; start, and the
    // systemd-sysctl restart: the 0 in /etc/sysctl.conf, each replaced.
    let replaced = wait_reports(&c, &step, message_id::WRITE_REPLACED, 4);
    let by = |comm: &str, unit: &str| {
        replaced.iter().any(|e| {
            field(e, "FWDGUARD_WRITER_COMM") == comm && field(e, "FWDGUARD_WRITER_UNIT") == unit
        })
    };
    assert!(
        by("sysctl", "network.service"),
        "no replaced write by sysctl of network.service: {replaced:#?}"
    );
    assert!(by("systemd-sysctl", "network.service"), "{replaced:#?}");
    // systemd-sysctl.service is a oneshot: its cgroup may be gone before the report resolves
    // the writer's cgroup id, and then the unit is not named (its parent, systemd, is).
    assert!(
        replaced.iter().any(|e| {
            field(e, "FWDGUARD_WRITER_COMM") == "systemd-sysctl"
                && field(e, "FWDGUARD_WRITER_PARENT_COMM") == "systemd"
                && ["", "systemd-sysctl.service"].contains(&field(e, "FWDGUARD_WRITER_UNIT"))
        }),
        "{replaced:#?}"
    );
    let stop = replaced
        .iter()
        .find(|e| field(e, "FWDGUARD_WRITER_COMM") == "sysctl")
        .expect("sysctl");
    let message = field(stop, "MESSAGE");
    assert!(
        message.contains("write of 0")
            && message.contains("by sysctl (pid")
            && message.contains("network.service")
            && message.contains("replaced by 1"),
        "{message}"
    );
    assert_eq!(
        field(stop, "FWDGUARD_WRITER_PARENT_COMM"),
        "network",
        "{stop}"
    );
    assert!(
        reports(&c, &step, message_id::DRIFT_RESTORED).is_empty(),
        "a restore means forwarding did drop"
    );
    let by_unit = c.ok("journalctl --no-pager -o cat FWDGUARD_WRITER_UNIT=network.service");
    assert!(by_unit.contains("by sysctl"), "{by_unit}");

    // Pids as the container sees them (fwdguard runs in its pid namespace, not the host's).
    // Through systemd-run: what `nsenter` starts stays in the host's cgroup, outside the
    // container's subtree that the hook is attached to (the restorer repairs those writes).
    let step = cursor(&c);
    // ($$$$: systemd-run makes "$$" of it, as in ExecStart=.) The writer stays a moment: a
    // unit whose cgroup is already gone when the report is made cannot be named.
    let ids = c.ok("systemd-run --quiet --pipe --wait --unit=e2e-writer \\
             sh -c 'echo $$$$ $PPID; echo 0 >/proc/sys/net/ipv4/ip_forward; sleep 1'");
    let (pid, ppid) = ids.trim().split_once(' ').expect("two pids");
    // (Late reports of the restarts above may come first: find this writer's.)
    let mut n = 1;
    let entry = loop {
        let replaced = wait_reports(&c, &step, message_id::WRITE_REPLACED, n);
        if let Some(e) = replaced
            .iter()
            .find(|e| field(e, "FWDGUARD_WRITER_UNIT") == "e2e-writer.service")
        {
            break e.clone();
        }
        n = replaced.len() + 1;
    };
    assert_eq!(
        (
            field(&entry, "FWDGUARD_WRITER_PID"),
            field(&entry, "FWDGUARD_WRITER_PPID"),
            field(&entry, "FWDGUARD_WRITER_COMM"),
            field(&entry, "FWDGUARD_WRITER_PARENT_COMM"),
        ),
        (pid, ppid, "sh", "systemd"),
        "{entry}"
    );
    assert_eq!(ip_forward(&c), "1");

    // The operator who really wants 0 for a moment: stop the service, and the hook is gone.
    c.ok("systemctl stop fwdguard");
    c.ok("sysctl -q -w net.ipv4.ip_forward=0");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ip_forward(&c), "0", "the hook outlived the service");
    c.ok("systemctl start fwdguard");
    wait(&c, "ip_forward restored at start", || ip_forward(&c) == "1");
}
