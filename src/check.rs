//! The test of one block (`tests/book.rs` routes skeptic's tests here):
//! build its program (skeptic keeps it while nothing it is built from
//! changes), run it once for all the blocks that show it, compare what it
//! printed with the block's expected output and report; with
//! `FLIGHT_COOKBOOK_BLESS=1`, rewrite that output instead of failing.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use similar::algorithms::{Capture, Replace, myers};
use similar::{Algorithm, DiffTag};
use wait_timeout::ChildExt;

use crate::book::{self, CodeBlock};

/// What a program printed on stdout and stderr, and what went wrong.
type Run = (String, String, Option<String>);

/// Compiles, runs and checks a block that runs.
pub fn run_snippet(root: &str, out: &str, target: &str, code: &str) {
    let (meta, program) = code.trim_start().split_once('\n').unwrap_or_default();
    let meta: Vec<&str> = meta.trim_start_matches("//@ ").splitn(6, ' ').collect();
    let [id, kind, timeout, excerpt, index, chapter] = meta[..] else {
        panic!("the test of a block lost the line that says where it is");
    };
    let (index, excerpt) = (index.parse().unwrap_or(0), excerpt == "true");
    let path = Path::new(root).join(chapter);
    let block = rust_block(&path, index).expect("the block is where it was");
    let at = format!("{chapter}:{}", block.line);
    let (stdout, stderr, problem) = run_once(id, &at, || {
        let found = crate::harness::found_at(id, std::process::id());
        let _ = fs::remove_file(&found);
        build_and_locate(root, out, target, program);
        let exe = fs::read_to_string(&found);
        let _ = fs::remove_file(&found);
        let timeout = Duration::from_secs(timeout.parse().unwrap_or(60));
        let run = exe.and_then(|exe| launch(&exe, kind, timeout));
        run.unwrap_or_else(|e| (String::new(), String::new(), Some(e.to_string())))
    });
    eprint!("{stderr}");
    let expected = block.expected.as_ref().map(|e| e.body.join("\n"));
    let expected = expected.unwrap_or_default();
    let problem = match problem {
        None if matches(&expected, &stdout, excerpt) => return print!("{stdout}"),
        None if std::env::var_os("FLIGHT_COOKBOOK_BLESS").is_some() => {
            return assert!(bless(&path, index, &stdout, excerpt), "cannot bless");
        }
        None => "what it printed differs from the expected output under it".into(),
        Some(problem) => problem,
    };
    let title = match &block.expected {
        Some(text) => format!("expected ({chapter}:{})", text.line),
        None => "expected (no text block under it)".into(),
    };
    let report = side_by_side(&title, &expected, &stdout, excerpt);
    let heading = block.heading.map(|(_, h)| h).unwrap_or_default();
    eprintln!("\n{at}: the block under \"{heading}\": {problem}:\n\n{report}");
    // The report says what is wrong (its stderr is above it): no panic
    // message or backtrace.
    std::panic::resume_unwind(Box::new("the block's output is wrong"));
}

/// Has skeptic build the program and run it once, to write where it is.
/// Linux refuses to run a file that a process still holds open for writing
/// ("Text file busy"), as a process that another test forks just then may
/// for a moment: skeptic then fails the test, and it is tried again.
fn build_and_locate(root: &str, out: &str, target: &str, program: &str) {
    for attempt in 1.. {
        let built = std::panic::catch_unwind(|| {
            skeptic::rt::run_test(root, out, target, program)
        });
        let Err(panic) = built else { return };
        let busy = panic.downcast_ref::<String>().is_some_and(|m| {
            m.contains("Text file busy") || m.contains("os error 26")
        });
        if !busy || attempt == 5 {
            std::panic::resume_unwind(panic);
        }
        std::thread::sleep(Duration::from_millis(50 * attempt));
    }
}

/// The `index`th Rust block of a chapter, as the chapter is now.
fn rust_block(chapter: &Path, index: usize) -> Option<CodeBlock> {
    book::rust_blocks(&fs::read_to_string(chapter).ok()?).nth(index)
}

