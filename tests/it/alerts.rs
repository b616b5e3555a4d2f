//! Webhook delivery against real HTTP(S) servers on 127.0.0.1: each format's content, the
//! HMAC, retries after errors, refused connections and hangs, queue overflow, give-up, and
//! TLS with a private CA. The webhooks come from a real configuration file.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::prometheus::{Alertmanager, free_addr};
use crate::common::receiver::{Received, Receiver, Reply};
use crate::common::{ONE_GUARD, config_file, tool, wait_for};
use fwdguard::alert::{Delivery, test_all};
use fwdguard::config::Action;
use fwdguard::config::webhook::Webhook;
use fwdguard::key::SysctlKey;
use fwdguard::observation::Writer;
use fwdguard::payload::{self, Notice, Reporter};
use fwdguard::report::{Cause, PersistedConflict, Report, Sink, Trigger};
use fwdguard::snapshot::Snapshot;
use fwdguard::value::Value;

fn webhooks(dir: &Path, tables: &str) -> Vec<Webhook> {
    fwdguard::config::load(&config_file(dir, &format!("{ONE_GUARD}{tables}")))
        .unwrap_or_else(|e| panic!("config refused: {e}"))
        .webhooks
}

/// A `[[webhook]]` table: `format`, `url`, then `extra` lines.
fn webhook(format: &str, url: &str, extra: &str) -> String {
    format!("[[webhook]]\nformat = \"{format}\"\nurl = \"{url}\"\n{extra}")
}

/// A delivery thread and the sinks for the webhook `tables` of a configuration file.
/// The guard's state as the delivery thread sees it here: no guard runs.
fn no_guard() -> tokio::sync::watch::Receiver<Snapshot> {
    tokio::sync::watch::channel(Snapshot::default()).1
}

fn deliver(tables: &str) -> (tempfile::TempDir, Delivery, Vec<Box<dyn Sink>>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let hooks = webhooks(dir.path(), tables);
    let delivery = Delivery::start(no_guard()).expect("delivery");
    let sinks = delivery.start_webhooks(&hooks);
    (dir, delivery, sinks)
}

fn key() -> SysctlKey {
    SysctlKey::parse("net.ipv4.conf.all.forwarding").expect("key")
}

fn restored(micros: u64) -> Report {
    Report::DriftRestored {
        key: key(),
        want: Value::new("1"),
        old: Value::new("0"),
        trigger: Trigger::Netconf,
        wrong_for: Duration::from_micros(micros),
        attempts: 1,
        cause: None,
    }
}

/// Forwarding found at 0 under `action = "alert"`.
fn alerted(trigger: Trigger) -> Report {
    Report::DriftAlerted {
        key: key(),
        want: Value::new("1"),
        value: Value::new("0"),
        trigger,
        cause: None,
    }
}

/// Forwarding back at 1, set by someone else, after `wrong_for`.
fn recovered(trigger: Trigger, wrong_for: Duration) -> Report {
    Report::Recovered {
        key: key(),
        want: Value::new("1"),
        old: Value::new("0"),
        trigger,
        wrong_for,
        cause: None,
    }
}

fn emit(sinks: &mut [Box<dyn Sink>], report: &Report) {
    for s in sinks {
        s.emit(report);
    }
}

/// Checks a payload against docs/webhook.schema.json: every required field present, none
/// other, each of an allowed JSON type, enums respected.
fn check_schema(payload: &serde_json::Value) {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/webhook.schema.json"),
        )
        .expect("schema file"),
    )
    .expect("schema is JSON");
    let props = schema["properties"].as_object().expect("properties");
    let obj = payload.as_object().expect("payload is an object");
    for name in schema["required"].as_array().expect("required") {
        let name = name.as_str().expect("name");
        assert!(obj.contains_key(name), "payload lacks required {name}");
    }
    for (name, value) in obj {
        let spec = props
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in the schema"));
        let types: Vec<&str> = match &spec["type"] {
            serde_json::Value::String(t) => vec![t.as_str()],
            serde_json::Value::Array(a) => a.iter().filter_map(|t| t.as_str()).collect(),
            other => panic!("{name}: type {other}"),
        };
        let actual = match value {
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "boolean",
            serde_json::Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
            serde_json::Value::Number(_) => "number",
            serde_json::Value::String(_) => "string",
            serde_json::Value::Array(_) => "array",
            serde_json::Value::Object(_) => "object",
        };
        assert!(types.contains(&actual), "{name}: {actual} not in {types:?}");
        if actual == "object" {
            check_object(name, value, spec);
        }
        if let Some(allowed) = spec["enum"].as_array() {
            assert!(
                allowed.contains(value),
                "{name}: {value} not in {allowed:?}"
            );
        }
    }
}

