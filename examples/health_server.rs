// ANCHOR: uses
use std::future::Future;
use std::time::Duration;

use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::signal::unix::{SignalKind, signal};
use tonic::server::NamedService;
use tonic::service::InterceptorLayer;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};
use tonic_health::server::HealthReporter;
// ANCHOR_END: uses

// ANCHOR: echo
/// The Flight service: `do_action` answers with the action's body.
pub struct EchoService;

#[tonic::async_trait]
impl FlightService for EchoService {
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let body = request.into_inner().body;
        let result = arrow_flight::Result { body };
        Ok(Response::new(stream::iter([Ok(result)]).boxed()))
    }
    // ANCHOR_END: echo

    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;

    async fn do_get(
        &self,
        _request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        Err(Status::unimplemented("do_get is not offered"))
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented("do_put is not offered"))
    }

    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("handshake is not offered"))
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("list_flights is not offered"))
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("get_flight_info is not offered"))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info is not offered"))
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("get_schema is not offered"))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange is not offered"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("list_actions is not offered"))
    }
}

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
/// Serves Flight and gRPC health checking on `listener`. When `shutdown`
/// completes, both services are reported `NOT_SERVING` and calls are still
/// answered for `drain`, so that load balancers stop sending new ones; then
/// the server stops.
pub async fn serve_with_drain(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<FlightServiceServer<EchoService>>()
        .await;

    let draining = async move {
        shutdown.await;
        set_not_serving(&reporter).await;
        tokio::time::sleep(drain).await;
        end_watches(reporter).await;
    };
    Server::builder()
        .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
        .layer(InterceptorLayer::new(limit_headers))
        .add_service(health)
        .add_service(FlightServiceServer::new(EchoService))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), draining)
        .await
}

async fn set_not_serving(reporter: &HealthReporter) {
    reporter
        .set_not_serving::<FlightServiceServer<EchoService>>()
        .await;
    let overall = tonic_health::ServingStatus::NotServing;
    reporter.set_service_status("", overall).await;
}

async fn end_watches(mut reporter: HealthReporter) {
    let flight = <FlightServiceServer<EchoService> as NamedService>::NAME;
    reporter.clear_service_status(flight).await;
    reporter.clear_service_status("").await;
}
// ANCHOR_END: serve

// ANCHOR: main
/// How long the server drains unless told otherwise.
pub const DRAIN: Duration = Duration::from_secs(5);

/// [`serve_with_drain`] for [`DRAIN`].
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_with_drain(listener, shutdown, DRAIN).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next();
    let drain = match args.next() {
        Some(secs) => Some(Duration::from_secs(secs.parse()?)),
        None => None,
    };
    let listener =
        TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:8818")).await?;

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
    match drain {
        Some(drain) => serve_with_drain(listener, stop, drain).await?,
        None => serve(listener, stop).await?,
    }
    Ok(())
}
// ANCHOR_END: main
