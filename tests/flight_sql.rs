//! The Flight SQL recipe: the statements it answers, the input it refuses
//! (and goes on serving), its login through the Handshake, and the
//! re-handshake pitfall of arrow-flight's `FlightSqlServiceClient`.

mod common;

#[allow(dead_code)]
#[path = "../examples/basic_auth_server.rs"]
mod basic_auth_server;

#[allow(dead_code)]
#[path = "../examples/flight_sql_client.rs"]
mod flight_sql_client;

#[allow(dead_code)]
#[path = "../examples/flight_sql_server.rs"]
mod flight_sql_server;

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{Any, ProstMessageExt, TicketStatementQuery};
use arrow_flight::{HandshakeRequest, Ticket};
use common::{TestServer, within};
use flight_sql_client::{fetch, query};
use flight_sql_server::{MAX_STATEMENT_LEN, Query, Select, parse, serve};
use futures::stream;
use prost::Message;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

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

fn strings(batch: &RecordBatch, column: &str) -> Vec<String> {
    let values = batch.column_by_name(column).expect("the column");
    let values = values.as_any().downcast_ref::<StringArray>().expect("text");
    values
        .iter()
        .map(|v| v.expect("not null").to_string())
        .collect()
}

fn numbers(batch: &RecordBatch, column: &str) -> Vec<i64> {
    let values = batch.column_by_name(column).expect("the column");
    let values = values.as_any().downcast_ref::<Int64Array>().expect("Int64");
    values.values().to_vec()
}

fn one_batch(batches: Vec<RecordBatch>) -> RecordBatch {
    let [batch] = <[RecordBatch; 1]>::try_from(batches).expect("one batch");
    batch
}

/// A message fit to show a client: no file path, no Rust debug dump.
fn assert_clean(message: &str) {
    for bad in ["/", "\\", "panicked", "backtrace", "src", ".rs"] {
        assert!(!message.contains(bad), "{bad:?} in {message:?}");
    }
}

#[test]
fn the_grammar_is_case_insensitive_and_tolerates_white_space() {
    use flight_sql_server::Column::{Legs, Name, Size};
    let all = Query {
        select: Select::Columns(vec![Name, Legs, Size]),
        filter: None,
    };
    for sql in [
        "SELECT * FROM animals",
        "select * from ANIMALS",
        "  SeLeCt\n*\tFROM animals ;  ",
        "SELECT*FROM animals;",
    ] {
        assert_eq!(parse(sql).expect(sql), all, "{sql:?}");
    }
    let some =
        parse("SELECT name , size FROM animals WHERE SIZE>50").expect("valid");
    assert_eq!(some.select, Select::Columns(vec![Name, Size]));
    assert_eq!(some.filter, Some((Size, 50)));
    let count =
        parse("select count ( * ) from animals where legs > 1").expect("valid");
    assert_eq!(count.select, Select::Count);
    assert_eq!(count.filter, Some((Legs, 1)));
}

#[test]
fn every_refusal_is_invalid_argument_with_a_reason() {
    let cases = [
        ("", "the statement is empty"),
        (" \n\t", "the statement is empty"),
        ("DELETE FROM animals", "expected SELECT, found \"DELETE\""),
        (
            "SELECT",
            "expected a column, found the end of the statement",
        ),
        (
            "SELECT * FROM",
            "expected a table, found the end of the statement",
        ),
        (
            "SELECT * FROM plants",
            "unknown table \"plants\": the only table is animals",
        ),
        ("SELECT weight FROM animals", "unknown column \"weight\""),
        (
            "SELECT * FROM animals WHERE size = 4",
            "expected >, found \"=\"",
        ),
        (
            "SELECT * FROM animals WHERE size > x",
            "expected an integer, found \"x\"",
        ),
        (
            "SELECT * FROM animals WHERE name > 3",
            "WHERE compares numbers",
        ),
        (
            "SELECT * FROM animals; DROP TABLE animals",
            "unexpected \"DROP\" after the end",
        ),
        (
            "SELECT COUNT(name) FROM animals",
            "expected *, found \"name\"",
        ),
        ("SELECT 'x' FROM animals", "unknown column \"'\""),
        (
            "SELECT * FROM animals WHERE size > 99999999999999999999",
            "expected an integer",
        ),
        (
            "SELECT * FROM animals WHERE size > -1",
            "expected an integer, found \"-\"",
        ),
    ];
    for (sql, reason) in cases {
        let status = parse(sql).expect_err(sql);
        assert_eq!(status.code(), Code::InvalidArgument, "{sql:?}");
        assert!(
            status.message().contains(reason),
            "{sql:?}: {}",
            status.message()
        );
    }
    let long = format!("SELECT * FROM animals{}", " ".repeat(MAX_STATEMENT_LEN));
    let status = parse(&long).expect_err("too long");
    assert_eq!(
        status.message(),
        format!(
            "the statement is {} bytes long, the limit is 1024",
            long.len()
        )
    );
    let word = "x".repeat(500);
    let status =
        parse(&format!("SELECT {word} FROM animals")).expect_err("unknown column");
    assert!(status.message().len() < 100, "{}", status.message());
}