/// Runs `run` once per `key` in this process: the blocks that show one
/// program share its run, each checking its own expected lines. Writes how
/// long it took to `run-times.txt`, for `.ci/run` to list the slowest.
fn run_once(key: &str, label: &str, run: impl FnOnce() -> Run) -> Run {
    static RUNS: LazyLock<Mutex<HashMap<String, Arc<OnceLock<Run>>>>> =
        LazyLock::new(Default::default);
    let mut runs = RUNS.lock().unwrap_or_else(|e| e.into_inner());
    let slot = Arc::clone(runs.entry(key.into()).or_default());
    drop(runs);
    let run = slot.get_or_init(|| {
        let started = Instant::now();
        let done = run();
        let time = format!("{:8.1}  {label}\n", started.elapsed().as_secs_f64());
        let times = Path::new(env!("OUT_DIR")).join("run-times.txt");
        let file = fs::OpenOptions::new().create(true).append(true).open(times);
        let _ = file.and_then(|mut file| file.write_all(time.as_bytes()));
        done
    });
    run.clone()
}

/// Runs the program in a folder of its own, what it prints written to files
/// of another: a `client` with the URL of its server, started first from
/// the same program; a `server` with the address `127.0.0.1:0`, and SIGTERM
/// once it has printed a line.
fn launch(exe: &str, kind: &str, timeout: Duration) -> io::Result<Run> {
    let (dir, logs) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let log = |role: &str, end: &str| logs.path().join(format!("{role}.{end}"));
    let read = |role: &str, end: &str| {
        let bytes = fs::read(log(role, end));
        bytes.map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let start = |role: &str, args: &[&str]| {
        Command::new(exe)
            .args(args)
            .current_dir(dir.path())
            .env("FLIGHT_COOKBOOK_ROLE", role)
            .stdin(Stdio::piped())
            .stdout(fs::File::create(log(role, "out"))?)
            .stderr(fs::File::create(log(role, "err"))?)
            .spawn()
    };
    let deadline = Instant::now() + timeout;
    // The rest of the first line of `role`'s that starts with `prefix`, once
    // printed, while it runs.
    let wait_for = |role: &str, child: &mut Child, prefix: &str| loop {
        let text = read(role, "out").unwrap_or_default();
        if let Some(rest) = text.lines().find_map(|l| l.strip_prefix(prefix)) {
            return Some(rest.to_string());
        }
        if Instant::now() > deadline || !matches!(child.try_wait(), Ok(None)) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut server = None;
    let args = match kind {
        "client" => {
            let mut started = start("server", &[])?;
            let url = wait_for("server", &mut started, "FLIGHT_COOKBOOK_URL=");
            server = Some(started);
            vec![url.unwrap_or_default()]
        }
        "server" => vec!["127.0.0.1:0".to_string()],
        _ => vec![],
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut program = start("program", &args)?;
    if kind == "server" && wait_for("program", &mut program, "").is_some() {
        let pid = program.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let mut problem = finish(program, "it", left)?;
    let mut stderr = read("program", "err")?;
    if let Some(server) = server {
        problem =
            problem.or(finish(server, "the server", Duration::from_secs(10))?);
        stderr = read("server", "err")? + &stderr;
    }
    Ok((read("program", "out")?, stderr, problem))
}

/// Closes the child's stdin, waits until it ends, and kills it after
/// `timeout`; what went wrong, if anything.
fn finish(
    mut child: Child,
    who: &str,
    timeout: Duration,
) -> io::Result<Option<String>> {
    drop(child.stdin.take());
    let status = child.wait_timeout(timeout)?;
    if status.is_none() {
        child.kill()?;
        child.wait()?;
    }
    Ok(match status {
        None => Some(format!("{who} did not stop in time and was killed")),
        Some(status) if !status.success() => {
            Some(format!("{who} failed ({status})"))
        }
        Some(_) => None,
    })
}

/// Compiles a block that does not run, unless it compiled before from the
/// same code against the same libraries and compiler (the same manifest,
/// lock file and toolchain: not the recipes' manifest, which a new example
/// changes).
pub fn check_snippet(root: &str, out: &str, target: &str, code: &str) {
    let built_with = concat!(
        include_str!("../Cargo.toml"),
        include_str!("../Cargo.lock"),
        include_str!("../rust-toolchain.toml"),
    );
    let key = book::fnv(format!("{built_with}{code}").as_bytes());
    let mark = Path::new(out).join(format!("checked/{key:016x}"));
    if !mark.exists() {
        skeptic::rt::compile_test(root, out, target, code);
        let _ = fs::create_dir_all(Path::new(out).join("checked"));
        let _ = fs::write(&mark, "");
    }
}

/// Trailing spaces and trailing blank lines do not count.
fn lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// Whether `actual` is what `expected` describes: the same text, where
/// `...` stands for any text, within a line or across lines (as Python's
/// doctest ELLIPSIS). An `excerpt` may be any run of whole lines of `actual`.
pub fn matches(expected: &str, actual: &str, excerpt: bool) -> bool {
    let (expected, actual) = (lines(expected).join("\n"), lines(actual).join("\n"));
    let pattern = regex::escape(&expected).replace(r"\.\.\.", "(?s:.*)");
    let (pattern, text) = match excerpt {
        true => (format!("\n{pattern}\n"), format!("\n{actual}\n")),
        false => (format!("^{pattern}$"), actual),
    };
    regex::Regex::new(&pattern).is_ok_and(|pattern| pattern.is_match(&text))
}

/// An expected line and a printed one, equal when the first matches the
/// second; a line `...` alone is left to [`rows`] (it may stand for many).
struct Want<'a>(&'a str);
struct Got<'a>(&'a str);
impl PartialEq<Want<'_>> for Got<'_> {
    fn eq(&self, want: &Want) -> bool {
        want.0 != "..." && (want.0 == self.0 || matches(want.0, self.0, false))
    }
}

/// A row of the report: an expected line, a printed one, whether they agree.
type Row<'a> = (Option<&'a str>, Option<&'a str>, bool);

/// Expected and printed lines paired by `similar`'s diff. In a part that
/// changed, expected lines take printed ones in order and a `...` line
/// those left over; at the ends of an excerpt, only its own printed lines
/// ([`own_lines`]).
fn rows<'a>(expected: &'a str, printed: &'a str, excerpt: bool) -> Vec<Row<'a>> {
    let (old, new) = (lines(expected), lines(printed));
    let want: Vec<Want> = old.iter().map(|l| Want(l)).collect();
    let got: Vec<Got> = new.iter().map(|l| Got(l)).collect();
    let mut diff = Replace::new(Capture::new());
    let (all_old, all_new) = (0..old.len(), 0..new.len());
    let _ = myers::diff_deadline_raw(
        &mut diff,
        &want[..],
        all_old,
        &got[..],
        all_new,
        None,
    );
    let mut rows = Vec::new();
    for (tag, o, n) in diff
        .into_inner()
        .into_ops()
        .iter()
        .map(|op| op.as_tag_tuple())
    {
        let at_start = o.start + n.start == 0;
        let at_end = o.end == old.len() && n.end == new.len();
        let (o, mut n) = (&old[o], &new[n]);
        if excerpt
            && tag != DiffTag::Equal
            && !old.is_empty()
            && (at_start || at_end)
        {
            n = own_lines(o, n, at_start, at_end);
        }
        for (i, line) in o.iter().enumerate() {
            let any = *line == "...";
            let take = match any {
                true => n.len().saturating_sub(wanted(&o[i + 1..])),
                false => n.len().min(1),
            };
            if take == 0 {
                rows.push((Some(*line), None, any));
            }
            let pairs = n[..take].iter();
            rows.extend(
                pairs.map(|p| (Some(*line), Some(*p), any || Got(p) == Want(line))),
            );
            n = &n[take..];
        }
        rows.extend(n.iter().map(|p| (None, Some(*p), false)));
    }
    rows
}

/// How many printed lines the expected lines `o` need at least.
fn wanted(o: &[&str]) -> usize {
    o.iter().filter(|l| **l != "...").count()
}

/// Of the printed lines `n` at an end of an excerpt that expects `o` there,
/// those that are its own: as many as it needs, next to the rest of its
/// lines, or the most like `o` when nothing of it matched; none unless alike
/// (difflib's ratio 0.5). The others are the rest of the program's.
fn own_lines<'n, 'a>(
    o: &[&str],
    n: &'n [&'a str],
    start: bool,
    end: bool,
) -> &'n [&'a str] {
    let (k, expected) = (wanted(o), o.join("\n").chars().collect::<Vec<_>>());
    let Some(last) = n.len().checked_sub(k) else {
        return n;
    };
    let ratio = |s: &usize| {
        let printed: Vec<char> = n[*s..*s + k].join("\n").chars().collect();
        let ops =
            similar::capture_diff_slices(Algorithm::Myers, &expected, &printed);
        similar::diff_ratio(&ops, expected.len(), printed.len())
    };
    let starts = match (start, end) {
        (true, true) => 0..=last,
        (true, false) => last..=last,
        _ => 0..=0,
    };
    let s = starts
        .max_by(|a, b| ratio(a).total_cmp(&ratio(b)))
        .unwrap_or(0);
    if ratio(&s) >= 0.5 { &n[s..s + k] } else { &[] }
}

