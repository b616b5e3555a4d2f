//! The sysctl hook: a `BPF_PROG_TYPE_CGROUP_SYSCTL` program attached at the cgroup2 root that
//! sees every write through `/proc/sys` before it lands. For keys guarded with `prevent` it
//! replaces a write that would move the key with the wanted value, so the knob never leaves
//! it; for every guarded key it reports who tried (pid, parent, command, uid, cgroup, unit).
//!
//! - [`program`], [`asm`], [`btf`] (from the core crate): the program's source, assembled in
//!   Rust, the verifier rules it keeps, and field offsets parsed from the kernel's BTF.
//! - [`cgroup`]: where to attach, and cgroup ids to units and containers.
//! - `sys`: the system calls without a safe wrapper (`unsafe`, each block with its reason):
//!   `bpf(2)`, the ring buffer, the probe's fork.
//!
//! The hook is held by a BPF link: it is attached exactly as long as this process holds the
//! link's descriptor, so `systemctl stop fwdguard`, a crash or SIGKILL detach it at once.
//! Only writes made from the daemon's own network namespace are touched (read at start, never
//! hard-coded), so containers' own namespaces keep working as their owners want.

pub mod cgroup;
mod sys;

pub use fwdguard_core::bpf::{MAX_PREVENT, asm, btf, program};

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub use crate::observation::Writer;
pub use cgroup::Placement;
pub use program::{Fault, Mode};
use program::{Rule, Spec, WriteEvent};

/// The environment variable that makes the hook attach to another cgroup directory than the
/// cgroup2 root: only processes in that subtree are then covered. For tests, which must never
/// attach to a cgroup they did not create.
pub const ATTACH_ENV: &str = "FWDGUARD_BPF_CGROUP";
/// The environment variable that injects a fault for tests (`verifier` or `no-replace`).
pub const FAULT_ENV: &str = "FWDGUARD_BPF_FAULT";

/// The packaged drop-in that grants the hook's privileges (`systemd/fwdguard-bpf.conf`).
pub const DROP_IN: &str = "/usr/share/fwdguard/fwdguard-bpf.conf";

/// Ring buffer size: ~2 300 events of backlog.
const RING_SIZE: u32 = 256 * 1024;
/// How often the event reader checks whether it should stop.
const READER_TICK_MS: i32 = 200;

/// One guarded key as the hook sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The sysctl name relative to `/proc/sys`: `net/ipv4/conf/all/forwarding`.
    pub name: String,
    /// The wanted value as configured.
    pub want: String,
    pub mode: Mode,
}

impl Target {
    /// The hook's view of a guard: `prevent` keys are replaced, the others' writers named.
    pub fn of(guard: &crate::config::Guard) -> Self {
        use crate::config::Action;
        Self {
            name: guard.key.proc_name(),
            want: guard.want.to_string(),
            mode: match guard.action {
                Action::Prevent => Mode::Prevent,
                Action::Restore | Action::Alert => Mode::Audit,
            },
        }
    }
}

/// Why there is no hook when the configuration turns it off.
pub const HOOK_OFF: &str = "bpf-hook = false in the configuration";

/// Where and how to attach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Attach here instead of the cgroup2 root (see [`ATTACH_ENV`]).
    pub cgroup: Option<PathBuf>,
    pub fault: Option<Fault>,
}

