//! The client for many servers: a shard killed in the middle of a download
//! and started again on its address, and the table still comes back whole
//! and in order over the same channels; statuses a retry cannot help fail
//! at once, with one call; a server's pushback is waited for; the deadline
//! ends a download that cannot finish; the budget bounds the bytes of the
//! batches not yet consumed; and the shard server's resume tickets.

use crate::common;
use crate::many_servers_client;
use crate::shard_server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow_array::{Int64Array, RecordBatch};
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::{
    FlightClient, FlightDescriptor, FlightEndpoint, FlightInfo, Ticket,
};
use common::{Shutdown, TestServer};
use futures::TryStreamExt;
use many_servers_client::{
    Budget, Channels, Download, PUSHBACK, Part, Retry, Windows, resume,
};
use shard_server::{Layout, ShardService, serve_shard};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tonic::metadata::MetadataValue;
use tonic::service::InterceptorLayer;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Status};

fn numbers() -> FlightDescriptor {
    FlightDescriptor::new_path(vec!["numbers".to_string()])
}

/// A shard server on a runtime of its own, so that the test can kill it as
/// a crash would: its listener, connections and streams all dropped at
/// once, with no goodbye to its clients.
struct Shard {
    runtime: Option<Runtime>,
}

impl Shard {
    /// Starts shard `shard` of `layout` on `addr`, binding it again for up
    /// to ten seconds while the address is still held by a killed one.
    fn start(addr: SocketAddr, shard: usize, layout: Layout) -> Shard {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let started = Instant::now();
        let listener = loop {
            match std::net::TcpListener::bind(addr) {
                Ok(listener) => break listener,
                Err(e) if started.elapsed() < Duration::from_secs(10) => {
                    eprintln!("binding {addr} again: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("cannot bind {addr} again: {e}"),
            }
        };
        listener.set_nonblocking(true).expect("non-blocking");
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("a listener");
            let forever = std::future::pending();
            if let Err(e) = serve_shard(listener, shard, layout, forever).await {
                eprintln!("shard {shard}: {e}");
            }
        });
        Shard {
            runtime: Some(runtime),
        }
    }

    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Free addresses for `count` shards, and their layout.
fn layout(count: usize, rows: usize) -> (Vec<SocketAddr>, Layout) {
    let addrs: Vec<SocketAddr> = (0..count)
        .map(|_| {
            let listener =
                std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("an address")
        })
        .collect();
    let shards = addrs.iter().map(|a| format!("grpc://{a}")).collect();
    (addrs, Layout { rows, shards })
}

async fn info(url: &str, channels: &Channels) -> FlightInfo {
    let channel = channels.get(url).expect("a channel");
    let info = FlightClient::new(channel).get_flight_info(numbers()).await;
    info.expect("the FlightInfo")
}

fn ids(batch: &RecordBatch) -> &[i64] {
    let ids = batch.column(0).as_any().downcast_ref::<Int64Array>();
    ids.expect("an Int64 column").values()
}

/// The ids of `parts`, put in the endpoints' order.
fn table(mut parts: Vec<(usize, usize, RecordBatch)>) -> Vec<i64> {
    parts.sort_by_key(|(endpoint, first_row, _)| (*endpoint, *first_row));
    parts
        .iter()
        .flat_map(|(_, _, batch)| ids(batch).to_vec())
        .collect()
}

fn keep(part: Part) -> (usize, usize, RecordBatch) {
    (part.endpoint, part.first_row, part.batch.clone())
}

#[test]
fn a_shard_killed_and_restarted_mid_download_gives_the_whole_table_in_order() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the kill and restart test", async {
        let rows = 2_000_000;
        let (addrs, layout) = layout(2, rows);
        let mut shards: Vec<Shard> = (0..2)
            .map(|i| Shard::start(addrs[i], i, layout.clone()))
            .collect();
        let url = layout.shards[0].clone();
        // Small windows and a small budget: the servers cannot send far
        // ahead of the consumer, so the kill lands in the middle.
        let windows = Windows {
            stream: Some(64 * 1024),
            connection: Some(256 * 1024),
        };
        let channels = Channels::new(&url, windows);
        let info = info(&url, &channels).await;
        let budget = Budget::new(2 * 1024);
        let retry = Retry {
            deadline: Duration::from_secs(30),
            ..Retry::default()
        };
        let mut download =
            Download::start(info.endpoint, &channels, &budget, retry);
        let mut parts = Vec::new();
        let mut killed = false;
        while let Some(part) = download.next().await {
            let part = part.expect("a batch");
            if part.endpoint == 1 && !killed {
                killed = true;
                shards[1].kill();
                tokio::time::sleep(Duration::from_millis(300)).await;
                shards[1] = Shard::start(addrs[1], 1, layout.clone());
            }
            parts.push(keep(part));
        }
        assert!(killed);
        assert!(download.retries() >= 1, "the kill broke no download");
        assert_eq!(table(parts), (0..rows as i64).collect::<Vec<_>>());
        assert_eq!(channels.count(), 2, "one channel per server, reused");
        drop(shards);
    });
}

