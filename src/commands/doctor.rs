//! `fwdguard doctor`: what keeps turning forwarding off on this host, or in an image with
//! `--root`, and how to stop it ([`crate::doctor`] reads and decides).

use std::path::Path;

use crate::config::{self, Config, DEFAULT_PATH};
use crate::doctor::{self, EXIT_UNKNOWN};
use crate::persist::scan::{Found, Root};
use crate::sysctl::ProcSys;

/// Runs doctor; its exit code.
pub fn run(root: Option<&Path>, explicit: Option<&Path>, json: bool) -> u8 {
    let config = match (explicit, root) {
        (Some(_), _) | (None, None) => config::resolve(explicit),
        (None, Some(dir)) => {
            let r = Root::new(dir);
            match r.read(DEFAULT_PATH) {
                Found::Text { text, .. } => config::parse(&text, &r.host_path(DEFAULT_PATH)),
                _ => Ok(Config::default()),
            }
        }
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fwdguard doctor: {e}");
            return EXIT_UNKNOWN;
        }
    };
    let diagnosis = doctor::run(&config, root, &mut ProcSys::default());
    match super::print_result("doctor", &diagnosis, json, || diagnosis.text()) {
        Some(_) => diagnosis.exit_code(),
        None => EXIT_UNKNOWN,
    }
}
