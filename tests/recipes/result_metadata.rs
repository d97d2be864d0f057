//! Order, metadata and trailers of a result (`examples/metadata_server.rs`,
//! `examples/metadata_client.rs`): ordered endpoints fetched all at once and
//! put back in endpoint order give the table a sequential read gives, even
//! when they finish in another order, and read in another order they do
//! not; app_metadata of the FlightInfo and of each endpoint arrive as sent;
//! a part's response headers and trailers; a download of `slow` that stops,
//! as the server reports, when its client drops it and when its deadline
//! passes; clean statuses for bad tickets and descriptors; and pyarrow sees
//! the same order, app_metadata, headers and trailers.

use crate::common;
use crate::metadata_client;
use crate::metadata_server;

use std::ffi::OsStr;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::{FlightClient, FlightDescriptor, Ticket};
use common::{ChildProcess, Shutdown, TIMEOUT, TestServer, block_on, runtime};
use futures::TryStreamExt;
use metadata_client::{all_at_once, describe, ids, one_by_one};
use metadata_server::{
    HTTP2_MAX_HEADER_LIST_SIZE, Log, MetadataService, limit_headers,
};
use tokio::net::TcpListener;
use tonic::service::InterceptorLayer;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Code, Request, Status};

/// The server's log lines, collected.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn get(&self) -> Vec<String> {
        self.0.lock().expect("the log").clone()
    }
}

/// The recipe's service, as `serve` builds it (its header limit first),
/// with its log going to the test; and, with `reverse`, a layer that makes
/// the first DoGet call wait a second and the second half a second, so that
/// calls made at once end in the reverse of the order they came in.
async fn start(reverse: bool) -> (TestServer, Lines) {
    start_with(reverse, None, Duration::ZERO).await
}

/// As [`start`], and with `timeout` as the server's [`Server::timeout`], and
/// every GetFlightInfo call held `hold_info` before the service answers.
async fn start_with(
    reverse: bool,
    timeout: Option<Duration>,
    hold_info: Duration,
) -> (TestServer, Lines) {
    let lines = Lines::default();
    let sink = lines.clone();
    let log: Log = Arc::new(move |line| sink.0.lock().expect("the log").push(line));
    let serve = move |listener: TcpListener, shutdown: Shutdown| {
        let service = FlightServiceServer::new(MetadataService::new(log));
        let arrivals = Arc::new(AtomicUsize::new(0));
        let layer = tower::layer::layer_fn(move |inner| Delay {
            inner,
            arrivals: arrivals.clone(),
            reverse,
            hold_info,
        });
        let mut builder = Server::builder();
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout);
        }
        builder
            .http2_max_header_list_size(HTTP2_MAX_HEADER_LIST_SIZE)
            .layer(InterceptorLayer::new(limit_headers))
            .layer(layer)
            .add_service(service)
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
    };
    (TestServer::start(serve).await, lines)
}

#[derive(Clone)]
struct Delay<S> {
    inner: S,
    arrivals: Arc<AtomicUsize>,
    reverse: bool,
    hold_info: Duration,
}

impl<S, B> tower::Service<http::Request<B>> for Delay<S>
where
    S: tower::Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let wait = if self.reverse && request.uri().path().ends_with("/DoGet") {
            match self.arrivals.fetch_add(1, Ordering::SeqCst) {
                0 => Duration::from_millis(1000),
                1 => Duration::from_millis(500),
                _ => Duration::ZERO,
            }
        } else if request.uri().path().ends_with("/GetFlightInfo") {
            self.hold_info
        } else {
            Duration::ZERO
        };
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            inner.call(request).await
        })
    }
}

/// A channel that sends `timeout` as the `grpc-timeout` header of every
/// request.
#[derive(Clone)]
struct Garble<S> {
    inner: S,
    timeout: &'static str,
}

impl<S, B> tower::Service<http::Request<B>> for Garble<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let value = http::HeaderValue::from_static(self.timeout);
        request.headers_mut().insert("grpc-timeout", value);
        self.inner.call(request)
    }
}

