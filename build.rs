//! Hands every Rust block of the book to skeptic as a test of
//! `tests/book.rs`: one markdown copy per block in `OUT_DIR`, made by
//! `test_copy` in `src/book.rs`. The book's page "How this book is tested"
//! explains the rest.

use std::path::{Path, PathBuf};
use std::{env, fs};

#[path = "src/book.rs"]
mod book;

fn main() {
    for watched in ["book/src", "examples", "src"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    let target = env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=FLIGHT_COOKBOOK_TARGET={target}");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_default());
    let copies = write_copies(&out.join("snippets")).unwrap_or_else(|e| {
        eprintln!("error in the book: {e}");
        std::process::exit(1)
    });
    skeptic::generate_doc_tests(&copies);
    let tests = out.join("skeptic-tests.rs");
    let generated = fs::read_to_string(&tests).unwrap_or_default();
    let routed = generated
        .replace("skeptic::rt::run_test(", "crate::run_snippet(")
        .replace("skeptic::rt::compile_test(", "crate::check_snippet(");
    write_if_changed(&tests, &routed);
}

/// Writes the markdown copy of every Rust block of every chapter.
fn write_copies(out: &Path) -> Result<Vec<PathBuf>, String> {
    let root = env::current_dir().map_err(|e| e.to_string())?;
    let mut copies = Vec::new();
    for chapter in book::chapters(&root).map_err(|e| format!("book/src: {e}"))? {
        let name = format!("book/src/{chapter}.md");
        let markdown =
            fs::read_to_string(&name).map_err(|e| format!("{name}: {e}"))?;
        for (index, block) in book::rust_blocks(&markdown).enumerate() {
            if let Some(copy) = book::test_copy(&root, &name, index, &block)? {
                let line = block.line;
                let path =
                    out.join(format!("{chapter}/line{line:05}/{chapter}.md"));
                write_if_changed(&path, &copy);
                copies.push(path);
            }
        }
    }
    Ok(copies)
}

/// Leaves an unchanged file alone, so cargo does not see it as new.
fn write_if_changed(path: &Path, contents: &str) {
    if fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return;
    }
    let dir = path.parent().unwrap_or(path);
    if let Err(e) = fs::create_dir_all(dir).and_then(|()| fs::write(path, contents))
    {
        eprintln!("cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
}
