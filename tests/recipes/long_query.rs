//! The long queries chapter's server (`examples/long_query_server.rs`):
//! polls that show progress and parts readable before the query ends,
//! cancellation that stops the work (measured by the parts the server says
//! it computed), poll descriptors and endpoints that expire, renewal,
//! GetFlightInfo's read-once endpoints, and bad input.

use crate::common;
use crate::long_query_client;
use crate::long_query_server;

use std::time::{Duration, Instant, SystemTime};

use arrow_flight::error::FlightError;
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelStatus, FlightClient, FlightDescriptor,
    FlightEndpoint, FlightInfo, PollInfo, RenewFlightEndpointRequest, Ticket,
};
use common::{Shutdown, TestServer};
use futures::TryStreamExt;
use long_query_client::{expires, info_of, read};
use long_query_server::{PART_TIME, TTL, Timing, serve, serve_with};
use prost::Message;
use tokio::net::TcpListener;
use tonic::{Code, Status};

async fn start_with(timing: Timing) -> TestServer {
    TestServer::start(move |listener: TcpListener, shutdown: Shutdown| {
        serve_with(listener, shutdown, timing)
    })
    .await
}

fn command(text: &str) -> FlightDescriptor {
    FlightDescriptor::new_cmd(text.to_string())
}

fn status_of<T: std::fmt::Debug>(result: Result<T, FlightError>) -> Status {
    match result {
        Err(FlightError::Tonic(status)) => *status,
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// The number N of "after N of M parts" in a refusal.
fn parts_computed(status: &Status) -> usize {
    let message = status.message();
    let after = message
        .split("after ")
        .nth(1)
        .unwrap_or_else(|| panic!("no count in {message:?}"));
    let n = after.split(' ').next().unwrap_or_default();
    n.parse()
        .unwrap_or_else(|_| panic!("no count in {message:?}"))
}

async fn poll(client: &mut FlightClient, descriptor: FlightDescriptor) -> PollInfo {
    client.poll_flight_info(descriptor).await.expect("a poll")
}

fn tickets(info: &FlightInfo) -> Vec<Vec<u8>> {
    let ticket = |e: &FlightEndpoint| e.ticket.clone().expect("a ticket").ticket;
    info.endpoint.iter().map(|e| ticket(e).to_vec()).collect()
}

#[test]
fn polls_show_progress_and_parts_that_can_be_read_before_the_query_ends() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the poll test", async {
        let server = TestServer::start(serve).await;
        let mut client = server.client().await;
        let started = Instant::now();
        let mut info = poll(&mut client, command("count to 1000")).await;
        assert!(
            started.elapsed() < PART_TIME,
            "the first poll answers at once"
        );
        let (mut values, mut progress, mut seen) = (Vec::new(), Vec::new(), vec![]);
        let mut read_while_running = 0;
        loop {
            let now = SystemTime::now();
            let until =
                SystemTime::try_from(info.expiration_time.expect("expires"))
                    .expect("a time");
            assert!(until > now && until <= now + TTL, "{until:?}");
            let flight = info_of(&info).expect("a FlightInfo");
            let got = tickets(&flight);
            assert!(got.starts_with(&seen), "endpoints are only appended");
            progress.push(info.progress.expect("progress"));
            for endpoint in &flight.endpoint[seen.len()..] {
                let until = expires(endpoint).expect("a time").expect("expires");
                assert!(until > now && until <= now + TTL);
                values.extend(read(&mut client, endpoint).await.expect("read"));
                if info.flight_descriptor.is_some() {
                    read_while_running += 1;
                }
            }
            seen = got;
            let Some(next) = info.flight_descriptor.clone() else {
                break;
            };
            info = poll(&mut client, next).await;
            // A poll answers when there is something new, not before.
            let new = tickets(&info_of(&info).expect("info")).len();
            assert!(new > seen.len(), "a poll with nothing new: {info:?}");
        }
        assert_eq!(progress, [0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(read_while_running, 3, "parts read before the end");
        assert_eq!(values, (1..=1000).collect::<Vec<i64>>());
        // Polled again, a complete query answers with the same result.
        let descriptor = info_of(&info).expect("info").flight_descriptor;
        let again = poll(&mut client, descriptor.expect("a descriptor")).await;
        assert_eq!(again.info, info.info);
        assert!(again.flight_descriptor.is_none());
        drop(client);
        server.stop().await;
    });
}

#[test]
fn a_cancelled_query_stops_computing_and_its_endpoints_are_refused() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the cancel test", async {
        let server = TestServer::start(serve).await;
        let mut client = server.client().await;
        let mut info = poll(&mut client, command("count to 1000")).await;
        while info_of(&info).expect("info").endpoint.is_empty() {
            let next = info.flight_descriptor.clone().expect("running");
            info = poll(&mut client, next).await;
        }
        let next = info.flight_descriptor.clone().expect("still running");
        let flight = info_of(&info).expect("info");
        let request = CancelFlightInfoRequest::new(flight.clone());
        let result = client.cancel_flight_info(request.clone()).await;
        assert_eq!(result.expect("cancel").status(), CancelStatus::Cancelled);

        let status = status_of(client.poll_flight_info(next.clone()).await);
        assert_eq!(status.code(), Code::Cancelled, "{status:?}");
        let at_cancel = parts_computed(&status);
        assert!((1..4).contains(&at_cancel), "{status:?}");
        // Had the work gone on, three more parts would be ready by now.
        tokio::time::sleep(PART_TIME * 4).await;
        let status = status_of(client.poll_flight_info(next).await);
        assert_eq!(parts_computed(&status), at_cancel, "the work went on");

        let status = status_of(read(&mut client, &flight.endpoint[0]).await);
        assert_eq!(status.code(), Code::Cancelled);
        assert_eq!(
            status.message(),
            format!("query 1 was cancelled after {at_cancel} of 4 parts")
        );
        let renewal = RenewFlightEndpointRequest::new(flight.endpoint[0].clone());
        let status = status_of(client.renew_flight_endpoint(renewal).await);
        assert_eq!(status.code(), Code::Cancelled);
        // Cancelling again says the same.
        let result = client.cancel_flight_info(request).await;
        assert_eq!(result.expect("cancel").status(), CancelStatus::Cancelled);

        // A complete query cannot be cancelled, and stays readable.
        let query = client.get_flight_info(command("count to 250")).await;
        let query = query.expect("a query");
        let request = CancelFlightInfoRequest::new(query.clone());
        let result = client.cancel_flight_info(request).await;
        let result = result.expect("cancel");
        assert_eq!(result.status(), CancelStatus::NotCancellable);
        let values = read(&mut client, &query.endpoint[0]).await.expect("read");
        assert_eq!(values.len(), 250);
        drop(client);
        server.stop().await;
    });
}

