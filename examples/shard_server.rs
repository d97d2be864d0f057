// ANCHOR: uses
use std::future::Future;
use std::sync::Arc;

use arrow_array::{Float64Array, Int64Array, RecordBatch};
use arrow_flight::encode::FlightDataEncoderBuilder;
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
use tonic::service::InterceptorLayer;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};
// ANCHOR_END: uses

/// The rows of a record batch the servers send.
const BATCH_ROWS: usize = 65_536;

// ANCHOR: shard
/// Where the shards of the dataset `numbers` are: one URL per shard, in
/// order. Shard `i` of `n` holds the rows `i * rows / n` up to
/// `(i + 1) * rows / n` of `rows` in all.
#[derive(Clone, Debug)]
pub struct Layout {
    pub rows: usize,
    pub shards: Vec<String>,
}

impl Layout {
    fn range(&self, shard: usize) -> (usize, usize) {
        let n = self.shards.len();
        (shard * self.rows / n, (shard + 1) * self.rows / n)
    }
}

/// One shard of `numbers`, held in memory, and the layout of all of them.
pub struct ShardService {
    shard: usize,
    layout: Layout,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl ShardService {
    pub fn new(shard: usize, layout: Layout) -> Result<Self, ArrowError> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("value", DataType::Float64, false),
        ]));
        let (start, end) = layout.range(shard);
        let mut batches = Vec::new();
        for first in (start..end).step_by(BATCH_ROWS) {
            let ids = (first..end.min(first + BATCH_ROWS)).map(|id| id as i64);
            let values = ids.clone().map(|id| id as f64 / 2.0);
            let columns: Vec<Arc<dyn arrow_array::Array>> = vec![
                Arc::new(Int64Array::from_iter_values(ids)),
                Arc::new(Float64Array::from_iter_values(values)),
            ];
            batches.push(RecordBatch::try_new(schema.clone(), columns)?);
        }
        Ok(ShardService {
            shard,
            layout,
            schema,
            batches,
        })
    }
}
// ANCHOR_END: shard

fn numbers(descriptor: &FlightDescriptor) -> Result<(), Status> {
    match descriptor.path.as_slice() {
        [name] if name == "numbers" => Ok(()),
        _ => Err(Status::not_found("the one dataset here is [\"numbers\"]")),
    }
}

// ANCHOR: ticket
/// The shard a ticket names, and the row of the shard to start from:
/// `numbers/I` is all of shard I, `numbers/I?from=N` its rows from the N-th
/// on, for a client that resumes a download that broke.
fn ticket(ticket: &[u8]) -> Result<(usize, usize), Status> {
    let ticket = String::from_utf8_lossy(ticket);
    let bad = || Status::invalid_argument(format!("{ticket:?} is not a ticket"));
    let rest = ticket.strip_prefix("numbers/").ok_or_else(bad)?;
    let (shard, from) = match rest.split_once("?from=") {
        Some((shard, from)) => (shard, Some(from)),
        None => (rest, None),
    };
    let shard = shard.parse::<usize>().map_err(|_| bad())?;
    let from = match from {
        None => 0,
        Some(from) => from.parse::<usize>().map_err(|_| {
            Status::invalid_argument(format!(
                "from={from:?} in {ticket:?} is not a row number"
            ))
        })?,
    };
    Ok((shard, from))
}

impl ShardService {
    /// The shard's batches from its row `from` on: the first one cut.
    fn batches_from(&self, from: usize) -> Result<Vec<RecordBatch>, Status> {
        let rows: usize = self.batches.iter().map(RecordBatch::num_rows).sum();
        if from > rows {
            return Err(Status::invalid_argument(format!(
                "from={from} is past the end of shard {}, which has {rows} rows",
                self.shard
            )));
        }
        let mut skip = from;
        let mut batches = Vec::new();
        for batch in &self.batches {
            if skip >= batch.num_rows() {
                skip -= batch.num_rows();
            } else {
                batches.push(batch.slice(skip, batch.num_rows() - skip));
                skip = 0;
            }
        }
        Ok(batches)
    }
}
// ANCHOR_END: ticket

