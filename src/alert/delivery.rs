//! One task per endpoint: takes what the guard queued, formats it, POSTs it, and retries with
//! exponential backoff and jitter until it is delivered or too old. Every outcome is counted
//! in [`Stats`] (read by the metrics) and failures are logged naming the endpoint by
//! `name (scheme://host:port)` only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until};

use super::client::{Client, PostError, Request};
use super::queue::Queue;
use crate::config::webhook::{Format, Webhook};
use crate::payload::alertmanager::{Alerts, RESEND_EVERY};
use crate::payload::{self, Notice, Reporter};
use crate::snapshot::Snapshot;

/// The first retry comes after about this long ...
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// ... doubling up to this.
pub const RETRY_MAX: Duration = Duration::from_secs(300);

/// A notice waiting for delivery, with when it was made.
#[derive(Debug, Clone)]
pub struct Queued {
    pub notice: Notice,
    pub time: SystemTime,
    pub at: Instant,
}

impl Queued {
    pub fn now(notice: Notice) -> Self {
        Self {
            notice,
            time: SystemTime::now(),
            at: Instant::now(),
        }
    }
}

/// What happened to one endpoint's alerts since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered with 2xx.
    pub sent: AtomicU64,
    /// Attempts that failed (no answer, or an error status); retries count again.
    pub failed: AtomicU64,
    /// Notices given up: too old, or refused for good (a 4xx answer).
    pub given_up: AtomicU64,
}

/// One configured webhook: its queue and counters, shared by the guard's sink, the delivery
/// task and the metrics.
#[derive(Debug)]
pub struct Endpoint {
    pub spec: Webhook,
    pub queue: Queue<Queued>,
    pub stats: Stats,
}

impl Endpoint {
    pub fn new(spec: Webhook) -> Self {
        Self {
            queue: Queue::new(spec.queue),
            stats: Stats::default(),
            spec,
        }
    }

    /// Notices lost: pushed out of a full queue, or given up.
    pub fn lost(&self) -> u64 {
        self.queue.dropped() + self.stats.given_up.load(Ordering::Relaxed)
    }
}

/// The delay before retry number `attempt` (1 = the first retry): doubling from
/// [`RETRY_FIRST`] up to [`RETRY_MAX`], then a random part taken off ("equal jitter":
/// between half and all of it), so endpoints that failed together do not retry in step.
/// `unit` is a random number in [0, 1).
pub fn backoff(attempt: u32, unit: f64) -> Duration {
    let full = RETRY_FIRST
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(RETRY_MAX);
    full.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
}

fn random_unit() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    match ring::rand::SystemRandom::new().fill(&mut b) {
        Ok(()) => f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

/// Whether an answer means "do not send this again": the request itself is wrong. Timeouts
/// and rate limits are worth retrying.
fn permanent(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempted {
    Delivered(u16),
    Refused(u16),
    Failed(String),
}

impl Attempted {
    pub fn ok(&self) -> bool {
        matches!(self, Attempted::Delivered(_))
    }
}

impl std::fmt::Display for Attempted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reason = |s: u16| {
            http::StatusCode::from_u16(s)
                .ok()
                .and_then(|c| c.canonical_reason())
                .unwrap_or("")
        };
        match self {
            Attempted::Delivered(s) | Attempted::Refused(s) => write!(f, "HTTP {s} {}", reason(*s)),
            Attempted::Failed(e) => f.write_str(e),
        }
    }
}

