//! The Flight SQL recipe's server in front of SQLite: metadata whose
//! streams match their announced schemas, queries streamed in bounded
//! batches (and the server program's peak memory while it streams a million
//! rows), updates, prepared statements bound through DoPut, ingestion,
//! transactions that others do not see into, session options and
//! CloseSession, CancelFlightInfo, PollFlightInfo, a query that stops when
//! its client goes away, refused input (and the server goes on serving),
//! its login, and the re-handshake pitfall of arrow-flight's
//! `FlightSqlServiceClient`.

use crate::common;

use crate::basic_auth_server;

use crate::flight_sql_client;

use crate::flight_sql_server;

use std::sync::Arc;

use arrow_array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::TableDefinitionOptions;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandStatementIngest, EndTransaction,
    ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{Action, FlightDescriptor, HandshakeRequest, Ticket};
use arrow_ipc::CompressionType;
use arrow_schema::{DataType, Field, Schema};
use common::{TestServer, assert_clean_status, within};
use flight_sql_client::{fetch, query};
use flight_sql_server::batches::BATCH_ROWS;
use flight_sql_server::serve_database;
use futures::{StreamExt, stream};
use prost::Message;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// The server on a database of its own in a new temporary folder.
async fn start() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("test.db");
    let server = TestServer::start(move |l, s| serve_database(l, s, path)).await;
    (server, dir)
}

/// A Flight SQL client on `channel`, logged in as `user`.
async fn logged_in(
    channel: &Channel,
    user: &str,
    password: &str,
) -> FlightSqlServiceClient<Channel> {
    let mut client = FlightSqlServiceClient::new(channel.clone());
    let answer = within("the login", client.handshake(user, password))
        .await
        .expect("the login works");
    assert_eq!(&answer[..], user.as_bytes(), "the handshake names the user");
    client
}

fn status_of(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => panic!("expected a gRPC status, got {other}"),
    }
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    let values = batch.column_by_name(name).expect("the column");
    values
        .as_any()
        .downcast_ref::<T>()
        .expect("the column's type")
}

fn strings(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    let mut all = Vec::new();
    for batch in batches {
        let values = column::<StringArray>(batch, name);
        all.extend(values.iter().map(|v| v.map(String::from)));
    }
    all
}

fn integers(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    let mut all = Vec::new();
    for batch in batches {
        all.extend(column::<Int64Array>(batch, name).values().iter().copied());
    }
    all
}

/// A statement that changes data, sent as a query (as the ADBC driver's
/// `execute` does), runs when its ticket is fetched, and its stream is a
/// batch of no columns, not an error.
#[tokio::test]
async fn an_update_sent_as_a_query_runs_and_streams_no_columns() {
    let (server, _dir) = start().await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel, "test", "password").await;
    let sql = "DELETE FROM sightings WHERE place = 'park'";
    let batches = within("the delete", query(&mut client, sql)).await;
    let batches = batches.expect("the delete streams");
    assert!(
        batches
            .iter()
            .all(|b| b.num_columns() == 0 && b.num_rows() == 0),
        "{batches:?}"
    );
    let sql = "SELECT count(*) AS n FROM sightings";
    let left = within("the count", query(&mut client, sql)).await;
    assert_eq!(integers(&left.expect("the count"), "n"), [2]);
    drop((client, channel));
    server.stop().await;
}

/// Every call the server answers with a stream: the stream's schema is the
/// schema its FlightInfo announced, nullability included (ADBC refuses a
/// difference).
#[tokio::test]
async fn every_stream_has_the_schema_its_flight_info_announced() {
    let (server, _dir) = start().await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel, "test", "password").await;
    let tables = CommandGetTables {
        include_schema: true,
        ..Default::default()
    };
    let infos = vec![
        client
            .get_sql_info(vec![SqlInfo::FlightSqlServerName])
            .await,
        client
            .get_xdbc_type_info(CommandGetXdbcTypeInfo::default())
            .await,
        client.get_catalogs().await,
        client.get_db_schemas(CommandGetDbSchemas::default()).await,
        client.get_tables(tables).await,
        client.get_table_types().await,
        client
            .get_primary_keys(CommandGetPrimaryKeys {
                table: "animals".into(),
                ..Default::default()
            })
            .await,
        client
            .get_exported_keys(CommandGetExportedKeys {
                table: "animals".into(),
                ..Default::default()
            })
            .await,
        client
            .get_imported_keys(CommandGetImportedKeys {
                table: "sightings".into(),
                ..Default::default()
            })
            .await,
        client
            .get_cross_reference(CommandGetCrossReference {
                pk_table: "animals".into(),
                fk_table: "sightings".into(),
                ..Default::default()
            })
            .await,
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
    ];
    for info in infos {
        let info = info.expect("a FlightInfo");
        let announced = info.clone().try_decode_schema().expect("a schema");
        let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
        let mut stream = client.do_get(ticket).await.expect("the stream");
        while let Some(batch) = stream.next().await {
            let batch = batch.expect("a batch");
            assert_eq!(batch.schema().as_ref(), &announced);
        }
        let sent = stream.schema().expect("the stream sent its schema");
        assert_eq!(sent.as_ref(), &announced);
    }
    drop((client, channel));
    server.stop().await;
}

