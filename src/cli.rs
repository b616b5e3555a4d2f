//! The command line: parse, dispatch, and turn results into exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_PATH};
use crate::daemon::{self, Setup};
use crate::sysctl::{Knobs, ProcSys};
use crate::{check, demo, logging};

/// sysexits(3) EX_CONFIG: a configuration error.
pub const EXIT_CONFIG: u8 = 78;
/// A failure that is not the configuration's fault.
pub const EXIT_FAILURE: u8 = 1;

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
    /// Read every guarded key once: exit 0 if all hold, 2 if any is wrong, 3 if one cannot be read.
    Check {
        /// Configuration file [default: as for `run`]
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

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(match cli.command {
        Command::Run { config } => run(config),
        Command::Check { config, json } => check(config.as_deref(), json),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check(&file),
        Command::Demo { burst } => match demo::run(burst) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("fwdguard demo: {e}");
                EXIT_FAILURE
            }
        },
    })
}

fn run(explicit: Option<PathBuf>) -> u8 {
    let sink = logging::init_daemon();
    let config = match Config::resolve(explicit.as_deref()) {
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
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    let setup = Setup {
        config,
        explicit,
        sinks: vec![sink],
    };
    match runtime.block_on(daemon::run(setup, std::future::pending())) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            EXIT_FAILURE
        }
    }
}

fn check(explicit: Option<&Path>, json: bool) -> u8 {
    let config = match Config::resolve(explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fwdguard check: {e}");
            return check::EXIT_UNKNOWN;
        }
    };
    let outcome = check::check(&config, &mut ProcSys::default());
    if json {
        match serde_json::to_string_pretty(&outcome) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("fwdguard check: {e}");
                return check::EXIT_UNKNOWN;
            }
        }
    } else {
        print!("{}", outcome.text());
    }
    outcome.exit_code()
}

fn config_check(file: &Path) -> u8 {
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    println!(
        "{}: ok, {} guarded key{}",
        file.display(),
        config.guards.len(),
        if config.guards.len() == 1 { "" } else { "s" }
    );
    // Soft findings: valid, but worth knowing before the daemon runs.
    let mut knobs = ProcSys::default();
    for g in &config.guards {
        if let Err(e) = knobs.read(&g.key)
            && e.is_missing()
        {
            println!(
                "{}: warning: {} does not exist on this host now; fwdguard will report it and guard it once it appears",
                file.display(),
                g.key
            );
        }
    }
    0
}
