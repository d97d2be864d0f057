//! The ADBC Flight SQL driver (Python), the reference Flight SQL client,
//! against the Flight SQL recipe's SQLite server, through its DB-API: it
//! logs in, reads the server's info, objects, a table's schema and the
//! table types, the current catalog and schema (session options),
//! executes with a parameter, executemany, ingests (create,
//! append, replace), executes in partitions (also incrementally, through
//! PollFlightInfo), rolls back and commits with
//! autocommit off, and sees a refused statement and a refused login. They need Python with the packages of
//! `tests/python/requirements.txt`: without it they are reported as ignored
//! (and fail the build on CI).

use crate::common;

use crate::basic_auth_server;

use crate::flight_sql_server;

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
fn the_adbc_driver_browses_queries_binds_ingests_and_commits() {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("adbc.db");
    let server = block_on(
        &runtime,
        "starting the server",
        TestServer::start(move |l, s| {
            flight_sql_server::serve_database(l, s, path)
        }),
    );
    let finished = run_adbc("flight_sql_adbc.py", &server);
    let expected = [
        "vendor flight-cookbook SQLite server",
        "table main animals ['name', 'legs', 'size']",
        "table main sightings ['id', 'animal', 'place', 'photo']",
        "schema [DataType(string), DataType(int64), DataType(double)]",
        "types ['TABLE', 'VIEW']",
        "current '' 'main'",
        "ProgrammingError INVALID_ARGUMENT: [Flight SQL] Could not set option(s) \
         'schema' (invalid value)",
        "legs = 4 [('cat',), ('dog',), ('horse',)]",
        "polars legs = 4 ['cat', 'dog', 'horse']",
        "executemany 2",
        "ingest create 3",
        "ingest append 3",
        "ingest replace 3",
        "partitions 1 ['x'] [(1,), (2,), (3,)]",
        "incremental 1 1.0 [(8,)]",
        "incremental, then 0",
        "ProgrammingError INVALID_ARGUMENT: [FlightSQL] no such table: plants \
         (InvalidArgument; Prepare)",
        "after rollback (8,)",
        "after commit (7,)",
        "ProgrammingError UNAUTHENTICATED: [FlightSQL] Unknown user or invalid password \
         (Unauthenticated; AuthenticateBasicToken)",
    ];
    let lines: Vec<&str> = finished.stdout.lines().collect();
    assert_eq!(lines, expected, "stderr:\n{}", finished.stderr);
    // The driver warned "Cannot disable autocommit" on every connect while
    // the server did not say it has transactions.
    assert_eq!(finished.stderr, "", "the driver warned");
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

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn pandas_over_adbc_and_flightsql_dbapi_read_the_server_too() {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("others.db");
    let server = block_on(
        &runtime,
        "starting the server",
        TestServer::start(move |l, s| {
            flight_sql_server::serve_database(l, s, path)
        }),
    );
    let finished = run_adbc("flight_sql_others.py", &server);
    let expected = [
        "pandas ['name', 'legs', 'size'] ['str', 'int64', 'float64']",
        "pandas {'name': ['cat', 'dog', 'horse'], 'legs': [4, 4, 4], \
         'size': [46.0, 90.0, 240.0]}",
        "flightsql-dbapi ['name', 'legs']",
        "flightsql-dbapi [['ant', 6], ['spider', 8]]",
        "flightsql-dbapi [[3]]",
        "flightsql-dbapi columns ['name', 'legs', 'size']",
    ];
    let lines: Vec<&str> = finished.stdout.lines().collect();
    assert_eq!(lines, expected, "stderr:\n{}", finished.stderr);
    block_on(&runtime, "stopping the server", server.stop());
}
