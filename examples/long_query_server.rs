// ANCHOR: uses
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arrow_array::{Int64Array, RecordBatch};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult,
    CancelStatus, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint,
    FlightInfo, HandshakeRequest, HandshakeResponse, PollInfo, PutResult,
    RenewFlightEndpointRequest, SchemaResult, Ticket,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use prost_types::Timestamp;
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tonic::service::InterceptorLayer;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};
// ANCHOR_END: uses

// ANCHOR: timing
/// How long the server takes to compute one part of a result.
pub const PART_TIME: Duration = Duration::from_millis(500);
/// How long a poll descriptor and an endpoint stay valid, unless renewed.
pub const TTL: Duration = Duration::from_secs(2);
/// The rows of one part; `count to 1000` has four parts.
pub const PART_ROWS: i64 = 250;
/// The largest query: `count to 100000`, 400 parts.
pub const MAX_ROWS: i64 = 100_000;

/// How fast the server works and how long what it hands out stays valid.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub part_time: Duration,
    pub ttl: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        let (part_time, ttl) = (PART_TIME, TTL);
        Timing { part_time, ttl }
    }
}
// ANCHOR_END: timing

// ANCHOR: state
/// A part of a result, once computed. `expires` is `None` for a part that
/// may be read only once (its batch is dropped by the read).
struct Part {
    batch: Option<RecordBatch>,
    expires: Option<SystemTime>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Running,
    Done,
    Cancelled,
    /// Nobody polled it before its poll descriptor expired.
    Abandoned,
    Failed,
}

struct Query {
    rows: i64,
    total_parts: usize,
    parts: Vec<Part>,
    state: State,
    /// Whether its endpoints are read once (it came through GetFlightInfo).
    read_once: bool,
    poll_expires: SystemTime,
    /// Ticks whenever a part is added or the state changes.
    changed: watch::Sender<()>,
    work: Option<AbortHandle>,
}

impl Query {
    fn progress(&self) -> String {
        let (done, total) = (self.parts.len(), self.total_parts);
        format!("{done} of {total} parts")
    }

    fn stop(&mut self, state: State) {
        self.state = state;
        if let Some(work) = self.work.take() {
            work.abort();
        }
        for part in &mut self.parts {
            part.batch = None;
        }
        self.changed.send_replace(());
    }

    /// The latest time anything of this query is still valid.
    fn last_valid(&self) -> SystemTime {
        let parts = self.parts.iter().filter_map(|part| part.expires);
        parts.fold(self.poll_expires, SystemTime::max)
    }
}

type Queries = Arc<Mutex<BTreeMap<u64, Query>>>;

/// Queries that take time, computed a part at a time in the background.
#[derive(Clone)]
pub struct LongQueryService {
    queries: Queries,
    next_id: Arc<AtomicU64>,
    timing: Timing,
}
// ANCHOR_END: state

// ANCHOR: names
/// What a descriptor asks for: a new query, or the state of a running one.
enum Command {
    Start { rows: i64 },
    Poll { id: u64, seen: usize },
}

fn command(descriptor: &FlightDescriptor) -> Result<Command, Status> {
    if descriptor.r#type() != DescriptorType::Cmd {
        return Err(Status::invalid_argument("the descriptor is not a command"));
    }
    let text = std::str::from_utf8(&descriptor.cmd)
        .map_err(|_| Status::invalid_argument("the command is not UTF-8"))?;
    let words: Vec<&str> = text.split(' ').collect();
    let number = |word: &str| word.parse::<u64>().ok();
    let poll = |id: &str, seen: &str| match (number(id), number(seen)) {
        (Some(id), Some(seen)) => Ok(Command::Poll {
            id,
            seen: seen as usize,
        }),
        _ => Err(unknown_command(text)),
    };
    match words[..] {
        ["count", "to", n] => match number(n) {
            Some(rows @ 1..) if rows <= MAX_ROWS as u64 => {
                Ok(Command::Start { rows: rows as i64 })
            }
            _ => Err(Status::invalid_argument(format!(
                "count to {n:?}: N is a number from 1 to {MAX_ROWS}"
            ))),
        },
        ["query", id] => poll(id, "0"),
        ["query", id, "seen", seen] => poll(id, seen),
        _ => Err(unknown_command(text)),
    }
}

