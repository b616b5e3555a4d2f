//! Request bodies for the `json` and `slack` formats, built from one report. Pure: the host,
//! the times and the loss count are passed in. The `json` payload is documented in
//! `docs/webhook.md` and `docs/webhook.schema.json`; a test checks the two agree.

pub mod alertmanager;

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::observation::Writer;
use crate::report::{Event, Fact, Priority, Report};

/// The `version` of the `json` payload. Bumped only for changes that break a consumer
/// (a field removed or changing meaning); new fields may appear in the same version.
pub const JSON_VERSION: u32 = 1;

/// What each payload says about where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reporter {
    pub host: String,
    /// `/etc/machine-id`; empty when the host has none.
    pub machine_id: String,
    pub version: &'static str,
}

/// One thing to deliver: a report, or the test alert of `fwdguard alert test`.
#[derive(Debug, Clone, PartialEq, Eq)]
// Nearly every notice is a report; boxing it would add an allocation per report for the
// sake of the one-off test alert.
#[allow(clippy::large_enum_variant)]
pub enum Notice {
    Report(Report),
    Test,
}

impl Notice {
    pub fn event(&self) -> Event {
        match self {
            Notice::Report(r) => Event::of(r),
            Notice::Test => Event::Test,
        }
    }

    pub fn priority(&self) -> Priority {
        self.event().info().priority
    }

    pub fn summary(&self) -> String {
        match self {
            Notice::Report(r) => r.to_string(),
            Notice::Test => {
                "test alert from fwdguard alert test: this endpoint is reachable".into()
            }
        }
    }
}

pub fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::Crit => "crit",
        Priority::Err => "err",
        Priority::Warning => "warning",
        Priority::Notice => "notice",
        Priority::Info => "info",
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// The `json` format, version 1. Every field is always present; those that do not apply to an
/// event are `null`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct JsonPayload {
    pub version: u32,
    pub event: &'static str,
    pub message_id: Option<&'static str>,
    pub priority: &'static str,
    pub summary: String,
    pub host: String,
    pub machine_id: String,
    pub key: Option<String>,
    pub wanted: Option<String>,
    pub observed: Option<String>,
    pub action: Option<&'static str>,
    pub trigger: Option<&'static str>,
    pub wrong_for_us: Option<u64>,
    pub attempts: Option<u32>,
    pub count: Option<u64>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// The process that wrote the key, when the BPF hook saw it.
    pub writer: Option<Writer>,
    pub time: String,
    pub sent_at: String,
    pub dropped: u64,
    pub fwdguard_version: &'static str,
}

/// Details of a report by meaning rather than by journal field.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Details {
    pub key: Option<String>,
    pub wanted: Option<String>,
    pub observed: Option<String>,
    pub action: Option<&'static str>,
    pub trigger: Option<&'static str>,
    pub wrong_for: Option<Duration>,
    pub attempts: Option<u32>,
    pub count: Option<u64>,
    pub error: Option<String>,
    /// Why the key changed, when a source could tell (a service job, a writing process).
    pub cause: Option<String>,
    pub writer: Option<Writer>,
}

impl Details {
    pub fn of(notice: &Notice) -> Self {
        let mut d = Self::default();
        let Notice::Report(report) = notice else {
            return d;
        };
        for detail in report.details() {
            match detail.fact {
                Fact::Key(key) => d.key = Some(key),
                Fact::Wanted(value) => d.wanted = Some(value),
                Fact::Observed(value) => d.observed = Some(value),
                Fact::Action(action) => d.action = Some(action),
                Fact::Trigger(trigger) => d.trigger = Some(trigger),
                Fact::WrongFor(wrong_for) => d.wrong_for = Some(wrong_for),
                Fact::Attempts(attempts) => d.attempts = Some(attempts),
                Fact::Count(count) => d.count = Some(count),
                Fact::Error(error) => d.error = Some(error),
                Fact::Cause(cause) => d.cause = Some(cause),
                Fact::Writer(writer) => d.writer = Some(writer),
                Fact::Other(_) => {}
            }
        }
        d
    }
}

