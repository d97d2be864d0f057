// ANCHOR: uses
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll, ready};

use arrow_array::RecordBatch;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, PollInfo,
    PutResult, SchemaResult, Ticket,
};
use arrow_schema::SchemaRef;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt, future};
use http_body::Frame;
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::{SignalKind, signal};
use tonic::body::Body;
use tonic::service::InterceptorLayer;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status, Streaming};
use tower::{Layer, Service};
// ANCHOR_END: uses

// ANCHOR: store
/// The most the store holds, all datasets together: 256 MiB of Arrow data.
pub const CAPACITY: usize = 256 * 1024 * 1024;

/// A dataset as it was uploaded: its schema and its record batches.
pub struct Dataset {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
}

/// Datasets in memory, each under the path of the descriptor it was
/// uploaded with, its key, and at most `capacity` bytes of them.
#[derive(Clone)]
pub struct KeyValueService {
    datasets: Arc<RwLock<BTreeMap<String, Arc<Dataset>>>>,
    capacity: usize,
}
// ANCHOR_END: store

// ANCHOR: key
/// The key of a descriptor: its path, segments joined by `/`.
fn key(descriptor: Option<&FlightDescriptor>) -> Result<String, Status> {
    let descriptor =
        descriptor.ok_or_else(|| Status::invalid_argument("no descriptor"))?;
    if descriptor.r#type() != DescriptorType::Path {
        return Err(Status::invalid_argument("the descriptor is not a path"));
    }
    if descriptor.path.is_empty() {
        return Err(Status::invalid_argument("the path is empty"));
    }
    for segment in &descriptor.path {
        if segment.is_empty() || segment.len() > 255 {
            return Err(Status::invalid_argument(
                "a path segment is empty or too long",
            ));
        }
        if segment.contains('/') || segment.chars().any(char::is_control) {
            let message = format!(
                "the path segment {segment:?} holds '/' or a control character"
            );
            return Err(Status::invalid_argument(message));
        }
    }
    Ok(descriptor.path.join("/"))
}

fn not_found(key: &str) -> Status {
    Status::not_found(format!("no dataset under {key:?}"))
}
// ANCHOR_END: key

// ANCHOR: put
impl KeyValueService {
    pub fn new(capacity: usize) -> Self {
        let datasets = Arc::default();
        KeyValueService { datasets, capacity }
    }

    fn get(&self, key: &str) -> Result<Arc<Dataset>, Status> {
        let datasets =
            self.datasets.read().map_err(|_| Status::internal("lock"))?;
        datasets.get(key).cloned().ok_or_else(|| not_found(key))
    }

    /// Stores `dataset` under `key`, replacing what was there, if the store
    /// has room for it.
    fn put(&self, key: String, dataset: Dataset) -> Result<(), Status> {
        let mut datasets = self
            .datasets
            .write()
            .map_err(|_| Status::internal("lock"))?;
        let others: usize = datasets
            .iter()
            .filter(|(other, _)| **other != key)
            .map(|(_, dataset)| dataset.bytes)
            .sum();
        if others + dataset.bytes > self.capacity {
            return Err(full(self.capacity, others + dataset.bytes));
        }
        datasets.insert(key, Arc::new(dataset));
        Ok(())
    }

    fn info(&self, key: &str, dataset: &Dataset) -> Result<FlightInfo, Status> {
        let path = key.split('/').map(str::to_string).collect();
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(key.to_string()));
        let info = FlightInfo::new()
            .try_with_schema(&dataset.schema)
            .map_err(|e| Status::internal(format!("the schema of {key:?}: {e}")))?
            .with_descriptor(FlightDescriptor::new_path(path))
            .with_endpoint(endpoint)
            .with_total_records(dataset.rows as i64)
            .with_total_bytes(dataset.bytes as i64);
        Ok(info)
    }
}

fn full(capacity: usize, bytes: usize) -> Status {
    let mib = |bytes: usize| bytes.div_ceil(1024 * 1024);
    let message = format!(
        "the store holds at most {} MiB, and would hold {} MiB",
        mib(capacity),
        mib(bytes)
    );
    Status::resource_exhausted(message)
}
// ANCHOR_END: put

#[tonic::async_trait]
impl FlightService for KeyValueService {
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    // ANCHOR: do_put
    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let end_of_stream = EndOfStream::of(&request)?;
        let mut messages = within_limit(request.into_inner()).peekable();
        let first = Pin::new(&mut messages).peek().await;
        let descriptor = match first {
            Some(Ok(first)) => first.flight_descriptor.clone(),
            Some(Err(status)) => return Err(status.clone()),
            None => return Err(Status::invalid_argument("the upload is empty")),
        };
        let key = key(descriptor.as_ref())?;

