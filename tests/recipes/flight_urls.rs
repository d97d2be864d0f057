//! Flight URLs: every client takes the URL its server prints
//! (`grpc://HOST:PORT`, `grpc+tls://` for the TLS server) through
//! `flight_endpoint`, the one function all clients copy. Each client runs
//! as a program against the server program of its recipe, and against the
//! pyarrow server of the Python page where there is one: given
//! `grpc://...` unchanged, tonic sends `:scheme grpc`, which gRPC C++
//! refuses ("Error parsing ':scheme' metadata").

use crate::common;

use crate::basic_auth_client;

use std::path::Path;

use basic_auth_client::flight_endpoint;
use common::{ChildProcess, TIMEOUT, example, run_with_timeout};

#[test]
fn flight_urls_become_tonic_endpoints() {
    for (url, uri) in [
        ("grpc://localhost:8816", "http://localhost:8816/"),
        ("grpc+tcp://127.0.0.1:5005", "http://127.0.0.1:5005/"),
        ("http://[::1]:8816", "http://[::1]:8816/"),
        ("grpc+tls://localhost:5005", "https://localhost:5005/"),
        ("https://flight.example.com", "https://flight.example.com/"),
        ("GRPC+TLS://localhost:5005", "https://localhost:5005/"),
    ] {
        let endpoint =
            flight_endpoint(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(endpoint.uri().to_string(), uri, "{url}");
    }
}

#[test]
fn other_urls_are_refused_with_a_clear_error() {
    let unknown = "is not a Flight URL this client can use: use grpc://, \
                   grpc+tcp://, grpc+tls://, http:// or https://";
    for url in [
        "grpc+unix:///tmp/flight.sock",
        "ftp://localhost:21",
        "localhost:8816",
        "",
    ] {
        let error = flight_endpoint(url).expect_err(url);
        assert_eq!(error, format!("{url:?} {unknown}"));
    }
    let error =
        flight_endpoint("arrow-flight-reuse-connection://?").expect_err("reuse");
    assert_eq!(
        error,
        "\"arrow-flight-reuse-connection://?\" names no server: it means the \
         connection that gave out the endpoint"
    );
    let error = flight_endpoint("grpc://no host here").expect_err("a bad host");
    assert!(error.starts_with("\"grpc://no host here\": "), "{error}");
}

/// The URL a server prints on its first line, `Serving on URL`.
fn serving_url(server: &mut ChildProcess) -> String {
    let line = server.next_line();
    match line.strip_prefix("Serving on ") {
        Some(url) => url.trim().to_string(),
        None => panic!("the first line is not `Serving on URL`: {line:?}"),
    }
}

/// Runs the client program `client` in `dir` with `url` and `args`, and
/// fails the test, with what it printed, unless it succeeds and prints
/// `expected`.
fn run_client(client: &str, dir: &Path, url: &str, args: &[&str], expected: &str) {
    let mut command = example(client);
    command.current_dir(dir).arg(url).args(args);
    let output = run_with_timeout(command, TIMEOUT).expect("the client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(expected),
        "{client} {url}: {}\n--- stdout:\n{stdout}--- stderr:\n{stderr}",
        output.status
    );
}

/// The server program `server`, started in `dir` on a free port.
fn start_server(server: &str, dir: &Path, args: &[&str]) -> ChildProcess {
    let mut command = example(server);
    command.current_dir(dir).arg("127.0.0.1:0").args(args);
    ChildProcess::start(server, command)
}

/// The pairs the book's blocks already run (`client_of=SERVER` blocks that
/// are the program `examples/CLIENT.rs`): the harness gives those the URL
/// as their server prints it, `grpc://127.0.0.1:PORT`, so running them here
/// again would check nothing new.
fn run_by_the_book() -> Vec<(String, String)> {
    let src = common::repo_root().join("book/src");
    let mut pairs = Vec::new();
    for entry in std::fs::read_dir(&src).expect("book/src") {
        let path = entry.expect("an entry").path();
        let markdown = std::fs::read_to_string(&path).unwrap_or_default();
        for block in crate::book::code_blocks(&markdown) {
            let Ok(Some(attributes)) = crate::book::Attributes::parse(&block.info)
            else {
                continue;
            };
            let (Some(server), true) = (&attributes.client_of, attributes.runs())
            else {
                continue;
            };
            let Ok(expanded) = crate::book::expand(&block.body, &src) else {
                continue;
            };
            for file in expanded.files {
                if let Some(client) = file
                    .strip_prefix("../../examples/")
                    .and_then(|f| f.strip_suffix(".rs"))
                {
                    pairs.push((server.clone(), client.to_string()));
                }
            }
        }
    }
    pairs
}

#[test]
fn every_client_takes_the_url_its_server_prints() {
    let in_the_book = run_by_the_book();
    let mut run_here = 0;
    // (server, client, a line the client prints)
    let pairs = [
        (
            "basic_auth_server",
            "basic_auth_client",
            "b\"Hello, world!\"",
        ),
        ("exchange_server", "exchange_client", "got batch 3"),
        ("grpc_options_server", "grpc_options_client", "slept 500 ms"),
        ("health_server", "health_client", "one connection"),
        ("key_value_server", "key_value_client", "C7: 0 datasets"),
        (
            "long_query_server",
            "long_query_client",
            "renew 99/1: NotFound",
        ),
        (
            "metadata_server",
            "metadata_client",
            "a command: InvalidArgument",
        ),
        ("middleware_server", "middleware_client", "fourth: "),
        (
            "parquet_storage_server",
            "parquet_storage_client",
            "Dropped uploaded.parquet",
        ),
        ("shard_server", "shard_client", "ids in order: true"),
        (
            "streaming_parquet_server",
            "streaming_parquet_client",
            "Got 4194304 rows total",
        ),
        ("tls_server", "tls_client", "pushed AnimalData over TLS"),
        (
            "flight_sql_server",
            "flight_sql_client",
            "after clear_token: logged in as admin",
        ),
        (
            "flight_sql_first_server",
            "flight_sql_first_client",
            "without logging in => Unauthenticated",
        ),
    ];
    for (server, client, expected) in pairs {
        let dir = tempfile::tempdir().expect("a temporary folder");
        if server == "tls_server" {
            let mut certificates = example("tls_certificates");
            certificates.current_dir(dir.path());
            let made = run_with_timeout(certificates, TIMEOUT).expect("runs");
            assert!(made.status.success(), "tls_certificates: {made:?}");
        }
        let mut process = start_server(server, dir.path(), &[]);
        let url = serving_url(&mut process);
        let scheme = if server == "tls_server" {
            "grpc+tls://"
        } else {
            "grpc://"
        };
        assert!(url.starts_with(scheme), "{server} prints {url}");
        let pair = (server.to_string(), client.to_string());
        if !in_the_book.contains(&pair) {
            run_client(client, dir.path(), &url, &[], expected);
            run_here += 1;
        }
        let finished = process.terminate();
        assert!(finished.success(), "{server}: {}", finished.report());
    }
    // The book runs all but the TLS pair (its blocks use a fixture).
    assert!((1..13).contains(&run_here), "{run_here} pairs run here");
}

/// The pyarrow server `script` of `tests/python`, on a free port.
fn start_pyarrow(script: &str, args: &[&std::ffi::OsStr]) -> ChildProcess {
    ChildProcess::python(&common::python(), script, args)
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn the_clients_take_the_url_a_pyarrow_server_prints() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let repo = dir.path().join("repo");
    let cases: [(&str, Vec<&std::ffi::OsStr>, &str, &str); 4] = [
        (
            "basic_auth_server.py",
            vec![],
            "basic_auth_client",
            "Unauthenticated: Unknown user or invalid password",
        ),
        (
            "exchange_server.py",
            vec![],
            "exchange_client",
            "got batch 3",
        ),
        (
            "parquet_storage_server.py",
            vec![repo.as_os_str()],
            "parquet_storage_client",
            "Dropped uploaded.parquet",
        ),
        (
            "parquet_storage_server.py",
            vec![repo.as_os_str()],
            "streaming_parquet_client",
            "Got 4194304 rows total",
        ),
    ];
    for (script, args, client, expected) in cases {
        let mut server = start_pyarrow(script, &args);
        let url = serving_url(&mut server);
        assert!(url.starts_with("grpc://"), "{script} prints {url}");
        run_client(client, dir.path(), &url, &[], expected);
        server.stop();
    }
}

/// grpc_options_client's own `connect` with the URL pyarrow's server prints
/// (the whole program expects this book's server's limits).
#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn a_grpc_url_reaches_the_pyarrow_options_server() {
    let mut server = start_pyarrow("grpc_options_server.py", &[]);
    let url = serving_url(&mut server);
    let runtime = common::runtime();
    common::block_on(&runtime, "a call", async {
        let channel = flight_endpoint(&url)
            .expect("a Flight URL")
            .connect()
            .await
            .expect("connect");
        let mut client = arrow_flight::FlightClient::new(channel);
        let ticket = arrow_flight::Ticket::new("1000");
        let stream = client.do_get(ticket).await.expect("do_get");
        let batches: Vec<_> = futures::TryStreamExt::try_collect(stream)
            .await
            .expect("batches");
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 1000);
    });
    server.stop();
}

