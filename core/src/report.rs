//! What fwdguard tells operators: one `Report` per event, each type with a stable journal
//! `MESSAGE_ID` (documented in `systemd/fwdguard.catalog`), a syslog priority and structured
//! fields. Sinks (the journal, stderr, webhooks and the metrics) carry reports out.
//!
//! What is fixed for a kind of report (name, `MESSAGE_ID`, priority, ...) is its row of
//! [`Event::info`]; what one report says beyond its sentence is [`Report::details`], from which
//! the journal fields and the webhook payloads are made.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::alerting::Effect;
use crate::guard::Action;
pub use crate::human::human;
use crate::key::SysctlKey;
pub use crate::observation::{Cause, Trigger, Writer};
use crate::value::Value;

/// `1 guarded key`, `2 guarded keys`.
pub fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// syslog priorities, as the journal's `PRIORITY=` field takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Crit = 2,
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
}

/// One event worth telling an operator about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A key had the wrong value; fwdguard wrote the wanted one back and verified it.
    DriftRestored {
        key: SysctlKey,
        want: Value,
        old: Value,
        trigger: Trigger,
        /// From the moment fwdguard saw the wrong value to the verified restore.
        wrong_for: Duration,
        /// Writes it took, more than 1 after failures.
        attempts: u32,
        cause: Option<Cause>,
    },
    /// A key has the wrong value and the policy is `alert`: nothing was changed.
    DriftAlerted {
        key: SysctlKey,
        want: Value,
        value: Value,
        trigger: Trigger,
        cause: Option<Cause>,
    },
    /// Writing the wanted value failed or did not stick; fwdguard retries.
    RestoreFailed {
        key: SysctlKey,
        want: Value,
        value: Value,
        error: String,
        attempt: u32,
        retry_in: Duration,
        cause: Option<Cause>,
    },
    /// A drifted key has its wanted value again without fwdguard writing it.
    Recovered {
        key: SysctlKey,
        want: Value,
        old: Value,
        trigger: Trigger,
        wrong_for: Duration,
        cause: Option<Cause>,
    },
    /// A key is knocked down again and again. Single drops are not reported until it calms.
    Flapping {
        key: SysctlKey,
        action: Action,
        drops: u32,
        window: Duration,
    },
    /// A flapping key has been quiet for a whole window.
    FlappingEnded {
        key: SysctlKey,
        action: Action,
        /// Drops, and writes the hook replaced (`prevent`).
        drops: u64,
        lasted: Duration,
    },
    /// A guarded key cannot be read: it does not exist on this host, or access failed.
    KeyUnavailable { key: SysctlKey, error: String },
    /// A key that could not be read can be read again.
    KeyAvailable { key: SysctlKey, value: Value },
    /// A reload (SIGHUP) took effect.
    ConfigReloaded { origin: String, guards: usize },
    /// A reload failed; the previous configuration stays in force.
    ReloadFailed { origin: String, error: String },
    /// Kernel events were lost (netlink ENOBUFS); everything was re-read.
    EventsLost { times: u64 },
    /// An output (the journal, stderr, the service manager) was not reading, and messages to it
    /// were dropped rather than stall the guard. Sent once it reads again.
    OutputLost { output: String, lost: u64 },
    /// The BPF hook replaced a write that would have moved a `prevent` key: it never moved.
    WriteReplaced {
        key: SysctlKey,
        want: Value,
        writer: Box<Writer>,
    },
    /// The BPF hook saw a write that moves a `restore`/`alert` key (or a `prevent` key whose
    /// replacement is not in force): who did it. Drift reports follow as usual.
    WriteSeen {
        key: SysctlKey,
        want: Value,
        action: Action,
        writer: Box<Writer>,
    },
    /// The BPF hook is attached: `prevent` is in force and writers are named.
    HookAttached {
        cgroup: String,
        netns: u32,
        prevent: usize,
        audit: usize,
    },
    /// `prevent` cannot be in force: those keys are restored instead (said once per start or
    /// reload).
    PreventUnavailable {
        keys: Vec<SysctlKey>,
        error: String,
        /// Whether writers are still named (an audit-only hook is attached).
        writers_named: bool,
    },
    /// A persisted sysctl setting will set a guarded key to another value at the next boot or
    /// network restart (found at start, or when the sysctl files changed).
    PersistedConflict(PersistedConflict),
    /// ... and no longer does.
    PersistedConflictGone(PersistedConflict),
    /// Something else that turns forwarding off, found at start (as `fwdguard doctor` does).
    Hazard {
        source: String,
        hazard: String,
        fix: String,
    },
}

/// A persisted value of a guarded key that differs from the guard's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedConflict {
    pub key: SysctlKey,
    pub want: Value,
    /// The value the files set.
    pub value: String,
    /// `FILE:LINE` of the entry that wins.
    pub source: String,
    /// The appliers for which it wins, by name.
    pub appliers: Vec<String>,
}

