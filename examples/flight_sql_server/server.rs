//! The server's state: users, tokens, prepared statements, transactions,
//! and the connection a call's statement runs on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_schema::SchemaRef;
use futures::stream::{StreamExt, TryStreamExt};
use rusqlite::Connection;
use tokio::sync::{OwnedMutexGuard, mpsc};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use super::login::Tokens;
use super::sessions::RunningQueries;
use super::sqlite::{open, sql_error};
use super::statements::{DoGetStream, flight_stream};
use super::uploads::within_limit;

// ANCHOR: state
/// The most prepared statements and open transactions kept at once, for
/// all users together.
pub const MAX_PREPARED: usize = 1000;
pub const MAX_TRANSACTIONS: usize = 64;

/// The most bytes of parameters one DoPut may bind.
pub const MAX_PARAMETER_BYTES: usize = 16 << 20;

#[derive(Clone)]
pub(crate) struct Prepared {
    pub(crate) owner: String,
    pub(crate) sql: String,
    pub(crate) transaction: Option<Vec<u8>>,
    pub(crate) parameters: Option<RecordBatch>,
}

/// How long a transaction that has written may go unused before its
/// writes are rolled back: it holds SQLite's only write lock, which every
/// other writer waits for. A transaction that has written nothing holds
/// nothing between calls, and is never rolled back.
pub const TRANSACTION_IDLE: Duration = Duration::from_secs(30);

/// How long a transaction must have gone unused before a new one may take
/// its place when [`MAX_TRANSACTIONS`] are open.
pub const TRANSACTION_ABANDONED: Duration = Duration::from_secs(3600);

pub(crate) struct Transaction {
    pub(crate) owner: String,
    pub(crate) connection: Arc<tokio::sync::Mutex<Connection>>,
    pub(crate) used: Instant,
    /// Its writes were rolled back while it was idle: its next call is
    /// told so.
    pub(crate) rolled_back: bool,
}

pub struct SqlServer {
    pub(crate) passwords: HashMap<String, String>,
    pub(crate) tokens: Mutex<Tokens>,
    pub(crate) database: PathBuf,
    pub(crate) prepared: Mutex<HashMap<Vec<u8>, Prepared>>,
    pub(crate) transactions: Mutex<HashMap<Vec<u8>, Transaction>>,
    pub(crate) waiting: Mutex<HashMap<Vec<u8>, Waiting>>,
    pub(crate) sql_info: SqlInfoData,
    pub(crate) type_info: XdbcTypeInfoData,
    pub(crate) running: RunningQueries,
}
// ANCHOR_END: state

/// Rolls back the writes of the transactions that have held the write lock
/// unused for [`TRANSACTION_IDLE`]; they go on, empty.
pub(crate) fn expire(transactions: &mut HashMap<Vec<u8>, Transaction>) {
    for transaction in transactions.values_mut() {
        if transaction.used.elapsed() < TRANSACTION_IDLE {
            continue;
        }
        let Ok(connection) = transaction.connection.try_lock() else {
            continue;
        };
        let state = connection.transaction_state(Some("main"));
        if let Ok(rusqlite::TransactionState::Write) = state {
            transaction.rolled_back =
                connection.execute_batch("ROLLBACK; BEGIN").is_ok();
        }
    }
}

/// Makes room for one more transaction: refused when [`MAX_TRANSACTIONS`]
/// are open, unless one has gone unused for [`TRANSACTION_ABANDONED`].
pub(crate) fn make_room(
    transactions: &mut HashMap<Vec<u8>, Transaction>,
) -> Result<(), Status> {
    if transactions.len() < MAX_TRANSACTIONS {
        return Ok(());
    }
    let oldest = transactions
        .iter()
        .filter(|(_, t)| t.used.elapsed() > TRANSACTION_ABANDONED)
        .min_by_key(|(_, t)| t.used)
        .map(|(id, _)| id.clone());
    match oldest {
        Some(id) => {
            transactions.remove(&id);
            Ok(())
        }
        None => Err(Status::resource_exhausted(format!(
            "{MAX_TRANSACTIONS} transactions are open: end some first"
        ))),
    }
}

