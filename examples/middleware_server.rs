// ANCHOR: uses
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use arrow_array::{Int64Array, RecordBatch};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use arrow_schema::{ArrowError, DataType, Field, Schema};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use http::HeaderMap;
use http_body::Frame;
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::service::InterceptorLayer;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status, Streaming};
use tower::{Layer, Service};
// ANCHOR_END: uses

/// A Flight service that does some work: the action `work` takes as many
/// milliseconds as its body says, and `do_get` sends a ticket's number of
/// rows in batches of 1000.
pub struct WorkService;

fn parse_number(what: &str, bytes: &[u8]) -> Result<u64, Status> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| {
            Status::invalid_argument(format!("{what} is not a whole number"))
        })
}

fn batch(start: i64, rows: i64) -> Result<RecordBatch, ArrowError> {
    let schema = Schema::new(vec![Field::new("n", DataType::Int64, false)]);
    let values = Int64Array::from_iter_values(start..start + rows);
    RecordBatch::try_new(Arc::new(schema), vec![Arc::new(values)])
}

#[tonic::async_trait]
impl FlightService for WorkService {
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        if action.r#type != "work" {
            let message = format!(
                "unknown action {:?}; the one action is work",
                action.r#type
            );
            return Err(Status::invalid_argument(message));
        }
        let millis = parse_number("the body of work", &action.body)?.min(10_000);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        let result = arrow_flight::Result::new(format!("worked {millis} ms"));
        Ok(Response::new(stream::iter([Ok(result)]).boxed()))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let rows = parse_number("the ticket", &request.get_ref().ticket)?
            .min(10_000_000) as i64;
        let batches = (0..rows).step_by(1000).map(move |start| {
            batch(start, (rows - start).min(1000)).map_err(Into::into)
        });
        let flight_data = FlightDataEncoderBuilder::new()
            .build(stream::iter(batches))
            .map_err(Status::from);
        Ok(Response::new(flight_data.boxed()))
    }

    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
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

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("list_actions is not offered"))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The gRPC method of a request path: `DoGet` for
/// `/arrow.flight.protocol.FlightService/DoGet`.
fn method<B>(request: &http::Request<B>) -> String {
    let path = request.uri().path();
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// The gRPC status code in headers or trailers, if there is one.
fn grpc_code(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?;
    Some(Code::from_bytes(value.as_bytes()))
}

// ANCHOR: log
/// Where log lines go.
pub type Sink = Arc<dyn Fn(String) + Send + Sync>;

/// Writes a line for every call once it has ended: the method, the gRPC
/// status code, the time it took and the bytes of its response.
#[derive(Clone)]
pub struct CallLogLayer {
    sink: Sink,
}

impl CallLogLayer {
    pub fn new(sink: impl Fn(String) + Send + Sync + 'static) -> Self {
        CallLogLayer {
            sink: Arc::new(sink),
        }
    }
}

impl<S> Layer<S> for CallLogLayer {
    type Service = CallLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let sink = self.sink.clone();
        CallLog { inner, sink }
    }
}

#[derive(Clone)]
pub struct CallLog<S> {
    inner: S,
    sink: Sink,
}
// ANCHOR_END: log

// ANCHOR: log_call

impl<S, B> Service<http::Request<B>> for CallLog<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    // ANCHOR: copy_service_head
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // ANCHOR_END: copy_service_head
        let call = CallRecord {
            method: method(&request),
            started: Instant::now(),
            bytes: 0,
            sink: self.sink.clone(),
        };
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(async move {
            let response = inner.call(request).await?;
            // A call that fails at once has its status in the headers.
            if let Some(code) = grpc_code(response.headers()) {
                call.end(code);
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            let body = LoggedBody {
                body,
                call: Some(call),
            };
            Ok(http::Response::from_parts(parts, Body::new(body)))
        })
    }
}
// ANCHOR_END: log_call

