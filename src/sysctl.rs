//! The real knobs: sysctl values under `/proc/sys`, one descriptor kept per guarded key,
//! pread/pwrite at offset 0. The trait they implement is [`crate::knob::Knobs`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;

use crate::key::SysctlKey;
use crate::knob::{Access, Knobs, Op, SysctlError};
use crate::value::Value;

/// The real knobs, in the network namespace of the calling thread.
#[derive(Debug, Default)]
pub struct ProcSys {
    buf: Vec<u8>,
}

/// A `/proc/sys` file kept open. Opening is the most expensive step of a restore (4-7 µs of
/// path lookup, docs/kernel-and-systemd-facts.md#kept-descriptors), so a guard opens its key
/// once and then reads and writes at offset 0.
#[derive(Debug)]
pub struct ProcKnob {
    key: SysctlKey,
    file: File,
}

impl ProcKnob {
    fn error(&self, op: Op, source: io::Error) -> SysctlError {
        SysctlError {
            op,
            key: self.key.clone(),
            source,
        }
    }
}

impl Knobs for ProcSys {
    type Knob = ProcKnob;

    fn open(&mut self, key: &SysctlKey, access: Access) -> Result<ProcKnob, SysctlError> {
        OpenOptions::new()
            .read(true)
            .write(access == Access::ReadWrite)
            .open(key.proc_path())
            .map(|file| ProcKnob {
                key: key.clone(),
                file,
            })
            .map_err(|source| SysctlError {
                // Opening for writing is refused the way the write itself would be.
                op: match access {
                    Access::Read => Op::Read,
                    Access::ReadWrite => Op::Write,
                },
                key: key.clone(),
                source,
            })
    }

    fn read(&mut self, knob: &mut ProcKnob) -> Result<Value, SysctlError> {
        // One pread at offset 0 returns the whole value; a buffer that comes back full may
        // have cut it short, so grow and read again.
        if self.buf.len() < 64 {
            self.buf.resize(64, 0);
        }
        loop {
            let n = knob
                .file
                .read_at(&mut self.buf, 0)
                .map_err(|e| knob.error(Op::Read, e))?;
            if n < self.buf.len() {
                let text = String::from_utf8_lossy(&self.buf[..n]);
                return Ok(Value::new(&text));
            }
            let len = self.buf.len() * 2;
            self.buf.resize(len, 0);
        }
    }

    fn write(&mut self, knob: &mut ProcKnob, value: &Value) -> Result<(), SysctlError> {
        // One write of the whole value, at offset 0: proc handlers parse what a single write
        // hands them, and with kernel.sysctl_writes_strict=1 (the default) a write at a later
        // offset is ignored silently.
        let mut line = Vec::with_capacity(value.as_str().len() + 1);
        line.extend_from_slice(value.as_str().as_bytes());
        line.push(b'\n');
        let n = knob
            .file
            .write_at(&line, 0)
            .map_err(|e| knob.error(Op::Write, e))?;
        if n != line.len() {
            return Err(knob.error(
                Op::Write,
                io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("the kernel took {n} of {} bytes", line.len()),
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knob::read_once;

    #[test]
    fn errors_name_the_key_and_the_cause() {
        let key = SysctlKey::parse("net.ipv4.conf.nosuchif0.forwarding").expect("valid key");
        let err = read_once(&mut ProcSys::default(), &key).unwrap_err();
        assert!(err.is_missing());
        assert_eq!(
            err.to_string(),
            "read net.ipv4.conf.nosuchif0.forwarding: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn a_kept_descriptor_reads_the_current_value_every_time() {
        // Readable without privileges; proves pread at offset 0 re-reads rather than hitting EOF.
        let key = SysctlKey::parse("net.ipv4.conf.all.forwarding").expect("key");
        let mut knobs = ProcSys::default();
        let mut knob = knobs.open(&key, Access::Read).expect("open");
        let first = knobs.read(&mut knob).expect("read");
        let second = knobs.read(&mut knob).expect("read again");
        assert_eq!(first, second);
        assert!(!first.as_str().is_empty());
    }

    #[test]
    fn a_refused_write_names_the_capability() {
        let key = SysctlKey::parse("net.ipv4.conf.all.forwarding").expect("key");
        let e = SysctlError {
            op: Op::Write,
            key,
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(
            e.describe(),
            "write net.ipv4.conf.all.forwarding: Permission denied (os error 13) (fwdguard lacks CAP_NET_ADMIN, which writing it needs)"
        );
    }
}
