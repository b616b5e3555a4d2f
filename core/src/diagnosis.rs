//! What `fwdguard doctor` finds: why forwarding keeps going off on a host (or in an image), and
//! how to stop it: current values, what each sysctl applier will set at the next boot or
//! network restart, and every hazard with its evidence (`FILE:LINE`) and a concrete fix,
//! checked by the resolver itself.
//!
//! [`diagnose`] decides from [`Inputs`], the files' contents and the service state the binary
//! read (its `persist::inputs`); nothing here reads a file.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;

use crate::check::{KeyCheck, State};
use crate::config::Config;
use crate::key::SysctlKey;
use crate::persist::Unreadable;
use crate::persist::resolve::{
    self, Applied, Conflict, FileProblem, FileState, How, Tree, conflicts,
};
use crate::value::Value;

pub const EXIT_CLEAN: u8 = 0;
pub const EXIT_HAZARDS: u8 = 1;
pub const EXIT_WRONG_NOW: u8 = 2;
/// The configuration could not be read.
pub const EXIT_UNKNOWN: u8 = 3;

/// Where the drop-in goes.
pub const DROP_IN_DIR: &str = "/etc/sysctl.d";
const DROP_IN_NAME: &str = "99-zz-fwdguard.conf";

/// A text file that was read, by the path it was found under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFile {
    pub path: String,
    pub text: String,
}

/// Whether fwdguard runs here (host only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    pub enabled: String,
    pub active: String,
}

/// Everything the diagnosis looks at, as data.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub tree: Tree,
    pub network_scripts: Vec<TextFile>,
    pub docker: Option<TextFile>,
    pub networkd: Vec<TextFile>,
    pub network_manager: Vec<TextFile>,
    /// `None` with `--root`, or when systemd does not run here.
    pub service: Option<Service>,
    pub unreadable: Vec<Unreadable>,
}

/// What kind of hazard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Persisted,
    NetworkScript,
    Docker,
    Networkd,
    NetworkManager,
    NotEnabled,
    NotRunning,
}

/// One thing that will (or may) turn a guarded key off, with its evidence and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hazard {
    pub kind: Kind,
    /// `FILE:LINE`, or empty for the service state.
    pub evidence: String,
    pub what: String,
    pub fix: String,
}

/// A line to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edit {
    pub file: String,
    pub line: u32,
    pub old: String,
    pub new: String,
}

/// A file to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DropIn {
    pub path: String,
    pub content: String,
}

/// Changes to the sysctl files after which every applier sets every guarded key right.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SysctlFix {
    pub edits: Vec<Edit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_in: Option<DropIn>,
    /// The resolver confirmed that after these changes no applier conflicts with a guard.
    pub verified: bool,
}

/// Persisted values of one key.
#[derive(Debug, Clone, Serialize)]
pub struct Persisted {
    pub key: String,
    pub want: String,
    pub appliers: Vec<Applied>,
}

/// The whole answer.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    pub root: String,
    /// Current values; empty with `--root`.
    pub current: Vec<KeyCheck>,
    pub persisted: Vec<Persisted>,
    pub hazards: Vec<Hazard>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sysctl_fix: Option<SysctlFix>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
    pub unreadable: Vec<Unreadable>,
    pub skipped_lines: Vec<FileProblem>,
}

impl Diagnosis {
    pub fn exit_code(&self) -> u8 {
        if self.current.iter().any(|k| k.state == State::Wrong) {
            EXIT_WRONG_NOW
        } else if !self.hazards.is_empty() {
            EXIT_HAZARDS
        } else {
            EXIT_CLEAN
        }
    }
}

pub fn guards_of(config: &Config) -> Vec<(SysctlKey, Value)> {
    config
        .guards
        .iter()
        .map(|g| (g.key.clone(), g.want.clone()))
        .collect()
}

