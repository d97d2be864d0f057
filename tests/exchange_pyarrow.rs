//! The DoExchange and app_metadata chapter against pyarrow 26, the reference
//! implementation: a pyarrow client (`tests/python/exchange_client.py`)
//! exchanges batches one at a time with our server, uploads batches with
//! app_metadata and reads each acknowledgement before sending the next,
//! reads each downloaded batch's app_metadata, and gets the server's
//! InvalidArgument for a batch without a `value` column.
//!
//! And our client against a pyarrow server that does the same
//! (`tests/python/exchange_server.py`).
//!
//! Without pyarrow the tests are skipped, except on CI, where it fails.

mod common;

use common::{PythonServer, TIMEOUT, block_on, run_with_timeout, runtime, script};

use std::process::Command;

use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::{FlightClient, Ticket};
use flight_cookbook::exchange_client::{column, running_totals, upload_with_acks};
use flight_cookbook::exchange_server::serve;
use futures::TryStreamExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

#[test]
fn a_pyarrow_client_exchanges_uploads_and_downloads_with_app_metadata() {
    let python = match common::python("import pyarrow.flight") {
        Ok(python) => python,
        Err(why) => {
            return common::unavailable("the pyarrow client against our exchange server", &why)
                .unwrap_or(());
        }
    };
    let runtime = runtime();
    let listener = block_on(&runtime, "binding", TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = runtime.spawn(serve(listener, async {
        let _ = stopped.await;
    }));

    let mut client = Command::new(&python);
    client
        .arg(script("exchange_client.py"))
        .arg(format!("grpc://{addr}"));
    let output = run_with_timeout(client, TIMEOUT).expect("the pyarrow client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{}\n{stdout}\n{stderr}",
        output.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let Some((refused, lines)) = lines.split_last() else {
        panic!("no output:\n{stderr}");
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
        "{stderr}"
    );
    assert!(refused.starts_with("ArrowInvalid: "), "{refused}");
    assert!(
        refused.contains(r#"the input has no column "value"; its columns: ["name"]"#),
        "{refused}"
    );

    let _ = stop.send(());
    block_on(&runtime, "the server's stop", task)
        .expect("the server task")
        .expect("the server ends cleanly");
}

#[test]
fn our_client_exchanges_uploads_and_downloads_with_a_pyarrow_server() {
    let python = match common::python("import pyarrow.flight") {
        Ok(python) => python,
        Err(why) => {
            return common::unavailable("our client against the pyarrow exchange server", &why)
                .unwrap_or(());
        }
    };
    let mut server = PythonServer::start(&python, "exchange_server.py", &[]);
    let url = format!("http://127.0.0.1:{}", server.port);
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
                let progress = String::from_utf8_lossy(&message.inner.app_metadata).into_owned();
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
    let (status, stderr) = server.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "pyarrow server: {status:?}\n{stderr}"
    );
}
