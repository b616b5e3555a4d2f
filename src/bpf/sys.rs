//! Every system call the hook needs that has no safe wrapper: `bpf(2)` (map, program, link),
//! the ring buffer's shared memory, `poll(2)` on it, and the fork of the start-up probe's
//! writer; each block here says why it is sound. Outside this file the binary's only `unsafe`
//! registers descriptors it owns with tokio's `AsyncFd` (netlink, inotify); the core crate
//! forbids `unsafe` altogether.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::asm::Insn;

// `enum bpf_cmd`, `enum bpf_map_type`, `enum bpf_prog_type`, `enum bpf_attach_type`.
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_RINGBUF: u32 = 27;
const BPF_PROG_TYPE_CGROUP_SYSCTL: u32 = 23;
const BPF_CGROUP_SYSCTL: u32 = 18;

/// The leading fields of `union bpf_attr` for `BPF_MAP_CREATE`.
#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// The leading fields of `union bpf_attr` for `BPF_PROG_LOAD`.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The leading fields of `union bpf_attr` for `BPF_LINK_CREATE`.
#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a live, initialised `#[repr(C)]` prefix of `union bpf_attr` for `cmd`,
    // and the size passed is its own: the kernel reads (and for some commands writes) only
    // that many bytes, and treats missing trailing fields as zero.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success these commands return a new file descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn name16(name: &str) -> [u8; 16] {
    let mut n = [0u8; 16];
    for (d, s) in n.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    n
}

/// A `BPF_MAP_TYPE_RINGBUF` of `size` bytes (a power of two, a multiple of the page size).
pub fn ringbuf_create(name: &str, size: u32) -> io::Result<OwnedFd> {
    let mut attr = MapCreate {
        map_type: BPF_MAP_TYPE_RINGBUF,
        max_entries: size,
        map_name: name16(name),
        ..Default::default()
    };
    bpf(BPF_MAP_CREATE, &mut attr)
}

/// A program the kernel refused, with the verifier's explanation.
#[derive(Debug)]
pub struct LoadError {
    pub error: io::Error,
    pub log: String,
}

/// Loads a `BPF_PROG_TYPE_CGROUP_SYSCTL` program.
pub fn prog_load(name: &str, insns: &[Insn]) -> Result<OwnedFd, LoadError> {
    let code: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
    let license: &CStr = c"GPL";
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_SYSCTL,
        insn_cnt: insns.len() as u32,
        insns: code.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name16(name),
        expected_attach_type: BPF_CGROUP_SYSCTL,
        ..Default::default()
    };
    // Without a log first: the verifier's trace of a large program overflows any fixed buffer
    // (ENOSPC, which would fail a good program), and costs time at every start. Only a refused
    // program is loaded again with a log, to say why; the first error is the one reported.
    // `code` and `license` outlive the calls.
    let error = match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => return Ok(fd),
        Err(error) => error,
    };
    let mut log = vec![0u8; 256 * 1024];
    attr.log_level = 1;
    attr.log_size = log.len() as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    // The kernel writes at most `log_size` bytes into `log`, which outlives the call.
    if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr) {
        return Ok(fd);
    }
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    Err(LoadError {
        error,
        log: String::from_utf8_lossy(&log[..end]).into_owned(),
    })
}

/// Attaches `prog` to the cgroup directory `cgroup` with a BPF link: flags 0, which for a link
/// means "multi" (other programs keep running beside it; no override, not exclusive). The
/// program stays attached exactly as long as the returned descriptor is open.
pub fn link_create(prog: BorrowedFd<'_>, cgroup: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut attr = LinkCreate {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_SYSCTL,
        flags: 0,
    };
    bpf(BPF_LINK_CREATE, &mut attr)
}

const RINGBUF_BUSY: u32 = 1 << 31;
const RINGBUF_DISCARD: u32 = 1 << 30;
const RINGBUF_HDR: usize = 8;

/// The consumer side of a ring buffer map, mapped into our memory.
#[derive(Debug)]
pub struct RingBuf {
    fd: OwnedFd,
    page: usize,
    mask: u64,
    /// The consumer position page (ours to write).
    consumer: *mut u8,
    /// The producer position page, then the data area mapped twice in a row, so a record
    /// that wraps is still contiguous.
    producer: *mut u8,
    producer_len: usize,
}

