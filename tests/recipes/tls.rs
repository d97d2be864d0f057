//! The TLS chapter: the server program run with the certificate files of
//! `tls_certificates` and the lines it prints for the chapter's client,
//! mutual TLS, the mistakes and their errors (the refusal of a client
//! without a certificate in one of the forms the chapter names, and the
//! server serving well-behaved clients after each), the certificate names,
//! and pyarrow as a client, with and without its own certificate.

use crate::common;

use crate::tls_certificates;

use crate::tls_client;

use crate::tls_server;

use std::error::Error;
use std::path::Path;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightClient, FlightDescriptor};
use arrow_ipc::CompressionType;
use common::{ChildProcess, TIMEOUT, TestServer};
use rcgen::{CertificateParams, KeyPair};
use tls_certificates::{CA_NAME, CLIENT_NAME, SERVER_NAME, write_certificates};
use tls_client::{animals, connect, push_to_server, whoami};
use tls_server::{common_name, serve_tls, tls_config};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

fn certificates() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    write_certificates(dir.path()).expect("certificates");
    dir
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).expect("a certificate file")
}

fn cause(error: &dyn Error) -> String {
    let mut error = error;
    while let Some(source) = error.source() {
        error = source;
    }
    error.to_string()
}

/// The TLS server in a background task, with a client CA if `mutual`, and
/// its URL, `https://localhost:PORT`.
async fn start(dir: &Path, mutual: bool) -> (TestServer, String) {
    let ca = mutual.then(|| read(dir, "ca.pem"));
    let tls = tls_config(
        &read(dir, "server.pem"),
        &read(dir, "server.key"),
        ca.as_deref(),
    );
    let server =
        TestServer::start(|listener, shutdown| serve_tls(listener, tls, shutdown))
            .await;
    let url = format!("https://localhost:{}", server.addr.port());
    (server, url)
}

async fn whoami_at(
    url: &str,
    dir: &Path,
    identity: bool,
) -> Result<String, Box<dyn Error>> {
    let (cert, key) = (read(dir, "client.pem"), read(dir, "client.key"));
    let identity = identity.then_some((cert.as_slice(), key.as_slice()));
    let channel = connect(url, &read(dir, "ca.pem"), identity).await?;
    Ok(whoami(&mut FlightClient::new(channel)).await?)
}

/// The server program, run with the certificate files given with `--tls`,
/// and run without options in a folder where step 1 wrote `certs/`.
#[test]
fn the_server_program_serves_over_tls_and_prints_what_it_received() {
    let dir = certificates();
    let folder = tempfile::tempdir().expect("a temporary folder");
    write_certificates(&folder.path().join("certs")).expect("certificates");
    let (cert, key) =
        (dir.path().join("server.pem"), dir.path().join("server.key"));
    let with_files = ["--tls".as_ref(), cert.as_os_str(), key.as_os_str()];
    let defaults = folder.path().join("certs");
    let runs = [(&with_files[..], dir.path()), (&[][..], defaults.as_path())];
    let runtime = common::runtime();
    for (options, certs) in runs {
        let mut command = common::example("tls_server");
        command
            .arg("127.0.0.1:0")
            .args(options)
            .current_dir(folder.path());
        let mut server = ChildProcess::start("tls_server", command);
        let url = format!("grpc+tls://{}", server.serving_on());
        let url = url.replacen("127.0.0.1", "localhost", 1);

        common::block_on(&runtime, "the client", async {
            let channel = connect(&url, &read(certs, "ca.pem"), None)
                .await
                .expect("connect");
            let mut client = FlightClient::new(channel);
            push_to_server(&mut client, "AnimalData", animals().expect("animals"))
                .await
                .expect("pushed");
            assert_eq!(whoami(&mut client).await.expect("whoami"), "anonymous");
        });

        let finished = server.terminate();
        assert!(finished.success(), "{options:?}: {}", finished.report());
        let (_, printed) =
            finished.stdout.split_once('\n').expect("two lines or more");
        assert_eq!(
            printed,
            "[\"AnimalData\"] from anonymous:\n\
             +--------+-------+\n\
             | Animal | Size  |\n\
             +--------+-------+\n\
             | Dog    | Big   |\n\
             | Cat    | Small |\n\
             | Mouse  | Tiny  |\n\
             +--------+-------+\n",
            "{options:?}"
        );
    }
}

