//! The gRPC options chapter's claims, checked: message limits on both sides,
//! gzip on the wire, time limits, keep-alive on a connection that dies under
//! a call, and bad input refused with the server still serving.

use crate::common;
use crate::grpc_options_client;
use crate::grpc_options_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::{Action, FlightDescriptor, Ticket};
use arrow_ipc::CompressionType;
use common::{Shutdown, TestServer};
use grpc_options_client::{connect, upload};
use grpc_options_server::{OptionsService, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Request};

/// The chapter's service with tonic's defaults, not the recipe's options.
async fn start_with_defaults() -> TestServer {
    TestServer::start(|listener: TcpListener, shutdown: Shutdown| {
        Server::builder()
            .add_service(FlightServiceServer::new(OptionsService))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
    })
    .await
}

/// A TCP relay between a client and a server that counts the bytes going
/// up and can go silent, as a dead network does: it keeps both connections
/// open but forwards nothing more, until it is closed.
struct Relay {
    url: String,
    up: Arc<AtomicU64>,
    silent: Arc<AtomicBool>,
    closed: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    async fn start(server: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let target = server.trim_start_matches("http://").to_string();
        let up = Arc::new(AtomicU64::new(0));
        let silent = Arc::new(AtomicBool::new(false));
        let (counter, switch) = (up.clone(), silent.clone());
        let (closed, close) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else {
                    return;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let (s, c) = (switch.clone(), close.clone());
                tokio::spawn(pump(
                    client_read,
                    server_write,
                    Some(counter.clone()),
                    s,
                    c,
                ));
                let (s, c) = (switch.clone(), close.clone());
                tokio::spawn(pump(server_read, client_write, None, s, c));
            }
        });
        Relay {
            url,
            up,
            silent,
            closed,
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counter: Option<Arc<AtomicU64>>,
    silent: Arc<AtomicBool>,
    mut close: tokio::sync::watch::Receiver<bool>,
) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if silent.load(Ordering::SeqCst) {
            // Swallow everything from now on, keeping the sockets open
            // until the relay is closed.
            let _ = close.wait_for(|closed| *closed).await;
            return;
        }
        if let Some(counter) = &counter {
            counter.fetch_add(read as u64, Ordering::SeqCst);
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

fn sleep(millis: u64) -> Request<Action> {
    Request::new(Action::new("sleep", millis.to_string()))
}

#[test]
fn a_client_with_keep_alive_gives_up_on_a_dead_connection_one_without_waits() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the keep-alive test", async {
        let server = TestServer::start(serve).await;
        let relay = Relay::start(&server.url()).await;

        let keeping_alive = Endpoint::from_shared(relay.url.clone())
            .expect("url")
            .http2_keep_alive_interval(Duration::from_millis(200))
            .keep_alive_timeout(Duration::from_millis(300))
            .connect()
            .await
            .expect("connect");
        let plain = Channel::from_shared(relay.url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut with = FlightServiceClient::new(keeping_alive);
        let mut without = FlightServiceClient::new(plain);
        // Both work while the network does.
        with.do_action(sleep(1))
            .await
            .expect("a call with keep-alive");
        without.do_action(sleep(1)).await.expect("a call without");

        // The server answers both calls after 1 s; the relay goes silent
        // before that, so neither answer arrives.
        let started = Instant::now();
        let with_call =
            tokio::spawn(async move { with.do_action(sleep(1000)).await });
        let without_call =
            tokio::spawn(async move { without.do_action(sleep(1000)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        relay.silent.store(true, Ordering::SeqCst);

        let outcome = tokio::time::timeout(Duration::from_secs(5), with_call)
            .await
            .expect("keep-alive notices the dead connection within 5 s")
            .expect("the task");
        let gave_up = started.elapsed();
        let status = outcome.expect_err("the call fails");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        eprintln!("keep-alive gave up after {gave_up:?}: {status}");

        // Well after the server answered, the other call still waits.
        tokio::time::sleep(
            Duration::from_millis(2500).saturating_sub(started.elapsed()),
        )
        .await;
        assert!(
            !without_call.is_finished(),
            "without keep-alive the call should still wait"
        );
        without_call.abort();
        let _ = without_call.await;
        let _ = relay.closed.send(true);
        server.stop().await;
    });
}

#[test]
fn gzip_sends_fewer_bytes_for_repetitive_numbers() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the gzip test", async {
        let server = TestServer::start(serve).await;
        let relay = Relay::start(&server.url()).await;
        let channel = connect(relay.url.clone()).await.expect("connect");

        let mut plain = FlightServiceClient::new(channel.clone());
        let before = relay.up.load(Ordering::SeqCst);
        let said = upload(&mut plain, 1_000_000, 2 * 1024 * 1024)
            .await
            .expect("upload");
        let plain_bytes = relay.up.load(Ordering::SeqCst) - before;
        assert_eq!(said, "1000000 rows in 4 batches, encoding identity");

        let mut gzip = FlightServiceClient::new(channel)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip);
        let before = relay.up.load(Ordering::SeqCst);
        let said = upload(&mut gzip, 1_000_000, 2 * 1024 * 1024)
            .await
            .expect("upload");
        let gzip_bytes = relay.up.load(Ordering::SeqCst) - before;
        assert_eq!(said, "1000000 rows in 4 batches, encoding gzip");

        eprintln!(
            "1 000 000 Int64 values up: {plain_bytes} bytes plain, {gzip_bytes} with gzip"
        );
        assert!(plain_bytes > 8_000_000, "{plain_bytes}");
        assert!(
            gzip_bytes * 4 < plain_bytes,
            "{gzip_bytes} vs {plain_bytes}"
        );
        drop((plain, gzip));
        let _ = relay.closed.send(true);
        server.stop().await;
    });
}

