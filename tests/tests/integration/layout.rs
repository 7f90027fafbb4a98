//! The source layout as a test. Each rule is its own test and names every offender:
//!
//! - no import cycle between the files of a crate;
//! - no upward import: a file names no item defined in a module that composes it (the
//!   crate root, a folder's `mod.rs`, the `foo.rs` that declares `foo/` children);
//! - no source file over [`MAX_FILE_LINES`] lines and no function over
//!   [`MAX_FN_LINES`] lines in the library crates ([`SIZED`]).
//!
//! Files are found as rustc finds them: from each crate root (`lib.rs`, `main.rs`,
//! `bin/*.rs`) through its `mod` declarations. A file imports another when it names a
//! path into it: `crate::a::b` or `super::x` anywhere, or `child::x` for a module it
//! declares. Before any rule reads a file, its comments and the contents of its string
//! and char literals are blanked (braces and paths in them count for nothing), and so
//! are its `#[cfg(test)]` items: test code may reach anywhere and is not counted.

#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Crates whose imports are checked; `kit` when its folder exists.
const CRATES: [&str; 7] = ["proto", "runtime", "gateway", "node", "cli", "bench", "kit"];
/// Crates that must exist, with the fewest (non-test) files the module map must find
/// in each: a broken map would find next to nothing and pass every rule.
const EXPECTED: [(&str, usize); 6] = [
    ("proto", 10),
    ("runtime", 10),
    ("gateway", 20),
    ("node", 20),
    ("cli", 2),
    ("bench", 4),
];
/// Crates whose file and function sizes are checked.
const SIZED: [&str; 4] = ["proto", "runtime", "gateway", "node"];
/// Most lines in a source file, not counting `#[cfg(test)]` items.
const MAX_FILE_LINES: usize = 600;
/// Most lines in a function, from its `fn` line to its closing brace.
const MAX_FN_LINES: usize = 100;

/// Module path ("a::b") → its file.
type Modules = BTreeMap<String, PathBuf>;
/// Module → the modules it imports from.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// One source file as the rules see it.
struct Source {
    path: PathBuf,
    /// The text with comments, literal contents and `#[cfg(test)]` items blanked; the
    /// same lines as the file.
    code: String,
    /// Lines outside `#[cfg(test)]` items.
    lines: usize,
    /// Its inline modules, `mod name { .. }`.
    inline: Vec<Inline>,
}

/// An inline module: its path inside the file's module, and its braces.
struct Inline {
    path: Vec<String>,
    open: usize,
    close: usize,
}