/// Shard 0 of a one-shard layout of `rows` rows, behind an interceptor that
/// counts the calls and answers the first `failures` of them with `fail()`.
async fn flaky(
    rows: usize,
    failures: usize,
    fail: Refusal,
) -> (TestServer, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let serve = move |listener: TcpListener, shutdown: Shutdown| async move {
        let url = format!("grpc://{}", listener.local_addr()?);
        let layout = Layout {
            rows,
            shards: vec![url],
        };
        let service = ShardService::new(0, layout)?;
        let interceptor = move |request: Request<()>| {
            if counted.fetch_add(1, Ordering::SeqCst) < failures {
                return Err(fail());
            }
            Ok(request)
        };
        Server::builder()
            .layer(InterceptorLayer::new(interceptor))
            .add_service(FlightServiceServer::new(service))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
            .await?;
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    };
    (TestServer::start(serve).await, calls)
}

/// A status a test server answers with.
type Refusal = fn() -> Status;

fn with_pushback(mut status: Status, ms: &'static str) -> Status {
    let value = MetadataValue::from_static(ms);
    status.metadata_mut().insert(PUSHBACK, value);
    status
}

/// Downloads the endpoints `tickets` name on `server`: all ids in order,
/// or the error, and the retries.
async fn download(
    server: &TestServer,
    tickets: &[&str],
    retry: Retry,
) -> (Result<Vec<i64>, String>, usize) {
    let url = server.grpc_url();
    let endpoints = tickets
        .iter()
        .map(|t| FlightEndpoint::new().with_ticket(Ticket::new(t.to_string())))
        .map(|e| e.with_location(url.as_str()))
        .collect();
    let channels = Channels::new(&url, Windows::default());
    let budget = Budget::new(64 * 1024);
    let mut download = Download::start(endpoints, &channels, &budget, retry);
    let mut parts = Vec::new();
    while let Some(part) = download.next().await {
        match part {
            Ok(part) => parts.push(keep(part)),
            Err(error) => return (Err(error.to_string()), download.retries()),
        }
    }
    (Ok(table(parts)), download.retries())
}

