//! The guard model: one guarded key, what to do when it drifts, and when drops count as
//! flapping.

use std::time::Duration;

use serde::Deserialize;

use crate::key::SysctlKey;
use crate::value::Value;

/// What to do when a guarded key drifts from its wanted value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Write the wanted value back, verify it, then report.
    #[default]
    Restore,
    /// Report only; report again when the value comes back.
    Alert,
    /// Keep the value from changing at all: a BPF cgroup/sysctl hook replaces a write through
    /// `/proc/sys` that would move the key with the wanted value, and names the writer. Where
    /// the hook cannot be used, the same as `restore` (said once). `restore` stays the net
    /// for changes the hook cannot see (netlink `RTM_SETLINK`).
    Prevent,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Restore => "restore",
            Action::Alert => "alert",
            Action::Prevent => "prevent",
        }
    }

    /// Whether a drop that happens anyway is written back (`prevent` falls back to restoring).
    pub fn restores(self) -> bool {
        matches!(self, Action::Restore | Action::Prevent)
    }
}

/// One guarded key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub key: SysctlKey,
    pub want: Value,
    pub action: Action,
}

/// When repeated drops count as flapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flapping {
    /// This many drops of one key ...
    pub threshold: u32,
    /// ... within this window.
    pub window: Duration,
}
