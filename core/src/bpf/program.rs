//! The hook itself: a `BPF_PROG_TYPE_CGROUP_SYSCTL` program, generated here instruction by
//! instruction (no clang, no object file, no libbpf). The kernel runs it on every read and
//! write of a file under `/proc/sys` by a process in the cgroup subtree it is attached to.
//!
//! What it does, in C-like pseudocode (`rules` and `NETNS` are baked in when it is built):
//!
//! ```text
//! if (!ctx->write) return 1;                              // reads pass, no event
//! len = bpf_sysctl_get_name(ctx, name, 64, 0);            // "net/ipv4/ip_forward"
//! k = rule whose name has length len and equal 8-byte words; none: return 1;
//! task = bpf_get_current_task();
//! if (task->nsproxy->net_ns->ns.inum != NETNS) return 1;  // another netns: untouched
//! if (COMM && task->comm != COMM) return 1;               // the start-up probe's program only
//! n = bpf_sysctl_get_new_value(ctx, new, 32);             // raw bytes, -E2BIG if longer
//! rc = bpf_strtol(new, 32, 0, &v);                        // the kernel's own parser
//! if (rc > 0 && n >= 0 && v == rules[k].want) return 1;   // keeps the value: no event
//! event = { pid, tid, comm, ppid, parent comm (task reads), uid, cgroup id, netns, n, rc,
//!           v, new, the process's and the parent's id in each of their pid namespaces };
//! if (rules[k].prevent) bpf_sysctl_set_new_value(ctx, "WANT\n\n..", clamp(n, len(WANT), 32));
//! bpf_ringbuf_output(&events, &event, sizeof event, 0);
//! return 1;                                               // never refuses a write
//! ```
//!
//! Verifier constraints it relies on, and why it is written this way:
//! - No loops and no `bpf_strncmp` (5.17+): names are compared as a fixed sequence of 8-byte
//!   loads against immediates, after zeroing the 64-byte buffer so the bytes past the name's
//!   NUL are known. Only the name length is compared first, which keeps the unguarded path
//!   (every other sysctl) at ~10 instructions after the name helper.
//! - Every stack byte handed to a helper that reads it (`ringbuf_output`, `strtol`,
//!   `set_new_value`) is written first: the event, the value buffer and the replacement are
//!   zeroed or filled with immediate stores, so no `allow_uninit_stack` (CAP_PERFMON) is needed
//!   for that.
//! - `set_new_value`'s length is `ARG_CONST_SIZE`: it is clamped with signed compares to
//!   1..=32 right before the call, on every path, so the verifier sees the bound.
//! - Task fields are read with `bpf_probe_read_kernel` at offsets from the running kernel's
//!   BTF ([`super::btf`]), not with `bpf_get_current_pid_tgid`/`comm`: those two are only
//!   offered to cgroup programs since 6.1, the task reads work from 5.8. They are GPL-only
//!   helpers, so the licence string is "GPL"; they need CAP_PERFMON (or CAP_SYS_ADMIN), and
//!   `lockdown=confidentiality` removes them: the load then fails and fwdguard falls back.
//! - A failed kernel read leaves zeros (the helper clears its buffer), so a writer whose
//!   namespace cannot be read compares as "another netns" and is left alone.
//! - Helper numbers are the stable `enum bpf_func_id` values; the ring buffer map needs 5.8.
//! - `r6` keeps the context, `r7` the name length and then the value length, `r8` the task,
//!   `r9` the matched rule and then a `struct pid`: `r1`-`r5` are clobbered by every call.
//! - Jumps have 16-bit offsets: the per-name table stays small (the event is zeroed once, after
//!   the match) and holds at most [`MAX_RULES`] names.

use super::asm::{
    Alu, Asm, Cond, FP, Insn, R0, R1, R2, R3, R4, R6, R7, R8, R9, Size, UnboundLabel,
};
use super::btf::TaskOffsets;