/// An object field against its schema: exactly the required members, each of its type.
fn check_object(name: &str, value: &serde_json::Value, spec: &serde_json::Value) {
    let obj = value.as_object().expect("object");
    let required: Vec<&str> = spec["required"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no required list"))
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    let mut members: Vec<&str> = obj.keys().map(String::as_str).collect();
    members.sort_unstable();
    let mut want = required.clone();
    want.sort_unstable();
    assert_eq!(members, want, "{name}: members");
    for (member, v) in obj {
        let types = &spec["properties"][member]["type"];
        let ok = match v {
            serde_json::Value::Null => types.to_string().contains("\"null\""),
            serde_json::Value::Bool(_) => types.to_string().contains("boolean"),
            serde_json::Value::Number(_) => types.to_string().contains("integer"),
            serde_json::Value::String(_) => types.to_string().contains("string"),
            _ => false,
        };
        assert!(ok, "{name}.{member}: {v} is not {types}");
    }
}

#[test]
fn json_payload_carries_the_report_and_a_valid_signature() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hmac"), "s3cr3t-hmac-key\n").expect("hmac");
    std::fs::write(dir.path().join("token"), "Bearer tok-from-file\n").expect("token");
    let rx = Receiver::start(&[]);
    let hooks = webhooks(
        dir.path(),
        &format!(
            r#"
[[webhook]]
name = "ops"
format = "json"
url = "{}"
hmac-secret-file = "{}"
headers = {{ Authorization = {{ file = "{}" }}, X-Team = "net" }}
"#,
            rx.url("/hook/abc?x=1"),
            dir.path().join("hmac").display(),
            dir.path().join("token").display()
        ),
    );
    let delivery = Delivery::start(no_guard()).expect("delivery");
    let mut sinks = delivery.start_webhooks(&hooks);
    emit(&mut sinks, &restored(42));

    let req = rx.wait_for(1, Duration::from_secs(5)).remove(0);
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hook/abc?x=1");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("authorization"), Some("Bearer tok-from-file"));
    assert_eq!(req.header("x-team"), Some("net"));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cr3t-hmac-key");
    let want: String = ring::hmac::sign(&key, &req.body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        req.header("x-fwdguard-signature"),
        Some(format!("sha256={want}").as_str())
    );

    let v = req.json();
    check_schema(&v);
    // The body is the report's `json` payload, field for field (the payload's own tests say
    // what each field holds), from this host and this version, with nothing lost before it.
    let text = |field: &str| v[field].as_str().unwrap_or_else(|| panic!("{field}: {v}"));
    let time = |field: &str| {
        humantime::parse_rfc3339(text(field)).unwrap_or_else(|e| panic!("{field}: {e}: {v}"))
    };
    assert!(!text("host").is_empty());
    let this_host = Reporter {
        host: text("host").into(),
        machine_id: text("machine_id").into(),
        version: env!("CARGO_PKG_VERSION"),
    };
    let notice = Notice::Report(restored(42));
    let body = payload::json(&notice, &this_host, time("time"), time("sent_at"), 0);
    let want: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v, want);
    let stats = &delivery.endpoints()[0].stats;
    wait_for("the answer", Duration::from_secs(2), || {
        stats.sent.load(Ordering::Relaxed) == 1
    });
}

