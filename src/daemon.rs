//! The daemon: one loop over the sources (netconf and link events, inotify, the timed re-read,
//! observations other tasks send in), the signals and the watchdog. Routing says which guards
//! an event concerns, the pure policy decides, and the loop carries the decision out: write
//! the knob first, then report, then publish the snapshot. Nothing here waits on a peer.

use std::collections::BTreeMap;
use std::future::{Future, pending};
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, interval, interval_at, sleep_until};

use crate::bpf::{self, Hook};
use crate::config::{self, Action, Config, Origin};
use crate::hook;
use crate::key::SysctlKey;
use crate::key::{Family, Watch};
use crate::knob::{Access, Knobs, SysctlError};
use crate::observation::{Cause, KernelEvent, Observation, Scope, Trigger};
use crate::output::{self, notify::Notifier};
use crate::policy::GuardState;
use crate::report::{Report, Sink};
use crate::routing::{GuardId, Routes};
use crate::service_jobs::ServiceJobs;
use crate::snapshot::{Degradation, GuardSnapshot, Impairments, OutputLoss, Snapshot};
use crate::source::files::FileWatch;
use crate::source::netlink::{EventSocket, KernelEvents, RequestSocket};
use crate::sysctl::ProcSys;
use crate::value::Value;

/// Events lost are reported at most this often; the re-read after each loss always happens.
const EVENTS_LOST_REPORT_EVERY: Duration = Duration::from_secs(60);
/// Consecutive netlink socket errors after which the event socket is given up.
const NETLINK_ERRORS_TO_GIVE_UP: u32 = 100;
/// How often outputs with something waiting (a lost READY, the notice of a loss) are retried.
const OUTPUT_RETRY: Duration = Duration::from_millis(100);
/// Observations other tasks may queue before their senders wait (in their own tasks).
const OBSERVATION_QUEUE: usize = 256;
/// Reports other tasks may queue (persisted-setting conflicts: a handful at a time).
const REPORT_QUEUE: usize = 64;

/// What the daemon needs to start, and the two ends other tasks use: [`Setup::observer`] to
/// feed observations in, [`Setup::snapshots`] to read the guard's state.
pub struct Setup {
    pub config: Config,
    /// The file named with `-c`, re-read on SIGHUP.
    pub explicit: Option<PathBuf>,
    /// The journal or stderr: where reports go whatever the configuration says.
    pub log: Box<dyn Sink>,
    observer: mpsc::Sender<Observation>,
    inbox: mpsc::Receiver<Observation>,
    snapshot: watch::Sender<Snapshot>,
    reporter: mpsc::Sender<Report>,
    reports: mpsc::Receiver<Report>,
    jobs: Option<watch::Receiver<ServiceJobs>>,
}

impl Setup {
    pub fn new(config: Config, explicit: Option<PathBuf>, log: Box<dyn Sink>) -> Self {
        let (observer, inbox) = mpsc::channel(OBSERVATION_QUEUE);
        let (reporter, reports) = mpsc::channel(REPORT_QUEUE);
        Self {
            config,
            explicit,
            log,
            observer,
            inbox,
            snapshot: watch::Sender::new(Snapshot::default()),
            reporter,
            reports,
            jobs: None,
        }
    }

    /// For a task that finds things worth telling but no key change (persisted settings that
    /// will turn a key off): its reports go to the same sinks as the loop's own.
    pub fn reporter(&self) -> mpsc::Sender<Report> {
        self.reporter.clone()
    }

    /// The service jobs a drop may belong to (kept by the D-Bus job watcher): a drop seen
    /// without a cause of its own is attributed to the job running, or just finished, then.
    pub fn attribute_with(&mut self, jobs: watch::Receiver<ServiceJobs>) {
        self.jobs = Some(jobs);
    }

    /// For a source running in a task of its own (a D-Bus job watcher, a BPF ring buffer
    /// reader): what it sends is routed to the guards like a kernel event.
    pub fn observer(&self) -> mpsc::Sender<Observation> {
        self.observer.clone()
    }

    /// The guard's state, published after every change (STATUS=, metrics).
    pub fn snapshots(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.subscribe()
    }
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("config", &self.config)
            .field("explicit", &self.explicit)
            .field("log", &self.log.name())
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
    #[error("{0}")]
    HookOptions(String),
}

/// The loop's connections to the kernel and the service manager, apart from the knobs. The
/// kernel's events come from an [`EventSocket`], or whatever [`KernelEvents`] a test scripts.
#[derive(Debug)]
pub struct Io<E = EventSocket> {
    /// `None` when netlink could not be used: then inotify and the re-read are all there is.
    pub events: Option<E>,
    pub requests: Option<RequestSocket>,
    /// Why there are no netlink events, if there are none.
    pub netlink_error: Option<String>,
    pub files: FileWatch,
    pub notifier: Notifier,
    /// Ping the watchdog this often.
    pub watchdog: Option<Duration>,
    /// Where to attach the BPF sysctl hook; `None`: no hook (loop tests over knob doubles).
    pub hook: Option<bpf::Options>,
}

impl Io {
    /// The real ones: netlink sockets, inotify, `NOTIFY_SOCKET`, `WATCHDOG_USEC`.
    pub async fn open() -> Result<Self, DaemonError> {
        let (events, netlink_error) = match EventSocket::open() {
            Ok(s) => (Some(s), None),
            Err(e) => {
                tracing::error!(
                    "cannot subscribe to netlink netconf events: {e}; only the timed re-read and inotify will see changes"
                );
                (None, Some(e.to_string()))
            }
        };
        let mut requests = RequestSocket::open()
            .inspect_err(|e| tracing::error!("cannot open a netlink request socket: {e}"))
            .ok();
        if let Some(r) = &mut requests {
            for family in [Family::Ipv4, Family::Ipv6] {
                match r.netconf_forwarding(family).await {
                    Ok(Some(_)) => {}
                    Ok(None) => tracing::info!(
                        ?family,
                        "the kernel sends no netconf for {family:?} (disabled?); its keys are checked by re-read"
                    ),
                    Err(e) => tracing::warn!(?family, "netconf probe failed: {e}"),
                }
            }
        }
        Ok(Self {
            events,
            requests,
            netlink_error,
            files: FileWatch::new().map_err(DaemonError::Inotify)?,
            notifier: Notifier::from_env(),
            watchdog: output::notify::watchdog_interval(),
            hook: Some(hook_options()?),
        })
    }
}

/// Runs until SIGTERM, SIGINT or `shutdown` completes.
pub async fn run(setup: Setup, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let io = Io::open().await?;
    run_with(setup, ProcSys::default(), io, shutdown).await
}

type LinkDump = Pin<Box<dyn Future<Output = (RequestSocket, std::io::Result<Vec<(u32, String)>>)>>>;