// `enum bpf_func_id`.
const GET_CURRENT_UID_GID: i32 = 15;
const GET_CURRENT_TASK: i32 = 35;
const GET_CURRENT_CGROUP_ID: i32 = 80;
const SYSCTL_GET_NAME: i32 = 101;
const SYSCTL_GET_NEW_VALUE: i32 = 103;
const SYSCTL_SET_NEW_VALUE: i32 = 104;
const STRTOL: i32 = 105;
const PROBE_READ_KERNEL: i32 = 113;
const RINGBUF_OUTPUT: i32 = 130;

/// Longest `/proc/sys`-relative name the program can match (the buffer holds a NUL too).
pub const NAME_MAX: usize = 63;
/// Most names one program matches: at most ~52 instructions each, so every jump across the
/// table stays within the 16-bit offset of a BPF jump (32 767 instructions).
pub const MAX_RULES: usize = 512;
/// Bytes of the new value the program sees, and the longest replacement it writes.
pub const VALUE_MAX: usize = 32;

/// The event the program sends, laid out as [`WriteEvent::parse`] reads it.
pub mod layout {
    pub const VERDICT: i16 = 0; // u32: 0 = seen (audit), 1 = replaced
    pub const RULE: i16 = 4; // u32: index into the rules
    pub const TGID: i16 = 8; // u32, in the initial pid namespace
    pub const TID: i16 = 12; // u32, in the initial pid namespace
    pub const PPID: i16 = 16; // u32, in the initial pid namespace
    pub const UID: i16 = 20; // u32
    pub const CGROUP_ID: i16 = 24; // u64
    pub const NETNS: i16 = 32; // u32
    pub const PARSE_RC: i16 = 36; // i32: bytes strtol used, or -errno
    pub const PARSED: i16 = 40; // i64
    pub const NEW_LEN: i16 = 48; // i32: bytes written, or -E2BIG
    pub const SET_RC: i16 = 52; // i32: set_new_value's return
    pub const COMM: i16 = 56; // char[16]
    pub const NEW: i16 = 72; // char[32]
    pub const PARENT_COMM: i16 = 104; // char[16]
    /// The writer's process id in each pid namespace it is in ([`PIDS_SIZE`] bytes) ...
    pub const PIDS: i16 = 120;
    /// ... and its parent's.
    pub const PARENT_PIDS: i16 = PIDS + PIDS_SIZE;
    pub const SIZE: i16 = PARENT_PIDS + PIDS_SIZE;

    /// How many pid namespace levels are read (the initial one and 3 nested).
    pub const LEVELS: i16 = 4;
    /// A pid block: `u32` level, `u32` padding, then per level `{ u32 nr; u32 ns inum; }`.
    pub const PIDS_SIZE: i16 = 8 + 8 * LEVELS;
}

// The stack frame (offsets from the frame pointer, which points just past it).
const EVT: i16 = -layout::SIZE;
const NAME: i16 = EVT - 64;
const RES: i16 = NAME - 8;
const WANT: i16 = RES - 8;
const WANT_LEN: i16 = WANT - 8;
const PREVENT: i16 = WANT_LEN - 8;
const TMP: i16 = PREVENT - 8;
const TMP2: i16 = TMP - 8;
const REPL: i16 = TMP2 - VALUE_MAX as i16;
const _: () = assert!(REPL >= -512, "the BPF stack is 512 bytes");

/// One guarded sysctl as the program matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Relative to `/proc/sys` with `/`: `net/ipv4/ip_forward`.
    pub name: String,
    /// The wanted value as the kernel parses it ...
    pub want: i64,
    /// ... and as the replacement writes it.
    pub want_text: String,
    /// Whether writes that move the key are replaced (`prevent`) or only reported (audit).
    pub mode: Mode,
}

/// Whether writes that move a guarded key are replaced or only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Prevent,
    Audit,
}

/// Faults a test can ask for, to see the fallbacks work through the real code paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Add an instruction the verifier refuses (an out-of-bounds context read).
    Verifier,
    /// Leave out the `set_new_value` call but report the write as replaced: what the kernels
    /// with the `set_new_value` bug do. The start-up probe must catch it.
    NoReplace,
}

