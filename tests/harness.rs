//! Self-tests of the harness: a block whose output differs, that panics,
//! fails or hangs must fail its test; `...` must match; bless must write
//! what a block printed and keep the `...`; the book's blocks must all
//! become tests.

#[path = "../src/book.rs"]
#[allow(dead_code)]
mod book;
#[path = "../src/check.rs"]
#[allow(dead_code)]
mod check;
#[path = "../src/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use book::Attributes;

/// Writes `markdown` as a chapter of its own, turns its first Rust block
/// into its test code and runs it as `cargo test` would; `Err` carries the
/// failure.
fn run_block(markdown: &str) -> Result<(), String> {
    let (chapter, code) = test_code(markdown)?;
    let run = panic::catch_unwind(AssertUnwindSafe(|| {
        check::run_snippet(
            env!("CARGO_MANIFEST_DIR"),
            env!("OUT_DIR"),
            env!("FLIGHT_COOKBOOK_TARGET"),
            &code,
        )
    }));
    drop(chapter);
    run.map_err(|panic| {
        let text = panic.downcast_ref::<String>().cloned();
        let text =
            text.or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
        text.unwrap_or_else(|| "a panic".to_string())
    })
}

/// The chapter `markdown`, written to a temporary file, and the test code
/// of its first Rust block, as `build.rs` hands it to skeptic.
fn test_code(markdown: &str) -> Result<(tempfile::TempPath, String), String> {
    let chapter = tempfile::Builder::new().suffix(".md").tempfile();
    let chapter = chapter.map_err(|e| e.to_string())?.into_temp_path();
    std::fs::write(&chapter, markdown).map_err(|e| e.to_string())?;
    let block = book::rust_blocks(markdown).next().ok_or("no rust block")?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let name = chapter.display().to_string();
    let copy = book::test_copy(root, &name, 0, &block)?.ok_or("not tested")?;
    let code = copy
        .split_once("```rust")
        .and_then(|(_, c)| c.split_once('\n'));
    let code = code.and_then(|(_, c)| c.strip_suffix("```\n"));
    Ok((chapter, code.ok_or("no code")?.to_string()))
}

#[test]
fn a_program_does_not_depend_on_where_its_block_stands() {
    let block =
        "```rust\nfn main() {\n    println!(\"x\");\n}\n```\n\n```text\nx\n```\n";
    let program = |markdown: &str| {
        let (_chapter, code) = test_code(markdown).expect("code");
        code.split_once('\n').expect("a program").1.to_string()
    };
    let moved = format!("# Another heading\n\nSome prose.\n\n{block}");
    assert_eq!(program(block), program(&moved));
    assert_ne!(program(block), program(&block.replace("\"x\"", "\"y\"")));
}

#[test]
fn bless_keeps_what_still_matches_and_writes_what_changed() {
    let old = "token ...\nsame\nold line\n...\nend";
    let printed = "token abc\nsame\nnew line\nmany\nlines\nend\nadded";
    assert_eq!(
        check::blessed(old, printed, false),
        "token ...\nsame\nnew line\n...\nend\nadded"
    );
    assert!(check::matches(
        &check::blessed(old, printed, false),
        printed,
        false
    ));
    // An excerpt keeps to its own part of what the program printed.
    let printed = "before\nb\nc2\nafter";
    assert_eq!(check::blessed("b\nc", printed, true), "b\nc2");
    let printed = "sent 1\nInvalidArgument: new words\nsent 2";
    assert_eq!(
        check::blessed("InvalidArgument: old", printed, true),
        "InvalidArgument: new words"
    );
    let printed = "a\nb\nc: something else entirely";
    assert_eq!(check::blessed("b\nextra", printed, true), "b");
    let printed = "token: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0\nc";
    assert_eq!(check::blessed("token: ...", printed, true), "token: ...");
    assert_eq!(check::blessed("x", "x", false), "x");
    assert_eq!(check::blessed("", "new", false), "new");
    assert_eq!(check::blessed("gone", "", false), "");
}

/// Bless rewrites the expected output under the block in its chapter, and
/// gives a block that printed with none under it a `text` block.
#[test]
fn bless_rewrites_the_text_block_and_nothing_else() {
    let markdown = "# T\n\n```rust\nfn main() {\n    println!(\"new\");\n}\n```\n\n\
                    ```text\nold\nolder\n```\n\nProse.\n";
    let chapter = tempfile::Builder::new()
        .suffix(".md")
        .tempfile()
        .expect("temp");
    std::fs::write(chapter.path(), markdown).expect("write");
    let bless = |printed: &str| check::bless(chapter.path(), 0, printed, false);
    assert!(bless("new"));
    let written = std::fs::read_to_string(chapter.path()).expect("read");
    assert_eq!(written, markdown.replace("old\nolder\n", "new\n"));
    let bare = "```rust\nfn main() {}\n```\nProse.\n";
    std::fs::write(chapter.path(), bare).expect("write");
    assert!(bless("a\nb"));
    let written = std::fs::read_to_string(chapter.path()).expect("read");
    assert_eq!(
        written,
        "```rust\nfn main() {}\n```\n\n```text\na\nb\n```\nProse.\n"
    );
}

