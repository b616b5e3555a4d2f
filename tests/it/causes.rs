//! Naming the cause, end to end with the real daemon in a private network namespace:
//! - persisted-settings conflicts reported at once as the sysctl files in a temporary root are
//!   added, edited, renamed over and removed;
//! - drops attributed to a systemd job (a stand-in Manager on a private dbus-daemon), a 0 that
//!   no event announces repaired as soon as the job ends, and guarding that goes on while the
//!   bus is away.

use std::path::Path;
use std::time::Duration;

use crate::common::bus::{FakeSystemd, PrivateBus, dbus_daemon};
use crate::common::*;

fn config(root: &Path, units: &str, extra_guard: &str) -> String {
    format!(
        "reread-interval = \"1h\"\nservice-units = [{units}]\nservice-window = \"2s\"\npersisted-root = \"{}\"\n\n[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = \"1\"\n{extra_guard}",
        root.display()
    )
}

#[test]
fn persisted_conflicts_come_and_go_as_files_change() {
    in_private_netns("persisted_conflicts_come_and_go_as_files_change", |ns| {
        ns.write(ALL_FORWARDING, "1").expect("write");
        let root = tempfile::tempdir().expect("tempdir");
        let etc = root.path().join("etc/sysctl.d");
        std::fs::create_dir_all(&etc).expect("mkdir");
        let d = Daemon::start(&config(root.path(), "", "")).ready();
        assert!(!d.stderr().contains("will set"), "{}", d.stderr());

        // Added.
        std::fs::write(etc.join("60-cis.conf"), "# CIS\nnet.ipv4.ip_forward = 0\n").expect("w");
        d.wait_stderr(
            "will set net.ipv4.conf.all.forwarding to 0 at the next network restart or boot: /etc/sysctl.d/60-cis.conf:2",
            5 * SECOND,
        );
        // Edited: the conflict goes away.
        std::fs::write(etc.join("60-cis.conf"), "# CIS\nnet.ipv4.ip_forward = 1\n").expect("w");
        d.wait_stderr(
            "/etc/sysctl.d/60-cis.conf:2 no longer sets net.ipv4.conf.all.forwarding to 0",
            5 * SECOND,
        );
        // /etc/sysctl.conf, read last by procps, with a 0.
        std::fs::write(
            root.path().join("etc/sysctl.conf"),
            "net.ipv4.ip_forward=0\n",
        )
        .expect("w");
        d.wait_stderr("/etc/sysctl.conf:1", 5 * SECOND);
        // Renamed over: a fixed copy replaces it in one rename(2).
        std::fs::write(
            root.path().join("etc/.sysctl.conf.new"),
            "net.ipv4.ip_forward=1\n",
        )
        .expect("w");
        std::fs::rename(
            root.path().join("etc/.sysctl.conf.new"),
            root.path().join("etc/sysctl.conf"),
        )
        .expect("rename");
        d.wait_stderr(
            "/etc/sysctl.conf:1 no longer sets net.ipv4.conf.all.forwarding to 0",
            5 * SECOND,
        );
        // Removed.
        std::fs::write(etc.join("90-x.conf"), "net.ipv4.conf.all.forwarding = 0\n").expect("w");
        d.wait_stderr("/etc/sysctl.d/90-x.conf:1 (by", 5 * SECOND);
        std::fs::remove_file(etc.join("90-x.conf")).expect("rm");
        d.wait_stderr(
            "/etc/sysctl.d/90-x.conf:1 no longer sets net.ipv4.conf.all.forwarding to 0",
            5 * SECOND,
        );
        // The guard itself was never disturbed: these are warnings about the future.
        assert_eq!(read(ALL_FORWARDING), "1");
    });
}