/// Journal `MESSAGE_ID`s. Stable forever: operators filter and alert on them.
pub mod message_id {
    pub const DRIFT_RESTORED: &str = "3755efd96d564517beeea6434c76615e";
    pub const DRIFT_ALERTED: &str = "81f67f1d96034c98864e53ac0e6ec3b4";
    pub const RESTORE_FAILED: &str = "181fbfbf5ef142568baae804fc06982c";
    pub const RECOVERED: &str = "9db7f98ff7474ac0a225549bdcff5679";
    pub const FLAPPING: &str = "103cd846be554c6bb104909fe1ad86fe";
    pub const FLAPPING_ENDED: &str = "1359bf5245354eac8dd03e36a56906a5";
    pub const KEY_UNAVAILABLE: &str = "689728ebf43f4973ba72fc21bc4c4767";
    pub const KEY_AVAILABLE: &str = "615a084a5b4b41609e54b7fa7290266d";
    pub const CONFIG_RELOADED: &str = "9a3d39c1f4c446e2be6c82810b9d7fc4";
    pub const RELOAD_FAILED: &str = "25a836a1ee094db79700cc6e2efb685f";
    pub const EVENTS_LOST: &str = "8ee66b0c20914d16a6016608e72c593b";
    pub const OUTPUT_LOST: &str = "d5c2a0e4b7f14f7c9a1e3b6d8c0f2a47";
    pub const WRITE_REPLACED: &str = "7d855130682e4041b51bd22718f82ea0";
    pub const WRITE_SEEN: &str = "4ec892bae76848409d67d12102c644f8";
    pub const PREVENT_UNAVAILABLE: &str = "b41d58243f084c4f94542af799ec9c39";
    pub const HOOK_ATTACHED: &str = "40e96adaf8f746de9431ecd19b24edbe";
    pub const PERSISTED_CONFLICT: &str = "0492fcc418a84ddeaa94cef6744cd12b";
    pub const PERSISTED_CONFLICT_GONE: &str = "f0a73969dfcc487bbe59d8dfa26a39d7";
    pub const HAZARD: &str = "15fbb4fc32bd4dfa83b78159a30d4966";
}

/// A kind of report, by the name `events = [...]` uses. What a kind is to each output is its
/// row of [`Event::info`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    DriftRestored,
    DriftAlerted,
    RestoreFailed,
    Recovered,
    Flapping,
    FlappingEnded,
    KeyUnavailable,
    KeyAvailable,
    ConfigReloaded,
    ReloadFailed,
    EventsLost,
    OutputLost,
    PersistedConflict,
    PersistedConflictGone,
    Hazard,
    WriteReplaced,
    WriteSeen,
    HookAttached,
    PreventUnavailable,
    /// `fwdguard alert test`; not selectable in `events`, always delivered. Stays last.
    #[serde(skip)]
    Test,
}

/// What every report of one kind shares: a row of [`Event::info`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// As `events = [...]`, the payloads' `event` and the logs name the kind.
    pub name: &'static str,
    /// The journal's `MESSAGE_ID`, with an entry in `systemd/fwdguard.catalog`. `None` only
    /// for the test alert, which is no report.
    pub message_id: Option<&'static str>,
    pub priority: Priority,
    /// Whether a webhook without `events` gets it: everything at warning or above, plus the
    /// reports that say a problem is over.
    pub default: bool,
    /// What it does to the alerts of an `alertmanager` endpoint.
    pub alerts: &'static [Effect],
}

impl Event {
    /// Every kind, in the order of the declaration (checked when compiling).
    pub const ALL: [Event; 20] = [
        Event::DriftRestored,
        Event::DriftAlerted,
        Event::RestoreFailed,
        Event::Recovered,
        Event::Flapping,
        Event::FlappingEnded,
        Event::KeyUnavailable,
        Event::KeyAvailable,
        Event::ConfigReloaded,
        Event::ReloadFailed,
        Event::EventsLost,
        Event::OutputLost,
        Event::PersistedConflict,
        Event::PersistedConflictGone,
        Event::Hazard,
        Event::WriteReplaced,
        Event::WriteSeen,
        Event::HookAttached,
        Event::PreventUnavailable,
        Event::Test,
    ];

