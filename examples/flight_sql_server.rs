// ANCHOR: uses
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::builder::Int32Builder;
use arrow_array::builder::{
    BinaryBuilder, Float64Builder, Int64Builder, StringBuilder, UInt8Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, UnionArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData,
    XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult,
    ActionCancelQueryRequest, ActionCancelQueryResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionEndTransactionRequest, Any,
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas,
    CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, EndTransaction, Nullable,
    ProstMessageExt, Searchable, SqlInfo, SqlSupportedTransaction,
    TableExistsOption, TableNotExistOption, TicketStatementQuery, XdbcDataType,
};
use arrow_flight::{
    CancelFlightInfoRequest, CancelFlightInfoResult, Criteria, Empty, FlightData,
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, PollInfo, SchemaResult, Ticket,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use futures::stream::{self, Stream, StreamExt, TryStreamExt};
use prost::Message;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, Statement};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{OwnedMutexGuard, mpsc};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::service::InterceptorLayer;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};
// ANCHOR_END: uses

// ANCHOR: database
/// The schema and rows of a new database, so that the recipe runs with no
/// setup.
const FIRST_RUN: &str = "
    CREATE TABLE animals (
        name TEXT PRIMARY KEY,
        legs INTEGER NOT NULL,
        size REAL NOT NULL
    );
    INSERT INTO animals VALUES
        ('ant', 6, 0.5), ('spider', 8, 2), ('cat', 4, 46),
        ('dog', 4, 90), ('ostrich', 2, 200), ('horse', 4, 240);
    CREATE TABLE sightings (
        id INTEGER PRIMARY KEY,
        animal TEXT NOT NULL REFERENCES animals (name),
        place TEXT NOT NULL,
        photo BLOB
    );
    INSERT INTO sightings (animal, place, photo) VALUES
        ('cat', 'garden', x'cafe'), ('dog', 'park', NULL),
        ('ant', 'kitchen', NULL);
";

/// How long a statement waits for another connection's write lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the database file, creating it with [`FIRST_RUN`] when it is new.
pub fn create_database(path: &Path) -> rusqlite::Result<()> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "wal")?;
    let tables: i64 = connection.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
        [],
        |row| row.get(0),
    )?;
    if tables == 0 {
        connection.execute_batch(FIRST_RUN)?;
    }
    Ok(())
}

/// Opens a connection for one call (or one transaction): statements that
/// would reach other files or change how SQLite runs are refused.
fn open(path: &Path) -> Result<Connection, Status> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut connection = Connection::open_with_flags(path, flags)
        .map_err(|_| Status::unavailable("the database cannot be opened"))?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(sql_error)?;
    connection
        .pragma_update(None, "foreign_keys", true)
        .map_err(sql_error)?;
    connection.authorizer(Some(authorize)).map_err(sql_error)?;
    Ok(connection)
}

// ANCHOR_END: database

// ANCHOR: authorizer
/// The pragmas a client may run: they read the schema and change nothing.
const PRAGMAS: [&str; 6] = [
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "foreign_key_list",
    "foreign_key_check",
];

fn authorize(context: AuthContext<'_>) -> Authorization {
    match context.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
            Authorization::Deny
        }
        AuthAction::Pragma { pragma_name, .. } => {
            let allowed =
                PRAGMAS.iter().any(|p| p.eq_ignore_ascii_case(pragma_name));
            if allowed {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }
        AuthAction::Function { function_name } => {
            if function_name.eq_ignore_ascii_case("load_extension") {
                Authorization::Deny
            } else {
                Authorization::Allow
            }
        }
        _ => Authorization::Allow,
    }
}

// ANCHOR_END: authorizer

// ANCHOR: errors
/// SQLite's error as a gRPC status: SQLite's own words, no file names.
fn sql_error(error: rusqlite::Error) -> Status {
    use rusqlite::ErrorCode;
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.unwrap_or_else(|| failure.to_string());
            match failure.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                    Status::unavailable(format!("the database is busy: {message}"))
                }
                ErrorCode::OperationInterrupted => {
                    Status::cancelled("the statement was cancelled")
                }
                ErrorCode::AuthorizationForStatementDenied => {
                    Status::permission_denied(format!(
                        "{message}: this server refuses ATTACH, DETACH, \
                         load_extension and most pragmas"
                    ))
                }
                ErrorCode::ConstraintViolation => {
                    Status::failed_precondition(message)
                }
                ErrorCode::CannotOpen
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::ReadOnly => {
                    Status::internal("the database failed; see the server's log")
                }
                _ => Status::invalid_argument(message),
            }
        }
        rusqlite::Error::SqlInputError { msg, offset, .. } => {
            Status::invalid_argument(format!("{msg} (at byte {offset})"))
        }
        rusqlite::Error::MultipleStatement => Status::invalid_argument(
            "the text holds more than one statement: send one at a time",
        ),
        rusqlite::Error::InvalidParameterCount(given, wanted) => {
            Status::invalid_argument(format!(
                "the statement has {wanted} parameter(s), {given} were bound"
            ))
        }
        other => Status::invalid_argument(other.to_string()),
    }
}
// ANCHOR_END: errors

// ANCHOR: types
/// The Arrow type of a declared SQLite column type, by SQLite's own rules
/// for a column's affinity; `None` where the values decide (no declared
/// type, or NUMERIC affinity).
pub fn declared_type(declared: &str) -> Option<DataType> {
    let declared = declared.to_ascii_uppercase();
    if declared.contains("INT") {
        Some(DataType::Int64)
    } else if ["CHAR", "CLOB", "TEXT"]
        .iter()
        .any(|t| declared.contains(t))
    {
        Some(DataType::Utf8)
    } else if declared.contains("BLOB") {
        Some(DataType::Binary)
    } else if ["REAL", "FLOA", "DOUB"]
        .iter()
        .any(|t| declared.contains(t))
    {
        Some(DataType::Float64)
    } else {
        None
    }
}

/// The Arrow type of a value, for a column without a declared type.
fn value_type(value: ValueRef<'_>) -> DataType {
    match value {
        ValueRef::Integer(_) => DataType::Int64,
        ValueRef::Real(_) => DataType::Float64,
        ValueRef::Blob(_) => DataType::Binary,
        ValueRef::Text(_) | ValueRef::Null => DataType::Utf8,
    }
}

// ANCHOR_END: types

// ANCHOR: columns
/// The most rows and bytes (roughly) in one batch of a result.
pub const BATCH_ROWS: usize = 8192;
pub const BATCH_BYTES: usize = 1 << 20;

enum Column {
    Integers(Int64Builder),
    Reals(Float64Builder),
    Texts(StringBuilder),
    Blobs(BinaryBuilder),
}

impl Column {
    fn new(data_type: &DataType) -> Column {
        match data_type {
            DataType::Int64 => Column::Integers(Int64Builder::new()),
            DataType::Float64 => Column::Reals(Float64Builder::new()),
            DataType::Binary => Column::Blobs(BinaryBuilder::new()),
            _ => Column::Texts(StringBuilder::new()),
        }
    }

