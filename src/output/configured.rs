//! The outputs the configuration's `[[webhook]]` and `[metrics]` tables ask for: the webhooks'
//! endpoints and the `/metrics` listener, both on the delivery thread ([`Delivery`]). The daemon
//! loop owns them ([`ConfiguredOutputs`]) and calls [`ConfiguredOutputs::start_webhooks`] and
//! [`ConfiguredOutputs::bind_metrics`] at start, and on a reload only when the table changed.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::alert::Delivery;
use crate::config::webhook::Webhook;
use crate::metrics::{self, Exporter};
use crate::report::Sink;
use crate::snapshot::Snapshot;

/// The webhooks and the metrics listener in force. Nothing runs until the configuration asks
/// for it: the delivery thread starts the first time webhooks or metrics are configured, and
/// stops when this is dropped (a reload that removes both leaves it idle, as it was).
#[derive(Debug)]
pub struct ConfiguredOutputs {
    /// The guard's state: what `/metrics` shows and Alertmanager alerts are checked against.
    snapshots: watch::Receiver<Snapshot>,
    delivery: Option<Delivery>,
    /// The webhooks whose endpoints run.
    webhooks: Vec<Webhook>,
    /// The `/metrics` server in force and the address it was asked for.
    metrics: Option<(SocketAddr, metrics::Server)>,
}

impl ConfiguredOutputs {
    /// Starts nothing yet. `snapshots`: the guard's state, as the daemon publishes it.
    pub fn new(snapshots: watch::Receiver<Snapshot>) -> Self {
        Self {
            snapshots,
            delivery: None,
            webhooks: Vec::new(),
            metrics: None,
        }
    }

    /// The webhooks whose endpoints run (none if the delivery thread could not start).
    pub fn webhooks(&self) -> &[Webhook] {
        &self.webhooks
    }

    /// The address `/metrics` is served on, as configured; `None` if it is not served (not
    /// configured, or the port could not be bound).
    pub fn metrics_listen(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(listen, _)| *listen)
    }

    /// Puts `webhooks` in force and returns the guard's sinks for them: starts the delivery
    /// thread if it does not run yet, and a delivery task for each webhook whose resolved
    /// settings are new ([`Delivery::start_webhooks`]: an unchanged one keeps its endpoint).
    /// If the thread cannot start, that is logged and there are no sinks.
    pub fn start_webhooks(&mut self, webhooks: &[Webhook]) -> Vec<Box<dyn Sink>> {
        if webhooks.is_empty() && self.delivery.is_none() {
            self.webhooks.clear();
            return Vec::new();
        }
        let Some(delivery) = self.start_delivery() else {
            self.webhooks.clear();
            return Vec::new();
        };
        let sinks = delivery.start_webhooks(webhooks);
        self.webhooks = webhooks.to_vec();
        sinks
    }

    /// Binds `/metrics` on `listen` and serves it on the delivery thread (started if it does
    /// not run yet), after stopping the listener in force: a reload may move it to the same
    /// port. `None` only stops it. A port that cannot be bound is logged; the guard runs on
    /// without metrics.
    pub fn bind_metrics(&mut self, listen: Option<SocketAddr>) {
        self.metrics = None;
        let Some(listen) = listen else {
            return;
        };
        let snapshots = self.snapshots.clone();
        let Some(delivery) = self.start_delivery() else {
            return;
        };
        let exporter = Exporter::new(snapshots, Arc::new(delivery.endpoints_reader()));
        match metrics::bind_and_serve(delivery.runtime(), listen, Arc::new(exporter)) {
            Ok(server) => {
                tracing::info!("metrics at http://{}/metrics", server.addr);
                self.metrics = Some((listen, server));
            }
            Err(e) => tracing::error!(
                "cannot serve metrics on {listen}: {e}; the guard runs on without them"
            ),
        }
    }

    /// The delivery thread, started now if it does not run yet.
    fn start_delivery(&mut self) -> Option<&Delivery> {
        if self.delivery.is_none() {
            match Delivery::start(self.snapshots.clone()) {
                Ok(d) => self.delivery = Some(d),
                Err(e) => {
                    tracing::error!(
                        "webhooks and metrics are off: cannot start the delivery thread: {e}"
                    );
                    return None;
                }
            }
        }
        self.delivery.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs() -> ConfiguredOutputs {
        ConfiguredOutputs::new(watch::channel(Snapshot::default()).1)
    }

    #[test]
    fn nothing_starts_until_the_configuration_asks() {
        let mut o = outputs();
        assert!(o.start_webhooks(&[]).is_empty());
        o.bind_metrics(None);
        assert!(
            o.delivery.is_none(),
            "no delivery thread without webhooks or metrics"
        );
    }

    #[test]
    fn metrics_are_bound_and_stopped() {
        let mut o = outputs();
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        o.bind_metrics(Some(listen));
        assert_eq!(o.metrics_listen(), Some(listen));
        let bound = o.metrics.as_ref().map(|(_, s)| s.addr).expect("bound");
        assert!(std::net::TcpStream::connect(bound).is_ok());
        o.bind_metrics(None);
        assert_eq!(o.metrics_listen(), None);
        assert!(o.delivery.is_some(), "the thread stays, idle");
    }
}
