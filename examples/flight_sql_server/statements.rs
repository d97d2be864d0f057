//! Statements: a query's FlightInfo and its rows, and updates.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

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

use super::batches::{Started, run_query, run_update};
use super::server::{Session, SqlServer, Waiting, lock, past_deadline};
use super::sessions::{Running, RunningQueries};

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

/// A query to run: whose it is, the ticket it serves, its statement and
/// parameters, and whether it may write.
pub(crate) struct Job {
    pub(crate) owner: String,
    pub(crate) ticket: Vec<u8>,
    pub(crate) transaction: Option<Vec<u8>>,
    pub(crate) sql: String,
    pub(crate) parameters: Option<RecordBatch>,
    pub(crate) write: bool,
}

/// Runs `job` on `session` in a blocking thread that sends its result, a
/// batch at a time, to the receiver it returns: the channel holds two
/// batches, so a slow client slows the query down. Until `answered` is
/// set (the schema is known) the query stops at the session's deadline;
/// then it runs as long as its client reads. While it runs, the query is
/// listed in `running` under its ticket, for CancelFlightInfo; SQLite stops
/// it when the receiver is dropped (the client went away).
pub(crate) fn spawn_query(
    running: RunningQueries,
    job: Job,
    session: Session,
    started: Started,
    answered: Arc<AtomicBool>,
) -> mpsc::Receiver<Result<RecordBatch, Status>> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let (sender, receiver) = mpsc::channel(2);
    let errors = sender.clone();
    let cancelled = Arc::new(AtomicBool::new(false));
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let entry = Running {
        owner: job.owner,
        ticket: job.ticket,
        cancelled: cancelled.clone(),
    };
    lock(&running).insert(id, entry);
    let deadline = session.deadline;
    let stop = {
        let (sender, cancelled) = (sender.clone(), cancelled.clone());
        let answered = answered.clone();
        move || {
            sender.is_closed()
                || cancelled.load(Ordering::Relaxed)
                || (!answered.load(Ordering::Relaxed) && Instant::now() > deadline)
        }
    };
    tokio::spawn(async move {
        let (sql, parameters, write) = (job.sql, job.parameters, job.write);
        let ran = session
            .run_until(stop, move |connection| {
                let query = (sql.as_str(), parameters.as_ref());
                let how = (write, cancelled.as_ref());
                run_query(connection, query, &sender, started, how)
            })
            .await;
        lock(&running).remove(&id);
        if let Err(status) = ran {
            let late =
                !answered.load(Ordering::Relaxed) && Instant::now() > deadline;
            let status = if late { past_deadline(&status) } else { status };
            let _ = errors.send(Err(status)).await;
        }
    });
    receiver
}

/// A query's result as Flight data, as it arrives.
pub(crate) fn flight_stream(
    mut batches: mpsc::Receiver<Result<RecordBatch, Status>>,
) -> DoGetStream {
    let batches = stream::poll_fn(move |context| batches.poll_recv(context));
    let flight = FlightDataEncoderBuilder::new()
        .build(batches.map_err(FlightError::from))
        .map_err(Status::from);
    Box::pin(flight)
}

/// Streams the result of `job` for a DoGet.
pub(crate) fn stream_query(
    running: RunningQueries,
    job: Job,
    session: Session,
) -> DoGetStream {
    let (started, _) = tokio::sync::oneshot::channel();
    let answered = Arc::new(AtomicBool::new(true));
    flight_stream(spawn_query(running, job, session, started, answered))
}

impl SqlServer {
    /// Starts `job` on `session`, until its first row tells its result's
    /// schema: the result then waits for the DoGet of its ticket. `None`
    /// when the statement writes: it ran to its end (or, unless `job`
    /// may write, not at all).
    pub(crate) async fn start_query(
        &self,
        job: Job,
        session: Session,
    ) -> Result<Option<SchemaRef>, Status> {
        let (owner, ticket) = (job.owner.clone(), job.ticket.clone());
        let transaction = job.transaction.clone();
        let (started, schema) = tokio::sync::oneshot::channel();
        let answered = Arc::new(AtomicBool::new(false));
        let running = self.running.clone();
        let mut batches =
            spawn_query(running, job, session, started, answered.clone());
        let schema = match schema.await {
            Ok(Some(schema)) => {
                answered.store(true, Ordering::Relaxed);
                schema
            }
            Ok(None) => return Ok(None),
            Err(_) => {
                return Err(match batches.recv().await {
                    Some(Err(status)) => status,
                    _ => Status::internal("the query ended without a result"),
                });
            }
        };
        let waiting = Waiting {
            owner,
            transaction,
            schema: schema.clone(),
            batches,
            started: Instant::now(),
        };
        self.keep_waiting(ticket, waiting);
        Ok(Some(schema))
    }
}

impl SqlServer {
    // ANCHOR: statements
    pub(crate) async fn describe_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let owner = self.owner(&request)?;
        let transaction = query.transaction_id.as_deref().map(<[u8]>::to_vec);
        let session = self
            .session(&owner, transaction.as_deref(), request.metadata())
            .await?;
        let ticket = TicketStatementQuery {
            statement_handle: query.encode_to_vec().into(),
        };
        let job = Job {
            owner,
            ticket: ticket.as_any().encode_to_vec(),
            transaction,
            sql: query.query,
            parameters: None,
            write: true,
        };
        match self.start_query(job, session).await? {
            Some(schema) => flight_info(&schema, ticket, request.into_inner()),
            None => written(request.into_inner()),
        }
    }
    // ANCHOR_END: statements

    // ANCHOR: fetch_statement
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
        if let Some(stream) = self.fetch_waiting(&owner, &ticket_bytes) {
            return Ok(Response::new(stream));
        }
        let query = CommandStatementQuery::decode(ticket.statement_handle)
            .map_err(|_| {
                Status::invalid_argument("the ticket is not one of this server's")
            })?;
        let transaction = query.transaction_id.as_deref().map(<[u8]>::to_vec);
        let session = self
            .session(&owner, transaction.as_deref(), request.metadata())
            .await?;
        let job = Job {
            owner,
            ticket: ticket_bytes,
            transaction,
            sql: query.query,
            parameters: None,
            write: true,
        };
        Ok(Response::new(stream_query(
            self.running.clone(),
            job,
            session,
        )))
    }

    pub(crate) async fn execute_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let owner = self.owner(&request)?;
        let session = self
            .session(
                &owner,
                command.transaction_id.as_deref(),
                request.metadata(),
            )
            .await?;
        session
            .run(move |connection| run_update(connection, &command.query, None))
            .await
    }
    // ANCHOR_END: fetch_statement
}
