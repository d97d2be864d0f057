//! The `main` of a block's test program (see `test_code` in `src/book.rs`).
//!
//! The program is the block's own, compiled with this module. Started by
//! its test, it starts itself again as a child process that runs the
//! block's `main` exactly as a reader's copy would: for a client, with the
//! URL of its server, which runs in a background tokio task of this
//! process; for a server, with the address `127.0.0.1:0` and SIGTERM once
//! it has printed a line. It writes what the child printed and how it
//! ended to files that the test reads and checks (`src/check.rs`).

use std::fmt::Display;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitCode, Stdio, Termination};
use std::time::{Duration, Instant};
use std::{fs, sync::mpsc, thread};

const CHILD: &str = "FLIGHT_COOKBOOK_SNIPPET_CHILD";

/// Where the test of program `id`, in test process `pid`, finds its run.
pub fn result_base(id: &str, pid: u32) -> String {
    let dir = std::env::temp_dir().join("flight-cookbook-runs");
    format!("{}/{id}.{pid}", dir.display())
}

/// The future a background server is given: it completes when the server
/// is to stop.
pub type Shutdown = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs a program that talks to no server.
pub fn run<R: Termination>(program: fn() -> R, timeout: u64, id: &str) -> ExitCode {
    if std::env::var_os(CHILD).is_some() {
        return program().report();
    }
    report(id, launch(&[], false, timeout), "")
}

/// Runs a server program with the address `127.0.0.1:0`.
pub fn run_server<R: Termination>(
    program: fn() -> R,
    timeout: u64,
    id: &str,
) -> ExitCode {
    if std::env::var_os(CHILD).is_some() {
        return program().report();
    }
    report(id, launch(&["127.0.0.1:0"], true, timeout), "")
}

/// Runs a client program against `serve`, started in a background task on
/// `127.0.0.1:0`; the program's first argument is the server's URL,
/// `SCHEME://127.0.0.1:PORT`.
pub fn run_client<R, S, F, E>(
    program: fn() -> R,
    timeout: u64,
    serve: S,
    scheme: &str,
    id: &str,
) -> ExitCode
where
    R: Termination,
    S: FnOnce(tokio::net::TcpListener, Shutdown) -> F,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    if std::env::var_os(CHILD).is_some() {
        return program().report();
    }
    let started = tokio::runtime::Runtime::new().and_then(|runtime| {
        let listener =
            runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let url = format!("{scheme}://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = serve(listener, Box::pin(async { drop(stopped.await) }));
        let task =
            runtime.spawn(async move { served.await.map_err(|e| e.to_string()) });
        Ok((runtime, url, stop, task))
    });
    let (runtime, url, stop, task) = match started {
        Ok(started) => started,
        Err(e) => {
            return report(id, Err(format!("could not start the server: {e}")), "");
        }
    };
    let run = launch(&[&url], false, timeout);
    let _ = stop.send(());
    let stopped = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), task).await
    });
    let server = match stopped {
        Ok(Ok(Ok(()))) => String::new(),
        Ok(Ok(Err(e))) => format!("the server failed: {e}"),
        Ok(Err(e)) => format!("the server task failed: {e}"),
        Err(_) => "the server did not stop within 10 s of being asked to".into(),
    };
    runtime.shutdown_timeout(Duration::from_secs(1));
    report(id, run, &server)
}

/// What the child printed, and how it ended (`None`: it was stopped).
type Run = Result<(String, String, Option<i32>), String>;

fn launch(args: &[&str], stop_after_a_line: bool, timeout: u64) -> Run {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find own program: {e}"))?;
    let mut child = Command::new(exe)
        .args(args)
        .env(CHILD, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the program: {e}"))?;
    let (Some(stdout), Some(mut stderr)) =
        (child.stdout.take(), child.stderr.take())
    else {
        return Err("the program's output is not connected".into());
    };
    let (line_sent, line_printed) = mpsc::channel();
    let out = thread::spawn(move || {
        let (mut reader, mut all) = (BufReader::new(stdout), Vec::new());
        while reader.read_until(b'\n', &mut all).is_ok_and(|n| n > 0) {
            let _ = line_sent.send(());
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let err = thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    });
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut signalled = !stop_after_a_line;
    let status = loop {
        if let Some(status) =
            child.try_wait().map_err(|e| format!("cannot wait: {e}"))?
        {
            break Some(status.code().unwrap_or(-1));
        }
        if !signalled && line_printed.try_recv().is_ok() {
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
        thread::sleep(Duration::from_millis(5));
    };
    let printed = out.join().unwrap_or_default();
    Ok((printed, err.join().unwrap_or_default(), status))
}

/// Writes the run for the test to read: `.stdout`, `.stderr`, and last
/// `.status` (the exit code, `timeout`, or what went wrong), then the
/// server's failure, if any.
fn report(id: &str, run: Run, server: &str) -> ExitCode {
    let base = result_base(id, std::os::unix::process::parent_id());
    let (stdout, stderr, status) = match run {
        Ok((stdout, stderr, Some(code))) => (stdout, stderr, code.to_string()),
        Ok((stdout, stderr, None)) => (stdout, stderr, "timeout".to_string()),
        Err(e) => (String::new(), String::new(), e),
    };
    let written =
        fs::create_dir_all(std::env::temp_dir().join("flight-cookbook-runs"))
            .and_then(|()| fs::write(format!("{base}.stdout"), stdout))
            .and_then(|()| fs::write(format!("{base}.stderr"), stderr))
            .and_then(|()| {
                fs::write(format!("{base}.status"), format!("{status}\n{server}"))
            });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot write the run of the block to {base}.*: {e}");
            ExitCode::FAILURE
        }
    }
}
