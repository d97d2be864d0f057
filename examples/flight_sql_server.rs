// ANCHOR: uses
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    CommandGetTables, CommandStatementQuery, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, Ticket,
};
use arrow_schema::{DataType, Field, Schema};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use futures::stream::{self, Stream, TryStreamExt};
use prost::Message;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};
// ANCHOR_END: uses

// ANCHOR: table
/// The one table, `animals`: a name, a number of legs and a length in
/// centimetres.
const ANIMALS: [(&str, i64, i64); 6] = [
    ("ant", 6, 1),
    ("spider", 8, 2),
    ("cat", 4, 46),
    ("dog", 4, 90),
    ("ostrich", 2, 200),
    ("horse", 4, 240),
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Column {
    Name,
    Legs,
    Size,
}

impl Column {
    pub const ALL: [Column; 3] = [Column::Name, Column::Legs, Column::Size];

    fn named(name: &str) -> Option<Column> {
        Column::ALL
            .into_iter()
            .find(|column| column.name().eq_ignore_ascii_case(name))
    }

    fn name(self) -> &'static str {
        match self {
            Column::Name => "name",
            Column::Legs => "legs",
            Column::Size => "size",
        }
    }

    fn field(self) -> Field {
        match self {
            Column::Name => Field::new("name", DataType::Utf8, false),
            Column::Legs | Column::Size => {
                Field::new(self.name(), DataType::Int64, false)
            }
        }
    }

    fn values(self, rows: &[(&str, i64, i64)]) -> ArrayRef {
        match self {
            Column::Name => {
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)))
            }
            Column::Legs => {
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1)))
            }
            Column::Size => {
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2)))
            }
        }
    }
}

pub fn animals_schema() -> Schema {
    Schema::new(Column::ALL.map(Column::field).to_vec())
}
// ANCHOR_END: table

// ANCHOR: parse
/// The longest statement the server reads.
pub const MAX_STATEMENT_LEN: usize = 1024;

/// What a statement selects: some columns, or the number of rows.
#[derive(Debug, PartialEq)]
pub enum Select {
    Columns(Vec<Column>),
    Count,
}

/// A statement of the one form this server understands:
/// `SELECT (* | COUNT(*) | column, ...) FROM animals [WHERE column > integer] [;]`
#[derive(Debug, PartialEq)]
pub struct Query {
    pub select: Select,
    pub filter: Option<(Column, i64)>,
}

fn bad(message: String) -> Status {
    Status::invalid_argument(message)
}

/// A word of the statement, quoted and cut to 32 characters for a message.
fn quoted(word: &str) -> String {
    format!("{:?}", word.chars().take(32).collect::<String>())
}

/// Splits a statement into words and numbers, and every other character
/// apart from white space on its own.
fn tokens(sql: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut rest = sql.trim_start();
    while let Some(first) = rest.chars().next() {
        let len = if first.is_ascii_alphanumeric() || first == '_' {
            rest.find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(rest.len())
        } else {
            first.len_utf8()
        };
        tokens.push(&rest[..len]);
        rest = rest[len..].trim_start();
    }
    tokens
}

struct Parser<'a> {
    tokens: std::vec::IntoIter<&'a str>,
}

impl<'a> Parser<'a> {
    fn next(&mut self, expected: &str) -> Result<&'a str, Status> {
        let end = || {
            bad(format!(
                "expected {expected}, found the end of the statement"
            ))
        };
        self.tokens.next().ok_or_else(end)
    }

    fn keyword(&mut self, keyword: &str) -> Result<(), Status> {
        match self.next(keyword)? {
            word if word.eq_ignore_ascii_case(keyword) => Ok(()),
            word => Err(bad(format!("expected {keyword}, found {}", quoted(word)))),
        }
    }

    fn skip(&mut self, keyword: &str) -> bool {
        let next = self.tokens.as_slice().first();
        let found = next.is_some_and(|word| word.eq_ignore_ascii_case(keyword));
        if found {
            self.tokens.next();
        }
        found
    }

    fn column(&mut self) -> Result<Column, Status> {
        let word = self.next("a column")?;
        Column::named(word).ok_or_else(|| {
            bad(format!(
                "unknown column {}: animals has name, legs and size",
                quoted(word)
            ))
        })
    }
}