/// One crate root and the files its `mod` declarations reach, by module path.
struct Unit {
    /// The root file, relative to the workspace.
    name: String,
    files: BTreeMap<String, Source>,
    /// `mod name;` declarations with no file.
    missing: Vec<String>,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shown(path: &Path) -> String {
    let root = workspace();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn ident_at(text: &str) -> &str {
    let end = text.find(|c: char| !is_ident(c)).unwrap_or(text.len());
    &text[..end]
}

/// Spaces as wide as `c` (a newline stays), so that offsets and lines do not move.
fn push_blank(out: &mut String, c: char) {
    if c == '\n' {
        out.push('\n');
    } else {
        out.extend(std::iter::repeat_n(' ', c.len_utf8()));
    }
}

/// The text with comments blanked and the contents of string, raw string, byte string
/// and char literals blanked (their quotes stay). Lifetimes and labels (`'a`) stay.
fn mask(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let after_ident = i > 0 && is_ident(chars[i - 1]);
        if c == '/' && at(i + 1) == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                push_blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && at(i + 1) == Some('*') {
            let mut depth = 0usize;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == Some('*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == Some('/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    push_blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            i = mask_quoted(&chars, i, '"', &mut out);
        } else if let Some(len) = raw_string_at(&chars, i).filter(|_| !after_ident) {
            i = mask_raw_string(&chars, i, len, &mut out);
        } else if c == '\'' && at(i + 1) == Some('\\') {
            // An escaped char literal: '\n', '\'', '\u{7B}'.
            out.push('\'');
            i += 1;
            i = mask_quoted(&chars, i, '\'', &mut out);
        } else if c == '\'' && at(i + 2) == Some('\'') {
            // A char literal '{'; otherwise `'` starts a lifetime or a label.
            out.push('\'');
            push_blank(&mut out, chars[i + 1]);
            out.push('\'');
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Blanks a quoted literal's contents from `i` (just past its opening `quote`) to its
/// closing quote, escapes included; returns the index past the closing quote.
fn mask_quoted(chars: &[char], mut i: usize, quote: char, out: &mut String) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                push_blank(out, '\\');
                if let Some(&escaped) = chars.get(i + 1) {
                    push_blank(out, escaped);
                }
                i += 2;
            }
            c if c == quote => {
                out.push(quote);
                return i + 1;
            }
            other => {
                push_blank(out, other);
                i += 1;
            }
        }
    }
    i
}

/// At `r"`, `r#"`, `br"`, `cr#"` ...: the length of the opening (prefix, hashes, quote).
fn raw_string_at(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if matches!(chars.get(j), Some('b' | 'c')) {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some(j + 1 - i)
}

/// Copies the opening and closing of the raw string at `i` and blanks its contents;
/// returns the index after it.
fn mask_raw_string(chars: &[char], i: usize, open_len: usize, out: &mut String) -> usize {
    let opening = &chars[i..i + open_len];
    let hashes = opening.iter().filter(|c| **c == '#').count();
    out.extend(opening);
    let mut j = i + open_len;
    while j < chars.len() {
        let closes = chars[j] == '"'
            && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#'))
            && j + hashes < chars.len();
        if closes {
            out.extend(&chars[j..=j + hashes]);
            return j + hashes + 1;
        }
        push_blank(out, chars[j]);
        j += 1;
    }
    j
}

/// The byte offset of the `}` that closes the `{` at `open`.
fn matching_brace(code: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

/// From `from`, the end of the item or signature: the offset of the first `;` or `{`
/// outside parentheses and brackets.
fn item_end(code: &str, from: usize) -> Option<(usize, char)> {
    let mut depth = 0i32;
    for (i, c) in code[from..].char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ';' | '{' if depth <= 0 => return Some((from + i, c)),
            _ => {}
        }
    }
    None
}

/// The (masked) code with every `#[cfg(test)]` item blanked, and where those were.
fn strip_tests(code: &str) -> (String, Vec<(usize, usize)>) {
    const ATTR: &str = "#[cfg(test)]";
    let mut regions = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find(ATTR).map(|i| from + i) {
        let item = at + ATTR.len();
        let end = match item_end(code, item) {
            Some((semi, ';')) => semi + 1,
            Some((open, _)) => matching_brace(code, open).map_or(code.len(), |c| c + 1),
            None => code.len(),
        };
        regions.push((at, end));
        from = end;
    }
    let mut out = String::with_capacity(code.len());
    let mut last = 0;
    for &(start, end) in &regions {
        out.push_str(&code[last..start]);
        for c in code[start..end].chars() {
            push_blank(&mut out, c);
        }
        last = end;
    }
    out.push_str(&code[last..]);
    (out, regions)
}

/// Lines of `code` (with tests blanked) that are not wholly inside a test item.
fn count_lines(code: &str, tests: &[(usize, usize)]) -> usize {
    let mut count = 0;
    let mut start = 0;
    for line in code.split_inclusive('\n') {
        let end = start + line.len();
        let in_test = tests.iter().any(|&(s, e)| s < end && e > start);
        if !(in_test && line.trim().is_empty()) {
            count += 1;
        }
        start = end;
    }
    count
}

fn line_of(code: &str, at: usize) -> usize {
    1 + code[..at].matches('\n').count()
}

/// Offsets of `word` standing alone (not part of a longer identifier).
fn words<'a>(code: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    code.match_indices(word).map(|(i, _)| i).filter(move |&i| {
        !code[..i].chars().next_back().is_some_and(is_ident)
            && !code[i + word.len()..].chars().next().is_some_and(is_ident)
    })
}

