//! The one fixture of every test file (modelled on arrow-flight's
//! `tests/common/fixture.rs`): a recipe's server in a background task on
//! `127.0.0.1:0` with its URL and a clean stop within a timeout
//! ([`TestServer`]); a program in a process of its own that cannot hang a
//! test and shows its output when the test fails ([`ChildProcess`], also
//! [`run_with_timeout`]); Python with the pinned packages ([`python`]); and
//! the check that an error message gives nothing of the server away
//! ([`assert_clean_message`]).
//!
//! A test that needs Python, mdbook or Chromium is marked with
//! `#[cfg_attr(not(python), ignore = "...")]` (or `mdbook`): the member's
//! build script sets those cfgs where the tools are there, and fails on CI
//! when they are not, so cargo reports a test it cannot run as ignored,
//! with its reason, and never as passed.

#![allow(dead_code)]

use std::fmt::Display;
use std::future::Future;
use std::io::Read;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// The future a server is given: it completes when the server is to stop.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A recipe's server running in a background task of the test's runtime,
/// on a free port of 127.0.0.1. [`TestServer::stop`] proves that it stops
/// cleanly; dropping it without (a failed test) stops it too.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl TestServer {
    /// Binds `127.0.0.1:0` and starts `serve(listener, shutdown)` on it,
    /// the signature of every recipe's `serve`.
    pub async fn start<S, F, E>(serve: S) -> TestServer
    where
        S: FnOnce(TcpListener, Shutdown) -> F,
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        TestServer::start_on(listener, serve).await
    }

    /// `http://127.0.0.1:PORT`, what a tonic channel connects to.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `grpc://127.0.0.1:PORT`, the URL a recipe's server prints.
    pub fn grpc_url(&self) -> String {
        format!("grpc://{}", self.addr)
    }

    /// A connected channel, within [`TIMEOUT`].
    pub async fn channel(&self) -> Channel {
        let endpoint = Channel::from_shared(self.url()).expect("a valid URL");
        within("connecting to the server", endpoint.connect())
            .await
            .expect("the server accepts connections")
    }

    /// A [`arrow_flight::FlightClient`] on a new channel.
    pub async fn client(&self) -> arrow_flight::FlightClient {
        arrow_flight::FlightClient::new(self.channel().await)
    }

    /// Asks the server to stop, and fails the test unless it has stopped
    /// without error within [`TIMEOUT`]. Drop the test's channels first: a
    /// server waits for open calls.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("the server task");
        match tokio::time::timeout(TIMEOUT, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("the server failed: {e}"),
            Ok(Err(e)) => panic!("the server task failed: {e}"),
            Err(_) => panic!(
                "the server did not stop within {TIMEOUT:?} of being asked to"
            ),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Awaits `future`, panicking if it takes longer than [`TIMEOUT`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {TIMEOUT:?}"))
}

/// A program in a process of its own (a recipe's server, a Python client
/// or server). Its stdout and stderr are collected; when it is dropped
/// without [`ChildProcess::stop`] (a failed test) it is killed and what it
/// printed is shown.
pub struct ChildProcess {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stderr: Option<JoinHandle<String>>,
    stopped: bool,
}

/// How a [`ChildProcess`] ended.
#[derive(Debug)]
pub struct Finished {
    /// `None` when it had to be killed.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl ChildProcess {
    /// Starts `command` with its stdin, stdout and stderr piped.
    pub fn start(name: &str, mut command: Command) -> ChildProcess {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("stdout is piped");
        let stderr = Some(collect(child.stderr.take().expect("stderr is piped")));
        let stdout = Arc::new(Mutex::new(String::new()));
        let (send, lines) = mpsc::channel();
        let all = Arc::clone(&stdout);
        // Reads to the end, so that the program never blocks on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(mut all) = all.lock() {
                    all.push_str(&line);
                    all.push('\n');
                }
                let _ = send.send(line);
            }
        });
        ChildProcess {
            name: name.to_string(),
            child,
            stdin,
            lines,
            stdout,
            stderr,
            stopped: false,
        }
    }

    /// A Python script of `tests/python`, run with `python`.
    pub fn python(
        python: &str,
        script_name: &str,
        args: &[&std::ffi::OsStr],
    ) -> ChildProcess {
        let mut command = Command::new(python);
        command.arg(script(script_name)).args(args);
        ChildProcess::start(script_name, command)
    }

    /// The process id, to send it a signal.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The program's stdin; `None` once closed by [`Self::close_stdin`].
    pub fn stdin(&mut self) -> Option<&mut ChildStdin> {
        self.stdin.as_mut()
    }

    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// The next line it prints, within [`TIMEOUT`]; fails the test, showing
    /// what it printed, if it ends or says nothing in time.
    pub fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let finished = self.finish(false);
                panic!(
                    "{} printed no further line within {TIMEOUT:?} ({e}); {}",
                    self.name,
                    finished.report()
                )
            }
        }
    }

    /// Reads its first line, `Serving on grpc://HOST:PORT` (or
    /// `grpc+tls://`), and gives the address, `HOST:PORT`.
    pub fn serving_on(&mut self) -> String {
        let line = self.next_line();
        let address = line
            .strip_prefix("Serving on ")
            .and_then(|url| url.split_once("://"))
            .map(|(_, address)| address.trim().to_string());
        address.unwrap_or_else(|| {
            let finished = self.finish(false);
            panic!(
                "{}: the first line is not `Serving on grpc://HOST:PORT` but {line:?}; {}",
                self.name,
                finished.report()
            )
        })
    }

    /// Closes stdin (the Python servers stop then) and waits up to
    /// [`STOP_TIMEOUT`]; then kills it.
    pub fn stop(mut self) -> Finished {
        self.finish(false)
    }

    /// Sends SIGTERM (the recipes' servers stop then, as on Ctrl-C) and
    /// waits up to [`STOP_TIMEOUT`]; then kills it.
    pub fn terminate(mut self) -> Finished {
        self.finish(true)
    }

    /// Waits up to `timeout` for it to end by itself; then kills it.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let status = wait_timeout(&mut self.child, timeout).ok().flatten();
        self.collect_finished(status)
    }

    fn finish(&mut self, terminate: bool) -> Finished {
        self.close_stdin();
        if terminate {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        let status = wait_timeout(&mut self.child, STOP_TIMEOUT).ok().flatten();
        self.collect_finished(status)
    }

    fn collect_finished(&mut self, status: Option<ExitStatus>) -> Finished {
        self.stopped = true;
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let stderr = self.stderr.take().map(|e| e.join().unwrap_or_default());
        // The reader thread ends with the process; give it a moment to
        // take the last lines.
        thread::sleep(Duration::from_millis(20));
        let stdout = self.stdout.lock().map(|s| s.clone()).unwrap_or_default();
        Finished {
            status,
            stdout,
            stderr: stderr.unwrap_or_default(),
        }
    }
}

