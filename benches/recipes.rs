//! Benchmarks of the recipes' servers, each figure next to a baseline
//! measured in the same run:
//!
//! ```console
//! $ cargo bench --bench recipes [-- [--quick] [--runs N] [--simple]]
//! ```
//!
//! * The streaming Parquet storage recipe: `do_put` and `do_get` of 1024
//!   batches of 4096 random Int64 values (32 MiB) and of 1 GiB, in MB/s,
//!   next to plain TCP over loopback and to a file write with `fsync`, both
//!   moving the same bytes in this program; next to the limits of each
//!   direction: the same batches encoded in this program with the server's
//!   `writer_properties` (into a file with `fsync` and rename, and into
//!   nothing), the server's file read back in this program, and a Flight
//!   server ([`LimitServer`]) that decodes an upload and drops it or sends
//!   messages encoded beforehand; next to the pyarrow server of the Python
//!   page, with our client and with pyarrow's
//!   (`tests/python/streaming_bench_client.py`); the CPU time that server
//!   and client used; the server's peak resident memory during each call,
//!   each by a new server process, at 1 GiB next to 32 MiB. The steps of a
//!   run go in the opposite order every other run.
//! * The stored-Arrow recipe (`examples/stored_arrow_server.rs`): the same
//!   upload and download, in the same run, next to the Flight server that
//!   sends messages encoded beforehand, with its server's CPU time per MiB.
//! * The user/password recipe: echo calls per second with a bearer token,
//!   next to the same echo service without the authentication layer and next
//!   to the pyarrow server of the Python page; logins per second likewise,
//!   next to Handshake calls without the layer.
//!
//! Every server runs in a process of its own: ours are this program started
//! again with `--serve MODE`, which calls the same `serve` functions as the
//! example programs' `main`, compiled with the same (release) profile as
//! this benchmark, so that `cargo bench` builds everything it runs and no
//! stale example binary is measured; pyarrow's are the scripts of
//! `tests/python`, run by the Python that `recipes/build.rs` found with the
//! packages of `tests/python/requirements.txt`. Both kinds run as
//! `tests/common`'s `ChildProcess`. The client is ours for every server (and
//! pyarrow's too for the storage servers): the functions of
//! `examples/streaming_parquet_client.rs` and `examples/basic_auth_client.rs`.
//!
//! Each figure is the median over the runs (5 by default); a ratio is the
//! median of the ratios of the runs, each measured back to back. `--quick`
//! skips the 1 GiB runs; `--simple` adds the memory of the simple storage
//! server (`examples/parquet_storage_server.rs`), which holds whole
//! datasets. The program exits with 0 also when a goal is missed: the table
//! says MISSED.

#[path = "../tests/common/mod.rs"]
mod common;

#[allow(dead_code)]
#[path = "../examples/basic_auth_client.rs"]
mod basic_auth_client;

#[allow(dead_code)]
#[path = "../examples/basic_auth_server.rs"]
mod basic_auth_server;

#[allow(dead_code)]
#[path = "../examples/parquet_storage_server.rs"]
mod parquet_storage_server;

#[allow(dead_code)]
#[path = "../examples/stored_arrow_server.rs"]
mod stored_arrow_server;

#[allow(dead_code)]
#[path = "../examples/streaming_parquet_client.rs"]
mod streaming_parquet_client;

#[allow(dead_code)]
#[path = "../examples/streaming_parquet_server.rs"]
mod streaming_parquet_server;

use std::future::Future;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_flight::decode::FlightDataDecoder;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightClient, FlightData,
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use arrow_select::concat::concat_batches;
use basic_auth_client::{TokenPair, authenticate_basic_token};
use basic_auth_server::EchoServer;
use common::ChildProcess;
use futures::StreamExt;
use futures::stream::BoxStream;
use futures::{TryStreamExt, stream};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use streaming_parquet_client::{connect, count_rows, upload_stream};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tonic::metadata::MetadataValue;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status, Streaming};

type Error = Box<dyn std::error::Error + Send + Sync>;

const ROWS_PER_BATCH: usize = 4096;
const BATCH_BYTES: u64 = ROWS_PER_BATCH as u64 * 8;
const MIB: u64 = 1024 * 1024;
/// Distinct batches the client cycles through: 8 MiB of random numbers,
/// more than a Parquet page, so that neither Parquet nor Snappy can shrink
/// the data, and made before the clock starts.
const POOL_BATCHES: usize = 256;
/// The rows of each batch that the storage server sends.
const BATCH_ROWS: usize = streaming_parquet_server::BATCH_ROWS;
/// Calls in flight at once, and the connections they share.
const IN_FLIGHT: usize = 16;
const CONNECTIONS: usize = 4;

struct Options {
    quick: bool,
    runs: usize,
    simple: bool,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        return serve(&args[1..]).await;
    }
    let mut options = Options {
        quick: false,
        runs: 5,
        simple: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--simple" => options.simple = true,
            "--runs" => {
                let runs = args.next().ok_or("--runs needs a number")?;
                options.runs =
                    runs.parse().ok().filter(|&runs| runs > 0).ok_or_else(
                        || format!("--runs needs a number above 0, not {runs:?}"),
                    )?;
            }
            // `cargo bench` adds it.
            "--bench" => {}
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: recipes [--quick] [--runs N] [--simple]"
                )
                .into());
            }
        }
    }
    run(options).await
}

// ---------------------------------------------------------------------------
// The servers, in child processes

/// The child: one of our servers on a free port, stopped by SIGTERM, or
/// when its stdin closes because the benchmark has ended in any way.
async fn serve(args: &[String]) -> Result<(), Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let mut terminate = signal(SignalKind::terminate())?;
    let (closed, stdin_closed) = tokio::sync::oneshot::channel::<()>();
    thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = closed.send(());
    });
    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = stdin_closed => {}
        }
    };
    println!("Serving on grpc://{}", listener.local_addr()?);
    match args {
        [mode, repo] if mode == "streaming" => {
            let repository = streaming_parquet_server::Repository::new(repo)?;
            streaming_parquet_server::serve_repository(listener, repository, stop)
                .await?;
        }
        [mode, repo] if mode == "stored" => {
            let repository = stored_arrow_server::Repository::new(repo)?;
            stored_arrow_server::serve_repository(listener, repository, stop)
                .await?;
        }
        [mode, repo] if mode == "simple" => {
            let repository = parquet_storage_server::Repository::new(repo)?;
            parquet_storage_server::serve_repository(listener, repository, stop)
                .await?;
        }
        [mode] if mode == "auth" => {
            basic_auth_server::serve(listener, stop).await?
        }
        // The transport limits of the storage server: an upload decoded and
        // dropped, a download of messages encoded beforehand.
        [mode, _] if mode == "limits" => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            let service = LimitServer::new().await?;
            Server::builder()
                .add_service(FlightServiceServer::new(service))
                .serve_with_incoming_shutdown(incoming, stop)
                .await?
        }
        // The baseline: basic_auth_server::serve without its layer.
        [mode] if mode == "echo" => {
            Server::builder()
                .add_service(FlightServiceServer::new(EchoServer))
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), stop)
                .await?
        }
        other => return Err(format!("not a server: {other:?}").into()),
    }
    Ok(())
}

