// ANCHOR: uses
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow_array::{Int64Array, RecordBatch};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, PollInfo,
    PutResult, SchemaResult, Ticket,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::{SignalKind, signal};
use tonic::metadata::MetadataMap;
use tonic::service::InterceptorLayer;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status, Streaming};
// ANCHOR_END: uses

/// The parts of `numbers` and `sample`, their rows, and the rows of a batch.
const PARTS: i64 = 3;
const PART_ROWS: i64 = 1000;
const BATCH_ROWS: i64 = 250;
/// What a download of `slow` would make, and what each batch costs.
const SLOW_BATCHES: usize = 100_000;
const SLOW_WORK: Duration = Duration::from_millis(2);

/// Where the server's log lines go: stdout in `serve`.
pub type Log = Arc<dyn Fn(String) + Send + Sync>;

/// Three datasets of one Int64 column `id`: `numbers`, in three parts whose
/// order is the rows' order; `sample`, the same rows with no order promised;
/// and `slow`, a download that costs the server work for every batch.
pub struct MetadataService {
    schema: SchemaRef,
    log: Log,
}

impl MetadataService {
    pub fn new(log: Log) -> Self {
        let id = Field::new("id", DataType::Int64, false);
        MetadataService {
            schema: Arc::new(Schema::new(vec![id])),
            log,
        }
    }
}

/// The rows `first` to `first + rows - 1`.
fn batch(
    schema: &SchemaRef,
    first: i64,
    rows: i64,
) -> Result<RecordBatch, ArrowError> {
    let ids = Int64Array::from_iter_values(first..first + rows);
    RecordBatch::try_new(schema.clone(), vec![Arc::new(ids)])
}

/// `text` in quotes, cut after 64 characters, for an error message.
fn quoted(text: &str) -> String {
    let short: String = text.chars().take(64).collect();
    if short.len() < text.len() {
        format!("{short:?}...")
    } else {
        format!("{text:?}")
    }
}

// ANCHOR: dataset
#[derive(Clone, Copy, PartialEq)]
enum Dataset {
    Numbers,
    Sample,
    Slow,
}

fn dataset(descriptor: &FlightDescriptor) -> Result<Dataset, Status> {
    if descriptor.r#type() != DescriptorType::Path {
        let message = "this server takes path descriptors, not commands";
        return Err(Status::invalid_argument(message));
    }
    match descriptor.path.as_slice() {
        [name] if name == "numbers" => Ok(Dataset::Numbers),
        [name] if name == "sample" => Ok(Dataset::Sample),
        [name] if name == "slow" => Ok(Dataset::Slow),
        path => Err(Status::not_found(format!(
            "no dataset {}; there are [\"numbers\"], [\"sample\"] and [\"slow\"]",
            quoted(&path.join("/"))
        ))),
    }
}
// ANCHOR_END: dataset

// ANCHOR: deadline
/// When the call must be over, from its `grpc-timeout` header: digits and
/// a unit, `H`, `M`, `S`, `m` (milliseconds), `u` or `n`.
fn deadline(metadata: &MetadataMap) -> Result<Option<(Instant, Duration)>, Status> {
    let Some(value) = metadata.get("grpc-timeout") else {
        return Ok(None);
    };
    let bad = || {
        let message = "the grpc-timeout header is not a timeout such as \"500m\"";
        Status::invalid_argument(message)
    };
    let text = value.to_str().map_err(|_| bad())?;
    let unit_at = text.len().checked_sub(1).ok_or_else(bad)?;
    let (digits, unit) = text.split_at(unit_at);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let amount: u64 = digits.parse().map_err(|_| bad())?;
    let timeout = match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return Err(bad()),
    };
    Ok(Instant::now().checked_add(timeout).map(|at| (at, timeout)))
}
// ANCHOR_END: deadline

// ANCHOR: download
/// One download of `slow`: how far it got, and why it ended. Dropping it,
/// which tonic does when the call is over for whatever reason, logs it.
struct Download {
    made: usize,
    started: Instant,
    end: End,
    log: Log,
}

#[derive(Clone, Copy, PartialEq)]
enum End {
    ClientGone,
    Finished,
    DeadlinePassed,
}

