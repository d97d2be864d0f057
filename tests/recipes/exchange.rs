//! The DoExchange and app_metadata chapter's server: results stream back
//! while the input is still coming, a cancelled exchange ends on the server,
//! per-batch app_metadata survives batches the encoder splits, and bad input
//! gets the right status while the server goes on serving.

use crate::common;
use crate::exchange_client;
use crate::exchange_server;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::{FlightClient, FlightData, FlightDescriptor, Ticket};
use common::{Shutdown, TestServer};
use exchange_client::{column, encode_with_metadata, values};
use exchange_server::{ExchangeService, serve};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt, TryStreamExt, stream};
use http_body::Frame;
use tokio::net::TcpListener;
use tokio::time::timeout;
use tonic::body::Body;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Status};
use tower::{Layer, Service};

const SOON: Duration = Duration::from_secs(5);

/// How many calls the server is still answering. A call ends on the server
/// when tonic drops its response, and with it the stream `do_exchange`
/// returned and the exchange's state: this layer counts the responses not
/// yet dropped.
#[derive(Clone, Default)]
struct OpenCalls(Arc<AtomicUsize>);

impl OpenCalls {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    async fn wait_for_none(&self) {
        let waited = timeout(SOON, async {
            while self.count() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "the exchange is still open on the server");
    }
}

/// The recipe's service, with its open calls counted.
async fn start_counted() -> (TestServer, OpenCalls) {
    let open = OpenCalls::default();
    let layer = open.clone();
    let server = TestServer::start(|listener: TcpListener, shutdown: Shutdown| {
        Server::builder()
            .layer(layer)
            .add_service(FlightServiceServer::new(ExchangeService::default()))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
    })
    .await;
    (server, open)
}

impl<S> Layer<S> for OpenCalls {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            open: self.clone(),
        }
    }
}

#[derive(Clone)]
struct Counted<S> {
    inner: S,
    open: OpenCalls,
}

impl<S, B> Service<http::Request<B>> for Counted<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.open.0.fetch_add(1, Ordering::SeqCst);
        let open = OpenCall(self.open.clone());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Body::new(CountedBody { body, _open: open })))
        })
    }
}

/// One open call, until it is dropped.
struct OpenCall(OpenCalls);

impl Drop for OpenCall {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct CountedBody {
    body: Body,
    _open: OpenCall,
}

impl http_body::Body for CountedBody {
    type Data = <Body as http_body::Body>::Data;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Status>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

fn batch(column: &str, array: ArrayRef) -> RecordBatch {
    RecordBatch::try_from_iter([(column, array)]).expect("batch")
}

async fn exchange(
    channel: &Channel,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>, FlightError> {
    let mut client = FlightClient::new(channel.clone());
    let input = FlightDataEncoderBuilder::new()
        .build(stream::iter(batches.into_iter().map(Ok)));
    client.do_exchange(input).await?.try_collect().await
}

fn status(result: Result<Vec<RecordBatch>, FlightError>) -> tonic::Status {
    match result {
        Err(FlightError::Tonic(status)) => *status,
        other => panic!("expected a status, got {other:?}"),
    }
}

#[test]
fn results_come_back_while_the_input_is_still_open() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the streaming test", async {
        let server = TestServer::start(serve).await;
        let mut client = server.client().await;
        let (mut sender, receiver) = mpsc::channel(1);
        let input = FlightDataEncoderBuilder::new().build(receiver.map(Ok));
        let mut output = client.do_exchange(input).await.expect("exchange");
        let mut expected_total = 0;
        for round in 1..=20_i64 {
            sender
                .send(values(&[round]).expect("batch"))
                .await
                .expect("send");
            let result = timeout(SOON, output.try_next())
                .await
                .unwrap_or_else(|_| {
                    panic!("no result for batch {round} while the input is open")
                })
                .expect("a result")
                .expect("one");
            expected_total += round;
            assert_eq!(
                column(&result, "running_total").expect("column"),
                [expected_total]
            );
        }
        drop(sender);
        assert!(output.try_next().await.expect("clean end").is_none());
        drop((output, client));
        server.stop().await;
    });
}