/// A client without a TLS configuration never speaks plain text to a
/// `grpc+tls://` URL: tonic refuses to connect.
#[test]
fn a_plain_text_client_refuses_a_tls_url() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut server = start_server("basic_auth_server", dir.path(), &[]);
    let url = serving_url(&mut server).replacen("grpc://", "grpc+tls://", 1);
    let mut command = example("basic_auth_client");
    command.arg(&url);
    let output = run_with_timeout(command, TIMEOUT).expect("the client runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{url} was reached in plain text");
    assert!(stderr.contains("HttpsUriWithoutTlsSupport"), "{stderr}");
    let finished = server.terminate();
    assert!(finished.success(), "{}", finished.report());
}

/// Every program that opens a connection does it through its copy of
/// `flight_endpoint` and no other way: a client that went back to
/// `Channel::from_shared(url)` would still reach our servers with a
/// `grpc://` URL (tonic then sends `:scheme grpc`, which they accept), so
/// the runs above alone would not notice.
#[test]
fn every_program_that_connects_goes_through_flight_endpoint() {
    let examples = common::repo_root().join("examples");
    let (mut connecting, mut problems) = (0, Vec::new());
    for entry in std::fs::read_dir(&examples).expect("examples/") {
        let path = entry.expect("an entry").path();
        // A program of several files connects from any of its modules.
        let source = match std::fs::read_dir(&path) {
            Ok(modules) => modules
                .flatten()
                .map(|m| std::fs::read_to_string(m.path()).expect("a module"))
                .collect(),
            Err(_) => std::fs::read_to_string(&path).expect("a program"),
        };
        if !source.contains(".connect()") {
            continue;
        }
        connecting += 1;
        let name = path.file_name().expect("a name").to_string_lossy();
        let start = "// ANCHOR: copy_flight_endpoint";
        let end = "// ANCHOR_END: copy_flight_endpoint";
        // A measuring program may take flight_endpoint from a recipe's module.
        let outside = match source.split_once(start) {
            Some((before, rest)) => {
                let (_, after) = rest.split_once(end).expect("the copy's end");
                format!("{before}{after}")
            }
            None if source.contains("flight_endpoint(") => source,
            None => {
                problems.push(format!("{name} connects without flight_endpoint"));
                continue;
            }
        };
        for other in ["from_shared(", "from_static(", "Endpoint::try_from("] {
            if outside.contains(other) {
                problems
                    .push(format!("{name} calls {other} outside flight_endpoint"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(connecting >= 15, "only {connecting} programs connect");
}
