//! The service manager's side of the protocol (sd_notify(3)): readiness, status, watchdog,
//! reload and stop. Each call is a no-op when not started by systemd (no `NOTIFY_SOCKET`).

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        // The service manager going away is not a reason to stop guarding.
        tracing::warn!("sd_notify failed: {e}");
    }
}

/// Tells systemd the guard is up, with the current status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// A keep-alive ping; sent only from the loop that does the work, so a stuck loop misses it.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// Start of a reload. systemd (since v253, `Type=notify-reload`) wants the time with it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => {
            tracing::warn!("cannot read CLOCK_MONOTONIC: {e}");
            send(&[NotifyState::Reloading]);
        }
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// How often to ping: half the watchdog timeout systemd set, or `None` without a watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|timeout| timeout / 2)
}
