//! The rules of each tool that applies sysctl files, and what a guarded key ends up as.
//!
//! Pure: a [`Tree`] holds file contents and directory listings as data; [`resolve`] says, per
//! tool, which entry wins for a key and which entries it overrides. The rules were read from
//! the sources:
//! - systemd-sysctl (`src/sysctl/sysctl.c`, `sysctl.d(5)`): `/etc`, `/run`, `/usr/local/lib`,
//!   `/usr/lib` (and `/lib`) `sysctl.d/*.conf`; a file name in an earlier directory masks the
//!   same name in a later one (a symlink to `/dev/null` masks and sets nothing); all files
//!   sorted by name; an assignment replaces an earlier one of the same key (which moves to the
//!   end of the order); `-key` alone cancels it and excludes the key from globs; a glob skips
//!   every key that is assigned explicitly. `/etc/sysctl.conf` is read only through the
//!   `99-sysctl.conf` link distributions install.
//! - procps-ng 4.x `sysctl --system` (`src/sysctl.c` `PreloadSystem()`, since 4.0.0): the same
//!   directories and masking, then `/etc/sysctl.conf` last if it is a regular file. Every
//!   entry is written in order (no merging); a glob skips keys named anywhere in the files.
//! - procps-ng 3.3.10 `sysctl --system` (EL7): `/run/sysctl.d` comes *before* `/etc/sysctl.d`
//!   (so `/run` masks `/etc`), no globs, no `-` prefix, then `/etc/sysctl.conf`.
//! - `sysctl -p`: only `/etc/sysctl.conf`.
//! - EL7 initscripts `apply_sysctl` (`/etc/rc.d/init.d/functions`, run twice by `network
//!   start`): `/lib/systemd/systemd-sysctl` when it is executable, as on every EL7; otherwise
//!   `sysctl -e -p` per file: `/usr/lib`, then `/run`, then `/etc` `sysctl.d` (a regular file
//!   of the same name in a later directory skips an earlier one), then `/etc/sysctl.conf`.
//!
//! The kernel's side, as the daemon understands it: `net.ipv4.ip_forward` is
//! `net.ipv4.conf.all.forwarding`, and writing `conf.all.forwarding` of a family sets
//! `conf.default.forwarding` and every interface's too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::parse::{self, Dialect, Entry, Problem};
use crate::key::SysctlKey;
use crate::value::Value;

/// The sysctl.d directories, in systemd's order of precedence.
pub const SYSCTL_D: [&str; 5] = [
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
];
pub const SYSCTL_CONF: &str = "/etc/sysctl.conf";
/// What EL7 initscripts test for before running systemd-sysctl.
pub const SYSTEMD_SYSCTL: &str = "/lib/systemd/systemd-sysctl";

/// A file as the scanner found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Its text; `real` is the file it resolves to (differs for a symlink such as
    /// `/etc/sysctl.d/99-sysctl.conf -> ../sysctl.conf`).
    Text { text: String, real: String },
    /// A symlink to `/dev/null`: masks a file of the same name and sets nothing.
    Masked,
    /// Not used (not a regular file, unreadable, binary, too big); the scanner said why.
    Skipped,
}

/// The persisted settings of a host or image, as data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// A sysctl.d directory (path as on the target) to its `*.conf` files by name.
    pub dirs: BTreeMap<String, BTreeMap<String, FileState>>,
    /// `/etc/sysctl.conf`, if it exists.
    pub sysctl_conf: Option<FileState>,
    /// `/lib/systemd/systemd-sysctl` is executable (EL7 `apply_sysctl` then runs it).
    pub systemd_sysctl: bool,
}

impl Tree {
    /// Adds or replaces a file (a suggested drop-in, or a fixture).
    pub fn put(&mut self, dir: &str, name: &str, text: &str) {
        self.dirs.entry(dir.to_owned()).or_default().insert(
            name.to_owned(),
            FileState::Text {
                text: text.to_owned(),
                real: format!("{dir}/{name}"),
            },
        );
    }

    /// Every file in the tree: each sysctl.d directory's, then `/etc/sysctl.conf`.
    pub fn files(&self) -> impl Iterator<Item = &FileState> {
        let dirs = self.dirs.values().flat_map(|d| d.values());
        dirs.chain(self.sysctl_conf.as_ref())
    }

