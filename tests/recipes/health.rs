//! Flight next to gRPC health checking: one port, two services; a drain
//! that health watchers see before the server stops, with Flight calls still
//! answered meanwhile; a plain grpcio client (Python) asks too.

use crate::common;
use crate::health_client;
use crate::health_server;

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use arrow_flight::{Action, FlightClient};
use common::{ChildProcess, Shutdown, TestServer};
use futures::TryStreamExt;
use health_client::check;
use health_server::{DRAIN, serve, serve_with_drain};
use tokio::net::TcpListener;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const FLIGHT: &str = "arrow.flight.protocol.FlightService";

#[test]
fn a_draining_server_says_not_serving_answers_flight_calls_then_stops() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the drain test", async {
        let drain = Duration::from_secs(3);
        let mut server =
            TestServer::start(|listener: TcpListener, shutdown: Shutdown| {
                serve_with_drain(listener, shutdown, drain)
            })
            .await;
        let channel = server.channel().await;
        let mut health = HealthClient::new(channel.clone());
        let mut watches = Vec::new();
        for service in ["", FLIGHT] {
            let request = HealthCheckRequest {
                service: service.to_string(),
            };
            let mut watch =
                health.watch(request).await.expect("watch").into_inner();
            let first = watch.message().await.expect("a status").expect("one");
            assert_eq!(first.status(), ServingStatus::Serving, "{service:?}");
            watches.push(watch);
        }

        let asked_to_stop = Instant::now();
        server.ask_to_stop();
        for (service, watch) in ["", FLIGHT].iter().zip(&mut watches) {
            let next = watch.message().await.expect("a status").expect("one");
            assert_eq!(next.status(), ServingStatus::NotServing, "{service:?}");
        }
        // Still draining: Flight calls are answered.
        let mut flight = FlightClient::new(channel.clone());
        let action = Action::new("echo", "still here");
        let results: Vec<_> = flight
            .do_action(action)
            .await
            .expect("answered while draining")
            .try_collect()
            .await
            .expect("results");
        assert_eq!(results.len(), 1);
        assert_eq!(&results[0][..], b"still here");
        assert!(
            asked_to_stop.elapsed() < drain,
            "the drain ended too soon to test"
        );

        // The watches stay open: the server must end them itself, or it
        // would never stop.
        server.stop().await;
        let took = asked_to_stop.elapsed();
        assert!(
            took >= drain,
            "stopped after {took:?}, before the drain ended"
        );
        assert!(took < drain + common::STOP_TIMEOUT, "took {took:?}");
        // The watches ended with the drain.
        for watch in &mut watches {
            assert!(!matches!(watch.message().await, Ok(Some(_))));
        }
    });
}

#[test]
fn health_and_flight_share_a_port_and_unknown_services_are_not_found() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the check test", async {
        let server = TestServer::start(serve).await;
        let channel = server.channel().await;
        let mut health = HealthClient::new(channel.clone());
        assert_eq!(check(&mut health, "").await.expect("overall"), "Serving");
        assert_eq!(check(&mut health, FLIGHT).await.expect("flight"), "Serving");
        for unknown in [
            "no.such.Service",
            "arrow.flight.protocol.flightservice",
            " ",
        ] {
            let status = check(&mut health, unknown).await.expect_err("unknown");
            assert_eq!(status.code(), Code::NotFound, "{unknown:?}");
            assert_eq!(status.message(), "service not registered");
        }
        // Flight methods the service does not offer say so, by name.
        let mut flight = FlightClient::new(channel);
        let error = flight
            .list_actions()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("list_actions is not offered"), "{error}");
        drop((health, flight));
        // `serve` drains for the default time.
        let asked_to_stop = Instant::now();
        server.stop().await;
        assert!(asked_to_stop.elapsed() >= DRAIN);
    });
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn a_python_grpcio_client_checks_the_health_service() {
    let runtime = common::runtime();
    let server = common::block_on(
        &runtime,
        "starting the server",
        TestServer::start(|listener: TcpListener, shutdown: Shutdown| {
            serve_with_drain(listener, shutdown, Duration::ZERO)
        }),
    );
    let address = server.addr.to_string();
    let client = ChildProcess::python(
        &common::python(),
        "health_client.py",
        &[OsStr::new(&address)],
    );
    let finished = client.wait(common::TIMEOUT);
    assert!(finished.success(), "{}", finished.report());
    assert_eq!(
        finished.stdout,
        "'': SERVING\n'arrow.flight.protocol.FlightService': SERVING\n'no.such.Service': NOT_FOUND\n"
    );
    common::block_on(&runtime, "stopping the server", server.stop());
}