pub fn parse(sql: &str) -> Result<Query, Status> {
    if sql.len() > MAX_STATEMENT_LEN {
        return Err(bad(format!(
            "the statement is {} bytes long, the limit is {MAX_STATEMENT_LEN}",
            sql.len()
        )));
    }
    if sql.trim().is_empty() {
        return Err(bad("the statement is empty".to_string()));
    }
    let mut parser = Parser {
        tokens: tokens(sql).into_iter(),
    };
    parser.keyword("SELECT")?;
    let select = if parser.skip("*") {
        Select::Columns(Column::ALL.to_vec())
    } else if parser.skip("COUNT") {
        for symbol in ["(", "*", ")"] {
            parser.keyword(symbol)?;
        }
        Select::Count
    } else {
        let mut columns = vec![parser.column()?];
        while parser.skip(",") {
            columns.push(parser.column()?);
        }
        Select::Columns(columns)
    };
    parser.keyword("FROM")?;
    let table = parser.next("a table")?;
    if !table.eq_ignore_ascii_case("animals") {
        let message =
            format!("unknown table {}: the only table is animals", quoted(table));
        return Err(bad(message));
    }
    let mut filter = None;
    if parser.skip("WHERE") {
        let column = parser.column()?;
        if column == Column::Name {
            return Err(
                bad("WHERE compares numbers: use legs or size".to_string()),
            );
        }
        parser.keyword(">")?;
        let number = parser.next("an integer")?;
        let number = number.parse().map_err(|_| {
            bad(format!("expected an integer, found {}", quoted(number)))
        })?;
        filter = Some((column, number));
    }
    parser.skip(";");
    if let Some(extra) = parser.tokens.next() {
        let message = format!(
            "unexpected {} after the end of the statement",
            quoted(extra)
        );
        return Err(bad(message));
    }
    Ok(Query { select, filter })
}
// ANCHOR_END: parse

// ANCHOR: run
impl Query {
    pub fn run(&self) -> Result<RecordBatch, Status> {
        let rows: Vec<_> = ANIMALS
            .into_iter()
            .filter(|&(_, legs, size)| match self.filter {
                Some((Column::Legs, above)) => legs > above,
                Some((_, above)) => size > above,
                None => true,
            })
            .collect();
        let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = match &self.select {
            Select::Count => {
                let count: ArrayRef =
                    Arc::new(Int64Array::from(vec![rows.len() as i64]));
                let field = Field::new("count", DataType::Int64, false);
                (vec![field], vec![count])
            }
            Select::Columns(columns) => columns
                .iter()
                .map(|column| (column.field(), column.values(&rows)))
                .unzip(),
        };
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|_| Status::internal("the result could not be built"))
    }
}
// ANCHOR_END: run

// ANCHOR: auth
/// The most tokens kept at once; when full, the oldest is forgotten.
pub const MAX_TOKENS: usize = 10_000;

/// The longest `authorization` header the server reads.
pub const MAX_AUTHORIZATION_LEN: usize = 4096;

#[derive(Default)]
struct Tokens {
    users: HashMap<String, String>,
    by_age: VecDeque<String>,
}

fn authorization(metadata: &MetadataMap) -> Result<&str, Status> {
    let Some(value) = metadata.get("authorization") else {
        return Err(Status::unauthenticated("No credentials supplied"));
    };
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(Status::invalid_argument(format!(
            "authorization header is {} bytes long, \
             the limit is {MAX_AUTHORIZATION_LEN}",
            value.len()
        )));
    }
    value.to_str().map_err(|_| {
        Status::invalid_argument("authorization header is not printable ASCII")
    })
}