    /// Appends `value`, converted where SQLite's dynamic typing put a value
    /// of another type in the column; returns about how many bytes it took.
    fn append(&mut self, value: ValueRef<'_>, name: &str) -> Result<usize, Status> {
        let mismatch = |wanted: &str| {
            Status::invalid_argument(format!(
                "column {name:?} holds a {} value where {wanted} was expected",
                value.data_type()
            ))
        };
        match (self, value) {
            (Column::Integers(b), ValueRef::Null) => b.append_null(),
            (Column::Reals(b), ValueRef::Null) => b.append_null(),
            (Column::Texts(b), ValueRef::Null) => b.append_null(),
            (Column::Blobs(b), ValueRef::Null) => b.append_null(),
            (Column::Integers(b), ValueRef::Integer(i)) => b.append_value(i),
            (Column::Integers(_), _) => return Err(mismatch("INTEGER")),
            (Column::Reals(b), ValueRef::Real(f)) => b.append_value(f),
            (Column::Reals(b), ValueRef::Integer(i)) => b.append_value(i as f64),
            (Column::Reals(_), _) => return Err(mismatch("REAL")),
            (Column::Texts(b), ValueRef::Text(t)) => {
                b.append_value(String::from_utf8_lossy(t));
                return Ok(t.len() + 4);
            }
            (Column::Texts(b), ValueRef::Integer(i)) => {
                b.append_value(i.to_string())
            }
            (Column::Texts(b), ValueRef::Real(f)) => b.append_value(f.to_string()),
            (Column::Texts(_), ValueRef::Blob(_)) => return Err(mismatch("TEXT")),
            (Column::Blobs(b), ValueRef::Blob(bytes) | ValueRef::Text(bytes)) => {
                b.append_value(bytes);
                return Ok(bytes.len() + 4);
            }
            (Column::Blobs(_), _) => return Err(mismatch("BLOB")),
        }
        Ok(8)
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Integers(b) => Arc::new(b.finish()),
            Column::Reals(b) => Arc::new(b.finish()),
            Column::Texts(b) => Arc::new(b.finish()),
            Column::Blobs(b) => Arc::new(b.finish()),
        }
    }
}
// ANCHOR_END: columns

// ANCHOR: parameters
/// One Arrow value as a SQLite value: integers and booleans as INTEGER,
/// floats as REAL, binary as BLOB, a union's value as its member's (a client
/// that binds values of any type sends a union), anything else as its text.
fn sql_value(column: &dyn Array, row: usize, name: &str) -> Result<Value, Status> {
    let refused = |what: String| {
        Status::invalid_argument(format!("parameter {name:?} in row {row}: {what}"))
    };
    if let Some(union) = column.as_any().downcast_ref::<UnionArray>() {
        return sql_value(union.value(row).as_ref(), 0, name);
    }
    let null = column.logical_nulls().is_some_and(|n| n.is_null(row));
    if null || column.data_type() == &DataType::Null {
        return Ok(Value::Null);
    }
    let one = column.slice(row, 1);
    let cast = |to: &DataType| {
        arrow_cast::cast(&one, to).map_err(|e| refused(e.to_string()))
    };
    let data_type = column.data_type();
    let value = if data_type.is_integer() || data_type == &DataType::Boolean {
        let integer = cast(&DataType::Int64)?;
        let integer = integer.as_primitive::<Int64Type>();
        if integer.is_null(0) {
            return Err(refused("does not fit in SQLite's 64-bit integer".into()));
        }
        Value::Integer(integer.value(0))
    } else if data_type.is_floating() {
        Value::Real(
            cast(&DataType::Float64)?
                .as_primitive::<Float64Type>()
                .value(0),
        )
    } else if let DataType::Binary
    | DataType::LargeBinary
    | DataType::BinaryView
    | DataType::FixedSizeBinary(_) = data_type
    {
        Value::Blob(
            cast(&DataType::Binary)?
                .as_binary::<i32>()
                .value(0)
                .to_vec(),
        )
    } else {
        let text = ArrayFormatter::try_new(column, &FormatOptions::default())
            .map_err(|_| {
                refused(format!("this server cannot bind a {data_type}"))
            })?;
        Value::Text(text.value(row).to_string())
    };
    Ok(value)
}

/// The values of row `row` of `parameters`, one per column.
fn parameter_row(
    parameters: &RecordBatch,
    row: usize,
) -> Result<Vec<Value>, Status> {
    let schema = parameters.schema();
    let columns = parameters.columns().iter().zip(schema.fields());
    columns
        .map(|(column, field)| sql_value(column.as_ref(), row, field.name()))
        .collect()
}

/// Binds one row of parameters to `statement`, by position.
fn bind(statement: &mut Statement<'_>, values: &[Value]) -> Result<(), Status> {
    let wanted = statement.parameter_count();
    if values.len() != wanted {
        return Err(Status::invalid_argument(format!(
            "the statement has {wanted} parameter(s), {} were bound",
            values.len()
        )));
    }
    for (at, value) in values.iter().enumerate() {
        statement
            .raw_bind_parameter(at + 1, value)
            .map_err(sql_error)?;
    }
    Ok(())
}

// ANCHOR_END: parameters

