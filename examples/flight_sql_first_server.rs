// ANCHOR: uses
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_cast::display::array_value_to_string;
use arrow_cast::{CastOptions, cast_with_options};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionEndTransactionRequest,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTables,
    CommandPreparedStatementQuery, CommandStatementQuery,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    SqlSupportedTransaction, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, Ticket,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{Engine, alphabet};
use futures::{Stream, StreamExt, TryStreamExt, stream};
use prost::Message;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, Statement};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::{SignalKind, signal};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status, Streaming};
// ANCHOR_END: uses

// ANCHOR: login
/// The users and their passwords.
const USERS: [(&str, &str); 1] = [("test", "password")];

/// Each user's token, given out at the first login.
type Tokens = Arc<Mutex<HashMap<String, String>>>;

/// Base64 that takes the `=` padding or leaves it out, as clients do.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The user that `Basic <base64 of user:password>` names, if the password is
/// right.
fn log_in(header: &str) -> Result<String, Status> {
    let refused = || Status::unauthenticated("unknown user or wrong password");
    let Some(encoded) = header.strip_prefix("Basic ") else {
        return Err(Status::unauthenticated("no credentials: log in first"));
    };
    let decoded = BASE64.decode(encoded).map_err(|_| refused())?;
    let text = String::from_utf8(decoded).map_err(|_| refused())?;
    let (user, password) = text.split_once(':').ok_or_else(refused)?;
    let right = |(u, p): &(&str, &str)| {
        *u == user && bool::from(p.as_bytes().ct_eq(password.as_bytes()))
    };
    match USERS.iter().any(right) {
        true => Ok(user.to_string()),
        false => Err(refused()),
    }
}

/// Lets a call in with a token the server gave out, or with the right
/// user and password (the Handshake that logs in).
fn authorize(tokens: &Tokens, request: Request<()>) -> Result<Request<()>, Status> {
    let header = authorization(&request);
    match header.strip_prefix("Bearer ") {
        Some(token) if lock(tokens)?.values().any(|t| t == token) => Ok(request),
        Some(_) => Err(Status::unauthenticated("unknown token")),
        None => log_in(header).map(|_| request),
    }
}

fn authorization<T>(request: &Request<T>) -> &str {
    let header = request.metadata().get("authorization");
    header.and_then(|value| value.to_str().ok()).unwrap_or("")
}
// ANCHOR_END: login

// ANCHOR: sqlite_schema
/// Compiles `sql`, refusing what is not a query, and gives its result's
/// Arrow schema, from the types its columns are declared with.
fn prepare<'a>(
    db: &'a Connection,
    sql: &str,
) -> Result<(Statement<'a>, SchemaRef), Status> {
    let statement = db.prepare(sql).map_err(invalid)?;
    if !statement.readonly() || statement.column_count() == 0 {
        return Err(Status::invalid_argument("this server only runs queries"));
    }
    let fields = statement.columns().map(|column| {
        let declared = column.decl_type().unwrap_or("").to_uppercase();
        let data_type = match declared.as_str() {
            t if t.contains("INT") => DataType::Int64,
            "REAL" | "FLOAT" | "DOUBLE" => DataType::Float64,
            _ => DataType::Utf8,
        };
        Field::new(column.name(), data_type, true)
    });
    let schema = Arc::new(Schema::new(fields.collect::<Vec<_>>()));
    Ok((statement, schema))
}

// ANCHOR_END: sqlite_schema

