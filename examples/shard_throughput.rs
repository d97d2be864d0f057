//! How much faster a client fetches a dataset spread over several servers.
//!
//! `cargo build --release --example shard_server --example shard_throughput`
//! then `target/release/examples/shard_throughput [ROWS] [RUNS]`.
//!
//! Starts the dataset `numbers` of ROWS rows (default 20 000 000, 320 MB)
//! on 1, 2 and 4 shard servers, each a process of its own, and times a
//! client that fetches every endpoint at once and puts the table back
//! together. Prints the median of RUNS runs (default 5) for each layout,
//! and its speed-up over one server.
//!
//! The client is the recipe's own: `fetch_all` of `shard_client.rs`, which
//! this program includes from beside it.

#[allow(dead_code)]
#[path = "shard_client.rs"]
mod shard_client;

use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow_flight::{FlightClient, FlightDescriptor};
use shard_client::fetch_all;
use tonic::transport::Endpoint;

// ANCHOR: copy_flight_endpoint
/// The tonic endpoint of a Flight URL, the form servers print and
/// locations use: `grpc://`, `grpc+tcp://` and `http://` are plain text,
/// `grpc+tls://` and `https://` TLS. Other schemes are refused.
pub fn flight_endpoint(url: &str) -> Result<Endpoint, String> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let http = match scheme.to_ascii_lowercase().as_str() {
        "grpc" | "grpc+tcp" | "http" => "http",
        "grpc+tls" | "https" => "https",
        "arrow-flight-reuse-connection" => {
            return Err(format!(
                "{url:?} names no server: it means the connection that gave \
                 out the endpoint"
            ));
        }
        _ => {
            return Err(format!(
                "{url:?} is not a Flight URL this client can use: use \
                 grpc://, grpc+tcp://, grpc+tls://, http:// or https://"
            ));
        }
    };
    Endpoint::from_shared(format!("{http}://{rest}"))
        .map_err(|e| format!("{url:?}: {e}"))
}
// ANCHOR_END: copy_flight_endpoint

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

async fn fetch(
    url: &str,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let channel = flight_endpoint(url)?.connect().await?;
    let mut client = FlightClient::new(channel.clone());
    let descriptor = FlightDescriptor::new_path(vec!["numbers".to_string()]);
    let info = client.get_flight_info(descriptor).await?;
    let batches = fetch_all(info.endpoint, &channel).await?;
    Ok(batches.iter().map(|batch| batch.num_rows()).sum())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rows: usize = args.first().map_or(Ok(20_000_000), |a| a.parse())?;
    let runs: usize = args.get(1).map_or(Ok(5), |a| a.parse())?;
    let megabytes = (rows * 16) as f64 / 1e6;
    println!(
        "numbers: {rows} rows, {megabytes:.0} MB of Arrow data; \
         median of {runs} runs"
    );
    println!(
        "{:>7}  {:>9}  {:>9}  {:>8}",
        "servers", "time", "MB/s", "speed-up"
    );
    let mut one = None;
    for count in [1, 2, 4] {
        let (shards, url) = start(count, rows).map_err(|e| e.to_string())?;
        fetch(&url).await?; // warm up: connections, page cache, allocator
        let mut times = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let fetched = fetch(&url).await?;
            times.push(started.elapsed());
            if fetched != rows {
                return Err(format!("fetched {fetched} rows of {rows}").into());
            }
        }
        drop(shards);
        let time = median(times);
        let base = *one.get_or_insert(time);
        println!(
            "{count:>7}  {:>7.0}ms  {:>9.0}  {:>7.2}x",
            time.as_secs_f64() * 1000.0,
            megabytes / time.as_secs_f64(),
            base.as_secs_f64() / time.as_secs_f64()
        );
    }
    Ok(())
}