#[tonic::async_trait]
impl FlightService for ShardService {
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;

    // ANCHOR: get_flight_info
    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        numbers(request.get_ref())?;
        let mut info = FlightInfo::new()
            .try_with_schema(&self.schema)
            .map_err(|e| Status::internal(format!("the schema: {e}")))?
            .with_descriptor(request.into_inner())
            .with_total_records(self.layout.rows as i64)
            .with_ordered(true);
        for (shard, url) in self.layout.shards.iter().enumerate() {
            let endpoint = FlightEndpoint::new()
                .with_ticket(Ticket::new(format!("numbers/{shard}")))
                .with_location(url.as_str());
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
        let (shard, from) = ticket(&request.get_ref().ticket)?;
        if shard != self.shard {
            let message =
                format!("this server holds shard {}, not {shard}", self.shard);
            return Err(Status::not_found(message));
        }
        let batches = self.batches_from(from)?;
        let batches = stream::iter(batches.into_iter().map(Ok));
        let flight_data = FlightDataEncoderBuilder::new()
            .with_schema(self.schema.clone())
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(flight_data.boxed()))
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

/// Serves shard `shard` of `layout` on `listener` until `shutdown`.
pub async fn serve_shard(
    listener: TcpListener,
    shard: usize,
    layout: Layout,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let service = ShardService::new(shard, layout)?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
        .layer(InterceptorLayer::new(limit_headers))
        .add_service(FlightServiceServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

/// Both shards of a million rows in one process: shard 0 on `listener`,
/// shard 1 on another port of its host.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let host = listener.local_addr()?.ip();
    let second = TcpListener::bind((host, 0)).await?;
    let layout = Layout {
        rows: 1_000_000,
        shards: vec![
            format!("grpc://{}", listener.local_addr()?),
            format!("grpc://{}", second.local_addr()?),
        ],
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let one = tokio::spawn(serve_shard(
        second,
        1,
        layout.clone(),
        wait(stopped.clone()),
    ));
    let zero = serve_shard(listener, 0, layout, wait(stopped));
    let stopper = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let (served, ()) = tokio::join!(zero, stopper);
    served?;
    one.await??;
    Ok(())
}

// ANCHOR: main
/// `--shard I --rows R --shards URL,URL,...`: which shard this server holds
/// and where all of them are; `None` without `--shard`.
fn options(args: &[String]) -> Result<Option<(usize, Layout)>, String> {
    let usage =
        "usage: shard_server [ADDR] [--shard I --rows R --shards URL,URL,...]";
    let value = |name: &str| {
        let at = args.iter().position(|arg| arg == name);
        at.and_then(|at| args.get(at + 1))
            .ok_or_else(|| usage.to_string())
    };
    if !args.iter().any(|arg| arg == "--shard") {
        return Ok(None);
    }
    let shard = value("--shard")?.parse().map_err(|_| usage.to_string())?;
    let rows = value("--rows")?.parse().map_err(|_| usage.to_string())?;
    let shards: Vec<String> =
        value("--shards")?.split(',').map(str::to_string).collect();
    if shard >= shards.len() {
        return Err(format!(
            "--shard {shard}: there are {} shards",
            shards.len()
        ));
    }
    Ok(Some((shard, Layout { rows, shards })))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args.first().filter(|arg| !arg.starts_with("--"));
    let listener =
        TcpListener::bind(addr.map_or("127.0.0.1:8822", |a| a.as_str())).await?;
    let shard = options(&args)?;

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
    match shard {
        Some((shard, layout)) => serve_shard(listener, shard, layout, stop).await,
        None => serve(listener, stop).await,
    }
}
// ANCHOR_END: main