/// Inline modules of `code`, and its `mod name;` declarations (with the inline
/// modules they sit in).
fn module_items(code: &str) -> (Vec<Inline>, Vec<(Vec<String>, String)>) {
    let mut inline: Vec<Inline> = Vec::new();
    let mut declared = Vec::new();
    for at in words(code, "mod") {
        let rest = &code[at + "mod".len()..];
        if !rest.starts_with(char::is_whitespace) {
            continue;
        }
        let rest = rest.trim_start();
        let name = ident_at(rest);
        if name.is_empty() {
            continue;
        }
        let after = rest[name.len()..].trim_start();
        let mut path = inline_path_at(&inline, at).to_vec();
        if after.starts_with(';') {
            declared.push((path, name.to_owned()));
        } else if after.starts_with('{') {
            let open = code.len() - after.len();
            let close = matching_brace(code, open).unwrap_or(code.len());
            path.push(name.to_owned());
            inline.push(Inline { path, open, close });
        }
    }
    (inline, declared)
}

/// The inline module (path within the file) that `at` lies in.
fn inline_path_at(inline: &[Inline], at: usize) -> &[String] {
    inline
        .iter()
        .filter(|m| m.open < at && at < m.close)
        .max_by_key(|m| m.open)
        .map_or(&[], |m| &m.path)
}

fn join(parts: &[String]) -> String {
    parts.join("::")
}

fn segments(module: &str) -> Vec<String> {
    if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(str::to_owned).collect()
    }
}

/// Every `.rs` file under `src` with its text.
fn read_tree(src: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.insert(path, text);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, &mut out);
    out
}

/// The files reached from `root` through `mod name;` declarations; with `tests`, also
/// those declared by `#[cfg(test)]` items (only to check that the map misses nothing).
fn load_unit(name: String, files: &BTreeMap<PathBuf, String>, root: &Path, tests: bool) -> Unit {
    let mut unit = Unit {
        name,
        files: BTreeMap::new(),
        missing: Vec::new(),
    };
    let mut queue = vec![(
        Vec::new(),
        root.to_path_buf(),
        root.parent().unwrap().to_path_buf(),
    )];
    while let Some((module, path, dir)) = queue.pop() {
        let masked = mask(&files[&path]);
        let (code, regions) = if tests {
            (masked, Vec::new())
        } else {
            strip_tests(&masked)
        };
        let lines = count_lines(&code, &regions);
        let (inline, declared) = module_items(&code);
        for (within, child) in declared {
            let base = within.iter().fold(dir.clone(), |d, m| d.join(m));
            let flat = base.join(format!("{child}.rs"));
            let folder = base.join(&child).join("mod.rs");
            let mut child_module: Vec<String> = module.clone();
            child_module.extend(within);
            child_module.push(child.clone());
            match [flat, folder].into_iter().find(|f| files.contains_key(f)) {
                Some(file) => queue.push((child_module, file, base.join(&child))),
                None => unit
                    .missing
                    .push(format!("{}: mod {}", shown(&path), join(&child_module))),
            }
        }
        unit.files.insert(
            join(&module),
            Source {
                path,
                code,
                lines,
                inline,
            },
        );
    }
    unit
}

/// The crate roots of `src` (`lib.rs`, `main.rs`, `bin/*.rs`), each with its files.
fn units_of(src: &Path, files: &BTreeMap<PathBuf, String>, tests: bool) -> Vec<Unit> {
    let bin = src.join("bin");
    let mut roots = vec![src.join("lib.rs"), src.join("main.rs")];
    roots.extend(
        files
            .keys()
            .filter(|p| p.parent() == Some(bin.as_path()))
            .cloned(),
    );
    roots
        .into_iter()
        .filter(|r| files.contains_key(r))
        .map(|r| load_unit(shown(&r), files, &r, tests))
        .collect()
}

/// The crates of `names` that exist, each with its units (non-test code).
fn crates(names: &[&'static str]) -> Vec<(&'static str, Vec<Unit>)> {
    let root = workspace();
    names
        .iter()
        .map(|name| (*name, root.join(name).join("src")))
        .filter(|(_, src)| src.is_dir())
        .map(|(name, src)| (name, units_of(&src, &read_tree(&src), false)))
        .collect()
}

/// Every path named after `prefix` (`crate::`, `super::`, ...) in `text`, with where it
/// starts, as the segments that follow the prefix (groups `{a, b::c}` expanded; a glob
/// is a `*` segment).
fn paths_after(text: &str, prefix: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(prefix).map(|i| from + i) {
        let before = text[..at].chars().next_back();
        from = at + prefix.len();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue;
        }
        let mut paths = Vec::new();
        expand(&text[from..], Vec::new(), &mut paths);
        found.extend(paths.into_iter().map(|p| (at, p)));
        // A `super::` inside the group of `super::{..}` belongs to this path.
        from += path_len(&text[from..]);
    }
    found
}

