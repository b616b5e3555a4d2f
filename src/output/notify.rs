//! The service manager's side of the protocol (sd_notify(3)): readiness, status, watchdog,
//! reload and stop, on one socket kept open and never waited on.
//!
//! PID 1 may stall; its notify queue then fills up (`net.unix.max_dgram_qlen` datagrams) and a
//! blocking sender would wait for it. Here a full queue costs a message, counted: STATUS= is
//! kept and sent again (the latest wins), a lost READY=1 too, WATCHDOG=1 is not (the next
//! ping comes anyway, and a ping must never wait). Without `NOTIFY_SOCKET` all of this is a
//! no-op.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::time::Instant;

/// STATUS= goes out at most this often; changes in between are coalesced, the latest wins.
const STATUS_EVERY: Duration = Duration::from_millis(100);
/// How soon to try again after the service manager's queue was full.
const RETRY_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    /// READY=1 not delivered yet.
    ready: bool,
    /// The newest STATUS= not delivered yet.
    status: Option<String>,
    /// The last STATUS= delivered, not to repeat it.
    sent_status: String,
    last_status_at: Option<Instant>,
    /// A send failed at this time; wait [`RETRY_EVERY`] before the next try.
    blocked_at: Option<Instant>,
    dropped: u64,
    unreported: u64,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, as systemd sets it: a path, or `@name` for the abstract namespace.
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            match Self::open(&path) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!("NOTIFY_SOCKET={path} unusable: {e}; not telling systemd");
                    None
                }
            }
        });
        Self::with(socket)
    }

    fn open(path: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
        let addr = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None => SocketAddr::from_pathname(path)?,
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok((socket, addr))
    }

    /// A notifier on a socket of the caller's (tests), or none.
    pub fn with(socket: Option<(UnixDatagram, SocketAddr)>) -> Self {
        Self {
            socket,
            ready: false,
            status: None,
            sent_status: String::new(),
            last_status_at: None,
            blocked_at: None,
            dropped: 0,
            unreported: 0,
        }
    }

    /// READY=1 with the status line. Retried until delivered.
    pub fn ready(&mut self, status: &str) {
        self.ready = true;
        self.status = Some(status.to_owned());
        self.flush(Instant::now());
    }

    /// A new status line: sent now, or coalesced with later ones.
    pub fn status(&mut self, status: &str) {
        if self.socket.is_none() || status == self.sent_status {
            self.status = None;
            return;
        }
        if self.status.as_deref() != Some(status) {
            self.status = Some(status.to_owned());
        }
        self.flush(Instant::now());
    }

    /// A keep-alive ping; sent only from the loop that does the work, so a stuck loop misses
    /// it. Never retried: the next one is due soon.
    pub fn watchdog(&mut self) {
        self.send_once(&[NotifyState::Watchdog]);
    }

    /// Start of a reload. systemd (since v253, `Type=notify-reload`) wants the time with it.
    pub fn reloading(&mut self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send_once(&[NotifyState::Reloading, now]),
            Err(_) => self.send_once(&[NotifyState::Reloading]),
        }
    }

    pub fn stopping(&mut self) {
        self.send_once(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// When [`flush`](Self::flush) has something to send; `None` when nothing waits.
    pub fn next_flush(&self) -> Option<Instant> {
        self.pending()
            .then(|| self.not_before().unwrap_or_else(Instant::now))
    }

    fn pending(&self) -> bool {
        self.ready || self.status.is_some()
    }

    /// What holds the next send back: a full queue a moment ago, or (for STATUS= alone) the
    /// last one sent less than [`STATUS_EVERY`] ago.
    fn not_before(&self) -> Option<Instant> {
        let after_block = self.blocked_at.map(|t| t + RETRY_EVERY);
        let after_status = if self.ready {
            None
        } else {
            self.last_status_at.map(|t| t + STATUS_EVERY)
        };
        after_block.into_iter().chain(after_status).max()
    }

    /// Sends what waits (READY=1, the latest STATUS=) if it is time.
    pub fn flush(&mut self, now: Instant) {
        if !self.pending() || self.not_before().is_some_and(|t| t > now) {
            return;
        }
        let status = self.status.take();
        let mut states = Vec::with_capacity(2);
        if self.ready {
            states.push(NotifyState::Ready);
        }
        if let Some(s) = &status {
            states.push(NotifyState::Status(s));
        }
        if self.send(&states) {
            self.ready = false;
            if let Some(s) = status {
                self.sent_status = s;
                self.last_status_at = Some(now);
            }
        } else {
            self.status = status;
        }
    }

    /// Messages dropped since the last call, once the service manager reads again: for a
    /// report of the loss.
    pub fn take_loss(&mut self) -> Option<u64> {
        (self.unreported > 0 && self.blocked_at.is_none())
            .then(|| std::mem::take(&mut self.unreported))
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn send_once(&mut self, states: &[NotifyState<'_>]) {
        self.send(states);
    }

    fn send(&mut self, states: &[NotifyState<'_>]) -> bool {
        let Some((socket, addr)) = &self.socket else {
            return true;
        };
        let mut msg = String::new();
        for s in states {
            msg.push_str(&s.to_string());
            msg.push('\n');
        }
        match socket.send_to_addr(msg.as_bytes(), addr) {
            Ok(_) => {
                self.blocked_at = None;
                true
            }
            Err(e) => {
                if self.dropped == 0 {
                    tracing::debug!("notify socket: {e}; dropping, will say so later");
                }
                self.dropped += 1;
                self.unreported += 1;
                self.blocked_at = Some(Instant::now());
                false
            }
        }
    }
}

/// How often to ping: half the watchdog timeout systemd set, or `None` without a watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| timeout / 2)
}