#[test]
fn every_report_kind_fits_the_schema() {
    let rx = Receiver::start(&[]);
    let all = "drift-restored drift-alerted restore-failed recovered flapping flapping-ended key-unavailable key-available config-reloaded reload-failed events-lost output-lost persisted-conflict persisted-conflict-gone hazard write-replaced write-seen hook-attached prevent-unavailable"
        .split(' ')
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let conflict = PersistedConflict {
        key: key(),
        want: Value::new("1"),
        value: "0".into(),
        source: "/etc/sysctl.conf:2".into(),
        appliers: vec!["systemd-sysctl".into(), "sysctl --system".into()],
    };
    let (_dir, _delivery, mut sinks) = deliver(&webhook(
        "json",
        &rx.url("/"),
        &format!("events = [{all}]\n"),
    ));
    let reports = [
        restored(10),
        alerted(Trigger::Inotify),
        Report::RestoreFailed {
            key: key(),
            want: Value::new("1"),
            value: Value::new("0"),
            error: "Permission denied".into(),
            attempt: 2,
            retry_in: Duration::from_millis(200),
            cause: Some(Cause::Writer(Box::new(Writer {
                pid: 4242,
                comm: "sysctl".into(),
                ..Writer::default()
            }))),
        },
        recovered(Trigger::Reread, Duration::from_secs(3)),
        Report::Flapping {
            key: key(),
            action: Action::Restore,
            drops: 5,
            window: Duration::from_secs(60),
        },
        Report::FlappingEnded {
            key: key(),
            action: Action::Restore,
            drops: 812,
            lasted: Duration::from_secs(4),
        },
        Report::KeyUnavailable {
            key: key(),
            error: "No such file or directory".into(),
        },
        Report::KeyAvailable {
            key: key(),
            value: Value::new("1"),
        },
        Report::ConfigReloaded {
            origin: "/etc/fwdguard/fwdguard.toml".into(),
            guards: 2,
        },
        Report::ReloadFailed {
            origin: "/etc/fwdguard/fwdguard.toml".into(),
            error: "x".into(),
        },
        Report::EventsLost { times: 3 },
        Report::OutputLost {
            output: "stderr".into(),
            lost: 12,
        },
        Report::PersistedConflict(conflict.clone()),
        Report::PersistedConflictGone(conflict),
        Report::Hazard {
            source: "/etc/docker/daemon.json".into(),
            hazard: "\"ip-forward\": false".into(),
            fix: "remove it".into(),
        },
        Report::WriteReplaced {
            key: key(),
            want: Value::new("1"),
            writer: Box::new(network_sysctl(true)),
        },
        Report::WriteSeen {
            key: key(),
            want: Value::new("1"),
            action: Action::Restore,
            writer: Box::new(network_sysctl(false)),
        },
        Report::HookAttached {
            cgroup: "/sys/fs/cgroup".into(),
            netns: 4026531840,
            prevent: 1,
            audit: 0,
        },
        Report::PreventUnavailable {
            keys: vec![key()],
            error: "needs CAP_BPF".into(),
            writers_named: false,
        },
    ];
    for r in &reports {
        emit(&mut sinks, r);
    }
    let got = rx.wait_for(reports.len(), Duration::from_secs(10));
    let events: Vec<String> = got
        .iter()
        .map(|r| {
            let v = r.json();
            check_schema(&v);
            v["event"].as_str().expect("event").to_owned()
        })
        .collect();
    assert_eq!(events.len(), 19, "{events:?}");
    let persisted = got[12].json();
    assert_eq!(persisted["observed"], "0");
    assert_eq!(
        persisted["cause"],
        "/etc/sysctl.conf:2 (for systemd-sysctl, sysctl --system)"
    );
    assert!(
        got[2].json()["cause"]
            .as_str()
            .is_some_and(|c| c.contains("4242")),
        "{}",
        got[2].json()
    );
    assert_eq!(events[4], "flapping");
    assert_eq!(got[4].json()["count"], 5, "flapping carries its count");
    // The writer as an object, for the hook's reports and the drift reports it explains.
    let replaced = got[15].json();
    assert_eq!(events[15], "write-replaced");
    assert_eq!(
        replaced["writer"],
        serde_json::json!({
            "pid": 4242, "ppid": 4240, "uid": 0, "comm": "sysctl", "parent_comm": "network",
            "cgroup": "/system.slice/network.service", "unit": "network.service",
            "container": null, "written": "0\\n", "replaced": true
        })
    );
    assert_eq!(got[16].json()["writer"]["replaced"], false);
    assert_eq!(
        got[2].json()["writer"]["pid"],
        4242,
        "restore-failed's cause"
    );
    assert_eq!(got[0].json()["writer"], serde_json::Value::Null);
}

