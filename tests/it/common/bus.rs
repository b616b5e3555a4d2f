//! A private `dbus-daemon` on a unix socket in a temporary directory, and a stand-in for
//! systemd's Manager served on it with zbus: `Subscribe()`, `JobNew`, `JobRemoved`, and a Job
//! object per job with its `JobType`. Nothing touches the host's system bus.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use zbus::ObjectPath;
use zbus::object_server::SignalEmitter;

/// `None` (after printing SKIPPED) when dbus-daemon is missing outside CI; fails in CI.
pub fn dbus_daemon(test: &str) -> Option<PathBuf> {
    super::tool(test, "dbus-daemon", "dbus-daemon")
}

pub struct PrivateBus {
    dir: tempfile::TempDir,
    program: PathBuf,
    child: Option<Child>,
}

impl PrivateBus {
    pub fn start(program: &Path) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
            dir.path().display()
        );
        std::fs::write(dir.path().join("bus.conf"), config).expect("bus config");
        let mut bus = Self {
            dir,
            program: program.to_owned(),
            child: None,
        };
        bus.up();
        bus
    }

    /// `unix:path=...`, for `DBUS_SYSTEM_BUS_ADDRESS`.
    pub fn address(&self) -> String {
        format!("unix:path={}/bus", self.dir.path().display())
    }

    fn up(&mut self) {
        let socket = self.dir.path().join("bus");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(&self.program)
            .arg(format!(
                "--config-file={}",
                self.dir.path().join("bus.conf").display()
            ))
            .arg("--nofork")
            .arg("--nopidfile")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        self.child = Some(child);
        // The socket file appears at bind(2), before listen(2): wait until a connection is
        // accepted.
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "dbus-daemon did not listen"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The bus goes away (as when dbus.service restarts).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// ... and comes back on the same address.
    pub fn restart(&mut self) {
        self.stop();
        self.up();
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Manager {
    subscribed: Arc<AtomicU32>,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    fn subscribe(&self) {
        self.subscribed.fetch_add(1, Ordering::SeqCst);
    }

    #[zbus(signal)]
    async fn job_new(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: ObjectPath<'_>,
        unit: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

struct Job {
    kind: String,
}

#[zbus::interface(name = "org.freedesktop.systemd1.Job")]
impl Job {
    #[zbus(property)]
    fn job_type(&self) -> String {
        self.kind.clone()
    }
}

const MANAGER: &str = "/org/freedesktop/systemd1";

/// The stand-in systemd, on a runtime of its own so blocking tests can drive it.
pub struct FakeSystemd {
    rt: tokio::runtime::Runtime,
    conn: Option<zbus::Connection>,
    subscribed: Arc<AtomicU32>,
}

impl FakeSystemd {
    pub fn start(address: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let mut fake = Self {
            rt,
            conn: None,
            subscribed: Arc::new(AtomicU32::new(0)),
        };
        fake.connect(address);
        fake
    }

    /// Connects (again, after the bus restarted) and takes systemd's name.
    pub fn connect(&mut self, address: &str) {
        let manager = Manager {
            subscribed: self.subscribed.clone(),
        };
        let conn = self.rt.block_on(async {
            zbus::connection::Builder::address(address)
                .name("org.freedesktop.systemd1")
                .serve_at(MANAGER, manager)
                .build()
                .await
                .expect("stand-in systemd on the private bus")
        });
        self.conn = Some(conn);
    }

    /// `Subscribe()` calls so far.
    pub fn subscribed(&self) -> u32 {
        self.subscribed.load(Ordering::SeqCst)
    }

    pub fn wait_subscribed(&self, at_least: u32, timeout: Duration) {
        let start = Instant::now();
        while self.subscribed() < at_least {
            assert!(
                start.elapsed() < timeout,
                "no Subscribe() #{at_least} within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn conn(&self) -> &zbus::Connection {
        self.conn.as_ref().expect("connected")
    }

    fn job_path(id: u32) -> String {
        format!("{MANAGER}/job/{id}")
    }

    /// A job starts: its object appears, then `JobNew`.
    pub fn job_new(&self, id: u32, unit: &str, kind: &str) {
        let conn = self.conn().clone();
        let path = Self::job_path(id);
        let kind = kind.to_owned();
        let unit = unit.to_owned();
        self.rt.block_on(async move {
            conn.object_server()
                .at(path.as_str(), Job { kind })
                .await
                .expect("job object");
            let emitter = SignalEmitter::new(&conn, MANAGER).expect("emitter");
            let job = ObjectPath::try_from(path.as_str()).expect("path");
            Manager::job_new(&emitter, id, job, &unit)
                .await
                .expect("JobNew");
        });
    }

    /// The job ends: `JobRemoved`, then its object goes.
    pub fn job_removed(&self, id: u32, unit: &str, result: &str) {
        let conn = self.conn().clone();
        let path = Self::job_path(id);
        let unit = unit.to_owned();
        let result = result.to_owned();
        self.rt.block_on(async move {
            let emitter = SignalEmitter::new(&conn, MANAGER).expect("emitter");
            let job = ObjectPath::try_from(path.as_str()).expect("path");
            Manager::job_removed(&emitter, id, job, &unit, &result)
                .await
                .expect("JobRemoved");
            let _ = conn.object_server().remove::<Job, _>(path.as_str()).await;
        });
    }
}