/// The `json` body. `dropped`: reports for this endpoint lost since the last delivery.
pub fn json(
    notice: &Notice,
    origin: &Reporter,
    time: SystemTime,
    sent_at: SystemTime,
    dropped: u64,
) -> Vec<u8> {
    let d = Details::of(notice);
    let payload = JsonPayload {
        version: JSON_VERSION,
        event: notice.event().as_str(),
        message_id: notice.event().info().message_id,
        priority: priority_name(notice.priority()),
        summary: notice.summary(),
        host: origin.host.clone(),
        machine_id: origin.machine_id.clone(),
        key: d.key,
        wanted: d.wanted,
        observed: d.observed,
        action: d.action,
        trigger: d.trigger,
        wrong_for_us: d.wrong_for.map(|w| w.as_micros() as u64),
        attempts: d.attempts,
        count: d.count,
        error: d.error,
        cause: d.cause,
        writer: d.writer,
        time: rfc3339(time),
        sent_at: rfc3339(sent_at),
        dropped,
        fwdguard_version: origin.version,
    };
    serde_json::to_vec(&payload).unwrap_or_else(|e| unreachable!("plain struct: {e}"))
}

/// The `slack` body: a one-line summary in `text` (what notifications show), and the details
/// as attachment fields.
pub fn slack(notice: &Notice, origin: &Reporter, time: SystemTime, dropped: u64) -> Vec<u8> {
    let d = Details::of(notice);
    let mut fields = Vec::new();
    let mut field = |title: &str, value: Option<String>, short: bool| {
        if let Some(value) = value {
            fields.push(serde_json::json!({ "title": title, "value": value, "short": short }));
        }
    };
    field("Event", Some(notice.event().as_str().into()), true);
    field("Key", d.key, true);
    field("Wanted", d.wanted, true);
    field("Observed", d.observed, true);
    field("Action", d.action.map(Into::into), true);
    field("Seen via", d.trigger.map(Into::into), true);
    field(
        "Time at wrong value",
        d.wrong_for.map(crate::report::human),
        true,
    );
    field("Attempts", d.attempts.map(|a| a.to_string()), true);
    field("Count", d.count.map(|c| c.to_string()), true);
    field("Error", d.error, false);
    field("Cause", d.cause, false);
    if dropped > 0 {
        field(
            "Alerts lost before this one",
            Some(dropped.to_string()),
            false,
        );
    }
    let color = match notice.priority() {
        Priority::Crit | Priority::Err => "danger",
        Priority::Warning => "warning",
        Priority::Notice | Priority::Info => "good",
    };
    let body = serde_json::json!({
        "text": format!("fwdguard on {}: {}", origin.host, notice.summary()),
        "attachments": [{
            "color": color,
            "fields": fields,
            "footer": format!("fwdguard {} on {} at {}", origin.version, origin.host, rfc3339(time)),
            "ts": time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }],
    });
    serde_json::to_vec(&body).unwrap_or_else(|e| unreachable!("json value: {e}"))
}

/// `X-Fwdguard-Signature` for `body`: `sha256=` and the hex HMAC-SHA256 under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256=");
    for b in tag.as_ref() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::restored;

    fn origin() -> Reporter {
        Reporter {
            host: "docker-7".into(),
            machine_id: "machine-id-of-docker-7".into(),
            version: "9.9.9",
        }
    }

    #[test]
    fn json_carries_what_the_docs_promise() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let body = json(&Notice::Report(restored()), &origin(), t, t, 3);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["version"], 1);
        assert_eq!(v["event"], "drift-restored");
        assert_eq!(v["message_id"], "3755efd96d564517beeea6434c76615e");
        assert_eq!(v["priority"], "warning");
        assert_eq!(v["host"], "docker-7");
        assert_eq!(v["key"], "net.ipv4.conf.all.forwarding");
        assert_eq!(v["wanted"], "1");
        assert_eq!(v["observed"], "0");
        assert_eq!(v["action"], "restore");
        assert_eq!(v["trigger"], "netconf");
        assert_eq!(v["wrong_for_us"], 42);
        assert_eq!(v["attempts"], 1);
        assert_eq!(v["count"], serde_json::Value::Null);
        assert_eq!(v["time"], "2023-11-14T22:13:20.000000Z");
        assert_eq!(v["dropped"], 3);
        assert_eq!(v["fwdguard_version"], "9.9.9");
    }

    #[test]
    fn slack_has_a_summary_line_and_fields() {
        let t = SystemTime::UNIX_EPOCH;
        let body = slack(&Notice::Report(restored()), &origin(), t, 0);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            v["text"],
            "fwdguard on docker-7: net.ipv4.conf.all.forwarding was 0, restored to 1 in 42µs (seen via netconf)"
        );
        let fields = v["attachments"][0]["fields"].as_array().expect("fields");
        assert!(
            fields
                .iter()
                .any(|f| f["title"] == "Key" && f["value"] == "net.ipv4.conf.all.forwarding")
        );
        assert!(
            fields
                .iter()
                .any(|f| f["title"] == "Time at wrong value" && f["value"] == "42µs")
        );
        assert_eq!(v["attachments"][0]["color"], "warning");
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
