//! The book's markdown read the way mdBook shows it, and the program that
//! tests each Rust block. `build.rs` and several tests include this file as
//! a module, so the build and the tests read the book with the same code.

use std::fs;
use std::path::{Path, PathBuf};

/// A fenced code block of a chapter.
#[derive(Clone, Debug, PartialEq)]
pub struct CodeBlock {
    /// The lines of the opening and of the closing fence, counted from 1.
    pub line: usize,
    pub end_line: usize,
    /// The info string after the opening fence, such as `rust,no_run`.
    pub info: String,
    /// The lines between the fences.
    pub body: Vec<String>,
    /// The nearest heading above the block and its line.
    pub heading: Option<(usize, String)>,
    /// For a Rust block, the `text` block right under it: what it prints.
    pub expected: Option<Box<CodeBlock>>,
}

/// How a Rust block is tested: the words of its info string, which the
/// book's page "How this book is tested" explains.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attributes {
    pub no_run: bool,
    pub ignore: bool,
    pub server: bool,
    pub client_of: Option<String>,
    pub part_of: Option<String>,
    pub timeout_secs: Option<u64>,
}

impl Attributes {
    /// Reads the info string of a block; `None` if it is not a Rust block.
    pub fn parse(info: &str) -> Result<Option<Attributes>, String> {
        let mut words = info.split(',').map(str::trim);
        if words.next() != Some("rust") {
            return Ok(None);
        }
        let mut a = Attributes::default();
        for word in words {
            match word.split_once('=') {
                None if word == "no_run" => a.no_run = true,
                None if word == "ignore" => a.ignore = true,
                None if word == "server" => a.server = true,
                Some(("client_of", name)) => a.client_of = Some(name.into()),
                Some(("part_of", name)) => a.part_of = Some(name.into()),
                Some(("timeout", secs)) if secs.parse::<u64>().is_ok() => {
                    a.timeout_secs = secs.parse().ok()
                }
                _ => {
                    let known = "book/src/testing.md lists the words";
                    return Err(format!(
                        "unknown word `{word}` in `{info}` ({known})"
                    ));
                }
            }
        }
        let (client, part) = (a.client_of.is_some(), a.part_of.is_some());
        let kinds = [a.no_run, a.ignore, a.server, client, part];
        if kinds.into_iter().filter(|&k| k).count() > 1
            || (a.timeout_secs.is_some() && !a.runs())
        {
            return Err(format!(
                "`{info}`: one of no_run, ignore, server, client_of=NAME and \
                 part_of=NAME, and timeout=SECONDS only for a block that runs"
            ));
        }
        Ok(Some(a))
    }

    /// Whether the block is compiled and run.
    pub fn runs(&self) -> bool {
        !self.no_run && !self.ignore && self.part_of.is_none()
    }
}

/// Whether a block's info string makes it a Rust block.
pub fn is_rust(info: &str) -> bool {
    info.split(',').next().map(str::trim) == Some("rust")
}

/// The Rust blocks of a chapter, in order.
pub fn rust_blocks(markdown: &str) -> impl Iterator<Item = CodeBlock> {
    code_blocks(markdown)
        .into_iter()
        .filter(|b| is_rust(&b.info))
}

/// The fenced code blocks of a chapter, with headings and expected outputs,
/// as pulldown-cmark finds them.
pub fn code_blocks(markdown: &str) -> Vec<CodeBlock> {
    use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag};
    let line_of = |offset: usize| markdown[..offset].matches('\n').count() + 1;
    let (mut blocks, mut heading, mut body) =
        (Vec::<CodeBlock>::new(), None, "".into());
    let mut previous_end = 0;
    for (event, range) in Parser::new(markdown).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading(..)) => {
                let title = markdown[range.clone()].lines().next().unwrap_or("");
                let title = title.trim_start_matches('#').trim().to_string();
                heading = Some((line_of(range.start), title));
            }
            Event::Start(Tag::CodeBlock(_)) => body = String::new(),
            Event::Text(text) => body.push_str(&text),
            Event::End(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                let block = CodeBlock {
                    line: line_of(range.start),
                    end_line: line_of(range.end - 1),
                    info: info.trim().to_string(),
                    body: body.lines().map(String::from).collect(),
                    heading: heading.clone(),
                    expected: None,
                };
                let between = &markdown[previous_end..range.start];
                previous_end = range.end;
                if let Some(rust) = blocks.last_mut()
                    && block.info == "text"
                    && between.trim().is_empty()
                    && is_rust(&rust.info)
                {
                    rust.expected = Some(Box::new(block.clone()));
                }
                blocks.push(block);
            }
            _ => {}
        }
    }
    blocks
}

