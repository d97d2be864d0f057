//! A Flight SQL server in front of a SQLite database: `main` and `serve`
//! here, the rest in the modules below.

pub mod batches;
pub mod ingest;
pub mod login;
pub mod metadata;
pub mod poll;
pub mod prepared;
pub mod server;
pub mod service;
pub mod sessions;
pub mod sqlite;
pub mod statements;
pub mod tables;
pub mod transactions;
pub mod uploads;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;

use arrow_flight::flight_service_server::FlightServiceServer;
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::{SignalKind, signal};
use tonic::service::InterceptorLayer;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Status};

use metadata::{sql_info, type_info};
use poll::WithPoll;
use server::SqlServer;
use sessions::RunningQueries;
use sqlite::create_database;
use uploads::UPLOAD_MESSAGE_LIMIT;

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
        waiting: Mutex::default(),
        sql_info: sql_info()?,
        type_info: type_info()?,
        running: RunningQueries::default(),
    };
    Server::builder()
        .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
        .layer(InterceptorLayer::new(limit_headers))
        .add_service(
            FlightServiceServer::new(WithPoll(server))
                .max_decoding_message_size(UPLOAD_MESSAGE_LIMIT),
        )
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
// ANCHOR_END: serve

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
