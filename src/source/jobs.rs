//! systemd service jobs over the system bus: `Subscribe()`, then `JobNew`/`JobRemoved` for
//! the watched units, forwarded to the daemon loop over a channel. Runs in its own task and
//! never blocks the guard loop; without a bus or systemd it says so once and retries with
//! backoff, so fwdguard keeps guarding with its other sources.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use zbus::OwnedObjectPath;

use crate::observation::{Cause, Observation, Trigger};
use crate::service_jobs::{JobEvent, ServiceJobs};

const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long to wait for a job's type before reporting it without one.
const JOB_TYPE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long connecting, authenticating and subscribing may take. zbus's method timeout does
/// not cover the handshake: a bus that accepts and never answers would hang it for good,
/// silently.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    /// systemd sends job signals only to subscribed clients.
    fn subscribe(&self) -> zbus::Result<()>;

    #[zbus(signal)]
    fn job_new(&self, id: u32, job: OwnedObjectPath, unit: String) -> zbus::Result<()>;

    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Job",
    default_service = "org.freedesktop.systemd1"
)]
trait Job {
    #[zbus(property)]
    fn job_type(&self) -> zbus::Result<String>;
}

/// Which bus systemd is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    /// The system bus: `DBUS_SYSTEM_BUS_ADDRESS` if set, else `/run/dbus/system_bus_socket`.
    System,
    /// A bus address such as `unix:path=/tmp/x/bus` (tests).
    Address(String),
}

/// Watches jobs of `units` until the receiver is dropped, reconnecting with backoff whenever
/// the bus or systemd is lost.
pub async fn watch(bus: Bus, units: Vec<String>, tx: mpsc::Sender<JobEvent>) {
    let mut backoff = BACKOFF_MIN;
    // Said once per outage, not on every retry.
    let mut complained = false;
    loop {
        let mut connected = false;
        let error = match session(&bus, &units, &tx, &mut connected).await {
            Ok(()) => return, // the daemon is gone
            Err(e) => e,
        };
        if connected {
            backoff = BACKOFF_MIN;
            complained = false;
        }
        if complained {
            tracing::debug!("systemd jobs over D-Bus: {error}; retrying in {backoff:?}");
        } else {
            tracing::warn!(
                "cannot watch systemd service jobs over D-Bus: {error}; guarding goes on, but drops are not attributed to service restarts until it works again; retrying with backoff"
            );
            complained = true;
        }
        if tx.send(JobEvent::Lost { error }).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection: returns `Ok` when the receiver is gone, `Err` when the bus or systemd is.
async fn session(
    bus: &Bus,
    units: &[String],
    tx: &mpsc::Sender<JobEvent>,
    connected: &mut bool,
) -> Result<(), String> {
    let setup = async {
        let builder = match bus {
            Bus::System => zbus::connection::Builder::system(),
            Bus::Address(a) => zbus::connection::Builder::address(a.as_str()),
        };
        let conn = builder
            .method_timeout(SETUP_TIMEOUT)
            .build()
            .await
            .map_err(|e| format!("cannot connect to the system bus: {e}"))?;
        let manager = ManagerProxy::new(&conn).await.map_err(|e| e.to_string())?;
        let new = manager.receive_job_new().await.map_err(|e| e.to_string())?;
        let removed = manager
            .receive_job_removed()
            .await
            .map_err(|e| e.to_string())?;
        let owner = manager
            .inner()
            .receive_owner_changed()
            .await
            .map_err(|e| e.to_string())?;
        manager
            .subscribe()
            .await
            .map_err(|e| format!("systemd's Subscribe() failed (is systemd running?): {e}"))?;
        Ok::<_, String>((conn, manager, new, removed, owner))
    };
    let (conn, manager, mut new, mut removed, mut owner) =
        tokio::time::timeout(SETUP_TIMEOUT, setup)
            .await
            .map_err(|_| {
                format!(
                    "the system bus did not answer within {}s",
                    SETUP_TIMEOUT.as_secs()
                )
            })??;
    tracing::info!(
        units = units.join(" "),
        "watching systemd jobs of {} units over D-Bus",
        units.len()
    );
    *connected = true;
    if tx.send(JobEvent::Connected).await.is_err() {
        return Ok(());
    }
    loop {
        let event = tokio::select! {
            s = new.next() => {
                let s = s.ok_or("the bus stopped sending JobNew")?;
                let a = s.args().map_err(|e| format!("JobNew: {e}"))?;
                if !units.iter().any(|u| u == a.unit()) {
                    continue;
                }
                // Said at once: a drop may follow within microseconds. The type follows.
                let started = JobEvent::Started { id: *a.id(), unit: a.unit().clone() };
                if tx.send(started).await.is_err() {
                    return Ok(());
                }
                match job_type(&conn, a.job()).await {
                    Some(kind) => JobEvent::Typed { id: *a.id(), kind },
                    None => continue,
                }
            }
            s = removed.next() => {
                let s = s.ok_or("the bus stopped sending JobRemoved")?;
                let a = s.args().map_err(|e| format!("JobRemoved: {e}"))?;
                if !units.iter().any(|u| u == a.unit()) {
                    continue;
                }
                JobEvent::Finished {
                    id: *a.id(),
                    unit: a.unit().clone(),
                    result: a.result().clone(),
                }
            }
            o = owner.next() => match o {
                // systemd re-executed or restarted: subscribe again.
                Some(Some(_)) => {
                    manager.subscribe().await.map_err(|e| format!("Subscribe() again: {e}"))?;
                    tracing::info!("systemd is back on the bus; subscribed to its jobs again");
                    continue;
                }
                _ => return Err("systemd left the system bus".into()),
            },
            () = conn.closed() => return Err("the system bus closed the connection".into()),
        };
        tracing::debug!(?event, "service job");
        if tx.send(event).await.is_err() {
            return Ok(());
        }
    }
}

/// The job's `JobType` property (`restart`, `start`, `stop`, ...), if systemd answers fast.
async fn job_type(conn: &zbus::Connection, path: &OwnedObjectPath) -> Option<String> {
    let proxy = JobProxy::builder(conn)
        .path(path.clone())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .ok()?;
    tokio::time::timeout(JOB_TYPE_TIMEOUT, proxy.job_type())
        .await
        .ok()?
        .ok()
}

/// Runs [`watch`] for the daemon: keeps `jobs` up to date (the loop reads it when it sees a
/// drop) and, when a job ends, sends an observation that re-checks every guard at once with
/// the job as its cause.
pub async fn feed(
    bus: Bus,
    units: Vec<String>,
    jobs: tokio::sync::watch::Sender<ServiceJobs>,
    observer: mpsc::Sender<Observation>,
) {
    let (tx, mut rx) = mpsc::channel(64);
    tokio::spawn(watch(bus, units, tx));
    while let Some(event) = rx.recv().await {
        let mut ended = None;
        jobs.send_modify(|j| ended = j.record(&event, tokio::time::Instant::now().into_std()));
        if let Some(job) = ended {
            let seen = Observation::all(Trigger::ServiceJob).with_cause(Cause::from(job));
            if observer.send(seen).await.is_err() {
                return;
            }
        }
    }
}
