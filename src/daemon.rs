//! The daemon: one loop over the sources (netconf and link events, inotify, the timed re-read),
//! the signals and the watchdog. Every observation goes through the pure policy, whose decisions
//! are carried out here: write the knob, report, tell systemd.

use std::collections::HashMap;
use std::future::{Future, pending};
use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, MissedTickBehavior, interval, interval_at, sleep_until};

use crate::config::Config;
use crate::key::{ConfDevice, Watch};
use crate::policy::GuardState;
use crate::report::{Report, Sink, Trigger};
use crate::source::files::FileWatch;
use crate::source::netlink::{Device, EventSocket, Family, KernelEvent, RequestSocket};
use crate::sysctl::{Knobs, ProcSys};
use crate::systemd;

/// Events lost are reported at most this often; the re-read after each loss always happens.
const EVENTS_LOST_REPORT_EVERY: Duration = Duration::from_secs(60);

/// What the daemon needs to start.
pub struct Setup {
    pub config: Config,
    /// The file named with `-c`, re-read on SIGHUP. `None`: the default path or the built-in
    /// default, resolved again on each reload.
    pub explicit: Option<PathBuf>,
    /// Where reports go.
    pub sinks: Vec<Box<dyn Sink + Send>>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("config", &self.config)
            .field("explicit", &self.explicit)
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot watch sysctl files: inotify: {0}")]
    Inotify(#[source] std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// Runs until SIGTERM, SIGINT or `shutdown` completes.
pub async fn run(setup: Setup, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut guard = Guardian::start(setup)?;
    tokio::pin!(shutdown);

    let mut reread = reread_timer(guard.config.reread_interval);
    let mut watchdog = systemd::watchdog_interval().map(|period| {
        let mut t = interval(period);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    });
    let mut kernel_events = Vec::new();
    let mut written = Vec::new();

    systemd::ready(&guard.status_line());
    tracing::info!("ready: {}", guard.status_line());

    loop {
        let deadline = guard.next_deadline();
        tokio::select! {
            r = next_kernel_batch(&mut guard.events, &mut kernel_events) => {
                guard.on_kernel_events(r, &mut kernel_events);
            }
            r = guard.files.next(&mut written) => match r {
                Ok(()) => {
                    for i in written.drain(..) {
                        guard.reconcile(i, Trigger::Inotify);
                    }
                }
                Err(e) => tracing::error!("inotify: {e}"),
            },
            _ = reread.tick() => {
                guard.reconcile_all(Trigger::Reread);
                guard.refresh_file_watches();
            }
            _ = async { sleep_until(deadline?).await; Some(()) }, if deadline.is_some() => {
                guard.tick();
            }
            _ = async { watchdog.as_mut()?.tick().await; Some(()) }, if watchdog.is_some() => {
                systemd::watchdog();
                guard.publish_status();
            }
            _ = hup.recv() => {
                let before = guard.config.reread_interval;
                guard.reload();
                if guard.config.reread_interval != before {
                    reread = reread_timer(guard.config.reread_interval);
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            () = &mut shutdown => break,
        }
    }
    systemd::stopping();
    tracing::info!("stopping");
    Ok(())
}

fn reread_timer(period: Duration) -> tokio::time::Interval {
    let mut t = interval_at(Instant::now() + period, period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

async fn next_kernel_batch(
    events: &mut Option<EventSocket>,
    out: &mut Vec<KernelEvent>,
) -> std::io::Result<()> {
    match events {
        Some(socket) => socket.next_batch(out).await,
        None => pending().await,
    }
}

/// The guarded keys and everything needed to keep them right.
struct Guardian {
    config: Config,
    explicit: Option<PathBuf>,
    guards: Vec<GuardState>,
    /// How each guard's key is watched, by guard index: worked out once, not per event.
    watches: Vec<Watch>,
    knobs: ProcSys,
    sinks: Vec<Box<dyn Sink + Send>>,
    /// `None` when netlink could not be used: then inotify and the re-read are all there is.
    events: Option<EventSocket>,
    requests: Option<RequestSocket>,
    files: FileWatch,
    /// Interface index to name, to map netconf events to per-interface guards.
    links: HashMap<u32, String>,
    /// Guards to reconcile after the current batch of kernel events, with the first trigger.
    dirty: Vec<Option<Trigger>>,
    events_lost: u64,
    events_lost_reported: Option<Instant>,
    socket_errors: u32,
    last_report: Option<String>,
    reload_note: Option<String>,
}

impl Guardian {
    /// Opens the sources and reconciles every guard once, so that a knob that is wrong at
    /// start is fixed before READY=1.
    fn start(setup: Setup) -> Result<Self, DaemonError> {
        let config = setup.config;
        let (events, requests) = open_netlink();
        let mut this = Self {
            guards: Vec::new(),
            watches: Vec::new(),
            knobs: ProcSys::default(),
            sinks: setup.sinks,
            explicit: setup.explicit,
            events,
            requests,
            files: FileWatch::new().map_err(DaemonError::Inotify)?,
            links: HashMap::new(),
            dirty: Vec::new(),
            events_lost: 0,
            events_lost_reported: None,
            socket_errors: 0,
            last_report: None,
            reload_note: None,
            config: config.clone(),
        };
        this.refresh_links();
        this.install(config, Trigger::Startup);
        Ok(this)
    }

    /// Puts `config` in force: new guard states (carrying over what is known about keys that
    /// stay), new file watches, and a reconcile of every key.
    fn install(&mut self, config: Config, trigger: Trigger) {
        let mut old: HashMap<_, _> = std::mem::take(&mut self.guards)
            .into_iter()
            .map(|g| (g.guard.key.clone(), g))
            .collect();
        self.guards = config
            .guards
            .iter()
            .map(|spec| {
                let mut g = GuardState::new(spec.clone(), config.flapping);
                if let Some(prev) = old.remove(&spec.key) {
                    g.carry_over(prev);
                }
                g
            })
            .collect();
        self.dirty = vec![None; self.guards.len()];
        self.watches = self.guards.iter().map(|g| g.guard.key.watch()).collect();
        for (g, watch) in self.guards.iter().zip(&self.watches) {
            let seen_by = match watch {
                Watch::Netconf { .. } if self.events.is_some() => "netconf events (microseconds)",
                Watch::Netconf { .. } => "timed re-read only: netlink is unavailable",
                Watch::File => {
                    "inotify on writes through its /proc/sys file, else the timed re-read"
                }
            };
            tracing::info!(
                key = %g.guard.key,
                want = %g.guard.want,
                action = g.guard.action.as_str(),
                "guarding {} = {} ({}); changes seen by {seen_by}",
                g.guard.key,
                g.guard.want,
                g.guard.action.as_str()
            );
        }
        self.config = config;
        self.files.clear();
        self.refresh_file_watches();
        self.reconcile_all(trigger);
    }

    /// SIGHUP: validate the whole file; keep the old configuration if it is bad.
    fn reload(&mut self) {
        systemd::reloading();
        let origin = match &self.explicit {
            Some(p) => p.display().to_string(),
            None => crate::config::DEFAULT_PATH.to_owned(),
        };
        match Config::resolve(self.explicit.as_deref()) {
            Ok(config) => {
                let report = Report::ConfigReloaded {
                    origin: config.origin.to_string(),
                    guards: config.guards.len(),
                };
                self.reload_note = None;
                self.emit(report);
                self.install(config, Trigger::Reload);
            }
            Err(e) => {
                let error = e.to_string();
                let first = error.lines().next().unwrap_or_default().to_owned();
                self.reload_note = Some(format!("reload failed, running previous config: {first}"));
                self.emit(Report::ReloadFailed { origin, error });
            }
        }
        systemd::ready(&self.status_line());
    }

    fn reconcile_all(&mut self, trigger: Trigger) {
        for i in 0..self.guards.len() {
            self.reconcile(i, trigger);
        }
    }

    /// Reads one key, lets the policy decide, and carries the decision out: the restore first,
    /// reports after it, so reporting never delays the fix.
    fn reconcile(&mut self, i: usize, trigger: Trigger) {
        let Some(g) = self.guards.get_mut(i) else {
            return;
        };
        let reading = self.knobs.read(&g.guard.key);
        let mut decision = g.observe(reading, trigger, Instant::now());
        let mut reports = std::mem::take(&mut decision.reports);
        // The policy bounds how often it asks to write again.
        while decision.restore {
            let outcome = self
                .knobs
                .write(&g.guard.key, &g.guard.want)
                .and_then(|()| self.knobs.read(&g.guard.key));
            decision = g.restored(outcome, trigger, Instant::now());
            reports.append(&mut decision.reports);
        }
        for r in reports {
            self.emit(r);
        }
    }

    fn on_kernel_events(&mut self, result: std::io::Result<()>, batch: &mut Vec<KernelEvent>) {
        if let Err(e) = result {
            self.socket_errors += 1;
            tracing::error!("netlink event socket: {e}; re-reading every key");
            if self.socket_errors >= 100 {
                tracing::error!(
                    "netlink event socket keeps failing; giving it up: from now on only inotify and the timed re-read watch the keys"
                );
                self.events = None;
            }
            batch.push(KernelEvent::Overrun);
        } else {
            self.socket_errors = 0;
        }
        for event in batch.drain(..) {
            tracing::trace!(?event, "kernel event");
            match event {
                KernelEvent::Netconf { family, device } => self.mark_netconf(family, device),
                KernelEvent::LinkNew { index, name } => {
                    if let Some(old) = self.links.insert(index, name.clone())
                        && old != name
                    {
                        tracing::info!("interface {old} is now called {name}");
                        self.mark_interface(&old, Trigger::Link);
                    }
                    self.mark_interface(&name, Trigger::Link);
                }
                KernelEvent::LinkDel { index, name } => {
                    self.links.remove(&index);
                    self.mark_interface(&name, Trigger::Link);
                }
                KernelEvent::Overrun => {
                    self.events_lost += 1;
                    self.refresh_links();
                    for d in &mut self.dirty {
                        d.get_or_insert(Trigger::Overrun);
                    }
                    let now = Instant::now();
                    if self
                        .events_lost_reported
                        .is_none_or(|t| now - t >= EVENTS_LOST_REPORT_EVERY)
                    {
                        self.events_lost_reported = Some(now);
                        self.emit(Report::EventsLost {
                            times: self.events_lost,
                        });
                    }
                }
            }
        }
        let mut link_changed = false;
        for i in 0..self.dirty.len() {
            if let Some(trigger) = self.dirty[i].take() {
                link_changed |= trigger == Trigger::Link;
                self.reconcile(i, trigger);
            }
        }
        if link_changed {
            // A file of a re-created interface is a new inode: watch it again.
            self.refresh_file_watches();
        }
    }

    fn mark_netconf(&mut self, family: Family, device: Device) {
        let name = match device {
            Device::Index(i) => self.links.get(&i).map(String::as_str),
            _ => None,
        };
        for (watch, dirty) in self.watches.iter().zip(&mut self.dirty) {
            let Watch::Netconf {
                family: f,
                device: d,
            } = watch
            else {
                continue;
            };
            let hit = *f == family
                && match (d, device) {
                    (ConfDevice::All, Device::All) | (ConfDevice::Default, Device::Default) => true,
                    // An index not in the table yet: its link event is still on the way, so
                    // check every per-interface guard rather than miss one.
                    (ConfDevice::Interface(n), Device::Index(_)) => name.is_none_or(|m| m == n),
                    _ => false,
                };
            if hit {
                dirty.get_or_insert(Trigger::Netconf);
            }
        }
    }

    fn mark_interface(&mut self, name: &str, trigger: Trigger) {
        for (g, dirty) in self.guards.iter().zip(&mut self.dirty) {
            if g.guard.key.interface() == Some(name) {
                dirty.get_or_insert(trigger);
            }
        }
    }

    /// Re-reads the interface table (at start and after lost events).
    fn refresh_links(&mut self) {
        let Some(requests) = &mut self.requests else {
            return;
        };
        match requests.links() {
            Ok(links) => self.links = links.into_iter().collect(),
            Err(e) => tracing::error!("cannot list interfaces: {e}"),
        }
    }

    /// Watches the files of keys without netconf events. A key whose file is missing now is
    /// picked up here again on a later re-read or link event.
    fn refresh_file_watches(&mut self) {
        for (i, (g, watch)) in self.guards.iter().zip(&self.watches).enumerate() {
            let needs_watch = match watch {
                Watch::File => true,
                Watch::Netconf { .. } => self.events.is_none(),
            };
            if needs_watch && let Err(e) = self.files.watch(i, &g.guard.key.proc_path()) {
                tracing::debug!(key = %g.guard.key, "no inotify watch: {e}");
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.guards
            .iter()
            .filter_map(GuardState::next_deadline)
            .min()
    }

    /// A retry or the end of a flapping episode fell due.
    fn tick(&mut self) {
        let now = Instant::now();
        let mut reports = Vec::new();
        let mut due = Vec::new();
        for (i, g) in self.guards.iter_mut().enumerate() {
            if g.tick(now, &mut reports) {
                due.push(i);
            }
        }
        for r in reports {
            self.emit(r);
        }
        for i in due {
            self.reconcile(i, Trigger::Retry);
        }
    }

    fn emit(&mut self, report: Report) {
        for sink in &mut self.sinks {
            sink.emit(&report);
        }
        self.last_report = Some(report.to_string());
        self.publish_status();
    }

    fn publish_status(&self) {
        systemd::status(&self.status_line());
    }

    /// `STATUS=`: what is guarded, restores so far, the last event.
    fn status_line(&self) -> String {
        let holding = self.guards.iter().filter(|g| g.holding()).count();
        let unavailable = self.guards.iter().filter(|g| g.unavailable()).count();
        let restores: u64 = self.guards.iter().map(|g| g.restores).sum();
        let mut s = format!(
            "guarding {} key{}: {holding} holding",
            self.guards.len(),
            if self.guards.len() == 1 { "" } else { "s" }
        );
        if unavailable > 0 {
            s.push_str(&format!(", {unavailable} unavailable"));
        }
        let drifted = self.guards.len() - holding - unavailable;
        if drifted > 0 {
            s.push_str(&format!(", {drifted} WRONG"));
        }
        s.push_str(&format!("; {restores} restores"));
        if self.events.is_none() {
            s.push_str("; no netlink events, re-read only");
        }
        if let Some(note) = &self.reload_note {
            s.push_str("; ");
            s.push_str(note);
        }
        if let Some(last) = &self.last_report {
            s.push_str("; last: ");
            s.push_str(last);
        }
        s
    }
}

/// Opens the event and request sockets. Without them fwdguard still guards, more slowly, so a
/// failure is logged loudly rather than fatal.
fn open_netlink() -> (Option<EventSocket>, Option<RequestSocket>) {
    let events = EventSocket::open()
        .inspect_err(|e| {
            tracing::error!("cannot subscribe to netlink netconf events: {e}; only the timed re-read and inotify will see changes");
        })
        .ok();
    let mut requests = RequestSocket::open()
        .inspect_err(|e| tracing::error!("cannot open a netlink request socket: {e}"))
        .ok();
    if let Some(r) = &mut requests {
        for family in [Family::Ipv4, Family::Ipv6] {
            match r.netconf_forwarding(family) {
                Ok(Some(_)) => {}
                Ok(None) => tracing::info!(
                    ?family,
                    "the kernel sends no netconf for {family:?} (disabled?); its keys are checked by re-read"
                ),
                Err(e) => tracing::warn!(?family, "netconf probe failed: {e}"),
            }
        }
    }
    (events, requests)
}
