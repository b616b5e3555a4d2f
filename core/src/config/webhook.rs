//! The `[[webhook]]` tables. They are parsed with the rest of the file and then resolved: the
//! URL, header values and HMAC secret that live in files are read (through the caller's
//! [`super::Host`]), so `config check`, the start and every reload see the same thing and a
//! bad file is refused with `FILE:LINE:COL`.
//!
//! Secrets (a URL, header values from files, the HMAC secret) are held in [`Secret`], whose
//! `Debug` shows nothing; a URL is shown as `scheme://host:port` only ([`Target`]'s `Display`).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::report::Event;

/// How long one delivery attempt may take, connection and TLS handshake included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// A report that could not be delivered for this long is given up.
pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(3600);
/// Reports waiting for one endpoint; beyond this the oldest are dropped.
pub const DEFAULT_QUEUE: usize = 256;
const MAX_QUEUE: usize = 100_000;

/// The body an endpoint gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// fwdguard's own versioned JSON (`docs/webhook.md`).
    Json,
    /// A Slack incoming-webhook message (Mattermost and others accept it too).
    Slack,
    /// Alerts for Alertmanager's `/api/v2/alerts`.
    Alertmanager,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Slack => "slack",
            Format::Alertmanager => "alertmanager",
        }
    }
}

/// A value that must never be shown: `Debug` prints no part of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where a webhook goes. Only scheme, host and port are ever shown; the path and query (a
/// Slack URL's token lives there) are not.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    /// As in the URL; an IPv6 address keeps its brackets.
    pub host: String,
    pub port: u16,
    path_and_query: Secret,
}

impl Target {
    /// Parses an absolute http(s) URL. Error messages never contain the URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        if !url.contains("://") {
            return Err("the URL has no scheme: write http://... or https://...".into());
        }
        let uri: http::Uri = url
            .trim()
            .parse()
            .map_err(|e| format!("the URL does not parse: {e}"))?;
        let https = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("https") => true,
            Some("http") => false,
            Some(other) => {
                return Err(format!(
                    "URL scheme `{other}` is not supported: use http or https"
                ));
            }
            None => return Err("the URL has no scheme: write http://... or https://...".into()),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| "the URL has no host".to_owned())?;
        if authority.as_str().contains('@') {
            return Err(
                "credentials in the URL (user:password@) are not supported: send them in a header, e.g. headers = { Authorization = { file = \"...\" } }"
                    .into(),
            );
        }
        let host = authority.host();
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        Ok(Self {
            https,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            path_and_query: Secret::new(
                uri.path_and_query()
                    .map_or("/".to_owned(), |p| p.as_str().to_owned()),
            ),
        })
    }

    /// The request target (path and query), a secret.
    pub fn path_and_query(&self) -> &str {
        self.path_and_query.expose()
    }

    /// The same server with another path (Alertmanager's API under a base URL).
    pub fn with_path(&self, path: &str) -> Self {
        Self {
            path_and_query: Secret::new(path),
            ..self.clone()
        }
    }

    /// The host name for TLS and DNS: without an IPv6 literal's brackets.
    pub fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// `host[:port]` for the Host header.
    pub fn authority(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({self})")
    }
}

/// Certificates of a private CA, trusted instead of the system's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    pub path: PathBuf,
    /// DER, one per certificate in the file.
    pub certs: Vec<Vec<u8>>,
}

/// A validated, resolved webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// For logs and metrics labels: `name`, or `<format>-<n>` (n counts from 1 in file order).
    pub name: String,
    pub format: Format,
    pub target: Target,
    /// Extra request headers; values may come from files, so they are secrets.
    pub headers: Vec<(http::HeaderName, Secret)>,
    pub timeout: Duration,
    /// Sorted, without duplicates.
    pub events: Vec<Event>,
    pub hmac_secret: Option<Secret>,
    pub ca: Option<CaFile>,
    pub give_up_after: Duration,
    pub queue: usize,
}

impl Webhook {
    pub fn wants(&self, event: Event) -> bool {
        event == Event::Test || self.events.binary_search(&event).is_ok()
    }

