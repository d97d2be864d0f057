//! One dataset over several servers: every endpoint points at the server
//! that holds its part, parts come back in order, wrong or bad tickets get
//! clean errors, an unreachable server is named, and pyarrow follows the
//! endpoints too.

use crate::common;
use crate::shard_client;
use crate::shard_server;

use std::ffi::OsStr;

use arrow_flight::{FlightClient, FlightDescriptor, FlightEndpoint, Ticket};
use common::{ChildProcess, Shutdown, TestServer};
use futures::TryStreamExt;
use shard_client::{fetch, fetch_all};
use shard_server::{Layout, serve, serve_shard};
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::Channel;

/// `count` shards of `rows` rows, each on a server of its own.
async fn cluster(count: usize, rows: usize) -> Vec<TestServer> {
    let mut listeners = Vec::new();
    for _ in 0..count {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    let shards: Vec<String> = listeners
        .iter()
        .map(|l| format!("grpc://{}", l.local_addr().expect("address")))
        .collect();
    let layout = Layout { rows, shards };
    let mut servers = Vec::new();
    for (shard, listener) in listeners.into_iter().enumerate() {
        let layout = layout.clone();
        let serve = move |listener: TcpListener, shutdown: Shutdown| {
            serve_shard(listener, shard, layout, shutdown)
        };
        servers.push(TestServer::start_on(listener, serve).await);
    }
    servers
}

async fn stop(servers: Vec<TestServer>) {
    for server in servers {
        server.stop().await;
    }
}

async fn client(url: &str) -> FlightClient {
    let channel = Channel::from_shared(url.to_string())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    FlightClient::new(channel)
}

fn numbers() -> FlightDescriptor {
    FlightDescriptor::new_path(vec!["numbers".to_string()])
}

#[test]
fn every_server_describes_all_shards_and_the_parts_come_back_in_order() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the cluster test", async {
        // 3 shards of an odd number of rows: shares of 33 333 and 33 334.
        let servers = cluster(3, 100_001).await;
        let urls: Vec<String> = servers.iter().map(TestServer::url).collect();
        for (server, url) in servers.iter().zip(&urls) {
            let info = client(url)
                .await
                .get_flight_info(numbers())
                .await
                .expect("info");
            assert_eq!(info.total_records, 100_001);
            assert!(info.ordered);
            let locations: Vec<_> = info
                .endpoint
                .iter()
                .map(|e| e.location[0].uri.clone())
                .collect();
            let expected: Vec<_> = urls
                .iter()
                .map(|u| u.replacen("http://", "grpc://", 1))
                .collect();
            assert_eq!(locations, expected);
            let origin = server.channel().await;
            let batches = fetch_all(info.endpoint, &origin).await.expect("fetched");
            let ids: Vec<i64> = batches
                .iter()
                .flat_map(|b| {
                    let column = b
                        .column(0)
                        .as_any()
                        .downcast_ref::<arrow_array::Int64Array>();
                    column.expect("Int64").values().to_vec()
                })
                .collect();
            assert_eq!(ids, (0..100_001).collect::<Vec<i64>>());
        }
        stop(servers).await;
    });
}

