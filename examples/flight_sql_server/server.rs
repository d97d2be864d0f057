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
use futures::stream::{StreamExt, TryStreamExt};
use rusqlite::Connection;
use tokio::sync::OwnedMutexGuard;
use tonic::{Request, Status};

use super::login::Tokens;
use super::sessions::RunningQueries;
use super::sqlite::{open, sql_error};

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

/// How long a transaction may go unused before it is rolled back: a client
/// that goes away without ending its transaction would otherwise hold
/// SQLite's write lock for ever.
pub const TRANSACTION_IDLE: Duration = Duration::from_secs(30);

pub(crate) struct Transaction {
    pub(crate) owner: String,
    pub(crate) connection: Arc<tokio::sync::Mutex<Connection>>,
    pub(crate) used: Instant,
}

/// Rolls back (by closing their connections) the transactions unused for
/// [`TRANSACTION_IDLE`].
pub(crate) fn expire(transactions: &mut HashMap<Vec<u8>, Transaction>) {
    transactions.retain(|_, t| t.used.elapsed() < TRANSACTION_IDLE);
}

pub struct SqlServer {
    pub(crate) passwords: HashMap<String, String>,
    pub(crate) tokens: Mutex<Tokens>,
    pub(crate) database: PathBuf,
    pub(crate) prepared: Mutex<HashMap<Vec<u8>, Prepared>>,
    pub(crate) transactions: Mutex<HashMap<Vec<u8>, Transaction>>,
    pub(crate) sql_info: SqlInfoData,
    pub(crate) type_info: XdbcTypeInfoData,
    pub(crate) running: RunningQueries,
}

// ANCHOR_END: state

// ANCHOR: session
/// A connection for one call: a new one, or the transaction's, held from
/// the moment the call names it, so that the calls of a transaction run in
/// the order they arrived.
pub(crate) enum Session {
    New(PathBuf),
    Transaction(OwnedMutexGuard<Connection>),
}

/// How long a statement may run; one that streams a result runs as long
/// as its client reads it.
pub const STATEMENT_TIME_LIMIT: Duration = Duration::from_secs(60);

/// How many of SQLite's steps run between two checks whether to stop.
pub(crate) const STEPS: i32 = 10_000;

impl Session {
    /// Runs `work` on the connection, on a thread where blocking is fine,
    /// for at most [`STATEMENT_TIME_LIMIT`].
    pub(crate) async fn run<T: Send + 'static>(
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
    pub(crate) async fn run_until<T: Send + 'static>(
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