fn path(name: &str) -> FlightDescriptor {
    FlightDescriptor::new_path(vec![name.to_string()])
}

fn status(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => panic!("not a status: {other:?}"),
    }
}

/// Waits, up to 10 s, for the server's first log line.
async fn first_line(lines: &Lines) -> String {
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if let Some(line) = lines.get().first() {
            return line.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the server has not ended the download of slow within 10 s")
}

/// `slow: N of 100000 batches made in T ms, then END` as (N, END).
fn made(line: &str) -> (usize, String) {
    let rest = line.strip_prefix("slow: ").expect("a line about slow");
    let (made, rest) = rest.split_once(" of 100000 batches made in ").expect(line);
    let (_, end) = rest.split_once(" ms, then ").expect(line);
    (made.parse().expect(line), end.to_string())
}

#[test]
fn ordered_endpoints_fetched_at_once_and_put_back_give_the_sequential_table() {
    let runtime = runtime();
    block_on(&runtime, "the order test", async {
        let (server, _) = start(true).await;
        let channel = server.channel().await;
        let mut client = FlightClient::new(channel.clone());
        let info = describe(&mut client, "numbers").await.expect("numbers");
        assert!(info.ordered);
        assert_eq!(info.total_records, 3000);
        // The first DoGet calls: the layer makes the first of them that
        // comes in the last to end, and the second the last but one.
        let parallel = all_at_once(&channel, &info.endpoint).await.expect("read");
        let parallel = ids(&parallel).expect("ids");
        let sequential =
            ids(&one_by_one(&channel, &info.endpoint).await.expect("read"))
                .expect("ids");
        assert_eq!(sequential, (0..3000).collect::<Vec<i64>>());
        let starts =
            |ids: &[i64]| ids.iter().step_by(1000).copied().collect::<Vec<_>>();
        assert!(
            parallel == sequential,
            "parts put back starting with ids {:?}",
            starts(&parallel)
        );

        let mut reversed = info.endpoint.clone();
        reversed.reverse();
        let backwards = ids(&one_by_one(&channel, &reversed).await.expect("read"))
            .expect("ids");
        assert!(
            backwards != sequential,
            "read back to front, still in order"
        );
        let mut sorted = backwards.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, sequential);

        let sample = describe(&mut client, "sample").await.expect("sample");
        assert!(!sample.ordered);
        drop((client, channel));
        server.stop().await;
    });
}

#[test]
fn app_metadata_of_the_info_and_of_each_endpoint_arrive_as_sent() {
    let runtime = runtime();
    block_on(&runtime, "the app_metadata test", async {
        let (server, _) = start(false).await;
        let mut client = server.client().await;
        for (name, sorted_by) in [("numbers", "id"), ("sample", "nothing")] {
            let info = client.get_flight_info(path(name)).await.expect("info");
            assert_eq!(
                info.app_metadata,
                format!("snapshot=42;sorted_by={sorted_by}").into_bytes()
            );
            let endpoints: Vec<(Vec<u8>, Vec<u8>)> = info
                .endpoint
                .iter()
                .map(|e| {
                    let ticket = e.ticket.as_ref().expect("a ticket");
                    (ticket.ticket.to_vec(), e.app_metadata.to_vec())
                })
                .collect();
            let expected: Vec<(Vec<u8>, Vec<u8>)> = (0..3)
                .map(|part| {
                    let metadata = format!(
                        "min_id={};max_id={}",
                        part * 1000,
                        part * 1000 + 999
                    );
                    (format!("{name}/{part}").into_bytes(), metadata.into_bytes())
                })
                .collect();
            assert_eq!(endpoints, expected);
            assert!(info.endpoint.iter().all(|e| e.location.is_empty()));
        }
        drop(client);
        server.stop().await;
    });
}