impl Options {
    /// From [`ATTACH_ENV`] and [`FAULT_ENV`].
    pub fn from_env() -> Result<Self, String> {
        let cgroup = std::env::var_os(ATTACH_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let fault = parse_fault(&std::env::var(FAULT_ENV).unwrap_or_default())?;
        Ok(Self { cgroup, fault })
    }
}

fn parse_fault(value: &str) -> Result<Option<Fault>, String> {
    match value {
        "" => Ok(None),
        "verifier" => Ok(Some(Fault::Verifier)),
        "no-replace" => Ok(Some(Fault::NoReplace)),
        other => Err(format!(
            "{FAULT_ENV}={other:?}: expected \"verifier\" or \"no-replace\""
        )),
    }
}

/// Why the hook is not in place. Each names the cause an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(
        "none of the guarded keys can be matched by the hook (names over 63 bytes or values that are not one integer)"
    )]
    NoRules,
    #[error(
        "kernel BTF unavailable ({0}): the hook needs it to read the writer's network namespace"
    )]
    Btf(String),
    #[error("cannot read our network namespace: {0}")]
    Netns(#[source] io::Error),
    #[error("cannot open the cgroup to attach to ({path}): {error}")]
    Cgroup { path: String, error: io::Error },
    #[error("cannot create the BPF ring buffer: {error}{}", hint(error))]
    RingBuf { error: io::Error },
    #[error("the kernel refused the BPF program: {error}{}", load_hint(error, log))]
    Load { error: io::Error, log: String },
    #[error("cannot attach the BPF program to {path}: {error}{}", hint(error))]
    Attach { path: String, error: io::Error },
    #[error("cannot build the BPF program: {0}")]
    Assemble(String),
    #[error("cannot map the BPF ring buffer: {0}")]
    Map(#[source] io::Error),
    #[error("cannot start the hook's event reader: {0}")]
    Reader(#[source] io::Error),
    #[error("the start-up probe could not run: {0}")]
    ProbeFailed(String),
    #[error(
        "the start-up probe found the replacement ineffective on this kernel (a write that should have been replaced went through as written: the bpf_sysctl_set_new_value bug)"
    )]
    Ineffective,
    #[error("the start-up probe's write was not seen by the hook: is fwdguard itself inside {0}?")]
    ProbeUnseen(String),
}

impl HookError {
    /// Whether `restore`/`alert` could still use an audit-only hook (the replacement is what
    /// failed, not the hook).
    pub fn audit_still_possible(&self) -> bool {
        matches!(self, HookError::Ineffective)
    }
}

/// What an errno most likely means for this hook.
fn hint(e: &io::Error) -> String {
    let lockdown = std::fs::read_to_string("/sys/kernel/security/lockdown")
        .ok()
        .and_then(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('['))
                .map(|w| w.trim_matches(['[', ']']).to_owned())
        })
        .filter(|mode| mode != "none");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => match lockdown {
            Some(mode) => format!(" (kernel lockdown={mode} forbids it)"),
            None => format!(
                " (needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, or CAP_SYS_ADMIN, and bpf(2) allowed: with the packaged unit, link {DROP_IN} into /etc/systemd/system/fwdguard.service.d/)"
            ),
        },
        Some(libc::EINVAL) | Some(libc::E2BIG) | Some(libc::EOPNOTSUPP) => format!(
            " (kernel {kernel} lacks it: needs 5.8+ with CONFIG_BPF_SYSCALL and CONFIG_CGROUP_BPF)"
        ),
        Some(libc::ENOSYS) => " (no bpf(2): CONFIG_BPF_SYSCALL is off, or a seccomp filter)".into(),
        _ => String::new(),
    }
}

/// The verifier's last lines, which say what it refused (EACCES with a log), else the errno.
fn load_hint(e: &io::Error, log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| {
            !l.trim().is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
        })
        .collect();
    if lines.is_empty() {
        return hint(e);
    }
    let tail = &lines[lines.len().saturating_sub(2)..];
    format!("; verifier: {}", tail.join(" / "))
}

/// The other name of the same knob: `ip_forward` and `conf/all/forwarding` are one value.
fn alias(name: &str) -> Option<&'static str> {
    match name {
        "net/ipv4/ip_forward" => Some("net/ipv4/conf/all/forwarding"),
        "net/ipv4/conf/all/forwarding" => Some("net/ipv4/ip_forward"),
        _ => None,
    }
}

