//! Diagnostics through `tracing`: to the journal when stderr is a journal stream, else
//! readable lines on stderr. `RUST_LOG` overrides the level (`info` by default). Neither ever
//! waits for its reader (see [`crate::output`]).

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::prelude::*;

use crate::output::journal::{self, Journal, JournalLayer, JournalSocket};
use crate::output::stderr;
use crate::output::stderr::LogSink;
use crate::report::Sink;

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Sets up diagnostics for the daemon and returns where its reports go: the journal's native
/// protocol under systemd, else log lines on stderr.
pub fn init_daemon() -> Box<dyn Sink> {
    if journal::stderr_is_journal() {
        match JournalSocket::open(std::path::Path::new(journal::SOCKET)) {
            Ok(socket) => {
                tracing_subscriber::registry()
                    .with(filter())
                    .with(JournalLayer(socket.clone()))
                    .init();
                return Box::new(Journal(socket));
            }
            Err(e) => {
                init_stderr();
                tracing::warn!(
                    "stderr is the journal but its socket is not usable ({e}); logging to stderr"
                );
                return Box::new(LogSink);
            }
        }
    }
    init_stderr();
    Box::new(LogSink)
}

/// Readable lines on stderr, coloured only on a terminal, through the non-blocking writer.
pub fn init_stderr() {
    use std::io::IsTerminal;
    stderr::start();
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(stderr::Stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .fmt_fields(Readable)
        .init();
}

/// Formats an event's fields for a person: the message, then only the fields it does not
/// already say. Structured fields exist for the journal (`FWDGUARD_KEY=...`); on a terminal
/// `guarding net.ipv4.conf.all.forwarding = 1 ... key=net.ipv4.conf.all.forwarding want=1`
/// says everything twice. `message_id` is for journal queries only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Readable;

impl<'w> FormatFields<'w> for Readable {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut collect = Collect::default();
        fields.record(&mut collect);
        writer.write_str(&collect.message)?;
        for (name, value) in &collect.others {
            if *name != "message_id" && !collect.message.contains(value.as_str()) {
                write!(writer, " {name}={value}")?;
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Collect {
    message: String,
    others: Vec<(&'static str, String)>,
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.others.push((field.name(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.others.push((field.name(), format!("{value:?}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `init_stderr` prints for the events logged in `f`.
    fn printed(f: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_target(false)
            .without_time()
            .with_level(false)
            .fmt_fields(Readable)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().expect("lock").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn terminal_lines_say_each_field_once() {
        let key = "net.ipv4.conf.all.forwarding";
        let out = printed(|| {
            tracing::info!(
                key,
                want = 1,
                action = "restore",
                "guarding {key} = 1 (restore)"
            );
            tracing::warn!(
                message_id = "3755efd96d564517beeea6434c76615e",
                key,
                "{key} was 0, restored to 1"
            );
            tracing::info!(key, attempts = 3, "restore failed again");
        });
        assert_eq!(
            out,
            "guarding net.ipv4.conf.all.forwarding = 1 (restore)\n\
             net.ipv4.conf.all.forwarding was 0, restored to 1\n\
             restore failed again key=net.ipv4.conf.all.forwarding attempts=3\n"
        );
    }
}
