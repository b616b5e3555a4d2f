//! The persisted-settings resolver against a table of fixture trees (tests/fixtures/persist).
//! Each case has a `root/` as found on a host and an `expect` file:
//!
//! ```text
//! key net.ipv4.conf.all.forwarding        the key the following lines are about
//! systemd-sysctl 0 /etc/sysctl.conf:2     applier, winning value, FILE:LINE
//! sysctl-p4 -                             the applier leaves the key alone
//! overrides systemd-sysctl A:1 B:2        exactly the entries the winner overrides
//! ```

use std::path::Path;

use fwdguard::key::SysctlKey;
use fwdguard::persist::resolve::{Applied, resolve};
use fwdguard::persist::scan::{Root, scan};

fn check_case(dir: &Path) -> Vec<String> {
    let (tree, _) = scan(&Root::new(&dir.join("root")));
    let expect = std::fs::read_to_string(dir.join("expect")).expect("expect file");
    let mut failures = Vec::new();
    let mut outcomes: Vec<Applied> = Vec::new();
    let mut key = String::new();
    for (n, line) in expect.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = format!("{}/expect:{}", dir.display(), n + 1);
        let find = |id: &str| outcomes.iter().find(|o| o.applier.id() == id).cloned();
        match words[..] {
            ["key", k] => {
                key = k.to_owned();
                outcomes = resolve(&tree, &SysctlKey::parse(k).expect("key"));
            }
            ["overrides", id, ref locs @ ..] => {
                let o = find(id).unwrap_or_else(|| panic!("{at}: unknown applier {id}"));
                let got: Vec<String> = o.overridden.iter().map(|s| s.at.to_string()).collect();
                if got != locs {
                    failures.push(format!("{at}: {key} {id} overrides {got:?}, want {locs:?}"));
                }
            }
            [id, "-"] => {
                let o = find(id).unwrap_or_else(|| panic!("{at}: unknown applier {id}"));
                if let Some(w) = o.wins {
                    failures.push(format!("{at}: {key} {id} sets {w}, want nothing"));
                }
            }
            [id, value, loc] => {
                let o = find(id).unwrap_or_else(|| panic!("{at}: unknown applier {id}"));
                match o.wins {
                    Some(w) if w.value == value && w.at.to_string() == loc => {}
                    Some(w) => failures.push(format!(
                        "{at}: {key} {id} sets {} from {}, want {value} from {loc}",
                        w.value, w.at
                    )),
                    None => failures.push(format!(
                        "{at}: {key} {id} sets nothing, want {value} from {loc}"
                    )),
                }
            }
            _ => panic!("{at}: cannot read `{line}`"),
        }
    }
    failures
}

#[test]
fn resolver_fixture_table() {
    let base = crate::common::fixture("persist");
    let mut cases: Vec<_> = std::fs::read_dir(&base)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 14, "fixture cases missing: {cases:?}");
    let failures: Vec<String> = cases.iter().flat_map(|c| check_case(c)).collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
