//! The chapter "Connect your tools" (`book/src/flight_sql_tools.md`), run:
//! every ```python block, and every ```console block with a ```text block
//! under it, runs against the first Flight SQL server on a port of its own,
//! with the URL and port the block shows (the server's default) replaced by
//! the server's, and must print what the ```text block under it shows
//! (`...` matches any text). The Python programs must also write nothing to
//! stderr: the ADBC driver warns there.
//!
//! The Python blocks need Python with `tests/python/requirements.txt`; the
//! console blocks need arrow-flight's `flight_sql_client` on `PATH`, which
//! `.ci/run` installs. Without one of them, cargo reports the test that
//! needs it as ignored, with the reason (`recipes/build.rs`; on CI, where
//! `CI` is set, the build fails instead).

use crate::common;

use crate::flight_sql_first_server;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use common::{ChildProcess, TIMEOUT, TestServer, block_on, repo_root, runtime};

/// The URL the server prints by default, as the chapter's blocks use it.
const SHOWN_URL: &str = "grpc://127.0.0.1:8819";
/// The same server's port, as `flight_sql_client --port` takes it.
const SHOWN_PORT: &str = "--port 8819";

/// A block of the chapter that runs, and the output shown under it.
struct Example {
    /// The line of the chapter where the block's fence is.
    line: usize,
    language: String,
    code: String,
    expected: String,
}

/// The ```python and ```console blocks of `chapter` with a ```text block
/// right under them (blank lines between are allowed). A ```python block
/// without one is an error: every Python program of the page runs.
fn examples(chapter: &str) -> Vec<Example> {
    let lines: Vec<&str> = chapter.lines().collect();
    let block_at = |start: usize| -> (String, String, usize) {
        let language = lines[start].trim_start_matches("```").to_string();
        let end = (start + 1..lines.len())
            .find(|&i| lines[i].starts_with("```"))
            .expect("a closed block");
        (language, lines[start + 1..end].join("\n"), end)
    };
    let mut found = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        if !lines[at].starts_with("```") {
            at += 1;
            continue;
        }
        let (language, code, end) = block_at(at);
        let mut next = end + 1;
        while next < lines.len() && lines[next].trim().is_empty() {
            next += 1;
        }
        let runs = language == "python" || language == "console";
        if runs && next < lines.len() && lines[next] == "```text" {
            let (_, expected, text_end) = block_at(next);
            found.push(Example {
                line: at + 1,
                language,
                code,
                expected,
            });
            at = text_end + 1;
            continue;
        }
        assert!(
            language != "python",
            "flight_sql_tools.md:{}: a Python block without the ```text block \
             of what it prints",
            at + 1
        );
        at = end + 1;
    }
    found
}

/// Whether `printed` is `expected`, where `...` in `expected` matches any
/// text (also across lines). Trailing spaces and blank lines do not count.
fn matches(expected: &str, printed: &str) -> bool {
    let (expected, printed) = (tidy(expected), tidy(printed));
    let parts: Vec<&str> = expected.split("...").collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return expected == printed;
    }
    if !printed.starts_with(first) || !printed[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &printed[first.len()..printed.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

fn tidy(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.join("\n").trim_end().to_string()
}

fn chapter() -> String {
    let path = repo_root().join("book/src/flight_sql_tools.md");
    fs::read_to_string(&path).expect("the chapter can be read")
}

fn assert_prints(example: &Example, printed: &str) {
    assert!(
        matches(&example.expected, printed),
        "book/src/flight_sql_tools.md:{}: the {} block printed what the \
         ```text block under it does not show.\n--- shown:\n{}\n--- printed:\n{}",
        example.line,
        example.language,
        tidy(&example.expected),
        tidy(printed)
    );
}

#[test]
fn matching_with_the_wildcard() {
    assert!(matches("a\nb  \n\n", "a\nb"));
    assert!(matches(
        "Serving on grpc://...:8819",
        "Serving on grpc://x:8819"
    ));
    assert!(matches("a ... c ... e", "a b c d e"));
    assert!(!matches("a ... c", "a b d"));
    assert!(!matches("a\nb", "a\nc"));
    assert!(!matches("x...x", "x"));
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn the_python_programs_print_what_the_chapter_shows() {
    let chapter = chapter();
    let examples: Vec<Example> = examples(&chapter)
        .into_iter()
        .filter(|e| e.language == "python")
        .collect();
    assert!(
        examples.len() >= 3,
        "ADBC, pandas and polars each have a block"
    );
    let runtime = runtime();
    let server = block_on(
        &runtime,
        "starting the server",
        TestServer::start(flight_sql_first_server::serve),
    );
    let dir = tempfile::tempdir().expect("a temporary folder");
    for example in &examples {
        assert!(
            example.code.contains(SHOWN_URL),
            "flight_sql_tools.md:{}: the block does not connect to {SHOWN_URL}",
            example.line
        );
        let code = example.code.replace(SHOWN_URL, &server.grpc_url());
        let path: PathBuf = dir.path().join(format!("line_{}.py", example.line));
        fs::write(&path, code).expect("the program can be written");
        let mut command = Command::new(common::python());
        command.arg(&path).current_dir(dir.path());
        let finished = ChildProcess::start("a Python block", command).wait(TIMEOUT);
        assert!(
            finished.success(),
            "flight_sql_tools.md:{}: the program failed; {}",
            example.line,
            finished.report()
        );
        assert_prints(example, &finished.stdout);
        assert_eq!(
            finished.stderr, "",
            "flight_sql_tools.md:{}: the program wrote to stderr",
            example.line
        );
    }
    block_on(&runtime, "stopping the server", server.stop());
}

/// The words of a command line, with "double quotes" around a word that
/// holds spaces, as the chapter writes them.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            ' ' if !quoted => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

#[test]
#[cfg_attr(
    not(flight_sql_client),
    ignore = "needs arrow-flight's flight_sql_client: cargo install arrow-flight --version 60.1.0 --features cli,flight-sql,tls-ring --bin flight_sql_client"
)]
fn the_command_line_client_prints_what_the_chapter_shows() {
    let chapter = chapter();
    let examples: Vec<Example> = examples(&chapter)
        .into_iter()
        .filter(|e| e.language == "console")
        .collect();
    assert!(examples.len() >= 2, "the chapter runs flight_sql_client");
    let program = "flight_sql_client".to_string();
    let runtime = runtime();
    let server = block_on(
        &runtime,
        "starting the server",
        TestServer::start(flight_sql_first_server::serve),
    );
    let port = format!("--port {}", server.url().rsplit(':').next().unwrap_or(""));
    for example in &examples {
        let line = example.code.strip_prefix("$ ").unwrap_or(&example.code);
        assert!(
            line.starts_with("flight_sql_client ") && line.contains(SHOWN_PORT),
            "flight_sql_tools.md:{}: a console block with output runs \
             flight_sql_client on {SHOWN_PORT}",
            example.line
        );
        let words = words(&line.replace(SHOWN_PORT, &port));
        let mut command = Command::new(&program);
        command.args(&words[1..]);
        let finished =
            ChildProcess::start("flight_sql_client", command).wait(TIMEOUT);
        assert!(
            finished.success(),
            "flight_sql_tools.md:{}: the command failed; {}",
            example.line,
            finished.report()
        );
        assert_prints(example, &finished.stdout);
    }
    block_on(&runtime, "stopping the server", server.stop());
}
