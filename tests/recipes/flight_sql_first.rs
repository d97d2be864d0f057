//! The first Flight SQL server (`examples/flight_sql_first_server.rs`):
//! every stream has the schema its FlightInfo announced, a wrong password
//! and an unknown token get `Unauthenticated`, a bad query or one with
//! parameters gets `InvalidArgument` in words that name the problem, an
//! upload gets `Unimplemented` without being decoded, and the server goes on
//! serving. With Python, the ADBC driver browses it, queries it and reads it
//! into pandas, with the DB-API's defaults and no warning. (Bound parameters
//! are the complete server's: `flight_sql.rs` and `flight_sql_adbc.rs`.)

use crate::common;

use crate::flight_sql_first_server;

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetTables, CommandPreparedStatementQuery,
    ProstMessageExt,
};
use arrow_flight::{FlightDescriptor, HandshakeRequest};
use arrow_ipc::CompressionType;
use common::{
    ChildProcess, TIMEOUT, TestServer, assert_clean_status, block_on, runtime,
    within,
};
use futures::{StreamExt, stream};
use prost::Message;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

async fn logged_in(channel: &Channel) -> FlightSqlServiceClient<Channel> {
    let mut client = FlightSqlServiceClient::new(channel.clone());
    within("the login", client.handshake("test", "password"))
        .await
        .expect("the login works");
    client
}

fn status_of(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => panic!("expected a gRPC status, got {other}"),
    }
}

/// Every stream the server sends has the schema its FlightInfo announced,
/// nullability included (the ADBC driver refuses a difference).
#[tokio::test]
async fn every_stream_has_the_schema_its_flight_info_announced() {
    let server = TestServer::start(flight_sql_first_server::serve).await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel).await;
    let tables = |include_schema| CommandGetTables {
        include_schema,
        ..Default::default()
    };
    let mut prepared = client
        .prepare("SELECT name, size FROM animals WHERE legs > 3".into(), None)
        .await
        .expect("a prepared statement");
    let prepared_schema = prepared.dataset_schema().expect("a schema").clone();
    let infos = vec![
        client.get_sql_info(vec![]).await,
        client.get_catalogs().await,
        client.get_db_schemas(CommandGetDbSchemas::default()).await,
        client.get_tables(tables(true)).await,
        client.get_tables(tables(false)).await,
        client.execute("SELECT * FROM animals".into(), None).await,
        client
            .execute(
                "SELECT count(*), max(size), 'x' || name FROM animals".into(),
                None,
            )
            .await,
        client
            .execute("SELECT * FROM animals WHERE legs > 100".into(), None)
            .await,
        prepared.execute().await,
    ];
    for (at, info) in infos.into_iter().enumerate() {
        let info = info.expect("a FlightInfo");
        let announced = info.clone().try_decode_schema().expect("a schema");
        if at == 8 {
            assert_eq!(announced, prepared_schema, "the schema of the prepared");
        }
        let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
        let mut stream = client.do_get(ticket).await.expect("the stream");
        while let Some(batch) = stream.next().await {
            assert_eq!(batch.expect("a batch").schema().as_ref(), &announced);
        }
        let sent = stream.schema().expect("the stream sent its schema");
        assert_eq!(sent.as_ref(), &announced);
    }
    prepared.close().await.expect("closed");
    drop((client, channel));
    server.stop().await;
}

/// A Handshake with a wrong password or user, base64 with or without its
/// padding, and a call with a token the server did not give out or without
/// any, get `Unauthenticated`; the right login, padded or not, still works.
#[tokio::test]
async fn a_wrong_password_or_token_gets_unauthenticated() {
    let server = TestServer::start(flight_sql_first_server::serve).await;
    let channel = server.channel().await;
    for credentials in
        ["dGVzdDp3cm9uZw==", "dGVzdDp3cm9uZw", "bm9ib2R5OnBhc3N3b3Jk"]
    {
        let mut request = Request::new(stream::iter([HandshakeRequest::default()]));
        let header = format!("Basic {credentials}").parse().expect("a header");
        request.metadata_mut().insert("authorization", header);
        let mut raw = FlightServiceClient::new(channel.clone());
        let status = raw.handshake(request).await.expect_err("refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert_eq!(status.message(), "wrong user, password or token");
    }
    for credentials in ["dGVzdDpwYXNzd29yZA==", "dGVzdDpwYXNzd29yZA"] {
        let mut request = Request::new(stream::iter([HandshakeRequest::default()]));
        let header = format!("Basic {credentials}").parse().expect("a header");
        request.metadata_mut().insert("authorization", header);
        let mut raw = FlightServiceClient::new(channel.clone());
        let response = raw.handshake(request).await.expect("logged in");
        let bearer = response.metadata().get("authorization");
        let bearer = bearer.and_then(|b| b.to_str().ok()).unwrap_or("");
        assert!(bearer.starts_with("Bearer "), "{credentials}: {bearer:?}");
    }
    let mut stranger = FlightSqlServiceClient::new(channel.clone());
    stranger.set_token("not-a-token".into());
    let error = stranger.get_catalogs().await.expect_err("refused");
    let status = status_of(error);
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "wrong user, password or token");
    stranger.clear_token();
    let error = stranger.get_catalogs().await.expect_err("refused");
    let status = status_of(error);
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "no credentials: log in first");
    let mut client = logged_in(&channel).await;
    client.get_catalogs().await.expect("a logged-in call works");
    drop((client, stranger, channel));
    server.stop().await;
}