    fn files_mut(&mut self) -> impl Iterator<Item = &mut FileState> {
        let dirs = self.dirs.values_mut().flat_map(|d| d.values_mut());
        dirs.chain(self.sysctl_conf.as_mut())
    }

    /// Replaces line `line` (1-based) of the file whose real path is `real`, wherever it is
    /// listed (it may be both `/etc/sysctl.conf` and the `99-sysctl.conf` link).
    pub fn edit_line(&mut self, real: &str, line: u32, new: &str) {
        for state in self.files_mut() {
            if let FileState::Text { text, real: r } = state
                && r == real
            {
                let mut lines: Vec<&str> = text.split('\n').collect();
                if let Some(l) = lines.get_mut(line as usize - 1) {
                    *l = new;
                }
                *text = lines.join("\n");
            }
        }
    }

    /// Every file name in every sysctl.d directory.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.dirs
            .values()
            .flat_map(|d| d.keys().map(String::as_str))
    }
}

/// A tool that applies sysctl files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Applier {
    SystemdSysctl,
    SysctlSystem4,
    SysctlSystem3,
    SysctlP4,
    SysctlP3,
    Initscripts,
}

impl Applier {
    pub const ALL: [Applier; 6] = [
        Applier::SystemdSysctl,
        Applier::SysctlSystem4,
        Applier::SysctlSystem3,
        Applier::SysctlP4,
        Applier::SysctlP3,
        Applier::Initscripts,
    ];

    /// A stable identifier (JSON, fixtures).
    pub fn id(self) -> &'static str {
        match self {
            Applier::SystemdSysctl => "systemd-sysctl",
            Applier::SysctlSystem4 => "sysctl-system4",
            Applier::SysctlSystem3 => "sysctl-system3",
            Applier::SysctlP4 => "sysctl-p4",
            Applier::SysctlP3 => "sysctl-p3",
            Applier::Initscripts => "initscripts",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Applier::SystemdSysctl => "systemd-sysctl",
            Applier::SysctlSystem4 => "sysctl --system (procps-ng 4)",
            Applier::SysctlSystem3 => "sysctl --system (procps-ng 3.3.10, EL7)",
            Applier::SysctlP4 => "sysctl -p (procps-ng 4)",
            Applier::SysctlP3 => "sysctl -p (procps-ng 3.3.10, EL7)",
            Applier::Initscripts => "EL7 initscripts apply_sysctl",
        }
    }

    /// When it runs.
    pub fn when(self) -> &'static str {
        match self {
            Applier::SystemdSysctl => {
                "at boot, when systemd-sysctl.service restarts, and for an interface's own keys when it appears"
            }
            Applier::SysctlSystem4 | Applier::SysctlSystem3 => {
                "when an administrator or a script runs it"
            }
            Applier::SysctlP4 | Applier::SysctlP3 => "when an administrator or a script runs it",
            Applier::Initscripts => "at every `network start` and `systemctl restart network`",
        }
    }
}

impl Serialize for Applier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

impl fmt::Display for Applier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where an entry is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Source {
    /// The file that holds the line (a symlink's target).
    pub file: String,
    pub line: u32,
    /// The name it was read under, when that differs (`/etc/sysctl.d/99-sysctl.conf`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl Source {
    /// The same line of the same file, whatever name it was read under.
    pub fn same_line(&self, other: &Source) -> bool {
        self.file == other.file && self.line == other.line
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// How an entry reaches the guarded key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum How {
    /// It names the key.
    Key,
    /// It names the other spelling of the same knob (`net.ipv4.ip_forward`).
    Alias { written: String },
    /// It sets `conf.all.forwarding`, which sets every interface and `default` too.
    AllInterfaces { written: String },
    /// A glob that matches the key (or its `all`).
    Glob { pattern: String },
}

/// One entry that sets the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub value: String,
    pub at: Source,
    pub how: How,
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} from {}", self.value, self.at)?;
        if let Some(via) = &self.at.via {
            write!(f, " (via {via})")?;
        }
        match &self.how {
            How::Key => Ok(()),
            How::Alias { written } => write!(f, " (as {written})"),
            How::AllInterfaces { written } => {
                write!(f, " ({written} sets every interface)")
            }
            How::Glob { pattern } => write!(f, " (glob {pattern})"),
        }
    }
}

/// What one tool sets a key to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub applier: Applier,
    /// The entry that wins: the value the key has after the tool ran. `None`: it leaves the
    /// key alone.
    pub wins: Option<Setting>,
    /// Entries that set the key too and lose, in the order read.
    pub overridden: Vec<Setting>,
    /// EL7 initscripts running systemd-sysctl, for instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