/// A block's code as mdBook shows it, includes expanded.
#[derive(Debug, Default, PartialEq)]
pub struct Expanded {
    pub code: String,
    /// The block shows only an anchored part of a file and hides the rest.
    pub partial: bool,
    /// The files it includes, as the block names them.
    pub files: Vec<String>,
}

/// Expands `{{#include FILE}}`, `{{#include FILE:ANCHOR}}` and their
/// `rustdoc_include` forms as mdBook does, paths relative to `dir`.
pub fn expand(body: &[String], dir: &Path) -> Result<Expanded, String> {
    let mut out = Expanded::default();
    for line in body {
        let directive = line.trim().strip_prefix("{{#");
        let Some(directive) = directive.and_then(|d| d.strip_suffix("}}")) else {
            if line.contains("{{#") {
                return Err(format!("an include must stand alone: `{line}`"));
            }
            out.code += &format!("{line}\n");
            continue;
        };
        let err = |what: String| format!("`{}`: {what}", line.trim());
        let (hide_rest, target) = match directive.split_once(' ') {
            Some(("include", target)) => (false, target.trim()),
            Some(("rustdoc_include", target)) => (true, target.trim()),
            _ => return Err(err("unknown directive".into())),
        };
        let (file, anchor) = target.split_once(':').unzip();
        let file = file.unwrap_or(target);
        let source = fs::read_to_string(dir.join(file))
            .map_err(|e| err(format!("cannot read {file}: {e}")))?;
        out.code += &match anchor {
            None => source.lines().map(|l| format!("{l}\n")).collect(),
            Some(anchor) => anchored(&source, anchor, hide_rest)
                .ok_or_else(|| err(format!("anchor not found in {file}")))?,
        };
        out.partial |= hide_rest && anchor.is_some();
        out.files.push(file.to_string());
    }
    Ok(out)
}

/// The lines between `ANCHOR: name` and `ANCHOR_END: name` (every such
/// section); with `hide_rest`, the other lines too, hidden with `# `. Anchor
/// lines themselves are dropped, as mdBook drops them. `None` if no line
/// starts the anchor.
fn anchored(source: &str, anchor: &str, hide_rest: bool) -> Option<String> {
    // The name after `mark` (`ANCHOR:` or `ANCHOR_END:`) on `line`, if any.
    fn name<'a>(line: &'a str, mark: &str) -> Option<&'a str> {
        let name = line.split_once(mark)?.1.trim_start();
        let end = |c: char| !(c.is_alphanumeric() || c == '_' || c == '-');
        name.split(end).next().filter(|n| !n.is_empty())
    }
    let (mut out, mut inside, mut found) = (String::new(), false, false);
    for line in source.lines() {
        let (start, end) = (name(line, "ANCHOR:"), name(line, "ANCHOR_END:"));
        found |= start == Some(anchor);
        if start.is_some() || end.is_some() {
            inside = (inside || start == Some(anchor)) && end != Some(anchor);
        } else if inside {
            out += &format!("{line}\n");
        } else if hide_rest {
            out += &format!("# {line}\n");
        }
    }
    found.then_some(out)
}

