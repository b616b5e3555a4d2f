//! The `alertmanager` format: reports become alerts with a lifetime, as Prometheus makes them.
//! A key's alert fires while the key is wrong (or flapping, or unreadable), is re-sent before
//! it would expire in Alertmanager, and is resolved with `endsAt` when the key holds again. So
//! Alertmanager's grouping, inhibition, silences and routing work as for any Prometheus alert.
//! Pure: times are passed in; the delivery task decides when to send.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{Details, Notice, rfc3339};
use crate::guard::Action;
use crate::report::Report;
use crate::snapshot::KeyState;

/// Firing alerts are sent again this often ...
pub const RESEND_EVERY: Duration = Duration::from_secs(60);
/// ... each valid for this long: Alertmanager resolves a firing alert by itself if fwdguard goes
/// away. Four re-sends, as Prometheus does (`4 * resend_delay`).
pub const VALID_FOR: Duration = Duration::from_secs(4 * 60);

pub use crate::alerting::{
    EVENT_LASTS, EVENTS_LOST, Effect, HAZARD, KEY_FLAPPING, KEY_RESTORED, KEY_UNAVAILABLE,
    KEY_WRONG, OUTPUT_LOST, PERSISTED_CONFLICT, PREVENT_UNAVAILABLE, RELOAD_FAILED, Severity, TEST,
    TEST_LASTS, WRITE_REPLACED,
};

/// What a notice does: what its kind does, at a higher severity for a key that flaps under
/// `alert`.
fn effects(notice: &Notice) -> impl Iterator<Item = Effect> {
    // Under `alert` each drop leaves the key wrong until someone acts.
    let critical = matches!(
        notice,
        Notice::Report(Report::Flapping {
            action: Action::Alert,
            ..
        })
    );
    let effects = notice.event().info().alerts.iter();
    effects.map(move |&effect| match effect {
        Effect::Fire(name, _) if critical => Effect::Fire(name, Severity::Critical),
        _ => effect,
    })
}

/// Whether a notice can end an alert, so an `alertmanager` endpoint must see it even when its
/// `events` do not select it.
pub fn resolves(notice: &Notice) -> bool {
    effects(notice).any(|e| matches!(e, Effect::Resolve(_)))
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AlertId {
    name: &'static str,
    key: Option<String>,
}

#[derive(Debug, Clone)]
struct Alert {
    severity: Severity,
    summary: String,
    description: String,
    starts_at: SystemTime,
    /// Set for alerts that end by themselves, and when resolved.
    ends_at: Option<SystemTime>,
    resolved: bool,
    /// Changed since Alertmanager last heard of it.
    dirty: bool,
}

/// One endpoint's alerts.
#[derive(Debug)]
pub struct Alerts {
    instance: String,
    alerts: BTreeMap<AlertId, Alert>,
}

/// Alertmanager's `postableAlert`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Postable<'a> {
    labels: BTreeMap<&'static str, &'a str>,
    annotations: BTreeMap<&'static str, &'a str>,
    starts_at: String,
    ends_at: String,
}

impl Alerts {
    /// `instance`: the `instance` label, this host's name.
    pub fn new(instance: impl Into<String>) -> Self {
        Self {
            instance: instance.into(),
            alerts: BTreeMap::new(),
        }
    }

    /// Applies a notice made at `time`. `selected`: whether the endpoint's `events` ask for
    /// it; a notice that is not selected can still resolve an alert.
    pub fn apply(&mut self, notice: &Notice, selected: bool, time: SystemTime) {
        let details = Details::of(notice);
        let summary = notice.summary();
        for effect in effects(notice) {
            match effect {
                Effect::Fire(name, severity) | Effect::FireFor(name, severity, _) if selected => {
                    let ends_at = match effect {
                        Effect::FireFor(.., lasts) => Some(time + lasts),
                        _ => None,
                    };
                    let id = AlertId {
                        name,
                        key: details.key.clone(),
                    };
                    let description = describe(&summary, &details, time);
                    let alert = self.alerts.entry(id).or_insert_with(|| Alert {
                        severity,
                        summary: String::new(),
                        description: String::new(),
                        starts_at: time,
                        ends_at,
                        resolved: false,
                        dirty: true,
                    });
                    if alert.resolved {
                        // Fired again before Alertmanager heard it end: a new episode.
                        alert.starts_at = time;
                        alert.resolved = false;
                    }
                    alert.severity = severity;
                    alert.summary = summary.clone();
                    alert.description = description;
                    alert.ends_at = ends_at;
                    alert.dirty = true;
                }
                Effect::Fire(..) | Effect::FireFor(..) => {}
                Effect::Resolve(name) => {
                    let id = AlertId {
                        name,
                        key: details.key.clone(),
                    };
                    if let Some(alert) = self.alerts.get_mut(&id)
                        && !alert.resolved
                    {
                        alert.resolved = true;
                        alert.ends_at = Some(time);
                        alert.description = format!(
                            "{}\nResolved: {summary}",
                            alert.description.lines().next().unwrap_or_default()
                        );
                        alert.dirty = true;
                    }
                }
            }
        }
    }

