//! The design, checked: the crate layout must not drift back into import circles, and the core
//! must stay free of I/O crates. These read the source tree, so a new `use` that closes a circle
//! fails here with the circle named, not in a review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Crates that do I/O or need `unsafe` glue: the core crate must not depend on any of them.
const NOT_IN_CORE: [&str; 10] = [
    "tokio",
    "libc",
    "nix",
    "zbus",
    "hyper",
    "rustls",
    "netlink-sys",
    "sd-notify",
    "prometheus-client",
    "inotify",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file below `dir`, with the top-level module it belongs to (`source` for
/// `src/source/netlink.rs`, `config` for `src/config.rs`).
fn files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read source dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(dir).expect("below dir");
                let first = rel.components().next().expect("a component");
                let module = Path::new(first.as_os_str())
                    .file_stem()
                    .expect("a name")
                    .to_string_lossy()
                    .into_owned();
                out.push((module, path));
            }
        }
    }
    out
}

/// The top-level modules each module names with `crate::` (outside its tests and comments).
fn imports(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in files(dir) {
        if ["lib", "main"].contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        // Tests may reach anywhere; the design is about the code they test.
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let deps = graph.entry(module.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::C}`: the first segment of each item.
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                inner.split(',').map(|item| item.trim()).collect()
            } else {
                vec![rest]
            };
            for name in names {
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module && name != "self" {
                    deps.insert(name);
                }
            }
        }
    }
    graph
}

/// A circle of imports, if there is one: the modules in order, the first repeated at the end.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut c = path[at..].to_vec();
            c.push(node.to_owned());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

/// The modules under `dir` (one of them `module`, so that the graph is known to be read)
/// import each other without a circle.
fn assert_no_import_circle(dir: &str, module: &str) {
    let graph = imports(&root().join(dir));
    assert!(graph.contains_key(module), "{graph:?}");
    if let Some(c) = circle(&graph) {
        panic!("import circle in {dir}: {}", c.join(" -> "));
    }
}

#[test]
fn the_core_has_no_import_circle() {
    assert_no_import_circle("core/src", "policy");
}

#[test]
fn the_binary_has_no_import_circle() {
    assert_no_import_circle("src", "daemon");
}

#[test]
fn sources_do_not_reach_up_into_the_daemon_or_the_commands() {
    let graph = imports(&root().join("src"));
    let source = &graph["source"];
    for above in ["daemon", "commands", "cli"] {
        assert!(!source.contains(above), "src/source imports crate::{above}");
    }
}

#[test]
fn the_core_depends_on_no_io_crate() {
    let manifest = std::fs::read_to_string(root().join("core/Cargo.toml")).expect("core manifest");
    let manifest: toml::Table = manifest.parse().expect("core/Cargo.toml is TOML");
    for table in ["dependencies", "build-dependencies"] {
        let Some(deps) = manifest.get(table).and_then(|d| d.as_table()) else {
            continue;
        };
        for name in deps.keys() {
            assert!(
                !NOT_IN_CORE.contains(&name.as_str()),
                "core/Cargo.toml [{table}] names {name}: I/O belongs in the fwdguard package"
            );
        }
    }
    let lib = std::fs::read_to_string(root().join("core/src/lib.rs")).expect("core lib.rs");
    assert!(lib.contains("#![forbid(unsafe_code)]"));
}

#[test]
fn the_circle_finder_finds_circles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &[][..]),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_owned(), d.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert_eq!(
        circle(&graph).expect("a circle").join(" -> "),
        "a -> b -> c -> a"
    );
}
