//! The workspace's shape, checked by reading its sources (as rust-analyzer's tidy tests do):
//! ARCHITECTURE.md's invariants, stated as absences, fail here when code breaks them.
//!
//! The stand-alone fixtures outside the workspace are exempt on purpose: `foreign-plugin` names
//! abi_stable to fake a plugin of another SDK.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::workspace_root;

/// The workspace's member crates, from the root manifest: (folder, manifest text).
fn members() -> Vec<(String, String)> {
    let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    let list = manifest.split("members = [").nth(1).and_then(|rest| rest.split(']').next()).unwrap();
    list.split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .map(|m| {
            let text = std::fs::read_to_string(workspace_root().join(&m).join("Cargo.toml")).unwrap();
            (m, text)
        })
        .collect()
}

/// The names of the crates a manifest depends on (normal, dev and build dependencies; a
/// `[dependencies.foo]` table; a renamed dependency by the package it names).
fn dependencies(manifest: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_dependencies = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            let header = line.trim_matches(['[', ']']);
            in_dependencies = header.ends_with("dependencies");
            if let Some((table, name)) = header.rsplit_once('.')
                && table.ends_with("dependencies")
            {
                names.insert(name.to_owned());
            }
            continue;
        }
        if in_dependencies && let Some((name, value)) = line.split_once('=') {
            let name = name.trim();
            if !name.is_empty() && !name.starts_with('#') {
                names.insert(name.split('.').next().unwrap().to_owned());
            }
            if let Some(package) = value.split("package").nth(1).and_then(|rest| rest.split('"').nth(1)) {
                names.insert(package.to_owned());
            }
        }
    }
    names
}

/// Every `.rs` file of the crate in `dir` with its text: nested crates (a folder with its own
/// `Cargo.toml`) and this file, which names what it forbids, are not included.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") && !path.join("Cargo.toml").is_file() {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with(file!()) {
                let text = std::fs::read_to_string(&path).unwrap();
                files.push((path, text));
            }
        }
    }
    files.sort();
    files
}