#[test]
fn statuses_a_retry_cannot_help_fail_at_once_after_one_call() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the no-retry test", async {
        let refusals: [(Refusal, &str); 6] = [
            (|| Status::permission_denied("not yours"), "not yours"),
            (|| Status::internal("a bug"), "a bug"),
            (|| Status::resource_exhausted("too big"), "too big"),
            (
                || with_pushback(Status::resource_exhausted("never"), "-1"),
                "never",
            ),
            (|| with_pushback(Status::unavailable("gone"), "-1"), "gone"),
            (
                || with_pushback(Status::resource_exhausted("when?"), "soon"),
                "when?",
            ),
        ];
        for (fail, message) in refusals {
            let (server, calls) = flaky(1000, usize::MAX, fail).await;
            let started = Instant::now();
            let (result, retries) =
                download(&server, &["numbers/0"], Retry::default()).await;
            let error = result.expect_err("refused");
            assert!(error.contains(message), "{error}");
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{error}");
            assert_eq!(retries, 0);
            assert!(started.elapsed() < Duration::from_secs(2));
            server.stop().await;
        }

        // A ticket for the shard of another server: NotFound, from the
        // server itself, after one call.
        let (server, calls) = flaky(1000, 0, || Status::ok("")).await;
        let (result, _) = download(&server, &["numbers/1"], Retry::default()).await;
        let error = result.expect_err("not found");
        assert!(
            error.contains("this server holds shard 0, not 1"),
            "{error}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        server.stop().await;
    });
}

#[test]
fn unavailable_and_a_server_s_pushback_are_retried() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the retry test", async {
        let (server, calls) =
            flaky(100_000, 3, || Status::unavailable("busy")).await;
        let (ids, retries) =
            download(&server, &["numbers/0"], Retry::default()).await;
        assert_eq!(ids.expect("fetched"), (0..100_000).collect::<Vec<i64>>());
        assert_eq!((calls.load(Ordering::SeqCst), retries), (4, 3));
        server.stop().await;

        // ResourceExhausted with a pushback of 200 ms, twice.
        let exhausted = || with_pushback(Status::resource_exhausted("full"), "200");
        let (server, calls) = flaky(100_000, 2, exhausted).await;
        let started = Instant::now();
        let (ids, retries) =
            download(&server, &["numbers/0"], Retry::default()).await;
        assert_eq!(ids.expect("fetched").len(), 100_000);
        assert_eq!((calls.load(Ordering::SeqCst), retries), (3, 2));
        assert!(started.elapsed() >= Duration::from_millis(400));
        server.stop().await;
    });
}

#[test]
fn the_deadline_ends_a_download_that_cannot_finish() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the deadline test", async {
        let down = || Status::unavailable("restarting");
        let (server, calls) = flaky(1000, usize::MAX, down).await;
        let retry = Retry {
            first: Duration::from_millis(20),
            max: Duration::from_millis(100),
            deadline: Duration::from_secs(1),
        };
        let started = Instant::now();
        let (result, retries) = download(&server, &["numbers/0"], retry).await;
        let took = started.elapsed();
        let error = result.expect_err("gave up");
        assert!(error.contains("restarting"), "{error}");
        // Without the deadline the retries would go on for ever; the bound
        // leaves room for a machine busy with other tests.
        assert!(took < Duration::from_secs(4), "{took:?}");
        assert!(took > Duration::from_millis(800), "{took:?}");
        assert!(retries >= 5, "{retries} retries");
        assert_eq!(calls.load(Ordering::SeqCst), retries + 1);
        server.stop().await;
    });
}

#[test]
fn the_waits_double_up_to_the_most_and_vary() {
    let retry = Retry {
        first: Duration::from_millis(10),
        max: Duration::from_millis(100),
        deadline: Duration::from_secs(60),
    };
    let unavailable = Status::unavailable("down");
    for (attempt, most) in [(0, 10), (1, 20), (2, 40), (3, 80), (4, 100), (30, 100)]
    {
        let waits: Vec<Duration> = (0..200)
            .map(|_| retry.wait(&unavailable, attempt).expect("a wait"))
            .collect();
        let longest = waits.iter().max().expect("waits");
        let shortest = waits.iter().min().expect("waits");
        assert!(*longest <= Duration::from_millis(most), "{longest:?}");
        assert!(
            *longest > Duration::from_millis(most * 3 / 4),
            "{longest:?}"
        );
        assert!(*shortest < Duration::from_millis(most / 4), "{shortest:?}");
    }
    let pushback = with_pushback(Status::resource_exhausted("full"), "500");
    let wait = retry.wait(&pushback, 0).expect("a wait");
    assert_eq!(wait, Duration::from_millis(500));
}

