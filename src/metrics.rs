//! `/metrics` for Prometheus: what the guard did (per key) and what happened to the alerts
//! (per webhook), encoded on each scrape from shared state with the `prometheus-client`
//! crate, served by a small hyper server on the delivery thread ([`crate::alert::Delivery`]),
//! which [`crate::output::configured`] binds when the configuration asks for it.
//! A scrape never touches the guard's thread: it reads the last published state.
//!
//! The format follows the scraper's `Accept` header: OpenMetrics for Prometheus (which asks
//! for it), the Prometheus text format 0.0.4 for everyone else (`curl`, `promtool`).

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use tokio::sync::watch;

use crate::alert::delivery::Endpoint;
use crate::snapshot::{GuardSnapshot, KeyState, Snapshot};
pub use crate::snapshot::{WRONG_BUCKETS, WrongTime};

/// The endpoints in force, read on each scrape.
pub type Endpoints = Arc<dyn Fn() -> Vec<Arc<Endpoint>> + Send + Sync>;

/// Everything `/metrics` shows.
pub struct Exporter {
    registry: Registry,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Exporter")
    }
}

struct State {
    snapshots: watch::Receiver<Snapshot>,
    endpoints: Endpoints,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("State")
    }
}

impl Exporter {
    /// `snapshots`: what the guard publishes; `endpoints`: the webhooks in force.
    pub fn new(snapshots: watch::Receiver<Snapshot>, endpoints: Endpoints) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(State {
            snapshots,
            endpoints,
        }));
        Self { registry }
    }

    /// The metrics as text: OpenMetrics, or the Prometheus text format 0.0.4.
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut out = String::with_capacity(4096);
        let result = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        if let Err(e) = result {
            tracing::error!("cannot encode metrics: {e}");
        }
        out
    }
}

/// A counter's name, help, and how to read it from one labelled thing.
type Described<T> = (&'static str, &'static str, fn(&T) -> u64);

/// The counters of `described`, each with one series per item, labelled `label` =
/// `name_of(item)`.
fn encode_counters<'a, T: 'a>(
    enc: &mut DescriptorEncoder,
    described: &[Described<T>],
    items: impl Iterator<Item = &'a T> + Clone,
    label: &'static str,
    name_of: impl Fn(&T) -> String,
) -> Result<(), fmt::Error> {
    for (name, help, f) in described {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for item in items.clone() {
            m.encode_family(&[(label, name_of(item))])?
                .encode_counter::<NoLabelSet, _, u64>(&f(item), None)?;
        }
    }
    Ok(())
}

/// Parses a sysctl value as a number for a gauge: `1`, `-1`, `0.5`. Others (`32768 60999`)
/// have no gauge.
fn number(v: &str) -> Option<f64> {
    v.trim().parse::<f64>().ok().filter(|f| f.is_finite())
}

impl Collector for State {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        // A copy, so the guard's next publish never waits for this scrape's encoding: the
        // watch's lock is held only for the clone.
        let snapshot = self.snapshots.borrow().clone();
        let keys = &snapshot.guards;
        let label = |k: &GuardSnapshot| [("key", k.key.clone())];

        let gauge = |enc: &mut DescriptorEncoder,
                     name: &str,
                     help: &str,
                     f: &dyn Fn(&GuardSnapshot) -> Option<f64>|
         -> Result<(), fmt::Error> {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for k in keys {
                if let Some(v) = f(k) {
                    m.encode_family(&label(k))?.encode_gauge(&v)?;
                }
            }
            Ok(())
        };
        gauge(
            &mut enc,
            "fwdguard_key_value",
            "The value a guarded key had when last read (numeric values only).",
            &|k| k.value.as_deref().and_then(number),
        )?;
        gauge(
            &mut enc,
            "fwdguard_key_wanted_value",
            "The value fwdguard keeps a guarded key at (numeric values only).",
            &|k| number(&k.want),
        )?;
        gauge(
            &mut enc,
            "fwdguard_key_holding",
            "1 if the key has its wanted value as far as fwdguard knows, else 0.",
            &|k| {
                Some(if k.state == KeyState::Holding {
                    1.0
                } else {
                    0.0
                })
            },
        )?;

