//! The gRPC options chapter against pyarrow 26, the reference
//! implementation: pyarrow sends record batches whole and sets no limit on
//! what it receives.
//!
//! * our client against a pyarrow server (`tests/python/grpc_options_server.py`)
//!   that sends a million rows as one 8 MB message;
//! * a pyarrow client (`tests/python/grpc_options_client.py`) against our
//!   server, `flight_cookbook::grpc_options_server::serve`.
//!
//! Without pyarrow the tests are skipped, except on CI, where they fail.

mod common;

use common::{PythonServer, TIMEOUT, block_on, run_with_timeout, runtime, script};

use std::process::Command;

use arrow_flight::FlightClient;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use flight_cookbook::grpc_options_client::{MAX_MESSAGE_SIZE, connect, count_rows, upload};
use flight_cookbook::grpc_options_server::serve;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::Code;

fn python(test: &str) -> Option<String> {
    match common::python("import pyarrow.flight") {
        Ok(python) => Some(python),
        Err(why) => common::unavailable(test, &why),
    }
}

#[test]
fn our_client_needs_a_raised_limit_for_a_pyarrow_servers_large_batch() {
    let Some(python) = python("our client against the pyarrow options server") else {
        return;
    };
    let mut server = PythonServer::start(&python, "grpc_options_server.py", &[]);
    let url = format!("http://127.0.0.1:{}", server.port);
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

        let inner =
            FlightServiceClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE_SIZE);
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
    let (status, stderr) = server.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "pyarrow server: {status:?}\n{stderr}"
    );
}

#[test]
fn a_pyarrow_client_downloads_and_uploads_whole_batches_within_our_limit() {
    let Some(python) = python("the pyarrow client against our options server") else {
        return;
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
        .arg(script("grpc_options_client.py"))
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
    let [download, upload, too_large, bad_ticket] = lines[..] else {
        panic!("expected 4 lines, got:\n{stdout}\n{stderr}");
    };
    assert_eq!(download, "1000000 rows in 1 batches");
    assert_eq!(upload, "1000000 rows in 1 batches, encoding identity");
    assert!(too_large.contains("out-of-range"), "{too_large}");
    assert!(
        too_large.contains("found 80000145 bytes, the limit is: 67108864 bytes"),
        "{too_large}"
    );
    assert!(bad_ticket.contains("invalid argument"), "{bad_ticket}");
    assert!(
        bad_ticket.contains("the ticket (a row count) must be a whole number"),
        "{bad_ticket}"
    );

    let _ = stop.send(());
    block_on(&runtime, "the server's stop", task)
        .expect("the server task")
        .expect("the server ends cleanly");
}