// ANCHOR: schema
/// The schema of a statement's result: the declared types of its columns,
/// and for the others the type of the value in the first row (a statement
/// that changes data is not run for that: its undeclared columns are text).
fn result_schema(
    statement: &mut Statement<'_>,
    values: &[Value],
) -> Result<SchemaRef, Status> {
    let columns: Vec<(String, Option<DataType>)> = statement
        .columns()
        .map(|c| (c.name().to_string(), c.decl_type().and_then(declared_type)))
        .collect();
    let mut first = Vec::new();
    if statement.readonly() && columns.iter().any(|(_, t)| t.is_none()) {
        bind(statement, values)?;
        let mut rows = statement.raw_query();
        if let Some(row) = rows.next().map_err(sql_error)? {
            for at in 0..columns.len() {
                first.push(value_type(row.get_ref(at).map_err(sql_error)?));
            }
        }
    }
    let fields: Vec<Field> = columns
        .into_iter()
        .enumerate()
        .map(|(at, (name, declared))| {
            let data_type = declared
                .or_else(|| first.get(at).cloned())
                .unwrap_or(DataType::Utf8);
            Field::new(name, data_type, true)
        })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

// ANCHOR_END: schema

// ANCHOR: run
type Batches = mpsc::Sender<Result<RecordBatch, Status>>;

/// Runs `sql` once per row of `parameters` (once without), sending the
/// result to `out` in batches of at most [`BATCH_ROWS`] rows and about
/// [`BATCH_BYTES`] bytes; stops when the client stops reading.
fn run_query(
    connection: &Connection,
    sql: &str,
    parameters: Option<&RecordBatch>,
    out: &Batches,
    cancelled: &AtomicBool,
) -> Result<(), Status> {
    let mut statement = connection.prepare(sql).map_err(sql_error)?;
    let runs = parameters.map_or(1, RecordBatch::num_rows);
    let mut sent_any = false;
    for index in 0..runs {
        let values = match parameters {
            Some(p) => parameter_row(p, index)?,
            None => Vec::new(),
        };
        let schema = result_schema(&mut statement, &values)?;
        bind(&mut statement, &values)?;
        let names: Vec<String> =
            statement.column_names().map(String::from).collect();
        let mut columns: Vec<Column> = schema
            .fields()
            .iter()
            .map(|f| Column::new(f.data_type()))
            .collect();
        let (mut rows_in_batch, mut bytes_in_batch) = (0, 0);
        let mut rows = statement.raw_query();
        loop {
            if cancelled.load(Ordering::Relaxed) {
                return Err(Status::cancelled("the query was cancelled"));
            }
            let row = rows.next().map_err(sql_error)?;
            if let Some(row) = row {
                for (at, column) in columns.iter_mut().enumerate() {
                    let value = row.get_ref(at).map_err(sql_error)?;
                    bytes_in_batch += column.append(value, &names[at])?;
                }
                rows_in_batch += 1;
            }
            let full = rows_in_batch >= BATCH_ROWS || bytes_in_batch >= BATCH_BYTES;
            let last = row.is_none();
            if full || (last && (rows_in_batch > 0 || !sent_any)) {
                let arrays = columns.iter_mut().map(Column::finish).collect();
                let rows =
                    RecordBatchOptions::new().with_row_count(Some(rows_in_batch));
                let batch = RecordBatch::try_new_with_options(
                    schema.clone(),
                    arrays,
                    &rows,
                )
                .map_err(|_| Status::internal("a batch could not be built"))?;
                if out.blocking_send(Ok(batch)).is_err() {
                    return Ok(());
                }
                sent_any = true;
                (rows_in_batch, bytes_in_batch) = (0, 0);
            }
            if last {
                break;
            }
        }
    }
    if !sent_any {
        let schema = result_schema(&mut statement, &[])?;
        let _ = out.blocking_send(Ok(RecordBatch::new_empty(schema)));
    }
    Ok(())
}

/// Runs `sql` once per row of `parameters` (once without), in one
/// transaction, and returns the number of rows it changed.
fn run_update(
    connection: &Connection,
    sql: &str,
    parameters: Option<&RecordBatch>,
) -> Result<i64, Status> {
    let mut statement = connection.prepare(sql).map_err(sql_error)?;
    let mut changed = 0;
    match parameters {
        None => {
            bind(&mut statement, &[])?;
            changed += statement.raw_execute().map_err(sql_error)?;
        }
        Some(parameters) => {
            for row in 0..parameters.num_rows() {
                bind(&mut statement, &parameter_row(parameters, row)?)?;
                changed += statement.raw_execute().map_err(sql_error)?;
            }
        }
    }
    Ok(changed as i64)
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
}
// ANCHOR_END: auth

// ANCHOR: bearer
impl SqlServer {
    /// Checks `Bearer <token>` and returns the token: a login is a session,
    /// which owns its prepared statements and transactions.
    fn owner<T>(&self, request: &Request<T>) -> Result<String, Status> {
        self.user(request)?;
        let token =
            authorization(request.metadata())?.trim_start_matches("Bearer ");
        Ok(token.to_string())
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
// ANCHOR_END: bearer

// ANCHOR: state
/// The most prepared statements and open transactions kept at once, for
/// all users together.
pub const MAX_PREPARED: usize = 1000;
pub const MAX_TRANSACTIONS: usize = 64;

/// The most bytes of parameters one DoPut may bind.
pub const MAX_PARAMETER_BYTES: usize = 16 << 20;

#[derive(Clone)]
struct Prepared {
    owner: String,
    sql: String,
    transaction: Option<Vec<u8>>,
    parameters: Option<RecordBatch>,
}

/// How long a transaction may go unused before it is rolled back: a client
/// that goes away without ending its transaction would otherwise hold
/// SQLite's write lock for ever.
pub const TRANSACTION_IDLE: Duration = Duration::from_secs(30);

struct Transaction {
    owner: String,
    connection: Arc<tokio::sync::Mutex<Connection>>,
    used: Instant,
}

/// Rolls back (by closing their connections) the transactions unused for
/// [`TRANSACTION_IDLE`].
fn expire(transactions: &mut HashMap<Vec<u8>, Transaction>) {
    transactions.retain(|_, t| t.used.elapsed() < TRANSACTION_IDLE);
}

pub struct SqlServer {
    passwords: HashMap<String, String>,
    tokens: Mutex<Tokens>,
    database: PathBuf,
    prepared: Mutex<HashMap<Vec<u8>, Prepared>>,
    transactions: Mutex<HashMap<Vec<u8>, Transaction>>,
    sql_info: SqlInfoData,
    type_info: XdbcTypeInfoData,
    running: RunningQueries,
}

// ANCHOR_END: state

// ANCHOR: session
/// A connection for one call: a new one, or the transaction's, held from
/// the moment the call names it, so that the calls of a transaction run in
/// the order they arrived.
enum Session {
    New(PathBuf),
    Transaction(OwnedMutexGuard<Connection>),
}

/// How long a statement may run; one that streams a result runs as long
/// as its client reads it.
pub const STATEMENT_TIME_LIMIT: Duration = Duration::from_secs(60);

/// How many of SQLite's steps run between two checks whether to stop.
const STEPS: i32 = 10_000;

impl Session {
    /// Runs `work` on the connection, on a thread where blocking is fine,
    /// for at most [`STATEMENT_TIME_LIMIT`].
    async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce(&Connection) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let deadline = Instant::now() + STATEMENT_TIME_LIMIT;
        match self
            .run_until(move || Instant::now() > deadline, work)
            .await
        {
            Err(status) if Instant::now() > deadline => {
                Err(Status::deadline_exceeded(format!(
                    "the statement ran longer than {} s ({})",
                    STATEMENT_TIME_LIMIT.as_secs(),
                    status.message()
                )))
            }
            done => done,
        }
    }

    /// Runs `work` as [`Session::run`] does, until `stop` says to stop:
    /// SQLite asks it every [`STEPS`] steps.
    async fn run_until<T: Send + 'static>(
        self,
        stop: impl FnMut() -> bool + Send + 'static,
        work: impl FnOnce(&Connection) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let job = tokio::task::spawn_blocking(move || match self {
            Session::New(path) => {
                let mut connection = open(&path)?;
                connection
                    .progress_handler(STEPS, Some(stop))
                    .map_err(sql_error)?;
                work(&connection)
            }
            Session::Transaction(mut connection) => {
                if connection.is_autocommit() {
                    return Err(Status::not_found(
                        "no such transaction: it ended while the call waited",
                    ));
                }
                connection
                    .progress_handler(STEPS, Some(stop))
                    .map_err(sql_error)?;
                let done = work(&connection);
                let none = None::<fn() -> bool>;
                connection.progress_handler(0, none).map_err(sql_error)?;
                done
            }
        });
        job.await
            .map_err(|_| Status::internal("the statement's thread failed"))?
    }
}
// ANCHOR_END: session

// ANCHOR: find
fn handle() -> Vec<u8> {
    rand::random::<[u8; 16]>().to_vec()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl SqlServer {
    async fn session(
        &self,
        owner: &str,
        transaction: Option<&[u8]>,
    ) -> Result<Session, Status> {
        let Some(id) = transaction else {
            return Ok(Session::New(self.database.clone()));
        };
        let shared = {
            let mut transactions = lock(&self.transactions);
            expire(&mut transactions);
            match transactions.get_mut(id) {
                Some(t) if t.owner == owner => {
                    t.used = Instant::now();
                    t.connection.clone()
                }
                _ => {
                    return Err(Status::not_found(
                        "no such transaction: it was never begun, has ended, \
                         or is not this session's",
                    ));
                }
            }
        };
        Ok(Session::Transaction(shared.lock_owned().await))
    }

    /// The prepared statement `handle` of the session `owner`.
    fn prepared(&self, owner: &str, handle: &[u8]) -> Result<Prepared, Status> {
        let prepared = lock(&self.prepared);
        match prepared.get(handle) {
            Some(p) if p.owner == owner => Ok(p.clone()),
            _ => Err(Status::not_found(
                "no such prepared statement: it was closed, never created, \
                 or is not this session's",
            )),
        }
    }
}

/// Reads the parameters of a DoPut: at most [`MAX_PARAMETER_BYTES`].
async fn read_parameters(
    request: Request<PeekableFlightDataStream>,
) -> Result<Option<RecordBatch>, Status> {
    let stream = request
        .into_inner()
        .try_filter(|data| std::future::ready(!data.data_header.is_empty()))
        .map_err(FlightError::from);
    let mut batches = FlightRecordBatchStream::new_from_flight_data(stream);
    let mut all = Vec::new();
    let mut bytes = 0;
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| {
            Status::invalid_argument(format!("the parameters do not decode: {e}"))
        })?;
        bytes += batch.get_array_memory_size();
        if bytes > MAX_PARAMETER_BYTES {
            return Err(Status::resource_exhausted(format!(
                "the parameters are over {MAX_PARAMETER_BYTES} bytes: \
                 send fewer rows at a time"
            )));
        }
        all.push(batch);
    }
    let Some(first) = all.first() else {
        return Ok(None);
    };
    let batch = arrow_select::concat::concat_batches(&first.schema(), &all)
        .map_err(|_| {
            Status::invalid_argument("the parameter batches differ in schema")
        })?;
    Ok(Some(batch))
}
// ANCHOR_END: find