/// A server in a child process, and a thread that samples its RSS.
struct ServerProcess {
    process: Option<ChildProcess>,
    pid: u32,
    url: String,
    sampled_peak: Arc<AtomicU64>,
    sampling: Arc<AtomicBool>,
    sampler: Option<thread::JoinHandle<()>>,
}

impl ServerProcess {
    /// One of ours: this program with `--serve ARGS`.
    fn ours(args: &[&std::ffi::OsStr]) -> Result<Self, Error> {
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("--serve").args(args);
        Ok(Self::start(ChildProcess::start("our server", command)))
    }

    /// A pyarrow server of `tests/python`.
    fn pyarrow(
        python: &str,
        script: &str,
        args: &[&std::ffi::OsStr],
    ) -> Result<Self, Error> {
        Ok(Self::start(ChildProcess::python(python, script, args)))
    }

    /// Reads where `process` serves and starts sampling its RSS. The
    /// servers also stop when their stdin closes: if this program dies, so
    /// do they.
    fn start(mut process: ChildProcess) -> Self {
        let url = format!("http://{}", process.serving_on());
        let pid = process.id();
        let sampled_peak = Arc::new(AtomicU64::new(0));
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, sampling) =
                (Arc::clone(&sampled_peak), Arc::clone(&sampling));
            thread::spawn(move || {
                while sampling.load(Ordering::Relaxed) {
                    if let Ok(rss) = status_field(pid, "VmRSS:") {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            })
        };
        ServerProcess {
            process: Some(process),
            pid,
            url,
            sampled_peak,
            sampling,
            sampler: Some(sampler),
        }
    }

    async fn channel(&self) -> Result<Channel, Error> {
        Ok(Channel::from_shared(self.url.clone())?.connect().await?)
    }

    /// Starts a new step: the kernel's peak and the sampled one start again
    /// from the current size.
    fn reset_peak(&self) {
        let path = format!("/proc/{}/clear_refs", self.pid);
        if let Err(e) = std::fs::write(path, "5") {
            eprintln!(
                "cannot reset the kernel's peak ({e}): the sampled peak counts"
            );
        }
        self.sampled_peak.store(0, Ordering::Relaxed);
    }

    /// The peak RSS since the last reset: the larger of the kernel's
    /// (`VmHWM`) and the one sampled every 10 ms.
    fn peak(&self) -> Result<u64, Error> {
        let kernel = status_field(self.pid, "VmHWM:")?;
        Ok(kernel.max(self.sampled_peak.load(Ordering::Relaxed)))
    }

    /// Sends SIGTERM and waits for the server to stop cleanly, at most
    /// `common::STOP_TIMEOUT`.
    fn stop(mut self) -> Result<(), Error> {
        self.stop_sampling();
        let process = self.process.take().ok_or("the server was stopped before")?;
        let finished = process.terminate();
        // A server that is already on its way out when SIGTERM comes (its
        // stdin is closed first) may end by the signal.
        let by_sigterm =
            finished.status.and_then(|status| status.signal()) == Some(15);
        match finished.success() || by_sigterm {
            true => Ok(()),
            false => Err(format!(
                "the server did not stop cleanly: {}",
                finished.report()
            )
            .into()),
        }
    }