#[test]
fn the_report_shows_expected_and_printed_side_by_side() {
    let expected = "same\nBearer ...\nwanted";
    let printed = "same\nBearer abc\ngot\nextra\n";
    let report =
        check::side_by_side("expected (x.md:20)", expected, printed, false);
    let rows: Vec<&str> = report.lines().collect();
    assert!(rows[0].contains("expected (x.md:20)"), "{report}");
    assert!(
        rows[1].starts_with("    same") && rows[1].ends_with("| same"),
        "{report}"
    );
    assert!(
        rows[2].starts_with("    Bearer ...") && rows[2].ends_with("| Bearer abc")
    );
    assert!(
        rows[3].starts_with("  ✗ wanted") && rows[3].ends_with("| got"),
        "{report}"
    );
    assert!(
        rows[4].starts_with("  ✗ ") && rows[4].ends_with("| extra"),
        "{report}"
    );
}

#[test]
fn ellipsis_matches_within_and_across_lines() {
    let m = |e, a| check::matches(e, a, false);
    assert!(
        m("a\nb", "a\nb\n")
            && !m("a\nb", "a\nc")
            && !m("a", "a\nb")
            && m("a  \n\n", "a")
    );
    assert!(
        m("Bearer ...", "Bearer abc")
            && m("a\n...\nd", "a\nb\nc\nd")
            && m("...", "")
    );
    assert!(
        m("x...y...z", "x1y2z") && !m("x...y...z", "x1z2y") && !m("ab...ba", "aba")
    );
    let excerpt = |e, a| check::matches(e, a, true);
    assert!(
        excerpt("b\nc", "a\nb\nc\nd")
            && excerpt("a", "a\nb")
            && excerpt("b", "a\nb")
    );
    assert!(
        !excerpt("b\nd", "a\nb\nc\nd")
            && !excerpt("ch", "echo")
            && excerpt("b...", "a\nbx\nc")
    );
}

#[test]
fn matching_output_passes_and_ellipsis_matches_any_text() {
    let markdown = r#"
## Prints a token
```rust
fn main() {
    println!("token abc123");
    println!("second line");
    println!("third line");
}
```

```text
token ...
...
third line
```
"#;
    assert_eq!(run_block(markdown), Ok(()));
}

#[test]
fn a_mismatched_line_fails() {
    let markdown = r#"
```rust
fn main() {
    println!("goodbye");
}
```

```text
hello
```
"#;
    assert!(run_block(markdown).is_err());
}

#[test]
fn printing_with_no_expected_output_fails() {
    let markdown = "```rust\nfn main() {\n    println!(\"unchecked\");\n}\n```\n";
    assert!(run_block(markdown).is_err());
}

#[test]
fn a_panicking_block_fails() {
    let markdown = "```rust\nfn main() {\n    panic!(\"boom\");\n}\n```\n";
    assert!(run_block(markdown).is_err());
}

#[test]
fn a_non_zero_exit_fails_even_with_the_right_output() {
    let markdown = r#"
```rust
fn main() {
    println!("done");
    std::process::exit(3);
}
```

```text
done
```
"#;
    assert!(run_block(markdown).is_err());
}

#[test]
fn an_error_from_main_fails() {
    let markdown = r#"
```rust
fn main() -> Result<(), Box<dyn std::error::Error>> {
    Err("it went wrong".into())
}
```
"#;
    assert!(run_block(markdown).is_err());
}

#[test]
fn a_hanging_block_times_out() {
    let markdown = r#"
```rust,timeout=2
fn main() {
    std::thread::sleep(std::time::Duration::from_secs(600));
}
```
"#;
    let started = Instant::now();
    assert!(run_block(markdown).is_err());
    assert!(started.elapsed() < Duration::from_secs(120));
}

#[test]
fn expected_output_under_a_block_that_does_not_run_is_refused() {
    let markdown =
        "```rust,no_run\nfn main() {}\n```\n\n```text\nnever checked\n```\n";
    let error = test_code(markdown).expect_err("must be refused");
    assert!(
        error.ends_with(".md:5: output under a block that does not run: unchecked")
    );
}

