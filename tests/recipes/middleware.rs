//! The middleware chapter's layers: a log line when a call has really ended
//! (streams included, cancelled calls too), and per-method limits whose
//! permits come back however a call ends.

use crate::common;
use crate::middleware_client;
use crate::middleware_server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::{Action, FlightClient, Ticket};
use common::{Shutdown, TestServer};
use futures::{StreamExt, TryStreamExt};
use middleware_client::work;
use middleware_server::{
    CallLogLayer, ConcurrencyLimitLayer, LIMITS, WorkService, serve,
};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// The log lines of a server, in the order its calls ended.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    /// The lines so far, each with its milliseconds replaced by `N`.
    fn lines(&self) -> Vec<String> {
        let lines = self.0.lock().expect("log").clone();
        lines
            .iter()
            .map(|line| {
                let (head, tail) = line.split_once(" in ").expect("an ' in '");
                let (_, rest) = tail.split_once(" ms").expect("an ' ms'");
                format!("{head} in N ms{rest}")
            })
            .collect()
    }
}

/// The recipe's server as `serve` builds it, with its log lines going to
/// the test instead of stdout.
async fn start_logged() -> (TestServer, Log) {
    let log = Log::default();
    let sink = log.clone();
    let server =
        TestServer::start(move |listener: TcpListener, shutdown: Shutdown| {
            Server::builder()
                .layer(CallLogLayer::new(move |line| {
                    sink.0.lock().expect("log").push(line)
                }))
                .layer(ConcurrencyLimitLayer::new(&LIMITS))
                .add_service(FlightServiceServer::new(WorkService))
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        })
        .await;
    (server, log)
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} did not happen within 5 s");
}

#[test]
fn the_log_has_one_line_per_call_written_when_it_ended() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the log test", async {
        let (server, log) = start_logged().await;
        let channel = server.channel().await;
        assert_eq!(work(channel.clone(), "50").await, "worked 50 ms");
        // A download too large to fit in the HTTP/2 windows: while it is
        // under way, there is no line for it.
        let mut client = FlightClient::new(channel.clone());
        let mut stream =
            client.do_get(Ticket::new("2000000")).await.expect("do_get");
        let first = stream.next().await.expect("a batch").expect("ok");
        assert_eq!(first.num_rows(), 1000);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(log.lines(), ["DoAction Ok in N ms, 19 bytes"]);
        let rest: Vec<_> = stream.try_collect().await.expect("the rest");
        assert_eq!(rest.len(), 1999);
        eventually("the download's line", || log.lines().len() == 2).await;
        assert!(log.lines()[1].starts_with("DoGet Ok in N ms, "));
        // A small one, whose bytes the book shows.
        let batches: Vec<_> = client
            .do_get(Ticket::new("10000"))
            .await
            .expect("do_get")
            .try_collect()
            .await
            .expect("batches");
        assert_eq!(batches.len(), 10);
        eventually("the second download's line", || log.lines().len() == 3).await;
        assert_eq!(log.lines()[2], "DoGet Ok in N ms, 81607 bytes");
        assert_eq!(
            work(channel.clone(), "soon").await,
            "InvalidArgument: the body of work is not a whole number"
        );
        let mut client = FlightClient::new(channel.clone());
        let unknown = match client.do_action(Action::new("rest", "")).await {
            Ok(results) => results.try_collect::<Vec<_>>().await.map(drop),
            Err(error) => Err(error),
        };
        let unknown = unknown.expect_err("refused").to_string();
        assert!(unknown.contains("the one action is work"), "{unknown}");
        eventually("five lines", || log.lines().len() == 5).await;
        assert_eq!(
            log.lines()[3..],
            [
                "DoAction InvalidArgument in N ms, 0 bytes",
                "DoAction InvalidArgument in N ms, 0 bytes",
            ]
        );
        drop((client, channel));
        server.stop().await;
    });
}

#[test]
fn a_download_dropped_midway_is_logged_cancelled_and_gives_its_permit_back() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the cancel test", async {
        let (server, log) = start_logged().await;
        let channel = server.channel().await;
        // DoGet allows 8 at once: drop 20 downloads midway, one after the
        // other; if permits leaked, the ninth would be refused.
        for round in 0..20 {
            let mut client = FlightClient::new(channel.clone());
            let mut stream =
                client.do_get(Ticket::new("1000000")).await.expect("do_get");
            stream.next().await.expect("a batch").expect("ok");
            drop(stream);
            eventually("the cancelled line", || log.lines().len() == round + 1)
                .await;
        }
        let lines = log.lines();
        assert!(
            lines
                .iter()
                .all(|line| line.starts_with("DoGet Cancelled in N ms, ")),
            "{lines:?}"
        );
        let mut client = FlightClient::new(channel.clone());
        let batches: Vec<_> = client
            .do_get(Ticket::new("10"))
            .await
            .expect("not refused")
            .try_collect()
            .await
            .expect("batches");
        assert_eq!(batches.len(), 1);
        drop((client, channel));
        server.stop().await;
    });
}

#[test]
fn failed_calls_give_their_permits_back_and_unlimited_methods_are_never_refused() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the permit test", async {
        let server = TestServer::start(serve).await;
        let channel = server.channel().await;
        for _ in 0..10 {
            let answer = work(channel.clone(), "x").await;
            assert_eq!(
                answer,
                "InvalidArgument: the body of work is not a whole number"
            );
        }
        // Two permits are still there.
        let (a, b) = tokio::join!(
            work(channel.clone(), "200"),
            work(channel.clone(), "200")
        );
        assert_eq!((a.as_str(), b.as_str()), ("worked 200 ms", "worked 200 ms"));

        // Calls to methods without a limit: many at once, none refused.
        let mut calls = Vec::new();
        for _ in 0..32 {
            let mut client = FlightClient::new(channel.clone());
            calls.push(tokio::spawn(async move {
                client.list_actions().await.err().map(|e| e.to_string())
            }));
        }
        for call in calls {
            let error = call
                .await
                .expect("task")
                .expect("list_actions is unimplemented");
            assert!(error.contains("list_actions is not offered"), "{error}");
        }
        drop(channel);
        server.stop().await;
    });
}
