//! Hands every Rust block of the book to skeptic as a test.
//!
//! Each block is written to its own markdown copy in `OUT_DIR`, includes
//! expanded as mdBook expands them and, for a block that runs, with the
//! harness's `main` that checks what it prints (see `src/book.rs` and the
//! book's page "How this book is tested"). The copy keeps the block's heading
//! and line, so a test's name says where the block is.

use std::fs;
use std::path::{Path, PathBuf};

#[path = "src/book.rs"]
mod book;

fn main() {
    println!("cargo:rerun-if-changed=book/src");
    println!("cargo:rerun-if-changed=examples");
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
    let mut copies = Vec::new();
    for chapter in chapters(src)? {
        let name = chapter.to_string_lossy().replace('\\', "/");
        let markdown =
            fs::read_to_string(&chapter).map_err(|e| format!("cannot read {name}: {e}"))?;
        let dir = chapter.parent().unwrap_or(src);
        let stem = chapter.file_stem().unwrap_or_default().to_string_lossy();
        for block in book::code_blocks(&markdown) {
            let at = |e: String| format!("{name}:{}: {e}", block.line);
            let Some(attributes) = book::Attributes::parse(&block.info).map_err(at)? else {
                continue;
            };
            if let Some(server) = &attributes.client_of
                && !Path::new("examples").join(format!("{server}.rs")).exists()
                && !Path::new("src").join(format!("{server}.rs")).exists()
            {
                let message =
                    format!("client_of={server}: no examples/{server}.rs or src/{server}.rs");
                return Err(at(message));
            }
            let expanded = book::expand(&block.body, dir).map_err(at)?;
            let code = book::test_code(&book::Snippet {
                chapter: &name,
                block: &block,
                attributes: &attributes,
                expanded: &expanded,
            })?;
            let copy = out.join(format!("{stem}/line{:05}/{stem}.md", block.line));
            write_if_changed(&copy, &book::test_copy(&block, &attributes, &code));
            copies.push(copy);
        }
    }
    Ok(copies)
}

/// The chapters: every `.md` file under `dir` but `SUMMARY.md`, sorted.
fn chapters(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(chapters(&path)?);
        } else if path.extension().is_some_and(|e| e == "md")
            && path.file_name().is_some_and(|n| n != "SUMMARY.md")
        {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
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
