//! The configuration file: parsed whole and validated before anything uses it, so a bad file is
//! refused with `FILE:LINE:COL: message` and never half-applied.

use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

pub mod webhook;

pub use crate::guard::{Action, Flapping, Guard};
use crate::key::SysctlKey;
use crate::value::{Shape, Value};

/// Where `fwdguard run` looks when no `-c` is given.
pub const DEFAULT_PATH: &str = "/etc/fwdguard/fwdguard.toml";

/// Where the configuration came from, for the first log line and reloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    BuiltIn,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::BuiltIn => write!(f, "built-in default (no {DEFAULT_PATH})"),
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub origin: Origin,
    pub reread_interval: Duration,
    pub flapping: Flapping,
    pub guards: Vec<Guard>,
    /// Attach the BPF sysctl hook (`bpf-hook`, default true): it keeps `prevent` keys and
    /// names writers. `false`: no BPF at all; `prevent` then restores (and says so).
    pub bpf_hook: bool,
    pub causes: CauseSources,
    /// `[[webhook]]` tables, with their files read.
    pub webhooks: Vec<webhook::Webhook>,
    /// `[metrics]`, `None` unless `listen` is set.
    pub metrics: Option<Metrics>,
}

/// `[metrics]`: a Prometheus endpoint, off unless `listen` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metrics {
    pub listen: std::net::SocketAddr,
}

/// The port `config.example.toml` suggests for `[metrics] listen`.
pub const METRICS_PORT: u16 = 10191;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
}

impl RawMetrics {
    fn resolve(self) -> Result<Option<Metrics>, webhook::Invalid> {
        let Some(listen) = self.listen else {
            return Ok(None);
        };
        let addr = listen.get_ref().parse().map_err(|_| {
            (
                Some(listen.span()),
                format!(
                    "listen is an address and port, e.g. \"127.0.0.1:{METRICS_PORT}\" or \"[::1]:{METRICS_PORT}\""
                ),
            )
        })?;
        Ok(Some(Metrics { listen: addr }))
    }
}

/// What validating a configuration needs from the machine it is for. The binary reads the
/// real files; tests hand in their own.
pub trait Host {
    /// What `key`'s `/proc/sys` file holds now, `None` if it cannot be read: the shape of a key
    /// fwdguard does not know is learnt from it.
    fn current(&self, key: &SysctlKey) -> Option<String>;
    /// The content of a file a webhook names (`url-file`, a header's `file`, `hmac-secret-file`)
    /// without its trailing newline. Errors name the file, never its content.
    fn secret(&self, path: &Path) -> Result<String, String>;
    /// The certificates (DER) in a webhook's `ca-file`; errors name the file.
    fn ca_certs(&self, path: &Path) -> Result<Vec<Vec<u8>>, String>;
}

/// Where drops come from: systemd service jobs over D-Bus, and the persisted sysctl files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CauseSources {
    /// `service-units`: units whose jobs are watched; empty: no D-Bus at all.
    pub units: Vec<String>,
    /// `service-window`: a drop this long after such a job finished is still its doing.
    pub window: Duration,
    /// `persisted-root`: the directory below which `/etc/sysctl.conf` and the `sysctl.d`
    /// directories are read and watched: `/` on a host; tests and chroots point elsewhere.
    pub persisted_root: PathBuf,
}

impl Default for CauseSources {
    fn default() -> Self {
        Self {
            units: crate::service_jobs::DEFAULT_UNITS
                .iter()
                .map(|u| (*u).to_owned())
                .collect(),
            window: DEFAULT_SERVICE_WINDOW,
            persisted_root: PathBuf::from("/"),
        }
    }
}

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Anything but a regular file: a FIFO would block the reader, a device never ends.
    #[error(
        "{}: is {what}, not a regular file; fwdguard reads its configuration only from a regular file",
        path.display()
    )]
    NotRegular { path: PathBuf, what: &'static str },
    #[error(
        "{}: {size} bytes, over the limit of {MAX_SIZE} bytes (1 MiB) for a configuration file",
        path.display()
    )]
    TooLarge { path: PathBuf, size: u64 },
    /// `FILE:LINE:COL: message`, then the offending line with a caret under the column.
    #[error("{}:{line}:{column}: {message}\n{excerpt}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
        excerpt: String,
    },
}