#[tokio::test]
async fn metadata_tells_the_truth_about_the_database() {
    let (server, _dir) = start().await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel, "test", "password").await;
    let tables = CommandGetTables {
        include_schema: true,
        ..Default::default()
    };
    let info = client.get_tables(tables).await.expect("tables");
    let found = fetch(&mut client, info).await.expect("tables");
    assert_eq!(
        strings(&found, "table_name"),
        [Some("animals".into()), Some("sightings".into())]
    );
    let info = client
        .execute("SELECT * FROM sightings".into(), None)
        .await
        .expect("info");
    let schema = info.try_decode_schema().expect("schema");
    let types: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(
        types,
        [
            DataType::Int64,
            DataType::Utf8,
            DataType::Utf8,
            DataType::Binary
        ],
        "declared INTEGER, TEXT, TEXT, BLOB"
    );
    let info = client
        .get_imported_keys(CommandGetImportedKeys {
            table: "sightings".into(),
            ..Default::default()
        })
        .await
        .expect("keys");
    let keys = fetch(&mut client, info).await.expect("keys");
    assert_eq!(strings(&keys, "pk_table_name"), [Some("animals".into())]);
    assert_eq!(strings(&keys, "fk_column_name"), [Some("animal".into())]);
    drop((client, channel));
    server.stop().await;
}

/// A result of a million rows comes in batches of at most BATCH_ROWS rows.
#[tokio::test]
async fn a_large_result_streams_in_bounded_batches() {
    let (server, _dir) = start().await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel, "test", "password").await;
    let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
               WHERE i < 1000000) SELECT i, 'row ' || i AS label FROM n";
    let info = client.execute(sql.into(), None).await.expect("info");
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    let mut stream = client.do_get(ticket).await.expect("the stream");
    let (mut total, mut batches, mut last) = (0usize, 0usize, 0i64);
    while let Some(batch) = stream.next().await {
        let batch = batch.expect("a batch");
        assert!(batch.num_rows() <= BATCH_ROWS, "{}", batch.num_rows());
        let values = column::<Int64Array>(&batch, "i");
        if !values.is_empty() {
            assert_eq!(values.value(0), last + 1, "in order, none lost");
            last = values.value(values.len() - 1);
        }
        total += batch.num_rows();
        batches += 1;
    }
    assert_eq!(total, 1_000_000);
    assert!(batches >= 1_000_000 / BATCH_ROWS, "{batches} batches");
    drop((stream, client, channel));
    server.stop().await;
}

#[tokio::test]
async fn updates_prepared_statements_and_ingestion_change_the_database() {
    let (server, _dir) = start().await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel, "test", "password").await;
    let changed = client
        .execute_update(
            "UPDATE animals SET legs = legs WHERE legs = 4".into(),
            None,
        )
        .await
        .expect("an update");
    assert_eq!(changed, 3);

    // A prepared insert bound with three rows, then a query bound twice.
    let mut insert = client
        .prepare("INSERT INTO animals VALUES (?, ?, ?)".into(), None)
        .await
        .expect("prepared");
    assert_eq!(insert.parameter_schema().expect("schema").fields().len(), 3);
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("legs", DataType::Int64, false),
        Field::new("size", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["snail", "bee", "crab"])),
            Arc::new(Int64Array::from(vec![0, 6, 10])),
            Arc::new(Float64Array::from(vec![3.0, 1.5, 20.0])),
        ],
    )
    .expect("a batch");
    insert.set_parameters(batch).expect("bound");
    assert_eq!(insert.execute_update().await.expect("inserted"), 3);
    insert.close().await.expect("closed");

    let mut select = client
        .prepare(
            "SELECT name FROM animals WHERE legs = ? ORDER BY name".into(),
            None,
        )
        .await
        .expect("prepared");
    let legs =
        Arc::new(Schema::new(vec![Field::new("legs", DataType::Int32, true)]));
    for (value, names) in [(6, vec!["ant", "bee"]), (10, vec!["crab"])] {
        let values = Arc::new(arrow_array::Int32Array::from(vec![value]));
        let batch =
            RecordBatch::try_new(legs.clone(), vec![values]).expect("batch");
        select.set_parameters(batch).expect("bound");
        let info = select.execute().await.expect("info");
        let found = fetch(&mut client, info).await.expect("rows");
        let names: Vec<_> =
            names.into_iter().map(|n| Some(n.to_string())).collect();
        assert_eq!(strings(&found, "name"), names);
    }
    select.close().await.expect("closed");

    // Ingestion: create, append, replace, and a refused create.
    let data = || {
        let schema =
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let values = Arc::new(Int64Array::from(vec![1, 2, 3]));
        let batch = RecordBatch::try_new(schema, vec![values]).expect("batch");
        stream::iter([Ok(batch)])
    };
    let command = |if_not_exist: i32, if_exists: i32| CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist,
            if_exists,
        }),
        table: "numbers".into(),
        ..Default::default()
    };
    // if_not_exist: 1 create, 2 fail; if_exists: 1 fail, 2 append, 3 replace.
    assert_eq!(
        client
            .execute_ingest(command(1, 1), data())
            .await
            .expect("create"),
        3
    );
    assert_eq!(
        client
            .execute_ingest(command(2, 2), data())
            .await
            .expect("append"),
        3
    );
    let all = query(&mut client, "SELECT x FROM numbers")
        .await
        .expect("rows");
    assert_eq!(integers(&all, "x"), [1, 2, 3, 1, 2, 3]);
    let refused = client.execute_ingest(command(1, 1), data()).await;
    assert_eq!(
        status_of(refused.expect_err("exists")).code(),
        Code::AlreadyExists
    );
    assert_eq!(
        client
            .execute_ingest(command(2, 3), data())
            .await
            .expect("replace"),
        3
    );
    let all = query(&mut client, "SELECT x FROM numbers")
        .await
        .expect("rows");
    assert_eq!(integers(&all, "x"), [1, 2, 3]);
    drop((client, channel));
    server.stop().await;
}

