//! What the test copy of a runnable block does when it starts.
//!
//! The copy's `main` calls [`run`], [`run_server`] or [`run_client`]. Those
//! run the block's own program again as a child process, capture what it
//! prints, stop it when it hangs, and compare its output with the expected
//! output shown under the block in the book. The child is the same binary,
//! told apart by an environment variable, so the program runs exactly as a
//! reader's copy of it would.

use std::fmt::{Display, Write as _};
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::pin::Pin;
use std::process::{Command, ExitCode, ExitStatus, Stdio, Termination};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Where a block stands in the book and what it must print.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    /// The chapter, from the repository root, e.g. `book/src/basic_auth.md`.
    pub chapter: &'static str,
    /// The line of the block's opening fence.
    pub line: usize,
    /// The nearest heading above the block.
    pub heading: &'static str,
    /// The `text` block under it; empty when there is none.
    pub expected: &'static str,
    /// The line of that `text` block, 0 when there is none.
    pub expected_line: usize,
    /// The block shows part of a program: its expected output is the part
    /// of the program's output that this part prints.
    pub excerpt: bool,
    pub timeout_secs: u64,
}

const CHILD: &str = "FLIGHT_COOKBOOK_SNIPPET_CHILD";

fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Runs a program that talks to no server.
pub fn run<R: Termination>(program: fn() -> R, block: &Block) -> ExitCode {
    if is_child() {
        return program().report();
    }
    finish(block, launch(block, &[], false), Ok(()))
}

/// Runs a server program: it gets the address `127.0.0.1:0`, and SIGTERM
/// once it has printed its first line; it must then stop cleanly.
pub fn run_server<R: Termination>(program: fn() -> R, block: &Block) -> ExitCode {
    if is_child() {
        return program().report();
    }
    finish(block, launch(block, &["127.0.0.1:0"], true), Ok(()))
}

/// The future a background server is given: it completes when the server
/// is to stop.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs a client program against `serve`, started in a background tokio
/// task on `127.0.0.1:0`; the program's first argument is the server's URL.
pub fn run_client<R, S, F, E>(program: fn() -> R, block: &Block, serve: S) -> ExitCode
where
    R: Termination,
    S: FnOnce(TcpListener, Shutdown) -> F,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    if is_child() {
        return program().report();
    }
    let server = match BackgroundServer::start(serve) {
        Ok(server) => server,
        Err(e) => return fail(block, &format!("could not start the server: {e}")),
    };
    let run = launch(block, &[&server.url()], false);
    finish(block, run, server.stop())
}

/// A server running in a background tokio task, stopped by [`Self::stop`].
pub struct BackgroundServer {
    runtime: tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl BackgroundServer {
    /// Binds `127.0.0.1:0` and starts `serve` on it.
    pub fn start<S, F, E>(serve: S) -> std::io::Result<Self>
    where
        S: FnOnce(TcpListener, Shutdown) -> F,
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let served = serve(
            listener,
            Box::pin(async move {
                let _ = stopped.await;
            }),
        );
        let task = runtime.spawn(async move { served.await.map_err(|e| e.to_string()) });
        Ok(BackgroundServer {
            runtime,
            addr,
            stop,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Asks the server to stop and waits until it has, at most 10 s.
    pub fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(());
        let task = self.task;
        let stopped = self
            .runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
        self.runtime.shutdown_timeout(Duration::from_secs(1));
        match stopped {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("the server failed: {e}")),
            Ok(Err(e)) => Err(format!("the server task failed: {e}")),
            Err(_) => Err("the server did not stop within 10 s of being asked to".into()),
        }
    }
}

/// What a child run printed and how it ended.
struct Outcome {
    stdout: String,
    stderr: String,
    /// `None` when it was killed for running too long.
    status: Option<ExitStatus>,
}

fn launch(block: &Block, args: &[&str], stop_after_first_line: bool) -> Result<Outcome, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own program: {e}"))?;
    let mut child = Command::new(exe)
        .args(args)
        .env(CHILD, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the program: {e}"))?;
    let (stdout, mut stderr) = match (child.stdout.take(), child.stderr.take()) {
        (Some(stdout), Some(stderr)) => (stdout, stderr),
        _ => return Err("the program's output is not connected".into()),
    };
    let (lines, line_printed) = mpsc::channel();
    let out = thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut all = Vec::new();
        loop {
            let before = all.len();
            match reader.read_until(b'\n', &mut all) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if all[before..].ends_with(b"\n") {
                        let _ = lines.send(());
                    }
                }
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let err = thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    });

    let deadline = Instant::now() + Duration::from_secs(block.timeout_secs);
    let mut signalled = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for the program: {e}")),
        }
        if stop_after_first_line && !signalled && line_printed.try_recv().is_ok() {
            let pid = child.id().to_string();
            let sent = Command::new("kill").args(["-TERM", &pid]).status();
            if !sent.is_ok_and(|s| s.success()) {
                let _ = child.kill();
            }
            signalled = true;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    Ok(Outcome {
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        status,
    })
}

fn finish(block: &Block, run: Result<Outcome, String>, server: Result<(), String>) -> ExitCode {
    let run = match run {
        Ok(run) => run,
        Err(e) => return fail(block, &e),
    };
    eprint!("{}", run.stderr);
    let problem = match run.status {
        None => Some(format!(
            "it did not finish within {} s and was stopped (does it wait for something?)",
            block.timeout_secs
        )),
        Some(status) if !status.success() => Some(format!("it failed ({status})")),
        Some(_) if !matches(block.expected, &run.stdout, block.excerpt) => {
            Some("what it printed differs from the expected output under it".to_string())
        }
        Some(_) => server.err(),
    };
    match problem {
        None => {
            print!("{}", run.stdout);
            ExitCode::SUCCESS
        }
        Some(problem) => {
            let mut report = problem;
            report.push_str(":\n\n");
            report.push_str(&side_by_side(block, &run.stdout));
            let tail = tail(&run.stderr, 20);
            if !tail.is_empty() {
                let _ = write!(report, "\nits last lines on stderr:\n{tail}");
            }
            fail(block, &report)
        }
    }
}