    fn stop_sampling(&mut self) {
        self.sampling.store(false, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
    }
}

impl Drop for ServerProcess {
    /// Stops the sampler; the process, dropped, stops too.
    fn drop(&mut self) {
        self.stop_sampling();
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

/// The Python interpreter with pyarrow that the build found, and pyarrow's
/// version; the reason why not otherwise.
fn pyarrow() -> Result<(String, String), String> {
    if !cfg!(python) {
        return Err(
            "no Python with tests/python/requirements.txt (see recipes/build.rs)"
                .into(),
        );
    }
    let python = common::python();
    let check = "import pyarrow; print(pyarrow.__version__)";
    match Command::new(&python).args(["-c", check]).output() {
        Ok(output) if output.status.success() => {
            let version =
                String::from_utf8_lossy(&output.stdout).trim().to_string();
            Ok((python, version))
        }
        Ok(_) => Err(format!("{python} has no pyarrow")),
        Err(e) => Err(format!("cannot run {python}: {e}")),
    }
}

// ---------------------------------------------------------------------------
// The limits of the storage server

/// A Flight server that moves what the storage server moves and does none
/// of its work: `do_put` decodes the upload and drops it; `do_get` sends the
/// messages that the storage server sends for a dataset of the pool's
/// batches, encoded once when it starts.
struct LimitServer {
    /// The schema's message, then the pool as batches of `BATCH_ROWS` rows.
    messages: Vec<FlightData>,
}

impl LimitServer {
    async fn new() -> Result<Self, Error> {
        let pool = batch_pool()?;
        let per_batch = BATCH_ROWS / ROWS_PER_BATCH;
        let batches = pool
            .chunks(per_batch)
            .map(|chunk| concat_batches(&chunk[0].schema(), chunk))
            .collect::<Result<Vec<_>, _>>()?;
        let messages = FlightDataEncoderBuilder::new()
            .build(stream::iter(batches.into_iter().map(Ok)))
            .try_collect()
            .await?;
        Ok(LimitServer { messages })
    }
}

/// The dataset of `batches` batches of the pool, as the benchmark names it.
fn dataset(batches: usize) -> String {
    format!("bench-{batches}.parquet")
}

fn batches_of(name: &str) -> Result<usize, Status> {
    name.strip_prefix("bench-")
        .and_then(|rest| rest.strip_suffix(".parquet"))
        .and_then(|batches| batches.parse().ok())
        .ok_or_else(|| Status::not_found(format!("no dataset {name:?}")))
}

fn unoffered<T>() -> Result<T, Status> {
    Err(Status::unimplemented("not offered"))
}

#[tonic::async_trait]
impl FlightService for LimitServer {
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let messages = request.into_inner().map_err(FlightError::from);
        let mut decoded = FlightDataDecoder::new(messages);
        while decoded.try_next().await.map_err(Status::from)?.is_some() {}
        Ok(Response::new(stream::empty().boxed()))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let name = request.get_ref().path.concat();
        batches_of(&name)?;
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(name));
        Ok(Response::new(FlightInfo::new().with_endpoint(endpoint)))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let name = String::from_utf8_lossy(&request.get_ref().ticket).to_string();
        let rows = batches_of(&name)? * ROWS_PER_BATCH;
        let (schema, batches) = self.messages.split_at(1);
        let data = batches.iter().cycle().take(rows / BATCH_ROWS);
        let messages: Vec<_> = schema.iter().chain(data).cloned().map(Ok).collect();
        Ok(Response::new(stream::iter(messages).boxed()))
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unoffered()
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Ok(Response::new(stream::empty().boxed()))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unoffered()
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        unoffered()
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        unoffered()
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        unoffered()
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unoffered()
    }
}

/// Seconds to encode `batches` batches of the pool, in the order of an
/// upload, with the storage server's writer properties, in this process:
/// into a new file of `repo`, flushed to disk and renamed, as the server
/// does; or, without `repo`, into nothing.
fn encode(
    repo: Option<&Path>,
    batches: usize,
    pool: &[RecordBatch],
) -> Result<f64, Error> {
    let schema = pool[0].schema();
    let properties = Some(streaming_parquet_server::writer_properties());
    let started = Instant::now();
    let Some(repo) = repo else {
        let mut writer = ArrowWriter::try_new(std::io::sink(), schema, properties)?;
        for i in 0..batches {
            writer.write(&pool[i % pool.len()])?;
        }
        writer.close()?;
        return Ok(started.elapsed().as_secs_f64());
    };
    let mut file = tempfile::Builder::new()
        .prefix(".in-process-")
        .tempfile_in(repo)?;
    let mut writer = ArrowWriter::try_new(file.as_file_mut(), schema, properties)?;
    for i in 0..batches {
        writer.write(&pool[i % pool.len()])?;
    }
    writer.close()?;
    file.as_file().sync_all()?;
    let path = repo.join("in-process.parquet");
    file.persist(&path)?;
    let seconds = started.elapsed().as_secs_f64();
    std::fs::remove_file(path)?;
    Ok(seconds)
}

/// Seconds to read and decode the file at `path` in this process, in
/// batches of the storage server's `BATCH_ROWS`; it must have `batches`
/// batches of the pool.
fn read(path: &Path, batches: usize) -> Result<f64, Error> {
    let started = Instant::now();
    let reader =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?
            .with_batch_size(BATCH_ROWS)
            .build()?;
    let mut rows = 0;
    for batch in reader {
        rows += batch?.num_rows();
    }
    let seconds = started.elapsed().as_secs_f64();
    if rows != batches * ROWS_PER_BATCH {
        return Err(format!("{}: {rows} rows", path.display()).into());
    }
    Ok(seconds)
}

/// The CPU time that a process has used, to be compared with a later one.
struct CpuTime {
    /// User and system time from `/proc/PID/stat`, in clock ticks of 10 ms.
    ticks: u64,
    /// Each thread's time on a core from `/proc/PID/task/TID/sched`, in ms
    /// to the nanosecond, where the kernel has it.
    threads: Vec<(u32, f64)>,
}

impl CpuTime {
    fn of(pid: u32) -> Result<Self, Error> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |i: usize| -> Result<u64, Error> {
            Ok(fields
                .get(i)
                .ok_or("/proc/PID/stat is too short")?
                .parse()?)
        };
        // utime and stime, fields 14 and 15; `fields` starts at field 3.
        let ticks = field(11)? + field(12)?;
        let mut threads = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let task = task?;
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok())
            else {
                continue;
            };
            let Ok(sched) = std::fs::read_to_string(task.path().join("sched"))
            else {
                continue;
            };
            let runtime = sched
                .lines()
                .find(|line| line.starts_with("se.sum_exec_runtime"))
                .and_then(|line| line.split(':').nth(1))
                .and_then(|ms| ms.trim().parse().ok());
            if let Some(ms) = runtime {
                threads.push((tid, ms));
            }
        }
        Ok(CpuTime { ticks, threads })
    }

    /// Seconds of CPU time used since `earlier`: to the nanosecond when
    /// every thread of `earlier` is still there, else in clock ticks (a
    /// thread that ends takes its time out of the threads' sum).
    fn since(&self, earlier: &CpuTime) -> f64 {
        let all_there = !earlier.threads.is_empty()
            && earlier
                .threads
                .iter()
                .all(|(tid, _)| self.threads.iter().any(|(t, _)| t == tid));
        if !all_there {
            return self.ticks.saturating_sub(earlier.ticks) as f64 / 100.0;
        }
        let ms: f64 = self
            .threads
            .iter()
            .map(|(tid, now)| {
                let then = earlier.threads.iter().find(|(t, _)| t == tid);
                now - then.map_or(0.0, |(_, then)| *then)
            })
            .sum();
        ms / 1e3
    }
}

/// pyarrow's client, `tests/python/streaming_bench_client.py`, connected
/// to the server at `url`.
struct PyarrowClient(ChildProcess);

impl PyarrowClient {
    fn start(python: &str, url: &str) -> Result<Self, Error> {
        let url = url.replacen("http://", "grpc://", 1);
        let script = "streaming_bench_client.py";
        let mut process = ChildProcess::python(python, script, &[url.as_ref()]);
        match process.next_line().as_str() {
            "ready" => Ok(PyarrowClient(process)),
            other => {
                Err(format!("{script}: {other:?} instead of \"ready\"").into())
            }
        }
    }

    /// One `put` or `get` of `batches` batches as `name`: seconds, and the
    /// client's CPU seconds.
    fn call(
        &mut self,
        what: &str,
        name: &str,
        batches: usize,
    ) -> Result<(f64, f64), Error> {
        let stdin = self
            .0
            .stdin()
            .ok_or("the pyarrow client's stdin is closed")?;
        writeln!(stdin, "{what} {name} {batches}")?;
        stdin.flush()?;
        let line = self.0.next_line();
        let numbers: Vec<f64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| format!("the pyarrow client said {line:?}"))?;
        match numbers.as_slice() {
            [seconds, cpu] => Ok((*seconds, *cpu)),
            _ => Err(format!("the pyarrow client said {line:?}").into()),
        }
    }
}

