//! Build-time generator for what the packages ship besides the binary: the man pages
//! fwdguard(8) (one page per subcommand too, from the real clap command), fwdguard.toml(5) (from
//! the commented `config.example.toml`, the configuration reference) and bash, zsh and fish
//! completions. Not part of the daemon: `packaging/build.sh` runs it as
//! `cargo run --example gen-docs -- OUTDIR` and packs `OUTDIR/man/man{5,8}` and
//! `OUTDIR/completions`.

use std::fs;
use std::io;
use std::path::Path;
use std::process::ExitCode;

use clap::Command;
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};

use fwdguard::check::{EXIT_CRITICAL, EXIT_OK, EXIT_UNKNOWN};
use fwdguard::cli::{EXIT_CONFIG, EXIT_FAILURE};
use fwdguard::config::DEFAULT_PATH;

const CONFIG_REFERENCE: &str = include_str!("../config.example.toml");
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: gen-docs OUTDIR");
        return ExitCode::from(2);
    };
    match generate(Path::new(&out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-docs: {}: {e}", Path::new(&out).display());
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &Path) -> io::Result<()> {
    // man/man8, man/man5: a MANPATH directory, so `man -M OUTDIR/man fwdguard` reads them.
    let man8 = out.join("man/man8");
    let man5 = out.join("man/man5");
    let completions = out.join("completions");
    for dir in [&man8, &man5, &completions] {
        fs::create_dir_all(dir)?;
    }

    let mut cmd = fwdguard::cli::command().disable_help_subcommand(true);
    cmd.build();
    for sub in cmd.get_subcommands() {
        subcommand_pages(sub, &man8)?;
    }
    let mut page = Vec::new();
    Man::new(cmd.clone())
        .section("8")
        .source(format!("fwdguard {VERSION}"))
        .render(&mut page)?;
    page.extend(daemon_sections().to_roff().into_bytes());
    fs::write(man8.join("fwdguard.8"), page)?;
    fs::write(man5.join("fwdguard.toml.5"), config_page(CONFIG_REFERENCE))?;

    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "fwdguard", &completions)?;
    }
    Ok(())
}

/// fwdguard-run(8), fwdguard-config-check(8), ...: what `fwdguard help SUBCOMMAND` says.
fn subcommand_pages(cmd: &Command, dir: &Path) -> io::Result<()> {
    for sub in cmd.get_subcommands() {
        subcommand_pages(sub, dir)?;
    }
    Man::new(cmd.clone())
        .section("8")
        .source(format!("fwdguard {VERSION}"))
        .generate_to(dir)?;
    Ok(())
}

/// What the clap command cannot say: files, exit codes, the journal and related pages.
fn daemon_sections() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["FILES"]);
    for (file, what) in [
        (
            DEFAULT_PATH,
            "The configuration, see fwdguard.toml(5). Without it, fwdguard guards net.ipv4.conf.all.forwarding = 1 with action restore.",
        ),
        (
            "/usr/lib/systemd/system/fwdguard.service",
            "The unit: Type=notify, watchdog, reload on SIGHUP, run as the user fwdguard with CAP_NET_ADMIN only.",
        ),
        (
            "/usr/lib/sysusers.d/fwdguard.conf",
            "The system user the unit runs as.",
        ),
        (
            "/usr/lib/systemd/catalog/fwdguard.catalog",
            "Explanations that journalctl -x shows for each MESSAGE_ID fwdguard logs.",
        ),
    ] {
        r.control("TP", []).text([bold(file)]).text([roman(what)]);
    }
    r.control("SH", ["EXIT STATUS"]);
    r.text([roman(format!(
        "fwdguard run exits {EXIT_OK} when stopped by SIGTERM or SIGINT, {EXIT_CONFIG} (EX_CONFIG) for a missing or invalid configuration file (the unit does not restart it then), and {EXIT_FAILURE} for other start-up failures. fwdguard config check exits {EXIT_OK} or {EXIT_CONFIG}. fwdguard check exits {EXIT_OK} when every key holds, {EXIT_CRITICAL} when one is wrong and {EXIT_UNKNOWN} when one cannot be read."
    ))]);
    r.control("SH", ["JOURNAL"]);
    r.text([roman(
        "Every report is a native journal entry with a stable MESSAGE_ID, a syslog priority and FWDGUARD_* fields. journalctl -u fwdguard -x shows each with the catalog's explanation; journalctl -u fwdguard -p warning lists every drop, failure and flapping episode.",
    )]);
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(
        "fwdguard.toml(5), fwdguard-run(8), fwdguard-check(8), fwdguard-config-check(8), systemctl(1), journalctl(1), sysctl(8), sysctl.d(5)",
    )]);
    r
}

