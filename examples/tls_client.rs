// ANCHOR: uses
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{Action, FlightClient, FlightDescriptor};
use arrow_schema::{DataType, Field, Schema};
use futures::{TryStreamExt, stream};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
// ANCHOR_END: uses

// ANCHOR: copy_flight_endpoint
/// The tonic endpoint of a Flight URL, the form servers print and
/// locations use: `grpc://`, `grpc+tcp://` and `http://` are plain text,
/// `grpc+tls://` and `https://` TLS. Other schemes are refused.
pub fn flight_endpoint(url: &str) -> Result<Endpoint, String> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let http = match scheme.to_ascii_lowercase().as_str() {
        "grpc" | "grpc+tcp" | "http" => "http",
        "grpc+tls" | "https" => "https",
        "arrow-flight-reuse-connection" => {
            return Err(format!(
                "{url:?} names no server: it means the connection that gave \
                 out the endpoint"
            ));
        }
        _ => {
            return Err(format!(
                "{url:?} is not a Flight URL this client can use: use \
                 grpc://, grpc+tcp://, grpc+tls://, http:// or https://"
            ));
        }
    };
    Endpoint::from_shared(format!("{http}://{rest}"))
        .map_err(|e| format!("{url:?}: {e}"))
}
// ANCHOR_END: copy_flight_endpoint

// ANCHOR: connect
/// The `grpc+tls://` URL of the server a Flight URL names: this client
/// speaks only TLS, so `grpc://` and `http://` mean TLS here too.
pub fn tls_url(url: &str) -> Result<String, String> {
    let endpoint = flight_endpoint(url)?;
    let authority = endpoint.uri().authority().map_or("", |a| a.as_str());
    Ok(format!("grpc+tls://{authority}"))
}

/// Connects over TLS, trusting the certificate authorities in `roots` (PEM)
/// and, for mutual TLS, showing `identity`, a certificate and its key (PEM).
pub async fn connect(
    url: &str,
    roots: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<Channel, Box<dyn std::error::Error>> {
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(roots));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let endpoint = flight_endpoint(&tls_url(url)?)?.tls_config(tls)?;
    Ok(endpoint.connect().await?)
}
// ANCHOR_END: connect

// ANCHOR: push
/// Uploads `batch` under the path `name`.
pub async fn push_to_server(
    client: &mut FlightClient,
    name: &str,
    batch: RecordBatch,
) -> Result<(), FlightError> {
    let descriptor = FlightDescriptor::new_path(vec![name.to_string()]);
    let upload = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(descriptor))
        .build(stream::iter([Ok(batch)]));
    client.do_put(upload).await?.try_collect::<Vec<_>>().await?;
    Ok(())
}

/// The animals of the Python cookbook, and their sizes.
pub fn animals() -> Result<RecordBatch, arrow_schema::ArrowError> {
    let schema = Schema::new(vec![
        Field::new("Animal", DataType::Utf8, false),
        Field::new("Size", DataType::Utf8, false),
    ]);
    let animal = StringArray::from(vec!["Dog", "Cat", "Mouse"]);
    let size = StringArray::from(vec!["Big", "Small", "Tiny"]);
    RecordBatch::try_new(Arc::new(schema), vec![Arc::new(animal), Arc::new(size)])
}

/// What the server calls this client.
pub async fn whoami(client: &mut FlightClient) -> Result<String, FlightError> {
    let results: Vec<_> = client
        .do_action(Action::new("whoami", ""))
        .await?
        .try_collect()
        .await?;
    Ok(results.iter().map(|r| String::from_utf8_lossy(r)).collect())
}
// ANCHOR_END: push

// ANCHOR: main
/// `[URL] [--tls-roots CAFILE] [--identity CERTFILE KEYFILE]`
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let after = |flag: &str, n: usize| {
        let at = args.iter().position(|arg| arg == flag)?;
        args.get(at + 1..at + 1 + n)
    };
    let url = match args.first() {
        Some(first) if !first.starts_with("--") => first.clone(),
        _ => "grpc+tls://localhost:5005".to_string(),
    };
    let roots = after("--tls-roots", 1).map_or("certs/ca.pem", |r| r[0].as_str());
    let read = |path: &str| std::fs::read(path).map_err(|e| format!("{path}: {e}"));
    let roots = read(roots)?;
    let identity = match after("--identity", 2) {
        Some(files) => Some((read(&files[0])?, read(&files[1])?)),
        None => None,
    };
    let identity = identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));

    let channel = connect(&url, &roots, identity).await?;
    let mut client = FlightClient::new(channel);
    push_to_server(&mut client, "AnimalData", animals()?).await?;
    println!("pushed AnimalData over TLS");
    println!(
        "the server knows this client as: {}",
        whoami(&mut client).await?
    );
    Ok(())
}
// ANCHOR_END: main