    /// The table of kinds: one row each.
    pub fn info(self) -> KindInfo {
        use crate::alerting::{self as am, Severity};
        use Effect::{Fire, FireFor, Resolve};
        match self {
            Event::DriftRestored => KindInfo {
                name: "drift-restored",
                message_id: Some(message_id::DRIFT_RESTORED),
                priority: Priority::Warning,
                default: true,
                alerts: &[
                    Resolve(am::KEY_WRONG),
                    FireFor(am::KEY_RESTORED, Severity::Warning, am::EVENT_LASTS),
                ],
            },
            Event::DriftAlerted => KindInfo {
                name: "drift-alerted",
                message_id: Some(message_id::DRIFT_ALERTED),
                // Forwarding is off and stays off until someone acts.
                priority: Priority::Err,
                default: true,
                alerts: &[Fire(am::KEY_WRONG, Severity::Critical)],
            },
            Event::RestoreFailed => KindInfo {
                name: "restore-failed",
                message_id: Some(message_id::RESTORE_FAILED),
                priority: Priority::Crit,
                default: true,
                alerts: &[Fire(am::KEY_WRONG, Severity::Critical)],
            },
            Event::Recovered => KindInfo {
                name: "recovered",
                message_id: Some(message_id::RECOVERED),
                priority: Priority::Notice,
                default: true,
                alerts: &[Resolve(am::KEY_WRONG)],
            },
            Event::Flapping => KindInfo {
                name: "flapping",
                message_id: Some(message_id::FLAPPING),
                priority: Priority::Err,
                default: true,
                // Critical under `alert`: see `alertmanager::effects`.
                alerts: &[Fire(am::KEY_FLAPPING, Severity::Warning)],
            },
            Event::FlappingEnded => KindInfo {
                name: "flapping-ended",
                message_id: Some(message_id::FLAPPING_ENDED),
                priority: Priority::Notice,
                default: true,
                alerts: &[Resolve(am::KEY_FLAPPING)],
            },
            Event::KeyUnavailable => KindInfo {
                name: "key-unavailable",
                message_id: Some(message_id::KEY_UNAVAILABLE),
                priority: Priority::Warning,
                default: true,
                alerts: &[Fire(am::KEY_UNAVAILABLE, Severity::Warning)],
            },
            Event::KeyAvailable => KindInfo {
                name: "key-available",
                message_id: Some(message_id::KEY_AVAILABLE),
                priority: Priority::Notice,
                default: false,
                alerts: &[Resolve(am::KEY_UNAVAILABLE)],
            },
            Event::ConfigReloaded => KindInfo {
                name: "config-reloaded",
                message_id: Some(message_id::CONFIG_RELOADED),
                priority: Priority::Info,
                default: false,
                alerts: &[Resolve(am::RELOAD_FAILED)],
            },
            Event::ReloadFailed => KindInfo {
                name: "reload-failed",
                message_id: Some(message_id::RELOAD_FAILED),
                priority: Priority::Err,
                default: true,
                alerts: &[Fire(am::RELOAD_FAILED, Severity::Warning)],
            },
            Event::EventsLost => KindInfo {
                name: "events-lost",
                message_id: Some(message_id::EVENTS_LOST),
                priority: Priority::Warning,
                default: true,
                alerts: &[FireFor(am::EVENTS_LOST, Severity::Warning, am::EVENT_LASTS)],
            },
            Event::OutputLost => KindInfo {
                name: "output-lost",
                message_id: Some(message_id::OUTPUT_LOST),
                priority: Priority::Warning,
                default: true,
                alerts: &[FireFor(am::OUTPUT_LOST, Severity::Warning, am::EVENT_LASTS)],
            },
            Event::PersistedConflict => KindInfo {
                name: "persisted-conflict",
                message_id: Some(message_id::PERSISTED_CONFLICT),
                priority: Priority::Warning,
                default: true,
                alerts: &[Fire(am::PERSISTED_CONFLICT, Severity::Warning)],
            },
            Event::PersistedConflictGone => KindInfo {
                name: "persisted-conflict-gone",
                message_id: Some(message_id::PERSISTED_CONFLICT_GONE),
                priority: Priority::Notice,
                default: true,
                alerts: &[Resolve(am::PERSISTED_CONFLICT)],
            },
            Event::Hazard => KindInfo {
                name: "hazard",
                message_id: Some(message_id::HAZARD),
                priority: Priority::Warning,
                default: true,
                alerts: &[FireFor(am::HAZARD, Severity::Warning, am::EVENT_LASTS)],
            },
            Event::WriteReplaced => KindInfo {
                name: "write-replaced",
                message_id: Some(message_id::WRITE_REPLACED),
                priority: Priority::Warning,
                default: true,
                alerts: &[FireFor(
                    am::WRITE_REPLACED,
                    Severity::Warning,
                    am::EVENT_LASTS,
                )],
            },
            Event::WriteSeen => KindInfo {
                name: "write-seen",
                message_id: Some(message_id::WRITE_SEEN),
                priority: Priority::Warning,
                default: true,
                // The drift reports that follow a seen write carry the alert.
                alerts: &[],
            },
            Event::HookAttached => KindInfo {
                name: "hook-attached",
                message_id: Some(message_id::HOOK_ATTACHED),
                priority: Priority::Info,
                default: false,
                alerts: &[],
            },
            Event::PreventUnavailable => KindInfo {
                name: "prevent-unavailable",
                message_id: Some(message_id::PREVENT_UNAVAILABLE),
                priority: Priority::Warning,
                default: true,
                alerts: &[FireFor(
                    am::PREVENT_UNAVAILABLE,
                    Severity::Warning,
                    am::EVENT_LASTS,
                )],
            },
            Event::Test => KindInfo {
                name: "test",
                message_id: None,
                priority: Priority::Info,
                default: false,
                alerts: &[FireFor(am::TEST, Severity::Info, am::TEST_LASTS)],
            },
        }
    }

    /// What a webhook gets without `events`.
    pub fn defaults() -> Vec<Event> {
        Event::ALL
            .into_iter()
            .filter(|e| e.info().default)
            .collect()
    }