fn unknown_command(text: &str) -> Status {
    let text: String = text.chars().take(64).collect();
    Status::invalid_argument(format!(
        "unknown command {text:?}: a query is \"count to N\"; \
         a running query is polled with the descriptor its PollInfo names"
    ))
}

fn query_descriptor(id: u64) -> FlightDescriptor {
    FlightDescriptor::new_cmd(format!("query {id}"))
}
// ANCHOR_END: names

// ANCHOR: tickets

fn ticket(id: u64, part: usize) -> Ticket {
    Ticket::new(format!("{id}/{}", part + 1))
}

/// The query and part a ticket names (parts count from 1 in tickets).
fn parse_ticket(ticket: &Ticket) -> Result<(u64, usize), Status> {
    let bad = || Status::invalid_argument("the ticket is not one of this server's");
    let text = std::str::from_utf8(&ticket.ticket).map_err(|_| bad())?;
    let (id, part) = text.split_once('/').ok_or_else(bad)?;
    let id = id.parse().map_err(|_| bad())?;
    let part: usize = part.parse().map_err(|_| bad())?;
    Ok((id, part.checked_sub(1).ok_or_else(bad)?))
}

fn no_query(id: u64) -> Status {
    Status::not_found(format!("no query {id}"))
}

fn lock(
    queries: &Queries,
) -> Result<std::sync::MutexGuard<'_, BTreeMap<u64, Query>>, Status> {
    queries.lock().map_err(|_| Status::internal("lock"))
}
// ANCHOR_END: tickets

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]))
}

// ANCHOR: work
/// Computes the parts of query `id` one after another, each taking
/// `part_time`, and stops when the query is cancelled or abandoned.
async fn work(queries: Queries, id: u64, rows: i64, timing: Timing) {
    let mut part = 0;
    loop {
        tokio::time::sleep(timing.part_time).await;
        let first = part as i64 * PART_ROWS + 1;
        let last = (first + PART_ROWS - 1).min(rows);
        let column = Int64Array::from_iter_values(first..=last);
        let batch = RecordBatch::try_new(schema(), vec![Arc::new(column)]);
        let Ok(mut queries) = queries.lock() else {
            return;
        };
        let Some(query) = queries.get_mut(&id) else {
            return;
        };
        if query.state != State::Running {
            return;
        }
        let now = SystemTime::now();
        if now > query.poll_expires {
            query.stop(State::Abandoned);
            return;
        }
        let Ok(batch) = batch else {
            query.stop(State::Failed);
            return;
        };
        let expires = (!query.read_once).then(|| now + timing.ttl);
        query.parts.push(Part {
            batch: Some(batch),
            expires,
        });
        part += 1;
        if part == query.total_parts {
            query.state = State::Done;
            query.work = None;
        }
        query.changed.send_replace(());
        if query.state == State::Done {
            return;
        }
    }
}
// ANCHOR_END: work

impl LongQueryService {
    pub fn new(timing: Timing) -> Self {
        let (queries, next_id) = (Arc::default(), Arc::new(AtomicU64::new(1)));
        LongQueryService {
            queries,
            next_id,
            timing,
        }
    }

