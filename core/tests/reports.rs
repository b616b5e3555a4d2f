//! What every kind of report says, byte for byte: the journal entry (`MESSAGE`, `PRIORITY`,
//! `MESSAGE_ID`, the `FWDGUARD_*` fields), the `json` and `slack` webhook bodies and what an
//! `alertmanager` endpoint is sent, for a sample of each kind (and the test alert), against
//! `tests/reports.golden`. A change to any of them shows up here as a diff.
//!
//! After a deliberate change: `UPDATE_GOLDEN=1 cargo test -p fwdguard-core --test reports`,
//! and review the diff of `reports.golden`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use fwdguard_core::config::Action;
use fwdguard_core::key::SysctlKey;
use fwdguard_core::payload::alertmanager::{self, Alerts};
use fwdguard_core::payload::{self, Notice, Reporter};
use fwdguard_core::report::{Cause, Event, PersistedConflict, Report, Trigger, Writer};
use fwdguard_core::value::Value;

fn key() -> SysctlKey {
    SysctlKey::parse("net.ipv4.conf.all.forwarding").expect("key")
}

/// A writer of which the hook knows only what the kernel gave: its process was gone before
/// `/proc` was read.
fn writer(replaced: bool) -> Box<Writer> {
    Box::new(Writer {
        pid: 4242,
        ppid: 4240,
        uid: 1000,
        comm: "sysctl".into(),
        written: "0\\n".into(),
        replaced,
        ..Writer::default()
    })
}

/// A writer with everything `/proc` tells: parent, cgroup, unit and container.
fn named_writer(replaced: bool) -> Box<Writer> {
    Box::new(Writer {
        parent_comm: Some("network".into()),
        cgroup: Some("/system.slice/docker-0123.scope".into()),
        unit: Some("docker-0123.scope".into()),
        container: Some("docker:0123456789ab".into()),
        ..*writer(replaced)
    })
}

fn conflict() -> PersistedConflict {
    PersistedConflict {
        key: key(),
        want: Value::new("1"),
        value: "0".into(),
        source: "/etc/sysctl.conf:3".into(),
        appliers: vec!["systemd-sysctl".into(), "sysctl -p (procps-ng 4)".into()],
    }
}

/// One report of each kind, some kinds more than once, in an order that fires alerts before
/// the reports that resolve them.
fn samples() -> Vec<Notice> {
    let want = || Value::new("1");
    let zero = || Value::new("0");
    let reports = vec![
        Report::DriftAlerted {
            key: key(),
            want: want(),
            value: zero(),
            trigger: Trigger::Writer,
            cause: Some(Cause::Writer(named_writer(false))),
        },
        Report::RestoreFailed {
            key: key(),
            want: want(),
            value: zero(),
            error: "Permission denied (os error 13)".into(),
            attempt: 2,
            retry_in: Duration::from_millis(250),
            cause: None,
        },
        Report::DriftRestored {
            key: key(),
            want: want(),
            old: zero(),
            trigger: Trigger::Netconf,
            wrong_for: Duration::from_micros(1_250),
            attempts: 3,
            cause: Some(Cause::ServiceJob {
                unit: "network.service".into(),
                job: "restart".into(),
                result: "done".into(),
                after: Some(Duration::from_millis(20)),
            }),
        },
        Report::DriftRestored {
            key: key(),
            want: want(),
            old: zero(),
            trigger: Trigger::Inotify,
            wrong_for: Duration::from_micros(42),
            attempts: 1,
            cause: None,
        },
        Report::DriftAlerted {
            key: key(),
            want: want(),
            value: zero(),
            trigger: Trigger::Netconf,
            cause: None,
        },
        Report::Recovered {
            key: key(),
            want: want(),
            old: zero(),
            trigger: Trigger::Reread,
            wrong_for: Duration::from_secs(3),
            cause: Some(Cause::ServiceJob {
                unit: "network.service".into(),
                job: "stop".into(),
                result: String::new(),
                after: None,
            }),
        },
        Report::Flapping {
            key: key(),
            action: Action::Alert,
            drops: 5,
            window: Duration::from_secs(60),
        },
        Report::Flapping {
            key: key(),
            action: Action::Restore,
            drops: 6,
            window: Duration::from_secs(60),
        },
        Report::Flapping {
            key: key(),
            action: Action::Prevent,
            drops: 7,
            window: Duration::from_secs(90),
        },
        Report::FlappingEnded {
            key: key(),
            action: Action::Prevent,
            drops: 812,
            lasted: Duration::from_secs(20),
        },
        Report::FlappingEnded {
            key: key(),
            action: Action::Restore,
            drops: 9,
            lasted: Duration::from_millis(1_500),
        },
        Report::KeyUnavailable {
            key: key(),
            error: "No such file or directory (os error 2)".into(),
        },
        Report::KeyAvailable {
            key: key(),
            value: want(),
        },
        Report::ReloadFailed {
            origin: "/etc/fwdguard/fwdguard.toml".into(),
            error: "a.toml:1:1: bad\n  x\n  ^".into(),
        },
        Report::ConfigReloaded {
            origin: "/etc/fwdguard/fwdguard.toml".into(),
            guards: 2,
        },
        Report::EventsLost { times: 4 },
        Report::OutputLost {
            output: "the journal".into(),
            lost: 17,
        },
        Report::WriteReplaced {
            key: key(),
            want: want(),
            writer: named_writer(true),
        },
        Report::WriteSeen {
            key: key(),
            want: want(),
            action: Action::Restore,
            writer: writer(false),
        },
        Report::HookAttached {
            cgroup: "/".into(),
            netns: 4026531840,
            prevent: 2,
            audit: 1,
        },
        Report::PreventUnavailable {
            keys: vec![
                key(),
                SysctlKey::parse("net.ipv6.conf.all.forwarding").expect("key"),
            ],
            error: "the kernel has no cgroup/sysctl hook".into(),
            writers_named: false,
        },
        Report::PersistedConflict(conflict()),
        Report::PersistedConflictGone(conflict()),
        Report::Hazard {
            source: "/etc/sysctl.d/99-off.conf".into(),
            hazard: "sets net.ipv4.ip_forward = 0".into(),
            fix: "remove the line".into(),
        },
        Report::Hazard {
            source: String::new(),
            hazard: "firewalld turns forwarding off on reload".into(),
            fix: "set IPForward=yes".into(),
        },
    ];
    let mut notices: Vec<Notice> = reports.into_iter().map(Notice::Report).collect();
    notices.push(Notice::Test);
    notices
}

