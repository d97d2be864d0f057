// ANCHOR: uses
use std::collections::HashSet;
use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, ready};

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightClient, FlightData,
    FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse, PollInfo,
    PutResult, SchemaResult, Ticket,
};

use futures::TryStreamExt;
use futures::stream::{self, BoxStream};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body::Frame;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    FutureExt, SpanId, SpanKind, Status as SpanStatus, TraceContextExt, Tracer,
    TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    SdkTracer, SdkTracerProvider, SpanData, SpanExporter,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::body::Body;
use tonic::service::InterceptorLayer;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request, Response, Status, Streaming};
use tower::{Layer, Service};
// ANCHOR_END: uses

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

// ANCHOR: headers
/// Lets an OpenTelemetry propagator write its headers into a call's headers.
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Lets an OpenTelemetry propagator read its headers from a call's headers.
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}
// ANCHOR_END: headers

// ANCHOR: outcome
/// The Flight method a gRPC path names: `DoAction` for
/// `/arrow.flight.protocol.FlightService/DoAction`.
pub fn method_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// Records a call's gRPC status on the span of `cx`, and ends the span.
pub fn finish_span(cx: &Context, status: &Status) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("rpc.grpc.status_code", status.code() as i64));
    if status.code() == Code::Ok {
        span.set_status(SpanStatus::Ok);
    } else {
        span.set_status(SpanStatus::error(format!(
            "{:?}: {}",
            status.code(),
            status.message()
        )));
    }
    span.end();
}
// ANCHOR_END: outcome

// ANCHOR: traced_body
/// A response body that ends the call's span when the response ends: with
/// the `grpc-status` of its trailers, or as an error if the body fails or is
/// dropped before its end.
pub struct TracedBody {
    body: Body,
    cx: Option<Context>,
}

impl TracedBody {
    /// Wraps a response's body; a response that already carries its
    /// `grpc-status` in its headers (a trailers-only response) ends the span
    /// at once.
    pub fn wrap(
        response: http::Response<Body>,
        cx: Context,
    ) -> http::Response<Body> {
        let (parts, body) = response.into_parts();
        let cx = match Status::from_header_map(&parts.headers) {
            Some(status) => {
                finish_span(&cx, &status);
                None
            }
            None => Some(cx),
        };
        http::Response::from_parts(parts, Body::new(TracedBody { body, cx }))
    }

    fn finish(&mut self, status: Status) {
        if let Some(cx) = self.cx.take() {
            finish_span(&cx, &status);
        }
    }
}
// ANCHOR_END: traced_body

// ANCHOR: traced_body_frames
impl http_body::Body for TracedBody {
    type Data = <Body as http_body::Body>::Data;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Status>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(status) =
                    frame.trailers_ref().and_then(Status::from_header_map)
                {
                    self.finish(status);
                }
            }
            Some(Err(status)) => self.finish(status.clone()),
            None => self.finish(Status::unknown(
                "the response ended without a gRPC status",
            )),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

impl Drop for TracedBody {
    fn drop(&mut self) {
        self.finish(Status::cancelled("the response was dropped before its end"));
    }
}
// ANCHOR_END: traced_body_frames

// ANCHOR: client
/// A tower layer for the client's channel: every call gets a span
/// `client.<Method>`, a child of the current context, whose context goes to
/// the server in the call's `traceparent` header.
#[derive(Clone)]
pub struct ClientTracingLayer {
    tracer: SdkTracer,
}

impl ClientTracingLayer {
    pub fn new(tracer: SdkTracer) -> Self {
        ClientTracingLayer { tracer }
    }
}

impl<S> Layer<S> for ClientTracingLayer {
    type Service = ClientTracing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientTracing {
            inner,
            tracer: self.tracer.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ClientTracing<S> {
    inner: S,
    tracer: SdkTracer,
}
// ANCHOR_END: client

// ANCHOR: client_call
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<http::Request<Body>> for ClientTracing<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Error: std::fmt::Display,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let name = format!("client.{}", method_name(request.uri().path()));
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes([KeyValue::new("rpc.system", "grpc")])
            .start_with_context(&self.tracer, &Context::current());
        let cx = Context::current_with_span(span);
        TraceContextPropagator::new()
            .inject_context(&cx, &mut HeaderInjector(request.headers_mut()));
        let response = self.inner.call(request);
        Box::pin(async move {
            match response.await {
                Ok(response) => Ok(TracedBody::wrap(response, cx)),
                Err(error) => {
                    finish_span(&cx, &Status::unavailable(error.to_string()));
                    Err(error)
                }
            }
        })
    }
}
// ANCHOR_END: client_call

// ANCHOR: server
/// A tower layer for the server: every call gets a span `server.<Method>`,
/// a child of the context in the call's `traceparent` header, or a new trace
/// if there is none. The span ends when the whole response has been sent.
#[derive(Clone)]
pub struct ServerTracingLayer {
    tracer: SdkTracer,
}

impl ServerTracingLayer {
    pub fn new(tracer: SdkTracer) -> Self {
        ServerTracingLayer { tracer }
    }
}

