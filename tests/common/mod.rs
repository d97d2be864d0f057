//! What several test files need: Python with the right packages, child
//! processes that cannot hang a test, and skipping locally (never on CI)
//! when a tool is missing.

#![allow(dead_code)]

use std::future::Future;
use std::io::Read;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A script of `tests/python`.
pub fn script(name: &str) -> PathBuf {
    manifest_dir().join("tests/python").join(name)
}

/// The longest a child process, a call, or a server's start or stop may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime can be built")
}

/// Runs `future` on `runtime`, panicking if it takes longer than [`TIMEOUT`].
pub fn block_on<F: Future>(runtime: &tokio::runtime::Runtime, what: &str, future: F) -> F::Output {
    runtime
        .block_on(async { tokio::time::timeout(TIMEOUT, future).await })
        .unwrap_or_else(|_| panic!("{what} took longer than {TIMEOUT:?}"))
}

/// How long a Python server gets to stop after its stdin is closed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether this is a CI run, where nothing may be skipped.
pub fn on_ci() -> bool {
    std::env::var_os("CI").is_some_and(|ci| !ci.is_empty())
}

/// For a test that cannot run here: panics on CI, says why and returns
/// `None` elsewhere.
pub fn unavailable<T>(test: &str, why: &str) -> Option<T> {
    let help = "`.ci/run` installs everything; to run it locally: \
                `python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt`";
    if on_ci() {
        panic!("{test} must run on CI, but {why}; {help}");
    }
    eprintln!("SKIPPED: {test}: {why}; {help}");
    None
}

/// The Python interpreter: `$FLIGHT_COOKBOOK_PYTHON`, else `.venv/bin/python`
/// of this repository, else `python3`; `Err` says why it cannot run `check`.
pub fn python(check: &str) -> Result<String, String> {
    let python = match std::env::var("FLIGHT_COOKBOOK_PYTHON") {
        Ok(python) if !python.is_empty() => python,
        _ => {
            let venv = manifest_dir().join(".venv/bin/python");
            if venv.exists() {
                venv.display().to_string()
            } else {
                "python3".to_string()
            }
        }
    };
    let mut command = Command::new(&python);
    command.args(["-c", check]);
    match run_with_timeout(command, Duration::from_secs(60)) {
        Ok(output) if output.status.success() => Ok(python),
        Ok(output) => Err(format!(
            "`{python} -c '{check}'` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run `{python}`: {e}")),
    }
}

/// Reads all of `from` into a string on a new thread.
pub fn collect(mut from: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` for at most `timeout`; `None` if it is still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `command` to its end with no input, killing it after `timeout`.
pub fn run_with_timeout(mut command: Command, timeout: Duration) -> std::io::Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = collect(child.stdout.take().expect("stdout is piped"));
    let stderr = collect(child.stderr.take().expect("stderr is piped"));
    let status = wait_timeout(&mut child, timeout)?;
    if status.is_none() {
        child.kill()?;
        child.wait()?;
    }
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout: stdout.into_bytes(),
            stderr: stderr.into_bytes(),
        }),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "{command:?} did not finish within {timeout:?} and was killed\n\
                 stdout:\n{stdout}\nstderr:\n{stderr}"
            ),
        )),
    }
}

/// A Python server of `tests/python` that prints `Serving on
/// grpc://127.0.0.1:PORT` first, stopped (and if need be killed) when
/// dropped, also when a test fails.
pub struct PythonServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
    pub port: u16,
    stopped: bool,
}