#[test]
fn an_expired_poll_descriptor_is_refused_and_its_work_stops() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the poll expiry test", async {
        let part_time = Duration::from_millis(100);
        let ttl = Duration::from_millis(600);
        let server = start_with(Timing { part_time, ttl }).await;
        let mut client = server.client().await;

        // Polled in time, a query outlives the TTL many times over.
        let started = Instant::now();
        let mut info = poll(&mut client, command("count to 5000")).await;
        while let Some(next) = info.flight_descriptor.clone() {
            info = poll(&mut client, next).await;
        }
        assert!(started.elapsed() > ttl * 3, "{:?}", started.elapsed());
        assert_eq!(info_of(&info).expect("info").endpoint.len(), 20);

        let info = poll(&mut client, command("count to 100000")).await;
        let next = info.flight_descriptor.clone().expect("running");
        let until = SystemTime::try_from(info.expiration_time.expect("expires"))
            .expect("a time");
        let left = until.duration_since(SystemTime::now()).unwrap_or_default();
        // Long enough for 15 more parts, had the work gone on unpolled.
        tokio::time::sleep(left + part_time * 15).await;
        let status = status_of(client.poll_flight_info(next.clone()).await);
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(
            status.message().contains("its poll descriptor expired"),
            "{status:?}"
        );
        // The work stopped by itself at the first part after the
        // expiration_time (6 parts of 100 ms in 600 ms), not at this poll.
        let abandoned = parts_computed(&status);
        assert!(abandoned <= 8, "{status:?}");
        tokio::time::sleep(part_time * 5).await;
        let status = status_of(client.poll_flight_info(next).await);
        assert_eq!(parts_computed(&status), abandoned, "the work went on");
        drop(client);
        server.stop().await;
    });
}

