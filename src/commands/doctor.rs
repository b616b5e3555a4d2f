//! `fwdguard doctor`: what keeps turning forwarding off on this host, or in an image with
//! `--root`, and how to stop it. Reads the files ([`crate::persist::inputs`]), on the host also
//! the service state and the current values; [`crate::diagnosis`] decides and words it.

use std::path::Path;

use crate::check;
use crate::config::{self, Config, DEFAULT_PATH};
use crate::diagnosis::{Diagnosis, EXIT_UNKNOWN, Service, diagnose, guards_of};
use crate::knob::Knobs;
use crate::persist::inputs::gather;
use crate::persist::scan::{Found, Root};
use crate::sysctl::ProcSys;

/// Runs doctor; its exit code.
pub fn run(root: Option<&Path>, explicit: Option<&Path>, json: bool) -> u8 {
    let config = match (explicit, root) {
        (Some(_), _) | (None, None) => config::resolve(explicit),
        (None, Some(dir)) => {
            let r = Root::new(dir);
            match r.read(DEFAULT_PATH) {
                Found::Text { text, .. } => {
                    Config::parse(&text, &r.host_path(DEFAULT_PATH), &config::Image)
                }
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
    let diagnosis = diagnose_here(&config, root, &mut ProcSys::default());
    match super::print_result("doctor", &diagnosis, json, || diagnosis.text()) {
        Some(_) => diagnosis.exit_code(),
        None => EXIT_UNKNOWN,
    }
}

/// Reads, decides, and for the host also reads the service state and the current values.
fn diagnose_here(config: &Config, root: Option<&Path>, knobs: &mut impl Knobs) -> Diagnosis {
    let (r, host) = match root {
        Some(dir) => (Root::new(dir), false),
        None => (Root::host(), true),
    };
    let mut inputs = gather(&r);
    let current = if host {
        inputs.service = service();
        check::check(config, knobs, &mut crate::source::probe).keys
    } else {
        Vec::new()
    };
    let shown = match root {
        Some(d) => d.display().to_string(),
        None => "/ (this host)".into(),
    };
    diagnose(&inputs, &guards_of(config), &shown, current)
}

/// `systemctl is-enabled` / `is-active fwdguard.service`, when systemd runs this host.
fn service() -> Option<Service> {
    if !Path::new("/run/systemd/system").exists() {
        return None;
    }
    let ask = |verb: &str| {
        std::process::Command::new("systemctl")
            .args([verb, "fwdguard.service"])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into())
    };
    Some(Service {
        enabled: ask("is-enabled"),
        active: ask("is-active"),
    })
}