/// The length of the path (segments and groups) that `text` starts with.
fn path_len(text: &str) -> usize {
    let mut i = 0;
    loop {
        i += text[i..].len() - text[i..].trim_start().len();
        let rest = &text[i..];
        if rest.starts_with('{') {
            return matching_brace(text, i).map_or(text.len(), |c| c + 1);
        }
        let ident = ident_at(rest);
        i += ident.len();
        let after = text[i..].trim_start();
        if ident.is_empty() || !after.starts_with("::") {
            return i;
        }
        i = text.len() - after.len() + 2;
    }
}

fn expand(text: &str, base: Vec<String>, found: &mut Vec<Vec<String>>) {
    let depth = base.len();
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
        if rest.starts_with('*') {
            path.push("*".to_owned());
            break;
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
    // An empty element (after a group's trailing comma) names nothing.
    if path.len() > depth {
        found.push(path);
    }
}

/// A path into the crate named in a file.
struct Reference {
    at: usize,
    /// As written (groups expanded).
    written: String,
    /// Absolute segments from the crate root.
    path: Vec<String>,
}

/// Every module path of the unit, inline modules included, with the file it is in.
fn all_modules(unit: &Unit) -> Modules {
    let mut all = Modules::new();
    for (module, source) in &unit.files {
        all.insert(module.clone(), source.path.clone());
        for inline in &source.inline {
            let mut path = segments(module);
            path.extend(inline.path.iter().cloned());
            all.entry(join(&path))
                .or_insert_with(|| source.path.clone());
        }
    }
    all
}

/// The paths `source` (of `module`) names into its crate: `crate::…`, `super::…`, and
/// `child::…` for a module declared where the path is written.
fn references(all: &Modules, module: &str, source: &Source) -> Vec<Reference> {
    let own = segments(module);
    let here = |at: usize| {
        let mut path = own.clone();
        path.extend(inline_path_at(&source.inline, at).iter().cloned());
        path
    };
    let mut out = Vec::new();
    for (at, path) in paths_after(&source.code, "crate::") {
        let written = format!("crate::{}", join(&path));
        out.push(Reference { at, written, path });
    }
    for (at, path) in paths_after(&source.code, "super::") {
        let written = format!("super::{}", join(&path));
        // `super::super::x` climbs once per `super`.
        let ups = 1 + path.iter().take_while(|s| *s == "super").count();
        let base = here(at);
        let mut abs = base[..base.len().saturating_sub(ups)].to_vec();
        abs.extend(path.into_iter().skip(ups - 1));
        out.push(Reference {
            at,
            written,
            path: abs,
        });
    }
    let mut scopes: Vec<Vec<String>> = vec![Vec::new()];
    scopes.extend(source.inline.iter().map(|m| m.path.clone()));
    for scope in scopes {
        let mut current = own.clone();
        current.extend(scope.iter().cloned());
        let children = all
            .keys()
            .map(|m| segments(m))
            .filter(|m| m.len() == current.len() + 1 && m[..current.len()] == current[..]);
        for child in children {
            let name = child.last().unwrap();
            for (at, path) in paths_after(&source.code, &format!("{name}::")) {
                if inline_path_at(&source.inline, at) != scope.as_slice() {
                    continue;
                }
                let written = format!("{name}::{}", join(&path));
                let mut abs = child.clone();
                abs.extend(path);
                out.push(Reference {
                    at,
                    written,
                    path: abs,
                });
            }
        }
    }
    out
}

/// The deepest module of `modules` that `path` lies in (not the crate root).
fn resolve(modules: &Modules, path: &[String]) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains_key(m))
}

/// The file modules of `unit` and which import which.
fn edges(unit: &Unit) -> (Modules, Graph) {
    let modules: Modules = unit
        .files
        .iter()
        .map(|(m, s)| (m.clone(), s.path.clone()))
        .collect();
    let all = all_modules(unit);
    let mut graph = Graph::new();
    for (module, source) in &unit.files {
        for reference in references(&all, module, source) {
            if let Some(to) = resolve(&modules, &reference.path)
                && &to != module
            {
                graph.entry(module.clone()).or_default().insert(to);
            }
        }
    }
    (modules, graph)
}

