//! The commands as a user types them: exit codes and what they print.

mod common;

use std::process::{Command, Output};

use common::*;
use fwdguard::sandbox::in_private_netns;

fn fwdguard(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run fwdguard")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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
    let o = fwdguard(&["config", "check", valid.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with(&format!("{}: ok, 2 guarded keys\n", valid.display())));

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let o = fwdguard(&["config", "check", example]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
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
        let path = fixture(name);
        let o = fwdguard(&["config", "check", path.to_str().expect("path")]);
        assert_eq!(o.status.code(), Some(78), "{name}");
        let first = stderr(&o).lines().next().unwrap_or_default().to_owned();
        let want = format!("{}:{want}", path.display());
        assert!(
            first.starts_with(&want),
            "{name}:\n  got:  {first}\n  want: {want}"
        );
        assert!(stdout(&o).is_empty());
    }
}

#[test]
fn run_with_a_missing_or_invalid_file_exits_78() {
    let o = fwdguard(&["run", "-c", "/nonexistent/fwdguard.toml"]);
    assert_eq!(o.status.code(), Some(78));
    assert!(
        stderr(&o).contains("/nonexistent/fwdguard.toml: No such file or directory"),
        "{}",
        stderr(&o)
    );

    let bad = fixture("unknown-field.toml");
    let o = fwdguard(&["run", "-c", bad.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(78));
    assert!(
        stderr(&o).contains(&format!("{}:4:1: unknown field `acton`", bad.display())),
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
                "OK: 1 of 1 guarded keys hold their values\nok       net.ipv4.conf.all.forwarding = 1\n"
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
        assert!(
            out.contains("net.ipv4.conf.all.forwarding = 1 at the end."),
            "{out}"
        );
    });
}