fn network_sysctl(replaced: bool) -> Writer {
    Writer {
        pid: 4242,
        ppid: 4240,
        uid: 0,
        comm: "sysctl".into(),
        parent_comm: Some("network".into()),
        cgroup: Some("/system.slice/network.service".into()),
        unit: Some("network.service".into()),
        container: None,
        written: "0\\n".into(),
        replaced,
    }
}

#[test]
fn default_events_leave_out_info_and_key_available() {
    let rx = Receiver::start(&[]);
    let (_dir, _delivery, mut sinks) = deliver(&webhook("json", &rx.url("/"), ""));
    emit(
        &mut sinks,
        &Report::ConfigReloaded {
            origin: "x".into(),
            guards: 1,
        },
    );
    emit(
        &mut sinks,
        &Report::KeyAvailable {
            key: key(),
            value: Value::new("1"),
        },
    );
    emit(&mut sinks, &Report::EventsLost { times: 1 });
    let got = rx.wait_for(1, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(rx.requests().len(), 1);
    assert_eq!(got[0].json()["event"], "events-lost");
}

#[test]
fn slack_message_has_a_summary_line_and_fields() {
    let rx = Receiver::start(&[]);
    let (_dir, _delivery, mut sinks) =
        deliver(&webhook("slack", &rx.url("/services/T0/B0/XYZ"), ""));
    emit(
        &mut sinks,
        &Report::Flapping {
            key: key(),
            action: Action::Alert,
            drops: 7,
            window: Duration::from_secs(60),
        },
    );
    let v = rx.wait_for(1, Duration::from_secs(5))[0].json();
    let text = v["text"].as_str().expect("text");
    assert!(
        text.contains("net.ipv4.conf.all.forwarding is flapping: knocked down 7 times"),
        "{text}"
    );
    assert!(!text.contains('\n'), "one line: {text}");
    let att = &v["attachments"][0];
    assert_eq!(att["color"], "danger");
    let fields = att["fields"].as_array().expect("fields");
    let field = |t: &str| {
        fields
            .iter()
            .find(|f| f["title"] == t)
            .map(|f| f["value"].clone())
    };
    assert_eq!(field("Event"), Some("flapping".into()));
    assert_eq!(field("Count"), Some("7".into()));
    assert_eq!(field("Action"), Some("alert".into()));
}

#[test]
fn server_error_then_success_is_one_delivery_after_a_retry() {
    let rx = Receiver::start(&[Reply::Status(500)]);
    let (_dir, delivery, mut sinks) = deliver(&webhook("json", &rx.url("/"), ""));
    emit(&mut sinks, &restored(7));
    let got = rx.wait_for(2, Duration::from_secs(5));
    assert_eq!(got[0].body.len(), got[1].body.len());
    assert_eq!(
        got[0].json()["time"],
        got[1].json()["time"],
        "the same report"
    );
    let stats = &delivery.endpoints()[0].stats;
    wait_for("the answer", Duration::from_secs(2), || {
        stats.sent.load(Ordering::Relaxed) == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.requests().len(), 2, "no more after the 200");
    assert_eq!(stats.failed.load(Ordering::Relaxed), 1);
}

#[test]
fn a_client_error_is_not_retried() {
    let rx = Receiver::start(&[Reply::Status(404)]);
    let (_dir, delivery, mut sinks) = deliver(&webhook("json", &rx.url("/"), ""));
    emit(&mut sinks, &restored(7));
    rx.wait_for(1, Duration::from_secs(5));
    let e = &delivery.endpoints()[0];
    wait_for("the give-up", Duration::from_secs(2), || {
        e.stats.given_up.load(Ordering::Relaxed) == 1
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(rx.requests().len(), 1, "not retried");
    assert_eq!(e.lost(), 1);
}

#[test]
fn refused_connections_are_retried_until_the_endpoint_comes_up() {
    let addr = free_addr();
    let (_dir, delivery, mut sinks) = deliver(&webhook("json", &format!("http://{addr}/up"), ""));
    emit(&mut sinks, &restored(9));
    let endpoint = delivery.endpoints()[0].clone();
    wait_for("a refused attempt", Duration::from_secs(5), || {
        endpoint.stats.failed.load(Ordering::Relaxed) >= 1
    });
    let rx = Receiver::start_on(addr, &[], None);
    let got = rx.wait_for(1, Duration::from_secs(10));
    assert_eq!(got[0].json()["wrong_for_us"], 9);
    wait_for("the answer", Duration::from_secs(2), || {
        endpoint.stats.sent.load(Ordering::Relaxed) == 1
    });
}

#[test]
fn a_hanging_endpoint_times_out_and_gets_a_retry() {
    let rx = Receiver::start(&[Reply::Hang]);
    let (_dir, delivery, mut sinks) =
        deliver(&webhook("json", &rx.url("/"), "timeout = \"200ms\"\n"));
    let start = std::time::Instant::now();
    emit(&mut sinks, &restored(11));
    // The sink hands over without waiting for the hanging server.
    assert!(
        start.elapsed() < Duration::from_millis(20),
        "{:?}",
        start.elapsed()
    );
    let got = rx.wait_for(2, Duration::from_secs(5));
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(got[1].json()["wrong_for_us"], 11);
    let endpoint = &delivery.endpoints()[0];
    wait_for("the retry's success", Duration::from_secs(2), || {
        endpoint.stats.sent.load(Ordering::Relaxed) == 1
    });
    assert_eq!(endpoint.stats.failed.load(Ordering::Relaxed), 1);
}

#[test]
fn overflow_drops_the_oldest_counts_them_and_says_so() {
    let rx = Receiver::start(&[Reply::Hang]);
    let (_dir, delivery, mut sinks) = deliver(&webhook(
        "json",
        &rx.url("/"),
        "timeout = \"1s\"\nqueue = 2\n",
    ));
    emit(&mut sinks, &restored(1));
    // The task is now stuck on the first report; the next ten meet a queue of two.
    rx.wait_for(1, Duration::from_secs(5));
    for i in 0..10 {
        emit(&mut sinks, &restored(100 + i));
    }
    let endpoint = delivery.endpoints()[0].clone();
    assert_eq!(endpoint.queue.dropped(), 8);
    assert_eq!(endpoint.queue.len(), 2);
    // The first is retried after its timeout, then the two newest follow.
    let got = rx.wait_for(4, Duration::from_secs(10));
    let delivered: Vec<u64> = got[1..]
        .iter()
        .map(|r| r.json()["wrong_for_us"].as_u64().expect("us"))
        .collect();
    assert_eq!(delivered, vec![1, 108, 109]);
    let reported: u64 = got[1..]
        .iter()
        .map(|r| r.json()["dropped"].as_u64().expect("dropped"))
        .sum();
    assert_eq!(reported, 8, "the loss is reported to the endpoint");
    assert_eq!(endpoint.lost(), 8);
}

#[test]
fn undeliverable_reports_are_given_up_after_their_age() {
    let addr = free_addr();
    let (_dir, delivery, mut sinks) = deliver(&webhook(
        "slack",
        &format!("http://{addr}/"),
        "give-up-after = \"1s\"\n",
    ));
    emit(&mut sinks, &restored(5));
    let endpoint = delivery.endpoints()[0].clone();
    wait_for("give-up", Duration::from_secs(5), || {
        endpoint.stats.given_up.load(Ordering::Relaxed) == 1
    });
    assert!(endpoint.stats.failed.load(Ordering::Relaxed) >= 1);
    assert_eq!(endpoint.stats.sent.load(Ordering::Relaxed), 0);
}

#[test]
fn an_unchanged_webhook_keeps_its_endpoint_across_a_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::start(&[]);
    let table = webhook("json", &rx.url("/"), "");
    let delivery = Delivery::start(no_guard()).expect("delivery");
    let first = delivery.start_webhooks(&webhooks(dir.path(), &table));
    let before = delivery.endpoints()[0].clone();
    drop(first);
    let _second = delivery.start_webhooks(&webhooks(dir.path(), &table));
    assert!(std::sync::Arc::ptr_eq(&before, &delivery.endpoints()[0]));
    let _third =
        delivery.start_webhooks(&webhooks(dir.path(), &format!("{table}timeout = \"2s\"\n")));
    assert!(!std::sync::Arc::ptr_eq(&before, &delivery.endpoints()[0]));
}

/// A CA and a certificate for 127.0.0.1 signed by it, made for this test.
fn test_pki(dir: &Path) -> (std::path::PathBuf, rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "fwdguard test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let ca_issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    let cert = params.signed_by(&key, &ca_issuer).expect("cert");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).expect("ca file");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone(), ca.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .expect("server config");
    (ca_path, config)
}

#[test]
fn https_with_a_private_ca_is_delivered_and_fails_without_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, tls) = test_pki(dir.path());
    let rx = Receiver::start_tls(&[], tls);
    let url = format!("https://127.0.0.1:{}/tls", rx.addr.port());
    let hooks = webhooks(
        dir.path(),
        &format!(
            "[[webhook]]\nname = \"with-ca\"\nformat = \"json\"\nurl = \"{url}\"\nca-file = \"{}\"\n\n[[webhook]]\nname = \"system-store\"\nformat = \"json\"\nurl = \"{url}\"\n",
            ca.display()
        ),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let results = rt.block_on(test_all(&hooks));
    assert_eq!(results.len(), 2);
    let (label, outcome) = &results[0];
    assert_eq!(
        label,
        &format!("with-ca (https://127.0.0.1:{})", rx.addr.port())
    );
    assert!(outcome.ok(), "{outcome}");
    assert_eq!(outcome.to_string(), "HTTP 200 OK");
    let (_, outcome) = &results[1];
    assert!(!outcome.ok());
    let text = outcome.to_string();
    assert!(
        text.contains("invalid peer certificate") && text.contains("UnknownIssuer"),
        "{text}"
    );
    let got = rx.requests();
    assert_eq!(got.len(), 1, "only the verified connection sent a request");
    assert_eq!(got[0].path, "/tls");
    assert_eq!(got[0].json()["event"], "test");
}

#[test]
fn a_real_alertmanager_holds_the_alert_while_wrong_and_resolves_it() {
    const TEST: &str = "a_real_alertmanager_holds_the_alert_while_wrong_and_resolves_it";
    let Some(bin) = tool(TEST, "prometheus-alertmanager", "prometheus-alertmanager") else {
        return;
    };
    let notified = Receiver::start(&[]);
    let am = Alertmanager::start(&bin, &notified.url("/am"));
    let (_dir, _delivery, mut sinks) = deliver(&webhook("alertmanager", &am.url(), ""));
    emit(&mut sinks, &alerted(Trigger::Netconf));
    let ours = |alerts: &[serde_json::Value]| {
        alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == "FwdguardKeyWrong")
            .cloned()
    };
    let mut firing = None;
    wait_for("the alert in Alertmanager", Duration::from_secs(10), || {
        firing = ours(&am.alerts());
        firing.is_some()
    });
    let firing = firing.expect("alert");
    assert_eq!(firing["status"]["state"], "active", "{firing}");
    assert_eq!(firing["labels"]["key"], "net.ipv4.conf.all.forwarding");
    assert_eq!(firing["labels"]["severity"], "critical");
    assert!(
        !firing["labels"]["instance"]
            .as_str()
            .expect("instance")
            .is_empty()
    );
    assert!(
        firing["annotations"]["summary"]
            .as_str()
            .expect("summary")
            .starts_with("net.ipv4.conf.all.forwarding is 0, want 1")
    );
    let status_of = |n: &Received| n.json()["status"].as_str().map(String::from);
    let got = notified.wait_for(1, Duration::from_secs(10));
    assert_eq!(status_of(&got[0]).as_deref(), Some("firing"));

    emit(
        &mut sinks,
        &recovered(Trigger::Netconf, Duration::from_secs(2)),
    );
    wait_for("the alert resolved", Duration::from_secs(10), || {
        ours(&am.alerts()).is_none()
    });
    wait_for("a resolved notification", Duration::from_secs(10), || {
        notified
            .requests()
            .iter()
            .any(|n| status_of(n).as_deref() == Some("resolved"))
    });
}
