//! The guard's decisions, with no I/O: given what a key reads now, whether to write it back and
//! what to report. Time is passed in, so flapping and backoff are tested without waiting.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::{Action, Flapping, Guard};
use crate::knob::SysctlError;
use crate::observation::{Cause, Trigger, Writer};
use crate::report::Report;
use crate::routing::GuardId;
use crate::snapshot::{GuardSnapshot, Impairments, KeyState, WrongTime};
use crate::value::Value;

/// The first retry after a failed restore comes this soon ...
const RETRY_FIRST: Duration = Duration::from_millis(100);
/// ... and the delay doubles up to this. A few seconds: the cause (a missing capability, a
/// read-only /proc/sys) may be fixed any moment, and a retry is one refused syscall.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Immediate rewrites when a restore reads back wrong, before it counts as failed.
const CONTESTED_RETRIES: u32 = 3;

/// What the daemon should do: every entry point of the policy ([`GuardState::observe`],
/// [`GuardState::restored`], [`GuardState::write_seen`], [`GuardState::tick`]) answers with one.
/// The daemon carries it out in this order: the write, the reports, the re-check.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Write the wanted value, read it back and hand the result to [`GuardState::restored`].
    pub restore: bool,
    /// Read the key again and hand the reading to [`GuardState::observe`]: a restore retry
    /// fell due (with [`Trigger::Retry`]), or a writer was seen (with the writer's trigger).
    pub recheck: bool,
    pub reports: Vec<Report>,
}

/// What a key was last known to be.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Known {
    /// Not read yet.
    Unknown,
    Holding,
    /// Wrong since `since` (when fwdguard first saw it wrong).
    Drifted {
        value: Value,
        since: Instant,
    },
    /// Could not be read; the error, to report each new one once.
    Unavailable {
        error: String,
    },
}

/// A restore that keeps failing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failing {
    attempts: u32,
    retry_at: Instant,
    delay: Duration,
    error: String,
    /// The writes were accepted but lost to another writer (or ignored by the kernel), as
    /// opposed to refused. During a flapping episode such failures are not reported one by
    /// one (a writer in a loop causes them by the hundred); refusals always are.
    contested: bool,
}

impl Failing {
    /// A refused write (EPERM, EROFS, ...): reported even while flapping.
    fn refused(&self) -> bool {
        !self.contested
    }
}

/// A run of drops dense enough to count as flapping.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Episode {
    since: Instant,
    drops: u64,
}

/// One guarded key and what fwdguard knows about it.
#[derive(Debug, Clone)]
pub struct GuardState {
    pub guard: Guard,
    flapping: Flapping,
    seen: Known,
    /// The latest drops within the flapping window, oldest first, at most `threshold` of them.
    recent_drops: VecDeque<Instant>,
    episode: Option<Episode>,
    failing: Option<Failing>,
    /// Writes in a row that read back wrong (see [`GuardState::restored`]).
    contested: u32,
    /// Successful restores since start.
    pub restores: u64,
    /// Steps from right (or unknown) to wrong since start.
    pub drops: u64,
    /// Restores that failed (refused, or lost to another writer every time).
    pub failed_restores: u64,
    pub flapping_episodes: u64,
    /// Writes the BPF hook replaced (`prevent`): drops that never happened.
    pub writes_replaced: u64,
    /// How long the key was wrong, each time it came back (restored or recovered).
    pub wrong: WrongTime,
}

impl GuardState {
    pub fn new(guard: Guard, flapping: Flapping) -> Self {
        Self {
            guard,
            flapping,
            seen: Known::Unknown,
            recent_drops: VecDeque::new(),
            episode: None,
            failing: None,
            contested: 0,
            restores: 0,
            drops: 0,
            failed_restores: 0,
            flapping_episodes: 0,
            writes_replaced: 0,
            wrong: WrongTime::default(),
        }
    }

    /// Keeps what was learnt about the key across a reload that changed only the settings.
    pub fn carry_over(&mut self, old: GuardState) {
        if old.guard.key == self.guard.key {
            self.seen = old.seen;
            self.recent_drops = old.recent_drops;
            self.episode = old.episode;
            self.restores = old.restores;
            self.drops = old.drops;
            self.failed_restores = old.failed_restores;
            self.flapping_episodes = old.flapping_episodes;
            self.writes_replaced = old.writes_replaced;
            self.wrong = old.wrong;
            if old.guard.want == self.guard.want && old.guard.action == self.guard.action {
                self.failing = old.failing;
            }
        }
    }

