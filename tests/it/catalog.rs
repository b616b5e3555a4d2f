//! The journal message catalog (`systemd/fwdguard.catalog`, what `journalctl -x` shows) and the
//! code agree: every `MESSAGE_ID` the code can log has exactly one entry, every entry belongs to
//! an id the code logs, and every `@FWDGUARD_*@` field an entry quotes is one the code sets.

use std::collections::BTreeSet;
use std::path::Path;

use fwdguard::report::Event;

const CATALOG: &str = include_str!("../../systemd/fwdguard.catalog");

/// `(id, entry text)` for each `-- ID` section of the catalog.
fn catalog_entries() -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in CATALOG.lines() {
        if let Some(id) = line.strip_prefix("-- ") {
            entries.push((id.trim().to_owned(), String::new()));
        } else if let Some((_, text)) = entries.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    entries
}

/// Every Rust source file under `src/` and `core/src/`.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                out.push((path.display().to_string(), text));
            }
        }
    }
    let mut out = Vec::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    walk(&root.join("src"), &mut out);
    walk(&root.join("core/src"), &mut out);
    out
}

/// String literals in `text` that are exactly `"..."` with content accepted by `pred`.
fn literals(text: &str, pred: impl Fn(&str) -> bool) -> Vec<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| pred(s))
        .map(str::to_owned)
        .collect()
}

fn is_message_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[test]
fn every_message_id_in_the_code_has_one_catalog_entry_and_back() {
    let entries = catalog_entries();
    let mut in_catalog = BTreeSet::new();
    for (id, text) in &entries {
        assert!(
            is_message_id(id),
            "catalog: {id:?} is not a 128-bit id in lower-case hex"
        );
        assert!(
            in_catalog.insert(id.clone()),
            "catalog: {id} has two entries"
        );
        assert!(
            text.lines().any(|l| l.starts_with("Subject: ")),
            "catalog: {id} has no Subject:"
        );
        assert!(
            text.lines().any(|l| l == "Defined-By: fwdguard"),
            "catalog: {id} has no Defined-By: fwdguard"
        );
    }

    // Any 32-hex-digit literal anywhere in the code counts as a MESSAGE_ID in use.
    let mut in_code = BTreeSet::new();
    for (_, text) in sources() {
        in_code.extend(literals(&text, is_message_id));
    }
    let ids: Vec<&str> = Event::ALL
        .iter()
        .filter_map(|e| e.info().message_id)
        .collect();
    let all: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
    assert_eq!(all.len(), ids.len(), "two kinds share a MESSAGE_ID");

    let missing: Vec<_> = in_code.difference(&in_catalog).collect();
    assert!(missing.is_empty(), "no catalog entry for {missing:?}");
    let stale: Vec<_> = in_catalog.difference(&in_code).collect();
    assert!(
        stale.is_empty(),
        "catalog entries for ids the code never logs: {stale:?}"
    );
    assert_eq!(
        all, in_code,
        "the kinds' MESSAGE_IDs (Event::info) are not every id in the code"
    );
}

#[test]
fn catalog_entries_quote_only_fields_the_code_sets() {
    let set: BTreeSet<String> = sources()
        .iter()
        .flat_map(|(_, text)| literals(text, |s| s.starts_with("FWDGUARD_")))
        .collect();
    for (id, text) in catalog_entries() {
        for field in text.split('@').skip(1).step_by(2) {
            assert!(
                set.contains(field),
                "catalog entry {id} quotes @{field}@, which no code sets (known: {set:?})"
            );
        }
    }
}