// ANCHOR: service
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

/// The ticket of a statement that wrote when its FlightInfo was asked for:
/// its result, read by DoGet, is empty.
const WRITTEN: &[u8] = b"written";

/// Runs `sql` at once if it writes (SQLite's own answer), so that it is
/// done, inside its transaction, when the client's `execute` returns: a
/// client may commit before it reads the result, or never read it.
async fn write_now(
    session: Session,
    sql: &str,
    parameters: Option<RecordBatch>,
) -> Result<bool, Status> {
    let sql = sql.to_string();
    session
        .run(move |connection| {
            let statement = connection.prepare(&sql).map_err(sql_error)?;
            if statement.readonly() {
                return Ok(false);
            }
            if statement.column_count() > 0 {
                return Err(Status::invalid_argument(
                    "a statement that writes and returns rows (RETURNING) is \
                     not served as a query: run it as an update",
                ));
            }
            drop(statement);
            run_update(connection, &sql, parameters.as_ref())?;
            Ok(true)
        })
        .await
}

fn written(descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
    let ticket = TicketStatementQuery {
        statement_handle: WRITTEN.to_vec().into(),
    };
    flight_info(&Schema::empty(), ticket, descriptor)
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

fn schema_bytes(schema: &Schema) -> Result<prost::bytes::Bytes, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|_| Status::internal("the schema could not be encoded"))?;
    Ok(info.schema)
}

fn built<E>(batch: Result<RecordBatch, E>) -> Result<RecordBatch, Status> {
    batch.map_err(|_| Status::internal("the answer could not be built"))
}

/// Streams the result of `sql` from a blocking thread, a batch at a time:
/// the channel holds two batches, so a slow client slows the query down.
/// While it runs, the query is listed in `running` under its ticket, for
/// CancelFlightInfo; SQLite stops it when the client goes away.
fn stream_query(
    running: RunningQueries,
    owner: String,
    ticket: Vec<u8>,
    session: Session,
    query: (String, Option<RecordBatch>),
) -> DoGetStream {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let (sender, receiver) = mpsc::channel(2);
    let errors = sender.clone();
    let cancelled = Arc::new(AtomicBool::new(false));
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let entry = Running {
        owner,
        ticket,
        cancelled: cancelled.clone(),
    };
    lock(&running).insert(id, entry);
    let stop = {
        let (sender, cancelled) = (sender.clone(), cancelled.clone());
        move || sender.is_closed() || cancelled.load(Ordering::Relaxed)
    };
    tokio::spawn(async move {
        let (sql, parameters) = query;
        let ran = session
            .run_until(stop, move |connection| {
                let parameters = parameters.as_ref();
                run_query(connection, &sql, parameters, &sender, &cancelled)
            })
            .await;
        lock(&running).remove(&id);
        if let Err(status) = ran {
            let _ = errors.send(Err(status)).await;
        }
    });
    let batches = stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|batch| (batch, receiver))
    });
    let flight = FlightDataEncoderBuilder::new()
        .build(batches.map_err(FlightError::from))
        .map_err(Status::from);
    Box::pin(flight)
}

/// The schema of `sql`'s result, with the first row of `parameters`.
async fn query_schema(
    session: Session,
    sql: String,
    parameters: Option<RecordBatch>,
) -> Result<SchemaRef, Status> {
    session
        .run(move |connection| {
            let mut statement = connection.prepare(&sql).map_err(sql_error)?;
            let values = match &parameters {
                Some(p) if p.num_rows() > 0 => parameter_row(p, 0)?,
                _ => Vec::new(),
            };
            if parameters.is_none() && statement.parameter_count() > 0 {
                return Err(Status::invalid_argument(
                    "the statement has parameters: prepare it and bind them",
                ));
            }
            result_schema(&mut statement, &values)
        })
        .await
}
// ANCHOR_END: service

// ANCHOR: metadata
/// The primary keys' columns, and the foreign keys' (exported, imported
/// and cross references), in the fields Flight SQL prescribes.
fn primary_keys_schema() -> Schema {
    Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ])
}