/// Tarjan's strongly connected components with more than one member.
fn cycles(graph: &Graph, nodes: &[String]) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
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

/// An upward import: `file:line` names `written`, defined in `module` of `defined_in`,
/// an ancestor of the file's module.
#[derive(Debug)]
struct Upward {
    file: PathBuf,
    line: usize,
    written: String,
    module: String,
    defined_in: PathBuf,
}

/// Paths that name an item defined in a module composing the file that names them. A
/// path resolves to the deepest module it lies in (inline modules included: an inline
/// module of the root that does not contain the file is not an ancestor of it).
fn upward_imports(unit: &Unit) -> Vec<Upward> {
    let all = all_modules(unit);
    let mut found = Vec::new();
    for (module, source) in &unit.files {
        let own = segments(module);
        let mut seen = BTreeSet::new();
        for reference in references(&all, module, source) {
            let to = (0..=reference.path.len())
                .rev()
                .map(|n| join(&reference.path[..n]))
                .find(|m| all.contains_key(m))
                .unwrap_or_default();
            let ancestor = segments(&to).len() < own.len() && own.starts_with(&segments(&to));
            if ancestor && seen.insert(reference.written.clone()) {
                found.push(Upward {
                    file: source.path.clone(),
                    line: line_of(&source.code, reference.at),
                    written: reference.written,
                    defined_in: all[&to].clone(),
                    module: to,
                });
            }
        }
    }
    found.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    found
}

/// A function with a body: its name, the line of its `fn`, and lines to its `}`.
#[derive(Debug, PartialEq)]
struct Function {
    name: String,
    line: usize,
    lines: usize,
}

/// Every function with a body in `code` (masked): free functions, methods of impls and
/// default methods of traits, nested ones too. A `fn` without a body (a trait method,
/// a foreign function) or a `fn(..)` pointer type is none.
fn functions(code: &str) -> Vec<Function> {
    let mut found = Vec::new();
    for at in words(code, "fn") {
        let rest = &code[at + "fn".len()..];
        if !rest.starts_with(char::is_whitespace) {
            continue;
        }
        let name = ident_at(rest.trim_start());
        if name.is_empty() {
            continue;
        }
        let Some((open, '{')) = item_end(code, at) else {
            continue;
        };
        let close = matching_brace(code, open).unwrap_or(code.len() - 1);
        let line = line_of(code, at);
        found.push(Function {
            name: name.to_owned(),
            line,
            lines: line_of(code, close) - line + 1,
        });
    }
    found
}

