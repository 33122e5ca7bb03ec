//! The layout check (issue 16): no import cycle between a crate's top-level
//! modules, in `signet-proxy` and in `signet-client`.
//!
//! It reads every `crate::` path in the sources (in `use` or inline, grouped
//! `crate::{a::X, b::Y}` included; comments and string literals skipped),
//! and every `super::` path that climbs out of a top-level module, resolves
//! names the crate root re-exports (`crate::Config` is `config`), builds the
//! graph of which top-level module uses which, and fails on a cycle,
//! printing it with the file and line each edge comes from.
//!
//! `signet-proxy` has no cycle left: [`PROXY_ALLOWED`], the edges phase 1
//! of issue 16 had to allow, ended empty in phase 2 as each type moved to
//! the module it belongs in. Keep it empty: never add an edge, move the type
//! instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A `from → to` edge between top-level modules that may close a cycle for
/// now, and why it exists.
pub struct Allowed {
    from: &'static str,
    to: &'static str,
    why: &'static str,
}

const fn allow(from: &'static str, to: &'static str, why: &'static str) -> Allowed {
    Allowed { from, to, why }
}

/// `signet-proxy`'s cycle edges allowed for now: none since issue 16's
/// phase 2.
pub const PROXY_ALLOWED: &[Allowed] = &[];

#[test]
fn signet_proxy_has_no_import_cycle_between_top_level_modules_but_the_allowed_edges() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = Graph::read(&src).unwrap_or_else(|error| panic!("{error}"));
    assert!(graph.has("app", "pipeline"), "the check reads signet-proxy");
    if let Err(error) = graph.check(PROXY_ALLOWED) {
        panic!("signet-proxy: {error}");
    }
}

#[test]
fn signet_client_has_no_import_cycle_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../signet-client/src");
    let graph = Graph::read(&src).unwrap_or_else(|error| panic!("{error}"));
    assert!(
        graph.has("agent", "signer"),
        "the check reads signet-client"
    );
    if let Err(error) = graph.check(&[]) {
        panic!("signet-client: {error}");
    }
}

// ---------------------------------------------------------------------------
// The check on crates written for it: it finds what it must
// ---------------------------------------------------------------------------

/// A crate with the cycle `a → b → c → a`, made of each kind of path the
/// check reads, and decoys it must not read.
fn cyclic_crate() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let files: &[(&str, &str)] = &[
        (
            "lib.rs",
            "//! A crate.\npub mod a;\nmod b;\npub(crate) mod c;\nmod d;\npub use a::Thing as Renamed;\npub use serde;\n",
        ),
        // A grouped `use`: a → b.
        ("a.rs", "use crate::{b::X, d};\npub struct Thing;\n"),
        // From a nested file, `super::super::` climbs to the root: b → c.
        ("b/mod.rs", "mod inner;\npub struct X;\n"),
        (
            "b/inner.rs",
            "fn f() { super::super::c::g(); }\nmod tests { use super::*; }\n",
        ),
        // Through a root re-export, inline: c → a. Comments, strings, a
        // char and a lifetime mention other modules without using them.
        (
            "c.rs",
            "// crate::d::Y\n/* crate::d /* nested */ crate::d */\npub fn g() -> crate::Renamed {\n    let _ = \"crate::d\";\n    let _ = r#\"crate::d \"quoted\"\"#;\n    let _ = '\\'';\n    fn h<'a>(x: &'a str) -> &'a str { x }\n    let _ = crate::serde::de::IgnoredAny;\n    crate::a::Thing\n}\n",
        ),
        ("d.rs", "pub(crate) fn e() {}\n"),
    ];
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    dir
}

#[test]
fn the_layout_check_reads_grouped_nested_and_re_exported_paths_and_skips_comments_and_strings() {
    let dir = cyclic_crate();
    let graph = Graph::read(dir.path()).unwrap();
    let edges: Vec<(&str, &str)> = graph
        .edges
        .keys()
        .map(|(from, to)| (from.as_str(), to.as_str()))
        .collect();
    assert_eq!(edges, [("a", "b"), ("a", "d"), ("b", "c"), ("c", "a")]);
}