#[test]
fn a_part_has_headers_before_its_batches_and_trailers_after() {
    let runtime = runtime();
    block_on(&runtime, "the trailers test", async {
        let (server, _) = start(false).await;
        let mut client = server.client().await;
        let mut part = client.do_get(Ticket::new("numbers/1")).await.expect("get");
        let header = |name: &str, map: &tonic::metadata::MetadataMap| {
            map.get(name)
                .unwrap_or_else(|| panic!("no {name} in {map:?}"))
                .to_str()
                .expect("text")
                .to_string()
        };
        assert_eq!(header("x-rows-planned", part.headers()), "1000");
        assert!(part.trailers().is_none(), "trailers before the end");
        let mut batches = Vec::new();
        while let Some(batch) = part.try_next().await.expect("a batch") {
            batches.push(batch);
        }
        assert_eq!(
            ids(&batches).expect("ids"),
            (1000..2000).collect::<Vec<_>>()
        );
        let trailers = part.trailers().expect("trailers after the end");
        assert_eq!(header("x-rows-sent", &trailers), "1000");
        let micros: u64 = header("x-server-micros", &trailers)
            .parse()
            .expect("a number");
        assert!(micros > 0);
        assert!(trailers.get("x-rows-planned").is_none());
        drop((part, client));
        server.stop().await;
    });
}

#[test]
fn a_dropped_download_stops_the_work_on_the_server() {
    let runtime = runtime();
    block_on(&runtime, "the drop test", async {
        for read in [0, 10, 100] {
            let (server, lines) = start(false).await;
            let mut client = server.client().await;
            let mut download =
                client.do_get(Ticket::new("slow")).await.expect("get");
            for _ in 0..read {
                download
                    .try_next()
                    .await
                    .expect("a batch")
                    .expect("not the end");
            }
            drop(download);
            let (made, end) = made(&first_line(&lines).await);
            assert_eq!(end, "the client went away");
            // What the server made beyond what the client read: what it had
            // made ahead (HTTP/2 flow control and send buffers let it) and
            // what it made after the client left, together; 500 batches are
            // a second of work at least. A server that never noticed would
            // log no line at all.
            assert!(made >= read, "made {made}, read {read}");
            assert!(
                made - read <= 500,
                "made {made} batches, the client read {read}"
            );
            // The server goes on serving.
            let info = client.get_flight_info(path("slow")).await.expect("info");
            assert_eq!(info.endpoint.len(), 1);
            drop(client);
            server.stop().await;
            assert_eq!(lines.get().len(), 1, "{:?}", lines.get());
        }
    });
}

/// What tonic itself enforces of a time limit, on either side: the work
/// before the response headers, which is all of a unary call, fails with
/// `Cancelled: Timeout expired`; the body of a streaming call goes on past
/// the limit. The client's limit here is [`Endpoint::timeout`], which sends
/// no `grpc-timeout` header, so the recipe's own check stays out of it.
#[test]
fn tonic_enforces_a_time_limit_only_until_the_response_headers() {
    let runtime = runtime();
    block_on(&runtime, "the time limit test", async {
        let limit = Duration::from_millis(300);
        let hold = Duration::from_secs(2);
        let descriptor = FlightDescriptor::new_path(vec!["slow".to_string()]);
        // The server's limit, then the client's: each ends a unary call
        // held before its answer, and neither ends a download.
        for server_side in [true, false] {
            let server_limit = server_side.then_some(limit);
            let (server, lines) = start_with(false, server_limit, hold).await;
            let mut endpoint = Endpoint::from_shared(server.url()).expect("url");
            if !server_side {
                endpoint = endpoint.timeout(limit);
            }
            let mut client =
                FlightClient::new(endpoint.connect().await.expect("up"));
            let side = if server_side { "server" } else { "client" };

            let started = Instant::now();
            let error = client
                .get_flight_info(descriptor.clone())
                .await
                .expect_err("a unary call held past the limit");
            let status = status(error);
            assert_eq!(status.code(), Code::Cancelled, "{side}: {status:?}");
            assert_eq!(status.message(), "Timeout expired", "{side}");
            let took = started.elapsed();
            assert!(took < hold, "{side}: the unary call took {took:?}");

            let started = Instant::now();
            let mut download =
                client.do_get(Ticket::new("slow")).await.expect("headers");
            let mut read = 0;
            while started.elapsed() < 3 * limit {
                match download.try_next().await {
                    Ok(Some(_)) => read += 1,
                    Ok(None) => panic!("{side}: slow ended after {read} batches"),
                    Err(error) => panic!("{side}: after {read} batches: {error}"),
                }
            }
            drop((download, client));
            let (made, end) = made(&first_line(&lines).await);
            assert_eq!(end, "the client went away", "{side}");
            assert!(made >= read, "{side}: {made} made, {read} read");
            server.stop().await;
        }
    });
}

