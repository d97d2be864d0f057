//! Interoperability of the Parquet storage recipes with pyarrow, the
//! reference implementation of Arrow Flight:
//!
//! * the pyarrow client of the Python cookbook's two sections
//!   (`tests/python/parquet_storage_client.py`) against both our servers;
//! * our clients against the pyarrow streaming server of the Python cookbook
//!   (`tests/python/parquet_storage_server.py`), and our streaming server
//!   reading the Parquet files that pyarrow wrote.
//!
//! They need Python with the packages of `tests/python/requirements.txt`:
//! without it they are reported as ignored (and fail the build on CI).

use crate::common;

use crate::parquet_storage_client;

use crate::parquet_storage_server;

use crate::streaming_parquet_client;

use crate::streaming_parquet_server;

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_flight::{Action, FlightClient, FlightDescriptor, FlightInfo};
use common::{ChildProcess, TIMEOUT, TestServer, block_on, runtime};
use futures::{TryStreamExt, stream};
use parquet_storage_client::{describe, ticket, upload};
use streaming_parquet_client::{count_rows, upload_stream};
use tokio::runtime::Runtime;
use tonic::transport::Channel;

/// One of our servers, serving `repo` in the background on `runtime`.
fn start(runtime: &Runtime, streaming: bool, repo: &Path) -> TestServer {
    block_on(runtime, "starting our server", async {
        if streaming {
            let repository =
                streaming_parquet_server::Repository::new(repo).expect("a repo");
            TestServer::start(|listener, shutdown| {
                streaming_parquet_server::serve_repository(
                    listener, repository, shutdown,
                )
            })
            .await
        } else {
            let repository =
                parquet_storage_server::Repository::new(repo).expect("a repo");
            TestServer::start(|listener, shutdown| {
                parquet_storage_server::serve_repository(
                    listener, repository, shutdown,
                )
            })
            .await
        }
    })
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn the_pyarrow_client_of_the_python_recipes_against_our_servers() {
    let runtime = runtime();
    for streaming in [false, true] {
        let repo = tempfile::tempdir().expect("a temporary folder");
        let server = start(&runtime, streaming, repo.path());

        let url = server.grpc_url();
        let client = ChildProcess::python(
            &common::python(),
            "parquet_storage_client.py",
            &[url.as_ref()],
        );
        let finished = client.wait(TIMEOUT);
        let which = if streaming { "streaming" } else { "simple" };
        assert!(
            finished.success(),
            "{which}: the pyarrow client failed; {}",
            finished.report()
        );
        let (stdout, stderr) = (&finished.stdout, &finished.stderr);
        let lines: Vec<&str> = stdout.lines().collect();
        let [
            put,
            info,
            listed,
            get,
            dropped,
            listed_after,
            streamed,
            read,
            dropped_streamed,
            missing,
        ] = lines[..]
        else {
            panic!(
                "{which}: expected 10 lines from the pyarrow client, got:\n{stdout}\n{stderr}"
            );
        };
        assert_eq!(put, "put: uploaded.parquet");
        assert!(
            info.starts_with("info: uploaded.parquet rows=3 bytes=")
                && info.ends_with(" schema=Character: string"),
            "{which}: {info:?}"
        );
        assert_eq!(listed, "listed: uploaded.parquet");
        assert_eq!(get, "get: ['Mario', 'Luigi', 'Peach']");
        assert_eq!(dropped, "dropped: uploaded.parquet");
        assert_eq!(listed_after, "listed after drop: []");
        assert_eq!(streamed, "streamed: 1024 batches");
        assert!(
            read.starts_with("read: Got 4194304 rows total, expected 4194304 in "),
            "{which}: {read:?}"
        );
        assert_eq!(dropped_streamed, "dropped: streamed.parquet");
        assert!(
            missing.starts_with("missing: ArrowKeyError: ")
                && missing.contains("dataset \"missing.parquet\" not found"),
            "{which}: {missing:?}"
        );
        block_on(&runtime, "stopping our server", server.stop());
        assert_eq!(std::fs::read_dir(repo.path()).expect("the repo").count(), 0);
    }
}

/// pyarrow follows an advertised location: a front server, started with
/// the URL of our other server as its `--advertise`, hands out the flight
/// info, stops, and pyarrow fetches the dataset from the URL it named.
#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn pyarrow_follows_an_advertised_location() {
    let runtime = runtime();
    for streaming in [false, true] {
        let repo = tempfile::tempdir().expect("a temporary folder");
        let server = start(&runtime, streaming, repo.path());
        let there = server.grpc_url();
        block_on(&runtime, "uploading", async {
            let mut client = FlightClient::new(server.channel().await);
            upload(&mut client, "uploaded.parquet", characters())
                .await
                .expect("the upload");
        });
        let front = block_on(&runtime, "starting the front server", async {
            let advertise = Some(there.clone());
            if streaming {
                let repository =
                    streaming_parquet_server::Repository::new(repo.path())
                        .expect("a repo");
                TestServer::start(|listener, shutdown| {
                    streaming_parquet_server::serve_advertised(
                        listener, repository, advertise, shutdown,
                    )
                })
                .await
            } else {
                let repository =
                    parquet_storage_server::Repository::new(repo.path())
                        .expect("a repo");
                TestServer::start(|listener, shutdown| {
                    parquet_storage_server::serve_advertised(
                        listener, repository, advertise, shutdown,
                    )
                })
                .await
            }
        });
        let mut client = ChildProcess::python(
            &common::python(),
            "follow_location.py",
            &[front.grpc_url().as_ref(), "uploaded.parquet".as_ref()],
        );
        assert_eq!(client.next_line(), format!("locations: ['{there}']"));
        block_on(&runtime, "stopping the front server", front.stop());
        let finished = client.wait(TIMEOUT);
        assert!(finished.success(), "{}", finished.report());
        assert_eq!(finished.stdout.lines().last(), Some("rows: 3"));
        block_on(&runtime, "stopping our server", server.stop());
    }
}

