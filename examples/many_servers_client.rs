// ANCHOR: uses
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::{Array, Int64Array, RecordBatch};
use arrow_flight::error::FlightError;
use arrow_flight::{FlightClient, FlightDescriptor, FlightEndpoint, Ticket};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
// ANCHOR_END: uses

pub type Error = Box<dyn std::error::Error + Send + Sync>;

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

// ANCHOR: windows
/// The HTTP/2 flow-control windows the client offers: how many bytes a
/// server may send on one stream, and on one connection, that the client
/// has not read yet. `None` leaves hyper's default (2 MiB and 5 MiB).
#[derive(Clone, Copy, Debug)]
pub struct Windows {
    pub stream: Option<u32>,
    pub connection: Option<u32>,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            stream: Some(4 * 1024 * 1024),
            connection: Some(16 * 1024 * 1024),
        }
    }
}

// ANCHOR_END: windows

// ANCHOR: channels
/// One channel per server, made the first time a URL names it and used for
/// every later call to it; `origin` is the server that gave out the
/// `FlightInfo`.
#[derive(Clone)]
pub struct Channels {
    origin: String,
    windows: Windows,
    servers: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Channels {
    pub fn new(origin: &str, windows: Windows) -> Channels {
        let servers = Arc::default();
        let origin = origin.to_string();
        Channels {
            origin,
            windows,
            servers,
        }
    }

    /// The channel of the server at `url`. It connects on its first call,
    /// and again on the call after its connection breaks.
    pub fn get(&self, url: &str) -> Result<Channel, Error> {
        let mut servers = self.servers.lock().map_err(|_| "a poisoned lock")?;
        if let Some(channel) = servers.get(url) {
            return Ok(channel.clone());
        }
        let channel = flight_endpoint(url)?
            .initial_stream_window_size(self.windows.stream)
            .initial_connection_window_size(self.windows.connection)
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        servers.insert(url.to_string(), channel.clone());
        Ok(channel)
    }

    /// The channel of an endpoint's first location, or of the origin for
    /// an endpoint without one or with `arrow-flight-reuse-connection://?`.
    pub fn for_endpoint(
        &self,
        endpoint: &FlightEndpoint,
    ) -> Result<Channel, Error> {
        match endpoint.location.first() {
            Some(location) if !location.uri.starts_with(REUSE_CONNECTION) => {
                self.get(&location.uri)
            }
            _ => self.get(&self.origin),
        }
    }

    /// How many channels there are: one per server called.
    pub fn count(&self) -> usize {
        self.servers.lock().map_or(0, |servers| servers.len())
    }
}

/// The location that means "the connection this endpoint came from".
pub const REUSE_CONNECTION: &str = "arrow-flight-reuse-connection:";
// ANCHOR_END: channels

// ANCHOR: budget
/// A bound on the bytes of the batches received and not yet consumed, by
/// all the streams that share it: a permit is a KiB.
#[derive(Clone)]
pub struct Budget {
    permits: Arc<Semaphore>,
    kib: usize,
}

impl Budget {
    pub fn new(kib: usize) -> Budget {
        let kib = kib.clamp(1, Semaphore::MAX_PERMITS);
        Budget {
            permits: Arc::new(Semaphore::new(kib)),
            kib,
        }
    }

    /// Waits until `batch` fits, and takes its size out of the budget
    /// until the permit is dropped. A batch larger than the whole budget
    /// waits for all of it.
    async fn take(
        &self,
        batch: &RecordBatch,
    ) -> Result<OwnedSemaphorePermit, Status> {
        let mut bytes = 0;
        for column in batch.columns() {
            let size = column.to_data().get_slice_memory_size();
            bytes += size.map_err(|e| Status::internal(e.to_string()))?;
        }
        let kib = bytes.div_ceil(1024).clamp(1, self.kib);
        let kib = u32::try_from(kib).unwrap_or(u32::MAX);
        let permits = Arc::clone(&self.permits).acquire_many_owned(kib);
        permits
            .await
            .map_err(|_| Status::internal("the budget is closed"))
    }

    /// The KiB held now by batches not yet consumed.
    pub fn held(&self) -> usize {
        self.kib - self.permits.available_permits()
    }
}

/// A batch of a download and its place: the endpoint it is from and the row
/// of that endpoint's rows it starts at. Its bytes count against the budget
/// until it is dropped.
pub struct Part {
    pub endpoint: usize,
    pub first_row: usize,
    pub batch: RecordBatch,
    _permit: OwnedSemaphorePermit,
}
// ANCHOR_END: budget

// ANCHOR: retry
/// When to try again: after waits that double from `first` up to `max`,
/// each a random share of that (jitter), until `deadline` has passed since
/// the download started.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub first: Duration,
    pub max: Duration,
    pub deadline: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            first: Duration::from_millis(50),
            max: Duration::from_secs(2),
            deadline: Duration::from_secs(60),
        }
    }
}

