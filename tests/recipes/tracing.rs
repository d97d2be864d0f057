//! Tests of the tracing recipe (`examples/tracing_echo.rs`): spans of
//! streamed responses end when the stream ends, failed calls carry their gRPC
//! status, concurrent calls keep their own traces, and calls with no or a
//! malformed `traceparent` get a new trace instead of an error.

use crate::common;
use crate::tracing_echo;

use std::future::Future;
use std::sync::Mutex;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use common::{Shutdown, TestServer, within};
use futures::TryStreamExt;
use futures::stream::{self, BoxStream};
use opentelemetry::trace::{
    FutureExt, SpanId, SpanKind, Status as SpanStatus, TraceContextExt, TraceId,
    Tracer, TracerProvider,
};
use opentelemetry::{Context, Value};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanData};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status, Streaming};
use tower::Layer;
use tracing_echo::{
    ClientTracing, ClientTracingLayer, MemoryExporter, ServerTracingLayer,
    configure_tracing, method_name, serve,
};

/// A traced server on a free port, with its own exporter.
struct Traced {
    exporter: MemoryExporter,
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    server: TestServer,
}

impl Traced {
    /// The recipe's server: its echo service, traced.
    async fn echo() -> Traced {
        Traced::start(serve).await
    }

    /// `service` with the recipe's server layer, as `serve` adds it.
    async fn service<T: FlightService>(service: T) -> Traced {
        Traced::start(|listener, tracer, shutdown| {
            Server::builder()
                .layer(ServerTracingLayer::new(tracer))
                .add_service(FlightServiceServer::new(service))
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        })
        .await
    }

    async fn start<S, F>(serve: S) -> Traced
    where
        S: FnOnce(TcpListener, SdkTracer, Shutdown) -> F,
        F: Future<Output = Result<(), tonic::transport::Error>> + Send + 'static,
    {
        let exporter = MemoryExporter::default();
        let provider = configure_tracing(exporter.clone());
        let tracer = provider.tracer("tests");
        let server_tracer = tracer.clone();
        let server =
            TestServer::start(move |listener: TcpListener, shutdown: Shutdown| {
                serve(listener, server_tracer, shutdown)
            })
            .await;
        Traced {
            exporter,
            provider,
            tracer,
            server,
        }
    }

    /// A client whose calls are traced.
    async fn traced(&self) -> FlightServiceClient<ClientTracing<Channel>> {
        let layer = ClientTracingLayer::new(self.tracer.clone());
        FlightServiceClient::new(layer.layer(self.server.channel().await))
    }

    /// A client that sends no trace context.
    async fn plain(&self) -> FlightServiceClient<Channel> {
        FlightServiceClient::new(self.server.channel().await)
    }

    async fn stop(self) {
        self.server.stop().await;
        self.provider.shutdown().expect("provider shutdown");
    }
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    match named(spans, name).as_slice() {
        [span] => span,
        found => panic!(
            "expected one span {name}, found {}: {:?}",
            found.len(),
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        ),
    }
}

fn grpc_code(span: &SpanData) -> Option<i64> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == "rpc.grpc.status_code")
        .and_then(|kv| match kv.value {
            Value::I64(code) => Some(code),
            _ => None,
        })
}

fn assert_error(span: &SpanData, code: Code, message: &str) {
    match &span.status {
        SpanStatus::Error { description } => {
            let expected = format!("{code:?}: {message}");
            assert_eq!(description, &expected, "status of {}", span.name);
        }
        other => panic!("{} should have an error status, has {other:?}", span.name),
    }
    assert_eq!(grpc_code(span), Some(code as i64), "code of {}", span.name);
}

fn assert_child(child: &SpanData, parent: &SpanData) {
    assert_eq!(
        child.span_context.trace_id(),
        parent.span_context.trace_id(),
        "{} and {} are in one trace",
        child.name,
        parent.name
    );
    assert_eq!(
        child.parent_span_id,
        parent.span_context.span_id(),
        "{} is a child of {}",
        child.name,
        parent.name
    );
}

/// A Flight service whose `do_get` streams what the test sends it.
struct Streamer {
    items: Mutex<Option<mpsc::Receiver<Result<FlightData, Status>>>>,
}

impl Streamer {
    fn new() -> (Streamer, mpsc::Sender<Result<FlightData, Status>>) {
        let (send, receive) = mpsc::channel(4);
        let streamer = Streamer {
            items: Mutex::new(Some(receive)),
        };
        (streamer, send)
    }
}

