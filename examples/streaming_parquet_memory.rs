//! How much memory the streaming Parquet server needs to receive and send a
//! large dataset (a benchmark, not a recipe):
//!
//! ```console
//! $ cargo run --release --example streaming_parquet_memory [-- MIB [simple]]
//! ```
//!
//! It starts the server of `examples/streaming_parquet_server.rs` (or, with
//! `simple`, that of `examples/parquet_storage_server.rs`, for comparison)
//! in a child process with a new repository, uploads MIB mebibytes of Arrow
//! data (1024 by default: one Int64 column of random numbers, which Parquet
//! cannot shrink), reads it back batch by batch, and prints the server's
//! resident memory: its peak when idle, while receiving and while sending.
//! The peaks are the kernel's own (`VmHWM` in `/proc/PID/status`, reset
//! between the steps through `/proc/PID/clear_refs`), checked against samples
//! of `VmRSS` taken every 10 ms. For the streaming server, it exits with an
//! error when a peak is 100 MiB or more above the idle size.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_flight::FlightClient;
use flight_cookbook::streaming_parquet_client::{count_rows, upload_stream};
use flight_cookbook::{parquet_storage_server, streaming_parquet_server};
use futures::{TryStreamExt, stream};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tonic::transport::Channel;

const MIB: u64 = 1024 * 1024;
const ROWS_PER_BATCH: usize = 64 * 1024;
const AIM_MIB: f64 = 100.0;
const TIMEOUT: Duration = Duration::from_secs(60);

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, repo, server] = &args[..]
        && flag == "--serve"
    {
        return serve(repo, server == "simple").await;
    }
    let mib: u64 = match args.first() {
        Some(mib) => mib
            .parse()
            .map_err(|_| format!("not a number of MiB: {mib}"))?,
        None => 1024,
    };
    let simple = match args.get(1).map(String::as_str) {
        None | Some("streaming") => false,
        Some("simple") => true,
        Some(other) => return Err(format!("not a server: {other} (simple or streaming)").into()),
    };
    measure(mib, simple).await
}

/// The child: a server on a free port, stopped by SIGTERM.
async fn serve(repo: &str, simple: bool) -> Result<(), Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let mut terminate = signal(SignalKind::terminate())?;
    let stop = async move {
        terminate.recv().await;
    };
    println!("Serving on grpc://{}", listener.local_addr()?);
    if simple {
        let repository = parquet_storage_server::Repository::new(repo)?;
        parquet_storage_server::serve_repository(listener, repository, stop).await?;
    } else {
        let repository = streaming_parquet_server::Repository::new(repo)?;
        streaming_parquet_server::serve_repository(listener, repository, stop).await?;
    }
    Ok(())
}

async fn measure(mib: u64, simple: bool) -> Result<(), Error> {
    let program = match simple {
        true => "parquet_storage_server",
        false => "streaming_parquet_server",
    };
    println!("server: the serve_repository of examples/{program}.rs");
    let batches = (mib * MIB / (ROWS_PER_BATCH as u64 * 8)) as usize;
    let rows = batches * ROWS_PER_BATCH;
    println!(
        "dataset: {batches} batches of {ROWS_PER_BATCH} random Int64 values, {rows} rows, {} MiB",
        rows * 8 / MIB as usize
    );
    let repo = tempfile::tempdir()?;

    // The upload and the download each on a new server, so that what the
    // upload leaves in the server's memory does not count for the download.
    let mut server = Server::start(repo.path(), simple)?;
    let result = put(&server, batches, repo.path()).await;
    server.stop()?;
    let (idle, put) = result?;

    let mut server = Server::start(repo.path(), simple)?;
    let result = get(&server, rows).await;
    server.stop()?;
    let (get_idle, get) = result?;

    let mib = |bytes: u64| bytes as f64 / MIB as f64;
    let over = |peak: u64, idle: u64| mib(peak.saturating_sub(idle));
    println!("server peak RSS idle:       {:7.1} MiB", mib(idle));
    println!(
        "server peak RSS during put: {:7.1} MiB ({:+.1} MiB over idle)",
        mib(put),
        over(put, idle)
    );
    println!(
        "server peak RSS during get: {:7.1} MiB ({:+.1} MiB over idle, which was {:.1} MiB)",
        mib(get),
        over(get, get_idle),
        mib(get_idle)
    );
    if simple {
        return Ok(());
    }
    if over(put, idle) >= AIM_MIB || over(get, get_idle) >= AIM_MIB {
        return Err(format!("a peak is {AIM_MIB} MiB or more above the idle size").into());
    }
    println!("within the aim: less than {AIM_MIB} MiB above the idle size");
    Ok(())
}

