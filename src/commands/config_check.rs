//! `fwdguard config check`: a configuration file validated as the daemon would load it, with
//! soft findings (a key that does not exist here yet) after the summary.

use std::path::Path;

use super::EXIT_CONFIG;
use crate::config;
use crate::knob::read_once;
use crate::sysctl::ProcSys;
use crate::value::Shape;

/// Validates `file`: exit 0 with a summary if valid, 78 with `FILE:LINE:COL: message` if not.
pub fn run(file: &Path) -> u8 {
    let config = match config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    let mut summary = format!(
        "{}: ok, {}",
        file.display(),
        crate::report::count(config.guards.len(), "guarded key")
    );
    if !config.webhooks.is_empty() {
        let names: Vec<String> = config.webhooks.iter().map(|w| w.label()).collect();
        summary.push_str(&format!(
            ", {}: {}",
            crate::report::count(names.len(), "webhook"),
            names.join(", ")
        ));
    }
    if let Some(m) = &config.metrics {
        summary.push_str(&format!(", metrics on http://{}/metrics", m.listen));
    }
    println!("{summary}");
    // Soft findings: valid, but worth knowing before the daemon runs.
    let mut knobs = ProcSys::default();
    for g in &config.guards {
        if let Err(e) = read_once(&mut knobs, &g.key)
            && e.is_missing()
        {
            let unchecked = if Shape::known(&g.key).is_none() {
                "; its type is not known, so its value was checked only as text or numbers"
            } else {
                ""
            };
            println!(
                "{}: warning: {} does not exist on this host now; fwdguard will report it and guard it once it appears{unchecked}",
                file.display(),
                g.key
            );
        }
    }
    0
}