#[tonic::async_trait]
impl FlightService for Streamer {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    async fn do_get(
        &self,
        _request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let receiver = self.items.lock().expect("lock").take();
        let receiver =
            receiver.ok_or_else(|| Status::unavailable("only one do_get"))?;
        let items = stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        Ok(Response::new(Box::pin(items)))
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("handshake"))
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("list_flights"))
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("get_flight_info"))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info"))
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("get_schema"))
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented("do_put"))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange"))
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented("do_action"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("list_actions"))
    }
}

fn data(n: u8) -> FlightData {
    FlightData {
        data_body: vec![n].into(),
        ..FlightData::default()
    }
}

#[tokio::test]
async fn a_streamed_response_ends_its_spans_only_when_the_stream_ends() {
    let (streamer, items) = Streamer::new();
    let fixture = Traced::service(streamer).await;
    let mut client = fixture.traced().await;

    let mut stream = within("do_get", client.do_get(Ticket::new("t")))
        .await
        .expect("do_get")
        .into_inner();
    items.send(Ok(data(1))).await.expect("send");
    let first = within("first message", stream.message()).await;
    assert_eq!(
        first.expect("first").expect("a message").data_body,
        &[1u8][..]
    );
    assert!(
        fixture.exporter.take_spans().is_empty(),
        "no span may end while the response is still streaming"
    );

    items.send(Ok(data(2))).await.expect("send");
    drop(items);
    let rest: Vec<FlightData> = within("the rest", stream.try_collect())
        .await
        .expect("rest");
    assert_eq!(rest.len(), 1);

    let spans = fixture.exporter.take_spans();
    let server = one(&spans, "server.DoGet");
    let client_span = one(&spans, "client.DoGet");
    assert_eq!(server.status, SpanStatus::Ok);
    assert_eq!(client_span.status, SpanStatus::Ok);
    assert_eq!(grpc_code(server), Some(0));
    assert_eq!(server.span_kind, SpanKind::Server);
    assert_eq!(client_span.span_kind, SpanKind::Client);
    assert_child(server, client_span);
    drop(client);
    fixture.stop().await;
}

#[tokio::test]
async fn an_error_in_the_middle_of_a_stream_is_recorded_on_both_spans() {
    let (streamer, items) = Streamer::new();
    let fixture = Traced::service(streamer).await;
    let mut client = fixture.traced().await;

    items.send(Ok(data(1))).await.expect("send");
    items
        .send(Err(Status::data_loss("the disk went away")))
        .await
        .expect("send");
    let stream = within("do_get", client.do_get(Ticket::new("t")))
        .await
        .expect("do_get")
        .into_inner();
    let result: Result<Vec<FlightData>, Status> =
        within("reading", stream.try_collect()).await;
    let error = result.expect_err("the stream fails");
    assert_eq!(error.code(), Code::DataLoss);

    let spans = fixture.exporter.take_spans();
    assert_error(
        one(&spans, "server.DoGet"),
        Code::DataLoss,
        "the disk went away",
    );
    assert_error(
        one(&spans, "client.DoGet"),
        Code::DataLoss,
        "the disk went away",
    );
    drop(client);
    fixture.stop().await;
}

#[tokio::test]
async fn a_refused_call_is_recorded_on_both_spans() {
    let fixture = Traced::echo().await;
    let mut client = fixture.traced().await;

    let error = within("do_get", client.do_get(Ticket::new("t")))
        .await
        .expect_err("do_get is not offered");
    assert_eq!(error.code(), Code::Unimplemented);

    let spans = fixture.exporter.take_spans();
    let server = one(&spans, "server.DoGet");
    let client_span = one(&spans, "client.DoGet");
    assert_error(server, Code::Unimplemented, "do_get is not offered");
    assert_error(client_span, Code::Unimplemented, "do_get is not offered");
    assert_child(server, client_span);
    drop(client);
    fixture.stop().await;
}