// ANCHOR: sqlite_run
/// Runs `sql` with its parameters (one row, or none) and returns its result.
fn run(
    db: &Connection,
    sql: &str,
    parameters: &[RecordBatch],
) -> Result<RecordBatch, Status> {
    let (mut statement, schema) = prepare(db, sql)?;
    match parameters {
        [] => {}
        [row] if row.num_rows() == 1 => {
            for (at, column) in row.columns().iter().enumerate() {
                let value = sql_value(column)?;
                statement
                    .raw_bind_parameter(at + 1, value)
                    .map_err(invalid)?;
            }
        }
        _ => return Err(Status::invalid_argument("send one row of parameters")),
    }
    let mut columns = vec![Vec::new(); schema.fields().len()];
    let mut rows = statement.raw_query();
    while let Some(row) = rows.next().map_err(invalid)? {
        for (at, column) in columns.iter_mut().enumerate() {
            column.push(match row.get_ref(at).map_err(invalid)? {
                ValueRef::Null => None,
                ValueRef::Integer(i) => Some(i.to_string()),
                ValueRef::Real(f) => Some(f.to_string()),
                ValueRef::Text(text) => Some(String::from_utf8_lossy(text).into()),
                ValueRef::Blob(_) => return Err(invalid("BLOBs are not sent")),
            });
        }
    }
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    let columns = schema.fields().iter().zip(columns).map(|(field, text)| {
        let text = StringArray::from(text);
        cast_with_options(&text, field.data_type(), &strict).map_err(invalid)
    });
    let columns = columns.collect::<Result<_, _>>()?;
    RecordBatch::try_new(schema, columns).map_err(internal)
}

/// A parameter as SQLite takes it: an integer, a float, or else text.
fn sql_value(column: &ArrayRef) -> Result<Value, Status> {
    let text = array_value_to_string(column, 0).map_err(invalid)?;
    Ok(match column.data_type() {
        _ if column.is_null(0) => Value::Null,
        t if t.is_integer() => Value::Integer(text.parse().map_err(invalid)?),
        t if t.is_floating() => Value::Real(text.parse().map_err(invalid)?),
        _ => Value::Text(text),
    })
}
// ANCHOR_END: sqlite_run

// ANCHOR: answers
/// A FlightInfo with `schema` and one endpoint, whose ticket is `ticket`.
fn flight_info(
    schema: &Schema,
    ticket: impl ProstMessageExt,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = Ticket::new(ticket.as_any().encode_to_vec());
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(internal)?;
    let info = info.with_endpoint(FlightEndpoint::new().with_ticket(ticket));
    Ok(Response::new(info.with_descriptor(request.into_inner())))
}

/// A stream of one batch, with the batch's schema.
fn one_batch<E: ToString>(
    batch: Result<RecordBatch, E>,
) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(internal)?;
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(stream::iter([Ok(batch)]))
        .map_err(Status::from);
    Ok(Response::new(Box::pin(stream)))
}

type DoGetStream = <SqlServer as FlightService>::DoGetStream;

fn lock<T>(mutex: &Mutex<T>) -> Result<MutexGuard<'_, T>, Status> {
    mutex
        .lock()
        .map_err(|_| Status::internal("a lock was poisoned"))
}

fn invalid(error: impl ToString) -> Status {
    Status::invalid_argument(error.to_string())
}

fn internal(error: impl ToString) -> Status {
    Status::internal(error.to_string())
}
// ANCHOR_END: answers

// ANCHOR: state
/// An in-memory SQLite database behind Flight SQL.
pub struct SqlServer {
    database: Mutex<Connection>,
    info: SqlInfoData,
    tokens: Tokens,
    prepared: Mutex<HashMap<Vec<u8>, Prepared>>,
}

/// A prepared statement's SQL and the parameters bound to it last.
type Prepared = (String, Vec<RecordBatch>);

impl SqlServer {
    /// The Arrow schema of the result of `sql`.
    fn schema(&self, sql: &str) -> Result<SchemaRef, Status> {
        let database = lock(&self.database)?;
        let (_, schema) = prepare(&database, sql)?;
        Ok(schema)
    }

    /// The result of `sql` with `parameters`.
    fn query(
        &self,
        sql: &str,
        parameters: &[RecordBatch],
    ) -> Result<RecordBatch, Status> {
        let database = lock(&self.database)?;
        run(&database, sql, parameters)
    }

    fn prepared(&self, handle: &[u8]) -> Result<Prepared, Status> {
        let prepared = lock(&self.prepared)?;
        let found = prepared.get(handle).cloned();
        found.ok_or_else(|| {
            Status::not_found("no prepared statement has this handle")
        })
    }
}
// ANCHOR_END: state