#[test]
fn a_persisted_zero_is_reported_at_start() {
    in_private_netns("a_persisted_zero_is_reported_at_start", |ns| {
        ns.write(ALL_FORWARDING, "1").expect("write");
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("etc")).expect("mkdir");
        std::fs::write(
            root.path().join("etc/sysctl.conf"),
            "net.ipv4.ip_forward = 0\n",
        )
        .expect("w");
        let d = Daemon::start(&config(root.path(), "", "")).ready();
        d.wait_stderr(
            "will set net.ipv4.conf.all.forwarding to 0 at the next network restart or boot: /etc/sysctl.conf:1",
            5 * SECOND,
        );
    });
}

#[test]
fn drops_during_a_service_job_are_attributed_and_its_end_rechecks() {
    let Some(program) =
        dbus_daemon("drops_during_a_service_job_are_attributed_and_its_end_rechecks")
    else {
        return;
    };
    in_private_netns(
        "drops_during_a_service_job_are_attributed_and_its_end_rechecks",
        move |ns| {
            ns.write(ALL_FORWARDING, "1").expect("write");
            let mut bus = PrivateBus::start(&program);
            let mut systemd = FakeSystemd::start(&bus.address());
            let root = tempfile::tempdir().expect("tempdir");
            // A key no event announces: only the job's end (or the hourly re-read) sees it.
            let redirects = "/proc/sys/net/ipv4/conf/all/accept_redirects";
            ns.write(redirects, "1").expect("write");
            let extra =
                "\n[[guard]]\nkey = \"net.ipv4.conf.all.accept_redirects\"\nvalue = \"1\"\n";
            let address = bus.address();
            let mut d = Daemon::start_with(
                &config(root.path(), "\"network.service\"", extra),
                |cmd, _| {
                    cmd.env("DBUS_SYSTEM_BUS_ADDRESS", &address);
                },
            )
            .ready();
            systemd.wait_subscribed(1, 5 * SECOND);

            // `systemctl restart network` on EL7: the stop writes ip_forward=0.
            systemd.job_new(17, "network.service", "restart");
            std::thread::sleep(Duration::from_millis(100));
            ns.write(IP_FORWARD, "0").expect("write");
            wait_forwarding_on("forwarding back at 1", SECOND);
            d.wait_stderr(
                "net.ipv4.conf.all.forwarding was 0 (during restart of network.service), restored to 1 in",
                SECOND,
            );
            // STATUS= names it too (its last report).
            d.wait_notify_containing("during restart of network.service", SECOND);

            // A 0 that neither netconf nor inotify sees (written through a second procfs
            // mount), set right as the job ends: the job's end re-checks every key at once.
            let write_through_a_second_proc = "d=$(mktemp -d) && mount -t proc proc \"$d\" && echo 0 > \"$d/sys/net/ipv4/conf/all/accept_redirects\"; r=$?; umount \"$d\"; rmdir \"$d\"; exit $r";
            let [unshare, args @ ..] =
                fwdguard::sandbox::in_private_mounts(write_through_a_second_proc, "sh");
            let status = ns
                .command(unshare)
                .expect("private")
                .args(args)
                .status()
                .expect("unshare (util-linux)");
            assert!(status.success());
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(
                read(redirects),
                "0",
                "nothing should have seen that write yet"
            );
            systemd.job_removed(17, "network.service", "done");
            wait_for("accept_redirects back at 1", SECOND, || {
                read(redirects) == "1"
            });
            d.wait_stderr("net.ipv4.conf.all.accept_redirects was 0", SECOND);
            d.wait_stderr("(seen via service-job)", SECOND);

            // The bus goes away: fwdguard says so once and keeps guarding.
            bus.stop();
            d.wait_stderr("cannot watch systemd service jobs over D-Bus", 5 * SECOND);
            ns.write(ALL_FORWARDING, "0").expect("write");
            wait_forwarding_on("forwarding back at 1", SECOND);
            // ... and comes back: jobs are watched again.
            bus.restart();
            systemd.connect(&bus.address());
            systemd.wait_subscribed(2, 10 * SECOND);
            systemd.job_new(18, "network.service", "stop");
            std::thread::sleep(Duration::from_millis(100));
            ns.write(ALL_FORWARDING, "0").expect("write");
            d.wait_stderr("(during stop of network.service)", SECOND);
        },
    );
}
