//! The in-memory key-value service: whole datasets or nothing, a capacity,
//! keys checked, many clients at once, and pyarrow as a client.

use crate::common;
use crate::key_value_server;

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{Int64Array, RecordBatch};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::{Action, FlightClient, FlightData, FlightDescriptor, Ticket};
use arrow_schema::{DataType, Field, Schema};
use common::{ChildProcess, Shutdown, TestServer};
use futures::{StreamExt, TryStreamExt, stream};
use key_value_server::{EndOfStreamLayer, KeyValueService, serve};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Status};

/// The recipe's server, as `serve` builds it, with a store of `capacity`
/// bytes instead of its 256 MiB.
async fn start_with_capacity(capacity: usize) -> TestServer {
    TestServer::start(move |listener: TcpListener, shutdown: Shutdown| {
        Server::builder()
            .layer(EndOfStreamLayer)
            .add_service(FlightServiceServer::new(KeyValueService::new(capacity)))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
    })
    .await
}

fn path(segments: &[&str]) -> FlightDescriptor {
    FlightDescriptor::new_path(segments.iter().map(|s| s.to_string()).collect())
}

fn ints(value: i64, rows: usize) -> RecordBatch {
    let schema = Schema::new(vec![Field::new("n", DataType::Int64, false)]);
    let column = Int64Array::from(vec![value; rows]);
    RecordBatch::try_new(Arc::new(schema), vec![Arc::new(column)]).expect("batch")
}

fn status_from(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

async fn put(
    client: &mut FlightClient,
    key: &[&str],
    batches: Vec<RecordBatch>,
) -> Result<(), Status> {
    let upload = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(path(key)))
        .build(stream::iter(batches.into_iter().map(Ok)));
    let acks: Vec<_> = client
        .do_put(upload)
        .await
        .map_err(status_from)?
        .try_collect()
        .await
        .map_err(status_from)?;
    assert!(acks.is_empty());
    Ok(())
}

async fn get(client: &mut FlightClient, key: &str) -> Result<Vec<i64>, Status> {
    let batches: Vec<RecordBatch> = client
        .do_get(Ticket::new(key.to_string()))
        .await
        .map_err(status_from)?
        .try_collect()
        .await
        .map_err(status_from)?;
    let mut values = Vec::new();
    for batch in batches {
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("Int64");
        values.extend(column.values().iter().copied());
    }
    Ok(values)
}

async fn keys(client: &mut FlightClient) -> Vec<String> {
    let infos: Vec<_> = client
        .list_flights("")
        .await
        .expect("list")
        .try_collect()
        .await
        .expect("list");
    infos
        .iter()
        .map(|info| {
            info.flight_descriptor
                .as_ref()
                .expect("descriptor")
                .path
                .join("/")
        })
        .collect()
}

#[test]
fn an_upload_cut_off_midway_stores_nothing_and_keeps_the_old_dataset() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the cut-off test", async {
        let server = TestServer::start(serve).await;
        let mut client = server.client().await;
        put(&mut client, &["kept"], vec![ints(1, 10)])
            .await
            .expect("stored");

        for key in ["kept", "new"] {
            let sent: Vec<FlightData> = FlightDataEncoderBuilder::new()
                .with_flight_descriptor(Some(path(&[key])))
                .build(stream::iter([Ok(ints(9, 1000)), Ok(ints(9, 1000))]))
                .map(|data| data.expect("encoded"))
                .collect()
                .await;
            // The schema and two batches, then nothing until the client
            // goes away.
            let messages = stream::iter(sent).chain(stream::pending());
            let mut raw = FlightServiceClient::new(server.channel().await);
            let call = tokio::spawn(async move {
                raw.do_put(Request::new(messages)).await.map(drop)
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            call.abort();
            let _ = call.await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(
                keys(&mut client).await,
                ["kept"],
                "after cutting off {key:?}"
            );
        }
        assert_eq!(get(&mut client, "kept").await.expect("kept"), vec![1; 10]);
        drop(client);
        server.stop().await;
    });
}