fn foreign_keys_schema() -> Schema {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Schema::new(vec![
        text("pk_catalog_name", true),
        text("pk_db_schema_name", true),
        text("pk_table_name", false),
        text("pk_column_name", false),
        text("fk_catalog_name", true),
        text("fk_db_schema_name", true),
        text("fk_table_name", false),
        text("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        text("fk_key_name", true),
        text("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ])
}

/// The tables (and views) of the database, and each one's Arrow schema,
/// from the declared types and NOT NULL of its columns.
fn tables(
    connection: &Connection,
) -> Result<Vec<(String, String, Schema)>, Status> {
    let mut statement = connection
        .prepare(
            "SELECT name, type FROM sqlite_schema \
             WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )
        .map_err(sql_error)?;
    let names = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(sql_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_error)?;
    let mut found = Vec::new();
    for (name, kind) in names {
        let mut columns = connection
            .prepare("SELECT name, type, \"notnull\" FROM pragma_table_info(?1)")
            .map_err(sql_error)?;
        let fields = columns
            .query_map([&name], |row| {
                let declared: String = row.get(1)?;
                let data_type = declared_type(&declared).unwrap_or(DataType::Utf8);
                let not_null: bool = row.get(2)?;
                Ok(Field::new(row.get::<_, String>(0)?, data_type, !not_null))
            })
            .map_err(sql_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql_error)?;
        found.push((name, kind.to_uppercase(), Schema::new(fields)));
    }
    Ok(found)
}

/// One column of a foreign key: (from table, from column, to table, to
/// column, position in the key, on update, on delete).
type ForeignKey = (String, String, String, String, i32, String, String);

fn foreign_keys(connection: &Connection) -> Result<Vec<ForeignKey>, Status> {
    let mut statement = connection
        .prepare(
            "SELECT t.name, k.\"from\", k.\"table\", k.\"to\", k.seq, \
             k.on_update, k.on_delete \
             FROM sqlite_schema AS t, pragma_foreign_key_list(t.name) AS k \
             WHERE t.type = 'table' ORDER BY t.name, k.id, k.seq",
        )
        .map_err(sql_error)?;
    let keys = statement
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get::<_, i32>(4)? + 1,
                row.get(5)?,
                row.get(6)?,
            ))
        })
        .map_err(sql_error)?;
    keys.collect::<Result<Vec<_>, _>>().map_err(sql_error)
}

/// Flight SQL's code of an ON UPDATE or ON DELETE rule.
fn rule(rule: &str) -> u8 {
    match rule {
        "CASCADE" => 0,
        "RESTRICT" => 1,
        "SET NULL" => 2,
        "NO ACTION" => 3,
        _ => 4,
    }
}

fn foreign_key_batch(keys: &[ForeignKey]) -> Result<RecordBatch, Status> {
    let mut text: [StringBuilder; 10] = Default::default();
    let mut sequence = Int32Builder::new();
    let mut rules = [UInt8Builder::new(), UInt8Builder::new()];
    for (table, column, to_table, to_column, seq, update, delete) in keys {
        let row = [None, None, Some(to_table), Some(to_column), None, None]
            .into_iter()
            .chain([Some(table), Some(column), None, None]);
        for (builder, value) in text.iter_mut().zip(row) {
            builder.append_option(value);
        }
        sequence.append_value(*seq);
        rules[0].append_value(rule(update));
        rules[1].append_value(rule(delete));
    }
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for builder in &mut text {
        arrays.push(Arc::new(builder.finish()));
    }
    arrays.insert(8, Arc::new(sequence.finish()));
    for builder in &mut rules {
        arrays.push(Arc::new(builder.finish()));
    }
    built(RecordBatch::try_new(
        Arc::new(foreign_keys_schema()),
        arrays,
    ))
}

fn sql_info() -> Result<SqlInfoData, FlightError> {
    let mut info = SqlInfoDataBuilder::new();
    info.append(
        SqlInfo::FlightSqlServerName,
        "flight-cookbook SQLite server",
    );
    info.append(SqlInfo::FlightSqlServerVersion, rusqlite::version());
    info.append(SqlInfo::FlightSqlServerArrowVersion, "60.1");
    info.append(SqlInfo::FlightSqlServerReadOnly, false);
    info.append(SqlInfo::FlightSqlServerSql, true);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    let transactions = SqlSupportedTransaction::Transaction as i32;
    info.append(SqlInfo::FlightSqlServerTransaction, transactions);
    info.append(SqlInfo::FlightSqlServerCancel, true);
    info.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    info.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, true);
    info.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    info.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    info.append(SqlInfo::SqlDdlCatalog, false);
    info.append(SqlInfo::SqlDdlSchema, false);
    info.append(SqlInfo::SqlDdlTable, true);
    info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    info.append(SqlInfo::SqlTransactionsSupported, true);
    info.append(SqlInfo::SqlKeywords, &SQL_KEYWORDS[..]);
    info.append(SqlInfo::SqlNumericFunctions, &NUMERIC_FUNCTIONS[..]);
    info.append(SqlInfo::SqlStringFunctions, &STRING_FUNCTIONS[..]);
    info.build()
}

/// SQLite's keywords beyond SQL-92's, as JDBC's `getSQLKeywords` lists them.
const SQL_KEYWORDS: [&str; 24] = [
    "ABORT",
    "ANALYZE",
    "ATTACH",
    "AUTOINCREMENT",
    "CONFLICT",
    "DATABASE",
    "DETACH",
    "EXCLUSIVE",
    "EXPLAIN",
    "FAIL",
    "GLOB",
    "IF",
    "IGNORE",
    "INDEXED",
    "INSTEAD",
    "ISNULL",
    "LIMIT",
    "NOTNULL",
    "OFFSET",
    "PLAN",
    "PRAGMA",
    "RAISE",
    "REGEXP",
    "VACUUM",
];
const NUMERIC_FUNCTIONS: [&str; 8] = [
    "abs", "max", "min", "random", "round", "sign", "total", "sum",
];
const STRING_FUNCTIONS: [&str; 12] = [
    "char", "glob", "hex", "instr", "length", "like", "lower", "ltrim", "replace",
    "substr", "trim", "upper",
];

fn type_info() -> Result<XdbcTypeInfoData, FlightError> {
    let mut types = XdbcTypeInfoDataBuilder::new();
    for (name, data_type, quoted) in [
        ("INTEGER", XdbcDataType::XdbcBigint, false),
        ("REAL", XdbcDataType::XdbcDouble, false),
        ("TEXT", XdbcDataType::XdbcVarchar, true),
        ("BLOB", XdbcDataType::XdbcVarbinary, false),
    ] {
        types.append(XdbcTypeInfo {
            type_name: name.to_string(),
            data_type,
            column_size: None,
            literal_prefix: quoted.then(|| "'".to_string()),
            literal_suffix: quoted.then(|| "'".to_string()),
            create_params: None,
            nullable: Nullable::NullabilityNullable,
            case_sensitive: quoted,
            searchable: Searchable::Full,
            unsigned_attribute: Some(false),
            fixed_prec_scale: false,
            auto_increment: Some(false),
            local_type_name: Some(name.to_string()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: data_type,
            datetime_subcode: None,
            num_prec_radix: None,
            interval_precision: None,
        });
    }
    types.build()
}
// ANCHOR_END: metadata

// ANCHOR: ingest
/// The SQLite column type for an Arrow type of an ingested batch.
fn column_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Boolean => "INTEGER",
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "REAL",
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "BLOB",
        _ => "TEXT",
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Writes the batches that arrive on `batches` into `table`, creating,
/// appending or replacing it as `command` says, in one transaction.
fn ingest(
    connection: &Connection,
    command: &CommandStatementIngest,
    mut batches: mpsc::Receiver<RecordBatch>,
    in_transaction: bool,
) -> Result<i64, Status> {
    let options = command.table_definition_options.unwrap_or_default();
    let if_exists = TableExistsOption::try_from(options.if_exists);
    let if_not_exists = TableNotExistOption::try_from(options.if_not_exist);
    let table = quote(&command.table);
    let exists: bool = connection
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_schema \
             WHERE type = 'table' AND name = ?1",
            [&command.table],
            |row| row.get(0),
        )
        .map_err(sql_error)?;
    let Some(first) = batches.blocking_recv() else {
        return Err(Status::invalid_argument("no data to ingest"));
    };
    if !in_transaction {
        connection
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(sql_error)?;
    }
    let create = || {
        let columns: Vec<String> = first
            .schema()
            .fields()
            .iter()
            .map(|f| format!("{} {}", quote(f.name()), column_type(f.data_type())))
            .collect();
        let sql = format!("CREATE TABLE {table} ({})", columns.join(", "));
        connection.execute(&sql, []).map(|_| ()).map_err(sql_error)
    };
    let written = (|| {
        match (exists, if_exists, if_not_exists) {
            (true, Ok(TableExistsOption::Append), _) => {}
            (true, Ok(TableExistsOption::Replace), _) => {
                connection
                    .execute(&format!("DROP TABLE {table}"), [])
                    .map_err(sql_error)?;
                create()?;
            }
            (true, _, _) => {
                return Err(Status::already_exists(format!(
                    "the table {:?} exists: ingest with append or replace",
                    command.table
                )));
            }
            (false, _, Ok(TableNotExistOption::Create)) => create()?,
            (false, _, _) => {
                return Err(Status::not_found(format!(
                    "no table {:?}: ingest with create",
                    command.table
                )));
            }
        }
        let marks = vec!["?"; first.num_columns()].join(", ");
        let mut insert = connection
            .prepare(&format!("INSERT INTO {table} VALUES ({marks})"))
            .map_err(sql_error)?;
        let mut rows = 0;
        let mut batch = Some(first.clone());
        while let Some(current) = batch {
            for row in 0..current.num_rows() {
                bind(&mut insert, &parameter_row(&current, row)?)?;
                insert.raw_execute().map_err(sql_error)?;
                rows += 1;
            }
            batch = batches.blocking_recv();
        }
        Ok(rows)
    })();
    if !in_transaction {
        let end = if written.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        connection.execute_batch(end).map_err(sql_error)?;
    }
    written
}
// ANCHOR_END: ingest

