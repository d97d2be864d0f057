//! The test of one block (`tests/book.rs` calls these for skeptic's tests):
//! compile it, run it, compare what it printed with the expected output
//! under it, report, and with `FLIGHT_COOKBOOK_BLESS=1`, rewrite that
//! output instead of failing.
//!
//! skeptic compiles a block's program and keeps it while nothing it was
//! built from changes (its `binary-cache`); a block that is only compiled
//! (`no_run`) leaves a mark under the same condition. Blocks that show the
//! same program share one build.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::{fs, process};

/// What a test knows of its block, from the `//@` lines of its code.
#[derive(Debug, Default)]
pub struct Block {
    pub id: String,
    pub chapter: String,
    pub line: usize,
    pub end: usize,
    pub heading: String,
    pub expected: String,
    pub expected_line: usize,
    /// The block shows part of a program: its expected output is a run of
    /// whole lines of what the program prints.
    pub excerpt: bool,
}

impl Block {
    /// Splits a test's code into its block and the program.
    pub fn parse(code: &str) -> (Block, String) {
        let (mut block, mut program) = (Block::default(), String::new());
        for line in code.lines() {
            if let Some(text) = line.strip_prefix("//@| ") {
                block.expected.push_str(text);
                block.expected.push('\n');
                continue;
            }
            let Some((key, value)) =
                line.strip_prefix("//@ ").and_then(|l| l.split_once(' '))
            else {
                program.push_str(line);
                program.push('\n');
                continue;
            };
            let number = value.parse().unwrap_or(0);
            match key {
                "id" => block.id = value.into(),
                "chapter" => block.chapter = value.into(),
                "line" => block.line = number,
                "end" => block.end = number,
                "heading" => block.heading = value.into(),
                "expected_line" => block.expected_line = number,
                "excerpt" => block.excerpt = value == "true",
                _ => {}
            }
        }
        (block, program)
    }
}

/// One lock per program: two blocks that show it run one after the other,
/// the second with the first one's build.
fn lock(key: &str) -> Arc<Mutex<()>> {
    static LOCKS: LazyLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> =
        LazyLock::new(Default::default);
    let mut locks = LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    Arc::clone(locks.entry(key.to_string()).or_default())
}

/// What a program printed on stdout and stderr, and how it ended.
type Run = (String, String, String);

/// Runs program `id` once in this process: the blocks that show it share
/// that run, each checking its own expected lines.
fn run_once(id: &str, label: &str, run: impl FnOnce() -> Run) -> Run {
    static RUNS: LazyLock<Mutex<HashMap<String, Run>>> =
        LazyLock::new(Default::default);
    let lock = lock(id);
    let _only_me = lock.lock().unwrap_or_else(|e| e.into_inner());
    let runs = || RUNS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(done) = runs().get(id) {
        return done.clone();
    }
    let started = std::time::Instant::now();
    let done = run();
    runs().insert(id.to_string(), done.clone());
    // What the slowest programs cost, for `.ci/run` to list.
    let times = Path::new(env!("OUT_DIR")).join("run-times.txt");
    let time = format!("{:8.1}  {label}\n", started.elapsed().as_secs_f64());
    let file = fs::OpenOptions::new().create(true).append(true).open(times);
    let _ = file.and_then(|mut file| file.write_all(time.as_bytes()));
    done
}

/// Compiles, runs and checks a block that runs.
pub fn run_snippet(root: &str, out: &str, target: &str, code: &str) {
    let (block, program) = Block::parse(code);
    let label = format!("{}:{}", block.chapter, block.line);
    let (stdout, stderr, status) = run_once(&block.id, &label, || {
        let base = crate::harness::result_base(&block.id, process::id());
        let read = |ext: &str| {
            fs::read_to_string(format!("{base}.{ext}")).unwrap_or_default()
        };
        let _ = fs::remove_file(format!("{base}.status"));
        skeptic::rt::run_test(root, out, target, &program);
        (read("stdout"), read("stderr"), read("status"))
    });
    let (status, server) = status.split_once('\n').unwrap_or((&status, ""));
    eprint!("{stderr}");
    let problem = match status {
        "" => "it left no record of its run".to_string(),
        "0" if !matches(&block.expected, &stdout, block.excerpt) => {
            if bless(&block, &stdout) {
                return;
            }
            "what it printed differs from the expected output under it".into()
        }
        "0" if server.is_empty() => return print!("{stdout}"),
        "0" => server.to_string(),
        "timeout" => {
            "it did not finish in time and was stopped (does it wait?)".into()
        }
        code if code.parse::<i32>().is_ok() => {
            format!("it failed (exit code {code})")
        }
        other => other.to_string(),
    };
    let mut report = format!("{problem}:\n\n{}", side_by_side(&block, &stdout));
    let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
    if !tail.is_empty() {
        report.push_str("\nits last lines on stderr:\n");
        tail.iter()
            .rev()
            .for_each(|l| report.push_str(&format!("    {l}\n")));
    }
    eprintln!(
        "\n{}:{}: the block under \"{}\": {report}",
        block.chapter, block.line, block.heading
    );
    // The report above says what is wrong; no panic message or backtrace.
    std::panic::resume_unwind(Box::new("the block's output is wrong"));
}

