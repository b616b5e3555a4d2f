//! The BPF sysctl hook's fallback rules, with no I/O: what fwdguard settles for when the hook
//! cannot be had as configured, and what operators are told about it. The daemon attaches (or
//! not) and hands in how it went; the rules answer with what to try next and, at the end, the
//! reports and whether `prevent` is in force.

use crate::key::SysctlKey;
use crate::report::Report;

/// Where a hook got attached, as the reports name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The cgroup, as STATUS= and the journal say it.
    pub cgroup: String,
    /// The network namespace whose writes are guarded.
    pub netns: u32,
    /// How many keys the program matches.
    pub covered: usize,
}

/// What to try when the hook, with every key in its configured mode, could not be attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The replacement failed, not the hook: attach again with every key audit-only, so that
    /// writers are still named. `prevent` restores instead.
    AuditOnly,
    /// No hook: `prevent` restores instead.
    WithoutHook,
    /// No hook, and no key was to be prevented: only writers go unnamed. That is an extra (the
    /// packaged unit grants the hook's privileges only when asked): worth a note, not a warning.
    WritersUnnamed,
}

/// What the hook came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Why `prevent` is not in force, if it is not: the `NoPrevent` degradation of its keys.
    pub prevent_error: Option<String>,
    pub reports: Vec<Report>,
}

/// Putting the hook in place for one configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The keys `prevent` guards, in the configuration's order.
    prevented: Vec<SysctlKey>,
    /// Why `prevent` is not in force, once an attach failed.
    prevent_error: Option<String>,
}

impl Plan {
    pub fn new(prevented: Vec<SysctlKey>) -> Self {
        Self {
            prevented,
            prevent_error: None,
        }
    }

    /// The configuration turns the hook off (`error` says so): no hook, and `prevent` keys
    /// are restored instead. Said once, not at every reload while `previous` (why `prevent`
    /// was not in force until now) is the same.
    pub fn off(self, error: &str, previous: Option<&str>) -> Settled {
        if self.prevented.is_empty() {
            return Settled::default();
        }
        let reports = if previous == Some(error) {
            Vec::new()
        } else {
            vec![Report::PreventUnavailable {
                keys: self.prevented,
                error: error.to_owned(),
                writers_named: false,
            }]
        };
        Settled {
            prevent_error: Some(error.to_owned()),
            reports,
        }
    }

    /// The hook with every key in its mode could not be attached (`error`); whether an
    /// audit-only one still can (`audit_still_possible`: the replacement is what failed).
    /// Without keys to prevent there is nothing to fall back from.
    pub fn failed(&mut self, error: String, audit_still_possible: bool) -> Fallback {
        if self.prevented.is_empty() {
            return Fallback::WritersUnnamed;
        }
        self.prevent_error = Some(error);
        if audit_still_possible {
            Fallback::AuditOnly
        } else {
            Fallback::WithoutHook
        }
    }