// ANCHOR: session_messages
/// Flight's session messages (Flight.proto), which arrow-flight 60 has no
/// types for: a value of a session option, and the bodies of the
/// SetSessionOptions, GetSessionOptions and CloseSession actions.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionOptionValue {
    #[prost(oneof = "OptionValue", tags = "1, 2, 3, 4, 5")]
    pub value: Option<OptionValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum OptionValue {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(sfixed64, tag = "3")]
    Int64(i64),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(message, tag = "5")]
    Strings(StringList),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StringList {
    #[prost(string, repeated, tag = "1")]
    pub values: Vec<String>,
}

/// `SetSessionOptionsRequest` and `GetSessionOptionsResult` alike.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionOptions {
    #[prost(map = "string, message", tag = "1")]
    pub options: HashMap<String, SessionOptionValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionsResult {
    #[prost(map = "string, message", tag = "1")]
    pub errors: HashMap<String, SetSessionOptionError>,
}

/// 1: an unknown option, 2: a value the option cannot take.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetSessionOptionError {
    #[prost(int32, tag = "1")]
    pub value: i32,
}

/// 1: closed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CloseSessionResult {
    #[prost(int32, tag = "1")]
    pub status: i32,
}

// ANCHOR_END: session_messages

// ANCHOR: sessions
/// The options of every session: the database has no catalog and one
/// schema, `main`, so these are all the values they can take.
fn session_options() -> HashMap<String, SessionOptionValue> {
    let text = |value: &str| SessionOptionValue {
        value: Some(OptionValue::String(value.to_string())),
    };
    HashMap::from([
        ("catalog".to_string(), text("")),
        ("schema".to_string(), text("main")),
    ])
}

fn action_result(
    message: impl Message,
) -> <SqlServer as FlightService>::DoActionStream {
    let result = arrow_flight::Result {
        body: message.encode_to_vec().into(),
    };
    Box::pin(stream::iter([Ok(result)]))
}

/// A running query that a client may cancel: its owner, the ticket it
/// serves, and the flag that stops it.
struct Running {
    owner: String,
    ticket: Vec<u8>,
    cancelled: Arc<AtomicBool>,
}

type RunningQueries = Arc<Mutex<HashMap<u64, Running>>>;

impl SqlServer {
    /// Cancels the queries of `owner` that serve a ticket of `info`: 1 when
    /// one was running (cancelled), 3 when none was (not cancellable).
    fn cancel(&self, owner: &str, info: &FlightInfo) -> u8 {
        let tickets: Vec<&[u8]> = info
            .endpoint
            .iter()
            .filter_map(|e| e.ticket.as_ref().map(|t| &t.ticket[..]))
            .collect();
        let mut found = false;
        for query in lock(&self.running).values() {
            if query.owner == owner && tickets.contains(&&query.ticket[..]) {
                query.cancelled.store(true, Ordering::Relaxed);
                found = true;
            }
        }
        if found { 1 } else { 3 }
    }
}
// ANCHOR_END: sessions