/// The files of the module tree rooted at `root`: `root`, and for each
/// `mod NAME;` its file, as rustc finds it (by `#[path = "..."]`, or
/// `NAME.rs` in the folder a file's modules live in), and theirs.
pub fn module_files(root: &Path) -> Vec<PathBuf> {
    let (mut files, mut todo) = (Vec::new(), vec![(root.to_path_buf(), true)]);
    while let Some((file, owns_folder)) = todo.pop() {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let children = match owns_folder {
            true => dir.clone(),
            false => dir.join(file.file_stem().unwrap_or_default()),
        };
        let mut path = None;
        for line in text.lines().map(str::trim) {
            let declared = line.trim_start_matches("pub ").strip_prefix("mod ");
            if let Some(p) = line.strip_prefix("#[path = \"") {
                path = Some(dir.join(p.trim_end_matches("\"]")));
            } else if let Some(name) = declared.and_then(|r| r.strip_suffix(';')) {
                todo.push(match path.take() {
                    Some(path) => (path, true),
                    None => (children.join(format!("{}.rs", name.trim())), false),
                });
            } else if !line.starts_with("#[") {
                path = None;
            }
        }
        files.push(file);
    }
    files
}

/// The source file of the target `name` (`[[example]]`, `[[test]]`,
/// `[[bench]]`) of a manifest, as written there.
pub fn target_path(manifest: &str, name: &str) -> Option<String> {
    manifest.split("\n[").find_map(|table| {
        let value = |key: &str| {
            let pair = table.lines().filter_map(|l| l.split_once('='));
            let mut values = pair.filter(|(k, _)| k.trim() == key);
            values
                .next()
                .map(|(_, v)| v.trim().trim_matches('"').to_string())
        };
        (value("name").as_deref() == Some(name)).then(|| value("path"))?
    })
}

/// Checks a `part_of=TARGET` block: its body is one include of a file in
/// TARGET's module tree (`recipes/Cargo.toml` under `repo`), with the anchor
/// it names. Paths in the body are relative to `chapter_dir`.
pub fn check_part_of(
    repo: &Path,
    target: &str,
    body: &[String],
    chapter_dir: &Path,
) -> Result<(), String> {
    let files = expand(body, chapter_dir)?.files;
    let lines = body.iter().filter(|l| !l.trim().is_empty()).count();
    let ([file], 1) = (&files[..], lines) else {
        return Err("a `part_of` block holds one include, nothing else".into());
    };
    let manifest = fs::read_to_string(repo.join("recipes/Cargo.toml"))
        .map_err(|e| format!("recipes/Cargo.toml: {e}"))?;
    let main = target_path(&manifest, target)
        .ok_or_else(|| format!("recipes/Cargo.toml has no target `{target}`"))?;
    let canonical = |p: &Path| p.canonicalize().map_err(|e| e.to_string());
    let shown = canonical(&chapter_dir.join(file))?;
    let tree = module_files(&canonical(&repo.join("recipes").join(&main))?);
    match tree.iter().any(|f| canonical(f).is_ok_and(|f| f == shown)) {
        true => Ok(()),
        false => Err(format!("{file} is not a module of {target} ({main})")),
    }
}

/// FNV-1a, 64 bits: a stable hash that needs no crate.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// The markdown skeptic reads for the `index`th Rust block of `chapter` (a
/// path from `root`): the block's heading and fence at the lines they have
/// in the chapter, so that the test's name (`{chapter}_sect_{heading}_line_
/// {line}`) says where the block is, and its [`test_code`]. `None` for a
/// `part_of` block, which is checked here and compiled by cargo.
pub fn test_copy(
    root: &Path,
    chapter: &str,
    index: usize,
    block: &CodeBlock,
) -> Result<Option<String>, String> {
    let at = |line: usize, e: String| format!("{chapter}:{line}: {e}");
    let Some(a) = Attributes::parse(&block.info).map_err(|e| at(block.line, e))?
    else {
        return Ok(None);
    };
    if let Some(text) = block.expected.as_ref().filter(|_| !a.runs()) {
        let e = "output under a block that does not run: unchecked";
        return Err(at(text.line, e.into()));
    }
    let dir = root.join(chapter).parent().unwrap_or(root).to_path_buf();
    if let Some(target) = &a.part_of {
        let checked = check_part_of(root, target, &block.body, &dir);
        return checked
            .map(|()| None)
            .map_err(|e| at(block.line, format!("part_of={target}: {e}")));
    }
    let expanded = expand(&block.body, &dir).map_err(|e| at(block.line, e))?;
    let code = match a.runs() {
        true => test_code(root, chapter, index, &expanded, &a)
            .map_err(|e| at(block.line, e))?,
        false => expanded.code,
    };
    let mut lines = vec![String::new(); block.line - 1];
    if let Some((line, heading)) = &block.heading {
        lines[line - 1] = format!("## {heading}");
    }
    let flag = match (a.ignore, a.no_run) {
        (true, _) => ",ignore",
        (false, true) => ",no_run",
        _ => "",
    };
    Ok(Some(format!(
        "{}\n```rust{flag}\n{code}```\n",
        lines.join("\n")
    )))
}

