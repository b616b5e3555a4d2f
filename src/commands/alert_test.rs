//! `fwdguard alert test`: one test alert to every configured webhook, each one's HTTP status
//! or error printed ([`crate::alert::test_all`] sends them).

use std::path::Path;

use super::{EXIT_CONFIG, EXIT_FAILURE};
use crate::config;

/// Sends the test alerts; exit 0 only if every webhook answered 2xx.
pub fn run(explicit: Option<&Path>) -> u8 {
    let config = match config::resolve(explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fwdguard alert test: {e}");
            return EXIT_CONFIG;
        }
    };
    if config.webhooks.is_empty() {
        eprintln!(
            "fwdguard alert test: {} has no [[webhook]]: nothing to test",
            config.origin
        );
        return EXIT_FAILURE;
    }
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fwdguard alert test: cannot start the runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    let results = runtime.block_on(crate::alert::test_all(&config.webhooks));
    let mut all_ok = true;
    for (label, outcome) in &results {
        if outcome.ok() {
            println!("{label}: ok, {outcome}");
        } else {
            all_ok = false;
            println!("{label}: FAILED: {outcome}");
        }
    }
    if all_ok { 0 } else { EXIT_FAILURE }
}
