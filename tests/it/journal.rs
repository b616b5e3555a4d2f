//! Under systemd, reports are native journal entries with their own priority, MESSAGE_ID and
//! FWDGUARD_* fields. The daemon runs in a private mount namespace where
//! /run/systemd/journal/socket is the test's own socket, and its stderr is marked as a
//! journal stream the way systemd marks it (JOURNAL_STREAM=DEV:INODE).

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::common::*;

/// Fills a datagram socket's queue (`net.unix.max_dgram_qlen`), as a stalled journald's is.
fn fill(path: &std::path::Path) {
    let sender = UnixDatagram::unbound().expect("socket");
    sender.set_nonblocking(true).expect("nonblocking");
    while sender.send_to(b"MESSAGE=filler\n", path).is_ok() {}
}

/// Drains `socket`; returns the MESSAGE of every entry.
fn drain(socket: &UnixDatagram) -> Vec<HashMap<String, String>> {
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::new();
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(journal_fields(&buf[..n]));
    }
    out
}

#[test]
fn a_journal_full_from_the_start_does_not_stop_the_guard() {
    in_private_netns(
        "a_journal_full_from_the_start_does_not_stop_the_guard",
        |ns| {
            let journal = FakeJournal::bind();
            journal
                .socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            fill(&journal.path());
            ns.write(ALL_FORWARDING, "0").expect("write");
            // Fixed at start and READY although every journal entry so far was dropped.
            let _daemon = journal.start_daemon(&forwarding_config("restore")).ready();
            assert_eq!(read(ALL_FORWARDING), "1");
            knock_and_wait(ns, 100);
            // journald reads again: it hears how much it missed.
            let start = Instant::now();
            let mut entries = Vec::new();
            while start.elapsed() < Duration::from_secs(2)
                && !entries.iter().any(|f: &HashMap<String, String>| {
                    f.get("MESSAGE_ID").map(String::as_str)
                        == Some("d5c2a0e4b7f14f7c9a1e3b6d8c0f2a47")
                })
            {
                entries.extend(drain(&journal.socket));
            }
            let lost = entries
                .iter()
                .find(|f| {
                    f.get("MESSAGE_ID").map(String::as_str)
                        == Some("d5c2a0e4b7f14f7c9a1e3b6d8c0f2a47")
                })
                .unwrap_or_else(|| panic!("no loss notice in {} entries", entries.len()));
            assert!(
                lost["MESSAGE"]
                    .contains("messages to the journal were dropped while it was not reading"),
                "{lost:?}"
            );
            assert!(lost["FWDGUARD_COUNT"].parse::<u64>().expect("count") > 0);
        },
    );
}

#[test]
fn reports_are_native_journal_entries_with_message_ids() {
    in_private_netns(
        "reports_are_native_journal_entries_with_message_ids",
        |ns| {
            let journal = FakeJournal::bind();
            ns.write(ALL_FORWARDING, "0").expect("write");
            let mut d = journal.start_daemon(&forwarding_config("restore")).ready();
            ns.write(ALL_FORWARDING, "0").expect("write");
            wait_forwarding_on("restore", SECOND);

            let mut entries = Vec::new();
            let mut restored = Vec::new();
            let start = Instant::now();
            let mut buf = vec![0u8; 65536];
            while restored.len() < 2 && start.elapsed() < Duration::from_secs(2) {
                if let Ok(n) = journal.socket.recv(&mut buf) {
                    let f = journal_fields(&buf[..n]);
                    if f.get("MESSAGE_ID").map(String::as_str)
                        == Some("3755efd96d564517beeea6434c76615e")
                    {
                        restored.push(f.clone());
                    }
                    entries.push(f);
                }
            }
            // Diagnostics go to the journal too, with the same field names.
            let guarding = entries
                .iter()
                .find(|f| {
                    f.get("MESSAGE")
                        .is_some_and(|m| m.starts_with("guarding net.ipv4.conf.all.forwarding = 1"))
                })
                .unwrap_or_else(|| panic!("no start-up entry in {entries:?}"));
            assert_eq!(guarding["FWDGUARD_KEY"], "net.ipv4.conf.all.forwarding");
            assert_eq!(guarding["SYSLOG_IDENTIFIER"], "fwdguard");
            assert_eq!(
                restored.len(),
                2,
                "one restore at start, one after the event"
            );
            let (at_start, on_event) = (&restored[0], &restored[1]);
            for f in [at_start, on_event] {
                assert_eq!(f["PRIORITY"], "4");
                assert_eq!(f["SYSLOG_IDENTIFIER"], "fwdguard");
                assert_eq!(f["FWDGUARD_KEY"], "net.ipv4.conf.all.forwarding");
                assert_eq!(f["FWDGUARD_OLD"], "0");
                assert_eq!(f["FWDGUARD_NEW"], "1");
                assert_eq!(f["FWDGUARD_WANT"], "1");
                assert_eq!(f["FWDGUARD_ACTION"], "restore");
                assert!(f["FWDGUARD_WRONG_USEC"].parse::<u64>().is_ok());
                assert!(
                    f["MESSAGE"]
                        .starts_with("net.ipv4.conf.all.forwarding was 0, restored to 1 in ")
                );
            }
            assert_eq!(at_start["FWDGUARD_TRIGGER"], "startup");
            assert_eq!(on_event["FWDGUARD_TRIGGER"], "netconf");
            assert!(
                !d.stderr().contains("restored to 1"),
                "reports go to the journal, not twice through stderr:\n{}",
                d.stderr()
            );
            d.signal(nix::sys::signal::Signal::SIGTERM);
            assert!(d.wait_exit(Duration::from_secs(1)).success());
        },
    );
}
