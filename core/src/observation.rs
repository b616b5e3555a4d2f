//! What the sources saw, before any decision: kernel events as the netlink source decodes them,
//! and the [`Observation`] each guard is handed. Pure data, no I/O.

use crate::key::{Family, NetconfLeaf, SysctlKey};
use crate::value::Value;

/// How a change was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// The first reconcile, before READY=1.
    Startup,
    /// A kernel netconf event.
    Netconf,
    /// An inotify event on the key's `/proc/sys` file.
    Inotify,
    /// A network interface appeared, went away or was renamed.
    Link,
    /// The timed re-read.
    Reread,
    /// A re-read of everything after netlink events were lost.
    Overrun,
    /// A scheduled retry after a failed restore.
    Retry,
    /// A configuration reload.
    Reload,
    /// A systemd job finished (a service was started, stopped, restarted).
    ServiceJob,
    /// A process was seen writing the key (a BPF cgroup/sysctl hook).
    Writer,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Netconf => "netconf",
            Trigger::Inotify => "inotify",
            Trigger::Link => "link",
            Trigger::Reread => "reread",
            Trigger::Overrun => "overrun",
            Trigger::Retry => "retry",
            Trigger::Reload => "reload",
            Trigger::ServiceJob => "service-job",
            Trigger::Writer => "writer",
        }
    }
}

/// Why a key changed, when a source can tell. Attached to the reports its observation leads to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cause {
    /// A systemd job of a watched unit: `job` is its type (`restart`, `stop`, ...; "a job" if
    /// systemd did not say), `result` how it ended (`done`, `failed`, ...; empty while it runs).
    /// `after`: `None` while the job runs, else how long after its end the key was found wrong.
    ServiceJob {
        unit: String,
        job: String,
        result: String,
        after: Option<std::time::Duration>,
    },
    /// A process wrote the key (seen by the BPF cgroup/sysctl hook).
    Writer(Box<Writer>),
}

/// A write to a guarded key through `/proc/sys` that would have moved it, and who made it.
/// Serialized as the webhook payload's `writer` object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Writer {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// The command name (`comm`), as the kernel had it.
    pub comm: String,
    /// The parent's command name, if it still ran when the write was reported.
    pub parent_comm: Option<String>,
    /// The cgroup v2 path (`/system.slice/network.service`), if it still existed.
    pub cgroup: Option<String>,
    /// The innermost systemd unit of that path.
    pub unit: Option<String>,
    /// The container, `docker:0123456789ab`, when the path shows one.
    pub container: Option<String>,
    /// What it wrote, escaped (`0\n`, ` 0`, `0x0`).
    pub written: String,
    /// Whether the hook replaced the write with the wanted value (`prevent`).
    pub replaced: bool,
}

impl std::fmt::Display for Writer {
    /// `sysctl (pid 4242, parent network pid 4240, uid 0, network.service)`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {}", self.comm, self.pid)?;
        match &self.parent_comm {
            Some(p) => write!(f, ", parent {p} pid {}", self.ppid)?,
            None => write!(f, ", parent pid {}", self.ppid)?,
        }
        write!(f, ", uid {}", self.uid)?;
        if let Some(c) = &self.container {
            write!(f, ", container {c}")?;
        }
        match (&self.unit, &self.cgroup) {
            (Some(u), _) => write!(f, ", {u})"),
            (None, Some(c)) => write!(f, ", cgroup {c})"),
            (None, None) => write!(f, ")"),
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // "during restart of network.service", "when restart of network.service finished:
            // done", "120ms after restart of network.service finished: done".
            Cause::ServiceJob {
                unit,
                job,
                result,
                after,
            } => match after {
                None => write!(f, "during {job} of {unit}"),
                Some(d) if d.is_zero() => {
                    write!(f, "when {job} of {unit} finished: {result}")
                }
                Some(d) => write!(
                    f,
                    "{} after {job} of {unit} finished: {result}",
                    humantime::format_duration(std::time::Duration::from_millis(
                        d.as_millis() as u64
                    ))
                ),
            },
            Cause::Writer(w) => write!(f, "write of {} by {w}", w.written),
        }
    }
}

/// Which guards an observation concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every guard: re-check them all (a service job finished, a reload, lost events).
    All,
    /// The guard of this key, if there is one.
    Key(SysctlKey),
}

/// Something a source saw that may mean a key changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub scope: Scope,
    pub trigger: Trigger,
    /// The key's new value, when the event carries it (a netconf event does). The policy
    /// decides from it without reading the key first; `None`: read the key.
    pub value: Option<Value>,
    pub cause: Option<Cause>,
}

impl Observation {
    /// Re-check every guard because of `trigger`.
    pub fn all(trigger: Trigger) -> Self {
        Self {
            scope: Scope::All,
            trigger,
            value: None,
            cause: None,
        }
    }

    /// Re-check the guard of `key`.
    pub fn key(key: SysctlKey, trigger: Trigger) -> Self {
        Self {
            scope: Scope::Key(key),
            trigger,
            value: None,
            cause: None,
        }
    }

    pub fn with_cause(mut self, cause: Cause) -> Self {
        self.cause = Some(cause);
        self
    }
}

/// Which device a netconf event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    /// `conf/all` (for IPv4 also `ip_forward`: the same knob).
    All,
    /// `conf/default`.
    Default,
    /// `conf/<name>` of the link with this index.
    Index(u32),
}

/// The values a netconf event carries. A change event carries only the attribute that changed;
/// a `GETNETCONF` reply carries them all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NetconfValues {
    pub forwarding: Option<i32>,
    pub rp_filter: Option<i32>,
    pub proxy_neigh: Option<i32>,
    pub ignore_routes_with_linkdown: Option<i32>,
}

impl NetconfValues {
    pub fn get(&self, leaf: NetconfLeaf) -> Option<i32> {
        match leaf {
            NetconfLeaf::Forwarding => self.forwarding,
            NetconfLeaf::RpFilter => self.rp_filter,
            NetconfLeaf::ProxyNeigh => self.proxy_neigh,
            NetconfLeaf::IgnoreRoutesWithLinkdown => self.ignore_routes_with_linkdown,
        }
    }
}

/// What the kernel told the event socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    /// Some netconf value (forwarding, rp_filter, ...) of this family and device changed. A new
    /// link's event arrives before its [`KernelEvent::LinkNew`].
    Netconf {
        family: Family,
        device: Device,
        values: NetconfValues,
    },
    /// A link appeared, or changed (possibly renamed): its current name.
    LinkNew { index: u32, name: String },
    /// A link went away.
    LinkDel { index: u32, name: String },
    /// Events were lost (ENOBUFS) and the socket's queue has since been drained: everything
    /// must be re-read now.
    Overrun,
}
