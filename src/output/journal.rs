//! Native journal entries, written straight to journald's socket so every report keeps its own
//! `PRIORITY`, `MESSAGE_ID` and `FWDGUARD_*` fields.

use std::io;
use std::os::fd::AsFd;
use std::os::linux::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::report::{Report, Sink};

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
    let mut field = |name: &str, value: &str| push_field(&mut out, name, value);
    field("MESSAGE", &report.to_string());
    field("PRIORITY", &(report.priority() as u8).to_string());
    field("MESSAGE_ID", report.message_id());
    field("SYSLOG_IDENTIFIER", IDENTIFIER);
    for (name, value) in report.fields() {
        field(name, &value);
    }
    out
}

/// journald's socket, written without ever waiting: shared by the report sink and the
/// diagnostics layer, so both count their losses in one place.
#[derive(Debug)]
pub struct JournalSocket {
    socket: UnixDatagram,
    path: PathBuf,
    dropped: AtomicU64,
    /// Dropped and not yet told to the journal.
    unreported: AtomicU64,
}

impl JournalSocket {
    pub fn open(path: &Path) -> io::Result<Arc<Self>> {
        let socket = UnixDatagram::unbound()?;
        // A journald that stops reading must not stall the guard (its queue holds
        // net.unix.max_dgram_qlen datagrams, then a blocking sender waits): an entry that does
        // not fit is dropped and counted instead.
        socket.set_nonblocking(true)?;
        // Fail early, as systemd's own clients do, when there is no journald at all.
        std::fs::metadata(path)?;
        Ok(Arc::new(Self {
            socket,
            path: path.to_owned(),
            dropped: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
        }))
    }

    /// Sends one entry now or drops it. Once journald reads again, the first entry to get
    /// through is preceded by a notice of how many were lost.
    pub fn send(&self, entry: &[u8]) -> bool {
        if !self.flush() {
            self.count_drop();
            return false;
        }
        // send_to, not a connected socket: a restarted journald is reached again.
        match self.socket.send_to(entry, &self.path) {
            Ok(_) => true,
            Err(_) => {
                self.count_drop();
                false
            }
        }
    }

    /// Tells the journal about entries lost so far, if any. True when nothing is left to tell.
    pub fn flush(&self) -> bool {
        let lost = self.unreported.load(Ordering::Relaxed);
        if lost == 0 {
            return true;
        }
        let notice = encode(&Report::OutputLost {
            output: "the journal".into(),
            lost,
        });
        if self.socket.send_to(&notice, &self.path).is_err() {
            return false;
        }
        self.unreported.fetch_sub(lost, Ordering::Relaxed);
        true
    }

    fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.unreported.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn backlog(&self) -> bool {
        self.unreported.load(Ordering::Relaxed) > 0
    }
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

/// Sends reports to journald.
#[derive(Debug)]
pub struct Journal(pub Arc<JournalSocket>);

impl Sink for Journal {
    fn emit(&mut self, report: &Report) {
        self.0.send(&encode(report));
    }

    fn name(&self) -> String {
        "journal".into()
    }

    fn dropped(&self) -> u64 {
        self.0.dropped()
    }

    fn backlog(&self) -> bool {
        self.0.backlog()
    }

    fn flush(&mut self) {
        self.0.flush();
    }
}

/// Diagnostics (`tracing` events) as native journal entries on the same non-blocking socket:
/// `MESSAGE`, `PRIORITY` from the level, and each field as `FWDGUARD_<NAME>`, so they read
/// like the reports' (`FWDGUARD_KEY=...`).
#[derive(Debug)]
pub struct JournalLayer(pub Arc<JournalSocket>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for JournalLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => "3",
            tracing::Level::WARN => "4",
            tracing::Level::INFO => "6",
            _ => "7",
        };
        let mut out = Vec::with_capacity(256);
        push_field(&mut out, "MESSAGE", &fields.message);
        push_field(&mut out, "PRIORITY", priority);
        push_field(&mut out, "SYSLOG_IDENTIFIER", IDENTIFIER);
        for (name, value) in &fields.rest {
            push_field(&mut out, name, value);
        }
        self.0.send(&out);
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, String)>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "message_id" => self.rest.push(("MESSAGE_ID".into(), value.to_owned())),
            name => self.rest.push((
                format!("FWDGUARD_{}", name.to_ascii_uppercase()),
                value.to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Trigger;
    use crate::value::Value;
    use std::time::Duration;

    fn alerted() -> Report {
        Report::DriftAlerted {
            key: crate::key::SysctlKey::parse("net.ipv4.conf.all.forwarding").expect("key"),
            want: Value::new("1"),
            value: Value::new("0"),
            trigger: Trigger::Netconf,
            cause: None,
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

    /// A journal that sends to a socket of the test's own (in the returned directory): the
    /// server end of it, where the test reads what the journal would have got.
    fn journal_of_our_own() -> (tempfile::TempDir, UnixDatagram, Journal) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("socket");
        let server = UnixDatagram::bind(&path).expect("bind");
        let journal = Journal(JournalSocket::open(&path).expect("open"));
        (dir, server, journal)
    }

    #[test]
    fn entries_arrive_as_one_datagram() {
        let (_dir, server, mut journal) = journal_of_our_own();
        let report = Report::FlappingEnded {
            key: crate::key::SysctlKey::parse("net.ipv4.ip_forward").expect("key"),
            action: crate::config::Action::Restore,
            drops: 7,
            lasted: Duration::from_secs(3),
        };
        journal.emit(&report);
        let mut buf = vec![0; 4096];
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], encode(&report).as_slice());
    }

    #[test]
    fn a_journal_that_does_not_read_costs_entries_not_time_and_hears_of_the_loss() {
        let (_dir, server, mut journal) = journal_of_our_own();
        let start = std::time::Instant::now();
        // The queue holds net.unix.max_dgram_qlen (10 here) entries; a blocking sender would
        // hang on the 11th.
        for _ in 0..1000 {
            journal.emit(&alerted());
        }
        assert!(start.elapsed() < Duration::from_secs(1));
        let lost = journal.dropped();
        assert!(lost > 900, "{lost} dropped");
        assert!(journal.backlog());

        let mut buf = vec![0; 65536];
        server.set_nonblocking(true).expect("nonblocking");
        while server.recv(&mut buf).is_ok() {}
        journal.flush();
        assert!(!journal.backlog());
        let n = server.recv(&mut buf).expect("the loss notice");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            text.contains(&format!(
                "MESSAGE={lost} messages to the journal were dropped while it was not reading"
            )),
            "{text}"
        );
        assert!(
            text.contains("MESSAGE_ID=d5c2a0e4b7f14f7c9a1e3b6d8c0f2a47"),
            "{text}"
        );
    }
}