// SAFETY: the mappings belong to this value alone and are only touched through `&mut self`.
unsafe impl Send for RingBuf {}

fn mmap(fd: RawFd, len: usize, prot: i32, offset: usize) -> io::Result<*mut u8> {
    // SAFETY: a fresh shared mapping of a ring buffer map fd; the kernel checks length,
    // protection and offset against the map and fails otherwise.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            fd,
            offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

impl RingBuf {
    /// Maps the ring buffer `fd` of `size` bytes (as created).
    pub fn new(fd: OwnedFd, size: u32) -> io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let raw = fd.as_raw_fd();
        let consumer = mmap(raw, page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer_len = page + 2 * size as usize;
        let producer = match mmap(raw, producer_len, libc::PROT_READ, page) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: `consumer` was mapped above with this length and is not used again.
                unsafe { libc::munmap(consumer.cast(), page) };
                return Err(e);
            }
        };
        Ok(Self {
            fd,
            page,
            mask: u64::from(size) - 1,
            consumer,
            producer,
            producer_len,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Hands every committed record to `each`, in order, and frees them. Returns how many.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) -> usize {
        // SAFETY: both positions are 8-byte aligned u64s at the start of their pages, which
        // stay mapped while `self` lives; the kernel updates them atomically, so they are only
        // accessed through atomics (acquire for the producer's, release for ours).
        let (cons_pos, prod_pos) = unsafe {
            (
                AtomicU64::from_ptr(self.consumer.cast()),
                AtomicU64::from_ptr(self.producer.cast()),
            )
        };
        let data = self.producer.wrapping_add(self.page);
        let mut cons = cons_pos.load(Ordering::Acquire);
        let mut n = 0;
        loop {
            let prod = prod_pos.load(Ordering::Acquire);
            if cons >= prod {
                break;
            }
            let at = (cons & self.mask) as usize;
            // SAFETY: `at` is within the data area and record headers are 8-byte aligned;
            // the header's length word is written atomically by the kernel on commit.
            let len_word =
                unsafe { AtomicU32::from_ptr(data.add(at).cast()) }.load(Ordering::Acquire);
            if len_word & RINGBUF_BUSY != 0 {
                break; // reserved, not committed yet
            }
            let len = (len_word & !(RINGBUF_BUSY | RINGBUF_DISCARD)) as usize;
            if len_word & RINGBUF_DISCARD == 0
                && at + RINGBUF_HDR + len <= self.producer_len - self.page
            {
                // SAFETY: the record lies within the double mapping (checked above) and is
                // committed, so the kernel no longer writes it until we advance past it.
                let record = unsafe { std::slice::from_raw_parts(data.add(at + RINGBUF_HDR), len) };
                each(record);
                n += 1;
            }
            cons += (RINGBUF_HDR + len).next_multiple_of(8) as u64;
            cons_pos.store(cons, Ordering::Release);
        }
        n
    }
}

impl Drop for RingBuf {
    fn drop(&mut self) {
        // SAFETY: both regions were mapped in `new` with these lengths and are not used after.
        unsafe {
            libc::munmap(self.consumer.cast(), self.page);
            libc::munmap(self.producer.cast(), self.producer_len);
        }
    }
}

/// Waits up to `timeout_ms` for `fd` to become readable.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, and its count.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    match n {
        n if n < 0 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => Ok(p.revents & libc::POLLIN != 0),
    }
}

/// The steps of the probe writer, as its exit status names the one that failed.
pub const PROBE_STEPS: [&str; 7] = [
    "done",
    "join the cgroup the hook is attached to",
    "set its command name",
    "wait for the probe program",
    "read the probe key",
    "write the probe key (an error other than EINVAL)",
    "report its result",
];

/// The probe writer's result: its write was refused (EINVAL), so the replacement took effect.
pub const PROBE_REFUSED: u8 = b'R';
/// ... or it went through as written.
pub const PROBE_ACCEPTED: u8 = b'A';

/// A child process that names itself `job.comm`, then, once the parent writes a byte to `go`,
/// writes the current value of the sysctl file `job.path` back to it and sends
/// [`PROBE_REFUSED`] or [`PROBE_ACCEPTED`] over `result` (exit status: index into
/// [`PROBE_STEPS`] of the failed step, 0 if none).
#[derive(Debug)]
pub struct ProbeWriter {
    pub pid: libc::pid_t,
}

