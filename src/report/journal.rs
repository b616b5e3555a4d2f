//! Native journal entries, written straight to journald's socket so every report keeps its own
//! `PRIORITY`, `MESSAGE_ID` and `FWDGUARD_*` fields.

use std::io;
use std::os::fd::AsFd;
use std::os::linux::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use super::{Report, Sink};

pub const SOCKET: &str = "/run/systemd/journal/socket";
const IDENTIFIER: &str = "fwdguard";

/// True when our stderr is a journal stream, i.e. we run as a systemd service logging to the
/// journal. systemd sets `JOURNAL_STREAM=DEV:INODE` for exactly that stream; comparing it with
/// stderr keeps a `fwdguard run` typed into a terminal on a systemd host printing to the
/// terminal (systemd.exec(5), "JOURNAL_STREAM").
pub fn stderr_is_journal() -> bool {
    let Ok(want) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
    else {
        return false;
    };
    want == format!("{}:{}", meta.st_dev(), meta.st_ino())
}

/// Serializes one entry in the journal's native protocol (systemd.journal-fields(7),
/// "Native Journal Protocol"): `KEY=value\n`, or for values with a newline
/// `KEY\n<u64 little-endian length><value>\n`.
pub fn encode(report: &Report) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let mut field = |name: &str, value: &str| {
        out.extend_from_slice(name.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    };
    field("MESSAGE", &report.to_string());
    field("PRIORITY", &(report.priority() as u8).to_string());
    field("MESSAGE_ID", report.message_id());
    field("SYSLOG_IDENTIFIER", IDENTIFIER);
    for (name, value) in report.fields() {
        field(name, &value);
    }
    out
}

/// Sends reports to journald.
#[derive(Debug)]
pub struct Journal {
    socket: UnixDatagram,
    dropped: u64,
}

impl Journal {
    pub fn connect(path: &Path) -> io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        // A journald that stops reading must not stall the guard: an entry that does not fit
        // into the socket buffer is dropped and counted instead of blocking a restore.
        socket.set_nonblocking(true)?;
        Ok(Self { socket, dropped: 0 })
    }
}

impl Sink for Journal {
    fn emit(&mut self, report: &Report) {
        if let Err(e) = self.socket.send(&encode(report)) {
            self.dropped += 1;
            tracing::error!(dropped = self.dropped, "journal entry lost: {e}: {report}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Trigger;
    use crate::sysctl::Value;
    use std::time::Duration;

    fn alerted() -> Report {
        Report::DriftAlerted {
            key: crate::key::SysctlKey::parse("net.ipv4.conf.all.forwarding").expect("key"),
            want: Value::new("1"),
            value: Value::new("0"),
            trigger: Trigger::Netconf,
        }
    }

    #[test]
    fn entry_carries_the_fields_operators_filter_on() {
        let text = String::from_utf8(encode(&alerted())).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("MESSAGE=net.ipv4.conf.all.forwarding is 0, want 1"));
        for want in [
            "PRIORITY=3",
            "MESSAGE_ID=81f67f1d96034c98864e53ac0e6ec3b4",
            "SYSLOG_IDENTIFIER=fwdguard",
            "FWDGUARD_KEY=net.ipv4.conf.all.forwarding",
            "FWDGUARD_NEW=0",
            "FWDGUARD_WANT=1",
            "FWDGUARD_ACTION=alert",
            "FWDGUARD_TRIGGER=netconf",
        ] {
            assert!(lines.contains(&want), "{want} missing from {lines:?}");
        }
    }

    #[test]
    fn multi_line_values_use_the_length_prefixed_form() {
        let r = Report::ReloadFailed {
            origin: "/etc/fwdguard/fwdguard.toml".into(),
            error: "a.toml:1:1: bad\n  x\n  ^".into(),
        };
        let bytes = encode(&r);
        let start = bytes
            .windows(14)
            .position(|w| w == b"FWDGUARD_ERROR")
            .expect("field present");
        let rest = &bytes[start + 14..];
        assert_eq!(rest[0], b'\n');
        let len = u64::from_le_bytes(rest[1..9].try_into().expect("8 bytes")) as usize;
        assert_eq!(&rest[9..9 + len], b"a.toml:1:1: bad\n  x\n  ^");
        assert_eq!(rest[9 + len], b'\n');
    }

    #[test]
    fn entries_arrive_as_one_datagram() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("socket");
        let server = UnixDatagram::bind(&path).expect("bind");
        let mut journal = Journal::connect(&path).expect("connect");
        let report = Report::FlappingEnded {
            key: crate::key::SysctlKey::parse("net.ipv4.ip_forward").expect("key"),
            drops: 7,
            lasted: Duration::from_secs(3),
        };
        journal.emit(&report);
        let mut buf = vec![0; 4096];
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], encode(&report).as_slice());
    }
}