#[test]
fn wrong_bad_and_unknown_requests_get_clean_errors() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the error test", async {
        let servers = cluster(2, 1000).await;
        let urls: Vec<String> = servers.iter().map(TestServer::url).collect();
        let mut first = client(&urls[0]).await;

        let status = |e: arrow_flight::error::FlightError| match e {
            arrow_flight::error::FlightError::Tonic(status) => *status,
            other => panic!("{other:?}"),
        };
        let wrong = first
            .do_get(Ticket::new("numbers/1"))
            .await
            .map(drop)
            .expect_err("wrong server");
        let wrong = status(wrong);
        assert_eq!(
            (wrong.code(), wrong.message()),
            (Code::NotFound, "this server holds shard 0, not 1")
        );
        for ticket in ["numbers/x", "numbers", "", "numbers/-1"] {
            let bad = status(
                first
                    .do_get(Ticket::new(ticket))
                    .await
                    .map(drop)
                    .expect_err("bad"),
            );
            assert_eq!(bad.code(), Code::InvalidArgument, "{ticket:?}");
            assert_eq!(bad.message(), format!("{ticket:?} is not a ticket"));
        }
        let other = FlightDescriptor::new_path(vec!["letters".to_string()]);
        let unknown =
            status(first.get_flight_info(other).await.expect_err("unknown"));
        assert_eq!(unknown.code(), Code::NotFound);
        assert_eq!(unknown.message(), "the one dataset here is [\"numbers\"]");

        // An endpoint whose server is gone: the error names it.
        let gone = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = gone.local_addr().expect("address");
        drop(gone);
        let endpoint = FlightEndpoint::new()
            .with_ticket(Ticket::new("numbers/0"))
            .with_location(format!("grpc://{address}"));
        let origin = servers[0].channel().await;
        let error = fetch(endpoint, origin.clone())
            .await
            .expect_err("unreachable")
            .to_string();
        assert!(error.starts_with(&format!("grpc://{address}: ")), "{error}");

        // An endpoint without a location, or whose location is
        // `arrow-flight-reuse-connection://?`, goes over the origin's
        // connection.
        for location in [None, Some("arrow-flight-reuse-connection://?")] {
            let mut endpoint =
                FlightEndpoint::new().with_ticket(Ticket::new("numbers/0"));
            if let Some(location) = location {
                endpoint = endpoint.with_location(location);
            }
            let batches = fetch(endpoint, origin.clone())
                .await
                .expect("from the origin");
            assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 500);
        }

        // A location of a scheme no client knows: a clear error.
        let endpoint = FlightEndpoint::new()
            .with_ticket(Ticket::new("numbers/0"))
            .with_location("grpc+unix:///tmp/shard.sock");
        let error = fetch(endpoint, origin.clone())
            .await
            .expect_err("unknown scheme")
            .to_string();
        assert!(error.contains("is not a Flight URL this client"), "{error}");
        drop(origin);

        // Still serving.
        let parts: Vec<_> = first
            .do_get(Ticket::new("numbers/0"))
            .await
            .expect("get")
            .try_collect()
            .await
            .expect("batches");
        assert_eq!(parts.iter().map(|b| b.num_rows()).sum::<usize>(), 500);
        drop(first);
        stop(servers).await;
    });
}

#[test]
fn the_one_process_cluster_stops_both_shards() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the demo cluster test", async {
        let server = TestServer::start(serve).await;
        let url = server.url();
        let info = client(&url)
            .await
            .get_flight_info(numbers())
            .await
            .expect("info");
        let second = info.endpoint[1].location[0]
            .uri
            .replacen("grpc://", "http://", 1);
        let origin = server.channel().await;
        let batches = fetch_all(info.endpoint, &origin).await.expect("fetched");
        drop(origin);
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            1_000_000
        );
        server.stop().await;
        let refused = Channel::from_shared(second).expect("url").connect().await;
        assert!(refused.is_err(), "shard 1 still serves");
    });
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn a_pyarrow_client_follows_the_endpoints() {
    let runtime = common::runtime();
    let servers =
        common::block_on(&runtime, "starting the shards", cluster(2, 1_000_000));
    let url = servers[1].grpc_url();
    let client = ChildProcess::python(
        &common::python(),
        "shard_client.py",
        &[OsStr::new(&url)],
    );
    let finished = client.wait(common::TIMEOUT);
    assert!(finished.success(), "{}", finished.report());
    assert_eq!(
        finished.stdout,
        "1000000 rows in 2 endpoints, ordered=True\n\
         numbers/0: 500000 rows\n\
         numbers/1: 500000 rows\n\
         1000000 rows, ids in order: True\n"
    );
    common::block_on(&runtime, "stopping the shards", stop(servers));
}
