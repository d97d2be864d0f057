//! Interoperability of the user/password recipe with pyarrow, the reference
//! implementation of Arrow Flight:
//!
//! * the pyarrow client of the Python cookbook (`tests/python/basic_auth_client.py`)
//!   against our server, `examples/basic_auth_server.rs`;
//! * our client, `examples/basic_auth_client.rs`, against the pyarrow
//!   server of the Python cookbook (`tests/python/basic_auth_server.py`).
//!
//! The chapter says that both pairs log in and call; these tests are what
//! stands behind that sentence.
//!
//! They need Python with the packages of `tests/python/requirements.txt`
//! (see `recipes/build.rs`): without it they are reported as ignored (and
//! fail the build on CI).

use crate::common;

use crate::basic_auth_client;

use crate::basic_auth_server;

use arrow_flight::Action;
use arrow_flight::flight_service_client::FlightServiceClient;
use basic_auth_client::{authenticate_basic_token, echo};
use basic_auth_server::serve;
use common::{ChildProcess, TIMEOUT, TestServer, block_on, runtime};
use tonic::transport::Channel;
use tonic::{Code, Request};

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn pyarrow_client_against_our_server() {
    let runtime = runtime();
    let server =
        block_on(&runtime, "starting our server", TestServer::start(serve));

    let url = server.grpc_url();
    let client = ChildProcess::python(
        &common::python(),
        "basic_auth_client.py",
        &[url.as_ref()],
    );
    let finished = client.wait(TIMEOUT);
    assert!(
        finished.success(),
        "the pyarrow client failed; {}",
        finished.report()
    );
    let (stdout, stderr) = (&finished.stdout, &finished.stderr);

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
        panic!(
            "expected 5 lines from the pyarrow client, got:\n{stdout}\nstderr:\n{stderr}"
        );
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

    block_on(&runtime, "stopping our server", server.stop());
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn our_client_against_pyarrow_server() {
    let mut server =
        ChildProcess::python(&common::python(), "basic_auth_server.py", &[]);
    let url = format!("http://{}", server.serving_on());
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
        while let Some(result) =
            results.message().await.expect("the results arrive")
        {
            bodies.push(
                String::from_utf8(result.body.to_vec()).expect("a UTF-8 body"),
            );
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

        let status =
            authenticate_basic_token(&mut client, "test", "wrong password")
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

    let finished = server.stop();
    assert!(
        finished.success(),
        "the pyarrow server failed; {}",
        finished.report()
    );
}
