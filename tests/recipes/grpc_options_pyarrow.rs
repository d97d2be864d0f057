//! The gRPC options chapter against pyarrow 26, the reference
//! implementation: pyarrow sends record batches whole and sets no limit on
//! what it receives.
//!
//! * our client against a pyarrow server (`tests/python/grpc_options_server.py`)
//!   that sends a million rows as one 8 MB message;
//! * a pyarrow client (`tests/python/grpc_options_client.py`) against our
//!   server, `serve` of `examples/grpc_options_server.rs`.

use crate::common;
use crate::grpc_options_client;
use crate::grpc_options_server;

use std::ffi::OsStr;

use arrow_flight::FlightClient;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use common::{ChildProcess, TIMEOUT, TestServer, block_on, runtime};
use grpc_options_client::{MAX_MESSAGE_SIZE, connect, count_rows, upload};
use grpc_options_server::serve;
use tonic::Code;

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn our_client_needs_a_raised_limit_for_a_pyarrow_servers_large_batch() {
    let mut server =
        ChildProcess::python(&common::python(), "grpc_options_server.py", &[]);
    let url = format!("http://{}", server.serving_on());
    let runtime = runtime();
    block_on(&runtime, "the calls", async {
        let channel = connect(url).await.expect("connect");

        let mut client = FlightClient::new(channel.clone());
        match count_rows(&mut client, "1000000").await {
            Err(FlightError::Tonic(status)) => {
                assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
                assert!(
                    status.message().contains("the limit is: 4194304 bytes"),
                    "{status:?}"
                );
            }
            other => panic!("expected OutOfRange, got {other:?}"),
        }

        let inner = FlightServiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE);
        let mut client = FlightClient::new_from_inner(inner);
        let got = count_rows(&mut client, "1000000")
            .await
            .expect("raised limit");
        assert_eq!(got, "1000000 rows in 1 batches");

        // Uploads to pyarrow: split or whole, it takes both.
        let mut client = FlightServiceClient::new(channel);
        let said = upload(&mut client, 1_000_000, 2 * 1024 * 1024)
            .await
            .expect("split");
        assert_eq!(said, "1000000 rows in 4 batches");
        let said = upload(&mut client, 1_000_000, usize::MAX)
            .await
            .expect("whole");
        assert_eq!(said, "1000000 rows in 1 batches");
    });
    let finished = server.stop();
    assert!(
        finished.success(),
        "the pyarrow server: {}",
        finished.report()
    );
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn a_pyarrow_client_downloads_and_uploads_whole_batches_within_our_limit() {
    let runtime = runtime();
    let server =
        block_on(&runtime, "starting the server", TestServer::start(serve));
    let url = server.grpc_url();
    let client = ChildProcess::python(
        &common::python(),
        "grpc_options_client.py",
        &[OsStr::new(&url)],
    );
    let finished = client.wait(TIMEOUT);
    assert!(finished.success(), "{}", finished.report());
    let lines: Vec<&str> = finished.stdout.lines().collect();
    let [download, upload, too_large, bad_ticket] = lines[..] else {
        panic!("expected 4 lines; {}", finished.report());
    };
    assert_eq!(download, "1000000 rows in 1 batches");
    assert_eq!(upload, "1000000 rows in 1 batches, encoding identity");
    assert!(too_large.contains("resource exhausted"), "{too_large}");
    assert!(
        too_large.contains("larger than the limit of 67108864 bytes (64 MiB)"),
        "{too_large}"
    );
    assert!(bad_ticket.contains("invalid argument"), "{bad_ticket}");
    assert!(
        bad_ticket.contains("the ticket (a row count) must be a whole number"),
        "{bad_ticket}"
    );

    block_on(&runtime, "stopping the server", server.stop());
}