/// fwdguard.toml(5), from the configuration reference: each block of comments becomes a
/// paragraph, indented comment lines stay as they are laid out, and settings (commented out
/// or not) are shown as examples.
fn config_page(reference: &str) -> String {
    let mut r = Roff::new();
    r.control(
        "TH",
        [
            "FWDGUARD.TOML",
            "5",
            "",
            &format!("fwdguard {VERSION}"),
            "File Formats",
        ],
    );
    r.control("SH", ["NAME"]);
    r.text([roman("fwdguard.toml - configuration of fwdguard(8)")]);
    r.control("SH", ["SYNOPSIS"]);
    r.text([bold(DEFAULT_PATH)]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([
        roman("A TOML file. Unknown keys are errors; "),
        bold("fwdguard config check"),
        roman(" "),
        italic("FILE"),
        roman(" names the file, line and column of each."),
    ]);
    let mut blocks = reference
        .split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty());
    // The first block is the file's own title; the page has its own.
    if let Some(title) = blocks.next() {
        paragraphs(&mut r, title.lines().skip(1));
    }
    r.control("SH", ["KEYS AND EXAMPLES"]);
    for block in blocks {
        paragraphs(&mut r, block.lines());
    }
    r.control("SH", ["SEE ALSO"]);
    r.text([roman("fwdguard(8), sysctl(8), sysctl.d(5)")]);
    r.to_roff()
}

#[derive(PartialEq)]
enum Kind {
    Prose,
    Layout,
    Setting,
}

/// Renders one block of the reference: runs of prose, laid-out lines and settings.
fn paragraphs<'a>(r: &mut Roff, lines: impl Iterator<Item = &'a str>) {
    let mut run: Vec<String> = Vec::new();
    let mut kind = Kind::Prose;
    let flush = |r: &mut Roff, kind: &Kind, run: &mut Vec<String>| {
        if run.is_empty() {
            return;
        }
        match kind {
            Kind::Prose => {
                r.control("PP", []).text([roman(run.join(" "))]);
            }
            Kind::Layout | Kind::Setting => {
                r.control("PP", []).control("RS", ["4"]).control("nf", []);
                for line in run.iter() {
                    r.text([if *kind == Kind::Setting {
                        bold(line.as_str())
                    } else {
                        roman(line.as_str())
                    }]);
                }
                r.control("fi", []).control("RE", []);
            }
        }
        run.clear();
    };
    for line in lines {
        let (this, text) = classify(line);
        if this == Kind::Prose && text.is_empty() {
            continue;
        }
        if this != kind || (this == Kind::Setting && text.starts_with("[[")) {
            flush(r, &kind, &mut run);
            kind = this;
        }
        run.push(text);
    }
    flush(r, &kind, &mut run);
}

fn classify(line: &str) -> (Kind, String) {
    let Some(comment) = line.strip_prefix('#') else {
        return (Kind::Setting, line.to_owned());
    };
    let text = comment.strip_prefix(' ').unwrap_or(comment);
    let setting = text.starts_with("[[")
        || text.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if setting {
        (Kind::Setting, text.to_owned())
    } else if text.starts_with(' ') {
        (Kind::Layout, text.to_owned())
    } else {
        (Kind::Prose, text.to_owned())
    }
}
