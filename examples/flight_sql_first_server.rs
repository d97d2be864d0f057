use std::future::Future;
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::{RecordBatch, StringArray};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionEndTransactionRequest,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTables,
    CommandPreparedStatementQuery, CommandStatementQuery, ProstMessageExt, SqlInfo,
    SqlSupportedTransaction,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, Ticket,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use futures::{TryStreamExt, stream};
use prost::Message;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Statement};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::{SignalKind, signal};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

// ANCHOR: state
/// An in-memory SQLite database behind Flight SQL.
pub struct SqlServer {
    database: Mutex<Connection>,
    info: SqlInfoData,
    token: String,
}
// ANCHOR_END: state

// ANCHOR: login
/// The one user, as `user:password`.
const USER: &str = "test:password";

/// Lets in a call that carries the Handshake's token, or the user and
/// password (`Basic`, in base64 with or without its padding).
fn authorize(token: &str, request: Request<()>) -> Result<Request<()>, Status> {
    let header = request.metadata().get("authorization");
    let header = header.and_then(|value| value.to_str().ok()).unwrap_or("");
    let right = match header.split_once(' ') {
        Some(("Bearer", given)) => given.as_bytes().ct_eq(token.as_bytes()),
        Some(("Basic", given)) => {
            let given = STANDARD_NO_PAD.decode(given.trim_end_matches('='));
            given.unwrap_or_default().ct_eq(USER.as_bytes())
        }
        _ => return Err(Status::unauthenticated("no credentials: log in first")),
    };
    match bool::from(right) {
        true => Ok(request),
        false => Err(Status::unauthenticated("wrong user, password or token")),
    }
}
// ANCHOR_END: login

// ANCHOR: sqlite
/// Compiles `sql`, refusing what is not a query or has parameters, and gives
/// its result's Arrow schema, from the types its columns are declared with.
fn prepare<'a>(
    db: &'a Connection,
    sql: &str,
) -> Result<(Statement<'a>, SchemaRef), Status> {
    let statement = db.prepare(sql).map_err(invalid)?;
    if !statement.readonly() || statement.column_count() == 0 {
        return Err(invalid("this server only runs queries"));
    } else if statement.parameter_count() > 0 {
        return Err(invalid("this server takes no parameters"));
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

/// Runs `sql` and gives its result in one batch.
fn run(db: &Connection, sql: &str) -> Result<RecordBatch, Status> {
    let (mut statement, schema) = prepare(db, sql)?;
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
        cast_with_options(&StringArray::from(text), field.data_type(), &strict)
    });
    let columns = columns.collect::<Result<_, _>>().map_err(invalid)?;
    RecordBatch::try_new(schema, columns).map_err(internal)
}
// ANCHOR_END: sqlite

// ANCHOR: answers
/// A FlightInfo with `schema` and one endpoint, whose ticket is `command`:
/// arrow-flight hands it back to the `do_get_*` method of that command.
fn flight_info(
    schema: &Schema,
    command: impl ProstMessageExt,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = Ticket::new(command.as_any().encode_to_vec());
    let endpoint = FlightEndpoint::new().with_ticket(ticket);
    let info = FlightInfo::new().with_endpoint(endpoint);
    Ok(Response::new(
        info.try_with_schema(schema).map_err(internal)?,
    ))
}

/// A stream of one batch.
fn one_batch(batch: RecordBatch) -> Result<Response<DoGetStream>, Status> {
    let stream = FlightDataEncoderBuilder::new().build(stream::iter([Ok(batch)]));
    Ok(Response::new(Box::pin(stream.map_err(Status::from))))
}

type DoGetStream = <SqlServer as FlightService>::DoGetStream;

fn invalid(error: impl ToString) -> Status {
    Status::invalid_argument(error.to_string())
}

fn internal(error: impl ToString) -> Status {
    Status::internal(error.to_string())
}
// ANCHOR_END: answers

// ANCHOR: handshake
#[tonic::async_trait]
impl FlightSqlService for SqlServer {
    type FlightService = SqlServer;

    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<<Self as FlightService>::HandshakeStream>, Status> {
        let answer = stream::iter([Ok(HandshakeResponse::default())]);
        let mut response = Response::new(Box::pin(answer) as _);
        let bearer = format!("Bearer {}", self.token).parse().map_err(internal)?;
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }
    // ANCHOR_END: handshake

    // ANCHOR: metadata
    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(&self.info.schema(), query)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        one_batch(query.into_builder(&self.info).build().map_err(internal)?)
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(&query.into_builder().schema(), query)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        one_batch(query.into_builder().build().map_err(internal)?)
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(&query.clone().into_builder().schema(), query)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append("", "main");
        one_batch(builder.build().map_err(internal)?)
    }
    // ANCHOR_END: metadata

    // ANCHOR: tables
    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(&query.clone().into_builder().schema(), query)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let database = self.database.lock().map_err(internal)?;
        let sql = "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY 1";
        let names = run(&database, sql)?;
        let mut builder = query.into_builder();
        for name in names.column(0).as_string::<i32>().iter().flatten() {
            let sql = format!("SELECT * FROM \"{}\"", name.replace('"', "\"\""));
            let (_, schema) = prepare(&database, &sql)?;
            let table = builder.append("", "main", name, "TABLE", &schema);
            table.map_err(internal)?;
        }
        one_batch(builder.build().map_err(internal)?)
    }
    // ANCHOR_END: tables

    // ANCHOR: prepared
    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let database = self.database.lock().map_err(internal)?;
        let (_, schema) = prepare(&database, &query.query)?;
        let info = FlightInfo::new().try_with_schema(&schema);
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.into(),
            dataset_schema: info.map_err(internal)?.schema,
            ..Default::default()
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let sql = String::from_utf8_lossy(&query.prepared_statement_handle);
        let database = self.database.lock().map_err(internal)?;
        let (_, schema) = prepare(&database, &sql)?;
        flight_info(&schema, query)
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let sql = String::from_utf8_lossy(&query.prepared_statement_handle);
        let database = self.database.lock().map_err(internal)?;
        one_batch(run(&database, &sql)?)
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Ok(())
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let prepared_statement_handle = query.query.into();
        let query = CommandPreparedStatementQuery {
            prepared_statement_handle,
        };
        self.get_flight_info_prepared_statement(query, request)
            .await
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
}
// ANCHOR_END: transactions

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
    let token = format!("{:032x}", rand::random::<u128>());
    let server = SqlServer {
        database: Mutex::new(database),
        info: info.build()?,
        token: token.clone(),
    };
    let check = move |request| authorize(&token, request);
    Server::builder()
        .add_service(FlightServiceServer::with_interceptor(server, check))
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