/// The program's rules for `targets`, each with the index of its target: `prevent` keys first,
/// so that when there are more names than one program holds ([`program::MAX_RULES`]) only
/// audit keys go unnamed (the configuration allows at most [`MAX_PREVENT`] `prevent` keys).
/// Keys whose value is not one integer or whose name is too long are left out (the restorer
/// still guards them).
fn rules_for(targets: &[Target]) -> Vec<(Rule, usize)> {
    let mut rules: Vec<(Rule, usize)> = Vec::new();
    let by_mode = |mode| {
        targets
            .iter()
            .enumerate()
            .filter(move |(_, t)| t.mode == mode)
    };
    for (i, t) in by_mode(Mode::Prevent).chain(by_mode(Mode::Audit)) {
        let Ok(want) = t.want.trim().parse::<i64>() else {
            continue;
        };
        for name in std::iter::once(t.name.as_str()).chain(alias(&t.name)) {
            let rule = Rule {
                name: name.to_owned(),
                want,
                want_text: t.want.trim().to_owned(),
                mode: t.mode,
            };
            if rule.fits() && !rules.iter().any(|(r, _)| r.name == rule.name) {
                rules.push((rule, i));
            }
        }
    }
    rules.truncate(program::MAX_RULES);
    rules
}

/// The network namespace inode of the calling thread (the daemon's: it never changes its own).
pub fn own_netns() -> io::Result<u32> {
    let ino = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
    u32::try_from(ino).map_err(|_| io::Error::other(format!("netns inode {ino} over 32 bits")))
}

/// The pid namespace inode of this process: writers' ids are reported as it sees them.
fn own_pidns() -> io::Result<u32> {
    let ino = std::fs::metadata("/proc/self/ns/pid")?.ino();
    u32::try_from(ino).map_err(|_| io::Error::other(format!("pidns inode {ino} over 32 bits")))
}

/// A loaded program with its event ring, not attached yet.
struct Loaded {
    prog: OwnedFd,
    ring: sys::RingBuf,
}

fn load(spec: &Spec, name: &str, ring_size: u32) -> Result<Loaded, HookError> {
    let ring_fd =
        sys::ringbuf_create(name, ring_size).map_err(|error| HookError::RingBuf { error })?;
    let insns = {
        use std::os::fd::AsRawFd;
        program::assemble(spec, ring_fd.as_raw_fd())
            .map_err(|e| HookError::Assemble(e.to_string()))?
    };
    let prog = sys::prog_load(name, &insns).map_err(|e| HookError::Load {
        error: e.error,
        log: e.log,
    })?;
    let ring = sys::RingBuf::new(ring_fd, ring_size).map_err(HookError::Map)?;
    Ok(Loaded { prog, ring })
}

/// Where the hook is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The cgroup directory (the cgroup2 root unless [`ATTACH_ENV`] says otherwise).
    pub path: PathBuf,
    /// Whether it is the root of the whole hierarchy.
    pub root: bool,
    /// Whether fwdguard had to mount cgroup2 itself (a cgroup v1-only host).
    pub private_mount: bool,
    /// The network namespace whose writes are guarded.
    pub netns: u32,
    /// Keys (by target index) the program matches.
    pub covered: Vec<usize>,
}

/// The hook, attached. Dropping it detaches it and stops its event reader.
pub struct Hook {
    _link: OwnedFd,
    _prog: OwnedFd,
    /// The attach point and the hierarchy ids are resolved in (kept open: see `attach`).
    _dirs: (OwnedFd, Option<cgroup::Root>),
    pub attachment: Attachment,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hook")
            .field("attachment", &self.attachment)
            .finish()
    }
}

impl Drop for Hook {
    /// The link closes with this value: the program is detached at once. The reader thread
    /// sees the stop flag within its poll tick and ends by itself: the daemon's loop does not
    /// wait for it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.reader.take());
    }
}

