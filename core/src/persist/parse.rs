//! The lines of a sysctl configuration file, as each tool reads them.
//!
//! Checked against the sources: procps-ng 3.3.10 `sysctl.c` `Preload()` (EL7), procps-ng 4.0.x
//! `src/sysctl.c` `parse_setting_line()` (Debian 12 ships 4.0.2) and systemd's
//! `src/sysctl/sysctl.c` `parse_line()`.

/// Whose rules a file is read by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// procps-ng 3.3.10: `key = value` only. A leading `-` is part of the key and a glob is
    /// a literal name, so neither ever matches a real key.
    Procps3,
    /// procps-ng 4.x: `-key = value` ignores a failure, `-key` alone excludes the key from
    /// globs, keys may be globs.
    Procps4,
    /// systemd-sysctl: as procps 4.x, and `-key` alone also cancels an earlier assignment of
    /// exactly that key.
    Systemd,
}

/// One meaningful line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based.
    pub line: u32,
    /// The key as written (after the `-`), for messages.
    pub key: String,
    /// Path components below `/proc/sys` as the tool turns the key into a path; `ip_forward`
    /// is not folded into `conf/all/forwarding` here, since the tools do not do that either.
    pub path: Vec<String>,
    /// The key holds `*`, `?` or `[` and the tool expands it (not procps 3.3.10).
    pub glob: bool,
    /// `None`: an exclusion (`-key` without `=`).
    pub value: Option<String>,
    /// Written as `-key = value`.
    pub ignore_failure: bool,
}

/// A line the tool warns about and skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: u32,
    pub message: String,
}

/// `isspace()` in the C locale.
fn c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// A key as `sysctl(8)` and systemd turn it into a path: the first separator decides. In the
/// dotted form a `/` stands for a dot inside a component (`eth0/100` is `eth0.100`). Empty
/// components vanish, as doubled slashes do in a path lookup.
pub fn key_path(key: &str) -> Vec<String> {
    let slashed = key
        .find(['.', '/'])
        .is_some_and(|i| key.as_bytes()[i] == b'/');
    if slashed {
        key.split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        key.split('.')
            .filter(|c| !c.is_empty())
            .map(|c| c.replace('/', "."))
            .collect()
    }
}

pub fn is_glob(key: &str) -> bool {
    key.contains(['*', '?', '['])
}

/// Parses a whole file. Lines may end in CRLF.
pub fn parse(text: &str, dialect: Dialect) -> (Vec<Entry>, Vec<Problem>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let result = match dialect {
            Dialect::Procps3 => procps3_line(raw),
            Dialect::Procps4 | Dialect::Systemd => modern_line(raw, dialect),
        };
        match result {
            Ok(Some((key, value, ignore_failure))) => {
                let key = key.to_owned();
                let glob = dialect != Dialect::Procps3 && is_glob(&key);
                let path = key_path(&key);
                if path.is_empty() {
                    problems.push(Problem {
                        line,
                        message: format!("`{}` is not a sysctl key", raw.trim()),
                    });
                    continue;
                }
                entries.push(Entry {
                    line,
                    key,
                    path,
                    glob,
                    value: value.map(str::to_owned),
                    ignore_failure,
                });
            }
            Ok(None) => {}
            Err(message) => problems.push(Problem { line, message }),
        }
    }
    (entries, problems)
}

type Parsed<'a> = Result<Option<(&'a str, Option<&'a str>, bool)>, String>;

/// procps-ng 3.3.10 `Preload()`: strip the line, skip short lines and comments, split at the
/// first `=` (strtok: leading `=` are skipped), value up to CR/LF with leading blanks removed.
fn procps3_line(raw: &str) -> Parsed<'_> {
    let t = raw.trim_matches(c_space);
    if t.len() < 2 || t.starts_with(['#', ';']) {
        return Ok(None);
    }
    let t = t.trim_start_matches('=');
    let Some((name, value)) = t.split_once('=') else {
        return Err(format!("`{t}`: invalid syntax (no `=`), skipped"));
    };
    let name = name.trim_matches(c_space);
    let value = value
        .split(['\r', '\n'])
        .next()
        .unwrap_or_default()
        .trim_start_matches([' ', '\t']);
    if name.is_empty() || value.is_empty() {
        return Err(format!(
            "`{t}`: invalid syntax (empty key or value), skipped"
        ));
    }
    Ok(Some((name, Some(value), false)))
}