/// A line a tool complains about, with its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileProblem {
    pub file: String,
    pub line: u32,
    pub message: String,
}

/// An entry of a file in the order a tool reads it.
#[derive(Debug, Clone)]
struct Item {
    entry: Entry,
    at: Source,
}

fn items(state: &FileState, listed: &str, dialect: Dialect) -> Vec<Item> {
    let FileState::Text { text, real } = state else {
        return Vec::new();
    };
    let via = (real != listed).then(|| listed.to_owned());
    parse::parse(text, dialect)
        .0
        .into_iter()
        .map(|entry| Item {
            at: Source {
                file: real.clone(),
                line: entry.line,
                via: via.clone(),
            },
            entry,
        })
        .collect()
}

/// Files of `dirs` (in precedence order), the first of each name kept, sorted by name.
fn conf_files<'t>(
    tree: &'t Tree,
    dirs: &[&str],
    skip_hidden: bool,
) -> Vec<(String, &'t FileState)> {
    let mut by_name: BTreeMap<&str, (String, &FileState)> = BTreeMap::new();
    for dir in dirs {
        let Some(files) = tree.dirs.get(*dir) else {
            continue;
        };
        for (name, state) in files {
            if skip_hidden && name.starts_with('.') {
                continue;
            }
            by_name
                .entry(name.as_str())
                .or_insert_with(|| (format!("{dir}/{name}"), state));
        }
    }
    by_name.into_values().collect()
}

const PROCPS4_DIRS: [&str; 5] = SYSCTL_D;
const PROCPS3_DIRS: [&str; 5] = [
    "/run/sysctl.d",
    "/etc/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
];