/// A query SQLite cannot compile, plainly or prepared, gets
/// `InvalidArgument` with SQLite's own words; a statement that writes, or a
/// query with parameters, is refused before it runs; the server goes on
/// serving.
#[tokio::test]
async fn a_bad_query_gets_invalid_argument_in_sqlites_words() {
    let server = TestServer::start(flight_sql_first_server::serve).await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel).await;
    for (sql, words) in [
        ("SELECT * FROM plants", "no such table: plants"),
        ("SELEC * FROM animals", "near \"SELEC\": syntax error"),
        ("SELECT colour FROM animals", "no such column: colour"),
        ("DELETE FROM animals", "this server only runs queries"),
        ("CREATE TABLE t (x)", "this server only runs queries"),
        (
            "SELECT * FROM animals WHERE legs > ?",
            "takes no parameters",
        ),
        ("SELECT :legs", "takes no parameters"),
    ] {
        let plain = client.execute(sql.into(), None).await;
        let prepared = client.prepare(sql.into(), None).await.map(|_| ());
        for error in [plain.map(|_| ()), prepared] {
            let status = status_of(error.expect_err("refused"));
            assert_eq!(status.code(), Code::InvalidArgument, "{sql}: {status:?}");
            assert!(status.message().contains(words), "{sql}: {status:?}");
            assert_clean_status(&status, &[sql]);
        }
    }
    let info = client
        .execute("SELECT count(*) AS n FROM animals".into(), None)
        .await
        .expect("still serving");
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    let batches: Vec<_> =
        client.do_get(ticket).await.expect("rows").collect().await;
    let batch = batches[0].as_ref().expect("a batch");
    let count = arrow_cast::display::array_value_to_string(batch.column(0), 0);
    assert_eq!(count.expect("a count"), "4", "the DELETE did not run");
    drop((client, channel));
    server.stop().await;
}

/// The ADBC driver's DB-API, with its defaults (autocommit off), and pandas
/// over it.
#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn the_adbc_driver_and_pandas_browse_and_query_it() {
    let runtime = runtime();
    let server = block_on(
        &runtime,
        "starting the server",
        TestServer::start(flight_sql_first_server::serve),
    );
    let url = server.grpc_url();
    let script = "flight_sql_first_adbc.py";
    let client = ChildProcess::python(&common::python(), script, &[url.as_ref()]);
    let finished = client.wait(TIMEOUT);
    assert!(
        finished.success(),
        "the ADBC client failed; {}",
        finished.report()
    );
    let expected = [
        "vendor first Flight SQL server",
        "table ('', 'main') animals ['name', 'legs', 'size']",
        "schema [DataType(string), DataType(int64), DataType(double)]",
        "legs > 3 [('cat',), ('spider',)]",
        "ProgrammingError INVALID_ARGUMENT: [FlightSQL] no such table: plants \
         (InvalidArgument; Prepare)",
        "ProgrammingError INVALID_ARGUMENT: [FlightSQL] this server takes no \
         parameters (InvalidArgument; Prepare)",
        "pandas ['str', 'int64', 'float64'] ['snail', 'ostrich', 'cat', 'spider']",
    ];
    let lines: Vec<&str> = finished.stdout.lines().collect();
    assert_eq!(lines, expected, "stderr:\n{}", finished.stderr);
    assert_eq!(finished.stderr, "", "the driver warned");
    block_on(&runtime, "stopping the server", server.stop());
}

/// An upload of parameters, here a few hundred bytes that claim 4 EiB once
/// decompressed (LZ4 or ZSTD), gets `Unimplemented` before anything is
/// decoded (an unguarded decoder would abort the server on LZ4's failed
/// allocation); a query after them is answered. The complete server, which
/// takes parameters, refuses such an upload with `ResourceExhausted`
/// (`flight_sql.rs`).
#[tokio::test]
async fn a_parameter_upload_gets_unimplemented_and_the_server_serves_on() {
    let server = TestServer::start(flight_sql_first_server::serve).await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel).await;
    let token = client.token().cloned().expect("a token");
    let mut raw = FlightServiceClient::new(channel.clone());
    let sql = "SELECT * FROM animals";
    let bind = CommandPreparedStatementQuery {
        prepared_statement_handle: sql.as_bytes().to_vec().into(),
    };
    for compression in [CompressionType::LZ4_FRAME, CompressionType::ZSTD] {
        let descriptor = FlightDescriptor::new_cmd(bind.as_any().encode_to_vec());
        let bomb = common::compression_bomb(descriptor, compression).await;
        let status = common::put(&mut raw, Some(&token), bomb).await;
        let status = status.expect_err("the upload is refused");
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    }
    let mut prepared = client.prepare(sql.into(), None).await.expect("prepared");
    let one = RecordBatch::try_from_iter([(
        "legs",
        Arc::new(Int64Array::from(vec![3])) as ArrayRef,
    )]);
    prepared.set_parameters(one.expect("a row")).expect("bound");
    let status = status_of(prepared.execute().await.expect_err("refused"));
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    let info = client.execute(sql.into(), None).await;
    assert!(info.is_ok(), "a query after the uploads: {info:?}");
    drop((client, raw));
    server.stop().await;
}