#[tokio::test]
async fn a_transaction_is_invisible_to_others_until_it_commits() {
    let (server, _dir) = start().await;
    let channel = server.channel().await;
    let mut writer = logged_in(&channel, "test", "password").await;
    let mut reader = logged_in(&channel, "test", "password").await;
    let count = "SELECT count(*) AS n FROM animals";
    let id = writer.begin_transaction().await.expect("begun");
    writer
        .execute_update(
            "DELETE FROM animals WHERE name IN ('spider', 'ostrich', 'horse')"
                .into(),
            Some(id.clone()),
        )
        .await
        .expect("deleted");
    let inside = writer
        .execute(count.into(), Some(id.clone()))
        .await
        .expect("info");
    assert_eq!(
        integers(&fetch(&mut writer, inside).await.expect("rows"), "n"),
        [3]
    );
    let outside = query(&mut reader, count).await.expect("rows");
    assert_eq!(integers(&outside, "n"), [6], "the reader sees no change");
    writer
        .end_transaction(id.clone(), EndTransaction::Commit)
        .await
        .expect("commit");
    assert_eq!(
        integers(&query(&mut reader, count).await.expect("rows"), "n"),
        [3]
    );

    // An ended transaction, and another session's, cannot be used.
    let ended = writer
        .execute_update("DELETE FROM animals".into(), Some(id))
        .await;
    assert_eq!(status_of(ended.expect_err("ended")).code(), Code::NotFound);
    let theirs = writer.begin_transaction().await.expect("begun");
    let mut admin = logged_in(&channel, "admin", "secret").await;
    let other = admin
        .execute_update("DELETE FROM animals".into(), Some(theirs.clone()))
        .await;
    assert_eq!(
        status_of(other.expect_err("not admin's")).code(),
        Code::NotFound
    );
    writer
        .end_transaction(theirs, EndTransaction::Rollback)
        .await
        .expect("rollback");
    assert_eq!(
        integers(&query(&mut reader, count).await.expect("rows"), "n"),
        [3]
    );
    drop((writer, reader, admin, channel));
    server.stop().await;
}