#[test]
fn the_layout_check_prints_a_cycle_with_where_each_edge_comes_from() {
    let dir = cyclic_crate();
    let graph = Graph::read(dir.path()).unwrap();
    let error = graph.check(&[]).unwrap_err();
    assert!(error.contains("import cycle"), "{error}");
    assert!(error.contains("a → b  (a.rs:1)"), "{error}");
    assert!(error.contains("b → c  (b/inner.rs:1)"), "{error}");
    assert!(error.contains("c → a  (c.rs:3, c.rs:9)"), "{error}");
}

#[test]
fn the_layout_check_passes_with_the_cycle_edge_allowed_and_fails_on_a_stale_allowance() {
    let dir = cyclic_crate();
    let graph = Graph::read(dir.path()).unwrap();
    graph
        .check(&[allow("c", "a", "test")])
        .expect("the cycle is broken at c → a");

    let gone = graph
        .check(&[allow("c", "a", "test"), allow("d", "a", "test")])
        .unwrap_err();
    assert!(gone.contains("d → a no longer exists"), "{gone}");

    let not_on_a_cycle = graph
        .check(&[allow("c", "a", "test"), allow("a", "d", "test")])
        .unwrap_err();
    assert!(
        not_on_a_cycle.contains("a → d is on no cycle any more"),
        "{not_on_a_cycle}"
    );
}

#[test]
fn the_layout_check_refuses_a_crate_path_it_cannot_place() {
    let dir = cyclic_crate();
    std::fs::write(dir.path().join("d.rs"), "fn e() { crate::nowhere(); }\n").unwrap();
    let Err(error) = Graph::read(dir.path()) else {
        panic!("crate::nowhere was placed somewhere");
    };
    assert!(error.contains("crate::nowhere (d.rs:1)"), "{error}");
}

// ---------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------

/// Which top-level module uses which, with where (`file:line`).
pub struct Graph {
    edges: BTreeMap<(String, String), Vec<String>>,
}

/// What a crate root (`lib.rs`, `main.rs`) declares: its modules, and the
/// names its `use` items bind, with the first segment of their path.
struct Root {
    file: &'static str,
    modules: BTreeSet<String>,
    names: BTreeMap<String, String>,
}

impl Graph {
    /// Reads the crate(s) whose roots are `src/lib.rs` and `src/main.rs`.
    pub fn read(src: &Path) -> Result<Graph, String> {
        let mut roots = Vec::new();
        for file in ["lib.rs", "main.rs"] {
            let path = src.join(file);
            if path.exists() {
                roots.push(Root::read(file, &read(&path)?)?);
            }
        }
        let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for path in rust_files(src)? {
            let relative = path
                .strip_prefix(src)
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .replace('\\', "/");
            if relative == "lib.rs" || relative == "main.rs" {
                continue;
            }
            let parts: Vec<&str> = relative.split('/').collect();
            let top = parts[0].trim_end_matches(".rs");
            let owners: Vec<&Root> = roots.iter().filter(|r| r.modules.contains(top)).collect();
            let root = match owners.as_slice() {
                [root] => *root,
                [] => return Err(format!("{relative}: no `mod {top};` in lib.rs or main.rs")),
                _ => {
                    return Err(format!(
                        "{relative}: `mod {top};` in both lib.rs and main.rs"
                    ))
                }
            };
            let depth = parts.len() - usize::from(relative.ends_with("/mod.rs"));
            let text = read(&path)?;
            if text.contains("#[path") {
                return Err(format!("{relative}: #[path] is beyond this check"));
            }
            for (name, line) in root_paths(&tokens(&text), depth, &relative)? {
                let Some(to) = root.resolve(&name, &relative, line)? else {
                    continue;
                };
                if to != top {
                    edges
                        .entry((top.to_owned(), to))
                        .or_default()
                        .push(format!("{relative}:{line}"));
                }
            }
        }
        for evidence in edges.values_mut() {
            evidence.dedup();
        }
        Ok(Graph { edges })
    }

    /// Whether `from` uses `to`.
    pub fn has(&self, from: &str, to: &str) -> bool {
        self.edges.contains_key(&(from.to_owned(), to.to_owned()))
    }

