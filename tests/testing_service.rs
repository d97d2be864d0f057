//! The chapter "Testing a Flight service" (book/src/testing_service.md):
//! the tests a reader writes for a Flight service of their own, with the
//! stored-Arrow recipe's server as the subject. The chapter shows this
//! file's parts; cargo compiles and runs it as the test target
//! `testing_service`.

// ANCHOR: subject
#[allow(dead_code)]
#[path = "../examples/stored_arrow_server.rs"]
mod stored_arrow_server;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::stored_arrow_server::{
    EndOfStreamLayer, Repository, StoredArrowService, serve_repository,
};
use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::{FlightClient, FlightData, FlightDescriptor, Ticket};
use futures::{TryStreamExt, stream};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint, Server, Uri};
use tonic::{Code, Request};
use tower::service_fn;

type Error = Box<dyn std::error::Error + Send + Sync>;
// ANCHOR_END: subject

// ANCHOR: helpers
/// A batch of the numbers `first..first + rows`.
fn numbers(first: i64, rows: usize) -> Result<RecordBatch, Error> {
    let values = Int64Array::from_iter_values(first..first + rows as i64);
    Ok(RecordBatch::try_from_iter([(
        "n",
        Arc::new(values) as ArrayRef,
    )])?)
}

/// Uploads `batches` as the dataset `name`.
async fn put(
    client: &mut FlightClient,
    name: &str,
    batches: Vec<RecordBatch>,
) -> Result<(), FlightError> {
    let descriptor = FlightDescriptor::new_path(vec![name.to_string()]);
    let messages = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(stream::iter(batches.into_iter().map(Ok)));
    client
        .do_put(messages)
        .await?
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Reads the dataset `name`.
async fn get(
    client: &mut FlightClient,
    name: &str,
) -> Result<Vec<RecordBatch>, FlightError> {
    let ticket = Ticket::new(name.to_string());
    client.do_get(ticket).await?.try_collect().await
}
// ANCHOR_END: helpers

// ANCHOR: port_zero
/// The server on a free port of 127.0.0.1, the sender that stops it, and
/// its task, which ends with what `serve_repository` returned.
struct Running {
    url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

async fn start(repository: Repository) -> Result<Running, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let task = tokio::spawn(serve_repository(listener, repository, shutdown));
    Ok(Running { url, stop, task })
}

impl Running {
    async fn client(&self) -> Result<FlightClient, Error> {
        let channel = Channel::from_shared(self.url.clone())?.connect().await?;
        Ok(FlightClient::new(channel))
    }

    /// Stops the server and fails unless it stops cleanly within 10 s.
    async fn stop(self) -> Result<(), Error> {
        let _ = self.stop.send(());
        let finished = tokio::time::timeout(Duration::from_secs(10), self.task);
        finished
            .await
            .map_err(|_| "the server did not stop within 10 s")???;
        Ok(())
    }
}

#[tokio::test]
async fn serves_on_a_free_port_and_stops_cleanly() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let server = start(Repository::new(dir.path())?).await?;
    let mut client = server.client().await?;

    let sent = vec![numbers(0, 3)?, numbers(3, 2)?];
    put(&mut client, "five", sent).await?;
    let got = get(&mut client, "five").await?;
    assert_eq!(got, vec![numbers(0, 5)?]);

    drop(client);
    server.stop().await
}
// ANCHOR_END: port_zero

// ANCHOR: in_memory
/// A client of `service` over an in-memory stream: no port, no socket.
/// The server's task ends when the client's channel is dropped.
fn in_memory(
    service: StoredArrowService,
) -> Result<
    (
        FlightClient,
        JoinHandle<Result<(), tonic::transport::Error>>,
    ),
    Error,
> {
    let (client_io, server_io) = tokio::io::duplex(1024 * 1024);
    let incoming = stream::iter([Ok::<_, io::Error>(server_io)]);
    let server = Server::builder()
        .layer(EndOfStreamLayer)
        .add_service(FlightServiceServer::new(service))
        .serve_with_incoming(incoming);
    let task = tokio::spawn(server);

    // The URL is never resolved: the connector hands over the stream.
    let mut client_io = Some(client_io);
    let connector = service_fn(move |_: Uri| {
        let io = client_io.take();
        async move {
            let io = io.ok_or_else(|| io::Error::other("already connected"))?;
            Ok::<_, io::Error>(TokioIo::new(io))
        }
    });
    let channel = Endpoint::from_static("http://in-memory")
        .connect_with_connector_lazy(connector);
    Ok((FlightClient::new(channel), task))
}