/// The code skeptic sees for a block that runs: a line `//@` that says how
/// to run it and where it is (the test removes it), then the program with
/// its `main` renamed, the harness and a client's server as modules, and a
/// `main` that runs it through the harness. The program does not depend on
/// where the block stands, so blocks that show one program share one build
/// and one run.
fn test_code(
    root: &Path,
    chapter: &str,
    index: usize,
    expanded: &Expanded,
    attributes: &Attributes,
) -> Result<String, String> {
    // As skeptic compiles it: a hidden line `# x` is `x`.
    let unhide = |l: &str| match l.trim_start().strip_prefix("# ") {
        Some(hidden) => hidden.to_string(),
        None if l.trim() == "#" => String::new(),
        None => l.to_string(),
    };
    let mut program: Vec<String> = expanded.code.lines().map(unhide).collect();
    let main = program.iter_mut().find(|l| {
        let l = l.trim_start().trim_start_matches("pub ");
        l.trim_start_matches("async ").starts_with("fn main(")
    });
    let main = main.ok_or("a block that runs needs a `fn main`")?;
    *main = main.replacen("fn main(", "fn cookbook_snippet_main(", 1);
    let harness = root.join("src/harness.rs");
    let mut files = vec![harness.clone()];
    let (kind, call) = match &attributes.client_of {
        Some(name) => {
            let found = ["examples/{}.rs", "examples/{}/main.rs", "src/{}.rs"]
                .map(|p| root.join(p.replace("{}", name)))
                .into_iter()
                .find(|p| p.exists());
            let path = found.ok_or("no such server")?;
            files.extend(module_files(&path));
            program.push(format!(
                "#[allow(dead_code)]\n#[path = {path:?}]\nmod cookbook_server;"
            ));
            // A fixture of `src/` (TLS) makes its own URL from `http://`.
            let http = path.starts_with(root.join("src"));
            let scheme = if http { "http" } else { "grpc" };
            let serve = "cookbook_server::serve";
            (
                "client",
                format!("run_client(cookbook_snippet_main, {serve}, {scheme:?}"),
            )
        }
        None if attributes.server => ("server", "run(cookbook_snippet_main".into()),
        None => ("program", "run(cookbook_snippet_main".into()),
    };
    let sources = files.iter().flat_map(|f| fs::read(f).unwrap_or_default());
    program.push(format!(
        "#[allow(dead_code)]\n#[path = {harness:?}]\nmod cookbook_harness;\n\
         // built from: {:016x}",
        fnv(&sources.collect::<Vec<u8>>())
    ));
    let program = program.join("\n");
    let id = format!("{:016x}", fnv(format!("{program}{kind}{call}").as_bytes()));
    let timeout = attributes.timeout_secs.unwrap_or(60);
    let partial = expanded.partial;
    Ok(format!(
        "//@ {id} {kind} {timeout} {partial} {index} {chapter}\n{program}\n\
         fn main() -> std::process::ExitCode {{\n    cookbook_harness::{call}, {id:?})\n}}\n"
    ))
}

/// The names of the chapters in `book/src` under `root`, sorted.
pub fn chapters(root: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(root.join("book/src"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        match name.strip_suffix(".md") {
            Some(chapter) if chapter != "SUMMARY" => {
                names.push(chapter.to_string())
            }
            _ => {}
        }
    }
    names.sort();
    Ok(names)
}