/// One write the hook saw that would have moved a guarded key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Index into the targets the hook was built for.
    pub target: usize,
    /// The name written through (`net/ipv4/ip_forward` for a `conf/all/forwarding` guard).
    pub name: String,
    /// Who, what, and whether it was replaced.
    pub writer: Writer,
    /// The writer's thread and cgroup id, for debugging.
    pub tid: u32,
    pub cgroup_id: u64,
}

/// `"0\n"` as `0\n`: visible whitespace, no raw control bytes in logs.
fn escape(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect()
}

fn read_comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

impl Hook {
    /// Loads the program for `targets` and attaches it; for `prevent` targets, first proves
    /// with the start-up probe that the kernel really replaces values. `on_attempt` is called
    /// on the hook's own reader thread for every attempt (keep it short: hand it to a channel).
    pub fn attach(
        targets: &[Target],
        options: &Options,
        on_attempt: impl FnMut(Attempt) + Send + 'static,
    ) -> Result<Self, HookError> {
        let prepared = prepare(targets, options)?;
        let Loaded { prog, ring } = load(&prepared.spec, "fwdguard", RING_SIZE)?;
        let link = sys::link_create(prog.as_fd(), prepared.dir.as_fd()).map_err(|error| {
            HookError::Attach {
                path: prepared.path.display().to_string(),
                error,
            }
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let names: Vec<(String, usize)> = prepared
            .rules
            .iter()
            .map(|(r, i)| (r.name.clone(), *i))
            .collect();
        let mut covered: Vec<usize> = names.iter().map(|(_, i)| *i).collect();
        covered.sort_unstable();
        covered.dedup();
        // Ids resolve against the whole hierarchy, even when attached lower. A private mount's
        // path is /proc/self/fd/N: its descriptor is kept as long as the reader runs.
        let whole = match &options.cgroup {
            Some(_) => cgroup::Root::find().ok(),
            None => None,
        };
        let resolve_root = whole
            .as_ref()
            .map_or_else(|| prepared.path.clone(), |r| r.path.clone());
        let reader = spawn_reader(ring, names, resolve_root, stop.clone(), on_attempt)
            .map_err(HookError::Reader)?;
        Ok(Self {
            _link: link,
            _prog: prog,
            _dirs: (prepared.dir, whole),
            attachment: Attachment {
                root: prepared.root,
                private_mount: prepared.private_mount,
                path: prepared.path,
                netns: prepared.spec.netns,
                covered,
            },
            stop,
            reader: Some(reader),
        })
    }
}

/// Everything [`Hook::attach`] needs, checked, and the start-up probe passed.
struct Prepared {
    rules: Vec<(Rule, usize)>,
    spec: Spec,
    dir: OwnedFd,
    path: PathBuf,
    root: bool,
    private_mount: bool,
}

fn prepare(targets: &[Target], options: &Options) -> Result<Prepared, HookError> {
    let rules = rules_for(targets);
    if rules.is_empty() {
        return Err(HookError::NoRules);
    }
    let offsets = task_offsets().map_err(HookError::Btf)?;
    let netns = own_netns().map_err(HookError::Netns)?;
    let (dir, path, root, private_mount) = match &options.cgroup {
        Some(p) => {
            let dir = cgroup::Root::open_dir(p).map_err(|error| HookError::Cgroup {
                path: p.display().to_string(),
                error,
            })?;
            (dir, p.clone(), false, false)
        }
        None => {
            let r = cgroup::Root::find().map_err(|error| HookError::Cgroup {
                path: "the cgroup2 root".into(),
                error,
            })?;
            (r.dir, r.path, true, r.private)
        }
    };
    if rules.iter().any(|(r, _)| r.mode == Mode::Prevent) {
        probe(&dir, &path, !root, netns, offsets, options.fault)?;
    }
    let spec = Spec {
        rules: rules.iter().map(|(r, _)| r.clone()).collect(),
        netns,
        offsets,
        writer_comm: None,
        fault: options.fault,
    };
    Ok(Prepared {
        rules,
        spec,
        dir,
        path,
        root,
        private_mount,
    })
}

/// Whether the hook could be attached for `targets` here and now, without attaching it: the
/// same checks, the same start-up probe and the same program load (`fwdguard check`).
pub fn preflight(targets: &[Target], options: &Options) -> Result<(), HookError> {
    let prepared = prepare(targets, options)?;
    load(&prepared.spec, "fwdguard_check", 4096).map(drop)
}

fn spawn_reader(
    mut ring: sys::RingBuf,
    names: Vec<(String, usize)>,
    cgroup_root: PathBuf,
    stop: Arc<AtomicBool>,
    mut on_attempt: impl FnMut(Attempt) + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("fwdguard-bpf".into())
        .spawn(move || {
            let pidns = own_pidns().ok();
            let mut resolver = cgroup::Resolver::new(&cgroup_root);
            let mut events = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match sys::poll_readable(ring.fd(), READER_TICK_MS) {
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!("BPF event ring: poll: {e}");
                        std::thread::sleep(Duration::from_millis(READER_TICK_MS as u64));
                    }
                }
                ring.drain(|record| events.extend(WriteEvent::parse(record)));
                for e in events.drain(..) {
                    let Some((name, target)) = names.get(e.rule).cloned() else {
                        continue;
                    };
                    let placement = resolver.placement(e.cgroup_id);
                    // Ids as this process sees them: inside a container, not the host's.
                    let (pid, ppid) = match pidns {
                        Some(ns) => (
                            e.pids.in_ns(ns).unwrap_or(e.pid),
                            e.parent_pids.in_ns(ns).unwrap_or(e.ppid),
                        ),
                        None => (e.pid, e.ppid),
                    };
                    let parent_comm = if e.parent_comm.is_empty() {
                        read_comm(ppid)
                    } else {
                        Some(e.parent_comm)
                    };
                    let writer = Writer {
                        parent_comm,
                        pid,
                        ppid,
                        uid: e.uid,
                        comm: e.comm,
                        cgroup: placement.cgroup,
                        unit: placement.unit,
                        container: placement.container,
                        written: escape(&e.new),
                        replaced: e.replaced && e.set_rc == 0,
                    };
                    on_attempt(Attempt {
                        target,
                        name,
                        writer,
                        tid: e.tid,
                        cgroup_id: e.cgroup_id,
                    });
                }
            }
        })
}