#[test]
fn a_running_block_needs_a_main_and_known_words() {
    assert!(test_code("```rust\nlet x = 1;\n```\n").is_err());
    assert!(test_code("```rust,no-run\nfn main() {}\n```\n").is_err());
    assert!(test_code("```rust,should_panic\nfn main() {}\n```\n").is_err());
    // One kind of block at most; a timeout only for a block that runs.
    let parse = |info| Attributes::parse(info).map(|a| a.is_some());
    assert_eq!(parse("rust,server,timeout=5"), Ok(true));
    assert_eq!(parse("text"), Ok(false));
    assert!(parse("rust,server,no_run").is_err());
    assert!(parse("rust,ignore,no_run").is_err());
    assert!(parse("rust,client_of=x,server").is_err());
    assert!(parse("rust,no_run,timeout=5").is_err());
}

#[test]
fn includes_expand_as_mdbook_expands_them() {
    let dir = std::env::temp_dir()
        .join(format!("cookbook-selftest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let source = "// ANCHOR: a\nfn a() {}\n// ANCHOR_END: a\n// ANCHOR: b\nfn b() {}\n\
                  // ANCHOR_END: b\nfn main() {}\n// ANCHOR: a\nfn a2() {}\n// ANCHOR_END: a\n";
    std::fs::write(dir.join("x.rs"), source).expect("write x.rs");
    let expand = |line: &str| book::expand(&[line.to_string()], &dir);

    let part = expand("{{#include x.rs:a}}").expect("include");
    assert_eq!(part.code, "fn a() {}\nfn a2() {}\n");
    assert!(!part.partial);

    let hidden = expand("{{#rustdoc_include x.rs:a}}").expect("rustdoc_include");
    assert_eq!(
        hidden.code,
        "fn a() {}\n# fn b() {}\n# fn main() {}\nfn a2() {}\n"
    );
    assert!(hidden.partial);

    let whole = expand("{{#include x.rs}}").expect("whole file");
    assert_eq!(whole.code, source);

    assert!(expand("{{#include x.rs:nope}}").is_err());
    assert!(expand("{{#include x.rs:2:4}}").is_err());
    assert!(expand("{{#include missing.rs}}").is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn expected_output_is_the_text_block_right_under_a_rust_block() {
    let markdown = "# T\n```rust\nfn main() {}\n```\n\n```text\nout\n```\n\
                    ```rust\nfn main() {}\n```\nprose\n```text\nnot output\n```\n";
    let blocks = book::code_blocks(markdown);
    let expected = blocks[0].expected.as_ref().expect("first block has output");
    assert_eq!((expected.line, expected.end_line), (6, 8));
    assert_eq!(
        (expected.body.join("\n"), blocks[0].end_line),
        ("out".into(), 4)
    );
    assert_eq!(blocks[0].heading, Some((1, "T".to_string())));
    assert_eq!(blocks[2].expected, None);
}

/// `cargo test` runs one test per Rust block of the book, but for a
/// `part_of` block, whose file cargo compiles as part of its target: that
/// the file is in the target and has the anchor is checked here.
#[test]
fn every_rust_block_of_the_book_is_a_test() {
    let mut blocks = 0;
    let mut parts = 0;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("book/src");
    for entry in std::fs::read_dir(&src).expect("book/src") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            let markdown = std::fs::read_to_string(&path).expect("chapter");
            for block in book::code_blocks(&markdown) {
                let Ok(Some(attributes)) = Attributes::parse(&block.info) else {
                    continue;
                };
                let Some(target) = &attributes.part_of else {
                    blocks += 1;
                    continue;
                };
                let checked = book::check_part_of(root, target, &block.body, &src);
                let at = format!("{}:{}", path.display(), block.line);
                checked.unwrap_or_else(|e| panic!("{at}: {e}"));
                parts += 1;
            }
        }
    }
    let generated = include_str!(concat!(env!("OUT_DIR"), "/skeptic-tests.rs"));
    assert!(blocks + parts > 0);
    assert_eq!(generated.matches("#[test]").count(), blocks);
}

/// A repository of one program in a folder, `prog` (`main.rs` with the
/// modules `a`, `b` and, by `#[path]`, `c`; `b` has its own `d`), another
/// target `other`, and a chapter folder `book/src`.
fn program_in_a_folder() -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("a temporary folder");
    let files = [
        (
            "recipes/Cargo.toml",
            "[[example]]\nname = \"prog\"\npath = \"../examples/prog/main.rs\"\n\n\
             [[example]]\nname = \"other\"\npath = \"../examples/other.rs\"\n",
        ),
        (
            "examples/prog/main.rs",
            "mod a;\npub mod b;\n#[path = \"../shared/c.rs\"]\n#[allow(dead_code)]\nmod c;\n\
             fn main() {}\n",
        ),
        (
            "examples/prog/a.rs",
            "// ANCHOR: part\nfn a() {}\n// ANCHOR_END: part\n",
        ),
        ("examples/prog/b.rs", "mod d;\n"),
        (
            "examples/prog/b/d.rs",
            "// ANCHOR: deep\nfn d() {}\n// ANCHOR_END: deep\n",
        ),
        ("examples/shared/c.rs", "fn c() {}\n"),
        (
            "examples/other.rs",
            "// ANCHOR: part\nfn main() {}\n// ANCHOR_END: part\n",
        ),
        (
            "examples/prog/stray.rs",
            "// ANCHOR: part\nfn s() {}\n// ANCHOR_END: part\n",
        ),
    ];
    for (path, text) in files {
        let path = repo.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("folder");
        std::fs::write(path, text).expect("a file");
    }
    std::fs::create_dir_all(repo.path().join("book/src")).expect("book/src");
    repo
}

/// A `part_of` block must include a file of its target's module tree, with
/// the anchor it names; a wrong anchor, file or target fails the build.
#[test]
fn a_part_of_block_must_show_an_anchor_of_a_file_of_its_target() {
    let repo = program_in_a_folder();
    let src = repo.path().join("book/src");
    let check = |target: &str, lines: &[&str]| {
        let body: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        book::check_part_of(repo.path(), target, &body, &src)
    };
    let good = "{{#rustdoc_include ../../examples/prog/a.rs:part}}";
    assert_eq!(check("prog", &[good]), Ok(()));
    assert_eq!(
        check("prog", &["", "{{#include ../../examples/prog/a.rs:part}}"]),
        Ok(())
    );
    assert_eq!(
        check("prog", &["{{#include ../../examples/shared/c.rs}}"]),
        Ok(())
    );
    assert_eq!(
        check("prog", &["{{#include ../../examples/prog/b/d.rs:deep}}"]),
        Ok(())
    );
    assert_eq!(
        check("other", &["{{#include ../../examples/other.rs:part}}"]),
        Ok(())
    );
    let error = |target: &str, line: &str| check(target, &[line]).expect_err(line);
    let no_anchor = "{{#rustdoc_include ../../examples/prog/a.rs:other}}";
    assert!(error("prog", no_anchor).contains("anchor not found"));
    let stray = "{{#rustdoc_include ../../examples/prog/stray.rs:part}}";
    assert!(error("prog", stray).contains("is not a module of prog"));
    let outside = "{{#rustdoc_include ../../examples/other.rs:part}}";
    assert!(error("prog", outside).contains("is not a module of prog"));
    assert!(error("other", good).contains("is not a module of other"));
    assert!(error("none", good).contains("has no target `none`"));
    assert!(
        error("prog", "{{#include ../../examples/prog/none.rs}}")
            .contains("none.rs")
    );
    assert!(error("prog", "fn main() {}").contains("one include"));
    assert!(check("prog", &[good, good]).is_err());
    assert!(
        Attributes::parse("rust,part_of=prog")
            .is_ok_and(|a| a.is_some_and(|a| !a.runs()))
    );
    assert!(Attributes::parse("rust,part_of=prog,no_run").is_err());
    assert!(Attributes::parse("rust,part_of=prog,client_of=x").is_err());
}

/// The files of a program's module tree, found as rustc finds them.
#[test]
fn module_files_follow_mod_declarations_and_paths() {
    let repo = program_in_a_folder();
    let mut names: Vec<String> =
        book::module_files(&repo.path().join("examples/prog/main.rs"))
            .iter()
            .map(|f| {
                f.strip_prefix(repo.path())
                    .unwrap_or(f)
                    .display()
                    .to_string()
            })
            .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "examples/prog/../shared/c.rs",
            "examples/prog/a.rs",
            "examples/prog/b.rs",
            "examples/prog/b/d.rs",
            "examples/prog/main.rs",
        ]
    );
}

/// A program may print bytes that are not UTF-8: they are compared as
/// mdBook would show them, not refused.
#[test]
fn output_that_is_not_utf8_is_compared_lossily() {
    let markdown = r#"
```rust
use std::io::Write;
fn main() -> std::io::Result<()> {
    std::io::stdout().write_all(b"bytes \xff\n")
}
```

```text
bytes �
```
"#;
    assert_eq!(run_block(markdown), Ok(()));
}