/// A write sent as a query (as ADBC's DB-API `execute` sends every
/// statement) is done when its FlightInfo comes back, inside its
/// transaction: a client may end the transaction before it reads the
/// result, or never read it. Before, the write ran in DoGet: committed
/// first, it was lost; rolled back first, it ran outside the transaction.
#[tokio::test]
async fn a_write_sent_as_a_query_is_done_before_its_transaction_ends() {
    let (server, _dir) = start().await;
    let channel = server.channel().await;
    let mut writer = logged_in(&channel, "test", "password").await;
    let mut reader = logged_in(&channel, "test", "password").await;
    let count = "SELECT count(*) AS n FROM animals";
    for (end, delete, left) in [
        (
            EndTransaction::Rollback,
            "DELETE FROM animals WHERE legs = 8",
            6,
        ),
        (
            EndTransaction::Commit,
            "DELETE FROM animals WHERE legs = 2",
            5,
        ),
    ] {
        let id = writer.begin_transaction().await.expect("begun");
        let info = writer
            .execute(delete.into(), Some(id.clone()))
            .await
            .expect("info");
        writer.end_transaction(id, end).await.expect("ended");
        let rows = integers(&query(&mut reader, count).await.expect("rows"), "n");
        assert_eq!(rows, [left], "after {end:?} of {delete:?}");
        let result = fetch(&mut writer, info).await.expect("the empty result");
        assert_eq!(result.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
        let rows = integers(&query(&mut reader, count).await.expect("rows"), "n");
        assert_eq!(rows, [left], "reading the result wrote nothing");
    }
    let returning = writer
        .execute("DELETE FROM animals RETURNING name".into(), None)
        .await;
    let status = status_of(returning.expect_err("refused"));
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    drop((writer, reader, channel));
    server.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_and_the_server_keeps_serving() {
    let (server, dir) = start().await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel, "test", "password").await;
    let outside = dir.path().join("stolen.db");
    let attach = format!("ATTACH DATABASE '{}' AS other", outside.display());
    let vacuum = format!("VACUUM INTO '{}'", outside.display());
    let cases = [
        (
            "SELECT * FROM plants",
            Code::InvalidArgument,
            "no such table: plants",
        ),
        ("SELEC 1", Code::InvalidArgument, "syntax error"),
        ("", Code::InvalidArgument, ""),
        (
            "SELECT 1; DROP TABLE animals",
            Code::InvalidArgument,
            "more than one",
        ),
        (attach.as_str(), Code::PermissionDenied, "refuses ATTACH"),
        (vacuum.as_str(), Code::PermissionDenied, "refuses ATTACH"),
        (
            "SELECT load_extension('x')",
            Code::InvalidArgument,
            "not authorized",
        ),
        (
            "PRAGMA writable_schema = 1",
            Code::PermissionDenied,
            "pragmas",
        ),
        (
            "SELECT * FROM animals WHERE legs = ?",
            Code::InvalidArgument,
            "parameters",
        ),
    ];
    for (sql, code, words) in cases {
        let status = status_of(query(&mut client, sql).await.expect_err(sql));
        assert_eq!(status.code(), code, "{sql:?}: {status}");
        assert!(status.message().contains(words), "{sql:?}: {status}");
        assert_clean_status(&status, &[sql]);
    }
    assert!(
        !outside.exists(),
        "no file was written outside the database"
    );
    let status = status_of(
        client
            .execute_update(
                "INSERT INTO sightings (animal, place) VALUES ('x', 'y')".into(),
                None,
            )
            .await
            .expect_err("a foreign key"),
    );
    assert_eq!(status.code(), Code::FailedPrecondition, "{status}");

    // Unknown and closed prepared-statement handles.
    let prepared = client
        .prepare("SELECT name FROM animals".into(), None)
        .await
        .expect("prepared");
    let handle = CommandPreparedStatementQuery {
        prepared_statement_handle: b"made up".to_vec().into(),
    };
    let token = client.token().cloned().expect("a token");
    let mut raw = FlightServiceClient::new(channel.clone());
    let bearer = format!("Bearer {token}");
    let bearer = |metadata: &mut tonic::metadata::MetadataMap| {
        let value = bearer.parse().expect("a header");
        metadata.insert("authorization", value);
    };
    let mut request = Request::new(Ticket::new(handle.as_any().encode_to_vec()));
    bearer(request.metadata_mut());
    let status = raw.do_get(request).await.expect_err("unknown handle");
    assert_eq!(status.code(), Code::NotFound, "{status}");
    assert!(status.message().contains("no such prepared statement"));
    prepared.close().await.expect("closed");
    let close = ActionClosePreparedStatementRequest {
        prepared_statement_handle: b"made up".to_vec().into(),
    };
    let mut request = Request::new(Action::new(
        "ClosePreparedStatement",
        close.as_any().encode_to_vec(),
    ));
    bearer(request.metadata_mut());
    let status = raw.do_action(request).await.expect_err("unknown handle");
    assert_eq!(status.code(), Code::NotFound, "{status}");

    // Tickets a client made up.
    for bytes in [
        b"\xff\x00not a protobuf".to_vec(),
        TicketStatementQuery {
            statement_handle: b"\xff\xfe".to_vec().into(),
        }
        .as_any()
        .encode_to_vec(),
        Any {
            type_url: TicketStatementQuery::type_url().to_string(),
            value: b"\xff\xff\xff".to_vec().into(),
        }
        .encode_to_vec(),
    ] {
        let mut request = Request::new(Ticket::new(bytes.clone()));
        bearer(request.metadata_mut());
        let status = match raw.do_get(request).await {
            Err(status) => status,
            Ok(response) => {
                let mut stream = response.into_inner();
                stream.message().await.expect_err("the stream fails")
            }
        };
        assert_ne!(status.code(), Code::Ok);
        assert_clean_status(&status, &[]);
    }

    let still = query(&mut client, "SELECT count(*) AS n FROM animals")
        .await
        .expect("served");
    assert_eq!(integers(&still, "n"), [6]);
    drop((client, raw, channel));
    server.stop().await;
}

#[tokio::test]
async fn calls_need_a_token_from_the_handshake() {
    let (server, _dir) = start().await;
    let channel = server.channel().await;
    let sql = "SELECT * FROM animals";

    let mut anonymous = FlightSqlServiceClient::new(channel.clone());
    let status = status_of(
        query(&mut anonymous, sql)
            .await
            .expect_err("no credentials"),
    );
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "No credentials supplied");
    anonymous.set_token("not-a-token".to_string());
    let status =
        status_of(query(&mut anonymous, sql).await.expect_err("unknown token"));
    assert_eq!(status.message(), "Invalid token");
    let status = status_of(
        anonymous
            .execute_update("DELETE FROM animals".into(), None)
            .await
            .expect_err("unknown token"),
    );
    assert_eq!(status.code(), Code::Unauthenticated);

    for (user, password) in
        [("test", "wrong"), ("nobody", "password"), ("test", "")]
    {
        let mut client = FlightSqlServiceClient::new(channel.clone());
        let error = client.handshake(user, password).await.expect_err(user);
        assert!(
            error
                .to_string()
                .contains("Unknown user or invalid password")
        );
    }
    let mut raw = FlightServiceClient::new(channel.clone());
    for (header, code) in [
        (None, Code::Unauthenticated),
        (Some("Basic !!!"), Code::InvalidArgument),
        (Some("Token abc"), Code::InvalidArgument),
    ] {
        let mut request = Request::new(stream::iter([HandshakeRequest::default()]));
        if let Some(header) = header {
            request
                .metadata_mut()
                .insert("authorization", header.parse().expect("value"));
        }
        let status = raw.handshake(request).await.expect_err("refused");
        assert_eq!(status.code(), code, "{header:?}: {status}");
    }
    let mut test = logged_in(&channel, "test", "password").await;
    let mut admin = logged_in(&channel, "admin", "secret").await;
    assert_ne!(test.token(), admin.token());
    query(&mut test, sql).await.expect("test's token works");
    query(&mut admin, sql).await.expect("admin's token works");
    drop((test, admin, anonymous, raw, channel));
    server.stop().await;
}

