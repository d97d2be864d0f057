//! The book's markdown, read the way mdBook shows it, and the program that
//! tests each Rust block.
//!
//! `build.rs` and several tests include this file as a module (it uses
//! `std` and pulldown-cmark), so the build and the tests read the book with
//! the same code.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// A fenced code block of a chapter.
#[derive(Clone, Debug, PartialEq)]
pub struct CodeBlock {
    /// The line of the opening fence, counted from 1.
    pub line: usize,
    /// The info string after the opening fence, such as `rust,no_run`.
    pub info: String,
    /// The lines between the fences, as written in the chapter.
    pub body: Vec<String>,
    /// The line of the closing fence.
    pub end_line: usize,
    /// The nearest heading above the block and its line.
    pub heading: Option<(usize, String)>,
    /// For a Rust block, the `text` block that follows it: its expected output.
    pub expected: Option<ExpectedOutput>,
}

/// The `text` block under a Rust block.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectedOutput {
    pub line: usize,
    pub text: String,
}

/// How a Rust block is tested, from the words of its info string.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attributes {
    /// Compiled only (`no_run`).
    pub no_run: bool,
    /// Neither compiled nor run (`ignore`); the chapter says why.
    pub ignore: bool,
    /// The block is a server program (`server`): it is started with the
    /// address `127.0.0.1:0`, and stopped with SIGTERM once it has printed
    /// its first line.
    pub server: bool,
    /// The block is a client of the server in `examples/NAME.rs`
    /// (`client_of=NAME`): that server is started in the background and its
    /// URL is the program's first argument.
    pub client_of: Option<String>,
    /// Seconds the program may run before it counts as hung (`timeout=N`).
    pub timeout_secs: Option<u64>,
    /// The block shows a part of a file that cargo compiles as part of the
    /// target NAME of `recipes/Cargo.toml` (`part_of=NAME`): `build.rs`
    /// checks that the file is in NAME's module tree and has the anchor, and
    /// skeptic does not compile the block again.
    pub part_of: Option<String>,
}

impl Attributes {
    /// Reads the info string of a block; `None` if it is not a Rust block.
    pub fn parse(info: &str) -> Result<Option<Attributes>, String> {
        let mut words = info.split(',').map(str::trim);
        if words.next() != Some("rust") {
            return Ok(None);
        }
        let mut attributes = Attributes::default();
        for word in words {
            match word.split_once('=') {
                None if word == "no_run" => attributes.no_run = true,
                None if word == "ignore" => attributes.ignore = true,
                None if word == "server" => attributes.server = true,
                None if word == "noplayground" || word == "editable" => {}
                Some(("client_of", name)) if is_identifier(name) => {
                    attributes.client_of = Some(name.to_string())
                }
                Some(("part_of", name)) if is_identifier(name) => {
                    attributes.part_of = Some(name.to_string())
                }
                Some(("timeout", secs)) => {
                    let secs = secs.parse().map_err(|_| {
                        format!("`timeout={secs}` is not a number of seconds")
                    })?;
                    attributes.timeout_secs = Some(secs);
                }
                _ => {
                    return Err(format!(
                        "unknown word `{word}` in `{info}` (known: no_run, ignore, server, \
                         client_of=NAME, part_of=NAME, timeout=SECONDS)"
                    ));
                }
            }
        }
        if attributes.server && attributes.client_of.is_some() {
            return Err(
                "a block is either a `server` or a `client_of=...`, not both"
                    .into(),
            );
        }
        let others = attributes.server
            || attributes.client_of.is_some()
            || attributes.no_run
            || attributes.ignore
            || attributes.timeout_secs.is_some();
        if attributes.part_of.is_some() && others {
            return Err("a `part_of=...` block takes no other word".into());
        }
        Ok(Some(attributes))
    }