const DEFAULT_REREAD: Duration = Duration::from_secs(30);
const DEFAULT_FLAP_THRESHOLD: u32 = 5;
const DEFAULT_FLAP_WINDOW: Duration = Duration::from_secs(60);
const DEFAULT_SERVICE_WINDOW: Duration = Duration::from_secs(5);
/// `service-window`: up to an hour; a drop an hour after a restart is not its doing.
pub const SERVICE_WINDOW: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(3600);

/// The largest configuration file read; a real one is a few hundred bytes.
pub const MAX_SIZE: u64 = 1 << 20;
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// `reread-interval`: more often than every second is a busy loop; the bounds also keep every
/// `Instant + interval` in the daemon far from overflow.
pub const REREAD_INTERVAL: RangeInclusive<Duration> = Duration::from_secs(1)..=DAY;
/// `flap-window`: 0s would never see two drops in one window; the upper bound keeps the
/// policy's `Instant + window` far from overflow.
pub const FLAP_WINDOW: RangeInclusive<Duration> = Duration::from_secs(1)..=DAY;
/// `flap-threshold`: one drop is not flapping; the policy keeps this many drop times per key.
pub const FLAP_THRESHOLD: RangeInclusive<u32> = 2..=1000;
/// How many `[[guard]]` tables a file may have: each is a watch and a file read per re-read.
pub const MAX_GUARDS: usize = 1000;