#[tokio::test]
async fn serves_over_an_in_memory_stream() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let service = StoredArrowService::new(Repository::new(dir.path())?);
    let (mut client, server) = in_memory(service)?;

    put(&mut client, "ten", vec![numbers(0, 10)?]).await?;
    assert_eq!(get(&mut client, "ten").await?, vec![numbers(0, 10)?]);

    drop(client);
    tokio::time::timeout(Duration::from_secs(10), server).await???;
    Ok(())
}
// ANCHOR_END: in_memory

// ANCHOR: statuses
/// The gRPC status of a failed call; any other error fails the test.
fn status(error: FlightError) -> tonic::Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => panic!("expected a gRPC status, got {other}"),
    }
}

#[tokio::test]
async fn answers_with_the_right_status_and_message() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let service = StoredArrowService::new(Repository::new(dir.path())?);
    let (mut client, _server) = in_memory(service)?;

    let missing = status(get(&mut client, "nowhere").await.unwrap_err());
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(missing.message(), r#"dataset "nowhere" not found"#);

    let outside = status(get(&mut client, "../etc").await.unwrap_err());
    assert_eq!(outside.code(), Code::InvalidArgument);
    assert_eq!(
        outside.message(),
        r#"dataset name "../etc" contains a path separator"#
    );
    // The message must not show where the server keeps its files.
    let folder = dir.path().to_string_lossy();
    assert!(!outside.message().contains(folder.as_ref()));
    Ok(())
}
// ANCHOR_END: statuses

// ANCHOR: bad_input
#[tokio::test]
async fn refuses_bad_input_and_keeps_serving() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let service = StoredArrowService::new(Repository::new(dir.path())?);
    let (mut client, _server) = in_memory(service)?;

    // A damaged file in the server's folder.
    std::fs::write(dir.path().join("damaged"), b"ARROW1 and no more")?;
    let damaged = status(get(&mut client, "damaged").await.unwrap_err());
    assert_eq!(damaged.code(), Code::DataLoss);
    assert!(damaged.message().contains("not a readable Arrow IPC file"));

    // An upload whose second message is not Arrow IPC, sent raw.
    let descriptor = FlightDescriptor::new_path(vec!["broken".to_string()]);
    let messages = vec![
        FlightData::new().with_descriptor(descriptor),
        FlightData::new().with_data_header(&b"not a message"[..]),
    ];
    let mut raw = client.inner().clone();
    let refused = raw.do_put(Request::new(stream::iter(messages))).await;
    assert_eq!(refused.unwrap_err().code(), Code::InvalidArgument);
    assert!(!dir.path().join("broken").exists());

    // Still serving.
    put(&mut client, "fine", vec![numbers(0, 1)?]).await?;
    assert_eq!(get(&mut client, "fine").await?, vec![numbers(0, 1)?]);
    Ok(())
}
// ANCHOR_END: bad_input

// ANCHOR: goes_away
#[tokio::test]
async fn a_client_that_goes_away_does_not_hold_the_server() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let server = start(Repository::new(dir.path())?).await?;
    let mut client = server.client().await?;
    let batches: Result<Vec<_>, _> =
        (0..32).map(|i| numbers(i * 65_536, 65_536)).collect();
    put(&mut client, "large", batches?).await?;

    // Read one batch of 32, then go away in the middle of the stream.
    let mut stream = client.do_get(Ticket::new("large")).await?;
    assert!(stream.try_next().await?.is_some());
    drop(stream);
    drop(client);

    // A call left running would keep the server from stopping.
    server.stop().await
}
// ANCHOR_END: goes_away

// ANCHOR: pyarrow
/// pyarrow reads a dataset from the server at `url` and prints its rows.
const PYARROW_READS: &str = r#"
import sys
import pyarrow.flight as flight
client = flight.connect(sys.argv[1])
table = client.do_get(flight.Ticket(b"seven")).read_all()
print(table.num_rows, table.column("n").to_pylist())
"#;

#[tokio::test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with pyarrow (see recipes/build.rs)"
)]
async fn pyarrow_reads_what_the_server_stored() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let server = start(Repository::new(dir.path())?).await?;
    let mut client = server.client().await?;
    put(&mut client, "seven", vec![numbers(0, 7)?]).await?;

    let python = option_env!("FLIGHT_COOKBOOK_PYTHON_FOUND").unwrap_or("python3");
    let url = server.url.replacen("http://", "grpc://", 1);
    // On a thread of its own: the server runs on this test's thread.
    let output = tokio::task::spawn_blocking(move || {
        let mut pyarrow = std::process::Command::new(python);
        pyarrow.args(["-c", PYARROW_READS, &url]).output()
    })
    .await??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "pyarrow failed: {stderr}");
    let stdout = String::from_utf8(output.stdout)?;
    assert_eq!(stdout.trim(), "7 [0, 1, 2, 3, 4, 5, 6]");

    drop(client);
    server.stop().await
}
// ANCHOR_END: pyarrow