/// The loop, over any knobs (tests hand in a double) and any [`Io`].
pub async fn run_with<K: Knobs, E: KernelEvents>(
    setup: Setup,
    knobs: K,
    io: Io<E>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let watchdog_period = io.watchdog;
    let mut g = Guardian::start(setup, knobs, io).await;
    tokio::pin!(shutdown);

    let mut reread = reread_timer(g.config.reread_interval);
    let mut watchdog = watchdog_period.map(|period| {
        let mut t = interval(period);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    });
    let mut kernel_events = Vec::new();
    let mut written = Vec::new();
    let mut link_dump: Option<LinkDump> = None;

    let status = g.ready();
    tracing::info!("ready: {status}");

    loop {
        if link_dump.is_none()
            && let Some(socket) = g.sources.netlink.start_link_dump()
        {
            link_dump = Some(Box::pin(dump_links(socket)));
        }
        let deadline = g.keys.next_deadline();
        let flush_at = g.outputs.next_flush();
        tokio::select! {
            r = next_kernel_batch(&mut g.sources.netlink.events, &mut kernel_events) => {
                g.on_kernel_events(r, &mut kernel_events);
            }
            r = g.sources.files.next(&mut written) => match r {
                Ok(()) => {
                    for id in std::mem::take(&mut written) {
                        g.reconcile(id, &Observation::all(Trigger::Inotify));
                    }
                }
                Err(e) => tracing::error!("inotify: {e}"),
            },
            Some(observation) = g.sources.inbox.recv() => g.on_observation(observation),
            Some(report) = g.sources.reports.recv() => g.outputs.emit(report),
            (socket, links) = async { link_dump.as_mut().expect("guarded").await }, if link_dump.is_some() => {
                link_dump = None;
                g.sources.netlink.requests = Some(socket);
                g.on_links(links);
            }
            _ = reread.tick() => {
                g.reconcile_all(&Observation::all(Trigger::Reread));
                g.refresh_file_watches();
            }
            _ = async { sleep_until(deadline?).await; Some(()) }, if deadline.is_some() => {
                g.tick();
            }
            _ = async { sleep_until(flush_at?).await; Some(()) }, if flush_at.is_some() => {
                g.outputs.flush();
            }
            _ = async { watchdog.as_mut()?.tick().await; Some(()) }, if watchdog.is_some() => {
                g.outputs.notifier.watchdog();
            }
            _ = hup.recv() => {
                let before = g.config.reread_interval;
                g.reload();
                if g.config.reread_interval != before {
                    reread = reread_timer(g.config.reread_interval);
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            () = &mut shutdown => break,
        }
        g.publish();
    }
    g.outputs.notifier.stopping();
    tracing::info!("stopping");
    Ok(())
}

/// The time the core's policy and cause records are given: tokio's clock (paused in tests),
/// as the `std` instant the core takes.
fn policy_now() -> std::time::Instant {
    Instant::now().into_std()
}

fn reread_timer(period: Duration) -> tokio::time::Interval {
    let mut t = interval_at(Instant::now() + period, period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

async fn next_kernel_batch(
    events: &mut Option<impl KernelEvents>,
    out: &mut Vec<KernelEvent>,
) -> std::io::Result<()> {
    match events {
        Some(source) => source.next_batch(out).await,
        None => pending().await,
    }
}

/// A link dump beside the loop's other work, handing the socket back with the result.
async fn dump_links(
    mut socket: RequestSocket,
) -> (RequestSocket, std::io::Result<Vec<(u32, String)>>) {
    let links = socket.links().await;
    (socket, links)
}

/// The daemon: the configuration in force, and its four parts. An event comes from the
/// [`Sources`], [`Keys`] route it, let the policy judge it and write the knob, and the
/// [`Outputs`] tell of it; the [`HookState`] replaces and names writes before they land.
struct Guardian<K: Knobs, E> {
    config: Config,
    /// The file named with `-c`, re-read on SIGHUP.
    explicit: Option<PathBuf>,
    /// Why the last reload failed, while the previous configuration runs on.
    reload_error: Option<String>,
    keys: Keys<K>,
    sources: Sources<E>,
    outputs: Outputs,
    hook: HookState,
}

/// The guarded keys: what the policy knows of each, their open descriptors, and which key an
/// event concerns.
struct Keys<K: Knobs> {
    knobs: K,
    guards: BTreeMap<GuardId, Guarded<K::Knob>>,
    /// The last id handed out: a key keeps its id across reloads, a new key gets a new one.
    next_id: u32,
    routes: Routes,
    /// Where routing puts its observations, kept to spare an allocation per event.
    routed: Vec<(GuardId, Observation)>,
    /// The service jobs a drop without a cause of its own is attributed to (the D-Bus watcher).
    jobs: Option<watch::Receiver<ServiceJobs>>,
}

/// One guarded key: what the policy knows, and its open descriptor.
#[derive(Debug)]
struct Guarded<N> {
    state: GuardState,
    /// Opened on first use; dropped (to be opened again) on an error, a link change, a reload.
    knob: Option<N>,
    /// Whether `knob` was opened for writing.
    writable: bool,
    /// Why the key's file has no inotify watch, when it should have one.
    no_watch: Option<String>,
    /// Opening for writing was refused just now, while opening to read: the restore that
    /// follows reports it rather than asking the kernel again.
    refused: Option<SysctlError>,
}

/// Where observations come from, besides the loop's own timers: the kernel's events, inotify,
/// and the channels other tasks (the D-Bus job watcher, the hook's reader, the persisted-files
/// watch) send into.
struct Sources<E> {
    netlink: Netlink<E>,
    files: FileWatch,
    /// Kept so the inbox never closes, even when no other source holds a sender; the hook's
    /// reader gets a clone.
    observer: mpsc::Sender<Observation>,
    inbox: mpsc::Receiver<Observation>,
    /// Kept, like `observer`, so the channel never closes.
    _reporter: mpsc::Sender<Report>,
    reports: mpsc::Receiver<Report>,
}

/// The netlink side: netconf and link events, and the request socket the interface table is
/// dumped with.
struct Netlink<E> {
    /// `None` when netlink could not be used, or was given up.
    events: Option<E>,
    /// `None` while a link dump runs beside the loop (or when there is none).
    requests: Option<RequestSocket>,
    /// Why there are no netlink events, if there are none.
    error: Option<String>,
    /// Event socket errors in a row.
    socket_errors: u32,
    /// The interface table needs a fresh dump (after lost events).
    links_stale: bool,
    /// Times events were lost (ENOBUFS).
    events_lost: u64,
    events_lost_reported: Option<Instant>,
}

/// Where what the daemon does goes: reports to the journal (or stderr) and the configured
/// sinks, its state to the service manager and, as the snapshot, to metrics.
struct Outputs {
    /// The journal or stderr.
    log: Box<dyn Sink>,
    /// The webhooks' sinks, replaced when a reload changes the `[[webhook]]` tables.
    sinks: Vec<Box<dyn Sink>>,
    /// The webhooks' endpoints and the metrics listener, on the delivery thread.
    configured: output::ConfiguredOutputs,
    notifier: Notifier,
    snapshot: watch::Sender<Snapshot>,
    /// The last report, as its sentence.
    last_report: Option<String>,
    /// Something the snapshot shows changed since it was last published.
    changed: bool,
}

/// The BPF sysctl hook as the loop keeps it: rebuilt on a reload that changes what it guards.
#[derive(Debug, Default)]
struct HookState {
    /// `None`: never attach (loop tests).
    options: Option<bpf::Options>,
    hook: Option<Hook>,
    /// What the hook was last built for, attached or not.
    targets: Vec<bpf::Target>,
    /// Why `prevent` is not in force, if it is not.
    prevent_error: Option<String>,
}

impl<K: Knobs, E: KernelEvents> Guardian<K, E> {
    /// Reconciles every guard once, so that a knob that is wrong at start is fixed before
    /// READY=1.
    async fn start(setup: Setup, knobs: K, io: Io<E>) -> Self {
        let config = setup.config;
        let configured = output::ConfiguredOutputs::new(setup.snapshot.subscribe());
        let mut this = Self {
            keys: Keys {
                knobs,
                guards: BTreeMap::new(),
                next_id: 0,
                routes: Routes::default(),
                routed: Vec::new(),
                jobs: setup.jobs,
            },
            sources: Sources {
                netlink: Netlink {
                    events: io.events,
                    requests: io.requests,
                    error: io.netlink_error,
                    socket_errors: 0,
                    links_stale: false,
                    events_lost: 0,
                    events_lost_reported: None,
                },
                files: io.files,
                observer: setup.observer,
                inbox: setup.inbox,
                _reporter: setup.reporter,
                reports: setup.reports,
            },
            outputs: Outputs {
                log: setup.log,
                sinks: Vec::new(),
                configured,
                notifier: io.notifier,
                snapshot: setup.snapshot,
                last_report: None,
                changed: true,
            },
            hook: HookState {
                options: io.hook,
                ..HookState::default()
            },
            explicit: setup.explicit,
            reload_error: None,
            config: config.clone(),
        };
        // The interface table before the first reconcile, so per-interface events route.
        // At start it may wait for the kernel (with a timeout): nothing is guarded yet.
        if let Some(requests) = &mut this.sources.netlink.requests {
            let links = requests.links().await;
            this.on_links(links);
        }
        this.install(config, Trigger::Startup);
        this
    }

    /// Publishes the state, then says READY=1 with it: readers of the state (the metrics)
    /// have it before the service manager hears READY=1. Returns the status line.
    fn ready(&mut self) -> String {
        let snapshot = self.build_snapshot();
        let status = snapshot.status_line();
        self.outputs.snapshot.send_replace(snapshot);
        self.outputs.notifier.ready(&status);
        self.publish();
        status
    }

    /// Puts `config` in force: guard states (keeping what is known about keys that stay, and
    /// their ids), webhooks and metrics (where their tables changed), file watches, and a
    /// reconcile of every key.
    fn install(&mut self, config: Config, trigger: Trigger) {
        self.keys.install(&config);
        for g in self.keys.guards.values() {
            let guard = &g.state.guard;
            let seen_by = match guard.key.watch() {
                Watch::Netconf { .. } if self.sources.netlink.events.is_some() => {
                    "netconf events (microseconds)"
                }
                Watch::Netconf { .. } => "timed re-read only: netlink is unavailable",
                Watch::File => {
                    "inotify on writes through its /proc/sys file, else the timed re-read"
                }
            };
            tracing::info!(
                key = %guard.key,
                want = %guard.want,
                action = guard.action.as_str(),
                "guarding {} = {} ({}); changes seen by {seen_by}",
                guard.key,
                guard.want,
                guard.action.as_str()
            );
        }
        // Webhooks and metrics: started by the first configuration that asks for them, and again
        // only when a reload changes their table (or the metrics port could not be bound); a
        // reload that leaves a table alone keeps its endpoints' queues, or its listener.
        let outputs = &mut self.outputs;
        if outputs.configured.webhooks() != config.webhooks.as_slice() {
            outputs.sinks = outputs.configured.start_webhooks(&config.webhooks);
        }
        let listen = config.metrics.map(|m| m.listen);
        if outputs.configured.metrics_listen() != listen {
            outputs.configured.bind_metrics(listen);
        }
        self.config = config;
        if let Some(reports) = self.hook.install(&self.config, &self.sources.observer) {
            for r in reports {
                self.outputs.emit(r);
            }
            self.outputs.changed = true;
        }
        self.sources.files.clear();
        self.refresh_file_watches();
        self.reconcile_all(&Observation::all(trigger));
        self.outputs.changed = true;
    }

    /// SIGHUP: validate the whole file; keep the running configuration if it is bad, gone or
    /// unreadable. The built-in default applies only when no file was in force at start.
    fn reload(&mut self) {
        self.outputs.notifier.reloading();
        let path = match (&self.explicit, &self.config.origin) {
            (Some(p), _) | (None, Origin::File(p)) => Some(p.clone()),
            (None, Origin::BuiltIn) => None,
        };
        let origin = match &path {
            Some(p) => p.display().to_string(),
            None => crate::config::DEFAULT_PATH.to_owned(),
        };
        let loaded = match &path {
            Some(p) => config::load(p),
            None => config::resolve(None),
        };
        match loaded {
            Ok(config) => {
                self.reload_error = None;
                self.outputs.emit(Report::ConfigReloaded {
                    origin: config.origin.to_string(),
                    guards: config.guards.len(),
                });
                self.install(config, Trigger::Reload);
            }
            Err(e) => {
                let error = e.to_string();
                self.reload_error = Some(error.lines().next().unwrap_or_default().to_owned());
                self.outputs.emit(Report::ReloadFailed { origin, error });
            }
        }
        self.publish();
        let status = self.outputs.snapshot.borrow().status_line();
        self.outputs.notifier.ready(&status);
    }

    fn reconcile_all(&mut self, observation: &Observation) {
        let ids: Vec<GuardId> = self.keys.guards.keys().copied().collect();
        for id in ids {
            self.reconcile(id, observation);
        }
    }

    /// Lets the policy judge what was seen and carries its decision out: the restore first,
    /// reports after it, so reporting never delays the fix.
    fn reconcile(&mut self, id: GuardId, observation: &Observation) {
        let Some(reports) = self.keys.reconcile(id, observation) else {
            return;
        };
        self.outputs.changed = true;
        for r in reports {
            self.outputs.emit(r);
        }
    }

    fn on_kernel_events(&mut self, result: std::io::Result<()>, batch: &mut Vec<KernelEvent>) {
        if let Err(e) = result {
            tracing::error!("netlink event socket: {e}; re-reading every key");
            if self.sources.netlink.socket_failed() {
                self.give_up_netlink(e.to_string());
            }
            batch.push(KernelEvent::Overrun);
        } else {
            self.sources.netlink.socket_errors = 0;
        }
        let mut routed = std::mem::take(&mut self.keys.routed);
        let mut link_changed = false;
        for event in batch.drain(..) {
            tracing::trace!(?event, "kernel event");
            if event == KernelEvent::Overrun
                && let Some(report) = self.sources.netlink.overrun(Instant::now())
            {
                self.outputs.emit(report);
            }
            self.keys.routes.route(&event, &mut routed);
            for (id, observation) in routed.drain(..) {
                link_changed |= observation.trigger == Trigger::Link;
                self.reconcile(id, &observation);
            }
        }
        self.keys.routed = routed;
        if link_changed {
            // A file of a re-created interface is a new inode: watch it again.
            self.refresh_file_watches();
        }
    }

    fn give_up_netlink(&mut self, error: String) {
        tracing::error!(
            "netlink event socket keeps failing ({error}); giving it up: from now on only inotify and the timed re-read watch the keys"
        );
        let impaired = Impairments {
            no_netlink: Some(&error),
            ..Impairments::default()
        };
        for g in self.keys.guards.values() {
            let key = &g.state.guard.key;
            for d in impaired.degradations(&g.state.guard) {
                tracing::warn!(key = %key, "{}", d.describe(&key.to_string()));
            }
        }
        self.sources.netlink.events = None;
        self.sources.netlink.error = Some(error);
        self.refresh_file_watches();
        self.outputs.changed = true;
    }

    fn on_links(&mut self, links: std::io::Result<Vec<(u32, String)>>) {
        match links {
            Ok(links) => {
                let mut routed = std::mem::take(&mut self.keys.routed);
                self.keys.routes.set_links(links, &mut routed);
                for (id, observation) in routed.drain(..) {
                    self.reconcile(id, &observation);
                }
                self.keys.routed = routed;
            }
            Err(e) => tracing::error!("cannot list interfaces: {e}"),
        }
    }

    /// An observation another task sent in. A write the BPF hook saw is reported with its
    /// writer first, unless the key is flapping (then the episode's reports stand for it);
    /// then the key is checked as after any event.
    fn on_observation(&mut self, observation: Observation) {
        tracing::debug!(?observation, "observation");
        for id in self.keys.routes.resolve(&observation.scope) {
            let recheck = match (&observation.cause, self.keys.guards.get_mut(&id)) {
                (Some(Cause::Writer(writer)), Some(g)) => {
                    let decision = g.state.write_seen(writer, policy_now());
                    for r in decision.reports {
                        self.outputs.emit(r);
                    }
                    decision.recheck
                }
                _ => true,
            };
            if recheck {
                self.reconcile(id, &observation);
            }
        }
    }

    /// Watches the files of keys without netconf events (of all keys, without netlink).
    fn refresh_file_watches(&mut self) {
        let netlink = self.sources.netlink.events.is_some();
        if self
            .keys
            .refresh_file_watches(&mut self.sources.files, netlink)
        {
            self.outputs.changed = true;
        }
    }

    /// A retry or the end of a flapping episode fell due.
    fn tick(&mut self) {
        let (reports, due) = self.keys.tick(policy_now());
        for r in reports {
            self.outputs.emit(r);
        }
        for id in due {
            self.reconcile(id, &Observation::all(Trigger::Retry));
        }
        self.outputs.changed = true;
    }

    /// Publishes the snapshot and the status line, if anything changed.
    fn publish(&mut self) {
        if !std::mem::take(&mut self.outputs.changed) {
            return;
        }
        let snapshot = self.build_snapshot();
        self.outputs.publish(snapshot);
    }

    fn build_snapshot(&self) -> Snapshot {
        Snapshot {
            guards: self.keys.snapshots(
                self.sources.netlink.error.as_deref(),
                self.hook.prevent_error.as_deref(),
            ),
            events_lost: self.sources.netlink.events_lost,
            output_losses: self.outputs.losses(),
            reload_error: self.reload_error.clone(),
            last_report: self.outputs.last_report.clone(),
            hook: self.hook.hook.as_ref().map(|h| hook_place(&h.attachment)),
        }
    }
}

impl<K: Knobs> Keys<K> {
    /// The guards of `config`, keeping what is known about keys that stay, and their ids.
    fn install(&mut self, config: &Config) {
        let mut old: BTreeMap<_, _> = std::mem::take(&mut self.guards)
            .into_iter()
            .map(|(id, g)| (g.state.guard.key.clone(), (id, g)))
            .collect();
        for spec in &config.guards {
            let mut state = GuardState::new(spec.clone(), config.flapping);
            let id = match old.remove(&spec.key) {
                Some((id, prev)) => {
                    state.carry_over(prev.state);
                    id
                }
                None => {
                    self.next_id += 1;
                    GuardId(self.next_id)
                }
            };
            // A fresh descriptor: the action (read or read-write) may have changed.
            self.guards.insert(
                id,
                Guarded {
                    state,
                    knob: None,
                    writable: false,
                    no_watch: None,
                    refused: None,
                },
            );
        }
        self.routes
            .set_guards(self.guards.iter().map(|(id, g)| (*id, &g.state.guard.key)));
    }

    /// What was seen, judged by the policy and carried out on the knob: the restores it asks
    /// for, then the reports to send. `None`: no such guard.
    fn reconcile(&mut self, id: GuardId, observation: &Observation) -> Option<Vec<Report>> {
        let g = self.guards.get_mut(&id)?;
        if observation.trigger == Trigger::Link {
            // The interface came, went or was renamed: the old descriptor is another file.
            g.knob = None;
        }
        // A netconf event carries the new value: when it says the key is wrong, act on it at
        // once, with no read before the write (the read-back after it verifies). When it says
        // the key is right, read to confirm: with two writers racing, the kernel announces the
        // value it sees while sending, which the other write may already have replaced.
        let reading = match (&observation.value, &observation.scope) {
            (Some(v), Scope::Key(_)) if *v != g.state.guard.want => Ok(v.clone()),
            _ => read(&mut self.knobs, g),
        };
        // A wrong value with no cause of its own: the service job running (or just finished)
        // when it was seen, if the D-Bus watcher knows one.
        let job = match (&reading, &observation.cause, &self.jobs) {
            (Ok(v), None, Some(jobs)) if *v != g.state.guard.want => jobs
                .borrow()
                .cause(policy_now())
                .map(crate::observation::Cause::from),
            _ => None,
        };
        let (trigger, cause) = (
            observation.trigger,
            observation.cause.as_ref().or(job.as_ref()),
        );
        let mut decision = g.state.observe(reading, trigger, cause, policy_now());
        let mut reports = std::mem::take(&mut decision.reports);
        // The policy bounds how often it asks to write again.
        while decision.restore {
            let outcome = restore(&mut self.knobs, g);
            decision = g.state.restored(outcome, trigger, cause, policy_now());
            reports.append(&mut decision.reports);
        }
        Some(reports)
    }

    /// Watches the files of keys without netconf events (of all keys, without `netlink`). A
    /// key whose file is missing now is picked up again on a later re-read or link event; a
    /// watch refused for another reason (the inotify limit) is a warning naming the key.
    /// Returns whether a key's watch changed.
    fn refresh_file_watches(&mut self, files: &mut FileWatch, netlink: bool) -> bool {
        let mut changed = false;
        for (id, g) in &mut self.guards {
            if !g.state.guard.key.watch().needs_file_watch(netlink) {
                continue;
            }
            let key = &g.state.guard.key;
            let no_watch = match files.watch(*id, &key.proc_path()) {
                Ok(()) => None,
                // The key is not there: reported as unavailable, and watched once it is.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => Some(crate::source::files::describe(&e)),
            };
            if no_watch != g.no_watch {
                if let Some(error) = &no_watch {
                    let what = Degradation::NoFileWatch {
                        error: error.clone(),
                    };
                    tracing::warn!(key = %key, "{}", what.describe(&key.to_string()));
                }
                g.no_watch = no_watch;
                changed = true;
            }
        }
        changed
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.guards
            .values()
            .filter_map(|g| g.state.next_deadline())
            .min()
            .map(Instant::from_std)
    }

    /// Time passed: the reports it brings, and the keys whose restore retry is due.
    fn tick(&mut self, now: std::time::Instant) -> (Vec<Report>, Vec<GuardId>) {
        let mut reports = Vec::new();
        let mut due = Vec::new();
        for (id, g) in &mut self.guards {
            let mut decision = g.state.tick(now);
            reports.append(&mut decision.reports);
            if decision.recheck {
                due.push(*id);
            }
        }
        (reports, due)
    }

    /// Every guard as the snapshot shows it, degraded by what the daemon knows.
    fn snapshots(&self, no_netlink: Option<&str>, no_prevent: Option<&str>) -> Vec<GuardSnapshot> {
        self.guards
            .iter()
            .map(|(id, g)| {
                let impairments = Impairments {
                    no_watch: g.no_watch.as_deref(),
                    no_netlink,
                    refused: g.state.refusal(),
                    no_prevent,
                };
                g.state.snapshot(*id, &impairments)
            })
            .collect()
    }
}

impl<E> Netlink<E> {
    /// Hands out the request socket for a link dump, when the interface table is stale and no
    /// dump runs.
    fn start_link_dump(&mut self) -> Option<RequestSocket> {
        if !self.links_stale {
            return None;
        }
        let socket = self.requests.take()?;
        self.links_stale = false;
        Some(socket)
    }

    /// The event socket failed once more: whether to give it up now.
    fn socket_failed(&mut self) -> bool {
        self.socket_errors += 1;
        self.socket_errors >= NETLINK_ERRORS_TO_GIVE_UP
    }

    /// Events were lost: every key is re-read now (the routing sends each an overrun
    /// observation), and the interface table is dumped again after that, beside the loop.
    /// The report, when one is due.
    fn overrun(&mut self, now: Instant) -> Option<Report> {
        self.events_lost += 1;
        self.links_stale = true;
        if self
            .events_lost_reported
            .is_none_or(|t| now - t >= EVENTS_LOST_REPORT_EVERY)
        {
            self.events_lost_reported = Some(now);
            return Some(Report::EventsLost {
                times: self.events_lost,
            });
        }
        None
    }
}

impl Outputs {
    fn emit(&mut self, report: Report) {
        self.log.emit(&report);
        for sink in &mut self.sinks {
            sink.emit(&report);
        }
        self.last_report = Some(report.to_string());
        self.changed = true;
    }

    /// When an output has something waiting to be sent again.
    fn next_flush(&self) -> Option<Instant> {
        let sinks = std::iter::once(&self.log)
            .chain(&self.sinks)
            .any(|s| s.backlog())
            .then(|| Instant::now() + OUTPUT_RETRY);
        self.notifier.next_flush().into_iter().chain(sinks).min()
    }

    fn flush(&mut self) {
        self.notifier.flush(Instant::now());
        self.log.flush();
        for sink in &mut self.sinks {
            sink.flush();
        }
        self.report_notify_loss();
        self.changed = true;
    }

    /// The status line to the service manager, the snapshot to its readers.
    fn publish(&mut self, snapshot: Snapshot) {
        self.notifier.status(&snapshot.status_line());
        self.snapshot.send_replace(snapshot);
        self.report_notify_loss();
    }

    /// Messages the service manager did not take (READY=, STATUS=), once it takes them again.
    fn report_notify_loss(&mut self) {
        if let Some(lost) = self.notifier.take_loss() {
            self.emit(Report::OutputLost {
                output: "the service manager (NOTIFY_SOCKET)".into(),
                lost,
            });
        }
    }

    /// What each output dropped rather than wait for its reader.
    fn losses(&self) -> Vec<OutputLoss> {
        let mut losses: Vec<OutputLoss> = std::iter::once(&self.log)
            .chain(&self.sinks)
            .map(|s| OutputLoss {
                output: s.name(),
                dropped: s.dropped(),
            })
            .collect();
        losses.push(OutputLoss {
            output: "notify".into(),
            dropped: self.notifier.dropped(),
        });
        losses
    }
}

impl HookState {
    /// Attaches the BPF sysctl hook for `config`: `prevent` keys are replaced, the others'
    /// writers named (sent to `observer`). Kept as it is when the guarded keys and values did
    /// not change; a new hook is attached before the old one goes, so there is no gap. What
    /// cannot be had is said once: `prevent` then restores. The reports to send; `None` when
    /// nothing changed.
    fn install(
        &mut self,
        config: &Config,
        observer: &mpsc::Sender<Observation>,
    ) -> Option<Vec<Report>> {
        let options = self.options.clone()?;
        let mut plan = hook::Plan::new(config.prevented().map(|g| g.key.clone()).collect());
        if !config.bpf_hook {
            let had = self.hook.take().is_some();
            let outcome = plan.off(bpf::HOOK_OFF, self.prevent_error.as_deref());
            if had {
                tracing::info!("BPF sysctl hook detached (bpf-hook = false)");
            }
            self.prevent_error = outcome.prevent_error;
            self.targets.clear();
            return Some(outcome.reports);
        }
        let keys: Vec<SysctlKey> = config.guards.iter().map(|g| g.key.clone()).collect();
        let targets: Vec<bpf::Target> = config.guards.iter().map(bpf::Target::of).collect();
        if targets == self.targets {
            return None;
        }
        let observer = observer.clone();
        let send = move |a: bpf::Attempt| {
            if let Some(key) = keys.get(a.target) {
                // Never waits: a full queue loses the report, not the replacement.
                let _ = observer.try_send(
                    Observation::key(key.clone(), Trigger::Writer)
                        .with_cause(Cause::Writer(Box::new(a.writer))),
                );
            }
        };
        let hook = match Hook::attach(&targets, &options, send.clone()) {
            Ok(h) => Some(h),
            Err(e) => match plan.failed(e.to_string(), e.audit_still_possible()) {
                hook::Fallback::AuditOnly => {
                    let audit: Vec<bpf::Target> = targets
                        .iter()
                        .map(|t| bpf::Target {
                            mode: bpf::Mode::Audit,
                            ..t.clone()
                        })
                        .collect();
                    Hook::attach(&audit, &options, send).ok()
                }
                hook::Fallback::WithoutHook => None,
                hook::Fallback::WritersUnnamed => {
                    tracing::info!("writers of the guarded keys are not named: {e}");
                    None
                }
            },
        };
        let placed = hook.as_ref().map(|h| hook::Placed {
            cgroup: hook_place(&h.attachment),
            netns: h.attachment.netns,
            covered: h.attachment.covered.len(),
        });
        let outcome = plan.settle(placed.as_ref());
        // The new hook is attached: the old one may go.
        self.hook = hook;
        self.targets = targets;
        self.prevent_error = outcome.prevent_error;
        Some(outcome.reports)
    }
}

/// The hook's options from the environment; the test-only fault is named in the log.
fn hook_options() -> Result<bpf::Options, DaemonError> {
    let options = bpf::Options::from_env().map_err(DaemonError::HookOptions)?;
    if let Some(fault) = options.fault {
        tracing::warn!(
            "{} is set: the BPF hook is built with the test fault {fault:?}",
            bpf::FAULT_ENV
        );
    }
    Ok(options)
}

/// Where the hook is, as STATUS= and the journal say it.
fn hook_place(a: &bpf::Attachment) -> String {
    let mut s = a.path.display().to_string();
    if a.private_mount {
        s.push_str(" (cgroup2 mounted privately: a cgroup v1 host)");
    }
    if !a.root {
        s.push_str(&format!(
            " (not the cgroup2 root: only processes below it, set by {})",
            bpf::ATTACH_ENV
        ));
    }
    s
}

/// Reads the key through its kept descriptor, opening it first if needed. A restoring guard
/// opens read-write (falling back to read-only when writing is refused, to keep reading);
/// an alerting one read-only. An error drops the descriptor, to open it again next time.
fn read<K: Knobs>(knobs: &mut K, g: &mut Guarded<K::Knob>) -> Result<Value, SysctlError> {
    if g.knob.is_none() {
        open(knobs, g)?;
    }
    let Some(knob) = &mut g.knob else {
        unreachable!("opened above")
    };
    let result = knobs.read(knob);
    if result.is_err() {
        g.knob = None;
    }
    result
}

fn open<K: Knobs>(knobs: &mut K, g: &mut Guarded<K::Knob>) -> Result<(), SysctlError> {
    let key = &g.state.guard.key;
    let (knob, writable) = match g.state.guard.action {
        Action::Alert => (knobs.open(key, Access::Read)?, false),
        Action::Restore | Action::Prevent => match knobs.open(key, Access::ReadWrite) {
            Ok(k) => (k, true),
            Err(e) if e.write_refused() => {
                let knob = knobs.open(key, Access::Read)?;
                g.refused = Some(e);
                (knob, false)
            }
            Err(e) => return Err(e),
        },
    };
    g.writable = writable;
    g.knob = Some(knob);
    Ok(())
}

/// Writes the wanted value and reads it back, on the kept descriptor. A descriptor opened
/// read-only (writing was refused) is opened again for writing first: the refusal may be over.
fn restore<K: Knobs>(knobs: &mut K, g: &mut Guarded<K::Knob>) -> Result<Value, SysctlError> {
    if let Some(e) = g.refused.take() {
        return Err(e);
    }
    if !g.writable {
        // Keeps the read-only descriptor when writing is still refused.
        let knob = knobs.open(&g.state.guard.key, Access::ReadWrite)?;
        g.knob = Some(knob);
        g.writable = true;
    }
    let Some(knob) = &mut g.knob else {
        unreachable!("opened above")
    };
    let want = &g.state.guard.want;
    let result = knobs.write(knob, want).and_then(|()| knobs.read(knob));
    if result.is_err() {
        g.knob = None;
        g.writable = false;
    }
    result
}

#[cfg(test)]
mod tests {
    //! The loop with knobs of a test's own and tokio's paused clock: retries, flapping
    //! windows, the re-read, the watchdog, stalled outputs, reload.

    use std::cell::RefCell;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    use std::rc::Rc;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::key::SysctlKey;
    use crate::knob::Op;
    use crate::output::journal::{Journal, JournalSocket};
    use crate::snapshot::KeyState;

    /// One knob, as a test wants it to behave.
    #[derive(Debug, Default)]
    struct Kernel {
        value: String,
        /// Writing is refused (EACCES), as for a process without CAP_NET_ADMIN.
        refuse: bool,
        /// When each write (or refused attempt to open for writing) happened.
        attempts: Vec<Instant>,
    }

    #[derive(Debug, Clone, Default)]
    struct FakeKnobs(Rc<RefCell<Kernel>>);

    impl FakeKnobs {
        fn new(value: &str) -> Self {
            let k = Self::default();
            k.set(value);
            k
        }
        fn set(&self, value: &str) {
            self.0.borrow_mut().value = value.into();
        }
        fn value(&self) -> String {
            self.0.borrow().value.clone()
        }
        fn refuse(&self, refuse: bool) {
            self.0.borrow_mut().refuse = refuse;
        }
        fn attempts(&self) -> Vec<Instant> {
            self.0.borrow().attempts.clone()
        }
    }

    fn refused(key: &SysctlKey) -> SysctlError {
        SysctlError {
            op: Op::Write,
            key: key.clone(),
            source: std::io::Error::from_raw_os_error(libc::EACCES),
        }
    }

    impl Knobs for FakeKnobs {
        type Knob = SysctlKey;
        fn open(&mut self, key: &SysctlKey, access: Access) -> Result<SysctlKey, SysctlError> {
            let mut k = self.0.borrow_mut();
            if access == Access::ReadWrite && k.refuse {
                k.attempts.push(Instant::now());
                return Err(refused(key));
            }
            Ok(key.clone())
        }
        fn read(&mut self, _: &mut SysctlKey) -> Result<Value, SysctlError> {
            Ok(Value::new(&self.0.borrow().value))
        }
        fn write(&mut self, key: &mut SysctlKey, value: &Value) -> Result<(), SysctlError> {
            let mut k = self.0.borrow_mut();
            k.attempts.push(Instant::now());
            if k.refuse {
                return Err(refused(key));
            }
            k.value = value.to_string();
            Ok(())
        }
    }

    /// Reports, for the test to look at.
    #[derive(Debug, Clone, Default)]
    struct Collect(Arc<Mutex<Vec<Report>>>);

    impl Sink for Collect {
        fn emit(&mut self, report: &Report) {
            self.0.lock().expect("lock").push(report.clone());
        }
        fn name(&self) -> String {
            "test".into()
        }
    }

    impl Collect {
        fn count(&self, what: impl Fn(&Report) -> bool) -> usize {
            self.0
                .lock()
                .expect("lock")
                .iter()
                .filter(|r| what(r))
                .count()
        }
    }

    /// Kernel events as a test scripts them: each message is what one wait on the event socket
    /// returns, a batch or an error.
    #[derive(Debug)]
    struct ScriptedEvents(mpsc::UnboundedReceiver<std::io::Result<Vec<KernelEvent>>>);

    impl KernelEvents for ScriptedEvents {
        async fn next_batch(&mut self, out: &mut Vec<KernelEvent>) -> std::io::Result<()> {
            match self.0.recv().await {
                Some(batch) => batch.map(|events| out.extend(events)),
                // The test let go of its end: nothing more will come.
                None => pending().await,
            }
        }
    }

    struct Harness {
        kernel: FakeKnobs,
        reports: Collect,
        observer: mpsc::Sender<Observation>,
        /// The kernel's end of the event socket, in [`with_netlink`].
        netlink: Option<mpsc::UnboundedSender<std::io::Result<Vec<KernelEvent>>>>,
        snapshots: watch::Receiver<Snapshot>,
        /// The service manager's end of NOTIFY_SOCKET.
        notify: UnixDatagram,
        _dir: tempfile::TempDir,
    }

    impl Harness {
        /// A netconf event announcing `value` for the forwarding key.
        async fn event(&self, value: &str) {
            self.kernel.set(value);
            self.observer
                .send(Observation {
                    value: Some(Value::new(value)),
                    ..Observation::key(forwarding(), Trigger::Netconf)
                })
                .await
                .expect("loop running");
        }

        /// What one wait on the event socket returns (`with_netlink` only). Whether the loop
        /// still listens.
        fn netlink_says(&self, batch: std::io::Result<Vec<KernelEvent>>) -> bool {
            let netlink = self.netlink.as_ref().expect("a loop run with_netlink");
            netlink.send(batch).is_ok()
        }

        fn notes(&self) -> Vec<String> {
            let mut buf = vec![0u8; 4096];
            let mut out = Vec::new();
            while let Ok(n) = self.notify.recv(&mut buf) {
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            out
        }
    }

    fn forwarding() -> SysctlKey {
        SysctlKey::parse("net.ipv4.conf.all.forwarding").expect("key")
    }

    /// Runs the loop with `config` over `kernel` while `body` drives it, without netlink.
    async fn with_guard(
        config: Config,
        kernel: FakeKnobs,
        log: Option<Box<dyn Sink>>,
        watchdog: Option<Duration>,
        body: impl AsyncFnOnce(&mut Harness),
    ) {
        run_guard(config, kernel, log, watchdog, false, body).await;
    }

    /// Runs the loop with the built-in configuration over a key that holds, without netlink.
    async fn with_holding_default(body: impl AsyncFnOnce(&mut Harness)) {
        with_guard(Config::default(), FakeKnobs::new("1"), None, None, body).await;
    }

    /// Runs the loop with kernel events the test sends ([`Harness::kernel`]).
    async fn with_netlink(config: Config, kernel: FakeKnobs, body: impl AsyncFnOnce(&mut Harness)) {
        run_guard(config, kernel, None, None, true, body).await;
    }

    async fn run_guard(
        config: Config,
        kernel: FakeKnobs,
        log: Option<Box<dyn Sink>>,
        watchdog: Option<Duration>,
        netlink: bool,
        body: impl AsyncFnOnce(&mut Harness),
    ) {
        let (events, netlink) = match netlink {
            true => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(ScriptedEvents(rx)), Some(tx))
            }
            false => (None, None),
        };
        let reports = Collect::default();
        let setup = Setup::new(config, None, log.unwrap_or(Box::new(reports.clone())));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let notify = UnixDatagram::bind(&path).expect("bind");
        notify.set_nonblocking(true).expect("nonblocking");
        let ours = UnixDatagram::unbound().expect("socket");
        ours.set_nonblocking(true).expect("nonblocking");
        let io = Io {
            events,
            requests: None,
            netlink_error: None,
            files: FileWatch::new().expect("inotify"),
            notifier: Notifier::with(Some((
                ours,
                SocketAddr::from_pathname(&path).expect("addr"),
            ))),
            watchdog,
            hook: None,
        };
        let mut h = Harness {
            kernel: kernel.clone(),
            reports,
            observer: setup.observer(),
            netlink,
            snapshots: setup.snapshots(),
            notify,
            _dir: dir,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let guard = run_with(setup, kernel, io, async {
            let _ = stopped.await;
        });
        let driver = async {
            body(&mut h).await;
            let _ = stop.send(());
        };
        let (result, ()) = tokio::join!(guard, driver);
        result.expect("the loop ran");
    }

    fn restored(trigger: Trigger) -> impl Fn(&Report) -> bool {
        move |r| matches!(r, Report::DriftRestored { trigger: t, .. } if *t == trigger)
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_restore_backs_off_to_5s_and_any_event_retries_it() {
        let kernel = FakeKnobs::new("0");
        kernel.refuse(true);
        with_guard(Config::default(), kernel, None, None, async |h| {
            let start = Instant::now();
            tokio::time::sleep(Duration::from_secs(20)).await;
            let attempts = h.kernel.attempts();
            let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
            assert!(attempts[0] - start < Duration::from_millis(1), "at start");
            assert!(gaps.len() >= 6, "{gaps:?}");
            assert!(
                gaps.iter().all(|g| *g <= Duration::from_secs(5)),
                "backoff capped at 5s: {gaps:?}"
            );
            assert_eq!(gaps[0], Duration::from_millis(100));
            assert_eq!(
                h.reports
                    .count(|r| matches!(r, Report::RestoreFailed { .. })),
                1
            );
            let snapshot = h.snapshots.borrow().clone();
            assert!(
                matches!(
                    &snapshot.guards[0].degradations[..],
                    [Degradation::CannotRestore { error }] if error.contains("CAP_NET_ADMIN")
                ),
                "{snapshot:?}"
            );

            // The capability comes back; the next event for the key restores at once, not
            // at the next backoff retry.
            h.kernel.refuse(false);
            h.event("0").await;
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(h.kernel.value(), "1");
            assert_eq!(h.reports.count(restored(Trigger::Netconf)), 1);
            let snapshot = h.snapshots.borrow().clone();
            assert!(snapshot.guards[0].degradations.is_empty(), "{snapshot:?}");
            assert_eq!(snapshot.guards[0].state, KeyState::Holding);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_timed_reread_restores_a_change_no_event_announced() {
        let config = Config {
            reread_interval: Duration::from_secs(30),
            ..Config::default()
        };
        with_guard(config, FakeKnobs::new("1"), None, None, async |h| {
            h.kernel.set("0");
            tokio::time::sleep(Duration::from_secs(29)).await;
            assert_eq!(h.kernel.value(), "0", "nothing told the guard yet");
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(h.kernel.value(), "1");
            assert_eq!(h.reports.count(restored(Trigger::Reread)), 1);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn flapping_is_reported_once_per_window_and_ends_after_a_quiet_one() {
        with_holding_default(async |h| {
            for _ in 0..20 {
                h.event("0").await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                assert_eq!(h.kernel.value(), "1", "restored every time");
            }
            let flapping = |r: &Report| matches!(r, Report::Flapping { .. });
            let ended = |r: &Report| matches!(r, Report::FlappingEnded { drops: 20, .. });
            assert_eq!(h.reports.count(flapping), 1);
            // Restores before the episode are reported one by one, inside it counted.
            assert_eq!(h.reports.count(restored(Trigger::Netconf)), 4);
            tokio::time::sleep(Duration::from_secs(58)).await;
            assert_eq!(h.reports.count(ended), 0, "the window is 60s");
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert_eq!(h.reports.count(ended), 1);
            let g = &h.snapshots.borrow().guards[0];
            assert_eq!((g.restores, g.drops, g.flapping_episodes), (20, 20, 1));
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_is_pinged_from_the_loop_at_its_period() {
        let period = Some(Duration::from_secs(10));
        with_guard(
            Config::default(),
            FakeKnobs::new("1"),
            None,
            period,
            async |h| {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let notes = h.notes();
                assert!(
                    notes[0].starts_with("READY=1\nSTATUS=guarding 1 key"),
                    "{notes:?}"
                );
                let pings = notes.iter().filter(|n| *n == "WATCHDOG=1\n").count();
                assert!((6..=7).contains(&pings), "{pings} pings in 60s: {notes:?}");
            },
        )
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn outputs_nobody_reads_cost_messages_not_restores() {
        // The journal's and the service manager's queues fill and stay full.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal");
        let _journal = UnixDatagram::bind(&path).expect("bind");
        let socket = JournalSocket::open(&path).expect("open");
        let log: Box<dyn Sink> = Box::new(Journal(socket.clone()));
        let config = Config {
            flapping: crate::config::Flapping {
                threshold: 1_000_000,
                window: Duration::from_secs(1),
            },
            ..Config::default()
        };
        with_guard(config, FakeKnobs::new("1"), Some(log), None, async |h| {
            for _ in 0..200 {
                h.event("0").await;
                tokio::time::sleep(Duration::from_millis(1)).await;
                assert_eq!(h.kernel.value(), "1");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let snapshot = h.snapshots.borrow().clone();
            assert_eq!(snapshot.guards[0].restores, 200);
            let lost = |name: &str| {
                snapshot
                    .output_losses
                    .iter()
                    .find(|l| l.output == name)
                    .map_or(0, |l| l.dropped)
            };
            assert!(lost("journal") > 150, "{snapshot:?}");
            // STATUS= was coalesced (the latest wins, at most every 100 ms): the service
            // manager's queue of 10 never filled, and READY=1 is in it.
            let notes = h.notes();
            assert!(notes.len() <= 10, "{notes:?}");
            assert!(notes[0].starts_with("READY=1\n"), "{notes:?}");
            assert!(
                notes.last().is_some_and(|n| n.contains("200 restores")),
                "{notes:?}"
            );
        })
        .await;
        assert!(socket.dropped() > 150);
    }

    #[tokio::test(start_paused = true)]
    async fn an_observation_from_another_task_rechecks_every_guard_and_carries_its_cause() {
        with_holding_default(async |h| {
                // A change no event announced; then a service job finishes (a D-Bus source).
                h.kernel.set("0");
                let cause = crate::observation::Cause::ServiceJob {
                    unit: "network.service".into(),
                    job: "restart".into(),
                    result: "done".into(),
                    after: Some(Duration::ZERO),
                };
                h.observer
                    .send(Observation::all(Trigger::ServiceJob).with_cause(cause.clone()))
                    .await
                    .expect("loop running");
                tokio::time::sleep(Duration::from_millis(1)).await;
                assert_eq!(h.kernel.value(), "1");
                let reports = h.reports.0.lock().expect("lock").clone();
                match &reports[..] {
                    [
                        Report::DriftRestored {
                            trigger,
                            cause: Some(c),
                            ..
                        },
                    ] => {
                        assert_eq!(*trigger, Trigger::ServiceJob);
                        assert_eq!(*c, cause);
                        assert!(
                            reports[0].to_string().starts_with(
                                "net.ipv4.conf.all.forwarding was 0 (when restart of network.service finished: done), restored to 1 in"
                            ),
                            "{}",
                            reports[0]
                        );
                        assert!(
                            reports[0]
                                .fields()
                                .contains(&("FWDGUARD_UNIT", "network.service".into()))
                        );
                    }
                    other => panic!("{other:?}"),
                }
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn without_netlink_every_netconf_guard_is_degraded_in_the_snapshot() {
        let reports = Collect::default();
        let setup = Setup::new(Config::default(), None, Box::new(reports));
        let snapshots = setup.snapshots();
        let io = io_without_events(Some("Operation not permitted (os error 1)"));
        let mut g = Guardian::start(setup, FakeKnobs::new("1"), io).await;
        g.publish();
        let status = snapshots.borrow().status_line();
        assert!(
            status.contains("DEGRADED net.ipv4.conf.all.forwarding: no netlink events (Operation not permitted (os error 1)); changes are seen only by inotify and the timed re-read"),
            "{status}"
        );
    }

    /// The loop's I/O with no kernel events, no link requests and no notify socket;
    /// `netlink_error` as when the netlink socket could not be opened.
    fn io_without_events(netlink_error: Option<&str>) -> Io {
        Io {
            events: None,
            requests: None,
            netlink_error: netlink_error.map(Into::into),
            files: FileWatch::new().expect("inotify"),
            notifier: Notifier::with(None),
            watchdog: None,
            hook: None,
        }
    }

    /// The configuration the reload tests start from: `alert` on the key, which reads `0`.
    const ALERT_CONFIG: &str =
        "[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = 1\naction = \"alert\"\n";

    /// A guardian started from [`ALERT_CONFIG`] written to `path`, the key at `0`; `with_c`:
    /// the file was named with `-c` (else it is the default file), as [`Setup::new`] is told.
    async fn started_from_file(
        path: &std::path::Path,
        with_c: bool,
    ) -> (Guardian<FakeKnobs, EventSocket>, Config) {
        std::fs::write(path, ALERT_CONFIG).expect("config");
        let config = config::load(path).expect("valid");
        let explicit = with_c.then(|| path.to_path_buf());
        let setup = Setup::new(config.clone(), explicit, Box::new(Collect::default()));
        let g = Guardian::start(setup, FakeKnobs::new("0"), io_without_events(None)).await;
        (g, config)
    }

    #[tokio::test(start_paused = true)]
    async fn reload_keeps_the_running_config_when_its_file_is_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fwdguard.toml");
        // Started without -c, from the default file: `explicit` is None.
        let (mut g, config) = started_from_file(&path, false).await;
        std::fs::remove_file(&path).expect("rm");
        g.reload();
        assert_eq!(g.config, config, "not the built-in restore");
        assert!(
            g.reload_error
                .as_deref()
                .is_some_and(|e| e.contains("No such file")),
            "{:?}",
            g.reload_error
        );
        assert_eq!(g.keys.knobs.value(), "0", "alert still in force");
    }

    /// With `-c`, each way the file in force can go bad at a reload: the running configuration
    /// stays, and the reload ends at once (a FIFO used to hang the loop in `open()`).
    #[tokio::test(start_paused = true)]
    async fn reload_with_c_keeps_the_running_config_whatever_replaced_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fwdguard.toml");
        let (mut g, config) = started_from_file(&path, true).await;
        let replace = |what: &str| {
            let _ = std::fs::remove_file(&path);
            match what {
                "gone" => {}
                "dangling symlink" => {
                    std::os::unix::fs::symlink(dir.path().join("nowhere"), &path).expect("ln")
                }
                "fifo" => nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).expect("fifo"),
                "over 1 MiB" => {
                    std::fs::write(&path, format!("{ALERT_CONFIG}#{}\n", "x".repeat(1 << 20)))
                        .expect("big")
                }
                // Root reads a mode 000 file anyway: a directory cannot be read by anyone.
                "a directory" => std::fs::create_dir(&path).expect("dir"),
                _ => unreachable!(),
            }
        };
        for what in [
            "gone",
            "dangling symlink",
            "fifo",
            "over 1 MiB",
            "a directory",
        ] {
            replace(what);
            let started = std::time::Instant::now();
            g.reload();
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{what}: reload hung"
            );
            assert_eq!(
                g.config, config,
                "{what}: the running configuration changed"
            );
            assert!(g.reload_error.is_some(), "{what}: no reload error kept");
            assert_eq!(
                g.keys.knobs.value(),
                "0",
                "{what}: alert no longer in force"
            );
            let _ = std::fs::remove_dir(&path);
        }
        // And a good file again is taken.
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, ALERT_CONFIG.replace("alert", "restore")).expect("config");
        g.reload();
        assert_eq!(g.reload_error, None);
        assert_ne!(g.config, config);
    }

    /// The netconf event the kernel sends when `net.ipv4.conf.all.forwarding` changes.
    fn forwarding_is(value: i32) -> KernelEvent {
        KernelEvent::Netconf {
            family: Family::Ipv4,
            device: crate::observation::Device::All,
            values: crate::observation::NetconfValues {
                forwarding: Some(value),
                ..Default::default()
            },
        }
    }

    fn events_lost(times: u64) -> impl Fn(&Report) -> bool {
        move |r| matches!(r, Report::EventsLost { times: t } if *t == times)
    }

    #[tokio::test(start_paused = true)]
    async fn a_netconf_event_is_acted_on_at_once_and_a_holding_one_confirmed_by_a_read() {
        with_netlink(Config::default(), FakeKnobs::new("1"), async |h| {
            // The event says 0 (the knob, read, would say 1): written back on the event's
            // word, with no read before the write.
            assert!(h.netlink_says(Ok(vec![forwarding_is(0)])));
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(h.kernel.attempts().len(), 1, "written at once");
            let reports = h.reports.0.lock().expect("lock").clone();
            match &reports[..] {
                [
                    Report::DriftRestored {
                        trigger: Trigger::Netconf,
                        old,
                        attempts: 1,
                        ..
                    },
                ] => assert_eq!(old, &Value::new("0")),
                other => panic!("{other:?}"),
            }
            // An event saying 1 while another writer already set 0 again: the read that
            // confirms it finds 0, and restores.
            h.kernel.set("0");
            assert!(h.netlink_says(Ok(vec![forwarding_is(1)])));
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(h.kernel.value(), "1");
            assert_eq!(h.reports.count(restored(Trigger::Netconf)), 2);
            // An event saying 1 that a read confirms: nothing to do.
            assert!(h.netlink_says(Ok(vec![forwarding_is(1)])));
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(h.kernel.attempts().len(), 2);
            let snapshot = h.snapshots.borrow().clone();
            assert_eq!(snapshot.guards[0].state, KeyState::Holding);
            assert!(snapshot.guards[0].degradations.is_empty(), "{snapshot:?}");
            assert_eq!(snapshot.events_lost, 0);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_overrun_rereads_every_key_and_is_reported_at_most_once_a_minute() {
        with_netlink(Config::default(), FakeKnobs::new("1"), async |h| {
            // A change whose event was lost with the queue that overflowed (ENOBUFS): the
            // socket says so once the queue is drained.
            h.kernel.set("0");
            assert!(h.netlink_says(Ok(vec![KernelEvent::Overrun])));
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(h.kernel.value(), "1", "found by the re-read");
            assert_eq!(h.reports.count(restored(Trigger::Overrun)), 1);
            assert_eq!(h.reports.count(events_lost(1)), 1);
            assert_eq!(h.snapshots.borrow().events_lost, 1);

            // Lost again within the minute: re-read and counted, not reported again.
            h.kernel.set("0");
            assert!(h.netlink_says(Ok(vec![forwarding_is(1), KernelEvent::Overrun])));
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(h.kernel.value(), "1");
            assert_eq!(
                h.reports.count(restored(Trigger::Overrun)),
                1,
                "no drift left"
            );
            assert_eq!(h.reports.count(restored(Trigger::Netconf)), 1);
            assert_eq!(
                h.reports.count(|r| matches!(r, Report::EventsLost { .. })),
                1
            );
            assert_eq!(h.snapshots.borrow().events_lost, 2);

            // A minute after the report: the next loss is reported, with the running count.
            tokio::time::sleep(Duration::from_secs(60)).await;
            assert!(h.netlink_says(Ok(vec![KernelEvent::Overrun])));
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(h.reports.count(events_lost(3)), 1);
            let snapshot = h.snapshots.borrow().clone();
            assert_eq!(snapshot.events_lost, 3);
            assert!(snapshot.guards[0].degradations.is_empty(), "{snapshot:?}");
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn socket_errors_reread_every_key_and_100_in_a_row_give_netlink_up() {
        let error = || Err(std::io::Error::from_raw_os_error(libc::EBADF));
        with_netlink(Config::default(), FakeKnobs::new("1"), async |h| {
            // A failed wait counts as lost events: every key is re-read.
            h.kernel.set("0");
            assert!(h.netlink_says(error()));
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(h.kernel.value(), "1");
            assert_eq!(h.reports.count(restored(Trigger::Overrun)), 1);
            assert_eq!(h.reports.count(events_lost(1)), 1);

            // 99 in a row, then a wait that works: the count starts again.
            for _ in 2..NETLINK_ERRORS_TO_GIVE_UP {
                assert!(h.netlink_says(error()));
            }
            assert!(h.netlink_says(Ok(vec![forwarding_is(1)])));
            for _ in 1..NETLINK_ERRORS_TO_GIVE_UP {
                assert!(h.netlink_says(error()));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            let snapshot = h.snapshots.borrow().clone();
            assert_eq!(snapshot.events_lost, 198);
            assert!(snapshot.guards[0].degradations.is_empty(), "{snapshot:?}");

            // The 100th in a row: netlink is given up, and the snapshot says what it costs.
            assert!(h.netlink_says(error()));
            tokio::time::sleep(Duration::from_millis(1)).await;
            let snapshot = h.snapshots.borrow().clone();
            assert_eq!(snapshot.events_lost, 199);
            assert!(
                snapshot.guards[0]
                    .degradations
                    .contains(&Degradation::NoNetlink {
                        error: "Bad file descriptor (os error 9)".into()
                    }),
                "{snapshot:?}"
            );
            assert!(
                snapshot.status_line().contains("DEGRADED net.ipv4.conf.all.forwarding: no netlink events (Bad file descriptor (os error 9)); changes are seen only by inotify and the timed re-read"),
                "{}",
                snapshot.status_line()
            );
            assert_eq!(
                h.reports
                    .count(|r| matches!(r, Report::EventsLost { .. })),
                1,
                "within the minute"
            );
            // The source was dropped: the loop no longer listens, and the timed re-read is
            // what sees a change now.
            h.kernel.set("0");
            assert!(!h.netlink_says(Ok(vec![forwarding_is(0)])));
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(h.kernel.value(), "0");
            tokio::time::sleep(Duration::from_secs(30)).await;
            assert_eq!(h.kernel.value(), "1");
            assert_eq!(h.reports.count(restored(Trigger::Reread)), 1);
        })
        .await;
    }
}