/// `ipv4`/`ipv6` if `key` is a forwarding key.
fn forwarding_family(key: &SysctlKey) -> Option<&'static str> {
    let path = key.proc_path();
    let parts: Vec<_> = path.iter().map(|c| c.to_string_lossy()).collect();
    match parts.iter().map(|c| c.as_ref()).collect::<Vec<&str>>()[..] {
        ["/", "proc", "sys", "net", "ipv4", "conf", _, "forwarding"] => Some("ipv4"),
        ["/", "proc", "sys", "net", "ipv6", "conf", _, "forwarding"] => Some("ipv6"),
        _ => None,
    }
}

/// Decides, from what was read.
pub fn diagnose(
    inputs: &Inputs,
    guards: &[(SysctlKey, Value)],
    root: &str,
    current: Vec<KeyCheck>,
) -> Diagnosis {
    let families: BTreeSet<&str> = guards
        .iter()
        .filter_map(|(k, _)| forwarding_family(k))
        .collect();
    let tree = &inputs.tree;
    let persisted = guards
        .iter()
        .map(|(key, want)| Persisted {
            key: key.to_string(),
            want: want.to_string(),
            appliers: resolve::resolve(tree, key),
        })
        .collect();

    let mut hazards = Vec::new();
    let found = conflicts(tree, guards);
    let sysctl_fix = (!found.is_empty()).then(|| plan_fix(tree, guards));
    for c in &found {
        hazards.push(persisted_hazard(c, sysctl_fix.as_ref()));
    }
    if families.contains("ipv4") {
        for f in &inputs.network_scripts {
            hazards.extend(network_script(f));
        }
    }
    let mut unreadable = inputs.unreadable.clone();
    if let Some(f) = &inputs.docker {
        match docker(f) {
            Ok(h) if !families.is_empty() => hazards.extend(h),
            Ok(_) => {}
            Err(u) => unreadable.push(u),
        }
    }
    for f in &inputs.networkd {
        hazards.extend(networkd(f, &families));
    }
    for f in &inputs.network_manager {
        hazards.extend(network_manager(f, &families));
    }
    if let Some(s) = &inputs.service {
        if s.enabled != "enabled" {
            hazards.push(Hazard {
                kind: Kind::NotEnabled,
                evidence: String::new(),
                what: format!(
                    "fwdguard.service is {}: nothing guards forwarding after the next boot",
                    s.enabled
                ),
                fix: "systemctl enable --now fwdguard".into(),
            });
        }
        if s.active != "active" {
            hazards.push(Hazard {
                kind: Kind::NotRunning,
                evidence: String::new(),
                what: format!(
                    "fwdguard.service is {}: nothing guards forwarding now",
                    s.active
                ),
                fix: "systemctl start fwdguard; journalctl -u fwdguard says why it stopped".into(),
            });
        }
    }
    Diagnosis {
        root: root.to_owned(),
        current,
        persisted,
        hazards,
        sysctl_fix,
        service: inputs.service.clone(),
        unreadable,
        skipped_lines: resolve::problems(tree),
    }
}

fn persisted_hazard(c: &Conflict, fix: Option<&SysctlFix>) -> Hazard {
    let at = &c.setting.at;
    let edit = fix.and_then(|f| {
        f.edits
            .iter()
            .find(|e| e.file == at.file && e.line == at.line)
    });
    let fix = match (edit, fix.and_then(|f| f.drop_in.as_ref())) {
        (Some(e), _) => format!(
            "change {}:{} from `{}` to `{}`",
            e.file,
            e.line,
            e.old.trim(),
            e.new.trim()
        ),
        (None, Some(d)) => format!(
            "create {} (below), which every applier reads after {}",
            d.path, at.file
        ),
        (None, None) => "no change of the sysctl files wins for every applier; see above".into(),
    };
    Hazard {
        kind: Kind::Persisted,
        evidence: at.to_string(),
        what: c.effect(),
        fix,
    }
}