/// Everything the program is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub rules: Vec<Rule>,
    /// The network namespace (inode) whose writes are guarded.
    pub netns: u32,
    pub offsets: TaskOffsets,
    /// Only writes by tasks with this command name count (the start-up probe's own writer);
    /// `None` in the real hook.
    pub writer_comm: Option<[u8; 16]>,
    pub fault: Option<Fault>,
}

/// Eight bytes of `bytes` from `at`, zero-padded, as a little-endian word.
fn word(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    for (i, b) in bytes.iter().skip(at).take(8).enumerate() {
        w[i] = *b;
    }
    u64::from_le_bytes(w)
}

impl Rule {
    /// Whether the program can hold this rule (names up to 63 bytes, values up to 31).
    pub fn fits(&self) -> bool {
        !self.name.is_empty()
            && self.name.len() <= NAME_MAX
            && !self.want_text.is_empty()
            && self.want_text.len() < VALUE_MAX
    }

    /// The replacement: the wanted value, then newlines up to the full buffer (the kernel's
    /// parser skips trailing whitespace; the length is cut to the writer's, see below).
    fn replacement(&self) -> [u8; VALUE_MAX] {
        let mut r = [b'\n'; VALUE_MAX];
        r[..self.want_text.len()].copy_from_slice(self.want_text.as_bytes());
        r
    }
}

