//! The command line: parse, dispatch, and turn results into exit codes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::{self, Config, DEFAULT_PATH};
use crate::daemon::{self, Setup};
use crate::knob::read_once;
use crate::sysctl::ProcSys;
use crate::value::Shape;
use crate::{check, demo, doctor, logging};

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

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(usage_error(&e)),
    };
    ExitCode::from(match cli.command {
        Command::Run { config } => run(config),
        Command::Check { config, json } => check(config.as_deref(), json),
        Command::Doctor { root, config, json } => doctor(root.as_deref(), config.as_deref(), json),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check(&file),
        Command::Alert {
            command: AlertCommand::Test { config },
        } => alert_test(config.as_deref()),
        Command::Demo { burst } => match demo::run(burst) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("fwdguard demo: {e}");
                EXIT_FAILURE
            }
        },
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
    print_check_failure(&error, args.iter().any(|a| a == "--json"));
    check::EXIT_UNKNOWN
}

/// `check` could not look at any key: one UNKNOWN line on stdout, or the JSON form of it.
fn print_check_failure(error: &str, json: bool) {
    let outcome = check::Outcome::failed(error.to_owned());
    if json {
        match serde_json::to_string_pretty(&outcome) {
            Ok(s) => println!("{s}"),
            Err(e) => println!("UNKNOWN: {error} ({e})"),
        }
    } else {
        print!("{}", outcome.text());
    }
}

fn run(explicit: Option<PathBuf>) -> u8 {
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
    let mut setup = Setup::new(config, explicit, sink);
    // Sources of other layers are spawned here, in the runtime, with `setup.observer()`;
    // readers of the guard's state take `setup.snapshots()`.
    let run = async {
        crate::source::spawn_cause_sources(&mut setup);
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

fn check(explicit: Option<&Path>, json: bool) -> u8 {
    let config = match config::resolve(explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fwdguard check: {e}");
            let e = e.to_string();
            let first = e.lines().next().unwrap_or_default();
            print_check_failure(&format!("configuration: {first}"), json);
            return check::EXIT_UNKNOWN;
        }
    };
    // Whether `prevent` would be in force: the daemon's own checks, probe and program load,
    // in this process (which may lack the daemon's privileges, and then says so).
    let no_prevent = prevent_unavailable(&config);
    let mut environment = |g: &crate::config::Guard| {
        let mut found = crate::source::probe(g);
        if let (Some(error), crate::config::Action::Prevent) = (&no_prevent, g.action) {
            found.push(crate::snapshot::Degradation::NoPrevent {
                error: error.clone(),
            });
        }
        found
    };
    let mut outcome = check::check(&config, &mut ProcSys::default(), &mut environment);
    outcome.hazards = doctor::hazards_line(&config);
    match print_result("check", &outcome, json, || outcome.text()) {
        Some(_) => outcome.exit_code(),
        None => check::EXIT_UNKNOWN,
    }
}

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

fn doctor(root: Option<&Path>, explicit: Option<&Path>, json: bool) -> u8 {
    let config = match (explicit, root) {
        (Some(_), _) | (None, None) => config::resolve(explicit),
        (None, Some(dir)) => {
            let r = crate::persist::scan::Root::new(dir);
            match r.read(DEFAULT_PATH) {
                crate::persist::scan::Found::Text { text, .. } => {
                    config::parse(&text, &r.host_path(DEFAULT_PATH))
                }
                _ => Ok(Config::default()),
            }
        }
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fwdguard doctor: {e}");
            return doctor::EXIT_UNKNOWN;
        }
    };
    let diagnosis = doctor::run(&config, root, &mut ProcSys::default());
    match print_result("doctor", &diagnosis, json, || diagnosis.text()) {
        Some(_) => diagnosis.exit_code(),
        None => doctor::EXIT_UNKNOWN,
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

fn alert_test(explicit: Option<&Path>) -> u8 {
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
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
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

fn config_check(file: &Path) -> u8 {
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
