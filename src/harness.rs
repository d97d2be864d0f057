//! The `main` of a block's program as its test builds it (`test_code` in
//! `src/book.rs`). Run by skeptic, it only writes down where it is, so that
//! the test (`src/check.rs`) can run it as a reader would: as the block's
//! program (`FLIGHT_COOKBOOK_ROLE=program`), or, for a client, also as the
//! server it talks to (`=server`): that serves on `127.0.0.1:0`, prints its
//! URL (`FLIGHT_COOKBOOK_URL=...`) and stops when its standard input closes.

use std::fmt::Display;
use std::future::Future;
use std::io::Read;
use std::process::{ExitCode, Termination};

/// The future a background server is given: it completes when the server
/// is to stop.
pub type Shutdown = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

const ROLE: &str = "FLIGHT_COOKBOOK_ROLE";

/// Runs the block's program, or, run by skeptic, writes where it is.
pub fn run<R: Termination>(program: fn() -> R, id: &str) -> ExitCode {
    if std::env::var_os(ROLE).is_some() {
        return program().report();
    }
    let found = found_at(id, std::os::unix::process::parent_id());
    let written = std::env::current_exe().and_then(|exe| {
        std::fs::create_dir_all(found.parent().unwrap_or(&found))?;
        std::fs::write(&found, exe.as_os_str().as_encoded_bytes())
    });
    written.report()
}

/// Where the program `id` run by skeptic for test process `pid` says where
/// it is.
pub fn found_at(id: &str, pid: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("flight-cookbook-runs/{id}.{pid}"))
}

/// As [`run`], or as the server `serve`, on `127.0.0.1:0`.
pub fn run_client<R, S, F, E>(
    program: fn() -> R,
    serve: S,
    scheme: &str,
    id: &str,
) -> ExitCode
where
    R: Termination,
    S: FnOnce(tokio::net::TcpListener, Shutdown) -> F,
    F: Future<Output = Result<(), E>>,
    E: Display,
{
    if std::env::var(ROLE).as_deref() != Ok("server") {
        return run(program, id);
    }
    let served = || -> Result<(), Box<dyn std::error::Error>> {
        let runtime = tokio::runtime::Runtime::new()?;
        let listener =
            runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let url = format!("{scheme}://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            let _ = stop.send(());
        });
        let _context = runtime.enter();
        let served = serve(listener, Box::pin(async { drop(stopped.await) }));
        println!("FLIGHT_COOKBOOK_URL={url}");
        Ok(runtime.block_on(served).map_err(|e| e.to_string())?)
    };
    served().report()
}
