//! Honest dependencies. skeptic hands every crate of the target directory to
//! rustc, transitive ones too, so a block could compile here and fail in a
//! reader's crate. This test reads every Rust block of the book and checks
//! that each crate it names is a direct dependency of the book's package (the
//! top `Cargo.toml`, whose build script turns the blocks into tests) and is
//! listed, with the same version, in its chapter's `toml` block; and that a
//! chapter lists no crate its code does not use. Both packages take every
//! crate from `[workspace.dependencies]`, so that the book's blocks and the
//! programs are built against one version and one feature set of each.

use crate::common;

use crate::book;

use std::collections::{BTreeMap, BTreeSet};

use book::Attributes;

/// Names a path may start with that are not crates.
const NOT_CRATES: &[&str] = &[
    "std", "core", "alloc", "crate", "self", "super", "bool", "char", "str", "u8",
    "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128",
    "isize", "f32", "f64",
];

/// The entries of the table `[section]` of a TOML text, one a line: key
/// to value, both as written.
fn entries(toml: &str, section: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut inside = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == format!("[{section}]");
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=').filter(|_| inside) {
            found.insert(key.trim().to_string(), value.trim().to_string());
        }
    }
    found
}

/// The version of a dependency's spec: `"1"` or `{ version = "1", ... }`.
fn version(spec: &str) -> String {
    let version = match spec.find("version") {
        Some(at) => &spec[at..],
        None => spec,
    };
    version.split('"').nth(1).unwrap_or_default().to_string()
}

/// `[dependencies]` of a TOML text with versions (a chapter's `toml`
/// block): crate name (with `_`) to version.
fn dependencies(toml: &str) -> BTreeMap<String, String> {
    entries(toml, "dependencies")
        .into_iter()
        .map(|(name, spec)| (name.replace('-', "_"), version(&spec)))
        .collect()
}

/// The `[dependencies]` of the workspace package in `manifest`, each
/// `name.workspace = true`, with its version from the top `Cargo.toml`'s
/// `[workspace.dependencies]`: crate name (with `_`) to version.
fn workspace_dependencies(manifest: &str, what: &str) -> BTreeMap<String, String> {
    let top = std::fs::read_to_string(common::repo_root().join("Cargo.toml"))
        .expect("Cargo.toml");
    let versions = entries(&top, "workspace.dependencies");
    let mut found = BTreeMap::new();
    for (key, value) in entries(manifest, "dependencies") {
        let name = key.strip_suffix(".workspace");
        let name = name.filter(|_| value == "true").unwrap_or_else(|| {
            panic!("{what}: `{key} = {value}` is not `NAME.workspace = true`")
        });
        let spec = versions.get(name).unwrap_or_else(|| {
            panic!("{what}: {name} is not in the top Cargo.toml's [workspace.dependencies]")
        });
        found.insert(name.replace('-', "_"), version(spec));
    }
    found
}

#[test]
fn both_packages_take_the_same_crates_from_the_workspace() {
    let read = |path: &str| {
        std::fs::read_to_string(common::repo_root().join(path)).expect("a manifest")
    };
    let book = workspace_dependencies(&read("Cargo.toml"), "Cargo.toml");
    let recipes =
        workspace_dependencies(&read("recipes/Cargo.toml"), "recipes/Cargo.toml");
    assert!(book.contains_key("arrow_flight"), "{book:?}");
    assert_eq!(book, recipes, "the book's package and recipes/ differ");
}

/// The code without comments and string, byte and char literals.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        if rest.starts_with(&['/', '/']) {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if rest.starts_with(&['/', '*']) {
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if chars[i] == 'r' && raw_string_at(rest) && !ident_before(&chars, i)
        {
            let hashes = rest[1..].iter().take_while(|c| **c == '#').count();
            i += 2 + hashes;
            while i < chars.len()
                && !(chars[i] == '"'
                    && chars[i + 1..].iter().take(hashes).all(|c| *c == '#'))
            {
                i += 1;
            }
            i += 1 + hashes;
            out.push_str("\"\"");
        } else if chars[i] == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if chars[i] == '\''
            && (rest.get(2) == Some(&'\'') || rest.get(1) == Some(&'\\'))
        {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// `r"..."` or `r#"..."#`, not a raw identifier such as `r#type`.
fn raw_string_at(rest: &[char]) -> bool {
    let hashes = rest[1..].iter().take_while(|c| **c == '#').count();
    rest.get(1 + hashes) == Some(&'"')
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// The crates a piece of Rust code names: roots of `use` paths, and roots of
/// other paths that no `use` or `mod` brought into scope.
fn crates_named(source: &str) -> BTreeSet<String> {
    let code = code_only(source);
    let (mut local, mut used) = (BTreeSet::new(), BTreeSet::new());
    let mut other = String::new();
    let mut remaining = code.as_str();
    while let Some(at) = find_word(remaining, "use") {
        other.push_str(&remaining[..at]);
        let end = remaining[at..]
            .find(';')
            .map_or(remaining.len(), |e| at + e);
        let tree = &remaining[at + 3..end];
        let mut names = tree
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|name| !name.is_empty())
            .map(str::to_string);
        used.extend(names.next());
        local.extend(names);
        remaining = &remaining[end..];
    }
    other.push_str(remaining);
    let words: Vec<&str> = other.split_whitespace().collect();
    let mut modules = BTreeSet::new();
    for pair in words.windows(2).filter(|pair| pair[0] == "mod") {
        modules.insert(pair[1].trim_end_matches(['{', ';']).to_string());
    }
    // `use NAME::...` of a module the file declares names no crate.
    used.retain(|name| !modules.contains(name));
    local.extend(modules);
    for (name, starts_path) in identifiers(&other) {
        if starts_path && !local.contains(&name) {
            used.insert(name);
        }
    }
    used.retain(|c: &String| {
        !NOT_CRATES.contains(&c.as_str())
            && c.starts_with(|ch: char| ch.is_ascii_lowercase())
    });
    used
}

/// Where `word` stands as a word of its own in `code`.
fn find_word(code: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = code[from..].find(word).map(|at| from + at) {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        let boundary =
            |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if boundary(before) && after.is_some_and(char::is_whitespace) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// Identifiers that start a path (not preceded by `::`, `.` or `>`), and
/// whether `::` follows them.
fn identifiers(code: &str) -> Vec<(String, bool)> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_alphabetic() || chars[i] == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_')
            {
                i += 1;
            }
            let before: String = chars[..start].iter().rev().take(2).collect();
            let after: String = chars[i..].iter().take(2).collect();
            let starts_path = !(before == "::"
                || before.starts_with('.')
                || before.starts_with('>'));
            if starts_path {
                found.push((chars[start..i].iter().collect(), after == "::"));
            }
        } else {
            i += 1;
        }
    }
    found
}