/// Assembles the program; `events` is the ring buffer map's file descriptor.
pub fn assemble(spec: &Spec, events: i32) -> Result<Vec<Insn>, UnboundLabel> {
    let o = &spec.offsets;
    let mut a = Asm::new();
    let allow = a.label();
    let matched = a.label();
    let lowering = a.label();

    a.mov_reg(R6, R1);
    if spec.fault == Some(Fault::Verifier) {
        a.load(Size::W, R0, R6, 64);
    }
    a.load(Size::W, R0, R6, 0) // ctx->write
        .jump_imm(Cond::Eq, R0, 0, allow);

    // The name, into a zeroed buffer.
    for i in 0..8 {
        a.store_imm(Size::DW, FP, NAME + 8 * i, 0);
    }
    a.mov_reg(R1, R6)
        .mov_reg(R2, FP)
        .alu_imm(Alu::Add, R2, NAME.into())
        .mov_imm(R3, 64)
        .mov_imm(R4, 0)
        .call(SYSCTL_GET_NAME)
        .mov_reg(R7, R0);

    for (k, rule) in spec.rules.iter().enumerate() {
        let next = a.label();
        let name = rule.name.as_bytes();
        a.jump_imm(Cond::Ne, R7, name.len() as i32, next);
        for i in 0..name.len().div_ceil(8) {
            a.load(Size::DW, R1, FP, NAME + 8 * i as i16)
                .ld_imm64(R2, word(name, 8 * i))
                .jump_reg(Cond::Ne, R1, R2, next);
        }
        // Rule k: note it (in r9 until the event is zeroed), its value and its replacement.
        a.mov_imm(R9, k as i32)
            .ld_imm64(R1, rule.want as u64)
            .store_reg(Size::DW, FP, WANT, R1)
            .store_imm(Size::DW, FP, WANT_LEN, rule.want_text.len() as i32)
            .store_imm(Size::DW, FP, PREVENT, i32::from(rule.mode == Mode::Prevent));
        let repl = rule.replacement();
        for i in 0..VALUE_MAX / 8 {
            a.ld_imm64(R1, word(&repl, 8 * i))
                .store_reg(Size::DW, FP, REPL + 8 * i as i16, R1);
        }
        a.goto(matched);
        a.bind(next);
    }
    a.goto(allow);

    // The writer's network namespace: task->nsproxy->net_ns->ns.inum.
    a.bind(matched);
    for i in 0..layout::SIZE / 8 {
        a.store_imm(Size::DW, FP, EVT + 8 * i, 0);
    }
    a.store_reg(Size::W, FP, EVT + layout::RULE, R9);
    a.call(GET_CURRENT_TASK).mov_reg(R8, R0);
    read_kernel(&mut a, TMP, 8, R8, o.nsproxy);
    a.load(Size::DW, R3, FP, TMP);
    read_kernel(&mut a, TMP, 8, R3, o.net_ns);
    a.load(Size::DW, R3, FP, TMP);
    read_kernel(&mut a, EVT + layout::NETNS, 4, R3, o.netns_inum);
    a.load(Size::W, R1, FP, EVT + layout::NETNS)
        .ld_imm64(R2, u64::from(spec.netns))
        .jump_reg(Cond::Ne, R1, R2, allow);
    if let Some(comm) = spec.writer_comm {
        read_kernel(&mut a, EVT + layout::COMM, 16, R8, o.comm);
        for i in 0..2 {
            a.load(Size::DW, R1, FP, EVT + layout::COMM + 8 * i)
                .ld_imm64(R2, word(&comm, 8 * i as usize))
                .jump_reg(Cond::Ne, R1, R2, allow);
        }
    }

    // The new value, parsed the way proc_dointvec will parse it.
    a.mov_reg(R1, R6)
        .mov_reg(R2, FP)
        .alu_imm(Alu::Add, R2, (EVT + layout::NEW).into())
        .mov_imm(R3, VALUE_MAX as i32)
        .call(SYSCTL_GET_NEW_VALUE)
        .mov_reg(R7, R0)
        .store_reg(Size::W, FP, EVT + layout::NEW_LEN, R7)
        .store_imm(Size::DW, FP, RES, 0)
        .mov_reg(R1, FP)
        .alu_imm(Alu::Add, R1, (EVT + layout::NEW).into())
        .mov_imm(R2, VALUE_MAX as i32)
        .mov_imm(R3, 0) // base: auto, like the kernel (0x.., 0..)
        .mov_reg(R4, FP)
        .alu_imm(Alu::Add, R4, RES.into())
        .call(STRTOL)
        .store_reg(Size::W, FP, EVT + layout::PARSE_RC, R0)
        .load(Size::DW, R1, FP, RES)
        .store_reg(Size::DW, FP, EVT + layout::PARSED, R1)
        // Fails closed: unparsable or longer than the buffer counts as moving the key.
        .jump_imm(Cond::Sle, R0, 0, lowering)
        .jump_imm(Cond::Slt, R7, 0, lowering)
        .load(Size::DW, R2, FP, WANT)
        .jump_reg(Cond::Eq, R1, R2, allow);

    // Who is writing.
    a.bind(lowering);
    read_kernel(&mut a, EVT + layout::TGID, 4, R8, o.tgid);
    read_kernel(&mut a, EVT + layout::TID, 4, R8, o.pid);
    read_kernel(&mut a, EVT + layout::COMM, 16, R8, o.comm);
    // The parent process: the leader of the thread that forked the writer (its name, not
    // the forking thread's).
    read_kernel(&mut a, TMP, 8, R8, o.real_parent);
    a.load(Size::DW, R3, FP, TMP);
    read_kernel(&mut a, TMP, 8, R3, o.group_leader);
    a.load(Size::DW, R3, FP, TMP);
    read_kernel(&mut a, EVT + layout::PPID, 4, R3, o.tgid);
    a.load(Size::DW, R3, FP, TMP);
    read_kernel(&mut a, EVT + layout::PARENT_COMM, 16, R3, o.comm);
    // The pids as the daemon's pid namespace sees them, which need not be the initial one.
    a.mov_reg(R3, R8);
    pid_numbers(&mut a, o, EVT + layout::PIDS);
    a.load(Size::DW, R3, FP, TMP);
    pid_numbers(&mut a, o, EVT + layout::PARENT_PIDS);
    a.call(GET_CURRENT_UID_GID)
        .store_reg(Size::W, FP, EVT + layout::UID, R0)
        .call(GET_CURRENT_CGROUP_ID)
        .store_reg(Size::DW, FP, EVT + layout::CGROUP_ID, R0);

    let report = a.label();
    if spec.rules.iter().any(|r| r.mode == Mode::Prevent) {
        a.load(Size::DW, R1, FP, PREVENT)
            .jump_imm(Cond::Eq, R1, 0, report);
        // Replace with the wanted value, as long as what was written (1..=32 bytes): the
        // kernel returns the replacement's length from write(), and a shorter count makes
        // shells and stdio retry the rest as a second write.
        let (known, at_least_want, at_most_max, at_least_one) =
            (a.label(), a.label(), a.label(), a.label());
        a.mov_reg(R2, R7)
            .jump_imm(Cond::Sge, R7, 0, known)
            .mov_imm(R2, VALUE_MAX as i32);
        a.bind(known);
        a.load(Size::DW, R3, FP, WANT_LEN)
            .jump_reg(Cond::Sge, R2, R3, at_least_want)
            .mov_reg(R2, R3);
        a.bind(at_least_want);
        a.jump_imm(Cond::Sle, R2, VALUE_MAX as i32, at_most_max)
            .mov_imm(R2, VALUE_MAX as i32);
        a.bind(at_most_max);
        a.jump_imm(Cond::Sge, R2, 1, at_least_one).mov_imm(R2, 1);
        a.bind(at_least_one);
        if spec.fault == Some(Fault::NoReplace) {
            a.mov_imm(R0, 0);
        } else {
            a.mov_reg(R3, R2)
                .mov_reg(R1, R6)
                .mov_reg(R2, FP)
                .alu_imm(Alu::Add, R2, REPL.into())
                .call(SYSCTL_SET_NEW_VALUE);
        }
        a.store_reg(Size::W, FP, EVT + layout::SET_RC, R0)
            .store_imm(Size::W, FP, EVT + layout::VERDICT, 1);
    }

    a.bind(report);
    a.ld_map_fd(R1, events)
        .mov_reg(R2, FP)
        .alu_imm(Alu::Add, R2, EVT.into())
        .mov_imm(R3, layout::SIZE.into())
        .mov_imm(R4, 0)
        .call(RINGBUF_OUTPUT);

    a.bind(allow);
    a.mov_imm(R0, 1).exit();
    a.finish()
}