/// Everything the samples produce, as text.
fn render() -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let sent_at = t + Duration::from_millis(3);
    let origin = Reporter {
        host: "docker-7".into(),
        machine_id: "machine-id-of-docker-7".into(),
        version: "9.9.9",
    };
    let mut alerts = Alerts::new("docker-7");
    let mut out = Vec::new();
    for (i, notice) in samples().iter().enumerate() {
        let event = notice.event();
        let default = Event::defaults().contains(&event);
        out.push(format!("== {i} {} (default {default})", event.as_str()));
        if let Notice::Report(r) = notice {
            out.push("-- journal".into());
            out.push(format!("MESSAGE={}", r.to_string().escape_debug()));
            out.push(format!("PRIORITY={}", r.priority() as u8));
            out.push(format!("MESSAGE_ID={}", r.message_id()));
            for (name, value) in r.fields() {
                out.push(format!("{name}={}", value.escape_debug()));
            }
        }
        out.push("-- json".into());
        out.push(text(payload::json(notice, &origin, t, sent_at, 2)));
        out.push("-- slack".into());
        out.push(text(payload::slack(notice, &origin, t, 1)));
        let resolves = alertmanager::resolves(notice);
        out.push(format!("-- alertmanager (resolves {resolves})"));
        alerts.apply(notice, true, t);
        out.push(alerts.body(t).map_or("nothing to send".into(), text));
        alerts.sent();
    }
    out.push(String::new());
    out.join("\n")
}

fn text(body: Vec<u8>) -> String {
    String::from_utf8(body).expect("bodies are UTF-8")
}

#[test]
fn the_samples_cover_every_kind() {
    let kinds: BTreeSet<Event> = samples().iter().map(Notice::event).collect();
    assert_eq!(kinds, BTreeSet::from(Event::ALL));
}

#[test]
fn every_kind_of_report_says_what_it_said() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reports.golden");
    let got = render();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).expect("write reports.golden");
        return;
    }
    let want = std::fs::read_to_string(&path).expect("read reports.golden");
    if got != want {
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(g, w)| g != w)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "reports differ from tests/reports.golden from line {}:\n got: {:?}\nwant: {:?}\n(UPDATE_GOLDEN=1 rewrites it after a deliberate change)",
            line + 1,
            got.lines().nth(line),
            want.lines().nth(line)
        );
    }
}