    /// Whether the block is compiled and run.
    pub fn runs(&self) -> bool {
        !self.no_run && !self.ignore && self.part_of.is_none()
    }
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c == '_' || c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// The fenced code blocks of a chapter, with headings and expected outputs,
/// as pulldown-cmark finds them.
pub fn code_blocks(markdown: &str) -> Vec<CodeBlock> {
    use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag};
    let line_of = |offset: usize| markdown[..offset].matches('\n').count() + 1;
    let (mut blocks, mut heading, mut open) = (Vec::<CodeBlock>::new(), None, None);
    let mut previous_end = 0;
    for (event, range) in Parser::new(markdown).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading(..)) => {
                let title = markdown[range.clone()].lines().next().unwrap_or("");
                let title = title.trim_start_matches('#').trim().to_string();
                heading = Some((line_of(range.start), title));
            }
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                open = Some((info.trim().to_string(), String::new()));
            }
            Event::Text(text) => {
                if let Some((_, body)) = open.as_mut() {
                    body.push_str(&text);
                }
            }
            Event::End(Tag::CodeBlock(_)) => {
                let Some((info, body)) = open.take() else {
                    continue;
                };
                let block = CodeBlock {
                    line: line_of(range.start),
                    info,
                    body: body.lines().map(String::from).collect(),
                    end_line: line_of(range.end),
                    heading: heading.clone(),
                    expected: None,
                };
                if block.info == "text"
                    && let Some(previous) = blocks.last_mut()
                    && previous.info.starts_with("rust")
                    && previous.expected.is_none()
                    && markdown[previous_end..range.start].trim().is_empty()
                {
                    previous.expected = Some(ExpectedOutput {
                        line: block.line,
                        text: block.body.join("\n"),
                    });
                }
                previous_end = range.end;
                blocks.push(block);
            }
            _ => {}
        }
    }
    blocks
}

/// A block's code as mdBook shows it, includes expanded.
#[derive(Debug, PartialEq)]
pub struct Expanded {
    pub code: String,
    /// The block shows only an anchored part of a file and hides the rest.
    pub partial: bool,
    /// The files it includes.
    pub files: Vec<String>,
}

/// Expands `{{#include FILE}}`, `{{#include FILE:ANCHOR}}` and their
/// `rustdoc_include` forms as mdBook does, paths relative to `dir`.
pub fn expand(body: &[String], dir: &Path) -> Result<Expanded, String> {
    let mut expanded = Expanded {
        code: String::new(),
        partial: false,
        files: Vec::new(),
    };
    for line in body {
        let trimmed = line.trim();
        let Some(directive) = trimmed
            .strip_prefix("{{#")
            .and_then(|d| d.strip_suffix("}}"))
        else {
            if line.contains("{{#") {
                return Err(format!(
                    "an include must stand alone on its line: `{line}`"
                ));
            }
            expanded.code.push_str(line);
            expanded.code.push('\n');
            continue;
        };
        let (kind, target) = directive
            .split_once(' ')
            .ok_or_else(|| format!("`{trimmed}` names no file"))?;
        let (file, anchor) = match target.trim().split_once(':') {
            Some((file, anchor)) => (file, Some(anchor)),
            None => (target.trim(), None),
        };
        if anchor.is_some_and(|a| {
            a.is_empty()
                || a.chars().any(|c| c == ':')
                || a.parse::<usize>().is_ok()
        }) {
            return Err(format!(
                "`{trimmed}`: use an anchor name, not line numbers"
            ));
        }
        let path = dir.join(file);
        let source = fs::read_to_string(&path).map_err(|e| {
            format!("`{trimmed}`: cannot read {}: {e}", path.display())
        })?;
        expanded.files.push(file.to_string());
        let included = match (kind, anchor) {
            ("include", None) => source.lines().map(|l| format!("{l}\n")).collect(),
            ("include", Some(anchor)) => anchored(&source, anchor, false),
            ("rustdoc_include", None) => {
                source.lines().map(|l| format!("{l}\n")).collect()
            }
            ("rustdoc_include", Some(anchor)) => {
                expanded.partial = true;
                anchored(&source, anchor, true)
            }
            _ => return Err(format!("`{trimmed}`: unknown directive `{kind}`")),
        };
        if !included
            .lines()
            .any(|l| !l.starts_with('#') || l.starts_with("#["))
        {
            return Err(format!("`{trimmed}`: anchor not found in {file}"));
        }
        expanded.code.push_str(&included);
    }
    Ok(expanded)
}

