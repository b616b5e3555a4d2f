//! `fwdguard doctor --root` on fixture roots (tests/fixtures/doctor) that reproduce the usual
//! causes: exit codes, evidence and fix texts; then each suggested change is written into a
//! copy of the fixture and doctor must find no persisted hazard any more.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{BIN, stdout};

fn fixture(name: &str) -> PathBuf {
    crate::common::fixture("doctor").join(name)
}

/// A copy of a fixture, symlinks kept, so fixes can be written into it; and its `root`.
fn copy(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(fixture(name))
        .arg(dir.path())
        .status()
        .expect("cp")
        .success();
    assert!(ok, "copy {name}");
    let root = dir.path().join(name).join("root");
    (dir, root)
}

fn doctor(root: &Path, json: bool) -> (u8, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("doctor").arg("--root").arg(root);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("run doctor");
    let code = out.status.code().expect("exit code") as u8;
    (code, stdout(&out))
}

fn json(root: &Path) -> (u8, serde_json::Value) {
    let (code, out) = doctor(root, true);
    (
        code,
        serde_json::from_str(&out).expect("doctor --json prints JSON"),
    )
}

fn hazards(v: &serde_json::Value) -> Vec<(String, String, String)> {
    v["hazards"]
        .as_array()
        .expect("hazards")
        .iter()
        .map(|h| {
            (
                h["kind"].as_str().unwrap_or_default().to_owned(),
                h["evidence"].as_str().unwrap_or_default().to_owned(),
                h["fix"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Writes doctor's sysctl fix (edits and drop-in) into `root`.
fn apply_fix(root: &Path, v: &serde_json::Value) {
    let fix = &v["sysctl_fix"];
    assert_eq!(fix["verified"], true, "fix not verified: {fix}");
    for e in fix["edits"].as_array().expect("edits") {
        let file = root.join(e["file"].as_str().expect("file").trim_start_matches('/'));
        let text = std::fs::read_to_string(&file).expect("read file to edit");
        let line = e["line"].as_u64().expect("line") as usize;
        let mut lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines[line - 1], e["old"].as_str().expect("old"));
        lines[line - 1] = e["new"].as_str().expect("new");
        std::fs::write(&file, lines.join("\n")).expect("write edit");
    }
    if let Some(d) = fix.get("drop_in") {
        let path = root.join(d["path"].as_str().expect("path").trim_start_matches('/'));
        std::fs::write(path, d["content"].as_str().expect("content")).expect("write drop-in");
    }
}

fn persisted(v: &serde_json::Value) -> usize {
    hazards(v).iter().filter(|h| h.0 == "persisted").count()
}

/// doctor's JSON for `root`, which must exit 1 with exactly one hazard: (kind, evidence, fix).
fn one_hazard(root: &Path) -> (serde_json::Value, (String, String, String)) {
    let (code, v) = json(root);
    assert_eq!(code, 1, "{v}");
    let mut h = hazards(&v);
    assert_eq!(h.len(), 1, "{h:?}");
    (v, h.remove(0))
}

/// Writes doctor's fix into `root`; doctor then finds no persisted hazard and exits 0.
fn fixed(root: &Path, v: &serde_json::Value) {
    apply_fix(root, v);
    let (code, v) = json(root);
    assert_eq!((code, persisted(&v)), (0, 0), "{v}");
}

#[test]
fn clean_host_exits_0() {
    let (code, out) = doctor(&fixture("clean/root"), false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("No hazards found."), "{out}");
    assert!(
        out.contains("systemd-sysctl: 1 from /etc/sysctl.d/99-docker.conf:2"),
        "{out}"
    );
}

#[test]
fn sysctl_conf_with_zero_is_edited() {
    let (_dir, root) = copy("sysctl-conf-zero");
    let (v, h) = one_hazard(&root);
    assert_eq!(h.1, "/etc/sysctl.conf:2");
    assert_eq!(
        h.2,
        "change /etc/sysctl.conf:2 from `net.ipv4.ip_forward = 0` to `net.ipv4.ip_forward = 1`"
    );
    // systemd-sysctl reads it through the 99-sysctl.conf link: said so.
    let (_, text) = doctor(&root, false);
    assert!(
        text.contains(
            "systemd-sysctl: 0 from /etc/sysctl.conf:2 (via /etc/sysctl.d/99-sysctl.conf)"
        ),
        "{text}"
    );
    fixed(&root, &v);
}

#[test]
fn cis_drop_in_is_beaten_by_the_suggested_drop_in() {
    let (_dir, root) = copy("cis-dropin");
    let (v, h) = one_hazard(&root);
    assert_eq!(h.1, "/etc/sysctl.d/60-cis-network.conf:2");
    assert!(
        h.2.starts_with("create /etc/sysctl.d/99-zz-fwdguard.conf"),
        "{h:?}"
    );
    assert_eq!(
        v["sysctl_fix"]["drop_in"]["content"]
            .as_str()
            .expect("content")
            .lines()
            .last(),
        Some("net.ipv4.conf.all.forwarding = 1")
    );
    fixed(&root, &v);
}

#[test]
fn initscripts_network_stop_is_named() {
    // /etc/init.d is a link to rc.d/init.d: one finding, not two.
    let (_, h) = one_hazard(&fixture("initscripts/root"));
    assert_eq!(h.0, "network-script");
    assert_eq!(h.1, "/etc/rc.d/init.d/network:14");
    assert!(h.2.contains("NetworkManager"), "{h:?}");
    // EL7 has systemd-sysctl, which apply_sysctl then runs.
    let (_, text) = doctor(&fixture("initscripts/root"), false);
    assert!(
        text.contains("EL7 initscripts apply_sysctl [runs /lib/systemd/systemd-sysctl]: not set"),
        "{text}"
    );
}

#[test]
fn docker_ip_forward_false() {
    let (_, h) = one_hazard(&fixture("docker-ip-forward/root"));
    assert_eq!(
        (h.0.as_str(), h.1.as_str()),
        ("docker", "/etc/docker/daemon.json:3")
    );
    assert!(h.2.starts_with("remove `\"ip-forward\": false` from /etc/docker/daemon.json:3"));
}

#[test]
fn networkd_files() {
    let (code, v) = json(&fixture("networkd/root"));
    assert_eq!(code, 1);
    let mut h: Vec<String> = hazards(&v)
        .into_iter()
        .map(|h| format!("{} {}", h.0, h.1))
        .collect();
    h.sort();
    assert_eq!(
        h,
        [
            "networkd /etc/systemd/network/10-uplink.network:6",
            "networkd /etc/systemd/networkd.conf:3"
        ]
    );
}

#[test]
fn bad_input_is_reported_and_the_rest_still_analysed() {
    let (_dir, root) = copy("bad-input");
    let huge = std::fs::File::create(root.join("etc/sysctl.d/90-huge.conf")).expect("create");
    huge.set_len(64 << 20).expect("sparse 64 MiB");
    // Made here: git keeps no empty directory, so a fixture could not carry it.
    std::fs::create_dir(root.join("etc/sysctl.d/80-dir.conf")).expect("a directory named .conf");
    let (code, v) = json(&root);
    assert_eq!(code, 1, "{v}");
    let h = hazards(&v);
    // Only the real hardening file: the links that point out of the root are never followed.
    assert_eq!(
        h.iter().map(|h| h.1.as_str()).collect::<Vec<_>>(),
        ["/etc/sysctl.d/70-hardening.conf:1"],
        "{h:?}"
    );
    let bad: Vec<String> = v["unreadable"]
        .as_array()
        .expect("unreadable")
        .iter()
        .map(|u| {
            format!(
                "{}: {}",
                u["path"].as_str().unwrap_or(""),
                u["error"].as_str().unwrap_or("")
            )
        })
        .collect();
    for (path, says) in [
        ("/etc/sysctl.d/20-binary.conf", "binary file"),
        ("/etc/sysctl.d/30-loop.conf", "symbolic links"),
        ("/etc/sysctl.d/40-escape.conf", "dangling"),
        ("/etc/sysctl.d/41-escape-abs.conf", "dangling"),
        ("/etc/sysctl.d/80-dir.conf", "not a regular file"),
        ("/etc/sysctl.d/90-huge.conf", "larger than"),
        ("/etc/docker/daemon.json:2:0", "not valid JSON"),
    ] {
        assert!(
            bad.iter().any(|b| b.starts_with(path) && b.contains(says)),
            "{path} ({says}) missing in {bad:#?}"
        );
    }
    let lines = v["skipped_lines"].to_string();
    assert!(lines.contains("10-garbage.conf"), "{lines}");
    apply_fix(&root, &v);
    let (_, v) = json(&root);
    assert_eq!(persisted(&v), 0, "{v}");
}

/// An image's configuration is read as that system's: a key fwdguard does not know is not
/// held to what this host's `/proc/sys` happens to hold (`net.core.somaxconn` is an integer
/// here, so `config check` on the host refuses "many").
#[test]
fn an_image_configuration_is_not_judged_by_this_hosts_proc_sys() {
    let (_dir, root) = copy("clean");
    std::fs::create_dir_all(root.join("etc/fwdguard")).expect("mkdir");
    std::fs::copy(
        crate::common::fixture("inferred-integer-key.toml"),
        root.join("etc/fwdguard/fwdguard.toml"),
    )
    .expect("copy config");
    let (code, v) = json(&root);
    assert_eq!(code, 0, "{v:#}");
    assert!(
        v.to_string().contains("net.core.somaxconn"),
        "the image's guard is diagnosed: {v:#}"
    );
}
