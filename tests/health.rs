//! Flight next to gRPC health checking: one port, two services; a drain
//! that health watchers see before the server stops, with Flight calls still
//! answered meanwhile; a plain grpcio client (Python) asks too.

mod common;

use std::time::{Duration, Instant};

use arrow_flight::{Action, FlightClient};
use flight_cookbook::health_client::check;
use flight_cookbook::health_server::{serve, serve_with_drain};
use futures::TryStreamExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const FLIGHT: &str = "arrow.flight.protocol.FlightService";

#[test]
fn a_draining_server_says_not_serving_answers_flight_calls_then_stops() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the drain test", async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let drain = Duration::from_secs(3);
        let server = tokio::spawn(serve_with_drain(
            listener,
            async {
                let _ = stopped.await;
            },
            drain,
        ));
        let channel = Channel::from_shared(url)
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut health = HealthClient::new(channel.clone());
        let mut watches = Vec::new();
        for service in ["", FLIGHT] {
            let request = HealthCheckRequest {
                service: service.to_string(),
            };
            let mut watch = health.watch(request).await.expect("watch").into_inner();
            let first = watch.message().await.expect("a status").expect("one");
            assert_eq!(first.status(), ServingStatus::Serving, "{service:?}");
            watches.push(watch);
        }

        let asked_to_stop = Instant::now();
        let _ = stop.send(());
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

        server.await.expect("task").expect("clean stop");
        let took = asked_to_stop.elapsed();
        assert!(
            took >= drain,
            "stopped after {took:?}, before the drain ended"
        );
        assert!(took < drain + common::STOP_TIMEOUT, "took {took:?}");
        // The watches ended with the drain; open ones would have kept the
        // server from stopping.
        for watch in &mut watches {
            assert!(!matches!(watch.message().await, Ok(Some(_))));
        }
    });
}

#[test]
fn health_and_flight_share_a_port_and_unknown_services_are_not_found() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the check test", async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(url)
            .expect("url")
            .connect()
            .await
            .expect("connect");
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
        let _ = stop.send(());
        server.await.expect("task").expect("clean stop");
    });
}

#[test]
fn a_python_grpcio_client_checks_the_health_service() {
    let test = "the grpcio health client against our server";
    let python = match common::python("import grpc_health.v1.health_pb2_grpc") {
        Ok(python) => python,
        Err(why) => return common::unavailable(test, &why).unwrap_or(()),
    };
    let runtime = common::runtime();
    let listener =
        common::block_on(&runtime, "bind", TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = runtime.spawn(serve(listener, async {
        let _ = stopped.await;
    }));
    let mut client = std::process::Command::new(python);
    client
        .arg(common::script("health_client.py"))
        .arg(addr.to_string());
    let output = common::run_with_timeout(client, common::TIMEOUT).expect("the client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout,
        "'': SERVING\n'arrow.flight.protocol.FlightService': SERVING\n'no.such.Service': NOT_FOUND\n"
    );
    let _ = stop.send(());
    common::block_on(&runtime, "stop", server)
        .expect("task")
        .expect("clean stop");
}