    pub fn of(report: &Report) -> Event {
        match report {
            Report::DriftRestored { .. } => Event::DriftRestored,
            Report::DriftAlerted { .. } => Event::DriftAlerted,
            Report::RestoreFailed { .. } => Event::RestoreFailed,
            Report::Recovered { .. } => Event::Recovered,
            Report::Flapping { .. } => Event::Flapping,
            Report::FlappingEnded { .. } => Event::FlappingEnded,
            Report::KeyUnavailable { .. } => Event::KeyUnavailable,
            Report::KeyAvailable { .. } => Event::KeyAvailable,
            Report::ConfigReloaded { .. } => Event::ConfigReloaded,
            Report::ReloadFailed { .. } => Event::ReloadFailed,
            Report::EventsLost { .. } => Event::EventsLost,
            Report::OutputLost { .. } => Event::OutputLost,
            Report::PersistedConflict(_) => Event::PersistedConflict,
            Report::PersistedConflictGone(_) => Event::PersistedConflictGone,
            Report::Hazard { .. } => Event::Hazard,
            Report::WriteReplaced { .. } => Event::WriteReplaced,
            Report::WriteSeen { .. } => Event::WriteSeen,
            Report::HookAttached { .. } => Event::HookAttached,
            Report::PreventUnavailable { .. } => Event::PreventUnavailable,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.info().name
    }
}

// `Event::ALL` lists every kind once, in order: a kind added to `Event` and not to `ALL` stops
// the build here.
const _: () = {
    assert!(Event::ALL.len() == Event::Test as usize + 1);
    let mut i = 0;
    while i < Event::ALL.len() {
        assert!(Event::ALL[i] as usize == i);
        i += 1;
    }
};

impl Report {
    pub fn message_id(&self) -> &'static str {
        match Event::of(self).info().message_id {
            Some(id) => id,
            None => unreachable!("only the test alert has no MESSAGE_ID, and it is no report"),
        }
    }

    pub fn priority(&self) -> Priority {
        Event::of(self).info().priority
    }

    /// The key this report is about, if any.
    pub fn key(&self) -> Option<&SysctlKey> {
        match self {
            Report::DriftRestored { key, .. }
            | Report::DriftAlerted { key, .. }
            | Report::RestoreFailed { key, .. }
            | Report::Recovered { key, .. }
            | Report::Flapping { key, .. }
            | Report::FlappingEnded { key, .. }
            | Report::KeyUnavailable { key, .. }
            | Report::KeyAvailable { key, .. }
            | Report::WriteReplaced { key, .. }
            | Report::WriteSeen { key, .. } => Some(key),
            Report::PersistedConflict(c) | Report::PersistedConflictGone(c) => Some(&c.key),
            Report::ConfigReloaded { .. }
            | Report::ReloadFailed { .. }
            | Report::EventsLost { .. }
            | Report::OutputLost { .. }
            | Report::HookAttached { .. }
            | Report::PreventUnavailable { .. }
            | Report::Hazard { .. } => None,
        }
    }