proptest::proptest! {
    #[test]
    fn any_text_parses_or_is_refused_as_invalid_argument(sql in "\\PC{0,80}") {
        if let Err(status) = parse(&sql) {
            proptest::prop_assert_eq!(status.code(), Code::InvalidArgument);
        }
    }

    #[test]
    fn any_words_of_the_grammar_parse_or_are_refused(
        words in proptest::collection::vec(
            proptest::sample::select(vec![
                "SELECT", "*", "COUNT", "(", ")", ",", "name", "legs", "size",
                "FROM", "animals", "WHERE", ">", "3", ";", "plants",
            ]),
            0..12,
        )
    ) {
        if let Err(status) = parse(&words.join(" ")) {
            proptest::prop_assert_eq!(status.code(), Code::InvalidArgument);
        }
    }
}

#[tokio::test]
async fn the_statements_answer_with_the_right_rows() {
    let server = TestServer::start(serve).await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel, "test", "password").await;

    let all = one_batch(
        query(&mut client, "SELECT * FROM animals")
            .await
            .expect("all"),
    );
    assert_eq!(
        strings(&all, "name"),
        ["ant", "spider", "cat", "dog", "ostrich", "horse"]
    );
    assert_eq!(numbers(&all, "legs"), [6, 8, 4, 4, 2, 4]);
    assert_eq!(numbers(&all, "size"), [1, 2, 46, 90, 200, 240]);

    let sql = "SELECT name, size FROM animals WHERE size > 50";
    let big = one_batch(query(&mut client, sql).await.expect("filtered"));
    assert_eq!(big.num_columns(), 2);
    assert_eq!(strings(&big, "name"), ["dog", "ostrich", "horse"]);
    assert_eq!(numbers(&big, "size"), [90, 200, 240]);

    let sql = "SELECT legs FROM animals WHERE legs > 4";
    let many = one_batch(query(&mut client, sql).await.expect("by legs"));
    assert_eq!(numbers(&many, "legs"), [6, 8]);

    let sql = "SELECT COUNT(*) FROM animals WHERE size > 1000";
    let none = one_batch(query(&mut client, sql).await.expect("count"));
    assert_eq!(numbers(&none, "count"), [0]);

    let info = client
        .get_tables(Default::default())
        .await
        .expect("get_tables");
    let tables = one_batch(fetch(&mut client, info).await.expect("tables"));
    assert_eq!(strings(&tables, "table_name"), ["animals"]);
    assert_eq!(strings(&tables, "table_type"), ["TABLE"]);
    let only_plants = arrow_flight::sql::CommandGetTables {
        table_name_filter_pattern: Some("plant%".to_string()),
        ..Default::default()
    };
    let info = client.get_tables(only_plants).await.expect("get_tables");
    let none = fetch(&mut client, info).await.expect("tables");
    assert_eq!(none.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);

    let info = client
        .execute("SELECT name FROM animals".into(), None)
        .await
        .expect("info");
    let schema = info.try_decode_schema().expect("a schema");
    assert_eq!(schema.fields().len(), 1);
    assert_eq!(schema.field(0).name(), "name");
    drop(channel);
    server.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_and_the_server_keeps_serving() {
    let server = TestServer::start(serve).await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel, "test", "password").await;
    let long = format!("SELECT * FROM animals WHERE size > {}", "1".repeat(2000));
    for sql in [
        "SELECT * FROM plants",
        "UPDATE animals SET legs = 3",
        "",
        long.as_str(),
        "SELECT * FROM animals WHERE",
    ] {
        let status = status_of(query(&mut client, sql).await.expect_err(sql));
        assert_eq!(status.code(), Code::InvalidArgument, "{sql:.40?}: {status}");
        assert_clean(status.message());
    }

    // Tickets a client made up, sent with a valid token.
    let token = client.token().cloned().expect("a token");
    let mut raw = FlightServiceClient::new(channel.clone());
    let handle = |bytes: &'static [u8]| TicketStatementQuery {
        statement_handle: bytes.into(),
    };
    let garbage: [(Vec<u8>, Code); 5] = [
        (b"\xff\x00not a protobuf".to_vec(), Code::InvalidArgument),
        (Vec::new(), Code::Unimplemented),
        (
            handle(b"\xff\xfe").as_any().encode_to_vec(),
            Code::InvalidArgument,
        ),
        (
            handle(b"SELECT * FROM plants").as_any().encode_to_vec(),
            Code::InvalidArgument,
        ),
        // A known command whose bytes do not decode: arrow-flight 60.1's
        // dispatcher answers Internal before the service sees the call.
        (
            Any {
                type_url: TicketStatementQuery::type_url().to_string(),
                value: b"\xff\xff\xff".to_vec().into(),
            }
            .encode_to_vec(),
            Code::Internal,
        ),
    ];
    for (bytes, code) in garbage {
        let mut request = Request::new(Ticket::new(bytes.clone()));
        let bearer = format!("Bearer {token}").parse().expect("header value");
        request.metadata_mut().insert("authorization", bearer);
        let status = match raw.do_get(request).await {
            Err(status) => status,
            Ok(response) => {
                let mut stream = response.into_inner();
                stream.message().await.expect_err("the stream fails")
            }
        };
        assert_eq!(status.code(), code, "{bytes:?}: {status}");
        assert_clean(status.message());
    }

    let still = one_batch(
        query(&mut client, "SELECT COUNT(*) FROM animals")
            .await
            .expect("served"),
    );
    assert_eq!(numbers(&still, "count"), [6]);

    let status = status_of(client.get_catalogs().await.expect_err("not offered"));
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(
        status.message().contains("get_flight_info_catalogs"),
        "{status}"
    );
    drop(channel);
    server.stop().await;
}