    // ANCHOR: start
    /// Starts a query in the background and returns its id at once.
    fn start(&self, rows: i64, read_once: bool) -> Result<u64, Status> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now();
        let mut queries = lock(&self.queries)?;
        // Forget the queries of which nothing is valid any more.
        queries.retain(|_, query| {
            query.state == State::Running
                || query.last_valid() + self.timing.ttl > now
        });
        let total_parts = (rows + PART_ROWS - 1) / PART_ROWS;
        let work = tokio::spawn(work(self.queries.clone(), id, rows, self.timing));
        let query = Query {
            rows,
            total_parts: total_parts as usize,
            parts: Vec::new(),
            state: State::Running,
            read_once,
            poll_expires: now + self.timing.ttl,
            changed: watch::Sender::new(()),
            work: Some(work.abort_handle()),
        };
        queries.insert(id, query);
        Ok(id)
    }
    // ANCHOR_END: start

    // ANCHOR: wait
    /// Waits until query `id` has more than `seen` parts or has ended, but
    /// no longer than `longest`. It counts as a poll: the query's poll
    /// descriptor is valid for `ttl` from now.
    async fn wait(
        &self,
        id: u64,
        seen: usize,
        longest: Duration,
    ) -> Result<(), Status> {
        let mut changed = {
            let mut queries = lock(&self.queries)?;
            let query = queries.get_mut(&id).ok_or_else(|| no_query(id))?;
            let now = SystemTime::now();
            if query.state == State::Running && now > query.poll_expires {
                query.stop(State::Abandoned);
            }
            query.poll_expires = now + self.timing.ttl;
            query.changed.subscribe()
        };
        let deadline = tokio::time::Instant::now() + longest;
        loop {
            {
                let queries = lock(&self.queries)?;
                let query = queries.get(&id).ok_or_else(|| no_query(id))?;
                if query.state != State::Running || query.parts.len() > seen {
                    return Ok(());
                }
            }
            let next = tokio::time::timeout_at(deadline, changed.changed());
            if next.await.is_err() {
                return Ok(());
            }
        }
    }
    // ANCHOR_END: wait

    // ANCHOR: info
    /// Everything of query `id` that is ready, as a FlightInfo.
    fn info(&self, id: u64, query: &Query) -> Result<FlightInfo, Status> {
        match query.state {
            State::Cancelled => {
                return Err(Status::cancelled(format!(
                    "query {id} was cancelled after {}",
                    query.progress()
                )));
            }
            State::Abandoned => {
                return Err(Status::failed_precondition(format!(
                    "query {id} was abandoned after {}: its poll descriptor \
                     expired; start the query again",
                    query.progress()
                )));
            }
            State::Failed => {
                let message =
                    format!("query {id} failed after {}", query.progress());
                return Err(Status::internal(message));
            }
            State::Running | State::Done => {}
        }
        let endpoints = query.parts.iter().enumerate().map(|(i, part)| {
            let endpoint = FlightEndpoint::new().with_ticket(ticket(id, i));
            match part.expires {
                Some(expires) => endpoint.with_expiration_time(expires.into()),
                None => endpoint,
            }
        });
        let info = FlightInfo::new()
            .try_with_schema(&schema())
            .map_err(|e| Status::internal(format!("the schema: {e}")))?
            .with_descriptor(query_descriptor(id))
            .with_endpoints(endpoints.collect())
            .with_total_records(query.rows);
        Ok(info)
    }
    // ANCHOR_END: info
}

#[tonic::async_trait]
impl FlightService for LongQueryService {
    // ANCHOR: copy_stream_types
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    // ANCHOR_END: copy_stream_types