    /// Where the hook ended up (`None`: there is none): its place and what it does, then why
    /// `prevent` is not in force and whether writers are named all the same.
    pub fn settle(self, placed: Option<&Placed>) -> Settled {
        let mut reports = Vec::new();
        if let Some(p) = placed {
            let prevent = match self.prevent_error {
                None => self.prevented.len(),
                Some(_) => 0,
            };
            reports.push(Report::HookAttached {
                cgroup: p.cgroup.clone(),
                netns: p.netns,
                prevent,
                audit: p.covered.saturating_sub(prevent),
            });
        }
        if let Some(error) = &self.prevent_error {
            reports.push(Report::PreventUnavailable {
                keys: self.prevented,
                error: error.clone(),
                writers_named: placed.is_some(),
            });
        }
        Settled {
            prevent_error: self.prevent_error,
            reports,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFF: &str = "bpf-hook = false in the configuration";

    fn keys(names: &[&str]) -> Vec<SysctlKey> {
        names
            .iter()
            .map(|n| SysctlKey::parse(n).expect("key"))
            .collect()
    }

    fn forwarding() -> Vec<SysctlKey> {
        keys(&["net.ipv4.conf.all.forwarding"])
    }

    /// A plan for `keys` whose hook failed with `error`; it must fall back to `fallback`.
    fn failed(
        keys: Vec<SysctlKey>,
        error: &str,
        audit_still_possible: bool,
        fallback: Fallback,
    ) -> Plan {
        let mut plan = Plan::new(keys);
        assert_eq!(plan.failed(error.into(), audit_still_possible), fallback);
        plan
    }

    fn placed(covered: usize) -> Placed {
        Placed {
            cgroup: "/sys/fs/cgroup".into(),
            netns: 4026531840,
            covered,
        }
    }

    #[test]
    fn turned_off_prevent_is_said_unavailable_once() {
        let first = Plan::new(forwarding()).off(OFF, None);
        assert_eq!(first.prevent_error.as_deref(), Some(OFF));
        assert_eq!(
            first.reports,
            [Report::PreventUnavailable {
                keys: forwarding(),
                error: OFF.into(),
                writers_named: false,
            }]
        );
        // A reload with the hook still off: in force as before, not said again.
        let again = Plan::new(forwarding()).off(OFF, Some(OFF));
        assert_eq!(again.prevent_error.as_deref(), Some(OFF));
        assert!(again.reports.is_empty());
        // Off after it failed for another reason: news.
        let other = Plan::new(forwarding()).off(OFF, Some("no BTF"));
        assert_eq!(other.reports.len(), 1);
    }

    #[test]
    fn turned_off_without_prevent_keys_costs_nothing() {
        assert_eq!(Plan::new(Vec::new()).off(OFF, None), Settled::default());
    }

    #[test]
    fn attached_in_full_prevents_and_names_the_rest() {
        let prevented = keys(&[
            "net.ipv4.conf.all.forwarding",
            "net.ipv6.conf.all.forwarding",
        ]);
        let outcome = Plan::new(prevented).settle(Some(&placed(3)));
        assert_eq!(outcome.prevent_error, None);
        assert_eq!(
            outcome.reports,
            [Report::HookAttached {
                cgroup: "/sys/fs/cgroup".into(),
                netns: 4026531840,
                prevent: 2,
                audit: 1,
            }]
        );
    }

    #[test]
    fn an_ineffective_replacement_falls_back_to_naming_writers() {
        let plan = failed(
            forwarding(),
            "the replacement is ineffective",
            true,
            Fallback::AuditOnly,
        );
        let outcome = plan.settle(Some(&placed(1)));
        assert_eq!(
            outcome.prevent_error.as_deref(),
            Some("the replacement is ineffective")
        );
        assert_eq!(
            outcome.reports,
            [
                Report::HookAttached {
                    cgroup: "/sys/fs/cgroup".into(),
                    netns: 4026531840,
                    prevent: 0,
                    audit: 1,
                },
                Report::PreventUnavailable {
                    keys: forwarding(),
                    error: "the replacement is ineffective".into(),
                    writers_named: true,
                }
            ]
        );
    }

    #[test]
    fn an_audit_only_hook_that_fails_too_leaves_prevent_restoring() {
        let plan = failed(forwarding(), "ineffective", true, Fallback::AuditOnly);
        let outcome = plan.settle(None);
        assert_eq!(
            outcome.reports,
            [Report::PreventUnavailable {
                keys: forwarding(),
                error: "ineffective".into(),
                writers_named: false,
            }]
        );
    }

    #[test]
    fn a_hook_that_cannot_be_had_leaves_prevent_restoring() {
        let plan = failed(
            forwarding(),
            "kernel BTF unavailable",
            false,
            Fallback::WithoutHook,
        );
        let outcome = plan.settle(None);
        assert_eq!(
            outcome.prevent_error.as_deref(),
            Some("kernel BTF unavailable")
        );
        assert_eq!(
            outcome.reports,
            [Report::PreventUnavailable {
                keys: forwarding(),
                error: "kernel BTF unavailable".into(),
                writers_named: false,
            }]
        );
    }

    #[test]
    fn without_prevent_keys_a_missing_hook_only_leaves_writers_unnamed() {
        for audit_still_possible in [false, true] {
            let plan = failed(
                Vec::new(),
                "Operation not permitted",
                audit_still_possible,
                Fallback::WritersUnnamed,
            );
            assert_eq!(
                plan.settle(None),
                Settled::default(),
                "no degradation, no report"
            );
        }
    }
}