    /// Whether the key holds its wanted value as far as fwdguard knows.
    pub fn holding(&self) -> bool {
        self.seen == Known::Holding
    }

    /// Whether the key could not be read at last try.
    pub fn unavailable(&self) -> bool {
        matches!(self.seen, Known::Unavailable { .. })
    }

    /// How the key stands, and its value as last seen.
    pub fn state(&self) -> (KeyState, Option<&Value>) {
        match &self.seen {
            Known::Unknown => (KeyState::Unknown, None),
            Known::Holding => (KeyState::Holding, Some(&self.guard.want)),
            Known::Drifted { value, .. } => (KeyState::Wrong, Some(value)),
            Known::Unavailable { .. } => (KeyState::Unavailable, None),
        }
    }

    /// Why restoring is refused (not lost to another writer), while it is.
    pub fn refusal(&self) -> Option<&str> {
        self.failing
            .as_ref()
            .filter(|f| f.refused())
            .map(|f| f.error.as_str())
    }

    /// The guard as the snapshot shows it, degraded by what `impairments` says (see
    /// [`Impairments::degradations`]; its `refused` is [`refusal`](Self::refusal)'s).
    pub fn snapshot(&self, id: GuardId, impairments: &Impairments) -> GuardSnapshot {
        let (state, value) = self.state();
        GuardSnapshot {
            id,
            key: self.guard.key.to_string(),
            want: self.guard.want.to_string(),
            action: self.guard.action.as_str(),
            state,
            value: value.map(ToString::to_string),
            restores: self.restores,
            drops: self.drops,
            failed_restores: self.failed_restores,
            flapping_episodes: self.flapping_episodes,
            writes_replaced: self.writes_replaced,
            degradations: impairments.degradations(&self.guard),
            wrong: self.wrong.clone(),
        }
    }

    /// A fresh reading of the key.
    ///
    /// `cause`, when a source could tell why the key changed, goes into the reports.
    pub fn observe(
        &mut self,
        reading: Result<Value, SysctlError>,
        trigger: Trigger,
        cause: Option<&Cause>,
        now: Instant,
    ) -> Decision {
        let mut d = Decision::default();
        let value = match reading {
            Ok(v) => v,
            Err(e) => {
                let error = e.source.to_string();
                if self.seen
                    != (Known::Unavailable {
                        error: error.clone(),
                    })
                {
                    d.reports.push(Report::KeyUnavailable {
                        key: self.guard.key.clone(),
                        error: if e.is_missing() {
                            "it does not exist on this host (IPv6 disabled, interface or module not there yet?)".into()
                        } else {
                            error.clone()
                        },
                    });
                }
                self.seen = Known::Unavailable { error };
                self.failing = None;
                return d;
            }
        };
        if let Known::Unavailable { .. } = self.seen {
            d.reports.push(Report::KeyAvailable {
                key: self.guard.key.clone(),
                value: value.clone(),
            });
            self.seen = Known::Unknown;
        }

        if value == self.guard.want {
            if let Known::Drifted { value: old, since } = &self.seen {
                self.wrong.observe(now.saturating_duration_since(*since));
                if self.episode.is_none() || self.failing.as_ref().is_some_and(Failing::refused) {
                    d.reports.push(Report::Recovered {
                        key: self.guard.key.clone(),
                        want: self.guard.want.clone(),
                        old: old.clone(),
                        trigger,
                        wrong_for: now.saturating_duration_since(*since),
                        cause: cause.cloned(),
                    });
                }
            }
            self.seen = Known::Holding;
            self.failing = None;
            return d;
        }

        // Wrong value. A drop is the step from right (or unknown, at start) to wrong; seeing the
        // same wrong value again is the same drift.
        let same_drift = matches!(&self.seen, Known::Drifted { value: v, .. } if *v == value);
        if !same_drift {
            let since = match &self.seen {
                Known::Drifted { since, .. } => *since,
                _ => {
                    self.count_drop(now, &mut d.reports);
                    now
                }
            };
            self.seen = Known::Drifted {
                value: value.clone(),
                since,
            };
            if self.guard.action == Action::Alert && self.episode.is_none() {
                d.reports.push(Report::DriftAlerted {
                    key: self.guard.key.clone(),
                    want: self.guard.want.clone(),
                    value,
                    trigger,
                    cause: cause.cloned(),
                });
            }
        }
        // Every observation of a wrong value restores, even while a backoff runs: an event
        // for the key is cheap to answer, and may come just after the cause of a refusal was
        // fixed. The backoff timer covers the case without events.
        d.restore = self.guard.action.restores();
        d
    }