/// How long a query's result waits for its DoGet after GetFlightInfo (or
/// CreatePreparedStatement) started it; then, or when more than
/// [`MAX_WAITING`] wait, the oldest stops, and its DoGet runs it again.
pub const RESULT_WAIT: Duration = Duration::from_secs(30);
pub const MAX_WAITING: usize = 64;

/// How long CreatePreparedStatement runs a query without parameters to
/// learn the types of its undeclared columns from its first row.
pub const PREPARE_LOOK: Duration = Duration::from_millis(250);

/// A started query whose result waits for the DoGet of its ticket.
pub(crate) struct Waiting {
    pub(crate) owner: String,
    pub(crate) transaction: Option<Vec<u8>>,
    pub(crate) schema: SchemaRef,
    pub(crate) batches: mpsc::Receiver<Result<RecordBatch, Status>>,
    pub(crate) started: Instant,
}

// ANCHOR: session
/// A connection for one call, and the call's deadline.
pub(crate) struct Session {
    pub(crate) place: Place,
    pub(crate) deadline: Instant,
}

/// A new connection, or the transaction's, held from the moment the call
/// names it, so that the calls of a transaction run in the order they
/// arrived.
pub(crate) enum Place {
    New(PathBuf),
    Transaction(OwnedMutexGuard<Connection>),
}
// ANCHOR_END: session

/// How long a statement may run when its client sets no deadline; one that
/// streams a result runs as long as its client reads it.
pub const STATEMENT_TIME_LIMIT: Duration = Duration::from_secs(60);

/// How many of SQLite's steps run between two checks whether to stop.
pub(crate) const STEPS: i32 = 10_000;

// ANCHOR: deadline
/// The deadline of a call: its client's (the `grpc-timeout` header), and
/// at most [`STATEMENT_TIME_LIMIT`] from now.
pub(crate) fn deadline(metadata: &MetadataMap) -> Instant {
    let timeout = metadata.get("grpc-timeout").and_then(|t| t.to_str().ok());
    match timeout.and_then(grpc_timeout) {
        // A twentieth early, so that the client reads DeadlineExceeded
        // from the statement, not Cancelled from tonic's own timer.
        Some(limit) if limit < STATEMENT_TIME_LIMIT => {
            Instant::now() + limit - limit / 20
        }
        _ => Instant::now() + STATEMENT_TIME_LIMIT,
    }
}

/// gRPC's `grpc-timeout`: at most 8 digits and a unit.
pub(crate) fn grpc_timeout(text: &str) -> Option<Duration> {
    let (value, unit) = text.split_at_checked(text.len().checked_sub(1)?)?;
    let value: u64 = value.parse().ok().filter(|_| value.len() <= 8)?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}
// ANCHOR_END: deadline

impl Session {
    // ANCHOR: session
    /// Runs `work` on the connection, on a thread where blocking is fine,
    /// until the call's deadline: SQLite stops then.
    pub(crate) async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce(&Connection) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let deadline = self.deadline;
        match self
            .run_until(move || Instant::now() > deadline, work)
            .await
        {
            Err(status) if Instant::now() > deadline => Err(past_deadline(&status)),
            done => done,
        }
    }
    // ANCHOR_END: session

    /// Runs `work` as [`Session::run`] does, until `stop` says to stop:
    /// SQLite asks it every [`STEPS`] steps.
    pub(crate) async fn run_until<T: Send + 'static>(
        self,
        stop: impl FnMut() -> bool + Send + 'static,
        work: impl FnOnce(&Connection) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let job = tokio::task::spawn_blocking(move || match self.place {
            Place::New(path) => {
                let mut connection = open(&path)?;
                connection
                    .progress_handler(STEPS, Some(stop))
                    .map_err(sql_error)?;
                work(&connection)
            }
            Place::Transaction(mut connection) => {
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
                release_snapshot(&connection)?;
                done
            }
        });
        job.await
            .map_err(|_| Status::internal("the statement's thread failed"))?
    }
}

pub(crate) fn past_deadline(status: &Status) -> Status {
    Status::deadline_exceeded(format!(
        "the statement ran past its deadline: the client's, or the server's \
         limit of {} s ({})",
        STATEMENT_TIME_LIMIT.as_secs(),
        status.message()
    ))
}

