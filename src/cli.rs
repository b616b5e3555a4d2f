//! The command line: the clap definitions (also for the man pages and completions,
//! `examples/gen-docs.rs`), parsing, usage errors, and dispatch to [`crate::commands`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

pub use crate::commands::{EXIT_CONFIG, EXIT_FAILURE};
use crate::commands::{alert_test, check, config_check, demo, doctor, run};
use crate::config::DEFAULT_PATH;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Keeps IP forwarding on: restores or reports a dropped sysctl within microseconds"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the guard in the foreground (as systemd starts it).
    Run {
        /// Configuration file [default: /etc/fwdguard/fwdguard.toml if present, else guard
        /// net.ipv4.conf.all.forwarding = 1 with action restore]
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Read every guarded key once: exit 0 if all hold, 1 if one is guarded less well than
    /// configured (WARNING), 2 if any is wrong, 3 if one cannot be read.
    Check {
        /// Configuration file [default: as for `run`]
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Explain what keeps turning forwarding off here, or in an image with --root, and how to
    /// stop it: exit 0 if nothing is wrong, 1 if there are hazards, 2 if a guarded key is wrong
    /// right now, 3 if the configuration cannot be read.
    Doctor {
        /// Explain the image or chroot below DIR instead of this host (current values and
        /// the service state are then skipped). Symlinks never lead out of DIR.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Configuration file [default: as for `run`; with --root, DIR/etc/fwdguard/fwdguard.toml
        /// if present, else the built-in default]
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Webhook commands.
    Alert {
        #[command(subcommand)]
        command: AlertCommand,
    },
    /// Show the guard at work in a private network namespace; the host is not touched.
    Demo {
        /// How many drops the burst at the end makes.
        #[arg(long, default_value_t = 1000, value_name = "N")]
        burst: usize,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file: exit 0 if valid, 78 with FILE:LINE:COL: message if not.
    Check {
        #[arg(value_name = "FILE", default_value = DEFAULT_PATH)]
        file: PathBuf,
    },
}

/// The command line as clap sees it: for man pages and shell completions, generated at build
/// time by `examples/gen-docs.rs`.
pub fn command() -> clap::Command {
    Cli::command()
}

#[derive(Debug, Subcommand)]
enum AlertCommand {
    /// Send one test alert to every configured webhook and print each one's HTTP status or
    /// error: exit 0 only if all of them answered 2xx.
    Test {
        /// Configuration file [default: as for `run`]
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// Parses the command line and runs the command; its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(usage_error(&e)),
    };
    ExitCode::from(match cli.command {
        Command::Run { config } => run::run(config),
        Command::Check { config, json } => check::run(config.as_deref(), json),
        Command::Doctor { root, config, json } => {
            doctor::run(root.as_deref(), config.as_deref(), json)
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check::run(&file),
        Command::Alert {
            command: AlertCommand::Test { config },
        } => alert_test::run(config.as_deref()),
        Command::Demo { burst } => demo::run(burst),
    })
}

/// Prints a usage error (or `--help`, `--version`) as clap does and picks the exit code: clap's
/// 2, except for `check`, whose callers are monitoring systems that read 2 as CRITICAL. A usage
/// error there is UNKNOWN (3), said on stdout, where plugins' output is read.
fn usage_error(e: &clap::Error) -> u8 {
    let _ = e.print();
    if !e.use_stderr() {
        return 0;
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_none_or(|a| a != "check") {
        return u8::try_from(e.exit_code()).unwrap_or(EXIT_FAILURE);
    }
    let first = e.to_string();
    let first = first.lines().next().unwrap_or_default();
    let error = format!("usage: {}", first.strip_prefix("error: ").unwrap_or(first));
    check::print_failure(&error, args.iter().any(|a| a == "--json"));
    crate::check::EXIT_UNKNOWN
}
