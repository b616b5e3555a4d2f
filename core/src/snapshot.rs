//! What the guard knows, as one value the loop publishes (a `tokio::sync::watch`) after every
//! change: STATUS= is rendered from it, and metrics read it. `fwdguard check` builds the same
//! degradations from the kernel and the environment. Pure data.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::guard::{Action, Guard};
use crate::key::Watch;
use crate::routing::GuardId;

/// How a key stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Not read yet.
    Unknown,
    Holding,
    Wrong,
    Unavailable,
}

/// A way a guard works less well than it should: each names the key and what it costs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Degradation {
    /// No inotify watch on the key's file (e.g. `fs.inotify.max_user_watches` reached).
    NoFileWatch { error: String },
    /// No netconf events (socket unavailable or given up after repeated errors).
    NoNetlink { error: String },
    /// Writing the key is refused: a drop is reported but not fixed.
    CannotRestore { error: String },
    /// `action = "prevent"`, but the BPF hook cannot replace writes here: restored instead.
    NoPrevent { error: String },
}

impl Degradation {
    /// The sentence for STATUS= and `check`, naming the key and the consequence.
    pub fn describe(&self, key: &str) -> String {
        match self {
            Degradation::NoFileWatch { error } => format!(
                "{key}: no inotify watch ({error}); writes to it are seen only by the timed re-read"
            ),
            Degradation::NoNetlink { error } => format!(
                "{key}: no netlink events ({error}); changes are seen only by inotify and the timed re-read"
            ),
            Degradation::CannotRestore { error } => {
                format!("{key}: cannot restore ({error}); drops are reported but not undone")
            }
            Degradation::NoPrevent { error } => format!(
                "{key}: prevent fell back to restore ({error}); a drop happens and is undone within microseconds"
            ),
        }
    }
}

/// What the daemon knows may make a guard work less well: each is why, when it is so. Which of
/// them degrade which guard is [`Impairments::degradations`]'s rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Impairments<'a> {
    /// Why the key's file has no inotify watch, when it should have one.
    pub no_watch: Option<&'a str>,
    /// Why there are no netlink events (the daemon's, for every guard).
    pub no_netlink: Option<&'a str>,
    /// Why writing the key is refused, while it is (the policy's
    /// [`refusal`](crate::policy::GuardState::refusal)).
    pub refused: Option<&'a str>,
    /// Why `prevent` is not in force (the BPF hook's, for every guard).
    pub no_prevent: Option<&'a str>,
}

impl Impairments<'_> {
    /// The degradations of `guard`, in the order STATUS= names them. Lost netlink events cost
    /// only keys netconf announces (the others are watched by inotify anyway), and a missing
    /// hook costs only `prevent` keys (the others' writers are named, or not, as an extra).
    pub fn degradations(&self, guard: &Guard) -> Vec<Degradation> {
        let error = |e: &str| e.to_owned();
        let netconf = matches!(guard.key.watch(), Watch::Netconf { .. });
        let prevent = guard.action == Action::Prevent;
        [
            self.no_watch
                .map(|e| Degradation::NoFileWatch { error: error(e) }),
            self.no_netlink
                .filter(|_| netconf)
                .map(|e| Degradation::NoNetlink { error: error(e) }),
            self.refused
                .map(|e| Degradation::CannotRestore { error: error(e) }),
            self.no_prevent
                .filter(|_| prevent)
                .map(|e| Degradation::NoPrevent { error: error(e) }),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Upper bounds of the time-at-the-wrong-value histogram, in seconds: µs steps where restores
/// live (tens of µs), then coarser up to what a human fix takes.
pub const WRONG_BUCKETS: [f64; 14] = [
    5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 10e-3, 100e-3, 1.0, 10.0, 60.0,
];

/// How long keys were wrong, in [`WRONG_BUCKETS`] (counts per bucket, not cumulative; the
/// last slot counts what is above every bound).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WrongTime {
    pub buckets: [u64; WRONG_BUCKETS.len() + 1],
    pub count: u64,
    pub sum: Duration,
}

impl WrongTime {
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = WRONG_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(WRONG_BUCKETS.len());
        self.buckets[i] += 1;
        self.count += 1;
        self.sum += d;
    }
}

/// One guarded key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardSnapshot {
    pub id: GuardId,
    pub key: String,
    pub want: String,
    pub action: &'static str,
    pub state: KeyState,
    /// The value last read or announced, if any.
    pub value: Option<String>,
    pub restores: u64,
    /// Steps from right to wrong seen.
    pub drops: u64,
    pub failed_restores: u64,
    pub flapping_episodes: u64,
    /// Writes the BPF hook replaced (`prevent`): drops that never happened.
    pub writes_replaced: u64,
    pub degradations: Vec<Degradation>,
    /// How long the key was wrong each time it came back (metrics).
    #[serde(skip)]
    pub wrong: WrongTime,
}

/// Messages an output dropped rather than wait for its reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputLoss {
    pub output: String,
    pub dropped: u64,
}

/// The whole guard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub guards: Vec<GuardSnapshot>,
    /// Times netlink events were lost (ENOBUFS).
    pub events_lost: u64,
    pub output_losses: Vec<OutputLoss>,
    /// Why the last reload failed, while the previous configuration runs on.
    pub reload_error: Option<String>,
    /// The last report, as its sentence.
    pub last_report: Option<String>,
    /// Where the BPF sysctl hook is attached, if it is.
    pub hook: Option<String>,
}