/// The key by which a server says how long to wait before trying again, in
/// milliseconds; a negative value says not to (gRPC's name for it).
pub const PUSHBACK: &str = "grpc-retry-pushback-ms";

impl Retry {
    /// How long to wait after attempt number `attempt` (from 0) failed
    /// with `status`, or `None` when trying again cannot help.
    pub fn wait(&self, status: &Status, attempt: u32) -> Option<Duration> {
        let pushback = match status.metadata().get(PUSHBACK) {
            None => None,
            Some(value) => match value.to_str().map(str::parse::<u64>) {
                Ok(Ok(ms)) => Some(Duration::from_millis(ms)),
                _ => return None,
            },
        };
        match status.code() {
            Code::Unavailable => {}
            Code::ResourceExhausted if pushback.is_some() => {}
            _ => return None,
        }
        let doubled = self.first.saturating_mul(1 << attempt.min(20));
        let jitter = doubled.min(self.max).mul_f64(rand::random_range(0.0..=1.0));
        Some(jitter.max(pushback.unwrap_or_default()))
    }
}
// ANCHOR_END: retry

// ANCHOR: resume
/// The ticket for an endpoint's rows from `from` on: these servers read
/// `?from=N` after a ticket.
pub fn resume(ticket: &Ticket, from: usize) -> Ticket {
    if from == 0 {
        return ticket.clone();
    }
    let ticket = String::from_utf8_lossy(&ticket.ticket);
    Ticket::new(format!("{ticket}?from={from}"))
}

/// The status of a failed call. tonic reports a connection that broke in
/// the middle of a call as `Unknown`, with the transport's error as its
/// source (a status that a server sent has none); gRPC names that
/// `Unavailable`.
fn status(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => {
            let broke = std::error::Error::source(&*status).is_some();
            if status.code() == Code::Unknown && broke {
                return Status::unavailable(status.message());
            }
            *status
        }
        other => Status::internal(other.to_string()),
    }
}
// ANCHOR_END: resume

// ANCHOR: fetch
/// One endpoint, as one task of a download sees it.
struct Fetch {
    index: usize,
    endpoint: FlightEndpoint,
    parts: mpsc::UnboundedSender<Part>,
    budget: Budget,
    retries: Arc<AtomicUsize>,
}

impl Fetch {
    /// Sends the endpoint's batches to `parts`, each once it fits in the
    /// budget. After a failure that a retry can help, waits and asks for
    /// the rows from the first one not yet received.
    async fn run(
        self,
        channels: Channels,
        retry: Retry,
        deadline: Instant,
    ) -> Result<(), Error> {
        let ticket = self
            .endpoint
            .ticket
            .clone()
            .ok_or("an endpoint without a ticket")?;
        let mut client = FlightClient::new(channels.for_endpoint(&self.endpoint)?);
        let (mut rows, mut attempt) = (0, 0);
        loop {
            let before = rows;
            let Err(status) = self
                .receive(&mut client, resume(&ticket, rows), &mut rows)
                .await
            else {
                return Ok(());
            };
            if rows > before {
                attempt = 0;
            }
            let wait = retry.wait(&status, attempt);
            let Some(wait) = wait.filter(|wait| Instant::now() + *wait < deadline)
            else {
                let (code, message) = (status.code(), status.message());
                return Err(format!(
                    "endpoint {}: {code:?}: {message}",
                    self.index
                )
                .into());
            };
            self.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
    // ANCHOR_END: fetch

    // ANCHOR: receive
    async fn receive(
        &self,
        client: &mut FlightClient,
        ticket: Ticket,
        rows: &mut usize,
    ) -> Result<(), Status> {
        let mut batches = client.do_get(ticket).await.map_err(status)?;
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(status)?;
            let _permit = self.budget.take(&batch).await?;
            let (endpoint, first_row) = (self.index, *rows);
            *rows += batch.num_rows();
            let part = Part {
                endpoint,
                first_row,
                batch,
                _permit,
            };
            if self.parts.send(part).is_err() {
                break; // the download was dropped
            }
        }
        Ok(())
    }
    // ANCHOR_END: receive
}

// ANCHOR: download
/// All endpoints of a `FlightInfo` downloaded at once, within one budget
/// and one deadline.
pub struct Download {
    parts: mpsc::UnboundedReceiver<Part>,
    tasks: JoinSet<Result<(), Error>>,
    retries: Arc<AtomicUsize>,
}

impl Download {
    pub fn start(
        endpoints: Vec<FlightEndpoint>,
        channels: &Channels,
        budget: &Budget,
        retry: Retry,
    ) -> Download {
        let deadline = Instant::now() + retry.deadline;
        let (sender, parts) = mpsc::unbounded_channel();
        let retries = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        for (index, endpoint) in endpoints.into_iter().enumerate() {
            let fetch = Fetch {
                index,
                endpoint,
                parts: sender.clone(),
                budget: budget.clone(),
                retries: Arc::clone(&retries),
            };
            let run = fetch.run(channels.clone(), retry, deadline);
            tasks.spawn(async move {
                let late =
                    format!("endpoint {index}: not done in {:?}", retry.deadline);
                tokio::time::timeout_at(deadline, run)
                    .await
                    .map_err(|_| late)?
            });
        }
        Download {
            parts,
            tasks,
            retries,
        }
    }

