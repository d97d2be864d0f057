// ANCHOR: uses
use std::collections::HashMap;
use std::error::Error;
use std::future::Future;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_cast::pretty::pretty_format_batches;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt, future};
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::{SignalKind, signal};
use tonic::service::InterceptorLayer;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status, Streaming};
// ANCHOR_END: uses

// ANCHOR: service
/// Keeps every upload under its descriptor's path, prints what arrived,
/// and answers the action `whoami` with the caller's certificate name.
#[derive(Default)]
pub struct TlsFlightService {
    uploads: Arc<Mutex<HashMap<Vec<String>, Vec<RecordBatch>>>>,
}

/// The name a client goes by: the common name of its certificate, if it
/// sent one.
fn caller<T>(request: &Request<T>) -> String {
    let certificates = request.peer_certs();
    let first = certificates.as_ref().and_then(|chain| chain.first());
    match first.and_then(|certificate| common_name(certificate)) {
        Some(name) => name,
        None => "anonymous".to_string(),
    }
}

#[tonic::async_trait]
impl FlightService for TlsFlightService {
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let who = caller(&request);
        let mut messages = within_limit(request.into_inner());
        let first = messages.next().await.transpose()?;
        let first =
            first.ok_or_else(|| Status::invalid_argument("the upload is empty"))?;
        let path = first.flight_descriptor.clone().map(|d| d.path);
        let path = path.ok_or_else(|| {
            Status::invalid_argument("the upload has no descriptor")
        })?;
        let messages = stream::once(future::ready(Ok(first))).chain(messages);
        let mut batches = FlightRecordBatchStream::new_from_flight_data(
            messages.map_err(FlightError::from),
        );
        let mut received = Vec::new();
        while let Some(batch) = batches.try_next().await? {
            received.push(batch);
        }
        let table = pretty_format_batches(&received).map_err(FlightError::from)?;
        println!("{path:?} from {who}:\n{table}");
        let mut uploads =
            self.uploads.lock().map_err(|_| Status::internal("lock"))?;
        uploads.insert(path, received);
        Ok(Response::new(stream::empty().boxed()))
    }
    // ANCHOR_END: service

    // ANCHOR: whoami
    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let who = caller(&request);
        let action = request.into_inner();
        if action.r#type != "whoami" {
            let message = format!(
                "unknown action {:?}; the one action is whoami",
                action.r#type
            );
            return Err(Status::invalid_argument(message));
        }
        let result = arrow_flight::Result::new(who);
        Ok(Response::new(stream::iter([Ok(result)]).boxed()))
    }
    // ANCHOR_END: whoami

    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
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

    async fn do_get(
        &self,
        _request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        Err(Status::unimplemented("do_get is not offered"))
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

// ANCHOR: common_name
/// One DER element: its tag, its contents and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81..=0x84 => {
            let (bytes, rest) = rest.split_at_checked(usize::from(first & 0x7f))?;
            let length = bytes.iter().fold(0, |n, b| n << 8 | usize::from(*b));
            (length, rest)
        }
        _ => return None,
    };
    let (contents, rest) = rest.split_at_checked(length)?;
    Some((tag, contents, rest))
}

/// The common name (OID 2.5.4.3) of a DER certificate's subject.
pub fn common_name(certificate: &[u8]) -> Option<String> {
    let (_, certificate, _) = element(certificate)?;
    let (_, mut fields, _) = element(certificate)?;
    // version (optional, [0]), serial number, signature, issuer, validity,
    // subject
    let mut field = element(fields)?;
    if field.0 == 0xa0 {
        fields = field.2;
        field = element(fields)?;
    }
    for _ in 0..4 {
        field = element(field.2)?;
    }
    let mut names = field.1;
    while let Some((_, set, rest)) = element(names) {
        let (_, attribute, _) = element(set)?;
        let (_, oid, value) = element(attribute)?;
        if oid == [0x55, 0x04, 0x03] {
            let (_, text, _) = element(value)?;
            return String::from_utf8(text.to_vec()).ok();
        }
        names = rest;
    }
    None
}
// ANCHOR_END: common_name

// ANCHOR: serve
/// The TLS settings of a server: its certificate chain and key, and, for
/// mutual TLS, the authority whose client certificates it requires.
pub fn tls_config(
    cert: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
) -> ServerTlsConfig {
    let config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    match client_ca {
        Some(ca) => config.client_ca_root(Certificate::from_pem(ca)),
        None => config,
    }
}
// ANCHOR_END: serve

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

// ANCHOR: serve_tls
/// Serves [`TlsFlightService`] over TLS on `listener` until `shutdown`.
pub async fn serve_tls(
    listener: TcpListener,
    tls: ServerTlsConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
        .layer(InterceptorLayer::new(limit_headers))
        .tls_config(tls)?
        .add_service(
            FlightServiceServer::new(TlsFlightService::default())
                .max_decoding_message_size(UPLOAD_MESSAGE_LIMIT),
        )
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

/// The certificate and key of step 1, which `serve` uses.
const CERT_FILE: &str = "certs/server.pem";
const KEY_FILE: &str = "certs/server.key";

/// Serves over TLS with `certs/server.pem` and `certs/server.key` of the
/// current folder.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Box<dyn Error + Send + Sync>> {
    let tls = tls_config(&read(CERT_FILE)?, &read(KEY_FILE)?, None);
    serve_tls(listener, tls, shutdown).await?;
    Ok(())
}

/// The bytes of the file `path`; an error names the file.
fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}
// ANCHOR_END: serve_tls

// ANCHOR: main
/// `[ADDR] [--tls CERTFILE KEYFILE] [--client-ca CAFILE]`
type Options = (String, Option<[String; 2]>, Option<String>);

fn options(args: &[String]) -> Result<Options, String> {
    let usage =
        "usage: tls_server [ADDR] [--tls CERTFILE KEYFILE] [--client-ca CAFILE]";
    let after = |flag: &str, n: usize| {
        let at = args.iter().position(|arg| arg == flag)?;
        Some(
            args.get(at + 1..at + 1 + n)
                .ok_or_else(|| usage.to_string()),
        )
    };
    let addr = match args.first() {
        Some(first) if !first.starts_with("--") => first.clone(),
        _ => "127.0.0.1:5005".to_string(),
    };
    let tls = after("--tls", 2).transpose()?;
    let client_ca = after("--client-ca", 1).transpose()?;
    let tls = tls.map(|files| [files[0].clone(), files[1].clone()]);
    Ok((addr, tls, client_ca.map(|ca| ca[0].clone())))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, files, client_ca) = options(&args)?;
    // Without options, `serve` reads the files of step 1.
    let tls = if files.is_none() && client_ca.is_none() {
        None
    } else {
        let [cert, key] = files.unwrap_or([CERT_FILE.into(), KEY_FILE.into()]);
        let client_ca = client_ca.as_deref().map(read).transpose()?;
        Some(tls_config(
            &read(&cert)?,
            &read(&key)?,
            client_ca.as_deref(),
        ))
    };
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
    println!("Serving on grpc+tls://{}", listener.local_addr()?);
    match tls {
        Some(tls) => serve_tls(listener, tls, stop).await?,
        None => serve(listener, stop).await?,
    }
    Ok(())
}
// ANCHOR_END: main
