//! Webhooks and metrics of the real daemon in a private network namespace (with its own
//! loopback, where the test's HTTP servers and Alertmanager listen): an Alertmanager alert
//! through a drop under `alert`, counters that move with real drops, restores that stay fast
//! while a webhook hangs, and no secret in any output.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::prometheus::{Alertmanager, check_metrics, free_addr, get};
use crate::common::receiver::{Receiver, Reply};
use crate::common::*;
use fwdguard::sandbox::PrivateNetns;

/// Brings up `lo` in the private namespace: servers there listen on 127.0.0.1.
fn loopback_up(ns: &PrivateNetns) {
    ip(ns, &["link", "set", "lo", "up"]);
}

fn config(action: &str, tables: &str) -> String {
    format!("{}\n{tables}", forwarding_config(action))
}

fn scrape(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "/metrics", None).expect("scrape");
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `name{labels}` in a text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// One drop, timed until a reader sees the wanted value again.
fn drop_and_time(ns: &PrivateNetns) -> Duration {
    let start = Instant::now();
    ns.write(ALL_FORWARDING, "0").expect("write");
    wait_forwarding_on("forwarding back at 1", SECOND);
    start.elapsed()
}

#[test]
fn a_drop_under_alert_fires_in_alertmanager_and_resolves_when_the_key_holds() {
    const TEST: &str = "a_drop_under_alert_fires_in_alertmanager_and_resolves_when_the_key_holds";
    let Some(bin) = tool(TEST, "prometheus-alertmanager", "prometheus-alertmanager") else {
        return;
    };
    in_private_netns(TEST, move |ns| {
        loopback_up(ns);
        let notified = Receiver::start(&[]);
        let am = Alertmanager::start(&bin, &notified.url("/am"));
        ns.write(ALL_FORWARDING, "1").expect("write");
        let d = Daemon::start(&config(
            "alert",
            &format!(
                "[[webhook]]\nformat = \"alertmanager\"\nurl = \"{}\"\n",
                am.url()
            ),
        ))
        .ready();

        ns.write(ALL_FORWARDING, "0").expect("write");
        let ours = |am: &Alertmanager| {
            am.alerts()
                .into_iter()
                .find(|a| a["labels"]["alertname"] == "FwdguardKeyWrong")
        };
        let mut firing = None;
        wait_for("FwdguardKeyWrong in Alertmanager", 10 * SECOND, || {
            firing = ours(&am);
            firing.is_some()
        });
        let firing = firing.expect("alert");
        assert_eq!(firing["status"]["state"], "active");
        assert_eq!(firing["labels"]["key"], "net.ipv4.conf.all.forwarding");
        assert_eq!(firing["labels"]["severity"], "critical");
        assert_eq!(
            read(ALL_FORWARDING),
            "0",
            "action alert leaves the key alone"
        );
        // Alertmanager tells receivers of a resolution only if it told them of the alert.
        wait_for("a firing notification", 10 * SECOND, || {
            notified
                .requests()
                .iter()
                .any(|n| n.json()["status"] == "firing")
        });

        ns.write(ALL_FORWARDING, "1").expect("write");
        wait_for("the alert resolved", 10 * SECOND, || ours(&am).is_none());
        wait_for("a resolved notification", 10 * SECOND, || {
            notified
                .requests()
                .iter()
                .any(|n| n.json()["status"] == "resolved")
        });
        drop(d);
    });
}