// ---------------------------------------------------------------------------
// Measurements

/// Random Int64 batches of [`ROWS_PER_BATCH`] rows, made once.
fn batch_pool() -> Result<Vec<RecordBatch>, Error> {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    (0..POOL_BATCHES)
        .map(|_| {
            let values =
                Int64Array::from_iter_values((0..ROWS_PER_BATCH).map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as i64
                }));
            Ok(RecordBatch::try_from_iter([(
                "ints",
                Arc::new(values) as ArrayRef,
            )])?)
        })
        .collect()
}

/// The streaming server's peak RSS over idle while it takes uploads of
/// 256 MiB and of 1 GiB in messages of 8 MiB (a million random Int64 each,
/// sent whole, as pyarrow sends a table's batches), each by a new process.
async fn large_batches(runs: usize) -> Result<Vec<Row>, Error> {
    let pool = batch_pool()?;
    let batch = concat_batches(&pool[0].schema(), &pool)?;
    let rows = batch.num_rows();
    let mut figures: [Figure; 2] = Default::default();
    for _ in 0..runs {
        for (figure, batches) in figures.iter_mut().zip([32, 128]) {
            let mut server = Storage::ours("streaming").await?;
            server.server.reset_peak();
            let name = format!("large-{batches}.parquet");
            let descriptor = FlightDescriptor::new_path(vec![name.clone()]);
            let data = stream::repeat(batch.clone()).take(batches).map(Ok);
            let messages = FlightDataEncoderBuilder::new()
                .with_max_flight_data_size(usize::MAX)
                .with_flight_descriptor(Some(descriptor))
                .build(data);
            let _: Vec<_> =
                server.client.do_put(messages).await?.try_collect().await?;
            figure.push(server.over_idle()?);
            let sent = count_rows(&mut server.client, &name).await?;
            if sent != batches * rows {
                return Err(format!("{name}: {sent} rows back").into());
            }
            server.server.stop()?;
        }
    }
    Ok(vec![Row::from(
        "peak RSS over idle, do_put 1 GiB in 8 MiB messages (MiB)",
        &figures[1],
        "the same, 256 MiB",
        &figures[0],
        Some(Goal::AtMost(1.5)),
    )])
}

/// Seconds to upload `batches` batches of the pool as `name`.
async fn put(
    client: &mut FlightClient,
    name: &str,
    batches: usize,
    pool: &Arc<Vec<RecordBatch>>,
) -> Result<f64, Error> {
    let pool = Arc::clone(pool);
    let data =
        stream::iter((0..batches).map(move |i| Ok(pool[i % pool.len()].clone())));
    let started = Instant::now();
    upload_stream(client, name, data).await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds to read `name` back, which must have `batches` batches.
async fn get(
    client: &mut FlightClient,
    name: &str,
    batches: usize,
) -> Result<f64, Error> {
    let started = Instant::now();
    let rows = count_rows(client, name).await?;
    let seconds = started.elapsed().as_secs_f64();
    if rows != batches * ROWS_PER_BATCH {
        return Err(format!(
            "{name}: got {rows} rows back, sent {}",
            batches * ROWS_PER_BATCH
        )
        .into());
    }
    Ok(seconds)
}

/// `len` bytes that are not all the same.
fn filler(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// Seconds to send `bytes` bytes over a loopback TCP connection and receive
/// them, with a tokio sender and receiver in this process.
async fn loopback(bytes: u64) -> Result<f64, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let receiver = tokio::spawn(async move {
        let (stream, _) = listener.accept().await?;
        let mut buffer = vec![0u8; 256 * 1024];
        let mut received = 0u64;
        loop {
            stream.readable().await?;
            match stream.try_read(&mut buffer) {
                Ok(0) => return Ok::<_, std::io::Error>(received),
                Ok(n) => received += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    });
    let chunk = filler(256 * 1024);
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stream.writable().await?;
        match stream.try_write(&chunk[..n]) {
            Ok(written) => left -= written as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
    drop(stream);
    let received = receiver.await??;
    let seconds = started.elapsed().as_secs_f64();
    if received != bytes {
        return Err(
            format!("loopback: received {received} bytes of {bytes}").into()
        );
    }
    Ok(seconds)
}

/// Seconds to write `bytes` bytes to a new file in `dir` and flush it to
/// disk, as the server does with a dataset before it renames it.
fn file_write(dir: &Path, bytes: u64) -> Result<f64, Error> {
    let chunk = filler(MIB as usize);
    let path = dir.join("file-write-baseline");
    let started = Instant::now();
    let mut file = std::fs::File::create(&path)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(MIB) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    let seconds = started.elapsed().as_secs_f64();
    std::fs::remove_file(path)?;
    Ok(seconds)
}

/// Calls per second: [`IN_FLIGHT`] loops of `call`, spread over
/// `clients`, for `duration`.
async fn rate<F, Fut>(
    clients: &[FlightServiceClient<Channel>],
    duration: Duration,
    call: F,
) -> Result<f64, Error>
where
    F: Fn(FlightServiceClient<Channel>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), Error>> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let loops: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let client = clients[i % clients.len()].clone();
            let call = call.clone();
            tokio::spawn(async move {
                let mut calls = 0u64;
                while Instant::now() < deadline {
                    call(client.clone()).await?;
                    calls += 1;
                }
                Ok::<_, Error>(calls)
            })
        })
        .collect();
    let mut calls = 0;
    for one in loops {
        calls += one.await??;
    }
    Ok(calls as f64 / started.elapsed().as_secs_f64())
}

/// An echo action, as `basic_auth_client::echo` sends it, reading both
/// results.
async fn echo(
    mut client: FlightServiceClient<Channel>,
    token: Option<TokenPair>,
) -> Result<(), Error> {
    let mut request = Request::new(Action::new("echo", "Hello, world!"));
    if let Some((name, value)) = token {
        request.metadata_mut().insert(name, value);
    }
    let mut results = client.do_action(request).await?.into_inner();
    let mut count = 0;
    while results.message().await?.is_some() {
        count += 1;
    }
    match count {
        2 => Ok(()),
        _ => Err(format!("echo: {count} results instead of 2").into()),
    }
}

async fn login(mut client: FlightServiceClient<Channel>) -> Result<(), Error> {
    authenticate_basic_token(&mut client, "test", "password").await?;
    Ok(())
}

/// The baseline of a login: the same Handshake call, with the same Basic
/// header, to a server that checks nothing.
async fn handshake(mut client: FlightServiceClient<Channel>) -> Result<(), Error> {
    let basic = MetadataValue::from_static("Basic dGVzdDpwYXNzd29yZA==");
    let mut request = Request::new(stream::iter([HandshakeRequest::default()]));
    request.metadata_mut().insert("authorization", basic);
    client.handshake(request).await?;
    Ok(())
}

async fn clients(
    server: &ServerProcess,
) -> Result<Vec<FlightServiceClient<Channel>>, Error> {
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(FlightServiceClient::new(server.channel().await?));
    }
    Ok(clients)
}