        let counters: [Described<GuardSnapshot>; 5] = [
            (
                "fwdguard_drops",
                "Times a guarded key was seen to change away from its wanted value.",
                |k| k.drops,
            ),
            (
                "fwdguard_restores",
                "Wanted values written back and verified.",
                |k| k.restores,
            ),
            (
                "fwdguard_restore_failures",
                "Restores that failed (refused, or did not stick).",
                |k| k.failed_restores,
            ),
            (
                "fwdguard_flapping_episodes",
                "Times a key started flapping.",
                |k| k.flapping_episodes,
            ),
            (
                "fwdguard_writes_replaced",
                "Writes the BPF hook replaced with the wanted value (action prevent): drops that never happened.",
                |k| k.writes_replaced,
            ),
        ];
        encode_counters(&mut enc, &counters, keys.iter(), "key", |k| k.key.clone())?;

        {
            let mut m = enc.encode_descriptor(
                "fwdguard_wrong_duration_seconds",
                "How long a key had a wrong value, from fwdguard seeing it to the verified restore (or its return).",
                None,
                MetricType::Histogram,
            )?;
            for k in keys {
                let buckets: Vec<(f64, u64)> = WRONG_BUCKETS
                    .iter()
                    .copied()
                    .chain([f64::INFINITY])
                    .zip(k.wrong.buckets)
                    .collect();
                m.encode_family(&label(k))?.encode_histogram::<NoLabelSet>(
                    k.wrong.sum.as_secs_f64(),
                    k.wrong.count,
                    &buckets,
                    None,
                )?;
            }
        }

        enc.encode_descriptor(
            "fwdguard_bpf_hook_attached",
            "1 while the BPF sysctl hook is attached (prevent in force, writers named), else 0.",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&u64::from(snapshot.hook.is_some()))?;

        enc.encode_descriptor(
            "fwdguard_kernel_events_lost",
            "Times netlink events were lost (receive queue overrun); each time every key was re-read.",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, _, u64>(&snapshot.events_lost, None)?;

        let endpoints = (self.endpoints)();
        let endpoint_label = |e: &Endpoint| [("endpoint", e.spec.name.clone())];
        let per_endpoint: [Described<Endpoint>; 2] = [
            (
                "fwdguard_alerts_sent",
                "Webhook requests answered with 2xx.",
                |e| e.stats.sent.load(Ordering::Relaxed),
            ),
            (
                "fwdguard_alerts_failed",
                "Webhook attempts that failed (no answer or an error status); each retry counts.",
                |e| e.stats.failed.load(Ordering::Relaxed),
            ),
        ];
        let sent_to = endpoints.iter().map(|e| &**e);
        let name = |e: &Endpoint| e.spec.name.clone();
        encode_counters(&mut enc, &per_endpoint, sent_to, "endpoint", name)?;
        {
            let mut m = enc.encode_descriptor(
                "fwdguard_alerts_dropped",
                "Alerts lost: pushed out of a full queue (reason queue-full) or given up after give-up-after or a 4xx answer (reason given-up).",
                None,
                MetricType::Counter,
            )?;
            for e in &endpoints {
                for (reason, n) in [
                    ("queue-full", e.queue.dropped()),
                    ("given-up", e.stats.given_up.load(Ordering::Relaxed)),
                ] {
                    m.encode_family(&[
                        ("endpoint", e.spec.name.clone()),
                        ("reason", reason.to_owned()),
                    ])?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "fwdguard_alert_queue_length",
                "Alerts waiting for delivery.",
                None,
                MetricType::Gauge,
            )?;
            for e in &endpoints {
                m.encode_family(&endpoint_label(e))?
                    .encode_gauge(&(e.queue.len() as u64))?;
            }
        }

        enc.encode_descriptor(
            "fwdguard_build",
            "fwdguard's version.",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        Ok(())
    }
}

/// The running `/metrics` server; dropping it stops it.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::AbortHandle,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Scrapes served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;

/// Binds `listen` now (so a busy port is an error the caller sees) and serves on `runtime`.
pub fn bind_and_serve(
    runtime: &tokio::runtime::Handle,
    listen: SocketAddr,
    exporter: Arc<Exporter>,
) -> std::io::Result<Server> {
    let std_listener = std::net::TcpListener::bind(listen)?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let task = runtime.spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("metrics on {addr}: {e}");
                return;
            }
        };
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    tracing::warn!("metrics on {addr}: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let exporter = exporter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let exporter = exporter.clone();
                    async move { Ok::<_, Infallible>(respond(&exporter, &req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                drop(permit);
            });
        }
    });
    Ok(Server {
        addr,
        task: task.abort_handle(),
    })
}