    /// Structured fields beyond MESSAGE, PRIORITY and MESSAGE_ID, named as the journal shows them.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let details = self.details().into_iter();
        details
            .filter_map(|d| Some((d.journal?, d.fact.journal_value())))
            .collect()
    }

    /// What the report says beyond its sentence, in the journal's order: what each detail
    /// means (the webhook payloads place it by that) and the `FWDGUARD_*` field that carries it.
    pub fn details(&self) -> Vec<Detail> {
        let mut d = Vec::new();
        if let Some(key) = self.key() {
            d.push(field("FWDGUARD_KEY", Fact::Key(key.to_string())));
        }
        match self {
            Report::DriftRestored {
                want,
                old,
                trigger,
                wrong_for,
                attempts,
                ..
            } => d.extend([
                field("FWDGUARD_OLD", Fact::Observed(old.to_string())),
                journal_only("FWDGUARD_NEW", want),
                field("FWDGUARD_WANT", Fact::Wanted(want.to_string())),
                field("FWDGUARD_ACTION", Fact::Action(Action::Restore.as_str())),
                field("FWDGUARD_TRIGGER", Fact::Trigger(trigger.as_str())),
                field("FWDGUARD_WRONG_USEC", Fact::WrongFor(*wrong_for)),
                field("FWDGUARD_ATTEMPTS", Fact::Attempts(*attempts)),
            ]),
            Report::DriftAlerted {
                want,
                value,
                trigger,
                ..
            } => d.extend([
                field("FWDGUARD_NEW", Fact::Observed(value.to_string())),
                field("FWDGUARD_WANT", Fact::Wanted(want.to_string())),
                field("FWDGUARD_ACTION", Fact::Action(Action::Alert.as_str())),
                field("FWDGUARD_TRIGGER", Fact::Trigger(trigger.as_str())),
            ]),
            Report::RestoreFailed {
                want,
                value,
                error,
                attempt,
                retry_in,
                ..
            } => d.extend([
                field("FWDGUARD_OLD", Fact::Observed(value.to_string())),
                field("FWDGUARD_WANT", Fact::Wanted(want.to_string())),
                field("FWDGUARD_ACTION", Fact::Action(Action::Restore.as_str())),
                field("FWDGUARD_ERROR", Fact::Error(error.clone())),
                field("FWDGUARD_ATTEMPTS", Fact::Attempts(*attempt)),
                journal_only("FWDGUARD_RETRY_USEC", retry_in.as_micros()),
            ]),
            Report::Recovered {
                want,
                old,
                trigger,
                wrong_for,
                ..
            } => d.extend([
                field("FWDGUARD_OLD", Fact::Observed(old.to_string())),
                journal_only("FWDGUARD_NEW", want),
                field("FWDGUARD_WANT", Fact::Wanted(want.to_string())),
                field("FWDGUARD_TRIGGER", Fact::Trigger(trigger.as_str())),
                field("FWDGUARD_WRONG_USEC", Fact::WrongFor(*wrong_for)),
            ]),
            Report::Flapping {
                action,
                drops,
                window,
                ..
            } => d.extend([
                field("FWDGUARD_ACTION", Fact::Action(action.as_str())),
                field("FWDGUARD_COUNT", Fact::Count(u64::from(*drops))),
                journal_only("FWDGUARD_WINDOW_USEC", window.as_micros()),
            ]),
            Report::FlappingEnded {
                action,
                drops,
                lasted,
                ..
            } => d.extend([
                field("FWDGUARD_ACTION", Fact::Action(action.as_str())),
                field("FWDGUARD_COUNT", Fact::Count(*drops)),
                journal_only("FWDGUARD_LASTED_USEC", lasted.as_micros()),
            ]),
            Report::KeyUnavailable { error, .. } => {
                d.push(field("FWDGUARD_ERROR", Fact::Error(error.clone())));
            }
            Report::KeyAvailable { value, .. } => {
                d.push(field("FWDGUARD_NEW", Fact::Observed(value.to_string())));
            }
            Report::ConfigReloaded { origin, guards } => d.extend([
                journal_only("FWDGUARD_CONFIG", origin),
                field("FWDGUARD_COUNT", Fact::Count(*guards as u64)),
            ]),
            Report::ReloadFailed { origin, error } => d.extend([
                journal_only("FWDGUARD_CONFIG", origin),
                field("FWDGUARD_ERROR", Fact::Error(error.clone())),
            ]),
            Report::EventsLost { times } => d.push(field("FWDGUARD_COUNT", Fact::Count(*times))),
            Report::OutputLost { output, lost } => d.extend([
                journal_only("FWDGUARD_OUTPUT", output),
                field("FWDGUARD_COUNT", Fact::Count(*lost)),
            ]),
            Report::WriteReplaced { want, writer, .. } => {
                d.extend([
                    field("FWDGUARD_WANT", Fact::Wanted(want.to_string())),
                    field("FWDGUARD_ACTION", Fact::Action(Action::Prevent.as_str())),
                    webhook_only(Fact::Cause(writer.to_string())),
                ]);
                writer_details(writer, &mut d);
            }
            Report::WriteSeen {
                want,
                action,
                writer,
                ..
            } => {
                d.extend([
                    field("FWDGUARD_WANT", Fact::Wanted(want.to_string())),
                    field("FWDGUARD_ACTION", Fact::Action(action.as_str())),
                    webhook_only(Fact::Cause(writer.to_string())),
                ]);
                writer_details(writer, &mut d);
            }
            Report::HookAttached {
                cgroup,
                netns,
                prevent,
                audit,
            } => d.extend([
                journal_only("FWDGUARD_CGROUP", cgroup),
                journal_only("FWDGUARD_NETNS", netns),
                field("FWDGUARD_COUNT", Fact::Count((prevent + audit) as u64)),
            ]),
            Report::PreventUnavailable { keys, error, .. } => {
                let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
                d.extend([
                    // Every key, in the journal only: the payloads' `key` stays empty.
                    journal_only("FWDGUARD_KEY", keys.join(" ")),
                    field("FWDGUARD_ERROR", Fact::Error(error.clone())),
                ]);
            }
            Report::PersistedConflict(c) | Report::PersistedConflictGone(c) => {
                let appliers = c.appliers.join(", ");
                d.extend([
                    field("FWDGUARD_PERSISTED", Fact::Observed(c.value.clone())),
                    field("FWDGUARD_WANT", Fact::Wanted(c.want.to_string())),
                    journal_only("FWDGUARD_SOURCE", &c.source),
                    journal_only("FWDGUARD_APPLIERS", &appliers),
                    webhook_only(Fact::Cause(format!("{} (for {appliers})", c.source))),
                ]);
            }
            Report::Hazard {
                source,
                hazard,
                fix,
            } => d.extend([
                journal_only("FWDGUARD_SOURCE", source),
                field("FWDGUARD_HAZARD", Fact::Error(hazard.clone())),
                journal_only("FWDGUARD_FIX", fix),
            ]),
        }
        if let Some(cause) = self.cause() {
            d.push(field("FWDGUARD_CAUSE", Fact::Cause(cause.to_string())));
            match cause {
                Cause::ServiceJob { unit, .. } => d.push(journal_only("FWDGUARD_UNIT", unit)),
                Cause::Writer(w) => writer_details(w, &mut d),
            }
        }
        d
    }

    /// Why the key changed, when a source could tell.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            Report::DriftRestored { cause, .. }
            | Report::DriftAlerted { cause, .. }
            | Report::RestoreFailed { cause, .. }
            | Report::Recovered { cause, .. } => cause.as_ref(),
            _ => None,
        }
    }
}