#[test]
fn the_server_program_says_what_is_missing_from_its_command_line() {
    // A folder without certs/.
    let folder = tempfile::tempdir().expect("a temporary folder");
    let run = |args: &[&str]| {
        let mut command = common::example("tls_server");
        command.args(args).current_dir(folder.path());
        let finished = ChildProcess::start("tls_server", command).wait(TIMEOUT);
        assert!(
            finished.status.is_some_and(|s| !s.success()),
            "{args:?} should fail"
        );
        finished.stderr
    };
    let usage =
        "usage: tls_server [ADDR] [--tls CERTFILE KEYFILE] [--client-ca CAFILE]";
    assert!(run(&["127.0.0.1:0", "--tls", "only-one.pem"]).contains(usage));
    assert!(run(&["127.0.0.1:0", "--client-ca"]).contains(usage));
    let missing = run(&["127.0.0.1:0", "--tls", "no-such.pem", "no-such.key"]);
    assert!(missing.contains("no-such.pem: No such file"), "{missing}");
    let missing = run(&["127.0.0.1:0"]);
    assert!(
        missing.contains("certs/server.pem: No such file"),
        "{missing}"
    );
    let missing = run(&["127.0.0.1:0", "--client-ca", "ca.pem"]);
    assert!(missing.contains("ca.pem: No such file"), "{missing}");
}

#[test]
fn mutual_tls_names_the_caller_and_refuses_clients_without_a_good_certificate() {
    let runtime = common::runtime();
    common::block_on(&runtime, "mutual TLS", async {
        let dir = certificates();
        let (server, url) = start(dir.path(), true).await;
        assert_eq!(
            whoami_at(&url, dir.path(), true).await.expect("served"),
            CLIENT_NAME
        );

        let refused = whoami_at(&url, dir.path(), false)
            .await
            .expect_err("refused");
        let why = cause(&*refused);
        let forms = [
            "CertificateRequired",
            "connection closed",
            "broken pipe",
            "reset",
        ];
        assert!(forms.iter().any(|form| why.contains(form)), "{why}");

        // A client certificate from another authority.
        let other = certificates();
        let ca = read(dir.path(), "ca.pem");
        let (cert, key) = (
            read(other.path(), "client.pem"),
            read(other.path(), "client.key"),
        );
        let result = match connect(&url, &ca, Some((&cert, &key))).await {
            Ok(channel) => whoami(&mut FlightClient::new(channel))
                .await
                .map_err(|e| e.to_string()),
            Err(error) => Err(cause(error.as_ref())),
        };
        assert!(result.is_err(), "a foreign client certificate was accepted");

        // The server serves on.
        assert_eq!(
            whoami_at(&url, dir.path(), true).await.expect("served"),
            CLIENT_NAME
        );
        server.stop().await;
    });
}

#[test]
fn clients_that_get_tls_wrong_get_clear_errors_and_the_server_serves_on() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the mistakes", async {
        let dir = certificates();
        let (server, url) = start(dir.path(), false).await;
        let ours = Certificate::from_pem(read(dir.path(), "ca.pem"));
        let stranger = CertificateParams::default()
            .self_signed(&KeyPair::generate().expect("key"))
            .expect("certificate");

        let call = |url: String, tls: Option<ClientTlsConfig>| async move {
            let mut endpoint =
                Endpoint::from_shared(url).map_err(|e| e.to_string())?;
            if let Some(tls) = tls {
                endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
            }
            let channel = endpoint.connect().await.map_err(|e| cause(&e))?;
            whoami(&mut FlightClient::new(channel))
                .await
                .map_err(|e| cause(&e))
        };
        let plain = url.replacen("https://", "http://", 1);
        // The server's TLS alert read as HTTP/2, or the close that follows it.
        let why = call(plain, None).await.expect_err("plaintext");
        let forms = [
            "frame with invalid size",
            "connection closed",
            "broken pipe",
            "reset",
        ];
        assert!(forms.iter().any(|form| why.contains(form)), "{why}");

        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(stranger.pem()));
        let why = call(url.clone(), Some(tls)).await.expect_err("untrusted");
        assert_eq!(why, "invalid peer certificate: UnknownIssuer");

        let tls = ClientTlsConfig::new()
            .ca_certificate(ours.clone())
            .domain_name("example.com");
        let why = call(url.clone(), Some(tls)).await.expect_err("wrong name");
        assert!(
            why.contains("certificate not valid for name \"example.com\""),
            "{why}"
        );

        // A name the certificate does have, other than the URL's host.
        let tls = ClientTlsConfig::new()
            .ca_certificate(ours.clone())
            .domain_name("127.0.0.1");
        assert_eq!(
            call(url.clone(), Some(tls)).await.expect("served"),
            "anonymous"
        );
        let tls = ClientTlsConfig::new().ca_certificate(ours);
        assert_eq!(call(url, Some(tls)).await.expect("served"), "anonymous");
        server.stop().await;
    });
}

