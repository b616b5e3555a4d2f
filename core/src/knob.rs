//! Access to the kernel's knobs as the pure core sees it: a trait with a handle per guarded key,
//! and the errors that name the key. The real implementation is the binary's `sysctl::ProcSys`;
//! the loop's tests use a double.

use std::fmt;
use std::io;

use crate::key::SysctlKey;
use crate::value::Value;

/// What was being done when a sysctl access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
}

/// A failed sysctl access, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("{} {key}: {source}", match .op { Op::Read => "read", Op::Write => "write" })]
pub struct SysctlError {
    pub op: Op,
    pub key: SysctlKey,
    #[source]
    pub source: io::Error,
}

impl SysctlError {
    /// The key does not exist on this host (IPv6 disabled, interface not there, module not loaded).
    pub fn is_missing(&self) -> bool {
        self.source.kind() == io::ErrorKind::NotFound
    }

    /// The write was refused for lack of privilege: the capability it takes, to name it.
    /// `/proc/sys/net` answers EACCES or EPERM to a process without `CAP_NET_ADMIN` over the
    /// network namespace; other keys want root.
    pub fn missing_capability(&self) -> Option<&'static str> {
        let refused = self.op == Op::Write && self.source.kind() == io::ErrorKind::PermissionDenied;
        refused.then(|| {
            if self.key.to_string().starts_with("net.") {
                "CAP_NET_ADMIN"
            } else {
                "CAP_SYS_ADMIN"
            }
        })
    }

    /// Writing the key is refused: for want of a privilege, or on a read-only `/proc/sys`
    /// (EROFS). Not a passing failure: the daemon keeps reading through a read-only
    /// descriptor, and `check` warns that the key cannot be restored.
    pub fn write_refused(&self) -> bool {
        self.missing_capability().is_some()
            || self.source.kind() == io::ErrorKind::ReadOnlyFilesystem
    }

    /// The error as operators should read it: with the capability it lacks, if that is why.
    pub fn describe(&self) -> String {
        match self.missing_capability() {
            Some(cap) => format!("{self} (fwdguard lacks {cap}, which writing it needs)"),
            None => self.to_string(),
        }
    }
}

/// How a guard uses its key: a restoring guard writes it, an alerting one only reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
}

/// Access to the kernel's knobs, through a handle per guarded key.
pub trait Knobs {
    /// An open key.
    type Knob: fmt::Debug;
    fn open(&mut self, key: &SysctlKey, access: Access) -> Result<Self::Knob, SysctlError>;
    fn read(&mut self, knob: &mut Self::Knob) -> Result<Value, SysctlError>;
    fn write(&mut self, knob: &mut Self::Knob, value: &Value) -> Result<(), SysctlError>;
}

/// Reads a key once: open, read, close. For `check` and one-off reads.
pub fn read_once(knobs: &mut impl Knobs, key: &SysctlKey) -> Result<Value, SysctlError> {
    let mut knob = knobs.open(key, Access::Read)?;
    knobs.read(&mut knob)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(op: Op, key: &str, source: io::Error) -> SysctlError {
        SysctlError {
            op,
            key: SysctlKey::parse(key).expect("key"),
            source,
        }
    }

    #[test]
    fn a_write_is_refused_for_a_missing_privilege_or_a_read_only_proc_sys() {
        const EACCES: i32 = 13;
        const EPERM: i32 = 1;
        const EROFS: i32 = 30;
        const EINVAL: i32 = 22;
        let key = "net.ipv4.conf.all.forwarding";
        let refused =
            |op, errno| error(op, key, io::Error::from_raw_os_error(errno)).write_refused();
        assert!(refused(Op::Write, EACCES));
        assert!(refused(Op::Write, EPERM));
        assert!(refused(Op::Write, EROFS));
        assert!(!refused(Op::Write, EINVAL), "a bad value is no refusal");
        assert!(!refused(Op::Read, EACCES), "reading is not writing");
        let e = error(
            Op::Write,
            "kernel.panic",
            io::Error::from_raw_os_error(EPERM),
        );
        assert_eq!(e.missing_capability(), Some("CAP_SYS_ADMIN"));
        assert!(e.write_refused());
    }
}
