//! The alerts fwdguard raises in Alertmanager: their names, severities, and what a report can
//! do to one. Each report kind's effects are in its row of the report table
//! ([`crate::report::Event::info`]); the `alertmanager` payload carries them out.

use std::time::Duration;

/// Alerts for events that are over when reported (a restored drop, lost kernel events) end by
/// themselves after this long, so that they reach receivers and then resolve.
pub const EVENT_LASTS: Duration = Duration::from_secs(10 * 60);
/// The test alert of `fwdguard alert test`.
pub const TEST_LASTS: Duration = Duration::from_secs(5 * 60);

pub const KEY_WRONG: &str = "FwdguardKeyWrong";
pub const KEY_RESTORED: &str = "FwdguardKeyRestored";
pub const KEY_FLAPPING: &str = "FwdguardKeyFlapping";
pub const KEY_UNAVAILABLE: &str = "FwdguardKeyUnavailable";
pub const RELOAD_FAILED: &str = "FwdguardReloadFailed";
pub const EVENTS_LOST: &str = "FwdguardEventsLost";
pub const OUTPUT_LOST: &str = "FwdguardOutputLost";
pub const PERSISTED_CONFLICT: &str = "FwdguardPersistedConflict";
pub const HAZARD: &str = "FwdguardHazard";
pub const WRITE_REPLACED: &str = "FwdguardWriteReplaced";
pub const PREVENT_UNAVAILABLE: &str = "FwdguardPreventUnavailable";
pub const TEST: &str = "FwdguardTest";

/// The `severity` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

impl Severity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// What a notice does to the alerts; each kind's are in its row of [`Event::info`].
///
/// [`Event::info`]: crate::report::Event::info
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Firing until resolved.
    Fire(&'static str, Severity),
    /// Resolves the alert of that name for the same key, if it fires.
    Resolve(&'static str),
    /// Fires now and ends by itself after the given time.
    FireFor(&'static str, Severity, Duration),
}