fn characters() -> RecordBatch {
    let names = StringArray::from(vec!["Mario", "Luigi", "Peach"]);
    RecordBatch::try_from_iter([("Character", Arc::new(names) as ArrayRef)])
        .expect("a batch")
}

async fn connect(url: &str) -> FlightClient {
    let channel = Channel::from_shared(url.to_string())
        .expect("a valid URL")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    FlightClient::new(channel)
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn our_clients_against_the_pyarrow_server_of_the_python_recipe() {
    let repo = tempfile::tempdir().expect("a temporary folder");
    let mut server = ChildProcess::python(
        &common::python(),
        "parquet_storage_server.py",
        &[repo.path().as_os_str()],
    );
    let url = format!("http://{}", server.serving_on());
    let runtime = runtime();

    block_on(&runtime, "talking to the pyarrow server", async {
        let mut client = connect(&url).await;

        // The simple recipe's client steps.
        let names = StringArray::from(vec!["Mario", "Luigi", "Peach"]);
        let table = RecordBatch::try_from_iter([(
            "Character",
            Arc::new(names) as ArrayRef,
        )])
        .expect("a table");
        upload(&mut client, "uploaded.parquet", table.clone())
            .await
            .expect("pyarrow stores the upload");
        let descriptor =
            FlightDescriptor::new_path(vec!["uploaded.parquet".into()]);
        let info = client
            .get_flight_info(descriptor)
            .await
            .expect("pyarrow describes it");
        let described = describe(info.clone()).expect("a description");
        let lines: Vec<&str> = described.lines().collect();
        assert!(
            lines[0].starts_with("Path: uploaded.parquet Rows: 3 Size: "),
            "{described}"
        );
        assert_eq!(
            lines[1..],
            ["=== Schema ===", "Character: Utf8", "=============="]
        );
        let ticket = ticket(&info).expect("a ticket");
        assert_eq!(ticket.ticket, "uploaded.parquet".as_bytes());
        let batches: Vec<RecordBatch> = client
            .do_get(ticket)
            .await
            .expect("pyarrow sends it")
            .try_collect()
            .await
            .expect("the batches arrive");
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
        assert_eq!(batches[0].column(0), table.column(0));

        client
            .do_action(Action::new("drop_dataset", "uploaded.parquet"))
            .await
            .expect("pyarrow drops it")
            .try_collect::<Vec<_>>()
            .await
            .expect("the drop completes");
        let listed: Vec<FlightInfo> = client
            .list_flights("")
            .await
            .expect("pyarrow lists")
            .try_collect()
            .await
            .expect("the listing arrives");
        assert!(listed.is_empty(), "{listed:?}");

        // The streaming recipe's client steps.
        let ints = Int64Array::from_iter_values(0..4096);
        let batch =
            RecordBatch::try_from_iter([("ints", Arc::new(ints) as ArrayRef)])
                .expect("a batch");
        let batches = stream::iter((0..1024).map(move |_| Ok(batch.clone())));
        upload_stream(&mut client, "streamed.parquet", batches)
            .await
            .expect("pyarrow stores the stream");
        let rows = count_rows(&mut client, "streamed.parquet")
            .await
            .expect("pyarrow sends it back");
        assert_eq!(rows, 4_194_304);
    });

    let finished = server.stop();
    assert!(
        finished.success(),
        "the pyarrow server failed; {}",
        finished.report()
    );

    // pyarrow wrote streamed.parquet with its defaults (Snappy): our
    // streaming server serves it.
    let ours = start(&runtime, true, repo.path());
    let rows = block_on(&runtime, "reading pyarrow's file", async {
        let mut client = connect(&ours.url()).await;
        count_rows(&mut client, "streamed.parquet").await
    });
    assert_eq!(rows.expect("our server reads pyarrow's file"), 4_194_304);
    block_on(&runtime, "stopping our server", ours.stop());
}