    /// The outcome of writing the wanted value and reading the key back. `restore` in the
    /// result asks for another write at once.
    pub fn restored(
        &mut self,
        outcome: Result<Value, SysctlError>,
        trigger: Trigger,
        cause: Option<&Cause>,
        now: Instant,
    ) -> Decision {
        let (old, since) = match &self.seen {
            Known::Drifted { value, since } => (value.clone(), *since),
            _ => (Value::new("?"), now),
        };
        let (error, contested) = match outcome {
            Ok(v) if v == self.guard.want => {
                self.restores += 1;
                self.wrong.observe(now.saturating_duration_since(since));
                let failed = self.failing.take();
                let attempts = failed.as_ref().map_or(1, |f| f.attempts + 1) + self.contested;
                self.contested = 0;
                self.seen = Known::Holding;
                // While flapping, a plain or contested drop is counted, not reported; the end
                // of a streak of refused writes always is.
                if self.episode.is_some() && !failed.as_ref().is_some_and(Failing::refused) {
                    return Decision::default();
                }
                return Decision {
                    reports: vec![Report::DriftRestored {
                        key: self.guard.key.clone(),
                        want: self.guard.want.clone(),
                        old,
                        trigger,
                        wrong_for: now.saturating_duration_since(since),
                        attempts,
                        cause: cause.cloned(),
                    }],
                    ..Decision::default()
                };
            }
            // The write was accepted, but the key reads wrong again: another writer got in
            // between (its write sends an event of its own), or the kernel ignored the value.
            // Write again at once a few times, which usually wins against a writer in a loop.
            // After that the next change restores at once again, and a backoff retry covers
            // a kernel that ignores the value (no event would come).
            Ok(_) if self.contested < CONTESTED_RETRIES => {
                self.contested += 1;
                return Decision {
                    restore: true,
                    ..Decision::default()
                };
            }
            Ok(v) => (
                format!(
                    "the write did not stick: it read {v} right after each of {} writes in a row \
                     (another writer keeps setting it, or the kernel ignores the value); \
                     restoring goes on at every change",
                    self.contested + 1
                ),
                true,
            ),
            Err(e) => (e.describe(), false),
        };
        self.contested = 0;
        self.failed_restores += 1;
        let (attempts, delay) = match &self.failing {
            Some(f) => (f.attempts + 1, (f.delay * 2).min(RETRY_MAX)),
            None => (1, RETRY_FIRST),
        };
        // Report the first failure and every change of cause; a write that fails the same way
        // every few seconds is one incident, not a flood.
        let report = self.failing.as_ref().is_none_or(|f| f.error != error)
            && (self.episode.is_none() || !contested);
        self.failing = Some(Failing {
            attempts,
            retry_at: now + delay,
            delay,
            error: error.clone(),
            contested,
        });
        if !report {
            tracing::debug!(key = %self.guard.key, attempts, "restore failed again: {error}");
            return Decision::default();
        }
        Decision {
            reports: vec![Report::RestoreFailed {
                key: self.guard.key.clone(),
                want: self.guard.want.clone(),
                value: old,
                error,
                attempt: attempts,
                retry_in: delay,
                cause: cause.cloned(),
            }],
            ..Decision::default()
        }
    }