#[test]
fn an_upload_beyond_the_capacity_is_refused_and_changes_nothing() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the capacity test", async {
        // 1 MiB: room for 100 000 Int64 values (about 800 KB), not 200 000.
        let server = start_with_capacity(1024 * 1024).await;
        let mut client = server.client().await;
        put(&mut client, &["a"], vec![ints(1, 100_000)])
            .await
            .expect("fits");

        let refused = put(&mut client, &["b"], vec![ints(2, 100_000)]).await;
        let status = refused.expect_err("beyond the capacity");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(
            status.message(),
            "the store holds at most 1 MiB, and would hold 2 MiB"
        );
        // A single upload larger than the store is refused while it arrives.
        let refused = put(&mut client, &["c"], vec![ints(3, 100_000); 3]).await;
        assert_eq!(
            refused.expect_err("too large").code(),
            Code::ResourceExhausted
        );
        assert_eq!(keys(&mut client).await, ["a"]);

        // Replacing a dataset counts only the new one.
        put(&mut client, &["a"], vec![ints(4, 100_000)])
            .await
            .expect("replaces");
        assert_eq!(get(&mut client, "a").await.expect("a"), vec![4; 100_000]);
        // And deleting makes room.
        let results: Vec<_> = client
            .do_action(Action::new("DELETE", "a"))
            .await
            .expect("delete")
            .try_collect()
            .await
            .expect("results");
        assert_eq!(results.len(), 1);
        assert_eq!(&results[0][..], b"deleted \"a\"");
        put(&mut client, &["b"], vec![ints(2, 100_000)])
            .await
            .expect("fits now");
        drop(client);
        server.stop().await;
    });
}

#[test]
fn bad_keys_tickets_and_actions_are_refused_by_name_and_the_server_serves_on() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the bad input test", async {
        let server = TestServer::start(serve).await;
        let mut client = server.client().await;
        let long = "x".repeat(256);
        let descriptors = [
            (
                FlightDescriptor::new_cmd("profiles"),
                "the descriptor is not a path",
            ),
            (path(&[]), "the path is empty"),
            (path(&[""]), "a path segment is empty or too long"),
            (path(&[&long]), "a path segment is empty or too long"),
            (
                path(&["a/b"]),
                "the path segment \"a/b\" holds '/' or a control character",
            ),
            (
                path(&["a\nb"]),
                "the path segment \"a\\nb\" holds '/' or a control character",
            ),
        ];
        for (descriptor, expected) in &descriptors {
            let status = status_from(
                client
                    .get_flight_info(descriptor.clone())
                    .await
                    .expect_err("bad key"),
            );
            assert_eq!(status.code(), Code::InvalidArgument, "{descriptor:?}");
            assert_eq!(status.message(), *expected);
            let sent: Vec<&str> =
                descriptor.path.iter().map(String::as_str).collect();
            common::assert_clean_status(&status, &sent);

            let status =
                status_of(client.get_schema(descriptor.clone()).await.map(drop));
            assert_eq!(status.code(), Code::InvalidArgument, "{descriptor:?}");

            let upload = FlightDataEncoderBuilder::new()
                .with_flight_descriptor(Some(descriptor.clone()))
                .build(stream::iter([Ok(ints(1, 1))]));
            let result = match client.do_put(upload).await {
                Ok(acks) => acks.try_collect::<Vec<_>>().await.map(drop),
                Err(error) => Err(error),
            };
            let status = status_of(result);
            assert_eq!(status.code(), Code::InvalidArgument, "{descriptor:?}");
            assert_eq!(status.message(), *expected);
        }
        // An upload with no descriptor at all.
        let upload =
            FlightDataEncoderBuilder::new().build(stream::iter([Ok(ints(1, 1))]));
        let result = match client.do_put(upload).await {
            Ok(acks) => acks.try_collect::<Vec<_>>().await.map(drop),
            Err(error) => Err(error),
        };
        assert_eq!(status_of(result).message(), "no descriptor");

        let status = status_from(
            client
                .do_get(Ticket::new(vec![0xff, 0xfe]))
                .await
                .expect_err("bad ticket"),
        );
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, "the ticket is not a key")
        );
        let status = status_from(
            client
                .do_get(Ticket::new("nothing"))
                .await
                .expect_err("absent"),
        );
        assert_eq!(
            (status.code(), status.message()),
            (Code::NotFound, "no dataset under \"nothing\"")
        );
        let status = status_from(
            client
                .get_flight_info(path(&["nothing"]))
                .await
                .expect_err("absent"),
        );
        assert_eq!(status.code(), Code::NotFound);

        let actions = [
            (
                Action::new("DELETE", "nothing"),
                Code::NotFound,
                "no dataset under \"nothing\"",
            ),
            (
                Action::new("DROP", "x"),
                Code::InvalidArgument,
                "unknown action \"DROP\"; the one action is DELETE",
            ),
            (
                Action {
                    r#type: "DELETE".into(),
                    body: vec![0xff].into(),
                },
                Code::InvalidArgument,
                "the body of DELETE is not a key",
            ),
        ];
        for (action, code, expected) in actions {
            let status = status_of(match client.do_action(action).await {
                Ok(results) => results.try_collect::<Vec<_>>().await.map(drop),
                Err(error) => Err(error),
            });
            assert_eq!((status.code(), status.message()), (code, expected));
            common::assert_clean_status(&status, &["nothing", "DROP"]);
        }

        // Still serving, and a key of two segments works.
        put(&mut client, &["sales", "2026"], vec![ints(7, 3)])
            .await
            .expect("stored");
        assert_eq!(keys(&mut client).await, ["sales/2026"]);
        assert_eq!(
            get(&mut client, "sales/2026").await.expect("get"),
            vec![7; 3]
        );
        let schema = client
            .get_schema(path(&["sales", "2026"]))
            .await
            .expect("schema");
        assert_eq!(schema.field(0).name(), "n");
        drop(client);
        server.stop().await;
    });
}