/// Compiles a block that does not run, unless it compiled before from the
/// same code with the same compiler and dependencies.
pub fn check_snippet(root: &str, out: &str, target: &str, code: &str) {
    static STAMP: LazyLock<String> = LazyLock::new(dependencies_stamp);
    let key = format!(
        "{:016x}",
        crate::book::fnv(format!("{}{code}", *STAMP).as_bytes())
    );
    let mark = Path::new(out).join("checked").join(&key);
    let lock = lock(&key);
    let _only_me = lock.lock().unwrap_or_else(|e| e.into_inner());
    if !mark.exists() {
        skeptic::rt::compile_test(root, out, target, code);
        let _ = fs::create_dir_all(Path::new(out).join("checked"));
        let _ = fs::write(&mark, "");
    }
}

/// The compiler's version and the size and time of every library in
/// `target/<profile>/deps`, what a block is compiled against.
fn dependencies_stamp() -> String {
    let out = PathBuf::from(env!("OUT_DIR"));
    let deps = out
        .ancestors()
        .nth(3)
        .map(|p| p.join("deps"))
        .unwrap_or_default();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = process::Command::new(rustc).arg("-vV").output();
    let mut stamp: String =
        String::from_utf8_lossy(&version.map(|o| o.stdout).unwrap_or_default())
            .into();
    let mut libraries: Vec<_> =
        fs::read_dir(deps).into_iter().flatten().flatten().collect();
    libraries.sort_by_key(|entry| entry.file_name());
    for entry in libraries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rlib") || name.ends_with(".rmeta") {
            let meta = entry.metadata().ok();
            let _ = writeln!(
                stamp,
                "{name} {:?}",
                meta.map(|m| (m.len(), m.modified().ok()))
            );
        }
    }
    stamp
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
    if excerpt {
        return ellipsis_match(
            &format!("...\n{expected}\n..."),
            &format!("\n{actual}\n"),
        );
    }
    ellipsis_match(&expected, &actual)
}

fn ellipsis_match(pattern: &str, text: &str) -> bool {
    let pieces: Vec<&str> = pattern.split("...").collect();
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if pieces.len() == 1 {
        return pattern == text;
    }
    if !text.starts_with(first)
        || !text.ends_with(last)
        || first.len() + last.len() > text.len()
    {
        return false;
    }
    let (mut from, end) = (first.len(), text.len() - last.len());
    for piece in &pieces[1..pieces.len() - 1] {
        match text[from..end].find(piece) {
            Some(at) => from += at + piece.len(),
            None => return false,
        }
    }
    true
}

/// Expected and printed lines side by side, as the new expected output
/// would align them, the rows that differ marked.
pub fn side_by_side(block: &Block, actual: &str) -> String {
    let title = match block.expected_line {
        0 => "expected (no text block under it: nothing)".to_string(),
        line => format!("expected ({}:{line})", block.chapter),
    };
    let rows = align(&lines(&block.expected), &lines(actual), block.excerpt);
    let width = rows.iter().map(|(e, _)| e.map_or(0, |e| e.chars().count()));
    let width = width
        .chain([title.chars().count()])
        .max()
        .unwrap_or(0)
        .min(60);
    let mut out = format!("    {title:width$} | printed\n");
    for (e, a) in rows {
        let same = match (e, a) {
            (Some("..."), _) => true,
            (Some(e), Some(a)) => matches(e, a, false),
            _ => false,
        };
        let e: String = e.unwrap_or("").chars().take(width).collect();
        let mark = if same { ' ' } else { '✗' };
        let _ = writeln!(out, "  {mark} {e:width$} | {}", a.unwrap_or(""));
    }
    if block.excerpt {
        out.push_str(
            "    (the block shows part of a program: its own lines only)\n",
        );
    }
    out + "    (`...` in the expected output matches any text)\n"
}