impl Drop for Download {
    fn drop(&mut self) {
        let end = match self.end {
            End::ClientGone => "the client went away",
            End::Finished => "finished",
            End::DeadlinePassed => "the deadline passed",
        };
        (self.log)(format!(
            "slow: {} of {SLOW_BATCHES} batches made in {} ms, then {end}",
            self.made,
            self.started.elapsed().as_millis(),
        ));
    }
}
// ANCHOR_END: download

// ANCHOR: slow
/// `slow`, a batch at a time, each after [`SLOW_WORK`]: nothing is made
/// before the client asks for it, and nothing once the call is over.
fn slow(
    schema: SchemaRef,
    log: Log,
    deadline: Option<(Instant, Duration)>,
) -> BoxStream<'static, Result<FlightData, Status>> {
    let download = Download {
        made: 0,
        started: Instant::now(),
        end: End::ClientGone,
        log,
    };
    let rows = schema.clone();
    let batches = stream::unfold(download, move |mut download| {
        let schema = rows.clone();
        async move {
            if download.end == End::DeadlinePassed {
                return None;
            }
            if download.made == SLOW_BATCHES {
                download.end = End::Finished;
                drop(download);
                return None;
            }
            let passed = deadline.filter(|(at, _)| Instant::now() >= *at);
            if let Some((_, timeout)) = passed {
                download.end = End::DeadlinePassed;
                let status = Status::deadline_exceeded(format!(
                    "the deadline of {} ms passed after {} batches",
                    timeout.as_millis(),
                    download.made
                ));
                return Some((Err(FlightError::from(status)), download));
            }
            tokio::time::sleep(SLOW_WORK).await;
            let first = download.made as i64 * BATCH_ROWS;
            download.made += 1;
            let batch =
                batch(&schema, first, BATCH_ROWS).map_err(FlightError::from);
            Some((batch, download))
        }
    });
    FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(Status::from)
        .boxed()
}
// ANCHOR_END: slow

#[tonic::async_trait]
impl FlightService for MetadataService {
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;

    // ANCHOR: get_flight_info
    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let dataset = dataset(request.get_ref())?;
        let info = FlightInfo::new()
            .try_with_schema(&self.schema)
            .map_err(|e| Status::internal(format!("the schema: {e}")))?
            .with_descriptor(request.into_inner());
        if dataset == Dataset::Slow {
            let endpoint = FlightEndpoint::new()
                .with_ticket(Ticket::new("slow"))
                .with_app_metadata(format!(
                    "work_per_batch_ms={}",
                    SLOW_WORK.as_millis()
                ));
            let info = info
                .with_total_records(SLOW_BATCHES as i64 * BATCH_ROWS)
                .with_endpoint(endpoint);
            return Ok(Response::new(info));
        }
        let (name, ordered) = match dataset {
            Dataset::Numbers => ("numbers", true),
            _ => ("sample", false),
        };
        let sorted_by = if ordered { "id" } else { "nothing" };
        let mut info = info
            .with_total_records(PARTS * PART_ROWS)
            .with_ordered(ordered)
            .with_app_metadata(format!("snapshot=42;sorted_by={sorted_by}"));
        for part in 0..PARTS {
            let first = part * PART_ROWS;
            let last = first + PART_ROWS - 1;
            let endpoint = FlightEndpoint::new()
                .with_ticket(Ticket::new(format!("{name}/{part}")))
                .with_app_metadata(format!("min_id={first};max_id={last}"));
            info = info.with_endpoint(endpoint);
        }
        Ok(Response::new(info))
    }
    // ANCHOR_END: get_flight_info

    // ANCHOR: do_get
    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let deadline = deadline(request.metadata())?;
        let ticket =
            std::str::from_utf8(&request.get_ref().ticket).map_err(|_| {
                Status::invalid_argument("a ticket is text such as \"numbers/0\"")
            })?;
        if ticket == "slow" {
            let log = self.log.clone();
            return Ok(Response::new(slow(self.schema.clone(), log, deadline)));
        }
        let not_a_ticket = || {
            let message =
                format!("{} is not a ticket of this server", quoted(ticket));
            Status::invalid_argument(message)
        };
        let (name, part) = ticket.split_once('/').ok_or_else(not_a_ticket)?;
        if name != "numbers" && name != "sample" {
            return Err(not_a_ticket());
        }
        let part: i64 = part.parse().map_err(|_| not_a_ticket())?;
        if !(0..PARTS).contains(&part) {
            let message =
                format!("{name} has parts 0 to {}, not {part}", PARTS - 1);
            return Err(Status::not_found(message));
        }
        let mut response = Response::new(self.part(part));
        let planned = tonic::metadata::MetadataValue::from(PART_ROWS);
        response.metadata_mut().insert("x-rows-planned", planned);
        Ok(response)
    }
    // ANCHOR_END: do_get

    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("handshake is not offered"))
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("list_flights is not offered"))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info is not offered"))
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("get_schema is not offered"))
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented("do_put is not offered"))
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented("do_action is not offered"))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange is not offered"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("list_actions is not offered"))
    }
}