#[test]
fn the_crate_finder_sees_uses_paths_and_attributes() {
    let code = r#"
use arrow_flight::{Action, flight_service_client::FlightServiceClient};
use futures::stream::{self, BoxStream};
use tonic::transport::Channel as C;
mod local { pub fn f() {} }
#[tokio::main]
async fn main() {
    let url = "http://localhost:8816"; // base64::nothing
    let s = stream::iter([1]);
    local::f();
    let _ = i32::MAX;
    let x = rand::random::<u8>();
    let y = 'a'; let z = b"x::y"; let t = action.r#type; let w = http::Uri::default(); let v = it.try_collect::<Vec<_>>();
}
"#;
    let found: Vec<String> = crates_named(code).into_iter().collect();
    assert_eq!(
        found,
        ["arrow_flight", "futures", "http", "rand", "tokio", "tonic"]
    );
}

#[test]
fn every_crate_a_block_names_is_a_direct_dependency_listed_by_its_chapter() {
    let root = common::repo_root();
    let manifest =
        std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let direct = workspace_dependencies(&manifest, "Cargo.toml");
    assert!(direct.contains_key("arrow_flight"), "{direct:?}");
    let src = root.join("book/src");
    let mut problems = Vec::new();
    let mut chapters_checked = 0;
    for entry in std::fs::read_dir(&src).expect("book/src") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let markdown = std::fs::read_to_string(&path).expect("chapter");
        let blocks = book::code_blocks(&markdown);
        let listed: BTreeMap<String, String> = blocks
            .iter()
            .filter(|b| b.info == "toml")
            .flat_map(|b| dependencies(&b.body.join("\n")))
            .collect();
        let mut chapter_crates = BTreeSet::new();
        for block in &blocks {
            let Ok(Some(attributes)) = Attributes::parse(&block.info) else {
                continue;
            };
            // A part of a program of several files names the crates of all
            // its files, also those a test target takes in by `#[path]`.
            if let Some(target) = &attributes.part_of {
                let recipes = common::repo_root().join("recipes");
                let manifest = std::fs::read_to_string(recipes.join("Cargo.toml"))
                    .expect("recipes/Cargo.toml");
                let main = book::target_path(&manifest, target).expect("a target");
                for file in book::module_files(&recipes.join(main)) {
                    let text = std::fs::read_to_string(&file).expect("a module");
                    chapter_crates.extend(crates_named(&text));
                }
            }
            // A part of a file shown alone (`{{#include FILE:ANCHOR}}`) names
            // the crates of the file's `use` lines: check the whole file.
            let body: Vec<String> = block
                .body
                .iter()
                .map(|line| match line.trim().strip_prefix("{{#include ") {
                    Some(rest) => match rest.split_once(':') {
                        Some((file, _)) => format!("{{{{#include {file}}}}}"),
                        None => line.clone(),
                    },
                    None => line.clone(),
                })
                .collect();
            let expanded = book::expand(&body, &src).expect("expand");
            let all: Vec<&str> = expanded
                .code
                .lines()
                .map(|l| l.trim_start().strip_prefix("# ").unwrap_or(l))
                .collect();
            for krate in crates_named(&all.join("\n")) {
                if krate.starts_with("flight_cookbook") {
                    problems.push(format!(
                        "{name}:{}: names this package, which a reader does not have",
                        block.line
                    ));
                } else if !direct.contains_key(&krate) {
                    problems.push(format!(
                        "{name}:{}: `{krate}` is not a direct dependency",
                        block.line
                    ));
                }
            }
            chapter_crates.extend(crates_named(&all.join("\n")));
        }
        if chapter_crates.is_empty() {
            continue;
        }
        chapters_checked += 1;
        for krate in &chapter_crates {
            match listed.get(krate) {
                None => problems.push(format!(
                    "{name}: uses `{krate}` but its toml block does not list it"
                )),
                Some(version) if direct.get(krate) != Some(version) => problems
                    .push(format!(
                        "{name}: lists {krate} {version}, the package tests {}",
                        direct.get(krate).map_or("nothing", String::as_str)
                    )),
                Some(_) => {}
            }
        }
        for krate in listed.keys().filter(|k| !chapter_crates.contains(*k)) {
            problems.push(format!(
                "{name}: lists `{krate}`, which its code does not use"
            ));
        }
    }
    assert!(chapters_checked > 0, "no chapter with Rust code found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
