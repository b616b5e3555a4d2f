//! The commands, one module each, thin over the core and the I/O modules: each reads what it
//! needs, lets the core decide, prints, and returns its exit code. [`crate::cli`] parses the
//! command line and calls the `run` of one of them.
//!
//! - [`run`]: `fwdguard run`, the daemon in the foreground.
//! - [`check`]: `fwdguard check`, every guarded key read once, monitoring-plugin exit codes.
//! - [`doctor`]: `fwdguard doctor`, what keeps turning forwarding off and how to stop it.
//! - [`demo`]: `fwdguard demo`, the guard at work in a private network namespace.
//! - [`alert_test`]: `fwdguard alert test`, one test alert to every webhook.
//! - [`config_check`]: `fwdguard config check`, a configuration file validated.

pub mod alert_test;
pub mod check;
pub mod config_check;
pub mod demo;
pub mod doctor;
pub mod run;

/// sysexits(3) EX_CONFIG: a configuration error.
pub const EXIT_CONFIG: u8 = 78;
/// A failure that is not the configuration's fault.
pub const EXIT_FAILURE: u8 = 1;

/// Prints a result as JSON or text; `None` if JSON could not be made (said on stderr).
fn print_result(
    command: &str,
    result: &impl serde::Serialize,
    json: bool,
    text: impl FnOnce() -> String,
) -> Option<()> {
    if json {
        match serde_json::to_string_pretty(result) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("fwdguard {command}: {e}");
                return None;
            }
        }
    } else {
        print!("{}", text());
    }
    Some(())
}

/// A tokio runtime on this thread, for a command that does async I/O.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