fn anchor_mark<'a>(line: &'a str, mark: &str) -> Option<&'a str> {
    let rest = &line[line.find(mark)? + mark.len()..];
    let name = rest.trim_start();
    let end = name
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(name.len());
    (end > 0).then(|| &name[..end])
}

/// The lines between `ANCHOR: name` and `ANCHOR_END: name` (every such
/// section); with `hide_rest`, the other lines too, hidden with `# `. Anchor
/// lines themselves are dropped, as mdBook drops them.
fn anchored(source: &str, anchor: &str, hide_rest: bool) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in source.lines() {
        let start = anchor_mark(line, "ANCHOR:");
        let end = anchor_mark(line, "ANCHOR_END:");
        if start.is_some() || end.is_some() {
            if start == Some(anchor) {
                inside = true;
            }
            if end == Some(anchor) {
                inside = false;
            }
            continue;
        }
        if inside {
            let _ = writeln!(out, "{line}");
        } else if hide_rest {
            let _ = writeln!(out, "# {line}");
        }
    }
    out
}

/// The name a block's own `main` gets in its test program, so that the
/// harness's `main` can run it.
pub const RENAMED_MAIN: &str = "cookbook_snippet_main";

/// Everything the test of one block needs to know.
pub struct Snippet<'a> {
    /// The chapter, as a path from the repository root (`book/src/x.md`).
    pub chapter: &'a str,
    pub block: &'a CodeBlock,
    pub attributes: &'a Attributes,
    pub expanded: &'a Expanded,
}

/// The files a running block's program is built with, besides its own code.
pub struct Sources<'a> {
    /// `src/harness.rs`, by absolute path.
    pub harness: &'a Path,
    /// `examples/`, by absolute path.
    pub examples: &'a Path,
    /// The server of a `client_of` block, by absolute path, and every file
    /// its program is built from (the server and the files it includes).
    pub server: Option<(&'a Path, Vec<String>)>,
}