/// `FlightSqlServiceClient::handshake` puts the token it holds on every call,
/// the Handshake too, where it replaces the `Basic` credentials: a second
/// login needs `clear_token` first.
#[tokio::test]
async fn a_second_handshake_sends_the_old_token_unless_it_is_cleared() {
    let (server, _dir) = start().await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel, "test", "password").await;
    let first = client.token().cloned().expect("a token");
    let error = client
        .handshake("admin", "secret")
        .await
        .expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("a Handshake needs \\\"Basic <credentials>\\\""),
        "{error}"
    );
    assert_eq!(client.token(), Some(&first), "the old token is kept");
    client.clear_token();
    let user = client.handshake("admin", "secret").await.expect("logs in");
    assert_eq!(&user[..], b"admin");
    drop((client, channel));
    server.stop().await;

    // A server that takes a Bearer token on any call accepts the second
    // Handshake as a call by the first user: a wrong password goes unnoticed.
    let server = TestServer::start(basic_auth_server::serve).await;
    let channel = server.channel().await;
    let mut client = FlightSqlServiceClient::new(channel.clone());
    client.handshake("test", "password").await.expect("logs in");
    let first = client.token().cloned().expect("a token");
    client
        .handshake("test", "not the password")
        .await
        .expect("the old token answers for the new credentials");
    assert_eq!(client.token(), Some(&first), "still the first token");
    client.clear_token();
    let error = client
        .handshake("test", "not the password")
        .await
        .expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("Unknown user or invalid password")
    );
    drop((client, channel));
    server.stop().await;
}

/// Calls an action on `raw` with `token` and returns its one result's body.
async fn action(
    raw: &mut FlightServiceClient<Channel>,
    token: &str,
    kind: &str,
    body: Vec<u8>,
) -> Result<Vec<u8>, Status> {
    let mut request = Request::new(Action::new(kind, body));
    let bearer = format!("Bearer {token}").parse().expect("a header");
    request.metadata_mut().insert("authorization", bearer);
    let mut results = raw.do_action(request).await?.into_inner();
    let result = results.message().await?.expect("one result");
    Ok(result.body.to_vec())
}