#[test]
fn a_server_with_default_limits_refuses_an_8_mb_message_the_recipe_accepts() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the server limit test", async {
        let defaults = start_with_defaults().await;
        let recipe = TestServer::start(serve).await;

        let mut client = FlightServiceClient::new(
            connect(defaults.url()).await.expect("connect"),
        );
        let refused = upload(&mut client, 1_000_000, usize::MAX).await;
        let message = format!("{:?}", refused.expect_err("refused"));
        // tonic's OutOfRange, which the recipe's `do_put` tells as
        // ResourceExhausted (naming the recipe's limit, not this server's).
        assert!(message.contains("ResourceExhausted"), "{message}");
        assert!(message.contains("is larger than the limit"), "{message}");
        // The same client, the default split: fine.
        let said = upload(&mut client, 1_000_000, 2 * 1024 * 1024)
            .await
            .expect("split");
        assert_eq!(said, "1000000 rows in 4 batches, encoding identity");

        let mut client =
            FlightServiceClient::new(connect(recipe.url()).await.expect("connect"));
        let said = upload(&mut client, 1_000_000, usize::MAX)
            .await
            .expect("accepted");
        assert_eq!(said, "1000000 rows in 1 batches, encoding identity");
        drop(client);
        defaults.stop().await;
        recipe.stop().await;
    });
}

#[test]
fn the_servers_time_limit_is_the_shorter_of_its_own_and_the_clients() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the time limit test", async {
        let server =
            TestServer::start(|listener: TcpListener, shutdown: Shutdown| {
                Server::builder()
                    .timeout(Duration::from_millis(300))
                    .add_service(FlightServiceServer::new(OptionsService))
                    .serve_with_incoming_shutdown(
                        TcpIncoming::from(listener),
                        shutdown,
                    )
            })
            .await;
        let mut client = FlightServiceClient::new(server.channel().await);

        // No client deadline: the server's 300 ms end a 5 s nap.
        let started = Instant::now();
        let status = client.do_action(sleep(5000)).await.expect_err("cut off");
        assert_eq!(status.code(), Code::Cancelled, "{status:?}");
        assert_eq!(status.message(), "Timeout expired");
        assert!(started.elapsed() < Duration::from_secs(3));
        // Within the limit: fine.
        client.do_action(sleep(10)).await.expect("a short nap");
        drop(client);
        server.stop().await;
    });
}

#[test]
fn bad_tickets_and_actions_are_refused_with_what_is_wrong_and_the_server_serves_on()
{
    let runtime = common::runtime();
    common::block_on(&runtime, "the bad input test", async {
        let server = TestServer::start(serve).await;
        let mut client =
            FlightServiceClient::new(connect(server.url()).await.expect("connect"));

        let tickets = [
            ("abc", "the ticket (a row count) must be a whole number"),
            ("-5", "the ticket (a row count) must be a whole number"),
            ("", "the ticket (a row count) must be a whole number"),
            (
                "99999999999999999999999",
                "the ticket (a row count) must be a whole number",
            ),
            (
                "16777217",
                "16777217 rows asked for, at most 16777216 are sent",
            ),
        ];
        for (ticket, expected) in tickets {
            let status = client
                .do_get(Ticket::new(ticket.to_string()))
                .await
                .err()
                .unwrap_or_else(|| panic!("ticket {ticket:?} accepted"));
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{ticket:?}: {status:?}"
            );
            assert_eq!(status.message(), expected, "{ticket:?}");
        }
        let status = client
            .do_get(Ticket::new(vec![0xff, 0xfe]))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument);

        let actions = [
            (
                Action::new("nap", "10"),
                "unknown action \"nap\", try \"sleep\"",
            ),
            (
                Action::new("sleep", "soon"),
                "the body of sleep (milliseconds) must be a whole number",
            ),
            (Action::new("sleep", "60001"), "sleep is at most 60000 ms"),
        ];
        for (action, expected) in actions {
            let status = client
                .do_action(Request::new(action))
                .await
                .expect_err("refused");
            assert_eq!(status.code(), Code::InvalidArgument);
            assert_eq!(status.message(), expected);
        }

        // Still serving.
        let mut results = client
            .do_action(sleep(1))
            .await
            .expect("serving")
            .into_inner();
        let result = results
            .message()
            .await
            .expect("a result")
            .expect("one result");
        assert_eq!(&result.body[..], b"slept 1 ms");
        drop((results, client));
        server.stop().await;
    });
}

/// A message of a few hundred bytes that claims 4 EiB once decompressed,
/// LZ4 or ZSTD, is refused before it is decompressed (unguarded, LZ4's
/// failed allocation aborts the server), and an upload after it is counted.
#[test]
fn a_compressed_upload_claiming_4_eib_is_refused_and_the_server_serves_on() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the compression bombs", async {
        let server = TestServer::start(serve).await;
        let mut client =
            FlightServiceClient::new(connect(server.url()).await.expect("connect"));
        for compression in [CompressionType::LZ4_FRAME, CompressionType::ZSTD] {
            let descriptor = FlightDescriptor::new_path(vec!["bomb".into()]);
            let bomb = common::compression_bomb(descriptor, compression).await;
            common::assert_bomb_refused(common::put(&mut client, None, bomb).await);
        }
        let said = upload(&mut client, 1000, usize::MAX).await.expect("upload");
        assert_eq!(said, "1000 rows in 1 batches, encoding identity");
        drop(client);
        server.stop().await;
    });
}