    // ANCHOR: poll_flight_info
    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        let (id, seen) = match command(request.get_ref())? {
            Command::Start { rows } => (self.start(rows, false)?, None),
            Command::Poll { id, seen } => (id, Some(seen)),
        };
        if let Some(seen) = seen {
            self.wait(id, seen, self.timing.ttl / 2).await?;
        }
        let mut queries = lock(&self.queries)?;
        let query = queries.get_mut(&id).ok_or_else(|| no_query(id))?;
        let info = self.info(id, query)?;
        let expires = SystemTime::now() + self.timing.ttl;
        query.poll_expires = expires;
        let progress = query.parts.len() as f64 / query.total_parts as f64;
        let mut poll = PollInfo::new()
            .with_info(info)
            .try_with_progress(progress)
            .map_err(|e| Status::internal(format!("progress: {e}")))?
            .with_expiration_time(expires.into());
        if query.state == State::Running {
            let next = format!("query {id} seen {}", query.parts.len());
            poll = poll.with_descriptor(FlightDescriptor::new_cmd(next));
        }
        Ok(Response::new(poll))
    }
    // ANCHOR_END: poll_flight_info

    // ANCHOR: get_flight_info
    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let Command::Start { rows } = command(request.get_ref())? else {
            return Err(Status::invalid_argument(
                "GetFlightInfo takes a new query; poll a running one",
            ));
        };
        let id = self.start(rows, true)?;
        loop {
            self.wait(id, usize::MAX, self.timing.ttl / 2).await?;
            let queries = lock(&self.queries)?;
            let query = queries.get(&id).ok_or_else(|| no_query(id))?;
            if query.state != State::Running {
                return Ok(Response::new(self.info(id, query)?));
            }
        }
    }
    // ANCHOR_END: get_flight_info

    // ANCHOR: do_get
    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let (id, index) = parse_ticket(request.get_ref())?;
        let mut queries = lock(&self.queries)?;
        let query = queries.get_mut(&id).ok_or_else(|| no_query(id))?;
        self.info(id, query)?;
        let number = index + 1;
        let part = query.parts.get_mut(index).ok_or_else(|| {
            Status::not_found(format!("query {id} has no part {number} (yet)"))
        })?;
        let batch = match part.expires {
            Some(expires) if SystemTime::now() > expires => {
                part.batch = None;
                return Err(Status::failed_precondition(format!(
                    "part {number} of query {id} has expired; renew an \
                     endpoint before its expiration_time"
                )));
            }
            Some(_) => part.batch.clone(),
            None => part.batch.take(),
        };
        let batch = batch.ok_or_else(|| {
            Status::failed_precondition(format!(
                "part {number} of query {id} was read already: an endpoint \
                 without an expiration_time is read once"
            ))
        })?;
        let flight_data = FlightDataEncoderBuilder::new()
            .with_schema(schema())
            .build(stream::iter([Ok(batch)]))
            .map_err(Status::from);
        Ok(Response::new(flight_data.boxed()))
    }
    // ANCHOR_END: do_get

    // ANCHOR: do_action
    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        let body = match action.r#type.as_str() {
            "CancelFlightInfo" => self.cancel(&action.body)?.encode_to_vec(),
            "RenewFlightEndpoint" => self.renew(&action.body)?.encode_to_vec(),
            other => {
                let other: String = other.chars().take(64).collect();
                return Err(Status::invalid_argument(format!(
                    "unknown action {other:?}; the actions are \
                     CancelFlightInfo and RenewFlightEndpoint"
                )));
            }
        };
        let result = arrow_flight::Result::new(body);
        Ok(Response::new(stream::iter([Ok(result)]).boxed()))
    }
    // ANCHOR_END: do_action

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let actions = [
            ("CancelFlightInfo", "Stop a query and drop its results"),
            ("RenewFlightEndpoint", "Keep an endpoint valid for longer"),
        ]
        .map(|(name, description)| {
            Ok(ActionType {
                r#type: name.to_string(),
                description: description.to_string(),
            })
        });
        Ok(Response::new(stream::iter(actions).boxed()))
    }

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

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange is not offered"))
    }
}

impl LongQueryService {
    // ANCHOR: cancel
    /// Stops the query that `body`, a `CancelFlightInfoRequest`, names.
    fn cancel(&self, body: &[u8]) -> Result<CancelFlightInfoResult, Status> {
        let request = CancelFlightInfoRequest::decode(body).map_err(|_| {
            Status::invalid_argument("the body is not a CancelFlightInfoRequest")
        })?;
        let descriptor = request.info.and_then(|info| info.flight_descriptor);
        let descriptor = descriptor.ok_or_else(|| {
            Status::invalid_argument("the FlightInfo to cancel has no descriptor")
        })?;
        let Command::Poll { id, .. } = command(&descriptor)? else {
            return Err(Status::invalid_argument("that FlightInfo is no query's"));
        };
        let mut queries = lock(&self.queries)?;
        let query = queries.get_mut(&id).ok_or_else(|| no_query(id))?;
        let status = match query.state {
            State::Running => {
                query.stop(State::Cancelled);
                CancelStatus::Cancelled
            }
            State::Cancelled | State::Abandoned | State::Failed => {
                CancelStatus::Cancelled
            }
            State::Done => CancelStatus::NotCancellable,
        };
        Ok(CancelFlightInfoResult::new(status))
    }
    // ANCHOR_END: cancel