#[tokio::test]
async fn session_options_tell_the_schema_and_close_session_frees_what_it_held() {
    use flight_sql_server::sessions::{
        CloseSessionResult, OptionValue, SessionOptionValue, SessionOptions,
        SetSessionOptionsResult,
    };
    let (server, _dir) = start().await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel, "test", "password").await;
    let token = client.token().cloned().expect("a token");
    let mut raw = FlightServiceClient::new(channel.clone());

    let body = action(&mut raw, &token, "GetSessionOptions", Vec::new())
        .await
        .expect("options");
    let options = SessionOptions::decode(&body[..]).expect("decodes").options;
    let text = |value: &str| SessionOptionValue {
        value: Some(OptionValue::String(value.to_string())),
    };
    assert_eq!(options.get("catalog"), Some(&text("")));
    assert_eq!(options.get("schema"), Some(&text("main")));

    let wanted = SessionOptions {
        options: [
            ("schema".to_string(), text("main")),
            ("catalog".to_string(), text("elsewhere")),
            ("colour".to_string(), text("blue")),
        ]
        .into(),
    };
    let body = action(
        &mut raw,
        &token,
        "SetSessionOptions",
        wanted.encode_to_vec(),
    )
    .await
    .expect("set");
    let errors = SetSessionOptionsResult::decode(&body[..])
        .expect("decodes")
        .errors;
    let mut errors: Vec<_> =
        errors.into_iter().map(|(k, e)| (k, e.value)).collect();
    errors.sort();
    assert_eq!(
        errors,
        [("catalog".to_string(), 2), ("colour".to_string(), 1)],
        "invalid value, invalid name; schema main accepted"
    );

    // CloseSession ends this session's transaction and prepared statement,
    // and no one else's.
    let mut other = logged_in(&channel, "test", "password").await;
    let theirs = other.begin_transaction().await.expect("begun");
    let transaction = client.begin_transaction().await.expect("begun");
    client
        .execute_update("DELETE FROM sightings".into(), Some(transaction.clone()))
        .await
        .expect("deleted");
    let prepared = client
        .prepare("SELECT 1".into(), None)
        .await
        .expect("prepared");
    let body = action(&mut raw, &token, "CloseSession", Vec::new())
        .await
        .expect("closed");
    assert_eq!(
        CloseSessionResult::decode(&body[..])
            .expect("decodes")
            .status,
        1
    );
    let gone = client
        .execute_update("DELETE FROM animals".into(), Some(transaction))
        .await;
    assert_eq!(status_of(gone.expect_err("ended")).code(), Code::NotFound);
    let gone = prepared.close().await;
    assert_eq!(status_of(gone.expect_err("closed")).code(), Code::NotFound);
    let count = query(&mut other, "SELECT count(*) AS n FROM sightings")
        .await
        .expect("rows");
    assert_eq!(integers(&count, "n"), [3], "the deletion was rolled back");
    other
        .end_transaction(theirs, EndTransaction::Commit)
        .await
        .expect("the other session's transaction is still there");

    let status = action(&mut raw, &token, "Teleport", Vec::new())
        .await
        .expect_err("unknown");
    assert_eq!(status.code(), Code::Unimplemented, "{status}");
    drop((client, other, raw, channel));
    server.stop().await;
}

#[tokio::test]
async fn cancel_flight_info_stops_a_running_query_of_its_own_session_only() {
    use arrow_flight::{CancelFlightInfoRequest, CancelFlightInfoResult};
    let (server, _dir) = start().await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel, "test", "password").await;
    let token = client.token().cloned().expect("a token");
    let mut other = logged_in(&channel, "test", "password").await;
    let other_token = other.token().cloned().expect("a token");
    let mut raw = FlightServiceClient::new(channel.clone());

    // Never ends by itself: a recursive count without a limit.
    let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
               SELECT i FROM n";
    let info = client.execute(sql.into(), None).await.expect("info");
    let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
    let mut stream = client.do_get(ticket).await.expect("the stream");
    let first = stream.next().await.expect("a batch").expect("a batch");
    assert!(first.num_rows() > 0);

    let cancel = CancelFlightInfoRequest {
        info: Some(info.clone()),
    };
    let body = action(
        &mut raw,
        &other_token,
        "CancelFlightInfo",
        cancel.encode_to_vec(),
    )
    .await
    .expect("answered");
    let result = CancelFlightInfoResult::decode(&body[..]).expect("decodes");
    assert_eq!(result.status, 3, "another session cannot cancel it");

    let body = action(&mut raw, &token, "CancelFlightInfo", cancel.encode_to_vec())
        .await
        .expect("cancelled");
    let result = CancelFlightInfoResult::decode(&body[..]).expect("decodes");
    assert_eq!(result.status, 1, "cancelled");
    let ended = within("the end of the cancelled stream", async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => continue,
                Some(Err(error)) => break status_of(error),
                None => panic!("the stream ended without an error"),
            }
        }
    })
    .await;
    assert_eq!(ended.code(), Code::Cancelled, "{ended}");
    let still = query(&mut other, "SELECT count(*) AS n FROM animals")
        .await
        .expect("served");
    assert_eq!(integers(&still, "n"), [6]);
    drop((stream, client, other, raw, channel));
    server.stop().await;
}