#[test]
fn a_download_past_its_deadline_stops_with_deadline_exceeded() {
    let runtime = runtime();
    block_on(&runtime, "the deadline test", async {
        let (server, lines) = start(false).await;
        let mut client = server.client().await;
        let mut request = Request::new(Ticket::new("slow"));
        request.set_timeout(Duration::from_millis(300));
        let response = client.inner_mut().do_get(request).await.expect("headers");
        let data = response.into_inner().map_err(FlightError::from);
        let mut download = FlightRecordBatchStream::new_from_flight_data(data);
        let mut read = 0;
        let error = loop {
            match download.try_next().await {
                Ok(Some(_)) => read += 1,
                Ok(None) => panic!("slow ended after {read} batches"),
                Err(error) => break status(error),
            }
            // Each batch costs 2 ms or more: 300 ms hold 150 at most.
            assert!(read <= 151, "{read} batches read past a 300 ms deadline");
        };
        assert_eq!(error.code(), Code::DeadlineExceeded, "{error:?}");
        assert_eq!(
            error.message(),
            format!("the deadline of 300 ms passed after {read} batches")
        );
        let (made, end) = made(&first_line(&lines).await);
        assert_eq!((made, end.as_str()), (read, "the deadline passed"));
        drop((download, client));
        server.stop().await;
    });
}