/// Expected and printed lines side by side, the rows that differ marked.
pub fn side_by_side(
    title: &str,
    expected: &str,
    printed: &str,
    excerpt: bool,
) -> String {
    let rows = rows(expected, printed, excerpt);
    let widths = rows.iter().map(|r| r.0.map_or(0, |e| e.chars().count()));
    let width = widths
        .chain([title.chars().count()])
        .max()
        .unwrap_or(0)
        .min(60);
    let mut out = format!("    {title:width$} | printed\n");
    for (e, p, same) in rows {
        let e: String = e.unwrap_or("").chars().take(width).collect();
        let mark = if same { ' ' } else { '✗' };
        out += &format!("  {mark} {e:width$} | {}\n", p.unwrap_or(""));
    }
    if excerpt {
        out += "    (the block shows part of a program: its own lines only)\n";
    }
    out + "    (`...` in the expected output matches any text)\n"
}

/// The expected output that `printed` calls for: the old lines where they
/// still match (so their `...` stays), the printed ones elsewhere.
pub fn blessed(old: &str, printed: &str, excerpt: bool) -> String {
    let mut out: Vec<&str> = Vec::new();
    for (old, new, same) in rows(old, printed, excerpt) {
        match (old, new) {
            (Some("..."), _) if out.last() == Some(&"...") => {}
            (Some(old), _) if same => out.push(old),
            (_, Some(new)) => out.push(new),
            _ => {}
        }
    }
    out.join("\n")
}

/// Writes the expected output that `printed` calls for into the chapter,
/// under its `index`th Rust block (a new `text` block if there was none),
/// one block at a time.
pub fn bless(chapter: &Path, index: usize, printed: &str, excerpt: bool) -> bool {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _only_me = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let markdown = fs::read_to_string(chapter).unwrap_or_default();
    let Some(block) = rust_block(chapter, index) else {
        return false;
    };
    let old = block.expected.as_ref().map(|e| e.body.join("\n"));
    let new = blessed(old.as_deref().unwrap_or(""), printed, excerpt);
    let mut lines: Vec<&str> = markdown.lines().collect();
    match &block.expected {
        Some(text) => drop(lines.splice(text.line..text.end_line - 1, new.lines())),
        None => {
            let added = ["", "```text"].into_iter().chain(new.lines());
            let at = block.end_line..block.end_line;
            drop(lines.splice(at, added.chain(["```"])));
        }
    }
    eprintln!("blessed {}:{}", chapter.display(), block.line);
    fs::write(chapter, lines.join("\n") + "\n").is_ok()
}
