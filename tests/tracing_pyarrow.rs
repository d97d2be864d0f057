//! A pyarrow client that sends a `traceparent` header of its own (through
//! `FlightCallOptions`, with no OpenTelemetry on its side) gets a server span
//! of the tracing recipe (`examples/tracing_echo.rs`) in its trace, as a child
//! of the span it named.
//!
//! Skipped without pyarrow, except on CI (see `tests/common`).

mod common;

use common::{TIMEOUT, block_on, run_with_timeout, runtime, script};

use std::process::Command;

use flight_cookbook::tracing_echo::{MemoryExporter, configure_tracing, serve};
use opentelemetry::trace::{SpanId, SpanKind, Status as SpanStatus, TraceId, TracerProvider};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

#[test]
fn a_pyarrow_call_with_a_traceparent_joins_its_trace() {
    let test = "a pyarrow call with a traceparent";
    let python = match common::python("import pyarrow.flight") {
        Ok(python) => python,
        Err(why) => {
            common::unavailable::<()>(test, &why);
            return;
        }
    };
    let runtime = runtime();
    let exporter = MemoryExporter::default();
    let provider = configure_tracing(exporter.clone());

    let listener = block_on(&runtime, "binding", TcpListener::bind("127.0.0.1:0"))
        .expect("can bind a free port on 127.0.0.1");
    let addr = listener.local_addr().expect("the listener has an address");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = runtime.spawn(serve(listener, provider.tracer("tests"), async {
        let _ = stopped.await;
    }));

    let mut client = Command::new(&python);
    client
        .arg(script("tracing_client.py"))
        .arg(format!("grpc://{addr}"))
        .arg(format!("00-{TRACE_ID}-{PARENT_ID}-01"));
    let output = run_with_timeout(client, TIMEOUT).expect("the pyarrow client runs to its end");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the pyarrow client failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout, "b'echo'\nb'Hello, world!'\n");

    let _ = stop.send(());
    block_on(&runtime, "stopping the server", server)
        .expect("the server task ends")
        .expect("the server stops cleanly");

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
