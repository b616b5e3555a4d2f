//! Alerts that leave the host: webhooks in three formats (`json`, `slack`, `alertmanager`),
//! delivered beside the guard, never in its path.
//!
//! - [`crate::config::webhook`] (in the core): the `[[webhook]]` tables, validated and
//!   resolved.
//! - [`queue`]: the bounded hand-over from the guard; it drops the oldest entry when full.
//! - [`crate::payload`], [`crate::payload::alertmanager`] (in the core): what each format
//!   sends.
//! - [`client`]: one POST over HTTP or HTTPS (rustls, certificates always verified).
//! - [`delivery`]: one task per endpoint: format, send, retry with backoff, give up.
//!
//! The guard's [`Sink`] only pushes onto an endpoint's queue: no await, no I/O, a lock held
//! for a `VecDeque::push_back`. Delivery runs on a thread of its own ([`Delivery`]).

pub mod client;
pub mod delivery;
pub mod queue;

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use self::delivery::{Attempted, Endpoint, Queued, Sender};
use crate::config::webhook::{Format, Webhook};
use crate::payload::{Notice, Reporter};
use crate::report::{Report, Sink};
use crate::snapshot::Snapshot;

/// The delivery thread: a current-thread tokio runtime of its own that runs every endpoint's
/// task (and the metrics server, spawned on [`Delivery::runtime`]). Dropping it stops the
/// thread's runtime.
///
/// Why not the guard's runtime: the guard's loop runs on one thread, and whatever else that
/// thread polls adds to the time between a kernel event and the restore. A TLS handshake costs
/// a millisecond or more of CPU, encoding a scrape tens of microseconds, and a task that is
/// being polled cannot be interrupted by the guard's next event. On a thread of its own,
/// delivery competes with the guard only for a CPU, which the kernel schedules (and which
/// systemd's `CPUWeight=`/`Nice=` can tilt), not inside the guard's event loop. The hand-over
/// costs the guard one short lock and, at most, one wake-up of this thread, both after the
/// restore. With nothing to send, the thread sleeps in `epoll_wait` without a timeout.
#[derive(Debug)]
pub struct Delivery {
    runtime: tokio::runtime::Handle,
    origin: Arc<Reporter>,
    /// The guard's state, which Alertmanager alerts are checked against before they are sent
    /// again.
    snapshots: watch::Receiver<Snapshot>,
    /// Shared with the metrics exporter ([`Delivery::endpoints_reader`]).
    endpoints: Arc<Mutex<Vec<Arc<Endpoint>>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Delivery {
    /// Starts the delivery thread. `snapshots`: the guard's state, for the Alertmanager
    /// endpoints' tasks.
    pub fn start(snapshots: watch::Receiver<Snapshot>) -> std::io::Result<Self> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("fwdguard-alerts".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    // DNS lookups run on blocking threads; few are ever needed at once.
                    .max_blocking_threads(2)
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        let runtime = handle_rx
            .recv()
            .map_err(|_| std::io::Error::other("the delivery thread did not start"))??;
        Ok(Self {
            runtime,
            origin: Arc::new(reporter()),
            snapshots,
            endpoints: Arc::default(),
            stop: Some(stop),
        })
    }

    /// A handle to spawn more work (the metrics server) on the delivery thread.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Puts `webhooks` in force and returns the guard's sinks for them, one each: starts a
    /// delivery task for each webhook whose resolved settings are new. An endpoint whose
    /// settings did not change keeps its queue, task and alert state (so Alertmanager alerts
    /// still resolve across a reload); the others finish what they hold and stop.
    pub fn start_webhooks(&self, webhooks: &[Webhook]) -> Vec<Box<dyn Sink>> {
        let mut endpoints = self
            .endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut old = std::mem::take(&mut *endpoints);
        for spec in webhooks {
            let endpoint = match old.iter().position(|e| e.spec == *spec) {
                Some(i) => old.swap_remove(i),
                None => {
                    let e = Arc::new(Endpoint::new(spec.clone()));
                    self.runtime.spawn(delivery::run(
                        e.clone(),
                        self.origin.clone(),
                        self.snapshots.clone(),
                    ));
                    e
                }
            };
            endpoints.push(endpoint);
        }
        for gone in old {
            gone.queue.close();
        }
        endpoints
            .iter()
            .map(|e| {
                Box::new(WebhookSink {
                    endpoint: e.clone(),
                }) as Box<dyn Sink>
            })
            .collect()
    }

    /// The endpoints in force.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.endpoints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the endpoints in force each time it is called, also after a reload replaced some:
    /// for the metrics exporter, which reads them on each scrape from the delivery thread.
    pub fn endpoints_reader(&self) -> impl Fn() -> Vec<Arc<Endpoint>> + Send + Sync + 'static {
        let endpoints = self.endpoints.clone();
        move || {
            endpoints
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The guard's side of one webhook.
#[derive(Debug)]
pub struct WebhookSink {
    endpoint: Arc<Endpoint>,
}

impl Sink for WebhookSink {
    /// Queues the report if the endpoint wants it. Never waits: a full queue drops its oldest
    /// entry, counted.
    fn emit(&mut self, report: &Report) {
        let spec = &self.endpoint.spec;
        let event = crate::report::Event::of(report);
        let notice = Notice::Report(report.clone());
        if spec.wants(event)
            || (spec.format == Format::Alertmanager
                && crate::payload::alertmanager::resolves(&notice))
        {
            self.endpoint.queue.push(Queued::now(notice));
        }
    }

    fn name(&self) -> String {
        format!("webhook {}", self.endpoint.spec.label())
    }

    /// Reports lost: pushed out of the full queue, or given up.
    fn dropped(&self) -> u64 {
        self.endpoint.lost()
    }
}

/// `fwdguard alert test`: one test alert to each webhook, one attempt each, in configuration
/// order. Returns each webhook's label and outcome.
pub async fn test_all(webhooks: &[Webhook]) -> Vec<(String, Attempted)> {
    let origin = reporter();
    let mut results = Vec::with_capacity(webhooks.len());
    for spec in webhooks {
        let sender = Sender::new(spec);
        let q = Queued::now(Notice::Test);
        let body = match spec.format {
            Format::Alertmanager => {
                let mut alerts = crate::payload::alertmanager::Alerts::new(origin.host.clone());
                alerts.apply(&q.notice, true, q.time);
                alerts.body(q.time).unwrap_or_default()
            }
            Format::Json | Format::Slack => delivery::body(spec, &origin, &q, 0),
        };
        results.push((spec.label(), sender.send(spec, body).await));
    }
    results
}

/// This host as payloads name it: as the kernel and systemd name it.
fn reporter() -> Reporter {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let host = read("/proc/sys/kernel/hostname");
    Reporter {
        host: if host.is_empty() {
            "localhost".into()
        } else {
            host
        },
        machine_id: read("/etc/machine-id"),
        version: env!("CARGO_PKG_VERSION"),
    }
}
