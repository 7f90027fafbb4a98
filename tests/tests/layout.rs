//! The source layout as a test: no import cycles between the files of any crate.
//!
//! A file imports another when it names a path into it: `crate::a::b` or `super::x`
//! anywhere, or `child::x` from a folder module's `mod.rs`. A cycle means two files
//! cannot be read, tested or moved apart; this test names the files of every cycle
//! (strongly connected component) it finds. Test-only code (`#[cfg(test)]` items and
//! files) is left out, since test modules may reach anywhere.

#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

const CRATES: [&str; 6] = ["proto", "runtime", "gateway", "node", "cli", "bench"];

/// Module path ("a::b") → its file.
type Modules = BTreeMap<String, PathBuf>;

fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let parts: Vec<&str> = match parts.last().map(String::as_str) {
        Some("mod") | Some("lib") | Some("main") => parts[..parts.len() - 1]
            .iter()
            .map(String::as_str)
            .collect(),
        _ => parts.iter().map(String::as_str).collect(),
    };
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text without `#[cfg(test)]` items; also the names of test-only child modules
/// declared as `#[cfg(test)] mod name;`.
fn without_tests(text: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut test_modules = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let brace = after.find('{');
        let semi = after.find(';');
        match (brace, semi) {
            (Some(b), Some(s)) if s < b => {
                // `#[cfg(test)] mod name;`: a test-only file.
                let decl = after[..s].trim();
                if let Some(name) = decl.rsplit(' ').next() {
                    test_modules.push(name.to_owned());
                }
                rest = &after[s + 1..];
            }
            (Some(b), _) => {
                let mut depth = 0usize;
                let mut end = after.len();
                for (i, c) in after[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &after[end..];
            }
            _ => rest = "",
        }
    }
    out.push_str(rest);
    (out, test_modules)
}

/// Drops `//` comments (doc links name modules without importing them).
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// Every module path named after `prefix` (`crate::`, `super::`, ...) in `text`, as the
/// segments that follow it (groups `{a, b::c}` expanded).
fn paths_after(text: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(prefix).map(|i| from + i) {
        let before = text[..at].chars().next_back();
        from = at + prefix.len();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        expand(&text[from..], Vec::new(), &mut found);
    }
    found
}

fn expand(text: &str, base: Vec<String>, found: &mut Vec<Vec<String>>) {
    let mut path = base;
    let mut rest = text.trim_start();
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1usize;
            let mut start = 0;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            expand(&group[start..i], path.clone(), found);
                            return;
                        }
                    }
                    ',' if depth == 1 => {
                        expand(&group[start..i], path.clone(), found);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            return;
        }
        let ident = ident_at(rest);
        if ident.is_empty() {
            break;
        }
        path.push(ident.to_owned());
        rest = &rest[ident.len()..];
        match rest.strip_prefix("::") {
            Some(more) => rest = more.trim_start(),
            None => break,
        }
    }
    if !path.is_empty() {
        found.push(path);
    }
}

/// The deepest module of `modules` that `path` (absolute segments) lies in.
fn resolve(modules: &Modules, path: &[String]) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains_key(m))
}

fn edges(src: &Path) -> (Modules, BTreeMap<String, BTreeSet<String>>) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut modules = Modules::new();
    let mut texts = BTreeMap::new();
    let mut test_only = BTreeSet::new();
    for file in &files {
        let module = module_of(src, file);
        let (text, tests) = without_tests(&std::fs::read_to_string(file).unwrap());
        for t in tests {
            test_only.insert(if module.is_empty() {
                t
            } else {
                format!("{module}::{t}")
            });
        }
        modules.insert(module.clone(), file.clone());
        texts.insert(module, without_comments(&text));
    }
    for t in &test_only {
        modules.remove(t);
        texts.remove(t);
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &texts {
        let own: Vec<String> = if module.is_empty() {
            Vec::new()
        } else {
            module.split("::").map(str::to_owned).collect()
        };
        let is_folder = modules[module].ends_with("mod.rs");
        let mut targets = Vec::new();
        for path in paths_after(text, "crate::") {
            targets.push(path);
        }
        for path in paths_after(text, "super::") {
            // `super::super::x` climbs once per `super`.
            let ups = 1 + path.iter().take_while(|s| *s == "super").count();
            let mut abs = own[..own.len().saturating_sub(ups)].to_vec();
            abs.extend(path.into_iter().skip(ups - 1));
            targets.push(abs);
        }
        if is_folder || module.is_empty() {
            // `child::x` from a folder module (or the crate root) names its child.
            for child in modules.keys().filter(|m| {
                m.strip_prefix(&format!("{module}::"))
                    .or(if module.is_empty() {
                        Some(m.as_str())
                    } else {
                        None
                    })
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains("::"))
            }) {
                let name = child.rsplit("::").next().unwrap_or(child);
                for path in paths_after(text, &format!("{name}::")) {
                    let mut abs = own.clone();
                    abs.push(name.to_owned());
                    abs.extend(path);
                    targets.push(abs);
                }
            }
        }
        for target in targets {
            if let Some(to) = resolve(&modules, &target)
                && &to != module
            {
                graph.entry(module.clone()).or_default().insert(to);
            }
        }
    }
    (modules, graph)
}