/// A name in `/etc/sysctl.d` that sorts after every other file.
pub fn drop_in_name(tree: &Tree) -> String {
    let others: Vec<&str> = tree.names().filter(|n| *n != DROP_IN_NAME).collect();
    if others.iter().all(|n| *n < DROP_IN_NAME) {
        return DROP_IN_NAME.to_owned();
    }
    (3..)
        .map(|n| format!("{}-fwdguard.conf", "z".repeat(n)))
        .find(|cand| others.iter().all(|n| n < &cand.as_str()))
        .unwrap_or_else(|| DROP_IN_NAME.to_owned())
}

/// Works out the least change of the sysctl files that makes every applier set every
/// guarded key right, and checks it with the resolver: a drop-in that sorts last, plus edits
/// of the lines that still win after it (`/etc/sysctl.conf` is read last by procps).
pub fn plan_fix(tree: &Tree, guards: &[(SysctlKey, Value)]) -> SysctlFix {
    let keys: Vec<(String, String)> = {
        let mut seen = BTreeSet::new();
        conflicts(tree, guards)
            .into_iter()
            .filter(|c| seen.insert(c.key.clone()))
            .map(|c| (c.key, c.want))
            .collect()
    };
    let name = drop_in_name(tree);
    let mut content = String::from(
        "# Written on the advice of `fwdguard doctor`: the guarded values, in a file whose name\n\
         # sorts after every other sysctl.d file, so systemd-sysctl and `sysctl --system` apply\n\
         # it last.\n",
    );
    for (key, want) in &keys {
        let _ = writeln!(content, "{key} = {want}");
    }
    let mut with_drop_in = tree.clone();
    with_drop_in.put(DROP_IN_DIR, &name, &content);
    let edits = edits_until_clean(&mut with_drop_in, tree, guards);
    // The drop-in is only worth suggesting if the edits alone do not do it.
    let mut edits_only = tree.clone();
    for e in &edits {
        edits_only.edit_line(&e.file, e.line, &e.new);
    }
    if conflicts(&edits_only, guards).is_empty() {
        return SysctlFix {
            edits,
            drop_in: None,
            verified: true,
        };
    }
    SysctlFix {
        verified: conflicts(&with_drop_in, guards).is_empty(),
        edits,
        drop_in: Some(DropIn {
            path: format!("{DROP_IN_DIR}/{name}"),
            content,
        }),
    }
}

/// Edits each line that still wins with a wrong value, until none does (or no progress).
fn edits_until_clean(t: &mut Tree, original: &Tree, guards: &[(SysctlKey, Value)]) -> Vec<Edit> {
    let mut edits: Vec<Edit> = Vec::new();
    for _ in 0..16 {
        let left = conflicts(t, guards);
        if left.is_empty() {
            break;
        }
        let mut progress = false;
        for c in left {
            let at = &c.setting.at;
            if edits.iter().any(|e| e.file == at.file && e.line == at.line) {
                continue;
            }
            let Some(old) = line_of(original, &at.file, at.line) else {
                continue;
            };
            let new = match &c.setting.how {
                // Keep the spelling of the file: only the value changes.
                How::Key | How::Alias { .. } => match old.split_once('=') {
                    Some((k, _)) => format!("{} = {}", k.trim_end(), c.want),
                    None => continue,
                },
                // Setting `all` or a glob to the wanted value would change other keys too:
                // switch the line off instead.
                How::AllInterfaces { .. } | How::Glob { .. } => {
                    format!("# disabled for fwdguard: {}", old.trim())
                }
            };
            t.edit_line(&at.file, at.line, &new);
            edits.push(Edit {
                file: at.file.clone(),
                line: at.line,
                old: old.trim_end_matches('\r').to_owned(),
                new,
            });
            progress = true;
        }
        if !progress {
            break;
        }
    }
    edits
}

fn line_of(tree: &Tree, real: &str, line: u32) -> Option<String> {
    tree.files().find_map(|s| match s {
        FileState::Text { text, real: r } if r == real => {
            text.split('\n').nth(line as usize - 1).map(str::to_owned)
        }
        _ => None,
    })
}

/// Lines that are not comments, numbered from 1.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with(['#', ';']))
}