// ---------------------------------------------------------------------------
// The table

/// A figure measured in every run, as the runs' values.
#[derive(Clone, Default)]
struct Figure(Vec<f64>);

impl Figure {
    fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    fn median(&self) -> Option<f64> {
        median(self.0.clone())
    }
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(match values.len() % 2 {
        1 => values[middle],
        _ => (values[middle - 1] + values[middle]) / 2.0,
    })
}

#[derive(Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

struct Row {
    figure: String,
    ours: Figure,
    baseline_name: String,
    baseline: Figure,
    goal: Option<Goal>,
    why_missing: Option<String>,
}

impl Row {
    fn new(figure: &str, baseline_name: &str, goal: Option<Goal>) -> Self {
        Row {
            figure: figure.to_string(),
            ours: Figure::default(),
            baseline_name: baseline_name.to_string(),
            baseline: Figure::default(),
            goal,
            why_missing: None,
        }
    }

    fn from(
        figure: &str,
        ours: &Figure,
        baseline_name: &str,
        baseline: &Figure,
        goal: Option<Goal>,
    ) -> Self {
        let mut row = Row::new(figure, baseline_name, goal);
        row.ours = ours.clone();
        row.baseline = baseline.clone();
        row
    }

    fn missing(mut self, why: &str) -> Self {
        self.why_missing = Some(why.to_string());
        self
    }

    /// The median of the runs' ratios, ours / baseline.
    fn ratio(&self) -> Option<f64> {
        let ratios = self
            .ours
            .0
            .iter()
            .zip(&self.baseline.0)
            .map(|(ours, baseline)| ours / baseline)
            .collect();
        median(ratios)
    }
}

/// Prints `rows` under `title`; returns how many goals were missed and how
/// many were not measured.
fn print_table(title: &str, rows: &[Row]) -> (usize, usize) {
    println!();
    println!("{title}");
    let columns = ["figure", "ours", "baseline", "", "ratio", "goal"];
    let [figure, ours, baseline, value, ratio, goal] = columns;
    println!(
        "  {figure:<52} {ours:>7}  {baseline:<32} {value:>7}  {ratio:>6}  {goal:>6}"
    );
    let (mut missed, mut unmeasured) = (0, 0);
    for row in rows {
        let number = |figure: &Figure| match figure.median() {
            Some(value) if value >= 100.0 => format!("{value:.0}"),
            Some(value) => format!("{value:.1}"),
            None => "-".to_string(),
        };
        let ratio = row.ratio();
        let goal = match row.goal {
            Some(Goal::AtLeast(goal)) => format!(">= {goal}"),
            Some(Goal::AtMost(goal)) => format!("<= {goal}"),
            None => String::new(),
        };
        let verdict = match (row.goal, ratio, &row.why_missing) {
            (_, _, Some(why)) => {
                unmeasured += 1;
                format!("not measured: {why}")
            }
            (Some(Goal::AtLeast(goal)), Some(ratio), _) if ratio >= goal => {
                "met".to_string()
            }
            (Some(Goal::AtMost(goal)), Some(ratio), _) if ratio <= goal => {
                "met".to_string()
            }
            (Some(_), Some(_), _) => {
                missed += 1;
                "MISSED".to_string()
            }
            _ => String::new(),
        };
        println!(
            "  {:<52} {:>7}  {:<32} {:>7}  {:>6}  {:>6}  {}",
            row.figure,
            number(&row.ours),
            row.baseline_name,
            number(&row.baseline),
            ratio.map_or("-".to_string(), |ratio| format!("{ratio:.2}")),
            goal,
            verdict
        );
    }
    (missed, unmeasured)
}

// ---------------------------------------------------------------------------
// The runs

async fn run(options: Options) -> Result<(), Error> {
    let pyarrow = pyarrow();
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Benchmarks of the recipes' servers: {} runs, {cores} cores",
        options.runs
    );
    println!(
        "  ours: the recipes' serve functions, each in a process of its own (release build)"
    );
    match &pyarrow {
        Ok((python, version)) => println!(
            "  pyarrow {version} ({python}): the servers of the Python page, tests/python/*.py"
        ),
        Err(why) => println!("  pyarrow comparisons SKIPPED: {why}"),
    }
    println!(
        "  the client of every server: the recipes' client functions (examples/*_client.rs); \
         of the storage servers, also pyarrow's (tests/python/streaming_bench_client.py)"
    );
    println!(
        "  figures are medians of the runs; ratios, medians of the runs' ours / baseline"
    );
    let pyarrow = pyarrow.ok().map(|(python, _)| python);

    let mut sizes = vec![("32 MiB", 1024)];
    if !options.quick {
        sizes.push(("1 GiB", (1024 * MIB / BATCH_BYTES) as usize));
    }
    let mut storage = storage(&options, &sizes, pyarrow.as_deref()).await?;
    storage.extend(large_batches(options.runs).await?);
    let storage = print_table(
        "Streaming Parquet storage (examples/streaming_parquet_server.rs): batches of 4096 random \
         Int64 values; MB/s of Arrow data (10^6 bytes); pyarrow: the \"Streaming Parquet Storage \
         Service\" server (a row group per batch, GeneratorStream)",
        &storage,
    );
    let auth = auth(&options, pyarrow.as_deref()).await?;
    let auth = print_table(
        "User/password authentication (examples/basic_auth_server.rs): calls per second, 16 in \
         flight over 4 connections; pyarrow: the \"Authentication with user/password\" server",
        &auth,
    );
    println!();
    let (missed, unmeasured) = (storage.0 + auth.0, storage.1 + auth.1);
    if missed > 0 {
        println!("MISSED: {missed} goal(s); see the rows marked MISSED.");
    }
    if unmeasured > 0 {
        println!("{unmeasured} goal(s) not measured in this run.");
    }
    if missed == 0 && unmeasured == 0 {
        println!("All goals met.");
    }
    Ok(())
}

