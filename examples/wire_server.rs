// ANCHOR: uses
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use arrow_ipc::CompressionType;
use arrow_ipc::writer::IpcWriteOptions;
use arrow_schema::SchemaRef;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::{SignalKind, signal};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status, Streaming};
// ANCHOR_END: uses

/// Datasets by name: a schema and record batches each.
type Datasets = HashMap<String, (SchemaRef, Vec<RecordBatch>)>;

/// Datasets kept in memory under the name of their upload's descriptor.
#[derive(Clone, Default)]
pub struct WireService {
    datasets: Arc<Mutex<Datasets>>,
}

// ANCHOR: download_options
/// How a download is sent, from its ticket: `NAME [COMPRESSION] [DICTIONARIES]`,
/// with `none`, `lz4` or `zstd`, and `resend` or `hydrate`; for example
/// `animals zstd resend`. Without them: no compression, dictionaries hydrated.
fn download_options(
    ticket: &str,
) -> Result<(String, IpcWriteOptions, DictionaryHandling), Status> {
    let mut words = ticket.split_whitespace();
    let name = words.next().unwrap_or_default().to_string();
    let (mut compression, mut dictionaries) = (None, DictionaryHandling::Hydrate);
    for word in words {
        match word {
            "none" => compression = None,
            "lz4" => compression = Some(CompressionType::LZ4_FRAME),
            "zstd" => compression = Some(CompressionType::ZSTD),
            "resend" => dictionaries = DictionaryHandling::Resend,
            "hydrate" => dictionaries = DictionaryHandling::Hydrate,
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown download option {other:?}: none, lz4, zstd, \
                     resend or hydrate"
                )));
            }
        }
    }
    let options = IpcWriteOptions::default()
        .try_with_compression(compression)
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok((name, options, dictionaries))
}
// ANCHOR_END: download_options

#[tonic::async_trait]
impl FlightService for WireService {
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;

    // ANCHOR: do_put
    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let messages = within_limit(request.into_inner());
        let mut messages = messages.map_err(FlightError::from).peekable();
        let first = std::pin::Pin::new(&mut messages).peek().await;
        let descriptor = first.and_then(|m| m.as_ref().ok());
        let name = match descriptor.and_then(|m| m.flight_descriptor.as_ref()) {
            Some(descriptor) if descriptor.path.len() == 1 => {
                descriptor.path[0].clone()
            }
            _ => {
                return Err(Status::invalid_argument(
                    "name the dataset: a path of one element",
                ));
            }
        };
        let mut batches = FlightRecordBatchStream::new_from_flight_data(messages);
        let mut table = Vec::new();
        while let Some(batch) = batches.try_next().await.map_err(unreadable)? {
            table.push(batch);
        }
        let schema = batches.schema().cloned();
        let schema = schema.ok_or_else(|| Status::invalid_argument("no schema"))?;
        let datasets = self.datasets.lock();
        let mut datasets = datasets.map_err(|_| Status::internal("lock"))?;
        datasets.insert(name, (schema, table));
        Ok(Response::new(stream::empty().boxed()))
    }
    // ANCHOR_END: do_put

    // ANCHOR: do_get
    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket = String::from_utf8_lossy(&request.get_ref().ticket);
        let (name, options, dictionaries) = download_options(&ticket)?;
        let datasets = self.datasets.lock();
        let datasets = datasets.map_err(|_| Status::internal("lock"))?;
        let Some((schema, table)) = datasets.get(&name).cloned() else {
            return Err(Status::not_found(format!("no dataset {name:?}")));
        };
        let flight_data = FlightDataEncoderBuilder::new()
            .with_options(options)
            .with_dictionary_handling(dictionaries)
            .with_schema(schema)
            .build(stream::iter(table.into_iter().map(Ok)))
            .map_err(Status::from);
        Ok(Response::new(flight_data.boxed()))
    }
    // ANCHOR_END: do_get

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

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange is not offered"))
    }
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

// ANCHOR: limit
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
// ANCHOR_END: limit

// ANCHOR: serve
/// Serves a new [`WireService`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let service = FlightServiceServer::new(WireService::default())
        .max_decoding_message_size(UPLOAD_MESSAGE_LIMIT)
        .max_encoding_message_size(UPLOAD_MESSAGE_LIMIT);
    Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}
// ANCHOR_END: serve

// ANCHOR: main
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1);
    let listener =
        TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8821")).await?;

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
