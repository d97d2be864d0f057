//! Uploads as real clients send them, to every server that takes uploads:
//! the two storage servers, the key-value store, the exchange server and
//! the server of the chapter "Compression, dictionaries and large batches".
//!
//! * pyarrow (`tests/python/wire_uploads.py`) uploads record batches
//!   compressed with ZSTD and LZ4_FRAME, one batch of 8,192 strings of
//!   1 KiB (8 MiB in one message, over gRPC's default limit of 4 MiB),
//!   dictionary columns (one dictionary replaced by the next batch), nested
//!   types, timestamps with a time zone, decimals, `string_view`, an upload
//!   of no batch and a batch of no rows: each is read back equal. A batch of
//!   72 MiB is refused with `ResourceExhausted` naming the limit, and the
//!   server goes on serving the cases after it.
//! * A compressed message whose buffers claim to take far more than the
//!   limit once decompressed is refused before it is decompressed.
//! * The chapter's server (`examples/wire_server.rs`): pyarrow reads its
//!   compressed downloads and its dictionaries, hydrated and resent; bad
//!   tickets and uploads get the right status.

use crate::common;

use crate::parquet_storage_server;

use crate::streaming_parquet_server;

use crate::key_value_server;

use crate::exchange_server;

use crate::wire_server;

use crate::wire_client;

use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_flight::FlightData;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_ipc::CompressionType;
use arrow_ipc::writer::IpcWriteOptions;
use common::{ChildProcess, TIMEOUT, TestServer, block_on, runtime};
use futures::{TryStreamExt, stream};
use tonic::Code;

/// What the script prints for each case when the server accepts it.
const CASES: [&str; 11] = [
    "zstd",
    "lz4",
    "zstd_dictionary",
    "big_batch",
    "big_batch_zstd",
    "too_big",
    "dictionary",
    "nested",
    "typed",
    "zero_rows",
    "empty",
];