impl Finished {
    /// Whether it exited by itself with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// How it ended and what it printed, for a failure message.
    pub fn report(&self) -> String {
        let ended = match self.status {
            Some(status) => format!("it ended with {status}"),
            None => "it had to be killed".to_string(),
        };
        format!(
            "{ended}\n--- its stdout:\n{}--- its stderr:\n{}",
            self.stdout, self.stderr
        )
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if !self.stopped {
            let finished = self.finish(false);
            eprintln!("{} stopped; {}", self.name, finished.report());
        }
    }
}

/// A recipe's example program, as `cargo test` builds it (for tests that
/// run a server's real `main`); fails the test if it is missing or older
/// than its source, as after `cargo test --test NAME`, which builds none.
pub fn example(name: &str) -> Command {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/debug/deps");
    let binary = dir.join("examples").join(name);
    let modified =
        |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    // A program of one file, or of a folder of modules: its newest file.
    let file = repo_root().join(format!("examples/{name}.rs"));
    let folder = repo_root().join(format!("examples/{name}"));
    let written = std::fs::read_dir(&folder)
        .map(|entries| {
            let files = entries.flatten().map(|e| e.path());
            files.filter_map(|p| modified(&p)).max()
        })
        .unwrap_or_else(|_| modified(&file));
    let fresh = modified(&binary).zip(written);
    if fresh.is_none_or(|(built, written)| built < written) {
        panic!(
            "{} is missing or older than its source: run `cargo test`, or \
             `cargo build -p flight-cookbook-recipes --examples` first",
            binary.display()
        );
    }
    Command::new(binary)
}

/// The repository's top folder (the book's and the recipes' tests are
/// built by two packages, the top one and `recipes/`).
pub fn repo_root() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if manifest.join("book/book.toml").exists() {
        manifest
    } else {
        manifest.parent().expect("recipes/ is below the top folder")
    }
}

