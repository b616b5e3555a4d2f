//! The D-Bus job watcher against a private dbus-daemon and a stand-in for systemd's Manager:
//! it subscribes, forwards jobs of the watched units with their type, ignores other units, and
//! survives the bus going away and coming back.

use std::time::Duration;

use crate::common::bus::{FakeSystemd, PrivateBus, dbus_daemon};
use fwdguard::service_jobs::JobEvent;
use fwdguard::source::jobs::{Bus, watch};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

/// The next event, skipping nothing.
fn next(rx: &mut mpsc::Receiver<JobEvent>, rt: &tokio::runtime::Runtime) -> JobEvent {
    rt.block_on(async { tokio::time::timeout(WAIT, rx.recv()).await })
        .expect("an event within 10s")
        .expect("the watcher is running")
}

/// The watcher on a runtime of its own, for `unit` on the bus at `address`; its events.
fn watching(address: String, unit: &str) -> (tokio::runtime::Runtime, mpsc::Receiver<JobEvent>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (tx, rx) = mpsc::channel(16);
    rt.spawn(watch(Bus::Address(address), vec![unit.into()], tx));
    (rt, rx)
}

/// The next two events are job `id` of `unit` starting, then its type, `kind`.
fn assert_job_started(
    rx: &mut mpsc::Receiver<JobEvent>,
    rt: &tokio::runtime::Runtime,
    id: u32,
    unit: &str,
    kind: &str,
) {
    assert_eq!(
        next(rx, rt),
        JobEvent::Started {
            id,
            unit: unit.into(),
        }
    );
    assert_eq!(
        next(rx, rt),
        JobEvent::Typed {
            id,
            kind: kind.into()
        }
    );
}

#[test]
fn jobs_of_watched_units_arrive_with_their_type() {
    let Some(program) = dbus_daemon("jobs_of_watched_units_arrive_with_their_type") else {
        return;
    };
    let bus = PrivateBus::start(&program);
    let systemd = FakeSystemd::start(&bus.address());
    let (rt, mut rx) = watching(bus.address(), "network.service");
    assert_eq!(next(&mut rx, &rt), JobEvent::Connected);
    systemd.wait_subscribed(1, WAIT);
    systemd.job_new(41, "cups.service", "start");
    systemd.job_new(42, "network.service", "restart");
    assert_job_started(&mut rx, &rt, 42, "network.service", "restart");
    systemd.job_removed(41, "cups.service", "done");
    systemd.job_removed(42, "network.service", "done");
    assert_eq!(
        next(&mut rx, &rt),
        JobEvent::Finished {
            id: 42,
            unit: "network.service".into(),
            result: "done".into()
        }
    );
}

#[test]
fn the_bus_going_away_and_coming_back() {
    let Some(program) = dbus_daemon("the_bus_going_away_and_coming_back") else {
        return;
    };
    let mut bus = PrivateBus::start(&program);
    let mut systemd = FakeSystemd::start(&bus.address());
    let (rt, mut rx) = watching(bus.address(), "docker.service");
    assert_eq!(next(&mut rx, &rt), JobEvent::Connected);
    systemd.wait_subscribed(1, WAIT);

    bus.stop();
    match next(&mut rx, &rt) {
        JobEvent::Lost { error } => assert!(!error.is_empty()),
        other => panic!("want Lost, got {other:?}"),
    }
    bus.restart();
    systemd.connect(&bus.address());
    // Reconnects with backoff (1 s, 2 s, ...) and subscribes again.
    loop {
        match next(&mut rx, &rt) {
            JobEvent::Connected => break,
            JobEvent::Lost { .. } => continue,
            other => panic!("want Connected, got {other:?}"),
        }
    }
    systemd.wait_subscribed(2, WAIT);
    systemd.job_new(7, "docker.service", "stop");
    assert_job_started(&mut rx, &rt, 7, "docker.service", "stop");
}

#[test]
fn no_bus_is_reported_and_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let address = format!("unix:path={}/nobody-listens", dir.path().display());
    let (rt, mut rx) = watching(address, "network.service");
    for _ in 0..2 {
        match next(&mut rx, &rt) {
            JobEvent::Lost { error } => {
                assert!(
                    error.contains("cannot connect to the system bus"),
                    "{error}"
                )
            }
            other => panic!("want Lost, got {other:?}"),
        }
    }
}

/// A bus that accepts the connection and then never says a word: said, and retried, not a
/// silent hang in the handshake.
#[test]
fn a_bus_that_never_answers_is_reported_and_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("silent-bus");
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    // Accepts every connection and keeps it open, unanswered, until the test ends.
    std::thread::spawn(move || {
        let mut open = Vec::new();
        while let Ok((conn, _)) = listener.accept() {
            open.push(conn);
        }
    });
    let (rt, mut rx) = watching(format!("unix:path={}", path.display()), "network.service");
    match next(&mut rx, &rt) {
        JobEvent::Lost { error } => assert_eq!(error, "the system bus did not answer within 5s"),
        other => panic!("want Lost, got {other:?}"),
    }
}
