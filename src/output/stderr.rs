//! stderr that never blocks the guard: lines go through a bounded queue to a thread of their
//! own, which may wait on a pipe nobody reads; the guard loop never does. A line that finds
//! the queue full is dropped and counted, and the thread writes how many were lost once the
//! reader drains the pipe again.
//!
//! Not `O_NONBLOCK` on fd 2: that flag belongs to the open file description, which stderr
//! shares with whoever started us (a shell's terminal would turn non-blocking too).

use std::io::{self, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use crate::report::{Priority, Report, Sink};

/// Lines that may wait for a slow reader before new ones are dropped.
const QUEUE: usize = 1024;

static LOST: AtomicU64 = AtomicU64::new(0);
/// Lines queued and not yet written.
static QUEUED: AtomicU64 = AtomicU64::new(0);
static UNREPORTED: AtomicU64 = AtomicU64::new(0);
static QUEUE_TX: OnceLock<SyncSender<Vec<u8>>> = OnceLock::new();

/// Lines dropped so far because stderr was not being read.
pub fn lost() -> u64 {
    LOST.load(Ordering::Relaxed)
}

/// Queues one line (or several) for stderr without waiting. Before the writer thread is
/// started (or if it cannot be), writes directly: nothing runs on the guard loop yet.
pub fn write(bytes: Vec<u8>) {
    let Some(tx) = QUEUE_TX.get() else {
        let _ = io::stderr().write_all(&bytes);
        return;
    };
    QUEUED.fetch_add(1, Ordering::Relaxed);
    match tx.try_send(bytes) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            QUEUED.fetch_sub(1, Ordering::Relaxed);
            LOST.fetch_add(1, Ordering::Relaxed);
            UNREPORTED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Gives queued lines up to `patience` to reach stderr, before the process exits: the last
/// words (a configuration error) matter, but a reader that never reads must not hold up exit.
pub fn drain(patience: std::time::Duration) {
    let start = std::time::Instant::now();
    while QUEUED.load(Ordering::Relaxed) > 0 && start.elapsed() < patience {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Starts the writer thread; later calls do nothing.
pub fn start() {
    QUEUE_TX.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("stderr".into())
            .spawn(move || writer(rx, io::stderr()));
        if let Err(e) = spawned {
            let _ = writeln!(io::stderr(), "fwdguard: no stderr writer thread: {e}");
        }
        tx
    });
}

fn writer(rx: Receiver<Vec<u8>>, mut out: impl Write) {
    for line in rx {
        let _ = out.write_all(&line);
        QUEUED.fetch_sub(1, Ordering::Relaxed);
        // We got through: the reader drains again. Say what it missed.
        let lost = UNREPORTED.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let notice = Report::OutputLost {
                output: "stderr".into(),
                lost,
            };
            let _ = writeln!(out, "WARN {notice}");
        }
    }
}

/// A `tracing_subscriber` writer: formats a line into a buffer, queues it when done.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stderr;

/// One formatted line on its way to the queue.
#[derive(Debug, Default)]
pub struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            write(std::mem::take(&mut self.0));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line::default()
    }
}

/// Reports as log lines through `tracing`: stderr when there is no journal.
#[derive(Debug, Default)]
pub struct LogSink;

impl Sink for LogSink {
    fn name(&self) -> String {
        "stderr".into()
    }

    fn dropped(&self) -> u64 {
        lost()
    }

    fn emit(&mut self, report: &Report) {
        let key = report.key().map(ToString::to_string).unwrap_or_default();
        let id = report.message_id();
        match report.priority() {
            Priority::Crit | Priority::Err => tracing::error!(message_id = id, key, "{report}"),
            Priority::Warning => tracing::warn!(message_id = id, key, "{report}"),
            Priority::Notice | Priority::Info => tracing::info!(message_id = id, key, "{report}"),
        }
    }
}
