//! `fwdguard run`: the daemon in the foreground, as systemd starts it. Reads the configuration,
//! starts the sources that name causes, and runs the loop ([`crate::daemon`]) until SIGTERM.

use std::path::PathBuf;

use super::{EXIT_CONFIG, EXIT_FAILURE};
use crate::daemon::{self, Setup};
use crate::{config, logging, source};

/// Runs the daemon; its exit code once it stopped, after stderr had a second to drain.
pub fn run(explicit: Option<PathBuf>) -> u8 {
    let code = run_daemon(explicit);
    crate::output::stderr::drain(std::time::Duration::from_secs(1));
    code
}

fn run_daemon(explicit: Option<PathBuf>) -> u8 {
    let sink = logging::init_daemon();
    let config = match config::resolve(explicit.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(
                "fwdguard {}: configuration error: {e}",
                env!("CARGO_PKG_VERSION")
            );
            return EXIT_CONFIG;
        }
    };
    tracing::info!(
        config = %config.origin,
        "fwdguard {} starting with configuration {}",
        env!("CARGO_PKG_VERSION"),
        config.origin
    );
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    let mut setup = Setup::new(config, explicit, sink);
    // Sources of other layers are spawned here, in the runtime, with `setup.observer()`;
    // readers of the guard's state take `setup.snapshots()`.
    let run = async {
        let ends = source::DaemonEnds {
            observer: setup.observer(),
            reporter: setup.reporter(),
            snapshots: setup.snapshots(),
        };
        if let Some(jobs) = source::spawn_cause_sources(&setup.config.causes, ends) {
            setup.attribute_with(jobs);
        }
        daemon::run(setup, std::future::pending()).await
    };
    match runtime.block_on(run) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            EXIT_FAILURE
        }
    }
}