/// The server program's peak memory (VmHWM) in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the server's /proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("a VmHWM line");
    let kib = line.split_whitespace().nth(1).expect("a number");
    kib.parse().expect("KiB")
}

/// The server program (its real `main`, with `--db`), streaming a result of
/// a million rows of about 110 bytes each (over 100 MB of Arrow data):
/// its peak memory grows by a few MiB, not by the size of the result.
#[test]
fn a_million_row_result_does_not_raise_the_servers_peak_memory_by_its_size() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut command = common::example("flight_sql_server");
    command
        .arg("127.0.0.1:0")
        .arg("--db")
        .arg(dir.path().join("memory.db"));
    let mut server = common::ChildProcess::start("flight_sql_server", command);
    let url = format!("http://{}", server.serving_on());
    let runtime = common::runtime();
    let read = |rows: u64| {
        common::block_on(&runtime, "the query", async {
            let channel = Channel::from_shared(url.clone())
                .expect("a URL")
                .connect()
                .await
                .expect("connected");
            let mut client = logged_in(&channel, "test", "password").await;
            let sql = format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
                 WHERE i < {rows}) SELECT i, printf('%0100d', i) AS padded FROM n"
            );
            let info = client.execute(sql, None).await.expect("info");
            let ticket = info.endpoint[0].ticket.clone().expect("a ticket");
            let mut stream = client.do_get(ticket).await.expect("the stream");
            let mut total = 0;
            while let Some(batch) = stream.next().await {
                total += batch.expect("a batch").num_rows() as u64;
            }
            assert_eq!(total, rows);
        })
    };
    read(10_000);
    let small = peak_kib(server.id());
    read(1_000_000);
    let large = peak_kib(server.id());
    println!(
        "server peak memory: {small} KiB after 10 000 rows, {large} KiB after 1 000 000"
    );
    assert!(
        large < small + 32 * 1024,
        "the peak grew from {small} KiB to {large} KiB"
    );
    let finished = server.terminate();
    assert!(finished.success(), "{}", finished.report());
}

/// arrow-flight answers PollFlightInfo with Unimplemented for a
/// FlightSqlService; the server's wrapper answers it, complete at once.
#[tokio::test]
async fn poll_flight_info_answers_a_complete_flight_info() {
    let (server, _dir) = start().await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel, "test", "password").await;
    let token = client.token().cloned().expect("a token");
    let command = arrow_flight::sql::CommandStatementQuery {
        query: "SELECT name FROM animals ORDER BY name".into(),
        transaction_id: None,
    };
    let descriptor =
        arrow_flight::FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
    let mut request = Request::new(descriptor);
    let bearer = format!("Bearer {token}").parse().expect("a header");
    request.metadata_mut().insert("authorization", bearer);
    let mut raw = FlightServiceClient::new(channel.clone());
    let poll = raw
        .poll_flight_info(request)
        .await
        .expect("polled")
        .into_inner();
    assert_eq!(poll.progress, Some(1.0));
    assert!(poll.flight_descriptor.is_none(), "nothing more to poll");
    let info = poll.info.expect("a FlightInfo");
    let names = fetch(&mut client, info).await.expect("rows");
    assert_eq!(strings(&names, "name").len(), 6);
    drop((client, raw, channel));
    server.stop().await;
}

/// A query that finds no row for ever stops when its client goes away: the
/// runtime's blocking threads, where queries run, are all done soon after.
#[test]
fn a_query_stops_when_its_client_goes_away() {
    let runtime = common::runtime();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("gone.db");
    let server = common::block_on(
        &runtime,
        "starting the server",
        TestServer::start(move |l, s| serve_database(l, s, path)),
    );
    common::block_on(&runtime, "the abandoned query", async {
        let channel = server.channel().await;
        let mut client = logged_in(&channel, "test", "password").await;
        let endless = arrow_flight::sql::CommandStatementQuery {
            query:
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                    SELECT i FROM n WHERE i < 0"
                    .into(),
            transaction_id: None,
        };
        let ticket = TicketStatementQuery {
            statement_handle: endless.encode_to_vec().into(),
        };
        let ticket = Ticket::new(ticket.as_any().encode_to_vec());
        let stream = client.do_get(ticket).await.expect("the stream");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        drop((stream, client, channel));
    });
    common::block_on(&runtime, "stopping the server", server.stop());
    let started = std::time::Instant::now();
    runtime.shutdown_timeout(std::time::Duration::from_secs(20));
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(10),
        "the query's thread ran on for {waited:?} after its client went away"
    );
}

