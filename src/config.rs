//! The configuration file: parsed whole and validated before anything uses it, so a bad file is
//! refused with `FILE:LINE:COL: message` and never half-applied.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::key::SysctlKey;
use crate::sysctl::Value;

/// Where `fwdguard run` looks when no `-c` is given.
pub const DEFAULT_PATH: &str = "/etc/fwdguard/fwdguard.toml";

/// What to do when a guarded key drifts from its wanted value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Write the wanted value back, verify it, then report.
    #[default]
    Restore,
    /// Report only; report again when the value comes back.
    Alert,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Restore => "restore",
            Action::Alert => "alert",
        }
    }
}

/// One guarded key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub key: SysctlKey,
    pub want: Value,
    pub action: Action,
}

/// When repeated drops count as flapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flapping {
    /// This many drops of one key ...
    pub threshold: u32,
    /// ... within this window.
    pub window: Duration,
}

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

fn default_reread() -> Duration {
    DEFAULT_REREAD
}
fn default_flap_threshold() -> u32 {
    DEFAULT_FLAP_THRESHOLD
}
fn default_flap_window() -> Duration {
    DEFAULT_FLAP_WINDOW
}

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
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_reread", deserialize_with = "duration")]
    reread_interval: Duration,
    #[serde(default = "default_flap_threshold")]
    flap_threshold: u32,
    #[serde(default = "default_flap_window", deserialize_with = "duration")]
    flap_window: Duration,
    #[serde(default)]
    guard: Vec<toml::Spanned<RawGuard>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawGuard {
    key: toml::Spanned<String>,
    #[serde(deserialize_with = "value")]
    value: Value,
    #[serde(default)]
    action: Action,
}

/// `"30s"`, `"1m 30s"`, `"500ms"`: humantime's forms.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{s}` is not a duration ({e}); write e.g. \"30s\" or \"5m\""
        ))
    })
}

/// A value may be written as a string (`"1"`, `"32768 60999"`) or a bare integer (`1`).
fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Str(String),
    }
    let v = match Raw::deserialize(d).map_err(|_: D::Error| {
        serde::de::Error::custom("a value is a string such as \"1\" or an integer")
    })? {
        Raw::Int(i) => Value::new(&i.to_string()),
        Raw::Str(s) => Value::new(&s),
    };
    if v.as_str().is_empty() {
        return Err(serde::de::Error::custom("a value must not be empty"));
    }
    Ok(v)
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates `text`; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
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
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| invalid(e.span(), e.message().trim().to_owned()))?;

        if raw.reread_interval < Duration::from_secs(1) {
            let at = text.find("reread-interval").map(|i| i..i);
            return Err(invalid(at, "reread-interval must be at least 1s".into()));
        }
        if raw.flap_threshold < 2 {
            let at = text.find("flap-threshold").map(|i| i..i);
            return Err(invalid(at, "flap-threshold must be at least 2".into()));
        }
        if raw.guard.is_empty() {
            return Err(invalid(
                None,
                "no [[guard]] table: nothing to guard (see config.example.toml)".into(),
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
            guards.push(Guard {
                key,
                want: g.value,
                action: g.action,
            });
            spans.push(span);
        }

        Ok(Self {
            origin: Origin::File(path.to_owned()),
            reread_interval: raw.reread_interval,
            flapping: Flapping {
                threshold: raw.flap_threshold,
                window: raw.flap_window,
            },
            guards,
        })
    }

    /// What `fwdguard run` uses without `-c`: the default file if it exists, else the built-in
    /// default. A file that exists but is invalid is an error, never silently replaced.
    pub fn resolve(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        match explicit {
            Some(path) => Self::load(path),
            None => match Self::load(Path::new(DEFAULT_PATH)) {
                Err(ConfigError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Ok(Self::default())
                }
                other => other,
            },
        }
    }
}

/// 1-based line and column of byte offset `at`, and that line with a caret under the column.
fn locate(text: &str, at: usize) -> (usize, usize, String) {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    let source = &text[line_start..line_end];
    let excerpt = format!("  {source}\n  {}^", " ".repeat(column - 1));
    (line, column, excerpt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
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
    fn defaults() {
        let c = parse("[[guard]]\nkey = \"net.ipv4.conf.all.forwarding\"\nvalue = \"1\"\n")
            .expect("valid");
        assert_eq!(c.reread_interval, Duration::from_secs(30));
        assert_eq!(c.flapping, Config::default().flapping);
        assert_eq!(c.guards, Config::default().guards);
    }

    #[test]
    fn unknown_keys_are_refused_with_position() {
        assert_eq!(
            error("reread-intervall = \"5s\"\n"),
            "test.toml:1:1: unknown field `reread-intervall`, expected one of `reread-interval`, `flap-threshold`, `flap-window`, `guard`"
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
                "test.toml:1:1: reread-interval must be at least 1s",
            ),
            (
                "flap-threshold = 1\n[[guard]]\nkey=\"a.b\"\nvalue=1\n",
                "test.toml:1:1: flap-threshold must be at least 2",
            ),
            (
                "flap-threshold = -1\n",
                "test.toml:1:18: invalid value: integer `-1`",
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
                "test.toml:4:10: unknown variant `fix`, expected `restore` or `alert`",
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
    fn errors_show_the_line_with_a_caret() {
        let err = parse("[[guard]]\nkey = \"/etc/passwd\"\nvalue = 1\n").expect_err("refused");
        let text = err.to_string();
        assert!(
            text.ends_with("\n  key = \"/etc/passwd\"\n        ^"),
            "{text}"
        );
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = Config::resolve(Some(Path::new("/nonexistent/fwdguard.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }));
        assert!(
            err.to_string().starts_with("/nonexistent/fwdguard.toml: "),
            "{err}"
        );
    }
}
