// ANCHOR: call
use arrow_flight::Action;
use arrow_flight::flight_service_client::FlightServiceClient;
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
// ANCHOR_END: call

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

// ANCHOR: call
async fn call(
    client: &mut FlightServiceClient<Channel>,
    authorization: MetadataValue<Ascii>,
) -> Result<(), tonic::Status> {
    let mut request = Request::new(Action::new("echo", "still serving"));
    request
        .metadata_mut()
        .insert("authorization", authorization);
    let mut results = client.do_action(request).await?.into_inner();
    while let Some(result) = results.message().await? {
        println!("{:?}", result.body);
    }
    Ok(())
}
// ANCHOR_END: call

// ANCHOR: main
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1);
    let url = url.unwrap_or_else(|| "grpc://localhost:8816".to_string());
    let channel = flight_endpoint(&url)?.connect().await?;
    let mut client = FlightServiceClient::new(channel);

    let huge = format!("Bearer {}", "x".repeat(5000));
    let huger = format!("Bearer {}", "x".repeat(64 * 1024));
    let malformed: [&[u8]; 9] = [
        b"Basic not base64!",
        b"Basic dGVzdA==",
        b"Basic //79",
        b"basic dGVzdDpwYXNzd29yZA==",
        b"Token abc",
        b"Bearer",
        b"Bearer \xff\xfe",
        huge.as_bytes(),
        huger.as_bytes(),
    ];
    for value in malformed {
        let shown = String::from_utf8_lossy(value);
        match call(&mut client, MetadataValue::try_from(value)?).await {
            Err(status) => {
                println!("{shown:.26} => {:?}: {}", status.code(), status.message())
            }
            Ok(()) => return Err(format!("{shown:.26} was accepted").into()),
        }
    }

    call(
        &mut client,
        MetadataValue::try_from("Basic dGVzdDpwYXNzd29yZA==")?,
    )
    .await?;
    Ok(())
}
// ANCHOR_END: main