/// The process id of the task in `r3` in each pid namespace it is in, into the pid block at
/// `fp + dst`: `leader = task->group_leader; pid = leader->thread_pid;` then `pid->level` and,
/// for each level up to it (at most [`layout::LEVELS`], unrolled), `pid->numbers[i].nr` and
/// `pid->numbers[i].ns->ns.inum`. Levels past `pid->level` are not read: `numbers` is only as
/// long as the task is deep. Uses `r9` for the `struct pid` pointer.
fn pid_numbers(a: &mut Asm, o: &TaskOffsets, dst: i16) {
    let done = a.label();
    read_kernel(a, TMP2, 8, R3, o.group_leader);
    a.load(Size::DW, R3, FP, TMP2);
    read_kernel(a, TMP2, 8, R3, o.thread_pid);
    a.load(Size::DW, R9, FP, TMP2);
    read_kernel(a, dst, 4, R9, o.pid_level);
    for i in 0..layout::LEVELS {
        let upid = o.pid_numbers + i as u32 * o.upid_size;
        let entry = dst + 8 + 8 * i;
        a.load(Size::W, R1, FP, dst)
            .jump_imm(Cond::Slt, R1, i.into(), done);
        read_kernel(a, entry, 4, R9, upid + o.upid_nr);
        read_kernel(a, TMP2, 8, R9, upid + o.upid_ns);
        a.load(Size::DW, R3, FP, TMP2);
        read_kernel(a, entry + 4, 4, R3, o.pidns_inum);
    }
    a.bind(done);
}

/// `bpf_probe_read_kernel(fp + dst, size, base + off)`.
fn read_kernel(a: &mut Asm, dst: i16, size: i32, base: super::asm::Reg, off: u32) {
    if base != R3 {
        a.mov_reg(R3, base);
    }
    a.alu_imm(Alu::Add, R3, off as i32)
        .mov_reg(R1, FP)
        .alu_imm(Alu::Add, R1, dst.into())
        .mov_imm(R2, size)
        .call(PROBE_READ_KERNEL);
}