/// A script of `tests/python`.
pub fn script(name: &str) -> PathBuf {
    repo_root().join("tests/python").join(name)
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
pub fn block_on<F: Future>(
    runtime: &tokio::runtime::Runtime,
    what: &str,
    future: F,
) -> F::Output {
    runtime
        .block_on(async { tokio::time::timeout(TIMEOUT, future).await })
        .unwrap_or_else(|_| panic!("{what} took longer than {TIMEOUT:?}"))
}

/// How long a Python server gets to stop after its stdin is closed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The Python interpreter with the packages of
/// `tests/python/requirements.txt`, as the build script found it: a test
/// that calls this is marked `#[cfg_attr(not(python), ignore = ...)]`.
pub fn python() -> String {
    match option_env!("FLIGHT_COOKBOOK_PYTHON_FOUND") {
        Some(python) => python.to_string(),
        None => panic!("no Python with the pinned packages; see recipes/build.rs"),
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
pub fn wait_timeout(
    child: &mut Child,
    timeout: Duration,
) -> std::io::Result<Option<ExitStatus>> {
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
pub fn run_with_timeout(
    mut command: Command,
    timeout: Duration,
) -> std::io::Result<Output> {
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
    for local in [std::env::temp_dir(), repo_root().to_path_buf()] {
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
        let after_word =
            start > 0 && (part(bytes[start - 1]) || bytes[start - 1] == b'/');
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

// Added for tests/recipes/shards.rs and tests/recipes/health.rs (helper-2).
impl TestServer {
    /// [`TestServer::start`] on a listener the test has bound itself: for
    /// servers that must know their own address, or each other's, before
    /// they start (a cluster of shards).
    pub async fn start_on<S, F, E>(listener: TcpListener, serve: S) -> TestServer
    where
        S: FnOnce(TcpListener, Shutdown) -> F,
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let addr = listener.local_addr().expect("the listener's address");
        let (stop, stopped) = oneshot::channel::<()>();
        let served = serve(
            listener,
            Box::pin(async move {
                let _ = stopped.await;
            }),
        );
        let task =
            tokio::spawn(async move { served.await.map_err(|e| e.to_string()) });
        TestServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Completes the server's shutdown future without waiting for the
    /// server to stop, so that the test can watch what it does meanwhile
    /// (a drain); [`TestServer::stop`] then waits for its end.
    pub fn ask_to_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An upload under `descriptor` of one small record batch compressed with
/// `compression`, whose first buffer's length prefix claims 4 EiB once
/// decompressed: a few hundred bytes that arrow-ipc, unguarded, tries to
/// reserve 4 EiB for (for LZ4 the failed allocation aborts the process).
pub async fn compression_bomb(
    descriptor: arrow_flight::FlightDescriptor,
    compression: arrow_ipc::CompressionType,
) -> Vec<arrow_flight::FlightData> {
    use futures::TryStreamExt;
    let values = arrow_array::Int64Array::from_iter_values(0..1000);
    let batch = arrow_array::RecordBatch::try_from_iter([(
        "value",
        Arc::new(values) as arrow_array::ArrayRef,
    )])
    .expect("a batch");
    let options = arrow_ipc::writer::IpcWriteOptions::default()
        .try_with_compression(Some(compression))
        .expect("the compression is enabled");
    let mut messages: Vec<arrow_flight::FlightData> =
        arrow_flight::encode::FlightDataEncoderBuilder::new()
            .with_options(options)
            .with_flight_descriptor(Some(descriptor))
            .build(futures::stream::iter([Ok(batch)]))
            .try_collect()
            .await
            .expect("the batch encodes");
    let last = messages.last_mut().expect("a batch message");
    let mut body = last.data_body.to_vec();
    body[..8].copy_from_slice(&(1i64 << 62).to_le_bytes());
    last.data_body = body.into();
    messages
}

/// Sends `messages` as a DoPut on `client`, with `Bearer token` if given,
/// and reads every answer.
pub async fn put(
    client: &mut arrow_flight::flight_service_client::FlightServiceClient<
        tonic::transport::Channel,
    >,
    token: Option<&str>,
    messages: Vec<arrow_flight::FlightData>,
) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(futures::stream::iter(messages));
    if let Some(token) = token {
        let bearer = format!("Bearer {token}").parse().expect("a header");
        request.metadata_mut().insert("authorization", bearer);
    }
    let mut answers = client.do_put(request).await?.into_inner();
    while answers.message().await?.is_some() {}
    Ok(())
}

/// Checks that a compression bomb was refused, with `ResourceExhausted`
/// naming the limit, before it was decompressed.
pub fn assert_bomb_refused(result: Result<(), tonic::Status>) {
    let status = result.expect_err("the bomb is refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    assert!(
        status.message().contains(
            "bytes once decompressed; the limit is 67108864 bytes (64 MiB)"
        ),
        "{status}"
    );
}
