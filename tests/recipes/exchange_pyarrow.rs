//! The DoExchange and app_metadata chapter against pyarrow 26, the reference
//! implementation: a pyarrow client (`tests/python/exchange_client.py`)
//! exchanges batches one at a time with our server, uploads batches with
//! app_metadata and reads each acknowledgement before sending the next,
//! reads each downloaded batch's app_metadata, and gets the server's
//! InvalidArgument for a batch without a `value` column.
//!
//! And our client against a pyarrow server that does the same
//! (`tests/python/exchange_server.py`).

use crate::common;
use crate::exchange_client;
use crate::exchange_server;

use std::ffi::OsStr;

use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::{FlightClient, Ticket};
use common::{ChildProcess, TIMEOUT, TestServer, block_on, runtime};
use exchange_client::{column, running_totals, upload_with_acks};
use exchange_server::serve;
use futures::TryStreamExt;
use tonic::transport::Channel;

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn a_pyarrow_client_exchanges_uploads_and_downloads_with_app_metadata() {
    let runtime = runtime();
    let server =
        block_on(&runtime, "starting the server", TestServer::start(serve));
    let url = server.grpc_url();
    let client = ChildProcess::python(
        &common::python(),
        "exchange_client.py",
        &[OsStr::new(&url)],
    );
    let finished = client.wait(TIMEOUT);
    assert!(finished.success(), "{}", finished.report());
    let lines: Vec<&str> = finished.stdout.lines().collect();
    let Some((refused, lines)) = lines.split_last() else {
        panic!("no output: {}", finished.report());
    };
    assert_eq!(
        lines,
        [
            "sent batch 1: value [1, 2, 3]",
            "got batch 1: running_total [1, 3, 6]",
            "sent batch 2: value [10, 20]",
            "got batch 2: running_total [16, 36]",
            "sent batch 3: value [100]",
            "got batch 3: running_total [136]",
            "stored part 1, rows: 3",
            "stored part 2, rows: 2",
            "stored part 3, rows: 1",
            "batch 1 of 3: value [1, 2, 3]",
            "batch 2 of 3: value [4, 5]",
            "batch 3 of 3: value [6]",
        ],
        "{}",
        finished.stderr
    );
    assert!(refused.starts_with("ArrowInvalid: "), "{refused}");
    assert!(
        refused.contains(
            r#"a batch needs an Int64 column "value"; this one has ["name"]"#
        ),
        "{refused}"
    );
    block_on(&runtime, "stopping the server", server.stop());
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn our_client_exchanges_uploads_and_downloads_with_a_pyarrow_server() {
    let mut server =
        ChildProcess::python(&common::python(), "exchange_server.py", &[]);
    let url = format!("http://{}", server.serving_on());
    let runtime = runtime();
    block_on(&runtime, "the calls", async {
        let channel = Channel::from_shared(url)
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut client = FlightClient::new(channel);
        // Each fails if a result or an acknowledgement is missing or extra.
        running_totals(&mut client).await.expect("exchange");
        upload_with_acks(&mut client).await.expect("upload");

        let data: FlightDataDecoder = client
            .do_get(Ticket::new("numbers"))
            .await
            .expect("download")
            .into_inner();
        let mut got = Vec::new();
        for message in data.try_collect::<Vec<_>>().await.expect("messages") {
            if let DecodedPayload::RecordBatch(batch) = &message.payload {
                let progress = String::from_utf8_lossy(&message.inner.app_metadata)
                    .into_owned();
                got.push((progress, column(batch, "value").expect("value")));
            }
        }
        let expected = [
            ("batch 1 of 3", vec![1, 2, 3]),
            ("batch 2 of 3", vec![4, 5]),
            ("batch 3 of 3", vec![6]),
        ]
        .map(|(label, values)| (label.to_string(), values));
        assert_eq!(got, expected);
    });
    let finished = server.stop();
    assert!(
        finished.success(),
        "the pyarrow server: {}",
        finished.report()
    );
}
