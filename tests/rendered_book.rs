//! The book as its readers meet it: built with the pinned mdbook into
//! `target/rendered-book` and opened in headless Chromium by
//! `tests/python/rendered_book.py`, which checks every page, link, reference
//! link, hidden line, code line's width, search and Run button, and leaves a
//! screenshot of every page in `target/screenshots`. A code line fits when
//! its block does not scroll sideways: 86 characters at the book's width.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
#[cfg_attr(
    not(all(mdbook, python)),
    ignore = "needs mdbook 0.5.4, /usr/bin/chromium and Python with tests/python/requirements.txt (.ci/run installs them)"
)]
fn the_rendered_book_loads_links_hides_fits_and_finds() {
    let root = common::repo_root();
    // `target/tmp`, below the target folder wherever it is.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder");
    let built = target.join("rendered-book");
    let screenshots = target.join("screenshots");

    // The browser starts while mdbook builds the book: the script waits
    // for a line on its stdin before it opens the first page.
    let mut check = Command::new(common::python());
    check
        .arg(common::script("rendered_book.py"))
        .arg(&built)
        .arg(root.join("book/src/SUMMARY.md"))
        .arg(&screenshots);
    let mut browser =
        common::ChildProcess::start("tests/python/rendered_book.py", check);

    let started = Instant::now();
    if built.exists() {
        std::fs::remove_dir_all(&built)
            .expect("remove the previous build of the book");
    }
    let mut build = Command::new("mdbook");
    build
        .arg("build")
        .arg(root.join("book"))
        .arg("--dest-dir")
        .arg(&built);
    let output = common::run_with_timeout(build, Duration::from_secs(120))
        .expect("mdbook build");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "mdbook build failed:\n{log}");
    // mdbook reports an include it cannot follow as an ERROR, and goes on.
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "mdbook reported:\n{}", errors.join("\n"));
    println!("mdbook build: {:.1} s", started.elapsed().as_secs_f64());

    let stdin = browser.stdin().expect("the script's stdin");
    writeln!(stdin, "built").expect("tell the script that the book is built");
    browser.close_stdin();
    let finished = browser.wait(Duration::from_secs(300));
    assert!(
        finished.success(),
        "the rendered book has problems (each on a line of its own):\n{}",
        finished.report()
    );
    println!("{}", finished.stdout);
}