fn status_of(result: Result<(), FlightError>) -> Status {
    status_from(result.expect_err("refused"))
}

#[test]
fn concurrent_uploads_and_reads_see_only_whole_datasets() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the concurrency test", async {
        const BATCHES: usize = 8;
        const ROWS: usize = 10_000;
        let server = TestServer::start(serve).await;
        let mut client = server.client().await;
        put(&mut client, &["race"], vec![ints(-1, ROWS); BATCHES])
            .await
            .expect("stored");

        let mut uploads = Vec::new();
        for value in 0..8 {
            let mut client = server.client().await;
            uploads.push(tokio::spawn(async move {
                put(&mut client, &["race"], vec![ints(value, ROWS); BATCHES]).await
            }));
        }
        let mut reads = 0;
        while !uploads.iter().all(|upload| upload.is_finished()) && reads < 1000 {
            let values = get(&mut client, "race").await.expect("a dataset");
            assert_eq!(values.len(), BATCHES * ROWS, "a torn read");
            assert!(values.iter().all(|v| *v == values[0]), "a mixed read");
            reads += 1;
        }
        for upload in uploads {
            upload.await.expect("task").expect("each upload succeeds");
        }
        let values = get(&mut client, "race").await.expect("the dataset");
        assert!(
            (0..8).contains(&values[0]) && values.iter().all(|v| *v == values[0])
        );
        drop(client);
        server.stop().await;
    });
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn a_pyarrow_client_puts_describes_gets_lists_and_deletes() {
    let runtime = common::runtime();
    let server =
        common::block_on(&runtime, "starting the server", TestServer::start(serve));
    let url = server.grpc_url();
    let client = ChildProcess::python(
        &common::python(),
        "key_value_client.py",
        &[OsStr::new(&url)],
    );
    let finished = client.wait(common::TIMEOUT);
    assert!(finished.success(), "{}", finished.report());
    let stdout = finished.stdout;
    let expected = "put 2 batches\n\
        info: [b'profiles'] n: string rows=6 endpoints=1 locations=0\n\
        get: ['Ronald', 'David', 'Francisco', 'Manuel', 'Felipe', 'JJ']\n\
        list: [[b'profiles']]\n\
        actions: ['DELETE']\n\
        delete: deleted \"profiles\"\n\
        list: []\n\
        after delete: ArrowKeyError: Flight returned not found error, with message: no dataset under \"profiles\"\n";
    assert_eq!(stdout, expected.replace(" n: string", " name: string"));
    common::block_on(&runtime, "stopping the server", server.stop());
}