        let bad = |e: FlightError| match e {
            FlightError::Tonic(status) => *status,
            e => Status::invalid_argument(format!("upload to {key:?}: {e}")),
        };
        // A message without an IPC header carries only the descriptor.
        let arrow =
            messages.try_filter(|data| future::ready(!data.data_header.is_empty()));
        let mut decoded = FlightDataDecoder::new(arrow.map_err(FlightError::from));
        let (mut schema, mut batches, mut rows, mut bytes) =
            (None, Vec::new(), 0, 0);
        while let Some(message) = decoded.try_next().await.map_err(bad)? {
            match message.payload {
                DecodedPayload::Schema(received) => schema = Some(received),
                DecodedPayload::RecordBatch(batch) => {
                    rows += batch.num_rows();
                    bytes += batch.get_array_memory_size();
                    if bytes > self.capacity {
                        return Err(full(self.capacity, bytes));
                    }
                    batches.push(batch);
                }
                DecodedPayload::None => {}
            }
        }
        end_of_stream.check()?;
        let schema = schema
            .ok_or_else(|| Status::invalid_argument("the upload has no schema"))?;
        let dataset = Dataset {
            schema,
            batches,
            rows,
            bytes,
        };
        self.put(key, dataset)?;
        Ok(Response::new(stream::empty().boxed()))
    }
    // ANCHOR_END: do_put

    // ANCHOR: get_flight_info
    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let key = key(Some(request.get_ref()))?;
        let dataset = self.get(&key)?;
        Ok(Response::new(self.info(&key, &dataset)?))
    }
    // ANCHOR_END: get_flight_info

    // ANCHOR: do_get
    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket = &request.get_ref().ticket;
        let key = std::str::from_utf8(ticket)
            .map_err(|_| Status::invalid_argument("the ticket is not a key"))?;
        let dataset = self.get(key)?;
        let batches = stream::iter(dataset.batches.clone().into_iter().map(Ok));
        let flight_data = FlightDataEncoderBuilder::new()
            .with_schema(dataset.schema.clone())
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(flight_data.boxed()))
    }
    // ANCHOR_END: do_get

    // ANCHOR: list_flights
    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let datasets =
            self.datasets.read().map_err(|_| Status::internal("lock"))?;
        let infos: Vec<_> = datasets
            .iter()
            .map(|(key, dataset)| self.info(key, dataset))
            .collect();
        Ok(Response::new(stream::iter(infos).boxed()))
    }
    // ANCHOR_END: list_flights

    // ANCHOR: delete
    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        if action.r#type != "DELETE" {
            let message = format!(
                "unknown action {:?}; the one action is DELETE",
                action.r#type
            );
            return Err(Status::invalid_argument(message));
        }
        let key = std::str::from_utf8(&action.body).map_err(|_| {
            Status::invalid_argument("the body of DELETE is not a key")
        })?;
        let mut datasets = self
            .datasets
            .write()
            .map_err(|_| Status::internal("lock"))?;
        datasets.remove(key).ok_or_else(|| not_found(key))?;
        let result = arrow_flight::Result::new(format!("deleted {key:?}"));
        Ok(Response::new(stream::iter([Ok(result)]).boxed()))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let delete = ActionType {
            r#type: "DELETE".to_string(),
            description: "Delete the dataset whose key is the body".to_string(),
        };
        Ok(Response::new(stream::iter([Ok(delete)]).boxed()))
    }
    // ANCHOR_END: delete

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let key = key(Some(request.get_ref()))?;
        let dataset = self.get(&key)?;
        let schema = self.info(&key, &dataset)?.schema;
        Ok(Response::new(SchemaResult { schema }))
    }

    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("handshake is not offered"))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info is not offered"))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange is not offered"))
    }
}

// ANCHOR: copy_end_of_stream
/// Whether the client ended its request stream itself. tonic reports a
/// stream that the client cancelled midway as a stream that ended normally,
/// so a service cannot tell a cut-off upload from a complete one without it.
#[derive(Clone, Debug, Default)]
pub struct EndOfStream(Arc<AtomicBool>);

impl EndOfStream {
    /// The mark of a call, put there by [`EndOfStreamLayer`].
    pub fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        request.extensions().get().cloned().ok_or_else(|| {
            Status::internal(
                "uploads are refused: the server has no EndOfStreamLayer",
            )
        })
    }

    /// `Ok` if the client ended the stream, `Cancelled` if it broke it off.
    pub fn check(&self) -> Result<(), Status> {
        if self.0.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Status::cancelled("the upload was cut off before its end"))
        }
    }
}

/// A tower layer that gives every call an [`EndOfStream`], set when the
/// request body reaches the client's end-of-stream mark, and not when it
/// breaks off with an error.
#[derive(Clone, Copy, Debug, Default)]
pub struct EndOfStreamLayer;

impl<S> Layer<S> for EndOfStreamLayer {
    type Service = WatchEndOfStream<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WatchEndOfStream { inner }
    }
}

#[derive(Clone, Debug)]
pub struct WatchEndOfStream<S> {
    inner: S,
}

impl<S> Service<http::Request<Body>> for WatchEndOfStream<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let end = EndOfStream::default();
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(end.clone());
        let body = Body::new(WatchedBody { body, end });
        self.inner.call(http::Request::from_parts(parts, body))
    }
}

struct WatchedBody {
    body: Body,
    end: EndOfStream,
}

impl http_body::Body for WatchedBody {
    type Data = <Body as http_body::Body>::Data;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Status>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        if frame.is_none() {
            self.end.0.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }
}
// ANCHOR_END: copy_end_of_stream

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

// ANCHOR: serve
/// Serves an empty store on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let service = FlightServiceServer::new(KeyValueService::new(CAPACITY))
        .max_decoding_message_size(UPLOAD_MESSAGE_LIMIT);
    Server::builder()
        .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
        .layer(InterceptorLayer::new(limit_headers))
        .layer(EndOfStreamLayer)
        .add_service(service)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1);
    let listener =
        TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:33333")).await?;

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
// ANCHOR_END: serve
