// ANCHOR: uses
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_flight::decode::{
    DecodedFlightData, DecodedPayload, FlightDataDecoder, FlightRecordBatchStream,
};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use arrow_schema::{DataType, Field, Schema};
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::{SignalKind, signal};
use tonic::service::InterceptorLayer;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status, Streaming};
// ANCHOR_END: uses

/// The column whose running total `do_exchange` adds.
pub const VALUE: &str = "value";

/// The column `do_exchange` adds.
pub const RUNNING_TOTAL: &str = "running_total";

/// A Flight service that adds a running total to batches as they stream
/// through `do_exchange`, keeps what `do_put` uploads (acknowledging each
/// batch), and sends it back from `do_get` with each batch's place.
#[derive(Clone, Default)]
pub struct ExchangeService {
    datasets: Arc<Mutex<HashMap<String, Vec<RecordBatch>>>>,
}

// ANCHOR: running_total
/// The state of one exchange: the total so far. It lives in the exchange's
/// stream, and goes with it when the call ends for any reason, a client that
/// goes away included.
#[derive(Default)]
struct RunningTotal {
    total: i64,
}

impl RunningTotal {
    fn add(&mut self, batch: RecordBatch) -> Result<RecordBatch, Status> {
        let values = int64_column(&batch, VALUE)?;
        let mut totals = Vec::with_capacity(values.len());
        for value in values {
            self.total =
                self.total.checked_add(value.unwrap_or(0)).ok_or_else(|| {
                    Status::invalid_argument("the running total overflows Int64")
                })?;
            totals.push(self.total);
        }
        let mut fields = batch.schema().fields().to_vec();
        fields.push(Arc::new(Field::new(RUNNING_TOTAL, DataType::Int64, false)));
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(Int64Array::from(totals)) as ArrayRef);
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

fn int64_column<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a Int64Array, Status> {
    let Some(column) = batch.column_by_name(name) else {
        let schema = batch.schema();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name()).collect();
        let message = format!(
            "a batch needs an Int64 column {name:?}; this one has {names:?}"
        );
        return Err(Status::invalid_argument(message));
    };
    column.as_any().downcast_ref::<Int64Array>().ok_or_else(|| {
        let message =
            format!("column {name:?} is {}, not Int64", column.data_type());
        Status::invalid_argument(message)
    })
}
// ANCHOR_END: running_total

// ANCHOR: ipc_messages
/// The messages of `input` that hold Arrow IPC data. A message may also carry
/// only a descriptor or only app_metadata, with no IPC header: pyarrow opens
/// an exchange with one. arrow-flight's decoder takes every message for IPC
/// and fails on those.
fn ipc_messages(
    input: Streaming<FlightData>,
) -> impl Stream<Item = Result<FlightData, FlightError>> {
    within_limit(input)
        .map_err(FlightError::from)
        .try_filter(|data| futures::future::ready(!data.data_header.is_empty()))
}

/// What the client sent could not be read as Arrow data.
fn unreadable(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => Status::invalid_argument(format!(
            "not a stream of Arrow record batches: {other}"
        )),
    }
}
// ANCHOR_END: ipc_messages

// ANCHOR: upload
/// The state of one upload: the dataset's name, once its first message has
/// said it, and how many batches came.
#[derive(Default)]
struct Upload {
    name: Option<String>,
    count: usize,
}

impl Upload {
    fn receive(
        &mut self,
        datasets: &Mutex<Datasets>,
        data: DecodedFlightData,
    ) -> Result<Option<PutResult>, Status> {
        let batch = match data.payload {
            DecodedPayload::Schema(_) if self.name.is_none() => {
                let name = dataset_name(data.inner.flight_descriptor)?;
                lock(datasets)?.insert(name.clone(), Vec::new());
                self.name = Some(name);
                return Ok(None);
            }
            DecodedPayload::Schema(_) => {
                let message = "the upload changed its schema midway";
                return Err(Status::invalid_argument(message));
            }
            DecodedPayload::RecordBatch(batch) => batch,
            DecodedPayload::None => return Ok(None),
        };
        self.count += 1;
        let label = match data.inner.app_metadata.is_empty() {
            true => format!("#{}", self.count),
            false => String::from_utf8_lossy(&data.inner.app_metadata).into_owned(),
        };
        let rows = batch.num_rows();
        if let Some(name) = &self.name {
            lock(datasets)?.entry(name.clone()).or_default().push(batch);
        }
        let ack = format!("stored {label}, rows: {rows}");
        Ok(Some(PutResult {
            app_metadata: ack.into(),
        }))
    }
}

fn dataset_name(descriptor: Option<FlightDescriptor>) -> Result<String, Status> {
    match descriptor.map(|d| d.path).as_deref() {
        Some([name]) if !name.is_empty() => Ok(name.clone()),
        _ => Err(Status::invalid_argument(
            "the upload needs a descriptor whose path is one name",
        )),
    }
}
// ANCHOR_END: upload

// ANCHOR: metadata
// ANCHOR: copy_encode_with_metadata
/// Encodes `batches` as Flight data, each batch with its own app_metadata.
/// Every batch gets an encoder of its own, whose first message, the schema,
/// is sent only once; the batch's messages (more than one if the encoder
/// splits it) all carry its metadata.
pub fn encode_with_metadata(
    descriptor: Option<FlightDescriptor>,
    batches: impl Stream<Item = (RecordBatch, Vec<u8>)>,
) -> impl Stream<Item = Result<FlightData, FlightError>> {
    let mut descriptor = descriptor;
    batches.enumerate().flat_map(move |(i, (batch, metadata))| {
        FlightDataEncoderBuilder::new()
            .with_flight_descriptor(descriptor.take())
            .build(stream::iter([Ok(batch)]))
            .enumerate()
            .skip(usize::from(i > 0))
            .map(move |(j, data)| match j {
                0 => data,
                _ => Ok(data?.with_app_metadata(metadata.clone())),
            })
    })
}
// ANCHOR_END: copy_encode_with_metadata
// ANCHOR_END: metadata