    /// Fails on a cycle once the allowed edges are taken out, and on an
    /// allowed edge that is gone or on no cycle.
    pub fn check(&self, allowed: &[Allowed]) -> Result<(), String> {
        let mut problems = Vec::new();
        let is_allowed =
            |from: &str, to: &str| allowed.iter().any(|a| a.from == from && a.to == to);
        for edge in allowed {
            let key = (edge.from.to_owned(), edge.to.to_owned());
            if !self.edges.contains_key(&key) {
                problems.push(format!(
                    "allowed edge {} → {} no longer exists: delete it from the allow-list ({})",
                    edge.from, edge.to, edge.why
                ));
            } else if !self.reaches(edge.to, edge.from, |_, _| true) {
                problems.push(format!(
                    "allowed edge {} → {} is on no cycle any more: delete it from the allow-list ({})",
                    edge.from, edge.to, edge.why
                ));
            }
        }
        if let Some(cycle) = self.cycle(|from, to| !is_allowed(from, to)) {
            let mut text = String::from("import cycle between top-level modules:\n");
            for pair in cycle.windows(2) {
                let evidence = &self.edges[&(pair[0].clone(), pair[1].clone())];
                text.push_str(&format!(
                    "  {} → {}  ({})\n",
                    pair[0],
                    pair[1],
                    evidence.join(", ")
                ));
            }
            text.push_str("move the type that closes it to the module it belongs in");
            problems.push(text);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    fn successors<'a>(
        &'a self,
        from: &'a str,
        keep: impl Fn(&str, &str) -> bool + 'a,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.edges
            .keys()
            .filter(move |(f, t)| f == from && keep(f, t))
            .map(|(_, t)| t.as_str())
    }

    /// Whether `to` can be reached from `from` over the kept edges.
    fn reaches(&self, from: &str, to: &str, keep: impl Fn(&str, &str) -> bool + Copy) -> bool {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(node) = stack.pop() {
            if node == to {
                return true;
            }
            if seen.insert(node.clone()) {
                stack.extend(self.successors(&node, keep).map(str::to_owned));
            }
        }
        false
    }

    /// One cycle over the kept edges, first node repeated at the end.
    fn cycle(&self, keep: impl Fn(&str, &str) -> bool + Copy) -> Option<Vec<String>> {
        let nodes: BTreeSet<&str> = self.edges.keys().map(|(f, _)| f.as_str()).collect();
        let mut done = BTreeSet::new();
        for start in nodes {
            let mut path = Vec::new();
            if let Some(cycle) = self.visit(start, keep, &mut path, &mut done) {
                return Some(cycle);
            }
        }
        None
    }

    fn visit(
        &self,
        node: &str,
        keep: impl Fn(&str, &str) -> bool + Copy,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        let next: Vec<String> = self.successors(node, keep).map(str::to_owned).collect();
        for successor in next {
            if let Some(cycle) = self.visit(&successor, keep, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
}

impl Root {
    fn read(file: &'static str, text: &str) -> Result<Root, String> {
        let tokens = tokens(text);
        let mut root = Root {
            file,
            modules: BTreeSet::new(),
            names: BTreeMap::new(),
        };
        let mut depth = 0usize;
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i].tok {
                Tok::Open => depth += 1,
                Tok::Close => depth = depth.saturating_sub(1),
                Tok::Ident(word) if depth == 0 && word == "mod" => {
                    if let (Some(Tok::Ident(name)), Some(Tok::Semi)) = (
                        tokens.get(i + 1).map(|t| &t.tok),
                        tokens.get(i + 2).map(|t| &t.tok),
                    ) {
                        root.modules.insert(name.clone());
                    }
                }
                Tok::Ident(word) if depth == 0 && word == "use" => {
                    i += 1;
                    let mut bound = Vec::new();
                    use_tree(&tokens, &mut i, &mut Vec::new(), &mut bound);
                    for (name, path) in bound {
                        if let Some(first) = path
                            .iter()
                            .find(|s| !matches!(s.as_str(), "crate" | "self" | "super"))
                        {
                            root.names.insert(name, first.clone());
                        }
                    }
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        Ok(root)
    }

    /// The top-level module `crate::name` is in; `None` for another crate
    /// the root re-exports.
    fn resolve(&self, name: &str, file: &str, line: usize) -> Result<Option<String>, String> {
        if self.modules.contains(name) {
            return Ok(Some(name.to_owned()));
        }
        match self.names.get(name) {
            Some(first) if self.modules.contains(first) => Ok(Some(first.clone())),
            Some(_) => Ok(None),
            None => Err(format!(
                "crate::{name} ({file}:{line}): neither a module nor a `use` of {}; teach tests/layout/mod.rs where it lives",
                self.file
            )),
        }
    }
}

/// Reads one `use` tree from `tokens[*i]` on; each name it binds, with its
/// full path.
fn use_tree(
    tokens: &[Token],
    i: &mut usize,
    prefix: &mut Vec<String>,
    bound: &mut Vec<(String, Vec<String>)>,
) {
    let depth = prefix.len();
    while let Some(token) = tokens.get(*i) {
        match &token.tok {
            Tok::Ident(segment) => {
                *i += 1;
                if tokens.get(*i).map(|t| &t.tok) == Some(&Tok::PathSep) {
                    *i += 1;
                    prefix.push(segment.clone());
                    continue;
                }
                let mut name = if segment == "self" {
                    prefix.last().cloned().unwrap_or_default()
                } else {
                    segment.clone()
                };
                let mut path = prefix.clone();
                if segment != "self" {
                    path.push(segment.clone());
                }
                if let Some(Tok::Ident(word)) = tokens.get(*i).map(|t| &t.tok) {
                    if word == "as" {
                        if let Some(Tok::Ident(alias)) = tokens.get(*i + 1).map(|t| &t.tok) {
                            name = alias.clone();
                        }
                        *i += 2;
                    }
                }
                bound.push((name, path));
                break;
            }
            Tok::Open => {
                *i += 1;
                while let Some(token) = tokens.get(*i) {
                    match token.tok {
                        Tok::Close => {
                            *i += 1;
                            break;
                        }
                        Tok::Comma => *i += 1,
                        _ => use_tree(tokens, i, prefix, bound),
                    }
                }
                break;
            }
            // `*`, or the end of the tree.
            _ => {
                if !matches!(token.tok, Tok::Semi | Tok::Comma | Tok::Close) {
                    *i += 1;
                }
                break;
            }
        }
    }
    prefix.truncate(depth);
    if tokens.get(*i).map(|t| &t.tok) == Some(&Tok::Semi) && depth == 0 {
        *i += 1;
    }
}

/// Every path of a file (`depth` modules below the root) that names a
/// root-level item: `crate::x…`, `crate::{x…, y…}`, and `super::…` chains
/// that climb out of the top-level module. The first segment and its line.
fn root_paths(tokens: &[Token], depth: usize, file: &str) -> Result<Vec<(String, usize)>, String> {
    let mut found = Vec::new();
    let mut braces = 0usize;
    // Brace depths at which an inline `mod name { … }` opened.
    let mut inline: Vec<usize> = Vec::new();
    let tok = |i: usize| tokens.get(i).map(|t| &t.tok);
    let mut i = 0;
    while i < tokens.len() {
        let line = tokens[i].line;
        match &tokens[i].tok {
            Tok::Open => braces += 1,
            Tok::Close => {
                if inline.last() == Some(&braces) {
                    inline.pop();
                }
                braces = braces.saturating_sub(1);
            }
            Tok::Ident(word) if word == "mod" => {
                if let (Some(Tok::Ident(_)), Some(Tok::Open)) = (tok(i + 1), tok(i + 2)) {
                    inline.push(braces + 1);
                }
            }
            Tok::Ident(word)
                if word == "crate"
                    && tok(i + 1) == Some(&Tok::PathSep)
                    && (i == 0 || tok(i - 1) != Some(&Tok::Other('$'))) =>
            {
                found.extend(first_segments(tokens, i + 2).into_iter().map(|s| (s, line)));
            }
            Tok::Ident(word)
                if word == "super"
                    && tok(i + 1) == Some(&Tok::PathSep)
                    && (i == 0 || tok(i - 1) != Some(&Tok::PathSep)) =>
            {
                let mut climbs = 0;
                let mut j = i;
                while tok(j) == Some(&Tok::Ident("super".to_owned()))
                    && tok(j + 1) == Some(&Tok::PathSep)
                {
                    climbs += 1;
                    j += 2;
                }
                let here = depth + inline.len();
                if climbs > here {
                    return Err(format!(
                        "{file}:{line}: `super::` climbs above the crate root"
                    ));
                }
                if climbs == here {
                    found.extend(first_segments(tokens, j).into_iter().map(|s| (s, line)));
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(found)
}

/// The first segment of the path at `tokens[i]`, or of each path of the
/// group `{…}` there.
fn first_segments(tokens: &[Token], i: usize) -> Vec<String> {
    match tokens.get(i).map(|t| &t.tok) {
        Some(Tok::Ident(name)) => vec![name.clone()],
        Some(Tok::Open) => {
            let mut names = Vec::new();
            let mut level = 0usize;
            let mut at_item_start = true;
            for token in &tokens[i + 1..] {
                match &token.tok {
                    Tok::Open => level += 1,
                    Tok::Close if level == 0 => break,
                    Tok::Close => level -= 1,
                    Tok::Comma if level == 0 => {
                        at_item_start = true;
                        continue;
                    }
                    Tok::Ident(name) if at_item_start && level == 0 && name != "self" => {
                        names.push(name.clone());
                    }
                    _ => {}
                }
                at_item_start = false;
            }
            names
        }
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------
// Just enough of a Rust lexer: identifiers and the punctuation of paths,
// with comments, strings and character literals skipped
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Semi,
    Other(char),
}

struct Token {
    tok: Tok,
    line: usize,
}

fn tokens(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Moves `i` to `end`, counting lines.
    let skip_to = |i: &mut usize, end: usize, line: &mut usize| {
        let end = end.min(chars.len());
        *line += chars[*i..end].iter().filter(|&&c| c == '\n').count();
        *i = end;
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && at(i + 1) == '/' {
            let end = (i..chars.len())
                .find(|&j| chars[j] == '\n')
                .unwrap_or(chars.len());
            skip_to(&mut i, end, &mut line);
        } else if c == '/' && at(i + 1) == '*' {
            let mut nesting = 0;
            let mut j = i;
            while j < chars.len() {
                if chars[j] == '/' && at(j + 1) == '*' {
                    nesting += 1;
                    j += 2;
                } else if chars[j] == '*' && at(j + 1) == '/' {
                    nesting -= 1;
                    j += 2;
                    if nesting == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            skip_to(&mut i, j, &mut line);
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            skip_to(&mut i, j + 1, &mut line);
        } else if c == '\'' {
            if at(i + 1) == '\\' {
                let end = (i + 3..chars.len())
                    .find(|&j| chars[j] == '\'')
                    .unwrap_or(chars.len());
                skip_to(&mut i, end + 1, &mut line);
            } else if at(i + 2) == '\'' {
                let end = i + 3;
                skip_to(&mut i, end, &mut line);
            } else {
                // A lifetime or a label.
                out.push(Token {
                    tok: Tok::Other('\''),
                    line,
                });
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            // A raw string: r"…", r#"…"#, br#"…"#.
            let r = if c == 'b' && at(i + 1) == 'r' {
                i + 1
            } else {
                i
            };
            if chars[r] == 'r' && (at(r + 1) == '"' || at(r + 1) == '#') {
                let hashes = (r + 1..chars.len())
                    .take_while(|&j| chars[j] == '#')
                    .count();
                if at(r + 1 + hashes) == '"' {
                    let close: Vec<char> = std::iter::once('"')
                        .chain(std::iter::repeat_n('#', hashes))
                        .collect();
                    let start = r + 2 + hashes;
                    let end = (start..chars.len())
                        .find(|&j| chars[j..].starts_with(&close))
                        .map_or(chars.len(), |j| j + close.len());
                    skip_to(&mut i, end, &mut line);
                    continue;
                }
                if hashes == 1 {
                    // A raw identifier: r#name.
                    i = r + 2;
                    continue;
                }
            }
            let end = (i..chars.len())
                .find(|&j| !(chars[j].is_alphanumeric() || chars[j] == '_'))
                .unwrap_or(chars.len());
            out.push(Token {
                tok: Tok::Ident(chars[i..end].iter().collect()),
                line,
            });
            i = end;
        } else if c.is_ascii_digit() {
            let end = (i..chars.len())
                .find(|&j| !(chars[j].is_alphanumeric() || chars[j] == '_'))
                .unwrap_or(chars.len());
            i = end;
        } else if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            let tok = match c {
                ':' if at(i + 1) == ':' => {
                    i += 1;
                    Tok::PathSep
                }
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                ';' => Tok::Semi,
                other => Tok::Other(other),
            };
            out.push(Token { tok, line });
            i += 1;
        }
    }
    out
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}