/// A client of `server`, after one call and a pause: the server is idle.
async fn idle_client(server: &Server) -> Result<(FlightClient, u64), Error> {
    let channel = Channel::from_shared(server.url.clone())?.connect().await?;
    let mut client = FlightClient::new(channel);
    let listing = client.list_flights("").await?;
    listing.try_collect::<Vec<_>>().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = server.peak()?;
    server.reset_peak();
    Ok((client, idle))
}

/// Uploads `batches` batches of random numbers; returns the server's peak
/// RSS when idle and during the upload.
async fn put(server: &Server, batches: usize, repo: &Path) -> Result<(u64, u64), Error> {
    let (mut client, idle) = idle_client(server).await?;
    let started = Instant::now();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let data = stream::iter((0..batches).map(move |_| {
        let values = Int64Array::from_iter_values((0..ROWS_PER_BATCH).map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as i64
        }));
        RecordBatch::try_from_iter([("ints", Arc::new(values) as ArrayRef)]).map_err(Into::into)
    }));
    upload_stream(&mut client, "big.parquet", data).await?;
    let elapsed = started.elapsed();
    let peak = server.peak()?;
    let size = std::fs::metadata(repo.join("big.parquet"))?.len();
    println!(
        "put: {:.1} s, Parquet file {} MiB",
        elapsed.as_secs_f64(),
        size / MIB
    );
    Ok((idle, peak))
}

/// Reads the dataset back batch by batch; returns the server's peak RSS
/// when idle and during the download.
async fn get(server: &Server, rows: usize) -> Result<(u64, u64), Error> {
    let (mut client, idle) = idle_client(server).await?;
    let started = Instant::now();
    let received = count_rows(&mut client, "big.parquet").await?;
    let elapsed = started.elapsed();
    let peak = server.peak()?;
    println!("get: {:.1} s, {received} rows", elapsed.as_secs_f64());
    if received != rows {
        return Err(format!("got {received} rows back, sent {rows}").into());
    }
    Ok((idle, peak))
}

/// The server in a child process, and a thread that samples its RSS.
struct Server {
    child: Child,
    url: String,
    sampled_peak: Arc<AtomicU64>,
    sampling: Arc<AtomicBool>,
    sampler: Option<thread::JoinHandle<()>>,
}

impl Server {
    fn start(repo: &Path, simple: bool) -> Result<Server, Error> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--serve")
            .arg(repo)
            .arg(if simple { "simple" } else { "streaming" })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (first, line) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = first.send(lines.next());
            lines.for_each(drop);
        });
        let line = match line.recv_timeout(TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the server did not start".into());
            }
        };
        let addr = line
            .strip_prefix("Serving on grpc://")
            .ok_or_else(|| format!("unexpected first line: {line}"))?;

        let pid = child.id();
        let sampled_peak = Arc::new(AtomicU64::new(0));
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, sampling) = (Arc::clone(&sampled_peak), Arc::clone(&sampling));
            thread::spawn(move || {
                while sampling.load(Ordering::Relaxed) {
                    if let Ok(rss) = status_field(pid, "VmRSS:") {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Ok(Server {
            child,
            url: format!("http://{addr}"),
            sampled_peak,
            sampling,
            sampler: Some(sampler),
        })
    }

    /// Starts a new step: the kernel's peak and the sampled one start again
    /// from the current size.
    fn reset_peak(&self) {
        let path = format!("/proc/{}/clear_refs", self.child.id());
        if let Err(e) = std::fs::write(path, "5") {
            eprintln!("cannot reset the kernel's peak ({e}): the sampled peak counts");
        }
        self.sampled_peak.store(0, Ordering::Relaxed);
    }

    /// The peak RSS since the last reset: the larger of the kernel's and the
    /// sampled one.
    fn peak(&self) -> Result<u64, Error> {
        let kernel = status_field(self.child.id(), "VmHWM:")?;
        Ok(kernel.max(self.sampled_peak.load(Ordering::Relaxed)))
    }

    /// Sends SIGTERM and waits for the server to stop, at most 10 s.
    fn stop(&mut self) -> Result<(), Error> {
        self.sampling.store(false, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return match status.success() {
                    true => Ok(()),
                    false => Err(format!("the server ended with {status}").into()),
                };
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                self.child.wait()?;
                return Err("the server did not stop within 10 s".into());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A `kB` field of `/proc/PID/status`, in bytes.
fn status_field(pid: u32, field: &str) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))?;
    let kb: u64 = line
        .trim_start_matches(field)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb * 1024)
}
