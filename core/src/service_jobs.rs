//! Which service job a drop belongs to: a pure record of the jobs systemd runs on the units
//! fwdguard watches, fed by the binary's D-Bus job watcher, asked when a drop is reported.
//!
//! A drop during a job, or within `window` after it finished, is attributed to it: on EL7
//! `systemctl restart network` writes `net.ipv4.ip_forward=0` while the job runs; a start that
//! re-applies sysctl files may do it just after.

use std::fmt;
use std::time::{Duration, Instant};

use crate::human::human;

/// The units whose jobs are watched unless the configuration says otherwise.
pub const DEFAULT_UNITS: [&str; 8] = [
    "network.service",
    "NetworkManager.service",
    "systemd-networkd.service",
    "networking.service",
    "wicked.service",
    "systemd-sysctl.service",
    "firewalld.service",
    "docker.service",
];

/// What the D-Bus watcher saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// `JobNew` for a watched unit, sent at once.
    Started { id: u32, unit: String },
    /// The job's `JobType` (`restart`, `stop`, ...), when systemd answered the question.
    Typed { id: u32, kind: String },
    /// `JobRemoved`: the job finished with `result` (`done`, `failed`, `canceled`, ...).
    Finished {
        id: u32,
        unit: String,
        result: String,
    },
    /// Subscribed (again) to systemd's job signals.
    Connected,
    /// The bus connection is gone or systemd is not on it; the watcher retries.
    Lost { error: String },
}

/// A job a drop is attributed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCause {
    pub unit: String,
    pub kind: Option<String>,
    /// `None`: still running when the drop was seen.
    pub after: Option<Duration>,
    /// Set once the job has finished.
    pub result: Option<String>,
}

impl fmt::Display for JobCause {
    /// "during restart of network.service", "120ms after restart of network.service".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let job = match &self.kind {
            Some(k) => format!("{k} of {}", self.unit),
            None => format!("a job of {}", self.unit),
        };
        match self.after {
            None => write!(f, "during {job}"),
            Some(d) => write!(f, "{} after {job}", human(d)),
        }
    }
}

#[derive(Debug, Clone)]
struct Job {
    id: u32,
    unit: String,
    kind: Option<String>,
    /// When it finished, and how.
    ended: Option<(Instant, String)>,
}

/// The jobs running now and those finished within the window.
#[derive(Debug, Clone)]
pub struct ServiceJobs {
    window: Duration,
    jobs: Vec<Job>,
}

impl ServiceJobs {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            jobs: Vec::new(),
        }
    }

    /// Records an event; returns the finished job when it is one (a trigger to re-check).
    pub fn record(&mut self, event: &JobEvent, now: Instant) -> Option<JobCause> {
        self.expire(now);
        match event {
            JobEvent::Started { id, unit } => {
                self.jobs.retain(|j| j.id != *id);
                self.jobs.push(Job {
                    id: *id,
                    unit: unit.clone(),
                    kind: None,
                    ended: None,
                });
                None
            }
            JobEvent::Typed { id, kind } => {
                if let Some(j) = self.jobs.iter_mut().find(|j| j.id == *id) {
                    j.kind = Some(kind.clone());
                }
                None
            }
            JobEvent::Finished { id, unit, result } => {
                let job = match self.jobs.iter_mut().find(|j| j.id == *id) {
                    Some(j) => j,
                    None => {
                        // Started before fwdguard subscribed: only its end is known.
                        self.jobs.push(Job {
                            id: *id,
                            unit: unit.clone(),
                            kind: None,
                            ended: None,
                        });
                        self.jobs.last_mut()?
                    }
                };
                job.ended = Some((now, result.clone()));
                Some(JobCause {
                    unit: job.unit.clone(),
                    kind: job.kind.clone(),
                    after: Some(Duration::ZERO),
                    result: Some(result.clone()),
                })
            }
            // Jobs that ended while the bus was away are unknown: forget the running ones
            // rather than blame them for hours.
            JobEvent::Lost { .. } => {
                self.jobs.retain(|j| j.ended.is_some());
                None
            }
            JobEvent::Connected => None,
        }
    }

    /// The job a drop seen at `now` belongs to: a running one first (the latest started),
    /// else the one that finished last within the window.
    pub fn cause(&self, now: Instant) -> Option<JobCause> {
        let running = self.jobs.iter().rev().find(|j| j.ended.is_none());
        if let Some(j) = running {
            return Some(JobCause {
                unit: j.unit.clone(),
                kind: j.kind.clone(),
                after: None,
                result: None,
            });
        }
        self.jobs
            .iter()
            .filter_map(|j| {
                let (at, result) = j.ended.as_ref()?;
                let after = now.saturating_duration_since(*at);
                (after <= self.window).then(|| JobCause {
                    unit: j.unit.clone(),
                    kind: j.kind.clone(),
                    after: Some(after),
                    result: Some(result.clone()),
                })
            })
            .min_by_key(|c| c.after)
    }

    fn expire(&mut self, now: Instant) {
        let window = self.window;
        self.jobs.retain(|j| {
            j.ended
                .as_ref()
                .is_none_or(|(at, _)| now.saturating_duration_since(*at) <= window)
        });
    }
}

impl From<JobCause> for crate::observation::Cause {
    fn from(c: JobCause) -> Self {
        crate::observation::Cause::ServiceJob {
            unit: c.unit,
            job: c.kind.unwrap_or_else(|| "a job".into()),
            result: c.result.unwrap_or_default(),
            after: c.after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(jobs: &mut ServiceJobs, id: u32, unit: &str, now: Instant) {
        jobs.record(
            &JobEvent::Started {
                id,
                unit: unit.into(),
            },
            now,
        );
        jobs.record(
            &JobEvent::Typed {
                id,
                kind: "restart".into(),
            },
            now,
        );
    }

    #[test]
    fn during_and_after_a_job() {
        let mut jobs = ServiceJobs::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(jobs.cause(t0), None);
        started(&mut jobs, 7, "network.service", t0);
        let c = jobs.cause(t0 + Duration::from_millis(10)).expect("cause");
        assert_eq!(c.to_string(), "during restart of network.service");
        let done = jobs
            .record(
                &JobEvent::Finished {
                    id: 7,
                    unit: "network.service".into(),
                    result: "done".into(),
                },
                t0 + Duration::from_secs(1),
            )
            .expect("finished job");
        assert_eq!(done.result.as_deref(), Some("done"));
        let c = jobs
            .cause(t0 + Duration::from_millis(1_120))
            .expect("cause");
        assert_eq!(c.to_string(), "120.0ms after restart of network.service");
        assert_eq!(jobs.cause(t0 + Duration::from_secs(7)), None);
    }

    #[test]
    fn a_lost_bus_forgets_running_jobs() {
        let mut jobs = ServiceJobs::new(Duration::from_secs(5));
        let t0 = Instant::now();
        started(&mut jobs, 1, "docker.service", t0);
        jobs.record(
            &JobEvent::Lost {
                error: "gone".into(),
            },
            t0,
        );
        assert_eq!(jobs.cause(t0), None);
    }
}
