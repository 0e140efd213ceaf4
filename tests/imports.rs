//! The program's top-level modules (`config`, `cluster`, `units`, `kafka`,
//! `sources`, `workload`, `sinks`, `metrics`, `run`, `get`, `generate`, ...)
//! import each other without cycles, so that each can be read, tested and
//! replaced from the bottom up (ARCHITECTURE.md: data moves one way).
//!
//! The check reads every `src/**/*.rs` except the crate root (`main.rs`, which
//! declares and dispatches to everything), and collects each path that starts
//! at the crate root: `crate::m...`, `crate::{m, ...}`, and `super::` chains
//! that climb to the root (inline `mod tests { ... }` blocks count as a level).
//! Comments, string and character literals are skipped, so doc links and
//! messages that mention a module are not imports. Each path's first segment
//! that names a top-level module (a `mod` of `main.rs`) is an edge from the
//! file's top-level module; every elementary cycle of that graph is reported
//! with the file and line of one reference per edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A token of Rust source, as far as paths are concerned.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Open,
    Close,
    Comma,
    Semi,
    Other,
}

/// Tokens of `src` with their 1-based line numbers; comments and literals dropped.
fn tokens(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    // Advances past `c[i..end]`, counting the newlines in it.
    let skip_to = |i: &mut usize, line: &mut usize, end: usize| {
        *line += c[*i..end.min(c.len())].iter().filter(|&&ch| ch == '\n').count();
        *i = end.min(c.len());
    };
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == Some('/') {
            let end = (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len());
            skip_to(&mut i, &mut line, end);
        } else if ch == '/' && next == Some('*') {
            let end = block_comment_end(&c, i);
            skip_to(&mut i, &mut line, end);
        } else if ch == '"' {
            let end = string_end(&c, i + 1);
            skip_to(&mut i, &mut line, end);
        } else if ch == '\'' {
            // A character literal ('a', '\n', '{'), else a lifetime or label.
            if next == Some('\\') {
                let end = (i + 2..c.len()).find(|&j| c[j] == '\'').map_or(c.len(), |j| j + 1);
                skip_to(&mut i, &mut line, end);
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let at = c.get(i).copied();
            match (word.as_str(), at) {
                ("r" | "br" | "cr", Some('#' | '"')) if raw_string_start(&c, i) => {
                    let end = raw_string_end(&c, i);
                    skip_to(&mut i, &mut line, end);
                }
                ("r", Some('#')) => i += 1, // a raw identifier, `r#type`: lex the name next
                ("b" | "c", Some('"')) => {
                    let end = string_end(&c, i + 1);
                    skip_to(&mut i, &mut line, end);
                }
                _ => out.push((Tok::Ident(word), line)),
            }
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Other, line));
        } else {
            let tok = match ch {
                ':' if next == Some(':') => {
                    i += 1;
                    Tok::PathSep
                }
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                ';' => Tok::Semi,
                _ => Tok::Other,
            };
            out.push((tok, line));
            i += 1;
        }
    }
    out
}