#[test]
fn the_budget_bounds_the_bytes_of_batches_not_yet_consumed() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the budget test", async {
        let rows = 2_000_000;
        let (addrs, layout) = layout(2, rows);
        let shards: Vec<Shard> = (0..2)
            .map(|i| Shard::start(addrs[i], i, layout.clone()))
            .collect();
        let url = layout.shards[0].clone();
        let channels = Channels::new(&url, Windows::default());
        let info = info(&url, &channels).await;
        let budget_kib = 4 * 1024;
        let budget = Budget::new(budget_kib);
        let mut download =
            Download::start(info.endpoint, &channels, &budget, Retry::default());
        // A consumer that keeps every batch and consumes none: the
        // download stops when the budget is full.
        let mut held = Vec::new();
        let wait = Duration::from_millis(500);
        while let Ok(Some(part)) = tokio::time::timeout(wait, download.next()).await
        {
            held.push(part.expect("a batch"));
        }
        // Two Int64 columns: 16 bytes a row.
        let kib: usize = held
            .iter()
            .map(|part| (16 * part.batch.num_rows()).div_ceil(1024))
            .sum();
        assert!(
            kib <= budget_kib,
            "{kib} KiB held, the budget is {budget_kib}"
        );
        assert!(kib >= budget_kib - 1024, "only {kib} KiB held");
        assert_eq!(budget.held(), kib);

        // Consumed, they make room for the rest.
        let mut parts: Vec<_> = held.into_iter().map(keep).collect();
        while let Some(part) = download.next().await {
            parts.push(keep(part.expect("a batch")));
        }
        assert_eq!(table(parts).len(), rows);
        assert_eq!(budget.held(), 0);
        drop(shards);
    });
}

#[test]
fn the_shard_server_starts_where_the_ticket_says_and_refuses_bad_offsets() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the resume ticket test", async {
        let rows = 200_000;
        let (server, _) = flaky(rows, 0, || Status::ok("")).await;
        let mut client = server.client().await;
        let ticket = Ticket::new("numbers/0");
        assert_eq!(resume(&ticket, 0), ticket);
        for from in [0, 1, 65_535, 65_536, 65_537, rows - 1, rows] {
            let batches: Vec<RecordBatch> = client
                .do_get(resume(&ticket, from))
                .await
                .expect("do_get")
                .try_collect()
                .await
                .expect("batches");
            let ids: Vec<i64> =
                batches.iter().flat_map(|b| ids(b).to_vec()).collect();
            assert_eq!(ids, (from as i64..rows as i64).collect::<Vec<_>>());
        }
        let past = format!("numbers/0?from={}", rows + 1);
        let refusals = [
            (
                past.as_str(),
                "from=200001 is past the end of shard 0, which has 200000 rows",
            ),
            (
                "numbers/0?from=x",
                "from=\"x\" in \"numbers/0?from=x\" is not a row number",
            ),
            (
                "numbers/0?from=-1",
                "from=\"-1\" in \"numbers/0?from=-1\" is not a row number",
            ),
            (
                "numbers/0?from=",
                "from=\"\" in \"numbers/0?from=\" is not a row number",
            ),
            ("numbers/?from=1", "\"numbers/?from=1\" is not a ticket"),
        ];
        for (ticket, message) in refusals {
            let status = match client.do_get(Ticket::new(ticket.to_string())).await
            {
                Err(arrow_flight::error::FlightError::Tonic(status)) => *status,
                other => panic!("{ticket}: {:?}", other.map(drop)),
            };
            assert_eq!(status.code(), Code::InvalidArgument, "{ticket}");
            assert_eq!(status.message(), message);
        }
        // Still serving.
        let batches: Vec<RecordBatch> = client
            .do_get(ticket)
            .await
            .expect("do_get")
            .try_collect()
            .await
            .expect("batches");
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), rows);
        drop(client);
        server.stop().await;
    });
}