#[tokio::test]
async fn calls_need_a_token_from_the_handshake() {
    let server = TestServer::start(serve).await;
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
    let status = status_of(
        anonymous
            .get_tables(Default::default())
            .await
            .expect_err("no credentials"),
    );
    assert_eq!(status.code(), Code::Unauthenticated);

    anonymous.set_token("not-a-token".to_string());
    let status =
        status_of(query(&mut anonymous, sql).await.expect_err("unknown token"));
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "Invalid token");

    anonymous.clear_token();
    anonymous.set_header("authorization", "Basic dGVzdDpwYXNzd29yZA==");
    let status = status_of(
        query(&mut anonymous, sql)
            .await
            .expect_err("Basic on a query"),
    );
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("Bearer <token>"), "{status}");

    for (user, password) in
        [("test", "wrong"), ("nobody", "password"), ("test", "")]
    {
        let mut client = FlightSqlServiceClient::new(channel.clone());
        let error = client
            .handshake(user, password)
            .await
            .expect_err(user)
            .to_string();
        assert!(
            error.contains("Unknown user or invalid password"),
            "{error}"
        );
        assert!(client.token().is_none());
    }

    // A Handshake with no credentials, and with malformed ones.
    let mut raw = FlightServiceClient::new(channel.clone());
    for (header, code, message) in [
        (None, Code::Unauthenticated, "No credentials supplied"),
        (
            Some("Basic !!!"),
            Code::InvalidArgument,
            "Basic credentials must be user:password in base64",
        ),
        (
            Some("Basic dGVzdA=="),
            Code::InvalidArgument,
            "Basic credentials must be user:password in base64",
        ),
        (
            Some("Token abc"),
            Code::InvalidArgument,
            "a Handshake needs \"Basic <credentials>\"",
        ),
    ] {
        let mut request = Request::new(stream::iter([HandshakeRequest::default()]));
        if let Some(header) = header {
            request
                .metadata_mut()
                .insert("authorization", header.parse().expect("value"));
        }
        let status = raw.handshake(request).await.expect_err("refused");
        assert_eq!(status.code(), code, "{header:?}: {status}");
        assert!(
            status.message().starts_with(message),
            "{header:?}: {status}"
        );
    }

    // Two logins, two tokens; each works.
    let mut test = logged_in(&channel, "test", "password").await;
    let mut admin = logged_in(&channel, "admin", "secret").await;
    assert_ne!(test.token(), admin.token());
    query(&mut test, sql).await.expect("test's token works");
    query(&mut admin, sql).await.expect("admin's token works");
    drop(channel);
    server.stop().await;
}

/// `FlightSqlServiceClient::handshake` puts the token it holds on every call,
/// the Handshake too, where it replaces the `Basic` credentials: a second
/// login needs `clear_token` first.
#[tokio::test]
async fn a_second_handshake_sends_the_old_token_unless_it_is_cleared() {
    let server = TestServer::start(serve).await;
    let channel = server.channel().await;
    let mut client = logged_in(&channel, "test", "password").await;
    let first = client.token().cloned().expect("a token");

    // This server refuses a Handshake that carries a Bearer token.
    let error = client
        .handshake("admin", "secret")
        .await
        .expect_err("refused");
    let error = error.to_string();
    assert!(
        error.contains("a Handshake needs \\\"Basic <credentials>\\\""),
        "{error}"
    );
    assert_eq!(client.token(), Some(&first), "the old token is kept");

    client.clear_token();
    let user = client.handshake("admin", "secret").await.expect("logs in");
    assert_eq!(&user[..], b"admin");
    assert_ne!(client.token(), Some(&first), "a new token");
    drop(channel);
    server.stop().await;

    // A server that takes a Bearer token on any call, as the authentication
    // recipe's does, accepts the second Handshake as a call by the first
    // user: no new token, and a wrong password goes unnoticed.
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
            .contains("Unknown user or invalid password"),
        "{error}"
    );
    drop(channel);
    server.stop().await;
}
