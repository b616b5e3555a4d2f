//! `fwdguard check`: every guarded key read once, with what would degrade its guard here, in
//! the monitoring-plugin convention ([`crate::check`] decides and words it).

use std::path::Path;

use crate::check::{self, EXIT_UNKNOWN, Verdict};
use crate::config::{self, Action, Config, Guard};
use crate::diagnosis::{diagnose, guards_of};
use crate::persist::inputs::gather;
use crate::persist::scan::Root;
use crate::snapshot::Degradation;
use crate::sysctl::ProcSys;

/// Runs the check; its exit code.
pub fn run(explicit: Option<&Path>, json: bool) -> u8 {
    let config = match config::resolve(explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fwdguard check: {e}");
            let e = e.to_string();
            let first = e.lines().next().unwrap_or_default();
            print_failure(&format!("configuration: {first}"), json);
            return EXIT_UNKNOWN;
        }
    };
    // Whether `prevent` would be in force: the daemon's own checks, probe and program load,
    // in this process (which may lack the daemon's privileges, and then says so).
    let no_prevent = prevent_unavailable(&config);
    let mut environment = |g: &Guard| {
        let mut found = crate::source::probe(g);
        if let (Some(error), Action::Prevent) = (&no_prevent, g.action) {
            found.push(Degradation::NoPrevent {
                error: error.clone(),
            });
        }
        found
    };
    let mut outcome = check::check(&config, &mut ProcSys::default(), &mut environment);
    outcome.hazards = hazards_line(&config);
    match super::print_result("check", &outcome, json, || outcome.text()) {
        Some(_) => outcome.exit_code(),
        None => EXIT_UNKNOWN,
    }
}

/// `check` could not look at any key: one UNKNOWN line on stdout, or the JSON form of it.
pub fn print_failure(error: &str, json: bool) {
    let outcome = Verdict::failed(error.to_owned());
    if json {
        match serde_json::to_string_pretty(&outcome) {
            Ok(s) => println!("{s}"),
            Err(e) => println!("UNKNOWN: {error} ({e})"),
        }
    } else {
        print!("{}", outcome.text());
    }
}

/// Why the BPF hook could not keep the `prevent` keys of `config` here, if it could not.
fn prevent_unavailable(config: &Config) -> Option<String> {
    let targets: Vec<crate::bpf::Target> = config.prevented().map(crate::bpf::Target::of).collect();
    if targets.is_empty() {
        return None;
    }
    if !config.bpf_hook {
        return Some(crate::bpf::HOOK_OFF.into());
    }
    crate::bpf::Options::from_env()
        .and_then(|o| crate::bpf::preflight(&targets, &o).map_err(|e| e.to_string()))
        .err()
}

/// The one line `check` adds: the hazards in the persisted files and configurations below the
/// configured root (no service state, no current values), as `fwdguard doctor` would find them.
fn hazards_line(config: &Config) -> Option<String> {
    let root = Root::new(&config.causes.persisted_root);
    let inputs = gather(&root);
    diagnose(
        &inputs,
        &guards_of(config),
        &root.dir().display().to_string(),
        Vec::new(),
    )
    .summary()
}
