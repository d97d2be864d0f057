// ANCHOR: uses
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Int64Array, RecordBatch};
use arrow_flight::decode::FlightRecordBatchStream;
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
use tonic::codec::CompressionEncoding;
use tonic::service::InterceptorLayer;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status, Streaming};
// ANCHOR_END: uses

/// The largest message either side of this server accepts: 64 MiB.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// The most rows a ticket may ask for (128 MiB of Int64 values).
const MAX_ROWS: usize = 16 * 1024 * 1024;

/// The longest nap a `sleep` action may ask for.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// A Flight service to try options on: `do_get` sends a ticket's number of
/// rows as one record batch in one message, `do_put` counts what it
/// receives, and the action `sleep` waits for the number of milliseconds in
/// its body.
pub struct OptionsService;

// ANCHOR: do_get
fn numbers(rows: usize) -> Result<RecordBatch, FlightError> {
    let schema = Schema::new(vec![Field::new("n", DataType::Int64, false)]);
    let values = Int64Array::from_iter_values(0..rows as i64);
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(values)],
    )?)
}

fn parse_number(what: &str, bytes: &[u8]) -> Result<usize, Status> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| {
            Status::invalid_argument(format!("{what} must be a whole number"))
        })
}
// ANCHOR_END: do_get

#[tonic::async_trait]
impl FlightService for OptionsService {
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;

    // ANCHOR: do_get
    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let rows =
            parse_number("the ticket (a row count)", &request.get_ref().ticket)?;
        if rows > MAX_ROWS {
            let message =
                format!("{rows} rows asked for, at most {MAX_ROWS} are sent");
            return Err(Status::invalid_argument(message));
        }
        let batches = stream::once(async move { numbers(rows) });
        let flight_data = FlightDataEncoderBuilder::new()
            .with_max_flight_data_size(usize::MAX)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(flight_data.boxed()))
    }
    // ANCHOR_END: do_get

    // ANCHOR: do_put
    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let encoding = match request.metadata().get("grpc-encoding") {
            Some(value) => value.to_str().unwrap_or("unknown").to_string(),
            None => "identity".to_string(),
        };
        let flight_data =
            within_limit(request.into_inner()).map_err(FlightError::from);
        let mut batches =
            FlightRecordBatchStream::new_from_flight_data(flight_data);
        let (mut rows, mut count) = (0, 0);
        while let Some(batch) = batches.try_next().await? {
            rows += batch.num_rows();
            count += 1;
        }
        let summary =
            format!("{rows} rows in {count} batches, encoding {encoding}");
        let result = PutResult {
            app_metadata: summary.into(),
        };
        Ok(Response::new(stream::iter([Ok(result)]).boxed()))
    }
    // ANCHOR_END: do_put

    // ANCHOR: sleep
    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        if action.r#type != "sleep" {
            let message =
                format!("unknown action {:?}, try \"sleep\"", action.r#type);
            return Err(Status::invalid_argument(message));
        }
        let millis =
            parse_number("the body of sleep (milliseconds)", &action.body)?;
        let nap = Duration::from_millis(millis as u64);
        if nap > MAX_SLEEP {
            return Err(Status::invalid_argument("sleep is at most 60000 ms"));
        }
        tokio::time::sleep(nap).await;
        let result = arrow_flight::Result {
            body: format!("slept {millis} ms").into(),
        };
        Ok(Response::new(stream::iter([Ok(result)]).boxed()))
    }
    // ANCHOR_END: sleep

    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
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
/// Serves [`OptionsService`] on `listener` with raised message limits, gzip,
/// a time limit per call and HTTP/2 keep-alive, until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let service = FlightServiceServer::new(OptionsService)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
        .layer(InterceptorLayer::new(limit_headers))
        .timeout(Duration::from_secs(120))
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1);
    let listener =
        TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8817")).await?;

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