/// Tarjan's strongly connected components with more than one member.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>, nodes: &[String]) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on_stack: BTreeSet<String>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit(s: &mut State<'_>, v: &str) {
        s.index.insert(v.to_owned(), s.next);
        s.low.insert(v.to_owned(), s.next);
        s.next += 1;
        s.stack.push(v.to_owned());
        s.on_stack.insert(v.to_owned());
        let targets: Vec<String> = s.graph.get(v).into_iter().flatten().cloned().collect();
        for w in targets {
            if !s.index.contains_key(&w) {
                visit(s, &w);
                let low = s.low[&w].min(s.low[v]);
                s.low.insert(v.to_owned(), low);
            } else if s.on_stack.contains(&w) {
                let low = s.index[&w].min(s.low[v]);
                s.low.insert(v.to_owned(), low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(&w);
                let done = w == v;
                component.push(w);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_crate_has_an_import_cycle_between_its_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut problems = Vec::new();
    let mut edges_seen = 0;
    for name in CRATES {
        let src = root.join(name).join("src");
        let (modules, graph) = edges(&src);
        edges_seen += graph.values().map(BTreeSet::len).sum::<usize>();
        let nodes: Vec<String> = modules.keys().cloned().collect();
        for cycle in cycles(&graph, &nodes) {
            let files: Vec<String> = cycle
                .iter()
                .map(|m| {
                    modules[m]
                        .strip_prefix(&root)
                        .unwrap_or(&modules[m])
                        .display()
                        .to_string()
                })
                .collect();
            let ties: Vec<String> = cycle
                .iter()
                .flat_map(|m| {
                    graph
                        .get(m)
                        .into_iter()
                        .flatten()
                        .filter(|t| cycle.contains(t))
                        .map(move |t| format!("{m} -> {t}"))
                })
                .collect();
            problems.push(format!(
                "{name}: {} ({})",
                files.join(", "),
                ties.join("; ")
            ));
        }
    }
    // The parser really saw the imports (a broken parser would find no cycles at all).
    assert!(edges_seen > 50, "only {edges_seen} imports found");
    assert!(
        problems.is_empty(),
        "import cycles:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let dir = std::env::temp_dir().join(format!("tongban-layout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src/folder")).unwrap();
    let write = |p: &str, t: &str| std::fs::write(dir.join("src").join(p), t).unwrap();
    write(
        "lib.rs",
        "pub mod a;\npub mod b;\npub mod c;\npub mod folder;\n",
    );
    write("a.rs", "use crate::b::Thing;\n");
    write(
        "b.rs",
        "use crate::{c::{self, X}, folder};\n#[cfg(test)]\nmod tests { use crate::a::Y; }\n",
    );
    write("c.rs", "pub fn f() { crate::a::g() }\n");
    write(
        "folder/mod.rs",
        "mod deep;\nmod inner;\npub use inner::Z;\n",
    );
    write("folder/deep.rs", "use super::super::a::Up;\n");
    write(
        "folder/inner.rs",
        "use super::Other;\n// crate::a is only a comment\n",
    );
    let (modules, graph) = edges(&dir.join("src"));
    assert!(
        graph.get("folder::deep").is_some_and(|t| t.contains("a")),
        "{graph:?}"
    );
    let nodes: Vec<String> = modules.keys().cloned().collect();
    let mut found = cycles(&graph, &nodes);
    found.sort();
    assert_eq!(
        found,
        vec![
            vec!["a".to_owned(), "b".to_owned(), "c".to_owned()],
            vec!["folder".to_owned(), "folder::inner".to_owned()],
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