/// A storage server with a client, and its RSS when idle: after one call
/// and a pause.
struct Storage {
    server: ServerProcess,
    client: FlightClient,
    idle: u64,
    /// Our server's mode (`streaming` or `simple`), `None` for pyarrow's.
    mode: Option<String>,
    repo: tempfile::TempDir,
}

impl Storage {
    async fn ours(mode: &str) -> Result<Self, Error> {
        Self::start(Some(mode.to_string()), tempfile::tempdir()?, "").await
    }

    async fn pyarrow(python: &str) -> Result<Self, Error> {
        Self::start(None, tempfile::tempdir()?, python).await
    }

    async fn start(
        mode: Option<String>,
        repo: tempfile::TempDir,
        python: &str,
    ) -> Result<Self, Error> {
        let server = match &mode {
            Some(mode) => {
                ServerProcess::ours(&[mode.as_ref(), repo.path().as_ref()])?
            }
            None => {
                let script = "parquet_storage_server.py";
                ServerProcess::pyarrow(python, script, &[repo.path().as_ref()])?
            }
        };
        let mut client = connect(server.url.clone())
            .await
            .map_err(|e| e.to_string())?;
        let _: Vec<_> = client.list_flights("").await?.try_collect().await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = server.peak()?;
        Ok(Storage {
            server,
            client,
            idle,
            mode,
            repo,
        })
    }

    /// Our server again, in a new process on the same repository, so that
    /// what one call leaves in its memory does not count for the next.
    async fn restarted(self) -> Result<Self, Error> {
        let Storage {
            server, mode, repo, ..
        } = self;
        server.stop()?;
        Self::start(mode, repo, "").await
    }

    /// One upload and one download of `batches` batches by our client, on
    /// a server that has been up for a while.
    async fn transfer(
        &mut self,
        batches: usize,
        pool: &Arc<Vec<RecordBatch>>,
        calls: &mut [Call; 2],
    ) -> Result<(), Error> {
        let name = dataset(batches);
        let (pid, client) = (self.server.pid, std::process::id());
        let bytes = batches as u64 * BATCH_BYTES;
        let before = (CpuTime::of(pid)?, CpuTime::of(client)?);
        let seconds = put(&mut self.client, &name, batches, pool).await?;
        let after = (CpuTime::of(pid)?, CpuTime::of(client)?);
        let (server, client_cpu) =
            (after.0.since(&before.0), after.1.since(&before.1));
        calls[0].push(bytes, seconds, server, client_cpu);
        let seconds = get(&mut self.client, &name, batches).await?;
        let last = (CpuTime::of(pid)?, CpuTime::of(client)?);
        let (server, client_cpu) = (last.0.since(&after.0), last.1.since(&after.1));
        calls[1].push(bytes, seconds, server, client_cpu);
        Ok(())
    }

    /// The same with pyarrow's client.
    fn pyarrow_transfer(
        &mut self,
        client: &mut PyarrowClient,
        batches: usize,
        calls: &mut [Call; 2],
    ) -> Result<(), Error> {
        let name = format!("pyarrow-client-{batches}.parquet");
        let pid = self.server.pid;
        let bytes = batches as u64 * BATCH_BYTES;
        for (i, what) in ["put", "get"].into_iter().enumerate() {
            let before = CpuTime::of(pid)?;
            let (seconds, client_cpu) = client.call(what, &name, batches)?;
            let server_cpu = CpuTime::of(pid)?.since(&before);
            calls[i].push(bytes, seconds, server_cpu, client_cpu);
        }
        Ok(())
    }

    /// One upload and one download of `batches` batches, each by a new
    /// server process: the server's peak RSS over its idle size during
    /// each, in MiB.
    async fn memory(
        mut self,
        batches: usize,
        pool: &Arc<Vec<RecordBatch>>,
        figures: &mut [Figure; 2],
    ) -> Result<Self, Error> {
        let name = format!("bench-{batches}.parquet");
        self = self.restarted().await?;
        self.server.reset_peak();
        put(&mut self.client, &name, batches, pool).await?;
        figures[0].push(self.over_idle()?);
        self = self.restarted().await?;
        self.server.reset_peak();
        get(&mut self.client, &name, batches).await?;
        figures[1].push(self.over_idle()?);
        Ok(self)
    }

    /// The server's peak RSS since the last reset, over its idle size, in MiB.
    fn over_idle(&self) -> Result<f64, Error> {
        let peak = self.server.peak()?;
        Ok(peak.saturating_sub(self.idle) as f64 / MIB as f64)
    }
}

/// A call measured in every run: its MB/s, the CPU time that server and
/// client used, and how many cores that kept busy.
#[derive(Clone, Default)]
struct Call {
    mb_per_s: Figure,
    server_ms: Figure,
    client_ms: Figure,
    cores: Figure,
}

impl Call {
    fn push(&mut self, bytes: u64, seconds: f64, server_cpu: f64, client_cpu: f64) {
        self.mb_per_s.push(bytes as f64 / seconds / 1e6);
        self.server_ms.push(server_cpu * 1e3);
        self.client_ms.push(client_cpu * 1e3);
        self.cores.push((server_cpu + client_cpu) / seconds);
    }

    /// Rows of the CPU time: the server's next to the client's, and the
    /// cores both kept busy.
    fn cpu_rows(&self, what: &str, cores: &Figure) -> [Row; 2] {
        [
            Row::from(
                &format!("{what}: server CPU (ms)"),
                &self.server_ms,
                "client CPU (ms)",
                &self.client_ms,
                None,
            ),
            Row::from(
                &format!("{what}: cores busy, server + client"),
                &self.cores,
                "cores",
                cores,
                None,
            ),
        ]
    }
}

/// The steps of a run of the storage benchmark, in the order of the even
/// runs; odd runs take them backwards.
const STORAGE_STEPS: usize = 11;