#[test]
fn every_certificate_has_a_name_of_its_own_and_common_name_reads_the_subject() {
    let dir = certificates();
    let names: Vec<String> = ["ca.pem", "server.pem", "client.pem"]
        .iter()
        .map(|file| {
            let pem = read(dir.path(), file);
            let der = rustls_pemfile_der(&pem);
            common_name(&der).expect("a common name")
        })
        .collect();
    assert_eq!(names, [CA_NAME, SERVER_NAME, CLIENT_NAME]);
    // gRPC C++ (pyarrow) refuses a chain whose names repeat, as "self-signed".
    let distinct: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(distinct.len(), 3, "{names:?}");

    // Cut short anywhere, or garbage: no name, and no panic.
    let der = rustls_pemfile_der(&read(dir.path(), "client.pem"));
    for length in 0..der.len() {
        let _ = common_name(&der[..length]);
    }
    assert_eq!(common_name(b""), None);
    assert_eq!(common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    assert_eq!(common_name(&[0x30, 0x80]), None);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |file: &str| {
            let metadata =
                std::fs::metadata(dir.path().join(file)).expect("metadata");
            metadata.permissions().mode() & 0o777
        };
        assert_eq!(mode("server.key"), 0o600);
        assert_eq!(mode("client.key"), 0o600);
    }
}

/// The DER bytes of the one certificate in a PEM file.
fn rustls_pemfile_der(pem: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let text = String::from_utf8_lossy(pem);
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64")
}

#[test]
#[cfg_attr(
    not(python),
    ignore = "needs Python with tests/python/requirements.txt: python3 -m venv .venv && .venv/bin/pip install -r tests/python/requirements.txt"
)]
fn a_pyarrow_client_connects_over_tls_and_over_mutual_tls() {
    let runtime = common::runtime();
    let dir = certificates();
    for (mutual, expected) in [(false, "anonymous"), (true, CLIENT_NAME)] {
        let (server, url) =
            common::block_on(&runtime, "start", start(dir.path(), mutual));
        let url = url.replacen("https://", "grpc+tls://", 1);
        let mut args = vec![url.into(), dir.path().join("ca.pem").into_os_string()];
        if mutual {
            args.push(dir.path().join("client.pem").into_os_string());
            args.push(dir.path().join("client.key").into_os_string());
        }
        let args: Vec<&std::ffi::OsStr> =
            args.iter().map(|arg| arg.as_os_str()).collect();
        let client =
            ChildProcess::python(&common::python(), "tls_client.py", &args);
        let finished = client.wait(TIMEOUT);
        assert!(finished.success(), "{}", finished.report());
        assert_eq!(
            finished.stdout,
            format!(
                "pushed AnimalData; the server knows this client as: {expected}\n"
            )
        );
        common::block_on(&runtime, "stop", server.stop());
    }
}

/// An upload of a few hundred bytes that claims 4 EiB once decompressed,
/// LZ4 or ZSTD, is refused before it is decompressed (unguarded, LZ4's
/// failed allocation aborts the server); `whoami` is answered after it.
#[test]
fn a_compressed_upload_claiming_4_eib_is_refused_and_the_server_serves_on() {
    let runtime = common::runtime();
    common::block_on(&runtime, "the compression bombs", async {
        let dir = certificates();
        let (server, url) = start(dir.path(), false).await;
        let channel = connect(&url, &read(dir.path(), "ca.pem"), None)
            .await
            .expect("connect");
        let mut raw = FlightServiceClient::new(channel.clone());
        for compression in [CompressionType::LZ4_FRAME, CompressionType::ZSTD] {
            let descriptor = FlightDescriptor::new_path(vec!["bomb".into()]);
            let bomb = common::compression_bomb(descriptor, compression).await;
            common::assert_bomb_refused(common::put(&mut raw, None, bomb).await);
        }
        let name = whoami(&mut FlightClient::new(channel)).await;
        assert!(name.is_ok(), "whoami after the bombs: {name:?}");
        drop(raw);
        server.stop().await;
    });
}
