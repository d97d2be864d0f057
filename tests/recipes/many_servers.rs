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
        assert_eq!(channels.len(), 2, "one channel per server, reused");
        drop(shards);
    });
}