// ANCHOR: handshake
#[tonic::async_trait]
impl FlightSqlService for SqlServer {
    type FlightService = SqlServer;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        >,
        Status,
    > {
        let user = log_in(authorization(&request))?;
        let new_token = || URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let token = lock(&self.tokens)?
            .entry(user)
            .or_insert_with(new_token)
            .clone();
        let bearer = format!("Bearer {token}").parse().map_err(internal)?;
        let answer = HandshakeResponse {
            protocol_version: 0,
            payload: token.into(),
        };
        let mut response = Response::new(Box::pin(stream::iter([Ok(answer)])) as _);
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }
    // ANCHOR_END: handshake

    // ANCHOR: metadata
    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(&self.info.schema(), query, request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        one_batch(query.into_builder(&self.info).build())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(&query.into_builder().schema(), query, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        one_batch(query.into_builder().build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(&query.clone().into_builder().schema(), query, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append("", "main");
        one_batch(builder.build())
    }

    // ANCHOR_END: metadata

    // ANCHOR: tables
    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(&query.clone().into_builder().schema(), query, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let database = lock(&self.database)?;
        let sql = "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY 1";
        let names = run(&database, sql, &[])?;
        let mut builder = query.into_builder();
        for name in names.column(0).as_string::<i32>().iter().flatten() {
            let sql = format!("SELECT * FROM \"{}\"", name.replace('"', "\"\""));
            let (_, schema) = prepare(&database, &sql)?;
            builder
                .append("", "main", name, "TABLE", &schema)
                .map_err(internal)?;
        }
        one_batch(builder.build())
    }
    // ANCHOR_END: tables

    // ANCHOR: statement
    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.schema(&query.query)?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into(),
        };
        flight_info(&schema, ticket, request)
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let sql = String::from_utf8_lossy(&ticket.statement_handle);
        one_batch(self.query(&sql, &[]))
    }
    // ANCHOR_END: statement

    // ANCHOR: prepare
    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let schema = self.schema(&query.query)?;
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(internal)?;
        let mut prepared = lock(&self.prepared)?;
        if prepared.len() >= 1000 {
            return Err(Status::resource_exhausted("1000 statements are open"));
        }
        let handle = rand::random::<[u8; 16]>().to_vec();
        prepared.insert(handle.clone(), (query.query, Vec::new()));
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema: info.schema,
            ..Default::default()
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let data = within_limit(request.into_inner()).map_err(FlightError::from);
        let stream = FlightRecordBatchStream::new_from_flight_data(data);
        let parameters: Vec<RecordBatch> = stream.try_collect().await?;
        let mut prepared = lock(&self.prepared)?;
        if let Some(statement) =
            prepared.get_mut(&query.prepared_statement_handle[..])
        {
            statement.1 = parameters;
        }
        Ok(DoPutPreparedStatementResult::default())
    }

    // ANCHOR_END: prepare

    // ANCHOR: prepared
    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let (sql, _) = self.prepared(&query.prepared_statement_handle)?;
        let schema = self.schema(&sql)?;
        flight_info(&schema, query, request)
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let (sql, parameters) = self.prepared(&query.prepared_statement_handle)?;
        one_batch(self.query(&sql, &parameters))
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        lock(&self.prepared)?.remove(&query.prepared_statement_handle[..]);
        Ok(())
    }
    // ANCHOR_END: prepared

    // ANCHOR: transactions
    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        let transaction_id = "read-only".into();
        Ok(ActionBeginTransactionResult { transaction_id })
    }

    async fn do_action_end_transaction(
        &self,
        _query: ActionEndTransactionRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Ok(())
    }
    // ANCHOR_END: transactions
}

// ANCHOR: copy_upload_limit
/// The most one message of an upload may bring, as it comes and once its
/// buffers are decompressed: 64 MiB. Larger messages are refused.
pub const UPLOAD_MESSAGE_LIMIT: usize = 64 * 1024 * 1024;