/// What one detail of a report means: the webhook payloads place it by this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    Key(String),
    /// The value the guard wants.
    Wanted(String),
    /// The value seen instead, or the value now of a key that is back.
    Observed(String),
    Action(&'static str),
    /// How the change was seen.
    Trigger(&'static str),
    /// How long the key had the wrong value.
    WrongFor(Duration),
    Attempts(u32),
    Count(u64),
    Error(String),
    /// Why it happened, when a source could tell: a service job, a writing process.
    Cause(String),
    /// Who wrote the key, when the BPF hook saw it.
    Writer(Writer),
    /// Said in the journal only.
    Other(String),
}

impl Fact {
    /// As the journal field has it.
    fn journal_value(self) -> String {
        match self {
            Fact::Key(s)
            | Fact::Wanted(s)
            | Fact::Observed(s)
            | Fact::Error(s)
            | Fact::Cause(s)
            | Fact::Other(s) => s,
            Fact::Action(s) | Fact::Trigger(s) => s.into(),
            Fact::WrongFor(d) => d.as_micros().to_string(),
            Fact::Attempts(n) => n.to_string(),
            Fact::Count(n) => n.to_string(),
            Fact::Writer(w) => w.to_string(),
        }
    }
}

/// One detail of a report: what it means, and the journal field that carries it (`None`: the
/// webhook payloads only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub journal: Option<&'static str>,
    pub fact: Fact,
}

/// A detail in the journal as `journal` and in the webhook payloads.
fn field(journal: &'static str, fact: Fact) -> Detail {
    Detail {
        journal: Some(journal),
        fact,
    }
}

fn journal_only(journal: &'static str, value: impl ToString) -> Detail {
    field(journal, Fact::Other(value.to_string()))
}

fn webhook_only(fact: Fact) -> Detail {
    Detail {
        journal: None,
        fact,
    }
}

/// The writer for the webhook payloads, and its `FWDGUARD_WRITER_*` fields for journal queries
/// such as `journalctl FWDGUARD_WRITER_COMM=sysctl` or `FWDGUARD_WRITER_UNIT=network.service`.
fn writer_details(w: &Writer, d: &mut Vec<Detail>) {
    d.extend([
        webhook_only(Fact::Writer(w.clone())),
        journal_only("FWDGUARD_WRITTEN", &w.written),
        journal_only("FWDGUARD_WRITER_PID", w.pid),
        journal_only("FWDGUARD_WRITER_PPID", w.ppid),
        journal_only("FWDGUARD_WRITER_COMM", &w.comm),
        journal_only("FWDGUARD_WRITER_UID", w.uid),
    ]);
    let optional = [
        ("FWDGUARD_WRITER_PARENT_COMM", &w.parent_comm),
        ("FWDGUARD_WRITER_UNIT", &w.unit),
        ("FWDGUARD_WRITER_CGROUP", &w.cgroup),
        ("FWDGUARD_WRITER_CONTAINER", &w.container),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            d.push(journal_only(name, value));
        }
    }
}

impl fmt::Display for Report {
    /// The human sentence: the journal's `MESSAGE` and the stderr line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.sentence(f)?;
        match self.cause() {
            // Said right after the value: "was 0 (during restart of network.service)".
            Some(Cause::ServiceJob { .. })
                if matches!(
                    self,
                    Report::DriftRestored { .. } | Report::DriftAlerted { .. }
                ) =>
            {
                Ok(())
            }
            Some(cause) => write!(f, "; cause: {cause}"),
            None => Ok(()),
        }
    }
}

