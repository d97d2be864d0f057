//! The ADBC Flight SQL driver (Python), the reference Flight SQL client,
//! against the Flight SQL recipe's server: it logs in with a user name and
//! password, runs the three statements and gets their rows, sees a refused
//! statement and a refused login. They need Python with the packages of
//! `tests/python/requirements.txt`: without it they are reported as ignored
//! (and fail the build on CI).

mod common;

#[allow(dead_code)]
#[path = "../examples/basic_auth_server.rs"]
mod basic_auth_server;

#[allow(dead_code)]
#[path = "../examples/flight_sql_server.rs"]
mod flight_sql_server;

use common::{ChildProcess, Finished, TIMEOUT, TestServer, block_on, runtime};

/// Runs the ADBC script `script` against `server` to its end.
fn run_adbc(script: &str, server: &TestServer) -> Finished {
    let url = server.grpc_url();
    let client = ChildProcess::python(&common::python(), script, &[url.as_ref()]);
    let finished = client.wait(TIMEOUT);
    assert!(
        finished.success(),
        "the ADBC client failed; {}",
        finished.report()
    );
    finished
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn the_adbc_driver_logs_in_and_runs_statements() {
    let runtime = runtime();
    let server = block_on(
        &runtime,
        "starting the server",
        TestServer::start(flight_sql_server::serve),
    );
    let finished = run_adbc("flight_sql_adbc.py", &server);
    let expected = [
        "['name', 'legs', 'size'] {'name': ['ant', 'spider', 'cat', 'dog', 'ostrich', 'horse'], \
         'legs': [6, 8, 4, 4, 2, 4], 'size': [1, 2, 46, 90, 200, 240]}",
        "['name', 'size'] {'name': ['dog', 'ostrich', 'horse'], 'size': [90, 200, 240]}",
        "['count'] {'count': [6]}",
        "ProgrammingError INVALID_ARGUMENT: [FlightSQL] unknown table \"plants\": \
         the only table is animals (InvalidArgument; ExecuteQuery)",
        "ProgrammingError UNAUTHENTICATED: [FlightSQL] Unknown user or invalid password \
         (Unauthenticated; AuthenticateBasicToken)",
    ];
    let lines: Vec<&str> = finished.stdout.lines().collect();
    assert_eq!(lines, expected, "stderr:\n{}", finished.stderr);
    block_on(&runtime, "stopping the server", server.stop());
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn the_adbc_driver_logs_in_to_the_user_password_server_too() {
    let runtime = runtime();
    let server = block_on(
        &runtime,
        "starting the server",
        TestServer::start(basic_auth_server::serve),
    );
    let finished = run_adbc("basic_auth_adbc.py", &server);
    assert_eq!(
        finished.stdout.lines().collect::<Vec<_>>(),
        [
            "logged in",
            "ProgrammingError UNAUTHENTICATED: [FlightSQL] Unknown user or invalid password \
             (Unauthenticated; AuthenticateBasicToken)",
        ],
        "stderr:\n{}",
        finished.stderr
    );
    block_on(&runtime, "stopping the server", server.stop());
}