/// Runs the pyarrow script against `url` in `mode`, skipping `skipped`,
/// and checks every line it prints.
fn pyarrow_uploads(which: &str, url: &str, mode: &str, skipped: &[&str]) {
    let mut args = vec![url, mode];
    args.extend(skipped);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let script = ChildProcess::python(&common::python(), "wire_uploads.py", &args);
    let finished = script.wait(TIMEOUT * 2);
    assert!(
        finished.success(),
        "{which}: the script failed; {}",
        finished.report()
    );
    let lines: Vec<&str> = finished.stdout.lines().collect();
    let expected: Vec<&str> =
        CASES.into_iter().filter(|c| !skipped.contains(c)).collect();
    assert_eq!(lines.len(), expected.len(), "{which}: {lines:#?}");
    for (line, case) in lines.iter().zip(expected) {
        let result = line.strip_prefix(&format!("{case}: ")).unwrap_or_else(|| {
            panic!("{which}: expected the case {case}, got {line:?}")
        });
        if case == "too_big" {
            assert!(
                result.contains("resource exhausted error")
                    && result.contains("the limit of 67108864 bytes (64 MiB)"),
                "{which}: {line}"
            );
        } else {
            assert_eq!(result, "ok", "{which}: {case}");
        }
    }
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn pyarrow_uploads_to_the_parquet_storage_server() {
    let runtime = runtime();
    let repo = tempfile::tempdir().expect("a temporary folder");
    let server = block_on(&runtime, "starting the server", async {
        let repository =
            parquet_storage_server::Repository::new(repo.path()).expect("a repo");
        TestServer::start(|listener, shutdown| {
            parquet_storage_server::serve_repository(listener, repository, shutdown)
        })
        .await
    });
    pyarrow_uploads("parquet storage", &server.grpc_url(), "put", &[]);
    block_on(&runtime, "stopping the server", server.stop());
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn pyarrow_uploads_to_the_streaming_parquet_server() {
    let runtime = runtime();
    let repo = tempfile::tempdir().expect("a temporary folder");
    let server = block_on(&runtime, "starting the server", async {
        let repository =
            streaming_parquet_server::Repository::new(repo.path()).expect("a repo");
        TestServer::start(|listener, shutdown| {
            streaming_parquet_server::serve_repository(
                listener, repository, shutdown,
            )
        })
        .await
    });
    pyarrow_uploads("streaming parquet", &server.grpc_url(), "put", &[]);
    block_on(&runtime, "stopping the server", server.stop());
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn pyarrow_uploads_to_the_key_value_server() {
    let runtime = runtime();
    let server = block_on(
        &runtime,
        "starting the server",
        TestServer::start(key_value_server::serve),
    );
    pyarrow_uploads("key-value", &server.grpc_url(), "put", &[]);
    block_on(&runtime, "stopping the server", server.stop());
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn pyarrow_uploads_to_the_chapters_server() {
    let runtime = runtime();
    let server = block_on(
        &runtime,
        "starting the server",
        TestServer::start(wire_server::serve),
    );
    pyarrow_uploads("wire", &server.grpc_url(), "put", &[]);
    block_on(&runtime, "stopping the server", server.stop());
}

/// The exchange server's DoGet of a dataset of no batch sends no schema,
/// which pyarrow cannot read: `empty` is left out (the upload itself is
/// its chapter's test's).
#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn pyarrow_uploads_and_exchanges_with_the_exchange_server() {
    let runtime = runtime();
    let server = block_on(
        &runtime,
        "starting the server",
        TestServer::start(exchange_server::serve),
    );
    let url = server.grpc_url();
    pyarrow_uploads("exchange, DoPut", &url, "put", &["empty"]);
    pyarrow_uploads("exchange, DoExchange", &url, "exchange", &["empty"]);
    block_on(&runtime, "stopping the server", server.stop());
}

/// An upload of 1,000 rows compressed with `compression`, under the path
/// `name`; with `claimed`, the first buffer's length prefix says that it
/// takes `claimed` bytes once decompressed.
async fn compressed_upload(
    name: &str,
    compression: CompressionType,
    claimed: Option<i64>,
) -> Vec<FlightData> {
    let rows = 1000;
    let values = Int64Array::from_iter_values(0..rows);
    let names =
        StringArray::from_iter_values((0..rows).map(|i| format!("name {}", i % 7)));
    let batch = RecordBatch::try_from_iter([
        ("value", Arc::new(values) as _),
        ("name", Arc::new(names) as _),
    ])
    .expect("a batch");
    let options = IpcWriteOptions::default()
        .try_with_compression(Some(compression))
        .expect("zstd is enabled");
    let descriptor = arrow_flight::FlightDescriptor::new_path(vec![name.into()]);
    let mut messages: Vec<FlightData> = FlightDataEncoderBuilder::new()
        .with_options(options)
        .with_flight_descriptor(Some(descriptor))
        .build(stream::iter([Ok(batch)]))
        .try_collect()
        .await
        .expect("the batch encodes");
    if let Some(claimed) = claimed {
        let last = messages.last_mut().expect("a batch message");
        let mut body = last.data_body.to_vec();
        body[..8].copy_from_slice(&claimed.to_le_bytes());
        last.data_body = body.into();
    }
    messages
}

/// A message of a few hundred bytes that claims 4 EiB once decompressed is
/// refused before it is decompressed: arrow-ipc reserves what the prefix
/// says, and for LZ4 the failed allocation aborts the whole server. A sound
/// compressed upload after it is stored.
#[test]
fn a_compressed_message_claiming_more_than_the_limit_is_refused() {
    let runtime = runtime();
    let repo = tempfile::tempdir().expect("a temporary folder");
    block_on(&runtime, "the uploads", async {
        let repository =
            streaming_parquet_server::Repository::new(repo.path()).expect("a repo");
        let servers = [
            TestServer::start(key_value_server::serve).await,
            TestServer::start(exchange_server::serve).await,
            TestServer::start(|listener, shutdown| {
                streaming_parquet_server::serve_repository(
                    listener, repository, shutdown,
                )
            })
            .await,
        ];
        for server in servers {
            let mut client = server.client().await;
            for compression in [CompressionType::LZ4_FRAME, CompressionType::ZSTD] {
                let bomb =
                    compressed_upload("bomb", compression, Some(1 << 62)).await;
                let result = match client
                    .do_put(stream::iter(bomb.into_iter().map(Ok)))
                    .await
                {
                    Ok(acks) => acks.try_collect::<Vec<_>>().await.map(|_| ()),
                    Err(e) => Err(e),
                };
                let Err(arrow_flight::error::FlightError::Tonic(status)) = result
                else {
                    panic!("{}: the bomb was not refused: {result:?}", server.addr);
                };
                assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
                assert!(
                    status.message().contains(
                        "bytes once decompressed; the limit is \
                     67108864 bytes (64 MiB)"
                    ),
                    "{status}"
                );
            }
            let sound =
                compressed_upload("sound", CompressionType::LZ4_FRAME, None).await;
            let acks = client.do_put(stream::iter(sound.into_iter().map(Ok))).await;
            let acks: Vec<_> = acks
                .expect("a sound upload")
                .try_collect()
                .await
                .expect("acks");
            drop((acks, client));
            server.stop().await;
        }
    });
}

/// pyarrow reads what the chapter's client stored, compressed with LZ4 and
/// ZSTD, and a dictionary column replaced between batches, hydrated
/// (`string`) and resent (`dictionary`).
#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn pyarrow_reads_the_chapters_downloads() {
    let runtime = runtime();
    let server = block_on(&runtime, "storing", async {
        let server = TestServer::start(wire_server::serve).await;
        let mut client = server.client().await;
        wire_client::compression(&mut client)
            .await
            .expect("compression");
        wire_client::dictionaries(&mut client)
            .await
            .expect("dictionaries");
        server
    });
    let url = server.grpc_url();
    let script = ChildProcess::python(
        &common::python(),
        "wire_downloads.py",
        &[url.as_ref()],
    );
    let finished = script.wait(TIMEOUT);
    assert!(finished.success(), "{}", finished.report());
    let animals = "100000 rows, string: ['cat', 'dog', 'horse', '...']";
    let kinds = "['cat', 'dog', 'cat', 'fish', 'bird']";
    assert_eq!(
        finished.stdout.lines().collect::<Vec<_>>(),
        [
            format!("animals lz4: {animals}"),
            format!("animals zstd: {animals}"),
            format!("kinds hydrate: 5 rows, string: {kinds}"),
            format!(
                "kinds resend: 5 rows, dictionary<values=string, indices=int32, \
                 ordered=0>: {kinds}"
            ),
        ]
    );
    block_on(&runtime, "stopping the server", server.stop());
}

/// Tickets and uploads the chapter's server cannot use.
#[test]
fn the_chapters_server_refuses_bad_tickets_and_uploads() {
    let runtime = runtime();
    block_on(&runtime, "the calls", async {
        let server = TestServer::start(wire_server::serve).await;
        let mut client = server.client().await;
        let batch = RecordBatch::try_from_iter([(
            "value",
            Arc::new(Int64Array::from(vec![1, 2])) as _,
        )])
        .expect("a batch");
        wire_client::upload(&mut client, "d", vec![batch.clone()], None)
            .await
            .expect("an upload");
        for (ticket, code, words) in [
            (
                "d gzip",
                Code::InvalidArgument,
                "unknown download option \"gzip\"",
            ),
            ("nothing", Code::NotFound, "no dataset \"nothing\""),
        ] {
            let ticket = arrow_flight::Ticket::new(ticket.to_string());
            let result = match client.do_get(ticket).await {
                Ok(stream) => stream.try_collect::<Vec<_>>().await.map(|_| ()),
                Err(e) => Err(e),
            };
            let Err(arrow_flight::error::FlightError::Tonic(status)) = result
            else {
                panic!("{words}: not refused: {result:?}");
            };
            assert_eq!(status.code(), code, "{status}");
            assert!(status.message().contains(words), "{status}");
        }
        let unnamed = FlightDataEncoderBuilder::new()
            .build(stream::iter([Ok(batch)]))
            .try_collect::<Vec<_>>()
            .await
            .expect("encodes");
        let result = client
            .do_put(stream::iter(unnamed.into_iter().map(Ok)))
            .await;
        let Err(arrow_flight::error::FlightError::Tonic(status)) = result else {
            panic!("an upload without a name was not refused");
        };
        assert_eq!(status.code(), Code::InvalidArgument, "{status}");
        assert!(status.message().contains("name the dataset"), "{status}");
        drop(client);
        server.stop().await;
    });
}