/// The messages of an upload, each refused with `ResourceExhausted` if it
/// is over [`UPLOAD_MESSAGE_LIMIT`], before arrow-flight decodes it. The
/// service must be built with `max_decoding_message_size` of that limit.
pub fn within_limit(
    messages: impl Stream<Item = Result<FlightData, Status>> + Send + Unpin + 'static,
) -> impl Stream<Item = Result<FlightData, Status>> + Send + Unpin + 'static {
    messages.map(|message| {
        let message = message.map_err(too_large)?;
        let size = decompressed_size(&message);
        if size > UPLOAD_MESSAGE_LIMIT {
            return Err(Status::resource_exhausted(format!(
                "a compressed message of the upload would take {size} bytes \
                 once decompressed; the limit is {UPLOAD_MESSAGE_LIMIT} bytes \
                 (64 MiB): send smaller record batches"
            )));
        }
        Ok(message)
    })
}

/// tonic refuses a message over `max_decoding_message_size` with
/// `OutOfRange`; the client is told the limit, as `ResourceExhausted`.
fn too_large(status: Status) -> Status {
    let message = status.message();
    if status.code() == Code::OutOfRange && message.contains("length too large") {
        return Status::resource_exhausted(format!(
            "a message of the upload is larger than the limit of \
             {UPLOAD_MESSAGE_LIMIT} bytes (64 MiB): send smaller record batches"
        ));
    }
    status
}

/// The bytes that the buffers of a compressed record batch or dictionary
/// take once decompressed, as the 8 bytes before each buffer say. Messages
/// that are not compressed, or not valid, count 0: the decoder checks them.
fn decompressed_size(data: &FlightData) -> usize {
    let Ok(message) = arrow_ipc::root_as_message(&data.data_header) else {
        return 0;
    };
    let batch = message
        .header_as_record_batch()
        .or_else(|| message.header_as_dictionary_batch().and_then(|d| d.data()));
    let Some(batch) = batch.filter(|batch| batch.compression().is_some()) else {
        return 0;
    };
    let mut size = 0usize;
    for buffer in batch.buffers().iter().flatten() {
        let start = usize::try_from(buffer.offset()).unwrap_or(usize::MAX);
        let prefix = data.data_body.get(start..start.saturating_add(8));
        if let Some(prefix) = prefix.and_then(|p| <[u8; 8]>::try_from(p).ok()) {
            let length = i64::from_le_bytes(prefix);
            size = size.saturating_add(usize::try_from(length).unwrap_or(0));
        }
    }
    size
}
// ANCHOR_END: copy_upload_limit

// ANCHOR: serve
/// Serves Flight SQL over a new in-memory database on `listener` until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let database = Connection::open_in_memory()?;
    database.execute_batch(
        "CREATE TABLE animals (name TEXT, legs INTEGER, size REAL) STRICT;
         INSERT INTO animals VALUES ('cat', 4, 46), ('ostrich', 2, 200),
             ('spider', 8, 1.5), ('snail', 0, NULL);",
    )?;
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "first Flight SQL server");
    info.append(SqlInfo::FlightSqlServerReadOnly, true);
    let transactions = SqlSupportedTransaction::Transaction as i32;
    info.append(SqlInfo::FlightSqlServerTransaction, transactions);
    let tokens = Tokens::default();
    let server = SqlServer {
        database: Mutex::new(database),
        info: info.build()?,
        tokens: tokens.clone(),
        prepared: Mutex::default(),
    };
    let check = move |request| authorize(&tokens, request);
    Server::builder()
        .add_service(InterceptedService::new(
            FlightServiceServer::new(server)
                .max_decoding_message_size(UPLOAD_MESSAGE_LIMIT),
            check,
        ))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let addr = std::env::args().nth(1);
    let listener =
        TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8819")).await?;

    // ANCHOR: copy_stop_on_signal
    #[cfg(unix)]
    let mut interrupt = signal(SignalKind::interrupt())?;
    #[cfg(unix)]
    let mut terminate = signal(SignalKind::terminate())?;
    let stop = async move {
        #[cfg(unix)]
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    // ANCHOR_END: copy_stop_on_signal
    println!("Serving on grpc://{}", listener.local_addr()?);
    serve(listener, stop).await?;
    Ok(())
}
// ANCHOR_END: serve