/// Each file of `crates` once, with its source.
fn sources<'a>(crates: &'a [(&'static str, Vec<Unit>)]) -> BTreeMap<&'a Path, &'a Source> {
    crates
        .iter()
        .flat_map(|(_, units)| units)
        .flat_map(|u| u.files.values())
        .map(|s| (s.path.as_path(), s))
        .collect()
}

#[test]
fn the_module_map_finds_every_crate_and_file() {
    let root = workspace();
    let mut problems = Vec::new();
    for (name, least) in EXPECTED {
        let src = root.join(name).join("src");
        if !src.is_dir() {
            problems.push(format!("{name}: no src folder"));
            continue;
        }
        let files: usize = units_of(&src, &read_tree(&src), false)
            .iter()
            .map(|u| u.files.len())
            .sum();
        if files < least {
            problems.push(format!(
                "{name}: only {files} files found (at least {least})"
            ));
        }
    }
    for name in CRATES {
        let src = root.join(name).join("src");
        if !src.is_dir() {
            continue;
        }
        // With test items kept, the roots and their `mod` declarations reach every file.
        let files = read_tree(&src);
        let units = units_of(&src, &files, true);
        if units.is_empty() {
            problems.push(format!("{name}: no lib.rs, main.rs or bin/*.rs"));
        }
        let reached: BTreeSet<&PathBuf> = units
            .iter()
            .flat_map(|u| u.files.values().map(|s| &s.path))
            .collect();
        for file in files.keys().filter(|f| !reached.contains(f)) {
            problems.push(format!("{}: not reached from a crate root", shown(file)));
        }
        for unit in &units {
            for missing in &unit.missing {
                problems.push(format!("{missing}: no file found"));
            }
        }
    }
    // The function finder sees the code: the library crates hold hundreds of functions.
    let sized = crates(&SIZED);
    let functions: usize = sources(&sized)
        .values()
        .map(|s| functions(&s.code).len())
        .sum();
    if functions < 500 {
        problems.push(format!("only {functions} functions found in {SIZED:?}"));
    }
    assert!(problems.is_empty(), "module map:\n{}", problems.join("\n"));
}

#[test]
fn no_crate_has_an_import_cycle_between_its_files() {
    let mut problems = Vec::new();
    let mut edges_seen = 0;
    for (name, units) in crates(&CRATES) {
        for unit in &units {
            let (modules, graph) = edges(unit);
            edges_seen += graph.values().map(BTreeSet::len).sum::<usize>();
            let nodes: Vec<String> = modules.keys().cloned().collect();
            for cycle in cycles(&graph, &nodes) {
                let files: Vec<String> = cycle.iter().map(|m| shown(&modules[m])).collect();
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
                    "{name} ({}): {} ({})",
                    unit.name,
                    files.join(", "),
                    ties.join("; ")
                ));
            }
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
fn no_file_imports_from_a_module_that_composes_it() {
    let mut problems = Vec::new();
    for (_, units) in crates(&CRATES) {
        for unit in &units {
            for up in upward_imports(unit) {
                let module = if up.module.is_empty() {
                    "the crate root".to_owned()
                } else {
                    format!("module {}", up.module)
                };
                problems.push(format!(
                    "{}:{}: `{}` is defined in {} ({}), which composes this file",
                    shown(&up.file),
                    up.line,
                    up.written,
                    shown(&up.defined_in),
                    module,
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} upward imports (move the item down into its own module, or name it \
         where it is defined):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn no_library_source_file_is_over_the_line_limit() {
    let sized = crates(&SIZED);
    let mut problems: Vec<String> = sources(&sized)
        .values()
        .filter(|s| s.lines > MAX_FILE_LINES)
        .map(|s| {
            format!(
                "{}: {} lines outside #[cfg(test)] items (limit {MAX_FILE_LINES})",
                shown(&s.path),
                s.lines
            )
        })
        .collect();
    problems.sort();
    assert!(
        problems.is_empty(),
        "{} files too long:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn no_library_function_is_over_the_line_limit() {
    let sized = crates(&SIZED);
    let mut problems = Vec::new();
    for source in sources(&sized).values() {
        for f in functions(&source.code) {
            if f.lines > MAX_FN_LINES {
                problems.push(format!(
                    "{}:{}: fn {} is {} lines (limit {MAX_FN_LINES})",
                    shown(&source.path),
                    f.line,
                    f.name,
                    f.lines
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} functions too long:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A unit from in-memory files (paths under `src/`), rooted at `src/lib.rs`.
fn unit_of(files: &[(&str, &str)]) -> Unit {
    let files: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|(p, t)| (Path::new("src").join(p), (*t).to_owned()))
        .collect();
    load_unit("fixture".to_owned(), &files, Path::new("src/lib.rs"), false)
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let unit = unit_of(&[
        (
            "lib.rs",
            "pub mod a;\npub mod b;\npub mod c;\npub mod folder;\n",
        ),
        ("a.rs", "use crate::b::Thing;\n"),
        (
            "b.rs",
            "use crate::{c::{self, X}, folder};\n#[cfg(test)]\nmod tests { use crate::a::Y; }\n",
        ),
        ("c.rs", "pub fn f() { crate::a::g() }\n"),
        (
            "folder/mod.rs",
            "mod deep;\nmod inner;\npub use inner::Z;\n",
        ),
        ("folder/deep.rs", "use super::super::a::Up;\n"),
        (
            "folder/inner.rs",
            "use super::Other;\n// crate::a is only a comment\n",
        ),
    ]);
    assert!(unit.missing.is_empty(), "{:?}", unit.missing);
    let (modules, graph) = edges(&unit);
    assert_eq!(modules.len(), 7, "{modules:?}");
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
}

#[test]
fn the_upward_import_finder_finds_upward_imports() {
    let unit = unit_of(&[
        (
            "lib.rs",
            "pub mod a;\npub mod folder;\npub mod shelf {\n    pub mod leaf;\n    \
             pub struct Shelved;\n}\npub mod generated {\n    pub struct Message;\n}\n\
             pub struct Top;\n",
        ),
        (
            "a.rs",
            "use crate::Top;\nuse crate::folder::Mid;\nmod inner {\n    use super::Own;\n}\n\
             pub struct Own;\n",
        ),
        ("folder/mod.rs", "mod inner;\nmod other;\npub struct Mid;\n"),
        (
            "folder/inner.rs",
            "use super::Mid;\nuse super::other::Fine;\nuse crate::generated::Message;\n\
             use crate::a::Own;\nconst S: &str = \"crate::Top\"; // super::Mid\n\
             use crate::{\n    folder::{\n        other::Fine,\n    },\n};\n\
             #[cfg(test)]\nmod tests {\n    use super::super::*;\n    use crate::Top;\n}\n",
        ),
        (
            "folder/other.rs",
            "use super::{super::Top as Alias, inner};\nuse super::*;\npub struct Fine;\n",
        ),
        ("shelf/leaf.rs", "use crate::shelf::Shelved;\n"),
    ]);
    assert!(unit.missing.is_empty(), "{:?}", unit.missing);
    assert_eq!(unit.files.len(), 6);
    let found: Vec<(String, usize, String, String)> = upward_imports(&unit)
        .into_iter()
        .map(|u| {
            (
                u.file.display().to_string(),
                u.line,
                u.written,
                u.defined_in.display().to_string(),
            )
        })
        .collect();
    let want = |f: &str, l: usize, w: &str, d: &str| (f.to_owned(), l, w.to_owned(), d.to_owned());
    assert_eq!(
        found,
        vec![
            want("src/a.rs", 1, "crate::Top", "src/lib.rs"),
            want("src/folder/inner.rs", 1, "super::Mid", "src/folder/mod.rs"),
            want("src/folder/other.rs", 1, "super::super::Top", "src/lib.rs"),
            want("src/folder/other.rs", 2, "super::*", "src/folder/mod.rs"),
            want(
                "src/shelf/leaf.rs",
                1,
                "crate::shelf::Shelved",
                "src/lib.rs"
            ),
        ]
    );
}

#[test]
fn masking_blanks_comments_strings_and_chars_but_keeps_lines() {
    let text = "let a = \"{ crate::x\"; // crate::y {\nlet b = r#\"}\" {\"#; /* { /* } */ } */\n\
                let c = '{'; let d = '\\''; let e = b'}'; let f: &'a str = \"\\\"{\";\n\
                let g = br\"{\"; 'outer: loop {}\n";
    let masked = mask(text);
    assert_eq!(masked.lines().count(), text.lines().count());
    assert_eq!(masked.len(), text.len());
    assert!(!masked.contains("crate::"), "{masked}");
    // The only braces left are those of the loop.
    assert_eq!(masked.matches('{').count(), 1, "{masked}");
    assert_eq!(masked.matches('}').count(), 1, "{masked}");
    assert!(masked.contains("&'a str") && masked.contains("'outer: loop"));
}

#[test]
fn functions_are_measured_from_fn_to_closing_brace() {
    let text = r##"/// A doc comment with a brace { and fn fake() {
pub(crate) async fn strings<'a, T: Fn() -> u8>(x: &'a str) -> String
where
    T: Clone,
{
    let a = "{";
    let b = r#"}" { "#;
    let c = '{';
    let d = '\'';
    let e = b'}';
    /* } /* nested } */ */
    // }
    format!("{}{{", a)
}

trait T {
    fn no_body(&self) -> [u8; 2];
    fn with_body(&self) {}
}

impl<'a> S<'a> {
    pub const unsafe fn k() -> [u8; 2] {
        let f: fn(u8) -> u8 = |x| x;
        [0; 2]
    }
}

#[cfg(test)]
mod tests {
    fn hidden() {
        let x = "}";
    }
}
"##;
    let (code, tests) = strip_tests(&mask(text));
    let got = functions(&code);
    let f = |name: &str, line: usize, lines: usize| Function {
        name: name.to_owned(),
        line,
        lines,
    };
    assert_eq!(
        got,
        vec![f("strings", 2, 13), f("with_body", 18, 1), f("k", 22, 4)]
    );
    // 33 lines, of which the last 6 are a test module.
    assert_eq!(text.lines().count(), 33);
    assert_eq!(count_lines(&code, &tests), 27);
}
