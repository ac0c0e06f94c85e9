//! The layer rule of `ratls`, checked on every `cargo test`.
//!
//! Every `crate::m` path in `src/**/*.rs` (outside tests) is an edge from the module of the file
//! to `m`. Each module sits on a layer (the [`LAYERS`] table, lowest first); an edge may only go
//! to the same layer or a lower one, and the module graph must have no cycle:
//!
//! | layer | modules | what |
//! | --- | --- | --- |
//! | 0 foundation | `codec`, `digest`, `hexfmt`, `time`, `fsutil`, `diag`, `net` | bytes, hashes, time, files, logging, sockets |
//! | 1 keys | `pki`, `binding`, `merkle` | X.509/CRL, report-data and qualifying-data binding, RFC 6962 trees |
//! | 2 wire | `snp::report`, `snp::anchors`, `tdx::quote`, `tpm::structures`, `azure::report`, `azure::runtime` | the evidence's own structures, parsed |
//! | 3 platform claims | `snp::claims`, `tdx::claims`, `tpm::claims`, `ima::claims`, `eventlog::claims`, `azure::claims`, `bundle::claims`, `foreign::claims` | what one platform's evidence says |
//! | 4 claims | `claims` | `Claims` over every platform, and the composite claims that nest it |
//! | 5 model | `verdict` | `Check`, `Outcome`, `Platform`, `Step`, `Verdict` |
//! | 6 output | `summary`, `audit`, `ear` | a verdict as the tools print it, as the audit log keeps it, as a signed result for applications |
//! | 7 platforms | `snp`, `tdx`, `tpm` | verify one platform's evidence |
//! | 8 logs | `eventlog`, `ima`, `azure` | logs replayed against TPM PCRs; the HCL report |
//! | 9 policy | `policy` | every platform's policy in one document |
//! | 10 composite | `azure::verify`, `foreign` | verifiers combining platforms under one policy |
//! | 11 bundle | `bundle`, `snapshot` | the evidence wire format and its verification |
//! | 12 attestation | `attest` | the attester side: evidence sources, bundle production |
//! | 13 network | `tls`, `collateral` | RA-TLS, and fetching collateral |
//!
//! A submodule listed on its own (`azure::verify`, `snp::claims`) is a node of its own; a name
//! its parent re-exports from it (`crate::azure::verify_snp`, `crate::snp::SnpClaims`) counts as
//! an edge to it. There are no exceptions: every edge must follow the rule.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules by layer, lowest first.
const LAYERS: &[&[&str]] = &[
    &["codec", "digest", "hexfmt", "time", "fsutil", "diag", "net"],
    &["pki", "binding", "merkle"],
    &[
        "snp::report",
        "snp::anchors",
        "tdx::quote",
        "tpm::structures",
        "azure::report",
        "azure::runtime",
    ],
    &[
        "snp::claims",
        "tdx::claims",
        "tpm::claims",
        "ima::claims",
        "eventlog::claims",
        "azure::claims",
        "bundle::claims",
        "foreign::claims",
    ],
    &["claims"],
    &["verdict"],
    &["summary", "audit", "ear"],
    &["snp", "tdx", "tpm"],
    &["eventlog", "ima", "azure"],
    &["policy"],
    &["azure::verify", "foreign"],
    &["bundle", "snapshot"],
    &["attest"],
    &["tls", "collateral"],
];

/// One `crate::` reference: from node, to node, where.
#[derive(Debug)]
struct Edge {
    from: String,
    to: String,
    at: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if path.is_dir() {
            if name != "tests" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            out.push(path);
        }
    }
}

/// The node a file belongs to: the longest listed module its path is inside.
fn node_of_file(rel: &Path, nodes: &BTreeSet<String>) -> Option<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] {
        return None; // the crate root only declares and re-exports
    }
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|candidate| nodes.contains(candidate))
        .or_else(|| parts.first().cloned())
}

/// Source lines outside comments and `#[cfg(test)]` items, with their line numbers.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut skip_depth: Option<i64> = None;
    let mut pending_cfg_test = false;
    for (i, raw) in text.lines().enumerate() {
        let line = match raw.find("//") {
            Some(at) => &raw[..at],
            None => raw,
        };
        let trimmed = line.trim();
        if let Some(depth) = skip_depth.as_mut() {
            *depth += line.matches('{').count() as i64 - line.matches('}').count() as i64;
            if *depth <= 0 && (line.contains('}') || line.contains(';')) {
                skip_depth = None;
            }
            continue;
        }
        if trimmed == "#[cfg(test)]" {
            pending_cfg_test = true;
            continue;
        }
        if pending_cfg_test && !trimmed.is_empty() {
            pending_cfg_test = false;
            let depth = line.matches('{').count() as i64 - line.matches('}').count() as i64;
            if depth > 0 {
                skip_depth = Some(depth);
            }
            continue;
        }
        out.push((i + 1, line.to_owned()));
    }
    out
}

/// The names a module re-exports from a child node (`pub use self::verify::{a, b}` in
/// `azure/mod.rs` gives `a`, `b` for `azure::verify`).
fn reexports(src: &Path, node: &str) -> Vec<String> {
    let Some((parent, child)) = node.rsplit_once("::") else {
        return Vec::new();
    };
    let dir = src.join(parent.replace("::", "/"));
    let Ok(text) = std::fs::read_to_string(dir.join("mod.rs")) else {
        return Vec::new();
    };
    let flat = text.replace('\n', " ");
    let mut names = Vec::new();
    for prefix in [
        format!("pub use self::{child}::"),
        format!("pub use {child}::"),
    ] {
        for (at, _) in flat.match_indices(&prefix) {
            let rest = &flat[at + prefix.len()..];
            let list = rest.split(';').next().unwrap_or("");
            names.extend(
                list.trim_matches(|c| c == '{' || c == '}' || c == ' ')
                    .split(',')
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty()),
            );
        }
    }
    names
}