#[test]
fn dropping_only_the_results_does_not_end_an_exchange() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the half-drop test", async {
        let (server, open) = start_counted().await;
        let mut client = server.client().await;
        let (mut sender, receiver) = mpsc::channel(1);
        let input = FlightDataEncoderBuilder::new().build(receiver.map(Ok));
        let mut output = client.do_exchange(input).await.expect("exchange");
        sender
            .send(values(&[1, 2]).expect("batch"))
            .await
            .expect("send");
        output.try_next().await.expect("a result").expect("one");
        assert_eq!(open.count(), 1);

        // tonic goes on with the call while the input is open: the book
        // says so.
        drop(output);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(open.count(), 1);
        drop(sender);
        open.wait_for_none().await;
        drop(client);
        server.stop().await;
    });
}

#[test]
fn a_client_that_goes_away_mid_exchange_ends_it_on_the_server() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the cancel test", async {
        let (server, open) = start_counted().await;
        let url = server.url();
        // The client runs on a runtime of its own, dropped mid-exchange with
        // its input still open: as if its process had died.
        let (opened, has_opened) = std::sync::mpsc::channel();
        let (go, until_told) = std::sync::mpsc::channel::<()>();
        let client = std::thread::spawn(move || {
            let client_runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let held = client_runtime.block_on(async {
                let channel = Channel::from_shared(url)
                    .expect("url")
                    .connect()
                    .await
                    .expect("connect");
                let mut client = FlightClient::new(channel);
                let (mut sender, receiver) = mpsc::channel(1);
                let input = FlightDataEncoderBuilder::new().build(receiver.map(Ok));
                let mut output = client.do_exchange(input).await.expect("exchange");
                sender
                    .send(values(&[1, 2]).expect("batch"))
                    .await
                    .expect("send");
                output.try_next().await.expect("a result").expect("one");
                (sender, output, client)
            });
            opened.send(()).expect("tell");
            let _ = until_told.recv();
            drop(client_runtime);
            held
        });
        tokio::task::spawn_blocking(move || has_opened.recv())
            .await
            .expect("join")
            .expect("the client got its first result");
        assert_eq!(open.count(), 1);
        go.send(()).expect("go");
        let _held = tokio::task::spawn_blocking(move || {
            client.join().expect("client thread")
        })
        .await
        .expect("join");
        open.wait_for_none().await;

        // And the server goes on serving.
        let channel = server.channel().await;
        let results = exchange(&channel, vec![values(&[5]).expect("batch")])
            .await
            .expect("a new exchange");
        assert_eq!(column(&results[0], "running_total").expect("column"), [5]);
        drop(channel);
        server.stop().await;
    });
}

