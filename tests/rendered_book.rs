//! The book as its readers meet it: built with the pinned mdbook and opened
//! in headless Chromium by `tests/python/rendered_book.py`, which checks every
//! page, link, hidden line, search and Run button, and leaves a screenshot of
//! every page in `target/screenshots`.

mod common;

use std::process::Command;
use std::time::Duration;

const MDBOOK: &str = "mdbook v0.5.4";

#[test]
fn the_rendered_book_loads_links_hides_and_finds() {
    let test = "the rendered-book test";
    let root = common::manifest_dir();
    let version = Command::new("mdbook").arg("--version").output();
    let version = version.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if version.as_deref().ok() != Some(MDBOOK) {
        let why = format!("it needs {MDBOOK} (`cargo install --locked mdbook@0.5.4`)");
        return common::unavailable(test, &why).unwrap_or(());
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        let why = format!("it needs Chromium at {chromium} (`apt-get install chromium`)");
        return common::unavailable(test, &why).unwrap_or(());
    }
    let python = match common::python("import playwright.sync_api") {
        Ok(python) => python,
        Err(why) => return common::unavailable(test, &why).unwrap_or(()),
    };

    let built = std::env::temp_dir().join(format!("cookbook-rendered-{}", std::process::id()));
    let mut build = Command::new("mdbook");
    build
        .arg("build")
        .arg(root.join("book"))
        .arg("--dest-dir")
        .arg(&built);
    let output = common::run_with_timeout(build, Duration::from_secs(120)).expect("mdbook build");
    assert!(
        output.status.success(),
        "mdbook build failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut check = Command::new(python);
    check
        .arg(root.join("tests/python/rendered_book.py"))
        .arg(&built)
        .arg(root.join("book/src/SUMMARY.md"))
        .arg(root.join("target/screenshots"))
        .env("CHROMIUM", &chromium);
    let output = common::run_with_timeout(check, Duration::from_secs(600)).expect("the check");
    let _ = std::fs::remove_dir_all(&built);
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(
        output.status.success(),
        "the rendered book has problems (listed above)\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