#[test]
fn endpoints_expire_and_a_renewal_extends_them() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the endpoint expiry test", async {
        let part_time = Duration::from_millis(100);
        let ttl = Duration::from_millis(1500);
        let server = start_with(Timing { part_time, ttl }).await;
        let mut client = server.client().await;
        let mut info = poll(&mut client, command("count to 250")).await;
        while let Some(next) = info.flight_descriptor.clone() {
            info = poll(&mut client, next).await;
        }
        let endpoint = info_of(&info).expect("info").endpoint[0].clone();
        let first = expires(&endpoint).expect("a time").expect("expires");
        tokio::time::sleep(ttl / 2).await;

        let renewal = RenewFlightEndpointRequest::new(endpoint.clone());
        let renewed = client.renew_flight_endpoint(renewal).await;
        let renewed = renewed.expect("renewed");
        assert_eq!(renewed.ticket, endpoint.ticket);
        let second = expires(&renewed).expect("a time").expect("expires");
        let now = SystemTime::now();
        assert!(
            second > first && second <= now + ttl,
            "{first:?} {second:?}"
        );

        long_query_client::sleep_past(first).await;
        let values = read(&mut client, &endpoint).await.expect("still valid");
        assert_eq!(values, (1..=250).collect::<Vec<i64>>());
        long_query_client::sleep_past(second).await;
        let status = status_of(read(&mut client, &endpoint).await);
        assert_eq!(
            (status.code(), status.message()),
            (
                Code::FailedPrecondition,
                "part 1 of query 1 has expired; renew an endpoint before its \
                 expiration_time"
            )
        );
        let renewal = RenewFlightEndpointRequest::new(endpoint);
        let status = status_of(client.renew_flight_endpoint(renewal).await);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().contains("cannot be renewed"), "{status:?}");
        drop(client);
        server.stop().await;
    });
}

#[test]
fn get_flight_info_waits_for_the_result_and_its_endpoints_are_read_once() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the read-once test", async {
        let server = TestServer::start(serve).await;
        let mut client = server.client().await;
        let started = Instant::now();
        let info = client.get_flight_info(command("count to 500")).await;
        let info = info.expect("the whole result");
        assert!(
            started.elapsed() >= PART_TIME * 2,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(info.endpoint.len(), 2);
        assert!(info.endpoint.iter().all(|e| e.expiration_time.is_none()));
        let mut values = Vec::new();
        for endpoint in &info.endpoint {
            values.extend(read(&mut client, endpoint).await.expect("read"));
            let status = status_of(read(&mut client, endpoint).await);
            assert_eq!(status.code(), Code::FailedPrecondition);
            assert!(status.message().contains("is read once"), "{status:?}");
            let renewal = RenewFlightEndpointRequest::new(endpoint.clone());
            let status = status_of(client.renew_flight_endpoint(renewal).await);
            assert_eq!(status.code(), Code::FailedPrecondition);
            assert!(status.message().contains("does not expire"), "{status:?}");
        }
        assert_eq!(values, (1..=500).collect::<Vec<i64>>());
        drop(client);
        server.stop().await;
    });
}

