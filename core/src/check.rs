//! What `fwdguard check` finds: every guarded key read once (through the [`Knobs`] the binary
//! hands in) and whether it holds, in the monitoring-plugin convention (exit 0 OK, 1 WARNING, 2
//! CRITICAL, 3 UNKNOWN), so it serves as a CI step before `docker build` and as a
//! Nagios/Icinga check. WARNING: every key holds, but the daemon would guard one less well than
//! it should (it could not restore it, or not see changes quickly): the same degradations the
//! daemon shows in STATUS=, those of the environment as the binary's probes found them.

use std::fmt::Write as _;

use serde::Serialize;

use crate::config::{Config, Guard};
use crate::knob::{Access, Knobs, SysctlError, read_once};
use crate::snapshot::Degradation;

pub const EXIT_OK: u8 = 0;
pub const EXIT_WARNING: u8 = 1;
pub const EXIT_CRITICAL: u8 = 2;
pub const EXIT_UNKNOWN: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Ok,
    Warning,
    Wrong,
    Unknown,
}

/// One key's result.
#[derive(Debug, Clone, Serialize)]
pub struct KeyCheck {
    pub key: String,
    pub want: String,
    pub value: Option<String>,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub degradations: Vec<Degradation>,
}

/// The whole result: `status` is the worst state; a wrong key outranks an unreadable one,
/// since it is known to be broken.
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub status: State,
    /// Why no key could be looked at (no usable configuration, a usage error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub keys: Vec<KeyCheck>,
    /// What `fwdguard doctor` would warn about, in one line (persisted 0s and the like).
    /// It does not change the status: the keys hold now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hazards: Option<String>,
}