// ANCHOR: snapshot
/// Ends the snapshot of a transaction that has only read, and begins it
/// again: until it writes, each of its calls sees what was committed
/// before it, and between calls it holds nothing that others wait for.
pub(crate) fn release_snapshot(connection: &Connection) -> Result<(), Status> {
    let state = connection
        .transaction_state(Some("main"))
        .map_err(sql_error)?;
    if state == rusqlite::TransactionState::Read {
        connection
            .execute_batch("COMMIT; BEGIN")
            .map_err(sql_error)?;
    }
    Ok(())
}
// ANCHOR_END: snapshot

pub(crate) fn handle() -> Vec<u8> {
    rand::random::<[u8; 16]>().to_vec()
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl SqlServer {
    pub(crate) async fn session(
        &self,
        owner: &str,
        transaction: Option<&[u8]>,
        metadata: &MetadataMap,
    ) -> Result<Session, Status> {
        let deadline = deadline(metadata);
        let Some(id) = transaction else {
            let place = Place::New(self.database.clone());
            return Ok(Session { place, deadline });
        };
        // A result of the transaction that no DoGet has asked for yet
        // gives the connection up.
        lock(&self.waiting).retain(|_, w| w.transaction.as_deref() != Some(id));
        let shared = {
            let mut transactions = lock(&self.transactions);
            expire(&mut transactions);
            match transactions.get_mut(id) {
                Some(t) if t.owner == owner => {
                    t.used = Instant::now();
                    if t.rolled_back {
                        t.rolled_back = false;
                        return Err(Status::aborted(format!(
                            "the transaction held the write lock unused for \
                             more than {} s and was rolled back: its writes \
                             are lost, and it goes on from here",
                            TRANSACTION_IDLE.as_secs()
                        )));
                    }
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
        let place = Place::Transaction(shared.lock_owned().await);
        Ok(Session { place, deadline })
    }

    /// Keeps a started query's result for the DoGet of `ticket`.
    pub(crate) fn keep_waiting(&self, ticket: Vec<u8>, result: Waiting) {
        let mut waiting = lock(&self.waiting);
        waiting.retain(|_, w| w.started.elapsed() < RESULT_WAIT);
        if waiting.len() >= MAX_WAITING {
            let oldest = waiting.iter().min_by_key(|(_, w)| w.started);
            if let Some(oldest) = oldest.map(|(t, _)| t.clone()) {
                waiting.remove(&oldest);
            }
        }
        waiting.insert(ticket, result);
    }

    /// The schema of the result waiting for `ticket`, if one is.
    pub(crate) fn waiting_schema(
        &self,
        owner: &str,
        ticket: &[u8],
    ) -> Option<SchemaRef> {
        let waiting = lock(&self.waiting);
        let result = waiting.get(ticket).filter(|w| w.owner == owner)?;
        Some(result.schema.clone())
    }

    /// The result waiting for `ticket`, as the DoGet's stream.
    pub(crate) fn fetch_waiting(
        &self,
        owner: &str,
        ticket: &[u8],
    ) -> Option<DoGetStream> {
        let mut waiting = lock(&self.waiting);
        if waiting.get(ticket).is_none_or(|w| w.owner != owner) {
            return None;
        }
        let result = waiting.remove(ticket)?;
        Some(flight_stream(result.batches))
    }

    /// The prepared statement `handle` of the session `owner`.
    pub(crate) fn prepared(
        &self,
        owner: &str,
        handle: &[u8],
    ) -> Result<Prepared, Status> {
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
pub(crate) async fn read_parameters(
    request: Request<PeekableFlightDataStream>,
) -> Result<Option<RecordBatch>, Status> {
    let stream = within_limit(request.into_inner())
        .try_filter(|data| std::future::ready(!data.data_header.is_empty()))
        .map_err(FlightError::from);
    let mut batches = FlightRecordBatchStream::new_from_flight_data(stream);
    let mut all = Vec::new();
    let mut bytes = 0;
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| match e {
            FlightError::Tonic(status) => *status,
            e => Status::invalid_argument(format!(
                "the parameters do not decode: {e}"
            )),
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
