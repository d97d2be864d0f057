//! Copy and paste, for real: every complete program of a chapter, as a
//! reader copies it (the eye button pressed: hidden lines too), is compiled
//! (`cargo check`: all but the machine code) in a brand-new crate whose
//! `Cargo.toml` lists only the dependencies of the chapter's `toml` block.
//! skeptic links every crate the build compiled, so only this proves the
//! `toml` blocks honest.

mod common;

#[allow(dead_code)]
#[path = "../src/book.rs"]
mod book;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use book::Attributes;

/// A chapter's complete programs and its `toml` block.
struct Chapter {
    name: String,
    toml: String,
    programs: Vec<(usize, String)>,
    /// Programs of several files the chapter shows parts of (`part_of`):
    /// each one's name and its files, by path from its `main.rs`'s folder.
    folders: Vec<(String, Vec<(PathBuf, String)>)>,
}

fn chapters() -> Vec<Chapter> {
    let src = common::repo_root().join("book/src");
    let mut found = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&src)
        .expect("book/src")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    paths.sort();
    for path in paths {
        let markdown = std::fs::read_to_string(&path).expect("chapter");
        let blocks = book::code_blocks(&markdown);
        let mut seen = BTreeSet::new();
        let mut programs = Vec::new();
        let mut targets = BTreeSet::new();
        for block in &blocks {
            let Ok(Some(attributes)) = Attributes::parse(&block.info) else {
                continue;
            };
            if let Some(target) = attributes.part_of {
                targets.insert(target);
                continue;
            }
            if attributes.ignore {
                continue;
            }
            let expanded = book::expand(&block.body, &src).expect("expand");
            let copied: String = expanded
                .code
                .lines()
                .map(|l| match l.trim_start().strip_prefix("# ") {
                    Some(rest) => {
                        format!("{}{rest}\n", &l[..l.len() - l.trim_start().len()])
                    }
                    None if l.trim() == "#" => "\n".to_string(),
                    None => format!("{l}\n"),
                })
                .collect();
            if copied.contains("fn main(") && seen.insert(copied.clone()) {
                programs.push((block.line, copied));
            }
        }
        let toml: Vec<String> = blocks
            .iter()
            .filter(|b| b.info == "toml")
            .map(|b| b.body.join("\n"))
            .collect();
        let folders: Vec<_> = targets.into_iter().map(folder).collect();
        if !programs.is_empty() || !folders.is_empty() {
            found.push(Chapter {
                name: path
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into(),
                toml: toml.join("\n"),
                programs,
                folders,
            });
        }
    }
    found
}

/// The files of the target `name` of `recipes/Cargo.toml`, a program of
/// several files.
fn folder(name: String) -> (String, Vec<(PathBuf, String)>) {
    let recipes = common::repo_root().join("recipes");
    let manifest =
        std::fs::read_to_string(recipes.join("Cargo.toml")).expect("manifest");
    let path = book::target_path(&manifest, &name).expect("a target");
    let main = recipes.join(&path);
    // A test target's files keep their places in the repository (the test
    // in `tests/`, the modules it names by `#[path]`); a program's, their
    // places in its folder.
    let dir = match path.starts_with("../tests/") {
        true => normal(common::repo_root()),
        false => normal(main.parent().expect("its folder")),
    };
    let files = book::module_files(&main)
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).expect("a module");
            let file = normal(&file);
            (
                file.strip_prefix(&dir)
                    .expect("in its folder")
                    .to_path_buf(),
                text,
            )
        })
        .collect();
    (name, files)
}

/// `path` absolute, without `..`.
fn normal(path: &Path) -> PathBuf {
    let path = std::path::absolute(path).expect("a path");
    path.components().fold(PathBuf::new(), |p, c| match c {
        std::path::Component::ParentDir => {
            p.parent().map(Path::to_path_buf).unwrap_or(p)
        }
        c => p.join(c),
    })
}

#[test]
fn every_complete_program_builds_in_a_new_crate_with_only_its_chapters_dependencies()
 {
    let root = common::repo_root();
    let target = root.join("target/copy-paste");
    let chapters = chapters();
    assert!(!chapters.is_empty(), "no chapter with a complete program");
    for chapter in chapters {
        // One lasting crate per chapter, rewritten only where it changed, so
        // that a re-run rebuilds only what was edited.
        let dir = target.join("crates").join(&chapter.name);
        std::fs::create_dir_all(dir.join("src/bin")).expect("crate folder");
        let mut manifest = format!(
            "[package]\nname = \"reader-{}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n",
            chapter.name.replace('_', "-")
        );
        manifest.push_str(&chapter.toml);
        manifest.push_str("\n\n[profile.dev]\ndebug = false\n");
        // A crate of its own, not a member of this repository's workspace,
        // in whose target folder it lies.
        manifest.push_str("\n[workspace]\n");
        write_if_changed(&dir.join("Cargo.toml"), &manifest);
        let lock =
            std::fs::read_to_string(root.join("Cargo.lock")).expect("Cargo.lock");
        write_if_changed(&dir.join("Cargo.lock"), &lock);
        let mut listing = String::new();
        for (line, program) in &chapter.programs {
            let bin = format!("line{line}.rs");
            write_if_changed(&dir.join("src/bin").join(&bin), program);
            let _ = writeln!(
                listing,
                "  src/bin/{bin}: the program of {}.md:{line}",
                chapter.name
            );
        }

        for (name, files) in &chapter.folders {
            let test = files.iter().any(|(path, _)| path.starts_with("tests"));
            let folder = match test {
                true => dir.clone(),
                false => dir.join("src/bin").join(name),
            };
            for (path, text) in files {
                std::fs::create_dir_all(
                    folder.join(path).parent().expect("a folder"),
                )
                .expect("the program's folder");
                write_if_changed(&folder.join(path), text);
            }
            let _ = match test {
                true => writeln!(listing, "  tests/{name}.rs: the test {name}"),
                false => writeln!(listing, "  src/bin/{name}/: the program {name}"),
            };
        }
        // A crate of tests alone still needs a target of its own.
        write_if_changed(&dir.join("src/lib.rs"), "");

        let wanted: BTreeSet<String> = chapter
            .programs
            .iter()
            .map(|(line, _)| format!("line{line}.rs"))
            .chain(chapter.folders.iter().map(|(name, _)| name.clone()))
            .collect();
        for entry in std::fs::read_dir(dir.join("src/bin")).expect("src/bin") {
            let entry = entry.expect("entry");
            if !wanted.contains(entry.file_name().to_string_lossy().as_ref()) {
                let path = entry.path();
                let removed = match path.is_dir() {
                    true => std::fs::remove_dir_all(&path),
                    false => std::fs::remove_file(&path),
                };
                removed.expect("remove an old program");
            }
        }

        let mut build = Command::new(env!("CARGO"));
        build
            .args(["check", "--bins", "--tests", "--quiet"])
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS");
        // A chapter's first check compiles all its dependencies' metadata.
        let built = common::run_with_timeout(build, Duration::from_secs(1200));
        let built = built
            .unwrap_or_else(|e| panic!("{}.md: cargo check: {e}", chapter.name));
        assert!(
            built.status.success(),
            "{}.md: a reader's crate with only the chapter's toml block does not compile:\n{listing}\n\
             Cargo.toml:\n{manifest}\n{}",
            chapter.name,
            String::from_utf8_lossy(&built.stderr)
        );
    }
}

/// Writes `text` unless the file already holds it: cargo rebuilds what it
/// sees modified.
fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).expect("write");
    }
}