    // ANCHOR_END: download

    // ANCHOR: next
    /// The next batch to arrive, from any endpoint; `None` once all are
    /// done, an error as soon as one fails for good.
    pub async fn next(&mut self) -> Option<Result<Part, Error>> {
        loop {
            tokio::select! {
                biased;
                Some(part) = self.parts.recv() => return Some(Ok(part)),
                Some(done) = self.tasks.join_next() => match done {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return Some(Err(error)),
                    Err(error) => return Some(Err(error.into())),
                },
                else => return None,
            }
        }
    }

    /// How many times an endpoint was asked again.
    pub fn retries(&self) -> usize {
        self.retries.load(Ordering::Relaxed)
    }
    // ANCHOR_END: next
}

/// The `id` column of a batch of `numbers`.
fn ids(batch: &RecordBatch) -> Result<&Int64Array, Error> {
    let ids = batch.column(0).as_any().downcast_ref::<Int64Array>();
    Ok(ids.ok_or("id is not an Int64 column")?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // ANCHOR: main
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://localhost:8822".to_string());
    let channels = Channels::new(&url, Windows::default());
    let mut client = FlightClient::new(channels.get(&url)?);
    let descriptor = FlightDescriptor::new_path(vec!["numbers".to_string()]);
    let info = client.get_flight_info(descriptor).await?;
    let endpoints = info.endpoint.clone();

    let budget = Budget::new(16 * 1024);
    let mut download =
        Download::start(info.endpoint, &channels, &budget, Retry::default());
    // Per endpoint: rows received, and the first and last id.
    let mut seen = vec![(0, None, None); endpoints.len()];
    while let Some(part) = download.next().await {
        let part = part?;
        let (rows, first, last) = &mut seen[part.endpoint];
        if part.first_row != *rows {
            return Err(format!("a gap before row {}", part.first_row).into());
        }
        *rows += part.batch.num_rows();
        let ids = ids(&part.batch)?;
        first.get_or_insert(ids.value(0));
        *last = Some(ids.value(ids.len() - 1));
    }
    for (endpoint, (rows, first, last)) in seen.iter().enumerate() {
        let (first, last) = (first.unwrap_or(-1), last.unwrap_or(-1));
        println!("endpoint {endpoint}: {rows} rows, ids {first} to {last}");
    }
    println!(
        "{} channels, {} retries, {} KiB held at the end",
        channels.count(),
        download.retries(),
        budget.held()
    );
    // ANCHOR_END: main

    // ANCHOR: tickets
    let second = &endpoints[1];
    let ticket = second
        .ticket
        .clone()
        .ok_or("an endpoint without a ticket")?;
    let mut shard = FlightClient::new(channels.for_endpoint(second)?);
    for from in [499_990, 500_000, 600_000] {
        let ticket = resume(&ticket, from);
        let name = String::from_utf8_lossy(&ticket.ticket).into_owned();
        match shard.do_get(ticket).await.map_err(status) {
            Ok(stream) => {
                let batches: Vec<RecordBatch> = stream.try_collect().await?;
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                match batches.first() {
                    Some(batch) => {
                        let id = ids(batch)?.value(0);
                        println!("{name}: {rows} rows, from id {id}");
                    }
                    None => println!("{name}: {rows} rows"),
                }
            }
            Err(status) => {
                let (code, message) = (status.code(), status.message());
                println!("{name}: {code:?}: {message}");
            }
        }
    }
    // ANCHOR_END: tickets
    Ok(())
}