impl PythonServer {
    pub fn start(python: &str, name: &str, args: &[&std::ffi::OsStr]) -> PythonServer {
        let mut child = Command::new(python)
            .arg(script(name))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the pyarrow server can be started");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = Some(collect(child.stderr.take().expect("stderr is piped")));

        let (first_line, line) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = first_line.send(lines.next());
            // Keep draining, so that the server never blocks on a full pipe.
            lines.for_each(drop);
        });
        // From here on, dropping `server` stops the process.
        let mut server = PythonServer {
            child,
            stdin,
            stderr,
            port: 0,
            stopped: false,
        };
        let line = match line.recv_timeout(TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(other) => panic!(
                "the pyarrow server ended before it said where it listens ({other:?}):\n{}",
                server.stop().1
            ),
            Err(error) => panic!(
                "the pyarrow server did not say where it listens within {TIMEOUT:?} ({error}):\n{}",
                server.stop().1
            ),
        };
        server.port = line
            .strip_prefix("Serving on grpc://127.0.0.1:")
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the pyarrow server: {line:?}"));
        server
    }

    /// Closes the server's stdin, waits for it to end and kills it if it
    /// does not. Returns its exit status (`None` if it had to be killed) and
    /// what it wrote to stderr.
    pub fn stop(&mut self) -> (Option<ExitStatus>, String) {
        self.stopped = true;
        drop(self.stdin.take());
        let status = match wait_timeout(&mut self.child, STOP_TIMEOUT) {
            Ok(Some(status)) => Some(status),
            _ => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                None
            }
        };
        let stderr = self
            .stderr
            .take()
            .map(|stderr| stderr.join().unwrap_or_default());
        (status, stderr.unwrap_or_default())
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        if !self.stopped {
            let (status, stderr) = self.stop();
            eprintln!("pyarrow server stopped ({status:?}), its stderr:\n{stderr}");
        }
    }
}

/// Asserts that an error message a client got gives nothing of the server
/// away: one short line, no panic or backtrace, no source file, no path of
/// the server's file system. `sent` holds text the client itself sent
/// (a dataset name, say), which the message may quote back, as a server's
/// error shows it: in quotes, escaped, and cut after 64 characters.
pub fn assert_clean_message(message: &str, sent: &[&str]) {
    let mut rest = message.to_string();
    for sent in sent {
        let short: String = sent.chars().take(64).collect();
        for quoted in [format!("{sent:?}"), format!("{short:?}...")] {
            rest = rest.replace(&quoted, "\"\"");
        }
    }
    assert!(
        message.len() < 300,
        "a short message, not {} bytes: {message:?}",
        message.len()
    );
    assert!(!message.contains('\n'), "one line, not: {message:?}");
    let lower = rest.to_lowercase();
    for leak in [
        "panicked",
        "backtrace",
        "thread '",
        "stack backtrace",
        ".rs:",
        ".rs\"",
        "src/",
        "examples/",
        "/tmp",
        "/home",
        "/root",
        "/work",
        "/usr",
        "/var",
        "/proc",
        "/dev/",
        "cargo",
    ] {
        assert!(
            !lower.contains(&leak.to_lowercase()),
            "the message {message:?} contains {leak:?}"
        );
    }
    for local in [std::env::temp_dir(), manifest_dir().to_path_buf()] {
        let local = local.to_string_lossy().into_owned();
        assert!(
            local.len() < 2 || !rest.contains(&local),
            "the message {message:?} shows the local path {local:?}"
        );
    }
    if let Some(path) = absolute_path(&rest) {
        panic!("the message {message:?} shows the path {path:?}");
    }
}

/// The first thing in `text` that looks like an absolute path of two or
/// more parts (`/a/b`), or like a Windows one (`C:\`).
fn absolute_path(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let part = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
    for (start, _) in text.match_indices('/') {
        let after_word = start > 0 && (part(bytes[start - 1]) || bytes[start - 1] == b'/');
        if after_word {
            continue;
        }
        let first = bytes[start + 1..].iter().take_while(|b| part(**b)).count();
        let next = start + 1 + first;
        if first > 0 && bytes.get(next) == Some(&b'/') {
            return Some(&text[start..(next + 1)]);
        }
    }
    text.as_bytes()
        .windows(3)
        .position(|w| w[0].is_ascii_alphabetic() && w[1] == b':' && w[2] == b'\\')
        .map(|at| &text[at..at + 3])
}

/// [`assert_clean_message`] on a status's message.
pub fn assert_clean_status(status: &tonic::Status, sent: &[&str]) {
    assert_clean_message(status.message(), sent);
}

/// An example program built by `cargo test`, if it is newer than its
/// source; `test` is skipped (locally) or fails (on CI) without it.
pub fn example_binary(test: &str, name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().expect("the test's own path");
    let binary = exe.parent()?.parent()?.join("examples").join(name);
    let source = manifest_dir().join(format!("examples/{name}.rs"));
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    match (modified(&binary), modified(&source)) {
        (Some(built), Some(written)) if built >= written => Some(binary),
        _ => unavailable(
            test,
            &format!(
                "{} is missing or older than its source (run `cargo test`)",
                binary.display()
            ),
        ),
    }
}