#[test]
fn bad_descriptors_tickets_and_actions_get_clear_statuses() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the bad input test", async {
        let server = TestServer::start(serve).await;
        let mut client = server.client().await;
        let invalid = Code::InvalidArgument;
        let descriptors = [
            (
                FlightDescriptor::new_path(vec!["count to 3".into()]),
                invalid,
                "the descriptor is not a command",
            ),
            (
                FlightDescriptor::new_cmd(vec![0xff, 0xfe]),
                invalid,
                "the command is not UTF-8",
            ),
            (
                command("count to 0"),
                invalid,
                "count to \"0\": N is a number from 1 to 100000",
            ),
            (
                command("count to 100001"),
                invalid,
                "count to \"100001\": N is a number from 1 to 100000",
            ),
            (
                command("count to -5"),
                invalid,
                "count to \"-5\": N is a number from 1 to 100000",
            ),
            (command("query x"), invalid, "unknown command \"query x\""),
            (
                command("query 1 seen many"),
                invalid,
                "unknown command \"query 1 seen many\"",
            ),
            (command(""), invalid, "unknown command \"\""),
            (command("query 99"), Code::NotFound, "no query 99"),
            (command("query 99 seen 2"), Code::NotFound, "no query 99"),
        ];
        for (descriptor, code, message) in &descriptors {
            let status =
                status_of(client.poll_flight_info(descriptor.clone()).await);
            assert_eq!(status.code(), *code, "{descriptor:?}: {status:?}");
            assert!(status.message().starts_with(message), "{status:?}");
            common::assert_clean_status(&status, &["query x", "query 1 seen many"]);
            if descriptor.cmd.starts_with(b"count") {
                let status =
                    status_of(client.get_flight_info(descriptor.clone()).await);
                assert!(status.message().starts_with(message), "{status:?}");
            }
        }
        let status = status_of(client.get_flight_info(command("query 1")).await);
        assert_eq!(status.code(), invalid);

        // One real query, complete, for tickets that name a missing part.
        let done = client.get_flight_info(command("count to 250")).await;
        assert_eq!(done.expect("a query").endpoint.len(), 1);
        let tickets: [(&[u8], Code, &str); 7] = [
            (
                b"nonsense",
                invalid,
                "the ticket is not one of this server's",
            ),
            (b"1/0", invalid, "the ticket is not one of this server's"),
            (b"1/x", invalid, "the ticket is not one of this server's"),
            (b"/1", invalid, "the ticket is not one of this server's"),
            (
                &[0xff, 0x2f, 0x31],
                invalid,
                "the ticket is not one of this server's",
            ),
            (b"99/1", Code::NotFound, "no query 99"),
            (b"1/2", Code::NotFound, "query 1 has no part 2 (yet)"),
        ];
        for (ticket, code, message) in tickets {
            let status =
                status_of(client.do_get(Ticket::new(ticket.to_vec())).await);
            assert_eq!((status.code(), status.message()), (code, message));
            let endpoint =
                FlightEndpoint::new().with_ticket(Ticket::new(ticket.to_vec()));
            let renewal = RenewFlightEndpointRequest::new(endpoint);
            let status = status_of(client.renew_flight_endpoint(renewal).await);
            assert_eq!((status.code(), status.message()), (code, message));
        }

        let no_descriptor = CancelFlightInfoRequest::new(FlightInfo::new());
        let unknown = CancelFlightInfoRequest::new(
            FlightInfo::new().with_descriptor(command("query 99")),
        );
        let not_a_query = CancelFlightInfoRequest::new(
            FlightInfo::new().with_descriptor(command("count to 5")),
        );
        let renew_nothing = RenewFlightEndpointRequest { endpoint: None };
        let no_ticket = RenewFlightEndpointRequest::new(FlightEndpoint::new());
        let actions = [
            (
                Action::new("CancelFlightInfo", vec![0xff, 0x01]),
                invalid,
                "the body is not a CancelFlightInfoRequest",
            ),
            (
                Action::new("CancelFlightInfo", no_descriptor.encode_to_vec()),
                invalid,
                "the FlightInfo to cancel has no descriptor",
            ),
            (
                Action::new("CancelFlightInfo", not_a_query.encode_to_vec()),
                invalid,
                "that FlightInfo is no query's",
            ),
            (
                Action::new("CancelFlightInfo", unknown.encode_to_vec()),
                Code::NotFound,
                "no query 99",
            ),
            (
                Action::new("RenewFlightEndpoint", vec![0xff, 0x01]),
                invalid,
                "the body is not a RenewFlightEndpointRequest",
            ),
            (
                Action::new("RenewFlightEndpoint", renew_nothing.encode_to_vec()),
                invalid,
                "the request names no endpoint",
            ),
            (
                Action::new("RenewFlightEndpoint", no_ticket.encode_to_vec()),
                invalid,
                "the endpoint has no ticket",
            ),
            (
                Action::new("DROP", ""),
                invalid,
                "unknown action \"DROP\"; the actions are CancelFlightInfo and \
                 RenewFlightEndpoint",
            ),
        ];
        for (action, code, message) in actions {
            let result = match client.do_action(action.clone()).await {
                Ok(results) => results.try_collect::<Vec<_>>().await,
                Err(error) => Err(error),
            };
            let status = status_of(result);
            assert_eq!(
                (status.code(), status.message()),
                (code, message),
                "{action:?}"
            );
            common::assert_clean_status(&status, &["DROP"]);
        }
        let names: Vec<String> = client
            .list_actions()
            .await
            .expect("actions")
            .map_ok(|action| action.r#type)
            .try_collect()
            .await
            .expect("actions");
        assert_eq!(names, ["CancelFlightInfo", "RenewFlightEndpoint"]);

        // Still serving.
        let info = client.get_flight_info(command("count to 3")).await;
        let info = info.expect("a query after the bad input");
        let values = read(&mut client, &info.endpoint[0]).await.expect("read");
        assert_eq!(values, [1, 2, 3]);
        drop(client);
        server.stop().await;
    });
}