/// The code skeptic sees for a block. For a block that does not run, the
/// block itself. For one that runs: lines `//@ key value` that describe the
/// block (where it is, what it must print; the test reads and removes them),
/// then the program, its `main` renamed, with the harness and, for a
/// client, its server as modules, and a `main` that runs it. The program
/// does not depend on where the block stands, so that moving a block or
/// showing one program in several blocks compiles it once.
pub fn test_code(snippet: &Snippet, sources: &Sources) -> Result<String, String> {
    let Snippet {
        chapter,
        block,
        attributes,
        expanded,
    } = snippet;
    let at = |what: &str| format!("{chapter}:{}: {what}", block.line);
    if !attributes.runs() {
        if let Some(expected) = &block.expected {
            return Err(format!(
                "{chapter}:{}: an expected output follows a block that does not run \
                 (no_run or ignore), so nothing would check it",
                expected.line
            ));
        }
        return Ok(expanded.code.clone());
    }
    let visible =
        |l: &str| l.strip_prefix("# ").unwrap_or(l).trim_start().to_string();
    let main = expanded.code.lines().position(|l| {
        let l = visible(l);
        let l = l.strip_prefix("pub ").unwrap_or(&l);
        l.starts_with("fn main(") || l.starts_with("async fn main(")
    });
    let Some(main) = main else {
        return Err(at(
            "the block runs but has no `fn main`; give it one, or mark it no_run",
        ));
    };
    let mut program = String::new();
    for (i, line) in expanded.code.lines().enumerate() {
        let renamed = format!("fn {RENAMED_MAIN}(");
        let line = if i == main {
            line.replacen("fn main(", &renamed, 1)
        } else {
            line.into()
        };
        let _ = writeln!(program, "{line}");
    }
    let mut hashes = format!(
        "{:016x}",
        fnv(&fs::read(sources.harness).unwrap_or_default())
    );
    let _ = writeln!(
        program,
        "#[allow(dead_code)]\n#[path = {:?}]\nmod cookbook_harness;",
        sources.harness
    );
    let timeout = attributes.timeout_secs.unwrap_or(60);
    let run = match (&sources.server, attributes.server) {
        (Some((server, files)), _) => {
            for file in files {
                let _ = write!(
                    hashes,
                    " {:016x}",
                    fnv(&fs::read(file).unwrap_or_default())
                );
            }
            let _ = writeln!(
                program,
                "#[allow(dead_code)]\n#[path = {server:?}]\nmod cookbook_server;"
            );
            // The URL as an example server prints it; a fixture of `src/`
            // (TLS) gets `http://` and makes its own.
            let scheme = if server.starts_with(sources.examples) {
                "grpc"
            } else {
                "http"
            };
            format!(
                "run_client({RENAMED_MAIN}, {timeout}, cookbook_server::serve, {scheme:?})"
            )
        }
        (None, true) => format!("run_server({RENAMED_MAIN}, {timeout})"),
        (None, false) => format!("run({RENAMED_MAIN}, {timeout})"),
    };
    let _ = writeln!(program, "// built from: {hashes}");
    // Blocks that show parts of one program (`# ` hides the rest) are one
    // program, run once: skeptic compiles `# x` as `x`.
    let shown: String = program
        .lines()
        .map(|l| match l.trim_start().strip_prefix("# ") {
            Some(hidden) => format!("{hidden}\n"),
            None if l.trim() == "#" => "\n".into(),
            None => format!("{l}\n"),
        })
        .collect();
    let id = format!("{:016x}", fnv(format!("{shown}{run}").as_bytes()));
    let run = run.replacen(")", &format!(", {id:?})"), 1);
    let _ = writeln!(
        program,
        "fn main() -> std::process::ExitCode {{\n    cookbook_harness::{run}\n}}"
    );
    let mut code = String::new();
    let (heading, expected) = (block.heading.as_ref(), block.expected.as_ref());
    let _ = writeln!(code, "//@ id {id}");
    let _ = writeln!(code, "//@ chapter {chapter}\n//@ line {}", block.line);
    let _ = writeln!(
        code,
        "//@ end {}\n//@ excerpt {}",
        block.end_line, expanded.partial
    );
    let _ = writeln!(
        code,
        "//@ heading {}",
        heading.map_or("", |(_, h)| h.as_str())
    );
    let _ = writeln!(code, "//@ expected_line {}", expected.map_or(0, |e| e.line));
    for line in expected.map_or("", |e| e.text.as_str()).lines() {
        let _ = writeln!(code, "//@| {line}");
    }
    Ok(code + &program)
}

/// The files a server program is built from: itself and its modules.
pub fn server_files(server: &Path) -> Vec<String> {
    module_files(server)
        .iter()
        .map(|f| f.display().to_string())
        .collect()
}

/// The files of the module tree rooted at `root`: `root`, and for each
/// `mod NAME;` its file, `#[path = "..."]` or as rustc finds it (next to a
/// `main.rs`, `lib.rs`, `mod.rs` or `#[path]` file, else in a folder named
/// after the file), and theirs.
pub fn module_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![(root.to_path_buf(), true)];
    while let Some((file, owns_folder)) = todo.pop() {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let stem = file.file_stem().unwrap_or_default().to_os_string();
        let children = if owns_folder {
            dir.clone()
        } else {
            dir.join(stem)
        };
        let mut path = None;
        for line in text.lines().map(str::trim) {
            if let Some(p) = line.strip_prefix("#[path = \"") {
                path = Some(dir.join(p.trim_end_matches("\"]")));
                continue;
            }
            let declared = line
                .strip_prefix("pub ")
                .unwrap_or(line)
                .strip_prefix("mod ")
                .and_then(|rest| rest.strip_suffix(';'));
            match (declared, path.take()) {
                (Some(_), Some(path)) => todo.push((path, true)),
                (Some(name), None) => {
                    let file = children.join(format!("{}.rs", name.trim()));
                    match file.exists() {
                        true => todo.push((file, false)),
                        false => todo.push((
                            children.join(name.trim()).join("mod.rs"),
                            true,
                        )),
                    }
                }
                (None, pending) => {
                    if line.starts_with("#[") {
                        path = pending;
                    }
                }
            }
        }
        files.push(file);
    }
    files
}