#[test]
fn metrics_move_with_real_drops_and_pass_promtool() {
    const TEST: &str = "metrics_move_with_real_drops_and_pass_promtool";
    let promtool = tool(TEST, "promtool", "prometheus");
    in_private_netns(TEST, move |ns| {
        loopback_up(ns);
        let listen = free_addr();
        ns.write(ALL_FORWARDING, "1").expect("write");
        let d = Daemon::start(&config(
            "restore",
            &format!("[metrics]\nlisten = \"{listen}\"\n"),
        ))
        .ready();
        let key = "{key=\"net.ipv4.conf.all.forwarding\"}";
        let before = scrape(listen);
        for (metric, want) in [("fwdguard_drops_total", 0.0), ("fwdguard_key_value", 1.0)] {
            let series = format!("{metric}{key}");
            assert_eq!(sample(&before, &series), Some(want), "{series}");
        }
        for _ in 0..3 {
            drop_and_time(ns);
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut after = String::new();
        wait_for("three restores in the metrics", 2 * SECOND, || {
            after = scrape(listen);
            sample(&after, &format!("fwdguard_restores_total{key}")) == Some(3.0)
        });
        for (metric, want) in [
            ("fwdguard_drops_total", 3.0),
            ("fwdguard_wrong_duration_seconds_count", 3.0),
            ("fwdguard_key_holding", 1.0),
            ("fwdguard_key_wanted_value", 1.0),
        ] {
            let series = format!("{metric}{key}");
            assert_eq!(sample(&after, &series), Some(want), "{series}");
        }
        if let Some(promtool) = &promtool {
            check_metrics(promtool, &after);
        }
        drop(d);
    });
}

#[test]
fn restores_stay_fast_while_a_webhook_hangs_and_its_queue_overflows() {
    const TEST: &str = "restores_stay_fast_while_a_webhook_hangs_and_its_queue_overflows";
    in_private_netns(TEST, |ns| {
        loopback_up(ns);
        let hanging = Receiver::start(&[Reply::Hang; 64]);
        let listen = free_addr();
        ns.write(ALL_FORWARDING, "1").expect("write");
        // A flapping threshold out of reach of 200 drops: every drop is a report for the
        // webhook.
        let text = config(
            "restore",
            &format!(
                "[[webhook]]\nname = \"stuck\"\nformat = \"json\"\nurl = \"{}\"\ntimeout = \"1m\"\nqueue = 4\n\n[metrics]\nlisten = \"{listen}\"\n",
                hanging.url("/")
            ),
        )
        .replace("[[guard]]", "flap-threshold = 1000\n\n[[guard]]");
        let d = Daemon::start(&text).ready();
        let mut times: Vec<Duration> = (0..200).map(|_| drop_and_time(ns)).collect();
        hanging.wait_for(1, SECOND);
        times.sort();
        let median = times[times.len() / 2];
        let worst = times[times.len() - 1];
        // Generous bounds for a shared CI machine: a restore that waited for the hanging
        // webhook would take its whole timeout (a minute).
        assert!(median < Duration::from_millis(5), "median {median:?}");
        assert!(worst < Duration::from_millis(500), "worst {worst:?}");
        let mut metrics = String::new();
        wait_for("the overflow counted", 2 * SECOND, || {
            metrics = scrape(listen);
            sample(
                &metrics,
                "fwdguard_alerts_dropped_total{endpoint=\"stuck\",reason=\"queue-full\"}",
            )
            .is_some_and(|n| n >= 190.0)
        });
        assert_eq!(
            sample(&metrics, "fwdguard_alert_queue_length{endpoint=\"stuck\"}"),
            Some(4.0)
        );
        d.wait_stderr("webhook stuck (http://", SECOND);
        d.wait_stderr(
            "dropped: the queue of 4 was full (the oldest go first)",
            SECOND,
        );
        assert_eq!(
            hanging.requests().len(),
            1,
            "one request in flight, hanging"
        );
    });
}

fn secret_file(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{content}\n")).expect("secret");
    p.display().to_string()
}

#[test]
fn secrets_appear_in_no_output() {
    const TEST: &str = "secrets_appear_in_no_output";
    in_private_netns(TEST, |ns| {
        loopback_up(ns);
        let secrets_dir = tempfile::tempdir().expect("tempdir");
        let dir = secrets_dir.path();
        let flaky = Receiver::start(&[Reply::Status(500)]);
        let down = free_addr();
        let listen = free_addr();
        const URL_SECRET: &str = "URLPATHSECRET7f3a";
        const HEADER_SECRET: &str = "HEADERSECRET91bc";
        const HMAC_SECRET: &str = "HMACSECRET5d2e";
        let url_file = secret_file(
            dir,
            "url",
            &format!(
                "http://{}/hooks/{URL_SECRET}?token={URL_SECRET}",
                flaky.addr
            ),
        );
        let header_file = secret_file(dir, "header", &format!("Bearer {HEADER_SECRET}"));
        let hmac_file = secret_file(dir, "hmac", HMAC_SECRET);
        let text = config(
            "restore",
            &format!(
                "[[webhook]]\nname = \"flaky\"\nformat = \"json\"\nurl-file = \"{url_file}\"\nhmac-secret-file = \"{hmac_file}\"\nheaders = {{ Authorization = {{ file = \"{header_file}\" }} }}\n\n[[webhook]]\nname = \"down\"\nformat = \"slack\"\nurl = \"http://{down}/services/{URL_SECRET}\"\nheaders = {{ X-Token = {{ file = \"{header_file}\" }} }}\ntimeout = \"200ms\"\n\n[metrics]\nlisten = \"{listen}\"\n"
            ),
        );
        let mut outputs: Vec<(String, String)> = Vec::new();
        ns.write(ALL_FORWARDING, "1").expect("write");
        let mut d = Daemon::start_with(&text, |cmd, _| {
            cmd.env("RUST_LOG", "debug");
        })
        .ready();
        for _ in 0..3 {
            drop_and_time(ns);
        }
        // The flaky endpoint answers 500 once, then takes the reports; the other refuses.
        flaky.wait_for(4, 10 * SECOND);
        d.wait_stderr("webhook down (http://", 5 * SECOND);
        let got = flaky.requests();
        assert!(
            got.iter()
                .all(|r| r.header("authorization") == Some(&format!("Bearer {HEADER_SECRET}")))
        );

        // A reload that fails on a secret file, and one that works.
        let open = dir.join("header");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        d.signal(nix::sys::signal::Signal::SIGHUP);
        d.wait_notify_containing("reload failed", 5 * SECOND);
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        outputs.push(("metrics".into(), scrape(listen)));
        outputs.push((
            "metrics (OpenMetrics)".into(),
            get(listen, "/metrics", Some("application/openmetrics-text"))
                .expect("scrape")
                .1,
        ));

        let config_path = d.config_path();
        let c = config_path.to_str().expect("path");
        for args in [
            vec!["config", "check", c],
            vec!["alert", "test", "-c", c],
            vec!["check", "-c", c, "--json"],
        ] {
            let o = ns
                .command(BIN)
                .expect("private")
                .args(&args)
                .output()
                .expect("run");
            outputs.push((
                args.join(" "),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            ));
        }
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let o = ns
            .command(BIN)
            .expect("private")
            .args(["config", "check", c])
            .output()
            .expect("run");
        outputs.push((
            "config check (refused)".into(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ));

        d.signal(nix::sys::signal::Signal::SIGTERM);
        d.wait_exit(5 * SECOND);
        outputs.push(("stderr (log)".into(), d.stderr()));
        outputs.push(("notify (STATUS= and more)".into(), d.notes.join("\n")));

        for (channel, text) in &outputs {
            assert!(!text.is_empty(), "{channel} is empty: nothing was checked");
            for secret in [URL_SECRET, HEADER_SECRET, HMAC_SECRET] {
                assert!(
                    !text.contains(secret),
                    "{secret} appears in {channel}:\n{text}"
                );
            }
        }
        // What the operator is told instead.
        let log = d.stderr();
        assert!(
            log.contains(&format!("webhook down (http://{down}): delivery failed")),
            "{log}"
        );
        assert!(log.contains("is world-writable"), "{log}");
    });
}