/// `sysctl -w net.ipv4.ip_forward=0` and its relatives in the initscripts network service.
fn network_script(f: &TextFile) -> Vec<Hazard> {
    code_lines(&f.text)
        .filter(|(_, l)| {
            let squeezed: String = l.chars().filter(|c| !c.is_whitespace()).collect();
            ["net.ipv4.ip_forward=0", "net/ipv4/ip_forward=0", "0>/proc/sys/net/ipv4/ip_forward"]
                .iter()
                .any(|p| squeezed.contains(p))
        })
        .map(|(n, l)| Hazard {
            kind: Kind::NetworkScript,
            evidence: format!("{}:{n}", f.path),
            what: format!(
                "the initscripts network service sets net.ipv4.ip_forward to 0 (and with it every interface) whenever it stops, e.g. on `systemctl restart network`: `{l}`"
            ),
            fix: "keep fwdguard running (it restores forwarding within microseconds and names the restart); to end the drops, manage the network with NetworkManager instead: `systemctl disable --now network && systemctl enable --now NetworkManager` (an edit of the script is undone by the next initscripts update)".into(),
        })
        .collect()
}

/// `"ip-forward": false` in Docker's daemon.json.
fn docker(f: &TextFile) -> Result<Vec<Hazard>, Unreadable> {
    let json: serde_json::Value = serde_json::from_str(&f.text).map_err(|e| Unreadable {
        path: format!("{}:{}:{}", f.path, e.line(), e.column()),
        error: format!("not valid JSON ({e}); dockerd will not start with it"),
    })?;
    if json.get("ip-forward") != Some(&serde_json::Value::Bool(false)) {
        return Ok(Vec::new());
    }
    let line = f
        .text
        .lines()
        .position(|l| l.contains("\"ip-forward\""))
        .map_or(1, |i| i + 1);
    Ok(vec![Hazard {
        kind: Kind::Docker,
        evidence: format!("{}:{line}", f.path),
        what: "Docker is told not to enable forwarding (\"ip-forward\": false): containers lose the outside network whenever it is 0".into(),
        fix: format!(
            "remove `\"ip-forward\": false` from {}:{line} (the default, true, lets dockerd turn forwarding on when it starts), then `systemctl restart docker`",
            f.path
        ),
    }])
}

