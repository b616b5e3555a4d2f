//! `/metrics` over real HTTP: both exposition formats, checked by Debian's `promtool`, and the
//! shipped alert rules checked by `promtool check rules`.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::common::prometheus::{check_metrics, get};
use crate::common::receiver::Receiver;
use crate::common::{ONE_GUARD, config_file, tool, wait_for};
use fwdguard::alert::Delivery;
use fwdguard::metrics::{Exporter, bind_and_serve, sample_snapshot};
use fwdguard::report::Report;

#[test]
fn metrics_are_served_in_both_formats_and_pass_promtool() {
    const TEST: &str = "metrics_are_served_in_both_formats_and_pass_promtool";
    let promtool = tool(TEST, "promtool", "prometheus");
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::start(&[]);
    let config = config_file(
        dir.path(),
        &format!(
            "{ONE_GUARD}[[webhook]]\nname = \"ops\"\nformat = \"json\"\nurl = \"{}\"\n",
            rx.url("/")
        ),
    );
    let hooks = fwdguard::config::load(&config).expect("valid").webhooks;
    let (_publish, snapshots) = tokio::sync::watch::channel(sample_snapshot());
    let delivery = Arc::new(Delivery::start(snapshots.clone()).expect("delivery"));
    let mut sinks = delivery.start_webhooks(&hooks);
    for s in &mut sinks {
        s.emit(&Report::EventsLost { times: 1 });
    }
    rx.wait_for(1, Duration::from_secs(5));
    let d = delivery.clone();
    let exporter = Arc::new(Exporter::new(snapshots, Arc::new(move || d.endpoints())));
    let server = bind_and_serve(
        delivery.runtime(),
        "127.0.0.1:0".parse().expect("addr"),
        exporter,
    )
    .expect("serve");

    let mut text = String::new();
    wait_for("the sent counter", Duration::from_secs(2), || {
        let (status, body) = get(server.addr, "/metrics", None).expect("scrape");
        assert_eq!(status, 200);
        text = body;
        text.contains("fwdguard_alerts_sent_total{endpoint=\"ops\"} 1")
    });
    for line in [
        "fwdguard_drops_total{key=\"net.ipv4.conf.all.forwarding\"} 2",
        "fwdguard_wrong_duration_seconds_count{key=\"net.ipv4.conf.all.forwarding\"} 2",
        "fwdguard_alerts_dropped_total{endpoint=\"ops\",reason=\"queue-full\"} 0",
        "fwdguard_alert_queue_length{endpoint=\"ops\"} 0",
        "fwdguard_writes_replaced_total{key=\"net.ipv4.conf.all.forwarding\"} 3",
        "fwdguard_bpf_hook_attached 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }

    let (status, open) = get(
        server.addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .expect("scrape");
    assert_eq!(status, 200);
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(open.contains("# TYPE fwdguard_build info"));

    assert_eq!(get(server.addr, "/nope", None).expect("get").0, 404);

    if let Some(promtool) = promtool {
        check_metrics(&promtool, &text);
    }
}

#[test]
fn shipped_alert_rules_pass_promtool() {
    const TEST: &str = "shipped_alert_rules_pass_promtool";
    let Some(promtool) = tool(TEST, "promtool", "prometheus") else {
        return;
    };
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/prometheus-rules.yml");
    let out = Command::new(promtool)
        .args(["check", "rules", rules])
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