/// Parameters over 16 MiB are refused, the store of prepared statements is
/// bounded, and the server goes on serving.
#[tokio::test]
async fn oversized_parameters_and_too_many_prepared_statements_are_refused() {
    use flight_sql_server::server::{MAX_PARAMETER_BYTES, MAX_PREPARED};
    let (server, _dir) = start().await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel, "test", "password").await;
    let mut insert = client
        .prepare("INSERT INTO sightings (id) VALUES (?)".into(), None)
        .await
        .expect("prepared");
    let rows = MAX_PARAMETER_BYTES / 8 + 1024;
    let schema =
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let values = Arc::new(Int64Array::from_iter_values(0..rows as i64));
    let batch = RecordBatch::try_new(schema, vec![values]).expect("a batch");
    insert.set_parameters(batch).expect("bound");
    let status = status_of(insert.execute_update().await.expect_err("too large"));
    assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
    assert_clean_status(&status, &[]);
    insert.close().await.expect("closed");

    let mut open = Vec::new();
    for _ in 0..MAX_PREPARED {
        open.push(
            client
                .prepare("SELECT 1".into(), None)
                .await
                .expect("prepared"),
        );
    }
    let status = status_of(
        client
            .prepare("SELECT 1".into(), None)
            .await
            .expect_err("full"),
    );
    assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
    let first = open.pop().expect("one");
    first.close().await.expect("closed");
    client
        .prepare("SELECT 1".into(), None)
        .await
        .expect("room again after a close");
    let still = query(&mut client, "SELECT count(*) AS n FROM animals")
        .await
        .expect("served");
    assert_eq!(integers(&still, "n"), [6]);
    drop((open, client, channel));
    server.stop().await;
}

/// Sixteen clients prepare the same statement at once, bind each its own
/// value, and each gets the rows of its own value.
#[tokio::test]
async fn many_clients_prepare_bind_and_run_at_once_without_mixing_up() {
    let (server, _dir) = start().await;
    let channel = server.channel().await;
    let runs = (0..16i64).map(|at| {
        let channel = channel.clone();
        async move {
            let mut client = logged_in(&channel, "test", "password").await;
            let sql =
                "SELECT ?1 AS mine, count(*) AS n FROM animals WHERE legs >= ?1";
            let mut prepared =
                client.prepare(sql.into(), None).await.expect("prepared");
            let schema = Arc::new(Schema::new(vec![Field::new(
                "legs",
                DataType::Int64,
                false,
            )]));
            let mut seen = Vec::new();
            for round in 0..5 {
                let legs = (at + round) % 10;
                let values = Arc::new(Int64Array::from(vec![legs]));
                let batch = RecordBatch::try_new(schema.clone(), vec![values])
                    .expect("batch");
                prepared.set_parameters(batch).expect("bound");
                let info = prepared.execute().await.expect("info");
                let rows = fetch(&mut client, info).await.expect("rows");
                seen.push((integers(&rows, "mine"), legs));
            }
            prepared.close().await.expect("closed");
            seen
        }
    });
    for seen in futures::future::join_all(runs).await {
        for (mine, legs) in seen {
            assert_eq!(mine, [legs], "a client got another client's binding");
        }
    }
    drop(channel);
    server.stop().await;
}

/// Uploads of a few hundred bytes that claim 4 EiB once decompressed, LZ4
/// or ZSTD, are refused before they are decompressed, as ingestion and as
/// a prepared statement's parameters (unguarded, LZ4's failed allocation
/// aborts the server); the server answers a query after them.
#[tokio::test]
async fn compressed_uploads_claiming_4_eib_are_refused_and_the_server_serves_on() {
    let (server, _dir) = start().await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel, "test", "password").await;
    let token = client.token().cloned().expect("a token");
    let mut raw = FlightServiceClient::new(channel.clone());
    let request = ActionCreatePreparedStatementRequest {
        query: "SELECT ?".into(),
        ..Default::default()
    };
    let body = action(
        &mut raw,
        &token,
        "CreatePreparedStatement",
        request.as_any().encode_to_vec(),
    )
    .await
    .expect("prepared");
    let prepared: ActionCreatePreparedStatementResult = Any::decode(&body[..])
        .expect("an Any")
        .unpack()
        .expect("a result")
        .expect("a prepared statement");
    let ingest = CommandStatementIngest {
        table: "bombed".into(),
        ..Default::default()
    };
    let bind = CommandPreparedStatementQuery {
        prepared_statement_handle: prepared.prepared_statement_handle,
    };
    let commands = [ingest.as_any(), bind.as_any()];
    for command in commands {
        for compression in [CompressionType::LZ4_FRAME, CompressionType::ZSTD] {
            let descriptor = FlightDescriptor::new_cmd(command.encode_to_vec());
            let bomb = common::compression_bomb(descriptor, compression).await;
            let result = common::put(&mut raw, Some(&token), bomb).await;
            common::assert_bomb_refused(result);
        }
    }
    let batches = query(&mut client, "SELECT count(*) AS n FROM animals")
        .await
        .expect("a query after the bombs");
    assert_eq!(integers(&batches, "n").len(), 1);
    drop((client, raw));
    server.stop().await;
}