impl MetadataService {
    // ANCHOR: part
    /// A part of `numbers` (or `sample`), and then, in the trailers, the rows
    /// sent and the time it took.
    fn part(&self, part: i64) -> BoxStream<'static, Result<FlightData, Status>> {
        let started = Instant::now();
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let first = part * PART_ROWS;
        let batches: Vec<_> = (0..PART_ROWS)
            .step_by(BATCH_ROWS as usize)
            .map(|offset| batch(&self.schema, first + offset, BATCH_ROWS))
            .collect();
        let batches = stream::iter(batches).map(move |batch| {
            let batch = batch?;
            counter.fetch_add(batch.num_rows(), Ordering::Relaxed);
            Ok(batch)
        });
        let data = FlightDataEncoderBuilder::new()
            .with_schema(self.schema.clone())
            .build(batches)
            .map_err(Status::from);
        // An Ok status at the end of the stream: tonic sends its metadata as
        // the trailers, next to `grpc-status: 0`.
        let trailers = stream::once(async move {
            let mut trailers = MetadataMap::new();
            let rows = sent.load(Ordering::Relaxed) as u64;
            trailers.insert("x-rows-sent", rows.into());
            let micros = started.elapsed().as_micros() as u64;
            trailers.insert("x-server-micros", micros.into());
            Err(Status::with_metadata(Code::Ok, "", trailers))
        });
        data.chain(trailers).boxed()
    }
    // ANCHOR_END: part
}

// ANCHOR: copy_header_limit
/// The most a call's headers may take, counted as HTTP/2 counts them: each
/// header's name and value, and 32 bytes.
pub const MAX_HEADER_LIST_SIZE: usize = 16 * 1024;

/// The header list HTTP/2 decodes and passes on to `limit_headers`. Up to
/// four times as much, h2 answers HTTP 431 itself; beyond that, or sent in
/// more than 81 frames, it closes the connection.
pub const HTTP2_MAX_HEADER_LIST_SIZE: u32 = 1024 * 1024;

/// Refuses a call whose headers take more than `MAX_HEADER_LIST_SIZE`, with
/// `ResourceExhausted` as gRPC C++ servers do: the call fails alone, and the
/// other calls on its connection go on.
pub fn limit_headers(request: Request<()>) -> Result<Request<()>, Status> {
    let headers = request.metadata().as_ref().iter();
    let size: usize = headers
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    if size > MAX_HEADER_LIST_SIZE {
        return Err(Status::resource_exhausted(format!(
            "the call's headers take {size} bytes, the limit is \
             {MAX_HEADER_LIST_SIZE} bytes"
        )));
    }
    Ok(request)
}
// ANCHOR_END: copy_header_limit

// ANCHOR: main
/// Serves the three datasets, with a log line on stdout for every download
/// of `slow`, on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let log: Log = Arc::new(|line| println!("{line}"));
    let service = MetadataService::new(log);
    Server::builder()
        .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
        .layer(InterceptorLayer::new(limit_headers))
        .add_service(FlightServiceServer::new(service))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1);
    let listener =
        TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8824")).await?;

    // ANCHOR: copy_stop_on_signal
    #[cfg(unix)]
    let mut interrupt = signal(SignalKind::interrupt())?;
    #[cfg(unix)]
    let mut terminate = signal(SignalKind::terminate())?;
    let stop = async move {
        #[cfg(unix)]
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    // ANCHOR_END: copy_stop_on_signal
    println!("Serving on grpc://{}", listener.local_addr()?);
    serve(listener, stop).await?;
    Ok(())
}
// ANCHOR_END: main