/// The source file of the target `name` (an `[[example]]`, `[[test]]` or
/// `[[bench]]`) of the manifest `manifest`, as written there.
pub fn target_path(manifest: &str, name: &str) -> Option<String> {
    let mut current: Option<String> = None;
    let mut found = None;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            if current.as_deref() == Some(name) {
                return found;
            }
            current = None;
            found = None;
        } else if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().trim_matches('"').to_string();
            match key.trim() {
                "name" => current = Some(value),
                "path" => found = Some(value),
                _ => {}
            }
        }
    }
    (current.as_deref() == Some(name))
        .then_some(found)
        .flatten()
}

/// Checks a `part_of=TARGET` block: its body is one include of a file in
/// TARGET's module tree (`recipes/Cargo.toml` under `repo`), with the
/// anchor it names. Paths in the body are relative to `chapter_dir`.
pub fn check_part_of(
    repo: &Path,
    target: &str,
    body: &[String],
    chapter_dir: &Path,
) -> Result<(), String> {
    let lines: Vec<&str> = body
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    let [line] = lines[..] else {
        return Err(format!(
            "a `part_of={target}` block holds one include, not {} lines",
            lines.len()
        ));
    };
    let include = ["{{#rustdoc_include ", "{{#include "]
        .iter()
        .find_map(|d| line.strip_prefix(d))
        .and_then(|rest| rest.strip_suffix("}}"))
        .ok_or_else(|| format!("`{line}` is not an include"))?;
    let (file, anchor) = match include.trim().split_once(':') {
        Some((file, anchor)) => (file, Some(anchor)),
        None => (include.trim(), None),
    };
    let manifest = fs::read_to_string(repo.join("recipes/Cargo.toml"))
        .map_err(|e| format!("recipes/Cargo.toml: {e}"))?;
    let root = target_path(&manifest, target).ok_or_else(|| {
        format!("part_of={target}: recipes/Cargo.toml has no target `{target}`")
    })?;
    let canonical = |p: &Path| {
        p.canonicalize()
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    let shown = canonical(&chapter_dir.join(file))?;
    let tree = module_files(&canonical(&repo.join("recipes").join(&root))?);
    if !tree.iter().any(|f| canonical(f).is_ok_and(|f| f == shown)) {
        return Err(format!(
            "part_of={target}: {file} is not a module of {target} ({root})"
        ));
    }
    if let Some(anchor) = anchor {
        let source = fs::read_to_string(&shown).map_err(|e| e.to_string())?;
        let opened = source
            .lines()
            .any(|l| anchor_mark(l, "ANCHOR:") == Some(anchor));
        let closed = source
            .lines()
            .any(|l| anchor_mark(l, "ANCHOR_END:") == Some(anchor));
        if !(opened && closed) {
            return Err(format!(
                "part_of={target}: {file} has no anchor `{anchor}`"
            ));
        }
    }
    Ok(())
}

/// FNV-1a, 64 bits: a stable hash that needs no crate.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// The markdown skeptic reads for one block: the block's heading and fence
/// at the lines they have in the chapter, so that the test's name
/// (`{chapter}_sect_{heading}_line_{line}`) points at the real place.
pub fn test_copy(block: &CodeBlock, attributes: &Attributes, code: &str) -> String {
    let mut lines = vec![String::new(); block.line - 1];
    if let Some((line, heading)) = &block.heading {
        lines[line - 1] = format!("## {heading}");
    }
    let flag = match (attributes.ignore, attributes.no_run) {
        (true, _) => ",ignore",
        (false, true) => ",no_run",
        _ => "",
    };
    format!("{}\n```rust{flag}\n{code}```\n", lines.join("\n"))
}