fn respond<B>(exporter: &Exporter, req: &hyper::Request<B>) -> hyper::Response<Full<Bytes>> {
    let reply = |status: u16, content_type: &str, body: String| {
        hyper::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
    };
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return reply(405, "text/plain", "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let openmetrics = req
                .headers()
                .get_all(http::header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.contains("application/openmetrics-text"));
            if openmetrics {
                reply(
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    exporter.encode(true),
                )
            } else {
                reply(
                    200,
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    exporter.encode(false),
                )
            }
        }
        "/" => reply(
            200,
            "text/plain; charset=utf-8",
            "fwdguard: metrics are at /metrics\n".into(),
        ),
        _ => reply(404, "text/plain", "not found: try /metrics\n".into()),
    }
}

/// For tests (feature `test-kit`): the state of one `restore` guard on
/// `net.ipv4.conf.all.forwarding` that holds after 2 drops, restored after 20µs and 70µs, and
/// 3 writes the hook (attached at `/sys/fs/cgroup`) replaced; the kernel's events overran twice.
#[cfg(any(test, feature = "test-kit"))]
pub fn sample_snapshot() -> Snapshot {
    let mut wrong = WrongTime::default();
    wrong.observe(Duration::from_micros(20));
    wrong.observe(Duration::from_micros(70));
    Snapshot {
        guards: vec![GuardSnapshot {
            id: crate::routing::GuardId(0),
            key: "net.ipv4.conf.all.forwarding".into(),
            want: "1".into(),
            action: "restore",
            state: KeyState::Holding,
            value: Some("1".into()),
            restores: 2,
            drops: 2,
            failed_restores: 0,
            flapping_episodes: 0,
            writes_replaced: 3,
            degradations: Vec::new(),
            wrong,
        }],
        events_lost: 2,
        hook: Some("/sys/fs/cgroup".into()),
        ..Snapshot::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_microseconds() {
        let mut w = WrongTime::default();
        w.observe(Duration::from_micros(4));
        w.observe(Duration::from_micros(35));
        w.observe(Duration::from_secs(600));
        assert_eq!(w.buckets[0], 1);
        assert_eq!(w.buckets[3], 1);
        assert_eq!(w.buckets[WRONG_BUCKETS.len()], 1);
        assert_eq!(w.count, 3);
    }

    #[test]
    fn both_formats_carry_the_key_metrics() {
        let (_tx, rx) = watch::channel(sample_snapshot());
        let exporter = Exporter::new(rx, Arc::new(Vec::new));
        let text = exporter.encode(false);
        for line in [
            "fwdguard_key_value{key=\"net.ipv4.conf.all.forwarding\"} 1.0",
            "fwdguard_drops_total{key=\"net.ipv4.conf.all.forwarding\"} 2",
            "fwdguard_wrong_duration_seconds_bucket{key=\"net.ipv4.conf.all.forwarding\",le=\"5e-05\"} 1",
            "fwdguard_wrong_duration_seconds_bucket{key=\"net.ipv4.conf.all.forwarding\",le=\"0.0001\"} 2",
            "fwdguard_wrong_duration_seconds_count{key=\"net.ipv4.conf.all.forwarding\"} 2",
            "fwdguard_kernel_events_lost_total 2",
            "# TYPE fwdguard_drops_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(text.contains("fwdguard_build_info{version=\""), "{text}");
        let open = exporter.encode(true);
        assert!(open.ends_with("# EOF\n"), "{open}");
        assert!(open.contains("# TYPE fwdguard_build info"), "{open}");
    }
}