    /// Whether something changed that Alertmanager has not been told.
    pub fn has_changes(&self) -> bool {
        self.alerts.values().any(|a| a.dirty)
    }

    /// Whether an alert fires until resolved, so it must be re-sent before it expires.
    pub fn firing(&self) -> bool {
        self.alerts
            .values()
            .any(|a| !a.resolved && a.ends_at.is_none())
    }

    /// Time for a re-send: every firing alert counts as changed again.
    pub fn refresh(&mut self) {
        for a in self.alerts.values_mut() {
            if !a.resolved && a.ends_at.is_none() {
                a.dirty = true;
            }
        }
    }

    /// The body to POST to `/api/v2/alerts`: every changed alert, as of `now`. `None` when
    /// there is nothing to send.
    pub fn body(&self, now: SystemTime) -> Option<Vec<u8>> {
        let list: Vec<Postable> = self
            .alerts
            .iter()
            .filter(|(_, a)| a.dirty)
            .map(|(id, a)| {
                let mut labels = BTreeMap::from([
                    ("alertname", id.name),
                    ("instance", self.instance.as_str()),
                    ("severity", a.severity.as_str()),
                ]);
                if let Some(key) = &id.key {
                    labels.insert("key", key);
                }
                Postable {
                    labels,
                    annotations: BTreeMap::from([
                        ("summary", a.summary.as_str()),
                        ("description", a.description.as_str()),
                    ]),
                    starts_at: rfc3339(a.starts_at),
                    ends_at: rfc3339(a.ends_at.unwrap_or(now + VALID_FOR)),
                }
            })
            .collect();
        if list.is_empty() {
            return None;
        }
        Some(serde_json::to_vec(&list).unwrap_or_else(|e| unreachable!("plain struct: {e}")))
    }

    /// Alertmanager took the body from [`body`](Self::body): resolved alerts are done.
    pub fn sent(&mut self) {
        self.alerts.retain(|_, a| !a.resolved);
        for a in self.alerts.values_mut() {
            a.dirty = false;
        }
    }

    /// Delivery was given up: forget resolutions and events; firing alerts go out again with
    /// the next re-send.
    pub fn give_up(&mut self) {
        self.alerts
            .retain(|_, a| !a.resolved && a.ends_at.is_none());
        for a in self.alerts.values_mut() {
            a.dirty = false;
        }
    }

    /// Resolves the per-key alerts that the guard's state says are over: a key that holds has
    /// no `FwdguardKeyWrong`, a readable one no `FwdguardKeyUnavailable`. Reports alone can
    /// miss that: a key under `alert` that comes back during a flapping episode is not
    /// reported. `state` gives a key's state, `None` for a key the guard does not know.
    pub fn reconcile(&mut self, state: impl Fn(&str) -> Option<KeyState>, now: SystemTime) {
        for (id, alert) in &mut self.alerts {
            let Some(key) = &id.key else { continue };
            let over = matches!(
                (id.name, state(key)),
                (KEY_WRONG, Some(KeyState::Holding))
                    | (KEY_UNAVAILABLE, Some(KeyState::Holding | KeyState::Wrong))
            );
            if over && !alert.resolved {
                alert.resolved = true;
                alert.ends_at = Some(now);
                alert.dirty = true;
            }
        }
    }

    /// Drops alerts that ended by themselves, so the map does not grow.
    pub fn expire(&mut self, now: SystemTime) {
        self.alerts
            .retain(|_, a| a.dirty || a.ends_at.is_none_or(|end| end > now));
    }
}