// ANCHOR: sql_service
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
    // ANCHOR_END: sql_service

    // ANCHOR: sql_statements
    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let owner = self.owner(&request)?;
        let session = self
            .session(&owner, query.transaction_id.as_deref())
            .await?;
        if write_now(session, &query.query, None).await? {
            return written(request.into_inner());
        }
        let session = self
            .session(&owner, query.transaction_id.as_deref())
            .await?;
        let schema = query_schema(session, query.query.clone(), None).await?;
        let ticket = TicketStatementQuery {
            statement_handle: query.encode_to_vec().into(),
        };
        flight_info(&schema, ticket, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let owner = self.owner(&request)?;
        if ticket.statement_handle == WRITTEN {
            let empty = RecordBatch::new_empty(Arc::new(Schema::empty()));
            return Ok(Response::new(batch_stream(empty)));
        }
        let ticket_bytes = request.get_ref().ticket.to_vec();
        let query = CommandStatementQuery::decode(ticket.statement_handle)
            .map_err(|_| {
                Status::invalid_argument("the ticket is not one of this server's")
            })?;
        let session = self
            .session(&owner, query.transaction_id.as_deref())
            .await?;
        let running = self.running.clone();
        let query = (query.query, None);
        let stream = stream_query(running, owner, ticket_bytes, session, query);
        Ok(Response::new(stream))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let owner = self.owner(&request)?;
        let session = self
            .session(&owner, command.transaction_id.as_deref())
            .await?;
        session
            .run(move |connection| run_update(connection, &command.query, None))
            .await
    }
    // ANCHOR_END: sql_statements

    // ANCHOR: sql_prepare
    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let owner = self.owner(&request)?;
        let session = self
            .session(&owner, query.transaction_id.as_deref())
            .await?;
        let sql = query.query.clone();
        let (dataset, parameters) = session
            .run(move |connection| {
                let mut statement = connection.prepare(&sql).map_err(sql_error)?;
                let count = statement.parameter_count();
                let values = vec![Value::Null; count];
                let dataset = result_schema(&mut statement, &values)?;
                let fields: Vec<Field> = (1..=count)
                    .map(|at| {
                        let name = statement.parameter_name(at).map(String::from);
                        let name = name.unwrap_or_else(|| format!("${at}"));
                        Field::new(name, DataType::Null, true)
                    })
                    .collect();
                Ok((dataset, Schema::new(fields)))
            })
            .await?;
        let id = handle();
        let mut prepared = lock(&self.prepared);
        if prepared.len() >= MAX_PREPARED {
            return Err(Status::resource_exhausted(format!(
                "{MAX_PREPARED} prepared statements are open: close some first"
            )));
        }
        prepared.insert(
            id.clone(),
            Prepared {
                owner,
                sql: query.query,
                transaction: query.transaction_id.map(|t| t.to_vec()),
                parameters: None,
            },
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: id.into(),
            dataset_schema: schema_bytes(&dataset)?,
            parameter_schema: schema_bytes(&parameters)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let owner = self.owner(&request)?;
        self.prepared(&owner, &query.prepared_statement_handle)?;
        lock(&self.prepared).remove(&query.prepared_statement_handle[..]);
        Ok(())
    }
    // ANCHOR_END: sql_prepare

    // ANCHOR: sql_prepared
    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let owner = self.owner(&request)?;
        let handle = query.prepared_statement_handle;
        self.prepared(&owner, &handle)?;
        let parameters = read_parameters(request).await?;
        match lock(&self.prepared).get_mut(&handle[..]) {
            Some(prepared) => prepared.parameters = parameters,
            None => {
                return Err(Status::not_found("the prepared statement was closed"));
            }
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let owner = self.owner(&request)?;
        let Prepared {
            sql,
            parameters,
            transaction,
            ..
        } = self.prepared(&owner, &query.prepared_statement_handle)?;
        let session = self.session(&owner, transaction.as_deref()).await?;
        if write_now(session, &sql, parameters.clone()).await? {
            return written(request.into_inner());
        }
        let session = self.session(&owner, transaction.as_deref()).await?;
        let schema = query_schema(session, sql, parameters).await?;
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let owner = self.owner(&request)?;
        let Prepared {
            sql,
            parameters,
            transaction,
            ..
        } = self.prepared(&owner, &query.prepared_statement_handle)?;
        let session = self.session(&owner, transaction.as_deref()).await?;
        let ticket = request.get_ref().ticket.to_vec();
        let running = self.running.clone();
        let stream =
            stream_query(running, owner, ticket, session, (sql, parameters));
        Ok(Response::new(stream))
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let owner = self.owner(&request)?;
        let Prepared {
            sql,
            parameters: bound,
            transaction,
            ..
        } = self.prepared(&owner, &query.prepared_statement_handle)?;
        let session = self.session(&owner, transaction.as_deref()).await?;
        let parameters = read_parameters(request).await?.or(bound);
        session
            .run(move |connection| {
                run_update(connection, &sql, parameters.as_ref())
            })
            .await
    }
    // ANCHOR_END: sql_prepared

    // ANCHOR: sql_ingest
    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let owner = self.owner(&request)?;
        if command.temporary
            || command.catalog.is_some()
            || command.schema.is_some()
        {
            return Err(Status::invalid_argument(
                "ingest into a table of the database: no catalog, schema or \
                 temporary table",
            ));
        }
        let transaction = command.transaction_id.clone();
        let session = self.session(&owner, transaction.as_deref()).await?;
        let (sender, receiver) = mpsc::channel(2);
        let writer = session.run(move |connection| {
            ingest(connection, &command, receiver, transaction.is_some())
        });
        let reader = async move {
            let stream = request.into_inner().map_err(FlightError::from);
            let mut batches = FlightRecordBatchStream::new_from_flight_data(stream);
            while let Some(batch) = batches.next().await {
                let batch = batch.map_err(|e| {
                    Status::invalid_argument(format!("the data do not decode: {e}"))
                })?;
                if sender.send(batch).await.is_err() {
                    break;
                }
            }
            Ok::<(), Status>(())
        };
        let (written, read) = tokio::join!(writer, reader);
        read?;
        written
    }
    // ANCHOR_END: sql_ingest

    // ANCHOR: sql_transactions
    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        let owner = self.owner(&request)?;
        {
            let mut transactions = lock(&self.transactions);
            expire(&mut transactions);
            if transactions.len() >= MAX_TRANSACTIONS {
                return Err(Status::resource_exhausted(format!(
                    "{MAX_TRANSACTIONS} transactions are open: end some first"
                )));
            }
        }
        let path = self.database.clone();
        let connection = tokio::task::spawn_blocking(move || {
            let connection = open(&path)?;
            connection.execute_batch("BEGIN").map_err(sql_error)?;
            Ok::<_, Status>(connection)
        })
        .await
        .map_err(|_| Status::internal("the transaction's thread failed"))??;
        let id = handle();
        let transaction = Transaction {
            owner,
            connection: Arc::new(tokio::sync::Mutex::new(connection)),
            used: Instant::now(),
        };
        lock(&self.transactions).insert(id.clone(), transaction);
        Ok(ActionBeginTransactionResult {
            transaction_id: id.into(),
        })
    }

    async fn do_action_end_transaction(
        &self,
        query: ActionEndTransactionRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        let owner = self.owner(&request)?;
        let end = match EndTransaction::try_from(query.action) {
            Ok(EndTransaction::Commit) => "COMMIT",
            Ok(EndTransaction::Rollback) => "ROLLBACK",
            _ => {
                return Err(Status::invalid_argument(
                    "end a transaction with commit or rollback",
                ));
            }
        };
        let Session::Transaction(shared) =
            self.session(&owner, Some(&query.transaction_id)).await?
        else {
            return Err(Status::not_found("no such transaction"));
        };
        lock(&self.transactions).remove(&query.transaction_id[..]);
        Session::Transaction(shared)
            .run(move |connection| connection.execute_batch(end).map_err(sql_error))
            .await
    }
    // ANCHOR_END: sql_transactions

    // ANCHOR: sql_info
    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        flight_info(&self.sql_info.schema(), query, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let batch = built(query.into_builder(&self.sql_info).build())?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        flight_info(&self.type_info.schema(), query, request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let batch = built(query.into_builder(&self.type_info).build())?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        let schema = query.into_builder().schema();
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let batch = built(query.into_builder().build())?;
        Ok(Response::new(batch_stream(batch)))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        let schema = query.clone().into_builder().schema();
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let mut builder = query.into_builder();
        builder.append("", "main");
        Ok(Response::new(batch_stream(built(builder.build())?)))
    }
    // ANCHOR_END: sql_info

    // ANCHOR: sql_tables
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
        let owner = self.owner(&request)?;
        let found = self.session(&owner, None).await?.run(tables).await?;
        let mut builder = query.into_builder();
        for (name, kind, schema) in found {
            builder
                .append("", "main", name, kind, &schema)
                .map_err(|_| {
                    Status::internal("the table list could not be built")
                })?;
        }
        Ok(Response::new(batch_stream(built(builder.build())?)))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        let schema = query.into_builder().schema();
        flight_info(&schema, query, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.user(&request)?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("VIEW");
        Ok(Response::new(batch_stream(built(builder.build())?)))
    }
    // ANCHOR_END: sql_tables

    // ANCHOR: sql_primary_keys
    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        flight_info(&primary_keys_schema(), query, request.into_inner())
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let owner = self.owner(&request)?;
        let table = query.table;
        let keys = self
            .session(&owner, None)
            .await?
            .run(move |connection| {
                let mut statement = connection
                    .prepare(
                        "SELECT name, pk FROM pragma_table_info(?1) \
                         WHERE pk > 0 ORDER BY pk",
                    )
                    .map_err(sql_error)?;
                let keys = statement
                    .query_map([&table], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, i32>(1)?))
                    })
                    .map_err(sql_error)?;
                let keys =
                    keys.collect::<Result<Vec<_>, _>>().map_err(sql_error)?;
                Ok((table, keys))
            })
            .await?;
        let (table, keys) = keys;
        let mut text: Vec<StringBuilder> =
            (0..5).map(|_| StringBuilder::new()).collect();
        let mut sequence = Int32Builder::new();
        for (column, at) in keys {
            text[0].append_null();
            text[1].append_null();
            text[2].append_value(&table);
            text[3].append_value(column);
            text[4].append_null();
            sequence.append_value(at);
        }
        let mut arrays: Vec<ArrayRef> = text
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        arrays.push(Arc::new(sequence.finish()));
        let batch = built(RecordBatch::try_new(
            Arc::new(primary_keys_schema()),
            arrays,
        ))?;
        Ok(Response::new(batch_stream(batch)))
    }
    // ANCHOR_END: sql_primary_keys

    // ANCHOR: sql_foreign_keys
    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        flight_info(&foreign_keys_schema(), query, request.into_inner())
    }

    async fn do_get_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let owner = self.owner(&request)?;
        let keys = self.session(&owner, None).await?.run(foreign_keys).await?;
        let keys: Vec<_> =
            keys.into_iter().filter(|k| k.2 == query.table).collect();
        Ok(Response::new(batch_stream(foreign_key_batch(&keys)?)))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        flight_info(&foreign_keys_schema(), query, request.into_inner())
    }

    async fn do_get_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let owner = self.owner(&request)?;
        let keys = self.session(&owner, None).await?.run(foreign_keys).await?;
        let keys: Vec<_> =
            keys.into_iter().filter(|k| k.0 == query.table).collect();
        Ok(Response::new(batch_stream(foreign_key_batch(&keys)?)))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request)?;
        flight_info(&foreign_keys_schema(), query, request.into_inner())
    }

    async fn do_get_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let owner = self.owner(&request)?;
        let keys = self.session(&owner, None).await?.run(foreign_keys).await?;
        let keys: Vec<_> = keys
            .into_iter()
            .filter(|k| k.2 == query.pk_table && k.0 == query.fk_table)
            .collect();
        Ok(Response::new(batch_stream(foreign_key_batch(&keys)?)))
    }
    // ANCHOR_END: sql_foreign_keys

    // ANCHOR: sql_actions
    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let owner = self.owner(&request)?;
        let info = FlightInfo::decode(query.info).map_err(|_| {
            Status::invalid_argument("the FlightInfo does not decode")
        })?;
        Ok(ActionCancelQueryResult {
            result: self.cancel(&owner, &info) as i32,
        })
    }

    async fn do_action_fallback(
        &self,
        request: Request<arrow_flight::Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let owner = self.owner(&request)?;
        let action = request.into_inner();
        let bad = |what: &str| {
            Status::invalid_argument(format!("{what} does not decode"))
        };
        let answer = match action.r#type.as_str() {
            "CancelFlightInfo" => {
                let cancel = CancelFlightInfoRequest::decode(action.body)
                    .map_err(|_| bad("the CancelFlightInfoRequest"))?;
                let info = cancel.info.unwrap_or_default();
                let status = self.cancel(&owner, &info) as i32;
                action_result(CancelFlightInfoResult { status })
            }
            "SetSessionOptions" => {
                let wanted = SessionOptions::decode(action.body)
                    .map_err(|_| bad("the SetSessionOptionsRequest"))?;
                let known = session_options();
                let mut errors = HashMap::new();
                for (name, value) in wanted.options {
                    let error = match known.get(&name) {
                        None => 1,
                        Some(only) if only != &value => 2,
                        Some(_) => continue,
                    };
                    errors.insert(name, SetSessionOptionError { value: error });
                }
                action_result(SetSessionOptionsResult { errors })
            }
            "GetSessionOptions" => action_result(SessionOptions {
                options: session_options(),
            }),
            "CloseSession" => {
                lock(&self.prepared).retain(|_, p| p.owner != owner);
                lock(&self.transactions).retain(|_, t| t.owner != owner);
                action_result(CloseSessionResult { status: 1 })
            }
            other => {
                return Err(Status::unimplemented(format!(
                    "this server has no action {:?}",
                    other.chars().take(64).collect::<String>()
                )));
            }
        };
        Ok(Response::new(answer))
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<DoGetStream>, Status> {
        Err(Status::unimplemented(format!(
            "this server does not answer {}",
            message.type_url
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
// ANCHOR_END: sql_actions

// ANCHOR: poll
/// arrow-flight's `FlightService` for a `FlightSqlService` answers
/// `PollFlightInfo` with `Unimplemented`, whatever the service does. This
/// wrapper answers it, and hands every other call to the Flight SQL
/// service. A query here is complete at once: its statement runs when its
/// ticket is fetched.
pub struct WithPoll(SqlServer);

type Inner = SqlServer;

#[tonic::async_trait]
impl FlightService for WithPoll {
    type HandshakeStream = <Inner as FlightService>::HandshakeStream;
    type ListFlightsStream = <Inner as FlightService>::ListFlightsStream;
    type DoGetStream = <Inner as FlightService>::DoGetStream;
    type DoPutStream = <Inner as FlightService>::DoPutStream;
    type DoActionStream = <Inner as FlightService>::DoActionStream;
    type ListActionsStream = <Inner as FlightService>::ListActionsStream;
    type DoExchangeStream = <Inner as FlightService>::DoExchangeStream;

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        let info = FlightService::get_flight_info(&self.0, request).await?;
        let poll = PollInfo {
            info: Some(info.into_inner()),
            flight_descriptor: None,
            progress: Some(1.0),
            expiration_time: None,
        };
        Ok(Response::new(poll))
    }

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        FlightService::handshake(&self.0, request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        FlightService::list_flights(&self.0, request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        FlightService::get_flight_info(&self.0, request).await
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        FlightService::get_schema(&self.0, request).await
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        FlightService::do_get(&self.0, request).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        FlightService::do_put(&self.0, request).await
    }

    async fn do_action(
        &self,
        request: Request<arrow_flight::Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        FlightService::do_action(&self.0, request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        FlightService::list_actions(&self.0, request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        FlightService::do_exchange(&self.0, request).await
    }
}
// ANCHOR_END: poll

// ANCHOR: copy_header_limit
/// The most a call's headers may take, counted as HTTP/2 counts them: each
/// header's name and value, and 32 bytes.
pub const MAX_HEADER_LIST_SIZE: usize = 16 * 1024;

/// The header list HTTP/2 decodes and passes on to `limit_headers`. Up to
/// four times as much, h2 answers HTTP 431 itself; beyond that, or sent in
/// more than 81 frames, it closes the connection.
pub const HTTP2_MAX_HEADER_LIST_SIZE: u32 = 1024 * 1024;

/// Refuses a call whose headers take more than `MAX_HEADER_LIST_SIZE`, with
/// `ResourceExhausted` as gRPC C++ servers do: the call fails alone, and the
/// other calls on its connection go on.
pub fn limit_headers(request: Request<()>) -> Result<Request<()>, Status> {
    let headers = request.metadata().as_ref().iter();
    let size: usize = headers
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    if size > MAX_HEADER_LIST_SIZE {
        return Err(Status::resource_exhausted(format!(
            "the call's headers take {size} bytes, the limit is \
             {MAX_HEADER_LIST_SIZE} bytes"
        )));
    }
    Ok(request)
}
// ANCHOR_END: copy_header_limit

// ANCHOR: serve
/// Serves Flight SQL over the SQLite database `database` on `listener`
/// until `shutdown` completes, creating the database if it is new. Users:
/// `test` (password `password`) and `admin` (`secret`).
pub async fn serve_database(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    database: PathBuf,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    create_database(&database)?;
    let passwords = [("test", "password"), ("admin", "secret")];
    let server = SqlServer {
        passwords: passwords
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .into(),
        tokens: Mutex::default(),
        database,
        prepared: Mutex::default(),
        transactions: Mutex::default(),
        sql_info: sql_info()?,
        type_info: type_info()?,
        running: RunningQueries::default(),
    };
    Server::builder()
        .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
        .layer(InterceptorLayer::new(limit_headers))
        .add_service(FlightServiceServer::new(WithPoll(server)))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await?;
    Ok(())
}

/// [`serve_database`] with the database `flight_sql.db` of the working
/// folder.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    serve_database(listener, shutdown, PathBuf::from("flight_sql.db")).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut addr = None;
    let mut database = PathBuf::from("flight_sql.db");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--db" => database = args.next().ok_or("--db needs a PATH")?.into(),
            _ => addr = Some(arg),
        }
    }
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
    serve_database(listener, stop, database).await?;
    Ok(())
}
// ANCHOR_END: serve
