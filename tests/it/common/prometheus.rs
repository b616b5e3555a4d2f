//! The real Prometheus tools from Debian: `prometheus-alertmanager` started on loopback with a
//! temporary configuration and storage, and `promtool`. Tests find them with `common::tool`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `promtool check metrics` on a text exposition; it must pass.
pub fn check_metrics(promtool: &Path, text: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A plain HTTP/1.0 GET on loopback: status and body.
pub fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// A free port on 127.0.0.1 (free when this returns).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// A running Alertmanager; killed when dropped.
#[derive(Debug)]
pub struct Alertmanager {
    child: Child,
    _dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

impl Alertmanager {
    /// Starts `binary` with one receiver, a webhook to `notify_url` that also hears
    /// resolutions, and short group timers so notifications come within a second or two.
    pub fn start(binary: &Path, notify_url: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: test\n  group_by: [alertname, instance, key]\n  group_wait: 100ms\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    webhook_configs:\n      - url: {notify_url}\n        send_resolved: true\n"
            ),
        )
        .expect("config");
        let addr = free_addr();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            // No cluster: no gossip port, nothing but loopback HTTP.
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr"))
            .spawn()
            .expect("start alertmanager");
        let am = Self {
            child,
            _dir: dir,
            addr,
        };
        let start = Instant::now();
        while !matches!(get(addr, "/-/ready", None), Ok((200, _))) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "alertmanager not ready: {}",
                am.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        am
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("stderr")).unwrap_or_default()
    }

    /// `GET /api/v2/alerts`: the alerts Alertmanager holds that have not ended.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let (status, body) = get(self.addr, "/api/v2/alerts", None).expect("GET alerts");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("alerts JSON")
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