/// The sysctl the probe writes: bounded 1..=255, so the probe's replacement `0` is refused.
const PROBE_KEY: &str = "net/ipv4/ip_default_ttl";
/// The probe writer's command name: the probe program touches no other task's writes.
const PROBE_COMM: &[u8] = b"fwdguard-probe";
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Proves that the kernel applies a replacement, without changing anything and without a
/// namespace of its own (so no CAP_SYS_ADMIN and no user namespaces): a forked child named
/// `fwdguard-probe` writes `ip_default_ttl`'s current value back to it while a program built
/// from the same code, matching only that command name, replaces the write with `0`, which
/// the kernel refuses (EINVAL). Where the replacement is effective the write fails and nothing
/// is written; on kernels with the `set_new_value` bug it succeeds and rewrites the value that
/// was there. Only a change by someone else in the microseconds between the child's read and
/// its write could be undone, and only on such a kernel.
///
/// Attached below the root (tests), the probe writer joins that cgroup first.
fn probe(
    dir: &OwnedFd,
    path: &Path,
    join: bool,
    netns: u32,
    offsets: btf::TaskOffsets,
    fault: Option<Fault>,
) -> Result<(), HookError> {
    let failed = |what: &str, e: io::Error| HookError::ProbeFailed(format!("{what}: {e}"));
    let (ready_r, ready_w) = sys::pipe().map_err(|e| failed("pipe", e))?;
    let (go_r, go_w) = sys::pipe().map_err(|e| failed("pipe", e))?;
    let (result_r, result_w) = sys::pipe().map_err(|e| failed("pipe", e))?;
    let mut comm = [0u8; 16];
    comm[..PROBE_COMM.len()].copy_from_slice(PROBE_COMM);
    let job = sys::ProbeJob {
        path: std::ffi::CString::new(format!("/proc/sys/{PROBE_KEY}"))
            .map_err(|e| failed("path", e.into()))?,
        comm,
        cgroup_procs: join
            .then(|| {
                std::ffi::CString::new(
                    path.join("cgroup.procs")
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            })
            .transpose()
            .map_err(|e| failed("path", e.into()))?,
    };
    let child =
        sys::ProbeWriter::spawn(&job, &ready_w, &go_r, &result_w).map_err(|e| failed("fork", e))?;
    drop((ready_w, go_r, result_w));
    let outcome = (|| {
        let mut ready = File::from(ready_r);
        if !sys::poll_readable(ready.as_fd(), PROBE_TIMEOUT.as_millis() as i32).unwrap_or(false)
            || ready.read(&mut [0u8]).unwrap_or(0) != 1
        {
            return Err(child_failure(&child));
        }
        let spec = Spec {
            rules: vec![Rule {
                name: PROBE_KEY.into(),
                want: 0,
                want_text: "0".into(),
                mode: Mode::Prevent,
            }],
            netns,
            offsets,
            writer_comm: Some(comm),
            fault,
        };
        let Loaded { prog, mut ring } = load(&spec, "fwdguard_probe", 4096)?;
        let link =
            sys::link_create(prog.as_fd(), dir.as_fd()).map_err(|error| HookError::Attach {
                path: path.display().to_string(),
                error,
            })?;
        std::io::Write::write_all(&mut File::from(go_w), &[1])
            .map_err(|e| failed("start the probe writer", e))?;
        let status = child.wait().map_err(|e| failed("probe writer", e))?;
        drop(link);
        if status != 0 {
            return Err(probe_step_failed(status, "finish"));
        }
        let mut verdict = [0u8];
        File::from(result_r)
            .read_exact(&mut verdict)
            .map_err(|e| failed("read the probe's result", e))?;
        let seen = ring.drain(|_| {});
        match verdict[0] {
            sys::PROBE_REFUSED => Ok(()),
            _ if seen == 0 => Err(HookError::ProbeUnseen(path.display().to_string())),
            _ => Err(HookError::Ineffective),
        }
    })();
    if outcome.is_err() {
        child.kill();
        let _ = child.wait();
    }
    outcome
}

fn child_failure(child: &sys::ProbeWriter) -> HookError {
    child.kill();
    match child.wait() {
        Ok(step) if step > 0 => probe_step_failed(step, "start"),
        _ => HookError::ProbeFailed("the probe writer did not start in time".into()),
    }
}

/// The probe writer's exit status `step` named ([`sys::PROBE_STEPS`]), `otherwise` if unknown.
fn probe_step_failed(step: i32, otherwise: &str) -> HookError {
    let what = usize::try_from(step)
        .ok()
        .and_then(|s| sys::PROBE_STEPS.get(s))
        .copied()
        .unwrap_or(otherwise);
    HookError::ProbeFailed(format!("the probe writer could not {what}"))
}

/// Where the running kernel exposes its BTF.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Reads the running kernel's BTF and finds the offsets, once per process: they cannot change
/// while the kernel runs, and the file is megabytes (a reload or a fallback attaches again).
pub fn task_offsets() -> Result<btf::TaskOffsets, String> {
    static OFFSETS: std::sync::OnceLock<Result<btf::TaskOffsets, String>> =
        std::sync::OnceLock::new();
    OFFSETS
        .get_or_init(|| {
            let raw = std::fs::read(VMLINUX).map_err(|e| format!("{VMLINUX}: {e}"))?;
            btf::Btf::parse(&raw)
                .and_then(|b| b.task_offsets())
                .map_err(|e| format!("{VMLINUX}: {e}"))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_kernel_has_the_fields_the_hook_reads() {
        // Every kernel this hook supports (5.8+) ships BTF when built with
        // CONFIG_DEBUG_INFO_BTF; without it the hook is not used at all.
        let Ok(raw) = std::fs::read(VMLINUX) else {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "SKIPPED: no {VMLINUX} on this kernel");
            return;
        };
        let o = btf::Btf::parse(&raw).unwrap().task_offsets().unwrap();
        assert!(o.tgid > 0 && o.pid > 0 && o.comm > o.tgid, "{o:?}");
        assert_ne!(o.real_parent, o.nsproxy);
        assert_eq!((o.upid_nr, o.upid_size), (0, 16), "{o:?}");
    }

    fn target(name: &str, want: &str) -> Target {
        Target {
            name: name.into(),
            want: want.into(),
            mode: Mode::Prevent,
        }
    }

    #[test]
    fn ip_forward_and_conf_all_are_guarded_together() {
        let rules = rules_for(&[target("net/ipv4/conf/all/forwarding", "1")]);
        let names: Vec<_> = rules.iter().map(|(r, i)| (r.name.as_str(), *i)).collect();
        assert_eq!(
            names,
            [
                ("net/ipv4/conf/all/forwarding", 0),
                ("net/ipv4/ip_forward", 0)
            ]
        );
        // Both configured: each once, for its own target.
        let rules = rules_for(&[
            target("net/ipv4/ip_forward", "1"),
            target("net/ipv4/conf/all/forwarding", "1"),
        ]);
        assert_eq!(rules.len(), 2);
    }

    #[test]
    fn prevent_keys_come_first_and_the_table_is_capped() {
        let mut targets: Vec<Target> = (0..600)
            .map(|i| Target {
                mode: Mode::Audit,
                ..target(&format!("net/ipv4/conf/a{i}/forwarding"), "1")
            })
            .collect();
        targets.push(target("net/ipv6/conf/all/forwarding", "1"));
        let rules = rules_for(&targets);
        assert_eq!(rules.len(), program::MAX_RULES);
        assert_eq!((rules[0].0.mode, rules[0].1), (Mode::Prevent, 600));
        assert!(rules[1..].iter().all(|(r, _)| r.mode == Mode::Audit));
    }

    #[test]
    fn keys_the_program_cannot_hold_are_left_to_the_restorer() {
        let rules = rules_for(&[
            target("net/ipv4/tcp_rmem", "4096 131072 6291456"),
            target(&format!("net/ipv4/conf/{}/forwarding", "x".repeat(60)), "1"),
            target("net/ipv6/conf/all/forwarding", "1"),
        ]);
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].1, 2);
    }

    #[test]
    fn writers_read_like_the_issue_says() {
        let w = Writer {
            pid: 4242,
            ppid: 4240,
            comm: "sysctl".into(),
            parent_comm: Some("network".into()),
            unit: cgroup::placement("/system.slice/network.service").unit,
            ..Writer::default()
        };
        assert_eq!(
            w.to_string(),
            "sysctl (pid 4242, parent network pid 4240, uid 0, network.service)"
        );
        assert_eq!(escape(b"0\n"), "0\\n");
        assert_eq!(escape(b" 0"), " 0");
    }

    #[test]
    fn fault_injection_is_spelled_out() {
        assert_eq!(parse_fault(""), Ok(None));
        assert_eq!(parse_fault("verifier"), Ok(Some(Fault::Verifier)));
        assert_eq!(parse_fault("no-replace"), Ok(Some(Fault::NoReplace)));
        assert!(parse_fault("yes").unwrap_err().contains("expected"));
    }
}