/// procps-ng 4.x `parse_setting_line()` and systemd `parse_line()`.
fn modern_line(raw: &str, dialect: Dialect) -> Parsed<'_> {
    let t = raw.trim_start_matches(c_space);
    if t.trim_end_matches(c_space).is_empty() || t.starts_with(['#', ';']) {
        return Ok(None);
    }
    // procps skips lines shorter than 2 characters, newline included.
    if dialect == Dialect::Procps4 && t.len() < 2 {
        return Ok(None);
    }
    match t.split_once('=') {
        None => match t.strip_prefix('-') {
            Some(key) => Ok(Some((key.trim_matches(c_space), None, false))),
            None => Err(format!(
                "`{}`: not an assignment, skipped",
                t.trim_end_matches(c_space)
            )),
        },
        Some((key, value)) => {
            let (key, ignore) = match key.strip_prefix('-') {
                Some(k) => (k, true),
                None => (key, false),
            };
            let key = key.trim_matches(c_space);
            if key.is_empty() {
                return Err(format!(
                    "`{}`: empty key, skipped",
                    t.trim_end_matches(c_space)
                ));
            }
            Ok(Some((key, Some(value.trim_matches(c_space)), ignore)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str, d: Dialect) -> Option<Entry> {
        let (e, _) = parse(line, d);
        e.into_iter().next()
    }

    #[test]
    fn comments_blank_lines_and_whitespace() {
        let text = "# comment\n; also\n\n   \n\t net.ipv4.ip_forward\t=  0 \r\n";
        for d in [Dialect::Procps3, Dialect::Procps4, Dialect::Systemd] {
            let (e, p) = parse(text, d);
            assert!(p.is_empty(), "{d:?}: {p:?}");
            assert_eq!(e.len(), 1, "{d:?}");
            assert_eq!(e[0].line, 5);
            assert_eq!(e[0].path, ["net", "ipv4", "ip_forward"]);
            assert_eq!(e[0].value.as_deref(), Some("0"), "{d:?}");
        }
    }

    #[test]
    fn dots_and_slashes() {
        assert_eq!(
            key_path("net.ipv4.conf.eth0/100.forwarding"),
            ["net", "ipv4", "conf", "eth0.100", "forwarding"]
        );
        assert_eq!(
            key_path("net/ipv4/conf/eth0.100/forwarding"),
            ["net", "ipv4", "conf", "eth0.100", "forwarding"]
        );
    }

    #[test]
    fn dash_prefix_by_dialect() {
        let e = one("-net.ipv4.ip_forward = 0", Dialect::Systemd).expect("entry");
        assert!(e.ignore_failure);
        assert_eq!(e.path, ["net", "ipv4", "ip_forward"]);
        let e = one("-net.ipv4.conf.all.forwarding", Dialect::Procps4).expect("entry");
        assert_eq!(e.value, None);
        // procps 3.3.10 takes the dash as part of the name: a key that does not exist.
        let e = one("-net.ipv4.ip_forward = 0", Dialect::Procps3).expect("entry");
        assert_eq!(e.path[0], "-net");
        let (e, p) = parse("-net.ipv4.ip_forward\n", Dialect::Procps3);
        assert!(e.is_empty());
        assert_eq!(p[0].line, 1);
    }

    #[test]
    fn globs_only_where_expanded() {
        assert!(
            one("net.ipv4.conf.*.forwarding=0", Dialect::Systemd)
                .expect("e")
                .glob
        );
        assert!(
            !one("net.ipv4.conf.*.forwarding=0", Dialect::Procps3)
                .expect("e")
                .glob
        );
    }

    #[test]
    fn malformed_lines_are_problems_with_line_numbers() {
        let (e, p) = parse(
            "net.ipv4.ip_forward = 1\njunk here\n= 1\n",
            Dialect::Systemd,
        );
        assert_eq!(e.len(), 1);
        assert_eq!(p.iter().map(|p| p.line).collect::<Vec<_>>(), [2, 3]);
        assert!(p[0].message.contains("not an assignment"), "{p:?}");
    }
}