impl Verdict {
    /// No key could be looked at: UNKNOWN, with the reason.
    pub fn failed(error: String) -> Self {
        Self {
            status: State::Unknown,
            error: Some(error),
            keys: Vec::new(),
            hazards: None,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self.status {
            State::Ok => EXIT_OK,
            State::Warning => EXIT_WARNING,
            State::Wrong => EXIT_CRITICAL,
            State::Unknown => EXIT_UNKNOWN,
        }
    }

    /// A summary line first (what a monitoring system shows), then one line per key.
    pub fn text(&self) -> String {
        if let Some(error) = &self.error {
            return format!("UNKNOWN: {error}\n");
        }
        let count = |s| self.keys.iter().filter(|k| k.state == s).count();
        let n = self.keys.len();
        // "1 guarded key holds its value", "1 of 2 guarded keys is wrong".
        let of = |m: usize, one: &str, many: &str| match n {
            1 => format!("1 guarded key {one}"),
            _ => format!(
                "{m} of {n} guarded keys {}",
                if m == 1 { one } else { many }
            ),
        };
        let mut out = match self.status {
            State::Ok => format!("OK: {}\n", of(n, "holds its value", "hold their values")),
            State::Warning => format!(
                "WARNING: {}, but {} would be guarded less well than configured\n",
                of(n, "holds its value", "hold their values"),
                self.keys
                    .iter()
                    .filter(|k| !k.degradations.is_empty())
                    .count()
            ),
            State::Wrong => format!(
                "CRITICAL: {}\n",
                of(count(State::Wrong), "is wrong", "are wrong")
            ),
            State::Unknown => format!(
                "UNKNOWN: {}\n",
                of(count(State::Unknown), "cannot be read", "cannot be read")
            ),
        };
        for k in &self.keys {
            let _ = match (k.state, &k.value, &k.error) {
                (State::Ok | State::Warning, Some(v), _) => {
                    writeln!(out, "ok       {} = {v}", k.key)
                }
                (State::Wrong, Some(v), _) => {
                    writeln!(out, "WRONG    {} = {v} (want {})", k.key, k.want)
                }
                (_, _, error) => writeln!(
                    out,
                    "UNKNOWN  {}: {}",
                    k.key,
                    error.as_deref().unwrap_or("cannot be read")
                ),
            };
            for d in &k.degradations {
                let _ = writeln!(out, "warning  {}", d.describe(&k.key));
            }
        }
        if let Some(h) = &self.hazards {
            let _ = writeln!(out, "note: {h}");
        }
        out
    }
}

/// Reads every guarded key once, and finds out what would degrade its guard: whether a
/// restoring guard may write it (by opening it for writing, without writing), and whatever
/// `environment` knows (netlink events, inotify watches).
pub fn check(
    config: &Config,
    knobs: &mut impl Knobs,
    environment: &mut impl FnMut(&Guard) -> Vec<Degradation>,
) -> Verdict {
    let keys: Vec<KeyCheck> = config
        .guards
        .iter()
        .map(|g| {
            let mut degradations = environment(g);
            if g.action.restores()
                && let Err(e) = knobs.open(&g.key, Access::ReadWrite)
                && e.write_refused()
            {
                degradations.push(Degradation::CannotRestore {
                    error: e.describe(),
                });
            }
            let (value, state, error) = match read_once(knobs, &g.key) {
                Ok(v) if v == g.want => (Some(v.to_string()), State::Ok, None),
                Ok(v) => (Some(v.to_string()), State::Wrong, None),
                Err(e) => (None, State::Unknown, Some(describe(&e))),
            };
            KeyCheck {
                key: g.key.to_string(),
                want: g.want.to_string(),
                value,
                state,
                error,
                degradations,
            }
        })
        .collect();
    let status = if keys.iter().any(|k| k.state == State::Wrong) {
        State::Wrong
    } else if keys.iter().any(|k| k.state == State::Unknown) {
        State::Unknown
    } else if keys.iter().any(|k| !k.degradations.is_empty()) {
        State::Warning
    } else {
        State::Ok
    };
    Verdict {
        status,
        error: None,
        keys,
        hazards: None,
    }
}

fn describe(e: &SysctlError) -> String {
    if e.is_missing() {
        "does not exist on this host".to_owned()
    } else {
        e.source.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Action, Guard};
    use crate::key::SysctlKey;
    use crate::knob::Op;
    use crate::value::Value;
    use std::collections::HashMap;
    use std::io;

    /// Knobs from a table; keys not in it do not exist.
    struct Table(HashMap<SysctlKey, Value>);

    impl Knobs for Table {
        type Knob = SysctlKey;
        fn open(&mut self, key: &SysctlKey, access: Access) -> Result<SysctlKey, SysctlError> {
            let (op, kind) = match access {
                Access::Read => (Op::Read, io::ErrorKind::NotFound),
                // This table stands for a process without CAP_NET_ADMIN.
                Access::ReadWrite => (Op::Write, io::ErrorKind::PermissionDenied),
            };
            match (self.0.contains_key(key), access) {
                (true, Access::Read) => Ok(key.clone()),
                _ => Err(SysctlError {
                    op,
                    key: key.clone(),
                    source: io::Error::from(kind),
                }),
            }
        }
        fn read(&mut self, key: &mut SysctlKey) -> Result<Value, SysctlError> {
            Ok(self.0[key].clone())
        }
        fn write(&mut self, _: &mut SysctlKey, _: &Value) -> Result<(), SysctlError> {
            unreachable!("check never writes")
        }
    }

    fn nothing(_: &Guard) -> Vec<Degradation> {
        Vec::new()
    }

    fn key(s: &str) -> SysctlKey {
        SysctlKey::parse(s).expect("key")
    }

    fn config(keys: &[&str]) -> Config {
        Config {
            guards: keys
                .iter()
                .map(|k| Guard {
                    key: key(k),
                    want: Value::new("1"),
                    action: Action::Alert,
                })
                .collect(),
            ..Config::default()
        }
    }

    fn table(values: &[(&str, &str)]) -> Table {
        Table(
            values
                .iter()
                .map(|(k, v)| (key(k), Value::new(v)))
                .collect(),
        )
    }

    /// `check` of `config` with the keys reading `values` (the others do not exist), in an
    /// environment that costs the guards nothing.
    fn checked(config: &Config, values: &[(&str, &str)]) -> Verdict {
        check(config, &mut table(values), &mut nothing)
    }

    #[test]
    fn all_holding_is_ok() {
        let out = checked(
            &config(&["net.ipv4.ip_forward"]),
            &[("net.ipv4.conf.all.forwarding", "1")],
        );
        assert_eq!(out.exit_code(), 0);
        assert_eq!(
            out.text(),
            "OK: 1 guarded key holds its value\nok       net.ipv4.conf.all.forwarding = 1\n"
        );
    }

    #[test]
    fn wrong_outranks_unknown() {
        let c = config(&["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]);
        let out = checked(&c, &[("net.ipv4.conf.all.forwarding", "0")]);
        assert_eq!(out.exit_code(), 2);
        assert_eq!(
            out.text(),
            "CRITICAL: 1 of 2 guarded keys is wrong\n\
             WRONG    net.ipv4.conf.all.forwarding = 0 (want 1)\n\
             UNKNOWN  net.ipv6.conf.all.forwarding: does not exist on this host\n"
        );
        let out = checked(&c, &[("net.ipv4.conf.all.forwarding", "1")]);
        assert_eq!(out.exit_code(), 3);
        assert!(
            out.text()
                .starts_with("UNKNOWN: 1 of 2 guarded keys cannot be read\n")
        );
        let c = config(&["a.b", "c.d", "e.f"]);
        let out = checked(&c, &[("a.b", "0"), ("c.d", "0"), ("e.f", "1")]);
        assert!(
            out.text()
                .starts_with("CRITICAL: 2 of 3 guarded keys are wrong\n"),
            "{}",
            out.text()
        );
    }

    #[test]
    fn json_names_each_key_state() {
        let out = checked(
            &config(&["net.ipv4.ip_forward"]),
            &[("net.ipv4.conf.all.forwarding", "0")],
        );
        let json = serde_json::to_value(&out).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "status": "wrong",
                "keys": [{"key": "net.ipv4.conf.all.forwarding", "want": "1", "value": "0", "state": "wrong"}]
            })
        );
    }