impl Snapshot {
    fn count(&self, state: KeyState) -> usize {
        self.guards.iter().filter(|g| g.state == state).count()
    }

    /// `STATUS=`: what is guarded, restores so far, what works less well, the last event.
    pub fn status_line(&self) -> String {
        let n = self.guards.len();
        let holding = self.count(KeyState::Holding);
        let unavailable = self.count(KeyState::Unavailable);
        let wrong = self.count(KeyState::Wrong);
        let restores: u64 = self.guards.iter().map(|g| g.restores).sum();
        let mut s = format!(
            "guarding {n} key{}: {holding} holding",
            if n == 1 { "" } else { "s" }
        );
        if unavailable > 0 {
            s.push_str(&format!(", {unavailable} unavailable"));
        }
        if wrong > 0 {
            s.push_str(&format!(", {wrong} WRONG"));
        }
        s.push_str(&format!("; {restores} restores"));
        let replaced: u64 = self.guards.iter().map(|g| g.writes_replaced).sum();
        if replaced > 0 {
            s.push_str(&format!(", {replaced} writes replaced"));
        }
        if let Some(h) = &self.hook {
            s.push_str("; hook ");
            s.push_str(h);
        }
        for g in &self.guards {
            for d in &g.degradations {
                s.push_str("; DEGRADED ");
                s.push_str(&d.describe(&g.key));
            }
        }
        let lost: u64 = self.output_losses.iter().map(|l| l.dropped).sum();
        if lost > 0 {
            s.push_str(&format!("; {lost} log messages dropped"));
        }
        if let Some(e) = &self.reload_error {
            s.push_str("; reload failed, running previous config: ");
            s.push_str(e);
        }
        if let Some(last) = &self.last_report {
            s.push_str("; last: ");
            s.push_str(last);
        }
        s
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.status_line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(state: KeyState, degradations: Vec<Degradation>) -> GuardSnapshot {
        GuardSnapshot {
            id: GuardId(0),
            key: "net.ipv4.conf.all.forwarding".into(),
            want: "1".into(),
            action: "restore",
            state,
            value: Some("1".into()),
            restores: 2,
            drops: 2,
            failed_restores: 0,
            flapping_episodes: 0,
            writes_replaced: 0,
            degradations,
            wrong: WrongTime::default(),
        }
    }

    #[test]
    fn status_line_names_degradations_with_their_key_and_consequence() {
        let s = Snapshot {
            guards: vec![guard(
                KeyState::Wrong,
                vec![Degradation::CannotRestore {
                    error: "write net.ipv4.conf.all.forwarding: Permission denied (fwdguard lacks CAP_NET_ADMIN, which writing it needs)".into(),
                }],
            )],
            ..Snapshot::default()
        };
        assert_eq!(
            s.status_line(),
            "guarding 1 key: 0 holding, 1 WRONG; 2 restores; DEGRADED net.ipv4.conf.all.forwarding: cannot restore (write net.ipv4.conf.all.forwarding: Permission denied (fwdguard lacks CAP_NET_ADMIN, which writing it needs)); drops are reported but not undone"
        );
    }

    fn configured(key: &str, action: Action) -> Guard {
        Guard {
            key: crate::key::SysctlKey::parse(key).expect("key"),
            want: crate::value::Value::new("1"),
            action,
        }
    }

    #[test]
    fn a_guard_is_degraded_only_by_what_it_needs() {
        let all = Impairments {
            no_watch: Some("inotify limit"),
            no_netlink: Some("EPERM"),
            refused: Some("EACCES"),
            no_prevent: Some("no BTF"),
        };
        let kinds = |g: &Guard, i: &Impairments| -> Vec<String> {
            i.degradations(g)
                .iter()
                .map(|d| match d {
                    Degradation::NoFileWatch { error }
                    | Degradation::NoNetlink { error }
                    | Degradation::CannotRestore { error }
                    | Degradation::NoPrevent { error } => error.clone(),
                })
                .collect()
        };
        // A netconf key under `prevent`: everything counts, in this order.
        let forwarding = configured("net.ipv4.conf.all.forwarding", Action::Prevent);
        assert_eq!(
            kinds(&forwarding, &all),
            ["inotify limit", "EPERM", "EACCES", "no BTF"]
        );
        assert!(matches!(
            &all.degradations(&forwarding)[..],
            [
                Degradation::NoFileWatch { .. },
                Degradation::NoNetlink { .. },
                Degradation::CannotRestore { .. },
                Degradation::NoPrevent { .. }
            ]
        ));
        // A key netconf does not announce loses nothing with netlink; a `restore` key nothing
        // with the hook.
        let file_key = configured("net.ipv4.ip_nonlocal_bind", Action::Restore);
        assert_eq!(kinds(&file_key, &all), ["inotify limit", "EACCES"]);
        let restoring = configured("net.ipv6.conf.all.forwarding", Action::Restore);
        assert_eq!(
            kinds(&restoring, &all),
            ["inotify limit", "EPERM", "EACCES"]
        );
        // Nothing impaired: nothing degraded.
        assert!(Impairments::default().degradations(&forwarding).is_empty());
    }

    #[test]
    fn status_line_of_a_healthy_guard() {
        let s = Snapshot {
            guards: vec![guard(KeyState::Holding, vec![])],
            last_report: Some("x".into()),
            ..Snapshot::default()
        };
        assert_eq!(
            s.status_line(),
            "guarding 1 key: 1 holding; 2 restores; last: x"
        );
    }
}
