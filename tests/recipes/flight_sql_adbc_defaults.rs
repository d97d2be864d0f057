//! The ADBC Flight SQL driver (Python) with its DB-API's defaults against
//! the Flight SQL recipe's SQLite server. `connect()` turns autocommit off,
//! so every statement runs in a transaction the driver began: a query, an
//! ingest and a query of the new table; a connection idle for longer than
//! the server's idle limit; a slow query run once, not once per call; a
//! time limit of one second kept, with the work ended; and the Arrow types
//! that come back from an ingested table. They need Python with the
//! packages of `tests/python/requirements.txt`: without it they are
//! reported as ignored (and fail the build on CI).

use crate::common;

use crate::flight_sql_server;

use std::time::{Duration, Instant};

use common::{ChildProcess, TestServer, block_on, runtime};

/// Runs the case `case` of `flight_sql_adbc_defaults.py` against a new
/// server and database, and checks the lines it prints.
fn run_case(case: &str, expected: &[&str]) {
    let runtime = runtime();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("defaults.db");
    let server = block_on(
        &runtime,
        "starting the server",
        TestServer::start(move |l, s| {
            flight_sql_server::serve_database(l, s, path)
        }),
    );
    let url = server.grpc_url();
    let started = Instant::now();
    let client = ChildProcess::python(
        &common::python(),
        "flight_sql_adbc_defaults.py",
        &[url.as_ref(), case.as_ref()],
    );
    let finished = client.wait(Duration::from_secs(120));
    eprintln!(
        "case {case}: {:.1} s; {}",
        started.elapsed().as_secs_f64(),
        finished.stderr.trim_end()
    );
    assert!(
        finished.success(),
        "the ADBC client failed; {}",
        finished.report()
    );
    let lines: Vec<&str> = finished.stdout.lines().collect();
    assert_eq!(lines, expected, "stderr:\n{}", finished.stderr);
    block_on(&runtime, "stopping the server", server.stop());
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn a_table_ingested_after_a_query_is_seen_by_the_next_query() {
    run_case(
        "ingest",
        &["animals (6,)", "ingested 3", "t [(1,), (2,), (3,)]"],
    );
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn a_connection_idle_for_32_seconds_still_answers() {
    // Idle past the server's clock (30 s), as a user's connection would be.
    assert!(flight_sql_server::server::TRANSACTION_IDLE < Duration::from_secs(32));
    run_case(
        "idle",
        &[
            "before (6,)",
            "after 32 s (6,)",
            "OperationalError UNKNOWN: [FlightSQL] the transaction held the \
             write lock unused for more than 30 s",
            "the writer, then (6,)",
            "after commit (7,)",
        ],
    );
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn a_query_prepared_executed_and_fetched_runs_once() {
    run_case("runs", &["rows [(2000000,)]", "runs at most once True"]);
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn a_time_limit_of_one_second_ends_the_call_and_the_work() {
    run_case(
        "deadline",
        &[
            "OperationalError",
            "then (6,)",
            "ended within 5 s True",
            "the next query within 5 s True",
        ],
    );
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn timestamps_and_dates_come_back_as_they_went_in() {
    run_case(
        "types",
        &[
            "int64 same",
            "int32 int64 [1]",
            "uint8 int64 [1]",
            "float64 same",
            "float32 double [1.5]",
            "bool same",
            "string same",
            "large_string string ['a']",
            "binary same",
            "timestamp_us same",
            "timestamp_ms same",
            "timestamp_s same",
            "timestamp_ns same",
            "timestamp_us_utc same",
            "date32 same",
            "date64 string ['2024-01-02T00:00:00']",
            "time64 string ['03:04:05.123456']",
            "decimal string ['1.25']",
        ],
    );
}

#[test]
fn a_grpc_timeout_header_is_read_in_every_unit_and_nonsense_is_ignored() {
    use flight_sql_server::server::grpc_timeout;
    assert_eq!(
        grpc_timeout("999958u"),
        Some(Duration::from_micros(999_958))
    );
    assert_eq!(grpc_timeout("1S"), Some(Duration::from_secs(1)));
    assert_eq!(grpc_timeout("2M"), Some(Duration::from_secs(120)));
    assert_eq!(grpc_timeout("1H"), Some(Duration::from_secs(3600)));
    assert_eq!(grpc_timeout("250m"), Some(Duration::from_millis(250)));
    assert_eq!(grpc_timeout("7n"), Some(Duration::from_nanos(7)));
    for nonsense in ["", "S", "5", "5x", "-1S", "123456789S", "1.5S"] {
        assert_eq!(grpc_timeout(nonsense), None, "{nonsense:?}");
    }
}