    /// A write the BPF hook saw for this key. It is reported with its writer:
    /// [`Report::WriteReplaced`] when the hook replaced it (`prevent`), else
    /// [`Report::WriteSeen`] (drift reports follow as usual). A key written over and over is
    /// flapping just as one knocked down over and over: replaced writes count toward the same
    /// episode (not as drops), which is reported once and ends with its total, and while it
    /// lasts no single write is reported. The key is checked again after it, as after any
    /// event (`recheck`).
    pub fn write_seen(&mut self, writer: &Writer, now: Instant) -> Decision {
        let mut d = Decision {
            recheck: true,
            ..Decision::default()
        };
        if writer.replaced {
            self.writes_replaced += 1;
            self.count_change(now, &mut d.reports);
        }
        // An episode that starts with this write has just been reported instead.
        if self.episode.is_none() {
            let (key, want) = (self.guard.key.clone(), self.guard.want.clone());
            let writer = Box::new(writer.clone());
            d.reports.push(if writer.replaced {
                Report::WriteReplaced { key, want, writer }
            } else {
                Report::WriteSeen {
                    key,
                    want,
                    action: self.guard.action,
                    writer,
                }
            });
        }
        d
    }

    fn count_drop(&mut self, now: Instant, reports: &mut Vec<Report>) {
        self.drops += 1;
        self.count_change(now, reports);
    }