// ANCHOR: log_body
struct CallRecord {
    method: String,
    started: Instant,
    bytes: usize,
    sink: Sink,
}

impl CallRecord {
    fn end(&self, code: Code) {
        let millis = self.started.elapsed().as_millis();
        let (method, bytes) = (&self.method, self.bytes);
        (self.sink)(format!("{method} {code:?} in {millis} ms, {bytes} bytes"));
    }
}

/// A response body that ends its call's record with the status in its
/// trailers, or as `Cancelled` if it is dropped before them.
struct LoggedBody {
    body: Body,
    call: Option<CallRecord>,
}

impl http_body::Body for LoggedBody {
    type Data = <Body as http_body::Body>::Data;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Status>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            if let (Some(data), Some(call)) = (frame.data_ref(), self.call.as_mut())
            {
                call.bytes += data.len();
            }
            if let Some(trailers) = frame.trailers_ref() {
                let code = grpc_code(trailers).unwrap_or(Code::Unknown);
                if let Some(call) = self.call.take() {
                    call.end(code);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.end(Code::Cancelled);
        }
    }
}
// ANCHOR_END: log_body

// ANCHOR: limit
/// Refuses a call when its method already has as many calls under way as
/// its limit allows; methods without a limit are not counted.
#[derive(Clone, Debug)]
pub struct ConcurrencyLimitLayer {
    limits: Arc<HashMap<String, (usize, Arc<Semaphore>)>>,
}

impl ConcurrencyLimitLayer {
    /// `limits`: gRPC method names (`DoGet`, `DoAction`, ...) and how many
    /// calls of each may run at once.
    pub fn new(limits: &[(&str, usize)]) -> Self {
        let limits = limits
            .iter()
            .map(|(method, limit)| {
                let calls = Arc::new(Semaphore::new(*limit));
                (method.to_string(), (*limit, calls))
            })
            .collect();
        ConcurrencyLimitLayer {
            limits: Arc::new(limits),
        }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit {
            inner,
            limits: self.limits.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    limits: Arc<HashMap<String, (usize, Arc<Semaphore>)>>,
}
// ANCHOR_END: limit

// ANCHOR: limit_call

impl<S, B> Service<http::Request<B>> for ConcurrencyLimit<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    // ANCHOR: copy_service_head
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // ANCHOR_END: copy_service_head
        let method = method(&request);
        let permit = match self.limits.get(&method) {
            None => None,
            Some((limit, calls)) => match calls.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let message = format!(
                        "too many {method} calls at once (at most {limit}); \
                         try again later"
                    );
                    let refused = Status::resource_exhausted(message).into_http();
                    return Box::pin(async move { Ok(refused) });
                }
            },
        };
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(async move {
            let response = inner.call(request).await?;
            let (parts, body) = response.into_parts();
            let body = PermitBody {
                body,
                _permit: permit,
            };
            Ok(http::Response::from_parts(parts, Body::new(body)))
        })
    }
}
// ANCHOR_END: limit_call

// ANCHOR: permit_body
/// A response body that holds its call's permit until it is done with.
struct PermitBody {
    body: Body,
    _permit: Option<OwnedSemaphorePermit>,
}

impl http_body::Body for PermitBody {
    type Data = <Body as http_body::Body>::Data;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}
// ANCHOR_END: permit_body

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

// ANCHOR: serve
/// How many calls of each method may run at once; other methods have no
/// limit.
pub const LIMITS: [(&str, usize); 2] = [("DoAction", 2), ("DoGet", 8)];

/// Serves [`WorkService`] with a log line per call, printed, and the
/// [`LIMITS`], on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
        .layer(InterceptorLayer::new(limit_headers))
        .layer(CallLogLayer::new(|line| println!("{line}")))
        .layer(ConcurrencyLimitLayer::new(&LIMITS))
        .add_service(FlightServiceServer::new(WorkService))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

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
// ANCHOR_END: serve