async fn storage(
    options: &Options,
    sizes: &[(&str, usize)],
    python: Option<&str>,
) -> Result<Vec<Row>, Error> {
    let pool = Arc::new(batch_pool()?);
    let cores = thread::available_parallelism().map_or(0, |n| n.get()) as f64;
    let mut rows = Vec::new();
    let mut idle = Figure::default();
    // Per size: the streaming server's peak RSS over idle in put and get.
    let mut memory: Vec<(&str, [Figure; 2])> = Vec::new();
    let mut simple_memory = None;
    for (index, &(size, batches)) in sizes.iter().enumerate() {
        let largest = index > 0 && index + 1 == sizes.len();
        let bytes = batches as u64 * BATCH_BYTES;
        let mb_per_s = |seconds: f64| bytes as f64 / seconds / 1e6;
        let scratch = tempfile::tempdir()?;
        let (mut tcp, mut disk) = (Figure::default(), Figure::default());
        let (mut encode_write, mut encode_only) =
            (Figure::default(), Figure::default());
        let mut in_process_read = Figure::default();
        let mut ours: [Call; 2] = Default::default();
        let mut limits: [Call; 2] = Default::default();
        let mut stored: [Call; 2] = Default::default();
        let mut theirs: [Call; 2] = Default::default();
        let mut py_ours: [Call; 2] = Default::default();
        let mut py_theirs: [Call; 2] = Default::default();
        let mut our_memory: [Figure; 2] = Default::default();
        let mut simple: [Figure; 2] = Default::default();
        let mut all_cores = Figure::default();

        // Throughput on servers that stay up; memory on servers started
        // anew for each call.
        let mut our_server = Storage::ours("streaming").await?;
        idle.push(our_server.idle as f64 / MIB as f64);
        let mut limit_server = Storage::ours("limits").await?;
        let mut stored_server = Storage::ours("stored").await?;
        let mut their_server = match python {
            Some(python) => Some(Storage::pyarrow(python).await?),
            None => None,
        };
        let mut py_clients = match (python, &their_server) {
            (Some(python), Some(server)) => Some((
                PyarrowClient::start(python, &our_server.server.url)?,
                PyarrowClient::start(python, &server.server.url)?,
            )),
            _ => None,
        };
        let mut measured = Storage::ours("streaming").await?;
        let mut simple_server = match options.simple && largest {
            true => Some(Storage::ours("simple").await?),
            false => None,
        };
        let repo = our_server.repo.path().to_path_buf();
        for run in 0..options.runs {
            eprintln!("storage, {size}, run {}/{}", run + 1, options.runs);
            all_cores.push(cores);
            let mut steps: Vec<usize> = (0..STORAGE_STEPS).collect();
            if run % 2 == 1 {
                steps.reverse();
            }
            for step in steps {
                match step {
                    0 => tcp.push(mb_per_s(loopback(bytes).await?)),
                    1 => disk.push(mb_per_s(file_write(scratch.path(), bytes)?)),
                    2 => encode_write.push(mb_per_s(encode(
                        Some(&repo),
                        batches,
                        &pool,
                    )?)),
                    3 => encode_only.push(mb_per_s(encode(None, batches, &pool)?)),
                    // Before the in-process read of the file it writes.
                    4 => our_server.transfer(batches, &pool, &mut ours).await?,
                    5 => in_process_read.push(mb_per_s(read(
                        &repo.join(dataset(batches)),
                        batches,
                    )?)),
                    6 => limit_server.transfer(batches, &pool, &mut limits).await?,
                    10 => {
                        stored_server.transfer(batches, &pool, &mut stored).await?
                    }
                    7 => {
                        if let Some(server) = &mut their_server {
                            server.transfer(batches, &pool, &mut theirs).await?;
                        }
                    }
                    8 => {
                        if let (Some((ours_py, theirs_py)), Some(server)) =
                            (&mut py_clients, &mut their_server)
                        {
                            our_server.pyarrow_transfer(
                                ours_py,
                                batches,
                                &mut py_ours,
                            )?;
                            server.pyarrow_transfer(
                                theirs_py,
                                batches,
                                &mut py_theirs,
                            )?;
                        }
                    }
                    _ => {
                        measured = measured
                            .memory(batches, &pool, &mut our_memory)
                            .await?;
                        if let Some(server) = simple_server {
                            simple_server = Some(
                                server.memory(batches, &pool, &mut simple).await?,
                            );
                        }
                    }
                }
            }
        }
        if let Some((ours_py, theirs_py)) = py_clients {
            ours_py.0.stop();
            theirs_py.0.stop();
        }
        let servers = [
            Some(our_server),
            Some(limit_server),
            Some(stored_server),
            their_server,
            Some(measured),
            simple_server,
        ];
        for server in servers.into_iter().flatten() {
            server.server.stop()?;
        }

        let title = |what: &str| format!("{what} {size} (MB/s)");
        let (put, get) = (&ours[0].mb_per_s, &ours[1].mb_per_s);
        let small = index == 0;
        let put_title = title("do_put");
        let get_title = title("do_get");
        let at_least = |goal: f64| Some(Goal::AtLeast(goal));
        rows.push(Row::from(&put_title, put, "loopback TCP", &tcp, None));
        let goal = if largest { at_least(0.9) } else { None };
        rows.push(Row::from(
            &put_title,
            put,
            "file write + fsync",
            &disk,
            goal,
        ));
        rows.push(Row::from(
            &put_title,
            put,
            "Flight do_put, decoded, dropped",
            &limits[0].mb_per_s,
            None,
        ));
        let goal = if small { at_least(0.85) } else { None };
        rows.push(Row::from(
            &put_title,
            put,
            "in-process encode + write + fsync",
            &encode_write,
            goal,
        ));
        rows.push(Row::from(
            &put_title,
            put,
            "in-process encode only",
            &encode_only,
            None,
        ));
        // Retired: do_get at least 0.6 of loopback TCP. h2 moves about half
        // of what raw TCP does; the Flight ceiling is the one to reach.
        rows.push(Row::from(&get_title, get, "loopback TCP", &tcp, None));
        rows.push(Row::from(
            &get_title,
            get,
            "Flight do_get of encoded data",
            &limits[1].mb_per_s,
            at_least(0.8),
        ));
        let stored_get = format!("do_get {size}, stored Arrow pass-through (MB/s)");
        rows.push(Row::from(
            &stored_get,
            &stored[1].mb_per_s,
            "Flight do_get of encoded data",
            &limits[1].mb_per_s,
            at_least(0.9),
        ));
        let per_mib = |call: &Call| {
            let mib = bytes as f64 / MIB as f64;
            Figure(call.server_ms.0.iter().map(|ms| ms / mib).collect())
        };
        rows.push(Row::from(
            &format!("do_get {size}, stored Arrow: server CPU ms per MiB"),
            &per_mib(&stored[1]),
            "Flight do_get of encoded data",
            &per_mib(&limits[1]),
            None,
        ));
        rows.push(Row::from(
            &format!("do_get {size}, stored Arrow: server CPU ms per MiB"),
            &per_mib(&stored[1]),
            "the streaming Parquet server",
            &per_mib(&ours[1]),
            None,
        ));
        rows.push(Row::from(
            &format!("do_put {size}, stored Arrow (MB/s)"),
            &stored[0].mb_per_s,
            "the streaming Parquet server",
            put,
            None,
        ));
        rows.push(Row::from(
            &get_title,
            get,
            "in-process read + decode",
            &in_process_read,
            at_least(0.9),
        ));
        for (what, i) in [("do_put", 0), ("do_get", 1)] {
            let row = Row::from(
                &title(what),
                &ours[i].mb_per_s,
                "pyarrow's server",
                &theirs[i].mb_per_s,
                at_least(1.0),
            );
            rows.push(match python {
                Some(_) => row,
                None => row.missing("no pyarrow"),
            });
            let row = Row::from(
                &format!("{what} {size}, pyarrow's client (MB/s)"),
                &py_ours[i].mb_per_s,
                "pyarrow's server",
                &py_theirs[i].mb_per_s,
                at_least(1.0),
            );
            rows.push(match python {
                Some(_) => row,
                None => row.missing("no pyarrow"),
            });
        }
        for (what, i) in [("do_put", 0), ("do_get", 1)] {
            rows.extend(ours[i].cpu_rows(&format!("{what} {size}"), &all_cores));
        }
        for (what, i) in [("do_put", 0), ("do_get", 1)] {
            let call = &limits[i];
            let what = format!("{what} {size}, transport limit");
            rows.extend(call.cpu_rows(&what, &all_cores));
        }
        if options.simple && largest {
            simple_memory = Some((size, our_memory.clone(), simple));
        }
        memory.push((size, our_memory));
    }

    let none = Figure::default();
    rows.push(Row::from("server RSS idle (MiB)", &idle, "", &none, None));
    let (small, small_figures) = &memory[0];
    for (what, i) in [("put", 0), ("get", 1)] {
        let goal = Some(Goal::AtMost(1.5));
        match memory.get(1) {
            Some((large, large_figures)) => rows.push(Row::from(
                &format!("peak RSS over idle, do_{what} {large} (MiB)"),
                &large_figures[i],
                &format!("the same, {small}"),
                &small_figures[i],
                goal,
            )),
            None => {
                let figure = format!("peak RSS over idle, do_{what} {small} (MiB)");
                rows.push(Row::from(&figure, &small_figures[i], "", &none, None));
                let figure = format!("peak RSS over idle, do_{what} 1 GiB");
                rows.push(Row::new(&figure, "", goal).missing("--quick"));
            }
        }
    }
    if let Some((size, streaming, simple)) = simple_memory {
        for (what, i) in [("put", 0), ("get", 1)] {
            rows.push(Row::from(
                &format!("simple server: RSS over idle, do_{what} {size} (MiB)"),
                &simple[i],
                "the streaming server",
                &streaming[i],
                None,
            ));
        }
    }
    Ok(rows)
}

