//! Reading and writing sysctl values under `/proc/sys`, behind a trait so the daemon's logic can
//! be tested without root.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};

use crate::key::SysctlKey;

/// A sysctl value as `sysctl(8)` shows it: fields separated by single spaces.
///
/// `/proc/sys` separates multi-field values with tabs and ends them with a newline; comparing
/// the normalized form makes `"32768 60999"` in the config equal to what the kernel prints.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Value(String);

impl Value {
    pub fn new(raw: &str) -> Self {
        Self(raw.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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
    fn values_compare_as_sysctl_prints_them() {
        assert_eq!(Value::new("1\n"), Value::new("1"));
        assert_eq!(Value::new("32768\t60999\n"), Value::new("32768 60999"));
        assert_ne!(Value::new("0\n"), Value::new("1"));
    }

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