    /// `name (scheme://host:port)`, how logs name the endpoint.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, self.target)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct RawWebhook {
    name: Option<Spanned<String>>,
    format: Format,
    url: Option<Spanned<String>>,
    url_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    headers: BTreeMap<Spanned<String>, Spanned<HeaderSource>>,
    #[serde(
        default = "default_timeout",
        deserialize_with = "crate::config::duration"
    )]
    timeout: Duration,
    events: Option<Spanned<Vec<Event>>>,
    hmac_secret_file: Option<Spanned<PathBuf>>,
    ca_file: Option<Spanned<PathBuf>>,
    #[serde(
        default = "default_give_up_after",
        deserialize_with = "crate::config::duration"
    )]
    give_up_after: Duration,
    #[serde(default = "default_queue")]
    queue: Spanned<usize>,
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}
fn default_give_up_after() -> Duration {
    DEFAULT_GIVE_UP_AFTER
}
fn default_queue() -> Spanned<usize> {
    Spanned::new(0..0, DEFAULT_QUEUE)
}

/// A header value: inline, or `{ file = "/path" }`.
enum HeaderSource {
    Inline(String),
    File(PathBuf),
}

impl<'de> Deserialize<'de> for HeaderSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Inline(String),
            File(FileRef),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FileRef {
            file: PathBuf,
        }
        match Raw::deserialize(d).map_err(|_: D::Error| {
            serde::de::Error::custom(
                "a header value is a string or { file = \"/path/to/file\" } (its content is the value)",
            )
        })? {
            Raw::Inline(s) => Ok(HeaderSource::Inline(s)),
            Raw::File(f) => Ok(HeaderSource::File(f.file)),
        }
    }
}

/// A problem at a place in the file; the config module turns it into `FILE:LINE:COL`.
pub(crate) type Invalid = (Option<Range<usize>>, String);

/// Headers fwdguard sets itself, or that would break the request.
const RESERVED_HEADERS: [&str; 6] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "x-fwdguard-signature",
];