impl Report {
    fn sentence(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::DriftRestored {
                key,
                want,
                old,
                trigger,
                wrong_for,
                attempts,
                ..
            } => {
                write!(
                    f,
                    "{key} was {old}{}, restored to {want} in {} (seen via {})",
                    self.job_note(),
                    human(*wrong_for),
                    trigger.as_str()
                )?;
                if *attempts > 1 {
                    write!(f, " after {attempts} attempts")?;
                }
                Ok(())
            }
            Report::DriftAlerted {
                key,
                want,
                value,
                trigger,
                ..
            } => write!(
                f,
                "{key} is {value}{}, want {want}; action is alert, not changing it (seen via {})",
                self.job_note(),
                trigger.as_str()
            ),
            Report::RestoreFailed {
                key,
                want,
                error,
                attempt,
                retry_in,
                ..
            } => write!(
                f,
                "cannot restore {key} to {want}: {error}; attempt {attempt}, retrying in {}",
                human(*retry_in)
            ),
            Report::Recovered {
                key,
                want,
                old,
                wrong_for,
                ..
            } => write!(
                f,
                "{key} is back at {want} after {} at {old}, set by someone else",
                human(*wrong_for)
            ),
            Report::Flapping {
                key,
                action,
                drops,
                window,
            } => match action {
                Action::Prevent => write!(
                    f,
                    "{key} is flapping: written or knocked down {drops} times within {}; still keeping it, single writes and drops not reported until it calms down",
                    humantime::format_duration(*window),
                ),
                Action::Restore | Action::Alert => write!(
                    f,
                    "{key} is flapping: knocked down {drops} times within {}; still {}, single drops not reported until it calms down",
                    humantime::format_duration(*window),
                    if *action == Action::Alert {
                        "alerting"
                    } else {
                        "restoring"
                    }
                ),
            },
            Report::FlappingEnded {
                key,
                action,
                drops,
                lasted,
            } => write!(
                f,
                "{key} stopped flapping: {drops} {} in {}",
                if *action == Action::Prevent {
                    "replaced writes and drops"
                } else {
                    "drops"
                },
                human(*lasted)
            ),
            Report::KeyUnavailable { key, error } => {
                write!(f, "{key} cannot be guarded for now: {error}")
            }
            Report::KeyAvailable { key, value } => {
                write!(f, "{key} is available again, value {value}")
            }
            Report::ConfigReloaded { origin, guards } => {
                write!(
                    f,
                    "configuration reloaded from {origin}: {}",
                    count(*guards, "guarded key")
                )
            }
            Report::ReloadFailed { origin, error } => write!(
                f,
                "reload of {origin} failed, keeping the previous configuration: {error}"
            ),
            Report::EventsLost { times } => write!(
                f,
                "kernel events were lost (netlink receive queue overrun, {times} so far); re-read every guarded key"
            ),
            Report::OutputLost { output, lost } => write!(
                f,
                "{lost} messages to {output} were dropped while it was not reading; the guard went on"
            ),
            Report::WriteReplaced { key, want, writer } => write!(
                f,
                "{key}: write of {} by {writer} replaced by {want}",
                writer.written
            ),
            Report::WriteSeen {
                key,
                want,
                action,
                writer,
            } => write!(
                f,
                "{key}: {writer} wrote {} (want {want}; action {}, the write went through)",
                writer.written,
                action.as_str()
            ),
            Report::HookAttached {
                cgroup,
                netns,
                prevent,
                audit,
            } => {
                write!(
                    f,
                    "BPF sysctl hook attached at {cgroup} for writes from net:[{netns}]: "
                )?;
                match (prevent, audit) {
                    (0, a) => write!(f, "writers of {} named (audit only)", count(*a, "key")),
                    (p, 0) => write!(f, "{} kept from changing, writers named", count(*p, "key")),
                    (p, a) => write!(
                        f,
                        "{} kept from changing, writers of {} named",
                        count(*p, "key"),
                        count(*a, "more key")
                    ),
                }
            }
            Report::PreventUnavailable {
                keys,
                error,
                writers_named,
            } => {
                let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "prevent falls back to restore for {}: {error}; {}",
                    keys.join(", "),
                    if *writers_named {
                        "writers are still named"
                    } else {
                        "writers are not named"
                    }
                )
            }
            Report::PersistedConflict(c) => write!(
                f,
                "will set {} to {} at the next network restart or boot: {} (by {}); fwdguard guards it at {}",
                c.key,
                c.value,
                c.source,
                c.appliers.join(", "),
                c.want
            ),
            Report::PersistedConflictGone(c) => write!(
                f,
                "{} no longer sets {} to {} (for {}): the next network restart or boot leaves it at {} as far as the sysctl files go",
                c.source,
                c.key,
                c.value,
                c.appliers.join(", "),
                c.want
            ),
            Report::Hazard {
                source,
                hazard,
                fix,
            } => {
                if !source.is_empty() {
                    write!(f, "{source}: ")?;
                }
                write!(f, "{hazard}; fix: {fix}")
            }
        }
    }

    /// " (during restart of network.service)" for a drift a service job caused.
    fn job_note(&self) -> String {
        match self.cause() {
            Some(c @ Cause::ServiceJob { .. }) => format!(" ({c})"),
            _ => String::new(),
        }
    }
}

/// Somewhere reports go: the journal, stderr, and (started from the configuration by the
/// binary's `output::ConfiguredOutputs::start_webhooks`) webhooks.
pub trait Sink: Send {
    /// Hands the report on without waiting: a peer that is not keeping up costs a dropped
    /// report, counted, never a stalled guard.
    fn emit(&mut self, report: &Report);
    /// What STATUS= and the metrics call it: "journal", "stderr", "webhook URL".
    fn name(&self) -> String;
    /// Reports dropped so far.
    fn dropped(&self) -> u64 {
        0
    }
    /// Whether something waits to be sent (such as the notice of a loss); the loop then calls
    /// [`Sink::flush`] every little while.
    fn backlog(&self) -> bool {
        false
    }
    fn flush(&mut self) {}
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The sample report of the unit tests: forwarding found at 0, restored in 42µs.
    pub(crate) fn restored() -> Report {
        Report::DriftRestored {
            key: SysctlKey::parse("net.ipv4.ip_forward").expect("key"),
            want: Value::new("1"),
            old: Value::new("0"),
            trigger: Trigger::Netconf,
            wrong_for: Duration::from_micros(42),
            attempts: 1,
            cause: None,
        }
    }

    fn writer() -> Box<Writer> {
        Box::new(Writer {
            pid: 4242,
            ppid: 4240,
            uid: 0,
            comm: "sysctl".into(),
            parent_comm: Some("network".into()),
            cgroup: Some("/system.slice/network.service".into()),
            unit: Some("network.service".into()),
            container: None,
            written: "0\\n".into(),
            replaced: true,
        })
    }

