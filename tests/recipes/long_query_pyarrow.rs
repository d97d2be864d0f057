//! The long queries chapter against pyarrow 26, the reference
//! implementation (`tests/python/long_query_client.py`): pyarrow reads each
//! endpoint's `expiration_time` as our server encoded it, and polls (through
//! grpcio: pyarrow 26 has no `poll_flight_info`), renews and cancels (through
//! `do_action` with pyarrow's own serialization) against our server, and
//! gets GetFlightInfo's read-once endpoints.

use crate::common;
use crate::long_query_server;

use std::ffi::OsStr;

use common::{ChildProcess, TIMEOUT, TestServer, block_on, runtime};
use long_query_server::serve;

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn a_pyarrow_client_polls_renews_cancels_and_reads_expiration_times() {
    let runtime = runtime();
    let server =
        block_on(&runtime, "starting the server", TestServer::start(serve));
    let url = server.grpc_url();
    let client = ChildProcess::python(
        &common::python(),
        "long_query_client.py",
        &[OsStr::new(&url)],
    );
    let finished = client.wait(TIMEOUT);
    assert!(finished.success(), "{}", finished.report());
    let lines: Vec<&str> = finished.stdout.lines().collect();
    let mut expected = vec!["poll 1: 0% done, 0 part(s)".to_string()];
    for part in 1..=4 {
        let (first, last) = (part * 250 - 249, part * 250);
        expected.push(format!(
            "poll {}: {}% done, {part} part(s)",
            part + 1,
            part * 25
        ));
        expected.push(format!(
            "  part {part}: 250 rows, n from {first} to {last}; expiration_time as sent: True"
        ));
    }
    let cancelled = "query 2 was cancelled after 1 of 4 parts";
    expected.extend(
        [
            "renewed part 4: same ticket True, later True",
            "cancel: CANCELLED",
            &format!("read part 1: FlightCancelledError: Flight cancelled call, with message: {cancelled}"),
            &format!("poll: CANCELLED: {cancelled}"),
            "get_flight_info: 2 part(s), expiration_time [None, None]",
            "read part 1: 250 rows, n from 1 to 250",
            "read part 1 again: ArrowInvalid: gRPC returned precondition failed error, with message: part 1 of query 3 was read already: an endpoint without an expiration_time is read once",
        ]
        .map(str::to_string),
    );
    assert_eq!(lines, expected, "{}", finished.report());
    block_on(&runtime, "stopping the server", server.stop());
}