impl SqlServer {
    /// Checks `Basic <base64 of user:password>` and returns the user and a
    /// new token.
    fn log_in(&self, metadata: &MetadataMap) -> Result<(String, String), Status> {
        let Some(credentials) = authorization(metadata)?.strip_prefix("Basic ")
        else {
            return Err(Status::invalid_argument(
                "a Handshake needs \"Basic <credentials>\" \
                 in its authorization header",
            ));
        };
        let decoded = STANDARD_NO_PAD
            .decode(credentials.trim_end_matches('='))
            .ok();
        let decoded = decoded.and_then(|bytes| String::from_utf8(bytes).ok());
        let Some((user, password)) =
            decoded.as_ref().and_then(|d| d.split_once(':'))
        else {
            return Err(Status::invalid_argument(
                "Basic credentials must be user:password in base64",
            ));
        };
        // ANCHOR: copy_check_password
        let expected = self.passwords.get(user);
        let same = password
            .as_bytes()
            .ct_eq(expected.map_or(&[][..], |p| p.as_bytes()));
        if expected.is_none() || password.is_empty() || !bool::from(same) {
            return Err(Status::unauthenticated(
                "Unknown user or invalid password",
            ));
        }
        // ANCHOR_END: copy_check_password
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.by_age.len() >= MAX_TOKENS {
            let oldest = tokens.by_age.pop_front().unwrap_or_default();
            tokens.users.remove(&oldest);
        }
        tokens.users.insert(token.clone(), user.to_string());
        tokens.by_age.push_back(token.clone());
        Ok((user.to_string(), token))
    }

    /// Checks `Bearer <token>` and returns the user the token was issued to.
    fn user<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let Some(token) =
            authorization(request.metadata())?.strip_prefix("Bearer ")
        else {
            return Err(Status::unauthenticated(
                "call with \"Bearer <token>\", the token the Handshake returned",
            ));
        };
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match tokens.users.get(token) {
            Some(user) => Ok(user.clone()),
            None => Err(Status::unauthenticated("Invalid token")),
        }
    }
}
// ANCHOR_END: auth

// ANCHOR: service
pub struct SqlServer {
    passwords: HashMap<String, String>,
    tokens: Mutex<Tokens>,
}

type DoGetStream = <SqlServer as FlightService>::DoGetStream;
type HandshakeStream =
    Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>;

fn batch_stream(batch: RecordBatch) -> DoGetStream {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(stream::iter([Ok(batch)]))
        .map_err(Status::from);
    Box::pin(stream)
}

fn flight_info(
    schema: &Schema,
    ticket: impl ProstMessageExt,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = Ticket::new(ticket.as_any().encode_to_vec());
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|_| Status::internal("the schema could not be encoded"))?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

#[tonic::async_trait]
impl FlightSqlService for SqlServer {
    type FlightService = SqlServer;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<HandshakeStream>, Status> {
        let (user, token) = self.log_in(request.metadata())?;
        let bearer =
            MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
                Status::internal("the new token is not a valid header value")
            })?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: user.into(),
        };
        let replies: HandshakeStream = Box::pin(stream::iter([Ok(reply)]));
        let mut response = Response::new(replies);
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        let schema = parse(&query.query)?.run()?.schema();
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into(),
        };
        flight_info(&schema, ticket, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let sql = std::str::from_utf8(&ticket.statement_handle).map_err(|_| {
            Status::invalid_argument("the statement handle is not UTF-8")
        })?;
        let batch = parse(sql)?.run()?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let mut tables = query.into_builder();
        let listed = tables.append("", "", "animals", "TABLE", &animals_schema());
        let batch = listed
            .and_then(|()| tables.build())
            .map_err(|_| Status::internal("the table list could not be built"))?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
// ANCHOR_END: service

// ANCHOR: serve
/// Serves Flight SQL over the `animals` table on `listener` until `shutdown`
/// completes. Users: `test` (password `password`) and `admin` (`secret`).
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let passwords = [("test", "password"), ("admin", "secret")];
    let server = SqlServer {
        passwords: passwords
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .into(),
        tokens: Mutex::default(),
    };
    Server::builder()
        .add_service(FlightServiceServer::new(server))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1);
    let listener =
        TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8819")).await?;

    // ANCHOR: copy_stop_on_signal
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    };
    // ANCHOR_END: copy_stop_on_signal
    println!("Serving on grpc://{}", listener.local_addr()?);
    serve(listener, stop).await?;
    Ok(())
}
// ANCHOR_END: serve
