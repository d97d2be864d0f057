//! Interoperability of the user/password recipe with pyarrow, the reference
//! implementation of Arrow Flight:
//!
//! * the pyarrow client of the Python cookbook (`tests/python/basic_auth_client.py`)
//!   against our server, `flight_cookbook::basic_auth_server::serve`;
//! * our client, `flight_cookbook::basic_auth_client`, against the pyarrow
//!   server of the Python cookbook (`tests/python/basic_auth_server.py`).
//!
//! The Python interpreter is `$FLIGHT_COOKBOOK_PYTHON`, else `.venv/bin/python`
//! in this repository (see `tests/python/requirements.txt`), else `python3`
//! (see `tests/common`). Without pyarrow the tests are skipped, except when
//! `$CI` is set: there they fail.

mod common;

use common::{PythonServer, STOP_TIMEOUT, TIMEOUT, block_on, runtime, script};

use std::process::Command;

use arrow_flight::Action;
use arrow_flight::flight_service_client::FlightServiceClient;
use common::run_with_timeout;
use flight_cookbook::basic_auth_client::{authenticate_basic_token, echo};
use flight_cookbook::basic_auth_server::serve;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// The Python interpreter, if it has pyarrow; `None` (after saying why) when
/// `test` is skipped, and a panic on CI.
fn python(test: &str) -> Option<String> {
    match common::python("import pyarrow.flight") {
        Ok(python) => Some(python),
        Err(why) => common::unavailable(test, &why),
    }
}

#[test]
fn pyarrow_client_against_our_server() {
    let Some(python) = python("the pyarrow client against our basic auth server") else {
        return;
    };
    let runtime = runtime();

    let listener = block_on(&runtime, "binding", TcpListener::bind("127.0.0.1:0"))
        .expect("can bind a free port on 127.0.0.1");
    let addr = listener.local_addr().expect("the listener has an address");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = runtime.spawn(serve(listener, async {
        // A dropped sender (the test panicked) stops the server as well.
        let _ = stopped.await;
    }));

    let mut client = Command::new(&python);
    client
        .arg(script("basic_auth_client.py"))
        .arg(format!("grpc://{addr}"));
    let output = run_with_timeout(client, TIMEOUT).expect("the pyarrow client runs to its end");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the pyarrow client failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );

    eprintln!("pyarrow client output:\n{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let [
        token_pair,
        echo_type,
        echo_body,
        no_credentials,
        wrong_password,
    ] = lines[..]
    else {
        panic!("expected 5 lines from the pyarrow client, got:\n{stdout}\nstderr:\n{stderr}");
    };
    let token = token_pair
        .strip_prefix("token pair: authorization Bearer ")
        .unwrap_or_else(|| panic!("unexpected token pair line: {token_pair:?}"));
    assert!(!token.is_empty(), "the bearer token is empty");
    assert_eq!(echo_type, "echo: b'echo'");
    assert_eq!(echo_body, "echo: b'Hello, world!'");
    // Against a server that is not Arrow C++ (no `x-arrow-status` trailers),
    // pyarrow words these as "Flight returned unauthenticated error, with
    // message: <the server's message>"; the exception class comes from the
    // gRPC status code alone.
    for (line, step, message) in [
        (
            no_credentials,
            "no credentials: ",
            "No credentials supplied",
        ),
        (
            wrong_password,
            "wrong password: ",
            "Unknown user or invalid password",
        ),
    ] {
        assert!(
            line.starts_with(step) && line.contains(message),
            "expected {step:?} with {message:?}, got {line:?}"
        );
    }

    stop.send(()).expect("the server is still running");
    block_on(&runtime, "stopping our server", server)
        .expect("the server task did not panic")
        .expect("the server stopped cleanly");
}

#[test]
fn our_client_against_pyarrow_server() {
    let Some(python) = python("our basic auth client against the pyarrow server") else {
        return;
    };
    let mut server = PythonServer::start(&python, "basic_auth_server.py", &[]);
    let url = format!("http://127.0.0.1:{}", server.port);
    let runtime = runtime();

    block_on(&runtime, "talking to the pyarrow server", async {
        let channel = Channel::from_shared(url.clone())
            .expect("a valid URL")
            .connect()
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {url}: {error}"));
        let mut client = FlightServiceClient::new(channel);

        let token_pair = authenticate_basic_token(&mut client, "test", "password")
            .await
            .expect("the pyarrow server accepts test/password");
        let (name, value) = &token_pair;
        assert_eq!(*name, "authorization");
        let value = value.to_str().expect("the token is ASCII");
        let token = value
            .strip_prefix("Bearer ")
            .unwrap_or_else(|| panic!("expected a bearer token, got {value:?}"));
        assert!(!token.is_empty(), "the bearer token is empty");

        // The recipe's own echo call (it prints the bodies)...
        echo(&mut client, &token_pair)
            .await
            .expect("the echo call with the token succeeds");

        // ...and the same call by hand, to look at the bodies.
        let mut request = Request::new(Action::new("echo", "Hello, world!"));
        request.metadata_mut().insert(*name, token_pair.1.clone());
        let mut results = client
            .do_action(request)
            .await
            .expect("the pyarrow server accepts the token")
            .into_inner();
        let mut bodies = Vec::new();
        while let Some(result) = results.message().await.expect("the results arrive") {
            bodies.push(String::from_utf8(result.body.to_vec()).expect("a UTF-8 body"));
        }
        assert_eq!(bodies, ["echo", "Hello, world!"]);

        let status = client
            .do_action(Request::new(Action::new("echo", "Hello, world!")))
            .await
            .expect_err("a call without credentials is refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(
            status.message().contains("No credentials supplied"),
            "{status:?}"
        );

        let status = authenticate_basic_token(&mut client, "test", "wrong password")
            .await
            .expect_err("a wrong password is refused");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(
            status
                .message()
                .contains("Unknown user or invalid password"),
            "{status:?}"
        );
    });

    let (status, stderr) = server.stop();
    let status = status.unwrap_or_else(|| {
        panic!("the pyarrow server did not stop within {STOP_TIMEOUT:?}:\n{stderr}")
    });
    assert!(
        status.success(),
        "the pyarrow server failed ({status}):\n{stderr}"
    );
}
