//! Diagnostics through `tracing`: to the journal when stderr is a journal stream, else
//! readable lines on stderr. `RUST_LOG` overrides the level (`info` by default).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use crate::report::journal::{self, Journal};
use crate::report::{LogSink, Sink};

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Sets up diagnostics for the daemon and returns where its reports go.
pub fn init_daemon() -> Box<dyn Sink + Send> {
    if journal::stderr_is_journal() {
        match (
            tracing_journald::layer(),
            Journal::connect(std::path::Path::new(journal::SOCKET)),
        ) {
            (Ok(layer), Ok(sink)) => {
                tracing_subscriber::registry()
                    .with(filter())
                    .with(
                        layer
                            .with_syslog_identifier("fwdguard".into())
                            // Diagnostics' fields read like the reports': FWDGUARD_KEY=...
                            .with_field_prefix(Some("FWDGUARD".into())),
                    )
                    .init();
                return Box::new(sink);
            }
            (Err(e), _) | (_, Err(e)) => {
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

/// Readable lines on stderr, coloured only on a terminal.
pub fn init_stderr() {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
