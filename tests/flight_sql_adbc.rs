//! The ADBC Flight SQL driver (Python), the reference Flight SQL client,
//! against the Flight SQL recipe's server: it logs in with a user name and
//! password, runs the three statements and gets their rows, sees a refused
//! statement and a refused login. Skipped without the driver, except on CI.

mod common;

use std::process::Command;

use common::{TIMEOUT, block_on, run_with_timeout, runtime, script};
use flight_cookbook::flight_sql_server::serve;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[test]
fn the_adbc_driver_logs_in_and_runs_statements() {
    let test = "the ADBC Flight SQL driver against our Flight SQL server";
    let python = match common::python("import adbc_driver_flightsql.dbapi, pyarrow") {
        Ok(python) => python,
        Err(why) => return common::unavailable(test, &why).unwrap_or(()),
    };
    let runtime = runtime();
    let listener = block_on(&runtime, "binding", TcpListener::bind("127.0.0.1:0"))
        .expect("can bind a free port on 127.0.0.1");
    let addr = listener.local_addr().expect("the listener has an address");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = runtime.spawn(serve(listener, async {
        let _ = stopped.await;
    }));

    let mut client = Command::new(&python);
    client
        .arg(script("flight_sql_adbc.py"))
        .arg(format!("grpc://{addr}"));
    let output = run_with_timeout(client, TIMEOUT).expect("the ADBC client runs to its end");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the ADBC client failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
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
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, expected, "stderr:\n{stderr}");

    stop.send(()).expect("the server is still running");
    block_on(&runtime, "stopping the server", server)
        .expect("the server task")
        .expect("the server ends cleanly");
}

#[test]
fn the_adbc_driver_logs_in_to_the_user_password_server_too() {
    let test = "the ADBC Flight SQL driver against the user/password server";
    let python = match common::python("import adbc_driver_flightsql.dbapi, pyarrow") {
        Ok(python) => python,
        Err(why) => return common::unavailable(test, &why).unwrap_or(()),
    };
    let runtime = runtime();
    let listener = block_on(&runtime, "binding", TcpListener::bind("127.0.0.1:0"))
        .expect("can bind a free port on 127.0.0.1");
    let addr = listener.local_addr().expect("the listener has an address");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = runtime.spawn(flight_cookbook::basic_auth_server::serve(listener, async {
        let _ = stopped.await;
    }));

    let mut client = Command::new(&python);
    client
        .arg(script("basic_auth_adbc.py"))
        .arg(format!("grpc://{addr}"));
    let output = run_with_timeout(client, TIMEOUT).expect("the ADBC client runs to its end");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "logged in",
            "ProgrammingError UNAUTHENTICATED: [FlightSQL] Unknown user or invalid password \
             (Unauthenticated; AuthenticateBasicToken)",
        ]
    );
    stop.send(()).expect("the server is still running");
    block_on(&runtime, "stopping the server", server)
        .expect("the server task")
        .expect("the server ends cleanly");
}
