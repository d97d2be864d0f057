//! A pyarrow client that sends a `traceparent` header of its own (through
//! `FlightCallOptions`, with no OpenTelemetry on its side) gets a server span
//! of the tracing recipe (`examples/tracing_echo.rs`) in its trace, as a child
//! of the span it named.

use crate::common;
use crate::tracing_echo;

use std::ffi::OsStr;

use common::{ChildProcess, Shutdown, TIMEOUT, TestServer, block_on, runtime};
use opentelemetry::trace::{
    SpanId, SpanKind, Status as SpanStatus, TraceId, TracerProvider,
};
use tokio::net::TcpListener;
use tracing_echo::{MemoryExporter, configure_tracing, serve};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn a_pyarrow_call_with_a_traceparent_joins_its_trace() {
    let runtime = runtime();
    let exporter = MemoryExporter::default();
    let provider = configure_tracing(exporter.clone());
    let tracer = provider.tracer("tests");
    let server = block_on(
        &runtime,
        "starting the server",
        TestServer::start(|listener: TcpListener, shutdown: Shutdown| {
            serve(listener, tracer, shutdown)
        }),
    );

    let url = server.grpc_url();
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let client = ChildProcess::python(
        &common::python(),
        "tracing_client.py",
        &[OsStr::new(&url), OsStr::new(&traceparent)],
    );
    let finished = client.wait(TIMEOUT);
    assert!(finished.success(), "{}", finished.report());
    assert_eq!(finished.stdout, "b'echo'\nb'Hello, world!'\n");
    block_on(&runtime, "stopping the server", server.stop());

    let spans = exporter.take_spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(names, ["server.DoAction"]);
    let span = &spans[0];
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(span.status, SpanStatus::Ok);
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex(TRACE_ID).expect("hex")
    );
    assert_eq!(
        span.parent_span_id,
        SpanId::from_hex(PARENT_ID).expect("hex")
    );
    assert!(span.parent_span_is_remote);
    provider.shutdown().expect("the provider shuts down");
}