/// Everything the child needs, prepared before `fork` so that the child allocates nothing.
#[derive(Debug)]
pub struct ProbeJob {
    pub path: std::ffi::CString,
    /// NUL-padded, at most 15 bytes of name.
    pub comm: [u8; 16],
    /// `cgroup.procs` of the cgroup to join first, when the hook is not attached at the root.
    pub cgroup_procs: Option<std::ffi::CString>,
}

impl ProbeWriter {
    /// Forks the writer. `ready` (write end) gets one byte once the child has its name; it
    /// then blocks on `go` (read end); `result` (write end) gets the verdict.
    pub fn spawn(
        job: &ProbeJob,
        ready: &OwnedFd,
        go: &OwnedFd,
        result: &OwnedFd,
    ) -> io::Result<Self> {
        let (ready, go, result) = (ready.as_raw_fd(), go.as_raw_fd(), result.as_raw_fd());
        // SAFETY: the child runs only async-signal-safe system calls on memory prepared before
        // the fork (`job`, stack buffers) and leaves with `_exit`, so the parent's other
        // threads, locks and allocator state are never touched in it.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: see above; this never returns.
            unsafe { probe_child(job, ready, go, result) }
        }
        Ok(Self { pid })
    }

    /// Waits for the child to exit; `Err` if it was killed.
    pub fn wait(&self) -> io::Result<i32> {
        let mut status = 0;
        // SAFETY: our own child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::WIFEXITED(status) {
            Ok(libc::WEXITSTATUS(status))
        } else {
            Err(io::Error::other(format!(
                "probe writer died (status {status:#x})"
            )))
        }
    }

    pub fn kill(&self) {
        // SAFETY: signals our own child, which we have not reaped yet.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }
}

/// The probe writer's body (in the forked child).
///
/// # Safety
/// Only to be called in a freshly forked child; never returns.
unsafe fn probe_child(job: &ProbeJob, ready: RawFd, go: RawFd, result: RawFd) -> ! {
    // SAFETY (whole body): raw system calls on buffers that live until `_exit`.
    unsafe {
        let fail = |step: i32| -> ! { libc::_exit(step) };
        if let Some(procs) = &job.cgroup_procs {
            // "0" moves the writing process itself.
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                fail(1);
            }
            libc::close(fd);
        }
        if libc::prctl(libc::PR_SET_NAME, job.comm.as_ptr()) != 0 {
            fail(2);
        }
        let byte = [1u8];
        let mut got = [0u8];
        if libc::write(ready, byte.as_ptr().cast(), 1) != 1
            || libc::read(go, got.as_mut_ptr().cast(), 1) != 1
        {
            fail(3);
        }
        let fd = libc::open(job.path.as_ptr(), libc::O_RDWR);
        let mut buf = [0u8; 64];
        let n = if fd < 0 {
            -1
        } else {
            libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0)
        };
        if n <= 0 {
            fail(4);
        }
        let verdict = if libc::write(fd, buf.as_ptr().cast(), n as usize) >= 0 {
            PROBE_ACCEPTED
        } else if *libc::__errno_location() == libc::EINVAL {
            PROBE_REFUSED
        } else {
            fail(5)
        };
        if libc::write(result, [verdict].as_ptr().cast(), 1) != 1 {
            fail(6);
        }
        libc::_exit(0)
    }
}

/// A pipe, both ends close-on-exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are new descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Mounts a fresh cgroup2 hierarchy that is attached nowhere (`fsopen`/`fsmount`, 5.2+) and
/// returns a descriptor of its root: a private view for hosts where nothing mounts cgroup2.
pub fn cgroup2_detached_mount() -> io::Result<OwnedFd> {
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    // SAFETY: a NUL-terminated file system name and flags; returns a new fd or -1.
    let fs = unsafe {
        libc::syscall(libc::SYS_fsopen, c"cgroup2".as_ptr(), 1 /* CLOEXEC */)
    };
    if fs < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nobody else owns.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as RawFd) };
    // SAFETY: CMD_CREATE takes no key or value (null pointers, aux 0).
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a configured fs context; flags FSMOUNT_CLOEXEC, no attributes.
    let mnt = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), 1, 0) };
    if mnt < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(mnt as RawFd) })
}