/// An INI-style file as `(line, section, key, value)`.
fn ini(text: &str) -> Vec<(usize, String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for (n, l) in code_lines(text) {
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.trim().to_owned();
        } else if let Some((k, v)) = l.split_once('=') {
            out.push((n, section.clone(), k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

fn is_off(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "no" | "false" | "0" | "off"
    )
}

/// systemd-networkd: `IPv4Forwarding=`/`IPv6Forwarding=` (networkd.conf and .network, since
/// systemd 256) and the older `IPForward=` of .network files.
fn networkd(f: &TextFile, families: &BTreeSet<&str>) -> Vec<Hazard> {
    let mut out = Vec::new();
    for (n, section, key, value) in ini(&f.text) {
        if section != "Network" || !is_off(&value) {
            continue;
        }
        let hit: Vec<&str> = match key.as_str() {
            "IPv4Forwarding" => vec!["ipv4"],
            "IPv6Forwarding" => vec!["ipv6"],
            "IPForward" if f.path.ends_with(".network") => vec!["ipv4", "ipv6"],
            _ => continue,
        };
        if !hit.iter().any(|h| families.contains(h)) {
            continue;
        }
        let scope = if f.path.ends_with(".network") {
            "for the links this file matches"
        } else {
            "for the whole system"
        };
        out.push(Hazard {
            kind: Kind::Networkd,
            evidence: format!("{}:{n}", f.path),
            what: if key == "IPForward" {
                format!(
                    "systemd-networkd is told to keep forwarding off {scope}: `{key}={value}` (whether it turns forwarding off depends on the systemd version; IPv4Forwarding=/IPv6Forwarding= replace it since systemd 256)"
                )
            } else {
                format!("systemd-networkd turns forwarding off {scope}: `{key}={value}`")
            },
            fix: format!(
                "remove `{key}={value}` from {}:{n} or set it to yes, then `networkctl reload`",
                f.path
            ),
        });
    }
    out
}

/// NetworkManager: `forwarding=` in a profile's `[ipv4]`/`[ipv6]` (NetworkManager 1.54+), and
/// `ipv4.forwarding=` defaults in NetworkManager.conf.
fn network_manager(f: &TextFile, families: &BTreeSet<&str>) -> Vec<Hazard> {
    let mut out = Vec::new();
    for (n, section, key, value) in ini(&f.text) {
        let family = match (section.as_str(), key.as_str()) {
            ("ipv4", "forwarding") => "ipv4",
            ("ipv6", "forwarding") => "ipv6",
            (s, "ipv4.forwarding") if s.starts_with("connection") => "ipv4",
            (s, "ipv6.forwarding") if s.starts_with("connection") => "ipv6",
            _ => continue,
        };
        if !is_off(&value) || !families.contains(family) {
            continue;
        }
        out.push(Hazard {
            kind: Kind::NetworkManager,
            evidence: format!("{}:{n}", f.path),
            what: format!(
                "NetworkManager turns {family} forwarding off when this profile comes up: `{key}={value}`"
            ),
            fix: format!(
                "remove the line {}:{n} (or `nmcli connection modify <profile> {family}.forwarding auto`), then `nmcli connection reload`",
                f.path
            ),
        });
    }
    out
}

impl Diagnosis {
    /// The human report.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "fwdguard doctor: {}", self.root);
        if !self.current.is_empty() {
            let _ = writeln!(o, "\nCurrent values:");
            for k in &self.current {
                let _ = match (&k.value, k.state) {
                    (Some(v), State::Ok) => writeln!(o, "  ok     {} = {v}", k.key),
                    (Some(v), _) => writeln!(
                        o,
                        "  WRONG  {} = {v} (want {}; fix now: sysctl -w {}={}, or start fwdguard)",
                        k.key, k.want, k.key, k.want
                    ),
                    (None, _) => writeln!(
                        o,
                        "  ?      {}: {}",
                        k.key,
                        k.error.as_deref().unwrap_or("cannot be read")
                    ),
                };
            }
        }
        for p in &self.persisted {
            let _ = writeln!(
                o,
                "\nPersisted values of {} (want {}), per applier:",
                p.key, p.want
            );
            for a in &p.appliers {
                let note = a.note.map(|n| format!(" [{n}]")).unwrap_or_default();
                match &a.wins {
                    Some(s) => {
                        let _ = writeln!(o, "  {}{note}: {s}", a.applier);
                        for lost in &a.overridden {
                            let _ = writeln!(o, "      overrides {lost}");
                        }
                    }
                    None => {
                        let _ = writeln!(o, "  {}{note}: not set", a.applier);
                    }
                }
            }
        }
        if self.hazards.is_empty() {
            let _ = writeln!(o, "\nNo hazards found.");
        } else {
            let _ = writeln!(o, "\nHazards ({}):", self.hazards.len());
            for (i, h) in self.hazards.iter().enumerate() {
                let at = if h.evidence.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", h.evidence)
                };
                let _ = writeln!(o, "  {}. {at}{}", i + 1, h.what);
                let _ = writeln!(o, "     fix: {}", h.fix);
            }
        }
        if let Some(fix) = &self.sysctl_fix {
            let _ = writeln!(
                o,
                "\nSysctl files: {}",
                if fix.verified {
                    "after these changes every applier sets every guarded key right (checked)"
                } else {
                    "no change found that wins for every applier; edit the lines above by hand"
                }
            );
            for e in &fix.edits {
                let _ = writeln!(
                    o,
                    "  change {}:{}: `{}` -> `{}`",
                    e.file, e.line, e.old, e.new
                );
            }
            if let Some(d) = &fix.drop_in {
                let _ = writeln!(o, "  create {} containing:", d.path);
                for l in d.content.lines() {
                    let _ = writeln!(o, "    {l}");
                }
                let _ = writeln!(o, "  then apply it now: sysctl --system");
            }
        }
        if !self.unreadable.is_empty() {
            let _ = writeln!(o, "\nCould not read ({}):", self.unreadable.len());
            for u in &self.unreadable {
                let _ = writeln!(o, "  {u}");
            }
        }
        if !self.skipped_lines.is_empty() {
            let _ = writeln!(o, "\nLines the tools skip ({}):", self.skipped_lines.len());
            for p in &self.skipped_lines {
                let _ = writeln!(o, "  {}:{}: {}", p.file, p.line, p.message);
            }
        }
        let _ = writeln!(
            o,
            "\n{}",
            match self.exit_code() {
                EXIT_WRONG_NOW => "Result: a guarded key is wrong right now (exit 2)".to_owned(),
                EXIT_HAZARDS => format!("Result: {} hazard(s) (exit 1)", self.hazards.len()),
                _ => "Result: nothing wrong (exit 0)".to_owned(),
            }
        );
        o
    }

    /// One line for `fwdguard check`: the persisted conflicts and other hazards, if any.
    pub fn summary(&self) -> Option<String> {
        let first = self.hazards.first()?;
        let at = if first.evidence.is_empty() {
            String::new()
        } else {
            format!("{} ", first.evidence)
        };
        // The appliers are listed by doctor; one line keeps what and where.
        let what = first.what.split(" (by ").next().unwrap_or(&first.what);
        let more = match self.hazards.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        Some(format!(
            "{at}{what}{more}; `fwdguard doctor` explains and fixes"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::default()
    }

    #[test]
    fn drop_in_sorts_last() {
        let mut t = Tree::default();
        t.put("/etc/sysctl.d", "99-sysctl.conf", "");
        assert_eq!(drop_in_name(&t), "99-zz-fwdguard.conf");
        t.put("/usr/lib/sysctl.d", "zzz-hardening.conf", "");
        let name = drop_in_name(&t);
        assert!(name.as_str() > "zzz-hardening.conf", "{name}");
    }

    #[test]
    fn sysctl_conf_is_edited_drop_in_for_the_rest() {
        let mut t = Tree::default();
        t.put("/etc/sysctl.d", "60-cis.conf", "net.ipv4.ip_forward = 0\n");
        let guards = guards_of(&cfg());
        let fix = plan_fix(&t, &guards);
        assert!(fix.verified);
        assert!(fix.edits.is_empty(), "{fix:?}");
        assert_eq!(
            fix.drop_in.as_ref().map(|d| d.path.as_str()),
            Some("/etc/sysctl.d/99-zz-fwdguard.conf")
        );
        t.sysctl_conf = Some(FileState::Text {
            text: "# x\nnet.ipv4.ip_forward=0\n".into(),
            real: "/etc/sysctl.conf".into(),
        });
        let fix = plan_fix(&t, &guards);
        assert!(fix.verified);
        assert_eq!(fix.edits.len(), 1);
        assert_eq!(fix.edits[0].new, "net.ipv4.ip_forward = 1");
        assert!(fix.drop_in.is_some());
    }

    #[test]
    fn networkd_and_network_manager_lines() {
        let fams: BTreeSet<&str> = ["ipv4"].into();
        let f = TextFile {
            path: "/etc/systemd/network/10-eth0.network".into(),
            text: "[Match]\nName=eth0\n\n[Network]\nIPForward=no\n".into(),
        };
        let h = networkd(&f, &fams);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].evidence, "/etc/systemd/network/10-eth0.network:5");
        let f = TextFile {
            path: "/etc/NetworkManager/system-connections/a.nmconnection".into(),
            text: "[ipv4]\nmethod=auto\nforwarding=0\n[ipv6]\nforwarding=0\n".into(),
        };
        let h = network_manager(&f, &fams);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h[0].evidence.ends_with(":3"));
    }
}
