//! The commands as a user types them: exit codes and what they print.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// `fwdguard ARGS`, which must exit with `code`.
fn fwdguard_exits(args: &[&str], code: i32) -> Output {
    let o = fwdguard(args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "fwdguard {args:?}:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    o
}

/// `fwdguard ARGS -c FIXTURE` with the fixture `name`, which must exit with `code`; the
/// output, and the fixture's path as messages show it.
fn fwdguard_on_fixture_exits(args: &[&str], name: &str, code: i32) -> (Output, String) {
    let path = fixture(name);
    let args = [args, &["-c", path.to_str().expect("path")]].concat();
    (fwdguard_exits(&args, code), path.display().to_string())
}

#[test]
fn version() {
    let o = fwdguard(&["--version"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o),
        format!("fwdguard {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn config_check_accepts_valid_files_and_the_example() {
    let valid = fixture("valid.toml");
    let o = fwdguard_exits(&["config", "check", valid.to_str().expect("path")], 0);
    assert!(stdout(&o).starts_with(&format!("{}: ok, 2 guarded keys\n", valid.display())));

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    fwdguard_exits(&["config", "check", example], 0);
}

#[test]
fn config_check_names_file_line_and_column_and_exits_78() {
    for (name, want) in [
        (
            "unknown-field.toml",
            "4:1: unknown field `acton`, expected one of `key`, `value`, `action`",
        ),
        (
            "absolute-key.toml",
            "2:7: invalid key: `/proc/sys/net/ipv4/ip_forward` is an absolute path",
        ),
        (
            "same-knob-twice.toml",
            "6:7: net.ipv4.conf.all.forwarding is already guarded at line 2 (net.ipv4.ip_forward and net.ipv4.conf.all.forwarding are one knob)",
        ),
        ("bad-duration.toml", "1:19: `often` is not a duration"),
    ] {
        assert_refused(name, want);
    }
}

#[test]
fn run_with_a_missing_or_invalid_file_exits_78() {
    let o = fwdguard_exits(&["run", "-c", "/nonexistent/fwdguard.toml"], 78);
    assert!(
        stderr(&o).contains("/nonexistent/fwdguard.toml: No such file or directory"),
        "{}",
        stderr(&o)
    );

    let (o, bad) = fwdguard_on_fixture_exits(&["run"], "unknown-field.toml", 78);
    assert!(
        stderr(&o).contains(&format!("{bad}:4:1: unknown field `acton`")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_exit_codes_follow_monitoring_plugin_conventions() {
    in_private_netns(
        "check_exit_codes_follow_monitoring_plugin_conventions",
        |ns| {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = dir.path().join("fwdguard.toml");
            let check = |extra: &[&str]| {
                let mut cmd = ns.command(BIN).expect("private");
                cmd.args(["check", "-c", config.to_str().expect("path")])
                    .args(extra);
                cmd.output().expect("run")
            };
            std::fs::write(&config, forwarding_config("restore")).expect("config");

            ns.write(ALL_FORWARDING, "1").expect("write");
            let o = check(&[]);
            assert_eq!(o.status.code(), Some(0));
            assert_eq!(
                stdout(&o),
                "OK: 1 guarded key holds its value\nok       net.ipv4.conf.all.forwarding = 1\n"
            );

            ns.write(ALL_FORWARDING, "0").expect("write");
            let o = check(&[]);
            assert_eq!(o.status.code(), Some(2));
            assert!(stdout(&o).contains("WRONG    net.ipv4.conf.all.forwarding = 0 (want 1)"));
            let o = check(&["--json"]);
            assert_eq!(o.status.code(), Some(2));
            let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
            assert_eq!(json["status"], "wrong");
            assert_eq!(json["keys"][0]["value"], "0");

            std::fs::write(
                &config,
                "[[guard]]\nkey = \"net.ipv4.conf.nosuch0.forwarding\"\nvalue = 1\n",
            )
            .expect("config");
            let o = check(&[]);
            assert_eq!(o.status.code(), Some(3));
            assert!(stdout(&o).contains(
                "UNKNOWN  net.ipv4.conf.nosuch0.forwarding: does not exist on this host"
            ));
        },
    );
}

#[test]
fn demo_heals_every_drop_in_its_own_namespace() {
    // The demo makes its own namespace; running it inside another one keeps even a bug in it
    // away from the host, and in_private_netns checks the host's knob afterwards.
    in_private_netns("demo_heals_every_drop_in_its_own_namespace", |ns| {
        let o = ns
            .command(BIN)
            .expect("private")
            .args(["demo", "--burst", "200"])
            // A normal user's PATH: sysctl(8) lives in /usr/sbin.
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .output()
            .expect("run demo");
        let out = stdout(&o);
        assert!(o.status.success(), "{out}\n{}", stderr(&o));
        assert!(
            out.contains("in a private network namespace net:["),
            "{out}"
        );
        assert!(out.contains("(seen via startup)"), "{out}");
        assert!(out.contains("(seen via netconf)"), "{out}");
        assert!(out.contains("over 200 drops"), "{out}");
        assert!(!out.contains("skipped"), "knock 3 ran sysctl(8): {out}");
        assert!(
            out.contains("net.ipv4.conf.all.forwarding = 1 at the end."),
            "{out}"
        );
    });
}

/// Runs `config check` on the fixture `name` and asserts that it is refused with exit code 78,
/// nothing on stdout, and a first stderr line starting `FILE:want`; returns that `FILE:want`.
fn assert_refused(name: &str, want: &str) -> String {
    let path = fixture(name);
    let o = fwdguard(&["config", "check", path.to_str().expect("path")]);
    let first = stderr(&o).lines().next().unwrap_or_default().to_owned();
    assert_eq!(o.status.code(), Some(78), "{name}: {first}");
    let want = format!("{}:{want}", path.display());
    assert!(
        first.starts_with(&want),
        "{name}:\n  got:  {first}\n  want: {want}"
    );
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    want
}

#[test]
fn config_check_refuses_values_the_key_cannot_hold_at_the_value() {
    for (name, want) in [
        (
            "value-yes.toml",
            "3:9: net.ipv4.conf.all.forwarding: `yes` is not an integer; this key holds an integer",
        ),
        (
            "value-two-fields.toml",
            "3:11: net.ipv4.conf.all.forwarding: `1 0` has 2 fields; this key holds an integer (the kernel would keep the first and ignore the rest",
        ),
        (
            "value-octal.toml",
            "3:9: net.ipv4.conf.all.forwarding: `010` is ambiguous: the kernel reads a leading 0 as octal",
        ),
        (
            "port-range-one-field.toml",
            "3:9: net.ipv4.ip_local_port_range: `1024` has 1 field; this key holds 2 integers",
        ),
        // Not in the table: the shape comes from the key's /proc/sys file (read only).
        (
            "inferred-integer-key.toml",
            "4:9: net.core.somaxconn: `many` is not an integer; this key holds an integer",
        ),
    ] {
        assert_refused(name, want);
    }
}

#[test]
fn out_of_bounds_settings_are_config_errors_at_their_own_line() {
    for (name, want) in [
        (
            "huge-reread-interval.toml",
            "2:19: reread-interval must be between 1s and 1day, not 500000000000years",
        ),
        (
            "zero-flap-window.toml",
            "3:15: flap-window must be between 1s and 1day, not 0s",
        ),
        (
            "huge-flap-threshold.toml",
            "1:18: flap-threshold must be between 2 and 1000, not 4000000000",
        ),
    ] {
        let want = assert_refused(name, want);
        // The daemon refuses the same file the same way: exit 78, not an abort (134).
        let (o, _) = fwdguard_on_fixture_exits(&["run"], name, 78);
        assert!(stderr(&o).contains(&want), "{}", stderr(&o));
    }
}

/// Runs fwdguard with a deadline: a command that hangs is a failure, not a stuck test run.
fn fwdguard_within(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("fwdguard {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn only_regular_files_up_to_1_mib_are_read_as_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let big = dir.path().join("big.toml");
    let mut text = forwarding_config("restore");
    while text.len() <= 1 << 20 {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&big, &text).expect("big file");
    let fifo_s = fifo.display().to_string();
    let big_s = big.display().to_string();
    let dir_s = dir.path().display().to_string();
    for (args, want) in [
        (
            vec!["config", "check", &fifo_s],
            format!("{fifo_s}: is a FIFO, not a regular file"),
        ),
        (
            vec!["run", "-c", &fifo_s],
            format!("{fifo_s}: is a FIFO, not a regular file"),
        ),
        (
            vec!["config", "check", "/dev/zero"],
            "/dev/zero: is a character device, not a regular file".to_owned(),
        ),
        (
            vec!["config", "check", &dir_s],
            format!("{dir_s}: is a directory, not a regular file"),
        ),
        (
            vec!["config", "check", &big_s],
            format!(
                "{big_s}: {} bytes, over the limit of 1048576 bytes (1 MiB)",
                text.len()
            ),
        ),
    ] {
        let o = fwdguard_within(&args, Duration::from_secs(5));
        assert_eq!(o.status.code(), Some(78), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(&want), "{args:?}:\n{}", stderr(&o));
    }

    // A symlink to a regular file is fine.
    let link = dir.path().join("link.toml");
    std::os::unix::fs::symlink(fixture("valid.toml"), &link).expect("symlink");
    fwdguard_exits(&["config", "check", link.to_str().expect("path")], 0);
}

#[test]
fn check_usage_errors_are_unknown_not_critical() {
    let o = fwdguard_exits(&["check", "--jsn"], 3);
    assert_eq!(
        stdout(&o),
        "UNKNOWN: usage: unexpected argument '--jsn' found\n"
    );
    assert!(
        stderr(&o).contains("Usage: fwdguard check"),
        "{}",
        stderr(&o)
    );

    let o = fwdguard_exits(&["check", "--json", "-c"], 3);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(json["status"], "unknown");
    assert_eq!(json["keys"], serde_json::json!([]));
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("usage: ")),
        "{json}"
    );

    // Everywhere else a usage error keeps clap's 2; help is 0.
    assert_eq!(fwdguard(&["run", "--jsn"]).status.code(), Some(2));
    assert_eq!(fwdguard(&["bogus"]).status.code(), Some(2));
    assert_eq!(fwdguard(&["check", "--help"]).status.code(), Some(0));
}

#[test]
fn check_without_a_usable_configuration_says_unknown_on_stdout() {
    let o = fwdguard_exits(&["check", "-c", "/nonexistent/fwdguard.toml"], 3);
    assert_eq!(
        stdout(&o),
        "UNKNOWN: configuration: /nonexistent/fwdguard.toml: No such file or directory (os error 2)\n"
    );
    let o = fwdguard_exits(&["check", "--json", "-c", "/nonexistent/fwdguard.toml"], 3);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        json,
        serde_json::json!({
            "status": "unknown",
            "error": "configuration: /nonexistent/fwdguard.toml: No such file or directory (os error 2)",
            "keys": []
        })
    );
    let (o, bad) = fwdguard_on_fixture_exits(&["check"], "value-yes.toml", 3);
    assert!(
        stdout(&o).starts_with(&format!("UNKNOWN: configuration: {bad}:3:9: ")),
        "{}",
        stdout(&o)
    );
}

#[test]
fn values_are_compared_as_the_kernel_prints_them() {
    in_private_netns("values_are_compared_as_the_kernel_prints_them", |ns| {
        ns.write(ALL_FORWARDING, "1").expect("write");
        let config = fixture("value-leading-zero.toml");
        let o = ns
            .command(BIN)
            .expect("private")
            .args(["check", "-c", config.to_str().expect("path")])
            .output()
            .expect("run");
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        assert_eq!(
            stdout(&o),
            "OK: 1 guarded key holds its value\nok       net.ipv4.conf.all.forwarding = 1\n"
        );
    });
}

#[test]
fn terminal_log_lines_say_each_thing_once() {
    in_private_netns("terminal_log_lines_say_each_thing_once", |ns| {
        ns.write(ALL_FORWARDING, "1").expect("write");
        let d = Daemon::start(&forwarding_config("restore")).ready();
        ns.write(ALL_FORWARDING, "0").expect("write");
        d.wait_stderr("restored to 1", SECOND);
        d.signal(nix::sys::signal::Signal::SIGHUP);
        d.wait_stderr("configuration reloaded from", SECOND);
        let err = d.stderr();
        assert!(
            err.contains("guarding net.ipv4.conf.all.forwarding = 1 (restore); changes seen by netconf events (microseconds)\n"),
            "{err}"
        );
        assert!(err.contains(": 1 guarded key\n"), "{err}");
        for repeated in ["key=", "want=", "action=", "message_id=", "config="] {
            assert!(!err.contains(repeated), "{repeated} in:\n{err}");
        }
    });
}
