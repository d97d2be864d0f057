//! The DoExchange and app_metadata chapter against pyarrow 26, the reference
//! implementation: a pyarrow client (`tests/python/exchange_client.py`)
//! exchanges batches one at a time with our server, uploads batches with
//! app_metadata and reads each acknowledgement before sending the next,
//! reads each downloaded batch's app_metadata, and gets the server's
//! InvalidArgument for a batch without a `value` column.
//!
//! Without pyarrow the test is skipped, except on CI, where it fails.

mod common;

use common::{TIMEOUT, block_on, run_with_timeout, runtime, script};

use std::process::Command;

use flight_cookbook::exchange_server::serve;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

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