impl<S> Layer<S> for ServerTracingLayer {
    type Service = ServerTracing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTracing {
            inner,
            tracer: self.tracer.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ServerTracing<S> {
    inner: S,
    tracer: SdkTracer,
}
// ANCHOR_END: server

// ANCHOR: server_call
impl<S, B> Service<http::Request<B>> for ServerTracing<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Error: std::fmt::Display,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let parent = TraceContextPropagator::new().extract_with_context(
            &Context::new(),
            &HeaderExtractor(request.headers()),
        );
        let name = format!("server.{}", method_name(request.uri().path()));
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes([KeyValue::new("rpc.system", "grpc")])
            .start_with_context(&self.tracer, &parent);
        let cx = parent.with_span(span);
        let response = self.inner.call(request).with_context(cx.clone());
        Box::pin(async move {
            match response.await {
                Ok(response) => Ok(TracedBody::wrap(response, cx)),
                Err(error) => {
                    finish_span(&cx, &Status::internal(error.to_string()));
                    Err(error)
                }
            }
        })
    }
}
// ANCHOR_END: server_call

// ANCHOR: exporter
/// A span exporter that keeps the spans in memory, for this example to
/// print. A real service exports to a collector instead.
#[derive(Clone, Debug, Default)]
pub struct MemoryExporter {
    spans: Arc<Mutex<Vec<SpanData>>>,
}

impl MemoryExporter {
    /// The spans exported since the last call, in the order they ended.
    pub fn take_spans(&self) -> Vec<SpanData> {
        self.spans
            .lock()
            .map(|mut s| s.split_off(0))
            .unwrap_or_default()
    }
}

impl SpanExporter for MemoryExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if let Ok(mut spans) = self.spans.lock() {
            spans.extend(batch);
        }
        Ok(())
    }
}

/// A tracer provider that exports every span to `exporter` as soon as the
/// span ends.
pub fn configure_tracing(exporter: MemoryExporter) -> SdkTracerProvider {
    let resource = Resource::builder().with_service_name("my-service").build();
    SdkTracerProvider::builder()
        .with_resource(resource)
        .with_simple_exporter(exporter)
        .build()
}
// ANCHOR_END: exporter

// ANCHOR: echo
/// The echo service of the authentication recipe: `do_action` answers with
/// the action's type and body; the other methods are not offered.
pub struct EchoServer;

#[tonic::async_trait]
impl FlightService for EchoServer {
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        let results = [action.r#type.into(), action.body]
            .map(|body| Ok(arrow_flight::Result { body }));
        Ok(Response::new(Box::pin(stream::iter(results))))
    }

    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
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

    async fn do_get(
        &self,
        _request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        Err(Status::unimplemented("do_get is not offered"))
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
// ANCHOR_END: echo

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
/// Serves the echo service, traced with `tracer`, on `listener` until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tracer: SdkTracer,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
        .layer(InterceptorLayer::new(limit_headers))
        .layer(ServerTracingLayer::new(tracer))
        .add_service(FlightServiceServer::new(EchoServer))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}
// ANCHOR_END: serve

// ANCHOR: connect
/// A Flight client whose calls are traced with `tracer`.
pub async fn connect(
    url: String,
    tracer: SdkTracer,
) -> Result<FlightClient<ClientTracing<Channel>>, Box<dyn Error>> {
    let channel = flight_endpoint(&url)?.connect().await?;
    let traced = ClientTracingLayer::new(tracer).layer(channel);
    Ok(FlightClient::new_from_inner(FlightServiceClient::new(
        traced,
    )))
}
// ANCHOR_END: connect

// ANCHOR: report
/// Prints the spans' names, kinds and statuses, and how they are related,
/// without their ids, which change from run to run.
pub fn print_spans(spans: &[SpanData]) {
    println!("There are {} spans.", spans.len());
    for span in spans {
        let status = match &span.status {
            SpanStatus::Unset => "Unset".to_string(),
            SpanStatus::Ok => "Ok".to_string(),
            SpanStatus::Error { description } => format!("Error: {description}"),
        };
        println!(
            "  {:<16} {:<9} {status}",
            span.name,
            format!("{:?}", span.span_kind)
        );
    }
    let trace_ids: HashSet<_> =
        spans.iter().map(|s| s.span_context.trace_id()).collect();
    println!("Same trace id: {}", trace_ids.len() == 1);
    for span in spans {
        let parent = spans
            .iter()
            .find(|p| p.span_context.span_id() == span.parent_span_id);
        match parent {
            Some(parent) => println!("{} is a child of {}", span.name, parent.name),
            None if span.parent_span_id == SpanId::INVALID => {
                println!("{} is a root span", span.name)
            }
            None => println!("{} has a parent that was not exported", span.name),
        }
    }
}
// ANCHOR_END: report

// ANCHOR: main
#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let exporter = MemoryExporter::default();
    let provider = configure_tracing(exporter.clone());
    let tracer = provider.tracer("flight-cookbook");

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("grpc://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, tracer.clone(), async {
        stopped.await.ok();
    }));
    let mut client = connect(url, tracer.clone()).await?;
    // ANCHOR_END: main

    // ANCHOR: hello_world
    let cx = Context::current_with_span(tracer.start("hello_world"));
    let action = Action::new("echo", "Hello, world!");
    let results: Vec<_> = client
        .do_action(action)
        .with_context(cx.clone())
        .await?
        .try_collect()
        .await?;
    cx.span().end();
    println!("The server answered {results:?}.");
    print_spans(&exporter.take_spans());
    // ANCHOR_END: hello_world

    // ANCHOR: failure
    let cx = Context::current_with_span(tracer.start("get_missing"));
    let ticket = Ticket::new("missing");
    if let Err(error) = client.do_get(ticket).with_context(cx.clone()).await {
        println!("The call failed: {error}");
    }
    cx.span().end();
    print_spans(&exporter.take_spans());
    // ANCHOR_END: failure

    // ANCHOR: stop
    stop.send(()).ok();
    server.await??;
    provider.shutdown()?;
    Ok(())
}
// ANCHOR_END: stop
