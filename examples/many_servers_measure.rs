//! What the client for many servers costs and saves, against the client of
//! the several-servers recipe, on the same shard servers.
//!
//! `cargo build --release -p flight-cookbook-recipes --example shard_server
//! --example many_servers_measure` then
//! `target/release/examples/many_servers_measure [ROWS] [RUNS]`.
//!
//! Starts the dataset `numbers` of ROWS rows (default 20 000 000, 320 MB)
//! on shard servers, each a process of its own, and prints, as medians of
//! RUNS runs (default 5):
//!
//! 1. the time of a download with 1, 2 and 4 shards, for the
//!    several-servers client (`fetch_all`, which connects to each server
//!    for each download) and for this one (channels kept across
//!    downloads), both putting the whole table together;
//! 2. the client's peak heap with a consumer slower than the network,
//!    which drops each batch once done with it, with the budget on and off;
//! 3. the time and that peak for four choices of HTTP/2 windows.
//!
//! The heap is counted by this program's global allocator: every byte the
//! client allocates, and nothing of the servers'.

#[allow(dead_code)]
#[path = "many_servers_client.rs"]
mod many_servers_client;
#[allow(dead_code)]
#[path = "shard_client.rs"]
mod shard_client;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_flight::{FlightClient, FlightDescriptor, FlightInfo};
use many_servers_client::{Budget, Channels, Download, Error, Retry, Windows};
use shard_client::{fetch_all, flight_endpoint};

/// The heap in use now, and the most since the last `reset_peak`.
static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Counting;

fn grew(by: usize) {
    let now = NOW.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call goes to the system allocator unchanged; the counters
// only add and take away the sizes of what it allocated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, size) };
        if !q.is_null() {
            NOW.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(size);
        }
        q
    }
}

#[global_allocator]
static HEAP: Counting = Counting;