#[test]
fn the_server_program_takes_its_timing_from_the_command_line() {
    let mut program = common::example("long_query_server");
    program.args(["127.0.0.1:0", "--part-time", "0.05", "--ttl", "0.5"]);
    let mut server = common::ChildProcess::start("long_query_server", program);
    let url = format!("http://{}", server.serving_on());
    let runtime = common::runtime();
    common::block_on(&runtime, "the calls", async {
        let channel = tonic::transport::Channel::from_shared(url)
            .expect("a URL")
            .connect()
            .await
            .expect("connect");
        let mut client = FlightClient::new(channel);
        let sent = SystemTime::now();
        let info = poll(&mut client, command("count to 1000")).await;
        let until = SystemTime::try_from(info.expiration_time.expect("expires"))
            .expect("a time");
        let ttl = Duration::from_millis(500);
        let got = SystemTime::now();
        assert!(
            until > sent && until <= got + ttl,
            "{until:?}, not --ttl 0.5"
        );
        // Four parts of 50 ms, where the default takes 2 s.
        let started = Instant::now();
        let info = client.get_flight_info(command("count to 1000")).await;
        assert_eq!(info.expect("a result").endpoint.len(), 4);
        assert!(started.elapsed() < PART_TIME * 3, "{:?}", started.elapsed());
    });
    let finished = server.terminate();
    assert!(finished.success(), "{}", finished.report());

    let mut program = common::example("long_query_server");
    program.args(["127.0.0.1:0", "--ttl", "soon"]);
    let output = common::run_with_timeout(program, common::TIMEOUT).expect("ran");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = ["--ttl", "soon", "not a number of seconds"];
    assert!(expected.iter().all(|e| stderr.contains(e)), "{stderr}");
}

#[test]
fn a_get_flight_info_client_that_hangs_up_abandons_its_query() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the hang-up test", async {
        let part_time = Duration::from_millis(100);
        let ttl = Duration::from_millis(500);
        let server = start_with(Timing { part_time, ttl }).await;
        let mut client = server.client().await;
        let call = client.get_flight_info(command("count to 100000"));
        let gave_up = tokio::time::timeout(Duration::from_millis(300), call).await;
        assert!(gave_up.is_err(), "the call did not wait: {gave_up:?}");
        // 300 ms of waiting and 500 ms of TTL are 8 parts; had the work gone
        // on, 30 parts would be done by now.
        tokio::time::sleep(part_time * 30).await;
        let status = status_of(client.poll_flight_info(command("query 1")).await);
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        let abandoned = parts_computed(&status);
        assert!(abandoned <= 12, "{status:?}");
        tokio::time::sleep(part_time * 5).await;
        let status = status_of(client.poll_flight_info(command("query 1")).await);
        assert_eq!(parts_computed(&status), abandoned, "the work went on");
        drop(client);
        server.stop().await;
    });
}