#[tokio::test]
async fn a_call_that_cannot_reach_the_server_is_recorded_on_the_client_span() {
    let exporter = MemoryExporter::default();
    let provider = configure_tracing(exporter.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let channel = Channel::from_shared(url).expect("url").connect_lazy();
    let traced = ClientTracingLayer::new(provider.tracer("tests")).layer(channel);
    let mut client = FlightServiceClient::new(traced);

    let error = within("do_get", client.do_get(Ticket::new("t")))
        .await
        .expect_err("nobody listens");
    assert_eq!(error.code(), Code::Unavailable);
    let spans = exporter.take_spans();
    let span = one(&spans, "client.DoGet");
    assert!(
        matches!(span.status, SpanStatus::Error { .. }),
        "{:?}",
        span.status
    );
    provider.shutdown().expect("provider shutdown");
}

#[tokio::test]
async fn concurrent_calls_keep_their_own_traces() {
    let fixture = Traced::echo().await;
    let client = fixture.traced().await;

    let calls = (0..8).map(|i| {
        let mut client = client.clone();
        let cx =
            Context::current_with_span(fixture.tracer.start(format!("caller{i}")));
        async move {
            let results: Vec<_> = client
                .do_action(Action::new("echo", format!("{i}")))
                .with_context(cx.clone())
                .await?
                .into_inner()
                .try_collect()
                .await?;
            cx.span().end();
            Ok::<_, Status>(results)
        }
    });
    let answers = within("the calls", futures::future::try_join_all(calls))
        .await
        .expect("calls");
    assert_eq!(answers.len(), 8);

    let spans = fixture.exporter.take_spans();
    assert_eq!(spans.len(), 24);
    let mut traces = std::collections::HashSet::new();
    for i in 0..8 {
        let caller = one(&spans, &format!("caller{i}"));
        assert_eq!(caller.parent_span_id, SpanId::INVALID);
        traces.insert(caller.span_context.trace_id());
        let trace = caller.span_context.trace_id();
        let in_trace: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect();
        assert_eq!(in_trace.len(), 3, "trace of caller{i}");
        let client_span = in_trace
            .iter()
            .find(|s| s.name == "client.DoAction")
            .expect("client span");
        let server = in_trace
            .iter()
            .find(|s| s.name == "server.DoAction")
            .expect("server span");
        assert_child(client_span, caller);
        assert_child(server, client_span);
    }
    assert_eq!(traces.len(), 8, "each call has its own trace");
    drop(client);
    fixture.stop().await;
}

#[tokio::test]
async fn a_call_without_a_traceparent_gets_a_root_server_span() {
    let fixture = Traced::echo().await;
    let mut client = fixture.plain().await;

    let results: Vec<_> = within("do_action", async {
        client
            .do_action(Action::new("echo", "hi"))
            .await?
            .into_inner()
            .try_collect::<Vec<_>>()
            .await
    })
    .await
    .expect("do_action");
    assert_eq!(results.len(), 2);

    let spans = fixture.exporter.take_spans();
    assert_eq!(spans.len(), 1);
    let server = one(&spans, "server.DoAction");
    assert_eq!(server.parent_span_id, SpanId::INVALID);
    assert_ne!(server.span_context.trace_id(), TraceId::INVALID);
    assert_eq!(server.status, SpanStatus::Ok);
    drop(client);
    fixture.stop().await;
}

#[tokio::test]
async fn a_malformed_traceparent_is_ignored() {
    let fixture = Traced::echo().await;
    let mut client = fixture.plain().await;
    let malformed = [
        "garbage",
        "00-00000000000000000000000000000000-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    ];
    for value in malformed {
        let mut request = Request::new(Action::new("echo", "hi"));
        request
            .metadata_mut()
            .insert("traceparent", value.parse().expect("ascii"));
        let results: Vec<_> = within("do_action", async {
            client
                .do_action(request)
                .await?
                .into_inner()
                .try_collect::<Vec<_>>()
                .await
        })
        .await
        .unwrap_or_else(|status| {
            panic!("traceparent {value:?} failed the call: {status}")
        });
        assert_eq!(results.len(), 2);

        let spans = fixture.exporter.take_spans();
        let server = one(&spans, "server.DoAction");
        assert_eq!(
            server.parent_span_id,
            SpanId::INVALID,
            "traceparent {value:?} gives a root span"
        );
        assert_eq!(server.status, SpanStatus::Ok);
    }

    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut request = Request::new(Action::new("echo", "hi"));
    request
        .metadata_mut()
        .insert("traceparent", parent.parse().expect("ascii"));
    within("do_action", client.do_action(request))
        .await
        .expect("do_action")
        .into_inner()
        .try_collect::<Vec<_>>()
        .await
        .expect("results");
    let spans = fixture.exporter.take_spans();
    let server = one(&spans, "server.DoAction");
    assert_eq!(
        server.span_context.trace_id(),
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex")
    );
    assert_eq!(
        server.parent_span_id,
        SpanId::from_hex("00f067aa0ba902b7").expect("hex")
    );
    drop(client);
    fixture.stop().await;
}

#[test]
fn the_method_name_is_the_last_part_of_the_path() {
    assert_eq!(
        method_name("/arrow.flight.protocol.FlightService/DoAction"),
        "DoAction"
    );
    assert_eq!(method_name("odd"), "odd");
}
