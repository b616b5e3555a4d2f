//! Reading and writing sysctl values under `/proc/sys`, behind a trait so the daemon's logic can
//! be tested without root.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};

use crate::key::SysctlKey;
pub use crate::value::Value;

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
}

/// Access to the kernel's knobs.
pub trait Knobs {
    fn read(&mut self, key: &SysctlKey) -> Result<Value, SysctlError>;
    fn write(&mut self, key: &SysctlKey, value: &Value) -> Result<(), SysctlError>;
}

/// The real knobs, in the network namespace of the calling thread.
#[derive(Debug, Default)]
pub struct ProcSys {
    buf: String,
}

impl Knobs for ProcSys {
    fn read(&mut self, key: &SysctlKey) -> Result<Value, SysctlError> {
        self.buf.clear();
        OpenOptions::new()
            .read(true)
            .open(key.proc_path())
            .and_then(|mut f| f.read_to_string(&mut self.buf))
            .map_err(|source| SysctlError {
                op: Op::Read,
                key: key.clone(),
                source,
            })?;
        Ok(Value::new(&self.buf))
    }

    fn write(&mut self, key: &SysctlKey, value: &Value) -> Result<(), SysctlError> {
        // One write() of the whole value: proc handlers parse what a single write hands them.
        let line = format!("{value}\n");
        OpenOptions::new()
            .write(true)
            .open(key.proc_path())
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|source| SysctlError {
                op: Op::Write,
                key: key.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key_and_the_cause() {
        let key = SysctlKey::parse("net.ipv4.conf.nosuchif0.forwarding").expect("valid key");
        let err = ProcSys::default().read(&key).unwrap_err();
        assert!(err.is_missing());
        assert_eq!(
            err.to_string(),
            "read net.ipv4.conf.nosuchif0.forwarding: No such file or directory (os error 2)"
        );
    }
}