    /// One more change (a drop, or a write replaced by the hook) toward a flapping episode.
    fn count_change(&mut self, now: Instant, reports: &mut Vec<Report>) {
        let window = self.flapping.window;
        while self
            .recent_drops
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            self.recent_drops.pop_front();
        }
        self.recent_drops.push_back(now);
        // The threshold's worth is all that is needed, to start an episode and to end one
        // (the last drop): a writer in a loop must not grow this by thousands a second.
        if self.recent_drops.len() > self.flapping.threshold as usize {
            self.recent_drops.pop_front();
        }
        match &mut self.episode {
            Some(e) => e.drops += 1,
            None if self.recent_drops.len() >= self.flapping.threshold as usize => {
                let drops = self.recent_drops.len();
                self.flapping_episodes += 1;
                self.episode = Some(Episode {
                    since: self.recent_drops[0],
                    drops: drops as u64,
                });
                reports.push(Report::Flapping {
                    key: self.guard.key.clone(),
                    action: self.guard.action,
                    drops: drops as u32,
                    window,
                });
            }
            None => {}
        }
    }

    /// When [`tick`](Self::tick) has something to do: a retry falls due or a flapping episode
    /// may end. `None` when nothing is pending, so an idle daemon sleeps.
    pub fn next_deadline(&self) -> Option<Instant> {
        let retry = self.failing.as_ref().map(|f| f.retry_at);
        let calm = self
            .episode
            .as_ref()
            .and_then(|_| self.recent_drops.back())
            .map(|last| *last + self.flapping.window);
        retry.into_iter().chain(calm).min()
    }

    /// Time passed: ends a flapping episode that has been quiet for a window. `recheck` when
    /// a restore retry is due (the caller re-reads the key with [`Trigger::Retry`]).
    pub fn tick(&mut self, now: Instant) -> Decision {
        let mut d = Decision::default();
        if let (Some(e), Some(last)) = (&self.episode, self.recent_drops.back())
            && now >= *last + self.flapping.window
        {
            d.reports.push(Report::FlappingEnded {
                key: self.guard.key.clone(),
                action: self.guard.action,
                drops: e.drops,
                lasted: last.saturating_duration_since(e.since),
            });
            self.episode = None;
            self.recent_drops.clear();
        }
        d.recheck = self.failing.as_ref().is_some_and(|f| now >= f.retry_at);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SysctlKey;
    use crate::knob::Op;
    use std::io;

    fn guard(action: Action) -> GuardState {
        GuardState::new(
            Guard {
                key: SysctlKey::parse("net.ipv4.conf.all.forwarding").expect("key"),
                want: Value::new("1"),
                action,
            },
            Flapping {
                threshold: 3,
                window: Duration::from_secs(10),
            },
        )
    }

    fn v(s: &str) -> Result<Value, SysctlError> {
        Ok(Value::new(s))
    }

    fn err(kind: io::ErrorKind, op: Op) -> Result<Value, SysctlError> {
        Err(SysctlError {
            op,
            key: SysctlKey::parse("net.ipv4.conf.all.forwarding").expect("key"),
            source: io::Error::from(kind),
        })
    }

    /// A `restore` guard that has just seen the key knocked down at `t0` and decided to
    /// write it back.
    fn knocked_down() -> (GuardState, Instant) {
        let mut g = guard(Action::Restore);
        let t0 = Instant::now();
        assert!(g.observe(v("0"), Trigger::Netconf, None, t0).restore);
        (g, t0)
    }

    /// The key is knocked down at `now` and the restore sticks: what both steps reported.
    fn drop_and_restore(g: &mut GuardState, now: Instant) -> Vec<Report> {
        let mut d = g.observe(v("0"), Trigger::Netconf, None, now);
        assert!(d.restore, "a drop is restored");
        d.reports
            .extend(g.restored(v("1"), Trigger::Netconf, None, now).reports);
        d.reports
    }

    /// The restore's write is refused for want of the capability.
    fn write_refused(g: &mut GuardState, trigger: Trigger, now: Instant) -> Decision {
        g.restored(
            err(io::ErrorKind::PermissionDenied, Op::Write),
            trigger,
            None,
            now,
        )
    }

    /// The write at `now` sticks (the key reads back `1`): the drift is reported restored
    /// after `attempts` writes, and nothing is left scheduled.
    fn assert_sticks_after(g: &mut GuardState, trigger: Trigger, now: Instant, attempts: u32) {
        match &g.restored(v("1"), trigger, None, now).reports[..] {
            [Report::DriftRestored { attempts: n, .. }] => assert_eq!(*n, attempts),
            other => panic!("{other:?}"),
        }
        assert_eq!(g.next_deadline(), None);
    }

    /// A restore failed at `t0`: a retry is scheduled after the first backoff, yet the key
    /// knocked down again `later`, before the retry is due, is written back at once.
    fn assert_retry_due_but_a_change_restores_at_once(
        g: &mut GuardState,
        t0: Instant,
        later: Duration,
    ) {
        assert_eq!(g.next_deadline(), Some(t0 + RETRY_FIRST));
        assert!(
            g.observe(v("0"), Trigger::Netconf, None, t0 + later)
                .restore
        );
    }

    fn names(reports: &[Report]) -> Vec<&'static str> {
        reports
            .iter()
            .map(|r| match r {
                Report::DriftRestored { .. } => "restored",
                Report::DriftAlerted { .. } => "alerted",
                Report::RestoreFailed { .. } => "failed",
                Report::Recovered { .. } => "recovered",
                Report::Flapping { .. } => "flapping",
                Report::FlappingEnded { .. } => "flapping-ended",
                Report::KeyUnavailable { .. } => "unavailable",
                Report::KeyAvailable { .. } => "available",
                Report::WriteReplaced { .. } => "replaced",
                Report::WriteSeen { .. } => "seen",
                _ => "other",
            })
            .collect()
    }

    #[test]
    fn restore_reports_how_long_the_key_was_wrong() {
        let mut g = guard(Action::Restore);
        let t0 = Instant::now();
        assert_eq!(
            g.observe(v("1"), Trigger::Startup, None, t0),
            Decision::default()
        );
        assert!(g.holding());

        let d = g.observe(v("0"), Trigger::Netconf, None, t0);
        assert!(d.restore);
        assert!(d.reports.is_empty(), "nothing to say before the restore");
        let r = g.restored(
            v("1"),
            Trigger::Netconf,
            None,
            t0 + Duration::from_micros(30),
        );
        assert!(!r.restore);
        assert_eq!(
            r.reports,
            vec![Report::DriftRestored {
                key: g.guard.key.clone(),
                want: Value::new("1"),
                old: Value::new("0"),
                trigger: Trigger::Netconf,
                wrong_for: Duration::from_micros(30),
                attempts: 1,
                cause: None,
            }]
        );
        assert_eq!(g.restores, 1);
        assert!(g.holding());
        assert_eq!(g.next_deadline(), None, "idle: nothing scheduled");
    }

    #[test]
    fn alert_reports_once_and_again_on_recovery() {
        let mut g = guard(Action::Alert);
        let t0 = Instant::now();
        let d = g.observe(v("0"), Trigger::Startup, None, t0);
        assert!(!d.restore, "alert never writes");
        assert_eq!(names(&d.reports), ["alerted"]);
        // The timed re-read sees the same drift: no second report.
        assert_eq!(
            g.observe(v("0"), Trigger::Reread, None, t0 + Duration::from_secs(30)),
            Decision::default()
        );
        let d = g.observe(v("1"), Trigger::Netconf, None, t0 + Duration::from_secs(40));
        match &d.reports[..] {
            [Report::Recovered { wrong_for, old, .. }] => {
                assert_eq!(*wrong_for, Duration::from_secs(40));
                assert_eq!(old, &Value::new("0"));
            }
            other => panic!("expected one recovery, got {other:?}"),
        }
    }

    #[test]
    fn failed_restore_is_reported_once_and_retried_with_backoff() {
        let (mut g, t0) = knocked_down();
        let r = write_refused(&mut g, Trigger::Netconf, t0).reports;
        assert_eq!(names(&r), ["failed"]);
        assert_eq!(r[0].priority(), crate::report::Priority::Crit);
        // An event before the retry is due restores at once: the refusal may be over.
        assert_retry_due_but_a_change_restores_at_once(&mut g, t0, Duration::from_millis(50));

        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..12 {
            let due = g.next_deadline().expect("retry scheduled");
            delays.push(due - now);
            now = due;
            assert_eq!(
                g.tick(now),
                Decision {
                    recheck: true,
                    ..Decision::default()
                },
                "retry due, nothing to say"
            );
            assert!(g.observe(v("0"), Trigger::Retry, None, now).restore);
            let r = write_refused(&mut g, Trigger::Retry, now).reports;
            assert!(r.is_empty(), "same failure is not reported again");
        }
        assert_eq!(delays[0], RETRY_FIRST);
        assert_eq!(delays[1], RETRY_FIRST * 2);
        assert_eq!(
            *delays.last().expect("delays"),
            RETRY_MAX,
            "backoff is bounded"
        );
        assert_eq!(RETRY_MAX, Duration::from_secs(5), "a few seconds at most");

        // A different cause is news.
        let r = g
            .restored(
                err(io::ErrorKind::ReadOnlyFilesystem, Op::Write),
                Trigger::Retry,
                None,
                now,
            )
            .reports;
        assert_eq!(names(&r), ["failed"]);

        // Success after failures says how many attempts it took.
        now = g.next_deadline().expect("retry");
        assert!(g.tick(now).recheck);
        assert!(g.observe(v("0"), Trigger::Retry, None, now).restore);
        assert_sticks_after(&mut g, Trigger::Retry, now, 15);
    }

    #[test]
    fn a_contested_write_is_retried_at_once_then_counts_as_failed() {
        let (mut g, t0) = knocked_down();
        // Another writer got in between: write again straight away, quietly.
        for _ in 0..CONTESTED_RETRIES {
            assert_eq!(
                g.restored(v("0"), Trigger::Netconf, None, t0),
                Decision {
                    restore: true,
                    ..Decision::default()
                }
            );
        }
        let d = g.restored(v("0"), Trigger::Netconf, None, t0);
        assert!(!d.restore);
        match &d.reports[..] {
            [Report::RestoreFailed { error, .. }] => {
                assert_eq!(
                    error,
                    "the write did not stick: it read 0 right after each of 4 writes in a row (another writer keeps setting it, or the kernel ignores the value); restoring goes on at every change"
                )
            }
            other => panic!("{other:?}"),
        }
        // The other writer's next change is restored at once, not after the backoff.
        assert_retry_due_but_a_change_restores_at_once(&mut g, t0, Duration::from_millis(1));
    }

    #[test]
    fn a_restore_that_wins_the_race_counts_its_attempts() {
        let (mut g, t0) = knocked_down();
        assert!(g.restored(v("0"), Trigger::Netconf, None, t0).restore);
        assert_sticks_after(&mut g, Trigger::Netconf, t0, 2);
    }

    #[test]
    fn flapping_is_reported_once_with_the_count_and_restoring_goes_on() {
        let mut g = guard(Action::Restore);
        let t0 = Instant::now();
        g.observe(v("1"), Trigger::Startup, None, t0);
        let mut all = Vec::new();
        let mut now = t0;
        for _ in 0..20 {
            now += Duration::from_millis(100);
            all.extend(drop_and_restore(&mut g, now));
        }
        assert_eq!(names(&all), ["restored", "restored", "flapping"]);
        match &all[2] {
            Report::Flapping { drops, .. } => assert_eq!(*drops, 3),
            other => panic!("{other:?}"),
        }
        assert_eq!(g.restores, 20);

        // Calm for a whole window: the episode ends with its total.
        let calm = g.next_deadline().expect("episode end scheduled");
        assert_eq!(calm, now + Duration::from_secs(10));
        assert_eq!(g.tick(calm - Duration::from_millis(1)), Decision::default());
        let d = g.tick(calm);
        assert!(!d.recheck, "nothing failed: no retry");
        match &d.reports[..] {
            [Report::FlappingEnded { drops, lasted, .. }] => {
                assert_eq!(*drops, 20);
                assert_eq!(*lasted, Duration::from_millis(1900));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(g.next_deadline(), None);

        // After calming down, single drops are reported again.
        now = calm + Duration::from_secs(1);
        assert_eq!(names(&drop_and_restore(&mut g, now)), ["restored"]);
    }

    #[test]
    fn replaced_writes_in_a_storm_are_one_flapping_episode_not_drops() {
        let mut g = guard(Action::Prevent);
        let t0 = Instant::now();
        g.observe(v("1"), Trigger::Startup, None, t0);
        let replaced = writer(true);
        let mut now = t0;
        let mut reports = Vec::new();
        for _ in 0..1000 {
            now += Duration::from_millis(1);
            let d = g.write_seen(&replaced, now);
            assert!(
                d.recheck && !d.restore,
                "the key is checked, not written blindly"
            );
            reports.extend(d.reports);
        }
        assert_eq!(
            names(&reports),
            ["replaced", "replaced", "flapping"],
            "writes before the threshold are reported one by one"
        );
        reports.drain(..2);
        assert!(
            reports[0]
                .to_string()
                .contains("written or knocked down 3 times within 10s; still keeping it"),
            "{}",
            reports[0]
        );
        assert_eq!((g.drops, g.flapping_episodes), (0, 1), "no drop happened");
        // An audit write (the key moves, and its drop is counted by observe) adds nothing.
        assert!(g.write_seen(&writer(false), now).reports.is_empty());

        let calm = g.next_deadline().expect("episode end scheduled");
        assert_eq!(calm, now + Duration::from_secs(10));
        match &g.tick(calm).reports[..] {
            [r @ Report::FlappingEnded { drops: 1000, .. }] => assert!(
                r.to_string().contains("1000 replaced writes and drops"),
                "{r}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            names(
                &g.write_seen(&replaced, calm + Duration::from_secs(1))
                    .reports
            ),
            ["replaced"]
        );
        assert_eq!(g.writes_replaced, 1001);
        // A reload keeps the count (a Prometheus counter never goes back).
        let mut reloaded = guard(Action::Prevent);
        reloaded.carry_over(g);
        assert_eq!(reloaded.writes_replaced, 1001);
    }

    fn writer(replaced: bool) -> Writer {
        Writer {
            pid: 4242,
            comm: "sysctl".into(),
            written: "0\\n".into(),
            replaced,
            ..Writer::default()
        }
    }

    #[test]
    fn a_write_is_reported_with_its_writer_as_replaced_or_seen() {
        let t0 = Instant::now();
        // `prevent` in force: the hook replaced it.
        let mut g = guard(Action::Prevent);
        let d = g.write_seen(&writer(true), t0);
        assert!(d.recheck);
        match &d.reports[..] {
            [Report::WriteReplaced { key, want, writer }] => {
                assert_eq!((key, want), (&g.guard.key, &Value::new("1")));
                assert!(writer.replaced);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!((g.writes_replaced, g.drops), (1, 0));
        // A `prevent` key whose replacement is not in force, and the other actions: seen, with
        // the action that follows; it is no replaced write.
        for action in [Action::Prevent, Action::Restore, Action::Alert] {
            let mut g = guard(action);
            match &g.write_seen(&writer(false), t0).reports[..] {
                [
                    Report::WriteSeen {
                        action: a, writer, ..
                    },
                ] => {
                    assert_eq!(*a, action);
                    assert_eq!(writer.pid, 4242);
                }
                other => panic!("{action:?}: {other:?}"),
            }
            assert_eq!(g.writes_replaced, 0);
        }
    }

    #[test]
    fn while_flapping_a_write_is_counted_not_reported() {
        let mut g = guard(Action::Restore);
        let mut now = Instant::now();
        for _ in 0..3 {
            now += Duration::from_millis(1);
            drop_and_restore(&mut g, now);
        }
        assert_eq!(g.flapping_episodes, 1);
        let d = g.write_seen(&writer(false), now);
        assert!(d.reports.is_empty(), "{:?}", d.reports);
        assert!(d.recheck, "still checked");
    }

    #[test]
    fn the_snapshot_shows_the_state_the_counters_and_a_refusal() {
        use crate::snapshot::Degradation;
        let mut g = guard(Action::Restore);
        let t0 = Instant::now();
        let s = g.snapshot(GuardId(7), &Impairments::default());
        assert_eq!((s.state, s.value), (KeyState::Unknown, None));
        g.observe(v("0"), Trigger::Netconf, None, t0);
        write_refused(&mut g, Trigger::Netconf, t0);
        let impairments = Impairments {
            refused: g.refusal(),
            ..Impairments::default()
        };
        let s = g.snapshot(GuardId(7), &impairments);
        assert_eq!(s.id, GuardId(7));
        assert_eq!(
            (s.key.as_str(), s.want.as_str(), s.action),
            ("net.ipv4.conf.all.forwarding", "1", "restore")
        );
        assert_eq!((s.state, s.value.as_deref()), (KeyState::Wrong, Some("0")));
        assert_eq!((s.drops, s.restores, s.failed_restores), (1, 0, 1));
        match &s.degradations[..] {
            [Degradation::CannotRestore { error }] => {
                assert!(error.contains("lacks CAP_NET_ADMIN"))
            }
            other => panic!("{other:?}"),
        }
        g.observe(v("1"), Trigger::Netconf, None, t0 + Duration::from_secs(1));
        assert_eq!(g.refusal(), None, "over once the key holds");
        let s = g.snapshot(GuardId(7), &Impairments::default());
        assert_eq!(
            (s.state, s.value.as_deref()),
            (KeyState::Holding, Some("1"))
        );
        assert_eq!(s.wrong.count, 1);
    }

    #[test]
    fn a_long_storm_keeps_memory_bounded() {
        let mut g = guard(Action::Restore);
        let mut now = Instant::now();
        for _ in 0..100_000 {
            now += Duration::from_micros(20);
            drop_and_restore(&mut g, now);
        }
        assert!(
            g.recent_drops.len() <= 3,
            "{} drops kept",
            g.recent_drops.len()
        );
        match &g.tick(now + Duration::from_secs(10)).reports[..] {
            [Report::FlappingEnded { drops, .. }] => assert_eq!(*drops, 100_000),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sparse_drops_are_not_flapping() {
        let mut g = guard(Action::Restore);
        let mut now = Instant::now();
        for _ in 0..10 {
            now += Duration::from_secs(6);
            assert_eq!(names(&drop_and_restore(&mut g, now)), ["restored"]);
        }
    }

    #[test]
    fn missing_key_is_reported_once_and_its_return_noticed() {
        let mut g = guard(Action::Restore);
        let t0 = Instant::now();
        let d = g.observe(
            err(io::ErrorKind::NotFound, Op::Read),
            Trigger::Startup,
            None,
            t0,
        );
        assert_eq!(names(&d.reports), ["unavailable"]);
        assert!(
            d.reports[0]
                .to_string()
                .contains("does not exist on this host")
        );
        assert!(g.unavailable());
        assert!(
            g.observe(
                err(io::ErrorKind::NotFound, Op::Read),
                Trigger::Reread,
                None,
                t0
            )
            .reports
            .is_empty()
        );
        let d = g.observe(v("0"), Trigger::Link, None, t0);
        assert_eq!(names(&d.reports), ["available"]);
        assert!(d.restore, "a key that comes back wrong is restored");
    }
}