fn describe(summary: &str, d: &Details, time: SystemTime) -> String {
    let mut s = format!("{summary} (at {})", rfc3339(time));
    if let (Some(key), Some(want)) = (&d.key, &d.wanted) {
        s.push_str(&format!(". {key} should be {want}"));
        if let Some(seen) = &d.observed {
            s.push_str(&format!(", was {seen}"));
        }
    }
    if let Some(count) = d.count {
        s.push_str(&format!("; count {count}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SysctlKey;
    use crate::report::Trigger;
    use crate::value::Value;

    fn key() -> SysctlKey {
        SysctlKey::parse("net.ipv4.conf.all.forwarding").expect("key")
    }

    fn alerted() -> Notice {
        Notice::Report(Report::DriftAlerted {
            key: key(),
            want: Value::new("1"),
            value: Value::new("0"),
            trigger: Trigger::Netconf,
            cause: None,
        })
    }

    fn recovered() -> Notice {
        Notice::Report(Report::Recovered {
            key: key(),
            want: Value::new("1"),
            old: Value::new("0"),
            trigger: Trigger::Netconf,
            wrong_for: Duration::from_secs(3),
            cause: None,
        })
    }

    fn sent(a: &Alerts, now: SystemTime) -> Vec<serde_json::Value> {
        let body = a.body(now).expect("something to send");
        serde_json::from_slice(&body).expect("json")
    }

    #[test]
    fn wrong_key_fires_until_it_holds_again() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut a = Alerts::new("docker-7");
        a.apply(&alerted(), true, t0);
        assert!(a.firing());
        let list = sent(&a, t0);
        assert_eq!(list.len(), 1);
        let alert = &list[0];
        assert_eq!(alert["labels"]["alertname"], KEY_WRONG);
        assert_eq!(alert["labels"]["instance"], "docker-7");
        assert_eq!(alert["labels"]["key"], "net.ipv4.conf.all.forwarding");
        assert_eq!(alert["labels"]["severity"], "critical");
        assert!(
            alert["annotations"]["summary"]
                .as_str()
                .expect("summary")
                .starts_with("net.ipv4.conf.all.forwarding is 0, want 1")
        );
        assert_eq!(alert["startsAt"], rfc3339(t0));
        assert_eq!(alert["endsAt"], rfc3339(t0 + VALID_FOR));
        a.sent();
        assert!(!a.has_changes());

        // A re-send moves endsAt on.
        let t1 = t0 + RESEND_EVERY;
        a.refresh();
        assert_eq!(sent(&a, t1)[0]["endsAt"], rfc3339(t1 + VALID_FOR));
        assert_eq!(sent(&a, t1)[0]["startsAt"], rfc3339(t0));
        a.sent();

        // Holding again: resolved with endsAt = now, sent once, then forgotten.
        let t2 = t1 + Duration::from_secs(5);
        a.apply(&recovered(), false, t2);
        assert!(!a.firing());
        assert_eq!(sent(&a, t2)[0]["endsAt"], rfc3339(t2));
        a.sent();
        assert!(a.body(t2).is_none());
    }

    #[test]
    fn the_guards_state_resolves_what_reports_missed() {
        let t = SystemTime::UNIX_EPOCH;
        let mut a = Alerts::new("h");
        a.apply(&alerted(), true, t);
        a.sent();
        a.reconcile(|_| Some(KeyState::Wrong), t);
        assert!(a.firing());
        a.reconcile(|_| None, t);
        assert!(a.firing(), "a key the guard does not know stays as it is");
        a.reconcile(|_| Some(KeyState::Holding), t);
        assert!(!a.firing());
        assert_eq!(sent(&a, t)[0]["endsAt"], rfc3339(t));
    }

    #[test]
    fn unselected_notices_fire_nothing_but_still_resolve() {
        let t = SystemTime::UNIX_EPOCH;
        let mut a = Alerts::new("h");
        a.apply(&alerted(), false, t);
        assert!(a.body(t).is_none());
        assert!(resolves(&recovered()));
        assert!(!resolves(&alerted()));
    }

    #[test]
    fn flapping_is_one_alert_with_the_count() {
        let t = SystemTime::UNIX_EPOCH;
        let mut a = Alerts::new("h");
        a.apply(
            &Notice::Report(Report::Flapping {
                key: key(),
                action: Action::Restore,
                drops: 5,
                window: Duration::from_secs(60),
            }),
            true,
            t,
        );
        let list = sent(&a, t);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["labels"]["alertname"], KEY_FLAPPING);
        assert_eq!(list[0]["labels"]["severity"], "warning");
        assert!(
            list[0]["annotations"]["description"]
                .as_str()
                .expect("description")
                .contains("count 5")
        );
        a.sent();
        a.apply(
            &Notice::Report(Report::FlappingEnded {
                key: key(),
                action: Action::Restore,
                drops: 812,
                lasted: Duration::from_secs(20),
            }),
            true,
            t,
        );
        assert_eq!(sent(&a, t)[0]["endsAt"], rfc3339(t));
    }

    #[test]
    fn events_end_by_themselves_and_need_no_resend() {
        let t = SystemTime::UNIX_EPOCH;
        let mut a = Alerts::new("h");
        a.apply(&Notice::Report(Report::EventsLost { times: 2 }), true, t);
        assert!(!a.firing());
        let list = sent(&a, t);
        assert_eq!(list[0]["labels"]["alertname"], EVENTS_LOST);
        assert!(list[0]["labels"].get("key").is_none());
        assert_eq!(list[0]["endsAt"], rfc3339(t + EVENT_LASTS));
        a.sent();
        a.expire(t + EVENT_LASTS + Duration::from_secs(1));
        assert!(a.alerts.is_empty());
    }
}