/// Index just past the `*/` closing the (nestable) block comment at `i`.
fn block_comment_end(c: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    while i < c.len() {
        if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    c.len()
}

/// Index just past the closing `"` of a string whose contents start at `i`.
fn string_end(c: &[char], mut i: usize) -> usize {
    while i < c.len() {
        match c[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    c.len()
}

/// Whether `c[i..]` (just after an `r` prefix) is `#*"`, a raw string.
fn raw_string_start(c: &[char], i: usize) -> bool {
    let hashes = c[i..].iter().take_while(|&&ch| ch == '#').count();
    c.get(i + hashes) == Some(&'"')
}

/// Index just past the raw string whose `#*"` starts at `i`.
fn raw_string_end(c: &[char], i: usize) -> usize {
    let hashes = c[i..].iter().take_while(|&&ch| ch == '#').count();
    let mut j = i + hashes + 1;
    while j < c.len() {
        if c[j] == '"' && c[j + 1..].iter().take(hashes).filter(|&&ch| ch == '#').count() == hashes {
            return j + 1 + hashes;
        }
        j += 1;
    }
    c.len()
}

/// The first path segments reached from the crate root in `src`, with their
/// lines, for a file whose module path is `module` (`["sinks", "redis"]`).
fn root_paths(src: &str, module: &[String]) -> Vec<(String, usize)> {
    let toks = tokens(src);
    let ident = |k: usize| match toks.get(k) {
        Some((Tok::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    let is = |k: usize, t: &Tok| toks.get(k).is_some_and(|(x, _)| x == t);
    let mut out = Vec::new();
    // Inline modules open here: (name, brace depth inside them).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut k = 0;
    while k < toks.len() {
        match &toks[k].0 {
            Tok::Open => depth += 1,
            Tok::Close => {
                if inline.last().is_some_and(|&(_, d)| d == depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            Tok::Ident(w) if w == "mod" && is(k + 2, &Tok::Open) => {
                if let Some(name) = ident(k + 1) {
                    inline.push((name.to_string(), depth + 1));
                }
            }
            Tok::Ident(w) if (w == "crate" || w == "super") && !(k > 0 && is(k - 1, &Tok::PathSep)) && is(k + 1, &Tok::PathSep) => {
                let mut j = k;
                let climbs_to_root = if w == "crate" {
                    true
                } else {
                    let mut ups = 0;
                    while ident(j) == Some("super") && is(j + 1, &Tok::PathSep) {
                        ups += 1;
                        j += 2;
                    }
                    j -= 2;
                    ups == module.len() + inline.len()
                };
                if climbs_to_root {
                    out.extend(first_segments(&toks, j + 2));
                }
            }
            _ => {}
        }
        k += 1;
    }
    out
}

/// The first segments of the path (or `{...}` group of paths) at `toks[k]`.
fn first_segments(toks: &[(Tok, usize)], k: usize) -> Vec<(String, usize)> {
    match toks.get(k) {
        Some((Tok::Ident(s), line)) => vec![(s.clone(), *line)],
        Some((Tok::Open, _)) => {
            let mut out = Vec::new();
            let mut depth = 1;
            let mut expect_item = true;
            for (tok, line) in &toks[k + 1..] {
                match tok {
                    Tok::Open => depth += 1,
                    Tok::Close => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Tok::Comma if depth == 1 => {
                        expect_item = true;
                        continue;
                    }
                    Tok::Ident(s) if depth == 1 && expect_item => out.push((s.clone(), *line)),
                    _ => {}
                }
                expect_item = false;
            }
            out
        }
        _ => Vec::new(),
    }
}

/// The `mod name;` declarations of a crate root.
fn declared_modules(root: &str) -> BTreeSet<String> {
    let toks = tokens(root);
    toks.windows(3)
        .filter_map(|w| match w {
            [(Tok::Ident(m), _), (Tok::Ident(name), _), (Tok::Semi, _)] if m == "mod" => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Module path of a file below `src/` (`sinks/redis/mod.rs` -> `["sinks", "redis"]`).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let file = parts.pop().unwrap_or_default();
    if file != "mod.rs" {
        parts.push(file.trim_end_matches(".rs").to_string());
    }
    parts
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot read {}: {e}", d.display())) {
            let path = entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", d.display())).path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Edges between top-level modules, each with where it was first seen (`src/config.rs:8`).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// The module graph of the crate whose root file is `src/<root>`.
fn module_graph(src: &Path, root: &str) -> Graph {
    let root_text = std::fs::read_to_string(src.join(root)).unwrap_or_else(|e| panic!("cannot read {}: {e}", src.join(root).display()));
    let modules = declared_modules(&root_text);
    assert!(!modules.is_empty(), "no `mod` declarations in {}", src.join(root).display());
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).expect("below src");
        let module = module_path(rel);
        if rel == Path::new(root) || !modules.contains(&module[0]) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        for (to, line) in root_paths(&text, &module) {
            if to != module[0] && modules.contains(&to) {
                let at = format!("src/{}:{line}", rel.display());
                graph.entry(module[0].clone()).or_default().entry(to).or_insert(at);
            }
        }
    }
    graph
}

/// Every elementary cycle, each listed from its smallest module, in order.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    fn walk(graph: &Graph, start: &str, path: &mut Vec<String>, found: &mut Vec<Vec<String>>) {
        let last = path.last().expect("non-empty path").clone();
        for next in graph.get(&last).into_iter().flat_map(|m| m.keys()) {
            if next == start {
                found.push(path.clone());
            } else if next.as_str() > start && !path.contains(next) {
                path.push(next.clone());
                walk(graph, start, path, found);
                path.pop();
            }
        }
    }
    let mut found = Vec::new();
    for start in graph.keys() {
        walk(graph, start, &mut vec![start.clone()], &mut found);
    }
    found
}

/// `a -> b -> a (a -> b at src/a.rs:3; b -> a at src/b.rs:9)`.
fn describe(graph: &Graph, cycle: &[String]) -> String {
    let mut names = cycle.to_vec();
    names.push(cycle[0].clone());
    let evidence: Vec<String> = names.windows(2).map(|w| format!("{} -> {} at {}", w[0], w[1], graph[&w[0]][&w[1]])).collect();
    format!("{} ({})", names.join(" -> "), evidence.join("; "))
}

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src, "main.rs");
    assert!(graph.contains_key("config"), "config.rs imports nothing? {graph:?}");
    let found = cycles(&graph);
    let report: Vec<String> = found.iter().map(|c| describe(&graph, c)).collect();
    assert!(report.is_empty(), "{} import cycle(s) among the top-level modules of src/:\n  {}\nmove what both sides need into a module below them (as `units` holds `Duration`)", report.len(), report.join("\n  "));
}

#[test]
fn paths_from_the_crate_root_are_found_and_mentions_are_not() {
    let src = r####"
        //! See [`crate::metrics`] and crate::run in prose.
        use crate::config::{Config, StoreKind};
        use crate::{sinks::jsonl, units::Duration, workload};
        use super::decode::Chunk;
        pub(super) fn f() -> &'static str { let _ = '{'; let _ = b'}'; "crate::get" }
        /* crate::kafka /* nested */ crate::kafka */
        const RAW: &str = r#"crate::cluster "quoted" "#;
        fn g<'a>(x: &'a str) { crate::generate::write(x); let r#type = 1; }
        mod tests {
            use super::super::metrics::Metrics;
            use super::*;
        }
    "####;
    let module = vec!["sources".to_string(), "file".to_string()];
    let found: Vec<(String, usize)> = root_paths(src, &module);
    let names: Vec<&str> = found.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["config", "sinks", "units", "workload", "generate"]);
    assert_eq!(found[0].1, 3);
    assert_eq!(found[4].1, 9);
    // Four levels up from `sources::file::tests::more` is the crate root; three is `sources`.
    let deeper = "mod tests { mod more { use super::super::super::super::x; use super::super::super::y; } }";
    let names: Vec<String> = root_paths(deeper, &module).into_iter().map(|(s, _)| s).collect();
    assert_eq!(names, ["x"]);
}

#[test]
fn every_cycle_is_named_with_its_evidence() {
    let mut graph = Graph::new();
    for (from, to) in [("config", "cluster"), ("cluster", "config"), ("config", "kafka"), ("kafka", "sinks"), ("sinks", "config"), ("run", "config"), ("kafka", "units"), ("cluster", "units")] {
        graph.entry(from.to_string()).or_default().insert(to.to_string(), format!("src/{from}.rs:1"));
    }
    let found: Vec<String> = cycles(&graph).iter().map(|c| describe(&graph, c)).collect();
    assert_eq!(
        found,
        [
            "cluster -> config -> cluster (cluster -> config at src/cluster.rs:1; config -> cluster at src/config.rs:1)",
            "config -> kafka -> sinks -> config (config -> kafka at src/config.rs:1; kafka -> sinks at src/kafka.rs:1; sinks -> config at src/sinks.rs:1)",
        ]
    );
    graph.get_mut("cluster").unwrap().remove("config");
    graph.get_mut("sinks").unwrap().remove("config");
    assert!(cycles(&graph).is_empty());
}