#[tonic::async_trait]
impl FlightService for ExchangeService {
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;

    // ANCHOR: do_exchange
    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let input = ipc_messages(request.into_inner());
        let mut state = RunningTotal::default();
        let output = FlightRecordBatchStream::new_from_flight_data(input)
            .map_err(unreadable)
            .and_then(move |batch| futures::future::ready(state.add(batch)))
            .map_err(FlightError::from);
        let data = FlightDataEncoderBuilder::new()
            .build(output)
            .map_err(Status::from);
        Ok(Response::new(data.boxed()))
    }
    // ANCHOR_END: do_exchange

    // ANCHOR: do_put
    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let input = FlightDataDecoder::new(ipc_messages(request.into_inner()));
        let datasets = Arc::clone(&self.datasets);
        let mut upload = Upload::default();
        let acks = input.map_err(unreadable).try_filter_map(move |data| {
            futures::future::ready(upload.receive(&datasets, data))
        });
        Ok(Response::new(acks.boxed()))
    }
    // ANCHOR_END: do_put

    // ANCHOR: do_get
    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let name = String::from_utf8_lossy(&request.get_ref().ticket).into_owned();
        let Some(batches) = lock(&self.datasets)?.get(&name).cloned() else {
            return Err(Status::not_found(format!("no dataset named {name:?}")));
        };
        let count = batches.len();
        let labelled = batches.into_iter().enumerate().map(move |(i, batch)| {
            let progress = format!("batch {} of {count}", i + 1);
            (batch, progress.into_bytes())
        });
        let data = encode_with_metadata(None, stream::iter(labelled))
            .map_err(Status::from);
        Ok(Response::new(data.boxed()))
    }
    // ANCHOR_END: do_get

    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
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

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("get_flight_info is not offered"))
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

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented("do_action is not offered"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("list_actions is not offered"))
    }
}

type Datasets = HashMap<String, Vec<RecordBatch>>;

fn lock(
    datasets: &Mutex<Datasets>,
) -> Result<std::sync::MutexGuard<'_, Datasets>, Status> {
    datasets
        .lock()
        .map_err(|_| Status::internal("the dataset store is unusable"))
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

// ANCHOR: copy_upload_limit
/// The most one message of an upload may bring, as it comes and once its
/// buffers are decompressed: 64 MiB. Larger messages are refused.
pub const UPLOAD_MESSAGE_LIMIT: usize = 64 * 1024 * 1024;

/// The messages of an upload, each refused with `ResourceExhausted` if it
/// is over [`UPLOAD_MESSAGE_LIMIT`], before arrow-flight decodes it. The
/// service must be built with `max_decoding_message_size` of that limit.
pub fn within_limit(
    messages: impl Stream<Item = Result<FlightData, Status>> + Send + Unpin + 'static,
) -> impl Stream<Item = Result<FlightData, Status>> + Send + Unpin + 'static {
    messages.map(|message| {
        let message = message.map_err(too_large)?;
        let size = decompressed_size(&message);
        if size > UPLOAD_MESSAGE_LIMIT {
            return Err(Status::resource_exhausted(format!(
                "a compressed message of the upload would take {size} bytes \
                 once decompressed; the limit is {UPLOAD_MESSAGE_LIMIT} bytes \
                 (64 MiB): send smaller record batches"
            )));
        }
        Ok(message)
    })
}

/// tonic refuses a message over `max_decoding_message_size` with
/// `OutOfRange`; the client is told the limit, as `ResourceExhausted`.
fn too_large(status: Status) -> Status {
    let message = status.message();
    if status.code() == Code::OutOfRange && message.contains("length too large") {
        return Status::resource_exhausted(format!(
            "a message of the upload is larger than the limit of \
             {UPLOAD_MESSAGE_LIMIT} bytes (64 MiB): send smaller record batches"
        ));
    }
    status
}

/// The bytes that the buffers of a compressed record batch or dictionary
/// take once decompressed, as the 8 bytes before each buffer say. Messages
/// that are not compressed, or not valid, count 0: the decoder checks them.
fn decompressed_size(data: &FlightData) -> usize {
    let Ok(message) = arrow_ipc::root_as_message(&data.data_header) else {
        return 0;
    };
    let batch = message
        .header_as_record_batch()
        .or_else(|| message.header_as_dictionary_batch().and_then(|d| d.data()));
    let Some(batch) = batch.filter(|batch| batch.compression().is_some()) else {
        return 0;
    };
    let mut size = 0usize;
    for buffer in batch.buffers().iter().flatten() {
        let start = usize::try_from(buffer.offset()).unwrap_or(usize::MAX);
        let prefix = data.data_body.get(start..start.saturating_add(8));
        if let Some(prefix) = prefix.and_then(|p| <[u8; 8]>::try_from(p).ok()) {
            let length = i64::from_le_bytes(prefix);
            size = size.saturating_add(usize::try_from(length).unwrap_or(0));
        }
    }
    size
}
// ANCHOR_END: copy_upload_limit

/// Serves a new [`ExchangeService`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
        .layer(InterceptorLayer::new(limit_headers))
        .add_service(
            FlightServiceServer::new(ExchangeService::default())
                .max_decoding_message_size(UPLOAD_MESSAGE_LIMIT),
        )
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

// ANCHOR: main
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1);
    let listener =
        TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8820")).await?;

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