/// One attempt the program reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteEvent {
    pub replaced: bool,
    pub rule: usize,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub cgroup_id: u64,
    pub netns: u32,
    pub comm: String,
    pub parent_comm: String,
    /// The writer's process id in each pid namespace it is in, and its parent's.
    pub pids: Pids,
    pub parent_pids: Pids,
    /// What the writer passed, as far as the program saw it (up to 31 bytes).
    pub new: Vec<u8>,
    /// `set_new_value`'s return when replaced.
    pub set_rc: i32,
}

/// A process id in each pid namespace the process is in, the initial one first, as
/// `(id, namespace inode)` (up to [`layout::LEVELS`] of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pids(pub Vec<(u32, u32)>);

impl Pids {
    /// The id in the pid namespace whose `/proc/PID/ns/pid` inode is `ns`, if it is in it.
    pub fn in_ns(&self, ns: u32) -> Option<u32> {
        self.0.iter().find(|(_, n)| *n == ns).map(|(id, _)| *id)
    }
}

impl WriteEvent {
    /// Decodes one ring buffer record; `None` if it is not one of ours.
    pub fn parse(b: &[u8]) -> Option<Self> {
        use layout::*;
        if b.len() < SIZE as usize {
            return None;
        }
        let u32_at = |at: i16| {
            let at = at as usize;
            u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
        };
        let cstr = |at: i16, len: usize| {
            let s = &b[at as usize..at as usize + len];
            s[..s.iter().position(|&c| c == 0).unwrap_or(len)].to_vec()
        };
        let new_len = u32_at(NEW_LEN) as i32;
        let mut new = cstr(NEW, VALUE_MAX);
        if new_len >= 0 {
            new.truncate(new_len as usize);
        }
        let pids = |block: i16| {
            let levels = (u32_at(block) as usize + 1).min(LEVELS as usize);
            Pids(
                (0..levels)
                    .map(|i| {
                        let entry = block + 8 + 8 * i as i16;
                        (u32_at(entry), u32_at(entry + 4))
                    })
                    .collect(),
            )
        };
        Some(Self {
            replaced: u32_at(VERDICT) == 1,
            rule: u32_at(RULE) as usize,
            pid: u32_at(TGID),
            tid: u32_at(TID),
            ppid: u32_at(PPID),
            uid: u32_at(UID),
            cgroup_id: u64::from(u32_at(CGROUP_ID)) | u64::from(u32_at(CGROUP_ID + 4)) << 32,
            netns: u32_at(NETNS),
            comm: String::from_utf8_lossy(&cstr(COMM, 16)).into_owned(),
            parent_comm: String::from_utf8_lossy(&cstr(PARENT_COMM, 16)).into_owned(),
            pids: pids(PIDS),
            parent_pids: pids(PARENT_PIDS),
            new,
            set_rc: u32_at(SET_RC) as i32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mode: Mode) -> Spec {
        Spec {
            rules: vec![
                Rule {
                    name: "net/ipv4/ip_forward".into(),
                    want: 1,
                    want_text: "1".into(),
                    mode,
                },
                Rule {
                    name: "net/ipv6/conf/all/forwarding".into(),
                    want: 1,
                    want_text: "1".into(),
                    mode,
                },
            ],
            netns: 4026531840,
            offsets: TaskOffsets {
                pid: 1,
                tgid: 2,
                comm: 3,
                real_parent: 4,
                nsproxy: 5,
                net_ns: 6,
                netns_inum: 7,
                group_leader: 8,
                thread_pid: 9,
                pid_level: 10,
                pid_numbers: 11,
                upid_size: 16,
                upid_nr: 0,
                upid_ns: 8,
                pidns_inum: 12,
            },
            writer_comm: None,
            fault: None,
        }
    }

    #[test]
    fn the_most_rules_with_the_longest_names_still_assemble() {
        let mut s = spec(Mode::Prevent);
        s.rules = (0..MAX_RULES)
            .map(|i| Rule {
                name: format!("{i:0>63}"),
                want: 1,
                want_text: "1".into(),
                mode: Mode::Prevent,
            })
            .collect();
        let insns = assemble(&s, 3).expect("every jump within range");
        assert!(insns.len() < 32_767, "{}", insns.len());
    }

    #[test]
    fn names_become_words_of_the_zero_padded_name() {
        let n = b"net/ipv4/ip_forward";
        assert_eq!(word(n, 0), u64::from_le_bytes(*b"net/ipv4"));
        assert_eq!(word(n, 16), u64::from_le_bytes(*b"ard\0\0\0\0\0"));
    }

    #[test]
    fn stays_small_and_within_the_stack() {
        let prevent = assemble(&spec(Mode::Prevent), 3).unwrap();
        let audit = assemble(&spec(Mode::Audit), 3).unwrap();
        // Most of it is the unrolled reads of who wrote, run only for writes that move a key.
        assert!(prevent.len() < 600, "{} instructions", prevent.len());
        assert!(audit.len() < prevent.len());
    }

    #[test]
    fn only_prevent_replaces_and_the_fault_drops_the_call() {
        let calls = |s: &Spec| {
            assemble(s, 3)
                .unwrap()
                .iter()
                .filter(|i| i.code == 0x85 && i.imm == SYSCTL_SET_NEW_VALUE)
                .count()
        };
        assert_eq!(calls(&spec(Mode::Prevent)), 1);
        assert_eq!(calls(&spec(Mode::Audit)), 0);
        let mut faulty = spec(Mode::Prevent);
        faulty.fault = Some(Fault::NoReplace);
        assert_eq!(calls(&faulty), 0);
    }

    #[test]
    fn replacement_is_the_value_padded_with_newlines() {
        let r = Rule {
            name: "x".into(),
            want: 10,
            want_text: "10".into(),
            mode: Mode::Prevent,
        };
        let repl = r.replacement();
        assert_eq!(&repl[..4], b"10\n\n");
        assert!(r.fits());
        let long = Rule {
            name: "n".repeat(64),
            ..r
        };
        assert!(!long.fits());
    }

    #[test]
    fn events_decode_from_the_layout() {
        let mut b = vec![0u8; layout::SIZE as usize];
        let put = |b: &mut Vec<u8>, at: i16, v: &[u8]| {
            b[at as usize..at as usize + v.len()].copy_from_slice(v)
        };
        put(&mut b, layout::VERDICT, &1u32.to_le_bytes());
        put(&mut b, layout::RULE, &1u32.to_le_bytes());
        put(&mut b, layout::TGID, &4242u32.to_le_bytes());
        put(&mut b, layout::PPID, &4240u32.to_le_bytes());
        put(&mut b, layout::CGROUP_ID, &0x1_0000_0002u64.to_le_bytes());
        put(&mut b, layout::NEW_LEN, &2i32.to_le_bytes());
        put(&mut b, layout::COMM, b"sysctl\0");
        put(&mut b, layout::NEW, b"0\n");
        put(&mut b, layout::PARENT_COMM, b"network\0");
        // In the initial pid namespace as 4242 and in a container's (inode 77) as 12.
        put(&mut b, layout::PIDS, &1u32.to_le_bytes());
        put(&mut b, layout::PIDS + 8, &4242u32.to_le_bytes());
        put(&mut b, layout::PIDS + 12, &1u32.to_le_bytes());
        put(&mut b, layout::PIDS + 16, &12u32.to_le_bytes());
        put(&mut b, layout::PIDS + 20, &77u32.to_le_bytes());
        let e = WriteEvent::parse(&b).unwrap();
        assert_eq!(e.parent_comm, "network");
        assert_eq!(e.pids.0, [(4242, 1), (12, 77)]);
        assert_eq!(
            (e.pids.in_ns(77), e.pids.in_ns(1), e.pids.in_ns(5)),
            (Some(12), Some(4242), None)
        );
        assert_eq!(e.parent_pids.0, [(0, 0)], "level 0: one entry");
        assert!(e.replaced);
        assert_eq!((e.rule, e.pid, e.ppid), (1, 4242, 4240));
        assert_eq!(e.cgroup_id, 0x1_0000_0002);
        assert_eq!(e.comm, "sysctl");
        assert_eq!(e.new, b"0\n");
        assert_eq!(WriteEvent::parse(&b[..10]), None);
    }
}