impl RawWebhook {
    /// Validates the table and reads the files it names. `index` counts from 0 in file order.
    pub(crate) fn resolve(self, index: usize, host: &impl super::Host) -> Result<Webhook, Invalid> {
        let at = |s: Range<usize>| Some(s);
        let name = match self.name {
            Some(n) => {
                let ok = !n.get_ref().is_empty()
                    && n.get_ref()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                if !ok {
                    return Err((
                        at(n.span()),
                        "a webhook name is letters, digits, `-`, `_` and `.` only".into(),
                    ));
                }
                n.into_inner()
            }
            None => format!("{}-{}", self.format.as_str(), index + 1),
        };

        let (url, span, from_file) = match (self.url, self.url_file) {
            (Some(u), None) => {
                let span = u.span();
                (u.into_inner(), span, None)
            }
            (None, Some(f)) => {
                let span = f.span();
                let path = f.into_inner();
                let text = host.secret(&path).map_err(|e| (at(span.clone()), e))?;
                (text, span, Some(path))
            }
            (Some(u), Some(_)) => {
                return Err((at(u.span()), "give either url or url-file, not both".into()));
            }
            (None, None) => {
                return Err((
                    None,
                    format!("webhook {name}: missing url or url-file (the address to send to)"),
                ));
            }
        };
        let mut target = Target::parse(&url).map_err(|e| {
            let e = match &from_file {
                Some(p) => format!("url-file {}: {e}", p.display()),
                None => e,
            };
            (at(span.clone()), e)
        })?;
        if self.format == Format::Alertmanager {
            // The url is Alertmanager's address; alerts go to its v2 API under it.
            let base = target.path_and_query().trim_end_matches('/').to_owned();
            if !base.ends_with("/api/v2/alerts") {
                target = target.with_path(&format!("{base}/api/v2/alerts"));
            }
        }

        let mut headers = Vec::new();
        for (header, value) in self.headers {
            let hspan = header.span();
            let header = header.into_inner();
            let hname = http::HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                (
                    at(hspan.clone()),
                    format!("`{header}` is not a valid HTTP header name"),
                )
            })?;
            if RESERVED_HEADERS.contains(&hname.as_str()) {
                return Err((
                    at(hspan),
                    format!("header {header} is set by fwdguard and cannot be configured"),
                ));
            }
            let vspan = value.span();
            let text = match value.into_inner() {
                HeaderSource::Inline(s) => s,
                HeaderSource::File(p) => host.secret(&p).map_err(|e| (at(vspan.clone()), e))?,
            };
            if http::HeaderValue::from_str(&text).is_err() {
                // Never echo the value: it may be a token.
                return Err((
                    at(vspan),
                    format!(
                        "the value of header {header} contains characters a header cannot carry (newline, control characters)"
                    ),
                ));
            }
            headers.push((hname, Secret::new(text)));
        }

        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(300) {
            return Err((
                None,
                format!("webhook {name}: timeout must be between 100ms and 5m"),
            ));
        }
        if self.give_up_after < Duration::from_secs(1) {
            return Err((
                None,
                format!("webhook {name}: give-up-after must be at least 1s"),
            ));
        }
        let queue_span = self.queue.span();
        let queue = self.queue.into_inner();
        if !(1..=MAX_QUEUE).contains(&queue) {
            return Err((
                at(queue_span),
                format!("queue must be between 1 and {MAX_QUEUE}"),
            ));
        }

        let mut events = match self.events {
            Some(e) if e.get_ref().is_empty() => {
                return Err((
                    at(e.span()),
                    "events is empty: list at least one, or leave it out for the default set"
                        .into(),
                ));
            }
            Some(e) => e.into_inner(),
            None => Event::defaults(),
        };
        events.sort();
        events.dedup();

        let hmac_secret = match self.hmac_secret_file {
            Some(f) => {
                let span = f.span();
                let secret = host
                    .secret(f.get_ref())
                    .map_err(|e| (at(span.clone()), e))?;
                if secret.is_empty() {
                    return Err((
                        at(span),
                        format!("hmac-secret-file {} is empty", f.get_ref().display()),
                    ));
                }
                if self.format != Format::Json {
                    return Err((
                        at(span),
                        "hmac-secret-file signs the json format only".into(),
                    ));
                }
                Some(Secret::new(secret))
            }
            None => None,
        };

        let ca = match self.ca_file {
            Some(f) => {
                let span = f.span();
                let path = f.into_inner();
                let certs = host.ca_certs(&path).map_err(|e| (at(span.clone()), e))?;
                let ca = CaFile { path, certs };
                if !target.https {
                    return Err((
                        at(span),
                        "ca-file is for https URLs; this one is http".into(),
                    ));
                }
                Some(ca)
            }
            None => None,
        };

        Ok(Webhook {
            name,
            format: self.format,
            target,
            headers,
            timeout: self.timeout,
            events,
            hmac_secret,
            ca,
            give_up_after: self.give_up_after,
            queue,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_show_scheme_host_and_port_only() {
        let t = Target::parse("https://hooks.example.com/services/T000/B000/XXXXSECRET?x=1")
            .expect("valid");
        assert_eq!(t.to_string(), "https://hooks.example.com:443");
        assert_eq!(format!("{t:?}"), "Target(https://hooks.example.com:443)");
        assert_eq!(t.path_and_query(), "/services/T000/B000/XXXXSECRET?x=1");
        let t = Target::parse("http://[::1]:9093").expect("valid");
        assert_eq!(t.to_string(), "http://[::1]:9093");
        assert_eq!(t.bare_host(), "::1");
        assert_eq!(t.authority(), "[::1]:9093");
        assert_eq!(t.path_and_query(), "/");
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for (url, want) in [
            (
                "ftp://x.example/SECRET",
                "URL scheme `ftp` is not supported",
            ),
            ("hooks.example.com/SECRET", "the URL has no scheme"),
            ("https://u:SECRET@x.example/", "credentials in the URL"),
            ("https://x.example/SE CRET", "the URL does not parse"),
            ("", "the URL has no scheme"),
        ] {
            let e = Target::parse(url).expect_err(url);
            assert!(e.starts_with(want), "{url}: {e}");
            assert!(!e.contains("SECRET"), "{e}");
        }
    }

    #[test]
    fn secrets_do_not_debug_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(..)");
    }

    #[test]
    fn every_event_name_round_trips() {
        #[derive(Deserialize)]
        struct E {
            e: Event,
        }
        for e in Event::ALL.into_iter().filter(|e| *e != Event::Test) {
            let parsed: E = toml::from_str(&format!("e = \"{}\"", e.as_str())).expect("parses");
            assert_eq!(parsed.e, e);
        }
        assert!(toml::from_str::<E>("e = \"test\"").is_err());
    }
}
