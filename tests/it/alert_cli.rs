//! `fwdguard config check` on `[[webhook]]` and `[metrics]` tables, and `fwdguard alert test`,
//! as a user runs them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::prometheus::free_addr;
use crate::common::receiver::{Receiver, Reply};
use crate::common::{ONE_GUARD, config_file, fwdguard, stderr, stdout};

fn text(o: &Output) -> (String, String) {
    (stdout(o), stderr(o))
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    config_file(dir, &format!("{ONE_GUARD}{body}"))
}

#[test]
fn config_check_refuses_bad_webhooks_with_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display().to_string();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "TOPSECRET-VALUE\n").expect("secret");
    let open = dir.path().join("open");
    std::fs::write(&open, "https://hooks.example.com/TOPSECRET-PATH\n").expect("open");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let bad_url = dir.path().join("bad-url");
    std::fs::write(&bad_url, "hooks.example.com/TOPSECRET-PATH\n").expect("bad url");

    let cases: Vec<(String, String)> = vec![
        (
            "[[webhook]]\nformat = \"json\"\nurl = \"http://exa mple.com/\"\n".into(),
            "7:7: the URL does not parse".into(),
        ),
        (
            "[[webhook]]\nformat = \"json\"\nurl = \"ftp://example.com/\"\n".into(),
            "7:7: URL scheme `ftp` is not supported: use http or https".into(),
        ),
        (
            format!("[[webhook]]\nformat = \"json\"\nurl-file = \"{d}/missing\"\n"),
            format!("7:12: file {d}/missing: No such file or directory"),
        ),
        (
            format!("[[webhook]]\nformat = \"slack\"\nurl-file = \"{}\"\n", open.display()),
            format!(
                "7:12: file {} is world-writable: anyone could change it (chmod o-w)",
                open.display()
            ),
        ),
        (
            format!("[[webhook]]\nformat = \"slack\"\nurl-file = \"{}\"\n", bad_url.display()),
            format!("7:12: url-file {}: the URL has no scheme", bad_url.display()),
        ),
        (
            format!(
                "[[webhook]]\nformat = \"json\"\nurl = \"https://example.com/\"\nhmac-secret-file = \"{d}/nope\"\n"
            ),
            format!("8:20: file {d}/nope: No such file or directory"),
        ),
        (
            "[[webhook]]\nformat = \"xml\"\nurl = \"https://example.com/\"\n".into(),
            "6:10: unknown variant `xml`, expected one of `json`, `slack`, `alertmanager`".into(),
        ),
        (
            "[[webhook]]\nformat = \"json\"\nurl = \"https://example.com/\"\nevents = [\"drift-restored\", \"drift-fixed\"]\n".into(),
            "8:29: unknown variant `drift-fixed`, expected one of `drift-restored`".into(),
        ),
        (
            "[[webhook]]\nformat = \"json\"\nurl = \"https://example.com/\"\nverify-tls = false\n".into(),
            "8:1: unknown field `verify-tls`".into(),
        ),
        (
            format!(
                "[[webhook]]\nformat = \"json\"\nurl = \"https://example.com/\"\nheaders = {{ Authorization = {{ file = \"{}\" }} }}\n",
                open.display()
            ),
            format!("8:29: file {} is world-writable", open.display()),
        ),
        (
            "[[webhook]]\nformat = \"json\"\n".into(),
            "5:1: webhook json-1: missing url or url-file".into(),
        ),
        (
            "[metrics]\nlisten = \"localhost\"\n".into(),
            "6:10: listen is an address and port, e.g. \"127.0.0.1:10191\"".into(),
        ),
    ];
    for (body, want) in cases {
        let path = write_config(dir.path(), &body);
        let o = fwdguard(&["config", "check", path.to_str().expect("path")]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(78), "{body}\n{out}{err}");
        let first = err.lines().next().unwrap_or_default();
        let want = format!("{}:{want}", path.display());
        assert!(
            first.starts_with(&want),
            "{body}\n  got:  {first}\n  want: {want}"
        );
        assert!(
            !err.contains("TOPSECRET") && !out.contains("TOPSECRET"),
            "a secret leaked: {err}"
        );
    }
}

#[test]
fn config_check_summarises_webhooks_without_their_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = dir.path().join("url");
    std::fs::write(&url, "https://hooks.example.com:8443/services/TOPSECRET\n").expect("url");
    let path = write_config(
        dir.path(),
        &format!(
            "[[webhook]]\nname = \"chat\"\nformat = \"slack\"\nurl-file = \"{}\"\n\n[[webhook]]\nformat = \"alertmanager\"\nurl = \"http://127.0.0.1:9093\"\n\n[metrics]\nlisten = \"127.0.0.1:10191\"\n",
            url.display()
        ),
    );
    let o = fwdguard(&["config", "check", path.to_str().expect("path")]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(
        out.lines().next().unwrap_or_default(),
        format!(
            "{}: ok, 1 guarded key, 2 webhooks: chat (https://hooks.example.com:8443), alertmanager-2 (http://127.0.0.1:9093), metrics on http://127.0.0.1:10191/metrics",
            path.display()
        )
    );
    assert!(!out.contains("TOPSECRET"));
}

#[test]
fn alert_test_prints_each_endpoint_and_exits_0_only_if_all_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ok = Receiver::start(&[]);
    let failing = Receiver::start(&[Reply::Status(503)]);
    let refused = free_addr();
    let good = write_config(
        dir.path(),
        &format!(
            "[[webhook]]\nname = \"ops\"\nformat = \"json\"\nurl = \"{}\"\n",
            ok.url("/hook/TOPSECRET")
        ),
    );
    let o = fwdguard(&["alert", "test", "-c", good.to_str().expect("path")]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert_eq!(out, format!("ops (http://{}): ok, HTTP 200 OK\n", ok.addr));
    let got = ok.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/hook/TOPSECRET");
    assert_eq!(got[0].json()["event"], "test");

    let mixed = write_config(
        dir.path(),
        &format!(
            "[[webhook]]\nname = \"ops\"\nformat = \"json\"\nurl = \"{}\"\n\n[[webhook]]\nname = \"chat\"\nformat = \"slack\"\nurl = \"{}\"\n\n[[webhook]]\nname = \"down\"\nformat = \"json\"\nurl = \"http://{refused}/TOPSECRET\"\n",
            ok.url("/hook/TOPSECRET"),
            failing.url("/TOPSECRET"),
        ),
    );
    let o = fwdguard(&["alert", "test", "-c", mixed.to_str().expect("path")]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        lines[0],
        format!("ops (http://{}): ok, HTTP 200 OK", ok.addr)
    );
    assert_eq!(
        lines[1],
        format!(
            "chat (http://{}): FAILED: HTTP 503 Service Unavailable",
            failing.addr
        )
    );
    assert!(
        lines[2].starts_with(&format!(
            "down (http://{refused}): FAILED: cannot connect: Connection refused"
        )),
        "{}",
        lines[2]
    );
    assert!(!out.contains("TOPSECRET") && !err.contains("TOPSECRET"));

    let none = write_config(dir.path(), "");
    let o = fwdguard(&["alert", "test", "-c", none.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("has no [[webhook]]: nothing to test"));
}
