//! The layering of `engine/src` (see the repository's ARCHITECTURE notes):
//! the byte layer (`format`, `log`) imports nothing above it, the
//! algorithms (`graph`) import no file layer, and no two top-level modules
//! import each other, directly or through others.
//!
//! Reads the sources as text: every `crate::name` path (in `use` lines or
//! inline, `use crate::{a, b}` groups included) outside comments counts as
//! an import of top-level module `name`. `STRATA_SRC_DIR` points the check
//! at another tree (e.g. an older checkout) instead of this crate's `src/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules each layer must not import, and why.
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "format",
        &[
            "graph", "live", "api", "log", "dir", "generation", "builder", "io", "quant",
        ],
        "format is pure bytes <-> typed views: it may use only leaves (error, limits, metric, quantization, ...)",
    ),
    (
        "log",
        &["graph", "live", "api", "dir", "generation", "builder", "io"],
        "log is record framing, replay and the appender: it may use only format and leaves",
    ),
    (
        "graph",
        &["format", "live", "api", "log", "dir", "generation", "builder"],
        "graph is the HNSW algorithm over an Adjacency trait: it knows no files or formats",
    ),
    (
        "dir",
        &["graph", "live", "api", "generation", "builder"],
        "dir owns the index directory: it knows no search and no index type",
    ),
];

fn src_dir() -> PathBuf {
    match std::env::var_os("STRATA_SRC_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
    }
}

/// Every `.rs` file under `dir`, with its path relative to `root`.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root).expect("under root");
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            out.push((rel.to_string_lossy().replace('\\', "/"), text));
        }
    }
}

/// The top-level module a file belongs to (`format/layout.rs` -> `format`),
/// `None` for the crate root.
fn module_of(rel: &str) -> Option<String> {
    let first = rel.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// `text` without `//` comments (doc comments included) and string
/// literals' contents, so prose naming a module is not an import.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = '\0';
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if in_str {
                if c == '"' && prev != '\\' {
                    in_str = false;
                    out.push('"');
                }
                prev = if prev == '\\' && c == '\\' { '\0' } else { c };
                continue;
            }
            if c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if c == '"' {
                in_str = true;
                prev = '\0';
            }
            out.push(c);
        }
        out.push('\n');
    }
    out
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The top-level modules a file's code imports through `crate::`.
fn imports(text: &str) -> BTreeSet<String> {
    let code = code_only(text);
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // `foo_crate::`, not this crate
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::x, b, c::{..}}`: the first segment of each item.
            let mut depth = 0usize;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                        found.insert(ident_at(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// Layering violations of the tree at `root`: one message per offending
/// import (file, module imported, rule).
fn rule_violations(files: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (rel, text) in files {
        let Some(module) = module_of(rel) else {
            continue;
        };
        for (layer, forbidden, why) in RULES {
            if module != *layer {
                continue;
            }
            for imported in imports(text) {
                if forbidden.contains(&imported.as_str()) {
                    out.push(format!("engine/src/{rel} imports crate::{imported}: {why}"));
                }
            }
        }
    }
    out
}

/// The top-level module graph: module -> modules it imports.
fn module_graph(files: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in files {
        let Some(module) = module_of(rel) else {
            continue;
        };
        let deps = graph.entry(module.clone()).or_default();
        for imported in imports(text) {
            if imported != module {
                deps.insert(imported);
            }
        }
    }
    graph
}

/// One cycle of `graph`, as a path `a -> b -> ... -> a`, if there is any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for next in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn sources() -> Vec<(String, String)> {
    let root = src_dir();
    let mut files = Vec::new();
    rust_files(&root, &root, &mut files);
    assert!(
        files.iter().any(|(rel, _)| rel.starts_with("format/")),
        "no format/ module under {}: wrong STRATA_SRC_DIR?",
        root.display()
    );
    files
}

#[test]
fn lower_layers_import_nothing_above_them() {
    let violations = rule_violations(&sources());
    assert!(
        violations.is_empty(),
        "layering violations:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let graph = module_graph(&sources());
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between engine modules: {}",
            cycle.join(" -> ")
        );
    }
}

/// The checker itself: it sees the imports the old tree had (the lines
/// are quoted from it) and is not fooled by comments or strings.
#[test]
fn the_checker_finds_what_the_old_tree_had() {
    let old_layout = "use super::{page_align, PAGE};\n\
                      use crate::graph::build::MAX_LEVEL;\n\
                      use crate::{error::Error, quant::{binary, pq}};\n\
                      // use crate::dir::names; (a comment)\n\
                      const S: &str = \"crate::index\";\n";
    let found = imports(old_layout);
    let want: BTreeSet<String> = ["graph", "error", "quant"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(found, want);
    let old_manifest = "    let path = dir.join(crate::live::LOCK_NAME);\n\
                        if bound.len < crate::log::file::LOG_HEADER as u64 {}\n";
    let files = vec![
        ("format/layout.rs".to_string(), old_layout.to_string()),
        ("format/manifest.rs".to_string(), old_manifest.to_string()),
        (
            "live.rs".to_string(),
            "use crate::format::manifest::Manifest;".to_string(),
        ),
    ];
    let violations = rule_violations(&files);
    assert_eq!(violations.len(), 4, "{violations:#?}");
    assert!(violations[0].contains("format/layout.rs imports crate::graph"));
    assert!(violations[1].contains("format/layout.rs imports crate::quant"));
    assert!(violations[2].contains("format/manifest.rs imports crate::live"));
    assert!(violations[3].contains("format/manifest.rs imports crate::log"));
    let cycle = find_cycle(&module_graph(&files)).expect("format <-> live");
    assert_eq!(cycle.first(), cycle.last());
    assert!(cycle.contains(&"live".to_string()) && cycle.contains(&"format".to_string()));
}