    #[test]
    fn a_key_that_holds_but_could_not_be_restored_is_a_warning_naming_the_capability() {
        let mut c = config(&["net.ipv4.ip_forward"]);
        c.guards[0].action = Action::Restore;
        let out = checked(&c, &[("net.ipv4.conf.all.forwarding", "1")]);
        assert_eq!(out.exit_code(), EXIT_WARNING);
        let text = out.text();
        assert!(
            text.starts_with("WARNING: 1 guarded key holds its value, but 1 would be guarded less well than configured\n"),
            "{text}"
        );
        assert!(
            text.contains("warning  net.ipv4.conf.all.forwarding: cannot restore (write net.ipv4.conf.all.forwarding: permission denied (fwdguard lacks CAP_NET_ADMIN, which writing it needs)); drops are reported but not undone"),
            "{text}"
        );
        let json = serde_json::to_value(&out).expect("json");
        assert_eq!(json["keys"][0]["degradations"][0]["kind"], "cannot-restore");
    }

    #[test]
    fn the_environment_adds_its_degradations() {
        let out = check(
            &config(&["net.ipv4.tcp_ecn"]),
            &mut table(&[("net.ipv4.tcp_ecn", "1")]),
            &mut |_: &Guard| {
                vec![Degradation::NoFileWatch {
                    error: "No space left on device".into(),
                }]
            },
        );
        assert_eq!(out.exit_code(), EXIT_WARNING);
        assert!(out.text().contains("warning  net.ipv4.tcp_ecn: no inotify watch (No space left on device); writes to it are seen only by the timed re-read"), "{}", out.text());
    }
}