    // ANCHOR: renew
    /// Extends the endpoint that `body`, a `RenewFlightEndpointRequest`,
    /// names by [`TTL`] from now, unless it has expired.
    fn renew(&self, body: &[u8]) -> Result<FlightEndpoint, Status> {
        let request = RenewFlightEndpointRequest::decode(body).map_err(|_| {
            Status::invalid_argument("the body is not a RenewFlightEndpointRequest")
        })?;
        let endpoint = request.endpoint.ok_or_else(|| {
            Status::invalid_argument("the request names no endpoint")
        })?;
        let ticket = endpoint.ticket.as_ref().ok_or_else(|| {
            Status::invalid_argument("the endpoint has no ticket")
        })?;
        let (id, index) = parse_ticket(ticket)?;
        let mut queries = lock(&self.queries)?;
        let query = queries.get_mut(&id).ok_or_else(|| no_query(id))?;
        self.info(id, query)?;
        let number = index + 1;
        let part = query.parts.get_mut(index).ok_or_else(|| {
            Status::not_found(format!("query {id} has no part {number} (yet)"))
        })?;
        let now = SystemTime::now();
        match part.expires {
            None => Err(Status::failed_precondition(format!(
                "part {number} of query {id} is read once and does not expire"
            ))),
            Some(expires) if now > expires || part.batch.is_none() => {
                Err(Status::failed_precondition(format!(
                    "part {number} of query {id} has expired and cannot be renewed"
                )))
            }
            Some(expires) => {
                let renewed = expires.max(now + self.timing.ttl);
                part.expires = Some(renewed);
                let renewed: Timestamp = renewed.into();
                Ok(FlightEndpoint::new()
                    .with_ticket(ticket.clone())
                    .with_expiration_time(renewed))
            }
        }
    }
    // ANCHOR_END: renew
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

// ANCHOR: arguments
/// `[ADDR] [--part-time SECONDS] [--ttl SECONDS]`
fn arguments() -> Result<(String, Timing), Box<dyn std::error::Error>> {
    let (mut addr, mut timing) = ("127.0.0.1:8826".to_string(), Timing::default());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut seconds = || {
            let value = args.next().unwrap_or_default();
            let seconds = value.parse().ok();
            let duration =
                seconds.and_then(|s| Duration::try_from_secs_f64(s).ok());
            duration.ok_or(format!("{arg} {value:?}: not a number of seconds"))
        };
        match arg.as_str() {
            "--part-time" => timing.part_time = seconds()?,
            "--ttl" => timing.ttl = seconds()?,
            _ => addr = arg,
        }
    }
    Ok((addr, timing))
}
// ANCHOR_END: arguments

// ANCHOR: serve
/// Serves queries on `listener` until `shutdown` completes, with the
/// timing of [`PART_TIME`] and [`TTL`].
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_with(listener, shutdown, Timing::default()).await
}

pub async fn serve_with(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    timing: Timing,
) -> Result<(), tonic::transport::Error> {
    let service = FlightServiceServer::new(LongQueryService::new(timing));
    Server::builder()
        .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
        .layer(InterceptorLayer::new(limit_headers))
        .add_service(service)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (addr, timing) = arguments()?;
    let listener = TcpListener::bind(addr).await?;

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
    serve_with(listener, stop, timing).await?;
    Ok(())
}
// ANCHOR_END: serve