    #[test]
    fn a_replaced_write_names_the_writer_in_text_and_fields() {
        let r = Report::WriteReplaced {
            key: SysctlKey::parse("net.ipv4.ip_forward").expect("key"),
            want: Value::new("1"),
            writer: writer(),
        };
        assert_eq!(
            r.to_string(),
            "net.ipv4.conf.all.forwarding: write of 0\\n by sysctl (pid 4242, parent network pid 4240, uid 0, network.service) replaced by 1"
        );
        let fields = r.fields();
        for (name, value) in [
            ("FWDGUARD_WRITER_PID", "4242"),
            ("FWDGUARD_WRITER_PPID", "4240"),
            ("FWDGUARD_WRITER_COMM", "sysctl"),
            ("FWDGUARD_WRITER_UID", "0"),
            ("FWDGUARD_WRITER_UNIT", "network.service"),
            ("FWDGUARD_WRITER_CGROUP", "/system.slice/network.service"),
            ("FWDGUARD_WRITTEN", "0\\n"),
            ("FWDGUARD_ACTION", "prevent"),
        ] {
            assert!(
                fields.iter().any(|(n, v)| *n == name && v == value),
                "{name}={value} in {fields:?}"
            );
        }
        assert_eq!(r.message_id(), message_id::WRITE_REPLACED);
    }

    #[test]
    fn a_drift_caused_by_a_named_writer_says_who() {
        let mut w = writer();
        w.replaced = false;
        let r = Report::DriftRestored {
            key: SysctlKey::parse("net.ipv4.ip_forward").expect("key"),
            want: Value::new("1"),
            old: Value::new("0"),
            trigger: Trigger::Writer,
            wrong_for: Duration::from_micros(20),
            attempts: 1,
            cause: Some(Cause::Writer(w)),
        };
        assert!(
            r.to_string()
                .ends_with("; cause: write of 0\\n by sysctl (pid 4242, parent network pid 4240, uid 0, network.service)"),
            "{r}"
        );
        assert!(
            r.fields()
                .iter()
                .any(|(n, v)| *n == "FWDGUARD_WRITER_UNIT" && v == "network.service")
        );
    }

    // tests/catalog.rs ties every MESSAGE_ID to the catalog, both ways.

    #[test]
    fn every_kind_but_the_test_alert_has_a_message_id() {
        for e in Event::ALL {
            assert_eq!(e.info().message_id.is_none(), e == Event::Test, "{e:?}");
        }
    }

    #[test]
    fn a_service_job_is_named_after_the_value() {
        let r = Report::DriftRestored {
            key: SysctlKey::parse("net.ipv4.ip_forward").expect("key"),
            want: Value::new("1"),
            old: Value::new("0"),
            trigger: Trigger::Netconf,
            wrong_for: Duration::from_micros(14),
            attempts: 1,
            cause: Some(Cause::ServiceJob {
                unit: "network.service".into(),
                job: "restart".into(),
                result: String::new(),
                after: None,
            }),
        };
        assert_eq!(
            r.to_string(),
            "net.ipv4.conf.all.forwarding was 0 (during restart of network.service), restored to 1 in 14µs (seen via netconf)"
        );
        let fields = r.fields();
        assert!(fields.contains(&("FWDGUARD_UNIT", "network.service".into())));
        assert!(fields.contains(&("FWDGUARD_CAUSE", "during restart of network.service".into())));
    }

    #[test]
    fn persisted_conflicts_read_well_and_carry_fields() {
        let c = PersistedConflict {
            key: SysctlKey::parse("net.ipv4.ip_forward").expect("key"),
            want: Value::new("1"),
            value: "0".into(),
            source: "/etc/sysctl.conf:3".into(),
            appliers: vec!["systemd-sysctl".into(), "sysctl -p (procps-ng 4)".into()],
        };
        let r = Report::PersistedConflict(c.clone());
        assert_eq!(
            r.to_string(),
            "will set net.ipv4.conf.all.forwarding to 0 at the next network restart or boot: /etc/sysctl.conf:3 (by systemd-sysctl, sysctl -p (procps-ng 4)); fwdguard guards it at 1"
        );
        assert_eq!(r.priority(), Priority::Warning);
        assert!(
            r.fields()
                .contains(&("FWDGUARD_SOURCE", "/etc/sysctl.conf:3".into()))
        );
        let gone = Report::PersistedConflictGone(c);
        assert!(
            gone.to_string()
                .starts_with("/etc/sysctl.conf:3 no longer sets net.ipv4.conf.all.forwarding to 0")
        );
        assert_eq!(gone.priority(), Priority::Notice);
    }

    #[test]
    fn restored_report_reads_well_and_carries_fields() {
        let r = restored();
        assert_eq!(
            r.to_string(),
            "net.ipv4.conf.all.forwarding was 0, restored to 1 in 42µs (seen via netconf)"
        );
        assert_eq!(r.priority(), Priority::Warning);
        let fields = r.fields();
        for (k, v) in [
            ("FWDGUARD_KEY", "net.ipv4.conf.all.forwarding"),
            ("FWDGUARD_OLD", "0"),
            ("FWDGUARD_NEW", "1"),
            ("FWDGUARD_WANT", "1"),
            ("FWDGUARD_ACTION", "restore"),
            ("FWDGUARD_WRONG_USEC", "42"),
        ] {
            assert!(
                fields.contains(&(k, v.to_owned())),
                "{k}={v} missing in {fields:?}"
            );
        }
    }
}