fn fail(block: &Block, problem: &str) -> ExitCode {
    eprintln!(
        "\n{}:{}: the block under \"{}\": {problem}",
        block.chapter, block.line, block.heading
    );
    ExitCode::FAILURE
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("    {l}\n"))
        .collect()
}

/// Trailing spaces and trailing blank lines do not count.
fn normalize(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.join("\n").trim_end_matches('\n').to_string()
}

/// Whether `actual` is what `expected` describes: the same text, where
/// `...` stands for any text, within a line or across lines (as Python's
/// doctest ELLIPSIS). An `excerpt` may be any run of whole lines of `actual`.
pub fn matches(expected: &str, actual: &str, excerpt: bool) -> bool {
    let (expected, actual) = (normalize(expected), normalize(actual));
    if excerpt {
        return ellipsis_match(&format!("...\n{expected}\n..."), &format!("\n{actual}\n"));
    }
    ellipsis_match(&expected, &actual)
}

fn ellipsis_match(pattern: &str, text: &str) -> bool {
    let pieces: Vec<&str> = pattern.split("...").collect();
    if pieces.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if !text.starts_with(first) || !text.ends_with(last) || first.len() + last.len() > text.len() {
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

/// Expected and printed lines next to each other, rows that differ marked.
fn side_by_side(block: &Block, actual: &str) -> String {
    let expected: Vec<&str> = normalize_lines(block.expected);
    let actual: Vec<&str> = normalize_lines(actual);
    let offset = if block.excerpt {
        expected
            .first()
            .and_then(|first| actual.iter().position(|a| matches(first, a, false)))
            .unwrap_or(0)
    } else {
        0
    };
    let actual = &actual[offset.min(actual.len())..];
    let title = if block.expected_line > 0 {
        format!("expected ({}:{})", block.chapter, block.expected_line)
    } else {
        "expected (no text block under it: nothing)".to_string()
    };
    let width = expected
        .iter()
        .map(|l| l.chars().count())
        .chain([title.chars().count()])
        .max()
        .unwrap_or(0)
        .min(60);
    let rows = if block.excerpt {
        expected.len()
    } else {
        expected.len().max(actual.len())
    };
    let mut out = format!("    {title:width$} | printed\n");
    for row in 0..rows {
        let e = expected.get(row).copied();
        let a = actual.get(row).copied();
        let same = match (e, a) {
            (Some(e), Some(a)) => matches(e, a, false),
            _ => false,
        };
        let e = clip(e.unwrap_or(""), width);
        let mark = if same { ' ' } else { '✗' };
        let _ = writeln!(out, "  {mark} {e:width$} | {}", a.unwrap_or(""));
    }
    if block.excerpt {
        let after = actual.len().saturating_sub(rows);
        let _ = writeln!(
            out,
            "    (the block shows part of a program: the rest of it printed {offset} line(s) \
             before these and {after} after)"
        );
    }
    out.push_str("    (`...` in the expected output matches any text)\n");
    out
}

fn normalize_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

fn clip(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_string();
    }
    let mut clipped: String = line.chars().take(width.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use super::{Block, matches, side_by_side};

    #[test]
    fn the_report_shows_expected_and_printed_side_by_side() {
        let block = Block {
            chapter: "book/src/x.md",
            line: 10,
            heading: "Log in",
            expected: "same\nBearer ...\nwanted",
            expected_line: 20,
            excerpt: false,
            timeout_secs: 60,
        };
        let report = side_by_side(&block, "same\nBearer abc\ngot\nextra\n");
        let rows: Vec<&str> = report.lines().collect();
        assert!(rows[0].contains("expected (book/src/x.md:20)"), "{report}");
        assert!(rows[0].ends_with("| printed"), "{report}");
        assert!(rows[1].starts_with("    same") && rows[1].ends_with("| same"));
        assert!(rows[2].starts_with("    Bearer ...") && rows[2].ends_with("| Bearer abc"));
        assert!(rows[3].starts_with("  ✗ wanted") && rows[3].ends_with("| got"));
        assert!(rows[4].starts_with("  ✗ ") && rows[4].ends_with("| extra"));
    }

    #[test]
    fn exact_text_must_match() {
        assert!(matches("a\nb", "a\nb\n", false));
        assert!(!matches("a\nb", "a\nc", false));
        assert!(!matches("a", "a\nb", false));
        assert!(matches("a  \n\n", "a", false));
    }

    #[test]
    fn ellipsis_matches_within_and_across_lines() {
        assert!(matches("Bearer ...", "Bearer abc", false));
        assert!(matches("a\n...\nd", "a\nb\nc\nd", false));
        assert!(matches("...", "", false));
        assert!(matches("x...y...z", "x1y2z", false));
        assert!(!matches("x...y...z", "x1z2y", false));
        assert!(!matches("ab...ba", "aba", false));
        assert!(!matches("Bearer ...", "Basic abc", false));
    }

    #[test]
    fn an_excerpt_is_a_run_of_whole_lines() {
        assert!(matches("b\nc", "a\nb\nc\nd", true));
        assert!(matches("a", "a\nb", true));
        assert!(matches("b", "a\nb", true));
        assert!(!matches("b\nd", "a\nb\nc\nd", true));
        assert!(!matches("ch", "echo", true));
        assert!(matches("b...", "a\nbx\nc", true));
    }
}