async fn auth(options: &Options, python: Option<&str>) -> Result<Vec<Row>, Error> {
    let duration = Duration::from_millis(if options.quick { 300 } else { 1000 });
    let ours = ServerProcess::ours(&["auth".as_ref()])?;
    let bare = ServerProcess::ours(&["echo".as_ref()])?;
    let theirs = match python {
        Some(python) => {
            Some(ServerProcess::pyarrow(python, "basic_auth_server.py", &[])?)
        }
        None => None,
    };

    let our_clients = clients(&ours).await?;
    let bare_clients = clients(&bare).await?;
    let their_clients = match &theirs {
        Some(server) => clients(server).await?,
        None => Vec::new(),
    };

    let (mut our_echo, mut bare_echo, mut py_echo) =
        <[Figure; 3]>::default().into();
    let (mut our_login, mut bare_login, mut py_login) =
        <[Figure; 3]>::default().into();
    for run in 0..options.runs {
        eprintln!("auth, run {}/{}", run + 1, options.runs);
        // A new token each run: the logins of the run before pushed the old
        // one out of the server's store (10 000 tokens).
        let mut client = our_clients[0].clone();
        let token =
            authenticate_basic_token(&mut client, "test", "password").await?;
        let with_token = move |client| echo(client, Some(token.clone()));
        // Which of a pair goes first alternates, so that neither always
        // meets a machine that the other has warmed up.
        let ours_first = run % 2 == 0;
        if !ours_first {
            bare_echo.push(rate(&bare_clients, duration, |c| echo(c, None)).await?);
            bare_login.push(rate(&bare_clients, duration, handshake).await?);
        }
        our_echo.push(rate(&our_clients, duration, with_token).await?);
        our_login.push(rate(&our_clients, duration, login).await?);
        if ours_first {
            bare_echo.push(rate(&bare_clients, duration, |c| echo(c, None)).await?);
            bare_login.push(rate(&bare_clients, duration, handshake).await?);
        }
        if let Some(client) = their_clients.first() {
            let token =
                authenticate_basic_token(&mut client.clone(), "test", "password")
                    .await?;
            let with_token = move |client| echo(client, Some(token.clone()));
            py_echo.push(rate(&their_clients, duration, with_token).await?);
            py_login.push(rate(&their_clients, duration, login).await?);
        }
    }
    ours.stop()?;
    bare.stop()?;
    if let Some(theirs) = theirs {
        theirs.stop()?;
    }

    let pyarrow_row = |figure: &str, ours: &Figure, theirs: &Figure| {
        let row =
            Row::from(figure, ours, "pyarrow", theirs, Some(Goal::AtLeast(2.0)));
        match python {
            Some(_) => row,
            None => row.missing("no pyarrow"),
        }
    };
    Ok(vec![
        Row::from(
            "echo calls/s with a bearer token",
            &our_echo,
            "the same service, no auth layer",
            &bare_echo,
            Some(Goal::AtLeast(0.9)),
        ),
        pyarrow_row("echo calls/s with a bearer token", &our_echo, &py_echo),
        Row::from(
            "logins/s",
            &our_login,
            "Handshake calls/s, no auth layer",
            &bare_login,
            None,
        ),
        pyarrow_row("logins/s", &our_login, &py_login),
    ])
}
