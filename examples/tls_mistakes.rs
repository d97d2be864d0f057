// ANCHOR: explain
use std::error::Error;

use arrow_flight::error::FlightError;
use arrow_flight::{Action, FlightClient};
use futures::TryStreamExt;
use rcgen::{CertificateParams, KeyPair};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
// ANCHOR_END: explain

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

// ANCHOR: explain
// ANCHOR: copy_explain
/// What went wrong, in words: the gRPC code and message of a failed call,
/// and the reason under the layers of the error, when it says more.
pub fn explain(error: &(dyn Error + 'static)) -> String {
    let mut reason = error;
    while let Some(source) = reason.source() {
        reason = source;
    }
    let reason = reason.to_string();
    match error.downcast_ref::<FlightError>() {
        Some(FlightError::Tonic(status)) if status.message() == reason => {
            format!("{:?}: {reason}", status.code())
        }
        Some(FlightError::Tonic(status)) => {
            format!("{:?}: {} ({reason})", status.code(), status.message())
        }
        _ => reason,
    }
}
// ANCHOR_END: copy_explain

// ANCHOR: copy_tls_whoami
/// Connects with `endpoint` and asks the server who it takes the client for.
pub async fn whoami(endpoint: Endpoint) -> Result<String, Box<dyn Error>> {
    let mut client = FlightClient::new(endpoint.connect().await?);
    let action = Action::new("whoami", "");
    let names: Vec<_> = client.do_action(action).await?.try_collect().await?;
    Ok(names
        .iter()
        .map(|name| String::from_utf8_lossy(name))
        .collect())
}
// ANCHOR_END: copy_tls_whoami
// ANCHOR_END: explain

// ANCHOR: main
#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc+tls://localhost:5005".to_string());
    let server = flight_endpoint(&url)?;
    let authority = server.uri().authority().map_or("", |a| a.as_str());
    let plain = flight_endpoint(&format!("grpc://{authority}"))?;
    let secure = flight_endpoint(&format!("grpc+tls://{authority}"))?;

    let ours = Certificate::from_pem(std::fs::read("certs/ca.pem")?);
    let stranger =
        CertificateParams::default().self_signed(&KeyPair::generate()?)?;
    let strangers = Certificate::from_pem(stranger.pem());
    let trusting = |ca: Certificate| ClientTlsConfig::new().ca_certificate(ca);
    let elsewhere = trusting(ours.clone()).domain_name("flight.example.com");
    let attempts = [
        ("without TLS", plain),
        (
            "trusting another authority",
            secure.clone().tls_config(trusting(strangers))?,
        ),
        (
            "expecting another name",
            secure.clone().tls_config(elsewhere)?,
        ),
        ("as it should", secure.tls_config(trusting(ours))?),
    ];
    for (how, endpoint) in attempts {
        match whoami(endpoint).await {
            Ok(name) => println!("{how}: served, as {name}"),
            Err(error) => println!("{how}: {}", explain(&*error)),
        }
    }
    Ok(())
}
// ANCHOR_END: main