/// Which node `crate::<path>` names.
fn resolve(
    path: &[String],
    nodes: &BTreeSet<String>,
    root_reexports: &BTreeMap<String, String>,
    child_reexports: &BTreeMap<(String, String), String>,
) -> Option<String> {
    let first = path.first()?;
    if let Some(module) = root_reexports.get(first) {
        return Some(module.clone());
    }
    if let Some(second) = path.get(1) {
        let two = format!("{first}::{second}");
        if nodes.contains(&two) {
            return Some(two);
        }
        if let Some(node) = child_reexports.get(&(first.clone(), second.clone())) {
            return Some(node.clone());
        }
    }
    first
        .chars()
        .next()?
        .is_lowercase()
        .then(|| first.clone())
}

fn ident_at(s: &str) -> (String, &str) {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (s[..end].to_owned(), &s[end..])
}

/// The paths after each `crate::` on a line (`crate::{a, b::c}` gives `a` and `b::c`).
fn crate_paths(line: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        if line[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &line[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            for item in group.split([',', '}']) {
                let item = item.trim().trim_start_matches('{');
                let parts: Vec<String> = item
                    .split("::")
                    .map(|p| ident_at(p.trim()).0)
                    .filter(|p| !p.is_empty())
                    .collect();
                if !parts.is_empty() {
                    out.push(parts);
                }
            }
            continue;
        }
        let mut parts = Vec::new();
        let mut rest = rest;
        loop {
            let (ident, after) = ident_at(rest);
            if ident.is_empty() {
                break;
            }
            parts.push(ident);
            match after.strip_prefix("::") {
                Some(more) => rest = more,
                None => break,
            }
        }
        if !parts.is_empty() {
            out.push(parts);
        }
    }
    out
}

fn edges() -> Vec<Edge> {
    let src = src_dir();
    let nodes: BTreeSet<String> = LAYERS
        .iter()
        .flat_map(|l| l.iter().map(|m| (*m).to_owned()))
        .collect();
    // `pub use crate::m::{A, B}` in lib.rs: `crate::A` is module `m`.
    let mut root_reexports = BTreeMap::new();
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    for (_, line) in code_lines(&lib) {
        if let Some(rest) = line
            .trim()
            .strip_prefix("pub use crate::")
        {
            let (module, names) = ident_at(rest);
            for name in names.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                if name
                    .chars()
                    .next()
                    .is_some_and(char::is_uppercase)
                {
                    root_reexports.insert(name.to_owned(), module.clone());
                }
            }
        }
    }
    let mut child_reexports = BTreeMap::new();
    for node in nodes
        .iter()
        .filter(|n| n.contains("::"))
    {
        let parent = node
            .split("::")
            .next()
            .unwrap()
            .to_owned();
        for name in reexports(&src, node) {
            child_reexports.insert((parent.clone(), name), node.clone());
        }
    }
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let Some(from) = node_of_file(rel, &nodes) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in code_lines(&text) {
            for path in crate_paths(&line) {
                let Some(to) = resolve(&path, &nodes, &root_reexports, &child_reexports) else {
                    continue;
                };
                // A node's own submodules are part of it, and a parent may use its child nodes.
                if to == from || to.starts_with(&format!("{from}::")) {
                    continue;
                }
                out.push(Edge {
                    from: from.clone(),
                    to,
                    at: format!("src/{}:{number}", rel.display()),
                });
            }
        }
    }
    out
}

fn layer_of(node: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|l| l.contains(&node))
}

/// A cycle in `graph`, as the list of nodes around it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state
                .get(next.as_str())
                .copied()
                .unwrap_or(0)
            {
                1 => {
                    let start = stack
                        .iter()
                        .position(|n| n == next)
                        .unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(cycle) = visit(next, graph, state, stack) {
                        return Some(cycle);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state
            .get(node.as_str())
            .copied()
            .unwrap_or(0)
            == 0
        {
            if let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

#[test]
fn every_module_is_on_a_layer() {
    let unknown: BTreeSet<String> = edges()
        .into_iter()
        .flat_map(|e| [e.from, e.to])
        .filter(|n| layer_of(n).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "modules missing from the LAYERS table in ratls/tests/layers.rs: {unknown:?}"
    );
}

#[test]
fn imports_only_go_down_and_never_around() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut first_at: BTreeMap<(String, String), String> = BTreeMap::new();
    for e in edges() {
        first_at
            .entry((e.from.clone(), e.to.clone()))
            .or_insert_with(|| e.at.clone());
        let (Some(from), Some(to)) = (layer_of(&e.from), layer_of(&e.to)) else {
            continue; // reported by every_module_is_on_a_layer
        };
        if from < to {
            wrong.push(format!(
                "{}: `{}` (layer {from}) imports `{}` (layer {to}), a higher layer",
                e.at, e.from, e.to
            ));
        }
        graph
            .entry(e.from)
            .or_default()
            .insert(e.to);
    }
    assert!(wrong.is_empty(), "layer rule broken:\n{}", wrong.join("\n"));
    if let Some(cycle) = find_cycle(&graph) {
        let hops: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                let at = &first_at[&(w[0].clone(), w[1].clone())];
                format!("{} -> {} ({at})", w[0], w[1])
            })
            .collect();
        panic!("import cycle between ratls modules:\n{}", hops.join("\n"));
    }
}