impl Default for Config {
    /// Guard `net.ipv4.conf.all.forwarding = 1`, restoring: what a Docker host needs.
    fn default() -> Self {
        Self {
            origin: Origin::BuiltIn,
            reread_interval: DEFAULT_REREAD,
            flapping: Flapping {
                threshold: DEFAULT_FLAP_THRESHOLD,
                window: DEFAULT_FLAP_WINDOW,
            },
            guards: vec![Guard {
                key: SysctlKey::parse("net.ipv4.conf.all.forwarding")
                    .unwrap_or_else(|e| unreachable!("built-in key: {e}")),
                want: Value::new("1"),
                action: Action::Restore,
            }],
            bpf_hook: true,
            causes: CauseSources::default(),
            webhooks: Vec::new(),
            metrics: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawConfig {
    reread_interval: Option<Spanned<HumanDuration>>,
    flap_threshold: Option<Spanned<i64>>,
    flap_window: Option<Spanned<HumanDuration>>,
    bpf_hook: Option<bool>,
    service_units: Option<Spanned<Vec<Spanned<String>>>>,
    service_window: Option<Spanned<HumanDuration>>,
    persisted_root: Option<Spanned<String>>,
    #[serde(default)]
    guard: Vec<Spanned<RawGuard>>,
    #[serde(default)]
    webhook: Vec<Spanned<webhook::RawWebhook>>,
    metrics: Option<RawMetrics>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawGuard {
    key: Spanned<String>,
    value: Spanned<RawValue>,
    #[serde(default)]
    action: Action,
}

/// `"30s"`, `"1m 30s"`, `"500ms"`: humantime's forms.
struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(Self).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{s}` is not a duration ({e}); write e.g. \"30s\" or \"5m\""
            ))
        })
    }
}

/// A duration field of another table (`[[webhook]] timeout`), in the same forms.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    HumanDuration::deserialize(d).map(|h| h.0)
}

/// A value may be written as a string (`"1"`, `"32768 60999"`) or a bare integer (`1`); what
/// the key can hold is checked once the key is known.
struct RawValue(String);

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        match Raw::deserialize(d).map_err(|_: D::Error| {
            serde::de::Error::custom("a value is a string such as \"1\" or an integer")
        })? {
            Raw::Int(i) => Ok(Self(i.to_string())),
            Raw::Str(s) => Ok(Self(s)),
        }
    }
}

/// A duration setting within its bounds, or an error at its value.
fn bounded(
    setting: Option<Spanned<HumanDuration>>,
    name: &str,
    bounds: &RangeInclusive<Duration>,
    default: Duration,
) -> Result<Duration, (Range<usize>, String)> {
    let Some(setting) = setting else {
        return Ok(default);
    };
    let span = setting.span();
    let d = setting.into_inner().0;
    if bounds.contains(&d) {
        return Ok(d);
    }
    Err((
        span,
        format!(
            "{name} must be between {} and {}, not {}",
            humantime::format_duration(*bounds.start()),
            humantime::format_duration(*bounds.end()),
            humantime::format_duration(d)
        ),
    ))
}

/// `service-units`, `service-window`, `persisted-root`.
fn causes(
    units: Option<Spanned<Vec<Spanned<String>>>>,
    window: Option<Spanned<HumanDuration>>,
    root: Option<Spanned<String>>,
) -> Result<CauseSources, (Range<usize>, String)> {
    let mut c = CauseSources {
        window: bounded(
            window,
            "service-window",
            &SERVICE_WINDOW,
            DEFAULT_SERVICE_WINDOW,
        )?,
        ..CauseSources::default()
    };
    if let Some(units) = units {
        c.units.clear();
        for u in units.into_inner() {
            let span = u.span();
            let name = u.into_inner();
            // systemd unit names: a suffix such as `.service`, no slashes or spaces.
            let valid = name.contains('.')
                && !name.starts_with('.')
                && name.chars().all(|ch| ch.is_ascii_graphic() && ch != '/');
            if !valid {
                return Err((
                    span,
                    format!("`{name}` is not a systemd unit name (e.g. network.service)"),
                ));
            }
            if c.units.contains(&name) {
                return Err((span, format!("{name} is listed twice")));
            }
            c.units.push(name);
        }
    }
    if let Some(root) = root {
        let span = root.span();
        let path = PathBuf::from(root.into_inner());
        if !path.is_absolute() {
            return Err((
                span,
                format!(
                    "persisted-root must be an absolute directory, not {}",
                    path.display()
                ),
            ));
        }
        c.persisted_root = path;
    }
    Ok(c)
}

impl Config {
    /// Validates `text`; `path` names it in errors. What the configuration names on the machine
    /// (the files a webhook reads, what a key fwdguard does not know holds now) comes from `host`.
    pub fn parse(text: &str, path: &Path, host: &impl Host) -> Result<Self, ConfigError> {
        let invalid = |span: Option<Range<usize>>, message: String| {
            let at = span.map_or(0, |s| s.start);
            let (line, column, excerpt) = locate(text, at);
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
                excerpt,
            }
        };
        let at = |(span, message): (Range<usize>, String)| invalid(Some(span), message);
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| invalid(e.span(), e.message().trim().to_owned()))?;

        let reread_interval = bounded(
            raw.reread_interval,
            "reread-interval",
            &REREAD_INTERVAL,
            DEFAULT_REREAD,
        )
        .map_err(at)?;
        let window = bounded(
            raw.flap_window,
            "flap-window",
            &FLAP_WINDOW,
            DEFAULT_FLAP_WINDOW,
        )
        .map_err(at)?;
        let threshold = match raw.flap_threshold {
            None => DEFAULT_FLAP_THRESHOLD,
            Some(t) => u32::try_from(*t.get_ref())
                .ok()
                .filter(|n| FLAP_THRESHOLD.contains(n))
                .ok_or_else(|| {
                    invalid(
                        Some(t.span()),
                        format!(
                            "flap-threshold must be between {} and {}, not {}",
                            FLAP_THRESHOLD.start(),
                            FLAP_THRESHOLD.end(),
                            t.get_ref()
                        ),
                    )
                })?,
        };
        if raw.guard.is_empty() {
            return Err(invalid(
                None,
                "no [[guard]] table: nothing to guard (see config.example.toml)".into(),
            ));
        }
        if let Some(extra) = raw.guard.get(MAX_GUARDS) {
            return Err(invalid(
                Some(extra.span()),
                format!("more than {MAX_GUARDS} [[guard]] tables"),
            ));
        }

        if let Some(extra) = raw
            .guard
            .iter()
            .filter(|g| g.get_ref().action == Action::Prevent)
            .nth(crate::bpf::MAX_PREVENT)
        {
            return Err(invalid(
                Some(extra.get_ref().key.span()),
                format!(
                    "more than {} guards with action \"prevent\" (the BPF hook holds that many); use \"restore\" for the rest",
                    crate::bpf::MAX_PREVENT
                ),
            ));
        }

        let mut guards: Vec<Guard> = Vec::with_capacity(raw.guard.len());
        let mut spans: Vec<Range<usize>> = Vec::with_capacity(raw.guard.len());
        for g in raw.guard {
            let g = g.into_inner();
            let span = g.key.span();
            let key = SysctlKey::parse(g.key.get_ref())
                .map_err(|e| invalid(Some(span.clone()), format!("invalid key: {e}")))?;
            if let Some(i) = guards.iter().position(|other| other.key == key) {
                let (line, ..) = locate(text, spans[i].start);
                let same = if g.key.get_ref().contains("ip_forward") {
                    " (net.ipv4.ip_forward and net.ipv4.conf.all.forwarding are one knob)"
                } else {
                    ""
                };
                return Err(invalid(
                    Some(span),
                    format!("{key} is already guarded at line {line}{same}"),
                ));
            }
            let value_span = g.value.span();
            let raw_value = &g.value.get_ref().0;
            if raw_value.trim().is_empty() {
                return Err(invalid(
                    Some(value_span),
                    "a value must not be empty".into(),
                ));
            }
            let shape = Shape::known(&key)
                .or_else(|| host.current(&key).map(|now| Shape::infer(&now)))
                .unwrap_or(Shape::Text);
            let want = shape
                .value(raw_value)
                .map_err(|e| invalid(Some(value_span.clone()), format!("{key}: {e}")))?;
            if g.action == Action::Prevent {
                prevent_fits(&key, &want).map_err(|e| invalid(Some(value_span), e))?;
            }
            guards.push(Guard {
                key,
                want,
                action: g.action,
            });
            spans.push(span);
        }

        let causes =
            causes(raw.service_units, raw.service_window, raw.persisted_root).map_err(at)?;
        let mut webhooks = Vec::with_capacity(raw.webhook.len());
        for (i, w) in raw.webhook.into_iter().enumerate() {
            let table = w.span();
            let webhook = w
                .into_inner()
                .resolve(i, host)
                .map_err(|(span, message)| invalid(span.or(Some(table)), message))?;
            if let Some(other) = webhooks
                .iter()
                .find(|o: &&webhook::Webhook| o.name == webhook.name)
            {
                return Err(invalid(
                    None,
                    format!("two webhooks are named {}: names must differ", other.name),
                ));
            }
            webhooks.push(webhook);
        }
        let metrics = match raw.metrics {
            Some(m) => m
                .resolve()
                .map_err(|(span, message)| invalid(span, message))?,
            None => None,
        };

        Ok(Self {
            origin: Origin::File(path.to_owned()),
            reread_interval,
            flapping: Flapping { threshold, window },
            guards,
            bpf_hook: raw.bpf_hook.unwrap_or(true),
            causes,
            webhooks,
            metrics,
        })
    }

    /// Guards whose action is `prevent`.
    pub fn prevented(&self) -> impl Iterator<Item = &Guard> {
        self.guards.iter().filter(|g| g.action == Action::Prevent)
    }
}

/// What the hook can replace: one integer, a `/proc/sys` name of at most 63 bytes.
fn prevent_fits(key: &SysctlKey, want: &Value) -> Result<(), String> {
    if want.as_str().trim().parse::<i64>().is_err() {
        return Err(format!(
            "{key}: action \"prevent\" needs a value that is one integer (the hook writes it in place of a write), not {:?}; use \"restore\"",
            want.as_str()
        ));
    }
    if key.proc_name().len() > crate::bpf::program::NAME_MAX {
        return Err(format!(
            "{key}: action \"prevent\" works for keys up to {} bytes under /proc/sys; use \"restore\"",
            crate::bpf::program::NAME_MAX
        ));
    }
    Ok(())
}

/// 1-based line and column of byte offset `at`, and that line with a caret under the column.
/// A line that sets a key whose value may be a secret is shown with the value left out.
fn locate(text: &str, at: usize) -> (usize, usize, String) {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    let source = &text[line_start..line_end];
    let excerpt = match redacted(source) {
        Some((shown, value_column)) => format!("  {shown}\n  {}^", " ".repeat(value_column)),
        None => format!("  {source}\n  {}^", " ".repeat(column - 1)),
    };
    (line, column, excerpt)
}

/// Keys whose values may hold secrets: a Slack or Alertmanager URL can be its own token, and
/// header values carry credentials. Errors must not copy them into a terminal or the journal.
const SECRET_KEYS: [&str; 2] = ["url", "headers"];

/// `url = <redacted>` for a line that sets one of [`SECRET_KEYS`], with the value's column.
fn redacted(source: &str) -> Option<(String, usize)> {
    let (key, _) = source.split_once('=')?;
    let name = key.trim().trim_matches(['"', '\'']);
    if !SECRET_KEYS.contains(&name) {
        return None;
    }
    let key = key.trim_end();
    Some((format!("{key} = <redacted>"), key.chars().count() + 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine whose unknown keys hold `current` and which has no files.
    pub(crate) struct Fake {
        pub current: Option<&'static str>,
    }

    impl Host for Fake {
        fn current(&self, _: &SysctlKey) -> Option<String> {
            self.current.map(str::to_owned)
        }
        fn secret(&self, path: &Path) -> Result<String, String> {
            Err(format!("file {}: no files in this test", path.display()))
        }
        fn ca_certs(&self, path: &Path) -> Result<Vec<Vec<u8>>, String> {
            self.secret(path).map(|_| Vec::new())
        }
    }

    pub(crate) const NO_HOST: Fake = Fake { current: None };

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"), &NO_HOST)
    }

    /// The first line of an error, as `config check` prints it.
    fn error(text: &str) -> String {
        let err = parse(text).expect_err("config should be refused");
        err.to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn full_config() {
        let c = parse(
            r#"
reread-interval = "10s"
flap-threshold = 3
flap-window = "2m"

[[guard]]
key = "net.ipv4.ip_forward"
value = "1"

[[guard]]
key = "net/ipv6/conf/all/forwarding"
value = 1
action = "alert"
"#,
        )
        .expect("valid");
        assert_eq!(c.reread_interval, Duration::from_secs(10));
        assert_eq!(
            c.flapping,
            Flapping {
                threshold: 3,
                window: Duration::from_secs(120)
            }
        );
        assert_eq!(c.guards.len(), 2);
        assert_eq!(c.guards[0].key.to_string(), "net.ipv4.conf.all.forwarding");
        assert_eq!(c.guards[0].action, Action::Restore);
        assert_eq!(c.guards[1].want, Value::new("1"));
        assert_eq!(c.guards[1].action, Action::Alert);
    }

    #[test]
    fn prevent_needs_one_integer_and_a_short_name() {
        let c = parse(
            "[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = \"1\"\naction = \"prevent\"\n",
        )
        .expect("valid");
        assert_eq!(c.guards[0].action, Action::Prevent);
        assert!(c.guards[0].action.restores());
        assert_eq!(c.prevented().count(), 1);
        assert!(c.bpf_hook, "on by default");
        let off = parse("bpf-hook = false\n[[guard]]\nkey = \"net.ipv4.ip_forward\"\nvalue = 1\n")
            .expect("valid");
        assert!(!off.bpf_hook);
        let e = parse(
            "[[guard]]\nkey = \"net.ipv4.ip_local_port_range\"\nvalue = \"1024 65000\"\naction = \"prevent\"\n",
        )
        .expect_err("two integers");
        let text = e.to_string();
        assert!(text.contains(":3:9: net.ipv4.ip_local_port_range: action \"prevent\" needs a value that is one integer"), "{text}");
        let long = format!("net.ipv4.conf.{}.forwarding", "x".repeat(15));
        let e = parse(&format!(
            "[[guard]]\nkey = \"{long}\"\nvalue = \"1\"\naction = \"prevent\"\n"
        ));
        // Interface names are at most 15 bytes, so every forwarding key fits.
        assert!(e.is_ok(), "{e:?}");
    }

    #[test]
    fn defaults() {
        let c = parse("[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = \"1\"\n")
            .expect("valid");
        assert_eq!(c.reread_interval, Duration::from_secs(30));
        assert_eq!(c.flapping, Config::default().flapping);
        assert_eq!(c.guards, Config::default().guards);
        assert_eq!(c.causes, CauseSources::default());
        assert_eq!(c.causes.units.len(), 8);
    }

    #[test]
    fn causes_settings() {
        let c = parse(
            "service-units = [\"network.service\", \"docker.service\"]\nservice-window = \"2s\"\npersisted-root = \"/srv/image\"\n[[guard]]\nkey = \"net.ipv4.ip_forward\"\nvalue = 1\n",
        )
        .expect("valid");
        assert_eq!(c.causes.units, ["network.service", "docker.service"]);
        assert_eq!(c.causes.window, Duration::from_secs(2));
        assert_eq!(c.causes.persisted_root, PathBuf::from("/srv/image"));
        let none =
            parse("service-units = []\n[[guard]]\nkey = \"net.ipv4.ip_forward\"\nvalue = 1\n")
                .expect("valid");
        assert!(none.causes.units.is_empty());
        for (text, want) in [
            (
                "service-units = [\"network\"]\n",
                "test.toml:1:18: `network` is not a systemd unit name",
            ),
            (
                "service-units = [\"a.service\", \"a.service\"]\n",
                "test.toml:1:31: a.service is listed twice",
            ),
            (
                "service-window = \"2h\"\n",
                "test.toml:1:18: service-window must be between 0s and 1h, not 2h",
            ),
            (
                "persisted-root = \"image\"\n",
                "test.toml:1:18: persisted-root must be an absolute directory",
            ),
        ] {
            let text = format!("{text}[[guard]]\nkey = \"net.ipv4.ip_forward\"\nvalue = 1\n");
            let got = error(&text);
            assert!(got.starts_with(want), "{got}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_position() {
        assert_eq!(
            error("reread-intervall = \"5s\"\n"),
            "test.toml:1:1: unknown field `reread-intervall`, expected one of `reread-interval`, `flap-threshold`, `flap-window`, `bpf-hook`, `service-units`, `service-window`, `persisted-root`, `guard`, `webhook`, `metrics`"
        );
        let e =
            error("[[guard]]\nkey = \"net.ipv4.ip_forward\"\nvalue = \"1\"\nation = \"alert\"\n");
        assert!(e.starts_with("test.toml:4:1: unknown field `ation`"), "{e}");
    }

    #[test]
    fn every_error_names_file_line_and_column() {
        let cases = [
            (
                "reread-interval = \"soon\"\n",
                "test.toml:1:19: `soon` is not a duration",
            ),
            (
                "reread-interval = \"100ms\"\n[[guard]]\nkey=\"a.b\"\nvalue=1\n",
                "test.toml:1:19: reread-interval must be between 1s and 1day, not 100ms",
            ),
            (
                "flap-threshold = 1\n[[guard]]\nkey=\"a.b\"\nvalue=1\n",
                "test.toml:1:18: flap-threshold must be between 2 and 1000, not 1",
            ),
            (
                "flap-threshold = -1\n",
                "test.toml:1:18: flap-threshold must be between 2 and 1000, not -1",
            ),
            (
                "[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = \"yes\"\n",
                "test.toml:3:9: net.ipv4.conf.all.forwarding: `yes` is not an integer; this key holds an integer",
            ),
            (
                "[[guard]]\nkey = \"net.ipv4.ip_forward\"\nvalue = \"1 0\"\n",
                "test.toml:3:9: net.ipv4.conf.all.forwarding: `1 0` has 2 fields; this key holds an integer",
            ),
            ("", "test.toml:1:1: no [[guard]] table: nothing to guard"),
            (
                "[[guard]]\nkey = \"/proc/sys/net/ipv4/ip_forward\"\nvalue = \"1\"\n",
                "test.toml:2:7: invalid key: `/proc/sys/net/ipv4/ip_forward` is an absolute path",
            ),
            (
                "[[guard]]\nkey = \"net/../../etc\"\nvalue = \"1\"\n",
                "test.toml:2:7: invalid key: `net/../../etc` contains `..`",
            ),
            (
                "[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = \"\"\n",
                "test.toml:3:9: a value must not be empty",
            ),
            (
                "[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = true\n",
                "test.toml:3:9: a value is a string such as \"1\" or an integer",
            ),
            (
                "[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\n",
                "test.toml:1:1: missing field `value`",
            ),
            (
                "[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = \"1\"\naction = \"fix\"\n",
                "test.toml:4:10: unknown variant `fix`, expected one of `restore`, `alert`, `prevent`",
            ),
            (
                "[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = 1\n[[guard]]\nkey = \"net.ipv4.ip_forward\"\nvalue = 1\n",
                "test.toml:5:7: net.ipv4.conf.all.forwarding is already guarded at line 2 (net.ipv4.ip_forward and net.ipv4.conf.all.forwarding are one knob)",
            ),
            (
                "[[guard]\n",
                "test.toml:1:9: unclosed array table, expected `]`",
            ),
        ];
        for (text, want) in cases {
            let got = error(text);
            assert!(
                got.starts_with(want),
                "for {text:?}\n  got:  {got}\n  want: {want}"
            );
        }
    }

    #[test]
    fn errors_never_echo_a_url_or_header_value() {
        let guard = "[[guard]]\nkey = \"net.ipv4.ip_forward\"\nvalue = \"1\"\n";
        for (webhook, at) in [
            (
                "url = \"ftp://hooks.example/T0/SECRET\"\nformat = \"json\"",
                "5:7",
            ),
            (
                "url = \"https://x/SECRET\"\nheaders = { Authorization = \"Bearer SECRET\", X = 5 }",
                "6:50",
            ),
            (
                "\"url\" = \"https://hooks.example/SECRET\"\nurl-file = \"/x\"\nformat = \"json\"",
                "5:9",
            ),
        ] {
            let text = format!("{guard}[[webhook]]\n{webhook}\n");
            let e = Config::parse(&text, Path::new("f.toml"), &NO_HOST)
                .unwrap_err()
                .to_string();
            assert!(!e.contains("SECRET"), "{e}");
            assert!(e.starts_with(&format!("f.toml:{at}: ")), "{e}");
            assert!(e.contains(" = <redacted>\n"), "{e}");
        }
        // Other lines are shown as they are.
        let e = Config::parse(
            "[[guard]]\nkey = \"net.ipv4.ip_forward\"\nvalue = \"yes\"\n",
            Path::new("f.toml"),
            &NO_HOST,
        )
        .unwrap_err();
        assert!(e.to_string().contains("  value = \"yes\"\n"), "{e}");
    }

    #[test]
    fn prevent_is_limited_to_what_the_hook_holds() {
        let guards = |n: usize, action: &str| -> String {
            (0..n)
                .map(|i| {
                    format!(
                        "[[guard]]\nkey = \"net.ipv4.conf.v{i}.forwarding\"\nvalue = \"1\"\naction = \"{action}\"\n\n"
                    )
                })
                .collect()
        };
        let path = Path::new("f.toml");
        let ok = guards(crate::bpf::MAX_PREVENT, "prevent")
            + "[[guard]]\nkey = \"net.ipv4.ip_forward\"\nvalue = \"1\"\n";
        Config::parse(&ok, path, &NO_HOST).expect("500 prevent guards and a restore one");
        let e = Config::parse(
            &guards(crate::bpf::MAX_PREVENT + 1, "prevent"),
            path,
            &NO_HOST,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("f.toml:2502:7: more than 500 guards with action \"prevent\""),
            "{e}"
        );
    }

    #[test]
    fn errors_show_the_line_with_a_caret() {
        let err = parse("[[guard]]\nkey = \"/etc/passwd\"\nvalue = 1\n").expect_err("refused");
        let text = err.to_string();
        assert!(
            text.ends_with("\n  key = \"/etc/passwd\"\n        ^"),
            "{text}"
        );
    }

    /// The bounds, each refused at its own value even when a comment above names the setting.
    #[test]
    fn bounds_point_at_the_setting_not_at_a_comment() {
        let guard = "[[guard]]\nkey = \"net.ipv4.ip_forward\"\nvalue = 1\n";
        for (setting, want) in [
            (
                "reread-interval = \"500000000000y\"",
                "2:19: reread-interval must be between 1s and 1day, not 500000000000years",
            ),
            (
                "reread-interval = \"1day 1s\"",
                "2:19: reread-interval must be between 1s and 1day, not 1day 1s",
            ),
            (
                "flap-window = \"0s\"",
                "2:15: flap-window must be between 1s and 1day, not 0s",
            ),
            (
                "flap-window = \"500000000000y\"",
                "2:15: flap-window must be between 1s and 1day",
            ),
            (
                "flap-threshold = 1001",
                "2:18: flap-threshold must be between 2 and 1000, not 1001",
            ),
            (
                "flap-threshold = 9223372036854775807",
                "2:18: flap-threshold must be between 2 and 1000",
            ),
        ] {
            let text = format!(
                "# reread-interval, flap-window and flap-threshold are bounded\n{setting}\n{guard}"
            );
            let got = error(&text);
            assert!(got.starts_with(&format!("test.toml:{want}")), "{got}");
        }
        let c = parse(&format!(
            "reread-interval = \"1d\"\nflap-window = \"1s\"\nflap-threshold = 1000\n{guard}"
        ))
        .expect("the bounds themselves are valid");
        assert_eq!(c.reread_interval, Duration::from_secs(86400));
        assert_eq!(c.flapping.threshold, 1000);
    }

    #[test]
    fn values_are_stored_as_the_kernel_prints_them() {
        let c = parse(
            "[[guard]]\nkey = \"net.ipv4.ip_forward\"\nvalue = \"01\"\n\
             [[guard]]\nkey = \"net.ipv4.ip_local_port_range\"\nvalue = \" 32768\t60999 \"\n\
             [[guard]]\nkey = \"net.ipv4.tcp_congestion_control\"\nvalue = \"bbr\"\n",
        )
        .expect("valid");
        let want: Vec<&str> = c.guards.iter().map(|g| g.want.as_str()).collect();
        assert_eq!(want, ["1", "32768 60999", "bbr"]);
    }

    #[test]
    fn unknown_keys_take_their_shape_from_the_host() {
        let text = "[[guard]]\nkey = \"net.core.somaxconn\"\nvalue = \"many\"\n";
        assert!(parse(text).is_ok(), "without the host, any text");
        let err = Config::parse(
            text,
            Path::new("test.toml"),
            &Fake {
                current: Some("4096\n"),
            },
        )
        .expect_err("an integer key on this host");
        assert!(
            err.to_string().starts_with(
                "test.toml:3:9: net.core.somaxconn: `many` is not an integer; this key holds an integer"
            ),
            "{err}"
        );
        let c = Config::parse(
            "[[guard]]\nkey = \"net.ipv4.tcp_congestion_control\"\nvalue = \"bbr\"\n",
            Path::new("test.toml"),
            &Fake {
                current: Some("cubic\n"),
            },
        )
        .expect("a text key");
        assert_eq!(c.guards[0].want.as_str(), "bbr");
    }

    #[test]
    fn more_guards_than_the_bound_are_refused() {
        let text: String = (0..=MAX_GUARDS)
            .map(|i| format!("[[guard]]\nkey = \"net.ipv4.conf.if{i}.forwarding\"\nvalue = 1\n"))
            .collect();
        let got = error(&text);
        assert!(
            got.starts_with(&format!(
                "test.toml:{}:1: more than 1000 [[guard]] tables",
                3 * MAX_GUARDS + 1
            )),
            "{got}"
        );
    }
}
