//! Statements: a query's FlightInfo and its rows, and updates.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arrow_array::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    CommandStatementQuery, CommandStatementUpdate, ProstMessageExt,
    TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeResponse, Ticket,
};
use arrow_schema::{Schema, SchemaRef};
use futures::stream::{self, Stream, TryStreamExt};
use prost::Message;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::batches::{parameter_row, result_schema, run_query, run_update};
use super::server::{Session, SqlServer, lock};
use super::sessions::{Running, RunningQueries};
use super::sqlite::sql_error;

// ANCHOR: service
pub(crate) type DoGetStream = <SqlServer as FlightService>::DoGetStream;
pub(crate) type HandshakeStream =
    Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>;

pub(crate) fn batch_stream(batch: RecordBatch) -> DoGetStream {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(stream::iter([Ok(batch)]))
        .map_err(Status::from);
    Box::pin(stream)
}

/// The ticket of a statement that wrote when its FlightInfo was asked for:
/// its result, read by DoGet, is empty.
pub(crate) const WRITTEN: &[u8] = b"written";

/// Runs `sql` at once if it writes (SQLite's own answer), so that it is
/// done, inside its transaction, when the client's `execute` returns: a
/// client may commit before it reads the result, or never read it.
pub(crate) async fn write_now(
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

pub(crate) fn written(
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = TicketStatementQuery {
        statement_handle: WRITTEN.to_vec().into(),
    };
    flight_info(&Schema::empty(), ticket, descriptor)
}

pub(crate) fn flight_info(
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

pub(crate) fn schema_bytes(schema: &Schema) -> Result<prost::bytes::Bytes, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|_| Status::internal("the schema could not be encoded"))?;
    Ok(info.schema)
}

pub(crate) fn built<E>(
    batch: Result<RecordBatch, E>,
) -> Result<RecordBatch, Status> {
    batch.map_err(|_| Status::internal("the answer could not be built"))
}

/// Streams the result of `sql` from a blocking thread, a batch at a time:
/// the channel holds two batches, so a slow client slows the query down.
/// While it runs, the query is listed in `running` under its ticket, for
/// CancelFlightInfo; SQLite stops it when the client goes away.
pub(crate) fn stream_query(
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
pub(crate) async fn query_schema(
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

// ANCHOR: sql_statements
impl SqlServer {
    pub(crate) async fn describe_statement(
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

    pub(crate) async fn fetch_statement(
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

    pub(crate) async fn execute_update(
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
}
// ANCHOR_END: sql_statements