/// Source text without its `#[cfg(test)]` modules (tests may reach further than the code).
fn without_tests(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

#[test]
fn plugins_never_import_the_host_the_store_or_the_record() {
    for (member, manifest) in members().iter().filter(|(m, _)| m.starts_with("plugins/") || m.starts_with("tests/")) {
        if member == "tests" {
            continue;
        }
        let forbidden: Vec<String> =
            dependencies(manifest).into_iter().filter(|d| ["host", "store", "record"].contains(&d.as_str())).collect();
        assert!(forbidden.is_empty(), "{member} depends on {forbidden:?}; plugins see only plugin-sdk");
    }
}

#[test]
fn only_plugin_sdk_names_abi_stable() {
    for (member, manifest) in members().iter().filter(|(m, _)| m != "plugin-sdk") {
        assert!(!dependencies(manifest).contains("abi_stable"), "{member}'s manifest depends on abi_stable");
        for (path, text) in sources(&workspace_root().join(member)) {
            for (number, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                assert!(!code.contains("abi_stable"), "{}:{}: names abi_stable: {line}", path.display(), number + 1);
            }
        }
    }
}

#[test]
fn only_the_store_crate_names_sql_or_a_database_driver() {
    let drivers = ["rusqlite", "postgres", "tokio-postgres", "sqlx", "diesel", "libsqlite3-sys"];
    // In code: a driver's paths, and SQL.
    let named_in_code = [
        "rusqlite::",
        "postgres::",
        "tokio_postgres",
        "sqlx::",
        "diesel::",
        "SELECT ",
        "INSERT INTO",
        "CREATE TABLE",
        "ALTER TABLE",
        "DROP TABLE",
        "DELETE FROM",
        "PRAGMA ",
    ];
    for (member, manifest) in members().iter().filter(|(m, _)| m != "store") {
        let named: Vec<String> = dependencies(manifest).into_iter().filter(|d| drivers.contains(&d.as_str())).collect();
        assert!(named.is_empty(), "{member} depends on {named:?}; only the store crate talks to a database");
        for (path, text) in sources(&workspace_root().join(member)) {
            for (number, line) in text.lines().enumerate() {
                let update = line.find("UPDATE ").is_some_and(|at| line[at..].contains(" SET "));
                let found = named_in_code.iter().find(|word| line.contains(*word));
                assert!(
                    found.is_none() && !update,
                    "{}:{}: names {:?}: {line}",
                    path.display(),
                    number + 1,
                    found.unwrap_or(&"UPDATE ... SET")
                );
            }
        }
    }
}

#[test]
fn commands_never_import_commands() {
    for (path, text) in sources(&workspace_root().join("host/src/commands")) {
        for (number, line) in without_tests(&text).lines().enumerate() {
            let imports = line.contains("crate::commands") || line.contains("super::");
            assert!(!imports, "{}:{}: a command imports another: {line}", path.display(), number + 1);
        }
    }
}

#[test]
fn the_record_and_the_store_import_nothing_above_them() {
    let manifests: BTreeMap<String, String> = members().into_iter().collect();
    let record = dependencies(&manifests["record"]);
    let allowed = ["plugin-sdk", "rand", "serde", "serde_json"];
    assert!(record.iter().all(|d| allowed.contains(&d.as_str())), "record depends on {record:?}; allowed: {allowed:?}");
    let store = dependencies(&manifests["store"]);
    for above in ["host", "bench"] {
        assert!(!store.contains(above), "the store depends on {above}");
    }
    for (path, text) in sources(&workspace_root().join("record/src")) {
        for forbidden in ["std::fs", "std::net", "std::process", "File::"] {
            assert!(!without_tests(&text).contains(forbidden), "{}: the record does I/O ({forbidden})", path.display());
        }
    }
}

/// Top-level modules of a crate's `src/` and the ones each imports through `crate::`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = std::fs::read_dir(src)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".rs").map(str::to_owned).unwrap_or(name.clone());
            (stem != "lib" && stem != "main").then_some(stem)
        })
        .collect();
    let mut graph = BTreeMap::new();
    for module in &modules {
        let file = src.join(format!("{module}.rs"));
        let files = if file.is_file() {
            vec![(file.clone(), std::fs::read_to_string(&file).unwrap())]
        } else {
            sources(&src.join(module))
        };
        let mut uses = BTreeSet::new();
        for (_, text) in files {
            let code = without_tests(&text);
            for (index, _) in code.match_indices("crate::") {
                let rest = &code[index + 7..];
                // `crate::name` or `crate::{a, b::c}`.
                let names: Vec<String> = match rest.strip_prefix('{') {
                    Some(group) => group
                        .split('}')
                        .next()
                        .unwrap_or_default()
                        .split(',')
                        .map(|item| item.trim().split("::").next().unwrap_or_default().to_owned())
                        .collect(),
                    None => vec![rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()],
                };
                uses.extend(names.into_iter().filter(|name| modules.contains(name) && name != module));
            }
        }
        graph.insert(module.clone(), uses);
    }
    graph
}

/// A cycle in `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let start = path.iter().position(|p| p == next).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(cycle) = visit(next, graph, state, path) {
                        return Some(cycle);
                    }
                }
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node)
            && let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn the_host_and_the_sdk_have_no_import_cycle() {
    for src in ["host/src", "plugin-sdk/src"] {
        let graph = module_graph(&workspace_root().join(src));
        assert!(graph.len() > 3, "{src}: {graph:?}");
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{src}: modules import each other in a circle: {}", cycle.join(" -> "));
        }
    }
    // The check itself finds a circle.
    let circle: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(x, y)| (x.to_owned(), BTreeSet::from([y.to_owned()])))
        .collect();
    assert_eq!(find_cycle(&circle).map(|c| c.join(" -> ")), Some("a -> b -> c -> a".to_owned()));
    // And the pipeline and the sweep driver never reach into the commands.
    let host = module_graph(&workspace_root().join("host/src"));
    for module in ["pipeline", "sweep", "storage", "recorded"] {
        assert!(!host[module].contains("commands"), "{module} imports the commands");
    }
}