/// Starts counting the peak from the heap in use now; gives that.
fn reset_peak() -> usize {
    let now = NOW.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

// ANCHOR: copy_start_shards
struct Shards(Vec<Child>);

impl Drop for Shards {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start(
    count: usize,
    rows: usize,
) -> Result<(Shards, String), Box<dyn std::error::Error>> {
    let server = std::env::current_exe()?.with_file_name("shard_server");
    if !server.exists() {
        return Err(
            "build it first: cargo build --release --example shard_server".into(),
        );
    }
    // Free ports, found by binding and letting go.
    let ports: Vec<u16> = (0..count)
        .map(|_| Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port()))
        .collect::<std::io::Result<_>>()?;
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("grpc://127.0.0.1:{p}"))
        .collect();
    let mut shards = Shards(Vec::new());
    for (shard, port) in ports.iter().enumerate() {
        let mut child = Command::new(&server)
            .arg(format!("127.0.0.1:{port}"))
            .args(["--shard", &shard.to_string(), "--rows", &rows.to_string()])
            .args(["--shards", &urls.join(",")])
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        shards.0.push(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if !line.starts_with("Serving on") {
            return Err(format!("shard {shard} did not start: {line:?}").into());
        }
    }
    Ok((shards, urls[0].clone()))
}
// ANCHOR_END: copy_start_shards

fn numbers() -> FlightDescriptor {
    FlightDescriptor::new_path(vec!["numbers".to_string()])
}

/// The several-servers client: connects, asks, fetches every endpoint.
async fn old_client(url: &str) -> Result<usize, Error> {
    let channel = flight_endpoint(url)?.connect().await?;
    let info = FlightClient::new(channel.clone())
        .get_flight_info(numbers())
        .await?;
    let batches = fetch_all(info.endpoint, &channel).await?;
    Ok(batches.iter().map(RecordBatch::num_rows).sum())
}

async fn info(url: &str, channels: &Channels) -> Result<FlightInfo, Error> {
    let mut client = FlightClient::new(channels.get(url)?);
    Ok(client.get_flight_info(numbers()).await?)
}

/// This client: the whole table put together, or, with `work`, each batch
/// dropped after that long a pause.
async fn new_client(
    url: &str,
    channels: &Channels,
    budget: &Budget,
    work: Option<Duration>,
) -> Result<usize, Error> {
    let info = info(url, channels).await?;
    let endpoints = info.endpoint.len();
    let mut download =
        Download::start(info.endpoint, channels, budget, Retry::default());
    let mut table = vec![Vec::new(); endpoints];
    let mut rows = 0;
    while let Some(part) = download.next().await {
        let part = part?;
        rows += part.batch.num_rows();
        match work {
            Some(pause) => tokio::time::sleep(pause).await,
            None => table[part.endpoint].push(part.batch.clone()),
        }
    }
    drop(table);
    Ok(rows)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(time: Duration) -> f64 {
    time.as_secs_f64() * 1000.0
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

/// The median time of `runs` runs of `run` after one to warm up, and the
/// most heap above what was in use before, over all of them.
async fn measure<F, R>(
    rows: usize,
    runs: usize,
    mut run: F,
) -> Result<(Duration, usize), Error>
where
    F: FnMut() -> R,
    R: std::future::Future<Output = Result<usize, Error>>,
{
    run().await?;
    let mut times = Vec::new();
    let mut peak = 0;
    for _ in 0..runs {
        let before = reset_peak();
        let started = Instant::now();
        let fetched = run().await?;
        times.push(started.elapsed());
        peak = peak.max(PEAK.load(Ordering::Relaxed).saturating_sub(before));
        if fetched != rows {
            return Err(format!("fetched {fetched} rows of {rows}").into());
        }
    }
    Ok((median(times), peak))
}

const WINDOWS: [(&str, Windows); 4] = [
    (
        "64 KiB, 64 KiB (HTTP/2's)",
        Windows {
            stream: Some(64 << 10),
            connection: Some(64 << 10),
        },
    ),
    (
        "2 MiB, 5 MiB (hyper's)",
        Windows {
            stream: None,
            connection: None,
        },
    ),
    (
        "4 MiB, 16 MiB (this client's)",
        Windows {
            stream: Some(4 << 20),
            connection: Some(16 << 20),
        },
    ),
    (
        "16 MiB, 64 MiB (Ballista's)",
        Windows {
            stream: Some(16 << 20),
            connection: Some(64 << 20),
        },
    ),
];

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rows: usize = args.first().map_or(Ok(20_000_000), |a| a.parse())?;
    let runs: usize = args.get(1).map_or(Ok(5), |a| a.parse())?;
    let table_mb = (rows * 16) as f64 / 1e6;
    println!(
        "numbers: {rows} rows, {table_mb:.0} MB of Arrow data; median of {runs} runs"
    );
    let budget = Budget::new(16 * 1024);
    let unbounded = Budget::new(usize::MAX);
    // 2 ms for a batch of 1 MiB: a consumer of about 500 MB/s.
    let slow = Some(Duration::from_millis(2));

    println!("\n1. Time of a download, the whole table put together");
    println!(
        "{:>7}  {:>12}  {:>12}  {:>9}",
        "servers", "several (ms)", "many (ms)", "many/several"
    );
    for count in [1, 2, 4] {
        let (shards, url) = start(count, rows).map_err(|e| e.to_string())?;
        let (old, _) = measure(rows, runs, || old_client(&url)).await?;
        let channels = Channels::new(&url, Windows::default());
        let (new, _) =
            measure(rows, runs, || new_client(&url, &channels, &budget, None))
                .await?;
        drop(shards);
        println!(
            "{count:>7}  {:>12.0}  {:>12.0}  {:>11.2}",
            ms(old),
            ms(new),
            ms(new) / ms(old)
        );
    }

    println!("\n2. The client's peak heap, 2 servers, a consumer of 2 ms a batch");
    println!("{:<34}  {:>9}  {:>9}", "client", "time (ms)", "peak (MB)");
    let (shards, url) = start(2, rows).map_err(|e| e.to_string())?;
    let (time, peak) = measure(rows, runs, || old_client(&url)).await?;
    println!(
        "{:<34}  {:>9.0}  {:>9.1}",
        "several-servers (keeps the table)",
        ms(time),
        mb(peak)
    );
    let channels = Channels::new(&url, Windows::default());
    for (name, budget) in [
        ("many, budget 16 MiB", &budget),
        ("many, no budget", &unbounded),
    ] {
        let (time, peak) =
            measure(rows, runs, || new_client(&url, &channels, budget, slow))
                .await?;
        println!("{name:<34}  {:>9.0}  {:>9.1}", ms(time), mb(peak));
    }
    drop(channels);
    drop(shards);

    println!("\n3. HTTP/2 windows (stream, connection)");
    println!(
        "{:<30}  {:>15}  {:>15}",
        "windows", "4 servers (ms)", "slow, peak (MB)"
    );
    for (name, windows) in WINDOWS {
        let (shards, url) = start(4, rows).map_err(|e| e.to_string())?;
        let channels = Channels::new(&url, windows);
        let (time, _) =
            measure(rows, runs, || new_client(&url, &channels, &budget, None))
                .await?;
        let (_, peak) =
            measure(rows, 1, || new_client(&url, &channels, &budget, slow)).await?;
        drop(shards);
        println!("{name:<30}  {:>15.0}  {:>15.1}", ms(time), mb(peak));
    }
    Ok(())
}