/// The entries a tool reads, in order, and how it merges them.
fn read(tree: &Tree, applier: Applier) -> (Vec<Item>, Merge) {
    let conf = |dialect| {
        tree.sysctl_conf
            .as_ref()
            .map(|s| items(s, SYSCTL_CONF, dialect))
            .unwrap_or_default()
    };
    let dirs = |dirs: &[&str], dialect, skip_hidden| -> Vec<Item> {
        conf_files(tree, dirs, skip_hidden)
            .into_iter()
            .flat_map(|(path, state)| items(state, &path, dialect))
            .collect()
    };
    match applier {
        Applier::SystemdSysctl => (dirs(&SYSCTL_D, Dialect::Systemd, true), Merge::Systemd),
        Applier::SysctlSystem4 => {
            let mut v = dirs(&PROCPS4_DIRS, Dialect::Procps4, false);
            v.extend(conf(Dialect::Procps4));
            (v, Merge::Procps)
        }
        Applier::SysctlSystem3 => {
            let mut v = dirs(&PROCPS3_DIRS, Dialect::Procps3, false);
            v.extend(conf(Dialect::Procps3));
            (v, Merge::Procps)
        }
        Applier::SysctlP4 => (conf(Dialect::Procps4), Merge::Procps),
        Applier::SysctlP3 => (conf(Dialect::Procps3), Merge::Procps),
        Applier::Initscripts if tree.systemd_sysctl => {
            (dirs(&SYSCTL_D, Dialect::Systemd, true), Merge::Systemd)
        }
        Applier::Initscripts => {
            // One `sysctl -e -p FILE` per file, directory by directory (shell glob order).
            let is_text = |dir: &str, name: &str| {
                tree.dirs
                    .get(dir)
                    .and_then(|d| d.get(name))
                    .is_some_and(|s| matches!(s, FileState::Text { .. }))
            };
            let mut v = Vec::new();
            let order: [(&str, &[&str]); 3] = [
                ("/usr/lib/sysctl.d", &["/run/sysctl.d", "/etc/sysctl.d"]),
                ("/run/sysctl.d", &["/etc/sysctl.d"]),
                ("/etc/sysctl.d", &[]),
            ];
            for (dir, later) in order {
                for (name, state) in tree.dirs.get(dir).into_iter().flatten() {
                    // The shell's `*` skips dot files; a regular file of the same name in a
                    // later directory wins.
                    if name.starts_with('.') || later.iter().any(|l| is_text(l, name)) {
                        continue;
                    }
                    v.extend(items(state, &format!("{dir}/{name}"), Dialect::Procps3));
                }
            }
            v.extend(conf(Dialect::Procps3));
            (v, Merge::Procps)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merge {
    /// systemd: an ordered map by key; a different value replaces (and moves to the end).
    Systemd,
    /// procps: every entry is written in order.
    Procps,
}

/// A write that reaches the kernel, in order.
struct Write<'a> {
    item: &'a Item,
    value: &'a str,
}

/// The writes a tool makes, and the keys its globs skip.
fn writes(items: &[Item], merge: Merge) -> (Vec<Write<'_>>, BTreeSet<Vec<String>>) {
    let kept: Vec<&Item> = match merge {
        Merge::Procps => items.iter().collect(),
        Merge::Systemd => {
            let mut map: Vec<&Item> = Vec::new();
            for item in items {
                if let Some(pos) = map.iter().position(|m| m.entry.path == item.entry.path) {
                    if map[pos].entry.value == item.entry.value {
                        continue;
                    }
                    map.remove(pos);
                }
                map.push(item);
            }
            map
        }
    };
    let named = kept.iter().map(|i| i.entry.path.clone()).collect();
    let w = kept
        .into_iter()
        .filter_map(|item| {
            item.entry
                .value
                .as_deref()
                .map(|value| Write { item, value })
        })
        .collect();
    (w, named)
}

/// The paths whose writes set `key`, and how.
fn targets(key: &SysctlKey) -> Vec<(Vec<String>, How)> {
    let own: Vec<String> = key
        .proc_path()
        .strip_prefix("/proc/sys")
        .map(|p| p.iter().map(|c| c.to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let mut t = vec![(own.clone(), How::Key)];
    let parts: Vec<&str> = own.iter().map(String::as_str).collect();
    if let [
        "net",
        family @ ("ipv4" | "ipv6"),
        "conf",
        device,
        "forwarding",
    ] = parts[..]
    {
        let all = ["net", family, "conf", "all", "forwarding"].map(str::to_owned);
        let ip_forward = ["net", "ipv4", "ip_forward"].map(str::to_owned).to_vec();
        if device == "all" {
            if family == "ipv4" {
                t.push((
                    ip_forward,
                    How::Alias {
                        written: "net.ipv4.ip_forward".into(),
                    },
                ));
            }
        } else {
            t.push((
                all.to_vec(),
                How::AllInterfaces {
                    written: format!("net.{family}.conf.all.forwarding"),
                },
            ));
            if family == "ipv4" {
                t.push((
                    ip_forward,
                    How::AllInterfaces {
                        written: "net.ipv4.ip_forward".into(),
                    },
                ));
            }
        }
    }
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

/// glob(7) on one path component: `*`, `?`, `[...]` with `!`/`^` and ranges.
fn component_matches(pat: &[char], s: &[char]) -> bool {
    match pat.split_first() {
        None => s.is_empty(),
        Some(('*', rest)) => (0..=s.len()).any(|i| component_matches(rest, &s[i..])),
        Some(('?', rest)) => !s.is_empty() && component_matches(rest, &s[1..]),
        Some(('[', rest)) => {
            let Some((&c, s_rest)) = s.split_first() else {
                return false;
            };
            let (negate, body) = match rest.first() {
                Some('!' | '^') => (true, &rest[1..]),
                _ => (false, rest),
            };
            // `]` right after `[` is a member; find the closing one.
            let Some(end) = body.iter().skip(1).position(|&x| x == ']').map(|p| p + 1) else {
                // No closing bracket: a literal `[`.
                return c == '[' && component_matches(rest, s_rest);
            };
            let set = &body[..end];
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == '-' {
                    hit |= set[i] <= c && c <= set[i + 2];
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            hit != negate && component_matches(&body[end + 1..], s_rest)
        }
        Some((&p, rest)) => s.first() == Some(&p) && component_matches(rest, &s[1..]),
    }
}

fn glob_matches(pattern: &[String], path: &[String]) -> bool {
    pattern.len() == path.len()
        && pattern.iter().zip(path).all(|(p, s)| {
            let p: Vec<char> = p.chars().collect();
            let s: Vec<char> = s.chars().collect();
            component_matches(&p, &s)
        })
}

/// The settings among `items` that reach `key`, in order, with exclusions applied when
/// `skip` is given (the keys globs leave alone).
fn settings<'a>(
    writes: impl Iterator<Item = (&'a Item, &'a str)>,
    key_targets: &[(Vec<String>, How)],
    skip: Option<&BTreeSet<Vec<String>>>,
) -> Vec<Setting> {
    let mut out = Vec::new();
    for (item, value) in writes {
        let e = &item.entry;
        for (path, how) in key_targets {
            let how = if e.glob {
                let excluded = skip.is_some_and(|s| s.contains(path));
                if excluded || !glob_matches(&e.path, path) {
                    continue;
                }
                How::Glob {
                    pattern: e.key.clone(),
                }
            } else if &e.path == path {
                how.clone()
            } else {
                continue;
            };
            out.push(Setting {
                value: Value::new(value).to_string(),
                at: item.at.clone(),
                how,
            });
        }
    }
    out
}

/// What every tool sets `key` to.
pub fn resolve(tree: &Tree, key: &SysctlKey) -> Vec<Applied> {
    let key_targets = targets(key);
    Applier::ALL
        .iter()
        .map(|&applier| {
            let (items, merge) = read(tree, applier);
            let (w, skip) = writes(&items, merge);
            let effective = settings(
                w.iter().map(|w| (w.item, w.value)),
                &key_targets,
                Some(&skip),
            );
            let wins = effective.last().cloned();
            // Everything in the files that would set the key, whether merged away, excluded
            // or simply written earlier: the entries the winner overrides.
            let all = settings(
                items
                    .iter()
                    .filter_map(|i| i.entry.value.as_deref().map(|v| (i, v))),
                &key_targets,
                None,
            );
            let overridden = all
                .into_iter()
                .filter(|s| wins.as_ref().is_none_or(|w| !w.at.same_line(&s.at)))
                .collect();
            let note = (applier == Applier::Initscripts).then_some(if tree.systemd_sysctl {
                "runs /lib/systemd/systemd-sysctl"
            } else {
                "no systemd-sysctl: sysctl -e -p per file"
            });
            Applied {
                applier,
                wins,
                overridden,
                note,
            }
        })
        .collect()
}

/// Lines systemd-sysctl and procps would warn about, in every file that is read.
pub fn problems(tree: &Tree) -> Vec<FileProblem> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for state in tree.files() {
        if let FileState::Text { text, real } = state
            && seen.insert(real.clone())
        {
            let (_, problems) = parse::parse(text, Dialect::Systemd);
            out.extend(
                problems
                    .into_iter()
                    .map(|Problem { line, message }| FileProblem {
                        file: real.clone(),
                        line,
                        message,
                    }),
            );
        }
    }
    out
}

/// A persisted value that conflicts with a guard: `applier` will set `key` to `setting`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub key: String,
    pub want: String,
    pub appliers: Vec<Applier>,
    pub setting: Setting,
}

impl Conflict {
    /// The sentence without the location: "will set K to 0 at the next ... (by A, B)".
    pub fn effect(&self) -> String {
        let names: Vec<&str> = self.appliers.iter().map(|a| a.name()).collect();
        format!(
            "will set {} to {} at the next network restart or boot (by {})",
            self.key,
            self.setting.value,
            names.join(", ")
        )
    }
}

impl fmt::Display for Conflict {
    /// "will set K to 0 at the next network restart or boot: /etc/sysctl.conf:3 (by ...)"
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.appliers.iter().map(|a| a.name()).collect();
        write!(
            f,
            "will set {} to {} at the next network restart or boot: {} (by {})",
            self.key,
            self.setting.value,
            self.setting.at,
            names.join(", ")
        )
    }
}

/// The conflicts of the persisted settings with the wanted values, one per winning entry.
pub fn conflicts(tree: &Tree, guards: &[(SysctlKey, Value)]) -> Vec<Conflict> {
    let mut out: Vec<Conflict> = Vec::new();
    for (key, want) in guards {
        for o in resolve(tree, key) {
            let Some(s) = o.wins else { continue };
            if Value::new(&s.value) == *want {
                continue;
            }
            match out.iter_mut().find(|c| {
                c.key == key.to_string()
                    && c.setting.value == s.value
                    && c.setting.at.same_line(&s.at)
            }) {
                Some(c) => c.appliers.push(o.applier),
                None => out.push(Conflict {
                    key: key.to_string(),
                    want: want.to_string(),
                    appliers: vec![o.applier],
                    setting: s,
                }),
            }
        }
    }
    out
}

/// The conflicts known so far, to report each once when it appears and once when it goes.
#[derive(Debug, Clone, Default)]
pub struct ConflictTracker {
    known: Vec<Conflict>,
}

impl ConflictTracker {
    /// Takes the conflicts found now; returns those that are new and those that went away.
    /// A conflict is the same while the same line sets the same key to the same value.
    pub fn update(&mut self, now: Vec<Conflict>) -> (Vec<Conflict>, Vec<Conflict>) {
        let same = |a: &Conflict, b: &Conflict| {
            a.key == b.key
                && a.setting.value == b.setting.value
                && a.setting.at.same_line(&b.setting.at)
        };
        let appeared: Vec<Conflict> = now
            .iter()
            .filter(|c| !self.known.iter().any(|k| same(k, c)))
            .cloned()
            .collect();
        let gone: Vec<Conflict> = self
            .known
            .iter()
            .filter(|k| !now.iter().any(|c| same(k, c)))
            .cloned()
            .collect();
        self.known = now;
        (appeared, gone)
    }
}

#[cfg(test)]
mod tracker_tests {
    use super::*;

    #[test]
    fn conflicts_are_reported_once_each_way() {
        let key = SysctlKey::parse("net.ipv4.ip_forward").expect("key");
        let guards = [(key, Value::new("1"))];
        let mut t = Tree::default();
        let mut tracker = ConflictTracker::default();
        assert_eq!(tracker.update(conflicts(&t, &guards)), (vec![], vec![]));
        t.put("/etc/sysctl.d", "60-cis.conf", "net.ipv4.ip_forward = 0\n");
        let (new, gone) = tracker.update(conflicts(&t, &guards));
        assert_eq!((new.len(), gone.len()), (1, 0));
        assert_eq!(new[0].setting.at.to_string(), "/etc/sysctl.d/60-cis.conf:1");
        assert_eq!(tracker.update(conflicts(&t, &guards)), (vec![], vec![]));
        t.put("/etc/sysctl.d", "60-cis.conf", "net.ipv4.ip_forward = 1\n");
        let (new, gone) = tracker.update(conflicts(&t, &guards));
        assert_eq!((new.len(), gone.len()), (0, 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SysctlKey {
        SysctlKey::parse(s).expect("key")
    }

    fn wins(tree: &Tree, k: &str, applier: Applier) -> Option<(String, String)> {
        resolve(tree, &key(k))
            .into_iter()
            .find(|o| o.applier == applier)
            .and_then(|o| o.wins)
            .map(|s| (s.value, s.at.to_string()))
    }

    #[test]
    fn glob_components() {
        let m = |p: &str, s: &str| {
            component_matches(
                &p.chars().collect::<Vec<_>>(),
                &s.chars().collect::<Vec<_>>(),
            )
        };
        assert!(m("*", "all"));
        assert!(m("e*0", "eth0"));
        assert!(m("[a-e]ll", "all"));
        assert!(!m("[!a]ll", "all"));
        assert!(m("?ll", "all"));
        assert!(!m("eth?", "eth10"));
    }

    #[test]
    fn systemd_reassignment_moves_to_the_end() {
        // a.conf: ip_forward=0, conf.all=1, then ip_forward=... the alias decides by order.
        let mut t = Tree::default();
        t.put(
            "/etc/sysctl.d",
            "a.conf",
            "net.ipv4.ip_forward = 0\nnet.ipv4.conf.all.forwarding = 1\n",
        );
        t.put("/etc/sysctl.d", "b.conf", "net.ipv4.ip_forward = 1\n");
        t.put("/etc/sysctl.d", "c.conf", "net.ipv4.ip_forward = 0\n");
        // systemd: ip_forward's entry moves behind conf.all on each new value: 0 last.
        assert_eq!(
            wins(&t, "net.ipv4.conf.all.forwarding", Applier::SystemdSysctl),
            Some(("0".into(), "/etc/sysctl.d/c.conf:1".into()))
        );
    }

    #[test]
    fn writing_all_sets_every_interface() {
        let mut t = Tree::default();
        t.put(
            "/etc/sysctl.d",
            "50-x.conf",
            "net.ipv4.conf.eth0.forwarding = 1\nnet.ipv4.ip_forward = 0\n",
        );
        let o = resolve(&t, &key("net.ipv4.conf.eth0.forwarding"));
        let s = o[0].wins.as_ref().expect("set");
        assert_eq!(s.value, "0");
        assert!(matches!(s.how, How::AllInterfaces { .. }));
        assert_eq!(o[0].overridden.len(), 1);
    }
}