/// Pairs expected lines with printed ones, with the fewest changes: a line
/// that matches (`...` too), one put in the other's place, one left out,
/// one added. A `...` line may stand for any number of printed lines; an
/// excerpt may start and end anywhere in what was printed.
fn align<'a>(
    old: &[&'a str],
    new: &[&'a str],
    excerpt: bool,
) -> Vec<(Option<&'a str>, Option<&'a str>)> {
    let (n, m) = (old.len(), new.len());
    let mut cost = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..=n).rev() {
        for j in (0..=m).rev() {
            cost[i][j] = match (i == n, j == m) {
                (true, _) if excerpt => 0,
                (true, _) => ADD * (m - j),
                (false, true) => {
                    cost[i + 1][j] + if old[i] == "..." { 0 } else { DROP }
                }
                _ if old[i] == "..." => cost[i + 1][j].min(cost[i][j + 1]),
                _ => (cost[i + 1][j + 1] + distance(old[i], new[j]))
                    .min(DROP + cost[i + 1][j])
                    .min(ADD + cost[i][j + 1]),
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    if excerpt {
        j = (0..=m).min_by_key(|&j| cost[0][j]).unwrap_or(0);
    }
    let mut rows = Vec::new();
    while i < n || (j < m && !excerpt) {
        if i == n {
            rows.push((None, Some(new[j])));
            j += 1;
        } else if j == m || (old[i] == "..." && cost[i][j] == cost[i + 1][j]) {
            rows.push((Some(old[i]), None));
            i += 1;
        } else if old[i] == "..." {
            rows.push((Some(old[i]), Some(new[j])));
            j += 1;
        } else if cost[i][j] == cost[i + 1][j + 1] + distance(old[i], new[j]) {
            rows.push((Some(old[i]), Some(new[j])));
            (i, j) = (i + 1, j + 1);
        } else if cost[i][j] == DROP + cost[i + 1][j] {
            rows.push((Some(old[i]), None));
            i += 1;
        } else {
            rows.push((None, Some(new[j])));
            j += 1;
        }
    }
    rows
}

/// What adding a printed line, and leaving out an expected one, cost in
/// [`align`]; putting one in the other's place costs between the two.
const ADD: usize = 200;
const DROP: usize = 300;

/// What putting `new` in the place of `old` costs: nothing if it matches,
/// else more than a gap (less than two), the less the more they have in
/// common at their start and end.
fn distance(old: &str, new: &str) -> usize {
    if matches(old, new, false) {
        return 0;
    }
    let same = |a: &mut dyn Iterator<Item = (char, char)>| {
        a.take_while(|(x, y)| x == y).count()
    };
    let start = same(&mut old.chars().zip(new.chars()));
    let end = same(&mut old.chars().rev().zip(new.chars().rev()));
    let longest = old.chars().count().max(new.chars().count()).max(1);
    ADD + 100 - 99 * (start + end).min(longest) / longest
}

/// The expected output that `printed` calls for: the old lines where they
/// still match (so their `...` stays), the printed ones elsewhere.
pub fn blessed(old: &str, printed: &str, excerpt: bool) -> String {
    let mut out: Vec<&str> = Vec::new();
    for (old, new) in align(&lines(old), &lines(printed), excerpt) {
        match (old, new) {
            (Some("..."), _) if out.last() == Some(&"...") => {}
            (Some("..."), _) => out.push("..."),
            (Some(old), Some(new)) if matches(old, new, false) => out.push(old),
            (_, Some(new)) => out.push(new),
            _ => {}
        }
    }
    out.join("\n")
}

/// With `FLIGHT_COOKBOOK_BLESS` set, writes the expected output that
/// `printed` calls for into the chapter (a new `text` block if there was
/// none), keeping track of the lines it added so that later blocks of the
/// same chapter are found where they now are.
fn bless(block: &Block, printed: &str) -> bool {
    if std::env::var_os("FLIGHT_COOKBOOK_BLESS").is_none() {
        return false;
    }
    type Moves = HashMap<String, Vec<(usize, isize)>>;
    static MOVED: LazyLock<Mutex<Moves>> = LazyLock::new(Default::default);
    let mut moved = MOVED.lock().unwrap_or_else(|e| e.into_inner());
    let moves = moved.entry(block.chapter.clone()).or_default();
    let now = |line: usize| {
        let shift: isize = moves
            .iter()
            .filter(|(at, _)| *at < line)
            .map(|(_, by)| by)
            .sum();
        (line as isize + shift) as usize
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(&block.chapter);
    let Ok(chapter) = fs::read_to_string(&path) else {
        return false;
    };
    let mut text: Vec<String> = chapter.lines().map(String::from).collect();
    let new = blessed(&block.expected, printed, block.excerpt);
    let new: Vec<String> = new.lines().map(String::from).collect();
    let (from, old_len) = if block.expected_line == 0 {
        let at = now(block.end);
        let added = ["", "```text"].map(String::from).into_iter();
        text.splice(
            at..at,
            added.chain(new.iter().cloned()).chain(["```".into()]),
        );
        (block.end, 0)
    } else {
        let start = now(block.expected_line);
        let len = text[start..]
            .iter()
            .position(|l| l.trim() == "```")
            .unwrap_or(0);
        text.splice(start..start + len, new.iter().cloned());
        (block.expected_line, len)
    };
    let added = if block.expected_line == 0 {
        new.len() + 3
    } else {
        new.len()
    };
    moves.push((from, added as isize - old_len as isize));
    let written = fs::write(&path, text.join("\n") + "\n");
    eprintln!(
        "blessed {}:{}: the output under it is now what it printed",
        block.chapter, block.line
    );
    written.is_ok()
}
