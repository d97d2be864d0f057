//! Hands every Rust block of the book to skeptic as a test of `tests/book.rs`.
//!
//! Each block is written to its own markdown copy in `OUT_DIR`, includes
//! expanded as mdBook expands them and, for a block that runs, as the
//! program that runs and checks it (`src/book.rs`, `test_code`). The copy
//! keeps the block's heading and line, so a test's name says where the block
//! is. The book's page "How this book is tested" explains the rest.

use std::fs;
use std::path::{Path, PathBuf};

#[path = "src/book.rs"]
mod book;

fn main() {
    for watched in ["book/src", "examples", "src"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=FLIGHT_COOKBOOK_TARGET={target}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    match write_copies(Path::new("book/src"), &out_dir.join("snippets")) {
        Ok(copies) => skeptic::generate_doc_tests(&copies),
        Err(e) => {
            eprintln!("error in the book: {e}");
            std::process::exit(1);
        }
    }
    let tests = out_dir.join("skeptic-tests.rs");
    if let Ok(generated) = fs::read_to_string(&tests) {
        let routed = generated
            .replace("skeptic::rt::run_test(", "crate::run_snippet(")
            .replace("skeptic::rt::compile_test(", "crate::check_snippet(");
        write_if_changed(&tests, &routed);
    }
}

/// Writes one markdown copy per Rust block of every chapter under `src`.
fn write_copies(src: &Path, out: &Path) -> Result<Vec<PathBuf>, String> {
    let root = std::env::current_dir().map_err(|e| e.to_string())?;
    let harness = root.join("src/harness.rs");
    let mut copies = Vec::new();
    let mut chapters: Vec<PathBuf> = fs::read_dir(src)
        .map_err(|e| format!("cannot list {}: {e}", src.display()))?
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "md") && !p.ends_with("SUMMARY.md")
        })
        .collect();
    chapters.sort();
    for chapter in chapters {
        let name = chapter.to_string_lossy().replace('\\', "/");
        let markdown =
            fs::read_to_string(&chapter).map_err(|e| format!("{name}: {e}"))?;
        let stem = chapter.file_stem().unwrap_or_default().to_string_lossy();
        for block in book::code_blocks(&markdown) {
            let at = |e: String| format!("{name}:{}: {e}", block.line);
            let Some(attributes) =
                book::Attributes::parse(&block.info).map_err(at)?
            else {
                continue;
            };
            if let Some(target) = &attributes.part_of {
                if block.expected.is_some() {
                    return Err(at("a part_of block does not run: no output \
                                   checks it"
                        .into()));
                }
                book::check_part_of(&root, target, &block.body, src).map_err(at)?;
                continue;
            }
            let server = match &attributes.client_of {
                Some(server) => Some(
                    [
                        format!("examples/{server}.rs"),
                        format!("examples/{server}/main.rs"),
                        format!("src/{server}.rs"),
                    ]
                    .iter()
                    .map(|path| root.join(path))
                    .find(|path| path.exists())
                    .ok_or_else(|| {
                        at(format!(
                            "client_of={server}: no examples/{server}.rs, \
                             examples/{server}/main.rs or src/{server}.rs"
                        ))
                    })?,
                ),
                None => None,
            };
            let expanded = book::expand(&block.body, src).map_err(at)?;
            let sources = book::Sources {
                harness: &harness,
                examples: &root.join("examples"),
                server: server.as_deref().map(|s| (s, book::server_files(s))),
            };
            let snippet = book::Snippet {
                chapter: &name,
                block: &block,
                attributes: &attributes,
                expanded: &expanded,
            };
            let code = book::test_code(&snippet, &sources)?;
            let copy = out.join(format!("{stem}/line{:05}/{stem}.md", block.line));
            write_if_changed(&copy, &book::test_copy(&block, &attributes, &code));
            copies.push(copy);
        }
    }
    Ok(copies)
}

/// Leaves an unchanged file alone, so cargo does not see it as new.
fn write_if_changed(path: &Path, contents: &str) {
    if fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return;
    }
    let written = path
        .parent()
        .map_or(Ok(()), fs::create_dir_all)
        .and_then(|()| fs::write(path, contents));
    if let Err(e) = written {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
}