/// Sends bodies to one endpoint with its headers, timeout and signature.
#[derive(Debug)]
pub struct Sender {
    client: Client,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Sender {
    pub fn new(spec: &Webhook) -> Self {
        let headers = spec
            .headers
            .iter()
            .filter_map(|(name, value)| {
                let mut v = http::HeaderValue::from_str(value.expose()).ok()?;
                v.set_sensitive(true);
                Some((name.clone(), v))
            })
            .collect();
        Self {
            client: Client::new(&spec.target, spec.ca.as_ref()),
            headers,
        }
    }

    /// One attempt.
    pub async fn send(&self, spec: &Webhook, body: Vec<u8>) -> Attempted {
        let mut headers = self.headers.clone();
        if let Some(secret) = &spec.hmac_secret {
            let sig = payload::signature(secret.expose().as_bytes(), &body);
            if let Ok(v) = http::HeaderValue::from_str(&sig) {
                headers.push((http::HeaderName::from_static("x-fwdguard-signature"), v));
            }
        }
        let req = Request {
            target: &spec.target,
            headers: &headers,
            timeout: spec.timeout,
        };
        match self.client.post(&req, body).await {
            Ok(s) if (200..300).contains(&s) => Attempted::Delivered(s),
            Ok(s) if permanent(s) => Attempted::Refused(s),
            Ok(s) => Attempted::Failed(Attempted::Refused(s).to_string()),
            Err(e) => Attempted::Failed(error_text(&e)),
        }
    }
}

fn error_text(e: &PostError) -> String {
    use std::error::Error;
    // hyper's errors keep the useful part (connection reset, ...) in their source.
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

/// The body of a `json` or `slack` notice.
pub fn body(spec: &Webhook, origin: &Reporter, q: &Queued, lost: u64) -> Vec<u8> {
    match spec.format {
        Format::Slack => payload::slack(&q.notice, origin, q.time, lost),
        Format::Json | Format::Alertmanager => {
            payload::json(&q.notice, origin, q.time, SystemTime::now(), lost)
        }
    }
}

/// Runs until the endpoint's queue is closed and everything in it handled. `snapshots`: the
/// guard's state, which Alertmanager alerts are checked against before they are sent again.
pub async fn run(
    endpoint: Arc<Endpoint>,
    origin: Arc<Reporter>,
    snapshots: watch::Receiver<Snapshot>,
) {
    let sender = Sender::new(&endpoint.spec);
    match endpoint.spec.format {
        Format::Json | Format::Slack => each(&endpoint, &origin, &sender).await,
        Format::Alertmanager => alertmanager(&endpoint, &origin, &sender, &snapshots).await,
    }
    tracing::debug!(endpoint = endpoint.spec.label(), "webhook delivery stopped");
}

/// Overflow warnings are logged at most this often; the counts add up in between.
const LOSS_LOG_EVERY: Duration = Duration::from_secs(10);

/// Keeps track of queue overflows so each is logged, without a line per lost report.
#[derive(Default)]
struct Losses {
    /// Drops already logged.
    seen: u64,
    /// Drops already counted into `since_delivery`.
    counted: u64,
    logged_at: Option<Instant>,
    /// Lost since the last delivery, for the next payload's `dropped`.
    since_delivery: u64,
}

impl Losses {
    fn check(&mut self, endpoint: &Endpoint) {
        let now = endpoint.queue.dropped();
        // Every loss goes into the next payload's count, whether or not it is logged yet.
        self.since_delivery += now.saturating_sub(self.counted);
        self.counted = self.counted.max(now);
        if now > self.seen && self.logged_at.is_none_or(|t| t.elapsed() >= LOSS_LOG_EVERY) {
            self.logged_at = Some(Instant::now());
            let n = now - self.seen;
            tracing::warn!(
                endpoint = endpoint.spec.label(),
                dropped = n,
                "webhook {}: {n} alert{} dropped: the queue of {} was full (the oldest go first)",
                endpoint.spec.label(),
                if n == 1 { "" } else { "s" },
                endpoint.spec.queue
            );
            self.seen = now;
        }
    }
}

/// Runs `work` (an attempt, a backoff) and meanwhile notices reports pushed out of the queue,
/// so that an endpoint that hangs does not also hide the losses it causes.
async fn watching<F: std::future::Future>(
    endpoint: &Endpoint,
    losses: &mut Losses,
    work: F,
) -> F::Output {
    tokio::pin!(work);
    loop {
        // Losses not logged yet (rate limit) are logged when the limit allows.
        let unlogged = endpoint.queue.dropped() > losses.seen;
        let log_at = losses
            .logged_at
            .map_or_else(Instant::now, |t| t + LOSS_LOG_EVERY);
        tokio::select! {
            out = &mut work => return out,
            () = endpoint.queue.wait() => losses.check(endpoint),
            () = sleep_until(log_at), if unlogged => losses.check(endpoint),
        }
    }
}

/// `json` and `slack`: one request per notice, in order.
async fn each(endpoint: &Endpoint, origin: &Reporter, sender: &Sender) {
    let spec = &endpoint.spec;
    let mut losses = Losses::default();
    let mut batch = Vec::new();
    loop {
        if !endpoint.queue.take_all(&mut batch) {
            return;
        }
        if batch.is_empty() {
            endpoint.queue.wait().await;
            continue;
        }
        for q in batch.drain(..) {
            let mut attempt = 0u32;
            loop {
                losses.check(endpoint);
                attempt += 1;
                let body = body(spec, origin, &q, losses.since_delivery);
                let outcome = watching(endpoint, &mut losses, sender.send(spec, body)).await;
                match &outcome {
                    Attempted::Delivered(_) => {
                        endpoint.stats.sent.fetch_add(1, Ordering::Relaxed);
                        losses.since_delivery = 0;
                        if attempt > 1 {
                            tracing::info!(
                                endpoint = spec.label(),
                                "webhook {}: delivered after {attempt} attempts",
                                spec.label()
                            );
                        }
                        break;
                    }
                    Attempted::Refused(_) => {
                        endpoint.stats.failed.fetch_add(1, Ordering::Relaxed);
                        give_up(endpoint, &q, attempt, &outcome, "it refused the request");
                        losses.since_delivery += 1;
                        break;
                    }
                    Attempted::Failed(_) => {
                        endpoint.stats.failed.fetch_add(1, Ordering::Relaxed);
                        let delay = backoff(attempt, random_unit());
                        if q.at.elapsed() + delay > spec.give_up_after {
                            give_up(endpoint, &q, attempt, &outcome, "too old");
                            losses.since_delivery += 1;
                            break;
                        }
                        retrying(spec, attempt, &outcome, delay);
                        watching(endpoint, &mut losses, sleep(delay)).await;
                    }
                }
            }
        }
    }
}

fn retrying(spec: &Webhook, attempt: u32, outcome: &Attempted, delay: Duration) {
    // The first failure of an outage is news; the retries after it are not.
    if attempt == 1 {
        tracing::warn!(
            endpoint = spec.label(),
            "webhook {}: delivery failed: {outcome}; retrying in {}",
            spec.label(),
            crate::report::human(delay)
        );
    } else {
        tracing::debug!(
            endpoint = spec.label(),
            attempt,
            "webhook {}: attempt {attempt} failed: {outcome}",
            spec.label()
        );
    }
}

fn give_up(endpoint: &Endpoint, q: &Queued, attempts: u32, outcome: &Attempted, why: &str) {
    endpoint.stats.given_up.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        endpoint = endpoint.spec.label(),
        event = q.notice.event().as_str(),
        attempts,
        "webhook {}: gave up on the {} alert of {} ({why}) after {attempts} attempt{} over {}: {outcome}",
        endpoint.spec.label(),
        q.notice.event().as_str(),
        payload::rfc3339(q.time),
        if attempts == 1 { "" } else { "s" },
        humantime::format_duration(Duration::from_secs(q.at.elapsed().as_secs())),
    );
}

/// `alertmanager`: the notices update the alerts; whatever changed goes out in one request,
/// and firing alerts are sent again before they expire.
async fn alertmanager(
    endpoint: &Endpoint,
    origin: &Reporter,
    sender: &Sender,
    snapshots: &watch::Receiver<Snapshot>,
) {
    let spec = &endpoint.spec;
    let mut alerts = Alerts::new(origin.host.clone());
    let mut losses = Losses::default();
    let mut batch = Vec::new();
    // The oldest change not yet delivered, and the failed attempts at it.
    let mut pending: Option<(Instant, SystemTime, u32)> = None;
    let mut retry_at: Option<Instant> = None;
    let mut resend_at: Option<Instant> = None;
    let mut open = true;
    loop {
        if open {
            open = endpoint.queue.take_all(&mut batch);
        }
        losses.check(endpoint);
        for q in batch.drain(..) {
            alerts.apply(&q.notice, spec.wants(q.notice.event()), q.time);
            pending.get_or_insert((q.at, q.time, 0));
        }
        let now = Instant::now();
        if resend_at.is_some_and(|t| now >= t) {
            let snapshot = snapshots.borrow().clone();
            alerts.reconcile(
                |key| {
                    snapshot
                        .guards
                        .iter()
                        .find(|g| g.key == key)
                        .map(|g| g.state.clone())
                },
                SystemTime::now(),
            );
            alerts.refresh();
            resend_at = None;
        }
        if retry_at.is_none_or(|t| now >= t)
            && let Some(body) = alerts.body(SystemTime::now())
        {
            retry_at = None;
            let outcome = watching(endpoint, &mut losses, sender.send(spec, body)).await;
            let (since, time, attempts) = pending.unwrap_or((now, SystemTime::now(), 0));
            let attempts = attempts + 1;
            if outcome.ok() {
                endpoint.stats.sent.fetch_add(1, Ordering::Relaxed);
                if attempts > 1 {
                    tracing::info!(
                        endpoint = spec.label(),
                        "webhook {}: delivered after {attempts} attempts",
                        spec.label()
                    );
                }
                alerts.sent();
                pending = None;
            } else {
                endpoint.stats.failed.fetch_add(1, Ordering::Relaxed);
                let delay = backoff(attempts, random_unit());
                if matches!(outcome, Attempted::Refused(_))
                    || since.elapsed() + delay > spec.give_up_after
                {
                    endpoint.stats.given_up.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        endpoint = spec.label(),
                        attempts,
                        "webhook {}: gave up on alert changes since {} after {attempts} attempt{}: {outcome}; firing alerts go out again with the next re-send",
                        spec.label(),
                        payload::rfc3339(time),
                        if attempts == 1 { "" } else { "s" },
                    );
                    alerts.give_up();
                    pending = None;
                } else {
                    retrying(spec, attempts, &outcome, delay);
                    pending = Some((since, time, attempts));
                    retry_at = Some(Instant::now() + delay);
                }
            }
            if alerts.firing() && resend_at.is_none() && pending.is_none() {
                resend_at = Some(Instant::now() + RESEND_EVERY);
            }
        }
        alerts.expire(SystemTime::now());
        if !alerts.firing() {
            resend_at = None;
        }
        if !open && pending.is_none() && !alerts.has_changes() {
            return;
        }
        // Sleep until something is queued, a retry or a re-send falls due; with nothing
        // firing and nothing pending, there is no timer at all.
        let wake = [retry_at, resend_at].into_iter().flatten().min();
        tokio::select! {
            () = endpoint.queue.wait(), if open => {}
            () = async { sleep_until(wake.unwrap_or_else(Instant::now)).await }, if wake.is_some() => {}
            else => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        assert_eq!(backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(
            backoff(1, 0.999_999),
            Duration::from_secs(1) - Duration::from_nanos(500)
        );
        assert_eq!(backoff(2, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(4, 0.5), Duration::from_secs(6));
        assert_eq!(backoff(30, 1.0), RETRY_MAX);
        assert_eq!(backoff(30, 0.0), RETRY_MAX / 2);
        let u = random_unit();
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn client_errors_are_final_but_rate_limits_and_server_errors_are_not() {
        assert!(permanent(400));
        assert!(permanent(404));
        assert!(!permanent(408));
        assert!(!permanent(429));
        assert!(!permanent(500));
        assert!(!permanent(503));
    }
}