#[test]
fn bad_exchanges_get_invalid_argument_naming_the_problem() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the bad input test", async {
        let (server, open) = start_counted().await;
        let channel = server.channel().await;
        let names = Arc::new(StringArray::from(vec!["a"])) as ArrayRef;
        let missing =
            status(exchange(&channel, vec![batch("name", names.clone())]).await);
        assert_eq!(missing.code(), Code::InvalidArgument, "{missing:?}");
        assert_eq!(
            missing.message(),
            r#"a batch needs an Int64 column "value"; this one has ["name"]"#
        );

        let wrong_type =
            status(exchange(&channel, vec![batch("value", names)]).await);
        assert_eq!(wrong_type.code(), Code::InvalidArgument, "{wrong_type:?}");
        assert_eq!(wrong_type.message(), r#"column "value" is Utf8, not Int64"#);

        let big = values(&[i64::MAX]).expect("batch");
        let overflow = status(exchange(&channel, vec![big.clone(), big]).await);
        assert_eq!(overflow.code(), Code::InvalidArgument, "{overflow:?}");
        assert_eq!(overflow.message(), "the running total overflows Int64");

        // Not Arrow IPC at all.
        let mut raw = FlightServiceClient::new(channel.clone());
        let garbage = FlightData::new()
            .with_data_header(&b"not a flatbuffer"[..])
            .with_data_body(&b"nor a body"[..]);
        let answer = match raw.do_exchange(stream::iter([garbage.clone()])).await {
            Ok(response) => response
                .into_inner()
                .try_collect::<Vec<_>>()
                .await
                .map(|_| ()),
            Err(status) => Err(status),
        };
        let garbled = answer.expect_err("garbage refused");
        assert_eq!(garbled.code(), Code::InvalidArgument, "{garbled:?}");
        assert!(
            garbled
                .message()
                .starts_with("not a stream of Arrow record batches: "),
            "{garbled:?}"
        );
        assert!(!garbled.message().contains("/src/"), "{garbled:?}");

        let answer = match raw.do_put(stream::iter([garbage])).await {
            Ok(response) => response
                .into_inner()
                .try_collect::<Vec<_>>()
                .await
                .map(|_| ()),
            Err(status) => Err(status),
        };
        let garbled = answer.expect_err("garbage upload refused");
        assert_eq!(garbled.code(), Code::InvalidArgument, "{garbled:?}");

        // An upload must say where it goes.
        let mut client = FlightClient::new(channel.clone());
        let upload = FlightDataEncoderBuilder::new()
            .build(stream::iter([Ok(values(&[1]).expect("batch"))]));
        let refused = match client.do_put(upload).await {
            Ok(acks) => acks.try_collect::<Vec<_>>().await.map(|_| ()),
            Err(error) => Err(error),
        };
        match refused {
            Err(FlightError::Tonic(status)) => {
                assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
                assert!(status.message().contains("descriptor"), "{status:?}");
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }

        let unknown = client.do_get(Ticket::new("nothing")).await;
        let unknown = match unknown {
            Ok(stream) => stream.try_collect::<Vec<_>>().await.map(|_| ()),
            Err(error) => Err(error),
        };
        match unknown {
            Err(FlightError::Tonic(status)) => {
                assert_eq!(status.code(), Code::NotFound, "{status:?}");
                assert_eq!(status.message(), r#"no dataset named "nothing""#);
            }
            other => panic!("expected NotFound, got {other:?}"),
        }

        // The server goes on serving.
        let results = exchange(&channel, vec![values(&[1, 2]).expect("batch")])
            .await
            .expect("a good exchange");
        assert_eq!(
            column(&results[0], "running_total").expect("column"),
            [1, 3]
        );
        open.wait_for_none().await;
        drop((raw, client, channel));
        server.stop().await;
    });
}

#[test]
fn each_batch_keeps_its_metadata_also_when_the_encoder_splits_it() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the metadata test", async {
        let server = TestServer::start(serve).await;
        let mut client = server.client().await;
        // 3 MiB of values: more than the encoder's 2 MiB messages.
        let big: Vec<i64> = (0..393_216).collect();
        let batches = vec![
            (values(&big).expect("batch"), b"big".to_vec()),
            (values(&[7]).expect("batch"), b"small".to_vec()),
        ];
        let descriptor = FlightDescriptor::new_path(vec!["split".to_string()]);
        let upload = encode_with_metadata(Some(descriptor), stream::iter(batches));
        let acks: Vec<_> = client
            .do_put(upload)
            .await
            .expect("upload")
            .try_collect()
            .await
            .expect("acks");
        let acks: Vec<_> = acks
            .iter()
            .map(|ack| String::from_utf8_lossy(&ack.app_metadata).into_owned())
            .collect();
        assert_eq!(
            acks,
            [
                "stored big, rows: 196608",
                "stored big, rows: 196608",
                "stored small, rows: 1"
            ]
        );

        // The server's side: one stored batch of 3 MiB, sent in pieces.
        let descriptor = FlightDescriptor::new_path(vec!["whole".to_string()]);
        let whole = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(descriptor))
            .with_max_flight_data_size(usize::MAX)
            .build(stream::iter([Ok(values(&big).expect("batch"))]));
        let acks: Vec<_> = client
            .do_put(whole)
            .await
            .expect("upload")
            .try_collect()
            .await
            .expect("acks");
        assert_eq!(acks.len(), 1);

        let data: FlightDataDecoder = client
            .do_get(Ticket::new("whole"))
            .await
            .expect("download")
            .into_inner();
        let messages: Vec<_> = data.try_collect().await.expect("messages");
        let mut labels = Vec::new();
        let mut rows = 0;
        for message in &messages {
            if let DecodedPayload::RecordBatch(batch) = &message.payload {
                rows += batch.num_rows();
                labels.push(
                    String::from_utf8_lossy(&message.inner.app_metadata)
                        .into_owned(),
                );
            }
        }
        assert_eq!(rows, big.len());
        assert_eq!(labels, ["batch 1 of 1", "batch 1 of 1"]);
        assert!(
            messages[0].inner.app_metadata.is_empty(),
            "the schema message"
        );
        drop(client);
        server.stop().await;
    });
}