#[test]
fn bad_tickets_and_descriptors_get_clear_statuses() {
    let runtime = runtime();
    block_on(&runtime, "the bad input test", async {
        let (server, _) = start(false).await;
        let mut client = server.client().await;
        let long = "numbers/".to_string() + &"9".repeat(500);
        let tickets: [(&[u8], Code, String); 8] = [
            (
                b"numbers/3",
                Code::NotFound,
                "numbers has parts 0 to 2, not 3".into(),
            ),
            (
                b"sample/-1",
                Code::NotFound,
                "sample has parts 0 to 2, not -1".into(),
            ),
            (
                b"numbers/x",
                Code::InvalidArgument,
                "\"numbers/x\" is not a ticket of this server".into(),
            ),
            (
                b"",
                Code::InvalidArgument,
                "\"\" is not a ticket of this server".into(),
            ),
            (
                b"slow/0",
                Code::InvalidArgument,
                "\"slow/0\" is not a ticket of this server".into(),
            ),
            (
                b"../../etc/passwd",
                Code::InvalidArgument,
                "\"../../etc/passwd\" is not a ticket of this server".into(),
            ),
            (
                &[0xff, 0xfe, 0x00],
                Code::InvalidArgument,
                "a ticket is text such as \"numbers/0\"".into(),
            ),
            (
                long.as_bytes(),
                Code::InvalidArgument,
                format!("{:?}... is not a ticket of this server", &long[..64]),
            ),
        ];
        for (ticket, code, message) in tickets {
            let sent = String::from_utf8_lossy(ticket).into_owned();
            let ticket = Ticket::new(ticket.to_vec());
            let error =
                status(client.do_get(ticket).await.map(drop).expect_err("bad"));
            assert_eq!((error.code(), error.message()), (code, message.as_str()));
            common::assert_clean_status(&error, &[&sent]);
        }
        let descriptors = [
            (
                FlightDescriptor::new_cmd("SELECT 1"),
                Code::InvalidArgument,
                "this server takes path descriptors, not commands",
            ),
            (
                path("nothing"),
                Code::NotFound,
                "no dataset \"nothing\"; there are [\"numbers\"], [\"sample\"] and [\"slow\"]",
            ),
            (
                FlightDescriptor::new_path(vec!["numbers".into(), "0".into()]),
                Code::NotFound,
                "no dataset \"numbers/0\"; there are [\"numbers\"], [\"sample\"] and [\"slow\"]",
            ),
        ];
        for (descriptor, code, message) in descriptors {
            let error =
                status(client.get_flight_info(descriptor).await.expect_err("bad"));
            assert_eq!((error.code(), error.message()), (code, message));
        }
        // A grpc-timeout header that is not one; tonic's own client never
        // sends such a header, so a layer writes it into the request.
        for garbled in ["abc", "5", "m", "99999999999999999999999m", "5x"] {
            let channel = Garble {
                inner: server.channel().await,
                timeout: garbled,
            };
            let mut raw = FlightServiceClient::new(channel);
            let error = raw
                .do_get(Request::new(Ticket::new("numbers/0")))
                .await
                .map(drop)
                .expect_err("a garbled grpc-timeout");
            assert_eq!(
                (error.code(), error.message()),
                (
                    Code::InvalidArgument,
                    "the grpc-timeout header is not a timeout such as \"500m\""
                ),
                "{garbled}"
            );
        }
        // Still serving.
        let part = client.do_get(Ticket::new("sample/2")).await.expect("get");
        let batches: Vec<_> = part.try_collect().await.expect("batches");
        assert_eq!(
            ids(&batches).expect("ids"),
            (2000..3000).collect::<Vec<_>>()
        );
        drop(client);
        server.stop().await;
    });
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn pyarrow_sees_the_order_app_metadata_headers_and_trailers() {
    let runtime = runtime();
    let (server, lines) = block_on(&runtime, "starting the server", start(false));
    let url = server.grpc_url();
    let client = ChildProcess::python(
        &common::python(),
        "metadata_client.py",
        &[OsStr::new(&url)],
    );
    let finished = client.wait(TIMEOUT);
    assert!(finished.success(), "{}", finished.report());
    let printed: Vec<&str> = finished.stdout.lines().collect();
    assert_eq!(
        printed,
        [
            "numbers: ordered True, app_metadata b'snapshot=42;sorted_by=id'",
            "  endpoint b'numbers/0': app_metadata b'min_id=0;max_id=999', locations []",
            "  endpoint b'numbers/1': app_metadata b'min_id=1000;max_id=1999', locations []",
            "  endpoint b'numbers/2': app_metadata b'min_id=2000;max_id=2999', locations []",
            "sample: ordered False, app_metadata b'snapshot=42;sorted_by=nothing'",
            "  endpoint b'sample/0': app_metadata b'min_id=0;max_id=999', locations []",
            "  endpoint b'sample/1': app_metadata b'min_id=1000;max_id=1999', locations []",
            "  endpoint b'sample/2': app_metadata b'min_id=2000;max_id=2999', locations []",
            "read in endpoint order: ids 0 to 2999 in order: True",
            "received_headers calls, our keys: [['x-rows-planned'], ['x-rows-sent', 'x-server-micros']]",
            "headers: x-rows-planned ['1000']",
            "trailers: x-rows-sent ['1000'], x-server-micros is a number: True",
            "slow with a 0.5 s timeout: FlightTimedOutError",
        ],
        "{}",
        finished.stderr
    );
    let line =
        block_on(&runtime, "the log line", async { first_line(&lines).await });
    let (made, end) = made(&line);
    assert!(
        end == "the deadline passed" || end == "the client went away",
        "{line}"
    );
    assert!(
        made <= 251,
        "{made} batches made in 0.5 s at 2 ms or more each"
    );
    block_on(&runtime, "stopping the server", server.stop());
}
